#include "log.h"

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
