/* Logging: the limiter of repeated events (chat_log_limited), through the
 * sink so every line is seen. */
#include "log.h"
#include "testutils.h"

static char lines[16][1200];
static int nlines;

static void sink(void *arg, int level, const char *line)
{
	(void)arg;
	(void)level;
	if (nlines < 16)
		snprintf(lines[nlines], sizeof(lines[0]), "%s", line);
	nlines++;
}

static void test_limit(void)
{
	struct chat_log_limit l = { .kind = "odd events", .level = CHAT_LOG_WARN, .interval_ms = 10000 };

	nlines = 0;
	/* The first is logged; the next 2,499 within 10 s are counted. */
	CHECK_EQ_INT(chat_log_limited(&l, 1000, "event %d", 0), 1);
	for (int i = 1; i < 2500; i++)
		CHECK_EQ_INT(chat_log_limited(&l, 1000 + (uint64_t)i, "event %d", i), 0);
	CHECK_EQ_INT(nlines, 1);
	CHECK_STR_CONTAINS(lines[0], "warn: event 0");
	/* Not yet over: flush says nothing. */
	chat_log_limit_flush(&l, 10999);
	CHECK_EQ_INT(nlines, 1);
	/* Over: one count line, with the digits grouped. */
	chat_log_limit_flush(&l, 11000);
	CHECK_EQ_INT(nlines, 2);
	CHECK_STR_CONTAINS(lines[1], "warn: ... and 2,499 more odd events in the last 10 s");
	chat_log_limit_flush(&l, 30000); /* nothing more to say */
	CHECK_EQ_INT(nlines, 2);

	/* After a quiet spell the next event is logged at once. */
	CHECK_EQ_INT(chat_log_limited(&l, 40000, "event %s", "late"), 1);
	CHECK_EQ_INT(nlines, 3);
	CHECK_STR_CONTAINS(lines[2], "event late");
	/* Without a flush, the count comes before the next logged line. */
	CHECK_EQ_INT(chat_log_limited(&l, 41000, "x"), 0);
	CHECK_EQ_INT(chat_log_limited(&l, 52000, "event %s", "next"), 1);
	CHECK_EQ_INT(nlines, 5);
	CHECK_STR_CONTAINS(lines[3], "... and 1 more odd events in the last 12 s");
	CHECK_STR_CONTAINS(lines[4], "event next");
	/* A single event in an interval leaves no count line. */
	chat_log_limit_flush(&l, 70000);
	CHECK_EQ_INT(nlines, 5);

	/* interval 0: every event is logged. */
	struct chat_log_limit all = { .kind = "x", .level = CHAT_LOG_INFO };
	for (int i = 0; i < 5; i++)
		CHECK_EQ_INT(chat_log_limited(&all, 5, "all %d", i), 1);
	CHECK_EQ_INT(nlines, 10);

	/* Below the log level: counted the same, nothing printed. */
	struct chat_log_limit dbg = { .kind = "d", .level = CHAT_LOG_DEBUG, .interval_ms = 1000 };
	CHECK_EQ_INT(chat_log_limited(&dbg, 0, "hidden"), 1);
	CHECK_EQ_INT(chat_log_limited(&dbg, 1, "hidden"), 0);
	chat_log_limit_flush(&dbg, 5000);
	CHECK_EQ_INT(nlines, 10);

	/* Large counts. */
	struct chat_log_limit big = { .kind = "things", .level = CHAT_LOG_ERROR, .interval_ms = 1000 };
	chat_log_limited(&big, 0, "first");
	big.suppressed = 1234567890123ull;
	chat_log_limit_flush(&big, 1000);
	CHECK_STR_CONTAINS(lines[11], "... and 1,234,567,890,123 more things in the last 1 s");
}

int main(void)
{
	chat_log_set_sink(sink, NULL);
	test_limit();
	chat_log_set_sink(NULL, NULL);
	return test_done("test_log");
}
