/* The relay's database file under a running chat-relay process: deleted
 * (with its -wal and -shm) or replaced by another file, every later write
 * (SEND, REGISTER, ACK) gets ERROR storage and never STORED, and the log
 * names the path; at the next start a missing database whose marker exists
 * is refused unless --init-store, which creates an empty store and says so;
 * a first start in a fresh directory creates the store and the marker
 * without asking. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "relayproc.h"
#include "testutils.h"

static char dir[256], db[300], marker[320];
static int sent, stored, refused, stored_when_gone;

static int start(struct relay *r, const char *extra)
{
	static char dbset[400];

	snprintf(dbset, sizeof(dbset), "relay.database=%s", db);
	return relay_start(r, "127.0.0.1:0", "--set", dbset, extra, NULL);
}

/* CHAT_TEST_VERBOSE=1: show what the relay said. */
static void show_log(const struct relay *r)
{
	if (getenv("CHAT_TEST_VERBOSE") && *getenv("CHAT_TEST_VERBOSE"))
		fprintf(stderr, "---- relay log\n%s----\n", r->log);
}

static int exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

/* How often text occurs in the relay's log. */
static int log_count(const struct relay *r, const char *text)
{
	int n = 0;

	for (const char *p = r->log; (p = strstr(p, text)); p += strlen(text))
		n++;
	return n;
}

/* SEND one payload; the answer's type (STORED or ERROR, code in *code), or -1. */
static int send_one(int fd, const char *to, uint64_t id, unsigned *code)
{
	struct chat_msg m;
	char text[32];

	snprintf(text, sizeof(text), "sealed-%llu", (unsigned long long)id);
	*code = 0;
	if (send_payload(fd, to, id, text))
		return -1;
	sent++;
	for (int i = 0; i < 50; i++) {
		if (read_msg(fd, &m))
			return -1;
		if (m.type == CHAT_MSG_STORED && m.id == id) {
			stored++;
			return m.type;
		}
		if (m.type == CHAT_MSG_ERROR) {
			*code = m.code;
			refused++;
			return m.type;
		}
	}
	return -1;
}

/* alice and bob registered, with an accepted conversation; bob offline.
 * Returns alice's connection (or -1). */
static int pair(struct relay *r)
{
	struct chat_msg in;
	uint64_t id;
	unsigned code;
	int fd = dial(r);

	CHECK(fd >= 0 && hello(fd));
	CHECK_EQ_INT(do_register(fd, "alice", "alicepw", &code), CHAT_MSG_DONE);
	CHECK_EQ_INT(do_register(fd, "bob", "bobpw", &code), CHAT_MSG_DONE);
	close(fd);
	int alice = connect_as(r, "alice", "alicepw");
	CHECK(alice >= 0);
	begin(CHAT_MSG_TALK);
	chat_put_str8(&wb, "bob");
	CHECK(request_done(alice));
	int bob = connect_as(r, "bob", "bobpw");
	CHECK(bob >= 0);
	CHECK(next_mail(bob, &in, &id, 1));
	CHECK_EQ_INT(in.type, CHAT_MSG_OFFERED);
	put_answer("alice", 1, "rc4dh", "");
	CHECK(!send_msg(bob));
	CHECK(next_mail(alice, &in, &id, 1));
	CHECK_EQ_INT(in.type, CHAT_MSG_ANSWERED);
	close(bob);
	usleep(100 * 1000);
	return alice;
}

static void remove_db(void)
{
	char side[320];

	CHECK_EQ_INT(unlink(db), 0);
	snprintf(side, sizeof(side), "%s-wal", db);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", db);
	unlink(side);
}

/* A fresh directory (var/ does not exist yet): created without --init-store. */
static void test_fresh(void)
{
	struct relay r;
	char want[400];

	CHECK(!exists(db) && !exists(marker));
	CHECK_EQ_INT(start(&r, NULL), 0);
	snprintf(want, sizeof(want), "created a new store at %s", db);
	CHECK(relay_wait_log(&r, want, 5));
	CHECK(exists(db));
	CHECK(exists(marker));
	CHECK_EQ_INT(relay_stop(&r), 0);
	/* The second start uses it, quietly. */
	CHECK_EQ_INT(start(&r, NULL), 0);
	CHECK_EQ_INT(log_count(&r, "created a new store"), 0);
	CHECK_EQ_INT(relay_stop(&r), 0);
}

static void test_removed(void)
{
	struct relay r;
	struct chat_msg in;
	uint64_t id;
	unsigned code;

	CHECK_EQ_INT(start(&r, NULL), 0);
	int alice = pair(&r);
	CHECK_EQ_INT(send_one(alice, "bob", 1, &code), CHAT_MSG_STORED);
	remove_db();
	for (uint64_t i = 2; i <= 6; i++) {
		int t = send_one(alice, "bob", i, &code);
		CHECK_EQ_INT(t, CHAT_MSG_ERROR);
		CHECK_EQ_INT(code, CHAT_PERR_STORAGE);
		stored_when_gone += t == CHAT_MSG_STORED;
	}
	CHECK(relay_wait_log(&r, db, 5));
	CHECK(relay_wait_log(&r, "database file was removed", 5));
	/* REGISTER and ACK are writes too. */
	int fd = dial(&r);
	CHECK(fd >= 0 && hello(fd));
	CHECK_EQ_INT(do_register(fd, "carol", "carolpw", &code), CHAT_MSG_ERROR);
	CHECK_EQ_INT(code, CHAT_PERR_STORAGE);
	close(fd);
	int bob = connect_as(&r, "bob", "bobpw"); /* reads go on, from the file still open */
	CHECK(bob >= 0);
	CHECK(next_mail(bob, &in, &id, 1));
	CHECK_EQ_INT(in.type, CHAT_MSG_DELIVER);
	struct chat_msg m;
	CHECK(!expect_type(bob, CHAT_MSG_ERROR, &m));
	CHECK_EQ_INT(m.code, CHAT_PERR_STORAGE);
	/* Still refusing after the housekeeping ran; said once (then once a minute). */
	usleep(1500 * 1000);
	CHECK_EQ_INT(send_one(alice, "bob", 7, &code), CHAT_MSG_ERROR);
	relay_read_log(&r, 100);
	CHECK_EQ_INT(log_count(&r, "database file was removed"), 1);
	close(alice);
	close(bob);
	CHECK_EQ_INT(relay_stop(&r), 0);
	show_log(&r);
	CHECK(!exists(db));
}

/* The marker is there, the database is not: refused; --init-store creates it. */
static void test_restart(void)
{
	struct relay r;
	char want[400];

	CHECK_EQ_INT(start(&r, NULL), 1);
	CHECK(strstr(r.log, db) != NULL);
	CHECK(strstr(r.log, marker) != NULL);
	CHECK(strstr(r.log, "--init-store") != NULL);
	CHECK(!exists(db));
	show_log(&r);
	close(r.err_fd);
	/* With --init-store: a new, empty store, logged. */
	CHECK_EQ_INT(start(&r, "--init-store"), 0);
	snprintf(want, sizeof(want), "created a new store at %s", db);
	CHECK(relay_wait_log(&r, want, 5));
	int fd = dial(&r);
	CHECK(fd >= 0 && hello(fd));
	CHECK(!scram(fd, CHAT_AUTH_LOGIN, "alice", "alicepw", NULL)); /* empty indeed */
	CHECK_EQ_INT(last_code, CHAT_PERR_AUTH);
	close(fd);
	CHECK_EQ_INT(relay_stop(&r), 0);
	/* --init-store never replaces an existing database. */
	CHECK_EQ_INT(start(&r, "--init-store"), 1);
	CHECK(strstr(r.log, "exists already") != NULL);
	close(r.err_fd);
}

static void test_replaced(void)
{
	struct relay r;
	char copy[320], want[400];
	unsigned code;
	struct stat sb;

	CHECK_EQ_INT(start(&r, NULL), 0);
	int alice = pair(&r);
	CHECK_EQ_INT(send_one(alice, "bob", 1, &code), CHAT_MSG_STORED);
	CHECK_EQ_INT(stat(db, &sb), 0);
	/* A copy of it renamed over it: another file at the same path. */
	size_t len;
	uint8_t *bytes = test_load_file(db, &len);
	snprintf(copy, sizeof(copy), "%s.copy", db);
	test_save_file(copy, len, bytes);
	free(bytes);
	CHECK_EQ_INT(rename(copy, db), 0);
	for (uint64_t i = 2; i <= 4; i++) {
		int t = send_one(alice, "bob", i, &code);
		CHECK_EQ_INT(t, CHAT_MSG_ERROR);
		CHECK_EQ_INT(code, CHAT_PERR_STORAGE);
		stored_when_gone += t == CHAT_MSG_STORED;
	}
	CHECK(relay_wait_log(&r, "database file was replaced by another file", 5));
	CHECK(strstr(r.log, db) != NULL);
	snprintf(want, sizeof(want), "inode %llu", (unsigned long long)sb.st_ino);
	CHECK(strstr(r.log, want) != NULL);
	close(alice);
	CHECK_EQ_INT(relay_stop(&r), 0);
	show_log(&r);
}

int main(void)
{
	char cmd[400];

	snprintf(dir, sizeof(dir), "/tmp/chat-gone.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(db, sizeof(db), "%s/var/relay.db", dir);
	snprintf(marker, sizeof(marker), "%s.marker", db);
	chat_wbuf_init(&wb, 1 << 17);
	test_fresh();
	test_removed();
	test_restart();
	test_replaced();
	fprintf(stderr, "e2e_store_gone: sent %d, stored %d, refused %d, stored after the file was gone %d\n",
	        sent, stored, refused, stored_when_gone);
	CHECK_EQ_INT(stored_when_gone, 0);
	CHECK_EQ_INT(stored, 2);
	chat_wbuf_free(&wb);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return test_done("e2e_store_gone");
}
