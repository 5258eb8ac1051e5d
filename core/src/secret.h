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
/* Warn (log, not an error) when path, a file or directory holding secrets,
 * is open to other users: a file that group or others may read or write
 * ("chmod 600 PATH"), a directory they may list, enter or write ("chmod 700
 * PATH"; for a shared sticky directory like /tmp: use a private directory
 * instead).  what names it in the message ("relay.database").  A path that
 * does not exist is no warning.  1 if it warned, else 0. */
int chat_warn_if_shared(const char *path, const char *what);
/* The same for a file already open. */
int chat_warn_if_shared_fd(int fd, const char *path, const char *what);

/* Prompt on stderr and read one line from stdin, with echo off when stdin is
 * a terminal.  An empty line is asked again at a terminal, an error
 * otherwise (unless CHAT_SECRET_ALLOW_EMPTY).  CHAT_ERR_CLOSED at end of
 * input. */
int chat_secret_ask(const char *prompt, const char *noun, unsigned flags, size_t cap, char *dst,
                    size_t errlen, char *err);

#endif
