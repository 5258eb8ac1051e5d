/* A bounded output queue of bytes for one connection.  Nothing is allocated
 * while it is empty (idle clients cost no buffer memory). */
#ifndef CHAT_OUTQ_H
#define CHAT_OUTQ_H

#include <stddef.h>
#include <stdint.h>

/* 32-bit offsets keep the per-connection struct small; limits above 4 GiB
 * are clamped (configuration allows at most 256 MiB). */
struct chat_outq {
	uint8_t *buf;
	uint32_t head, tail, cap; /* queued bytes are buf[head..tail) */
	uint32_t limit;           /* most bytes ever queued at once */
};

void chat_outq_init(struct chat_outq *q, size_t limit);
/* A new limit for later pushes; bytes already queued stay. */
void chat_outq_set_limit(struct chat_outq *q, size_t limit);
void chat_outq_free(struct chat_outq *q);
/* Append a frame header and payload, all or nothing: CHAT_ERR_NOSPACE if the
 * queue would exceed its limit, CHAT_ERR_NOMEM. */
int chat_outq_push_frame(struct chat_outq *q, size_t len, const uint8_t *src);
/* Append raw bytes, all or nothing. */
int chat_outq_push(struct chat_outq *q, size_t len, const uint8_t *src);
/* Queued bytes not yet written. */
static inline size_t chat_outq_len(const struct chat_outq *q) { return q->tail - q->head; }
static inline const uint8_t *chat_outq_data(const struct chat_outq *q) { return q->buf ? q->buf + q->head : NULL; }
/* Drop n written bytes; frees the buffer when the queue empties. */
void chat_outq_consume(struct chat_outq *q, size_t n);

#endif
