/* What a registered user's client keeps between runs, under the account
 * password: the keystore (client.data_dir/USER.keys: conversations with their
 * cipher sessions, held text, the outbox, the id counters) and the history
 * (USER.log: every 1:1 message sent and received, the chat-peer log format).
 *
 * The keystore's contents are one binary blob (all integers big-endian):
 *   "CCS3" | str8 user | u64 next client id |
 *   u32 count + count x u64 (mail ids processed, oldest first) |
 *   u8 count + count x (str8 suite | u32 + private key | u32 + public key)
 *     (our identity keys) |
 *   u32 count + count x (str8 peer | str8 suite | u32 + key | u8 verified)
 *     (peers' identity keys, pinned) |
 *   u32 count | count x conversation | u32 count | count x outbox message
 * conversation: str8 peer | u8 kind (KIND_*) | u8 initiator | str8 suite |
 *   str8 chosen | u8 count + count x str8 (their suites) | u32 + binding |
 *   u32 + session (KIND_ESTABLISHED only) | u32 count + count x (u32 + text) |
 *   u64 last number sent | u64 next number expected |
 *   u32 count + count x (u64 number | u32 + text) (held: arrived early) |
 *   u8 count + count x u64 (numbers given up on)
 * outbox message: str8 peer | u8 kind (E_*) | u8 state (OM_*) | u64 number |
 *   u32 tries | u32 + text | u32 count + count x (u64 client id | u8 stored |
 *   u32 + sealed payload)
 * "CCS2" (before identity keys) is read too, with none; "CCS1" (before
 * end-to-end receipts) as well: its conversations are
 * kept; its outbox held sealed payloads of the old format, which are dropped
 * with a warning.  Every buffer that held it is wiped. */
#include "client_int.h"
#include "durable.h"
#include "host.h"
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


#define BLOB_MAGIC "CCS3"
#define BLOB_MAGIC_V2 "CCS2"
#define BLOB_MAGIC_V1 "CCS1"
#define SESSION_MAX (1u << 20)

enum {
	KIND_OFFER_OUT = 1, /* our offer waits for an answer (the relay keeps it) */
	KIND_OFFER_IN,      /* their offer waits for /accept */
	KIND_ACCEPTED,      /* we accepted; no handshake message yet: start afresh */
	KIND_INTERRUPTED,   /* a handshake was under way: close and offer again */
	KIND_ESTABLISHED,   /* with the saved session */
};

/* ---- a growable buffer that never leaves copies behind */

struct sbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void sb_room(struct sbuf *b, size_t n)
{
	if (b->err)
		return;
	if (n > CHAT_KEYSTORE_MAX - b->len) {
		b->err = CHAT_ERR_TOO_BIG;
		return;
	}
	if (b->len + n <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 1024;
	while (cap < b->len + n)
		cap *= 2;
	uint8_t *grown = malloc(cap);
	if (!grown) {
		b->err = CHAT_ERR_NOMEM;
		return;
	}
	if (b->p) {
		memcpy(grown, b->p, b->len);
		chat_wipe(b->p, b->cap);
		free(b->p);
	}
	b->p = grown;
	b->cap = cap;
}

static void sb_bytes(struct sbuf *b, size_t n, const void *src)
{
	sb_room(b, n);
	if (!b->err && n) {
		memcpy(b->p + b->len, src, n);
		b->len += n;
	}
}

static void sb_uint(struct sbuf *b, int bytes, uint64_t v)
{
	uint8_t tmp[8];

	for (int i = 0; i < bytes; i++)
		tmp[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
	sb_bytes(b, (size_t)bytes, tmp);
}

static void sb_str8(struct sbuf *b, const char *s)
{
	size_t n = strlen(s);

	sb_uint(b, 1, n);
	sb_bytes(b, n, s);
}

static void sb_blob(struct sbuf *b, size_t n, const void *src)
{
	sb_uint(b, 4, n);
	sb_bytes(b, n, src);
}

static void sb_free(struct sbuf *b)
{
	if (b->p) {
		chat_wipe(b->p, b->cap);
		free(b->p);
	}
	b->p = NULL;
	b->len = b->cap = 0;
}

/* ---- reading it back */

struct sread {
	const uint8_t *p;
	size_t left;
	int bad;
};

static uint64_t sr_uint(struct sread *r, int bytes)
{
	uint64_t v = 0;

	if (r->bad || r->left < (size_t)bytes) {
		r->bad = 1;
		return 0;
	}
	for (int i = 0; i < bytes; i++)
		v = v << 8 | r->p[i];
	r->p += bytes;
	r->left -= (size_t)bytes;
	return v;
}

static void sr_str8(struct sread *r, size_t cap, char *dst)
{
	size_t n = (size_t)sr_uint(r, 1);

	dst[0] = '\0';
	if (r->bad || n > r->left || n >= cap || memchr(r->p, '\0', n)) {
		r->bad = 1;
		return;
	}
	memcpy(dst, r->p, n);
	dst[n] = '\0';
	r->p += n;
	r->left -= n;
}

/* A u32-prefixed field: points into the blob. */
static const uint8_t *sr_blob(struct sread *r, size_t max, size_t *len)
{
	size_t n = (size_t)sr_uint(r, 4);
	const uint8_t *p = r->p;

	*len = 0;
	if (r->bad || n > r->left || n > max) {
		r->bad = 1;
		return NULL;
	}
	r->p += n;
	r->left -= n;
	*len = n;
	return p;
}

/* ---- files */

static char *join(const char *dir, const char *name, const char *ext)
{
	size_t n = strlen(dir) + strlen(name) + strlen(ext) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s%s", dir, name, ext);
	return p;
}

/* mkdir -p, private: the directory holds secrets. */
static int make_dirs(const char *path, size_t errlen, char *err)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf)) {
		snprintf(err, errlen, "client.data_dir '%s' is not a usable path", path);
		return CHAT_ERR_INVALID;
	}
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char keep = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
			snprintf(err, errlen, "cannot create the data directory %s: %s", buf, strerror(errno));
			return CHAT_ERR_IO;
		}
		buf[i] = keep;
	}
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "client.data_dir %s is not a directory", path);
		return CHAT_ERR_IO;
	}
	return CHAT_OK;
}

static int have_data_dir(const struct chat_client *c)
{
	return c->cfg.data_dir && *c->cfg.data_dir;
}

static int open_log(struct chat_client *c, size_t errlen, char *err)
{
	return chat_seclog_open(c->log_path, c->password_len, c->password, c->cfg.kdf_iterations,
	                        &c->log, NULL, NULL, errlen, err);
}

int client_store_open(struct chat_client *c, size_t errlen, char *err)
{
	int created = 0, rc;

	if (!have_data_dir(c) || c->ks)
		return CHAT_OK;
	if ((rc = make_dirs(c->cfg.data_dir, errlen, err)) != CHAT_OK)
		return rc;
	free(c->ks_path); /* again after a mistyped password */
	free(c->log_path);
	c->ks_path = c->log_path = NULL;
	if (!(c->ks_path = join(c->cfg.data_dir, c->cfg.user, ".keys")) ||
	    !(c->log_path = join(c->cfg.data_dir, c->cfg.user, ".log"))) {
		snprintf(err, errlen, "out of memory");
		return CHAT_ERR_NOMEM;
	}
	rc = chat_keystore_open(c->ks_path, c->password_len, c->password, c->cfg.kdf_iterations,
	                        &c->ks, &c->ks_blob, &c->ks_blob_len, &created, errlen, err);
	if (rc != CHAT_OK)
		return rc;
	c->ks_trusted = !created;
	/* Encrypted, but a copy lets anyone guess the password offline. */
	chat_warn_if_shared(c->cfg.data_dir, "client.data_dir");
	chat_warn_if_shared(c->ks_path, "the keystore");
	chat_warn_if_shared(c->log_path, "the history");
	/* An existing history is verified now; a new one is made once the relay
	 * has accepted the password (a mistyped first password makes nothing). */
	if (access(c->log_path, F_OK) == 0 && (rc = open_log(c, errlen, err)) != CHAT_OK)
		return rc;
	return CHAT_OK;
}

/* ---- saving */

static uint8_t *save_session(struct chat_client *c, struct conv *v, size_t *len)
{
	const struct chat_cipher_ops *ops = v->suite->desc->ops.cipher;
	size_t cap = 1024;

	*len = 0;
	if (!v->session || !CHAT_CIPHER_HAS(ops, session_save) || !CHAT_CIPHER_HAS(ops, session_load))
		return NULL;
	while (cap <= SESSION_MAX) {
		uint8_t *buf = malloc(cap);
		if (!buf)
			return NULL;
		struct chat_buf dst = { .data = buf, .cap = cap };
		int rc = ops->session_save(v->session, &dst);
		if (rc == CHAT_OK) {
			*len = dst.len;
			return buf;
		}
		chat_wipe(buf, cap);
		free(buf);
		if (rc != CHAT_ERR_NOSPACE) {
			client_fail(c, v->peer, "keystore", "cannot save the %s session with %s: %s",
			            v->suite->desc->name, v->peer, chat_strerror(rc));
			return NULL;
		}
		cap *= 4;
	}
	return NULL;
}

static void put_conv(struct chat_client *c, struct sbuf *b, struct conv *v)
{
	uint8_t *session = NULL;
	size_t session_len = 0, nheld = 0;
	int kind;

	switch (v->state) {
	case C_OFFER_OUT:
		kind = KIND_OFFER_OUT;
		break;
	case C_OFFER_IN:
		kind = KIND_OFFER_IN;
		break;
	case C_HANDSHAKE:
		kind = !v->initiator && !v->hs_steps ? KIND_ACCEPTED : KIND_INTERRUPTED;
		break;
	default:
		session = save_session(c, v, &session_len);
		kind = session ? KIND_ESTABLISHED : KIND_INTERRUPTED;
	}
	sb_str8(b, v->peer);
	sb_uint(b, 1, (uint64_t)kind);
	sb_uint(b, 1, (uint64_t)v->initiator);
	sb_str8(b, v->suite ? v->suite->desc->name : "");
	sb_str8(b, v->chosen);
	sb_uint(b, 1, v->ntheirs);
	for (size_t i = 0; i < v->ntheirs; i++)
		sb_str8(b, v->theirs[i]);
	sb_blob(b, v->bind ? v->bind_len : 0, v->bind);
	sb_blob(b, session_len, session);
	if (session) {
		chat_wipe(session, session_len);
		free(session);
	}
	for (struct pending *p = v->pending; p; p = p->next)
		nheld += !p->room[0];
	sb_uint(b, 4, nheld);
	for (struct pending *p = v->pending; p; p = p->next)
		if (!p->room[0])
			sb_blob(b, p->len, p->text);
	sb_uint(b, 8, v->tx_seq);
	sb_uint(b, 8, v->rx_next);
	sb_uint(b, 4, v->nheld);
	for (struct held *h = v->held; h; h = h->next) {
		sb_uint(b, 8, h->seq);
		sb_blob(b, h->len, h->text);
	}
	sb_uint(b, 1, v->nmissing);
	for (size_t i = 0; i < v->nmissing; i++)
		sb_uint(b, 8, v->missing[i]);
}

static int kept(const struct chat_client *c, const struct conv *v)
{
	(void)c;
	return v->relay_link && !v->peer_guest;
}

void client_store_mark(struct chat_client *c)
{
	c->ks_dirty = 1;
}

/* The keystore's new contents, written beside it (client_store_commit puts
 * them in place). */
int client_store_stage(struct chat_client *c)
{
	struct sbuf b = { 0 };
	char err[1024];
	size_t nconv = 0, nout = 0;
	int rc;

	if (!c->ks || !c->ks_dirty || !c->ks_trusted)
		return CHAT_OK;
	sb_bytes(&b, 4, BLOB_MAGIC);
	sb_str8(&b, c->cfg.user);
	sb_uint(&b, 8, c->next_id);
	sb_uint(&b, 4, c->nrecent);
	for (size_t i = 0; i < c->nrecent; i++) /* oldest first */
		sb_uint(&b, 8, c->recent[(c->recent_pos + CHAT_RECENT_MAIL - c->nrecent + i) % CHAT_RECENT_MAIL]);
	/* Identity keys before the conversations: loading a saved session
	 * needs them. */
	sb_uint(&b, 1, c->nown);
	for (size_t i = 0; i < c->nown; i++) {
		sb_str8(&b, c->own[i].suite);
		sb_blob(&b, c->own[i].priv_len, c->own[i].priv);
		sb_blob(&b, c->own[i].pub_len, c->own[i].pub);
	}
	sb_uint(&b, 4, c->npins);
	for (size_t i = 0; i < c->npins; i++) {
		sb_str8(&b, c->pins[i].peer);
		sb_str8(&b, c->pins[i].suite);
		sb_blob(&b, c->pins[i].len, c->pins[i].key);
		sb_uint(&b, 1, c->pins[i].verified);
	}
	for (struct conv *v = c->convs; v; v = v->next)
		nconv += kept(c, v);
	sb_uint(&b, 4, nconv);
	for (struct conv *v = c->convs; v; v = v->next)
		if (kept(c, v))
			put_conv(c, &b, v);
	for (struct outmsg *m = c->out; m; m = m->next)
		nout++;
	sb_uint(&b, 4, nout);
	for (struct outmsg *m = c->out; m; m = m->next) {
		size_t nchunks = 0;
		sb_str8(&b, m->peer);
		sb_uint(&b, 1, (uint64_t)m->kind);
		sb_uint(&b, 1, (uint64_t)m->state);
		sb_uint(&b, 8, m->seq);
		sb_uint(&b, 4, m->tries);
		sb_blob(&b, m->len, m->text);
		for (struct outmail *o = m->chunks; o; o = o->next)
			nchunks++;
		sb_uint(&b, 4, nchunks);
		for (struct outmail *o = m->chunks; o; o = o->next) {
			sb_uint(&b, 8, o->id);
			sb_uint(&b, 1, (uint64_t)o->stored);
			sb_blob(&b, o->len, o->payload);
		}
	}
	if (b.err) {
		rc = b.err;
		snprintf(err, sizeof(err), "%s: cannot save: %s", c->ks_path, chat_strerror(rc));
	} else {
		rc = chat_keystore_stage(c->ks, b.len, b.p, sizeof(err), err);
	}
	sb_free(&b);
	if (rc != CHAT_OK) {
		client_fail(c, NULL, "keystore", "%s", err);
		return rc;
	}
	c->ks_dirty = 0;
	c->ks_staged = 1;
	return CHAT_OK;
}

int client_store_commit(struct chat_client *c)
{
	char err[1024];
	int rc = CHAT_OK;

	if (c->ks_staged) { /* first: the rename is what the showing waits for */
		c->ks_staged = 0;
		if ((rc = chat_keystore_commit(c->ks, sizeof(err), err)) != CHAT_OK) {
			c->ks_dirty = 1; /* not saved after all */
			client_fail(c, NULL, "keystore", "%s", err);
		}
	}
	if (c->log && !c->log_failed && chat_seclog_sync(c->log, sizeof(err), err) != CHAT_OK) {
		client_fail(c, NULL, "history", "%s: no further messages are recorded", err);
		c->log_failed = 1;
	}
	return rc;
}

int client_store_save(struct chat_client *c)
{
	int rc = client_store_stage(c);

	return rc != CHAT_OK ? rc : client_store_commit(c);
}

/* ---- restoring */

static void restore_fail(size_t errlen, char *err, const char *path, const char *what)
{
	snprintf(err, errlen, "%s: the keystore's contents are malformed (%s)", path, what);
}

/* Recreate a saved session: same params as when it was made. */
static int load_session(struct chat_client *c, struct conv *v, size_t len, const uint8_t *blob)
{
	const struct chat_cipher_ops *ops = v->suite->desc->ops.cipher;
	const struct chat_contact *contact = chat_directory_find(c->cfg.directory, v->peer);
	struct chat_cipher_params p = {
		.size = sizeof(p),
		.role = v->initiator ? CHAT_ROLE_INITIATOR : CHAT_ROLE_RESPONDER,
		.local_id = c->cfg.user,
		.peer_id = v->peer,
		.suite = v->suite->desc->name,
		.binding = (const uint8_t *)v->bind,
		.binding_len = v->bind_len,
	};

	if (contact) {
		p.secret = (const uint8_t *)contact->password;
		p.secret_len = strlen(contact->password);
	}
	if (!CHAT_CIPHER_HAS(ops, session_load))
		return CHAT_ERR_UNSUPPORTED;
	int rc = client_identity_params(c, v, &p);
	if (rc)
		return rc;
	return ops->session_load(&v->suite->host, &p, len, blob, &v->session);
}

static int restore_conv(struct chat_client *c, struct sread *r, int v1, size_t errlen, char *err)
{
	char peer[CHAT_NAME_MAX + 1], suite[CHAT_NAME_MAX + 1], chosen[CHAT_NAME_MAX + 1];
	const uint8_t *bind, *session;
	size_t bind_len, session_len, ntheirs;
	struct conv *v;

	sr_str8(r, sizeof(peer), peer);
	int kind = (int)sr_uint(r, 1);
	int initiator = (int)sr_uint(r, 1);
	sr_str8(r, sizeof(suite), suite);
	sr_str8(r, sizeof(chosen), chosen);
	ntheirs = (size_t)sr_uint(r, 1);
	if (r->bad || ntheirs > CHAT_SUITES_MAX || kind < KIND_OFFER_OUT || kind > KIND_ESTABLISHED ||
	    chat_name_check(strlen(peer), peer) || client_find_conv(c, peer)) {
		restore_fail(errlen, err, c->ks_path, "a conversation's header");
		return CHAT_ERR_MALFORMED;
	}
	if (!(v = client_new_conv(c, peer, C_OFFER_OUT))) {
		snprintf(err, errlen, "out of memory");
		return CHAT_ERR_NOMEM;
	}
	v->relay_link = 1;
	v->peer_guest = 0;
	v->restored = 1;
	v->initiator = initiator != 0;
	v->ntheirs = ntheirs;
	for (size_t i = 0; i < ntheirs; i++)
		sr_str8(r, sizeof(v->theirs[i]), v->theirs[i]);
	snprintf(v->chosen, sizeof(v->chosen), "%s", chosen);
	bind = sr_blob(r, 4096, &bind_len);
	session = sr_blob(r, SESSION_MAX, &session_len);
	size_t nheld = (size_t)sr_uint(r, 4);
	for (size_t i = 0; i < nheld && !r->bad; i++) {
		size_t len;
		const uint8_t *text = sr_blob(r, CHAT_KEYSTORE_MAX, &len);
		if (!r->bad && client_queue_text(c, v, NULL, len, (const char *)text)) {
			snprintf(err, errlen, "out of memory");
			return CHAT_ERR_NOMEM;
		}
	}
	v->rx_next = 1;
	if (!v1) {
		v->tx_seq = sr_uint(r, 8);
		v->rx_next = sr_uint(r, 8);
		size_t n = (size_t)sr_uint(r, 4);
		struct held **tail = &v->held;
		uint64_t last = v->rx_next; /* held ones are after rx_next, in order */
		for (size_t i = 0; i < n && !r->bad; i++) {
			uint64_t seq = sr_uint(r, 8);
			size_t len;
			const uint8_t *text = sr_blob(r, CHAT_KEYSTORE_MAX, &len);
			struct held *h = r->bad ? NULL : malloc(sizeof(*h) + len);
			if (!r->bad && !h) {
				snprintf(err, errlen, "out of memory");
				return CHAT_ERR_NOMEM;
			}
			if (r->bad)
				break;
			if (seq <= last) {
				free(h);
				r->bad = 1;
				break;
			}
			last = seq;
			h->next = NULL;
			h->seq = seq;
			h->len = len;
			memcpy(h->text, text, len);
			*tail = h;
			tail = &h->next;
			v->nheld++;
		}
		v->nmissing = (size_t)sr_uint(r, 1);
		if (v->nmissing > CHAT_MISSING_MAX)
			r->bad = 1;
		for (size_t i = 0; i < v->nmissing && !r->bad; i++)
			v->missing[i] = sr_uint(r, 8);
		if (v->rx_next == 0)
			v->rx_next = 1;
		if (v->held)
			v->gap_since = chat_loop_now_ms(); /* wait afresh for the gap to fill */
	}
	if (r->bad) {
		restore_fail(errlen, err, c->ks_path, "the conversation with a peer");
		return CHAT_ERR_MALFORMED;
	}
	v->suite = suite[0] ? client_suite_by_name(c, suite) : NULL;
	if (bind_len && (v->bind = malloc(bind_len + 1))) {
		memcpy(v->bind, bind, bind_len);
		v->bind[bind_len] = '\0';
		v->bind_len = bind_len;
	}
	switch (kind) {
	case KIND_OFFER_OUT:
		v->state = C_OFFER_OUT;
		break;
	case KIND_OFFER_IN:
		v->state = C_OFFER_IN;
		break;
	case KIND_ACCEPTED:
		v->state = C_HANDSHAKE;
		v->hs_steps = 0;
		if (!v->suite)
			v->hs_steps = 1; /* the suite is gone: offer anew */
		break;
	case KIND_INTERRUPTED:
		v->state = C_HANDSHAKE;
		v->hs_steps = 1;
		break;
	default: {
		int rc = v->suite ? load_session(c, v, session_len, session) : CHAT_ERR_NOTFOUND;
		v->state = C_HANDSHAKE;
		v->hs_steps = 1;
		if (rc == CHAT_OK)
			v->state = C_ESTABLISHED;
		else
		if (v->suite)
			client_say(c, CHAT_EV_WARNING, peer, "the saved %s session with %s cannot be "
			           "restored (%s): the conversation is offered anew", suite, peer,
			           chat_strerror(rc));
		else if (rc != CHAT_OK)
			client_say(c, CHAT_EV_WARNING, peer, "the saved %s session with %s is not used: %s "
			           "is not among the suites you allow now (client.suites); the conversation "
			           "is offered anew", suite, peer, suite);
	}
	}
	return CHAT_OK;
}

static int restore_outmsg(struct chat_client *c, struct sread *r, size_t errlen, char *err)
{
	char peer[CHAT_NAME_MAX + 1];
	size_t len;

	sr_str8(r, sizeof(peer), peer);
	int kind = (int)sr_uint(r, 1);
	int state = (int)sr_uint(r, 1);
	uint64_t seq = sr_uint(r, 8);
	unsigned tries = (unsigned)sr_uint(r, 4);
	const uint8_t *text = sr_blob(r, CHAT_KEYSTORE_MAX, &len);
	size_t nchunks = (size_t)sr_uint(r, 4);
	if (r->bad || (kind != E_TEXT && kind != E_RECEIPT) || state < OM_WAITING || state > OM_REFUSED ||
	    chat_name_check(strlen(peer), peer)) {
		restore_fail(errlen, err, c->ks_path, "an outbox message");
		return CHAT_ERR_MALFORMED;
	}
	struct outmsg *m = client_outmsg_new(c, peer, kind, seq, len, text);
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return CHAT_ERR_NOMEM;
	}
	m->tries = tries;
	/* A refused copy goes again at once, as it is (with every other copy
	 * not stored, in the order sealed); a stored one waits for its receipt
	 * (or the relay's word that it was not readable). */
	m->state = state;
	struct outmail **tail = &m->chunks;
	for (size_t i = 0; i < nchunks && !r->bad; i++) {
		uint64_t id = sr_uint(r, 8);
		int stored = (int)sr_uint(r, 1);
		const uint8_t *payload = sr_blob(r, CHAT_KEYSTORE_MAX, &len);
		if (r->bad)
			break;
		struct outmail *o = malloc(sizeof(*o) + len);
		if (!o) {
			snprintf(err, errlen, "out of memory");
			return CHAT_ERR_NOMEM;
		}
		o->next = NULL;
		o->id = id;
		o->sent = 0;
		o->stored = stored != 0;
		o->len = len;
		memcpy(o->payload, payload, len);
		*tail = o;
		tail = &o->next;
	}
	if (!r->bad && m->state == OM_REFUSED) /* (an older client kept no copy) */
		m->state = m->chunks ? OM_SEALED : OM_WAITING;
	if (!r->bad && m->state == OM_WAITING)
		client_outmsg_drop_copy(m);
	if (!r->bad && m->state != OM_WAITING && !m->chunks)
		r->bad = 1;
	if (r->bad) {
		restore_fail(errlen, err, c->ks_path, "an outbox message");
		return CHAT_ERR_MALFORMED;
	}
	return CHAT_OK;
}

static int restore_identities(struct chat_client *c, struct sread *r)
{
	size_t n = (size_t)sr_uint(r, 1), priv_len, pub_len, len;
	char suite[CHAT_NAME_MAX + 1], peer[CHAT_NAME_MAX + 1];
	const uint8_t *priv, *pub, *key;
	int rc = CHAT_OK;

	for (size_t i = 0; i < n && !r->bad && rc == CHAT_OK; i++) {
		sr_str8(r, sizeof(suite), suite);
		priv = sr_blob(r, 4096, &priv_len);
		pub = sr_blob(r, 4096, &pub_len);
		if (!r->bad)
			rc = client_own_add(c, suite, priv_len, priv, pub_len, pub);
	}
	n = (size_t)sr_uint(r, 4);
	if (n > 100000)
		r->bad = 1;
	for (size_t i = 0; i < n && !r->bad && rc == CHAT_OK; i++) {
		sr_str8(r, sizeof(peer), peer);
		sr_str8(r, sizeof(suite), suite);
		key = sr_blob(r, 4096, &len);
		unsigned verified = (unsigned)sr_uint(r, 1);
		if (!r->bad)
			rc = client_pin_add(c, peer, suite, len, key, verified != 0);
	}
	return r->bad ? CHAT_ERR_MALFORMED : rc;
}

int client_store_restore(struct chat_client *c, size_t errlen, char *err)
{
	struct sread r = { .p = c->ks_blob, .left = c->ks_blob_len };
	char user[CHAT_NAME_MAX + 1];
	int rc = CHAT_OK, v1;

	if (!c->ks_blob)
		return CHAT_OK;
	if (r.left < 4 || (memcmp(r.p, BLOB_MAGIC, 4) && memcmp(r.p, BLOB_MAGIC_V2, 4) &&
	                   memcmp(r.p, BLOB_MAGIC_V1, 4))) {
		restore_fail(errlen, err, c->ks_path, "unknown format");
		rc = CHAT_ERR_MALFORMED;
		goto out;
	}
	v1 = !memcmp(r.p, BLOB_MAGIC_V1, 4);
	int v3 = !memcmp(r.p, BLOB_MAGIC, 4);
	r.p += 4;
	r.left -= 4;
	sr_str8(&r, sizeof(user), user);
	c->next_id = sr_uint(&r, 8);
	if (v1) {
		sr_uint(&r, 8); /* the old "highest mail id processed": ids are remembered one by one now */
	} else {
		size_t n = (size_t)sr_uint(&r, 4);
		if (n > CHAT_RECENT_MAIL)
			r.bad = 1;
		for (size_t i = 0; i < n && !r.bad; i++)
			client_remember_mail(c, sr_uint(&r, 8));
	}
	if (!r.bad && strcmp(user, c->cfg.user)) {
		snprintf(err, errlen, "%s belongs to %s, not %s", c->ks_path, user, c->cfg.user);
		rc = CHAT_ERR_MALFORMED;
		goto out;
	}
	if (c->next_id == 0)
		c->next_id = 1;
	if (v3 && (rc = restore_identities(c, &r)) != CHAT_OK) {
		restore_fail(errlen, err, c->ks_path, "its identity keys do not read back");
		goto out;
	}
	size_t nconv = (size_t)sr_uint(&r, 4);
	for (size_t i = 0; i < nconv && !r.bad && rc == CHAT_OK; i++)
		rc = restore_conv(c, &r, v1, errlen, err);
	if (rc != CHAT_OK)
		goto out;
	size_t nout = (size_t)sr_uint(&r, 4);
	for (size_t i = 0; i < nout && !r.bad && rc == CHAT_OK; i++) {
		if (v1) { /* sealed in the old format: the peer could not read them now */
			char peer[CHAT_NAME_MAX + 1];
			size_t len;
			sr_uint(&r, 8);
			sr_str8(&r, sizeof(peer), peer);
			sr_blob(&r, CHAT_KEYSTORE_MAX, &len);
			if (!r.bad && i + 1 == nout)
				client_say(c, CHAT_EV_WARNING, NULL, "%zu sealed message chunk(s) kept by an older "
				           "version of chat-client cannot be sent (their format changed)", nout);
			continue;
		}
		rc = restore_outmsg(c, &r, errlen, err);
	}
	if (rc != CHAT_OK)
		goto out;
	if (r.bad || r.left) {
		restore_fail(errlen, err, c->ks_path, r.bad ? "cut short" : "bytes after the end");
		rc = CHAT_ERR_MALFORMED;
	}
out:
	chat_wipe(c->ks_blob, c->ks_blob_len);
	free(c->ks_blob);
	c->ks_blob = NULL;
	c->ks_blob_len = 0;
	c->ks_dirty = 0;
	return rc;
}

static void offer_again(struct chat_client *c, struct conv *v)
{
	client_say(c, CHAT_EV_INFO, v->peer, "the handshake with %s did not finish before the client "
	           "stopped: the conversation is offered anew", v->peer);
	client_begin(c, CHAT_MSG_CLOSE);
	chat_put_str8(&c->wb, v->peer);
	client_flush(c);
	client_drop_session(v);
	v->state = C_OFFER_OUT;
	v->initiator = 0;
	client_send_talk(c, v);
	client_store_mark(c);
}

void client_store_after_login(struct chat_client *c)
{
	char err[1024];

	if (!have_data_dir(c)) {
		client_say(c, CHAT_EV_INFO, NULL, "client.data_dir is empty: nothing is kept (no history; "
		           "after a restart every conversation needs a new handshake, and text not yet "
		           "sent is lost)");
		return;
	}
	if (!c->ks)
		return;
	c->ks_trusted = 1;
	client_identity_publish(c); /* our identity keys, kept in the keystore */
	if (!c->log && open_log(c, sizeof(err), err) != CHAT_OK) {
		client_fail(c, NULL, "history", "%s: no history is kept in this session", err);
		c->log_failed = 1;
	}
	/* Whatever the relay may not have: duplicates are dropped by client id. */
	client_resend_outbox(c);
	for (struct conv *v = c->convs; v; v = v->next) {
		if (!v->restored)
			continue;
		v->restored = 0;
		switch (v->state) {
		case C_ESTABLISHED: {
			int insecure = (v->suite->desc->flags & CHAT_FLAG_INSECURE) != 0;
			if (!c->current[0])
				snprintf(c->current, sizeof(c->current), "%s", v->peer);
			client_emit(c, CHAT_EV_RESUMED, v->peer, NULL, v->suite->desc->name, NULL, 0, NULL,
			            insecure);
			break;
		}
		case C_HANDSHAKE:
			if (v->hs_steps || client_start_session(c, v) != CHAT_OK)
				offer_again(c, v);
			else
				client_say(c, CHAT_EV_INFO, v->peer, "you accepted %s's offer: waiting for "
				           "their handshake", v->peer);
			break;
		case C_OFFER_IN:
			if (v->chosen[0] && client_suite_by_name(c, v->chosen)) {
				const struct chat_loaded *s = client_suite_by_name(c, v->chosen);
				client_emit(c, CHAT_EV_OFFER, v->peer, NULL, v->chosen, NULL, 0, NULL,
				            (s->desc->flags & CHAT_FLAG_INSECURE) != 0);
			}
			break;
		case C_OFFER_OUT:
			client_say(c, CHAT_EV_INFO, v->peer, "your offer to %s is still waiting for an "
			           "answer", v->peer);
			break;
		}
		if (v->npending)
			client_emit(c, CHAT_EV_QUEUED, v->peer, NULL, NULL, NULL, 0, NULL, 0);
	}
	client_store_mark(c);
	client_store_save(c);
	client_pump(c); /* what waits, in order */
}

/* ---- history */

void client_history(struct chat_client *c, int direction, const char *peer, size_t len,
                    const char *text)
{
	char err[1024];

	if (!c->log || c->log_failed)
		return;
	int64_t at = c->in_mail ? c->mail_time : chat_unix_ms();
	if ((c->history_unsynced
	     ? chat_seclog_append_unsynced(c->log, at, direction, peer, len, text, sizeof(err), err)
	     : chat_seclog_append(c->log, at, direction, peer, len, text, sizeof(err), err)) != CHAT_OK) {
		client_fail(c, NULL, "history", "%s: no further messages are recorded", err);
		c->log_failed = 1;
	}
}

struct copy_ctx {
	struct chat_seclog *to;
	char err[1024];
};

static int copy_record(void *arg, const struct chat_seclog_record *r)
{
	struct copy_ctx *x = arg;

	return chat_seclog_append(x->to, r->time_ms, r->direction, r->peer, r->text_len, r->text,
	                          sizeof(x->err), x->err);
}

/* The history under a new password: copied record by record into a new
 * file, which then replaces the old one. */
static int rekey_log(struct chat_client *c, size_t len, const char *pw, size_t errlen, char *err)
{
	struct copy_ctx x = { 0 };
	char *tmp = join(c->cfg.data_dir, c->cfg.user, ".log.new");
	int rc;

	if (!tmp) {
		snprintf(err, errlen, "out of memory");
		return CHAT_ERR_NOMEM;
	}
	unlink(tmp);
	chat_seclog_close(c->log);
	c->log = NULL;
	rc = chat_seclog_open(tmp, len, pw, c->cfg.kdf_iterations, &x.to, NULL, NULL, errlen, err);
	if (rc == CHAT_OK) {
		rc = chat_seclog_read(c->log_path, c->password_len, c->password, copy_record, &x, NULL,
		                      NULL, errlen, err);
		if (rc != CHAT_OK && x.err[0])
			snprintf(err, errlen, "%s", x.err);
	}
	if (rc == CHAT_OK && (rename(tmp, c->log_path) != 0 || chat_fsync_dir_of(c->log_path) != 0)) {
		snprintf(err, errlen, "cannot replace %s: %s", c->log_path, strerror(errno));
		rc = CHAT_ERR_IO;
	}
	if (rc == CHAT_OK) {
		c->log = x.to;
	} else {
		chat_seclog_close(x.to);
		unlink(tmp);
		char why[1024];
		/* Keep the old history going under the old password. */
		if (open_log(c, sizeof(why), why) != CHAT_OK)
			c->log_failed = 1;
	}
	free(tmp);
	return rc;
}

int client_store_rekey(struct chat_client *c, size_t len, const char *pw, size_t errlen, char *err)
{
	int rc;

	if (c->ks) {
		if ((rc = chat_keystore_rekey(c->ks, len, pw, errlen, err)) != CHAT_OK)
			return rc;
		client_store_mark(c);
		if ((rc = client_store_save(c)) != CHAT_OK) {
			snprintf(err, errlen, "%s could not be saved under the new password", c->ks_path);
			return rc;
		}
	}
	if (c->log && (rc = rekey_log(c, len, pw, errlen, err)) != CHAT_OK)
		return rc;
	return CHAT_OK;
}

void client_store_close(struct chat_client *c)
{
	chat_keystore_close(c->ks);
	c->ks = NULL;
	chat_seclog_close(c->log);
	c->log = NULL;
	if (c->ks_blob) {
		chat_wipe(c->ks_blob, c->ks_blob_len);
		free(c->ks_blob);
		c->ks_blob = NULL;
	}
	free(c->ks_path);
	free(c->log_path);
	c->ks_path = c->log_path = NULL;
}
