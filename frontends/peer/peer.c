#include "peer.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <nettle/sha2.h>

#include "be.h"
#include "conn.h"
#include "directory.h"
#include "host.h"
#include "log.h"
#include "proto.h"

/* ---- the wire protocol (docs/PEER.md): one frame per message, type first */

#define PEER_PROTO "chat-peer/1"
#define HELLO_MAX 255      /* "chat-peer/1\nsuite S\nfrom A\nto B\n" is < 130 bytes */
#define REASON_MAX 512

enum {
	F_HELLO = 0x01, /* the preamble: PEER_PROTO, suite, from, to (text lines) */
	F_HS = 0x02,    /* one handshake message of the suite */
	F_DATA = 0x03,  /* u8 flags (bit 0: more chunks follow), one sealed chunk */
	F_ACK = 0x04,   /* sealed: SHA-256 of the whole message received */
	F_NACK = 0x05,  /* u8 code, u16 length, reason (UTF-8, <= 512 bytes); not authenticated */
};
#define DATA_MORE 1u

enum {
	N_MALFORMED = 1,
	N_VERSION,
	N_RECIPIENT,
	N_UNKNOWN_USER,
	N_SUITE,
	N_AUTH,
	N_INTEGRITY,
	N_TOO_BIG,
	N_TIMEOUT,
	N_UNEXPECTED,
	N_BUSY,
	N_INTERNAL,
	N_HANDSHAKE,
	N_LAST = N_HANDSHAKE,
};

static const char *const nack_names[] = {
	[N_MALFORMED] = "malformed", [N_VERSION] = "version", [N_RECIPIENT] = "wrong-recipient",
	[N_UNKNOWN_USER] = "unknown-user", [N_SUITE] = "suite", [N_AUTH] = "auth",
	[N_INTEGRITY] = "integrity", [N_TOO_BIG] = "too-big", [N_TIMEOUT] = "timeout",
	[N_UNEXPECTED] = "unexpected", [N_BUSY] = "busy", [N_INTERNAL] = "internal",
	[N_HANDSHAKE] = "handshake",
};

/* ---- per-connection state machine (the table in docs/PEER.md) */

enum pstate {
	PS_CONNECTING = 1, /* out: transport connect under way */
	PS_WAIT_HELLO,     /* in: waiting for the preamble */
	PS_HANDSHAKE,      /* both: the suite's handshake */
	PS_RECEIVING,      /* in: established, collecting DATA chunks */
	PS_WAIT_ACK,       /* out: message sent, waiting for the ACK */
	PS_CLOSING,        /* the outcome is decided and reported; flushing, then closed */
	PS_DONE,           /* closed; freed after this loop round */
};

static const char *const state_names[] = {
	[PS_CONNECTING] = "connecting", [PS_WAIT_HELLO] = "waiting for the preamble",
	[PS_HANDSHAKE] = "in the handshake", [PS_RECEIVING] = "receiving the message",
	[PS_WAIT_ACK] = "waiting for the acknowledgement", [PS_CLOSING] = "closing",
	[PS_DONE] = "done",
};

struct pconn {
	struct pconn *next;
	struct chat_peer *p;
	const struct chat_cipher_ops *ops; /* kept here: freeing happens after p may be gone */
	int outgoing;
	int state;
	struct chat_conn *conn;
	struct chat_timer *timer;
	void *session;
	char peer[CHAT_NAME_MAX + 1]; /* the other user; "" until the preamble names them */
	char addr[CHAT_ADDR_MAX];
	uint8_t hello[1 + HELLO_MAX]; /* the preamble frame: the suite's binding */
	size_t hello_len;
	char *password;               /* outgoing only */
	uint8_t *text;                /* outgoing: the message; incoming: reassembly */
	size_t text_len;
	size_t counted;               /* incoming: what the chunks so far count (on_data) */
	uint8_t digest[SHA256_DIGEST_SIZE]; /* outgoing: what the ACK must carry */
};

enum { IN_IDLE, IN_PASSWORD, IN_BODY };

struct chat_peer {
	struct chat_loop *loop;
	struct chat_peer_config cfg;
	chat_peer_event_cb cb;
	void *ui;
	void *listener;
	struct chat_watch *lwatch;
	char bound[CHAT_ADDR_MAX];
	struct pconn *conns;
	size_t n_in, n_out;
	uint8_t *scratch;
	size_t scratch_cap;
	int ending, done, freeing;

	/* The directory, read again when the file changes. */
	char *dir_path;
	struct chat_directory *dir;
	struct stat dir_st;
	int dir_warned;

	/* What the user is composing. */
	struct {
		int state;
		char to[CHAT_NAME_MAX + 1];
		char addr[CHAT_ADDR_MAX];
		int manual;
		char *password;
		char *buf;
		size_t len, cap;
		int started, too_big;
	} in;
};

static const struct chat_conn_cbs pconn_cbs;

/* ---- events */

static void emit(struct chat_peer *p, int kind, const char *peer, const char *code, size_t len,
                 const char *text)
{
	struct chat_peer_event ev = {
		.kind = kind,
		.peer = peer ? peer : "",
		.code = code ? code : "",
		.text = text ? text : "",
		.text_len = text ? len : 0,
	};
	p->cb(p->ui, &ev);
}

static void say(struct chat_peer *p, int kind, const char *peer, const char *code,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void say(struct chat_peer *p, int kind, const char *peer, const char *code,
                const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	emit(p, kind, peer, code, strlen(text), text);
}

static int scratch(struct chat_peer *p, size_t need)
{
	if (need <= p->scratch_cap)
		return 0;
	uint8_t *grown = realloc(p->scratch, need);
	if (!grown)
		return -1;
	p->scratch = grown;
	p->scratch_cap = need;
	return 0;
}

static const char *conn_err_code(int err)
{
	switch (err) {
	case CHAT_ERR_REFUSED: return "refused";
	case CHAT_ERR_TIMEOUT: return "timeout";
	case CHAT_ERR_UNREACHABLE: return "unreachable";
	case CHAT_ERR_RESOLVE: return "resolve";
	case CHAT_ERR_ADDRESS: return "address";
	default: return "connect";
	}
}

static int64_t now_ms(const struct chat_peer *p)
{
	return p->cfg.tp_host->unix_ms(p->cfg.tp_host);
}

/* ---- the directory */

/* The current directory, read again if the file changed since last time; if
 * it no longer loads, the previous version stays in use (with a warning). */
static const struct chat_directory *directory(struct chat_peer *p)
{
	struct stat st;
	char err[1024];

	if (!p->dir_path)
		return NULL;
	if (stat(p->dir_path, &st) != 0) {
		if (!p->dir_warned)
			say(p, CHAT_PEER_EV_WARNING, NULL, NULL, "cannot read directory %s: %s; using the "
			    "version read before", p->dir_path, strerror(errno));
		p->dir_warned = 1;
		return p->dir;
	}
	if (p->dir && st.st_ino == p->dir_st.st_ino && st.st_size == p->dir_st.st_size &&
	    st.st_mtim.tv_sec == p->dir_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == p->dir_st.st_mtim.tv_nsec)
		return p->dir;
	struct chat_directory *fresh = NULL;
	if (chat_directory_load(p->dir_path, &fresh, sizeof(err), err) != CHAT_OK) {
		if (!p->dir_warned)
			say(p, CHAT_PEER_EV_WARNING, NULL, NULL, "%s; using the version read before", err);
		p->dir_warned = 1;
		return p->dir;
	}
	chat_directory_free(p->dir);
	p->dir = fresh;
	p->dir_st = st;
	p->dir_warned = 0;
	chat_debug("directory %s (re)loaded: %zu contact(s)", p->dir_path, fresh->count);
	return p->dir;
}

/* ---- connection lifecycle */

static void pconn_free(void *arg)
{
	struct pconn *pc = arg;

	if (pc->session)
		pc->ops->session_free(pc->session);
	if (pc->password) {
		chat_wipe(pc->password, strlen(pc->password));
		free(pc->password);
	}
	if (pc->text) {
		chat_wipe(pc->text, pc->text_len);
		free(pc->text);
	}
	chat_wipe(pc, sizeof(*pc));
	free(pc);
}

static void check_done(struct chat_peer *p)
{
	if (p->ending && !p->done && !p->conns && !p->freeing) {
		p->done = 1;
		chat_loop_stop(p->loop);
	}
}

/* Report a failure of this exchange: one event and one log line. */
static void report(struct pconn *pc, const char *code, const char *text)
{
	struct chat_peer *p = pc->p;

	if (p->freeing)
		return;
	chat_warn("%s %s %s: %s", pc->outgoing ? "message to" : "message from",
	          pc->peer[0] ? pc->peer : "?", pc->addr, text);
	emit(p, CHAT_PEER_EV_ERROR, pc->peer, code, strlen(text), text);
}

/* Queue one frame of type + body; 0, or -1 if the connection is gone. */
static int send_frame(struct pconn *pc, int type, size_t len, const uint8_t *body)
{
	struct chat_peer *p = pc->p;
	int in_place = p->scratch && body == p->scratch + 1;

	/* Callers that built the body in the scratch buffer sized it already. */
	if (!pc->conn || (!in_place && scratch(p, len + 1)))
		return -1;
	if (!in_place)
		memmove(p->scratch + 1, body, len);
	p->scratch[0] = (uint8_t)type;
	if (chat_conn_send(pc->conn, len + 1, p->scratch) != CHAT_OK)
		return -1;
	return pc->conn ? 0 : -1;
}

static void send_nack(struct pconn *pc, int code, const char *reason)
{
	uint8_t body[3 + REASON_MAX];
	size_t n = strlen(reason);

	if (n > REASON_MAX)
		n = REASON_MAX;
	body[0] = (uint8_t)code;
	chat_be16_put(body + 1, (uint16_t)n);
	memcpy(body + 3, reason, n);
	send_frame(pc, F_NACK, 3 + n, body);
}

/* The exchange failed: report it, tell the other end (nack code, 0 for no
 * NACK frame), close once that is written. */
static void fail(struct pconn *pc, const char *code, int nack, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void fail(struct pconn *pc, const char *code, int nack, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	if (pc->state >= PS_CLOSING)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	pc->state = PS_CLOSING;
	report(pc, code, text);
	if (nack && pc->conn)
		send_nack(pc, nack, text);
	if (pc->conn)
		chat_conn_close_after_flush(pc->conn, code);
}

/* ---- sending side helpers */

/* Plaintext bytes per chunk so that a sealed chunk and its 2-byte head fit a frame. */
static size_t chunk_size(const struct pconn *pc)
{
	const struct chat_cipher_ops *ops = pc->p->cfg.suite->desc->ops.cipher;
	size_t limit = pc->p->cfg.max_frame - 2, n = limit;

	while (n > CHAT_PEER_CHUNK_MIN && (ops->sealed_size(pc->session, n) > limit ||
	                                   ops->sealed_size(pc->session, n) == 0)) {
		size_t s = ops->sealed_size(pc->session, n);
		size_t cut = s > limit ? s - limit + 16 : n / 2;
		n = cut < n ? n - cut : CHAT_PEER_CHUNK_MIN;
	}
	return n;
}

/* Seal the message in chunks, each one DATA frame. */
static int send_message(struct pconn *pc)
{
	struct chat_peer *p = pc->p;
	const struct chat_cipher_ops *ops = p->cfg.suite->desc->ops.cipher;
	size_t chunk = chunk_size(pc), off = 0;

	do {
		size_t n = pc->text_len - off < chunk ? pc->text_len - off : chunk;
		size_t cap = ops->sealed_size(pc->session, n) + 2;
		if (scratch(p, cap))
			return CHAT_ERR_NOMEM;
		struct chat_buf dst = { .data = p->scratch + 2, .cap = cap - 2 };
		int rc = ops->seal(pc->session, n, &dst, pc->text + off);
		if (rc)
			return rc;
		off += n;
		p->scratch[1] = off < pc->text_len ? DATA_MORE : 0;
		if (send_frame(pc, F_DATA, dst.len + 1, p->scratch + 1))
			return CHAT_ERR_CLOSED;
	} while (off < pc->text_len);
	return CHAT_OK;
}

static void log_message(struct chat_peer *p, int direction, const char *peer, size_t len,
                        const uint8_t *text)
{
	char err[512];

	if (!p->cfg.log)
		return;
	if (chat_seclog_append(p->cfg.log, now_ms(p), direction, peer, len, (const char *)text,
	                       sizeof(err), err) != CHAT_OK) {
		chat_err("%s", err);
		say(p, CHAT_PEER_EV_ERROR, peer, "log", "not logged: %s", err);
	}
}

/* ---- the cipher session */

static int start_session(struct pconn *pc, const char *password)
{
	const struct chat_cipher_ops *ops = pc->p->cfg.suite->desc->ops.cipher;
	struct chat_cipher_params prm = {
		.size = sizeof(prm),
		.role = pc->outgoing ? CHAT_ROLE_INITIATOR : CHAT_ROLE_RESPONDER,
		.local_id = pc->p->cfg.user,
		.peer_id = pc->peer,
		.suite = pc->p->cfg.suite->desc->name,
		.secret = (const uint8_t *)password,
		.secret_len = password ? strlen(password) : 0,
		.binding = pc->hello,
		.binding_len = pc->hello_len,
	};

	return ops->session_new(&pc->p->cfg.suite->host, &prm, &pc->session);
}

/* One handshake step with src (may be empty); sends what it produces. */
static void step(struct pconn *pc, size_t len, const uint8_t *src)
{
	struct chat_peer *p = pc->p;
	const struct chat_cipher_ops *ops = p->cfg.suite->desc->ops.cipher;
	size_t cap = p->cfg.max_frame;

	if (scratch(p, cap + 1)) {
		fail(pc, "internal", N_INTERNAL, "out of memory");
		return;
	}
	struct chat_buf dst = { .data = p->scratch + 1, .cap = cap - 1 };
	int rc = ops->handshake(pc->session, len, &dst, src);
	if (rc < 0) {
		/* The suite's last word (e.g. its nack) first, then ours. */
		if (dst.len && send_frame(pc, F_HS, dst.len, dst.data))
			dst.len = 0;
		if (rc == CHAT_ERR_AUTH)
			fail(pc, "auth", N_AUTH, "authentication failed for %s", pc->peer);
		else
			fail(pc, "handshake", N_HANDSHAKE, "handshake with %s failed (%s): %s", pc->peer,
			     p->cfg.suite->desc->name, chat_strerror(rc));
		return;
	}
	if (dst.len && send_frame(pc, F_HS, dst.len, dst.data))
		return;
	if (rc != CHAT_HS_ESTABLISHED)
		return;
	if (!pc->outgoing) {
		pc->state = PS_RECEIVING;
		return;
	}
	rc = send_message(pc);
	if (rc == CHAT_ERR_CLOSED || !pc->conn)
		return;
	if (rc) {
		fail(pc, "seal", N_INTERNAL, "cannot encrypt the message for %s: %s", pc->peer,
		     chat_strerror(rc));
		return;
	}
	pc->state = PS_WAIT_ACK;
}

/* ---- frame handlers (each one checks what it was given) */

/* Copy "KEY value\n" at *s into dst; 0 or -1. */
static int take_line(const char **s, const char *key, char *dst, size_t cap)
{
	size_t k = strlen(key), n;
	const char *nl;

	if (strncmp(*s, key, k) != 0)
		return -1;
	nl = strchr(*s + k, '\n');
	if (!nl || (n = (size_t)(nl - (*s + k))) == 0 || n >= cap)
		return -1;
	memcpy(dst, *s + k, n);
	dst[n] = '\0';
	*s = nl + 1;
	return 0;
}

static void on_hello(struct pconn *pc, size_t len, const uint8_t *f)
{
	struct chat_peer *p = pc->p;
	char text[HELLO_MAX + 1], suite[CHAT_NAME_MAX + 1], from[CHAT_NAME_MAX + 1];
	char to[CHAT_NAME_MAX + 1];
	const char *s = text;

	if (len - 1 > HELLO_MAX || memchr(f + 1, '\0', len - 1)) {
		fail(pc, "malformed", N_MALFORMED, "malformed preamble from %s", pc->addr);
		return;
	}
	memcpy(text, f + 1, len - 1);
	text[len - 1] = '\0';
	if (strncmp(text, "chat-peer/", 10) != 0) {
		fail(pc, "malformed", N_MALFORMED, "not a chat-peer connection from %s", pc->addr);
		return;
	}
	if (strncmp(text, PEER_PROTO "\n", sizeof(PEER_PROTO)) != 0) {
		fail(pc, "version", N_VERSION, "%s speaks %.*s; this peer speaks " PEER_PROTO, pc->addr,
		     (int)strcspn(text, "\n"), text);
		return;
	}
	s += sizeof(PEER_PROTO);
	if (take_line(&s, "suite ", suite, sizeof(suite)) || take_line(&s, "from ", from, sizeof(from)) ||
	    take_line(&s, "to ", to, sizeof(to)) || *s || !chat_plugin_name_valid(suite) ||
	    chat_name_check(strlen(from), from) || chat_name_check(strlen(to), to)) {
		fail(pc, "malformed", N_MALFORMED, "malformed preamble from %s", pc->addr);
		return;
	}
	snprintf(pc->peer, sizeof(pc->peer), "%s", from);
	memcpy(pc->hello, f, len);
	pc->hello_len = len;
	if (strcmp(to, p->cfg.user) != 0) {
		fail(pc, "wrong-recipient", N_RECIPIENT, "%s wrote to %s, but this is %s", from, to,
		     p->cfg.user);
		return;
	}
	if (strcmp(suite, p->cfg.suite->desc->name) != 0) {
		fail(pc, "suite", N_SUITE, "%s uses suite %s; %s accepts only %s", from, suite,
		     p->cfg.user, p->cfg.suite->desc->name);
		return;
	}
	const struct chat_contact *c = chat_directory_find(directory(p), from);
	if (!c) {
		fail(pc, "unknown-user", N_UNKNOWN_USER, "unknown user %s (from %s): %s has no such contact",
		     from, pc->addr, p->cfg.user);
		return;
	}
	int rc = start_session(pc, c->password);
	if (rc) {
		fail(pc, "session", N_INTERNAL, "cannot start a %s session with %s: %s",
		     p->cfg.suite->desc->name, from, chat_strerror(rc));
		return;
	}
	pc->state = PS_HANDSHAKE;
	chat_debug("message from %s (%s): preamble accepted", from, pc->addr);
}

static void on_data(struct pconn *pc, size_t len, const uint8_t *f)
{
	struct chat_peer *p = pc->p;
	const struct chat_cipher_ops *ops = p->cfg.suite->desc->ops.cipher;

	if (len < 2) {
		fail(pc, "malformed", N_MALFORMED, "empty data frame from %s", pc->peer);
		return;
	}
	int more = f[1] & DATA_MORE;
	if (scratch(p, len + 64)) {
		fail(pc, "internal", N_INTERNAL, "out of memory");
		return;
	}
	struct chat_buf dst = { .data = p->scratch, .cap = p->scratch_cap };
	int rc = ops->open(pc->session, len - 2, &dst, f + 2);
	if (rc) {
		fail(pc, rc == CHAT_ERR_INTEGRITY ? "integrity" : rc == CHAT_ERR_REPLAY ? "replay" :
		     rc == CHAT_ERR_STALE ? "stale" : rc == CHAT_ERR_MALFORMED ? "malformed" : "open",
		     N_INTEGRITY, "message from %s rejected: %s", pc->peer, chat_strerror(rc));
		return;
	}
	/* Every chunk counts, empty or not: one before the last counts at least
	 * CHAT_PEER_CHUNK_MIN (no sender cuts smaller ones), so a stream of
	 * empty "more" chunks reaches the limit like text does. */
	size_t counts = more && dst.len < CHAT_PEER_CHUNK_MIN ? CHAT_PEER_CHUNK_MIN : dst.len;
	if (counts > CHAT_PEER_MAX_MESSAGE - pc->counted) {
		chat_wipe(dst.data, dst.len);
		fail(pc, "too-big", N_TOO_BIG, "message from %s exceeds %d bytes (every chunk but the "
		     "last counts at least %d)", pc->peer, CHAT_PEER_MAX_MESSAGE, CHAT_PEER_CHUNK_MIN);
		return;
	}
	pc->counted += counts;
	uint8_t *grown = realloc(pc->text, pc->text_len + dst.len + 1);
	if (!grown) {
		chat_wipe(dst.data, dst.len);
		fail(pc, "internal", N_INTERNAL, "out of memory");
		return;
	}
	pc->text = grown;
	memcpy(pc->text + pc->text_len, dst.data, dst.len);
	pc->text_len += dst.len;
	chat_wipe(dst.data, dst.len);
	if (more)
		return;

	/* The whole message is in and every chunk opened: show, log, acknowledge. */
	emit(p, CHAT_PEER_EV_MSG, pc->peer, NULL, pc->text_len, (const char *)pc->text);
	log_message(p, CHAT_SECLOG_RECEIVED, pc->peer, pc->text_len, pc->text);
	uint8_t digest[SHA256_DIGEST_SIZE];
	struct sha256_ctx h;
	sha256_init(&h);
	sha256_update(&h, pc->text_len, pc->text);
	sha256_digest(&h, sizeof(digest), digest);
	size_t cap = ops->sealed_size(pc->session, sizeof(digest)) + 1;
	pc->state = PS_CLOSING;
	if (scratch(p, cap)) {
		report(pc, "internal", "out of memory: no acknowledgement sent");
		chat_conn_close(pc->conn, CHAT_ERR_NOMEM, "out of memory");
		return;
	}
	dst = (struct chat_buf){ .data = p->scratch + 1, .cap = cap - 1 };
	rc = ops->seal(pc->session, sizeof(digest), &dst, digest);
	if (rc) {
		report(pc, "seal", "cannot seal the acknowledgement");
		send_nack(pc, N_INTERNAL, "cannot seal the acknowledgement");
	} else if (send_frame(pc, F_ACK, dst.len, dst.data)) {
		return;
	}
	if (pc->conn)
		chat_conn_close_after_flush(pc->conn, "acknowledged");
}

static void on_ack(struct pconn *pc, size_t len, const uint8_t *f)
{
	struct chat_peer *p = pc->p;
	const struct chat_cipher_ops *ops = p->cfg.suite->desc->ops.cipher;

	if (scratch(p, len + 64)) {
		fail(pc, "internal", 0, "out of memory");
		return;
	}
	struct chat_buf dst = { .data = p->scratch, .cap = p->scratch_cap };
	int rc = ops->open(pc->session, len - 1, &dst, f + 1);
	if (rc || dst.len != sizeof(pc->digest) || !chat_memeq(dst.data, pc->digest, sizeof(pc->digest))) {
		fail(pc, "bad-ack", N_INTEGRITY, "the acknowledgement from %s does not verify (%s): the "
		     "message may not have been delivered", pc->peer,
		     rc ? chat_strerror(rc) : "it is for another message");
		return;
	}
	pc->state = PS_CLOSING;
	emit(p, CHAT_PEER_EV_DELIVERED, pc->peer, NULL, 0, NULL);
	log_message(p, CHAT_SECLOG_SENT, pc->peer, pc->text_len, pc->text);
	chat_info("message to %s (%s) delivered", pc->peer, pc->addr);
	if (pc->conn)
		chat_conn_close(pc->conn, CHAT_OK, "delivered");
}

/* The other end refused or gave up.  Its reason is not authenticated. */
static void on_nack(struct pconn *pc, size_t len, const uint8_t *f)
{
	char reason[REASON_MAX + 1];
	size_t n;

	if (len < 4 || f[1] < 1 || f[1] > N_LAST || (n = chat_be16_get(f + 2)) != len - 4 ||
	    n > REASON_MAX) {
		fail(pc, "nack", 0, "%s refused (malformed refusal)", pc->peer[0] ? pc->peer : pc->addr);
		return;
	}
	memcpy(reason, f + 4, n);
	reason[n] = '\0';
	if (f[1] == N_AUTH)
		fail(pc, "auth", 0, "authentication failed for %s (%s says: %s)", pc->peer, pc->peer, reason);
	else if (f[1] == N_TIMEOUT)
		fail(pc, "timeout", 0, "%s timed out (%s says: %s)", pc->peer, pc->peer, reason);
	else
		fail(pc, "nack", 0, "%s: %s", nack_names[f[1]], reason);
}

static void out_of_place(struct pconn *pc, int type)
{
	fail(pc, "unexpected", N_UNEXPECTED, "unexpected frame type 0x%02x from %s while %s", type,
	     pc->peer[0] ? pc->peer : pc->addr, state_names[pc->state]);
}

/* ---- the four events of a connection */

static void ev_connected(struct chat_conn *conn, void *arg)
{
	struct pconn *pc = arg;
	struct chat_peer *p = pc->p;
	int n, rc;

	(void)conn;
	if (pc->state != PS_CONNECTING) {
		out_of_place(pc, 0);
		return;
	}
	n = snprintf((char *)pc->hello + 1, sizeof(pc->hello) - 1,
	             PEER_PROTO "\nsuite %s\nfrom %s\nto %s\n", p->cfg.suite->desc->name, p->cfg.user,
	             pc->peer);
	pc->hello[0] = F_HELLO;
	pc->hello_len = (size_t)n + 1;
	if (send_frame(pc, F_HELLO, pc->hello_len - 1, pc->hello + 1))
		return;
	rc = start_session(pc, pc->password);
	chat_wipe(pc->password, strlen(pc->password));
	if (rc) {
		fail(pc, rc == CHAT_ERR_NOSECRET ? "no-secret" : "session", N_INTERNAL,
		     "cannot start a %s session with %s: %s", p->cfg.suite->desc->name, pc->peer,
		     chat_strerror(rc));
		return;
	}
	pc->state = PS_HANDSHAKE;
	step(pc, 0, NULL);
}

static void ev_frame(struct chat_conn *conn, size_t len, const uint8_t *f, void *arg)
{
	struct pconn *pc = arg;
	int type = len ? f[0] : -1;

	(void)conn;
	if (type == F_NACK && pc->state >= PS_WAIT_HELLO && pc->state < PS_CLOSING) {
		on_nack(pc, len, f);
		return;
	}
	switch (pc->state) {
	case PS_WAIT_HELLO:
		if (type == F_HELLO)
			on_hello(pc, len, f);
		else
			fail(pc, "malformed", N_MALFORMED, "%s did not start with a preamble", pc->addr);
		return;
	case PS_HANDSHAKE:
		if (type == F_HS)
			step(pc, len - 1, f + 1);
		else
			out_of_place(pc, type);
		return;
	case PS_RECEIVING:
		if (type == F_DATA)
			on_data(pc, len, f);
		else
			out_of_place(pc, type);
		return;
	case PS_WAIT_ACK:
		if (type == F_ACK)
			on_ack(pc, len, f);
		else
			out_of_place(pc, type);
		return;
	case PS_CLOSING:
		return; /* the outcome is decided; the connection is going */
	default:
		out_of_place(pc, type);
	}
}

static void ev_closed(struct chat_conn *conn, int err, const char *reason, void *arg)
{
	struct pconn *pc = arg;
	struct chat_peer *p = pc->p;
	char text[512];

	(void)conn;
	pc->conn = NULL;
	if (pc->timer) {
		chat_loop_timer_cancel(p->loop, pc->timer);
		pc->timer = NULL;
	}
	switch (pc->state) {
	case PS_CONNECTING:
		snprintf(text, sizeof(text), "cannot connect to %s at %s: %s", pc->peer, pc->addr, reason);
		report(pc, conn_err_code(err), text);
		break;
	case PS_WAIT_HELLO:
		/* Nothing was said: a port scan or a peer that gave up.  Log only. */
		chat_info("connection from %s closed before a preamble: %s", pc->addr, reason);
		break;
	case PS_HANDSHAKE:
		snprintf(text, sizeof(text), "%s closed the connection during the handshake: %s",
		         pc->peer, reason);
		report(pc, "closed", text);
		break;
	case PS_RECEIVING:
		snprintf(text, sizeof(text), "%s closed the connection before the whole message "
		         "arrived: %s; nothing shown", pc->peer, reason);
		report(pc, "closed", text);
		break;
	case PS_WAIT_ACK:
		snprintf(text, sizeof(text), "connection to %s closed before the acknowledgement (%s): "
		         "the message may not have been delivered", pc->peer, reason);
		report(pc, "closed", text);
		break;
	default:
		if (err && err != CHAT_ERR_CLOSED)
			chat_debug("connection %s ended: %s", pc->addr, reason);
		break;
	}
	pc->state = PS_DONE;
	for (struct pconn **pp = &p->conns; *pp; pp = &(*pp)->next) {
		if (*pp == pc) {
			*pp = pc->next;
			break;
		}
	}
	if (pc->outgoing)
		p->n_out--;
	else
		p->n_in--;
	if (chat_loop_defer(p->loop, pconn_free, pc) != CHAT_OK)
		pconn_free(pc);
	check_done(p);
}

static long long ev_timeout(struct chat_loop *loop, void *arg)
{
	struct pconn *pc = arg;

	(void)loop;
	pc->timer = NULL;
	if (!pc->conn)
		return -1;
	if (pc->state == PS_CONNECTING) {
		chat_conn_close(pc->conn, CHAT_ERR_TIMEOUT, "timed out (peer.timeout)");
	} else if (pc->state == PS_CLOSING) {
		chat_conn_close(pc->conn, CHAT_ERR_TIMEOUT, "timed out while closing");
	} else {
		fail(pc, "timeout", N_TIMEOUT, "the exchange with %s did not finish within %d ms "
		     "(peer.timeout); it was %s", pc->peer[0] ? pc->peer : pc->addr,
		     pc->p->cfg.timeout_ms, state_names[pc->state]);
		/* Do not wait for a peer that does not read either. */
		if (pc->conn && pc->state == PS_CLOSING)
			chat_loop_timer_add(pc->p->loop, 1000, ev_timeout, pc, &pc->timer);
	}
	return -1;
}

static const struct chat_conn_cbs pconn_cbs = {
	.on_frame = ev_frame,
	.on_close = ev_closed,
	.on_connect = ev_connected,
};

static struct pconn *pconn_new(struct chat_peer *p, int outgoing)
{
	struct pconn *pc = calloc(1, sizeof(*pc));

	if (!pc)
		return NULL;
	pc->p = p;
	pc->ops = p->cfg.suite->desc->ops.cipher;
	pc->outgoing = outgoing;
	return pc;
}

/* Link a pconn whose connection exists and arm its whole-exchange timer. */
static void pconn_start(struct chat_peer *p, struct pconn *pc)
{
	pc->next = p->conns;
	p->conns = pc;
	if (pc->outgoing)
		p->n_out++;
	else
		p->n_in++;
	if (chat_loop_timer_add(p->loop, (uint64_t)p->cfg.timeout_ms, ev_timeout, pc, &pc->timer))
		chat_conn_close(pc->conn, CHAT_ERR_NOMEM, "cannot arm the timeout");
}

/* ---- listening */

static long long resume_accept(struct chat_loop *loop, void *arg)
{
	struct chat_peer *p = arg;

	if (p->lwatch)
		chat_loop_modify(loop, p->lwatch, CHAT_EV_READ);
	return -1;
}

static void on_accept(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct chat_peer *p = arg;
	const struct chat_transport_ops *tp = p->cfg.tp;
	struct chat_conn_limits lim = { .max_frame = p->cfg.max_frame, .out_limit = 1u << 20 };

	(void)fd;
	(void)events;
	for (int i = 0; i < 16 && p->listener; i++) {
		void *handle = NULL;
		int rc = tp->accept(p->listener, &handle);
		if (rc == CHAT_ERR_AGAIN)
			return;
		if (rc != CHAT_OK) {
			chat_warn("accept failed: %s; pausing for 1 s", chat_strerror(rc));
			if (chat_loop_modify(loop, p->lwatch, 0) == CHAT_OK)
				chat_loop_timer_add(loop, 1000, resume_accept, p, NULL);
			return;
		}
		char addr[CHAT_ADDR_MAX];
		if (tp->address(handle, 0, sizeof(addr), addr) != CHAT_OK)
			snprintf(addr, sizeof(addr), "?");
		if (p->n_in >= CHAT_PEER_MAX_CONNS) {
			chat_warn("connection from %s refused: %d incoming connections already", addr,
			          CHAT_PEER_MAX_CONNS);
			tp->close(handle);
			continue;
		}
		struct pconn *pc = pconn_new(p, 0);
		if (!pc) {
			tp->close(handle);
			continue;
		}
		pc->state = PS_WAIT_HELLO;
		snprintf(pc->addr, sizeof(pc->addr), "%s", addr);
		if (chat_conn_new(p->loop, tp, handle, &lim, &pconn_cbs, pc, &pc->conn) != CHAT_OK) {
			free(pc);
			continue;
		}
		chat_debug("connection from %s", addr);
		pconn_start(p, pc);
	}
}

static void stop_listening(struct chat_peer *p)
{
	if (p->lwatch)
		chat_loop_remove(p->loop, p->lwatch);
	p->lwatch = NULL;
	if (p->listener)
		p->cfg.tp->listener_close(p->listener);
	p->listener = NULL;
}

/* ---- sending */

static void contact_address(const struct chat_contact *c, size_t cap, char *dst)
{
	if (strchr(c->ip, ':'))
		snprintf(dst, cap, "[%s]:%u", c->ip, c->port);
	else
		snprintf(dst, cap, "%s:%u", c->ip, c->port);
}

int chat_peer_send(struct chat_peer *p, const char *user, const char *address,
                   const char *password, size_t len, const char *text)
{
	struct chat_conn_limits lim = { .max_frame = p->cfg.max_frame, .out_limit = 1u << 20 };
	char addr[CHAT_ADDR_MAX];
	const char *why = chat_name_check(strlen(user), user);
	struct pconn *pc;
	int rc;

	if (why) {
		say(p, CHAT_PEER_EV_ERROR, NULL, "usage", "username '%.40s' %s", user, why);
		return CHAT_ERR_INVALID;
	}
	if (len == 0) {
		say(p, CHAT_PEER_EV_ERROR, user, "usage", "empty message to %s; not sent", user);
		return CHAT_ERR_INVALID;
	}
	if (len > CHAT_PEER_MAX_MESSAGE) {
		say(p, CHAT_PEER_EV_ERROR, user, "too-big", "message of %zu bytes exceeds %d bytes; not sent",
		    len, CHAT_PEER_MAX_MESSAGE);
		return CHAT_ERR_INVALID;
	}
	if (p->ending) {
		say(p, CHAT_PEER_EV_ERROR, user, "undelivered", "shutting down: message to %s not sent", user);
		return CHAT_ERR_STATE;
	}
	if (p->n_out >= CHAT_PEER_MAX_CONNS) {
		say(p, CHAT_PEER_EV_ERROR, user, "busy", "%d messages are already on their way; "
		    "message to %s not sent", CHAT_PEER_MAX_CONNS, user);
		return CHAT_ERR_NOSPACE;
	}
	if (!password) {
		const struct chat_directory *dir = directory(p);
		const struct chat_contact *c = chat_directory_find(dir, user);
		if (!dir) {
			say(p, CHAT_PEER_EV_ERROR, user, "no-directory", "no directory (peer.directory): "
			    "write to %s as /send %s@HOST:PORT", user, user);
			return CHAT_ERR_NOTFOUND;
		}
		if (!c) {
			say(p, CHAT_PEER_EV_ERROR, user, "unknown-user", "%s is not in the directory %s",
			    user, dir->path);
			return CHAT_ERR_NOTFOUND;
		}
		if (!c->ip[0] || !c->port) {
			say(p, CHAT_PEER_EV_ERROR, user, "no-address", "%s has no ip and port in the "
			    "directory %s", user, dir->path);
			return CHAT_ERR_NOTFOUND;
		}
		contact_address(c, sizeof(addr), addr);
		password = c->password;
	} else {
		snprintf(addr, sizeof(addr), "%s", address);
	}
	if (!(pc = pconn_new(p, 1)) || !(pc->password = strdup(password)) ||
	    !(pc->text = malloc(len))) {
		if (pc)
			pconn_free(pc);
		say(p, CHAT_PEER_EV_ERROR, user, "internal", "out of memory: message to %s not sent", user);
		return CHAT_ERR_NOMEM;
	}
	pc->state = PS_CONNECTING;
	snprintf(pc->peer, sizeof(pc->peer), "%s", user);
	snprintf(pc->addr, sizeof(pc->addr), "%s", addr);
	memcpy(pc->text, text, len);
	pc->text_len = len;
	struct sha256_ctx h;
	sha256_init(&h);
	sha256_update(&h, len, pc->text);
	sha256_digest(&h, sizeof(pc->digest), pc->digest);
	emit(p, CHAT_PEER_EV_SENDING, user, NULL, strlen(addr), addr);
	rc = chat_conn_connect(p->loop, p->cfg.tp, p->cfg.tp_host, addr, &lim, &pconn_cbs, pc, &pc->conn);
	if (rc) {
		char msg[512];
		snprintf(msg, sizeof(msg), "cannot connect to %s at %s: %s", user, addr, chat_strerror(rc));
		report(pc, conn_err_code(rc), msg);
		pconn_free(pc);
		return CHAT_OK;
	}
	pconn_start(p, pc);
	return CHAT_OK;
}

/* ---- input: commands and composing */

static void compose_reset(struct chat_peer *p)
{
	if (p->in.password) {
		chat_wipe(p->in.password, strlen(p->in.password));
		free(p->in.password);
	}
	if (p->in.buf)
		chat_wipe(p->in.buf, p->in.cap);
	free(p->in.buf);
	memset(&p->in, 0, sizeof(p->in));
}

static void compose_line(struct chat_peer *p, size_t len, const char *line)
{
	if (len == 1 && line[0] == '.') {
		if (p->in.too_big)
			say(p, CHAT_PEER_EV_ERROR, p->in.to, "too-big", "message exceeds %d bytes; not sent",
			    CHAT_PEER_MAX_MESSAGE);
		else
			chat_peer_send(p, p->in.to, p->in.manual ? p->in.addr : NULL, p->in.password,
			               p->in.len, p->in.buf);
		compose_reset(p);
		return;
	}
	if (len && line[0] == '.') { /* "..x" is ".x": dot-stuffing, as in SMTP */
		line++;
		len--;
	}
	size_t sep = p->in.started ? 1 : 0, need = p->in.len + sep + len;
	p->in.started = 1;
	if (p->in.too_big || need > CHAT_PEER_MAX_MESSAGE) {
		p->in.too_big = 1;
		return;
	}
	if (need > p->in.cap) {
		size_t cap = p->in.cap ? p->in.cap : 256;
		while (cap < need)
			cap *= 2;
		char *grown = malloc(cap);
		if (!grown) {
			p->in.too_big = 1;
			return;
		}
		if (p->in.buf) {
			memcpy(grown, p->in.buf, p->in.len);
			chat_wipe(p->in.buf, p->in.cap);
			free(p->in.buf);
		}
		p->in.buf = grown;
		p->in.cap = cap;
	}
	if (sep)
		p->in.buf[p->in.len++] = '\n';
	if (len)
		memcpy(p->in.buf + p->in.len, line, len);
	p->in.len += len;
}

static void cmd_help(struct chat_peer *p)
{
	static const char *const lines[] = {
		"/send USER              write to USER of the directory; then the message lines,",
		"                        ended by a line holding only '.' (start a line with '..' to begin it with '.')",
		"/send USER@HOST:PORT    write to an address by hand; the next line is USER's password",
		"/contacts               the users in the directory",
		"/quit                   wait for messages under way, then leave (end of input does the same)",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		emit(p, CHAT_PEER_EV_HELP, NULL, NULL, strlen(lines[i]), lines[i]);
}

static void command(struct chat_peer *p, size_t len, const char *line)
{
	char buf[CHAT_NAME_MAX + CHAT_ADDR_MAX + 16], *arg, *at;

	if (len >= sizeof(buf)) {
		say(p, CHAT_PEER_EV_ERROR, NULL, "usage", "command too long (see /help)");
		return;
	}
	memcpy(buf, line, len);
	buf[len] = '\0';
	arg = strchr(buf, ' ');
	if (arg) {
		*arg++ = '\0';
		while (*arg == ' ')
			arg++;
		for (char *e = arg + strlen(arg); e > arg && e[-1] == ' ';)
			*--e = '\0';
	}
	if (!strcmp(buf, "/help")) {
		cmd_help(p);
	} else if (!strcmp(buf, "/quit")) {
		chat_peer_input_end(p);
	} else if (!strcmp(buf, "/contacts")) {
		const struct chat_directory *dir = directory(p);
		if (!dir) {
			say(p, CHAT_PEER_EV_INFO, NULL, NULL, "no directory");
			return;
		}
		for (size_t i = 0; i < dir->count; i++) {
			char a[CHAT_ADDR_MAX] = "(no address)";
			if (dir->contacts[i].ip[0] && dir->contacts[i].port)
				contact_address(&dir->contacts[i], sizeof(a), a);
			say(p, CHAT_PEER_EV_INFO, NULL, NULL, "contact %s %s", dir->contacts[i].username, a);
		}
		say(p, CHAT_PEER_EV_INFO, NULL, NULL, "%zu contact(s) in %s", dir->count, dir->path);
	} else if (!strcmp(buf, "/send")) {
		if (!arg || !*arg || strchr(arg, ' ')) {
			say(p, CHAT_PEER_EV_ERROR, NULL, "usage", "/send USER or /send USER@HOST:PORT");
			return;
		}
		at = strchr(arg, '@');
		if (at)
			*at = '\0';
		const char *why = chat_name_check(strlen(arg), arg);
		if (why) {
			say(p, CHAT_PEER_EV_ERROR, NULL, "usage", "username '%.40s' %s", arg, why);
			return;
		}
		if (at && !at[1]) {
			say(p, CHAT_PEER_EV_ERROR, arg, "usage", "/send %s@HOST:PORT: the address is missing", arg);
			return;
		}
		compose_reset(p);
		snprintf(p->in.to, sizeof(p->in.to), "%s", arg);
		if (at) {
			p->in.manual = 1;
			snprintf(p->in.addr, sizeof(p->in.addr), "%s", at + 1);
			p->in.state = IN_PASSWORD;
			emit(p, CHAT_PEER_EV_PASSWORD, arg, NULL, strlen(at + 1), at + 1);
			return;
		}
		if (!chat_directory_find(directory(p), arg))
			say(p, CHAT_PEER_EV_WARNING, arg, NULL, "%s is not in the directory (yet): the "
			    "message will not go unless %s is added before you end it", arg, arg);
		p->in.state = IN_BODY;
		emit(p, CHAT_PEER_EV_COMPOSE, arg, NULL, 0, NULL);
	} else {
		say(p, CHAT_PEER_EV_ERROR, NULL, "usage", "unknown command %.32s (see /help)", buf);
	}
}

void chat_peer_input(struct chat_peer *p, size_t len, const char *line)
{
	if (p->ending)
		return;
	switch (p->in.state) {
	case IN_PASSWORD:
		if (!len || memchr(line, '\0', len)) {
			say(p, CHAT_PEER_EV_ERROR, p->in.to, "usage", "empty or invalid password: "
			    "message to %s cancelled", p->in.to);
			compose_reset(p);
			return;
		}
		p->in.password = malloc(len + 1);
		if (!p->in.password) {
			compose_reset(p);
			return;
		}
		memcpy(p->in.password, line, len);
		p->in.password[len] = '\0';
		p->in.state = IN_BODY;
		emit(p, CHAT_PEER_EV_COMPOSE, p->in.to, NULL, 0, NULL);
		return;
	case IN_BODY:
		compose_line(p, len, line);
		return;
	default:
		if (!len)
			return;
		if (line[0] == '/') {
			command(p, len, line);
			return;
		}
		say(p, CHAT_PEER_EV_ERROR, NULL, "usage", "not sent: start a message with /send USER "
		    "(see /help)");
	}
}

int chat_peer_wants_secret(const struct chat_peer *p)
{
	return p->in.state == IN_PASSWORD;
}

void chat_peer_input_end(struct chat_peer *p)
{
	if (p->ending)
		return;
	if (p->in.state != IN_IDLE)
		say(p, CHAT_PEER_EV_ERROR, p->in.to, "undelivered", "message to %s not sent: the input "
		    "ended before its '.' line", p->in.to);
	compose_reset(p);
	p->ending = 1;
	stop_listening(p);
	check_done(p);
}

int chat_peer_done(const struct chat_peer *p)
{
	return p->done;
}

size_t chat_peer_active(const struct chat_peer *p)
{
	return p->n_in + p->n_out;
}

const char *chat_peer_address(const struct chat_peer *p)
{
	return p->bound;
}

/* ---- setup */

int chat_peer_new(struct chat_loop *loop, const struct chat_peer_config *cfg,
                  chat_peer_event_cb cb, void *ui, struct chat_peer **out, size_t errlen,
                  char *err)
{
	struct chat_peer *p;
	int rc;

	*out = NULL;
	if (!cfg->user || chat_name_check(strlen(cfg->user), cfg->user) || !cfg->suite ||
	    cfg->timeout_ms <= 0) {
		snprintf(err, errlen, "invalid peer configuration");
		return CHAT_ERR_INVALID;
	}
	/* Handshake messages must fit a frame (aescbc-hmac's are about 300 bytes). */
	if (cfg->max_frame < CHAT_PEER_MIN_FRAME) {
		snprintf(err, errlen, "core.max_frame is %zu bytes; chat-peer needs at least %d",
		         cfg->max_frame, CHAT_PEER_MIN_FRAME);
		return CHAT_ERR_CONFIG;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return CHAT_ERR_NOMEM;
	p->loop = loop;
	p->cfg = *cfg;
	p->cb = cb;
	p->ui = ui;
	if (cfg->directory && *cfg->directory) {
		if (!(p->dir_path = strdup(cfg->directory))) {
			rc = CHAT_ERR_NOMEM;
			goto fail_out;
		}
		if (stat(p->dir_path, &p->dir_st) != 0) {
			snprintf(err, errlen, "cannot read directory file '%s': %s", p->dir_path,
			         strerror(errno));
			rc = CHAT_ERR_NOTFOUND;
			goto fail_out;
		}
		rc = chat_directory_load(p->dir_path, &p->dir, errlen, err);
		if (rc)
			goto fail_out;
	}
	rc = cfg->tp->listen(cfg->tp_host, cfg->listen, &p->listener);
	if (rc) {
		snprintf(err, errlen, "cannot listen on %s: %s", cfg->listen, chat_strerror(rc));
		goto fail_out;
	}
	if (cfg->tp->address(p->listener, 1, sizeof(p->bound), p->bound) != CHAT_OK)
		snprintf(p->bound, sizeof(p->bound), "%s", cfg->listen);
	rc = chat_loop_add(loop, cfg->tp->fd(p->listener), CHAT_EV_READ, on_accept, p, &p->lwatch);
	if (rc) {
		snprintf(err, errlen, "cannot watch the listener: %s", chat_strerror(rc));
		goto fail_out;
	}
	*out = p;
	emit(p, CHAT_PEER_EV_LISTENING, NULL, NULL, strlen(p->bound), p->bound);
	if (cfg->suite->desc->flags & CHAT_FLAG_INSECURE)
		say(p, CHAT_PEER_EV_WARNING, NULL, NULL, "suite %s is INSECURE (%s): for demonstration only",
		    cfg->suite->desc->name, cfg->suite->desc->summary);
	else if (!(cfg->suite->desc->flags & CHAT_FLAG_AUTHENTICATED))
		say(p, CHAT_PEER_EV_WARNING, NULL, NULL, "suite %s does not authenticate the sender",
		    cfg->suite->desc->name);
	return CHAT_OK;
fail_out:
	stop_listening(p);
	chat_directory_free(p->dir);
	free(p->dir_path);
	free(p);
	return rc;
}

void chat_peer_free(struct chat_peer *p)
{
	if (!p)
		return;
	p->freeing = 1;
	while (p->conns)
		chat_conn_close(p->conns->conn, CHAT_OK, "exiting");
	stop_listening(p);
	compose_reset(p);
	chat_directory_free(p->dir);
	free(p->dir_path);
	if (p->scratch) {
		chat_wipe(p->scratch, p->scratch_cap);
		free(p->scratch);
	}
	free(p);
}
