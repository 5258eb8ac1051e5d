/* Internal interface of the noise-xx suite, shared by noise_xx.c and by
 * tests/test_noise_xx.c and tests/fuzz/fuzz_suite_noise_xx.c (which compile
 * it directly).  Nothing here is exported from the plugin: the module is
 * built with hidden visibility and only chat_plugin_entry() is marked
 * CHAT_PLUGIN_EXPORT.  docs/suites/noise-xx.md describes the protocol. */
#ifndef NXX_NOISE_XX_H
#define NXX_NOISE_XX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <chat/plugin.h>

#define NXX_SUITE "noise-xx"
#define NXX_VERSION "1.0.0"
#define NXX_PROTOCOL "Noise_XX_25519_ChaChaPoly_SHA256" /* exactly HASHLEN bytes */

#define NXX_DH_LEN 32      /* X25519 keys and shared secrets */
#define NXX_KEY_LEN 32     /* ChaChaPoly key */
#define NXX_HASH_LEN 32    /* SHA-256 */
#define NXX_TAG_LEN 16     /* Poly1305 tag */
#define NXX_NONCE_LEN 8    /* the explicit nonce in front of a transport message */
#define NXX_MSG_MAX 65535  /* Noise: every message is at most 65535 bytes */
#define NXX_PT_MAX (NXX_MSG_MAX - NXX_TAG_LEN) /* largest plaintext seal() takes */
#define NXX_USER_MAX 256
#define NXX_FP_BYTES 10    /* 80 bits of the handshake hash */
#define NXX_FP_TEXT 25     /* "xxxx xxxx xxxx xxxx xxxx" + NUL */

/* The replay window: the highest nonce accepted and the 63 below it. */
#define NXX_WINDOW 64
/* rekey_every: the bounds keep the window within two key epochs and the work
 * of one open() (rekeys to catch up with a nonce far ahead) bounded. */
#define NXX_REKEY_DEFAULT 1000
#define NXX_REKEY_MIN NXX_WINDOW
#define NXX_REKEY_MAX (1LL << 32)
#define NXX_AHEAD_EPOCHS 1024 /* a nonce more key epochs ahead than this is refused */

/* A saved session: "NXXS" || version || name length || name || params
 * digest || rekey_every || h || rs || tx key || tx epoch || tx nonce || rx key
 * || rx previous key || rx epoch || rx top || rx window (integers 8 bytes BE). */
#define NXX_SAVE_MAGIC "NXXS"
#define NXX_SAVE_VERSION 1
#define NXX_SAVE_HEAD (4 + 1 + 1 + sizeof(NXX_SUITE) - 1)
#define NXX_SAVE_LEN (NXX_SAVE_HEAD + NXX_HASH_LEN + 8 + NXX_HASH_LEN + NXX_DH_LEN + \
                      NXX_KEY_LEN + 8 + 8 + 2 * NXX_KEY_LEN + 8 + 8 + 8)

enum nxx_state {
	NXX_S_INIT_START = 1, /* initiator, message 1 not yet written */
	NXX_S_INIT_WAIT_2,    /* initiator, waiting for <- e, ee, s, es */
	NXX_S_RESP_WAIT_1,    /* responder, waiting for -> e */
	NXX_S_RESP_WAIT_3,    /* responder, waiting for -> s, se */
	NXX_S_ESTABLISHED,
	NXX_S_FAILED,
};

/* The Noise SymmetricState with its CipherState, and the handshake's keys. */
struct nxx_hs {
	uint8_t ck[NXX_HASH_LEN];
	uint8_t h[NXX_HASH_LEN];
	uint8_t k[NXX_KEY_LEN];
	bool has_k;
	uint64_t n;
	uint8_t e_priv[NXX_DH_LEN], e_pub[NXX_DH_LEN];
	uint8_t re[NXX_DH_LEN];
};

struct nxx_session {
	const struct chat_host *host;
	int role;  /* enum chat_role */
	int state; /* enum nxx_state */
	const char *why; /* static text: why the handshake step failed, for the log */
	uint64_t rekey_every;
	char local_id[NXX_USER_MAX + 1];
	char peer_id[NXX_USER_MAX + 1];
	char suite[64];
	uint8_t *binding; /* the prologue; malloc'd copy, NULL when empty */
	size_t binding_len;
	uint8_t s_priv[NXX_DH_LEN], s_pub[NXX_DH_LEN]; /* ours; s_priv wiped once established */
	uint8_t pin[NXX_DH_LEN];                       /* params->peer_identity */
	bool pinned;
	bool mismatch; /* failed: rs is a key other than the pinned one (peer_identity shows it) */
	struct nxx_hs hs;
	/* Handshake payloads: ours to send (tests only: nxx_test_set_payload)
	 * and the last one received. */
	uint8_t *payload_out;
	size_t payload_out_len;
	uint8_t *payload_in;
	size_t payload_in_len;
	/* After the handshake. */
	uint8_t h[NXX_HASH_LEN];   /* the handshake hash */
	uint8_t rs[NXX_DH_LEN];    /* the peer's static key */
	uint8_t tx_key[NXX_KEY_LEN];
	uint64_t tx_epoch, tx_n;   /* tx_key is for epoch tx_epoch; tx_n: the next nonce */
	uint8_t rx_key[NXX_KEY_LEN], rx_prev[NXX_KEY_LEN];
	uint64_t rx_epoch;         /* rx_key: epoch rx_epoch; rx_prev: rx_epoch - 1 */
	uint64_t rx_top;           /* 1 + the highest nonce accepted, 0 before any */
	uint64_t rx_win;           /* bit i: nonce rx_top - 1 - i was accepted */
};

/* Test-only entry points (never exported: the module has hidden visibility
 * and they are not in any ops table).  The payload is sent in every later
 * handshake message this session writes, instead of the empty one. */
int nxx_test_set_payload(struct nxx_session *s, size_t len, const uint8_t *data);
/* The last handshake payload received (valid until the next step). */
const uint8_t *nxx_test_last_payload(const struct nxx_session *s, size_t *len);

#endif
