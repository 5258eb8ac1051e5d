/* chat-bench-accounts: SCRAM logins per second and the offline queue's
 * throughput at a real chat-relay with a database, on 127.0.0.1.
 *
 *   chat-bench-accounts [--logins N] [--workers W] [--messages M] [--size BYTES]
 *                       [--store postgresql://...]
 *
 * 1. Logins: W processes log in and out over and over (HELLO, AUTH,
 *    AUTH_FINAL, server signature checked, close), N in all.  The client side
 *    of SCRAM costs a PBKDF2 of 4096 iterations per login, so the clients,
 *    not the relay, set the pace on a small machine: the relay's CPU time per
 *    login is reported too.
 * 2. Offline queue: one user stores M messages of BYTES for an offline
 *    friend (64 in flight; each is acknowledged only after its commit), then
 *    the friend logs in and fetches and acknowledges all of them.
 * The store is a fresh SQLite file, or with --store the PostgreSQL database
 * named (it should be empty: bench/run makes a throwaway server); the
 * relay's CPU time does not include the PostgreSQL server's.
 * Prints RESULT lines; bounded in count and time (every read times out). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "relayproc.h"
#include "store.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime + stime of pid, in seconds */
static double cpu_s(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "r")))
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static pid_t relay_pid; /* stopped by die() */

static void die(const char *what)
{
	fprintf(stderr, "chat-bench-accounts: %s\n", what);
	if (relay_pid > 0) {
		kill(relay_pid, SIGKILL);
		waitpid(relay_pid, NULL, 0);
	}
	exit(1);
}

static unsigned arg(int argc, char **argv, const char *name, unsigned def)
{
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], name))
			return (unsigned)strtoul(argv[i + 1], NULL, 10);
	return def;
}

static const char *sarg(int argc, char **argv, const char *name)
{
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], name))
			return argv[i + 1];
	return NULL;
}

static void bench_logins(const struct relay *r, unsigned n, unsigned workers)
{
	double t0 = now_s(), c0 = cpu_s(r->pid);
	pid_t kids[64];

	for (unsigned w = 0; w < workers; w++) {
		kids[w] = fork();
		if (kids[w] == 0) {
			char name[32];
			snprintf(name, sizeof(name), "user%u", w);
			for (unsigned i = w; i < n; i += workers) {
				int fd = connect_as(r, name, "benchpw");
				if (fd < 0)
					_exit(1);
				close(fd);
			}
			_exit(0);
		}
	}
	int bad = 0;
	for (unsigned w = 0; w < workers; w++) {
		int status;
		waitpid(kids[w], &status, 0);
		bad += !WIFEXITED(status) || WEXITSTATUS(status);
	}
	double secs = now_s() - t0, cpu = cpu_s(r->pid) - c0;
	if (bad)
		die("a login failed");
	printf("RESULT bench=logins n=%u workers=%u secs=%.3f logins_per_s=%.0f relay_cpu_us_per_login=%.1f\n",
	       n, workers, secs, n / secs, cpu * 1e6 / n);
}

static void bench_queue(const struct relay *r, unsigned m, unsigned size)
{
	char *payload = malloc(size + 1);
	struct chat_msg msg, in;
	uint64_t id;

	if (!payload)
		die("out of memory");
	memset(payload, 'x', size);
	payload[size] = '\0';
	/* user0 and user1 agree a conversation while user1 is offline */
	int a = connect_as(r, "user0", "benchpw");
	begin(CHAT_MSG_TALK);
	chat_put_str8(&wb, "user1");
	if (a < 0 || !request_done(a))
		die("offer failed");
	int b = connect_as(r, "user1", "benchpw");
	if (b < 0 || !next_mail(b, &in, &id, 1) || in.type != CHAT_MSG_OFFERED)
		die("offer not delivered");
	put_answer("user0", 1, "rc4dh", "");
	if (send_msg(b) || !next_mail(a, &in, &id, 1))
		die("answer not delivered");
	close(b);
	usleep(100000);

	double t0 = now_s(), c0 = cpu_s(r->pid);
	unsigned sent = 0, stored = 0;
	while (stored < m) {
		while (sent < m && sent - stored < 64) {
			begin(CHAT_MSG_SEND);
			chat_put_str8(&wb, "user1");
			chat_put_u64(&wb, sent + 1);
			chat_put_bytes(&wb, size, (const uint8_t *)payload);
			if (send_msg(a))
				die("send failed");
			sent++;
		}
		if (read_msg(a, &msg))
			die("relay stopped answering");
		if (msg.type == CHAT_MSG_ERROR)
			die(msg.text);
		if (msg.type == CHAT_MSG_STORED)
			stored++;
	}
	double t1 = now_s(), c1 = cpu_s(r->pid);
	close(a);
	printf("RESULT bench=queue-store messages=%u size=%u secs=%.3f stored_per_s=%.0f relay_cpu_us_per_msg=%.1f\n",
	       m, size, t1 - t0, m / (t1 - t0), (c1 - c0) * 1e6 / m);

	b = connect_as(r, "user1", "benchpw");
	if (b < 0)
		die("user1 cannot log in");
	unsigned got = 0;
	while (got < m) {
		if (!next_mail(b, &in, &id, 1))
			die("delivery stopped");
		got += in.type == CHAT_MSG_DELIVER;
	}
	/* one WHO round trip: every ACK before it has been processed */
	begin(CHAT_MSG_WHO);
	if (send_msg(b) || expect_type(b, CHAT_MSG_WHO_LIST, &msg))
		die("relay stopped answering");
	double t2 = now_s(), c2 = cpu_s(r->pid);
	close(b);
	printf("RESULT bench=queue-deliver messages=%u size=%u secs=%.3f delivered_per_s=%.0f relay_cpu_us_per_msg=%.1f\n",
	       m, size, t2 - t1, m / (t2 - t1), (c2 - c1) * 1e6 / m);
	free(payload);
}

int main(int argc, char **argv)
{
	unsigned logins = arg(argc, argv, "--logins", 2000), workers = arg(argc, argv, "--workers", 2);
	unsigned messages = arg(argc, argv, "--messages", 20000), size = arg(argc, argv, "--size", 256);
	const char *store = sarg(argc, argv, "--store");
	char dir[] = "/tmp/chat-bench-acc.XXXXXX", set[1100], rm[300];
	struct relay r;
	unsigned code;

	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		printf("usage: chat-bench-accounts [--logins N] [--workers W] [--messages M] [--size BYTES]\n"
		       "                           [--store postgresql://USER@HOST:PORT/DB]\n");
		return 0;
	}
	if (workers < 1 || workers > 64 || size < 1 || size > 60000 || logins < 1 || messages < 1)
		die("arguments out of range (workers 1..64, size 1..60000)");
	if (!mkdtemp(dir))
		die("cannot make a temporary directory");
	if (store && strlen(store) > 1000)
		die("--store: too long");
	if (store)
		snprintf(set, sizeof(set), "relay.store=%s", store);
	else
		snprintf(set, sizeof(set), "relay.database=%s/relay.db", dir);
	printf("RESULT bench=store kind=%s\n", store ? "postgresql" : "sqlite");
	chat_wbuf_init(&wb, 1 << 17);
	if (relay_start(&r, "127.0.0.1:0", "--set", store ? "relay.database=" : "relay.store=", "--set", set, "--set",
	                "relay.queue_max_messages=1000000", "--set", "relay.queue_max_bytes=1073741824",
	                NULL) != 0)
		die("the relay did not start");
	relay_pid = r.pid;
	/* The relay logs every login: keep its stderr pipe drained. */
	pid_t drain = fork();
	if (drain == 0) {
		char buf[65536];
		while (read(r.err_fd, buf, sizeof(buf)) > 0)
			;
		_exit(0);
	}
	int fd = dial(&r);
	if (fd < 0 || !hello(fd))
		die("cannot reach the relay");
	for (unsigned w = 0; w < workers || w < 2; w++) {
		char name[32];
		snprintf(name, sizeof(name), "user%u", w);
		if (do_register(fd, name, "benchpw", &code) != CHAT_MSG_DONE)
			die("registration failed");
	}
	close(fd);
	bench_logins(&r, logins, workers);
	bench_queue(&r, messages, size);
	struct stat st;
	char db[300];
	snprintf(db, sizeof(db), "%s/relay.db", dir);
	if (!store && stat(db, &st) == 0)
		printf("RESULT bench=database bytes=%lld\n", (long long)st.st_size);
	int stopped = relay_stop(&r);
	relay_pid = 0;
	if (stopped != 0)
		die("the relay did not stop cleanly");
	waitpid(drain, NULL, 0);
	chat_wbuf_free(&wb);
	snprintf(rm, sizeof(rm), "rm -rf %s", dir);
	return system(rm) == 0 ? 0 : 1;
}
