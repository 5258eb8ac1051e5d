/* The client engine's life cycle: the connection to the relay, events out to
 * the UI, and the dispatch of every relay message to the topic that handles
 * it (client_int.h lists the topics). */
#include "client_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* ---- events */

void client_emit(struct chat_client *c, int kind, const char *peer, const char *room,
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

void client_emit_seq(struct chat_client *c, int kind, const char *peer, const char *suite,
                     uint64_t seq, size_t len, const char *text, int insecure)
{
	struct chat_event ev = {
		.kind = kind, .peer = peer, .room = "", .suite = suite ? suite : "", .code = "",
		.text = text ? text : "", .text_len = text ? len : 0, .insecure = insecure, .seq = seq,
	};
	c->cb(c->ui, &ev);
}

void client_say(struct chat_client *c, int kind, const char *peer, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	client_emit(c, kind, peer, NULL, NULL, NULL, strlen(text), text, 0);
}

void client_fail(struct chat_client *c, const char *peer, const char *code, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	client_emit(c, CHAT_EV_ERROR, peer, NULL, NULL, code, strlen(text), text, 0);
}

void client_finish(struct chat_client *c, int status)
{
	if (c->done)
		return;
	c->done = 1;
	c->status = status;
	chat_loop_stop(c->loop);
}

/* ---- sending to the relay */

void client_begin(struct chat_client *c, int type)
{
	chat_wbuf_reset(&c->wb);
	chat_put_u8(&c->wb, (unsigned)type);
}

int client_flush(struct chat_client *c)
{
	int rc;

	if (!c->conn)
		return CHAT_ERR_CLOSED;
	if (c->wb.err) {
		client_fail(c, NULL, "too-big", "message too big for one frame (%s)",
		            chat_strerror(c->wb.err));
		rc = c->wb.err;
	} else {
		rc = chat_conn_send(c->conn, c->wb.len, c->wb.data);
	}
	/* Frames may carry verifiers and sealed data: leave nothing behind. */
	chat_wipe(c->wb.data, c->wb.len);
	return rc;
}

/* Our own configured list (client.suites), never the relay-narrowed one:
 * the peer binds exactly this into the handshake (client_conv.c binding()). */
void client_put_suites(struct chat_client *c)
{
	chat_put_u8(&c->wb, (unsigned)c->nsuites);
	for (size_t i = 0; i < c->nsuites; i++)
		chat_put_str8(&c->wb, c->suites[i]->desc->name);
}

int client_scratch(struct chat_client *c, size_t need)
{
	if (need <= c->scratch_cap)
		return 0;
	uint8_t *p = malloc(need);
	if (!p)
		return -1;
	if (c->scratch) {
		chat_wipe(c->scratch, c->scratch_cap);
		free(c->scratch);
	}
	c->scratch = p;
	c->scratch_cap = need;
	return 0;
}

int client_registered(const struct chat_client *c)
{
	return c->state == CS_READY && c->group != CHAT_GROUP_GUEST;
}

/* ---- who is who (from the last WHO_LIST) */

unsigned client_known_flags(const struct chat_client *c, const char *name, int *known)
{
	for (const struct known_user *k = c->known; k; k = k->next)
		if (!strcmp(k->name, name)) {
			*known = 1;
			return k->flags;
		}
	*known = 0;
	return 0;
}

static void remember(struct chat_client *c, const char *name, unsigned flags)
{
	struct known_user *k;

	for (k = c->known; k; k = k->next)
		if (!strcmp(k->name, name))
			break;
	if (!k) {
		if (!(k = calloc(1, sizeof(*k))))
			return;
		snprintf(k->name, sizeof(k->name), "%s", name);
		k->next = c->known;
		c->known = k;
	}
	k->flags = flags;
	/* A conversation with someone the relay calls a guest goes live. */
	struct conv *v = client_find_conv(c, name);
	if (v)
		v->peer_guest = !(flags & CHAT_WHO_REGISTERED);
}

static void on_who_list(struct chat_client *c, const struct chat_msg *m)
{
	struct chat_iter it = m->list;
	char name[CHAT_NAME_MAX + 1], list[600];
	char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	size_t n, count = 0;
	unsigned flags;

	while (chat_iter_who_flags(&it, name, &n, suites, &flags)) {
		client_csv(n, (const char (*)[CHAT_NAME_MAX + 1])suites, sizeof(list), list);
		if (flags & CHAT_WHO_FRIEND) {
			size_t used = strlen(list);
			snprintf(list + used, sizeof(list) - used, " friend");
		}
		client_emit(c, CHAT_EV_WHO, name, NULL, NULL, NULL, strlen(list), list, 0);
		remember(c, name, flags);
		count++;
	}
	client_say(c, CHAT_EV_WHO_END, NULL, "%zu", count);
}

/* ---- relay messages */

const char *client_perr_code(unsigned code)
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
	case CHAT_PERR_AUTH: return "auth";
	case CHAT_PERR_THROTTLED: return "throttled";
	case CHAT_PERR_FORBIDDEN: return "forbidden";
	case CHAT_PERR_NO_USER: return "no-user";
	case CHAT_PERR_EXISTS: return "exists";
	case CHAT_PERR_QUEUE_FULL: return "queue-full";
	case CHAT_PERR_STORAGE: return "storage";
	case CHAT_PERR_CHANNEL_BINDING: return "channel-binding";
	default: return "error";
	}
}

static void on_relay_error(struct chat_client *c, const struct chat_msg *m)
{
	if (c->state != CS_READY && client_login_error(c, m))
		return;
	struct conv *talked = m->ref == CHAT_MSG_TALK && m->name[0] ? client_find_conv(c, m->name) : NULL;
	if (talked)
		talked->talk_ping = 0; /* refused: its PONG acknowledges nothing */
	if (talked && client_reoffer_refused(c, talked, m->code))
		return; /* not back yet after the relay came back: asked again later */
	client_emit(c, CHAT_EV_ERROR, m->name, NULL, NULL, client_perr_code(m->code), strlen(m->text),
	            m->text, 0);
	if (c->state != CS_READY && (m->ref == CHAT_MSG_LOGIN || m->ref == CHAT_MSG_HELLO)) {
		client_finish(c, 1);
		return;
	}
	if (client_account_msg(c, m))
		return;
	struct conv *v = m->name[0] ? client_find_conv(c, m->name) : NULL;
	int ends = m->code == CHAT_PERR_NOT_CONNECTED || m->code == CHAT_PERR_NO_CONVERSATION ||
	           m->code == CHAT_PERR_FORBIDDEN || m->code == CHAT_PERR_NO_USER;
	if (m->ref == CHAT_MSG_SEND && !ends) {
		client_on_send_refused(c, m); /* kept, and sealed again later */
		return;
	}
	if (!v)
		return;
	/* A failed offer or delivery: the conversation cannot go on.  (An error
	 * for a payload reaches us late: it cannot end a newer offer.) */
	if ((m->ref == CHAT_MSG_TALK && v->state == C_OFFER_OUT) ||
	    ((m->ref == CHAT_MSG_ROUTE || m->ref == CHAT_MSG_ANSWER || m->ref == CHAT_MSG_SEND) &&
	     v->state >= C_HANDSHAKE &&
	     (m->code == CHAT_PERR_NOT_CONNECTED || m->code == CHAT_PERR_NO_CONVERSATION ||
	      m->code == CHAT_PERR_FORBIDDEN || m->code == CHAT_PERR_NO_USER))) {
		client_drop_outbox(c, v->peer, NULL);
		client_end_conv(c, v, m->text);
		client_store_save(c);
	}
}

/* ---- reconnecting (client.reconnect) */

/* The relay is gone: keep what can be resumed, and make the rest ready to
 * be offered again.  Conversations a registered user keeps in the keystore
 * resume as after a restart (the relay kept them); the others (guests, or
 * with a guest) are offered again after the login, with the text that was
 * waiting; rooms are joined again, their member sessions start anew. */
static int final_bye(const char *text);

static void relay_lost(struct chat_client *c)
{
	int keep = client_registered(c) && c->ks;

	free(c->rejoin);
	c->rejoin = NULL;
	c->nrejoin = 0;
	size_t nrooms = 0;
	for (struct croom *r = c->rooms; r; r = r->next)
		nrooms++;
	if (nrooms && (c->rejoin = calloc(nrooms, sizeof(*c->rejoin))) != NULL)
		for (struct croom *r = c->rooms; r; r = r->next)
			snprintf(c->rejoin[c->nrejoin++], sizeof(c->rejoin[0]), "%s", r->name);
	client_free_rooms(c);
	for (struct conv *v = c->convs, *next; v; v = next) {
		next = v->next;
		if (!v->relay_link) { /* a room member's session */
			v->npending = 0;
			client_end_conv(c, v, "the relay was lost");
			continue;
		}
		if (keep && !v->peer_guest) {
			v->restored = 1;
			continue;
		}
		/* Both ends lost it: the smaller name offers again, the other
		 * accepts that offer by itself (no glare of two offers). */
		client_drop_session(v);
		v->state = C_OFFER_OUT;
		v->initiator = 0;
		if (strcmp(c->name, v->peer) < 0)
			v->reoffer = 1;
		else
			v->await_reoffer = 1;
	}
	client_store_save(c);
}

/* A guest peer may log in again a moment after us: an offer they are not
 * there for yet is made again every REOFFER_MS, REOFFER_TRIES times. */
#define REOFFER_MS 2000
#define REOFFER_TRIES 15

static long long reoffer_tick(struct chat_loop *loop, void *arg)
{
	struct chat_client *c = arg;

	(void)loop;
	c->reoffer_timer = NULL;
	if (c->done || c->state != CS_READY)
		return -1;
	for (struct conv *v = c->convs; v; v = v->next)
		if (v->reoffer_due && v->state == C_OFFER_OUT) {
			v->reoffer_due = 0;
			client_send_talk(c, v);
		}
	return -1;
}

/* ERROR for an offer made again after reconnecting: 1 if it is handled
 * (the peer is not back yet: tried again later). */
int client_reoffer_refused(struct chat_client *c, struct conv *v, unsigned code)
{
	if (v->state != C_OFFER_OUT || v->reoffer_left <= 0 || code != CHAT_PERR_NOT_CONNECTED)
		return 0;
	if (v->reoffer_left-- == REOFFER_TRIES)
		client_say(c, CHAT_EV_INFO, v->peer, "%s is not back yet: offering again every %d s "
		           "for %d s", v->peer, REOFFER_MS / 1000, REOFFER_MS * REOFFER_TRIES / 1000);
	v->reoffer_due = 1;
	if (!c->reoffer_timer &&
	    chat_loop_timer_add(c->loop, REOFFER_MS, reoffer_tick, c, &c->reoffer_timer) != CHAT_OK)
		return 0;
	return 1;
}

static void after_reconnect(struct chat_client *c)
{
	c->reconnecting = 0;
	for (struct conv *v = c->convs; v; v = v->next) {
		if (!v->reoffer)
			continue;
		v->reoffer = 0;
		v->reoffer_left = REOFFER_TRIES;
		client_send_talk(c, v);
		client_say(c, CHAT_EV_INFO, v->peer, "the conversation with %s ended with the relay "
		           "link: offered again", v->peer);
	}
	for (size_t i = 0; i < c->nrejoin; i++)
		client_join(c, c->rejoin[i]);
	free(c->rejoin);
	c->rejoin = NULL;
	c->nrejoin = 0;
}

void client_logged_in(struct chat_client *c, const struct chat_msg *m)
{
	static const char *const groups[] = { "guest", "registered", "admin" };

	if (c->login_mode != LM_GUEST && c->state != CS_AUTH_OK) {
		client_fail(c, NULL, "relay-auth", "the relay %s logged you in without proving that it "
		            "knows your password (no valid AUTH_OK): it is not trusted", c->cfg.relay);
		client_finish(c, 1);
		return;
	}
	snprintf(c->name, sizeof(c->name), "%s", m->name);
	c->group = (int)m->group;
	c->state = CS_READY;
	client_emit(c, CHAT_EV_LOGGED_IN, m->name, NULL, NULL, NULL, strlen(groups[m->group % 3]),
	            groups[m->group % 3], 0);
	if (c->group != CHAT_GROUP_GUEST) {
		if (m->id + 1 > c->next_id)
			c->next_id = m->id + 1;
		client_store_after_login(c);
	}
	c->ever_ready = 1;
	c->relink_tries = 0;
	c->relink_ms = 0;
	if (c->reconnecting)
		after_reconnect(c);
	client_process_early_input(c);
}

/* What protects the link to the relay, said once per connection: a
 * transport that describes itself (TLS) is named; a plain one is a warning,
 * since everyone on the path sees and can change all but the sealed
 * end-to-end payloads. */
static void say_link(struct chat_client *c)
{
	char link[256];

	if (chat_conn_describe(c->conn, sizeof(link), link) == CHAT_OK)
		client_say(c, CHAT_EV_INFO, NULL, "link to the relay: %s", link);
	else
		client_say(c, CHAT_EV_WARNING, NULL, "the link to the relay is not encrypted: anyone on the path "
		           "sees your account name, whom you talk to and when, and can change the relay's "
		           "answers (end-to-end messages stay sealed); client.transport = tls encrypts it");
}

void client_dispatch(struct chat_client *c, const struct chat_msg *m)
{
	switch (m->type) {
	case CHAT_MSG_WELCOME:
		/* Only now is the relay known to be there: a TCP accept alone
		 * can be a stalled link or something that is not a relay. */
		client_emit(c, CHAT_EV_CONNECTED, NULL, NULL, NULL, NULL, strlen(chat_conn_peer(c->conn)),
		            chat_conn_peer(c->conn), 0);
		say_link(c);
		if (m->nsuites) { /* the relay's policy narrows what we may use */
			size_t k = 0;
			for (size_t i = 0; i < c->neff; i++)
				for (size_t j = 0; j < m->nsuites; j++)
					if (!strcmp(c->eff[i], m->suites[j]))
						memmove(c->eff[k++], c->eff[i], CHAT_NAME_MAX + 1);
			c->neff = k;
		}
		client_login_start(c);
		break;
	case CHAT_MSG_LOGGED_IN:
		client_logged_in(c, m);
		break;
	case CHAT_MSG_WHO_LIST:
		on_who_list(c, m);
		break;
	case CHAT_MSG_OFFERED:
		client_on_offered(c, m);
		break;
	case CHAT_MSG_ANSWERED:
		client_on_answered(c, m);
		break;
	case CHAT_MSG_DELIVER:
		client_on_payload(c, m->name, NULL, m->payload_len, m->payload);
		break;
	case CHAT_MSG_ROOM_DELIVER:
		client_on_room_deliver(c, m);
		break;
	case CHAT_MSG_MEMBERS:
		client_on_members(c, m);
		break;
	case CHAT_MSG_ROOM_EVENT:
		client_on_room_event(c, m);
		break;
	case CHAT_MSG_ROOM_LIST: {
		struct chat_iter it = m->list;
		char room[CHAT_NAME_MAX + 1], count[16];
		unsigned members;
		size_t n = 0;
		while (chat_iter_room(&it, room, &members)) {
			snprintf(count, sizeof(count), "%u", members);
			client_emit(c, CHAT_EV_ROOMS, NULL, room, NULL, NULL, strlen(count), count, 0);
			n++;
		}
		client_say(c, CHAT_EV_INFO, NULL, "%zu room(s)", n);
		break;
	}
	case CHAT_MSG_CLOSED:
		client_on_closed(c, m);
		break;
	case CHAT_MSG_ERROR:
		on_relay_error(c, m);
		break;
	case CHAT_MSG_BYE:
		if (final_bye(m->text))
			c->no_retry = 1;
		client_emit(c, CHAT_EV_BYE, NULL, NULL, NULL, NULL, strlen(m->text), m->text, 0);
		break;
	case CHAT_MSG_STORED:
		client_on_stored(c, m);
		break;
	case CHAT_MSG_RECEIPT:
		client_on_receipt(c, m);
		break;
	case CHAT_MSG_MAIL:
		client_on_mail(c, m);
		break;
	default:
		if (!client_account_msg(c, m))
			client_fail(c, NULL, "unexpected", "unexpected %s from the relay",
			            chat_msg_type_name(m->type));
	}
}

/* ---- keepalive: is the relay still there? */

/* The warning comes after two keepalive periods without an answer, if that
 * is before the link is given up. */
static uint64_t warn_after_ms(const struct chat_client *c)
{
	uint64_t warn = 2 * (uint64_t)c->cfg.keepalive_ms;

	return c->cfg.dead_after_ms > 0 && warn >= (uint64_t)c->cfg.dead_after_ms ? 0 : warn;
}

/* A silence of t ms counts only once our first PING of it has had t minus
 * one keepalive period to be answered: if this process was held up (a slow
 * machine, a debugger, PBKDF2), the relay's answers may be sitting unread,
 * and the relay deserves the same chance as after an on-time PING. */
static uint64_t counts_from(const struct chat_client *c, uint64_t t)
{
	uint64_t ka = (uint64_t)c->cfg.keepalive_ms;

	if (!ka)
		return c->last_rx + t;
	if (!c->first_ping)
		return UINT64_MAX; /* the PING comes first */
	uint64_t asked = c->first_ping + t - ka;
	return asked > c->last_rx + t ? asked : c->last_rx + t;
}

static long long live_check(struct chat_loop *loop, void *arg)
{
	struct chat_client *c = arg;
	uint64_t now = chat_loop_now_ms(), silent = now - c->last_rx;
	uint64_t ka = (uint64_t)c->cfg.keepalive_ms, dead = (uint64_t)c->cfg.dead_after_ms;
	uint64_t warn = warn_after_ms(c), next = UINT64_MAX;

	(void)loop;
	if (!c->conn || c->done || c->quitting) {
		c->live_timer = NULL;
		return -1;
	}
	if (ka && silent >= ka && (!c->last_ping || now - c->last_ping >= ka)) {
		client_begin(c, CHAT_MSG_PING);
		chat_put_u64(&c->wb, ++c->ping_token);
		if (client_flush(c) != CHAT_OK && !c->conn) {
			c->live_timer = NULL; /* the send closed the connection */
			return -1;
		}
		if (!c->first_ping)
			c->first_ping = now;
		c->last_ping = now;
	}
	if (dead && now >= counts_from(c, dead)) {
		char reason[128];
		snprintf(reason, sizeof(reason), "%s did not answer for %llu s (client.dead_after)",
		         c->answered ? "the relay" : "it accepted the connection but",
		         (unsigned long long)(silent / 1000));
		c->live_timer = NULL;
		chat_conn_close(c->conn, CHAT_ERR_TIMEOUT, reason); /* on_close says it */
		return -1;
	}
	if (warn && !c->warned && now >= counts_from(c, warn)) {
		c->warned = 1;
		client_say(c, CHAT_EV_WARNING, NULL, "relay not answering for %llu s",
		           (unsigned long long)(silent / 1000));
	}
	/* Sleep until the next thing to do; a frame arriving meanwhile only
	 * moves these later, so waking early is the worst that can happen. */
	if (ka)
		next = c->last_ping ? c->last_ping + ka : c->last_rx + ka;
	if (warn && !c->warned && counts_from(c, warn) < next)
		next = counts_from(c, warn);
	if (dead && counts_from(c, dead) < next)
		next = counts_from(c, dead);
	if (next == UINT64_MAX) {
		c->live_timer = NULL;
		return -1;
	}
	return next > now ? (long long)(next - now) : 1;
}

/* Any frame shows the relay is there. */
static void relay_heard(struct chat_client *c)
{
	uint64_t now = chat_loop_now_ms();

	c->answered = 1;
	if (c->warned)
		client_say(c, CHAT_EV_INFO, NULL, "relay answering again after %llu s",
		           (unsigned long long)((now - c->last_rx) / 1000));
	c->warned = 0;
	c->last_rx = now;
	c->first_ping = c->last_ping = 0;
}

static void live_start(struct chat_client *c)
{
	c->last_rx = chat_loop_now_ms();
	c->first_ping = c->last_ping = 0;
	c->warned = 0;
	if ((c->cfg.keepalive_ms > 0 || c->cfg.dead_after_ms > 0) &&
	    chat_loop_timer_add(c->loop, 0, live_check, c, &c->live_timer) != CHAT_OK)
		client_fail(c, NULL, "keepalive", "cannot start the keepalive timer: the link is "
		            "not watched");
}

static void live_stop(struct chat_client *c)
{
	if (c->live_timer)
		chat_loop_timer_cancel(c->loop, c->live_timer);
	c->live_timer = NULL;
}

static void on_frame(struct chat_conn *conn, size_t len, const uint8_t *frame, void *arg)
{
	struct chat_client *c = arg;
	struct chat_msg m;
	char err[256];

	(void)conn;
	if (c->done)
		return;
	relay_heard(c);
	if (chat_msg_parse(len, frame, &m, sizeof(err), err) != CHAT_OK) {
		client_fail(c, NULL, "malformed", "malformed message from the relay: %s", err);
		return;
	}
	if (m.type == CHAT_MSG_PING) { /* at once, in any state */
		client_begin(c, CHAT_MSG_PONG);
		chat_put_u64(&c->wb, m.id);
		client_flush(c);
		return;
	}
	if (m.type == CHAT_MSG_PONG) { /* relay_heard() was its point, or an offer's acknowledgement */
		client_talk_acked(c, m.id);
		return;
	}
	client_dispatch(c, &m);
	chat_wipe(&m.verifier, sizeof(m.verifier));
}

static void on_connect(struct chat_conn *conn, void *arg)
{
	struct chat_client *c = arg;

	if (c->timer) {
		chat_loop_timer_cancel(c->loop, c->timer);
		c->timer = NULL;
	}
	(void)conn;
	c->state = CS_HELLO;
	/* CHAT_EV_CONNECTED waits for WELCOME; until then the keepalive bounds
	 * the wait (client.dead_after), as it does the login after it. */
	live_start(c);
	client_begin(c, CHAT_MSG_HELLO);
	chat_put_u8(&c->wb, CHAT_PROTO_VERSION);
	client_put_suites(c);
	client_flush(c);
}

/* BYE reasons after which connecting again would be wrong or useless
 * (docs/PROTOCOL.md): the user is wanted elsewhere or not at all. */
static int final_bye(const char *text)
{
	static const char *const final[] = {
		"logged in from another connection", "your account was removed by an admin",
		"unsupported protocol version", "no suite this relay carries",
		"too many malformed requests",
	};

	for (size_t i = 0; i < sizeof(final) / sizeof(final[0]); i++)
		if (!strcmp(text, final[i]))
			return 1;
	return 0;
}

static void schedule_retry(struct chat_client *c);

static long long retry(struct chat_loop *loop, void *arg)
{
	struct chat_client *c = arg;
	char err[512];

	(void)loop;
	c->relink_timer = NULL;
	if (c->done || c->quitting)
		return -1;
	if (client_connect(c, sizeof(err), err) != CHAT_OK) {
		client_say(c, CHAT_EV_WARNING, NULL, "%s", err); /* as when the attempt fails later */
		schedule_retry(c);
	}
	return -1;
}

/* The next address, and when: at once to the next address of a round
 * that has not found a relay yet, else after 1 s doubling to 30 s (with
 * up to a quarter of jitter, so that a restarted relay is not met by all
 * its clients in the same millisecond). */
static void schedule_retry(struct chat_client *c)
{
	unsigned wait;
	uint8_t r[2];

	c->relay_idx = c->cfg.nrelays ? (c->relay_idx + 1) % c->cfg.nrelays : 0;
	c->relink_tries++;
	c->relink_ms = c->relink_ms ? (c->relink_ms >= 15000 ? 30000 : 2 * c->relink_ms) : 1000;
	wait = c->relink_ms;
	if (chat_os_random(sizeof(r), r) == CHAT_OK)
		wait -= (unsigned)(((r[0] << 8) | r[1]) % (wait / 4 + 1));
	client_say(c, CHAT_EV_WARNING, NULL, "reconnecting to %s in %u s (attempt %d; client.reconnect)",
	           c->cfg.relays ? c->cfg.relays[c->relay_idx] : c->cfg.relay,
	           (wait + 500) / 1000, c->relink_tries);
	if (chat_loop_timer_add(c->loop, wait, retry, c, &c->relink_timer) != CHAT_OK) {
		client_fail(c, NULL, "connect", "cannot start the reconnect timer");
		client_finish(c, 1);
	}
}

static void on_close(struct chat_conn *conn, int err, const char *reason, void *arg)
{
	struct chat_client *c = arg;
	int was_ready = c->state == CS_READY;

	c->conn = NULL;
	live_stop(c);
	if (c->quitting && err == CHAT_OK) {
		client_finish(c, 0);
		return;
	}
	if (c->done)
		return;
	/* The relay gave up waiting for the login (relay.login_timeout, counted
	 * from the connect) while a person typed the password: it goes over a
	 * new connection once typed; one just typed goes over one at once. */
	if (c->state == CS_NEED_PW && !c->quitting) {
		client_say(c, CHAT_EV_INFO, NULL, "the relay closed the connection (%s); the password "
		           "will be sent over a new one", reason);
		return;
	}
	if ((c->state == CS_AUTH || c->state == CS_AUTH_FINAL) && c->cfg.interactive && c->pw_typed &&
	    c->pw_relinked != c->pw_typed && !c->quitting) {
		char e[512];
		c->pw_relinked = c->pw_typed; /* once per password: no loop with a relay that always closes */
		client_say(c, CHAT_EV_INFO, NULL, "the relay closed the connection during the login (%s); "
		           "logging in again over a new one", reason);
		if (client_connect(c, sizeof(e), e) == CHAT_OK)
			return;
		client_fail(c, NULL, "connect", "%s", e);
		client_finish(c, 1);
		return;
	}
	/* Not a word from the relay yet: connecting failed (no "connected" was said). */
	char plain[8];
	if (c->state == CS_HELLO && !c->answered &&
	    (err == CHAT_ERR_CLOSED || err == CHAT_ERR_RESET || err == CHAT_ERR_MALFORMED) && conn &&
	    chat_conn_describe(conn, sizeof(plain), plain) == CHAT_ERR_UNSUPPORTED)
		client_fail(c, NULL, "connect", "cannot connect to relay %s: %s before answering HELLO "
		            "(does it expect TLS? then set client.transport = tls)", c->cfg.relay, reason);
	else if (c->reconnecting && (c->state == CS_CONNECTING || !c->answered))
		client_say(c, CHAT_EV_WARNING, NULL, "cannot connect to relay %s: %s", c->cfg.relay, reason);
	else if (c->state == CS_CONNECTING || !c->answered)
		client_fail(c, NULL, "connect", "cannot connect to relay %s: %s", c->cfg.relay, reason);
	else
		client_fail(c, NULL, "relay-lost", "lost the relay %s: %s", c->cfg.relay, reason);
	/* Connect again: after a login (client.reconnect), or to the next
	 * address while the first round has not reached any relay. */
	if (c->no_retry || c->quitting) {
		client_finish(c, 1);
		return;
	}
	if (c->cfg.reconnect && (c->ever_ready || c->reconnecting)) {
		if (was_ready || !c->reconnecting)
			relay_lost(c);
		c->reconnecting = 1;
		c->state = CS_CONNECTING;
		schedule_retry(c);
		return;
	}
	if (!c->ever_ready && !c->answered && c->relay_idx + 1 < c->cfg.nrelays) {
		char e[512];
		c->relay_idx++;
		if (client_connect(c, sizeof(e), e) == CHAT_OK)
			return;
		client_fail(c, NULL, "connect", "%s", e);
	}
	client_finish(c, 1);
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
	.on_frame = on_frame,
	.on_close = on_close,
	.on_connect = on_connect,
};

/* ---- input */

void client_process_early_input(struct chat_client *c)
{
	while (c->early && !c->done && c->state == CS_READY) {
		struct input_line *l = c->early;
		c->early = l->next;
		if (!c->early)
			c->early_tail = &c->early;
		client_process_line(c, l->len, l->text);
		chat_wipe(l->text, l->len);
		free(l);
	}
}

void chat_client_input(struct chat_client *c, size_t len, const char *line)
{
	if (c->done)
		return;
	if (c->state == CS_NEED_PW) {
		client_password_typed(c, len, line);
		return;
	}
	/* Waiting for the relay to come back: /quit cannot wait for it. */
	if (c->reconnecting && c->state != CS_READY && len == 5 && !memcmp(line, "/quit", 5)) {
		chat_client_quit(c);
		return;
	}
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
	client_process_line(c, len, line);
}

int chat_client_wants_password(const struct chat_client *c)
{
	return c->state == CS_NEED_PW && !c->done;
}

void chat_client_input_quit(struct chat_client *c)
{
	if (chat_client_wants_password(c))
		chat_client_input(c, 0, "");
	else
		chat_client_input(c, 5, "/quit");
}

void chat_client_quit(struct chat_client *c)
{
	int kept = c->ks != NULL && client_registered(c);

	for (struct conv *v = c->convs; v; v = v->next) {
		if (!v->npending)
			continue;
		if (kept && v->relay_link && !v->peer_guest)
			client_say(c, CHAT_EV_INFO, v->peer, "%zu message(s) to %s are kept in %s and go "
			           "out when the conversation is up", v->npending, v->peer, c->ks_path);
		else
			client_fail(c, v->peer, "undelivered", "%zu message(s) to %s were not delivered: "
			            "you quit before the session was up", v->npending, v->peer);
	}
	client_round_end(c);
	client_store_save(c);
	c->quitting = 1;
	if (c->conn)
		chat_conn_close_after_flush(c->conn, "quit");
	else
		client_finish(c, 0);
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

/* ---- life cycle */

int chat_client_new(struct chat_loop *loop, const struct chat_client_config *cfg,
                    chat_event_cb cb, void *ui, struct chat_client **out, size_t errlen, char *err)
{
	struct chat_client *c;
	int rc;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return CHAT_ERR_NOMEM;
	c->loop = loop;
	c->cfg = *cfg;
	c->cfg.password = NULL; /* ours is c->password */
	c->cb = cb;
	c->ui = ui;
	c->early_tail = &c->early;
	c->out_tail = &c->out;
	c->later_tail = &c->later;
	c->next_id = 1;
	c->login_mode = cfg->password ? (cfg->register_account ? LM_REGISTER : LM_PASSWORD) : LM_GUEST;
	chat_wbuf_init(&c->wb, cfg->max_frame);
	if (cfg->password && client_keep_password(c, cfg->password_len, cfg->password)) {
		rc = CHAT_ERR_NOMEM;
		goto fail;
	}
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
	*out = c;
	return CHAT_OK;
fail:
	chat_client_free(c);
	return rc;
}

/* Connect to the current address (relay_idx of client.connect). */
int client_connect(struct chat_client *c, size_t errlen, char *err)
{
	struct chat_conn_limits lim = { .max_frame = c->cfg.max_frame, .out_limit = 64u << 20 };
	int rc;

	if (c->cfg.relays)
		c->cfg.relay = c->cfg.relays[c->relay_idx];
	c->state = CS_CONNECTING;
	c->answered = 0;
	c->neff = 0;
	for (size_t i = 0; i < c->nsuites; i++) /* WELCOME narrows them again */
		snprintf(c->eff[c->neff++], CHAT_NAME_MAX + 1, "%s", c->suites[i]->desc->name);
	rc = chat_conn_connect(c->loop, c->cfg.tp, c->cfg.tp_host, c->cfg.relay, &lim, &client_cbs, c,
	                       &c->conn);
	if (rc) {
		snprintf(err, errlen, "cannot connect to relay %s: %s", c->cfg.relay, chat_strerror(rc));
		return rc;
	}
	if (c->timer)
		chat_loop_timer_cancel(c->loop, c->timer);
	c->timer = NULL;
	chat_loop_timer_add(c->loop, (uint64_t)c->cfg.connect_timeout_ms, connect_timeout, c,
	                    &c->timer);
	return CHAT_OK;
}

int chat_client_set_password(struct chat_client *c, size_t len, const char *pw)
{
	if (client_keep_password(c, len, pw))
		return CHAT_ERR_NOMEM;
	c->login_mode = c->login_mode == LM_REGISTER ? LM_REGISTER : LM_PASSWORD;
	return CHAT_OK;
}

int chat_client_start(struct chat_client *c, size_t errlen, char *err)
{
	int rc;

	if (c->password && ((rc = client_store_open(c, errlen, err)) != CHAT_OK ||
	                    (rc = client_store_restore(c, errlen, err)) != CHAT_OK)) {
		/* Scripts see it as a line too. */
		client_fail(c, c->cfg.user, rc == CHAT_ERR_AUTH ? "auth" :
		            rc == CHAT_ERR_STATE ? "keystore-in-use" : "keystore", "%s", err);
		return rc;
	}
	return client_connect(c, errlen, err);
}

static void wipe_free(char **p, size_t *len)
{
	if (*p) {
		chat_wipe(*p, *len);
		free(*p);
	}
	*p = NULL;
	*len = 0;
}

void chat_client_free(struct chat_client *c)
{
	if (!c)
		return;
	if (c->timer)
		chat_loop_timer_cancel(c->loop, c->timer);
	if (c->relink_timer)
		chat_loop_timer_cancel(c->loop, c->relink_timer);
	if (c->reoffer_timer)
		chat_loop_timer_cancel(c->loop, c->reoffer_timer);
	free(c->rejoin);
	live_stop(c);
	if (c->conn) {
		c->quitting = 1;
		chat_conn_close(c->conn, CHAT_OK, "exiting");
	}
	client_free_mail(c);
	client_store_save(c);
	client_free_deliver(c);
	while (c->convs) {
		struct conv *v = c->convs;
		v->npending = 0; /* already reported */
		client_end_conv(c, v, "exiting");
	}
	client_free_rooms(c);
	while (c->early) {
		struct input_line *l = c->early;
		c->early = l->next;
		chat_wipe(l->text, l->len);
		free(l);
	}
	while (c->known) {
		struct known_user *k = c->known;
		c->known = k->next;
		free(k);
	}
	client_store_close(c);
	client_identity_free(c);
	if (c->scratch) {
		chat_wipe(c->scratch, c->scratch_cap);
		free(c->scratch);
	}
	wipe_free(&c->password, &c->password_len);
	wipe_free(&c->new_password, &c->new_password_len);
	chat_scram_client_wipe(&c->scram);
	chat_wbuf_free(&c->wb);
	free(c);
}
