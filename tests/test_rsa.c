/* The rsa cipher suite: known answers for its primitives (RSA-PSS-SHA256
 * from Wycheproof, RSA-KEM and the HKDF key schedule against values computed
 * outside the plugin), whole handshakes in one process with and without
 * pinned keys, every attack the suite claims to stop, and the one it does
 * not: a recorded conversation opened offline with stolen private keys (no
 * forward secrecy). */
#include <stdarg.h>
#include <string.h>

#include <gmp.h>
#include <nettle/bignum.h>
#include <nettle/gcm.h>
#include <nettle/hmac.h>
#include <nettle/rsa.h>
#include <nettle/sha2.h>

#include "rsa_suite.h"
#include "rsa_test_keys.h"
#include "testutils.h"

#define BIND "offer:rsa,aescbc-hmac;accept:rsa;choice:rsa"

static const struct chat_cipher_ops *ops;

/* ---------------------------------------------------------------------------
 * A test host: deterministic RNG, captured log.
 */
struct thost {
	struct chat_host h; /* first: the callbacks cast back */
	uint64_t rng;
	bool rng_fail;
	char last_log[512];
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
	(void)h;
	return 1700000000000LL;
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
		fprintf(stderr, "log: %s\n", t->last_log);
}

static int t_memeq(const void *a, const void *b, size_t n)
{
	return memcmp(a, b, n) == 0;
}

static void t_wipe(void *p, size_t n)
{
	explicit_bzero(p, n);
}

static void thost_init(struct thost *t, uint64_t seed)
{
	memset(t, 0, sizeof(*t));
	t->h.size = sizeof(t->h);
	t->h.abi_major = CHAT_ABI_MAJOR;
	t->h.abi_minor = CHAT_ABI_MINOR;
	t->h.random = t_random;
	t->h.unix_ms = t_clock;
	t->h.log = t_log;
	t->h.memeq = t_memeq;
	t->h.wipe = t_wipe;
	t->rng = seed;
}

struct who {
	const char *name;
	const uint8_t *priv, *pub;
	size_t priv_len, pub_len;
};

static const struct who ALICE = { "alice", alice_priv, alice_pub, sizeof(alice_priv),
	                          sizeof(alice_pub) };
static const struct who BOB = { "bob", bob_priv, bob_pub, sizeof(bob_priv), sizeof(bob_pub) };
static const struct who MALLORY = { "mallory", mallory_priv, mallory_pub, sizeof(mallory_priv),
	                            sizeof(mallory_pub) };

static struct chat_cipher_params params(int role, const struct who *me, const char *peer,
                                        const uint8_t *pin, size_t pin_len, const char *bind)
{
	struct chat_cipher_params p = {
		.size = sizeof(p), .role = role, .local_id = me->name, .peer_id = peer,
		.suite = RSA_SUITE, .binding = (const uint8_t *)bind, .binding_len = strlen(bind),
		.identity_private = me->priv, .identity_private_len = me->priv_len,
		.identity_public = me->pub, .identity_public_len = me->pub_len,
		.peer_identity = pin, .peer_identity_len = pin_len,
	};
	return p;
}

/* A recorded message. */
struct msg {
	uint8_t b[4096];
	size_t len;
};

struct pair {
	struct thost hi, hr;
	void *si, *sr;
	struct msg m1, m2, m3;
};

/* The responder's pin for the initiator and the initiator's pin for the
 * responder (NULL: first contact). */
static void pair_new(struct pair *p, const uint8_t *pin_r, size_t pin_r_len, const uint8_t *pin_i,
                     size_t pin_i_len, const char *bind_i, const char *bind_r)
{
	struct chat_cipher_params pi = params(CHAT_ROLE_INITIATOR, &ALICE, "bob", pin_i, pin_i_len,
	                                      bind_i);
	struct chat_cipher_params pr = params(CHAT_ROLE_RESPONDER, &BOB, "alice", pin_r, pin_r_len,
	                                      bind_r);

	memset(p, 0, sizeof(*p));
	thost_init(&p->hi, 11);
	thost_init(&p->hr, 22);
	CHECK_EQ_INT(ops->session_new(&p->hi.h, &pi, &p->si), CHAT_OK);
	CHECK_EQ_INT(ops->session_new(&p->hr.h, &pr, &p->sr), CHAT_OK);
}

static void pair_free(struct pair *p)
{
	ops->session_free(p->si);
	ops->session_free(p->sr);
}

static int step(void *s, const struct msg *in, struct msg *out)
{
	struct chat_buf dst = { out->b, sizeof(out->b), 0 };
	int rc = ops->handshake(s, in ? in->len : 0, &dst, in ? in->b : NULL);

	out->len = dst.len;
	return rc;
}

/* The three messages, each changed by fn (NULL: unchanged) before delivery.
 * Returns the first error, with *who the side that saw it (0: I, 1: R). */
static int run_hs(struct pair *p, void (*fn)(int n, struct msg *m), int *who)
{
	int rc;

	*who = 0;
	rc = step(p->si, NULL, &p->m1);
	if (rc != CHAT_HS_CONTINUE)
		return rc;
	if (fn)
		fn(1, &p->m1);
	*who = 1;
	rc = step(p->sr, &p->m1, &p->m2);
	if (rc != CHAT_HS_CONTINUE)
		return rc;
	if (fn)
		fn(2, &p->m2);
	*who = 0;
	rc = step(p->si, &p->m2, &p->m3);
	if (rc != CHAT_HS_ESTABLISHED)
		return rc;
	if (fn)
		fn(3, &p->m3);
	*who = 1;
	struct msg none;
	rc = step(p->sr, &p->m3, &none);
	if (rc == CHAT_HS_ESTABLISHED)
		CHECK_EQ_INT(none.len, 0);
	return rc;
}

static void seal(void *s, const char *text, struct msg *out)
{
	struct chat_buf dst = { out->b, sizeof(out->b), 0 };

	CHECK_EQ_INT(ops->seal(s, strlen(text), &dst, (const uint8_t *)text), CHAT_OK);
	CHECK_EQ_INT(dst.len, strlen(text) + RSA_TEXT_OVERHEAD);
	out->len = dst.len;
}

static int open_msg(void *s, const uint8_t *src, size_t len, char *text, size_t cap)
{
	struct chat_buf dst = { (uint8_t *)text, cap - 1, 0 };
	int rc = ops->open(s, len, &dst, src);

	text[rc == CHAT_OK ? dst.len : 0] = '\0';
	if (rc != CHAT_OK)
		CHECK_EQ_INT(dst.len, 0);
	return rc;
}

static void delivers(void *from, void *to, const char *text)
{
	struct msg m;
	char got[256];

	seal(from, text, &m);
	CHECK_EQ_INT(open_msg(to, m.b, m.len, got, sizeof(got)), CHAT_OK);
	CHECK(strcmp(got, text) == 0);
}

/* ---------------------------------------------------------------------------
 * Known answers.
 */

/* Wycheproof testvectors/rsa_pss_3072_sha256_mgf1_32_test.json (C2SP/wycheproof,
 * commit 2f387d269d96, "source": google-wycheproof 0.8r12): the group's n,
 * e = 65537, sLen 32, tcId 1 (msg "") and tcId 3 (msg "Test"), both valid. */
static const char wp_n[] =
	"c6fe23792566023c265287c5ac6f71541c0994d11d059ee6403986efa21c24b51bd91d8862f9df79a4e328e3e27c83df"
	"260b25a9b43420affc44b51e8d7525b6f29c372a405104732007527a62ed82fac73f4892a80e09682a41a58cd347017f"
	"3be7d801334f92d9321aafd53b51bffabfc752cfccae0b1ee03bdaff9e428cc1c117f1ac96b4fe23f8c23e6381186a66"
	"fd59289339ae55c4bcdadbff84abdaa532240d4e1d28b2d0481dadd3b246557ca8fe18092817730b39e6ee378ffcc85b"
	"19ffdc916a9b991a6b66d4a9c7bab5f5e7a3722101142e7a4108c15d573b15289e07e46eaea07b42c2abcba330e99554"
	"b4656165bb4c0db2b6393a07eca575c51a93c4e15bdb0f747909447e3efe34c67ca8954b530e56a20a1b6d84d45ed1bc"
	"d3aa58ec06f184ee5857aaa819e1cca9a26f4e28d6b977d33916db9896d252d1afa762e287cb0d384cc75bfe53f4e922"
	"d02dd0a481c042e2d306b4b3c189371e575b25e0005a164cf69dd0976e4d5be476806ea6be6084e71ab4f5ac5c1b1203";
static const char wp_sig1[] =
	"b520065682633ba54c9b713b2ef19cdc1fcf275ba1744c2350da7307a20971cc30eefa37d1667d23d20001a674f0e00d"
	"f4f9b9e1d5fe7eb85cc45cab5dd625759de83017995c93d48b126df03aa74ef87daea0c1652dd370ad5d663598a383ca"
	"c217a208b22c7cf0e448cc7ae0555f892ccb8ded6894cfb0c328cb542be0485d860ca77203081f3b04c6f55c5689b1a6"
	"6b1c24819a4a7ea55f32e00f61accf4b411bb320a96c990173b63ccd74e7da7df5ceaf33a39a8acb89a845a594b164ec"
	"6e22cce940eb06f2d487a8bc4574451878c2bbf57d241f76586e0703bf5f86bee832d05b75fabaed6accadfc1ec2cd6e"
	"619dbb29b65d6e6f5e118ad52d82a955d21005ecd63fb382f32bb8e2e1e57220b345cd6422bdd84a91495d0ab5775b08"
	"139edee960dab1b4ffd9ea5b27398b58e6e35211c3581501e99bf5e3f17fd79381528d28a4927e28082f45bfa9519f98"
	"ea663dc84c50317adf0bd5da98b01459011cec61800534dd5afc5a567c19e4a400f06dee74112083b5322615c144ce3b";
static const char wp_sig3[] =
	"22915cfa1d7dd30f50b4c0e4cee42c5f0aa1b7a6644f8a11e611b2db042b122af8211ffc1dc220b435d8919cf64d715b"
	"54ff8a762f702b365cbdab455509b97d9b310011467d4186647b957e2efa404aed3b84840529bdef7746348385a1c6a2"
	"ecdb88d1cc2b40b36c346386739c39d2815938e463a35348426f17d32d633b873d6124d8b49a726743af7c0e56d63394"
	"155b63089c63ed8897f8af2a2260d33499afab11c911faa754ced5acdac2de571f39c2768716e4308244a99d1e65da70"
	"61d2feb8ec8b4e517bd5e19cac626698479ab2019257cf83ad7b641db2345b38006d63f84b41772b90037778389cc30e"
	"d6aba6af212d9326792af746d7bca9211fa344fdc2798a490aed3a2840620c2a85e3d9b9c38f2330072663e16dd26bc4"
	"14c7d68f6b11d2cd3e0387c1834c5e2262a9e2dc1bf7c0108b4e2052566c7a941ef6b38c8687fd7abe6add2b745c2c2d"
	"680ae3e5646ce2e717ef9899c7f3fb1e3088e8c0587d86546f752771819595a7a3d422820ceaa12e3ee671a456dac673";

static bool pss_verify(const struct rsa_public_key *pub, const char *msg, const char *sig_hex,
                       size_t flip_bit)
{
	struct sha256_ctx c;
	uint8_t d[32], *sig;
	size_t len;
	mpz_t s;
	bool ok;

	sha256_init(&c);
	sha256_update(&c, strlen(msg), (const uint8_t *)msg);
	sha256_digest(&c, sizeof(d), d);
	sig = test_hex(sig_hex, &len);
	if (flip_bit != (size_t)-1)
		sig[flip_bit / 8 % len] ^= (uint8_t)(1u << (flip_bit % 8));
	mpz_init(s);
	nettle_mpz_set_str_256_u(s, len, sig);
	ok = rsa_pss_sha256_verify_digest(pub, 32, d, s);
	mpz_clear(s);
	free(sig);
	return ok;
}

static void test_pss_wycheproof(void)
{
	struct rsa_public_key pub;
	uint8_t *n, enc[RSA_PUB_MAX];
	size_t nlen;

	/* The Wycheproof key through the suite's own decoder: it is a valid
	 * 3072-bit key in the documented encoding. */
	n = test_hex(wp_n, &nlen);
	CHECK_EQ_INT(nlen, RSA_BYTES);
	enc[0] = RSA_PUB_TAG;
	enc[1] = RSA_BYTES >> 8;
	enc[2] = RSA_BYTES & 0xff;
	memcpy(enc + 3, n, RSA_BYTES);
	enc[3 + RSA_BYTES] = 0;
	enc[4 + RSA_BYTES] = 3;
	enc[5 + RSA_BYTES] = 0x01;
	enc[6 + RSA_BYTES] = 0x00;
	enc[7 + RSA_BYTES] = 0x01;
	rsa_public_key_init(&pub);
	CHECK_EQ_INT(rsa_pub_decode(8 + RSA_BYTES, enc, &pub), CHAT_OK);
	CHECK(pss_verify(&pub, "", wp_sig1, (size_t)-1));
	CHECK(pss_verify(&pub, "Test", wp_sig3, (size_t)-1));
	CHECK(!pss_verify(&pub, "Test", wp_sig1, (size_t)-1));
	CHECK(!pss_verify(&pub, "test", wp_sig3, (size_t)-1));
	for (size_t bit = 0; bit < RSA_BITS; bit += 97)
		CHECK(!pss_verify(&pub, "Test", wp_sig3, bit));
	rsa_public_key_clear(&pub);
	free(n);
}

/* RFC 5869 HKDF-SHA256, written out here from HMAC (not nettle's hkdf). */
static void my_hkdf(size_t salt_len, const uint8_t *salt, size_t ikm_len, const uint8_t *ikm,
                    size_t info_len, const uint8_t *info, size_t len, uint8_t *okm)
{
	struct hmac_sha256_ctx c;
	uint8_t prk[32], t[32];
	size_t tlen = 0, o = 0;

	hmac_sha256_set_key(&c, salt_len, salt);
	hmac_sha256_update(&c, ikm_len, ikm);
	hmac_sha256_digest(&c, 32, prk);
	for (uint8_t i = 1; o < len; i++) {
		hmac_sha256_set_key(&c, 32, prk);
		hmac_sha256_update(&c, tlen, t);
		hmac_sha256_update(&c, info_len, info);
		hmac_sha256_update(&c, 1, &i);
		hmac_sha256_digest(&c, 32, t);
		tlen = 32;
		memcpy(okm + o, t, len - o < 32 ? len - o : 32);
		o += 32;
	}
}

static void test_hkdf(void)
{
	uint8_t ikm[22], salt[13], info[10], okm[42], th[32], rr[RSA_BYTES], ri[RSA_BYTES];
	uint8_t k1[32], k2[32], both[2 * RSA_BYTES], want[64], *exp;
	size_t n;

	/* RFC 5869 A.1: checks my_hkdf itself. */
	memset(ikm, 0x0b, sizeof(ikm));
	for (int i = 0; i < 13; i++)
		salt[i] = (uint8_t)i;
	for (int i = 0; i < 10; i++)
		info[i] = (uint8_t)(0xf0 + i);
	my_hkdf(sizeof(salt), salt, sizeof(ikm), ikm, sizeof(info), info, sizeof(okm), okm);
	exp = test_hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
	               "34007208d5b887185865", &n);
	CHECK_MEM(okm, exp, 42);
	free(exp);

	/* The suite's key schedule: salt TH, IKM r_R || r_I, info "chat-rsa-v1
	 * keys", 64 bytes.  The expected value was computed with python3's
	 * cryptography (HKDF(SHA256(), 64, salt=bytes(range(32)),
	 * info=b"chat-rsa-v1 keys").derive(b"\x11"*384 + b"\x22"*384)). */
	for (int i = 0; i < 32; i++)
		th[i] = (uint8_t)i;
	memset(rr, 0x11, sizeof(rr));
	memset(ri, 0x22, sizeof(ri));
	rsa_keys_derive(th, rr, ri, k1, k2);
	exp = test_hex("d9d0ca45ae222614ec37e2017a8e7a171440fd210bc8a6a88e7d6cb9ee7dc2af"
	               "f4d283834b502b33ccc7c1aacda52bab9892108a300477558f71fad95f3b55ba", &n);
	CHECK_MEM(k1, exp, 32);
	CHECK_MEM(k2, exp + 32, 32);
	memcpy(both, rr, RSA_BYTES);
	memcpy(both + RSA_BYTES, ri, RSA_BYTES);
	my_hkdf(32, th, sizeof(both), both, 16, (const uint8_t *)"chat-rsa-v1 keys", 64, want);
	CHECK_MEM(want, exp, 64);
	free(exp);
}

/* n and e of an encoded public key, read by hand from the documented format. */
static void doc_pub(const uint8_t *pub, mpz_t n, mpz_t e)
{
	size_t nl = (size_t)pub[1] << 8 | pub[2];
	size_t el = (size_t)pub[3 + nl] << 8 | pub[4 + nl];

	mpz_import(n, nl, 1, 1, 0, 0, pub + 3);
	mpz_import(e, el, 1, 1, 0, 0, pub + 5 + nl);
}

/* d of an encoded private key (the first field after the public key). */
static void doc_priv_d(const uint8_t *priv, mpz_t d)
{
	size_t pl = (size_t)priv[1] << 8 | priv[2];
	const uint8_t *p = priv + 3 + pl;

	mpz_import(d, (size_t)p[0] << 8 | p[1], 1, 1, 0, 0, p + 2);
}

/* Alice's key, r = 0x5a5a...5a (383 bytes), c = r^e mod n computed with
 * python3's pow() outside this program. */
static const char kem_c[] =
	"3a304b55e650f76068d2e8ce30f1b90f51c7bedae5f3af71d9a273909a68c93ac80bbd300f274739b0f1fac0e3b4b51f"
	"95b80bc20a0a9c53a3e5036869edd31997c63f01bda1e69f8735caa711eeaef37f24c68acb69c2d1cb8f744aa261ac65"
	"9866bdb46cee415b7bc9efe70b78810a5007e06a2384dbd50e87e85a52af31024be2cac71a7f9852ba888640a285a9ab"
	"15d7fd855514ab98bf2365e93a5ba7f7a5ee5c1c7d797292a8578815cec9b3612df9810a144cb9fe294464ea99acce72"
	"a15b45dc0e67903b4f7109fe67e764708e43156f952eff6e4c7369e0dba6abd6368957d97a83c0d6b6797301b61fa239"
	"c932bdc0007078efeac350f6ce20b6bd7fc3fd7f46020d9f501a81eddc4b15951e71696d49f8da8fa902a381a06081ad"
	"6b3b493fa37eb88226164d3dd7cc1cd0fc7dc5b2ccb7a9fead80432b913dbdc58edd5ddd5a522bf1f0ddf1644e9935d8"
	"6a099fd5a792712986b2b35860cf42ac82265663bd495b2cd48ef6870fb0b4319b83a02fdbdc3a866a52c50e53d09a07";

static void test_kem(void)
{
	struct pair p;
	struct rsa_session *a;
	uint8_t r[RSA_BYTES], want[RSA_BYTES], c[RSA_BYTES], *pyc;
	size_t n;
	mpz_t mn, me, mr, mc;

	/* Bob's session knows Alice's key once her hello arrived. */
	pair_new(&p, NULL, 0, NULL, 0, BIND, BIND);
	CHECK_EQ_INT(step(p.si, NULL, &p.m1), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(step(p.sr, &p.m1, &p.m2), CHAT_HS_CONTINUE);
	a = p.si;
	pyc = test_hex(kem_c, &n);
	CHECK_EQ_INT(n, RSA_BYTES);
	want[0] = 0;
	memset(want + 1, 0x5a, RSA_BYTES - 1);

	/* GMP directly agrees with python. */
	mpz_inits(mn, me, mr, mc, NULL);
	doc_pub(alice_pub, mn, me);
	mpz_import(mr, RSA_BYTES, 1, 1, 0, 0, want);
	mpz_powm(mc, mr, me, mn);
	memset(c, 0, sizeof(c));
	mpz_export(c + RSA_BYTES - (mpz_sizeinbase(mc, 256)), NULL, 1, 1, 0, 0, mc);
	CHECK_MEM(c, pyc, RSA_BYTES);

	/* Decapsulation by Alice's session (blinded CRT root). */
	CHECK_EQ_INT(rsa_kem_decap(a, pyc, r), CHAT_OK);
	CHECK_MEM(r, want, RSA_BYTES);

	/* Encapsulation by Bob's session to Alice: c = r^e mod n by GMP, r < 2^3071. */
	CHECK_EQ_INT(rsa_kem_encap(p.sr, r, c), CHAT_OK);
	CHECK(r[0] < 0x80);
	mpz_import(mr, RSA_BYTES, 1, 1, 0, 0, r);
	mpz_powm(mc, mr, me, mn);
	memset(want, 0, sizeof(want));
	mpz_export(want + RSA_BYTES - mpz_sizeinbase(mc, 256), NULL, 1, 1, 0, 0, mc);
	CHECK_MEM(c, want, RSA_BYTES);

	/* Out of range: 0, n, n + 1 and all ones. */
	memset(c, 0, sizeof(c));
	CHECK_EQ_INT(rsa_kem_decap(a, c, r), CHAT_ERR_PEER_VALUE);
	memcpy(c, alice_pub + 3, RSA_BYTES);
	CHECK_EQ_INT(rsa_kem_decap(a, c, r), CHAT_ERR_PEER_VALUE);
	c[RSA_BYTES - 1]++;
	CHECK_EQ_INT(rsa_kem_decap(a, c, r), CHAT_ERR_PEER_VALUE);
	memset(c, 0xff, sizeof(c));
	CHECK_EQ_INT(rsa_kem_decap(a, c, r), CHAT_ERR_PEER_VALUE);
	c[0] = 0;
	memset(c + 1, 0, RSA_BYTES - 1);
	c[RSA_BYTES - 1] = 1;
	CHECK_EQ_INT(rsa_kem_decap(a, c, r), CHAT_OK); /* 1 is in range (and 1^d = 1) */
	mpz_clears(mn, me, mr, mc, NULL);
	free(pyc);
	pair_free(&p);
}

/* ---------------------------------------------------------------------------
 * Keys.
 */

static void test_descriptor(void)
{
	const struct chat_plugin *pl = chat_plugin_entry();

	CHECK(strcmp(pl->name, "rsa") == 0);
	CHECK_EQ_INT(pl->flags, CHAT_FLAG_AUTHENTICATED | CHAT_FLAG_INTEGRITY | CHAT_FLAG_REPLAY |
	                        CHAT_FLAG_IDENTITY);
	CHECK(!(pl->flags & CHAT_FLAG_NEEDS_SECRET));
	CHECK(CHAT_CIPHER_HAS(ops, identity_keygen) && CHAT_CIPHER_HAS(ops, peer_identity));
	CHECK(CHAT_CIPHER_HAS(ops, session_save) && CHAT_CIPHER_HAS(ops, session_load));
	CHECK(CHAT_CIPHER_HAS(ops, open_at) && CHAT_CIPHER_HAS(ops, handshake_at));
}

static void test_keygen(void)
{
	struct thost h;
	uint8_t priv[4096], pub[4096];
	struct chat_buf a = { priv, sizeof(priv), 0 }, b = { pub, 100, 0 };
	struct rsa_public_key k, k2;
	struct rsa_private_key pk;
	const uint8_t *pe;
	size_t pl;

	thost_init(&h, 5);
	CHECK_EQ_INT(ops->identity_keygen(&h.h, &a, &b), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(a.len + b.len, 0);
	b.cap = sizeof(pub);
	h.rng_fail = true;
	CHECK_EQ_INT(ops->identity_keygen(&h.h, &a, &b), CHAT_ERR_RANDOM);
	CHECK_EQ_INT(a.len + b.len, 0);
	h.rng_fail = false;
	CHECK_EQ_INT(ops->identity_keygen(&h.h, &a, &b), CHAT_OK);
	rsa_public_key_init(&k);
	rsa_public_key_init(&k2);
	rsa_private_key_init(&pk);
	CHECK_EQ_INT(rsa_pub_decode(b.len, pub, &k), CHAT_OK);
	CHECK_EQ_INT(mpz_sizeinbase(k.n, 2), 3072);
	CHECK_EQ_INT(mpz_get_ui(k.e), 65537);
	CHECK_EQ_INT(rsa_priv_decode(a.len, priv, &k2, &pk, &pl, &pe), CHAT_OK);
	CHECK_EQ_INT(pl, b.len);
	CHECK_MEM(pe, pub, pl);
	/* The new pair works: a handshake with it as alice's, pinned by bob. */
	{
		struct who me = { "alice", priv, pub, a.len, b.len };
		struct chat_cipher_params pi = params(CHAT_ROLE_INITIATOR, &me, "bob", NULL, 0, BIND);
		struct pair p;
		int who;

		pair_new(&p, pub, b.len, bob_pub, sizeof(bob_pub), BIND, BIND);
		ops->session_free(p.si);
		CHECK_EQ_INT(ops->session_new(&p.hi.h, &pi, &p.si), CHAT_OK);
		CHECK_EQ_INT(run_hs(&p, NULL, &who), CHAT_HS_ESTABLISHED);
		delivers(p.si, p.sr, "new key");
		pair_free(&p);
	}
	/* A private key with a changed p is refused. */
	priv[a.len - 200] ^= 1;
	CHECK(rsa_priv_decode(a.len, priv, &k2, &pk, &pl, &pe) < 0);
	rsa_public_key_clear(&k);
	rsa_public_key_clear(&k2);
	rsa_private_key_clear(&pk);

	/* Wrong sizes and shapes of public keys. */
	{
		uint8_t e[RSA_PUB_MAX + 8];
		struct rsa_public_key t;

		rsa_public_key_init(&t);
		memcpy(e, alice_pub, sizeof(alice_pub));
		CHECK_EQ_INT(rsa_pub_decode(sizeof(alice_pub), e, &t), CHAT_OK);
		CHECK_EQ_INT(rsa_pub_decode(sizeof(alice_pub) - 1, e, &t), CHAT_ERR_PEER_VALUE);
		e[3] &= 0x7f; /* a 3071-bit n */
		CHECK_EQ_INT(rsa_pub_decode(sizeof(alice_pub), e, &t), CHAT_ERR_PEER_VALUE);
		memcpy(e, alice_pub, sizeof(alice_pub));
		e[2 + RSA_BYTES] ^= 1; /* even n */
		CHECK_EQ_INT(rsa_pub_decode(sizeof(alice_pub), e, &t), CHAT_ERR_PEER_VALUE);
		memcpy(e, alice_pub, sizeof(alice_pub));
		e[sizeof(alice_pub) - 1] ^= 1; /* even e */
		CHECK_EQ_INT(rsa_pub_decode(sizeof(alice_pub), e, &t), CHAT_ERR_PEER_VALUE);
		rsa_public_key_clear(&t);
	}
}

/* ---------------------------------------------------------------------------
 * Handshakes.
 */

static void check_established(struct pair *p)
{
	char fa[64], fb[64];
	uint8_t k[RSA_PUB_MAX];
	struct chat_buf d = { k, sizeof(k), 0 };
	struct rsa_session *a = p->si, *b = p->sr;

	CHECK_EQ_INT(ops->fingerprint(p->si, sizeof(fa), fa), CHAT_OK);
	CHECK_EQ_INT(ops->fingerprint(p->sr, sizeof(fb), fb), CHAT_OK);
	CHECK(strcmp(fa, fb) == 0);
	CHECK_EQ_INT(strlen(fa), RSA_FP_TEXT - 1);
	CHECK_EQ_INT(ops->peer_identity(p->si, &d), CHAT_OK);
	CHECK(d.len == sizeof(bob_pub) && memcmp(k, bob_pub, d.len) == 0);
	CHECK_EQ_INT(ops->peer_identity(p->sr, &d), CHAT_OK);
	CHECK(d.len == sizeof(alice_pub) && memcmp(k, alice_pub, d.len) == 0);
	/* The handshake secrets are gone: no private key, no r values. */
	static const uint8_t zero[RSA_BYTES];
	CHECK(!a->have_priv && !b->have_priv);
	CHECK_EQ_INT(mpz_size(a->priv.d) + mpz_size(a->priv.p) + mpz_size(b->priv.q), 0);
	CHECK_MEM(a->r_i, zero, RSA_BYTES);
	CHECK_MEM(a->r_r, zero, RSA_BYTES);
	CHECK_MEM(b->r_i, zero, RSA_BYTES);
	CHECK_MEM(b->r_r, zero, RSA_BYTES);
	delivers(p->si, p->sr, "hello bob");
	delivers(p->sr, p->si, "hello alice");
}

static void test_handshakes(void)
{
	struct pair p;
	int who;

	/* First contact: no pins. */
	pair_new(&p, NULL, 0, NULL, 0, BIND, BIND);
	{
		uint8_t k[RSA_PUB_MAX];
		struct chat_buf d = { k, sizeof(k), 0 };
		CHECK_EQ_INT(ops->peer_identity(p.si, &d), CHAT_ERR_STATE);
	}
	CHECK_EQ_INT(run_hs(&p, NULL, &who), CHAT_HS_ESTABLISHED);
	CHECK_EQ_INT(p.m1.len, 1 + 2 + sizeof(alice_pub) + RSA_NONCE_LEN);
	CHECK_EQ_INT(p.m2.len, 1 + 2 + sizeof(bob_pub) + RSA_NONCE_LEN + 2 * RSA_BYTES);
	CHECK_EQ_INT(p.m3.len, 1 + 2 * RSA_BYTES);
	CHECK_STR_CONTAINS(p.hr.last_log, "first contact");
	check_established(&p);
	{
		struct msg x;
		CHECK_EQ_INT(step(p.si, &p.m2, &x), CHAT_ERR_STATE);
	}
	pair_free(&p);

	/* Both pinned. */
	pair_new(&p, alice_pub, sizeof(alice_pub), bob_pub, sizeof(bob_pub), BIND, BIND);
	CHECK_EQ_INT(run_hs(&p, NULL, &who), CHAT_HS_ESTABLISHED);
	CHECK_STR_CONTAINS(p.hr.last_log, "(pinned)");
	check_established(&p);
	pair_free(&p);

	/* Only one side pinned. */
	pair_new(&p, NULL, 0, bob_pub, sizeof(bob_pub), BIND, BIND);
	CHECK_EQ_INT(run_hs(&p, NULL, &who), CHAT_HS_ESTABLISHED);
	check_established(&p);
	pair_free(&p);

	/* The initiator pinned Mallory's key for bob: bob's real key is refused. */
	pair_new(&p, NULL, 0, mallory_pub, sizeof(mallory_pub), BIND, BIND);
	CHECK_EQ_INT(run_hs(&p, NULL, &who), CHAT_ERR_AUTH);
	CHECK_EQ_INT(who, 0);
	CHECK_STR_CONTAINS(p.hi.last_log, "another identity key than the one pinned");
	{
		struct msg x;
		CHECK_EQ_INT(step(p.si, &p.m2, &x), CHAT_ERR_FAILED);
	}
	pair_free(&p);

	/* The responder pinned Mallory's key for alice. */
	pair_new(&p, mallory_pub, sizeof(mallory_pub), NULL, 0, BIND, BIND);
	CHECK_EQ_INT(run_hs(&p, NULL, &who), CHAT_ERR_AUTH);
	CHECK_EQ_INT(who, 1);
	pair_free(&p);

	/* The relay hands alice's hello for "bob" to carol (who has bob's key
	 * pair, say): the names are in the signed transcript, in their roles. */
	{
		static const struct who CAROL = { "carol", bob_priv, bob_pub, sizeof(bob_priv),
		                                  sizeof(bob_pub) };
		struct chat_cipher_params pr = params(CHAT_ROLE_RESPONDER, &CAROL, "alice", NULL, 0,
		                                      BIND);
		pair_new(&p, NULL, 0, NULL, 0, BIND, BIND);
		ops->session_free(p.sr);
		CHECK_EQ_INT(ops->session_new(&p.hr.h, &pr, &p.sr), CHAT_OK);
		CHECK_EQ_INT(run_hs(&p, NULL, &who), CHAT_ERR_AUTH);
		CHECK_EQ_INT(who, 0);
		pair_free(&p);
		/* and the roles: bob as the initiator's peer but speaking as initiator too */
		pr = params(CHAT_ROLE_INITIATOR, &BOB, "alice", NULL, 0, BIND);
		pair_new(&p, NULL, 0, NULL, 0, BIND, BIND);
		ops->session_free(p.sr);
		CHECK_EQ_INT(ops->session_new(&p.hr.h, &pr, &p.sr), CHAT_OK);
		CHECK_EQ_INT(step(p.si, NULL, &p.m1), CHAT_HS_CONTINUE);
		CHECK_EQ_INT(step(p.sr, &p.m1, &p.m2), CHAT_ERR_STATE);
		pair_free(&p);
	}

	/* A different negotiation transcript (a downgrade) on one side. */
	pair_new(&p, NULL, 0, NULL, 0, BIND, "offer:rsa;accept:rsa;choice:rsa");
	CHECK_EQ_INT(run_hs(&p, NULL, &who), CHAT_ERR_AUTH);
	CHECK_EQ_INT(who, 0);
	CHECK_STR_CONTAINS(p.hi.last_log, "bad signature");
	pair_free(&p);
}

/* Mallory, in the middle, replaces Alice's key with hers in the hello and
 * answers... she cannot sign as bob: with bob's key pinned the initiator
 * refuses the reply; unpinned, she must also replace bob's key, and then the
 * two ends see different keys (and fingerprints): that is what TOFU means. */
static int tamper_at, tamper_byte;
static void tamper(int n, struct msg *m)
{
	if (n == tamper_at)
		m->b[tamper_byte % m->len] ^= 0x01;
}

static void test_tampering(void)
{
	struct pair p;
	int who, rc;
	size_t l1 = 1 + 2 + sizeof(alice_pub), l2 = 1 + 2 + sizeof(bob_pub);
	struct {
		int at;
		size_t byte;
		int want, who;
		const char *what;
	} cases[] = {
		{ 1, l1 + 5, CHAT_ERR_AUTH, 0, "nonce_I" },
		{ 1, 200, CHAT_ERR_AUTH, 0, "pub_I (first contact: R accepts it, I refuses R's signature)" },
		{ 1, 0, CHAT_ERR_STATE, 1, "hello type" },
		{ 2, l2 + 3, CHAT_ERR_AUTH, 0, "nonce_R" },
		{ 2, l2 + RSA_NONCE_LEN + 100, CHAT_ERR_AUTH, 0, "c_R" },
		{ 2, l2 + RSA_NONCE_LEN + RSA_BYTES + 100, CHAT_ERR_AUTH, 0, "sig_R" },
		{ 2, 100, CHAT_ERR_AUTH, 0, "pub_R" },
		{ 3, 100, CHAT_ERR_AUTH, 1, "c_I" },
		{ 3, 1 + RSA_BYTES + 100, CHAT_ERR_AUTH, 1, "sig_I" },
		{ 3, 0, CHAT_ERR_STATE, 1, "finish type" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pair_new(&p, NULL, 0, NULL, 0, BIND, BIND);
		tamper_at = cases[i].at;
		tamper_byte = (int)cases[i].byte;
		rc = run_hs(&p, tamper, &who);
		if (rc != cases[i].want || who != cases[i].who)
			fprintf(stderr, "tampered %s: rc %d by %d\n", cases[i].what, rc, who);
		CHECK_EQ_INT(rc, cases[i].want);
		CHECK_EQ_INT(who, cases[i].who);
		pair_free(&p);
	}
	/* A failed session holds no secret any more. */
	{
		static const uint8_t zero[RSA_BYTES];
		struct rsa_session *r;

		pair_new(&p, NULL, 0, NULL, 0, BIND, BIND);
		tamper_at = 3;
		tamper_byte = 1 + RSA_BYTES + 7;
		CHECK_EQ_INT(run_hs(&p, tamper, &who), CHAT_ERR_AUTH);
		r = p.sr;
		CHECK_EQ_INT(r->state, RSA_S_FAILED);
		CHECK(!r->have_priv);
		CHECK_EQ_INT(mpz_size(r->priv.p) + mpz_size(r->priv.q) + mpz_size(r->priv.d), 0);
		CHECK_MEM(r->r_r, zero, RSA_BYTES);
		CHECK_MEM(r->r_i, zero, RSA_BYTES);
		CHECK_MEM(r->k_i2r, zero, RSA_KEY_LEN);
		CHECK_MEM(r->k_r2i, zero, RSA_KEY_LEN);
		pair_free(&p);
	}
	/* pub_R changed with bob pinned: the pin catches it before the signature. */
	pair_new(&p, NULL, 0, bob_pub, sizeof(bob_pub), BIND, BIND);
	tamper_at = 2;
	tamper_byte = 100;
	CHECK_EQ_INT(run_hs(&p, tamper, &who), CHAT_ERR_AUTH);
	CHECK_STR_CONTAINS(p.hi.last_log, "pinned");
	pair_free(&p);

	/* Every length of the finish but the right one is malformed. */
	for (size_t cut = 0; cut < 1 + 2 * RSA_BYTES; cut += 53) {
		pair_new(&p, NULL, 0, NULL, 0, BIND, BIND);
		struct msg x;
		CHECK_EQ_INT(step(p.si, NULL, &p.m1), CHAT_HS_CONTINUE);
		CHECK_EQ_INT(step(p.sr, &p.m1, &p.m2), CHAT_HS_CONTINUE);
		CHECK_EQ_INT(step(p.si, &p.m2, &p.m3), CHAT_HS_ESTABLISHED);
		p.m3.len = cut ? cut : 1;
		CHECK_EQ_INT(step(p.sr, &p.m3, &x), CHAT_ERR_MALFORMED);
		pair_free(&p);
	}
}

/* A key of the wrong size in the hello: 2048 bits, and 4096 bits. */
static void test_wrong_size_key(void)
{
	size_t sizes[] = { 256, 512 };

	for (size_t i = 0; i < 2; i++) {
		struct pair p;
		struct msg m, x;
		size_t nb = sizes[i], o = 0;

		pair_new(&p, NULL, 0, NULL, 0, BIND, BIND);
		m.b[o++] = RSA_T_HELLO;
		m.b[o++] = (uint8_t)((nb + 8) >> 8);
		m.b[o++] = (uint8_t)(nb + 8);
		m.b[o++] = RSA_PUB_TAG;
		m.b[o++] = (uint8_t)(nb >> 8);
		m.b[o++] = (uint8_t)nb;
		memset(m.b + o, 0xc3, nb); /* odd, top bit set */
		o += nb;
		memcpy(m.b + o, "\x00\x03\x01\x00\x01", 5);
		o += 5;
		memset(m.b + o, 7, RSA_NONCE_LEN);
		m.len = o + RSA_NONCE_LEN;
		CHECK_EQ_INT(step(p.sr, &m, &x), CHAT_ERR_PEER_VALUE);
		CHECK_EQ_INT(x.len, 0);
		CHECK_STR_CONTAINS(p.hr.last_log, "not a 3072-bit RSA key");
		pair_free(&p);
	}
	/* And a pinned key that is not a key at all is refused by session_new. */
	{
		struct thost h;
		uint8_t junk[20] = { 1 };
		struct chat_cipher_params pr = params(CHAT_ROLE_RESPONDER, &BOB, "alice", junk,
		                                      sizeof(junk), BIND);
		void *s = NULL;
		thost_init(&h, 1);
		CHECK_EQ_INT(ops->session_new(&h.h, &pr, &s), CHAT_ERR_INVALID);
		CHECK(s == NULL);
		/* nor a public key that does not belong to the private one */
		pr = params(CHAT_ROLE_RESPONDER, &BOB, "alice", NULL, 0, BIND);
		pr.identity_public = alice_pub;
		CHECK_EQ_INT(ops->session_new(&h.h, &pr, &s), CHAT_ERR_INVALID);
		pr.identity_private = NULL;
		CHECK_EQ_INT(ops->session_new(&h.h, &pr, &s), CHAT_ERR_NOTFOUND);
	}
}

/* NOSPACE consumes nothing; a failing RNG fails the handshake. */
static void test_nospace(void)
{
	struct pair p;
	uint8_t small[100];
	struct chat_buf d = { small, sizeof(small), 0 };
	int who;

	pair_new(&p, NULL, 0, NULL, 0, BIND, BIND);
	CHECK_EQ_INT(ops->handshake(p.si, 0, &d, NULL), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(step(p.si, NULL, &p.m1), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(ops->handshake(p.sr, p.m1.len, &d, p.m1.b), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(step(p.sr, &p.m1, &p.m2), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(ops->handshake(p.si, p.m2.len, &d, p.m2.b), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(step(p.si, &p.m2, &p.m3), CHAT_HS_ESTABLISHED);
	pair_free(&p);

	pair_new(&p, NULL, 0, NULL, 0, BIND, BIND);
	p.hr.rng_fail = true;
	CHECK_EQ_INT(run_hs(&p, NULL, &who), CHAT_ERR_RANDOM);
	pair_free(&p);
}

/* ---------------------------------------------------------------------------
 * Messages.
 */

static void established_pair(struct pair *p)
{
	int who;

	pair_new(p, NULL, 0, NULL, 0, BIND, BIND);
	CHECK_EQ_INT(run_hs(p, NULL, &who), CHAT_HS_ESTABLISHED);
}

static void test_messages(void)
{
	struct pair p;
	struct msg m, m2, m3;
	char got[256];
	uint8_t bad[512];

	/* seal/open before the handshake: a state error, final. */
	pair_new(&p, NULL, 0, NULL, 0, BIND, BIND);
	{
		struct chat_buf d = { m.b, sizeof(m.b), 0 };
		CHECK_EQ_INT(ops->seal(p.si, 1, &d, (const uint8_t *)"x"), CHAT_ERR_STATE);
		CHECK_EQ_INT(ops->seal(p.si, 1, &d, (const uint8_t *)"x"), CHAT_ERR_FAILED);
	}
	pair_free(&p);

	established_pair(&p);
	CHECK_EQ_INT(ops->sealed_size(p.si, 10), 10 + RSA_TEXT_OVERHEAD);
	CHECK_EQ_INT(ops->sealed_size(p.si, RSA_MSG_MAX + 1), 0);
	/* the empty message */
	seal(p.si, "", &m);
	CHECK_EQ_INT(open_msg(p.sr, m.b, m.len, got, sizeof(got)), CHAT_OK);
	CHECK_EQ_INT(strlen(got), 0);

	/* Every bit of a sealed message flipped: refused, and the session goes on. */
	seal(p.si, "attack at dawn", &m);
	for (size_t bit = 0; bit < m.len * 8; bit++) {
		memcpy(bad, m.b, m.len);
		bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		int rc = open_msg(p.sr, bad, m.len, got, sizeof(got));
		CHECK(rc == (bit < 8 ? CHAT_ERR_MALFORMED : CHAT_ERR_INTEGRITY));
	}
	/* Every truncation. */
	for (size_t len = 0; len < m.len; len++) {
		int rc = open_msg(p.sr, m.b, len, got, sizeof(got));
		CHECK(rc == CHAT_ERR_MALFORMED || rc == CHAT_ERR_INTEGRITY);
	}
	/* Too little room: nothing consumed. */
	{
		struct chat_buf d = { (uint8_t *)got, 3, 0 };
		CHECK_EQ_INT(ops->open(p.sr, m.len, &d, m.b), CHAT_ERR_NOSPACE);
	}
	CHECK_EQ_INT(open_msg(p.sr, m.b, m.len, got, sizeof(got)), CHAT_OK);
	CHECK(strcmp(got, "attack at dawn") == 0);
	/* Replay. */
	CHECK_EQ_INT(open_msg(p.sr, m.b, m.len, got, sizeof(got)), CHAT_ERR_REPLAY);
	/* Reorder: 2 then 1 both open (the window), each once; a gap is accepted. */
	seal(p.si, "one", &m);
	seal(p.si, "two", &m2);
	seal(p.si, "three", &m3);
	CHECK_EQ_INT(open_msg(p.sr, m2.b, m2.len, got, sizeof(got)), CHAT_OK);
	CHECK_EQ_INT(open_msg(p.sr, m.b, m.len, got, sizeof(got)), CHAT_OK);
	CHECK(strcmp(got, "one") == 0);
	CHECK_EQ_INT(open_msg(p.sr, m.b, m.len, got, sizeof(got)), CHAT_ERR_REPLAY);
	CHECK_STR_CONTAINS(p.hr.last_log, "a replay");
	CHECK_EQ_INT(open_msg(p.sr, m2.b, m2.len, got, sizeof(got)), CHAT_ERR_REPLAY);
	{
		/* 70 sealed, the last delivered first: the first 6 are now below
		 * the 64-message window and refused, the other 63 open once each. */
		static struct msg many[70];
		int opened = 0;
		for (int i = 0; i < 70; i++) {
			char t[16];
			snprintf(t, sizeof(t), "m%d", i);
			seal(p.si, t, &many[i]);
		}
		CHECK_EQ_INT(open_msg(p.sr, many[69].b, many[69].len, got, sizeof(got)), CHAT_OK);
		for (int i = 0; i < 69; i++) {
			int rc = open_msg(p.sr, many[i].b, many[i].len, got, sizeof(got));
			CHECK_EQ_INT(rc, i < 6 ? CHAT_ERR_REPLAY : CHAT_OK);
			opened += rc == CHAT_OK;
			if (i == 0)
				CHECK_STR_CONTAINS(p.hr.last_log, "too old");
		}
		CHECK_EQ_INT(opened, 63);
		for (int i = 0; i < 70; i++)
			CHECK_EQ_INT(open_msg(p.sr, many[i].b, many[i].len, got, sizeof(got)),
			             CHAT_ERR_REPLAY);
	}
	CHECK_EQ_INT(open_msg(p.sr, m3.b, m3.len, got, sizeof(got)), CHAT_ERR_REPLAY);
	/* A message of ours reflected back, a message of the other direction. */
	seal(p.sr, "to alice", &m);
	CHECK_EQ_INT(open_msg(p.sr, m.b, m.len, got, sizeof(got)), CHAT_ERR_INTEGRITY);
	CHECK_EQ_INT(open_msg(p.si, m.b, m.len, got, sizeof(got)), CHAT_OK);
	/* open_at is open. */
	seal(p.si, "stored", &m);
	{
		struct chat_buf d = { (uint8_t *)got, sizeof(got), 0 };
		CHECK_EQ_INT(ops->open_at(p.sr, 12345, m.len, &d, m.b), CHAT_OK);
		CHECK_EQ_INT(d.len, 6);
	}
	delivers(p.si, p.sr, "still fine");
	pair_free(&p);
}

static void test_save_load(void)
{
	struct pair p;
	uint8_t blob[2048], copy[2048];
	struct chat_buf d = { blob, sizeof(blob), 0 };
	struct chat_cipher_params pr = params(CHAT_ROLE_RESPONDER, &BOB, "alice", NULL, 0, BIND);
	void *s = NULL;
	struct msg m, m2;
	char got[64];

	pair_new(&p, NULL, 0, NULL, 0, BIND, BIND);
	CHECK_EQ_INT(ops->session_save(p.sr, &d), CHAT_ERR_STATE);
	pair_free(&p);

	established_pair(&p);
	delivers(p.si, p.sr, "before");
	seal(p.si, "old", &m);
	seal(p.si, "before 2", &m2);
	CHECK_EQ_INT(open_msg(p.sr, m2.b, m2.len, got, sizeof(got)), CHAT_OK);
	{
		struct chat_buf small = { blob, 50, 0 };
		CHECK_EQ_INT(ops->session_save(p.sr, &small), CHAT_ERR_NOSPACE);
	}
	CHECK_EQ_INT(ops->session_save(p.sr, &d), CHAT_OK);
	CHECK_EQ_INT(ops->session_load(&p.hr.h, &pr, d.len, blob, &s), CHAT_OK);
	ops->session_free(p.sr);
	p.sr = s;
	delivers(p.si, p.sr, "after");
	delivers(p.sr, p.si, "reply after");
	/* The window was saved: the late one opens once, nothing opens twice. */
	CHECK_EQ_INT(open_msg(p.sr, m.b, m.len, got, sizeof(got)), CHAT_OK);
	CHECK(strcmp(got, "old") == 0);
	CHECK_EQ_INT(open_msg(p.sr, m.b, m.len, got, sizeof(got)), CHAT_ERR_REPLAY);
	CHECK_EQ_INT(open_msg(p.sr, m2.b, m2.len, got, sizeof(got)), CHAT_ERR_REPLAY);
	{
		char fa[64], fb[64];
		uint8_t k[RSA_PUB_MAX];
		struct chat_buf kd = { k, sizeof(k), 0 };
		CHECK_EQ_INT(ops->fingerprint(p.si, sizeof(fa), fa), CHAT_OK);
		CHECK_EQ_INT(ops->fingerprint(p.sr, sizeof(fb), fb), CHAT_OK);
		CHECK(strcmp(fa, fb) == 0);
		CHECK_EQ_INT(ops->peer_identity(p.sr, &kd), CHAT_OK);
		CHECK(kd.len == sizeof(alice_pub) && memcmp(k, alice_pub, kd.len) == 0);
	}

	/* Refused: other ids, role, binding, own key, pin, a changed header or
	 * digest, any length. */
	struct chat_cipher_params o;
	o = params(CHAT_ROLE_RESPONDER, &BOB, "carol", NULL, 0, BIND);
	CHECK_EQ_INT(ops->session_load(&p.hr.h, &o, d.len, blob, &s), CHAT_ERR_MALFORMED);
	o = params(CHAT_ROLE_INITIATOR, &BOB, "alice", NULL, 0, BIND);
	CHECK_EQ_INT(ops->session_load(&p.hr.h, &o, d.len, blob, &s), CHAT_ERR_MALFORMED);
	o = params(CHAT_ROLE_RESPONDER, &BOB, "alice", NULL, 0, "offer:rsa");
	CHECK_EQ_INT(ops->session_load(&p.hr.h, &o, d.len, blob, &s), CHAT_ERR_MALFORMED);
	o = params(CHAT_ROLE_RESPONDER, &MALLORY, "alice", NULL, 0, BIND);
	o.local_id = "bob";
	CHECK_EQ_INT(ops->session_load(&p.hr.h, &o, d.len, blob, &s), CHAT_ERR_MALFORMED);
	o = params(CHAT_ROLE_RESPONDER, &BOB, "alice", mallory_pub, sizeof(mallory_pub), BIND);
	CHECK_EQ_INT(ops->session_load(&p.hr.h, &o, d.len, blob, &s), CHAT_ERR_MALFORMED);
	o = params(CHAT_ROLE_RESPONDER, &BOB, "alice", alice_pub, sizeof(alice_pub), BIND);
	CHECK_EQ_INT(ops->session_load(&p.hr.h, &o, d.len, blob, &s), CHAT_OK);
	ops->session_free(s);
	for (size_t i = 0; i < 5 + RSA_HASH_LEN; i++) {
		memcpy(copy, blob, d.len);
		copy[i] ^= 0x40;
		CHECK_EQ_INT(ops->session_load(&p.hr.h, &pr, d.len, copy, &s), CHAT_ERR_MALFORMED);
	}
	for (size_t len = 0; len < d.len; len += 7)
		CHECK_EQ_INT(ops->session_load(&p.hr.h, &pr, len, blob, &s), CHAT_ERR_MALFORMED);
	CHECK(s == NULL);
	pair_free(&p);
}

/* ---------------------------------------------------------------------------
 * No forward secrecy: a recorded conversation, opened later with the
 * stolen private keys, by code that knows only the wire format and the key
 * schedule of docs/suites/rsa.md (not the plugin's functions).
 */

static void lp(struct sha256_ctx *c, size_t n, const void *p)
{
	uint8_t be[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };

	sha256_update(c, 4, be);
	sha256_update(c, n, p);
}

/* r = c^d mod n, textbook RSA with GMP, into 384 bytes. */
static void steal_r(const uint8_t *priv, const uint8_t *pub, const uint8_t *c, uint8_t *r)
{
	mpz_t n, e, d, x;

	mpz_inits(n, e, d, x, NULL);
	doc_pub(pub, n, e);
	doc_priv_d(priv, d);
	mpz_import(x, RSA_BYTES, 1, 1, 0, 0, c);
	mpz_powm(x, x, d, n);
	memset(r, 0, RSA_BYTES);
	mpz_export(r + RSA_BYTES - mpz_sizeinbase(x, 256), NULL, 1, 1, 0, 0, x);
	mpz_clears(n, e, d, x, NULL);
}

/* Keys from the recording and the two r values; returns how many of the
 * recorded sealed messages (I->R first, then R->I) it opened correctly. */
static int attack(const struct pair *p, const uint8_t r_r[RSA_BYTES], const uint8_t r_i[RSA_BYTES],
                  int n, const struct msg *sealed, const int *dir, const char *const *texts)
{
	struct sha256_ctx c;
	uint8_t th[32], ikm[2 * RSA_BYTES], okm[64];
	int opened = 0;

	sha256_init(&c);
	lp(&c, 11, "chat-rsa-v1");
	lp(&c, 3, "rsa");
	lp(&c, strlen(BIND), BIND);
	lp(&c, 5, "alice");
	lp(&c, 3, "bob");
	lp(&c, p->m1.len, p->m1.b);
	lp(&c, p->m2.len - RSA_BYTES, p->m2.b);
	lp(&c, RSA_BYTES, p->m2.b + p->m2.len - RSA_BYTES);
	lp(&c, 1 + RSA_BYTES, p->m3.b);
	lp(&c, RSA_BYTES, p->m3.b + 1 + RSA_BYTES);
	sha256_digest(&c, 32, th);
	memcpy(ikm, r_r, RSA_BYTES);
	memcpy(ikm + RSA_BYTES, r_i, RSA_BYTES);
	my_hkdf(32, th, sizeof(ikm), ikm, 16, (const uint8_t *)"chat-rsa-v1 keys", 64, okm);
	for (int i = 0; i < n; i++) {
		const struct msg *m = &sealed[i];
		struct gcm_aes256_ctx g;
		uint8_t iv[12] = { 0 }, tag[16], pt[256];
		size_t len = m->len - 25;

		memcpy(iv + 4, m->b + 1, 8);
		gcm_aes256_set_key(&g, dir[i] ? okm + 32 : okm);
		gcm_aes256_set_iv(&g, 12, iv);
		gcm_aes256_update(&g, 9, m->b);
		gcm_aes256_decrypt(&g, len, pt, m->b + 9);
		gcm_aes256_digest(&g, 16, tag);
		if (memcmp(tag, m->b + 9 + len, 16) == 0 && len == strlen(texts[i]) &&
		    memcmp(pt, texts[i], len) == 0)
			opened++;
	}
	return opened;
}

/* The recorded signatures verify against the documented digests, with the
 * keys read from the documented encoding. */
static bool sig_ok(const uint8_t *pub, struct sha256_ctx *th, const char *label,
                   const uint8_t *sig)
{
	struct sha256_ctx c = *th;
	struct rsa_public_key k;
	uint8_t d[32];
	mpz_t x;
	bool ok;

	lp(&c, strlen(label), label);
	sha256_digest(&c, 32, d);
	rsa_public_key_init(&k);
	doc_pub(pub, k.n, k.e);
	CHECK(rsa_public_key_prepare(&k));
	mpz_init(x);
	mpz_import(x, RSA_BYTES, 1, 1, 0, 0, sig);
	ok = rsa_pss_sha256_verify_digest(&k, 32, d, x);
	mpz_clear(x);
	rsa_public_key_clear(&k);
	return ok;
}

static void check_recorded_signatures(const struct pair *p)
{
	struct sha256_ctx c;
	const uint8_t *sig_r = p->m2.b + p->m2.len - RSA_BYTES, *sig_i = p->m3.b + 1 + RSA_BYTES;

	sha256_init(&c);
	lp(&c, 11, "chat-rsa-v1");
	lp(&c, 3, "rsa");
	lp(&c, strlen(BIND), BIND);
	lp(&c, 5, "alice");
	lp(&c, 3, "bob");
	lp(&c, p->m1.len, p->m1.b);
	lp(&c, p->m2.len - RSA_BYTES, p->m2.b);
	CHECK(sig_ok(bob_pub, &c, "responder signature", sig_r));
	CHECK(!sig_ok(bob_pub, &c, "initiator signature", sig_r));
	CHECK(!sig_ok(alice_pub, &c, "responder signature", sig_r));
	lp(&c, RSA_BYTES, sig_r);
	lp(&c, 1 + RSA_BYTES, p->m3.b);
	CHECK(sig_ok(alice_pub, &c, "initiator signature", sig_i));
	CHECK(!sig_ok(alice_pub, &c, "responder signature", sig_i));
}

static void test_no_forward_secrecy(void)
{
	static const char *const texts[] = { "meet at 9", "the code is 4711", "ok, bring it" };
	static const int dir[] = { 0, 0, 1 };
	struct pair p;
	struct msg sealed[3];
	uint8_t r_r[RSA_BYTES], r_i[RSA_BYTES], guess[RSA_BYTES];
	int who;

	/* The recording: every handshake message and every sealed message. */
	pair_new(&p, alice_pub, sizeof(alice_pub), bob_pub, sizeof(bob_pub), BIND, BIND);
	CHECK_EQ_INT(run_hs(&p, NULL, &who), CHAT_HS_ESTABLISHED);
	for (int i = 0; i < 3; i++) {
		char got[64];
		seal(dir[i] ? p.sr : p.si, texts[i], &sealed[i]);
		CHECK_EQ_INT(open_msg(dir[i] ? p.si : p.sr, sealed[i].b, sealed[i].len, got,
		                      sizeof(got)), CHAT_OK);
	}
	pair_free(&p); /* the sessions are over and wiped */
	check_recorded_signatures(&p);

	/* Later, both private keys are stolen (both keystores): c_R is in the
	 * reply, to Alice's key; c_I is in the finish, to Bob's. */
	size_t c_r_off = 1 + 2 + sizeof(bob_pub) + RSA_NONCE_LEN;
	steal_r(alice_priv, alice_pub, p.m2.b + c_r_off, r_r);
	steal_r(bob_priv, bob_pub, p.m3.b + 1, r_i);
	CHECK_EQ_INT(attack(&p, r_r, r_i, 3, sealed, dir, texts), 3);

	/* With one key only, the other r is missing: nothing opens.  Each
	 * stolen key gives one of the two r values; keys need both. */
	memset(guess, 0, sizeof(guess));
	CHECK_EQ_INT(attack(&p, r_r, guess, 3, sealed, dir, texts), 0);
	CHECK_EQ_INT(attack(&p, guess, r_i, 3, sealed, dir, texts), 0);
	/* And Mallory's key opens nothing of it. */
	steal_r(mallory_priv, mallory_pub, p.m3.b + 1, guess);
	CHECK_EQ_INT(attack(&p, r_r, guess, 3, sealed, dir, texts), 0);
}

int main(void)
{
	ops = chat_plugin_entry()->ops.cipher;
	test_descriptor();
	test_pss_wycheproof();
	test_hkdf();
	test_kem();
	test_keygen();
	test_handshakes();
	test_tampering();
	test_wrong_size_key();
	test_nospace();
	test_messages();
	test_save_load();
	test_no_forward_secrecy();
	return test_done("rsa");
}
