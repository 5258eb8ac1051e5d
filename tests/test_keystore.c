/* The keystore: round trips of every size, a wrong password, any damage to
 * the file (every byte flipped, every truncation, bytes appended, forged
 * headers) refused before any data comes back, the lock, rekeying, and saves
 * that are atomic: a failed save leaves the old file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/aes.h>
#include <nettle/cbc.h>
#include <nettle/hmac.h>
#include <nettle/pbkdf2.h>

#include <chat/error.h>

#include "keystore.h"
#include "testutils.h"

#define PASS "correct horse battery staple"
#define ITER 1000 /* fast: the tests are about the format, not PBKDF2's cost */
#define HDR_LEN 52  /* magic, version, iterations, salt, iv, clen */
#define MAC_LEN 32

static char dir[256];

static int exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Create path holding blob under PASS. */
static void make_store(const char *path, size_t len, const uint8_t *blob)
{
	struct chat_keystore *ks = NULL;
	uint8_t *got = NULL;
	size_t got_len = 99;
	int created = -1;
	char err[512];

	unlink(path);
	CHECK_EQ_INT(chat_keystore_open(path, strlen(PASS), PASS, ITER, &ks, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(created, 1);
	CHECK(got == NULL);
	CHECK_EQ_INT(got_len, 0);
	CHECK_EQ_INT(chat_keystore_save(ks, len, blob, sizeof(err), err), CHAT_OK);
	chat_keystore_close(ks);
}

/* Open path with pw and expect the blob back. */
static void expect_blob(const char *path, const char *pw, size_t len, const uint8_t *blob)
{
	struct chat_keystore *ks = NULL;
	uint8_t *got = NULL;
	size_t got_len = 0;
	int created = -1;
	char err[512] = "";

	int rc = chat_keystore_open(path, strlen(pw), pw, ITER, &ks, &got, &got_len, &created,
	                            sizeof(err), err);
	CHECK_EQ_INT(rc, CHAT_OK);
	if (rc) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	CHECK_EQ_INT(created, 0);
	CHECK(got != NULL);
	CHECK_EQ_INT(got_len, len);
	if (got && got_len == len && len)
		CHECK_MEM(got, blob, len);
	free(got);
	chat_keystore_close(ks);
}

/* Open path and expect a refusal: rc (or AUTH/MALFORMED when rc is 0), no
 * data, no handle, the path and msg (if any) in the message. */
static void expect_bad(const char *path, int rc, const char *msg, const char *what)
{
	struct chat_keystore *ks = (struct chat_keystore *)1;
	uint8_t *got = (uint8_t *)1;
	size_t got_len = 99;
	int created = -1;
	char err[512] = "";

	int r = chat_keystore_open(path, strlen(PASS), PASS, ITER, &ks, &got, &got_len, &created,
	                           sizeof(err), err);
	if (rc ? r != rc : r != CHAT_ERR_AUTH && r != CHAT_ERR_MALFORMED) {
		fprintf(stderr, "%s: open returned %d (%s), expected %d\n", what, r, err, rc);
		test_failures++;
	}
	CHECK(ks == NULL);
	CHECK(got == NULL);
	CHECK_EQ_INT(got_len, 0);
	CHECK_EQ_INT(created, 0);
	CHECK_STR_CONTAINS(err, path);
	if (msg)
		CHECK_STR_CONTAINS(err, msg);
	if (r == CHAT_OK) {
		free(got);
		chat_keystore_close(ks);
	}
}

static void test_round_trip(void)
{
	char path[320], tmp[330];
	static const uint8_t small[] = "alice's sessions: \x00\x01\x02 binary too";
	size_t big_len = (size_t)1 << 20;
	uint8_t *big = malloc(big_len);

	snprintf(path, sizeof(path), "%s/alice.keys", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	test_srand(1);
	for (size_t i = 0; i < big_len; i++)
		big[i] = (uint8_t)test_rand();

	make_store(path, sizeof(small), small);
	CHECK(!exists(tmp)); /* renamed over PATH, nothing left behind */
	expect_blob(path, PASS, sizeof(small), small);
	make_store(path, 0, NULL);
	expect_blob(path, PASS, 0, NULL);
	make_store(path, big_len, big);
	CHECK(!exists(tmp));
	expect_blob(path, PASS, big_len, big);
	/* Every length around the block size pads correctly. */
	for (size_t n = 1; n <= 33; n++) {
		make_store(path, n, big);
		expect_blob(path, PASS, n, big);
		size_t flen;
		uint8_t *d = test_load_file(path, &flen);
		CHECK_EQ_INT(flen, HDR_LEN + (n / 16 + 1) * 16 + MAC_LEN);
		free(d);
	}

	/* Several saves through one handle; the last one counts. */
	struct chat_keystore *ks;
	uint8_t *got;
	size_t got_len;
	int created;
	char err[512];
	CHECK_EQ_INT(chat_keystore_open(path, strlen(PASS), PASS, ITER, &ks, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_OK);
	free(got);
	CHECK_EQ_INT(chat_keystore_save(ks, 5, (const uint8_t *)"first", sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(chat_keystore_save(ks, 6, (const uint8_t *)"second", sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(chat_keystore_save(ks, CHAT_KEYSTORE_MAX + 1u, big, sizeof(err), err),
	             CHAT_ERR_TOO_BIG);
	CHECK_STR_CONTAINS(err, path);
	chat_keystore_close(ks);
	expect_blob(path, PASS, 6, (const uint8_t *)"second");

	/* A new keystore: nothing is written before the first save. */
	snprintf(path, sizeof(path), "%s/fresh.keys", dir);
	CHECK_EQ_INT(chat_keystore_open(path, strlen(PASS), PASS, ITER, &ks, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(created, 1);
	CHECK(got == NULL);
	CHECK(!exists(path));
	chat_keystore_close(ks);
	CHECK(!exists(path));
	free(big);
}

static void test_wrong_password(void)
{
	char path[320];
	struct chat_keystore *ks = (struct chat_keystore *)1;
	uint8_t *got = (uint8_t *)1;
	size_t got_len = 1;
	int created = -1;
	char err[512], want[400];

	snprintf(path, sizeof(path), "%s/pw.keys", dir);
	make_store(path, 4, (const uint8_t *)"data");
	CHECK_EQ_INT(chat_keystore_open(path, 5, "wrong", ITER, &ks, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_ERR_AUTH);
	snprintf(want, sizeof(want), "%s: wrong password or the keystore was modified (MAC check failed)",
	         path);
	CHECK_STR_CONTAINS(err, want);
	CHECK(ks == NULL);
	CHECK(got == NULL);
	CHECK_EQ_INT(got_len, 0);
	/* An empty password is a password like any other. */
	CHECK_EQ_INT(chat_keystore_open(path, 0, NULL, ITER, &ks, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_ERR_AUTH);
	/* The wrong password did not damage anything. */
	expect_blob(path, PASS, 4, (const uint8_t *)"data");
}

static void test_damage(void)
{
	char path[320], bad[320], what[96];
	static const uint8_t blob[] = "twenty-one bytes long";
	size_t len;
	uint8_t *d, *e;

	snprintf(path, sizeof(path), "%s/flip.keys", dir);
	snprintf(bad, sizeof(bad), "%s/flip-bad.keys", dir);
	make_store(path, sizeof(blob), blob);
	d = test_load_file(path, &len);
	CHECK_EQ_INT(len, HDR_LEN + 32 + MAC_LEN);
	if (len < 100 || len > 1024)
		abort();
	e = malloc(1025);

	/* Every byte flipped two ways; an altered iteration count stays within
	 * a cheap range for these masks (or is refused as out of range). */
	static const uint8_t masks[] = { 0x01, 0xff };
	for (size_t m = 0; m < sizeof(masks); m++) {
		for (size_t i = 0; i < len; i++) {
			memcpy(e, d, len);
			e[i] ^= masks[m];
			test_save_file(bad, len, e);
			snprintf(what, sizeof(what), "byte %zu ^ 0x%02x", i, masks[m]);
			expect_bad(bad, 0, NULL, what);
		}
	}
	/* Flips in the ciphertext and the MAC read as a wrong password. */
	memcpy(e, d, len);
	e[HDR_LEN + 3] ^= 0x10;
	test_save_file(bad, len, e);
	expect_bad(bad, CHAT_ERR_AUTH, "(MAC check failed)", "ciphertext flip");
	memcpy(e, d, len);
	e[len - 1] ^= 0x10;
	test_save_file(bad, len, e);
	expect_bad(bad, CHAT_ERR_AUTH, "(MAC check failed)", "MAC flip");

	/* Every truncation. */
	for (size_t n = 0; n < len; n++) {
		test_save_file(bad, n, d);
		snprintf(what, sizeof(what), "cut at %zu of %zu", n, len);
		expect_bad(bad, CHAT_ERR_MALFORMED, NULL, what);
	}
	test_save_file(bad, 12, d);
	expect_bad(bad, CHAT_ERR_MALFORMED, "truncated (12 of at least", "cut in the header");
	test_save_file(bad, len - 1, d);
	snprintf(what, sizeof(what), "truncated (%zu of %zu bytes)", len - 1, len);
	expect_bad(bad, CHAT_ERR_MALFORMED, what, "last byte cut");
	test_save_file(bad, 0, d);
	expect_bad(bad, CHAT_ERR_MALFORMED, "empty file", "empty");

	/* A byte appended. */
	memcpy(e, d, len);
	e[len] = 0;
	test_save_file(bad, len + 1, e);
	expect_bad(bad, CHAT_ERR_MALFORMED, "1 unexpected bytes after the MAC", "byte appended");

	/* Bad magic, an unknown version. */
	memcpy(e, d, len);
	memcpy(e, "CHATPLOG", 8);
	test_save_file(bad, len, e);
	expect_bad(bad, CHAT_ERR_MALFORMED, "not a keystore (bad magic)", "bad magic");
	test_save_file(bad, 12, (const uint8_t *)"hello world\n");
	expect_bad(bad, CHAT_ERR_MALFORMED, "not a keystore (bad magic)", "text file");
	memcpy(e, d, len);
	put32(e + 8, 2);
	test_save_file(bad, len, e);
	expect_bad(bad, CHAT_ERR_MALFORMED, "version 2 is not supported", "version 2");

	/* Forged sizes are refused before any allocation or PBKDF2. */
	memcpy(e, d, len);
	put32(e + 12, 0);
	test_save_file(bad, len, e);
	expect_bad(bad, CHAT_ERR_MALFORMED, "iteration count 0", "zero iterations");
	put32(e + 12, CHAT_KEYSTORE_ITERATIONS_MAX + 1);
	test_save_file(bad, len, e);
	expect_bad(bad, CHAT_ERR_MALFORMED, "iteration count", "too many iterations");
	memcpy(e, d, len);
	put32(e + 48, 0xfffffff0u);
	test_save_file(bad, len, e);
	expect_bad(bad, CHAT_ERR_MALFORMED, "ciphertext length", "huge clen");
	put32(e + 48, CHAT_KEYSTORE_MAX + 32);
	test_save_file(bad, len, e);
	expect_bad(bad, CHAT_ERR_MALFORMED, "ciphertext length", "clen over the cap");
	put32(e + 48, 17);
	test_save_file(bad, len, e);
	expect_bad(bad, CHAT_ERR_MALFORMED, "ciphertext length", "clen not whole blocks");
	put32(e + 48, 0);
	test_save_file(bad, len, e);
	expect_bad(bad, CHAT_ERR_MALFORMED, "ciphertext length", "clen 0");
	put32(e + 48, 16);
	test_save_file(bad, len, e);
	expect_bad(bad, CHAT_ERR_MALFORMED, "unexpected bytes after the MAC", "clen too small");
	/* A sparse file larger than any keystore is not read. */
	int fd = open(bad, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0);
	CHECK_EQ_INT(write(fd, d, len), len);
	CHECK_EQ_INT(ftruncate(fd, (off_t)CHAT_KEYSTORE_MAX + (1 << 20)), 0);
	close(fd);
	expect_bad(bad, CHAT_ERR_MALFORMED, "larger than any keystore", "huge file");
	/* Not a regular file. */
	snprintf(bad, sizeof(bad), "%s/isdir.keys", dir);
	CHECK_EQ_INT(mkdir(bad, 0700), 0);
	expect_bad(bad, CHAT_ERR_IO, "not a regular file", "a directory");

	/* The original was never touched. */
	expect_blob(path, PASS, sizeof(blob), blob);
	free(e);
	free(d);
}

static void test_lock(void)
{
	char path[320], err[512], want[400];
	struct chat_keystore *ks1, *ks2 = (struct chat_keystore *)1;
	uint8_t *got;
	size_t got_len;
	int created;

	snprintf(path, sizeof(path), "%s/lock.keys", dir);
	make_store(path, 3, (const uint8_t *)"abc");
	CHECK_EQ_INT(chat_keystore_open(path, strlen(PASS), PASS, ITER, &ks1, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_OK);
	free(got);
	/* flock locks belong to the open file description, so a second open in
	 * this process conflicts just as another process would. */
	CHECK_EQ_INT(chat_keystore_open(path, strlen(PASS), PASS, ITER, &ks2, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_ERR_STATE);
	snprintf(want, sizeof(want), "%s is in use by another chat-client", path);
	CHECK_STR_CONTAINS(err, want);
	CHECK(ks2 == NULL);
	CHECK(got == NULL);
	/* Also for a keystore not yet saved. */
	snprintf(path, sizeof(path), "%s/lock-new.keys", dir);
	struct chat_keystore *ks3;
	CHECK_EQ_INT(chat_keystore_open(path, strlen(PASS), PASS, ITER, &ks3, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(chat_keystore_open(path, strlen(PASS), PASS, ITER, &ks2, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_ERR_STATE);
	chat_keystore_close(ks3);
	snprintf(path, sizeof(path), "%s/lock.keys", dir);
	chat_keystore_close(ks1);
	expect_blob(path, PASS, 3, (const uint8_t *)"abc");
	chat_keystore_close(NULL);
}

static void test_rekey(void)
{
	char path[320], err[512];
	struct chat_keystore *ks;
	uint8_t *got, *before, *after;
	size_t got_len, blen, alen;
	int created;

	snprintf(path, sizeof(path), "%s/rekey.keys", dir);
	make_store(path, 3, (const uint8_t *)"old");
	before = test_load_file(path, &blen);

	/* Rekeyed but never saved: the file keeps the old password. */
	CHECK_EQ_INT(chat_keystore_open(path, strlen(PASS), PASS, ITER, &ks, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_OK);
	free(got);
	CHECK_EQ_INT(chat_keystore_rekey(ks, 7, "new one", sizeof(err), err), CHAT_OK);
	chat_keystore_close(ks);
	expect_blob(path, PASS, 3, (const uint8_t *)"old");

	/* Rekeyed and saved: only the new password opens it.  The iteration
	 * count comes from the file, not from the open's argument. */
	CHECK_EQ_INT(chat_keystore_open(path, strlen(PASS), PASS, 1, &ks, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_OK);
	free(got);
	CHECK_EQ_INT(chat_keystore_rekey(ks, 7, "new one", sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(chat_keystore_save(ks, 3, (const uint8_t *)"new", sizeof(err), err), CHAT_OK);
	chat_keystore_close(ks);
	after = test_load_file(path, &alen);
	CHECK_EQ_INT(get32(after + 12), ITER);
	CHECK(memcmp(before + 16, after + 16, 16) != 0); /* fresh salt */
	expect_bad(path, CHAT_ERR_AUTH, "wrong password", "old password after rekey");
	expect_blob(path, "new one", 3, (const uint8_t *)"new");
	free(before);
	free(after);
}

static void test_atomic_save(void)
{
	char sub[300], path[320], tmp[330], err[512];
	struct chat_keystore *ks;
	uint8_t *got;
	size_t got_len;
	int created;

	snprintf(sub, sizeof(sub), "%s/sub", dir);
	CHECK_EQ_INT(mkdir(sub, 0700), 0);
	snprintf(path, sizeof(path), "%s/bob.keys", sub);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	make_store(path, 3, (const uint8_t *)"old");

	/* A stale PATH.tmp from a crash neither confuses open nor survives a save. */
	test_save_file(tmp, 5, (const uint8_t *)"junk!");
	chmod(tmp, 0644);
	CHECK_EQ_INT(chat_keystore_open(path, strlen(PASS), PASS, ITER, &ks, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(got_len, 3);
	free(got);
	CHECK_EQ_INT(chat_keystore_save(ks, 3, (const uint8_t *)"mid", sizeof(err), err), CHAT_OK);
	CHECK(!exists(tmp));
	struct stat st;
	CHECK_EQ_INT(stat(path, &st), 0);
	CHECK_EQ_INT(st.st_mode & 0777, 0600);

	/* PATH.tmp cannot be created (a directory is in the way; works as root too). */
	CHECK_EQ_INT(mkdir(tmp, 0700), 0);
	CHECK_EQ_INT(chat_keystore_save(ks, 3, (const uint8_t *)"new", sizeof(err), err), CHAT_ERR_IO);
	CHECK_STR_CONTAINS(err, path);
	CHECK_STR_CONTAINS(err, strerror(EISDIR));
	CHECK_EQ_INT(rmdir(tmp), 0);
	/* An unwritable directory: root writes anyway, so only as a user. */
	if (geteuid() != 0) {
		CHECK_EQ_INT(chmod(sub, 0500), 0);
		CHECK_EQ_INT(chat_keystore_save(ks, 3, (const uint8_t *)"new", sizeof(err), err),
		             CHAT_ERR_IO);
		CHECK_STR_CONTAINS(err, path);
		CHECK_STR_CONTAINS(err, strerror(EACCES));
		CHECK_EQ_INT(chmod(sub, 0700), 0);
	} else {
		fprintf(stderr, "test_keystore: running as root, unwritable-directory case skipped\n");
	}
	CHECK(!exists(tmp));
	chat_keystore_close(ks);
	expect_blob(path, PASS, 3, (const uint8_t *)"mid");
}

/* The file as the header specifies it, checked with Nettle directly: the
 * keys from PBKDF2 over the stored salt, the MAC over everything before it,
 * AES-256-CBC with PKCS#7 padding. */
static void seal_raw(uint8_t *d, size_t clen, const uint8_t *pt, const char *pw)
{
	uint8_t k[64], iv[16];
	struct aes256_ctx aes;
	struct hmac_sha256_ctx h;

	pbkdf2_hmac_sha256(strlen(pw), (const uint8_t *)pw, get32(d + 12), 16, d + 16, 64, k);
	memcpy(iv, d + 32, 16);
	aes256_set_encrypt_key(&aes, k);
	cbc_encrypt(&aes, (nettle_cipher_func *)aes256_encrypt, 16, iv, clen, d + HDR_LEN, pt);
	put32(d + 48, (uint32_t)clen);
	hmac_sha256_set_key(&h, 32, k + 32);
	hmac_sha256_update(&h, HDR_LEN + clen, d);
	hmac_sha256_digest(&h, MAC_LEN, d + HDR_LEN + clen);
}

/* A save in two steps: staged, the old contents stay in place (a process
 * killed now finds them); committed, the new ones replace them. */
static void test_stage_commit(void)
{
	char path[320], tmp[330], err[512];
	struct chat_keystore *ks;
	uint8_t *got;
	size_t got_len;
	int created;

	snprintf(path, sizeof(path), "%s/staged.keys", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	make_store(path, 3, (const uint8_t *)"old");
	CHECK_EQ_INT(chat_keystore_open(path, strlen(PASS), PASS, ITER, &ks, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_OK);
	free(got);
	CHECK_EQ_INT(chat_keystore_commit(ks, sizeof(err), err), CHAT_ERR_STATE);
	CHECK_STR_CONTAINS(err, "nothing staged");
	CHECK_EQ_INT(chat_keystore_stage(ks, 3, (const uint8_t *)"mid", sizeof(err), err), CHAT_OK);
	CHECK(exists(tmp));
	chat_keystore_close(ks); /* as if killed before the commit */
	expect_blob(path, PASS, 3, (const uint8_t *)"old");
	CHECK_EQ_INT(chat_keystore_open(path, strlen(PASS), PASS, ITER, &ks, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_OK);
	free(got);
	CHECK_EQ_INT(chat_keystore_stage(ks, 3, (const uint8_t *)"new", sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(chat_keystore_commit(ks, sizeof(err), err), CHAT_OK);
	CHECK(!exists(tmp));
	CHECK_EQ_INT(chat_keystore_commit(ks, sizeof(err), err), CHAT_ERR_STATE); /* once */
	chat_keystore_close(ks);
	expect_blob(path, PASS, 3, (const uint8_t *)"new");
}

static void test_format(void)
{
	char path[320];
	static const uint8_t blob[] = "exactly 16 bytes";
	uint8_t k[64], iv[16], mac[32], pt[32], *d;
	struct aes256_ctx aes;
	struct hmac_sha256_ctx h;
	size_t len;

	snprintf(path, sizeof(path), "%s/format.keys", dir);
	make_store(path, 16, blob);
	d = test_load_file(path, &len);
	CHECK_EQ_INT(len, HDR_LEN + 32 + MAC_LEN);
	CHECK_MEM(d, "CHATKEYS", 8);
	CHECK_EQ_INT(get32(d + 8), 1);
	CHECK_EQ_INT(get32(d + 12), ITER);
	CHECK_EQ_INT(get32(d + 48), 32);
	pbkdf2_hmac_sha256(strlen(PASS), (const uint8_t *)PASS, ITER, 16, d + 16, 64, k);
	hmac_sha256_set_key(&h, 32, k + 32);
	hmac_sha256_update(&h, HDR_LEN + 32, d);
	hmac_sha256_digest(&h, 32, mac);
	CHECK_MEM(mac, d + HDR_LEN + 32, 32);
	memcpy(iv, d + 32, 16);
	aes256_set_decrypt_key(&aes, k);
	cbc_decrypt(&aes, (nettle_cipher_func *)aes256_decrypt, 16, iv, 32, pt, d + HDR_LEN);
	CHECK_MEM(pt, blob, 16);
	for (int i = 16; i < 32; i++)
		CHECK_EQ_INT(pt[i], 16); /* a whole block of padding */

	/* A file with a good MAC whose padding is wrong is still refused. */
	uint8_t bad_pt[2][32];
	memset(bad_pt[0], 'a', 32);
	bad_pt[0][31] = 0;          /* pad length 0 */
	memset(bad_pt[1], 'a', 32);
	bad_pt[1][31] = 3;          /* pad length 3, but the bytes before are not 3 */
	bad_pt[1][30] = 3;
	for (int i = 0; i < 2; i++) {
		seal_raw(d, 32, bad_pt[i], PASS);
		test_save_file(path, len, d);
		expect_bad(path, CHAT_ERR_MALFORMED, "bad padding", "bad padding under a good MAC");
	}
	/* And a hand-made file with good padding is accepted: the writer is
	 * not the only one who can produce the format. */
	memcpy(pt, "hand-made", 9);
	memset(pt + 9, 7, 7);
	seal_raw(d, 16, pt, PASS);
	test_save_file(path, HDR_LEN + 16 + MAC_LEN, d);
	expect_blob(path, PASS, 9, (const uint8_t *)"hand-made");
	free(d);
}

/* A write that fails halfway (the file size limit) removes PATH.tmp and
 * keeps the old file; this one works as root too. */
static void test_failed_write(void)
{
	char path[320], tmp[330], err[512];
	struct chat_keystore *ks;
	struct rlimit old, lim;
	uint8_t *got, *big;
	size_t got_len, big_len = 64 << 10;
	int created;

	snprintf(path, sizeof(path), "%s/fsize.keys", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	make_store(path, 3, (const uint8_t *)"old");
	size_t before_len, after_len;
	uint8_t *before = test_load_file(path, &before_len), *after;
	big = calloc(1, big_len);
	CHECK_EQ_INT(chat_keystore_open(path, strlen(PASS), PASS, ITER, &ks, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_OK);
	free(got);
	CHECK_EQ_INT(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 4096;
	signal(SIGXFSZ, SIG_IGN);
	CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
	CHECK_EQ_INT(chat_keystore_save(ks, big_len, big, sizeof(err), err), CHAT_ERR_IO);
	CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	CHECK_STR_CONTAINS(err, path);
	CHECK_STR_CONTAINS(err, strerror(EFBIG));
	CHECK(!exists(tmp));
	after = test_load_file(path, &after_len);
	CHECK_EQ_INT(after_len, before_len);
	CHECK_MEM(after, before, before_len);
	free(after);
	free(before);
	/* The handle still works afterwards. */
	CHECK_EQ_INT(chat_keystore_save(ks, big_len, big, sizeof(err), err), CHAT_OK);
	chat_keystore_close(ks);
	expect_blob(path, PASS, big_len, big);
	free(big);
}

static void test_args(void)
{
	char path[320], err[512];
	struct chat_keystore *ks;
	uint8_t *got;
	size_t got_len;
	int created;

	snprintf(path, sizeof(path), "%s/args.keys", dir);
	CHECK_EQ_INT(chat_keystore_open(path, 1, "x", 0, &ks, &got, &got_len, &created, sizeof(err),
	                                err), CHAT_ERR_INVALID);
	CHECK_EQ_INT(chat_keystore_open(path, 1, "x", CHAT_KEYSTORE_ITERATIONS_MAX + 1, &ks, &got,
	                                &got_len, &created, sizeof(err), err), CHAT_ERR_INVALID);
	CHECK_EQ_INT(chat_keystore_open("", 1, "x", ITER, &ks, &got, &got_len, &created, sizeof(err),
	                                err), CHAT_ERR_INVALID);
	CHECK_EQ_INT(chat_keystore_open(path, 1, NULL, ITER, &ks, &got, &got_len, &created,
	                                sizeof(err), err), CHAT_ERR_INVALID);
	/* created may be NULL; err may be absent. */
	CHECK_EQ_INT(chat_keystore_open(path, 1, "x", ITER, &ks, &got, &got_len, NULL, 0, NULL),
	             CHAT_OK);
	CHECK_EQ_INT(chat_keystore_save(ks, 1, NULL, 0, NULL), CHAT_ERR_INVALID);
	CHECK_EQ_INT(chat_keystore_save(ks, 0, NULL, 0, NULL), CHAT_OK);
	chat_keystore_close(ks);
	/* Missing directory: the lock file cannot be created. */
	snprintf(path, sizeof(path), "%s/no/such/dir.keys", dir);
	CHECK_EQ_INT(chat_keystore_open(path, 1, "x", ITER, &ks, &got, &got_len, &created, sizeof(err),
	                                err), CHAT_ERR_IO);
	CHECK_STR_CONTAINS(err, path);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "%s/keystore.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_round_trip();
	test_wrong_password();
	test_damage();
	test_lock();
	test_rekey();
	test_atomic_save();
	test_stage_commit();
	test_format();
	test_failed_write();
	test_args();
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return test_done("test_keystore");
}
