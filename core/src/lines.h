/* Reading a file descriptor (stdin) as lines on the event loop: pollable
 * inputs are read as they become ready, regular files and /dev/null (which
 * epoll refuses) are read whole at start.  '\r' before '\n' is dropped; a
 * last line without '\n' is delivered at end of input; a line longer than
 * max is cut there.  Buffers are wiped (lines may hold passwords). */
#ifndef CHAT_LINES_H
#define CHAT_LINES_H

#include <stddef.h>

#include "loop.h"

struct chat_lines_cbs {
	void (*line)(void *arg, size_t len, const char *line);
	void (*eof)(void *arg);                      /* called once */
	void (*too_long)(void *arg, size_t max);      /* optional: a line was cut at max */
};

struct chat_lines;

/* *out is set before any callback runs (a regular file is read inside this
 * call).  O_NONBLOCK set on fd is taken back by chat_lines_stop. */
int chat_lines_start(struct chat_loop *loop, int fd, size_t max, const struct chat_lines_cbs *cbs,
                     void *arg, struct chat_lines **out);
/* Stop reading and free; NULL allowed.  Not from inside a callback. */
void chat_lines_stop(struct chat_lines *l);

#endif
