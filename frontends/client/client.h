/* The client engine: one connection to the relay, login (guest, or an
 * account with SCRAM-SHA-256), conversations (consent, suite negotiation,
 * one cipher session per peer), rooms, offline delivery between registered
 * users, the encrypted keystore and history, and the commands a user types.
 * It has no UI: everything it has to say goes out as struct chat_event to a
 * callback; the program (main.c, format.c) prints them as stable lines
 * (docs/CLIENT.md) or in a talk-style screen.
 *
 * The engine is split by topic: client.c (life cycle, relay messages),
 * client_conv.c (1:1 conversations and cipher sessions), client_room.c,
 * client_cmd.c (what the user types), client_account.c (login, register,
 * password, admin, friends), client_mail.c (SEND, STORED, MAIL, ACK, the
 * outbox) and client_store.c (keystore and history files). */
#ifndef CHAT_CLIENT_H
#define CHAT_CLIENT_H

#include <stddef.h>

#include "conn.h"
#include "directory.h"
#include "loader.h"
#include "loop.h"
#include "proto.h"

enum chat_event_kind {
	CHAT_EV_CONNECTED,   /* text: relay address; the relay answered HELLO (WELCOME) */
	CHAT_EV_LOGGED_IN,   /* peer: our name; text: guest, registered or admin */
	CHAT_EV_WHO,         /* peer, text: their suites [friend] */
	CHAT_EV_WHO_END,     /* text: count */
	CHAT_EV_OFFER,       /* peer offers a conversation; suite: what we would use */
	CHAT_EV_OFFERED,     /* we offered peer a conversation */
	CHAT_EV_REJECTED,    /* peer rejected; text: reason */
	CHAT_EV_ESTABLISHED, /* peer, suite, insecure */
	CHAT_EV_MSG,         /* peer, text */
	CHAT_EV_ROOM_MSG,    /* room, peer, text */
	CHAT_EV_JOINED,      /* room, text: members */
	CHAT_EV_ROOM_JOIN,   /* room, peer */
	CHAT_EV_ROOM_LEAVE,  /* room, peer */
	CHAT_EV_ROOMS,       /* room, text: member count */
	CHAT_EV_LEFT,        /* room */
	CHAT_EV_CLOSED,      /* peer: the conversation ended; text: why */
	CHAT_EV_FINGERPRINT, /* peer, suite, text */
	CHAT_EV_SUITE,       /* peer (or empty: our allowed list), suite, text */
	CHAT_EV_QUEUED,      /* peer: text held until the session is established */
	CHAT_EV_INFO,        /* text */
	CHAT_EV_WARNING,     /* peer, text (insecure suites); no peer: the relay is not answering */
	CHAT_EV_ERROR,       /* peer (subject, may be empty), code (name), text */
	CHAT_EV_BYE,         /* text: relay closing */
	CHAT_EV_HELP,        /* text: one line of help */
	CHAT_EV_SENT,        /* peer or room, suite, text, seq (stored conversations): a message we
	                        sent (kept until delivered, or sealed and passed to the relay) */
	CHAT_EV_PASSWORD,    /* peer: our name; text: prompt.  The next input line is the password */
	CHAT_EV_DONE,        /* peer (subject, may be empty), text: the relay did what was asked */
	CHAT_EV_STORED,      /* peer, text: "ID queued|online|duplicate|live" */
	CHAT_EV_RECEIPT,     /* peer, text: "ID fetched|expired|unreadable|removed [TEXT]": what the
	                        relay says happened to our SEND with client id ID (not end to end) */
	CHAT_EV_USER,        /* peer, text: "GROUP ADDRESS SUITES SINCE" (after /users) */
	CHAT_EV_USERS_END,   /* text: count */
	CHAT_EV_FRIEND,      /* peer, text: "friend|asked|asks online|offline" (after /friends) */
	CHAT_EV_FRIENDS_END, /* text: count */
	CHAT_EV_FRIEND_REQUEST,  /* peer asks to be your friend */
	CHAT_EV_FRIEND_ACCEPTED, /* peer accepted: you are friends */
	CHAT_EV_FRIEND_REMOVED,  /* peer ended the friendship or declined/withdrew a request */
	CHAT_EV_RESUMED,     /* peer, suite, insecure: a saved session continues (no new handshake) */
	CHAT_EV_DELIVERED,   /* peer, suite, seq, insecure: the peer's client confirmed (sealed in the
	                        conversation) that it showed our message seq; text "unauthenticated"
	                        when the suite cannot authenticate the confirmation */
	CHAT_EV_KINDS
};

struct chat_event {
	int kind;
	const char *peer;   /* "" when none */
	const char *room;
	const char *suite;
	const char *code;   /* short error code, e.g. "not-connected" */
	const char *text;   /* may contain anything: the UI must sanitize before display */
	size_t text_len;
	int insecure;
	uint64_t seq;       /* SENT, DELIVERED: the message's number in its conversation (0: none) */
};

typedef void (*chat_event_cb)(void *ui, const struct chat_event *ev);

enum chat_min_security {
	CHAT_MINSEC_AUTO = 0,   /* no insecure suite where a secure one is usable with the peer */
	CHAT_MINSEC_SECURE,     /* never an insecure suite */
	CHAT_MINSEC_INSECURE,   /* whatever the negotiation gives */
};

struct chat_client_config {
	const char *relay;             /* address (the first of relays, if those are given) */
	/* Relay addresses tried in turn (client.connect); NULL: relay only. */
	const char (*relays)[300];
	size_t nrelays;
	/* When the relay is lost after a login: keep running and connect again
	 * (1 s doubling to 30 s, with jitter, through every address); input
	 * typed meanwhile waits.  0: the client ends (--no-reconnect). */
	int reconnect;
	const char *user;
	const struct chat_transport_ops *tp;
	const struct chat_host *tp_host;
	struct chat_registry *reg;     /* cipher plugins are loaded from here */
	const char *plugin_dir;
	size_t nsuites;                /* allowed suites, most preferred first */
	const char (*suites)[33];
	const struct chat_directory *directory; /* passwords, may be NULL */
	int min_security;              /* CHAT_MINSEC_* (client.min_security) */
	size_t max_frame;
	size_t max_message;
	int connect_timeout_ms;        /* for the transport connect */
	/* Keepalive (docs/PROTOCOL.md): PING after keepalive_ms without a frame,
	 * a warning after twice that, the link given up after dead_after_ms
	 * (also while logging in).  0 turns each off. */
	int keepalive_ms;
	int dead_after_ms;
	/* Accounts.  With a password the client logs in with SCRAM (or first
	 * registers, with register_account); without one, as a guest.  The
	 * engine copies the password (the caller wipes its own copy). */
	const char *password;          /* NULL: guest */
	size_t password_len;
	int register_account;
	int interactive;               /* no password yet, but a person can type one: ask
	                                  (CHAT_EV_PASSWORD) if the relay says the name is registered */
	const char *data_dir;          /* USER.keys and USER.log live here; NULL or "": nothing kept */
	unsigned kdf_iterations;       /* PBKDF2 for a new keystore and history */
	unsigned scram_iterations;     /* PBKDF2 of the verifiers this client makes */
};

struct chat_client;

/* Loads the allowed suites (errors name the plugin).  Nothing is opened or
 * connected yet. */
int chat_client_new(struct chat_loop *loop, const struct chat_client_config *cfg,
                    chat_event_cb cb, void *ui, struct chat_client **out, size_t errlen, char *err);
/* With a password and a data_dir: opens (or prepares) the keystore and the
 * history, verifying them (this is where PBKDF2 runs, before any network);
 * then starts connecting.  err names the file at fault ("x/alice.keys: wrong
 * password or the keystore was modified"); CHAT_ERR_AUTH for a wrong password,
 * CHAT_ERR_STATE when another chat-client has the keystore open. */
/* A person at the terminal gets this many tries at a password, like ssh:
 * the keystore's (the caller asks again after CHAT_ERR_AUTH), or, with no
 * keystore to check it against (cfg.interactive), the relay's: the engine
 * asks again with CHAT_EV_PASSWORD after the relay refused one. */
#define CHAT_CLIENT_PASSWORD_TRIES 3
/* Another account password after chat_client_start failed with
 * CHAT_ERR_AUTH (a mistyped one); then chat_client_start again. */
int chat_client_set_password(struct chat_client *c, size_t len, const char *pw);
int chat_client_start(struct chat_client *c, size_t errlen, char *err);
void chat_client_free(struct chat_client *c);

/* One line the user typed: a /command or text for the current conversation
 * (or the password, after CHAT_EV_PASSWORD). */
void chat_client_input(struct chat_client *c, size_t len, const char *line);
/* 1 while the next input line is a password (the UI should not echo it). */
int chat_client_wants_password(const struct chat_client *c);
/* 0 while running; otherwise the exit status the program should return. */
int chat_client_done(const struct chat_client *c);
/* The exit status once done: 0 after /quit, 1 when the relay was lost or refused us. */
int chat_client_status(const struct chat_client *c);
/* Close politely once everything queued is written. */
void chat_client_quit(struct chat_client *c);
/* The user wants out (^D, end of input, a signal): /quit, or while a
 * password is wanted the empty line that declines to give one (exit 1);
 * never "/quit" taken for a password. */
void chat_client_input_quit(struct chat_client *c);
/* "bob", "#room" or "" : where plain lines go. */
const char *chat_client_current(const struct chat_client *c);

#endif
