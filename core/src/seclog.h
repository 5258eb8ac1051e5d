/* The encrypted message log of chat-peer: a file of records with
 * confidentiality (AES-256-CBC) and integrity (an HMAC-SHA256 chain plus a
 * trailer), so that modifying, reordering, removing or cutting off records
 * is detected.  Keys come from a passphrase through PBKDF2-HMAC-SHA256.
 *
 * File layout (docs/PEER.md has the full description):
 *   header  "CHATPLOG" | u32 version (1) | u32 iterations | salt[16] | hmac[32]
 *   record  'R' | u32 clen | u64 seq | iv[16] | ciphertext[clen] | mac[32]
 *   trailer 'T' | u64 count | mac[32]
 * with mac(record) = HMAC(mac_key, prev_mac | seq | iv | ciphertext), prev_mac
 * of the first record = the header's hmac, and mac(trailer) = HMAC(mac_key,
 * "end" | count | last mac).  All integers are big-endian.
 *
 * Reading verifies the whole file before it hands out a single record. */
#ifndef CHAT_SECLOG_H
#define CHAT_SECLOG_H

#include <stddef.h>
#include <stdint.h>

#define CHAT_SECLOG_SENT 1
#define CHAT_SECLOG_RECEIVED 2
#define CHAT_SECLOG_PEER_MAX 255
#define CHAT_SECLOG_TEXT_MAX (1u << 20)          /* largest text in one record */
#define CHAT_SECLOG_ITERATIONS_MAX 10000000u     /* cap on a header's PBKDF2 count */

/* What is wrong with a log, for callers that act on the kind (the text in
 * err says it for people). */
enum chat_seclog_problem {
	CHAT_SECLOG_FINE = 0,
	CHAT_SECLOG_IO,         /* cannot open, read, lock or write (errno text in err) */
	CHAT_SECLOG_NOT_A_LOG,  /* empty, or no magic: not a chat-peer log */
	CHAT_SECLOG_VERSION,    /* a format version this program does not know */
	CHAT_SECLOG_HEADER,     /* header MAC fails: wrong passphrase or corrupted header */
	CHAT_SECLOG_RECORD,     /* a record's MAC fails: modified, reordered or removed */
	CHAT_SECLOG_TRUNCATED,  /* the file ends at a record boundary: trailer missing */
	CHAT_SECLOG_MALFORMED,  /* cut inside a record, bad record type or length, bytes after the trailer */
	CHAT_SECLOG_TRAILER,    /* the trailer's MAC fails: records cut off, or it was edited */
	CHAT_SECLOG_LOCKED,     /* another process has the log open for appending */
};

struct chat_seclog_record {
	uint64_t seq;           /* 1 for the first record */
	int64_t time_ms;        /* Unix milliseconds */
	int direction;          /* CHAT_SECLOG_SENT or CHAT_SECLOG_RECEIVED */
	char peer[CHAT_SECLOG_PEER_MAX + 1];
	size_t text_len;
	const char *text;       /* valid during the callback only; not NUL-terminated */
};

/* Return non-zero to stop reading (that value is returned). */
typedef int (*chat_seclog_cb)(void *arg, const struct chat_seclog_record *r);

struct chat_seclog;

/* Open path for appending: an existing log is verified completely first
 * (any problem fails the open: nothing is ever appended to a log that does
 * not verify); a missing file is created (mode 0600) with a fresh salt and
 * `iterations` (1..CHAT_SECLOG_ITERATIONS_MAX).  The file is locked
 * (flock) while open.  *created (may be NULL) says which happened.  Errors:
 * CHAT_ERR_AUTH (wrong passphrase or corrupted header), CHAT_ERR_INTEGRITY,
 * CHAT_ERR_MALFORMED, CHAT_ERR_IO, CHAT_ERR_INVALID; problem (may be NULL)
 * and err say precisely what, e.g. "x.log: record 3 of 7: integrity check
 * failed (modified or reordered)". */
int chat_seclog_open(const char *path, size_t pass_len, const char *pass, unsigned iterations,
                     struct chat_seclog **out, int *created, int *problem, size_t errlen,
                     char *err);

/* Append one record: truncate the old trailer, write the record and a new
 * trailer, fsync.  A failed write leaves the log failed for good (later
 * appends return CHAT_ERR_FAILED). */
int chat_seclog_append(struct chat_seclog *lg, int64_t time_ms, int direction, const char *peer,
                       size_t len, const char *text, size_t errlen, char *err);
/* The same without the fsync: the record is written (a process killed after
 * it returns leaves it in the file) but not yet durable against a crash of
 * the machine until chat_seclog_sync() (or the next synced append). */
int chat_seclog_append_unsynced(struct chat_seclog *lg, int64_t time_ms, int direction,
                                const char *peer, size_t len, const char *text, size_t errlen,
                                char *err);
int chat_seclog_sync(struct chat_seclog *lg, size_t errlen, char *err);

/* Records appended or found since open. */
uint64_t chat_seclog_count(const struct chat_seclog *lg);

/* Close; the keys are wiped.  NULL is allowed. */
void chat_seclog_close(struct chat_seclog *lg);

/* Verify the whole file at path, then (only if everything verifies) call cb
 * for each record in order.  cb may be NULL (verify only).  *count (may be
 * NULL) receives the number of records.  Errors as chat_seclog_open, plus
 * CHAT_ERR_NOTFOUND for a missing file. */
int chat_seclog_read(const char *path, size_t pass_len, const char *pass, chat_seclog_cb cb,
                     void *arg, uint64_t *count, int *problem, size_t errlen, char *err);

#endif
