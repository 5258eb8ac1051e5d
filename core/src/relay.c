#include "relay.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proto.h"

#define SUITE_TABLE_MAX 64

enum { ST_NEW, ST_HELLO, ST_LOGGED_IN };
enum { LINK_OFFER_OUT = 1, LINK_OFFER_IN, LINK_ACCEPTED };

struct client;

/* One conversation edge, kept on both ends. */
struct link {
	struct client *peer;
	uint8_t state;
};

struct room {
	struct room *next;
	struct client **members;
	size_t n, cap;
	char name[CHAT_NAME_MAX + 1];
};

struct client {
	struct chat_relay *r;
	struct chat_conn *conn;
	struct client *prev, *next; /* every client */
	struct client *hnext;       /* name hash chain (logged in only) */
	uint64_t last_active;
	struct link *links;
	struct room **rooms;
	uint16_t nlinks, caplinks;
	uint8_t nrooms, caprooms;
	uint8_t state, dead, bad, nsuites;
	uint8_t suites[CHAT_SUITES_MAX]; /* indices into the relay's suite table */
	char name[CHAT_NAME_MAX + 1];
};

struct chat_relay {
	struct chat_loop *loop;
	struct chat_relay_config cfg;
	struct client *clients;
	size_t nclients, nlogged;
	struct client **buckets;
	size_t nbuckets;
	struct room *rooms;
	struct chat_timer *idle_timer;
	char suite_names[SUITE_TABLE_MAX][CHAT_NAME_MAX + 1];
	size_t nsuite_names;
	struct chat_wbuf wb; /* reused for every outgoing message */
};

/* ---- helpers */

static uint64_t hash_name(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 1099511628211ull;
	return h;
}

static struct client *find_user(const struct chat_relay *r, const char *name)
{
	if (!r->nbuckets)
		return NULL;
	for (struct client *c = r->buckets[hash_name(name) & (r->nbuckets - 1)]; c; c = c->hnext)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static int insert_user(struct chat_relay *r, struct client *c)
{
	if (r->nlogged + 1 > r->nbuckets) {
		size_t n = r->nbuckets ? r->nbuckets * 2 : 64;
		struct client **b = calloc(n, sizeof(*b));
		if (!b)
			return CHAT_ERR_NOMEM;
		for (size_t i = 0; i < r->nbuckets; i++) {
			for (struct client *x = r->buckets[i], *next; x; x = next) {
				next = x->hnext;
				size_t h = hash_name(x->name) & (n - 1);
				x->hnext = b[h];
				b[h] = x;
			}
		}
		free(r->buckets);
		r->buckets = b;
		r->nbuckets = n;
	}
	size_t h = hash_name(c->name) & (r->nbuckets - 1);
	c->hnext = r->buckets[h];
	r->buckets[h] = c;
	r->nlogged++;
	return CHAT_OK;
}

static void remove_user(struct chat_relay *r, struct client *c)
{
	struct client **pp = &r->buckets[hash_name(c->name) & (r->nbuckets - 1)];

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == c) {
			*pp = c->hnext;
			r->nlogged--;
			return;
		}
	}
}

static int intern_suite(struct chat_relay *r, const char *name)
{
	for (size_t i = 0; i < r->nsuite_names; i++)
		if (strcmp(r->suite_names[i], name) == 0)
			return (int)i;
	if (r->nsuite_names == SUITE_TABLE_MAX)
		return -1;
	snprintf(r->suite_names[r->nsuite_names], CHAT_NAME_MAX + 1, "%s", name);
	return (int)r->nsuite_names++;
}

static int relay_carries(const struct chat_relay *r, const char *suite)
{
	if (!r->cfg.nsuites)
		return 1;
	for (size_t i = 0; i < r->cfg.nsuites; i++)
		if (strcmp(r->cfg.suites[i], suite) == 0)
			return 1;
	return 0;
}

static int has_suite(const struct client *c, int idx)
{
	for (size_t i = 0; i < c->nsuites; i++)
		if (c->suites[i] == idx)
			return 1;
	return 0;
}

/* "a, b, c" of a client's suites. */
static void suites_text(const struct chat_relay *r, const struct client *c, size_t cap, char *dst)
{
	size_t used = 0;

	dst[0] = '\0';
	for (size_t i = 0; i < c->nsuites && used < cap; i++) {
		int n = snprintf(dst + used, cap - used, "%s%s", i ? ", " : "",
		                 r->suite_names[c->suites[i]]);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static void put_client_suites(struct chat_relay *r, const struct client *c)
{
	chat_put_u8(&r->wb, c->nsuites);
	for (size_t i = 0; i < c->nsuites; i++)
		chat_put_str8(&r->wb, r->suite_names[c->suites[i]]);
}

static void begin(struct chat_relay *r, int type)
{
	chat_wbuf_reset(&r->wb);
	chat_put_u8(&r->wb, (unsigned)type);
}

/* Send the message in r->wb.  The target may be closed by this (its queue
 * overflowed): callers check c->dead before touching it again. */
static void flush_to(struct chat_relay *r, struct client *c)
{
	if (c->dead)
		return;
	if (r->wb.err) {
		chat_err("cannot build a message for %s: %s", c->name[0] ? c->name : chat_conn_peer(c->conn),
		         chat_strerror(r->wb.err));
		return;
	}
	chat_conn_send(c->conn, r->wb.len, r->wb.data);
}

static void send_error(struct chat_relay *r, struct client *c, unsigned code, int ref,
                       const char *subject, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void send_error(struct chat_relay *r, struct client *c, unsigned code, int ref,
                       const char *subject, const char *fmt, ...)
{
	char text[CHAT_TEXT_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	begin(r, CHAT_MSG_ERROR);
	chat_put_u16(&r->wb, code);
	chat_put_u8(&r->wb, (unsigned)ref);
	chat_put_str8(&r->wb, subject ? subject : "");
	chat_put_str16(&r->wb, text);
	flush_to(r, c);
}

static void send_bye(struct chat_relay *r, struct client *c, const char *reason)
{
	begin(r, CHAT_MSG_BYE);
	chat_put_str16(&r->wb, reason);
	flush_to(r, c);
	if (!c->dead)
		chat_conn_close_after_flush(c->conn, reason);
}

static const char *who(const struct client *c)
{
	return c->name[0] ? c->name : chat_conn_peer(c->conn);
}

/* ---- links (conversations) */

static struct link *find_link(struct client *c, const struct client *peer)
{
	for (size_t i = 0; i < c->nlinks; i++)
		if (c->links[i].peer == peer)
			return &c->links[i];
	return NULL;
}

static int add_link(struct client *c, struct client *peer, uint8_t state)
{
	if (c->nlinks == c->caplinks) {
		size_t cap = c->caplinks ? c->caplinks * 2u : 4u;
		if (cap > UINT16_MAX)
			return CHAT_ERR_NOSPACE;
		struct link *l = realloc(c->links, cap * sizeof(*l));
		if (!l)
			return CHAT_ERR_NOMEM;
		c->links = l;
		c->caplinks = (uint16_t)cap;
	}
	c->links[c->nlinks].peer = peer;
	c->links[c->nlinks].state = state;
	c->nlinks++;
	return CHAT_OK;
}

static void drop_link(struct client *c, const struct client *peer)
{
	for (size_t i = 0; i < c->nlinks; i++) {
		if (c->links[i].peer == peer) {
			c->links[i] = c->links[--c->nlinks];
			if (!c->nlinks) {
				free(c->links);
				c->links = NULL;
				c->caplinks = 0;
			}
			return;
		}
	}
}

static size_t pending_offers(const struct client *c)
{
	size_t n = 0;

	for (size_t i = 0; i < c->nlinks; i++)
		n += c->links[i].state == LINK_OFFER_OUT;
	return n;
}

/* ---- rooms */

static struct room *find_room(struct chat_relay *r, const char *name)
{
	for (struct room *rm = r->rooms; rm; rm = rm->next)
		if (strcmp(rm->name, name) == 0)
			return rm;
	return NULL;
}

static int in_room(const struct room *rm, const struct client *c)
{
	for (size_t i = 0; i < rm->n; i++)
		if (rm->members[i] == c)
			return 1;
	return 0;
}

static int share_room(const struct client *a, const struct client *b)
{
	for (size_t i = 0; i < a->nrooms; i++)
		if (in_room(a->rooms[i], b))
			return 1;
	return 0;
}

static void free_room_if_empty(struct chat_relay *r, struct room *rm)
{
	if (rm->n)
		return;
	for (struct room **pp = &r->rooms; *pp; pp = &(*pp)->next) {
		if (*pp == rm) {
			*pp = rm->next;
			break;
		}
	}
	free(rm->members);
	free(rm);
}

/* Copy of a room's members, so a send that closes one cannot disturb the loop. */
static struct client **snapshot(const struct room *rm, size_t *n)
{
	struct client **s = malloc((rm->n ? rm->n : 1) * sizeof(*s));

	*n = 0;
	if (!s)
		return NULL;
	memcpy(s, rm->members, rm->n * sizeof(*s));
	*n = rm->n;
	return s;
}

/* A send may close a member, whose departure may empty and free the room:
 * work from copies of the member list and the name. */
static void room_event(struct chat_relay *r, struct room *rm, const struct client *who_c, int event)
{
	size_t n;
	struct client **members = snapshot(rm, &n);
	char name[CHAT_NAME_MAX + 1];

	if (!members)
		return;
	memcpy(name, rm->name, sizeof(name));
	for (size_t i = 0; i < n; i++) {
		if (members[i] == who_c || members[i]->dead)
			continue;
		begin(r, CHAT_MSG_ROOM_EVENT);
		chat_put_str8(&r->wb, name);
		chat_put_str8(&r->wb, who_c->name);
		chat_put_u8(&r->wb, (unsigned)event);
		flush_to(r, members[i]);
	}
	free(members);
}

static void leave_room(struct chat_relay *r, struct client *c, struct room *rm)
{
	for (size_t i = 0; i < rm->n; i++) {
		if (rm->members[i] == c) {
			rm->members[i] = rm->members[--rm->n];
			break;
		}
	}
	for (size_t i = 0; i < c->nrooms; i++) {
		if (c->rooms[i] == rm) {
			c->rooms[i] = c->rooms[--c->nrooms];
			break;
		}
	}
	if (!c->nrooms) {
		free(c->rooms);
		c->rooms = NULL;
		c->caprooms = 0;
	}
	char name[CHAT_NAME_MAX + 1];
	memcpy(name, rm->name, sizeof(name));
	room_event(r, rm, c, 2);
	rm = find_room(r, name); /* it may be gone by now */
	if (rm)
		free_room_if_empty(r, rm);
}

/* ---- requests */

static void on_hello(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	char theirs[256] = "", ours[256] = "";

	if (c->state != ST_NEW) {
		send_error(r, c, CHAT_PERR_UNEXPECTED, m->type, NULL, "HELLO was already received");
		return;
	}
	if (m->version != CHAT_PROTO_VERSION) {
		send_error(r, c, CHAT_PERR_VERSION, m->type, NULL,
		           "protocol version %u is not supported (this relay speaks %d)", m->version,
		           CHAT_PROTO_VERSION);
		send_bye(r, c, "unsupported protocol version");
		return;
	}
	c->nsuites = 0;
	for (size_t i = 0; i < m->nsuites; i++) {
		size_t used = strlen(theirs);
		snprintf(theirs + used, sizeof(theirs) - used, "%s%s", i ? ", " : "", m->suites[i]);
		if (!relay_carries(r, m->suites[i]))
			continue;
		int idx = intern_suite(r, m->suites[i]);
		if (idx >= 0)
			c->suites[c->nsuites++] = (uint8_t)idx;
	}
	if (!c->nsuites) {
		for (size_t i = 0; i < r->cfg.nsuites; i++) {
			size_t used = strlen(ours);
			snprintf(ours + used, sizeof(ours) - used, "%s%s", i ? ", " : "", r->cfg.suites[i]);
		}
		send_error(r, c, CHAT_PERR_SUITE_REFUSED, m->type, NULL,
		           "this relay carries only %s; you allow only %s", ours, theirs);
		send_bye(r, c, "no suite this relay carries");
		return;
	}
	c->state = ST_HELLO;
	begin(r, CHAT_MSG_WELCOME);
	chat_put_u8(&r->wb, CHAT_PROTO_VERSION);
	chat_put_u8(&r->wb, (unsigned)r->cfg.nsuites);
	for (size_t i = 0; i < r->cfg.nsuites; i++)
		chat_put_str8(&r->wb, r->cfg.suites[i]);
	flush_to(r, c);
}

static void on_login(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	char suites[256];

	if (c->state == ST_NEW) {
		send_error(r, c, CHAT_PERR_UNEXPECTED, m->type, NULL, "send HELLO before LOGIN");
		return;
	}
	if (c->state == ST_LOGGED_IN) {
		send_error(r, c, CHAT_PERR_ALREADY, m->type, c->name, "already logged in as %s", c->name);
		return;
	}
	if (find_user(r, m->name)) {
		send_error(r, c, CHAT_PERR_NAME_TAKEN, m->type, m->name,
		           "the name %s is taken by another connected user", m->name);
		chat_info("client %s: login as %s refused: name taken", chat_conn_peer(c->conn), m->name);
		return;
	}
	snprintf(c->name, sizeof(c->name), "%s", m->name);
	if (insert_user(r, c) != CHAT_OK) {
		c->name[0] = '\0';
		send_error(r, c, CHAT_PERR_LIMIT, m->type, NULL, "relay out of memory");
		return;
	}
	c->state = ST_LOGGED_IN;
	suites_text(r, c, sizeof(suites), suites);
	chat_info("client %s logged in as %s (suites: %s)", chat_conn_peer(c->conn), c->name, suites);
	begin(r, CHAT_MSG_LOGGED_IN);
	chat_put_str8(&r->wb, c->name);
	flush_to(r, c);
}

/* Lists hold as many entries as fit in one frame and say how many they hold:
 * list_begin reserves the count, list_fits undoes an entry that overflowed,
 * list_end writes the count. */
static size_t list_begin(struct chat_relay *r, int type)
{
	begin(r, type);
	chat_put_u16(&r->wb, 0);
	return r->wb.len - 2;
}

static int list_fits(struct chat_relay *r, size_t before)
{
	if (!r->wb.err && r->wb.len <= r->cfg.limits.max_frame - 64)
		return 1;
	r->wb.len = before;
	r->wb.err = 0;
	return 0;
}

static void list_end(struct chat_relay *r, size_t count_at, size_t count)
{
	r->wb.data[count_at] = (uint8_t)(count >> 8);
	r->wb.data[count_at + 1] = (uint8_t)count;
}

static void on_who(struct chat_relay *r, struct client *c)
{
	size_t count = 0, count_at = list_begin(r, CHAT_MSG_WHO_LIST);

	for (struct client *x = r->clients; x && count < 65535; x = x->next) {
		if (x->state != ST_LOGGED_IN || x->dead)
			continue;
		size_t before = r->wb.len;
		chat_put_str8(&r->wb, x->name);
		put_client_suites(r, x);
		if (!list_fits(r, before))
			break;
		count++;
	}
	list_end(r, count_at, count);
	flush_to(r, c);
}

/* The target of a request naming a user: online, not oneself. */
static struct client *target(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct client *t = find_user(r, m->name);

	if (!t || t->dead) {
		send_error(r, c, CHAT_PERR_NOT_CONNECTED, m->type, m->name, "%s is not connected", m->name);
		return NULL;
	}
	if (t == c) {
		send_error(r, c, CHAT_PERR_SELF, m->type, m->name, "you cannot talk to yourself");
		return NULL;
	}
	return t;
}

static void on_talk(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct client *t = target(r, c, m);
	char mine[256], theirs[256];
	int common = 0;

	if (!t)
		return;
	struct link *l = find_link(c, t);
	if (l && l->state == LINK_ACCEPTED) {
		send_error(r, c, CHAT_PERR_ALREADY, m->type, t->name, "you are already talking with %s", t->name);
		return;
	}
	if (l && l->state == LINK_OFFER_OUT) {
		send_error(r, c, CHAT_PERR_ALREADY, m->type, t->name,
		           "you already offered %s a conversation; waiting for an answer", t->name);
		return;
	}
	for (size_t i = 0; i < c->nsuites && !common; i++)
		common = has_suite(t, c->suites[i]);
	if (!common) {
		suites_text(r, t, sizeof(theirs), theirs);
		suites_text(r, c, sizeof(mine), mine);
		send_error(r, c, CHAT_PERR_NO_COMMON_SUITE, m->type, t->name,
		           "%s offers only %s; you allow only %s", t->name, theirs, mine);
		return;
	}
	if (l && l->state == LINK_OFFER_IN) {
		/* They offered first: the client should answer that offer instead. */
		send_error(r, c, CHAT_PERR_ALREADY, m->type, t->name,
		           "%s already offered you a conversation: accept it", t->name);
		return;
	}
	if (pending_offers(c) >= r->cfg.max_pending_offers) {
		send_error(r, c, CHAT_PERR_LIMIT, m->type, t->name,
		           "too many unanswered offers (at most %zu)", r->cfg.max_pending_offers);
		return;
	}
	if (add_link(c, t, LINK_OFFER_OUT) || add_link(t, c, LINK_OFFER_IN)) {
		drop_link(c, t);
		send_error(r, c, CHAT_PERR_LIMIT, m->type, t->name, "relay out of memory");
		return;
	}
	begin(r, CHAT_MSG_OFFERED);
	chat_put_str8(&r->wb, c->name);
	put_client_suites(r, c);
	flush_to(r, t);
}

static void on_answer(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct client *t = target(r, c, m);

	if (!t)
		return;
	struct link *l = find_link(c, t);
	if (!l || l->state != LINK_OFFER_IN) {
		send_error(r, c, CHAT_PERR_NO_CONVERSATION, m->type, t->name,
		           "%s has not offered you a conversation", t->name);
		return;
	}
	if (m->flag) {
		int idx = intern_suite(r, m->suite);
		if (idx < 0 || !has_suite(c, idx) || !has_suite(t, idx)) {
			send_error(r, c, CHAT_PERR_NO_COMMON_SUITE, m->type, t->name,
			           "suite %s is not allowed by both you and %s", m->suite, t->name);
			return;
		}
		l->state = LINK_ACCEPTED;
		struct link *back = find_link(t, c);
		if (back)
			back->state = LINK_ACCEPTED;
		chat_info("%s and %s started a conversation (%s)", t->name, c->name, m->suite);
	} else {
		drop_link(c, t);
		drop_link(t, c);
	}
	begin(r, CHAT_MSG_ANSWERED);
	chat_put_str8(&r->wb, c->name);
	chat_put_u8(&r->wb, (unsigned)m->flag);
	chat_put_str8(&r->wb, m->flag ? m->suite : "");
	put_client_suites(r, c);
	chat_put_str16(&r->wb, m->text);
	flush_to(r, t);
}

static void on_route(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct client *t = target(r, c, m);

	if (!t)
		return;
	struct link *l = find_link(c, t);
	if (!(l && l->state == LINK_ACCEPTED) && !share_room(c, t)) {
		send_error(r, c, CHAT_PERR_NO_CONVERSATION, m->type, t->name,
		           "no conversation with %s: offer one first", t->name);
		return;
	}
	begin(r, CHAT_MSG_DELIVER);
	chat_put_str8(&r->wb, c->name);
	chat_put_bytes(&r->wb, m->payload_len, m->payload);
	flush_to(r, t);
}

static void on_close_conversation(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct client *t = find_user(r, m->name);

	if (!t || !find_link(c, t)) {
		send_error(r, c, CHAT_PERR_NO_CONVERSATION, m->type, m->name,
		           "no conversation with %s", m->name);
		return;
	}
	drop_link(c, t);
	drop_link(t, c);
	begin(r, CHAT_MSG_CLOSED);
	chat_put_str8(&r->wb, c->name);
	flush_to(r, t);
}

static void on_join(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct room *rm = find_room(r, m->room);

	if (rm && in_room(rm, c)) {
		send_error(r, c, CHAT_PERR_ALREADY, m->type, m->room, "you are already in room %s", m->room);
		return;
	}
	if (c->nrooms >= r->cfg.max_rooms_per_client) {
		send_error(r, c, CHAT_PERR_LIMIT, m->type, m->room, "you are in too many rooms (at most %zu)",
		           r->cfg.max_rooms_per_client);
		return;
	}
	if (rm && rm->n >= r->cfg.max_room_members) {
		send_error(r, c, CHAT_PERR_LIMIT, m->type, m->room, "room %s is full (%zu members)",
		           m->room, rm->n);
		return;
	}
	if (!rm) {
		rm = calloc(1, sizeof(*rm));
		if (!rm) {
			send_error(r, c, CHAT_PERR_LIMIT, m->type, m->room, "relay out of memory");
			return;
		}
		snprintf(rm->name, sizeof(rm->name), "%s", m->room);
		rm->next = r->rooms;
		r->rooms = rm;
	}
	if (rm->n == rm->cap) {
		size_t cap = rm->cap ? rm->cap * 2 : 4;
		struct client **mem = realloc(rm->members, cap * sizeof(*mem));
		if (!mem)
			goto nomem;
		rm->members = mem;
		rm->cap = cap;
	}
	if (c->nrooms == c->caprooms) {
		size_t cap = c->caprooms ? c->caprooms * 2u : 2u;
		struct room **rooms = realloc(c->rooms, cap * sizeof(*rooms));
		if (!rooms)
			goto nomem;
		c->rooms = rooms;
		c->caprooms = (uint8_t)(cap > 255 ? 255 : cap);
	}
	/* The member list goes to the joiner first, then everybody hears of it. */
	begin(r, CHAT_MSG_MEMBERS);
	chat_put_str8(&r->wb, rm->name);
	chat_put_u16(&r->wb, (unsigned)rm->n);
	for (size_t i = 0; i < rm->n; i++) {
		chat_put_str8(&r->wb, rm->members[i]->name);
		put_client_suites(r, rm->members[i]);
	}
	rm->members[rm->n++] = c;
	c->rooms[c->nrooms++] = rm;
	flush_to(r, c);
	room_event(r, rm, c, 1);
	return;
nomem:
	free_room_if_empty(r, rm);
	send_error(r, c, CHAT_PERR_LIMIT, m->type, m->room, "relay out of memory");
}

static void on_leave(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct room *rm = find_room(r, m->room);

	if (!rm || !in_room(rm, c)) {
		send_error(r, c, CHAT_PERR_NOT_MEMBER, m->type, m->room, "you are not in room %s", m->room);
		return;
	}
	leave_room(r, c, rm);
}

static void on_rooms(struct chat_relay *r, struct client *c)
{
	size_t count = 0, count_at = list_begin(r, CHAT_MSG_ROOM_LIST);

	for (struct room *rm = r->rooms; rm && count < 65535; rm = rm->next) {
		size_t before = r->wb.len;
		chat_put_str8(&r->wb, rm->name);
		chat_put_u16(&r->wb, (unsigned)rm->n);
		if (!list_fits(r, before))
			break;
		count++;
	}
	list_end(r, count_at, count);
	flush_to(r, c);
}

static void on_room_send(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct room *rm = find_room(r, m->room);
	struct chat_iter it = m->list;
	char name[CHAT_NAME_MAX + 1];
	const uint8_t *payload;
	size_t len;

	if (!rm || !in_room(rm, c)) {
		send_error(r, c, CHAT_PERR_NOT_MEMBER, m->type, m->room, "you are not in room %s", m->room);
		return;
	}
	while (chat_iter_target(&it, name, &payload, &len) && !c->dead) {
		struct client *t = find_user(r, name);
		if (!t || t == c || t->dead || !in_room(rm, t)) {
			send_error(r, c, CHAT_PERR_NOT_MEMBER, m->type, name, "%s is not in room %s",
			           name, rm->name);
			continue;
		}
		begin(r, CHAT_MSG_ROOM_DELIVER);
		chat_put_str8(&r->wb, rm->name);
		chat_put_str8(&r->wb, c->name);
		chat_put_bytes(&r->wb, len, payload);
		flush_to(r, t);
	}
}

static void on_frame(struct chat_conn *conn, size_t len, const uint8_t *frame, void *arg)
{
	struct client *c = arg;
	struct chat_relay *r = c->r;
	struct chat_msg m;
	char err[CHAT_TEXT_MAX];

	(void)conn;
	if (r->cfg.idle_timeout_ms > 0) /* a clock read per frame only when it is used */
		c->last_active = chat_loop_now_ms();
	if (chat_msg_parse(len, frame, &m, sizeof(err), err) != CHAT_OK) {
		c->bad++;
		chat_info("client %s: malformed request: %s", who(c), err);
		send_error(r, c, CHAT_PERR_MALFORMED, len ? frame[0] : 0, NULL, "%s", err);
		if (c->bad >= r->cfg.max_bad_requests && !c->dead)
			send_bye(r, c, "too many malformed requests");
		return;
	}
	if (m.type >= 0x80) {
		c->bad++;
		send_error(r, c, CHAT_PERR_UNEXPECTED, m.type, NULL, "%s is sent by the relay, not to it",
		           chat_msg_type_name(m.type));
		if (c->bad >= r->cfg.max_bad_requests && !c->dead)
			send_bye(r, c, "too many malformed requests");
		return;
	}
	if (m.type == CHAT_MSG_HELLO) {
		on_hello(r, c, &m);
		return;
	}
	if (m.type == CHAT_MSG_LOGIN) {
		on_login(r, c, &m);
		return;
	}
	if (c->state != ST_LOGGED_IN) {
		send_error(r, c, CHAT_PERR_NOT_LOGGED_IN, m.type, NULL, "log in before %s",
		           chat_msg_type_name(m.type));
		return;
	}
	switch (m.type) {
	case CHAT_MSG_WHO: on_who(r, c); break;
	case CHAT_MSG_TALK: on_talk(r, c, &m); break;
	case CHAT_MSG_ANSWER: on_answer(r, c, &m); break;
	case CHAT_MSG_ROUTE: on_route(r, c, &m); break;
	case CHAT_MSG_CLOSE: on_close_conversation(r, c, &m); break;
	case CHAT_MSG_JOIN: on_join(r, c, &m); break;
	case CHAT_MSG_LEAVE: on_leave(r, c, &m); break;
	case CHAT_MSG_ROOMS: on_rooms(r, c); break;
	case CHAT_MSG_ROOM_SEND: on_room_send(r, c, &m); break;
	default: break;
	}
}

/* ---- connection lifecycle */

static void client_free(void *arg)
{
	free(arg);
}

static void on_conn_close(struct chat_conn *conn, int err, const char *reason, void *arg)
{
	struct client *c = arg;
	struct chat_relay *r = c->r;

	if (err == CHAT_OK || err == CHAT_ERR_CLOSED)
		chat_info("client %s disconnected: %s", who(c), reason);
	else
		chat_warn("client %s dropped: %s", who(c), reason);
	(void)conn;
	c->dead = 1;
	if (c->prev)
		c->prev->next = c->next;
	else
		r->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	r->nclients--;
	if (c->state == ST_LOGGED_IN)
		remove_user(r, c);
	/* Everyone who talked with or was offered a talk by c hears it ended. */
	while (c->nlinks) {
		struct client *peer = c->links[c->nlinks - 1].peer;
		drop_link(c, peer);
		drop_link(peer, c);
		if (!peer->dead) {
			begin(r, CHAT_MSG_CLOSED);
			chat_put_str8(&r->wb, c->name);
			flush_to(r, peer);
		}
	}
	while (c->nrooms)
		leave_room(r, c, c->rooms[c->nrooms - 1]);
	free(c->links);
	free(c->rooms);
	c->links = NULL;
	c->rooms = NULL;
	/* Callers up the stack may still hold c: free it after this round. */
	if (chat_loop_defer(r->loop, client_free, c) != CHAT_OK)
		chat_err("cannot defer freeing a client; leaking it");
}

static const struct chat_conn_cbs relay_cbs = {
	.on_frame = on_frame,
	.on_close = on_conn_close,
};

static long long idle_check(struct chat_loop *loop, void *arg)
{
	struct chat_relay *r = arg;
	uint64_t now = chat_loop_now_ms();

	(void)loop;
	for (struct client *c = r->clients, *next; c; c = next) {
		next = c->next; /* closing c unlinks it; next stays valid */
		if (now - c->last_active >= (uint64_t)r->cfg.idle_timeout_ms) {
			send_bye(r, c, "idle for too long (relay.idle_timeout)");
			if (!c->dead)
				chat_conn_close(c->conn, CHAT_ERR_TIMEOUT, "idle for too long (relay.idle_timeout)");
		}
	}
	return 1000;
}

int chat_relay_new(struct chat_loop *loop, const struct chat_relay_config *cfg,
                   struct chat_relay **out)
{
	struct chat_relay *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (!r)
		return CHAT_ERR_NOMEM;
	r->loop = loop;
	r->cfg = *cfg;
	chat_wbuf_init(&r->wb, cfg->limits.max_frame);
	if (cfg->idle_timeout_ms > 0 &&
	    chat_loop_timer_add(loop, 1000, idle_check, r, &r->idle_timer) != CHAT_OK) {
		free(r);
		return CHAT_ERR_NOMEM;
	}
	*out = r;
	return CHAT_OK;
}

void chat_relay_free(struct chat_relay *r)
{
	if (!r)
		return;
	while (r->clients)
		chat_conn_close(r->clients->conn, CHAT_OK, "relay stopped");
	if (r->idle_timer)
		chat_loop_timer_cancel(r->loop, r->idle_timer);
	free(r->buckets);
	chat_wbuf_free(&r->wb);
	free(r);
}

int chat_relay_accept(struct chat_relay *r, const struct chat_transport_ops *tp, void *handle)
{
	struct client *c;
	int rc;

	if (r->nclients >= r->cfg.max_clients) {
		char peer[CHAT_ADDR_MAX] = "?";
		tp->address(handle, 0, sizeof(peer), peer);
		chat_warn("refusing %s: %zu clients connected (relay.max_clients)", peer, r->nclients);
		tp->close(handle);
		return CHAT_ERR_NOSPACE;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		tp->close(handle);
		return CHAT_ERR_NOMEM;
	}
	c->r = r;
	c->last_active = chat_loop_now_ms();
	rc = chat_conn_new(r->loop, tp, handle, &r->cfg.limits, &relay_cbs, c, &c->conn);
	if (rc) {
		free(c);
		return rc;
	}
	c->next = r->clients;
	if (r->clients)
		r->clients->prev = c;
	r->clients = c;
	r->nclients++;
	chat_info("client %s connected (%zu connected)", chat_conn_peer(c->conn), r->nclients);
	return CHAT_OK;
}

void chat_relay_shutdown(struct chat_relay *r, const char *reason)
{
	for (struct client *c = r->clients, *next; c; c = next) {
		next = c->next;
		send_bye(r, c, reason);
	}
}

size_t chat_relay_clients(const struct chat_relay *r)
{
	return r->nclients;
}
