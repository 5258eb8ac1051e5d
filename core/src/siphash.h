/* SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF"):
 * the keyed hash for every table whose keys come from the network (the
 * relay's users, rooms, login throttle).  With a key drawn at random when the
 * table is made, nobody outside can choose keys that collide, so chains and
 * probe sequences stay short whatever names clients pick; an unkeyed hash
 * (FNV-1a) lets them put every key in one bucket. */
#ifndef CHAT_SIPHASH_H
#define CHAT_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define CHAT_SIPHASH_KEY_LEN 16

/* The 64-bit SipHash-2-4 of in under key (the reference's byte order: key
 * and result little-endian). */
uint64_t chat_siphash24(const uint8_t key[CHAT_SIPHASH_KEY_LEN], size_t len, const void *in);

/* Of a NUL-terminated string (without the NUL). */
uint64_t chat_siphash24_str(const uint8_t key[CHAT_SIPHASH_KEY_LEN], const char *s);

#endif
