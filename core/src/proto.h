/* The client<->relay protocol (docs/PROTOCOL.md): one message per frame,
 * binary, a type byte then fields.  Parsing does no I/O and validates every
 * field (lengths, names, list counts) before returning, so the relay and the
 * client can trust a parsed struct chat_msg; list bodies are validated in
 * the same pass and then read with the iterators below, which cannot fail. */
#ifndef CHAT_PROTO_H
#define CHAT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <chat/error.h>
#include <chat/transport.h> /* CHAT_ADDR_MAX: client addresses in USERS */

#include "scram.h"

#define CHAT_PROTO_VERSION 1
#define CHAT_NAME_MAX 32   /* usernames, room names, suite names */
#define CHAT_TEXT_MAX 512  /* error texts and reasons */
#define CHAT_SUITES_MAX 16 /* suites a client may list */

#define CHAT_SALT_MIN 16   /* registration verifiers: salt bytes */
#define CHAT_ITER_MAX 10000000u

enum chat_msg_type {
	/* client -> relay */
	CHAT_MSG_HELLO = 0x01,     /* version, suites[] (most preferred first) */
	CHAT_MSG_LOGIN = 0x02,     /* name */
	CHAT_MSG_WHO = 0x03,
	CHAT_MSG_TALK = 0x04,      /* name: offer a conversation */
	CHAT_MSG_ANSWER = 0x05,    /* name, flag (1 accept), suite, text (reason) */
	CHAT_MSG_ROUTE = 0x06,     /* name, payload: opaque end-to-end bytes */
	CHAT_MSG_JOIN = 0x07,      /* room */
	CHAT_MSG_LEAVE = 0x08,     /* room */
	CHAT_MSG_ROOMS = 0x09,
	CHAT_MSG_ROOM_SEND = 0x0a, /* room, list of (name, payload): one sealed copy per member */
	CHAT_MSG_CLOSE = 0x0b,     /* name: end the conversation */
	CHAT_MSG_AUTH = 0x0c,      /* op (CHAT_AUTH_*), text: SCRAM client-first */
	CHAT_MSG_AUTH_FINAL = 0x0d,/* text: SCRAM client-final */
	CHAT_MSG_REGISTER = 0x0e,  /* name, verifier */
	CHAT_MSG_PASSWD = 0x0f,    /* verifier: after an AUTH with op CHAT_AUTH_PASSWD */
	CHAT_MSG_ADMIN = 0x10,     /* op (CHAT_ADMIN_*), name, verifier for ADD and RESET */
	CHAT_MSG_FRIEND = 0x11,    /* op (CHAT_FRIEND_OP_*), name */
	CHAT_MSG_SEND = 0x12,      /* name, id (client id), payload: stored and forwarded */
	CHAT_MSG_ACK = 0x13,       /* id (mail id), flag (0 processed, 1 unreadable), text */
	CHAT_MSG_KEYS_PUT = 0x14,  /* suite, payload: publish our identity public key for suite */
	CHAT_MSG_KEYS_GET = 0x15,  /* name: ask for name's identity public keys (reply KEYS) */
	/* either direction, at any time (also before HELLO) */
	CHAT_MSG_PING = 0x40,      /* id (token): answer PONG with the same token at once */
	CHAT_MSG_PONG = 0x41,      /* id (token of the PING answered) */
	/* relay -> client */
	CHAT_MSG_WELCOME = 0x81,   /* version, suites[] the relay carries */
	CHAT_MSG_LOGGED_IN = 0x82, /* name, group, id (last SEND client id the relay has from us) */
	CHAT_MSG_WHO_LIST = 0x83,  /* list of (name, suites[], flags): friends first */
	CHAT_MSG_OFFERED = 0x84,   /* name (from), suites[] (theirs) */
	CHAT_MSG_ANSWERED = 0x85,  /* name (from), flag, suite, suites[] (theirs), text */
	CHAT_MSG_DELIVER = 0x86,   /* name (from), payload */
	CHAT_MSG_MEMBERS = 0x87,   /* room, list of (name, suites[]) (reply to JOIN) */
	CHAT_MSG_ROOM_EVENT = 0x88,/* room, name, flag (1 joined, 2 left) */
	CHAT_MSG_ROOM_LIST = 0x89, /* list of (room, member count) */
	CHAT_MSG_ROOM_DELIVER = 0x8a, /* room, name (from), payload */
	CHAT_MSG_CLOSED = 0x8b,    /* name: the peer ended the conversation or left */
	CHAT_MSG_ERROR = 0x8c,     /* code, ref (request type), name (subject), text, id (SEND's client id, else 0) */
	CHAT_MSG_BYE = 0x8d,       /* text: the relay is closing this connection */
	CHAT_MSG_AUTH_CHALLENGE = 0x8e, /* text: SCRAM server-first */
	CHAT_MSG_AUTH_OK = 0x8f,   /* op, text: SCRAM server-final */
	CHAT_MSG_USERS = 0x90,     /* list of (name, group, address, suites[], since) */
	CHAT_MSG_DONE = 0x91,      /* ref (request type), op, name (subject), text */
	CHAT_MSG_FRIENDS = 0x92,   /* list of (name, state, online) */
	CHAT_MSG_FRIEND_EVENT = 0x93, /* name, flag (CHAT_FRIEND_EV_*) */
	CHAT_MSG_STORED = 0x94,    /* name (to), id (client id), id2 (mail id), flag (CHAT_STORED_*) */
	CHAT_MSG_RECEIPT = 0x95,   /* name (to), id (client id), flag (CHAT_RECEIPT_*), text */
	CHAT_MSG_MAIL = 0x96,      /* id (mail id), time_ms (stored at), payload: an inner relay->client message */
	CHAT_MSG_KEYS = 0x97,      /* name, list of (suite, key): name's published identity keys */
};

enum chat_proto_error {
	CHAT_PERR_MALFORMED = 1,   /* the request does not parse */
	CHAT_PERR_VERSION = 2,     /* protocol version not supported */
	CHAT_PERR_NAME_TAKEN = 3,
	CHAT_PERR_BAD_NAME = 4,    /* invalid user or room name */
	CHAT_PERR_NOT_LOGGED_IN = 5,
	CHAT_PERR_ALREADY = 6,     /* already logged in / already a member / already talking */
	CHAT_PERR_NOT_CONNECTED = 7,
	CHAT_PERR_SELF = 8,        /* talking to oneself */
	CHAT_PERR_NO_COMMON_SUITE = 9,
	CHAT_PERR_SUITE_REFUSED = 10, /* relay policy does not carry the suite */
	CHAT_PERR_NOT_MEMBER = 11,
	CHAT_PERR_NO_CONVERSATION = 12, /* routing without an accepted conversation */
	CHAT_PERR_LIMIT = 13,      /* too many rooms, members, offers */
	CHAT_PERR_UNEXPECTED = 14, /* a relay->client type sent to the relay, or out of order */
	CHAT_PERR_AUTH = 15,       /* login failed: unknown user or wrong password (one answer for both) */
	CHAT_PERR_THROTTLED = 16,  /* too many failed logins: wait */
	CHAT_PERR_FORBIDDEN = 17,  /* not allowed: admin only, registration closed, friends only */
	CHAT_PERR_NO_USER = 18,    /* no such account */
	CHAT_PERR_EXISTS = 19,     /* the account exists already */
	CHAT_PERR_QUEUE_FULL = 20, /* the recipient's offline queue is full */
	CHAT_PERR_STORAGE = 21,    /* the relay could not store: nothing was accepted */
	CHAT_PERR_CHANNEL_BINDING = 22, /* the SCRAM channel binding does not fit this link (section 4) */
};

enum chat_auth_op {
	CHAT_AUTH_LOGIN = 1,       /* log in as the client-first's user */
	CHAT_AUTH_PASSWD = 2,      /* logged in: prove the current password before PASSWD */
};

/* A user's group: LOGGED_IN says which; the relay stores it with the account. */
enum chat_group {
	CHAT_GROUP_GUEST = 0,   /* not stored: a connected user without an account */
	CHAT_GROUP_REGULAR = 1,
	CHAT_GROUP_ADMIN = 2,
};

enum chat_admin_op {
	CHAT_ADMIN_USERS = 1,      /* list connected users (reply USERS) */
	CHAT_ADMIN_ADD = 2,        /* add name with an initial password (verifier) */
	CHAT_ADMIN_REMOVE = 3,
	CHAT_ADMIN_RESET = 4,      /* set name's password (verifier) */
	CHAT_ADMIN_PROMOTE = 5,    /* make name an admin */
	CHAT_ADMIN_DEMOTE = 6,     /* make name a regular user */
};

enum chat_friend_op {
	CHAT_FRIEND_OP_ADD = 1,    /* ask name, or accept name's request */
	CHAT_FRIEND_OP_REMOVE = 2, /* end a friendship, withdraw or decline a request */
	CHAT_FRIEND_OP_LIST = 3,   /* reply FRIENDS */
};

enum chat_friend_event {
	CHAT_FRIEND_EV_ASKS = 1,   /* name asks to be your friend */
	CHAT_FRIEND_EV_ACCEPTED = 2,
	CHAT_FRIEND_EV_REMOVED = 3,/* name ended the friendship or declined/withdrew */
};

enum chat_stored_state {
	CHAT_STORED_ONLINE = 1,    /* durably stored; the recipient is online: delivering now */
	CHAT_STORED_QUEUED = 2,    /* durably stored; the recipient is offline */
	CHAT_STORED_DUPLICATE = 3, /* this client id was accepted before */
	CHAT_STORED_LIVE = 4,      /* the recipient is a guest: forwarded live, not stored */
};

enum chat_receipt_status {
	CHAT_RECEIPT_DELIVERED = 1,
	CHAT_RECEIPT_EXPIRED = 2,  /* not fetched before relay.queue_expiry */
	CHAT_RECEIPT_UNREADABLE = 3, /* delivered, but the recipient could not open it (text: why) */
	CHAT_RECEIPT_REMOVED = 4,  /* the recipient's account was removed */
};

/* WHO_LIST entry flags */
#define CHAT_WHO_FRIEND 1u
#define CHAT_WHO_REGISTERED 2u

/* Zero-copy iterator over a validated list body. */
struct chat_iter {
	const uint8_t *p;
	size_t left;   /* bytes */
	size_t count;  /* entries still to read */
	int type;      /* the message type the list belongs to */
};

#define CHAT_KEY_MAX 4096 /* bytes of one identity public key (KEYS_PUT, KEYS) */

struct chat_msg {
	int type;
	unsigned version;
	unsigned code, ref;   /* ERROR */
	int flag;             /* ANSWER(ED): 1 accept, 0 reject; ROOM_EVENT: 1 joined, 2 left */
	char name[CHAT_NAME_MAX + 1];
	char room[CHAT_NAME_MAX + 1];
	char suite[CHAT_NAME_MAX + 1];
	size_t nsuites;
	char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	char text[CHAT_TEXT_MAX + 1];
	const uint8_t *payload; /* ROUTE, SEND, DELIVER, ROOM_DELIVER, MAIL: points into the frame */
	size_t payload_len;
	struct chat_iter list;  /* WHO_LIST, MEMBERS, ROOM_LIST, ROOM_SEND, USERS, FRIENDS */
	unsigned op;            /* AUTH, AUTH_OK, ADMIN, FRIEND, DONE */
	unsigned group;         /* LOGGED_IN: CHAT_GROUP_* */
	uint64_t id, id2;       /* LOGGED_IN: id = last SEND id accepted from us; SEND, STORED,
	                           RECEIPT, ERROR: id = client id, id2 = mail id; ACK, MAIL: id = mail id;
	                           PING, PONG: id = token (any value, 0 included) */
	int64_t time_ms;        /* MAIL: when the relay stored it (Unix ms) */
	int has_verifier;       /* REGISTER, PASSWD, ADMIN ADD/RESET */
	struct chat_scram_verifier verifier;
};

/* Parse one frame.  CHAT_OK, or CHAT_ERR_MALFORMED with err saying what is
 * wrong ("LOGIN: name 'Bob!' has invalid characters").  Pointers in m point
 * into src. */
int chat_msg_parse(size_t len, const uint8_t *src, struct chat_msg *m, size_t errlen, char *err);
const char *chat_msg_type_name(int type);

/* Iterators over validated lists; return 1 for an entry, 0 at the end.
 * WHO_LIST and MEMBERS entries are read with chat_iter_who. */
int chat_iter_who(struct chat_iter *it, char name[CHAT_NAME_MAX + 1], size_t *nsuites,
                  char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1]);
/* WHO_LIST entries also carry flags (CHAT_WHO_*); *flags is 0 for MEMBERS.
 * flags may be NULL. */
int chat_iter_who_flags(struct chat_iter *it, char name[CHAT_NAME_MAX + 1], size_t *nsuites,
                        char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1], unsigned *flags);
int chat_iter_user(struct chat_iter *it, char name[CHAT_NAME_MAX + 1], unsigned *group,
                   char addr[CHAT_ADDR_MAX + 1], size_t *nsuites,
                   char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1], int64_t *since_ms);
int chat_iter_friend(struct chat_iter *it, char name[CHAT_NAME_MAX + 1], unsigned *state,
                     int *online);
int chat_iter_name(struct chat_iter *it, char name[CHAT_NAME_MAX + 1]);
/* KEYS entries: the suite and the key (pointing into the frame). */
int chat_iter_key(struct chat_iter *it, char suite[CHAT_NAME_MAX + 1], size_t *len, const uint8_t **key);
int chat_iter_room(struct chat_iter *it, char room[CHAT_NAME_MAX + 1], unsigned *members);
int chat_iter_target(struct chat_iter *it, char name[CHAT_NAME_MAX + 1], const uint8_t **payload,
                     size_t *len);

/* Names: 1..32 of a-z 0-9 '_' '-' '.', starting with a letter or digit.
 * Returns NULL if valid, else why not. */
const char *chat_name_check(size_t len, const char *name);

/* A growable message builder; errors stick (err != 0) and are checked once. */
struct chat_wbuf {
	uint8_t *data;
	size_t len, cap, max;
	int err;
	uint8_t inline_buf[256];
};
void chat_wbuf_init(struct chat_wbuf *b, size_t max);
void chat_wbuf_free(struct chat_wbuf *b);
void chat_wbuf_reset(struct chat_wbuf *b);
void chat_put_u8(struct chat_wbuf *b, unsigned v);
void chat_put_u16(struct chat_wbuf *b, unsigned v);
void chat_put_u32(struct chat_wbuf *b, uint32_t v);
void chat_put_str8(struct chat_wbuf *b, const char *s);   /* <= 255 bytes */
void chat_put_str16(struct chat_wbuf *b, const char *s);  /* truncated at CHAT_TEXT_MAX */
void chat_put_bytes(struct chat_wbuf *b, size_t len, const uint8_t *src);
void chat_put_suites(struct chat_wbuf *b, size_t n, const char (*suites)[CHAT_NAME_MAX + 1]);
void chat_put_u64(struct chat_wbuf *b, uint64_t v);
/* str8 salt, u32 iterations, stored key, server key */
void chat_put_verifier(struct chat_wbuf *b, const struct chat_scram_verifier *v);

#endif
