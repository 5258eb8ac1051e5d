/* Output queue: one contiguous buffer, so a single write() can flush it. */
#include "outq.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <chat/error.h>

#include "frame.h"

#define OUTQ_MIN_CAP 512u

void chat_outq_init(struct chat_outq *q, size_t limit)
{
	memset(q, 0, sizeof(*q));
	chat_outq_set_limit(q, limit);
}

void chat_outq_set_limit(struct chat_outq *q, size_t limit)
{
	q->limit = limit > UINT32_MAX ? UINT32_MAX : (uint32_t)limit;
}

void chat_outq_free(struct chat_outq *q)
{
	free(q->buf);
	q->buf = NULL;
	q->head = q->tail = q->cap = 0;
}

/* Make room for n more bytes at the tail.  Sliding the live bytes down is
 * preferred to growing: a queue that is written out steadily then reuses
 * one buffer instead of creeping up to its limit. */
static int reserve(struct chat_outq *q, size_t n)
{
	size_t len = chat_outq_len(q), need, ncap;
	uint8_t *p;

	if (n > q->limit || len > q->limit - n)
		return CHAT_ERR_NOSPACE;
	if (q->cap - q->tail >= n)
		return CHAT_OK;
	need = len + n;
	if (q->head && need <= q->cap) {
		memmove(q->buf, q->buf + q->head, len);
		q->head = 0;
		q->tail = len;
		return CHAT_OK;
	}
	ncap = q->cap ? q->cap : OUTQ_MIN_CAP;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2) {
			ncap = need;
			break;
		}
		ncap *= 2;
	}
	if (ncap > q->limit)
		ncap = q->limit;
	/* Fresh buffer rather than realloc: only the live bytes are copied. */
	p = malloc(ncap);
	if (!p)
		return CHAT_ERR_NOMEM;
	if (len)
		memcpy(p, q->buf + q->head, len);
	free(q->buf);
	q->buf = p;
	q->cap = ncap;
	q->head = 0;
	q->tail = len;
	return CHAT_OK;
}

int chat_outq_push(struct chat_outq *q, size_t len, const uint8_t *src)
{
	int ret;

	if (len == 0)
		return CHAT_OK;
	if (!src)
		return CHAT_ERR_INVALID;
	ret = reserve(q, len);
	if (ret < 0)
		return ret;
	memcpy(q->buf + q->tail, src, len);
	q->tail += len;
	return CHAT_OK;
}

int chat_outq_push_frame(struct chat_outq *q, size_t len, const uint8_t *src)
{
	int ret;

	if (len > CHAT_FRAME_HARD_MAX)
		return CHAT_ERR_TOO_BIG;
	if (!src && len)
		return CHAT_ERR_INVALID;
	/* One reservation for header and payload keeps the push all or nothing. */
	ret = reserve(q, CHAT_FRAME_HDR + len);
	if (ret < 0)
		return ret;
	chat_frame_put_header(len, q->buf + q->tail);
	q->tail += CHAT_FRAME_HDR;
	if (len)
		memcpy(q->buf + q->tail, src, len);
	q->tail += len;
	return CHAT_OK;
}

void chat_outq_consume(struct chat_outq *q, size_t n)
{
	if (n > chat_outq_len(q))
		n = chat_outq_len(q);
	q->head += n;
	if (q->head == q->tail)
		chat_outq_free(q);
}
