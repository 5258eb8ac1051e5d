/* Accounts, admin, friends and stored messages at a real chat-relay process
 * (docs/PROTOCOL.md section 4), spoken to through raw sockets with the
 * standard SCRAM-SHA-256 strings: registration, login, the same answer for an
 * unknown user and a wrong password, for a taken and a new name at REGISTER
 * and for a registered and a used name at a guest LOGIN (unless
 * relay.reveal_accounts), throttling (per address, per account from one
 * address, the guard per account, registrations) and what of it survives a
 * restart, a fake salt that does too, every admin command and its
 * refusal for a regular user, /passwd, friend requests, offline delivery with
 * receipts, duplicates, queue limits, expiry, persistence across restarts,
 * kill -9 at random moments (every acknowledged message is delivered exactly
 * once and in order), and a corrupt or unusable database. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "paths.h"
#include "relayproc.h"
#include "scram.h"
#include "store.h" /* CHAT_GROUP_*, CHAT_FRIEND_* */
#include "testutils.h"

#define CHECK_EQ_STR(a, b) do { \
	const char *x_ = (a), *y_ = (b); \
	if (!x_ || !y_ || strcmp(x_, y_)) { \
		fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, x_ ? x_ : "(null)", y_ ? y_ : "(null)"); \
		test_failures++; \
	} } while (0)

static char dir[256], db[300];

/* The relay on the test database, with short login waits, registrations
 * not throttled (tests that need it set it) and any more --set pairs. */
static int start(struct relay *r, ...) __attribute__((sentinel));
static int start(struct relay *r, ...)
{
	const char *x[16] = { 0 };
	int n = 0;
	va_list ap;
	static char dbset[400];

	snprintf(dbset, sizeof(dbset), "relay.database=%s", db);
	va_start(ap, r);
	const char *a;
	while ((a = va_arg(ap, const char *)) && n < 14)
		x[n++] = a;
	va_end(ap);
	x[n] = NULL;
	/* later --set of the same key win */
	return relay_start(r, "127.0.0.1:0", "--set", dbset, "--set", "relay.login_throttle_after=3",
	                   "--set", "relay.login_throttle_ms=1500", "--set",
	                   "relay.register_throttle_after=1000", x[0], x[1], x[2], x[3], x[4], x[5],
	                   x[6], x[7], x[8], x[9], x[10], x[11], x[12], x[13], NULL);
}

/* ---- tests */

static void test_add_admin(void)
{
	char cmd[1200];
	int rc;

	snprintf(cmd, sizeof(cmd),
	         "printf 'rootpw\\n' | %s/chat-relay --config %s/chat.ini --set relay.database=%s "
	         "--set core.plugin_dir=%s --add-admin root >%s/out 2>%s/err",
	         CHAT_TEST_BIN_DIR, CHAT_TEST_SOURCE_DIR, db, CHAT_TEST_PLUGIN_DIR, dir, dir);
	rc = system(cmd);
	CHECK_EQ_INT(WEXITSTATUS(rc), 0);
	/* again: the account exists */
	rc = system(cmd);
	CHECK_EQ_INT(WEXITSTATUS(rc), 1);
	snprintf(cmd, sizeof(cmd), "grep -q 'account root exists already' %s/err", dir);
	CHECK_EQ_INT(WEXITSTATUS(system(cmd)), 0);
	snprintf(cmd, sizeof(cmd),
	         "printf 'x\\n' | %s/chat-relay --config %s/chat.ini --set relay.database=%s "
	         "--set core.plugin_dir=%s --add-admin 'Bad!' >/dev/null 2>%s/err",
	         CHAT_TEST_BIN_DIR, CHAT_TEST_SOURCE_DIR, db, CHAT_TEST_PLUGIN_DIR, dir);
	CHECK_EQ_INT(WEXITSTATUS(system(cmd)), 2);
}

static void test_register_login(struct relay *r)
{
	unsigned code;
	int fd = dial(r);
	char text_unknown[CHAT_TEXT_MAX + 1];

	CHECK(hello(fd));
	CHECK_EQ_INT(do_register(fd, "alice", "alicepw", &code), CHAT_MSG_DONE);
	CHECK_EQ_INT(do_register(fd, "bob", "bobpw", &code), CHAT_MSG_DONE);
	/* A taken name: answered like a success (see test_hidden_accounts). */
	CHECK_EQ_INT(do_register(fd, "alice", "other", &code), CHAT_MSG_DONE);
	/* An unknown user and a wrong password: the same answer. */
	CHECK(!scram(fd, CHAT_AUTH_LOGIN, "nobody", "x", NULL));
	CHECK_EQ_INT(last_code, CHAT_PERR_AUTH);
	snprintf(text_unknown, sizeof(text_unknown), "%s", last_text);
	char ch1[CHAT_TEXT_MAX + 1];
	snprintf(ch1, sizeof(ch1), "%s", strstr(last_challenge, ",s=") ? strstr(last_challenge, ",s=") : "");
	CHECK(!scram(fd, CHAT_AUTH_LOGIN, "nobody", "y", NULL));
	CHECK_EQ_STR(strstr(last_challenge, ",s="), ch1); /* a stable fake salt */
	CHECK(!scram(fd, CHAT_AUTH_LOGIN, "alice", "wrong", NULL));
	CHECK_EQ_INT(last_code, CHAT_PERR_AUTH);
	CHECK_EQ_STR(last_text, text_unknown);
	CHECK(strstr(last_text, "unknown user or wrong password") != NULL);
	/* A valid login, server signature checked inside scram(). */
	struct chat_msg m;
	CHECK(scram(fd, CHAT_AUTH_LOGIN, "alice", "alicepw", &m));
	CHECK_EQ_INT(m.group, CHAT_GROUP_REGULAR);
	close(fd);
	close(fd);
	/* The second registration of alice changed nothing. */
	fd = dial(r);
	CHECK(hello(fd));
	CHECK(!scram(fd, CHAT_AUTH_LOGIN, "alice", "other", NULL));
	CHECK_EQ_STR(last_text, text_unknown);
	close(fd);
	/* A guest cannot take a registered name. */
	fd = dial(r);
	begin(CHAT_MSG_HELLO);
	put_hello("rc4dh");
	send_msg(fd);
	expect_type(fd, CHAT_MSG_WELCOME, &m);
	begin(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, "bob");
	CHECK(strstr(error_for(fd, &code), "cannot be used by a guest") != NULL);
	CHECK_EQ_INT(code, CHAT_PERR_NAME_TAKEN);
	close(fd);
}

/* AUTH, then a guest LOGIN, then AUTH_FINAL: the guest login ends the SCRAM
 * exchange; the relay stays consistent (the name is free again after). */
static void test_auth_then_guest(struct relay *r)
{
	struct chat_scram_client sc;
	char first[CHAT_SCRAM_MSG_MAX], final[CHAT_SCRAM_MSG_MAX];
	struct chat_msg m;
	unsigned code;
	int fd = dial(r);

	CHECK(hello(fd));
	memset(&sc, 0, sizeof(sc));
	CHECK_EQ_INT(chat_scram_client_first(&sc, "alice", "0123456789abcdef", NULL, sizeof(first), first), CHAT_OK);
	begin(CHAT_MSG_AUTH);
	chat_put_u8(&wb, CHAT_AUTH_LOGIN);
	chat_put_str16(&wb, first);
	CHECK(!send_msg(fd) && !expect_type(fd, CHAT_MSG_AUTH_CHALLENGE, &m));
	CHECK_EQ_INT(chat_scram_client_final(&sc, m.text, 7, "alicepw", sizeof(final), final), CHAT_OK);
	begin(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, "eve");
	CHECK(!send_msg(fd) && !expect_type(fd, CHAT_MSG_LOGGED_IN, &m));
	begin(CHAT_MSG_AUTH_FINAL);
	chat_put_str16(&wb, final);
	error_for(fd, &code);
	CHECK(code == CHAT_PERR_UNEXPECTED || code == CHAT_PERR_ALREADY);
	close(fd);
	usleep(100 * 1000);
	fd = dial(r);
	CHECK(login(fd, "eve", "rc4dh"));
	CHECK(who_ok(fd));
	close(fd);
}

static void test_throttle(struct relay *r)
{
	int fd = dial(r);

	CHECK(hello(fd));
	for (int i = 0; i < 4; i++)
		CHECK(!scram(fd, CHAT_AUTH_LOGIN, "bob", "bad", NULL));
	/* Now even the right password waits. */
	CHECK(!scram(fd, CHAT_AUTH_LOGIN, "bob", "bobpw", NULL));
	CHECK_EQ_INT(last_code, CHAT_PERR_THROTTLED);
	CHECK(strstr(last_text, "try again in") != NULL);
	CHECK(relay_wait_log(r, "throttling logins: ", 5));
	usleep(1700 * 1000);
	CHECK(scram(fd, CHAT_AUTH_LOGIN, "bob", "bobpw", NULL));
	close(fd);
}

static void test_admin(struct relay *r)
{
	int root = connect_as(r, "root", "rootpw"), alice = connect_as(r, "alice", "alicepw");
	struct chat_msg m;

	CHECK(root >= 0 && alice >= 0);
	/* Every admin command is refused to a regular user. */
	for (int op = CHAT_ADMIN_USERS; op <= CHAT_ADMIN_DEMOTE; op++) {
		put_admin(op, op == CHAT_ADMIN_USERS ? "" : "bob",
		          op == CHAT_ADMIN_ADD || op == CHAT_ADMIN_RESET ? "pw" : NULL);
		CHECK(!request_done(alice));
		CHECK_EQ_INT(last_code, CHAT_PERR_FORBIDDEN);
		CHECK(strstr(last_text, "alice is not an admin") != NULL);
	}
	/* USERS: who is connected, with address and group. */
	put_admin(CHAT_ADMIN_USERS, "", NULL);
	CHECK(!send_msg(root) && !expect_type(root, CHAT_MSG_USERS, &m));
	char name[CHAT_NAME_MAX + 1], addr[CHAT_ADDR_MAX + 1], suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	unsigned group;
	size_t ns;
	int64_t since;
	int seen = 0;
	while (chat_iter_user(&m.list, name, &group, addr, &ns, suites, &since)) {
		if (!strcmp(name, "root"))
			seen += group == CHAT_GROUP_ADMIN && !strncmp(addr, "127.0.0.1:", 10) && since > 0;
		if (!strcmp(name, "alice"))
			seen += group == CHAT_GROUP_REGULAR;
	}
	CHECK_EQ_INT(seen, 2);
	/* ADD, login, RESET, PROMOTE, DEMOTE, REMOVE. */
	put_admin(CHAT_ADMIN_ADD, "carol", "carolpw");
	CHECK(request_done(root));
	put_admin(CHAT_ADMIN_ADD, "carol", "carolpw");
	CHECK(!request_done(root));
	CHECK_EQ_INT(last_code, CHAT_PERR_EXISTS);
	int carol = connect_as(r, "carol", "carolpw");
	CHECK(carol >= 0);
	put_admin(CHAT_ADMIN_RESET, "carol", "newpw");
	CHECK(request_done(root));
	CHECK(connect_as(r, "carol", "carolpw") < 0);
	int carol2 = connect_as(r, "carol", "newpw"); /* replaces the first connection */
	CHECK(carol2 >= 0);
	CHECK(expect_type(carol, CHAT_MSG_BYE, &m) == 0);
	close(carol);
	put_admin(CHAT_ADMIN_PROMOTE, "carol", NULL);
	CHECK(request_done(root));
	put_admin(CHAT_ADMIN_USERS, "", NULL);
	CHECK(!send_msg(carol2) && !expect_type(carol2, CHAT_MSG_USERS, &m));
	put_admin(CHAT_ADMIN_DEMOTE, "carol", NULL);
	CHECK(request_done(root));
	put_admin(CHAT_ADMIN_USERS, "", NULL);
	CHECK(!request_done(carol2));
	CHECK_EQ_INT(last_code, CHAT_PERR_FORBIDDEN);
	put_admin(CHAT_ADMIN_REMOVE, "root", NULL);
	CHECK(!request_done(root));
	CHECK_EQ_INT(last_code, CHAT_PERR_FORBIDDEN);
	put_admin(CHAT_ADMIN_REMOVE, "nobody", NULL);
	CHECK(!request_done(root));
	CHECK_EQ_INT(last_code, CHAT_PERR_NO_USER);
	put_admin(CHAT_ADMIN_REMOVE, "carol", NULL);
	CHECK(request_done(root));
	CHECK(expect_type(carol2, CHAT_MSG_BYE, &m) == 0);
	CHECK(strstr(m.text, "removed") != NULL);
	CHECK(connect_as(r, "carol", "newpw") < 0);
	close(carol2);
	close(root);
	close(alice);
}

static void test_passwd(struct relay *r)
{
	int fd = connect_as(r, "bob", "bobpw");

	CHECK(fd >= 0);
	begin(CHAT_MSG_PASSWD);
	put_verifier_for("bobpw2");
	CHECK(!request_done(fd));
	CHECK_EQ_INT(last_code, CHAT_PERR_FORBIDDEN);
	CHECK(!scram(fd, CHAT_AUTH_PASSWD, "bob", "wrong", NULL));
	CHECK_EQ_INT(last_code, CHAT_PERR_AUTH);
	CHECK(scram(fd, CHAT_AUTH_PASSWD, "bob", "bobpw", NULL));
	begin(CHAT_MSG_PASSWD);
	put_verifier_for("bobpw2");
	CHECK(request_done(fd));
	close(fd);
	CHECK(connect_as(r, "bob", "bobpw") < 0);
	fd = connect_as(r, "bob", "bobpw2");
	CHECK(fd >= 0);
	close(fd);
}

static void test_friends(struct relay *r)
{
	int alice = connect_as(r, "alice", "alicepw");
	struct chat_msg m, in;
	uint64_t id;

	begin(CHAT_MSG_FRIEND);
	chat_put_u8(&wb, CHAT_FRIEND_OP_ADD);
	chat_put_str8(&wb, "bob");
	CHECK(request_done(alice)); /* bob is offline: stored */
	begin(CHAT_MSG_FRIEND);
	chat_put_u8(&wb, CHAT_FRIEND_OP_ADD);
	chat_put_str8(&wb, "nobody");
	CHECK(!request_done(alice));
	CHECK_EQ_INT(last_code, CHAT_PERR_NO_USER);
	int bob = connect_as(r, "bob", "bobpw2");
	CHECK(next_mail(bob, &in, &id, 1));
	CHECK_EQ_INT(in.type, CHAT_MSG_FRIEND_EVENT);
	CHECK_EQ_INT(in.flag, CHAT_FRIEND_EV_ASKS);
	CHECK_EQ_STR(in.name, "alice");
	begin(CHAT_MSG_FRIEND);
	chat_put_u8(&wb, CHAT_FRIEND_OP_LIST);
	chat_put_str8(&wb, "");
	CHECK(!send_msg(bob) && !expect_type(bob, CHAT_MSG_FRIENDS, &m));
	char name[CHAT_NAME_MAX + 1];
	unsigned state;
	int online;
	CHECK(chat_iter_friend(&m.list, name, &state, &online));
	CHECK_EQ_STR(name, "alice");
	CHECK_EQ_INT(state, CHAT_FRIEND_ASKED_BY);
	CHECK_EQ_INT(online, 1);
	begin(CHAT_MSG_FRIEND);
	chat_put_u8(&wb, CHAT_FRIEND_OP_ADD);
	chat_put_str8(&wb, "alice");
	CHECK(request_done(bob));
	CHECK(next_mail(alice, &in, &id, 1));
	CHECK_EQ_INT(in.type, CHAT_MSG_FRIEND_EVENT);
	CHECK_EQ_INT(in.flag, CHAT_FRIEND_EV_ACCEPTED);
	/* WHO: friends first, flagged. */
	int guest = dial(r);
	CHECK(login(guest, "aaa-guest", "rc4dh"));
	begin(CHAT_MSG_WHO);
	CHECK(!send_msg(alice) && !expect_type(alice, CHAT_MSG_WHO_LIST, &m));
	char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	size_t ns;
	unsigned flags;
	CHECK(chat_iter_who_flags(&m.list, name, &ns, suites, &flags));
	CHECK_EQ_STR(name, "bob");
	CHECK_EQ_INT(flags, CHAT_WHO_FRIEND | CHAT_WHO_REGISTERED);
	close(guest);
	close(alice);
	close(bob);
}

/* alice offers bob (offline), bob accepts at login; then alice stores three
 * messages for offline bob and gets them delivered with receipts. */
static void test_offline(struct relay *r)
{
	int alice = connect_as(r, "alice", "alicepw");
	struct chat_msg m, in;
	uint64_t id;

	begin(CHAT_MSG_TALK);
	chat_put_str8(&wb, "bob");
	CHECK(request_done(alice));
	CHECK(strstr(last_text, "bob is offline: the offer waits for them") != NULL);
	int bob = connect_as(r, "bob", "bobpw2");
	CHECK(next_mail(bob, &in, &id, 1));
	CHECK_EQ_INT(in.type, CHAT_MSG_OFFERED);
	CHECK_EQ_STR(in.name, "alice");
	put_answer("alice", 1, "rc4dh", "");
	CHECK(!send_msg(bob));
	CHECK(next_mail(alice, &in, &id, 1));
	CHECK_EQ_INT(in.type, CHAT_MSG_ANSWERED);
	CHECK_EQ_INT(in.flag, 1);
	close(bob);
	usleep(100 * 1000);
	for (uint64_t i = 1; i <= 3; i++) {
		char text[32];
		snprintf(text, sizeof(text), "sealed-%llu", (unsigned long long)i);
		CHECK(!send_payload(alice, "bob", i, text));
		CHECK(!expect_type(alice, CHAT_MSG_STORED, &m));
		CHECK_EQ_INT(m.id, i);
		CHECK_EQ_INT(m.flag, CHAT_STORED_QUEUED);
	}
	CHECK(!send_payload(alice, "bob", 2, "sealed-2"));
	CHECK(!expect_type(alice, CHAT_MSG_STORED, &m));
	CHECK_EQ_INT(m.flag, CHAT_STORED_DUPLICATE);
	bob = connect_as(r, "bob", "bobpw2");
	for (int i = 1; i <= 3; i++) {
		char text[32];
		snprintf(text, sizeof(text), "sealed-%d", i);
		CHECK(next_mail(bob, &in, &id, 1));
		CHECK_EQ_INT(in.type, CHAT_MSG_DELIVER);
		CHECK_EQ_STR(in.name, "alice");
		CHECK(in.payload_len == strlen(text) && !memcmp(in.payload, text, in.payload_len));
	}
	for (uint64_t i = 1; i <= 3; i++) {
		CHECK(next_mail(alice, &in, &id, 1));
		CHECK_EQ_INT(in.type, CHAT_MSG_RECEIPT);
		CHECK_EQ_INT(in.id, i);
		CHECK_EQ_INT(in.flag, CHAT_RECEIPT_DELIVERED);
	}
	/* Live SEND while bob is online; bob says it cannot read one. */
	CHECK(!send_payload(alice, "bob", 4, "sealed-4"));
	CHECK(!expect_type(alice, CHAT_MSG_STORED, &m));
	CHECK_EQ_INT(m.flag, CHAT_STORED_ONLINE);
	CHECK(next_mail(bob, &in, &id, 0));
	begin(CHAT_MSG_ACK);
	chat_put_u64(&wb, id);
	chat_put_u8(&wb, 1);
	chat_put_str16(&wb, "integrity check failed");
	CHECK(!send_msg(bob));
	CHECK(next_mail(alice, &in, &id, 1));
	CHECK_EQ_INT(in.flag, CHAT_RECEIPT_UNREADABLE);
	CHECK_EQ_STR(in.text, "integrity check failed");
	/* ACK, then close at once: the receipt still reaches the sender, and the
	 * relay is still up. */
	CHECK(!send_payload(alice, "bob", 6, "sealed-6"));
	CHECK(!expect_type(alice, CHAT_MSG_STORED, &m));
	CHECK(!expect_type(bob, CHAT_MSG_MAIL, &m));
	begin(CHAT_MSG_ACK);
	chat_put_u64(&wb, m.id);
	chat_put_u8(&wb, 0);
	chat_put_str16(&wb, "");
	CHECK(!send_msg(bob));
	close(bob);
	CHECK(next_mail(alice, &in, &id, 1));
	CHECK_EQ_INT(in.type, CHAT_MSG_RECEIPT);
	CHECK_EQ_INT(in.id, 6);
	CHECK(who_ok(alice)); /* the relay is still there */
	bob = connect_as(r, "bob", "bobpw2");
	CHECK(bob >= 0);
	/* No conversation, no SEND. */
	CHECK(!send_payload(alice, "root", 5, "x"));
	CHECK(!expect_type(alice, CHAT_MSG_ERROR, &m));
	CHECK_EQ_INT(m.code, CHAT_PERR_NO_CONVERSATION);
	close(alice);
	close(bob);
}

static void test_limits_expiry(struct relay *r)
{
	int alice = connect_as(r, "alice", "alicepw");
	struct chat_msg m, in;
	uint64_t id, next = 100;
	int full = 0;

	/* bob is offline; the queue holds 5 messages. */
	for (int i = 0; i < 8 && !full; i++) {
		CHECK(!send_payload(alice, "bob", next++, "x"));
		CHECK(!read_msg(alice, &m));
		if (m.type == CHAT_MSG_ERROR) {
			CHECK_EQ_INT(m.code, CHAT_PERR_QUEUE_FULL);
			CHECK(strstr(m.text, "queue is full") != NULL);
			CHECK(m.id == next - 1); /* which SEND was refused */
			full = i;
		}
	}
	CHECK_EQ_INT(full, 5);
	/* queue_expiry = 2 s: the five expire and alice hears of each. */
	for (int i = 0; i < 5; i++) {
		CHECK(next_mail(alice, &in, &id, 1));
		CHECK_EQ_INT(in.type, CHAT_MSG_RECEIPT);
		CHECK_EQ_INT(in.flag, CHAT_RECEIPT_EXPIRED);
	}
	/* The refused id (105) resent after a later one was accepted is new, not
	 * a duplicate (exact ids, not a high-water mark). */
	CHECK(!send_payload(alice, "bob", 106, "later"));
	CHECK(!expect_type(alice, CHAT_MSG_STORED, &m));
	CHECK_EQ_INT(m.flag, CHAT_STORED_QUEUED);
	CHECK(!send_payload(alice, "bob", 105, "refused before"));
	CHECK(!expect_type(alice, CHAT_MSG_STORED, &m));
	CHECK_EQ_INT(m.id, 105);
	CHECK_EQ_INT(m.flag, CHAT_STORED_QUEUED);
	CHECK(!send_payload(alice, "bob", 106, "later"));
	CHECK(!expect_type(alice, CHAT_MSG_STORED, &m));
	CHECK_EQ_INT(m.flag, CHAT_STORED_DUPLICATE);
	close(alice);
	int bob = connect_as(r, "bob", "bobpw2");
	for (int i = 0; i < 2; i++) {
		CHECK(next_mail(bob, &in, &id, 1));
		CHECK_EQ_INT(in.type, CHAT_MSG_DELIVER);
	}
	begin(CHAT_MSG_WHO);
	CHECK(!send_msg(bob));
	CHECK(!read_msg(bob, &m));
	CHECK_EQ_INT(m.type, CHAT_MSG_WHO_LIST); /* no MAIL came first: nothing left */
	close(bob);
}

/* ---- issue 11, item 4: what the relay tells about which names exist */

/* The reply to a request, copied (DONE or ERROR). */
static struct chat_msg reply_to(int fd)
{
	struct chat_msg m;

	memset(&m, 0, sizeof(m));
	if (send_msg(fd) || read_msg(fd, &m))
		m.type = -1;
	return m;
}

static struct chat_msg register_reply(int fd, const char *name, const char *pw)
{
	begin(CHAT_MSG_REGISTER);
	chat_put_str8(&wb, name);
	put_verifier_for(pw);
	return reply_to(fd);
}

static struct chat_msg guest_reply(int fd, const char *name)
{
	begin(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, name);
	return reply_to(fd);
}

/* text with every occurrence of name replaced by NAME (answers name the
 * name they are about; the rest must be the same). */
static const char *unnamed(const char *text, const char *name)
{
	static char out[4][CHAT_TEXT_MAX + 64];
	static int k;
	char *o = out[k++ % 4];
	size_t n = 0, len = strlen(name);

	while (*text && n + 8 < sizeof(out[0])) {
		if (!strncmp(text, name, len)) {
			memcpy(o + n, "NAME", 4);
			n += 4;
			text += len;
		} else {
			o[n++] = *text++;
		}
	}
	o[n] = '\0';
	return o;
}

static int same_answer(const struct chat_msg *a, const char *an, const struct chat_msg *b,
                       const char *bn, int say)
{
	int same = a->type == b->type && a->code == b->code && a->ref == b->ref && a->op == b->op &&
	           !strcmp(unnamed(a->name, an), unnamed(b->name, bn)) &&
	           !strcmp(unnamed(a->text, an), unnamed(b->text, bn));
	if (!same && say)
		fprintf(stderr, "answers differ: %s %u \"%s\" / %s %u \"%s\"\n", chat_msg_type_name(a->type),
		        a->code, a->text, chat_msg_type_name(b->type), b->code, b->text);
	return same;
}

/* Findings 1 and 2: REGISTER of an existing name and of a new one, and a
 * guest LOGIN under a registered name and under a name a guest is using,
 * get the same answers by default; with relay.reveal_accounts = yes they
 * say which is which. */
static void test_hidden_accounts(void)
{
	struct relay r;
	struct chat_msg fresh, taken, online, reg, used;
	char unknown[CHAT_TEXT_MAX + 1];

	CHECK_EQ_INT(start(&r, NULL), 0);
	int zed = dial(&r); /* a guest online under the name zed */
	CHECK(login(zed, "zed", "rc4dh"));
	int fd = dial(&r);
	CHECK(hello(fd));
	fresh = register_reply(fd, "newbie", "newbiepw");
	taken = register_reply(fd, "alice", "stolen"); /* registered, offline */
	online = register_reply(fd, "zed", "zedpw");  /* in use by a guest */
	CHECK_EQ_INT(fresh.type, CHAT_MSG_DONE);
	CHECK_EQ_INT(fresh.ref, CHAT_MSG_REGISTER);
	CHECK_EQ_STR(fresh.name, "newbie");
	CHECK(same_answer(&fresh, "newbie", &taken, "alice", 1));
	CHECK(same_answer(&fresh, "newbie", &online, "zed", 1));
	/* Nothing changed for the owner; the registrant's password fails like
	 * any wrong one; the new name works. */
	CHECK(!scram(fd, CHAT_AUTH_LOGIN, "nosuchname", "x", NULL));
	snprintf(unknown, sizeof(unknown), "%s", last_text);
	CHECK(!scram(fd, CHAT_AUTH_LOGIN, "alice", "stolen", NULL));
	CHECK_EQ_INT(last_code, CHAT_PERR_AUTH);
	CHECK_EQ_STR(last_text, unknown);
	close(fd);
	fd = connect_as(&r, "alice", "alicepw");
	CHECK(fd >= 0);
	close(fd);
	fd = connect_as(&r, "newbie", "newbiepw");
	CHECK(fd >= 0);
	close(fd);
	/* Guests: a registered name (bob, offline) and a name in use (zed). */
	fd = dial(&r);
	CHECK(hello(fd));
	reg = guest_reply(fd, "bob");
	used = guest_reply(fd, "zed");
	CHECK_EQ_INT(reg.type, CHAT_MSG_ERROR);
	CHECK_EQ_INT(reg.code, CHAT_PERR_NAME_TAKEN);
	CHECK(same_answer(&reg, "bob", &used, "zed", 1));
	CHECK(strstr(reg.text, "cannot be used by a guest") != NULL);
	close(fd);
	/* Trying guest names one after the other is throttled per address:
	 * 3 refusals free (relay.login_throttle_after), then a wait. */
	fd = dial_from(&r, "127.0.0.9");
	CHECK(fd >= 0 && hello(fd));
	for (int i = 0; i < 4; i++)
		CHECK_EQ_INT(guest_reply(fd, i % 2 ? "bob" : "zed").code, CHAT_PERR_NAME_TAKEN);
	struct chat_msg t = guest_reply(fd, "free-name");
	CHECK_EQ_INT(t.code, CHAT_PERR_THROTTLED);
	close(fd);
	CHECK(relay_wait_log(&r, "registration of alice from 127.0.0.1", 5));
	CHECK(strstr(r.log, "account newbie registered") != NULL);
	close(zed);
	CHECK_EQ_INT(relay_stop(&r), 0);

	/* relay.reveal_accounts = yes: each says what it is. */
	CHECK_EQ_INT(start(&r, "--set", "relay.reveal_accounts=yes", NULL), 0);
	zed = dial(&r);
	CHECK(login(zed, "zed", "rc4dh"));
	fd = dial(&r);
	CHECK(hello(fd));
	fresh = register_reply(fd, "newbie2", "pw");
	taken = register_reply(fd, "alice", "stolen");
	online = register_reply(fd, "zed", "zedpw");
	CHECK_EQ_INT(fresh.type, CHAT_MSG_DONE);
	CHECK_EQ_STR(fresh.text, "registered; now log in");
	CHECK_EQ_INT(taken.type, CHAT_MSG_ERROR);
	CHECK_EQ_INT(taken.code, CHAT_PERR_EXISTS);
	CHECK(strstr(taken.text, "exists already") != NULL);
	CHECK_EQ_INT(online.code, CHAT_PERR_EXISTS);
	CHECK(!same_answer(&fresh, "newbie2", &taken, "alice", 0));
	reg = guest_reply(fd, "bob");
	used = guest_reply(fd, "zed");
	CHECK_EQ_INT(reg.code, CHAT_PERR_NAME_TAKEN);
	CHECK_EQ_INT(used.code, CHAT_PERR_NAME_TAKEN);
	CHECK(strstr(reg.text, "registered user") != NULL);
	CHECK(strstr(used.text, "connected user") != NULL);
	CHECK(!same_answer(&reg, "bob", &used, "zed", 0));
	close(fd);
	close(zed);
	CHECK_EQ_INT(relay_stop(&r), 0);
}

/* Finding 4: many failures for alice from 127.0.0.1 (an attacker); alice
 * logs in at once from 127.0.0.2 with the right password. */
static void test_other_address(void)
{
	struct relay r;
	struct chat_msg m;

	CHECK_EQ_INT(start(&r, "--set", "relay.login_throttle_ms=60000", NULL), 0);
	int fd = dial(&r);
	CHECK(hello(fd));
	int failed = 0, throttled = 0;
	for (int i = 0; i < 10; i++) {
		CHECK(!scram(fd, CHAT_AUTH_LOGIN, "alice", "guess", NULL));
		failed += last_code == CHAT_PERR_AUTH;
		throttled += last_code == CHAT_PERR_THROTTLED;
	}
	CHECK_EQ_INT(failed, 4);     /* 3 free, the 4th starts a wait of 60 s */
	CHECK_EQ_INT(throttled, 6);
	/* From the attacker's address even the right password waits now. */
	CHECK(!scram(fd, CHAT_AUTH_LOGIN, "alice", "alicepw", NULL));
	CHECK_EQ_INT(last_code, CHAT_PERR_THROTTLED);
	/* The owner, from another address, at once. */
	int owner = dial_from(&r, "127.0.0.2");
	CHECK(owner >= 0 && hello(owner));
	CHECK(scram(owner, CHAT_AUTH_LOGIN, "alice", "alicepw", &m));
	CHECK_EQ_STR(m.name, "alice");
	CHECK(relay_wait_log(&r, "client 127.0.0.2:", 5)); /* it did come from there */
	CHECK(relay_wait_log(&r, "logged in as alice", 5));
	close(owner);
	close(fd);
	CHECK_EQ_INT(relay_stop(&r), 0);
}

/* AUTH's challenge for name from fd: its salt (base64) and iterations. */
static int challenge_for(int fd, const char *name, char *salt, size_t cap, unsigned *iter)
{
	struct chat_scram_client sc;
	char first[CHAT_SCRAM_MSG_MAX];
	struct chat_msg m;

	memset(&sc, 0, sizeof(sc));
	salt[0] = '\0';
	*iter = 0;
	if (chat_scram_client_first(&sc, name, "0123456789abcdefnonce", NULL, sizeof(first), first) != CHAT_OK)
		return 0;
	begin(CHAT_MSG_AUTH);
	chat_put_u8(&wb, CHAT_AUTH_LOGIN);
	chat_put_str16(&wb, first);
	if (send_msg(fd) || read_msg(fd, &m) || m.type != CHAT_MSG_AUTH_CHALLENGE)
		return 0;
	const char *s = strstr(m.text, ",s="), *i = strstr(m.text, ",i=");
	if (!s || !i || i < s)
		return 0;
	snprintf(salt, cap, "%.*s", (int)(i - s - 3), s + 3);
	*iter = (unsigned)strtoul(i + 3, NULL, 10);
	return 1;
}

/* Findings 3 and 5: a registration flood from one address is throttled;
 * the registration counts and the guard per account survive a restart, and
 * so does an unknown name's fake salt, which looks like a real one. */
static void test_restart_state(void)
{
	struct relay r;
	struct chat_msg m;
	char ghost1[128], ghost2[128], real[128];
	unsigned it_ghost, it_real;
	/* Registrations: 2 free, the 3rd starts a wait of 60 s.  Logins: 4
	 * failures per address free; the guard: 4 failures of an account from
	 * all addresses free, the 5th starts a wait of 60 s. */
	static const char *const cfg[] = { "--set", "relay.register_throttle_after=2", "--set",
	                                   "relay.register_throttle_ms=60000", "--set",
	                                   "relay.login_throttle_after=4", "--set",
	                                   "relay.login_guard_after=4", "--set",
	                                   "relay.login_throttle_ms=60000" };
#define CFG cfg[0], cfg[1], cfg[2], cfg[3], cfg[4], cfg[5], cfg[6], cfg[7], cfg[8], cfg[9]

	CHECK_EQ_INT(start(&r, CFG, NULL), 0);
	/* A flood of registrations from 127.0.0.3. */
	int fd = dial_from(&r, "127.0.0.3");
	CHECK(fd >= 0 && hello(fd));
	CHECK_EQ_INT(register_reply(fd, "gina", "ginapw").type, CHAT_MSG_DONE);
	CHECK_EQ_INT(register_reply(fd, "flood1", "pw").type, CHAT_MSG_DONE);
	CHECK_EQ_INT(register_reply(fd, "flood2", "pw").type, CHAT_MSG_DONE);
	m = register_reply(fd, "flood4", "pw");
	CHECK_EQ_INT(m.type, CHAT_MSG_ERROR);
	CHECK_EQ_INT(m.code, CHAT_PERR_THROTTLED);
	CHECK(strstr(m.text, "too many registrations from your address") != NULL);
	/* the name was not looked at: a taken one waits the same */
	CHECK_EQ_INT(register_reply(fd, "alice", "pw").code, CHAT_PERR_THROTTLED);
	close(fd);
	/* Another address registers. */
	fd = dial_from(&r, "127.0.0.4");
	CHECK(fd >= 0 && hello(fd));
	CHECK_EQ_INT(register_reply(fd, "flood3", "pw").type, CHAT_MSG_DONE);
	close(fd);
	/* gina's password guessed from two addresses, 2 each (no address
	 * waits), then once more: the guard engages for every address. */
	const char *from[] = { "127.0.0.5", "127.0.0.5", "127.0.0.6", "127.0.0.6", "127.0.0.7" };
	for (int i = 0; i < 5; i++) {
		fd = dial_from(&r, from[i]);
		CHECK(fd >= 0 && hello(fd));
		CHECK(!scram(fd, CHAT_AUTH_LOGIN, "gina", "guess", NULL));
		CHECK_EQ_INT(last_code, CHAT_PERR_AUTH);
		close(fd);
	}
	CHECK(connect_as_from(&r, "127.0.0.8", "gina", "ginapw") < 0);
	CHECK_EQ_INT(last_code, CHAT_PERR_THROTTLED);
	/* An unknown name's salt, and a real one's. */
	fd = dial_from(&r, "127.0.0.10");
	CHECK(fd >= 0 && hello(fd));
	CHECK(challenge_for(fd, "ghost", ghost1, sizeof(ghost1), &it_ghost));
	CHECK(challenge_for(fd, "alice", real, sizeof(real), &it_real));
	close(fd);
	CHECK_EQ_INT(relay_stop(&r), 0);

	CHECK_EQ_INT(start(&r, CFG, NULL), 0);
	fd = dial_from(&r, "127.0.0.3");
	CHECK(fd >= 0 && hello(fd));
	m = register_reply(fd, "flood4", "pw");
	CHECK_EQ_INT(m.code, CHAT_PERR_THROTTLED); /* still: the count was kept */
	close(fd);
	CHECK(connect_as_from(&r, "127.0.0.8", "gina", "ginapw") < 0);
	CHECK_EQ_INT(last_code, CHAT_PERR_THROTTLED); /* the guard was kept */
	CHECK(strstr(last_text, "try again in") != NULL);
	fd = dial_from(&r, "127.0.0.10");
	CHECK(fd >= 0 && hello(fd));
	CHECK(challenge_for(fd, "ghost", ghost2, sizeof(ghost2), &it_ghost));
	close(fd);
	CHECK_EQ_STR(ghost2, ghost1);                       /* the same fake salt after a restart */
	CHECK_EQ_INT(strlen(ghost1), strlen(real));         /* as long as a real one (16 bytes) */
	CHECK_EQ_INT(strlen(real), 24);
	CHECK_EQ_INT(it_ghost, it_real);                    /* the same iteration count */
	CHECK(strcmp(ghost1, real) != 0);
	CHECK_EQ_INT(relay_stop(&r), 0);
#undef CFG
}

/* Identity keys: a registered user publishes a public key per suite (at
 * most 8 suites), anyone logged in reads them; a guest cannot publish; an
 * unknown name has none; they survive a restart and go with the account. */
static int keys_of(int fd, const char *name, const char *suite, size_t *len, uint8_t *key)
{
	struct chat_msg m;
	char s[CHAT_NAME_MAX + 1];
	const uint8_t *k;
	size_t n;
	int count = 0;

	begin(CHAT_MSG_KEYS_GET);
	chat_put_str8(&wb, name);
	if (send_msg(fd) || expect_type(fd, CHAT_MSG_KEYS, &m) || strcmp(m.name, name))
		return -1;
	*len = 0;
	while (chat_iter_key(&m.list, s, &n, &k)) {
		count++;
		if (!strcmp(s, suite)) {
			memcpy(key, k, n);
			*len = n;
		}
	}
	return count;
}

static void put_key(const char *suite, size_t len, uint8_t fill)
{
	begin(CHAT_MSG_KEYS_PUT);
	chat_put_str8(&wb, suite);
	for (size_t i = 0; i < len; i++)
		chat_put_u8(&wb, fill);
}

static void test_identity_keys(struct relay *r)
{
	uint8_t key[CHAT_KEY_MAX];
	size_t len;
	int alice = connect_as(r, "alice", "alicepw"), bob = connect_as(r, "bob", "bobpw2");

	CHECK(alice >= 0 && bob >= 0);
	CHECK_EQ_INT(keys_of(bob, "alice", "noise-xx", &len, key), 0);
	put_key("noise-xx", 32, 0xa1);
	CHECK(request_done(alice));
	put_key("rsa", 400, 0xb2);
	CHECK(request_done(alice));
	CHECK_EQ_INT(keys_of(bob, "alice", "noise-xx", &len, key), 2);
	CHECK(len == 32 && key[0] == 0xa1 && key[31] == 0xa1);
	CHECK_EQ_INT(keys_of(bob, "alice", "rsa", &len, key), 2);
	CHECK(len == 400 && key[399] == 0xb2);
	/* a new key replaces the old one */
	put_key("noise-xx", 32, 0xc3);
	CHECK(request_done(alice));
	CHECK_EQ_INT(keys_of(alice, "alice", "noise-xx", &len, key), 2);
	CHECK(len == 32 && key[0] == 0xc3);
	/* at most 8 suites */
	char suite[16];
	for (int i = 0; i < 6; i++) {
		snprintf(suite, sizeof(suite), "suite-%d", i);
		put_key(suite, 8, (uint8_t)i);
		CHECK(request_done(alice));
	}
	put_key("one-too-many", 8, 9);
	CHECK(!request_done(alice));
	CHECK_EQ_INT(last_code, CHAT_PERR_LIMIT);
	put_key("noise-xx", 32, 0xa1); /* replacing one of the 8 still works */
	CHECK(request_done(alice));
	/* too long a key, an empty one: malformed */
	put_key("noise-xx", CHAT_KEY_MAX + 1, 1);
	CHECK(!request_done(alice));
	CHECK_EQ_INT(last_code, CHAT_PERR_MALFORMED);
	/* an unknown name and a guest have none; a guest cannot publish */
	CHECK_EQ_INT(keys_of(bob, "nobody", "noise-xx", &len, key), 0);
	int guest = dial(r);
	CHECK(guest >= 0 && login(guest, "gus", "rc4dh"));
	put_key("noise-xx", 32, 1);
	CHECK(!request_done(guest));
	CHECK_EQ_INT(last_code, CHAT_PERR_FORBIDDEN);
	CHECK_EQ_INT(keys_of(guest, "alice", "noise-xx", &len, key), 8);
	close(guest);
	close(alice);
	close(bob);
}

static void test_identity_keys_kept(struct relay *r)
{
	uint8_t key[CHAT_KEY_MAX];
	size_t len;
	int bob = connect_as(r, "bob", "bobpw2");

	CHECK_EQ_INT(keys_of(bob, "alice", "noise-xx", &len, key), 8); /* after a restart */
	CHECK(len == 32 && key[0] == 0xa1);
	close(bob);
}

/* kill -9 at random moments while alice sends; after each restart alice
 * resends what was not acknowledged; bob must get every acknowledged id
 * exactly once, in order. */
static void test_crash(void)
{
	enum { N = 3000, ROUNDS = 4 };
	static int acked[N + 1], got[N + 1];
	uint64_t next = 1000, base = 1000;
	struct relay r;

	for (int round = 0; round < ROUNDS; round++) {
		CHECK_EQ_INT(start(&r, "--set", "relay.queue_max_messages=100000", NULL), 0);
		int alice = connect_as(&r, "alice", "alicepw");
		CHECK(alice >= 0);
		if (alice < 0)
			return;
		/* A killer process: SIGKILL the relay 30..330 ms from now (ten
		 * times that under valgrind), while alice keeps four messages in
		 * flight (resending from the first one not acknowledged: the relay
		 * drops what it already has). */
		uint32_t rnd;
		getrandom(&rnd, sizeof(rnd), 0);
		pid_t pid = r.pid, killer = fork();
		if (killer == 0) {
			/* valgrind runs the relay some 20-50 times slower */
			usleep((30 + rnd % 300) * (use_valgrind() ? 10 : 1) * 1000);
			kill(pid, SIGKILL);
			_exit(0);
		}
		uint64_t i = base, inflight = 0;
		struct chat_msg m;
		for (int alive = 1; alive;) {
			while (inflight < 4 && i < 1000 + N) {
				char text[32];
				snprintf(text, sizeof(text), "m%llu", (unsigned long long)i);
				if (send_payload(alice, "bob", i++, text)) {
					alive = 0;
					break;
				}
				inflight++;
			}
			if (!alive || read_msg(alice, &m))
				break;
			if (m.type != CHAT_MSG_STORED)
				continue;
			inflight--;
			if (m.id >= 1000 && m.id < 1000 + N &&
			    (m.flag == CHAT_STORED_QUEUED || m.flag == CHAT_STORED_DUPLICATE))
				acked[m.id - 1000] = 1;
			if (i == 1000 + N && !inflight)
				break;
		}
		waitpid(killer, NULL, 0);
		kill(pid, SIGKILL);
		close(alice);
		waitpid(pid, NULL, 0);
		close(r.err_fd);
		/* the next round resends from the first unacknowledged id */
		base = 1000;
		while (base < 1000 + N && acked[base - 1000])
			base++;
		next = base;
	}
	(void)next;
	/* final relay: everything acknowledged arrives exactly once, in order */
	CHECK_EQ_INT(start(&r, NULL), 0);
	int bob = connect_as(&r, "bob", "bobpw2");
	CHECK(bob >= 0);
	if (bob < 0)
		fprintf(stderr, "crash test: bob cannot log in: %s\nrelay log:\n%s\n", last_text, r.log);
	struct chat_msg in;
	uint64_t id, prev = 0;
	int order_ok = 1, dup = 0;
	for (;;) {
		struct chat_msg m;
		/* Checked before waiting: with nothing (more) to wait for, a read
		 * would never time out (the relay's PINGs keep it alive). */
		int all = 1;
		for (int i = 0; i < N; i++)
			if (acked[i] && !got[i])
				all = 0;
		if (all)
			break;
		if (read_msg(bob, &m)) {
			relay_read_log(&r, 200);
			fprintf(stderr, "crash test: bob's connection ended (%s); relay log:\n%s\n", strerror(errno), r.log);
			break;
		}
		if (m.type != CHAT_MSG_MAIL) {
			fprintf(stderr, "crash test: bob got %s (%s)\n", chat_msg_type_name(m.type), m.text);
			break;
		}
		char err[128];
		if (chat_msg_parse(m.payload_len, m.payload, &in, sizeof(err), err) != CHAT_OK)
			break;
		id = m.id;
		begin(CHAT_MSG_ACK);
		chat_put_u64(&wb, id);
		chat_put_u8(&wb, 0);
		chat_put_str16(&wb, "");
		send_msg(bob);
		if (in.type != CHAT_MSG_DELIVER)
			continue;
		char num[32];
		snprintf(num, sizeof(num), "%.*s", (int)(in.payload_len > 1 ? in.payload_len - 1 : 0),
		         (const char *)in.payload + 1); /* the payload is not NUL-terminated */
		unsigned long long k = strtoull(num, NULL, 10);
		if (k < 1000 || k >= 1000 + N)
			continue;
		if (got[k - 1000])
			dup++;
		got[k - 1000]++;
		if (k <= prev)
			order_ok = 0;
		prev = k;
	}
	int missing = 0, nacked = 0;
	for (int i = 0; i < N; i++) {
		nacked += acked[i];
		missing += acked[i] && !got[i];
	}
	fprintf(stderr, "crash test: %d acknowledged, %d missing, %d duplicates\n", nacked, missing, dup);
	CHECK(nacked > 0);
	CHECK_EQ_INT(missing, 0);
	CHECK_EQ_INT(dup, 0);
	CHECK(order_ok);
	close(bob);
	/* accounts and friendships survived */
	int alice = connect_as(&r, "alice", "alicepw");
	CHECK(alice >= 0);
	begin(CHAT_MSG_FRIEND);
	chat_put_u8(&wb, CHAT_FRIEND_OP_LIST);
	chat_put_str8(&wb, "");
	struct chat_msg m;
	CHECK(!send_msg(alice) && !expect_type(alice, CHAT_MSG_FRIENDS, &m));
	char name[CHAT_NAME_MAX + 1];
	unsigned state;
	int online;
	CHECK(chat_iter_friend(&m.list, name, &state, &online) && !strcmp(name, "bob") &&
	      state == CHAT_FRIEND_YES);
	close(alice);
	CHECK_EQ_INT(relay_stop(&r), 0);
}

/* relay.friends_only: TALK needs a friendship; relay.archive keeps the
 * ciphertext of every SEND (and only that). */
static void test_policies(void)
{
	struct relay r;
	struct chat_msg m;
	char q[700], out[64] = "";

	CHECK_EQ_INT(start(&r, "--set", "relay.friends_only=yes", "--set", "relay.archive=yes", NULL), 0);
	int alice = connect_as(&r, "alice", "alicepw"), root = connect_as(&r, "root", "rootpw");
	CHECK(alice >= 0 && root >= 0);
	begin(CHAT_MSG_TALK);
	chat_put_str8(&wb, "root");
	CHECK(!send_msg(alice) && !expect_type(alice, CHAT_MSG_ERROR, &m));
	CHECK_EQ_INT(m.code, CHAT_PERR_FORBIDDEN);
	CHECK(strstr(m.text, "only between friends") != NULL);
	/* alice and bob are friends (test_friends) with a conversation: SEND works and is archived */
	CHECK(!send_payload(alice, "bob", 5000, "archived-ciphertext"));
	CHECK(!expect_type(alice, CHAT_MSG_STORED, &m));
	CHECK_EQ_INT(m.flag, CHAT_STORED_QUEUED);
	/* no longer friends: SEND is refused too */
	begin(CHAT_MSG_FRIEND);
	chat_put_u8(&wb, CHAT_FRIEND_OP_REMOVE);
	chat_put_str8(&wb, "bob");
	CHECK(request_done(alice));
	CHECK(!send_payload(alice, "bob", 5001, "not friends"));
	CHECK(!expect_type(alice, CHAT_MSG_ERROR, &m));
	CHECK_EQ_INT(m.code, CHAT_PERR_FORBIDDEN);
	CHECK(m.ref == CHAT_MSG_SEND && m.id == 5001); /* the refusal names the SEND it refuses */
	/* an answer to anything else names no id */
	begin(CHAT_MSG_TALK);
	chat_put_str8(&wb, "root");
	CHECK(!send_msg(alice) && !expect_type(alice, CHAT_MSG_ERROR, &m));
	CHECK(m.ref == CHAT_MSG_TALK && m.id == 0);
	close(alice);
	close(root);
	CHECK_EQ_INT(relay_stop(&r), 0);
	snprintf(q, sizeof(q), "sqlite3 %s \"select sender || ':' || a || ':' || b || ':' || "
	         "cast(data as text) from archive\"", db);
	FILE *p = popen(q, "r");
	CHECK(p != NULL);
	if (p) {
		CHECK(fgets(out, sizeof(out), p) != NULL);
		pclose(p);
	}
	CHECK_EQ_STR(out, "alice:alice:bob:archived-ciphertext\n");
}

static void test_bad_database(void)
{
	struct relay r;
	char path[400], set[500];
	FILE *f;

	snprintf(path, sizeof(path), "%s/garbage.db", dir);
	f = fopen(path, "w");
	fputs("this is not a database, and it must stay exactly as it is\n", f);
	fclose(f);
	snprintf(set, sizeof(set), "relay.database=%s", path);
	CHECK_EQ_INT(relay_start(&r, "127.0.0.1:0", "--set", set, NULL), 1);
	CHECK(strstr(r.log, path) != NULL);
	CHECK(strstr(r.log, "not an SQLite database") != NULL || strstr(r.log, "not a database") != NULL);
	char buf[200] = "";
	f = fopen(path, "r");
	CHECK(fgets(buf, sizeof(buf), f) && !strcmp(buf, "this is not a database, and it must stay exactly as it is\n"));
	fclose(f);
	close(r.err_fd);
	if (geteuid() != 0) {
		snprintf(path, sizeof(path), "%s/ro", dir);
		mkdir(path, 0500);
		snprintf(set, sizeof(set), "relay.database=%s/ro/relay.db", dir);
		CHECK_EQ_INT(relay_start(&r, "127.0.0.1:0", "--set", set, NULL), 1);
		CHECK(strstr(r.log, "ro/relay.db") != NULL);
		close(r.err_fd);
	}
}

int main(void)
{
	struct relay r;

	snprintf(dir, sizeof(dir), "/tmp/chat-acc.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(db, sizeof(db), "%s/relay.db", dir);
	chat_wbuf_init(&wb, 1 << 17);
	test_add_admin();
	CHECK_EQ_INT(start(&r, "--set", "relay.queue_max_messages=5", NULL), 0);
	test_register_login(&r);
	test_auth_then_guest(&r);
	test_throttle(&r);
	test_admin(&r);
	test_passwd(&r);
	test_friends(&r);
	test_offline(&r);
	test_identity_keys(&r);
	CHECK_EQ_INT(relay_stop(&r), 0);
	test_hidden_accounts();
	test_other_address();
	test_restart_state();
	/* the same database after a restart, with a short expiry */
	CHECK_EQ_INT(start(&r, "--set", "relay.queue_max_messages=5", "--set", "relay.queue_expiry=2", NULL), 0);
	test_identity_keys_kept(&r);
	test_limits_expiry(&r);
	CHECK_EQ_INT(relay_stop(&r), 0);
	test_crash();
	test_policies();
	test_bad_database();
	chat_wbuf_free(&wb);
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "chmod -R u+w %s; rm -rf %s", dir, dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return test_done("e2e_accounts");
}
