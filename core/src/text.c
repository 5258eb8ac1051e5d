#include "text.h"

#include <stdint.h>
#include <stdio.h>

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one
 * (overlongs, surrogates and values past U+10FFFF are invalid). */
static size_t utf8_seq(size_t len, const uint8_t *s)
{
	uint8_t c = s[0];
	size_t n;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

int chat_text_is_utf8(size_t len, const char *src)
{
	const uint8_t *s = (const uint8_t *)src;

	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq(len - i, s + i);
		if (!n || s[i] == 0)
			return 0;
		i += n;
	}
	return 1;
}

size_t chat_text_escape(size_t len, const char *src, size_t cap, char *dst)
{
	const uint8_t *s = (const uint8_t *)src;
	size_t out = 0;

#define PUT(ch) do { if (out + 1 < cap) dst[out] = (char)(ch); out++; } while (0)
	for (size_t i = 0; i < len;) {
		uint8_t c = s[i];
		size_t n = utf8_seq(len - i, s + i);
		if (c == '\n') {
			PUT('\\');
			PUT('n');
			i++;
		} else if (c == '\\') {
			PUT('\\');
			PUT('\\');
			i++;
		} else if (c == '\t') {
			PUT('\t');
			i++;
		} else if (n == 0 || c < 0x20 || c == 0x7f ||
		           (n == 2 && c == 0xc2 && s[i + 1] < 0xa0)) { /* C1 controls */
			char hex[5];
			snprintf(hex, sizeof(hex), "\\x%02x", c);
			for (int k = 0; k < 4; k++)
				PUT(hex[k]);
			i++;
		} else {
			for (size_t k = 0; k < n; k++)
				PUT(s[i + k]);
			i += n;
		}
	}
#undef PUT
	if (cap)
		dst[out < cap ? out : cap - 1] = '\0';
	return out;
}
