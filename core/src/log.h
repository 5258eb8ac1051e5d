/* Leveled logging for the core and (through the host table) the plugins, to
 * stderr, syslog or a file.  Never log plaintext, keys or passwords.
 *
 * One line per event, written whole (one write), in the form of where it goes:
 *   stderr:   "10:31:27.463 chat-relay info: text" (local time of day)
 *   stderr that is journald's stream (JOURNAL_STREAM names it): "<6>info: text"
 *             (journald adds the time and the program; the "<N>" prefix gives
 *             it the priority)
 *   a file:   "2026-12-03T10:31:27.463+01:00 chat-relay info: text" (ISO 8601,
 *             with the date and the offset from UTC)
 *   syslog:   syslog(3) at LOG_ERR, LOG_WARNING, LOG_INFO or LOG_DEBUG,
 *             facility LOG_DAEMON, ident the program's name, text "info: text" */
#ifndef CHAT_LOG_H
#define CHAT_LOG_H

#include <stdarg.h>
#include <stdint.h>

#include <chat/host.h>

void chat_log_set_program(const char *name);
/* Send log lines to fn instead of stderr (a full-screen UI owns the terminal);
 * NULL restores stderr.  line is the formatted line without a newline. */
void chat_log_set_sink(void (*fn)(void *arg, int level, const char *line), void *arg);
void chat_log_set_level(int level); /* enum chat_log_level */

/* Where lines go from now on: "stderr" (also an empty dest: the default),
 * "syslog", or else the path of a file, opened for appending (created 0600;
 * a relative path is relative to the working directory).  0, or
 * CHAT_ERR_IO with err saying why, the destination unchanged. */
int chat_log_open(const char *dest, size_t errlen, char *err);
/* The file opened again by its name, for logrotate: after a rename, lines
 * go to a new file of that name.  0 (also for stderr and syslog, nothing to
 * do), or CHAT_ERR_IO with err saying why, lines going on to the old file. */
int chat_log_reopen(size_t errlen, char *err);
/* Back to stderr, closing a file or syslog. */
void chat_log_close(void);
/* "stderr", "syslog" or the file's path as given to chat_log_open. */
const char *chat_log_destination(void);
/* Is the destination stderr (no file or syslog opened; a sink set with
 * chat_log_set_sink may still take the lines)?  Then a message printed on
 * stderr is not logged as well. */
int chat_log_to_stderr(void);
int chat_log_level(void);
/* "error", "warn", "info", "debug" -> level, or -1. */
int chat_log_parse_level(const char *text);

void chat_log(int level, const char *fmt, ...) CHAT_PRINTF(2, 3);
/* tag: a plugin name or subsystem, shown in brackets. */
void chat_logv_tag(int level, const char *tag, const char *fmt, va_list ap) CHAT_PRINTF(3, 0);

/* Repeated events of one kind logged at most once per interval: the first
 * event of an interval is logged, later ones are only counted, and the count
 * is said in one line of its own ("... and 2,314 more malformed requests in
 * the last 10 s") when the interval has passed: by chat_log_limit_flush
 * (call it now and then, e.g. once a second) or else before the next line
 * of that kind.  A flood of any size thus costs at most two lines per kind
 * and interval.  Zero-initialise, then set kind, level and interval_ms
 * (0: every event is logged).  Times are the caller's monotonic clock in ms;
 * nothing here reads a clock. */
struct chat_log_limit {
	const char *kind;      /* plural noun for the count line: "malformed requests" */
	int level;             /* enum chat_log_level of both lines */
	uint32_t interval_ms;
	uint64_t since_ms;     /* when the running interval began (its first line) */
	uint64_t suppressed;   /* events counted and not logged in it */
	int running;           /* an interval is running */
};

/* Log the line (formatted only if it is logged) or count it; 1 if logged. */
int chat_log_limited(struct chat_log_limit *l, uint64_t now_ms, const char *fmt, ...)
	CHAT_PRINTF(3, 4);
/* End the interval if it has passed, saying how many events were not logged. */
void chat_log_limit_flush(struct chat_log_limit *l, uint64_t now_ms);

#define chat_err(...) chat_log(CHAT_LOG_ERROR, __VA_ARGS__)
#define chat_warn(...) chat_log(CHAT_LOG_WARN, __VA_ARGS__)
#define chat_info(...) chat_log(CHAT_LOG_INFO, __VA_ARGS__)
#define chat_debug(...) chat_log(CHAT_LOG_DEBUG, __VA_ARGS__)

#endif
