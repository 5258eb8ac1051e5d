/* SipHash-2-4 of len bytes under a 16-byte key: for hash tables indexed by
 * values clients choose (names, addresses).  Keep the key secret and random. */
#ifndef CHAT_SIPHASH_H
#define CHAT_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t chat_siphash24(const uint8_t key[16], size_t len, const uint8_t *in);

#endif
