/* Key derivation for aescbc-hmac: PBKDF2 master keys (one per handshake),
 * the CHAP proofs, HKDF session keys, the message MAC and the fingerprint.
 *
 * Every variable-length field that goes into a MAC or hash is length-prefixed
 * (lp(x) = 4-byte big-endian length || x) so that no two different inputs can
 * produce the same byte string ("ab" || "c" vs "a" || "bc"). */
#include "aescbc_hmac.h"
#include "plugin_util.h"

#include <stdlib.h>
#include <string.h>

#include <nettle/hkdf.h>
#include <nettle/hmac.h>
#include <nettle/pbkdf2.h>
#include <nettle/sha2.h>

#define LABEL_RESPONDER ACH_SUITE " responder proof"
#define LABEL_INITIATOR ACH_SUITE " initiator proof"
#define LABEL_KEYS ACH_SUITE " session keys"
#define LABEL_FINGERPRINT ACH_SUITE " fingerprint"
#define LABEL_SAVED ACH_SUITE " saved session v1"

/* Callers bound every field far below 4 GiB (usernames 256 bytes, suite
 * names 63, bindings come from the core), so the cast cannot truncate. */
static void feed_lp(void *ctx, nettle_hash_update_func *update, size_t len, const void *data)
{
	uint8_t be[4];

	chat_pu_put_be32(be, (uint32_t)len);
	update(ctx, sizeof(be), be);
	if (len)
		update(ctx, len, data);
}

static void roles(const struct ach_session *s, const char **init, const char **resp)
{
	if (s->role == CHAT_ROLE_INITIATOR) {
		*init = s->local_id;
		*resp = s->peer_id;
	} else {
		*init = s->peer_id;
		*resp = s->local_id;
	}
}

/* ch_i || ch_r || lp(initiator) || lp(responder) || lp(suite) || lp(binding) */
static void feed_transcript(const struct ach_session *s, void *ctx, nettle_hash_update_func *update)
{
	const char *init, *resp;

	roles(s, &init, &resp);
	update(ctx, ACH_CHALLENGE_LEN, s->ch_i);
	update(ctx, ACH_CHALLENGE_LEN, s->ch_r);
	feed_lp(ctx, update, strlen(init), init);
	feed_lp(ctx, update, strlen(resp), resp);
	feed_lp(ctx, update, strlen(s->suite), s->suite);
	feed_lp(ctx, update, s->binding_len, s->binding);
}

void ach_pbkdf2(unsigned iterations, size_t pw_len, const uint8_t *pw, size_t salt_len,
                const uint8_t *salt, size_t len, uint8_t *dst)
{
	pbkdf2_hmac_sha256(pw_len, pw, iterations, salt_len, salt, len, dst);
}

void ach_hmac(size_t key_len, const uint8_t *key, size_t len, const uint8_t *src,
              uint8_t dst[ACH_MAC_LEN])
{
	struct hmac_sha256_ctx ctx;

	hmac_sha256_set_key(&ctx, key_len, key);
	hmac_sha256_update(&ctx, len, src);
	hmac_sha256_digest(&ctx, ACH_MAC_LEN, dst);
	explicit_bzero(&ctx, sizeof(ctx));
}

/* --- The master key ----------------------------------------------------------
 * PBKDF2-HMAC-SHA256(pw, salt || 0x00 || min(a, b) || 0x00 || max(a, b) ||
 * 0x00 || ch_i || ch_r, iterations, 32).  Sorting the names gives both ends
 * the same key; putting them in the salt gives every pair its own key even
 * with one password; putting both handshake challenges in it makes it a new
 * salt for every handshake, drawn by both ends together, so no guess can be
 * computed before a handshake has been seen (a fixed salt per pair let anyone
 * build a table of guesses for alice and bob in advance and test a captured
 * handshake against it at HMAC speed).  The challenges are 32 bytes each and
 * last, so the string is unambiguous.  Nothing is cached: no two handshakes
 * share a key. */
int ach_master_key(unsigned iterations, const char *salt, const char *user_a,
                   const char *user_b, const uint8_t ch_i[ACH_CHALLENGE_LEN],
                   const uint8_t ch_r[ACH_CHALLENGE_LEN], size_t pw_len, const uint8_t *pw,
                   uint8_t dst[ACH_KEY_LEN])
{
	const char *lo = user_a, *hi = user_b;
	size_t salt_len, lo_len, hi_len, full_len, o = 0;
	uint8_t *full;

	if (strcmp(lo, hi) > 0) {
		lo = user_b;
		hi = user_a;
	}
	salt_len = strlen(salt);
	lo_len = strlen(lo);
	hi_len = strlen(hi);
	full_len = salt_len + 1 + lo_len + 1 + hi_len + 1 + 2 * ACH_CHALLENGE_LEN;
	full = malloc(full_len);
	if (!full)
		return CHAT_ERR_NOMEM;
	memcpy(full + o, salt, salt_len);
	o += salt_len;
	full[o++] = 0;
	memcpy(full + o, lo, lo_len);
	o += lo_len;
	full[o++] = 0;
	memcpy(full + o, hi, hi_len);
	o += hi_len;
	full[o++] = 0;
	memcpy(full + o, ch_i, ACH_CHALLENGE_LEN);
	o += ACH_CHALLENGE_LEN;
	memcpy(full + o, ch_r, ACH_CHALLENGE_LEN);
	ach_pbkdf2(iterations, pw_len, pw, full_len, full, ACH_KEY_LEN, dst);
	explicit_bzero(full, full_len);
	free(full);
	return CHAT_OK;
}

/* --- Per-session values ---------------------------------------------------- */

void ach_proof(const struct ach_session *s, int responder, uint8_t dst[ACH_MAC_LEN])
{
	/* Distinct labels per role: a proof one side made can never be
	 * reflected back as the other side's proof. */
	const char *label = responder ? LABEL_RESPONDER : LABEL_INITIATOR;
	struct hmac_sha256_ctx ctx;

	hmac_sha256_set_key(&ctx, ACH_KEY_LEN, s->master);
	feed_lp(&ctx, (nettle_hash_update_func *)hmac_sha256_update, strlen(label), label);
	feed_transcript(s, &ctx, (nettle_hash_update_func *)hmac_sha256_update);
	hmac_sha256_digest(&ctx, ACH_MAC_LEN, dst);
	explicit_bzero(&ctx, sizeof(ctx));
}

/* HKDF-SHA256 (RFC 5869): PRK = HMAC(ch_i || ch_r, master); OKM =
 * expand(PRK, info, 128) split into enc/mac initiator->responder, enc/mac
 * responder->initiator.  info = lp(label) || lp(initiator) || lp(responder)
 * || lp(suite) || lp(binding). */
int ach_session_keys(struct ach_session *s)
{
	struct hmac_sha256_ctx ctx;
	uint8_t salt[2 * ACH_CHALLENGE_LEN], prk[SHA256_DIGEST_SIZE];
	const char *init, *resp;
	const char *parts[4];
	size_t lens[5], info_len = 0, o = 0;
	uint8_t *info;

	roles(s, &init, &resp);
	parts[0] = LABEL_KEYS;
	parts[1] = init;
	parts[2] = resp;
	parts[3] = s->suite;
	for (int i = 0; i < 4; i++) {
		lens[i] = strlen(parts[i]);
		info_len += 4 + lens[i];
	}
	lens[4] = s->binding_len;
	info_len += 4 + lens[4];
	info = malloc(info_len);
	if (!info)
		return CHAT_ERR_NOMEM;
	for (int i = 0; i < 5; i++) {
		chat_pu_put_be32(info + o, (uint32_t)lens[i]);
		o += 4;
		if (lens[i])
			memcpy(info + o, i < 4 ? (const void *)parts[i] : (const void *)s->binding, lens[i]);
		o += lens[i];
	}

	memcpy(salt, s->ch_i, ACH_CHALLENGE_LEN);
	memcpy(salt + ACH_CHALLENGE_LEN, s->ch_r, ACH_CHALLENGE_LEN);
	hmac_sha256_set_key(&ctx, sizeof(salt), salt);
	hkdf_extract(&ctx, (nettle_hash_update_func *)hmac_sha256_update,
	             (nettle_hash_digest_func *)hmac_sha256_digest, SHA256_DIGEST_SIZE,
	             ACH_KEY_LEN, s->master, prk);
	hmac_sha256_set_key(&ctx, sizeof(prk), prk);
	hkdf_expand(&ctx, (nettle_hash_update_func *)hmac_sha256_update,
	            (nettle_hash_digest_func *)hmac_sha256_digest, SHA256_DIGEST_SIZE,
	            info_len, info, sizeof(s->keys), &s->keys[0][0]);
	explicit_bzero(&ctx, sizeof(ctx));
	explicit_bzero(prk, sizeof(prk));
	free(info);
	return CHAT_OK;
}

void ach_fingerprint_bytes(const struct ach_session *s, uint8_t dst[ACH_FP_BYTES])
{
	struct sha256_ctx ctx;
	uint8_t d[SHA256_DIGEST_SIZE];

	sha256_init(&ctx);
	feed_lp(&ctx, (nettle_hash_update_func *)sha256_update, strlen(LABEL_FINGERPRINT),
	        LABEL_FINGERPRINT);
	feed_transcript(s, &ctx, (nettle_hash_update_func *)sha256_update);
	sha256_digest(&ctx, sizeof(d), d);
	memcpy(dst, d, ACH_FP_BYTES);
}

void ach_params_digest(const struct ach_session *s, uint8_t dst[ACH_DIGEST_LEN])
{
	struct sha256_ctx ctx;
	uint8_t role = (uint8_t)s->role;

	sha256_init(&ctx);
	feed_lp(&ctx, (nettle_hash_update_func *)sha256_update, strlen(LABEL_SAVED), LABEL_SAVED);
	sha256_update(&ctx, 1, &role);
	feed_lp(&ctx, (nettle_hash_update_func *)sha256_update, strlen(s->local_id), s->local_id);
	feed_lp(&ctx, (nettle_hash_update_func *)sha256_update, strlen(s->peer_id), s->peer_id);
	feed_lp(&ctx, (nettle_hash_update_func *)sha256_update, strlen(s->suite), s->suite);
	feed_lp(&ctx, (nettle_hash_update_func *)sha256_update, s->binding_len, s->binding);
	sha256_digest(&ctx, ACH_DIGEST_LEN, dst);
}

void ach_msg_mac(const uint8_t key[ACH_KEY_LEN], int64_t timestamp, uint64_t seq,
                 size_t body_len, const uint8_t *body, uint8_t dst[ACH_MAC_LEN])
{
	struct hmac_sha256_ctx ctx;
	uint8_t be[16];

	chat_pu_put_be64(be, seq);
	chat_pu_put_be64(be + 8, (uint64_t)timestamp);
	hmac_sha256_set_key(&ctx, ACH_KEY_LEN, key);
	hmac_sha256_update(&ctx, 4, (const uint8_t *)"text");
	hmac_sha256_update(&ctx, sizeof(be), be);
	hmac_sha256_update(&ctx, body_len, body);
	hmac_sha256_digest(&ctx, ACH_MAC_LEN, dst);
	explicit_bzero(&ctx, sizeof(ctx));
}
