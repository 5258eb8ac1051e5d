/* The aescbc-hmac cipher suite: known-answer vectors for its primitives, the
 * documented wire format and key schedule recomputed independently, a whole
 * two-party handshake in one process (fixed RNG, fake clock), and every
 * attack the suite claims to stop, each with its own error code. */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <string.h>

#include <jansson.h>
#include <nettle/aes.h>
#include <nettle/base64.h>
#include <nettle/cbc.h>
#include <nettle/hkdf.h>
#include <nettle/hmac.h>
#include <nettle/pbkdf2.h>
#include <zlib.h>

#include "aescbc_hmac.h"
#include "host.h"
#include "loader.h"
#include "paths.h"
#include "testutils.h"

#define T0 1700000000000LL /* fake wall clock, ms */
#define BIND "offer:aescbc-hmac,xor-demo;accept:aescbc-hmac,rc4dh;choice:aescbc-hmac"
#define PW "correct horse battery staple"

static const struct chat_cipher_ops *ops;

/* ---------------------------------------------------------------------------
 * A test host: deterministic RNG, fake clock, config from fields, captured log.
 */
struct thost {
	struct chat_host h; /* first: the callbacks cast back */
	uint64_t rng;
	int64_t now;
	bool rng_fail;
	const char *iterations, *salt, *window; /* NULL: config_get returns NULL */
	char last_log[512];
	unsigned logs;
};

static int t_random(const struct chat_host *h, size_t len, uint8_t *dst)
{
	struct thost *t = (struct thost *)h;

	if (t->rng_fail)
		return CHAT_ERR_RANDOM;
	for (size_t i = 0; i < len; i++) {
		t->rng = t->rng * 6364136223846793005ull + 1442695040888963407ull;
		dst[i] = (uint8_t)(t->rng >> 56);
	}
	return CHAT_OK;
}

static int64_t t_clock(const struct chat_host *h)
{
	return ((const struct thost *)h)->now;
}

static const char *t_config(const struct chat_host *h, const char *key)
{
	const struct thost *t = (const struct thost *)h;

	if (strcmp(key, "iterations") == 0)
		return t->iterations;
	if (strcmp(key, "salt") == 0)
		return t->salt;
	if (strcmp(key, "window") == 0)
		return t->window;
	return NULL;
}

static void t_log(const struct chat_host *h, int level, const char *fmt, ...)
	CHAT_PRINTF(3, 4);

static void t_log(const struct chat_host *h, int level, const char *fmt, ...)
{
	struct thost *t = (struct thost *)h;
	va_list ap;

	(void)level;
	va_start(ap, fmt);
	vsnprintf(t->last_log, sizeof(t->last_log), fmt, ap);
	va_end(ap);
	t->logs++;
	if (getenv("TEST_VERBOSE"))
		fprintf(stderr, "  [log] %s\n", t->last_log);
}

static void thost_init(struct thost *t, uint64_t seed)
{
	memset(t, 0, sizeof(*t));
	chat_host_init(&t->h, NULL);
	t->h.random = t_random;
	t->h.unix_ms = t_clock;
	t->h.config_get = t_config;
	t->h.log = t_log;
	t->rng = seed;
	t->now = T0;
	t->iterations = "1000"; /* the minimum: keeps the test fast */
	t->salt = ACH_SALT_DEFAULT;
	t->window = "25";
}

static int new_session(struct thost *t, int role, const char *local, const char *peer,
                       const char *pw, const char *binding, void **out)
{
	struct chat_cipher_params p = {
		.size = sizeof(p),
		.role = role,
		.local_id = local,
		.peer_id = peer,
		.suite = ACH_SUITE,
		.secret = (const uint8_t *)pw,
		.secret_len = pw ? strlen(pw) : 0,
		.binding = (const uint8_t *)binding,
		.binding_len = binding ? strlen(binding) : 0,
	};

	return ops->session_new(&t->h, &p, out);
}

struct pdu {
	uint8_t d[8192];
	size_t len;
};

/* One handshake step; in NULL means the initiator's first call. */
static int hs_with(const struct chat_cipher_ops *o, void *s, const struct pdu *in,
                   struct pdu *out)
{
	struct chat_buf b = { out->d, sizeof(out->d), 0 };
	int rc = o->handshake(s, in ? in->len : 0, &b, in ? in->d : NULL);

	out->len = b.len;
	return rc;
}

static int hs(void *s, const struct pdu *in, struct pdu *out)
{
	return hs_with(ops, s, in, out);
}

static int seal(void *s, const char *text, struct pdu *out)
{
	struct chat_buf b = { out->d, sizeof(out->d), 0 };
	int rc = ops->seal(s, strlen(text), &b, (const uint8_t *)text);

	out->len = b.len;
	return rc;
}

/* Opens into a sentinel-filled buffer and checks that a rejected message
 * wrote nothing at all. */
static int open_text(void *s, const struct pdu *in, char *text, size_t cap)
{
	struct chat_buf b = { (uint8_t *)text, cap - 1, 0 };
	int rc;

	memset(text, 0xa5, cap);
	rc = ops->open(s, in->len, &b, in->d);
	if (rc < 0) {
		CHECK_EQ_INT(b.len, 0);
		for (size_t i = 0; i < cap; i++)
			if ((uint8_t)text[i] != 0xa5) {
				CHECK(!"open wrote to dst on failure");
				break;
			}
		text[0] = '\0';
	} else {
		text[b.len] = '\0';
	}
	return rc;
}

struct pair {
	struct thost ti, tr;
	void *i, *r; /* alice initiates, bob responds */
};

struct transcript {
	struct pdu hello, challenge, response, ack;
};

static void pair_new(struct pair *p, const char *pw_i, const char *pw_r, const char *bind_i,
                     const char *bind_r)
{
	thost_init(&p->ti, 0x1111);
	thost_init(&p->tr, 0x2222);
	p->i = p->r = NULL;
	CHECK_EQ_INT(new_session(&p->ti, CHAT_ROLE_INITIATOR, "alice", "bob", pw_i, bind_i, &p->i),
	             CHAT_OK);
	CHECK_EQ_INT(new_session(&p->tr, CHAT_ROLE_RESPONDER, "bob", "alice", pw_r, bind_r, &p->r),
	             CHAT_OK);
}

static void pair_free(struct pair *p)
{
	ops->session_free(p->i);
	ops->session_free(p->r);
	p->i = p->r = NULL;
}

static void handshake_ok(struct pair *p, struct transcript *tr)
{
	struct pdu none;

	CHECK_EQ_INT(hs(p->i, NULL, &tr->hello), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p->r, &tr->hello, &tr->challenge), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p->i, &tr->challenge, &tr->response), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p->r, &tr->response, &tr->ack), CHAT_HS_ESTABLISHED);
	CHECK_EQ_INT(hs(p->i, &tr->ack, &none), CHAT_HS_ESTABLISHED);
	CHECK_EQ_INT(none.len, 0);
}

static void pair_established(struct pair *p)
{
	struct transcript tr;

	pair_new(p, PW, PW, BIND, BIND);
	handshake_ok(p, &tr);
}

/* A message from one side to the other arrives intact. */
static void delivers(void *from, void *to, const char *text)
{
	struct pdu m;
	char out[8192];

	CHECK_EQ_INT(seal(from, text, &m), CHAT_OK);
	CHECK_EQ_INT(open_text(to, &m, out, sizeof(out)), CHAT_OK);
	CHECK(strcmp(out, text) == 0);
}

/* --- Independent implementations of what the doc promises ---------------- */

/* CRC-32 over msg_type "\n" timestamp "\n" seq "\n" body, body as
 * json_dumps(COMPACT | SORT_KEYS | ENCODE_ANY). */
static uint32_t doc_crc(const char *mt, long long ts, long long seq, const json_t *body)
{
	char head[128];
	char *b = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	uLong c;

	snprintf(head, sizeof(head), "%s\n%lld\n%lld\n", mt, ts, seq);
	c = crc32(0L, Z_NULL, 0);
	c = crc32(c, (const Bytef *)head, (uInt)strlen(head));
	c = crc32(c, (const Bytef *)b, (uInt)strlen(b));
	free(b);
	return (uint32_t)c;
}

static void fix_crc(json_t *root)
{
	json_t *h = json_object_get(root, "header");

	json_object_set_new(h, "crc", json_integer(doc_crc(
		json_string_value(json_object_get(h, "msg_type")),
		json_integer_value(json_object_get(h, "timestamp")),
		json_integer_value(json_object_get(h, "seq")),
		json_object_get(root, "body"))));
}

/* Parse a PDU, let fn change it, optionally recompute the CRC as the doc
 * says (an attacker can: CRC-32 is no security), serialize again. */
static void mutate(const struct pdu *in, struct pdu *out, void (*fn)(json_t *root, const void *arg),
                   const void *arg, bool recrc)
{
	json_t *root = json_loadb((const char *)in->d, in->len, 0, NULL);

	CHECK(root != NULL);
	if (!root) {
		out->len = 0;
		return;
	}
	fn(root, arg);
	if (recrc)
		fix_crc(root);
	out->len = json_dumpb(root, (char *)out->d, sizeof(out->d), JSON_COMPACT);
	json_decref(root);
}

/* Replace the first occurrence of from by to in the PDU text. */
static bool replace(const struct pdu *in, struct pdu *out, const char *from, const char *to)
{
	const uint8_t *at = memmem(in->d, in->len, from, strlen(from));
	size_t head, fl = strlen(from), tl = strlen(to);

	if (!at) {
		fprintf(stderr, "replace: '%s' not found\n", from);
		CHECK(!"replace target missing");
		*out = *in;
		return false;
	}
	head = (size_t)(at - in->d);
	memcpy(out->d, in->d, head);
	memcpy(out->d + head, to, tl);
	memcpy(out->d + head + tl, at + fl, in->len - head - fl);
	out->len = in->len - fl + tl;
	return true;
}

static size_t b64dec(const char *s, uint8_t *dst, size_t cap)
{
	struct base64_decode_ctx ctx;
	size_t n = 0;

	CHECK(BASE64_DECODE_LENGTH(strlen(s)) <= cap);
	base64_decode_init(&ctx);
	CHECK(base64_decode_update(&ctx, &n, dst, strlen(s), s));
	CHECK(base64_decode_final(&ctx));
	return n;
}

static void lp(struct hmac_sha256_ctx *c, size_t n, const void *p)
{
	uint8_t be[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };

	hmac_sha256_update(c, 4, be);
	hmac_sha256_update(c, n, p);
}

static json_t *load(const struct pdu *p)
{
	json_t *root = json_loadb((const char *)p->d, p->len, JSON_REJECT_DUPLICATES, NULL);

	CHECK(root != NULL);
	return root;
}

/* ===========================================================================
 * Known-answer vectors
 */

/* NIST SP 800-38A, F.2.5 CBC-AES256.Encrypt and F.2.6 CBC-AES256.Decrypt. */
static void test_aes256_cbc_vectors(void)
{
	size_t kl, il, pl, cl;
	uint8_t *key = test_hex("603deb1015ca71be2b73aef0857d7781"
	                        "1f352c073b6108d72d9810a30914dff4", &kl);
	uint8_t *iv = test_hex("000102030405060708090a0b0c0d0e0f", &il);
	uint8_t *pt = test_hex("6bc1bee22e409f96e93d7e117393172a"
	                       "ae2d8a571e03ac9c9eb76fac45af8e51"
	                       "30c81c46a35ce411e5fbc1191a0a52ef"
	                       "f69f2445df4f9b17ad2b417be66c3710", &pl);
	uint8_t *ct = test_hex("f58c4c04d6e5f1ba779eabfb5f7bfbd6"
	                       "9cfc4e967edb808d679f777bc6702c7d"
	                       "39f23369a9d9bacfa530e26304231461"
	                       "b2eb05e2c39be9fcda6c19078c6a9d1b", &cl);
	uint8_t out[64];

	CHECK_EQ_INT(kl, 32);
	CHECK_EQ_INT(pl, 64);
	ach_cbc_encrypt(key, iv, pl, out, pt);
	CHECK_MEM(out, ct, 64); /* all four blocks */
	ach_cbc_decrypt(key, iv, cl, out, ct);
	CHECK_MEM(out, pt, 64);
	/* In place, as seal() uses it. */
	memcpy(out, pt, 64);
	ach_cbc_encrypt(key, iv, 64, out, out);
	CHECK_MEM(out, ct, 64);
	ach_cbc_decrypt(key, iv, 64, out, out);
	CHECK_MEM(out, pt, 64);
	free(key);
	free(iv);
	free(pt);
	free(ct);
}

/* RFC 4231 section 4, HMAC-SHA-256. */
static void test_hmac_sha256_vectors(void)
{
	static const struct {
		const char *key, *data, *mac;
		size_t trunc;
	} v[] = {
		{ "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
		  "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", 32 },
		{ "4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
		  "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", 32 },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
		  "dddddddddddddddddddddddddddddddddddd",
		  "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe", 32 },
		{ "0102030405060708090a0b0c0d0e0f10111213141516171819",
		  "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
		  "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
		  "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", 32 },
		/* Test case 5: output truncated to 128 bits. */
		{ "0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c",
		  "546573742057697468205472756e636174696f6e",
		  "a3b6167473100ee06e0c796c2955552b", 16 },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaa",
		  "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a"
		  "65204b6579202d2048617368204b6579204669727374",
		  "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", 32 },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaa",
		  "5468697320697320612074657374207573696e672061206c6172676572207468"
		  "616e20626c6f636b2d73697a65206b657920616e642061206c61726765722074"
		  "68616e20626c6f636b2d73697a6520646174612e20546865206b6579206e6565"
		  "647320746f20626520686173686564206265666f7265206265696e6720757365"
		  "642062792074686520484d414320616c676f726974686d2e",
		  "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2", 32 },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t kl, dl, ml;
		uint8_t *k = test_hex(v[i].key, &kl), *d = test_hex(v[i].data, &dl);
		uint8_t *m = test_hex(v[i].mac, &ml);
		uint8_t out[ACH_MAC_LEN];

		ach_hmac(kl, k, dl, d, out);
		CHECK_EQ_INT(ml, v[i].trunc);
		if (memcmp(out, m, v[i].trunc) != 0) {
			fprintf(stderr, "RFC 4231 vector %zu differs\n", i);
			test_failures++;
		}
		free(k);
		free(d);
		free(m);
	}
}

/* RFC 7914 section 11, PBKDF2-HMAC-SHA-256. */
static void test_pbkdf2_vectors(void)
{
	size_t n1, n2;
	uint8_t *e1 = test_hex("55 ac 04 6e 56 e3 08 9f ec 16 91 c2 25 44 b6 05"
	                       "f9 41 85 21 6d de 04 65 e6 8b 9d 57 c2 0d ac bc"
	                       "49 ca 9c cc f1 79 b6 45 99 16 64 b3 9d 77 ef 31"
	                       "7c 71 b8 45 b1 e3 0b d5 09 11 20 41 d3 a1 97 83", &n1);
	uint8_t *e2 = test_hex("4d dc d8 f6 0b 98 be 21 83 0c ee 5e f2 27 01 f9"
	                       "64 1a 44 18 d0 4c 04 14 ae ff 08 87 6b 34 ab 56"
	                       "a1 d4 25 a1 22 58 33 54 9a db 84 1b 51 c9 b3 17"
	                       "6a 27 2b de bb a1 d0 78 47 8f 62 b3 97 f3 3c 8d", &n2);
	uint8_t out[64];

	CHECK_EQ_INT(n1, 64);
	ach_pbkdf2(1, 6, (const uint8_t *)"passwd", 4, (const uint8_t *)"salt", 64, out);
	CHECK_MEM(out, e1, 64);
	ach_pbkdf2(80000, 8, (const uint8_t *)"Password", 4, (const uint8_t *)"NaCl", 64, out);
	CHECK_MEM(out, e2, 64);
	free(e1);
	free(e2);
}

/* The CRC-32 check value (the "123456789" catalogue entry). */
static void test_crc32(void)
{
	CHECK_EQ_INT(crc32_z(crc32_z(0L, Z_NULL, 0), (const Bytef *)"123456789", 9), 0xcbf43926u);
}

static void test_pkcs7(void)
{
	uint8_t buf[80];
	size_t out;

	for (size_t len = 0; len <= 48; len++) {
		size_t pl = ach_padded_len(len);

		CHECK_EQ_INT(pl, (len / 16 + 1) * 16);
		memset(buf, 0x42, sizeof(buf));
		ach_pkcs7_pad(len, buf);
		for (size_t i = len; i < pl; i++)
			CHECK_EQ_INT(buf[i], pl - len);
		out = 999;
		CHECK_EQ_INT(ach_pkcs7_unpad(pl, buf, &out), CHAT_OK);
		CHECK_EQ_INT(out, len);
	}
	/* 15 bytes: one byte 0x01; 16 bytes: a whole block of 0x10. */
	ach_pkcs7_pad(15, buf);
	CHECK_EQ_INT(buf[15], 1);
	ach_pkcs7_pad(16, buf);
	CHECK_EQ_INT(buf[16], 16);
	CHECK_EQ_INT(buf[31], 16);

	out = 999;
	memset(buf, 0, 32);
	CHECK_EQ_INT(ach_pkcs7_unpad(32, buf, &out), CHAT_ERR_MALFORMED); /* pad byte 0 */
	buf[31] = 17;
	CHECK_EQ_INT(ach_pkcs7_unpad(32, buf, &out), CHAT_ERR_MALFORMED); /* > block */
	buf[31] = 0xff;
	CHECK_EQ_INT(ach_pkcs7_unpad(32, buf, &out), CHAT_ERR_MALFORMED);
	memset(buf + 29, 3, 3);
	buf[29] = 4; /* 04 03 03: the first pad byte is wrong */
	CHECK_EQ_INT(ach_pkcs7_unpad(32, buf, &out), CHAT_ERR_MALFORMED);
	buf[29] = 3;
	CHECK_EQ_INT(ach_pkcs7_unpad(32, buf, &out), CHAT_OK);
	CHECK_EQ_INT(out, 29);
	memset(buf, 16, 32);
	buf[16] = 15; /* a full padding block with its first byte wrong */
	CHECK_EQ_INT(ach_pkcs7_unpad(32, buf, &out), CHAT_ERR_MALFORMED);
	buf[16] = 16;
	CHECK_EQ_INT(ach_pkcs7_unpad(32, buf, &out), CHAT_OK);
	CHECK_EQ_INT(out, 16);
	CHECK_EQ_INT(ach_pkcs7_unpad(31, buf, &out), CHAT_ERR_MALFORMED); /* not whole blocks */
	CHECK_EQ_INT(ach_pkcs7_unpad(0, buf, &out), CHAT_ERR_MALFORMED);
	CHECK_EQ_INT(out, 16); /* untouched on failure */
}

/* ===========================================================================
 * Descriptor, loader, session creation
 */

static void test_descriptor(void)
{
	const struct chat_plugin *d = chat_plugin_entry();
	struct chat_registry *reg;
	const struct chat_loaded *l = NULL;
	char err[1024];
	int found = 0;

	CHECK(strcmp(d->name, "aescbc-hmac") == 0);
	CHECK_EQ_INT(d->kind, CHAT_PLUGIN_CIPHER);
	CHECK_EQ_INT(d->flags, CHAT_FLAG_AUTHENTICATED | CHAT_FLAG_NEEDS_SECRET |
	                       CHAT_FLAG_INTEGRITY | CHAT_FLAG_REPLAY);
	CHECK(d->ops.cipher->fingerprint != NULL);
	for (const struct chat_config_key *k = d->config_keys; k->name; k++) {
		if (strcmp(k->name, "iterations") == 0) {
			found++;
			CHECK_EQ_INT(k->type, CHAT_CONFIG_INT);
			CHECK(strcmp(k->def, "100000") == 0);
			CHECK_EQ_INT(k->min, 1000);
			CHECK_EQ_INT(k->max, 10000000);
		} else if (strcmp(k->name, "salt") == 0) {
			found++;
			CHECK_EQ_INT(k->type, CHAT_CONFIG_STRING);
			CHECK(strcmp(k->def, "chat-aescbc-hmac-v1") == 0);
		} else if (strcmp(k->name, "window") == 0) {
			found++;
			CHECK_EQ_INT(k->type, CHAT_CONFIG_INT);
			CHECK(strcmp(k->def, "25") == 0);
			CHECK_EQ_INT(k->min, 1);
			CHECK_EQ_INT(k->max, 3600);
		} else {
			CHECK(!"unexpected config key");
		}
	}
	CHECK_EQ_INT(found, 3);

	/* The built plugin passes every loader check and sees its defaults. */
	CHECK_EQ_INT(chat_registry_new(NULL, &reg), CHAT_OK);
	CHECK_EQ_INT(chat_registry_load(reg, CHAT_TEST_PLUGIN_DIR, CHAT_PLUGIN_CIPHER, "aescbc-hmac",
	                                &l, sizeof(err), err), CHAT_OK);
	if (l) {
		CHECK(strcmp(l->desc->name, "aescbc-hmac") == 0);
		CHECK(strcmp(l->host.config_get(&l->host, "iterations"), "100000") == 0);
		CHECK(strcmp(l->host.config_get(&l->host, "window"), "25") == 0);
	} else {
		fprintf(stderr, "load failed: %s\n", err);
	}
	chat_registry_free(reg);
}

/* One whole run through the real shared object with the core's own host:
 * default config (100,000 PBKDF2 iterations), getrandom, the real clock. */
static void test_real_plugin_default_iterations(void)
{
	struct chat_registry *reg;
	const struct chat_loaded *l = NULL;
	const struct chat_cipher_ops *o;
	struct chat_cipher_params pi = {
		.size = sizeof(pi), .role = CHAT_ROLE_INITIATOR, .local_id = "alice",
		.peer_id = "bob", .suite = ACH_SUITE, .secret = (const uint8_t *)PW,
		.secret_len = strlen(PW), .binding = (const uint8_t *)BIND, .binding_len = strlen(BIND),
	};
	struct chat_cipher_params pr = pi;
	struct pdu a, b;
	struct chat_buf buf;
	void *i = NULL, *r = NULL;
	char err[1024], fi[32], fr[32], text[64];

	pr.role = CHAT_ROLE_RESPONDER;
	pr.local_id = "bob";
	pr.peer_id = "alice";
	CHECK_EQ_INT(chat_registry_new(NULL, &reg), CHAT_OK);
	CHECK_EQ_INT(chat_registry_load(reg, CHAT_TEST_PLUGIN_DIR, CHAT_PLUGIN_CIPHER, "aescbc-hmac",
	                                &l, sizeof(err), err), CHAT_OK);
	if (!l) {
		chat_registry_free(reg);
		return;
	}
	o = l->desc->ops.cipher;
	CHECK_EQ_INT(o->session_new(&l->host, &pi, &i), CHAT_OK);
	CHECK_EQ_INT(o->session_new(&l->host, &pr, &r), CHAT_OK);

	CHECK_EQ_INT(hs_with(o, i, NULL, &a), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs_with(o, r, &a, &b), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs_with(o, i, &b, &a), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs_with(o, r, &a, &b), CHAT_HS_ESTABLISHED);
	CHECK_EQ_INT(hs_with(o, i, &b, &a), CHAT_HS_ESTABLISHED);
	CHECK_EQ_INT(o->fingerprint(i, sizeof(fi), fi), CHAT_OK);
	CHECK_EQ_INT(o->fingerprint(r, sizeof(fr), fr), CHAT_OK);
	CHECK(strcmp(fi, fr) == 0);
	buf = (struct chat_buf){ a.d, sizeof(a.d), 0 };
	CHECK_EQ_INT(o->seal(r, 5, &buf, (const uint8_t *)"hello"), CHAT_OK);
	a.len = buf.len;
	buf = (struct chat_buf){ (uint8_t *)text, sizeof(text), 0 };
	CHECK_EQ_INT(o->open(i, a.len, &buf, a.d), CHAT_OK);
	CHECK(buf.len == 5 && memcmp(text, "hello", 5) == 0);
	o->session_free(i);
	o->session_free(r);
	chat_registry_free(reg);
}

static void test_session_new_errors(void)
{
	struct thost t;
	void *s = (void *)1;
	char big[ACH_USER_MAX + 2];
	struct chat_cipher_params p = {
		.size = sizeof(p), .role = CHAT_ROLE_INITIATOR, .local_id = "alice",
		.peer_id = "bob", .suite = ACH_SUITE, .secret = (const uint8_t *)PW,
		.secret_len = strlen(PW),
	};

	thost_init(&t, 1);
	CHECK_EQ_INT(new_session(&t, CHAT_ROLE_INITIATOR, "alice", "bob", NULL, NULL, &s),
	             CHAT_ERR_NOSECRET);
	CHECK(s == NULL);
	CHECK_STR_CONTAINS(t.last_log, "no shared password for bob");
	CHECK_EQ_INT(new_session(&t, CHAT_ROLE_INITIATOR, "alice", "bob", "", NULL, &s),
	             CHAT_ERR_NOSECRET);
	CHECK_EQ_INT(new_session(&t, 7, "alice", "bob", PW, NULL, &s), CHAT_ERR_INVALID);
	CHECK_EQ_INT(new_session(&t, CHAT_ROLE_INITIATOR, "", "bob", PW, NULL, &s), CHAT_ERR_INVALID);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK_EQ_INT(new_session(&t, CHAT_ROLE_INITIATOR, "alice", big, PW, NULL, &s),
	             CHAT_ERR_INVALID);
	big[ACH_USER_MAX] = '\0'; /* exactly the limit is fine */
	CHECK_EQ_INT(new_session(&t, CHAT_ROLE_INITIATOR, "alice", big, PW, NULL, &s), CHAT_OK);
	ops->session_free(s);
	CHECK_EQ_INT(new_session(&t, CHAT_ROLE_INITIATOR, "alice", "b\xff\xfe", PW, NULL, &s),
	             CHAT_ERR_INVALID); /* not UTF-8: it could not go into JSON */

	t.iterations = "999";
	CHECK_EQ_INT(new_session(&t, CHAT_ROLE_INITIATOR, "alice", "bob", PW, NULL, &s),
	             CHAT_ERR_CONFIG);
	CHECK_STR_CONTAINS(t.last_log, "invalid iterations");
	t.iterations = "12abc";
	CHECK_EQ_INT(new_session(&t, CHAT_ROLE_INITIATOR, "alice", "bob", PW, NULL, &s),
	             CHAT_ERR_CONFIG);
	t.iterations = "1000";
	t.window = "0";
	CHECK_EQ_INT(new_session(&t, CHAT_ROLE_INITIATOR, "alice", "bob", PW, NULL, &s),
	             CHAT_ERR_CONFIG);
	t.window = "3601";
	CHECK_EQ_INT(new_session(&t, CHAT_ROLE_INITIATOR, "alice", "bob", PW, NULL, &s),
	             CHAT_ERR_CONFIG);
	t.window = "25";

	p.size = (uint32_t)offsetof(struct chat_cipher_params, binding);
	CHECK_EQ_INT(ops->session_new(&t.h, &p, &s), CHAT_ERR_ABI);
	p.size = sizeof(p);
	p.binding_len = 3; /* with a NULL binding */
	CHECK_EQ_INT(ops->session_new(&t.h, &p, &s), CHAT_ERR_INVALID);
	p.binding_len = 0;
	CHECK_EQ_INT(ops->session_new(NULL, &p, &s), CHAT_ERR_INVALID);
	CHECK_EQ_INT(ops->session_new(&t.h, NULL, &s), CHAT_ERR_INVALID);
	CHECK_EQ_INT(ops->session_new(&t.h, &p, NULL), CHAT_ERR_INVALID);
	CHECK(s == NULL);
	ops->session_free(NULL);
}

/* ===========================================================================
 * Master key: one per handshake, and key separation
 */

/* The documented PBKDF2 salt: prefix 0 lo 0 hi 0 ch_i ch_r; its length. */
static size_t doc_salt(const char *prefix, const char *lo, const char *hi, const uint8_t *ch_i,
                       const uint8_t *ch_r, uint8_t *dst)
{
	size_t o = 0;

	memcpy(dst + o, prefix, strlen(prefix) + 1);
	o += strlen(prefix) + 1;
	memcpy(dst + o, lo, strlen(lo) + 1);
	o += strlen(lo) + 1;
	memcpy(dst + o, hi, strlen(hi) + 1);
	o += strlen(hi) + 1;
	memcpy(dst + o, ch_i, 32);
	memcpy(dst + o + 32, ch_r, 32);
	return o + 64;
}

static void test_master_key(void)
{
	uint8_t k1[32], k2[32], k[32], ci[32], cr[32], salt[256];
	const uint8_t *pw = (const uint8_t *)"pw";
	size_t n;

	memset(ci, 0x11, sizeof(ci));
	memset(cr, 0x22, sizeof(cr));
	CHECK_EQ_INT(ach_master_key(1000, "s", "alice", "bob", ci, cr, 2, pw, k1), 0);
	/* Both ends derive the same key: the names are sorted. */
	CHECK_EQ_INT(ach_master_key(1000, "s", "bob", "alice", ci, cr, 2, pw, k2), 0);
	CHECK_MEM(k1, k2, 32);
	/* The documented derivation, recomputed. */
	n = doc_salt("s", "alice", "bob", ci, cr, salt);
	CHECK_EQ_INT(n, 2 + 6 + 4 + 64);
	pbkdf2_hmac_sha256(2, pw, 1000, n, salt, 32, k2);
	CHECK_MEM(k1, k2, 32);
	/* Another pair, salt prefix or iteration count sharing the password:
	 * another key; and another challenge on either side, or the two
	 * swapped: another key (a new salt every handshake). */
	CHECK_EQ_INT(ach_master_key(1000, "s", "alice", "carol", ci, cr, 2, pw, k), 0);
	CHECK(memcmp(k1, k, 32) != 0);
	CHECK_EQ_INT(ach_master_key(1000, "t", "alice", "bob", ci, cr, 2, pw, k), 0);
	CHECK(memcmp(k1, k, 32) != 0);
	CHECK_EQ_INT(ach_master_key(1001, "s", "alice", "bob", ci, cr, 2, pw, k), 0);
	CHECK(memcmp(k1, k, 32) != 0);
	CHECK_EQ_INT(ach_master_key(1000, "s", "alice", "bob", cr, ci, 2, pw, k), 0);
	CHECK(memcmp(k1, k, 32) != 0);
	ci[31] ^= 1;
	CHECK_EQ_INT(ach_master_key(1000, "s", "alice", "bob", ci, cr, 2, pw, k), 0);
	CHECK(memcmp(k1, k, 32) != 0);
	ci[31] ^= 1;
	cr[0] ^= 0x80;
	CHECK_EQ_INT(ach_master_key(1000, "s", "alice", "bob", ci, cr, 2, pw, k), 0);
	CHECK(memcmp(k1, k, 32) != 0);
}

/* Nothing can be computed before a handshake is seen: the PBKDF2 salt holds
 * both challenges, so two handshakes between the same pair with the same
 * password use different salts and derive different master keys and
 * session keys.  (Version 1 salted with the names only: the master key was
 * the same every time, and a table of guesses for alice and bob could be
 * built in advance.)  An active attacker posing as alice, replaying one
 * hello (one ch_i of its choosing) to bob again and again, still meets a
 * different salt each time: bob's challenge is in it. */
/* proof_r as the doc defines it, under master key k, from the wire: ch_i
 * from the hello, ch_r from the challenge. */
static void wire_proof_r(const uint8_t k[32], const struct pdu *hello, const struct pdu *challenge,
                         uint8_t proof[32], uint8_t sent[32])
{
	json_t *h = load(hello), *c = load(challenge);
	uint8_t ch_i[40], ch_r[40];
	struct hmac_sha256_ctx m;

	b64dec(json_string_value(json_object_get(json_object_get(h, "body"), "challenge")), ch_i,
	       sizeof(ch_i));
	b64dec(json_string_value(json_object_get(json_object_get(c, "body"), "challenge")), ch_r,
	       sizeof(ch_r));
	b64dec(json_string_value(json_object_get(json_object_get(c, "body"), "proof_r")), sent, 34);
	hmac_sha256_set_key(&m, 32, k);
	lp(&m, strlen("aescbc-hmac responder proof"), "aescbc-hmac responder proof");
	hmac_sha256_update(&m, 32, ch_i);
	hmac_sha256_update(&m, 32, ch_r);
	lp(&m, 5, "alice");
	lp(&m, 3, "bob");
	lp(&m, 11, "aescbc-hmac");
	lp(&m, strlen(BIND), BIND);
	hmac_sha256_digest(&m, 32, proof);
	json_decref(h);
	json_decref(c);
}

static void test_fresh_salt_per_handshake(void)
{
	struct pair p[2];
	struct transcript tr[2];
	uint8_t master[2][32], keys[2][4][32], salt[2][256], k[32];
	static const uint8_t zero[32];
	size_t n[2];

	for (int h = 0; h < 2; h++) {
		struct ach_session *si, *sr;
		struct pdu none;

		pair_new(&p[h], PW, PW, BIND, BIND);
		p[h].ti.rng = 0x1111 + 0x10000 * (uint64_t)h; /* a real RNG never repeats */
		p[h].tr.rng = 0x2222 + 0x10000 * (uint64_t)h;
		si = p[h].i;
		sr = p[h].r;
		CHECK_EQ_INT(hs(p[h].i, NULL, &tr[h].hello), CHAT_HS_CONTINUE);
		CHECK(memcmp(si->master, zero, 32) == 0); /* no key before the challenges */
		CHECK_EQ_INT(hs(p[h].r, &tr[h].hello, &tr[h].challenge), CHAT_HS_CONTINUE);
		memcpy(master[h], sr->master, 32);
		CHECK_EQ_INT(hs(p[h].i, &tr[h].challenge, &tr[h].response), CHAT_HS_CONTINUE);
		CHECK_MEM(si->master, master[h], 32);
		CHECK_EQ_INT(hs(p[h].r, &tr[h].response, &tr[h].ack), CHAT_HS_ESTABLISHED);
		CHECK_EQ_INT(hs(p[h].i, &tr[h].ack, &none), CHAT_HS_ESTABLISHED);
		/* The documented salt, from the challenges on the wire. */
		n[h] = doc_salt(ACH_SALT_DEFAULT, "alice", "bob", si->ch_i, si->ch_r, salt[h]);
		pbkdf2_hmac_sha256(strlen(PW), (const uint8_t *)PW, 1000, n[h], salt[h], 32, k);
		CHECK_MEM(k, master[h], 32);
		memcpy(keys[h], si->keys, sizeof(keys[h]));
		CHECK_MEM(sr->keys, keys[h], sizeof(keys[h]));
		/* Once established neither end keeps the master key. */
		CHECK(memcmp(si->master, zero, 32) == 0);
		CHECK(memcmp(sr->master, zero, 32) == 0);
		delivers(p[h].i, p[h].r, "fresh keys");
	}
	CHECK(n[0] == n[1] && memcmp(salt[0], salt[1], n[0]) != 0);
	CHECK(memcmp(master[0], master[1], 32) != 0);
	for (int x = 0; x < 4; x++)
		CHECK(memcmp(keys[0][x], keys[1][x], 32) != 0);
	printf("two handshakes, one pair: salts differ, master keys %02x%02x%02x%02x... and "
	       "%02x%02x%02x%02x...\n", master[0][0], master[0][1], master[0][2], master[0][3],
	       master[1][0], master[1][1], master[1][2], master[1][3]);
	/* The attack this stops, from the wire alone: a key computed before any
	 * capture -- with version 1's salt, the names only -- verifies no
	 * captured proof (with version 1 it verified every one: the same key
	 * for every handshake of the pair). */
	{
		static const char v1_salt[] = ACH_SALT_DEFAULT "\0alice\0bob";
		uint8_t pre[32], want[32], sent[34];

		pbkdf2_hmac_sha256(strlen(PW), (const uint8_t *)PW, 1000, sizeof(v1_salt) - 1,
		                   (const uint8_t *)v1_salt, 32, pre);
		for (int h = 0; h < 2; h++) {
			wire_proof_r(pre, &tr[h].hello, &tr[h].challenge, want, sent);
			CHECK(memcmp(want, sent, 32) != 0);
			wire_proof_r(master[h], &tr[h].hello, &tr[h].challenge, want, sent);
			CHECK_MEM(want, sent, 32);
		}
	}
	/* A message of one session means nothing to the other. */
	{
		struct pdu m;
		char out[64];

		CHECK_EQ_INT(seal(p[0].i, "session 0", &m), CHAT_OK);
		CHECK_EQ_INT(open_text(p[1].r, &m, out, sizeof(out)), CHAT_ERR_INTEGRITY);
	}
	pair_free(&p[0]);
	pair_free(&p[1]);

	/* One hello, replayed to two fresh responder sessions of bob. */
	{
		struct thost t1, t2;
		void *r1 = NULL, *r2 = NULL;
		struct pdu c1, c2;

		thost_init(&t1, 0x4444);
		thost_init(&t2, 0x5555);
		CHECK_EQ_INT(new_session(&t1, CHAT_ROLE_RESPONDER, "bob", "alice", PW, BIND, &r1), CHAT_OK);
		CHECK_EQ_INT(new_session(&t2, CHAT_ROLE_RESPONDER, "bob", "alice", PW, BIND, &r2), CHAT_OK);
		CHECK_EQ_INT(hs(r1, &tr[0].hello, &c1), CHAT_HS_CONTINUE);
		CHECK_EQ_INT(hs(r2, &tr[0].hello, &c2), CHAT_HS_CONTINUE);
		if (r1 && r2) {
			CHECK(memcmp(((struct ach_session *)r1)->ch_i, ((struct ach_session *)r2)->ch_i,
			             32) == 0);
			CHECK(memcmp(((struct ach_session *)r1)->master,
			             ((struct ach_session *)r2)->master, 32) != 0);
		}
		ops->session_free(r1);
		ops->session_free(r2);
	}
}

/* ===========================================================================
 * Handshake, wire format, key schedule
 */

static void test_handshake_and_format(void)
{
	struct pair p;
	struct transcript tr;
	struct ach_session *si, *sr;
	json_t *root, *h, *b;
	uint8_t ch_i[40], ch_r[40], proof_r[40], want[32], master[32], keys[4][32];
	struct hmac_sha256_ctx c;
	char fi[64], fr[64];
	struct pdu m;

	pair_new(&p, PW, PW, BIND, BIND);
	handshake_ok(&p, &tr);
	si = p.i;
	sr = p.r;

	/* hello: {"header":{msg_type,crc,timestamp,seq},"body":{username,challenge}} */
	root = load(&tr.hello);
	h = json_object_get(root, "header");
	b = json_object_get(root, "body");
	CHECK_EQ_INT(json_object_size(root), 2);
	CHECK_EQ_INT(json_object_size(h), 4);
	CHECK(strcmp(json_string_value(json_object_get(h, "msg_type")), "hello") == 0);
	CHECK_EQ_INT(json_integer_value(json_object_get(h, "timestamp")), T0);
	CHECK_EQ_INT(json_integer_value(json_object_get(h, "seq")), 0);
	CHECK_EQ_INT(json_integer_value(json_object_get(h, "crc")), doc_crc("hello", T0, 0, b));
	CHECK(strcmp(json_string_value(json_object_get(b, "username")), "alice") == 0);
	CHECK_EQ_INT(b64dec(json_string_value(json_object_get(b, "challenge")), ch_i, sizeof(ch_i)), 32);
	CHECK_MEM(ch_i, si->ch_i, 32);
	json_decref(root);

	root = load(&tr.challenge);
	b = json_object_get(root, "body");
	CHECK_EQ_INT(json_object_size(b), 3);
	CHECK(strcmp(json_string_value(json_object_get(b, "username")), "bob") == 0);
	CHECK_EQ_INT(b64dec(json_string_value(json_object_get(b, "challenge")), ch_r, sizeof(ch_r)), 32);
	CHECK_EQ_INT(b64dec(json_string_value(json_object_get(b, "proof_r")), proof_r,
	                    sizeof(proof_r)), 32);
	CHECK(memcmp(ch_i, ch_r, 32) != 0);
	json_decref(root);

	root = load(&tr.response);
	CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(root, "header"), "seq")), 1);
	CHECK_EQ_INT(json_object_size(json_object_get(root, "body")), 1);
	CHECK(json_object_get(json_object_get(root, "body"), "proof_i") != NULL);
	json_decref(root);

	root = load(&tr.ack);
	h = json_object_get(root, "header");
	CHECK(strcmp(json_string_value(json_object_get(h, "msg_type")), "ack") == 0);
	CHECK(json_is_null(json_object_get(root, "body")));
	CHECK_EQ_INT(json_integer_value(json_object_get(h, "seq")), 1);
	CHECK_EQ_INT(json_integer_value(json_object_get(h, "crc")),
	             doc_crc("ack", T0, 1, json_object_get(root, "body")));
	json_decref(root);

	/* Key schedule, recomputed from the doc: the master key from the password,
	 * both names and both challenges (the ends wiped it once established;
	 * the proofs below show they used this one). */
	{
		uint8_t salt[256];
		size_t n = doc_salt(ACH_SALT_DEFAULT, "alice", "bob", ch_i, ch_r, salt);

		pbkdf2_hmac_sha256(strlen(PW), (const uint8_t *)PW, 1000, n, salt, 32, master);
	}
	hmac_sha256_set_key(&c, 32, master);
	lp(&c, strlen("aescbc-hmac responder proof"), "aescbc-hmac responder proof");
	hmac_sha256_update(&c, 32, ch_i);
	hmac_sha256_update(&c, 32, ch_r);
	lp(&c, 5, "alice");
	lp(&c, 3, "bob");
	lp(&c, 11, "aescbc-hmac");
	lp(&c, strlen(BIND), BIND);
	hmac_sha256_digest(&c, 32, want);
	CHECK_MEM(want, proof_r, 32);
	{
		uint8_t salt[64], prk[32], info[512];
		size_t o = 0;
		const char *parts[] = { "aescbc-hmac session keys", "alice", "bob", "aescbc-hmac", BIND };

		for (int k = 0; k < 5; k++) {
			size_t n = strlen(parts[k]);

			info[o++] = (uint8_t)(n >> 24);
			info[o++] = (uint8_t)(n >> 16);
			info[o++] = (uint8_t)(n >> 8);
			info[o++] = (uint8_t)n;
			memcpy(info + o, parts[k], n);
			o += n;
		}
		memcpy(salt, ch_i, 32);
		memcpy(salt + 32, ch_r, 32);
		hmac_sha256_set_key(&c, 64, salt);
		hkdf_extract(&c, (nettle_hash_update_func *)hmac_sha256_update,
		             (nettle_hash_digest_func *)hmac_sha256_digest, 32, 32, master, prk);
		hmac_sha256_set_key(&c, 32, prk);
		hkdf_expand(&c, (nettle_hash_update_func *)hmac_sha256_update,
		            (nettle_hash_digest_func *)hmac_sha256_digest, 32, o, info,
		            sizeof(keys), &keys[0][0]);
		CHECK_MEM(keys, si->keys, sizeof(keys));
		CHECK_MEM(keys, sr->keys, sizeof(keys));
		/* Four distinct keys. */
		for (int x = 0; x < 4; x++)
			for (int y = x + 1; y < 4; y++)
				CHECK(memcmp(keys[x], keys[y], 32) != 0);
	}

	/* A text PDU, checked against the doc with Nettle directly. */
	p.ti.now = T0 + 1234;
	CHECK_EQ_INT(seal(p.i, "attack at dawn", &m), CHAT_OK);
	root = load(&m);
	CHECK_EQ_INT(json_object_size(root), 3);
	h = json_object_get(root, "header");
	b = json_object_get(root, "body");
	CHECK(strcmp(json_string_value(json_object_get(h, "msg_type")), "text") == 0);
	CHECK_EQ_INT(json_integer_value(json_object_get(h, "timestamp")), T0 + 1234);
	CHECK_EQ_INT(json_integer_value(json_object_get(h, "seq")), 0);
	CHECK_EQ_INT(json_integer_value(json_object_get(h, "crc")), doc_crc("text", T0 + 1234, 0, b));
	{
		json_t *sec = json_object_get(root, "security");
		json_t *hm = json_object_get(sec, "hmac");
		uint8_t body[64], pt[48], be[16];
		char hex[65];
		size_t n = b64dec(json_string_value(b), body, sizeof(body));
		struct aes256_ctx aes;
		uint8_t iv[16];
		uint64_t seq = 0, ts = (uint64_t)(T0 + 1234);

		CHECK_EQ_INT(json_object_size(sec), 2);
		CHECK(strcmp(json_string_value(json_object_get(sec, "enc_type")), "AES256CBC") == 0);
		CHECK(strcmp(json_string_value(json_object_get(hm, "hmac_type")), "SHA256") == 0);
		CHECK_EQ_INT(n, 16 + 16); /* IV + one block for 14 bytes */
		for (int k = 0; k < 8; k++) {
			be[k] = (uint8_t)(seq >> (56 - 8 * k));
			be[8 + k] = (uint8_t)(ts >> (56 - 8 * k));
		}
		hmac_sha256_set_key(&c, 32, keys[ACH_K_MAC_I2R]);
		hmac_sha256_update(&c, 4, (const uint8_t *)"text");
		hmac_sha256_update(&c, 16, be);
		hmac_sha256_update(&c, n, body);
		hmac_sha256_digest(&c, 32, want);
		for (int k = 0; k < 32; k++)
			snprintf(hex + 2 * k, 3, "%02x", want[k]);
		CHECK(strcmp(hex, json_string_value(json_object_get(hm, "hmac_val"))) == 0);
		aes256_set_decrypt_key(&aes, keys[ACH_K_ENC_I2R]);
		memcpy(iv, body, 16);
		cbc_decrypt(&aes, (nettle_cipher_func *)aes256_decrypt, 16, iv, n - 16, pt, body + 16);
		CHECK(memcmp(pt, "attack at dawn\x02\x02", 16) == 0);
	}
	json_decref(root);
	{
		char out[64];

		p.tr.now = T0 + 1234;
		CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_OK);
		CHECK(strcmp(out, "attack at dawn") == 0);
	}

	/* The fingerprint: the same on both ends, "xxxx xxxx xxxx xxxx xxxx". */
	CHECK_EQ_INT(ops->fingerprint(p.i, sizeof(fi), fi), CHAT_OK);
	CHECK_EQ_INT(ops->fingerprint(p.r, sizeof(fr), fr), CHAT_OK);
	CHECK(strcmp(fi, fr) == 0);
	CHECK_EQ_INT(strlen(fi), 24);
	CHECK(fi[4] == ' ' && fi[9] == ' ' && fi[14] == ' ' && fi[19] == ' ');
	CHECK_EQ_INT(ops->fingerprint(p.i, 24, fi), CHAT_ERR_NOSPACE);
	pair_free(&p);

	/* Another run with other challenges: another fingerprint. */
	pair_new(&p, PW, PW, BIND, BIND);
	p.ti.rng = 0x3333;
	CHECK_EQ_INT(ops->fingerprint(p.i, sizeof(fr), fr), CHAT_ERR_STATE); /* not yet */
	handshake_ok(&p, &tr);
	CHECK_EQ_INT(ops->fingerprint(p.i, sizeof(fr), fr), CHAT_OK);
	CHECK(strcmp(fi, fr) != 0);
	pair_free(&p);

	/* An empty binding works too. */
	pair_new(&p, PW, PW, NULL, NULL);
	handshake_ok(&p, &tr);
	delivers(p.i, p.r, "no binding");
	pair_free(&p);
}

static void test_round_trips(void)
{
	static const size_t lens[] = { 0, 1, 15, 16, 17, 31, 32, 100, 1000, 4096, 65535, 65536,
	                               ACH_MSG_MAX };
	struct pair p;
	uint8_t *src, *sealed, *out;
	size_t cap = ach_pdu_text_bound(ACH_BLOCK + ach_padded_len(ACH_MSG_MAX));

	pair_established(&p);
	src = malloc(ACH_MSG_MAX + 1);
	sealed = malloc(cap);
	out = malloc(ACH_MSG_MAX + 1);
	for (size_t i = 0; i <= ACH_MSG_MAX; i++)
		src[i] = (uint8_t)(i * 31 + 7);
	for (int dir = 0; dir < 2; dir++) {
		void *from = dir ? p.r : p.i, *to = dir ? p.i : p.r;

		for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
			size_t bound = ops->sealed_size(from, lens[k]);
			struct chat_buf sb = { sealed, bound, 0 }, ob = { out, lens[k], 0 };

			CHECK_EQ_INT(ops->seal(from, lens[k], &sb, src), CHAT_OK);
			CHECK(sb.len <= bound);
			CHECK(bound - sb.len < 64); /* tight, too */
			CHECK_EQ_INT(ops->open(to, sb.len, &ob, sealed), CHAT_OK);
			CHECK_EQ_INT(ob.len, lens[k]);
			if (ob.len == lens[k])
				CHECK_MEM(out, src, lens[k]);
		}
	}
	/* Upper bound for every small length and the exact boundary. */
	for (size_t n = 0; n < 300; n++) {
		struct chat_buf sb = { sealed, ops->sealed_size(p.i, n), 0 }, ob = { out, n, 0 };

		CHECK_EQ_INT(ops->seal(p.i, n, &sb, src), CHAT_OK);
		CHECK_EQ_INT(ops->open(p.r, sb.len, &ob, sealed), CHAT_OK);
	}
	CHECK_EQ_INT(ops->sealed_size(p.i, ACH_MSG_MAX + 1), 0);
	{
		struct chat_buf sb = { sealed, cap, 0 };

		CHECK_EQ_INT(ops->seal(p.i, ACH_MSG_MAX + 1, &sb, src), CHAT_ERR_TOO_BIG);
		CHECK_EQ_INT(sb.len, 0);
	}
	/* Interleaved both ways, many times. */
	for (int n = 0; n < 50; n++) {
		delivers(p.i, p.r, "ping");
		delivers(p.r, p.i, "pong");
	}
	free(src);
	free(sealed);
	free(out);
	pair_free(&p);
}

static void test_nospace_and_rng(void)
{
	struct pair p;
	struct pdu a, b;
	struct chat_buf small;
	uint8_t tiny[8];
	char out[64];

	/* A handshake step that does not fit consumes nothing. */
	pair_new(&p, PW, PW, BIND, BIND);
	small = (struct chat_buf){ tiny, sizeof(tiny), 0 };
	CHECK_EQ_INT(ops->handshake(p.i, 0, &small, NULL), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(small.len, 0);
	CHECK_EQ_INT(hs(p.i, NULL, &a), CHAT_HS_CONTINUE);
	small = (struct chat_buf){ tiny, sizeof(tiny), 0 };
	CHECK_EQ_INT(ops->handshake(p.r, a.len, &small, a.d), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(hs(p.r, &a, &b), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p.i, &b, &a), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p.r, &a, &b), CHAT_HS_ESTABLISHED);
	CHECK_EQ_INT(hs(p.i, &b, &a), CHAT_HS_ESTABLISHED);

	/* seal that does not fit uses no sequence number... */
	small = (struct chat_buf){ tiny, sizeof(tiny), 0 };
	CHECK_EQ_INT(ops->seal(p.i, 2, &small, (const uint8_t *)"hi"), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(small.len, 0);
	/* ...and open that does not fit can be retried. */
	CHECK_EQ_INT(seal(p.i, "twelve bytes", &a), CHAT_OK);
	small = (struct chat_buf){ (uint8_t *)out, 11, 0 };
	CHECK_EQ_INT(ops->open(p.r, a.len, &small, a.d), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(small.len, 0);
	CHECK_EQ_INT(open_text(p.r, &a, out, sizeof(out)), CHAT_OK);
	CHECK(strcmp(out, "twelve bytes") == 0);

	/* A failing RNG: seal reports it and the session survives. */
	p.ti.rng_fail = true;
	CHECK_EQ_INT(seal(p.i, "x", &a), CHAT_ERR_RANDOM);
	p.ti.rng_fail = false;
	delivers(p.i, p.r, "after rng failure");
	pair_free(&p);

	/* ... during the handshake it is final. */
	pair_new(&p, PW, PW, BIND, BIND);
	p.ti.rng_fail = true;
	CHECK_EQ_INT(hs(p.i, NULL, &a), CHAT_ERR_RANDOM);
	p.ti.rng_fail = false;
	CHECK_EQ_INT(hs(p.i, NULL, &a), CHAT_ERR_FAILED);
	pair_free(&p);
}

/* The exchange docs/suites/aescbc-hmac.md shows, byte for byte: the test
 * host's RNG seeded 0x1111 (alice) and 0x2222 (bob), the clock at T0,
 * password hunter2, 1000 iterations, then "hello" from alice. */
static const char *const doc_example[] = {
	"{\"header\":{\"msg_type\":\"hello\",\"crc\":1470617156,\"timestamp\":1700000000000"
	",\"seq\":0},\"body\":{\"username\":\"alice\",\"challenge\":\"YmGhN6LmlubrVfyPdCcP1g"
	"kwVxh0ve7FcD20P0yNAtI=\"}}",
	"{\"header\":{\"msg_type\":\"challenge\",\"crc\":2944948971,\"timestamp\":170000000"
	"0000,\"seq\":0},\"body\":{\"username\":\"bob\",\"challenge\":\"samnCOI8GXFcOFXB3DY0"
	"e45oeMc5uv5ZZAY6EIWBupY=\",\"proof_r\":\"CoEFJQDw8MmO280cN50yUhSta80e/emQkYi"
	"06YLVBR0=\"}}",
	"{\"header\":{\"msg_type\":\"response\",\"crc\":3487216472,\"timestamp\":1700000000"
	"000,\"seq\":1},\"body\":{\"proof_i\":\"hSOUutJSElRHC3zq9MnRiBP4mlfHV8OvlrDF4DgS"
	"8Zg=\"}}",
	"{\"header\":{\"msg_type\":\"ack\",\"crc\":1769958674,\"timestamp\":1700000000000,\""
	"seq\":1},\"body\":null}",
	"{\"header\":{\"msg_type\":\"text\",\"crc\":2248224675,\"timestamp\":1700000000000,"
	"\"seq\":0},\"body\":\"ofM3YmyUTpm4KAHFqrXi7S2odO5YTwOCLVWJfgVAFbA=\",\"security"
	"\":{\"hmac\":{\"hmac_type\":\"SHA256\",\"hmac_val\":\"75cba177a87fadb06ec062f2b59c"
	"ba535021f1520a8cd0b7d4f7fa5a6757ed28\"},\"enc_type\":\"AES256CBC\"}}",
};

static void test_doc_example(void)
{
	static const char bind[] = "offer:aescbc-hmac,xor-demo;choice:aescbc-hmac";
	struct pair p;
	struct transcript tr;
	struct pdu m;
	const struct pdu *got[5] = { &tr.hello, &tr.challenge, &tr.response, &tr.ack, &m };
	char out[16];

	pair_new(&p, "hunter2", "hunter2", bind, bind);
	handshake_ok(&p, &tr);
	CHECK_EQ_INT(seal(p.i, "hello", &m), CHAT_OK);
	for (int k = 0; k < 5; k++) {
		if (getenv("TEST_VERBOSE"))
			printf("%.*s\n", (int)got[k]->len, (const char *)got[k]->d);
		CHECK(got[k]->len == strlen(doc_example[k]) &&
		      memcmp(got[k]->d, doc_example[k], got[k]->len) == 0);
	}
	CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_OK);
	CHECK(strcmp(out, "hello") == 0);
	pair_free(&p);
}

/* ===========================================================================
 * Attacks on messages
 */

static void test_flipped_bits(void)
{
	struct pair p;
	struct pdu m, bad;
	char out[256];
	const uint8_t *body_at, *hmac_at;
	unsigned in_header = 0, in_body = 0, in_hmac = 0, malformed = 0, integrity = 0;

	pair_established(&p);
	CHECK_EQ_INT(seal(p.i, "a message worth protecting", &m), CHAT_OK);
	body_at = memmem(m.d, m.len, "\"body\"", 6);
	hmac_at = memmem(m.d, m.len, "\"hmac_val\"", 10);
	CHECK(body_at && hmac_at);
	for (size_t pos = 0; pos < m.len; pos++) {
		for (int bit = 0; bit < 8; bit++) {
			int rc;

			bad = m;
			bad.d[pos] ^= (uint8_t)(1u << bit);
			rc = open_text(p.r, &bad, out, sizeof(out));
			if (rc != CHAT_ERR_MALFORMED && rc != CHAT_ERR_INTEGRITY) {
				fprintf(stderr, "flip at %zu bit %d: rc %d\n", pos, bit, rc);
				test_failures++;
			}
			malformed += rc == CHAT_ERR_MALFORMED;
			integrity += rc == CHAT_ERR_INTEGRITY;
		}
		if (m.d + pos < body_at)
			in_header++;
		else if (m.d + pos < hmac_at)
			in_body++;
		else
			in_hmac++;
	}
	CHECK(in_header > 50 && in_body > 50 && in_hmac > 64);
	CHECK(malformed > 0 && integrity > 0);
	if (getenv("TEST_VERBOSE"))
		fprintf(stderr, "flips: %u header, %u body, %u security bytes; %u malformed, "
		        "%u integrity\n", in_header, in_body, in_hmac, malformed, integrity);
	/* The real one still opens: nothing above disturbed the session. */
	CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_OK);
	CHECK(strcmp(out, "a message worth protecting") == 0);
	pair_free(&p);
}

static void set_seq(json_t *root, const void *arg)
{
	json_object_set_new(json_object_get(root, "header"), "seq", json_integer(*(const int *)arg));
}

static void set_ts(json_t *root, const void *arg)
{
	json_object_set_new(json_object_get(root, "header"), "timestamp",
	                    json_integer(*(const long long *)arg));
}

/* Flip one bit of the decoded body (IV or ciphertext) and re-encode. */
static void flip_body(json_t *root, const void *arg)
{
	uint8_t buf[256];
	char text[512];
	size_t n = b64dec(json_string_value(json_object_get(root, "body")), buf, sizeof(buf));
	size_t at = *(const size_t *)arg % n;

	buf[at] ^= 0x01;
	base64_encode_raw(text, n, buf);
	text[BASE64_ENCODE_RAW_LENGTH(n)] = '\0';
	json_object_set_new(root, "body", json_string(text));
}

static void set_body(json_t *root, const void *arg)
{
	json_object_set_new(root, "body", json_string(arg));
}

static void flip_crc(json_t *root, const void *arg)
{
	json_t *h = json_object_get(root, "header");

	(void)arg;
	json_object_set_new(h, "crc", json_integer(json_integer_value(json_object_get(h, "crc")) ^ 1));
}

static void upper_username_key(json_t *root, const void *arg)
{
	json_t *b = json_object_get(root, "body");

	(void)arg;
	json_object_set(b, "USERNAME", json_object_get(b, "username"));
	json_object_del(b, "username");
}

static void nothing(json_t *root, const void *arg)
{
	(void)root;
	(void)arg;
}

/* An attacker who fixes the CRC: CRC-32 is no obstacle, the MAC is. */
static void test_crc_is_not_the_defence(void)
{
	struct pair p;
	struct pdu m, bad;
	char out[256];
	long long ts;
	int seq;

	pair_established(&p);
	CHECK_EQ_INT(seal(p.i, "pay bob 10 euros", &m), CHAT_OK);
	for (size_t at = 0; at < 48; at += 5) {
		mutate(&m, &bad, flip_body, &at, true);
		CHECK_EQ_INT(open_text(p.r, &bad, out, sizeof(out)), CHAT_ERR_INTEGRITY);
	}
	seq = 1;
	mutate(&m, &bad, set_seq, &seq, true);
	CHECK_EQ_INT(open_text(p.r, &bad, out, sizeof(out)), CHAT_ERR_INTEGRITY);
	ts = T0 + 1;
	mutate(&m, &bad, set_ts, &ts, true);
	CHECK_EQ_INT(open_text(p.r, &bad, out, sizeof(out)), CHAT_ERR_INTEGRITY);
	/* Without the CRC fixed, the CRC catches it first. */
	mutate(&m, &bad, set_ts, &ts, false);
	CHECK_EQ_INT(open_text(p.r, &bad, out, sizeof(out)), CHAT_ERR_INTEGRITY);
	CHECK_STR_CONTAINS(p.tr.last_log, "CRC mismatch");
	/* Re-serialized unchanged (the same JSON): accepted. */
	mutate(&m, &bad, nothing, NULL, true);
	CHECK_EQ_INT(open_text(p.r, &bad, out, sizeof(out)), CHAT_OK);
	CHECK(strcmp(out, "pay bob 10 euros") == 0);

	/* A message reflected back to its sender: the other direction's key. */
	CHECK_EQ_INT(seal(p.i, "to bob", &m), CHAT_OK);
	CHECK_EQ_INT(open_text(p.i, &m, out, sizeof(out)), CHAT_ERR_INTEGRITY);
	CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_OK);

	/* A message from another session of the same pair: other keys. */
	{
		struct pair q;

		pair_new(&q, PW, PW, BIND, BIND);
		q.ti.rng = 0x9999;
		{
			struct transcript tr;

			handshake_ok(&q, &tr);
		}
		CHECK_EQ_INT(seal(q.i, "from another session", &m), CHAT_OK);
		CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_ERR_INTEGRITY);
		pair_free(&q);
	}
	delivers(p.i, p.r, "still fine");
	pair_free(&p);
}

static void test_truncation(void)
{
	struct pair p;
	struct pdu m, bad;
	char out[256];

	pair_established(&p);
	CHECK_EQ_INT(seal(p.r, "truncate me", &m), CHAT_OK);
	for (size_t n = 0; n < m.len; n++) {
		int rc;

		bad = m;
		bad.len = n;
		rc = open_text(p.i, &bad, out, sizeof(out));
		if (rc != CHAT_ERR_MALFORMED) {
			fprintf(stderr, "truncated to %zu: rc %d\n", n, rc);
			test_failures++;
		}
	}
	/* Trailing garbage is no better. */
	bad = m;
	bad.d[bad.len++] = 'x';
	CHECK_EQ_INT(open_text(p.i, &bad, out, sizeof(out)), CHAT_ERR_MALFORMED);
	CHECK_EQ_INT(open_text(p.i, &m, out, sizeof(out)), CHAT_OK);
	CHECK(strcmp(out, "truncate me") == 0);
	pair_free(&p);
}

static void test_replay_reorder(void)
{
	struct pair p;
	struct pdu a, b, c;
	char out[256];

	pair_established(&p);
	CHECK_EQ_INT(seal(p.i, "first", &a), CHAT_OK);
	CHECK_EQ_INT(seal(p.i, "second", &b), CHAT_OK);
	CHECK_EQ_INT(seal(p.i, "third", &c), CHAT_OK);

	/* Reordered: the second before the first is a gap, dropped. */
	CHECK_EQ_INT(open_text(p.r, &b, out, sizeof(out)), CHAT_ERR_REPLAY);
	CHECK_STR_CONTAINS(p.tr.last_log, "seq 1, expected 0");
	CHECK_EQ_INT(open_text(p.r, &a, out, sizeof(out)), CHAT_OK);
	CHECK(strcmp(out, "first") == 0);
	/* Replayed. */
	CHECK_EQ_INT(open_text(p.r, &a, out, sizeof(out)), CHAT_ERR_REPLAY);
	CHECK_STR_CONTAINS(p.tr.last_log, "replayed");
	/* Skipping one (a gap) is refused too. */
	CHECK_EQ_INT(open_text(p.r, &c, out, sizeof(out)), CHAT_ERR_REPLAY);
	/* The strict order resumes where it was. */
	CHECK_EQ_INT(open_text(p.r, &b, out, sizeof(out)), CHAT_OK);
	CHECK(strcmp(out, "second") == 0);
	CHECK_EQ_INT(open_text(p.r, &c, out, sizeof(out)), CHAT_OK);
	CHECK(strcmp(out, "third") == 0);
	CHECK_EQ_INT(open_text(p.r, &b, out, sizeof(out)), CHAT_ERR_REPLAY);
	CHECK_EQ_INT(open_text(p.r, &c, out, sizeof(out)), CHAT_ERR_REPLAY);
	delivers(p.i, p.r, "fourth");
	delivers(p.r, p.i, "the other direction counts on its own");
	pair_free(&p);
}

static void test_stale(void)
{
	struct pair p;
	struct pdu m;
	char out[256];

	pair_established(&p);
	/* Exactly the window: accepted. */
	CHECK_EQ_INT(seal(p.i, "on the edge", &m), CHAT_OK);
	p.tr.now = T0 + 25000;
	CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_OK);
	p.tr.now = T0 - 25000;
	CHECK_EQ_INT(seal(p.i, "on the other edge", &m), CHAT_OK);
	CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_OK);

	/* The receiver's clock 26 s ahead, then 26 s behind. */
	CHECK_EQ_INT(seal(p.i, "late", &m), CHAT_OK);
	p.tr.now = T0 + 26000;
	CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_ERR_STALE);
	CHECK_STR_CONTAINS(p.tr.last_log, "timestamp -26000 ms from our clock (window 25 s)");
	CHECK_EQ_INT(seal(p.i, "early", &m), CHAT_OK);
	p.tr.now = T0 - 26000;
	CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_ERR_STALE);
	CHECK_STR_CONTAINS(p.tr.last_log, "timestamp +26000 ms");
	/* The stale one used up its seq: a replay of it is a replay. */
	p.tr.now = T0;
	CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_ERR_REPLAY);
	/* And the next message goes through. */
	delivers(p.i, p.r, "on time");

	/* A smaller window from the configuration. */
	pair_free(&p);
	pair_new(&p, PW, PW, BIND, BIND);
	p.tr.window = "5";
	ops->session_free(p.r);
	CHECK_EQ_INT(new_session(&p.tr, CHAT_ROLE_RESPONDER, "bob", "alice", PW, BIND, &p.r), CHAT_OK);
	{
		struct transcript tr;

		handshake_ok(&p, &tr);
	}
	CHECK_EQ_INT(seal(p.i, "six seconds", &m), CHAT_OK);
	p.tr.now = T0 + 6000;
	CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_ERR_STALE);
	pair_free(&p);

	/* A stale handshake PDU is final. */
	pair_new(&p, PW, PW, BIND, BIND);
	{
		struct pdu a, b;

		CHECK_EQ_INT(hs(p.i, NULL, &a), CHAT_HS_CONTINUE);
		p.tr.now = T0 + 26000;
		CHECK_EQ_INT(hs(p.r, &a, &b), CHAT_ERR_STALE);
		CHECK_STR_CONTAINS(p.tr.last_log, "stale PDU");
		CHECK_EQ_INT(hs(p.r, &a, &b), CHAT_ERR_FAILED);
	}
	pair_free(&p);
}

/* Valid JSON, valid CRC, valid MAC, bad padding: only the key holder can
 * make one, so it shows the padding check itself. */
static void test_bad_padding_under_valid_mac(void)
{
	struct pair p;
	struct ach_session *si;
	uint8_t body[48], mac[32];
	struct pdu m;
	struct chat_buf b = { m.d, sizeof(m.d), 0 };
	char out[64];

	pair_established(&p);
	si = p.i;
	memset(body, 0x11, 16);     /* IV */
	memset(body + 16, 'A', 32); /* "padding" byte 'A' = 65 */
	ach_cbc_encrypt(si->keys[ACH_K_ENC_I2R], body, 32, body + 16, body + 16);
	ach_msg_mac(si->keys[ACH_K_MAC_I2R], T0, 0, 48, body, mac);
	CHECK_EQ_INT(ach_pdu_build_text(T0, 0, 48, body, mac, &b), CHAT_OK);
	m.len = b.len;
	CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_ERR_MALFORMED);
	CHECK_STR_CONTAINS(p.tr.last_log, "bad padding");
	/* Authentic and in order, so its seq is used: the next one (seq 1)
	 * opens; the session's own seal would use seq 0, so skip it. */
	si->send_seq = 1;
	delivers(p.i, p.r, "after bad padding");
	pair_free(&p);
}

static void test_malformed(void)
{
	struct pair p;
	struct pdu m, bad;
	char out[256];
	size_t maxpdu = ach_pdu_text_bound(ACH_BLOCK + ach_padded_len(ACH_MSG_MAX));
	static const char *const junk[] = {
		"", "{", "[]", "null", "{}", "42", "\"text\"", "not json at all", "{\"header\":{}}",
		"\xff\xfe\xfd", "{\"header\":1,\"body\":\"\",\"security\":{}}",
	};

	pair_established(&p);
	for (size_t k = 0; k < sizeof(junk) / sizeof(junk[0]); k++) {
		m.len = strlen(junk[k]);
		memcpy(m.d, junk[k], m.len);
		CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_ERR_MALFORMED);
	}
	CHECK_EQ_INT(seal(p.i, "the real one", &m), CHAT_OK);

	/* Shape: duplicate keys, upper case, unknown keys, wrong types. */
	static const struct {
		const char *from, *to;
	} edits[] = {
		{ "\"seq\":0", "\"seq\":0,\"seq\":0" },            /* duplicate key */
		{ "\"body\"", "\"body\":\"\",\"body\"" },          /* duplicate top-level key */
		{ "\"msg_type\"", "\"MSG_TYPE\"" },                /* upper-case key */
		{ "\"header\"", "\"Header\"" },
		{ "\"text\"", "\"TEXT\"" },                        /* upper-case msg_type */
		{ "\"text\"", "\"Text\"" },
		{ "\"SHA256\"", "\"sha256\"" },                    /* wrong hmac_type */
		{ "\"SHA256\"", "\"SHA1\"" },
		{ "\"AES256CBC\"", "\"AES128CBC\"" },              /* wrong enc_type */
		{ "\"seq\":0", "\"seq\":\"0\"" },                  /* wrong types */
		{ "\"seq\":0", "\"seq\":-1" },
		{ "\"seq\":0", "\"seq\":0.0" },
		{ "\"seq\":0", "\"seq\":99999999999999999999999" },
		{ "\"crc\":", "\"crc\":-" },
		{ "\"timestamp\":", "\"timestamp\":\"1\"," "\"x\":" },
		{ "\"header\":{", "\"extra\":1,\"header\":{" },    /* unknown keys */
		{ "\"msg_type\"", "\"extra\":null,\"msg_type\"" },
		{ "\"enc_type\"", "\"iv\":\"\",\"enc_type\"" },
		{ "\"hmac_type\"", "\"hmac_typ\"" },
		{ "\"hmac_val\":\"", "\"hmac_val\":\"A" },          /* 65 digits */
		{ "\"body\":\"", "\"body\":1,\"x\":\"" },
		{ "\"msg_type\":\"text\"", "\"msg_type\":\"hello\"" }, /* body shape wrong */
		{ "\"msg_type\":\"text\"", "\"msg_type\":\"ping\"" },
	};
	for (size_t k = 0; k < sizeof(edits) / sizeof(edits[0]); k++) {
		int rc;

		if (!replace(&m, &bad, edits[k].from, edits[k].to))
			continue;
		rc = open_text(p.r, &bad, out, sizeof(out));
		if (rc != CHAT_ERR_MALFORMED) {
			fprintf(stderr, "edit %zu (%s -> %s): rc %d\n", k, edits[k].from, edits[k].to, rc);
			test_failures++;
		}
	}
	/* Upper-case hex digits in hmac_val: malformed, not "a different MAC". */
	{
		json_t *root = json_loadb((const char *)m.d, m.len, 0, NULL);
		json_t *hm = json_object_get(json_object_get(root, "security"), "hmac");
		char up[65];

		snprintf(up, sizeof(up), "%s", json_string_value(json_object_get(hm, "hmac_val")));
		for (char *c = up; *c; c++)
			if (*c >= 'a' && *c <= 'f')
				*c = (char)(*c - 'a' + 'A');
		json_object_set_new(hm, "hmac_val", json_string(up));
		bad.len = json_dumpb(root, (char *)bad.d, sizeof(bad.d), JSON_COMPACT);
		json_decref(root);
		CHECK_EQ_INT(open_text(p.r, &bad, out, sizeof(out)), CHAT_ERR_MALFORMED);
	}
	/* Body: non-canonical base64, too short, not whole blocks (CRC fixed,
	 * so the body check itself is what refuses them). */
	{
		static const char *const bodies[] = {
			"AAAA\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", /* whitespace */
			"AAAAAAAAAAAAAAAAAAAAAA==",                             /* IV only */
			"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",     /* 35 bytes */
			"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",         /* junk bits */
			"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 48, no pad */
			"!!!!",
			"",
		};

		for (size_t k = 0; k < sizeof(bodies) / sizeof(bodies[0]); k++) {
			int rc;

			mutate(&m, &bad, set_body, bodies[k], true);
			rc = open_text(p.r, &bad, out, sizeof(out));
			/* 48 canonical bytes pass the shape check; the MAC refuses it. */
			if (k == 4)
				CHECK_EQ_INT(rc, CHAT_ERR_INTEGRITY);
			else if (rc != CHAT_ERR_MALFORMED) {
				fprintf(stderr, "body %zu: rc %d\n", k, rc);
				test_failures++;
			}
		}
	}
	/* Deep nesting: refused by the pre-scan, before jansson. */
	{
		char deep[64] = "", ok8[64] = "";

		for (int d = 0; d < 9; d++)
			strcat(deep, "[");
		for (int d = 0; d < 9; d++)
			strcat(deep, "]");
		CHECK(!ach_json_depth_ok(strlen(deep), (const uint8_t *)deep, ACH_JSON_DEPTH_MAX));
		bad.len = strlen(deep);
		memcpy(bad.d, deep, bad.len);
		CHECK_EQ_INT(open_text(p.r, &bad, out, sizeof(out)), CHAT_ERR_MALFORMED);
		CHECK_STR_CONTAINS(p.tr.last_log, "nested too deeply");
		for (int d = 0; d < 8; d++)
			strcat(ok8, "{\"a\":");
		strcat(ok8, "1");
		for (int d = 0; d < 8; d++)
			strcat(ok8, "}");
		CHECK(ach_json_depth_ok(strlen(ok8), (const uint8_t *)ok8, ACH_JSON_DEPTH_MAX));
		/* Brackets inside strings, escaped quotes included, do not count. */
		snprintf(deep, sizeof(deep), "{\"a\":\"[[[[[[[[[\\\"{{{{{{{{{{\"}");
		CHECK(ach_json_depth_ok(strlen(deep), (const uint8_t *)deep, ACH_JSON_DEPTH_MAX));
		/* A real PDU nested inside a deep wrapper. */
		snprintf((char *)bad.d, sizeof(bad.d), "[[[[[[[[[%.*s]]]]]]]]]", (int)m.len, m.d);
		bad.len = strlen((char *)bad.d);
		CHECK_EQ_INT(open_text(p.r, &bad, out, sizeof(out)), CHAT_ERR_MALFORMED);
	}
	/* Oversized: refused before parsing. */
	{
		uint8_t *huge = malloc(maxpdu + 1);
		struct chat_buf ob = { (uint8_t *)out, sizeof(out), 0 };

		memset(huge, ' ', maxpdu + 1);
		CHECK_EQ_INT(ops->open(p.r, maxpdu + 1, &ob, huge), CHAT_ERR_TOO_BIG);
		CHECK_EQ_INT(ob.len, 0);
		free(huge);
	}
	/* A handshake PDU after the handshake: dropped, the session lives. */
	{
		struct pdu ack;
		struct chat_buf hb = { ack.d, sizeof(ack.d), 0 };

		CHECK_EQ_INT(ach_pdu_build_hs(ACH_T_ACK, T0, 0, NULL, NULL, NULL, &hb), CHAT_OK);
		ack.len = hb.len;
		CHECK_EQ_INT(open_text(p.r, &ack, out, sizeof(out)), CHAT_ERR_STATE);
		CHECK_STR_CONTAINS(p.tr.last_log, "handshake PDU ('ack')");
	}
	/* After all of that, the real message still opens. */
	CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_OK);
	CHECK(strcmp(out, "the real one") == 0);
	delivers(p.r, p.i, "and back");
	pair_free(&p);
}

/* ===========================================================================
 * Attacks on the handshake
 */

static void test_wrong_password(void)
{
	struct pair p;
	struct pdu a, b, c;
	json_t *root;

	/* The initiator notices first (proof_r) and sends a nack. */
	pair_new(&p, PW, "not the password", BIND, BIND);
	CHECK_EQ_INT(hs(p.i, NULL, &a), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p.r, &a, &b), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p.i, &b, &c), CHAT_ERR_AUTH);
	CHECK_STR_CONTAINS(p.ti.last_log, "authentication failed for bob");
	CHECK(strstr(p.ti.last_log, PW) == NULL);
	root = load(&c);
	CHECK(strcmp(json_string_value(json_object_get(json_object_get(root, "header"), "msg_type")),
	             "nack") == 0);
	CHECK(json_is_null(json_object_get(root, "body")));
	json_decref(root);
	CHECK_EQ_INT(hs(p.r, &c, &a), CHAT_ERR_AUTH);
	CHECK_STR_CONTAINS(p.tr.last_log, "authentication failed for alice");
	CHECK_STR_CONTAINS(p.tr.last_log, "rejected");
	/* Both are failed for good. */
	CHECK_EQ_INT(hs(p.i, &b, &a), CHAT_ERR_FAILED);
	CHECK_EQ_INT(hs(p.r, &c, &a), CHAT_ERR_FAILED);
	CHECK_EQ_INT(seal(p.i, "x", &a), CHAT_ERR_FAILED);
	{
		char out[16];

		CHECK_EQ_INT(open_text(p.r, &b, out, sizeof(out)), CHAT_ERR_FAILED);
	}
	pair_free(&p);

	/* The responder notices (a forged proof_i, CRC fixed): its nack. */
	{
		struct transcript tr;
		static const char forged[] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

		pair_new(&p, PW, PW, BIND, BIND);
		CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
		CHECK_EQ_INT(hs(p.r, &tr.hello, &tr.challenge), CHAT_HS_CONTINUE);
		CHECK_EQ_INT(hs(p.i, &tr.challenge, &tr.response), CHAT_HS_CONTINUE);
		{
			json_t *r2 = json_loadb((const char *)tr.response.d, tr.response.len, 0, NULL);

			json_object_set_new(json_object_get(r2, "body"), "proof_i", json_string(forged));
			fix_crc(r2);
			tr.response.len = json_dumpb(r2, (char *)tr.response.d, sizeof(tr.response.d),
			                             JSON_COMPACT);
			json_decref(r2);
		}
		CHECK_EQ_INT(hs(p.r, &tr.response, &tr.ack), CHAT_ERR_AUTH);
		CHECK_STR_CONTAINS(p.tr.last_log, "authentication failed for alice");
		CHECK(memmem(tr.ack.d, tr.ack.len, "\"nack\"", 6) != NULL);
		CHECK_EQ_INT(hs(p.i, &tr.ack, &a), CHAT_ERR_AUTH);
		pair_free(&p);
	}
}

static void test_reflection(void)
{
	struct pair p;
	struct transcript tr;
	struct pdu a, b;

	/* The initiator fed its own hello. */
	pair_new(&p, PW, PW, BIND, BIND);
	CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p.i, &tr.hello, &a), CHAT_ERR_STATE);
	CHECK_EQ_INT(hs(p.i, &tr.hello, &a), CHAT_ERR_FAILED);
	pair_free(&p);

	/* The responder fed its own challenge. */
	pair_new(&p, PW, PW, BIND, BIND);
	CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p.r, &tr.hello, &tr.challenge), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p.r, &tr.challenge, &a), CHAT_ERR_STATE);
	pair_free(&p);

	/* The responder's proof_r sent back to it as proof_i: the role labels
	 * differ, so it does not verify. */
	pair_new(&p, PW, PW, BIND, BIND);
	CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p.r, &tr.hello, &tr.challenge), CHAT_HS_CONTINUE);
	{
		json_t *root = json_loadb((const char *)tr.challenge.d, tr.challenge.len, 0, NULL);
		const char *proof = json_string_value(json_object_get(json_object_get(root, "body"),
		                                                      "proof_r"));
		struct chat_buf rb = { a.d, sizeof(a.d), 0 };
		uint8_t raw[40];

		b64dec(proof, raw, sizeof(raw));
		CHECK_EQ_INT(ach_pdu_build_hs(ACH_T_RESPONSE, T0, 1, NULL, NULL, raw, &rb), CHAT_OK);
		a.len = rb.len;
		json_decref(root);
	}
	CHECK_EQ_INT(hs(p.r, &a, &b), CHAT_ERR_AUTH);
	CHECK(memmem(b.d, b.len, "\"nack\"", 6) != NULL);
	pair_free(&p);

	/* The initiator's own challenge reflected inside a challenge PDU (with
	 * the responder's proof over it, as a reflector would need): refused. */
	pair_new(&p, PW, PW, BIND, BIND);
	CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
	{
		struct ach_session *si = p.i;
		struct chat_buf cb = { a.d, sizeof(a.d), 0 };
		uint8_t proof[32], saved[32];

		memcpy(saved, si->ch_r, 32);
		memcpy(si->ch_r, si->ch_i, 32);
		ach_proof(si, 1, proof); /* the best proof there could be */
		memcpy(si->ch_r, saved, 32);
		CHECK_EQ_INT(ach_pdu_build_hs(ACH_T_CHALLENGE, T0, 0, "bob", si->ch_i, proof, &cb),
		             CHAT_OK);
		a.len = cb.len;
	}
	CHECK_EQ_INT(hs(p.i, &a, &b), CHAT_ERR_AUTH);
	CHECK_STR_CONTAINS(p.ti.last_log, "echoed our challenge");
	pair_free(&p);

	/* Alice's hello reflected to a second session of alice's (a responder
	 * expecting bob): the username gives it away. */
	{
		struct thost t;
		void *s2 = NULL;

		pair_new(&p, PW, PW, BIND, BIND);
		CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
		thost_init(&t, 0x4444);
		CHECK_EQ_INT(new_session(&t, CHAT_ROLE_RESPONDER, "alice", "bob", PW, BIND, &s2),
		             CHAT_OK);
		CHECK_EQ_INT(hs(s2, &tr.hello, &a), CHAT_ERR_AUTH);
		CHECK_STR_CONTAINS(t.last_log, "the peer says it is 'alice', expected 'bob'");
		ops->session_free(s2);
		pair_free(&p);
	}
}

static void test_downgrade(void)
{
	struct pair p;
	struct pdu a, b, c;

	/* Someone edited the negotiation: each side saw different lists. */
	pair_new(&p, PW, PW, BIND,
	         "offer:xor-demo;accept:xor-demo,aescbc-hmac;choice:aescbc-hmac");
	CHECK_EQ_INT(hs(p.i, NULL, &a), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p.r, &a, &b), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p.i, &b, &c), CHAT_ERR_AUTH);
	CHECK_STR_CONTAINS(p.ti.last_log, "negotiation");
	CHECK_EQ_INT(hs(p.r, &c, &a), CHAT_ERR_AUTH);
	pair_free(&p);
}

static void test_username_mismatch(void)
{
	struct thost ti, tr;
	void *i = NULL, *r = NULL;
	struct pdu a, b, c;

	/* mallory knows bob's password for alice? No matter: bob expects alice. */
	thost_init(&ti, 5);
	thost_init(&tr, 6);
	CHECK_EQ_INT(new_session(&ti, CHAT_ROLE_INITIATOR, "mallory", "bob", PW, BIND, &i), CHAT_OK);
	CHECK_EQ_INT(new_session(&tr, CHAT_ROLE_RESPONDER, "bob", "alice", PW, BIND, &r), CHAT_OK);
	CHECK_EQ_INT(hs(i, NULL, &a), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(r, &a, &b), CHAT_ERR_AUTH);
	CHECK_STR_CONTAINS(tr.last_log, "authentication failed for alice");
	CHECK_STR_CONTAINS(tr.last_log, "'mallory'");
	CHECK(memmem(b.d, b.len, "\"nack\"", 6) != NULL);
	CHECK_EQ_INT(hs(i, &b, &c), CHAT_ERR_AUTH);
	ops->session_free(i);
	ops->session_free(r);

	/* The answer comes from carol instead of bob. */
	thost_init(&ti, 5);
	thost_init(&tr, 6);
	CHECK_EQ_INT(new_session(&ti, CHAT_ROLE_INITIATOR, "alice", "bob", PW, BIND, &i), CHAT_OK);
	CHECK_EQ_INT(new_session(&tr, CHAT_ROLE_RESPONDER, "carol", "alice", PW, BIND, &r), CHAT_OK);
	CHECK_EQ_INT(hs(i, NULL, &a), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(r, &a, &b), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(i, &b, &c), CHAT_ERR_AUTH);
	CHECK_STR_CONTAINS(ti.last_log, "the peer says it is 'carol', expected 'bob'");
	ops->session_free(i);
	ops->session_free(r);
}

static void test_out_of_place(void)
{
	struct pair p;
	struct transcript tr;
	struct pdu a, m;
	char out[64];

	/* A response before any hello. */
	pair_new(&p, PW, PW, BIND, BIND);
	handshake_ok(&p, &tr);
	pair_free(&p);
	pair_new(&p, PW, PW, BIND, BIND);
	CHECK_EQ_INT(hs(p.r, &tr.response, &a), CHAT_ERR_STATE);
	CHECK_EQ_INT(hs(p.r, &tr.hello, &a), CHAT_ERR_FAILED);
	/* An ack before the challenge. */
	CHECK_EQ_INT(hs(p.i, NULL, &a), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p.i, &tr.ack, &a), CHAT_ERR_STATE);
	pair_free(&p);

	/* The initiator's first call with input; the responder with none. */
	pair_new(&p, PW, PW, BIND, BIND);
	CHECK_EQ_INT(hs(p.i, &tr.hello, &a), CHAT_ERR_STATE);
	CHECK_EQ_INT(hs(p.r, NULL, &a), CHAT_ERR_MALFORMED);
	pair_free(&p);

	/* A nack to a responder waiting for hello; a hello twice. */
	pair_new(&p, PW, PW, BIND, BIND);
	{
		struct chat_buf nb = { m.d, sizeof(m.d), 0 };

		CHECK_EQ_INT(ach_pdu_build_hs(ACH_T_NACK, T0, 0, NULL, NULL, NULL, &nb), CHAT_OK);
		m.len = nb.len;
	}
	CHECK_EQ_INT(hs(p.r, &m, &a), CHAT_ERR_STATE);
	pair_free(&p);
	pair_new(&p, PW, PW, BIND, BIND);
	CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p.r, &tr.hello, &tr.challenge), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs(p.r, &tr.hello, &a), CHAT_ERR_STATE);
	pair_free(&p);

	/* A text PDU during the handshake; uppercase msg_type in a hello. */
	pair_established(&p);
	CHECK_EQ_INT(seal(p.i, "early", &m), CHAT_OK);
	pair_free(&p);
	pair_new(&p, PW, PW, BIND, BIND);
	CHECK_EQ_INT(hs(p.r, &m, &a), CHAT_ERR_STATE);
	pair_free(&p);
	pair_new(&p, PW, PW, BIND, BIND);
	CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
	replace(&tr.hello, &a, "\"hello\"", "\"HELLO\"");
	CHECK_EQ_INT(hs(p.r, &a, &m), CHAT_ERR_MALFORMED);
	pair_free(&p);
	pair_new(&p, PW, PW, BIND, BIND);
	CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
	/* A body key in upper case: the CRC covers the body, so as sent it is an
	 * integrity error; with the CRC made to match, malformed. */
	replace(&tr.hello, &a, "\"username\"", "\"UserName\"");
	CHECK_EQ_INT(hs(p.r, &a, &m), CHAT_ERR_INTEGRITY);
	pair_free(&p);
	pair_new(&p, PW, PW, BIND, BIND);
	CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
	mutate(&tr.hello, &a, upper_username_key, NULL, true);
	CHECK_EQ_INT(hs(p.r, &a, &m), CHAT_ERR_MALFORMED);
	CHECK_STR_CONTAINS(p.tr.last_log, "bad username");
	pair_free(&p);
	/* A handshake PDU with a wrong seq; one with a flipped CRC digit. */
	pair_new(&p, PW, PW, BIND, BIND);
	CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
	{
		int seq = 3;

		mutate(&tr.hello, &a, set_seq, &seq, true);
	}
	CHECK_EQ_INT(hs(p.r, &a, &m), CHAT_ERR_REPLAY);
	pair_free(&p);
	pair_new(&p, PW, PW, BIND, BIND);
	CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
	mutate(&tr.hello, &a, flip_crc, NULL, false);
	CHECK_EQ_INT(hs(p.r, &a, &m), CHAT_ERR_INTEGRITY);
	pair_free(&p);
	/* Oversized handshake PDU. */
	pair_new(&p, PW, PW, BIND, BIND);
	{
		static uint8_t big[ACH_HS_PDU_MAX + 1];
		struct chat_buf ob = { a.d, sizeof(a.d), 0 };

		memset(big, ' ', sizeof(big));
		CHECK_EQ_INT(ops->handshake(p.r, sizeof(big), &ob, big), CHAT_ERR_TOO_BIG);
	}
	pair_free(&p);

	/* seal/open before the handshake: a state error, final. */
	pair_new(&p, PW, PW, BIND, BIND);
	CHECK_EQ_INT(seal(p.i, "too early", &a), CHAT_ERR_STATE);
	CHECK_EQ_INT(seal(p.i, "too early", &a), CHAT_ERR_FAILED);
	CHECK_EQ_INT(hs(p.i, NULL, &a), CHAT_ERR_FAILED);
	CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_ERR_STATE);
	pair_free(&p);

	/* handshake() once established: a state error. */
	pair_established(&p);
	CHECK_EQ_INT(hs(p.r, &tr.hello, &a), CHAT_ERR_STATE);
	CHECK_EQ_INT(seal(p.r, "x", &a), CHAT_ERR_FAILED);
	pair_free(&p);
}

/* ===========================================================================
 * ABI 1.1: open_at for stored messages, saved sessions
 */

/* open_text through open_at. */
static int open_at_text(void *s, uint64_t at, const struct pdu *in, char *text, size_t cap)
{
	struct chat_buf b = { (uint8_t *)text, cap - 1, 0 };
	int rc;

	memset(text, 0xa5, cap);
	rc = ops->open_at(s, at, in->len, &b, in->d);
	if (rc < 0) {
		CHECK_EQ_INT(b.len, 0);
		for (size_t i = 0; i < cap; i++)
			if ((uint8_t)text[i] != 0xa5) {
				CHECK(!"open_at wrote to dst on failure");
				break;
			}
		text[0] = '\0';
	} else {
		text[b.len] = '\0';
	}
	return rc;
}

/* A relay stores a message for an offline user; it is opened an hour later
 * with the freshness window measured from when the relay accepted it. */
static void test_open_at(void)
{
	struct pair p;
	struct pdu m, m2, forged;
	char out[256];
	long long ts = T0 + 1000;

	CHECK(CHAT_CIPHER_HAS(ops, open_at));
	pair_established(&p);
	p.ti.now = T0;
	CHECK_EQ_INT(seal(p.i, "while you were away", &m), CHAT_OK);
	CHECK_EQ_INT(seal(p.i, "and once more", &m2), CHAT_OK);
	/* An hour later by the receiver's clock, stored one second after sealing. */
	p.tr.now = T0 + 3600 * 1000;
	CHECK_EQ_INT(open_at_text(p.r, T0 + 1000, &m, out, sizeof(out)), CHAT_OK);
	CHECK(strcmp(out, "while you were away") == 0);
	/* The same age through open(): still stale. */
	CHECK_EQ_INT(open_text(p.r, &m2, out, sizeof(out)), CHAT_ERR_STALE);
	CHECK_STR_CONTAINS(p.tr.last_log, "timestamp -3600000 ms from our clock (window 25 s)");
	/* Stored 30 s after it was sealed: outside the window from the relay's time. */
	CHECK_EQ_INT(seal(p.i, "held up on the way", &m), CHAT_OK);
	CHECK_EQ_INT(open_at_text(p.r, T0 + 30000, &m, out, sizeof(out)), CHAT_ERR_STALE);
	CHECK_STR_CONTAINS(p.tr.last_log,
	                   "timestamp -30000 ms from when the relay stored it (window 25 s)");
	/* Exactly the window from the relay's time: accepted. */
	CHECK_EQ_INT(seal(p.i, "on the edge", &m), CHAT_OK);
	CHECK_EQ_INT(open_at_text(p.r, T0 + 25000, &m, out, sizeof(out)), CHAT_OK);
	/* Everything else is as open(): a replay is a replay ... */
	CHECK_EQ_INT(open_at_text(p.r, T0 + 1000, &m, out, sizeof(out)), CHAT_ERR_REPLAY);
	/* ... and a relay cannot freshen a message by rewriting its timestamp. */
	CHECK_EQ_INT(seal(p.i, "rewritten", &m), CHAT_OK);
	mutate(&m, &forged, set_ts, &ts, true);
	CHECK_EQ_INT(open_at_text(p.r, T0 + 1000, &forged, out, sizeof(out)), CHAT_ERR_INTEGRITY);
	CHECK_EQ_INT(open_at_text(p.r, (uint64_t)INT64_MAX + 1, &m, out, sizeof(out)),
	             CHAT_ERR_INVALID);
	CHECK_EQ_INT(open_at_text(p.r, T0 + 1000, &m, out, sizeof(out)), CHAT_OK);
	CHECK(strcmp(out, "rewritten") == 0);
	/* Back online: open() with the clocks in step. */
	p.tr.now = T0;
	delivers(p.i, p.r, "live again");
	delivers(p.r, p.i, "welcome back");
	pair_free(&p);
}

static int hs_at(void *s, uint64_t at, const struct pdu *in, struct pdu *out)
{
	struct chat_buf b = { out->d, sizeof(out->d), 0 };
	int rc = ops->handshake_at(s, at, in->len, &b, in->d);

	out->len = b.len;
	return rc;
}

/* An offer completed while each side was offline in turn: every handshake
 * message waited an hour at the relay; handshake_at measures freshness from
 * when the relay stored it, handshake() from the clock. */
static void test_handshake_at(void)
{
	struct pair p;
	struct transcript tr;
	struct pdu none;

	CHECK(CHAT_CIPHER_HAS(ops, handshake_at));
	pair_new(&p, PW, PW, BIND, BIND);
	p.ti.now = p.tr.now = T0;
	CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
	p.tr.now = T0 + 3600 * 1000;
	CHECK_EQ_INT(hs_at(p.r, T0 + 500, &tr.hello, &tr.challenge), CHAT_HS_CONTINUE);
	p.ti.now = T0 + 7200 * 1000;
	CHECK_EQ_INT(hs_at(p.i, T0 + 3600 * 1000 + 500, &tr.challenge, &tr.response), CHAT_HS_CONTINUE);
	p.tr.now = T0 + 9000 * 1000;
	CHECK_EQ_INT(hs_at(p.r, T0 + 7200 * 1000 + 500, &tr.response, &tr.ack), CHAT_HS_ESTABLISHED);
	p.ti.now = T0 + 9999 * 1000;
	CHECK_EQ_INT(hs_at(p.i, T0 + 9000 * 1000 + 500, &tr.ack, &none), CHAT_HS_ESTABLISHED);
	pair_free(&p);
	/* The same hour through handshake(): stale. */
	pair_new(&p, PW, PW, BIND, BIND);
	p.ti.now = p.tr.now = T0;
	CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
	p.tr.now = T0 + 3600 * 1000;
	CHECK_EQ_INT(hs(p.r, &tr.hello, &tr.challenge), CHAT_ERR_STALE);
	CHECK_STR_CONTAINS(p.tr.last_log, "from our clock (window 25 s)");
	pair_free(&p);
	/* Stored 30 s after it was made: stale from the relay's time too. */
	pair_new(&p, PW, PW, BIND, BIND);
	p.ti.now = p.tr.now = T0;
	CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(hs_at(p.r, T0 + 30000, &tr.hello, &tr.challenge), CHAT_ERR_STALE);
	CHECK_STR_CONTAINS(p.tr.last_log, "from when the relay stored it (window 25 s)");
	pair_free(&p);
}

static struct chat_cipher_params params_of(const char *local, const char *peer, int role,
                                           const char *pw, const char *binding)
{
	struct chat_cipher_params prm = {
		.size = sizeof(prm), .role = role, .local_id = local, .peer_id = peer,
		.suite = ACH_SUITE, .secret = (const uint8_t *)pw, .secret_len = pw ? strlen(pw) : 0,
		.binding = (const uint8_t *)binding, .binding_len = binding ? strlen(binding) : 0,
	};

	return prm;
}

static void test_saved_session(void)
{
	struct pair p;
	struct pdu m;
	uint8_t blob[512], other[512];
	struct chat_buf b = { blob, sizeof(blob), 0 };
	struct chat_cipher_params pi = params_of("alice", "bob", CHAT_ROLE_INITIATOR, NULL, BIND);
	struct chat_cipher_params pr = params_of("bob", "alice", CHAT_ROLE_RESPONDER, PW, BIND);
	struct ach_session *si, *li;
	void *i2 = NULL, *r2 = NULL, *x = NULL;
	uint8_t master[ACH_KEY_LEN];
	char out[256];
	size_t n;

	/* Half-way through the handshake: nothing to save, and nothing broken. */
	pair_new(&p, PW, PW, BIND, BIND);
	{
		struct transcript tr;
		struct pdu none;

		CHECK_EQ_INT(hs(p.i, NULL, &tr.hello), CHAT_HS_CONTINUE);
		CHECK_EQ_INT(ops->session_save(p.i, &b), CHAT_ERR_STATE);
		CHECK_EQ_INT(hs(p.r, &tr.hello, &tr.challenge), CHAT_HS_CONTINUE);
		CHECK_EQ_INT(ops->session_save(p.r, &b), CHAT_ERR_STATE);
		CHECK_EQ_INT(hs(p.i, &tr.challenge, &tr.response), CHAT_HS_CONTINUE);
		memcpy(master, ((struct ach_session *)p.i)->master, sizeof(master));
		CHECK_EQ_INT(hs(p.r, &tr.response, &tr.ack), CHAT_HS_ESTABLISHED);
		CHECK_EQ_INT(hs(p.i, &tr.ack, &none), CHAT_HS_ESTABLISHED);
	}
	delivers(p.i, p.r, "one");
	delivers(p.r, p.i, "two");
	delivers(p.i, p.r, "three");

	/* The documented layout, and nothing of the handshake in it. */
	si = p.i;
	b = (struct chat_buf){ blob, sizeof(blob), 0 };
	CHECK_EQ_INT(ops->session_save(p.i, &b), CHAT_OK);
	n = b.len;
	CHECK_EQ_INT(n, ACH_SAVE_LEN);
	CHECK_EQ_INT(n, 4 + 1 + 1 + 11 + 32 + 4 * 32 + 10 + 8 + 8);
	CHECK(memcmp(blob, "ACHS\x01\x0b" "aescbc-hmac", 17) == 0);
	CHECK(memmem(blob, n, master, sizeof(master)) == NULL);
	CHECK(memmem(blob, n, si->ch_i, sizeof(si->ch_i)) == NULL);
	CHECK(memmem(blob, n, si->ch_r, sizeof(si->ch_r)) == NULL);
	CHECK(memcmp(blob + 49, si->keys, sizeof(si->keys)) == 0);
	CHECK(memcmp(blob + n - 16, "\0\0\0\0\0\0\0\x02" "\0\0\0\0\0\0\0\x01", 16) == 0);

	/* Loading needs no password and runs no PBKDF2; the window is today's
	 * configuration, not the saved one. */
	p.ti.window = "5";
	CHECK_EQ_INT(ops->session_load(&p.ti.h, &pi, n, blob, &i2), CHAT_OK);
	p.ti.window = "25";
	li = i2;
	if (!li) {
		pair_free(&p);
		return;
	}
	CHECK_EQ_INT(li->state, ACH_S_ESTABLISHED);
	CHECK_EQ_INT(li->send_seq, 2);
	CHECK_EQ_INT(li->recv_seq, 1);
	CHECK_EQ_INT(li->window_ms, 5000);
	{
		static const uint8_t zero[ACH_KEY_LEN];

		CHECK(memcmp(li->master, zero, sizeof(zero)) == 0);
	}
	{
		char f1[32], f2[32];

		CHECK_EQ_INT(ops->fingerprint(p.i, sizeof(f1), f1), CHAT_OK);
		CHECK_EQ_INT(ops->fingerprint(i2, sizeof(f2), f2), CHAT_OK);
		CHECK(strcmp(f1, f2) == 0);
	}
	/* The copy replaces the original: it continues the numbering, and a
	 * message the original sent before the save is a replay to it. */
	CHECK_EQ_INT(seal(p.r, "to the restored alice", &m), CHAT_OK);
	CHECK_EQ_INT(open_text(i2, &m, out, sizeof(out)), CHAT_OK);
	CHECK(strcmp(out, "to the restored alice") == 0);
	CHECK_EQ_INT(seal(i2, "from the restored alice", &m), CHAT_OK);
	CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_OK);
	CHECK_EQ_INT(open_text(p.r, &m, out, sizeof(out)), CHAT_ERR_REPLAY);
	/* And stored messages reach it through open_at too. */
	CHECK_EQ_INT(seal(p.r, "stored for alice", &m), CHAT_OK);
	p.ti.now = T0 + 86400000LL;
	CHECK_EQ_INT(open_at_text(i2, T0 + 2000, &m, out, sizeof(out)), CHAT_OK);
	CHECK(strcmp(out, "stored for alice") == 0);
	p.ti.now = T0;

	/* Both ends restored from their saves, in another "process". */
	b = (struct chat_buf){ other, sizeof(other), 0 };
	CHECK_EQ_INT(ops->session_save(p.r, &b), CHAT_OK);
	CHECK_EQ_INT(ops->session_load(&p.tr.h, &pr, b.len, other, &r2), CHAT_OK);
	if (r2) {
		delivers(i2, r2, "both restored");
		delivers(r2, i2, "and talking");
	}

	/* Refusals, each MALFORMED with *session cleared. */
	{
		struct chat_cipher_params q = pi;
		uint8_t bad[512];

		q.suite = "aescbc-hmac-v2";
		x = (void *)1;
		CHECK_EQ_INT(ops->session_load(&p.ti.h, &q, n, blob, &x), CHAT_ERR_MALFORMED);
		CHECK(x == NULL);
		CHECK_STR_CONTAINS(p.ti.last_log, "saved session with bob refused (203 bytes)");
		q = pi;
		q.local_id = "Alice";
		CHECK_EQ_INT(ops->session_load(&p.ti.h, &q, n, blob, &x), CHAT_ERR_MALFORMED);
		/* Another plugin's blob of the right length. */
		memcpy(bad, blob, n);
		memcpy(bad, "RC4S", 4);
		CHECK_EQ_INT(ops->session_load(&p.ti.h, &pi, n, bad, &x), CHAT_ERR_MALFORMED);
		/* Another format version. */
		memcpy(bad, blob, n);
		bad[4] = 2;
		CHECK_EQ_INT(ops->session_load(&p.ti.h, &pi, n, bad, &x), CHAT_ERR_MALFORMED);
		/* A sequence number beyond what seal could have reached. */
		memcpy(bad, blob, n);
		memset(bad + n - 16, 0xff, 8);
		CHECK_EQ_INT(ops->session_load(&p.ti.h, &pi, n, bad, &x), CHAT_ERR_MALFORMED);
		/* Bad params are the caller's error, not the blob's. */
		q = pi;
		q.local_id = "";
		CHECK_EQ_INT(ops->session_load(&p.ti.h, &q, n, blob, &x), CHAT_ERR_INVALID);
		CHECK_EQ_INT(ops->session_load(&p.ti.h, &pi, n, NULL, &x), CHAT_ERR_INVALID);
		CHECK_EQ_INT(ops->session_load(&p.ti.h, &pi, n, blob, NULL), CHAT_ERR_INVALID);
		p.ti.window = "0";
		CHECK_EQ_INT(ops->session_load(&p.ti.h, &pi, n, blob, &x), CHAT_ERR_CONFIG);
		p.ti.window = "25";
		CHECK(x == NULL);
	}
	CHECK_EQ_INT(ops->session_save(NULL, &b), CHAT_ERR_INVALID);
	CHECK_EQ_INT(ops->session_save(p.i, NULL), CHAT_ERR_INVALID);

	/* A failed session has nothing worth saving. */
	{
		struct pdu junk = { .len = 3 };

		memcpy(junk.d, "{}x", 3);
		CHECK(hs(p.i, &junk, &m) < 0); /* a handshake PDU after the handshake: final */
		b = (struct chat_buf){ blob, sizeof(blob), 7 };
		CHECK_EQ_INT(ops->session_save(p.i, &b), CHAT_ERR_FAILED);
		CHECK_EQ_INT(b.len, 0);
	}
	ops->session_free(i2);
	ops->session_free(r2);
	pair_free(&p);
}

int main(void)
{
	ops = chat_plugin_entry()->ops.cipher;

	test_aes256_cbc_vectors();
	test_hmac_sha256_vectors();
	test_pbkdf2_vectors();
	test_crc32();
	test_pkcs7();
	test_descriptor();
	test_real_plugin_default_iterations();
	test_session_new_errors();
	test_master_key();
	test_fresh_salt_per_handshake();
	test_handshake_and_format();
	test_doc_example();
	test_round_trips();
	test_nospace_and_rng();
	test_flipped_bits();
	test_crc_is_not_the_defence();
	test_truncation();
	test_replay_reorder();
	test_stale();
	test_bad_padding_under_valid_mac();
	test_malformed();
	test_wrong_password();
	test_reflection();
	test_downgrade();
	test_username_mismatch();
	test_out_of_place();
	test_open_at();
	test_handshake_at();
	test_saved_session();
	return test_done("test_aescbc_hmac");
}
