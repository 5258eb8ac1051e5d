/* Length-prefixed frames over a byte stream: a 4-byte big-endian length, then
 * that many bytes.  The decoder is incremental and does no I/O, so a frame may
 * arrive one byte at a time or many frames in one read. */
#ifndef CHAT_FRAME_H
#define CHAT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define CHAT_FRAME_HDR 4
#define CHAT_FRAME_DEFAULT_MAX (64u * 1024u)
#define CHAT_FRAME_HARD_MAX (16u * 1024u * 1024u)

struct chat_frame_decoder {
	size_t max;         /* largest accepted payload */
	uint8_t hdr[CHAT_FRAME_HDR];
	size_t hdr_got;     /* header bytes seen of the current frame */
	size_t want;        /* payload length of the current frame */
	uint8_t *buf;       /* partial payload, grown as bytes arrive (never beyond want) */
	size_t cap, got;
	int failed;         /* sticky: an oversize length was seen */
};

/* max is clamped to CHAT_FRAME_HARD_MAX. */
void chat_frame_decoder_init(struct chat_frame_decoder *d, size_t max);
void chat_frame_decoder_free(struct chat_frame_decoder *d);

/* Feed bytes.  Returns 1 when a frame is complete: *frame/*frame_len describe
 * it (valid until the next call; may point into src); *used says how much of
 * src was consumed — call again with the rest.  Returns 0 when all of src was
 * consumed and no frame is complete yet.  Returns CHAT_ERR_TOO_BIG when a
 * declared length exceeds max (the decoder stays failed). */
int chat_frame_decode(struct chat_frame_decoder *d, size_t len, const uint8_t *src,
                      size_t *used, const uint8_t **frame, size_t *frame_len);

/* At end of stream: CHAT_OK if between frames, CHAT_ERR_MALFORMED if a frame
 * was cut short (*have / *need report how far it got). */
int chat_frame_decoder_eof(const struct chat_frame_decoder *d, size_t *have, size_t *need);

/* Bytes the decoder currently holds (header + partial payload) and has allocated. */
size_t chat_frame_decoder_buffered(const struct chat_frame_decoder *d);

void chat_frame_put_header(size_t len, uint8_t hdr[CHAT_FRAME_HDR]);

#endif
