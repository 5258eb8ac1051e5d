/* The TLS transport plugin through its ABI, loaded with dlopen (not through
 * the core's loader) and driven over 127.0.0.1 only by a small poll loop
 * that asks interest() what to wait for, as the core's conn.c does:
 * handshake, 1 MiB each way at once with pending() honoured, channel
 * binding, describe, the relay key by pin and by known_relays (first use,
 * then a changed key), and peers that do not speak TLS. */
#define _GNU_SOURCE

#include "testutils.h"
#include "paths.h"

#include <chat/plugin.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BULK_LEN (1u << 20)
#define WAIT_MS 10000

static const struct chat_transport_ops *ops;

/* ---- a minimal host: one per side, each with its own [plugin.tls] ---- */

struct side_cfg {
	const char *name; /* for log lines */
	const char *state_dir;
	const char *pin, *ca, *known_relays, *min_version;
};

static int warn_lines;
static char last_log[1024], last_warn[1024];

static int h_random(const struct chat_host *h, size_t len, uint8_t *dst)
{
	(void)h;
	return getrandom(dst, len, 0) == (ssize_t)len ? CHAT_OK : CHAT_ERR_RANDOM;
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

static void h_log(const struct chat_host *h, int level, const char *fmt, ...) CHAT_PRINTF(3, 4);

static void h_log(const struct chat_host *h, int level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	const struct side_cfg *cfg = h->ctx;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_log, sizeof(last_log), fmt, ap);
	va_end(ap);
	if (level == CHAT_LOG_WARN) {
		warn_lines++;
		memcpy(last_warn, last_log, sizeof(last_warn));
	}
	if (level <= CHAT_LOG_INFO)
		fprintf(stderr, "  [%s %s] %s\n", cfg->name,
		        level >= 0 && level <= 3 ? names[level] : "?", last_log);
}

static const char *h_config_get(const struct chat_host *h, const char *key)
{
	const struct side_cfg *cfg = h->ctx;

	if (!strcmp(key, "pin"))
		return cfg->pin ? cfg->pin : "";
	if (!strcmp(key, "ca"))
		return cfg->ca ? cfg->ca : "";
	if (!strcmp(key, "known_relays"))
		return cfg->known_relays ? cfg->known_relays : "";
	if (!strcmp(key, "min_version"))
		return cfg->min_version ? cfg->min_version : "1.3";
	if (!strcmp(key, "cert") || !strcmp(key, "key") || !strcmp(key, "server_name"))
		return "";
	if (!strcmp(key, "backlog"))
		return "16";
	if (!strcmp(key, "nodelay"))
		return "true";
	return NULL;
}

static int h_memeq(const void *a, const void *b, size_t n)
{
	return memcmp(a, b, n) == 0;
}

static void h_wipe(void *p, size_t n)
{
	explicit_bzero(p, n);
}

static const char *h_state_dir(const struct chat_host *h)
{
	const struct side_cfg *cfg = h->ctx;

	return cfg->state_dir;
}

static struct side_cfg srv_cfg = { .name = "relay" }, cli_cfg = { .name = "client" };

#define HOST(cfgp) { \
	.size = sizeof(struct chat_host), .abi_major = CHAT_ABI_MAJOR, \
	.abi_minor = CHAT_ABI_MINOR, .ctx = (cfgp), .random = h_random, \
	.monotonic_ms = h_monotonic_ms, .unix_ms = h_unix_ms, .log = h_log, \
	.config_get = h_config_get, .memeq = h_memeq, .wipe = h_wipe, \
	.state_dir = h_state_dir }

static const struct chat_host srv_host = HOST(&srv_cfg), cli_host = HOST(&cli_cfg);

/* ---- a poll loop in the manner of core/src/conn.c ---- */

struct side {
	void *c;
	bool connecting; /* connect_finish until CHAT_OK */
	int result;      /* connect_finish's, or the first read/write error */
	const uint8_t *out;
	size_t out_len, out_off;
	size_t in_want, in_got;
	bool in_ok;          /* every byte read so far is the expected one */
	unsigned pending_hits; /* reads done only because pending() said so */
	bool eof;
};

/* The byte at offset i of side tag's stream. */
static uint8_t pattern(unsigned tag, size_t i)
{
	return (uint8_t)(i * 131 + (i >> 12) + tag);
}

static unsigned want_of(const struct side *s)
{
	return CHAT_TP_READ | (s->out_off < s->out_len ? CHAT_TP_WRITE : 0);
}

static void side_io(struct side *s, unsigned tag)
{
	uint8_t buf[1000]; /* smaller than a record: pending() has work to do */

	if (s->result)
		return;
	if (s->connecting) {
		int rc = ops->connect_finish(s->c);
		if (rc == CHAT_ERR_INPROGRESS)
			return;
		s->connecting = false;
		s->result = rc;
		if (rc)
			return;
	}
	while (s->out_off < s->out_len) {
		size_t sent = 0, n = s->out_len - s->out_off;
		int rc = ops->write(s->c, n > 65536 ? 65536 : n, s->out + s->out_off, &sent);
		if (rc == CHAT_ERR_AGAIN)
			break;
		if (rc) {
			s->result = rc;
			return;
		}
		s->out_off += sent;
	}
	/* One read per event, then only what pending() says is there. */
	for (bool first = true; first || ops->pending(s->c) > 0; first = false) {
		size_t got = 0;
		int rc = ops->read(s->c, sizeof(buf), buf, &got);
		if (rc == CHAT_ERR_AGAIN)
			break;
		if (rc == CHAT_ERR_CLOSED) {
			s->eof = true;
			break;
		}
		if (rc) {
			s->result = rc;
			return;
		}
		if (!first)
			s->pending_hits++;
		for (size_t i = 0; i < got; i++)
			if (buf[i] != pattern(tag, s->in_got + i))
				s->in_ok = false;
		s->in_got += got;
	}
}

/* Up: the handshake is over on this end (describe() works only then). */
static bool side_open(const struct side *s)
{
	char d[300];

	return !s->connecting && ops->describe(s->c, sizeof(d), d) == CHAT_OK;
}

static bool side_done(const struct side *s)
{
	return s->result || s->eof ||
	       (side_open(s) && s->out_off == s->out_len && s->in_got >= s->in_want);
}

/* Drive both ends until each is done (or failed); false on timeout. */
static bool pump(struct side *a, struct side *b)
{
	uint64_t end = now_ms() + WAIT_MS;

	while (!(side_done(a) && side_done(b))) {
		struct side *sd[2] = { a, b };
		struct pollfd p[2];

		if (now_ms() > end)
			return false;
		for (int i = 0; i < 2; i++) {
			unsigned w = ops->interest(sd[i]->c, sd[i]->connecting ? CHAT_TP_WRITE : want_of(sd[i]));
			p[i].fd = side_done(sd[i]) ? -1 : ops->fd(sd[i]->c);
			p[i].events = (short)(((w & CHAT_TP_READ) ? POLLIN : 0) | ((w & CHAT_TP_WRITE) ? POLLOUT : 0));
			p[i].revents = 0;
		}
		if (poll(p, 2, 200) < 0 && errno != EINTR)
			return false;
		/* Either end's bytes are read by the other: side 0 receives what
		 * side 1 sends (tag 1) and the reverse. */
		for (int i = 0; i < 2; i++)
			if (p[i].revents)
				side_io(sd[i], (unsigned)(1 - i));
	}
	return true;
}

static int accept_one(void *l, void **s)
{
	uint64_t end = now_ms() + WAIT_MS;
	int rc;

	do {
		struct pollfd p = { .fd = ops->fd(l), .events = POLLIN };
		poll(&p, 1, 200);
		rc = ops->accept(l, s);
	} while (rc == CHAT_ERR_AGAIN && now_ms() < end);
	return rc;
}

/* Connect the client host to the listener and accept: cli and srv set up,
 * not yet handshaken.  Returns connect's error when it fails at once. */
static int start_pair(void *l, struct side *cli, struct side *srv)
{
	char a[CHAT_ADDR_MAX];
	int rc;

	memset(cli, 0, sizeof(*cli));
	memset(srv, 0, sizeof(*srv));
	cli->in_ok = srv->in_ok = true;
	CHECK_EQ_INT(ops->address(l, 1, sizeof(a), a), CHAT_OK);
	rc = ops->connect(&cli_host, a, &cli->c);
	if (rc != CHAT_ERR_INPROGRESS)
		return rc;
	cli->connecting = true;
	CHECK_EQ_INT(accept_one(l, &srv->c), CHAT_OK);
	return srv->c ? CHAT_OK : CHAT_ERR_FAILED;
}

static void end_pair(struct side *cli, struct side *srv)
{
	ops->close(cli->c);
	ops->close(srv->c);
	cli->c = srv->c = NULL;
}

/* ---- tests ---- */

static char dir[] = "/tmp/test_tls.XXXXXX";
static char srv_dir[256], cli_dir[256], known[300];
static char fp[72];

static void test_descriptor(const struct chat_plugin *p)
{
	CHECK(p && !strcmp(p->name, "tls"));
	CHECK_EQ_INT(p->kind, CHAT_PLUGIN_TRANSPORT);
	CHECK_EQ_INT(p->flags, CHAT_FLAG_ENCRYPTED | CHAT_FLAG_AUTHENTICATED);
	const struct chat_transport_ops *o = p->ops.transport;
	CHECK_EQ_INT(o->size, sizeof(struct chat_transport_ops));
	CHECK(o->interest && o->pending && o->channel_binding && o->last_error && o->describe &&
	      o->local_fingerprint);
	int n = 0;
	for (const struct chat_config_key *k = p->config_keys; k && k->name; k++, n++)
		CHECK(k->def && k->help);
	CHECK_EQ_INT(n, 9);
}

/* The relay's key: made once in the state directory (0600), then reused. */
static void test_fingerprint(void)
{
	char fp2[72], path[300];
	struct stat st;

	srv_cfg.state_dir = NULL;
	CHECK_EQ_INT(ops->local_fingerprint(&srv_host, sizeof(fp), fp), CHAT_ERR_CONFIG);
	CHECK_STR_CONTAINS(last_log, "[plugin.tls] cert and key");
	CHECK_STR_CONTAINS(last_log, "relay.state_dir");

	srv_cfg.state_dir = srv_dir; /* does not exist yet: made 0700 */
	CHECK_EQ_INT(ops->local_fingerprint(&srv_host, sizeof(fp), fp), CHAT_OK);
	CHECK_EQ_INT(strlen(fp), 71);
	CHECK(!strncmp(fp, "sha256:", 7));
	CHECK_STR_CONTAINS(last_log, "created in");
	CHECK(stat(srv_dir, &st) == 0 && (st.st_mode & 0777) == 0700);
	snprintf(path, sizeof(path), "%s/tls-key.pem", srv_dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK_EQ_INT(ops->local_fingerprint(&srv_host, sizeof(fp2), fp2), CHAT_OK);
	CHECK(!strcmp(fp, fp2));
	CHECK_STR_CONTAINS(last_log, "loaded from");
	CHECK_EQ_INT(ops->local_fingerprint(&srv_host, 10, fp2), CHAT_ERR_NOSPACE);
}

/* Handshake, then 1 MiB each way at once, binding, describe, close. */
static void test_bulk(void *l)
{
	struct side cli, srv;
	uint8_t *a = malloc(BULK_LEN), *b = malloc(BULK_LEN), cb1[64], cb2[64];
	size_t n1 = 0, n2 = 0;
	char d[300];

	for (size_t i = 0; i < BULK_LEN; i++) {
		a[i] = pattern(0, i);
		b[i] = pattern(1, i);
	}
	cli_cfg.pin = fp;
	CHECK_EQ_INT(start_pair(l, &cli, &srv), CHAT_OK);
	/* Nothing before the handshake. */
	CHECK_EQ_INT(ops->channel_binding(srv.c, "tls-exporter", sizeof(cb1), cb1, &n1), CHAT_ERR_STATE);
	CHECK_EQ_INT(ops->describe(cli.c, sizeof(d), d), CHAT_ERR_STATE);
	CHECK_EQ_INT(ops->pending(srv.c), 0);
	size_t got = 0;
	CHECK_EQ_INT(ops->read(srv.c, sizeof(d), (uint8_t *)d, &got), CHAT_ERR_AGAIN);
	/* The handshake alone (the relay's end finishes it inside read()). */
	CHECK(pump(&cli, &srv));
	CHECK_EQ_INT(cli.result, CHAT_OK);
	CHECK_EQ_INT(srv.result, CHAT_OK);

	CHECK_EQ_INT(ops->channel_binding(cli.c, "tls-exporter", sizeof(cb1), cb1, &n1), CHAT_OK);
	cli.out = a;
	cli.out_len = BULK_LEN;
	srv.out = b;
	srv.out_len = BULK_LEN;
	cli.in_want = srv.in_want = BULK_LEN;
	uint64_t t0 = now_ms();
	CHECK(pump(&cli, &srv));
	uint64_t ms = now_ms() - t0;
	CHECK_EQ_INT(cli.result, CHAT_OK);
	CHECK_EQ_INT(srv.result, CHAT_OK);
	CHECK_EQ_INT(cli.in_got, BULK_LEN);
	CHECK_EQ_INT(srv.in_got, BULK_LEN);
	CHECK(cli.in_ok && srv.in_ok);
	CHECK(cli.pending_hits > 0 && srv.pending_hits > 0);
	printf("  1 MiB each way at once over TLS in %llu ms; reads done for pending(): %u + %u\n",
	       (unsigned long long)ms, cli.pending_hits, srv.pending_hits);

	CHECK_EQ_INT(ops->channel_binding(srv.c, "tls-exporter", sizeof(cb2), cb2, &n2), CHAT_OK);
	CHECK_EQ_INT(n1, 32);
	CHECK_EQ_INT(n2, 32);
	CHECK_MEM(cb1, cb2, 32);
	CHECK_EQ_INT(ops->channel_binding(srv.c, "tls-unique", sizeof(cb2), cb2, &n2), CHAT_ERR_UNSUPPORTED);
	CHECK_EQ_INT(ops->channel_binding(srv.c, "tls-exporter", 16, cb2, &n2), CHAT_ERR_NOSPACE);

	CHECK_EQ_INT(ops->describe(cli.c, sizeof(d), d), CHAT_OK);
	printf("  client: %s\n", d);
	CHECK_STR_CONTAINS(d, "TLS1.3 ");
	CHECK_STR_CONTAINS(d, "relay key ");
	CHECK_STR_CONTAINS(d, fp);
	CHECK_STR_CONTAINS(d, "pinned");
	CHECK_EQ_INT(ops->describe(srv.c, sizeof(d), d), CHAT_OK);
	printf("  relay:  %s\n", d);
	CHECK_STR_CONTAINS(d, fp);
	CHECK_EQ_INT(ops->describe(srv.c, 10, d), CHAT_ERR_NOSPACE);

	/* An orderly close reads as CHAT_ERR_CLOSED at the other end. */
	ops->close(cli.c);
	cli.c = NULL;
	srv.in_want = SIZE_MAX;
	uint64_t end = now_ms() + WAIT_MS;
	while (!srv.eof && !srv.result && now_ms() < end) {
		struct pollfd p = { .fd = ops->fd(srv.c), .events = POLLIN };
		poll(&p, 1, 200);
		side_io(&srv, 0);
	}
	CHECK(srv.eof);
	ops->close(srv.c);
	free(a);
	free(b);
	cli_cfg.pin = NULL;
}

/* min_version 1.2 on both ends: 1.3 is still what they agree on (a
 * 1.2-only server is tested end to end, tests/e2e_tls.sh). */
static void test_tls12(void)
{
	struct side cli, srv;
	uint8_t cb1[32], cb2[32];
	size_t n1 = 0, n2 = 0;
	char d[300];
	void *l = NULL;

	srv_cfg.min_version = "1.2";
	cli_cfg.min_version = "1.2";
	cli_cfg.pin = fp;
	CHECK_EQ_INT(ops->listen(&srv_host, "127.0.0.1:0", &l), CHAT_OK);
	CHECK_EQ_INT(start_pair(l, &cli, &srv), CHAT_OK);
	uint8_t byte = 7;
	cli.out = &byte;
	cli.out_len = 1;
	srv.in_want = 1;
	CHECK(pump(&cli, &srv));
	CHECK_EQ_INT(cli.result, CHAT_OK);
	CHECK_EQ_INT(ops->describe(cli.c, sizeof(d), d), CHAT_OK);
	CHECK_STR_CONTAINS(d, "TLS1.3"); /* 1.2 is allowed, 1.3 still preferred */
	CHECK_EQ_INT(ops->channel_binding(cli.c, "tls-exporter", sizeof(cb1), cb1, &n1), CHAT_OK);
	CHECK_EQ_INT(ops->channel_binding(srv.c, "tls-exporter", sizeof(cb2), cb2, &n2), CHAT_OK);
	CHECK_MEM(cb1, cb2, 32);
	end_pair(&cli, &srv);
	ops->listener_close(l);

	cli_cfg.min_version = "1.1";
	void *c = NULL;
	CHECK_EQ_INT(ops->connect(&cli_host, "127.0.0.1:1", &c), CHAT_ERR_CONFIG);
	CHECK_STR_CONTAINS(last_log, "min_version");
	srv_cfg.min_version = cli_cfg.min_version = NULL;
	cli_cfg.pin = NULL;
}

/* A pinned key that is not the relay's: refused inside the handshake. */
static void test_pin_mismatch(void *l)
{
	struct side cli, srv;
	char other[72];
	const char *e;

	snprintf(other, sizeof(other), "sha256:%064d", 0);
	cli_cfg.pin = other;
	CHECK_EQ_INT(start_pair(l, &cli, &srv), CHAT_OK);
	CHECK(pump(&cli, &srv));
	CHECK_EQ_INT(cli.result, CHAT_ERR_CERT);
	e = ops->last_error(cli.c);
	CHECK_STR_CONTAINS(e, "127.0.0.1:");
	CHECK_STR_CONTAINS(e, "not the one [plugin.tls] pin names");
	CHECK_STR_CONTAINS(e, fp);
	CHECK_STR_CONTAINS(e, other);
	/* Final: asked again, the same answer; nothing can be written. */
	CHECK_EQ_INT(ops->connect_finish(cli.c), CHAT_ERR_CERT);
	size_t sent = 1;
	CHECK_EQ_INT(ops->write(cli.c, 1, (const uint8_t *)"x", &sent), CHAT_ERR_CERT);
	CHECK_EQ_INT(sent, 0);
	/* The relay hears the alert. */
	CHECK(srv.result != CHAT_OK);
	CHECK_STR_CONTAINS(ops->last_error(srv.c), "refused our certificate");
	end_pair(&cli, &srv);

	snprintf(other, sizeof(other), "sha256:xyz");
	void *c = NULL;
	CHECK_EQ_INT(ops->connect(&cli_host, "127.0.0.1:1", &c), CHAT_ERR_CONFIG);
	CHECK(c == NULL);
	CHECK_STR_CONTAINS(last_log, "[plugin.tls] pin");
	cli_cfg.pin = NULL;
}

/* Trust on first use: recorded once (WARN), accepted again, a changed key
 * refused naming the file, the line, both keys and the way out. */
static void test_tofu(void *l)
{
	struct side cli, srv;
	struct stat st;
	char a[CHAT_ADDR_MAX], line[400], *text;
	size_t len;
	const char *e;
	int warns = warn_lines;

	cli_cfg.state_dir = cli_dir;
	CHECK_EQ_INT(ops->address(l, 1, sizeof(a), a), CHAT_OK);
	CHECK_EQ_INT(start_pair(l, &cli, &srv), CHAT_OK);
	CHECK(pump(&cli, &srv));
	CHECK_EQ_INT(cli.result, CHAT_OK);
	CHECK_EQ_INT(warn_lines, warns + 1);
	CHECK_STR_CONTAINS(last_warn, "first connection to");
	CHECK_STR_CONTAINS(last_warn, "line 1");
	CHECK_STR_CONTAINS(last_warn, fp);
	CHECK_STR_CONTAINS(last_warn, known);
	CHECK(stat(known, &st) == 0 && (st.st_mode & 0777) == 0600);
	text = (char *)test_load_file(known, &len);
	snprintf(line, sizeof(line), "%s %s\n", a, fp);
	CHECK(!strcmp(text, line));
	free(text);
	char d[300];
	CHECK_EQ_INT(ops->describe(cli.c, sizeof(d), d), CHAT_OK);
	CHECK_STR_CONTAINS(d, "known since first use");
	end_pair(&cli, &srv);

	/* Again: accepted quietly. */
	CHECK_EQ_INT(start_pair(l, &cli, &srv), CHAT_OK);
	CHECK(pump(&cli, &srv));
	CHECK_EQ_INT(cli.result, CHAT_OK);
	CHECK_EQ_INT(warn_lines, warns + 1);
	end_pair(&cli, &srv);

	/* The file now says another key for this address (line 2). */
	char other[72];
	snprintf(other, sizeof(other), "sha256:%064d", 1);
	snprintf(line, sizeof(line), "# relays\n%s %s\n", a, other);
	test_save_file(known, strlen(line), (const uint8_t *)line);
	CHECK_EQ_INT(start_pair(l, &cli, &srv), CHAT_OK);
	CHECK(pump(&cli, &srv));
	CHECK_EQ_INT(cli.result, CHAT_ERR_CERT);
	e = ops->last_error(cli.c);
	CHECK_STR_CONTAINS(e, "has changed");
	CHECK_STR_CONTAINS(e, known);
	CHECK_STR_CONTAINS(e, "line 2");
	CHECK_STR_CONTAINS(e, fp);
	CHECK_STR_CONTAINS(e, other);
	CHECK_STR_CONTAINS(e, "sed -i '2d'");
	end_pair(&cli, &srv);
	unlink(known);

	/* No state directory and neither ca nor pin: nothing to check against. */
	cli_cfg.state_dir = NULL;
	void *c = NULL;
	CHECK_EQ_INT(ops->connect(&cli_host, a, &c), CHAT_ERR_CONFIG);
	CHECK(c == NULL);
	CHECK_STR_CONTAINS(last_log, "[plugin.tls]");
	CHECK_STR_CONTAINS(last_log, "client.data_dir");
}

/* A plain TCP peer at a TLS listener, and a TLS client at a plain server. */
static void test_not_tls(void *l)
{
	char a[CHAT_ADDR_MAX];
	static const uint8_t hello[] = { 0, 0, 0, 5, 1, 2, 3, 4, 5 };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int warns = warn_lines;

	CHECK_EQ_INT(ops->address(l, 1, sizeof(a), a), CHAT_OK);
	sin.sin_port = htons((uint16_t)atoi(strrchr(a, ':') + 1));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int round = 0; round < 5; round++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		void *s = NULL;
		CHECK(connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
		CHECK(write(fd, hello, sizeof(hello)) == (ssize_t)sizeof(hello));
		CHECK_EQ_INT(accept_one(l, &s), CHAT_OK);
		int rc = CHAT_ERR_AGAIN;
		uint64_t end = now_ms() + WAIT_MS;
		while (rc == CHAT_ERR_AGAIN && now_ms() < end) {
			uint8_t buf[64];
			size_t got;
			struct pollfd p = { .fd = ops->fd(s), .events = POLLIN };
			poll(&p, 1, 200);
			rc = ops->read(s, sizeof(buf), buf, &got);
		}
		CHECK_EQ_INT(rc, CHAT_ERR_TLS);
		CHECK_STR_CONTAINS(ops->last_error(s), "does not speak TLS");
		ops->close(s);
		close(fd);
	}
	/* Five of them: one line (the rest are counted for the next one). */
	CHECK_EQ_INT(warn_lines, warns + 1);
	CHECK_STR_CONTAINS(last_warn, "not TLS");

	/* A TLS client at a server that answers in frames. */
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	socklen_t sl = sizeof(sin);
	sin.sin_port = 0;
	CHECK(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == 0 && listen(lfd, 1) == 0);
	CHECK(getsockname(lfd, (struct sockaddr *)&sin, &sl) == 0);
	snprintf(a, sizeof(a), "127.0.0.1:%u", ntohs(sin.sin_port));
	cli_cfg.pin = fp;
	struct side cli = { .connecting = true };
	CHECK_EQ_INT(ops->connect(&cli_host, a, &cli.c), CHAT_ERR_INPROGRESS);
	int fd = accept(lfd, NULL, NULL);
	CHECK(fd >= 0);
	CHECK(write(fd, hello, sizeof(hello)) == (ssize_t)sizeof(hello));
	uint64_t end = now_ms() + WAIT_MS;
	while (!cli.result && now_ms() < end) {
		unsigned w = ops->interest(cli.c, CHAT_TP_WRITE);
		struct pollfd p = { .fd = ops->fd(cli.c), .events = (short)((w & CHAT_TP_READ ? POLLIN : 0) |
		                                                           (w & CHAT_TP_WRITE ? POLLOUT : 0)) };
		poll(&p, 1, 200);
		side_io(&cli, 0);
	}
	CHECK_EQ_INT(cli.result, CHAT_ERR_TLS);
	CHECK_STR_CONTAINS(ops->last_error(cli.c), "does not speak TLS");
	CHECK_STR_CONTAINS(ops->last_error(cli.c), a);
	ops->close(cli.c);
	close(fd);
	close(lfd);
	cli_cfg.pin = NULL;
}

int main(void)
{
	const char *path = CHAT_TEST_PLUGIN_DIR "/transport-tls.so";
	const struct chat_plugin *p;
	chat_plugin_entry_fn entry;
	void *dl, *l = NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_DFL); /* a SIGPIPE must kill the test */
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(srv_dir, sizeof(srv_dir), "%s/relay/state", dir);
	snprintf(cli_dir, sizeof(cli_dir), "%s/client", dir);
	snprintf(known, sizeof(known), "%s/known_relays", cli_dir);

	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
		return 1;
	}
	entry = (chat_plugin_entry_fn)dlsym(dl, CHAT_PLUGIN_ENTRY_SYMBOL);
	CHECK(entry != NULL);
	if (!entry)
		return test_done("test_tls");
	p = entry();
	test_descriptor(p);
	if (test_failures)
		return test_done("test_tls");
	ops = p->ops.transport;

	test_fingerprint();
	CHECK_EQ_INT(ops->listen(&srv_host, "127.0.0.1:0", &l), CHAT_OK);
	if (l) {
		test_bulk(l);
		test_pin_mismatch(l);
		test_tofu(l);
		test_not_tls(l);
		ops->listener_close(l);
	}
	test_tls12();

	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return test_done("test_tls");
}
