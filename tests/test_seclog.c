/* The encrypted log: round trip, wrong passphrase, and every kind of damage
 * (a flipped bit anywhere, truncation at every length, records swapped or
 * removed, the trailer removed) is detected before any record is shown. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chat/error.h>

#include "seclog.h"
#include "testutils.h"

#define PASS "correct horse battery staple"
#define ITER 2 /* fast: the tests are about the format, not PBKDF2's cost */

static char dir[256];

struct seen {
	size_t n;
	char peers[64][256];
	char texts[64][128];
	int dirs[64];
	int64_t times[64];
	size_t lens[64];
};

static int collect(void *arg, const struct chat_seclog_record *r)
{
	struct seen *s = arg;

	if (s->n < 64) {
		snprintf(s->peers[s->n], sizeof(s->peers[0]), "%s", r->peer);
		snprintf(s->texts[s->n], sizeof(s->texts[0]), "%.*s",
		         (int)(r->text_len < 127 ? r->text_len : 127), r->text);
		s->dirs[s->n] = r->direction;
		s->times[s->n] = r->time_ms;
		s->lens[s->n] = r->text_len;
		CHECK_EQ_INT(r->seq, s->n + 1);
	}
	s->n++;
	return 0;
}

/* Offsets of the records and the trailer of a valid log image. */
static size_t layout(const uint8_t *d, size_t len, size_t *offs, size_t max)
{
	size_t off = 64, n = 0;

	while (off < len && d[off] == 'R') {
		size_t clen = (size_t)d[off + 1] << 24 | (size_t)d[off + 2] << 16 |
		              (size_t)d[off + 3] << 8 | d[off + 4];
		if (n < max)
			offs[n] = off;
		n++;
		off += 1 + 4 + 8 + 16 + clen + 32;
	}
	if (n < max)
		offs[n] = off; /* the trailer */
	return n;
}

static void make_log(const char *path, size_t n, const char *const *texts)
{
	struct chat_seclog *lg;
	char err[512];
	int created = 0;

	unlink(path);
	CHECK_EQ_INT(chat_seclog_open(path, strlen(PASS), PASS, ITER, &lg, &created, NULL,
	                              sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(created, 1);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ_INT(chat_seclog_append(lg, 1700000000000 + (int64_t)i,
		                                i % 2 ? CHAT_SECLOG_RECEIVED : CHAT_SECLOG_SENT,
		                                i % 2 ? "bob" : "carol", strlen(texts[i]), texts[i],
		                                sizeof(err), err), CHAT_OK);
	chat_seclog_close(lg);
}

/* Reading must fail with problem `want` (0: any), show nothing, and say msg. */
static void expect_bad(const char *path, int want, const char *msg, const char *what)
{
	struct seen s = { 0 };
	char err[512] = "";
	int problem = -1;
	int rc = chat_seclog_read(path, strlen(PASS), PASS, collect, &s, NULL, &problem,
	                          sizeof(err), err);

	if (rc == CHAT_OK || s.n || (want && problem != want) || (msg && !strstr(err, msg)))
		fprintf(stderr, "%s: rc %d, problem %d (want %d), %zu shown, '%s'\n", what, rc,
		        problem, want, s.n, err);
	CHECK(rc != CHAT_OK);
	CHECK_EQ_INT(s.n, 0);
	if (want)
		CHECK_EQ_INT(problem, want);
	if (msg)
		CHECK_STR_CONTAINS(err, msg);
	/* Opening for appending refuses it too. */
	struct chat_seclog *lg = NULL;
	CHECK(chat_seclog_open(path, strlen(PASS), PASS, ITER, &lg, NULL, NULL, sizeof(err), err) != CHAT_OK);
	CHECK(lg == NULL);
	chat_seclog_close(lg);
}

static void test_round_trip(void)
{
	char path[320], err[512], text[200];
	struct chat_seclog *lg;
	struct seen s = { 0 };
	uint64_t count = 0;
	int created = -1;

	snprintf(path, sizeof(path), "%s/rt.log", dir);
	CHECK_EQ_INT(chat_seclog_open(path, strlen(PASS), PASS, ITER, &lg, &created, NULL,
	                              sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(created, 1);
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	/* Lengths around the block size, empty text, non-ASCII, newlines. */
	for (int i = 0; i < 40; i++) {
		size_t n = (size_t)(i * 7) % 120;
		for (size_t j = 0; j < n; j++)
			text[j] = (char)('a' + (i + (int)j) % 26);
		if (i == 5)
			n = (size_t)snprintf(text, sizeof(text), "caf\xc3\xa9\nline two");
		CHECK_EQ_INT(chat_seclog_append(lg, 1700000000000 + i, i % 3 ? CHAT_SECLOG_RECEIVED : CHAT_SECLOG_SENT,
		                                i % 2 ? "bob" : "alice", n, text, sizeof(err), err), CHAT_OK);
	}
	CHECK_EQ_INT(chat_seclog_count(lg), 40);
	/* A second writer is locked out. */
	struct chat_seclog *other = NULL;
	int problem = 0;
	CHECK(chat_seclog_open(path, strlen(PASS), PASS, ITER, &other, NULL, &problem, sizeof(err), err) != CHAT_OK);
	CHECK_EQ_INT(problem, CHAT_SECLOG_LOCKED);
	CHECK_STR_CONTAINS(err, "in use");
	/* Reading while it is open works (a snapshot). */
	CHECK_EQ_INT(chat_seclog_read(path, strlen(PASS), PASS, NULL, NULL, &count, NULL, sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(count, 40);
	chat_seclog_close(lg);

	CHECK_EQ_INT(chat_seclog_read(path, strlen(PASS), PASS, collect, &s, &count, NULL,
	                              sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(s.n, 40);
	CHECK_EQ_INT(count, 40);
	for (int i = 0; i < 40; i++) {
		CHECK_EQ_INT(s.times[i], 1700000000000 + i);
		CHECK_EQ_INT(s.dirs[i], i % 3 ? CHAT_SECLOG_RECEIVED : CHAT_SECLOG_SENT);
		CHECK(strcmp(s.peers[i], i % 2 ? "bob" : "alice") == 0);
		if (i != 5)
			CHECK_EQ_INT(s.lens[i], (size_t)(i * 7) % 120);
	}
	CHECK(strcmp(s.texts[5], "caf\xc3\xa9\nline two") == 0);
	CHECK_EQ_INT(s.lens[0], 0);

	/* Reopen and append: the chain goes on and still verifies. */
	CHECK_EQ_INT(chat_seclog_open(path, strlen(PASS), PASS, 999, &lg, &created, NULL,
	                              sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(created, 0);
	CHECK_EQ_INT(chat_seclog_count(lg), 40);
	for (int i = 0; i < 5; i++)
		CHECK_EQ_INT(chat_seclog_append(lg, 1800000000000 + i, CHAT_SECLOG_SENT, "dave", 5,
		                                "again", sizeof(err), err), CHAT_OK);
	chat_seclog_close(lg);
	memset(&s, 0, sizeof(s));
	CHECK_EQ_INT(chat_seclog_read(path, strlen(PASS), PASS, collect, &s, &count, NULL,
	                              sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(s.n, 45);
	CHECK(strcmp(s.peers[44], "dave") == 0 && strcmp(s.texts[44], "again") == 0);
	CHECK_EQ_INT(s.times[40], 1800000000000);

	/* A large text (60 KiB) and the maximum peer name. */
	char *big = malloc(61440), peer[256];
	memset(big, 'x', 61440);
	memset(peer, 'p', 255);
	peer[255] = '\0';
	CHECK_EQ_INT(chat_seclog_open(path, strlen(PASS), PASS, ITER, &lg, NULL, NULL, sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(chat_seclog_append(lg, 1, CHAT_SECLOG_RECEIVED, peer, 61440, big, sizeof(err), err), CHAT_OK);
	CHECK(chat_seclog_append(lg, 1, 3, "x", 1, "x", sizeof(err), err) == CHAT_ERR_INVALID);
	chat_seclog_close(lg);
	memset(&s, 0, sizeof(s));
	CHECK_EQ_INT(chat_seclog_read(path, strlen(PASS), PASS, collect, &s, &count, NULL,
	                              sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(s.n, 46);
	CHECK_EQ_INT(s.lens[45], 61440);
	free(big);

	/* The plaintext appears nowhere in the file. */
	size_t len;
	uint8_t *d = test_load_file(path, &len);
	CHECK(memmem(d, len, "again", 5) == NULL);
	CHECK(memmem(d, len, "dave", 4) == NULL);
	CHECK(memmem(d, len, "line two", 8) == NULL);
	free(d);
}

static void test_wrong_passphrase(void)
{
	char path[320], err[512];
	const char *texts[] = { "one", "two" };
	struct chat_seclog *lg = NULL;
	struct seen s = { 0 };
	int problem = 0;

	snprintf(path, sizeof(path), "%s/pw.log", dir);
	make_log(path, 2, texts);
	CHECK_EQ_INT(chat_seclog_read(path, 5, "wrong", collect, &s, NULL, &problem, sizeof(err), err),
	             CHAT_ERR_AUTH);
	CHECK_EQ_INT(problem, CHAT_SECLOG_HEADER);
	CHECK_STR_CONTAINS(err, "pw.log: wrong passphrase or corrupted header");
	CHECK_EQ_INT(s.n, 0);
	CHECK_EQ_INT(chat_seclog_open(path, 5, "wrong", ITER, &lg, NULL, &problem, sizeof(err), err),
	             CHAT_ERR_AUTH);
	CHECK(lg == NULL);
	/* An empty passphrase is a different passphrase. */
	CHECK_EQ_INT(chat_seclog_read(path, 0, "", NULL, NULL, NULL, NULL, sizeof(err), err), CHAT_ERR_AUTH);
	/* The right one still works, and the file is untouched. */
	CHECK_EQ_INT(chat_seclog_read(path, strlen(PASS), PASS, collect, &s, NULL, NULL, sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(s.n, 2);
}

static void test_bit_flips(void)
{
	char path[320], bad[320];
	const char *texts[] = { "hi", "a somewhat longer message of 40 bytes..", "" };
	size_t len;
	uint8_t *d;

	snprintf(path, sizeof(path), "%s/flip.log", dir);
	snprintf(bad, sizeof(bad), "%s/flip-bad.log", dir);
	make_log(path, 3, texts);
	d = test_load_file(path, &len);
	CHECK(len > 64 + 3 * 61 + 41);
	for (size_t i = 0; i < len; i++) {
		char what[64];
		d[i] ^= (uint8_t)(1u << (i % 8));
		test_save_file(bad, len, d);
		d[i] ^= (uint8_t)(1u << (i % 8));
		snprintf(what, sizeof(what), "bit flip at byte %zu", i);
		expect_bad(bad, 0, NULL, what);
	}
	/* A flip inside the MAC'd part of record 2 names it. */
	size_t offs[8];
	CHECK_EQ_INT(layout(d, len, offs, 8), 3);
	d[offs[1] + 20] ^= 0x40;
	test_save_file(bad, len, d);
	expect_bad(bad, CHAT_SECLOG_RECORD, "flip-bad.log: record 2 of 3: integrity check failed (modified or reordered)",
	           "flip in record 2");
	d[offs[1] + 20] ^= 0x40;
	/* In the trailer's count or MAC. */
	d[offs[3] + 8] ^= 1;
	test_save_file(bad, len, d);
	expect_bad(bad, CHAT_SECLOG_TRAILER, "trailer integrity check failed", "flip in the trailer");
	d[offs[3] + 8] ^= 1;
	/* In the header's salt: the keys differ, so it reads as a wrong passphrase. */
	d[20] ^= 1;
	test_save_file(bad, len, d);
	expect_bad(bad, CHAT_SECLOG_HEADER, "wrong passphrase or corrupted header", "flip in the salt");
	d[20] ^= 1;
	d[0] ^= 1;
	test_save_file(bad, len, d);
	expect_bad(bad, CHAT_SECLOG_NOT_A_LOG, "not a chat-peer log", "flip in the magic");
	d[0] ^= 1;
	test_save_file(bad, len, d);
	CHECK_EQ_INT(chat_seclog_read(bad, strlen(PASS), PASS, NULL, NULL, NULL, NULL, 0, NULL), CHAT_OK);
	free(d);
}

static void test_truncation(void)
{
	char path[320], bad[320], msg[128];
	const char *texts[] = { "first", "second", "third" };
	size_t len, offs[8];
	uint8_t *d;

	snprintf(path, sizeof(path), "%s/cut.log", dir);
	snprintf(bad, sizeof(bad), "%s/cut-bad.log", dir);
	make_log(path, 3, texts);
	d = test_load_file(path, &len);
	CHECK_EQ_INT(layout(d, len, offs, 8), 3);
	for (size_t n = 0; n < len; n++) {
		char what[64];
		test_save_file(bad, n, d);
		snprintf(what, sizeof(what), "cut at %zu of %zu", n, len);
		int boundary = n == 64 || n == offs[1] || n == offs[2] || n == offs[3];
		expect_bad(bad, n == 0 ? CHAT_SECLOG_NOT_A_LOG : boundary ? CHAT_SECLOG_TRUNCATED : CHAT_SECLOG_MALFORMED,
		           NULL, what);
	}
	/* The trailer removed: the records are all there, the end is not. */
	test_save_file(bad, offs[3], d);
	expect_bad(bad, CHAT_SECLOG_TRUNCATED, "cut-bad.log: truncated after record 3: trailer missing",
	           "trailer removed");
	/* Cut at a record boundary and a trailer made up from nothing: the MAC fails. */
	uint8_t *e = malloc(len);
	memcpy(e, d, offs[2]);
	memcpy(e + offs[2], d + offs[3], len - offs[3]);
	test_save_file(bad, offs[2] + (len - offs[3]), e);
	expect_bad(bad, CHAT_SECLOG_TRAILER, "trailer integrity check failed", "last record removed, trailer kept");
	/* Bytes after the trailer. */
	memcpy(e, d, len);
	test_save_file(bad, len, d);
	FILE *f = fopen(bad, "ab");
	fputc('x', f);
	fclose(f);
	expect_bad(bad, CHAT_SECLOG_MALFORMED, "1 unexpected bytes after the trailer", "trailing garbage");
	snprintf(msg, sizeof(msg), "record 2 is cut short");
	test_save_file(bad, offs[1] + 10, d);
	expect_bad(bad, CHAT_SECLOG_MALFORMED, msg, "cut inside record 2");
	free(e);
	free(d);
}

static void test_reorder(void)
{
	char path[320], bad[320];
	/* Same lengths, so swapping keeps the structure intact and only the chain can tell. */
	const char *texts[] = { "message 1", "message 2", "message 3", "message 4" };
	size_t len, offs[8];
	uint8_t *d, *e;

	snprintf(path, sizeof(path), "%s/order.log", dir);
	snprintf(bad, sizeof(bad), "%s/order-bad.log", dir);
	make_log(path, 4, texts);
	d = test_load_file(path, &len);
	e = malloc(len);
	CHECK_EQ_INT(layout(d, len, offs, 8), 4);
	size_t rlen = offs[2] - offs[1];
	CHECK_EQ_INT(offs[3] - offs[2], rlen);
	/* Swap records 2 and 3. */
	memcpy(e, d, len);
	memcpy(e + offs[1], d + offs[2], rlen);
	memcpy(e + offs[2], d + offs[1], rlen);
	test_save_file(bad, len, e);
	expect_bad(bad, CHAT_SECLOG_RECORD, "record 2 of 4: integrity check failed (modified or reordered)",
	           "records 2 and 3 swapped");
	/* Delete record 2. */
	memcpy(e, d, offs[1]);
	memcpy(e + offs[1], d + offs[2], len - offs[2]);
	test_save_file(bad, len - rlen, e);
	expect_bad(bad, CHAT_SECLOG_RECORD, "record 2 of 3: integrity check failed", "record 2 deleted");
	/* Delete record 1: its successor's chain starts from the header's MAC. */
	memcpy(e, d, offs[0]);
	memcpy(e + offs[0], d + offs[1], len - offs[1]);
	test_save_file(bad, len - rlen, e);
	expect_bad(bad, CHAT_SECLOG_RECORD, "record 1 of 3: integrity check failed", "record 1 deleted");
	/* A record duplicated. */
	memcpy(e, d, offs[2]);
	test_save_file(bad, offs[2], e);
	FILE *f = fopen(bad, "ab");
	fwrite(d + offs[1], 1, rlen, f);
	fwrite(d + offs[2], 1, len - offs[2], f);
	fclose(f);
	expect_bad(bad, CHAT_SECLOG_RECORD, "record 3 of 5: integrity check failed", "record 2 repeated");
	/* A record from another log (same passphrase, other salt) spliced in. */
	char other[320];
	snprintf(other, sizeof(other), "%s/other.log", dir);
	make_log(other, 4, texts);
	size_t olen, ooffs[8];
	uint8_t *o = test_load_file(other, &olen);
	CHECK_EQ_INT(layout(o, olen, ooffs, 8), 4);
	memcpy(e, d, len);
	memcpy(e + offs[2], o + ooffs[2], rlen);
	test_save_file(bad, len, e);
	expect_bad(bad, CHAT_SECLOG_RECORD, "record 3 of 4", "record from another log");
	free(o);
	free(e);
	free(d);
}

static void test_edges(void)
{
	char path[320], err[512];
	struct chat_seclog *lg = NULL;
	int problem = 0;

	snprintf(path, sizeof(path), "%s/empty.log", dir);
	test_save_file(path, 0, (const uint8_t *)"");
	CHECK(chat_seclog_open(path, strlen(PASS), PASS, ITER, &lg, NULL, &problem, sizeof(err), err) != CHAT_OK);
	CHECK_EQ_INT(problem, CHAT_SECLOG_NOT_A_LOG);
	CHECK_STR_CONTAINS(err, "empty file");
	snprintf(path, sizeof(path), "%s/text.log", dir);
	test_save_file(path, 12, (const uint8_t *)"hello world\n");
	CHECK(chat_seclog_read(path, 1, "x", NULL, NULL, NULL, &problem, sizeof(err), err) != CHAT_OK);
	CHECK_EQ_INT(problem, CHAT_SECLOG_NOT_A_LOG);
	snprintf(path, sizeof(path), "%s/missing.log", dir);
	CHECK_EQ_INT(chat_seclog_read(path, 1, "x", NULL, NULL, NULL, NULL, sizeof(err), err), CHAT_ERR_NOTFOUND);
	CHECK(chat_seclog_open(path, 1, "x", 0, &lg, NULL, NULL, sizeof(err), err) == CHAT_ERR_INVALID);
	/* A fresh log with no records verifies. */
	CHECK_EQ_INT(chat_seclog_open(path, 1, "x", ITER, &lg, NULL, NULL, sizeof(err), err), CHAT_OK);
	chat_seclog_close(lg);
	uint64_t count = 99;
	CHECK_EQ_INT(chat_seclog_read(path, 1, "x", NULL, NULL, &count, NULL, sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(count, 0);
}

/* Records appended without their fsync are in the file at once (a process
 * killed after the append leaves them there); chat_seclog_sync makes them
 * durable. */
static void test_unsynced(void)
{
	char path[320], err[512];
	struct chat_seclog *lg = NULL;
	struct seen s = { 0 };
	uint64_t count = 0;

	snprintf(path, sizeof(path), "%s/unsynced.log", dir);
	CHECK_EQ_INT(chat_seclog_open(path, 1, "x", ITER, &lg, NULL, NULL, sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(chat_seclog_sync(lg, sizeof(err), err), CHAT_OK); /* nothing to sync */
	CHECK_EQ_INT(chat_seclog_append(lg, 1, CHAT_SECLOG_SENT, "bob", 3, "one", sizeof(err), err),
	             CHAT_OK);
	CHECK_EQ_INT(chat_seclog_append_unsynced(lg, 2, CHAT_SECLOG_RECEIVED, "bob", 3, "two",
	                                         sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(chat_seclog_read(path, 1, "x", collect, &s, &count, NULL, sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(count, 2);
	CHECK_EQ_INT(chat_seclog_append_unsynced(lg, 3, CHAT_SECLOG_RECEIVED, "bob", 5, "three",
	                                         sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(chat_seclog_sync(lg, sizeof(err), err), CHAT_OK);
	chat_seclog_close(lg);
	memset(&s, 0, sizeof(s));
	CHECK_EQ_INT(chat_seclog_read(path, 1, "x", collect, &s, &count, NULL, sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(count, 3);
	CHECK(strcmp(s.texts[2], "three") == 0);
	CHECK_EQ_INT(s.dirs[1], CHAT_SECLOG_RECEIVED);
	CHECK_EQ_INT(chat_seclog_sync(NULL, sizeof(err), err), CHAT_ERR_INVALID);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "%s/seclog.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_round_trip();
	test_wrong_passphrase();
	test_bit_flips();
	test_truncation();
	test_reorder();
	test_edges();
	test_unsynced();
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return test_done("test_seclog");
}
