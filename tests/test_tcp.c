/* The TCP transport plugin, loaded straight with dlopen (not through the
 * core's loader) and driven over loopback only: 127.0.0.1 and ::1. */
#define _GNU_SOURCE

#include "testutils.h"
#include "paths.h"

#include <chat/plugin.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BULK_LEN (8u << 20)
#define BULK_LIMIT_MS 20000
#define WAIT_MS 5000

static const struct chat_transport_ops *ops;

/* ---- a minimal host ---- */

static int log_errors;       /* CHAT_LOG_ERROR lines seen */
static char last_log[512];
static const char *cfg_backlog; /* NULL: the plugin's default */
static const char *cfg_nodelay;

static int h_random(const struct chat_host *h, size_t len, uint8_t *dst)
{
	(void)h;
	while (len) {
		ssize_t n = getrandom(dst, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return CHAT_ERR_RANDOM;
		}
		dst += n;
		len -= (size_t)n;
	}
	return CHAT_OK;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t h_monotonic_ms(const struct chat_host *h)
{
	(void)h;
	return now_ms();
}

static int64_t h_unix_ms(const struct chat_host *h)
{
	struct timespec ts;

	(void)h;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void h_log(const struct chat_host *h, int level, const char *fmt, ...)
	CHAT_PRINTF(3, 4);

static void h_log(const struct chat_host *h, int level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	va_list ap;

	(void)h;
	va_start(ap, fmt);
	vsnprintf(last_log, sizeof(last_log), fmt, ap);
	va_end(ap);
	if (level == CHAT_LOG_ERROR)
		log_errors++;
	fprintf(stderr, "  [tcp %s] %s\n",
	        level >= 0 && level <= 3 ? names[level] : "?", last_log);
}

static const char *h_config_get(const struct chat_host *h, const char *key)
{
	(void)h;
	if (!strcmp(key, "backlog"))
		return cfg_backlog;
	if (!strcmp(key, "nodelay"))
		return cfg_nodelay;
	return NULL;
}

static int h_memeq(const void *a, const void *b, size_t n)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t d = 0;

	for (size_t i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

static void h_wipe(void *p, size_t n)
{
	explicit_bzero(p, n);
}

static const struct chat_host host = {
	.size = sizeof(struct chat_host),
	.abi_major = CHAT_ABI_MAJOR,
	.abi_minor = CHAT_ABI_MINOR,
	.random = h_random,
	.monotonic_ms = h_monotonic_ms,
	.unix_ms = h_unix_ms,
	.log = h_log,
	.config_get = h_config_get,
	.memeq = h_memeq,
	.wipe = h_wipe,
};

/* ---- helpers ---- */

/* revents, or 0 on timeout. */
static short wait_fd(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n;

	do
		n = poll(&p, 1, ms);
	while (n < 0 && errno == EINTR);
	return n > 0 ? p.revents : 0;
}

static unsigned addr_port(const char *a)
{
	const char *c = strrchr(a, ':');

	return c ? (unsigned)strtoul(c + 1, NULL, 10) : 0;
}

static bool starts_with(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

static int sockopt_int(int fd, int level, int name)
{
	int v = -1;
	socklen_t l = sizeof(v);

	if (getsockopt(fd, level, name, &v, &l) < 0)
		return -1;
	return v;
}

static void check_fd_flags(int fd)
{
	CHECK(fd >= 0);
	CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

/* Finish an in-progress connect, waiting for writability. */
static int finish(void *c, int rc)
{
	uint64_t end = now_ms() + WAIT_MS;

	while (rc == CHAT_ERR_INPROGRESS && now_ms() < end) {
		wait_fd(ops->fd(c), POLLOUT, 200);
		rc = ops->connect_finish(c);
	}
	return rc;
}

static int accept_one(void *l, void **s)
{
	uint64_t end = now_ms() + WAIT_MS;
	int rc;

	do {
		wait_fd(ops->fd(l), POLLIN, 200);
		rc = ops->accept(l, s);
	} while (rc == CHAT_ERR_AGAIN && now_ms() < end);
	return rc;
}

/* Listen on laddr, connect to what it reports, accept.  Returns listen's
 * error untouched (nothing allocated) so callers can skip IPv6. */
static int make_pair(const char *laddr, void **lp, void **cp, void **sp)
{
	char a[CHAT_ADDR_MAX];
	int rc;

	*lp = *cp = *sp = NULL;
	rc = ops->listen(&host, laddr, lp);
	if (rc)
		return rc;
	CHECK(*lp != NULL);
	CHECK_EQ_INT(ops->address(*lp, 1, sizeof(a), a), CHAT_OK);
	CHECK(addr_port(a) != 0);

	rc = ops->connect(&host, a, cp);
	CHECK(rc == CHAT_OK || rc == CHAT_ERR_INPROGRESS);
	if (rc != CHAT_OK && rc != CHAT_ERR_INPROGRESS)
		goto fail;
	CHECK(*cp != NULL);
	CHECK_EQ_INT(finish(*cp, rc), CHAT_OK);
	CHECK_EQ_INT(accept_one(*lp, sp), CHAT_OK);
	if (!*sp)
		goto fail;
	return CHAT_OK;
fail:
	ops->close(*cp);
	ops->listener_close(*lp);
	*lp = *cp = NULL;
	return CHAT_ERR_FAILED;
}

static void free_pair(void *l, void *c, void *s)
{
	ops->close(s);
	ops->close(c);
	ops->listener_close(l);
}

/* Send msg from one end and read it whole at the other. */
static void transfer(void *from, void *to, const char *msg)
{
	size_t len = strlen(msg), got = 0, n;
	uint8_t buf[256];
	uint64_t end = now_ms() + WAIT_MS;
	int rc;

	CHECK_EQ_INT(ops->write(from, len, (const uint8_t *)msg, &n), CHAT_OK);
	CHECK_EQ_INT(n, len);
	while (got < len && now_ms() < end) {
		wait_fd(ops->fd(to), POLLIN, 200);
		rc = ops->read(to, sizeof(buf) - got, buf + got, &n);
		if (rc == CHAT_ERR_AGAIN)
			continue;
		CHECK_EQ_INT(rc, CHAT_OK);
		if (rc)
			break;
		CHECK(n > 0);
		got += n;
	}
	CHECK_EQ_INT(got, len);
	if (got == len)
		CHECK_MEM(buf, msg, len);
}

/* ---- tests ---- */

static void test_descriptor(const struct chat_plugin *p)
{
	CHECK(p != NULL);
	if (!p)
		return;
	CHECK_EQ_INT(p->abi_major, CHAT_ABI_MAJOR);
	CHECK(p->abi_minor <= CHAT_ABI_MINOR);
	CHECK_EQ_INT(p->size, sizeof(struct chat_plugin));
	CHECK_EQ_INT(p->kind, CHAT_PLUGIN_TRANSPORT);
	CHECK_EQ_INT(p->flags, 0);
	CHECK(p->name && !strcmp(p->name, "tcp"));
	CHECK(p->version && !strcmp(p->version, "1.0.0"));
	CHECK(p->summary && *p->summary && !strchr(p->summary, '\n'));
	for (const struct chat_config_key *k = p->config_keys; k && k->name; k++) {
		CHECK(k->type >= CHAT_CONFIG_STRING && k->type <= CHAT_CONFIG_BOOL);
		CHECK(k->def != NULL);
		CHECK(k->help != NULL);
		if (k->type == CHAT_CONFIG_INT)
			CHECK(k->min <= k->max);
	}

	const struct chat_transport_ops *o = p->ops.transport;

	CHECK(o != NULL);
	if (!o)
		return;
	CHECK_EQ_INT(o->size, sizeof(struct chat_transport_ops));
	CHECK(o->listen && o->accept && o->connect && o->connect_finish);
	CHECK(o->read && o->write && o->fd && o->address);
	CHECK(o->close && o->listener_close);
}

/* listen/connect/accept, data both ways, addresses, socket options. */
static void test_basic(const char *laddr, const char *prefix, bool v6)
{
	void *l, *c, *s;
	char la[CHAT_ADDR_MAX], a[CHAT_ADDR_MAX], b[CHAT_ADDR_MAX];
	int errors = log_errors, rc;

	rc = make_pair(laddr, &l, &c, &s);
	if (v6 && (rc == CHAT_ERR_ADDRESS || rc == CHAT_ERR_IO)) {
		printf("note: IPv6 loopback unavailable (%s), skipping the [::1] part\n",
		       chat_strerror(rc));
		return;
	}
	CHECK_EQ_INT(rc, CHAT_OK);
	if (rc)
		return;

	CHECK_EQ_INT(ops->address(l, 1, sizeof(la), la), CHAT_OK);
	CHECK(starts_with(la, prefix));
	CHECK(addr_port(la) > 0 && addr_port(la) <= 65535);
	printf("%s: listening on %s\n", laddr, la);

	/* A listener has no peer. */
	strcpy(a, "junk");
	CHECK_EQ_INT(ops->address(l, 0, sizeof(a), a), CHAT_ERR_INVALID);
	CHECK_EQ_INT(a[0], '\0');

	/* The client's peer and the server's local end are the listener's address. */
	CHECK_EQ_INT(ops->address(c, 0, sizeof(a), a), CHAT_OK);
	CHECK(!strcmp(a, la));
	CHECK_EQ_INT(ops->address(s, 1, sizeof(a), a), CHAT_OK);
	CHECK(!strcmp(a, la));
	/* And the other way round. */
	CHECK_EQ_INT(ops->address(c, 1, sizeof(a), a), CHAT_OK);
	CHECK_EQ_INT(ops->address(s, 0, sizeof(b), b), CHAT_OK);
	CHECK(!strcmp(a, b));
	CHECK(starts_with(a, prefix));
	CHECK(addr_port(a) != addr_port(la));
	printf("%s: client %s -> server %s\n", laddr, a, la);

	/* Exactly fitting, one byte short. */
	size_t need = strlen(a) + 1;

	CHECK_EQ_INT(ops->address(c, 1, need, b), CHAT_OK);
	CHECK(!strcmp(a, b));
	strcpy(b, "junk");
	CHECK_EQ_INT(ops->address(c, 1, need - 1, b), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(b[0], '\0');
	CHECK_EQ_INT(ops->address(c, 0, 4, b), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(ops->address(c, 0, 0, b), CHAT_ERR_NOSPACE);

	check_fd_flags(ops->fd(l));
	check_fd_flags(ops->fd(c));
	check_fd_flags(ops->fd(s));
	CHECK(ops->fd(c) != ops->fd(s) && ops->fd(l) != ops->fd(c));
	CHECK(sockopt_int(ops->fd(l), SOL_SOCKET, SO_REUSEADDR) > 0);
	if (v6)
		CHECK(sockopt_int(ops->fd(l), IPPROTO_IPV6, IPV6_V6ONLY) > 0);
	CHECK(sockopt_int(ops->fd(c), IPPROTO_TCP, TCP_NODELAY) > 0);
	CHECK(sockopt_int(ops->fd(s), IPPROTO_TCP, TCP_NODELAY) > 0);

	transfer(c, s, "hello from the client");
	transfer(s, c, "and hello back from the server");
	transfer(c, s, "x");

	/* Nothing more is pending. */
	void *none = &none;

	CHECK_EQ_INT(ops->accept(l, &none), CHAT_ERR_AGAIN);
	CHECK(none == NULL);

	free_pair(l, c, s);
	CHECK_EQ_INT(log_errors, errors);
}

static uint8_t pattern(size_t i)
{
	/* Not periodic at any small power of two, so a lost or repeated chunk shows. */
	return (uint8_t)(i ^ (i >> 8) * 7 ^ (i >> 16) * 13);
}

static void test_bulk(void)
{
	void *l, *c, *s;
	uint8_t *src = malloc(BULK_LEN), *dst = malloc(BULK_LEN);
	size_t sent = 0, rcvd = 0, n;
	unsigned again = 0, shorts = 0, reads = 0;
	uint64_t start = now_ms(), end = start + BULK_LIMIT_MS;
	bool failed = false;
	int rc;

	CHECK(src && dst);
	if (!src || !dst)
		goto out_mem;
	for (size_t i = 0; i < BULK_LEN; i++)
		src[i] = pattern(i);
	memset(dst, 0, BULK_LEN);

	CHECK_EQ_INT(make_pair("127.0.0.1:0", &l, &c, &s), CHAT_OK);
	if (!s)
		goto out_mem;

	test_srand(0x7c9f00d5);
	while (rcvd < BULK_LEN && !failed) {
		if (now_ms() > end) {
			fprintf(stderr, "bulk: timed out with %zu/%u bytes received\n", rcvd,
			        BULK_LEN);
			CHECK(!"bulk transfer finished in time");
			break;
		}
		/* Write regardless of readiness so a full buffer shows as AGAIN. */
		if (sent < BULK_LEN) {
			size_t want = 1 + test_rand() % (1u << 20);

			if (want > BULK_LEN - sent)
				want = BULK_LEN - sent;
			rc = ops->write(c, want, src + sent, &n);
			if (rc == CHAT_OK) {
				CHECK(n > 0 && n <= want);
				shorts += n < want;
				sent += n;
			} else if (rc == CHAT_ERR_AGAIN) {
				CHECK_EQ_INT(n, 0);
				again++;
			} else {
				CHECK_EQ_INT(rc, CHAT_OK);
				failed = true;
			}
		}
		for (int k = 0; k < 16 && !failed; k++) {
			size_t want = 1 + test_rand() % 4096;

			if (want > BULK_LEN - rcvd)
				want = BULK_LEN - rcvd;
			if (!want)
				break;
			rc = ops->read(s, want, dst + rcvd, &n);
			if (rc == CHAT_ERR_AGAIN)
				break;
			if (rc != CHAT_OK) {
				CHECK_EQ_INT(rc, CHAT_OK);
				failed = true;
				break;
			}
			CHECK(n > 0 && n <= want);
			rcvd += n;
			reads++;
		}

		struct pollfd p[2] = {
			{ .fd = ops->fd(s), .events = POLLIN },
			{ .fd = ops->fd(c), .events = sent < BULK_LEN ? POLLOUT : 0 },
		};

		if (poll(p, 2, 200) < 0 && errno != EINTR) {
			CHECK(!"poll failed");
			break;
		}
	}
	CHECK_EQ_INT(sent, BULK_LEN);
	CHECK_EQ_INT(rcvd, BULK_LEN);
	if (rcvd == BULK_LEN)
		CHECK_MEM(dst, src, BULK_LEN);
	/* The receiver is far slower than the sender: the buffer must fill. */
	CHECK(again > 0);
	printf("bulk: %u bytes in %llu ms, %u reads, %u short writes, %u EAGAIN writes\n",
	       BULK_LEN, (unsigned long long)(now_ms() - start), reads, shorts, again);
	free_pair(l, c, s);
out_mem:
	free(src);
	free(dst);
}

/* Orderly close: AGAIN while empty, CLOSED at the end, writes then fail. */
static void test_eof(void)
{
	void *l, *c, *s;
	uint8_t buf[65536] = { 0 };
	size_t n = 99;
	uint64_t end;
	int rc;

	CHECK_EQ_INT(make_pair("127.0.0.1:0", &l, &c, &s), CHAT_OK);
	if (!s)
		return;

	CHECK_EQ_INT(ops->read(s, sizeof(buf), buf, &n), CHAT_ERR_AGAIN);
	CHECK_EQ_INT(n, 0);
	n = 99;
	CHECK_EQ_INT(ops->read(s, 0, buf, &n), CHAT_ERR_INVALID);
	CHECK_EQ_INT(n, 0);
	n = 99;
	CHECK_EQ_INT(ops->write(c, 0, buf, &n), CHAT_OK);
	CHECK_EQ_INT(n, 0);
	n = 99;
	CHECK_EQ_INT(ops->write(c, 0, NULL, &n), CHAT_OK);
	CHECK_EQ_INT(n, 0);

	transfer(c, s, "last words");
	ops->close(c);
	c = NULL;

	CHECK(wait_fd(ops->fd(s), POLLIN, WAIT_MS) & POLLIN);
	CHECK_EQ_INT(ops->read(s, sizeof(buf), buf, &n), CHAT_ERR_CLOSED);
	CHECK_EQ_INT(ops->read(s, sizeof(buf), buf, &n), CHAT_ERR_CLOSED);

	/* The first write after the close is accepted by our kernel; the peer's
	 * kernel answers with RST and a later write fails.  SIGPIPE is at its
	 * default (terminate), so raising it would kill this test. */
	end = now_ms() + WAIT_MS;
	do {
		rc = ops->write(s, sizeof(buf), buf, &n);
		if (rc == CHAT_OK || rc == CHAT_ERR_AGAIN)
			wait_fd(ops->fd(s), POLLOUT, 20);
	} while ((rc == CHAT_OK || rc == CHAT_ERR_AGAIN) && now_ms() < end);
	CHECK(rc == CHAT_ERR_CLOSED || rc == CHAT_ERR_RESET);
	printf("write after peer close: %s\n", chat_strerror(rc));

	free_pair(l, c, s);
}

/* An abortive close (SO_LINGER 0) reaches the reader as RESET. */
static void test_reset(void)
{
	void *l, *c, *s;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	uint8_t buf[64];
	size_t n;
	int rc;

	CHECK_EQ_INT(make_pair("127.0.0.1:0", &l, &c, &s), CHAT_OK);
	if (!s)
		return;
	CHECK(setsockopt(ops->fd(c), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
	ops->close(c);
	c = NULL;

	CHECK(wait_fd(ops->fd(s), POLLIN, WAIT_MS) != 0);
	CHECK_EQ_INT(ops->read(s, sizeof(buf), buf, &n), CHAT_ERR_RESET);
	rc = ops->write(s, 3, (const uint8_t *)"abc", &n);
	CHECK(rc == CHAT_ERR_CLOSED || rc == CHAT_ERR_RESET);
	/* The peer's address is still known after the reset. */
	CHECK_EQ_INT(ops->address(s, 0, sizeof(buf), (char *)buf), CHAT_OK);
	CHECK(starts_with((char *)buf, "127.0.0.1:"));
	free_pair(l, c, s);
}

static void test_addrinuse(void)
{
	void *l = NULL, *l2 = &l2;
	char a[CHAT_ADDR_MAX];

	CHECK_EQ_INT(ops->listen(&host, "127.0.0.1:0", &l), CHAT_OK);
	if (!l)
		return;
	CHECK_EQ_INT(ops->address(l, 1, sizeof(a), a), CHAT_OK);
	CHECK_EQ_INT(ops->listen(&host, a, &l2), CHAT_ERR_ADDRINUSE);
	CHECK(l2 == NULL);
	CHECK_STR_CONTAINS(last_log, a);
	ops->listener_close(l);
}

/* A port that was just free: bind an ephemeral port and let it go. */
static unsigned free_port(int family)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	unsigned port = 0;
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return 0;
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		sl = sizeof(*s6);
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) == 0 &&
	    getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
		                               : ((struct sockaddr_in6 *)&ss)->sin6_port);
	close(fd);
	return port;
}

static void test_refused(int family)
{
	const char *fmt = family == AF_INET ? "127.0.0.1:%u" : "[::1]:%u";
	unsigned port = free_port(family);
	char a[CHAT_ADDR_MAX], b[CHAT_ADDR_MAX];
	void *c = &c;
	int rc;

	if (!port) {
		CHECK(family == AF_INET6);
		printf("note: no IPv6 loopback, skipping refused [::1]\n");
		return;
	}
	snprintf(a, sizeof(a), fmt, port);
	rc = ops->connect(&host, a, &c);
	if (rc == CHAT_ERR_INPROGRESS) {
		CHECK(c != NULL);
		/* The peer address is known while connecting. */
		CHECK_EQ_INT(ops->address(c, 0, sizeof(b), b), CHAT_OK);
		CHECK(!strcmp(a, b));
		rc = finish(c, rc);
		/* SO_ERROR is consumed by the first look; the result must stick. */
		CHECK_EQ_INT(ops->connect_finish(c), rc);
		ops->close(c);
		printf("connect %s: refused after connect_finish\n", a);
	} else {
		CHECK(c == NULL);
		printf("connect %s: refused at once\n", a);
	}
	CHECK_EQ_INT(rc, CHAT_ERR_REFUSED);
}

/* A full accept queue (backlog from the config) leaves a connect in progress,
 * which connect_finish must report as such, not as success. */
static void test_inprogress(void)
{
	void *l = NULL, *c[8] = { NULL }, *s = NULL;
	char a[CHAT_ADDR_MAX];
	int pending = -1, rc;

	cfg_backlog = "1";
	cfg_nodelay = "no";
	rc = ops->listen(&host, "127.0.0.1:0", &l);
	CHECK_EQ_INT(rc, CHAT_OK);
	if (rc)
		goto out;
	CHECK_EQ_INT(ops->address(l, 1, sizeof(a), a), CHAT_OK);
	for (int i = 0; i < 8 && pending < 0; i++) {
		rc = ops->connect(&host, a, &c[i]);
		CHECK(rc == CHAT_OK || rc == CHAT_ERR_INPROGRESS);
		if (!c[i])
			break;
		CHECK_EQ_INT(sockopt_int(ops->fd(c[i]), IPPROTO_TCP, TCP_NODELAY), 0);
		if (rc == CHAT_ERR_INPROGRESS && !(wait_fd(ops->fd(c[i]), POLLOUT, 300) & POLLOUT)) {
			CHECK_EQ_INT(ops->connect_finish(c[i]), CHAT_ERR_INPROGRESS);
			pending = i;
		}
	}
	if (pending < 0) {
		printf("note: the kernel completed every connect; in-progress case not seen\n");
		goto out;
	}
	printf("inprogress: connect #%d waits on a full accept queue\n", pending);
	/* Draining the queue lets it complete (SYN retransmit after ~1 s). */
	CHECK_EQ_INT(accept_one(l, &s), CHAT_OK);
	CHECK_EQ_INT(sockopt_int(ops->fd(s), IPPROTO_TCP, TCP_NODELAY), 0);
	CHECK_EQ_INT(finish(c[pending], CHAT_ERR_INPROGRESS), CHAT_OK);
out:
	cfg_backlog = NULL;
	cfg_nodelay = NULL;
	ops->close(s);
	for (int i = 0; i < 8; i++)
		ops->close(c[i]);
	ops->listener_close(l);
}

/* Out of fds: accept reports CHAT_ERR_IO, logs once, and works again later. */
static void test_emfile(void)
{
	void *l = NULL, *c = NULL, *s = &s;
	struct rlimit old, low;
	char a[CHAT_ADDR_MAX];
	int rc, errors, lowest;

	CHECK_EQ_INT(ops->listen(&host, "127.0.0.1:0", &l), CHAT_OK);
	if (!l)
		return;
	CHECK_EQ_INT(ops->address(l, 1, sizeof(a), a), CHAT_OK);
	rc = ops->connect(&host, a, &c);
	CHECK_EQ_INT(finish(c, rc), CHAT_OK);
	CHECK(wait_fd(ops->fd(l), POLLIN, WAIT_MS) & POLLIN);

	/* The lowest free fd number becomes the limit: no new fd fits. */
	lowest = dup(0);
	CHECK(lowest >= 0);
	if (lowest >= 0)
		close(lowest);
	CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
	low = old;
	low.rlim_cur = (rlim_t)lowest;
	if (lowest < 0 || setrlimit(RLIMIT_NOFILE, &low) < 0) {
		printf("note: cannot lower RLIMIT_NOFILE, skipping EMFILE\n");
		goto out;
	}
	errors = log_errors;
	errno = 0;
	rc = ops->accept(l, &s);
	int e = errno;

	CHECK_EQ_INT(rc, CHAT_ERR_IO);
	CHECK_EQ_INT(e, EMFILE);
	CHECK(s == NULL);
	CHECK_STR_CONTAINS(last_log, "accept: too many open files (EMFILE)");
	CHECK_EQ_INT(ops->accept(l, &s), CHAT_ERR_IO);
	CHECK_EQ_INT(log_errors, errors + 1);
	CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
	/* The connection waited in the queue meanwhile. */
	CHECK_EQ_INT(ops->accept(l, &s), CHAT_OK);
	printf("emfile: accept failed with CHAT_ERR_IO, then succeeded\n");
out:
	if (s == &s)
		s = NULL;
	ops->close(s);
	ops->close(c);
	ops->listener_close(l);
}

static void test_malformed(void)
{
	static const char *const bad[] = {
		"", "127.0.0.1", "127.0.0.1:", ":80", "127.0.0.1:99999", "127.0.0.1:abc",
		"[::1:80", "::1:80", "[::1]", "127.0.0.1:-1", "127.0.0.1:+80",
		"127.0.0.1:123456", "127.0.0.1:80 ", " 127.0.0.1:80", "127.0.0.1 :80",
		"[]:80", "[::1]80", "[::1]:", "[::1]:x", "[127.0.0.1]:80", "[localhost]:80",
		"::1]:80", "a:b:c", "[[::1]]:80", "127.0.0.1:8\n0",
	};
	void *h;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		h = &h;
		int rc = ops->listen(&host, bad[i], &h);

		if (rc != CHAT_ERR_ADDRESS)
			fprintf(stderr, "listen '%s'\n", bad[i]);
		CHECK_EQ_INT(rc, CHAT_ERR_ADDRESS);
		CHECK(h == NULL);
		h = &h;
		rc = ops->connect(&host, bad[i], &h);
		if (rc != CHAT_ERR_ADDRESS)
			fprintf(stderr, "connect '%s'\n", bad[i]);
		CHECK_EQ_INT(rc, CHAT_ERR_ADDRESS);
		CHECK(h == NULL);
	}
	/* The log names the address and what is wrong with it. */
	h = &h;
	CHECK_EQ_INT(ops->connect(&host, "127.0.0.1:abc", &h), CHAT_ERR_ADDRESS);
	CHECK_STR_CONTAINS(last_log, "127.0.0.1:abc");
	CHECK_STR_CONTAINS(last_log, "port");
	/* Control bytes and runaway lengths do not reach the log verbatim. */
	char longaddr[600];

	memset(longaddr, 'a', sizeof(longaddr) - 1);
	longaddr[sizeof(longaddr) - 1] = '\0';
	h = &h;
	CHECK_EQ_INT(ops->connect(&host, longaddr, &h), CHAT_ERR_ADDRESS);
	CHECK(h == NULL);
	CHECK(strlen(last_log) < 300);
	CHECK_STR_CONTAINS(last_log, "...");
	h = &h;
	CHECK_EQ_INT(ops->connect(&host, "127.0.0.1:8\n0", &h), CHAT_ERR_ADDRESS);
	CHECK(!strchr(last_log, '\n'));

	/* Port 0 is for listening only. */
	h = &h;
	CHECK_EQ_INT(ops->connect(&host, "127.0.0.1:0", &h), CHAT_ERR_ADDRESS);
	CHECK(h == NULL);
	h = &h;
	CHECK_EQ_INT(ops->connect(&host, "[::1]:0", &h), CHAT_ERR_ADDRESS);
	CHECK(h == NULL);
}

static void test_resolve(void)
{
	uint64_t t0 = now_ms();
	void *h = &h;
	char a[CHAT_ADDR_MAX];
	int rc;

	CHECK_EQ_INT(ops->connect(&host, "no-such-host.invalid:80", &h), CHAT_ERR_RESOLVE);
	CHECK(h == NULL);
	CHECK_STR_CONTAINS(last_log, "no-such-host.invalid:80");
	h = &h;
	CHECK_EQ_INT(ops->listen(&host, "no-such-host.invalid:0", &h), CHAT_ERR_RESOLVE);
	CHECK(h == NULL);
	printf("resolve: .invalid failed in %llu ms\n", (unsigned long long)(now_ms() - t0));

	/* A name from /etc/hosts; binding it touches loopback only. */
	h = NULL;
	rc = ops->listen(&host, "localhost:0", &h);
	if (rc == CHAT_ERR_RESOLVE) {
		printf("note: 'localhost' does not resolve here\n");
		return;
	}
	CHECK_EQ_INT(rc, CHAT_OK);
	if (rc)
		return;
	CHECK_EQ_INT(ops->address(h, 1, sizeof(a), a), CHAT_OK);
	CHECK(starts_with(a, "127.") || starts_with(a, "[::1]:"));
	printf("resolve: localhost:0 -> %s\n", a);
	ops->listener_close(h);
}

static void test_null(void)
{
	void *l = NULL, *c = NULL, *s = NULL, *h;
	uint8_t buf[16];
	char a[CHAT_ADDR_MAX];
	size_t n;
	struct chat_host tiny = host;

	ops->close(NULL);
	ops->listener_close(NULL);

	h = &h;
	CHECK_EQ_INT(ops->listen(NULL, "127.0.0.1:0", &h), CHAT_ERR_INVALID);
	CHECK(h == NULL);
	h = &h;
	CHECK_EQ_INT(ops->listen(&host, NULL, &h), CHAT_ERR_INVALID);
	CHECK(h == NULL);
	CHECK_EQ_INT(ops->listen(&host, "127.0.0.1:0", NULL), CHAT_ERR_INVALID);
	h = &h;
	CHECK_EQ_INT(ops->connect(NULL, "127.0.0.1:1", &h), CHAT_ERR_INVALID);
	CHECK(h == NULL);
	h = &h;
	CHECK_EQ_INT(ops->connect(&host, NULL, &h), CHAT_ERR_INVALID);
	CHECK(h == NULL);
	CHECK_EQ_INT(ops->connect(&host, "127.0.0.1:1", NULL), CHAT_ERR_INVALID);
	/* A host table too short to hold the services the plugin uses. */
	tiny.size = 8;
	h = &h;
	CHECK_EQ_INT(ops->listen(&tiny, "127.0.0.1:0", &h), CHAT_ERR_INVALID);
	CHECK(h == NULL);

	h = &h;
	CHECK_EQ_INT(ops->accept(NULL, &h), CHAT_ERR_INVALID);
	CHECK(h == NULL);
	CHECK_EQ_INT(ops->connect_finish(NULL), CHAT_ERR_INVALID);
	n = 99;
	CHECK_EQ_INT(ops->read(NULL, sizeof(buf), buf, &n), CHAT_ERR_INVALID);
	CHECK_EQ_INT(n, 0);
	n = 99;
	CHECK_EQ_INT(ops->write(NULL, sizeof(buf), buf, &n), CHAT_ERR_INVALID);
	CHECK_EQ_INT(n, 0);
	CHECK(ops->fd(NULL) < 0);
	strcpy(a, "junk");
	CHECK_EQ_INT(ops->address(NULL, 1, sizeof(a), a), CHAT_ERR_INVALID);
	CHECK_EQ_INT(a[0], '\0');

	CHECK_EQ_INT(make_pair("127.0.0.1:0", &l, &c, &s), CHAT_OK);
	if (!s)
		return;
	CHECK_EQ_INT(ops->accept(l, NULL), CHAT_ERR_INVALID);
	n = 99;
	CHECK_EQ_INT(ops->read(s, sizeof(buf), NULL, &n), CHAT_ERR_INVALID);
	CHECK_EQ_INT(n, 0);
	CHECK_EQ_INT(ops->read(s, sizeof(buf), buf, NULL), CHAT_ERR_INVALID);
	n = 99;
	CHECK_EQ_INT(ops->write(c, sizeof(buf), NULL, &n), CHAT_ERR_INVALID);
	CHECK_EQ_INT(n, 0);
	CHECK_EQ_INT(ops->write(c, sizeof(buf), buf, NULL), CHAT_ERR_INVALID);
	CHECK_EQ_INT(ops->address(c, 1, sizeof(a), NULL), CHAT_ERR_INVALID);

	/* A handle of the wrong kind. */
	h = &h;
	CHECK_EQ_INT(ops->accept(c, &h), CHAT_ERR_INVALID);
	CHECK(h == NULL);
	CHECK_EQ_INT(ops->read(l, sizeof(buf), buf, &n), CHAT_ERR_INVALID);
	CHECK_EQ_INT(ops->write(l, sizeof(buf), buf, &n), CHAT_ERR_INVALID);
	CHECK_EQ_INT(ops->connect_finish(l), CHAT_ERR_INVALID);
	/* connect_finish on an established connection stays OK. */
	CHECK_EQ_INT(ops->connect_finish(c), CHAT_OK);
	CHECK_EQ_INT(ops->connect_finish(s), CHAT_OK);

	free_pair(l, c, s);
}

int main(void)
{
	const char *path = CHAT_TEST_PLUGIN_DIR "/transport-tcp.so";
	const struct chat_plugin *p;
	chat_plugin_entry_fn entry;
	void *dl;

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* A stray SIGPIPE must kill the test, not be ignored by accident. */
	signal(SIGPIPE, SIG_DFL);

	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
		return 1;
	}
	entry = (chat_plugin_entry_fn)dlsym(dl, CHAT_PLUGIN_ENTRY_SYMBOL);
	CHECK(entry != NULL);
	if (!entry)
		return test_done("test_tcp");
	p = entry();
	test_descriptor(p);
	if (!p || !p->ops.transport || test_failures)
		return test_done("test_tcp");
	ops = p->ops.transport;

	test_basic("127.0.0.1:0", "127.0.0.1:", false);
	test_basic("[::1]:0", "[::1]:", true);
	test_bulk();
	test_eof();
	test_reset();
	test_addrinuse();
	test_refused(AF_INET);
	test_refused(AF_INET6);
	test_inprogress();
	test_emfile();
	test_malformed();
	test_resolve();
	test_null();

	/* Plugins are never unloaded (as the core does). */
	return test_done("test_tcp");
}
