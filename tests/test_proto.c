/* The relay protocol codec: every message type round-trips through the
 * builder and the parser; every kind of malformed input is rejected with a
 * message saying what is wrong; iterators read validated lists. */
#include <string.h>

#include "proto.h"
#include "testutils.h"

static struct chat_wbuf wb;

static void start(int type)
{
	chat_wbuf_reset(&wb);
	chat_put_u8(&wb, (unsigned)type);
}

static int parse(struct chat_msg *m, char *err, size_t errlen)
{
	CHECK_EQ_INT(wb.err, 0);
	return chat_msg_parse(wb.len, wb.data, m, errlen, err);
}

static void expect_bad(const char *phrase)
{
	struct chat_msg m;
	char err[256];

	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_ERR_MALFORMED);
	CHECK_STR_CONTAINS(err, phrase);
}

static void test_round_trips(void)
{
	struct chat_msg m;
	char err[256];
	const char suites[2][CHAT_NAME_MAX + 1] = { "aescbc-hmac", "rc4dh" };

	start(CHAT_MSG_HELLO);
	chat_put_u8(&wb, 1);
	chat_put_suites(&wb, 2, suites);
	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_OK);
	CHECK_EQ_INT(m.type, CHAT_MSG_HELLO);
	CHECK_EQ_INT(m.version, 1);
	CHECK_EQ_INT(m.nsuites, 2);
	CHECK(!strcmp(m.suites[0], "aescbc-hmac") && !strcmp(m.suites[1], "rc4dh"));

	start(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, "alice");
	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_OK);
	CHECK(!strcmp(m.name, "alice"));

	start(CHAT_MSG_ANSWER);
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 1);
	chat_put_str8(&wb, "rc4dh");
	chat_put_str16(&wb, "");
	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_OK);
	CHECK(m.flag == 1 && !strcmp(m.suite, "rc4dh"));

	start(CHAT_MSG_ANSWER); /* a rejection has no suite, and a reason */
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 0);
	chat_put_str8(&wb, "");
	chat_put_str16(&wb, "busy");
	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_OK);
	CHECK(m.flag == 0 && !strcmp(m.text, "busy"));

	uint8_t payload[3000];
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)i;
	start(CHAT_MSG_ROUTE);
	chat_put_str8(&wb, "bob");
	chat_put_bytes(&wb, sizeof(payload), payload);
	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_OK);
	CHECK_EQ_INT(m.payload_len, sizeof(payload));
	CHECK(m.payload && !memcmp(m.payload, payload, sizeof(payload)));

	start(CHAT_MSG_ROUTE); /* an empty payload is legal at this layer */
	chat_put_str8(&wb, "bob");
	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_OK);
	CHECK_EQ_INT(m.payload_len, 0);

	start(CHAT_MSG_ROOM_SEND);
	chat_put_str8(&wb, "lobby");
	chat_put_u16(&wb, 2);
	chat_put_str8(&wb, "bob");
	chat_put_u32(&wb, 3);
	chat_put_bytes(&wb, 3, (const uint8_t *)"abc");
	chat_put_str8(&wb, "carol");
	chat_put_u32(&wb, 0);
	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_OK);
	struct chat_iter it = m.list;
	char name[CHAT_NAME_MAX + 1];
	const uint8_t *p;
	size_t len;
	CHECK(chat_iter_target(&it, name, &p, &len) && !strcmp(name, "bob") && len == 3 && !memcmp(p, "abc", 3));
	CHECK(chat_iter_target(&it, name, &p, &len) && !strcmp(name, "carol") && len == 0);
	CHECK(!chat_iter_target(&it, name, &p, &len));

	start(CHAT_MSG_WHO_LIST);
	chat_put_u16(&wb, 2);
	chat_put_str8(&wb, "alice");
	chat_put_suites(&wb, 2, suites);
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 0);
	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_OK);
	char got[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	size_t n;
	it = m.list;
	CHECK(chat_iter_who(&it, name, &n, got) && !strcmp(name, "alice") && n == 2 && !strcmp(got[1], "rc4dh"));
	CHECK(chat_iter_who(&it, name, &n, got) && !strcmp(name, "bob") && n == 0);
	CHECK(!chat_iter_who(&it, name, &n, got));

	start(CHAT_MSG_ROOM_LIST);
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "lobby");
	chat_put_u16(&wb, 300);
	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_OK);
	unsigned members = 0;
	it = m.list;
	CHECK(chat_iter_room(&it, name, &members) && !strcmp(name, "lobby") && members == 300);

	start(CHAT_MSG_ERROR);
	chat_put_u16(&wb, CHAT_PERR_NOT_CONNECTED);
	chat_put_u8(&wb, CHAT_MSG_TALK);
	chat_put_str8(&wb, "bob");
	chat_put_str16(&wb, "bob is not connected");
	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_OK);
	CHECK(m.code == CHAT_PERR_NOT_CONNECTED && m.ref == CHAT_MSG_TALK && !strcmp(m.text, "bob is not connected"));

	start(CHAT_MSG_ROOM_EVENT);
	chat_put_str8(&wb, "lobby");
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 2);
	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_OK);
	CHECK(m.flag == 2 && !strcmp(m.room, "lobby"));

	start(CHAT_MSG_WHO);
	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_OK);
	start(CHAT_MSG_BYE);
	chat_put_str16(&wb, "relay shutting down");
	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_OK);
	CHECK(!strcmp(m.text, "relay shutting down"));
}

static void test_malformed(void)
{
	struct chat_msg m;
	char err[256];

	CHECK_EQ_INT(chat_msg_parse(0, (const uint8_t *)"", &m, sizeof(err), err), CHAT_ERR_MALFORMED);
	CHECK_STR_CONTAINS(err, "empty frame");

	start(0x42);
	expect_bad("unknown message type 0x42");

	start(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, "Bob!");
	expect_bad("LOGIN: name 'Bob!' must start with a lowercase letter or a digit");
	start(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, "bob smith");
	expect_bad("may contain only a-z, 0-9");
	start(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, "");
	expect_bad("is empty");
	start(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, "abcdefghijabcdefghijabcdefghijabc");
	expect_bad("at most 32 allowed");
	start(CHAT_MSG_LOGIN);
	chat_put_u8(&wb, 10);
	chat_put_bytes(&wb, 3, (const uint8_t *)"bob");
	expect_bad("runs past the end");
	start(CHAT_MSG_LOGIN);
	chat_put_u8(&wb, 3);
	chat_put_bytes(&wb, 3, (const uint8_t *)"b\0b");
	expect_bad("NUL byte");
	start(CHAT_MSG_LOGIN);
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 0);
	expect_bad("1 unexpected bytes after the message");
	start(CHAT_MSG_LOGIN);
	expect_bad("truncated before name");

	start(CHAT_MSG_HELLO);
	chat_put_u8(&wb, 1);
	chat_put_u8(&wb, 0);
	expect_bad("no suite listed");
	start(CHAT_MSG_HELLO);
	chat_put_u8(&wb, 1);
	chat_put_u8(&wb, 17);
	expect_bad("17 suites listed, at most 16 allowed");
	start(CHAT_MSG_HELLO);
	chat_put_u8(&wb, 1);
	chat_put_u8(&wb, 2);
	chat_put_str8(&wb, "rc4dh");
	chat_put_str8(&wb, "rc4dh");
	expect_bad("suite 'rc4dh' listed twice");
	start(CHAT_MSG_HELLO);
	chat_put_u8(&wb, 1);
	chat_put_u8(&wb, 1);
	chat_put_str8(&wb, "RC4");
	expect_bad("'RC4' is not a suite name");

	start(CHAT_MSG_ANSWER);
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 7);
	expect_bad("accept flag 7 is not 0 or 1");
	start(CHAT_MSG_ANSWER); /* acceptance must name a suite */
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 1);
	chat_put_str8(&wb, "");
	chat_put_str16(&wb, "");
	expect_bad("is not a suite name");

	start(CHAT_MSG_ROOM_SEND); /* count claims more entries than present */
	chat_put_str8(&wb, "lobby");
	chat_put_u16(&wb, 3);
	chat_put_str8(&wb, "bob");
	chat_put_u32(&wb, 0);
	expect_bad("truncated before recipient");
	start(CHAT_MSG_ROOM_SEND); /* a payload length past the end */
	chat_put_str8(&wb, "lobby");
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "bob");
	chat_put_u32(&wb, 0xffffffffu);
	expect_bad("runs past the end");

	start(CHAT_MSG_ROOM_EVENT);
	chat_put_str8(&wb, "lobby");
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 3);
	expect_bad("event 3");

	start(CHAT_MSG_ERROR);
	chat_put_u16(&wb, 1);
	chat_put_u8(&wb, 1);
	chat_put_str8(&wb, "");
	chat_put_u16(&wb, 600);
	expect_bad("runs past the end");
}

/* Every truncation of a valid message is rejected, never read past its end. */
static void test_truncations(void)
{
	const char suites[1][CHAT_NAME_MAX + 1] = { "rc4dh" };
	struct chat_msg m;
	char err[256];

	start(CHAT_MSG_ANSWERED);
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 1);
	chat_put_str8(&wb, "rc4dh");
	chat_put_suites(&wb, 1, suites);
	chat_put_str16(&wb, "ok");
	size_t full = wb.len;
	CHECK_EQ_INT(chat_msg_parse(full, wb.data, &m, sizeof(err), err), CHAT_OK);
	for (size_t cut = 1; cut < full; cut++) {
		uint8_t *copy = malloc(cut); /* exact size: ASan catches an overread */
		memcpy(copy, wb.data, cut);
		CHECK_EQ_INT(chat_msg_parse(cut, copy, &m, sizeof(err), err), CHAT_ERR_MALFORMED);
		free(copy);
	}
}

/* Random bytes: never a crash, always OK or MALFORMED. */
static void test_random(void)
{
	struct chat_msg m;
	uint8_t buf[300];

	test_srand(7);
	for (int i = 0; i < 200000; i++) {
		size_t len = 1 + test_rand() % sizeof(buf);
		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)test_rand();
		if (i % 3 == 0)
			buf[0] = (uint8_t)(1 + test_rand() % 0x0b);
		else if (i % 3 == 1)
			buf[0] = (uint8_t)(0x81 + test_rand() % 0x0d);
		int rc = chat_msg_parse(len, buf, &m, 0, NULL);
		CHECK(rc == CHAT_OK || rc == CHAT_ERR_MALFORMED);
		if (rc == CHAT_OK && m.list.count) { /* validated lists iterate to their end */
			struct chat_iter it = m.list;
			char name[CHAT_NAME_MAX + 1], s[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
			size_t n;
			const uint8_t *p;
			unsigned k;
			while (m.type == CHAT_MSG_ROOM_SEND ? chat_iter_target(&it, name, &p, &n) :
			       m.type == CHAT_MSG_ROOM_LIST ? chat_iter_room(&it, name, &k) :
			       chat_iter_who(&it, name, &n, s))
				;
			CHECK_EQ_INT(it.left, 0);
		}
	}
}

static void test_builder_limits(void)
{
	struct chat_wbuf small;
	uint8_t big[1000] = { 0 };

	chat_wbuf_init(&small, 100);
	chat_put_bytes(&small, sizeof(big), big);
	CHECK_EQ_INT(small.err, CHAT_ERR_TOO_BIG);
	chat_put_u8(&small, 1); /* errors stick */
	CHECK_EQ_INT(small.err, CHAT_ERR_TOO_BIG);
	chat_wbuf_free(&small);

	chat_wbuf_init(&small, 1 << 20);
	for (int i = 0; i < 5000; i++) /* grows past the inline buffer */
		chat_put_u32(&small, (uint32_t)i);
	CHECK_EQ_INT(small.err, 0);
	CHECK_EQ_INT(small.len, 20000);
	CHECK(small.data[19999] == (uint8_t)4999);
	chat_wbuf_free(&small);
	CHECK(chat_name_check(5, "alice") == NULL);
	CHECK(chat_name_check(6, "a.b_c-") == NULL);
	CHECK(chat_name_check(4, "_bob") != NULL);
	CHECK(chat_name_check(5, "Alice") != NULL);
}

int main(void)
{
	chat_wbuf_init(&wb, 1 << 20);
	test_round_trips();
	test_malformed();
	test_truncations();
	test_random();
	test_builder_limits();
	chat_wbuf_free(&wb);
	return test_done("test_proto");
}
