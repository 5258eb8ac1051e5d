/* RC4 keystreams for rc4dh: Nettle's arcfour plus the bookkeeping the suite
 * needs (a drop at the start, skipping over lost bytes, a position).
 *
 * RC4's first bytes are measurably biased towards the key (Fluhrer, Mantin
 * and Shamir; Mantin's "RC4-drop[n]"), so the suite discards a configurable
 * prefix; the position counts only what messages used after that. */
#include <string.h>

#include "rc4dh_internal.h"

/* Keystream is produced by encrypting zeros; a few KiB at a time keeps the
 * stack small and the call count low for the 64 MiB worst case. */
#define RC4DH_DISCARD_CHUNK 4096

static void rc4dh_discard(struct arcfour_ctx *rc4, uint64_t n)
{
	uint8_t buf[RC4DH_DISCARD_CHUNK];

	while (n > 0) {
		size_t k = n < sizeof(buf) ? (size_t)n : sizeof(buf);

		memset(buf, 0, k);
		arcfour_crypt(rc4, k, buf, buf);
		n -= k;
	}
	/* buf now holds raw keystream. */
	explicit_bzero(buf, sizeof(buf));
}

void rc4dh_stream_init(struct rc4dh_stream *s, size_t key_len, const uint8_t *key,
                       uint64_t drop)
{
	arcfour_set_key(&s->rc4, key_len, key);
	rc4dh_discard(&s->rc4, drop);
	s->pos = 0;
}

void rc4dh_stream_skip(struct rc4dh_stream *s, uint64_t n)
{
	rc4dh_discard(&s->rc4, n);
	s->pos += n;
}

void rc4dh_stream_crypt(struct rc4dh_stream *s, size_t len, uint8_t *dst, const uint8_t *src)
{
	if (len == 0)
		return;
	arcfour_crypt(&s->rc4, len, dst, src);
	s->pos += len;
}

void rc4dh_stream_wipe(struct rc4dh_stream *s)
{
	explicit_bzero(s, sizeof(*s));
}
