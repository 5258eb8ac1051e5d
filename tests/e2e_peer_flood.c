/* chat-peer (suite rc4dh) against a hostile sender, as a real process on
 * 127.0.0.1 (under valgrind with CHAT_VALGRIND=1).  The sender is this
 * program: it speaks the peer protocol (docs/PEER.md) and runs its end of
 * rc4dh through the real plugin, then misbehaves.
 *
 * 1. The stall of issue 11: 40 empty DATA chunks, each claiming a stream
 *    offset 64 MiB ahead (560 bytes in one write; rc4dh's offsets are not
 *    authenticated).  They used to make chat-peer skip 2.5 GiB of keystream
 *    before doing anything else (5.1 s).  Now the first is refused (NACK,
 *    "malformed"), and a second connection is answered within a short bound.
 *    The same with a whole 64 KiB write of such frames.
 * 2. Empty "more" chunks count towards the message limit: 961 of them get a
 *    too-big NACK (they used to be taken without end); 959 and a last chunk
 *    are a message (the limit is not lowered for honest senders). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "loader.h"
#include "paths.h"
#include "relayproc.h"
#include "testutils.h"

#define HELLO_MALLORY "chat-peer/1\nsuite rc4dh\nfrom mallory\nto bob\n"
#define HELLO_NOBODY "chat-peer/1\nsuite rc4dh\nfrom nobody\nto bob\n"
enum { F_HELLO = 1, F_HS, F_DATA, F_ACK, F_NACK };
enum { N_UNKNOWN_USER = 4, N_INTEGRITY = 7, N_TOO_BIG = 8 };

static const struct chat_cipher_ops *ops;
static const struct chat_host *host;
static char dir[64];

struct peer {
	pid_t pid;
	int in_fd, out_fd;
	char out[65536];
	size_t out_len;
	struct relay addr; /* only host, port, family */
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void read_out(struct peer *p, int timeout_ms)
{
	struct pollfd pf = { .fd = p->out_fd, .events = POLLIN };

	while (p->out_len + 1 < sizeof(p->out) && poll(&pf, 1, timeout_ms) > 0) {
		ssize_t n = read(p->out_fd, p->out + p->out_len, sizeof(p->out) - 1 - p->out_len);

		if (n <= 0)
			return;
		p->out_len += (size_t)n;
		p->out[p->out_len] = '\0';
		timeout_ms = 0;
	}
}

static int wait_out(struct peer *p, const char *text, int seconds)
{
	for (int i = 0; i < seconds * 20; i++) {
		if (strstr(p->out, text))
			return 1;
		read_out(p, 50);
	}
	fprintf(stderr, "chat-peer never printed \"%s\"; it printed:\n%s\n", text, p->out);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f))
		abort();
	chmod(path, 0600);
}

static int start_peer(struct peer *p)
{
	char dirfile[128], pass[128], log[128], logset[160];
	const char *argv[48];
	int n = 0, in[2], out[2];

	memset(p, 0, sizeof(*p));
	snprintf(dirfile, sizeof(dirfile), "%s/dir.json", dir);
	snprintf(pass, sizeof(pass), "%s/pass", dir);
	snprintf(log, sizeof(log), "%s/bob.log", dir);
	snprintf(logset, sizeof(logset), "peer.log=%s", log);
	write_file(dirfile, "[{\"username\": \"mallory\", \"ip\": \"127.0.0.1\", \"port\": 9, "
	                    "\"password\": \"unused by rc4dh\"}]\n");
	write_file(pass, "log passphrase of the flood test\n");
	if (use_valgrind()) {
		argv[n++] = "valgrind";
		argv[n++] = "-q";
		argv[n++] = "--leak-check=full";
		argv[n++] = "--errors-for-leak-kinds=definite,indirect";
		argv[n++] = "--error-exitcode=99";
	}
	argv[n++] = CHAT_TEST_BIN_DIR "/chat-peer";
	argv[n++] = "--config";
	argv[n++] = CHAT_TEST_SOURCE_DIR "/chat.ini";
	argv[n++] = "--set";
	argv[n++] = "core.plugin_dir=" CHAT_TEST_PLUGIN_DIR;
	argv[n++] = "--user";
	argv[n++] = "bob";
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--directory";
	argv[n++] = dirfile;
	argv[n++] = "--suite";
	argv[n++] = "rc4dh";
	argv[n++] = "--passphrase-file";
	argv[n++] = pass;
	argv[n++] = "--set";
	argv[n++] = logset;
	argv[n++] = "--set";
	argv[n++] = "peer.log_iterations=1000";
	argv[n++] = "--set";
	argv[n++] = "peer.timeout=20000";
	argv[n] = NULL;
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
		return -1;
	p->pid = fork();
	if (p->pid == 0) {
		char err[128];
		snprintf(err, sizeof(err), "%s/bob.err", dir);
		int efd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(efd, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	p->in_fd = in[1];
	p->out_fd = out[0];
	if (!wait_out(p, "listening 127.0.0.1:", 60))
		return -1;
	p->addr.family = AF_INET;
	snprintf(p->addr.host, sizeof(p->addr.host), "127.0.0.1");
	p->addr.port = atoi(strstr(p->out, "listening 127.0.0.1:") + strlen("listening 127.0.0.1:"));
	return 0;
}

/* End of input: chat-peer finishes and exits 0 (valgrind: 99 on findings). */
static int stop_peer(struct peer *p)
{
	int status = 0;

	close(p->in_fd);
	for (int i = 0; i < 1200; i++) {
		if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
			read_out(p, 0);
			close(p->out_fd);
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
		}
		read_out(p, 0);
		usleep(50000);
	}
	kill(p->pid, SIGKILL);
	waitpid(p->pid, &status, 0);
	close(p->out_fd);
	return -1;
}

static void set_timeout(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static int send_frame(int fd, int type, size_t len, const uint8_t *body)
{
	uint8_t buf[70000];

	buf[4] = (uint8_t)type;
	memcpy(buf + 5, body, len);
	chat_frame_put_header(len + 1, buf);
	return send_all(fd, buf, len + 5);
}

/* Connect as mallory and run rc4dh as the initiator; the socket, or -1. */
static int connect_established(const struct peer *p, void **session)
{
	static const uint8_t hello[] = HELLO_MALLORY;
	uint8_t frame[1 + sizeof(hello)], m[512], in[1024];
	struct chat_buf b = { m, sizeof(m), 0 }, none = { m, sizeof(m), 0 };
	struct chat_cipher_params prm = {
		.size = sizeof(prm), .role = CHAT_ROLE_INITIATOR, .local_id = "mallory",
		.peer_id = "bob", .suite = "rc4dh", .binding = frame, .binding_len = sizeof(frame) - 1,
	};
	int fd = dial(&p->addr);
	long n;

	*session = NULL;
	frame[0] = F_HELLO;
	memcpy(frame + 1, hello, sizeof(hello));
	if (fd < 0 || send_frame(fd, F_HELLO, sizeof(hello) - 1, hello) ||
	    ops->session_new(host, &prm, session) != CHAT_OK ||
	    ops->handshake(*session, 0, &b, NULL) != CHAT_HS_CONTINUE ||
	    send_frame(fd, F_HS, b.len, m))
		goto bad;
	set_timeout(fd, use_valgrind() ? 30000 : 10000);
	n = read_frame(fd, in, sizeof(in));
	if (n < 2 || in[0] != F_HS ||
	    ops->handshake(*session, (size_t)n - 1, &none, in + 1) != CHAT_HS_ESTABLISHED)
		goto bad;
	return fd;
bad:
	fprintf(stderr, "handshake with chat-peer failed\n");
	if (fd >= 0)
		close(fd);
	ops->session_free(*session);
	*session = NULL;
	return -1;
}

/* A DATA frame (type, flags) holding an empty chunk that claims offset off:
 * 14 bytes with its header. */
static size_t put_forged(uint8_t *dst, uint64_t off)
{
	chat_frame_put_header(10, dst);
	dst[4] = F_DATA;
	dst[5] = 1; /* more chunks follow */
	for (int b = 7; b >= 0; b--, off >>= 8)
		dst[6 + b] = (uint8_t)off;
	return 14;
}

/* The first frame the peer sends on fd; its type, or -1 (closed, timeout). */
static int next_frame(int fd, uint8_t *f, size_t cap, long *len)
{
	*len = read_frame(fd, f, cap);
	return *len > 0 ? f[0] : -1;
}

/* A second connection: HELLO from a stranger, answered by a NACK
 * unknown-user.  Returns the milliseconds it took, or -1. */
static double ping(const struct peer *p)
{
	static const uint8_t hello[] = HELLO_NOBODY;
	uint8_t f[1024];
	double t0 = now_ms();
	int fd = dial(&p->addr);
	long n;

	if (fd < 0)
		return -1;
	set_timeout(fd, 30000);
	if (send_frame(fd, F_HELLO, sizeof(hello) - 1, hello) ||
	    next_frame(fd, f, sizeof(f), &n) != F_NACK || n < 2 || f[1] != N_UNKNOWN_USER) {
		close(fd);
		return -1;
	}
	close(fd);
	return now_ms() - t0;
}

/* Frames claiming offsets 64 MiB apart, count of them in one write; then a
 * ping on a second connection.  Returns 1 if the peer stayed responsive. */
static int stall_attack(struct peer *p, size_t count, double bound_ms)
{
	void *s;
	int fd = connect_established(p, &s), ok = 1;
	uint8_t *buf = malloc(count * 14), f[1024];
	size_t len = 0;
	long n;
	double took;

	if (fd < 0 || !buf) {
		free(buf);
		return 0;
	}
	for (size_t k = 0; k < count; k++)
		len += put_forged(buf + len, (uint64_t)(k + 1) << 26);
	CHECK_EQ_INT(send_all(fd, buf, len), 0);
	usleep(20000); /* the peer is busy with them (or was) */
	took = ping(p);
	printf("stall attack: %zu frames (%zu bytes) in one write; a second connection was "
	       "answered in %.1f ms (bound %.0f ms)\n", count, len, took, bound_ms);
	CHECK(took >= 0 && took < bound_ms);
	ok &= took >= 0 && took < bound_ms;
	/* The attack frames were refused: a NACK, then the close. */
	set_timeout(fd, use_valgrind() ? 30000 : 5000);
	CHECK_EQ_INT(next_frame(fd, f, sizeof(f), &n), F_NACK);
	if (n >= 4) {
		CHECK_EQ_INT(f[1], N_INTEGRITY);
		f[n < (long)sizeof(f) ? n : (long)sizeof(f) - 1] = '\0';
		CHECK_STR_CONTAINS((char *)f + 4, "malformed");
	}
	CHECK_EQ_INT(next_frame(fd, f, sizeof(f), &n), -1);
	close(fd);
	ops->session_free(s);
	free(buf);
	return ok;
}

/* empty "more" chunks (each a genuine empty rc4dh message), then "hi" as
 * the last chunk; the first frame chat-peer answers with. */
static int chunks(struct peer *p, size_t empty, uint8_t *f, size_t cap, long *n)
{
	void *s;
	int fd = connect_established(p, &s), type;
	uint8_t *buf = malloc((empty + 1) * 16 + 64);
	size_t len = 0;

	if (fd < 0 || !buf) {
		free(buf);
		return -2;
	}
	for (size_t k = 0; k <= empty; k++) {
		struct chat_buf b = { buf + len + 6, 16, 0 };

		CHECK_EQ_INT(ops->seal(s, k < empty ? 0 : 2, &b, (const uint8_t *)"hi"), CHAT_OK);
		chat_frame_put_header(2 + b.len, buf + len);
		buf[len + 4] = F_DATA;
		buf[len + 5] = k < empty; /* more */
		len += 6 + b.len;
	}
	CHECK_EQ_INT(send_all(fd, buf, len), 0);
	set_timeout(fd, use_valgrind() ? 60000 : 10000);
	type = next_frame(fd, f, cap, n);
	close(fd);
	ops->session_free(s);
	free(buf);
	return type;
}

int main(void)
{
	struct chat_registry *reg = NULL;
	const struct chat_loaded *l = NULL;
	struct peer p;
	char err[1024];
	uint8_t f[1024];
	long n;
	const char *san = getenv("CHAT_SANITIZE");
	double bound = use_valgrind() ? 3000 : san && !strcmp(san, "1") ? 600 : 200;

	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/chat-flood.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	CHECK_EQ_INT(chat_registry_new(NULL, &reg), CHAT_OK);
	if (chat_registry_load(reg, CHAT_TEST_PLUGIN_DIR, CHAT_PLUGIN_CIPHER, "rc4dh", &l,
	                       sizeof(err), err) != CHAT_OK) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	ops = l->desc->ops.cipher;
	host = &l->host;
	if (start_peer(&p)) {
		fprintf(stderr, "chat-peer did not start\n");
		return 1;
	}

	if (stall_attack(&p, 40, bound))       /* 560 bytes */
		stall_attack(&p, 4681, bound); /* 65,534 bytes: one full read */
	CHECK(wait_out(&p, "error malformed mallory", 10));

	/* 959 empty chunks and a last one: a message (959 x 64 + 2 <= 61440). */
	CHECK_EQ_INT(chunks(&p, 959, f, sizeof(f), &n), F_ACK);
	CHECK(wait_out(&p, "msg mallory hi", 10));
	/* 961 empty chunks count 61,504 bytes: too big, refused at the 961st. */
	CHECK_EQ_INT(chunks(&p, 961, f, sizeof(f), &n), F_NACK);
	if (n >= 2)
		CHECK_EQ_INT(f[1], N_TOO_BIG);
	CHECK(wait_out(&p, "error too-big mallory", 10));

	CHECK_EQ_INT(stop_peer(&p), 0);
	if (test_failures) {
		char cmd[256];
		snprintf(cmd, sizeof(cmd), "cat %s/bob.err >&2", dir);
		if (system(cmd)) {
		}
		fprintf(stderr, "chat-peer printed:\n%s\n", p.out);
	}
	{
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd)) {
		}
	}
	chat_registry_free(reg);
	return test_done("e2e_peer_flood");
}
