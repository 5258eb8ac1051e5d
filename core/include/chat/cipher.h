/* Cipher-suite plugins: a handshake that produces and consumes opaque
 * messages, then seal/open of chat messages.  No I/O happens here: the core
 * frames, routes and transmits every byte (noise-c's handshake model). */
#ifndef CHAT_CIPHER_H
#define CHAT_CIPHER_H

#include <stddef.h>
#include <stdint.h>

#include <chat/host.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A caller-owned output buffer.  The callee writes at most cap bytes at data
 * and sets len; on CHAT_ERR_NOSPACE len is left 0 and nothing is consumed. */
struct chat_buf {
	uint8_t *data;
	size_t cap;
	size_t len;
};

enum chat_role {
	CHAT_ROLE_INITIATOR = 1, /* speaks first */
	CHAT_ROLE_RESPONDER = 2,
};

/* Everything a cipher session is told when it is created.  Pointers are only
 * valid during session_new: a plugin copies what it keeps. */
struct chat_cipher_params {
	uint32_t size;          /* sizeof(struct chat_cipher_params) as the core was built */
	int role;               /* enum chat_role */
	const char *local_id;   /* our username, never NULL */
	const char *peer_id;    /* the peer's username, never NULL */
	const char *suite;      /* negotiated suite name (this plugin's name) */
	const uint8_t *secret;  /* shared secret (a password), or NULL */
	size_t secret_len;
	/* Transcript of the suite negotiation (both offered lists and the choice).
	 * Authenticating suites must bind it into their handshake so a downgrade
	 * is detected; others may mix it into their fingerprint.  May be empty. */
	const uint8_t *binding;
	size_t binding_len;

	/* ---- ABI 1.3: identity keys (read only if size covers them).  For a
	 * suite with identity_keygen (CHAT_FLAG_IDENTITY): the local user's
	 * long-term key pair for this suite, as identity_keygen made it (the
	 * core keeps it in the user's encrypted keystore; the private part is
	 * secret), and the peer's public key as the core pinned it, or NULL on
	 * first contact — the suite then authenticates whatever key the peer
	 * proves and reports it with peer_identity() for the core to pin.  With a
	 * pinned key, a peer proving another key fails the handshake
	 * (CHAT_ERR_AUTH).  All NULL/0 for suites without identities. */
	const uint8_t *identity_private;
	size_t identity_private_len;
	const uint8_t *identity_public;
	size_t identity_public_len;
	const uint8_t *peer_identity;
	size_t peer_identity_len;
};

/* Return values of handshake() besides the negative errors. */
#define CHAT_HS_CONTINUE 0    /* send dst if non-empty, then wait for the peer */
#define CHAT_HS_ESTABLISHED 1 /* send dst if non-empty; seal/open now work */

struct chat_cipher_ops {
	uint32_t size; /* sizeof(struct chat_cipher_ops) as the plugin was built */

	/* Create a session.  *session is set only on success. */
	int (*session_new)(const struct chat_host *host,
	                   const struct chat_cipher_params *params, void **session);

	/* One handshake step.  The initiator's first call has src_len == 0.
	 * Consumes the whole peer message in src, writes the next message to dst.
	 * Returns CHAT_HS_CONTINUE, CHAT_HS_ESTABLISHED or a negative error; on an
	 * error dst may still hold a last message for the peer (e.g. a nack) that
	 * the core sends before it closes.  An error is final (every later call
	 * returns CHAT_ERR_FAILED) except CHAT_ERR_NOSPACE and CHAT_ERR_INVALID,
	 * which consume nothing: the caller may retry with a larger dst. */
	int (*handshake)(void *session, size_t src_len, struct chat_buf *dst,
	                 const uint8_t *src);

	/* Upper bound of the sealed size of a len-byte message. */
	size_t (*sealed_size)(void *session, size_t len);

	/* Encrypt (and authenticate, if the suite can) one message.  src and dst
	 * must not overlap.  Before the handshake is established seal and open
	 * return CHAT_ERR_STATE (a suite may also fail the session then). */
	int (*seal)(void *session, size_t src_len, struct chat_buf *dst, const uint8_t *src);

	/* Verify and decrypt one sealed message.  Nothing is written to dst unless
	 * the message is authentic, for suites that can tell.  A rejected message
	 * (CHAT_ERR_INTEGRITY, _REPLAY, _STALE, _MALFORMED) should be dropped
	 * without failing the session, so one injected packet cannot end it. */
	int (*open)(void *session, size_t src_len, struct chat_buf *dst, const uint8_t *src);

	/* Optional (NULL if absent): a short human-comparable string that both
	 * ends compute identically and that differs if someone sat in the middle.
	 * NUL-terminated, at most cap bytes including the NUL. */
	int (*fingerprint)(void *session, size_t cap, char *dst);

	/* Free the session, wiping every secret it held. NULL is allowed. */
	void (*session_free)(void *session);

	/* ---- ABI 1.1: appended; optional (NULL, or beyond an older plugin's
	 * `size`: test with CHAT_CIPHER_HAS(ops, field)). */

	/* Write an established session's whole state (keys, counters, stream
	 * positions) so that another process can continue it with session_load:
	 * this is how a conversation survives logouts and restarts (the client
	 * keeps the bytes in its encrypted keystore).  The output is secret.
	 * CHAT_ERR_STATE before the handshake is established; CHAT_ERR_NOSPACE
	 * (len 0) if dst is too small.  Saving does not change the session. */
	int (*session_save)(void *session, struct chat_buf *dst);

	/* Recreate a session from session_save's bytes, with the same params
	 * (role, both ids, suite, secret, binding) as the session that was
	 * saved; a blob that is malformed, from another plugin or format
	 * version, or saved under different ids or binding is CHAT_ERR_MALFORMED.
	 * *session is set only on success. */
	int (*session_load)(const struct chat_host *host, const struct chat_cipher_params *params,
	                    size_t src_len, const uint8_t *src, void **session);

	/* open() for a message that was stored on the way (offline delivery):
	 * freshness checks (time windows) use at_unix_ms, the time the relay
	 * accepted the message, instead of the clock; everything else is as
	 * open().  NULL: the core calls open(). */
	int (*open_at)(void *session, uint64_t at_unix_ms, size_t src_len, struct chat_buf *dst,
	               const uint8_t *src);

	/* handshake() for a peer message that was stored on the way (an offer
	 * completed while one side was offline): freshness checks use
	 * at_unix_ms as open_at does.  NULL: the core calls handshake(). */
	int (*handshake_at)(void *session, uint64_t at_unix_ms, size_t src_len, struct chat_buf *dst,
	                    const uint8_t *src);

	/* ---- ABI 1.3: identity keys; optional, both or neither. */

	/* Make a new long-term identity key pair for this suite (its own
	 * algorithm and encoding, e.g. X25519 or RSA-3072), randomness from
	 * host->random.  private_key is secret.  CHAT_ERR_NOSPACE (both len 0)
	 * if a buffer is too small: 4096 bytes each always suffice. */
	int (*identity_keygen)(const struct chat_host *host, struct chat_buf *private_key,
	                       struct chat_buf *public_key);

	/* After the handshake is established: the peer's identity public key
	 * that the handshake proved (equal to params->peer_identity when one was
	 * given).  CHAT_ERR_STATE before. */
	int (*peer_identity)(void *session, struct chat_buf *dst);
};

/* Does ops provide field?  (Present in the plugin's struct and not NULL.) */
#define CHAT_CIPHER_HAS(ops, field)                                                     \
	((ops)->size >= offsetof(struct chat_cipher_ops, field) + sizeof((ops)->field) && \
	 (ops)->field != NULL)

#ifdef __cplusplus
}
#endif
#endif
