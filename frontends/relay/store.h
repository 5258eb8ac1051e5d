/* The relay's durable store: one SQLite database file in WAL mode holding
 * accounts (SCRAM verifiers, never passwords), friendships, accepted
 * conversations, mail (relay messages waiting for a registered user:
 * end-to-end ciphertext, offers, answers, receipts — opaque bytes here) and
 * the optional ciphertext archive; and what keeps the relay from telling
 * which names exist across restarts: throttling counts and its own secrets.
 *
 * Every function is one statement or one transaction.  Between
 * chat_store_begin() and chat_store_commit() writes are grouped into one
 * transaction (the relay commits once per event-loop pass and only then
 * acknowledges: a message is acknowledged only after it is durable).
 * synchronous=FULL: a committed transaction survives kill -9 and power loss.
 *
 * Errors: CHAT_ERR_NOTFOUND (no such row), CHAT_ERR_INVALID (exists already /
 * bad argument), CHAT_ERR_IO (SQLite failed: the text from chat_store_error()
 * names the file and SQLite's reason), CHAT_ERR_FAILED (the database file was
 * removed or replaced: see chat_store_check).  Names are validated by the caller
 * (chat_name_check) before they reach the store. */
#ifndef CHAT_STORE_H
#define CHAT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h" /* enum chat_group */
#include "scram.h"

#define CHAT_STORE_SCHEMA_VERSION 3

struct chat_account {
	char name[33];
	int group;                      /* CHAT_GROUP_REGULAR or _ADMIN */
	struct chat_scram_verifier v;
	int64_t created_ms;             /* Unix ms */
};

/* Friendship between a and b as seen from a. */
enum chat_friend_state {
	CHAT_FRIEND_NONE = 0,
	CHAT_FRIEND_YES = 1,        /* friends */
	CHAT_FRIEND_ASKED = 2,      /* a asked b; b has not accepted */
	CHAT_FRIEND_ASKED_BY = 3,   /* b asked a */
};

struct chat_mail {
	int64_t id;                 /* increasing: delivery order */
	const char *to;
	const char *from;           /* "" when the relay itself wrote it */
	uint64_t client_id;         /* sender's id for SEND payloads, else 0 */
	int64_t stored_ms;
	int64_t expires_ms;         /* 0: never */
	size_t len;
	const uint8_t *data;        /* valid during the callback only */
};

struct chat_store;

/* relay.store: "sqlite:PATH" (or a bare PATH) is an SQLite file, which the
 * rest of this comment describes; "postgresql://..." a PostgreSQL database
 * (docs/SERVICE.md: the module store-postgresql, shared by several relays;
 * check/gone are about the connection there, and the password in the URL
 * never appears in a message). */
int chat_store_spec_is_postgresql(const char *spec);
/* The SQLite file of spec ("sqlite:PATH" or PATH), NULL for PostgreSQL. */
const char *chat_store_spec_path(const char *spec);
/* spec as it may be shown: the path, or the URL without its password
 * (":***") and without its parameters ("?..."). */
void chat_store_spec_redact(const char *spec, size_t cap, char *dst);
/* "sqlite" or "postgresql". */
const char *chat_store_backend_name(const struct chat_store *s);

/* Open (creating it if missing: file mode 0600, the directory must exist)
 * and migrate to CHAT_STORE_SCHEMA_VERSION.  Refuses, with a message naming
 * path and what is wrong: a file that is not an SQLite database or fails
 * `PRAGMA quick_check` (corrupt), a schema version newer than this program
 * knows, a file or directory that cannot be written.  Never modifies a file
 * it refuses. */
int chat_store_open(const char *spec, struct chat_store **out, size_t errlen, char *err);
void chat_store_close(struct chat_store *s);
/* chat-relay --check-config: what the database at path is, without creating,
 * migrating or writing anything (opened read-only; a running relay may hold
 * it).  CHAT_OK with *version its schema version, at most
 * CHAT_STORE_SCHEMA_VERSION (0: empty; an older one is migrated at the next
 * start); CHAT_ERR_NOTFOUND when the file does not exist (*dir_missing 1
 * when its directory does not either); CHAT_ERR_IO when it cannot be used:
 * not a regular file, not an SQLite database, a schema version newer than
 * this program knows, a database of something else, unreadable.  err names
 * the file and what is wrong. */
int chat_store_probe(const char *spec, int *version, int *dir_missing, size_t errlen, char *err);
/* 1 if chat_store_open created the file (a new, empty store). */
int chat_store_created(const struct chat_store *s);
/* Does the path still name the file that was opened?  A file removed (or
 * renamed away) or replaced by another one under a running program takes
 * every later write with it, so: CHAT_OK, or CHAT_ERR_FAILED from then on
 * (sticky until the store is closed), with chat_store_gone() saying what
 * happened.  One stat(); chat_store_commit() (and a function's own
 * transaction) calls it before committing, and begin refuses once it failed.
 * Reads go on working (from the file still open). */
int chat_store_check(struct chat_store *s);
/* NULL while the file is in place; else "PATH: the database file was
 * removed ..." or "... replaced by another file (... inode A ..., inode B)". */
const char *chat_store_gone(const struct chat_store *s);
/* The last error's text ("var/relay.db: database disk image is malformed"). */
const char *chat_store_error(const struct chat_store *s);
int chat_store_schema_version(struct chat_store *s);

/* Group writes; nesting is not supported.  commit on failure rolls back
 * (also when chat_store_check fails: nothing is committed to a lost file). */
int chat_store_begin(struct chat_store *s);
int chat_store_commit(struct chat_store *s);
void chat_store_rollback(struct chat_store *s);
int chat_store_in_transaction(const struct chat_store *s);

/* ---- accounts */
int chat_store_account_get(struct chat_store *s, const char *name, struct chat_account *a);
/* CHAT_OK if name has an account, CHAT_ERR_NOTFOUND if not (no verifier is read). */
int chat_store_account_exists(struct chat_store *s, const char *name);
int chat_store_account_add(struct chat_store *s, const struct chat_account *a); /* INVALID if it exists */
int chat_store_account_set_verifier(struct chat_store *s, const char *name,
                                    const struct chat_scram_verifier *v);
int chat_store_account_set_group(struct chat_store *s, const char *name, int group);
/* Removes the account and everything about it: friendships, requests,
 * conversations, mail to it.  Mail it sent stays queued (the sender's
 * messages were accepted). */
int chat_store_account_remove(struct chat_store *s, const char *name);
/* Accounts in a group (CHAT_GROUP_GUEST: all accounts). */
int chat_store_account_count(struct chat_store *s, int group, size_t *count);

/* ---- identity keys: public keys users publish, one per suite (ABI 1.3) */
#define CHAT_STORE_KEY_MAX 4096       /* bytes of one public key */
#define CHAT_STORE_KEYS_PER_USER 8    /* suites one user may publish keys for */
/* Store or replace name's key for suite.  CHAT_ERR_NOSPACE when name has
 * CHAT_STORE_KEYS_PER_USER keys for other suites already. */
int chat_store_key_put(struct chat_store *s, const char *name, const char *suite, size_t len,
                       const uint8_t *key, int64_t now_ms);
typedef int (*chat_store_key_cb)(void *arg, const char *suite, size_t len, const void *key);
/* Every key of name, by suite; cb returns non-zero to stop. */
int chat_store_keys(struct chat_store *s, const char *name, chat_store_key_cb cb, void *arg);

/* ---- friends */
int chat_store_friend_get(struct chat_store *s, const char *a, const char *b, int *state);
/* Set the relation of a and b as seen from a (NONE removes both
 * directions; YES makes it mutual; ASKED records a's request to b). */
int chat_store_friend_set(struct chat_store *s, const char *a, const char *b, int state);
/* Every relation of name, ordered by the other name; cb returns non-zero to stop. */
typedef int (*chat_store_friend_cb)(void *arg, const char *other, int state);
int chat_store_friends(struct chat_store *s, const char *name, chat_store_friend_cb cb, void *arg);

/* ---- accepted conversations (consent survives restarts) */
int chat_store_conv_add(struct chat_store *s, const char *a, const char *b, const char *suite,
                        int64_t now_ms);   /* replaces an existing one */
int chat_store_conv_get(struct chat_store *s, const char *a, const char *b, char suite[33]);
int chat_store_conv_remove(struct chat_store *s, const char *a, const char *b);

/* ---- offers waiting for an answer (TALK between registered users) */
/* suites: the offerer's allowed suites, comma-separated (at most 16 names). */
int chat_store_offer_add(struct chat_store *s, const char *from, const char *to,
                         const char *suites, int64_t now_ms);   /* replaces */
int chat_store_offer_get(struct chat_store *s, const char *from, const char *to,
                         char suites[16 * 34]);
int chat_store_offer_remove(struct chat_store *s, const char *from, const char *to);

/* ---- mail */
int chat_store_mail_add(struct chat_store *s, const char *to, const char *from,
                        uint64_t client_id, int64_t stored_ms, int64_t expires_ms, size_t len,
                        const uint8_t *data, int64_t *id);
/* Messages and bytes waiting for to (for the queue limits). */
int chat_store_mail_usage(struct chat_store *s, const char *to, size_t *count, uint64_t *bytes);
/* Mail for to with id > after_id, in id order, at most limit rows (0: all). */
typedef int (*chat_store_mail_cb)(void *arg, const struct chat_mail *m);
int chat_store_mail_for(struct chat_store *s, const char *to, int64_t after_id, size_t limit,
                        chat_store_mail_cb cb, void *arg);
/* Delete mail id addressed to `to` (an ACK); m (may be NULL) receives its
 * metadata first (len is the data's size; data itself is not returned).  NOTFOUND if there is no such
 * mail for that user (already acknowledged). */
int chat_store_mail_take(struct chat_store *s, const char *to, int64_t id, struct chat_mail *m,
                         char from[33]);
/* Delete every mail with 0 < expires_ms <= now_ms, calling cb for each first
 * (to tell its sender). */
int chat_store_mail_expire(struct chat_store *s, int64_t now_ms, chat_store_mail_cb cb, void *arg);

/* Highest SEND client id accepted from sender (0 if none): a client that
 * lost its keystore starts above it. */
int chat_store_sender_last(struct chat_store *s, const char *sender, uint64_t *client_id);
int chat_store_sender_set_last(struct chat_store *s, const char *sender, uint64_t client_id);

/* Every SEND id accepted from a sender, for exact duplicate detection (the
 * highest id alone cannot tell a resend from an id that was refused before
 * later ones were accepted).  Pruned by age. */
int chat_store_accepted_get(struct chat_store *s, const char *sender, uint64_t client_id,
                            int *seen);
int chat_store_accepted_add(struct chat_store *s, const char *sender, uint64_t client_id,
                            int64_t now_ms);
int chat_store_accepted_prune(struct chat_store *s, int64_t older_than_ms);

/* ---- archive of conversation ciphertext (relay.archive) */
int chat_store_archive_add(struct chat_store *s, const char *from, const char *to,
                           int64_t stored_ms, size_t len, const uint8_t *data);
int chat_store_archive_prune(struct chat_store *s, int64_t older_than_ms, size_t *removed);
int chat_store_archive_count(struct chat_store *s, const char *a, const char *b, size_t *count);

/* ---- throttling counts kept across restarts (schema version 2).  Keys
 * are account names or client addresses (at most 255 bytes). */
enum chat_store_throttle_kind {
	CHAT_STORE_THROTTLE_ACCOUNT = 1,   /* failed logins of an account, every address together */
	CHAT_STORE_THROTTLE_REGISTER = 2,  /* registrations from an address */
};
/* Failures in a row and the time of the last one (failures 0: delete). */
int chat_store_throttle_put(struct chat_store *s, int kind, const char *key, unsigned failures,
                            int64_t last_ms);
int chat_store_throttle_del(struct chat_store *s, int kind, const char *key); /* none: CHAT_OK */
/* The counts of a kind, most recent first, at most limit (0: all); cb
 * returns non-zero to stop. */
typedef int (*chat_store_throttle_cb)(void *arg, const char *key, unsigned failures, int64_t last_ms);
int chat_store_throttle_each(struct chat_store *s, int kind, size_t limit, chat_store_throttle_cb cb,
                             void *arg);
/* Forget counts of a kind whose last failure is before older_than_ms, and
 * all but the `keep` most recent. */
int chat_store_throttle_prune(struct chat_store *s, int kind, int64_t older_than_ms, size_t keep);

/* ---- the relay's own secrets (schema version 2) */
#define CHAT_STORE_SECRET_MAX 64
/* The secret called name, len bytes, into out: the stored one, or, the
 * first time, `fresh` (stored now, so every later start gets the same). */
int chat_store_secret(struct chat_store *s, const char *name, size_t len, const uint8_t *fresh,
                      uint8_t *out);

#endif
