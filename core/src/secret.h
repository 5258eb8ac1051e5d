/* Reading a password: the first line of a file, or typed at the terminal
 * with echo off (the terminal is restored even if a signal arrives while
 * the prompt is up). */
#ifndef CHAT_SECRET_H
#define CHAT_SECRET_H

#include <stddef.h>

#define CHAT_SECRET_MAX 256

/* First line of path (without the newline).  Errors name the file: missing,
 * unreadable, empty.  Warns (log) if others may read it. */
int chat_secret_from_file(const char *path, size_t cap, char *dst, size_t errlen, char *err);
/* Prompt on stderr and read one line from stdin; with echo off when stdin is
 * a terminal.  confirm: ask twice until both agree (terminal only).  Empty
 * lines are refused unless allow_empty.  CHAT_ERR_CLOSED at end of input. */
int chat_secret_ask(const char *prompt, int confirm, int allow_empty, size_t cap, char *dst,
                    size_t errlen, char *err);

#endif
