/* End-to-end delivery between registered users (docs/PROTOCOL.md 3.3): the
 * relay and the path are not trusted to say what arrived.
 *
 * Sender: every typed message gets a number in its conversation and waits in
 * the outbox (plaintext, in the encrypted keystore) until the peer's client
 * confirms, sealed in the conversation, that it showed it.  A sealed copy the
 * relay refuses goes again as it is after a backoff, and later messages to
 * that peer (receipts too) wait until the relay has stored it: the suite
 * counted that copy, and a suite with a strict sequence (aescbc-hmac) rejects
 * everything sealed after a copy that never arrives.  A copy the peer could
 * not open (the relay says unreadable or expired) or that was stored for an
 * online peer and never confirmed is sealed again.
 *
 * Receiver: messages are shown in their senders' order, each once.  One that
 * arrives ahead of a missing one is held (in the keystore) for GAP_WAIT_MS;
 * then the gap is reported ("1 message from alice is missing (#7)") and a
 * late arrival is still shown, marked late.  A duplicate is confirmed again
 * (its first receipt may have been lost) and not shown. */
#include "client_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "be.h"

#define GAP_WAIT_MS 15000      /* hold later messages this long for a missing one */
#define HELD_MAX 512           /* then give up on the gap at once */
#define ACK_WAIT_MS 10000      /* stored for an online peer (or fetched): confirm within this */
#define ACK_WAIT_MAX_MS 600000
#define REFUSED_WAIT_MAX_MS 30000
#define RECEIPT_MAX 1000       /* numbers per receipt */

static uint64_t now_ms(const struct chat_client *c)
{
	(void)c;
	return chat_loop_now_ms();
}

/* ---- the outbox */

struct outmsg *client_outmsg_new(struct chat_client *c, const char *peer, int kind, uint64_t seq,
                                 size_t len, const void *text)
{
	struct outmsg *m = calloc(1, sizeof(*m) + len);

	if (!m) {
		client_fail(c, peer, "no-memory", "out of memory: message to %s not kept", peer);
		return NULL;
	}
	snprintf(m->peer, sizeof(m->peer), "%s", peer);
	m->kind = kind;
	m->seq = seq;
	m->len = len;
	if (len)
		memcpy(m->text, text, len);
	*c->out_tail = m;
	c->out_tail = &m->next;
	client_store_mark(c);
	return m;
}

void client_outmsg_drop_copy(struct outmsg *m)
{
	while (m->chunks) {
		struct outmail *o = m->chunks;
		m->chunks = o->next;
		chat_wipe(o->payload, o->len);
		free(o);
	}
}

void client_outmsg_free(struct outmsg *m)
{
	client_outmsg_drop_copy(m);
	chat_wipe(m->text, m->len);
	free(m);
}

void client_outmsg_remove(struct chat_client *c, struct outmsg *m)
{
	for (struct outmsg **pp = &c->out; *pp; pp = &(*pp)->next) {
		if (*pp != m)
			continue;
		*pp = m->next;
		if (c->out_tail == &m->next)
			c->out_tail = pp;
		break;
	}
	client_outmsg_free(m);
	client_store_mark(c);
}

void client_drop_outbox(struct chat_client *c, const char *peer, size_t *dropped)
{
	size_t n = 0;

	for (struct outmsg **pp = &c->out; *pp;) {
		struct outmsg *m = *pp;
		if (strcmp(m->peer, peer)) {
			pp = &m->next;
			continue;
		}
		*pp = m->next;
		n += m->kind == E_TEXT;
		client_outmsg_free(m);
	}
	c->out_tail = &c->out;
	while (*c->out_tail)
		c->out_tail = &(*c->out_tail)->next;
	if (n)
		client_fail(c, peer, "undelivered", "%zu message(s) to %s were never confirmed as shown "
		            "and are given up", n, peer);
	client_store_mark(c);
	if (dropped)
		*dropped = n;
}

static int seal_outmsg(struct chat_client *c, struct conv *v, struct outmsg *m)
{
	client_outmsg_drop_copy(m);
	c->sealing = m;
	int rc = client_seal_text(c, v, m->kind, m->seq, m->len, (const char *)m->text,
	                          client_out_conv, NULL);
	c->sealing = NULL;
	if (rc != CHAT_OK) {
		client_outmsg_drop_copy(m);
		return rc;
	}
	m->state = OM_SEALED;
	m->due = 0;
	return CHAT_OK;
}

/* Where m's copy stands in the suite's sequence: its first chunk not stored
 * (client ids grow in the order chunks are sealed). */
static uint64_t copy_place(const struct outmsg *m)
{
	for (const struct outmail *o = m->chunks; o; o = o->next)
		if (!o->stored)
			return o->id;
	return UINT64_MAX;
}

/* The refused copy to peer that was sealed first: the one to go again. */
static struct outmsg *refused_head(struct chat_client *c, const char *peer)
{
	struct outmsg *head = NULL;

	for (struct outmsg *m = c->out; m; m = m->next)
		if (m->state == OM_REFUSED && !strcmp(m->peer, peer) &&
		    (!head || copy_place(m) < copy_place(head)))
			head = m;
	return head;
}

int client_pump_seal(struct chat_client *c)
{
	uint64_t now = now_ms(c);
	int sealed = 0;

	/* A refused copy goes again as it is, one at a time in the order sealed;
	 * nothing newer to that peer is sealed before the relay stored it. */
	for (struct conv *v = c->convs; v; v = v->next)
		v->blocked = 0;
	for (struct outmsg *m = c->out; m; m = m->next) {
		if (m->state != OM_REFUSED)
			continue;
		struct conv *v = client_find_conv(c, m->peer);
		if (v)
			v->blocked = 1;
		if (m->resent || m->due > now || refused_head(c, m->peer) != m)
			continue;
		m->resent = 1;
		m->due = 0;
		for (struct outmail *o = m->chunks; o; o = o->next)
			if (!o->stored)
				o->sent = 0;
		sealed = 1;
	}
	for (struct outmsg *m = c->out; m; m = m->next) {
		struct conv *v = client_find_conv(c, m->peer);
		if (!v || v->state != C_ESTABLISHED || !v->session)
			continue;
		if (m->state != OM_WAITING || v->blocked)
			continue;
		if (seal_outmsg(c, v, m) == CHAT_OK)
			sealed = 1;
		else
			v->blocked = 1; /* keep the order: try again later */
	}
	return sealed;
}

void client_pump(struct chat_client *c)
{
	if (client_pump_seal(c) && c->conn)
		client_commit(c);
	client_retry_arm(c);
}

static void free_held(struct conv *v)
{
	while (v->held) {
		struct held *h = v->held;
		v->held = h->next;
		chat_wipe(h->text, h->len);
		free(h);
	}
	v->nheld = 0;
}

/* A new session: what the peer never confirmed goes again, numbered afresh
 * in the new session (the peer starts counting from 1 as well). */
void client_deliver_new_session(struct chat_client *c, struct conv *v)
{
	uint64_t seq = 0;

	for (struct outmsg **pp = &c->out; *pp;) {
		struct outmsg *m = *pp;
		if (strcmp(m->peer, v->peer)) {
			pp = &m->next;
			continue;
		}
		if (m->kind == E_RECEIPT) { /* about the old session's messages */
			*pp = m->next;
			client_outmsg_free(m);
			continue;
		}
		client_outmsg_drop_copy(m);
		m->seq = ++seq;
		m->state = OM_WAITING;
		m->due = 0;
		m->tries = 0;
		pp = &m->next;
	}
	c->out_tail = &c->out;
	while (*c->out_tail)
		c->out_tail = &(*c->out_tail)->next;
	v->tx_seq = seq;
	v->rx_next = 1;
	free_held(v);
	v->gap_since = 0;
	v->nmissing = 0;
	v->nrcpt = 0;
	client_store_mark(c);
}

/* ---- showing after the save */

void client_show_later(struct chat_client *c, int kind, const struct conv *v, int history,
                       size_t len, const char *text)
{
	struct later *l = malloc(sizeof(*l) + len);

	if (!l) { /* showing now beats not showing */
		client_emit(c, kind, v->peer, NULL, v->suite->desc->name, NULL, len, text, 0);
		return;
	}
	l->next = NULL;
	l->kind = kind;
	snprintf(l->peer, sizeof(l->peer), "%s", v->peer);
	l->suite = v->suite;
	l->history = history;
	l->len = len;
	memcpy(l->text, text, len);
	*c->later_tail = l;
	c->later_tail = &l->next;
	client_round_soon(c);
}

void client_say_later(struct chat_client *c, int kind, const struct conv *v, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	client_show_later(c, kind, v, 0, strlen(text), text);
}

void client_show_pending(struct chat_client *c)
{
	while (c->later) {
		struct later *l = c->later;
		c->later = l->next;
		int insecure = (l->suite->desc->flags & CHAT_FLAG_INSECURE) != 0;
		if (l->kind == CHAT_EV_DELIVERED) {
			uint64_t seq = 0;
			memcpy(&seq, l->text, sizeof(seq));
			client_emit_seq(c, CHAT_EV_DELIVERED, l->peer, l->suite->desc->name, seq,
			                insecure ? 15 : 0, "unauthenticated", insecure);
		} else {
			client_emit(c, l->kind, l->peer, NULL, l->suite->desc->name, NULL, l->len, l->text, 0);
			if (l->history)
				client_history(c, CHAT_SECLOG_RECEIVED, l->peer, l->len, l->text);
		}
		chat_wipe(l->text, l->len);
		free(l);
	}
	c->later_tail = &c->later;
}

/* ---- receiving */

static void confirm(struct chat_client *c, struct conv *v, uint64_t seq)
{
	if (v->nrcpt == v->rcpt_cap) {
		size_t cap = v->rcpt_cap ? v->rcpt_cap * 2 : 16;
		uint64_t *grown = realloc(v->rcpt, cap * sizeof(*grown));
		if (!grown)
			return; /* the sender seals it again; its duplicate is confirmed then */
		v->rcpt = grown;
		v->rcpt_cap = cap;
	}
	v->rcpt[v->nrcpt++] = seq;
	client_round_soon(c);
}

static void show_in_order(struct chat_client *c, struct conv *v, uint64_t seq, size_t len,
                          const char *text)
{
	client_show_later(c, CHAT_EV_MSG, v, 1, len, text);
	confirm(c, v, seq);
}

static void drain_held(struct chat_client *c, struct conv *v)
{
	while (v->held && v->held->seq <= v->rx_next) {
		struct held *h = v->held;
		v->held = h->next;
		v->nheld--;
		if (h->seq == v->rx_next) {
			show_in_order(c, v, h->seq, h->len, h->text);
			v->rx_next++;
		}
		chat_wipe(h->text, h->len);
		free(h);
	}
	v->gap_since = v->held ? now_ms(c) : 0;
	client_store_mark(c);
}

/* Stop waiting for rx_next .. (first held - 1): report them, go on. */
static void skip_gap(struct chat_client *c, struct conv *v)
{
	if (!v->held)
		return;
	uint64_t first = v->rx_next, last = v->held->seq - 1, n = last - first + 1;
	for (uint64_t s = first; s <= last && s - first < CHAT_MISSING_MAX; s++) {
		if (v->nmissing == CHAT_MISSING_MAX)
			memmove(v->missing, v->missing + 1, --v->nmissing * sizeof(v->missing[0]));
		v->missing[v->nmissing++] = s;
	}
	if (n == 1)
		client_say_later(c, CHAT_EV_WARNING, v, "1 message from %s is missing (#%llu): the relay "
		                 "or the network lost or held it; it is shown if it still comes", v->peer,
		                 (unsigned long long)first);
	else
		client_say_later(c, CHAT_EV_WARNING, v, "%llu messages from %s are missing (#%llu-#%llu): "
		                 "the relay or the network lost or held them; they are shown if they still "
		                 "come", (unsigned long long)n, v->peer, (unsigned long long)first,
		                 (unsigned long long)last);
	v->rx_next = v->held->seq;
	drain_held(c, v);
}

static int take_missing(struct conv *v, uint64_t seq)
{
	for (size_t i = 0; i < v->nmissing; i++) {
		if (v->missing[i] == seq) {
			memmove(v->missing + i, v->missing + i + 1, (--v->nmissing - i) * sizeof(v->missing[0]));
			return 1;
		}
	}
	return 0;
}

static void hold(struct chat_client *c, struct conv *v, uint64_t seq, size_t len, const char *text)
{
	struct held **pp = &v->held;

	while (*pp && (*pp)->seq < seq)
		pp = &(*pp)->next;
	if (*pp && (*pp)->seq == seq)
		return; /* a second copy of one already held */
	struct held *h = malloc(sizeof(*h) + len);
	if (!h) {
		client_fail(c, v->peer, "no-memory", "out of memory holding message #%llu from %s",
		            (unsigned long long)seq, v->peer);
		client_mail_problem(c, "out of memory");
		return;
	}
	h->seq = seq;
	h->len = len;
	memcpy(h->text, text, len);
	h->next = *pp;
	*pp = h;
	v->nheld++;
	if (!v->gap_since)
		v->gap_since = now_ms(c);
	client_store_mark(c);
	if (v->nheld > HELD_MAX)
		skip_gap(c, v);
	client_retry_arm(c);
}

static void on_receipt(struct chat_client *c, struct conv *v, size_t len, const char *body)
{
	const uint8_t *p = (const uint8_t *)body;

	if (len < 2 || len != 2 + 8 * (size_t)chat_be16_get(p)) {
		client_fail(c, v->peer, "malformed", "malformed receipt from %s; ignored", v->peer);
		client_mail_problem(c, "malformed receipt");
		return;
	}
	size_t n = chat_be16_get(p);
	uint64_t top = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t seq = chat_be64_get(p + 2 + 8 * i);
		if (seq > top)
			top = seq;
		for (struct outmsg *m = c->out; m; m = m->next) {
			if (m->kind != E_TEXT || m->seq != seq || strcmp(m->peer, v->peer))
				continue;
			client_show_later(c, CHAT_EV_DELIVERED, v, 0, sizeof(seq), (const char *)&seq);
			client_outmsg_remove(c, m);
			break;
		}
		client_deliver_expect_before(c, v->peer, seq);
	}
	/* A later message was shown: an earlier one still unconfirmed was lost
	 * or held on the way, even if the relay said it is queued. */
	for (struct outmsg *m = c->out; m; m = m->next)
		if (m->kind == E_TEXT && m->seq < top && !m->due && !strcmp(m->peer, v->peer))
			client_deliver_expect(c, m);
	client_retry_arm(c);
}

void client_deliver_received(struct chat_client *c, struct conv *v, int kind, uint64_t seq,
                             size_t len, const char *text)
{
	if (kind == E_RECEIPT) {
		on_receipt(c, v, len, text);
		return;
	}
	if (seq == 0) {
		client_fail(c, v->peer, "malformed", "message from %s without a number; ignored", v->peer);
		client_mail_problem(c, "message without a number");
		return;
	}
	if (v->rx_next == 0)
		v->rx_next = 1;
	if (seq < v->rx_next) {
		if (take_missing(v, seq)) {
			client_say_later(c, CHAT_EV_WARNING, v, "message #%llu from %s arrives late, after "
			                 "later ones were shown:", (unsigned long long)seq, v->peer);
			show_in_order(c, v, seq, len, text);
		} else {
			confirm(c, v, seq); /* our receipt may have been lost */
			client_say_later(c, CHAT_EV_INFO, v, "a second copy of message #%llu from %s was "
			                 "not shown again", (unsigned long long)seq, v->peer);
		}
		client_store_mark(c);
		return;
	}
	if (seq > v->rx_next) {
		hold(c, v, seq, len, text);
		return;
	}
	show_in_order(c, v, seq, len, text);
	v->rx_next++;
	drain_held(c, v);
}

/* ---- receipts out */

void client_queue_receipts(struct chat_client *c)
{
	for (struct conv *v = c->convs; v; v = v->next) {
		size_t done = 0;
		while (done < v->nrcpt) {
			size_t n = v->nrcpt - done < RECEIPT_MAX ? v->nrcpt - done : RECEIPT_MAX;
			uint8_t body[2 + 8 * RECEIPT_MAX];
			chat_be16_put(body, (uint16_t)n);
			for (size_t i = 0; i < n; i++)
				chat_be64_put(body + 2 + 8 * i, v->rcpt[done + i]);
			if (!client_outmsg_new(c, v->peer, E_RECEIPT, 0, 2 + 8 * n, body))
				break;
			done += n;
		}
		v->nrcpt = 0;
	}
}

/* ---- retries */

static uint64_t backoff(unsigned tries, uint64_t base, uint64_t max)
{
	uint64_t d = base;

	while (tries-- > 1 && d < max)
		d *= 2;
	return d < max ? d : max;
}

/* The relay refused this copy: the same copy again after a while (sealing
 * it again would leave a gap where the suite counted it); later ones wait. */
int client_deliver_refused(struct chat_client *c, struct outmsg *m)
{
	if (m->state == OM_REFUSED && !m->resent)
		return 0; /* another chunk of a copy that waits already */
	m->tries++;
	m->state = OM_REFUSED;
	m->resent = 0;
	m->due = now_ms(c) + backoff(m->tries, 1000, REFUSED_WAIT_MAX_MS);
	client_store_mark(c);
	client_retry_arm(c);
	return 1;
}

void client_deliver_unblocked(struct chat_client *c, const char *peer)
{
	for (struct outmsg *m = c->out; m; m = m->next)
		if (m->state == OM_REFUSED && !m->resent && !strcmp(m->peer, peer))
			m->due = 1; /* the relay takes them again */
	client_pump(c);
}

/* The relay says the peer could not use it (unreadable, expired): again
 * now the first time; after that, waiting 1 s doubling to 30 s (a peer who
 * lost the session answers every copy "unreadable": without the wait the
 * two clients would trade copies as fast as the link goes). */
void client_deliver_reseal(struct chat_client *c, struct outmsg *m)
{
	client_outmsg_drop_copy(m);
	m->tries++;
	m->unreadable++;
	client_store_mark(c);
	if (m->unreadable <= 1) {
		m->state = OM_WAITING;
		m->due = 0;
		client_pump(c);
		return;
	}
	if (m->unreadable == 3)
		client_say(c, CHAT_EV_WARNING, m->peer, "%s cannot open messages of this session (did they "
		           "lose their keystore?): /close %s, then /talk %s, starts a new one", m->peer,
		           m->peer, m->peer);
	m->state = OM_STORED; /* no copy: the retry timer seals it again when due */
	m->due = now_ms(c) + backoff(m->unreadable - 1, 1000, REFUSED_WAIT_MAX_MS);
	client_retry_arm(c);
}

/* Stored for a peer who is online, or fetched: expect a receipt soon. */
void client_deliver_expect(struct chat_client *c, struct outmsg *m)
{
	if (m->kind != E_TEXT || m->state != OM_STORED)
		return;
	m->due = now_ms(c) + backoff(m->tries + 1, ACK_WAIT_MS, ACK_WAIT_MAX_MS);
	client_retry_arm(c);
}

/* A later message to peer was fetched or confirmed: the peer is there, so
 * the earlier ones still unconfirmed should be too (their copies may have
 * been lost on the way, and nobody else would say so). */
void client_deliver_expect_before(struct chat_client *c, const char *peer, uint64_t seq)
{
	for (struct outmsg *m = c->out; m; m = m->next)
		if (m->kind == E_TEXT && m->seq < seq && !m->due && !strcmp(m->peer, peer))
			client_deliver_expect(c, m);
}

static long long retry_timer(struct chat_loop *loop, void *arg)
{
	struct chat_client *c = arg;
	uint64_t now = now_ms(c);

	(void)loop;
	c->retry_timer = NULL;
	c->retry_at = 0;
	for (struct outmsg *m = c->out; m; m = m->next) {
		if (!m->due || m->due > now || m->state == OM_REFUSED) /* refused: client_pump */
			continue;
		m->due = 0;
		if (m->state == OM_STORED) { /* never confirmed: the copy is lost or was not opened */
			client_outmsg_drop_copy(m);
			m->tries++;
		}
		m->state = OM_WAITING;
		client_store_mark(c);
	}
	for (struct conv *v = c->convs; v; v = v->next)
		if (v->gap_since && now - v->gap_since >= GAP_WAIT_MS)
			skip_gap(c, v);
	client_held_mail_expire(c, now);
	if (c->later || c->ks_dirty)
		client_round_soon(c);
	client_pump(c);
	return -1;
}

void client_retry_arm(struct chat_client *c)
{
	uint64_t at = 0;

	for (struct outmsg *m = c->out; m; m = m->next) {
		if (!m->due || (at && m->due >= at))
			continue;
		/* A refused copy behind another one has no time of its own. */
		if (m->state == OM_REFUSED && (m->resent || refused_head(c, m->peer) != m))
			continue;
		at = m->due;
	}
	for (struct conv *v = c->convs; v; v = v->next)
		if (v->gap_since && (!at || v->gap_since + GAP_WAIT_MS < at))
			at = v->gap_since + GAP_WAIT_MS;
	uint64_t held = client_held_mail_due(c);
	if (held && (!at || held < at))
		at = held;
	if (at == c->retry_at && (c->retry_timer || !at))
		return;
	if (c->retry_timer)
		chat_loop_timer_cancel(c->loop, c->retry_timer);
	c->retry_timer = NULL;
	c->retry_at = at;
	if (at) {
		uint64_t now = now_ms(c);
		chat_loop_timer_add(c->loop, at > now ? at - now : 0, retry_timer, c, &c->retry_timer);
	}
}

void client_conv_free_rx(struct conv *v)
{
	free_held(v);
	free(v->rcpt);
	v->rcpt = NULL;
	v->nrcpt = v->rcpt_cap = 0;
}

void client_free_deliver(struct chat_client *c)
{
	if (c->retry_timer)
		chat_loop_timer_cancel(c->loop, c->retry_timer);
	c->retry_timer = NULL;
	while (c->later) {
		struct later *l = c->later;
		c->later = l->next;
		chat_wipe(l->text, l->len);
		free(l);
	}
	c->later_tail = &c->later;
	while (c->out) {
		struct outmsg *m = c->out;
		c->out = m->next;
		client_outmsg_free(m);
	}
	c->out_tail = &c->out;
}
