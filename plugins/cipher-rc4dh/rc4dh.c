/* rc4dh: the classic "talk through a server, RC4 keyed by Diffie-Hellman"
 * design, kept for comparison.  INSECURE: no integrity at all and an
 * unauthenticated key exchange.  docs/suites/rc4dh.md has the wire format,
 * the key schedule and the attacks; tests/test_rc4dh.c demonstrates them.
 *
 * Handshake (one round trip, no I/O here):
 *   initiator -> responder: version(1) || A (256, big-endian), A = 2^a mod p
 *   responder -> initiator: version(1) || B (256, big-endian), B = 2^b mod p
 * Keys: HKDF-SHA256(salt "chat-rc4dh-v1", IKM = the 256-byte shared secret),
 * info "initiator->responder" || binding and "responder->initiator" ||
 * binding, 32 bytes each, one RC4 state per direction that never restarts.
 * Message: offset(8, big-endian: bytes this side sent before) || RC4(text).
 *
 * Saved session (ABI 1.1 session_save/session_load), 1103 bytes:
 *   "RC4S" || version 0x02 || 5 || "rc4dh" || params digest (32) ||
 *   tx: S (256) || i || j || pos (8) || rx: the same || A (256) || B (256) ||
 *   bytes received (8) || bytes skipped (8)
 * (version 1, 1087 bytes, lacks the two counters; it still loads, with both 0)
 * params digest = SHA-256(lp("chat rc4dh saved session v1") || role ||
 * lp(suite) || lp(local id) || lp(peer id) || lp(binding)), lp = 4-byte
 * length || bytes.  A and B are kept for the fingerprint.  No open_at: there
 * is no clock to check. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/hkdf.h>
#include <nettle/hmac.h>
#include <nettle/sha2.h>

#include <chat/plugin.h>

#include "plugin_util.h"
#include "rc4dh_internal.h"

#define RC4DH_NAME "rc4dh"
#define RC4DH_WIRE_VERSION 1
#define RC4DH_HS_LEN (1 + RC4DH_DH_BYTES)
#define RC4DH_OFFSET_LEN 8
#define RC4DH_KEY_LEN 32
#define RC4DH_DROP_DEFAULT 3072
#define RC4DH_DROP_MAX 1048576
/* Skipping keystream costs time linear in the gap, and the offset that asks
 * for it is not authenticated: anyone on the path can send a tiny message
 * claiming a huge offset.  So the receiver pays for skips only out of what it
 * was sent: over a session, the keystream skipped may not exceed
 * RC4DH_SKIP_RATIO times the bytes handed to open() (every message counts,
 * accepted or not) plus RC4DH_SKIP_FREE, and one message may not skip more
 * than RC4DH_GAP_MAX.  A message over either limit is refused
 * (CHAT_ERR_MALFORMED), never skipped to.  docs/suites/rc4dh.md has the rule. */
#define RC4DH_SKIP_RATIO 8
#define RC4DH_SKIP_FREE ((uint64_t)256 << 10)
#define RC4DH_GAP_MAX ((uint64_t)1 << 20)
/* The negotiation transcript is a few suite names; anything near this is a
 * caller bug, and the copy is bounded. */
#define RC4DH_BINDING_MAX 65536
#define RC4DH_SALT "chat-rc4dh-v1"
#define RC4DH_INFO_I2R "initiator->responder"
#define RC4DH_INFO_R2I "responder->initiator"
#define RC4DH_INFO_LEN (sizeof(RC4DH_INFO_I2R) - 1)
#define RC4DH_FP_TAG "chat rc4dh fingerprint v1"
#define RC4DH_FP_BYTES 10 /* 80 bits shown */
#define RC4DH_FP_LEN 24   /* "xxxx-xxxx-xxxx-xxxx-xxxx" */
#define RC4DH_SAVE_MAGIC "RC4S"
#define RC4DH_SAVE_VERSION 2   /* 1 lacked the skip budget; still loaded */
#define RC4DH_SAVE_TAG "chat rc4dh saved session v1"
#define RC4DH_SAVE_HEAD (4 + 1 + 1 + sizeof(RC4DH_NAME) - 1)
#define RC4DH_SAVE_STREAM (256 + 2 + 8)
#define RC4DH_SAVE_LEN_V1 (RC4DH_SAVE_HEAD + SHA256_DIGEST_SIZE + 2 * RC4DH_SAVE_STREAM + \
                           2 * RC4DH_DH_BYTES)
#define RC4DH_SAVE_LEN (RC4DH_SAVE_LEN_V1 + 8 + 8)

_Static_assert(sizeof(RC4DH_INFO_I2R) == sizeof(RC4DH_INFO_R2I),
               "equal-length labels keep label || binding unambiguous");

enum rc4dh_state {
	RC4DH_START = 0,
	RC4DH_WAIT_PEER,   /* initiator: A sent, waiting for B */
	RC4DH_ESTABLISHED,
	RC4DH_FAILED,
};

struct rc4dh {
	const struct chat_host *host;
	int role;
	int state;                     /* enum rc4dh_state */
	uint64_t drop;
	uint8_t exp[RC4DH_EXP_BYTES];  /* our exponent, wiped once the keys exist */
	uint8_t pub_i[RC4DH_DH_BYTES]; /* the initiator's public value */
	uint8_t pub_r[RC4DH_DH_BYTES]; /* the responder's */
	struct rc4dh_stream tx;        /* what we send */
	struct rc4dh_stream rx;        /* what we receive */
	uint64_t rx_bytes;             /* bytes handed to open(), saturating: the skip budget */
	uint64_t skipped;              /* keystream skipped over lost bytes, in total */
	uint8_t params_digest[SHA256_DIGEST_SIZE]; /* what a saved session is tied to */
	size_t binding_len;
	uint8_t binding[];
};

/* Every member up to and including the last 1.0 one we call. */
static int rc4dh_host_ok(const struct chat_host *host)
{
	return CHAT_PU_HOST_HAS(host, config_get) && host->random && host->log;
}

/* The core validated the value against the declared key; still refuse text
 * that does not parse rather than run with a drop nobody asked for. */
static int rc4dh_config_drop(const struct chat_host *host, uint64_t *drop)
{
	const char *v = chat_pu_config(host, "drop", NULL);
	char *end;
	long long n;

	*drop = RC4DH_DROP_DEFAULT;
	if (!v)
		return CHAT_OK; /* no configuration at all: the declared default */
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno || end == v || *end || n < 0 || n > RC4DH_DROP_MAX) {
		host->log(host, CHAT_LOG_ERROR, "drop = '%.32s': expected an integer in [0, %d]",
		          v, RC4DH_DROP_MAX);
		return CHAT_ERR_CONFIG;
	}
	*drop = (uint64_t)n;
	return CHAT_OK;
}

static void rc4dh_hash_lp(struct sha256_ctx *h, size_t len, const void *src)
{
	uint8_t be[4];

	chat_pu_put_be32(be, (uint32_t)len);
	sha256_update(h, sizeof(be), be);
	sha256_update(h, len, src);
}

/* Everything a saved session must be loaded with again. */
static void rc4dh_params_digest(const struct chat_cipher_params *p,
                                uint8_t dst[SHA256_DIGEST_SIZE])
{
	const char *suite = p->suite ? p->suite : RC4DH_NAME;
	const char *local = p->local_id ? p->local_id : "";
	const char *peer = p->peer_id ? p->peer_id : "";
	uint8_t role = (uint8_t)p->role;
	struct sha256_ctx h;

	sha256_init(&h);
	rc4dh_hash_lp(&h, sizeof(RC4DH_SAVE_TAG) - 1, RC4DH_SAVE_TAG);
	sha256_update(&h, 1, &role);
	rc4dh_hash_lp(&h, strlen(suite), suite);
	rc4dh_hash_lp(&h, strlen(local), local);
	rc4dh_hash_lp(&h, strlen(peer), peer);
	rc4dh_hash_lp(&h, p->binding_len, p->binding);
	sha256_digest(&h, SHA256_DIGEST_SIZE, dst);
}

/* A session in RC4DH_START for these params. */
static int rc4dh_alloc(const struct chat_host *host, const struct chat_cipher_params *params,
                       struct rc4dh **out)
{
	struct rc4dh *s;
	uint64_t drop;
	int rc;

	*out = NULL;
	if (!rc4dh_host_ok(host) || !params ||
	    params->size < offsetof(struct chat_cipher_params, binding_len) +
	                   sizeof(params->binding_len) ||
	    (params->role != CHAT_ROLE_INITIATOR && params->role != CHAT_ROLE_RESPONDER) ||
	    (params->binding_len && !params->binding))
		return CHAT_ERR_INVALID;
	if (params->binding_len > RC4DH_BINDING_MAX ||
	    (params->local_id && strlen(params->local_id) > RC4DH_BINDING_MAX) ||
	    (params->peer_id && strlen(params->peer_id) > RC4DH_BINDING_MAX) ||
	    (params->suite && strlen(params->suite) > RC4DH_BINDING_MAX))
		return CHAT_ERR_TOO_BIG;
	rc = rc4dh_config_drop(host, &drop);
	if (rc)
		return rc;

	s = calloc(1, sizeof(*s) + params->binding_len);
	if (!s)
		return CHAT_ERR_NOMEM;
	s->host = host;
	s->role = params->role;
	s->state = RC4DH_START;
	s->drop = drop;
	s->binding_len = params->binding_len;
	if (params->binding_len)
		memcpy(s->binding, params->binding, params->binding_len);
	rc4dh_params_digest(params, s->params_digest);
	*out = s;
	return CHAT_OK;
}

static int rc4dh_session_new(const struct chat_host *host, const struct chat_cipher_params *params,
                             void **session)
{
	struct rc4dh *s;
	int rc;

	if (!session)
		return CHAT_ERR_INVALID;
	*session = NULL;
	rc = rc4dh_alloc(host, params, &s);
	if (rc)
		return rc;
	/* A shared secret, if the caller passed one, is not used: this suite has
	 * nothing to authenticate with.  No warning here: the frontends warn once
	 * per conversation from CHAT_FLAG_INSECURE and the summary. */
	*session = s;
	return CHAT_OK;
}

/* Failure is final: drop every secret now rather than at free time. */
static int rc4dh_fail(struct rc4dh *s, int rc)
{
	s->state = RC4DH_FAILED;
	explicit_bzero(s->exp, sizeof(s->exp));
	rc4dh_stream_wipe(&s->tx);
	rc4dh_stream_wipe(&s->rx);
	return rc;
}

/* Draw our exponent and compute our public value into pub. */
static int rc4dh_keypair(struct rc4dh *s, uint8_t *pub)
{
	int rc;

	rc = s->host->random(s->host, sizeof(s->exp), s->exp);
	if (rc) {
		s->host->log(s->host, CHAT_LOG_ERROR, "random source failed");
		return CHAT_ERR_RANDOM;
	}
	rc = rc4dh_dh_public(s->exp, pub);
	if (rc == CHAT_ERR_INVALID) {
		s->host->log(s->host, CHAT_LOG_ERROR, "random source returned 512 zero bits");
		return CHAT_ERR_RANDOM;
	}
	return rc;
}

static void rc4dh_mac_update(void *ctx, size_t len, const uint8_t *src)
{
	hmac_sha256_update(ctx, len, src);
}

static void rc4dh_mac_digest(void *ctx, size_t len, uint8_t *dst)
{
	hmac_sha256_digest(ctx, len, dst);
}

/* From the peer's public value to the two keyed streams.  The exponent, the
 * shared secret, the PRK, the keys and the HMAC states are wiped on every
 * path; on success only the RC4 states remain. */
static int rc4dh_derive(struct rc4dh *s, const uint8_t *peer)
{
	static const char *const labels[2] = { RC4DH_INFO_I2R, RC4DH_INFO_R2I };
	uint8_t secret[RC4DH_DH_BYTES], prk[SHA256_DIGEST_SIZE], key[RC4DH_KEY_LEN];
	struct hmac_sha256_ctx mac;
	size_t info_len = RC4DH_INFO_LEN + s->binding_len;
	uint8_t *info = NULL;
	int rc;

	rc = rc4dh_dh_shared(s->exp, secret, peer);
	if (rc)
		goto out;
	info = malloc(info_len);
	if (!info) {
		rc = CHAT_ERR_NOMEM;
		goto out;
	}
	hmac_sha256_set_key(&mac, sizeof(RC4DH_SALT) - 1, (const uint8_t *)RC4DH_SALT);
	hkdf_extract(&mac, rc4dh_mac_update, rc4dh_mac_digest, SHA256_DIGEST_SIZE,
	             sizeof(secret), secret, prk);
	for (int dir = 0; dir < 2; dir++) {
		/* dir 0 is initiator->responder: the initiator's sending stream. */
		int sending = (dir == 0) == (s->role == CHAT_ROLE_INITIATOR);

		memcpy(info, labels[dir], RC4DH_INFO_LEN);
		if (s->binding_len)
			memcpy(info + RC4DH_INFO_LEN, s->binding, s->binding_len);
		hmac_sha256_set_key(&mac, sizeof(prk), prk);
		hkdf_expand(&mac, rc4dh_mac_update, rc4dh_mac_digest, SHA256_DIGEST_SIZE,
		            info_len, info, sizeof(key), key);
		rc4dh_stream_init(sending ? &s->tx : &s->rx, sizeof(key), key, s->drop);
	}
	rc = CHAT_OK;
out:
	explicit_bzero(s->exp, sizeof(s->exp));
	explicit_bzero(secret, sizeof(secret));
	explicit_bzero(prk, sizeof(prk));
	explicit_bzero(key, sizeof(key));
	explicit_bzero(&mac, sizeof(mac));
	free(info);
	return rc;
}

/* version || value, with the value checked. */
static int rc4dh_parse(struct rc4dh *s, size_t len, const uint8_t *src, uint8_t *value)
{
	if (len != RC4DH_HS_LEN) {
		s->host->log(s->host, CHAT_LOG_WARN,
		             "handshake message of %zu bytes, expected %d", len, RC4DH_HS_LEN);
		return CHAT_ERR_MALFORMED;
	}
	if (src[0] != RC4DH_WIRE_VERSION) {
		s->host->log(s->host, CHAT_LOG_WARN,
		             "handshake message version %u, this plugin speaks %d", src[0],
		             RC4DH_WIRE_VERSION);
		return CHAT_ERR_MALFORMED;
	}
	if (rc4dh_dh_check(src + 1)) {
		s->host->log(s->host, CHAT_LOG_WARN,
		             "peer's Diffie-Hellman value is outside [2, p-2] or not in the "
		             "subgroup of order q");
		return CHAT_ERR_PEER_VALUE;
	}
	memcpy(value, src + 1, RC4DH_DH_BYTES);
	return CHAT_OK;
}

static int rc4dh_handshake(void *session, size_t src_len, struct chat_buf *dst,
                           const uint8_t *src)
{
	struct rc4dh *s = session;
	int rc;

	if (dst)
		dst->len = 0;
	if (!s || (src_len && !src))
		return CHAT_ERR_INVALID;

	switch (s->state) {
	case RC4DH_START:
		if (s->role == CHAT_ROLE_INITIATOR) {
			if (src_len != 0) {
				s->host->log(s->host, CHAT_LOG_WARN,
				             "initiator received a message before speaking");
				return rc4dh_fail(s, CHAT_ERR_STATE);
			}
			/* Checked first so a retry with room finds nothing consumed. */
			if (!dst || !dst->data)
				return CHAT_ERR_INVALID;
			if (dst->cap < RC4DH_HS_LEN)
				return CHAT_ERR_NOSPACE;
			rc = rc4dh_keypair(s, s->pub_i);
			if (rc)
				return rc4dh_fail(s, rc);
			dst->data[0] = RC4DH_WIRE_VERSION;
			memcpy(dst->data + 1, s->pub_i, RC4DH_DH_BYTES);
			dst->len = RC4DH_HS_LEN;
			s->state = RC4DH_WAIT_PEER;
			return CHAT_HS_CONTINUE;
		}
		if (src_len == 0) {
			s->host->log(s->host, CHAT_LOG_WARN,
			             "responder asked to speak first");
			return rc4dh_fail(s, CHAT_ERR_STATE);
		}
		if (!dst || !dst->data)
			return CHAT_ERR_INVALID;
		if (dst->cap < RC4DH_HS_LEN)
			return CHAT_ERR_NOSPACE;
		rc = rc4dh_parse(s, src_len, src, s->pub_i);
		if (rc == CHAT_OK)
			rc = rc4dh_keypair(s, s->pub_r);
		if (rc == CHAT_OK)
			rc = rc4dh_derive(s, s->pub_i);
		if (rc)
			return rc4dh_fail(s, rc);
		dst->data[0] = RC4DH_WIRE_VERSION;
		memcpy(dst->data + 1, s->pub_r, RC4DH_DH_BYTES);
		dst->len = RC4DH_HS_LEN;
		s->state = RC4DH_ESTABLISHED;
		return CHAT_HS_ESTABLISHED;

	case RC4DH_WAIT_PEER:
		rc = rc4dh_parse(s, src_len, src, s->pub_r);
		if (rc == CHAT_OK)
			rc = rc4dh_derive(s, s->pub_r);
		if (rc)
			return rc4dh_fail(s, rc);
		s->state = RC4DH_ESTABLISHED;
		return CHAT_HS_ESTABLISHED;

	case RC4DH_ESTABLISHED:
		s->host->log(s->host, CHAT_LOG_WARN, "handshake message after the handshake");
		return rc4dh_fail(s, CHAT_ERR_STATE);

	default:
		return CHAT_ERR_FAILED;
	}
}

static size_t rc4dh_sealed_size(void *session, size_t len)
{
	(void)session;
	return len > SIZE_MAX - RC4DH_OFFSET_LEN ? SIZE_MAX : len + RC4DH_OFFSET_LEN;
}

/* Not established yet is a caller error that leaves the handshake intact;
 * after a failure everything says so. */
static int rc4dh_ready(const struct rc4dh *s)
{
	if (s->state == RC4DH_ESTABLISHED)
		return CHAT_OK;
	return s->state == RC4DH_FAILED ? CHAT_ERR_FAILED : CHAT_ERR_STATE;
}

static int rc4dh_seal(void *session, size_t src_len, struct chat_buf *dst, const uint8_t *src)
{
	struct rc4dh *s = session;
	int rc;

	if (dst)
		dst->len = 0;
	if (!s || !dst || (dst->cap && !dst->data) || (src_len && !src))
		return CHAT_ERR_INVALID;
	rc = rc4dh_ready(s);
	if (rc)
		return rc;
	if (src_len > SIZE_MAX - RC4DH_OFFSET_LEN || src_len > UINT64_MAX - s->tx.pos)
		return CHAT_ERR_TOO_BIG;
	/* Before touching the keystream, so NOSPACE consumes nothing. */
	if (dst->cap < src_len + RC4DH_OFFSET_LEN)
		return CHAT_ERR_NOSPACE;
	chat_pu_put_be64(dst->data, s->tx.pos);
	rc4dh_stream_crypt(&s->tx, src_len, dst->data + RC4DH_OFFSET_LEN, src);
	dst->len = src_len + RC4DH_OFFSET_LEN;
	return CHAT_OK;
}

/* a + b, or UINT64_MAX if it does not fit. */
static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* How much keystream the session may still skip after counting this
 * message's len bytes (the rule above RC4DH_SKIP_RATIO). */
static uint64_t rc4dh_skip_budget(const struct rc4dh *s, size_t len)
{
	uint64_t got = sat_add(s->rx_bytes, len), allowed;

	allowed = got > (UINT64_MAX - RC4DH_SKIP_FREE) / RC4DH_SKIP_RATIO
	          ? UINT64_MAX : got * RC4DH_SKIP_RATIO + RC4DH_SKIP_FREE;
	return allowed > s->skipped ? allowed - s->skipped : 0;
}

/* The offset only keeps the two RC4 states in step when messages are lost or
 * repeated; it is not authenticated, and nothing else is either.  Every
 * message that gets past the argument checks counts towards the skip budget,
 * refused or not (except NOSPACE, which the caller retries). */
static int rc4dh_open(void *session, size_t src_len, struct chat_buf *dst, const uint8_t *src)
{
	struct rc4dh *s = session;
	uint64_t off, gap, budget;
	size_t n;
	int rc;

	if (dst)
		dst->len = 0;
	if (!s || !dst || (dst->cap && !dst->data) || (src_len && !src))
		return CHAT_ERR_INVALID;
	rc = rc4dh_ready(s);
	if (rc)
		return rc;
	if (src_len < RC4DH_OFFSET_LEN) {
		s->rx_bytes = sat_add(s->rx_bytes, src_len);
		return CHAT_ERR_MALFORMED;
	}
	off = chat_pu_get_be64(src);
	n = src_len - RC4DH_OFFSET_LEN;
	if (off < s->rx.pos) {
		s->rx_bytes = sat_add(s->rx_bytes, src_len);
		s->host->log(s->host, CHAT_LOG_DEBUG,
		             "dropped a message at stream offset %llu, already at %llu "
		             "(replayed or reordered)", (unsigned long long)off,
		             (unsigned long long)s->rx.pos);
		return CHAT_ERR_REPLAY;
	}
	gap = off - s->rx.pos;
	budget = rc4dh_skip_budget(s, src_len);
	if (gap > RC4DH_GAP_MAX || gap > budget || n > UINT64_MAX - off) {
		s->rx_bytes = sat_add(s->rx_bytes, src_len);
		s->host->log(s->host, CHAT_LOG_WARN,
		             "dropped a message at stream offset %llu: %llu bytes ahead of "
		             "ours, more than the %llu we may skip now (at most %llu per message, "
		             "%d per byte received + %llu per session)", (unsigned long long)off,
		             (unsigned long long)gap,
		             (unsigned long long)(budget < RC4DH_GAP_MAX ? budget : RC4DH_GAP_MAX),
		             (unsigned long long)RC4DH_GAP_MAX, RC4DH_SKIP_RATIO,
		             (unsigned long long)RC4DH_SKIP_FREE);
		return CHAT_ERR_MALFORMED;
	}
	if (dst->cap < n)
		return CHAT_ERR_NOSPACE;
	s->rx_bytes = sat_add(s->rx_bytes, src_len);
	if (gap) {
		s->host->log(s->host, CHAT_LOG_WARN,
		             "%llu bytes of the peer's stream never arrived (lost messages?); "
		             "skipping ahead to offset %llu", (unsigned long long)gap,
		             (unsigned long long)off);
		rc4dh_stream_skip(&s->rx, gap);
		s->skipped += gap; /* gap <= budget: no overflow */
	}
	rc4dh_stream_crypt(&s->rx, n, dst->data, src + RC4DH_OFFSET_LEN);
	dst->len = n;
	return CHAT_OK;
}

/* Role-neutral: initiator's value first, so both ends hash the same bytes.
 * Lengths are prefixed so no two inputs share an encoding. */
static int rc4dh_fingerprint(void *session, size_t cap, char *dst)
{
	static const char hex[] = "0123456789abcdef";
	struct rc4dh *s = session;
	struct sha256_ctx h;
	uint8_t digest[SHA256_DIGEST_SIZE], len[4];
	size_t o = 0;
	int rc;

	if (dst && cap)
		dst[0] = '\0';
	if (!s || !dst)
		return CHAT_ERR_INVALID;
	rc = rc4dh_ready(s);
	if (rc)
		return rc;
	if (cap < RC4DH_FP_LEN + 1)
		return CHAT_ERR_NOSPACE;

	sha256_init(&h);
	sha256_update(&h, sizeof(RC4DH_FP_TAG), (const uint8_t *)RC4DH_FP_TAG); /* with its NUL */
	chat_pu_put_be32(len, sizeof(RC4DH_NAME) - 1);
	sha256_update(&h, sizeof(len), len);
	sha256_update(&h, sizeof(RC4DH_NAME) - 1, (const uint8_t *)RC4DH_NAME);
	chat_pu_put_be32(len, (uint32_t)s->binding_len);
	sha256_update(&h, sizeof(len), len);
	sha256_update(&h, s->binding_len, s->binding);
	sha256_update(&h, RC4DH_DH_BYTES, s->pub_i);
	sha256_update(&h, RC4DH_DH_BYTES, s->pub_r);
	sha256_digest(&h, sizeof(digest), digest);

	for (size_t i = 0; i < RC4DH_FP_BYTES; i++) {
		if (i && i % 2 == 0)
			dst[o++] = '-';
		dst[o++] = hex[digest[i] >> 4];
		dst[o++] = hex[digest[i] & 15];
	}
	dst[o] = '\0';
	return CHAT_OK;
}

static void rc4dh_session_free(void *session)
{
	struct rc4dh *s = session;

	if (!s)
		return;
	explicit_bzero(s, sizeof(*s) + s->binding_len);
	free(s);
}

static uint8_t *rc4dh_put_stream(uint8_t *dst, const struct rc4dh_stream *st)
{
	memcpy(dst, st->rc4.S, sizeof(st->rc4.S));
	dst[256] = st->rc4.i;
	dst[257] = st->rc4.j;
	chat_pu_put_be64(dst + 258, st->pos);
	return dst + RC4DH_SAVE_STREAM;
}

/* 0 unless S is a permutation of 0..255, as every RC4 state is. */
static int rc4dh_get_stream(struct rc4dh_stream *st, const uint8_t *src)
{
	uint8_t seen[256] = { 0 };

	for (int k = 0; k < 256; k++) {
		if (seen[src[k]]++)
			return 0;
	}
	memcpy(st->rc4.S, src, sizeof(st->rc4.S));
	st->rc4.i = src[256];
	st->rc4.j = src[257];
	st->pos = chat_pu_get_be64(src + 258);
	return 1;
}

/* Only an established session: its streams, positions and public values
 * (for the fingerprint).  The exponent is long gone by then. */
static int rc4dh_session_save(void *session, struct chat_buf *dst)
{
	struct rc4dh *s = session;
	uint8_t *p;
	int rc;

	if (dst)
		dst->len = 0;
	if (!s || !dst || (dst->cap && !dst->data))
		return CHAT_ERR_INVALID;
	rc = rc4dh_ready(s);
	if (rc)
		return rc;
	if (dst->cap < RC4DH_SAVE_LEN)
		return CHAT_ERR_NOSPACE;
	p = dst->data;
	memcpy(p, RC4DH_SAVE_MAGIC, 4);
	p[4] = RC4DH_SAVE_VERSION;
	p[5] = sizeof(RC4DH_NAME) - 1;
	memcpy(p + 6, RC4DH_NAME, sizeof(RC4DH_NAME) - 1);
	p += RC4DH_SAVE_HEAD;
	memcpy(p, s->params_digest, SHA256_DIGEST_SIZE);
	p += SHA256_DIGEST_SIZE;
	p = rc4dh_put_stream(p, &s->tx);
	p = rc4dh_put_stream(p, &s->rx);
	memcpy(p, s->pub_i, RC4DH_DH_BYTES);
	memcpy(p + RC4DH_DH_BYTES, s->pub_r, RC4DH_DH_BYTES);
	p += 2 * RC4DH_DH_BYTES;
	chat_pu_put_be64(p, s->rx_bytes);
	chat_pu_put_be64(p + 8, s->skipped);
	dst->len = RC4DH_SAVE_LEN;
	return CHAT_OK;
}

static int rc4dh_session_load(const struct chat_host *host,
                              const struct chat_cipher_params *params, size_t src_len,
                              const uint8_t *src, void **session)
{
	struct rc4dh *s;
	const uint8_t *p = src;
	int rc;

	if (!session)
		return CHAT_ERR_INVALID;
	*session = NULL;
	if (src_len && !src)
		return CHAT_ERR_INVALID;
	rc = rc4dh_alloc(host, params, &s);
	if (rc)
		return rc;
	rc = CHAT_ERR_MALFORMED;
	/* Version 1 is version 2 without the two counters at the end. */
	if (src_len < RC4DH_SAVE_HEAD || memcmp(p, RC4DH_SAVE_MAGIC, 4) != 0 ||
	    !((p[4] == RC4DH_SAVE_VERSION && src_len == RC4DH_SAVE_LEN) ||
	      (p[4] == 1 && src_len == RC4DH_SAVE_LEN_V1)) ||
	    p[5] != sizeof(RC4DH_NAME) - 1 || memcmp(p + 6, RC4DH_NAME, sizeof(RC4DH_NAME) - 1) != 0)
		goto out;
	p += RC4DH_SAVE_HEAD;
	if (memcmp(p, s->params_digest, SHA256_DIGEST_SIZE) != 0)
		goto out;
	p += SHA256_DIGEST_SIZE;
	if (!rc4dh_get_stream(&s->tx, p) || !rc4dh_get_stream(&s->rx, p + RC4DH_SAVE_STREAM))
		goto out;
	p += 2 * RC4DH_SAVE_STREAM;
	if (rc4dh_dh_check(p) || rc4dh_dh_check(p + RC4DH_DH_BYTES))
		goto out;
	memcpy(s->pub_i, p, RC4DH_DH_BYTES);
	memcpy(s->pub_r, p + RC4DH_DH_BYTES, RC4DH_DH_BYTES);
	p += 2 * RC4DH_DH_BYTES;
	if (src_len == RC4DH_SAVE_LEN) {
		s->rx_bytes = chat_pu_get_be64(p);
		s->skipped = chat_pu_get_be64(p + 8);
	}
	s->state = RC4DH_ESTABLISHED;
	*session = s;
	s = NULL;
	rc = CHAT_OK;
out:
	if (rc)
		host->log(host, CHAT_LOG_WARN,
		          "saved session refused (%zu bytes): not an rc4dh session saved with "
		          "these ids, role and binding", src_len);
	rc4dh_session_free(s); /* wipes whatever of the streams was copied in */
	return rc;
}

static const struct chat_cipher_ops rc4dh_ops = {
	.size = sizeof(struct chat_cipher_ops),
	.session_new = rc4dh_session_new,
	.handshake = rc4dh_handshake,
	.sealed_size = rc4dh_sealed_size,
	.seal = rc4dh_seal,
	.open = rc4dh_open,
	.fingerprint = rc4dh_fingerprint,
	.session_free = rc4dh_session_free,
	.session_save = rc4dh_session_save,
	.session_load = rc4dh_session_load,
	.open_at = NULL, /* no time check: the core calls open() */
};

static const struct chat_config_key rc4dh_config_keys[] = {
	{ .name = "drop", .type = CHAT_CONFIG_INT, .def = "3072", .min = 0,
	  .max = RC4DH_DROP_MAX,
	  .help = "keystream bytes discarded at the start of each RC4 stream (RC4-drop[n]); "
	          "both ends must use the same value" },
	{ .name = NULL },
};

static const struct chat_plugin rc4dh_plugin = {
	CHAT_PLUGIN_HEADER,
	.kind = CHAT_PLUGIN_CIPHER,
	.flags = CHAT_FLAG_INSECURE,
	.name = RC4DH_NAME,
	.version = "1.0.0",
	/* The frontends quote this in their warning: say what a user can do. */
	.summary = "RC4-drop keyed by unauthenticated 2048-bit Diffie-Hellman, no integrity: "
	           "changed messages go unnoticed, and only fingerprints compared out of band "
	           "reveal a man in the middle",
	.config_keys = rc4dh_config_keys,
	.ops.cipher = &rc4dh_ops,
};

CHAT_PLUGIN_EXPORT const struct chat_plugin *chat_plugin_entry(void)
{
	return &rc4dh_plugin;
}
