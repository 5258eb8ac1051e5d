/* Internal interfaces of the rc4dh suite.  They live in their own files so
 * tests/test_rc4dh.c can compile rc4dh_stream.c and rc4dh_dh.c directly and
 * check them against RFC 6229 and RFC 3526.  Everything here is hidden: the
 * plugin exports only chat_plugin_entry (tests/e2e_exports.sh). */
#ifndef RC4DH_INTERNAL_H
#define RC4DH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <nettle/arcfour.h>

#define RC4DH_HIDDEN __attribute__((visibility("hidden")))

#define RC4DH_DH_BYTES 256  /* RFC 3526 group 14: a 2048-bit prime */
#define RC4DH_EXP_BYTES 64  /* 512-bit private exponents (see rc4dh_dh.c) */

/* One direction of traffic: an RC4 state that never restarts, and how many
 * bytes of it the messages have used so far (the drop does not count). */
struct rc4dh_stream {
	struct arcfour_ctx rc4;
	uint64_t pos;
};

/* Key the stream and throw away the first drop bytes of keystream.
 * key_len is 1..256 (arcfour_set_key). */
RC4DH_HIDDEN void rc4dh_stream_init(struct rc4dh_stream *s, size_t key_len,
                                    const uint8_t *key, uint64_t drop);
/* Advance over n bytes of keystream (bytes the peer sent that were lost). */
RC4DH_HIDDEN void rc4dh_stream_skip(struct rc4dh_stream *s, uint64_t n);
/* XOR len bytes of keystream into src; dst == src is allowed, any other
 * overlap is not. */
RC4DH_HIDDEN void rc4dh_stream_crypt(struct rc4dh_stream *s, size_t len, uint8_t *dst,
                                     const uint8_t *src);
RC4DH_HIDDEN void rc4dh_stream_wipe(struct rc4dh_stream *s);

/* The RFC 3526 2048-bit MODP prime, big-endian; the generator is 2. */
RC4DH_HIDDEN extern const uint8_t rc4dh_group_p[RC4DH_DH_BYTES];

/* CHAT_OK if the big-endian value lies in [2, p-2] and in the subgroup of
 * order q (value^q = 1 mod p), else CHAT_ERR_PEER_VALUE. */
RC4DH_HIDDEN int rc4dh_dh_check(const uint8_t *value);
/* dst = 2^exp mod p.  exp is RC4DH_EXP_BYTES big-endian, not zero
 * (CHAT_ERR_INVALID); dst is RC4DH_DH_BYTES and cleared on any error. */
RC4DH_HIDDEN int rc4dh_dh_public(const uint8_t *exp, uint8_t *dst);
/* dst = peer^exp mod p as a fixed-length RC4DH_DH_BYTES big-endian string,
 * after checking peer (CHAT_ERR_PEER_VALUE).  dst is cleared on any error. */
RC4DH_HIDDEN int rc4dh_dh_shared(const uint8_t *exp, uint8_t *dst, const uint8_t *peer);

#endif
