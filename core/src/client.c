#include "client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Client-to-client payload types, inside ROUTE/DELIVER/ROOM_*: opaque to the relay. */
enum {
	P_INIT = 0x01,  /* str8 suite, suites[] (initiator's), handshake bytes: room sessions */
	P_HS = 0x02,    /* handshake bytes */
	P_DATA = 0x03,  /* u8 flags (bit 0: more chunks follow), sealed chunk */
	P_ABORT = 0x04, /* str16 reason: the sender gave up this conversation */
};
#define DATA_MORE 1u

enum { CS_CONNECTING, CS_HELLO, CS_LOGIN, CS_READY };
enum { C_OFFER_OUT = 1, C_OFFER_IN, C_HANDSHAKE, C_ESTABLISHED };

struct pending {
	struct pending *next;
	char room[CHAT_NAME_MAX + 1]; /* "" for a 1:1 message */
	size_t len;
	char text[];
};

struct conv {
	struct conv *next;
	char peer[CHAT_NAME_MAX + 1];
	int state;
	int initiator;
	int relay_link;     /* a 1:1 conversation the relay knows of (vs. room-only) */
	const struct chat_loaded *suite;
	void *session;
	size_t ntheirs;
	char theirs[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	char chosen[CHAT_NAME_MAX + 1];
	struct pending *pending, **pending_tail;
	size_t npending;
	uint8_t *rx;        /* reassembly of a chunked message */
	size_t rx_len;
	char rx_room[CHAT_NAME_MAX + 1];
};

struct croom {
	struct croom *next;
	char name[CHAT_NAME_MAX + 1];
	size_t n, cap;
	char (*members)[CHAT_NAME_MAX + 1];
};

struct input_line {
	struct input_line *next;
	size_t len;
	char text[];
};

struct chat_client {
	struct chat_loop *loop;
	struct chat_client_config cfg;
	chat_event_cb cb;
	void *ui;
	struct chat_conn *conn;
	const struct chat_loaded *suites[CHAT_SUITES_MAX];
	size_t nsuites;         /* loaded allowed suites */
	size_t neff;            /* effective: allowed and carried by the relay */
	char eff[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	char name[CHAT_NAME_MAX + 1];
	int state;
	int status;             /* exit status once done */
	int done, quitting;
	struct conv *convs;
	struct croom *rooms;
	char current[CHAT_NAME_MAX + 2];
	struct input_line *early, **early_tail; /* lines typed before login */
	struct chat_wbuf wb;
	uint8_t *scratch;
	size_t scratch_cap;
	size_t chunk;           /* plaintext bytes per sealed chunk, per suite computed lazily */
	struct chat_timer *timer;
};

/* ---- events */

static void emit(struct chat_client *c, int kind, const char *peer, const char *room,
                 const char *suite, const char *code, size_t len, const char *text, int insecure)
{
	struct chat_event ev = {
		.kind = kind,
		.peer = peer ? peer : "",
		.room = room ? room : "",
		.suite = suite ? suite : "",
		.code = code ? code : "",
		.text = text ? text : "",
		.text_len = text ? len : 0,
		.insecure = insecure,
	};
	c->cb(c->ui, &ev);
}

static void say(struct chat_client *c, int kind, const char *peer, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void say(struct chat_client *c, int kind, const char *peer, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	emit(c, kind, peer, NULL, NULL, NULL, strlen(text), text, 0);
}

static void fail_with(struct chat_client *c, const char *peer, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void fail_with(struct chat_client *c, const char *peer, const char *code, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	emit(c, CHAT_EV_ERROR, peer, NULL, NULL, code, strlen(text), text, 0);
}

static void finish(struct chat_client *c, int status)
{
	if (c->done)
		return;
	c->done = 1;
	c->status = status;
	chat_loop_stop(c->loop);
}

/* ---- sending to the relay */

static void begin(struct chat_client *c, int type)
{
	chat_wbuf_reset(&c->wb);
	chat_put_u8(&c->wb, (unsigned)type);
}

static int flush(struct chat_client *c)
{
	if (!c->conn)
		return CHAT_ERR_CLOSED;
	if (c->wb.err) {
		fail_with(c, NULL, "too-big", "message too big for one frame (%s)", chat_strerror(c->wb.err));
		return c->wb.err;
	}
	return chat_conn_send(c->conn, c->wb.len, c->wb.data);
}

static void put_suites(struct chat_client *c)
{
	chat_put_u8(&c->wb, (unsigned)c->neff);
	for (size_t i = 0; i < c->neff; i++)
		chat_put_str8(&c->wb, c->eff[i]);
}

/* ---- suites */

static const struct chat_loaded *suite_by_name(const struct chat_client *c, const char *name)
{
	for (size_t i = 0; i < c->nsuites; i++)
		if (strcmp(c->suites[i]->desc->name, name) == 0)
			return c->suites[i];
	return NULL;
}

static int effective(const struct chat_client *c, const char *name)
{
	for (size_t i = 0; i < c->neff; i++)
		if (strcmp(c->eff[i], name) == 0)
			return 1;
	return 0;
}

/* A suite we can use with peer: allowed, loaded, and its secret available. */
static int usable(const struct chat_client *c, const char *name, const char *peer)
{
	const struct chat_loaded *s = suite_by_name(c, name);

	if (!s || !effective(c, name))
		return 0;
	if (s->desc->flags & CHAT_FLAG_NEEDS_SECRET)
		return chat_directory_find(c->cfg.directory, peer) != NULL;
	return 1;
}

static void csv(size_t n, const char (*names)[CHAT_NAME_MAX + 1], size_t cap, char *dst)
{
	size_t used = 0;

	dst[0] = '\0';
	for (size_t i = 0; i < n && used < cap; i++) {
		int k = snprintf(dst + used, cap - used, "%s%s", i ? "," : "", names[i]);
		if (k < 0)
			break;
		used += (size_t)k;
	}
}

/* The negotiation transcript both ends must agree on (bound into
 * authenticating handshakes, mixed into fingerprints). */
static size_t binding(const struct chat_client *c, const struct conv *v, size_t cap, char *dst)
{
	char mine[600], theirs[600];
	const char *ini = v->initiator ? c->name : v->peer, *res = v->initiator ? v->peer : c->name;
	int n;

	csv(c->neff, c->eff, sizeof(mine), mine);
	csv(v->ntheirs, v->theirs, sizeof(theirs), theirs);
	n = snprintf(dst, cap, "chat-binding-v1\ninitiator %s suites %s\nresponder %s suites %s\nsuite %s\n",
	             ini, v->initiator ? mine : theirs, res, v->initiator ? theirs : mine,
	             v->suite->desc->name);
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* ---- conversations */

static struct conv *find_conv(struct chat_client *c, const char *peer)
{
	for (struct conv *v = c->convs; v; v = v->next)
		if (strcmp(v->peer, peer) == 0)
			return v;
	return NULL;
}

static struct conv *new_conv(struct chat_client *c, const char *peer, int state)
{
	struct conv *v = calloc(1, sizeof(*v));

	if (!v) {
		fail_with(c, peer, "no-memory", "out of memory");
		return NULL;
	}
	snprintf(v->peer, sizeof(v->peer), "%s", peer);
	v->state = state;
	v->pending_tail = &v->pending;
	v->next = c->convs;
	c->convs = v;
	return v;
}

static void drop_session(struct conv *v)
{
	if (v->session)
		v->suite->desc->ops.cipher->session_free(v->session);
	v->session = NULL;
	free(v->rx);
	v->rx = NULL;
	v->rx_len = 0;
}

/* Forget a conversation; say which typed messages were not delivered. */
static void end_conv(struct chat_client *c, struct conv *v, const char *why)
{
	for (struct conv **pp = &c->convs; *pp; pp = &(*pp)->next) {
		if (*pp == v) {
			*pp = v->next;
			break;
		}
	}
	if (v->npending)
		fail_with(c, v->peer, "undelivered", "%zu message(s) to %s were not delivered: %s",
		          v->npending, v->peer, why);
	while (v->pending) {
		struct pending *p = v->pending;
		v->pending = p->next;
		chat_wipe(p->text, p->len);
		free(p);
	}
	drop_session(v);
	if (strcmp(c->current, v->peer) == 0)
		c->current[0] = '\0';
	free(v);
}

static int queue_text(struct chat_client *c, struct conv *v, const char *room, size_t len,
                      const char *text)
{
	struct pending *p = malloc(sizeof(*p) + len);

	if (!p) {
		fail_with(c, v->peer, "no-memory", "out of memory: message to %s not queued", v->peer);
		return -1;
	}
	p->next = NULL;
	snprintf(p->room, sizeof(p->room), "%s", room ? room : "");
	p->len = len;
	memcpy(p->text, text, len);
	*v->pending_tail = p;
	v->pending_tail = &p->next;
	v->npending++;
	return 0;
}

static int scratch(struct chat_client *c, size_t need)
{
	if (need <= c->scratch_cap)
		return 0;
	uint8_t *p = realloc(c->scratch, need);
	if (!p)
		return -1;
	c->scratch = p;
	c->scratch_cap = need;
	return 0;
}

/* Plaintext bytes per chunk so that a sealed chunk plus headers fits a frame. */
static size_t chunk_size(const struct chat_client *c, const struct conv *v)
{
	const struct chat_cipher_ops *ops = v->suite->desc->ops.cipher;
	size_t limit = c->cfg.max_frame - (1 + 1 + CHAT_NAME_MAX + 1 + CHAT_NAME_MAX + 2 + 4 + 1 + 1 + 64);
	size_t n = limit;

	while (n > 64 && ops->sealed_size(v->session, n) > limit)
		n -= (ops->sealed_size(v->session, n) - limit) + 16;
	return n;
}

/* Seal text for v in chunks; each chunk becomes one payload passed to out(). */
static int seal_text(struct chat_client *c, struct conv *v, size_t len, const char *text,
                     int (*out)(struct chat_client *, struct conv *, const char *room, size_t,
                                const uint8_t *), const char *room)
{
	const struct chat_cipher_ops *ops = v->suite->desc->ops.cipher;
	size_t chunk = chunk_size(c, v), off = 0;

	do {
		size_t n = len - off < chunk ? len - off : chunk;
		size_t cap = ops->sealed_size(v->session, n) + 2;
		if (scratch(c, cap))
			return CHAT_ERR_NOMEM;
		struct chat_buf dst = { .data = c->scratch + 2, .cap = cap - 2 };
		int rc = ops->seal(v->session, n, &dst, (const uint8_t *)text + off);
		if (rc) {
			fail_with(c, v->peer, "seal", "cannot encrypt for %s: %s", v->peer, chat_strerror(rc));
			return rc;
		}
		off += n;
		c->scratch[0] = P_DATA;
		c->scratch[1] = off < len ? DATA_MORE : 0;
		rc = out(c, v, room, dst.len + 2, c->scratch);
		if (rc)
			return rc;
	} while (off < len);
	return CHAT_OK;
}

static int out_route(struct chat_client *c, struct conv *v, const char *room, size_t len,
                     const uint8_t *payload)
{
	(void)room;
	begin(c, CHAT_MSG_ROUTE);
	chat_put_str8(&c->wb, v->peer);
	chat_put_bytes(&c->wb, len, payload);
	return flush(c);
}

static int out_room(struct chat_client *c, struct conv *v, const char *room, size_t len,
                    const uint8_t *payload)
{
	begin(c, CHAT_MSG_ROOM_SEND);
	chat_put_str8(&c->wb, room);
	chat_put_u16(&c->wb, 1);
	chat_put_str8(&c->wb, v->peer);
	chat_put_u32(&c->wb, (uint32_t)len);
	chat_put_bytes(&c->wb, len, payload);
	return flush(c);
}

static void send_payload(struct chat_client *c, struct conv *v, int type, size_t len,
                         const uint8_t *bytes)
{
	begin(c, CHAT_MSG_ROUTE);
	chat_put_str8(&c->wb, v->peer);
	chat_put_u8(&c->wb, (unsigned)type);
	chat_put_bytes(&c->wb, len, bytes);
	flush(c);
}

static void send_abort(struct chat_client *c, struct conv *v, const char *reason)
{
	begin(c, CHAT_MSG_ROUTE);
	chat_put_str8(&c->wb, v->peer);
	chat_put_u8(&c->wb, P_ABORT);
	chat_put_str16(&c->wb, reason);
	flush(c);
	if (v->relay_link) {
		begin(c, CHAT_MSG_CLOSE);
		chat_put_str8(&c->wb, v->peer);
		flush(c);
	}
}

static void established(struct chat_client *c, struct conv *v)
{
	int insecure = (v->suite->desc->flags & CHAT_FLAG_INSECURE) != 0;

	v->state = C_ESTABLISHED;
	if (!c->current[0] && v->relay_link) /* plain lines go here until /to says otherwise */
		snprintf(c->current, sizeof(c->current), "%s", v->peer);
	emit(c, CHAT_EV_ESTABLISHED, v->peer, NULL, v->suite->desc->name, NULL, 0, NULL, insecure);
	if (insecure)
		say(c, CHAT_EV_WARNING, v->peer,
		    "suite %s is INSECURE (%s): for demonstration only%s", v->suite->desc->name,
		    v->suite->desc->summary,
		    v->suite->desc->ops.cipher->fingerprint ? "; compare /fingerprint with your peer" : "");
	while (v->pending && c->conn) {
		struct pending *p = v->pending;
		v->pending = p->next;
		if (!v->pending)
			v->pending_tail = &v->pending;
		v->npending--;
		if (seal_text(c, v, p->len, p->text, p->room[0] ? out_room : out_route, p->room) == CHAT_OK)
			emit(c, CHAT_EV_SENT, p->room[0] ? NULL : v->peer, p->room[0] ? p->room : NULL,
			     v->suite->desc->name, NULL, p->len, p->text, 0);
		chat_wipe(p->text, p->len);
		free(p);
	}
}

/* Handshake failure: tell the peer (the plugin's last message, then ABORT), drop it. */
static void handshake_failed(struct chat_client *c, struct conv *v, int rc, const struct chat_buf *last)
{
	char why[256];

	if (last && last->len)
		send_payload(c, v, P_HS, last->len, last->data);
	if (rc == CHAT_ERR_AUTH)
		snprintf(why, sizeof(why), "authentication failed for %s (%s)", v->peer, v->suite->desc->name);
	else
		snprintf(why, sizeof(why), "handshake with %s failed (%s): %s", v->peer,
		         v->suite->desc->name, chat_strerror(rc));
	send_abort(c, v, why);
	fail_with(c, v->peer, rc == CHAT_ERR_AUTH ? "auth" : "handshake", "%s", why);
	end_conv(c, v, why);
}

/* Run one handshake step with src (may be empty); send what it produces. */
static void step(struct chat_client *c, struct conv *v, size_t len, const uint8_t *src)
{
	const struct chat_cipher_ops *ops = v->suite->desc->ops.cipher;
	size_t cap = c->cfg.max_frame;

	if (scratch(c, cap)) {
		fail_with(c, v->peer, "no-memory", "out of memory");
		return;
	}
	struct chat_buf dst = { .data = c->scratch, .cap = cap };
	int rc = ops->handshake(v->session, len, &dst, src);
	if (rc < 0) {
		handshake_failed(c, v, rc, &dst);
		return;
	}
	if (dst.len)
		send_payload(c, v, P_HS, dst.len, dst.data);
	if (rc == CHAT_HS_ESTABLISHED)
		established(c, v);
}

static int start_session(struct chat_client *c, struct conv *v)
{
	const struct chat_contact *contact = chat_directory_find(c->cfg.directory, v->peer);
	char bind[2048];
	struct chat_cipher_params p = {
		.size = sizeof(p),
		.role = v->initiator ? CHAT_ROLE_INITIATOR : CHAT_ROLE_RESPONDER,
		.local_id = c->name,
		.peer_id = v->peer,
		.suite = v->suite->desc->name,
	};

	if (contact) {
		p.secret = (const uint8_t *)contact->password;
		p.secret_len = strlen(contact->password);
	}
	p.binding = (const uint8_t *)bind;
	p.binding_len = binding(c, v, sizeof(bind), bind);
	drop_session(v);
	int rc = v->suite->desc->ops.cipher->session_new(&v->suite->host, &p, &v->session);
	if (rc) {
		if (rc == CHAT_ERR_NOSECRET)
			fail_with(c, v->peer, "no-secret", "suite %s needs a password for %s: add one to %s",
			          v->suite->desc->name, v->peer,
			          c->cfg.directory ? c->cfg.directory->path : "a directory file (client.directory)");
		else
			fail_with(c, v->peer, "session", "cannot start a %s session with %s: %s",
			          v->suite->desc->name, v->peer, chat_strerror(rc));
		return rc;
	}
	v->state = C_HANDSHAKE;
	return CHAT_OK;
}

/* ---- incoming end-to-end payloads */

static void on_data(struct chat_client *c, struct conv *v, const char *room, size_t len,
                    const uint8_t *p)
{
	const struct chat_cipher_ops *ops = v->suite->desc->ops.cipher;

	if (len < 1) {
		fail_with(c, v->peer, "malformed", "empty data message from %s", v->peer);
		return;
	}
	int more = p[0] & DATA_MORE;
	if (scratch(c, len + 64)) {
		fail_with(c, v->peer, "no-memory", "out of memory");
		return;
	}
	struct chat_buf dst = { .data = c->scratch, .cap = c->scratch_cap };
	int rc = ops->open(v->session, len - 1, &dst, p + 1);
	if (rc) {
		fail_with(c, v->peer, rc == CHAT_ERR_INTEGRITY ? "integrity" : rc == CHAT_ERR_REPLAY ? "replay" :
		          rc == CHAT_ERR_STALE ? "stale" : "open",
		          "message from %s rejected: %s", v->peer, chat_strerror(rc));
		free(v->rx);
		v->rx = NULL;
		v->rx_len = 0;
		return;
	}
	if (v->rx_len && strcmp(v->rx_room, room ? room : "") != 0) {
		free(v->rx);
		v->rx = NULL;
		v->rx_len = 0;
	}
	if (v->rx_len + dst.len > c->cfg.max_message) {
		fail_with(c, v->peer, "too-big", "message from %s exceeds %zu bytes (client.max_message); dropped",
		          v->peer, c->cfg.max_message);
		free(v->rx);
		v->rx = NULL;
		v->rx_len = 0;
		return;
	}
	if (!more && !v->rx_len) {
		emit(c, room ? CHAT_EV_ROOM_MSG : CHAT_EV_MSG, v->peer, room, v->suite->desc->name, NULL,
		     dst.len, (const char *)dst.data, 0);
		chat_wipe(dst.data, dst.len);
		return;
	}
	uint8_t *grown = realloc(v->rx, v->rx_len + dst.len + 1);
	if (!grown) {
		fail_with(c, v->peer, "no-memory", "out of memory");
		return;
	}
	v->rx = grown;
	memcpy(v->rx + v->rx_len, dst.data, dst.len);
	v->rx_len += dst.len;
	snprintf(v->rx_room, sizeof(v->rx_room), "%s", room ? room : "");
	chat_wipe(dst.data, dst.len);
	if (!more) {
		emit(c, room ? CHAT_EV_ROOM_MSG : CHAT_EV_MSG, v->peer, room, v->suite->desc->name, NULL,
		     v->rx_len, (const char *)v->rx, 0);
		chat_wipe(v->rx, v->rx_len);
		free(v->rx);
		v->rx = NULL;
		v->rx_len = 0;
	}
}

static struct croom *find_croom(struct chat_client *c, const char *name)
{
	for (struct croom *r = c->rooms; r; r = r->next)
		if (strcmp(r->name, name) == 0)
			return r;
	return NULL;
}

static int croom_has(const struct croom *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->members[i], name) == 0)
			return 1;
	return 0;
}

static int croom_add(struct croom *r, const char *name)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 8;
		void *grown = realloc(r->members, cap * sizeof(*r->members));
		if (!grown)
			return CHAT_ERR_NOMEM;
		r->members = grown;
		r->cap = cap;
	}
	snprintf(r->members[r->n++], CHAT_NAME_MAX + 1, "%s", name);
	return CHAT_OK;
}

static int shares_room(struct chat_client *c, const char *peer)
{
	for (struct croom *r = c->rooms; r; r = r->next)
		if (croom_has(r, peer))
			return 1;
	return 0;
}

/* INIT: a room member starts a session with us. */
static void on_init(struct chat_client *c, const char *from, size_t len, const uint8_t *p)
{
	struct chat_msg fake;
	char err[256];
	size_t n;

	/* Reuse the HELLO parser for "suite + suites": build a fake message view. */
	if (len < 2 || (n = p[0]) + 1 >= len || n > CHAT_NAME_MAX) {
		fail_with(c, from, "malformed", "malformed session start from %s", from);
		return;
	}
	char suite[CHAT_NAME_MAX + 1];
	memcpy(suite, p + 1, n);
	suite[n] = '\0';
	uint8_t hello[1024];
	size_t rest = len - 1 - n;
	const uint8_t *q = p + 1 + n;
	/* suites list length: walk it */
	size_t count = q[0], off = 1;
	for (size_t i = 0; i < count && off < rest; i++)
		off += 1 + q[off];
	if (off > rest || off + 2 > sizeof(hello)) {
		fail_with(c, from, "malformed", "malformed session start from %s", from);
		return;
	}
	hello[0] = CHAT_MSG_HELLO;
	hello[1] = CHAT_PROTO_VERSION;
	memcpy(hello + 2, q, off);
	if (chat_msg_parse(off + 2, hello, &fake, sizeof(err), err) != CHAT_OK) {
		fail_with(c, from, "malformed", "malformed session start from %s: %s", from, err);
		return;
	}
	if (!shares_room(c, from)) {
		fail_with(c, from, "unexpected", "%s started a session but shares no room with you; ignored", from);
		return;
	}
	struct conv *v = find_conv(c, from);
	if (v && v->relay_link && v->state != C_ESTABLISHED) {
		fail_with(c, from, "unexpected", "%s started a room session during a 1:1 offer; ignored", from);
		return;
	}
	if (!usable(c, suite, from)) {
		struct conv tmp = { 0 };
		snprintf(tmp.peer, sizeof(tmp.peer), "%s", from);
		send_abort(c, &tmp, "no common suite");
		fail_with(c, from, "no-common-suite", "%s wants suite %s, which you do not allow", from, suite);
		return;
	}
	if (!v && !(v = new_conv(c, from, C_HANDSHAKE)))
		return;
	v->initiator = 0;
	v->suite = suite_by_name(c, suite);
	v->ntheirs = fake.nsuites;
	memcpy(v->theirs, fake.suites, sizeof(v->theirs));
	if (start_session(c, v)) {
		end_conv(c, v, "no session");
		return;
	}
	step(c, v, rest - off, q + off);
}

/* A member of a room we are in: make sure we have a session with them. */
static void room_session(struct chat_client *c, const char *peer, size_t ntheirs,
                         char theirs[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1])
{
	struct conv *v = find_conv(c, peer);
	const char *suite = NULL;

	if (v && v->state == C_ESTABLISHED)
		return;
	if (v)
		return; /* an offer or handshake is under way */
	for (size_t i = 0; i < c->neff && !suite; i++)
		for (size_t j = 0; j < ntheirs && !suite; j++)
			if (strcmp(c->eff[i], theirs[j]) == 0 && usable(c, c->eff[i], peer))
				suite = c->eff[i];
	if (!suite) {
		fail_with(c, peer, "no-common-suite", "no suite in common with room member %s", peer);
		return;
	}
	if (!(v = new_conv(c, peer, C_HANDSHAKE)))
		return;
	v->initiator = 1;
	v->suite = suite_by_name(c, suite);
	v->ntheirs = ntheirs;
	memcpy(v->theirs, theirs, sizeof(v->theirs));
	if (start_session(c, v)) {
		end_conv(c, v, "no session");
		return;
	}
	/* First handshake step, sent inside INIT with the negotiation. */
	size_t cap = c->cfg.max_frame;
	uint8_t *buf = malloc(cap);
	if (!buf)
		return;
	struct chat_buf dst = { .data = buf, .cap = cap };
	int rc = v->suite->desc->ops.cipher->handshake(v->session, 0, &dst, NULL);
	if (rc < 0) {
		handshake_failed(c, v, rc, &dst);
		free(buf);
		return;
	}
	begin(c, CHAT_MSG_ROUTE);
	chat_put_str8(&c->wb, peer);
	chat_put_u8(&c->wb, P_INIT);
	chat_put_str8(&c->wb, suite);
	put_suites(c);
	chat_put_bytes(&c->wb, dst.len, dst.data);
	flush(c);
	free(buf);
	if (rc == CHAT_HS_ESTABLISHED)
		established(c, v);
}

static void on_payload(struct chat_client *c, const char *from, const char *room, size_t len,
                       const uint8_t *p)
{
	struct conv *v = find_conv(c, from);

	if (len < 1) {
		fail_with(c, from, "malformed", "empty message from %s", from);
		return;
	}
	switch (p[0]) {
	case P_INIT:
		on_init(c, from, len - 1, p + 1);
		return;
	case P_HS:
		if (!v || v->state != C_HANDSHAKE) {
			fail_with(c, from, "unexpected", "unexpected handshake message from %s; ignored", from);
			return;
		}
		step(c, v, len - 1, p + 1);
		return;
	case P_DATA:
		if (!v || v->state != C_ESTABLISHED) {
			fail_with(c, from, "unexpected", "message from %s outside an established session; ignored", from);
			return;
		}
		on_data(c, v, room, len - 1, p + 1);
		return;
	case P_ABORT: {
		char reason[CHAT_TEXT_MAX + 1] = "";
		if (len >= 3) {
			size_t n = (size_t)p[1] << 8 | p[2];
			if (n > len - 3)
				n = len - 3;
			if (n > CHAT_TEXT_MAX)
				n = CHAT_TEXT_MAX;
			memcpy(reason, p + 3, n);
			reason[n] = '\0';
		}
		if (v) {
			emit(c, CHAT_EV_CLOSED, from, NULL, NULL, NULL, strlen(reason), reason, 0);
			end_conv(c, v, "the conversation was aborted");
		}
		return;
	}
	default:
		fail_with(c, from, "malformed", "unknown message type %u from %s; ignored", p[0], from);
	}
}

/* ---- relay messages */

static const char *perr_code(unsigned code)
{
	switch (code) {
	case CHAT_PERR_MALFORMED: return "malformed";
	case CHAT_PERR_VERSION: return "version";
	case CHAT_PERR_NAME_TAKEN: return "name-taken";
	case CHAT_PERR_BAD_NAME: return "bad-name";
	case CHAT_PERR_NOT_LOGGED_IN: return "not-logged-in";
	case CHAT_PERR_ALREADY: return "already";
	case CHAT_PERR_NOT_CONNECTED: return "not-connected";
	case CHAT_PERR_SELF: return "self";
	case CHAT_PERR_NO_COMMON_SUITE: return "no-common-suite";
	case CHAT_PERR_SUITE_REFUSED: return "suite-refused";
	case CHAT_PERR_NOT_MEMBER: return "not-member";
	case CHAT_PERR_NO_CONVERSATION: return "no-conversation";
	case CHAT_PERR_LIMIT: return "limit";
	case CHAT_PERR_UNEXPECTED: return "unexpected";
	default: return "error";
	}
}

static void process_early_input(struct chat_client *c);

static void on_relay_error(struct chat_client *c, const struct chat_msg *m)
{
	emit(c, CHAT_EV_ERROR, m->name, NULL, NULL, perr_code(m->code), strlen(m->text), m->text, 0);
	if (m->ref == CHAT_MSG_LOGIN || m->ref == CHAT_MSG_HELLO) {
		finish(c, 1);
		return;
	}
	struct conv *v = m->name[0] ? find_conv(c, m->name) : NULL;
	if (!v)
		return;
	/* A failed offer or route: the conversation cannot go on. */
	if ((m->ref == CHAT_MSG_TALK && v->state == C_OFFER_OUT) ||
	    ((m->ref == CHAT_MSG_ROUTE || m->ref == CHAT_MSG_ANSWER) &&
	     (m->code == CHAT_PERR_NOT_CONNECTED || m->code == CHAT_PERR_NO_CONVERSATION)))
		end_conv(c, v, m->text);
}

static void on_msg(struct chat_conn *conn, size_t len, const uint8_t *frame, void *arg)
{
	struct chat_client *c = arg;
	struct chat_msg m;
	char err[256];

	(void)conn;
	if (chat_msg_parse(len, frame, &m, sizeof(err), err) != CHAT_OK) {
		fail_with(c, NULL, "malformed", "malformed message from the relay: %s", err);
		return;
	}
	switch (m.type) {
	case CHAT_MSG_WELCOME:
		if (m.nsuites) { /* the relay's policy narrows what we may use */
			size_t k = 0;
			for (size_t i = 0; i < c->neff; i++)
				for (size_t j = 0; j < m.nsuites; j++)
					if (!strcmp(c->eff[i], m.suites[j]))
						memmove(c->eff[k++], c->eff[i], CHAT_NAME_MAX + 1);
			c->neff = k;
		}
		c->state = CS_LOGIN;
		begin(c, CHAT_MSG_LOGIN);
		chat_put_str8(&c->wb, c->cfg.user);
		flush(c);
		break;
	case CHAT_MSG_LOGGED_IN:
		snprintf(c->name, sizeof(c->name), "%s", m.name);
		c->state = CS_READY;
		emit(c, CHAT_EV_LOGGED_IN, m.name, NULL, NULL, NULL, 0, NULL, 0);
		process_early_input(c);
		break;
	case CHAT_MSG_WHO_LIST: {
		struct chat_iter it = m.list;
		char name[CHAT_NAME_MAX + 1], list[600];
		char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
		size_t n, count = 0;
		while (chat_iter_who(&it, name, &n, suites)) {
			csv(n, suites, sizeof(list), list);
			emit(c, CHAT_EV_WHO, name, NULL, NULL, NULL, strlen(list), list, 0);
			count++;
		}
		say(c, CHAT_EV_WHO_END, NULL, "%zu", count);
		break;
	}
	case CHAT_MSG_OFFERED: {
		struct conv *v = find_conv(c, m.name);
		const char *suite = NULL;
		/* The offerer's preference decides, among suites we allow and can use. */
		for (size_t i = 0; i < m.nsuites && !suite; i++)
			if (usable(c, m.suites[i], m.name))
				suite = m.suites[i];
		if (v && v->state == C_ESTABLISHED && !v->relay_link) {
			end_conv(c, v, "replaced by a 1:1 conversation");
			v = NULL;
		}
		if (v) {
			fail_with(c, m.name, "already", "%s offered a conversation while one is under way", m.name);
			break;
		}
		if (!suite) {
			char theirs[600], mine[600];
			csv(m.nsuites, m.suites, sizeof(theirs), theirs);
			csv(c->neff, c->eff, sizeof(mine), mine);
			begin(c, CHAT_MSG_ANSWER);
			chat_put_str8(&c->wb, m.name);
			chat_put_u8(&c->wb, 0);
			chat_put_str8(&c->wb, "");
			chat_put_str16(&c->wb, "no usable suite in common");
			flush(c);
			fail_with(c, m.name, "no-common-suite",
			          "%s offered a conversation with %s; you can use only %s (suites needing a "
			          "password need %s in the directory): refused", m.name, theirs, mine, m.name);
			break;
		}
		if (!(v = new_conv(c, m.name, C_OFFER_IN)))
			break;
		v->relay_link = 1;
		v->ntheirs = m.nsuites;
		memcpy(v->theirs, m.suites, sizeof(v->theirs));
		snprintf(v->chosen, sizeof(v->chosen), "%s", suite);
		const struct chat_loaded *s = suite_by_name(c, suite);
		emit(c, CHAT_EV_OFFER, m.name, NULL, suite, NULL, 0, NULL,
		     (s->desc->flags & CHAT_FLAG_INSECURE) != 0);
		break;
	}
	case CHAT_MSG_ANSWERED: {
		struct conv *v = find_conv(c, m.name);
		if (!v || v->state != C_OFFER_OUT) {
			fail_with(c, m.name, "unexpected", "unexpected answer from %s; ignored", m.name);
			break;
		}
		if (!m.flag) {
			emit(c, CHAT_EV_REJECTED, m.name, NULL, NULL, NULL, strlen(m.text), m.text, 0);
			end_conv(c, v, m.text[0] ? m.text : "rejected");
			break;
		}
		if (!usable(c, m.suite, m.name)) {
			struct conv *keep = v;
			fail_with(c, m.name, "no-common-suite", "%s chose suite %s, which you do not allow",
			          m.name, m.suite);
			send_abort(c, keep, "suite not allowed");
			end_conv(c, keep, "suite not allowed");
			break;
		}
		v->initiator = 1;
		v->suite = suite_by_name(c, m.suite);
		v->ntheirs = m.nsuites;
		memcpy(v->theirs, m.suites, sizeof(v->theirs));
		if (start_session(c, v)) {
			send_abort(c, v, "cannot start a session");
			end_conv(c, v, "cannot start a session");
			break;
		}
		step(c, v, 0, NULL);
		break;
	}
	case CHAT_MSG_DELIVER:
		on_payload(c, m.name, NULL, m.payload_len, m.payload);
		break;
	case CHAT_MSG_ROOM_DELIVER:
		if (!find_croom(c, m.room)) {
			fail_with(c, m.name, "unexpected", "message for room %s, which you are not in", m.room);
			break;
		}
		if (m.payload_len && m.payload[0] == P_DATA) {
			struct conv *v = find_conv(c, m.name);
			if (!v || v->state != C_ESTABLISHED) {
				fail_with(c, m.name, "unexpected", "room message from %s before a session; ignored", m.name);
				break;
			}
			on_data(c, v, m.room, m.payload_len - 1, m.payload + 1);
		} else {
			fail_with(c, m.name, "malformed", "room message from %s is not data; ignored", m.name);
		}
		break;
	case CHAT_MSG_MEMBERS: {
		struct croom *r = calloc(1, sizeof(*r));
		struct chat_iter it = m.list;
		char name[CHAT_NAME_MAX + 1], members[2048] = "";
		char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
		size_t n;
		if (!r)
			break;
		snprintf(r->name, sizeof(r->name), "%s", m.room);
		r->next = c->rooms;
		c->rooms = r;
		while (chat_iter_who(&it, name, &n, suites)) {
			if (croom_add(r, name))
				break;
			size_t used = strlen(members);
			snprintf(members + used, sizeof(members) - used, "%s%s", used ? " " : "", name);
		}
		snprintf(c->current, sizeof(c->current), "#%s", m.room);
		emit(c, CHAT_EV_JOINED, NULL, m.room, NULL, NULL, strlen(members), members, 0);
		/* We joined: we start a session with every member we lack one with. */
		it = m.list;
		while (chat_iter_who(&it, name, &n, suites))
			room_session(c, name, n, suites);
		break;
	}
	case CHAT_MSG_ROOM_EVENT: {
		struct croom *r = find_croom(c, m.room);
		if (!r)
			break;
		if (m.flag == 1 && !croom_has(r, m.name)) {
			if (croom_add(r, m.name))
				break;
			emit(c, CHAT_EV_ROOM_JOIN, m.name, m.room, NULL, NULL, 0, NULL, 0);
		} else if (m.flag == 2) {
			for (size_t i = 0; i < r->n; i++) {
				if (!strcmp(r->members[i], m.name)) {
					memmove(r->members[i], r->members[r->n - 1], CHAT_NAME_MAX + 1);
					r->n--;
					break;
				}
			}
			emit(c, CHAT_EV_ROOM_LEAVE, m.name, m.room, NULL, NULL, 0, NULL, 0);
			struct conv *v = find_conv(c, m.name);
			if (v && !v->relay_link && !shares_room(c, m.name))
				end_conv(c, v, "they left the room");
		}
		break;
	}
	case CHAT_MSG_ROOM_LIST: {
		struct chat_iter it = m.list;
		char room[CHAT_NAME_MAX + 1], count[16];
		unsigned members;
		size_t n = 0;
		while (chat_iter_room(&it, room, &members)) {
			snprintf(count, sizeof(count), "%u", members);
			emit(c, CHAT_EV_ROOMS, NULL, room, NULL, NULL, strlen(count), count, 0);
			n++;
		}
		say(c, CHAT_EV_INFO, NULL, "%zu room(s)", n);
		break;
	}
	case CHAT_MSG_CLOSED: {
		struct conv *v = find_conv(c, m.name);
		if (v && v->relay_link) {
			emit(c, CHAT_EV_CLOSED, m.name, NULL, NULL, NULL, 0, NULL, 0);
			end_conv(c, v, "the conversation was closed");
		} else if (v && !shares_room(c, m.name)) {
			end_conv(c, v, "they disconnected");
		}
		break;
	}
	case CHAT_MSG_ERROR:
		on_relay_error(c, &m);
		break;
	case CHAT_MSG_BYE:
		emit(c, CHAT_EV_BYE, NULL, NULL, NULL, NULL, strlen(m.text), m.text, 0);
		break;
	default:
		fail_with(c, NULL, "unexpected", "unexpected %s from the relay", chat_msg_type_name(m.type));
	}
}

static void on_connect(struct chat_conn *conn, void *arg)
{
	struct chat_client *c = arg;

	if (c->timer) {
		chat_loop_timer_cancel(c->loop, c->timer);
		c->timer = NULL;
	}
	c->state = CS_HELLO;
	emit(c, CHAT_EV_CONNECTED, NULL, NULL, NULL, NULL, strlen(chat_conn_peer(conn)),
	     chat_conn_peer(conn), 0);
	begin(c, CHAT_MSG_HELLO);
	chat_put_u8(&c->wb, CHAT_PROTO_VERSION);
	put_suites(c);
	flush(c);
}

static void on_close(struct chat_conn *conn, int err, const char *reason, void *arg)
{
	struct chat_client *c = arg;

	(void)conn;
	c->conn = NULL;
	if (c->quitting && err == CHAT_OK) {
		finish(c, 0);
		return;
	}
	if (c->state == CS_CONNECTING)
		fail_with(c, NULL, "connect", "cannot connect to relay %s: %s", c->cfg.relay, reason);
	else
		fail_with(c, NULL, "relay-lost", "lost the relay %s: %s", c->cfg.relay, reason);
	finish(c, 1);
}

static long long connect_timeout(struct chat_loop *loop, void *arg)
{
	struct chat_client *c = arg;

	(void)loop;
	c->timer = NULL;
	if (c->state == CS_CONNECTING && c->conn)
		chat_conn_close(c->conn, CHAT_ERR_TIMEOUT, "connect timed out (client.connect_timeout)");
	return -1;
}

static const struct chat_conn_cbs client_cbs = {
	.on_frame = on_msg,
	.on_close = on_close,
	.on_connect = on_connect,
};

/* ---- commands */

static void send_text(struct chat_client *c, const char *peer, size_t len, const char *text)
{
	struct conv *v = find_conv(c, peer);

	if (len > c->cfg.max_message) {
		fail_with(c, peer, "too-big", "message of %zu bytes exceeds client.max_message (%zu); not sent",
		          len, c->cfg.max_message);
		return;
	}
	if (!v) {
		/* No conversation yet: offer one and hold the text until it is up. */
		if (!(v = new_conv(c, peer, C_OFFER_OUT)))
			return;
		v->relay_link = 1;
		begin(c, CHAT_MSG_TALK);
		chat_put_str8(&c->wb, peer);
		flush(c);
		emit(c, CHAT_EV_OFFERED, peer, NULL, NULL, NULL, 0, NULL, 0);
	}
	if (v->state != C_ESTABLISHED) {
		if (!queue_text(c, v, NULL, len, text))
			emit(c, CHAT_EV_QUEUED, peer, NULL, NULL, NULL, 0, NULL, 0);
		return;
	}
	if (seal_text(c, v, len, text, out_route, NULL) == CHAT_OK)
		emit(c, CHAT_EV_SENT, peer, NULL, v->suite->desc->name, NULL, len, text, 0);
}

static void send_room_text(struct chat_client *c, const char *room, size_t len, const char *text)
{
	struct croom *r = find_croom(c, room);
	size_t sent = 0, held = 0;

	if (!r) {
		fail_with(c, NULL, "not-member", "you are not in room %s: /join %s first", room, room);
		return;
	}
	if (len > c->cfg.max_message) {
		fail_with(c, NULL, "too-big", "message of %zu bytes exceeds client.max_message (%zu); not sent",
		          len, c->cfg.max_message);
		return;
	}
	for (size_t i = 0; i < r->n; i++) {
		struct conv *v = find_conv(c, r->members[i]);
		if (v && v->state == C_ESTABLISHED) {
			sent += seal_text(c, v, len, text, out_room, room) == CHAT_OK;
		} else if (v) {
			held += !queue_text(c, v, room, len, text);
		} else {
			fail_with(c, r->members[i], "no-session", "no session with %s: message not sent to them",
			          r->members[i]);
		}
	}
	if (sent)
		emit(c, CHAT_EV_SENT, NULL, room, NULL, NULL, len, text, 0);
	if (!r->n)
		say(c, CHAT_EV_INFO, NULL, "nobody else is in room %s", room);
	else if (held)
		say(c, CHAT_EV_INFO, NULL, "message held for %zu member(s) of %s until their sessions are up",
		    held, room);
}

static int valid_name(struct chat_client *c, const char *what, const char *name)
{
	const char *why = chat_name_check(strlen(name), name);

	if (why) {
		fail_with(c, name, "bad-name", "%s '%s' %s", what, name, why);
		return 0;
	}
	return 1;
}

/* Split "word rest": word into dst (bounded), returns rest. */
static const char *word(const char *s, size_t cap, char *dst)
{
	size_t n = 0;

	while (*s == ' ')
		s++;
	while (*s && *s != ' ') {
		if (n + 1 < cap)
			dst[n++] = *s;
		else
			n = cap; /* too long: poison */
		s++;
	}
	if (n >= cap)
		n = cap - 1, dst[0] = '\001';
	dst[n] = '\0';
	while (*s == ' ')
		s++;
	return s;
}

static void cmd_help(struct chat_client *c)
{
	static const char *const lines[] = {
		"/who                   who is online, with the suites each allows",
		"/talk USER             offer USER a conversation (they must /accept)",
		"/accept USER           accept USER's offer;  /reject USER [REASON] refuse it",
		"/msg USER TEXT         send TEXT to USER (offers a conversation if needed)",
		"/to USER | /to #ROOM   where plain lines go",
		"/join ROOM  /leave ROOM  /rooms   rooms (messages are encrypted per member)",
		"/fingerprint USER      a string to compare aloud with USER",
		"/suite [USER]          the suites you allow, or the one used with USER",
		"/close USER            end the conversation with USER",
		"/quit                  leave",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		emit(c, CHAT_EV_HELP, NULL, NULL, NULL, NULL, strlen(lines[i]), lines[i], 0);
}

static void command(struct chat_client *c, const char *line)
{
	char cmd[16], arg[CHAT_NAME_MAX + 2];
	const char *rest = word(line + 1, sizeof(cmd), cmd);
	struct conv *v;

	if (!strcmp(cmd, "help")) {
		cmd_help(c);
	} else if (!strcmp(cmd, "who")) {
		begin(c, CHAT_MSG_WHO);
		flush(c);
	} else if (!strcmp(cmd, "rooms")) {
		begin(c, CHAT_MSG_ROOMS);
		flush(c);
	} else if (!strcmp(cmd, "quit")) {
		chat_client_quit(c);
	} else if (!strcmp(cmd, "talk") || !strcmp(cmd, "accept") || !strcmp(cmd, "reject") ||
	           !strcmp(cmd, "msg") || !strcmp(cmd, "fingerprint") || !strcmp(cmd, "close") ||
	           !strcmp(cmd, "join") || !strcmp(cmd, "leave") || !strcmp(cmd, "to") ||
	           !strcmp(cmd, "suite")) {
		rest = word(rest, sizeof(arg), arg);
		if (!arg[0] && strcmp(cmd, "suite")) {
			fail_with(c, NULL, "usage", "/%s needs an argument (see /help)", cmd);
			return;
		}
		if (!strcmp(cmd, "suite")) {
			if (!arg[0]) {
				char list[600];
				csv(c->neff, c->eff, sizeof(list), list);
				emit(c, CHAT_EV_SUITE, NULL, NULL, NULL, NULL, strlen(list), list, 0);
			} else if ((v = find_conv(c, arg)) && v->suite) {
				emit(c, CHAT_EV_SUITE, arg, NULL, v->suite->desc->name, NULL,
				     strlen(v->suite->desc->summary), v->suite->desc->summary,
				     (v->suite->desc->flags & CHAT_FLAG_INSECURE) != 0);
			} else {
				fail_with(c, arg, "no-conversation", "no session with %s", arg);
			}
			return;
		}
		if (!strcmp(cmd, "to")) {
			if (arg[0] == '#') {
				if (!find_croom(c, arg + 1)) {
					fail_with(c, NULL, "not-member", "you are not in room %s", arg + 1);
					return;
				}
			} else if (!find_conv(c, arg)) {
				fail_with(c, arg, "no-conversation", "no conversation with %s: /talk %s first", arg, arg);
				return;
			}
			snprintf(c->current, sizeof(c->current), "%s", arg);
			say(c, CHAT_EV_INFO, NULL, "now talking to %s", arg);
			return;
		}
		const char *room = arg[0] == '#' ? arg + 1 : arg;
		if (!valid_name(c, !strcmp(cmd, "join") || !strcmp(cmd, "leave") ? "room" : "user", room))
			return;
		if (!strcmp(cmd, "join")) {
			if (find_croom(c, room)) {
				fail_with(c, NULL, "already", "you are already in room %s", room);
				return;
			}
			begin(c, CHAT_MSG_JOIN);
			chat_put_str8(&c->wb, room);
			flush(c);
		} else if (!strcmp(cmd, "leave")) {
			struct croom *r = find_croom(c, room);
			if (!r) {
				fail_with(c, NULL, "not-member", "you are not in room %s", room);
				return;
			}
			begin(c, CHAT_MSG_LEAVE);
			chat_put_str8(&c->wb, room);
			flush(c);
			for (struct croom **pp = &c->rooms; *pp; pp = &(*pp)->next)
				if (*pp == r) {
					*pp = r->next;
					break;
				}
			for (size_t i = 0; i < r->n; i++) {
				struct conv *m = find_conv(c, r->members[i]);
				if (m && !m->relay_link && !shares_room(c, r->members[i]))
					end_conv(c, m, "you left the room");
			}
			free(r->members);
			free(r);
			if (c->current[0] == '#' && !strcmp(c->current + 1, room))
				c->current[0] = '\0';
			emit(c, CHAT_EV_LEFT, NULL, room, NULL, NULL, 0, NULL, 0);
		} else if (!strcmp(cmd, "talk")) {
			if ((v = find_conv(c, arg)) && v->relay_link) {
				fail_with(c, arg, "already", "a conversation with %s is already %s", arg,
				          v->state == C_ESTABLISHED ? "open" : "being set up");
				return;
			}
			if (v) /* a room-only session: a 1:1 conversation replaces it */
				end_conv(c, v, "replaced by a 1:1 conversation");
			if (!(v = new_conv(c, arg, C_OFFER_OUT)))
				return;
			v->relay_link = 1;
			begin(c, CHAT_MSG_TALK);
			chat_put_str8(&c->wb, arg);
			flush(c);
			snprintf(c->current, sizeof(c->current), "%s", arg);
			emit(c, CHAT_EV_OFFERED, arg, NULL, NULL, NULL, 0, NULL, 0);
		} else if (!strcmp(cmd, "accept") || !strcmp(cmd, "reject")) {
			v = find_conv(c, arg);
			if (!v || v->state != C_OFFER_IN) {
				fail_with(c, arg, "no-offer", "%s has not offered you a conversation", arg);
				return;
			}
			int accept = cmd[0] == 'a';
			begin(c, CHAT_MSG_ANSWER);
			chat_put_str8(&c->wb, arg);
			chat_put_u8(&c->wb, (unsigned)accept);
			chat_put_str8(&c->wb, accept ? v->chosen : "");
			chat_put_str16(&c->wb, accept ? "" : (*rest ? rest : "rejected"));
			flush(c);
			if (!accept) {
				end_conv(c, v, "you rejected the offer");
				return;
			}
			v->initiator = 0;
			v->suite = suite_by_name(c, v->chosen);
			snprintf(c->current, sizeof(c->current), "%s", arg);
			if (start_session(c, v)) {
				send_abort(c, v, "cannot start a session");
				end_conv(c, v, "cannot start a session");
			}
		} else if (!strcmp(cmd, "msg")) {
			if (!strcmp(arg, c->name)) {
				fail_with(c, arg, "self", "you cannot talk to yourself");
				return;
			}
			send_text(c, arg, strlen(rest), rest);
		} else if (!strcmp(cmd, "fingerprint")) {
			char fp[128];
			v = find_conv(c, arg);
			if (!v || v->state != C_ESTABLISHED) {
				fail_with(c, arg, "no-conversation", "no established session with %s", arg);
				return;
			}
			if (!v->suite->desc->ops.cipher->fingerprint ||
			    v->suite->desc->ops.cipher->fingerprint(v->session, sizeof(fp), fp) != CHAT_OK) {
				fail_with(c, arg, "no-fingerprint", "suite %s offers no fingerprint", v->suite->desc->name);
				return;
			}
			emit(c, CHAT_EV_FINGERPRINT, arg, NULL, v->suite->desc->name, NULL, strlen(fp), fp, 0);
		} else if (!strcmp(cmd, "close")) {
			v = find_conv(c, arg);
			if (!v) {
				fail_with(c, arg, "no-conversation", "no conversation with %s", arg);
				return;
			}
			if (v->relay_link) {
				begin(c, CHAT_MSG_CLOSE);
				chat_put_str8(&c->wb, arg);
				flush(c);
			}
			emit(c, CHAT_EV_CLOSED, arg, NULL, NULL, NULL, 0, NULL, 0);
			end_conv(c, v, "you closed the conversation");
		}
	} else {
		fail_with(c, NULL, "usage", "unknown command /%s (see /help)", cmd);
	}
}

static void process_line(struct chat_client *c, size_t len, const char *line)
{
	if (len && line[0] == '/' && !(len > 1 && line[1] == '/')) {
		char buf[256];
		if (len >= sizeof(buf)) {
			/* Only /msg carries long text: handle it without copying. */
			if (len > 5 && !strncmp(line, "/msg ", 5)) {
				char arg[CHAT_NAME_MAX + 2];
				char *copy = malloc(len + 1);
				if (!copy)
					return;
				memcpy(copy, line, len);
				copy[len] = '\0';
				const char *rest = word(copy + 5, sizeof(arg), arg);
				if (valid_name(c, "user", arg))
					send_text(c, arg, strlen(rest), rest);
				chat_wipe(copy, len);
				free(copy);
				return;
			}
			fail_with(c, NULL, "usage", "command too long");
			return;
		}
		memcpy(buf, line, len);
		buf[len] = '\0';
		command(c, buf);
		return;
	}
	if (len && line[0] == '/') { /* "//text" sends "/text" */
		line++;
		len--;
	}
	if (!c->current[0]) {
		fail_with(c, NULL, "no-conversation", "no current conversation: /talk USER or /join ROOM first");
		return;
	}
	if (c->current[0] == '#')
		send_room_text(c, c->current + 1, len, line);
	else
		send_text(c, c->current, len, line);
}

static void process_early_input(struct chat_client *c)
{
	while (c->early && !c->done) {
		struct input_line *l = c->early;
		c->early = l->next;
		process_line(c, l->len, l->text);
		chat_wipe(l->text, l->len);
		free(l);
	}
	c->early_tail = &c->early;
}

void chat_client_input(struct chat_client *c, size_t len, const char *line)
{
	if (c->done)
		return;
	if (c->state != CS_READY) {
		struct input_line *l = malloc(sizeof(*l) + len);
		if (!l)
			return;
		l->next = NULL;
		l->len = len;
		memcpy(l->text, line, len);
		*c->early_tail = l;
		c->early_tail = &l->next;
		return;
	}
	process_line(c, len, line);
}

void chat_client_quit(struct chat_client *c)
{
	for (struct conv *v = c->convs; v; v = v->next)
		if (v->npending)
			fail_with(c, v->peer, "undelivered", "%zu message(s) to %s were not delivered: "
			          "you quit before the session was up", v->npending, v->peer);
	c->quitting = 1;
	if (c->conn)
		chat_conn_close_after_flush(c->conn, "quit");
	else
		finish(c, 0);
}

int chat_client_done(const struct chat_client *c)
{
	return c->done;
}

int chat_client_status(const struct chat_client *c)
{
	return c->status;
}

const char *chat_client_current(const struct chat_client *c)
{
	return c->current;
}

int chat_client_new(struct chat_loop *loop, const struct chat_client_config *cfg,
                    chat_event_cb cb, void *ui, struct chat_client **out, size_t errlen, char *err)
{
	struct chat_client *c;
	struct chat_conn_limits lim = { .max_frame = cfg->max_frame, .out_limit = 64u << 20 };
	int rc;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return CHAT_ERR_NOMEM;
	c->loop = loop;
	c->cfg = *cfg;
	c->cb = cb;
	c->ui = ui;
	c->early_tail = &c->early;
	chat_wbuf_init(&c->wb, cfg->max_frame);
	for (size_t i = 0; i < cfg->nsuites && i < CHAT_SUITES_MAX; i++) {
		const struct chat_loaded *s;
		rc = chat_registry_load(cfg->reg, cfg->plugin_dir, CHAT_PLUGIN_CIPHER, cfg->suites[i], &s,
		                        errlen, err);
		if (rc)
			goto fail;
		c->suites[c->nsuites++] = s;
		snprintf(c->eff[c->neff++], CHAT_NAME_MAX + 1, "%s", s->desc->name);
	}
	if (!c->nsuites) {
		snprintf(err, errlen, "no suite allowed (client.suites is empty)");
		rc = CHAT_ERR_CONFIG;
		goto fail;
	}
	rc = chat_conn_connect(loop, cfg->tp, cfg->tp_host, cfg->relay, &lim, &client_cbs, c, &c->conn);
	if (rc) {
		snprintf(err, errlen, "cannot connect to relay %s: %s", cfg->relay, chat_strerror(rc));
		goto fail;
	}
	chat_loop_timer_add(loop, (uint64_t)cfg->connect_timeout_ms, connect_timeout, c, &c->timer);
	*out = c;
	return CHAT_OK;
fail:
	chat_wbuf_free(&c->wb);
	free(c);
	return rc;
}

void chat_client_free(struct chat_client *c)
{
	if (!c)
		return;
	if (c->timer)
		chat_loop_timer_cancel(c->loop, c->timer);
	if (c->conn) {
		c->quitting = 1;
		chat_conn_close(c->conn, CHAT_OK, "exiting");
	}
	while (c->convs) {
		struct conv *v = c->convs;
		v->npending = 0; /* already reported */
		end_conv(c, v, "exiting");
	}
	while (c->rooms) {
		struct croom *r = c->rooms;
		c->rooms = r->next;
		free(r->members);
		free(r);
	}
	while (c->early) {
		struct input_line *l = c->early;
		c->early = l->next;
		free(l);
	}
	if (c->scratch) {
		chat_wipe(c->scratch, c->scratch_cap);
		free(c->scratch);
	}
	chat_wbuf_free(&c->wb);
	free(c);
}
