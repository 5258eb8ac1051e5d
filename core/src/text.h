/* Making untrusted text safe to show on a terminal: anything a peer sends
 * may contain escape sequences or invalid UTF-8. */
#ifndef CHAT_TEXT_H
#define CHAT_TEXT_H

#include <stddef.h>

/* Copy src to dst as one line: valid UTF-8 passes through, '\n' becomes
 * "\n", '\\' becomes "\\", tabs stay, every other control byte and every
 * byte of invalid UTF-8 becomes "\xHH".  dst is always NUL-terminated;
 * returns the length the full escape needs (excluding the NUL), so a caller
 * can size dst as 4 * len + 1 for the worst case. */
size_t chat_text_escape(size_t len, const char *src, size_t cap, char *dst);

/* 1 if src is valid UTF-8 without NUL bytes, else 0. */
int chat_text_is_utf8(size_t len, const char *src);

#endif
