/* Output queue: limit is all or nothing, empty means no buffer, and the bytes
 * survive any mix of pushes, partial writes and compaction. */
#include "testutils.h"

#include <chat/error.h>

#include "frame.h"
#include "outq.h"

static void test_limit(void)
{
	struct chat_outq q;
	uint8_t data[200];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	chat_outq_init(&q, 100);
	CHECK(q.buf == NULL);
	CHECK_EQ_INT(chat_outq_len(&q), 0);
	CHECK_EQ_INT(chat_outq_push(&q, 0, NULL), CHAT_OK);
	CHECK(q.buf == NULL); /* nothing queued, nothing allocated */

	/* the limit counts the frame header too */
	CHECK_EQ_INT(chat_outq_push_frame(&q, 97, data), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(chat_outq_len(&q), 0);
	CHECK_EQ_INT(chat_outq_push_frame(&q, 96, data), CHAT_OK);
	CHECK_EQ_INT(chat_outq_len(&q), 100);
	CHECK_EQ_INT(chat_outq_data(&q)[0], 0);
	CHECK_EQ_INT(chat_outq_data(&q)[3], 96);
	CHECK_MEM(chat_outq_data(&q) + 4, data, 96);
	CHECK(q.cap <= q.limit);
	CHECK_EQ_INT(chat_outq_push(&q, 1, data), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(chat_outq_push_frame(&q, 0, NULL), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(chat_outq_len(&q), 100);

	/* partial write, then all or nothing against what is left */
	chat_outq_consume(&q, 10);
	CHECK_EQ_INT(chat_outq_len(&q), 90);
	CHECK_MEM(chat_outq_data(&q), data + 6, 90);
	CHECK_EQ_INT(chat_outq_push(&q, 11, data), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(chat_outq_len(&q), 90);
	CHECK_EQ_INT(chat_outq_push_frame(&q, 7, data), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(chat_outq_push_frame(&q, 6, data + 50), CHAT_OK);
	CHECK_EQ_INT(chat_outq_len(&q), 100);
	CHECK_MEM(chat_outq_data(&q), data + 6, 90);
	CHECK_EQ_INT(chat_outq_data(&q)[93], 6);
	CHECK_MEM(chat_outq_data(&q) + 94, data + 50, 6);
	CHECK(q.cap <= q.limit);

	/* consuming everything frees the buffer; too much is clamped */
	chat_outq_consume(&q, 99);
	CHECK_EQ_INT(chat_outq_len(&q), 1);
	CHECK(q.buf != NULL);
	chat_outq_consume(&q, 5);
	CHECK_EQ_INT(chat_outq_len(&q), 0);
	CHECK(q.buf == NULL);
	CHECK_EQ_INT(q.cap, 0);
	chat_outq_consume(&q, 0);
	CHECK(q.buf == NULL);

	/* zero-length frame is just a header */
	CHECK_EQ_INT(chat_outq_push_frame(&q, 0, NULL), CHAT_OK);
	CHECK_EQ_INT(chat_outq_len(&q), 4);
	CHECK_MEM(chat_outq_data(&q), "\0\0\0\0", 4);
	chat_outq_free(&q);
	CHECK(q.buf == NULL);
	CHECK_EQ_INT(chat_outq_len(&q), 0);

	/* oversize frames are refused by size, before the limit */
	chat_outq_init(&q, SIZE_MAX);
	CHECK_EQ_INT(chat_outq_push_frame(&q, (size_t)CHAT_FRAME_HARD_MAX + 1, data),
	             CHAT_ERR_TOO_BIG);
	CHECK_EQ_INT(chat_outq_len(&q), 0);
	chat_outq_free(&q);

	/* limit arithmetic must not overflow */
	chat_outq_init(&q, 10);
	CHECK_EQ_INT(chat_outq_push(&q, 5, data), CHAT_OK);
	CHECK_EQ_INT(chat_outq_push(&q, SIZE_MAX, data), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(chat_outq_push(&q, SIZE_MAX - 2, data), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(chat_outq_len(&q), 5);
	chat_outq_free(&q);
}

/* A queue drained as fast as it fills must reuse its buffer (compaction),
 * not grow to the limit. */
static void test_steady(void)
{
	struct chat_outq q;
	uint8_t data[1000], out[1100];
	size_t cap_seen = 0;
	uint8_t next_in = 0, next_out = 0, *settled = NULL;
	int moved = 0;

	chat_outq_init(&q, 1 << 20);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = next_in++;
	CHECK_EQ_INT(chat_outq_push(&q, sizeof(data), data), CHAT_OK);
	for (int round = 0; round < 2000; round++) {
		uint8_t chunk[100];

		for (size_t i = 0; i < sizeof(chunk); i++)
			chunk[i] = next_in++;
		CHECK_EQ_INT(chat_outq_push(&q, sizeof(chunk), chunk), CHAT_OK);
		CHECK_EQ_INT(chat_outq_len(&q), 1100);
		memcpy(out, chat_outq_data(&q), 100);
		for (size_t i = 0; i < 100; i++)
			CHECK_EQ_INT(out[i], next_out++);
		chat_outq_consume(&q, 100);
		if (q.cap > cap_seen)
			cap_seen = q.cap;
		/* once grown, the same buffer is slid down, never replaced */
		if (round == 20)
			settled = q.buf;
		else if (round > 20 && q.buf != settled)
			moved++;
	}
	CHECK_EQ_INT(moved, 0);
	CHECK(cap_seen <= 2048);
	chat_outq_free(&q);
}

/* Random pushes and partial consumes against a plain array. */
static void test_model(void)
{
	enum { LIMIT = 5000 };
	static uint8_t model[LIMIT], data[LIMIT + 100];
	size_t mlen = 0, frees = 0;
	struct chat_outq q;
	int failures_before = test_failures;

	test_srand(0x0a7c);
	chat_outq_init(&q, LIMIT);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)test_rand();
	for (int iter = 0; iter < 20000; iter++) {
		unsigned op = test_rand() % 8;

		if (op < 3) {
			size_t n = test_rand() % 1500, at = test_rand() % 100;
			int r = chat_outq_push(&q, n, data + at);

			if (mlen + n > LIMIT) {
				CHECK_EQ_INT(r, CHAT_ERR_NOSPACE);
			} else {
				CHECK_EQ_INT(r, CHAT_OK);
				memcpy(model + mlen, data + at, n);
				mlen += n;
			}
		} else if (op < 5) {
			size_t n = test_rand() % 1500, at = test_rand() % 100;
			int r = chat_outq_push_frame(&q, n, data + at);

			if (mlen + CHAT_FRAME_HDR + n > LIMIT) {
				CHECK_EQ_INT(r, CHAT_ERR_NOSPACE);
			} else {
				CHECK_EQ_INT(r, CHAT_OK);
				chat_frame_put_header(n, model + mlen);
				memcpy(model + mlen + CHAT_FRAME_HDR, data + at, n);
				mlen += CHAT_FRAME_HDR + n;
			}
		} else {
			/* small writes mostly, sometimes everything */
			size_t n = op == 7 ? mlen : test_rand() % (mlen / 2 + 2);

			if (n > mlen)
				n = mlen;
			chat_outq_consume(&q, n);
			memmove(model, model + n, mlen - n);
			mlen -= n;
			if (!mlen)
				frees++;
		}
		CHECK_EQ_INT(chat_outq_len(&q), mlen);
		if (mlen)
			CHECK_MEM(chat_outq_data(&q), model, mlen);
		CHECK(q.cap <= LIMIT);
		CHECK(q.head <= q.tail && q.tail <= q.cap);
		CHECK((q.buf == NULL) == (mlen == 0));
		if (test_failures != failures_before)
			break; /* one report, not thousands */
	}
	CHECK(frees > 100); /* the empty-queue path was exercised */
	chat_outq_free(&q);
}

/* The limit can change (a relay allows less before login): later pushes
 * meet the new one; what is queued stays. */
static void test_set_limit(void)
{
	struct chat_outq q;
	uint8_t data[300] = { 0 };

	chat_outq_init(&q, 100);
	CHECK_EQ_INT(chat_outq_push_frame(&q, 200, data), CHAT_ERR_NOSPACE);
	chat_outq_set_limit(&q, 1000);
	CHECK_EQ_INT(chat_outq_push_frame(&q, 200, data), CHAT_OK);
	chat_outq_set_limit(&q, 100);
	CHECK_EQ_INT(chat_outq_len(&q), 204);
	CHECK_EQ_INT(chat_outq_push_frame(&q, 0, NULL), CHAT_ERR_NOSPACE);
	chat_outq_consume(&q, 204);
	CHECK_EQ_INT(chat_outq_push_frame(&q, 96, data), CHAT_OK);
	CHECK_EQ_INT(chat_outq_push_frame(&q, 0, NULL), CHAT_ERR_NOSPACE);
	chat_outq_free(&q);
}

int main(void)
{
	test_limit();
	test_set_limit();
	test_steady();
	test_model();
	return test_done("test_outq");
}
