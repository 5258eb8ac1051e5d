/* relay.cluster: several relays as one service (docs/CLUSTER.md).  Each
 * relay announces the users it holds on a shared presence channel and
 * forwards what its users send to users held elsewhere to that relay's own
 * channel; the Redis link itself is the module cluster-redis.so
 * (cluster_link.h), so nothing here knows hiredis.
 *
 * A user held by another relay is a "ghost": a struct client with no
 * connection, in the same name table, rooms and links as local clients, so
 * the request handlers of relay.c work unchanged.  What is sent to a ghost
 * (relay_flush_to) is published to its relay, which mirrors the link
 * change the frame implies (OFFERED, ANSWERED, CLOSED) and hands the frame
 * to its local client.  Relays trust each other on the bus: Redis is inside
 * the operator's trust boundary, and end-to-end payloads stay sealed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_link.h"
#include "host.h"
#include "module.h"
#include "relay_int.h"

#define NODE_ID_MAX 32
#define HB_PART 65536u              /* bytes of one heartbeat message, at most */
#define OUT_MAX (16u * 1024 * 1024) /* published bytes not yet acknowledged by Redis */

/* Bus messages: u8 kind, str8 node, then by kind. */
enum {
	BUS_UP = 'U',        /* record: a user logged in (presence) */
	BUS_DOWN = 'D',      /* str8 name: a user left (presence) */
	BUS_JOIN = 'J',      /* str8 name, str8 room (presence) */
	BUS_LEAVE = 'L',     /* str8 name, str8 room (presence) */
	BUS_HEARTBEAT = 'H', /* u32 generation, u8 flags (1 first, 2 last), u16 n, n x record */
	BUS_SYNC = 'S',      /* a relay (re)joined: everyone send a heartbeat now */
	BUS_FRAME = 'F',     /* str8 to, rest: a relay->client frame for a local user (node channel) */
	BUS_MAIL = 'M',      /* str8 name: stored mail is waiting for that user (node channel) */
};
/* record: str8 name, u8 flags (1 registered), u64 login ms, suites (as
 * announced in HELLO), u8 n, n x str8 room */

struct cnode {
	struct cnode *next;
	char id[NODE_ID_MAX + 1];
	uint64_t seen_ms;  /* monotonic: its last message */
	size_t nghosts;
	uint32_t gen;      /* of the heartbeat being received */
};

struct ghost {
	struct client c; /* first: a ghost is handed around as a client */
	struct account_state acct;
	struct cnode *node;
	uint64_t login_ms;
	uint32_t gen;
};

struct relay_cluster {
	struct chat_relay *r;
	const struct chat_cluster_module *mod;
	struct chat_cluster_link *link;
	struct chat_cluster_host host;
	char url[256];
	char node[NODE_ID_MAX + 1];
	char prefix[32];
	char ch_presence[64], ch_mine[96];
	int up, ever_up;
	unsigned ttl_ms;
	uint32_t gen;
	struct chat_timer *timer;
	struct cnode *nodes;
	struct chat_wbuf wb;
};

struct rd {
	const uint8_t *p;
	size_t left;
	int bad;
};

static unsigned rd_u8(struct rd *d)
{
	if (d->left < 1) {
		d->bad = 1;
		return 0;
	}
	d->left--;
	return *d->p++;
}

static uint64_t rd_uN(struct rd *d, unsigned n)
{
	uint64_t v = 0;

	if (d->left < n) {
		d->bad = 1;
		return 0;
	}
	for (unsigned i = 0; i < n; i++)
		v = v << 8 | d->p[i];
	d->p += n;
	d->left -= n;
	return v;
}

/* str8 of 1..32 bytes into dst (a name, node id, room or suite). */
static void rd_name(struct rd *d, char dst[CHAT_NAME_MAX + 1])
{
	unsigned n = rd_u8(d);

	dst[0] = '\0';
	if (d->bad || n < 1 || n > CHAT_NAME_MAX || d->left < n || memchr(d->p, 0, n)) {
		d->bad = 1;
		return;
	}
	memcpy(dst, d->p, n);
	dst[n] = '\0';
	d->p += n;
	d->left -= n;
}

struct record {
	char name[CHAT_NAME_MAX + 1];
	int registered;
	uint64_t login_ms;
	const uint8_t *suites; /* wire form */
	size_t suites_len;
	unsigned nrooms;
	char rooms[255][CHAT_NAME_MAX + 1];
};

/* A user or room name, as clients may choose them. */
static void rd_user(struct rd *d, char dst[CHAT_NAME_MAX + 1])
{
	rd_name(d, dst);
	if (!d->bad && chat_name_check(strlen(dst), dst))
		d->bad = 1;
}

/* What relays publish is what clients parse again (WHO_LIST, MEMBERS,
 * OFFERED): checked as strictly (docs/PROTOCOL.md 2), whatever the relay
 * that sent it. */
static int rd_record(struct rd *d, struct record *rec)
{
	char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];

	rd_user(d, rec->name);
	rec->registered = rd_u8(d) & 1;
	rec->login_ms = rd_uN(d, 8);
	rec->suites = d->p;
	unsigned n = rd_u8(d);
	if (n > CHAT_SUITES_MAX)
		d->bad = 1;
	for (unsigned i = 0; i < n && !d->bad; i++) {
		rd_name(d, suites[i]);
		if (strspn(suites[i], "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(suites[i]))
			d->bad = 1;
		for (unsigned k = 0; k < i && !d->bad; k++)
			d->bad = strcmp(suites[k], suites[i]) == 0;
	}
	rec->suites_len = (size_t)(d->p - rec->suites);
	rec->nrooms = rd_u8(d);
	for (unsigned i = 0; i < rec->nrooms && !d->bad; i++)
		rd_user(d, rec->rooms[i]);
	return d->bad ? -1 : 0;
}

static int is_ghost(const struct client *c)
{
	return !c->conn;
}

/* When c logged in, in Unix ms: what decides between two sessions of one name. */
static uint64_t login_ms(const struct client *c)
{
	if (is_ghost(c))
		return ((const struct ghost *)c)->login_ms;
	if (c->acct && c->acct->registered && c->acct->login_ms)
		return (uint64_t)c->acct->login_ms;
	return (uint64_t)c->since_s * 1000u;
}

/* Does session b (remote) beat session a (held here)?  Both relays decide
 * alike from the same values.  Registered users: the newer login wins (a
 * second login ends the first, as on one relay).  Guests: the name stays
 * with whoever took it first.  Ties: the node ids. */
static int beats(uint64_t a_ms, const char *a_node, int a_reg, uint64_t b_ms, const char *b_node,
                 int b_reg)
{
	if (a_reg && b_reg)
		return b_ms != a_ms ? b_ms > a_ms : strcmp(b_node, a_node) > 0;
	return b_ms != a_ms ? b_ms < a_ms : strcmp(b_node, a_node) < 0;
}

/* ---- publishing */

static void bus_begin(struct relay_cluster *cl, int kind)
{
	chat_wbuf_reset(&cl->wb);
	chat_put_u8(&cl->wb, (unsigned)kind);
	chat_put_str8(&cl->wb, cl->node);
}

static void bus_send(struct relay_cluster *cl, const char *channel)
{
	if (!cl->up)
		return;
	if (cl->wb.err) {
		chat_err("cluster: cannot build a message for %s: %s", channel, chat_strerror(cl->wb.err));
		return;
	}
	/* A failure drops the link (the module says so): everything is
	 * announced again when it is back. */
	cl->mod->publish(cl->link, channel, cl->wb.len, cl->wb.data);
}

static void put_record(struct relay_cluster *cl, const struct client *c)
{
	struct chat_relay *r = cl->r;

	chat_put_str8(&cl->wb, c->name);
	chat_put_u8(&cl->wb, relay_is_registered(c) ? 1u : 0u);
	chat_put_u64(&cl->wb, login_ms(c));
	if (c->announced) {
		size_t len = 1;
		for (unsigned i = 0; i < c->announced[0]; i++)
			len += 1u + c->announced[len];
		chat_put_bytes(&cl->wb, len, c->announced);
	} else {
		chat_put_u8(&cl->wb, c->nsuites);
		for (size_t i = 0; i < c->nsuites; i++)
			chat_put_str8(&cl->wb, r->suite_names[c->suites[i]]);
	}
	chat_put_u8(&cl->wb, c->nrooms);
	for (size_t i = 0; i < c->nrooms; i++)
		chat_put_str8(&cl->wb, c->rooms[i]->name);
}

/* Every local user, in parts of at most HB_PART bytes. */
static void heartbeat(struct relay_cluster *cl)
{
	struct client *c = cl->r->clients;
	uint32_t gen = ++cl->gen;
	int first = 1;

	do {
		size_t count = 0, at;
		bus_begin(cl, BUS_HEARTBEAT);
		chat_put_u32(&cl->wb, gen);
		size_t flags_at = cl->wb.len;
		chat_put_u8(&cl->wb, first ? 1u : 0u);
		at = cl->wb.len;
		chat_put_u16(&cl->wb, 0);
		for (; c && cl->wb.len < HB_PART && count < 65535; c = c->next) {
			if (c->dead || c->state != ST_LOGGED_IN)
				continue;
			put_record(cl, c);
			count++;
		}
		if (!c && !cl->wb.err)
			cl->wb.data[flags_at] |= 2u;
		if (!cl->wb.err) {
			cl->wb.data[at] = (uint8_t)(count >> 8);
			cl->wb.data[at + 1] = (uint8_t)count;
		}
		bus_send(cl, cl->ch_presence);
		first = 0;
	} while (c && cl->up && !cl->wb.err);
}

/* ---- ghosts */

static void ghost_free(void *arg)
{
	struct ghost *g = arg;

	free(g->c.announced);
	free(g);
}

/* Gone exactly as a disconnect is: conversations get CLOSED, rooms the
 * leave event.  Freed after this round (callers may hold it). */
static void ghost_drop(struct relay_cluster *cl, struct ghost *g)
{
	struct chat_relay *r = cl->r;
	struct client *c = &g->c;

	if (c->dead)
		return;
	c->dead = 1;
	if (c->prev)
		c->prev->next = c->next;
	else
		r->ghosts = c->next;
	if (c->next)
		c->next->prev = c->prev;
	g->node->nghosts--;
	relay_client_gone(r, c);
	c->acct = NULL;
	if (chat_loop_defer(r->loop, ghost_free, g) != CHAT_OK)
		chat_err("cannot defer freeing a remote user; leaking it");
}

static void set_rooms(struct relay_cluster *cl, struct ghost *g, const struct record *rec)
{
	struct client *c = &g->c;

	for (size_t i = c->nrooms; i-- > 0;) {
		int keep = 0;
		for (unsigned k = 0; k < rec->nrooms && !keep; k++)
			keep = strcmp(c->rooms[i]->name, rec->rooms[k]) == 0;
		if (!keep)
			relay_leave_room(cl->r, c, c->rooms[i]->name);
	}
	for (unsigned k = 0; k < rec->nrooms && !c->dead; k++) {
		int have = 0;
		for (size_t i = 0; i < c->nrooms && !have; i++)
			have = strcmp(c->rooms[i]->name, rec->rooms[k]) == 0;
		if (!have && relay_join_room(cl->r, c, rec->rooms[k]) != CHAT_OK)
			chat_warn("cluster: out of memory adding %s to room %s", c->name, rec->rooms[k]);
	}
}

static struct ghost *ghost_new(struct relay_cluster *cl, struct cnode *node, const struct record *rec)
{
	struct chat_relay *r = cl->r;
	struct ghost *g = calloc(1, sizeof(*g));
	struct rd d = { rec->suites, rec->suites_len, 0 };
	char suite[CHAT_NAME_MAX + 1];

	if (!g)
		return NULL;
	struct client *c = &g->c;
	c->r = r;
	c->state = ST_LOGGED_IN;
	snprintf(c->name, sizeof(c->name), "%s", rec->name);
	c->since_s = (uint32_t)(rec->login_ms / 1000);
	unsigned n = rd_u8(&d);
	for (unsigned i = 0; i < n; i++) {
		rd_name(&d, suite);
		int idx = relay_carries(r, suite) ? relay_intern_suite(r, suite) : -1;
		if (idx >= 0)
			c->suites[c->nsuites++] = (uint8_t)idx;
	}
	if (c->nsuites != n) { /* kept as announced: relay_put_suites */
		if (!(c->announced = malloc(rec->suites_len))) {
			free(g);
			return NULL;
		}
		memcpy(c->announced, rec->suites, rec->suites_len);
	}
	if (rec->registered) {
		g->acct.registered = 1;
		g->acct.group = CHAT_GROUP_REGULAR;
		c->acct = &g->acct;
	}
	g->node = node;
	g->login_ms = rec->login_ms;
	g->gen = node->gen;
	if (relay_insert_user(r, c) != CHAT_OK) {
		free(c->announced);
		free(g);
		return NULL;
	}
	c->prev = NULL;
	c->next = r->ghosts;
	if (r->ghosts)
		r->ghosts->prev = c;
	r->ghosts = c;
	node->nghosts++;
	set_rooms(cl, g, rec);
	return g;
}

/* A user of node, from an UP or a heartbeat. */
static void apply_record(struct relay_cluster *cl, struct cnode *node, const struct record *rec)
{
	struct chat_relay *r = cl->r;
	struct client *x = relay_find_user(r, rec->name);

	if (x && is_ghost(x)) {
		struct ghost *g = (struct ghost *)x;
		if (g->node == node && g->login_ms == rec->login_ms &&
		    relay_is_registered(x) == rec->registered) {
			g->gen = node->gen;
			set_rooms(cl, g, rec);
			return;
		}
		if (g->node != node && !beats(g->login_ms, g->node->id, relay_is_registered(x),
		                              rec->login_ms, node->id, rec->registered))
			return; /* the session elsewhere stays; node ends its own */
		ghost_drop(cl, g);
	} else if (x) {
		if (!beats(login_ms(x), cl->node, relay_is_registered(x), rec->login_ms, node->id,
		           rec->registered))
			return; /* ours stays; node ends its own when it hears of ours */
		int reg = relay_is_registered(x);
		relay_remove_user(r, x);
		x->state = ST_HELLO; /* no longer logged in: its close says nothing to the cluster */
		chat_info("%s logged in on relay %s: closing the connection %s here", rec->name, node->id,
		          chat_conn_peer(x->conn));
		relay_bye(r, x, reg ? "logged in from another connection"
		                    : "this name was taken on another relay of this service at the same time");
	}
	if (!ghost_new(cl, node, rec))
		chat_warn("cluster: out of memory adding %s (relay %s)", rec->name, node->id);
}

static void drop_ghosts(struct relay_cluster *cl, struct cnode *node)
{
	for (struct client *c = cl->r->ghosts, *next; c; c = next) {
		next = c->next;
		if (((struct ghost *)c)->node == node)
			ghost_drop(cl, (struct ghost *)c);
	}
}

static void drop_node(struct relay_cluster *cl, struct cnode *node)
{
	drop_ghosts(cl, node);
	for (struct cnode **pp = &cl->nodes; *pp; pp = &(*pp)->next) {
		if (*pp == node) {
			*pp = node->next;
			break;
		}
	}
	free(node);
}

static struct cnode *find_node(struct relay_cluster *cl, const char *id, int make)
{
	for (struct cnode *n = cl->nodes; n; n = n->next)
		if (strcmp(n->id, id) == 0)
			return n;
	if (!make)
		return NULL;
	struct cnode *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	snprintf(n->id, sizeof(n->id), "%s", id);
	n->next = cl->nodes;
	cl->nodes = n;
	chat_info("cluster: relay %s is there", id);
	return n;
}

/* ---- receiving */

static int forwardable(int type)
{
	switch (type) {
	case CHAT_MSG_OFFERED:
	case CHAT_MSG_ANSWERED:
	case CHAT_MSG_DELIVER:
	case CHAT_MSG_CLOSED:
	case CHAT_MSG_ROOM_DELIVER:
	case CHAT_MSG_RECEIPT:
	case CHAT_MSG_FRIEND_EVENT:
		return 1;
	default: /* ROOM_EVENT: each relay makes its own from the presence channel */
		return 0;
	}
}

/* A frame from a user on `node` for our local user: checked as a client
 * would parse it (relays trust each other, but a frame this relay passes
 * on is well formed whatever another one sent), then the link change it
 * implies is mirrored, so both relays agree on the conversation, and it is
 * handed on. */
static void on_frame(struct relay_cluster *cl, struct cnode *node, struct rd *d)
{
	struct chat_relay *r = cl->r;
	char to[CHAT_NAME_MAX + 1], err[CHAT_TEXT_MAX];
	struct chat_msg m;

	rd_user(d, to);
	if (d->bad)
		return;
	if (chat_msg_parse(d->left, d->p, &m, sizeof(err), err) != CHAT_OK || !forwardable(m.type)) {
		chat_debug("cluster: relay %s forwarded a frame for %s that is not passed on: %s",
		           node->id, to, forwardable(d->left ? d->p[0] : 0) ? err : "not a forwarded type");
		return;
	}
	struct client *t = relay_find_user(r, to);
	if (!t || is_ghost(t) || t->dead || t->state != ST_LOGGED_IN)
		return; /* gone meanwhile: as if the link to it had dropped */
	struct client *g = NULL;
	if (m.type == CHAT_MSG_OFFERED || m.type == CHAT_MSG_ANSWERED || m.type == CHAT_MSG_CLOSED ||
	    m.type == CHAT_MSG_DELIVER) {
		g = relay_find_user(r, m.name);
		if (g && !is_ghost(g))
			g = NULL;
	}
	/* Between registered users conversations live in the store, not in links. */
	int live = g && !(relay_is_registered(g) && relay_is_registered(t));
	struct link *l = g ? relay_find_link(t, g) : NULL;
	if (m.type == CHAT_MSG_OFFERED && live && !l) {
		if (relay_add_link(t, g, LINK_OFFER_IN) || relay_add_link(g, t, LINK_OFFER_OUT)) {
			relay_drop_link(t, g);
			return;
		}
	} else if (m.type == CHAT_MSG_ANSWERED && live && l) {
		if (m.flag) {
			struct link *back = relay_find_link(g, t);
			l->state = LINK_ACCEPTED;
			if (back)
				back->state = LINK_ACCEPTED;
		} else {
			relay_drop_link(t, g);
			relay_drop_link(g, t);
		}
	} else if (m.type == CHAT_MSG_CLOSED && (live || !g)) {
		if (!l)
			return; /* already ended here (its relay said DOWN first) */
		relay_drop_link(t, g);
		relay_drop_link(g, t);
	}
	chat_conn_send(t->conn, d->left, d->p);
}

static void on_message(void *arg, const char *channel, size_t len, const uint8_t *data)
{
	struct relay_cluster *cl = arg;
	struct chat_relay *r = cl->r;
	struct rd d = { data, len, 0 };
	char node_id[CHAT_NAME_MAX + 1], name[CHAT_NAME_MAX + 1], room[CHAT_NAME_MAX + 1];
	static struct record rec; /* 8 KB: one at a time (one loop) */

	(void)channel;
	int kind = (int)rd_u8(&d);
	rd_user(&d, node_id);
	if (d.bad || strcmp(node_id, cl->node) == 0)
		return; /* our own, back from the presence channel */
	struct cnode *node = find_node(cl, node_id, 1);
	if (!node)
		return;
	node->seen_ms = chat_loop_now_ms();
	switch (kind) {
	case BUS_UP:
		if (rd_record(&d, &rec) == 0)
			apply_record(cl, node, &rec);
		break;
	case BUS_DOWN:
	case BUS_JOIN:
	case BUS_LEAVE: {
		rd_user(&d, name);
		if (kind != BUS_DOWN)
			rd_user(&d, room);
		struct client *x = d.bad ? NULL : relay_find_user(r, name);
		if (!x || !is_ghost(x) || ((struct ghost *)x)->node != node)
			break;
		if (kind == BUS_DOWN)
			ghost_drop(cl, (struct ghost *)x);
		else if (kind == BUS_LEAVE)
			relay_leave_room(r, x, room);
		else if (relay_join_room(r, x, room) != CHAT_OK)
			chat_warn("cluster: out of memory adding %s to room %s", name, room);
		break;
	}
	case BUS_HEARTBEAT: {
		uint32_t gen = (uint32_t)rd_uN(&d, 4);
		unsigned flags = rd_u8(&d), n = (unsigned)rd_uN(&d, 2);
		if (d.bad)
			break;
		if (flags & 1)
			node->gen = gen;
		else if (node->gen != gen)
			break; /* a part of a heartbeat whose start we missed */
		for (unsigned i = 0; i < n && rd_record(&d, &rec) == 0; i++)
			apply_record(cl, node, &rec);
		if (flags & 2) /* complete: whoever it did not list has gone */
			for (struct client *c = r->ghosts, *next; c; c = next) {
				next = c->next;
				struct ghost *g = (struct ghost *)c;
				if (g->node == node && g->gen != gen)
					ghost_drop(cl, g);
			}
		break;
	}
	case BUS_SYNC:
		/* It starts afresh (a start, or a rejoin after it dropped all
		 * ghosts and told its users): so do we with its users, whose
		 * heartbeat follows. */
		drop_ghosts(cl, node);
		heartbeat(cl);
		break;
	case BUS_FRAME:
		on_frame(cl, node, &d);
		break;
	case BUS_MAIL: {
		rd_user(&d, name);
		struct client *x = d.bad ? NULL : relay_find_user(r, name);
		if (x && !is_ghost(x) && !x->dead && relay_is_registered(x))
			relay_mail_wanted(r, x);
		break;
	}
	default:
		break;
	}
}

/* ---- the link */

static void on_up(void *arg)
{
	struct relay_cluster *cl = arg;
	struct chat_relay *r = cl->r;

	cl->up = 1;
	chat_info("cluster: %s %s as relay %s", cl->ever_up ? "rejoined" : "joined", cl->url, cl->node);
	cl->ever_up = 1;
	bus_begin(cl, BUS_SYNC);
	bus_send(cl, cl->ch_presence);
	heartbeat(cl);
	/* Wake-ups published while we were away are lost: look for mail. */
	for (struct client *c = r->clients; c; c = c->next)
		if (!c->dead && c->state == ST_LOGGED_IN && relay_is_registered(c))
			relay_mail_wanted(r, c);
}

static void on_down(void *arg, const char *why)
{
	struct relay_cluster *cl = arg;
	struct chat_relay *r = cl->r;

	chat_warn("cluster: %s; users on other relays are unreachable until it is back "
	          "(retrying, 1 s doubling to 10 s)", why);
	/* First why, then the CLOSED and leave events it causes. */
	for (struct client *c = r->clients, *next; c && cl->up; c = next) {
		next = c->next;
		if (!c->dead && c->state == ST_LOGGED_IN)
			relay_error(r, c, CHAT_PERR_NOT_CONNECTED, 0, NULL,
			            "users on other relays are unreachable: this relay lost its cluster "
			            "link (%s); they come back when it returns", cl->url);
	}
	cl->up = 0;
	while (cl->nodes)
		drop_node(cl, cl->nodes);
}

static long long on_tick(struct chat_loop *loop, void *arg)
{
	struct relay_cluster *cl = arg;
	uint64_t now = chat_loop_now_ms();

	(void)loop;
	if (cl->up)
		heartbeat(cl);
	for (struct cnode *n = cl->nodes, *next; n; n = next) {
		next = n->next;
		if (now - n->seen_ms > cl->ttl_ms) {
			chat_warn("cluster: relay %s sent nothing for %llu ms (relay.cluster_ttl): its %zu "
			          "user(s) are gone", n->id, (unsigned long long)(now - n->seen_ms),
			          n->nghosts);
			drop_node(cl, n);
		}
	}
	return cl->ttl_ms / 3 ? cl->ttl_ms / 3 : 1;
}

/* redis://HOST:PORT[/DB], HOST a name, an IPv4 address or [IPv6]. */
static int parse_url(const char *url, size_t cap, char *host, int *port, unsigned *db)
{
	const char *p = url, *end;
	char *e;

	if (strncmp(p, "redis://", 8) != 0)
		return -1;
	p += 8;
	if (*p == '[') {
		end = strchr(p, ']');
		if (!end || end[1] != ':')
			return -1;
		p++;
	} else {
		end = strchr(p, ':');
		if (!end)
			return -1;
	}
	if (end == p || (size_t)(end - p) >= cap)
		return -1;
	memcpy(host, p, (size_t)(end - p));
	host[end - p] = '\0';
	p = end + (*end == ']' ? 2 : 1);
	long v = strtol(p, &e, 10);
	if (e == p || v < 1 || v > 65535 || (*e && *e != '/'))
		return -1;
	*port = (int)v;
	*db = 0;
	if (*e == '/') {
		p = e + 1;
		v = strtol(p, &e, 10);
		if (e == p || *e || v < 0 || v > 65535)
			return -1;
		*db = (unsigned)v;
	}
	return 0;
}

int chat_relay_cluster_check(const char *url, const char *node_id, size_t errlen, char *err)
{
	char host[200], merr[600];
	unsigned db;
	int port;

	if (parse_url(url, sizeof(host), host, &port, &db) != 0) {
		snprintf(err, errlen, "relay.cluster '%s': expected redis://HOST:PORT or "
		         "redis://HOST:PORT/DB", url);
		return CHAT_ERR_INVALID;
	}
	if (node_id && *node_id &&
	    (chat_name_check(strlen(node_id), node_id) || strlen(node_id) > NODE_ID_MAX)) {
		snprintf(err, errlen, "relay.node_id '%s': expected 1 to 32 characters [a-z0-9_.-]",
		         node_id);
		return CHAT_ERR_INVALID;
	}
	const struct chat_cluster_module *mod =
		chat_relay_module_symbol("cluster-redis", CHAT_CLUSTER_LINK_SYMBOL, sizeof(merr), merr);
	if (!mod) {
		snprintf(err, errlen, "relay.cluster %s: %s", url, merr);
		return CHAT_ERR_UNSUPPORTED;
	}
	if (mod->version != CHAT_CLUSTER_LINK_VERSION) {
		snprintf(err, errlen, "relay.cluster %s: module cluster-redis has interface version %u, "
		         "this relay needs %u (install the module of this build)", url, mod->version,
		         CHAT_CLUSTER_LINK_VERSION);
		return CHAT_ERR_UNSUPPORTED;
	}
	return CHAT_OK;
}

int relay_cluster_new(struct chat_relay *r)
{
	const struct chat_relay_config *cfg = &r->cfg;
	const struct chat_cluster_module *mod;
	char host[200], err[600];
	unsigned db;
	int port;

	if (!cfg->cluster || !*cfg->cluster)
		return CHAT_OK;
	if (parse_url(cfg->cluster, sizeof(host), host, &port, &db) != 0) {
		chat_err("relay.cluster '%s': expected redis://HOST:PORT or redis://HOST:PORT/DB",
		         cfg->cluster);
		return CHAT_ERR_INVALID;
	}
	mod = chat_relay_module_symbol("cluster-redis", CHAT_CLUSTER_LINK_SYMBOL, sizeof(err), err);
	if (!mod) {
		chat_err("relay.cluster %s: %s", cfg->cluster, err);
		return CHAT_ERR_UNSUPPORTED;
	}
	if (mod->version != CHAT_CLUSTER_LINK_VERSION) {
		chat_err("relay.cluster %s: module cluster-redis has interface version %u, this relay "
		         "needs %u (install the module of this build)", cfg->cluster, mod->version,
		         CHAT_CLUSTER_LINK_VERSION);
		return CHAT_ERR_UNSUPPORTED;
	}
	return relay_cluster_start(r, mod, cfg->cluster, host, port, db);
}

int relay_cluster_start(struct chat_relay *r, const struct chat_cluster_module *mod,
                        const char *url, const char *host, int port, unsigned db)
{
	const struct chat_relay_config *cfg = &r->cfg;
	struct relay_cluster *cl;
	char err[600];
	int rc;

	if (!(cl = calloc(1, sizeof(*cl))))
		return CHAT_ERR_NOMEM;
	cl->r = r;
	r->cluster = cl; /* freed with the relay, also after a failure here */
	chat_wbuf_init(&cl->wb, (cfg->limits.max_frame > HB_PART ? cfg->limits.max_frame : HB_PART) +
	                        16384);
	snprintf(cl->url, sizeof(cl->url), "%s", url);
	cl->ttl_ms = (cfg->cluster_ttl_s ? cfg->cluster_ttl_s : 9) * 1000u;
	if (cfg->node_id && *cfg->node_id) {
		if (chat_name_check(strlen(cfg->node_id), cfg->node_id) || strlen(cfg->node_id) > NODE_ID_MAX) {
			chat_err("relay.node_id '%s': expected 1 to 32 characters [a-z0-9_.-]", cfg->node_id);
			return CHAT_ERR_INVALID;
		}
		snprintf(cl->node, sizeof(cl->node), "%s", cfg->node_id);
	} else {
		uint8_t raw[6];
		if (chat_os_random(sizeof(raw), raw) != CHAT_OK)
			return CHAT_ERR_RANDOM;
		snprintf(cl->node, sizeof(cl->node), "r%02x%02x%02x%02x%02x%02x", raw[0], raw[1], raw[2],
		         raw[3], raw[4], raw[5]);
	}
	/* Pub/sub ignores Redis's databases: the index separates clusters
	 * sharing one server through the channel names instead. */
	if (db)
		snprintf(cl->prefix, sizeof(cl->prefix), "chat:db%u:", db);
	else
		snprintf(cl->prefix, sizeof(cl->prefix), "chat:");
	snprintf(cl->ch_presence, sizeof(cl->ch_presence), "%spresence", cl->prefix);
	snprintf(cl->ch_mine, sizeof(cl->ch_mine), "%snode:%s", cl->prefix, cl->node);
	cl->mod = mod;
	cl->host = (struct chat_cluster_host){
		.size = sizeof(cl->host),
		.loop = r->loop,
		.loop_add = chat_loop_add,
		.loop_modify = chat_loop_modify,
		.loop_remove = chat_loop_remove,
		.timer_add = chat_loop_timer_add,
		.timer_cancel = chat_loop_timer_cancel,
	};
	static const struct chat_cluster_cbs cbs = { on_up, on_down, on_message };
	const char *channels[] = { cl->ch_presence, cl->ch_mine };
	char name[48];
	snprintf(name, sizeof(name), "chat-relay:%s", cl->node);
	rc = cl->mod->open(&cl->host, host, port, name, 2, channels, OUT_MAX, &cbs, cl, &cl->link, sizeof(err),
	                   err);
	if (rc != 0) {
		chat_err("relay.cluster %s: %s", cl->url, err);
		return CHAT_ERR_IO;
	}
	if (chat_loop_timer_add(r->loop, cl->ttl_ms / 3, on_tick, cl, &cl->timer) != CHAT_OK)
		return CHAT_ERR_NOMEM;
	chat_info("cluster: relay %s connecting to %s (relay.cluster_ttl %u s)", cl->node, cl->url,
	          cl->ttl_ms / 1000);
	return CHAT_OK;
}

void relay_cluster_free(struct chat_relay *r)
{
	struct relay_cluster *cl = r->cluster;

	if (!cl)
		return;
	if (cl->timer)
		chat_loop_timer_cancel(r->loop, cl->timer);
	if (cl->link)
		cl->mod->close(cl->link);
	cl->link = NULL;
	cl->up = 0;
	while (cl->nodes)
		drop_node(cl, cl->nodes);
	chat_wbuf_free(&cl->wb);
	free(cl);
	r->cluster = NULL;
}

/* ---- what relay.c and relay_mail.c call */

void relay_cluster_forward(struct chat_relay *r, struct client *ghost, size_t len,
                           const uint8_t *frame)
{
	struct relay_cluster *cl = r->cluster;
	char channel[96];

	if (!cl || !len)
		return;
	if (!forwardable(frame[0]))
		return;
	struct ghost *g = (struct ghost *)ghost;
	snprintf(channel, sizeof(channel), "%snode:%s", cl->prefix, g->node->id);
	bus_begin(cl, BUS_FRAME);
	chat_put_str8(&cl->wb, ghost->name);
	chat_put_bytes(&cl->wb, len, frame);
	bus_send(cl, channel);
}

void relay_cluster_user_up(struct chat_relay *r, struct client *c)
{
	struct relay_cluster *cl = r->cluster;

	if (!cl || !cl->up)
		return;
	bus_begin(cl, BUS_UP);
	put_record(cl, c);
	bus_send(cl, cl->ch_presence);
}

void relay_cluster_user_down(struct chat_relay *r, struct client *c)
{
	struct relay_cluster *cl = r->cluster;

	if (!cl || !cl->up)
		return;
	bus_begin(cl, BUS_DOWN);
	chat_put_str8(&cl->wb, c->name);
	bus_send(cl, cl->ch_presence);
}

void relay_cluster_room(struct chat_relay *r, struct client *c, const char *room, int joined)
{
	struct relay_cluster *cl = r->cluster;

	/* not for a closing client: its DOWN said it all */
	if (!cl || !cl->up || is_ghost(c) || c->dead || c->state != ST_LOGGED_IN)
		return;
	bus_begin(cl, joined ? BUS_JOIN : BUS_LEAVE);
	chat_put_str8(&cl->wb, c->name);
	chat_put_str8(&cl->wb, room);
	bus_send(cl, cl->ch_presence);
}

void relay_cluster_wake(struct chat_relay *r, struct client *ghost)
{
	struct relay_cluster *cl = r->cluster;
	char channel[96];

	if (!cl || ghost->dead)
		return;
	snprintf(channel, sizeof(channel), "%snode:%s", cl->prefix,
	         ((struct ghost *)ghost)->node->id);
	bus_begin(cl, BUS_MAIL);
	chat_put_str8(&cl->wb, ghost->name);
	bus_send(cl, channel);
}

void relay_cluster_drop_ghost(struct chat_relay *r, struct client *ghost)
{
	if (r->cluster && is_ghost(ghost))
		ghost_drop(r->cluster, (struct ghost *)ghost);
}

const char *relay_cluster_lost(const struct chat_relay *r)
{
	return r->cluster && !r->cluster->up ? r->cluster->url : NULL;
}
