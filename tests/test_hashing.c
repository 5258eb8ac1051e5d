/* Keyed hashing of names that come from the network: SipHash-2-4
 * (core/src/siphash.c) against the reference vectors, then the relay's two
 * name tables (logged-in users, rooms) fed names chosen to collide under the
 * unkeyed FNV-1a the user table used to hash with: every one of them used to
 * land in one chain; keyed, the chains stay short.  The throttle table uses
 * the same function (tests/test_throttle.c). */
#include "testutils.h"

#include <chat/error.h>

#include "loop.h"
#include "relay.h"
#include "relay_int.h"
#include "siphash.h"

/* The reference implementation's vectors (vectors.h, vectors_sip64): key
 * 00 01 .. 0f, message 00 01 .. (len - 1) for len 0..63, results read as
 * little-endian 64-bit numbers. */
static const uint64_t sip64[64] = {
	0x726fdb47dd0e0e31ull, 0x74f839c593dc67fdull, 0x0d6c8009d9a94f5aull,
	0x85676696d7fb7e2dull, 0xcf2794e0277187b7ull, 0x18765564cd99a68dull,
	0xcbc9466e58fee3ceull, 0xab0200f58b01d137ull, 0x93f5f5799a932462ull,
	0x9e0082df0ba9e4b0ull, 0x7a5dbbc594ddb9f3ull, 0xf4b32f46226bada7ull,
	0x751e8fbc860ee5fbull, 0x14ea5627c0843d90ull, 0xf723ca908e7af2eeull,
	0xa129ca6149be45e5ull, 0x3f2acc7f57c29bdbull, 0x699ae9f52cbe4794ull,
	0x4bc1b3f0968dd39cull, 0xbb6dc91da77961bdull, 0xbed65cf21aa2ee98ull,
	0xd0f2cbb02e3b67c7ull, 0x93536795e3a33e88ull, 0xa80c038ccd5ccec8ull,
	0xb8ad50c6f649af94ull, 0xbce192de8a85b8eaull, 0x17d835b85bbb15f3ull,
	0x2f2e6163076bcfadull, 0xde4daaaca71dc9a5ull, 0xa6a2506687956571ull,
	0xad87a3535c49ef28ull, 0x32d892fad841c342ull, 0x7127512f72f27cceull,
	0xa7f32346f95978e3ull, 0x12e0b01abb051238ull, 0x15e034d40fa197aeull,
	0x314dffbe0815a3b4ull, 0x027990f029623981ull, 0xcadcd4e59ef40c4dull,
	0x9abfd8766a33735cull, 0x0e3ea96b5304a7d0ull, 0xad0c42d6fc585992ull,
	0x187306c89bc215a9ull, 0xd4a60abcf3792b95ull, 0xf935451de4f21df2ull,
	0xa9538f0419755787ull, 0xdb9acddff56ca510ull, 0xd06c98cd5c0975ebull,
	0xe612a3cb9ecba951ull, 0xc766e62cfcadaf96ull, 0xee64435a9752fe72ull,
	0xa192d576b245165aull, 0x0a8787bf8ecb74b2ull, 0x81b3e73d20b49b6full,
	0x7fa8220ba3b2eceaull, 0x245731c13ca42499ull, 0xb78dbfaf3a8d83bdull,
	0xea1ad565322a1a0bull, 0x60e61c23a3795013ull, 0x6606d7e446282b93ull,
	0x6ca4ecb15c5f91e1ull, 0x9f626da15c9625f3ull, 0xe51b38608ef25f57ull,
	0x958a324ceb064572ull,
};

static void test_vectors(void)
{
	uint8_t key[CHAT_SIPHASH_KEY_LEN], msg[64];
	char text[8];

	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 64; i++)
		msg[i] = (uint8_t)i;
	for (int len = 0; len < 64; len++) {
		if (chat_siphash24(key, (size_t)len, msg) != sip64[len])
			fprintf(stderr, "SipHash-2-4 vector %d differs\n", len);
		CHECK(chat_siphash24(key, (size_t)len, msg) == sip64[len]);
	}
	/* The string form hashes the bytes without the NUL. */
	for (int i = 0; i < 7; i++)
		text[i] = (char)(i + 1);
	text[7] = '\0';
	CHECK(chat_siphash24_str(key, text) == chat_siphash24(key, 7, msg + 1));
	/* Another key, another hash. */
	key[0] ^= 1;
	CHECK(chat_siphash24(key, 8, msg) != sip64[8]);
}

/* The old user-table hash. */
static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 1099511628211ull;
	return h;
}

/* n valid user names whose FNV-1a hashes agree in the low 12 bits: one
 * bucket for any table of up to 4096 buckets.  (The low bits of FNV-1a
 * depend only on the low bits of the bytes, so this takes 4096 tries a name.) */
static char (*colliding_names(size_t n))[CHAT_NAME_MAX + 1]
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	char (*names)[CHAT_NAME_MAX + 1] = calloc(n, sizeof(*names));

	test_srand(42);
	for (size_t k = 0; k < n;) {
		char *s = names[k];

		s[0] = 'u';
		for (int i = 1; i < 12; i++)
			s[i] = alphabet[test_rand() % (sizeof(alphabet) - 1)];
		s[12] = '\0';
		if ((fnv1a(s) & 0xfff) == 0x5a5)
			k++;
	}
	return names;
}

static struct chat_relay *relay(struct chat_loop **loop)
{
	struct chat_relay_config cfg = {
		.limits = { .max_frame = 65536, .out_limit = 1 << 20 },
		.max_clients = 16,
		.max_rooms_per_client = 16,
		.max_room_members = 64,
		.max_pending_offers = 16,
		.max_bad_requests = 16,
		.guests = 1,
	};
	struct chat_relay *r = NULL;

	CHECK_EQ_INT(chat_loop_new(loop), CHAT_OK);
	CHECK_EQ_INT(chat_relay_new(*loop, &cfg, &r), CHAT_OK);
	return r;
}

static size_t longest_user_chain(const struct chat_relay *r)
{
	size_t longest = 0;

	for (size_t b = 0; b < r->nbuckets; b++) {
		size_t n = 0;

		for (const struct client *c = r->buckets[b]; c; c = c->hnext)
			n++;
		if (n > longest)
			longest = n;
	}
	return longest;
}

static size_t longest_room_chain(const struct chat_relay *r)
{
	size_t longest = 0;

	for (size_t b = 0; b < r->nroom_buckets; b++) {
		size_t n = 0;

		for (const struct room *rm = r->room_buckets[b]; rm; rm = rm->hnext)
			n++;
		if (n > longest)
			longest = n;
	}
	return longest;
}

static void test_tables(void)
{
	enum { N = 2000 };
	char (*names)[CHAT_NAME_MAX + 1] = colliding_names(N);
	struct chat_loop *loop, *loop2;
	struct chat_relay *r = relay(&loop), *r2 = relay(&loop2);
	struct client *users = calloc(N, sizeof(*users));
	size_t found = 0, longest;

	if (!r || !r2 || !users)
		goto out;
	/* A random key each: another relay hashes the same name elsewhere. */
	CHECK(memcmp(r->hash_key, r2->hash_key, sizeof(r->hash_key)) != 0);
	CHECK(relay_hash_name(r, names[0]) != relay_hash_name(r2, names[0]));

	/* Users: all in, all found, short chains, all out. */
	for (size_t k = 0; k < N; k++) {
		snprintf(users[k].name, sizeof(users[k].name), "%s", names[k]);
		CHECK_EQ_INT(relay_insert_user(r, &users[k]), CHAT_OK);
	}
	longest = longest_user_chain(r);
	printf("users: %d names colliding under FNV-1a in %zu buckets: longest chain %zu\n", N,
	       r->nbuckets, longest);
	CHECK(r->nbuckets >= N && r->nbuckets <= 4096);
	CHECK(longest <= 16); /* FNV-1a: 2000 */
	for (size_t k = 0; k < N; k++)
		found += relay_find_user(r, names[k]) == &users[k];
	CHECK_EQ_INT(found, N);
	CHECK(relay_find_user(r, "nobody") == NULL);
	for (size_t k = 0; k < N; k++)
		relay_remove_user(r, &users[k]);
	CHECK_EQ_INT(r->nlogged, 0);
	CHECK(relay_find_user(r, names[7]) == NULL);

	/* Rooms: the same names. */
	found = 0;
	for (size_t k = 0; k < N; k++)
		CHECK(relay_new_room(r, names[k]) != NULL);
	longest = longest_room_chain(r);
	printf("rooms: %d names colliding under FNV-1a in %zu buckets: longest chain %zu\n", N,
	       r->nroom_buckets, longest);
	CHECK(longest <= 16);
	for (size_t k = 0; k < N; k++) {
		struct room *rm = relay_find_room(r, names[k]);
		found += rm && strcmp(rm->name, names[k]) == 0;
	}
	CHECK_EQ_INT(found, N);
	CHECK(relay_find_room(r, "nowhere") == NULL);
	CHECK_EQ_INT(r->nrooms, N);
out:
	chat_relay_free(r); /* frees the rooms */
	chat_relay_free(r2);
	chat_loop_free(loop);
	chat_loop_free(loop2);
	free(users);
	free(names);
}

int main(void)
{
	test_vectors();
	test_tables();
	return test_done("test_hashing");
}
