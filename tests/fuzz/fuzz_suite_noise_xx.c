/* The noise-xx suite through its ops (handshake, open, session_save/load,
 * peer keys pinned or not, fingerprint): see suite_harness.h for the input.
 * A handshake message has nothing a harness could repair (every part after
 * the first key is AEAD under keys of the handshake): a changed one is
 * changed bytes.  A changed transport message can be made authentic: the
 * harness holds the sender's session, so it encrypts an input plaintext at
 * an input nonce under the key that nonce has (the sender's current key,
 * rekeyed forward), and the fuzzer reaches the replay window, the rekeying
 * of the receiver and the refusals behind the tag.  The fuzz host sets
 * rekey_every to its minimum, 64, so rekeys are within reach. */
#define SUITE_NAME "noise-xx"
#include "suite_harness.h"

#include <nettle/chacha-poly1305.h>

#include "noise_xx.h"

static int suite_fix_hs(struct fuzz_buf *msg)
{
	(void)msg;
	return 0;
}

static void put_le64(uint8_t *dst, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		dst[i] = (uint8_t)v;
}

static void encrypt(const uint8_t k[NXX_KEY_LEN], uint64_t n, size_t len, const uint8_t *src,
                    uint8_t *dst)
{
	struct chacha_poly1305_ctx c;
	uint8_t nonce[12] = { 0 };

	put_le64(nonce + 4, n);
	chacha_poly1305_set_key(&c, k);
	chacha_poly1305_set_nonce(&c, nonce);
	if (len)
		chacha_poly1305_encrypt(&c, len, dst, src);
	chacha_poly1305_digest(&c, NXX_TAG_LEN, dst + len);
}

/* Input: u8 mode.  Bit 0 clear: the bytes changed as mutate().  Set: a
 * u16-length plaintext sealed at nonce (the message's own + s16, or with bit
 * 1 an input u64) under the right key when that nonce's key epoch is not
 * behind the sender's (the sender wiped older keys), with bit 2 one tag byte
 * then flipped. */
static void suite_fix_sealed(void *sender, int sender_role, struct fuzz_in *in,
                             struct fuzz_buf *msg)
{
	struct nxx_session *s = sender;
	unsigned mode = fin_u8(in);
	uint64_t n = 0, e;
	uint8_t k[NXX_KEY_LEN];
	size_t len;
	const uint8_t *p;

	(void)sender_role;
	if (!(mode & 1)) {
		mutate(in, msg);
		return;
	}
	if (msg->len < NXX_NONCE_LEN)
		return;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | msg->data[i];
	if (mode & 2)
		n = fin_u64(in);
	else
		n += (uint64_t)(int64_t)(int16_t)fin_u16(in);
	p = fin_blob(in, &len);
	if (len > 4096)
		len = 4096;
	e = n / s->rekey_every;
	if (e < s->tx_epoch || e - s->tx_epoch > 2 * NXX_AHEAD_EPOCHS) {
		mutate(in, msg);
		return;
	}
	memcpy(k, s->tx_key, NXX_KEY_LEN);
	for (uint64_t t = s->tx_epoch; t < e; t++) {
		static const uint8_t zeros[NXX_KEY_LEN];
		uint8_t o[NXX_KEY_LEN + NXX_TAG_LEN];

		encrypt(k, UINT64_MAX, sizeof(zeros), zeros, o);
		memcpy(k, o, NXX_KEY_LEN);
	}
	msg->len = 0;
	{
		uint8_t head[NXX_NONCE_LEN], *body = malloc(len + NXX_TAG_LEN);

		FUZZ_CHECK(body);
		put_le64(head, n);
		encrypt(k, n, len, p, body);
		if (mode & 4)
			body[len] ^= 1;
		fb_put(msg, sizeof(head), head);
		fb_put(msg, len + NXX_TAG_LEN, body);
		free(body);
	}
}
