/* Internal interface of the rsa suite, shared by rsa.c and by
 * tests/test_rsa.c and tests/fuzz/fuzz_suite_rsa.c (which compile it
 * directly).  Nothing here is exported from the plugin: the module is built
 * with hidden visibility and only chat_plugin_entry() is exported.
 * docs/suites/rsa.md describes the wire format and the key schedule. */
#ifndef RSA_SUITE_H
#define RSA_SUITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nettle/gcm.h>
#include <nettle/rsa.h>
#include <nettle/sha2.h>

#include <chat/plugin.h>

#define RSA_SUITE "rsa"
#define RSA_VERSION "1.0.0"

#define RSA_BITS 3072
#define RSA_BYTES (RSA_BITS / 8) /* n, c, r and signatures: 384 bytes, big-endian */
#define RSA_E 65537              /* what identity_keygen uses */
#define RSA_E_BYTES_MAX 4        /* a received e: odd, 3 .. 2^32-1 */
#define RSA_NONCE_LEN 32
#define RSA_HASH_LEN 32          /* SHA-256 */
#define RSA_KEY_LEN 32           /* AES-256 */
#define RSA_TAG_LEN 16           /* GCM tag */
#define RSA_SALT_LEN 32          /* PSS salt */
#define RSA_FP_BYTES 10          /* 80-bit fingerprint */
#define RSA_FP_TEXT 25           /* "xxxx xxxx xxxx xxxx xxxx" + NUL */
#define RSA_USER_MAX 256
#define RSA_MSG_MAX (1u << 20)
#define RSA_WINDOW 64            /* a message up to 63 behind the newest still opens, once */

/* Key encodings (docs/suites/rsa.md, "Identity keys"):
 *   public:  0x01 || u16 len || n || u16 len || e           (minimal big-endian)
 *   private: 0x02 || u16 len || public || then for each of d, p, q, a (d mod
 *            p-1), b (d mod q-1), c (q^-1 mod p): u16 len || value */
#define RSA_PUB_TAG 0x01
#define RSA_PRIV_TAG 0x02
#define RSA_PUB_MAX (1 + 2 + RSA_BYTES + 2 + RSA_E_BYTES_MAX)
#define RSA_PRIV_MAX 4096

/* Handshake and message types: the first byte of every message. */
enum rsa_type {
	RSA_T_HELLO = 1, /* I -> R: pub_I, nonce_I */
	RSA_T_REPLY = 2, /* R -> I: pub_R, nonce_R, c_R (to pub_I), sig_R */
	RSA_T_FINISH = 3, /* I -> R: c_I (to pub_R), sig_I */
	RSA_T_TEXT = 0x10, /* seq (u64) || AES-256-GCM ciphertext || tag */
};

#define RSA_TEXT_HEAD (1 + 8)
#define RSA_TEXT_OVERHEAD (RSA_TEXT_HEAD + RSA_TAG_LEN)

enum rsa_state {
	RSA_S_INIT_START = 1,
	RSA_S_INIT_WAIT_REPLY,
	RSA_S_RESP_WAIT_HELLO,
	RSA_S_RESP_WAIT_FINISH,
	RSA_S_ESTABLISHED,
	RSA_S_FAILED,
};

/* A saved session: "RSAS" || version || params digest || k_i2r || k_r2i ||
 * fingerprint || u16 len || peer public key || send seq || recv top ||
 * recv window. */
#define RSA_SAVE_MAGIC "RSAS"
#define RSA_SAVE_VERSION 1

/* Nettle's random function on top of host->random; failed is set if the
 * host failed once (the output is then filler and must not be used). */
struct rsa_rng {
	const struct chat_host *host;
	bool failed;
	uint64_t filler; /* after a failure: not random, only never constant */
};
void rsa_rng_fn(void *ctx, size_t len, uint8_t *dst);

struct rsa_session {
	const struct chat_host *host;
	int role;  /* enum chat_role */
	int state; /* enum rsa_state */
	char local_id[RSA_USER_MAX + 1], peer_id[RSA_USER_MAX + 1];
	char suite[33];
	uint8_t *binding;
	size_t binding_len;

	/* Our identity (the private key only until the handshake ends). */
	bool have_priv;
	struct rsa_public_key pub;
	struct rsa_private_key priv;
	uint8_t pub_enc[RSA_PUB_MAX];
	size_t pub_enc_len;
	/* The peer's pinned key (params->peer_identity) if any, then the key it
	 * proved. */
	uint8_t pinned[RSA_PUB_MAX];
	size_t pinned_len;
	bool have_peer;
	struct rsa_public_key peer;
	uint8_t peer_enc[RSA_PUB_MAX];
	size_t peer_enc_len;
	bool mismatch; /* failed: peer_enc is a key other than the pinned one */

	/* Handshake: the running transcript hash, both nonces, both KEM values. */
	struct sha256_ctx th;
	uint8_t nonce_i[RSA_NONCE_LEN], nonce_r[RSA_NONCE_LEN];
	uint8_t r_i[RSA_BYTES], r_r[RSA_BYTES]; /* secret */

	/* Established. */
	uint8_t k_i2r[RSA_KEY_LEN], k_r2i[RSA_KEY_LEN]; /* secret */
	/* The same keys, scheduled once (AES rounds and GHASH's table): per
	 * message only the IV is set.  Secret. */
	struct gcm_aes256_ctx gcm_send, gcm_recv;
	uint8_t fp[RSA_FP_BYTES];
	uint64_t send_seq; /* next seq to send */
	uint64_t recv_top;  /* 1 + the highest seq opened (0: none yet) */
	uint64_t recv_seen; /* bit i: seq recv_top-1-i was opened (the window) */
};

/* Codec and key schedule, exposed for the tests. */
int rsa_pub_decode(size_t len, const uint8_t *src, struct rsa_public_key *pub);
int rsa_priv_decode(size_t len, const uint8_t *src, struct rsa_public_key *pub,
                    struct rsa_private_key *priv, size_t *pub_len, const uint8_t **pub_enc);
void rsa_mpz_wipe(mpz_t x);
/* RSA-KEM to the peer's key (r uniform in [2, 2^3071)) and from ours. */
int rsa_kem_encap(struct rsa_session *s, uint8_t r[RSA_BYTES], uint8_t c[RSA_BYTES]);
int rsa_kem_decap(struct rsa_session *s, const uint8_t c[RSA_BYTES], uint8_t r[RSA_BYTES]);
void rsa_keys_derive(const uint8_t th[RSA_HASH_LEN], const uint8_t r_r[RSA_BYTES],
                     const uint8_t r_i[RSA_BYTES], uint8_t k_i2r[RSA_KEY_LEN],
                     uint8_t k_r2i[RSA_KEY_LEN]);

#endif
