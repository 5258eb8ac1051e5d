/* The relay's durable side (docs/PROTOCOL.md section 4): conversations
 * between registered users, stored messages (mail) and receipts.
 *
 * Every write of one event-loop round goes into one database transaction;
 * the round ends with a deferred call that commits it and only then sends
 * the replies that depend on it (STORED, DONE) and pushes new mail.  So an
 * acknowledged message is on disk, and a crash before the commit loses only
 * requests nobody was told were accepted (their senders resend).  A database
 * file removed or replaced under the relay is noticed before each commit
 * (chat_store_check): from then on every write is refused. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host.h"
#include "log.h"
#include "relay_int.h"

#define MAIL_WINDOW 32 /* mail pushed to one client and not yet ACKed */
#define GONE_LOG_MS 60000 /* while the database file is gone, say so at most this often */

static const char gone_text[] =
	"the relay's database file is gone; nothing was accepted and nothing will be until the relay is restarted";

struct pending {
	struct pending *next;
	struct client *to;
	int ref;
	uint64_t id;                /* the SEND's client id (for an error instead), else 0 */
	size_t len;
	uint8_t data[];
};

static void fill_window(struct chat_relay *r, struct client *c);

/* The deferred end-of-round call holds this, not the relay, so a relay freed
 * before the loop runs it (program exit) is never touched. */
struct round_hook {
	struct chat_relay *r;
};

/* The database file was removed or replaced (chat_store_check): every later
 * write is refused.  Loud the first time, then at most once a minute. */
static void store_gone(struct chat_relay *r)
{
	int64_t now = chat_unix_ms();
	const char *why = chat_store_gone(r->cfg.store);

	if (r->gone_logged_ms && now - r->gone_logged_ms < GONE_LOG_MS)
		return;
	if (!r->gone_logged_ms)
		chat_err("%s; from now on every write is refused and nothing is acknowledged until the "
		         "relay is restarted (a missing database is then refused unless --init-store)",
		         why ? why : "the database file is gone");
	else
		chat_err("%s; still refusing every write (%llu request(s) refused so far): restart the relay",
		         why ? why : "the database file is gone", (unsigned long long)r->gone_refused);
	r->gone_logged_ms = now;
}

int relay_store_refuses(struct chat_relay *r, struct client *c, int ref)
{
	if (!chat_store_gone(r->cfg.store))
		return 0;
	r->gone_refused++;
	store_gone(r);
	if (c)
		relay_error(r, c, CHAT_PERR_STORAGE, ref, NULL, "%s", gone_text);
	return 1;
}

static void round_end(void *arg)
{
	struct round_hook *h = arg;
	struct chat_relay *r = h->r;

	free(h);
	if (!r)
		return;
	r->hook = NULL;
	struct chat_store *st = r->cfg.store;
	int ok = !r->round_failed;

	r->round_hook = 0;
	if (chat_store_in_transaction(st)) {
		if (r->round_failed) {
			chat_store_rollback(st);
		} else if (chat_store_commit(st) != CHAT_OK) {
			if (chat_store_gone(st))
				store_gone(r);
			else
				chat_err("database commit failed: %s; this round's requests were not accepted",
				         chat_store_error(st));
			ok = 0;
		}
	}
	const char *why = ok ? NULL : chat_store_gone(st) ? gone_text
	                  : "the relay could not store this (database error); nothing was accepted: try again";
	r->round_failed = 0;
	struct pending *p = r->pending;
	r->pending = NULL;
	r->pending_tail = &r->pending;
	while (p) {
		struct pending *next = p->next;
		if (!p->to->dead) {
			if (ok) {
				relay_send_frame(r, p->to, p->len, p->data);
			} else if (p->ref >= 0) { /* each refused request, by its id */
				r->req_id = p->id;
				relay_error(r, p->to, CHAT_PERR_STORAGE, p->ref, NULL, "%s", why);
				r->gone_refused += chat_store_gone(st) != NULL;
			}
		}
		free(p);
		p = next;
	}
	r->req_id = 0;
	/* A client in fill may have closed during the round: its memory lives
	 * until the deferred free after this call, its account state does not. */
	for (size_t i = 0; i < r->nfill; i++) {
		struct client *c = r->fill[i];
		if (c->dead || !c->acct)
			continue;
		c->acct->want_fill = 0;
		if (ok && c->state == ST_LOGGED_IN && !c->conn)
			relay_cluster_wake(r, c); /* held by another relay: it pushes */
		else if (ok && c->state == ST_LOGGED_IN)
			fill_window(r, c);
	}
	r->nfill = 0;
}

static int schedule(struct chat_relay *r)
{
	if (r->round_hook)
		return CHAT_OK;
	struct round_hook *h = malloc(sizeof(*h));
	if (!h)
		return CHAT_ERR_NOMEM;
	h->r = r;
	if (chat_loop_defer(r->loop, round_end, h) != CHAT_OK) {
		free(h);
		return CHAT_ERR_NOMEM;
	}
	r->hook = h;
	r->round_hook = 1;
	return CHAT_OK;
}

int relay_write_begin(struct chat_relay *r, struct client *requester, int ref)
{
	struct chat_store *st = r->cfg.store;

	if (!st) {
		if (requester)
			relay_error(r, requester, CHAT_PERR_FORBIDDEN, ref, NULL,
			            "this relay keeps no accounts or messages (relay.database is not set)");
		return CHAT_ERR_UNSUPPORTED;
	}
	if (relay_store_refuses(r, requester, ref))
		return CHAT_ERR_IO;
	if (schedule(r) != CHAT_OK || (!chat_store_in_transaction(st) && chat_store_begin(st) != CHAT_OK)) {
		chat_err("cannot start a database transaction: %s", chat_store_error(st));
		if (requester)
			relay_error(r, requester, CHAT_PERR_STORAGE, ref, NULL,
			            "the relay cannot write its database now; nothing was accepted: try again");
		return CHAT_ERR_IO;
	}
	return CHAT_OK;
}

void relay_write_failed(struct chat_relay *r, struct client *c, int ref)
{
	chat_err("database write failed: %s; rolling back this round", chat_store_error(r->cfg.store));
	r->round_failed = 1;
	if (c)
		relay_error(r, c, CHAT_PERR_STORAGE, ref, NULL,
		            "the relay could not store this (database error); nothing was accepted: try again");
}

void relay_after_commit(struct chat_relay *r, struct client *c, int ref)
{
	struct pending *p;

	if (r->wb.err) {
		chat_err("cannot build a reply for %s: %s", relay_who(c), chat_strerror(r->wb.err));
		return;
	}
	if (!r->round_hook) { /* nothing to wait for */
		relay_flush_to(r, c);
		return;
	}
	p = malloc(sizeof(*p) + r->wb.len);
	if (!p) {
		chat_err("out of memory holding a reply for %s", relay_who(c));
		return;
	}
	p->next = NULL;
	p->to = c;
	p->ref = ref;
	p->id = r->req_id;
	p->len = r->wb.len;
	memcpy(p->data, r->wb.data, r->wb.len);
	*r->pending_tail = p;
	r->pending_tail = &p->next;
}

void relay_mail_wanted(struct chat_relay *r, struct client *c)
{
	if (!c->acct || c->acct->want_fill)
		return;
	if (r->nfill == r->capfill) {
		size_t cap = r->capfill ? r->capfill * 2 : 16;
		struct client **f = realloc(r->fill, cap * sizeof(*f));
		if (!f) {
			chat_err("out of memory scheduling mail for %s", c->name);
			return;
		}
		r->fill = f;
		r->capfill = cap;
	}
	if (schedule(r) != CHAT_OK)
		return;
	r->fill[r->nfill++] = c;
	c->acct->want_fill = 1;
}

int relay_mail_to(struct chat_relay *r, const char *to, const char *from, uint64_t client_id,
                  int64_t *mail_id)
{
	int64_t now = chat_unix_ms(), id = 0;
	int rc;

	if (r->wb.err)
		return r->wb.err;
	rc = chat_store_mail_add(r->cfg.store, to, from, client_id, now,
	                         r->cfg.queue_expiry_ms > 0 ? now + r->cfg.queue_expiry_ms : 0,
	                         r->wb.len, r->wb.data, &id);
	if (rc != CHAT_OK)
		return rc;
	if (mail_id)
		*mail_id = id;
	struct client *t = relay_find_user(r, to);
	if (t && !t->dead && relay_is_registered(t))
		relay_mail_wanted(r, t);
	return CHAT_OK;
}

/* ---- pushing mail (after the commit) */

struct push {
	struct chat_relay *r;
	struct client *c;
};

static int push_one(void *arg, const struct chat_mail *m)
{
	struct push *ps = arg;
	struct chat_relay *r = ps->r;
	struct client *c = ps->c;

	relay_begin(r, CHAT_MSG_MAIL);
	chat_put_u64(&r->wb, (uint64_t)m->id);
	chat_put_u64(&r->wb, (uint64_t)m->stored_ms);
	chat_put_bytes(&r->wb, m->len, m->data);
	c->acct->pushed_id = m->id;
	if (r->wb.err) { /* cannot happen for mail the relay stored itself; skip it, loudly */
		chat_err("stored mail %lld for %s does not fit a frame; skipping it", (long long)m->id,
		         c->name);
		return 0;
	}
	c->acct->inflight++;
	c->acct->inflight_bytes += m->len;
	relay_flush_to(r, c);
	if (c->dead)
		return 1;
	return c->acct->inflight >= MAIL_WINDOW ||
	       c->acct->inflight_bytes >= r->cfg.limits.out_limit / 4;
}

static void fill_window(struct chat_relay *r, struct client *c)
{
	struct push ps = { r, c };

	if (c->acct->inflight >= MAIL_WINDOW || c->acct->inflight_bytes >= r->cfg.limits.out_limit / 4)
		return;
	if (chat_store_mail_for(r->cfg.store, c->name, c->acct->pushed_id,
	                        MAIL_WINDOW - c->acct->inflight, push_one, &ps) != CHAT_OK)
		chat_err("cannot read mail for %s: %s", c->name, chat_store_error(r->cfg.store));
}

/* ---- conversations between registered users */

static int csv_has(const char *csv, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = csv; *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && memcmp(p, name, n) == 0)
			return 1;
		if (!e)
			break;
		p = e + 1;
	}
	return 0;
}

static void done(struct chat_relay *r, struct client *c, int ref, unsigned op, const char *subject,
                 const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void done(struct chat_relay *r, struct client *c, int ref, unsigned op, const char *subject,
                 const char *fmt, ...)
{
	char text[CHAT_TEXT_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	relay_begin(r, CHAT_MSG_DONE);
	chat_put_u8(&r->wb, (unsigned)ref);
	chat_put_u8(&r->wb, op);
	chat_put_str8(&r->wb, subject ? subject : "");
	chat_put_str16(&r->wb, text);
	relay_after_commit(r, c, ref);
}

void relay_done(struct chat_relay *r, struct client *c, int ref, unsigned op, const char *subject,
                const char *text)
{
	done(r, c, ref, op, subject, "%s", text);
}

static int store_failed(struct chat_relay *r, struct client *c, int ref, int rc)
{
	if (rc == CHAT_OK)
		return 0;
	relay_write_failed(r, c, ref);
	return 1;
}

void relay_talk_registered(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct chat_store *st = r->cfg.store;
	char suite[33], offered[16 * 34], mine[16 * 34];
	struct client *t = relay_find_user(r, m->name);
	int rc;

	if (r->cfg.friends_only && relay_friend_state(r, c->name, m->name) != CHAT_FRIEND_YES) {
		relay_error(r, c, CHAT_PERR_FORBIDDEN, m->type, m->name,
		            "this relay allows conversations only between friends: /friend add %s", m->name);
		return;
	}
	if (chat_store_conv_get(st, c->name, m->name, suite) == CHAT_OK) {
		relay_error(r, c, CHAT_PERR_ALREADY, m->type, m->name,
		            "you are already talking with %s (%s); close it first to start over", m->name, suite);
		return;
	}
	if (chat_store_offer_get(st, c->name, m->name, offered) == CHAT_OK) {
		relay_error(r, c, CHAT_PERR_ALREADY, m->type, m->name,
		            "you already offered %s a conversation; waiting for an answer", m->name);
		return;
	}
	if (chat_store_offer_get(st, m->name, c->name, offered) == CHAT_OK) {
		relay_error(r, c, CHAT_PERR_ALREADY, m->type, m->name,
		            "%s already offered you a conversation: accept it", m->name);
		return;
	}
	if (t && !t->dead) {
		if (!relay_common_suite(r, c, t)) {
			char theirs[256], yours[256];
			relay_suites_join(r, t, ", ", sizeof(theirs), theirs);
			relay_suites_join(r, c, ", ", sizeof(yours), yours);
			relay_error(r, c, CHAT_PERR_NO_COMMON_SUITE, m->type, t->name,
			            "%s offers only %s; you allow only %s", t->name, theirs, yours);
			return;
		}
	}
	if (relay_write_begin(r, c, m->type) != CHAT_OK)
		return;
	relay_suites_join(r, c, ",", sizeof(mine), mine);
	rc = chat_store_offer_add(st, c->name, m->name, mine, chat_unix_ms());
	if (store_failed(r, c, m->type, rc))
		return;
	relay_begin(r, CHAT_MSG_OFFERED);
	chat_put_str8(&r->wb, c->name);
	relay_put_suites(r, c);
	if (store_failed(r, c, m->type, relay_mail_to(r, m->name, c->name, 0, NULL)))
		return;
	if (!t || t->dead)
		done(r, c, m->type, 0, m->name, "%s is offline: the offer waits for them", m->name);
}

void relay_answer_registered(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct chat_store *st = r->cfg.store;
	char offered[16 * 34];

	if (chat_store_offer_get(st, m->name, c->name, offered) != CHAT_OK) {
		relay_error(r, c, CHAT_PERR_NO_CONVERSATION, m->type, m->name,
		            "%s has not offered you a conversation", m->name);
		return;
	}
	if (m->flag) {
		int idx = relay_intern_suite(r, m->suite);
		if (idx < 0 || !relay_has_suite(c, idx) || !csv_has(offered, m->suite)) {
			relay_error(r, c, CHAT_PERR_NO_COMMON_SUITE, m->type, m->name,
			            "suite %s is not allowed by both you and %s", m->suite, m->name);
			return;
		}
		if (!relay_carries(r, m->suite)) {
			relay_error(r, c, CHAT_PERR_SUITE_REFUSED, m->type, m->name,
			            "this relay no longer carries %s (relay.suites)", m->suite);
			return;
		}
	}
	if (relay_write_begin(r, c, m->type) != CHAT_OK)
		return;
	if (store_failed(r, c, m->type, chat_store_offer_remove(st, m->name, c->name)))
		return;
	if (m->flag &&
	    store_failed(r, c, m->type, chat_store_conv_add(st, m->name, c->name, m->suite, chat_unix_ms())))
		return;
	relay_begin(r, CHAT_MSG_ANSWERED);
	chat_put_str8(&r->wb, c->name);
	chat_put_u8(&r->wb, (unsigned)m->flag);
	chat_put_str8(&r->wb, m->flag ? m->suite : "");
	relay_put_suites(r, c);
	chat_put_str16(&r->wb, m->text);
	if (store_failed(r, c, m->type, relay_mail_to(r, m->name, c->name, 0, NULL)))
		return;
	if (m->flag)
		chat_info("%s and %s started a conversation (%s)", m->name, c->name, m->suite);
}

void relay_close_registered(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct chat_store *st = r->cfg.store;
	char suite[33], offered[16 * 34];
	int had = chat_store_conv_get(st, c->name, m->name, suite) == CHAT_OK ||
	          chat_store_offer_get(st, c->name, m->name, offered) == CHAT_OK ||
	          chat_store_offer_get(st, m->name, c->name, offered) == CHAT_OK;

	if (!had) {
		relay_error(r, c, CHAT_PERR_NO_CONVERSATION, m->type, m->name, "no conversation with %s",
		            m->name);
		return;
	}
	if (relay_write_begin(r, c, m->type) != CHAT_OK)
		return;
	int rc = chat_store_conv_remove(st, c->name, m->name);
	if (rc == CHAT_OK || rc == CHAT_ERR_NOTFOUND)
		rc = chat_store_offer_remove(st, c->name, m->name);
	if (rc == CHAT_OK || rc == CHAT_ERR_NOTFOUND)
		rc = chat_store_offer_remove(st, m->name, c->name);
	if (rc != CHAT_OK && rc != CHAT_ERR_NOTFOUND) {
		relay_write_failed(r, c, m->type);
		return;
	}
	relay_begin(r, CHAT_MSG_CLOSED);
	chat_put_str8(&r->wb, c->name);
	if (store_failed(r, c, m->type, relay_mail_to(r, m->name, c->name, 0, NULL)))
		return;
	chat_info("%s closed the conversation with %s", c->name, m->name);
}

/* ---- SEND and ACK */

static void stored(struct chat_relay *r, struct client *c, const char *to, uint64_t client_id,
                   int64_t mail_id, unsigned state)
{
	relay_begin(r, CHAT_MSG_STORED);
	chat_put_str8(&r->wb, to);
	chat_put_u64(&r->wb, client_id);
	chat_put_u64(&r->wb, (uint64_t)mail_id);
	chat_put_u8(&r->wb, state);
	relay_after_commit(r, c, CHAT_MSG_SEND);
}

/* A guest peer with an accepted live conversation: forward, nothing stored. */
static int send_live(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct client *t = relay_find_user(r, m->name);

	if (!t || t->dead || relay_is_registered(t))
		return 0;
	struct link *l = relay_find_link(c, t);
	if (!(l && l->state == LINK_ACCEPTED)) {
		relay_error(r, c, CHAT_PERR_NO_CONVERSATION, m->type, t->name,
		            "no conversation with %s: offer one first", t->name);
		return 1;
	}
	relay_begin(r, CHAT_MSG_DELIVER);
	chat_put_str8(&r->wb, c->name);
	chat_put_bytes(&r->wb, m->payload_len, m->payload);
	relay_flush_to(r, t);
	stored(r, c, m->name, m->id, 0, CHAT_STORED_LIVE);
	return 1;
}

void relay_on_send(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct chat_store *st = r->cfg.store;
	char suite[33];
	uint64_t last = 0, bytes = 0;
	size_t count = 0;
	int64_t id = 0;
	int rc;

	if (!relay_is_registered(c)) {
		relay_error(r, c, CHAT_PERR_FORBIDDEN, m->type, m->name,
		            "guests cannot store messages: use ROUTE, or log in with an account");
		return;
	}
	if (strcmp(m->name, c->name) == 0) {
		relay_error(r, c, CHAT_PERR_SELF, m->type, m->name, "you cannot talk to yourself");
		return;
	}
	/* Not even a live STORED once the database file is gone. */
	if (relay_store_refuses(r, c, m->type))
		return;
	if (send_live(r, c, m))
		return;
	if (r->cfg.friends_only && relay_friend_state(r, c->name, m->name) != CHAT_FRIEND_YES) {
		relay_error(r, c, CHAT_PERR_FORBIDDEN, m->type, m->name,
		            "this relay allows conversations only between friends: /friend add %s", m->name);
		return;
	}
	rc = chat_store_account_exists(st, m->name);
	if (rc == CHAT_ERR_NOTFOUND) {
		relay_error(r, c, CHAT_PERR_NOT_CONNECTED, m->type, m->name,
		            "%s is not connected and has no account here", m->name);
		return;
	}
	if (rc == CHAT_OK)
		rc = chat_store_conv_get(st, c->name, m->name, suite);
	if (rc == CHAT_ERR_NOTFOUND) {
		relay_error(r, c, CHAT_PERR_NO_CONVERSATION, m->type, m->name,
		            "no conversation with %s: offer one first", m->name);
		return;
	}
	/* The MAIL that carries it must fit one frame. */
	size_t inner = 2 + strlen(c->name) + m->payload_len;
	if (inner + 17 > r->cfg.limits.max_frame) {
		relay_error(r, c, CHAT_PERR_LIMIT, m->type, m->name,
		            "a stored message can carry at most %zu payload bytes; this one has %zu",
		            r->cfg.limits.max_frame - 19 - strlen(c->name), m->payload_len);
		return;
	}
	int seen = 0;
	if (rc == CHAT_OK)
		rc = chat_store_sender_last(st, c->name, &last);
	if (rc == CHAT_OK)
		rc = chat_store_accepted_get(st, c->name, m->id, &seen);
	if (rc == CHAT_OK)
		rc = chat_store_mail_usage(st, m->name, &count, &bytes);
	if (rc != CHAT_OK) {
		chat_err("database read failed: %s", chat_store_error(st));
		relay_error(r, c, CHAT_PERR_STORAGE, m->type, m->name,
		            "the relay cannot read its database now; nothing was accepted: try again");
		return;
	}
	if (relay_write_begin(r, c, m->type) != CHAT_OK)
		return;
	if (seen) {
		stored(r, c, m->name, m->id, 0, CHAT_STORED_DUPLICATE);
		return;
	}
	if (count >= r->cfg.queue_max_messages || bytes + inner > r->cfg.queue_max_bytes) {
		relay_error(r, c, CHAT_PERR_QUEUE_FULL, m->type, m->name,
		            "%s's queue is full (%zu messages, %llu bytes waiting): try later", m->name,
		            count, (unsigned long long)bytes);
		return;
	}
	if (r->cfg.archive &&
	    store_failed(r, c, m->type,
	                 chat_store_archive_add(st, c->name, m->name, chat_unix_ms(), m->payload_len,
	                                        m->payload)))
		return;
	relay_begin(r, CHAT_MSG_DELIVER);
	chat_put_str8(&r->wb, c->name);
	chat_put_bytes(&r->wb, m->payload_len, m->payload);
	if (store_failed(r, c, m->type, relay_mail_to(r, m->name, c->name, m->id, &id)) ||
	    store_failed(r, c, m->type, chat_store_accepted_add(st, c->name, m->id, chat_unix_ms())) ||
	    (m->id > last &&
	     store_failed(r, c, m->type, chat_store_sender_set_last(st, c->name, m->id))))
		return;
	struct client *t = relay_find_user(r, m->name);
	stored(r, c, m->name, m->id, id, t && !t->dead ? CHAT_STORED_ONLINE : CHAT_STORED_QUEUED);
}

static int receipt(struct chat_relay *r, const char *sender, const char *recipient,
                   uint64_t client_id, unsigned status, const char *text)
{
	relay_begin(r, CHAT_MSG_RECEIPT);
	chat_put_str8(&r->wb, recipient);
	chat_put_u64(&r->wb, client_id);
	chat_put_u8(&r->wb, status);
	chat_put_str16(&r->wb, text ? text : "");
	return relay_mail_to(r, sender, "", 0, NULL);
}

void relay_on_ack(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct chat_mail mail;
	char from[33];
	int rc;

	if (!relay_is_registered(c)) {
		relay_error(r, c, CHAT_PERR_UNEXPECTED, m->type, NULL, "guests have no stored mail");
		return;
	}
	if (relay_write_begin(r, c, m->type) != CHAT_OK)
		return;
	rc = chat_store_mail_take(r->cfg.store, c->name, (int64_t)m->id, &mail, from);
	if (rc == CHAT_OK && (int64_t)m->id <= c->acct->pushed_id && c->acct->inflight) {
		c->acct->inflight--;
		uint64_t len = mail.len;
		c->acct->inflight_bytes = c->acct->inflight && c->acct->inflight_bytes > len
		                          ? c->acct->inflight_bytes - len : 0;
		relay_mail_wanted(r, c);
	}
	if (rc == CHAT_ERR_NOTFOUND) {
		chat_debug("%s acknowledged mail %llu again (already deleted)", c->name,
		           (unsigned long long)m->id);
		return;
	}
	if (store_failed(r, c, m->type, rc))
		return;
	if (mail.client_id && from[0] &&
	    store_failed(r, c, m->type,
	                 receipt(r, from, c->name, mail.client_id,
	                         m->flag ? CHAT_RECEIPT_UNREADABLE : CHAT_RECEIPT_DELIVERED, m->text)))
		return;
}

/* ---- expiry and archive pruning */

struct expired {
	char to[33], from[33];
	uint64_t client_id;
};

struct expired_list {
	struct expired *v;
	size_t n, cap;
};

static int collect_expired(void *arg, const struct chat_mail *m)
{
	struct expired_list *l = arg;

	if (!m->client_id || !m->from[0])
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct expired *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return 0; /* the sender is not told; the mail still expires */
		l->v = v;
		l->cap = cap;
	}
	snprintf(l->v[l->n].to, sizeof(l->v[l->n].to), "%s", m->to);
	snprintf(l->v[l->n].from, sizeof(l->v[l->n].from), "%s", m->from);
	l->v[l->n].client_id = m->client_id;
	l->n++;
	return 0;
}

static long long housekeeping(struct chat_loop *loop, void *arg)
{
	struct chat_relay *r = arg;
	struct expired_list l = { 0 };
	int64_t now = chat_unix_ms();

	(void)loop;
	/* Also noticed when nobody writes; said again once a minute. */
	if (chat_store_check(r->cfg.store) != CHAT_OK) {
		if (chat_store_gone(r->cfg.store)) {
			store_gone(r);
		} else if (!r->gone_logged_ms || now - r->gone_logged_ms >= GONE_LOG_MS) {
			/* PostgreSQL: the connection is lost; each check tries again */
			chat_err("%s", chat_store_error(r->cfg.store));
			r->gone_logged_ms = now;
		}
		return 1000;
	}
	if (relay_write_begin(r, NULL, 0) != CHAT_OK)
		return 1000;
	if (chat_store_mail_expire(r->cfg.store, now, collect_expired, &l) != CHAT_OK) {
		relay_write_failed(r, NULL, 0);
	} else {
		for (size_t i = 0; i < l.n; i++) {
			char text[128];
			snprintf(text, sizeof(text), "%s did not log in within %lld s", l.v[i].to,
			         (long long)(r->cfg.queue_expiry_ms / 1000));
			if (receipt(r, l.v[i].from, l.v[i].to, l.v[i].client_id, CHAT_RECEIPT_EXPIRED, text) != CHAT_OK) {
				relay_write_failed(r, NULL, 0);
				break;
			}
		}
		if (l.n)
			chat_info("%zu stored message(s) expired unread; their senders are told", l.n);
	}
	free(l.v);
	if (now - r->last_prune_ms >= 3600 * 1000) {
		size_t removed = 0;
		int64_t keep = 2 * r->cfg.queue_expiry_ms;
		r->last_prune_ms = now;
		if (keep < 30LL * 86400000)
			keep = 30LL * 86400000;
		/* A resend comes at the sender's next login; ids older than this are
		 * forgotten (a resend after that long would be stored again). */
		if (chat_store_accepted_prune(r->cfg.store, now - keep) != CHAT_OK ||
		    relay_accounts_prune(r, now) != CHAT_OK)
			relay_write_failed(r, NULL, 0);
		else if (r->cfg.archive &&
		         chat_store_archive_prune(r->cfg.store, now - r->cfg.archive_ms, &removed) != CHAT_OK)
			relay_write_failed(r, NULL, 0);
		else if (removed)
			chat_info("archive: %zu message(s) older than relay.archive_days removed", removed);
	}
	return 1000;
}

int relay_mail_new(struct chat_relay *r)
{
	r->pending_tail = &r->pending;
	if (!r->cfg.store)
		return CHAT_OK;
	return chat_loop_timer_add(r->loop, 1000, housekeeping, r, &r->expiry_timer);
}

void relay_mail_free(struct chat_relay *r)
{
	if (r->expiry_timer)
		chat_loop_timer_cancel(r->loop, r->expiry_timer);
	r->expiry_timer = NULL;
	if (r->hook)
		((struct round_hook *)r->hook)->r = NULL;
	r->hook = NULL;
	r->round_hook = 0;
	if (r->cfg.store && chat_store_in_transaction(r->cfg.store)) {
		if (r->round_failed)
			chat_store_rollback(r->cfg.store);
		else if (chat_store_commit(r->cfg.store) != CHAT_OK)
			chat_err("final commit failed: %s", chat_store_error(r->cfg.store));
	}
	for (struct pending *p = r->pending, *next; p; p = next) {
		next = p->next;
		free(p);
	}
	r->pending = NULL;
	r->pending_tail = &r->pending;
	free(r->fill);
	r->fill = NULL;
	r->nfill = r->capfill = 0;
}
