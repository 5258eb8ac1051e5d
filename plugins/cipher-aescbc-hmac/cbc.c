/* AES-256-CBC with PKCS#7 padding (RFC 5652 section 6.3), on Nettle. */
#include "aescbc_hmac.h"

#include <string.h>

#include <nettle/aes.h>
#include <nettle/cbc.h>

size_t ach_padded_len(size_t len)
{
	/* Always at least one byte of padding: a full block when len is a
	 * multiple of the block size, so the last byte is never data. */
	return (len / ACH_BLOCK + 1) * ACH_BLOCK;
}

void ach_pkcs7_pad(size_t len, uint8_t *buf)
{
	size_t n = ach_padded_len(len) - len;

	memset(buf + len, (int)n, n);
}

/* Runs in time independent of the padding value.  It is only reached after
 * the MAC verified, so there is no padding oracle to protect; constant time
 * costs nothing here and keeps it safe should that ever change. */
int ach_pkcs7_unpad(size_t len, const uint8_t *buf, size_t *out_len)
{
	unsigned n, bad = 0;

	if (len == 0 || len % ACH_BLOCK)
		return CHAT_ERR_MALFORMED;
	n = buf[len - 1];
	bad |= (unsigned)(n == 0);
	bad |= (unsigned)(n > ACH_BLOCK);
	for (unsigned i = 1; i <= ACH_BLOCK; i++) {
		/* in_pad is 0xff for the last n bytes, else 0 */
		unsigned in_pad = 0u - (unsigned)(i <= n);

		bad |= in_pad & (buf[len - i] ^ n);
	}
	if (bad)
		return CHAT_ERR_MALFORMED;
	*out_len = len - n;
	return CHAT_OK;
}

void ach_cbc_encrypt(const uint8_t key[ACH_KEY_LEN], const uint8_t iv[ACH_BLOCK], size_t len,
                     uint8_t *dst, const uint8_t *src)
{
	struct aes256_ctx ctx;
	uint8_t v[ACH_BLOCK];

	memcpy(v, iv, ACH_BLOCK);
	aes256_set_encrypt_key(&ctx, key);
	cbc_encrypt(&ctx, (nettle_cipher_func *)aes256_encrypt, ACH_BLOCK, v, len, dst, src);
	explicit_bzero(&ctx, sizeof(ctx));
	explicit_bzero(v, sizeof(v));
}

void ach_cbc_decrypt(const uint8_t key[ACH_KEY_LEN], const uint8_t iv[ACH_BLOCK], size_t len,
                     uint8_t *dst, const uint8_t *src)
{
	struct aes256_ctx ctx;
	uint8_t v[ACH_BLOCK];

	memcpy(v, iv, ACH_BLOCK);
	aes256_set_decrypt_key(&ctx, key);
	cbc_decrypt(&ctx, (nettle_cipher_func *)aes256_decrypt, ACH_BLOCK, v, len, dst, src);
	explicit_bzero(&ctx, sizeof(ctx));
	explicit_bzero(v, sizeof(v));
}
