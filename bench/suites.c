/* chat-bench-suites: what each cipher suite costs, next to the raw Nettle
 * primitive it is built on, in one run and one process (no sockets).
 *
 * Every cipher plugin in the build's plugin directory is loaded with the
 * core's loader (as tests/test_suites.c does); which suites there are comes
 * from the directory, never from a list here.  For each one:
 *
 *   handshakes   session_new at both ends, handshake steps passing buffers
 *                until both are established, session_free; identity keys
 *                (CHAT_FLAG_IDENTITY) made once with identity_keygen and
 *                pinned, a shared secret for CHAT_FLAG_NEEDS_SECRET;
 *   seal+open    one established pair; the initiator seals S bytes, the
 *                responder opens them, S = 100 B, 1 KiB and 60 KiB.
 *
 * The raw primitives run the same loop over the same buffers: encrypt and
 * tag, then verify and decrypt, with keys set once and a counter nonce.  The
 * table below names the suite each one is compared with; a suite with no
 * entry (xor-demo, a third party's) is measured alone, and a primitive whose
 * suite is not loaded alone too.
 *
 * Each cell runs for --duration seconds (at least one operation, at most
 * --count) after an unmeasured warm-up of a tenth of that.  A suite and its
 * primitive take turns, --rounds slices each, so that other work on this
 * shared machine falls on both alike; the lowest and highest ratio of one
 * round show how much it moved.  Rates are per second of this thread's CPU
 * time; cpu% (CPU time / wall time) says how much a cell was preempted.
 * One RESULT line per cell (and one per ratio) on stdout, then markdown
 * tables. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nettle/aes.h>
#include <nettle/arcfour.h>
#include <nettle/cbc.h>
#include <nettle/chacha-poly1305.h>
#include <nettle/gcm.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>

#include "loader.h"
#include "log.h"

#ifndef CHAT_BENCH_PLUGIN_DIR
#define CHAT_BENCH_PLUGIN_DIR "plugins"
#endif

#define HS_CAP 65536        /* a handshake message fits in one default frame */
#define HS_STEPS 16         /* handshake calls, both ends together */
#define ID_CAP 4096         /* the ABI's room for either half of an identity key pair */
#define MSG_MAX (60 * 1024) /* the largest size measured: a client's largest message */
#define CLOCK_EVERY 16      /* seal+open iterations between clock reads */
#define SEALED_CAP (2 * MSG_MAX) /* room for any sane suite's sealed 60 KiB */
#define PLAIN_CAP (MSG_MAX + 64)  /* raw CBC decrypts the padding too */
#define MAX_SUITES 64
#define COUNT_DEFAULT 10000000
#define ROUNDS_DEFAULT 5

static const size_t sizes[] = { 100, 1024, MSG_MAX };
#define N_SIZES (sizeof(sizes) / sizeof(sizes[0]))

static const char secret[] = "correct horse battery staple";
static const uint8_t binding[] = "offer=a,b;accept=a,b;choice=a";

struct opts {
	double duration;
	int rounds;
	uint64_t count;
	const char *plugin_dir;
	const char *only; /* one suite, or NULL */
};

/* One measured cell: n operations in wall and cpu seconds. */
struct cell {
	uint64_t n;
	double wall, cpu;
	int ran;
};

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double rate(const struct cell *c)
{
	return c->ran && c->cpu > 0 ? (double)c->n / c->cpu : 0;
}

static double cpu_pct(const struct cell *c)
{
	return c->wall > 0 ? 100 * c->cpu / c->wall : 0;
}

/* --- Raw primitives ---------------------------------------------------------- */

/* Keys are fixed bytes: the figures do not depend on them. */
static const uint8_t raw_key[32] = {
	0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d, 0x77, 0x81,
	0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4,
};

static void put_be64(uint8_t *dst, uint64_t v)
{
	for (int k = 7; k >= 0; k--, v >>= 8)
		dst[k] = (uint8_t)v;
}

/* seal returns the sealed length; open returns the plaintext length, or -1
 * when the message is not authentic.  Both ends live in one context, each
 * with its own state, as a suite's two sessions do. */
struct raw_prim {
	const char *name;
	const char *suite; /* the plugin name of the suite built on it */
	size_t overhead;   /* at most this many bytes more than the plaintext */
	size_t ctx_size;
	void (*init)(void *ctx);
	size_t (*seal)(void *ctx, size_t len, uint8_t *dst, const uint8_t *src);
	long (*open)(void *ctx, size_t len, uint8_t *dst, const uint8_t *src);
};

/* ChaCha20-Poly1305 (RFC 8439), 96-bit nonce from a counter, 16-byte tag. */
struct raw_chacha {
	struct chacha_poly1305_ctx tx, rx;
	uint64_t tx_n, rx_n;
};

static void chacha_init(void *ctx)
{
	struct raw_chacha *c = ctx;

	chacha_poly1305_set_key(&c->tx, raw_key);
	chacha_poly1305_set_key(&c->rx, raw_key);
	c->tx_n = c->rx_n = 0;
}

static size_t chacha_seal(void *ctx, size_t len, uint8_t *dst, const uint8_t *src)
{
	struct raw_chacha *c = ctx;
	uint8_t nonce[CHACHA_POLY1305_NONCE_SIZE] = { 0 };

	put_be64(nonce + 4, c->tx_n++);
	chacha_poly1305_set_nonce(&c->tx, nonce);
	chacha_poly1305_encrypt(&c->tx, len, dst, src);
	chacha_poly1305_digest(&c->tx, CHACHA_POLY1305_DIGEST_SIZE, dst + len);
	return len + CHACHA_POLY1305_DIGEST_SIZE;
}

static long chacha_open(void *ctx, size_t len, uint8_t *dst, const uint8_t *src)
{
	struct raw_chacha *c = ctx;
	uint8_t nonce[CHACHA_POLY1305_NONCE_SIZE] = { 0 }, tag[CHACHA_POLY1305_DIGEST_SIZE];
	size_t n = len - sizeof(tag);

	put_be64(nonce + 4, c->rx_n++);
	chacha_poly1305_set_nonce(&c->rx, nonce);
	chacha_poly1305_decrypt(&c->rx, n, dst, src);
	chacha_poly1305_digest(&c->rx, sizeof(tag), tag);
	return memeql_sec(tag, src + n, sizeof(tag)) ? (long)n : -1;
}

/* AES-256-GCM, 96-bit IV from a counter, 16-byte tag; keys (and GHASH's
 * table) set once per direction. */
struct raw_gcm {
	struct gcm_aes256_ctx tx, rx;
	uint64_t tx_n, rx_n;
};

static void gcm_init(void *ctx)
{
	struct raw_gcm *c = ctx;

	gcm_aes256_set_key(&c->tx, raw_key);
	gcm_aes256_set_key(&c->rx, raw_key);
	c->tx_n = c->rx_n = 0;
}

static size_t gcm_seal(void *ctx, size_t len, uint8_t *dst, const uint8_t *src)
{
	struct raw_gcm *c = ctx;
	uint8_t iv[GCM_IV_SIZE] = { 0 };

	put_be64(iv + 4, c->tx_n++);
	gcm_aes256_set_iv(&c->tx, sizeof(iv), iv);
	gcm_aes256_encrypt(&c->tx, len, dst, src);
	gcm_aes256_digest(&c->tx, GCM_DIGEST_SIZE, dst + len);
	return len + GCM_DIGEST_SIZE;
}

static long gcm_open(void *ctx, size_t len, uint8_t *dst, const uint8_t *src)
{
	struct raw_gcm *c = ctx;
	uint8_t iv[GCM_IV_SIZE] = { 0 }, tag[GCM_DIGEST_SIZE];
	size_t n = len - sizeof(tag);

	put_be64(iv + 4, c->rx_n++);
	gcm_aes256_set_iv(&c->rx, sizeof(iv), iv);
	gcm_aes256_decrypt(&c->rx, n, dst, src);
	gcm_aes256_digest(&c->rx, sizeof(tag), tag);
	return memeql_sec(tag, src + n, sizeof(tag)) ? (long)n : -1;
}

/* AES-256-CBC with PKCS#7 padding, then HMAC-SHA256 over IV || ciphertext
 * (encrypt-then-MAC); the IV is a counter, not random (no getrandom here).
 * open checks the MAC first, then decrypts straight into dst. */
struct raw_cbc {
	struct aes256_ctx enc, dec;
	struct hmac_sha256_ctx mac_tx, mac_rx;
	uint64_t tx_n;
};

static void cbc_init(void *ctx)
{
	struct raw_cbc *c = ctx;

	aes256_set_encrypt_key(&c->enc, raw_key);
	aes256_set_decrypt_key(&c->dec, raw_key);
	hmac_sha256_set_key(&c->mac_tx, sizeof(raw_key), raw_key);
	hmac_sha256_set_key(&c->mac_rx, sizeof(raw_key), raw_key);
	c->tx_n = 0;
}

static size_t cbc_seal(void *ctx, size_t len, uint8_t *dst, const uint8_t *src)
{
	struct raw_cbc *c = ctx;
	size_t whole = len / AES_BLOCK_SIZE * AES_BLOCK_SIZE;
	size_t pad = AES_BLOCK_SIZE - len % AES_BLOCK_SIZE;
	uint8_t iv[AES_BLOCK_SIZE] = { 0 }, last[AES_BLOCK_SIZE];
	uint8_t *ct = dst + AES_BLOCK_SIZE;

	put_be64(iv + 8, c->tx_n++);
	memcpy(dst, iv, sizeof(iv));
	/* Whole blocks straight from src; only the padded last one is copied. */
	cbc_encrypt(&c->enc, (nettle_cipher_func *)aes256_encrypt, AES_BLOCK_SIZE, iv, whole, ct, src);
	memcpy(last, src + whole, len - whole);
	memset(last + len - whole, (int)pad, pad);
	cbc_encrypt(&c->enc, (nettle_cipher_func *)aes256_encrypt, AES_BLOCK_SIZE, iv,
	            AES_BLOCK_SIZE, ct + whole, last);
	hmac_sha256_update(&c->mac_tx, AES_BLOCK_SIZE + whole + AES_BLOCK_SIZE, dst);
	hmac_sha256_digest(&c->mac_tx, SHA256_DIGEST_SIZE, ct + whole + AES_BLOCK_SIZE);
	return AES_BLOCK_SIZE + whole + AES_BLOCK_SIZE + SHA256_DIGEST_SIZE;
}

static long cbc_open(void *ctx, size_t len, uint8_t *dst, const uint8_t *src)
{
	struct raw_cbc *c = ctx;
	uint8_t iv[AES_BLOCK_SIZE], mac[SHA256_DIGEST_SIZE];
	size_t body = len - SHA256_DIGEST_SIZE, ct_len = body - AES_BLOCK_SIZE;
	unsigned pad;

	hmac_sha256_update(&c->mac_rx, body, src);
	hmac_sha256_digest(&c->mac_rx, sizeof(mac), mac);
	if (!memeql_sec(mac, src + body, sizeof(mac)))
		return -1;
	memcpy(iv, src, sizeof(iv));
	cbc_decrypt(&c->dec, (nettle_cipher_func *)aes256_decrypt, AES_BLOCK_SIZE, iv, ct_len, dst,
	            src + AES_BLOCK_SIZE);
	pad = dst[ct_len - 1];
	if (pad == 0 || pad > AES_BLOCK_SIZE)
		return -1;
	return (long)(ct_len - pad);
}

/* ARCFOUR: one keystream per direction that never restarts, as rc4dh. */
struct raw_rc4 {
	struct arcfour_ctx tx, rx;
};

static void rc4_init(void *ctx)
{
	struct raw_rc4 *c = ctx;

	arcfour_set_key(&c->tx, sizeof(raw_key), raw_key);
	arcfour_set_key(&c->rx, sizeof(raw_key), raw_key);
}

static size_t rc4_seal(void *ctx, size_t len, uint8_t *dst, const uint8_t *src)
{
	struct raw_rc4 *c = ctx;

	arcfour_crypt(&c->tx, len, dst, src);
	return len;
}

static long rc4_open(void *ctx, size_t len, uint8_t *dst, const uint8_t *src)
{
	struct raw_rc4 *c = ctx;

	arcfour_crypt(&c->rx, len, dst, src);
	return (long)len;
}

/* Which primitive each suite is built on (its plugin's source says so). */
static const struct raw_prim raw_prims[] = {
	{ "chacha20-poly1305", "noise-xx", CHACHA_POLY1305_DIGEST_SIZE, sizeof(struct raw_chacha),
	  chacha_init, chacha_seal, chacha_open },
	{ "aes256-gcm", "rsa", GCM_DIGEST_SIZE, sizeof(struct raw_gcm),
	  gcm_init, gcm_seal, gcm_open },
	{ "aes256-cbc+hmac-sha256", "aescbc-hmac", 2 * AES_BLOCK_SIZE + SHA256_DIGEST_SIZE,
	  sizeof(struct raw_cbc), cbc_init, cbc_seal, cbc_open },
	{ "arcfour", "rc4dh", 0, sizeof(struct raw_rc4), rc4_init, rc4_seal, rc4_open },
};
#define N_RAW (sizeof(raw_prims) / sizeof(raw_prims[0]))

/* The targets: suite seal+open / raw primitive at one size. */
static const struct target {
	const char *suite;
	size_t size;
	double min_ratio;
} targets[] = {
	{ "noise-xx", MSG_MAX, 0.6 },
};

/* --- Suites ------------------------------------------------------------------- */

struct idkey {
	uint8_t priv[ID_CAP], pub[ID_CAP];
	size_t priv_len, pub_len;
};

struct suite {
	const struct chat_loaded *l;
	const struct chat_cipher_ops *ops;
	const char *name;
	unsigned flags;
	const struct raw_prim *raw; /* or NULL */
	struct idkey *ids;          /* [0] alice, [1] bob: CHAT_FLAG_IDENTITY only */
	double keygen_ms;           /* both pairs */
	/* Results. */
	struct cell hs;
	int hs_msgs;
	size_t hs_bytes;
	struct cell seal[N_SIZES], raw_seal[N_SIZES];
	double lo[N_SIZES], hi[N_SIZES]; /* suite/raw: the lowest and highest round */
	const char *failed;         /* why the suite could not be measured */
};

static struct chat_cipher_params params_for(const struct suite *t, int role)
{
	int me = role == CHAT_ROLE_INITIATOR ? 0 : 1;
	struct chat_cipher_params params = {
		.size = sizeof(params),
		.role = role,
		.local_id = me ? "bob" : "alice",
		.peer_id = me ? "alice" : "bob",
		.suite = t->name,
		.binding = binding,
		.binding_len = sizeof(binding) - 1,
	};

	if (t->flags & CHAT_FLAG_NEEDS_SECRET) {
		params.secret = (const uint8_t *)secret;
		params.secret_len = sizeof(secret) - 1;
	}
	if (t->ids) {
		params.identity_private = t->ids[me].priv;
		params.identity_private_len = t->ids[me].priv_len;
		params.identity_public = t->ids[me].pub;
		params.identity_public_len = t->ids[me].pub_len;
		/* Each end pins the other's key, as after a first contact. */
		params.peer_identity = t->ids[!me].pub;
		params.peer_identity_len = t->ids[!me].pub_len;
	}
	return params;
}

/* Both ends from session_new to established.  CHAT_OK with *i and *r set,
 * or an error with both freed; msgs and bytes count what went across. */
static int pair_new(const struct suite *t, uint8_t *buf[2], void **i, void **r, int *msgs,
                    size_t *bytes)
{
	struct chat_cipher_params pi = params_for(t, CHAT_ROLE_INITIATOR);
	struct chat_cipher_params pr = params_for(t, CHAT_ROLE_RESPONDER);
	void *end[2];
	int done[2] = { 0, 0 }, turn = 0, cur = 0, steps = 0, rc;
	struct chat_buf out = { buf[0], HS_CAP, 0 };
	size_t len = 0;

	*i = *r = NULL;
	*msgs = 0;
	*bytes = 0;
	rc = t->ops->session_new(&t->l->host, &pi, i);
	if (rc == CHAT_OK)
		rc = t->ops->session_new(&t->l->host, &pr, r);
	if (rc < 0)
		goto fail;
	end[0] = *i;
	end[1] = *r;
	rc = t->ops->handshake(*i, 0, &out, NULL);
	for (;;) {
		if (rc < 0)
			goto fail;
		if (rc != CHAT_HS_CONTINUE && rc != CHAT_HS_ESTABLISHED) {
			rc = CHAT_ERR_STATE;
			goto fail;
		}
		done[turn] = rc == CHAT_HS_ESTABLISHED;
		len = out.len;
		if (len) {
			(*msgs)++;
			*bytes += len;
		}
		if (done[0] && done[1])
			break;
		turn = !turn;
		cur = !cur;
		/* Nothing to pass on, too many steps, or a message for an end that
		 * is done: the suite is broken, not slow. */
		if (!len || done[turn] || ++steps >= HS_STEPS) {
			rc = CHAT_ERR_STATE;
			goto fail;
		}
		out = (struct chat_buf){ buf[cur], HS_CAP, 0 };
		rc = t->ops->handshake(end[turn], len, &out, buf[!cur]);
	}
	if (len) {
		rc = CHAT_ERR_STATE; /* a message left over after both established */
		goto fail;
	}
	return CHAT_OK;
fail:
	t->ops->session_free(*i);
	t->ops->session_free(*r);
	*i = *r = NULL;
	return rc;
}

static double ratio_at(const struct suite *t, size_t k)
{
	double a = rate(&t->seal[k]), b = rate(&t->raw_seal[k]);

	return a > 0 && b > 0 ? a / b : 0;
}

static int make_ids(struct suite *t)
{
	double t0 = clock_s(CLOCK_MONOTONIC);

	t->ids = calloc(2, sizeof(*t->ids));
	if (!t->ids)
		return CHAT_ERR_NOMEM;
	for (int k = 0; k < 2; k++) {
		struct chat_buf priv = { t->ids[k].priv, ID_CAP, 0 };
		struct chat_buf pub = { t->ids[k].pub, ID_CAP, 0 };
		int rc = t->ops->identity_keygen(&t->l->host, &priv, &pub);

		if (rc < 0)
			return rc;
		t->ids[k].priv_len = priv.len;
		t->ids[k].pub_len = pub.len;
	}
	t->keygen_ms = (clock_s(CLOCK_MONOTONIC) - t0) * 1e3;
	return CHAT_OK;
}

/* Handshakes until the time or the count is used up. */
static int bench_handshakes(struct suite *t, const struct opts *o)
{
	uint8_t *buf[2] = { malloc(HS_CAP), malloc(HS_CAP) };
	double warm = o->duration / 10, w0, c0, now;
	void *i, *r;
	int rc = CHAT_OK;

	if (!buf[0] || !buf[1]) {
		rc = CHAT_ERR_NOMEM;
		goto out;
	}
	/* Warm-up: at least one, which also checks the suite works at all. */
	w0 = clock_s(CLOCK_MONOTONIC);
	do {
		rc = pair_new(t, buf, &i, &r, &t->hs_msgs, &t->hs_bytes);
		if (rc < 0)
			goto out;
		t->ops->session_free(i);
		t->ops->session_free(r);
	} while (clock_s(CLOCK_MONOTONIC) - w0 < warm);

	w0 = clock_s(CLOCK_MONOTONIC);
	c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
	t->hs.n = 0;
	do {
		int msgs;
		size_t bytes;

		rc = pair_new(t, buf, &i, &r, &msgs, &bytes);
		if (rc < 0)
			goto out;
		t->ops->session_free(i);
		t->ops->session_free(r);
		t->hs.n++;
		now = clock_s(CLOCK_MONOTONIC);
	} while (now - w0 < o->duration && t->hs.n < o->count);
	t->hs.cpu = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
	t->hs.wall = now - w0;
	t->hs.ran = 1;
out:
	free(buf[0]);
	free(buf[1]);
	return rc;
}

/* One seal+open: what a function pointer of either kind does per message. */
struct sealer {
	const struct suite *t; /* a suite's pair ... */
	void *i, *r;
	const struct raw_prim *raw; /* ... or a raw primitive */
	void *ctx;
	size_t cap; /* room for one sealed message */
};

static int seal_open(const struct sealer *s, size_t len, const uint8_t *src, uint8_t *sealed,
                     uint8_t *plain)
{
	if (s->t) {
		struct chat_buf b = { sealed, s->cap, 0 }, p = { plain, len, 0 };
		int rc = s->t->ops->seal(s->i, len, &b, src);

		if (rc == CHAT_OK)
			rc = s->t->ops->open(s->r, b.len, &p, sealed);
		return rc == CHAT_OK && p.len == len ? 0 : rc < 0 ? rc : CHAT_ERR_FAILED;
	} else {
		size_t n = s->raw->seal(s->ctx, len, sealed, src);

		return s->raw->open(s->ctx, n, plain, sealed) == (long)len ? 0 : CHAT_ERR_INTEGRITY;
	}
}

/* Does one message open to what was sealed?  Before and after the loops:
 * they measure something that works. */
static int seal_check(const struct sealer *s, size_t len, const uint8_t *src, uint8_t *sealed,
                      uint8_t *plain)
{
	int rc;

	memset(plain, 0, len);
	rc = seal_open(s, len, src, sealed, plain);
	return rc < 0 ? rc : memcmp(plain, src, len) ? CHAT_ERR_FAILED : CHAT_OK;
}

/* The measured loop, the same for suites and raw primitives: secs of wall
 * time or count messages, added to c.  The clock is read every CLOCK_EVERY
 * messages so that reading it costs nothing at 100 B. */
static int seal_slice(const struct sealer *s, size_t len, const uint8_t *src, uint8_t *sealed,
                      uint8_t *plain, double secs, uint64_t count, struct cell *c)
{
	double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID), now;
	uint64_t n = 0;
	int rc;

	do {
		for (int k = 0; k < CLOCK_EVERY; k++)
			if ((rc = seal_open(s, len, src, sealed, plain)) < 0)
				return rc;
		n += CLOCK_EVERY;
		now = clock_s(CLOCK_MONOTONIC);
	} while (now - w0 < secs && n < count);
	c->cpu += clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
	c->wall += now - w0;
	c->n += n;
	c->ran = 1;
	return CHAT_OK;
}

/* A suite and its raw primitive (b, or NULL) at one size, in turns: o->rounds
 * slices each, so that whatever else the machine does falls on both alike.
 * lo and hi: the lowest and highest ratio a / b of one round. */
static int seal_cells(const struct sealer *a, const struct sealer *b, size_t len,
                      const uint8_t *src, uint8_t *sealed, uint8_t *plain, const struct opts *o,
                      struct cell *ca, struct cell *cb, double *lo, double *hi)
{
	double slice = o->duration / o->rounds;
	uint64_t count = o->count / o->rounds + 1;
	struct cell warm = { 0 };
	int rc;

	*lo = *hi = 0;
	if ((rc = seal_check(a, len, src, sealed, plain)) < 0 ||
	    (b && (rc = seal_check(b, len, src, sealed, plain)) < 0))
		return rc;
	if ((rc = seal_slice(a, len, src, sealed, plain, o->duration / 10, count, &warm)) < 0 ||
	    (b && (rc = seal_slice(b, len, src, sealed, plain, o->duration / 10, count, &warm)) < 0))
		return rc;
	for (int k = 0; k < o->rounds; k++) {
		struct cell ra = { 0 }, rb = { 0 };
		double q;

		if ((rc = seal_slice(a, len, src, sealed, plain, slice, count, &ra)) < 0)
			return rc;
		ca->n += ra.n;
		ca->cpu += ra.cpu;
		ca->wall += ra.wall;
		ca->ran = 1;
		if (!b)
			continue;
		if ((rc = seal_slice(b, len, src, sealed, plain, slice, count, &rb)) < 0)
			return rc;
		cb->n += rb.n;
		cb->cpu += rb.cpu;
		cb->wall += rb.wall;
		cb->ran = 1;
		q = rate(&rb) > 0 ? rate(&ra) / rate(&rb) : 0;
		if (k == 0 || q < *lo)
			*lo = q;
		if (k == 0 || q > *hi)
			*hi = q;
	}
	if ((rc = seal_check(a, len, src, sealed, plain)) < 0 ||
	    (b && (rc = seal_check(b, len, src, sealed, plain)) < 0))
		return rc;
	return CHAT_OK;
}

static void print_seal(const char *kind, const char *name, size_t len, const struct cell *c)
{
	double r = rate(c);

	printf("RESULT bench=seal-open kind=%s name=%s size=%zu n=%" PRIu64 " cpu_s=%.3f wall_s=%.3f "
	       "cpu_pct=%.1f per_s=%.0f mb_per_s=%.1f ns_per_msg=%.0f\n", kind, name, len, c->n,
	       c->cpu, c->wall, cpu_pct(c), r, r * (double)len / 1e6, r > 0 ? 1e9 / r : 0);
	fflush(stdout);
}

/* A raw primitive's sealer on fresh keys; free its ctx. */
static int raw_sealer(const struct raw_prim *p, size_t len, struct sealer *s)
{
	*s = (struct sealer){ .raw = p, .ctx = calloc(1, p->ctx_size), .cap = len + p->overhead };
	if (!s->ctx)
		return CHAT_ERR_NOMEM;
	p->init(s->ctx);
	return CHAT_OK;
}

static void raw_sealer_free(struct sealer *s)
{
	if (s->ctx)
		explicit_bzero(s->ctx, s->raw->ctx_size);
	free(s->ctx);
	s->ctx = NULL;
}

/* A primitive whose suite is not loaded, alone. */
static int bench_raw_alone(const struct raw_prim *p, size_t len, const uint8_t *src,
                           uint8_t *sealed, uint8_t *plain, const struct opts *o, struct cell *c)
{
	struct sealer s;
	double lo, hi;
	int rc = raw_sealer(p, len, &s);

	if (rc == CHAT_OK)
		rc = seal_cells(&s, NULL, len, src, sealed, plain, o, c, NULL, &lo, &hi);
	raw_sealer_free(&s);
	if (rc == CHAT_OK)
		print_seal("raw", p->name, len, c);
	return rc;
}

static void bench_suite(struct suite *t, const uint8_t *src, uint8_t *sealed, uint8_t *plain,
                        const struct opts *o)
{
	uint8_t *buf[2] = { malloc(HS_CAP), malloc(HS_CAP) };
	struct sealer s = { .t = t };
	char flags[128];
	int rc, msgs;
	size_t bytes;

	chat_plugin_flags_text(t->flags, sizeof(flags), flags);
	fprintf(stderr, "  %-12s [%s]\n", t->name, flags);
	if (!buf[0] || !buf[1]) {
		t->failed = "out of memory";
		goto out;
	}
	if (t->flags & CHAT_FLAG_IDENTITY) {
		if (!CHAT_CIPHER_HAS(t->ops, identity_keygen) || make_ids(t) < 0) {
			t->failed = "identity_keygen failed";
			goto out;
		}
	}
	rc = bench_handshakes(t, o);
	if (rc < 0) {
		fprintf(stderr, "%s: handshake: %s\n", t->name, chat_strerror(rc));
		t->failed = "handshake failed";
		goto out;
	}
	printf("RESULT bench=handshake kind=suite name=%s n=%" PRIu64 " cpu_s=%.3f wall_s=%.3f "
	       "cpu_pct=%.1f per_s=%.1f us_per_hs=%.0f msgs=%d bytes=%zu keygen_ms=%.1f\n", t->name,
	       t->hs.n, t->hs.cpu, t->hs.wall, cpu_pct(&t->hs), rate(&t->hs),
	       rate(&t->hs) > 0 ? 1e6 / rate(&t->hs) : 0, t->hs_msgs, t->hs_bytes, t->keygen_ms);
	fflush(stdout);

	for (size_t k = 0; k < N_SIZES; k++) {
		struct sealer raw = { 0 };

		/* A fresh pair per size, so each starts at message 0. */
		rc = pair_new(t, buf, &s.i, &s.r, &msgs, &bytes);
		if (rc == CHAT_OK && t->raw)
			rc = raw_sealer(t->raw, sizes[k], &raw);
		if (rc == CHAT_OK) {
			s.cap = t->ops->sealed_size(s.i, sizes[k]);
			if (s.cap == 0 || s.cap > SEALED_CAP)
				rc = CHAT_ERR_TOO_BIG;
			else
				rc = seal_cells(&s, t->raw ? &raw : NULL, sizes[k], src, sealed, plain, o,
				                &t->seal[k], &t->raw_seal[k], &t->lo[k], &t->hi[k]);
		}
		t->ops->session_free(s.i);
		t->ops->session_free(s.r);
		s.i = s.r = NULL;
		raw_sealer_free(&raw);
		if (rc < 0) {
			fprintf(stderr, "%s: seal+open of %zu bytes: %s\n", t->name, sizes[k],
			        chat_strerror(rc));
			t->failed = "seal+open failed";
			goto out;
		}
		print_seal("suite", t->name, sizes[k], &t->seal[k]);
		if (!t->raw)
			continue;
		print_seal("raw", t->raw->name, sizes[k], &t->raw_seal[k]);
		printf("RESULT bench=ratio suite=%s raw=%s size=%zu ratio=%.3f round_lo=%.3f "
		       "round_hi=%.3f\n", t->name, t->raw->name, sizes[k], ratio_at(t, k), t->lo[k],
		       t->hi[k]);
	}
out:
	if (t->ids) {
		explicit_bzero(t->ids, 2 * sizeof(*t->ids));
		free(t->ids);
		t->ids = NULL;
	}
	free(buf[0]);
	free(buf[1]);
}

/* --- Output ------------------------------------------------------------------- */

static void print_tables(struct suite *st, size_t n, struct cell raw_alone[N_RAW][N_SIZES])
{
	printf("\n### Cipher suites: handshakes per second (in-process, both ends)\n\n");
	printf("| suite | flags | handshakes/s | us per handshake | messages | bytes | cpu %% | "
	       "identity keygen, 2 pairs (ms) |\n");
	printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
	for (size_t k = 0; k < n; k++) {
		const struct suite *t = &st[k];
		char flags[128], kg[32] = "-";

		chat_plugin_flags_text(t->flags, sizeof(flags), flags);
		if (t->flags & CHAT_FLAG_IDENTITY)
			snprintf(kg, sizeof(kg), "%.1f", t->keygen_ms);
		if (!t->hs.ran) {
			printf("| %s | %s | %s | | | | | %s |\n", t->name, flags,
			       t->failed ? t->failed : "-", kg);
			continue;
		}
		printf("| %s | %s | %.1f | %.0f | %d | %zu | %.0f | %s |\n", t->name, flags,
		       rate(&t->hs), 1e6 / rate(&t->hs), t->hs_msgs, t->hs_bytes, cpu_pct(&t->hs), kg);
	}

	printf("\n### Cipher suites vs. their raw Nettle primitive: seal+open\n\n");
	printf("| suite | size (B) | suite msgs/s | suite MB/s | suite us per msg | raw primitive | "
	       "raw MB/s | raw us per msg | suite/raw (rounds: lowest-highest) | cpu %% suite / raw |\n");
	printf("|---|---:|---:|---:|---:|---|---:|---:|---:|---|\n");
	for (size_t k = 0; k < n; k++) {
		const struct suite *t = &st[k];

		for (size_t j = 0; j < N_SIZES; j++) {
			const struct cell *c = &t->seal[j], *rc = &t->raw_seal[j];
			double r = rate(c), rr = rate(rc);

			if (!c->ran) {
				printf("| %s | %zu | %s | | | | | | | |\n", t->name, sizes[j],
				       t->failed ? t->failed : "-");
				continue;
			}
			printf("| %s | %zu | %.0f | %.1f | %.2f | ", t->name, sizes[j], r,
			       r * (double)sizes[j] / 1e6, 1e6 / r);
			if (rc->ran)
				printf("%s | %.1f | %.2f | %.2f (%.2f-%.2f) | %.0f / %.0f |\n",
				       t->raw->name, rr * (double)sizes[j] / 1e6, 1e6 / rr, ratio_at(t, j),
				       t->lo[j], t->hi[j], cpu_pct(c), cpu_pct(rc));
			else
				printf("none | | | | %.0f / - |\n", cpu_pct(c));
		}
	}
	for (size_t p = 0; p < N_RAW; p++)
		for (size_t j = 0; j < N_SIZES; j++) {
			const struct cell *rc = &raw_alone[p][j];

			if (rc->ran)
				printf("| (%s not loaded) | %zu | | | | %s | %.1f | %.2f | | - / %.0f |\n",
				       raw_prims[p].suite, sizes[j], raw_prims[p].name,
				       rate(rc) * (double)sizes[j] / 1e6, 1e6 / rate(rc), cpu_pct(rc));
		}

	printf("\n### Targets\n\n");
	for (size_t g = 0; g < sizeof(targets) / sizeof(targets[0]); g++) {
		const struct target *tg = &targets[g];
		const struct suite *t = NULL;
		size_t j = 0;

		for (size_t k = 0; k < n; k++)
			if (!strcmp(st[k].name, tg->suite))
				t = &st[k];
		while (j < N_SIZES && sizes[j] != tg->size)
			j++;
		printf("- %s seal+open >= %.1fx %s at %zu B: ", tg->suite, tg->min_ratio,
		       t && t->raw ? t->raw->name : "its raw primitive", tg->size);
		if (!t || j == N_SIZES || ratio_at(t, j) == 0)
			printf("**not measured**%s\n", t ? "" : " (the suite is not in this run)");
		else
			printf("%s (%.2fx)\n", ratio_at(t, j) >= tg->min_ratio ? "met" : "**missed**",
			       ratio_at(t, j));
	}
	/* The other suites with a raw primitive: no target, the same ratio. */
	for (size_t k = 0; k < n; k++) {
		const struct suite *t = &st[k];
		int has_target = 0;

		for (size_t g = 0; g < sizeof(targets) / sizeof(targets[0]); g++)
			has_target |= !strcmp(targets[g].suite, t->name);
		if (has_target || !t->raw || !t->raw_seal[N_SIZES - 1].ran)
			continue;
		printf("- %s seal+open / %s (no target): ", t->name, t->raw->name);
		for (size_t j = 0; j < N_SIZES; j++)
			printf("%s%.2fx at %zu B", j ? ", " : "", ratio_at(t, j), sizes[j]);
		printf("\n");
	}
	printf("\nRates are per second of the benchmark thread's CPU time; cpu %% is CPU time / "
	       "wall time\n(below ~95: the cell shared its core with other work).  MB = 10^6 bytes of "
	       "plaintext.\n");
}

/* --- Main ----------------------------------------------------------------------- */

static void on_scan_error(void *arg, const char *path, int err, const char *msg)
{
	int *failures = arg;

	(*failures)++;
	fprintf(stderr, "chat-bench-suites: cannot load %s (%s): %s\n", path, chat_strerror(err),
	        msg);
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: chat-bench-suites [--duration SEC] [--rounds R] [--count N] "
	        "[--plugin-dir DIR] [--suite NAME]\n\n"
	        "Handshakes per second and seal+open throughput at 100 B, 1 KiB and 60 KiB for every\n"
	        "cipher plugin in DIR (default: the build's), each next to the raw Nettle primitive\n"
	        "it uses.  Each cell runs SEC seconds (default 1) or N operations (default %d),\n"
	        "whichever ends first, after a warm-up of SEC / 10; a suite and its primitive take\n"
	        "turns in R slices each (default %d).  RESULT lines, then markdown tables.\n",
	        COUNT_DEFAULT, ROUNDS_DEFAULT);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "duration", required_argument, NULL, 'd' },
		{ "count", required_argument, NULL, 'n' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "plugin-dir", required_argument, NULL, 'p' },
		{ "suite", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int c;

	*o = (struct opts){ 1.0, ROUNDS_DEFAULT, COUNT_DEFAULT, CHAT_BENCH_PLUGIN_DIR, NULL };
	while ((c = getopt_long(argc, argv, "d:n:r:p:s:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			errno = 0;
			o->duration = strtod(optarg, &end);
			if (errno || *end || !(o->duration > 0 && o->duration <= 3600)) {
				fprintf(stderr, "chat-bench-suites: --duration: seconds in (0, 3600]\n");
				return 2;
			}
			break;
		case 'n':
			errno = 0;
			o->count = strtoull(optarg, &end, 10);
			if (errno || *end || o->count == 0 || optarg[0] == '-') {
				fprintf(stderr, "chat-bench-suites: --count: a positive integer\n");
				return 2;
			}
			break;
		case 'r':
			o->rounds = atoi(optarg);
			if (o->rounds < 1 || o->rounds > 100) {
				fprintf(stderr, "chat-bench-suites: --rounds: 1 to 100\n");
				return 2;
			}
			break;
		case 'p':
			o->plugin_dir = optarg;
			break;
		case 's':
			o->only = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct suite st[MAX_SUITES];
	static struct cell raw_alone[N_RAW][N_SIZES];
	struct chat_registry *reg = NULL;
	uint8_t *src = malloc(MSG_MAX), *sealed = malloc(SEALED_CAP), *plain = malloc(PLAIN_CAP);
	size_t n = 0;
	int failures = 0, bad = 0, rc;
	struct opts o;

	rc = parse_opts(argc, argv, &o);
	if (rc)
		return rc;
	if (!src || !sealed || !plain) {
		fprintf(stderr, "chat-bench-suites: out of memory\n");
		return 1;
	}
	for (size_t k = 0; k < MSG_MAX; k++)
		src[k] = (uint8_t)(k * 131 + (k >> 8));
	chat_log_set_level(CHAT_LOG_ERROR); /* the insecure suites' warnings are expected */

	rc = chat_registry_new(NULL, &reg);
	if (rc == CHAT_OK)
		rc = chat_registry_scan(reg, o.plugin_dir, on_scan_error, &failures);
	if (rc < 0 || failures) {
		fprintf(stderr, "chat-bench-suites: loading the plugins of %s: %s\n", o.plugin_dir,
		        rc < 0 ? chat_strerror(rc) : "some failed (above)");
		return 1;
	}
	for (size_t k = 0; k < chat_registry_count(reg); k++) {
		const struct chat_loaded *l = chat_registry_get(reg, k);
		struct suite *t;

		if (l->desc->kind != CHAT_PLUGIN_CIPHER || (o.only && strcmp(o.only, l->desc->name)))
			continue;
		if (n == MAX_SUITES) {
			fprintf(stderr, "chat-bench-suites: more than %d cipher suites\n", MAX_SUITES);
			return 1;
		}
		t = &st[n++];
		t->l = l;
		t->ops = l->desc->ops.cipher;
		t->name = l->desc->name;
		t->flags = l->desc->flags;
		for (size_t p = 0; p < N_RAW; p++)
			if (!strcmp(raw_prims[p].suite, t->name))
				t->raw = &raw_prims[p];
	}
	if (n == 0) {
		fprintf(stderr, "chat-bench-suites: no cipher suite%s%s in %s\n",
		        o.only ? " named " : "", o.only ? o.only : "", o.plugin_dir);
		return 1;
	}
	fprintf(stderr, "chat-bench-suites: %zu cipher suite(s) from %s, %.2f s per cell\n", n,
	        o.plugin_dir, o.duration);
	for (size_t k = 0; k < n; k++) {
		bench_suite(&st[k], src, sealed, plain, &o);
		bad |= st[k].failed != NULL;
	}
	/* Primitives whose suite is not here still show what they cost. */
	for (size_t p = 0; p < N_RAW && !o.only; p++) {
		int paired = 0;

		for (size_t k = 0; k < n; k++)
			paired |= st[k].raw == &raw_prims[p];
		for (size_t j = 0; j < N_SIZES && !paired; j++)
			bad |= bench_raw_alone(&raw_prims[p], sizes[j], src, sealed, plain, &o,
			                       &raw_alone[p][j]) < 0;
	}
	print_tables(st, n, raw_alone);
	chat_registry_free(reg);
	free(src);
	free(sealed);
	free(plain);
	return bad;
}
