#include "relayproc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sys/random.h>

#include "frame.h"
#include "paths.h"
#include "scram.h"



unsigned long relay_child_nofile;

int use_valgrind(void)
{
	const char *v = getenv("CHAT_VALGRIND");
	return v && strcmp(v, "1") == 0;
}

/* Keeps the first sizeof(r->log) - 1 bytes; the rest is read (so the relay
 * never blocks on a full pipe) and only counted. */
void relay_read_log(struct relay *r, int timeout_ms)
{
	static char spill[65536];
	struct pollfd p = { .fd = r->err_fd, .events = POLLIN };

	while (poll(&p, 1, timeout_ms) > 0) {
		int full = r->log_len + 1 >= sizeof(r->log);
		char *dst = full ? spill : r->log + r->log_len;
		size_t cap = full ? sizeof(spill) : sizeof(r->log) - 1 - r->log_len;
		ssize_t n = read(r->err_fd, dst, cap);
		if (n <= 0) {
			r->eof = n == 0;
			return;
		}
		for (ssize_t i = 0; i < n; i++)
			r->lines += dst[i] == '\n';
		if (full) {
			r->spilled += (size_t)n;
		} else {
			r->log_len += (size_t)n;
			r->log[r->log_len] = '\0';
		}
		timeout_ms = 0;
	}
}

/* Wait until the relay's log contains text (bounded). */
int relay_wait_log(struct relay *r, const char *text, int seconds)
{
	for (int i = 0; i < seconds * 20; i++) {
		if (strstr(r->log, text))
			return 1;
		relay_read_log(r, 50);
	}
	fprintf(stderr, "relay log lacks \"%s\":\n%s\n", text, r->log);
	return 0;
}

int relay_start(struct relay *r, const char *listen, ...)
{
	const char *argv[64];
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
	argv[n++] = "--set";
	argv[n++] = "relay.database="; /* tests never touch the repository's var/ */
	/* These tests speak the relay protocol on raw sockets: plain TCP,
	 * whatever chat.ini's default (the TLS link has tests of its own). */
	argv[n++] = "--set";
	argv[n++] = "relay.transport=tcp";
	/* Raw test connections answer the relay's PINGs only while a test reads
	 * from them, so one a test leaves aside (slow under valgrind) must not be
	 * cut as dead; tests of the keepalive set relay.dead_after themselves. */
	argv[n++] = "--set";
	argv[n++] = "relay.dead_after=0";
	/* Likewise a connection dialed early and used later must not meet the
	 * login deadline, tests open many connections from 127.0.0.1 before
	 * logging any in, and they look for each event in the log: the limits
	 * before login and the log limiter are off unless a test sets them
	 * (tests/e2e_prelogin.c does). */
	argv[n++] = "--set";
	argv[n++] = "relay.login_timeout=0";
	argv[n++] = "--set";
	argv[n++] = "relay.max_unauth_per_address=0";
	argv[n++] = "--set";
	argv[n++] = "relay.log_interval=0";
	argv[n++] = "--listen";
	argv[n++] = listen;
	va_start(ap, listen);
	const char *a;
	while ((a = va_arg(ap, const char *)) && n < 62)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;

	if (pipe2(pipefd, O_CLOEXEC) != 0)
		return -1;
	r->pid = fork();
	if (r->pid == 0) {
		if (relay_child_nofile) {
			struct rlimit rl = { relay_child_nofile, relay_child_nofile };
			setrlimit(RLIMIT_NOFILE, &rl);
		}
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
int relay_stop(struct relay *r)
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
static int dial_any(const struct relay *r, int rcvbuf, const char *local)
{
	int fd = socket(r->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = 20 };
	int one = 1;

	if (fd < 0)
		return -1;
	if (local) { /* another source address on loopback (IPv4 only: 127.0.0.0/8 is all local) */
		struct sockaddr_in a = { .sin_family = AF_INET };
		if (r->family != AF_INET || inet_pton(AF_INET, local, &a.sin_addr) != 1 ||
		    bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
			fprintf(stderr, "cannot bind a client socket to %s: %s\n", local, strerror(errno));
			close(fd);
			return -1;
		}
	}
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

int dial_rcvbuf(const struct relay *r, int rcvbuf)
{
	return dial_any(r, rcvbuf, NULL);
}

int dial(const struct relay *r)
{
	return dial_any(r, 0, NULL);
}

int dial_from(const struct relay *r, const char *local)
{
	return dial_any(r, 0, local);
}

int send_all(int fd, const void *buf, size_t len)
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

int recv_all(int fd, void *buf, size_t len)
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

size_t put_frame(uint8_t *dst, size_t len, const uint8_t *src)
{
	chat_frame_put_header(len, dst);
	memcpy(dst + CHAT_FRAME_HDR, src, len);
	return len + CHAT_FRAME_HDR;
}

/* Read one frame; returns its length or -1. */
long read_frame(int fd, uint8_t *dst, size_t cap)
{
	uint8_t h[4];

	if (recv_all(fd, h, 4))
		return -1;
	size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
	if (len > cap || recv_all(fd, dst, len))
		return -1;
	return (long)len;
}

/* ---- speaking the relay protocol */

struct chat_wbuf wb;

void begin(int type)
{
	chat_wbuf_reset(&wb);
	chat_put_u8(&wb, (unsigned)type);
}

/* Send wb as one frame. */
int send_msg(int fd)
{
	static uint8_t buf[1 << 17];
	size_t n = put_frame(buf, wb.len, wb.data);

	return send_all(fd, buf, n);
}

/* Answer a PING as a keepalive-aware peer would, without touching wb (a
 * caller may be in the middle of building a message). */
static int answer_ping(int fd, uint64_t token)
{
	uint8_t f[CHAT_FRAME_HDR + 9];

	chat_frame_put_header(9, f);
	f[CHAT_FRAME_HDR] = CHAT_MSG_PONG;
	for (int i = 0; i < 8; i++)
		f[CHAT_FRAME_HDR + 1 + i] = (uint8_t)(token >> (56 - 8 * i));
	return send_all(fd, f, sizeof(f));
}

/* Read the next message.  PING (the relay's keepalive, docs/PROTOCOL.md) is
 * answered with PONG and skipped, so tests see only what they asked for;
 * nothing else is skipped.  Returns 0 or -1. */
int read_msg(int fd, struct chat_msg *m)
{
	static uint8_t buf[1 << 17];
	char err[256];

	for (;;) {
		long n = read_frame(fd, buf, sizeof(buf));
		if (n < 0)
			return -1;
		if (chat_msg_parse((size_t)n, buf, m, sizeof(err), err) != CHAT_OK) {
			fprintf(stderr, "relay sent a malformed message: %s\n", err);
			return -1;
		}
		if (m->type != CHAT_MSG_PING)
			return 0;
		/* A closed peer is not our error here: the next read reports it. */
		answer_ping(fd, m->id);
	}
}

/* Read until a message of type arrives (others are skipped); 0 or -1. */
int expect_type(int fd, int type, struct chat_msg *m)
{
	for (int i = 0; i < 100000; i++) {
		if (read_msg(fd, m))
			return -1;
		if (m->type == type)
			return 0;
	}
	return -1;
}

void put_hello(const char *suites)
{
	char list[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	size_t n = 0;
	const char *p = suites;

	while (*p && n < CHAT_SUITES_MAX) {
		size_t k = strcspn(p, ",");
		snprintf(list[n++], CHAT_NAME_MAX + 1, "%.*s", (int)k, p);
		p += k;
		if (*p == ',')
			p++;
	}
	begin(CHAT_MSG_HELLO);
	chat_put_u8(&wb, CHAT_PROTO_VERSION);
	chat_put_suites(&wb, n, (const char (*)[CHAT_NAME_MAX + 1])list);
}

/* HELLO + LOGIN; 1 when logged in. */
int login(int fd, const char *name, const char *suites)
{
	struct chat_msg m;

	put_hello(suites);
	if (send_msg(fd) || expect_type(fd, CHAT_MSG_WELCOME, &m))
		return 0;
	begin(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, name);
	if (send_msg(fd) || read_msg(fd, &m))
		return 0;
	return m.type == CHAT_MSG_LOGGED_IN && !strcmp(m.name, name);
}

/* A request answered by an ERROR: returns its text ("" if none came). */
const char *error_for(int fd, unsigned *code)
{
	static struct chat_msg m;

	if (send_msg(fd) || read_msg(fd, &m) || m.type != CHAT_MSG_ERROR) {
		*code = 0;
		return "";
	}
	*code = m.code;
	return m.text;
}

/* The relay still answers this client. */
int who_ok(int fd)
{
	struct chat_msg m;

	begin(CHAT_MSG_WHO);
	return !send_msg(fd) && !read_msg(fd, &m) && m.type == CHAT_MSG_WHO_LIST;
}

/* alice offers, bob accepts (suite), both sides see it. */
int converse(int a, const char *an, int b, const char *bn, const char *suite)
{
	struct chat_msg m;

	begin(CHAT_MSG_TALK);
	chat_put_str8(&wb, bn);
	if (send_msg(a) || expect_type(b, CHAT_MSG_OFFERED, &m) || strcmp(m.name, an))
		return 0;
	put_answer(an, 1, suite, "");
	if (send_msg(b) || expect_type(a, CHAT_MSG_ANSWERED, &m))
		return 0;
	return m.flag == 1 && !strcmp(m.suite, suite) && !strcmp(m.name, bn);
}

/* The peer closed (EOF or reset) within the receive timeout. */
int sees_close(int fd)
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


/* ---- accounts (docs/PROTOCOL.md section 4) */

void put_verifier_for(const char *pw)
{
	struct chat_scram_verifier v;
	uint8_t salt[16];

	getrandom(salt, sizeof(salt), 0);
	chat_scram_make_verifier(strlen(pw), pw, sizeof(salt), salt, 4096, &v);
	chat_put_verifier(&wb, &v);
}

int hello(int fd)
{
	struct chat_msg m;

	put_hello("rc4dh,aescbc-hmac");
	return !send_msg(fd) && !expect_type(fd, CHAT_MSG_WELCOME, &m);
}

/* Register name (HELLO first if fresh); returns the reply type, code in *code. */
int do_register(int fd, const char *name, const char *pw, unsigned *code)
{
	struct chat_msg m;

	begin(CHAT_MSG_REGISTER);
	chat_put_str8(&wb, name);
	put_verifier_for(pw);
	if (send_msg(fd) || read_msg(fd, &m))
		return -1;
	*code = m.type == CHAT_MSG_ERROR ? m.code : 0;
	return m.type;
}

/* The SCRAM exchange (op 1 login, 2 password proof).  Returns 1 on success
 * (server signature verified); else 0 with the ERROR code and text. */
unsigned last_code;
char last_text[CHAT_TEXT_MAX + 1];
char last_challenge[CHAT_TEXT_MAX + 1];

int scram(int fd, int op, const char *name, const char *pw, struct chat_msg *out)
{
	struct chat_scram_client sc;
	char first[CHAT_SCRAM_MSG_MAX], final[CHAT_SCRAM_MSG_MAX];
	uint8_t raw[12];
	char nonce[25];
	struct chat_msg m;

	last_code = 0;
	last_text[0] = '\0';
	getrandom(raw, sizeof(raw), 0);
	for (int i = 0; i < 12; i++)
		snprintf(nonce + 2 * i, 3, "%02x", raw[i]);
	memset(&sc, 0, sizeof(sc));
	if (chat_scram_client_first(&sc, name, nonce, NULL, sizeof(first), first) != CHAT_OK)
		return 0;
	begin(CHAT_MSG_AUTH);
	chat_put_u8(&wb, (unsigned)op);
	chat_put_str16(&wb, first);
	if (send_msg(fd) || read_msg(fd, &m))
		return 0;
	if (m.type == CHAT_MSG_ERROR) {
		last_code = m.code;
		snprintf(last_text, sizeof(last_text), "%s", m.text);
		return 0;
	}
	if (m.type != CHAT_MSG_AUTH_CHALLENGE)
		return 0;
	snprintf(last_challenge, sizeof(last_challenge), "%s", m.text);
	if (chat_scram_client_final(&sc, m.text, strlen(pw), pw, sizeof(final), final) != CHAT_OK)
		return 0;
	begin(CHAT_MSG_AUTH_FINAL);
	chat_put_str16(&wb, final);
	if (send_msg(fd) || read_msg(fd, &m))
		return 0;
	if (m.type == CHAT_MSG_ERROR) {
		last_code = m.code;
		snprintf(last_text, sizeof(last_text), "%s", m.text);
		return 0;
	}
	if (m.type != CHAT_MSG_AUTH_OK || (int)m.op != op)
		return 0;
	if (chat_scram_client_verify(&sc, m.text) != CHAT_OK) {
		fprintf(stderr, "relay's server signature does not verify\n");
		return 0;
	}
	if (op == CHAT_AUTH_LOGIN) {
		if (read_msg(fd, &m) || m.type != CHAT_MSG_LOGGED_IN || strcmp(m.name, name))
			return 0;
		if (out)
			*out = m;
	}
	return 1;
}

/* A fresh connection logged in as name; -1 on failure. */
int connect_as(const struct relay *r, const char *name, const char *pw)
{
	return connect_as_from(r, NULL, name, pw);
}

int connect_as_from(const struct relay *r, const char *local, const char *name, const char *pw)
{
	int fd = dial_from(r, local);

	if (fd < 0 || !hello(fd) || !scram(fd, CHAT_AUTH_LOGIN, name, pw, NULL)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* A request answered by DONE (1, its text in last_text) or ERROR (0, code
 * in last_code, text in last_text). */
int request_done(int fd)
{
	struct chat_msg m;

	if (send_msg(fd))
		return 0;
	for (;;) {
		if (read_msg(fd, &m))
			return 0;
		if (m.type == CHAT_MSG_DONE) {
			snprintf(last_text, sizeof(last_text), "%s", m.text);
			return 1;
		}
		if (m.type == CHAT_MSG_ERROR) {
			last_code = m.code;
			snprintf(last_text, sizeof(last_text), "%s", m.text);
			return 0;
		}
	}
}

void put_answer(const char *to, int accept, const char *suite, const char *reason)
{
	begin(CHAT_MSG_ANSWER);
	chat_put_str8(&wb, to);
	chat_put_u8(&wb, (unsigned)accept);
	chat_put_str8(&wb, suite);
	chat_put_str16(&wb, reason);
}

void put_admin(int op, const char *name, const char *pw)
{
	begin(CHAT_MSG_ADMIN);
	chat_put_u8(&wb, (unsigned)op);
	chat_put_str8(&wb, name);
	if (pw)
		put_verifier_for(pw);
}

/* Next MAIL; parses the inner message into inner, acks it unless noack. */
int next_mail(int fd, struct chat_msg *inner, uint64_t *id, int ack)
{
	static struct chat_msg m;
	char err[256];

	if (expect_type(fd, CHAT_MSG_MAIL, &m))
		return 0;
	if (chat_msg_parse(m.payload_len, m.payload, inner, sizeof(err), err) != CHAT_OK) {
		fprintf(stderr, "MAIL inner: %s\n", err);
		return 0;
	}
	*id = m.id;
	if (ack) {
		begin(CHAT_MSG_ACK);
		chat_put_u64(&wb, m.id);
		chat_put_u8(&wb, 0);
		chat_put_str16(&wb, "");
		if (send_msg(fd))
			return 0;
	}
	return 1;
}

int send_payload(int fd, const char *to, uint64_t id, const char *text)
{
	begin(CHAT_MSG_SEND);
	chat_put_str8(&wb, to);
	chat_put_u64(&wb, id);
	chat_put_bytes(&wb, strlen(text), (const uint8_t *)text);
	return send_msg(fd);
}

