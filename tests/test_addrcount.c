/* Per-address connection counts (frontends/relay/addrcount.c): IPv4 by
 * address, IPv6 by /64, mapped addresses as IPv4, other text without its
 * port; entries come and go with their connections; many addresses. */
#include <stdio.h>

#include <chat/error.h>

#include "addrcount.h"
#include "testutils.h"

static uint32_t add(struct chat_addrcount *t, const char *peer, uint32_t *slot)
{
	uint32_t count = 0;

	CHECK_EQ_INT(chat_addrcount_add(t, peer, slot, &count), CHAT_OK);
	return count;
}

static void test_keys(void)
{
	struct chat_addrcount *t;
	uint32_t s[8];

	CHECK_EQ_INT(chat_addrcount_new(&t), CHAT_OK);
	CHECK_EQ_INT(add(t, "192.0.2.1:5000", &s[0]), 1);
	CHECK_EQ_INT(add(t, "192.0.2.1:5001", &s[1]), 2);  /* same address, other port */
	CHECK_EQ_INT(add(t, "192.0.2.2:5000", &s[2]), 1);  /* next address */
	CHECK(s[0] == s[1] && s[0] != s[2]);
	/* One /64: the host part does not matter; another /64 does. */
	CHECK_EQ_INT(add(t, "[2001:db8:1:2::1]:7", &s[3]), 1);
	CHECK_EQ_INT(add(t, "[2001:db8:1:2:ffff:1:2:3%eth0]:8", &s[4]), 2);
	CHECK_EQ_INT(add(t, "[2001:db8:1:3::1]:7", &s[5]), 1);
	/* IPv4-mapped counts as the IPv4 address. */
	CHECK_EQ_INT(add(t, "[::ffff:192.0.2.1]:9", &s[6]), 3);
	/* Text of another transport: without the port. */
	CHECK_EQ_INT(add(t, "pipe-x:1", &s[7]), 1);
	CHECK_EQ_INT(add(t, "pipe-x:2", &s[7]), 2);
	CHECK_EQ_INT(chat_addrcount_entries(t), 5);

	chat_addrcount_release(t, s[0]);
	chat_addrcount_release(t, s[1]);
	CHECK_EQ_INT(add(t, "192.0.2.1:1", &s[0]), 2); /* the mapped one is still counted */
	chat_addrcount_release(t, s[0]);
	chat_addrcount_release(t, s[6]);
	CHECK_EQ_INT(chat_addrcount_entries(t), 4);
	chat_addrcount_release(t, CHAT_ADDRCOUNT_NONE); /* harmless */
	chat_addrcount_release(t, s[6]);                /* already gone: harmless */
	CHECK_EQ_INT(chat_addrcount_entries(t), 4);
	chat_addrcount_free(t);

	char d[80];
	chat_addrcount_describe("192.0.2.1:5000", sizeof(d), d);
	CHECK_STR_CONTAINS(d, "192.0.2.1");
	CHECK(strchr(d, ':') == NULL);
	chat_addrcount_describe("[2001:db8:1:2:ffff:1:2:3%eth0]:8", sizeof(d), d);
	CHECK(strcmp(d, "2001:db8:1:2::/64") == 0);
	chat_addrcount_describe("[::ffff:10.0.0.1]:8", sizeof(d), d);
	CHECK(strcmp(d, "10.0.0.1") == 0);
	chat_addrcount_describe("pipe-x:1", sizeof(d), d);
	CHECK(strcmp(d, "pipe-x") == 0);
}

/* 100,000 addresses in, every count right, all out, again: the table grows,
 * reuses its entries and its index stays consistent through deletions. */
static void test_many(void)
{
	enum { N = 100000 };
	static uint32_t slots[N];
	struct chat_addrcount *t;
	char peer[64];

	CHECK_EQ_INT(chat_addrcount_new(&t), CHAT_OK);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < N; i++) {
			snprintf(peer, sizeof(peer), "10.%d.%d.%d:1", i >> 16, (i >> 8) & 255, i & 255);
			if (add(t, peer, &slots[i]) != 1)
				break;
		}
		CHECK_EQ_INT(chat_addrcount_entries(t), N);
		/* Every other one out, then each is counted again. */
		for (int i = 0; i < N; i += 2)
			chat_addrcount_release(t, slots[i]);
		CHECK_EQ_INT(chat_addrcount_entries(t), N / 2);
		int bad = 0;
		for (int i = 0; i < N; i++) {
			uint32_t s;
			snprintf(peer, sizeof(peer), "10.%d.%d.%d:2", i >> 16, (i >> 8) & 255, i & 255);
			bad += add(t, peer, &s) != (uint32_t)(i % 2 ? 2 : 1);
			if (i % 2)
				chat_addrcount_release(t, s);
			else
				slots[i] = s;
		}
		CHECK_EQ_INT(bad, 0);
		for (int i = 0; i < N; i++)
			chat_addrcount_release(t, slots[i]);
		CHECK_EQ_INT(chat_addrcount_entries(t), 0);
	}
	chat_addrcount_free(t);
}

int main(void)
{
	test_keys();
	test_many();
	return test_done("test_addrcount");
}
