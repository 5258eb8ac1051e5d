#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <chat/error.h>

enum { DEST_STDERR, DEST_FILE, DEST_SYSLOG };

static const char *program = "chat";
static int threshold = CHAT_LOG_INFO;
static const char *const names[] = { "error", "warn", "info", "debug" };
static void (*sink)(void *arg, int level, const char *line);
static void *sink_arg;
static int dest = DEST_STDERR;
static int log_fd = -1;       /* DEST_FILE */
static char *log_path;        /* DEST_FILE: as given, for chat_log_reopen */
static int journal = -1;      /* stderr is journald's stream; -1: not looked yet */

void chat_log_set_sink(void (*fn)(void *arg, int level, const char *line), void *arg)
{
	sink = fn;
	sink_arg = arg;
}

void chat_log_set_program(const char *name)
{
	program = name;
}

void chat_log_set_level(int level)
{
	if (level >= CHAT_LOG_ERROR && level <= CHAT_LOG_DEBUG)
		threshold = level;
}

int chat_log_level(void)
{
	return threshold;
}

int chat_log_parse_level(const char *text)
{
	for (int i = 0; i < 4; i++)
		if (text && strcasecmp(text, names[i]) == 0)
			return i;
	return -1;
}

/* systemd sets JOURNAL_STREAM=DEVICE:INODE for the stream it connects to
 * stderr; a child whose stderr was redirected elsewhere inherits the
 * variable, hence the comparison (systemd.exec(5)). */
static int stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat sb;

	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &sb) != 0)
		return 0;
	return (unsigned long long)sb.st_dev == dev && (unsigned long long)sb.st_ino == ino;
}

/* "2026-12-03T10:31:27.463+01:00" */
static void iso_stamp(const struct timespec *ts, size_t cap, char *dst)
{
	struct tm tm;
	char date[32];
	unsigned off; /* minutes east of UTC, without the sign */

	localtime_r(&ts->tv_sec, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	off = (unsigned)((tm.tm_gmtoff < 0 ? -tm.tm_gmtoff : tm.tm_gmtoff) / 60) % (100 * 60);
	snprintf(dst, cap, "%s.%03u%c%02u:%02u", date, (unsigned)(ts->tv_nsec / 1000000) % 1000u,
	         tm.tm_gmtoff < 0 ? '-' : '+', off / 60, off % 60);
}

/* One write(2): lines stay whole when several processes share a file or a
 * terminal (O_APPEND puts each at the end). */
static void write_line(int fd, const char *line, size_t len)
{
	while (len) {
		ssize_t n = write(fd, line, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* nowhere left to say it */
		line += n;
		len -= (size_t)n;
	}
}

void chat_logv_tag(int level, const char *tag, const char *fmt, va_list ap)
{
	static const int priority[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char stamp[48], line[1024], full[1200];
	struct timespec ts;
	struct tm tm;
	int n;

	if (level > threshold)
		return;
	if (level < CHAT_LOG_ERROR)
		level = CHAT_LOG_ERROR;
	if (level > CHAT_LOG_DEBUG)
		level = CHAT_LOG_DEBUG;
	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0)
		return;
	if (sink) {
		snprintf(full, sizeof(full), "%s: %s%s%s%s", names[level], tag ? "[" : "", tag ? tag : "",
		         tag ? "] " : "", line);
		sink(sink_arg, level, full);
		return;
	}
	if (dest == DEST_SYSLOG) {
		syslog(priority[level], "%s: %s%s%s%s", names[level], tag ? "[" : "", tag ? tag : "",
		       tag ? "] " : "", line);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	if (dest == DEST_FILE) {
		iso_stamp(&ts, sizeof(stamp), stamp);
		n = snprintf(full, sizeof(full), "%s %s %s: %s%s%s%s\n", stamp, program, names[level],
		             tag ? "[" : "", tag ? tag : "", tag ? "] " : "", line);
	} else {
		if (journal < 0)
			journal = stderr_is_journal();
		if (journal) {
			n = snprintf(full, sizeof(full), "<%d>%s: %s%s%s%s\n", priority[level],
			             names[level], tag ? "[" : "", tag ? tag : "", tag ? "] " : "", line);
		} else {
			localtime_r(&ts.tv_sec, &tm);
			strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
			n = snprintf(full, sizeof(full), "%s.%03ld %s %s: %s%s%s%s\n", stamp,
			             ts.tv_nsec / 1000000, program, names[level], tag ? "[" : "",
			             tag ? tag : "", tag ? "] " : "", line);
		}
	}
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(full)) { /* cut: still one line */
		n = (int)sizeof(full) - 1;
		full[n - 1] = '\n';
	}
	write_line(dest == DEST_FILE ? log_fd : STDERR_FILENO, full, (size_t)n);
}

static int open_file(const char *path, size_t errlen, char *err)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	struct stat sb;

	if (fd >= 0 && fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode)) {
		close(fd);
		errno = EISDIR;
		fd = -1;
	}
	if (fd < 0)
		snprintf(err, errlen, "cannot open the log file %s: %s", path, strerror(errno));
	return fd;
}

int chat_log_open(const char *where, size_t errlen, char *err)
{
	char *path = NULL;
	int fd = -1;

	if (errlen)
		err[0] = '\0';
	if (where && *where && strcmp(where, "stderr") && strcmp(where, "syslog")) {
		if (!(path = strdup(where))) {
			snprintf(err, errlen, "out of memory");
			return CHAT_ERR_NOMEM;
		}
		if ((fd = open_file(path, errlen, err)) < 0) {
			free(path);
			return CHAT_ERR_IO;
		}
	}
	chat_log_close();
	if (path) {
		dest = DEST_FILE;
		log_fd = fd;
		log_path = path;
	} else if (where && !strcmp(where, "syslog")) {
		/* LOG_NDELAY: connected now, while /dev/log can still be reached
		 * (before a chroot or a lost permission). */
		openlog(program, LOG_PID | LOG_NDELAY, LOG_DAEMON);
		dest = DEST_SYSLOG;
	}
	return CHAT_OK;
}

int chat_log_reopen(size_t errlen, char *err)
{
	int fd;

	if (errlen)
		err[0] = '\0';
	if (dest != DEST_FILE)
		return CHAT_OK;
	if ((fd = open_file(log_path, errlen, err)) < 0)
		return CHAT_ERR_IO;
	close(log_fd);
	log_fd = fd;
	return CHAT_OK;
}

void chat_log_close(void)
{
	if (dest == DEST_FILE)
		close(log_fd);
	else if (dest == DEST_SYSLOG)
		closelog();
	free(log_path);
	log_path = NULL;
	log_fd = -1;
	dest = DEST_STDERR;
}

const char *chat_log_destination(void)
{
	return dest == DEST_FILE ? log_path : dest == DEST_SYSLOG ? "syslog" : "stderr";
}

int chat_log_to_stderr(void)
{
	return dest == DEST_STDERR;
}

void chat_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	chat_logv_tag(level, NULL, fmt, ap);
	va_end(ap);
}

/* 2314 -> "2,314": counts in log lines are read by people. */
static void group_digits(uint64_t v, size_t cap, char *dst)
{
	char raw[24], out[32];
	int n = snprintf(raw, sizeof(raw), "%" PRIu64, v), o = 0;

	for (int i = 0; i < n; i++) {
		if (i && (n - i) % 3 == 0)
			out[o++] = ',';
		out[o++] = raw[i];
	}
	out[o] = '\0';
	snprintf(dst, cap, "%s", out);
}

static void limit_summary(struct chat_log_limit *l, uint64_t now_ms)
{
	char count[32];

	if (l->suppressed) {
		group_digits(l->suppressed, sizeof(count), count);
		chat_log(l->level, "... and %s more %s in the last %" PRIu64 " s", count, l->kind,
		         (now_ms - l->since_ms + 500) / 1000);
	}
	l->suppressed = 0;
	l->running = 0;
}

int chat_log_limited(struct chat_log_limit *l, uint64_t now_ms, const char *fmt, ...)
{
	va_list ap;

	if (l->interval_ms && l->running && now_ms - l->since_ms < l->interval_ms) {
		l->suppressed++;
		return 0;
	}
	if (l->running)
		limit_summary(l, now_ms);
	if (l->level <= threshold) {
		va_start(ap, fmt);
		chat_logv_tag(l->level, NULL, fmt, ap);
		va_end(ap);
	}
	if (l->interval_ms) {
		l->running = 1;
		l->since_ms = now_ms;
	}
	return 1;
}

void chat_log_limit_flush(struct chat_log_limit *l, uint64_t now_ms)
{
	if (l->running && now_ms - l->since_ms >= l->interval_ms)
		limit_summary(l, now_ms);
}
