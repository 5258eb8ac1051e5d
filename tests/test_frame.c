/* Frame decoder: every way a stream can be cut into reads yields the same
 * frames; limits hold; memory follows the bytes that arrived. */
#include "testutils.h"

#include <chat/error.h>

#include "frame.h"

#define NFRAMES 40
#define MAXLEN 10000 /* above the 4 KiB start so buffers grow and get dropped */

struct stream {
	uint8_t *bytes;
	size_t len;
	size_t flen[NFRAMES], foff[NFRAMES]; /* payload length and offset */
};

struct seen {
	const struct stream *s;
	size_t next;     /* index of the next expected frame */
	size_t zerocopy; /* frames returned as a pointer into the chunk */
};

static void make_stream(struct stream *s)
{
	size_t total = 0, o = 0;

	for (size_t i = 0; i < NFRAMES; i++) {
		size_t n;

		/* Always include the edges: empty, max, one below and one byte. */
		if (i == 0 || i == 7)
			n = 0;
		else if (i == 1 || i == NFRAMES - 1)
			n = MAXLEN;
		else if (i == 2)
			n = MAXLEN - 1;
		else if (i == 3)
			n = 1;
		else if (i % 3 == 0)
			n = test_rand() % 64;
		else
			n = test_rand() % (MAXLEN + 1);
		s->flen[i] = n;
		total += CHAT_FRAME_HDR + n;
	}
	s->bytes = malloc(total);
	if (!s->bytes)
		abort();
	for (size_t i = 0; i < NFRAMES; i++) {
		chat_frame_put_header(s->flen[i], s->bytes + o);
		o += CHAT_FRAME_HDR;
		s->foff[i] = o;
		for (size_t j = 0; j < s->flen[i]; j++)
			s->bytes[o + j] = (uint8_t)test_rand();
		o += s->flen[i];
	}
	s->len = total;
}

/* Feed one read's worth of bytes, copied to its own allocation so ASan
 * catches any access past the end of what was "read". */
static void feed(struct chat_frame_decoder *d, struct seen *sn, size_t n, const uint8_t *src)
{
	uint8_t *chunk = malloc(n ? n : 1);
	size_t off = 0;

	if (!chunk)
		abort();
	if (n)
		memcpy(chunk, src, n);
	for (int guard = 0; guard < NFRAMES + 2; guard++) {
		const uint8_t *f;
		size_t used, fl;
		int r = chat_frame_decode(d, n - off, chunk + off, &used, &f, &fl);

		CHECK(r >= 0);
		if (r < 0)
			break;
		CHECK(used <= n - off);
		off += used;
		if (r == 0) {
			CHECK_EQ_INT(off, n);
			break;
		}
		CHECK(f != NULL);
		CHECK(sn->next < NFRAMES);
		if (sn->next >= NFRAMES)
			break;
		CHECK_EQ_INT(fl, sn->s->flen[sn->next]);
		if (fl == sn->s->flen[sn->next])
			CHECK_MEM(f, sn->s->bytes + sn->s->foff[sn->next], fl);
		if ((uintptr_t)f >= (uintptr_t)chunk &&
		    (uintptr_t)f + fl <= (uintptr_t)chunk + n)
			sn->zerocopy++;
		sn->next++;
		/* Between frames nothing but a small buffer may be held. */
		CHECK_EQ_INT(chat_frame_decoder_buffered(d), 0);
	}
	/* The trailing call (returning 0) released any big buffer. */
	if (chat_frame_decoder_buffered(d) == 0)
		CHECK(d->cap <= 4096);
	CHECK(d->cap <= 4096 || d->cap <= 2 * d->got);
	free(chunk);
}

static void finish(struct chat_frame_decoder *d, struct seen *sn)
{
	size_t have = 99, need = 99;

	CHECK_EQ_INT(sn->next, NFRAMES);
	CHECK_EQ_INT(chat_frame_decoder_eof(d, &have, &need), CHAT_OK);
	CHECK_EQ_INT(have, 0);
	CHECK_EQ_INT(need, 0);
	chat_frame_decoder_free(d);
	CHECK(d->buf == NULL);
}

static void test_roundtrip(void)
{
	struct stream s;
	struct chat_frame_decoder d;
	struct seen sn;

	test_srand(0xf4a3e);
	make_stream(&s);

	/* (a) the whole stream in one read: every frame is zero copy */
	chat_frame_decoder_init(&d, MAXLEN);
	memset(&sn, 0, sizeof(sn));
	sn.s = &s;
	feed(&d, &sn, s.len, s.bytes);
	CHECK_EQ_INT(sn.zerocopy, NFRAMES);
	CHECK(d.buf == NULL); /* nothing ever had to be copied */
	finish(&d, &sn);

	/* (b) one byte at a time */
	chat_frame_decoder_init(&d, MAXLEN);
	memset(&sn, 0, sizeof(sn));
	sn.s = &s;
	for (size_t i = 0; i < s.len; i++)
		feed(&d, &sn, 1, s.bytes + i);
	finish(&d, &sn);

	/* (c) random split points, from tiny reads to reads spanning frames */
	for (int iter = 0; iter < 400; iter++) {
		size_t off = 0, maxchunk;

		chat_frame_decoder_init(&d, MAXLEN);
		memset(&sn, 0, sizeof(sn));
		sn.s = &s;
		switch (iter % 4) {
		case 0: maxchunk = 7; break;
		case 1: maxchunk = 300; break;
		case 2: maxchunk = 5000; break;
		default: maxchunk = 40000; break;
		}
		while (off < s.len) {
			size_t n = test_rand() % (maxchunk + 1);

			if (n > s.len - off)
				n = s.len - off;
			feed(&d, &sn, n, s.bytes + off);
			off += n;
		}
		finish(&d, &sn);
	}
	free(s.bytes);
}

static void test_zero_copy(void)
{
	uint8_t buf[4 + 3 + 4 + 0 + 4 + 5];
	struct chat_frame_decoder d;
	const uint8_t *f;
	size_t used, fl;

	memset(buf, 0xab, sizeof(buf));
	chat_frame_put_header(3, buf);
	chat_frame_put_header(0, buf + 7);
	chat_frame_put_header(5, buf + 11);
	chat_frame_decoder_init(&d, 0);
	CHECK_EQ_INT(d.max, CHAT_FRAME_DEFAULT_MAX);

	CHECK_EQ_INT(chat_frame_decode(&d, sizeof(buf), buf, &used, &f, &fl), 1);
	CHECK(f == buf + 4);
	CHECK_EQ_INT(fl, 3);
	CHECK_EQ_INT(used, 7);
	CHECK_EQ_INT(chat_frame_decode(&d, sizeof(buf) - 7, buf + 7, &used, &f, &fl), 1);
	CHECK(f == buf + 11); /* zero length: still a valid, non-NULL pointer */
	CHECK_EQ_INT(fl, 0);
	CHECK_EQ_INT(used, 4);
	CHECK_EQ_INT(chat_frame_decode(&d, sizeof(buf) - 11, buf + 11, &used, &f, &fl), 1);
	CHECK(f == buf + 15);
	CHECK_EQ_INT(fl, 5);
	CHECK_EQ_INT(used, 9);
	CHECK_EQ_INT(chat_frame_decode(&d, 0, NULL, &used, &f, &fl), 0);
	CHECK_EQ_INT(used, 0);
	CHECK(f == NULL);
	CHECK(d.buf == NULL);

	/* Header split across reads, payload whole in the next: still no copy. */
	CHECK_EQ_INT(chat_frame_decode(&d, 2, buf, &used, &f, &fl), 0);
	CHECK_EQ_INT(used, 2);
	CHECK_EQ_INT(chat_frame_decoder_buffered(&d), 2);
	CHECK_EQ_INT(chat_frame_decode(&d, 5, buf + 2, &used, &f, &fl), 1);
	CHECK(f == buf + 4);
	CHECK_EQ_INT(fl, 3);
	CHECK_EQ_INT(used, 5);
	CHECK(d.buf == NULL);

	/* A lone zero-length frame arriving byte by byte. */
	for (int i = 0; i < 3; i++)
		CHECK_EQ_INT(chat_frame_decode(&d, 1, buf + 7 + i, &used, &f, &fl), 0);
	CHECK_EQ_INT(chat_frame_decode(&d, 1, buf + 10, &used, &f, &fl), 1);
	CHECK(f != NULL);
	CHECK_EQ_INT(fl, 0);
	CHECK_EQ_INT(used, 1);
	chat_frame_decoder_free(&d);

	CHECK_EQ_INT(chat_frame_decode(&d, 3, NULL, &used, &f, &fl), CHAT_ERR_INVALID);
}

static void test_limits(void)
{
	struct chat_frame_decoder d;
	uint8_t buf[4 + 101];
	const uint8_t *f;
	size_t used, fl, have, need;

	memset(buf, 0x5a, sizeof(buf));

	/* exactly max is accepted */
	chat_frame_decoder_init(&d, 100);
	chat_frame_put_header(100, buf);
	CHECK_EQ_INT(chat_frame_decode(&d, 104, buf, &used, &f, &fl), 1);
	CHECK_EQ_INT(fl, 100);
	CHECK_EQ_INT(used, 104);
	chat_frame_decoder_free(&d);

	/* max + 1 is refused at the header, before any payload, and stays so */
	chat_frame_decoder_init(&d, 100);
	chat_frame_put_header(101, buf);
	CHECK_EQ_INT(chat_frame_decode(&d, 2, buf, &used, &f, &fl), 0);
	CHECK_EQ_INT(chat_frame_decoder_declared(&d), 0); /* header incomplete */
	CHECK_EQ_INT(chat_frame_decode(&d, 103, buf + 2, &used, &f, &fl), CHAT_ERR_TOO_BIG);
	CHECK_EQ_INT(chat_frame_decoder_declared(&d), 101); /* what the reason names */
	CHECK_EQ_INT(used, 2);
	CHECK(f == NULL);
	CHECK(d.buf == NULL);
	chat_frame_put_header(1, buf);
	CHECK_EQ_INT(chat_frame_decode(&d, 5, buf, &used, &f, &fl), CHAT_ERR_TOO_BIG);
	CHECK_EQ_INT(used, 0);
	CHECK_EQ_INT(chat_frame_decoder_eof(&d, &have, &need), CHAT_ERR_TOO_BIG);
	chat_frame_decoder_free(&d);

	/* an absurd length (0xffffffff) */
	chat_frame_decoder_init(&d, 0);
	memset(buf, 0xff, 4);
	CHECK_EQ_INT(chat_frame_decode(&d, 4, buf, &used, &f, &fl), CHAT_ERR_TOO_BIG);
	CHECK_EQ_INT(chat_frame_decoder_declared(&d), 0xffffffffu);
	chat_frame_decoder_free(&d);

	/* hard cap clamp; max 0 means the default; max 1 works */
	chat_frame_decoder_init(&d, SIZE_MAX);
	CHECK_EQ_INT(d.max, CHAT_FRAME_HARD_MAX);
	chat_frame_put_header(CHAT_FRAME_HARD_MAX + 1, buf);
	CHECK_EQ_INT(chat_frame_decode(&d, 4, buf, &used, &f, &fl), CHAT_ERR_TOO_BIG);
	chat_frame_decoder_free(&d);
	chat_frame_decoder_init(&d, CHAT_FRAME_HARD_MAX + 1);
	CHECK_EQ_INT(d.max, CHAT_FRAME_HARD_MAX);
	chat_frame_put_header(CHAT_FRAME_HARD_MAX, buf);
	CHECK_EQ_INT(chat_frame_decode(&d, 10, buf, &used, &f, &fl), 0);
	CHECK_EQ_INT(chat_frame_decoder_buffered(&d), 10);
	CHECK(d.cap <= 4096); /* 16 MiB declared, 6 bytes sent */
	chat_frame_decoder_free(&d);
	chat_frame_decoder_init(&d, 0);
	CHECK_EQ_INT(d.max, CHAT_FRAME_DEFAULT_MAX);
	chat_frame_decoder_free(&d);
	chat_frame_decoder_init(&d, 1);
	CHECK_EQ_INT(d.max, 1);
	chat_frame_put_header(2, buf);
	CHECK_EQ_INT(chat_frame_decode(&d, 4, buf, &used, &f, &fl), CHAT_ERR_TOO_BIG);
	chat_frame_decoder_free(&d);
}

/* A connection's limit can change between frames (the relay allows small
 * frames until login): a header that arrives after the change is checked
 * against the new limit, the frame in progress keeps the old one, and the
 * buffer never grows past the length that was accepted. */
static void test_set_max(void)
{
	struct chat_frame_decoder d;
	static uint8_t buf[2 * (4 + 5120)];
	const uint8_t *f;
	size_t used, fl, off = 0;

	memset(buf, 0x33, sizeof(buf));
	chat_frame_decoder_init(&d, 4096);
	/* 5120 declared before the raise: refused at the header. */
	chat_frame_put_header(5120, buf);
	CHECK_EQ_INT(chat_frame_decode(&d, 4, buf, &used, &f, &fl), CHAT_ERR_TOO_BIG);
	CHECK(d.buf == NULL);
	chat_frame_decoder_free(&d);

	/* A 4000-byte frame half sent, then the limit drops to 100: it still
	 * completes (accepted under 4096); the next header meets 100. */
	chat_frame_decoder_init(&d, 4096);
	chat_frame_put_header(4000, buf);
	CHECK_EQ_INT(chat_frame_decode(&d, 2004, buf, &used, &f, &fl), 0);
	chat_frame_decoder_set_max(&d, 100);
	CHECK_EQ_INT(d.max, 100);
	CHECK_EQ_INT(chat_frame_decode(&d, 2000, buf + 2004, &used, &f, &fl), 1);
	CHECK_EQ_INT(fl, 4000);
	CHECK(d.cap <= 4000);
	chat_frame_put_header(101, buf);
	CHECK_EQ_INT(chat_frame_decode(&d, 4, buf, &used, &f, &fl), CHAT_ERR_TOO_BIG);
	chat_frame_decoder_free(&d);

	/* Raised between two frames of one read: the second (5120) passes. */
	chat_frame_decoder_init(&d, 4096);
	chat_frame_put_header(10, buf);
	off = 14;
	chat_frame_put_header(5120, buf + off);
	CHECK_EQ_INT(chat_frame_decode(&d, off + 4 + 5120, buf, &used, &f, &fl), 1);
	CHECK_EQ_INT(fl, 10);
	chat_frame_decoder_set_max(&d, 65536);
	CHECK_EQ_INT(chat_frame_decode(&d, 4 + 5120, buf + used, &used, &f, &fl), 1);
	CHECK_EQ_INT(fl, 5120);
	/* 0 and oversize values are clamped as by init. */
	chat_frame_decoder_set_max(&d, 0);
	CHECK_EQ_INT(d.max, CHAT_FRAME_DEFAULT_MAX);
	chat_frame_decoder_set_max(&d, SIZE_MAX);
	CHECK_EQ_INT(d.max, CHAT_FRAME_HARD_MAX);
	chat_frame_decoder_free(&d);
}

static void test_eof(void)
{
	struct chat_frame_decoder d;
	uint8_t buf[4 + 10];
	const uint8_t *f;
	size_t used, fl, have, need;

	memset(buf, 1, sizeof(buf));
	chat_frame_put_header(10, buf);

	chat_frame_decoder_init(&d, 0);
	CHECK_EQ_INT(chat_frame_decoder_eof(&d, &have, &need), CHAT_OK);
	CHECK_EQ_INT(have, 0);
	CHECK_EQ_INT(need, 0);
	CHECK_EQ_INT(chat_frame_decoder_eof(&d, NULL, NULL), CHAT_OK);

	/* mid header */
	CHECK_EQ_INT(chat_frame_decode(&d, 2, buf, &used, &f, &fl), 0);
	CHECK_EQ_INT(chat_frame_decoder_eof(&d, &have, &need), CHAT_ERR_MALFORMED);
	CHECK_EQ_INT(have, 2);
	CHECK_EQ_INT(need, CHAT_FRAME_HDR);

	/* header complete, no payload yet */
	CHECK_EQ_INT(chat_frame_decode(&d, 2, buf + 2, &used, &f, &fl), 0);
	CHECK_EQ_INT(chat_frame_decoder_eof(&d, &have, &need), CHAT_ERR_MALFORMED);
	CHECK_EQ_INT(have, 4);
	CHECK_EQ_INT(need, 14);

	/* mid payload */
	CHECK_EQ_INT(chat_frame_decode(&d, 3, buf + 4, &used, &f, &fl), 0);
	CHECK_EQ_INT(chat_frame_decoder_buffered(&d), 7);
	CHECK_EQ_INT(chat_frame_decoder_eof(&d, &have, &need), CHAT_ERR_MALFORMED);
	CHECK_EQ_INT(have, 7);
	CHECK_EQ_INT(need, 14);
	CHECK_EQ_INT(chat_frame_decoder_eof(&d, NULL, NULL), CHAT_ERR_MALFORMED);

	/* completed: at a boundary again */
	CHECK_EQ_INT(chat_frame_decode(&d, 7, buf + 7, &used, &f, &fl), 1);
	CHECK_EQ_INT(fl, 10);
	CHECK_MEM(f, buf + 4, 10);
	CHECK_EQ_INT(chat_frame_decoder_eof(&d, &have, &need), CHAT_OK);
	CHECK_EQ_INT(have, 0);
	CHECK_EQ_INT(need, 0);
	chat_frame_decoder_free(&d);
}

/* A peer declaring 64 KiB and trickling bytes costs what it sent, and the
 * buffer goes away once the frame has been handed out. */
static void test_memory(void)
{
	struct chat_frame_decoder d;
	size_t want = 64 * 1024, sent = 0, used, fl;
	uint8_t *payload = malloc(want), hdr[CHAT_FRAME_HDR];
	const uint8_t *f;
	int r = 0;

	if (!payload)
		abort();
	for (size_t i = 0; i < want; i++)
		payload[i] = (uint8_t)(i * 7);
	chat_frame_decoder_init(&d, want);
	chat_frame_put_header(want, hdr);
	CHECK_EQ_INT(chat_frame_decode(&d, 4, hdr, &used, &f, &fl), 0);
	CHECK(d.buf == NULL); /* the declaration alone allocates nothing */
	CHECK_EQ_INT(chat_frame_decoder_buffered(&d), 4);
	CHECK_EQ_INT(chat_frame_decode(&d, 5, payload, &used, &f, &fl), 0);
	sent = 5;
	CHECK_EQ_INT(chat_frame_decoder_buffered(&d), 9);
	CHECK(d.cap <= 4096);
	CHECK(d.cap < want / 8);
	while (sent < want) {
		size_t n = 1000;

		if (n > want - sent)
			n = want - sent;
		r = chat_frame_decode(&d, n, payload + sent, &used, &f, &fl);
		CHECK_EQ_INT(used, n);
		sent += n;
		if (r != 0)
			break;
		CHECK_EQ_INT(chat_frame_decoder_buffered(&d), 4 + sent);
		CHECK(d.cap <= 4096 || d.cap <= 2 * d.got);
		CHECK(d.cap <= want);
	}
	CHECK_EQ_INT(r, 1);
	CHECK_EQ_INT(sent, want);
	CHECK_EQ_INT(fl, want);
	CHECK(f == d.buf); /* assembled, so not zero copy */
	CHECK_MEM(f, payload, want);
	CHECK_EQ_INT(d.cap, want);
	/* The frame is valid until the next call; that call drops the buffer. */
	CHECK_EQ_INT(chat_frame_decode(&d, 0, NULL, &used, &f, &fl), 0);
	CHECK(d.buf == NULL);
	CHECK_EQ_INT(d.cap, 0);
	CHECK_EQ_INT(chat_frame_decoder_buffered(&d), 0);

	/* small frames through the buffer keep at most a small one around */
	chat_frame_put_header(100, hdr);
	CHECK_EQ_INT(chat_frame_decode(&d, 4, hdr, &used, &f, &fl), 0);
	CHECK_EQ_INT(chat_frame_decode(&d, 50, payload, &used, &f, &fl), 0);
	CHECK_EQ_INT(d.cap, 100); /* never beyond what was declared */
	CHECK_EQ_INT(chat_frame_decode(&d, 50, payload + 50, &used, &f, &fl), 1);
	CHECK_MEM(f, payload, 100);
	CHECK_EQ_INT(chat_frame_decode(&d, 0, NULL, &used, &f, &fl), 0);
	CHECK(d.cap <= 4096);
	chat_frame_decoder_free(&d);
	CHECK(d.buf == NULL);
	CHECK_EQ_INT(d.max, want);
	free(payload);
}

static void test_header(void)
{
	uint8_t h[CHAT_FRAME_HDR];

	chat_frame_put_header(0x01020304u, h);
	CHECK_EQ_INT(h[0], 1);
	CHECK_EQ_INT(h[1], 2);
	CHECK_EQ_INT(h[2], 3);
	CHECK_EQ_INT(h[3], 4);
}

int main(void)
{
	test_header();
	test_roundtrip();
	test_zero_copy();
	test_limits();
	test_set_max();
	test_eof();
	test_memory();
	return test_done("test_frame");
}
