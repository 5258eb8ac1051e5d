/* Throttling tables, and the relay's policy for failed logins (chat_logins).
 *
 * Layout: a dense pool of max_entries entries (allocated at new), an
 * open-addressing index (linear probing, power-of-two size >= 2 * max_entries,
 * so the load stays <= 1/2) holding pool positions, and a binary min-heap of
 * pool positions ordered by the time each entry's wait ends.  The heap's top
 * is the entry whose wait ended longest ago: the one a full table reuses.
 *
 * Cost: lookup O(1) expected; a failure, a success and an eviction
 * O(log max_entries) for the heap plus O(1) expected for the index.  The index
 * hashes with SipHash-2-4 (core/src/siphash.c) under a random key drawn at
 * new, so clients cannot choose keys that collide (a worst case of
 * max_entries probes otherwise).
 *
 * Keys: up to 63 bytes are kept verbatim; a longer key is kept as its
 * SHA-256, marked as hashed, so two long keys sharing a prefix never share an
 * entry and a hashed key never equals a short one.
 *
 * Deletions use backward-shift deletion (no tombstones), and removing from
 * the pool moves the last entry into the hole, so nothing degrades over time. */
#include "throttle.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/sha2.h>

#include <chat/error.h>

#include "host.h"
#include "siphash.h"

#define KEY_MAX 63
#define KEY_HASHED (KEY_MAX + 1)        /* key.len marking a SHA-256 key */
#define ENTRIES_MAX ((size_t)1 << 20)
#define EMPTY UINT32_MAX

struct tkey {
	uint8_t len;                       /* <= KEY_MAX, or KEY_HASHED */
	uint8_t bytes[KEY_MAX];
};

struct entry {
	struct tkey key;
	uint64_t hash;
	unsigned failures;
	int64_t last_fail_ms;
	int64_t until_ms;                  /* last_fail_ms + the wait, saturated */
	uint32_t slot;                     /* position in the index */
	uint32_t heap_pos;
};

struct chat_throttle {
	struct chat_throttle_config cfg;
	struct entry *pool;                /* [0, count) in use */
	uint32_t *index;                   /* pool positions or EMPTY */
	uint32_t *heap;                    /* pool positions, min-heap on until_ms */
	size_t count;
	size_t mask;                       /* index size - 1 */
	uint8_t sipkey[CHAT_SIPHASH_KEY_LEN];
};

/* --- keys --- */

static size_t key_size(const struct tkey *k)
{
	return k->len == KEY_HASHED ? SHA256_DIGEST_SIZE : k->len;
}

static void key_make(const char *s, struct tkey *k)
{
	size_t n = s ? strlen(s) : 0;

	memset(k, 0, sizeof(*k));
	if (n <= KEY_MAX) {
		k->len = (uint8_t)n;
		memcpy(k->bytes, s ? s : "", n);
	} else {
		struct sha256_ctx ctx;
		sha256_init(&ctx);
		sha256_update(&ctx, n, (const uint8_t *)s);
		sha256_digest(&ctx, SHA256_DIGEST_SIZE, k->bytes);
		k->len = KEY_HASHED;
	}
}

static uint64_t key_hash(const struct chat_throttle *t, const struct tkey *k)
{
	/* The length byte is hashed too, so a hashed key and a short key of the
	 * same bytes land apart. */
	return chat_siphash24(t->sipkey, 1 + key_size(k), &k->len);
}

static int key_eq(const struct tkey *a, const struct tkey *b)
{
	return a->len == b->len && memcmp(a->bytes, b->bytes, key_size(a)) == 0;
}

/* --- heap on until_ms --- */

static void heap_set(struct chat_throttle *t, size_t pos, uint32_t e)
{
	t->heap[pos] = e;
	t->pool[e].heap_pos = (uint32_t)pos;
}

static void heap_up(struct chat_throttle *t, size_t pos)
{
	uint32_t e = t->heap[pos];

	while (pos > 0) {
		size_t parent = (pos - 1) / 2;
		if (t->pool[t->heap[parent]].until_ms <= t->pool[e].until_ms)
			break;
		heap_set(t, pos, t->heap[parent]);
		pos = parent;
	}
	heap_set(t, pos, e);
}

static void heap_down(struct chat_throttle *t, size_t pos)
{
	uint32_t e = t->heap[pos];

	for (;;) {
		size_t c = 2 * pos + 1;
		if (c >= t->count)
			break;
		if (c + 1 < t->count && t->pool[t->heap[c + 1]].until_ms < t->pool[t->heap[c]].until_ms)
			c++;
		if (t->pool[e].until_ms <= t->pool[t->heap[c]].until_ms)
			break;
		heap_set(t, pos, t->heap[c]);
		pos = c;
	}
	heap_set(t, pos, e);
}

/* --- entries --- */

static uint32_t find(const struct chat_throttle *t, const struct tkey *k, uint64_t h)
{
	for (size_t s = h & t->mask;; s = (s + 1) & t->mask) {
		uint32_t e = t->index[s];
		if (e == EMPTY)
			return EMPTY;
		if (t->pool[e].hash == h && key_eq(&t->pool[e].key, k))
			return e;
	}
}

/* Backward-shift deletion: pull later members of the probe run into the
 * hole when their home slot allows it. */
static void index_remove(struct chat_throttle *t, size_t hole)
{
	size_t j = hole;

	for (;;) {
		j = (j + 1) & t->mask;
		uint32_t e = t->index[j];
		if (e == EMPTY)
			break;
		size_t home = t->pool[e].hash & t->mask;
		/* e may move to hole unless home lies cyclically in (hole, j]. */
		int stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
		if (stays)
			continue;
		t->index[hole] = e;
		t->pool[e].slot = (uint32_t)hole;
		hole = j;
	}
	t->index[hole] = EMPTY;
}

static void remove_entry(struct chat_throttle *t, uint32_t e)
{
	size_t pos = t->pool[e].heap_pos;

	index_remove(t, t->pool[e].slot);
	t->count--;
	/* Out of the heap: its last element fills the gap and settles. */
	if (pos != t->count) {
		uint32_t m = t->heap[t->count];
		heap_set(t, pos, m);
		heap_up(t, pos);
		heap_down(t, t->pool[m].heap_pos);
	}
	/* Out of the pool: the last entry fills the hole. */
	if (e != t->count) {
		t->pool[e] = t->pool[t->count];
		t->index[t->pool[e].slot] = e;
		t->heap[t->pool[e].heap_pos] = e;
	}
	memset(&t->pool[t->count], 0, sizeof(t->pool[t->count]));
}

static uint32_t insert(struct chat_throttle *t, const struct tkey *k, uint64_t h)
{
	uint32_t e;
	size_t s;

	if (t->count == t->cfg.max_entries)
		remove_entry(t, t->heap[0]); /* the wait that ended longest ago */
	e = (uint32_t)t->count;
	for (s = h & t->mask; t->index[s] != EMPTY; s = (s + 1) & t->mask)
		;
	memset(&t->pool[e], 0, sizeof(t->pool[e]));
	t->pool[e].key = *k;
	t->pool[e].hash = h;
	t->pool[e].last_fail_ms = INT64_MIN;
	t->pool[e].until_ms = INT64_MIN;
	t->pool[e].slot = (uint32_t)s;
	t->index[s] = e;
	t->count++;
	heap_set(t, t->count - 1, e);
	heap_up(t, t->count - 1);
	return e;
}

static uint32_t lookup(const struct chat_throttle *t, const char *key)
{
	struct tkey k;

	key_make(key, &k);
	return find(t, &k, key_hash(t, &k));
}

/* The full wait after f failures in a row, without overflowing the shift. */
static int64_t wait_for(const struct chat_throttle *t, unsigned f)
{
	unsigned n;

	if (f <= t->cfg.free_failures)
		return 0;
	n = f - t->cfg.free_failures - 1;
	if (n >= 63 || t->cfg.base_ms > (t->cfg.max_ms >> n))
		return t->cfg.max_ms;
	return t->cfg.base_ms << n;
}

int chat_throttle_new(const struct chat_throttle_config *cfg, struct chat_throttle **out)
{
	struct chat_throttle *t;
	size_t size = 4;

	if (!out)
		return CHAT_ERR_INVALID;
	*out = NULL;
	if (!cfg || cfg->free_failures < 1 || cfg->base_ms < 1 || cfg->max_ms < cfg->base_ms ||
	    cfg->max_entries < 1 || cfg->max_entries > ENTRIES_MAX || cfg->forget_ms < 0)
		return CHAT_ERR_INVALID;
	while (size < 2 * cfg->max_entries)
		size *= 2;
	t = calloc(1, sizeof(*t));
	if (!t)
		return CHAT_ERR_NOMEM;
	t->cfg = *cfg;
	t->mask = size - 1;
	t->pool = calloc(cfg->max_entries, sizeof(*t->pool));
	t->heap = calloc(cfg->max_entries, sizeof(*t->heap));
	t->index = malloc(size * sizeof(*t->index));
	if (!t->pool || !t->heap || !t->index) {
		chat_throttle_free(t);
		return CHAT_ERR_NOMEM;
	}
	memset(t->index, 0xff, size * sizeof(*t->index)); /* EMPTY */
	if (chat_os_random(sizeof(t->sipkey), t->sipkey) != CHAT_OK) {
		chat_throttle_free(t);
		return CHAT_ERR_RANDOM;
	}
	*out = t;
	return CHAT_OK;
}

void chat_throttle_free(struct chat_throttle *t)
{
	if (!t)
		return;
	free(t->pool);
	free(t->heap);
	free(t->index);
	free(t);
}

/* The key was quiet for forget_ms: its failures no longer count. */
static int forgotten(const struct chat_throttle *t, const struct entry *e, int64_t now_ms)
{
	if (!t->cfg.forget_ms || now_ms < e->last_fail_ms)
		return 0;
	return (uint64_t)now_ms - (uint64_t)e->last_fail_ms >= (uint64_t)t->cfg.forget_ms;
}

/* Set e's failures and last failure, and its place in the heap. */
static int64_t set_state(struct chat_throttle *t, uint32_t i, unsigned failures, int64_t last_ms)
{
	struct entry *e = &t->pool[i];
	int64_t wait = wait_for(t, failures);

	e->failures = failures;
	e->last_fail_ms = last_ms;
	e->until_ms = last_ms > INT64_MAX - wait ? INT64_MAX : last_ms + wait;
	/* until_ms may move either way (the caller's clock is not ours). */
	heap_up(t, e->heap_pos);
	heap_down(t, t->pool[i].heap_pos);
	return wait;
}

int chat_throttle_configure(struct chat_throttle *t, const struct chat_throttle_config *cfg)
{
	if (!t || !cfg || cfg->free_failures < 1 || cfg->base_ms < 1 || cfg->max_ms < cfg->base_ms ||
	    cfg->forget_ms < 0)
		return CHAT_ERR_INVALID;
	t->cfg.free_failures = cfg->free_failures;
	t->cfg.base_ms = cfg->base_ms;
	t->cfg.max_ms = cfg->max_ms;
	t->cfg.forget_ms = cfg->forget_ms;
	/* Each wait again; the heap then settles entry by entry. */
	for (size_t i = 0; i < t->count; i++)
		set_state(t, (uint32_t)i, t->pool[i].failures, t->pool[i].last_fail_ms);
	return CHAT_OK;
}

int64_t chat_throttle_wait(struct chat_throttle *t, const char *key, int64_t now_ms)
{
	const struct entry *e;
	uint32_t i;
	int64_t full;

	if (!t || (i = lookup(t, key)) == EMPTY)
		return 0;
	e = &t->pool[i];
	full = wait_for(t, e->failures);
	if (full == 0 || now_ms >= e->until_ms || forgotten(t, e, now_ms))
		return 0;
	/* A clock that stepped back never stretches a wait beyond the full one. */
	if (now_ms < e->last_fail_ms)
		return full;
	return e->until_ms - now_ms; /* both in [last_fail, until]: no overflow */
}

int64_t chat_throttle_fail(struct chat_throttle *t, const char *key, int64_t now_ms)
{
	struct entry *e;
	struct tkey k;
	uint64_t h;
	uint32_t i;
	unsigned failures;

	if (!t)
		return 0;
	key_make(key, &k);
	h = key_hash(t, &k);
	i = find(t, &k, h);
	if (i == EMPTY)
		i = insert(t, &k, h);
	e = &t->pool[i];
	failures = forgotten(t, e, now_ms) ? 0 : e->failures;
	if (failures < UINT_MAX)
		failures++;
	return set_state(t, i, failures, now_ms);
}

int chat_throttle_restore(struct chat_throttle *t, const char *key, unsigned failures,
                          int64_t last_fail_ms)
{
	struct tkey k;
	uint64_t h;
	uint32_t i;

	if (!t)
		return CHAT_ERR_INVALID;
	key_make(key, &k);
	h = key_hash(t, &k);
	i = find(t, &k, h);
	if (!failures) {
		if (i != EMPTY)
			remove_entry(t, i);
		return CHAT_OK;
	}
	if (i == EMPTY)
		i = insert(t, &k, h);
	set_state(t, i, failures, last_fail_ms);
	return CHAT_OK;
}

unsigned chat_throttle_failures(struct chat_throttle *t, const char *key)
{
	uint32_t i;

	if (!t || (i = lookup(t, key)) == EMPTY)
		return 0;
	return t->pool[i].failures;
}

void chat_throttle_success(struct chat_throttle *t, const char *key)
{
	uint32_t i;

	if (t && (i = lookup(t, key)) != EMPTY)
		remove_entry(t, i);
}

size_t chat_throttle_entries(const struct chat_throttle *t)
{
	return t ? t->count : 0;
}

/* ---- failed logins (see throttle.h) */

struct chat_logins {
	struct chat_throttle *near;  /* "a:ADDRESS" and "p:ACCOUNT@ADDRESS" (a name has no '@') */
	struct chat_throttle *guard; /* ACCOUNT */
};

int chat_logins_new(const struct chat_logins_config *cfg, struct chat_logins **out)
{
	struct chat_logins *l;
	int rc;

	if (!out)
		return CHAT_ERR_INVALID;
	*out = NULL;
	if (!cfg || cfg->guard_after < cfg->after)
		return CHAT_ERR_INVALID;
	struct chat_throttle_config near = { cfg->after, cfg->base_ms, cfg->max_ms, cfg->max_entries, 0 };
	struct chat_throttle_config guard = { cfg->guard_after, cfg->base_ms, cfg->max_ms, cfg->max_entries, 0 };
	l = calloc(1, sizeof(*l));
	if (!l)
		return CHAT_ERR_NOMEM;
	if ((rc = chat_throttle_new(&near, &l->near)) != CHAT_OK ||
	    (rc = chat_throttle_new(&guard, &l->guard)) != CHAT_OK) {
		chat_logins_free(l);
		return rc;
	}
	*out = l;
	return CHAT_OK;
}

void chat_logins_free(struct chat_logins *l)
{
	if (!l)
		return;
	chat_throttle_free(l->near);
	chat_throttle_free(l->guard);
	free(l);
}

int chat_logins_configure(struct chat_logins *l, const struct chat_logins_config *cfg)
{
	if (!l || !cfg || cfg->guard_after < cfg->after || cfg->after < 1 || cfg->base_ms < 1 ||
	    cfg->max_ms < cfg->base_ms)
		return CHAT_ERR_INVALID;
	struct chat_throttle_config near = { cfg->after, cfg->base_ms, cfg->max_ms, cfg->max_entries, 0 };
	struct chat_throttle_config guard = { cfg->guard_after, cfg->base_ms, cfg->max_ms, cfg->max_entries, 0 };
	chat_throttle_configure(l->near, &near);
	chat_throttle_configure(l->guard, &guard);
	return CHAT_OK;
}

/* "a:ADDRESS" and "p:ACCOUNT@ADDRESS" (long ones are hashed by the table). */
static void near_keys(const char *account, const char *address, size_t cap, char *akey, char *pkey)
{
	snprintf(akey, cap, "a:%s", address ? address : "");
	snprintf(pkey, cap, "p:%s@%s", account ? account : "", address ? address : "");
}

#define LOGIN_KEY_MAX 512

int64_t chat_logins_wait(struct chat_logins *l, const char *account, const char *address,
                         int64_t now_ms, int *which)
{
	char akey[LOGIN_KEY_MAX], pkey[LOGIN_KEY_MAX];
	int64_t wa, wp, wg, wait = 0;
	int why = CHAT_LOGINS_FREE;

	if (l) {
		near_keys(account, address, sizeof(akey), akey, pkey);
		wa = chat_throttle_wait(l->near, akey, now_ms);
		wp = chat_throttle_wait(l->near, pkey, now_ms);
		wg = chat_throttle_wait(l->guard, account ? account : "", now_ms);
		if (wa > wait)
			wait = wa, why = CHAT_LOGINS_ADDRESS;
		if (wp > wait)
			wait = wp, why = CHAT_LOGINS_PAIR;
		if (wg > wait)
			wait = wg, why = CHAT_LOGINS_ACCOUNT;
	}
	if (which)
		*which = why;
	return wait;
}

void chat_logins_fail(struct chat_logins *l, const char *account, const char *address,
                      int64_t now_ms, struct chat_logins_result *res)
{
	char akey[LOGIN_KEY_MAX], pkey[LOGIN_KEY_MAX];
	struct chat_logins_result r = { 0 };

	if (l) {
		near_keys(account, address, sizeof(akey), akey, pkey);
		int64_t wa = chat_throttle_fail(l->near, akey, now_ms);
		int64_t wp = chat_throttle_fail(l->near, pkey, now_ms);
		int64_t wg = chat_throttle_fail(l->guard, account ? account : "", now_ms);
		if (wa > r.wait)
			r.wait = wa, r.which = CHAT_LOGINS_ADDRESS;
		if (wp > r.wait)
			r.wait = wp, r.which = CHAT_LOGINS_PAIR;
		if (wg > r.wait)
			r.wait = wg, r.which = CHAT_LOGINS_ACCOUNT;
		r.address_failures = chat_throttle_failures(l->near, akey);
		r.pair_failures = chat_throttle_failures(l->near, pkey);
		r.account_failures = chat_throttle_failures(l->guard, account ? account : "");
	}
	if (res)
		*res = r;
}

void chat_logins_success(struct chat_logins *l, const char *account, const char *address)
{
	char akey[LOGIN_KEY_MAX], pkey[LOGIN_KEY_MAX];

	if (!l)
		return;
	near_keys(account, address, sizeof(akey), akey, pkey);
	chat_throttle_success(l->near, akey);
	chat_throttle_success(l->near, pkey);
	chat_throttle_success(l->guard, account ? account : "");
}

int64_t chat_logins_address_wait(struct chat_logins *l, const char *address, int64_t now_ms)
{
	char akey[LOGIN_KEY_MAX], pkey[LOGIN_KEY_MAX];

	if (!l)
		return 0;
	near_keys("", address, sizeof(akey), akey, pkey);
	return chat_throttle_wait(l->near, akey, now_ms);
}

int64_t chat_logins_address_fail(struct chat_logins *l, const char *address, int64_t now_ms)
{
	char akey[LOGIN_KEY_MAX], pkey[LOGIN_KEY_MAX];

	if (!l)
		return 0;
	near_keys("", address, sizeof(akey), akey, pkey);
	return chat_throttle_fail(l->near, akey, now_ms);
}

unsigned chat_logins_account_failures(struct chat_logins *l, const char *account)
{
	return l ? chat_throttle_failures(l->guard, account ? account : "") : 0;
}

int chat_logins_restore_account(struct chat_logins *l, const char *account, unsigned failures,
                                int64_t last_fail_ms)
{
	return l ? chat_throttle_restore(l->guard, account ? account : "", failures, last_fail_ms)
	         : CHAT_ERR_INVALID;
}
