/* Leveled logging to stderr for the core and (through the host table) the
 * plugins.  Never log plaintext, keys or passwords. */
#ifndef CHAT_LOG_H
#define CHAT_LOG_H

#include <stdarg.h>

#include <chat/host.h>

void chat_log_set_program(const char *name);
/* Send log lines to fn instead of stderr (a full-screen UI owns the terminal);
 * NULL restores stderr.  line is the formatted line without a newline. */
void chat_log_set_sink(void (*fn)(void *arg, int level, const char *line), void *arg);
void chat_log_set_level(int level); /* enum chat_log_level */
int chat_log_level(void);
/* "error", "warn", "info", "debug" -> level, or -1. */
int chat_log_parse_level(const char *text);

void chat_log(int level, const char *fmt, ...) CHAT_PRINTF(2, 3);
/* tag: a plugin name or subsystem, shown in brackets. */
void chat_logv_tag(int level, const char *tag, const char *fmt, va_list ap) CHAT_PRINTF(3, 0);

#define chat_err(...) chat_log(CHAT_LOG_ERROR, __VA_ARGS__)
#define chat_warn(...) chat_log(CHAT_LOG_WARN, __VA_ARGS__)
#define chat_info(...) chat_log(CHAT_LOG_INFO, __VA_ARGS__)
#define chat_debug(...) chat_log(CHAT_LOG_DEBUG, __VA_ARGS__)

#endif
