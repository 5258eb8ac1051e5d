/* Internal interface of the aescbc-hmac suite, shared by its .c files and by
 * tests/test_aescbc_hmac.c (which compiles them directly).  Nothing here is
 * exported from the plugin: the module is built with hidden visibility and
 * only chat_plugin_entry() is marked CHAT_PLUGIN_EXPORT.
 * docs/suites/aescbc-hmac.md describes the wire format and key schedule. */
#ifndef ACH_AESCBC_HMAC_H
#define ACH_AESCBC_HMAC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <chat/plugin.h>

#define ACH_SUITE "aescbc-hmac"
#define ACH_VERSION "2.0.0"    /* 2: the handshake's challenges salt PBKDF2 (not 1-compatible) */

#define ACH_KEY_LEN 32         /* AES-256 key, HMAC-SHA256 key, master key */
#define ACH_MAC_LEN 32         /* HMAC-SHA256 output */
#define ACH_CHALLENGE_LEN 32
#define ACH_BLOCK 16           /* AES block, IV, PKCS#7 block size */
#define ACH_FP_BYTES 10        /* 80-bit fingerprint */
#define ACH_FP_TEXT 25         /* "xxxx xxxx xxxx xxxx xxxx" + NUL */
#define ACH_USER_MAX 256       /* bytes of a username */
#define ACH_MSG_MAX (1u << 20) /* largest plaintext seal() accepts */
#define ACH_HS_PDU_MAX 4096    /* largest handshake PDU accepted */
#define ACH_JSON_DEPTH_MAX 8   /* deepest [ / { nesting accepted */
#define ACH_SEQ_MAX INT64_MAX  /* seq is a JSON integer: json_int_t is signed */
#define ACH_DIGEST_LEN 32      /* SHA-256 output */

/* A saved session (session_save): "ACHS" || version || name length || name
 * || params digest || keys || fingerprint || send seq || recv seq. */
#define ACH_SAVE_MAGIC "ACHS"
#define ACH_SAVE_VERSION 1
#define ACH_SAVE_HEAD (4 + 1 + 1 + sizeof(ACH_SUITE) - 1)
#define ACH_SAVE_LEN (ACH_SAVE_HEAD + ACH_DIGEST_LEN + ACH_K_COUNT * ACH_KEY_LEN + \
                      ACH_FP_BYTES + 8 + 8)

/* Defaults and bounds of the [plugin.aescbc-hmac] keys. */
#define ACH_ITER_DEFAULT 100000
#define ACH_ITER_MIN 1000
#define ACH_ITER_MAX 10000000
#define ACH_SALT_DEFAULT "chat-aescbc-hmac-v1"
#define ACH_WINDOW_DEFAULT 25
#define ACH_WINDOW_MIN 1
#define ACH_WINDOW_MAX 3600

enum ach_type {
	ACH_T_TEXT = 1,
	ACH_T_HELLO,
	ACH_T_CHALLENGE,
	ACH_T_RESPONSE,
	ACH_T_ACK,
	ACH_T_NACK,
};

enum ach_state {
	ACH_S_INIT_START = 1,     /* initiator, hello not yet sent */
	ACH_S_INIT_WAIT_CHALLENGE,
	ACH_S_INIT_WAIT_ACK,
	ACH_S_RESP_WAIT_HELLO,
	ACH_S_RESP_WAIT_RESPONSE,
	ACH_S_ESTABLISHED,
	ACH_S_FAILED,
};

/* Indices into ach_session.keys: the HKDF output in order. */
enum ach_key {
	ACH_K_ENC_I2R = 0,
	ACH_K_MAC_I2R,
	ACH_K_ENC_R2I,
	ACH_K_MAC_R2I,
	ACH_K_COUNT,
};

struct ach_session {
	const struct chat_host *host;
	int role;  /* enum chat_role */
	int state; /* enum ach_state */
	unsigned iterations;
	int64_t window_ms;
	char local_id[ACH_USER_MAX + 1];
	char peer_id[ACH_USER_MAX + 1];
	char suite[64];
	uint8_t *binding; /* malloc'd copy, may be NULL when binding_len is 0 */
	size_t binding_len;
	/* The password and the PBKDF2 salt prefix: the master key is derived in
	 * the handshake, once both challenges are known; the password is wiped
	 * when the handshake ends, either way. */
	uint8_t *secret;
	size_t secret_len;
	char *salt;
	uint8_t master[ACH_KEY_LEN];      /* from the handshake's challenges on; wiped once established */
	uint8_t ch_i[ACH_CHALLENGE_LEN]; /* initiator's challenge */
	uint8_t ch_r[ACH_CHALLENGE_LEN]; /* responder's challenge */
	uint8_t keys[ACH_K_COUNT][ACH_KEY_LEN];
	uint8_t fp[ACH_FP_BYTES];
	uint64_t hs_send, hs_recv;     /* handshake PDU counters */
	uint64_t send_seq, recv_seq;   /* message counters, from 0 per direction */
};

/* A parsed PDU.  body is malloc'd (messages only); ach_pdu_clear frees it. */
struct ach_pdu {
	int type; /* enum ach_type */
	uint32_t crc;
	int64_t timestamp;
	uint64_t seq;
	char username[ACH_USER_MAX + 1];
	uint8_t challenge[ACH_CHALLENGE_LEN];
	uint8_t proof[ACH_MAC_LEN];
	uint8_t mac[ACH_MAC_LEN];
	uint8_t *body; /* IV || ciphertext */
	size_t body_len;
};

/* kdf.c: PBKDF2, proofs, HKDF, fingerprint. */
void ach_pbkdf2(unsigned iterations, size_t pw_len, const uint8_t *pw, size_t salt_len,
                const uint8_t *salt, size_t len, uint8_t *dst);
void ach_hmac(size_t key_len, const uint8_t *key, size_t len, const uint8_t *src,
              uint8_t dst[ACH_MAC_LEN]);
/* PBKDF2-HMAC-SHA256(pw, salt || 0 || min(a, b) || 0 || max(a, b) || 0 ||
 * ch_i || ch_r, iterations): a new master key for every handshake. */
int ach_master_key(unsigned iterations, const char *salt, const char *user_a,
                   const char *user_b, const uint8_t ch_i[ACH_CHALLENGE_LEN],
                   const uint8_t ch_r[ACH_CHALLENGE_LEN], size_t pw_len, const uint8_t *pw,
                   uint8_t dst[ACH_KEY_LEN]);
/* proof = HMAC(master, lp(label) || ch_i || ch_r || transcript) */
void ach_proof(const struct ach_session *s, int responder, uint8_t dst[ACH_MAC_LEN]);
int ach_session_keys(struct ach_session *s);
void ach_fingerprint_bytes(const struct ach_session *s, uint8_t dst[ACH_FP_BYTES]);
/* What a saved session is tied to: SHA-256(lp(label) || role (1 byte) ||
 * lp(local id) || lp(peer id) || lp(suite) || lp(binding)). */
void ach_params_digest(const struct ach_session *s, uint8_t dst[ACH_DIGEST_LEN]);
/* Message MAC: HMAC(key, "text" || seq (8 BE) || timestamp (8 BE) || IV || ciphertext). */
void ach_msg_mac(const uint8_t key[ACH_KEY_LEN], int64_t timestamp, uint64_t seq,
                 size_t body_len, const uint8_t *body, uint8_t dst[ACH_MAC_LEN]);

/* cbc.c: AES-256-CBC and PKCS#7. */
size_t ach_padded_len(size_t len);
/* Writes the padding after len bytes of buf; buf holds ach_padded_len(len). */
void ach_pkcs7_pad(size_t len, uint8_t *buf);
/* 0 with *out_len set, or CHAT_ERR_MALFORMED; checks every padding byte. */
int ach_pkcs7_unpad(size_t len, const uint8_t *buf, size_t *out_len);
void ach_cbc_encrypt(const uint8_t key[ACH_KEY_LEN], const uint8_t iv[ACH_BLOCK], size_t len,
                     uint8_t *dst, const uint8_t *src);
void ach_cbc_decrypt(const uint8_t key[ACH_KEY_LEN], const uint8_t iv[ACH_BLOCK], size_t len,
                     uint8_t *dst, const uint8_t *src);

/* pdu.c: the JSON PDU codec.  No keys here: MACs are computed by the caller. */
const char *ach_type_name(int type);
int ach_json_depth_ok(size_t len, const uint8_t *src, unsigned max_depth);
void ach_pdu_clear(struct ach_pdu *pdu);
/* Parse and check shape and CRC.  Errors: CHAT_ERR_TOO_BIG (over max),
 * CHAT_ERR_MALFORMED, CHAT_ERR_INTEGRITY (CRC), CHAT_ERR_NOMEM.  *why gets a
 * static description of the failure for the log. */
int ach_pdu_parse(size_t max, size_t len, const uint8_t *src, struct ach_pdu *pdu,
                  const char **why);
/* Handshake PDU; username, challenge and proof as the type needs them. */
int ach_pdu_build_hs(int type, int64_t timestamp, uint64_t seq, const char *username,
                     const uint8_t *challenge, const uint8_t *proof, struct chat_buf *dst);
int ach_pdu_build_text(int64_t timestamp, uint64_t seq, size_t body_len, const uint8_t *body,
                       const uint8_t mac[ACH_MAC_LEN], struct chat_buf *dst);
/* Upper bound of a text PDU carrying body_len bytes of IV || ciphertext. */
size_t ach_pdu_text_bound(size_t body_len);

#endif
