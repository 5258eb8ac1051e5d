/* The two faces of chat-client: line mode (stdin not a terminal; one event
 * per line, docs/CLIENT.md) and the talk-style screen (ncurses). */
#ifndef CHAT_CLIENT_UI_H
#define CHAT_CLIENT_UI_H

#include <stddef.h>

#include "client.h"
#include "loop.h"

/* Format an event as its stable line-mode text (no trailing newline). */
size_t chat_ui_format(const struct chat_event *ev, size_t cap, char *dst);

/* Talk-style screen.  Returns 0 or -1 if the terminal cannot be used. */
struct chat_tui;
int chat_tui_start(struct chat_loop *loop, struct chat_tui **out);
void chat_tui_attach(struct chat_tui *t, struct chat_client *c);
void chat_tui_event(void *ui, const struct chat_event *ev);
void chat_tui_stop(struct chat_tui *t);

#endif
