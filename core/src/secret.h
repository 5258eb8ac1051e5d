/* Reading a password: the first line of a file, or typed at the terminal
 * with echo off (term.h puts the terminal back even if a signal arrives
 * while the prompt is up).  noun names it in messages: "password",
 * "passphrase". */
#ifndef CHAT_SECRET_H
#define CHAT_SECRET_H

#include <stddef.h>

#define CHAT_SECRET_MAX 1024

/* chat_secret_ask flags */
#define CHAT_SECRET_CONFIRM 1u     /* at a terminal: typed twice until both agree */
#define CHAT_SECRET_ALLOW_EMPTY 2u /* an empty line is an answer */

/* First line of path (without the newline).  Errors name the file: missing,
 * unreadable, empty.  Warns (log) if others may read it. */
int chat_secret_from_file(const char *path, const char *noun, size_t cap, char *dst,
                          size_t errlen, char *err);
/* Prompt on stderr and read one line from stdin, with echo off when stdin is
 * a terminal.  An empty line is asked again at a terminal, an error
 * otherwise (unless CHAT_SECRET_ALLOW_EMPTY).  CHAT_ERR_CLOSED at end of
 * input. */
int chat_secret_ask(const char *prompt, const char *noun, unsigned flags, size_t cap, char *dst,
                    size_t errlen, char *err);

#endif
