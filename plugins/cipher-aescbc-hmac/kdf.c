/* Key derivation for aescbc-hmac: PBKDF2 master keys (with a process-wide
 * cache), the CHAP proofs, HKDF session keys, the message MAC and the
 * fingerprint.
 *
 * Every variable-length field that goes into a MAC or hash is length-prefixed
 * (lp(x) = 4-byte big-endian length || x) so that no two different inputs can
 * produce the same byte string ("ab" || "c" vs "a" || "bc"). */
#include "aescbc_hmac.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/hkdf.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <nettle/pbkdf2.h>
#include <nettle/sha2.h>

#define LABEL_RESPONDER ACH_SUITE " responder proof"
#define LABEL_INITIATOR ACH_SUITE " initiator proof"
#define LABEL_KEYS ACH_SUITE " session keys"
#define LABEL_FINGERPRINT ACH_SUITE " fingerprint"
#define LABEL_CACHE ACH_SUITE " cache tag"
#define LABEL_SAVED ACH_SUITE " saved session v1"

static void put_be32(uint8_t dst[4], uint32_t v)
{
	dst[0] = (uint8_t)(v >> 24);
	dst[1] = (uint8_t)(v >> 16);
	dst[2] = (uint8_t)(v >> 8);
	dst[3] = (uint8_t)v;
}

static void put_be64(uint8_t dst[8], uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		dst[i] = (uint8_t)v;
		v >>= 8;
	}
}

/* Callers bound every field far below 4 GiB (usernames 256 bytes, suite
 * names 63, bindings come from the core), so the cast cannot truncate. */
static void feed_lp(void *ctx, nettle_hash_update_func *update, size_t len, const void *data)
{
	uint8_t be[4];

	put_be32(be, (uint32_t)len);
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

/* --- The master-key cache ------------------------------------------------
 * PBKDF2 at 100,000 iterations is slow on purpose; a peer that sends many
 * messages (one connection each, as chat-peer does) would pay it every time.
 * So derived master keys are kept in a small process-wide table.  An entry is
 * found by a tag: HMAC under a random per-process key over every KDF input.
 * A plain hash of the inputs would let anyone who reads the memory test
 * password guesses at SHA-256 speed, undoing PBKDF2; the keyed tag does not.
 * The least recently used entry is evicted and wiped; everything is wiped at
 * process exit (the plugin is never unloaded). */
struct cache_entry {
	bool used;
	uint64_t stamp; /* last use: the smallest is evicted */
	uint8_t tag[ACH_MAC_LEN];
	uint8_t key[ACH_KEY_LEN];
};

static struct {
	pthread_mutex_t lock;
	bool have_tag_key;
	uint8_t tag_key[ACH_KEY_LEN];
	uint64_t clock;
	unsigned hits, misses;
	struct cache_entry e[ACH_CACHE_SLOTS];
} cache = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void cache_wipe_locked(void)
{
	explicit_bzero(cache.e, sizeof(cache.e));
	explicit_bzero(cache.tag_key, sizeof(cache.tag_key));
	cache.have_tag_key = false;
	cache.clock = 0;
	cache.hits = 0;
	cache.misses = 0;
}

void ach_cache_clear(void)
{
	pthread_mutex_lock(&cache.lock);
	cache_wipe_locked();
	pthread_mutex_unlock(&cache.lock);
}

static void __attribute__((destructor)) cache_wipe_at_exit(void)
{
	ach_cache_clear();
}

void ach_cache_stats(unsigned *hits, unsigned *misses)
{
	pthread_mutex_lock(&cache.lock);
	*hits = cache.hits;
	*misses = cache.misses;
	pthread_mutex_unlock(&cache.lock);
}

static void cache_tag(unsigned iterations, size_t salt_len, const uint8_t *salt, size_t pw_len,
                      const uint8_t *pw, uint8_t dst[ACH_MAC_LEN])
{
	struct hmac_sha256_ctx ctx;
	uint8_t be[4];

	hmac_sha256_set_key(&ctx, sizeof(cache.tag_key), cache.tag_key);
	feed_lp(&ctx, (nettle_hash_update_func *)hmac_sha256_update, strlen(LABEL_CACHE), LABEL_CACHE);
	feed_lp(&ctx, (nettle_hash_update_func *)hmac_sha256_update, pw_len, pw);
	feed_lp(&ctx, (nettle_hash_update_func *)hmac_sha256_update, salt_len, salt);
	put_be32(be, iterations);
	hmac_sha256_update(&ctx, sizeof(be), be);
	hmac_sha256_digest(&ctx, ACH_MAC_LEN, dst);
	explicit_bzero(&ctx, sizeof(ctx));
}

/* Called with the lock held.  Returns the entry matching tag or NULL. */
static struct cache_entry *cache_find(const uint8_t tag[ACH_MAC_LEN])
{
	for (size_t i = 0; i < ACH_CACHE_SLOTS; i++)
		if (cache.e[i].used && memeql_sec(cache.e[i].tag, tag, ACH_MAC_LEN))
			return &cache.e[i];
	return NULL;
}

static void cache_insert(const uint8_t tag[ACH_MAC_LEN], const uint8_t key[ACH_KEY_LEN])
{
	struct cache_entry *slot = cache_find(tag);

	if (!slot) {
		slot = &cache.e[0];
		for (size_t i = 0; i < ACH_CACHE_SLOTS; i++) {
			if (!cache.e[i].used) {
				slot = &cache.e[i];
				break;
			}
			if (cache.e[i].stamp < slot->stamp)
				slot = &cache.e[i];
		}
		explicit_bzero(slot, sizeof(*slot));
	}
	slot->used = true;
	slot->stamp = ++cache.clock;
	memcpy(slot->tag, tag, ACH_MAC_LEN);
	memcpy(slot->key, key, ACH_KEY_LEN);
}

/* PBKDF2-HMAC-SHA256(pw, salt || 0x00 || min(a, b) || 0x00 || max(a, b),
 * iterations, 32).  Sorting the names gives both ends the same key; putting
 * them in the salt gives every pair its own key even with one password. */
int ach_master_key(const struct chat_host *host, unsigned iterations, const char *salt,
                   const char *user_a, const char *user_b, size_t pw_len, const uint8_t *pw,
                   uint8_t dst[ACH_KEY_LEN])
{
	const char *lo = user_a, *hi = user_b;
	size_t salt_len, lo_len, hi_len, full_len;
	uint8_t *full = NULL;
	uint8_t tag[ACH_MAC_LEN], key[ACH_KEY_LEN];
	struct cache_entry *hit;
	bool locked = false;
	int rc;

	if (strcmp(lo, hi) > 0) {
		lo = user_b;
		hi = user_a;
	}
	salt_len = strlen(salt);
	lo_len = strlen(lo);
	hi_len = strlen(hi);
	full_len = salt_len + 1 + lo_len + 1 + hi_len;
	full = malloc(full_len);
	if (!full) {
		rc = CHAT_ERR_NOMEM;
		goto out;
	}
	memcpy(full, salt, salt_len);
	full[salt_len] = 0;
	memcpy(full + salt_len + 1, lo, lo_len);
	full[salt_len + 1 + lo_len] = 0;
	memcpy(full + salt_len + 2 + lo_len, hi, hi_len);

	pthread_mutex_lock(&cache.lock);
	locked = true;
	if (!cache.have_tag_key) {
		rc = host->random(host, sizeof(cache.tag_key), cache.tag_key);
		if (rc < 0) {
			explicit_bzero(cache.tag_key, sizeof(cache.tag_key));
			rc = CHAT_ERR_RANDOM;
			goto out;
		}
		cache.have_tag_key = true;
	}
	cache_tag(iterations, full_len, full, pw_len, pw, tag);
	hit = cache_find(tag);
	if (hit) {
		hit->stamp = ++cache.clock;
		cache.hits++;
		memcpy(dst, hit->key, ACH_KEY_LEN);
		rc = CHAT_OK;
		goto out;
	}
	/* Derive without the lock: other sessions need not wait for it. */
	pthread_mutex_unlock(&cache.lock);
	locked = false;
	ach_pbkdf2(iterations, pw_len, pw, full_len, full, sizeof(key), key);
	pthread_mutex_lock(&cache.lock);
	locked = true;
	/* The table may have been cleared meanwhile: only a tag made with the
	 * current tag key may go in. */
	if (cache.have_tag_key) {
		cache_tag(iterations, full_len, full, pw_len, pw, tag);
		cache_insert(tag, key);
		cache.misses++;
	}
	memcpy(dst, key, ACH_KEY_LEN);
	rc = CHAT_OK;
out:
	if (locked)
		pthread_mutex_unlock(&cache.lock);
	explicit_bzero(tag, sizeof(tag));
	explicit_bzero(key, sizeof(key));
	if (full) {
		explicit_bzero(full, full_len);
		free(full);
	}
	return rc;
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
		put_be32(info + o, (uint32_t)lens[i]);
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

	put_be64(be, seq);
	put_be64(be + 8, (uint64_t)timestamp);
	hmac_sha256_set_key(&ctx, ACH_KEY_LEN, key);
	hmac_sha256_update(&ctx, 4, (const uint8_t *)"text");
	hmac_sha256_update(&ctx, sizeof(be), be);
	hmac_sha256_update(&ctx, body_len, body);
	hmac_sha256_digest(&ctx, ACH_MAC_LEN, dst);
	explicit_bzero(&ctx, sizeof(ctx));
}
