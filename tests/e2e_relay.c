/* chat-relay as a separate process on loopback, driven through raw sockets:
 * frames coalesced in one read and split across many, zero-length, oversize
 * and truncated frames, a client that stops reading, many clients, IPv6,
 * address in use, keepalive and dead links, clean shutdown on SIGTERM.
 * With CHAT_VALGRIND=1 the relay runs under valgrind and must report no
 * error or leak. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "paths.h"
#include "proto.h"
#include "relayproc.h"
#include "testutils.h"

static void test_coalesced_and_split(struct relay *r)
{
	enum { N = 400 };
	static uint8_t out[1 << 16];
	size_t used = 0;
	struct chat_msg m;
	int fd = dial(r), a = dial(r), b = dial(r);

	CHECK(fd >= 0 && a >= 0 && b >= 0);
	if (fd < 0 || a < 0 || b < 0)
		return;
	/* HELLO, LOGIN and 400 WHO requests in one write: the relay sees many
	 * frames per read and answers every one, in order. */
	put_hello("rc4dh");
	used += put_frame(out + used, wb.len, wb.data);
	begin(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, "many");
	used += put_frame(out + used, wb.len, wb.data);
	begin(CHAT_MSG_WHO);
	for (int i = 0; i < N; i++)
		used += put_frame(out + used, wb.len, wb.data);
	CHECK_EQ_INT(send_all(fd, out, used), 0);
	CHECK(!read_msg(fd, &m) && m.type == CHAT_MSG_WELCOME);
	CHECK(!read_msg(fd, &m) && m.type == CHAT_MSG_LOGGED_IN);
	int lists = 0;
	for (int i = 0; i < N; i++)
		lists += !read_msg(fd, &m) && m.type == CHAT_MSG_WHO_LIST;
	CHECK_EQ_INT(lists, N);

	/* A 60000-byte payload routed from a to b, its frame split into pieces
	 * of 1..7 bytes and the header sent a byte at a time. */
	CHECK(login(a, "alice", "rc4dh,xor-demo"));
	CHECK(login(b, "bob", "xor-demo,rc4dh"));
	CHECK(converse(a, "alice", b, "bob", "rc4dh"));
	static uint8_t big[60100];
	uint8_t payload[60000];
	for (size_t j = 0; j < sizeof(payload); j++)
		payload[j] = (uint8_t)(j * 7 + 3);
	begin(CHAT_MSG_ROUTE);
	chat_put_str8(&wb, "bob");
	chat_put_bytes(&wb, sizeof(payload), payload);
	size_t total = put_frame(big, wb.len, wb.data);
	for (int i = 0; i < 4; i++) {
		CHECK_EQ_INT(send_all(a, big + i, 1), 0);
		usleep(20000);
	}
	test_srand(42);
	for (size_t sent = 4; sent < total;) {
		size_t piece = 1 + test_rand() % 7;
		if (piece > total - sent)
			piece = total - sent;
		if (send_all(a, big + sent, piece))
			break;
		sent += piece;
	}
	CHECK(!read_msg(b, &m) && m.type == CHAT_MSG_DELIVER);
	CHECK(!strcmp(m.name, "alice"));
	CHECK_EQ_INT(m.payload_len, sizeof(payload));
	CHECK(m.payload_len == sizeof(payload) && !memcmp(m.payload, payload, sizeof(payload)));
	/* b disconnects: a hears the conversation is over. */
	close(b);
	CHECK(!expect_type(a, CHAT_MSG_CLOSED, &m) && !strcmp(m.name, "bob"));
	close(a);
	close(fd);
}

static void test_protocol_errors(struct relay *r)
{
	int a = dial(r), b = dial(r), c = dial(r), d = dial(r), e = dial(r);
	unsigned code;
	struct chat_msg m;

	CHECK(a >= 0 && b >= 0 && c >= 0 && d >= 0 && e >= 0);
	if (a < 0 || b < 0 || c < 0 || d < 0 || e < 0)
		return;
	begin(CHAT_MSG_LOGIN); /* before HELLO */
	chat_put_str8(&wb, "alice");
	CHECK_STR_CONTAINS(error_for(a, &code), "send HELLO before LOGIN");
	begin(CHAT_MSG_WHO);
	CHECK_STR_CONTAINS(error_for(a, &code), "log in before WHO");
	CHECK_EQ_INT(code, CHAT_PERR_NOT_LOGGED_IN);
	CHECK(login(a, "alice", "rc4dh"));
	CHECK(!login(b, "alice", "rc4dh")); /* name taken */
	begin(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, "alice");
	CHECK_STR_CONTAINS(error_for(b, &code), "the name alice is taken");
	CHECK_EQ_INT(code, CHAT_PERR_NAME_TAKEN);
	begin(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, "Bob!");
	CHECK_STR_CONTAINS(error_for(b, &code), "LOGIN: name 'Bob!' must start with a lowercase letter");
	CHECK_EQ_INT(code, CHAT_PERR_MALFORMED);
	begin(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, "bob");
	CHECK(!send_msg(b) && !read_msg(b, &m) && m.type == CHAT_MSG_LOGGED_IN);

	begin(CHAT_MSG_TALK);
	chat_put_str8(&wb, "carol");
	CHECK_STR_CONTAINS(error_for(a, &code), "carol is not connected");
	CHECK_EQ_INT(code, CHAT_PERR_NOT_CONNECTED);
	begin(CHAT_MSG_TALK);
	chat_put_str8(&wb, "alice");
	CHECK_STR_CONTAINS(error_for(a, &code), "you cannot talk to yourself");
	begin(CHAT_MSG_ROUTE);
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 1);
	CHECK_STR_CONTAINS(error_for(a, &code), "no conversation with bob");
	CHECK_EQ_INT(code, CHAT_PERR_NO_CONVERSATION);

	/* No common suite: the exact wording users see. */
	CHECK(login(c, "carol", "xor-demo"));
	begin(CHAT_MSG_TALK);
	chat_put_str8(&wb, "carol");
	CHECK_STR_CONTAINS(error_for(a, &code), "carol offers only xor-demo; you allow only rc4dh");
	CHECK_EQ_INT(code, CHAT_PERR_NO_COMMON_SUITE);

	/* A refused offer reaches the offerer with its reason. */
	begin(CHAT_MSG_TALK);
	chat_put_str8(&wb, "bob");
	CHECK(!send_msg(a) && !expect_type(b, CHAT_MSG_OFFERED, &m) && !strcmp(m.name, "alice"));
	put_answer("alice", 0, "", "busy right now");
	CHECK(!send_msg(b) && !expect_type(a, CHAT_MSG_ANSWERED, &m));
	CHECK(m.flag == 0 && !strcmp(m.text, "busy right now"));
	begin(CHAT_MSG_ROUTE); /* still no conversation after a refusal */
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 1);
	CHECK_STR_CONTAINS(error_for(a, &code), "no conversation with bob");
	put_answer("carol", 1, "rc4dh", ""); /* answering an offer never made */
	CHECK_STR_CONTAINS(error_for(a, &code), "carol has not offered you a conversation");

	/* A type only the relay sends. */
	begin(CHAT_MSG_DELIVER);
	chat_put_str8(&wb, "bob");
	CHECK_STR_CONTAINS(error_for(a, &code), "DELIVER is sent by the relay, not to it");

	/* Unsupported version: an error, then BYE and the connection closes. */
	begin(CHAT_MSG_HELLO);
	chat_put_u8(&wb, 9);
	chat_put_u8(&wb, 1);
	chat_put_str8(&wb, "rc4dh");
	CHECK_STR_CONTAINS(error_for(d, &code), "protocol version 9 is not supported");
	CHECK(!read_msg(d, &m) && m.type == CHAT_MSG_BYE);
	CHECK(sees_close(d));

	/* A client that keeps sending garbage is cut off with a reason. */
	uint8_t junk[5] = { 0, 0, 0, 1, 0x42 };
	for (int i = 0; i < 10; i++)
		send_all(e, junk, sizeof(junk));
	int errors = 0, bye = 0;
	while (!read_msg(e, &m)) {
		errors += m.type == CHAT_MSG_ERROR;
		if (m.type == CHAT_MSG_BYE && strstr(m.text, "too many malformed requests"))
			bye = 1;
	}
	CHECK_EQ_INT(errors, 10);
	CHECK(bye);
	CHECK(relay_wait_log(r, "malformed request: message: unknown message type 0x42", 5));
	close(a);
	close(b);
	close(c);
	close(d);
	close(e);
}

static void test_rooms(struct relay *r)
{
	int a = dial(r), b = dial(r), c = dial(r);
	struct chat_msg m;
	unsigned code;
	char name[CHAT_NAME_MAX + 1], suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	size_t n;

	CHECK(login(a, "ann", "rc4dh") && login(b, "ben", "rc4dh,xor-demo") && login(c, "cat", "xor-demo"));
	begin(CHAT_MSG_JOIN);
	chat_put_str8(&wb, "lobby");
	CHECK(!send_msg(a) && !read_msg(a, &m) && m.type == CHAT_MSG_MEMBERS && m.list.count == 0);
	CHECK(!send_msg(b) && !read_msg(b, &m) && m.type == CHAT_MSG_MEMBERS && m.list.count == 1);
	struct chat_iter it = m.list;
	CHECK(chat_iter_who(&it, name, &n, suites) && !strcmp(name, "ann") && n == 1 && !strcmp(suites[0], "rc4dh"));
	CHECK(!read_msg(a, &m) && m.type == CHAT_MSG_ROOM_EVENT && m.flag == 1 && !strcmp(m.name, "ben"));
	CHECK(!send_msg(c) && !read_msg(c, &m) && m.type == CHAT_MSG_MEMBERS && m.list.count == 2);
	CHECK(!read_msg(a, &m) && m.type == CHAT_MSG_ROOM_EVENT && !strcmp(m.name, "cat"));
	CHECK(!read_msg(b, &m) && m.type == CHAT_MSG_ROOM_EVENT && !strcmp(m.name, "cat"));
	CHECK_STR_CONTAINS(error_for(a, &code), "you are already in room lobby");

	/* One copy per member, each delivered only to its member. */
	begin(CHAT_MSG_ROOM_SEND);
	chat_put_str8(&wb, "lobby");
	chat_put_u16(&wb, 2);
	chat_put_str8(&wb, "ben");
	chat_put_u32(&wb, 3);
	chat_put_bytes(&wb, 3, (const uint8_t *)"xyz");
	chat_put_str8(&wb, "cat");
	chat_put_u32(&wb, 2);
	chat_put_bytes(&wb, 2, (const uint8_t *)"pq");
	CHECK(!send_msg(a));
	CHECK(!read_msg(b, &m) && m.type == CHAT_MSG_ROOM_DELIVER && !strcmp(m.name, "ann") &&
	      m.payload_len == 3 && !memcmp(m.payload, "xyz", 3));
	CHECK(!read_msg(c, &m) && m.type == CHAT_MSG_ROOM_DELIVER && m.payload_len == 2 &&
	      !memcmp(m.payload, "pq", 2) && !strcmp(m.room, "lobby"));
	/* Members may route to each other without an offer. */
	begin(CHAT_MSG_ROUTE);
	chat_put_str8(&wb, "cat");
	chat_put_u8(&wb, 9);
	CHECK(!send_msg(b) && !read_msg(c, &m) && m.type == CHAT_MSG_DELIVER && !strcmp(m.name, "ben"));

	begin(CHAT_MSG_ROOMS);
	CHECK(!send_msg(c) && !read_msg(c, &m) && m.type == CHAT_MSG_ROOM_LIST && m.list.count == 1);
	unsigned members = 0;
	it = m.list;
	CHECK(chat_iter_room(&it, name, &members) && !strcmp(name, "lobby") && members == 3);

	begin(CHAT_MSG_LEAVE);
	chat_put_str8(&wb, "lobby");
	CHECK(!send_msg(c));
	CHECK(!read_msg(a, &m) && m.type == CHAT_MSG_ROOM_EVENT && m.flag == 2 && !strcmp(m.name, "cat"));
	CHECK(!read_msg(b, &m) && m.type == CHAT_MSG_ROOM_EVENT && m.flag == 2);
	begin(CHAT_MSG_ROOM_SEND); /* to a former member: refused, named */
	chat_put_str8(&wb, "lobby");
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "cat");
	chat_put_u32(&wb, 0);
	CHECK_STR_CONTAINS(error_for(a, &code), "cat is not in room lobby");
	close(b); /* a member vanishing is announced too */
	CHECK(!expect_type(a, CHAT_MSG_ROOM_EVENT, &m) && m.flag == 2 && !strcmp(m.name, "ben"));
	close(a);
	close(c);
}

static void test_oversize_and_truncated(struct relay *r)
{
	int good = dial(r), bad = dial(r), cut = dial(r);
	uint8_t hdr[4] = { 0x00, 0x10, 0x00, 0x01 }; /* 1 MiB + 1 > 64 KiB */

	CHECK(good >= 0 && bad >= 0 && cut >= 0);
	if (good < 0 || bad < 0 || cut < 0)
		return;
	CHECK(login(good, "good", "rc4dh"));
	/* Logged in, so core.max_frame applies (tests/e2e_prelogin.c: before). */
	CHECK(login(bad, "bad", "rc4dh"));
	CHECK_EQ_INT(send_all(bad, hdr, 4), 0);
	CHECK(sees_close(bad));
	CHECK(relay_wait_log(r, "frame of 1048577 bytes exceeds the limit of 65536 bytes", 10));
	CHECK(who_ok(good)); /* others are unaffected */

	/* A frame cut short by the end of the stream is reported as such. */
	uint8_t part[14] = { 0, 0, 0, 100, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j' };
	CHECK_EQ_INT(send_all(cut, part, sizeof(part)), 0);
	shutdown(cut, SHUT_WR);
	CHECK(sees_close(cut));
	CHECK(relay_wait_log(r, "in the middle of a frame (14 of 104 bytes)", 10));
	CHECK(who_ok(good));
	close(good);
	close(bad);
	close(cut);
}

static void test_many_clients(struct relay *r)
{
	enum { N = 200 };
	int fds[N], ok = 0;

	for (int i = 0; i < N; i++)
		fds[i] = dial(r);
	for (int i = 0; i < N; i++) {
		char name[32];
		snprintf(name, sizeof(name), "user%d", i);
		if (fds[i] >= 0 && login(fds[i], name, "rc4dh") && who_ok(fds[i]))
			ok++;
	}
	CHECK_EQ_INT(ok, N);
	for (int i = 0; i < N; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* A client that stops reading is cut off once its queue overflows, and the
 * others keep being served: a sender floods its conversation partner, who
 * never reads. */
static void test_slow_reader(void)
{
	struct relay r;
	static uint8_t frames[16 * 1100];
	uint8_t payload[1024];

	CHECK_EQ_INT(relay_start(&r, "127.0.0.1:0", "--set", "relay.out_queue_limit=65536", NULL), 0);
	if (!r.pid)
		return;
	int slow = dial(&r), sender = dial(&r), good = dial(&r);
	CHECK(slow >= 0 && sender >= 0 && good >= 0);
	if (slow < 0 || sender < 0 || good < 0)
		goto out;
	CHECK(login(slow, "slow", "rc4dh") && login(sender, "sender", "rc4dh") && login(good, "good", "rc4dh"));
	CHECK(converse(sender, "sender", slow, "slow", "rc4dh"));
	memset(payload, 'x', sizeof(payload));
	begin(CHAT_MSG_ROUTE);
	chat_put_str8(&wb, "slow");
	chat_put_bytes(&wb, sizeof(payload), payload);
	size_t used = 0;
	for (int i = 0; i < 16; i++)
		used += put_frame(frames + used, wb.len, wb.data);
	/* At most 256 MiB, at most 30 s: the kernel buffers of the slow client
	 * and of the relay fill first, then the relay's queue for it. */
	int cut = 0;
	time_t deadline = time(NULL) + 30;
	for (int i = 0; i < 16384 && !cut && time(NULL) < deadline; i++) {
		if (send_all(sender, frames, used))
			break;
		relay_read_log(&r, 0);
		cut = strstr(r.log, "client slow dropped: output queue full") != NULL;
	}
	CHECK(relay_wait_log(&r, "client slow dropped: output queue full", 10));
	CHECK(relay_wait_log(&r, "peer is not reading", 1));
	struct chat_msg m;
	CHECK(!expect_type(sender, CHAT_MSG_CLOSED, &m) && !strcmp(m.name, "slow"));
	CHECK(who_ok(good));
	begin(CHAT_MSG_WHO); /* the sender may first get errors for its last routes */
	CHECK(!send_msg(sender) && !expect_type(sender, CHAT_MSG_WHO_LIST, &m));
	close(slow);
	close(sender);
	close(good);
out:
	CHECK_EQ_INT(relay_stop(&r), 0);
}

/* relay.idle_timeout drops a client that sends nothing. */
static void test_idle_timeout(void)
{
	struct relay r;
	struct chat_msg m;

	CHECK_EQ_INT(relay_start(&r, "127.0.0.1:0", "--set", "relay.idle_timeout=1", NULL), 0);
	if (!r.pid)
		return;
	int idle = dial(&r), busy = dial(&r);
	CHECK(idle >= 0 && busy >= 0 && login(busy, "busy", "rc4dh"));
	for (int i = 0; i < 6 && busy >= 0; i++) { /* 3 s of traffic on the busy one */
		CHECK(who_ok(busy));
		usleep(500000);
	}
	CHECK(idle >= 0 && !read_msg(idle, &m) && m.type == CHAT_MSG_BYE);
	CHECK_STR_CONTAINS(m.text, "idle for too long");
	if (idle >= 0)
		CHECK(sees_close(idle));
	CHECK(relay_wait_log(&r, "idle for too long", 5));
	CHECK(busy >= 0 && who_ok(busy));
	if (busy >= 0)
		close(busy);
	if (idle >= 0)
		close(idle);
	CHECK_EQ_INT(relay_stop(&r), 0);
}

/* Reads fd for ms milliseconds answering every PING (as a keepalive-aware
 * client does) and returns how many came; -1 if anything else came. */
static int answer_pings(int fd, int ms)
{
	uint8_t buf[256];
	char err[256];
	struct chat_msg m;
	int pings = 0;

	for (int waited = 0; waited < ms; waited += 100) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 100) != 1)
			continue;
		long n = read_frame(fd, buf, sizeof(buf));
		if (n <= 0 || chat_msg_parse((size_t)n, buf, &m, sizeof(err), err) != CHAT_OK ||
		    m.type != CHAT_MSG_PING)
			return -1;
		pings++;
		begin(CHAT_MSG_PONG);
		chat_put_u64(&wb, m.id);
		if (send_msg(fd))
			return -1;
	}
	return pings;
}

/* Keepalive (docs/PROTOCOL.md): PING is answered at once, before HELLO too,
 * and is never a malformed request; PONG is never answered.  A silent
 * client gets PINGs; one that does not answer is closed as dead (and leaves
 * the WHO list), one that answers stays. */
static void test_keepalive(void)
{
	struct relay r;
	struct chat_msg m;
	uint8_t buf[256];
	char err[256];

	CHECK_EQ_INT(relay_start(&r, "127.0.0.1:0", "--set", "relay.keepalive=1", "--set",
	                         "relay.dead_after=3", NULL), 0);
	if (!r.pid)
		return;
	int fresh = dial(&r), mute = dial(&r), live = dial(&r);
	CHECK(fresh >= 0 && mute >= 0 && live >= 0);
	if (fresh < 0 || mute < 0 || live < 0)
		goto out;
	for (int i = 0; i < 12; i++) { /* more than the 10 malformed requests allowed */
		begin(CHAT_MSG_PING);
		chat_put_u64(&wb, 1000u + (unsigned)i);
		CHECK(!send_msg(fresh) && !read_msg(fresh, &m) && m.type == CHAT_MSG_PONG &&
		      m.id == 1000u + (unsigned)i);
	}
	begin(CHAT_MSG_PONG); /* unasked: ignored */
	chat_put_u64(&wb, 5);
	CHECK(!send_msg(fresh));
	put_hello("rc4dh"); /* the next thing the relay says is WELCOME: no reply to the PONG */
	CHECK(!send_msg(fresh) && !read_msg(fresh, &m) && m.type == CHAT_MSG_WELCOME);
	close(fresh);

	CHECK(login(mute, "mute", "rc4dh"));
	CHECK(login(live, "live", "rc4dh"));
	/* mute reads but never answers: a PING first, then the close. */
	long n = read_frame(mute, buf, sizeof(buf));
	CHECK(n > 0 && chat_msg_parse((size_t)n, buf, &m, sizeof(err), err) == CHAT_OK &&
	      m.type == CHAT_MSG_PING);
	CHECK(answer_pings(live, 5000) >= 2); /* past dead_after: answering keeps it */
	CHECK(sees_close(mute));
	CHECK(relay_wait_log(&r, "client mute dropped: nothing received from 127.0.0.1:", 5));
	CHECK(relay_wait_log(&r, "for 3 s (relay.dead_after)", 1));
	CHECK(strstr(r.log, "client live dropped") == NULL);
	begin(CHAT_MSG_WHO);
	CHECK(!send_msg(live) && !read_msg(live, &m) && m.type == CHAT_MSG_WHO_LIST);
	CHECK_EQ_INT(m.list.count, 1);
	char name[CHAT_NAME_MAX + 1];
	CHECK(chat_iter_name(&m.list, name) && !strcmp(name, "live"));
out:
	if (mute >= 0)
		close(mute);
	if (live >= 0)
		close(live);
	CHECK_EQ_INT(relay_stop(&r), 0);
}

/* relay.suites: a client allowing none of them is refused with both lists. */
static void test_policy(void)
{
	struct relay r;
	struct chat_msg m;
	unsigned code;

	CHECK_EQ_INT(relay_start(&r, "127.0.0.1:0", "--set", "relay.suites=aescbc-hmac", NULL), 0);
	if (!r.pid)
		return;
	int a = dial(&r), b = dial(&r);
	put_hello("rc4dh,xor-demo");
	CHECK_STR_CONTAINS(error_for(a, &code), "this relay carries only aescbc-hmac; you allow only rc4dh, xor-demo");
	CHECK_EQ_INT(code, CHAT_PERR_SUITE_REFUSED);
	CHECK(!read_msg(a, &m) && m.type == CHAT_MSG_BYE);
	CHECK(sees_close(a));
	put_hello("rc4dh,aescbc-hmac"); /* the relay carries the one it allows */
	CHECK(!send_msg(b) && !read_msg(b, &m) && m.type == CHAT_MSG_WELCOME);
	CHECK(m.nsuites == 1 && !strcmp(m.suites[0], "aescbc-hmac"));
	close(a);
	close(b);
	/* What each client allows is passed on as it sent it, also the suites
	 * this relay does not carry: both ends bind each other's own list into
	 * the handshake (PROTOCOL.md "Suite negotiation").  The relay's choice
	 * and its checks still use only what it carries. */
	int c = dial(&r), d = dial(&r);
	CHECK(login(c, "carol", "rc4dh,aescbc-hmac,my-suite"));
	CHECK(login(d, "dave", "aescbc-hmac"));
	begin(CHAT_MSG_TALK);
	chat_put_str8(&wb, "dave");
	CHECK(!send_msg(c) && !expect_type(d, CHAT_MSG_OFFERED, &m) && !strcmp(m.name, "carol"));
	CHECK(m.nsuites == 3 && !strcmp(m.suites[0], "rc4dh") && !strcmp(m.suites[1], "aescbc-hmac") &&
	      !strcmp(m.suites[2], "my-suite"));
	put_answer("carol", 1, "aescbc-hmac", "");
	CHECK(!send_msg(d) && !expect_type(c, CHAT_MSG_ANSWERED, &m));
	CHECK(m.flag == 1 && m.nsuites == 1 && !strcmp(m.suites[0], "aescbc-hmac"));
	begin(CHAT_MSG_WHO);
	CHECK(!send_msg(d) && !expect_type(d, CHAT_MSG_WHO_LIST, &m));
	size_t listed = 0;
	{
		char name[CHAT_NAME_MAX + 1], suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
		size_t ns;
		unsigned flags;
		while (chat_iter_who_flags(&m.list, name, &ns, suites, &flags))
			if (!strcmp(name, "carol"))
				listed = ns;
	}
	CHECK_EQ_INT((int)listed, 3);
	close(c);
	close(d);
	CHECK_EQ_INT(relay_stop(&r), 0);
}

static void test_ipv6(void)
{
	struct relay r;
	int rc = relay_start(&r, "[::1]:0", NULL);

	if (rc != 0) {
		fprintf(stderr, "note: no IPv6 loopback here (relay exit %d): IPv6 part skipped\n%s\n",
		        rc, r.log);
		if (r.pid)
			relay_stop(&r);
		return;
	}
	CHECK(r.family == AF_INET6);
	int fd = dial(&r);
	CHECK(fd >= 0);
	if (fd >= 0) {
		CHECK(login(fd, "six", "rc4dh") && who_ok(fd));
		close(fd);
	}
	CHECK_EQ_INT(relay_stop(&r), 0);
}

static void test_address_in_use(const struct relay *r)
{
	struct relay second;
	int rc = relay_start(&second, r->addr, NULL);

	CHECK_EQ_INT(rc, 1);
	CHECK_STR_CONTAINS(second.log, "cannot listen on");
	CHECK_STR_CONTAINS(second.log, r->addr);
	CHECK_STR_CONTAINS(second.log, "address already in use");
	if (second.pid)
		relay_stop(&second);
	else
		close(second.err_fd);
}

int main(void)
{
	struct relay r;
	struct chat_msg m;

	signal(SIGPIPE, SIG_IGN);
	chat_wbuf_init(&wb, 1 << 17);
	if (relay_start(&r, "127.0.0.1:0", NULL) != 0) {
		fprintf(stderr, "relay did not start:\n%s\n", r.log);
		return 1;
	}
	int fd = dial(&r);
	CHECK(fd >= 0 && login(fd, "first", "rc4dh") && who_ok(fd));
	CHECK(relay_wait_log(&r, "logged in as first (guest; suites: rc4dh)", 5));
	test_coalesced_and_split(&r);
	test_protocol_errors(&r);
	test_rooms(&r);
	test_oversize_and_truncated(&r);
	test_many_clients(&r);
	test_address_in_use(&r);

	/* SIGTERM: every client gets BYE, then the relay exits 0. */
	kill(r.pid, SIGTERM);
	CHECK(fd >= 0 && !read_msg(fd, &m) && m.type == CHAT_MSG_BYE);
	CHECK_STR_CONTAINS(m.text, "relay shutting down");
	CHECK_EQ_INT(relay_stop(&r), 0);
	CHECK_STR_CONTAINS(r.log, "shutting down on Terminated");
	if (fd >= 0) {
		CHECK(sees_close(fd));
		close(fd);
	}
	test_slow_reader();
	test_idle_timeout();
	test_keepalive();
	test_policy();
	test_ipv6();
	chat_wbuf_free(&wb);
	return test_done("e2e_relay");
}
