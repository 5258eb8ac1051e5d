/* The terminal on stdin: echo off while a secret is typed, and one line read
 * without reading ahead.  Nothing here is needed when stdin is not a terminal
 * (the echo calls then do nothing). */
#ifndef CHAT_TERM_H
#define CHAT_TERM_H

#include <stddef.h>

/* Echo on or off.  The first call saves the terminal's settings; while echo
 * is off, SIGINT and SIGTERM first put them back, then end the program as
 * they would have (a signal the program ignores stays ignored). */
void chat_term_echo(int on);
/* 1 while echo is off through chat_term_echo. */
int chat_term_echo_is_off(void);
/* Back to the settings saved by the first chat_term_echo (at exit). */
void chat_term_restore(void);

/* One line from stdin, byte by byte so that nothing after it is consumed
 * (an event loop may read stdin next).  The newline and any '\r' are
 * dropped; what does not fit in cap - 1 bytes is skipped.  CHAT_OK, or
 * CHAT_ERR_CLOSED at end of input before any byte. */
int chat_term_read_line(size_t cap, char *dst);
/* Write prompt on stderr, then read one line; hidden: with echo off, and
 * the newline the user typed is echoed afterwards. */
int chat_term_prompt(const char *prompt, int hidden, size_t cap, char *dst);

#endif
