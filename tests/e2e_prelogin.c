/* What a connection may do before it logs in, at a real chat-relay process
 * on 127.0.0.1 (docs/SECURITY.md "Before login"):
 *
 * - one address opening 10,000 idle connections (fewer if this process's
 *   open-file limit is lower; printed): the relay keeps 16
 *   (relay.max_unauth_per_address), closes the rest at once with BYE, logs
 *   a bounded number of lines, and a user from another loopback address
 *   (127.0.0.2) logs in within 2 s;
 * - connections not logged in fill their share (relay.max_clients -
 *   relay.reserved_slots, per-address cap off): the oldest make room for
 *   newer ones, a login from the same address gets through within 2 s, and
 *   each such connection holding an almost complete frame costs the relay
 *   about 4 KiB (relay.prelogin_max_frame) instead of 64 KiB;
 * - relay.login_timeout closes silent connections, ones that only said
 *   HELLO and ones that only PING, never a logged-in one;
 * - a 5 KiB frame before login closes the connection, the same frame after
 *   login (also pipelined right behind LOGIN) is taken;
 * - a flood of malformed requests from thousands of connections costs a
 *   few log lines whose counts add up exactly;
 * - an open-file limit below relay.max_clients is warned about at start,
 *   and running out of files is logged as EMFILE.
 *
 * Relay RSS (VmRSS) before and after is printed for each.  With
 * CHAT_VALGRIND=1 the relay runs under valgrind with smaller numbers. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "proto.h"
#include "relayproc.h"
#include "testutils.h"

static int vg; /* under valgrind: smaller numbers, longer waits */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kb(const struct relay *r)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)r->pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* Read the relay's log for ms milliseconds. */
static void drain(struct relay *r, int ms)
{
	double end = now_s() + ms / 1000.0;

	while (now_s() < end)
		relay_read_log(r, 50);
}

/* RSS once it has stopped moving (the relay has read what was sent). */
static long settled_rss_kb(struct relay *r)
{
	long last = -2, kb = rss_kb(r);

	for (int i = 0; i < (vg ? 60 : 25) && kb != last; i++) {
		drain(r, 300);
		last = kb;
		kb = rss_kb(r);
	}
	return kb;
}

/* How often text occurs in the relay's (kept) log. */
static int log_count(const struct relay *r, const char *text)
{
	int n = 0;

	for (const char *p = r->log; (p = strstr(p, text)); p += strlen(text))
		n++;
	return n;
}

/* The soft open-file limit raised to the hard one; returns it. */
static long raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 1024;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		getrlimit(RLIMIT_NOFILE, &rl);
	return rl.rlim_cur == RLIM_INFINITY ? 1L << 20 : (long)rl.rlim_cur;
}

/* Has the relay closed fd (EOF, possibly after a BYE)?  No wait. */
static int closed_by_relay(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Wait until `want` of fds[0..n) are closed by the relay (bounded); returns
 * how many are, after a short pause that would show any further closing. */
static int count_closed(struct relay *r, int *fds, int n, int want)
{
	int closed = 0;

	for (int i = 0; i < (vg ? 600 : 150); i++) {
		closed = 0;
		for (int j = 0; j < n; j++)
			closed += fds[j] >= 0 && closed_by_relay(fds[j]);
		if (closed >= want)
			break;
		drain(r, 200);
	}
	drain(r, vg ? 1000 : 300);
	closed = 0;
	for (int j = 0; j < n; j++)
		closed += fds[j] >= 0 && closed_by_relay(fds[j]);
	return closed;
}

/* The BYE a closed connection got, "" if none. */
static const char *bye_text(int fd)
{
	static struct chat_msg m;

	if (read_msg(fd, &m) || m.type != CHAT_MSG_BYE)
		return "";
	return m.text;
}

/* HELLO + LOGIN within `seconds`, timed. */
static int timed_login(int fd, const char *name, double seconds)
{
	double t0 = now_s();
	int ok = fd >= 0 && login(fd, name, "rc4dh");
	double took = now_s() - t0;

	printf("  login as %s: %s in %.3f s\n", name, ok ? "logged in" : "FAILED", took);
	return ok && took < seconds;
}

static void close_all(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Many idle connections from one address (127.0.0.1). */
static void test_one_address(long nofile)
{
	enum { CAP = 16 };
	int n = vg ? 300 : 10000;
	struct relay r;

	if (nofile < n + 64) {
		printf("note: this process may open %ld files: %ld idle connections instead of %d\n",
		       nofile, nofile - 64, n);
		n = (int)nofile - 64;
	}
	int *fds = malloc((size_t)n * sizeof(*fds));
	CHECK_EQ_INT(relay_start(&r, "127.0.0.1:0", "--set", "relay.max_unauth_per_address=16",
	                         "--set", "relay.login_timeout=30", "--set", "relay.log_interval=2",
	                         NULL), 0);
	if (!r.pid || !fds) {
		free(fds);
		return;
	}
	long rss0 = settled_rss_kb(&r);
	size_t lines0 = r.lines;
	double t0 = now_s();
	int opened = 0;
	for (int i = 0; i < n; i++) {
		fds[i] = dial(&r);
		opened += fds[i] >= 0;
		if (i % 256 == 0)
			relay_read_log(&r, 0);
	}
	double t_open = now_s() - t0;
	CHECK_EQ_INT(opened, n);
	int closed = count_closed(&r, fds, n, n - CAP);
	long rss1 = settled_rss_kb(&r);
	printf("one address: %d connections opened in %.2f s; the relay kept %d, closed %d; "
	       "relay RSS %ld -> %ld KiB\n", n, t_open, n - closed, closed, rss0, rss1);
	CHECK_EQ_INT(closed, n - CAP);
	/* The first CAP stay; a later one was told why. */
	int early_closed = 0;
	for (int i = 0; i < CAP; i++)
		early_closed += closed_by_relay(fds[i]);
	CHECK_EQ_INT(early_closed, 0);
	CHECK_STR_CONTAINS(bye_text(fds[n - 1]), "too many connections from your address");

	/* Another address gets in at once, while the CAP are still held. */
	int other = dial_from(&r, "127.0.0.2");
	if (other < 0) {
		printf("note: cannot bind 127.0.0.2 here: the login from another address is skipped\n");
	} else {
		CHECK(timed_login(other, "alice", 2.0));
		CHECK(who_ok(other));
	}
	/* The same address is refused until its connections go... */
	int same = dial(&r);
	CHECK(same >= 0 && !login(same, "bob", "rc4dh"));
	if (same >= 0)
		close(same);
	close_all(fds, n);
	drain(&r, vg ? 2000 : 300);
	/* ...then it may log in again. */
	same = dial(&r);
	CHECK(timed_login(same, "bob", 2.0));

	drain(&r, 100);
	size_t lines = r.lines - lines0;
	printf("one address: %zu relay log lines for %d refused connections\n", lines, n - CAP);
	CHECK(relay_wait_log(&r, "relay.max_unauth_per_address)", 5));
	CHECK(relay_wait_log(&r, "more connections refused (relay.max_unauth_per_address) in the "
	                     "last", 5));
	/* A line per kind and interval, plus its count line. */
	CHECK(lines < 20 + 4 * (size_t)(t_open + 3));
	if (other >= 0)
		close(other);
	if (same >= 0)
		close(same);
	free(fds);
	CHECK_EQ_INT(relay_stop(&r), 0);
}

/* An almost complete frame: a header for `frame` bytes and all of them
 * but one.  0 or -1. */
static int almost_frame(int fd, size_t frame)
{
	static uint8_t buf[4 + 65536];

	if (fd < 0)
		return -1;
	memset(buf, 'x', sizeof(buf));
	chat_frame_put_header(frame, buf);
	return send_all(fd, buf, 4 + frame - 1);
}

/* RSS growth per connection holding an almost complete frame of `frame`
 * bytes, with relay.prelogin_max_frame at `cap`; -1 if the relay did not
 * start.  Cap off, no deadline, nothing reserved: memory only. */
static long per_conn_bytes(int n, size_t frame, const char *cap)
{
	struct relay r;
	char set[64];
	int *fds = malloc((size_t)n * sizeof(*fds));
	long per = -1;

	snprintf(set, sizeof(set), "relay.prelogin_max_frame=%s", cap);
	if (!fds || relay_start(&r, "127.0.0.1:0", "--set", set, NULL) != 0) {
		free(fds);
		return -1;
	}
	long rss0 = settled_rss_kb(&r);
	int sent = 0;
	for (int i = 0; i < n; i++) {
		fds[i] = dial(&r);
		sent += !almost_frame(fds[i], frame);
	}
	CHECK_EQ_INT(sent, n);
	long rss1 = settled_rss_kb(&r);
	per = (rss1 - rss0) * 1024 / n;
	printf("  %d connections with %zu of %zu bytes sent, relay.prelogin_max_frame=%s: "
	       "relay RSS %ld -> %ld KiB, %ld bytes each\n", n, frame - 1, frame, cap, rss0, rss1,
	       per);
	CHECK_EQ_INT(count_closed(&r, fds, n, 0), 0);
	close_all(fds, n);
	free(fds);
	CHECK_EQ_INT(relay_stop(&r), 0);
	return per;
}

/* The share of connections not logged in, from one address with the cap off. */
static void test_share(long nofile)
{
	int max = vg ? 200 : 2000, reserved = max / 20;
	char set_max[64], set_res[64];
	struct relay r;

	if (nofile < max + 64) {
		printf("note: this process may open %ld files: relay.max_clients %ld instead of %d\n",
		       nofile, nofile - 64, max);
		max = (int)nofile - 64;
		reserved = max / 20;
	}
	int *fds = malloc((size_t)max * sizeof(*fds));
	snprintf(set_max, sizeof(set_max), "relay.max_clients=%d", max);
	snprintf(set_res, sizeof(set_res), "relay.reserved_slots=%d", reserved);
	CHECK_EQ_INT(relay_start(&r, "127.0.0.1:0", "--set", set_max, "--set", set_res, "--set",
	                         "relay.log_interval=2", NULL), 0);
	if (!r.pid || !fds) {
		free(fds);
		return;
	}
	long rss0 = settled_rss_kb(&r);
	int sent = 0;
	for (int i = 0; i < max; i++) {
		fds[i] = dial(&r);
		sent += !almost_frame(fds[i], 4096);
		if (i % 256 == 0)
			relay_read_log(&r, 0);
	}
	CHECK_EQ_INT(sent, max);
	/* max - reserved may wait; the oldest made room for the rest. */
	int closed = count_closed(&r, fds, max, reserved);
	long rss1 = settled_rss_kb(&r);
	printf("share: relay.max_clients=%d, relay.reserved_slots=%d: %d connections each holding "
	       "4095 of 4096 bytes; %d closed to make room; relay RSS %ld -> %ld KiB (%ld bytes "
	       "each)\n", max, reserved, max, closed, rss0, rss1, (rss1 - rss0) * 1024 / max);
	CHECK_EQ_INT(closed, reserved);
	int oldest = 0;
	for (int i = 0; i < reserved; i++)
		oldest += closed_by_relay(fds[i]);
	CHECK_EQ_INT(oldest, reserved);
	CHECK_STR_CONTAINS(bye_text(fds[0]), "closed to make room for a newer one");
	CHECK((rss1 - rss0) * 1024 / max < 8192);

	/* A login from the same address: admitted (the oldest waiting goes), in time. */
	int fd = dial(&r);
	CHECK(timed_login(fd, "carol", 2.0));
	CHECK(closed_by_relay(fds[reserved]) || count_closed(&r, fds + reserved, 1, 1) == 1);
	/* Logged in, carol no longer counts (her login freed a place): of 8
	 * newcomers the first takes that place, the 7 others evict waiting
	 * ones, never her. */
	int more[8];
	for (int i = 0; i < 8; i++)
		more[i] = dial(&r);
	CHECK_EQ_INT(count_closed(&r, fds + reserved + 1, 8, 7), 7);
	CHECK(!closed_by_relay(fds[reserved + 8]));
	CHECK(who_ok(fd));
	CHECK(relay_wait_log(&r, "to make room for 127.0.0.1:", 5));
	close_all(more, 8);
	close_all(fds, max);
	if (fd >= 0)
		close(fd);
	free(fds);
	CHECK_EQ_INT(relay_stop(&r), 0);

	/* What relay.prelogin_max_frame saves: the same almost complete frames
	 * against a relay that allows 64 KiB before login (as before it existed). */
	if (!vg) {
		int n = nofile < 1064 ? (int)nofile - 64 : 1000;
		long small = per_conn_bytes(n, 4096, "4096");
		long large = per_conn_bytes(n, 65536, "65536");
		CHECK(small > 0 && small < 8192);
		CHECK(large > 8 * small);
	}
}

/* relay.login_timeout=2. */
static void test_login_timeout(void)
{
	struct relay r;
	struct chat_msg m;

	CHECK_EQ_INT(relay_start(&r, "127.0.0.1:0", "--set", "relay.login_timeout=2", "--set",
	                         "relay.keepalive=1", NULL), 0);
	if (!r.pid)
		return;
	double t0 = now_s();
	int silent = dial(&r), helloed = dial(&r), pinger = dial(&r), user = dial(&r);
	CHECK(silent >= 0 && helloed >= 0 && pinger >= 0 && user >= 0);
	CHECK(hello(helloed));
	CHECK(login(user, "dave", "rc4dh"));
	/* The pinger keeps the link busy but never logs in. */
	int pinger_closed = 0;
	for (int i = 0; i < 12 && !pinger_closed; i++) {
		begin(CHAT_MSG_PING);
		chat_put_u64(&wb, (uint64_t)i);
		if (send_msg(pinger) || read_msg(pinger, &m))
			pinger_closed = 1;
		else if (m.type == CHAT_MSG_BYE)
			pinger_closed = 1;
		else
			usleep(500000);
	}
	CHECK(pinger_closed);
	/* The silent one: BYE with the reason, then the close, 2 to 3 s in (the
	 * sweep runs once a second). */
	CHECK_STR_CONTAINS(bye_text(silent), "no login within 2 s (relay.login_timeout)");
	CHECK(sees_close(silent));
	double took = now_s() - t0;
	printf("login timeout 2 s: a silent connection closed after %.2f s\n", took);
	CHECK(took >= 2.0 && took < (vg ? 8.0 : 5.0));
	CHECK(!expect_type(helloed, CHAT_MSG_BYE, &m));
	CHECK(sees_close(helloed));
	/* The one that logged in stays, well past the deadline. */
	CHECK(who_ok(user));
	CHECK(relay_wait_log(&r, "closed: no login within 2 s (relay.login_timeout)", 5));
	close(silent);
	close(helloed);
	close(pinger);
	close(user);
	CHECK_EQ_INT(relay_stop(&r), 0);
}

/* A ROUTE of `payload` bytes to nobody as one frame (4 + 1 + 1 + 6 + payload). */
static size_t route_frame(uint8_t *dst, size_t payload)
{
	static uint8_t p[8192];

	memset(p, 'z', sizeof(p));
	begin(CHAT_MSG_ROUTE);
	chat_put_str8(&wb, "nobody");
	chat_put_bytes(&wb, payload, p);
	return put_frame(dst, wb.len, wb.data);
}

/* relay.prelogin_max_frame=4096 (the default), core.max_frame 65536. */
static void test_prelogin_frame(void)
{
	static uint8_t buf[3 * 8192];
	struct relay r;
	struct chat_msg m;
	unsigned code;

	CHECK_EQ_INT(relay_start(&r, "127.0.0.1:0", NULL), 0);
	if (!r.pid)
		return;
	int a = dial(&r), b = dial(&r), c = dial(&r), d = dial(&r), e = dial(&r);
	CHECK(a >= 0 && b >= 0 && c >= 0 && d >= 0 && e >= 0);

	/* 5 KiB before login: closed, and the log says which limit. */
	size_t n = route_frame(buf, 5120 - 8);
	CHECK_EQ_INT(n, 4 + 5120);
	CHECK_EQ_INT(send_all(a, buf, n), 0);
	CHECK(sees_close(a));
	CHECK(relay_wait_log(&r, "frame of 5120 bytes exceeds the limit of 4096 bytes "
	                     "(relay.prelogin_max_frame)", 5));
	/* Only the header, announcing 5000: closed at the header. */
	uint8_t hdr[4];
	chat_frame_put_header(5000, hdr);
	CHECK_EQ_INT(send_all(e, hdr, 4), 0);
	CHECK(sees_close(e));
	/* Exactly 4096 before login: taken (and refused as a request). */
	n = route_frame(buf, 4096 - 8);
	CHECK_EQ_INT(send_all(b, buf, n), 0);
	CHECK(!read_msg(b, &m) && m.type == CHAT_MSG_ERROR);
	CHECK_STR_CONTAINS(m.text, "log in before ROUTE");
	/* After login the same 5 KiB frame is taken. */
	CHECK(login(b, "erin", "rc4dh"));
	route_frame(buf, 5120 - 8);
	CHECK_STR_CONTAINS(error_for(b, &code), "nobody is not connected");
	/* LOGIN and the 5 KiB frame in one write: the limit rises between them. */
	put_hello("rc4dh");
	size_t used = put_frame(buf, wb.len, wb.data);
	begin(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, "frank");
	used += put_frame(buf + used, wb.len, wb.data);
	used += route_frame(buf + used, 5120 - 8);
	CHECK_EQ_INT(send_all(c, buf, used), 0);
	CHECK(!read_msg(c, &m) && m.type == CHAT_MSG_WELCOME);
	CHECK(!read_msg(c, &m) && m.type == CHAT_MSG_LOGGED_IN);
	CHECK(!read_msg(c, &m) && m.type == CHAT_MSG_ERROR);
	CHECK_STR_CONTAINS(m.text, "nobody is not connected");
	/* Above core.max_frame after login: closed as before. */
	CHECK(login(d, "gina", "rc4dh"));
	chat_frame_put_header(65537, hdr);
	CHECK_EQ_INT(send_all(d, hdr, 4), 0);
	CHECK(sees_close(d));
	CHECK(relay_wait_log(&r, "frame of 65537 bytes exceeds the limit of 65536 bytes", 5));
	CHECK(who_ok(b));
	close(a);
	close(b);
	close(c);
	close(d);
	close(e);
	CHECK_EQ_INT(relay_stop(&r), 0);
}

/* Sum of N in "... and N more <kind> in the last" lines. */
static long summed(const struct relay *r, const char *kind)
{
	char needle[128];
	long sum = 0;

	snprintf(needle, sizeof(needle), " more %s in the last", kind);
	for (const char *p = r->log; (p = strstr(p, "... and ")); p++) {
		const char *end = strchr(p, '\n');
		const char *k = strstr(p, needle);
		if (!k || (end && k > end))
			continue;
		long v = 0;
		for (const char *q = p + 8; q < k; q++)
			if (*q >= '0' && *q <= '9')
				v = v * 10 + (*q - '0');
		sum += v;
	}
	return sum;
}

/* Thousands of connections, each sending 10 malformed requests (then the
 * relay says BYE): a handful of log lines, whose counts add up. */
static void test_malformed_flood(void)
{
	enum { WINDOW = 64, JUNK = 10 };
	int conns = vg ? 100 : 5000;
	uint8_t junk[JUNK * 5];
	struct relay r;
	int fds[WINDOW];

	for (int i = 0; i < JUNK; i++) {
		uint8_t one[5] = { 0, 0, 0, 1, 0x42 };
		memcpy(junk + 5 * i, one, 5);
	}
	/* The per-address cap off: this is about the log, not the cap. */
	CHECK_EQ_INT(relay_start(&r, "127.0.0.1:0", "--set", "relay.log_interval=2", NULL), 0);
	if (!r.pid)
		return;
	size_t lines0 = r.lines;
	double t0 = now_s();
	int byes = 0;
	for (int done = 0; done < conns; done += WINDOW) {
		int k = conns - done < WINDOW ? conns - done : WINDOW;
		for (int i = 0; i < k; i++) {
			fds[i] = dial(&r);
			if (fds[i] >= 0)
				send_all(fds[i], junk, sizeof(junk));
		}
		/* Read each to the end, so every request is handled before it closes. */
		for (int i = 0; i < k; i++) {
			struct chat_msg m;
			while (fds[i] >= 0 && !read_msg(fds[i], &m))
				byes += m.type == CHAT_MSG_BYE;
			if (fds[i] >= 0)
				close(fds[i]);
		}
		relay_read_log(&r, 0);
	}
	double took = now_s() - t0;
	CHECK_EQ_INT(byes, conns);
	/* Let the intervals end and their count lines come. */
	int fd = dial(&r);
	CHECK(login(fd, "henry", "rc4dh") && who_ok(fd));
	drain(&r, 3500);
	size_t lines = r.lines - lines0;
	long logged = log_count(&r, ": malformed request: ");
	long counted = summed(&r, "malformed requests");
	printf("malformed flood: %d connections x %d malformed requests in %.2f s: %zu relay log "
	       "lines (%ld malformed requests logged, %ld counted in summaries)\n", conns, JUNK, took,
	       lines, logged, counted);
	CHECK_EQ_INT(logged + counted, (long)conns * JUNK);
	CHECK_EQ_INT(log_count(&r, " connected (") + summed(&r, "connections"), conns + 1);
	CHECK_EQ_INT(log_count(&r, "disconnected before logging in: too many malformed requests") +
	             summed(&r, "connections closed before logging in"), conns);
	/* Four kinds (connections, malformed, closed, and henry's own lines),
	 * each a line and a count line per 2 s interval. */
	CHECK(lines <= 12 + 8 * (size_t)(took / 2 + 1));
	CHECK(r.spilled == 0);
	close(fd);
	CHECK_EQ_INT(relay_stop(&r), 0);
}

/* A low open-file limit: warned about at start; running out is EMFILE. */
static void test_fd_limit(void)
{
	enum { N = 80 };
	struct relay r;
	int fds[N];

	relay_child_nofile = 64;
	int rc = relay_start(&r, "127.0.0.1:0", NULL);
	relay_child_nofile = 0;
	CHECK_EQ_INT(rc, 0);
	if (!r.pid)
		return;
	CHECK_STR_CONTAINS(r.log, "the open-file limit (RLIMIT_NOFILE) is ");
	CHECK_STR_CONTAINS(r.log, "below relay.max_clients (10000) + 32");
	for (int i = 0; i < N; i++)
		fds[i] = dial(&r); /* those beyond the limit wait in the backlog */
	CHECK(relay_wait_log(&r, "accept failed: too many open files (EMFILE: the relay's limit is ",
	                     vg ? 20 : 5));
	CHECK(relay_wait_log(&r, "accept: too many open files (EMFILE)", 1));
	close_all(fds, N);
	/* Once files are free again, connections are taken again. */
	int fd = -1;
	for (int i = 0; i < 30 && fd < 0; i++) {
		drain(&r, 200);
		fd = dial(&r);
		if (fd >= 0 && !login(fd, "ivy", "rc4dh")) {
			close(fd);
			fd = -1;
		}
	}
	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
	CHECK_EQ_INT(relay_stop(&r), 0);
}

/* A reserve that leaves no room before login is refused at start. */
static void test_reserve_check(void)
{
	struct relay r;
	int rc = relay_start(&r, "127.0.0.1:0", "--set", "relay.max_clients=100", "--set",
	                     "relay.reserved_slots=100", NULL);

	CHECK_EQ_INT(rc, 1);
	CHECK_STR_CONTAINS(r.log, "relay.reserved_slots (100, --set) must be less than "
	                   "relay.max_clients (100, --set)");
	if (r.pid)
		relay_stop(&r);
	else
		close(r.err_fd);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	vg = use_valgrind();
	chat_wbuf_init(&wb, 1 << 17);
	long nofile = raise_nofile();
	test_reserve_check();
	test_prelogin_frame();
	test_login_timeout();
	test_fd_limit();
	test_malformed_flood();
	test_one_address(nofile);
	test_share(nofile);
	chat_wbuf_free(&wb);
	return test_done("e2e_prelogin");
}
