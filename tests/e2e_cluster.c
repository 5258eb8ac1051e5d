/* relay.cluster (docs/CLUSTER.md): three chat-relays on one throwaway
 * redis-server, guests only, driven through raw sockets.  Presence (WHO on
 * every relay), talk across relays (OFFERED, ANSWERED, DELIVER with the
 * payload unchanged, CLOSED), a room spanning relays, a guest name taken on
 * another relay, a relay killed with SIGKILL (its users vanish within
 * relay.cluster_ttl, conversations get CLOSED), Redis stopped (local traffic
 * goes on, remote requests get a clear error) and restarted (the cluster is
 * back).  A redis-server that cannot start fails the test: it is a
 * dependency (.ci/bootstrap installs it), never a reason to skip.  This is
 * the C twin of tests/lib-redis.sh. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "paths.h"
#include "proto.h"
#include "relayproc.h"
#include "testutils.h"

#define TTL_S 3

static pid_t redis_pid;
static int redis_port;
static char redis_dir[64];

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static int port_open(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* redis-server --port PORT --bind 127.0.0.1, nothing saved, in a temp dir. */
static int redis_start(void)
{
	char port[16], log[128];

	snprintf(port, sizeof(port), "%d", redis_port);
	snprintf(log, sizeof(log), "%s/redis.log", redis_dir);
	redis_pid = fork();
	if (redis_pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
		       "--appendonly", "no", "--dir", redis_dir, (char *)NULL);
		fprintf(stderr, "cannot run redis-server: %s\n", strerror(errno));
		_exit(127);
	}
	for (int i = 0; i < 100; i++) {
		if (port_open(redis_port))
			return 0;
		if (waitpid(redis_pid, NULL, WNOHANG) == redis_pid)
			break;
		usleep(50000);
	}
	fprintf(stderr, "FAIL: redis-server did not start on 127.0.0.1:%d (is it installed? "
	        ".ci/bootstrap installs redis-server); see %s\n", redis_port, log);
	return -1;
}

static void redis_stop(void)
{
	if (redis_pid > 0) {
		kill(redis_pid, SIGKILL);
		waitpid(redis_pid, NULL, 0);
	}
	redis_pid = 0;
}

static void on_exit_cleanup(void)
{
	char cmd[128];

	redis_stop();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", redis_dir);
	if (redis_dir[0] && system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", redis_dir);
}

/* Each relay has a SQLite store of its own (registered users on one relay
 * only, but the single-session rule between relays can be seen). */
static int start(struct relay *r, const char *node)
{
	char url[64], id[64], ttl[32], db[128];

	snprintf(url, sizeof(url), "relay.cluster=redis://127.0.0.1:%d", redis_port);
	snprintf(id, sizeof(id), "relay.node_id=%s", node);
	snprintf(ttl, sizeof(ttl), "relay.cluster_ttl=%d", TTL_S);
	snprintf(db, sizeof(db), "relay.database=%s/%s.db", redis_dir, node);
	if (relay_start(r, "127.0.0.1:0", "--set", url, "--set", id, "--set", ttl, "--set", db,
	                NULL) != 0) {
		fprintf(stderr, "relay %s did not start:\n%s\n", node, r->log);
		return -1;
	}
	return relay_wait_log(r, "cluster: joined", 10) ? 0 : -1;
}

static int user(const struct relay *r, const char *name)
{
	struct timeval tv = { .tv_sec = 8 };
	int fd = dial(r);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (!login(fd, name, "rc4dh,aescbc-hmac")) {
		fprintf(stderr, "%s cannot log in\n", name);
		close(fd);
		return -1;
	}
	return fd;
}

/* Does WHO on fd list name?  1, 0, or -1 (no answer). */
static int who_has(int fd, const char *name)
{
	struct chat_msg m;
	char n[CHAT_NAME_MAX + 1], suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	size_t ns;

	begin(CHAT_MSG_WHO);
	if (send_msg(fd) || expect_type(fd, CHAT_MSG_WHO_LIST, &m))
		return -1;
	struct chat_iter it = m.list;
	while (chat_iter_who(&it, n, &ns, suites))
		if (!strcmp(n, name))
			return 1;
	return 0;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Poll WHO until name is (want 1) or is not (want 0) listed, at most ms. */
static int who_until(int fd, const char *name, int want, unsigned ms)
{
	uint64_t end = now_ms() + ms;

	do {
		int has = who_has(fd, name);
		if (has < 0)
			return 0;
		if (has == want)
			return 1;
		usleep(100000);
	} while (now_ms() < end);
	fprintf(stderr, "WHO %s %s after %u ms\n", want ? "lacks" : "still lists", name, ms);
	return 0;
}

static int route(int from, const char *to, const char *text)
{
	begin(CHAT_MSG_ROUTE);
	chat_put_str8(&wb, to);
	chat_put_bytes(&wb, strlen(text), (const uint8_t *)text);
	return send_msg(from);
}

static int delivered(int fd, const char *from, const char *text)
{
	struct chat_msg m;

	if (expect_type(fd, CHAT_MSG_DELIVER, &m))
		return 0;
	return !strcmp(m.name, from) && m.payload_len == strlen(text) &&
	       !memcmp(m.payload, text, m.payload_len);
}

static void test_talk(int alice, int bob)
{
	struct chat_msg m;
	unsigned code;
	/* Opaque bytes, NULs and high bytes included, cross unchanged. */
	static const char payload[] = "sealed\x01\xff payload \x7f end";

	CHECK(who_until(alice, "bob", 1, 5000));
	CHECK(who_until(bob, "alice", 1, 5000));
	CHECK(converse(alice, "alice", bob, "bob", "rc4dh"));
	CHECK(route(alice, "bob", payload) == 0 && delivered(bob, "alice", payload));
	CHECK(route(bob, "alice", "and back") == 0 && delivered(alice, "bob", "and back"));
	/* Both relays agree the conversation exists: TALK again is "already". */
	begin(CHAT_MSG_TALK);
	chat_put_str8(&wb, "alice");
	CHECK_STR_CONTAINS(error_for(bob, &code), "already talking with alice");
	CHECK_EQ_INT(code, CHAT_PERR_ALREADY);
	/* CLOSE on A: bob hears it, and B forgets the conversation too. */
	begin(CHAT_MSG_CLOSE);
	chat_put_str8(&wb, "bob");
	CHECK(send_msg(alice) == 0 && expect_type(bob, CHAT_MSG_CLOSED, &m) == 0 &&
	      !strcmp(m.name, "alice"));
	route(bob, "alice", "after close");
	CHECK(read_msg(bob, &m) == 0 && m.type == CHAT_MSG_ERROR && m.code == CHAT_PERR_NO_CONVERSATION);
	/* A refused offer leaves nothing behind on either relay. */
	begin(CHAT_MSG_TALK);
	chat_put_str8(&wb, "alice");
	CHECK(send_msg(bob) == 0 && expect_type(alice, CHAT_MSG_OFFERED, &m) == 0);
	put_answer("bob", 0, "", "not now");
	CHECK(send_msg(alice) == 0 && expect_type(bob, CHAT_MSG_ANSWERED, &m) == 0 && m.flag == 0);
	CHECK_STR_CONTAINS(m.text, "not now");
	CHECK(converse(bob, "bob", alice, "alice", "aescbc-hmac"));
	begin(CHAT_MSG_CLOSE);
	chat_put_str8(&wb, "alice");
	CHECK(send_msg(bob) == 0 && expect_type(alice, CHAT_MSG_CLOSED, &m) == 0);
}

static int members_has(const struct chat_msg *m, const char *name)
{
	char n[CHAT_NAME_MAX + 1], suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	size_t ns;
	struct chat_iter it = m->list;

	while (chat_iter_who(&it, n, &ns, suites))
		if (!strcmp(n, name))
			return 1;
	return 0;
}

/* ROOMS on fd shows room with n members, within ms. */
static int room_until(int fd, const char *room, unsigned n, unsigned ms)
{
	uint64_t end = now_ms() + ms;
	struct chat_msg m;
	char name[CHAT_NAME_MAX + 1];
	unsigned count;

	do {
		begin(CHAT_MSG_ROOMS);
		if (send_msg(fd) || expect_type(fd, CHAT_MSG_ROOM_LIST, &m))
			return 0;
		struct chat_iter it = m.list;
		while (chat_iter_room(&it, name, &count))
			if (!strcmp(name, room) && count == n)
				return 1;
		usleep(100000);
	} while (now_ms() < end);
	fprintf(stderr, "room %s never had %u members\n", room, n);
	return 0;
}

static void room_send(int fd, const char *room, const char *to, const char *text)
{
	begin(CHAT_MSG_ROOM_SEND);
	chat_put_str8(&wb, room);
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, to);
	chat_put_u32(&wb, (uint32_t)strlen(text));
	chat_put_bytes(&wb, strlen(text), (const uint8_t *)text);
	send_msg(fd);
}

static void test_room(int alice, int bob)
{
	struct chat_msg m;

	begin(CHAT_MSG_JOIN);
	chat_put_str8(&wb, "lobby");
	CHECK(send_msg(alice) == 0 && expect_type(alice, CHAT_MSG_MEMBERS, &m) == 0);
	CHECK(room_until(bob, "lobby", 1, 5000));
	begin(CHAT_MSG_JOIN);
	chat_put_str8(&wb, "lobby");
	CHECK(send_msg(bob) == 0 && expect_type(bob, CHAT_MSG_MEMBERS, &m) == 0);
	CHECK(members_has(&m, "alice"));
	CHECK(expect_type(alice, CHAT_MSG_ROOM_EVENT, &m) == 0 && !strcmp(m.name, "bob") &&
	      m.flag == 1);
	CHECK(room_until(alice, "lobby", 2, 5000));
	room_send(bob, "lobby", "alice", "to the room from B");
	CHECK(expect_type(alice, CHAT_MSG_ROOM_DELIVER, &m) == 0 && !strcmp(m.name, "bob") &&
	      m.payload_len == 18 && !memcmp(m.payload, "to the room from B", 18));
	room_send(alice, "lobby", "bob", "to the room from A");
	CHECK(expect_type(bob, CHAT_MSG_ROOM_DELIVER, &m) == 0 && !strcmp(m.name, "alice") &&
	      !strcmp(m.room, "lobby") && m.payload_len == 18);
	/* Members may ROUTE to each other without a conversation, across relays too. */
	CHECK(route(alice, "bob", "direct in the room") == 0 && delivered(bob, "alice", "direct in the room"));
	begin(CHAT_MSG_LEAVE);
	chat_put_str8(&wb, "lobby");
	CHECK(send_msg(bob) == 0);
	CHECK(expect_type(alice, CHAT_MSG_ROOM_EVENT, &m) == 0 && !strcmp(m.name, "bob") &&
	      m.flag == 2);
}

static void test_name_taken(const struct relay *b)
{
	struct chat_msg m;
	int fd = dial(b);

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	put_hello("rc4dh");
	CHECK(send_msg(fd) == 0 && expect_type(fd, CHAT_MSG_WELCOME, &m) == 0);
	begin(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, "alice");
	CHECK(send_msg(fd) == 0 && read_msg(fd, &m) == 0 && m.type == CHAT_MSG_ERROR &&
	      m.code == CHAT_PERR_NAME_TAKEN);
	close(fd);
}

/* Close the Redis connections of one relay (named chat-relay:NODE on the
 * server) as a network cut would: the others keep theirs. */
static int cut_relay(const char *node)
{
	char cmd[160], line[1024], addrs[8][64];
	int n = 0;

	snprintf(cmd, sizeof(cmd), "redis-cli -p %d CLIENT LIST", redis_port);
	FILE *f = popen(cmd, "r");
	if (!f)
		return 0;
	snprintf(cmd, sizeof(cmd), "name=chat-relay:%s ", node);
	while (fgets(line, sizeof(line), f) && n < 8) {
		char *a = strstr(line, "addr=");
		if (strstr(line, cmd) && a && sscanf(a, "addr=%63s", addrs[n]) == 1)
			n++;
	}
	pclose(f);
	for (int i = 0; i < n; i++) {
		snprintf(cmd, sizeof(cmd), "redis-cli -p %d CLIENT KILL ADDR %s >/dev/null", redis_port,
		         addrs[i]);
		if (system(cmd) != 0)
			return 0;
	}
	return n == 2; /* one subscribed, one publishing */
}

/* Only B loses Redis: B tells bob and ends his conversation with alice at
 * once; when B rejoins (about 1 s later) A takes B's users afresh, so
 * alice's side of the conversation ends too instead of lingering half
 * open, and they can talk again. */
static void test_one_relay_cut(const struct relay *a, const struct relay *b, int alice, int bob)
{
	struct chat_msg m;

	CHECK(converse(alice, "alice", bob, "bob", "rc4dh"));
	CHECK(cut_relay("node-b"));
	CHECK(expect_type(bob, CHAT_MSG_ERROR, &m) == 0);
	CHECK_STR_CONTAINS(m.text, "lost its cluster link (redis://127.0.0.1:");
	CHECK(expect_type(bob, CHAT_MSG_CLOSED, &m) == 0 && !strcmp(m.name, "alice"));
	/* While B is away (it retries after 1 s), guest zed logs in on A, then
	 * on B, which cannot know: when B is back, the name stays with the
	 * first (equal login seconds: the smaller node id, A's too). */
	int zed_a = user(a, "zed"), zed_b = user(b, "zed");
	CHECK(zed_a >= 0 && zed_b >= 0);
	CHECK(expect_type(alice, CHAT_MSG_CLOSED, &m) == 0 && !strcmp(m.name, "bob"));
	CHECK(relay_wait_log((struct relay *)b, "cluster: rejoined", 5));
	CHECK(zed_b >= 0 && expect_type(zed_b, CHAT_MSG_BYE, &m) == 0);
	CHECK_STR_CONTAINS(m.text, "taken on another relay");
	CHECK(zed_a >= 0 && who_ok(zed_a) && who_until(bob, "zed", 1, 3000));
	if (zed_a >= 0)
		close(zed_a);
	if (zed_b >= 0)
		close(zed_b);
	CHECK(who_until(alice, "bob", 1, 5000) && who_until(bob, "alice", 1, 5000));
	CHECK(converse(alice, "alice", bob, "bob", "rc4dh"));
	CHECK(route(bob, "alice", "after the cut") == 0 && delivered(alice, "bob", "after the cut"));
	begin(CHAT_MSG_CLOSE);
	chat_put_str8(&wb, "bob");
	CHECK(send_msg(alice) == 0 && expect_type(bob, CHAT_MSG_CLOSED, &m) == 0);
}

/* One live session per registered name in the whole cluster: a login on B
 * ends the session on A, as a second login does on one relay.  (The name is
 * registered in both relays' own stores with the same password.) */
static void test_single_session(const struct relay *a, const struct relay *b, int alice, int bob)
{
	const struct relay *both[] = { a, b };
	struct chat_msg m;
	unsigned code;

	for (int i = 0; i < 2; i++) {
		int fd = dial(both[i]);
		CHECK(fd >= 0 && hello(fd) && do_register(fd, "erin", "erin's password", &code) ==
		      CHAT_MSG_DONE);
		if (fd >= 0)
			close(fd);
	}
	int first = connect_as(a, "erin", "erin's password");
	CHECK(first >= 0);
	CHECK(who_until(bob, "erin", 1, 5000));
	int second = connect_as(b, "erin", "erin's password");
	CHECK(second >= 0);
	CHECK(first >= 0 && expect_type(first, CHAT_MSG_BYE, &m) == 0);
	CHECK_STR_CONTAINS(m.text, "logged in from another connection");
	CHECK(first >= 0 && sees_close(first));
	/* erin is still listed on A: the session on B now. */
	CHECK(who_until(alice, "erin", 1, 3000));
	CHECK(second >= 0 && who_ok(second));
	if (first >= 0)
		close(first);
	if (second >= 0)
		close(second);
	CHECK(who_until(alice, "erin", 0, 5000));
}

int main(void)
{
	struct relay a, b, c;
	struct chat_msg m;
	unsigned code;

	signal(SIGPIPE, SIG_IGN);
	chat_wbuf_init(&wb, 1 << 17);
	snprintf(redis_dir, sizeof(redis_dir), "/tmp/e2e_cluster.XXXXXX");
	if (!mkdtemp(redis_dir)) {
		perror("mkdtemp");
		return 1;
	}
	atexit(on_exit_cleanup);
	redis_port = free_port();
	if (redis_port < 0 || redis_start() != 0)
		return 1;
	if (start(&a, "node-a") || start(&b, "node-b") || start(&c, "node-c"))
		return 1;
	int alice = user(&a, "alice"), bob = user(&b, "bob"), carol = user(&c, "carol");
	CHECK(alice >= 0 && bob >= 0 && carol >= 0);
	if (alice < 0 || bob < 0 || carol < 0)
		return 1;

	test_talk(alice, bob);
	test_room(alice, bob);
	test_name_taken(&b);
	test_single_session(&a, &b, alice, bob);
	test_one_relay_cut(&a, &b, alice, bob);

	/* A relay killed outright: within relay.cluster_ttl its users leave
	 * WHO elsewhere, and conversations with them get CLOSED. */
	CHECK(who_until(alice, "carol", 1, 5000));
	CHECK(converse(alice, "alice", carol, "carol", "rc4dh"));
	uint64_t t0 = now_ms();
	kill(c.pid, SIGKILL);
	CHECK(relay_wait_log(&a, "cluster: relay node-c sent nothing for", TTL_S + 2));
	CHECK(expect_type(alice, CHAT_MSG_CLOSED, &m) == 0 && !strcmp(m.name, "carol"));
	CHECK(now_ms() - t0 <= (TTL_S + 2) * 1000u);
	CHECK(who_has(alice, "carol") == 0 && who_until(bob, "carol", 0, 3000));
	waitpid(c.pid, NULL, 0);
	close(carol);

	/* Redis goes away: the local users are told, remote users vanish,
	 * requests naming them say why, local traffic goes on. */
	int dave = user(&a, "dave");
	CHECK(dave >= 0);
	CHECK(converse(alice, "alice", bob, "bob", "rc4dh"));
	redis_stop();
	CHECK(expect_type(alice, CHAT_MSG_ERROR, &m) == 0);
	CHECK_STR_CONTAINS(m.text, "lost its cluster link");
	CHECK(expect_type(alice, CHAT_MSG_CLOSED, &m) == 0 && !strcmp(m.name, "bob"));
	CHECK(relay_wait_log(&a, "users on other relays are unreachable", 5));
	CHECK(who_has(alice, "bob") == 0);
	begin(CHAT_MSG_TALK);
	chat_put_str8(&wb, "bob");
	CHECK_STR_CONTAINS(error_for(alice, &code), "bob is not connected here, and users on other "
	                   "relays are not reachable: this relay lost its cluster link (redis://");
	CHECK(dave >= 0 && converse(alice, "alice", dave, "dave", "rc4dh"));
	CHECK(route(dave, "alice", "local still works") == 0 && delivered(alice, "dave", "local still works"));

	/* Redis is back: both relays rejoin and the cluster works again. */
	CHECK(redis_start() == 0);
	CHECK(relay_wait_log(&a, "cluster: rejoined", 15));
	CHECK(relay_wait_log(&b, "cluster: rejoined", 15));
	CHECK(who_until(alice, "bob", 1, 5000) && who_until(bob, "dave", 1, 5000));
	CHECK(converse(bob, "bob", alice, "alice", "rc4dh"));
	CHECK(route(bob, "alice", "after the outage") == 0 && delivered(alice, "bob", "after the outage"));

	close(alice);
	close(bob);
	if (dave >= 0)
		close(dave);
	CHECK_EQ_INT(relay_stop(&a), 0);
	CHECK_EQ_INT(relay_stop(&b), 0);
	return test_done("e2e_cluster");
}
