/* The peer engine of chat-peer: direct peer-to-peer messages, one
 * authenticated connection per message (SEEDS.md item 3, docs/PEER.md).
 * It listens with the transport plugin, accepts messages from contacts of
 * the directory, and sends messages the user composes; every connection is
 * its own finite state machine, so several sends and receives run at once on
 * the one event loop.  It has no UI: everything it has to say goes out as
 * struct chat_peer_event to a callback (like client.c); main.c
 * prints the events as stable lines or for a person at a terminal. */
#ifndef CHAT_PEER_H
#define CHAT_PEER_H

#include <stddef.h>
#include <stdint.h>

#include "loader.h"
#include "loop.h"
#include "seclog.h"

#define CHAT_PEER_MAX_MESSAGE 61440 /* 60 KiB of text per message */
#define CHAT_PEER_MAX_CONNS 64      /* connections of each direction at once */
#define CHAT_PEER_MIN_FRAME 1024    /* smallest core.max_frame chat-peer works with */
/* The smallest chunk a sender cuts before the last one; on receipt every
 * chunk but the last counts at least this much towards CHAT_PEER_MAX_MESSAGE,
 * so a message is at most 960 chunks and the last, empty or not. */
#define CHAT_PEER_CHUNK_MIN 64

enum chat_peer_event_kind {
	CHAT_PEER_EV_LISTENING, /* text: the address actually bound */
	CHAT_PEER_EV_MSG,       /* peer, text: an authenticated message */
	CHAT_PEER_EV_COMPOSE,   /* peer: the next lines are the message, up to a "." line */
	CHAT_PEER_EV_PASSWORD,  /* peer: the next line is the password for a manual destination */
	CHAT_PEER_EV_SENDING,   /* peer, text: the address being connected to */
	CHAT_PEER_EV_DELIVERED, /* peer: the receiver acknowledged the message */
	CHAT_PEER_EV_ERROR,     /* code, peer (may be ""), text */
	CHAT_PEER_EV_WARNING,   /* text */
	CHAT_PEER_EV_INFO,      /* text */
	CHAT_PEER_EV_HELP,      /* text: one line of help */
};

struct chat_peer_event {
	int kind;
	const char *peer; /* "" when none */
	const char *code; /* error code, one word: "refused", "auth", "nack", ... */
	const char *text; /* may contain anything: the UI must escape it */
	size_t text_len;
};

typedef void (*chat_peer_event_cb)(void *ui, const struct chat_peer_event *ev);

struct chat_peer_config {
	const char *user;                 /* our username */
	const char *listen;               /* address to listen on */
	const struct chat_transport_ops *tp;
	const struct chat_host *tp_host;
	const struct chat_loaded *suite;  /* the cipher suite used and accepted */
	const char *directory;            /* JSON contacts file; NULL or "": none */
	struct chat_seclog *log;          /* encrypted message log; may be NULL */
	size_t max_frame;
	int timeout_ms;                   /* whole-exchange limit per connection */
};

struct chat_peer;

/* Listen and be ready.  The directory (if any) must load now; it is read
 * again whenever the file changes.  err says what failed. */
int chat_peer_new(struct chat_loop *loop, const struct chat_peer_config *cfg,
                  chat_peer_event_cb cb, void *ui, struct chat_peer **out, size_t errlen,
                  char *err);
void chat_peer_free(struct chat_peer *p);

const char *chat_peer_address(const struct chat_peer *p);

/* Start sending one message.  password NULL: to a directory contact
 * (address and password from the directory); else to address with that
 * password.  The result comes as DELIVERED or ERROR events.  Returns
 * CHAT_OK when the exchange started (or an error event was emitted). */
int chat_peer_send(struct chat_peer *p, const char *user, const char *address,
                   const char *password, size_t len, const char *text);

/* One line the user typed (without its newline): /send, /help, /quit, or a
 * line of the message being composed, or a password (docs/PEER.md). */
void chat_peer_input(struct chat_peer *p, size_t len, const char *line);
/* 1 if the next input line is a password (a terminal should not echo it). */
int chat_peer_wants_secret(const struct chat_peer *p);
/* End of input: an unfinished message is reported and dropped; then stop
 * listening and finish once every exchange under way has ended. */
void chat_peer_input_end(struct chat_peer *p);
/* 1 once the engine has nothing left to do after input_end or /quit. */
int chat_peer_done(const struct chat_peer *p);
/* Exchanges under way (both directions). */
size_t chat_peer_active(const struct chat_peer *p);

#endif
