/* How chat-client shows an event: the stable line-mode text (one event per
 * line, docs/CLIENT.md) and the human text of the talk-style screen.  Both
 * faces (main.c, tui.c) format through here. */
#ifndef CHAT_CLIENT_FORMAT_H
#define CHAT_CLIENT_FORMAT_H

#include <stddef.h>

#include "client.h"

/* Format an event as its stable line-mode text (no trailing newline). */
size_t chat_ui_format(const struct chat_event *ev, size_t cap, char *dst);

/* A human rendering of an event for the screen, stamped with the local time;
 * me is the user's own name (for their sent lines). */
void chat_ui_human(const struct chat_event *ev, const char *me, size_t cap, char *dst);

#endif
