/* chat-relay as a separate process on loopback, driven through raw sockets:
 * frames coalesced in one read and split across many, zero-length, oversize
 * and truncated frames, a client that stops reading, many clients, IPv6,
 * address in use, clean shutdown on SIGTERM.  With CHAT_VALGRIND=1 the relay
 * runs under valgrind and must report no error or leak. */
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

#include "paths.h"
#include "testutils.h"

struct relay {
	pid_t pid;
	int err_fd;      /* relay's stderr */
	char log[65536]; /* everything it printed so far */
	size_t log_len;
	char addr[128];
	char host[64];
	int port;
	int family;
	int eof; /* the relay closed its stderr: it has exited or is exiting */
};

static int use_valgrind(void)
{
	const char *v = getenv("CHAT_VALGRIND");
	return v && strcmp(v, "1") == 0;
}

static void relay_read_log(struct relay *r, int timeout_ms)
{
	struct pollfd p = { .fd = r->err_fd, .events = POLLIN };

	while (poll(&p, 1, timeout_ms) > 0) {
		if (r->log_len + 1 >= sizeof(r->log))
			return;
		ssize_t n = read(r->err_fd, r->log + r->log_len, sizeof(r->log) - 1 - r->log_len);
		if (n <= 0) {
			r->eof = n == 0;
			return;
		}
		r->log_len += (size_t)n;
		r->log[r->log_len] = '\0';
		timeout_ms = 0;
	}
}

/* Wait until the relay's log contains text (bounded). */
static int relay_wait_log(struct relay *r, const char *text, int seconds)
{
	for (int i = 0; i < seconds * 20; i++) {
		if (strstr(r->log, text))
			return 1;
		relay_read_log(r, 50);
	}
	fprintf(stderr, "relay log lacks \"%s\":\n%s\n", text, r->log);
	return 0;
}

static int relay_start(struct relay *r, const char *listen, ...)
{
	const char *argv[40];
	int n = 0, pipefd[2];
	va_list ap;

	memset(r, 0, sizeof(*r));
	if (use_valgrind()) {
		argv[n++] = "valgrind";
		argv[n++] = "-q";
		argv[n++] = "--leak-check=full";
		argv[n++] = "--errors-for-leak-kinds=definite,indirect";
		argv[n++] = "--error-exitcode=99";
	}
	argv[n++] = CHAT_TEST_BIN_DIR "/chat-relay";
	argv[n++] = "--config";
	argv[n++] = CHAT_TEST_SOURCE_DIR "/chat.ini";
	argv[n++] = "--set";
	argv[n++] = "core.plugin_dir=" CHAT_TEST_PLUGIN_DIR;
	argv[n++] = "--listen";
	argv[n++] = listen;
	va_start(ap, listen);
	const char *a;
	while ((a = va_arg(ap, const char *)) && n < 38)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;

	if (pipe2(pipefd, O_CLOEXEC) != 0)
		return -1;
	r->pid = fork();
	if (r->pid == 0) {
		dup2(pipefd[1], 2);
		int devnull = open("/dev/null", O_RDWR);
		dup2(devnull, 0);
		dup2(devnull, 1);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	r->err_fd = pipefd[0];
	for (int i = 0; i < 400; i++) {
		relay_read_log(r, 50);
		char *p = strstr(r->log, "listening on ");
		if (p && strchr(p, ')')) {
			sscanf(p + strlen("listening on "), "%127s", r->addr);
			char *colon = strrchr(r->addr, ':');
			r->port = atoi(colon + 1);
			if (r->addr[0] == '[') {
				r->family = AF_INET6;
				snprintf(r->host, sizeof(r->host), "%.*s", (int)(colon - r->addr - 2), r->addr + 1);
			} else {
				r->family = AF_INET;
				snprintf(r->host, sizeof(r->host), "%.*s", (int)(colon - r->addr), r->addr);
			}
			return 0;
		}
		int status;
		/* Once stderr is closed the process is gone or going: wait for it. */
		if (waitpid(r->pid, &status, r->eof ? 0 : WNOHANG) == r->pid) {
			r->pid = 0;
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
		}
	}
	return -1;
}

/* Stop the relay with SIGTERM; return its exit status (or -1 if it had to be killed). */
static int relay_stop(struct relay *r)
{
	int status = 0;

	if (r->pid <= 0)
		return -1;
	kill(r->pid, SIGTERM);
	for (int i = 0; i < 600; i++) { /* valgrind can be slow to exit */
		relay_read_log(r, 0);
		if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
			relay_read_log(r, 100);
			close(r->err_fd);
			r->pid = 0;
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		usleep(50000);
	}
	kill(r->pid, SIGKILL);
	waitpid(r->pid, &status, 0);
	close(r->err_fd);
	r->pid = 0;
	return -1;
}

/* rcvbuf > 0 shrinks the receive buffer before connecting (a client that
 * will not read); shrinking it after the handshake can stall loopback TCP in
 * both directions instead. */
static int dial_rcvbuf(const struct relay *r, int rcvbuf)
{
	int fd = socket(r->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = 20 };
	int one = 1;

	if (fd < 0)
		return -1;
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (r->family == AF_INET6) {
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)r->port) };
		inet_pton(AF_INET6, r->host, &a.sin6_addr);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return fd;
	} else {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)r->port) };
		inet_pton(AF_INET, r->host, &a.sin_addr);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return fd;
	}
	close(fd);
	return -1;
}

static int dial(const struct relay *r)
{
	return dial_rcvbuf(r, 0);
}

static int send_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int recv_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static size_t put_frame(uint8_t *dst, size_t len, const uint8_t *src)
{
	dst[0] = (uint8_t)(len >> 24);
	dst[1] = (uint8_t)(len >> 16);
	dst[2] = (uint8_t)(len >> 8);
	dst[3] = (uint8_t)len;
	memcpy(dst + 4, src, len);
	return len + 4;
}

/* Read one frame; returns its length or -1. */
static long read_frame(int fd, uint8_t *dst, size_t cap)
{
	uint8_t h[4];

	if (recv_all(fd, h, 4))
		return -1;
	size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
	if (len > cap || recv_all(fd, dst, len))
		return -1;
	return (long)len;
}

static int echo_ok(int fd, const char *text)
{
	uint8_t buf[256], back[256];
	size_t n = put_frame(buf, strlen(text), (const uint8_t *)text);

	if (send_all(fd, buf, n))
		return 0;
	long got = read_frame(fd, back, sizeof(back));
	return got == (long)strlen(text) && memcmp(back, text, (size_t)got) == 0;
}

/* The peer closed (EOF or reset) within the receive timeout. */
static int sees_close(int fd)
{
	uint8_t buf[4096];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return 1;
		if (n < 0)
			return 0; /* timeout */
	}
}

static void test_coalesced_and_split(struct relay *r)
{
	enum { N = 400 };
	static uint8_t out[N * (2000 + 4)], back[70000];
	size_t lens[N], used = 0;
	int fd = dial(r);

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	test_srand(42);
	for (int i = 0; i < N; i++) {
		uint8_t payload[2000];
		lens[i] = i == 0 ? 0 : test_rand() % sizeof(payload);
		for (size_t j = 0; j < lens[i]; j++)
			payload[j] = (uint8_t)(i * 31 + j);
		used += put_frame(out + used, lens[i], payload);
	}
	/* Many frames in one write: the relay sees them in a few reads. */
	CHECK_EQ_INT(send_all(fd, out, used), 0);
	size_t off = 0;
	int good = 0;
	for (int i = 0; i < N; i++) {
		long got = read_frame(fd, back, sizeof(back));
		if (got == (long)lens[i] && memcmp(back, out + off + 4, lens[i]) == 0)
			good++;
		off += lens[i] + 4;
	}
	CHECK_EQ_INT(good, N);

	/* One 60000-byte frame split into pieces of 1..7 bytes, the header a byte
	 * at a time with pauses so each piece is a separate read. */
	static uint8_t big[60000 + 4];
	uint8_t payload[60000];
	for (size_t j = 0; j < sizeof(payload); j++)
		payload[j] = (uint8_t)(j * 7 + 3);
	size_t total = put_frame(big, sizeof(payload), payload);
	for (int i = 0; i < 4; i++) {
		CHECK_EQ_INT(send_all(fd, big + i, 1), 0);
		usleep(20000);
	}
	for (size_t sent = 4; sent < total;) {
		size_t piece = 1 + test_rand() % 7;
		if (piece > total - sent)
			piece = total - sent;
		if (send_all(fd, big + sent, piece))
			break;
		sent += piece;
	}
	long got = read_frame(fd, back, sizeof(back));
	CHECK_EQ_INT(got, (long)sizeof(payload));
	CHECK(got == (long)sizeof(payload) && memcmp(back, payload, sizeof(payload)) == 0);
	close(fd);
}

static void test_oversize_and_truncated(struct relay *r)
{
	int good = dial(r), bad = dial(r), cut = dial(r);
	uint8_t hdr[4] = { 0x00, 0x10, 0x00, 0x01 }; /* 1 MiB + 1 > 64 KiB */

	CHECK(good >= 0 && bad >= 0 && cut >= 0);
	if (good < 0 || bad < 0 || cut < 0)
		return;
	CHECK(echo_ok(good, "before"));
	CHECK_EQ_INT(send_all(bad, hdr, 4), 0);
	CHECK(sees_close(bad));
	CHECK(relay_wait_log(r, "frame of 1048577 bytes exceeds the limit of 65536 bytes", 10));
	/* Others are unaffected. */
	CHECK(echo_ok(good, "after"));

	/* A frame cut short by the end of the stream is reported as such. */
	uint8_t part[14] = { 0, 0, 0, 100, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j' };
	CHECK_EQ_INT(send_all(cut, part, sizeof(part)), 0);
	shutdown(cut, SHUT_WR);
	CHECK(sees_close(cut));
	CHECK(relay_wait_log(r, "in the middle of a frame (14 of 104 bytes)", 10));
	CHECK(echo_ok(good, "still"));
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
		char text[32];
		snprintf(text, sizeof(text), "client %d", i);
		if (fds[i] >= 0 && echo_ok(fds[i], text))
			ok++;
	}
	CHECK_EQ_INT(ok, N);
	for (int i = 0; i < N; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* A client that sends but never reads is cut off once its queue overflows;
 * another client keeps being served meanwhile. */
static void test_slow_reader(void)
{
	struct relay r;
	static uint8_t frame[1004];
	uint8_t payload[1000];

	CHECK_EQ_INT(relay_start(&r, "127.0.0.1:0", "--set", "relay.out_queue_limit=65536", NULL), 0);
	if (!r.pid)
		return;
	int slow = dial_rcvbuf(&r, 4096), good = dial(&r);
	CHECK(slow >= 0 && good >= 0);
	if (slow < 0 || good < 0)
		goto out;
	memset(payload, 'x', sizeof(payload));
	put_frame(frame, sizeof(payload), payload);
	fcntl(slow, F_SETFL, O_NONBLOCK);
	int cut = 0;
	size_t partial = 0, sent_total = 0;
	time_t deadline = time(NULL) + 30;
	for (int i = 0; i < 100000 && !cut && time(NULL) < deadline; i++) {
		ssize_t n = send(slow, frame + partial, sizeof(frame) - partial, MSG_NOSIGNAL);
		if (n > 0) {
			/* Keep the stream in frames: finish a partly sent frame first. */
			sent_total += (size_t)n;
			partial = (partial + (size_t)n) % sizeof(frame);
		}
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			cut = 1;
		else if (n < 0 && errno == EAGAIN)
			usleep(1000);
		if (i % 64 == 0) {
			relay_read_log(&r, 0);
			if (strstr(r.log, "output queue full"))
				cut = 1;
		}
	}
	if (!cut)
		fprintf(stderr, "slow reader: sent %zu bytes, never cut off\n", sent_total);
	CHECK(cut);
	CHECK(relay_wait_log(&r, "output queue full", 10));
	CHECK(relay_wait_log(&r, "peer is not reading", 1));
	CHECK(echo_ok(good, "the good client is still served"));
	close(slow);
	close(good);
out:
	CHECK_EQ_INT(relay_stop(&r), 0);
}

/* relay.idle_timeout drops a client that sends nothing. */
static void test_idle_timeout(void)
{
	struct relay r;

	CHECK_EQ_INT(relay_start(&r, "127.0.0.1:0", "--set", "relay.idle_timeout=1", NULL), 0);
	if (!r.pid)
		return;
	int idle = dial(&r), busy = dial(&r);
	CHECK(idle >= 0 && busy >= 0);
	for (int i = 0; i < 6 && busy >= 0; i++) { /* 3 s of traffic on the busy one */
		CHECK(echo_ok(busy, "keepalive"));
		usleep(500000);
	}
	if (idle >= 0)
		CHECK(sees_close(idle));
	CHECK(relay_wait_log(&r, "idle for too long", 5));
	if (busy >= 0) {
		CHECK(echo_ok(busy, "still here"));
		close(busy);
	}
	if (idle >= 0)
		close(idle);
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
		CHECK(echo_ok(fd, "over ipv6"));
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

	signal(SIGPIPE, SIG_IGN);
	if (relay_start(&r, "127.0.0.1:0", NULL) != 0) {
		fprintf(stderr, "relay did not start:\n%s\n", r.log);
		return 1;
	}
	int fd = dial(&r);
	CHECK(fd >= 0);
	CHECK(fd >= 0 && echo_ok(fd, "hello"));
	CHECK(relay_wait_log(&r, "client 127.0.0.1:", 5));
	test_coalesced_and_split(&r);
	test_oversize_and_truncated(&r);
	test_many_clients(&r);
	test_address_in_use(&r);

	/* SIGTERM: the relay closes every client and exits 0. */
	CHECK_EQ_INT(relay_stop(&r), 0);
	CHECK_STR_CONTAINS(r.log, "shutting down on Terminated");
	if (fd >= 0) {
		CHECK(sees_close(fd));
		close(fd);
	}
	test_slow_reader();
	test_idle_timeout();
	test_ipv6();
	return test_done("e2e_relay");
}
