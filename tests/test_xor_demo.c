/* xor-demo, loaded by the core's loader and driven in one process: the
 * handshake (with the key byte visible on the wire), round trips, recovering
 * English plaintext from ciphertext alone by frequency analysis for every
 * possible key, and the state machine. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "loader.h"
#include "paths.h"
#include "testutils.h"

#define HS_LEN 6 /* "XORD" || version || key */

static const struct chat_plugin *desc;
static const struct chat_cipher_ops *ops;

/* A few hundred bytes of ordinary English, as a chat user would type. */
static const char english[] =
	"When the meeting ended we walked back along the river and talked about the "
	"plan for the spring. Nobody wanted to move the office before the summer, but "
	"the rent goes up in April and the landlord will not wait. I think we should "
	"look at the two places near the station this week, and then decide on Monday "
	"with everyone in the room. Bring the numbers from the last quarter, and tell "
	"Sarah that her idea about the shared kitchen is a good one.";

/* One end: a host whose RNG hands out a scripted byte sequence. */
struct party {
	struct chat_host host; /* first, so callbacks can find the party */
	uint8_t script[64];    /* bytes random() returns, in order, then zeros */
	size_t script_len, drawn;
	int fail;
	int warns;
	char last_log[512];
	void *s;
};

static int party_random(const struct chat_host *h, size_t len, uint8_t *dst)
{
	struct party *p = (struct party *)h;

	if (p->fail)
		return CHAT_ERR_RANDOM;
	for (size_t i = 0; i < len; i++, p->drawn++)
		dst[i] = p->drawn < p->script_len ? p->script[p->drawn] : 0;
	return CHAT_OK;
}

static void party_log(const struct chat_host *h, int level, const char *fmt, ...) CHAT_PRINTF(3, 4);
static void party_log(const struct chat_host *h, int level, const char *fmt, ...)
{
	struct party *p = (struct party *)h;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->last_log, sizeof(p->last_log), fmt, ap);
	va_end(ap);
	if (level <= CHAT_LOG_WARN)
		p->warns++;
}

static void party_init(struct party *p, size_t n, const uint8_t *script)
{
	memset(p, 0, sizeof(*p));
	chat_host_init(&p->host, NULL);
	p->host.random = party_random;
	p->host.log = party_log;
	if (n)
		memcpy(p->script, script, n);
	p->script_len = n;
}

static int party_session(struct party *p, int role)
{
	struct chat_cipher_params params = {
		.size = sizeof(params),
		.role = role,
		.local_id = role == CHAT_ROLE_INITIATOR ? "alice" : "bob",
		.peer_id = role == CHAT_ROLE_INITIATOR ? "bob" : "alice",
		.suite = "xor-demo",
	};

	return ops->session_new(&p->host, &params, &p->s);
}

/* Initiator with a scripted RNG, responder, sessions created. */
static void pair_new(struct party *i, struct party *r, size_t n, const uint8_t *script)
{
	party_init(i, n, script);
	party_init(r, 0, NULL);
	CHECK_EQ_INT(party_session(i, CHAT_ROLE_INITIATOR), CHAT_OK);
	CHECK_EQ_INT(party_session(r, CHAT_ROLE_RESPONDER), CHAT_OK);
}

static void pair_free(struct party *i, struct party *r)
{
	ops->session_free(i->s);
	ops->session_free(r->s);
	i->s = r->s = NULL;
}

/* The whole handshake; the message is left in msg. */
static int handshake(struct party *i, struct party *r, uint8_t msg[HS_LEN])
{
	uint8_t out[16];
	struct chat_buf b = { msg, HS_LEN, 0 }, o = { out, sizeof(out), 0 };
	int ok;

	ok = ops->handshake(i->s, 0, &b, NULL) == CHAT_HS_ESTABLISHED && b.len == HS_LEN;
	CHECK(ok);
	ok = ok && ops->handshake(r->s, b.len, &o, msg) == CHAT_HS_ESTABLISHED && o.len == 0;
	CHECK(ok);
	return ok;
}

static void test_handshake_and_round_trip(void)
{
	static const uint8_t script[] = { 0x00, 0x5a }; /* zero is drawn again */
	struct party i, r;
	uint8_t msg[HS_LEN], ct[64], pt[64];
	struct chat_buf c = { ct, sizeof(ct), 0 }, p = { pt, sizeof(pt), 0 };
	char fi[64], fr[64];
	static const char hello[] = "hello, bob";

	pair_new(&i, &r, sizeof(script), script);
	/* session_new logs nothing: the frontends warn once per conversation from
	 * the flag and the summary (one warning per event). */
	CHECK_EQ_INT(i.warns, 0);
	CHECK_EQ_INT(r.warns, 0);
	CHECK_EQ_INT(ops->fingerprint(i.s, sizeof(fi), fi), CHAT_ERR_STATE);
	if (!handshake(&i, &r, msg))
		goto out;
	/* The key byte, in the clear, for anyone on the wire. */
	CHECK_MEM(msg, "XORD\x01", 5);
	CHECK_EQ_INT(msg[5], 0x5a);
	CHECK_EQ_INT(i.drawn, 2);

	CHECK_EQ_INT(ops->sealed_size(i.s, 10), 10);
	CHECK_EQ_INT(ops->seal(i.s, sizeof(hello) - 1, &c, (const uint8_t *)hello), CHAT_OK);
	CHECK_EQ_INT(c.len, sizeof(hello) - 1);
	for (size_t k = 0; k < c.len; k++)
		CHECK_EQ_INT(ct[k], (uint8_t)hello[k] ^ msg[5]); /* the eavesdropper's decryption */
	CHECK_EQ_INT(ops->open(r.s, c.len, &p, ct), CHAT_OK);
	CHECK(p.len == sizeof(hello) - 1 && !memcmp(pt, hello, p.len));
	/* And back, including an empty message. */
	CHECK_EQ_INT(ops->seal(r.s, 3, &c, (const uint8_t *)"hi!"), CHAT_OK);
	CHECK_EQ_INT(ops->open(i.s, c.len, &p, ct), CHAT_OK);
	CHECK(p.len == 3 && !memcmp(pt, "hi!", 3));
	CHECK_EQ_INT(ops->seal(r.s, 0, &c, NULL), CHAT_OK);
	CHECK_EQ_INT(c.len, 0);
	CHECK_EQ_INT(ops->open(i.s, 0, &p, ct), CHAT_OK);
	CHECK_EQ_INT(p.len, 0);
	/* No integrity: anything opens, to something. */
	CHECK_EQ_INT(ops->open(i.s, 7, &p, (const uint8_t *)"garbage"), CHAT_OK);
	CHECK_EQ_INT(p.len, 7);

	CHECK_EQ_INT(ops->fingerprint(i.s, sizeof(fi), fi), CHAT_OK);
	CHECK_EQ_INT(ops->fingerprint(r.s, sizeof(fr), fr), CHAT_OK);
	CHECK(!strcmp(fi, "xor-demo key 0x5a (no security)"));
	CHECK(!strcmp(fi, fr));
	CHECK_EQ_INT(ops->fingerprint(i.s, strlen(fi), fi), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(fi[0], '\0');
out:
	pair_free(&i, &r);
}

/* English letter frequencies (per mille, roughly), space most of all. */
static int english_score(size_t len, const uint8_t *t)
{
	static const int freq[26] = { 82, 15, 28, 43, 127, 22, 20, 61, 70, 2, 8, 40, 24,
	                              67, 75, 19, 1, 60, 63, 91, 28, 10, 24, 2, 20, 1 };
	int score = 0;

	for (size_t k = 0; k < len; k++) {
		uint8_t c = t[k];

		if (c == ' ')
			score += 130;
		else if (c >= 'a' && c <= 'z')
			score += freq[c - 'a'];
		else if (c >= 'A' && c <= 'Z')
			score += freq[c - 'A'] / 2;
		else if (c == '\n' || (c >= '!' && c <= '~'))
			score += 1;
		else
			score -= 500; /* control bytes and 8-bit: not text */
	}
	return score;
}

/* The documented weakness: ciphertext alone gives the plaintext, whatever the
 * key.  The attacker tries all 255 keys and keeps the most English-looking. */
static void test_frequency_analysis(void)
{
	size_t n = sizeof(english) - 1, recovered = 0;
	uint8_t *ct = malloc(n), *guess = malloc(n);

	CHECK(n >= 300);
	if (!ct || !guess)
		abort();
	for (unsigned key = 1; key < 256; key++) {
		struct party i, r;
		uint8_t msg[HS_LEN], k = (uint8_t)key;
		struct chat_buf c = { ct, n, 0 };
		int best = 0, best_score = INT_MIN;

		pair_new(&i, &r, 1, &k);
		if (!handshake(&i, &r, msg) ||
		    ops->seal(i.s, n, &c, (const uint8_t *)english) != CHAT_OK) {
			CHECK(0);
			pair_free(&i, &r);
			continue;
		}
		CHECK(memcmp(ct, english, n) != 0);
		for (int cand = 1; cand < 256; cand++) {
			int score;

			for (size_t b = 0; b < n; b++)
				guess[b] = ct[b] ^ (uint8_t)cand;
			score = english_score(n, guess);
			if (score > best_score) {
				best_score = score;
				best = cand;
			}
		}
		for (size_t b = 0; b < n; b++)
			guess[b] = ct[b] ^ (uint8_t)best;
		if (best == (int)key && !memcmp(guess, english, n))
			recovered++;
		else
			fprintf(stderr, "key 0x%02x: frequency analysis guessed 0x%02x\n", key, best);
		pair_free(&i, &r);
	}
	CHECK_EQ_INT(recovered, 255);
	printf("frequency analysis: %zu-byte English text recovered from ciphertext alone "
	       "for %zu of 255 keys\n", n, recovered);
	free(ct);
	free(guess);
}

/* Out of order is CHAT_ERR_STATE, then CHAT_ERR_FAILED for good. */
static void test_state_machine(void)
{
	static const uint8_t key[] = { 0x33 };
	struct party i, r;
	uint8_t msg[HS_LEN], out[16], bad[HS_LEN + 1];
	struct chat_buf b = { msg, sizeof(msg), 0 }, o = { out, sizeof(out), 0 };

	pair_new(&i, &r, sizeof(key), key);
	CHECK_EQ_INT(ops->handshake(i.s, 3, &b, (const uint8_t *)"abc"), CHAT_ERR_STATE);
	CHECK_EQ_INT(ops->handshake(i.s, 0, &b, NULL), CHAT_ERR_FAILED);
	CHECK_EQ_INT(ops->seal(i.s, 1, &o, (const uint8_t *)"x"), CHAT_ERR_FAILED);
	CHECK_EQ_INT(ops->handshake(r.s, 0, &o, NULL), CHAT_ERR_STATE);
	CHECK_EQ_INT(ops->handshake(r.s, HS_LEN, &o, (const uint8_t *)"XORD\x01\x33"),
	             CHAT_ERR_FAILED);
	pair_free(&i, &r);

	/* Too early: refused without harm. */
	pair_new(&i, &r, sizeof(key), key);
	CHECK_EQ_INT(ops->seal(i.s, 1, &o, (const uint8_t *)"x"), CHAT_ERR_STATE);
	CHECK_EQ_INT(ops->open(r.s, 1, &o, (const uint8_t *)"x"), CHAT_ERR_STATE);
	CHECK(handshake(&i, &r, msg));
	/* After the handshake, another handshake call is out of order. */
	CHECK_EQ_INT(ops->handshake(r.s, HS_LEN, &o, msg), CHAT_ERR_STATE);
	CHECK_EQ_INT(ops->open(r.s, 1, &o, (const uint8_t *)"x"), CHAT_ERR_FAILED);
	CHECK_EQ_INT(ops->handshake(i.s, 0, &b, NULL), CHAT_ERR_STATE);
	CHECK_EQ_INT(ops->seal(i.s, 1, &o, (const uint8_t *)"x"), CHAT_ERR_FAILED);
	pair_free(&i, &r);

	/* Malformed: length, magic, version; key 0 would mean plaintext. */
	for (int k = 0; k < 5; k++) {
		size_t len = HS_LEN;
		int want = CHAT_ERR_MALFORMED;

		memcpy(bad, "XORD\x01\x33\x00", HS_LEN + 1);
		if (k == 0)
			len = HS_LEN - 1;
		else if (k == 1)
			len = HS_LEN + 1;
		else if (k == 2)
			bad[0] = 'Y';
		else if (k == 3)
			bad[4] = 2;
		else {
			bad[5] = 0;
			want = CHAT_ERR_PEER_VALUE;
		}
		party_init(&r, 0, NULL);
		CHECK_EQ_INT(party_session(&r, CHAT_ROLE_RESPONDER), CHAT_OK);
		CHECK_EQ_INT(ops->handshake(r.s, len, &o, bad), want);
		CHECK_EQ_INT(o.len, 0);
		CHECK_EQ_INT(ops->handshake(r.s, HS_LEN, &o, (const uint8_t *)"XORD\x01\x33"),
		             CHAT_ERR_FAILED);
		ops->session_free(r.s);
	}
}

/* NOSPACE consumes nothing; a broken RNG is an error, never key 0. */
static void test_nospace_and_random(void)
{
	static const uint8_t key[] = { 0x77 };
	struct party i, r;
	uint8_t msg[HS_LEN], out[16];
	struct chat_buf b = { msg, HS_LEN - 1, 0 }, o = { out, 3, 0 };

	pair_new(&i, &r, sizeof(key), key);
	CHECK_EQ_INT(ops->handshake(i.s, 0, &b, NULL), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(i.drawn, 0);
	b.cap = HS_LEN;
	CHECK(handshake(&i, &r, msg));
	CHECK_EQ_INT(msg[5], 0x77);
	CHECK_EQ_INT(ops->seal(i.s, 4, &o, (const uint8_t *)"four"), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(o.len, 0);
	CHECK_EQ_INT(ops->open(i.s, 4, &o, (const uint8_t *)"four"), CHAT_ERR_NOSPACE);
	pair_free(&i, &r);

	/* Zeros forever: refused after a bounded number of draws. */
	party_init(&i, 0, NULL);
	CHECK_EQ_INT(party_session(&i, CHAT_ROLE_INITIATOR), CHAT_OK);
	b.cap = HS_LEN;
	CHECK_EQ_INT(ops->handshake(i.s, 0, &b, NULL), CHAT_ERR_RANDOM);
	CHECK_EQ_INT(b.len, 0);
	CHECK(i.drawn >= 2 && i.drawn <= 64);
	CHECK_EQ_INT(ops->handshake(i.s, 0, &b, NULL), CHAT_ERR_FAILED);
	ops->session_free(i.s);

	party_init(&i, sizeof(key), key);
	i.fail = 1;
	CHECK_EQ_INT(party_session(&i, CHAT_ROLE_INITIATOR), CHAT_OK);
	CHECK_EQ_INT(ops->handshake(i.s, 0, &b, NULL), CHAT_ERR_RANDOM);
	ops->session_free(i.s);
	ops->session_free(NULL);
}

int main(void)
{
	struct chat_registry *reg = NULL;
	const struct chat_loaded *l = NULL;
	char err[1024];

	CHECK_EQ_INT(chat_registry_new(NULL, &reg), CHAT_OK);
	if (chat_registry_load(reg, CHAT_TEST_PLUGIN_DIR, CHAT_PLUGIN_CIPHER, "xor-demo", &l,
	                       sizeof(err), err) != CHAT_OK) {
		fprintf(stderr, "%s\n", err);
		test_failures++;
		goto out;
	}
	desc = l->desc;
	ops = desc->ops.cipher;
	CHECK_EQ_INT(desc->flags, CHAT_FLAG_INSECURE);
	/* What the frontends' warning quotes: the flaw, and that the fingerprint helps nothing. */
	CHECK_STR_CONTAINS(desc->summary, "key sent in the clear");
	CHECK_STR_CONTAINS(desc->summary, "comparing fingerprints reveals nothing");
	CHECK(desc->config_keys == NULL);

	test_handshake_and_round_trip();
	test_frequency_analysis();
	test_state_machine();
	test_nospace_and_random();
out:
	chat_registry_free(reg);
	return test_done("test_xor_demo");
}
