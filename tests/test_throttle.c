/* Throttling: the exact wait sequence, waits running down, success
 * clearing a key, keys kept apart (long ones too), no overflow at the
 * extremes, a table that stays bounded without giving up a key that is
 * still waiting, a count forgotten after a quiet time (registrations), a
 * state put back as saved (restarts); and the relay's login policy: an
 * attacker's failures from one address do not make the owner wait at
 * another, while a guard per account engages after many more. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chat/error.h>

#include "testutils.h"
#include "throttle.h"

static struct chat_throttle *make(unsigned free_failures, int64_t base, int64_t max, size_t n)
{
	struct chat_throttle_config cfg = { free_failures, base, max, n, 0 };
	struct chat_throttle *t = NULL;

	if (chat_throttle_new(&cfg, &t) != CHAT_OK || !t)
		abort();
	return t;
}

static void test_sequence(void)
{
	struct chat_throttle *t = make(3, 1000, 8000, 16);
	static const int64_t want[] = { 0, 0, 0, 1000, 2000, 4000, 8000, 8000, 8000, 8000 };
	int64_t now = 1000000;

	CHECK_EQ_INT(chat_throttle_wait(t, "alice", now), 0);
	CHECK_EQ_INT(chat_throttle_failures(t, "alice"), 0);
	CHECK_EQ_INT(chat_throttle_entries(t), 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		CHECK_EQ_INT(chat_throttle_fail(t, "alice", now), want[i]);
		CHECK_EQ_INT(chat_throttle_failures(t, "alice"), i + 1);
		CHECK_EQ_INT(chat_throttle_wait(t, "alice", now), want[i]);
		now += want[i]; /* the caller waited exactly as long as told */
		CHECK_EQ_INT(chat_throttle_wait(t, "alice", now), 0);
	}
	CHECK_EQ_INT(chat_throttle_entries(t), 1);

	/* Success clears the key entirely. */
	chat_throttle_success(t, "alice");
	CHECK_EQ_INT(chat_throttle_failures(t, "alice"), 0);
	CHECK_EQ_INT(chat_throttle_wait(t, "alice", now), 0);
	CHECK_EQ_INT(chat_throttle_entries(t), 0);
	CHECK_EQ_INT(chat_throttle_fail(t, "alice", now), 0); /* free again */
	chat_throttle_success(t, "nobody");                   /* unknown: no effect */
	CHECK_EQ_INT(chat_throttle_entries(t), 1);
	chat_throttle_free(t);
}

static void test_running_down(void)
{
	struct chat_throttle *t = make(1, 1000, 8000, 16);
	int64_t t0 = 50000;

	CHECK_EQ_INT(chat_throttle_fail(t, "10.0.0.1", t0 - 10), 0);
	CHECK_EQ_INT(chat_throttle_fail(t, "10.0.0.1", t0), 1000);
	CHECK_EQ_INT(chat_throttle_wait(t, "10.0.0.1", t0 + 1), 999);
	CHECK_EQ_INT(chat_throttle_wait(t, "10.0.0.1", t0 + 300), 700);
	CHECK_EQ_INT(chat_throttle_wait(t, "10.0.0.1", t0 + 999), 1);
	CHECK_EQ_INT(chat_throttle_wait(t, "10.0.0.1", t0 + 1000), 0);
	CHECK_EQ_INT(chat_throttle_wait(t, "10.0.0.1", t0 + 100000), 0);
	/* The failures stay counted after the wait ends: the next one doubles. */
	CHECK_EQ_INT(chat_throttle_failures(t, "10.0.0.1"), 2);
	CHECK_EQ_INT(chat_throttle_fail(t, "10.0.0.1", t0 + 5000), 2000);
	/* Counted from the last failure, even one made while still waiting. */
	CHECK_EQ_INT(chat_throttle_fail(t, "10.0.0.1", t0 + 5500), 4000);
	CHECK_EQ_INT(chat_throttle_wait(t, "10.0.0.1", t0 + 6500), 3000);
	/* A clock that steps back never yields more than the full wait. */
	CHECK_EQ_INT(chat_throttle_wait(t, "10.0.0.1", t0), 4000);
	chat_throttle_free(t);
}

static void test_independent(void)
{
	struct chat_throttle *t = make(2, 100, 1000, 16);

	for (int i = 0; i < 4; i++)
		chat_throttle_fail(t, "alice", 0);
	CHECK_EQ_INT(chat_throttle_wait(t, "alice", 0), 200);
	CHECK_EQ_INT(chat_throttle_wait(t, "bob", 0), 0);
	CHECK_EQ_INT(chat_throttle_fail(t, "bob", 0), 0);
	CHECK_EQ_INT(chat_throttle_failures(t, "bob"), 1);
	CHECK_EQ_INT(chat_throttle_failures(t, "alic"), 0);
	CHECK_EQ_INT(chat_throttle_failures(t, "alice "), 0);
	CHECK_EQ_INT(chat_throttle_failures(t, ""), 0);
	chat_throttle_fail(t, "", 0); /* the empty key is a key */
	CHECK_EQ_INT(chat_throttle_failures(t, ""), 1);
	chat_throttle_success(t, "bob");
	CHECK_EQ_INT(chat_throttle_failures(t, "alice"), 4);
	CHECK_EQ_INT(chat_throttle_entries(t), 2);
	chat_throttle_free(t);
}

static void test_long_keys(void)
{
	struct chat_throttle *t = make(1, 10, 1000, 16);
	char a[300], b[300], prefix[64], k63[64], k64[65];

	memset(a, 'x', sizeof(a) - 1);
	a[sizeof(a) - 1] = '\0';
	memcpy(b, a, sizeof(b));
	b[150] = 'y'; /* differs far past the 63rd byte */
	memcpy(prefix, a, 63);
	prefix[63] = '\0';
	memcpy(k63, a, sizeof(k63));
	k63[63] = '\0';
	memcpy(k64, a, sizeof(k64));
	k64[64] = '\0';

	chat_throttle_fail(t, a, 0);
	chat_throttle_fail(t, a, 0);
	CHECK_EQ_INT(chat_throttle_failures(t, a), 2);
	CHECK_EQ_INT(chat_throttle_wait(t, a, 0), 10);
	CHECK_EQ_INT(chat_throttle_failures(t, b), 0);
	CHECK_EQ_INT(chat_throttle_failures(t, prefix), 0);
	chat_throttle_fail(t, b, 0);
	chat_throttle_fail(t, k63, 0);
	chat_throttle_fail(t, k63, 0);
	chat_throttle_fail(t, k63, 0);
	chat_throttle_fail(t, k64, 0);
	CHECK_EQ_INT(chat_throttle_failures(t, a), 2);
	CHECK_EQ_INT(chat_throttle_failures(t, b), 1);
	CHECK_EQ_INT(chat_throttle_failures(t, k63), 3);
	CHECK_EQ_INT(chat_throttle_failures(t, k64), 1);
	CHECK_EQ_INT(chat_throttle_entries(t), 4);
	chat_throttle_success(t, a);
	CHECK_EQ_INT(chat_throttle_failures(t, a), 0);
	CHECK_EQ_INT(chat_throttle_failures(t, b), 1);
	chat_throttle_free(t);
}

static void test_bound(void)
{
	const size_t max = 32;
	struct chat_throttle *t = make(1, 1000, 60000, max);
	char key[32];
	int64_t now = 0;

	/* victim waits 60 s from now; the flood below happens within that time. */
	for (int i = 0; i < 8; i++)
		chat_throttle_fail(t, "victim", now);
	CHECK_EQ_INT(chat_throttle_wait(t, "victim", now), 60000);
	for (size_t i = 0; i < max * 10; i++) {
		snprintf(key, sizeof(key), "198.51.100.%zu", i);
		now += 10;
		CHECK_EQ_INT(chat_throttle_fail(t, key, now), 0);
		CHECK_EQ_INT(chat_throttle_failures(t, key), 1);
		CHECK(chat_throttle_entries(t) <= max);
		if (chat_throttle_failures(t, "victim") != 8) {
			fprintf(stderr, "victim evicted at key %zu\n", i);
			test_failures++;
			break;
		}
	}
	CHECK_EQ_INT(chat_throttle_entries(t), max);
	CHECK_EQ_INT(chat_throttle_wait(t, "victim", now), 60000 - now);
	/* The oldest flood keys went first; the newest are all still there. */
	CHECK_EQ_INT(chat_throttle_failures(t, "198.51.100.0"), 0);
	for (size_t i = max * 10 - (max - 1); i < max * 10; i++) {
		snprintf(key, sizeof(key), "198.51.100.%zu", i);
		CHECK_EQ_INT(chat_throttle_failures(t, key), 1);
	}
	/* Several waiting keys survive a flood as well, as long as fewer than
	 * max are waiting. */
	for (int k = 0; k < 8; k++) {
		snprintf(key, sizeof(key), "user%d", k);
		chat_throttle_fail(t, key, now);
		chat_throttle_fail(t, key, now); /* waits 1 s */
	}
	for (size_t i = 0; i < max * 10; i++) {
		snprintf(key, sizeof(key), "203.0.113.%zu", i);
		chat_throttle_fail(t, key, now); /* all at the same instant */
		CHECK(chat_throttle_entries(t) <= max);
	}
	for (int k = 0; k < 8; k++) {
		snprintf(key, sizeof(key), "user%d", k);
		CHECK_EQ_INT(chat_throttle_failures(t, key), 2);
	}
	CHECK_EQ_INT(chat_throttle_failures(t, "victim"), 8);
	/* Once its wait has ended longest ago, victim is the one reused: fresh
	 * keys first push out everything whose wait ended before victim's. */
	now += 60000;
	for (size_t i = 0; i < max - 1; i++) {
		snprintf(key, sizeof(key), "fresh%zu", i);
		chat_throttle_fail(t, key, now);
	}
	CHECK_EQ_INT(chat_throttle_failures(t, "victim"), 8);
	CHECK_EQ_INT(chat_throttle_failures(t, "user0"), 0);
	chat_throttle_fail(t, "late", now);
	CHECK_EQ_INT(chat_throttle_failures(t, "victim"), 0);
	CHECK_EQ_INT(chat_throttle_failures(t, "late"), 1);
	CHECK_EQ_INT(chat_throttle_entries(t), max);
	chat_throttle_free(t);

	/* A table of one. */
	t = make(1, 10, 100, 1);
	chat_throttle_fail(t, "a", 0);
	chat_throttle_fail(t, "b", 1);
	CHECK_EQ_INT(chat_throttle_entries(t), 1);
	CHECK_EQ_INT(chat_throttle_failures(t, "a"), 0);
	CHECK_EQ_INT(chat_throttle_failures(t, "b"), 1);
	chat_throttle_free(t);
}

/* Random operations against a small table, checked against a plain array
 * model of the same rules (same eviction choice when waits end apart). */
static void test_model(void)
{
	enum { MAX = 8, KEYS = 20 };
	struct chat_throttle *t = make(2, 5, 40, MAX);
	struct { int used; unsigned f; int64_t until; } m[KEYS];
	char key[16];
	int64_t now = 0;

	memset(m, 0, sizeof(m));
	test_srand(7);
	for (int step = 0; step < 20000; step++) {
		int k = (int)(test_rand() % KEYS);
		snprintf(key, sizeof(key), "k%d", k);
		now += (int64_t)(test_rand() % 3); /* many ties on purpose */
		switch (test_rand() % 4) {
		case 0:
		case 1: {
			if (!m[k].used) {
				int n = 0, oldest = -1;
				for (int j = 0; j < KEYS; j++) {
					if (!m[j].used)
						continue;
					n++;
					if (oldest < 0 || m[j].until < m[oldest].until)
						oldest = j;
				}
				if (n == MAX) {
					/* Ties make the choice implementation-defined: ask the table. */
					int64_t u = m[oldest].until;
					chat_throttle_fail(t, key, now);
					int gone = -1;
					for (int j = 0; j < KEYS; j++) {
						char kj[16];
						snprintf(kj, sizeof(kj), "k%d", j);
						if (j != k && m[j].used && chat_throttle_failures(t, kj) == 0)
							gone = j;
					}
					CHECK(gone >= 0);
					if (gone >= 0) {
						CHECK_EQ_INT(m[gone].until, u);
						m[gone].used = 0;
					}
					m[k].used = 1;
					m[k].f = 1;
					m[k].until = now;
					break;
				}
				m[k].used = 1;
				m[k].f = 0;
			}
			m[k].f++;
			int64_t w = m[k].f <= 2 ? 0 : 5 << (m[k].f - 3 > 4 ? 4 : m[k].f - 3);
			if (w > 40)
				w = 40;
			m[k].until = now + w;
			CHECK_EQ_INT(chat_throttle_fail(t, key, now), w);
			break;
		}
		case 2:
			chat_throttle_success(t, key);
			m[k].used = 0;
			break;
		default:
			CHECK_EQ_INT(chat_throttle_wait(t, key, now),
			             m[k].used && m[k].until > now ? m[k].until - now : 0);
			break;
		}
		size_t n = 0;
		for (int j = 0; j < KEYS; j++)
			n += m[j].used;
		CHECK_EQ_INT(chat_throttle_entries(t), n);
		CHECK_EQ_INT(chat_throttle_failures(t, key), m[k].used ? m[k].f : 0);
		if (test_failures > 20)
			break;
	}
	chat_throttle_free(t);
}

static void test_extremes(void)
{
	struct chat_throttle *t;
	struct chat_throttle_config cfg = { 1, 1, 1, 1, 0 };
	struct chat_throttle_config bad[] = {
		{ 0, 1000, 8000, 16, 0 },  /* free_failures must be >= 1 */
		{ 1, 0, 8000, 16, 0 },     /* no wait at all */
		{ 1, -5, 8000, 16, 0 },
		{ 1, 1000, 999, 16, 0 },   /* max below base */
		{ 1, 1000, 8000, 0, 0 },   /* no room */
		{ 1, 1000, 8000, 16, -1 }, /* a negative quiet time */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = (struct chat_throttle *)1;
		CHECK_EQ_INT(chat_throttle_new(&bad[i], &t), CHAT_ERR_INVALID);
		CHECK(t == NULL);
	}
	CHECK_EQ_INT(chat_throttle_new(NULL, &t), CHAT_ERR_INVALID);
	CHECK_EQ_INT(chat_throttle_new(&cfg, NULL), CHAT_ERR_INVALID);
	chat_throttle_free(NULL);
	CHECK_EQ_INT(chat_throttle_entries(NULL), 0);

	/* Many failures: the shift never overflows, the wait sticks at max. */
	t = make(1, 1, INT64_MAX / 2, 4);
	int64_t prev = 0;
	for (int i = 0; i < 300; i++) {
		int64_t w = chat_throttle_fail(t, "x", 0);
		CHECK(w >= prev);
		CHECK(w <= INT64_MAX / 2);
		prev = w;
	}
	CHECK_EQ_INT(prev, INT64_MAX / 2);
	chat_throttle_free(t);
	t = make(1, INT64_MAX / 3, INT64_MAX, 4);
	CHECK_EQ_INT(chat_throttle_fail(t, "x", 0), 0);
	CHECK_EQ_INT(chat_throttle_fail(t, "x", 0), INT64_MAX / 3);
	CHECK_EQ_INT(chat_throttle_fail(t, "x", 0), INT64_MAX / 3 * 2);
	CHECK_EQ_INT(chat_throttle_fail(t, "x", 0), INT64_MAX);
	CHECK_EQ_INT(chat_throttle_fail(t, "x", 0), INT64_MAX);
	/* Clocks at the edges of int64_t. */
	CHECK_EQ_INT(chat_throttle_fail(t, "x", INT64_MAX - 5), INT64_MAX);
	CHECK_EQ_INT(chat_throttle_wait(t, "x", INT64_MAX - 5), 5);
	CHECK_EQ_INT(chat_throttle_wait(t, "x", INT64_MAX), 0);
	CHECK_EQ_INT(chat_throttle_fail(t, "x", INT64_MIN), INT64_MAX);
	CHECK_EQ_INT(chat_throttle_wait(t, "x", INT64_MIN), INT64_MAX);
	CHECK_EQ_INT(chat_throttle_wait(t, "x", -1), 0); /* until = INT64_MIN + INT64_MAX = -1 */
	CHECK_EQ_INT(chat_throttle_wait(t, "x", INT64_MAX), 0);
	chat_throttle_free(t);
}

/* forget_ms (registrations per address): a key quiet that long starts
 * again from its free failures; one that keeps coming does not. */
static void test_forget(void)
{
	struct chat_throttle_config cfg = { 2, 1000, 4000, 16, 60000 };
	struct chat_throttle *t = NULL;
	int64_t now = 1000000;

	CHECK_EQ_INT(chat_throttle_new(&cfg, &t), CHAT_OK);
	CHECK_EQ_INT(chat_throttle_fail(t, "a:10.0.0.1", now), 0);
	CHECK_EQ_INT(chat_throttle_fail(t, "a:10.0.0.1", now), 0);
	CHECK_EQ_INT(chat_throttle_fail(t, "a:10.0.0.1", now), 1000);
	now += 1000;
	CHECK_EQ_INT(chat_throttle_fail(t, "a:10.0.0.1", now), 2000);
	now += 59999; /* not quite forgotten: the count goes on */
	CHECK_EQ_INT(chat_throttle_wait(t, "a:10.0.0.1", now), 0);
	CHECK_EQ_INT(chat_throttle_fail(t, "a:10.0.0.1", now), 4000);
	CHECK_EQ_INT(chat_throttle_failures(t, "a:10.0.0.1"), 5);
	now += 60000; /* quiet for forget_ms: free again */
	CHECK_EQ_INT(chat_throttle_wait(t, "a:10.0.0.1", now), 0);
	CHECK_EQ_INT(chat_throttle_fail(t, "a:10.0.0.1", now), 0);
	CHECK_EQ_INT(chat_throttle_failures(t, "a:10.0.0.1"), 1);
	CHECK_EQ_INT(chat_throttle_fail(t, "a:10.0.0.1", now), 0);
	CHECK_EQ_INT(chat_throttle_fail(t, "a:10.0.0.1", now), 1000);
	/* Without forget_ms (logins) nothing is forgotten. */
	struct chat_throttle *u = make(1, 1000, 4000, 16);
	chat_throttle_fail(u, "x", 0);
	CHECK_EQ_INT(chat_throttle_fail(u, "x", 0), 1000);
	CHECK_EQ_INT(chat_throttle_fail(u, "x", INT64_MAX / 2), 2000);
	chat_throttle_free(u);
	chat_throttle_free(t);
}

/* A state put back as saved (read from the database at a restart) imposes
 * the wait the failures had imposed, running from the last one. */
static void test_restore(void)
{
	struct chat_throttle *t = make(3, 1000, 60000, 4), *ref = make(3, 1000, 60000, 4);
	int64_t t0 = 5000000;

	for (int i = 0; i < 6; i++)
		chat_throttle_fail(ref, "alice", t0);
	CHECK_EQ_INT(chat_throttle_wait(ref, "alice", t0), 4000);
	CHECK_EQ_INT(chat_throttle_restore(t, "alice", 6, t0), CHAT_OK);
	CHECK_EQ_INT(chat_throttle_failures(t, "alice"), 6);
	CHECK_EQ_INT(chat_throttle_wait(t, "alice", t0), 4000);
	CHECK_EQ_INT(chat_throttle_wait(t, "alice", t0 + 1500), 2500);
	CHECK_EQ_INT(chat_throttle_wait(t, "alice", t0 + 4000), 0);
	/* and goes on counting from there */
	CHECK_EQ_INT(chat_throttle_fail(t, "alice", t0 + 4000), 8000);
	/* below the free failures: counted, no wait */
	CHECK_EQ_INT(chat_throttle_restore(t, "bob", 2, t0), CHAT_OK);
	CHECK_EQ_INT(chat_throttle_wait(t, "bob", t0), 0);
	CHECK_EQ_INT(chat_throttle_fail(t, "bob", t0), 0);
	CHECK_EQ_INT(chat_throttle_fail(t, "bob", t0), 1000);
	/* 0 failures removes the key */
	CHECK_EQ_INT(chat_throttle_restore(t, "bob", 0, t0), CHAT_OK);
	CHECK_EQ_INT(chat_throttle_failures(t, "bob"), 0);
	CHECK_EQ_INT(chat_throttle_entries(t), 1);
	/* a full table still takes it (the wait that ended longest ago goes) */
	chat_throttle_restore(t, "c", 1, t0);
	chat_throttle_restore(t, "d", 1, t0);
	chat_throttle_restore(t, "e", 1, t0);
	CHECK_EQ_INT(chat_throttle_entries(t), 4);
	CHECK_EQ_INT(chat_throttle_restore(t, "f", 9, t0), CHAT_OK);
	CHECK_EQ_INT(chat_throttle_entries(t), 4);
	CHECK_EQ_INT(chat_throttle_failures(t, "f"), 9);
	CHECK_EQ_INT(chat_throttle_failures(t, "alice"), 7);
	CHECK_EQ_INT(chat_throttle_restore(NULL, "x", 1, 0), CHAT_ERR_INVALID);
	chat_throttle_free(ref);
	chat_throttle_free(t);
}

/* A new rule (SIGHUP): every key's wait counted again from its failures and
 * last failure; the table, and which entry goes first, stay right. */
static void test_configure(void)
{
	struct chat_throttle *t = make(3, 1000, 60000, 4);
	struct chat_throttle_config lax = { 5, 100, 400, 999, 0 }, bad = { 0, 100, 400, 4, 0 };
	int64_t t0 = 100000;

	for (int i = 0; i < 5; i++)
		chat_throttle_fail(t, "a", t0); /* 2 over: 2 s */
	chat_throttle_fail(t, "b", t0);
	CHECK_EQ_INT(chat_throttle_wait(t, "a", t0), 2000);
	CHECK_EQ_INT(chat_throttle_configure(t, &bad), CHAT_ERR_INVALID);
	CHECK_EQ_INT(chat_throttle_wait(t, "a", t0), 2000);
	CHECK_EQ_INT(chat_throttle_configure(t, &lax), CHAT_OK);
	CHECK_EQ_INT(chat_throttle_wait(t, "a", t0), 0); /* 5 failures are free now */
	CHECK_EQ_INT(chat_throttle_failures(t, "a"), 5);
	CHECK_EQ_INT(chat_throttle_fail(t, "a", t0), 100);
	CHECK_EQ_INT(chat_throttle_fail(t, "a", t0), 200);
	CHECK_EQ_INT(chat_throttle_fail(t, "a", t0), 400);
	CHECK_EQ_INT(chat_throttle_fail(t, "a", t0), 400); /* the new cap */
	/* Stricter: b's one failure now waits at once. */
	struct chat_throttle_config strict = { 1, 5000, 5000, 4, 0 };
	chat_throttle_fail(t, "b", t0); /* 2 */
	CHECK_EQ_INT(chat_throttle_configure(t, &strict), CHAT_OK);
	CHECK_EQ_INT(chat_throttle_wait(t, "b", t0 + 1000), 4000);
	CHECK_EQ_INT(chat_throttle_wait(t, "a", t0 + 1000), 4000);
	/* Full table: the entry whose wait ended longest ago goes first. */
	chat_throttle_fail(t, "c", t0 - 50000);
	chat_throttle_fail(t, "d", t0 + 10);
	chat_throttle_fail(t, "e", t0 + 20);
	CHECK_EQ_INT(chat_throttle_entries(t), 4);
	CHECK_EQ_INT(chat_throttle_failures(t, "c"), 0);
	CHECK_EQ_INT(chat_throttle_configure(NULL, &lax), CHAT_ERR_INVALID);
	chat_throttle_free(t);
}

static struct chat_logins *make_logins(unsigned after, unsigned guard_after)
{
	struct chat_logins_config cfg = { after, guard_after, 1000, 300000, 64 };
	struct chat_logins *l = NULL;

	if (chat_logins_new(&cfg, &l) != CHAT_OK || !l)
		abort();
	return l;
}

/* Finding 4 of issue 11: failures for alice from one address locked out the
 * right password from another.  Now they make only that address wait. */
static void test_logins_other_address(void)
{
	struct chat_logins *l = make_logins(3, 100);
	struct chat_logins_result res;
	int64_t now = 7000000;
	int which = -1;

	for (int i = 0; i < 20; i++) {
		/* an attacker who waits as told, then fails again */
		now += chat_logins_wait(l, "alice", "127.0.0.1", now, NULL);
		chat_logins_fail(l, "alice", "127.0.0.1", now, &res);
	}
	CHECK_EQ_INT(res.pair_failures, 20);
	CHECK_EQ_INT(res.address_failures, 20);
	CHECK_EQ_INT(res.account_failures, 20);
	CHECK(res.wait > 0);
	CHECK(res.which == CHAT_LOGINS_ADDRESS || res.which == CHAT_LOGINS_PAIR);
	CHECK(chat_logins_wait(l, "alice", "127.0.0.1", now, &which) > 0);
	CHECK(which == CHAT_LOGINS_ADDRESS || which == CHAT_LOGINS_PAIR);
	/* The owner, elsewhere: no wait at all. */
	CHECK_EQ_INT(chat_logins_wait(l, "alice", "127.0.0.2", now, &which), 0);
	CHECK_EQ_INT(which, CHAT_LOGINS_FREE);
	/* Another account from the attacker's address waits (per address). */
	CHECK(chat_logins_wait(l, "bob", "127.0.0.1", now, &which) > 0);
	CHECK_EQ_INT(which, CHAT_LOGINS_ADDRESS);
	/* The owner logs in from 127.0.0.2: the guard and 127.0.0.2 are cleared,
	 * the attacker's address still waits. */
	chat_logins_success(l, "alice", "127.0.0.2");
	CHECK_EQ_INT(chat_logins_account_failures(l, "alice"), 0);
	CHECK(chat_logins_wait(l, "alice", "127.0.0.1", now, NULL) > 0);
	/* Failures of one account from an address spread over accounts: the
	 * address still counts them all. */
	for (int i = 0; i < 3; i++)
		chat_logins_fail(l, i ? "carol" : "dave", "10.1.1.1", now, &res);
	CHECK_EQ_INT(res.address_failures, 3);
	CHECK_EQ_INT(chat_logins_wait(l, "erin", "10.1.1.1", now, NULL), 0);
	chat_logins_fail(l, "erin", "10.1.1.1", now, &res);
	CHECK_EQ_INT(res.wait, 1000);
	CHECK_EQ_INT(res.which, CHAT_LOGINS_ADDRESS);
	/* Refused guest names count for the address alone, with the failed
	 * logins from it. */
	CHECK_EQ_INT(chat_logins_address_wait(l, "10.2.2.2", now), 0);
	for (int i = 0; i < 3; i++)
		CHECK_EQ_INT(chat_logins_address_fail(l, "10.2.2.2", now), 0);
	CHECK_EQ_INT(chat_logins_address_fail(l, "10.2.2.2", now), 1000);
	CHECK_EQ_INT(chat_logins_address_wait(l, "10.2.2.2", now), 1000);
	CHECK(chat_logins_wait(l, "frank", "10.2.2.2", now, &which) == 1000 && which == CHAT_LOGINS_ADDRESS);
	CHECK_EQ_INT(chat_logins_account_failures(l, ""), 0);
	CHECK_EQ_INT(chat_logins_address_wait(l, "10.1.1.1", now + 1000), 0);
	CHECK_EQ_INT(chat_logins_address_fail(l, "10.1.1.1", now + 1000), 2000);
	chat_logins_free(l);
}

/* The guard per account: failures from many addresses (each under its own
 * limit) make every login of that account wait once they pass guard_after,
 * the owner's too; not before. */
static void test_logins_guard(void)
{
	struct chat_logins *l = make_logins(3, 10);
	struct chat_logins_result res;
	char addr[32];
	int64_t now = 9000000;
	int which;

	for (int i = 0; i < 10; i++) {
		snprintf(addr, sizeof(addr), "10.0.0.%d", i);
		chat_logins_fail(l, "alice", addr, now, &res); /* one each: no address waits */
		CHECK_EQ_INT(res.wait, 0);
	}
	CHECK_EQ_INT(res.account_failures, 10);
	CHECK_EQ_INT(chat_logins_wait(l, "alice", "192.168.1.1", now, NULL), 0);
	chat_logins_fail(l, "alice", "10.0.0.99", now, &res);
	CHECK_EQ_INT(res.wait, 1000);
	CHECK_EQ_INT(res.which, CHAT_LOGINS_ACCOUNT);
	CHECK_EQ_INT(chat_logins_wait(l, "alice", "192.168.1.1", now, &which), 1000);
	CHECK_EQ_INT(which, CHAT_LOGINS_ACCOUNT);
	CHECK_EQ_INT(chat_logins_wait(l, "bob", "10.0.0.99", now, NULL), 0);
	CHECK_EQ_INT(chat_logins_wait(l, "alice", "192.168.1.1", now + 1000, NULL), 0);
	/* Put back as saved (a restart): the same wait. */
	struct chat_logins *l2 = make_logins(3, 10);
	CHECK_EQ_INT(chat_logins_restore_account(l2, "alice", chat_logins_account_failures(l, "alice"), now),
	             CHAT_OK);
	CHECK_EQ_INT(chat_logins_wait(l2, "alice", "192.168.1.1", now + 10, &which), 990);
	CHECK_EQ_INT(which, CHAT_LOGINS_ACCOUNT);
	chat_logins_free(l2);
	/* A guard below the per-address limit makes no sense. */
	struct chat_logins_config bad = { 5, 4, 1000, 2000, 16 };
	l2 = (struct chat_logins *)1;
	CHECK_EQ_INT(chat_logins_new(&bad, &l2), CHAT_ERR_INVALID);
	CHECK(l2 == NULL);
	chat_logins_free(NULL);
	chat_logins_free(l);
}

int main(void)
{
	test_sequence();
	test_running_down();
	test_independent();
	test_long_keys();
	test_bound();
	test_model();
	test_extremes();
	test_forget();
	test_restore();
	test_configure();
	test_logins_other_address();
	test_logins_guard();
	return test_done("test_throttle");
}
