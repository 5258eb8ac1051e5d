/* Stored delivery between registered users (docs/PROTOCOL.md section 4):
 * every end-to-end payload of such a conversation goes by SEND with a client
 * id; sealed messages wait in the outbox (kept in the keystore) until the
 * relay says STORED; what arrives comes as MAIL and is ACKed only once its
 * effect is durable (keystore saved, history appended). */
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
	struct outmail *o = malloc(sizeof(*o) + len);
	if (!o) {
		client_fail(c, v->peer, "no-memory", "out of memory: message to %s not sent", v->peer);
		return CHAT_ERR_NOMEM;
	}
	o->next = NULL;
	o->id = c->next_id++;
	o->sent = 0;
	snprintf(o->peer, sizeof(o->peer), "%s", v->peer);
	o->len = len;
	memcpy(o->payload, payload, len);
	*c->outbox_tail = o;
	c->outbox_tail = &o->next;
	client_store_mark(c);
	return CHAT_OK;
}

static void send_outmail(struct chat_client *c, struct outmail *o)
{
	if (!c->conn)
		return;
	put_send(c, o->peer, o->id, o->len, o->payload);
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
	for (struct outmail *o = c->outbox; o; o = o->next)
		if (!o->sent)
			send_outmail(c, o);
	return CHAT_OK;
}

void client_resend_outbox(struct chat_client *c)
{
	size_t n = 0;

	for (struct outmail *o = c->outbox; o; o = o->next, n++)
		send_outmail(c, o);
	if (n)
		client_say(c, CHAT_EV_INFO, NULL, "%zu sealed message chunk(s) from the keystore sent again "
		           "(the relay drops the ones it has)", n);
}

static void free_outmail(struct outmail *o)
{
	chat_wipe(o->payload, o->len);
	free(o);
}

void client_drop_outbox(struct chat_client *c, const char *peer, size_t *dropped)
{
	size_t n = 0;

	for (struct outmail **pp = &c->outbox; *pp;) {
		struct outmail *o = *pp;
		if (strcmp(o->peer, peer)) {
			pp = &o->next;
			continue;
		}
		*pp = o->next;
		free_outmail(o);
		n++;
	}
	c->outbox_tail = &c->outbox;
	while (*c->outbox_tail)
		c->outbox_tail = &(*c->outbox_tail)->next;
	if (n)
		client_store_mark(c);
	if (dropped)
		*dropped = n;
}

void client_on_stored(struct chat_client *c, const struct chat_msg *m)
{
	static const char *const states[] = { "?", "online", "queued", "duplicate", "live" };
	char text[64];

	for (struct outmail **pp = &c->outbox; *pp; pp = &(*pp)->next) {
		struct outmail *o = *pp;
		if (o->id == m->id && !strcmp(o->peer, m->name)) {
			*pp = o->next;
			if (c->outbox_tail == &o->next)
				c->outbox_tail = pp;
			free_outmail(o);
			client_store_mark(c); /* no hurry: a resend would be a duplicate */
			break;
		}
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
	snprintf(text, sizeof(text), "%llu %s", (unsigned long long)m->id, 
	         states[m->flag >= 1 && m->flag <= 4 ? m->flag : 0]);
	client_emit(c, CHAT_EV_STORED, m->name, NULL, NULL, NULL, strlen(text), text, 0);
}

void client_on_receipt(struct chat_client *c, const struct chat_msg *m)
{
	static const char *const status[] = { "?", "delivered", "expired", "unreadable", "removed" };
	char text[CHAT_TEXT_MAX + 64];

	snprintf(text, sizeof(text), "%llu %s%s%s", (unsigned long long)m->id,
	         status[m->flag >= 1 && m->flag <= 4 ? m->flag : 0], m->text[0] ? " " : "", m->text);
	client_emit(c, CHAT_EV_RECEIPT, m->name, NULL, NULL, NULL, strlen(text), text, 0);
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
	client_flush_acks(c);
	return -1;
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
	if (!c->ack_timer)
		chat_loop_timer_add(c->loop, 0, ack_timer, c, &c->ack_timer);
}

void client_flush_acks(struct chat_client *c)
{
	if (!c->nacks)
		return;
	if (client_store_save(c) != CHAT_OK) {
		client_fail(c, NULL, "keystore", "%zu stored message(s) not acknowledged: the relay keeps "
		            "them and delivers them again at the next login", c->nacks);
		c->nacks = 0;
		return;
	}
	for (size_t i = 0; i < c->nacks && c->conn; i++) {
		client_begin(c, CHAT_MSG_ACK);
		chat_put_u64(&c->wb, c->acks[i].id);
		chat_put_u8(&c->wb, (unsigned)c->acks[i].unreadable);
		chat_put_str16(&c->wb, c->acks[i].reason);
		client_flush(c);
	}
	c->nacks = 0;
}

void client_on_mail(struct chat_client *c, const struct chat_msg *m)
{
	struct chat_msg inner;
	char err[256];

	if (c->state != CS_READY || c->group == 0) {
		client_fail(c, NULL, "unexpected", "stored mail before a registered login; ignored");
		return;
	}
	if (m->id <= c->mail_max) {
		/* Processed before (our ACK was lost): acknowledge it again. */
		queue_ack(c, m->id, NULL);
		return;
	}
	/* Recorded before the mail takes effect: a keystore saved while it is
	 * processed must not make it look new after a crash. */
	c->mail_max = m->id;
	if (chat_msg_parse(m->payload_len, m->payload, &inner, sizeof(err), err) != CHAT_OK) {
		client_fail(c, NULL, "malformed", "malformed stored message %llu from the relay: %s",
		            (unsigned long long)m->id, err);
		queue_ack(c, m->id, err);
	} else {
		c->in_mail = 1;
		c->mail_time = m->time_ms;
		c->mail_problem[0] = '\0';
		client_dispatch(c, &inner);
		c->in_mail = 0;
		queue_ack(c, m->id, c->mail_problem);
		c->mail_problem[0] = '\0';
	}
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
}
