/* rc4dh: RC4 against RFC 6229 through the suite's own keystream code, the
 * RFC 3526 group and the DH code against GMP's reference mpz_powm, then the
 * plugin itself, loaded by the core's loader and driven in one process with a
 * deterministic RNG: handshake, the key schedule re-derived independently,
 * streams in step, loss, replay, the attacks that work (bit flipping, offset
 * rewriting, a man in the middle) and the state machine. */
#define _GNU_SOURCE /* memmem */

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include <gmp.h>
#include <nettle/arcfour.h>
#include <nettle/hkdf.h>
#include <nettle/hmac.h>
#include <nettle/sha2.h>

#include "host.h"
#include "loader.h"
#include "paths.h"
#include "rc4dh_internal.h"
#include "testutils.h"

#define HS_LEN (1 + RC4DH_DH_BYTES)
#define HDR 8                          /* the stream offset in front of each message */
#define GAP_MAX ((uint64_t)1 << 20)    /* rc4dh.c: RC4DH_GAP_MAX, one message's skip */
#define SKIP_RATIO 8                   /* rc4dh.c: RC4DH_SKIP_RATIO */
#define SKIP_FREE ((uint64_t)256 << 10) /* rc4dh.c: RC4DH_SKIP_FREE */
#define MAX_MSG (60 * 1024)

static const struct chat_plugin *desc;
static const struct chat_cipher_ops *ops;
static uint8_t pool[2 * 65536];        /* random text to cut messages from */

static const uint8_t binding[] =
	"offer=aescbc-hmac,rc4dh,xor-demo;accept=rc4dh,xor-demo;choice=rc4dh";

/* ======== RC4: RFC 6229 ======== */

/* RFC 6229, section 2 "Test Vectors for RC4": 16 keystream bytes at each
 * offset, copied line by line from the RFC text (keys 0x0102030405, the
 * 40-bit 0x833222772a, the 128-bit and the 256-bit key of the second group). */
static const struct {
	const char *key;
	const char *lines[18];
} rfc6229[] = {
	{ "0102030405", /* Key length: 40 bits. */
	  {
		"DEC    0 HEX    0:  b2 39 63 05  f0 3d c0 27   cc c3 52 4a  0a 11 18 a8",
		"DEC   16 HEX   10:  69 82 94 4f  18 fc 82 d5   89 c4 03 a4  7a 0d 09 19",
		"DEC  240 HEX   f0:  28 cb 11 32  c9 6c e2 86   42 1d ca ad  b8 b6 9e ae",
		"DEC  256 HEX  100:  1c fc f6 2b  03 ed db 64   1d 77 df cf  7f 8d 8c 93",
		"DEC  496 HEX  1f0:  42 b7 d0 cd  d9 18 a8 a3   3d d5 17 81  c8 1f 40 41",
		"DEC  512 HEX  200:  64 59 84 44  32 a7 da 92   3c fb 3e b4  98 06 61 f6",
		"DEC  752 HEX  2f0:  ec 10 32 7b  de 2b ee fd   18 f9 27 76  80 45 7e 22",
		"DEC  768 HEX  300:  eb 62 63 8d  4f 0b a1 fe   9f ca 20 e0  5b f8 ff 2b",
		"DEC 1008 HEX  3f0:  45 12 90 48  e6 a0 ed 0b   56 b4 90 33  8f 07 8d a5",
		"DEC 1024 HEX  400:  30 ab bc c7  c2 0b 01 60   9f 23 ee 2d  5f 6b b7 df",
		"DEC 1520 HEX  5f0:  32 94 f7 44  d8 f9 79 05   07 e7 0f 62  e5 bb ce ea",
		"DEC 1536 HEX  600:  d8 72 9d b4  18 82 25 9b   ee 4f 82 53  25 f5 a1 30",
		"DEC 2032 HEX  7f0:  1e b1 4a 0c  13 b3 bf 47   fa 2a 0b a9  3a d4 5b 8b",
		"DEC 2048 HEX  800:  cc 58 2f 8b  a9 f2 65 e2   b1 be 91 12  e9 75 d2 d7",
		"DEC 3056 HEX  bf0:  f2 e3 0f 9b  d1 02 ec bf   75 aa ad e9  bc 35 c4 3c",
		"DEC 3072 HEX  c00:  ec 0e 11 c4  79 dc 32 9d   c8 da 79 68  fe 96 56 81",
		"DEC 4080 HEX  ff0:  06 83 26 a2  11 84 16 d2   1f 9d 04 b2  cd 1c a0 50",
		"DEC 4096 HEX 1000:  ff 25 b5 89  95 99 67 07   e5 1f bd f0  8b 34 d8 75",
	  } },
	{ "833222772a", /* Key length: 40 bits. */
	  {
		"DEC    0 HEX    0:  80 ad 97 bd  c9 73 df 8a   2e 87 9e 92  a4 97 ef da",
		"DEC   16 HEX   10:  20 f0 60 c2  f2 e5 12 65   01 d3 d4 fe  a1 0d 5f c0",
		"DEC  240 HEX   f0:  fa a1 48 e9  90 46 18 1f   ec 6b 20 85  f3 b2 0e d9",
		"DEC  256 HEX  100:  f0 da f5 ba  b3 d5 96 83   98 57 84 6f  73 fb fe 5a",
		"DEC  496 HEX  1f0:  1c 7e 2f c4  63 92 32 fe   29 75 84 b2  96 99 6b c8",
		"DEC  512 HEX  200:  3d b9 b2 49  40 6c c8 ed   ff ac 55 cc  d3 22 ba 12",
		"DEC  752 HEX  2f0:  e4 f9 f7 e0  06 61 54 bb   d1 25 b7 45  56 9b c8 97",
		"DEC  768 HEX  300:  75 d5 ef 26  2b 44 c4 1a   9c f6 3a e1  45 68 e1 b9",
		"DEC 1008 HEX  3f0:  6d a4 53 db  f8 1e 82 33   4a 3d 88 66  cb 50 a1 e3",
		"DEC 1024 HEX  400:  78 28 d0 74  11 9c ab 5c   22 b2 94 d7  a9 bf a0 bb",
		"DEC 1520 HEX  5f0:  ad b8 9c ea  9a 15 fb e6   17 29 5b d0  4b 8c a0 5c",
		"DEC 1536 HEX  600:  62 51 d8 7f  d4 aa ae 9a   7e 4a d5 c2  17 d3 f3 00",
		"DEC 2032 HEX  7f0:  e7 11 9b d6  dd 9b 22 af   e8 f8 95 85  43 28 81 e2",
		"DEC 2048 HEX  800:  78 5b 60 fd  7e c4 e9 fc   b6 54 5f 35  0d 66 0f ab",
		"DEC 3056 HEX  bf0:  af ec c0 37  fd b7 b0 83   8e b3 d7 0b  cd 26 83 82",
		"DEC 3072 HEX  c00:  db c1 a7 b4  9d 57 35 8c   c9 fa 6d 61  d7 3b 7c f0",
		"DEC 4080 HEX  ff0:  63 49 d1 26  a3 7a fc ba   89 79 4f 98  04 91 4f dc",
		"DEC 4096 HEX 1000:  bf 42 c3 01  8c 2f 7c 66   bf de 52 49  75 76 81 15",
	  } },
	{ "ebb46227c6cc8b37641910833222772a", /* Key length: 128 bits. */
	  {
		"DEC    0 HEX    0:  72 0c 94 b6  3e df 44 e1   31 d9 50 ca  21 1a 5a 30",
		"DEC   16 HEX   10:  c3 66 fd ea  cf 9c a8 04   36 be 7c 35  84 24 d2 0b",
		"DEC  240 HEX   f0:  b3 39 4a 40  aa bf 75 cb   a4 22 82 ef  25 a0 05 9f",
		"DEC  256 HEX  100:  48 47 d8 1d  a4 94 2d bc   24 9d ef c4  8c 92 2b 9f",
		"DEC  496 HEX  1f0:  08 12 8c 46  9f 27 53 42   ad da 20 2b  2b 58 da 95",
		"DEC  512 HEX  200:  97 0d ac ef  40 ad 98 72   3b ac 5d 69  55 b8 17 61",
		"DEC  752 HEX  2f0:  3c b8 99 93  b0 7b 0c ed   93 de 13 d2  a1 10 13 ac",
		"DEC  768 HEX  300:  ef 2d 67 6f  15 45 c2 c1   3d c6 80 a0  2f 4a db fe",
		"DEC 1008 HEX  3f0:  b6 05 95 51  4f 24 bc 9f   e5 22 a6 ca  d7 39 36 44",
		"DEC 1024 HEX  400:  b5 15 a8 c5  01 17 54 f5   90 03 05 8b  db 81 51 4e",
		"DEC 1520 HEX  5f0:  3c 70 04 7e  8c bc 03 8e   3b 98 20 db  60 1d a4 95",
		"DEC 1536 HEX  600:  11 75 da 6e  e7 56 de 46   a5 3e 2b 07  56 60 b7 70",
		"DEC 2032 HEX  7f0:  00 a5 42 bb  a0 21 11 cc   2c 65 b3 8e  bd ba 58 7e",
		"DEC 2048 HEX  800:  58 65 fd bb  5b 48 06 41   04 e8 30 b3  80 f2 ae de",
		"DEC 3056 HEX  bf0:  34 b2 1a d2  ad 44 e9 99   db 2d 7f 08  63 f0 d9 b6",
		"DEC 3072 HEX  c00:  84 a9 21 8f  c3 6e 8a 5f   2c cf be ae  53 a2 7d 25",
		"DEC 4080 HEX  ff0:  a2 22 1a 11  b8 33 cc b4   98 a5 95 40  f0 54 5f 4a",
		"DEC 4096 HEX 1000:  5b be b4 78  7d 59 e5 37   3f db ea 6c  6f 75 c2 9b",
	  } },
	{ "1ada31d5cf688221c109163908ebe51debb46227c6cc8b37641910833222772a", /* Key length: 256 bits. */
	  {
		"DEC    0 HEX    0:  dd 5b cb 00  18 e9 22 d4   94 75 9d 7c  39 5d 02 d3",
		"DEC   16 HEX   10:  c8 44 6f 8f  77 ab f7 37   68 53 53 eb  89 a1 c9 eb",
		"DEC  240 HEX   f0:  af 3e 30 f9  c0 95 04 59   38 15 15 75  c3 fb 90 98",
		"DEC  256 HEX  100:  f8 cb 62 74  db 99 b8 0b   1d 20 12 a9  8e d4 8f 0e",
		"DEC  496 HEX  1f0:  25 c3 00 5a  1c b8 5d e0   76 25 98 39  ab 71 98 ab",
		"DEC  512 HEX  200:  9d cb c1 83  e8 cb 99 4b   72 7b 75 be  31 80 76 9c",
		"DEC  752 HEX  2f0:  a1 d3 07 8d  fa 91 69 50   3e d9 d4 49  1d ee 4e b2",
		"DEC  768 HEX  300:  85 14 a5 49  58 58 09 6f   59 6e 4b cd  66 b1 06 65",
		"DEC 1008 HEX  3f0:  5f 40 d5 9e  c1 b0 3b 33   73 8e fa 60  b2 25 5d 31",
		"DEC 1024 HEX  400:  34 77 c7 f7  64 a4 1b ac   ef f9 0b f1  4f 92 b7 cc",
		"DEC 1520 HEX  5f0:  ac 4e 95 36  8d 99 b9 eb   78 b8 da 8f  81 ff a7 95",
		"DEC 1536 HEX  600:  8c 3c 13 f8  c2 38 8b b7   3f 38 57 6e  65 b7 c4 46",
		"DEC 2032 HEX  7f0:  13 c4 b9 c1  df b6 65 79   ed dd 8a 28  0b 9f 73 16",
		"DEC 2048 HEX  800:  dd d2 78 20  55 01 26 69   8e fa ad c6  4b 64 f6 6e",
		"DEC 3056 HEX  bf0:  f0 8f 2e 66  d2 8e d1 43   f3 a2 37 cf  9d e7 35 59",
		"DEC 3072 HEX  c00:  9e a3 6c 52  55 31 b8 80   ba 12 43 34  f5 7b 0b 70",
		"DEC 4080 HEX  ff0:  d5 a3 9e 3d  fc c5 02 80   ba c4 a6 b5  aa 0d ca 7d",
		"DEC 4096 HEX 1000:  37 0b 1c 1f  e6 55 91 6d   97 fd 0d 47  ca 1d 72 b8",
	  } },
};

static unsigned rfc_line(const char *line, uint8_t *want)
{
	unsigned dec = 0, hex = 1;
	const char *colon = strchr(line, ':');
	uint8_t *b;
	size_t n;

	CHECK(sscanf(line, "DEC %u HEX %x:", &dec, &hex) == 2 && dec == hex && colon);
	b = test_hex(colon + 1, &n);
	CHECK_EQ_INT(n, 16);
	memcpy(want, b, 16);
	free(b);
	return dec;
}

static void test_rc4_rfc6229(void)
{
	size_t keys = sizeof(rfc6229) / sizeof(rfc6229[0]), checked = 0;

	for (size_t v = 0; v < keys; v++) {
		uint8_t ks[4096 + 16], want[16], buf[16], plain[16];
		struct rc4dh_stream s;
		size_t klen;
		uint8_t *key = test_hex(rfc6229[v].key, &klen);

		/* One continuous stream read in odd-sized pieces, in place. */
		memset(ks, 0, sizeof(ks));
		rc4dh_stream_init(&s, klen, key, 0);
		for (size_t o = 0; o < sizeof(ks);) {
			size_t k = 1 + test_rand() % 97;

			if (k > sizeof(ks) - o)
				k = sizeof(ks) - o;
			rc4dh_stream_crypt(&s, k, ks + o, ks + o);
			o += k;
		}
		CHECK_EQ_INT(s.pos, sizeof(ks));

		for (size_t i = 0; i < 18; i++) {
			unsigned off = rfc_line(rfc6229[v].lines[i], want);

			CHECK_MEM(ks + off, want, 16);

			/* Dropping off bytes, then reading: the RFC's bytes at off. */
			rc4dh_stream_init(&s, klen, key, off);
			CHECK_EQ_INT(s.pos, 0);
			memset(buf, 0, sizeof(buf));
			rc4dh_stream_crypt(&s, sizeof(buf), buf, buf);
			CHECK_MEM(buf, want, 16);
			CHECK_EQ_INT(s.pos, 16);

			/* Skipping off bytes after no drop, and half of each. */
			rc4dh_stream_init(&s, klen, key, 0);
			rc4dh_stream_skip(&s, off);
			memset(buf, 0, sizeof(buf));
			rc4dh_stream_crypt(&s, sizeof(buf), buf, buf);
			CHECK_MEM(buf, want, 16);
			CHECK_EQ_INT(s.pos, off + 16);

			rc4dh_stream_init(&s, klen, key, off / 2);
			rc4dh_stream_skip(&s, off - off / 2);
			/* Encrypting text (dst != src) XORs the same keystream. */
			for (size_t k = 0; k < sizeof(plain); k++)
				plain[k] = (uint8_t)('a' + k);
			rc4dh_stream_crypt(&s, sizeof(plain), buf, plain);
			for (size_t k = 0; k < sizeof(plain); k++)
				CHECK_EQ_INT(buf[k], plain[k] ^ want[k]);
			CHECK_EQ_INT(s.pos, off - off / 2 + 16);
			checked++;
		}
		rc4dh_stream_wipe(&s);
		free(key);
	}
	CHECK_EQ_INT(checked, keys * 18);
	printf("RFC 6229: %zu keys x 18 offsets, each by drop, by skip and continuous\n", keys);
}

/* Drops and skips beyond the RFC's 4 KiB, across the code's 4 KiB chunks,
 * against Nettle's arcfour used directly. */
static void test_rc4_long_drop(void)
{
	static const uint64_t drops[] = { 4095, 4096, 4097, 8191, 8193, 100000, 1048576 };
	static const uint8_t key[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
	                                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
	                                 31, 32 };

	for (size_t i = 0; i < sizeof(drops) / sizeof(drops[0]); i++) {
		struct arcfour_ctx ref;
		struct rc4dh_stream s;
		uint8_t want[64], got[64], *zero = calloc(1, drops[i] + sizeof(want));

		CHECK(zero != NULL);
		if (!zero)
			return;
		arcfour_set_key(&ref, sizeof(key), key);
		arcfour_crypt(&ref, drops[i] + sizeof(want), zero, zero);
		memcpy(want, zero + drops[i], sizeof(want));
		free(zero);

		rc4dh_stream_init(&s, sizeof(key), key, drops[i]);
		memset(got, 0, sizeof(got));
		rc4dh_stream_crypt(&s, sizeof(got), got, got);
		CHECK_MEM(got, want, sizeof(want));

		rc4dh_stream_init(&s, sizeof(key), key, 7);
		rc4dh_stream_skip(&s, drops[i] - 7);
		memset(got, 0, sizeof(got));
		rc4dh_stream_crypt(&s, sizeof(got), got, got);
		CHECK_MEM(got, want, sizeof(want));
		CHECK_EQ_INT(s.pos, drops[i] - 7 + sizeof(got));
	}
}

/* ======== Diffie-Hellman: RFC 3526 group 14 ======== */

static void mpz_from(mpz_t x, size_t len, const uint8_t *src)
{
	mpz_import(x, len, 1, 1, 1, 0, src);
}

/* Fixed-length big-endian; x must fit. */
static void mpz_to(size_t len, uint8_t *dst, const mpz_t x)
{
	size_t n = (mpz_sizeinbase(x, 2) + 7) / 8;

	memset(dst, 0, len);
	CHECK(n <= len);
	if (n <= len && mpz_sgn(x))
		mpz_export(dst + len - n, NULL, 1, 1, 1, 0, x);
}

/* r = 2^bits * atan(1/x), truncated, by its Taylor series. */
static void atan_inv(mpz_t r, unsigned long x, mp_bitcnt_t bits)
{
	mpz_t pw, term;

	mpz_inits(pw, term, NULL);
	mpz_set_ui(r, 0);
	mpz_set_ui(pw, 1);
	mpz_mul_2exp(pw, pw, bits);
	mpz_tdiv_q_ui(pw, pw, x);
	for (unsigned long k = 0; mpz_sgn(pw); k++) {
		mpz_tdiv_q_ui(term, pw, 2 * k + 1);
		if (k & 1)
			mpz_sub(r, r, term);
		else
			mpz_add(r, r, term);
		mpz_tdiv_q_ui(pw, pw, x * x);
	}
	mpz_clears(pw, term, NULL);
}

/* RFC 3526 section 3 defines the prime by a formula; recompute it (pi by
 * Machin's formula, 64 guard bits) instead of trusting the hex, and check
 * what the suite's security argument relies on: p and (p-1)/2 are prime and
 * 2 generates the subgroup of prime order q. */
static void test_group(void)
{
	const mp_bitcnt_t guard = 64;
	mpz_t pi, t, p, q, r;
	uint8_t bytes[RC4DH_DH_BYTES];

	mpz_inits(pi, t, p, q, r, NULL);
	atan_inv(pi, 5, 1918 + guard);
	mpz_mul_ui(pi, pi, 16);
	atan_inv(t, 239, 1918 + guard);
	mpz_submul_ui(pi, t, 4);
	mpz_fdiv_q_2exp(pi, pi, guard);            /* [2^1918 pi] */
	mpz_add_ui(t, pi, 124476);
	mpz_mul_2exp(p, t, 64);                    /* 2^64 * {[2^1918 pi] + 124476} */
	mpz_setbit(p, 2048);                       /* + 2^2048 (no overlap: t < 2^1920) */
	mpz_set_ui(t, 1);
	mpz_mul_2exp(t, t, 1984);
	mpz_sub(p, p, t);                          /* - 2^1984 */
	mpz_sub_ui(p, p, 1);                       /* - 1 */
	mpz_to(sizeof(bytes), bytes, p);
	CHECK_MEM(bytes, rc4dh_group_p, sizeof(bytes));
	CHECK_EQ_INT(mpz_sizeinbase(p, 2), 2048);

	mpz_from(p, sizeof(rc4dh_group_p), rc4dh_group_p);
	CHECK(mpz_probab_prime_p(p, 25) > 0);
	mpz_sub_ui(q, p, 1);
	mpz_fdiv_q_2exp(q, q, 1);
	CHECK(mpz_probab_prime_p(q, 25) > 0);
	mpz_set_ui(t, 2);
	mpz_powm(r, t, q, p);
	CHECK(mpz_cmp_ui(r, 1) == 0);
	mpz_clears(pi, t, p, q, r, NULL);
	printf("RFC 3526 group 14: p matches its defining formula, p and (p-1)/2 prime, ord(2) = q\n");
}

static void fill_rand(size_t len, uint8_t *dst)
{
	for (size_t i = 0; i < len; i++)
		dst[i] = (uint8_t)(test_rand() >> 56);
}

/* p + delta as 256 big-endian bytes (delta may be negative). */
static void p_plus(long delta, uint8_t *dst)
{
	mpz_t x;

	mpz_init(x);
	mpz_from(x, sizeof(rc4dh_group_p), rc4dh_group_p);
	if (delta >= 0)
		mpz_add_ui(x, x, (unsigned long)delta);
	else
		mpz_sub_ui(x, x, (unsigned long)-delta);
	mpz_to(RC4DH_DH_BYTES, dst, x);
	mpz_clear(x);
}

static void small_value(unsigned v, uint8_t *dst)
{
	memset(dst, 0, RC4DH_DH_BYTES);
	dst[RC4DH_DH_BYTES - 1] = (uint8_t)v;
}

static void test_dh(void)
{
	uint8_t a[RC4DH_EXP_BYTES], b[RC4DH_EXP_BYTES], A[RC4DH_DH_BYTES], B[RC4DH_DH_BYTES];
	uint8_t s1[RC4DH_DH_BYTES], s2[RC4DH_DH_BYTES], want[RC4DH_DH_BYTES], v[RC4DH_DH_BYTES];
	mpz_t p, g, e, x, r;

	mpz_inits(p, g, e, x, r, NULL);
	mpz_from(p, sizeof(rc4dh_group_p), rc4dh_group_p);
	mpz_set_ui(g, 2);

	/* Two parties agree, and both agree with GMP's reference powm. */
	for (int round = 0; round < 4; round++) {
		fill_rand(sizeof(a), a);
		fill_rand(sizeof(b), b);
		if (round == 1)
			memset(a, 0xff, sizeof(a)); /* 2^512 - 1 */
		if (round == 2)
			memset(b, 0, sizeof(b) - 1); /* leading zero limbs */
		CHECK_EQ_INT(rc4dh_dh_public(a, A), CHAT_OK);
		CHECK_EQ_INT(rc4dh_dh_public(b, B), CHAT_OK);
		mpz_from(e, sizeof(a), a);
		mpz_powm(r, g, e, p);
		mpz_to(sizeof(want), want, r);
		CHECK_MEM(A, want, sizeof(want));

		CHECK_EQ_INT(rc4dh_dh_shared(a, s1, B), CHAT_OK);
		CHECK_EQ_INT(rc4dh_dh_shared(b, s2, A), CHAT_OK);
		CHECK_MEM(s1, s2, sizeof(s1));
		mpz_from(x, sizeof(B), B);
		mpz_powm(r, x, e, p);
		mpz_to(sizeof(want), want, r);
		CHECK_MEM(s1, want, sizeof(want));
	}

	/* Exponent 1 gives the generator; exponent 0 is refused, dst cleared. */
	memset(a, 0, sizeof(a));
	a[sizeof(a) - 1] = 1;
	CHECK_EQ_INT(rc4dh_dh_public(a, A), CHAT_OK);
	small_value(2, v);
	CHECK_MEM(A, v, sizeof(v));
	memset(a, 0, sizeof(a));
	memset(A, 0xaa, sizeof(A));
	CHECK_EQ_INT(rc4dh_dh_public(a, A), CHAT_ERR_INVALID);
	memset(v, 0, sizeof(v));
	CHECK_MEM(A, v, sizeof(v));

	/* The peer's value must lie in [2, p-2] and in the subgroup of order q:
	 * v^q = 1 mod p.  p-2 has order 2q (p = 7 mod 8, so -2 is a
	 * non-residue): inside the range, refused by the subgroup check. */
	mpz_t q, y;
	mpz_inits(q, y, NULL);
	mpz_sub_ui(q, p, 1);
	mpz_fdiv_q_2exp(q, q, 1);
	p_plus(-2, v);
	mpz_from(y, sizeof(v), v);
	mpz_powm(r, y, q, p);
	CHECK(mpz_cmp_ui(r, 1) != 0);         /* not of order q ... */
	mpz_mul_2exp(x, q, 1);
	mpz_powm(r, y, x, p);
	CHECK(mpz_cmp_ui(r, 1) == 0);         /* ... but of order 2q */
	fill_rand(sizeof(a), a);
	struct {
		const char *what;
		int want;
	} cases[] = {
		{ "0", CHAT_ERR_PEER_VALUE }, { "1", CHAT_ERR_PEER_VALUE },
		{ "p-1", CHAT_ERR_PEER_VALUE }, { "p", CHAT_ERR_PEER_VALUE },
		{ "p+1", CHAT_ERR_PEER_VALUE }, { "2^2048-1", CHAT_ERR_PEER_VALUE },
		{ "p-2", CHAT_ERR_PEER_VALUE }, { "non-residue", CHAT_ERR_PEER_VALUE },
		{ "2", CHAT_OK }, { "4", CHAT_OK }, { "residue", CHAT_OK }, { "2^a", CHAT_OK },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *w = cases[i].what;

		if (!strcmp(w, "0") || !strcmp(w, "1") || !strcmp(w, "2") || !strcmp(w, "4"))
			small_value((unsigned)(w[0] - '0'), v);
		else if (!strcmp(w, "2^2048-1"))
			memset(v, 0xff, sizeof(v));
		else if (!strcmp(w, "non-residue") || !strcmp(w, "residue")) {
			/* A random element, then its square (order q) or the first
			 * element from it on whose q-th power is p-1 (order 2q). */
			fill_rand(sizeof(v), v);
			v[0] &= 0x7f;
			mpz_from(y, sizeof(v), v);
			if (!strcmp(w, "residue")) {
				mpz_powm_ui(y, y, 2, p);
			} else {
				for (;;) {
					mpz_powm(r, y, q, p);
					mpz_add_ui(r, r, 1);
					if (mpz_cmp(r, p) == 0)
						break;
					mpz_add_ui(y, y, 1);
				}
			}
			mpz_to(sizeof(v), v, y);
		} else if (!strcmp(w, "2^a")) {
			CHECK_EQ_INT(rc4dh_dh_public(a, v), CHAT_OK);
		} else {
			p_plus(!strcmp(w, "p-1") ? -1 : !strcmp(w, "p-2") ? -2 : !strcmp(w, "p") ? 0 : 1,
			       v);
		}
		if (rc4dh_dh_check(v) != cases[i].want)
			fprintf(stderr, "peer value %s: check gave %d\n", w, rc4dh_dh_check(v));
		CHECK_EQ_INT(rc4dh_dh_check(v), cases[i].want);
		memset(s1, 0xaa, sizeof(s1));
		CHECK_EQ_INT(rc4dh_dh_shared(a, s1, v), cases[i].want);
		if (cases[i].want != CHAT_OK) {
			memset(want, 0, sizeof(want));
			CHECK_MEM(s1, want, sizeof(want));
		}
	}
	/* The check (Euler's criterion through the Legendre symbol) agrees with
	 * the definition, v^q mod p == 1, on random values in [2, p-2]. */
	int residues = 0;
	for (int k = 0; k < 200; k++) {
		fill_rand(sizeof(v), v);
		if (k % 2)
			memset(v, 0, RC4DH_DH_BYTES / 2); /* small ones too */
		mpz_from(y, sizeof(v), v);
		mpz_mod(y, y, p);
		if (mpz_cmp_ui(y, 2) < 0)
			continue;
		mpz_to(sizeof(v), v, y);
		mpz_powm(r, y, q, p);
		int in_q = mpz_cmp_ui(r, 1) == 0;
		residues += in_q;
		CHECK_EQ_INT(rc4dh_dh_check(v), in_q ? CHAT_OK : CHAT_ERR_PEER_VALUE);
	}
	CHECK(residues > 50 && residues < 150);
	mpz_clears(q, y, NULL);
	mpz_clears(p, g, e, x, r, NULL);
}

/* ======== the plugin, in one process ======== */

/* One end: its own host table (the plugin gets &party->host), a
 * deterministic RNG whose output is recorded, captured log lines. */
struct party {
	struct chat_host host; /* first, so callbacks can find the party */
	struct chat_host_ctx ctx;
	const char *(*config_default)(const struct chat_host *h, const char *key);
	const char *drop;      /* NULL: the plugin's declared default */
	uint64_t rng;
	int rng_mode;          /* 0 deterministic, 1 failing, 2 all zeros */
	uint8_t drawn[256];
	size_t drawn_len;
	int warns;
	char last_log[1024];
	void *s;
};

static int party_random(const struct chat_host *h, size_t len, uint8_t *dst)
{
	struct party *p = (struct party *)h;

	if (p->rng_mode == 1)
		return CHAT_ERR_RANDOM;
	for (size_t i = 0; i < len; i++) {
		p->rng ^= p->rng >> 12;
		p->rng ^= p->rng << 25;
		p->rng ^= p->rng >> 27;
		dst[i] = p->rng_mode == 2 ? 0 : (uint8_t)((p->rng * 0x2545f4914f6cdd1dull) >> 56);
	}
	if (p->drawn_len + len <= sizeof(p->drawn)) {
		memcpy(p->drawn + p->drawn_len, dst, len);
		p->drawn_len += len;
	}
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
	if (getenv("TEST_VERBOSE"))
		fprintf(stderr, "[party %p] %s\n", (void *)p, p->last_log);
}

static const char *party_config(const struct chat_host *h, const char *key)
{
	struct party *p = (struct party *)h;

	if (p->drop && !strcmp(key, "drop"))
		return p->drop;
	return p->config_default(h, key);
}

static void party_init(struct party *p, uint64_t seed, const char *drop)
{
	memset(p, 0, sizeof(*p));
	chat_host_init(&p->host, &p->ctx);
	p->ctx.plugin_name = desc->name;
	p->ctx.cfg = NULL;
	p->ctx.keys = desc->config_keys;
	p->config_default = p->host.config_get;
	p->host.random = party_random;
	p->host.log = party_log;
	p->host.config_get = party_config;
	p->rng = seed ? seed : 1;
	p->drop = drop;
}

static int party_session(struct party *p, int role, size_t blen, const uint8_t *bind)
{
	struct chat_cipher_params params = {
		.size = sizeof(params),
		.role = role,
		.local_id = role == CHAT_ROLE_INITIATOR ? "alice" : "bob",
		.peer_id = role == CHAT_ROLE_INITIATOR ? "bob" : "alice",
		.suite = "rc4dh",
		.binding = bind,
		.binding_len = blen,
	};

	return ops->session_new(&p->host, &params, &p->s);
}

static void party_free(struct party *p)
{
	ops->session_free(p->s);
	p->s = NULL;
}

/* Everything that crossed the wire, in order. */
struct wire {
	uint8_t *data;
	size_t len, cap;
};

static void wire_add(struct wire *w, size_t len, const uint8_t *src)
{
	if (!w || !len)
		return;
	if (w->len + len > w->cap) {
		size_t cap = (w->len + len) * 2;
		uint8_t *d = realloc(w->data, cap);

		if (!d)
			abort();
		w->data = d;
		w->cap = cap;
	}
	memcpy(w->data + w->len, src, len);
	w->len += len;
}

/* The whole handshake by passing buffers; 1 if every step did as specified. */
static int handshake(struct party *i, struct party *r, struct wire *w)
{
	uint8_t m1[HS_LEN + 32], m2[HS_LEN + 32], m3[32];
	struct chat_buf b1 = { m1, sizeof(m1), 0 }, b2 = { m2, sizeof(m2), 0 };
	struct chat_buf b3 = { m3, sizeof(m3), 0 };
	int ok = 1, rc;

	rc = ops->handshake(i->s, 0, &b1, NULL);
	CHECK_EQ_INT(rc, CHAT_HS_CONTINUE);
	CHECK_EQ_INT(b1.len, HS_LEN);
	ok &= rc == CHAT_HS_CONTINUE && b1.len == HS_LEN;
	wire_add(w, b1.len, m1);
	rc = ops->handshake(r->s, b1.len, &b2, m1);
	CHECK_EQ_INT(rc, CHAT_HS_ESTABLISHED);
	CHECK_EQ_INT(b2.len, HS_LEN);
	ok &= rc == CHAT_HS_ESTABLISHED && b2.len == HS_LEN;
	wire_add(w, b2.len, m2);
	rc = ops->handshake(i->s, b2.len, &b3, m2);
	CHECK_EQ_INT(rc, CHAT_HS_ESTABLISHED);
	CHECK_EQ_INT(b3.len, 0);
	ok &= rc == CHAT_HS_ESTABLISHED && b3.len == 0;
	return ok;
}

/* Seal len bytes; the caller frees the result. */
static uint8_t *seal(struct party *from, size_t len, const uint8_t *src, size_t *sealed_len)
{
	size_t cap = ops->sealed_size(from->s, len);
	uint8_t *buf = malloc(cap);
	struct chat_buf b = { buf, cap, 0 };

	if (!buf)
		abort();
	CHECK_EQ_INT(cap, len + HDR);
	CHECK_EQ_INT(ops->seal(from->s, len, &b, src), CHAT_OK);
	CHECK_EQ_INT(b.len, len + HDR);
	*sealed_len = b.len;
	return buf;
}

/* Open into a fresh buffer; returns the rc, *out (malloc'd) and *out_len. */
static int open_msg(struct party *to, size_t len, const uint8_t *src, uint8_t **out,
                    size_t *out_len)
{
	uint8_t *buf = malloc(len + 1);
	struct chat_buf b = { buf, len, 0 };
	int rc;

	if (!buf)
		abort();
	rc = ops->open(to->s, len, &b, src);
	if (rc != CHAT_OK)
		CHECK_EQ_INT(b.len, 0);
	*out = buf;
	*out_len = b.len;
	return rc;
}

/* Seal from one end, open at the other, compare. */
static int xfer(struct party *from, struct party *to, size_t len, const uint8_t *src,
                struct wire *w)
{
	size_t sl, ol;
	uint8_t *sealed = seal(from, len, src, &sl), *plain;
	int rc, ok;

	wire_add(w, sl, sealed);
	rc = open_msg(to, sl, sealed, &plain, &ol);
	CHECK_EQ_INT(rc, CHAT_OK);
	CHECK_EQ_INT(ol, len);
	ok = rc == CHAT_OK && ol == len && (len == 0 || memcmp(plain, src, len) == 0);
	CHECK(ok);
	free(sealed);
	free(plain);
	return ok;
}

static void pair_new(struct party *i, struct party *r, uint64_t si, uint64_t sr,
                     const char *drop)
{
	party_init(i, si, drop);
	party_init(r, sr, drop);
	CHECK_EQ_INT(party_session(i, CHAT_ROLE_INITIATOR, sizeof(binding) - 1, binding), CHAT_OK);
	CHECK_EQ_INT(party_session(r, CHAT_ROLE_RESPONDER, sizeof(binding) - 1, binding), CHAT_OK);
}

static void pair_free(struct party *i, struct party *r)
{
	party_free(i);
	party_free(r);
}

static void mac_update(void *ctx, size_t len, const uint8_t *src)
{
	hmac_sha256_update(ctx, len, src);
}

static void mac_digest(void *ctx, size_t len, uint8_t *dst)
{
	hmac_sha256_digest(ctx, len, dst);
}

/* The documented key schedule, computed here from the exponents the RNG
 * handed out, with Nettle directly (not the plugin's code): a keyed and
 * dropped RC4 state per direction. */
static void expected_streams(const struct party *i, const struct party *r, uint64_t drop,
                             size_t blen, const uint8_t *bind, struct arcfour_ctx *i2r,
                             struct arcfour_ctx *r2i)
{
	static const char *const labels[2] = { "initiator->responder", "responder->initiator" };
	uint8_t B[RC4DH_DH_BYTES], secret[RC4DH_DH_BYTES], prk[SHA256_DIGEST_SIZE], key[32];
	uint8_t info[20 + sizeof(binding)];
	struct hmac_sha256_ctx mac;

	CHECK(blen <= sizeof(binding));
	CHECK_EQ_INT(rc4dh_dh_public(r->drawn, B), CHAT_OK);
	CHECK_EQ_INT(rc4dh_dh_shared(i->drawn, secret, B), CHAT_OK);
	hmac_sha256_set_key(&mac, 13, (const uint8_t *)"chat-rc4dh-v1");
	hkdf_extract(&mac, mac_update, mac_digest, SHA256_DIGEST_SIZE, sizeof(secret), secret, prk);
	for (int d = 0; d < 2; d++) {
		struct arcfour_ctx *c = d == 0 ? i2r : r2i;
		uint8_t *zero = calloc(1, drop + 1);

		memcpy(info, labels[d], 20);
		if (blen)
			memcpy(info + 20, bind, blen);
		hmac_sha256_set_key(&mac, sizeof(prk), prk);
		hkdf_expand(&mac, mac_update, mac_digest, SHA256_DIGEST_SIZE, 20 + blen, info,
		            sizeof(key), key);
		arcfour_set_key(c, sizeof(key), key);
		if (!zero)
			abort();
		arcfour_crypt(c, drop, zero, zero);
		free(zero);
	}
}

static int contains(size_t hay_len, const uint8_t *hay, size_t len, const void *needle)
{
	return memmem(hay, hay_len, needle, len) != NULL;
}

/* The handshake messages are exactly version || 2^a and version || 2^b, and
 * the messages exactly offset || text XOR the documented keystream. */
static void test_key_schedule(const char *drop_text, uint64_t drop, int with_binding)
{
	struct party i, r;
	struct wire w = { 0 };
	struct arcfour_ctx i2r, r2i;
	uint8_t A[RC4DH_DH_BYTES], B[RC4DH_DH_BYTES], ks[64];
	const uint8_t *bind = with_binding ? binding : NULL;
	size_t blen = with_binding ? sizeof(binding) - 1 : 0;
	static const char *const texts[3] = { "attack at dawn", "retreat at noon", "ok" };
	size_t sent_i = 0;

	party_init(&i, 0x1111, drop_text);
	party_init(&r, 0x2222, drop_text);
	CHECK_EQ_INT(party_session(&i, CHAT_ROLE_INITIATOR, blen, bind), CHAT_OK);
	CHECK_EQ_INT(party_session(&r, CHAT_ROLE_RESPONDER, blen, bind), CHAT_OK);
	/* session_new logs nothing: the frontends warn once per conversation from
	 * the flag and the summary (one warning per event). */
	CHECK_EQ_INT(i.warns, 0);
	CHECK_EQ_INT(r.warns, 0);
	if (!handshake(&i, &r, &w))
		goto out;
	CHECK_EQ_INT(i.drawn_len, RC4DH_EXP_BYTES);
	CHECK_EQ_INT(r.drawn_len, RC4DH_EXP_BYTES);
	CHECK_EQ_INT(w.len, 2 * HS_LEN);
	CHECK_EQ_INT(rc4dh_dh_public(i.drawn, A), CHAT_OK);
	CHECK_EQ_INT(rc4dh_dh_public(r.drawn, B), CHAT_OK);
	CHECK_EQ_INT(w.data[0], 1);
	CHECK_MEM(w.data + 1, A, sizeof(A));
	CHECK_EQ_INT(w.data[HS_LEN], 1);
	CHECK_MEM(w.data + HS_LEN + 1, B, sizeof(B));

	/* The documented fingerprint: SHA-256 over tag, name, binding, A, B. */
	{
		static const char tag[] = "chat rc4dh fingerprint v1";
		uint8_t d[SHA256_DIGEST_SIZE], be[4] = { 0, 0, 0, 5 };
		struct sha256_ctx h;
		char want[32], fi[32], fr[32];

		sha256_init(&h);
		sha256_update(&h, sizeof(tag), (const uint8_t *)tag);
		sha256_update(&h, 4, be);
		sha256_update(&h, 5, (const uint8_t *)"rc4dh");
		be[2] = (uint8_t)(blen >> 8);
		be[3] = (uint8_t)blen;
		sha256_update(&h, 4, be);
		sha256_update(&h, blen, bind ? bind : (const uint8_t *)"");
		sha256_update(&h, sizeof(A), A);
		sha256_update(&h, sizeof(B), B);
		sha256_digest(&h, sizeof(d), d);
		snprintf(want, sizeof(want), "%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x", d[0],
		         d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9]);
		CHECK_EQ_INT(ops->fingerprint(i.s, sizeof(fi), fi), CHAT_OK);
		CHECK_EQ_INT(ops->fingerprint(r.s, sizeof(fr), fr), CHAT_OK);
		CHECK(!strcmp(fi, want));
		CHECK(!strcmp(fr, want));
	}

	expected_streams(&i, &r, drop, blen, bind, &i2r, &r2i);
	for (int k = 0; k < 3; k++) {
		size_t n = strlen(texts[k]), sl;
		int from_i = k != 1;
		struct party *from = from_i ? &i : &r;
		uint8_t *sealed = seal(from, n, (const uint8_t *)texts[k], &sl), *plain;
		uint64_t off = 0;

		for (int b = 0; b < 8; b++)
			off = off << 8 | sealed[b];
		CHECK_EQ_INT(off, from_i ? sent_i : 0);
		memset(ks, 0, n);
		arcfour_crypt(from_i ? &i2r : &r2i, n, ks, ks);
		for (size_t b = 0; b < n; b++)
			CHECK_EQ_INT(sealed[HDR + b], (uint8_t)texts[k][b] ^ ks[b]);
		CHECK_EQ_INT(open_msg(from_i ? &r : &i, sl, sealed, &plain, &sl), CHAT_OK);
		CHECK_EQ_INT(sl, n);
		CHECK_MEM(plain, texts[k], n);
		if (from_i)
			sent_i += n;
		free(sealed);
		free(plain);
	}
out:
	pair_free(&i, &r);
	free(w.data);
}

/* Thousands of messages of 0..60 KiB, both ways, several in flight in each
 * direction, in a random interleaving: the two RC4 pairs never drift. */
struct flight {
	uint8_t *sealed;
	size_t sealed_len;
	const uint8_t *plain;
	size_t len;
};

static void test_in_step(void)
{
	enum { QMAX = 6, MESSAGES = 2000 };
	struct flight q[2][QMAX];
	size_t head[2] = { 0, 0 }, count[2] = { 0, 0 }, sent = 0, delivered = 0, bytes = 0;
	struct party i, r, *ends[2] = { &i, &r };
	int bad = 0;

	pair_new(&i, &r, 0x3333, 0x4444, NULL);
	if (!handshake(&i, &r, NULL))
		goto out;
	while (delivered < MESSAGES) {
		int d = (int)(test_rand() & 1);               /* 0: i->r, 1: r->i */
		int deliver = sent >= MESSAGES || (test_rand() & 1);

		if (!deliver && count[d] < QMAX) {
			struct flight *f = &q[d][(head[d] + count[d]) % QMAX];

			f->len = (size_t)(test_rand() % (MAX_MSG + 1));
			if (test_rand() % 8 == 0)
				f->len = (size_t)(test_rand() % 16); /* plenty of tiny and empty ones */
			f->plain = pool + test_rand() % (sizeof(pool) - MAX_MSG);
			f->sealed = seal(ends[d], f->len, f->plain, &f->sealed_len);
			count[d]++;
			sent++;
		} else if (count[d]) {
			struct flight *f = &q[d][head[d]];
			uint8_t *plain;
			size_t n;

			if (open_msg(ends[!d], f->sealed_len, f->sealed, &plain, &n) != CHAT_OK ||
			    n != f->len || (n && memcmp(plain, f->plain, n)))
				bad++;
			bytes += n;
			free(plain);
			free(f->sealed);
			head[d] = (head[d] + 1) % QMAX;
			count[d]--;
			delivered++;
		}
	}
	CHECK_EQ_INT(bad, 0);
	CHECK_EQ_INT(i.warns, 0); /* no gap, no replay */
	CHECK_EQ_INT(r.warns, 0);
	printf("in step: %zu messages, %zu bytes, both directions interleaved\n", delivered, bytes);
out:
	pair_free(&i, &r);
}

/* A lost message leaves later ones readable; a late or repeated one is
 * CHAT_ERR_REPLAY and the session goes on; truncated or absurdly far-ahead
 * messages are CHAT_ERR_MALFORMED and change nothing. */
static void test_loss_and_replay(void)
{
	struct party i, r;
	uint8_t *m[8], *plain;
	size_t ml[8], n;
	static const char *const t[8] = { "first", "second, lost", "third", "fourth", "fifth",
	                                  "sixth", "", "eighth" };

	pair_new(&i, &r, 0x5555, 0x6666, NULL);
	if (!handshake(&i, &r, NULL))
		goto out;
	for (int k = 0; k < 8; k++)
		m[k] = seal(&i, strlen(t[k]), (const uint8_t *)t[k], &ml[k]);

	CHECK_EQ_INT(open_msg(&r, ml[0], m[0], &plain, &n), CHAT_OK);
	free(plain);
	/* m[1] never arrives. */
	int warns = r.warns;
	CHECK_EQ_INT(open_msg(&r, ml[2], m[2], &plain, &n), CHAT_OK);
	CHECK(n == strlen(t[2]) && !memcmp(plain, t[2], n));
	free(plain);
	CHECK_EQ_INT(r.warns, warns + 1);
	CHECK_STR_CONTAINS(r.last_log, "12 bytes of the peer's stream never arrived");
	/* Late, then repeated: both dropped, nothing written. */
	CHECK_EQ_INT(open_msg(&r, ml[1], m[1], &plain, &n), CHAT_ERR_REPLAY);
	free(plain);
	CHECK_EQ_INT(open_msg(&r, ml[0], m[0], &plain, &n), CHAT_ERR_REPLAY);
	free(plain);
	CHECK_EQ_INT(open_msg(&r, ml[3], m[3], &plain, &n), CHAT_OK);
	CHECK(n == strlen(t[3]) && !memcmp(plain, t[3], n));
	free(plain);
	CHECK_EQ_INT(open_msg(&r, ml[3], m[3], &plain, &n), CHAT_ERR_REPLAY);
	CHECK_EQ_INT(n, 0);
	free(plain);

	/* Truncated: shorter than the offset. */
	CHECK_EQ_INT(open_msg(&r, 7, m[4], &plain, &n), CHAT_ERR_MALFORMED);
	free(plain);
	CHECK_EQ_INT(open_msg(&r, 0, m[4], &plain, &n), CHAT_ERR_MALFORMED);
	free(plain);
	/* An offset more than the per-message cap ahead is refused, not skipped to. */
	{
		uint8_t forged[HDR + 5];
		uint64_t off = 5 + 12 + 5 + 6 + GAP_MAX + 1; /* received so far + cap + 1 */

		memcpy(forged, m[4], sizeof(forged));
		for (int b = 7; b >= 0; b--, off >>= 8)
			forged[b] = (uint8_t)off;
		CHECK_EQ_INT(open_msg(&r, sizeof(forged), forged, &plain, &n), CHAT_ERR_MALFORMED);
		free(plain);
	}
	CHECK_EQ_INT(open_msg(&r, ml[4], m[4], &plain, &n), CHAT_OK);
	CHECK(n == strlen(t[4]) && !memcmp(plain, t[4], n));
	free(plain);
	CHECK_EQ_INT(open_msg(&r, ml[5], m[5], &plain, &n), CHAT_OK);
	free(plain);
	/* An empty message is 8 bytes and opens to nothing. */
	CHECK_EQ_INT(ml[6], HDR);
	CHECK_EQ_INT(open_msg(&r, ml[6], m[6], &plain, &n), CHAT_OK);
	CHECK_EQ_INT(n, 0);
	free(plain);
	CHECK_EQ_INT(open_msg(&r, ml[7], m[7], &plain, &n), CHAT_OK);
	CHECK(n == strlen(t[7]) && !memcmp(plain, t[7], n));
	free(plain);
	for (int k = 0; k < 8; k++)
		free(m[k]);
	/* A one-byte message repeated: its offset is just one below ours. */
	m[0] = seal(&i, 1, (const uint8_t *)"x", &ml[0]);
	CHECK_EQ_INT(open_msg(&r, ml[0], m[0], &plain, &n), CHAT_OK);
	free(plain);
	CHECK_EQ_INT(open_msg(&r, ml[0], m[0], &plain, &n), CHAT_ERR_REPLAY);
	free(plain);
	free(m[0]);
out:
	pair_free(&i, &r);
}

static void put_off(uint8_t *msg, uint64_t off)
{
	for (int b = 7; b >= 0; b--, off >>= 8)
		msg[b] = (uint8_t)off;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The unauthenticated offset cannot make the receiver skip more keystream
 * than it paid for: over a session, skipped <= SKIP_RATIO x bytes handed to
 * open() + SKIP_FREE, and one message skips at most GAP_MAX.  The attack of
 * issue 11 (tiny messages each claiming an offset 64 MiB ahead, which the old
 * cap let through: 40 of them took seconds) is refused at once, and the
 * session still reads the genuine stream afterwards. */
static void test_skip_budget(void)
{
	struct party i, r;
	uint8_t junk[HDR + 6] = { 0 }, *plain, *m, save[2048];
	uint64_t pos = 0, got = 0, skipped = 0, allowed;
	size_t n, ml;
	double t0, spent;
	int refused = 0;

	pair_new(&i, &r, 0x1212, 0x3434, NULL);
	if (!handshake(&i, &r, NULL))
		goto out;

	/* 40 tiny messages, each 64 MiB ahead of the last: all refused, quickly. */
	t0 = now_s();
	for (int k = 0; k < 40; k++) {
		put_off(junk, (uint64_t)(k + 1) * ((uint64_t)64 << 20));
		refused += open_msg(&r, sizeof(junk), junk, &plain, &n) == CHAT_ERR_MALFORMED;
		free(plain);
		got += sizeof(junk);
	}
	spent = now_s() - t0;
	CHECK_EQ_INT(refused, 40);
	CHECK(spent < 0.5);
	CHECK_STR_CONTAINS(r.last_log, "more than the");
	printf("skip budget: 40 messages claiming 64 MiB jumps refused in %.1f ms\n", spent * 1e3);
	/* The genuine stream is unaffected. */
	CHECK(xfer(&i, &r, 5, (const uint8_t *)"hello", NULL));
	pos += 5;
	got += HDR + 5;

	/* Exactly the budget is skipped to; one byte more is refused.  The
	 * budget counts the refused messages' bytes too. */
	allowed = SKIP_RATIO * (got + sizeof(junk)) + SKIP_FREE - skipped;
	put_off(junk, pos + allowed + 1);
	CHECK_EQ_INT(open_msg(&r, sizeof(junk), junk, &plain, &n), CHAT_ERR_MALFORMED);
	free(plain);
	got += sizeof(junk);
	allowed = SKIP_RATIO * (got + sizeof(junk)) + SKIP_FREE - skipped;
	CHECK(allowed <= GAP_MAX);
	put_off(junk, pos + allowed);
	CHECK_EQ_INT(open_msg(&r, sizeof(junk), junk, &plain, &n), CHAT_OK);
	free(plain);
	got += sizeof(junk);
	skipped += allowed;
	pos += allowed + 6;
	/* Spent: a skip of 8 x this message's own bytes + 1 is now too much,
	 * of 8 x its bytes exactly just right. */
	put_off(junk, pos + SKIP_RATIO * sizeof(junk) + 1);
	CHECK_EQ_INT(open_msg(&r, sizeof(junk), junk, &plain, &n), CHAT_ERR_MALFORMED);
	free(plain);
	got += sizeof(junk);
	put_off(junk, pos + SKIP_RATIO * sizeof(junk) * 2);
	CHECK_EQ_INT(open_msg(&r, sizeof(junk), junk, &plain, &n), CHAT_OK);
	free(plain);
	got += sizeof(junk);
	skipped += SKIP_RATIO * sizeof(junk) * 2;
	pos += SKIP_RATIO * sizeof(junk) * 2 + 6;

	/* Saved and loaded, the session keeps what it has spent. */
	{
		struct chat_buf b = { save, sizeof(save), 0 };
		struct chat_cipher_params params = {
			.size = sizeof(params), .role = CHAT_ROLE_RESPONDER, .local_id = "bob",
			.peer_id = "alice", .suite = "rc4dh", .binding = binding,
			.binding_len = sizeof(binding) - 1,
		};
		void *copy = NULL;
		uint8_t *out = NULL;
		struct chat_buf ob;

		CHECK_EQ_INT(ops->session_save(r.s, &b), CHAT_OK);
		CHECK_EQ_INT(b.len, 1103);
		int warns = r.warns;
		CHECK_EQ_INT(ops->session_load(&r.host, &params, b.len, save, &copy), CHAT_OK);
		CHECK_EQ_INT(r.warns, warns); /* a good blob loads silently */
		put_off(junk, pos + SKIP_RATIO * sizeof(junk) + 1);
		out = malloc(sizeof(junk));
		ob = (struct chat_buf){ out, sizeof(junk), 0 };
		if (copy)
			CHECK_EQ_INT(ops->open(copy, sizeof(junk), &ob, junk), CHAT_ERR_MALFORMED);
		ops->session_free(copy);
		copy = NULL;
		/* A version 1 blob (no counters) still loads, with a fresh budget. */
		save[4] = 1;
		CHECK_EQ_INT(ops->session_load(&r.host, &params, 1087, save, &copy), CHAT_OK);
		ob = (struct chat_buf){ out, sizeof(junk), 0 };
		if (copy)
			CHECK_EQ_INT(ops->open(copy, sizeof(junk), &ob, junk), CHAT_OK);
		ops->session_free(copy);
		copy = NULL;
		/* ... but not as a version 2 blob of that length, nor the reverse. */
		CHECK_EQ_INT(ops->session_load(&r.host, &params, 1103, save, &copy),
		             CHAT_ERR_MALFORMED);
		save[4] = 2;
		CHECK_EQ_INT(ops->session_load(&r.host, &params, 1087, save, &copy),
		             CHAT_ERR_MALFORMED);
		free(out);
	}

out:
	pair_free(&i, &r);

	/* Genuine traffic earns a larger budget, and genuine losses are skipped
	 * over; but one message never skips more than GAP_MAX. */
	{
		uint64_t p2 = 0;

		pair_new(&i, &r, 0x5656, 0x7878, NULL);
		CHECK(handshake(&i, &r, NULL));
		for (int k = 0; k < 4; k++) {
			CHECK(xfer(&i, &r, 51200, pool, NULL));
			p2 += 51200;
		}
		for (int k = 0; k < 4; k++) {
			m = seal(&i, 51200, pool + k, &ml);
			if (k == 3) { /* the first three were lost */
				CHECK_EQ_INT(open_msg(&r, ml, m, &plain, &n), CHAT_OK);
				CHECK(n == 51200 && !memcmp(plain, pool + k, n));
				free(plain);
			}
			free(m);
			p2 += 51200;
		}
		put_off(junk, p2 + GAP_MAX + 1);
		CHECK_EQ_INT(open_msg(&r, sizeof(junk), junk, &plain, &n), CHAT_ERR_MALFORMED);
		free(plain);
		put_off(junk, p2 + GAP_MAX);
		CHECK_EQ_INT(open_msg(&r, sizeof(junk), junk, &plain, &n), CHAT_OK);
		free(plain);
		pair_free(&i, &r);
	}
}

/* No integrity: a flipped ciphertext bit flips exactly that plaintext bit,
 * and an attacker who knows the format rewrites the amount. */
static void test_bit_flip(void)
{
	struct party i, r;
	static const char order[] = "PAY 100 EUR TO ALICE";
	uint8_t *sealed, *plain, text[64];
	size_t sl, n;

	pair_new(&i, &r, 0x7777, 0x8888, NULL);
	if (!handshake(&i, &r, NULL))
		goto out;
	sealed = seal(&i, sizeof(order) - 1, (const uint8_t *)order, &sl);
	sealed[HDR + 4] ^= '1' ^ '9';
	CHECK_EQ_INT(open_msg(&r, sl, sealed, &plain, &n), CHAT_OK);
	CHECK(n == sizeof(order) - 1 && !memcmp(plain, "PAY 900 EUR TO ALICE", n));
	free(sealed);
	free(plain);

	for (int k = 0; k < 64; k++) {
		size_t byte = test_rand() % sizeof(text);
		unsigned bit = (unsigned)(test_rand() % 8);

		fill_rand(sizeof(text), text);
		sealed = seal(&i, sizeof(text), text, &sl);
		sealed[HDR + byte] ^= (uint8_t)(1u << bit);
		CHECK_EQ_INT(open_msg(&r, sl, sealed, &plain, &n), CHAT_OK);
		CHECK_EQ_INT(n, sizeof(text));
		for (size_t b = 0; b < sizeof(text) && n == sizeof(text); b++)
			CHECK_EQ_INT(plain[b] ^ text[b], b == byte ? 1u << bit : 0);
		free(sealed);
		free(plain);
	}
out:
	pair_free(&i, &r);
}

/* Offsets are not authenticated either: rewriting one makes the receiver
 * decrypt with the wrong keystream without noticing, drop the next genuine
 * messages as replays, and only catch up once the sender passes the forged
 * position. */
static void test_offset_rewrite(void)
{
	struct party i, r;
	static const char *const t[4] = { "0123456789", "abc", "defghij", "klmnopqrstuvwxyz" };
	uint8_t *m[4], *plain;
	size_t ml[4], n;

	pair_new(&i, &r, 0x9999, 0xaaaa, NULL);
	if (!handshake(&i, &r, NULL))
		goto out;
	for (int k = 0; k < 4; k++)
		m[k] = seal(&i, strlen(t[k]), (const uint8_t *)t[k], &ml[k]);
	m[0][7] += 5; /* offset 0 -> 5 */
	CHECK_EQ_INT(open_msg(&r, ml[0], m[0], &plain, &n), CHAT_OK);
	CHECK(n == 10 && memcmp(plain, t[0], n) != 0); /* garbage, accepted */
	free(plain);
	CHECK_EQ_INT(open_msg(&r, ml[1], m[1], &plain, &n), CHAT_ERR_REPLAY); /* 10 < 15 */
	free(plain);
	CHECK_EQ_INT(open_msg(&r, ml[2], m[2], &plain, &n), CHAT_ERR_REPLAY); /* 13 < 15 */
	free(plain);
	CHECK_EQ_INT(open_msg(&r, ml[3], m[3], &plain, &n), CHAT_OK);         /* 20 > 15 */
	CHECK(n == strlen(t[3]) && !memcmp(plain, t[3], n));
	free(plain);
	for (int k = 0; k < 4; k++)
		free(m[k]);
out:
	pair_free(&i, &r);
}

static int fingerprint_ok(const char *fp)
{
	if (strlen(fp) != 24)
		return 0;
	for (int k = 0; k < 24; k++) {
		if (k % 5 == 4 ? fp[k] != '-' : !strchr("0123456789abcdef", fp[k]))
			return 0;
	}
	return 1;
}

/* Equal fingerprints on both ends of an honest exchange; a man in the middle
 * who runs two exchanges reads and relays everything, and only a comparison
 * of fingerprints gives him away. */
static void test_mitm(void)
{
	struct party alice, bob, mr, mi; /* mr faces alice, mi faces bob */
	char fa[64], fb[64], fmr[64], fmi[64], small[24];
	static const char secret[] = "meet me at the usual place";
	uint8_t *sealed, *plain, *resealed;
	size_t sl, n, rl;

	pair_new(&alice, &bob, 0xa1, 0xb0, NULL);
	CHECK_EQ_INT(ops->fingerprint(alice.s, sizeof(fa), fa), CHAT_ERR_STATE);
	CHECK_EQ_INT(fa[0], '\0');
	if (!handshake(&alice, &bob, NULL))
		goto out;
	CHECK_EQ_INT(ops->fingerprint(alice.s, sizeof(fa), fa), CHAT_OK);
	CHECK_EQ_INT(ops->fingerprint(bob.s, sizeof(fb), fb), CHAT_OK);
	CHECK(fingerprint_ok(fa));
	CHECK(!strcmp(fa, fb));
	printf("honest fingerprints: %s on both ends\n", fa);
	CHECK_EQ_INT(ops->fingerprint(alice.s, sizeof(small), small), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(small[0], '\0');
	pair_free(&alice, &bob);

	pair_new(&alice, &mr, 0xa1, 0x3e, NULL);
	pair_new(&mi, &bob, 0x3f, 0xb0, NULL);
	if (!handshake(&alice, &mr, NULL) || !handshake(&mi, &bob, NULL))
		goto out2;
	CHECK_EQ_INT(ops->fingerprint(alice.s, sizeof(fa), fa), CHAT_OK);
	CHECK_EQ_INT(ops->fingerprint(bob.s, sizeof(fb), fb), CHAT_OK);
	CHECK_EQ_INT(ops->fingerprint(mr.s, sizeof(fmr), fmr), CHAT_OK);
	CHECK_EQ_INT(ops->fingerprint(mi.s, sizeof(fmi), fmi), CHAT_OK);
	CHECK(strcmp(fa, fb) != 0);
	CHECK(!strcmp(fa, fmr) && !strcmp(fb, fmi));
	printf("man in the middle: alice sees %s, bob sees %s\n", fa, fb);

	/* Mallory reads alice's message and passes it on; bob cannot tell. */
	sealed = seal(&alice, sizeof(secret) - 1, (const uint8_t *)secret, &sl);
	CHECK_EQ_INT(open_msg(&mr, sl, sealed, &plain, &n), CHAT_OK);
	CHECK(n == sizeof(secret) - 1 && !memcmp(plain, secret, n));
	resealed = seal(&mi, n, plain, &rl);
	free(plain);
	CHECK_EQ_INT(open_msg(&bob, rl, resealed, &plain, &n), CHAT_OK);
	CHECK(n == sizeof(secret) - 1 && !memcmp(plain, secret, n));
	free(plain);
	free(sealed);
	free(resealed);
out2:
	pair_free(&mi, &bob);
	pair_free(&alice, &mr);
	return;
out:
	pair_free(&alice, &bob);
}

/* A recorded session shows no plaintext and none of the exponents, and the
 * same seeds replay it byte for byte (the RNG is the only input). */
static void record(uint64_t si, uint64_t sr, struct wire *w, struct party *i, struct party *r)
{
	char text[128];

	pair_new(i, r, si, sr, NULL);
	if (!handshake(i, r, w))
		return;
	for (int k = 0; k < 50; k++) {
		int len = snprintf(text, sizeof(text), "the eagle has landed, message %d of 50; "
		                   "bring the blue folder", k);

		xfer(k % 2 ? r : i, k % 2 ? i : r, (size_t)len, (const uint8_t *)text, w);
	}
}

static void test_transcript(void)
{
	struct wire w1 = { 0 }, w2 = { 0 };
	struct party i, r, i2, r2;
	uint8_t secret[RC4DH_DH_BYTES], B[RC4DH_DH_BYTES];

	record(0xc0ffee, 0xdecaf, &w1, &i, &r);
	record(0xc0ffee, 0xdecaf, &w2, &i2, &r2);
	CHECK(w1.len > 2 * HS_LEN);
	CHECK_EQ_INT(w1.len, w2.len);
	CHECK(w1.len == w2.len && !memcmp(w1.data, w2.data, w1.len));
	CHECK(!contains(w1.len, w1.data, 12, "eagle has la"));
	CHECK(!contains(w1.len, w1.data, 12, "blue folder"));
	CHECK(!contains(w1.len, w1.data, 8, "message "));
	CHECK(!contains(w1.len, w1.data, RC4DH_EXP_BYTES, i.drawn));
	CHECK(!contains(w1.len, w1.data, RC4DH_EXP_BYTES, r.drawn));
	CHECK_EQ_INT(rc4dh_dh_public(r.drawn, B), CHAT_OK);
	CHECK_EQ_INT(rc4dh_dh_shared(i.drawn, secret, B), CHAT_OK);
	CHECK(!contains(w1.len, w1.data, 16, secret));
	pair_free(&i, &r);
	pair_free(&i2, &r2);
	free(w1.data);
	free(w2.data);
}

/* Out of order is CHAT_ERR_STATE, after which everything is
 * CHAT_ERR_FAILED; seal/open too early is CHAT_ERR_STATE and harmless. */
static void test_state_machine(void)
{
	struct party i, r;
	uint8_t m1[HS_LEN], m2[HS_LEN], out[64], junk[HS_LEN] = { 1 };
	struct chat_buf b1 = { m1, sizeof(m1), 0 }, b2 = { m2, sizeof(m2), 0 };
	struct chat_buf o = { out, sizeof(out), 0 };

	/* Initiator spoken to first; responder asked to speak first. */
	pair_new(&i, &r, 1, 2, NULL);
	CHECK_EQ_INT(ops->handshake(i.s, sizeof(junk), &b1, junk), CHAT_ERR_STATE);
	CHECK_EQ_INT(ops->handshake(i.s, 0, &b1, NULL), CHAT_ERR_FAILED);
	CHECK_EQ_INT(ops->seal(i.s, 3, &o, (const uint8_t *)"abc"), CHAT_ERR_FAILED);
	CHECK_EQ_INT(ops->handshake(r.s, 0, &b2, NULL), CHAT_ERR_STATE);
	CHECK_EQ_INT(ops->handshake(r.s, sizeof(junk), &b2, junk), CHAT_ERR_FAILED);
	CHECK_EQ_INT(ops->open(r.s, 9, &o, junk), CHAT_ERR_FAILED);
	pair_free(&i, &r);

	/* Too early: refused, and the handshake still completes afterwards. */
	pair_new(&i, &r, 1, 2, NULL);
	CHECK_EQ_INT(ops->seal(i.s, 3, &o, (const uint8_t *)"abc"), CHAT_ERR_STATE);
	CHECK_EQ_INT(ops->open(r.s, 9, &o, junk), CHAT_ERR_STATE);
	CHECK_EQ_INT(o.len, 0);
	CHECK(handshake(&i, &r, NULL));
	CHECK(xfer(&i, &r, 3, (const uint8_t *)"abc", NULL));
	/* A handshake message after the handshake kills the session. */
	CHECK_EQ_INT(ops->handshake(r.s, sizeof(junk), &b2, junk), CHAT_ERR_STATE);
	CHECK_EQ_INT(ops->open(r.s, 9, &o, junk), CHAT_ERR_FAILED);
	CHECK_EQ_INT(ops->fingerprint(r.s, sizeof(out), (char *)out), CHAT_ERR_FAILED);
	CHECK_EQ_INT(ops->handshake(i.s, 0, &b1, NULL), CHAT_ERR_STATE);
	CHECK_EQ_INT(ops->seal(i.s, 3, &o, (const uint8_t *)"abc"), CHAT_ERR_FAILED);
	pair_free(&i, &r);

	/* Malformed: wrong length or version. */
	static const size_t lens[] = { 1, HS_LEN - 1, HS_LEN + 1 };
	for (size_t k = 0; k < 4; k++) {
		uint8_t msg[HS_LEN + 1];

		pair_new(&i, &r, 1, 2, NULL);
		CHECK_EQ_INT(ops->handshake(i.s, 0, &b1, NULL), CHAT_HS_CONTINUE);
		memset(msg, 0, sizeof(msg));
		memcpy(msg, m1, HS_LEN);
		if (k == 3)
			msg[0] = 2; /* a version from the future */
		CHECK_EQ_INT(ops->handshake(r.s, k == 3 ? HS_LEN : lens[k], &b2, msg),
		             CHAT_ERR_MALFORMED);
		CHECK_EQ_INT(b2.len, 0);
		CHECK_EQ_INT(ops->handshake(r.s, HS_LEN, &b2, m1), CHAT_ERR_FAILED);
		/* And the initiator, given a bad reply. */
		CHECK_EQ_INT(ops->handshake(i.s, k == 3 ? HS_LEN : lens[k], &b2, msg),
		             CHAT_ERR_MALFORMED);
		CHECK_EQ_INT(ops->handshake(i.s, HS_LEN, &b2, m1), CHAT_ERR_FAILED);
		pair_free(&i, &r);
	}

	/* Bad public values, through the handshake: 0, 1, p-1, p, p+1,
	 * 2^2048-1, and p-2 (in range, but of order 2q). */
	for (int k = 0; k < 7; k++) {
		uint8_t msg[HS_LEN];

		msg[0] = 1;
		if (k < 2)
			small_value((unsigned)k, msg + 1);
		else if (k == 5)
			memset(msg + 1, 0xff, RC4DH_DH_BYTES);
		else if (k == 6)
			p_plus(-2, msg + 1);
		else
			p_plus(k - 3, msg + 1); /* p-1, p, p+1 */
		pair_new(&i, &r, 1, 2, NULL);
		CHECK_EQ_INT(ops->handshake(r.s, HS_LEN, &b2, msg), CHAT_ERR_PEER_VALUE);
		CHECK_EQ_INT(r.drawn_len, 0); /* refused before drawing an exponent */
		CHECK_EQ_INT(ops->handshake(r.s, HS_LEN, &b2, m1), CHAT_ERR_FAILED);
		CHECK_EQ_INT(ops->handshake(i.s, 0, &b1, NULL), CHAT_HS_CONTINUE);
		CHECK_EQ_INT(ops->handshake(i.s, HS_LEN, &b2, msg), CHAT_ERR_PEER_VALUE);
		CHECK_EQ_INT(ops->seal(i.s, 3, &o, (const uint8_t *)"abc"), CHAT_ERR_FAILED);
		pair_free(&i, &r);
	}
}

/* CHAT_ERR_NOSPACE consumes nothing: no randomness, no keystream. */
static void test_nospace(void)
{
	struct party i, r;
	uint8_t m1[HS_LEN], m2[HS_LEN], buf[64], *sealed, *plain;
	struct chat_buf b1 = { m1, HS_LEN - 1, 0 }, b2 = { m2, HS_LEN - 1, 0 };
	struct chat_buf b = { buf, 0, 0 };
	size_t sl, n;

	pair_new(&i, &r, 5, 6, NULL);
	CHECK_EQ_INT(ops->handshake(i.s, 0, &b1, NULL), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(i.drawn_len, 0);
	b1.cap = HS_LEN;
	CHECK_EQ_INT(ops->handshake(i.s, 0, &b1, NULL), CHAT_HS_CONTINUE);
	CHECK_EQ_INT(ops->handshake(r.s, b1.len, &b2, m1), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(r.drawn_len, 0);
	b2.cap = HS_LEN;
	CHECK_EQ_INT(ops->handshake(r.s, b1.len, &b2, m1), CHAT_HS_ESTABLISHED);
	CHECK_EQ_INT(ops->handshake(i.s, b2.len, &b1, m2), CHAT_HS_ESTABLISHED);

	for (size_t cap = 0; cap < 10 + HDR; cap++) {
		b.cap = cap;
		CHECK_EQ_INT(ops->seal(i.s, 10, &b, (const uint8_t *)"0123456789"), CHAT_ERR_NOSPACE);
		CHECK_EQ_INT(b.len, 0);
	}
	sealed = seal(&i, 10, (const uint8_t *)"0123456789", &sl);
	b.cap = 9;
	CHECK_EQ_INT(ops->open(r.s, sl, &b, sealed), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(b.len, 0);
	CHECK_EQ_INT(open_msg(&r, sl, sealed, &plain, &n), CHAT_OK);
	CHECK(n == 10 && !memcmp(plain, "0123456789", 10));
	free(plain);
	free(sealed);
	CHECK(xfer(&r, &i, 5, (const uint8_t *)"after", NULL));
	CHECK_EQ_INT(ops->sealed_size(i.s, 10), 18);
	CHECK_EQ_INT(ops->sealed_size(i.s, SIZE_MAX), SIZE_MAX);
	pair_free(&i, &r);
}

/* Configuration, parameters and a broken RNG. */
static void test_config_and_params(void)
{
	struct party i, r;
	uint8_t m1[HS_LEN];
	struct chat_buf b1 = { m1, sizeof(m1), 0 };
	uint8_t *sealed, *plain, *big;
	size_t sl, n;
	struct chat_cipher_params bad = { .size = sizeof(bad), .role = 3, .local_id = "a",
	                                  .peer_id = "b", .suite = "rc4dh" };
	void *s = (void *)1;

	/* The declared key. */
	CHECK(desc->config_keys && !strcmp(desc->config_keys[0].name, "drop"));
	CHECK_EQ_INT(desc->config_keys[0].type, CHAT_CONFIG_INT);
	CHECK(!strcmp(desc->config_keys[0].def, "3072"));
	CHECK_EQ_INT(desc->config_keys[0].min, 0);
	CHECK_EQ_INT(desc->config_keys[0].max, 1048576);
	CHECK(desc->config_keys[1].name == NULL);

	party_init(&i, 1, "banana");
	CHECK_EQ_INT(party_session(&i, CHAT_ROLE_INITIATOR, 0, NULL), CHAT_ERR_CONFIG);
	CHECK(i.s == NULL);

	/* Both ends must use the same drop: a mismatch is not detected, the
	 * receiver just reads garbage (documented). */
	party_init(&i, 1, "0");
	party_init(&r, 2, "3072");
	CHECK_EQ_INT(party_session(&i, CHAT_ROLE_INITIATOR, 0, NULL), CHAT_OK);
	CHECK_EQ_INT(party_session(&r, CHAT_ROLE_RESPONDER, 0, NULL), CHAT_OK);
	CHECK(handshake(&i, &r, NULL));
	sealed = seal(&i, 11, (const uint8_t *)"hello there", &sl);
	CHECK_EQ_INT(open_msg(&r, sl, sealed, &plain, &n), CHAT_OK);
	CHECK(n == 11 && memcmp(plain, "hello there", 11) != 0);
	free(sealed);
	free(plain);
	pair_free(&i, &r);

	party_init(&i, 1, NULL);
	CHECK_EQ_INT(ops->session_new(&i.host, &bad, &s), CHAT_ERR_INVALID);
	CHECK(s == NULL);
	big = calloc(1, 65537);
	CHECK_EQ_INT(party_session(&i, CHAT_ROLE_INITIATOR, 65537, big), CHAT_ERR_TOO_BIG);
	free(big);
	CHECK(i.s == NULL);

	/* A failing RNG, and one that returns zeros. */
	for (int mode = 1; mode <= 2; mode++) {
		party_init(&i, 1, NULL);
		i.rng_mode = mode;
		CHECK_EQ_INT(party_session(&i, CHAT_ROLE_INITIATOR, 0, NULL), CHAT_OK);
		CHECK_EQ_INT(ops->handshake(i.s, 0, &b1, NULL), CHAT_ERR_RANDOM);
		CHECK_EQ_INT(b1.len, 0);
		CHECK_EQ_INT(ops->handshake(i.s, 0, &b1, NULL), CHAT_ERR_FAILED);
		party_free(&i);
	}
}

int main(void)
{
	struct chat_registry *reg = NULL;
	const struct chat_loaded *l = NULL;
	char err[1024];

	fill_rand(sizeof(pool), pool);
	test_rc4_rfc6229();
	test_rc4_long_drop();
	test_group();
	test_dh();

	CHECK_EQ_INT(chat_registry_new(NULL, &reg), CHAT_OK);
	if (chat_registry_load(reg, CHAT_TEST_PLUGIN_DIR, CHAT_PLUGIN_CIPHER, "rc4dh", &l,
	                       sizeof(err), err) != CHAT_OK) {
		fprintf(stderr, "%s\n", err);
		test_failures++;
		goto out;
	}
	desc = l->desc;
	ops = desc->ops.cipher;
	CHECK_EQ_INT(desc->flags, CHAT_FLAG_INSECURE);
	/* What the frontends' warning quotes: the flaws, and what the fingerprint is good for. */
	CHECK_STR_CONTAINS(desc->summary, "no integrity");
	CHECK_STR_CONTAINS(desc->summary, "unauthenticated");
	CHECK_STR_CONTAINS(desc->summary, "fingerprints compared out of band reveal a man in the middle");
	CHECK(ops->fingerprint != NULL);

	test_key_schedule(NULL, 3072, 1);
	test_key_schedule("0", 0, 0);
	test_key_schedule("4097", 4097, 1);
	test_in_step();
	test_loss_and_replay();
	test_skip_budget();
	test_bit_flip();
	test_offset_rewrite();
	test_mitm();
	test_transcript();
	test_state_machine();
	test_nospace();
	test_config_and_params();
out:
	chat_registry_free(reg);
	return test_done("test_rc4dh");
}
