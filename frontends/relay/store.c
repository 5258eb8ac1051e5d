/* relay.store: which backend holds the store, and the forwarding of every
 * chat_store_* call to it (store_backend.h).  "sqlite:PATH" or a bare PATH
 * is the SQLite file built into the relay; "postgresql://..." (or
 * "postgres://...") loads the module store-postgresql.so, which links
 * libpq, so chat-relay itself never does. */
#include "store.h"

#include <stdio.h>
#include <string.h>

#include <chat/error.h>

#include "module.h"
#include "store_backend.h"

#define PG_MODULE "store-postgresql"

int chat_store_spec_is_postgresql(const char *spec)
{
	return spec && (strncmp(spec, "postgresql://", 13) == 0 || strncmp(spec, "postgres://", 11) == 0);
}

const char *chat_store_spec_path(const char *spec)
{
	if (!spec || chat_store_spec_is_postgresql(spec))
		return NULL;
	return strncmp(spec, "sqlite:", 7) == 0 ? spec + 7 : spec;
}

void chat_store_spec_redact(const char *spec, size_t cap, char *dst)
{
	const char *at, *colon, *host, *q;
	size_t o = 0;

	if (!cap)
		return;
	dst[0] = '\0';
	if (!spec)
		return;
	if (!chat_store_spec_is_postgresql(spec)) {
		snprintf(dst, cap, "%s", chat_store_spec_path(spec));
		return;
	}
	/* postgresql://USER:PASSWORD@HOST...: the password goes. */
	host = strstr(spec, "://") + 3;
	at = strchr(host, '@');
	q = strpbrk(host, "/?");
	if (at && (!q || at < q) && (colon = memchr(host, ':', (size_t)(at - host))))
		o = (size_t)snprintf(dst, cap, "%.*s:***%.*s", (int)(colon - spec), spec,
		                     (int)(strcspn(at, "?")), at);
	else
		o = (size_t)snprintf(dst, cap, "%.*s", (int)strcspn(spec, "?"), spec);
	/* Parameters (a password=... among them) are left out. */
	if (strchr(spec, '?') && o < cap)
		snprintf(dst + o, cap - o, "?...");
}

/* The PostgreSQL module's table, loaded and checked once. */
static const struct chat_store_backend *postgresql(size_t errlen, char *err)
{
	static const struct chat_store_backend *pg;
	chat_store_backend_entry_fn entry;
	const struct chat_store_backend *b;
	char why[1024];

	if (pg)
		return pg;
	*(void **)&entry = chat_relay_module_symbol(PG_MODULE, CHAT_STORE_BACKEND_SYMBOL,
	                                            sizeof(why), why);
	if (!entry) {
		snprintf(err, errlen, "relay.store is a PostgreSQL URL, but %s", why);
		return NULL;
	}
	b = entry();
	if (!b || b->version != CHAT_STORE_BACKEND_VERSION || b->size != sizeof(*b)) {
		snprintf(err, errlen, "module %s.so is from another build (store backend version %u, "
		         "size %zu; this chat-relay wants version %u, size %zu): install the module "
		         "built with this chat-relay", PG_MODULE, b ? b->version : 0, b ? b->size : 0,
		         CHAT_STORE_BACKEND_VERSION, sizeof(*b));
		return NULL;
	}
	/* Every slot is a function pointer after name: none may be missing. */
	for (const char *p = (const char *)&b->name + sizeof(b->name); p < (const char *)(b + 1);
	     p += sizeof(void (*)(void))) {
		void (*fn)(void);
		memcpy(&fn, p, sizeof(fn));
		if (!fn) {
			snprintf(err, errlen, "module %s.so: its store backend misses a function "
			         "(not built from this source?)", PG_MODULE);
			return NULL;
		}
	}
	pg = b;
	return pg;
}

/* The backend for spec and the part of spec it takes, or NULL with err. */
static const struct chat_store_backend *backend_for(const char *spec, const char **arg,
                                                    size_t errlen, char *err)
{
	if (chat_store_spec_is_postgresql(spec)) {
		*arg = spec;
		return postgresql(errlen, err);
	}
	*arg = chat_store_spec_path(spec);
	return &chat_store_sqlite;
}

int chat_store_open(const char *spec, struct chat_store **out, size_t errlen, char *err)
{
	const struct chat_store_backend *b;
	const char *arg = NULL;
	char why[1200];

	if (out)
		*out = NULL;
	if (!spec || !out)
		return chat_store_sqlite.open(spec, out, errlen, err);
	b = backend_for(spec, &arg, sizeof(why), why);
	if (!b) {
		if (errlen)
			snprintf(err, errlen, "%s", why);
		return CHAT_ERR_IO;
	}
	return b->open(arg, out, errlen, err);
}

int chat_store_probe(const char *spec, int *version, int *dir_missing, size_t errlen, char *err)
{
	const struct chat_store_backend *b;
	const char *arg = NULL;
	char why[1200];

	*version = 0;
	*dir_missing = 0;
	b = backend_for(spec, &arg, sizeof(why), why);
	if (!b) {
		if (errlen)
			snprintf(err, errlen, "%s", why);
		return CHAT_ERR_IO;
	}
	return b->probe(arg, version, dir_missing, errlen, err);
}

const char *chat_store_backend_name(const struct chat_store *s)
{
	return s ? (*(const struct chat_store_backend *const *)(const void *)s)->name : "none";
}

/* A NULL handle goes to the SQLite functions, which answer it as before. */
static inline const struct chat_store_backend *backend_of(const struct chat_store *s)
{
	return s ? *(const struct chat_store_backend *const *)(const void *)s : &chat_store_sqlite;
}

void chat_store_close(struct chat_store *s)
{
	backend_of(s)->close(s);
}

int chat_store_created(const struct chat_store *s)
{
	return backend_of(s)->created(s);
}

int chat_store_check(struct chat_store *s)
{
	return backend_of(s)->check(s);
}

const char *chat_store_gone(const struct chat_store *s)
{
	return backend_of(s)->gone(s);
}

const char *chat_store_error(const struct chat_store *s)
{
	return backend_of(s)->error(s);
}

int chat_store_schema_version(struct chat_store *s)
{
	return backend_of(s)->schema_version(s);
}

int chat_store_begin(struct chat_store *s)
{
	return backend_of(s)->begin(s);
}

int chat_store_commit(struct chat_store *s)
{
	return backend_of(s)->commit(s);
}

void chat_store_rollback(struct chat_store *s)
{
	backend_of(s)->rollback(s);
}

int chat_store_in_transaction(const struct chat_store *s)
{
	return backend_of(s)->in_transaction(s);
}

int chat_store_account_get(struct chat_store *s, const char *name, struct chat_account *a)
{
	return backend_of(s)->account_get(s, name, a);
}

int chat_store_account_exists(struct chat_store *s, const char *name)
{
	return backend_of(s)->account_exists(s, name);
}

int chat_store_account_add(struct chat_store *s, const struct chat_account *a)
{
	return backend_of(s)->account_add(s, a);
}

int chat_store_account_set_verifier(struct chat_store *s, const char *name, const struct chat_scram_verifier *v)
{
	return backend_of(s)->account_set_verifier(s, name, v);
}

int chat_store_account_set_group(struct chat_store *s, const char *name, int group)
{
	return backend_of(s)->account_set_group(s, name, group);
}

int chat_store_account_remove(struct chat_store *s, const char *name)
{
	return backend_of(s)->account_remove(s, name);
}

int chat_store_account_count(struct chat_store *s, int group, size_t *count)
{
	return backend_of(s)->account_count(s, group, count);
}

int chat_store_key_put(struct chat_store *s, const char *name, const char *suite, size_t len, const uint8_t *key, int64_t now_ms)
{
	return backend_of(s)->key_put(s, name, suite, len, key, now_ms);
}

int chat_store_keys(struct chat_store *s, const char *name, chat_store_key_cb cb, void *arg)
{
	return backend_of(s)->keys(s, name, cb, arg);
}

int chat_store_friend_get(struct chat_store *s, const char *a, const char *b, int *state)
{
	return backend_of(s)->friend_get(s, a, b, state);
}

int chat_store_friend_set(struct chat_store *s, const char *a, const char *b, int state)
{
	return backend_of(s)->friend_set(s, a, b, state);
}

int chat_store_friends(struct chat_store *s, const char *name, chat_store_friend_cb cb, void *arg)
{
	return backend_of(s)->friends(s, name, cb, arg);
}

int chat_store_conv_add(struct chat_store *s, const char *a, const char *b, const char *suite, int64_t now_ms)
{
	return backend_of(s)->conv_add(s, a, b, suite, now_ms);
}

int chat_store_conv_get(struct chat_store *s, const char *a, const char *b, char suite[33])
{
	return backend_of(s)->conv_get(s, a, b, suite);
}

int chat_store_conv_remove(struct chat_store *s, const char *a, const char *b)
{
	return backend_of(s)->conv_remove(s, a, b);
}

int chat_store_offer_add(struct chat_store *s, const char *from, const char *to, const char *suites, int64_t now_ms)
{
	return backend_of(s)->offer_add(s, from, to, suites, now_ms);
}

int chat_store_offer_get(struct chat_store *s, const char *from, const char *to, char suites[16 * 34])
{
	return backend_of(s)->offer_get(s, from, to, suites);
}

int chat_store_offer_remove(struct chat_store *s, const char *from, const char *to)
{
	return backend_of(s)->offer_remove(s, from, to);
}

int chat_store_mail_add(struct chat_store *s, const char *to, const char *from, uint64_t client_id, int64_t stored_ms, int64_t expires_ms, size_t len, const uint8_t *data, int64_t *id)
{
	return backend_of(s)->mail_add(s, to, from, client_id, stored_ms, expires_ms, len, data, id);
}

int chat_store_mail_usage(struct chat_store *s, const char *to, size_t *count, uint64_t *bytes)
{
	return backend_of(s)->mail_usage(s, to, count, bytes);
}

int chat_store_mail_for(struct chat_store *s, const char *to, int64_t after_id, size_t limit, chat_store_mail_cb cb, void *arg)
{
	return backend_of(s)->mail_for(s, to, after_id, limit, cb, arg);
}

int chat_store_mail_take(struct chat_store *s, const char *to, int64_t id, struct chat_mail *m, char from[33])
{
	return backend_of(s)->mail_take(s, to, id, m, from);
}

int chat_store_mail_expire(struct chat_store *s, int64_t now_ms, chat_store_mail_cb cb, void *arg)
{
	return backend_of(s)->mail_expire(s, now_ms, cb, arg);
}

int chat_store_sender_last(struct chat_store *s, const char *sender, uint64_t *client_id)
{
	return backend_of(s)->sender_last(s, sender, client_id);
}

int chat_store_sender_set_last(struct chat_store *s, const char *sender, uint64_t client_id)
{
	return backend_of(s)->sender_set_last(s, sender, client_id);
}

int chat_store_accepted_get(struct chat_store *s, const char *sender, uint64_t client_id, int *seen)
{
	return backend_of(s)->accepted_get(s, sender, client_id, seen);
}

int chat_store_accepted_add(struct chat_store *s, const char *sender, uint64_t client_id, int64_t now_ms)
{
	return backend_of(s)->accepted_add(s, sender, client_id, now_ms);
}

int chat_store_accepted_prune(struct chat_store *s, int64_t older_than_ms)
{
	return backend_of(s)->accepted_prune(s, older_than_ms);
}

int chat_store_archive_add(struct chat_store *s, const char *from, const char *to, int64_t stored_ms, size_t len, const uint8_t *data)
{
	return backend_of(s)->archive_add(s, from, to, stored_ms, len, data);
}

int chat_store_archive_prune(struct chat_store *s, int64_t older_than_ms, size_t *removed)
{
	return backend_of(s)->archive_prune(s, older_than_ms, removed);
}

int chat_store_archive_count(struct chat_store *s, const char *a, const char *b, size_t *count)
{
	return backend_of(s)->archive_count(s, a, b, count);
}

int chat_store_throttle_put(struct chat_store *s, int kind, const char *key, unsigned failures, int64_t last_ms)
{
	return backend_of(s)->throttle_put(s, kind, key, failures, last_ms);
}

int chat_store_throttle_del(struct chat_store *s, int kind, const char *key)
{
	return backend_of(s)->throttle_del(s, kind, key);
}

int chat_store_throttle_each(struct chat_store *s, int kind, size_t limit, chat_store_throttle_cb cb, void *arg)
{
	return backend_of(s)->throttle_each(s, kind, limit, cb, arg);
}

int chat_store_throttle_prune(struct chat_store *s, int kind, int64_t older_than_ms, size_t keep)
{
	return backend_of(s)->throttle_prune(s, kind, older_than_ms, keep);
}

int chat_store_secret(struct chat_store *s, const char *name, size_t len, const uint8_t *fresh, uint8_t *out)
{
	return backend_of(s)->secret(s, name, len, fresh, out);
}
