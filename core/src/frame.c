/* Length-prefixed frame decoder.  The declared length is only a promise, so
 * memory follows the bytes that actually arrived, never the promise. */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

#include <chat/error.h>

#include "be.h"

/* First allocation for a partial payload, and the most we keep between
 * frames: small enough that idle connections cost next to nothing, big
 * enough that chatty ones do not malloc for every frame. */
#define FRAME_BUF_START 4096u
#define FRAME_BUF_KEEP 4096u

void chat_frame_decoder_init(struct chat_frame_decoder *d, size_t max)
{
	memset(d, 0, sizeof(*d));
	chat_frame_decoder_set_max(d, max);
}

void chat_frame_decoder_set_max(struct chat_frame_decoder *d, size_t max)
{
	if (max == 0)
		max = CHAT_FRAME_DEFAULT_MAX;
	if (max > CHAT_FRAME_HARD_MAX)
		max = CHAT_FRAME_HARD_MAX;
	d->max = (uint32_t)max;
}

void chat_frame_decoder_free(struct chat_frame_decoder *d)
{
	size_t max = d->max;

	free(d->buf);
	/* Leave a fresh decoder behind so a stray call after free is harmless. */
	chat_frame_decoder_init(d, max);
}

void chat_frame_put_header(size_t len, uint8_t hdr[CHAT_FRAME_HDR])
{
	chat_be32_put(hdr, (uint32_t)len);
}

/* Make room for need payload bytes (need <= d->want), doubling from a small
 * start so the allocation tracks what arrived rather than what was declared. */
static int reserve(struct chat_frame_decoder *d, size_t need)
{
	size_t ncap;
	uint8_t *p;

	if (need <= d->cap)
		return CHAT_OK;
	ncap = d->cap ? d->cap : (d->want < FRAME_BUF_START ? d->want : FRAME_BUF_START);
	while (ncap < need)
		ncap *= 2; /* no overflow: need <= want <= CHAT_FRAME_HARD_MAX */
	if (ncap > d->want)
		ncap = d->want;
	p = realloc(d->buf, ncap);
	if (!p)
		return CHAT_ERR_NOMEM;
	d->buf = p;
	d->cap = ncap;
	return CHAT_OK;
}

static void next_frame(struct chat_frame_decoder *d)
{
	d->hdr_got = 0;
	d->want = 0;
	d->got = 0;
}

int chat_frame_decode(struct chat_frame_decoder *d, size_t len, const uint8_t *src,
                      size_t *used, const uint8_t **frame, size_t *frame_len)
{
	size_t off = 0, take;
	int ret;

	*used = 0;
	*frame = NULL;
	*frame_len = 0;
	if (d->failed)
		return CHAT_ERR_TOO_BIG;
	if (!src && len)
		return CHAT_ERR_INVALID;

	/* The previous frame may have been returned from d->buf, so a big
	 * buffer can only be dropped now, on the call after it was handed out. */
	if (d->hdr_got == 0 && d->cap > FRAME_BUF_KEEP) {
		free(d->buf);
		d->buf = NULL;
		d->cap = 0;
	}

	if (d->hdr_got < CHAT_FRAME_HDR) {
		take = CHAT_FRAME_HDR - d->hdr_got;
		if (take > len)
			take = len;
		if (take) /* src may be NULL when len is 0 */
			memcpy(d->hdr + d->hdr_got, src, take);
		d->hdr_got += take;
		off += take;
		if (d->hdr_got < CHAT_FRAME_HDR) {
			ret = 0;
			goto out;
		}
		d->want = chat_be32_get(d->hdr);
		d->got = 0;
		if (d->want > d->max) {
			d->failed = 1;
			d->want = 0;
			ret = CHAT_ERR_TOO_BIG;
			goto out;
		}
		/* Zero copy: the whole payload is already in the caller's buffer. */
		if (len - off >= d->want) {
			*frame = src + off;
			*frame_len = d->want;
			off += d->want;
			next_frame(d);
			ret = 1;
			goto out;
		}
	}

	take = d->want - d->got;
	if (take > len - off)
		take = len - off;
	ret = reserve(d, d->got + take);
	if (ret < 0)
		goto out;
	if (take)
		memcpy(d->buf + d->got, src + off, take);
	d->got += take;
	off += take;
	if (d->got < d->want) {
		ret = 0;
		goto out;
	}
	*frame = d->buf;
	*frame_len = d->want;
	next_frame(d);
	ret = 1;
out:
	*used = off;
	return ret;
}

int chat_frame_decoder_eof(const struct chat_frame_decoder *d, size_t *have, size_t *need)
{
	size_t h = 0, n = 0;
	int ret = CHAT_OK;

	if (d->failed) {
		ret = CHAT_ERR_TOO_BIG;
	} else if (d->hdr_got == 0) {
		ret = CHAT_OK;
	} else if (d->hdr_got < CHAT_FRAME_HDR) {
		h = d->hdr_got;
		n = CHAT_FRAME_HDR;
		ret = CHAT_ERR_MALFORMED;
	} else {
		h = CHAT_FRAME_HDR + d->got;
		n = CHAT_FRAME_HDR + d->want;
		ret = CHAT_ERR_MALFORMED;
	}
	if (have)
		*have = h;
	if (need)
		*need = n;
	return ret;
}

size_t chat_frame_decoder_buffered(const struct chat_frame_decoder *d)
{
	return d->hdr_got + d->got;
}

size_t chat_frame_decoder_declared(const struct chat_frame_decoder *d)
{
	return d->hdr_got == CHAT_FRAME_HDR ? chat_be32_get(d->hdr) : 0;
}
