/* Logging: the limiter of repeated events (chat_log_limited), through the
 * sink so every line is seen; a log file (ISO 8601 timestamps with the UTC
 * offset, reopened by name after a rename, one that cannot be opened). */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <chat/error.h>

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

/* "2026-12-03T10:31:27.463+05:30 test-log info: " */
static int iso_line(const char *l, const char *offset)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddd";

	for (size_t i = 0; i < sizeof(shape) - 1; i++)
		if (shape[i] == 'd' ? (l[i] < '0' || l[i] > '9') : l[i] != shape[i])
			return 0;
	return !strncmp(l + sizeof(shape) - 1, offset, strlen(offset));
}

static void test_file(void)
{
	char dir[] = "/tmp/test_log.XXXXXX", path[256], moved[256], bad[256], err[512];
	uint8_t *text;
	size_t len;

	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/relay.log", dir);
	snprintf(moved, sizeof(moved), "%s/relay.log.1", dir);
	snprintf(bad, sizeof(bad), "%s/none/relay.log", dir);
	setenv("TZ", "XYZ-05:30", 1); /* UTC+05:30 */
	tzset();
	chat_log_set_program("test-log");
	CHECK_EQ_INT(chat_log_open(path, sizeof(err), err), CHAT_OK);
	CHECK(!strcmp(chat_log_destination(), path));
	CHECK(!chat_log_to_stderr());
	chat_info("first %d", 1);
	chat_warn("second");
	text = test_load_file(path, &len);
	CHECK(iso_line((char *)text, "+05:30 test-log info: first 1\n"));
	char *second = strchr((char *)text, '\n') + 1;
	CHECK(iso_line(second, "+05:30 test-log warn: second\n"));
	free(text);
	/* logrotate: renamed, then reopened by name. */
	CHECK_EQ_INT(rename(path, moved), 0);
	chat_info("still the old file");
	CHECK_EQ_INT(chat_log_reopen(sizeof(err), err), CHAT_OK);
	chat_info("the new file");
	text = test_load_file(path, &len);
	CHECK_STR_CONTAINS((char *)text, "info: the new file\n");
	CHECK(!strstr((char *)text, "old file"));
	free(text);
	text = test_load_file(moved, &len);
	CHECK_STR_CONTAINS((char *)text, "info: still the old file\n");
	free(text);
	/* Cannot be opened: said, the file in use kept. */
	CHECK_EQ_INT(chat_log_open(bad, sizeof(err), err), CHAT_ERR_IO);
	CHECK_STR_CONTAINS(err, "cannot open the log file ");
	CHECK_STR_CONTAINS(err, bad);
	CHECK(!strcmp(chat_log_destination(), path));
	chat_info("kept");
	text = test_load_file(path, &len);
	CHECK_STR_CONTAINS((char *)text, "info: kept\n");
	free(text);
	CHECK_EQ_INT(chat_log_open(dir, sizeof(err), err), CHAT_ERR_IO); /* a directory */
	CHECK_STR_CONTAINS(err, "Is a directory");
	/* Back to stderr. */
	CHECK_EQ_INT(chat_log_open("stderr", sizeof(err), err), CHAT_OK);
	CHECK(chat_log_to_stderr());
	CHECK(!strcmp(chat_log_destination(), "stderr"));
	CHECK_EQ_INT(chat_log_reopen(sizeof(err), err), CHAT_OK); /* nothing to do */
	unlink(path);
	unlink(moved);
	rmdir(dir);
}

int main(void)
{
	chat_log_set_sink(sink, NULL);
	test_limit();
	chat_log_set_sink(NULL, NULL);
	test_file();
	return test_done("test_log");
}
