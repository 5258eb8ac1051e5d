/* chat-bench: a load generator for chat-relay, and for chat-bench-forwarder
 * as the ceiling to compare it with.  One process, one epoll loop, N client
 * connections to 127.0.0.1; the target is started here as a child process and
 * stopped at the end.
 *
 * Clients 2k and 2k+1 are partners.  Every data message is one frame: ROUTE
 * to the partner with an opaque payload of S bytes (magic, sender, sequence
 * number, CLOCK_MONOTONIC send time, a pattern that depends on the sequence
 * number).  The relay turns it into DELIVER{from}; the forwarder passes the
 * bytes unchanged.  The receiver checks the sender, the payload and the
 * sequence, and records the latency.
 *
 * Because both partners live in this process, a receipt frees a slot on the
 * sender directly: "W in flight" is exact, and every slot freed in one epoll
 * round is refilled with one write() per client after the round.
 *
 * relay-tls: the same with every client speaking TLS 1.3 (GnuTLS, ALPN
 * chat/1) to a relay started with relay.transport=tls and a temporary
 * relay.state_dir, where the relay makes its self-signed key.  Each client's
 * handshake is driven from the same loop (non-blocking, the wait chosen by
 * gnutls_record_get_direction), and the relay's key is pinned: every client
 * checks that the key it is shown is the one `chat-relay --fingerprint`
 * prints for that state directory. */
#define _GNU_SOURCE /* accept4, pipe2, sched_setaffinity */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "proto.h"
#include "tls_wire.h"

#ifndef CHAT_BENCH_SOURCE_DIR
#define CHAT_BENCH_SOURCE_DIR "."
#endif
#ifndef CHAT_BENCH_PLUGIN_DIR
#define CHAT_BENCH_PLUGIN_DIR "plugins"
#endif

#define EV_BATCH 1024
#define RBUF_SIZE (256 * 1024)
#define SETUP_WINDOW 128      /* relay clients connecting/logging in at once */
#define FWD_CONNECT_BATCH 512 /* forwarder clients connected before their pairing is checked */
#define PAYLOAD_HDR 24        /* magic, sender, seq, timestamp */
#define SETUP_FRAME_MAX 2048  /* largest non-data frame we expect */
#define FD_SPARE 64           /* fds beyond one per client: epoll, pipes, timerfd, stdio */

#define HS_WARMUP 16          /* --handshakes: done before the measured ones */
#define HS_PARALLEL_MAX SETUP_WINDOW
#define HS_CLOSING_ROOM 1024  /* --handshakes: relay.max_clients beyond P */

/* relay-tls.  The priority string is the one plugins/transport-tls uses
 * with min_version 1.3 (tls_wire.h, shared), so the bench's clients
 * negotiate what chat-client would (with this relay: ECDHE P-256, ECDSA,
 * AES-256-GCM). */
#define TLS_RECORD_MAX 16384 /* plaintext bytes in one TLS record */
#define TLS_PRIO TLS_PRIO_13
#define TLS_STATE_FILES { TLS_KEY_FILE, TLS_CERT_FILE } /* what the relay makes there */

#define TAG_TIMER (UINT64_MAX - 1)
#define TAG_LOG (UINT64_MAX - 2)

/* Latency histogram: 1 us buckets below 1024 us, then 512 buckets per
 * power of two (0.2% resolution), up to 2^40 us. */
#define HIST_LINEAR 1024u
#define HIST_SUB 512u
#define HIST_EXP_MAX 40u
#define HIST_N (HIST_LINEAR + (HIST_EXP_MAX - 9u) * HIST_SUB)

enum target_kind { TGT_RELAY, TGT_FORWARDER, TGT_RELAY_TLS };
enum phase { PH_SETUP, PH_TALK, PH_IDLE, PH_HANDSHAKES, PH_WARMUP, PH_MEASURE, PH_DRAIN };
/* CS_HANDSHAKE: relay-tls only, between the TCP connect and HELLO. */
enum cstate { CS_CONNECTING, CS_HANDSHAKE, CS_LOGIN, CS_LOGGED, CS_READY, CS_DEAD };

struct options {
	enum target_kind target;
	const char *relay, *forwarder, *plugin_dir, *config, *suite;
	unsigned n, size, window;
	double rate; /* messages/s over all clients; 0: saturation */
	double warmup, duration, drain, setup_timeout;
	const char *idle_list; /* --idle-mem N[,N...] */
	unsigned handshakes;   /* --handshakes N: connect, (TLS,) HELLO/WELCOME, close, N times */
	unsigned parallel;     /* --parallel P: that many at once */
	unsigned relays;       /* --relays N: N relays on one Redis (relay.cluster) */
	const char *redis;     /* --redis PATH: redis-server */
	int pin;
};

struct target {
	const char *name;
	pid_t pid;
	int err_fd;
	int port;
	char log[4096]; /* the start of what it printed */
	size_t log_len;
	unsigned long log_bytes;
	int eof;
};

struct client {
	int fd;
	uint32_t idx;
	uint8_t state;
	uint8_t namelen;
	uint8_t queued;   /* on the send list */
	uint8_t want_out; /* EPOLLOUT registered */
	uint8_t id_ok;    /* forwarder: the pair's identity frame arrived */
	uint32_t inflight; /* sent by this client, not yet received by its partner */
	uint64_t next_seq, expect_seq;
	uint8_t *out;
	size_t out_off, out_len, out_cap;
	uint8_t *carry; /* a partial incoming frame */
	size_t carry_len;
	char name[12];
	/* relay-tls */
	gnutls_session_t tls;
	uint8_t tls_wpend;   /* gnutls holds a record it could not send whole: flush it first */
	uint8_t *raw;        /* TLS bytes read from the socket, not yet taken by gnutls (rare) */
	size_t raw_off, raw_len;
	uint64_t t_open;     /* --handshakes: when its connect() was made */
};

struct stats {
	uint64_t sent, recv, win_recv, lost, dup, misrouted, errors, unexpected, closed, skipped;
	uint64_t hist[HIST_N];
	uint64_t lat_max_us;
};

#define MAX_RELAYS 4

struct bench {
	struct options o;
	struct target t;      /* the relay (the first of --relays), or the forwarder */
	struct target more[MAX_RELAYS]; /* --relays: the others, more[1..N-1] */
	struct target redis;  /* --relays > 1: the redis-server they share */
	int redis_port;
	struct client *c;
	unsigned nconnected; /* clients created so far */
	unsigned nlogged, npairs, nids, setup_pending;
	int epfd, timerfd;
	enum phase phase;
	uint8_t data_type;     /* what arrives: DELIVER from the relay, ROUTE from the forwarder */
	uint8_t *rbuf;
	uint8_t *tmpl;         /* 256 payload patterns of S bytes */
	size_t frame_max;      /* largest frame (header included) a client may receive */
	uint32_t *sendq;
	size_t nsendq;
	uint64_t inflight_total;
	uint64_t paced_start, paced_sent;
	unsigned paced_rr;
	char first_error[256];
	struct stats s;
	/* relay-tls */
	gnutls_certificate_credentials_t tls_cred;
	gnutls_priority_t tls_prio;
	char pin[TLS_FP_SIZE];   /* the relay's key, from chat-relay --fingerprint */
	uint8_t *pin_der;        /* the certificate once seen to carry that key */
	size_t pin_der_len;
	uint8_t *tls_in;         /* what one recv() read for the client being served */
	size_t tls_in_off, tls_in_len;
	int tls_may_recv;        /* that recv() is still allowed in this event */
	/* --handshakes */
	unsigned hs_started, hs_done, hs_total;
};

static int is_relay(const struct options *o)
{
	return o->target == TGT_RELAY || o->target == TGT_RELAY_TLS;
}

static const char *target_label(enum target_kind t)
{
	return t == TGT_RELAY ? "relay" : t == TGT_RELAY_TLS ? "relay-tls" : "forwarder";
}

/* Every process started (the target, more relays, redis-server): killed by
 * fail() and on a signal.  child_pid is the last one started. */
#define MAX_CHILDREN (MAX_RELAYS + 2)
static pid_t child_pid;
static pid_t children[MAX_CHILDREN];

static void child_add(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] <= 0) {
			children[i] = pid;
			return;
		}
}

static void child_del(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
}

static void children_kill(int wait)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] > 0) {
			kill(children[i], SIGKILL);
			if (wait)
				waitpid(children[i], NULL, 0);
			children[i] = 0;
		}
}
static char state_dir[PATH_MAX]; /* relay-tls: the relay's temporary relay.state_dir */

/* Remove the temporary state directory: what the relay put there (its key
 * and certificate, and anything else), then the directory. */
static void state_dir_remove(void)
{
	DIR *d;
	struct dirent *e;
	char path[PATH_MAX + 256];

	if (!state_dir[0])
		return;
	d = opendir(state_dir);
	if (d) {
		while ((e = readdir(d)) != NULL) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			snprintf(path, sizeof(path), "%s/%s", state_dir, e->d_name);
			if (unlink(path) != 0)
				fprintf(stderr, "chat-bench: cannot remove %s: %s\n", path, strerror(errno));
		}
		closedir(d);
	}
	if (rmdir(state_dir) != 0)
		fprintf(stderr, "chat-bench: cannot remove %s: %s\n", state_dir, strerror(errno));
	state_dir[0] = '\0';
}

/* SIGINT/SIGTERM/SIGHUP: stop the target and remove the state directory
 * with async-signal-safe calls only (the files the relay makes are known). */
static void on_signal(int sig)
{
	static const char *const files[] = TLS_STATE_FILES;
	char path[PATH_MAX + 32];
	size_t dl = strlen(state_dir);

	children_kill(0);
	if (dl) {
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			size_t fl = strlen(files[i]);
			if (dl + 1 + fl + 1 > sizeof(path))
				continue;
			memcpy(path, state_dir, dl);
			path[dl] = '/';
			memcpy(path + dl + 1, files[i], fl + 1);
			unlink(path);
		}
		rmdir(state_dir);
	}
	_exit(128 + sig);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "chat-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	children_kill(1);
	state_dir_remove();
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- latency histogram */

static unsigned hist_index(uint64_t us)
{
	unsigned e;

	if (us < HIST_LINEAR)
		return (unsigned)us;
	e = 63u - (unsigned)__builtin_clzll(us);
	if (e >= HIST_EXP_MAX)
		return HIST_N - 1;
	return HIST_LINEAR + (e - 10u) * HIST_SUB + (unsigned)((us >> (e - 9u)) - HIST_SUB);
}

static uint64_t hist_value(unsigned idx)
{
	if (idx < HIST_LINEAR)
		return idx;
	unsigned e = 10u + (idx - HIST_LINEAR) / HIST_SUB;
	uint64_t sub = (idx - HIST_LINEAR) % HIST_SUB + HIST_SUB;
	return sub << (e - 9u);
}

static uint64_t hist_pct(const struct stats *s, double p)
{
	uint64_t total = 0, want, acc = 0;

	for (unsigned i = 0; i < HIST_N; i++)
		total += s->hist[i];
	if (!total)
		return 0;
	want = (uint64_t)(p * (double)total + 0.999999);
	if (want < 1)
		want = 1;
	for (unsigned i = 0; i < HIST_N; i++) {
		acc += s->hist[i];
		if (acc >= want)
			return hist_value(i);
	}
	return s->lat_max_us;
}

/* ---- /proc */

static long proc_status_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t flen = strlen(field);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
			v = strtol(line + flen + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

/* utime + stime in clock ticks. */
static long long proc_cpu_ticks(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long ut, st;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* The command name may hold spaces: fields count from after its ')'. */
	char *p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

/* Busy ticks of the whole machine (every CPU), from /proc/stat: what is not
 * ours or the target's was taken by something else running meanwhile. */
static long long machine_busy_ticks(void)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (!f)
		return -1;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
	           &v[5], &v[6], &v[7]);
	fclose(f);
	if (n < 5)
		return -1;
	/* user nice system idle iowait irq softirq steal: all but idle and iowait */
	return (long long)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
}

static double self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Is something listening on 127.0.0.1:port?  Asking /proc instead of
 * connecting keeps the relay free of probe clients (the idle-memory baseline
 * is a relay that has never seen one). */
static int port_listening(int port)
{
	char line[512];
	unsigned addr, lport, st;
	int found = 0;
	FILE *f = fopen("/proc/net/tcp", "r");

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		if (sscanf(line, " %*u: %8X:%4X %*8X:%*4X %2X", &addr, &lport, &st) == 3)
			found = (int)lport == port && st == 0x0A &&
			        (addr == htonl(INADDR_LOOPBACK) || addr == 0);
	}
	fclose(f);
	return found;
}

/* ---- the target process */

static void target_read_log(struct target *t)
{
	char buf[4096];

	for (int i = 0; i < 64 && !t->eof; i++) {
		ssize_t n = read(t->err_fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return; /* EAGAIN */
		if (n == 0) {
			t->eof = 1;
			return;
		}
		size_t room = sizeof(t->log) - 1 - t->log_len;
		size_t take = (size_t)n < room ? (size_t)n : room;
		memcpy(t->log + t->log_len, buf, take);
		t->log_len += take;
		t->log[t->log_len] = '\0';
		t->log_bytes += (unsigned long)n;
	}
}

/* Exits with a message if the target is gone. */
static void target_check(struct target *t)
{
	int status;

	if (t->pid <= 0 || waitpid(t->pid, &status, WNOHANG) != t->pid)
		return;
	child_del(t->pid);
	t->pid = 0;
	child_pid = 0;
	target_read_log(t);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		fail("%s could not be executed (exit status 127)%s%s", t->name, t->log_len ? ":\n" : "",
		     t->log);
	if (WIFEXITED(status))
		fail("%s exited with status %d%s%s", t->name, WEXITSTATUS(status),
		     t->log_len ? ":\n" : "", t->log);
	fail("%s was killed by signal %d%s%s", t->name, WTERMSIG(status), t->log_len ? ":\n" : "",
	     t->log);
}

/* The relay(s) and redis-server: exits with a message if one is gone. */
static void targets_check(struct bench *b)
{
	target_check(&b->t);
	for (unsigned k = 1; k < b->o.relays && k < MAX_RELAYS; k++)
		target_check(&b->more[k]);
	target_check(&b->redis);
}


static void target_spawn(struct target *t, char *const argv[], int pin)
{
	int pipefd[2], exec_err[2];

	if (access(argv[0], X_OK) != 0)
		fail("%s not found or not executable at %s (%s); build it (cmake --build) or pass its path",
		     t->name, argv[0], strerror(errno));
	if (pipe2(pipefd, O_CLOEXEC) != 0 || pipe2(exec_err, O_CLOEXEC) != 0)
		fail("pipe: %s", strerror(errno));
	t->pid = fork();
	if (t->pid < 0)
		fail("fork: %s", strerror(errno));
	if (t->pid == 0) {
		int devnull = open("/dev/null", O_RDWR);
		dup2(devnull, 0);
		dup2(devnull, 1);
		dup2(pipefd[1], 2);
		if (pin) {
			cpu_set_t set;
			CPU_ZERO(&set);
			CPU_SET(1, &set);
			sched_setaffinity(0, sizeof(set), &set);
		}
		execv(argv[0], argv);
		int e = errno;
		if (write(exec_err[1], &e, sizeof(e)) < 0)
			_exit(126);
		_exit(127);
	}
	child_pid = t->pid;
	child_add(t->pid);
	close(pipefd[1]);
	close(exec_err[1]);
	int e = 0;
	if (read(exec_err[0], &e, sizeof(e)) == (ssize_t)sizeof(e)) {
		waitpid(t->pid, NULL, 0);
		child_del(t->pid);
		t->pid = child_pid = 0;
		fail("cannot execute %s (%s): %s", t->name, argv[0], strerror(e));
	}
	close(exec_err[0]);
	t->err_fd = pipefd[0];
	fcntl(t->err_fd, F_SETFL, O_NONBLOCK);
}

/* Wait until the target listens: the relay on the port we chose, the
 * forwarder on the one it prints. */
static void target_wait_listening(struct target *t, double timeout_s)
{
	uint64_t end = now_ns() + (uint64_t)(timeout_s * 1e9);

	while (now_ns() < end) {
		struct pollfd p = { .fd = t->err_fd, .events = POLLIN };
		poll(&p, 1, 20);
		target_read_log(t);
		target_check(t);
		if (t->port > 0 && port_listening(t->port))
			return;
		const char *l = strstr(t->log, "listening on 127.0.0.1:");
		if (t->port <= 0 && l) {
			t->port = atoi(l + strlen("listening on 127.0.0.1:"));
			if (t->port > 0)
				return;
		}
	}
	fail("%s did not start listening within %.0f s%s%s", t->name, timeout_s,
	     t->log_len ? "; it said:\n" : "", t->log);
}

static void target_stop(struct target *t)
{
	int status;

	if (t->pid <= 0)
		return;
	kill(t->pid, SIGTERM);
	for (int i = 0; i < 100; i++) {
		target_read_log(t);
		if (waitpid(t->pid, &status, WNOHANG) == t->pid)
			goto done;
		usleep(20000);
	}
	fprintf(stderr, "chat-bench: %s did not stop on SIGTERM within 2 s; killing it\n", t->name);
	kill(t->pid, SIGKILL);
	waitpid(t->pid, &status, 0);
done:
	target_read_log(t);
	close(t->err_fd);
	child_del(t->pid);
	t->pid = child_pid = 0;
}

static void targets_stop(struct bench *b)
{
	for (unsigned k = 1; k < b->o.relays && k < MAX_RELAYS; k++)
		target_stop(&b->more[k]);
	target_stop(&b->redis);
}

/* A free port on 127.0.0.1 for the relay (which logs its address only at
 * info level, and we run it at warn). */
static int pick_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) < 0)
		fail("cannot find a free port on 127.0.0.1: %s", strerror(errno));
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* The relay's arguments shared by its start and by --fingerprint; returns
 * the count put in argv (at most 20). */
static int relay_args(const struct bench *b, char *argv[], char *plugins, size_t plen, char *statedir,
                      size_t slen)
{
	int i = 0;

	snprintf(plugins, plen, "core.plugin_dir=%s", b->o.plugin_dir);
	argv[i++] = (char *)b->o.relay;
	argv[i++] = "--config";
	argv[i++] = (char *)b->o.config;
	argv[i++] = "--set";
	argv[i++] = plugins;
	argv[i++] = "--set";
	argv[i++] = "core.log_level=warn";
	/* guests only, as in the forwarder: no database (chat-bench-accounts measures that) */
	argv[i++] = "--set";
	argv[i++] = "relay.database=";
	if (b->o.target == TGT_RELAY_TLS) {
		snprintf(statedir, slen, "relay.state_dir=%s", state_dir);
		argv[i++] = "--set";
		argv[i++] = "relay.transport=tls";
		argv[i++] = "--set";
		argv[i++] = statedir;
	} else {
		argv[i++] = "--set"; /* plain TCP, whatever chat.ini's default (tls) */
		argv[i++] = "relay.transport=tcp";
	}
	return i;
}

/* relay-tls: the relay's key as `chat-relay --fingerprint` prints it for
 * the state directory the running relay made its key in.  Every bench
 * client pins it (tls_verify). */
static void relay_fingerprint(struct bench *b)
{
	char plugins[PATH_MAX + 32], statedir[PATH_MAX + 32], out[4096];
	char *argv[24];
	int i = relay_args(b, argv, plugins, sizeof(plugins), statedir, sizeof(statedir)), pfd[2], status;
	size_t len = 0;
	uint64_t end = now_ns() + 10000000000u;
	pid_t pid;

	argv[i++] = "--fingerprint";
	argv[i] = NULL;
	if (pipe2(pfd, O_CLOEXEC) != 0)
		fail("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		dup2(devnull, 0);
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		uint64_t now = now_ns();
		if (now >= end) {
			kill(pid, SIGKILL);
			break;
		}
		if (poll(&p, 1, (int)((end - now) / 1000000u) + 1) <= 0)
			continue;
		ssize_t n = read(pfd[0], out + len, sizeof(out) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(out) - 1)
			break;
	}
	out[len] = '\0';
	close(pfd[0]);
	waitpid(pid, &status, 0);
	/* A line of its own: sha256: and 64 hex digits. */
	for (char *l = out; *l;) {
		char *nl = strchr(l, '\n');
		if (strncmp(l, "sha256:", 7) == 0 && strspn(l + 7, "0123456789abcdef") == 64 &&
		    (l[71] == '\n' || l[71] == '\0')) {
			memcpy(b->pin, l, 71);
			b->pin[71] = '\0';
			break;
		}
		if (!nl)
			break;
		l = nl + 1;
	}
	if (!b->pin[0] || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("%s --fingerprint (state directory %s) did not print the relay's key; it said:\n%s",
		     b->o.relay, state_dir, out);
}

/* --relays > 1: the redis-server the relays share, on a free port,
 * nothing saved. */
static void start_redis(struct bench *b)
{
	struct target *t = &b->redis;
	char port[16];

	memset(t, 0, sizeof(*t));
	t->name = "redis-server";
	t->port = b->redis_port = pick_port();
	snprintf(port, sizeof(port), "%d", t->port);
	char *argv[] = { (char *)b->o.redis, "--port", port, "--bind", "127.0.0.1", "--save", "",
		         "--appendonly", "no", "--loglevel", "warning", NULL };
	target_spawn(t, argv, 0);
	target_wait_listening(t, 10);
}

/* One relay (t: &b->t or one of b->more) on a free port. */
static void start_relay(struct bench *b, struct target *t, const char *name)
{
	char listen[64], plugins[PATH_MAX + 32], statedir[PATH_MAX + 32], maxc[64], cluster[64];
	char *argv[40];
	int i;

	memset(t, 0, sizeof(*t));
	t->err_fd = -1;
	t->name = name;
	t->port = pick_port();
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", t->port);
	/* --handshakes: room for connections this side has closed and the
	 * relay has not yet seen close, none of them logged in. */
	snprintf(maxc, sizeof(maxc), "relay.max_clients=%u",
	         b->o.n + 16 + (b->o.handshakes ? HS_CLOSING_ROOM : 0));
	i = relay_args(b, argv, plugins, sizeof(plugins), statedir, sizeof(statedir));
	argv[i++] = "--set";
	argv[i++] = maxc;
	if (b->o.handshakes) {
		argv[i++] = "--set";
		argv[i++] = "relay.reserved_slots=0";
	}
	argv[i++] = "--set";
	argv[i++] = "relay.idle_timeout=0";
	/* up to SETUP_WINDOW clients log in at once, all from 127.0.0.1 */
	argv[i++] = "--set";
	argv[i++] = "relay.max_unauth_per_address=0";
	if (b->o.relays > 1) {
		snprintf(cluster, sizeof(cluster), "relay.cluster=redis://127.0.0.1:%d", b->redis_port);
		argv[i++] = "--set";
		argv[i++] = cluster;
	}
	argv[i++] = "--listen";
	argv[i++] = listen;
	argv[i] = NULL;
	target_spawn(t, argv, b->o.pin);
	target_wait_listening(t, 10);
}

static void start_target(struct bench *b)
{
	struct target *t = &b->t;

	memset(t, 0, sizeof(*t));
	t->err_fd = -1;
	if (is_relay(&b->o)) {
		static const char *const names[MAX_RELAYS] = { "chat-relay", "chat-relay 2",
			                                        "chat-relay 3", "chat-relay 4" };
		if (b->o.target == TGT_RELAY_TLS) {
			/* A fresh state directory: the relay makes its key there on
			 * first start; removed at the end (state_dir_remove). */
			const char *tmp = getenv("TMPDIR");
			snprintf(state_dir, sizeof(state_dir), "%s/chat-bench-tls-XXXXXX",
			         tmp && *tmp ? tmp : "/tmp");
			if (!mkdtemp(state_dir)) {
				state_dir[0] = '\0';
				fail("cannot create a temporary state directory: %s", strerror(errno));
			}
		}
		if (b->o.relays > 1)
			start_redis(b);
		for (unsigned k = 1; k < b->o.relays; k++)
			start_relay(b, &b->more[k], names[k]);
		start_relay(b, t, names[0]);
	} else {
		t->name = "chat-bench-forwarder";
		t->port = 0;
		char *argv[] = { (char *)b->o.forwarder, NULL };
		target_spawn(t, argv, b->o.pin);
		target_wait_listening(t, 10);
	}
	if (b->o.target == TGT_RELAY_TLS)
		relay_fingerprint(b);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_LOG };
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, t->err_fd, &ev) < 0)
		fail("epoll_ctl: %s", strerror(errno));
}

/* ---- fd limit */

static void raise_nofile(unsigned n)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)n + FD_SPARE, cap = RLIM_INFINITY;
	FILE *f;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		fail("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
		fail("%u clients need %llu file descriptors here and in the target, but the hard "
		     "limit (ulimit -Hn) is %llu: raise it or use fewer clients",
		     n, (unsigned long long)need, (unsigned long long)rl.rlim_max);
	/* The soft limit can go as high as the hard one (and fs.nr_open); the
	 * target inherits it. */
	f = fopen("/proc/sys/fs/nr_open", "r");
	if (f) {
		unsigned long long v;
		if (fscanf(f, "%llu", &v) == 1)
			cap = (rlim_t)v;
		fclose(f);
	}
	rl.rlim_cur = rl.rlim_max < cap ? rl.rlim_max : cap;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < need)
		fail("cannot raise the fd limit to %llu for %u clients: %s", (unsigned long long)need, n,
		     strerror(errno));
}

static void record_error(struct bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* ---- clients: output */

static void set_out_interest(struct bench *b, struct client *c, int on)
{
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0u), .data.u64 = c->idx };

	if (c->want_out == on || c->state == CS_DEAD)
		return;
	if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->want_out = (uint8_t)on;
}

/* ---- relay-tls: gnutls over the client's socket
 *
 * Reading: one recv() per read event, as in plain mode.  It reads into one
 * shared buffer (b->tls_in) from which gnutls takes what it asks for, so a
 * batch of records costs one system call rather than two per record (gnutls
 * asks for a header, then a body).  Whatever gnutls has not taken when the
 * client's turn ends is kept in c->raw (in practice never: a read event
 * ends when gnutls wants more than there is). */

static struct bench *tls_bench; /* the one bench of this process, for the transport callbacks */

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
	struct client *c = p;
	struct bench *b = tls_bench;
	size_t take;

	if (c->raw_len > c->raw_off) {
		take = c->raw_len - c->raw_off < len ? c->raw_len - c->raw_off : len;
		memcpy(buf, c->raw + c->raw_off, take);
		c->raw_off += take;
		if (c->raw_off == c->raw_len)
			c->raw_off = c->raw_len = 0;
		return (ssize_t)take;
	}
	if (b->tls_in_off == b->tls_in_len) {
		ssize_t n;
		if (!b->tls_may_recv) {
			gnutls_transport_set_errno(c->tls, EAGAIN);
			return -1;
		}
		b->tls_may_recv = 0;
		do
			n = recv(c->fd, b->tls_in, RBUF_SIZE, 0);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			gnutls_transport_set_errno(c->tls, errno);
		if (n <= 0)
			return n;
		b->tls_in_off = 0;
		b->tls_in_len = (size_t)n;
	}
	take = b->tls_in_len - b->tls_in_off < len ? b->tls_in_len - b->tls_in_off : len;
	memcpy(buf, b->tls_in + b->tls_in_off, take);
	b->tls_in_off += take;
	return (ssize_t)take;
}

static ssize_t tls_push(gnutls_transport_ptr_t p, const giovec_t *iov, int iovcnt)
{
	struct client *c = p;
	struct msghdr m;
	ssize_t n;

	memset(&m, 0, sizeof(m));
	m.msg_iov = (struct iovec *)(void *)iov; /* giovec_t is struct iovec's twin */
	m.msg_iovlen = (size_t)iovcnt;
	do
		n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		gnutls_transport_set_errno(c->tls, errno);
	return n;
}

/* Asked only in blocking use; never waits. */
static int tls_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms)
{
	struct client *c = p;
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

	(void)ms;
	if (c->raw_len > c->raw_off || tls_bench->tls_in_len > tls_bench->tls_in_off)
		return 1;
	return poll(&pfd, 1, 0);
}

/* The end of a client's turn: bytes gnutls did not take stay with it. */
static void tls_stash(struct bench *b, struct client *c)
{
	size_t left = b->tls_in_len - b->tls_in_off, keep = c->raw_len - c->raw_off;

	if (left && c->state != CS_DEAD) {
		uint8_t *p = malloc(keep + left);
		if (!p)
			fail("out of memory");
		if (keep)
			memcpy(p, c->raw + c->raw_off, keep);
		memcpy(p + keep, b->tls_in + b->tls_in_off, left);
		free(c->raw);
		c->raw = p;
		c->raw_off = 0;
		c->raw_len = keep + left;
	}
	b->tls_in_off = b->tls_in_len = 0;
}

/* "sha256:HEX" of the SubjectPublicKeyInfo of a DER certificate: what
 * chat-relay --fingerprint prints and [plugin.tls] pin takes. */
static int der_key_fingerprint(const gnutls_datum_t *der, char fp[TLS_FP_SIZE])
{
	gnutls_pubkey_t pub = NULL;
	gnutls_datum_t spki = { NULL, 0 };
	uint8_t h[32];
	int rc = -1;

	fp[0] = '\0';
	if (gnutls_pubkey_init(&pub) < 0)
		return -1;
	if (gnutls_pubkey_import_x509_raw(pub, der, GNUTLS_X509_FMT_DER, 0) >= 0 &&
	    gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &spki) >= 0 &&
	    gnutls_hash_fast(GNUTLS_DIG_SHA256, spki.data, spki.size, h) >= 0) {
		memcpy(fp, "sha256:", 7);
		for (size_t i = 0; i < sizeof(h); i++)
			snprintf(fp + 7 + 2 * i, 3, "%02x", h[i]);
		rc = 0;
	}
	gnutls_free(spki.data);
	gnutls_pubkey_deinit(pub);
	return rc;
}

/* Inside the handshake: the relay's key must be the pinned one.  The
 * certificate that carried it is remembered, so later handshakes compare
 * bytes instead of parsing it again (the same check, cheaper for the
 * generator). */
static int tls_verify(gnutls_session_t session)
{
	struct bench *b = gnutls_session_get_ptr(session);
	unsigned n = 0;
	const gnutls_datum_t *crt = gnutls_certificate_get_peers(session, &n);
	char fp[TLS_FP_SIZE];

	if (!crt || !n) {
		record_error(b, "the relay presented no certificate");
		return -1;
	}
	if (b->pin_der && crt[0].size == b->pin_der_len && memcmp(crt[0].data, b->pin_der, b->pin_der_len) == 0)
		return 0;
	if (der_key_fingerprint(&crt[0], fp) != 0 || strcmp(fp, b->pin) != 0) {
		record_error(b, "the relay presented the key %s, not the one chat-relay --fingerprint "
		             "printed (%s)", fp[0] ? fp : "(unreadable)", b->pin);
		return -1;
	}
	free(b->pin_der);
	b->pin_der = malloc(crt[0].size);
	if (!b->pin_der)
		fail("out of memory");
	memcpy(b->pin_der, crt[0].data, crt[0].size);
	b->pin_der_len = crt[0].size;
	return 0;
}

static void tls_client_new(struct bench *b, struct client *c)
{
	gnutls_datum_t alpn = { (unsigned char *)TLS_ALPN, sizeof(TLS_ALPN) - 1 };
	int g;

	/* GNUTLS_NO_TICKETS as in transport-tls: no resumption either side. */
	g = gnutls_init(&c->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS);
	if (g < 0)
		fail("gnutls_init: %s", gnutls_strerror(g));
	if ((g = gnutls_priority_set(c->tls, b->tls_prio)) < 0 ||
	    (g = gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, b->tls_cred)) < 0 ||
	    (g = gnutls_alpn_set_protocols(c->tls, &alpn, 1, 0)) < 0)
		fail("cannot set up a TLS session: %s", gnutls_strerror(g));
	gnutls_session_set_ptr(c->tls, b);
	gnutls_transport_set_ptr(c->tls, c);
	gnutls_transport_set_pull_function(c->tls, tls_pull);
	gnutls_transport_set_pull_timeout_function(c->tls, tls_pull_timeout);
	gnutls_transport_set_vec_push_function(c->tls, tls_push);
	gnutls_session_set_verify_function(c->tls, tls_verify);
	gnutls_handshake_set_timeout(c->tls, 0); /* bounded by --setup-timeout */
	c->tls_wpend = 0;
}

/* Close a client's connection and free what it holds.  bye: send TLS
 * close_notify first, if the socket takes it at once. */
static void client_close(struct bench *b, struct client *c, int bye)
{
	if (c->tls) {
		if (bye)
			gnutls_bye(c->tls, GNUTLS_SHUT_WR);
		gnutls_deinit(c->tls);
		c->tls = NULL;
		/* The shared read buffer is only ever the current client's. */
		b->tls_in_off = b->tls_in_len = 0;
	}
	free(c->raw);
	c->raw = NULL;
	c->raw_off = c->raw_len = 0;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = CS_DEAD;
}

static void client_kill(struct bench *b, struct client *c, const char *why)
{
	if (c->state == CS_DEAD)
		return;
	if (b->phase < PH_WARMUP) {
		target_read_log(&b->t);
		target_check(&b->t);
		fail("client %s lost its connection during setup: %s%s%s", c->name, why,
		     b->t.log_len ? "; the target said:\n" : "", b->t.log);
	}
	b->s.closed++;
	if (!b->first_error[0])
		snprintf(b->first_error, sizeof(b->first_error), "%s: %s", c->name, why);
	epoll_ctl(b->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	client_close(b, c, 0);
}

static void client_flush_tls(struct bench *b, struct client *c)
{
	/* Before the handshake is done, HELLO and LOGIN wait in c->out. */
	if (c->state < CS_LOGIN)
		return;
	while (c->out_len > c->out_off && c->state != CS_DEAD) {
		/* One record per call (16 KiB at most); after AGAIN gnutls holds
		 * the record and is asked to flush it with NULL, 0. */
		ssize_t n = c->tls_wpend ? gnutls_record_send(c->tls, NULL, 0)
		                         : gnutls_record_send(c->tls, c->out + c->out_off, c->out_len - c->out_off);
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
			c->tls_wpend = 1;
			set_out_interest(b, c, 1);
			return;
		}
		if (n <= 0) {
			client_kill(b, c, n == 0 ? "TLS send sent nothing" : gnutls_strerror((int)n));
			return;
		}
		c->tls_wpend = 0;
		c->out_off += (size_t)n;
	}
	if (c->state == CS_DEAD)
		return;
	c->out_off = c->out_len = 0;
	set_out_interest(b, c, 0);
}

static void client_flush(struct bench *b, struct client *c)
{
	if (c->tls) {
		client_flush_tls(b, c);
		return;
	}
	while (c->out_len > c->out_off && c->state != CS_DEAD) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			set_out_interest(b, c, 1);
			return;
		}
		if (n <= 0) {
			client_kill(b, c, strerror(errno));
			return;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	set_out_interest(b, c, 0);
}

/* Room for len more bytes at the end of c->out. */
static uint8_t *out_room(struct client *c, size_t len)
{
	if (c->out_off) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 1024;
		while (cap < c->out_len + len)
			cap *= 2;
		uint8_t *p = realloc(c->out, cap);
		if (!p)
			fail("out of memory");
		c->out = p;
		c->out_cap = cap;
	}
	uint8_t *p = c->out + c->out_len;
	c->out_len += len;
	return p;
}

static void queue_send(struct bench *b, struct client *c)
{
	if (!c->queued && c->state != CS_DEAD) {
		c->queued = 1;
		b->sendq[b->nsendq++] = c->idx;
	}
}

/* A control message built with the proto builder. */
static void send_msg(struct bench *b, struct client *c, struct chat_wbuf *w)
{
	if (w->err)
		fail("cannot build a message: %s", chat_strerror(w->err));
	uint8_t *p = out_room(c, CHAT_FRAME_HDR + w->len);
	chat_frame_put_header(w->len, p);
	memcpy(p + 4, w->data, w->len);
	queue_send(b, c);
}

/* One data frame from c to its partner: ROUTE{partner, payload}. */
static void put_data(struct bench *b, struct client *c, uint64_t ts)
{
	const struct client *p = &b->c[c->idx ^ 1u];
	size_t S = b->o.size, body = 2u + p->namelen + S;
	uint8_t *f = out_room(c, 4 + body), *pl;
	uint64_t seq = c->next_seq++;

	chat_frame_put_header(body, f);
	f[4] = CHAT_MSG_ROUTE;
	f[5] = p->namelen;
	memcpy(f + 6, p->name, p->namelen);
	pl = f + 6 + p->namelen;
	memcpy(pl, "CBNC", 4);
	memcpy(pl + 4, &c->idx, 4);
	memcpy(pl + 8, &seq, 8);
	memcpy(pl + 16, &ts, 8);
	memcpy(pl + PAYLOAD_HDR, b->tmpl + (seq & 255u) * S + PAYLOAD_HDR, S - PAYLOAD_HDR);
	c->inflight++;
	b->inflight_total++;
	b->s.sent++;
}

/* Saturation: top c up to W messages in flight, in one write. */
static void refill(struct bench *b, struct client *c, uint64_t ts)
{
	while (c->inflight < b->o.window)
		put_data(b, c, ts);
}

static void flush_sendq(struct bench *b)
{
	int refilling = b->o.rate == 0 && (b->phase == PH_WARMUP || b->phase == PH_MEASURE);
	uint64_t ts = refilling ? now_ns() : 0;

	for (size_t i = 0; i < b->nsendq; i++) {
		struct client *c = &b->c[b->sendq[i]];
		c->queued = 0;
		if (c->state == CS_DEAD)
			continue;
		if (refilling && c->state == CS_READY)
			refill(b, c, ts);
		if (!c->want_out) /* else the socket is full: EPOLLOUT will tell */
			client_flush(b, c);
	}
	b->nsendq = 0;
}

/* ---- clients: input */

static void record_error(struct bench *b, const char *fmt, ...)
{
	va_list ap;

	if (b->first_error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(b->first_error, sizeof(b->first_error), fmt, ap);
	va_end(ap);
}

static void on_data(struct bench *b, struct client *c, const uint8_t *pl, size_t plen, uint64_t now)
{
	struct client *from = &b->c[c->idx ^ 1u];
	size_t S = b->o.size;
	uint32_t sender;
	uint64_t seq, ts;

	if (plen != S || memcmp(pl, "CBNC", 4) != 0) {
		b->s.misrouted++;
		record_error(b, "%s got a payload of %zu bytes that is not a benchmark message", c->name, plen);
		return;
	}
	memcpy(&sender, pl + 4, 4);
	memcpy(&seq, pl + 8, 8);
	memcpy(&ts, pl + 16, 8);
	if (sender != from->idx || seq >= from->next_seq ||
	    memcmp(pl + PAYLOAD_HDR, b->tmpl + (seq & 255u) * S + PAYLOAD_HDR, S - PAYLOAD_HDR) != 0) {
		b->s.misrouted++;
		record_error(b, "%s got message %" PRIu64 " of u%u, expected one from %s", c->name, seq,
		             sender, from->name);
		return;
	}
	if (seq < c->expect_seq) {
		b->s.dup++;
		return;
	}
	/* TCP keeps order, so a gap means the ones skipped will never come. */
	uint64_t got = seq - c->expect_seq + 1;
	b->s.lost += got - 1;
	c->expect_seq = seq + 1;
	from->inflight -= (uint32_t)got;
	b->inflight_total -= got;
	b->s.recv++;
	if (b->phase == PH_MEASURE) {
		uint64_t us = now > ts ? (now - ts) / 1000u : 0;
		b->s.win_recv++;
		b->s.hist[hist_index(us)]++;
		if (us > b->s.lat_max_us)
			b->s.lat_max_us = us;
	}
	if (b->o.rate == 0)
		queue_send(b, from);
}

static void on_control(struct bench *b, struct client *c, const uint8_t *f, size_t len)
{
	struct chat_msg m;
	struct chat_wbuf w;
	char err[256];

	if (chat_msg_parse(len, f, &m, sizeof(err), err) != CHAT_OK)
		fail("%s received a malformed frame: %s", c->name, err);
	switch (m.type) {
	case CHAT_MSG_WELCOME:
		/* --handshakes: this connection is done (run_handshakes closes it). */
		if (b->phase == PH_HANDSHAKES && c->state == CS_LOGIN) {
			uint64_t now = now_ns(), us = (now - c->t_open) / 1000u;
			c->state = CS_LOGGED;
			if (b->hs_done >= HS_WARMUP) {
				b->s.hist[hist_index(us)]++;
				if (us > b->s.lat_max_us)
					b->s.lat_max_us = us;
			}
		}
		return;
	case CHAT_MSG_PING: /* the relay's keepalive: answer, as a client must */
		chat_wbuf_init(&w, 64);
		chat_put_u8(&w, CHAT_MSG_PONG);
		chat_put_u64(&w, m.id);
		send_msg(b, c, &w);
		chat_wbuf_free(&w);
		return;
	case CHAT_MSG_PONG:
		return;
	case CHAT_MSG_LOGGED_IN:
		if (c->state != CS_LOGIN)
			break;
		c->state = CS_LOGGED;
		b->nlogged++;
		b->setup_pending--;
		return;
	case CHAT_MSG_OFFERED:
		if (strcmp(m.name, b->c[c->idx ^ 1u].name) != 0)
			break;
		chat_wbuf_init(&w, 4096);
		chat_put_u8(&w, CHAT_MSG_ANSWER);
		chat_put_str8(&w, m.name);
		chat_put_u8(&w, 1);
		chat_put_str8(&w, b->o.suite);
		chat_put_str16(&w, "");
		send_msg(b, c, &w);
		chat_wbuf_free(&w);
		return;
	case CHAT_MSG_ANSWERED:
		if (strcmp(m.name, b->c[c->idx ^ 1u].name) != 0 || !m.flag)
			break;
		c->state = CS_READY;
		b->c[c->idx ^ 1u].state = CS_READY;
		b->npairs++;
		return;
	case CHAT_MSG_ERROR:
		if (b->phase < PH_WARMUP)
			fail("%s got an ERROR from the relay during setup: code %u on %s: %s", c->name,
			     m.code, chat_msg_type_name((int)m.ref), m.text);
		b->s.errors++;
		record_error(b, "%s got ERROR %u on %s: %s", c->name, m.code,
		             chat_msg_type_name((int)m.ref), m.text);
		return;
	case CHAT_MSG_BYE:
		client_kill(b, c, m.text);
		return;
	default:
		break;
	}
	if (b->phase < PH_WARMUP)
		fail("%s received an unexpected %s during setup", c->name, chat_msg_type_name(m.type));
	b->s.unexpected++;
	record_error(b, "%s received an unexpected %s", c->name, chat_msg_type_name(m.type));
}

/* Forwarder setup: each client announces itself to its pair; a wrong
 * identity means the forwarder paired connections out of order. */
static void on_identity(struct bench *b, struct client *c, const uint8_t *pl, size_t plen)
{
	uint32_t idx = UINT32_MAX;

	if (plen == 8)
		memcpy(&idx, pl + 4, 4);
	if (idx != (c->idx ^ 1u))
		fail("the forwarder paired %s with u%u (expected u%u): connections were not "
		     "paired in accept order", c->name, idx, c->idx ^ 1u);
	if (!c->id_ok) {
		c->id_ok = 1;
		b->nids++;
	}
}

static void on_frame(struct bench *b, struct client *c, const uint8_t *f, size_t len, uint64_t now)
{
	/* Data: DELIVER{from: partner} from the relay, ROUTE{to: me} from the
	 * forwarder (the bytes the partner sent). */
	if (len >= 2 && f[0] == b->data_type && (size_t)f[1] + 2 <= len) {
		const struct client *named = is_relay(&b->o) ? &b->c[c->idx ^ 1u] : c;
		const uint8_t *pl = f + 2 + f[1];
		size_t plen = len - 2 - f[1];
		if (f[1] != named->namelen || memcmp(f + 2, named->name, named->namelen) != 0) {
			b->s.misrouted++;
			record_error(b, "%s got a message naming '%.*s' instead of %s", c->name, f[1],
			             (const char *)f + 2, named->name);
			return;
		}
		if (b->o.target == TGT_FORWARDER && plen >= 4 && memcmp(pl, "CBID", 4) == 0) {
			on_identity(b, c, pl, plen);
			return;
		}
		on_data(b, c, pl, plen, now);
		return;
	}
	if (b->o.target == TGT_FORWARDER) {
		b->s.misrouted++;
		record_error(b, "%s got a frame of type 0x%02x from the forwarder", c->name,
		             len ? f[0] : 0u);
		return;
	}
	on_control(b, c, f, len);
}

/* Every whole frame in b->rbuf[0, len), in order; returns the bytes they
 * took (a partial frame may follow). */
static size_t parse_frames(struct bench *b, struct client *c, size_t len, uint64_t now)
{
	size_t off = 0;

	while (len - off >= 4 && c->state != CS_DEAD) {
		size_t flen = get_be32(b->rbuf + off);
		if (flen + 4 > b->frame_max)
			fail("%s received a frame of %zu bytes, more than expected", c->name, flen);
		if (len - off < 4 + flen)
			break;
		on_frame(b, c, b->rbuf + off + 4, flen, now);
		off += 4 + flen;
	}
	return off;
}

/* Keep the partial frame at b->rbuf[off, len) for the next read. */
static void keep_carry(struct bench *b, struct client *c, size_t len, size_t off)
{
	if (c->state == CS_DEAD)
		return;
	c->carry_len = len - off;
	if (c->carry_len) {
		if (!c->carry && !(c->carry = malloc(b->frame_max)))
			fail("out of memory");
		memcpy(c->carry, b->rbuf + off, c->carry_len);
	}
}

/* relay-tls: one recv() (in tls_pull), then every record gnutls can make of
 * it, so nothing decrypted stays in gnutls (gnutls_record_check_pending is
 * 0 when this returns: the fd would not wake us for it). */
static void client_read_tls(struct bench *b, struct client *c)
{
	size_t len = c->carry_len, off;
	uint64_t now;

	if (len)
		memcpy(b->rbuf, c->carry, len);
	b->tls_may_recv = 1;
	for (int tries = 0;;) {
		ssize_t n;
		if (RBUF_SIZE - len < TLS_RECORD_MAX) {
			/* Room for the next record: deliver what is whole. */
			off = parse_frames(b, c, len, now_ns());
			if (c->state == CS_DEAD)
				return;
			memmove(b->rbuf, b->rbuf + off, len - off);
			len -= off;
		}
		n = gnutls_record_recv(c->tls, b->rbuf + len, RBUF_SIZE - len);
		if (n > 0) {
			len += (size_t)n;
			continue;
		}
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
			/* Rare: gnutls must write to go on reading (a key update). */
			if (gnutls_record_get_direction(c->tls) == 1)
				set_out_interest(b, c, 1);
			break;
		}
		if (n < 0 && !gnutls_error_is_fatal((int)n) && ++tries < 8)
			continue; /* a warning alert */
		client_kill(b, c, n == 0 ? "the relay closed the TLS connection" : gnutls_strerror((int)n));
		return;
	}
	tls_stash(b, c);
	now = now_ns();
	off = parse_frames(b, c, len, now);
	keep_carry(b, c, len, off);
}

static void client_read(struct bench *b, struct client *c)
{
	size_t have = c->carry_len;
	ssize_t n;

	if (c->tls) {
		client_read_tls(b, c);
		return;
	}
	/* The partial frame kept from the last read goes first. */
	if (have)
		memcpy(b->rbuf, c->carry, have);
	do
		n = recv(c->fd, b->rbuf + have, RBUF_SIZE - have, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		client_kill(b, c, n == 0 ? "the target closed the connection" : strerror(errno));
		return;
	}
	uint64_t now = now_ns();
	size_t len = have + (size_t)n;
	keep_carry(b, c, len, parse_frames(b, c, len, now));
}

/* relay-tls: a step of the handshake, on any readiness of its socket.
 * When it is done, HELLO (and LOGIN) queued at connect time go out. */
static void tls_handshake_step(struct bench *b, struct client *c)
{
	char why[512];
	int g = 0;

	b->tls_may_recv = 1;
	for (int i = 0; i < 8; i++) {
		g = gnutls_handshake(c->tls);
		if (g == 0 || g == GNUTLS_E_AGAIN || g == GNUTLS_E_INTERRUPTED || gnutls_error_is_fatal(g))
			break;
	}
	tls_stash(b, c);
	if (g < 0 && !gnutls_error_is_fatal(g)) {
		set_out_interest(b, c, gnutls_record_get_direction(c->tls) == 1);
		return;
	}
	if (g < 0) {
		snprintf(why, sizeof(why), "TLS handshake failed: %s%s%s", gnutls_strerror(g),
		         b->first_error[0] ? ": " : "", b->first_error);
		client_kill(b, c, why);
		return;
	}
	gnutls_datum_t p = { NULL, 0 };
	if (gnutls_alpn_get_selected_protocol(c->tls, &p) < 0 || p.size != sizeof(TLS_ALPN) - 1 ||
	    memcmp(p.data, TLS_ALPN, p.size) != 0) {
		client_kill(b, c, "the relay did not agree to ALPN " TLS_ALPN);
		return;
	}
	c->state = CS_LOGIN;
	client_flush(b, c);
	if (c->state != CS_DEAD && (c->raw_len > c->raw_off || gnutls_record_check_pending(c->tls)))
		client_read(b, c);
}

/* ---- the loop */

static void paced_tick(struct bench *b)
{
	uint64_t tick, now = now_ns();

	if (read(b->timerfd, &tick, sizeof(tick)) < 0 && errno != EAGAIN)
		fail("timerfd: %s", strerror(errno));
	if (b->phase != PH_WARMUP && b->phase != PH_MEASURE)
		return;
	/* As many as the rate says by now, round robin over all clients. */
	uint64_t due = (uint64_t)(b->o.rate * (double)(now - b->paced_start) / 1e9);
	for (; b->paced_sent < due; b->paced_sent++) {
		struct client *c = &b->c[b->paced_rr];
		b->paced_rr = (b->paced_rr + 1) % b->o.n;
		if (c->state != CS_READY || c->inflight >= b->o.window) {
			b->s.skipped++;
			continue;
		}
		put_data(b, c, now);
		queue_send(b, c);
	}
}

static void poll_once(struct bench *b, int timeout_ms)
{
	struct epoll_event evs[EV_BATCH];
	int n = epoll_wait(b->epfd, evs, EV_BATCH, timeout_ms);

	if (n < 0 && errno != EINTR)
		fail("epoll_wait: %s", strerror(errno));
	for (int i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;
		if (tag == TAG_LOG) {
			target_read_log(&b->t);
			if (b->t.eof) {
				epoll_ctl(b->epfd, EPOLL_CTL_DEL, b->t.err_fd, NULL);
				target_check(&b->t);
			}
			continue;
		}
		if (tag == TAG_TIMER) {
			paced_tick(b);
			continue;
		}
		struct client *c = &b->c[tag];
		if (c->state == CS_DEAD)
			continue;
		if (c->tls && c->state <= CS_HANDSHAKE) {
			if (c->state == CS_CONNECTING) {
				int err = 0;
				socklen_t el = sizeof(err);
				if (!(evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
					continue;
				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
				if (err) {
					client_kill(b, c, strerror(err));
					continue;
				}
				c->state = CS_HANDSHAKE;
			}
			tls_handshake_step(b, c);
			continue;
		}
		/* relay-tls: EPOLLOUT with nothing to send means gnutls wanted to
		 * write while reading; the read is tried again below. */
		int tls_rw = c->tls && (evs[i].events & EPOLLOUT) && c->out_len == c->out_off;
		if (evs[i].events & EPOLLOUT) {
			if (c->state == CS_CONNECTING) {
				int err = 0;
				socklen_t el = sizeof(err);
				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
				if (err)
					client_kill(b, c, strerror(err));
				else
					c->state = CS_LOGIN;
			}
			client_flush(b, c);
		}
		if (c->state != CS_DEAD && (tls_rw || (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))))
			client_read(b, c);
	}
	flush_sendq(b);
}

/* Poll until *count reaches want; fails with what after the setup timeout. */
static void wait_for(struct bench *b, const unsigned *count, unsigned want, const char *what)
{
	uint64_t end = now_ns() + (uint64_t)(b->o.setup_timeout * 1e9);

	while (*count < want) {
		if (now_ns() > end)
			fail("setup timed out: %u of %u clients %s after %.0f s%s%s", *count, want, what,
			     b->o.setup_timeout, b->t.log_len ? "; the target said:\n" : "", b->t.log);
		poll_once(b, 50);
		targets_check(b);
	}
}

/* ---- setup */

static struct client *client_new(struct bench *b, int fd, uint8_t state)
{
	struct client *c = &b->c[b->nconnected];
	int one = 1;

	c->fd = fd;
	c->state = state;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u64 = c->idx };
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		fail("epoll_ctl: %s", strerror(errno));
	c->want_out = 1;
	b->nconnected++;
	return c;
}

/* The relay client idx connects to.  --relays N: pair k (clients 2k and
 * 2k+1) sits on relays k mod N and k+1 mod N, so every message crosses
 * from one relay to another. */
static const struct target *relay_of(const struct bench *b, uint32_t idx)
{
	unsigned n = b->o.relays > 1 ? b->o.relays : 1, k = ((idx / 2) + (idx & 1)) % n;

	return k ? &b->more[k] : &b->t;
}

static struct sockaddr_in target_addr(const struct bench *b, uint32_t idx)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	                         .sin_port = htons((uint16_t)relay_of(b, idx)->port) };
	return a;
}

/* Open c's connection to the relay (non-blocking) and queue HELLO (one
 * suite) and, with login, LOGIN u<i>: they leave once the socket is
 * connected and, for relay-tls, the handshake is done. */
static void client_open(struct bench *b, struct client *c, int login, struct chat_wbuf *w)
{
	struct sockaddr_in a = target_addr(b, c->idx);
	char suites[1][CHAT_NAME_MAX + 1];
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		fail("socket: %s (client %u)", strerror(errno), c->idx);
	c->t_open = now_ns();
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS)
		fail("connect to 127.0.0.1:%d: %s (client %u)", relay_of(b, c->idx)->port,
		     strerror(errno), c->idx);
	c->fd = fd;
	c->state = CS_CONNECTING;
	c->out_off = c->out_len = 0;
	c->carry_len = 0;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u64 = c->idx };
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		fail("epoll_ctl: %s", strerror(errno));
	c->want_out = 1;
	if (b->o.target == TGT_RELAY_TLS)
		tls_client_new(b, c);
	snprintf(suites[0], sizeof(suites[0]), "%s", b->o.suite);
	chat_wbuf_reset(w);
	chat_put_u8(w, CHAT_MSG_HELLO);
	chat_put_u8(w, CHAT_PROTO_VERSION);
	chat_put_suites(w, 1, (const char (*)[CHAT_NAME_MAX + 1])suites);
	send_msg(b, c, w);
	if (login) {
		chat_wbuf_reset(w);
		chat_put_u8(w, CHAT_MSG_LOGIN);
		chat_put_str8(w, c->name);
		send_msg(b, c, w);
	}
}

/* Relay: connect, HELLO and LOGIN pipelined, at most SETUP_WINDOW at once
 * so the relay's accept backlog never overflows (relay-tls: at most that
 * many handshakes at once, too). */
static void relay_login(struct bench *b, unsigned upto)
{
	uint64_t end = now_ns() + (uint64_t)(b->o.setup_timeout * 1e9);
	struct chat_wbuf w;

	chat_wbuf_init(&w, 4096);
	while (b->nlogged < upto) {
		while (b->nconnected < upto && b->setup_pending < SETUP_WINDOW) {
			client_open(b, &b->c[b->nconnected], 1, &w);
			b->nconnected++;
			b->setup_pending++;
		}
		if (now_ns() > end)
			fail("setup timed out: %u of %u clients logged in after %.0f s%s%s", b->nlogged, upto,
			     b->o.setup_timeout, b->t.log_len ? "; the relay said:\n" : "", b->t.log);
		poll_once(b, 50);
		targets_check(b);
	}
	chat_wbuf_free(&w);
}

static void relay_pair(struct bench *b)
{
	struct chat_wbuf w;

	b->phase = PH_TALK;
	chat_wbuf_init(&w, 4096);
	for (unsigned i = 0; i < b->o.n; i += 2) {
		chat_wbuf_reset(&w);
		chat_put_u8(&w, CHAT_MSG_TALK);
		chat_put_str8(&w, b->c[i + 1].name);
		send_msg(b, &b->c[i], &w);
	}
	chat_wbuf_free(&w);
	flush_sendq(b);
	wait_for(b, &b->npairs, b->o.n / 2, "paired (TALK/ANSWER)");
}

/* --relays: each relay has told the others (over Redis) who logged in;
 * a TALK before that would find its partner not connected. */
static void cluster_settle(struct bench *b)
{
	uint64_t end = now_ns() + 1000000000u;

	while (now_ns() < end) {
		poll_once(b, 50);
		targets_check(b);
	}
}

/* Forwarder: connect in order, a batch at a time, and check the pairing
 * by an identity frame each way before the next batch. */
static void forwarder_pair(struct bench *b)
{
	struct sockaddr_in a = target_addr(b, 0);

	for (unsigned start = 0; start < b->o.n; start += FWD_CONNECT_BATCH) {
		unsigned end = start + FWD_CONNECT_BATCH < b->o.n ? start + FWD_CONNECT_BATCH : b->o.n;
		for (unsigned i = start; i < end; i++) {
			struct timeval tv = { .tv_sec = 5 };
			int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			if (fd < 0)
				fail("socket: %s (client %u)", strerror(errno), i);
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
			/* Blocking, so connections reach the accept queue in index order. */
			if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
				fail("connect to the forwarder at 127.0.0.1:%d: %s (client %u)", b->t.port,
				     strerror(errno), i);
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
			struct client *c = client_new(b, fd, CS_READY);
			const struct client *p = &b->c[i ^ 1u];
			uint8_t *f = out_room(c, 4 + 2 + p->namelen + 8);
			chat_frame_put_header(2 + (size_t)p->namelen + 8, f);
			f[4] = CHAT_MSG_ROUTE;
			f[5] = p->namelen;
			memcpy(f + 6, p->name, p->namelen);
			memcpy(f + 6 + p->namelen, "CBID", 4);
			memcpy(f + 10 + p->namelen, &c->idx, 4);
			queue_send(b, c);
		}
		flush_sendq(b);
		wait_for(b, &b->nids, end, "paired by the forwarder");
	}
	b->npairs = b->o.n / 2;
}

/* ---- a measured run */

struct sample {
	uint64_t t;
	long long target_ticks, machine_ticks;
	double self_cpu;
	uint64_t recv;
};

static void take_sample(struct bench *b, struct sample *sm)
{
	sm->t = now_ns();
	sm->target_ticks = proc_cpu_ticks(b->t.pid);
	/* --relays: the CPU of every relay together (redis-server counts as other) */
	for (unsigned k = 1; k < b->o.relays && k < MAX_RELAYS && sm->target_ticks >= 0; k++) {
		long long more = proc_cpu_ticks(b->more[k].pid);
		sm->target_ticks = more < 0 ? -1 : sm->target_ticks + more;
	}
	sm->machine_ticks = machine_busy_ticks();
	sm->self_cpu = self_cpu_s();
	sm->recv = b->s.recv;
}

static int ms_until(uint64_t now, uint64_t when)
{
	if (when <= now)
		return 0;
	uint64_t ms = (when - now + 999999u) / 1000000u;
	return ms > 100 ? 100 : (int)ms;
}

static void run(struct bench *b, struct sample *s0, struct sample *s1)
{
	uint64_t start = now_ns();
	uint64_t t_win0 = start + (uint64_t)(b->o.warmup * 1e9);
	uint64_t t_win1 = t_win0 + (uint64_t)(b->o.duration * 1e9);
	uint64_t t_end = t_win1 + (uint64_t)(b->o.drain * 1e9), next_check = start;

	b->phase = PH_WARMUP;
	if (b->o.rate > 0) {
		struct itimerspec its = { .it_interval = { .tv_nsec = 1000000 },
		                          .it_value = { .tv_nsec = 1000000 } };
		b->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_TIMER };
		if (b->timerfd < 0 || timerfd_settime(b->timerfd, 0, &its, NULL) < 0 ||
		    epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->timerfd, &ev) < 0)
			fail("timerfd: %s", strerror(errno));
		b->paced_start = start;
	} else {
		for (unsigned i = 0; i < b->o.n; i++)
			queue_send(b, &b->c[i]);
		flush_sendq(b);
	}
	for (;;) {
		uint64_t now = now_ns();
		int timeout;
		if (b->phase == PH_WARMUP && now >= t_win0) {
			take_sample(b, s0);
			b->phase = PH_MEASURE;
		}
		if (b->phase == PH_MEASURE && now >= t_win1) {
			take_sample(b, s1);
			b->phase = PH_DRAIN;
		}
		if (b->phase == PH_DRAIN && (b->inflight_total == 0 || now >= t_end))
			break;
		if (now >= next_check) {
			targets_check(b);
			next_check = now + 100000000u;
		}
		timeout = ms_until(now, b->phase == PH_WARMUP ? t_win0 : b->phase == PH_MEASURE ? t_win1 : t_end);
		poll_once(b, timeout);
	}
	/* Whatever is still in flight after the drain never arrived. */
	b->s.lost += b->inflight_total;
	if (b->timerfd >= 0) {
		close(b->timerfd);
		b->timerfd = -1;
	}
}

static void close_clients(struct bench *b)
{
	for (unsigned i = 0; i < b->nconnected; i++) {
		struct client *c = &b->c[i];
		client_close(b, c, 0);
		free(c->out);
		free(c->carry);
		c->out = c->carry = NULL;
	}
}

/* ---- setup of the whole run */

static void bench_init(struct bench *b, unsigned nclients)
{
	size_t S = b->o.size;

	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	b->timerfd = -1;
	if (b->epfd < 0)
		fail("epoll_create1: %s", strerror(errno));
	b->c = calloc(nclients, sizeof(*b->c));
	b->sendq = calloc(nclients, sizeof(*b->sendq));
	b->rbuf = malloc(RBUF_SIZE);
	b->tmpl = malloc(256 * S);
	if (!b->c || !b->sendq || !b->rbuf || !b->tmpl)
		fail("out of memory");
	for (unsigned i = 0; i < nclients; i++) {
		struct client *c = &b->c[i];
		c->fd = -1;
		c->idx = i;
		c->state = CS_DEAD;
		c->namelen = (uint8_t)snprintf(c->name, sizeof(c->name), "u%u", i);
	}
	for (size_t k = 0; k < 256; k++)
		for (size_t i = 0; i < S; i++)
			b->tmpl[k * S + i] = (uint8_t)(k * 31u + i * 7u + 1u);
	b->data_type = is_relay(&b->o) ? CHAT_MSG_DELIVER : CHAT_MSG_ROUTE;
	b->frame_max = 4 + 2 + CHAT_NAME_MAX + S;
	if (b->frame_max < SETUP_FRAME_MAX)
		b->frame_max = SETUP_FRAME_MAX;
	if (b->o.target == TGT_RELAY_TLS) {
		const char *errpos = NULL;
		int g;
		tls_bench = b;
		b->tls_in = malloc(RBUF_SIZE);
		if (!b->tls_in)
			fail("out of memory");
		/* No trust store: the relay's key is pinned instead (tls_verify). */
		if ((g = gnutls_certificate_allocate_credentials(&b->tls_cred)) < 0)
			fail("gnutls: %s", gnutls_strerror(g));
		if ((g = gnutls_priority_init2(&b->tls_prio, TLS_PRIO, &errpos, 0)) < 0)
			fail("gnutls refuses the priority string at '%s': %s", errpos ? errpos : "?",
			     gnutls_strerror(g));
	}
}

static void bench_free(struct bench *b)
{
	close_clients(b);
	free(b->c);
	free(b->sendq);
	free(b->rbuf);
	free(b->tmpl);
	close(b->epfd);
	if (b->tls_cred)
		gnutls_certificate_free_credentials(b->tls_cred);
	if (b->tls_prio)
		gnutls_priority_deinit(b->tls_prio);
	free(b->tls_in);
	free(b->pin_der);
	tls_bench = NULL;
}

static void print_result(struct bench *b, const struct sample *s0, const struct sample *s1,
                         long hwm_kb)
{
	double secs = (double)(s1->t - s0->t) / 1e9;
	double rate = secs > 0 ? (double)b->s.win_recv / secs : 0;
	double tcpu = -1;
	long hz = sysconf(_SC_CLK_TCK);

	if (s0->target_ticks >= 0 && s1->target_ticks >= 0 && secs > 0)
		tcpu = 100.0 * (double)(s1->target_ticks - s0->target_ticks) / (double)hz / secs;
	double gcpu = secs > 0 ? 100.0 * (s1->self_cpu - s0->self_cpu) / secs : 0;
	double other = -1;
	if (tcpu >= 0 && s0->machine_ticks >= 0 && s1->machine_ticks >= 0)
		other = 100.0 * (double)(s1->machine_ticks - s0->machine_ticks) / (double)hz / secs - tcpu - gcpu;
	/* /proc/stat is sampled per tick while per-process times are exact:
	 * small negative values are sampling error (about 10 points). */
	if (other < 0 && other > -15)
		other = 0;
	uint64_t p50 = hist_pct(&b->s, 0.50), p99 = hist_pct(&b->s, 0.99);
	const char *tname = target_label(b->o.target);

	printf("RESULT target=%s relays=%u mode=%s n=%u s=%u w=%u rate=%.0f secs=%.3f delivered=%" PRIu64
	       " mps=%.0f lost=%" PRIu64 " dup=%" PRIu64 " misrouted=%" PRIu64 " errors=%" PRIu64
	       " p50_us=%" PRIu64 " p99_us=%" PRIu64 " max_us=%" PRIu64
	       " peak_rss_kb=%ld target_cpu=%.1f gen_cpu=%.1f other_cpu=%.1f sent=%" PRIu64
	       " skipped=%" PRIu64 "\n",
	       tname, b->o.relays, b->o.rate > 0 ? "paced" : "sat", b->o.n, b->o.size, b->o.window, b->o.rate, secs,
	       b->s.win_recv, rate, b->s.lost, b->s.dup, b->s.misrouted,
	       b->s.errors + b->s.unexpected + b->s.closed, p50, p99, b->s.lat_max_us, hwm_kb, tcpu,
	       gcpu, other, b->s.sent, b->s.skipped);
	fflush(stdout);
	fprintf(stderr,
	        "chat-bench: %s %s N=%u S=%u W=%u%s: %.0f msgs/s delivered, p50 %" PRIu64
	        " us, p99 %" PRIu64 " us; lost %" PRIu64 ", dup %" PRIu64 ", misrouted %" PRIu64
	        "; %s CPU %.1f%%, peak RSS %ld KiB; generator CPU %.1f%%; others %.1f%%\n",
	        tname, b->o.rate > 0 ? "paced" : "saturation", b->o.n, b->o.size, b->o.window,
	        b->o.rate > 0 ? "" : " (W in flight)", rate, p50, p99, b->s.lost, b->s.dup,
	        b->s.misrouted, b->t.name, tcpu, hwm_kb, gcpu, other);
	if (b->first_error[0])
		fprintf(stderr, "chat-bench: first problem seen: %s\n", b->first_error);
	if (b->t.log_bytes)
		fprintf(stderr, "chat-bench: %s wrote %lu bytes to stderr; first of it:\n%s\n", b->t.name,
		        b->t.log_bytes, b->t.log);
}

static int run_cell(struct options *o)
{
	struct bench b = { .o = *o };
	struct sample s0 = { 0 }, s1 = { 0 };

	bench_init(&b, o->n);
	start_target(&b);
	if (is_relay(o)) {
		relay_login(&b, o->n);
		if (o->relays > 1)
			cluster_settle(&b);
		relay_pair(&b);
	} else {
		forwarder_pair(&b);
	}
	run(&b, &s0, &s1);
	long hwm = proc_status_kb(b.t.pid, "VmHWM");
	print_result(&b, &s0, &s1, hwm);
	/* Clients go first, so the relay has nobody to say goodbye to. */
	close_clients(&b);
	target_stop(&b.t);
	targets_stop(&b);
	state_dir_remove();
	bench_free(&b);
	return b.s.lost || b.s.dup || b.s.misrouted ? 3 : 0;
}

/* Relay RSS with no clients, then with each count of idle logged-in clients. */
static int run_idle(struct options *o)
{
	unsigned counts[16], ncounts = 0, max = 0;
	const char *p = o->idle_list;
	struct bench b;
	long base;

	while (*p && ncounts < 16) {
		char *e;
		unsigned long v = strtoul(p, &e, 10);
		if (e == p || v == 0 || v > 1000000 || (*e && *e != ','))
			fail("--idle-mem wants counts like 1000,5000, not '%s'", o->idle_list);
		counts[ncounts++] = (unsigned)v;
		if (v > max)
			max = (unsigned)v;
		p = *e ? e + 1 : e;
	}
	if (!ncounts)
		fail("--idle-mem wants counts like 1000,5000");
	o->n = max;
	if (!is_relay(o))
		fail("--idle-mem measures the relay: -t relay or -t relay-tls");
	raise_nofile(max);
	memset(&b, 0, sizeof(b));
	b.o = *o;
	bench_init(&b, max);
	start_target(&b);
	usleep(300000);
	base = proc_status_kb(b.t.pid, "VmRSS");
	printf("IDLEMEM n=0 rss_kb=%ld target=%s\n", base, target_label(o->target));
	unsigned prev_n = 0;
	long prev_rss = base;
	for (unsigned i = 0; i < ncounts; i++) {
		relay_login(&b, counts[i]);
		usleep(300000);
		poll_once(&b, 0);
		long rss = proc_status_kb(b.t.pid, "VmRSS");
		double per = (double)(rss - base) * 1024.0 / counts[i];
		double marg = counts[i] > prev_n ? (double)(rss - prev_rss) * 1024.0 / (counts[i] - prev_n) : 0;
		printf("IDLEMEM n=%u rss_kb=%ld base_kb=%ld per_client=%.0f marginal=%.0f target=%s\n",
		       counts[i], rss, base, per, marg, target_label(o->target));
		fprintf(stderr,
		        "chat-bench: %s: relay RSS %ld KiB with no client, %ld KiB with %u idle logged-in "
		        "clients: %.0f bytes per client (%.0f from %u to %u)\n",
		        target_label(o->target), base, rss, counts[i], per, marg, prev_n, counts[i]);
		prev_n = counts[i];
		prev_rss = rss;
	}
	fflush(stdout);
	close_clients(&b);
	target_stop(&b.t);
	state_dir_remove();
	bench_free(&b);
	return 0;
}

/* --handshakes N: P connections at a time, each one connect, (TLS
 * handshake,) HELLO, WELCOME, close (TLS close_notify first); HS_WARMUP of
 * them first, unmeasured.  Reports connections per second and the relay's
 * CPU time per connection over the N measured ones. */
static int run_handshakes(struct options *o)
{
	struct bench b;
	struct sample s0 = { 0 }, s1 = { 0 };
	struct chat_wbuf w;
	unsigned P = o->parallel;
	uint64_t end;

	if (!is_relay(o))
		fail("--handshakes measures the relay: -t relay-tls (or -t relay for plain TCP)");
	o->n = P;
	raise_nofile(P + HS_CLOSING_ROOM); /* the relay inherits it */
	memset(&b, 0, sizeof(b));
	b.o = *o;
	bench_init(&b, P);
	start_target(&b);
	b.phase = PH_HANDSHAKES;
	b.hs_total = HS_WARMUP + o->handshakes;
	b.nconnected = P; /* every slot, for close_clients */
	chat_wbuf_init(&w, 4096);
	end = now_ns() + (uint64_t)(o->setup_timeout * 1e9);
	while (b.hs_done < b.hs_total) {
		for (unsigned i = 0; i < P; i++) {
			struct client *c = &b.c[i];
			if (c->state == CS_LOGGED) {
				epoll_ctl(b.epfd, EPOLL_CTL_DEL, c->fd, NULL);
				client_close(&b, c, 1);
				if (++b.hs_done == HS_WARMUP)
					take_sample(&b, &s0);
				if (b.hs_done == b.hs_total)
					take_sample(&b, &s1);
			}
			if (c->state == CS_DEAD && b.hs_started < b.hs_total) {
				client_open(&b, c, 0, &w);
				b.hs_started++;
			}
		}
		if (b.hs_done == b.hs_total)
			break;
		if (now_ns() > end)
			fail("--handshakes timed out: %u of %u connections done after %.0f s (--setup-timeout)%s%s",
			     b.hs_done, b.hs_total, o->setup_timeout, b.t.log_len ? "; the relay said:\n" : "",
			     b.t.log);
		poll_once(&b, 50);
		target_check(&b.t);
	}
	chat_wbuf_free(&w);

	double secs = (double)(s1.t - s0.t) / 1e9;
	long hz = sysconf(_SC_CLK_TCK);
	double rcpu_s = (double)(s1.target_ticks - s0.target_ticks) / (double)hz;
	double gcpu_s = s1.self_cpu - s0.self_cpu;
	double other = 100.0 * (double)(s1.machine_ticks - s0.machine_ticks) / (double)hz / secs -
	               100.0 * (rcpu_s + gcpu_s) / secs;
	if (other < 0 && other > -15)
		other = 0;
	double per_s = secs > 0 ? o->handshakes / secs : 0;
	uint64_t p50 = hist_pct(&b.s, 0.50), p99 = hist_pct(&b.s, 0.99);
	printf("HANDSHAKES target=%s n=%u parallel=%u secs=%.3f per_s=%.0f relay_cpu_us=%.1f "
	       "gen_cpu_us=%.1f relay_cpu=%.1f gen_cpu=%.1f other_cpu=%.1f p50_us=%" PRIu64
	       " p99_us=%" PRIu64 " max_us=%" PRIu64 "\n",
	       target_label(o->target), o->handshakes, P, secs, per_s, 1e6 * rcpu_s / o->handshakes,
	       1e6 * gcpu_s / o->handshakes, 100.0 * rcpu_s / secs, 100.0 * gcpu_s / secs, other, p50,
	       p99, b.s.lat_max_us);
	fflush(stdout);
	fprintf(stderr,
	        "chat-bench: %s: %u connections (%s, HELLO/WELCOME, close), %u at a time: %.0f per "
	        "second; relay CPU %.1f us each (%.1f%% of a core), generator %.1f us each; "
	        "connect to WELCOME p50 %" PRIu64 " us, p99 %" PRIu64 " us\n",
	        target_label(o->target), o->handshakes,
	        o->target == TGT_RELAY_TLS ? "TCP + TLS 1.3 handshake" : "TCP only", P, per_s,
	        1e6 * rcpu_s / o->handshakes, 100.0 * rcpu_s / secs, 1e6 * gcpu_s / o->handshakes, p50,
	        p99);
	if (b.t.log_bytes)
		fprintf(stderr, "chat-bench: %s wrote %lu bytes to stderr; first of it:\n%s\n", b.t.name,
		        b.t.log_bytes, b.t.log);
	close_clients(&b);
	target_stop(&b.t);
	state_dir_remove();
	bench_free(&b);
	return 0;
}

/* ---- options */

static void usage(FILE *f)
{
	fprintf(f,
	        "Usage: chat-bench [OPTION]...\n"
	        "Load generator for chat-relay (and chat-bench-forwarder, the ceiling).  Starts the\n"
	        "target itself on 127.0.0.1, runs one cell, prints one RESULT line on stdout.\n\n"
	        "  -t, --target relay|relay-tls|forwarder   what to load (default relay); relay-tls:\n"
	        "                         the relay with relay.transport=tls, clients speak TLS 1.3\n"
	        "  -n, --clients N        client connections, even (default 100)\n"
	        "  -s, --size S           payload bytes per message, >= %d (default 100)\n"
	        "  -w, --window W         messages in flight per client (default 1); with --rate,\n"
	        "                         the most a client may have in flight before sends are skipped\n"
	        "  -r, --rate R           paced: R messages/s over all clients (default: saturation)\n"
	        "      --warmup SEC       warm-up, not measured (default 3)\n"
	        "      --duration SEC     measured window (default 5)\n"
	        "      --drain SEC        most time to wait for messages in flight at the end (default 3)\n"
	        "      --setup-timeout SEC  most time for connecting and pairing (default 60)\n"
	        "      --idle-mem N[,N..] measure relay RSS with 0 and N idle logged-in clients\n"
	        "                         (-t relay or relay-tls)\n"
	        "      --handshakes N     connect, HELLO/WELCOME, close, N times (after %d unmeasured):\n"
	        "                         connections/s and relay CPU per connection (-t relay-tls:\n"
	        "                         with the TLS handshake; -t relay: plain TCP)\n"
	        "      --parallel P       --handshakes: P connections at once (1..%d, default 1)\n"
	        "      --relay PATH       chat-relay binary (default: next to chat-bench)\n"
	        "      --forwarder PATH   chat-bench-forwarder binary (default: next to chat-bench)\n"
	        "      --plugin-dir DIR   relay plugin directory (default: ../plugins from chat-bench)\n"
	        "      --config FILE      relay configuration (default: the source tree's chat.ini)\n"
	        "      --suite NAME       suite named in HELLO/ANSWER (default rc4dh)\n"
	        "      --relays N         -t relay: N relays (1..%d) sharing one redis-server\n"
	        "                         (relay.cluster); pair k sits on relays k and k+1 mod N,\n"
	        "                         so every message crosses relays; target CPU is all relays'\n"
	        "      --redis PATH       redis-server binary (default /usr/bin/redis-server)\n"
	        "      --pin              run the generator on CPU 0 and the target on CPU 1\n"
	        "  -h, --help\n",
	        PAYLOAD_HDR, HS_WARMUP, HS_PARALLEL_MAX, MAX_RELAYS);
}

static double parse_secs(const char *s, const char *what)
{
	char *e;
	double v = strtod(s, &e);

	if (e == s || *e || v < 0 || v > 3600)
		fail("%s wants seconds (0..3600), not '%s'", what, s);
	return v;
}

static unsigned parse_uint(const char *s, const char *what, unsigned lo, unsigned hi)
{
	char *e;
	unsigned long v = strtoul(s, &e, 10);

	if (e == s || *e || v < lo || v > hi)
		fail("%s wants a number in %u..%u, not '%s'", what, lo, hi, s);
	return (unsigned)v;
}

/* Files next to our own executable, as the build lays them out. */
static const char *beside_self(const char *rel, const char *fallback)
{
	static char bufs[3][PATH_MAX];
	static int next;
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0)
		return fallback;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (!slash)
		return fallback;
	*slash = '\0';
	char *buf = bufs[next++ % 3];
	size_t dl = strlen(self), rl = strlen(rel);
	if (dl + 1 + rl + 1 > PATH_MAX)
		return fallback;
	memcpy(buf, self, dl);
	buf[dl] = '/';
	memcpy(buf + dl + 1, rel, rl + 1);
	return buf;
}

int main(int argc, char **argv)
{
	enum { O_WARMUP = 1000, O_DURATION, O_DRAIN, O_SETUP, O_IDLE, O_RELAY, O_FWD, O_PLUGINS,
	       O_CONFIG, O_SUITE, O_PIN, O_HANDSHAKES, O_PARALLEL, O_RELAYS, O_REDIS };
	static const struct option lopts[] = {
		{ "target", required_argument, NULL, 't' },
		{ "clients", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 's' },
		{ "window", required_argument, NULL, 'w' },
		{ "rate", required_argument, NULL, 'r' },
		{ "warmup", required_argument, NULL, O_WARMUP },
		{ "duration", required_argument, NULL, O_DURATION },
		{ "drain", required_argument, NULL, O_DRAIN },
		{ "setup-timeout", required_argument, NULL, O_SETUP },
		{ "idle-mem", required_argument, NULL, O_IDLE },
		{ "relay", required_argument, NULL, O_RELAY },
		{ "forwarder", required_argument, NULL, O_FWD },
		{ "plugin-dir", required_argument, NULL, O_PLUGINS },
		{ "config", required_argument, NULL, O_CONFIG },
		{ "suite", required_argument, NULL, O_SUITE },
		{ "pin", no_argument, NULL, O_PIN },
		{ "relays", required_argument, NULL, O_RELAYS },
		{ "redis", required_argument, NULL, O_REDIS },
		{ "handshakes", required_argument, NULL, O_HANDSHAKES },
		{ "parallel", required_argument, NULL, O_PARALLEL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct options o = {
		.target = TGT_RELAY, .n = 100, .size = 100, .window = 1, .rate = 0,
		.warmup = 3, .duration = 5, .drain = 3, .setup_timeout = 60, .suite = "rc4dh",
		.parallel = 1, .relays = 1, .redis = "/usr/bin/redis-server",
		.config = CHAT_BENCH_SOURCE_DIR "/chat.ini",
	};
	int opt;

	o.relay = beside_self("chat-relay", "chat-relay");
	o.forwarder = beside_self("chat-bench-forwarder", "chat-bench-forwarder");
	o.plugin_dir = beside_self("../plugins", CHAT_BENCH_PLUGIN_DIR);
	while ((opt = getopt_long(argc, argv, "t:n:s:w:r:h", lopts, NULL)) != -1) {
		switch (opt) {
		case 't':
			if (strcmp(optarg, "relay") == 0)
				o.target = TGT_RELAY;
			else if (strcmp(optarg, "relay-tls") == 0)
				o.target = TGT_RELAY_TLS;
			else if (strcmp(optarg, "forwarder") == 0)
				o.target = TGT_FORWARDER;
			else
				fail("--target is relay, relay-tls or forwarder, not '%s'", optarg);
			break;
		case 'n': o.n = parse_uint(optarg, "--clients", 2, 1000000); break;
		case 's': o.size = parse_uint(optarg, "--size", PAYLOAD_HDR, 60000); break;
		case 'w': o.window = parse_uint(optarg, "--window", 1, 4096); break;
		case 'r': o.rate = parse_uint(optarg, "--rate", 1, 100000000); break;
		case O_WARMUP: o.warmup = parse_secs(optarg, "--warmup"); break;
		case O_DURATION: o.duration = parse_secs(optarg, "--duration"); break;
		case O_DRAIN: o.drain = parse_secs(optarg, "--drain"); break;
		case O_SETUP: o.setup_timeout = parse_secs(optarg, "--setup-timeout"); break;
		case O_IDLE: o.idle_list = optarg; break;
		case O_RELAY: o.relay = optarg; break;
		case O_FWD: o.forwarder = optarg; break;
		case O_PLUGINS: o.plugin_dir = optarg; break;
		case O_CONFIG: o.config = optarg; break;
		case O_SUITE: o.suite = optarg; break;
		case O_PIN: o.pin = 1; break;
		case O_RELAYS: o.relays = parse_uint(optarg, "--relays", 1, MAX_RELAYS); break;
		case O_REDIS: o.redis = optarg; break;
		case O_HANDSHAKES: o.handshakes = parse_uint(optarg, "--handshakes", 1, 100000); break;
		case O_PARALLEL: o.parallel = parse_uint(optarg, "--parallel", 1, HS_PARALLEL_MAX); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (o.n % 2)
		fail("--clients must be even: clients 2k and 2k+1 talk to each other");
	if (o.duration <= 0)
		fail("--duration must be more than 0");
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	if (o.pin) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(0, &set);
		if (sched_setaffinity(0, sizeof(set), &set) != 0)
			fail("--pin: sched_setaffinity: %s", strerror(errno));
	}
	if (o.relays > 1 && (o.target != TGT_RELAY || o.idle_list || o.handshakes))
		fail("--relays is for -t relay cells (throughput and latency)");
	if (o.idle_list && o.handshakes)
		fail("--idle-mem and --handshakes are separate runs");
	if (o.idle_list)
		return run_idle(&o);
	if (o.handshakes)
		return run_handshakes(&o);
	raise_nofile(o.n);
	return run_cell(&o);
}
