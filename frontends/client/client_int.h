/* What the client_*.c files share: the engine's state and the functions one
 * topic calls in another.  Not for frontends (they use client.h). */
#ifndef CHAT_CLIENT_INT_H
#define CHAT_CLIENT_INT_H

#include <stdint.h>

#include "client.h"
#include "keystore.h"
#include "scram.h"
#include "seclog.h"

/* Client-to-client payload types, inside ROUTE/SEND/DELIVER/ROOM_*: opaque to the relay. */
enum {
	P_INIT = 0x01,  /* str8 suite, suites[] (initiator's), handshake bytes: room sessions */
	P_HS = 0x02,    /* handshake bytes */
	P_DATA = 0x03,  /* u8 flags (bit 0: more chunks follow), sealed chunk */
	P_ABORT = 0x04, /* str16 reason: the sender gave up this conversation */
};
#define DATA_MORE 1u

/* Where the connection is. */
enum {
	CS_CONNECTING,
	CS_HELLO,       /* HELLO sent */
	CS_REGISTER,    /* REGISTER sent */
	CS_LOGIN,       /* guest LOGIN sent */
	CS_NEED_PW,     /* the relay wants a password; waiting for the user to type it */
	CS_AUTH,        /* AUTH op=1 sent, waiting for AUTH_CHALLENGE */
	CS_AUTH_FINAL,  /* AUTH_FINAL sent, waiting for AUTH_OK */
	CS_AUTH_OK,     /* the relay proved itself; waiting for LOGGED_IN */
	CS_READY,
};

/* One conversation's state. */
enum {
	C_OFFER_OUT = 1, /* we offered, waiting for ANSWERED */
	C_OFFER_IN,      /* they offered, waiting for /accept or /reject */
	C_HANDSHAKE,
	C_ESTABLISHED,
};

enum { LM_GUEST, LM_PASSWORD, LM_REGISTER };

/* Text typed before the session was up (or for a room member without one). */
struct pending {
	struct pending *next;
	char room[CHAT_NAME_MAX + 1]; /* "" for a 1:1 message */
	size_t len;
	char text[];
};

/* A sealed SEND payload the relay has not confirmed (STORED) yet. */
struct outmail {
	struct outmail *next;
	uint64_t id;
	int sent;                     /* handed to this connection */
	char peer[CHAT_NAME_MAX + 1];
	size_t len;
	uint8_t payload[];
};

struct conv {
	struct conv *next;
	char peer[CHAT_NAME_MAX + 1];
	int state;
	int initiator;
	int relay_link;     /* a 1:1 conversation the relay knows of (vs. room-only) */
	int peer_guest;     /* the peer is a guest: live routing, nothing kept */
	int hs_steps;       /* handshake messages made or taken (0: accepted, nothing exchanged) */
	int restored;       /* from the keystore: announce or re-offer at login */
	const struct chat_loaded *suite;
	void *session;
	char *bind;         /* the binding the session was made with (kept to reload it) */
	size_t bind_len;
	size_t ntheirs;
	char theirs[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	char chosen[CHAT_NAME_MAX + 1];
	struct pending *pending, **pending_tail;
	size_t npending;
	uint8_t *rx;        /* reassembly of a chunked message */
	size_t rx_len;
	char rx_room[CHAT_NAME_MAX + 1];
};

struct croom {
	struct croom *next;
	char name[CHAT_NAME_MAX + 1];
	size_t n, cap;
	char (*members)[CHAT_NAME_MAX + 1];
};

struct input_line {
	struct input_line *next;
	size_t len;
	char text[];
};

/* What the last WHO_LIST said about a user. */
struct known_user {
	struct known_user *next;
	unsigned flags;     /* CHAT_WHO_* */
	char name[CHAT_NAME_MAX + 1];
};

struct ack {
	uint64_t id;
	int unreadable;
	char reason[200];
};

struct chat_client {
	struct chat_loop *loop;
	struct chat_client_config cfg;
	chat_event_cb cb;
	void *ui;
	struct chat_conn *conn;
	const struct chat_loaded *suites[CHAT_SUITES_MAX];
	size_t nsuites;         /* loaded allowed suites */
	size_t neff;            /* effective: allowed and carried by the relay */
	char eff[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	char name[CHAT_NAME_MAX + 1];
	int state;
	int status;             /* exit status once done */
	int done, quitting;
	struct conv *convs;
	struct croom *rooms;
	char current[CHAT_NAME_MAX + 2];
	struct input_line *early, **early_tail; /* lines typed before login */
	struct chat_wbuf wb;
	uint8_t *scratch;
	size_t scratch_cap;
	struct chat_timer *timer;
	struct known_user *known;

	/* keepalive: is the relay still there? (client.c) */
	struct chat_timer *live_timer;
	uint64_t last_rx;       /* monotonic ms of the last frame from the relay */
	uint64_t first_ping;    /* first PING of this silence (0: none yet) */
	uint64_t last_ping;     /* latest PING of this silence */
	uint64_t ping_token;
	int warned;             /* "relay not answering" said for this silence */
	int answered;           /* the relay has sent anything at all */

	/* account */
	int login_mode;         /* LM_* */
	int group;              /* CHAT_GROUP_* once logged in */
	char *password;         /* the account password (kept for /passwd), wiped at free */
	size_t password_len;
	char *new_password;     /* /passwd in progress */
	size_t new_password_len;
	struct chat_scram_client scram;
	int scram_op;           /* 0, or the CHAT_AUTH_* exchange under way */

	/* offline delivery */
	uint64_t next_id;       /* next SEND client id */
	uint64_t mail_max;      /* highest mail id processed */
	struct outmail *outbox, **outbox_tail;
	int in_mail;            /* processing a MAIL's inner message */
	int64_t mail_time;      /* its stored-at time */
	char mail_problem[200]; /* why it could not be opened ("" if it could) */
	struct ack *acks;
	size_t nacks, acks_cap;
	struct chat_timer *ack_timer;

	/* keystore and history */
	char *ks_path, *log_path;
	struct chat_keystore *ks;
	struct chat_seclog *log;
	uint8_t *ks_blob;       /* read at start, applied at login */
	size_t ks_blob_len;
	int ks_dirty;
	int ks_trusted;         /* the password is known good (the file opened, or the relay
	                           accepted it): only then is anything written */
	int log_failed;
	unsigned nosave_warned; /* bit per suite index: "cannot save sessions" said */
};

/* ---- client.c: events, relay I/O, dispatch */
void client_emit(struct chat_client *c, int kind, const char *peer, const char *room,
                 const char *suite, const char *code, size_t len, const char *text, int insecure);
void client_say(struct chat_client *c, int kind, const char *peer, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void client_fail(struct chat_client *c, const char *peer, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void client_finish(struct chat_client *c, int status);
void client_begin(struct chat_client *c, int type);
int client_flush(struct chat_client *c);
void client_put_suites(struct chat_client *c);
int client_scratch(struct chat_client *c, size_t need);
/* The one-word line-mode name of a relay error code ("auth", "not-connected"). */
const char *client_perr_code(unsigned code);
/* One relay->client message, live or unwrapped from MAIL. */
void client_dispatch(struct chat_client *c, const struct chat_msg *m);
void client_logged_in(struct chat_client *c, const struct chat_msg *m);
int client_registered(const struct chat_client *c);
void client_process_early_input(struct chat_client *c);
unsigned client_known_flags(const struct chat_client *c, const char *name, int *known);

/* ---- client_conv.c: 1:1 conversations and cipher sessions */
const struct chat_loaded *client_suite_by_name(const struct chat_client *c, const char *name);
int client_usable(const struct chat_client *c, const char *name, const char *peer);
void client_csv(size_t n, const char (*names)[CHAT_NAME_MAX + 1], size_t cap, char *dst);
struct conv *client_find_conv(struct chat_client *c, const char *peer);
struct conv *client_new_conv(struct chat_client *c, const char *peer, int state);
void client_end_conv(struct chat_client *c, struct conv *v, const char *why);
void client_drop_session(struct conv *v);
int client_queue_text(struct chat_client *c, struct conv *v, const char *room, size_t len,
                      const char *text);
int client_start_session(struct chat_client *c, struct conv *v);
void client_step(struct chat_client *c, struct conv *v, size_t len, const uint8_t *src);
void client_handshake_failed(struct chat_client *c, struct conv *v, int rc,
                             const struct chat_buf *last);
void client_established(struct chat_client *c, struct conv *v);
int client_seal_text(struct chat_client *c, struct conv *v, size_t len, const char *text,
                     int (*out)(struct chat_client *, struct conv *, const char *room, size_t,
                                const uint8_t *), const char *room);
void client_send_payload(struct chat_client *c, struct conv *v, int type, size_t len,
                         const uint8_t *bytes);
void client_send_abort(struct chat_client *c, struct conv *v, const char *reason);
void client_on_data(struct chat_client *c, struct conv *v, const char *room, size_t len,
                    const uint8_t *p);
void client_on_payload(struct chat_client *c, const char *from, const char *room, size_t len,
                       const uint8_t *p);
void client_on_offered(struct chat_client *c, const struct chat_msg *m);
void client_on_answered(struct chat_client *c, const struct chat_msg *m);
void client_on_closed(struct chat_client *c, const struct chat_msg *m);
void client_send_text(struct chat_client *c, const char *peer, size_t len, const char *text);
void client_talk(struct chat_client *c, const char *peer);
void client_answer(struct chat_client *c, const char *peer, int accept, const char *reason);
void client_close(struct chat_client *c, const char *peer);
/* Payloads of this conversation go by SEND (stored) rather than ROUTE (live). */
int client_uses_send(const struct chat_client *c, const struct conv *v);
/* Report (once per suite) that a suite cannot save its sessions. */
int client_can_save(struct chat_client *c, const struct conv *v);

/* ---- client_room.c */
struct croom *client_find_croom(struct chat_client *c, const char *name);
int client_shares_room(struct chat_client *c, const char *peer);
void client_on_init(struct chat_client *c, const char *from, size_t len, const uint8_t *p);
void client_on_members(struct chat_client *c, const struct chat_msg *m);
void client_on_room_event(struct chat_client *c, const struct chat_msg *m);
void client_on_room_deliver(struct chat_client *c, const struct chat_msg *m);
void client_send_room_text(struct chat_client *c, const char *room, size_t len, const char *text);
/* seal_text output for a room: ROOM_SEND to that one member. */
int client_out_room_payload(struct chat_client *c, struct conv *v, const char *room, size_t len,
                            const uint8_t *payload);
void client_join(struct chat_client *c, const char *room);
void client_leave(struct chat_client *c, const char *room);
void client_free_rooms(struct chat_client *c);

/* ---- client_cmd.c: what the user types */
void client_process_line(struct chat_client *c, size_t len, const char *line);
/* Split "word rest": word into dst (bounded; too long poisons it), returns rest. */
const char *client_word(const char *s, size_t cap, char *dst);
int client_valid_name(struct chat_client *c, const char *what, const char *name);

/* ---- client_account.c: login, register, password, admin, friends */
void client_login_start(struct chat_client *c);
/* Returns 1 if m was an account message (handled), else 0. */
int client_account_msg(struct chat_client *c, const struct chat_msg *m);
/* ERROR for a login request: 1 if handled (the client may go on or finish). */
int client_login_error(struct chat_client *c, const struct chat_msg *m);
void client_password_typed(struct chat_client *c, size_t len, const char *pw);
void client_cmd_passwd(struct chat_client *c, const char *arg);
void client_cmd_admin(struct chat_client *c, const char *cmd, const char *rest);
void client_cmd_friend(struct chat_client *c, const char *cmd, const char *rest);
int client_keep_password(struct chat_client *c, size_t len, const char *pw);

/* ---- client_mail.c: stored delivery */
/* Hand a payload to the relay for v: SEND with a fresh id (registered
 * conversations) or ROUTE. */
void client_transmit(struct chat_client *c, struct conv *v, size_t len, const uint8_t *payload);
/* seal_text output for 1:1: into the outbox (SEND) or straight out (ROUTE). */
int client_out_conv(struct chat_client *c, struct conv *v, const char *room, size_t len,
                    const uint8_t *payload);
/* After sealing: save the keystore, then send what the outbox holds unsent.
 * Returns CHAT_OK, or an error (nothing sent) if the save failed. */
int client_commit(struct chat_client *c);
void client_resend_outbox(struct chat_client *c);
void client_drop_outbox(struct chat_client *c, const char *peer, size_t *dropped);
void client_on_mail(struct chat_client *c, const struct chat_msg *m);
void client_on_stored(struct chat_client *c, const struct chat_msg *m);
void client_on_receipt(struct chat_client *c, const struct chat_msg *m);
/* A payload inside MAIL could not be used: ACK it as unreadable with why. */
void client_mail_problem(struct chat_client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void client_flush_acks(struct chat_client *c);
void client_free_mail(struct chat_client *c);

/* ---- client_store.c: keystore and history */
/* Open the stores for c->cfg.user with c->password (before connecting). */
int client_store_open(struct chat_client *c, size_t errlen, char *err);
/* Apply what the keystore held (conversations, outbox, counters): at start. */
int client_store_restore(struct chat_client *c, size_t errlen, char *err);
/* At login as a registered user: announce, re-offer, resend. */
void client_store_after_login(struct chat_client *c);
/* Save now if anything changed.  CHAT_OK when durable (or nothing to keep). */
int client_store_save(struct chat_client *c);
void client_store_mark(struct chat_client *c);
/* New password: rekey the keystore and rewrite the history. */
int client_store_rekey(struct chat_client *c, size_t len, const char *pw, size_t errlen,
                       char *err);
void client_history(struct chat_client *c, int direction, const char *peer, size_t len,
                    const char *text);
void client_store_close(struct chat_client *c);

#endif
