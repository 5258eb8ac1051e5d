/* Rooms: live only (nothing is stored for them).  The joiner starts a
 * pairwise session with every member (INIT carries the suite choice and the
 * first handshake message); each room message is sealed once per member. */
#include "client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct croom *client_find_croom(struct chat_client *c, const char *name)
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

int client_shares_room(struct chat_client *c, const char *peer)
{
	for (struct croom *r = c->rooms; r; r = r->next)
		if (croom_has(r, peer))
			return 1;
	return 0;
}

int client_out_room_payload(struct chat_client *c, struct conv *v, const char *room, size_t len,
                            const uint8_t *payload)
{
	client_begin(c, CHAT_MSG_ROOM_SEND);
	chat_put_str8(&c->wb, room);
	chat_put_u16(&c->wb, 1);
	chat_put_str8(&c->wb, v->peer);
	chat_put_u32(&c->wb, (uint32_t)len);
	chat_put_bytes(&c->wb, len, payload);
	return client_flush(c);
}

/* INIT: a room member starts a session with us. */
void client_on_init(struct chat_client *c, const char *from, size_t len, const uint8_t *p)
{
	struct chat_msg fake;
	char err[256];
	size_t n;

	/* Reuse the HELLO parser for "suite + suites": build a fake message view. */
	if (len < 2 || (n = p[0]) + 1 >= len || n > CHAT_NAME_MAX) {
		client_fail(c, from, "malformed", "malformed session start from %s", from);
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
		client_fail(c, from, "malformed", "malformed session start from %s", from);
		return;
	}
	hello[0] = CHAT_MSG_HELLO;
	hello[1] = CHAT_PROTO_VERSION;
	memcpy(hello + 2, q, off);
	if (chat_msg_parse(off + 2, hello, &fake, sizeof(err), err) != CHAT_OK) {
		client_fail(c, from, "malformed", "malformed session start from %s: %s", from, err);
		return;
	}
	if (!client_shares_room(c, from)) {
		client_fail(c, from, "unexpected", "%s started a session but shares no room with you; ignored", from);
		return;
	}
	struct conv *v = client_find_conv(c, from);
	if (v && v->relay_link && v->state != C_ESTABLISHED) {
		client_fail(c, from, "unexpected", "%s started a room session during a 1:1 offer; ignored", from);
		return;
	}
	if (!client_usable(c, suite, from)) {
		struct conv tmp = { 0 };
		snprintf(tmp.peer, sizeof(tmp.peer), "%s", from);
		client_send_abort(c, &tmp, "no common suite");
		client_fail(c, from, "no-common-suite", "%s wants suite %s, which you do not allow", from, suite);
		return;
	}
	if (!v && !(v = client_new_conv(c, from, C_HANDSHAKE)))
		return;
	v->initiator = 0;
	v->suite = client_suite_by_name(c, suite);
	v->ntheirs = fake.nsuites;
	memcpy(v->theirs, fake.suites, sizeof(v->theirs));
	if (client_start_session(c, v)) {
		client_end_conv(c, v, "no session");
		return;
	}
	client_step(c, v, rest - off, q + off);
}

/* A member of a room we are in: make sure we have a session with them. */
static void room_session(struct chat_client *c, const char *peer, size_t ntheirs,
                         char theirs[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1])
{
	struct conv *v = client_find_conv(c, peer);
	const char *suite = NULL;

	if (v)
		return; /* established, or an offer or handshake is under way */
	for (size_t i = 0; i < c->neff && !suite; i++)
		for (size_t j = 0; j < ntheirs && !suite; j++)
			if (strcmp(c->eff[i], theirs[j]) == 0 && client_usable(c, c->eff[i], peer))
				suite = c->eff[i];
	if (!suite) {
		client_fail(c, peer, "no-common-suite", "no suite in common with room member %s", peer);
		return;
	}
	if (!(v = client_new_conv(c, peer, C_HANDSHAKE)))
		return;
	v->initiator = 1;
	v->suite = client_suite_by_name(c, suite);
	v->ntheirs = ntheirs;
	memcpy(v->theirs, theirs, sizeof(v->theirs));
	if (client_start_session(c, v)) {
		client_end_conv(c, v, "no session");
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
		client_handshake_failed(c, v, rc, &dst);
		free(buf);
		return;
	}
	v->hs_steps++;
	client_begin(c, CHAT_MSG_ROUTE);
	chat_put_str8(&c->wb, peer);
	chat_put_u8(&c->wb, P_INIT);
	chat_put_str8(&c->wb, suite);
	client_put_suites(c);
	chat_put_bytes(&c->wb, dst.len, dst.data);
	client_flush(c);
	chat_wipe(buf, cap);
	free(buf);
	if (rc == CHAT_HS_ESTABLISHED)
		client_established(c, v);
}

void client_on_members(struct chat_client *c, const struct chat_msg *m)
{
	struct croom *r = calloc(1, sizeof(*r));
	struct chat_iter it = m->list;
	char name[CHAT_NAME_MAX + 1], members[2048] = "";
	char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	size_t n;

	if (!r)
		return;
	snprintf(r->name, sizeof(r->name), "%s", m->room);
	r->next = c->rooms;
	c->rooms = r;
	while (chat_iter_who(&it, name, &n, suites)) {
		if (croom_add(r, name))
			break;
		size_t used = strlen(members);
		snprintf(members + used, sizeof(members) - used, "%s%s", used ? " " : "", name);
	}
	snprintf(c->current, sizeof(c->current), "#%s", m->room);
	client_emit(c, CHAT_EV_JOINED, NULL, m->room, NULL, NULL, strlen(members), members, 0);
	/* We joined: we start a session with every member we lack one with. */
	it = m->list;
	while (chat_iter_who(&it, name, &n, suites))
		room_session(c, name, n, suites);
}

void client_on_room_event(struct chat_client *c, const struct chat_msg *m)
{
	struct croom *r = client_find_croom(c, m->room);

	if (!r)
		return;
	if (m->flag == 1 && !croom_has(r, m->name)) {
		if (croom_add(r, m->name))
			return;
		client_emit(c, CHAT_EV_ROOM_JOIN, m->name, m->room, NULL, NULL, 0, NULL, 0);
	} else if (m->flag == 2) {
		for (size_t i = 0; i < r->n; i++) {
			if (!strcmp(r->members[i], m->name)) {
				memmove(r->members[i], r->members[r->n - 1], CHAT_NAME_MAX + 1);
				r->n--;
				break;
			}
		}
		client_emit(c, CHAT_EV_ROOM_LEAVE, m->name, m->room, NULL, NULL, 0, NULL, 0);
		struct conv *v = client_find_conv(c, m->name);
		if (v && !v->relay_link && !client_shares_room(c, m->name))
			client_end_conv(c, v, "they left the room");
	}
}

void client_on_room_deliver(struct chat_client *c, const struct chat_msg *m)
{
	if (!client_find_croom(c, m->room)) {
		client_fail(c, m->name, "unexpected", "message for room %s, which you are not in", m->room);
		return;
	}
	if (m->payload_len && m->payload[0] == P_DATA) {
		struct conv *v = client_find_conv(c, m->name);
		if (!v || v->state != C_ESTABLISHED) {
			client_fail(c, m->name, "unexpected", "room message from %s before a session; ignored", m->name);
			return;
		}
		client_on_data(c, v, m->room, m->payload_len - 1, m->payload + 1);
	} else {
		client_fail(c, m->name, "malformed", "room message from %s is not data; ignored", m->name);
	}
}

void client_send_room_text(struct chat_client *c, const char *room, size_t len, const char *text)
{
	struct croom *r = client_find_croom(c, room);
	size_t sent = 0, held = 0;

	if (!r) {
		client_fail(c, NULL, "not-member", "you are not in room %s: /join %s first", room, room);
		return;
	}
	if (len > c->cfg.max_message) {
		client_fail(c, NULL, "too-big", "message of %zu bytes exceeds client.max_message (%zu); not sent",
		            len, c->cfg.max_message);
		return;
	}
	for (size_t i = 0; i < r->n; i++) {
		struct conv *v = client_find_conv(c, r->members[i]);
		if (v && v->state == C_ESTABLISHED) {
			sent += client_seal_text(c, v, E_TEXT, 0, len, text, client_out_room_payload, room) == CHAT_OK;
		} else if (v) {
			held += !client_queue_text(c, v, room, len, text);
		} else {
			client_fail(c, r->members[i], "no-session", "no session with %s: message not sent to them",
			            r->members[i]);
		}
	}
	/* A 1:1 session used in the room moved on: keep its new state. */
	client_store_save(c);
	if (sent)
		client_emit(c, CHAT_EV_SENT, NULL, room, NULL, NULL, len, text, 0);
	if (!r->n)
		client_say(c, CHAT_EV_INFO, NULL, "nobody else is in room %s", room);
	else if (held)
		client_say(c, CHAT_EV_INFO, NULL, "message held for %zu member(s) of %s until their sessions are up",
		           held, room);
}

void client_join(struct chat_client *c, const char *room)
{
	if (client_find_croom(c, room)) {
		client_fail(c, NULL, "already", "you are already in room %s", room);
		return;
	}
	client_begin(c, CHAT_MSG_JOIN);
	chat_put_str8(&c->wb, room);
	client_flush(c);
}

void client_leave(struct chat_client *c, const char *room)
{
	struct croom *r = client_find_croom(c, room);

	if (!r) {
		client_fail(c, NULL, "not-member", "you are not in room %s", room);
		return;
	}
	client_begin(c, CHAT_MSG_LEAVE);
	chat_put_str8(&c->wb, room);
	client_flush(c);
	for (struct croom **pp = &c->rooms; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	for (size_t i = 0; i < r->n; i++) {
		struct conv *m = client_find_conv(c, r->members[i]);
		if (m && !m->relay_link && !client_shares_room(c, r->members[i]))
			client_end_conv(c, m, "you left the room");
	}
	free(r->members);
	free(r);
	if (c->current[0] == '#' && !strcmp(c->current + 1, room))
		c->current[0] = '\0';
	client_emit(c, CHAT_EV_LEFT, NULL, room, NULL, NULL, 0, NULL, 0);
}

void client_free_rooms(struct chat_client *c)
{
	while (c->rooms) {
		struct croom *r = c->rooms;
		c->rooms = r->next;
		free(r->members);
		free(r);
	}
}
