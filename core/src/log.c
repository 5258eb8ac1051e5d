#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *program = "chat";
static int threshold = CHAT_LOG_INFO;
static const char *const names[] = { "error", "warn", "info", "debug" };
static void (*sink)(void *arg, int level, const char *line);
static void *sink_arg;

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

void chat_logv_tag(int level, const char *tag, const char *fmt, va_list ap)
{
	char stamp[32];
	struct timespec ts;
	struct tm tm;

	if (level > threshold)
		return;
	if (level < CHAT_LOG_ERROR)
		level = CHAT_LOG_ERROR;
	if (level > CHAT_LOG_DEBUG)
		level = CHAT_LOG_DEBUG;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
	/* One fprintf per line keeps lines whole when several processes share a terminal. */
	char line[1024];
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0)
		return;
	if (sink) {
		char full[1200];
		snprintf(full, sizeof(full), "%s: %s%s%s%s", names[level], tag ? "[" : "", tag ? tag : "",
		         tag ? "] " : "", line);
		sink(sink_arg, level, full);
		return;
	}
	fprintf(stderr, "%s.%03ld %s %s: %s%s%s%s\n", stamp, ts.tv_nsec / 1000000,
	        program, names[level], tag ? "[" : "", tag ? tag : "", tag ? "] " : "", line);
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
