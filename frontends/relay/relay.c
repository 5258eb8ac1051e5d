#include "relay.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "be.h"
#include "host.h"
#include "log.h"
#include "proto.h"
#include "relay_int.h"

/* Output queued for a connection that has not logged in: the relay's
 * answers before login are small (WELCOME, ERROR, PONG, AUTH_CHALLENGE), so
 * one that sends PINGs and never reads is cut off long before
 * relay.out_queue_limit. */
#define PRELOGIN_OUT_LIMIT 16384u

/* ---- helpers */

/* Names come from clients: keyed, so they cannot be chosen to collide. */
uint64_t relay_hash_name(const struct chat_relay *r, const char *name)
{
	return chat_siphash24_str(r->hash_key, name);
}

struct client *relay_find_user(const struct chat_relay *r, const char *name)
{
	if (!r->nbuckets)
		return NULL;
	for (struct client *c = r->buckets[relay_hash_name(r, name) & (r->nbuckets - 1)]; c;
	     c = c->hnext)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

int relay_insert_user(struct chat_relay *r, struct client *c)
{
	if (r->nlogged + 1 > r->nbuckets) {
		size_t n = r->nbuckets ? r->nbuckets * 2 : 64;
		struct client **b = calloc(n, sizeof(*b));
		if (!b)
			return CHAT_ERR_NOMEM;
		for (size_t i = 0; i < r->nbuckets; i++) {
			for (struct client *x = r->buckets[i], *next; x; x = next) {
				next = x->hnext;
				size_t h = relay_hash_name(r, x->name) & (n - 1);
				x->hnext = b[h];
				b[h] = x;
			}
		}
		free(r->buckets);
		r->buckets = b;
		r->nbuckets = n;
	}
	size_t h = relay_hash_name(r, c->name) & (r->nbuckets - 1);
	c->hnext = r->buckets[h];
	r->buckets[h] = c;
	r->nlogged++;
	return CHAT_OK;
}

void relay_remove_user(struct chat_relay *r, struct client *c)
{
	struct client **pp = &r->buckets[relay_hash_name(r, c->name) & (r->nbuckets - 1)];

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == c) {
			*pp = c->hnext;
			r->nlogged--;
			return;
		}
	}
}

int relay_intern_suite(struct chat_relay *r, const char *name)
{
	for (size_t i = 0; i < r->nsuite_names; i++)
		if (strcmp(r->suite_names[i], name) == 0)
			return (int)i;
	if (r->nsuite_names == SUITE_TABLE_MAX)
		return -1;
	snprintf(r->suite_names[r->nsuite_names], CHAT_NAME_MAX + 1, "%s", name);
	return (int)r->nsuite_names++;
}

int relay_carries(const struct chat_relay *r, const char *suite)
{
	if (!r->cfg.nsuites)
		return 1;
	for (size_t i = 0; i < r->cfg.nsuites; i++)
		if (strcmp(r->cfg.suites[i], suite) == 0)
			return 1;
	return 0;
}

int relay_has_suite(const struct client *c, int idx)
{
	for (size_t i = 0; i < c->nsuites; i++)
		if (c->suites[i] == idx)
			return 1;
	return 0;
}

/* Both said HELLO with suites the relay carried then; relay.suites may
 * have changed since (SIGHUP). */
int relay_common_suite(const struct chat_relay *r, const struct client *c, const struct client *t)
{
	for (size_t i = 0; i < c->nsuites; i++)
		if (relay_has_suite(t, c->suites[i]) && relay_carries(r, r->suite_names[c->suites[i]]))
			return 1;
	return 0;
}

/* A client's suites joined by sep: ", " for people, "," to store. */
void relay_suites_join(const struct chat_relay *r, const struct client *c, const char *sep,
                       size_t cap, char *dst)
{
	size_t used = 0;

	dst[0] = '\0';
	for (size_t i = 0; i < c->nsuites && used < cap; i++) {
		int n = snprintf(dst + used, cap - used, "%s%s", i ? sep : "",
		                 r->suite_names[c->suites[i]]);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

void relay_put_suites(struct chat_relay *r, const struct client *c)
{
	if (c->announced) { /* u8 n, n x str8 */
		size_t len = 1;
		for (unsigned i = 0; i < c->announced[0]; i++)
			len += 1u + c->announced[len];
		chat_put_bytes(&r->wb, len, c->announced);
		return;
	}
	chat_put_u8(&r->wb, c->nsuites);
	for (size_t i = 0; i < c->nsuites; i++)
		chat_put_str8(&r->wb, r->suite_names[c->suites[i]]);
}

void relay_begin(struct chat_relay *r, int type)
{
	chat_wbuf_reset(&r->wb);
	chat_put_u8(&r->wb, (unsigned)type);
}

/* Send the message in r->wb.  The target may be closed by this (its queue
 * overflowed): callers check c->dead before touching it again. */
void relay_flush_to(struct chat_relay *r, struct client *c)
{
	if (c->dead)
		return;
	if (r->wb.err) {
		chat_err("cannot build a message for %s: %s", c->name[0] ? c->name : chat_conn_peer(c->conn),
		         chat_strerror(r->wb.err));
		return;
	}
	relay_send_frame(r, c, r->wb.len, r->wb.data);
}

void relay_send_frame(struct chat_relay *r, struct client *c, size_t len, const uint8_t *frame)
{
	if (c->conn)
		chat_conn_send(c->conn, len, frame);
	else
		relay_cluster_forward(r, c, len, frame);
}

void relay_error(struct chat_relay *r, struct client *c, unsigned code, int ref,
                       const char *subject, const char *fmt, ...)
{
	char text[CHAT_TEXT_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	relay_begin(r, CHAT_MSG_ERROR);
	chat_put_u16(&r->wb, code);
	chat_put_u8(&r->wb, (unsigned)ref);
	chat_put_str8(&r->wb, subject ? subject : "");
	chat_put_str16(&r->wb, text);
	chat_put_u64(&r->wb, r->req_id);
	relay_flush_to(r, c);
}

void relay_bye(struct chat_relay *r, struct client *c, const char *reason)
{
	if (!c->conn)
		return; /* a user on another relay: that relay closes its connections */
	relay_begin(r, CHAT_MSG_BYE);
	chat_put_str16(&r->wb, reason);
	relay_flush_to(r, c);
	if (!c->dead)
		chat_conn_close_after_flush(c->conn, reason);
}

const char *relay_who(const struct client *c)
{
	return c->name[0] ? c->name : chat_conn_peer(c->conn);
}

/* Out of r->waiting or r->clients.  c keeps its next pointer, so a loop
 * that saved it before closing c carries on. */
static void unlink_client(struct chat_relay *r, struct client *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else if (c->waiting)
		r->waiting = c->next;
	else
		r->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else if (c->waiting)
		r->waiting_tail = c->prev;
}

/* BYE with reason, then close at once (not after the flush: the slot is
 * wanted now); the caller has logged it, through a limiter. */
static void close_logged(struct chat_relay *r, struct client *c, int err, const char *reason)
{
	relay_begin(r, CHAT_MSG_BYE);
	chat_put_str16(&r->wb, reason);
	relay_flush_to(r, c);
	if (c->dead)
		return;
	r->quiet = c;
	chat_conn_close(c->conn, err, reason);
	r->quiet = NULL;
}

/* ---- links (conversations) */

struct link *relay_find_link(struct client *c, const struct client *peer)
{
	for (size_t i = 0; i < c->nlinks; i++)
		if (c->links[i].peer == peer)
			return &c->links[i];
	return NULL;
}

int relay_add_link(struct client *c, struct client *peer, uint8_t state)
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

void relay_drop_link(struct client *c, const struct client *peer)
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

struct room *relay_find_room(const struct chat_relay *r, const char *name)
{
	if (!r->nroom_buckets)
		return NULL;
	for (struct room *rm = r->room_buckets[relay_hash_name(r, name) & (r->nroom_buckets - 1)];
	     rm; rm = rm->hnext)
		if (strcmp(rm->name, name) == 0)
			return rm;
	return NULL;
}

struct room *relay_new_room(struct chat_relay *r, const char *name)
{
	struct room *rm;
	size_t h;

	if (r->nrooms + 1 > r->nroom_buckets) {
		size_t n = r->nroom_buckets ? r->nroom_buckets * 2 : 16;
		struct room **b = calloc(n, sizeof(*b));
		if (!b)
			return NULL;
		for (struct room *x = r->rooms; x; x = x->next) {
			h = relay_hash_name(r, x->name) & (n - 1);
			x->hnext = b[h];
			b[h] = x;
		}
		free(r->room_buckets);
		r->room_buckets = b;
		r->nroom_buckets = n;
	}
	rm = calloc(1, sizeof(*rm));
	if (!rm)
		return NULL;
	snprintf(rm->name, sizeof(rm->name), "%s", name);
	rm->next = r->rooms;
	r->rooms = rm;
	h = relay_hash_name(r, rm->name) & (r->nroom_buckets - 1);
	rm->hnext = r->room_buckets[h];
	r->room_buckets[h] = rm;
	r->nrooms++;
	return rm;
}

static void free_room(struct chat_relay *r, struct room *rm)
{
	for (struct room **pp = &r->rooms; *pp; pp = &(*pp)->next) {
		if (*pp == rm) {
			*pp = rm->next;
			break;
		}
	}
	for (struct room **pp = &r->room_buckets[relay_hash_name(r, rm->name) &
	                                         (r->nroom_buckets - 1)];
	     *pp; pp = &(*pp)->hnext) {
		if (*pp == rm) {
			*pp = rm->hnext;
			break;
		}
	}
	r->nrooms--;
	free(rm->members);
	free(rm);
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
	if (!rm->n)
		free_room(r, rm);
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
		relay_begin(r, CHAT_MSG_ROOM_EVENT);
		chat_put_str8(&r->wb, name);
		chat_put_str8(&r->wb, who_c->name);
		chat_put_u8(&r->wb, (unsigned)event);
		relay_flush_to(r, members[i]);
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
	relay_cluster_room(r, c, name, 0);
	room_event(r, rm, c, 2);
	rm = relay_find_room(r, name); /* it may be gone by now */
	if (rm)
		free_room_if_empty(r, rm);
}

void relay_leave_room(struct chat_relay *r, struct client *c, const char *room)
{
	char name[CHAT_NAME_MAX + 1];
	struct room *rm;

	snprintf(name, sizeof(name), "%s", room); /* room may point into the room */
	if ((rm = relay_find_room(r, name)) && in_room(rm, c))
		leave_room(r, c, rm);
}

/* ---- requests */

static void on_hello(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	char theirs[256] = "", ours[256] = "";

	if (c->state != ST_NEW) {
		relay_error(r, c, CHAT_PERR_UNEXPECTED, m->type, NULL, "HELLO was already received");
		return;
	}
	if (m->version != CHAT_PROTO_VERSION) {
		relay_error(r, c, CHAT_PERR_VERSION, m->type, NULL,
		           "protocol version %u is not supported (this relay speaks %d)", m->version,
		           CHAT_PROTO_VERSION);
		relay_bye(r, c, "unsupported protocol version");
		return;
	}
	c->nsuites = 0;
	for (size_t i = 0; i < m->nsuites; i++) {
		size_t used = strlen(theirs);
		snprintf(theirs + used, sizeof(theirs) - used, "%s%s", i ? ", " : "", m->suites[i]);
		if (!relay_carries(r, m->suites[i]))
			continue;
		int idx = relay_intern_suite(r, m->suites[i]);
		if (idx >= 0)
			c->suites[c->nsuites++] = (uint8_t)idx;
	}
	if (!c->nsuites) {
		for (size_t i = 0; i < r->cfg.nsuites; i++) {
			size_t used = strlen(ours);
			snprintf(ours + used, sizeof(ours) - used, "%s%s", i ? ", " : "", r->cfg.suites[i]);
		}
		relay_error(r, c, CHAT_PERR_SUITE_REFUSED, m->type, NULL,
		           "this relay carries only %s; you allow only %s", ours, theirs);
		relay_bye(r, c, "no suite this relay carries");
		return;
	}
	/* Kept as sent, for the peers' binding (relay_put_suites), when it is
	 * not suites[] itself (it names suites this relay does not carry): at
	 * most 1 + 16 x 33 bytes, names already checked by the parser. */
	size_t len = 1;
	for (size_t i = 0; i < m->nsuites; i++)
		len += 1 + strlen(m->suites[i]);
	free(c->announced);
	c->announced = NULL;
	if (c->nsuites != m->nsuites && !(c->announced = malloc(len))) {
		relay_bye(r, c, "out of memory");
		return;
	}
	len = 0;
	if (c->announced)
		c->announced[len++] = (uint8_t)m->nsuites;
	for (size_t i = 0; c->announced && i < m->nsuites; i++) {
		size_t n = strlen(m->suites[i]);
		c->announced[len++] = (uint8_t)n;
		memcpy(c->announced + len, m->suites[i], n);
		len += n;
	}
	c->state = ST_HELLO;
	relay_begin(r, CHAT_MSG_WELCOME);
	chat_put_u8(&r->wb, CHAT_PROTO_VERSION);
	chat_put_u8(&r->wb, (unsigned)r->cfg.nsuites);
	for (size_t i = 0; i < r->cfg.nsuites; i++)
		chat_put_str8(&r->wb, r->cfg.suites[i]);
	relay_flush_to(r, c);
}

int relay_is_registered(const struct client *c)
{
	return c->acct && c->acct->registered;
}

int relay_logged_in(struct chat_relay *r, struct client *c, const char *name, int group,
                    uint64_t last_id)
{
	char suites[256];

	snprintf(c->name, sizeof(c->name), "%s", name);
	if (relay_insert_user(r, c) != CHAT_OK) {
		c->name[0] = '\0';
		relay_error(r, c, CHAT_PERR_LIMIT, CHAT_MSG_LOGIN, NULL, "relay out of memory");
		return CHAT_ERR_NOMEM;
	}
	c->state = ST_LOGGED_IN;
	if (c->waiting) {
		/* To the logged-in list, no longer counted against its address;
		 * the frame limit is core.max_frame from the next frame on. */
		unlink_client(r, c);
		c->waiting = 0;
		r->nwaiting--;
		chat_addrcount_release(r->addrs, c->addr_slot);
		c->addr_slot = CHAT_ADDRCOUNT_NONE;
		c->prev = NULL;
		c->next = r->clients;
		if (r->clients)
			r->clients->prev = c;
		r->clients = c;
		chat_conn_set_limits(c->conn, &r->cfg.limits);
	}
	relay_suites_join(r, c, ", ", sizeof(suites), suites);
	chat_info("client %s logged in as %s (%s; suites: %s)", chat_conn_peer(c->conn), c->name,
	          group == CHAT_GROUP_ADMIN ? "admin" : group == CHAT_GROUP_REGULAR ? "registered" : "guest",
	          suites);
	relay_begin(r, CHAT_MSG_LOGGED_IN);
	chat_put_str8(&r->wb, c->name);
	chat_put_u8(&r->wb, (unsigned)group);
	chat_put_u64(&r->wb, last_id);
	relay_flush_to(r, c);
	if (c->acct)
		c->acct->login_ms = chat_unix_ms();
	relay_cluster_user_up(r, c);
	if (relay_is_registered(c))
		relay_mail_wanted(r, c);
	return CHAT_OK;
}

static void on_login(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{

	if (c->state == ST_NEW) {
		relay_error(r, c, CHAT_PERR_UNEXPECTED, m->type, NULL, "send HELLO before LOGIN");
		return;
	}
	if (c->state == ST_LOGGED_IN) {
		relay_error(r, c, CHAT_PERR_ALREADY, m->type, c->name, "already logged in as %s", c->name);
		return;
	}
	if (r->cfg.store && !r->cfg.guests) {
		relay_error(r, c, CHAT_PERR_FORBIDDEN, m->type, m->name,
		            "this relay has no guest logins: register, or log in with your password");
		return;
	}
	char host[CHAT_ADDR_MAX + 1];
	relay_peer_host(c, sizeof(host), host);
	int64_t wait = chat_logins_address_wait(r->logins, host, chat_unix_ms());
	if (wait) {
		relay_error(r, c, CHAT_PERR_THROTTLED, m->type, m->name,
		            "too many refused logins from your address: try again in %lld s",
		            (long long)((wait + 999) / 1000));
		chat_info("client %s: login as %s refused: throttled for %lld ms more", chat_conn_peer(c->conn),
		          m->name, (long long)wait);
		return;
	}
	int in_use = relay_find_user(r, m->name) != NULL, registered = 0;
	if (r->cfg.store) {
		/* Looked up in both cases, so both refusals cost the same. */
		int rc = chat_store_account_exists(r->cfg.store, m->name);
		if (rc != CHAT_OK && rc != CHAT_ERR_NOTFOUND) {
			chat_err("%s", chat_store_error(r->cfg.store));
			relay_error(r, c, CHAT_PERR_STORAGE, m->type, m->name,
			            "the relay cannot read its database; try later");
			return;
		}
		registered = rc == CHAT_OK;
	}
	if (in_use || registered) {
		/* A refused name counts against the address like a failed login:
		 * trying names one after the other is throttled. */
		int64_t next = chat_logins_address_fail(r->logins, host, chat_unix_ms());
		chat_info("client %s: login as %s refused: %s%s", chat_conn_peer(c->conn), m->name,
		          in_use ? "name taken" : "a registered name", next ? " (this address waits now)" : "");
		if (r->cfg.store && !r->cfg.reveal_accounts)
			/* One answer for a registered name and a name in use. */
			relay_error(r, c, CHAT_PERR_NAME_TAKEN, m->type, m->name,
			            "the name %s cannot be used by a guest: it is registered or in use (log in "
			            "with its password, or choose another name)", m->name);
		else if (in_use)
			relay_error(r, c, CHAT_PERR_NAME_TAKEN, m->type, m->name,
			            "the name %s is taken by another connected user", m->name);
		else
			relay_error(r, c, CHAT_PERR_NAME_TAKEN, m->type, m->name,
			            "%s is a registered user: log in with the password", m->name);
		return;
	}
	relay_account_state_free(c); /* an AUTH in progress ends here */
	relay_logged_in(r, c, m->name, CHAT_GROUP_GUEST, 0);
}

/* Lists hold as many entries as fit in one frame and say how many they hold:
 * list_begin reserves the count, list_fits undoes an entry that overflowed,
 * list_end writes the count. */
size_t relay_list_begin(struct chat_relay *r, int type)
{
	relay_begin(r, type);
	chat_put_u16(&r->wb, 0);
	return r->wb.len - 2;
}

int relay_list_fits(struct chat_relay *r, size_t before)
{
	if (!r->wb.err && r->wb.len <= r->cfg.limits.max_frame - 64)
		return 1;
	r->wb.len = before;
	r->wb.err = 0;
	return 0;
}

void relay_list_end(struct chat_relay *r, size_t count_at, size_t count)
{
	chat_be16_put(r->wb.data + count_at, (uint16_t)count);
}

struct friend_set {
	char (*names)[CHAT_NAME_MAX + 1];
	size_t n, cap;
};

static int collect_friend(void *arg, const char *other, int state)
{
	struct friend_set *f = arg;

	if (state != CHAT_FRIEND_YES)
		return 0;
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 16;
		void *p = realloc(f->names, cap * sizeof(*f->names));
		if (!p)
			return 1;
		f->names = p;
		f->cap = cap;
	}
	snprintf(f->names[f->n++], CHAT_NAME_MAX + 1, "%s", other);
	return 0;
}

static int in_set(const struct friend_set *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->names[i], name) == 0)
			return 1;
	return 0;
}

/* WHO_LIST: the asker's friends first (flagged), then everyone else. */
static void on_who(struct chat_relay *r, struct client *c)
{
	struct friend_set friends = { 0 };
	size_t count = 0, count_at;

	if (relay_is_registered(c))
		chat_store_friends(r->cfg.store, c->name, collect_friend, &friends);
	count_at = relay_list_begin(r, CHAT_MSG_WHO_LIST);
	for (int pass = friends.n ? 0 : 1; pass < 2; pass++) {
		for (struct client *x = r->clients ? r->clients : r->ghosts; x && count < 65535;
		     x = x->next ? x->next : x->conn ? r->ghosts : NULL) {
			if (x->state != ST_LOGGED_IN || x->dead)
				continue;
			int friend = friends.n && relay_is_registered(x) && in_set(&friends, x->name);
			if (friend != (pass == 0))
				continue;
			size_t before = r->wb.len;
			chat_put_str8(&r->wb, x->name);
			relay_put_suites(r, x);
			chat_put_u8(&r->wb, (friend ? CHAT_WHO_FRIEND : 0) |
			                        (relay_is_registered(x) ? CHAT_WHO_REGISTERED : 0));
			if (!relay_list_fits(r, before))
				goto full;
			count++;
		}
	}
full:
	free(friends.names);
	relay_list_end(r, count_at, count);
	relay_flush_to(r, c);
}

/* Is name a registered account (online or not)? */
static int registered_name(struct chat_relay *r, const char *name)
{
	struct client *t = relay_find_user(r, name);

	if (t)
		return relay_is_registered(t);
	if (!r->cfg.store)
		return 0;
	int rc = chat_store_account_exists(r->cfg.store, name);
	return rc == CHAT_OK;
}

/* Between two registered users conversations are kept in the database and
 * everything goes through relay_mail.c; otherwise live, as for guests. */
static int both_registered(struct chat_relay *r, struct client *c, const char *name)
{
	return relay_is_registered(c) && strcmp(name, c->name) != 0 && registered_name(r, name);
}

/* The target of a request naming a user: online, not oneself. */
struct client *relay_target(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct client *t = relay_find_user(r, m->name);

	if (!t || t->dead) {
		const char *lost = relay_cluster_lost(r);
		if (lost)
			relay_error(r, c, CHAT_PERR_NOT_CONNECTED, m->type, m->name,
			            "%s is not connected here, and users on other relays are not reachable: "
			            "this relay lost its cluster link (%s)", m->name, lost);
		else
			relay_error(r, c, CHAT_PERR_NOT_CONNECTED, m->type, m->name, "%s is not connected",
			            m->name);
		return NULL;
	}
	if (t == c) {
		relay_error(r, c, CHAT_PERR_SELF, m->type, m->name, "you cannot talk to yourself");
		return NULL;
	}
	return t;
}

static void on_talk(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct client *t = relay_target(r, c, m);
	char mine[256], theirs[256];
	int common = 0;

	if (!t)
		return;
	struct link *l = relay_find_link(c, t);
	if (l && l->state == LINK_ACCEPTED) {
		relay_error(r, c, CHAT_PERR_ALREADY, m->type, t->name, "you are already talking with %s", t->name);
		return;
	}
	if (l && l->state == LINK_OFFER_OUT) {
		relay_error(r, c, CHAT_PERR_ALREADY, m->type, t->name,
		           "you already offered %s a conversation; waiting for an answer", t->name);
		return;
	}
	common = relay_common_suite(r, c, t);
	if (!common) {
		relay_suites_join(r, t, ", ", sizeof(theirs), theirs);
		relay_suites_join(r, c, ", ", sizeof(mine), mine);
		relay_error(r, c, CHAT_PERR_NO_COMMON_SUITE, m->type, t->name,
		           "%s offers only %s; you allow only %s%s", t->name, theirs, mine,
		           r->cfg.nsuites ? " (and this relay carries only what relay.suites lists)" : "");
		return;
	}
	if (l && l->state == LINK_OFFER_IN) {
		/* They offered first: the client should answer that offer instead. */
		relay_error(r, c, CHAT_PERR_ALREADY, m->type, t->name,
		           "%s already offered you a conversation: accept it", t->name);
		return;
	}
	if (pending_offers(c) >= r->cfg.max_pending_offers) {
		relay_error(r, c, CHAT_PERR_LIMIT, m->type, t->name,
		           "too many unanswered offers (at most %zu)", r->cfg.max_pending_offers);
		return;
	}
	if (relay_add_link(c, t, LINK_OFFER_OUT) || relay_add_link(t, c, LINK_OFFER_IN)) {
		relay_drop_link(c, t);
		relay_error(r, c, CHAT_PERR_LIMIT, m->type, t->name, "relay out of memory");
		return;
	}
	relay_begin(r, CHAT_MSG_OFFERED);
	chat_put_str8(&r->wb, c->name);
	relay_put_suites(r, c);
	relay_flush_to(r, t);
}

static void on_answer(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct client *t = relay_target(r, c, m);

	if (!t)
		return;
	struct link *l = relay_find_link(c, t);
	if (!l || l->state != LINK_OFFER_IN) {
		relay_error(r, c, CHAT_PERR_NO_CONVERSATION, m->type, t->name,
		           "%s has not offered you a conversation", t->name);
		return;
	}
	if (m->flag) {
		int idx = relay_intern_suite(r, m->suite);
		if (idx < 0 || !relay_has_suite(c, idx) || !relay_has_suite(t, idx)) {
			relay_error(r, c, CHAT_PERR_NO_COMMON_SUITE, m->type, t->name,
			           "suite %s is not allowed by both you and %s", m->suite, t->name);
			return;
		}
		if (!relay_carries(r, m->suite)) {
			relay_error(r, c, CHAT_PERR_SUITE_REFUSED, m->type, t->name,
			           "this relay no longer carries %s (relay.suites)", m->suite);
			return;
		}
		l->state = LINK_ACCEPTED;
		struct link *back = relay_find_link(t, c);
		if (back)
			back->state = LINK_ACCEPTED;
		chat_info("%s and %s started a conversation (%s)", t->name, c->name, m->suite);
	} else {
		relay_drop_link(c, t);
		relay_drop_link(t, c);
	}
	relay_begin(r, CHAT_MSG_ANSWERED);
	chat_put_str8(&r->wb, c->name);
	chat_put_u8(&r->wb, (unsigned)m->flag);
	chat_put_str8(&r->wb, m->flag ? m->suite : "");
	relay_put_suites(r, c);
	chat_put_str16(&r->wb, m->text);
	relay_flush_to(r, t);
}

static void on_route(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct client *t = relay_target(r, c, m);

	if (!t)
		return;
	struct link *l = relay_find_link(c, t);
	if (!(l && l->state == LINK_ACCEPTED) && !share_room(c, t)) {
		relay_error(r, c, CHAT_PERR_NO_CONVERSATION, m->type, t->name,
		           "no conversation with %s: offer one first", t->name);
		return;
	}
	relay_begin(r, CHAT_MSG_DELIVER);
	chat_put_str8(&r->wb, c->name);
	chat_put_bytes(&r->wb, m->payload_len, m->payload);
	relay_flush_to(r, t);
}

static void on_close_conversation(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct client *t = relay_find_user(r, m->name);

	if (!t || !relay_find_link(c, t)) {
		relay_error(r, c, CHAT_PERR_NO_CONVERSATION, m->type, m->name,
		           "no conversation with %s", m->name);
		return;
	}
	relay_drop_link(c, t);
	relay_drop_link(t, c);
	relay_begin(r, CHAT_MSG_CLOSED);
	chat_put_str8(&r->wb, c->name);
	relay_flush_to(r, t);
}

static int room_make_space(struct room *rm, struct client *c);

static void on_join(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct room *rm = relay_find_room(r, m->room);

	if (rm && in_room(rm, c)) {
		relay_error(r, c, CHAT_PERR_ALREADY, m->type, m->room, "you are already in room %s", m->room);
		return;
	}
	if (c->nrooms >= r->cfg.max_rooms_per_client) {
		relay_error(r, c, CHAT_PERR_LIMIT, m->type, m->room, "you are in too many rooms (at most %zu)",
		           r->cfg.max_rooms_per_client);
		return;
	}
	if (rm && rm->n >= r->cfg.max_room_members) {
		relay_error(r, c, CHAT_PERR_LIMIT, m->type, m->room, "room %s is full (%zu members)",
		           m->room, rm->n);
		return;
	}
	if (!rm && !(rm = relay_new_room(r, m->room))) {
		relay_error(r, c, CHAT_PERR_LIMIT, m->type, m->room, "relay out of memory");
		return;
	}
	if (room_make_space(rm, c) != CHAT_OK)
		goto nomem;
	/* The member list goes to the joiner first, then everybody hears of it. */
	relay_begin(r, CHAT_MSG_MEMBERS);
	chat_put_str8(&r->wb, rm->name);
	chat_put_u16(&r->wb, (unsigned)rm->n);
	for (size_t i = 0; i < rm->n; i++) {
		chat_put_str8(&r->wb, rm->members[i]->name);
		relay_put_suites(r, rm->members[i]);
	}
	rm->members[rm->n++] = c;
	c->rooms[c->nrooms++] = rm;
	relay_flush_to(r, c);
	relay_cluster_room(r, c, rm->name, 1);
	room_event(r, rm, c, 1);
	return;
nomem:
	free_room_if_empty(r, rm);
	relay_error(r, c, CHAT_PERR_LIMIT, m->type, m->room, "relay out of memory");
}

int relay_join_room(struct chat_relay *r, struct client *c, const char *room)
{
	struct room *rm = relay_find_room(r, room);

	if (rm && in_room(rm, c))
		return CHAT_OK;
	if (c->nrooms == 255 || (!rm && !(rm = relay_new_room(r, room))))
		return CHAT_ERR_NOMEM;
	if (room_make_space(rm, c) != CHAT_OK) {
		free_room_if_empty(r, rm);
		return CHAT_ERR_NOMEM;
	}
	rm->members[rm->n++] = c;
	c->rooms[c->nrooms++] = rm;
	room_event(r, rm, c, 1);
	return CHAT_OK;
}

/* Room for one more member in rm and one more room in c. */
static int room_make_space(struct room *rm, struct client *c)
{
	if (rm->n == rm->cap) {
		size_t cap = rm->cap ? rm->cap * 2 : 4;
		struct client **mem = realloc(rm->members, cap * sizeof(*mem));
		if (!mem)
			return CHAT_ERR_NOMEM;
		rm->members = mem;
		rm->cap = cap;
	}
	if (c->nrooms == c->caprooms) {
		size_t cap = c->caprooms ? c->caprooms * 2u : 2u;
		struct room **rooms = realloc(c->rooms, cap * sizeof(*rooms));
		if (!rooms)
			return CHAT_ERR_NOMEM;
		c->rooms = rooms;
		c->caprooms = (uint8_t)(cap > 255 ? 255 : cap);
	}
	return CHAT_OK;
}

static void on_leave(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct room *rm = relay_find_room(r, m->room);

	if (!rm || !in_room(rm, c)) {
		relay_error(r, c, CHAT_PERR_NOT_MEMBER, m->type, m->room, "you are not in room %s", m->room);
		return;
	}
	leave_room(r, c, rm);
}

static void on_rooms(struct chat_relay *r, struct client *c)
{
	size_t count = 0, count_at = relay_list_begin(r, CHAT_MSG_ROOM_LIST);

	for (struct room *rm = r->rooms; rm && count < 65535; rm = rm->next) {
		size_t before = r->wb.len;
		chat_put_str8(&r->wb, rm->name);
		chat_put_u16(&r->wb, (unsigned)rm->n);
		if (!relay_list_fits(r, before))
			break;
		count++;
	}
	relay_list_end(r, count_at, count);
	relay_flush_to(r, c);
}

static void on_room_send(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct room *rm = relay_find_room(r, m->room);
	struct chat_iter it = m->list;
	char name[CHAT_NAME_MAX + 1];
	const uint8_t *payload;
	size_t len;

	if (!rm || !in_room(rm, c)) {
		relay_error(r, c, CHAT_PERR_NOT_MEMBER, m->type, m->room, "you are not in room %s", m->room);
		return;
	}
	while (chat_iter_target(&it, name, &payload, &len) && !c->dead) {
		struct client *t = relay_find_user(r, name);
		if (!t || t == c || t->dead || !in_room(rm, t)) {
			relay_error(r, c, CHAT_PERR_NOT_MEMBER, m->type, name, "%s is not in room %s",
			           name, rm->name);
			continue;
		}
		relay_begin(r, CHAT_MSG_ROOM_DELIVER);
		chat_put_str8(&r->wb, rm->name);
		chat_put_str8(&r->wb, c->name);
		chat_put_bytes(&r->wb, len, payload);
		relay_flush_to(r, t);
	}
}

static void handle_frame(struct chat_relay *r, struct client *c, size_t len, const uint8_t *frame)
{
	struct chat_msg m;
	char err[CHAT_TEXT_MAX];

	/* Any frame proves the link alive; stamped with the sweep count, so the
	 * keepalive costs no clock read per frame. */
	c->rx_sweep = r->sweeps;
	/* A keepalive is not activity: a client that only answers PINGs idles. */
	int keepalive = len && (frame[0] == CHAT_MSG_PING || frame[0] == CHAT_MSG_PONG);
	if (r->cfg.idle_timeout_ms > 0 && !keepalive) /* a clock read per frame only when it is used */
		c->active_sweep = r->sweeps;
	if (chat_msg_parse(len, frame, &m, sizeof(err), err) != CHAT_OK) {
		c->bad++;
		chat_log_limited(&r->lim_malformed, chat_loop_now_ms(), "client %s: malformed request: %s",
		                 relay_who(c), err);
		relay_error(r, c, CHAT_PERR_MALFORMED, len ? frame[0] : 0, NULL, "%s", err);
		if (c->bad >= r->cfg.max_bad_requests && !c->dead)
			relay_bye(r, c, "too many malformed requests");
		return;
	}
	if (m.type == CHAT_MSG_SEND)
		r->req_id = m.id;
	/* From anyone, in any state: answered at once. */
	if (m.type == CHAT_MSG_PING) {
		relay_begin(r, CHAT_MSG_PONG);
		chat_put_u64(&r->wb, m.id);
		relay_flush_to(r, c);
		return;
	}
	if (m.type == CHAT_MSG_PONG)
		return; /* its arrival was all that mattered */
	if (m.type >= 0x80) {
		c->bad++;
		relay_error(r, c, CHAT_PERR_UNEXPECTED, m.type, NULL, "%s is sent by the relay, not to it",
		           chat_msg_type_name(m.type));
		if (c->bad >= r->cfg.max_bad_requests && !c->dead)
			relay_bye(r, c, "too many malformed requests");
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
	if (c->state != ST_LOGGED_IN &&
	    (m.type == CHAT_MSG_AUTH || m.type == CHAT_MSG_AUTH_FINAL || m.type == CHAT_MSG_REGISTER)) {
		if (c->state == ST_NEW) {
			relay_error(r, c, CHAT_PERR_UNEXPECTED, m.type, NULL, "send HELLO before %s",
			            chat_msg_type_name(m.type));
			return;
		}
		if (m.type == CHAT_MSG_AUTH)
			relay_on_auth(r, c, &m);
		else if (m.type == CHAT_MSG_AUTH_FINAL)
			relay_on_auth_final(r, c, &m);
		else
			relay_on_register(r, c, &m);
		return;
	}
	if (c->state != ST_LOGGED_IN) {
		relay_error(r, c, CHAT_PERR_NOT_LOGGED_IN, m.type, NULL, "log in before %s",
		           chat_msg_type_name(m.type));
		return;
	}
	switch (m.type) {
	case CHAT_MSG_WHO: on_who(r, c); break;
	case CHAT_MSG_TALK:
		if (both_registered(r, c, m.name))
			relay_talk_registered(r, c, &m);
		else
			on_talk(r, c, &m);
		break;
	case CHAT_MSG_ANSWER:
		if (both_registered(r, c, m.name))
			relay_answer_registered(r, c, &m);
		else
			on_answer(r, c, &m);
		break;
	case CHAT_MSG_ROUTE: on_route(r, c, &m); break;
	case CHAT_MSG_CLOSE:
		if (both_registered(r, c, m.name))
			relay_close_registered(r, c, &m);
		else
			on_close_conversation(r, c, &m);
		break;
	case CHAT_MSG_SEND: relay_on_send(r, c, &m); break;
	case CHAT_MSG_ACK: relay_on_ack(r, c, &m); break;
	case CHAT_MSG_PASSWD: relay_on_passwd(r, c, &m); break;
	case CHAT_MSG_ADMIN: relay_on_admin(r, c, &m); break;
	case CHAT_MSG_FRIEND: relay_on_friend(r, c, &m); break;
	case CHAT_MSG_KEYS_PUT: relay_on_keys_put(r, c, &m); break;
	case CHAT_MSG_KEYS_GET: relay_on_keys_get(r, c, &m); break;
	case CHAT_MSG_AUTH:
		if (m.op == CHAT_AUTH_PASSWD) {
			relay_on_auth(r, c, &m);
			break;
		}
		relay_error(r, c, CHAT_PERR_ALREADY, m.type, c->name, "already logged in as %s", c->name);
		break;
	case CHAT_MSG_AUTH_FINAL: relay_on_auth_final(r, c, &m); break;
	case CHAT_MSG_REGISTER:
		relay_error(r, c, CHAT_PERR_ALREADY, m.type, c->name,
		            "already logged in as %s: admins add users with ADMIN ADD", c->name);
		break;
	case CHAT_MSG_JOIN: on_join(r, c, &m); break;
	case CHAT_MSG_LEAVE: on_leave(r, c, &m); break;
	case CHAT_MSG_ROOMS: on_rooms(r, c); break;
	case CHAT_MSG_ROOM_SEND: on_room_send(r, c, &m); break;
	default: break;
	}
}

static void on_frame(struct chat_conn *conn, size_t len, const uint8_t *frame, void *arg)
{
	struct client *c = arg;
	struct chat_relay *r = c->r;

	(void)conn;
	/* Every answer to a SEND (STORED or ERROR) names its client id, so the
	 * sender knows which of its messages a refusal is about. */
	handle_frame(r, c, len, frame);
	r->req_id = 0;
}

/* ---- connection lifecycle */

static void client_free(void *arg)
{
	struct client *c = arg;

	free(c->announced);
	free(c);
}

static void on_conn_close(struct chat_conn *conn, int err, const char *reason, void *arg)
{
	struct client *c = arg;
	struct chat_relay *r = c->r;

	int ok = err == CHAT_OK || err == CHAT_ERR_CLOSED;

	if (r->quiet == c)
		; /* the closer said why */
	else if (c->waiting) /* floods of these are cheap to make: counted, not each logged */
		chat_log_limited(&r->lim_gone, chat_loop_now_ms(), "client %s %s before logging in: %s%s",
		                 relay_who(c), ok ? "disconnected" : "dropped", reason,
		                 err == CHAT_ERR_TOO_BIG && r->prelogin.max_frame < r->cfg.limits.max_frame
		                 ? " (relay.prelogin_max_frame)" : "");
	else if (ok)
		chat_info("client %s disconnected: %s", relay_who(c), reason);
	else
		chat_warn("client %s dropped: %s", relay_who(c), reason);
	(void)conn;
	c->dead = 1;
	unlink_client(r, c);
	r->nclients--;
	if (c->waiting) {
		r->nwaiting--;
		chat_addrcount_release(r->addrs, c->addr_slot);
	}
	if (c->state == ST_LOGGED_IN)
		relay_cluster_user_down(r, c);
	relay_client_gone(r, c);
	relay_account_state_free(c);
	/* Callers up the stack may still hold c: free it after this round. */
	if (chat_loop_defer(r->loop, client_free, c) != CHAT_OK)
		chat_err("cannot defer freeing a client; leaking it");
}

void relay_client_gone(struct chat_relay *r, struct client *c)
{
	if (c->state == ST_LOGGED_IN)
		relay_remove_user(r, c);
	/* Everyone who talked with or was offered a talk by c hears it ended. */
	while (c->nlinks) {
		struct client *peer = c->links[c->nlinks - 1].peer;
		relay_drop_link(c, peer);
		relay_drop_link(peer, c);
		if (!peer->dead) {
			relay_begin(r, CHAT_MSG_CLOSED);
			chat_put_str8(&r->wb, c->name);
			relay_flush_to(r, peer);
		}
	}
	while (c->nrooms)
		leave_room(r, c, c->rooms[c->nrooms - 1]);
	free(c->links);
	free(c->rooms);
	c->links = NULL;
	c->rooms = NULL;
}

static const struct chat_conn_cbs relay_cbs = {
	.on_frame = on_frame,
	.on_close = on_conn_close,
};

static void sweep_one(struct chat_relay *r, struct client *c, uint64_t now)
{
	const unsigned ka = r->cfg.keepalive_s, dead = r->cfg.dead_after_s;
	const unsigned lt = r->cfg.login_timeout_s;
	char reason[CHAT_ADDR_MAX + 96];
	uint32_t silent = r->sweeps - c->rx_sweep; /* wraps safely */

	if (dead && silent > dead) {
		if (c->name[0])
			snprintf(reason, sizeof(reason), "nothing received from %s for %u s "
			         "(relay.dead_after)", chat_conn_peer(c->conn), silent - 1);
		else
			snprintf(reason, sizeof(reason), "nothing received for %u s (relay.dead_after)",
			         silent - 1);
		chat_conn_close(c->conn, CHAT_ERR_TIMEOUT, reason);
		return;
	}
	/* Counted from the connect, in sweeps like the silence. */
	if (lt && c->waiting && r->sweeps - c->born_sweep > lt) {
		snprintf(reason, sizeof(reason), "no login within %u s (relay.login_timeout)", lt);
		chat_log_limited(&r->lim_timeout, now, "client %s closed: %s", chat_conn_peer(c->conn),
		                 reason);
		close_logged(r, c, CHAT_ERR_TIMEOUT, reason);
		return;
	}
	/* Once a keepalive period into the silence, and again every period. */
	if (ka && silent > ka && (silent - 1) % ka == 0) {
		relay_begin(r, CHAT_MSG_PING);
		chat_put_u64(&r->wb, r->sweeps);
		relay_flush_to(r, c);
		if (c->dead)
			return;
	}
	/* Counted in sweeps like the silence (a sweep is at least 1 s). */
	if (r->cfg.idle_timeout_ms > 0 &&
	    (uint64_t)(r->sweeps - c->active_sweep) * 1000u > (uint64_t)r->cfg.idle_timeout_ms) {
		relay_bye(r, c, "idle for too long (relay.idle_timeout)");
		if (!c->dead)
			chat_conn_close(c->conn, CHAT_ERR_TIMEOUT, "idle for too long (relay.idle_timeout)");
	}
}

/* One pass over every client a second, whatever their number: no timer per
 * client.  Silence is counted in sweeps: a frame that arrived after sweep k
 * is stamped k, so at sweep n it is more than n-k-1 sweeps old.  A sweep
 * comes 1 s after the previous one ended, never sooner, so a client is never
 * thought silent for longer than it was (and a relay that was itself held
 * up does not blame its clients for it).  The login deadline is counted the
 * same way from the connect.  Then the log limiters say what they counted. */
static long long sweep(struct chat_loop *loop, void *arg)
{
	struct chat_relay *r = arg;
	uint64_t now = chat_loop_now_ms();

	(void)loop;
	r->sweeps++;
	for (int list = 0; list < 2; list++) {
		for (struct client *c = list ? r->clients : r->waiting, *next; c; c = next) {
			next = c->next; /* closing c unlinks it; next stays valid */
			if (!c->dead)
				sweep_one(r, c, now);
		}
	}
	struct chat_log_limit *lims[] = { &r->lim_connect, &r->lim_gone, &r->lim_malformed,
	                                  &r->lim_full, &r->lim_addr, &r->lim_evict, &r->lim_timeout };
	for (size_t i = 0; i < sizeof(lims) / sizeof(lims[0]); i++)
		chat_log_limit_flush(lims[i], now);
	return 1000;
}

static void limit_init(struct chat_log_limit *l, const struct chat_relay_config *cfg,
                       const char *kind, int level)
{
	l->kind = kind;
	l->level = level;
	l->interval_ms = cfg->log_interval_s * 1000u;
}

/* What r->cfg implies: its own copy of the suites, the limits before login,
 * the log limiters.  Then the address counts and the sweep, if now needed
 * (neither goes away when no longer needed).  CHAT_OK or CHAT_ERR_NOMEM. */
static int apply_config(struct chat_relay *r)
{
	const struct chat_relay_config *cfg = &r->cfg;

	if (r->cfg.nsuites > CHAT_SUITES_MAX)
		r->cfg.nsuites = CHAT_SUITES_MAX;
	for (size_t i = 0; i < r->cfg.nsuites; i++) {
		if (r->cfg.suites[i] != r->policy[i])
			snprintf(r->policy[i], sizeof(r->policy[i]), "%s", r->cfg.suites[i]);
		r->policy_ptrs[i] = r->policy[i];
	}
	r->cfg.suites = r->policy_ptrs;
	r->waiting_max = cfg->max_clients > cfg->reserved_slots ? cfg->max_clients - cfg->reserved_slots : 1;
	r->prelogin = cfg->limits;
	if (cfg->prelogin_max_frame) {
		if (cfg->prelogin_max_frame < r->prelogin.max_frame)
			r->prelogin.max_frame = cfg->prelogin_max_frame;
		if (r->prelogin.out_limit > PRELOGIN_OUT_LIMIT)
			r->prelogin.out_limit = PRELOGIN_OUT_LIMIT;
	}
	limit_init(&r->lim_connect, cfg, "connections", CHAT_LOG_INFO);
	limit_init(&r->lim_gone, cfg, "connections closed before logging in", CHAT_LOG_INFO);
	limit_init(&r->lim_malformed, cfg, "malformed requests", CHAT_LOG_INFO);
	limit_init(&r->lim_full, cfg, "connections refused (relay.max_clients)", CHAT_LOG_WARN);
	limit_init(&r->lim_addr, cfg, "connections refused (relay.max_unauth_per_address)",
	           CHAT_LOG_WARN);
	limit_init(&r->lim_evict, cfg, "connections closed to make room (relay.reserved_slots)",
	           CHAT_LOG_WARN);
	limit_init(&r->lim_timeout, cfg, "connections closed (relay.login_timeout)", CHAT_LOG_INFO);
	int swept = cfg->idle_timeout_ms > 0 || cfg->keepalive_s || cfg->dead_after_s ||
	            cfg->login_timeout_s || cfg->log_interval_s;
	if ((cfg->max_unauth_per_address && !r->addrs && chat_addrcount_new(&r->addrs) != CHAT_OK) ||
	    (swept && !r->sweep_timer &&
	     chat_loop_timer_add(r->loop, 1000, sweep, r, &r->sweep_timer) != CHAT_OK))
		return CHAT_ERR_NOMEM;
	return CHAT_OK;
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
	if (chat_os_random(sizeof(r->hash_key), r->hash_key) != CHAT_OK) {
		chat_relay_free(r);
		return CHAT_ERR_RANDOM;
	}
	if (apply_config(r) != CHAT_OK || relay_accounts_new(r) != CHAT_OK ||
	    relay_mail_new(r) != CHAT_OK) {
		chat_relay_free(r);
		return CHAT_ERR_NOMEM;
	}
	int rc = relay_cluster_new(r);
	if (rc != CHAT_OK) {
		chat_relay_free(r);
		return rc;
	}
	*out = r;
	return CHAT_OK;
}

int chat_relay_reconfigure(struct chat_relay *r, const struct chat_relay_config *cfg)
{
	struct chat_relay_config old = r->cfg;
	int swept, rc;

	if (!cfg || cfg->max_clients < 1 || cfg->reserved_slots >= cfg->max_clients ||
	    cfg->limits.out_limit < 1 || cfg->nsuites > CHAT_SUITES_MAX)
		return CHAT_ERR_INVALID;
	/* Whatever can fail, before anything changes. */
	swept = cfg->idle_timeout_ms > 0 || cfg->keepalive_s || cfg->dead_after_s ||
	        cfg->login_timeout_s || cfg->log_interval_s;
	if ((cfg->max_unauth_per_address && !r->addrs && chat_addrcount_new(&r->addrs) != CHAT_OK) ||
	    (swept && !r->sweep_timer &&
	     chat_loop_timer_add(r->loop, 1000, sweep, r, &r->sweep_timer) != CHAT_OK))
		return CHAT_ERR_NOMEM;
	if ((rc = relay_accounts_configure(r, cfg)) != CHAT_OK)
		return rc;
	r->cfg = *cfg;
	/* What stays as made: the store, the buffer every message is built in. */
	r->cfg.store = old.store;
	r->cfg.limits.max_frame = old.limits.max_frame;
	r->cfg.max_pending_offers = old.max_pending_offers;
	r->cfg.max_bad_requests = old.max_bad_requests;
	apply_config(r); /* allocates nothing now */
	if (r->cfg.limits.out_limit != old.limits.out_limit)
		for (struct client *c = r->clients; c; c = c->next)
			if (!c->dead && c->state == ST_LOGGED_IN)
				chat_conn_set_limits(c->conn, &r->cfg.limits);
	return CHAT_OK;
}

void chat_relay_free(struct chat_relay *r)
{
	if (!r)
		return;
	while (r->clients)
		chat_conn_close(r->clients->conn, CHAT_OK, "relay stopped");
	while (r->waiting)
		chat_conn_close(r->waiting->conn, CHAT_OK, "relay stopped");
	relay_cluster_free(r);
	chat_addrcount_free(r->addrs);
	if (r->sweep_timer)
		chat_loop_timer_cancel(r->loop, r->sweep_timer);
	relay_mail_free(r);
	relay_accounts_free(r);
	while (r->rooms) /* only rooms nobody ever joined (tests) are left */
		free_room(r, r->rooms);
	free(r->room_buckets);
	free(r->buckets);
	chat_wbuf_free(&r->wb);
	free(r);
}

/* A connection not taken: BYE with the reason (best effort, one write to
 * the fresh socket) and close. */
static void refuse(struct chat_relay *r, const struct chat_transport_ops *tp, void *handle,
                   const char *reason)
{
	uint8_t frame[CHAT_FRAME_HDR + 3 + CHAT_TEXT_MAX];
	size_t sent = 0;

	relay_begin(r, CHAT_MSG_BYE);
	chat_put_str16(&r->wb, reason);
	if (!r->wb.err && r->wb.len <= sizeof(frame) - CHAT_FRAME_HDR) {
		chat_frame_put_header(r->wb.len, frame);
		memcpy(frame + CHAT_FRAME_HDR, r->wb.data, r->wb.len);
		tp->write(handle, CHAT_FRAME_HDR + r->wb.len, frame, &sent);
	}
	tp->close(handle);
}

/* The connections not logged in hold all they may (relay.max_clients -
 * relay.reserved_slots): the oldest of them makes room for the new one, so
 * a flood that got in first cannot keep everyone else out. */
static void evict_oldest(struct chat_relay *r, const char *for_peer, uint64_t now)
{
	struct client *old = r->waiting;

	chat_log_limited(&r->lim_evict, now, "closing %s (connected %u s ago, not logged in) to make "
	                 "room for %s: %zu connections have not logged in (relay.max_clients - "
	                 "relay.reserved_slots)", chat_conn_peer(old->conn), r->sweeps - old->born_sweep,
	                 for_peer, r->nwaiting);
	close_logged(r, old, CHAT_ERR_NOSPACE,
	             "too many connections have not logged in: closed to make room for a newer one");
}

int chat_relay_accept(struct chat_relay *r, const struct chat_transport_ops *tp, void *handle)
{
	char peer[CHAT_ADDR_MAX] = "?";
	uint32_t slot = CHAT_ADDRCOUNT_NONE, count = 0;
	uint64_t now = chat_loop_now_ms();
	struct client *c;
	int rc;

	tp->address(handle, 0, sizeof(peer), peer);
	if (r->nclients >= r->cfg.max_clients) {
		chat_log_limited(&r->lim_full, now, "refusing %s: %zu clients connected (relay.max_clients)",
		                 peer, r->nclients);
		refuse(r, tp, handle, "the relay is full: try again later");
		return CHAT_ERR_NOSPACE;
	}
	/* r->addrs stays once made, also after max_unauth_per_address is set to 0. */
	if (r->addrs && r->cfg.max_unauth_per_address) {
		rc = chat_addrcount_add(r->addrs, peer, &slot, &count);
		if (rc != CHAT_OK) {
			tp->close(handle);
			return rc;
		}
		if (count > r->cfg.max_unauth_per_address) {
			char from[CHAT_ADDR_MAX];
			chat_addrcount_release(r->addrs, slot);
			chat_addrcount_describe(peer, sizeof(from), from);
			chat_log_limited(&r->lim_addr, now, "refusing %s: %u connections from %s have not "
			                 "logged in yet (relay.max_unauth_per_address)", peer,
			                 r->cfg.max_unauth_per_address, from);
			refuse(r, tp, handle, "too many connections from your address have not logged in "
			       "yet: try again later");
			return CHAT_ERR_NOSPACE;
		}
	}
	if (r->nwaiting >= r->waiting_max && r->waiting)
		evict_oldest(r, peer, now);
	c = calloc(1, sizeof(*c));
	if (!c) {
		chat_addrcount_release(r->addrs, slot);
		tp->close(handle);
		return CHAT_ERR_NOMEM;
	}
	c->r = r;
	c->active_sweep = r->sweeps;
	c->rx_sweep = r->sweeps;
	c->born_sweep = r->sweeps;
	c->since_s = (uint32_t)(chat_unix_ms() / 1000);
	rc = chat_conn_new(r->loop, tp, handle, &r->prelogin, &relay_cbs, c, &c->conn);
	if (rc) {
		chat_addrcount_release(r->addrs, slot);
		free(c);
		return rc;
	}
	c->waiting = 1;
	c->addr_slot = slot;
	c->prev = r->waiting_tail;
	if (r->waiting_tail)
		r->waiting_tail->next = c;
	else
		r->waiting = c;
	r->waiting_tail = c;
	r->nclients++;
	r->nwaiting++;
	chat_log_limited(&r->lim_connect, now, "client %s connected (%zu connected, %zu not logged in)",
	                 peer, r->nclients, r->nwaiting);
	return CHAT_OK;
}

void chat_relay_shutdown(struct chat_relay *r, const char *reason)
{
	for (int list = 0; list < 2; list++) {
		for (struct client *c = list ? r->clients : r->waiting, *next; c; c = next) {
			next = c->next;
			relay_bye(r, c, reason);
		}
	}
}

size_t chat_relay_clients(const struct chat_relay *r)
{
	return r->nclients;
}
