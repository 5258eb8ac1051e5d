#include "keystore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/aes.h>
#include <nettle/cbc.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <nettle/pbkdf2.h>

#include <chat/error.h>

#include "be.h"
#include "durable.h"
#include "host.h"

#define MAGIC "CHATKEYS"
#define MAGIC_LEN 8
#define VERSION 1u
#define SALT_LEN 16
#define IV_LEN 16
#define KEY_LEN 32
#define MAC_LEN 32
#define BLOCK 16
/* magic | version | iterations | salt | iv | clen */
#define OFF_VERSION MAGIC_LEN
#define OFF_ITER (OFF_VERSION + 4)
#define OFF_SALT (OFF_ITER + 4)
#define OFF_IV (OFF_SALT + SALT_LEN)
#define OFF_CLEN (OFF_IV + IV_LEN)
#define HDR_LEN (OFF_CLEN + 4)
#define CLEN_MAX ((size_t)CHAT_KEYSTORE_MAX + BLOCK) /* a full padding block on top */
#define FILE_MIN (HDR_LEN + BLOCK + MAC_LEN)
#define FILE_MAX (HDR_LEN + CLEN_MAX + MAC_LEN)

struct chat_keystore {
	char *path;
	int lock_fd;                /* holds flock(PATH.lock) */
	unsigned iterations;
	uint8_t salt[SALT_LEN];
	uint8_t enc_key[KEY_LEN];
	uint8_t mac_key[KEY_LEN];
	int staged;                 /* PATH.tmp holds a save not yet committed */
};

static int fail(int rc, size_t errlen, char *err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(int rc, size_t errlen, char *err, const char *fmt, ...)
{
	va_list ap;

	if (errlen && err) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static void derive(size_t pw_len, const char *pw, const uint8_t salt[SALT_LEN], unsigned iterations,
                   uint8_t enc[KEY_LEN], uint8_t mac[KEY_LEN])
{
	uint8_t k[2 * KEY_LEN];

	pbkdf2_hmac_sha256(pw_len, (const uint8_t *)pw, iterations, SALT_LEN, salt, sizeof(k), k);
	memcpy(enc, k, KEY_LEN);
	memcpy(mac, k + KEY_LEN, KEY_LEN);
	explicit_bzero(k, sizeof(k));
}

static void compute_mac(const uint8_t key[KEY_LEN], size_t len, const uint8_t *data,
                        uint8_t out[MAC_LEN])
{
	struct hmac_sha256_ctx ctx;

	hmac_sha256_set_key(&ctx, KEY_LEN, key);
	hmac_sha256_update(&ctx, len, data);
	hmac_sha256_digest(&ctx, MAC_LEN, out);
	explicit_bzero(&ctx, sizeof(ctx));
}

/* Check a whole file image and decrypt it.  No I/O, so it can be fuzzed.
 * Order: structure and sizes (cheap, names what is wrong), then the MAC
 * (constant time), and only then decryption and the padding. */
static int unseal(const char *path, size_t size, const uint8_t *data, size_t pw_len, const char *pw,
                  struct chat_keystore *ks, uint8_t **blob, size_t *blob_len, size_t errlen,
                  char *err)
{
	struct aes256_ctx aes;
	uint8_t enc[KEY_LEN], mac_key[KEY_LEN], mac[MAC_LEN], iv[IV_LEN];
	uint8_t *pt = NULL;
	unsigned iterations, bad = 0;
	size_t clen, pad;
	uint32_t version;
	int rc;

	if (size == 0)
		return fail(CHAT_ERR_MALFORMED, errlen, err, "%s: empty file, not a keystore", path);
	if (memcmp(data, MAGIC, size < MAGIC_LEN ? size : MAGIC_LEN) != 0)
		return fail(CHAT_ERR_MALFORMED, errlen, err, "%s: not a keystore (bad magic)", path);
	if (size < HDR_LEN)
		return fail(CHAT_ERR_MALFORMED, errlen, err, "%s: truncated (%zu of at least %d bytes)",
		            path, size, FILE_MIN);
	version = chat_be32_get(data + OFF_VERSION);
	if (version != VERSION)
		return fail(CHAT_ERR_MALFORMED, errlen, err,
		            "%s: keystore version %u is not supported (this program reads %u)", path,
		            version, VERSION);
	iterations = chat_be32_get(data + OFF_ITER);
	if (iterations < 1 || iterations > CHAT_KEYSTORE_ITERATIONS_MAX)
		return fail(CHAT_ERR_MALFORMED, errlen, err,
		            "%s: malformed (iteration count %u out of range 1..%u)", path, iterations,
		            CHAT_KEYSTORE_ITERATIONS_MAX);
	clen = chat_be32_get(data + OFF_CLEN);
	if (clen < BLOCK || clen % BLOCK || clen > CLEN_MAX)
		return fail(CHAT_ERR_MALFORMED, errlen, err, "%s: malformed (ciphertext length %zu)",
		            path, clen);
	if (size < HDR_LEN + clen + MAC_LEN)
		return fail(CHAT_ERR_MALFORMED, errlen, err, "%s: truncated (%zu of %zu bytes)", path,
		            size, HDR_LEN + clen + MAC_LEN);
	if (size > HDR_LEN + clen + MAC_LEN)
		return fail(CHAT_ERR_MALFORMED, errlen, err, "%s: %zu unexpected bytes after the MAC",
		            path, size - (HDR_LEN + clen + MAC_LEN));

	derive(pw_len, pw, data + OFF_SALT, iterations, enc, mac_key);
	compute_mac(mac_key, HDR_LEN + clen, data, mac);
	if (!memeql_sec(mac, data + HDR_LEN + clen, MAC_LEN)) {
		rc = fail(CHAT_ERR_AUTH, errlen, err,
		          "%s: wrong password or the keystore was modified (MAC check failed)", path);
		goto out;
	}
	pt = malloc(clen);
	if (!pt) {
		rc = fail(CHAT_ERR_NOMEM, errlen, err, "%s: out of memory", path);
		goto out;
	}
	memcpy(iv, data + OFF_IV, IV_LEN);
	aes256_set_decrypt_key(&aes, enc);
	cbc_decrypt(&aes, (nettle_cipher_func *)aes256_decrypt, IV_LEN, iv, clen, pt,
	            data + HDR_LEN);
	explicit_bzero(&aes, sizeof(aes));
	/* After a good MAC a bad padding is a writer bug, not an oracle. */
	pad = pt[clen - 1];
	if (pad < 1 || pad > BLOCK) {
		bad = 1;
	} else {
		for (size_t i = 0; i < pad; i++)
			bad |= pt[clen - 1 - i] ^ (unsigned)pad;
	}
	if (bad) {
		rc = fail(CHAT_ERR_MALFORMED, errlen, err, "%s: malformed (bad padding)", path);
		goto out;
	}
	explicit_bzero(pt + clen - pad, pad);
	*blob = pt;
	*blob_len = clen - pad;
	pt = NULL;
	ks->iterations = iterations;
	memcpy(ks->salt, data + OFF_SALT, SALT_LEN);
	memcpy(ks->enc_key, enc, KEY_LEN);
	memcpy(ks->mac_key, mac_key, KEY_LEN);
	rc = CHAT_OK;
out:
	if (pt) {
		explicit_bzero(pt, clen);
		free(pt);
	}
	explicit_bzero(enc, sizeof(enc));
	explicit_bzero(mac_key, sizeof(mac_key));
	explicit_bzero(mac, sizeof(mac));
	return rc;
}

/* Read the file behind fd after checking its size against FILE_MAX. */
static int slurp(const char *path, int fd, uint8_t **data, size_t *size, size_t errlen, char *err)
{
	struct stat st;
	uint8_t *buf;
	size_t got = 0;

	*data = NULL;
	*size = 0;
	if (fstat(fd, &st) != 0)
		return fail(CHAT_ERR_IO, errlen, err, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(CHAT_ERR_IO, errlen, err, "%s: not a regular file", path);
	if ((uint64_t)st.st_size > FILE_MAX)
		return fail(CHAT_ERR_MALFORMED, errlen, err,
		            "%s: malformed (%llu bytes, larger than any keystore)", path,
		            (unsigned long long)st.st_size);
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return fail(CHAT_ERR_NOMEM, errlen, err, "%s: out of memory", path);
	while (got < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(buf);
			return fail(CHAT_ERR_IO, errlen, err, "%s: %s", path, strerror(e));
		}
		if (n == 0)
			break; /* shrank meanwhile: what is there gets verified */
		got += (size_t)n;
	}
	*data = buf;
	*size = got;
	return CHAT_OK;
}

static int write_all(int fd, size_t len, const uint8_t *src)
{
	while (len > 0) {
		ssize_t n = write(fd, src, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		src += n;
		len -= (size_t)n;
	}
	return 0;
}

/* "PATH" + suffix, malloc'd. */
static char *with_suffix(const char *path, const char *suffix)
{
	size_t a = strlen(path), b = strlen(suffix);
	char *s = malloc(a + b + 1);

	if (s) {
		memcpy(s, path, a);
		memcpy(s + a, suffix, b + 1);
	}
	return s;
}

int chat_keystore_open(const char *path, size_t pw_len, const char *pw, unsigned iterations,
                       struct chat_keystore **out, uint8_t **blob, size_t *blob_len, int *created,
                       size_t errlen, char *err)
{
	struct chat_keystore *ks = NULL;
	char *lock_path = NULL;
	uint8_t *data = NULL;
	size_t size = 0;
	int fd = -1, rc;

	if (out)
		*out = NULL;
	if (blob)
		*blob = NULL;
	if (blob_len)
		*blob_len = 0;
	if (created)
		*created = 0;
	if (errlen && err)
		err[0] = '\0';
	if (!out || !blob || !blob_len || !path || !*path || (!pw && pw_len) || iterations < 1 ||
	    iterations > CHAT_KEYSTORE_ITERATIONS_MAX)
		return fail(CHAT_ERR_INVALID, errlen, err,
		            "%s: invalid keystore path, password or iteration count",
		            path ? path : "(null)");
	if (!pw)
		pw = "";
	ks = calloc(1, sizeof(*ks));
	if (ks)
		ks->lock_fd = -1;
	if (!ks || !(ks->path = strdup(path)) || !(lock_path = with_suffix(path, ".lock"))) {
		rc = fail(CHAT_ERR_NOMEM, errlen, err, "%s: out of memory", path);
		goto out;
	}
	ks->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (ks->lock_fd < 0) {
		rc = fail(CHAT_ERR_IO, errlen, err, "%s: cannot create the lock file %s: %s", path,
		          lock_path, strerror(errno));
		goto out;
	}
	if (flock(ks->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EWOULDBLOCK)
			rc = fail(CHAT_ERR_STATE, errlen, err, "%s is in use by another chat-client", path);
		else
			rc = fail(CHAT_ERR_IO, errlen, err, "%s: cannot lock %s: %s", path, lock_path,
			          strerror(errno));
		goto out;
	}

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		/* Nothing is written until the first save. */
		ks->iterations = iterations;
		if (chat_os_random(SALT_LEN, ks->salt)) {
			rc = fail(CHAT_ERR_RANDOM, errlen, err, "%s: no random salt: %s", path,
			          strerror(errno));
			goto out;
		}
		derive(pw_len, pw, ks->salt, iterations, ks->enc_key, ks->mac_key);
		if (created)
			*created = 1;
		rc = CHAT_OK;
		goto out;
	}
	if (fd < 0) {
		rc = fail(CHAT_ERR_IO, errlen, err, "%s: %s", path, strerror(errno));
		goto out;
	}
	rc = slurp(path, fd, &data, &size, errlen, err);
	if (rc)
		goto out;
	rc = unseal(path, size, data, pw_len, pw, ks, blob, blob_len, errlen, err);
out:
	if (fd >= 0)
		close(fd);
	free(data); /* ciphertext only */
	free(lock_path);
	if (rc) {
		chat_keystore_close(ks);
		return rc;
	}
	*out = ks;
	return CHAT_OK;
}

/* Build the whole file image for blob under ks's keys and a fresh IV. */
static int seal(const struct chat_keystore *ks, size_t len, const uint8_t *blob, uint8_t **image,
                size_t *image_len)
{
	struct aes256_ctx aes;
	uint8_t iv[IV_LEN], last[BLOCK];
	size_t full = len / BLOCK * BLOCK, clen = full + BLOCK, total = HDR_LEN + clen + MAC_LEN;
	size_t rest = len - full;
	uint8_t *buf;

	*image = NULL;
	*image_len = 0;
	buf = malloc(total);
	if (!buf)
		return CHAT_ERR_NOMEM;
	memcpy(buf, MAGIC, MAGIC_LEN);
	chat_be32_put(buf + OFF_VERSION, VERSION);
	chat_be32_put(buf + OFF_ITER, ks->iterations);
	memcpy(buf + OFF_SALT, ks->salt, SALT_LEN);
	if (chat_os_random(IV_LEN, buf + OFF_IV)) {
		free(buf);
		return CHAT_ERR_RANDOM;
	}
	chat_be32_put(buf + OFF_CLEN, (uint32_t)clen);
	/* Whole blocks straight from the blob; only the last, padded block is
	 * copied, so a large blob is never duplicated in the clear. */
	memcpy(iv, buf + OFF_IV, IV_LEN);
	aes256_set_encrypt_key(&aes, ks->enc_key);
	if (full)
		cbc_encrypt(&aes, (nettle_cipher_func *)aes256_encrypt, IV_LEN, iv, full,
		            buf + HDR_LEN, blob);
	if (rest)
		memcpy(last, blob + full, rest);
	memset(last + rest, (int)(BLOCK - rest), BLOCK - rest); /* PKCS#7: 1..16 bytes */
	cbc_encrypt(&aes, (nettle_cipher_func *)aes256_encrypt, IV_LEN, iv, BLOCK,
	            buf + HDR_LEN + full, last);
	explicit_bzero(last, sizeof(last));
	explicit_bzero(&aes, sizeof(aes));
	compute_mac(ks->mac_key, HDR_LEN + clen, buf, buf + HDR_LEN + clen);
	*image = buf;
	*image_len = total;
	return CHAT_OK;
}

int chat_keystore_stage(struct chat_keystore *ks, size_t len, const uint8_t *blob,
                        size_t errlen, char *err)
{
	uint8_t *image = NULL;
	size_t image_len = 0;
	char *tmp = NULL;
	const char *what;
	int fd = -1, rc, e;

	if (!ks || (len && !blob))
		return fail(CHAT_ERR_INVALID, errlen, err, "%s: invalid keystore save",
		            ks ? ks->path : "(null)");
	ks->staged = 0;
	if (len > CHAT_KEYSTORE_MAX)
		return fail(CHAT_ERR_TOO_BIG, errlen, err, "%s: %zu bytes to save, more than %u",
		            ks->path, len, CHAT_KEYSTORE_MAX);
	rc = seal(ks, len, blob, &image, &image_len);
	if (rc == CHAT_ERR_RANDOM)
		return fail(rc, errlen, err, "%s: no random IV: %s", ks->path, strerror(errno));
	if (rc)
		return fail(rc, errlen, err, "%s: out of memory", ks->path);
	tmp = with_suffix(ks->path, ".tmp");
	if (!tmp) {
		free(image);
		return fail(CHAT_ERR_NOMEM, errlen, err, "%s: out of memory", ks->path);
	}

	what = "create";
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto io_fail_nofile;
	/* A stale PATH.tmp keeps its old mode across O_TRUNC. */
	what = "write";
	if (fchmod(fd, 0600) != 0 || write_all(fd, image_len, image) != 0)
		goto io_fail;
	what = "sync";
	if (fsync(fd) != 0)
		goto io_fail;
	what = "close";
	e = close(fd);
	fd = -1;
	if (e != 0)
		goto io_fail;
	free(image);
	free(tmp);
	ks->staged = 1;
	return CHAT_OK; /* PATH.tmp holds it; chat_keystore_commit() puts it in place */

io_fail:
	e = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = e;
io_fail_nofile:
	rc = fail(CHAT_ERR_IO, errlen, err, "%s: cannot save: %s %s: %s", ks->path, what, tmp,
	          strerror(errno));
	free(tmp);
	free(image);
	return rc;
}

int chat_keystore_commit(struct chat_keystore *ks, size_t errlen, char *err)
{
	char *tmp;
	int rc;

	if (!ks || !ks->staged)
		return fail(CHAT_ERR_STATE, errlen, err, "%s: nothing staged to commit",
		            ks ? ks->path : "(null)");
	ks->staged = 0;
	if (!(tmp = with_suffix(ks->path, ".tmp")))
		return fail(CHAT_ERR_NOMEM, errlen, err, "%s: out of memory", ks->path);
	if (rename(tmp, ks->path) != 0) {
		rc = fail(CHAT_ERR_IO, errlen, err, "%s: cannot save: rename %s: %s", ks->path, tmp,
		          strerror(errno));
		unlink(tmp);
		free(tmp);
		return rc;
	}
	free(tmp);
	/* The new file is in place; only its durability is in question now. */
	if (chat_fsync_dir_of(ks->path) != 0)
		return fail(CHAT_ERR_IO, errlen, err, "%s: cannot sync the directory: %s", ks->path,
		            strerror(errno));
	return CHAT_OK;
}

int chat_keystore_save(struct chat_keystore *ks, size_t len, const uint8_t *blob, size_t errlen,
                       char *err)
{
	int rc = chat_keystore_stage(ks, len, blob, errlen, err);

	return rc != CHAT_OK ? rc : chat_keystore_commit(ks, errlen, err);
}

int chat_keystore_rekey(struct chat_keystore *ks, size_t pw_len, const char *pw, size_t errlen,
                        char *err)
{
	uint8_t salt[SALT_LEN];

	if (!ks || (!pw && pw_len))
		return fail(CHAT_ERR_INVALID, errlen, err, "%s: invalid password",
		            ks ? ks->path : "(null)");
	if (chat_os_random(SALT_LEN, salt))
		return fail(CHAT_ERR_RANDOM, errlen, err, "%s: no random salt: %s", ks->path,
		            strerror(errno));
	memcpy(ks->salt, salt, SALT_LEN);
	derive(pw_len, pw ? pw : "", ks->salt, ks->iterations, ks->enc_key, ks->mac_key);
	return CHAT_OK;
}

void chat_keystore_close(struct chat_keystore *ks)
{
	if (!ks)
		return;
	/* The lock file stays: removing it would let a third process lock a
	 * fresh inode while a second still waits on the old one. */
	if (ks->lock_fd >= 0)
		close(ks->lock_fd);
	free(ks->path);
	explicit_bzero(ks, sizeof(*ks));
	free(ks);
}
