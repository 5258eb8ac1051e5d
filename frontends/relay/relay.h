/* The relay: accounts of connected users, consent (talk offers), routing of
 * opaque end-to-end payloads, rooms.  It never looks inside a payload and
 * never logs one.  The program (frontends/relay/main.c) owns the listener,
 * signals and configuration; this module owns the clients. */
#ifndef CHAT_RELAY_H
#define CHAT_RELAY_H

#include <stddef.h>

#include <chat/plugin.h>

#include "conn.h"
#include "loop.h"

struct chat_store;

struct chat_relay;

struct chat_relay_config {
	struct chat_conn_limits limits;
	size_t max_clients;
	long long idle_timeout_ms;  /* 0: never (PING and PONG are not activity) */
	unsigned keepalive_s;       /* PING a client silent this long (0: never) */
	unsigned dead_after_s;      /* close a client silent this long (0: never) */
	/* Suites the relay carries (policy); n == 0 carries any suite. */
	size_t nsuites;
	const char *const *suites;
	size_t max_rooms_per_client;
	size_t max_room_members;
	size_t max_pending_offers;
	unsigned max_bad_requests;  /* malformed requests before a client is cut off */
	/* Until a connection has logged in (docs/PROTOCOL.md "Rules the relay
	 * enforces"); 0 turns each off. */
	unsigned login_timeout_s;        /* closed if not logged in after this long */
	unsigned max_unauth_per_address; /* more from one address (IPv4, IPv6 /64) are refused */
	size_t prelogin_max_frame;       /* largest frame (and a small output queue) until login */
	size_t reserved_slots;           /* of max_clients, never held by connections not logged
	                                    in (must be less than max_clients) */
	unsigned log_interval_s;         /* repeated events logged once per interval, with a count */
	/* Accounts and stored messages (docs/PROTOCOL.md section 4).  store NULL:
	 * guests only.  The relay does not own the store. */
	struct chat_store *store;
	int guests;                 /* LOGIN without an account allowed */
	int open_registration;      /* REGISTER allowed (else admins add users) */
	int friends_only;           /* registered users talk only with friends */
	size_t queue_max_messages;
	uint64_t queue_max_bytes;
	int64_t queue_expiry_ms;
	int archive;
	int64_t archive_ms;         /* archived ciphertext older than this is pruned */
	unsigned throttle_after;    /* failed logins (per address, per account and address) before waits */
	int64_t throttle_ms, throttle_max_ms;
	unsigned guard_after;       /* failed logins of one account from every address before all wait */
	unsigned register_after;    /* registrations from one address before waits */
	int64_t register_ms, register_max_ms;
	int reveal_accounts;        /* REGISTER and guest LOGIN say that a name is registered */
	unsigned scram_iterations;  /* of fake verifiers for unknown names */
	/* Several relays as one service (docs/CLUSTER.md): redis://HOST:PORT[/DB]
	 * or NULL; heartbeat expiry; this relay's id (NULL: random per start).
	 * Fixed when made (not changed by chat_relay_reconfigure). */
	const char *cluster;
	unsigned cluster_ttl_s;
	const char *node_id;
};

int chat_relay_new(struct chat_loop *loop, const struct chat_relay_config *cfg,
                   struct chat_relay **out);
/* New settings for a running relay (SIGHUP).  Everything but store,
 * limits.max_frame, max_pending_offers and max_bad_requests, which stay as
 * made, takes effect at once: for requests, connections and logins from now
 * on and at the next once-a-second sweep (timeouts, keepalive);
 * limits.out_limit also for the clients logged in.  A connection over a new,
 * lower limit is not closed for it (it is counted against the new one).
 * Clients keep the suites they were admitted with, but a new conversation
 * needs a suite the relay still carries.  CHAT_OK, or CHAT_ERR_NOMEM /
 * CHAT_ERR_INVALID with nothing changed. */
int chat_relay_reconfigure(struct chat_relay *r, const struct chat_relay_config *cfg);
/* Closes every client (without notice) and frees everything. */
void chat_relay_free(struct chat_relay *r);

/* Take an accepted transport connection (ownership passes in). */
int chat_relay_accept(struct chat_relay *r, const struct chat_transport_ops *tp, void *handle);
/* Send BYE with reason to every client and close each after its queue drains. */
void chat_relay_shutdown(struct chat_relay *r, const char *reason);
size_t chat_relay_clients(const struct chat_relay *r);
/* relay.cluster and relay.node_id well formed, and the module cluster-redis
 * there (--check-config): CHAT_OK, or an error with err saying what is wrong.
 * Redis itself is not contacted. */
int chat_relay_cluster_check(const char *url, const char *node_id, size_t errlen, char *err);

#endif
