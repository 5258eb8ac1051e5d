/* The relay's store: every table through the API, transactions, persistence
 * across close/open, the migration from schema version 1 (throttling counts
 * and secrets), and the files it must refuse without touching them
 * (garbage, a newer schema, another program's database, corruption, a
 * missing directory, a read-only file), and a database file removed or
 * replaced under an open store.
 *
 * One binary, two backends: with CHAT_TEST_STORE=postgresql://... (set by
 * tests/store_postgresql.sh, test_store_postgresql) every test that is not
 * about SQLite files runs on PostgreSQL instead, each "file" being a schema
 * of its own in that database; then the PostgreSQL-only tests run: two
 * handles on one database (mail ids in commit order per recipient, the
 * first secret wins, two migrating at once), errors that name host:port
 * and database but never the password, a schema version from the future,
 * a connection lost and made again. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>
#ifdef CHAT_TEST_HAVE_LIBPQ
#include <libpq-fe.h>
#endif

#include <chat/error.h>

#include "store.h"
#include "testutils.h"

static char dir[256];
static const char *pg_url; /* CHAT_TEST_STORE: the PostgreSQL run */

static void pg_schema(const char *name, char *ident, size_t cap);
static void pg_sql(const char *sql);

/* Where the store called name is: a file in dir, or on PostgreSQL the URL
 * with a schema of its own (made here if missing) as its search_path. */
static void path_in(char *buf, size_t cap, const char *name)
{
	char ident[64], sql[128];

	if (!pg_url) {
		snprintf(buf, cap, "%s/%s", dir, name);
		return;
	}
	pg_schema(name, ident, sizeof(ident));
	snprintf(sql, sizeof(sql), "CREATE SCHEMA IF NOT EXISTS %s", ident);
	pg_sql(sql);
	snprintf(buf, cap, "%s%soptions=-csearch_path%%3D%s", pg_url, strchr(pg_url, '?') ? "&" : "?",
	         ident);
}

/* The schema for a store name: "relay.db" -> t_relay_db. */
static void pg_schema(const char *name, char *ident, size_t cap)
{
	size_t n = (size_t)snprintf(ident, cap, "t_%s", name);

	for (size_t i = 0; i < n && i < cap; i++)
		if (!((ident[i] >= 'a' && ident[i] <= 'z') || (ident[i] >= '0' && ident[i] <= '9')))
			ident[i] = '_';
}

#ifdef CHAT_TEST_HAVE_LIBPQ
/* Run SQL on the test database as its owner (set-up only, never the
 * store's own work); a failure aborts the test. */
static void pg_sql(const char *sql)
{
	PGconn *c = PQconnectdb(pg_url);
	PGresult *r;

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "test_store: cannot connect to %s: %s", pg_url, PQerrorMessage(c));
		abort();
	}
	r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "test_store: %s: %s", sql, PQresultErrorMessage(r));
		abort();
	}
	PQclear(r);
	PQfinish(c);
}
#else
static void pg_sql(const char *sql)
{
	fprintf(stderr, "test_store: built without libpq, cannot run \"%s\"\n", sql);
	abort();
}
#endif

static int exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

static struct chat_store *open_ok(const char *path)
{
	struct chat_store *s = NULL;
	char err[512];
	int rc = chat_store_open(path, &s, sizeof(err), err);

	if (rc != CHAT_OK) {
		fprintf(stderr, "chat_store_open(%s): %d: %s\n", path, rc, err);
		abort();
	}
	return s;
}

static void make_account(struct chat_account *a, const char *name, int group, uint8_t seed)
{
	memset(a, 0, sizeof(*a));
	snprintf(a->name, sizeof(a->name), "%s", name);
	a->group = group;
	a->v.salt_len = 16 + seed % 8;
	for (size_t i = 0; i < a->v.salt_len; i++)
		a->v.salt[i] = (uint8_t)(seed + i);
	a->v.iterations = 4096 + seed;
	for (size_t i = 0; i < CHAT_SCRAM_KEY; i++) {
		a->v.stored_key[i] = (uint8_t)(seed * 3 + i);
		a->v.server_key[i] = (uint8_t)(seed * 7 + i);
	}
	a->created_ms = 1700000000000LL + (int64_t)name[0] * 1000 + (int64_t)strlen(name); /* not seed: a new verifier keeps it */
}

static void add_account(struct chat_store *s, const char *name, int group, uint8_t seed)
{
	struct chat_account a;

	make_account(&a, name, group, seed);
	CHECK_EQ_INT(chat_store_account_add(s, &a), CHAT_OK);
}

static void check_account(struct chat_store *s, const char *name, int group, uint8_t seed)
{
	struct chat_account want, got;

	make_account(&want, name, group, seed);
	CHECK_EQ_INT(chat_store_account_exists(s, name), CHAT_OK);
	CHECK_EQ_INT(chat_store_account_get(s, name, &got), CHAT_OK);
	CHECK(strcmp(got.name, name) == 0);
	CHECK_EQ_INT(got.group, group);
	CHECK_EQ_INT(got.v.salt_len, want.v.salt_len);
	CHECK_MEM(got.v.salt, want.v.salt, want.v.salt_len);
	CHECK_EQ_INT(got.v.iterations, want.v.iterations);
	CHECK_MEM(got.v.stored_key, want.v.stored_key, CHAT_SCRAM_KEY);
	CHECK_MEM(got.v.server_key, want.v.server_key, CHAT_SCRAM_KEY);
	CHECK_EQ_INT(got.created_ms, want.created_ms);
}

static int friend_state(struct chat_store *s, const char *a, const char *b)
{
	int st = -1;

	CHECK_EQ_INT(chat_store_friend_get(s, a, b, &st), CHAT_OK);
	return st;
}

struct friend_list {
	size_t n, stop_after;
	char names[8][33];
	int states[8];
};

static int collect_friend(void *arg, const char *other, int state)
{
	struct friend_list *l = arg;

	if (l->n < 8) {
		snprintf(l->names[l->n], sizeof(l->names[0]), "%s", other);
		l->states[l->n] = state;
	}
	l->n++;
	return l->stop_after && l->n >= l->stop_after;
}

struct mail_list {
	size_t n;
	int64_t ids[16];
	char to[16][33], from[16][33];
	uint64_t client_ids[16];
	int64_t stored[16], expires[16];
	size_t lens[16];
	uint8_t data[16][64];
};

static int collect_mail(void *arg, const struct chat_mail *m)
{
	struct mail_list *l = arg;

	if (l->n < 16) {
		l->ids[l->n] = m->id;
		snprintf(l->to[l->n], 33, "%s", m->to);
		snprintf(l->from[l->n], 33, "%s", m->from);
		l->client_ids[l->n] = m->client_id;
		l->stored[l->n] = m->stored_ms;
		l->expires[l->n] = m->expires_ms;
		l->lens[l->n] = m->len;
		memcpy(l->data[l->n], m->data, m->len < 64 ? m->len : 64);
	}
	l->n++;
	return 0;
}

static int64_t add_mail(struct chat_store *s, const char *to, const char *from, uint64_t cid,
                        int64_t stored, int64_t expires, const char *text)
{
	int64_t id = 0;

	CHECK_EQ_INT(chat_store_mail_add(s, to, from, cid, stored, expires, strlen(text),
	                                 (const uint8_t *)text, &id), CHAT_OK);
	CHECK(id > 0);
	return id;
}

static void test_create(const char *path)
{
	struct chat_store *s = open_ok(path);
	struct stat sb;

	CHECK_EQ_INT(chat_store_schema_version(s), CHAT_STORE_SCHEMA_VERSION);
	CHECK_EQ_INT(chat_store_schema_version(s), 3);
	CHECK(chat_store_created(s));
	CHECK(!strcmp(chat_store_backend_name(s), pg_url ? "postgresql" : "sqlite"));
	if (!pg_url) { /* SQLite only: the file and its mode */
		CHECK_EQ_INT(stat(path, &sb), 0);
		CHECK_EQ_INT(sb.st_mode & 0777, 0600);
	}
	CHECK(!chat_store_in_transaction(s));
	chat_store_close(s);
}

static void test_accounts(struct chat_store *s)
{
	struct chat_account a;
	size_t n = 99;

	add_account(s, "alice", CHAT_GROUP_REGULAR, 1);
	add_account(s, "bob", CHAT_GROUP_ADMIN, 2);
	add_account(s, "carol", CHAT_GROUP_REGULAR, 3);
	check_account(s, "alice", CHAT_GROUP_REGULAR, 1);
	check_account(s, "bob", CHAT_GROUP_ADMIN, 2);

	make_account(&a, "alice", CHAT_GROUP_ADMIN, 9);
	CHECK_EQ_INT(chat_store_account_add(s, &a), CHAT_ERR_INVALID);
	CHECK_STR_CONTAINS(chat_store_error(s), "alice");
	check_account(s, "alice", CHAT_GROUP_REGULAR, 1); /* unchanged */
	make_account(&a, "erin", 7, 9);
	CHECK_EQ_INT(chat_store_account_add(s, &a), CHAT_ERR_INVALID);
	make_account(&a, "erin", CHAT_GROUP_GUEST, 9);
	CHECK_EQ_INT(chat_store_account_add(s, &a), CHAT_ERR_INVALID);

	CHECK_EQ_INT(chat_store_account_get(s, "nobody", &a), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(chat_store_account_exists(s, "nobody"), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(chat_store_account_exists(s, ""), CHAT_ERR_INVALID);
	CHECK_EQ_INT(a.name[0], 0);

	/* Password change. */
	make_account(&a, "carol", CHAT_GROUP_REGULAR, 30);
	CHECK_EQ_INT(chat_store_account_set_verifier(s, "carol", &a.v), CHAT_OK);
	check_account(s, "carol", CHAT_GROUP_REGULAR, 30);
	CHECK_EQ_INT(chat_store_account_set_verifier(s, "nobody", &a.v), CHAT_ERR_NOTFOUND);

	CHECK_EQ_INT(chat_store_account_set_group(s, "carol", CHAT_GROUP_ADMIN), CHAT_OK);
	check_account(s, "carol", CHAT_GROUP_ADMIN, 30);
	CHECK_EQ_INT(chat_store_account_set_group(s, "nobody", CHAT_GROUP_ADMIN), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(chat_store_account_set_group(s, "carol", 42), CHAT_ERR_INVALID);

	CHECK_EQ_INT(chat_store_account_count(s, CHAT_GROUP_GUEST, &n), CHAT_OK);
	CHECK_EQ_INT(n, 3);
	CHECK_EQ_INT(chat_store_account_count(s, CHAT_GROUP_REGULAR, &n), CHAT_OK);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(chat_store_account_count(s, CHAT_GROUP_ADMIN, &n), CHAT_OK);
	CHECK_EQ_INT(n, 2);
}

static void test_friends(struct chat_store *s)
{
	struct friend_list l;

	CHECK_EQ_INT(friend_state(s, "alice", "bob"), CHAT_FRIEND_NONE);
	/* alice asks bob */
	CHECK_EQ_INT(chat_store_friend_set(s, "alice", "bob", CHAT_FRIEND_ASKED), CHAT_OK);
	CHECK_EQ_INT(friend_state(s, "alice", "bob"), CHAT_FRIEND_ASKED);
	CHECK_EQ_INT(friend_state(s, "bob", "alice"), CHAT_FRIEND_ASKED_BY);
	/* bob accepts */
	CHECK_EQ_INT(chat_store_friend_set(s, "bob", "alice", CHAT_FRIEND_YES), CHAT_OK);
	CHECK_EQ_INT(friend_state(s, "alice", "bob"), CHAT_FRIEND_YES);
	CHECK_EQ_INT(friend_state(s, "bob", "alice"), CHAT_FRIEND_YES);
	/* alice asks carol; dave asks alice (recorded from alice's side) */
	CHECK_EQ_INT(chat_store_friend_set(s, "alice", "carol", CHAT_FRIEND_ASKED), CHAT_OK);
	CHECK_EQ_INT(chat_store_friend_set(s, "alice", "dave", CHAT_FRIEND_ASKED_BY), CHAT_OK);
	CHECK_EQ_INT(friend_state(s, "dave", "alice"), CHAT_FRIEND_ASKED);
	CHECK_EQ_INT(friend_state(s, "carol", "alice"), CHAT_FRIEND_ASKED_BY);

	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_friends(s, "alice", collect_friend, &l), CHAT_OK);
	CHECK_EQ_INT(l.n, 3);
	CHECK(strcmp(l.names[0], "bob") == 0 && l.states[0] == CHAT_FRIEND_YES);
	CHECK(strcmp(l.names[1], "carol") == 0 && l.states[1] == CHAT_FRIEND_ASKED);
	CHECK(strcmp(l.names[2], "dave") == 0 && l.states[2] == CHAT_FRIEND_ASKED_BY);
	memset(&l, 0, sizeof(l));
	l.stop_after = 2;
	CHECK_EQ_INT(chat_store_friends(s, "alice", collect_friend, &l), CHAT_OK);
	CHECK_EQ_INT(l.n, 2);
	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_friends(s, "bob", collect_friend, &l), CHAT_OK);
	CHECK_EQ_INT(l.n, 1);
	CHECK(strcmp(l.names[0], "alice") == 0 && l.states[0] == CHAT_FRIEND_YES);

	/* carol declines: NONE removes both directions */
	CHECK_EQ_INT(chat_store_friend_set(s, "carol", "alice", CHAT_FRIEND_NONE), CHAT_OK);
	CHECK_EQ_INT(friend_state(s, "alice", "carol"), CHAT_FRIEND_NONE);
	CHECK_EQ_INT(friend_state(s, "carol", "alice"), CHAT_FRIEND_NONE);
	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_friends(s, "carol", collect_friend, &l), CHAT_OK);
	CHECK_EQ_INT(l.n, 0);
	/* dave unfriended from dave's side */
	CHECK_EQ_INT(chat_store_friend_set(s, "dave", "alice", CHAT_FRIEND_NONE), CHAT_OK);
	CHECK_EQ_INT(friend_state(s, "alice", "dave"), CHAT_FRIEND_NONE);

	CHECK_EQ_INT(chat_store_friend_set(s, "alice", "alice", CHAT_FRIEND_YES), CHAT_ERR_INVALID);
	CHECK_EQ_INT(chat_store_friend_set(s, "alice", "bob", 9), CHAT_ERR_INVALID);
	CHECK_EQ_INT(friend_state(s, "alice", "bob"), CHAT_FRIEND_YES);
}

static void test_conversations(struct chat_store *s)
{
	char suite[33];

	CHECK_EQ_INT(chat_store_conv_get(s, "alice", "bob", suite), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(chat_store_conv_add(s, "bob", "alice", "x25519-aesgcm", 1000), CHAT_OK);
	CHECK_EQ_INT(chat_store_conv_get(s, "alice", "bob", suite), CHAT_OK);
	CHECK(strcmp(suite, "x25519-aesgcm") == 0);
	CHECK_EQ_INT(chat_store_conv_get(s, "bob", "alice", suite), CHAT_OK);
	CHECK(strcmp(suite, "x25519-aesgcm") == 0);
	/* replaces, from either side */
	CHECK_EQ_INT(chat_store_conv_add(s, "alice", "bob", "rc4dh", 2000), CHAT_OK);
	CHECK_EQ_INT(chat_store_conv_get(s, "bob", "alice", suite), CHAT_OK);
	CHECK(strcmp(suite, "rc4dh") == 0);
	CHECK_EQ_INT(chat_store_conv_add(s, "alice", "carol", "xor-demo", 3000), CHAT_OK);
	CHECK_EQ_INT(chat_store_conv_remove(s, "carol", "alice"), CHAT_OK);
	CHECK_EQ_INT(chat_store_conv_get(s, "alice", "carol", suite), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(chat_store_conv_remove(s, "carol", "alice"), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(chat_store_conv_get(s, "alice", "bob", suite), CHAT_OK);
	CHECK_EQ_INT(chat_store_conv_add(s, "alice", "bob", "a-suite-name-that-is-far-too-long", 1),
	             CHAT_ERR_INVALID);
}

static void test_mail(struct chat_store *s)
{
	static const char *texts[5] = { "one", "two!", "three", "four..", "five" };
	struct mail_list l;
	struct chat_mail m;
	char from[33];
	int64_t ids[5], relay_id, cid_id;
	uint64_t bytes = 0, total = 0;
	size_t count = 0;

	CHECK_EQ_INT(chat_store_mail_usage(s, "bob", &count, &bytes), CHAT_OK);
	CHECK_EQ_INT(count, 0);
	CHECK_EQ_INT(bytes, 0);
	for (int i = 0; i < 5; i++) {
		ids[i] = add_mail(s, "bob", "alice", 100 + (uint64_t)i, 5000 + i, 0, texts[i]);
		total += strlen(texts[i]);
		if (i)
			CHECK(ids[i] > ids[i - 1]);
	}
	add_mail(s, "carol", "alice", 200, 6000, 0, "for carol");
	CHECK_EQ_INT(chat_store_mail_usage(s, "bob", &count, &bytes), CHAT_OK);
	CHECK_EQ_INT(count, 5);
	CHECK_EQ_INT(bytes, total);

	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_mail_for(s, "bob", 0, 0, collect_mail, &l), CHAT_OK);
	CHECK_EQ_INT(l.n, 5);
	for (int i = 0; i < 5; i++) {
		CHECK_EQ_INT(l.ids[i], ids[i]);
		CHECK(strcmp(l.to[i], "bob") == 0);
		CHECK(strcmp(l.from[i], "alice") == 0);
		CHECK_EQ_INT(l.client_ids[i], 100 + i);
		CHECK_EQ_INT(l.stored[i], 5000 + i);
		CHECK_EQ_INT(l.expires[i], 0);
		CHECK_EQ_INT(l.lens[i], strlen(texts[i]));
		CHECK_MEM(l.data[i], texts[i], strlen(texts[i]));
	}
	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_mail_for(s, "bob", ids[1], 2, collect_mail, &l), CHAT_OK);
	CHECK_EQ_INT(l.n, 2);
	CHECK_EQ_INT(l.ids[0], ids[2]);
	CHECK_EQ_INT(l.ids[1], ids[3]);
	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_mail_for(s, "bob", ids[4], 0, collect_mail, &l), CHAT_OK);
	CHECK_EQ_INT(l.n, 0);

	/* ACK */
	CHECK_EQ_INT(chat_store_mail_take(s, "bob", ids[0], &m, from), CHAT_OK);
	CHECK_EQ_INT(m.id, ids[0]);
	CHECK(strcmp(m.to, "bob") == 0);
	CHECK(m.from == from);
	CHECK(strcmp(from, "alice") == 0);
	CHECK_EQ_INT(m.client_id, 100);
	CHECK_EQ_INT(m.stored_ms, 5000);
	CHECK_EQ_INT(m.len, strlen(texts[0])); /* its size; the data is not returned */
	CHECK_EQ_INT(chat_store_mail_take(s, "bob", ids[0], &m, from), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(chat_store_mail_take(s, "carol", ids[1], NULL, NULL), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(chat_store_mail_take(s, "bob", ids[1], NULL, NULL), CHAT_OK);
	CHECK_EQ_INT(chat_store_mail_usage(s, "bob", &count, &bytes), CHAT_OK);
	CHECK_EQ_INT(count, 3);
	CHECK_EQ_INT(bytes, total - strlen(texts[0]) - strlen(texts[1]));

	/* Written by the relay itself; a client id above 2^63; empty data. */
	relay_id = add_mail(s, "bob", "", 0, 7000, 0, "");
	cid_id = add_mail(s, "bob", "alice", UINT64_MAX - 5, 7001, 0, "big id");
	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_mail_for(s, "bob", ids[4], 0, collect_mail, &l), CHAT_OK);
	CHECK_EQ_INT(l.n, 2);
	CHECK_EQ_INT(l.ids[0], relay_id);
	CHECK(strcmp(l.from[0], "") == 0);
	CHECK_EQ_INT(l.lens[0], 0);
	CHECK(l.client_ids[1] == UINT64_MAX - 5);
	CHECK_EQ_INT(chat_store_mail_take(s, "bob", relay_id, &m, from), CHAT_OK);
	CHECK(strcmp(from, "") == 0);
	CHECK_EQ_INT(chat_store_mail_take(s, "bob", cid_id, &m, from), CHAT_OK);
	CHECK(m.client_id == UINT64_MAX - 5);

	/* Expiry */
	int64_t e1 = add_mail(s, "carol", "bob", 1, 8000, 100, "expires at 100");
	int64_t e2 = add_mail(s, "dave", "alice", 2, 8001, 200, "expires at 200");
	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_mail_expire(s, 150, collect_mail, &l), CHAT_OK);
	CHECK_EQ_INT(l.n, 1);
	CHECK_EQ_INT(l.ids[0], e1);
	CHECK(strcmp(l.to[0], "carol") == 0);
	CHECK(strcmp(l.from[0], "bob") == 0);
	CHECK_EQ_INT(l.expires[0], 100);
	CHECK_EQ_INT(l.lens[0], strlen("expires at 100"));
	CHECK_MEM(l.data[0], "expires at 100", l.lens[0]);
	CHECK_EQ_INT(chat_store_mail_take(s, "carol", e1, NULL, NULL), CHAT_ERR_NOTFOUND);
	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_mail_expire(s, 150, collect_mail, &l), CHAT_OK);
	CHECK_EQ_INT(l.n, 0);
	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_mail_expire(s, 1000000, collect_mail, &l), CHAT_OK);
	CHECK_EQ_INT(l.n, 1);
	CHECK_EQ_INT(l.ids[0], e2);
	CHECK_EQ_INT(chat_store_mail_usage(s, "dave", &count, NULL), CHAT_OK);
	CHECK_EQ_INT(count, 0);
	/* expires_ms 0 never expires */
	CHECK_EQ_INT(chat_store_mail_usage(s, "bob", &count, NULL), CHAT_OK);
	CHECK_EQ_INT(count, 3);
	CHECK_EQ_INT(chat_store_mail_usage(s, "carol", &count, NULL), CHAT_OK);
	CHECK_EQ_INT(count, 1);
}

/* Callbacks may use the store: ACK the mail being shown, add new mail; a
 * nested call of the same iterator is refused. */
struct reentry {
	struct chat_store *s;
	size_t n;
	int nested_rc, take_rc;
	int64_t added;
};

static int nested_cb(void *arg, const struct chat_mail *m)
{
	(void)arg;
	(void)m;
	return 0;
}

static int reenter_for(void *arg, const struct chat_mail *m)
{
	struct reentry *r = arg;

	r->n++;
	r->nested_rc = chat_store_mail_for(r->s, m->to, 0, 0, nested_cb, NULL);
	r->take_rc = chat_store_mail_take(r->s, m->to, m->id, NULL, NULL);
	return 0;
}

static int reenter_expire(void *arg, const struct chat_mail *m)
{
	struct reentry *r = arg;

	r->n++;
	r->nested_rc = chat_store_mail_expire(r->s, 1, nested_cb, NULL);
	/* Already expired, but added after the pass began: left for the next one. */
	if (!r->added)
		r->added = add_mail(r->s, m->to, "", 0, 1, 1, "expiry notice");
	return 0;
}

static void test_callbacks(struct chat_store *s)
{
	struct reentry r = { .s = s };
	size_t count = 9;

	add_mail(s, "erin", "alice", 1, 1, 0, "a");
	add_mail(s, "erin", "alice", 2, 1, 0, "b");
	CHECK_EQ_INT(chat_store_mail_for(s, "erin", 0, 0, reenter_for, &r), CHAT_OK);
	CHECK_EQ_INT(r.n, 2);
	CHECK_EQ_INT(r.nested_rc, CHAT_ERR_STATE);
	CHECK_EQ_INT(r.take_rc, CHAT_OK);
	CHECK_EQ_INT(chat_store_mail_usage(s, "erin", &count, NULL), CHAT_OK);
	CHECK_EQ_INT(count, 0);

	memset(&r, 0, sizeof(r));
	r.s = s;
	add_mail(s, "erin", "alice", 3, 1, 5, "expires");
	CHECK_EQ_INT(chat_store_mail_expire(s, 10, reenter_expire, &r), CHAT_OK);
	CHECK_EQ_INT(r.nested_rc, CHAT_ERR_STATE);
	CHECK(r.added > 0);
	/* Whether SQLite's running query sees the row added meanwhile is up
	 * to SQLite; either way a row is deleted only if it was shown. */
	CHECK(r.n == 1 || r.n == 2);
	CHECK_EQ_INT(chat_store_mail_usage(s, "erin", &count, NULL), CHAT_OK);
	CHECK_EQ_INT(count, 2 - r.n);
	CHECK_EQ_INT(chat_store_mail_take(s, "erin", r.added, NULL, NULL),
	             r.n == 1 ? CHAT_OK : CHAT_ERR_NOTFOUND);
}

static void test_senders(struct chat_store *s)
{
	uint64_t id = 99;

	CHECK_EQ_INT(chat_store_sender_last(s, "alice", &id), CHAT_OK);
	CHECK_EQ_INT(id, 0);
	CHECK_EQ_INT(chat_store_sender_set_last(s, "alice", 42), CHAT_OK);
	CHECK_EQ_INT(chat_store_sender_last(s, "alice", &id), CHAT_OK);
	CHECK_EQ_INT(id, 42);
	CHECK_EQ_INT(chat_store_sender_set_last(s, "alice", UINT64_MAX), CHAT_OK);
	CHECK_EQ_INT(chat_store_sender_last(s, "alice", &id), CHAT_OK);
	CHECK(id == UINT64_MAX);
	CHECK_EQ_INT(chat_store_sender_set_last(s, "alice", 43), CHAT_OK);
	CHECK_EQ_INT(chat_store_sender_last(s, "alice", &id), CHAT_OK);
	CHECK_EQ_INT(id, 43);

	/* exact accepted ids, per sender, forgotten by age */
	int seen = 1;
	CHECK_EQ_INT(chat_store_accepted_get(s, "alice", 7, &seen), CHAT_OK);
	CHECK_EQ_INT(seen, 0);
	CHECK_EQ_INT(chat_store_accepted_add(s, "alice", 7, 1000), CHAT_OK);
	CHECK_EQ_INT(chat_store_accepted_add(s, "alice", 7, 1000), CHAT_OK); /* idempotent */
	CHECK_EQ_INT(chat_store_accepted_add(s, "alice", 9, 5000), CHAT_OK);
	CHECK_EQ_INT(chat_store_accepted_add(s, "alice", UINT64_MAX, 5000), CHAT_OK);
	CHECK_EQ_INT(chat_store_accepted_get(s, "alice", 7, &seen), CHAT_OK);
	CHECK_EQ_INT(seen, 1);
	CHECK_EQ_INT(chat_store_accepted_get(s, "alice", 8, &seen), CHAT_OK);
	CHECK_EQ_INT(seen, 0); /* between accepted ids: not seen */
	CHECK_EQ_INT(chat_store_accepted_get(s, "bob", 7, &seen), CHAT_OK);
	CHECK_EQ_INT(seen, 0);
	CHECK_EQ_INT(chat_store_accepted_get(s, "alice", UINT64_MAX, &seen), CHAT_OK);
	CHECK_EQ_INT(seen, 1);
	CHECK_EQ_INT(chat_store_accepted_prune(s, 2000), CHAT_OK);
	CHECK_EQ_INT(chat_store_accepted_get(s, "alice", 7, &seen), CHAT_OK);
	CHECK_EQ_INT(seen, 0);
	CHECK_EQ_INT(chat_store_accepted_get(s, "alice", 9, &seen), CHAT_OK);
	CHECK_EQ_INT(seen, 1);
}

static void test_archive(struct chat_store *s)
{
	size_t n = 99, removed = 99;

	CHECK_EQ_INT(chat_store_archive_count(s, "alice", "bob", &n), CHAT_OK);
	CHECK_EQ_INT(n, 0);
	CHECK_EQ_INT(chat_store_archive_add(s, "alice", "bob", 10, 3, (const uint8_t *)"abc"), CHAT_OK);
	CHECK_EQ_INT(chat_store_archive_add(s, "bob", "alice", 20, 3, (const uint8_t *)"def"), CHAT_OK);
	CHECK_EQ_INT(chat_store_archive_add(s, "alice", "carol", 30, 3, (const uint8_t *)"ghi"), CHAT_OK);
	CHECK_EQ_INT(chat_store_archive_count(s, "alice", "bob", &n), CHAT_OK);
	CHECK_EQ_INT(n, 2);
	CHECK_EQ_INT(chat_store_archive_count(s, "bob", "alice", &n), CHAT_OK);
	CHECK_EQ_INT(n, 2);
	CHECK_EQ_INT(chat_store_archive_count(s, "carol", "alice", &n), CHAT_OK);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(chat_store_archive_prune(s, 20, &removed), CHAT_OK); /* strictly older */
	CHECK_EQ_INT(removed, 1);
	CHECK_EQ_INT(chat_store_archive_prune(s, 25, &removed), CHAT_OK);
	CHECK_EQ_INT(removed, 1);
	CHECK_EQ_INT(chat_store_archive_count(s, "alice", "bob", &n), CHAT_OK);
	CHECK_EQ_INT(n, 0);
	CHECK_EQ_INT(chat_store_archive_count(s, "alice", "carol", &n), CHAT_OK);
	CHECK_EQ_INT(n, 1);
}

/* dave: an account with a friendship, a conversation, mail both ways and a
 * sender id. */
static void dave_everywhere(struct chat_store *s, int64_t *to_dave, int64_t *from_dave)
{
	add_account(s, "dave", CHAT_GROUP_REGULAR, 4);
	CHECK_EQ_INT(chat_store_friend_set(s, "alice", "dave", CHAT_FRIEND_YES), CHAT_OK);
	CHECK_EQ_INT(chat_store_friend_set(s, "dave", "carol", CHAT_FRIEND_ASKED), CHAT_OK);
	CHECK_EQ_INT(chat_store_conv_add(s, "dave", "alice", "rc4dh", 1), CHAT_OK);
	*to_dave = add_mail(s, "dave", "alice", 7, 9000, 0, "to dave");
	*from_dave = add_mail(s, "alice", "dave", 8, 9001, 0, "from dave");
	CHECK_EQ_INT(chat_store_sender_set_last(s, "dave", 8), CHAT_OK);
}

static void check_dave_gone(struct chat_store *s, int64_t to_dave, int64_t from_dave)
{
	struct chat_account a;
	struct friend_list l;
	struct mail_list ml;
	char suite[33];
	size_t count = 9;
	uint64_t id = 9;

	CHECK_EQ_INT(chat_store_account_get(s, "dave", &a), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(friend_state(s, "alice", "dave"), CHAT_FRIEND_NONE);
	CHECK_EQ_INT(friend_state(s, "dave", "alice"), CHAT_FRIEND_NONE);
	CHECK_EQ_INT(friend_state(s, "carol", "dave"), CHAT_FRIEND_NONE);
	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_friends(s, "dave", collect_friend, &l), CHAT_OK);
	CHECK_EQ_INT(l.n, 0);
	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_friends(s, "alice", collect_friend, &l), CHAT_OK);
	for (size_t i = 0; i < l.n && i < 8; i++)
		CHECK(strcmp(l.names[i], "dave") != 0);
	CHECK_EQ_INT(chat_store_conv_get(s, "alice", "dave", suite), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(chat_store_mail_usage(s, "dave", &count, NULL), CHAT_OK);
	CHECK_EQ_INT(count, 0);
	CHECK_EQ_INT(chat_store_mail_take(s, "dave", to_dave, NULL, NULL), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(chat_store_sender_last(s, "dave", &id), CHAT_OK);
	CHECK_EQ_INT(id, 0);
	/* Mail dave sent stays queued. */
	memset(&ml, 0, sizeof(ml));
	CHECK_EQ_INT(chat_store_mail_for(s, "alice", from_dave - 1, 1, collect_mail, &ml), CHAT_OK);
	CHECK_EQ_INT(ml.n, 1);
	CHECK_EQ_INT(ml.ids[0], from_dave);
	CHECK(strcmp(ml.from[0], "dave") == 0);
}

static void test_account_remove(struct chat_store *s)
{
	struct chat_account a;
	int64_t to_dave, from_dave;
	size_t n;

	dave_everywhere(s, &to_dave, &from_dave);
	CHECK_EQ_INT(chat_store_account_count(s, CHAT_GROUP_GUEST, &n), CHAT_OK);
	CHECK_EQ_INT(n, 4);

	/* Inside the caller's transaction, then rolled back: all of it returns. */
	CHECK_EQ_INT(chat_store_begin(s), CHAT_OK);
	CHECK_EQ_INT(chat_store_account_remove(s, "dave"), CHAT_OK);
	CHECK_EQ_INT(chat_store_account_get(s, "dave", &a), CHAT_ERR_NOTFOUND);
	CHECK(chat_store_in_transaction(s));
	chat_store_rollback(s);
	CHECK(!chat_store_in_transaction(s));
	check_account(s, "dave", CHAT_GROUP_REGULAR, 4);
	CHECK_EQ_INT(friend_state(s, "alice", "dave"), CHAT_FRIEND_YES);
	CHECK_EQ_INT(friend_state(s, "carol", "dave"), CHAT_FRIEND_ASKED_BY);

	/* On its own. */
	CHECK_EQ_INT(chat_store_account_remove(s, "dave"), CHAT_OK);
	check_dave_gone(s, to_dave, from_dave);
	CHECK_EQ_INT(chat_store_account_remove(s, "dave"), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(chat_store_account_count(s, CHAT_GROUP_GUEST, &n), CHAT_OK);
	CHECK_EQ_INT(n, 3);
	CHECK_EQ_INT(chat_store_mail_take(s, "alice", from_dave, NULL, NULL), CHAT_OK);

	/* Inside the caller's transaction, committed. */
	dave_everywhere(s, &to_dave, &from_dave);
	CHECK_EQ_INT(chat_store_begin(s), CHAT_OK);
	CHECK_EQ_INT(chat_store_account_remove(s, "dave"), CHAT_OK);
	CHECK_EQ_INT(chat_store_commit(s), CHAT_OK);
	check_dave_gone(s, to_dave, from_dave);
	CHECK_EQ_INT(chat_store_mail_take(s, "alice", from_dave, NULL, NULL), CHAT_OK);
}

static void test_transactions(struct chat_store *s)
{
	struct chat_account a;
	int64_t id;

	CHECK_EQ_INT(chat_store_begin(s), CHAT_OK);
	CHECK(chat_store_in_transaction(s));
	CHECK_EQ_INT(chat_store_begin(s), CHAT_ERR_STATE);
	add_account(s, "tx1", CHAT_GROUP_REGULAR, 11);
	check_account(s, "tx1", CHAT_GROUP_REGULAR, 11);
	CHECK_EQ_INT(chat_store_friend_set(s, "tx1", "alice", CHAT_FRIEND_ASKED), CHAT_OK);
	chat_store_rollback(s);
	CHECK(!chat_store_in_transaction(s));
	CHECK_EQ_INT(chat_store_account_get(s, "tx1", &a), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(friend_state(s, "alice", "tx1"), CHAT_FRIEND_NONE);

	CHECK_EQ_INT(chat_store_begin(s), CHAT_OK);
	add_account(s, "tx2", CHAT_GROUP_ADMIN, 12);
	/* A failed statement does not end the transaction. */
	make_account(&a, "tx2", CHAT_GROUP_ADMIN, 12);
	CHECK_EQ_INT(chat_store_account_add(s, &a), CHAT_ERR_INVALID);
	CHECK_EQ_INT(chat_store_friend_set(s, "tx2", "alice", CHAT_FRIEND_ASKED), CHAT_OK);
	id = add_mail(s, "tx2", "alice", 1, 1, 0, "in a transaction");
	CHECK_EQ_INT(chat_store_mail_take(s, "tx2", id + 1000, NULL, NULL), CHAT_ERR_NOTFOUND);
	CHECK(chat_store_in_transaction(s));
	CHECK_EQ_INT(chat_store_commit(s), CHAT_OK);
	CHECK(!chat_store_in_transaction(s));
	check_account(s, "tx2", CHAT_GROUP_ADMIN, 12);
	CHECK_EQ_INT(friend_state(s, "alice", "tx2"), CHAT_FRIEND_ASKED_BY);
	CHECK_EQ_INT(chat_store_mail_take(s, "tx2", id, NULL, NULL), CHAT_OK);

	CHECK_EQ_INT(chat_store_commit(s), CHAT_ERR_STATE);
	chat_store_rollback(s); /* harmless without a transaction */
	CHECK_EQ_INT(chat_store_account_remove(s, "tx2"), CHAT_OK);

	/* A transaction left open at close is rolled back. */
	CHECK_EQ_INT(chat_store_begin(s), CHAT_OK);
	add_account(s, "tx3", CHAT_GROUP_REGULAR, 13);
}

static void test_persistence(const char *path)
{
	struct chat_store *s = open_ok(path);
	struct chat_account a;
	struct mail_list l;
	char suite[33];
	size_t n;
	uint64_t id;

	CHECK_EQ_INT(chat_store_schema_version(s), 3);
	check_account(s, "alice", CHAT_GROUP_REGULAR, 1);
	check_account(s, "bob", CHAT_GROUP_ADMIN, 2);
	check_account(s, "carol", CHAT_GROUP_ADMIN, 30);
	CHECK_EQ_INT(chat_store_account_get(s, "tx3", &a), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(chat_store_account_count(s, CHAT_GROUP_GUEST, &n), CHAT_OK);
	CHECK_EQ_INT(n, 3);
	CHECK_EQ_INT(friend_state(s, "bob", "alice"), CHAT_FRIEND_YES);
	CHECK_EQ_INT(chat_store_conv_get(s, "bob", "alice", suite), CHAT_OK);
	CHECK(strcmp(suite, "rc4dh") == 0);
	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_mail_for(s, "bob", 0, 0, collect_mail, &l), CHAT_OK);
	CHECK_EQ_INT(l.n, 3);
	CHECK_MEM(l.data[0], "three", 5);
	CHECK_EQ_INT(chat_store_sender_last(s, "alice", &id), CHAT_OK);
	CHECK_EQ_INT(id, 43);
	CHECK_EQ_INT(chat_store_archive_count(s, "carol", "alice", &n), CHAT_OK);
	CHECK_EQ_INT(n, 1);
	/* Ids keep increasing after a reopen. */
	int64_t next = add_mail(s, "bob", "carol", 1, 1, 0, "after reopen");
	CHECK(next > l.ids[2]);
	chat_store_close(s);
}

/* Open must fail with rc (if non-zero), a message naming the path and
 * containing what, and leave the file byte for byte as it was. */
static void expect_refused(const char *path, int rc_want, const char *what)
{
	struct chat_store *s = NULL;
	char err[512] = "";
	size_t before_len = 0, after_len = 0;
	uint8_t *before = exists(path) ? test_load_file(path, &before_len) : NULL;
	int rc = chat_store_open(path, &s, sizeof(err), err);

	if (getenv("CHAT_TEST_VERBOSE") && *getenv("CHAT_TEST_VERBOSE"))
		fprintf(stderr, "refused (%d): %s\n", rc, err);
	CHECK(rc != CHAT_OK);
	if (rc_want)
		CHECK_EQ_INT(rc, rc_want);
	CHECK(s == NULL);
	if (s)
		chat_store_close(s);
	CHECK_STR_CONTAINS(err, path);
	CHECK_STR_CONTAINS(err, what);
	if (before) {
		uint8_t *after = test_load_file(path, &after_len);
		CHECK_EQ_INT(after_len, before_len);
		if (after_len == before_len)
			CHECK_MEM(after, before, before_len);
		free(after);
		free(before);
	}
}

static void test_refusals(void)
{
	char path[300], other[300];
	sqlite3 *db;

	/* Garbage text: short (SQLite would take it for an empty database) and long. */
	path_in(path, sizeof(path), "garbage.db");
	test_save_file(path, 23, (const uint8_t *)"this is not a database\n");
	expect_refused(path, CHAT_ERR_IO, "not an SQLite database");
	CHECK_STR_CONTAINS(path, dir);
	{
		char err[512];
		struct chat_store *s = NULL;
		CHECK_EQ_INT(chat_store_open(path, &s, sizeof(err), err), CHAT_ERR_IO);
		CHECK_STR_CONTAINS(err, "file is not a database");
		path_in(other, sizeof(other), "garbage.db-wal");
		CHECK(!exists(other));
	}
	uint8_t big[8192];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)test_rand();
	path_in(path, sizeof(path), "random.db");
	test_save_file(path, sizeof(big), big);
	expect_refused(path, CHAT_ERR_IO, "not an SQLite database");

	/* A newer schema. */
	path_in(path, sizeof(path), "future.db");
	chat_store_close(open_ok(path));
	CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
	CHECK_EQ_INT(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	expect_refused(path, CHAT_ERR_IO, "version 99");

	/* Another program's database. */
	path_in(path, sizeof(path), "foreign.db");
	CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
	CHECK_EQ_INT(sqlite3_exec(db, "CREATE TABLE t (x); INSERT INTO t VALUES (1)", NULL, NULL, NULL),
	             SQLITE_OK);
	sqlite3_close(db);
	expect_refused(path, CHAT_ERR_IO, "something else");

	/* Missing directory: nothing is created. */
	path_in(path, sizeof(path), "no-such-dir/relay.db");
	expect_refused(path, CHAT_ERR_NOTFOUND, "does not exist");
	path_in(other, sizeof(other), "no-such-dir");
	CHECK(!exists(other));

	/* A directory where the file should be. */
	path_in(path, sizeof(path), "a-dir.db");
	CHECK_EQ_INT(mkdir(path, 0700), 0);
	expect_refused(path, CHAT_ERR_IO, "not a regular file");

	/* Read-only file and directory (root ignores modes). */
	path_in(path, sizeof(path), "readonly.db");
	chat_store_close(open_ok(path));
	CHECK_EQ_INT(chmod(path, 0400), 0);
	if (geteuid() != 0) {
		expect_refused(path, CHAT_ERR_IO, "cannot write");
	} else {
		fprintf(stderr, "test_store: running as root: read-only file check skipped\n");
	}
	CHECK_EQ_INT(chmod(path, 0600), 0);
	path_in(other, sizeof(other), "rodir");
	CHECK_EQ_INT(mkdir(other, 0700), 0);
	path_in(path, sizeof(path), "rodir/relay.db");
	chat_store_close(open_ok(path));
	CHECK_EQ_INT(chmod(other, 0500), 0);
	if (geteuid() != 0)
		expect_refused(path, CHAT_ERR_IO, "not writable");
	CHECK_EQ_INT(chmod(other, 0700), 0);
}

static void test_corrupt(void)
{
	char path[300];
	struct chat_store *s;
	uint8_t *d;
	size_t len, page;

	path_in(path, sizeof(path), "corrupt.db");
	s = open_ok(path);
	for (int i = 0; i < 40; i++) {
		char name[33];
		snprintf(name, sizeof(name), "user%02d", i);
		add_account(s, name, CHAT_GROUP_REGULAR, (uint8_t)i);
	}
	chat_store_close(s);
	d = test_load_file(path, &len);
	page = (size_t)d[16] << 8 | d[17];
	if (page == 1)
		page = 65536;
	CHECK(len >= 3 * page);
	/* The second half of page 2 (the accounts table): cells live at the
	 * end of a page, so this hits records and cell pointers' targets. */
	if (len >= 2 * page) {
		for (size_t i = page + page / 2; i < 2 * page; i++)
			d[i] = (uint8_t)(0xA5 ^ i);
		test_save_file(path, len, d);
	}
	expect_refused(path, CHAT_ERR_IO, "corrupt");
	free(d);
}

/* The file removed, or replaced by another, while the store is open: the
 * next commit rolls back and names the path; the store stays failed. */
static void test_gone(void)
{
	char path[300], side[320], copy[320], want[400];
	struct chat_account a;
	struct chat_store *s;
	struct stat sb;

	path_in(path, sizeof(path), "gone.db");
	s = open_ok(path);
	CHECK(chat_store_created(s));
	CHECK(chat_store_gone(s) == NULL);
	CHECK_EQ_INT(chat_store_check(s), CHAT_OK);
	CHECK_EQ_INT(chat_store_begin(s), CHAT_OK);
	add_account(s, "kept", CHAT_GROUP_REGULAR, 21);
	CHECK_EQ_INT(chat_store_commit(s), CHAT_OK);
	CHECK_EQ_INT(chat_store_begin(s), CHAT_OK);
	add_account(s, "lost", CHAT_GROUP_REGULAR, 22);
	CHECK_EQ_INT(unlink(path), 0);
	snprintf(side, sizeof(side), "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", path);
	unlink(side);
	CHECK_EQ_INT(chat_store_commit(s), CHAT_ERR_FAILED);
	CHECK(!chat_store_in_transaction(s));
	CHECK_STR_CONTAINS(chat_store_error(s), path);
	CHECK_STR_CONTAINS(chat_store_error(s), "was removed");
	CHECK(chat_store_gone(s) != NULL);
	/* Sticky, even though nothing is at the path to compare with. */
	CHECK_EQ_INT(chat_store_begin(s), CHAT_ERR_FAILED);
	CHECK_EQ_INT(chat_store_check(s), CHAT_ERR_FAILED);
	CHECK_EQ_INT(chat_store_account_remove(s, "kept"), CHAT_ERR_FAILED);
	/* Reads still work, from the file still open; the rolled-back row is not there. */
	check_account(s, "kept", CHAT_GROUP_REGULAR, 21);
	CHECK_EQ_INT(chat_store_account_get(s, "lost", &a), CHAT_ERR_NOTFOUND);
	chat_store_close(s);
	CHECK(!exists(path));

	/* Replaced: a copy renamed over it. */
	s = open_ok(path);
	CHECK(chat_store_created(s));
	CHECK_EQ_INT(stat(path, &sb), 0);
	path_in(copy, sizeof(copy), "gone-copy.db");
	chat_store_close(open_ok(copy));
	CHECK_EQ_INT(rename(copy, path), 0);
	CHECK_EQ_INT(chat_store_begin(s), CHAT_OK);
	add_account(s, "lost", CHAT_GROUP_REGULAR, 22);
	CHECK_EQ_INT(chat_store_commit(s), CHAT_ERR_FAILED);
	CHECK_STR_CONTAINS(chat_store_error(s), "replaced by another file");
	snprintf(want, sizeof(want), "inode %llu", (unsigned long long)sb.st_ino);
	CHECK_STR_CONTAINS(chat_store_error(s), want);
	chat_store_close(s);
	/* An existing file opened again is not "created". */
	s = open_ok(path);
	CHECK(!chat_store_created(s));
	CHECK_EQ_INT(chat_store_account_get(s, "lost", &a), CHAT_ERR_NOTFOUND);
	chat_store_close(s);
}

struct counts {
	char keys[8][64];
	unsigned failures[8];
	int64_t last[8];
	size_t n;
};

static int collect_count(void *arg, const char *key, unsigned failures, int64_t last_ms)
{
	struct counts *c = arg;

	if (c->n == 8)
		return 1;
	snprintf(c->keys[c->n], sizeof(c->keys[0]), "%s", key);
	c->failures[c->n] = failures;
	c->last[c->n++] = last_ms;
	return 0;
}

/* Throttling counts: kept per kind and key, listed newest first, replaced,
 * deleted, pruned by age and by number; they survive a reopen. */
static void test_throttle_counts(const char *path)
{
	struct chat_store *s = open_ok(path);
	struct counts c;
	char longkey[300];

	CHECK_EQ_INT(chat_store_throttle_put(s, CHAT_STORE_THROTTLE_ACCOUNT, "alice", 3, 1000), CHAT_OK);
	CHECK_EQ_INT(chat_store_throttle_put(s, CHAT_STORE_THROTTLE_ACCOUNT, "bob", 120, 3000), CHAT_OK);
	CHECK_EQ_INT(chat_store_throttle_put(s, CHAT_STORE_THROTTLE_ACCOUNT, "alice", 4, 2000), CHAT_OK);
	CHECK_EQ_INT(chat_store_throttle_put(s, CHAT_STORE_THROTTLE_REGISTER, "127.0.0.1", 2, 500), CHAT_OK);
	CHECK_EQ_INT(chat_store_throttle_put(s, CHAT_STORE_THROTTLE_REGISTER, "alice", 9, 500), CHAT_OK);
	/* refused: an unknown kind, a key too long */
	CHECK_EQ_INT(chat_store_throttle_put(s, 3, "x", 1, 1), CHAT_ERR_INVALID);
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	CHECK_EQ_INT(chat_store_throttle_put(s, CHAT_STORE_THROTTLE_REGISTER, longkey, 1, 1), CHAT_ERR_INVALID);
	chat_store_close(s);

	s = open_ok(path);
	memset(&c, 0, sizeof(c));
	CHECK_EQ_INT(chat_store_throttle_each(s, CHAT_STORE_THROTTLE_ACCOUNT, 0, collect_count, &c), CHAT_OK);
	CHECK_EQ_INT(c.n, 2);
	CHECK(!strcmp(c.keys[0], "bob") && c.failures[0] == 120 && c.last[0] == 3000);
	CHECK(!strcmp(c.keys[1], "alice") && c.failures[1] == 4 && c.last[1] == 2000);
	memset(&c, 0, sizeof(c));
	CHECK_EQ_INT(chat_store_throttle_each(s, CHAT_STORE_THROTTLE_ACCOUNT, 1, collect_count, &c), CHAT_OK);
	CHECK_EQ_INT(c.n, 1);
	memset(&c, 0, sizeof(c));
	CHECK_EQ_INT(chat_store_throttle_each(s, CHAT_STORE_THROTTLE_REGISTER, 0, collect_count, &c), CHAT_OK);
	CHECK_EQ_INT(c.n, 2);
	/* 0 failures deletes; deleting what is not there is fine */
	CHECK_EQ_INT(chat_store_throttle_put(s, CHAT_STORE_THROTTLE_REGISTER, "alice", 0, 1), CHAT_OK);
	CHECK_EQ_INT(chat_store_throttle_del(s, CHAT_STORE_THROTTLE_ACCOUNT, "nobody"), CHAT_OK);
	CHECK_EQ_INT(chat_store_throttle_del(s, CHAT_STORE_THROTTLE_ACCOUNT, "alice"), CHAT_OK);
	memset(&c, 0, sizeof(c));
	CHECK_EQ_INT(chat_store_throttle_each(s, CHAT_STORE_THROTTLE_ACCOUNT, 0, collect_count, &c), CHAT_OK);
	CHECK(c.n == 1 && !strcmp(c.keys[0], "bob"));
	/* pruning: by age, then all but the newest `keep`, one kind only */
	for (int i = 0; i < 6; i++) {
		char key[16];
		snprintf(key, sizeof(key), "u%d", i);
		CHECK_EQ_INT(chat_store_throttle_put(s, CHAT_STORE_THROTTLE_ACCOUNT, key, 1, 10000 + i), CHAT_OK);
	}
	CHECK_EQ_INT(chat_store_throttle_prune(s, CHAT_STORE_THROTTLE_ACCOUNT, 5000, 3), CHAT_OK);
	memset(&c, 0, sizeof(c));
	CHECK_EQ_INT(chat_store_throttle_each(s, CHAT_STORE_THROTTLE_ACCOUNT, 0, collect_count, &c), CHAT_OK);
	CHECK_EQ_INT(c.n, 3);
	CHECK(!strcmp(c.keys[0], "u5") && !strcmp(c.keys[2], "u3"));
	memset(&c, 0, sizeof(c));
	CHECK_EQ_INT(chat_store_throttle_each(s, CHAT_STORE_THROTTLE_REGISTER, 0, collect_count, &c), CHAT_OK);
	CHECK(c.n == 1 && !strcmp(c.keys[0], "127.0.0.1") && c.failures[0] == 2);
	chat_store_close(s);
}

/* A secret is made once and the same bytes come back ever after. */
static void test_secret(const char *path)
{
	struct chat_store *s = open_ok(path);
	uint8_t fresh[32], other[32], out[32], again[32];

	memset(fresh, 0xa5, sizeof(fresh));
	memset(other, 0x5a, sizeof(other));
	CHECK_EQ_INT(chat_store_secret(s, "fake-verifier", 32, fresh, out), CHAT_OK);
	CHECK_MEM(out, fresh, 32);
	CHECK_EQ_INT(chat_store_secret(s, "fake-verifier", 32, other, again), CHAT_OK);
	CHECK_MEM(again, fresh, 32);
	CHECK_EQ_INT(chat_store_secret(s, "another", 32, other, again), CHAT_OK);
	CHECK_MEM(again, other, 32);
	/* the stored one has another length: a damaged row, said so */
	CHECK_EQ_INT(chat_store_secret(s, "fake-verifier", 16, other, again), CHAT_ERR_IO);
	CHECK_STR_CONTAINS(chat_store_error(s), "not 16 bytes long");
	CHECK_EQ_INT(chat_store_secret(s, "x", 0, other, again), CHAT_ERR_INVALID);
	CHECK_EQ_INT(chat_store_secret(s, "x", CHAT_STORE_SECRET_MAX + 1, other, again), CHAT_ERR_INVALID);
	chat_store_close(s);
	s = open_ok(path);
	CHECK_EQ_INT(chat_store_secret(s, "fake-verifier", 32, other, again), CHAT_OK);
	CHECK_MEM(again, fresh, 32);
	chat_store_close(s);
}

static int add_name(void *arg, int argc, char **argv, char **cols)
{
	char *list = arg;

	(void)argc;
	(void)cols;
	strcat(list, argv[0] ? argv[0] : "?");
	strcat(list, " ");
	return 0;
}

/* A database of schema version 1 (what the relay wrote before throttling
 * counts and secrets were kept) is migrated to the current version at open (through 2 and 3): its data
 * stays, the new tables work. */
static int count_key(void *arg, const char *suite, size_t len, const void *key)
{
	(void)suite;
	(void)key;
	*(size_t *)arg += len;
	return 0;
}

/* Identity keys: stored per (name, suite), replaced, at most
 * CHAT_STORE_KEYS_PER_USER suites, removed with the account. */
static void test_identity_keys(void)
{
	char path[300], suite[16];
	uint8_t key[64] = { 7 };
	size_t total = 0;

	path_in(path, sizeof(path), "keys.db");
	struct chat_store *s = open_ok(path);
	add_account(s, "alice", CHAT_GROUP_REGULAR, 1);
	CHECK_EQ_INT(chat_store_key_put(s, "alice", "noise-xx", 32, key, 1), CHAT_OK);
	CHECK_EQ_INT(chat_store_key_put(s, "alice", "noise-xx", 64, key, 2), CHAT_OK); /* replaced */
	CHECK_EQ_INT(chat_store_keys(s, "alice", count_key, &total), CHAT_OK);
	CHECK_EQ_INT((int)total, 64);
	for (int i = 1; i < CHAT_STORE_KEYS_PER_USER; i++) {
		snprintf(suite, sizeof(suite), "s%d", i);
		CHECK_EQ_INT(chat_store_key_put(s, "alice", suite, 1, key, 3), CHAT_OK);
	}
	CHECK_EQ_INT(chat_store_key_put(s, "alice", "one-more", 1, key, 4), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(chat_store_key_put(s, "alice", "s1", 2, key, 4), CHAT_OK);
	CHECK_EQ_INT(chat_store_key_put(s, "alice", "a-suite-name-longer-than-32-characters", 1, key, 4), CHAT_ERR_INVALID);
	CHECK_EQ_INT(chat_store_key_put(s, "alice", "s2", CHAT_STORE_KEY_MAX + 1, key, 4), CHAT_ERR_INVALID);
	CHECK_EQ_INT(chat_store_account_remove(s, "alice"), CHAT_OK);
	total = 0;
	CHECK_EQ_INT(chat_store_keys(s, "alice", count_key, &total), CHAT_OK);
	CHECK_EQ_INT((int)total, 0);
	chat_store_close(s);
}

static void test_migration_1_to_2(void)
{
	static const char v1_objects[] =
	    "accepted accepted_time accounts archive archive_pair archive_time conversations "
	    "conversations_b friends friends_b mail mail_expires mail_recipient mail_usage "
	    "mail_usage_add mail_usage_del offers offers_recipient senders sqlite_autoindex_accounts_1 "
	    "sqlite_sequence ";
	char path[300], list[2048] = "";
	struct chat_store *s;
	sqlite3 *db;
	int64_t mail;

	path_in(path, sizeof(path), "v1.db");
	s = open_ok(path);
	add_account(s, "alice", CHAT_GROUP_REGULAR, 41);
	mail = add_mail(s, "alice", "bob", 7, 1000, 0, "kept");
	chat_store_close(s);
	/* Make it version 1 exactly: drop what version 2 added. */
	CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
	CHECK_EQ_INT(sqlite3_exec(db, "DROP TABLE throttle; DROP TABLE secrets; DROP TABLE identity_keys; "
	                          "PRAGMA user_version = 1",
	                          NULL, NULL, NULL), SQLITE_OK);
	CHECK_EQ_INT(sqlite3_exec(db, "SELECT name FROM sqlite_master ORDER BY name", add_name, list, NULL),
	             SQLITE_OK);
	sqlite3_close(db);
	if (strcmp(list, v1_objects) != 0)
		fprintf(stderr, "version 1 objects: %s\n           expected: %s\n", list, v1_objects);
	CHECK(strcmp(list, v1_objects) == 0);

	s = open_ok(path);
	CHECK_EQ_INT(chat_store_schema_version(s), CHAT_STORE_SCHEMA_VERSION); /* 1 -> 2 -> 3 */
	check_account(s, "alice", CHAT_GROUP_REGULAR, 41);
	struct mail_list l;
	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_mail_for(s, "alice", 0, 0, collect_mail, &l), CHAT_OK);
	CHECK(l.n == 1 && l.ids[0] == mail);
	CHECK_EQ_INT(chat_store_throttle_put(s, CHAT_STORE_THROTTLE_ACCOUNT, "alice", 7, 99), CHAT_OK);
	uint8_t fresh[32] = { 1 }, out[32];
	CHECK_EQ_INT(chat_store_secret(s, "fake-verifier", 32, fresh, out), CHAT_OK);
	chat_store_close(s);
	s = open_ok(path);
	struct counts c;
	memset(&c, 0, sizeof(c));
	CHECK_EQ_INT(chat_store_throttle_each(s, CHAT_STORE_THROTTLE_ACCOUNT, 0, collect_count, &c), CHAT_OK);
	CHECK(c.n == 1 && c.failures[0] == 7 && c.last[0] == 99);
	chat_store_close(s);
}

/* --check-config's look at a database: what it is, read-only, making no
 * file (no -wal, no -shm, no database), beside a store open for writing
 * too, and never migrating an old one. */
static void test_probe(void)
{
	char path[300], side[320], err[512];
	struct chat_store *s;
	int version = -1, dir_missing = -1;
	sqlite3 *db;

	path_in(path, sizeof(path), "probe.db");
	CHECK_EQ_INT(chat_store_probe(path, &version, &dir_missing, sizeof(err), err), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(dir_missing, 0);
	CHECK_STR_CONTAINS(err, path);
	CHECK(!exists(path));
	path_in(side, sizeof(side), "no-dir/probe.db");
	CHECK_EQ_INT(chat_store_probe(side, &version, &dir_missing, sizeof(err), err), CHAT_ERR_NOTFOUND);
	CHECK_EQ_INT(dir_missing, 1);
	CHECK_STR_CONTAINS(err, "nor does its directory");

	chat_store_close(open_ok(path));
	CHECK_EQ_INT(chat_store_probe(path, &version, &dir_missing, sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(version, CHAT_STORE_SCHEMA_VERSION);
	snprintf(side, sizeof(side), "%s-wal", path);
	CHECK(!exists(side));
	snprintf(side, sizeof(side), "%s-shm", path);
	CHECK(!exists(side));
	/* Beside a running relay's store. */
	s = open_ok(path);
	CHECK_EQ_INT(chat_store_probe(path, &version, &dir_missing, sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(version, CHAT_STORE_SCHEMA_VERSION);
	chat_store_close(s);

	/* An old one is only looked at. */
	CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
	CHECK_EQ_INT(sqlite3_exec(db, "PRAGMA user_version = 2", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	CHECK_EQ_INT(chat_store_probe(path, &version, &dir_missing, sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(version, 2);
	CHECK_EQ_INT(chat_store_probe(path, &version, &dir_missing, sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(version, 2);
	/* Newer, foreign, not a database. */
	CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
	CHECK_EQ_INT(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	CHECK_EQ_INT(chat_store_probe(path, &version, &dir_missing, sizeof(err), err), CHAT_ERR_IO);
	CHECK_STR_CONTAINS(err, "schema version 99 is newer than this program knows");
	CHECK_STR_CONTAINS(err, path);
	path_in(path, sizeof(path), "probe-foreign.db");
	CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
	CHECK_EQ_INT(sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	CHECK_EQ_INT(chat_store_probe(path, &version, &dir_missing, sizeof(err), err), CHAT_ERR_IO);
	CHECK_STR_CONTAINS(err, "something else");
	path_in(path, sizeof(path), "probe-garbage.db");
	uint8_t junk[200];
	memset(junk, 'x', sizeof(junk));
	test_save_file(path, sizeof(junk), junk);
	CHECK_EQ_INT(chat_store_probe(path, &version, &dir_missing, sizeof(err), err), CHAT_ERR_IO);
	CHECK_STR_CONTAINS(err, "not an SQLite database");
	/* A name URIs would read otherwise. */
	path_in(path, sizeof(path), "odd ?#%name.db");
	chat_store_close(open_ok(path));
	CHECK_EQ_INT(chat_store_probe(path, &version, &dir_missing, sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(version, CHAT_STORE_SCHEMA_VERSION);
}

/* ---- PostgreSQL only */
#ifdef CHAT_TEST_HAVE_LIBPQ

struct racer {
	struct chat_store *s;
	const char *path;
	int64_t id;
	int rc;
	uint8_t secret[32];
	volatile int done;
};

static void *mail_add_thread(void *arg)
{
	struct racer *r = arg;

	r->rc = chat_store_mail_add(r->s, "bob", "carol", 2, 2, 0, 5, (const uint8_t *)"later", &r->id);
	r->done = 1;
	return NULL;
}

static void *secret_thread(void *arg)
{
	struct racer *r = arg;
	uint8_t mine[32];

	memset(mine, 0x22, sizeof(mine));
	r->rc = chat_store_secret(r->s, "shared", 32, mine, r->secret);
	r->done = 1;
	return NULL;
}

static void *open_thread(void *arg)
{
	struct racer *r = arg;
	char err[512];

	r->rc = chat_store_open(r->path, &r->s, sizeof(err), err);
	if (r->rc != CHAT_OK)
		fprintf(stderr, "open_thread: %s\n", err);
	r->done = 1;
	return NULL;
}

/* Two relays on one database, as two handles. */
static void test_pg_two_handles(void)
{
	char path[600];
	struct chat_store *h1, *h2, *h3;
	struct racer r = { 0 };
	struct mail_list l;
	pthread_t t;
	uint8_t first[32], out[32];

	path_in(path, sizeof(path), "shared.db");
	h1 = open_ok(path);
	h2 = open_ok(path);
	h3 = open_ok(path);
	CHECK(chat_store_created(h1));
	CHECK(!chat_store_created(h2));

	/* Mail ids in commit order per recipient: while h1's transaction holds
	 * mail for bob, h2 cannot take an id for bob (with a bare sequence it
	 * would take the next one and commit first: a relay that pushed it
	 * would never push h1's).  Mail for someone else is not held up. */
	CHECK_EQ_INT(chat_store_begin(h1), CHAT_OK);
	int64_t id1 = add_mail(h1, "bob", "alice", 1, 1, 0, "first");
	r.s = h2;
	CHECK_EQ_INT(pthread_create(&t, NULL, mail_add_thread, &r), 0);
	int64_t other = add_mail(h3, "dave", "alice", 1, 1, 0, "not held up");
	CHECK(other > id1);
	usleep(300 * 1000);
	CHECK(!r.done); /* waiting for h1's commit */
	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_mail_for(h3, "bob", 0, 0, collect_mail, &l), CHAT_OK);
	CHECK_EQ_INT(l.n, 0); /* nothing committed yet */
	CHECK_EQ_INT(chat_store_commit(h1), CHAT_OK);
	pthread_join(t, NULL);
	CHECK_EQ_INT(r.rc, CHAT_OK);
	CHECK(r.id > id1);
	CHECK(r.id > other); /* the id was taken after the wait */
	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_mail_for(h3, "bob", 0, 0, collect_mail, &l), CHAT_OK);
	CHECK_EQ_INT(l.n, 2);
	CHECK(l.ids[0] == id1 && l.ids[1] == r.id);
	/* Taken by one relay, gone for the other. */
	CHECK_EQ_INT(chat_store_mail_take(h2, "bob", id1, NULL, NULL), CHAT_OK);
	CHECK_EQ_INT(chat_store_mail_take(h1, "bob", id1, NULL, NULL), CHAT_ERR_NOTFOUND);
	size_t count = 0;
	uint64_t bytes = 0;
	CHECK_EQ_INT(chat_store_mail_usage(h1, "bob", &count, &bytes), CHAT_OK);
	CHECK(count == 1 && bytes == 5);

	/* A secret: the first writer wins, also while its transaction is open. */
	memset(first, 0x11, sizeof(first));
	CHECK_EQ_INT(chat_store_begin(h1), CHAT_OK);
	CHECK_EQ_INT(chat_store_secret(h1, "shared", 32, first, out), CHAT_OK);
	CHECK_MEM(out, first, 32);
	memset(&r, 0, sizeof(r));
	r.s = h2;
	CHECK_EQ_INT(pthread_create(&t, NULL, secret_thread, &r), 0);
	usleep(200 * 1000);
	CHECK(!r.done);
	CHECK_EQ_INT(chat_store_commit(h1), CHAT_OK);
	pthread_join(t, NULL);
	CHECK_EQ_INT(r.rc, CHAT_OK);
	CHECK_MEM(r.secret, first, 32);

	/* Accounts, friends and throttling counts are shared too. */
	add_account(h1, "erin", CHAT_GROUP_ADMIN, 5);
	check_account(h2, "erin", CHAT_GROUP_ADMIN, 5);
	CHECK_EQ_INT(chat_store_throttle_put(h2, CHAT_STORE_THROTTLE_ACCOUNT, "erin", 3, 77), CHAT_OK);
	struct counts c;
	memset(&c, 0, sizeof(c));
	CHECK_EQ_INT(chat_store_throttle_each(h1, CHAT_STORE_THROTTLE_ACCOUNT, 0, collect_count, &c),
	             CHAT_OK);
	CHECK(c.n == 1 && c.failures[0] == 3);
	chat_store_close(h1);
	chat_store_close(h2);
	chat_store_close(h3);

	/* Two relays starting together on an empty database: one migrates. */
	struct racer a = { 0 }, b = { 0 };
	pthread_t ta, tb;
	path_in(path, sizeof(path), "race.db");
	a.path = b.path = path;
	CHECK_EQ_INT(pthread_create(&ta, NULL, open_thread, &a), 0);
	CHECK_EQ_INT(pthread_create(&tb, NULL, open_thread, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	CHECK_EQ_INT(a.rc, CHAT_OK);
	CHECK_EQ_INT(b.rc, CHAT_OK);
	if (a.s && b.s) {
		CHECK_EQ_INT(chat_store_created(a.s) + chat_store_created(b.s), 1);
		CHECK_EQ_INT(chat_store_schema_version(a.s), CHAT_STORE_SCHEMA_VERSION);
		CHECK_EQ_INT(chat_store_schema_version(b.s), CHAT_STORE_SCHEMA_VERSION);
	}
	chat_store_close(a.s);
	chat_store_close(b.s);
}

/* err names host:port and the database, and never the password. */
static void expect_pg_refused(const char *url, const char *hostport, const char *db,
                              const char *what)
{
	struct chat_store *s = NULL;
	char err[1024] = "";
	int version = -1, dir_missing = -1;
	int rc = chat_store_open(url, &s, sizeof(err), err);

	if (getenv("CHAT_TEST_VERBOSE") && *getenv("CHAT_TEST_VERBOSE"))
		fprintf(stderr, "refused (%d): %s\n", rc, err);
	CHECK(rc != CHAT_OK);
	CHECK(s == NULL);
	chat_store_close(s);
	if (hostport)
		CHECK_STR_CONTAINS(err, hostport);
	if (db)
		CHECK_STR_CONTAINS(err, db);
	CHECK_STR_CONTAINS(err, what);
	CHECK(strstr(err, "sekrit") == NULL);
	rc = chat_store_probe(url, &version, &dir_missing, sizeof(err), err);
	CHECK(rc != CHAT_OK);
	if (hostport)
		CHECK_STR_CONTAINS(err, hostport);
	CHECK(strstr(err, "sekrit") == NULL);
}

static void test_pg_refusals(void)
{
	const char *host = getenv("PG_HOST"), *port = getenv("PG_PORT");
	char url[700], hostport[128], ident[64], sql[600];
	struct chat_store *s;
	int version = -1, dir_missing = -1;
	char err[1024];

	if (!host || !port) {
		fprintf(stderr, "test_store: PG_HOST and PG_PORT are not set (store_postgresql.sh sets them)\n");
		CHECK(0);
		return;
	}
	/* No server there. */
	expect_pg_refused("postgresql://chat:sekrit@127.0.0.1:1/nosuchdb", "127.0.0.1:1", "nosuchdb",
	                  "cannot connect");
	/* A server, but no such database (the password is not checked: trust). */
	snprintf(url, sizeof(url), "postgresql://postgres:sekrit@%s:%s/nosuchdb", host, port);
	snprintf(hostport, sizeof(hostport), "%s:%s", host, port);
	expect_pg_refused(url, hostport, "nosuchdb", "does not exist");
	/* Not a URL libpq takes. */
	expect_pg_refused("postgresql://chat:sekrit@127.0.0.1/db?no_such_option=1", NULL, NULL,
	                  "not a usable PostgreSQL URL");
	/* A schema version from the future: refused, named. */
	path_in(url, sizeof(url), "future.db");
	chat_store_close(open_ok(url));
	pg_schema("future.db", ident, sizeof(ident));
	snprintf(sql, sizeof(sql), "UPDATE %s.chat_schema SET version = 99", ident);
	pg_sql(sql);
	expect_pg_refused(url, hostport, getenv("PG_DB") ? getenv("PG_DB") : "chat",
	                  "schema version 99 is newer than this program knows");
	/* Another program's tables: refused, left alone. */
	path_in(url, sizeof(url), "other.db");
	pg_schema("other.db", ident, sizeof(ident));
	snprintf(sql, sizeof(sql), "CREATE TABLE %s.stuff (x int)", ident);
	pg_sql(sql);
	expect_pg_refused(url, hostport, NULL, "a database of something else");
	snprintf(sql, sizeof(sql), "SELECT 1/(count(*) = 0)::int FROM pg_tables WHERE schemaname = '%s'"
	         " AND tablename = 'chat_schema'", ident);
	pg_sql(sql); /* division by zero if a chat_schema table was made */

	/* --check-config: an empty schema is version 0, and stays empty. */
	path_in(url, sizeof(url), "probe.db");
	CHECK_EQ_INT(chat_store_probe(url, &version, &dir_missing, sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(version, 0);
	CHECK_EQ_INT(dir_missing, 0);
	CHECK_EQ_INT(chat_store_probe(url, &version, &dir_missing, sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(version, 0);
	s = open_ok(url);
	CHECK(chat_store_created(s));
	CHECK_EQ_INT(chat_store_probe(url, &version, &dir_missing, sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(version, CHAT_STORE_SCHEMA_VERSION);

	/* The connection lost (the server ended it): that statement fails, the
	 * next check connects again, and the store works on. */
	add_account(s, "lost", CHAT_GROUP_REGULAR, 9);
	pg_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
	       " WHERE application_name = 'chat-relay' AND pid <> pg_backend_pid()");
	usleep(100 * 1000);
	CHECK_EQ_INT(chat_store_account_exists(s, "lost"), CHAT_ERR_IO);
	CHECK_STR_CONTAINS(chat_store_error(s), hostport);
	CHECK(chat_store_gone(s) == NULL);
	CHECK_EQ_INT(chat_store_check(s), CHAT_OK);
	CHECK_EQ_INT(chat_store_account_exists(s, "lost"), CHAT_OK);
	/* Lost inside a transaction: the commit fails, nothing is acknowledged. */
	CHECK_EQ_INT(chat_store_begin(s), CHAT_OK);
	add_account(s, "never", CHAT_GROUP_REGULAR, 10);
	pg_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
	       " WHERE application_name = 'chat-relay' AND pid <> pg_backend_pid()");
	usleep(100 * 1000);
	CHECK(chat_store_account_exists(s, "never") != CHAT_OK);
	CHECK_EQ_INT(chat_store_commit(s), CHAT_ERR_IO);
	CHECK(!chat_store_in_transaction(s));
	CHECK_EQ_INT(chat_store_check(s), CHAT_OK);
	CHECK_EQ_INT(chat_store_account_exists(s, "never"), CHAT_ERR_NOTFOUND);
	/* Lost while idle: the next transaction connects again on its own. */
	pg_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
	       " WHERE application_name = 'chat-relay' AND pid <> pg_backend_pid()");
	usleep(100 * 1000);
	CHECK_EQ_INT(chat_store_begin(s), CHAT_OK);
	add_account(s, "after", CHAT_GROUP_REGULAR, 11);
	CHECK_EQ_INT(chat_store_commit(s), CHAT_OK);
	check_account(s, "after", CHAT_GROUP_REGULAR, 11);
	chat_store_close(s);
}

/* A store of schema version 1 is migrated through 2 and 3, its data kept. */
static void test_pg_migration_1(void)
{
	char path[600], ident[64], sql[600];
	struct chat_store *s;
	int64_t mail;

	path_in(path, sizeof(path), "v1.db");
	s = open_ok(path);
	add_account(s, "alice", CHAT_GROUP_REGULAR, 41);
	mail = add_mail(s, "alice", "bob", 7, 1000, 0, "kept");
	chat_store_close(s);
	pg_schema("v1.db", ident, sizeof(ident));
	snprintf(sql, sizeof(sql), "DROP TABLE %s.throttle, %s.secrets, %s.identity_keys;"
	         " UPDATE %s.chat_schema SET version = 1", ident, ident, ident, ident);
	pg_sql(sql);
	s = open_ok(path);
	CHECK(!chat_store_created(s));
	CHECK_EQ_INT(chat_store_schema_version(s), CHAT_STORE_SCHEMA_VERSION);
	check_account(s, "alice", CHAT_GROUP_REGULAR, 41);
	struct mail_list l;
	memset(&l, 0, sizeof(l));
	CHECK_EQ_INT(chat_store_mail_for(s, "alice", 0, 0, collect_mail, &l), CHAT_OK);
	CHECK(l.n == 1 && l.ids[0] == mail);
	CHECK_EQ_INT(chat_store_throttle_put(s, CHAT_STORE_THROTTLE_ACCOUNT, "alice", 7, 99), CHAT_OK);
	uint8_t fresh[32] = { 1 }, out[32];
	CHECK_EQ_INT(chat_store_secret(s, "fake-verifier", 32, fresh, out), CHAT_OK);
	chat_store_close(s);
}
#endif

/* SQLite only: relay.store = sqlite:PATH is the same as a bare PATH, and a
 * PostgreSQL URL without the module says which file is missing. */
static void test_spec(void)
{
	char path[300], spec[320], err[1024];
	struct chat_store *s = NULL;

	path_in(path, sizeof(path), "spec.db");
	snprintf(spec, sizeof(spec), "sqlite:%s", path);
	s = open_ok(spec);
	CHECK(!strcmp(chat_store_backend_name(s), "sqlite"));
	chat_store_close(s);
	CHECK(exists(path));
	CHECK(chat_store_spec_path(spec) && !strcmp(chat_store_spec_path(spec), path));
	CHECK(!strcmp(chat_store_spec_path(path), path));
	CHECK(chat_store_spec_path("postgresql://h/db") == NULL);
	CHECK(chat_store_spec_is_postgresql("postgres://h/db"));
	CHECK(!chat_store_spec_is_postgresql(spec));
	setenv("CHAT_MODULE_DIR", dir, 1);
	s = NULL;
	CHECK_EQ_INT(chat_store_open("postgresql://u:sekrit@h/db", &s, sizeof(err), err), CHAT_ERR_IO);
	CHECK(s == NULL);
	CHECK_STR_CONTAINS(err, "store-postgresql.so");
	CHECK(strstr(err, "sekrit") == NULL);
	unsetenv("CHAT_MODULE_DIR");
}

int main(void)
{
	char path[300], cmd[300];
	struct chat_store *s;

	pg_url = getenv("CHAT_TEST_STORE");
	if (pg_url && !*pg_url)
		pg_url = NULL;
	if (pg_url && !chat_store_spec_is_postgresql(pg_url)) {
		fprintf(stderr, "test_store: CHAT_TEST_STORE is not a postgresql:// URL\n");
		return 1;
	}
#ifndef CHAT_TEST_HAVE_LIBPQ
	if (pg_url) {
		fprintf(stderr, "test_store: built without libpq: cannot test %s\n", pg_url);
		return 1;
	}
#endif
	snprintf(dir, sizeof(dir), "%s/store.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	path_in(path, sizeof(path), "relay.db");
	test_create(path);
	s = open_ok(path);
	test_accounts(s);
	test_friends(s);
	test_conversations(s);
	test_mail(s);
	test_callbacks(s);
	test_senders(s);
	test_archive(s);
	test_account_remove(s);
	test_transactions(s);
	chat_store_close(s);
	test_persistence(path);
	test_throttle_counts(path);
	test_secret(path);
	test_identity_keys();
	if (!pg_url) {
		/* SQLite only: about the database file. */
		test_migration_1_to_2();
		test_refusals();
		test_corrupt();
		test_gone();
		test_probe();
		test_spec();
	} else {
#ifdef CHAT_TEST_HAVE_LIBPQ
		/* PostgreSQL only: a server shared by several relays. */
		test_pg_migration_1();
		test_pg_two_handles();
		test_pg_refusals();
#endif
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return test_done(pg_url ? "test_store (postgresql)" : "test_store");
}
