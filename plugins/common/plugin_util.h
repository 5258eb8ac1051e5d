/* What every plugin needs around the host table and would otherwise copy:
 * formatting a log line for host->log, making untrusted text safe to log,
 * reading its own [plugin.NAME] keys, checking how much of the table an
 * older core filled in, a fingerprint as text, and big-endian integers for
 * wire and saved formats.
 * Each plugin compiles plugin_util.c into itself (plugins/common/ is not a
 * plugin); the functions are hidden like the rest of a plugin, so two
 * plugins loaded into one program never see each other's copy. */
#ifndef CHAT_PLUGINS_PLUGIN_UTIL_H
#define CHAT_PLUGINS_PLUGIN_UTIL_H

#include <chat/plugin.h>

#include <stddef.h>
#include <stdint.h>

/* Does the host table reach past member, as the core that made it was
 * built?  A table from an older core ends earlier.  Whether the member is
 * set (not NULL) is the caller's to check. */
#define CHAT_PU_HOST_HAS(host, member) \
	((host) && (host)->size >= offsetof(struct chat_host, member) + sizeof((host)->member))

/* host->log, formatted here first (it has no va_list twin) into at most 511
 * bytes; nothing without a host or its log; errno is preserved. */
void chat_pu_log(const struct chat_host *host, int level, const char *fmt, ...) CHAT_PRINTF(3, 4);

/* Untrusted text made safe for a log line in cap bytes: control bytes and
 * DEL become '?', and one that does not fit ends in "...".  chat_pu_quote
 * keeps the bytes above 0x7f (a UTF-8 username shows as typed);
 * chat_pu_quote_ascii makes them '?' too (addresses, certificate names). */
void chat_pu_quote(size_t cap, char *dst, const char *src);
void chat_pu_quote_ascii(size_t cap, char *dst, const char *src);

/* A key of the plugin's own [plugin.NAME] section, or def when the host has
 * no config_get or returns nothing.  The caller has checked that the table
 * reaches config_get (CHAT_PU_HOST_HAS). */
const char *chat_pu_config(const struct chat_host *host, const char *key, const char *def);

/* A fingerprint as the suites show it: len bytes (even, > 0) as hex in
 * groups of two bytes, "xxxx xxxx ...", in len / 2 * 5 bytes with the NUL;
 * CHAT_ERR_NOSPACE (nothing written) if cap is less. */
int chat_pu_fingerprint_text(size_t cap, char *dst, size_t len, const uint8_t *src);

/* Big-endian integers, on every message's path: inline. */
static inline void chat_pu_put_be32(uint8_t *dst, uint32_t v)
{
	dst[0] = (uint8_t)(v >> 24);
	dst[1] = (uint8_t)(v >> 16);
	dst[2] = (uint8_t)(v >> 8);
	dst[3] = (uint8_t)v;
}

static inline uint32_t chat_pu_get_be32(const uint8_t *src)
{
	return (uint32_t)src[0] << 24 | (uint32_t)src[1] << 16 | (uint32_t)src[2] << 8 | src[3];
}

static inline void chat_pu_put_be64(uint8_t *dst, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		dst[i] = (uint8_t)v;
		v >>= 8;
	}
}

static inline uint64_t chat_pu_get_be64(const uint8_t *src)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | src[i];
	return v;
}

#endif
