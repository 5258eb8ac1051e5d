/* Internals shared by the relay's files: relay.c (connections, guests,
 * conversations, rooms), relay_account.c (SCRAM logins, registration,
 * passwords, admin, friends) and relay_mail.c (the database: stored
 * messages, receipts, commit-then-acknowledge).  Not part of any API. */
#ifndef CHAT_RELAY_INT_H
#define CHAT_RELAY_INT_H

#include <stdint.h>

#include "addrcount.h"
#include "log.h"
#include "proto.h"
#include "relay.h"
#include "scram.h"
#include "siphash.h"
#include "store.h"
#include "throttle.h"

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
	struct room *next;          /* every room (ROOMS lists them) */
	struct room *hnext;         /* name hash chain */
	struct client **members;
	size_t n, cap;
	char name[CHAT_NAME_MAX + 1];
};

/* Per-connection state of a registered user, and of a SCRAM exchange in
 * progress (allocated only then: guests stay small). */
struct account_state {
	struct chat_scram_server *scram; /* AUTH .. AUTH_FINAL */
	char scram_user[CHAT_NAME_MAX + 1];
	uint8_t scram_op;                /* CHAT_AUTH_* being run */
	uint8_t passwd_ok;               /* AUTH op 2 succeeded: one PASSWD allowed */
	uint8_t registered;              /* logged in with an account */
	uint8_t group;                   /* CHAT_GROUP_* */
	int64_t pushed_id;               /* highest mail id sent to this client */
	uint32_t inflight;               /* mail sent and not yet ACKed */
	uint64_t inflight_bytes;
	uint8_t want_fill;               /* push more mail after this round */
	int64_t login_ms;                /* Unix ms of the login (relay.cluster: the newer wins) */
};

/* Per-client memory counts (bench: --idle-mem): 152 bytes, a 160-byte malloc
 * chunk (times are kept in 32 bits for that); a client whose HELLO listed
 * suites this relay does not carry also keeps that list as sent. */
struct client {
	struct chat_relay *r;
	struct chat_conn *conn;
	struct client *prev, *next; /* r->waiting (not logged in) or r->clients */
	struct client *hnext;       /* name hash chain (logged in only) */
	struct link *links;
	struct room **rooms;
	/* The suite list of its HELLO as it was sent (u8 n, n x str8: the wire
	 * form), kept only when it holds suites this relay does not carry (else
	 * it is suites[] itself): forwarded unchanged in OFFERED, ANSWERED,
	 * WHO_LIST, MEMBERS and USERS so that both clients can bind each other's
	 * own list into their handshake (PROTOCOL.md 2). */
	uint8_t *announced;
	uint16_t nlinks, caplinks;
	uint8_t nrooms, caprooms;
	uint8_t state, dead, bad, nsuites;
	uint8_t waiting;             /* on r->waiting, counted in r->nwaiting and addr_slot */
	uint8_t suites[CHAT_SUITES_MAX]; /* indices into the relay's suite table */
	char name[CHAT_NAME_MAX + 1];
	uint32_t rx_sweep;           /* r->sweeps when the last frame arrived */
	uint32_t born_sweep;         /* r->sweeps when it connected: relay.login_timeout */
	uint32_t active_sweep;       /* r->sweeps at its last request (not PING/PONG): relay.idle_timeout */
	uint32_t addr_slot;          /* its address's count in r->addrs, while waiting */
	uint32_t since_s;            /* connected since (Unix seconds; USERS says ms) */
	struct account_state *acct;  /* NULL for guests that never tried AUTH */
};

struct chat_relay {
	struct chat_loop *loop;
	struct chat_relay_config cfg;
	struct client *clients;      /* logged in (or being closed after a login elsewhere) */
	struct client *waiting, *waiting_tail; /* not logged in, oldest first */
	size_t nclients, nlogged, nwaiting; /* nclients counts both lists */
	size_t waiting_max;          /* max_clients - reserved_slots */
	struct chat_conn_limits prelogin; /* limits until login */
	struct chat_addrcount *addrs; /* waiting connections per address (NULL: no cap) */
	struct client *quiet;        /* being closed after its own log line */
	/* relay.cluster (relay_cluster.c): users held by other relays, as
	 * clients without a connection ("ghosts", in the name table too). */
	struct relay_cluster *cluster;
	struct client *ghosts;
	/* Repeated events, each kind logged once per relay.log_interval. */
	struct chat_log_limit lim_connect, lim_gone, lim_malformed, lim_full, lim_addr, lim_evict,
		lim_timeout;
	/* The two tables keyed by names clients choose, hashed with SipHash-2-4
	 * under hash_key, drawn at random in chat_relay_new: nobody can pick
	 * names that share a chain. */
	uint8_t hash_key[CHAT_SIPHASH_KEY_LEN];
	struct client **buckets;     /* logged-in users by name */
	size_t nbuckets;
	struct room *rooms;
	struct room **room_buckets;  /* rooms by name */
	size_t nroom_buckets, nrooms;
	struct chat_timer *sweep_timer; /* once a second: keepalive, dead links, idle timeout */
	uint32_t sweeps;             /* sweeps so far: the clock of the keepalive */
	char suite_names[SUITE_TABLE_MAX][CHAT_NAME_MAX + 1];
	/* relay.suites, the relay's own copy (cfg.suites points here), so that
	 * chat_relay_reconfigure can change it. */
	char policy[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	const char *policy_ptrs[CHAT_SUITES_MAX];
	size_t nsuite_names;
	struct chat_wbuf wb; /* reused for every outgoing message */
	/* accounts and mail (relay_account.c, relay_mail.c); cfg.store NULL: guests only */
	struct chat_logins *logins;  /* failed logins (throttle.h) */
	struct chat_throttle *registrations; /* REGISTER per address */
	int64_t register_forget_ms;  /* an address quiet this long registers freely again */
	uint8_t fake_secret[32];     /* fake SCRAM verifiers for unknown names (kept in the store) */
	struct pending *pending, **pending_tail; /* replies held until the commit */
	struct client **fill;        /* registered clients to push mail to after the commit */
	size_t nfill, capfill;
	int round_hook;              /* the end-of-round commit is scheduled */
	void *hook;                  /* its argument (detached when the relay is freed) */
	int round_failed;            /* a write failed: roll the round back */
	uint64_t req_id;             /* the client id of the SEND being handled, else 0:
	                                every answer to a SEND names it */
	struct chat_timer *expiry_timer;
	int64_t last_prune_ms;
	int64_t gone_logged_ms;      /* the store's file is gone: last said so (0: not yet) */
	uint64_t gone_refused;       /* requests refused since */
};


/* relay.c */
uint64_t relay_hash_name(const struct chat_relay *r, const char *name);
struct client *relay_find_user(const struct chat_relay *r, const char *name);
int relay_insert_user(struct chat_relay *r, struct client *c);
void relay_remove_user(struct chat_relay *r, struct client *c);
struct room *relay_find_room(const struct chat_relay *r, const char *name);
/* A new room with no members, in the list and the table (NULL: no memory);
 * it is freed when its last member leaves, or with the relay. */
struct room *relay_new_room(struct chat_relay *r, const char *name);
int relay_intern_suite(struct chat_relay *r, const char *name);
/* Does the relay carry the suite (relay.suites, as it is now)? */
int relay_carries(const struct chat_relay *r, const char *suite);
/* Do c and t allow a common suite the relay still carries? */
int relay_common_suite(const struct chat_relay *r, const struct client *c, const struct client *t);
int relay_has_suite(const struct client *c, int idx);
void relay_suites_join(const struct chat_relay *r, const struct client *c, const char *sep,
                       size_t cap, char *dst);
void relay_put_suites(struct chat_relay *r, const struct client *c);
void relay_begin(struct chat_relay *r, int type);
void relay_flush_to(struct chat_relay *r, struct client *c);
void relay_error(struct chat_relay *r, struct client *c, unsigned code, int ref,
                 const char *subject, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void relay_bye(struct chat_relay *r, struct client *c, const char *reason);
const char *relay_who(const struct client *c);
struct link *relay_find_link(struct client *c, const struct client *peer);
int relay_add_link(struct client *c, struct client *peer, uint8_t state);
void relay_drop_link(struct client *c, const struct client *peer);
size_t relay_list_begin(struct chat_relay *r, int type);
int relay_list_fits(struct chat_relay *r, size_t before);
void relay_list_end(struct chat_relay *r, size_t count_at, size_t count);
struct client *relay_target(struct chat_relay *r, struct client *c, const struct chat_msg *m);
/* Log in c as name (group, last SEND id) and say LOGGED_IN. */
int relay_logged_in(struct chat_relay *r, struct client *c, const char *name, int group,
                    uint64_t last_id);
int relay_is_registered(const struct client *c);
/* c leaves: out of the name table (if logged in), its conversations end
 * (CLOSED to each peer), it leaves its rooms.  A closing connection, or a
 * ghost its relay dropped. */
void relay_client_gone(struct chat_relay *r, struct client *c);
/* A ghost joins or leaves a room (no MEMBERS, no limits: its own relay
 * checked them); the members here hear of it. */
int relay_join_room(struct chat_relay *r, struct client *c, const char *room);
void relay_leave_room(struct chat_relay *r, struct client *c, const char *room);
/* Send a built frame to c, local or a ghost. */
void relay_send_frame(struct chat_relay *r, struct client *c, size_t len, const uint8_t *frame);

/* relay_cluster.c: every function is a no-op without relay.cluster.  A
 * ghost is a client whose conn is NULL. */
int relay_cluster_new(struct chat_relay *r);
struct chat_cluster_module;
/* relay_cluster_new once the module is loaded (and the fuzz harness, with a
 * table of its own): url as configured, host, port and DB index from it. */
int relay_cluster_start(struct chat_relay *r, const struct chat_cluster_module *mod,
                        const char *url, const char *host, int port, unsigned db);
void relay_cluster_free(struct chat_relay *r);
/* A frame for a ghost: published to its relay (room events are not: each
 * relay makes its own from the presence channel). */
void relay_cluster_forward(struct chat_relay *r, struct client *ghost, size_t len,
                           const uint8_t *frame);
void relay_cluster_user_up(struct chat_relay *r, struct client *c);
void relay_cluster_user_down(struct chat_relay *r, struct client *c);
void relay_cluster_room(struct chat_relay *r, struct client *c, const char *room, int joined);
/* Stored mail for the ghost's user (after the commit): wake its relay. */
void relay_cluster_wake(struct chat_relay *r, struct client *ghost);
/* The user logged in here: the ghost of its session elsewhere goes (that
 * relay ends the session when it hears of this one). */
void relay_cluster_drop_ghost(struct chat_relay *r, struct client *ghost);
/* relay.cluster's address while its link is down, else NULL. */
const char *relay_cluster_lost(const struct chat_relay *r);

/* relay_account.c */
int relay_accounts_new(struct chat_relay *r);
/* "127.0.0.1:5555" -> "127.0.0.1", "[::1]:5555" -> "[::1]": what throttling counts per address. */
void relay_peer_host(const struct client *c, size_t cap, char *dst);
void relay_accounts_free(struct chat_relay *r);
/* The throttling rules of cfg for the running tables (chat_relay_reconfigure):
 * CHAT_OK, or CHAT_ERR_INVALID with nothing changed. */
int relay_accounts_configure(struct chat_relay *r, const struct chat_relay_config *cfg);
/* Bound the throttling counts kept in the store (inside a write). */
int relay_accounts_prune(struct chat_relay *r, int64_t now_ms);
void relay_on_auth(struct chat_relay *r, struct client *c, const struct chat_msg *m);
void relay_on_auth_final(struct chat_relay *r, struct client *c, const struct chat_msg *m);
void relay_on_register(struct chat_relay *r, struct client *c, const struct chat_msg *m);
void relay_on_passwd(struct chat_relay *r, struct client *c, const struct chat_msg *m);
void relay_on_admin(struct chat_relay *r, struct client *c, const struct chat_msg *m);
void relay_on_friend(struct chat_relay *r, struct client *c, const struct chat_msg *m);
/* Identity keys (PROTOCOL.md section 4): a registered user publishes its
 * public key for a suite; anyone logged in asks for a user's keys. */
void relay_on_keys_put(struct chat_relay *r, struct client *c, const struct chat_msg *m);
void relay_on_keys_get(struct chat_relay *r, struct client *c, const struct chat_msg *m);
/* Friend state of a and b (registered names), CHAT_FRIEND_NONE on errors. */
int relay_friend_state(struct chat_relay *r, const char *a, const char *b);
void relay_account_state_free(struct client *c);

/* relay_mail.c */
int relay_mail_new(struct chat_relay *r);
void relay_mail_free(struct chat_relay *r);
/* Open this round's transaction (once) and schedule the commit.  CHAT_OK or
 * CHAT_ERR_IO (then the request has been answered with ERROR storage; so is
 * every write once the database file is gone: chat_store_check). */
int relay_write_begin(struct chat_relay *r, struct client *requester, int ref);
/* The database file is gone or replaced: tell c (ERROR storage about ref)
 * and return 1; else 0.  For requests that acknowledge without writing. */
int relay_store_refuses(struct chat_relay *r, struct client *c, int ref);
/* Send the message in r->wb to c after this round's commit; if the commit
 * fails, c gets ERROR storage (about request type ref) instead. */
void relay_after_commit(struct chat_relay *r, struct client *c, int ref);
/* A write of this round failed: the whole round is rolled back; c is told now. */
void relay_write_failed(struct chat_relay *r, struct client *c, int ref);
/* Store the message in r->wb as mail for the registered user `to` (pushed
 * to them after the commit if online).  Inside relay_write_begin. */
int relay_mail_to(struct chat_relay *r, const char *to, const char *from, uint64_t client_id,
                  int64_t *mail_id);
/* Mail for c (just logged in, or after ACKs) once this round is committed. */
void relay_mail_wanted(struct chat_relay *r, struct client *c);
/* DONE (ref, op, subject, text) to c after the commit. */
void relay_done(struct chat_relay *r, struct client *c, int ref, unsigned op, const char *subject,
                const char *text);
void relay_on_send(struct chat_relay *r, struct client *c, const struct chat_msg *m);
void relay_on_ack(struct chat_relay *r, struct client *c, const struct chat_msg *m);
void relay_talk_registered(struct chat_relay *r, struct client *c, const struct chat_msg *m);
void relay_answer_registered(struct chat_relay *r, struct client *c, const struct chat_msg *m);
void relay_close_registered(struct chat_relay *r, struct client *c, const struct chat_msg *m);

#endif
