/* Per-address connection counts.
 *
 * Layout: a pool of entries whose positions never change while an entry is
 * in use (a connection keeps its entry's position: release is O(1) with no
 * lookup), a free list through the unused ones, and an open-addressing
 * index (linear probing, power-of-two size >= 2 * pool size, backward-shift
 * deletion) of pool positions, hashed with SipHash-2-4 under a random key so
 * that clients cannot choose addresses that collide. */
#include "addrcount.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chat/error.h>

#include "host.h"
#include "siphash.h"

#define EMPTY UINT32_MAX
#define POOL_START 64u

enum { K_OTHER, K_V4, K_V6 };

struct aentry {
	uint64_t value; /* IPv4 address, IPv6 /64 prefix, or the hash of other text */
	uint64_t hash;
	uint32_t count; /* 0: unused, and next links the free list */
	uint32_t next;  /* index slot while in use; next free entry otherwise */
	uint8_t kind;
};

struct chat_addrcount {
	struct aentry *pool;
	uint32_t cap, top;  /* pool size; entries [0, top) were ever used */
	uint32_t free_head; /* unused entries below top */
	size_t entries;
	uint32_t *index;
	size_t mask;
	uint8_t sipkey[16];
};

/* The address part of "host:port" / "[v6%scope]:port" into dst. */
static void host_part(const char *peer, size_t cap, char *dst)
{
	size_t n;

	if (peer[0] == '[') {
		n = strcspn(peer + 1, "]%");
		peer++;
	} else {
		const char *colon = strrchr(peer, ':');
		n = colon ? (size_t)(colon - peer) : strlen(peer);
	}
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, peer, n);
	dst[n] = '\0';
}

static uint64_t be_bytes(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* kind and value of peer; an unparsable address is hashed as text (keyed, so
 * clients cannot make two texts collide). */
static void make_key(const struct chat_addrcount *t, const char *peer, uint8_t *kind,
                     uint64_t *value)
{
	char host[128];
	uint8_t a[16];

	host_part(peer, sizeof(host), host);
	if (inet_pton(AF_INET, host, a) == 1) {
		*kind = K_V4;
		*value = be_bytes(a, 4);
		return;
	}
	if (inet_pton(AF_INET6, host, a) == 1) {
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		if (memcmp(a, mapped, sizeof(mapped)) == 0) {
			*kind = K_V4;
			*value = be_bytes(a + 12, 4);
		} else {
			*kind = K_V6;
			*value = be_bytes(a, 8);
		}
		return;
	}
	*kind = K_OTHER;
	*value = t ? chat_siphash24(t->sipkey, strlen(host), (const uint8_t *)host) : 0;
}

void chat_addrcount_describe(const char *peer, size_t cap, char *dst)
{
	char host[128], text[INET6_ADDRSTRLEN];
	uint8_t kind;
	uint64_t value;
	uint8_t a[16] = { 0 };

	make_key(NULL, peer, &kind, &value);
	if (kind == K_V4) {
		for (int i = 0; i < 4; i++)
			a[i] = (uint8_t)(value >> (24 - 8 * i));
		inet_ntop(AF_INET, a, text, sizeof(text));
		snprintf(dst, cap, "%s", text);
	} else if (kind == K_V6) {
		for (int i = 0; i < 8; i++)
			a[i] = (uint8_t)(value >> (56 - 8 * i));
		inet_ntop(AF_INET6, a, text, sizeof(text));
		snprintf(dst, cap, "%s/64", text);
	} else {
		host_part(peer, sizeof(host), host);
		snprintf(dst, cap, "%s", host);
	}
}

static uint64_t key_hash(const struct chat_addrcount *t, uint8_t kind, uint64_t value)
{
	uint8_t b[9];

	b[0] = kind;
	for (int i = 0; i < 8; i++)
		b[1 + i] = (uint8_t)(value >> (56 - 8 * i));
	return chat_siphash24(t->sipkey, sizeof(b), b);
}

int chat_addrcount_new(struct chat_addrcount **out)
{
	struct chat_addrcount *t = calloc(1, sizeof(*t));

	*out = NULL;
	if (!t)
		return CHAT_ERR_NOMEM;
	if (chat_os_random(sizeof(t->sipkey), t->sipkey) != CHAT_OK) {
		free(t);
		return CHAT_ERR_RANDOM;
	}
	t->free_head = EMPTY;
	*out = t;
	return CHAT_OK;
}

void chat_addrcount_free(struct chat_addrcount *t)
{
	if (!t)
		return;
	free(t->pool);
	free(t->index);
	free(t);
}

size_t chat_addrcount_entries(const struct chat_addrcount *t)
{
	return t ? t->entries : 0;
}

static void index_put(struct chat_addrcount *t, uint32_t e)
{
	size_t s = t->pool[e].hash & t->mask;

	while (t->index[s] != EMPTY)
		s = (s + 1) & t->mask;
	t->index[s] = e;
	t->pool[e].next = (uint32_t)s;
}

/* Double the pool (and the index with it, re-inserting every entry in use). */
static int grow(struct chat_addrcount *t)
{
	uint32_t ncap = t->cap ? t->cap * 2 : POOL_START;
	size_t nindex = (size_t)ncap * 2;
	struct aentry *pool;
	uint32_t *index;

	if (t->cap >= UINT32_MAX / 4)
		return CHAT_ERR_NOMEM;
	pool = realloc(t->pool, ncap * sizeof(*pool));
	if (!pool)
		return CHAT_ERR_NOMEM;
	t->pool = pool;
	index = malloc(nindex * sizeof(*index));
	if (!index)
		return CHAT_ERR_NOMEM; /* the larger pool is kept, unused: harmless */
	for (size_t i = 0; i < nindex; i++)
		index[i] = EMPTY;
	free(t->index);
	t->index = index;
	t->mask = nindex - 1;
	t->cap = ncap;
	for (uint32_t e = 0; e < t->top; e++)
		if (t->pool[e].count)
			index_put(t, e);
	return CHAT_OK;
}

int chat_addrcount_add(struct chat_addrcount *t, const char *peer, uint32_t *slot,
                       uint32_t *count)
{
	uint8_t kind;
	uint64_t value, h;
	uint32_t e;

	*slot = CHAT_ADDRCOUNT_NONE;
	*count = 0;
	make_key(t, peer, &kind, &value);
	h = key_hash(t, kind, value);
	if (t->index) {
		for (size_t s = h & t->mask;; s = (s + 1) & t->mask) {
			e = t->index[s];
			if (e == EMPTY)
				break;
			if (t->pool[e].hash == h && t->pool[e].kind == kind && t->pool[e].value == value) {
				if (t->pool[e].count == UINT32_MAX)
					return CHAT_ERR_NOMEM;
				*count = ++t->pool[e].count;
				*slot = e;
				return CHAT_OK;
			}
		}
	}
	if (t->free_head == EMPTY && t->top == t->cap) {
		int rc = grow(t);
		if (rc)
			return rc;
	}
	if (t->free_head != EMPTY) {
		e = t->free_head;
		t->free_head = t->pool[e].next;
	} else {
		e = t->top++;
	}
	t->pool[e].value = value;
	t->pool[e].hash = h;
	t->pool[e].kind = kind;
	t->pool[e].count = 1;
	index_put(t, e);
	t->entries++;
	*slot = e;
	*count = 1;
	return CHAT_OK;
}

/* Backward-shift deletion: pull later members of the probe run into the
 * hole when their home slot allows it. */
static void index_remove(struct chat_addrcount *t, size_t hole)
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
		t->pool[e].next = (uint32_t)hole;
		hole = j;
	}
	t->index[hole] = EMPTY;
}

void chat_addrcount_release(struct chat_addrcount *t, uint32_t slot)
{
	if (!t || slot == CHAT_ADDRCOUNT_NONE || slot >= t->top || !t->pool[slot].count)
		return;
	if (--t->pool[slot].count)
		return;
	index_remove(t, t->pool[slot].next);
	t->pool[slot].next = t->free_head;
	t->free_head = slot;
	t->entries--;
}
