/* The client's keystore: one file holding one secret blob (the client's
 * saved conversations: cipher session state, messages waiting to be sent),
 * encrypted and integrity-protected under a key derived from the user's
 * password, and replaced atomically on every save.
 *
 * File layout (all integers big-endian):
 *   "CHATKEYS" | u32 version (1) | u32 iterations | salt[16] | iv[16] |
 *   u32 clen | ciphertext[clen] | mac[32]
 * enc_key | mac_key = PBKDF2-HMAC-SHA256(password, salt, iterations, 64);
 * ciphertext = AES-256-CBC(enc_key, iv, PKCS#7(blob));
 * mac = HMAC-SHA256(mac_key, everything before the mac).
 * A save writes PATH.tmp, fsyncs it, renames it over PATH and fsyncs the
 * directory, so a crash leaves either the old or the new file, never a mix.
 * The derived keys are kept (wiped at close) so a save costs no PBKDF2. */
#ifndef CHAT_KEYSTORE_H
#define CHAT_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>

#define CHAT_KEYSTORE_MAX (16u << 20)             /* largest blob */
#define CHAT_KEYSTORE_ITERATIONS_MAX 10000000u

struct chat_keystore;

/* Open path: an existing file is read and verified (wrong password or any
 * modification: CHAT_ERR_AUTH "PATH: wrong password or the keystore was
 * modified"; cut short, bad magic, unknown version, absurd sizes:
 * CHAT_ERR_MALFORMED naming what), and its blob returned in *blob (malloc'd;
 * the caller wipes and frees it) — *blob is NULL, *blob_len 0 when the file
 * does not exist yet (*created = 1; nothing is written until the first save,
 * which uses `iterations`).  The file is locked with flock(PATH.lock) while
 * open: a second process gets CHAT_ERR_STATE "PATH is in use by another
 * chat-client".  err names the path in every message. */
int chat_keystore_open(const char *path, size_t pw_len, const char *pw, unsigned iterations,
                       struct chat_keystore **out, uint8_t **blob, size_t *blob_len, int *created,
                       size_t errlen, char *err);
/* Replace the file's contents with blob (atomic, durable when it returns CHAT_OK). */
int chat_keystore_save(struct chat_keystore *ks, size_t len, const uint8_t *blob, size_t errlen,
                       char *err);
/* chat_keystore_save in two steps.  stage: the new contents are written and
 * synced beside the file (PATH.tmp), nothing is replaced yet; commit: they
 * are renamed into place and the directory synced (CHAT_ERR_STATE if nothing
 * was staged).  What must happen with the save, as nearly at once as can be,
 * goes in between: a process killed before the rename left the old file, one
 * killed in or after it (a rename can take milliseconds) the new one. */
int chat_keystore_stage(struct chat_keystore *ks, size_t len, const uint8_t *blob,
                        size_t errlen, char *err);
int chat_keystore_commit(struct chat_keystore *ks, size_t errlen, char *err);
/* New password: fresh salt and keys; takes effect at the next save. */
int chat_keystore_rekey(struct chat_keystore *ks, size_t pw_len, const char *pw, size_t errlen,
                        char *err);
/* Unlock and wipe the keys.  NULL is allowed. */
void chat_keystore_close(struct chat_keystore *ks);

#endif
