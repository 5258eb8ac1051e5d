/* chat-peer's encrypted message log (core/src/seclog.c), read from disk.
 *
 * Input: u8 mode, then
 *   mode bit 0 clear: the log file (its iteration count forced to 1..3);
 *   mode bit 0 set (fixed up): u8 flags, then records, each a u16-length
 *     plaintext (time, direction, peer length, peer, text: what open_record
 *     parses); the harness encrypts and MACs them into a well-made log
 *     (flags bit 0: a wrong seq in the last record; bit 1: a bad padding in
 *     the last record; bit 2: the trailer counts one too many; bit 3: one
 *     byte of the file flipped, at a position from the next u16), so the
 *     fuzzer reaches the record parser and every check of the chain.
 * Invariants: a log that verifies hands out exactly count records, each with
 * a valid direction, seq 1, 2, ...; it can be opened for appending, takes
 * one more record, and then reads back with that record last.  A well-made
 * log with no flag set always verifies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/aes.h>
#include <nettle/cbc.h>
#include <nettle/hmac.h>
#include <nettle/pbkdf2.h>

#include "be.h"
#include "fuzz.h"
#include "seclog.h"

#define PASS "log passphrase"

struct seen {
	uint64_t n;
	int64_t last_time;
	char last_peer[CHAT_SECLOG_PEER_MAX + 1];
	size_t last_len;
	char last_text[64];
};

static int on_record(void *arg, const struct chat_seclog_record *r)
{
	struct seen *s = arg;

	s->n++;
	FUZZ_CHECK(r->seq == s->n);
	FUZZ_CHECK(r->direction == CHAT_SECLOG_SENT || r->direction == CHAT_SECLOG_RECEIVED);
	FUZZ_CHECK(strlen(r->peer) <= CHAT_SECLOG_PEER_MAX);
	FUZZ_CHECK(r->text_len <= CHAT_SECLOG_TEXT_MAX + CHAT_SECLOG_PEER_MAX + 16);
	s->last_time = r->time_ms;
	snprintf(s->last_peer, sizeof(s->last_peer), "%s", r->peer);
	s->last_len = r->text_len;
	memcpy(s->last_text, r->text, r->text_len < sizeof(s->last_text) ? r->text_len : sizeof(s->last_text));
	return 0;
}

static void mac(const uint8_t *key, size_t la, const uint8_t *a, size_t lb, const uint8_t *b,
                size_t lc, const uint8_t *c, uint8_t out[32])
{
	struct hmac_sha256_ctx h;

	hmac_sha256_set_key(&h, 32, key);
	hmac_sha256_update(&h, la, a);
	hmac_sha256_update(&h, lb, b);
	hmac_sha256_update(&h, lc, c);
	hmac_sha256_digest(&h, 32, out);
}

/* A log holding the plaintext records of in, as chat_seclog_append writes them. */
static void build(struct fuzz_in *in, unsigned flags, struct fuzz_buf *out)
{
	uint8_t k[64], prev[32], m[32], n8[8];
	uint8_t salt[16];
	uint64_t count = 0;
	size_t last_rec = 0;

	memset(salt, 0x33, sizeof(salt));
	pbkdf2_hmac_sha256(strlen(PASS), (const uint8_t *)PASS, 1, sizeof(salt), salt, sizeof(k), k);
	fb_put(out, 8, "CHATPLOG");
	fb_u32(out, 1);
	fb_u32(out, 1);
	fb_put(out, sizeof(salt), salt);
	mac(k + 32, 32, out->data, 0, NULL, 0, NULL, prev);
	fb_put(out, 32, prev);
	unsigned corrupt_at = (flags & 8) ? fin_u16(in) : 0, corrupt_x = (flags & 8) ? fin_u8(in) | 1 : 0;
	while (in->left && count < 64) {
		size_t len;
		const uint8_t *pt = fin_blob(in, &len);
		size_t pad = 16 - len % 16, clen = len + pad;
		uint8_t *buf = malloc(clen), *rec = malloc(1 + 4 + 8 + 16 + clen);
		uint8_t iv[16];
		struct aes256_ctx aes;
		int last = !in->left;

		if (!buf || !rec)
			abort();
		count++;
		memcpy(buf, pt, len);
		memset(buf + len, (int)pad, pad);
		if (last && (flags & 2))
			buf[clen - 1] ^= 0x20;
		memset(iv, (int)count, sizeof(iv));
		rec[0] = 'R';
		chat_be32_put(rec + 1, (uint32_t)clen);
		chat_be64_put(rec + 5, last && (flags & 1) ? count + 1 : count);
		memcpy(rec + 13, iv, 16);
		aes256_set_encrypt_key(&aes, k);
		cbc_encrypt(&aes, (nettle_cipher_func *)aes256_encrypt, 16, iv, clen, rec + 29, buf);
		mac(k + 32, 32, prev, 8 + 16 + clen, rec + 5, 0, NULL, m);
		last_rec = out->len;
		fb_put(out, 29 + clen, rec);
		fb_put(out, 32, m);
		memcpy(prev, m, 32);
		free(buf);
		free(rec);
	}
	(void)last_rec;
	uint64_t said = count + ((flags & 4) ? 1 : 0);
	chat_be64_put(n8, said);
	fb_u8(out, 'T');
	fb_u64(out, said);
	mac(k + 32, 3, (const uint8_t *)"end", 8, n8, 32, prev, m);
	fb_put(out, 32, m);
	if (flags & 8)
		out->data[corrupt_at % out->len] ^= (uint8_t)corrupt_x;
}

/* A count of 1..3 stays; any other becomes one of them. */
static void clamp_iterations(uint8_t *p)
{
	uint32_t n = chat_be32_get(p);

	if (n < 1 || n > 3)
		chat_be32_put(p, 1 + n % 3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct fuzz_buf file = { 0 };
	struct seen s = { 0 };
	unsigned mode, flags = 0;
	uint64_t count = 0;
	int problem = -1, rc;
	char err[512];

	fuzz_init();
	mode = fin_u8(&in);
	if (mode & 1) {
		flags = fin_u8(&in);
		build(&in, flags, &file);
	} else {
		fb_put(&file, in.left, in.p);
	}
	/* (also after a flipped byte: PBKDF2 at millions of iterations tests nothing) */
	if (file.len >= 16)
		clamp_iterations(file.data + 12);
	const char *path = fuzz_file("alice.log", file.len, file.data);
	fb_free(&file);
	rc = chat_seclog_read(path, strlen(PASS), PASS, on_record, &s, &count, &problem, sizeof(err), err);
	if ((mode & 1) && !(flags & 15))
		FUZZ_CHECK(rc == CHAT_OK || problem == CHAT_SECLOG_MALFORMED); /* content may not parse */
	if (rc != CHAT_OK) {
		FUZZ_CHECK(problem != CHAT_SECLOG_FINE && err[0]);
		return 0;
	}
	FUZZ_CHECK(problem == CHAT_SECLOG_FINE && count == s.n);

	/* append one record and read it back */
	struct chat_seclog *lg = NULL;
	int created = 1;
	rc = chat_seclog_open(path, strlen(PASS), PASS, 1, &lg, &created, &problem, sizeof(err), err);
	FUZZ_CHECK(rc == CHAT_OK && !created && chat_seclog_count(lg) == count);
	FUZZ_CHECK(chat_seclog_append(lg, 1700000000123, CHAT_SECLOG_RECEIVED, "mallory", 6, "appended",
	                              sizeof(err), err) == CHAT_OK);
	chat_seclog_close(lg);
	memset(&s, 0, sizeof(s));
	rc = chat_seclog_read(path, strlen(PASS), PASS, on_record, &s, &count, &problem, sizeof(err), err);
	FUZZ_CHECK(rc == CHAT_OK && count == s.n);
	FUZZ_CHECK(s.last_time == 1700000000123 && !strcmp(s.last_peer, "mallory") &&
	           s.last_len == 6 && !memcmp(s.last_text, "append", 6));
	return 0;
}

static void rec(struct fuzz_buf *b, int64_t t, int dir, const char *peer, const char *text)
{
	struct fuzz_buf r = { 0 };

	fb_u64(&r, (uint64_t)t);
	fb_u8(&r, (unsigned)dir);
	fb_str(&r, peer);
	fb_put(&r, strlen(text), text);
	fb_blob(b, r.len, r.data);
	fb_free(&r);
}

void fuzz_seeds(const char *dir)
{
	struct fuzz_buf b = { 0 };
	struct chat_seclog *lg;
	char err[256], path[512];
	int created;

	/* a real log, written by the code that writes them */
	snprintf(path, sizeof(path), "%s/seed.log", fuzz_tmpdir());
	if (chat_seclog_open(path, strlen(PASS), PASS, 1, &lg, &created, NULL, sizeof(err), err) ||
	    chat_seclog_append(lg, 1700000000000, CHAT_SECLOG_SENT, "bob", 5, "hello", sizeof(err), err) ||
	    chat_seclog_append(lg, 1700000001000, CHAT_SECLOG_RECEIVED, "bob", 15, "hi alice\nbye \x1b!", sizeof(err), err)) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	chat_seclog_close(lg);
	FILE *f = fopen(path, "rb");
	uint8_t buf[4096];
	size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
	if (f)
		fclose(f);
	fb_u8(&b, 0);
	fb_put(&b, n, buf);
	fuzz_write_seed(dir, "real_log", b.len, b.data);
	b.len = 0;
	fb_u8(&b, 1);
	fb_u8(&b, 0);
	rec(&b, 1700000000000, CHAT_SECLOG_SENT, "bob", "hello");
	rec(&b, 1700000001000, CHAT_SECLOG_RECEIVED, "carol", "\xe2\x82\xac and more");
	fuzz_write_seed(dir, "built", b.len, b.data);
	for (unsigned fl = 1; fl <= 8; fl <<= 1) {
		char name[32];
		b.data[1] = (uint8_t)fl;
		snprintf(name, sizeof(name), "built_flag%u", fl);
		if (fl == 8) {
			struct fuzz_buf c = { 0 };
			fb_put(&c, 2, b.data);
			fb_u16(&c, 100);
			fb_u8(&c, 4);
			fb_put(&c, b.len - 2, b.data + 2);
			fuzz_write_seed(dir, name, c.len, c.data);
			fb_free(&c);
		} else {
			fuzz_write_seed(dir, name, b.len, b.data);
		}
	}
	b.len = 0;
	fb_u8(&b, 1);
	fb_u8(&b, 0);
	fuzz_write_seed(dir, "built_empty", b.len, b.data);
	fb_free(&b);
}
