/* The aescbc-hmac suite through its ops (handshake, open, open_at,
 * session_save/load, fingerprint): see suite_harness.h for the input.
 * Repairs: a changed handshake PDU gets its CRC recomputed; a changed text
 * PDU is rebuilt with the input's timestamp and seq changes and body (or a
 * new ciphertext of an input plaintext with an input padding), with the
 * right CRC and the right MAC under the sender's key, so the fuzzer reaches
 * the replay, freshness and padding checks behind the MAC. */
#define SUITE_NAME "aescbc-hmac"
#include "suite_harness.h"

#include "ach_crc.h"

static int suite_fix_hs(struct fuzz_buf *msg)
{
	char *fixed;

	if (ach_fix_crc(msg->len, msg->data, &fixed) != 0)
		return 0;
	msg->len = 0;
	fb_put(msg, strlen(fixed), fixed);
	free(fixed);
	return 1;
}

/* Input: s16 timestamp change (ms), s8 seq change, u8 body mode (0: the
 * body with (u16 position, u8 xor) changes as mutate(); 1: a u16-length
 * plaintext and a u8 padding length, encrypted under the sender's key). */
static void suite_fix_sealed(void *sender, int sender_role, struct fuzz_in *in,
                             struct fuzz_buf *msg)
{
	struct ach_session *s = sender;
	struct ach_pdu pdu;
	const char *why;
	int16_t dts = (int16_t)fin_u16(in);
	int8_t dseq = (int8_t)fin_u8(in);
	unsigned mode = fin_u8(in);
	uint8_t mac[ACH_MAC_LEN];
	const uint8_t *enc = s->keys[sender_role == CHAT_ROLE_INITIATOR ? ACH_K_ENC_I2R : ACH_K_ENC_R2I];
	const uint8_t *mkey = s->keys[sender_role == CHAT_ROLE_INITIATOR ? ACH_K_MAC_I2R : ACH_K_MAC_R2I];
	struct fuzz_buf body = { 0 };

	if (ach_pdu_parse(sizeof(out), msg->len, msg->data, &pdu, &why) != CHAT_OK)
		return;
	if (mode & 1) {
		size_t len;
		const uint8_t *p = fin_bytes(in, fin_u16(in) % 4096, &len);
		unsigned padlen = fin_u8(in);
		size_t total = (len + padlen + 15) / 16 * 16;
		uint8_t *pt = calloc(1, total ? total : 16);
		FUZZ_CHECK(pt);
		if (!total)
			total = 16;
		memcpy(pt, p, len);
		for (size_t i = len; i < total; i++)
			pt[i] = (uint8_t)padlen;
		fb_put(&body, ACH_BLOCK, pdu.body); /* the IV */
		fb_put(&body, total, pt);
		ach_cbc_encrypt(enc, pdu.body, total, body.data + ACH_BLOCK, pt);
		free(pt);
	} else {
		fb_put(&body, pdu.body_len, pdu.body);
		unsigned n = fin_u8(in) % 4;
		for (unsigned i = 0; i < n; i++) {
			unsigned pos = fin_u16(in), x = fin_u8(in);
			body.data[pos % body.len] ^= (uint8_t)x;
		}
	}
	pdu.timestamp += dts;
	pdu.seq += (uint64_t)(int64_t)dseq;
	if (pdu.seq > (uint64_t)ACH_SEQ_MAX)
		pdu.seq = 0;
	ach_msg_mac(mkey, pdu.timestamp, pdu.seq, body.len, body.data, mac);
	struct chat_buf dst = { .data = out, .cap = sizeof(out) };
	if (ach_pdu_build_text(pdu.timestamp, pdu.seq, body.len, body.data, mac, &dst) == CHAT_OK) {
		msg->len = 0;
		fb_put(msg, dst.len, dst.data);
	}
	fb_free(&body);
	ach_pdu_clear(&pdu);
}
