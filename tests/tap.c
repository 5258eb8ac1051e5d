/* chat-tap: a recording TCP proxy for the end-to-end tests.
 *   chat-tap [--mail-replay N | --mail-reorder N | --mail-drop N | --mail-dup N]
 *            [--tls-terminate[-plain] CERT KEY] [--inject FILE]
 *            [--rewrite-suites LIST] PORTFILE TARGET_PORT RECORDFILE
 * Listens on 127.0.0.1:0 (the port goes to PORTFILE), forwards every
 * connection to 127.0.0.1:TARGET_PORT and appends every byte that passes, in
 * both directions, to RECORDFILE: exactly what the relay receives and sends.
 * SIGUSR1 toggles a stall: nothing is read or forwarded in either direction,
 * nothing is closed (a link gone silent, as through a dead router); new
 * connections are still accepted and joined to the target, and stall too.
 *
 * With a --mail-* option the tap is a network attacker on the recipient's
 * path: the relay->client direction is cut into frames (u32 big-endian
 * length, then the body; a MAIL body is the type 0x96, u64 mail id, i64
 * stored-at ms, the inner message) and the Nth MAIL carrying a DELIVER (a
 * peer's message; counted over all connections, from 1) is
 *   replay   forwarded, and a copy with its mail id raised by 1000 injected
 *            right after the next such MAIL (or 2 s later if none comes);
 *   reorder  held and forwarded right after the next such MAIL (or 2 s
 *            later): the two swap places;
 *   drop     never forwarded (the relay still thinks it is on its way);
 *   dup      forwarded twice.
 * Every such act is said on stderr ("chat-tap: dropped MAIL #3 (mail id
 * 17)").
 *
 * With --rewrite-suites LIST (comma-separated suite names) the tap is a relay
 * that lies about suites, consistently: every suite list the relay sends a
 * client -- WELCOME (what the relay carries), OFFERED and ANSWERED (what the
 * peer allows), WHO_LIST and MEMBERS (what each user allows) -- is replaced
 * by LIST, and everything else in those frames is kept.  Each rewritten
 * frame is said on stderr once per type and connection.
 *
 * The record still holds what the relay sent, not the rewrite.
 *
 * With --tls-terminate CERT KEY the tap is a TLS-intercepting proxy that the
 * client was made to trust: it ends the client's TLS with CERT/KEY (PEM;
 * ALPN chat/1) and opens its own TLS connection to the relay (ALPN chat/1,
 * the relay's key not checked); with --tls-terminate-plain CERT KEY it
 * forwards in clear instead (a TLS front such as stunnel before a plain
 * relay).  It then reads, records and can rewrite the plaintext frames like
 * a tap on a plain link.  Handshakes block (a test tool, one at a time).
 *
 * With --inject FILE, each SIGUSR2 writes FILE's bytes into the stream
 * towards the relay of every connection, raw, between two reads from the
 * client (an on-path attacker who injects a command: on a plain link it is
 * a frame the relay obeys; inside TLS it is bytes that fail the record
 * check).
 * Loopback only; exits on SIGTERM or after 10 minutes. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#define MAXPAIRS 64
#define MSG_MAIL 0x96
#define MSG_DELIVER 0x86
#define MSG_WELCOME 0x81
#define MSG_WHO_LIST 0x83
#define MSG_OFFERED 0x84
#define MSG_ANSWERED 0x85
#define MSG_MEMBERS 0x87
#define MAX_SUITES 16
#define MAIL_HEAD (1 + 8 + 8) /* type, mail id, stored-at */
#define LATER_MS 2000         /* a replay or a held frame waits at most this for the next MAIL */
#define REPLAY_RAISE 1000

static volatile sig_atomic_t stop, stalled, inject_now;
static uint8_t inject_buf[4096];
static size_t inject_len;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void on_usr2(int sig)
{
	(void)sig;
	inject_now = 1;
}

static void on_usr1(int sig)
{
	(void)sig;
	stalled = !stalled;
}

enum mode { M_NONE, M_REPLAY, M_REORDER, M_DROP, M_DUP };

static enum mode mode;
static long target_n;  /* the Nth MAIL carrying a DELIVER */
static long mails;     /* such MAILs seen so far, all connections */
static int rewrite;    /* --rewrite-suites given */
static uint8_t fake_suites[1 + MAX_SUITES * 256]; /* LIST as on the wire: u8 n, n x str8 */
static size_t fake_len;

/* A whole frame (length prefix included). */
struct frame {
	uint8_t *data;
	size_t len;
};

/* One proxied connection: [0] the client's socket, [1] the relay's.  In
 * rewriting mode, bytes from the relay gather in buf until a frame is whole;
 * later is a frame to inject (a replayed copy, or the held one) at later_ms
 * or right after the next MAIL. */
struct pair {
	int fd[2];
	gnutls_session_t tls[2]; /* --tls-terminate: the client's side, the relay's (NULL: clear) */
	uint8_t *buf;
	size_t len, cap;
	struct frame later;
	long long later_ms;
	unsigned said;       /* frame types whose rewrite was said (bit per type - 0x80) */
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_all(int fd, const uint8_t *p, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, p + off, len - off);
		if (w <= 0 && errno != EINTR)
			return;
		if (w > 0)
			off += (size_t)w;
	}
}

/* --tls-terminate */
static int tls_mode;          /* 0 off, 1 TLS to the relay too, 2 clear to the relay */
static gnutls_certificate_credentials_t tls_server_cred, tls_client_cred;

static int tls_setup(const char *cert, const char *key)
{
	if (gnutls_certificate_allocate_credentials(&tls_server_cred) < 0 ||
	    gnutls_certificate_set_x509_key_file(tls_server_cred, cert, key, GNUTLS_X509_FMT_PEM) < 0 ||
	    gnutls_certificate_allocate_credentials(&tls_client_cred) < 0) {
		fprintf(stderr, "chat-tap: cannot use certificate %s and key %s\n", cert, key);
		return -1;
	}
	return 0;
}

/* A blocking TLS handshake on fd, as server (the client's side) or client. */
static gnutls_session_t tls_open(int fd, int server)
{
	gnutls_session_t s;
	gnutls_datum_t alpn = { (unsigned char *)"chat/1", 6 };
	int rc;

	if (gnutls_init(&s, server ? GNUTLS_SERVER : GNUTLS_CLIENT) < 0)
		return NULL;
	if (gnutls_set_default_priority(s) < 0 ||
	    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, server ? tls_server_cred : tls_client_cred) < 0 ||
	    gnutls_alpn_set_protocols(s, &alpn, 1, 0) < 0) {
		gnutls_deinit(s);
		return NULL;
	}
	gnutls_transport_set_int(s, fd);
	gnutls_handshake_set_timeout(s, 10000);
	do
		rc = gnutls_handshake(s);
	while (rc < 0 && !gnutls_error_is_fatal(rc));
	if (rc < 0) {
		fprintf(stderr, "chat-tap: TLS handshake with the %s failed: %s\n", server ? "client" : "relay",
		        gnutls_strerror(rc));
		gnutls_deinit(s);
		return NULL;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return s;
}

/* Read from side dir of a pair, through TLS if it has one. */
static ssize_t pair_read(struct pair *p, int dir, uint8_t *buf, size_t cap)
{
	if (!p->tls[dir])
		return read(p->fd[dir], buf, cap);
	ssize_t n;
	do /* non-blocking after the handshake: a record not yet whole, or only a ticket, is AGAIN */
		n = gnutls_record_recv(p->tls[dir], buf, cap);
	while (n == GNUTLS_E_INTERRUPTED);
	return n == GNUTLS_E_AGAIN ? -2 : n < 0 ? -1 : n;
}

static void pair_write(struct pair *p, int dir, const uint8_t *buf, size_t len)
{
	if (!p->tls[dir]) {
		write_all(p->fd[dir], buf, len);
		return;
	}
	for (size_t off = 0; off < len;) {
		ssize_t w = gnutls_record_send(p->tls[dir], buf + off, len - off);
		if (w == GNUTLS_E_AGAIN || w == GNUTLS_E_INTERRUPTED)
			continue;
		if (w < 0)
			return;
		off += (size_t)w;
	}
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* Send the frame waiting in p->later (if any) to the client. */
static void flush_later(struct pair *p, const char *what)
{
	if (!p->later.data)
		return;
	pair_write(p, 0, p->later.data, p->later.len);
	fprintf(stderr, "chat-tap: %s (mail id %llu)\n", what,
	        (unsigned long long)get_be64(p->later.data + 5));
	free(p->later.data);
	p->later.data = NULL;
}

/* A growing output frame for the rewrite. */
struct out {
	uint8_t buf[4 + 65536 + 65536];
	size_t len;
	int bad;
};

static void out_put(struct out *o, const uint8_t *p, size_t n)
{
	if (o->bad || o->len + n > sizeof(o->buf)) {
		o->bad = 1;
		return;
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

/* Copy n bytes from *in to o; fails if fewer remain. */
static void copy_bytes(struct out *o, const uint8_t **in, const uint8_t *end, size_t n)
{
	if (o->bad || (size_t)(end - *in) < n) {
		o->bad = 1;
		return;
	}
	out_put(o, *in, n);
	*in += n;
}

static void copy_str8(struct out *o, const uint8_t **in, const uint8_t *end)
{
	if (*in >= end) {
		o->bad = 1;
		return;
	}
	copy_bytes(o, in, end, 1 + (size_t)**in);
}

/* Skip the suite list at *in and write LIST in its place. */
static void swap_suites(struct out *o, const uint8_t **in, const uint8_t *end)
{
	if (*in >= end) {
		o->bad = 1;
		return;
	}
	size_t n = *(*in)++;
	for (size_t i = 0; i < n && !o->bad; i++) {
		if (*in >= end || (size_t)(end - *in) < 1 + (size_t)**in)
			o->bad = 1;
		else
			*in += 1 + (size_t)**in;
	}
	out_put(o, fake_suites, fake_len);
}

/* The frame body with every suite list replaced by LIST, in o (length
 * prefix included); 0 if the frame has no suite list or does not parse. */
static int rewrite_suites(struct out *o, const uint8_t *body, size_t blen)
{
	const uint8_t *in = body + 1, *end = body + blen;
	size_t count;

	o->len = 4;
	o->bad = 0;
	out_put(o, body, 1);
	switch (body[0]) {
	case MSG_WELCOME: /* version, suites */
		copy_bytes(o, &in, end, 1);
		swap_suites(o, &in, end);
		break;
	case MSG_OFFERED: /* from, suites */
		copy_str8(o, &in, end);
		swap_suites(o, &in, end);
		break;
	case MSG_ANSWERED: /* from, flag, suite, suites, reason */
		copy_str8(o, &in, end);
		copy_bytes(o, &in, end, 1);
		copy_str8(o, &in, end);
		swap_suites(o, &in, end);
		break;
	case MSG_WHO_LIST: /* u16 count x (name, suites, flags) */
	case MSG_MEMBERS:  /* room, u16 count x (name, suites) */
		if (body[0] == MSG_MEMBERS)
			copy_str8(o, &in, end);
		if (o->bad || end - in < 2)
			return 0;
		count = (size_t)in[0] << 8 | in[1];
		copy_bytes(o, &in, end, 2);
		for (size_t i = 0; i < count && !o->bad; i++) {
			copy_str8(o, &in, end);
			swap_suites(o, &in, end);
			if (body[0] == MSG_WHO_LIST)
				copy_bytes(o, &in, end, 1);
		}
		break;
	default:
		return 0;
	}
	copy_bytes(o, &in, end, (size_t)(end - in)); /* the rest as it was */
	if (o->bad)
		return 0;
	size_t n = o->len - 4;
	o->buf[0] = (uint8_t)(n >> 24);
	o->buf[1] = (uint8_t)(n >> 16);
	o->buf[2] = (uint8_t)(n >> 8);
	o->buf[3] = (uint8_t)n;
	return 1;
}

/* One whole frame from the relay (f points at its length prefix). */
static void relay_frame(struct pair *p, const uint8_t *f, size_t len)
{
	static struct out o;
	const uint8_t *body = f + 4;
	size_t blen = len - 4;

	if (rewrite && blen >= 1 && rewrite_suites(&o, body, blen)) {
		unsigned bit = 1u << (body[0] & 0x1f);
		if (!(p->said & bit)) {
			fprintf(stderr, "chat-tap: rewrote the suite lists in frame type 0x%02x\n", body[0]);
			p->said |= bit;
		}
		pair_write(p, 0, o.buf, o.len);
		return;
	}

	if (blen < MAIL_HEAD + 1 || body[0] != MSG_MAIL || body[MAIL_HEAD] != MSG_DELIVER) {
		pair_write(p, 0, f, len);
		return;
	}
	long n = ++mails;
	unsigned long long id = (unsigned long long)get_be64(body + 1);
	if (n != target_n) {
		pair_write(p, 0, f, len);
		if (mode == M_REORDER)
			flush_later(p, "forwarded the held MAIL after the next one");
		else
			flush_later(p, "injected the replayed copy");
		return;
	}
	switch (mode) {
	case M_DROP:
		fprintf(stderr, "chat-tap: dropped MAIL #%ld (mail id %llu)\n", n, id);
		return;
	case M_DUP:
		pair_write(p, 0, f, len);
		pair_write(p, 0, f, len);
		fprintf(stderr, "chat-tap: forwarded MAIL #%ld twice (mail id %llu)\n", n, id);
		return;
	case M_REORDER:
	case M_REPLAY:
		if (mode == M_REPLAY)
			pair_write(p, 0, f, len);
		p->later.data = malloc(len);
		if (!p->later.data)
			return;
		memcpy(p->later.data, f, len);
		p->later.len = len;
		p->later_ms = now_ms() + LATER_MS;
		if (mode == M_REPLAY)
			put_be64(p->later.data + 5, id + REPLAY_RAISE);
		fprintf(stderr, "chat-tap: %s MAIL #%ld (mail id %llu)\n",
		        mode == M_REPLAY ? "copied" : "held", n, id);
		return;
	case M_NONE:
		break;
	}
	pair_write(p, 0, f, len);
}

/* Bytes from the relay: whole frames are judged, a partial one waits. */
static int relay_bytes(struct pair *p, const uint8_t *src, size_t n)
{
	if (p->len + n > p->cap) {
		size_t cap = p->cap ? p->cap : 65536;
		while (cap < p->len + n)
			cap *= 2;
		uint8_t *grown = realloc(p->buf, cap);
		if (!grown)
			return -1;
		p->buf = grown;
		p->cap = cap;
	}
	memcpy(p->buf + p->len, src, n);
	p->len += n;
	size_t off = 0;
	while (p->len - off >= 4) {
		const uint8_t *f = p->buf + off;
		size_t flen = 4 + ((size_t)f[0] << 24 | (size_t)f[1] << 16 | (size_t)f[2] << 8 | f[3]);
		if (p->len - off < flen)
			break;
		relay_frame(p, f, flen);
		off += flen;
	}
	memmove(p->buf, p->buf + off, p->len - off);
	p->len -= off;
	return 0;
}

static void pair_close(struct pair *p)
{
	for (int d = 0; d < 2; d++)
		if (p->tls[d])
			gnutls_deinit(p->tls[d]);
	close(p->fd[0]);
	close(p->fd[1]);
	free(p->buf);
	free(p->later.data);
	memset(p, 0, sizeof(*p));
	p->fd[0] = p->fd[1] = -1;
}

static int usage(void)
{
	fprintf(stderr, "usage: chat-tap [--mail-replay N | --mail-reorder N | --mail-drop N | "
	        "--mail-dup N] [--rewrite-suites LIST] [--tls-terminate[-plain] CERT KEY] PORTFILE TARGET_PORT "
	        "RECORDFILE\n       [--inject FILE: written towards the relay at each SIGUSR2]\n");
	return 2;
}

/* LIST ("a,b,c") on the wire: u8 count, then each name as a str8. */
static int set_fake_suites(const char *list)
{
	size_t n = 0;

	fake_len = 1;
	for (const char *p = list; *p;) {
		size_t len = strcspn(p, ",");
		if (len == 0 || len > 32 || n == MAX_SUITES)
			return -1;
		fake_suites[fake_len++] = (uint8_t)len;
		memcpy(fake_suites + fake_len, p, len);
		fake_len += len;
		n++;
		p += len;
		if (*p == ',')
			p++;
	}
	fake_suites[0] = (uint8_t)n;
	return n ? 0 : -1;
}

int main(int argc, char **argv)
{
	static const char *const opts[] = { [M_REPLAY] = "--mail-replay", [M_REORDER] = "--mail-reorder",
	                                    [M_DROP] = "--mail-drop", [M_DUP] = "--mail-dup" };
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	static struct pair pairs[MAXPAIRS];
	int npairs = 0;
	FILE *rec, *pf;
	time_t deadline = time(NULL) + 600;

	while (argc > 4 && strncmp(argv[1], "--", 2) == 0) {
		if (strcmp(argv[1], "--inject") == 0) {
			FILE *f = fopen(argv[2], "rb");
			inject_len = f ? fread(inject_buf, 1, sizeof(inject_buf), f) : 0;
			if (f)
				fclose(f);
			if (!inject_len)
				return usage();
		} else if (strncmp(argv[1], "--tls-terminate", 15) == 0 && argc > 5) {
			tls_mode = strcmp(argv[1], "--tls-terminate-plain") == 0 ? 2 : 1;
			if ((tls_mode == 1 && strcmp(argv[1], "--tls-terminate")) || tls_setup(argv[2], argv[3]))
				return usage();
			argv++;
			argc--;
		} else if (strcmp(argv[1], "--rewrite-suites") == 0) {
			if (set_fake_suites(argv[2]))
				return usage();
			rewrite = 1;
		} else {
			enum mode was = mode;
			for (int m = M_REPLAY; m <= M_DUP; m++)
				if (strcmp(argv[1], opts[m]) == 0)
					mode = (enum mode)m;
			target_n = strtol(argv[2], NULL, 10);
			if (mode == was || target_n < 1)
				return usage();
		}
		argv += 2;
		argc -= 2;
	}
	if (argc != 4)
		return usage();
	signal(SIGTERM, on_term);
	signal(SIGUSR1, on_usr1); /* poll() is never restarted: a toggle acts at once */
	signal(SIGUSR2, on_usr2);
	signal(SIGPIPE, SIG_IGN);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 16) ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen)) {
		perror("chat-tap: listen");
		return 1;
	}
	rec = fopen(argv[3], "ab");
	pf = fopen(argv[1], "w");
	if (!rec || !pf) {
		perror("chat-tap: files");
		return 1;
	}
	fprintf(pf, "%d\n", ntohs(a.sin_port));
	fclose(pf);
	while (!stop && time(NULL) < deadline) {
		struct pollfd p[1 + 2 * MAXPAIRS];
		int n = 0;
		/* Stalled: pairs are polled for nothing (a negative fd is skipped),
		 * so their bytes wait in the kernel until the stall ends. */
		int stall = stalled;
		p[n++] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (int i = 0; i < npairs; i++) {
			p[n++] = (struct pollfd){ .fd = stall ? -1 : pairs[i].fd[0], .events = POLLIN };
			p[n++] = (struct pollfd){ .fd = stall ? -1 : pairs[i].fd[1], .events = POLLIN };
		}
		int ready = poll(p, (nfds_t)n, 200);
		if (inject_now && inject_len) {
			inject_now = 0;
			for (int i = 0; i < npairs; i++)
				write_all(pairs[i].fd[1], inject_buf, inject_len);
			fprintf(stderr, "chat-tap: injected %zu bytes towards the relay on %d connection(s)\n",
			        inject_len, npairs);
		}
		for (int i = 0; i < npairs && !stall; i++) /* a frame that waited long enough */
			if (pairs[i].later.data && now_ms() >= pairs[i].later_ms)
				flush_later(&pairs[i], mode == M_REORDER ? "forwarded the held MAIL late"
				                                         : "injected the replayed copy");
		if (ready <= 0)
			continue;
		int polled = npairs; /* a pair accepted below was not polled yet */
		if ((p[0].revents & POLLIN) && npairs < MAXPAIRS) {
			int c = accept(lfd, NULL, NULL);
			int s = socket(AF_INET, SOCK_STREAM, 0);
			struct sockaddr_in t = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
			inet_pton(AF_INET, "127.0.0.1", &t.sin_addr);
			if (c >= 0 && s >= 0 && connect(s, (struct sockaddr *)&t, sizeof(t)) == 0) {
				pairs[npairs] = (struct pair){ .fd = { c, s } };
				if (tls_mode && (!(pairs[npairs].tls[0] = tls_open(c, 1)) ||
				                 (tls_mode == 1 && !(pairs[npairs].tls[1] = tls_open(s, 0))))) {
					pair_close(&pairs[npairs]);
					continue;
				}
				npairs++;
			} else {
				if (c >= 0)
					close(c);
				if (s >= 0)
					close(s);
			}
		}
		for (int i = 0; i < polled; i++) {
			for (int dir = 0; dir < 2; dir++) {
				if (!(p[1 + 2 * i + dir].revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				uint8_t buf[65536];
				int more;
				do { /* through TLS: also what is decrypted already (poll does not see it) */
					ssize_t got = pair_read(&pairs[i], dir, buf, sizeof(buf));
					if (got == -2)
						break;
					if (got <= 0) {
						pair_close(&pairs[i]);
						break;
					}
					fwrite(buf, 1, (size_t)got, rec);
					fflush(rec);
					if (dir == 1 && (mode != M_NONE || rewrite)) {
						if (relay_bytes(&pairs[i], buf, (size_t)got)) {
							fprintf(stderr, "chat-tap: out of memory\n");
							pair_close(&pairs[i]);
							break;
						}
					} else {
						pair_write(&pairs[i], !dir, buf, (size_t)got);
					}
					more = pairs[i].tls[dir] && gnutls_record_check_pending(pairs[i].tls[dir]) > 0;
				} while (more);
				if (pairs[i].fd[0] < 0)
					break;
			}
		}
		for (int i = 0; i < npairs; i++) /* drop closed pairs */
			if (pairs[i].fd[0] < 0) {
				pairs[i] = pairs[npairs - 1];
				npairs--;
				i--;
			}
	}
	for (int i = 0; i < npairs; i++)
		pair_close(&pairs[i]);
	fclose(rec);
	return 0;
}
