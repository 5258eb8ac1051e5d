/* Stored delivery between registered users (docs/PROTOCOL.md section 4):
 * every end-to-end payload of such a conversation goes by SEND with a client
 * id; the sealed chunks of a message wait with it in the outbox (kept in the
 * keystore, client_deliver.c decides what is sealed when); what arrives comes
 * as MAIL, is processed once (mail ids remembered), and is ACKed only after
 * its effect was saved and shown (client_round_end).  One the suite rejects
 * as replayed or out of order is held and tried again after the next ones
 * (a suite with strict sequence numbers opens nothing out of order). */
#include "client_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_send(struct chat_client *c, const char *peer, uint64_t id, size_t len,
                     const uint8_t *payload)
{
	client_begin(c, CHAT_MSG_SEND);
	chat_put_str8(&c->wb, peer);
	chat_put_u64(&c->wb, id);
	chat_put_bytes(&c->wb, len, payload);
	client_flush(c);
}

void client_transmit(struct chat_client *c, struct conv *v, size_t len, const uint8_t *payload)
{
	if (client_uses_send(c, v)) {
		put_send(c, v->peer, c->next_id++, len, payload);
		return;
	}
	client_begin(c, CHAT_MSG_ROUTE);
	chat_put_str8(&c->wb, v->peer);
	chat_put_bytes(&c->wb, len, payload);
	client_flush(c);
}

int client_out_conv(struct chat_client *c, struct conv *v, const char *room, size_t len,
                    const uint8_t *payload)
{
	(void)room;
	if (!client_uses_send(c, v)) {
		client_begin(c, CHAT_MSG_ROUTE);
		chat_put_str8(&c->wb, v->peer);
		chat_put_bytes(&c->wb, len, payload);
		return client_flush(c);
	}
	struct outmsg *m = c->sealing;
	if (!m)
		return CHAT_ERR_STATE; /* stored conversations seal only from the outbox */
	struct outmail *o = malloc(sizeof(*o) + len);
	if (!o) {
		client_fail(c, v->peer, "no-memory", "out of memory: message to %s not sent", v->peer);
		return CHAT_ERR_NOMEM;
	}
	o->next = NULL;
	o->id = c->next_id++;
	o->sent = 0;
	o->stored = 0;
	o->len = len;
	memcpy(o->payload, payload, len);
	struct outmail **tail = &m->chunks;
	while (*tail)
		tail = &(*tail)->next;
	*tail = o;
	client_store_mark(c);
	return CHAT_OK;
}

static void send_outmail(struct chat_client *c, const struct outmsg *m, struct outmail *o)
{
	if (!c->conn)
		return;
	put_send(c, m->peer, o->id, o->len, o->payload);
	o->sent = 1;
}

int client_commit(struct chat_client *c)
{
	int rc = client_store_save(c);

	if (rc != CHAT_OK) {
		client_fail(c, NULL, "keystore", "sealed messages are not sent until %s can be saved "
		            "(so that no key stream is ever used twice)", c->ks_path ? c->ks_path : "the keystore");
		return rc;
	}
	for (struct outmsg *m = c->out; m; m = m->next)
		for (struct outmail *o = m->chunks; o; o = o->next)
			if (!o->sent)
				send_outmail(c, m, o);
	return CHAT_OK;
}

/* At login: every chunk the relay has not stored goes again, in the order
 * the chunks were sealed (their client ids), so that the relay stores them
 * in the suite's order. */
void client_resend_outbox(struct chat_client *c)
{
	size_t n = 0;

	for (struct outmsg *m = c->out; m; m = m->next)
		for (struct outmail *o = m->chunks; o; o = o->next)
			o->sent = 0;
	for (;;) {
		struct outmsg *first = NULL;
		struct outmail *chunk = NULL;
		for (struct outmsg *m = c->out; m; m = m->next)
			for (struct outmail *o = m->chunks; o; o = o->next)
				if (!o->stored && !o->sent && (!chunk || o->id < chunk->id)) {
					first = m;
					chunk = o;
				}
		if (!chunk || !c->conn)
			break;
		send_outmail(c, first, chunk);
		n++;
	}
	if (n)
		client_say(c, CHAT_EV_INFO, NULL, "%zu sealed message chunk(s) from the keystore sent again "
		           "(the relay drops the ones it has)", n);
}

/* The outbox message whose current copy has the chunk (peer, client id). */
static struct outmsg *find_chunk(struct chat_client *c, const char *peer, uint64_t id,
                                 struct outmail **chunk)
{
	for (struct outmsg *m = c->out; m; m = m->next) {
		if (peer[0] && strcmp(m->peer, peer))
			continue; /* (client ids are unique: a peer not named is any peer) */
		for (struct outmail *o = m->chunks; o; o = o->next) {
			if (o->id == id) {
				*chunk = o;
				return m;
			}
		}
	}
	*chunk = NULL;
	return NULL;
}

void client_on_stored(struct chat_client *c, const struct chat_msg *m)
{
	static const char *const states[] = { "?", "online", "queued", "duplicate", "live" };
	struct outmail *o;
	struct outmsg *om = find_chunk(c, m->name, m->id, &o);
	char text[64];
	int is_receipt = om && om->kind == E_RECEIPT;

	if (om && !o->stored) {
		o->stored = 1;
		client_store_mark(c); /* no hurry: a resend would be a duplicate */
		int all = 1, was_refused = om->state == OM_REFUSED;
		for (struct outmail *k = om->chunks; k; k = k->next)
			all &= k->stored;
		if (all && (om->kind == E_RECEIPT || m->flag == CHAT_STORED_LIVE)) {
			/* A receipt needs no receipt; a guest peer sends none. */
			if (om->kind == E_RECEIPT) {
				for (struct outmail *k = om->chunks; k; k = k->next) {
					c->rcpt_ids[c->rcpt_pos] = k->id;
					c->rcpt_pos = (c->rcpt_pos + 1) % 64;
				}
			}
			client_outmsg_remove(c, om);
		} else if (all) {
			om->state = OM_STORED;
			om->resent = 0;
			om->due = 0;
			if (m->flag == CHAT_STORED_ONLINE || m->flag == CHAT_STORED_DUPLICATE)
				client_deliver_expect(c, om);
		}
		if (all && was_refused)
			client_deliver_unblocked(c, m->name);
	}
	if (m->flag == CHAT_STORED_LIVE) {
		/* The peer is a guest: nothing is stored for them, so from now on
		 * the conversation goes live and is not kept. */
		struct conv *v = client_find_conv(c, m->name);
		if (v && !v->peer_guest) {
			v->peer_guest = 1;
			client_store_mark(c);
		}
	}
	if (is_receipt)
		return; /* protocol, not news (the line is for messages the user wrote) */
	snprintf(text, sizeof(text), "%llu %s", (unsigned long long)m->id,
	         states[m->flag >= 1 && m->flag <= 4 ? m->flag : 0]);
	client_emit(c, CHAT_EV_STORED, m->name, NULL, NULL, NULL, strlen(text), text, 0);
}

/* What the relay says of a stored chunk: a hint, never "delivered" (only the
 * peer's own receipt says that). */
void client_on_receipt(struct chat_client *c, const struct chat_msg *m)
{
	static const char *const status[] = { "?", "fetched", "expired", "unreadable", "removed" };
	char text[CHAT_TEXT_MAX + 64];
	struct outmail *o;
	struct outmsg *om = find_chunk(c, m->name, m->id, &o);

	if (!om) {
		for (size_t i = 0; i < 64; i++)
			if (c->rcpt_ids[i] == m->id && m->flag == CHAT_RECEIPT_DELIVERED)
				return; /* one of our receipts was fetched: not news */
	}
	snprintf(text, sizeof(text), "%llu %s%s%s", (unsigned long long)m->id,
	         status[m->flag >= 1 && m->flag <= 4 ? m->flag : 0], m->text[0] ? " " : "", m->text);
	client_emit(c, CHAT_EV_RECEIPT, m->name, NULL, NULL, NULL, strlen(text), text, 0);
	if (!om || om->kind != E_TEXT)
		return;
	switch (m->flag) {
	case CHAT_RECEIPT_DELIVERED:
		client_deliver_expect(c, om);
		client_deliver_expect_before(c, m->name, om->seq);
		break;
	case CHAT_RECEIPT_EXPIRED:
	case CHAT_RECEIPT_UNREADABLE:
		client_say(c, CHAT_EV_INFO, m->name, "message #%llu to %s is sealed and sent again",
		           (unsigned long long)om->seq, m->name);
		client_deliver_reseal(c, om);
		break;
	case CHAT_RECEIPT_REMOVED:
		client_fail(c, m->name, "undelivered", "message #%llu to %s is given up: the account was "
		            "removed", (unsigned long long)om->seq, m->name);
		client_outmsg_remove(c, om);
		break;
	}
}

void client_on_send_refused(struct chat_client *c, const struct chat_msg *m)
{
	struct outmail *o;
	struct outmsg *om = m->id ? find_chunk(c, m->name, m->id, &o) : NULL;

	if (!om || !client_deliver_refused(c, om))
		return;
	if (om->kind == E_TEXT)
		client_say(c, CHAT_EV_INFO, om->peer, "message #%llu to %s is kept and sent again in %llu s "
		           "(later ones wait behind it)", (unsigned long long)om->seq, om->peer,
		           (unsigned long long)((om->due - chat_loop_now_ms() + 999) / 1000));
}

/* ---- MAIL and ACK */

void client_mail_problem(struct chat_client *c, const char *fmt, ...)
{
	va_list ap;

	if (!c->in_mail || c->mail_problem[0])
		return;
	va_start(ap, fmt);
	vsnprintf(c->mail_problem, sizeof(c->mail_problem), fmt, ap);
	va_end(ap);
}

static long long ack_timer(struct chat_loop *loop, void *arg)
{
	struct chat_client *c = arg;

	(void)loop;
	c->ack_timer = NULL;
	client_round_end(c);
	return -1;
}

void client_round_soon(struct chat_client *c)
{
	if (!c->ack_timer)
		chat_loop_timer_add(c->loop, 0, ack_timer, c, &c->ack_timer);
}

static void queue_ack(struct chat_client *c, uint64_t id, const char *problem)
{
	if (c->nacks == c->acks_cap) {
		size_t cap = c->acks_cap ? c->acks_cap * 2 : 16;
		struct ack *grown = realloc(c->acks, cap * sizeof(*grown));
		if (!grown)
			return; /* not ACKed: the relay delivers it again at the next login */
		c->acks = grown;
		c->acks_cap = cap;
	}
	struct ack *a = &c->acks[c->nacks++];
	a->id = id;
	a->unreadable = problem && problem[0];
	snprintf(a->reason, sizeof(a->reason), "%s", a->unreadable ? problem : "");
	/* Everything that arrives in this round is made durable once, then ACKed. */
	client_round_soon(c);
}

/* Everything processed in this round is saved (sessions, numbers, held
 * messages, the mail ids), shown, then confirmed to the sender and ACKed to
 * the relay.  The save is written first and put in place right after the
 * showing: a kill before that rename shows what it showed again (the relay
 * delivers it again), one in or after it has shown it; a kill between a
 * save in place and the showing (a rename alone can take milliseconds)
 * would lose messages the sender is then told were shown. */
void client_round_end(struct chat_client *c)
{
	int saved;

	client_queue_receipts(c);
	client_pump_seal(c);
	saved = client_store_stage(c) == CHAT_OK;
	c->history_unsynced = 1;
	client_show_pending(c);
	c->history_unsynced = 0;
	if (client_store_commit(c) != CHAT_OK)
		saved = 0;
	if (!saved && c->nacks)
		client_fail(c, NULL, "keystore", "%zu stored message(s) not acknowledged: the relay keeps "
		            "them and delivers them again at the next login", c->nacks);
	if (!saved) {
		c->nacks = 0;
		return;
	}
	for (struct outmsg *m = c->out; m; m = m->next)
		for (struct outmail *o = m->chunks; o; o = o->next)
			if (!o->sent)
				send_outmail(c, m, o);
	for (size_t i = 0; i < c->nacks && c->conn; i++) {
		client_begin(c, CHAT_MSG_ACK);
		chat_put_u64(&c->wb, c->acks[i].id);
		chat_put_u8(&c->wb, (unsigned)c->acks[i].unreadable);
		chat_put_str16(&c->wb, c->acks[i].reason);
		client_flush(c);
	}
	c->nacks = 0;
	client_retry_arm(c);
}

static int seen_mail(const struct chat_client *c, uint64_t id)
{
	for (size_t i = 0; i < c->nrecent; i++)
		if (c->recent[i] == id)
			return 1;
	return 0;
}

void client_remember_mail(struct chat_client *c, uint64_t id)
{
	c->recent[c->recent_pos] = id;
	c->recent_pos = (c->recent_pos + 1) % CHAT_RECENT_MAIL;
	if (c->nrecent < CHAT_RECENT_MAIL)
		c->nrecent++;
}

/* Process one stored message (mail id, stored-at, the inner message): 1 if
 * the suite could not open it yet (held: neither ACKed nor remembered), else
 * 0 (remembered, ACK queued). */
static int take_mail(struct chat_client *c, uint64_t id, int64_t time_ms, size_t len,
                     const uint8_t *data)
{
	struct chat_msg inner;
	char err[256];
	size_t pos = c->recent_pos, n = c->nrecent;
	uint64_t old = c->recent[pos];

	/* Recorded with what it does, in the same save. */
	client_remember_mail(c, id);
	if (chat_msg_parse(len, data, &inner, sizeof(err), err) != CHAT_OK) {
		client_fail(c, NULL, "malformed", "malformed stored message %llu from the relay: %s",
		            (unsigned long long)id, err);
		queue_ack(c, id, err);
		return 0;
	}
	c->in_mail = 1;
	c->mail_time = time_ms;
	c->mail_id = id;
	c->mail_problem[0] = '\0';
	c->mail_hold = 0;
	client_dispatch(c, &inner);
	c->in_mail = 0;
	if (c->mail_hold) { /* it did nothing: as if it had not come */
		c->mail_hold = 0;
		c->recent[pos] = old;
		c->recent_pos = pos;
		c->nrecent = n;
		return 1;
	}
	queue_ack(c, id, c->mail_problem);
	c->mail_problem[0] = '\0';
	return 0;
}

/* Give up on a held mail.  One from its sender opened since it was held, so
 * its turn passed (a replay, or one whose predecessor is lost): rejected and
 * ACKed as unreadable, as any other rejected message (the sender may seal it
 * again).  Nothing opened since: it may be ahead of one that never came, which
 * the relay still has; left unacknowledged, so that the relay delivers both
 * again, in order, at the next login. */
static void give_up_held(struct chat_client *c, struct heldmail *h)
{
	if (h->passed) {
		client_remember_mail(c, h->id);
		client_fail(c, h->peer, "replay", "message from %s rejected: %s", h->peer,
		            chat_strerror(CHAT_ERR_REPLAY));
		queue_ack(c, h->id, h->why);
		client_store_mark(c);
	} else {
		client_say(c, CHAT_EV_WARNING, h->peer, "a stored message from %s could not be opened: "
		           "one sent before it has not come (the relay or the network lost or held it), "
		           "or it is a replay; it is not acknowledged, so the relay delivers it again, "
		           "after the missing one, at your next login", h->peer);
	}
	free(h);
}

/* After a mail that opened: try the held ones again, oldest first, as long
 * as one opens; then give up those stored before one of their sender's that
 * opened (the relay numbers mail in the order it stored it, and a sender's
 * suite in the order it sealed: their turn has passed). */
static void retry_held(struct chat_client *c)
{
	while (c->mail_opened) {
		c->mail_opened = 0;
		for (struct heldmail **pp = &c->hmail; *pp;) {
			struct heldmail *h = *pp;
			if (take_mail(c, h->id, h->time_ms, h->len, h->data)) {
				pp = &h->next;
				continue;
			}
			*pp = h->next;
			c->nhmail--;
			free(h);
			if (c->mail_opened)
				break; /* from the oldest again */
		}
	}
	for (struct heldmail **pp = &c->hmail; *pp;) {
		struct heldmail *h = *pp;
		struct conv *v = client_find_conv(c, h->peer);
		if (!v || h->id > v->rx_mail) {
			pp = &h->next;
			continue;
		}
		*pp = h->next;
		c->nhmail--;
		give_up_held(c, h);
	}
}

static void hold_mail(struct chat_client *c, const struct chat_msg *m)
{
	struct heldmail **pp = &c->hmail;

	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->id == m->id)
			return; /* a second copy of one held */
	struct heldmail *h = malloc(sizeof(*h) + m->payload_len);
	if (!h) /* not ACKed: the relay delivers it again at the next login */
		return;
	h->next = NULL;
	snprintf(h->peer, sizeof(h->peer), "%s", c->hold_peer);
	snprintf(h->why, sizeof(h->why), "%s", c->hold_why);
	h->id = m->id;
	h->time_ms = m->time_ms;
	h->since = chat_loop_now_ms();
	h->passed = 0;
	h->len = m->payload_len;
	memcpy(h->data, m->payload, m->payload_len);
	*pp = h;
	if (++c->nhmail > HELD_MAIL_MAX) {
		h = c->hmail;
		c->hmail = h->next;
		c->nhmail--;
		give_up_held(c, h);
	}
	client_retry_arm(c);
}

void client_held_mail_opened(struct chat_client *c, struct conv *v)
{
	c->mail_opened = 1;
	if (c->mail_id > v->rx_mail)
		v->rx_mail = c->mail_id;
	for (struct heldmail *h = c->hmail; h; h = h->next)
		if (!strcmp(h->peer, v->peer))
			h->passed = 1;
}

uint64_t client_held_mail_due(const struct chat_client *c)
{
	return c->hmail ? c->hmail->since + HOLD_MAIL_MS : 0;
}

void client_held_mail_expire(struct chat_client *c, uint64_t now)
{
	while (c->hmail && now - c->hmail->since >= HOLD_MAIL_MS) {
		struct heldmail *h = c->hmail;
		c->hmail = h->next;
		c->nhmail--;
		give_up_held(c, h);
	}
}

void client_on_mail(struct chat_client *c, const struct chat_msg *m)
{
	if (c->state != CS_READY || c->group == 0) {
		client_fail(c, NULL, "unexpected", "stored mail before a registered login; ignored");
		return;
	}
	if (seen_mail(c, m->id)) {
		/* Processed before (our ACK was lost): acknowledge it again. */
		queue_ack(c, m->id, NULL);
		return;
	}
	c->mail_opened = 0;
	if (take_mail(c, m->id, m->time_ms, m->payload_len, m->payload))
		hold_mail(c, m);
	else
		retry_held(c);
	client_store_mark(c);
}

void client_free_mail(struct chat_client *c)
{
	if (c->ack_timer)
		chat_loop_timer_cancel(c->loop, c->ack_timer);
	c->ack_timer = NULL;
	free(c->acks);
	c->acks = NULL;
	c->nacks = c->acks_cap = 0;
	while (c->hmail) {
		struct heldmail *h = c->hmail;
		c->hmail = h->next;
		free(h);
	}
	c->nhmail = 0;
}
