/* What a store backend provides (store.h is what the relay calls): one
 * const table of functions per backend, in the manner of curl's vtls.
 * store.c parses relay.store and forwards every chat_store_* call through
 * the table of the handle's backend: one indirect call.
 *
 * SQLite (store_sqlite.c) is linked into the relay; PostgreSQL
 * (store_pg.c) is the module store-postgresql.so (module.h), so that
 * chat-relay does not link libpq.  The module exports only
 * CHAT_STORE_BACKEND_SYMBOL; store.c refuses a table whose version or size
 * is not its own (a module from another build) or that misses a function.
 *
 * Each backend defines struct chat_store for itself, and its first member
 * must be `const struct chat_store_backend *backend`: that is all store.c
 * reads of a handle (it never completes the type).  The semantics of every
 * function are those documented in store.h. */
#ifndef CHAT_STORE_BACKEND_H
#define CHAT_STORE_BACKEND_H

#include "store.h"

#define CHAT_STORE_BACKEND_VERSION 1
#define CHAT_STORE_BACKEND_SYMBOL "chat_store_backend_entry"

struct chat_store_backend {
	unsigned version;  /* CHAT_STORE_BACKEND_VERSION */
	size_t size;       /* sizeof(struct chat_store_backend) of the backend's build */
	const char *name;  /* "sqlite", "postgresql" */
	/* open and probe take the backend's part of relay.store: the file
	 * path for SQLite, the whole postgresql:// URL for PostgreSQL. */
	int (*open)(const char *spec, struct chat_store **out, size_t errlen, char *err);
	void (*close)(struct chat_store *s);
	int (*probe)(const char *spec, int *version, int *dir_missing, size_t errlen, char *err);
	int (*created)(const struct chat_store *s);
	int (*check)(struct chat_store *s);
	const char *(*gone)(const struct chat_store *s);
	const char *(*error)(const struct chat_store *s);
	int (*schema_version)(struct chat_store *s);
	int (*begin)(struct chat_store *s);
	int (*commit)(struct chat_store *s);
	void (*rollback)(struct chat_store *s);
	int (*in_transaction)(const struct chat_store *s);
	int (*account_get)(struct chat_store *s, const char *name, struct chat_account *a);
	int (*account_exists)(struct chat_store *s, const char *name);
	int (*account_add)(struct chat_store *s, const struct chat_account *a);
	int (*account_set_verifier)(struct chat_store *s, const char *name, const struct chat_scram_verifier *v);
	int (*account_set_group)(struct chat_store *s, const char *name, int group);
	int (*account_remove)(struct chat_store *s, const char *name);
	int (*account_count)(struct chat_store *s, int group, size_t *count);
	int (*key_put)(struct chat_store *s, const char *name, const char *suite, size_t len, const uint8_t *key, int64_t now_ms);
	int (*keys)(struct chat_store *s, const char *name, chat_store_key_cb cb, void *arg);
	int (*friend_get)(struct chat_store *s, const char *a, const char *b, int *state);
	int (*friend_set)(struct chat_store *s, const char *a, const char *b, int state);
	int (*friends)(struct chat_store *s, const char *name, chat_store_friend_cb cb, void *arg);
	int (*conv_add)(struct chat_store *s, const char *a, const char *b, const char *suite, int64_t now_ms);
	int (*conv_get)(struct chat_store *s, const char *a, const char *b, char suite[33]);
	int (*conv_remove)(struct chat_store *s, const char *a, const char *b);
	int (*offer_add)(struct chat_store *s, const char *from, const char *to, const char *suites, int64_t now_ms);
	int (*offer_get)(struct chat_store *s, const char *from, const char *to, char suites[16 * 34]);
	int (*offer_remove)(struct chat_store *s, const char *from, const char *to);
	int (*mail_add)(struct chat_store *s, const char *to, const char *from, uint64_t client_id, int64_t stored_ms, int64_t expires_ms, size_t len, const uint8_t *data, int64_t *id);
	int (*mail_usage)(struct chat_store *s, const char *to, size_t *count, uint64_t *bytes);
	int (*mail_for)(struct chat_store *s, const char *to, int64_t after_id, size_t limit, chat_store_mail_cb cb, void *arg);
	int (*mail_take)(struct chat_store *s, const char *to, int64_t id, struct chat_mail *m, char from[33]);
	int (*mail_expire)(struct chat_store *s, int64_t now_ms, chat_store_mail_cb cb, void *arg);
	int (*sender_last)(struct chat_store *s, const char *sender, uint64_t *client_id);
	int (*sender_set_last)(struct chat_store *s, const char *sender, uint64_t client_id);
	int (*accepted_get)(struct chat_store *s, const char *sender, uint64_t client_id, int *seen);
	int (*accepted_add)(struct chat_store *s, const char *sender, uint64_t client_id, int64_t now_ms);
	int (*accepted_prune)(struct chat_store *s, int64_t older_than_ms);
	int (*archive_add)(struct chat_store *s, const char *from, const char *to, int64_t stored_ms, size_t len, const uint8_t *data);
	int (*archive_prune)(struct chat_store *s, int64_t older_than_ms, size_t *removed);
	int (*archive_count)(struct chat_store *s, const char *a, const char *b, size_t *count);
	int (*throttle_put)(struct chat_store *s, int kind, const char *key, unsigned failures, int64_t last_ms);
	int (*throttle_del)(struct chat_store *s, int kind, const char *key);
	int (*throttle_each)(struct chat_store *s, int kind, size_t limit, chat_store_throttle_cb cb, void *arg);
	int (*throttle_prune)(struct chat_store *s, int kind, int64_t older_than_ms, size_t keep);
	int (*secret)(struct chat_store *s, const char *name, size_t len, const uint8_t *fresh, uint8_t *out);};

/* The SQLite backend, always built in. */
extern const struct chat_store_backend chat_store_sqlite;

/* The module's one export: returns its table. */
typedef const struct chat_store_backend *(*chat_store_backend_entry_fn)(void);

#endif
