/* noise-xx: Noise_XX_25519_ChaChaPoly_SHA256 (Noise Protocol Framework,
 * revision 34) with the users' X25519 identity keys as the static keys and
 * the suite-negotiation transcript as the prologue.
 *
 *   -> e
 *   <- e, ee, s, es
 *   -> s, se
 *
 * Transport messages: nonce (8 bytes, little-endian) || ChaChaPoly
 * ciphertext under the split() keys, opened within a 64-nonce replay window;
 * both ends rekey (the spec's REKEY) at every nonce that is a multiple of
 * rekey_every, so the key of any nonce follows from the nonce alone.
 * Format, state machine and limits: docs/suites/noise-xx.md.
 *
 * Choices a caller can rely on:
 * - Handshake errors are final, except CHAT_ERR_NOSPACE and CHAT_ERR_INVALID,
 *   which consume nothing (the room needed is checked before anything runs).
 * - open() rejects a forged, replayed, too old or malformed message with
 *   nothing written and the session unchanged; seal/open before the
 *   handshake completed fail the session (CHAT_ERR_STATE).
 * - Every key is wiped on free and when the session fails; the static
 *   private key and the handshake state are wiped once established. */
#include "noise_xx.h"
#include "plugin_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/chacha-poly1305.h>
#include <nettle/curve25519.h>
#include <nettle/hmac.h>
#include <nettle/sha2.h>

static bool host_ok(const struct chat_host *host)
{
	return CHAT_PU_HOST_HAS(host, wipe) && host->random && host->memeq && host->wipe;
}

static void put_le64(uint8_t *dst, uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		dst[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get_le64(const uint8_t *src)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | src[i];
	return v;
}

/* --- Crypto primitives (Noise section 4) ---------------------------------- */

/* ENCRYPT(k, n, ad, plaintext): ChaChaPoly with the nonce 32 bits of zeros
 * then n little-endian; dst gets len + 16 bytes. */
static void aead_encrypt(const uint8_t k[NXX_KEY_LEN], uint64_t n, size_t ad_len,
                         const uint8_t *ad, size_t len, const uint8_t *src, uint8_t *dst)
{
	struct chacha_poly1305_ctx ctx;
	uint8_t nonce[CHACHA_POLY1305_NONCE_SIZE] = { 0 };

	put_le64(nonce + 4, n);
	chacha_poly1305_set_key(&ctx, k);
	chacha_poly1305_set_nonce(&ctx, nonce);
	if (ad_len)
		chacha_poly1305_update(&ctx, ad_len, ad);
	if (len)
		chacha_poly1305_encrypt(&ctx, len, dst, src);
	chacha_poly1305_digest(&ctx, NXX_TAG_LEN, dst + len);
	explicit_bzero(&ctx, sizeof(ctx));
}

/* DECRYPT: len >= 16 bytes of ciphertext and tag; dst gets len - 16 bytes,
 * wiped again unless the tag is right.  CHAT_OK or CHAT_ERR_INTEGRITY. */
static int aead_decrypt(const struct chat_host *host, const uint8_t k[NXX_KEY_LEN], uint64_t n,
                        size_t ad_len, const uint8_t *ad, size_t len, const uint8_t *src,
                        uint8_t *dst)
{
	struct chacha_poly1305_ctx ctx;
	uint8_t nonce[CHACHA_POLY1305_NONCE_SIZE] = { 0 }, tag[NXX_TAG_LEN];
	size_t pt_len = len - NXX_TAG_LEN;
	int ok;

	put_le64(nonce + 4, n);
	chacha_poly1305_set_key(&ctx, k);
	chacha_poly1305_set_nonce(&ctx, nonce);
	if (ad_len)
		chacha_poly1305_update(&ctx, ad_len, ad);
	if (pt_len)
		chacha_poly1305_decrypt(&ctx, pt_len, dst, src);
	chacha_poly1305_digest(&ctx, NXX_TAG_LEN, tag);
	explicit_bzero(&ctx, sizeof(ctx));
	ok = host->memeq(tag, src + pt_len, NXX_TAG_LEN);
	if (!ok && pt_len)
		host->wipe(dst, pt_len);
	return ok ? CHAT_OK : CHAT_ERR_INTEGRITY;
}

/* REKEY(k) = the first 32 bytes of ENCRYPT(k, maxnonce, zerolen, zeros). */
static void rekey(uint8_t k[NXX_KEY_LEN])
{
	static const uint8_t zeros[NXX_KEY_LEN];
	uint8_t out[NXX_KEY_LEN + NXX_TAG_LEN];

	aead_encrypt(k, UINT64_MAX, 0, NULL, sizeof(zeros), zeros, out);
	memcpy(k, out, NXX_KEY_LEN);
	explicit_bzero(out, sizeof(out));
}

static void hmac(const uint8_t key[NXX_HASH_LEN], size_t len1, const uint8_t *src1, size_t len2,
                 const uint8_t *src2, uint8_t dst[NXX_HASH_LEN])
{
	struct hmac_sha256_ctx ctx;

	hmac_sha256_set_key(&ctx, NXX_HASH_LEN, key);
	if (len1)
		hmac_sha256_update(&ctx, len1, src1);
	if (len2)
		hmac_sha256_update(&ctx, len2, src2);
	hmac_sha256_digest(&ctx, NXX_HASH_LEN, dst);
	explicit_bzero(&ctx, sizeof(ctx));
}

/* HKDF(chaining_key, input_key_material, 2). */
static void hkdf2(const uint8_t ck[NXX_HASH_LEN], size_t ikm_len, const uint8_t *ikm,
                  uint8_t out1[NXX_HASH_LEN], uint8_t out2[NXX_HASH_LEN])
{
	static const uint8_t one = 1, two = 2;
	uint8_t temp[NXX_HASH_LEN], o1[NXX_HASH_LEN];

	hmac(ck, ikm_len, ikm, 0, NULL, temp);
	hmac(temp, 1, &one, 0, NULL, o1);
	hmac(temp, NXX_HASH_LEN, o1, 1, &two, out2);
	memcpy(out1, o1, NXX_HASH_LEN);
	explicit_bzero(temp, sizeof(temp));
	explicit_bzero(o1, sizeof(o1));
}

/* DH(priv, pub); an all-zero result (a low-order point) is refused. */
static int dh(const uint8_t priv[NXX_DH_LEN], const uint8_t pub[NXX_DH_LEN],
              uint8_t out[NXX_DH_LEN])
{
	uint8_t acc = 0;

	curve25519_mul(out, priv, pub);
	for (size_t i = 0; i < NXX_DH_LEN; i++)
		acc |= out[i];
	return acc ? CHAT_OK : CHAT_ERR_PEER_VALUE;
}

/* --- SymmetricState (Noise section 5.2) ----------------------------------- */

static void mix_hash(struct nxx_hs *hs, size_t len, const uint8_t *data)
{
	struct sha256_ctx ctx;

	sha256_init(&ctx);
	sha256_update(&ctx, NXX_HASH_LEN, hs->h);
	if (len)
		sha256_update(&ctx, len, data);
	sha256_digest(&ctx, NXX_HASH_LEN, hs->h);
}

static void mix_key(struct nxx_hs *hs, const uint8_t ikm[NXX_DH_LEN])
{
	hkdf2(hs->ck, NXX_DH_LEN, ikm, hs->ck, hs->k); /* HASHLEN 32: temp_k as is */
	hs->has_k = true;
	hs->n = 0;
}

/* DH then MixKey, the shared secret wiped. */
static int mix_dh(struct nxx_hs *hs, const uint8_t priv[NXX_DH_LEN], const uint8_t pub[NXX_DH_LEN])
{
	uint8_t shared[NXX_DH_LEN];
	int rc = dh(priv, pub, shared);

	if (rc == CHAT_OK)
		mix_key(hs, shared);
	explicit_bzero(shared, sizeof(shared));
	return rc;
}

/* dst gets len (+ 16 once there is a key) bytes. */
static void encrypt_and_hash(struct nxx_hs *hs, size_t len, const uint8_t *src, uint8_t *dst)
{
	size_t out_len = len;

	if (hs->has_k) {
		aead_encrypt(hs->k, hs->n, NXX_HASH_LEN, hs->h, len, src, dst);
		hs->n++;
		out_len += NXX_TAG_LEN;
	} else if (len) {
		memmove(dst, src, len);
	}
	mix_hash(hs, out_len, dst);
}

/* len bytes of src (len >= 16 once there is a key); dst gets the plaintext. */
static int decrypt_and_hash(const struct chat_host *host, struct nxx_hs *hs, size_t len,
                            const uint8_t *src, uint8_t *dst)
{
	if (hs->has_k) {
		int rc = aead_decrypt(host, hs->k, hs->n, NXX_HASH_LEN, hs->h, len, src, dst);

		if (rc < 0)
			return rc;
		hs->n++;
	} else if (len) {
		memmove(dst, src, len);
	}
	mix_hash(hs, len, src);
	return CHAT_OK;
}

/* --- Sessions ------------------------------------------------------------- */

static void wipe_handshake(struct nxx_session *s)
{
	s->host->wipe(&s->hs, sizeof(s->hs));
	s->host->wipe(s->s_priv, sizeof(s->s_priv));
}

static void free_payloads(struct nxx_session *s)
{
	if (s->payload_out) {
		s->host->wipe(s->payload_out, s->payload_out_len);
		free(s->payload_out);
		s->payload_out = NULL;
		s->payload_out_len = 0;
	}
	if (s->payload_in) {
		s->host->wipe(s->payload_in, s->payload_in_len);
		free(s->payload_in);
		s->payload_in = NULL;
		s->payload_in_len = 0;
	}
}

static void session_wipe_free(struct nxx_session *s)
{
	const struct chat_host *host;

	if (!s)
		return;
	host = s->host;
	wipe_handshake(s);
	free_payloads(s);
	if (s->binding) {
		host->wipe(s->binding, s->binding_len);
		free(s->binding);
	}
	host->wipe(s, sizeof(*s));
	free(s);
}

/* Keys are useless once failed: wipe them now, not at free time. */
static void session_fail(struct nxx_session *s)
{
	s->state = NXX_S_FAILED;
	wipe_handshake(s);
	free_payloads(s);
	s->host->wipe(s->tx_key, sizeof(s->tx_key));
	s->host->wipe(s->rx_key, sizeof(s->rx_key));
	s->host->wipe(s->rx_prev, sizeof(s->rx_prev));
	s->host->wipe(s->h, sizeof(s->h));
}

static int config_rekey(const struct chat_host *host, uint64_t *out)
{
	const char *v = chat_pu_config(host, "rekey_every", NULL);
	char *end;
	long long n;

	*out = NXX_REKEY_DEFAULT;
	if (!v)
		return CHAT_OK;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno || end == v || *end || n < NXX_REKEY_MIN || n > NXX_REKEY_MAX) {
		chat_pu_log(host, CHAT_LOG_ERROR, "invalid rekey_every '%.40s' (allowed %d..%lld)",
		            v, NXX_REKEY_MIN, (long long)NXX_REKEY_MAX);
		return CHAT_ERR_CONFIG;
	}
	*out = (uint64_t)n;
	return CHAT_OK;
}

static int params_ok(const struct chat_host *host, const struct chat_cipher_params *params)
{
	size_t n;

	if (!host_ok(host) || !params)
		return CHAT_ERR_INVALID;
	if (params->size < offsetof(struct chat_cipher_params, binding_len) +
	                   sizeof(params->binding_len))
		return CHAT_ERR_ABI;
	if ((params->role != CHAT_ROLE_INITIATOR && params->role != CHAT_ROLE_RESPONDER) ||
	    !params->local_id || !params->peer_id || (params->binding_len && !params->binding))
		return CHAT_ERR_INVALID;
	n = strlen(params->local_id);
	if (n == 0 || n > NXX_USER_MAX)
		return CHAT_ERR_INVALID;
	n = strlen(params->peer_id);
	if (n == 0 || n > NXX_USER_MAX)
		return CHAT_ERR_INVALID;
	if (params->suite && strlen(params->suite) >= sizeof(((struct nxx_session *)0)->suite))
		return CHAT_ERR_INVALID;
	return CHAT_OK;
}

/* The identity fields: present (ABI 1.3), our pair 32 + 32 bytes that
 * belong together, the pinned key absent or 32 bytes. */
static int identity_ok(const struct chat_host *host, const struct chat_cipher_params *params)
{
	uint8_t pub[NXX_DH_LEN];
	int same;

	if (params->size < offsetof(struct chat_cipher_params, peer_identity_len) +
	                   sizeof(params->peer_identity_len) ||
	    !params->identity_private || params->identity_private_len != NXX_DH_LEN ||
	    !params->identity_public || params->identity_public_len != NXX_DH_LEN) {
		chat_pu_log(host, CHAT_LOG_ERROR,
		            "no X25519 identity key pair given (32 + 32 bytes): "
		            "this suite needs one (identity_keygen makes it)");
		return CHAT_ERR_INVALID;
	}
	if (params->peer_identity && params->peer_identity_len != NXX_DH_LEN) {
		chat_pu_log(host, CHAT_LOG_ERROR,
		            "the pinned peer key is %zu bytes, not an X25519 key",
		            params->peer_identity_len);
		return CHAT_ERR_INVALID;
	}
	curve25519_mul_g(pub, params->identity_private);
	same = host->memeq(pub, params->identity_public, NXX_DH_LEN);
	explicit_bzero(pub, sizeof(pub));
	if (!same) {
		chat_pu_log(host, CHAT_LOG_ERROR,
		            "the identity public key does not match its private key");
		return CHAT_ERR_INVALID;
	}
	return CHAT_OK;
}

static int session_alloc(const struct chat_host *host, const struct chat_cipher_params *params,
                         struct nxx_session **out)
{
	struct nxx_session *s;
	uint64_t every;
	int rc;

	*out = NULL;
	rc = config_rekey(host, &every);
	if (rc < 0)
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s)
		return CHAT_ERR_NOMEM;
	s->host = host;
	s->role = params->role;
	s->rekey_every = every;
	strcpy(s->local_id, params->local_id);
	strcpy(s->peer_id, params->peer_id);
	strcpy(s->suite, params->suite ? params->suite : NXX_SUITE);
	if (params->binding_len) {
		s->binding = malloc(params->binding_len);
		if (!s->binding) {
			session_wipe_free(s);
			return CHAT_ERR_NOMEM;
		}
		memcpy(s->binding, params->binding, params->binding_len);
		s->binding_len = params->binding_len;
	}
	if (params->size >= offsetof(struct chat_cipher_params, peer_identity_len) +
	                    sizeof(params->peer_identity_len) &&
	    params->peer_identity && params->peer_identity_len == NXX_DH_LEN) {
		memcpy(s->pin, params->peer_identity, NXX_DH_LEN);
		s->pinned = true;
	}
	*out = s;
	return CHAT_OK;
}

static int nxx_session_new(const struct chat_host *host, const struct chat_cipher_params *params,
                           void **session)
{
	struct nxx_session *s = NULL;
	int rc;

	if (!session)
		return CHAT_ERR_INVALID;
	*session = NULL;
	rc = params_ok(host, params);
	if (rc < 0)
		return rc;
	rc = identity_ok(host, params);
	if (rc < 0)
		return rc;
	rc = session_alloc(host, params, &s);
	if (rc < 0)
		return rc;
	memcpy(s->s_priv, params->identity_private, NXX_DH_LEN);
	memcpy(s->s_pub, params->identity_public, NXX_DH_LEN);
	/* Initialize(): h = protocol name (exactly HASHLEN), ck = h, MixHash(prologue). */
	memcpy(s->hs.h, NXX_PROTOCOL, NXX_HASH_LEN);
	memcpy(s->hs.ck, s->hs.h, NXX_HASH_LEN);
	mix_hash(&s->hs, s->binding_len, s->binding);
	s->state = s->role == CHAT_ROLE_INITIATOR ? NXX_S_INIT_START : NXX_S_RESP_WAIT_1;
	*session = s;
	return CHAT_OK;
}

static void nxx_session_free(void *session)
{
	session_wipe_free(session);
}

int nxx_test_set_payload(struct nxx_session *s, size_t len, const uint8_t *data)
{
	uint8_t *p = NULL;

	if (len) {
		p = malloc(len);
		if (!p)
			return CHAT_ERR_NOMEM;
		memcpy(p, data, len);
	}
	free(s->payload_out);
	s->payload_out = p;
	s->payload_out_len = len;
	return CHAT_OK;
}

const uint8_t *nxx_test_last_payload(const struct nxx_session *s, size_t *len)
{
	*len = s->payload_in_len;
	return s->payload_in;
}

/* --- Handshake ------------------------------------------------------------- */

static int new_ephemeral(struct nxx_session *s)
{
	if (s->host->random(s->host, NXX_DH_LEN, s->hs.e_priv) < 0)
		return CHAT_ERR_RANDOM;
	curve25519_mul_g(s->hs.e_pub, s->hs.e_priv);
	return CHAT_OK;
}

/* The payload at the end of a message we read: decrypted and kept. */
static int read_payload(struct nxx_session *s, size_t len, const uint8_t *src)
{
	size_t pt_len = s->hs.has_k ? len - NXX_TAG_LEN : len;
	uint8_t *p = malloc(pt_len ? pt_len : 1);
	int rc;

	if (!p)
		return CHAT_ERR_NOMEM;
	rc = decrypt_and_hash(s->host, &s->hs, len, src, p);
	if (rc < 0) {
		free(p);
		return rc;
	}
	if (s->payload_in) {
		s->host->wipe(s->payload_in, s->payload_in_len);
		free(s->payload_in);
	}
	s->payload_in = p;
	s->payload_in_len = pt_len;
	return CHAT_OK;
}

/* The peer's static key arrived: it must be the pinned one, if any. */
static int check_peer_static(struct nxx_session *s)
{
	if (!s->pinned || s->host->memeq(s->rs, s->pin, NXX_DH_LEN))
		return CHAT_OK;
	s->why = "authentication failed: the peer proved another identity key than the one "
	         "pinned for it";
	s->mismatch = true;
	return CHAT_ERR_AUTH;
}

/* Split(): c1 for initiator -> responder, c2 for the other way. */
static void establish(struct nxx_session *s)
{
	uint8_t k1[NXX_KEY_LEN], k2[NXX_KEY_LEN];

	hkdf2(s->hs.ck, 0, NULL, k1, k2);
	memcpy(s->tx_key, s->role == CHAT_ROLE_INITIATOR ? k1 : k2, NXX_KEY_LEN);
	memcpy(s->rx_key, s->role == CHAT_ROLE_INITIATOR ? k2 : k1, NXX_KEY_LEN);
	memcpy(s->h, s->hs.h, NXX_HASH_LEN);
	s->tx_epoch = s->tx_n = 0;
	s->rx_epoch = s->rx_top = s->rx_win = 0;
	explicit_bzero(k1, sizeof(k1));
	explicit_bzero(k2, sizeof(k2));
	wipe_handshake(s);
	s->state = NXX_S_ESTABLISHED;
}

/* Message sizes, for the room check before anything happens. */
static size_t msg_size(const struct nxx_session *s, int which)
{
	size_t p = s->payload_out_len;

	switch (which) {
	case 1: return NXX_DH_LEN + p;                                     /* e, payload */
	case 2: return NXX_DH_LEN + NXX_DH_LEN + 2 * NXX_TAG_LEN + p;      /* e, s, payload */
	default: return NXX_DH_LEN + 2 * NXX_TAG_LEN + p;                  /* s, payload */
	}
}

static int write_msg1(struct nxx_session *s, struct chat_buf *dst)
{
	int rc = new_ephemeral(s);

	if (rc < 0)
		return rc;
	memcpy(dst->data, s->hs.e_pub, NXX_DH_LEN);
	mix_hash(&s->hs, NXX_DH_LEN, s->hs.e_pub);
	encrypt_and_hash(&s->hs, s->payload_out_len, s->payload_out, dst->data + NXX_DH_LEN);
	dst->len = msg_size(s, 1);
	return CHAT_OK;
}

static int resp_step(struct nxx_session *s, size_t src_len, const uint8_t *src,
                     struct chat_buf *dst)
{
	uint8_t *p = dst->data;
	int rc;

	/* <- e, payload */
	if (src_len < NXX_DH_LEN)
		return CHAT_ERR_MALFORMED;
	memcpy(s->hs.re, src, NXX_DH_LEN);
	mix_hash(&s->hs, NXX_DH_LEN, s->hs.re);
	rc = read_payload(s, src_len - NXX_DH_LEN, src + NXX_DH_LEN);
	if (rc < 0)
		return rc;
	/* -> e, ee, s, es, payload */
	rc = new_ephemeral(s);
	if (rc < 0)
		return rc;
	memcpy(p, s->hs.e_pub, NXX_DH_LEN);
	mix_hash(&s->hs, NXX_DH_LEN, s->hs.e_pub);
	p += NXX_DH_LEN;
	rc = mix_dh(&s->hs, s->hs.e_priv, s->hs.re);
	if (rc < 0)
		return rc;
	encrypt_and_hash(&s->hs, NXX_DH_LEN, s->s_pub, p);
	p += NXX_DH_LEN + NXX_TAG_LEN;
	rc = mix_dh(&s->hs, s->s_priv, s->hs.re);
	if (rc < 0)
		return rc;
	encrypt_and_hash(&s->hs, s->payload_out_len, s->payload_out, p);
	dst->len = msg_size(s, 2);
	s->state = NXX_S_RESP_WAIT_3;
	return CHAT_HS_CONTINUE;
}

static int init_step(struct nxx_session *s, size_t src_len, const uint8_t *src,
                     struct chat_buf *dst)
{
	uint8_t *p = dst->data;
	int rc;

	/* <- e, ee, s, es, payload */
	if (src_len < NXX_DH_LEN + NXX_DH_LEN + 2 * NXX_TAG_LEN)
		return CHAT_ERR_MALFORMED;
	memcpy(s->hs.re, src, NXX_DH_LEN);
	mix_hash(&s->hs, NXX_DH_LEN, s->hs.re);
	src += NXX_DH_LEN;
	rc = mix_dh(&s->hs, s->hs.e_priv, s->hs.re);
	if (rc < 0)
		return rc;
	rc = decrypt_and_hash(s->host, &s->hs, NXX_DH_LEN + NXX_TAG_LEN, src, s->rs);
	if (rc < 0)
		return CHAT_ERR_AUTH;
	src += NXX_DH_LEN + NXX_TAG_LEN;
	rc = check_peer_static(s); /* before we reveal who we are */
	if (rc < 0)
		return rc;
	rc = mix_dh(&s->hs, s->hs.e_priv, s->rs);
	if (rc < 0)
		return rc;
	rc = read_payload(s, src_len - (NXX_DH_LEN + NXX_DH_LEN + NXX_TAG_LEN), src);
	if (rc < 0)
		return rc == CHAT_ERR_INTEGRITY ? CHAT_ERR_AUTH : rc;
	/* -> s, se, payload */
	encrypt_and_hash(&s->hs, NXX_DH_LEN, s->s_pub, p);
	p += NXX_DH_LEN + NXX_TAG_LEN;
	rc = mix_dh(&s->hs, s->s_priv, s->hs.re);
	if (rc < 0)
		return rc;
	encrypt_and_hash(&s->hs, s->payload_out_len, s->payload_out, p);
	dst->len = msg_size(s, 3);
	establish(s);
	return CHAT_HS_ESTABLISHED;
}

static int resp_finish(struct nxx_session *s, size_t src_len, const uint8_t *src)
{
	int rc;

	/* <- s, se, payload */
	if (src_len < NXX_DH_LEN + 2 * NXX_TAG_LEN)
		return CHAT_ERR_MALFORMED;
	rc = decrypt_and_hash(s->host, &s->hs, NXX_DH_LEN + NXX_TAG_LEN, src, s->rs);
	if (rc < 0)
		return CHAT_ERR_AUTH;
	src += NXX_DH_LEN + NXX_TAG_LEN;
	rc = check_peer_static(s);
	if (rc < 0)
		return rc;
	rc = mix_dh(&s->hs, s->hs.e_priv, s->rs);
	if (rc < 0)
		return rc;
	rc = read_payload(s, src_len - (NXX_DH_LEN + NXX_TAG_LEN), src);
	if (rc < 0)
		return rc == CHAT_ERR_INTEGRITY ? CHAT_ERR_AUTH : rc;
	establish(s);
	return CHAT_HS_ESTABLISHED;
}

static int hs_step(struct nxx_session *s, size_t src_len, const uint8_t *src,
                   struct chat_buf *dst)
{
	size_t need;

	if (src_len > NXX_MSG_MAX)
		return CHAT_ERR_TOO_BIG;
	switch (s->state) {
	case NXX_S_INIT_START:
		if (src_len)
			return CHAT_ERR_STATE; /* the initiator speaks first */
		need = msg_size(s, 1);
		break;
	case NXX_S_RESP_WAIT_1:
		need = msg_size(s, 2);
		break;
	case NXX_S_INIT_WAIT_2:
		need = msg_size(s, 3);
		break;
	case NXX_S_RESP_WAIT_3:
		need = 0;
		break;
	default:
		return CHAT_ERR_STATE; /* established: no more handshake messages */
	}
	/* Room first, so that NOSPACE consumes nothing. */
	if (need > dst->cap)
		return CHAT_ERR_NOSPACE;
	if (need > NXX_MSG_MAX)
		return CHAT_ERR_TOO_BIG;
	switch (s->state) {
	case NXX_S_INIT_START: {
		int rc = write_msg1(s, dst);

		if (rc < 0)
			return rc;
		s->state = NXX_S_INIT_WAIT_2;
		return CHAT_HS_CONTINUE;
	}
	case NXX_S_RESP_WAIT_1:
		return resp_step(s, src_len, src, dst);
	case NXX_S_INIT_WAIT_2:
		return init_step(s, src_len, src, dst);
	default:
		return resp_finish(s, src_len, src);
	}
}

static int nxx_handshake(void *session, size_t src_len, struct chat_buf *dst, const uint8_t *src)
{
	struct nxx_session *s = session;
	char who[64];
	int rc;

	if (!s || !dst || (!src && src_len) || (dst->cap && !dst->data))
		return CHAT_ERR_INVALID;
	dst->len = 0;
	if (s->state == NXX_S_FAILED)
		return CHAT_ERR_FAILED;
	s->why = NULL;
	rc = hs_step(s, src_len, src, dst);
	chat_pu_quote(sizeof(who), who, s->peer_id);
	if (rc == CHAT_ERR_NOSPACE) {
		dst->len = 0;
	} else if (rc < 0) {
		dst->len = 0;
		if (!s->why)
			s->why = rc == CHAT_ERR_PEER_VALUE ? "a DH result of zero (low-order key)" :
			         rc == CHAT_ERR_MALFORMED ? "a message too short" :
			         rc == CHAT_ERR_STATE ? "a message out of place" :
			         rc == CHAT_ERR_TOO_BIG ? "a message over 65535 bytes" :
			         rc == CHAT_ERR_RANDOM ? "no randomness" :
			         rc == CHAT_ERR_AUTH ? "a handshake message did not decrypt (another "
			                               "prologue: a changed suite negotiation; or forged)" :
			         "out of memory";
		chat_pu_log(s->host, CHAT_LOG_ERROR, "handshake with %s failed: %s", who, s->why);
		session_fail(s);
	} else if (rc == CHAT_HS_ESTABLISHED) {
		chat_pu_log(s->host, CHAT_LOG_INFO, "authenticated %s (%s identity key)", who,
		            s->pinned ? "the pinned" : "a first-contact");
	}
	return rc;
}

static int nxx_handshake_at(void *session, uint64_t at_unix_ms, size_t src_len,
                            struct chat_buf *dst, const uint8_t *src)
{
	(void)at_unix_ms; /* Noise carries no timestamps */
	return nxx_handshake(session, src_len, dst, src);
}

/* --- Transport messages ----------------------------------------------------- */

static size_t nxx_sealed_size(void *session, size_t len)
{
	(void)session;
	if (len > NXX_PT_MAX)
		return 0;
	return NXX_NONCE_LEN + len + NXX_TAG_LEN;
}

static int usable(struct nxx_session *s)
{
	if (s->state == NXX_S_FAILED)
		return CHAT_ERR_FAILED;
	if (s->state != NXX_S_ESTABLISHED) {
		chat_pu_log(s->host, CHAT_LOG_ERROR, "seal/open before the handshake completed");
		session_fail(s);
		return CHAT_ERR_STATE;
	}
	return CHAT_OK;
}

static int nxx_seal(void *session, size_t src_len, struct chat_buf *dst, const uint8_t *src)
{
	struct nxx_session *s = session;
	uint64_t n;
	int rc;

	if (!s || !dst || (!src && src_len) || (dst->cap && !dst->data))
		return CHAT_ERR_INVALID;
	dst->len = 0;
	rc = usable(s);
	if (rc < 0)
		return rc;
	if (src_len > NXX_PT_MAX)
		return CHAT_ERR_TOO_BIG;
	if (dst->cap < NXX_NONCE_LEN + src_len + NXX_TAG_LEN)
		return CHAT_ERR_NOSPACE;
	n = s->tx_n;
	if (n == UINT64_MAX) /* maxnonce is reserved for REKEY: 2^64 - 1 messages sent */
		return CHAT_ERR_TOO_BIG;
	while (s->tx_epoch < n / s->rekey_every) {
		rekey(s->tx_key);
		s->tx_epoch++;
	}
	put_le64(dst->data, n);
	aead_encrypt(s->tx_key, n, 0, NULL, src_len, src, dst->data + NXX_NONCE_LEN);
	dst->len = NXX_NONCE_LEN + src_len + NXX_TAG_LEN;
	s->tx_n = n + 1;
	return CHAT_OK;
}

static int open_msg(struct nxx_session *s, size_t src_len, struct chat_buf *dst,
                    const uint8_t *src)
{
	uint8_t key[NXX_KEY_LEN], prev[NXX_KEY_LEN], *plain = NULL;
	uint64_t n, e, top1, ahead;
	size_t pt_len;
	char who[64];
	int rc;

	rc = usable(s);
	if (rc < 0)
		return rc;
	chat_pu_quote(sizeof(who), who, s->peer_id);
	if (src_len < NXX_NONCE_LEN + NXX_TAG_LEN ||
	    src_len > NXX_NONCE_LEN + NXX_MSG_MAX) {
		chat_pu_log(s->host, CHAT_LOG_WARN, "dropped a message from %s: %zu bytes", who,
		            src_len);
		return CHAT_ERR_MALFORMED;
	}
	pt_len = src_len - NXX_NONCE_LEN - NXX_TAG_LEN;
	n = get_le64(src);
	if (n == UINT64_MAX) {
		chat_pu_log(s->host, CHAT_LOG_WARN, "dropped a message from %s: the reserved nonce",
		            who);
		return CHAT_ERR_MALFORMED;
	}
	/* Replay window: older than the window, or seen in it. */
	if (n < s->rx_top) {
		uint64_t off = s->rx_top - 1 - n;

		if (off >= NXX_WINDOW || (s->rx_win >> off & 1)) {
			chat_pu_log(s->host, CHAT_LOG_WARN,
			            "dropped a message from %s: nonce %llu %s", who,
			            (unsigned long long)n,
			            off >= NXX_WINDOW ? "is older than the window" :
			            "was seen before (replayed)");
			return CHAT_ERR_REPLAY;
		}
	}
	e = n / s->rekey_every;
	if (e + 1 < s->rx_epoch) { /* cannot happen within the window; refuse anyway */
		chat_pu_log(s->host, CHAT_LOG_WARN, "dropped a message from %s: nonce %llu too old",
		            who, (unsigned long long)n);
		return CHAT_ERR_REPLAY;
	}
	ahead = e > s->rx_epoch ? e - s->rx_epoch : 0;
	if (ahead > NXX_AHEAD_EPOCHS) {
		chat_pu_log(s->host, CHAT_LOG_WARN,
		            "dropped a message from %s: nonce %llu too far ahead",
		            who, (unsigned long long)n);
		return CHAT_ERR_REPLAY;
	}
	if (pt_len > dst->cap)
		return CHAT_ERR_NOSPACE; /* nothing consumed: the caller retries with room */
	/* The key of nonce n: REKEY applied e times to the split() key. */
	memcpy(prev, s->rx_prev, NXX_KEY_LEN);
	if (e + 1 == s->rx_epoch) {
		memcpy(key, s->rx_prev, NXX_KEY_LEN);
	} else {
		memcpy(key, s->rx_key, NXX_KEY_LEN);
		for (uint64_t k = 0; k < ahead; k++) {
			memcpy(prev, key, NXX_KEY_LEN);
			rekey(key);
		}
	}
	plain = malloc(pt_len ? pt_len : 1);
	if (!plain) {
		rc = CHAT_ERR_NOMEM;
		goto out;
	}
	rc = aead_decrypt(s->host, key, n, 0, NULL, src_len - NXX_NONCE_LEN, src + NXX_NONCE_LEN,
	                  plain);
	if (rc < 0) {
		chat_pu_log(s->host, CHAT_LOG_WARN, "dropped a message from %s: not authentic",
		            who);
		goto out;
	}
	/* Authentic: commit the window and the keys. */
	if (e > s->rx_epoch) {
		memcpy(s->rx_prev, prev, NXX_KEY_LEN);
		memcpy(s->rx_key, key, NXX_KEY_LEN);
		s->rx_epoch = e;
	}
	if (n >= s->rx_top) {
		top1 = n + 1 - s->rx_top;
		s->rx_win = top1 >= NXX_WINDOW ? 0 : s->rx_win << top1;
		s->rx_win |= 1;
		s->rx_top = n + 1;
	} else {
		s->rx_win |= (uint64_t)1 << (s->rx_top - 1 - n);
	}
	if (pt_len)
		memcpy(dst->data, plain, pt_len);
	dst->len = pt_len;
	rc = CHAT_OK;
out:
	if (plain) {
		s->host->wipe(plain, pt_len ? pt_len : 1);
		free(plain);
	}
	s->host->wipe(key, sizeof(key));
	s->host->wipe(prev, sizeof(prev));
	return rc;
}

static int nxx_open(void *session, size_t src_len, struct chat_buf *dst, const uint8_t *src)
{
	struct nxx_session *s = session;

	if (!s || !dst || (!src && src_len) || (dst->cap && !dst->data))
		return CHAT_ERR_INVALID;
	dst->len = 0;
	return open_msg(s, src_len, dst, src);
}

static int nxx_open_at(void *session, uint64_t at_unix_ms, size_t src_len, struct chat_buf *dst,
                       const uint8_t *src)
{
	(void)at_unix_ms; /* no timestamps: the nonce window alone decides */
	return nxx_open(session, src_len, dst, src);
}

/* 80 bits of the handshake hash h as "xxxx xxxx xxxx xxxx xxxx". */
static int nxx_fingerprint(void *session, size_t cap, char *dst)
{
	const struct nxx_session *s = session;

	if (!s || !dst)
		return CHAT_ERR_INVALID;
	if (cap)
		dst[0] = '\0';
	if (s->state != NXX_S_ESTABLISHED)
		return CHAT_ERR_STATE;
	return chat_pu_fingerprint_text(cap, dst, NXX_FP_BYTES, s->h);
}

/* --- Identity keys (ABI 1.3) ------------------------------------------------ */

static int nxx_identity_keygen(const struct chat_host *host, struct chat_buf *private_key,
                               struct chat_buf *public_key)
{
	uint8_t k[NXX_DH_LEN];

	if (private_key)
		private_key->len = 0;
	if (public_key)
		public_key->len = 0;
	if (!host_ok(host) || !private_key || !public_key ||
	    (private_key->cap && !private_key->data) || (public_key->cap && !public_key->data))
		return CHAT_ERR_INVALID;
	if (private_key->cap < NXX_DH_LEN || public_key->cap < NXX_DH_LEN)
		return CHAT_ERR_NOSPACE;
	if (host->random(host, NXX_DH_LEN, k) < 0)
		return CHAT_ERR_RANDOM;
	/* RFC 7748 section 5: clamp the scalar. */
	k[0] &= 248;
	k[31] &= 127;
	k[31] |= 64;
	curve25519_mul_g(public_key->data, k);
	memcpy(private_key->data, k, NXX_DH_LEN);
	host->wipe(k, sizeof(k));
	private_key->len = public_key->len = NXX_DH_LEN;
	return CHAT_OK;
}

static int nxx_peer_identity(void *session, struct chat_buf *dst)
{
	struct nxx_session *s = session;

	if (dst)
		dst->len = 0;
	if (!s || !dst || (dst->cap && !dst->data))
		return CHAT_ERR_INVALID;
	if (s->state != NXX_S_ESTABLISHED && !(s->state == NXX_S_FAILED && s->mismatch))
		return s->state == NXX_S_FAILED ? CHAT_ERR_FAILED : CHAT_ERR_STATE;
	if (dst->cap < NXX_DH_LEN)
		return CHAT_ERR_NOSPACE;
	memcpy(dst->data, s->rs, NXX_DH_LEN);
	dst->len = NXX_DH_LEN;
	/* After a pin mismatch: the key the peer presented, for the user to see. */
	return s->state == NXX_S_FAILED ? CHAT_ERR_AUTH : CHAT_OK;
}

/* --- Saved sessions --------------------------------------------------------- */

static void put_lp(struct sha256_ctx *ctx, size_t len, const void *src)
{
	uint8_t n[4];

	chat_pu_put_be32(n, (uint32_t)len);
	sha256_update(ctx, 4, n);
	if (len)
		sha256_update(ctx, len, src);
}

/* SHA-256(lp(label) || role || lp(local id) || lp(peer id) || lp(suite) ||
 * lp(binding)): what a saved session is tied to. */
static void params_digest(const struct nxx_session *s, uint8_t dst[NXX_HASH_LEN])
{
	static const char label[] = "noise-xx saved session v1";
	struct sha256_ctx ctx;
	uint8_t role = (uint8_t)s->role;

	sha256_init(&ctx);
	put_lp(&ctx, sizeof(label) - 1, label);
	sha256_update(&ctx, 1, &role);
	put_lp(&ctx, strlen(s->local_id), s->local_id);
	put_lp(&ctx, strlen(s->peer_id), s->peer_id);
	put_lp(&ctx, strlen(s->suite), s->suite);
	put_lp(&ctx, s->binding_len, s->binding);
	sha256_digest(&ctx, NXX_HASH_LEN, dst);
}

static int nxx_session_save(void *session, struct chat_buf *dst)
{
	struct nxx_session *s = session;
	uint8_t *p;

	if (dst)
		dst->len = 0;
	if (!s || !dst || (dst->cap && !dst->data))
		return CHAT_ERR_INVALID;
	if (s->state != NXX_S_ESTABLISHED)
		return s->state == NXX_S_FAILED ? CHAT_ERR_FAILED : CHAT_ERR_STATE;
	if (dst->cap < NXX_SAVE_LEN)
		return CHAT_ERR_NOSPACE;
	p = dst->data;
	memcpy(p, NXX_SAVE_MAGIC, 4);
	p[4] = NXX_SAVE_VERSION;
	p[5] = sizeof(NXX_SUITE) - 1;
	memcpy(p + 6, NXX_SUITE, sizeof(NXX_SUITE) - 1);
	p += NXX_SAVE_HEAD;
	params_digest(s, p);
	p += NXX_HASH_LEN;
	chat_pu_put_be64(p, s->rekey_every);
	p += 8;
	memcpy(p, s->h, NXX_HASH_LEN);
	p += NXX_HASH_LEN;
	memcpy(p, s->rs, NXX_DH_LEN);
	p += NXX_DH_LEN;
	memcpy(p, s->tx_key, NXX_KEY_LEN);
	p += NXX_KEY_LEN;
	chat_pu_put_be64(p, s->tx_epoch);
	chat_pu_put_be64(p + 8, s->tx_n);
	p += 16;
	memcpy(p, s->rx_key, NXX_KEY_LEN);
	memcpy(p + NXX_KEY_LEN, s->rx_prev, NXX_KEY_LEN);
	p += 2 * NXX_KEY_LEN;
	chat_pu_put_be64(p, s->rx_epoch);
	chat_pu_put_be64(p + 8, s->rx_top);
	chat_pu_put_be64(p + 16, s->rx_win);
	dst->len = NXX_SAVE_LEN;
	return CHAT_OK;
}

static uint64_t epoch_of_top(uint64_t top, uint64_t every)
{
	return top ? (top - 1) / every : 0;
}

static int nxx_session_load(const struct chat_host *host, const struct chat_cipher_params *params,
                            size_t src_len, const uint8_t *src, void **session)
{
	struct nxx_session *s = NULL;
	uint8_t digest[NXX_HASH_LEN];
	const uint8_t *p = src;
	uint64_t every;
	int rc;

	if (!session)
		return CHAT_ERR_INVALID;
	*session = NULL;
	if (!src && src_len)
		return CHAT_ERR_INVALID;
	rc = params_ok(host, params);
	if (rc < 0)
		return rc;
	rc = session_alloc(host, params, &s);
	if (rc < 0)
		return rc;
	rc = CHAT_ERR_MALFORMED;
	if (src_len != NXX_SAVE_LEN || memcmp(p, NXX_SAVE_MAGIC, 4) != 0 ||
	    p[4] != NXX_SAVE_VERSION || p[5] != sizeof(NXX_SUITE) - 1 ||
	    memcmp(p + 6, NXX_SUITE, sizeof(NXX_SUITE) - 1) != 0)
		goto out;
	p += NXX_SAVE_HEAD;
	params_digest(s, digest);
	if (!host->memeq(digest, p, NXX_HASH_LEN))
		goto out;
	p += NXX_HASH_LEN;
	every = chat_pu_get_be64(p);
	p += 8;
	if (every < NXX_REKEY_MIN || every > (uint64_t)NXX_REKEY_MAX)
		goto out;
	s->rekey_every = every; /* the rule the conversation started with */
	memcpy(s->h, p, NXX_HASH_LEN);
	p += NXX_HASH_LEN;
	memcpy(s->rs, p, NXX_DH_LEN);
	p += NXX_DH_LEN;
	if (s->pinned && !host->memeq(s->rs, s->pin, NXX_DH_LEN))
		goto out; /* saved with a peer key other than the one pinned now */
	memcpy(s->tx_key, p, NXX_KEY_LEN);
	p += NXX_KEY_LEN;
	s->tx_epoch = chat_pu_get_be64(p);
	s->tx_n = chat_pu_get_be64(p + 8);
	p += 16;
	memcpy(s->rx_key, p, NXX_KEY_LEN);
	memcpy(s->rx_prev, p + NXX_KEY_LEN, NXX_KEY_LEN);
	p += 2 * NXX_KEY_LEN;
	s->rx_epoch = chat_pu_get_be64(p);
	s->rx_top = chat_pu_get_be64(p + 8);
	s->rx_win = chat_pu_get_be64(p + 16);
	/* The counters must be ones seal and open can have left. */
	if (s->tx_epoch != epoch_of_top(s->tx_n, every) ||
	    s->rx_epoch != epoch_of_top(s->rx_top, every) ||
	    (s->rx_top == 0) != (s->rx_win == 0) || (s->rx_top && !(s->rx_win & 1)))
		goto out;
	wipe_handshake(s);
	s->state = NXX_S_ESTABLISHED;
	*session = s;
	s = NULL;
	rc = CHAT_OK;
out:
	if (rc < 0) {
		char who[64];

		chat_pu_quote(sizeof(who), who, params->peer_id);
		chat_pu_log(host, CHAT_LOG_WARN,
		            "saved session with %s refused (%zu bytes): not a %s session saved "
		            "with these usernames, role, suite, binding and peer key",
		            who, src_len, NXX_SUITE);
	}
	session_wipe_free(s);
	return rc;
}

static const struct chat_cipher_ops nxx_ops = {
	.size = sizeof(struct chat_cipher_ops),
	.session_new = nxx_session_new,
	.handshake = nxx_handshake,
	.sealed_size = nxx_sealed_size,
	.seal = nxx_seal,
	.open = nxx_open,
	.fingerprint = nxx_fingerprint,
	.session_free = nxx_session_free,
	.session_save = nxx_session_save,
	.session_load = nxx_session_load,
	.open_at = nxx_open_at,
	.handshake_at = nxx_handshake_at,
	.identity_keygen = nxx_identity_keygen,
	.peer_identity = nxx_peer_identity,
};

static const struct chat_config_key nxx_keys[] = {
	{ "rekey_every", CHAT_CONFIG_INT, "1000", NXX_REKEY_MIN, NXX_REKEY_MAX,
	  "messages per key in each direction: the key of nonce n has been rekeyed n / rekey_every "
	  "times (both ends must agree)" },
	{ NULL, 0, NULL, 0, 0, NULL },
};

static const struct chat_plugin nxx_plugin = {
	CHAT_PLUGIN_HEADER,
	.kind = CHAT_PLUGIN_CIPHER,
	.flags = CHAT_FLAG_AUTHENTICATED | CHAT_FLAG_INTEGRITY | CHAT_FLAG_REPLAY |
	         CHAT_FLAG_IDENTITY,
	.name = NXX_SUITE,
	.version = NXX_VERSION,
	.summary = "Noise_XX_25519_ChaChaPoly_SHA256 with X25519 identity keys (rekeying, "
	           "replay window)",
	.config_keys = nxx_keys,
	.ops.cipher = &nxx_ops,
};

CHAT_PLUGIN_EXPORT const struct chat_plugin *chat_plugin_entry(void)
{
	return &nxx_plugin;
}
