/* Big-endian (network order) integers in byte buffers, as every wire and
 * file format of the project stores them.  No alignment is assumed. */
#ifndef CHAT_BE_H
#define CHAT_BE_H

#include <stdint.h>

static inline uint16_t chat_be16_get(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t chat_be32_get(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t chat_be64_get(const uint8_t *p)
{
	return (uint64_t)chat_be32_get(p) << 32 | chat_be32_get(p + 4);
}

static inline void chat_be16_put(uint8_t *dst, uint16_t v)
{
	dst[0] = (uint8_t)(v >> 8);
	dst[1] = (uint8_t)v;
}

static inline void chat_be32_put(uint8_t *dst, uint32_t v)
{
	dst[0] = (uint8_t)(v >> 24);
	dst[1] = (uint8_t)(v >> 16);
	dst[2] = (uint8_t)(v >> 8);
	dst[3] = (uint8_t)v;
}

static inline void chat_be64_put(uint8_t *dst, uint64_t v)
{
	chat_be32_put(dst, (uint32_t)(v >> 32));
	chat_be32_put(dst + 4, (uint32_t)v);
}

#endif
