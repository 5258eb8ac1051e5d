/* Helpers shared by the plugins (plugin_util.h), once copied into each of
 * the cipher suites and the TCP socket code. */
#include "plugin_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void chat_pu_log(const struct chat_host *host, int level, const char *fmt, ...)
{
	char line[512];
	int saved = errno;
	va_list ap;

	if (!host || !host->log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	host->log(host, level, "%s", line);
	errno = saved;
}

/* Bytes above max, like those below ' ', become '?'. */
static void quote(size_t cap, char *dst, const char *src, unsigned char max)
{
	size_t i, n = strlen(src);

	for (i = 0; i < n && i + 1 < cap; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[i] = c < ' ' || c == 0x7f || c > max ? '?' : (char)c;
	}
	dst[i] = '\0';
	if (i < n && cap > 4)
		memcpy(dst + cap - 4, "...", 4);
}

void chat_pu_quote(size_t cap, char *dst, const char *src)
{
	quote(cap, dst, src, 0xff);
}

void chat_pu_quote_ascii(size_t cap, char *dst, const char *src)
{
	quote(cap, dst, src, 0x7e);
}

const char *chat_pu_config(const struct chat_host *host, const char *key, const char *def)
{
	const char *v = host->config_get ? host->config_get(host, key) : NULL;

	return v ? v : def;
}

int chat_pu_fingerprint_text(size_t cap, char *dst, size_t len, const uint8_t *src)
{
	size_t o = 0;

	if (cap < len / 2 * 5)
		return CHAT_ERR_NOSPACE;
	for (size_t i = 0; i + 1 < len; i += 2) {
		if (i)
			dst[o++] = ' ';
		snprintf(dst + o, cap - o, "%02x%02x", src[i], src[i + 1]);
		o += 4;
	}
	return CHAT_OK;
}
