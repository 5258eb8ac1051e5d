/* The talk-style screen of chat-client (ncurses), used when stdin is a
 * terminal; line mode is in main.c.  Events are formatted by format.c. */
#ifndef CHAT_CLIENT_TUI_H
#define CHAT_CLIENT_TUI_H

#include "client.h"
#include "loop.h"

/* Returns 0, or -1 if the terminal cannot be used (TERM unset, dumb or
 * unknown): then line mode. */
struct chat_tui;
int chat_tui_start(struct chat_loop *loop, struct chat_tui **out);
void chat_tui_attach(struct chat_tui *t, struct chat_client *c);
void chat_tui_event(void *ui, const struct chat_event *ev);
/* Closes the screen; with a non-zero exit status, prints the last errors
 * on the normal terminal (stderr). */
void chat_tui_stop(struct chat_tui *t, int status);

#endif
