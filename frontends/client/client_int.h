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

/* The plaintext of every sealed P_DATA chunk starts with
 *   u8 kind (E_*) | u64 seq | u16 chunk index
 * so the receiver can order, deduplicate and confirm whole messages, all
 * under the suite's protection (docs/PROTOCOL.md section 3). */
enum {
	E_TEXT = 1,     /* a message: seq counts the sender's messages in this session, from 1 */
	E_RECEIPT = 2,  /* u16 count, count x u64 seq: "these were shown" (seq 0) */
};
#define E_HEADER 11
#define E_LAST 0x8000u  /* in the chunk index: the message's last chunk */

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

#define CHAT_MISSING_MAX 64
#define CHAT_RECENT_MAIL 1024 /* mail ids remembered as processed */

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

/* One sealed chunk of an outmsg: one SEND with its client id. */
struct outmail {
	struct outmail *next;
	uint64_t id;
	int sent;                     /* handed to this connection */
	int stored;                   /* the relay said STORED */
	size_t len;
	uint8_t payload[];
};

/* Where an outmsg is. */
enum {
	OM_WAITING = 0, /* to be sealed (new, its copy lost or unreadable, or waiting behind one) */
	OM_SEALED,      /* a sealed copy is out; not every chunk STORED yet */
	OM_STORED,      /* the relay stored every chunk: waiting for the peer's receipt */
	OM_REFUSED,     /* the relay refused a chunk: the same copy goes again at due; later
	                   ones (texts and receipts) wait until the relay has stored it */
};

/* A message to a registered peer, kept (plaintext, in the keystore) until the
 * peer's client confirms it was shown (E_TEXT) or, for a receipt (E_RECEIPT),
 * until the relay stored it.  A copy the relay refused goes again as it is
 * (the suite counted it: a strict sequence rejects whatever comes after a
 * gap); one that is lost or rejected is sealed again, in order. */
struct outmsg {
	struct outmsg *next;
	char peer[CHAT_NAME_MAX + 1];
	int kind;                     /* E_TEXT or E_RECEIPT */
	int state;                    /* OM_* */
	uint64_t seq;                 /* E_TEXT: its number in the conversation */
	unsigned tries;               /* copies sealed or sent again so far */
	uint64_t due;                 /* monotonic ms of the next try, 0: none */
	int resent;                   /* OM_REFUSED: its copy went again, no answer yet */
	int unreadable;               /* "unreadable" receipts in a row (client_deliver_reseal) */
	struct outmail *chunks;       /* the current sealed copy */
	size_t len;
	uint8_t text[];
};

/* A received message that arrived ahead of the one expected. */
struct held {
	struct held *next;
	uint64_t seq;
	size_t len;
	char text[];
};

/* A stored message the suite rejected as replayed or out of order (a suite
 * with strict sequence numbers cannot open one that arrives ahead of the one
 * before it): neither ACKed nor remembered; tried again after every later
 * mail that opens, given up once one stored after it opened (its turn has
 * passed) or after HOLD_MAIL_MS (client_mail.c). */
#define HOLD_MAIL_MS 15000
#define HELD_MAIL_MAX 64
struct heldmail {
	struct heldmail *next;
	char peer[CHAT_NAME_MAX + 1];
	char why[200];                /* the ACK's reason if it is rejected in the end */
	uint64_t id;                  /* mail id */
	int64_t time_ms;              /* stored at */
	uint64_t since;               /* monotonic ms: held since */
	int passed;                   /* a later message from peer opened meanwhile */
	size_t len;
	uint8_t data[];               /* the inner message */
};

/* Something to show once what it depends on is saved (stored mail). */
struct later {
	struct later *next;
	int kind;                     /* CHAT_EV_MSG, _WARNING, _DELIVERED */
	char peer[CHAT_NAME_MAX + 1];
	const struct chat_loaded *suite;
	int history;                  /* append to the history when shown */
	size_t len;
	char text[];
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
	int reoffer;        /* the relay was lost: offer the conversation again after login */
	int reoffer_left;   /* ... and again while the peer is not back yet (REOFFER_TRIES) */
	int reoffer_due;    /* ... at the next tick of c->reoffer_timer */
	int await_reoffer;  /* the relay was lost: the peer (the smaller name) offers again; accepted */
	uint64_t talk_ping; /* token of the PING sent after our TALK: its PONG says the relay took it */
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
	int rx_kind;        /* of the message being reassembled */
	uint64_t rx_seq;
	unsigned rx_chunk;  /* index of the last chunk taken */

	/* end-to-end sequence (stored conversations; docs/PROTOCOL.md 3.3) */
	uint64_t tx_seq;    /* last number given to a message we sent */
	uint64_t rx_next;   /* next number expected from the peer */
	struct held *held;  /* arrived ahead of rx_next, in order */
	size_t nheld;
	uint64_t gap_since; /* monotonic ms: since when held waits for a gap to fill (0: none) */
	uint64_t missing[CHAT_MISSING_MAX]; /* given up on: shown late if they still come */
	size_t nmissing;
	uint64_t *rcpt;     /* shown this round: to confirm */
	size_t nrcpt, rcpt_cap;
	int blocked;        /* pump: a refused copy waits to be stored first */
	uint64_t rx_mail;   /* highest mail id from the peer that opened (this run) */
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

/* Identity keys (client_identity.c): ours per suite, and the peers' pins. */
struct ident_own {
	char suite[CHAT_NAME_MAX + 1];
	uint8_t *priv, *pub; /* priv is secret: wiped when freed */
	size_t priv_len, pub_len;
};

struct ident_pin {
	char peer[CHAT_NAME_MAX + 1];
	char suite[CHAT_NAME_MAX + 1];
	uint8_t *key;
	size_t len;
	uint8_t verified; /* /verify NAME yes */
};

#define CLIENT_KEY_FP 72 /* "sha256:" + 64 hex + NUL */

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
	/* Reconnecting (client.reconnect): which address is used, whether a
	 * login ever succeeded, the next wait, and the pending attempt. */
	size_t relay_idx;
	int ever_ready, no_retry, reconnecting, relink_tries;
	unsigned relink_ms;
	struct chat_timer *relink_timer;
	char (*rejoin)[CHAT_NAME_MAX + 1]; /* rooms to join again after reconnecting */
	size_t nrejoin;
	struct chat_timer *reoffer_timer;

	/* account */
	int login_mode;         /* LM_* */
	int group;              /* CHAT_GROUP_* once logged in */
	char *password;         /* the account password (kept for /passwd), wiped at free */
	size_t password_len;
	char *new_password;     /* /passwd in progress */
	size_t new_password_len;
	struct chat_scram_client scram;
	int scram_op;           /* 0, or the CHAT_AUTH_* exchange under way */
	struct ident_own *own;  /* our identity key pairs (keystore) */
	size_t nown;
	struct ident_pin *pins; /* peers' identity keys pinned on first use (keystore) */
	size_t npins;
	uint8_t cb_plain;            /* the relay's link has no channel binding: SCRAM 'y' (client_account.c) */
	int just_registered;    /* the relay said DONE to our REGISTER; this login is the first */
	int pw_typed;           /* passwords typed after CHAT_EV_PASSWORD (CHAT_CLIENT_PASSWORD_TRIES) */
	int pw_relinked;        /* pw_typed when a login with it lost its connection and started anew */

	/* offline delivery */
	uint64_t next_id;       /* next SEND client id */
	uint64_t recent[CHAT_RECENT_MAIL]; /* mail ids processed (a ring): one seen again is
	                           only ACKed again, never processed twice */
	size_t nrecent, recent_pos;
	struct outmsg *out, **out_tail; /* messages not yet confirmed, in the order typed */
	struct outmsg *sealing; /* client_out_conv() puts chunks here */
	struct later *later, **later_tail;
	struct chat_timer *retry_timer;
	uint64_t retry_at;
	uint64_t rcpt_ids[64];  /* client ids of our own receipts lately stored: the relay's
	                           word about them is not news for the user */
	size_t rcpt_pos;
	int in_mail;            /* processing a MAIL's inner message */
	int64_t mail_time;      /* its stored-at time */
	uint64_t mail_id;       /* its mail id */
	char mail_problem[200]; /* why it could not be opened ("" if it could) */
	int mail_hold;          /* the suite said replayed or out of order: hold it */
	char hold_peer[CHAT_NAME_MAX + 1], hold_why[200];
	int mail_opened;        /* a stored message from a peer opened: retry the held ones */
	struct heldmail *hmail; /* held mail, oldest first */
	size_t nhmail;
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
	int ks_staged;          /* a save written beside the keystore, not in place yet */
	int history_unsynced;   /* client_history appends without an fsync (client_store_commit) */
	int ks_trusted;         /* the password is known good (the file opened, or the relay
	                           accepted it): only then is anything written */
	int log_failed;
	unsigned nosave_warned; /* bit per suite index: "cannot save sessions" said */
};

/* ---- client.c: events, relay I/O, dispatch */

/* Connect to the relay (c->cfg.relay, or the current one of c->cfg.relays);
 * the login starts at its WELCOME. */
int client_connect(struct chat_client *c, size_t errlen, char *err);
void client_emit(struct chat_client *c, int kind, const char *peer, const char *room,
                 const char *suite, const char *code, size_t len, const char *text, int insecure);
/* SENT and DELIVERED: with the message's number. */
void client_emit_seq(struct chat_client *c, int kind, const char *peer, const char *suite,
                     uint64_t seq, size_t len, const char *text, int insecure);
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
int client_reoffer_refused(struct chat_client *c, struct conv *v, unsigned code);
int client_registered(const struct chat_client *c);
void client_process_early_input(struct chat_client *c);
unsigned client_known_flags(const struct chat_client *c, const char *name, int *known);

/* ---- client_conv.c: 1:1 conversations and cipher sessions */
const struct chat_loaded *client_suite_by_name(const struct chat_client *c, const char *name);
int client_usable(const struct chat_client *c, const char *name, const char *peer);
/* client.min_security forbids the insecure suite name with peer: 1 (why). */
int client_policy_refuses(const struct chat_client *c, const char *name, const char *peer,
                          size_t cap, char *why);
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
/* Seal one message (E_* kind, seq) for v in chunks; each chunk becomes one
 * P_DATA payload passed to out(). */
int client_seal_text(struct chat_client *c, struct conv *v, int kind, uint64_t seq, size_t len,
                     const char *text,
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
/* TALK, then a PING: the relay answers in order, so a PONG with no ERROR
 * before it means the offer was taken ("offered" is said then). */
void client_send_talk(struct chat_client *c, struct conv *v);
/* A PONG: announce the offer it acknowledges, if any. */
void client_talk_acked(struct chat_client *c, uint64_t token);
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

/* ---- client_mail.c: stored delivery (SEND, STORED, MAIL, ACK, relay receipts) */
/* Hand a payload to the relay for v: SEND with a fresh id (registered
 * conversations) or ROUTE. */
void client_transmit(struct chat_client *c, struct conv *v, size_t len, const uint8_t *payload);
/* seal_text output for 1:1: into c->sealing's copy (SEND) or straight out (ROUTE). */
int client_out_conv(struct chat_client *c, struct conv *v, const char *room, size_t len,
                    const uint8_t *payload);
/* After sealing: save the keystore, then send every chunk not yet sent.
 * Returns CHAT_OK, or an error (nothing sent) if the save failed. */
int client_commit(struct chat_client *c);
void client_resend_outbox(struct chat_client *c);
void client_on_mail(struct chat_client *c, const struct chat_msg *m);
void client_on_stored(struct chat_client *c, const struct chat_msg *m);
void client_on_receipt(struct chat_client *c, const struct chat_msg *m);
/* ERROR for one of our SENDs (m->id): that message is sealed again later. */
void client_on_send_refused(struct chat_client *c, const struct chat_msg *m);
/* A payload inside MAIL could not be used: ACK it as unreadable with why. */
void client_mail_problem(struct chat_client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The end of a loop round that processed mail: save, show, confirm, ACK. */
void client_round_end(struct chat_client *c);
void client_round_soon(struct chat_client *c);
/* A stored message from v's peer opened: held ones are tried again after this mail. */
void client_held_mail_opened(struct chat_client *c, struct conv *v);
/* When the oldest held mail is given up (monotonic ms, 0: none held). */
uint64_t client_held_mail_due(const struct chat_client *c);
/* Give up the held mail that waited HOLD_MAIL_MS. */
void client_held_mail_expire(struct chat_client *c, uint64_t now);
void client_free_mail(struct chat_client *c);

/* ---- client_deliver.c: end-to-end order, receipts and retries */
struct outmsg *client_outmsg_new(struct chat_client *c, const char *peer, int kind, uint64_t seq,
                                 size_t len, const void *text);
void client_outmsg_free(struct outmsg *m);
/* Take m out of the outbox and free it. */
void client_outmsg_remove(struct chat_client *c, struct outmsg *m);
void client_outmsg_drop_copy(struct outmsg *m);
/* Seal what may be sealed now (in order; later messages wait behind a
 * refused one), then commit. */
void client_pump(struct chat_client *c);
/* The sealing half of client_pump (the caller saves, then sends): 1 if any. */
int client_pump_seal(struct chat_client *c);
void client_remember_mail(struct chat_client *c, uint64_t id);
/* Drop peer's messages (the conversation ended); *dropped: texts dropped. */
void client_drop_outbox(struct chat_client *c, const char *peer, size_t *dropped);
/* A new session with v's peer: renumber what waits, start the count afresh. */
void client_deliver_new_session(struct chat_client *c, struct conv *v);
/* A whole message opened in v (1:1, stored conversation). */
void client_deliver_received(struct chat_client *c, struct conv *v, int kind, uint64_t seq,
                             size_t len, const char *text);
/* Show (and record) once the keystore holds what led to it. */
void client_show_later(struct chat_client *c, int kind, const struct conv *v, int history,
                       size_t len, const char *text);
void client_say_later(struct chat_client *c, int kind, const struct conv *v, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Emit what waits in c->later (after a save). */
void client_show_pending(struct chat_client *c);
/* Receipts for what was shown this round: into the outbox. */
void client_queue_receipts(struct chat_client *c);
/* Recompute the retry timer (after a change of due times or gaps). */
void client_retry_arm(struct chat_client *c);
/* The relay refused m's copy: the same copy again after a backoff; later
 * ones wait.  0 if m was already waiting for that (another chunk of it). */
int client_deliver_refused(struct chat_client *c, struct outmsg *m);
/* The relay stored the whole copy of m, which it had refused before: the
 * ones refused after it go now, in order. */
void client_deliver_unblocked(struct chat_client *c, const char *peer);
/* The peer could not use m's copy (the relay says): seal it again now. */
void client_deliver_reseal(struct chat_client *c, struct outmsg *m);
/* m is stored for a peer who is online (or fetched it): expect a receipt. */
void client_deliver_expect(struct chat_client *c, struct outmsg *m);
/* A later message (seq) to peer was fetched or confirmed: expect the
 * earlier unconfirmed ones as well. */
void client_deliver_expect_before(struct chat_client *c, const char *peer, uint64_t seq);
void client_free_deliver(struct chat_client *c);
void client_conv_free_rx(struct conv *v);

/* ---- client_store.c: keystore and history */
/* Open the stores for c->cfg.user with c->password (before connecting). */
int client_store_open(struct chat_client *c, size_t errlen, char *err);
/* Apply what the keystore held (conversations, outbox, counters): at start. */
int client_store_restore(struct chat_client *c, size_t errlen, char *err);
/* At login as a registered user: announce, re-offer, resend. */
void client_store_after_login(struct chat_client *c);
/* Save now if anything changed.  CHAT_OK when durable (or nothing to keep). */
int client_store_save(struct chat_client *c);
/* client_store_save in two steps: stage writes the new keystore beside the
 * old one, commit puts it in place (and syncs the history).  What is shown
 * because of the save goes in between: a kill before the commit's rename
 * keeps the old keystore (the messages come again), one in or after it the
 * new one, and there is no time between the two in which the keystore says
 * "processed" and nothing was shown. */
int client_store_stage(struct chat_client *c);
int client_store_commit(struct chat_client *c);
void client_store_mark(struct chat_client *c);
/* New password: rekey the keystore and rewrite the history. */
int client_store_rekey(struct chat_client *c, size_t len, const char *pw, size_t errlen,
                       char *err);
void client_history(struct chat_client *c, int direction, const char *peer, size_t len,
                    const char *text);
void client_store_close(struct chat_client *c);

/* client_identity.c: identity keys (plugin ABI 1.3) */
int client_suite_has_identity(const struct chat_loaded *s);
void client_key_fingerprint(size_t len, const uint8_t *key, char out[CLIENT_KEY_FP]);
struct ident_pin *client_pin_find(struct chat_client *c, const char *peer, const char *suite);
int client_own_add(struct chat_client *c, const char *suite, size_t priv_len, const uint8_t *priv,
                   size_t pub_len, const uint8_t *pub);
int client_pin_add(struct chat_client *c, const char *peer, const char *suite, size_t len,
                   const uint8_t *key, int verified);
void client_identity_free(struct chat_client *c);
/* Fill the identity fields of p for v's suite (our pair, made if needed;
 * the peer's pin, if any). */
int client_identity_params(struct chat_client *c, const struct conv *v, struct chat_cipher_params *p);
/* After the handshake: pin the key the peer proved, on first use. */
void client_identity_established(struct chat_client *c, struct conv *v);
/* A handshake failed with CHAT_ERR_AUTH: 1 (and said loudly) if it was
 * against a pinned identity key. */
int client_identity_refused(struct chat_client *c, const struct conv *v);
/* KEYS_PUT of our public key for every identity suite (registered users, at login). */
void client_identity_publish(struct chat_client *c);
void client_trust(struct chat_client *c, const char *peer);
/* KEYS from the relay: what it publishes for a peer, compared with the pins
 * (never pinned from: only a handshake proves a key). */
void client_identity_keys(struct chat_client *c, const struct chat_msg *m);
void client_verify(struct chat_client *c, const char *peer, const char *rest);

#endif
