/* SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802 / RFC 7677, channel binding
 * tls-exporter of RFC 9266) message handling, no I/O: the standard strings
 * (client-first "GS2,n=user,r=nonce" with GS2 "n,," / "y,," /
 * "p=tls-exporter,,", server-first "r=...,s=...,i=...", client-final
 * "c=base64(GS2 [+ binding]),r=...,p=proof", server-final "v=signature")
 * built and checked here, carried verbatim by whatever protocol needs them.
 * Both roles; the server side keeps only salt, iteration count, StoredKey and
 * ServerKey. */
#ifndef CHAT_SCRAM_H
#define CHAT_SCRAM_H

#include <stddef.h>
#include <stdint.h>

#define CHAT_SCRAM_KEY 32        /* SHA-256 */
#define CHAT_SCRAM_MSG_MAX 512   /* longest message accepted or built */
#define CHAT_SCRAM_MIN_ITER 4096 /* RFC 7677 minimum */

/* What a server stores for an account: never the password. */
struct chat_scram_verifier {
	uint8_t salt[64];
	size_t salt_len;
	unsigned iterations;
	uint8_t stored_key[CHAT_SCRAM_KEY];
	uint8_t server_key[CHAT_SCRAM_KEY];
};

/* Derive a verifier from a password (registration, password change). */
void chat_scram_make_verifier(size_t pw_len, const char *password, size_t salt_len,
                              const uint8_t *salt, unsigned iterations,
                              struct chat_scram_verifier *v);

/* Channel binding (RFC 5802 section 6): the GS2 flag and, for 'p', the
 * binding data of the link (tls-exporter: 32 bytes). */
#define CHAT_SCRAM_CB_TYPE "tls-exporter"
#define CHAT_SCRAM_CB_MAX 64
struct chat_scram_cb {
	char flag;  /* 'n': the client has no binding; 'y': it has, but thinks the server has none; 'p': used */
	size_t len; /* for 'p' */
	uint8_t data[CHAT_SCRAM_CB_MAX];
};

struct chat_scram_client {
	char user[128];
	struct chat_scram_cb cb;
	char nonce[64];
	char client_first_bare[CHAT_SCRAM_MSG_MAX];
	char server_first[CHAT_SCRAM_MSG_MAX];
	uint8_t server_signature[CHAT_SCRAM_KEY];
	int state;
};

struct chat_scram_server {
	char user[128];         /* from client-first, unescaped */
	struct chat_scram_cb cb; /* what the client asked for, with the link's data for 'p' */
	const char *why;        /* after CHAT_ERR_AUTH from a binding check: the reason (static text) */
	char client_first_bare[CHAT_SCRAM_MSG_MAX];
	char server_first[CHAT_SCRAM_MSG_MAX];
	char nonce[160];        /* client nonce + server nonce */
	struct chat_scram_verifier v;
	int state;
};

/* Client: client-first message with the given (printable, no ',') nonce.
 * cb: NULL or flag 'n' (no binding), 'y', or 'p' with the link's
 * tls-exporter data. */
int chat_scram_client_first(struct chat_scram_client *c, const char *user, const char *nonce,
                            const struct chat_scram_cb *cb, size_t cap, char *out);
/* Client: given server-first and the password, produce client-final. */
int chat_scram_client_final(struct chat_scram_client *c, const char *server_first,
                            size_t pw_len, const char *password, size_t cap, char *out);
/* Client: check server-final (the relay proves it knows the verifier).
 * CHAT_OK or CHAT_ERR_AUTH. */
int chat_scram_client_verify(struct chat_scram_client *c, const char *server_final);

/* Server: parse client-first; returns the username to look up (in s->user).
 * link/link_len: the tls-exporter data of the link the message came over
 * (link_len 0: the link has no binding).  RFC 5802 rules: 'p' needs a link
 * binding, and 'y' on a link that has one means a binding was removed on
 * the way (a downgrade): both CHAT_ERR_AUTH with s->why set.  A bad message:
 * CHAT_ERR_MALFORMED. */
int chat_scram_server_first_in(struct chat_scram_server *s, const char *client_first,
                               size_t link_len, const uint8_t *link);
/* Server: with the user's verifier (or a fake one for unknown users, so the
 * answer does not reveal whether they exist) and a server nonce, produce
 * server-first. */
int chat_scram_server_first(struct chat_scram_server *s, const struct chat_scram_verifier *v,
                            const char *server_nonce, size_t cap, char *out);
/* Server: check client-final; on success produce server-final.  CHAT_ERR_AUTH
 * for a wrong proof, or for a channel binding (c=) that is not this link's
 * (s->why set then), CHAT_ERR_MALFORMED for a bad message. */
int chat_scram_server_final(struct chat_scram_server *s, const char *client_final, size_t cap,
                            char *out);

void chat_scram_client_wipe(struct chat_scram_client *c);
void chat_scram_server_wipe(struct chat_scram_server *s);

#endif
