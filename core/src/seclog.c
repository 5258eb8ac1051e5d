#include "seclog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/aes.h>
#include <nettle/cbc.h>
#include <nettle/hmac.h>
#include <nettle/pbkdf2.h>

#include <chat/error.h>

#include "be.h"
#include "host.h"

#define MAGIC "CHATPLOG"
#define MAGIC_LEN 8
#define VERSION 1u
#define SALT_LEN 16
#define MAC_LEN 32
#define KEY_LEN 32
#define IV_LEN 16
#define HDR_FIELDS 32                 /* magic, version, iterations, salt */
#define HDR_LEN (HDR_FIELDS + MAC_LEN)
#define REC_HEAD (1 + 4 + 8 + IV_LEN) /* type, clen, seq, iv */
#define REC_OVERHEAD (REC_HEAD + MAC_LEN)
#define TRAILER_LEN (1 + 8 + MAC_LEN)
#define PT_HEAD (8 + 1 + 1)           /* time, direction, peer length */
/* Largest ciphertext: the biggest plaintext plus a full padding block. */
#define CLEN_MAX ((PT_HEAD + CHAT_SECLOG_PEER_MAX + CHAT_SECLOG_TEXT_MAX) / 16 * 16 + 16)
/* Memory is the limit when reading: a log is verified from one snapshot. */
#define FILE_MAX ((size_t)1 << 30)

struct chat_seclog {
	int fd;
	char *path;
	uint8_t enc_key[KEY_LEN];
	uint8_t mac_key[KEY_LEN];
	uint8_t last_mac[MAC_LEN];
	uint64_t count;
	uint64_t trailer_off;
	int failed;
	int unsynced;    /* appended since the last fsync */
};

/* What verifying a file establishes. */
struct verified {
	uint8_t enc_key[KEY_LEN];
	uint8_t mac_key[KEY_LEN];
	uint8_t last_mac[MAC_LEN];
	uint64_t count;
	uint64_t trailer_off;
};

static int fail(int *problem, int kind, int rc, size_t errlen, char *err, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static int fail(int *problem, int kind, int rc, size_t errlen, char *err, const char *fmt, ...)
{
	va_list ap;

	if (problem)
		*problem = kind;
	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static void derive(size_t pass_len, const char *pass, const uint8_t *salt, unsigned iterations,
                   uint8_t enc[KEY_LEN], uint8_t mac[KEY_LEN])
{
	uint8_t k[2 * KEY_LEN];

	pbkdf2_hmac_sha256(pass_len, (const uint8_t *)pass, iterations, SALT_LEN, salt,
	                   sizeof(k), k);
	memcpy(enc, k, KEY_LEN);
	memcpy(mac, k + KEY_LEN, KEY_LEN);
	chat_wipe(k, sizeof(k));
}

/* HMAC-SHA256 over up to three byte strings. */
static void mac3(const uint8_t key[KEY_LEN], size_t la, const uint8_t *a, size_t lb,
                 const uint8_t *b, size_t lc, const uint8_t *c, uint8_t out[MAC_LEN])
{
	struct hmac_sha256_ctx ctx;

	hmac_sha256_set_key(&ctx, KEY_LEN, key);
	hmac_sha256_update(&ctx, la, a);
	if (lb)
		hmac_sha256_update(&ctx, lb, b);
	if (lc)
		hmac_sha256_update(&ctx, lc, c);
	hmac_sha256_digest(&ctx, MAC_LEN, out);
	chat_wipe(&ctx, sizeof(ctx));
}

/* MAC of a record: prev_mac | seq | iv | ciphertext (seq, iv and the
 * ciphertext are contiguous in the record). */
static void record_mac(const uint8_t key[KEY_LEN], const uint8_t prev[MAC_LEN],
                       const uint8_t *seq_iv_ct, size_t clen, uint8_t out[MAC_LEN])
{
	mac3(key, MAC_LEN, prev, 8 + IV_LEN + clen, seq_iv_ct, 0, NULL, out);
}

static void trailer_mac(const uint8_t key[KEY_LEN], uint64_t count, const uint8_t last[MAC_LEN],
                        uint8_t out[MAC_LEN])
{
	uint8_t n[8];

	chat_be64_put(n, count);
	mac3(key, 3, (const uint8_t *)"end", sizeof(n), n, MAC_LEN, last, out);
}

static void put_trailer(uint8_t *p, const uint8_t key[KEY_LEN], uint64_t count,
                        const uint8_t last[MAC_LEN])
{
	p[0] = 'T';
	chat_be64_put(p + 1, count);
	trailer_mac(key, count, last, p + 9);
}

/* Decrypt and parse one record's ciphertext into r (text points into pt). */
static int open_record(const struct verified *v, uint64_t seq, const uint8_t *iv_in,
                       size_t clen, const uint8_t *ct, uint8_t *pt, struct chat_seclog_record *r)
{
	struct aes256_ctx aes;
	uint8_t iv[IV_LEN];
	size_t pad, len, plen;
	unsigned bad = 0;

	memcpy(iv, iv_in, IV_LEN);
	aes256_set_decrypt_key(&aes, v->enc_key);
	cbc_decrypt(&aes, (nettle_cipher_func *)aes256_decrypt, IV_LEN, iv, clen, pt, ct);
	chat_wipe(&aes, sizeof(aes));
	/* The MAC was checked first, so padding errors here mean a writer bug,
	 * not an oracle; still checked completely. */
	pad = pt[clen - 1];
	if (pad < 1 || pad > 16)
		return -1;
	for (size_t i = 0; i < pad; i++)
		bad |= pt[clen - 1 - i] ^ (unsigned)pad;
	if (bad)
		return -1;
	len = clen - pad;
	if (len < PT_HEAD)
		return -1;
	plen = pt[9];
	if (pt[8] != CHAT_SECLOG_SENT && pt[8] != CHAT_SECLOG_RECEIVED)
		return -1;
	if (PT_HEAD + plen > len)
		return -1;
	r->seq = seq;
	r->time_ms = (int64_t)chat_be64_get(pt);
	r->direction = pt[8];
	memcpy(r->peer, pt + PT_HEAD, plen);
	r->peer[plen] = '\0';
	if (memchr(r->peer, '\0', plen))
		return -1;
	r->text = (const char *)pt + PT_HEAD + plen;
	r->text_len = len - PT_HEAD - plen;
	return 0;
}

/* Check a whole log image.  Structure first (so messages can say "record 3
 * of 7"), then the MAC chain record by record, each record's content, and
 * the trailer.  With cb, records are handed out only in a second pass, after
 * the first found nothing wrong. */
static int verify(const char *path, const uint8_t *data, size_t size, size_t pass_len,
                  const char *pass, chat_seclog_cb cb, void *arg, struct verified *v,
                  int *problem, size_t errlen, char *err)
{
	uint64_t total = 0, trailer_off = 0;
	size_t off;
	unsigned iterations;
	uint8_t mac[MAC_LEN];
	uint8_t *pt = NULL;
	int rc = CHAT_OK;

	if (size == 0)
		return fail(problem, CHAT_SECLOG_NOT_A_LOG, CHAT_ERR_MALFORMED, errlen, err,
		            "%s: empty file, not a chat-peer log", path);
	if (memcmp(data, MAGIC, size < MAGIC_LEN ? size : MAGIC_LEN) != 0)
		return fail(problem, CHAT_SECLOG_NOT_A_LOG, CHAT_ERR_MALFORMED, errlen, err,
		            "%s: not a chat-peer log (no " MAGIC " magic)", path);
	if (size < HDR_LEN)
		return fail(problem, CHAT_SECLOG_MALFORMED, CHAT_ERR_MALFORMED, errlen, err,
		            "%s: header cut short (%zu of %d bytes): truncated", path, size, HDR_LEN);
	if (chat_be32_get(data + MAGIC_LEN) != VERSION)
		return fail(problem, CHAT_SECLOG_VERSION, CHAT_ERR_MALFORMED, errlen, err,
		            "%s: log format version %u is not supported (this program reads %u)", path,
		            chat_be32_get(data + MAGIC_LEN), VERSION);
	iterations = chat_be32_get(data + MAGIC_LEN + 4);
	if (iterations < 1 || iterations > CHAT_SECLOG_ITERATIONS_MAX)
		return fail(problem, CHAT_SECLOG_HEADER, CHAT_ERR_AUTH, errlen, err,
		            "%s: wrong passphrase or corrupted header", path);

	/* Structure. */
	for (off = HDR_LEN;;) {
		if (off == size)
			return fail(problem, CHAT_SECLOG_TRUNCATED, CHAT_ERR_MALFORMED, errlen, err,
			            "%s: truncated after record %llu: trailer missing", path,
			            (unsigned long long)total);
		if (data[off] == 'R') {
			if (size - off < REC_HEAD + MAC_LEN)
				goto cut;
			uint32_t clen = chat_be32_get(data + off + 1);
			if (clen < 16 || clen % 16 || clen > CLEN_MAX)
				return fail(problem, CHAT_SECLOG_MALFORMED, CHAT_ERR_MALFORMED, errlen, err,
				            "%s: record %llu: malformed (ciphertext length %u)", path,
				            (unsigned long long)total + 1, clen);
			if (size - off < REC_OVERHEAD + (size_t)clen)
				goto cut;
			off += REC_OVERHEAD + clen;
			total++;
		} else if (data[off] == 'T') {
			if (size - off < TRAILER_LEN)
				return fail(problem, CHAT_SECLOG_MALFORMED, CHAT_ERR_MALFORMED, errlen, err,
				            "%s: the trailer is cut short (truncated after record %llu)", path,
				            (unsigned long long)total);
			if (size - off > TRAILER_LEN)
				return fail(problem, CHAT_SECLOG_MALFORMED, CHAT_ERR_MALFORMED, errlen, err,
				            "%s: %zu unexpected bytes after the trailer", path,
				            size - off - TRAILER_LEN);
			trailer_off = off;
			break;
		} else {
			return fail(problem, CHAT_SECLOG_MALFORMED, CHAT_ERR_MALFORMED, errlen, err,
			            "%s: record %llu: malformed (unknown record type 0x%02x)", path,
			            (unsigned long long)total + 1, data[off]);
		}
	}

	/* Keys and the header MAC: a wrong passphrase shows here. */
	derive(pass_len, pass, data + MAGIC_LEN + 8, iterations, v->enc_key, v->mac_key);
	mac3(v->mac_key, HDR_FIELDS, data, 0, NULL, 0, NULL, mac);
	if (!chat_memeq(mac, data + HDR_FIELDS, MAC_LEN)) {
		rc = fail(problem, CHAT_SECLOG_HEADER, CHAT_ERR_AUTH, errlen, err,
		          "%s: wrong passphrase or corrupted header", path);
		goto out;
	}

	pt = malloc(CLEN_MAX);
	if (!pt) {
		rc = fail(problem, CHAT_SECLOG_IO, CHAT_ERR_NOMEM, errlen, err, "%s: out of memory", path);
		goto out;
	}
	for (int pass_no = 0; pass_no < (cb ? 2 : 1); pass_no++) {
		const uint8_t *prev = data + HDR_FIELDS;
		off = HDR_LEN;
		for (uint64_t i = 1; i <= total; i++) {
			const uint8_t *rec = data + off;
			uint32_t clen = chat_be32_get(rec + 1);
			struct chat_seclog_record r;
			record_mac(v->mac_key, prev, rec + 5, clen, mac);
			if (!chat_memeq(mac, rec + REC_HEAD + clen, MAC_LEN) || chat_be64_get(rec + 5) != i) {
				rc = fail(problem, CHAT_SECLOG_RECORD, CHAT_ERR_INTEGRITY, errlen, err,
				          "%s: record %llu of %llu: integrity check failed (modified or reordered)",
				          path, (unsigned long long)i, (unsigned long long)total);
				goto out;
			}
			if (open_record(v, i, rec + 13, clen, rec + REC_HEAD, pt, &r)) {
				rc = fail(problem, CHAT_SECLOG_MALFORMED, CHAT_ERR_MALFORMED, errlen, err,
				          "%s: record %llu of %llu: malformed content", path,
				          (unsigned long long)i, (unsigned long long)total);
				goto out;
			}
			if (pass_no == 1) {
				int stop = cb(arg, &r);
				chat_wipe(pt, clen);
				if (stop) {
					rc = stop;
					goto out;
				}
			}
			chat_wipe(pt, clen);
			prev = rec + REC_HEAD + clen;
			off += REC_OVERHEAD + clen;
		}
		if (pass_no == 0) {
			const uint8_t *t = data + trailer_off;
			trailer_mac(v->mac_key, chat_be64_get(t + 1), prev, mac);
			if (!chat_memeq(mac, t + 9, MAC_LEN)) {
				rc = fail(problem, CHAT_SECLOG_TRAILER, CHAT_ERR_INTEGRITY, errlen, err,
				          "%s: trailer integrity check failed (records removed or cut off, "
				          "or the trailer modified)", path);
				goto out;
			}
			if (chat_be64_get(t + 1) != total) {
				rc = fail(problem, CHAT_SECLOG_TRAILER, CHAT_ERR_INTEGRITY, errlen, err,
				          "%s: the trailer counts %llu records, the file holds %llu", path,
				          (unsigned long long)chat_be64_get(t + 1), (unsigned long long)total);
				goto out;
			}
			memcpy(v->last_mac, prev, MAC_LEN);
		}
	}
	v->count = total;
	v->trailer_off = trailer_off;
	if (problem)
		*problem = CHAT_SECLOG_FINE;
out:
	free(pt);
	chat_wipe(mac, sizeof(mac));
	return rc;
cut:
	return fail(problem, CHAT_SECLOG_MALFORMED, CHAT_ERR_MALFORMED, errlen, err,
	            "%s: record %llu is cut short (truncated inside a record)", path,
	            (unsigned long long)total + 1);
}

/* Read the whole file behind fd (a snapshot: verification never rereads). */
static int slurp(const char *path, int fd, uint8_t **data, size_t *size, int *problem,
                 size_t errlen, char *err)
{
	struct stat st;
	size_t got = 0;

	*data = NULL;
	*size = 0;
	if (fstat(fd, &st) != 0)
		return fail(problem, CHAT_SECLOG_IO, CHAT_ERR_IO, errlen, err, "%s: %s", path,
		            strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(problem, CHAT_SECLOG_IO, CHAT_ERR_IO, errlen, err,
		            "%s: not a regular file", path);
	if ((uint64_t)st.st_size > FILE_MAX)
		return fail(problem, CHAT_SECLOG_IO, CHAT_ERR_TOO_BIG, errlen, err,
		            "%s: larger than %zu bytes; too large to verify", path, FILE_MAX);
	uint8_t *buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return fail(problem, CHAT_SECLOG_IO, CHAT_ERR_NOMEM, errlen, err, "%s: out of memory", path);
	while (got < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(buf);
			return fail(problem, CHAT_SECLOG_IO, CHAT_ERR_IO, errlen, err, "%s: %s", path,
			            strerror(e));
		}
		if (n == 0)
			break; /* shrank meanwhile: verify what is there */
		got += (size_t)n;
	}
	*data = buf;
	*size = got;
	return CHAT_OK;
}

static int write_all(int fd, uint64_t off, size_t len, const uint8_t *src)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, src, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		src += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int chat_seclog_read(const char *path, size_t pass_len, const char *pass, chat_seclog_cb cb,
                     void *arg, uint64_t *count, int *problem, size_t errlen, char *err)
{
	struct verified v;
	uint8_t *data;
	size_t size;
	int fd, rc;

	if (count)
		*count = 0;
	if (!path || (!pass && pass_len))
		return fail(problem, CHAT_SECLOG_IO, CHAT_ERR_INVALID, errlen, err, "invalid argument");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(problem, CHAT_SECLOG_IO, errno == ENOENT ? CHAT_ERR_NOTFOUND : CHAT_ERR_IO,
		            errlen, err, "%s: %s", path, strerror(errno));
	rc = slurp(path, fd, &data, &size, problem, errlen, err);
	close(fd);
	if (rc)
		return rc;
	memset(&v, 0, sizeof(v));
	rc = verify(path, data, size, pass_len, pass, cb, arg, &v, problem, errlen, err);
	if (rc == CHAT_OK && count)
		*count = v.count;
	chat_wipe(&v, sizeof(v));
	free(data);
	return rc;
}

static int create_log(const char *path, int fd, size_t pass_len, const char *pass,
                      unsigned iterations, struct chat_seclog *lg, int *problem, size_t errlen,
                      char *err)
{
	uint8_t buf[HDR_LEN + TRAILER_LEN];

	memcpy(buf, MAGIC, MAGIC_LEN);
	chat_be32_put(buf + MAGIC_LEN, VERSION);
	chat_be32_put(buf + MAGIC_LEN + 4, iterations);
	if (chat_host_os_random(NULL, SALT_LEN, buf + MAGIC_LEN + 8))
		return fail(problem, CHAT_SECLOG_IO, CHAT_ERR_RANDOM, errlen, err,
		            "%s: no random salt", path);
	derive(pass_len, pass, buf + MAGIC_LEN + 8, iterations, lg->enc_key, lg->mac_key);
	mac3(lg->mac_key, HDR_FIELDS, buf, 0, NULL, 0, NULL, buf + HDR_FIELDS);
	memcpy(lg->last_mac, buf + HDR_FIELDS, MAC_LEN);
	put_trailer(buf + HDR_LEN, lg->mac_key, 0, lg->last_mac);
	if (write_all(fd, 0, sizeof(buf), buf) || fsync(fd))
		return fail(problem, CHAT_SECLOG_IO, CHAT_ERR_IO, errlen, err, "%s: cannot write: %s",
		            path, strerror(errno));
	lg->count = 0;
	lg->trailer_off = HDR_LEN;
	return CHAT_OK;
}

int chat_seclog_open(const char *path, size_t pass_len, const char *pass, unsigned iterations,
                     struct chat_seclog **out, int *created, int *problem, size_t errlen,
                     char *err)
{
	struct chat_seclog *lg;
	int rc, is_new = 0;

	*out = NULL;
	if (created)
		*created = 0;
	if (!path || !*path || (!pass && pass_len) || iterations < 1 ||
	    iterations > CHAT_SECLOG_ITERATIONS_MAX)
		return fail(problem, CHAT_SECLOG_IO, CHAT_ERR_INVALID, errlen, err,
		            "invalid log path, passphrase or iteration count");
	lg = calloc(1, sizeof(*lg));
	if (!lg || !(lg->path = strdup(path))) {
		free(lg);
		return fail(problem, CHAT_SECLOG_IO, CHAT_ERR_NOMEM, errlen, err, "out of memory");
	}
	lg->fd = open(path, O_RDWR | O_CLOEXEC);
	if (lg->fd < 0 && errno == ENOENT) {
		lg->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		is_new = 1;
	}
	if (lg->fd < 0) {
		rc = fail(problem, CHAT_SECLOG_IO, CHAT_ERR_IO, errlen, err, "%s: %s", path,
		          strerror(errno));
		goto fail_out;
	}
	if (flock(lg->fd, LOCK_EX | LOCK_NB) != 0) {
		rc = fail(problem, errno == EWOULDBLOCK ? CHAT_SECLOG_LOCKED : CHAT_SECLOG_IO, CHAT_ERR_IO,
		          errlen, err, "%s: %s", path,
		          errno == EWOULDBLOCK ? "in use by another chat-peer" : strerror(errno));
		goto fail_out;
	}
	if (is_new) {
		rc = create_log(path, lg->fd, pass_len, pass, iterations, lg, problem, errlen, err);
		if (rc) {
			unlink(path);
			goto fail_out;
		}
	} else {
		struct verified v;
		uint8_t *data;
		size_t size;
		rc = slurp(path, lg->fd, &data, &size, problem, errlen, err);
		if (rc)
			goto fail_out;
		memset(&v, 0, sizeof(v));
		rc = verify(path, data, size, pass_len, pass, NULL, NULL, &v, problem, errlen, err);
		free(data);
		if (rc == CHAT_OK) {
			memcpy(lg->enc_key, v.enc_key, KEY_LEN);
			memcpy(lg->mac_key, v.mac_key, KEY_LEN);
			memcpy(lg->last_mac, v.last_mac, MAC_LEN);
			lg->count = v.count;
			lg->trailer_off = v.trailer_off;
		}
		chat_wipe(&v, sizeof(v));
		if (rc)
			goto fail_out;
	}
	if (created)
		*created = is_new;
	if (problem)
		*problem = CHAT_SECLOG_FINE;
	*out = lg;
	return CHAT_OK;
fail_out:
	chat_seclog_close(lg);
	return rc;
}

static int append(struct chat_seclog *lg, int64_t time_ms, int direction, const char *peer,
                  size_t len, const char *text, int sync, size_t errlen, char *err)
{
	size_t plen = peer ? strlen(peer) : 0, ptlen, clen, total;
	struct aes256_ctx aes;
	uint8_t iv[IV_LEN], *buf, *pt;
	int rc = CHAT_OK;

	if (!lg || (direction != CHAT_SECLOG_SENT && direction != CHAT_SECLOG_RECEIVED) ||
	    plen > CHAT_SECLOG_PEER_MAX || len > CHAT_SECLOG_TEXT_MAX || (len && !text))
		return fail(NULL, 0, CHAT_ERR_INVALID, errlen, err, "invalid log record");
	if (lg->failed)
		return fail(NULL, 0, CHAT_ERR_FAILED, errlen, err,
		            "%s: an earlier write failed; nothing more is appended", lg->path);
	ptlen = PT_HEAD + plen + len;
	clen = ptlen / 16 * 16 + 16;
	total = REC_OVERHEAD + clen + TRAILER_LEN;
	buf = malloc(total);
	pt = malloc(clen);
	if (!buf || !pt) {
		free(buf);
		free(pt);
		return fail(NULL, 0, CHAT_ERR_NOMEM, errlen, err, "out of memory");
	}
	chat_be64_put(pt, (uint64_t)time_ms);
	pt[8] = (uint8_t)direction;
	pt[9] = (uint8_t)plen;
	memcpy(pt + PT_HEAD, peer, plen);
	if (len)
		memcpy(pt + PT_HEAD + plen, text, len);
	memset(pt + ptlen, (int)(clen - ptlen), clen - ptlen); /* PKCS#7: 1..16 bytes */
	if (chat_host_os_random(NULL, IV_LEN, iv)) {
		rc = fail(NULL, 0, CHAT_ERR_RANDOM, errlen, err, "%s: no random IV", lg->path);
		goto out;
	}
	buf[0] = 'R';
	chat_be32_put(buf + 1, (uint32_t)clen);
	chat_be64_put(buf + 5, lg->count + 1);
	memcpy(buf + 13, iv, IV_LEN);
	aes256_set_encrypt_key(&aes, lg->enc_key);
	cbc_encrypt(&aes, (nettle_cipher_func *)aes256_encrypt, IV_LEN, iv, clen, buf + REC_HEAD, pt);
	chat_wipe(&aes, sizeof(aes));
	record_mac(lg->mac_key, lg->last_mac, buf + 5, clen, buf + REC_HEAD + clen);
	put_trailer(buf + REC_OVERHEAD + clen, lg->mac_key, lg->count + 1, buf + REC_HEAD + clen);

	/* The old trailer goes first: a crash in between leaves a log that reads
	 * as truncated, never one that verifies without the new record. */
	if (ftruncate(lg->fd, (off_t)lg->trailer_off) != 0 ||
	    write_all(lg->fd, lg->trailer_off, total, buf) != 0 || (sync && fsync(lg->fd) != 0)) {
		lg->failed = 1;
		rc = fail(NULL, 0, CHAT_ERR_IO, errlen, err, "%s: cannot append: %s", lg->path,
		          strerror(errno));
		goto out;
	}
	memcpy(lg->last_mac, buf + REC_HEAD + clen, MAC_LEN);
	lg->count++;
	lg->trailer_off += REC_OVERHEAD + clen;
	lg->unsynced = !sync;
out:
	chat_wipe(pt, clen);
	free(pt);
	free(buf);
	return rc;
}

int chat_seclog_append(struct chat_seclog *lg, int64_t time_ms, int direction, const char *peer,
                       size_t len, const char *text, size_t errlen, char *err)
{
	return append(lg, time_ms, direction, peer, len, text, 1, errlen, err);
}

int chat_seclog_append_unsynced(struct chat_seclog *lg, int64_t time_ms, int direction,
                                const char *peer, size_t len, const char *text, size_t errlen,
                                char *err)
{
	return append(lg, time_ms, direction, peer, len, text, 0, errlen, err);
}

int chat_seclog_sync(struct chat_seclog *lg, size_t errlen, char *err)
{
	if (!lg)
		return fail(NULL, 0, CHAT_ERR_INVALID, errlen, err, "invalid log");
	if (!lg->unsynced)
		return CHAT_OK;
	if (fsync(lg->fd) != 0) {
		lg->failed = 1;
		return fail(NULL, 0, CHAT_ERR_IO, errlen, err, "%s: cannot sync: %s", lg->path,
		            strerror(errno));
	}
	lg->unsynced = 0;
	return CHAT_OK;
}

uint64_t chat_seclog_count(const struct chat_seclog *lg)
{
	return lg ? lg->count : 0;
}

void chat_seclog_close(struct chat_seclog *lg)
{
	if (!lg)
		return;
	if (lg->fd >= 0)
		close(lg->fd); /* releases the lock */
	free(lg->path);
	chat_wipe(lg, sizeof(*lg));
	free(lg);
}
