/* 1:1 conversations: consent (TALK / OFFERED / ANSWER / ANSWERED), suite
 * choice and binding, the cipher session's handshake, sealing text into
 * chunks and opening what arrives.  Which way a payload travels (ROUTE live,
 * or SEND stored for registered users) is client_mail.c's business. */
#include "client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "be.h"

/* ---- suites */

const struct chat_loaded *client_suite_by_name(const struct chat_client *c, const char *name)
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

static int have_secret(const struct chat_client *c, const struct chat_loaded *s, const char *peer)
{
	return !(s->desc->flags & CHAT_FLAG_NEEDS_SECRET) ||
	       chat_directory_find(c->cfg.directory, peer) != NULL;
}

/* client.min_security: may the insecure suite `name` be used with peer?  0,
 * or 1 with why.  "auto" looks at the suites *we* configured, not at what the
 * relay or the peer's (unauthenticated) list say: if a secure one would work
 * with this peer, an insecure choice can only come from a negotiation that
 * was narrowed on the way (a downgrade), or from a peer who does not allow
 * it -- which nobody can tell apart without an authenticated exchange. */
int client_policy_refuses(const struct chat_client *c, const char *name, const char *peer,
                          size_t cap, char *why)
{
	const struct chat_loaded *s = client_suite_by_name(c, name);

	if (!s || !(s->desc->flags & CHAT_FLAG_INSECURE) || c->cfg.min_security == CHAT_MINSEC_INSECURE)
		return 0;
	if (c->cfg.min_security == CHAT_MINSEC_SECURE) {
		if (cap)
			snprintf(why, cap, "suite %s is insecure and client.min_security is 'secure'", name);
		return 1;
	}
	for (size_t i = 0; i < c->nsuites; i++) {
		const struct chat_loaded *t = c->suites[i];
		if ((t->desc->flags & CHAT_FLAG_INSECURE) || !have_secret(c, t, peer))
			continue;
		if (cap)
			snprintf(why, cap, "suite %s is insecure, but you could use %s with %s: the relay or "
			         "the network may have removed it from the negotiation (a downgrade); refused "
			         "(client.min_security=insecure allows it)", name, t->desc->name, peer);
		return 1;
	}
	return 0;
}

/* A suite we can use with peer: allowed, loaded, its secret available, and
 * not refused by client.min_security. */
int client_usable(const struct chat_client *c, const char *name, const char *peer)
{
	const struct chat_loaded *s = client_suite_by_name(c, name);

	return s && effective(c, name) && have_secret(c, s, peer) &&
	       !client_policy_refuses(c, name, peer, 0, NULL);
}

void client_csv(size_t n, const char (*names)[CHAT_NAME_MAX + 1], size_t cap, char *dst)
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
 * authenticating handshakes, mixed into fingerprints).  Each side puts in
 * its *own configured* list (client.suites, as sent in HELLO) and the
 * peer's list as the relay passed it on (OFFERED, ANSWERED, MEMBERS or a
 * room INIT).  An honest relay passes lists on unchanged, so both ends
 * compute the same text; a relay that narrows or rewrites a list to steer
 * the choice makes the two texts differ, and the handshake of a suite that
 * authenticates fails (an unauthenticated one gets different keys and
 * fingerprints).  Version 1 used the relay-narrowed lists, which a relay
 * could rewrite consistently on both sides. */
static size_t binding(const struct chat_client *c, const struct conv *v, size_t cap, char *dst)
{
	char mine[600], theirs[600];
	const char *ini = v->initiator ? c->name : v->peer, *res = v->initiator ? v->peer : c->name;
	size_t used = 0;
	int n;

	mine[0] = '\0';
	for (size_t i = 0; i < c->nsuites && used < sizeof(mine); i++) {
		n = snprintf(mine + used, sizeof(mine) - used, "%s%s", i ? "," : "", c->suites[i]->desc->name);
		if (n < 0)
			break;
		used += (size_t)n;
	}
	client_csv(v->ntheirs, (const char (*)[CHAT_NAME_MAX + 1])v->theirs, sizeof(theirs), theirs);
	n = snprintf(dst, cap, "chat-binding-v2\ninitiator %s suites %s\nresponder %s suites %s\nsuite %s\n",
	             ini, v->initiator ? mine : theirs, res, v->initiator ? theirs : mine,
	             v->suite->desc->name);
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

int client_uses_send(const struct chat_client *c, const struct conv *v)
{
	return client_registered(c) && v->relay_link && !v->peer_guest;
}

int client_can_save(struct chat_client *c, const struct conv *v)
{
	const struct chat_cipher_ops *ops = v->suite->desc->ops.cipher;
	size_t i;

	if (CHAT_CIPHER_HAS(ops, session_save) && CHAT_CIPHER_HAS(ops, session_load))
		return 1;
	for (i = 0; i < c->nsuites && c->suites[i] != v->suite; i++)
		;
	if (c->ks && !(c->nosave_warned & (1u << i))) {
		c->nosave_warned |= 1u << i;
		client_say(c, CHAT_EV_WARNING, v->peer, "suite %s cannot save its sessions (the plugin has "
		           "no session_save): after a restart its conversations need a new handshake",
		           v->suite->desc->name);
	}
	return 0;
}

/* ---- conversations */

struct conv *client_find_conv(struct chat_client *c, const char *peer)
{
	for (struct conv *v = c->convs; v; v = v->next)
		if (strcmp(v->peer, peer) == 0)
			return v;
	return NULL;
}

struct conv *client_new_conv(struct chat_client *c, const char *peer, int state)
{
	struct conv *v = calloc(1, sizeof(*v));
	int known;
	unsigned flags;

	if (!v) {
		client_fail(c, peer, "no-memory", "out of memory");
		return NULL;
	}
	snprintf(v->peer, sizeof(v->peer), "%s", peer);
	v->state = state;
	v->pending_tail = &v->pending;
	v->rx_next = 1;
	flags = client_known_flags(c, peer, &known);
	v->peer_guest = known && !(flags & CHAT_WHO_REGISTERED);
	v->next = c->convs;
	c->convs = v;
	return v;
}

void client_drop_session(struct conv *v)
{
	if (v->session)
		v->suite->desc->ops.cipher->session_free(v->session);
	v->session = NULL;
	if (v->rx) {
		chat_wipe(v->rx, v->rx_len);
		free(v->rx);
	}
	v->rx = NULL;
	v->rx_len = 0;
	v->hs_steps = 0;
	if (v->bind) {
		chat_wipe(v->bind, v->bind_len);
		free(v->bind);
	}
	v->bind = NULL;
	v->bind_len = 0;
}

/* Forget a conversation; say which typed messages were not delivered.  The
 * caller saves the keystore when it should no longer hold it. */
void client_end_conv(struct chat_client *c, struct conv *v, const char *why)
{
	for (struct conv **pp = &c->convs; *pp; pp = &(*pp)->next) {
		if (*pp == v) {
			*pp = v->next;
			break;
		}
	}
	if (v->npending)
		client_fail(c, v->peer, "undelivered", "%zu message(s) to %s were not delivered: %s",
		            v->npending, v->peer, why);
	while (v->pending) {
		struct pending *p = v->pending;
		v->pending = p->next;
		chat_wipe(p->text, p->len);
		free(p);
	}
	client_drop_session(v);
	client_conv_free_rx(v);
	if (strcmp(c->current, v->peer) == 0)
		c->current[0] = '\0';
	if (v->relay_link)
		client_store_mark(c);
	free(v);
}

int client_queue_text(struct chat_client *c, struct conv *v, const char *room, size_t len,
                      const char *text)
{
	struct pending *p = malloc(sizeof(*p) + len);

	if (!p) {
		client_fail(c, v->peer, "no-memory", "out of memory: message to %s not queued", v->peer);
		return -1;
	}
	p->next = NULL;
	snprintf(p->room, sizeof(p->room), "%s", room ? room : "");
	p->len = len;
	memcpy(p->text, text, len);
	*v->pending_tail = p;
	v->pending_tail = &p->next;
	v->npending++;
	if (!p->room[0])
		client_store_mark(c);
	return 0;
}

/* Plaintext bytes per chunk so that a sealed chunk plus headers fits a frame
 * (ROUTE, SEND with its id, and MAIL around DELIVER on the other side). */
static size_t chunk_size(const struct chat_client *c, const struct conv *v)
{
	const struct chat_cipher_ops *ops = v->suite->desc->ops.cipher;
	size_t limit = c->cfg.max_frame - (1 + 1 + CHAT_NAME_MAX + 1 + CHAT_NAME_MAX + 2 + 4 + 1 + 1 + 64);
	size_t n = limit;

	while (n > 64 && ops->sealed_size(v->session, n) > limit)
		n -= (ops->sealed_size(v->session, n) - limit) + 16;
	return n;
}

int client_seal_text(struct chat_client *c, struct conv *v, int kind, uint64_t seq, size_t len,
                     const char *text,
                     int (*out)(struct chat_client *, struct conv *, const char *room, size_t,
                                const uint8_t *), const char *room)
{
	const struct chat_cipher_ops *ops = v->suite->desc->ops.cipher;
	size_t chunk = chunk_size(c, v) - E_HEADER, off = 0;
	unsigned index = 0;
	uint8_t *plain = malloc(E_HEADER + (len < chunk ? len : chunk));

	if (!plain)
		return CHAT_ERR_NOMEM;
	do {
		size_t n = len - off < chunk ? len - off : chunk;
		size_t cap = ops->sealed_size(v->session, E_HEADER + n) + 2;
		if (client_scratch(c, cap)) {
			free(plain);
			return CHAT_ERR_NOMEM;
		}
		plain[0] = (uint8_t)kind;
		chat_be64_put(plain + 1, seq);
		chat_be16_put(plain + 9, (uint16_t)(index++ | (off + n == len ? E_LAST : 0)));
		memcpy(plain + E_HEADER, text + off, n);
		struct chat_buf dst = { .data = c->scratch + 2, .cap = cap - 2 };
		int rc = ops->seal(v->session, E_HEADER + n, &dst, plain);
		chat_wipe(plain, E_HEADER + n);
		if (rc) {
			free(plain);
			client_fail(c, v->peer, "seal", "cannot encrypt for %s: %s", v->peer, chat_strerror(rc));
			return rc;
		}
		off += n;
		c->scratch[0] = P_DATA;
		c->scratch[1] = off < len ? DATA_MORE : 0;
		rc = out(c, v, room, dst.len + 2, c->scratch);
		if (rc) {
			free(plain);
			return rc;
		}
	} while (off < len);
	free(plain);
	if (v->relay_link)
		client_store_mark(c); /* the session moved on */
	return CHAT_OK;
}

void client_send_payload(struct chat_client *c, struct conv *v, int type, size_t len,
                         const uint8_t *bytes)
{
	uint8_t *buf = malloc(len + 1);

	if (!buf) {
		client_fail(c, v->peer, "no-memory", "out of memory");
		return;
	}
	buf[0] = (uint8_t)type;
	if (len)
		memcpy(buf + 1, bytes, len);
	client_transmit(c, v, len + 1, buf);
	chat_wipe(buf, len + 1);
	free(buf);
}

void client_send_abort(struct chat_client *c, struct conv *v, const char *reason)
{
	uint8_t buf[2 + CHAT_TEXT_MAX];
	size_t n = strlen(reason);

	if (n > CHAT_TEXT_MAX)
		n = CHAT_TEXT_MAX;
	chat_be16_put(buf, (uint16_t)n);
	memcpy(buf + 2, reason, n);
	client_send_payload(c, v, P_ABORT, n + 2, buf);
	if (v->relay_link) {
		client_begin(c, CHAT_MSG_CLOSE);
		chat_put_str8(&c->wb, v->peer);
		client_flush(c);
	}
}

/* Out of v's held text, seal what can go now (in order) and hand it over. */
/* Text for a stored conversation: numbered and kept until the peer confirms
 * it (client_deliver.c seals it when it may).  "sent" is said by sent_kept()
 * once the keystore holds it. */
static int keep_text(struct chat_client *c, struct conv *v, size_t len, const char *text)
{
	if (!client_outmsg_new(c, v->peer, E_TEXT, ++v->tx_seq, len, text)) {
		v->tx_seq--;
		return CHAT_ERR_NOMEM;
	}
	return CHAT_OK;
}

/* Seal and send what may go, make sure the keystore holds the texts just
 * kept, then say "sent" for them (numbers first..v->tx_seq). */
static void sent_kept(struct chat_client *c, struct conv *v, uint64_t first)
{
	client_pump(c);
	if (client_store_save(c) != CHAT_OK)
		return; /* said; the texts stay in memory and still go out */
	for (struct outmsg *m = c->out; m; m = m->next) {
		if (m->kind != E_TEXT || m->seq < first || strcmp(m->peer, v->peer))
			continue;
		client_emit_seq(c, CHAT_EV_SENT, v->peer, v->suite->desc->name, m->seq, m->len,
		                (const char *)m->text, 0);
		client_history(c, CHAT_SECLOG_SENT, v->peer, m->len, (const char *)m->text);
	}
}

static void send_held(struct chat_client *c, struct conv *v)
{
	struct pending *done = NULL, **done_tail = &done;
	int stored = client_uses_send(c, v);
	uint64_t first = v->tx_seq + 1;

	while (v->pending && c->conn) {
		struct pending *p = v->pending;
		int rc = !p->room[0] && stored ? keep_text(c, v, p->len, p->text)
		         : client_seal_text(c, v, E_TEXT, 0, p->len, p->text,
		                            p->room[0] ? client_out_room_payload : client_out_conv, p->room);
		if (rc)
			break;
		v->pending = p->next;
		if (!v->pending)
			v->pending_tail = &v->pending;
		v->npending--;
		p->next = NULL;
		*done_tail = p;
		done_tail = &p->next;
	}
	while (done) {
		struct pending *p = done;
		done = p->next;
		if (p->room[0] || !stored) {
			client_emit(c, CHAT_EV_SENT, p->room[0] ? NULL : v->peer, p->room[0] ? p->room : NULL,
			            v->suite->desc->name, NULL, p->len, p->text, 0);
			if (!p->room[0])
				client_history(c, CHAT_SECLOG_SENT, v->peer, p->len, p->text);
		}
		chat_wipe(p->text, p->len);
		free(p);
	}
	if (stored)
		sent_kept(c, v, first);
}

void client_established(struct chat_client *c, struct conv *v)
{
	int insecure = (v->suite->desc->flags & CHAT_FLAG_INSECURE) != 0;

	v->state = C_ESTABLISHED;
	client_identity_established(c, v);
	if (!c->current[0] && v->relay_link) /* plain lines go here until /to says otherwise */
		snprintf(c->current, sizeof(c->current), "%s", v->peer);
	client_emit(c, CHAT_EV_ESTABLISHED, v->peer, NULL, v->suite->desc->name, NULL, 0, NULL, insecure);
	/* The one warning of this conversation (the plugins log none): generic,
	 * so a third-party suite gets it too; what its fingerprint is good for,
	 * if anything, only the suite knows, and says in its summary. */
	if (insecure)
		client_say(c, CHAT_EV_WARNING, v->peer, "suite %s is INSECURE (%s): for demonstration only",
		           v->suite->desc->name, v->suite->desc->summary);
	if (v->relay_link && !v->peer_guest && client_registered(c))
		client_can_save(c, v);
	if (v->relay_link)
		client_store_mark(c);
	if (client_uses_send(c, v))
		client_deliver_new_session(c, v);
	send_held(c, v);
	/* Nothing held (or nothing stored): the new session must still be kept. */
	if (v->relay_link && client_registered(c))
		client_store_save(c);
}

/* Handshake failure: tell the peer (the plugin's last message, then ABORT), drop it. */
void client_handshake_failed(struct chat_client *c, struct conv *v, int rc,
                             const struct chat_buf *last)
{
	char why[256];

	if (last && last->len)
		client_send_payload(c, v, P_HS, last->len, last->data);
	if (rc == CHAT_ERR_AUTH && client_identity_refused(c, v))
		snprintf(why, sizeof(why), "authentication failed for %s (%s): not the identity key pinned "
		         "for them", v->peer, v->suite->desc->name);
	else if (rc == CHAT_ERR_AUTH && (v->suite->desc->flags & CHAT_FLAG_IDENTITY))
		snprintf(why, sizeof(why), "authentication failed for %s (%s): the relay changed the suite "
		         "lists, or someone is in the middle", v->peer, v->suite->desc->name);
	else if (rc == CHAT_ERR_AUTH)
		snprintf(why, sizeof(why), "authentication failed for %s (%s): a wrong password, "
		         "or the relay changed the suite lists", v->peer, v->suite->desc->name);
	else
		snprintf(why, sizeof(why), "handshake with %s failed (%s): %s", v->peer,
		         v->suite->desc->name, chat_strerror(rc));
	if (c->in_mail)
		client_mail_problem(c, "%s", why);
	client_send_abort(c, v, why);
	client_fail(c, v->peer, rc == CHAT_ERR_AUTH ? "auth" : "handshake", "%s", why);
	client_drop_outbox(c, v->peer, NULL);
	client_end_conv(c, v, why);
	client_store_save(c);
}

/* Run one handshake step with src (may be empty); send what it produces. */
void client_step(struct chat_client *c, struct conv *v, size_t len, const uint8_t *src)
{
	const struct chat_cipher_ops *ops = v->suite->desc->ops.cipher;
	size_t cap = c->cfg.max_frame;

	if (client_scratch(c, cap)) {
		client_fail(c, v->peer, "no-memory", "out of memory");
		return;
	}
	struct chat_buf dst = { .data = c->scratch, .cap = cap };
	int rc = c->in_mail && CHAT_CIPHER_HAS(ops, handshake_at) && len
	         ? ops->handshake_at(v->session, (uint64_t)c->mail_time, len, &dst, src)
	         : ops->handshake(v->session, len, &dst, src);
	if (rc < 0) {
		client_handshake_failed(c, v, rc, &dst);
		return;
	}
	v->hs_steps++;
	if (dst.len)
		client_send_payload(c, v, P_HS, dst.len, dst.data);
	if (rc == CHAT_HS_ESTABLISHED)
		client_established(c, v);
}

int client_start_session(struct chat_client *c, struct conv *v)
{
	const struct chat_contact *contact = chat_directory_find(c->cfg.directory, v->peer);
	char bind[2048];
	struct chat_cipher_params p = {
		.size = sizeof(p),
		.role = v->initiator ? CHAT_ROLE_INITIATOR : CHAT_ROLE_RESPONDER,
		.local_id = c->name[0] ? c->name : c->cfg.user,
		.peer_id = v->peer,
		.suite = v->suite->desc->name,
	};

	if (contact) {
		p.secret = (const uint8_t *)contact->password;
		p.secret_len = strlen(contact->password);
	}
	p.binding = (const uint8_t *)bind;
	p.binding_len = binding(c, v, sizeof(bind), bind);
	client_drop_session(v);
	int rc = client_identity_params(c, v, &p);
	if (rc == CHAT_OK)
		rc = v->suite->desc->ops.cipher->session_new(&v->suite->host, &p, &v->session);
	if (rc) {
		if (rc == CHAT_ERR_NOSECRET)
			client_fail(c, v->peer, "no-secret", "suite %s needs a password for %s: add one to %s",
			            v->suite->desc->name, v->peer,
			            c->cfg.directory ? c->cfg.directory->path : "a directory file (client.directory)");
		else
			client_fail(c, v->peer, "session", "cannot start a %s session with %s: %s",
			            v->suite->desc->name, v->peer, chat_strerror(rc));
		return rc;
	}
	v->bind = malloc(p.binding_len + 1);
	if (v->bind) {
		memcpy(v->bind, bind, p.binding_len);
		v->bind[p.binding_len] = '\0';
		v->bind_len = p.binding_len;
	}
	v->state = C_HANDSHAKE;
	if (v->relay_link)
		client_store_mark(c);
	return CHAT_OK;
}

/* ---- incoming end-to-end payloads */

static void rx_reset(struct conv *v)
{
	if (v->rx) {
		chat_wipe(v->rx, v->rx_len);
		free(v->rx);
	}
	v->rx = NULL;
	v->rx_len = 0;
}

static void show(struct chat_client *c, struct conv *v, const char *room, size_t len,
                 const char *text)
{
	client_emit(c, room ? CHAT_EV_ROOM_MSG : CHAT_EV_MSG, v->peer, room, v->suite->desc->name,
	            NULL, len, text, 0);
	if (!room && v->relay_link)
		client_history(c, CHAT_SECLOG_RECEIVED, v->peer, len, text);
}

/* A whole message: stored conversations go through the order and receipts
 * of client_deliver.c; rooms and live conversations are shown at once. */
static void complete(struct chat_client *c, struct conv *v, const char *room, int kind,
                     uint64_t seq, size_t len, const char *text)
{
	if (!room && client_uses_send(c, v)) {
		client_deliver_received(c, v, kind, seq, len, text);
		return;
	}
	if (kind == E_TEXT)
		show(c, v, room, len, text);
}

void client_on_data(struct chat_client *c, struct conv *v, const char *room, size_t len,
                    const uint8_t *p)
{
	const struct chat_cipher_ops *ops = v->suite->desc->ops.cipher;
	int rc;

	if (len < 1) {
		client_fail(c, v->peer, "malformed", "empty data message from %s", v->peer);
		client_mail_problem(c, "empty data message");
		return;
	}
	if (client_scratch(c, len + 64)) {
		client_fail(c, v->peer, "no-memory", "out of memory");
		client_mail_problem(c, "out of memory");
		return;
	}
	struct chat_buf dst = { .data = c->scratch, .cap = c->scratch_cap };
	/* Stored messages are judged by when the relay took them, not by now. */
	if (c->in_mail && CHAT_CIPHER_HAS(ops, open_at))
		rc = ops->open_at(v->session, (uint64_t)c->mail_time, len - 1, &dst, p + 1);
	else
		rc = ops->open(v->session, len - 1, &dst, p + 1);
	if (rc == CHAT_ERR_REPLAY && c->in_mail && !room && client_uses_send(c, v) &&
	    c->mail_id > v->rx_mail) {
		/* Maybe ahead of one still to come: held, tried again after it.
		 * (Stored before one that opened: its turn passed, rejected now.) */
		c->mail_hold = 1;
		snprintf(c->hold_peer, sizeof(c->hold_peer), "%s", v->peer);
		snprintf(c->hold_why, sizeof(c->hold_why), "rejected by %s: %s", v->suite->desc->name,
		         chat_strerror(rc));
		return;
	}
	if (rc) {
		client_fail(c, v->peer, rc == CHAT_ERR_INTEGRITY ? "integrity" : rc == CHAT_ERR_REPLAY ? "replay" :
		            rc == CHAT_ERR_STALE ? "stale" : "open",
		            "message from %s rejected: %s", v->peer, chat_strerror(rc));
		client_mail_problem(c, "rejected by %s: %s", v->suite->desc->name, chat_strerror(rc));
		rx_reset(v);
		return;
	}
	if (v->relay_link)
		client_store_mark(c); /* the session moved on */
	if (c->in_mail && !room && client_uses_send(c, v))
		client_held_mail_opened(c, v);
	if (dst.len < E_HEADER || (dst.data[0] != E_TEXT && dst.data[0] != E_RECEIPT)) {
		client_fail(c, v->peer, "malformed", "message from %s without a valid header; dropped", v->peer);
		client_mail_problem(c, "no valid end-to-end header");
		chat_wipe(dst.data, dst.len);
		rx_reset(v);
		return;
	}
	int kind = dst.data[0];
	uint64_t seq = chat_be64_get(dst.data + 1);
	unsigned index = chat_be16_get(dst.data + 9) & ~E_LAST;
	int more = !(chat_be16_get(dst.data + 9) & E_LAST); /* sealed: the path cannot cut a message short */
	const uint8_t *body = dst.data + E_HEADER;
	size_t body_len = dst.len - E_HEADER;
	/* Chunks of one message come in order; a first chunk starts afresh (a
	 * copy sealed again after a loss repeats the whole message). */
	if (index == 0) {
		if (v->rx)
			client_say(c, CHAT_EV_INFO, v->peer, "an unfinished message #%llu from %s was dropped "
			           "(a new one began)", (unsigned long long)v->rx_seq, v->peer);
		rx_reset(v);
		v->rx_kind = kind;
		v->rx_seq = seq;
		v->rx_chunk = 0;
		snprintf(v->rx_room, sizeof(v->rx_room), "%s", room ? room : "");
	} else if (!v->rx || v->rx_seq != seq || v->rx_kind != kind || index != v->rx_chunk + 1 ||
	           strcmp(v->rx_room, room ? room : "") != 0) {
		client_fail(c, v->peer, "malformed", "part %u of message #%llu from %s arrived without "
		            "the parts before it; dropped", index, (unsigned long long)seq, v->peer);
		client_mail_problem(c, "a part without the parts before it");
		chat_wipe(dst.data, dst.len);
		rx_reset(v);
		return;
	} else {
		v->rx_chunk = index;
	}
	if (v->rx_len + body_len > c->cfg.max_message) {
		client_fail(c, v->peer, "too-big", "message from %s exceeds %zu bytes (client.max_message); dropped",
		            v->peer, c->cfg.max_message);
		rx_reset(v);
		chat_wipe(dst.data, dst.len);
		return;
	}
	uint8_t *grown = malloc(v->rx_len + body_len + 1);
	if (!grown) {
		client_fail(c, v->peer, "no-memory", "out of memory");
		client_mail_problem(c, "out of memory");
		rx_reset(v);
		chat_wipe(dst.data, dst.len);
		return;
	}
	if (v->rx_len)
		memcpy(grown, v->rx, v->rx_len);
	memcpy(grown + v->rx_len, body, body_len);
	size_t total = v->rx_len + body_len;
	if (v->rx) {
		chat_wipe(v->rx, v->rx_len);
		free(v->rx);
	}
	v->rx = grown;
	v->rx_len = total;
	chat_wipe(dst.data, dst.len);
	if (!more) {
		complete(c, v, room, v->rx_kind, v->rx_seq, v->rx_len, (const char *)v->rx);
		rx_reset(v);
	}
}

void client_on_payload(struct chat_client *c, const char *from, const char *room, size_t len,
                       const uint8_t *p)
{
	struct conv *v = client_find_conv(c, from);

	if (len < 1) {
		client_fail(c, from, "malformed", "empty message from %s", from);
		client_mail_problem(c, "empty message");
		return;
	}
	switch (p[0]) {
	case P_INIT:
		client_on_init(c, from, len - 1, p + 1);
		return;
	case P_HS:
		if (!v || v->state != C_HANDSHAKE) {
			client_fail(c, from, "unexpected", "unexpected handshake message from %s; ignored", from);
			client_mail_problem(c, "no handshake with %s under way", from);
			return;
		}
		client_step(c, v, len - 1, p + 1);
		return;
	case P_DATA:
		if (!v || v->state != C_ESTABLISHED) {
			client_fail(c, from, "unexpected", "message from %s outside an established session; ignored", from);
			client_mail_problem(c, "no established session with %s", from);
			return;
		}
		client_on_data(c, v, room, len - 1, p + 1);
		return;
	case P_ABORT: {
		char reason[CHAT_TEXT_MAX + 1] = "";
		if (len >= 3) {
			size_t n = chat_be16_get(p + 1);
			if (n > len - 3)
				n = len - 3;
			if (n > CHAT_TEXT_MAX)
				n = CHAT_TEXT_MAX;
			memcpy(reason, p + 3, n);
			reason[n] = '\0';
		}
		if (v) {
			client_emit(c, CHAT_EV_CLOSED, from, NULL, NULL, NULL, strlen(reason), reason, 0);
			client_drop_outbox(c, v->peer, NULL);
			client_end_conv(c, v, "the conversation was aborted");
			client_store_save(c);
		}
		return;
	}
	default:
		client_fail(c, from, "malformed", "unknown message type %u from %s; ignored", p[0], from);
		client_mail_problem(c, "unknown message type %u", p[0]);
	}
}

/* ---- consent */

static void answer(struct chat_client *c, const char *peer, int accept, const char *suite,
                   const char *reason)
{
	client_begin(c, CHAT_MSG_ANSWER);
	chat_put_str8(&c->wb, peer);
	chat_put_u8(&c->wb, (unsigned)accept);
	chat_put_str8(&c->wb, accept ? suite : "");
	chat_put_str16(&c->wb, accept ? "" : reason);
	client_flush(c);
}

void client_on_offered(struct chat_client *c, const struct chat_msg *m)
{
	struct conv *v = client_find_conv(c, m->name);
	const char *suite = NULL;

	/* The offerer's preference decides, among suites we allow and can use. */
	for (size_t i = 0; i < m->nsuites && !suite; i++)
		if (client_usable(c, m->suites[i], m->name))
			suite = m->suites[i];
	if (v && v->state == C_ESTABLISHED && !v->relay_link) {
		client_end_conv(c, v, "replaced by a 1:1 conversation");
		v = NULL;
	}
	int again = v && v->await_reoffer;
	if (again) {
		/* Offered again after the relay was lost: what we hold stays held. */
		v->await_reoffer = 0;
		v->state = C_OFFER_IN;
	} else if (v && v->state == C_OFFER_IN && v->relay_link) {
		/* The same offer again (a stored one seen after a restart): keep it. */
	} else if (v && client_registered(c) && v->relay_link && v->state != C_OFFER_OUT) {
		/* They started over (lost their keys, or restarted mid-handshake):
		 * the old session is of no use any more; what we hold stays held. */
		client_say(c, CHAT_EV_INFO, m->name, "%s offers a new conversation: the previous session "
		           "with them is dropped", m->name);
		client_drop_session(v); /* unconfirmed messages go again in the new session */
		v->state = C_OFFER_IN;
	} else if (v) {
		client_fail(c, m->name, "already", "%s offered a conversation while one is under way", m->name);
		return;
	}
	char why[400] = "";
	for (size_t i = 0; i < m->nsuites && !suite && !why[0]; i++)
		client_policy_refuses(c, m->suites[i], m->name, sizeof(why), why);
	if (!suite && why[0]) {
		answer(c, m->name, 0, "", "refused: an insecure suite where a secure one is possible (a downgrade?)");
		client_fail(c, m->name, "downgrade", "%s offered a conversation: %s", m->name, why);
		if (v) {
			client_end_conv(c, v, "downgrade refused");
			client_store_save(c);
		}
		return;
	}
	if (!suite) {
		char theirs[600], mine[600];
		client_csv(m->nsuites, m->suites, sizeof(theirs), theirs);
		client_csv(c->neff, (const char (*)[CHAT_NAME_MAX + 1])c->eff, sizeof(mine), mine);
		answer(c, m->name, 0, "", "no usable suite in common");
		client_fail(c, m->name, "no-common-suite",
		            "%s offered a conversation with %s; you can use only %s (suites needing a "
		            "password need %s in the directory): refused", m->name, theirs, mine, m->name);
		if (v) {
			client_end_conv(c, v, "no usable suite in common");
			client_store_save(c);
		}
		return;
	}
	if (!v && !(v = client_new_conv(c, m->name, C_OFFER_IN)))
		return;
	v->relay_link = 1;
	v->ntheirs = m->nsuites;
	memcpy(v->theirs, m->suites, sizeof(v->theirs));
	snprintf(v->chosen, sizeof(v->chosen), "%s", suite);
	const struct chat_loaded *s = client_suite_by_name(c, suite);
	client_emit(c, CHAT_EV_OFFER, m->name, NULL, suite, NULL, 0, NULL,
	            (s->desc->flags & CHAT_FLAG_INSECURE) != 0);
	client_store_mark(c);
	if (!c->in_mail)
		client_store_save(c);
	if (again) {
		client_say(c, CHAT_EV_INFO, m->name, "%s offers again the conversation the relay link "
		           "ended: accepted", m->name);
		client_answer(c, m->name, 1, "");
	}
}

void client_on_answered(struct chat_client *c, const struct chat_msg *m)
{
	struct conv *v = client_find_conv(c, m->name);

	if (!v || v->state != C_OFFER_OUT) {
		client_fail(c, m->name, "unexpected", "unexpected answer from %s; ignored", m->name);
		return;
	}
	/* An answer before the PONG (the peer was quicker): the offer was taken. */
	if (v->talk_ping)
		client_talk_acked(c, v->talk_ping);
	if (!m->flag) {
		client_emit(c, CHAT_EV_REJECTED, m->name, NULL, NULL, NULL, strlen(m->text), m->text, 0);
		client_end_conv(c, v, m->text[0] ? m->text : "rejected");
		client_store_save(c);
		return;
	}
	char why[400];
	if (client_policy_refuses(c, m->suite, m->name, sizeof(why), why)) {
		client_fail(c, m->name, "downgrade", "%s chose %s: %s", m->name, m->suite, why);
		client_send_abort(c, v, "refused: an insecure suite where a secure one is possible (a downgrade?)");
		client_end_conv(c, v, "downgrade refused");
		client_store_save(c);
		return;
	}
	if (!client_usable(c, m->suite, m->name)) {
		client_fail(c, m->name, "no-common-suite", "%s chose suite %s, which you do not allow",
		            m->name, m->suite);
		client_send_abort(c, v, "suite not allowed");
		client_end_conv(c, v, "suite not allowed");
		client_store_save(c);
		return;
	}
	v->initiator = 1;
	v->suite = client_suite_by_name(c, m->suite);
	v->ntheirs = m->nsuites;
	memcpy(v->theirs, m->suites, sizeof(v->theirs));
	if (client_start_session(c, v)) {
		client_send_abort(c, v, "cannot start a session");
		client_end_conv(c, v, "cannot start a session");
		client_store_save(c);
		return;
	}
	client_step(c, v, 0, NULL);
}

void client_on_closed(struct chat_client *c, const struct chat_msg *m)
{
	struct conv *v = client_find_conv(c, m->name);

	if (v && v->relay_link) {
		client_emit(c, CHAT_EV_CLOSED, m->name, NULL, NULL, NULL, 0, NULL, 0);
		client_drop_outbox(c, v->peer, NULL);
		client_end_conv(c, v, "the conversation was closed");
		if (!c->in_mail)
			client_store_save(c);
	} else if (v && !client_shares_room(c, m->name)) {
		client_end_conv(c, v, "they disconnected");
	}
}

/* ---- what the user asks for */

void client_talk(struct chat_client *c, const char *peer)
{
	struct conv *v = client_find_conv(c, peer);

	if (v && v->relay_link) {
		client_fail(c, peer, "already", "a conversation with %s is already %s", peer,
		            v->state == C_ESTABLISHED ? "open" : "being set up");
		return;
	}
	if (v) /* a room-only session: a 1:1 conversation replaces it */
		client_end_conv(c, v, "replaced by a 1:1 conversation");
	if (!(v = client_new_conv(c, peer, C_OFFER_OUT)))
		return;
	v->relay_link = 1;
	client_store_mark(c);
	client_store_save(c);
	client_send_talk(c, v);
	snprintf(c->current, sizeof(c->current), "%s", peer);
}

/* TALK: offer peer a conversation (a new one, or again after a restart or
 * a lost relay).  The relay says nothing when it takes an offer from or to
 * a guest, only when it refuses one (ERROR): the PING behind the TALK is
 * answered after that ERROR would be, so its PONG is the acknowledgement. */
void client_send_talk(struct chat_client *c, struct conv *v)
{
	v->talk_ping = ++c->ping_token;
	client_begin(c, CHAT_MSG_TALK);
	chat_put_str8(&c->wb, v->peer);
	if (client_flush(c) != CHAT_OK)
		return; /* v may be gone with the connection */
	client_begin(c, CHAT_MSG_PING);
	chat_put_u64(&c->wb, c->ping_token);
	client_flush(c);
}

void client_talk_acked(struct chat_client *c, uint64_t token)
{
	for (struct conv *v = c->convs; v; v = v->next)
		if (v->talk_ping && v->talk_ping == token) {
			v->talk_ping = 0;
			if (v->state == C_OFFER_OUT)
				client_emit(c, CHAT_EV_OFFERED, v->peer, NULL, NULL, NULL, 0, NULL, 0);
			return;
		}
}

void client_answer(struct chat_client *c, const char *peer, int accept, const char *reason)
{
	struct conv *v = client_find_conv(c, peer);

	if (!v || v->state != C_OFFER_IN) {
		client_fail(c, peer, "no-offer", "%s has not offered you a conversation", peer);
		return;
	}
	if (accept && !client_usable(c, v->chosen, peer)) {
		accept = 0;
		reason = "no usable suite in common";
		client_fail(c, peer, "no-common-suite", "suite %s can no longer be used with %s: refused",
		            v->chosen, peer);
	}
	answer(c, peer, accept, v->chosen, reason && *reason ? reason : "rejected");
	if (!accept) {
		client_end_conv(c, v, "you rejected the offer");
		client_store_save(c);
		return;
	}
	v->initiator = 0;
	v->suite = client_suite_by_name(c, v->chosen);
	snprintf(c->current, sizeof(c->current), "%s", peer);
	if (client_start_session(c, v)) {
		client_send_abort(c, v, "cannot start a session");
		client_end_conv(c, v, "cannot start a session");
	}
	client_store_save(c);
}

void client_close(struct chat_client *c, const char *peer)
{
	struct conv *v = client_find_conv(c, peer);
	size_t dropped = 0;

	if (!v) {
		/* None here, but the relay may still hold one (a registered pair's
		 * conversation outlives a lost keystore): let it end there too. */
		if (c->state == CS_READY && c->conn) {
			client_begin(c, CHAT_MSG_CLOSE);
			chat_put_str8(&c->wb, peer);
			client_flush(c);
		}
		client_fail(c, peer, "no-conversation", "no conversation with %s here (the relay is told to "
		            "end any it keeps)", peer);
		return;
	}
	if (v->relay_link) {
		client_begin(c, CHAT_MSG_CLOSE);
		chat_put_str8(&c->wb, peer);
		client_flush(c);
	}
	client_drop_outbox(c, peer, &dropped);
	client_emit(c, CHAT_EV_CLOSED, peer, NULL, NULL, NULL, 0, NULL, 0);
	client_end_conv(c, v, "you closed the conversation");
	client_store_save(c);
}

void client_send_text(struct chat_client *c, const char *peer, size_t len, const char *text)
{
	struct conv *v = client_find_conv(c, peer);

	if (len > c->cfg.max_message) {
		client_fail(c, peer, "too-big", "message of %zu bytes exceeds client.max_message (%zu); not sent",
		            len, c->cfg.max_message);
		return;
	}
	if (!v) {
		/* No conversation yet: offer one and hold the text until it is up. */
		client_talk(c, peer);
		if (!(v = client_find_conv(c, peer)))
			return;
	}
	if (v->state != C_ESTABLISHED) {
		if (!client_queue_text(c, v, NULL, len, text)) {
			client_store_save(c); /* typed text survives a crash */
			client_emit(c, CHAT_EV_QUEUED, peer, NULL, NULL, NULL, 0, NULL, 0);
		}
		return;
	}
	if (client_uses_send(c, v)) {
		if (keep_text(c, v, len, text) == CHAT_OK)
			sent_kept(c, v, v->tx_seq);
		return;
	}
	if (client_seal_text(c, v, E_TEXT, 0, len, text, client_out_conv, NULL) != CHAT_OK)
		return;
	client_emit(c, CHAT_EV_SENT, peer, NULL, v->suite->desc->name, NULL, len, text, 0);
	client_history(c, CHAT_SECLOG_SENT, peer, len, text);
}
