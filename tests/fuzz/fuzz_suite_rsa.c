/* The rsa suite through its ops (handshake, open, open_at, session_save/load,
 * fingerprint, peer_identity): see suite_harness.h for the input.  Alice and
 * Bob use the fixed keys of tests/rsa_test_keys.h (key generation would
 * cost more than everything else) and no pins, so a handshake from the input
 * reaches every check behind the key parser.
 * Repairs: nothing in a handshake message can be repaired (every byte is
 * under a signature, or is a key or KEM value the signature covers).  A
 * changed sealed message is decrypted with the sender's key, changed in
 * its plaintext and sequence number as the input says, and sealed again
 * with the right tag, so the fuzzer reaches the replay checks behind GCM. */
#define SUITE_NAME "rsa"
#define SUITE_IDENTITY
#include "suite_harness.h"

#include <nettle/gcm.h>

#include "rsa_suite.h"
#include "../rsa_test_keys.h"

static void suite_identity(int role, struct chat_cipher_params *p)
{
	bool alice = role == CHAT_ROLE_INITIATOR;

	p->identity_private = alice ? alice_priv : bob_priv;
	p->identity_private_len = alice ? sizeof(alice_priv) : sizeof(bob_priv);
	p->identity_public = alice ? alice_pub : bob_pub;
	p->identity_public_len = alice ? sizeof(alice_pub) : sizeof(bob_pub);
	p->secret = NULL;
	p->secret_len = 0;
}

static int suite_fix_hs(struct fuzz_buf *msg)
{
	(void)msg;
	return 0;
}

/* Input: s8 seq change, u8 count of (u16 position, u8 xor) plaintext changes. */
static void suite_fix_sealed(void *sender, int sender_role, struct fuzz_in *in,
                             struct fuzz_buf *msg)
{
	struct rsa_session *s = sender;
	const uint8_t *key = sender_role == CHAT_ROLE_INITIATOR ? s->k_i2r : s->k_r2i;
	int8_t dseq = (int8_t)fin_u8(in);
	unsigned n = fin_u8(in) % 4;
	struct gcm_aes256_ctx g;
	uint8_t iv[GCM_IV_SIZE] = { 0 }, *pt;
	size_t len;
	uint64_t seq = 0;

	if (msg->len < RSA_TEXT_OVERHEAD)
		return;
	len = msg->len - RSA_TEXT_OVERHEAD;
	pt = malloc(len ? len : 1);
	FUZZ_CHECK(pt);
	memcpy(iv + 4, msg->data + 1, 8);
	gcm_aes256_set_key(&g, key);
	gcm_aes256_set_iv(&g, sizeof(iv), iv);
	gcm_aes256_update(&g, RSA_TEXT_HEAD, msg->data);
	gcm_aes256_decrypt(&g, len, pt, msg->data + RSA_TEXT_HEAD);
	for (unsigned i = 0; i < n; i++) {
		unsigned pos = fin_u16(in), x = fin_u8(in);
		if (len)
			pt[pos % len] ^= (uint8_t)x;
	}
	for (int i = 1; i <= 8; i++)
		seq = seq << 8 | msg->data[i];
	seq += (uint64_t)(int64_t)dseq;
	for (int i = 8; i >= 1; i--) {
		msg->data[i] = (uint8_t)seq;
		seq >>= 8;
	}
	memcpy(iv + 4, msg->data + 1, 8);
	gcm_aes256_set_iv(&g, sizeof(iv), iv);
	gcm_aes256_update(&g, RSA_TEXT_HEAD, msg->data);
	gcm_aes256_encrypt(&g, len, msg->data + RSA_TEXT_HEAD, pt);
	gcm_aes256_digest(&g, RSA_TAG_LEN, msg->data + RSA_TEXT_HEAD + len);
	free(pt);
}
