/* The client engine: one connection to the relay, login, conversations
 * (consent, suite negotiation, one cipher session per peer), rooms, and the
 * commands a user types.  It has no UI: everything it has to say goes out as
 * struct chat_event to a callback; frontends/chat-client.c prints them as
 * stable lines (docs/CLIENT.md) or in a talk-style screen. */
#ifndef CHAT_CLIENT_H
#define CHAT_CLIENT_H

#include <stddef.h>

#include "conn.h"
#include "directory.h"
#include "loader.h"
#include "loop.h"
#include "proto.h"

enum chat_event_kind {
	CHAT_EV_CONNECTED,   /* text: relay address */
	CHAT_EV_LOGGED_IN,   /* peer: our name */
	CHAT_EV_WHO,         /* peer, text: their suites */
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
	CHAT_EV_WARNING,     /* text (insecure suites) */
	CHAT_EV_ERROR,       /* peer (subject, may be empty), code (name), text */
	CHAT_EV_BYE,         /* text: relay closing */
	CHAT_EV_HELP,        /* text: one line of help */
	CHAT_EV_SENT,        /* peer or room, suite, text: a message we sent (sealed and queued to the relay) */
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
};

typedef void (*chat_event_cb)(void *ui, const struct chat_event *ev);

struct chat_client_config {
	const char *relay;             /* address */
	const char *user;
	const struct chat_transport_ops *tp;
	const struct chat_host *tp_host;
	struct chat_registry *reg;     /* cipher plugins are loaded from here */
	const char *plugin_dir;
	size_t nsuites;                /* allowed suites, most preferred first */
	const char (*suites)[33];
	const struct chat_directory *directory; /* passwords, may be NULL */
	size_t max_frame;
	size_t max_message;
	int connect_timeout_ms;
};

struct chat_client;

/* Loads the allowed suites (errors name the plugin), starts connecting. */
int chat_client_new(struct chat_loop *loop, const struct chat_client_config *cfg,
                    chat_event_cb cb, void *ui, struct chat_client **out, size_t errlen, char *err);
void chat_client_free(struct chat_client *c);

/* One line the user typed: a /command or text for the current conversation. */
void chat_client_input(struct chat_client *c, size_t len, const char *line);
/* 0 while running; otherwise the exit status the program should return. */
int chat_client_done(const struct chat_client *c);
/* The exit status once done: 0 after /quit, 1 when the relay was lost or refused us. */
int chat_client_status(const struct chat_client *c);
/* Close politely once everything queued is written. */
void chat_client_quit(struct chat_client *c);
/* "bob", "#room" or "" : where plain lines go. */
const char *chat_client_current(const struct chat_client *c);

#endif
