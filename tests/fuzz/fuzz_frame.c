/* The frame decoder (every byte any program reads from the network).
 * Built and run by tests/fuzz/run (tests/fuzz/README.md).
 *
 * Input: byte 0-1 pick max, byte 2-9 seed the read sizes, the rest is the
 * stream.  Beyond "no crash" it checks that the frames re-encode to exactly
 * the bytes consumed, and that memory stays bounded by what arrived. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <chat/error.h>

#include "frame.h"
#include "fuzz.h"

#define CHECK(c) FUZZ_CHECK(c)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chat_frame_decoder d;
	uint64_t rng = 0;
	size_t max, off = 0, ref = 0; /* ref: where the next frame should start */
	int failed = 0;

	if (size < 10)
		return 0;
	max = (size_t)data[0] << 8 | data[1]; /* 0 -> default, small values -> TOO_BIG paths */
	memcpy(&rng, data + 2, sizeof(rng));
	rng |= 1;
	data += 10;
	size -= 10;
	chat_frame_decoder_init(&d, max);

	while (off < size && !failed) {
		size_t n, coff = 0;
		uint8_t *chunk;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		n = 1 + rng % (rng & 0x100 ? 8 : 4096);
		if (n > size - off)
			n = size - off;
		/* a private copy, so reading past the read's end is caught */
		chunk = malloc(n);
		CHECK(chunk);
		memcpy(chunk, data + off, n);
		for (;;) {
			const uint8_t *f;
			size_t used, fl;
			int r = chat_frame_decode(&d, n - coff, chunk + coff, &used, &f, &fl);

			CHECK(used <= n - coff);
			coff += used;
			if (r == CHAT_ERR_TOO_BIG) {
				failed = 1;
				break;
			}
			CHECK(r == 0 || r == 1);
			if (r == 0) {
				CHECK(coff == n);
				break;
			}
			CHECK(f != NULL && fl <= d.max);
			/* the frame is exactly the bytes after its header in the stream */
			CHECK(ref + 4 + fl <= off + coff);
			CHECK(((size_t)data[ref] << 24 | (size_t)data[ref + 1] << 16 |
			       (size_t)data[ref + 2] << 8 | data[ref + 3]) == fl);
			CHECK(memcmp(f, data + ref + 4, fl) == 0);
			ref += 4 + fl;
			CHECK(ref == off + coff);
		}
		CHECK(d.cap <= 4096 || d.cap <= 2 * d.got);
		free(chunk);
		off += n;
	}
	if (!failed) {
		size_t have, need;
		int r = chat_frame_decoder_eof(&d, &have, &need);

		CHECK(r == (ref == size ? CHAT_OK : CHAT_ERR_MALFORMED));
		CHECK(ref + have == size);
		CHECK(chat_frame_decoder_buffered(&d) == size - ref);
	}
	chat_frame_decoder_free(&d);
	return 0;
}

/* Seeds: a few frames, cut into reads of different sizes. */
void fuzz_seeds(const char *dir)
{
	struct fuzz_buf b = { 0 };
	uint8_t hdr[CHAT_FRAME_HDR];
	const char *frames[] = { "\x01\x01\x01\x08xor-demo", "", "\x03", "\x40\0\0\0\0\0\0\0\x2a" };

	fb_u16(&b, 0);
	fb_u64(&b, 0x123456789abcdefull);
	for (size_t i = 0; i < 4; i++) {
		size_t n = i == 0 ? 13 : i == 3 ? 9 : strlen(frames[i]);
		chat_frame_put_header(n, hdr);
		fb_put(&b, sizeof(hdr), hdr);
		fb_put(&b, n, frames[i]);
	}
	fuzz_write_seed(dir, "frames", b.len, b.data);
	b.data[0] = 0;
	b.data[1] = 8; /* max 8: the first frame is too big */
	fuzz_write_seed(dir, "too_big", b.len, b.data);
	b.data[1] = 0;
	b.len -= 3; /* cut inside the last frame */
	fuzz_write_seed(dir, "cut", b.len, b.data);
	fb_free(&b);
}
