/* Finite-field Diffie-Hellman over the RFC 3526 2048-bit MODP group
 * (group 14, generator 2), with GMP.
 *
 * Why mpn_sec_powm and not mpz_powm_sec: mpz_powm_sec is a thin wrapper
 * around mpn_sec_powm that takes its scratch space (the window table and the
 * intermediate powers, all derived from the secret exponent) from GMP's
 * temporary allocator -- the stack or GMP's heap -- and frees it without
 * wiping; its result also lands in limbs GMP may reallocate.  Calling
 * mpn_sec_powm directly is the same constant-time algorithm (its running time
 * and memory access pattern depend only on the operand sizes), but every limb
 * it touches is in a buffer this file owns, and each is wiped with
 * explicit_bzero on every exit path.  No mpz_t ever holds a secret here, so
 * there is no GMP-allocated copy left to chase.
 *
 * Why 512-bit exponents: RFC 3526 estimates group 14 at 110 to 160 bits of
 * strength and suggests exponents of 220 to 320 bits; the best attack on a
 * short exponent (Pollard's lambda / van Oorschot-Wiener) costs about
 * 2^(bits/2), so 512 bits puts it at 2^256, far beyond the group's own
 * strength (the number field sieve on p), while a full 2048-bit exponent
 * would make every exponentiation four times slower for nothing.  The
 * exponent length is fixed (enb = 512 whatever the leading bits), so timing
 * does not reveal it either.
 *
 * The peer value check: p is a safe prime (p = 2q + 1, q prime;
 * tests/test_rc4dh.c checks it), so the only subgroups have order 1, 2, q and
 * 2q, and the generator 2 has order q.  A value is accepted only if it lies in
 * [2, p-2] (excluding 0, 1, p-1 and anything >= p) AND y^q = 1 mod p, i.e. it
 * is in the subgroup of order q that honest public values come from.  [2,
 * p-2] alone would let in the elements of order 2q (half of all values, p-2
 * among them), whose powers leak the low bit of our exponent
 * (y^x is a residue exactly when x is even).  y^q mod p is Euler's criterion:
 * for prime p it is 1 exactly when the Legendre symbol (y/p) is 1, which GMP
 * computes (mpz_jacobi) in microseconds instead of a 2047-bit
 * exponentiation; the test checks the two agree.  Public data only: no
 * constant-time concern.  Since our exponent is below q, peer^exp is never 1. */
#include <stdlib.h>
#include <string.h>

#include <gmp.h>

#include <chat/plugin.h>

#include "rc4dh_internal.h"

_Static_assert(GMP_NAIL_BITS == 0, "limb conversion assumes no nail bits");
_Static_assert(RC4DH_DH_BYTES % sizeof(mp_limb_t) == 0, "p is a whole number of limbs");
_Static_assert(RC4DH_EXP_BYTES % sizeof(mp_limb_t) == 0, "exp is a whole number of limbs");

#define LIMB_BYTES sizeof(mp_limb_t)
#define P_LIMBS (RC4DH_DH_BYTES / LIMB_BYTES)
#define E_LIMBS (RC4DH_EXP_BYTES / LIMB_BYTES)
#define E_BITS ((mp_bitcnt_t)RC4DH_EXP_BYTES * 8)

/* RFC 3526 section 3, "2048-bit MODP Group":
 * p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }, g = 2.
 * tests/test_rc4dh.c recomputes it from that formula. */
const uint8_t rc4dh_group_p[RC4DH_DH_BYTES] = {
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc9, 0x0f, 0xda, 0xa2,
	0x21, 0x68, 0xc2, 0x34, 0xc4, 0xc6, 0x62, 0x8b, 0x80, 0xdc, 0x1c, 0xd1,
	0x29, 0x02, 0x4e, 0x08, 0x8a, 0x67, 0xcc, 0x74, 0x02, 0x0b, 0xbe, 0xa6,
	0x3b, 0x13, 0x9b, 0x22, 0x51, 0x4a, 0x08, 0x79, 0x8e, 0x34, 0x04, 0xdd,
	0xef, 0x95, 0x19, 0xb3, 0xcd, 0x3a, 0x43, 0x1b, 0x30, 0x2b, 0x0a, 0x6d,
	0xf2, 0x5f, 0x14, 0x37, 0x4f, 0xe1, 0x35, 0x6d, 0x6d, 0x51, 0xc2, 0x45,
	0xe4, 0x85, 0xb5, 0x76, 0x62, 0x5e, 0x7e, 0xc6, 0xf4, 0x4c, 0x42, 0xe9,
	0xa6, 0x37, 0xed, 0x6b, 0x0b, 0xff, 0x5c, 0xb6, 0xf4, 0x06, 0xb7, 0xed,
	0xee, 0x38, 0x6b, 0xfb, 0x5a, 0x89, 0x9f, 0xa5, 0xae, 0x9f, 0x24, 0x11,
	0x7c, 0x4b, 0x1f, 0xe6, 0x49, 0x28, 0x66, 0x51, 0xec, 0xe4, 0x5b, 0x3d,
	0xc2, 0x00, 0x7c, 0xb8, 0xa1, 0x63, 0xbf, 0x05, 0x98, 0xda, 0x48, 0x36,
	0x1c, 0x55, 0xd3, 0x9a, 0x69, 0x16, 0x3f, 0xa8, 0xfd, 0x24, 0xcf, 0x5f,
	0x83, 0x65, 0x5d, 0x23, 0xdc, 0xa3, 0xad, 0x96, 0x1c, 0x62, 0xf3, 0x56,
	0x20, 0x85, 0x52, 0xbb, 0x9e, 0xd5, 0x29, 0x07, 0x70, 0x96, 0x96, 0x6d,
	0x67, 0x0c, 0x35, 0x4e, 0x4a, 0xbc, 0x98, 0x04, 0xf1, 0x74, 0x6c, 0x08,
	0xca, 0x18, 0x21, 0x7c, 0x32, 0x90, 0x5e, 0x46, 0x2e, 0x36, 0xce, 0x3b,
	0xe3, 0x9e, 0x77, 0x2c, 0x18, 0x0e, 0x86, 0x03, 0x9b, 0x27, 0x83, 0xa2,
	0xec, 0x07, 0xa2, 0x8f, 0xb5, 0xc5, 0x5d, 0xf0, 0x6f, 0x4c, 0x52, 0xc9,
	0xde, 0x2b, 0xcb, 0xf6, 0x95, 0x58, 0x17, 0x18, 0x39, 0x95, 0x49, 0x7c,
	0xea, 0x95, 0x6a, 0xe5, 0x15, 0xd2, 0x26, 0x18, 0x98, 0xfa, 0x05, 0x10,
	0x15, 0x72, 0x8e, 0x5a, 0x8a, 0xac, 0xaa, 0x68, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff,
};

/* n limbs, least significant first, from n * LIMB_BYTES big-endian bytes. */
static void limbs_from_be(size_t n, mp_limb_t *dst, const uint8_t *src)
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = src + (n - 1 - i) * LIMB_BYTES;
		mp_limb_t v = 0;

		for (size_t k = 0; k < LIMB_BYTES; k++)
			v = v << 8 | p[k];
		dst[i] = v;
	}
}

static void limbs_to_be(size_t n, uint8_t *dst, const mp_limb_t *src)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = dst + (n - 1 - i) * LIMB_BYTES;
		mp_limb_t v = src[i];

		for (size_t k = LIMB_BYTES; k-- > 0;) {
			p[k] = (uint8_t)v;
			v >>= 8;
		}
	}
}

int rc4dh_dh_check(const uint8_t *value)
{
	uint8_t pm2[RC4DH_DH_BYTES];
	unsigned high = 0, borrow = 2;
	mpz_t y, p;
	int legendre;

	/* Public data: plain comparisons are fine. */
	for (size_t i = 0; i + 1 < RC4DH_DH_BYTES; i++)
		high |= value[i];
	if (!high && value[RC4DH_DH_BYTES - 1] < 2)
		return CHAT_ERR_PEER_VALUE;
	for (size_t i = RC4DH_DH_BYTES; i-- > 0;) {
		unsigned d = rc4dh_group_p[i] - borrow;

		pm2[i] = (uint8_t)d;
		borrow = d >> 8 & 1; /* wrapped below zero */
	}
	if (memcmp(value, pm2, sizeof(pm2)) > 0)
		return CHAT_ERR_PEER_VALUE;
	/* In [2, p-2]: now y^q = 1 (mod p), by Euler's criterion. */
	mpz_inits(y, p, NULL);
	mpz_import(y, RC4DH_DH_BYTES, 1, 1, 1, 0, value);
	mpz_import(p, RC4DH_DH_BYTES, 1, 1, 1, 0, rc4dh_group_p);
	legendre = mpz_jacobi(y, p);
	mpz_clears(y, p, NULL);
	return legendre == 1 ? CHAT_OK : CHAT_ERR_PEER_VALUE;
}

/* dst = {bp, bn} ^ exp mod p.  Every secret-dependent limb is in e, r or tp,
 * all wiped before returning. */
static int rc4dh_powm(const uint8_t *exp, uint8_t *dst, size_t bn, const mp_limb_t *bp)
{
	mp_limb_t e[E_LIMBS], m[P_LIMBS], r[P_LIMBS], any = 0;
	mp_limb_t *tp = NULL;
	size_t tn = 0;
	int rc;

	memset(dst, 0, RC4DH_DH_BYTES);
	limbs_from_be(E_LIMBS, e, exp);
	for (size_t i = 0; i < E_LIMBS; i++)
		any |= e[i];
	/* A zero exponent would publish 1; only a broken RNG produces it. */
	if (!any) {
		rc = CHAT_ERR_INVALID;
		goto out;
	}
	limbs_from_be(P_LIMBS, m, rc4dh_group_p);
	tn = (size_t)mpn_sec_powm_itch((mp_size_t)bn, E_BITS, P_LIMBS);
	tp = malloc(tn * sizeof(*tp));
	if (!tp) {
		rc = CHAT_ERR_NOMEM;
		goto out;
	}
	mpn_sec_powm(r, bp, (mp_size_t)bn, e, E_BITS, m, P_LIMBS, tp);
	limbs_to_be(P_LIMBS, dst, r);
	rc = CHAT_OK;
out:
	if (tp) {
		explicit_bzero(tp, tn * sizeof(*tp));
		free(tp);
	}
	explicit_bzero(e, sizeof(e));
	explicit_bzero(r, sizeof(r));
	explicit_bzero(&any, sizeof(any));
	return rc;
}

int rc4dh_dh_public(const uint8_t *exp, uint8_t *dst)
{
	const mp_limb_t g = 2;

	return rc4dh_powm(exp, dst, 1, &g);
}

int rc4dh_dh_shared(const uint8_t *exp, uint8_t *dst, const uint8_t *peer)
{
	mp_limb_t b[P_LIMBS];
	int rc;

	memset(dst, 0, RC4DH_DH_BYTES);
	rc = rc4dh_dh_check(peer);
	if (rc)
		return rc;
	/* Leading zero limbs are fine: the mpn_sec_* functions take unnormalized
	 * operands precisely so sizes do not depend on values. */
	limbs_from_be(P_LIMBS, b, peer);
	return rc4dh_powm(exp, dst, P_LIMBS, b);
}
