/* rsa: RSA-3072 identity keys exchanged in-band (or pinned), RSA-KEM key
 * transport both ways, RSA-PSS-SHA256 signatures over the whole transcript,
 * then AES-256-GCM messages with explicit 64-bit sequence numbers.
 * Wire format, key schedule, state machine and what it does not protect (no
 * forward secrecy: a stolen private key opens every recorded conversation):
 * docs/suites/rsa.md.
 *
 * Choices a caller can rely on:
 * - Handshake errors are final, except CHAT_ERR_NOSPACE and CHAT_ERR_INVALID,
 *   which consume nothing (the size of every message is known in advance).
 * - A peer key that differs from the pinned one is CHAT_ERR_AUTH; a key or
 *   KEM value that is not a valid 3072-bit RSA value is CHAT_ERR_PEER_VALUE;
 *   a bad signature is CHAT_ERR_AUTH.
 * - The private key is kept only until the handshake ends; it and every
 *   secret integer are wiped (limbs overwritten) before they are freed.
 * - open() drops a bad message (CHAT_ERR_MALFORMED, _INTEGRITY, _REPLAY)
 *   but keeps the session.  Each sequence number opens at most once; one up
 *   to 63 behind the newest opened still opens (a window, as in IPsec), an
 *   older one is refused; gaps (lost messages) are accepted.
 * - No timestamps: open_at and handshake_at are open and handshake. */
#include "rsa_suite.h"
#include "plugin_util.h"

#include <stdlib.h>
#include <string.h>

#include <gmp.h>
#include <nettle/bignum.h>
#include <nettle/gcm.h>
#include <nettle/hkdf.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>

static bool host_ok(const struct chat_host *host)
{
	return CHAT_PU_HOST_HAS(host, wipe) && host->random && host->wipe && host->memeq;
}

void rsa_rng_fn(void *ctx, size_t len, uint8_t *dst)
{
	struct rsa_rng *r = ctx;

	if (r->failed || r->host->random(r->host, len, dst) < 0) {
		/* Nettle cannot be told to stop (key generation would loop forever
		 * on zeros): give it varying filler and throw its result away. */
		r->failed = true;
		for (size_t i = 0; i < len; i++) {
			r->filler = r->filler * 6364136223846793005ull + 1442695040888963407ull;
			dst[i] = (uint8_t)(r->filler >> 56);
		}
	}
}

/* Overwrite every allocated limb, not only the used ones. */
void rsa_mpz_wipe(mpz_t x)
{
	if (x->_mp_alloc > 0)
		explicit_bzero(x->_mp_d, (size_t)x->_mp_alloc * sizeof(mp_limb_t));
	x->_mp_size = 0;
}

static void priv_wipe_clear(struct rsa_private_key *k)
{
	rsa_mpz_wipe(k->d);
	rsa_mpz_wipe(k->p);
	rsa_mpz_wipe(k->q);
	rsa_mpz_wipe(k->a);
	rsa_mpz_wipe(k->b);
	rsa_mpz_wipe(k->c);
	rsa_private_key_clear(k);
}

static void put_u16(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static size_t get_u16(const uint8_t *p)
{
	return (size_t)p[0] << 8 | p[1];
}

/* --- Key encodings -------------------------------------------------------- */

/* u16 length || minimal big-endian x (x > 0).  Returns bytes written. */
static size_t put_mpz(uint8_t *p, const mpz_t x)
{
	size_t n = nettle_mpz_sizeinbase_256_u(x);

	put_u16(p, n);
	nettle_mpz_get_str_256(n, p + 2, x);
	return 2 + n;
}

/* A minimal, positive field of at most max bytes from [*p, end). */
static bool get_mpz(const uint8_t **p, const uint8_t *end, size_t max, mpz_t x)
{
	size_t n;

	if (end - *p < 2)
		return false;
	n = get_u16(*p);
	if (n == 0 || n > max || (size_t)(end - *p - 2) < n || (*p)[2] == 0)
		return false;
	nettle_mpz_set_str_256_u(x, n, *p + 2);
	*p += 2 + n;
	return true;
}

static size_t pub_encode(const struct rsa_public_key *pub, uint8_t *dst)
{
	size_t o = 1;

	dst[0] = RSA_PUB_TAG;
	o += put_mpz(dst + o, pub->n);
	o += put_mpz(dst + o, pub->e);
	return o;
}

/* A public key as the peer sends it: exactly the canonical encoding of an
 * odd 3072-bit n and an odd e in 3 .. 2^32-1.  pub must be initialized. */
int rsa_pub_decode(size_t len, const uint8_t *src, struct rsa_public_key *pub)
{
	const uint8_t *p = src + 1, *end = src + len;

	if (len < 1 + 2 + RSA_BYTES + 2 + 1 || len > RSA_PUB_MAX || src[0] != RSA_PUB_TAG)
		return CHAT_ERR_PEER_VALUE;
	if (get_u16(p) != RSA_BYTES || !(p[2] & 0x80))
		return CHAT_ERR_PEER_VALUE;
	if (!get_mpz(&p, end, RSA_BYTES, pub->n) || !get_mpz(&p, end, RSA_E_BYTES_MAX, pub->e) ||
	    p != end)
		return CHAT_ERR_PEER_VALUE;
	if (mpz_sizeinbase(pub->n, 2) != RSA_BITS || mpz_even_p(pub->n) || mpz_even_p(pub->e) ||
	    mpz_cmp_ui(pub->e, 3) < 0)
		return CHAT_ERR_PEER_VALUE;
	if (!rsa_public_key_prepare(pub) || pub->size != RSA_BYTES)
		return CHAT_ERR_PEER_VALUE;
	return CHAT_OK;
}

/* A private key as identity_keygen wrote it, checked for consistency
 * (n = p q, the CRT values, e d = 1 mod p-1).  pub and priv must be
 * initialized; *pub_enc points into src at the embedded public key. */
int rsa_priv_decode(size_t len, const uint8_t *src, struct rsa_public_key *pub,
                    struct rsa_private_key *priv, size_t *pub_len, const uint8_t **pub_enc)
{
	const uint8_t *p, *end = src + len;
	size_t plen;
	mpz_t t;
	bool ok;

	if (len < 3 || len > RSA_PRIV_MAX || src[0] != RSA_PRIV_TAG)
		return CHAT_ERR_MALFORMED;
	plen = get_u16(src + 1);
	if (plen > len - 3 || rsa_pub_decode(plen, src + 3, pub) != CHAT_OK)
		return CHAT_ERR_MALFORMED;
	p = src + 3 + plen;
	if (!get_mpz(&p, end, RSA_BYTES, priv->d) || !get_mpz(&p, end, RSA_BYTES, priv->p) ||
	    !get_mpz(&p, end, RSA_BYTES, priv->q) || !get_mpz(&p, end, RSA_BYTES, priv->a) ||
	    !get_mpz(&p, end, RSA_BYTES, priv->b) || !get_mpz(&p, end, RSA_BYTES, priv->c) ||
	    p != end)
		return CHAT_ERR_MALFORMED;
	if (!rsa_private_key_prepare(priv) || priv->size != pub->size)
		return CHAT_ERR_MALFORMED;
	mpz_init(t);
	mpz_mul(t, priv->p, priv->q);
	ok = mpz_cmp(t, pub->n) == 0;
	mpz_mul(t, priv->c, priv->q); /* c = q^-1 mod p */
	mpz_mod(t, t, priv->p);
	ok = ok && mpz_cmp_ui(t, 1) == 0;
	mpz_mul(t, pub->e, priv->a); /* a = d mod p-1, so e a = 1 mod p-1 */
	mpz_sub_ui(t, t, 1);
	{
		mpz_t pm1;
		mpz_init(pm1);
		mpz_sub_ui(pm1, priv->p, 1);
		ok = ok && mpz_divisible_p(t, pm1);
		mpz_sub_ui(pm1, priv->q, 1);
		mpz_mul(t, pub->e, priv->b);
		mpz_sub_ui(t, t, 1);
		ok = ok && mpz_divisible_p(t, pm1);
		rsa_mpz_wipe(pm1); /* q-1 is as secret as q */
		mpz_clear(pm1);
	}
	rsa_mpz_wipe(t);
	mpz_clear(t);
	if (!ok)
		return CHAT_ERR_MALFORMED;
	*pub_len = plen;
	*pub_enc = src + 3;
	return CHAT_OK;
}

static int rs_identity_keygen(const struct chat_host *host, struct chat_buf *private_key,
                              struct chat_buf *public_key)
{
	struct rsa_rng rng = { host, false, 0 };
	struct rsa_public_key pub;
	struct rsa_private_key priv;
	uint8_t pub_enc[RSA_PUB_MAX];
	size_t pub_len = 0, o;
	int rc;

	if (private_key)
		private_key->len = 0;
	if (public_key)
		public_key->len = 0;
	if (!host_ok(host) || !private_key || !public_key || (private_key->cap && !private_key->data) ||
	    (public_key->cap && !public_key->data))
		return CHAT_ERR_INVALID;
	/* The largest possible encodings, so a short buffer costs no key. */
	if (private_key->cap < 1 + 2 + RSA_PUB_MAX + 6 * (2 + RSA_BYTES) || public_key->cap < RSA_PUB_MAX)
		return CHAT_ERR_NOSPACE;
	if (host->random(host, sizeof(pub_enc), pub_enc) < 0) /* fail early, not after a key */
		return CHAT_ERR_RANDOM;
	rsa_public_key_init(&pub);
	rsa_private_key_init(&priv);
	mpz_set_ui(pub.e, RSA_E);
	do {
		if (!rsa_generate_keypair(&pub, &priv, &rng, rsa_rng_fn, NULL, NULL, RSA_BITS, 0) ||
		    rng.failed) {
			rc = rng.failed ? CHAT_ERR_RANDOM : CHAT_ERR_FAILED;
			goto out;
		}
	} while (mpz_sizeinbase(pub.n, 2) != RSA_BITS);
	pub_len = pub_encode(&pub, pub_enc);
	memcpy(public_key->data, pub_enc, pub_len);
	public_key->len = pub_len;
	o = 0;
	private_key->data[o++] = RSA_PRIV_TAG;
	put_u16(private_key->data + o, pub_len);
	o += 2;
	memcpy(private_key->data + o, pub_enc, pub_len);
	o += pub_len;
	o += put_mpz(private_key->data + o, priv.d);
	o += put_mpz(private_key->data + o, priv.p);
	o += put_mpz(private_key->data + o, priv.q);
	o += put_mpz(private_key->data + o, priv.a);
	o += put_mpz(private_key->data + o, priv.b);
	o += put_mpz(private_key->data + o, priv.c);
	private_key->len = o;
	rc = CHAT_OK;
out:
	priv_wipe_clear(&priv);
	rsa_public_key_clear(&pub);
	return rc;
}

/* --- Sessions ------------------------------------------------------------- */

static void session_wipe_free(struct rsa_session *s)
{
	if (!s)
		return;
	priv_wipe_clear(&s->priv);
	rsa_public_key_clear(&s->pub);
	rsa_public_key_clear(&s->peer);
	if (s->binding) {
		s->host->wipe(s->binding, s->binding_len);
		free(s->binding);
	}
	s->host->wipe(s, sizeof(*s));
	free(s);
}

/* The private key and the KEM values: needed only during the handshake. */
static void wipe_handshake(struct rsa_session *s)
{
	if (s->have_priv) {
		rsa_mpz_wipe(s->priv.d);
		rsa_mpz_wipe(s->priv.p);
		rsa_mpz_wipe(s->priv.q);
		rsa_mpz_wipe(s->priv.a);
		rsa_mpz_wipe(s->priv.b);
		rsa_mpz_wipe(s->priv.c);
		s->have_priv = false;
	}
	s->host->wipe(s->r_i, sizeof(s->r_i));
	s->host->wipe(s->r_r, sizeof(s->r_r));
}

static void session_fail(struct rsa_session *s)
{
	s->state = RSA_S_FAILED;
	wipe_handshake(s);
	s->host->wipe(s->k_i2r, sizeof(s->k_i2r));
	s->host->wipe(s->k_r2i, sizeof(s->k_r2i));
	s->host->wipe(&s->gcm_send, sizeof(s->gcm_send));
	s->host->wipe(&s->gcm_recv, sizeof(s->gcm_recv));
}

/* Both directions' GCM contexts from k_i2r and k_r2i, once per session:
 * setting a GCM key costs more than sealing 100 bytes. */
static void keys_schedule(struct rsa_session *s)
{
	bool init = s->role == CHAT_ROLE_INITIATOR;

	gcm_aes256_set_key(&s->gcm_send, init ? s->k_i2r : s->k_r2i);
	gcm_aes256_set_key(&s->gcm_recv, init ? s->k_r2i : s->k_i2r);
}

static bool username_ok(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n <= RSA_USER_MAX;
}

static int params_ok(const struct chat_host *host, const struct chat_cipher_params *params)
{
	if (!host_ok(host) || !params)
		return CHAT_ERR_INVALID;
	if (params->size < offsetof(struct chat_cipher_params, binding_len) +
	                   sizeof(params->binding_len))
		return CHAT_ERR_ABI;
	if ((params->role != CHAT_ROLE_INITIATOR && params->role != CHAT_ROLE_RESPONDER) ||
	    !params->local_id || !params->peer_id || (params->binding_len && !params->binding))
		return CHAT_ERR_INVALID;
	if (!username_ok(params->local_id) || !username_ok(params->peer_id)) {
		chat_pu_log(host, CHAT_LOG_ERROR, "usernames must be 1..%d bytes", RSA_USER_MAX);
		return CHAT_ERR_INVALID;
	}
	if (params->suite && strlen(params->suite) >= sizeof(((struct rsa_session *)0)->suite))
		return CHAT_ERR_INVALID;
	return CHAT_OK;
}

static bool params_have_identity(const struct chat_cipher_params *params)
{
	return params->size >= offsetof(struct chat_cipher_params, peer_identity_len) +
	                       sizeof(params->peer_identity_len);
}

static int session_alloc(const struct chat_host *host, const struct chat_cipher_params *params,
                         struct rsa_session **out)
{
	struct rsa_session *s;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return CHAT_ERR_NOMEM;
	s->host = host;
	s->role = params->role;
	strcpy(s->local_id, params->local_id);
	strcpy(s->peer_id, params->peer_id);
	strcpy(s->suite, params->suite ? params->suite : RSA_SUITE);
	rsa_public_key_init(&s->pub);
	rsa_private_key_init(&s->priv);
	rsa_public_key_init(&s->peer);
	if (params->binding_len) {
		s->binding = malloc(params->binding_len);
		if (!s->binding) {
			session_wipe_free(s);
			return CHAT_ERR_NOMEM;
		}
		memcpy(s->binding, params->binding, params->binding_len);
		s->binding_len = params->binding_len;
	}
	if (params_have_identity(params) && params->peer_identity) {
		struct rsa_public_key t;
		int rc;

		rsa_public_key_init(&t);
		rc = rsa_pub_decode(params->peer_identity_len, params->peer_identity, &t);
		rsa_public_key_clear(&t);
		if (rc < 0) {
			chat_pu_log(host, CHAT_LOG_ERROR,
			            "the pinned key of the peer is not an rsa public key");
			session_wipe_free(s);
			return CHAT_ERR_INVALID;
		}
		memcpy(s->pinned, params->peer_identity, params->peer_identity_len);
		s->pinned_len = params->peer_identity_len;
	}
	*out = s;
	return CHAT_OK;
}

static const char *initiator_id(const struct rsa_session *s)
{
	return s->role == CHAT_ROLE_INITIATOR ? s->local_id : s->peer_id;
}

static const char *responder_id(const struct rsa_session *s)
{
	return s->role == CHAT_ROLE_INITIATOR ? s->peer_id : s->local_id;
}

static void lp(struct sha256_ctx *c, size_t n, const void *p)
{
	uint8_t be[4];

	chat_pu_put_be32(be, (uint32_t)n);
	sha256_update(c, 4, be);
	if (n)
		sha256_update(c, n, p);
}

static void lps(struct sha256_ctx *c, const char *s)
{
	lp(c, strlen(s), s);
}

static int rs_session_new(const struct chat_host *host, const struct chat_cipher_params *params,
                          void **session)
{
	struct rsa_session *s = NULL;
	const uint8_t *pub_enc;
	size_t pub_len;
	int rc;

	if (!session)
		return CHAT_ERR_INVALID;
	*session = NULL;
	rc = params_ok(host, params);
	if (rc < 0)
		return rc;
	if (!params_have_identity(params) || !params->identity_private || !params->identity_public) {
		chat_pu_log(host, CHAT_LOG_ERROR, "no identity key pair: this suite needs one");
		return CHAT_ERR_NOTFOUND;
	}
	rc = session_alloc(host, params, &s);
	if (rc < 0)
		return rc;
	rc = rsa_priv_decode(params->identity_private_len, params->identity_private, &s->pub,
	                     &s->priv, &pub_len, &pub_enc);
	s->have_priv = true;
	if (rc < 0 || pub_len != params->identity_public_len ||
	    memcmp(pub_enc, params->identity_public, pub_len) != 0) {
		chat_pu_log(host, CHAT_LOG_ERROR,
		            "our identity key pair is not a valid rsa key pair");
		rc = CHAT_ERR_INVALID;
		goto out;
	}
	memcpy(s->pub_enc, pub_enc, pub_len);
	s->pub_enc_len = pub_len;
	sha256_init(&s->th);
	lps(&s->th, "chat-rsa-v1");
	lps(&s->th, s->suite);
	lp(&s->th, s->binding_len, s->binding);
	lps(&s->th, initiator_id(s));
	lps(&s->th, responder_id(s));
	s->state = s->role == CHAT_ROLE_INITIATOR ? RSA_S_INIT_START : RSA_S_RESP_WAIT_HELLO;
	*session = s;
	s = NULL;
out:
	session_wipe_free(s);
	return rc;
}

static void rs_session_free(void *session)
{
	session_wipe_free(session);
}

/* --- Handshake ------------------------------------------------------------ */

static size_t hello_len(size_t pub_len)
{
	return 1 + 2 + pub_len + RSA_NONCE_LEN;
}

static size_t reply_len(size_t pub_len)
{
	return 1 + 2 + pub_len + RSA_NONCE_LEN + 2 * RSA_BYTES;
}

#define FINISH_LEN (1 + 2 * RSA_BYTES)

static int auth_failed(struct rsa_session *s, const char *reason)
{
	char who[64];

	chat_pu_quote(sizeof(who), who, s->peer_id);
	chat_pu_log(s->host, CHAT_LOG_ERROR, "authentication failed for %s: %s", who, reason);
	return CHAT_ERR_AUTH;
}

/* The peer's key from the wire: equal to the pinned one if any, else valid. */
static int take_peer_key(struct rsa_session *s, size_t len, const uint8_t *key)
{
	char who[64];
	int rc;

	chat_pu_quote(sizeof(who), who, s->peer_id);
	if (s->pinned_len &&
	    (len != s->pinned_len || !s->host->memeq(key, s->pinned, len))) {
		if (len <= sizeof(s->peer_enc)) { /* shown by peer_identity, never used */
			memcpy(s->peer_enc, key, len);
			s->peer_enc_len = len;
			s->mismatch = true;
		}
		return auth_failed(s, "the peer presented another identity key than the one pinned "
		                      "for it (a new device, or someone in the middle)");
	}
	rc = rsa_pub_decode(len, key, &s->peer);
	if (rc < 0) {
		chat_pu_log(s->host, CHAT_LOG_ERROR,
		            "handshake with %s: its identity key is not a %d-bit RSA key",
		            who, RSA_BITS);
		return rc;
	}
	memcpy(s->peer_enc, key, len);
	s->peer_enc_len = len;
	s->have_peer = true;
	return CHAT_OK;
}

/* RSA-KEM: r uniform in [2, 2^3071) (below any 3072-bit n), c = r^e mod n. */
int rsa_kem_encap(struct rsa_session *s, uint8_t r[RSA_BYTES], uint8_t c[RSA_BYTES])
{
	mpz_t x, y;
	int rc = CHAT_OK;

	mpz_init(x);
	mpz_init(y);
	do {
		if (s->host->random(s->host, RSA_BYTES, r) < 0) {
			rc = CHAT_ERR_RANDOM;
			goto out;
		}
		r[0] &= 0x7f;
		nettle_mpz_set_str_256_u(x, RSA_BYTES, r);
	} while (mpz_cmp_ui(x, 2) < 0);
	mpz_powm_sec(y, x, s->peer.e, s->peer.n);
	nettle_mpz_get_str_256(RSA_BYTES, c, y);
out:
	rsa_mpz_wipe(x);
	mpz_clear(x);
	mpz_clear(y);
	return rc;
}

/* 0 < c < n, then r = c^d mod n with blinding (rsa_compute_root_tr). */
int rsa_kem_decap(struct rsa_session *s, const uint8_t c[RSA_BYTES], uint8_t r[RSA_BYTES])
{
	struct rsa_rng rng = { s->host, false, 0 };
	mpz_t x, y;
	int rc = CHAT_OK;

	mpz_init(x);
	mpz_init(y);
	nettle_mpz_set_str_256_u(y, RSA_BYTES, c);
	if (mpz_sgn(y) <= 0 || mpz_cmp(y, s->pub.n) >= 0) {
		chat_pu_log(s->host, CHAT_LOG_ERROR,
		            "handshake: the KEM ciphertext is not in 1..n-1");
		rc = CHAT_ERR_PEER_VALUE;
		goto out;
	}
	if (!rsa_compute_root_tr(&s->pub, &s->priv, &rng, rsa_rng_fn, x, y) || rng.failed) {
		rc = rng.failed ? CHAT_ERR_RANDOM : CHAT_ERR_FAILED;
		goto out;
	}
	nettle_mpz_get_str_256(RSA_BYTES, r, x);
out:
	rsa_mpz_wipe(x);
	mpz_clear(x);
	mpz_clear(y);
	return rc;
}

/* The digest a side signs: the transcript so far, then its role's label. */
static void sig_digest(const struct rsa_session *s, int signer, uint8_t d[RSA_HASH_LEN])
{
	struct sha256_ctx c = s->th;

	lps(&c, signer == CHAT_ROLE_INITIATOR ? "initiator signature" : "responder signature");
	sha256_digest(&c, RSA_HASH_LEN, d);
}

static int sign(struct rsa_session *s, uint8_t sig[RSA_BYTES])
{
	struct rsa_rng rng = { s->host, false, 0 };
	uint8_t d[RSA_HASH_LEN], salt[RSA_SALT_LEN];
	mpz_t x;
	int rc = CHAT_OK;

	sig_digest(s, s->role, d);
	if (s->host->random(s->host, sizeof(salt), salt) < 0)
		return CHAT_ERR_RANDOM;
	mpz_init(x);
	if (!rsa_pss_sha256_sign_digest_tr(&s->pub, &s->priv, &rng, rsa_rng_fn, RSA_SALT_LEN, salt,
	                                   d, x) || rng.failed)
		rc = rng.failed ? CHAT_ERR_RANDOM : CHAT_ERR_FAILED;
	else
		nettle_mpz_get_str_256(RSA_BYTES, sig, x);
	mpz_clear(x);
	return rc;
}

static int verify(struct rsa_session *s, const uint8_t sig[RSA_BYTES])
{
	uint8_t d[RSA_HASH_LEN];
	mpz_t x;
	bool ok;

	sig_digest(s, s->role == CHAT_ROLE_INITIATOR ? CHAT_ROLE_RESPONDER : CHAT_ROLE_INITIATOR, d);
	mpz_init(x);
	nettle_mpz_set_str_256_u(x, RSA_BYTES, sig);
	ok = mpz_cmp(x, s->peer.n) < 0 && rsa_pss_sha256_verify_digest(&s->peer, RSA_SALT_LEN, d, x);
	mpz_clear(x);
	if (!ok)
		return auth_failed(s, "bad signature (a forged or changed handshake, or the suite "
		                      "negotiation was tampered with)");
	return CHAT_OK;
}

/* PRK = HMAC-SHA256(TH, r_R || r_I); OKM = HKDF-Expand(PRK, "chat-rsa-v1
 * keys", 64) = k_i2r || k_r2i. */
void rsa_keys_derive(const uint8_t th[RSA_HASH_LEN], const uint8_t r_r[RSA_BYTES],
                     const uint8_t r_i[RSA_BYTES], uint8_t k_i2r[RSA_KEY_LEN],
                     uint8_t k_r2i[RSA_KEY_LEN])
{
	static const char info[] = "chat-rsa-v1 keys";
	struct hmac_sha256_ctx ctx;
	uint8_t prk[SHA256_DIGEST_SIZE], okm[2 * RSA_KEY_LEN];

	hmac_sha256_set_key(&ctx, RSA_HASH_LEN, th);
	hmac_sha256_update(&ctx, RSA_BYTES, r_r);
	hmac_sha256_update(&ctx, RSA_BYTES, r_i);
	hmac_sha256_digest(&ctx, sizeof(prk), prk);
	hmac_sha256_set_key(&ctx, sizeof(prk), prk);
	hkdf_expand(&ctx, (nettle_hash_update_func *)hmac_sha256_update,
	            (nettle_hash_digest_func *)hmac_sha256_digest, SHA256_DIGEST_SIZE,
	            sizeof(info) - 1, (const uint8_t *)info, sizeof(okm), okm);
	memcpy(k_i2r, okm, RSA_KEY_LEN);
	memcpy(k_r2i, okm + RSA_KEY_LEN, RSA_KEY_LEN);
	explicit_bzero(&ctx, sizeof(ctx));
	explicit_bzero(prk, sizeof(prk));
	explicit_bzero(okm, sizeof(okm));
}

/* Both r known and both signatures in the transcript: the session keys. */
static void establish(struct rsa_session *s)
{
	struct sha256_ctx c;
	uint8_t th[RSA_HASH_LEN], fp[RSA_HASH_LEN];

	sha256_digest(&s->th, RSA_HASH_LEN, th); /* (resets s->th) */
	rsa_keys_derive(th, s->r_r, s->r_i, s->k_i2r, s->k_r2i);
	sha256_init(&c);
	lps(&c, "chat-rsa-v1 fingerprint");
	sha256_update(&c, RSA_HASH_LEN, th);
	sha256_digest(&c, RSA_HASH_LEN, fp);
	memcpy(s->fp, fp, RSA_FP_BYTES);
	wipe_handshake(s);
	keys_schedule(s);
	s->state = RSA_S_ESTABLISHED;
}

/* I: hello = 0x01 || u16 len || pub_I || nonce_I. */
static int send_hello(struct rsa_session *s, struct chat_buf *dst)
{
	uint8_t *p = dst->data;
	size_t n = hello_len(s->pub_enc_len);

	if (dst->cap < n)
		return CHAT_ERR_NOSPACE;
	if (s->host->random(s->host, RSA_NONCE_LEN, s->nonce_i) < 0)
		return CHAT_ERR_RANDOM;
	p[0] = RSA_T_HELLO;
	put_u16(p + 1, s->pub_enc_len);
	memcpy(p + 3, s->pub_enc, s->pub_enc_len);
	memcpy(p + 3 + s->pub_enc_len, s->nonce_i, RSA_NONCE_LEN);
	lp(&s->th, n, p);
	dst->len = n;
	s->state = RSA_S_INIT_WAIT_REPLY;
	return CHAT_HS_CONTINUE;
}

/* u8 type || u16 len || key: the key's span, or false. */
static bool parse_key(size_t len, const uint8_t *src, size_t *klen, const uint8_t **key)
{
	if (len < 3)
		return false;
	*klen = get_u16(src + 1);
	if (len - 3 < *klen) /* a key too big for us is rsa_pub_decode's to refuse */
		return false;
	*key = src + 3;
	return true;
}

/* R gets hello; sends reply = 0x02 || u16 len || pub_R || nonce_R || c_R || sig_R. */
static int on_hello(struct rsa_session *s, size_t len, const uint8_t *src, struct chat_buf *dst)
{
	const uint8_t *key;
	size_t klen, n = reply_len(s->pub_enc_len);
	uint8_t *p = dst->data, *c;
	int rc;

	if (dst->cap < n)
		return CHAT_ERR_NOSPACE;
	if (!parse_key(len, src, &klen, &key) || len != hello_len(klen))
		return CHAT_ERR_MALFORMED;
	rc = take_peer_key(s, klen, key);
	if (rc < 0)
		return rc;
	memcpy(s->nonce_i, key + klen, RSA_NONCE_LEN);
	lp(&s->th, len, src);
	if (s->host->random(s->host, RSA_NONCE_LEN, s->nonce_r) < 0)
		return CHAT_ERR_RANDOM;
	p[0] = RSA_T_REPLY;
	put_u16(p + 1, s->pub_enc_len);
	memcpy(p + 3, s->pub_enc, s->pub_enc_len);
	memcpy(p + 3 + s->pub_enc_len, s->nonce_r, RSA_NONCE_LEN);
	c = p + 3 + s->pub_enc_len + RSA_NONCE_LEN;
	rc = rsa_kem_encap(s, s->r_r, c);
	if (rc < 0)
		return rc;
	lp(&s->th, n - RSA_BYTES, p);
	rc = sign(s, c + RSA_BYTES);
	if (rc < 0)
		return rc;
	lp(&s->th, RSA_BYTES, c + RSA_BYTES);
	dst->len = n;
	s->state = RSA_S_RESP_WAIT_FINISH;
	return CHAT_HS_CONTINUE;
}

/* I gets reply: checks R's key and signature, decapsulates r_R; sends
 * finish = 0x03 || c_I || sig_I and is established. */
static int on_reply(struct rsa_session *s, size_t len, const uint8_t *src, struct chat_buf *dst)
{
	const uint8_t *key, *c_r, *sig_r;
	uint8_t *p = dst->data;
	size_t klen;
	int rc;

	if (dst->cap < FINISH_LEN)
		return CHAT_ERR_NOSPACE;
	if (!parse_key(len, src, &klen, &key) || len != reply_len(klen))
		return CHAT_ERR_MALFORMED;
	rc = take_peer_key(s, klen, key);
	if (rc < 0)
		return rc;
	memcpy(s->nonce_r, key + klen, RSA_NONCE_LEN);
	c_r = key + klen + RSA_NONCE_LEN;
	sig_r = c_r + RSA_BYTES;
	lp(&s->th, len - RSA_BYTES, src);
	rc = verify(s, sig_r);
	if (rc < 0)
		return rc;
	lp(&s->th, RSA_BYTES, sig_r);
	rc = rsa_kem_decap(s, c_r, s->r_r);
	if (rc < 0)
		return rc;
	p[0] = RSA_T_FINISH;
	rc = rsa_kem_encap(s, s->r_i, p + 1);
	if (rc < 0)
		return rc;
	lp(&s->th, 1 + RSA_BYTES, p);
	rc = sign(s, p + 1 + RSA_BYTES);
	if (rc < 0)
		return rc;
	lp(&s->th, RSA_BYTES, p + 1 + RSA_BYTES);
	dst->len = FINISH_LEN;
	establish(s);
	return CHAT_HS_ESTABLISHED;
}

/* R gets finish: checks I's signature, decapsulates r_I, is established. */
static int on_finish(struct rsa_session *s, size_t len, const uint8_t *src)
{
	int rc;

	if (len != FINISH_LEN)
		return CHAT_ERR_MALFORMED;
	lp(&s->th, 1 + RSA_BYTES, src);
	rc = verify(s, src + 1 + RSA_BYTES);
	if (rc < 0)
		return rc;
	lp(&s->th, RSA_BYTES, src + 1 + RSA_BYTES);
	rc = rsa_kem_decap(s, src + 1, s->r_i);
	if (rc < 0)
		return rc;
	establish(s);
	return CHAT_HS_ESTABLISHED;
}

static int hs_step(struct rsa_session *s, size_t len, const uint8_t *src, struct chat_buf *dst)
{
	static const int want[] = {
		[RSA_S_INIT_WAIT_REPLY] = RSA_T_REPLY,
		[RSA_S_RESP_WAIT_HELLO] = RSA_T_HELLO,
		[RSA_S_RESP_WAIT_FINISH] = RSA_T_FINISH,
	};
	char who[64];

	chat_pu_quote(sizeof(who), who, s->peer_id);
	if (s->state == RSA_S_INIT_START) {
		if (len) {
			chat_pu_log(s->host, CHAT_LOG_ERROR,
			            "handshake with %s: the initiator speaks first", who);
			return CHAT_ERR_STATE;
		}
		return send_hello(s, dst);
	}
	if (s->state == RSA_S_ESTABLISHED) {
		chat_pu_log(s->host, CHAT_LOG_ERROR, "handshake with %s: already established", who);
		return CHAT_ERR_STATE;
	}
	if (len == 0 || src[0] != want[s->state]) {
		chat_pu_log(s->host, CHAT_LOG_ERROR,
		            "handshake with %s: unexpected message (type %d)", who,
		            len ? src[0] : -1);
		return len ? CHAT_ERR_STATE : CHAT_ERR_MALFORMED;
	}
	switch (s->state) {
	case RSA_S_RESP_WAIT_HELLO:
		return on_hello(s, len, src, dst);
	case RSA_S_INIT_WAIT_REPLY:
		return on_reply(s, len, src, dst);
	default:
		return on_finish(s, len, src);
	}
}

static int rs_handshake(void *session, size_t src_len, struct chat_buf *dst, const uint8_t *src)
{
	struct rsa_session *s = session;
	int rc;

	if (!s || !dst || (!src && src_len) || (dst->cap && !dst->data))
		return CHAT_ERR_INVALID;
	dst->len = 0;
	if (s->state == RSA_S_FAILED)
		return CHAT_ERR_FAILED;
	rc = hs_step(s, src_len, src, dst);
	if (rc == CHAT_ERR_NOSPACE)
		dst->len = 0;
	else if (rc < 0) {
		dst->len = 0;
		if (rc == CHAT_ERR_MALFORMED) {
			char who[64];

			chat_pu_quote(sizeof(who), who, s->peer_id);
			chat_pu_log(s->host, CHAT_LOG_ERROR,
			            "handshake with %s: malformed message (%zu bytes)",
			            who, src_len);
		}
		session_fail(s);
	} else if (rc == CHAT_HS_ESTABLISHED) {
		char who[64];

		chat_pu_quote(sizeof(who), who, s->peer_id);
		chat_pu_log(s->host, CHAT_LOG_INFO, "authenticated %s by its rsa identity key%s",
		            who,
		            s->pinned_len ? " (pinned)" : " (first contact: not verified yet)");
	}
	return rc;
}

static int rs_handshake_at(void *session, uint64_t at_unix_ms, size_t src_len,
                           struct chat_buf *dst, const uint8_t *src)
{
	(void)at_unix_ms; /* no timestamps in this suite */
	return rs_handshake(session, src_len, dst, src);
}

/* --- Messages ------------------------------------------------------------- */

static size_t rs_sealed_size(void *session, size_t len)
{
	(void)session;
	if (len > RSA_MSG_MAX)
		return 0;
	return len + RSA_TEXT_OVERHEAD;
}

static int usable(struct rsa_session *s)
{
	if (s->state == RSA_S_FAILED)
		return CHAT_ERR_FAILED;
	if (s->state != RSA_S_ESTABLISHED) {
		chat_pu_log(s->host, CHAT_LOG_ERROR, "seal/open before the handshake completed");
		session_fail(s);
		return CHAT_ERR_STATE;
	}
	return CHAT_OK;
}

/* nonce = 0^32 || seq (64-bit big-endian); AD = type || seq.  The key was
 * set when the session was established. */
static void gcm_start(struct gcm_aes256_ctx *g, const uint8_t head[RSA_TEXT_HEAD])
{
	uint8_t iv[GCM_IV_SIZE] = { 0 };

	memcpy(iv + 4, head + 1, 8);
	gcm_aes256_set_iv(g, sizeof(iv), iv);
	gcm_aes256_update(g, RSA_TEXT_HEAD, head);
}

static int rs_seal(void *session, size_t src_len, struct chat_buf *dst, const uint8_t *src)
{
	struct rsa_session *s = session;
	uint8_t *p;
	int rc;

	if (!s || !dst || (!src && src_len) || (dst->cap && !dst->data))
		return CHAT_ERR_INVALID;
	dst->len = 0;
	rc = usable(s);
	if (rc < 0)
		return rc;
	if (src_len > RSA_MSG_MAX)
		return CHAT_ERR_TOO_BIG;
	if (s->send_seq == UINT64_MAX)
		return CHAT_ERR_TOO_BIG; /* 2^64-1 messages: unreachable in practice */
	if (dst->cap < src_len + RSA_TEXT_OVERHEAD)
		return CHAT_ERR_NOSPACE;
	p = dst->data;
	p[0] = RSA_T_TEXT;
	chat_pu_put_be64(p + 1, s->send_seq);
	gcm_start(&s->gcm_send, p);
	gcm_aes256_encrypt(&s->gcm_send, src_len, p + RSA_TEXT_HEAD, src);
	gcm_aes256_digest(&s->gcm_send, RSA_TAG_LEN, p + RSA_TEXT_HEAD + src_len);
	dst->len = src_len + RSA_TEXT_OVERHEAD;
	s->send_seq++;
	return CHAT_OK;
}

static int rs_open(void *session, size_t src_len, struct chat_buf *dst, const uint8_t *src)
{
	struct rsa_session *s = session;
	uint8_t tag[RSA_TAG_LEN], *plain = NULL;
	size_t pt_len;
	uint64_t seq;
	char who[64];
	int rc;

	if (!s || !dst || (!src && src_len) || (dst->cap && !dst->data))
		return CHAT_ERR_INVALID;
	dst->len = 0;
	rc = usable(s);
	if (rc < 0)
		return rc;
	chat_pu_quote(sizeof(who), who, s->peer_id);
	if (src_len < RSA_TEXT_OVERHEAD || src[0] != RSA_T_TEXT) {
		chat_pu_log(s->host, CHAT_LOG_WARN,
		            "dropped a message from %s: not a sealed message", who);
		return CHAT_ERR_MALFORMED;
	}
	pt_len = src_len - RSA_TEXT_OVERHEAD;
	if (pt_len > RSA_MSG_MAX) {
		chat_pu_log(s->host, CHAT_LOG_WARN, "dropped a message from %s: too big", who);
		return CHAT_ERR_MALFORMED;
	}
	if (pt_len > dst->cap)
		return CHAT_ERR_NOSPACE;
	plain = malloc(pt_len ? pt_len : 1);
	if (!plain)
		return CHAT_ERR_NOMEM;
	gcm_start(&s->gcm_recv, src);
	gcm_aes256_decrypt(&s->gcm_recv, pt_len, plain, src + RSA_TEXT_HEAD);
	gcm_aes256_digest(&s->gcm_recv, RSA_TAG_LEN, tag);
	if (!memeql_sec(tag, src + RSA_TEXT_HEAD + pt_len, RSA_TAG_LEN)) {
		chat_pu_log(s->host, CHAT_LOG_WARN,
		            "dropped a message from %s: authentication tag mismatch", who);
		rc = CHAT_ERR_INTEGRITY;
		goto out;
	}
	seq = chat_pu_get_be64(src + 1);
	if (seq < s->recv_top) {
		uint64_t age = s->recv_top - 1 - seq;

		if (age >= RSA_WINDOW || (s->recv_seen >> age & 1)) {
			chat_pu_log(s->host, CHAT_LOG_WARN,
			            "dropped a message from %s: seq %llu %s (newest %llu)", who,
			            (unsigned long long)seq,
			            age >= RSA_WINDOW ? "is too old: below the replay window"
			                              : "was opened before: a replay",
			            (unsigned long long)(s->recv_top - 1));
			rc = CHAT_ERR_REPLAY;
			goto out;
		}
		s->recv_seen |= (uint64_t)1 << age;
	} else {
		uint64_t shift = seq + 1 - s->recv_top; /* seal never sends UINT64_MAX */

		if (shift > 1)
			chat_pu_log(s->host, CHAT_LOG_DEBUG,
			            "%llu message(s) from %s not (yet) seen before seq %llu",
			            (unsigned long long)(shift - 1), who, (unsigned long long)seq);
		s->recv_seen = shift >= RSA_WINDOW ? 0 : s->recv_seen << shift;
		s->recv_seen |= 1;
		s->recv_top = seq + 1;
	}
	if (pt_len)
		memcpy(dst->data, plain, pt_len);
	dst->len = pt_len;
	rc = CHAT_OK;
out:
	explicit_bzero(plain, pt_len);
	free(plain);
	return rc;
}

static int rs_open_at(void *session, uint64_t at_unix_ms, size_t src_len, struct chat_buf *dst,
                      const uint8_t *src)
{
	(void)at_unix_ms; /* no timestamps in this suite */
	return rs_open(session, src_len, dst, src);
}

static int rs_fingerprint(void *session, size_t cap, char *dst)
{
	const struct rsa_session *s = session;

	if (!s || !dst)
		return CHAT_ERR_INVALID;
	if (cap)
		dst[0] = '\0';
	if (s->state != RSA_S_ESTABLISHED)
		return CHAT_ERR_STATE;
	return chat_pu_fingerprint_text(cap, dst, RSA_FP_BYTES, s->fp);
}

static int rs_peer_identity(void *session, struct chat_buf *dst)
{
	struct rsa_session *s = session;

	if (dst)
		dst->len = 0;
	if (!s || !dst || (dst->cap && !dst->data))
		return CHAT_ERR_INVALID;
	if (s->state != RSA_S_ESTABLISHED && !(s->state == RSA_S_FAILED && s->mismatch))
		return s->state == RSA_S_FAILED ? CHAT_ERR_FAILED : CHAT_ERR_STATE;
	if (dst->cap < s->peer_enc_len)
		return CHAT_ERR_NOSPACE;
	memcpy(dst->data, s->peer_enc, s->peer_enc_len);
	dst->len = s->peer_enc_len;
	/* After a pin mismatch: the key the peer presented, for the user to see. */
	return s->state == RSA_S_FAILED ? CHAT_ERR_AUTH : CHAT_OK;
}

/* --- Saved sessions ------------------------------------------------------- */

/* Role, both ids, suite, binding and our public key. */
static void params_digest(const struct rsa_session *s, size_t pub_len, const uint8_t *pub,
                          uint8_t dst[RSA_HASH_LEN])
{
	struct sha256_ctx c;
	uint8_t role = (uint8_t)s->role;

	sha256_init(&c);
	lps(&c, "chat-rsa-v1 saved session");
	sha256_update(&c, 1, &role);
	lps(&c, s->local_id);
	lps(&c, s->peer_id);
	lps(&c, s->suite);
	lp(&c, s->binding_len, s->binding);
	lp(&c, pub_len, pub);
	sha256_digest(&c, RSA_HASH_LEN, dst);
}

#define SAVE_FIXED (4 + 1 + RSA_HASH_LEN + 2 * RSA_KEY_LEN + RSA_FP_BYTES + 2 + 8 + 8 + 8)

static int rs_session_save(void *session, struct chat_buf *dst)
{
	struct rsa_session *s = session;
	uint8_t *p;

	if (dst)
		dst->len = 0;
	if (!s || !dst || (dst->cap && !dst->data))
		return CHAT_ERR_INVALID;
	if (s->state != RSA_S_ESTABLISHED)
		return s->state == RSA_S_FAILED ? CHAT_ERR_FAILED : CHAT_ERR_STATE;
	if (dst->cap < SAVE_FIXED + s->peer_enc_len)
		return CHAT_ERR_NOSPACE;
	p = dst->data;
	memcpy(p, RSA_SAVE_MAGIC, 4);
	p[4] = RSA_SAVE_VERSION;
	p += 5;
	params_digest(s, s->pub_enc_len, s->pub_enc, p);
	p += RSA_HASH_LEN;
	memcpy(p, s->k_i2r, RSA_KEY_LEN);
	memcpy(p + RSA_KEY_LEN, s->k_r2i, RSA_KEY_LEN);
	p += 2 * RSA_KEY_LEN;
	memcpy(p, s->fp, RSA_FP_BYTES);
	p += RSA_FP_BYTES;
	put_u16(p, s->peer_enc_len);
	memcpy(p + 2, s->peer_enc, s->peer_enc_len);
	p += 2 + s->peer_enc_len;
	chat_pu_put_be64(p, s->send_seq);
	chat_pu_put_be64(p + 8, s->recv_top);
	chat_pu_put_be64(p + 16, s->recv_seen);
	dst->len = SAVE_FIXED + s->peer_enc_len;
	return CHAT_OK;
}

static int rs_session_load(const struct chat_host *host, const struct chat_cipher_params *params,
                           size_t src_len, const uint8_t *src, void **session)
{
	struct rsa_session *s = NULL;
	uint8_t digest[RSA_HASH_LEN];
	const uint8_t *p = src, *pub = NULL;
	size_t pub_len = 0, klen;
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
	if (params_have_identity(params) && params->identity_public) {
		pub = params->identity_public;
		pub_len = params->identity_public_len;
	}
	rc = CHAT_ERR_MALFORMED;
	if (src_len < SAVE_FIXED || memcmp(p, RSA_SAVE_MAGIC, 4) != 0 || p[4] != RSA_SAVE_VERSION)
		goto out;
	p += 5;
	params_digest(s, pub_len, pub, digest);
	if (!memeql_sec(digest, p, RSA_HASH_LEN))
		goto out;
	p += RSA_HASH_LEN + 2 * RSA_KEY_LEN + RSA_FP_BYTES;
	klen = get_u16(p);
	if (src_len != SAVE_FIXED + klen || klen > RSA_PUB_MAX)
		goto out;
	if (rsa_pub_decode(klen, p + 2, &s->peer) != CHAT_OK)
		goto out;
	if (s->pinned_len && (klen != s->pinned_len || memcmp(p + 2, s->pinned, klen) != 0))
		goto out;
	memcpy(s->peer_enc, p + 2, klen);
	s->peer_enc_len = klen;
	s->have_peer = true;
	s->send_seq = chat_pu_get_be64(p + 2 + klen);
	s->recv_top = chat_pu_get_be64(p + 2 + klen + 8);
	s->recv_seen = chat_pu_get_be64(p + 2 + klen + 16);
	if (pub_len <= sizeof(s->pub_enc)) {
		memcpy(s->pub_enc, pub, pub_len);
		s->pub_enc_len = pub_len;
	}
	p = src + 5 + RSA_HASH_LEN;
	memcpy(s->k_i2r, p, RSA_KEY_LEN);
	memcpy(s->k_r2i, p + RSA_KEY_LEN, RSA_KEY_LEN);
	memcpy(s->fp, p + 2 * RSA_KEY_LEN, RSA_FP_BYTES);
	keys_schedule(s);
	s->state = RSA_S_ESTABLISHED;
	*session = s;
	s = NULL;
	rc = CHAT_OK;
out:
	if (rc < 0) {
		char who[64];

		chat_pu_quote(sizeof(who), who, params->peer_id);
		chat_pu_log(host, CHAT_LOG_WARN,
		            "saved session with %s refused (%zu bytes): not an %s session saved "
		            "with these usernames, role, suite, binding and keys",
		            who, src_len, RSA_SUITE);
	}
	session_wipe_free(s);
	return rc;
}

static const struct chat_cipher_ops rs_ops = {
	.size = sizeof(struct chat_cipher_ops),
	.session_new = rs_session_new,
	.handshake = rs_handshake,
	.sealed_size = rs_sealed_size,
	.seal = rs_seal,
	.open = rs_open,
	.fingerprint = rs_fingerprint,
	.session_free = rs_session_free,
	.session_save = rs_session_save,
	.session_load = rs_session_load,
	.open_at = rs_open_at,
	.handshake_at = rs_handshake_at,
	.identity_keygen = rs_identity_keygen,
	.peer_identity = rs_peer_identity,
};

static const struct chat_plugin rs_plugin = {
	CHAT_PLUGIN_HEADER,
	.kind = CHAT_PLUGIN_CIPHER,
	.flags = CHAT_FLAG_AUTHENTICATED | CHAT_FLAG_INTEGRITY | CHAT_FLAG_REPLAY |
	         CHAT_FLAG_IDENTITY,
	.name = RSA_SUITE,
	.version = RSA_VERSION,
	.summary = "RSA-3072 identity keys, RSA-KEM + RSA-PSS handshake, AES-256-GCM "
	           "(no forward secrecy)",
	.config_keys = NULL,
	.ops.cipher = &rs_ops,
};

CHAT_PLUGIN_EXPORT const struct chat_plugin *chat_plugin_entry(void)
{
	return &rs_plugin;
}
