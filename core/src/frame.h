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

/* 32-bit counters: every length is capped at CHAT_FRAME_HARD_MAX, and a relay
 * holds one decoder per connection, so its size is per-client memory. */
struct chat_frame_decoder {
	uint8_t *buf;       /* partial payload, grown as bytes arrive (never beyond want) */
	uint32_t max;       /* largest accepted payload */
	uint32_t want;      /* payload length of the current frame */
	uint32_t cap, got;
	uint8_t hdr[CHAT_FRAME_HDR];
	uint8_t hdr_got;    /* header bytes seen of the current frame */
	uint8_t failed;     /* sticky: an oversize length was seen */
};

/* max is clamped to [1, CHAT_FRAME_HARD_MAX]; 0 means CHAT_FRAME_DEFAULT_MAX. */
void chat_frame_decoder_init(struct chat_frame_decoder *d, size_t max);
void chat_frame_decoder_free(struct chat_frame_decoder *d);
/* Change max (clamped as by init) for every frame whose header is still to
 * come; a frame whose length was already accepted keeps its limit.  Nothing
 * is copied or reallocated: the payload buffer only ever grows to the length
 * a header declared, so it stays within the max that was in force then. */
void chat_frame_decoder_set_max(struct chat_frame_decoder *d, size_t max);

/* Feed bytes.  Returns 1 when a frame is complete: *frame and *frame_len describe
 * it (valid until the next call; may point into src); *used says how much of
 * src was consumed — call again with the rest.  Returns 0 when all of src was
 * consumed and no frame is complete yet.  Returns CHAT_ERR_TOO_BIG when a
 * declared length exceeds max (the decoder stays failed), CHAT_ERR_NOMEM
 * (retry later with the unconsumed rest), or CHAT_ERR_INVALID (src NULL with
 * len > 0).  A zero-length frame comes with a non-NULL *frame.  Memory
 * follows the bytes received, never the declared length; a large buffer kept
 * for the previous frame is released on the next call, so call until it
 * returns 0 (len 0 is fine) to leave an idle connection holding next to
 * nothing. */
int chat_frame_decode(struct chat_frame_decoder *d, size_t len, const uint8_t *src,
                      size_t *used, const uint8_t **frame, size_t *frame_len);

/* At end of stream: CHAT_OK if between frames, CHAT_ERR_MALFORMED if a frame
 * was cut short (*have / *need report how far it got, counting the header:
 * need is CHAT_FRAME_HDR while the header itself is incomplete), and
 * CHAT_ERR_TOO_BIG if the decoder failed.  have and need may be NULL. */
int chat_frame_decoder_eof(const struct chat_frame_decoder *d, size_t *have, size_t *need);

/* Bytes the decoder currently holds (header + partial payload).  The payload
 * allocation (cap) stays within max(4 KiB, 2 * bytes held) while a frame is
 * partial; between frames at most 4 KiB is kept (see chat_frame_decode). */
size_t chat_frame_decoder_buffered(const struct chat_frame_decoder *d);

/* The length the current (or the rejected, after CHAT_ERR_TOO_BIG) frame's
 * header declared; 0 while the header is incomplete. */
size_t chat_frame_decoder_declared(const struct chat_frame_decoder *d);

void chat_frame_put_header(size_t len, uint8_t hdr[CHAT_FRAME_HDR]);

#endif
