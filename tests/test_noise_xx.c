/* The noise-xx cipher suite: the published Noise test vectors for exactly
 * Noise_XX_25519_ChaChaPoly_SHA256 (cacophony's, tests/vectors/, parsed with
 * jansson) driven through the suite's own ops with the vectors' ephemeral
 * keys fed by a test RNG; then the transport rules the vectors do not cover,
 * each recomputed or attacked here: REKEY at the documented nonces (checked
 * with an independent ChaChaPoly call), reordering within the window and
 * across a rekey, replays, too old and too far ahead nonces, the downgrade
 * (another prologue), a low-order ephemeral key, pinned identity keys,
 * NOSPACE consuming nothing, errors being final, saved sessions keeping the
 * window, and wiping on failure.  The vectors' non-empty handshake payloads
 * go through nxx_test_set_payload(), an internal entry point compiled in
 * here (the ABI's handshakes carry empty payloads). */
#include <stdarg.h>
#include <string.h>

#include <jansson.h>
#include <nettle/chacha-poly1305.h>
#include <nettle/curve25519.h>

#include "host.h"
#include "noise_xx.h"
#include "paths.h"
#include "testutils.h"

#define VECTORS CHAT_TEST_SOURCE_DIR "/tests/vectors/cacophony-xx.json"
#define BIND "offer:noise-xx,aescbc-hmac;accept:noise-xx;choice:noise-xx"

static const struct chat_cipher_ops *ops;

/* A test host: its RNG hands out a fixed byte string (the vector's
 * ephemeral key) and then a deterministic stream; config from a field. */
struct thost {
	struct chat_host h; /* first: the callbacks cast back */
	const uint8_t *fixed;
	size_t fixed_len;
	uint64_t rng;
	const char *rekey_every;
	char last_log[512];
};

static int t_random(const struct chat_host *h, size_t len, uint8_t *dst)
{
	struct thost *t = (struct thost *)h;

	for (size_t i = 0; i < len; i++) {
		if (t->fixed_len) {
			dst[i] = *t->fixed++;
			t->fixed_len--;
			continue;
		}
		t->rng = t->rng * 6364136223846793005ull + 1442695040888963407ull;
		dst[i] = (uint8_t)(t->rng >> 56);
	}
	return CHAT_OK;
}

static const char *t_config(const struct chat_host *h, const char *key)
{
	const struct thost *t = (const struct thost *)h;

	return strcmp(key, "rekey_every") == 0 ? t->rekey_every : NULL;
}

static void t_log(const struct chat_host *h, int level, const char *fmt, ...) CHAT_PRINTF(3, 4);

static void t_log(const struct chat_host *h, int level, const char *fmt, ...)
{
	struct thost *t = (struct thost *)h;
	va_list ap;

	(void)level;
	va_start(ap, fmt);
	vsnprintf(t->last_log, sizeof(t->last_log), fmt, ap);
	va_end(ap);
	if (getenv("TEST_VERBOSE"))
		fprintf(stderr, "  [log] %s\n", t->last_log);
}

static void thost_init(struct thost *t, uint64_t seed)
{
	memset(t, 0, sizeof(*t));
	chat_host_init(&t->h, NULL);
	t->h.random = t_random;
	t->h.config_get = t_config;
	t->h.log = t_log;
	t->rng = seed;
}

struct keypair {
	uint8_t priv[NXX_DH_LEN], pub[NXX_DH_LEN];
};

static void keypair_from(struct keypair *k, const uint8_t *priv)
{
	memcpy(k->priv, priv, NXX_DH_LEN);
	curve25519_mul_g(k->pub, k->priv);
}

static void keypair_new(struct thost *t, struct keypair *k)
{
	struct chat_buf a = { k->priv, sizeof(k->priv), 0 }, b = { k->pub, sizeof(k->pub), 0 };

	CHECK_EQ_INT(ops->identity_keygen(&t->h, &a, &b), CHAT_OK);
	CHECK(a.len == NXX_DH_LEN && b.len == NXX_DH_LEN);
}

static int new_session(struct thost *t, int role, const struct keypair *own,
                       const uint8_t *pinned, size_t bind_len, const uint8_t *bind, void **out)
{
	struct chat_cipher_params p = {
		.size = sizeof(p),
		.role = role,
		.local_id = role == CHAT_ROLE_INITIATOR ? "alice" : "bob",
		.peer_id = role == CHAT_ROLE_INITIATOR ? "bob" : "alice",
		.suite = NXX_SUITE,
		.binding = bind,
		.binding_len = bind_len,
		.identity_private = own->priv,
		.identity_private_len = NXX_DH_LEN,
		.identity_public = own->pub,
		.identity_public_len = NXX_DH_LEN,
		.peer_identity = pinned,
		.peer_identity_len = pinned ? NXX_DH_LEN : 0,
	};

	*out = NULL;
	return ops->session_new(&t->h, &p, out);
}

struct msg {
	uint8_t d[NXX_MSG_MAX + 64];
	size_t len;
};

static int hs(void *s, const struct msg *in, struct msg *out)
{
	struct chat_buf b = { out->d, sizeof(out->d), 0 };
	int rc = ops->handshake(s, in ? in->len : 0, &b, in ? in->d : NULL);

	out->len = b.len;
	return rc;
}

static int seal(void *s, size_t len, const uint8_t *src, struct msg *out)
{
	struct chat_buf b = { out->d, sizeof(out->d), 0 };
	int rc = ops->seal(s, len, &b, src);

	out->len = b.len;
	return rc;
}

static int open_(void *s, const struct msg *in, struct msg *out)
{
	struct chat_buf b = { out->d, sizeof(out->d), 0 };
	int rc = ops->open(s, in->len, &b, in->d);

	out->len = b.len;
	return rc;
}

/* ---------------------------------------------------------------------------
 * The cacophony vectors.
 */

static uint8_t *hex_field(json_t *obj, const char *key, size_t *len)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v)) {
		fprintf(stderr, "vector: no string '%s'\n", key);
		abort();
	}
	return test_hex(json_string_value(v), len);
}

static void run_vector(json_t *v, bool pinned)
{
	struct thost ti, tr;
	struct keypair si, sr;
	size_t n, ei_len, er_len, pi_len, pr_len, nmsg;
	uint8_t *ei, *er, *pi, *pr, *x;
	json_t *msgs = json_object_get(v, "messages");
	void *s[2] = { NULL, NULL }; /* 0 initiator, 1 responder */
	uint64_t sent[2] = { 0, 0 };
	struct msg in, out, pt;
	char fi[64], fr[64];
	int rc;

	CHECK(json_is_array(msgs));
	nmsg = json_array_size(msgs);
	CHECK(nmsg >= 3);
	x = hex_field(v, "init_static", &n);
	CHECK_EQ_INT(n, NXX_DH_LEN);
	keypair_from(&si, x);
	free(x);
	x = hex_field(v, "resp_static", &n);
	CHECK_EQ_INT(n, NXX_DH_LEN);
	keypair_from(&sr, x);
	free(x);
	ei = hex_field(v, "init_ephemeral", &ei_len);
	er = hex_field(v, "resp_ephemeral", &er_len);
	pi = hex_field(v, "init_prologue", &pi_len);
	pr = hex_field(v, "resp_prologue", &pr_len);
	CHECK(ei_len == NXX_DH_LEN && er_len == NXX_DH_LEN);

	/* The RNG of each end hands out exactly its ephemeral key first. */
	thost_init(&ti, 1);
	ti.fixed = ei;
	ti.fixed_len = ei_len;
	thost_init(&tr, 2);
	tr.fixed = er;
	tr.fixed_len = er_len;
	CHECK_EQ_INT(new_session(&ti, CHAT_ROLE_INITIATOR, &si, pinned ? sr.pub : NULL, pi_len, pi,
	                         &s[0]), CHAT_OK);
	CHECK_EQ_INT(new_session(&tr, CHAT_ROLE_RESPONDER, &sr, pinned ? si.pub : NULL, pr_len, pr,
	                         &s[1]), CHAT_OK);
	if (!s[0] || !s[1])
		goto out;

	/* Handshake: messages 0, 1, 2 from initiator, responder, initiator. */
	in.len = 0;
	for (size_t k = 0; k < 3; k++) {
		json_t *m = json_array_get(msgs, k);
		int me = (int)(k % 2);
		size_t pl_len, ct_len, got_len;
		uint8_t *pl = hex_field(m, "payload", &pl_len), *ct = hex_field(m, "ciphertext", &ct_len);
		const uint8_t *got;

		CHECK_EQ_INT(nxx_test_set_payload(s[me], pl_len, pl), CHAT_OK);
		rc = hs(s[me], k ? &in : NULL, &out);
		CHECK_EQ_INT(rc, k == 2 ? CHAT_HS_ESTABLISHED : CHAT_HS_CONTINUE);
		if (out.len != ct_len || memcmp(out.d, ct, ct_len)) {
			fprintf(stderr, "vector handshake message %zu differs (%zu bytes, expected %zu)\n",
			        k, out.len, ct_len);
			test_failures++;
		}
		if (k) { /* what this end read carried the previous message's payload */
			size_t prev_len;
			uint8_t *prev = hex_field(json_array_get(msgs, k - 1), "payload", &prev_len);

			got = nxx_test_last_payload(s[me], &got_len);
			CHECK(got_len == prev_len && (!got_len || !memcmp(got, prev, got_len)));
			free(prev);
		}
		if (k == 2) { /* the responder reads message 3 */
			struct msg none;

			CHECK_EQ_INT(hs(s[1], &out, &none), CHAT_HS_ESTABLISHED);
			CHECK_EQ_INT(none.len, 0);
			got = nxx_test_last_payload(s[1], &got_len);
			CHECK(got_len == pl_len && !memcmp(got, pl, got_len));
		}
		in = out;
		free(pl);
		free(ct);
	}

	/* Transport messages go on alternating: nonces count per direction. */
	for (size_t k = 3; k < nmsg; k++) {
		json_t *m = json_array_get(msgs, k);
		int me = (int)(k % 2);
		size_t pl_len, ct_len;
		uint8_t *pl = hex_field(m, "payload", &pl_len), *ct = hex_field(m, "ciphertext", &ct_len);
		uint64_t nonce = 0;

		CHECK_EQ_INT(seal(s[me], pl_len, pl, &out), CHAT_OK);
		for (int b = 7; b >= 0; b--)
			nonce = nonce << 8 | out.d[b];
		CHECK_EQ_INT(nonce, sent[me]);
		sent[me]++;
		if (out.len != NXX_NONCE_LEN + ct_len || memcmp(out.d + NXX_NONCE_LEN, ct, ct_len)) {
			fprintf(stderr, "vector transport message %zu differs\n", k);
			test_failures++;
		}
		CHECK_EQ_INT(open_(s[!me], &out, &pt), CHAT_OK);
		CHECK(pt.len == pl_len && !memcmp(pt.d, pl, pl_len));
		free(pl);
		free(ct);
	}
	/* Both ends hold the same handshake hash, and the vector's if it has
	 * one (cacophony's file has none; the snow and noise-c formats do). */
	CHECK_MEM(((struct nxx_session *)s[0])->h, ((struct nxx_session *)s[1])->h, NXX_HASH_LEN);
	if (json_object_get(v, "handshake_hash")) {
		uint8_t *hh = hex_field(v, "handshake_hash", &n);

		CHECK(n == NXX_HASH_LEN && !memcmp(hh, ((struct nxx_session *)s[0])->h, n));
		free(hh);
	}
	CHECK_EQ_INT(ops->fingerprint(s[0], sizeof(fi), fi), CHAT_OK);
	CHECK_EQ_INT(ops->fingerprint(s[1], sizeof(fr), fr), CHAT_OK);
	CHECK(!strcmp(fi, fr));
	{
		uint8_t key[64];
		struct chat_buf b = { key, sizeof(key), 0 };

		CHECK_EQ_INT(ops->peer_identity(s[0], &b), CHAT_OK);
		CHECK(b.len == NXX_DH_LEN && !memcmp(key, sr.pub, NXX_DH_LEN));
		b.len = 0;
		CHECK_EQ_INT(ops->peer_identity(s[1], &b), CHAT_OK);
		CHECK(b.len == NXX_DH_LEN && !memcmp(key, si.pub, NXX_DH_LEN));
	}
out:
	ops->session_free(s[0]);
	ops->session_free(s[1]);
	free(ei);
	free(er);
	free(pi);
	free(pr);
}

static void test_vectors(void)
{
	json_error_t err;
	json_t *root = json_load_file(VECTORS, 0, &err), *list;
	size_t found = 0;

	if (!root) {
		fprintf(stderr, "%s:%d: %s\n", VECTORS, err.line, err.text);
		test_failures++;
		return;
	}
	list = json_object_get(root, "vectors");
	CHECK(json_is_array(list));
	for (size_t k = 0; k < json_array_size(list); k++) {
		json_t *v = json_array_get(list, k);
		const char *name = json_string_value(json_object_get(v, "name"));

		if (!name || strcmp(name, NXX_PROTOCOL) != 0)
			continue;
		CHECK(json_object_get(v, "init_psk") == NULL); /* not a psk variant */
		run_vector(v, false);
		run_vector(v, true); /* pinning changes nothing on the wire */
		found++;
	}
	CHECK(found >= 1);
	printf("vectors: %zu %s vector(s) from %s: every handshake and transport message equal\n",
	       found, NXX_PROTOCOL, VECTORS);
	json_decref(root);
}

/* ---------------------------------------------------------------------------
 * Transport rules.
 */

struct pair {
	struct thost ti, tr;
	struct keypair ki, kr;
	void *i, *r;
};

static int pair_up(struct pair *p, const char *rekey_every, const char *bind_i,
                   const char *bind_r)
{
	struct msg m1, m2, m3, m4;

	thost_init(&p->ti, 11);
	thost_init(&p->tr, 22);
	p->ti.rekey_every = p->tr.rekey_every = rekey_every;
	keypair_new(&p->ti, &p->ki);
	keypair_new(&p->tr, &p->kr);
	p->i = p->r = NULL;
	if (new_session(&p->ti, CHAT_ROLE_INITIATOR, &p->ki, p->kr.pub, strlen(bind_i),
	                (const uint8_t *)bind_i, &p->i) != CHAT_OK ||
	    new_session(&p->tr, CHAT_ROLE_RESPONDER, &p->kr, p->ki.pub, strlen(bind_r),
	                (const uint8_t *)bind_r, &p->r) != CHAT_OK)
		return CHAT_ERR_FAILED;
	int rc = hs(p->i, NULL, &m1);
	if (rc < 0)
		return rc;
	rc = hs(p->r, &m1, &m2);
	if (rc < 0)
		return rc;
	rc = hs(p->i, &m2, &m3);
	if (rc < 0)
		return rc;
	rc = hs(p->r, &m3, &m4);
	return rc == CHAT_HS_ESTABLISHED ? CHAT_OK : rc < 0 ? rc : CHAT_ERR_STATE;
}

static void pair_free(struct pair *p)
{
	ops->session_free(p->i);
	ops->session_free(p->r);
	p->i = p->r = NULL;
}

/* The key that message n should use, recomputed: REKEY = the first 32 bytes
 * of ChaChaPoly(k, nonce 2^64-1, no ad, 32 zero bytes), n / every times. */
static void expected_key(const uint8_t k0[NXX_KEY_LEN], uint64_t times, uint8_t out[NXX_KEY_LEN])
{
	uint8_t zeros[32] = { 0 }, ct[48], nonce[12] = { 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
	                                                  0xff, 0xff, 0xff, 0xff };
	struct chacha_poly1305_ctx c;

	memcpy(out, k0, NXX_KEY_LEN);
	for (uint64_t t = 0; t < times; t++) {
		chacha_poly1305_set_key(&c, out);
		chacha_poly1305_set_nonce(&c, nonce);
		chacha_poly1305_encrypt(&c, 32, ct, zeros);
		chacha_poly1305_digest(&c, 16, ct + 32);
		memcpy(out, ct, NXX_KEY_LEN);
	}
}

/* Decrypt message m with key k independently: nonce 0^32 || LE64(n). */
static int independent_open(const uint8_t k[NXX_KEY_LEN], const struct msg *m, size_t *pt_len,
                            uint8_t *pt)
{
	uint8_t nonce[12] = { 0 }, tag[16];
	struct chacha_poly1305_ctx c;
	size_t len = m->len - NXX_NONCE_LEN - NXX_TAG_LEN;

	memcpy(nonce + 4, m->d, 8);
	chacha_poly1305_set_key(&c, k);
	chacha_poly1305_set_nonce(&c, nonce);
	chacha_poly1305_decrypt(&c, len, pt, m->d + NXX_NONCE_LEN);
	chacha_poly1305_digest(&c, 16, tag);
	*pt_len = len;
	return memcmp(tag, m->d + NXX_NONCE_LEN + len, 16) == 0;
}

static void test_rekey(void)
{
	struct pair p;
	uint8_t k0[NXX_KEY_LEN], k[NXX_KEY_LEN], text[40], pt[64];
	size_t pt_len, good = 0;
	struct msg m, out;

	CHECK_EQ_INT(pair_up(&p, "64", BIND, BIND), CHAT_OK);
	memcpy(k0, ((struct nxx_session *)p.i)->tx_key, NXX_KEY_LEN);
	for (uint64_t n = 0; n < 200; n++) {
		memset(text, (int)n, sizeof(text));
		CHECK_EQ_INT(seal(p.i, sizeof(text), text, &m), CHAT_OK);
		expected_key(k0, n / 64, k);
		if (independent_open(k, &m, &pt_len, pt) && pt_len == sizeof(text) &&
		    !memcmp(pt, text, sizeof(text)))
			good++;
		CHECK_EQ_INT(open_(p.r, &m, &out), CHAT_OK);
	}
	CHECK_EQ_INT(good, 200);
	/* The old keys are gone from the receiver: epochs 3 and 2 kept only. */
	expected_key(k0, 3, k);
	CHECK_MEM(((struct nxx_session *)p.r)->rx_key, k, NXX_KEY_LEN);
	expected_key(k0, 2, k);
	CHECK_MEM(((struct nxx_session *)p.r)->rx_prev, k, NXX_KEY_LEN);
	printf("rekey: 200 messages with rekey_every 64, each under REKEY^(n/64) of the split key\n");
	pair_free(&p);

	/* A bad setting is refused, not silently defaulted. */
	{
		struct thost t;
		struct keypair kp;
		void *s;

		thost_init(&t, 5);
		keypair_new(&t, &kp);
		t.rekey_every = "63";
		CHECK_EQ_INT(new_session(&t, CHAT_ROLE_INITIATOR, &kp, NULL, 0, NULL, &s),
		             CHAT_ERR_CONFIG);
		t.rekey_every = "1000x";
		CHECK_EQ_INT(new_session(&t, CHAT_ROLE_INITIATOR, &kp, NULL, 0, NULL, &s),
		             CHAT_ERR_CONFIG);
	}
}

static void test_window(void)
{
	struct pair p;
	struct msg *m = calloc(140, sizeof(*m)), out, forged;
	uint8_t text[16];

	if (!m)
		abort();
	CHECK_EQ_INT(pair_up(&p, "64", BIND, BIND), CHAT_OK);
	for (size_t n = 0; n < 140; n++) {
		memset(text, (int)n, sizeof(text));
		CHECK_EQ_INT(seal(p.i, sizeof(text), text, &m[n]), CHAT_OK);
	}
	/* Reordered within the window: all accepted, each once. */
	static const size_t order[] = { 4, 2, 0, 1, 3 };
	for (size_t k = 0; k < 5; k++) {
		CHECK_EQ_INT(open_(p.r, &m[order[k]], &out), CHAT_OK);
		CHECK(out.len == 16 && out.d[0] == (uint8_t)order[k]);
	}
	for (size_t k = 0; k < 5; k++)
		CHECK_EQ_INT(open_(p.r, &m[k], &out), CHAT_ERR_REPLAY);
	/* Across a rekey: 66 (epoch 1) first, then 62, 63 (epoch 0), 64, 65. */
	CHECK_EQ_INT(open_(p.r, &m[66], &out), CHAT_OK);
	CHECK_EQ_INT(open_(p.r, &m[62], &out), CHAT_OK);
	CHECK_EQ_INT(open_(p.r, &m[63], &out), CHAT_OK);
	CHECK_EQ_INT(open_(p.r, &m[64], &out), CHAT_OK);
	CHECK_EQ_INT(open_(p.r, &m[65], &out), CHAT_OK);
	CHECK_EQ_INT(open_(p.r, &m[66], &out), CHAT_ERR_REPLAY);
	/* 5 is 61 behind 66: still in the window; 2 is gone (replayed anyway). */
	CHECK_EQ_INT(open_(p.r, &m[5], &out), CHAT_OK);
	/* Jump to 130: now 66 is 64 behind, out of the window, 67 is in. */
	CHECK_EQ_INT(open_(p.r, &m[130], &out), CHAT_OK);
	CHECK_EQ_INT(open_(p.r, &m[66], &out), CHAT_ERR_REPLAY);
	CHECK_EQ_INT(open_(p.r, &m[60], &out), CHAT_ERR_REPLAY);
	CHECK_EQ_INT(open_(p.r, &m[67], &out), CHAT_OK);
	CHECK(out.len == 16 && out.d[0] == 67);

	/* Forgeries: another nonce under the same ciphertext, a nonce far ahead,
	 * the reserved nonce: rejected, nothing changes, 131 still opens. */
	forged = m[131];
	forged.d[0] ^= 6; /* nonce 133 */
	CHECK_EQ_INT(open_(p.r, &forged, &out), CHAT_ERR_INTEGRITY);
	CHECK_EQ_INT(out.len, 0);
	forged = m[131];
	memset(forged.d, 0xff, 8);
	CHECK_EQ_INT(open_(p.r, &forged, &out), CHAT_ERR_MALFORMED);
	forged.d[0] = 0xfe;
	CHECK_EQ_INT(open_(p.r, &forged, &out), CHAT_ERR_REPLAY); /* too far ahead: no rekey loop */
	forged = m[131];
	forged.d[1] ^= 0x01; /* 131 + 256: 4 epochs ahead: computed, then refused by the tag */
	CHECK_EQ_INT(open_(p.r, &forged, &out), CHAT_ERR_INTEGRITY);
	CHECK_EQ_INT(((struct nxx_session *)p.r)->rx_epoch, 2);
	CHECK_EQ_INT(open_(p.r, &m[131], &out), CHAT_OK);
	CHECK(out.len == 16 && out.d[0] == 131);
	printf("window: reorder within 64 nonces and across a rekey accepted once; replays, "
	       "too old, too far ahead and forged nonces refused\n");

	/* A saved session keeps the window: 131 is still a replay, 132 opens,
	 * 69 (63 behind, in the previous key epoch, never seen) opens once. */
	{
		uint8_t blob[NXX_SAVE_LEN + 8];
		struct chat_buf b = { blob, sizeof(blob), 0 };
		struct chat_cipher_params pr = {
			.size = sizeof(pr), .role = CHAT_ROLE_RESPONDER, .local_id = "bob",
			.peer_id = "alice", .suite = NXX_SUITE, .binding = (const uint8_t *)BIND,
			.binding_len = strlen(BIND), .identity_private = p.kr.priv,
			.identity_private_len = NXX_DH_LEN, .identity_public = p.kr.pub,
			.identity_public_len = NXX_DH_LEN, .peer_identity = p.ki.pub,
			.peer_identity_len = NXX_DH_LEN,
		};
		void *r2 = NULL;

		CHECK_EQ_INT(ops->session_save(p.r, &b), CHAT_OK);
		CHECK_EQ_INT(ops->session_load(&p.tr.h, &pr, b.len, blob, &r2), CHAT_OK);
		if (r2) {
			CHECK_EQ_INT(open_(r2, &m[131], &out), CHAT_ERR_REPLAY);
			CHECK_EQ_INT(open_(r2, &m[132], &out), CHAT_OK);
			CHECK_EQ_INT(open_(r2, &m[69], &out), CHAT_OK);
			CHECK_EQ_INT(open_(r2, &m[69], &out), CHAT_ERR_REPLAY);
			CHECK_EQ_INT(open_(r2, &m[68], &out), CHAT_ERR_REPLAY); /* 64 behind */
			ops->session_free(r2);
		}
		/* Loaded with another pinned peer key: refused. */
		pr.peer_identity = p.kr.pub;
		r2 = NULL;
		CHECK_EQ_INT(ops->session_load(&p.tr.h, &pr, b.len, blob, &r2), CHAT_ERR_MALFORMED);
		CHECK(r2 == NULL);
		/* First contact (nothing pinned yet) loads. */
		pr.peer_identity = NULL;
		pr.peer_identity_len = 0;
		CHECK_EQ_INT(ops->session_load(&p.tr.h, &pr, b.len, blob, &r2), CHAT_OK);
		ops->session_free(r2);
	}
	pair_free(&p);
	free(m);
}

static void test_handshake_rules(void)
{
	struct pair p;
	struct msg m1, m2, m3, none;
	struct chat_buf b;
	uint8_t small[8];
	int rc;

	/* Downgrade: the ends saw different negotiations (prologues). */
	rc = pair_up(&p, NULL, BIND, "offer:noise-xx,aescbc-hmac;accept:aescbc-hmac;choice:noise-xx");
	CHECK_EQ_INT(rc, CHAT_ERR_AUTH);
	pair_free(&p);

	/* Seal/open before established: STATE, then the session is failed. */
	CHECK_EQ_INT(pair_up(&p, NULL, BIND, BIND), CHAT_OK);
	pair_free(&p);
	thost_init(&p.ti, 3);
	keypair_new(&p.ti, &p.ki);
	keypair_new(&p.ti, &p.kr);
	CHECK_EQ_INT(new_session(&p.ti, CHAT_ROLE_INITIATOR, &p.ki, NULL, 0, NULL, &p.i), CHAT_OK);
	CHECK_EQ_INT(seal(p.i, 3, (const uint8_t *)"abc", &m1), CHAT_ERR_STATE);
	CHECK_EQ_INT(hs(p.i, NULL, &m1), CHAT_ERR_FAILED);
	ops->session_free(p.i);

	/* NOSPACE consumes nothing; then the same step succeeds. */
	thost_init(&p.ti, 4);
	thost_init(&p.tr, 5);
	keypair_new(&p.ti, &p.ki);
	keypair_new(&p.tr, &p.kr);
	CHECK_EQ_INT(new_session(&p.ti, CHAT_ROLE_INITIATOR, &p.ki, NULL, 0, NULL, &p.i), CHAT_OK);
	CHECK_EQ_INT(new_session(&p.tr, CHAT_ROLE_RESPONDER, &p.kr, NULL, 0, NULL, &p.r), CHAT_OK);
	b = (struct chat_buf){ small, sizeof(small), 0 };
	CHECK_EQ_INT(ops->handshake(p.i, 0, &b, NULL), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(hs(p.i, NULL, &m1), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(m1.len, NXX_DH_LEN);
	b = (struct chat_buf){ small, sizeof(small), 0 };
	CHECK_EQ_INT(ops->handshake(p.r, m1.len, &b, m1.d), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(hs(p.r, &m1, &m2), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(m2.len, 96);
	b = (struct chat_buf){ small, sizeof(small), 0 };
	CHECK_EQ_INT(ops->handshake(p.i, m2.len, &b, m2.d), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(hs(p.i, &m2, &m3), CHAT_HS_ESTABLISHED);
	CHECK_EQ_INT(m3.len, 64);
	/* A changed message 3: AUTH, final, keys wiped at once. */
	m3.d[40] ^= 0x10;
	CHECK_EQ_INT(hs(p.r, &m3, &none), CHAT_ERR_AUTH);
	CHECK_EQ_INT(hs(p.r, &m3, &none), CHAT_ERR_FAILED);
	{
		static const uint8_t zero[NXX_KEY_LEN];
		struct nxx_session *s = p.r;

		CHECK_MEM(s->rx_key, zero, NXX_KEY_LEN);
		CHECK_MEM(s->hs.ck, zero, NXX_HASH_LEN);
		CHECK_MEM(s->hs.e_priv, zero, NXX_DH_LEN);
		CHECK_MEM(s->s_priv, zero, NXX_DH_LEN);
	}
	/* The established initiator: no more handshake messages. */
	CHECK_EQ_INT(hs(p.i, &m2, &none), CHAT_ERR_STATE);
	pair_free(&p);

	/* A low-order (all-zero) ephemeral key: PEER_VALUE at the responder. */
	thost_init(&p.tr, 6);
	keypair_new(&p.tr, &p.kr);
	CHECK_EQ_INT(new_session(&p.tr, CHAT_ROLE_RESPONDER, &p.kr, NULL, 0, NULL, &p.r), CHAT_OK);
	memset(m1.d, 0, NXX_DH_LEN);
	m1.len = NXX_DH_LEN;
	CHECK_EQ_INT(hs(p.r, &m1, &m2), CHAT_ERR_PEER_VALUE);
	CHECK_EQ_INT(m2.len, 0);
	ops->session_free(p.r);
	/* Too short: MALFORMED, final. */
	thost_init(&p.tr, 7);
	keypair_new(&p.tr, &p.kr);
	CHECK_EQ_INT(new_session(&p.tr, CHAT_ROLE_RESPONDER, &p.kr, NULL, 0, NULL, &p.r), CHAT_OK);
	m1.len = NXX_DH_LEN - 1;
	CHECK_EQ_INT(hs(p.r, &m1, &m2), CHAT_ERR_MALFORMED);
	ops->session_free(p.r);

	/* No identity pair, a pair that does not match, a pin of another size. */
	{
		struct thost t;
		struct keypair k1, k2;
		struct chat_cipher_params pp = {
			.size = sizeof(pp), .role = CHAT_ROLE_INITIATOR, .local_id = "alice",
			.peer_id = "bob",
		};
		void *s = NULL;

		thost_init(&t, 8);
		keypair_new(&t, &k1);
		keypair_new(&t, &k2);
		CHECK_EQ_INT(ops->session_new(&t.h, &pp, &s), CHAT_ERR_INVALID);
		pp.identity_private = k1.priv;
		pp.identity_private_len = NXX_DH_LEN;
		pp.identity_public = k2.pub;
		pp.identity_public_len = NXX_DH_LEN;
		CHECK_EQ_INT(ops->session_new(&t.h, &pp, &s), CHAT_ERR_INVALID);
		pp.identity_public = k1.pub;
		pp.peer_identity = k2.pub;
		pp.peer_identity_len = 31;
		CHECK_EQ_INT(ops->session_new(&t.h, &pp, &s), CHAT_ERR_INVALID);
		pp.peer_identity_len = NXX_DH_LEN;
		CHECK_EQ_INT(ops->session_new(&t.h, &pp, &s), CHAT_OK);
		ops->session_free(s);
		/* identity_keygen clamps per RFC 7748. */
		CHECK((k1.priv[0] & 7) == 0 && (k1.priv[31] & 0x80) == 0 && (k1.priv[31] & 0x40));
	}
	printf("handshake: downgrade, changed message, low-order key, short message, bad "
	       "identity params refused; NOSPACE consumes nothing; errors final, keys wiped\n");
}

#include <time.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Not a pass/fail check: what a handshake and a MiB of messages cost. */
static void measure(void)
{
	const int hands = 200, msgs = 4096;
	static uint8_t text[4096];
	struct msg m, out;
	struct pair p;
	double t0, t1, t2;

	t0 = now_s();
	for (int k = 0; k < hands; k++) {
		CHECK_EQ_INT(pair_up(&p, NULL, BIND, BIND), CHAT_OK);
		pair_free(&p);
	}
	t1 = now_s();
	CHECK_EQ_INT(pair_up(&p, NULL, BIND, BIND), CHAT_OK);
	for (int k = 0; k < msgs; k++) {
		CHECK_EQ_INT(seal(p.i, sizeof(text), text, &m), CHAT_OK);
		CHECK_EQ_INT(open_(p.r, &m, &out), CHAT_OK);
	}
	t2 = now_s();
	pair_free(&p);
	printf("measured: %.0f handshakes/s (both ends, each run also making both identity key pairs), seal+open "
	       "%.0f MiB/s in 4 KiB messages (rekey every 1000)\n",
	       hands / (t1 - t0), msgs * 4096.0 / (1 << 20) / (t2 - t1));
}

int main(void)
{
	const struct chat_plugin *d = chat_plugin_entry();

	ops = d->ops.cipher;
	CHECK(d->flags & CHAT_FLAG_IDENTITY);
	CHECK(!(d->flags & CHAT_FLAG_NEEDS_SECRET));
	test_vectors();
	test_rekey();
	test_window();
	test_handshake_rules();
	measure();
	return test_done("test_noise_xx");
}
