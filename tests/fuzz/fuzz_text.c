/* Escaping untrusted text for the terminal (chat_text_escape) and the UTF-8
 * check (chat_text_is_utf8).  Input: byte 0 picks a small output size for
 * the truncation check, the rest is the text.  Invariants: the full escape
 * has exactly the length returned, is valid UTF-8 with no control character
 * but tab (no ESC, no C1), and unescapes to the input byte for byte; a
 * shorter buffer gets a NUL-terminated prefix of it; text that is valid
 * UTF-8 without controls passes through unchanged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "text.h"

/* The inverse of chat_text_escape: "\n", "\\", "\xHH", else the byte. */
static size_t unescape(size_t len, const char *s, char *dst)
{
	size_t out = 0;

	for (size_t i = 0; i < len;) {
		if (s[i] != '\\') {
			dst[out++] = s[i++];
			continue;
		}
		FUZZ_CHECK(i + 1 < len);
		if (s[i + 1] == 'n') {
			dst[out++] = '\n';
			i += 2;
		} else if (s[i + 1] == '\\') {
			dst[out++] = '\\';
			i += 2;
		} else {
			FUZZ_CHECK(s[i + 1] == 'x' && i + 3 < len);
			char hex[3] = { s[i + 2], s[i + 3], 0 };
			dst[out++] = (char)strtoul(hex, NULL, 16);
			i += 4;
		}
	}
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t small = data[0];
	const char *src = (const char *)data + 1;
	size_t len = size - 1, cap = 4 * len + 1;
	char *full = malloc(cap), *back = malloc(len + 1), *part = malloc(small ? small : 1);
	int plain = 1;

	FUZZ_CHECK(full && back && part);
	size_t n = chat_text_escape(len, src, cap, full);
	FUZZ_CHECK(n < cap && strlen(full) == n);
	FUZZ_CHECK(chat_text_is_utf8(n, full) || n == 0);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)full[i];
		FUZZ_CHECK(c >= 0x20 || c == '\t');
		FUZZ_CHECK(c != 0x7f);
		FUZZ_CHECK(!(c == 0xc2 && i + 1 < n && (unsigned char)full[i + 1] < 0xa0));
	}
	FUZZ_CHECK(unescape(n, full, back) == len && memcmp(back, src, len) == 0);

	/* a short buffer: a prefix, terminated, same length returned */
	FUZZ_CHECK(chat_text_escape(len, src, small, part) == n);
	if (small) {
		size_t k = n < small - 1 ? n : small - 1;
		FUZZ_CHECK(part[k] == '\0' && memcmp(part, full, k) == 0);
	}

	/* valid UTF-8 with no control but tab and no backslash: unchanged */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f || c == '\\' ||
		    (c == 0xc2 && i + 1 < len && (unsigned char)src[i + 1] < 0xa0))
			plain = 0;
	}
	if (plain && chat_text_is_utf8(len, src))
		FUZZ_CHECK(n == len && memcmp(full, src, len) == 0);
	if (chat_text_is_utf8(len, src))
		FUZZ_CHECK(memchr(src, 0, len) == NULL);
	free(full);
	free(back);
	free(part);
	return 0;
}

void fuzz_seeds(const char *dir)
{
	static const char *const seeds[] = {
		"\x10hello, world",
		"\x08line one\nline two\\ and a tab\t.",
		"\x20\x1b[31mred\x1b[0m \x07 bell \x7f del",
		"\x05gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80 \xc2\x85 C1",
		"\x40\xc0\xaf overlong \xed\xa0\x80 surrogate \xf4\x90\x80\x80 too big \xe2\x82 cut",
	};
	char name[16];

	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		snprintf(name, sizeof(name), "text%zu", i);
		fuzz_write_seed(dir, name, strlen(seeds[i]), seeds[i]);
	}
}
