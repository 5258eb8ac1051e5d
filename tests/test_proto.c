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

/* The message in wb parses; every cut before byte `fixed` is malformed
 * (parsed from an exact-size copy, so ASan catches an overread); if the
 * message has no `rest` field (fixed == wb.len), a trailing byte is too. */
static void expect_strict(struct chat_msg *m, size_t fixed)
{
	char err[256];

	CHECK_EQ_INT(parse(m, err, sizeof(err)), CHAT_OK);
	if (err[0])
		fprintf(stderr, "unexpected error: %s\n", err);
	for (size_t cut = 1; cut < fixed; cut++) {
		struct chat_msg t;
		uint8_t *copy = malloc(cut);
		memcpy(copy, wb.data, cut);
		if (chat_msg_parse(cut, copy, &t, sizeof(err), err) != CHAT_ERR_MALFORMED) {
			fprintf(stderr, "%s cut at %zu of %zu parsed\n", chat_msg_type_name(wb.data[0]), cut,
			        wb.len);
			CHECK(0);
		}
		free(copy);
	}
	if (fixed == wb.len) {
		struct chat_msg t;
		uint8_t *copy = malloc(wb.len + 1);
		memcpy(copy, wb.data, wb.len);
		copy[wb.len] = 0;
		CHECK_EQ_INT(chat_msg_parse(wb.len + 1, copy, &t, sizeof(err), err), CHAT_ERR_MALFORMED);
		CHECK_STR_CONTAINS(err, "1 unexpected bytes after the message");
		free(copy);
	}
}

/* A verifier whose salt has every kind of byte, NUL included. */
static void make_verifier(struct chat_scram_verifier *v, size_t salt_len, unsigned iterations)
{
	memset(v, 0, sizeof(*v));
	for (size_t i = 0; i < salt_len && i < sizeof(v->salt); i++)
		v->salt[i] = (uint8_t)(i * 37);
	v->salt_len = salt_len;
	v->iterations = iterations;
	for (int i = 0; i < CHAT_SCRAM_KEY; i++) {
		v->stored_key[i] = (uint8_t)(0xa0 + i);
		v->server_key[i] = (uint8_t)(0x10 + i);
	}
}

static int same_verifier(const struct chat_scram_verifier *a, const struct chat_scram_verifier *b)
{
	return a->salt_len == b->salt_len && !memcmp(a->salt, b->salt, a->salt_len) &&
	       a->iterations == b->iterations &&
	       !memcmp(a->stored_key, b->stored_key, CHAT_SCRAM_KEY) &&
	       !memcmp(a->server_key, b->server_key, CHAT_SCRAM_KEY);
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
	chat_put_u16(&wb, 3);
	chat_put_str8(&wb, "alice");
	chat_put_suites(&wb, 2, suites);
	chat_put_u8(&wb, CHAT_WHO_FRIEND | CHAT_WHO_REGISTERED);
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 0);
	chat_put_u8(&wb, 0);
	chat_put_str8(&wb, "carol");
	chat_put_suites(&wb, 1, suites + 1);
	chat_put_u8(&wb, CHAT_WHO_REGISTERED);
	expect_strict(&m, wb.len);
	CHECK_EQ_INT(m.list.type, CHAT_MSG_WHO_LIST);
	char got[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	size_t n;
	unsigned flags = 99;
	it = m.list; /* chat_iter_who skips the flags */
	CHECK(chat_iter_who(&it, name, &n, got) && !strcmp(name, "alice") && n == 2 && !strcmp(got[1], "rc4dh"));
	CHECK(chat_iter_who(&it, name, &n, got) && !strcmp(name, "bob") && n == 0);
	CHECK(chat_iter_who(&it, name, &n, got) && !strcmp(name, "carol") && n == 1 && !strcmp(got[0], "rc4dh"));
	CHECK(!chat_iter_who(&it, name, &n, got));
	CHECK_EQ_INT(it.left, 0);
	it = m.list;
	CHECK(chat_iter_who_flags(&it, name, &n, got, &flags) && !strcmp(name, "alice") && n == 2);
	CHECK_EQ_INT(flags, CHAT_WHO_FRIEND | CHAT_WHO_REGISTERED);
	CHECK(chat_iter_who_flags(&it, name, &n, got, &flags) && !strcmp(name, "bob") && n == 0);
	CHECK_EQ_INT(flags, 0);
	CHECK(chat_iter_who_flags(&it, name, &n, got, NULL) && !strcmp(name, "carol"));
	CHECK(!chat_iter_who_flags(&it, name, &n, got, &flags));
	CHECK_EQ_INT(it.left, 0);

	start(CHAT_MSG_MEMBERS); /* MEMBERS entries have no flags */
	chat_put_str8(&wb, "lobby");
	chat_put_u16(&wb, 2);
	chat_put_str8(&wb, "alice");
	chat_put_suites(&wb, 2, suites);
	chat_put_str8(&wb, "bob");
	chat_put_suites(&wb, 1, suites);
	expect_strict(&m, wb.len);
	CHECK(!strcmp(m.room, "lobby"));
	CHECK_EQ_INT(m.list.type, CHAT_MSG_MEMBERS);
	it = m.list;
	flags = 99;
	CHECK(chat_iter_who_flags(&it, name, &n, got, &flags) && !strcmp(name, "alice") && n == 2);
	CHECK_EQ_INT(flags, 0);
	CHECK(chat_iter_who(&it, name, &n, got) && !strcmp(name, "bob") && n == 1 && !strcmp(got[0], "aescbc-hmac"));
	CHECK(!chat_iter_who(&it, name, &n, got));
	CHECK_EQ_INT(it.left, 0);

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
	chat_put_u64(&wb, 0);
	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_OK);
	CHECK(m.code == CHAT_PERR_NOT_CONNECTED && m.ref == CHAT_MSG_TALK && !strcmp(m.text, "bob is not connected"));

	/* A refused SEND names the client id it refuses. */
	start(CHAT_MSG_ERROR);
	chat_put_u16(&wb, CHAT_PERR_QUEUE_FULL);
	chat_put_u8(&wb, CHAT_MSG_SEND);
	chat_put_str8(&wb, "bob");
	chat_put_str16(&wb, "bob's queue is full");
	chat_put_u64(&wb, 77);
	CHECK_EQ_INT(parse(&m, err, sizeof(err)), CHAT_OK);
	CHECK(m.code == CHAT_PERR_QUEUE_FULL && m.ref == CHAT_MSG_SEND && m.id == 77);
	start(CHAT_MSG_ERROR);
	chat_put_u16(&wb, CHAT_PERR_QUEUE_FULL);
	chat_put_u8(&wb, CHAT_MSG_SEND);
	chat_put_str8(&wb, "bob");
	chat_put_str16(&wb, "bob's queue is full");
	chat_put_u32(&wb, 77);
	expect_bad("client id");

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

static void test_auth(void)
{
	struct chat_msg m;
	const char *cf = "n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL";
	const char *sf = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";

	start(CHAT_MSG_AUTH);
	chat_put_u8(&wb, CHAT_AUTH_LOGIN);
	chat_put_str16(&wb, cf);
	expect_strict(&m, wb.len);
	CHECK(m.type == CHAT_MSG_AUTH && m.op == CHAT_AUTH_LOGIN && !strcmp(m.text, cf));
	CHECK(!m.has_verifier && m.id == 0);

	start(CHAT_MSG_AUTH);
	chat_put_u8(&wb, CHAT_AUTH_PASSWD);
	chat_put_str16(&wb, cf);
	expect_strict(&m, wb.len);
	CHECK_EQ_INT(m.op, CHAT_AUTH_PASSWD);

	start(CHAT_MSG_AUTH_CHALLENGE);
	chat_put_str16(&wb, sf);
	expect_strict(&m, wb.len);
	CHECK(m.type == CHAT_MSG_AUTH_CHALLENGE && !strcmp(m.text, sf));

	start(CHAT_MSG_AUTH_FINAL);
	chat_put_str16(&wb, "c=biws,r=abc,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
	expect_strict(&m, wb.len);
	CHECK(m.type == CHAT_MSG_AUTH_FINAL && !strcmp(m.text, "c=biws,r=abc,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));

	start(CHAT_MSG_AUTH_OK);
	chat_put_u8(&wb, CHAT_AUTH_PASSWD);
	chat_put_str16(&wb, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
	expect_strict(&m, wb.len);
	CHECK(m.op == CHAT_AUTH_PASSWD && !strcmp(m.text, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="));

	/* the longest SCRAM text fits, one more byte does not */
	char big[CHAT_TEXT_MAX + 2];
	memset(big, 'x', sizeof(big));
	big[CHAT_TEXT_MAX] = '\0';
	start(CHAT_MSG_AUTH_FINAL);
	chat_put_str16(&wb, big);
	expect_strict(&m, wb.len);
	CHECK_EQ_INT(strlen(m.text), CHAT_TEXT_MAX);
	start(CHAT_MSG_AUTH_FINAL);
	chat_put_u16(&wb, CHAT_TEXT_MAX + 1);
	chat_put_bytes(&wb, CHAT_TEXT_MAX + 1, (const uint8_t *)big);
	expect_bad("AUTH_FINAL: client-final is 513 bytes, at most 512 allowed");

	/* malformed */
	start(CHAT_MSG_AUTH);
	chat_put_u8(&wb, 0);
	chat_put_str16(&wb, cf);
	expect_bad("AUTH: op 0 is not 1 (login) or 2 (passwd)");
	start(CHAT_MSG_AUTH);
	chat_put_u8(&wb, 3);
	chat_put_str16(&wb, cf);
	expect_bad("AUTH: op 3 is not");
	start(CHAT_MSG_AUTH);
	chat_put_u8(&wb, 1);
	chat_put_str16(&wb, "");
	expect_bad("AUTH: client-first is empty");
	start(CHAT_MSG_AUTH);
	chat_put_u8(&wb, 1);
	chat_put_str16(&wb, "n,,n=al ice,r=x");
	expect_bad("AUTH: client-first has byte 0x20 at offset 7, not printable ASCII");
	start(CHAT_MSG_AUTH);
	chat_put_u8(&wb, 1);
	chat_put_str16(&wb, "n,,n=alice,r=\x7f");
	expect_bad("byte 0x7f at offset 13");
	start(CHAT_MSG_AUTH);
	chat_put_u8(&wb, 1);
	chat_put_str16(&wb, "n,,n=\xc3\xa9");
	expect_bad("byte 0xc3");
	start(CHAT_MSG_AUTH);
	chat_put_u8(&wb, 1);
	chat_put_str16(&wb, "n,,\tn=a");
	expect_bad("byte 0x09");
	start(CHAT_MSG_AUTH);
	chat_put_u8(&wb, 1);
	chat_put_u16(&wb, 3);
	chat_put_bytes(&wb, 3, (const uint8_t *)"n\0n");
	expect_bad("AUTH: client-first contains a NUL byte");
	start(CHAT_MSG_AUTH);
	expect_bad("AUTH: truncated before op");
	start(CHAT_MSG_AUTH_FINAL);
	chat_put_str16(&wb, "");
	expect_bad("AUTH_FINAL: client-final is empty");
	start(CHAT_MSG_AUTH_FINAL);
	chat_put_str16(&wb, "p=\x01");
	expect_bad("AUTH_FINAL: client-final has byte 0x01");
	start(CHAT_MSG_AUTH_CHALLENGE);
	chat_put_str16(&wb, "");
	expect_bad("AUTH_CHALLENGE: server-first is empty");
	start(CHAT_MSG_AUTH_CHALLENGE);
	chat_put_str16(&wb, "r=a b");
	expect_bad("AUTH_CHALLENGE: server-first has byte 0x20");
	start(CHAT_MSG_AUTH_OK);
	chat_put_u8(&wb, 1);
	chat_put_str16(&wb, "");
	expect_bad("AUTH_OK: server-final is empty");
	start(CHAT_MSG_AUTH_OK);
	chat_put_u8(&wb, 9);
	chat_put_str16(&wb, "v=x");
	expect_bad("AUTH_OK: op 9 is not");
	start(CHAT_MSG_AUTH_OK);
	chat_put_u8(&wb, 1);
	chat_put_str16(&wb, "v=\x80");
	expect_bad("AUTH_OK: server-final has byte 0x80");
}

/* REGISTER, PASSWD, ADMIN, FRIEND and the verifier field. */
static void test_accounts(void)
{
	struct chat_msg m;
	struct chat_scram_verifier v, w;

	make_verifier(&v, 16, CHAT_SCRAM_MIN_ITER);
	start(CHAT_MSG_REGISTER);
	chat_put_str8(&wb, "alice");
	chat_put_verifier(&wb, &v);
	CHECK_EQ_INT(wb.len, 1 + 6 + 1 + 16 + 4 + 64);
	expect_strict(&m, wb.len);
	CHECK(m.type == CHAT_MSG_REGISTER && !strcmp(m.name, "alice"));
	CHECK(m.has_verifier && same_verifier(&m.verifier, &v));

	make_verifier(&v, 64, CHAT_ITER_MAX); /* the largest salt and count */
	start(CHAT_MSG_PASSWD);
	chat_put_verifier(&wb, &v);
	expect_strict(&m, wb.len);
	CHECK(m.type == CHAT_MSG_PASSWD && m.has_verifier && same_verifier(&m.verifier, &v));
	CHECK(m.verifier.salt[0] == 0); /* salts are binary */

	/* ADMIN: every op, with a name and a verifier where they belong */
	make_verifier(&v, 32, 100000);
	for (unsigned op = CHAT_ADMIN_USERS; op <= CHAT_ADMIN_DEMOTE; op++) {
		int with_v = op == CHAT_ADMIN_ADD || op == CHAT_ADMIN_RESET;
		start(CHAT_MSG_ADMIN);
		chat_put_u8(&wb, op);
		chat_put_str8(&wb, op == CHAT_ADMIN_USERS ? "" : "bob");
		if (with_v)
			chat_put_verifier(&wb, &v);
		expect_strict(&m, wb.len);
		CHECK_EQ_INT(m.op, op);
		CHECK(!strcmp(m.name, op == CHAT_ADMIN_USERS ? "" : "bob"));
		CHECK_EQ_INT(m.has_verifier, with_v);
		if (with_v)
			CHECK(same_verifier(&m.verifier, &v));
	}

	for (unsigned op = CHAT_FRIEND_OP_ADD; op <= CHAT_FRIEND_OP_LIST; op++) {
		start(CHAT_MSG_FRIEND);
		chat_put_u8(&wb, op);
		chat_put_str8(&wb, op == CHAT_FRIEND_OP_LIST ? "" : "carol");
		expect_strict(&m, wb.len);
		CHECK_EQ_INT(m.op, op);
		CHECK(!strcmp(m.name, op == CHAT_FRIEND_OP_LIST ? "" : "carol"));
	}

	/* verifier: salt bounds, iteration bounds, missing keys */
	make_verifier(&w, 15, CHAT_SCRAM_MIN_ITER);
	start(CHAT_MSG_PASSWD);
	chat_put_verifier(&wb, &w);
	expect_bad("PASSWD: salt is 15 bytes, 16 to 64 allowed");
	start(CHAT_MSG_PASSWD); /* 65 bytes cannot come from a struct: write it by hand */
	chat_put_u8(&wb, 65);
	for (int i = 0; i < 65 + 4 + 64; i++)
		chat_put_u8(&wb, 0x11);
	expect_bad("PASSWD: salt is 65 bytes, 16 to 64 allowed");
	start(CHAT_MSG_PASSWD);
	chat_put_u8(&wb, 0);
	expect_bad("PASSWD: salt is 0 bytes");
	start(CHAT_MSG_PASSWD);
	chat_put_u8(&wb, 40);
	chat_put_bytes(&wb, 10, v.salt);
	expect_bad("PASSWD: salt of 40 bytes runs past the end");
	make_verifier(&w, 16, CHAT_SCRAM_MIN_ITER - 1);
	start(CHAT_MSG_PASSWD);
	chat_put_verifier(&wb, &w);
	expect_bad("PASSWD: iterations 4095 out of range 4096..10000000");
	make_verifier(&w, 16, CHAT_ITER_MAX + 1);
	start(CHAT_MSG_PASSWD);
	chat_put_verifier(&wb, &w);
	expect_bad("PASSWD: iterations 10000001 out of range");
	make_verifier(&w, 16, 0xffffffffu);
	start(CHAT_MSG_REGISTER);
	chat_put_str8(&wb, "alice");
	chat_put_verifier(&wb, &w);
	expect_bad("REGISTER: iterations 4294967295 out of range");
	make_verifier(&w, 16, 5000);
	start(CHAT_MSG_PASSWD);
	chat_put_u8(&wb, 16);
	chat_put_bytes(&wb, 16, w.salt);
	chat_put_u32(&wb, 5000);
	chat_put_bytes(&wb, 20, w.stored_key);
	expect_bad("PASSWD: truncated before stored key");
	start(CHAT_MSG_PASSWD);
	chat_put_u8(&wb, 16);
	chat_put_bytes(&wb, 16, w.salt);
	chat_put_u32(&wb, 5000);
	chat_put_bytes(&wb, 32, w.stored_key);
	chat_put_bytes(&wb, 31, w.server_key);
	expect_bad("PASSWD: truncated before server key");
	start(CHAT_MSG_PASSWD);
	expect_bad("PASSWD: truncated before salt length");

	/* REGISTER names */
	make_verifier(&w, 16, 5000);
	start(CHAT_MSG_REGISTER);
	chat_put_str8(&wb, "");
	chat_put_verifier(&wb, &w);
	expect_bad("REGISTER: name '' is empty");
	start(CHAT_MSG_REGISTER);
	chat_put_str8(&wb, "Alice");
	chat_put_verifier(&wb, &w);
	expect_bad("REGISTER: name 'Alice' must start with");
	start(CHAT_MSG_REGISTER);
	chat_put_str8(&wb, "alice");
	expect_bad("REGISTER: truncated before salt length");

	/* ADMIN ops, names and verifiers */
	start(CHAT_MSG_ADMIN);
	chat_put_u8(&wb, 0);
	chat_put_str8(&wb, "bob");
	expect_bad("ADMIN: op 0 is not an admin operation (1..6)");
	start(CHAT_MSG_ADMIN);
	chat_put_u8(&wb, 7);
	chat_put_str8(&wb, "bob");
	expect_bad("ADMIN: op 7 is not");
	start(CHAT_MSG_ADMIN);
	chat_put_u8(&wb, CHAT_ADMIN_USERS);
	chat_put_str8(&wb, "bob");
	expect_bad("ADMIN: name 'bob' given for op 1 (users)");
	start(CHAT_MSG_ADMIN);
	chat_put_u8(&wb, CHAT_ADMIN_REMOVE);
	chat_put_str8(&wb, "");
	expect_bad("ADMIN: name '' is empty");
	start(CHAT_MSG_ADMIN);
	chat_put_u8(&wb, CHAT_ADMIN_PROMOTE);
	chat_put_str8(&wb, "b/b");
	expect_bad("ADMIN: name 'b/b' may contain only");
	start(CHAT_MSG_ADMIN); /* ADD needs a verifier */
	chat_put_u8(&wb, CHAT_ADMIN_ADD);
	chat_put_str8(&wb, "bob");
	expect_bad("ADMIN: truncated before salt length");
	start(CHAT_MSG_ADMIN);
	chat_put_u8(&wb, CHAT_ADMIN_RESET);
	chat_put_str8(&wb, "bob");
	chat_put_verifier(&wb, &w);
	chat_put_u8(&wb, 1);
	expect_bad("ADMIN: 1 unexpected bytes");
	start(CHAT_MSG_ADMIN); /* and only ADD and RESET carry one */
	chat_put_u8(&wb, CHAT_ADMIN_DEMOTE);
	chat_put_str8(&wb, "bob");
	chat_put_verifier(&wb, &w);
	expect_bad("ADMIN: 85 unexpected bytes after the message");
	start(CHAT_MSG_ADMIN);
	chat_put_u8(&wb, CHAT_ADMIN_USERS);
	expect_bad("ADMIN: truncated before name");

	/* FRIEND */
	start(CHAT_MSG_FRIEND);
	chat_put_u8(&wb, 0);
	chat_put_str8(&wb, "bob");
	expect_bad("FRIEND: op 0 is not 1 (add), 2 (remove) or 3 (list)");
	start(CHAT_MSG_FRIEND);
	chat_put_u8(&wb, 4);
	chat_put_str8(&wb, "bob");
	expect_bad("FRIEND: op 4 is not");
	start(CHAT_MSG_FRIEND);
	chat_put_u8(&wb, CHAT_FRIEND_OP_ADD);
	chat_put_str8(&wb, "");
	expect_bad("FRIEND: name '' is empty");
	start(CHAT_MSG_FRIEND);
	chat_put_u8(&wb, CHAT_FRIEND_OP_REMOVE);
	chat_put_str8(&wb, "-bob");
	expect_bad("FRIEND: name '-bob' must start with");
	start(CHAT_MSG_FRIEND);
	chat_put_u8(&wb, CHAT_FRIEND_OP_LIST);
	chat_put_str8(&wb, "bob");
	expect_bad("FRIEND: name 'bob' given for op 3 (list)");

	/* the builder refuses a verifier whose salt_len overflows its array */
	struct chat_wbuf b;
	chat_wbuf_init(&b, 1024);
	make_verifier(&w, 16, 5000);
	w.salt_len = sizeof(w.salt) + 1;
	chat_put_verifier(&b, &w);
	CHECK_EQ_INT(b.err, CHAT_ERR_INVALID);
	CHECK_EQ_INT(b.len, 0);
	chat_wbuf_free(&b);
}

/* LOGGED_IN, SEND, ACK, STORED, RECEIPT, MAIL, DONE, FRIEND_EVENT. */
static void test_mail(void)
{
	struct chat_msg m, inner;
	char err[256];
	const uint8_t payload[5] = { 0, 1, 2, 0xff, 0 };

	start(CHAT_MSG_LOGGED_IN);
	chat_put_str8(&wb, "alice");
	chat_put_u8(&wb, 2);
	chat_put_u64(&wb, 0x0102030405060708ull);
	CHECK_EQ_INT(wb.len, 1 + 6 + 1 + 8);
	CHECK(wb.data[8] == 1 && wb.data[15] == 8); /* big-endian */
	expect_strict(&m, wb.len);
	CHECK(!strcmp(m.name, "alice") && m.group == 2 && m.id == 0x0102030405060708ull);
	start(CHAT_MSG_LOGGED_IN);
	chat_put_str8(&wb, "guest7");
	chat_put_u8(&wb, 0);
	chat_put_u64(&wb, 0);
	expect_strict(&m, wb.len);
	CHECK(m.group == 0 && m.id == 0);
	start(CHAT_MSG_LOGGED_IN);
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 1);
	chat_put_u64(&wb, UINT64_MAX);
	expect_strict(&m, wb.len);
	CHECK(m.group == 1 && m.id == UINT64_MAX);

	start(CHAT_MSG_SEND);
	chat_put_str8(&wb, "bob");
	chat_put_u64(&wb, 42);
	size_t fixed = wb.len + 1; /* the payload must not be empty */
	chat_put_bytes(&wb, sizeof(payload), payload);
	expect_strict(&m, fixed);
	CHECK(!strcmp(m.name, "bob") && m.id == 42 && m.payload_len == sizeof(payload));
	CHECK(m.payload && !memcmp(m.payload, payload, sizeof(payload)));

	start(CHAT_MSG_ACK);
	chat_put_u64(&wb, 7);
	chat_put_u8(&wb, 0);
	chat_put_str16(&wb, "");
	expect_strict(&m, wb.len);
	CHECK(m.id == 7 && m.flag == 0 && !m.text[0]);
	start(CHAT_MSG_ACK);
	chat_put_u64(&wb, 8);
	chat_put_u8(&wb, 1);
	chat_put_str16(&wb, "integrity check failed");
	expect_strict(&m, wb.len);
	CHECK(m.id == 8 && m.flag == 1 && !strcmp(m.text, "integrity check failed"));

	for (unsigned st = CHAT_STORED_ONLINE; st <= CHAT_STORED_LIVE; st++) {
		start(CHAT_MSG_STORED);
		chat_put_str8(&wb, "bob");
		chat_put_u64(&wb, 42);
		chat_put_u64(&wb, 1000 + st);
		chat_put_u8(&wb, st);
		expect_strict(&m, wb.len);
		CHECK(!strcmp(m.name, "bob") && m.id == 42 && m.id2 == 1000 + st && m.flag == (int)st);
	}
	start(CHAT_MSG_STORED); /* live and duplicate may have no mail id */
	chat_put_str8(&wb, "bob");
	chat_put_u64(&wb, 42);
	chat_put_u64(&wb, 0);
	chat_put_u8(&wb, CHAT_STORED_LIVE);
	expect_strict(&m, wb.len);
	CHECK(m.id2 == 0 && m.flag == CHAT_STORED_LIVE);
	start(CHAT_MSG_STORED);
	chat_put_str8(&wb, "bob");
	chat_put_u64(&wb, 42);
	chat_put_u64(&wb, 0);
	chat_put_u8(&wb, CHAT_STORED_DUPLICATE);
	expect_strict(&m, wb.len);
	CHECK(m.id2 == 0 && m.flag == CHAT_STORED_DUPLICATE);

	for (unsigned st = CHAT_RECEIPT_DELIVERED; st <= CHAT_RECEIPT_REMOVED; st++) {
		start(CHAT_MSG_RECEIPT);
		chat_put_str8(&wb, "carol");
		chat_put_u64(&wb, 9);
		chat_put_u8(&wb, st);
		chat_put_str16(&wb, st == CHAT_RECEIPT_UNREADABLE ? "bad mac" : "");
		expect_strict(&m, wb.len);
		CHECK(!strcmp(m.name, "carol") && m.id == 9 && m.flag == (int)st);
		CHECK(!strcmp(m.text, st == CHAT_RECEIPT_UNREADABLE ? "bad mac" : ""));
	}

	for (unsigned ev = CHAT_FRIEND_EV_ASKS; ev <= CHAT_FRIEND_EV_REMOVED; ev++) {
		start(CHAT_MSG_FRIEND_EVENT);
		chat_put_str8(&wb, "dave");
		chat_put_u8(&wb, ev);
		expect_strict(&m, wb.len);
		CHECK(!strcmp(m.name, "dave") && m.flag == (int)ev);
	}

	start(CHAT_MSG_DONE);
	chat_put_u8(&wb, CHAT_MSG_ADMIN);
	chat_put_u8(&wb, CHAT_ADMIN_ADD);
	chat_put_str8(&wb, "bob");
	chat_put_str16(&wb, "account bob added");
	expect_strict(&m, wb.len);
	CHECK(m.ref == CHAT_MSG_ADMIN && m.op == CHAT_ADMIN_ADD && !strcmp(m.name, "bob"));
	CHECK(!strcmp(m.text, "account bob added"));
	start(CHAT_MSG_DONE);
	chat_put_u8(&wb, CHAT_MSG_PASSWD);
	chat_put_u8(&wb, 0);
	chat_put_str8(&wb, "");
	chat_put_str16(&wb, "");
	expect_strict(&m, wb.len);
	CHECK(m.ref == CHAT_MSG_PASSWD && m.op == 0 && !m.name[0] && !m.text[0]);

	/* MAIL around each type that may be queued; the inner message parses */
	static const int inner_types[] = { CHAT_MSG_DELIVER, CHAT_MSG_OFFERED, CHAT_MSG_ANSWERED,
	                                   CHAT_MSG_CLOSED, CHAT_MSG_RECEIPT, CHAT_MSG_FRIEND_EVENT };
	const char suites[1][CHAT_NAME_MAX + 1] = { "rc4dh" };
	for (size_t i = 0; i < sizeof(inner_types) / sizeof(inner_types[0]); i++) {
		start(CHAT_MSG_MAIL);
		chat_put_u64(&wb, 77);
		chat_put_u64(&wb, 1700000000123ull);
		size_t mail_fixed = wb.len + 1;
		chat_put_u8(&wb, (unsigned)inner_types[i]);
		switch (inner_types[i]) {
		case CHAT_MSG_DELIVER:
			chat_put_str8(&wb, "bob");
			chat_put_bytes(&wb, sizeof(payload), payload);
			break;
		case CHAT_MSG_OFFERED:
			chat_put_str8(&wb, "bob");
			chat_put_suites(&wb, 1, suites);
			break;
		case CHAT_MSG_ANSWERED:
			chat_put_str8(&wb, "bob");
			chat_put_u8(&wb, 0);
			chat_put_str8(&wb, "");
			chat_put_suites(&wb, 1, suites);
			chat_put_str16(&wb, "busy");
			break;
		case CHAT_MSG_CLOSED:
			chat_put_str8(&wb, "bob");
			break;
		case CHAT_MSG_RECEIPT:
			chat_put_str8(&wb, "bob");
			chat_put_u64(&wb, 3);
			chat_put_u8(&wb, CHAT_RECEIPT_EXPIRED);
			chat_put_str16(&wb, "");
			break;
		case CHAT_MSG_FRIEND_EVENT:
			chat_put_str8(&wb, "bob");
			chat_put_u8(&wb, CHAT_FRIEND_EV_ACCEPTED);
			break;
		}
		expect_strict(&m, mail_fixed);
		CHECK(m.type == CHAT_MSG_MAIL && m.id == 77 && m.time_ms == 1700000000123ll);
		CHECK(m.payload == wb.data + 17 && m.payload_len == wb.len - 17);
		CHECK_EQ_INT(chat_msg_parse(m.payload_len, m.payload, &inner, sizeof(err), err), CHAT_OK);
		CHECK_EQ_INT(inner.type, inner_types[i]);
		CHECK(!strcmp(inner.name, "bob"));
	}
	start(CHAT_MSG_MAIL); /* the latest representable time */
	chat_put_u64(&wb, UINT64_MAX);
	chat_put_u64(&wb, (uint64_t)INT64_MAX);
	chat_put_u8(&wb, CHAT_MSG_CLOSED);
	chat_put_str8(&wb, "bob");
	expect_strict(&m, 18);
	CHECK(m.id == UINT64_MAX && m.time_ms == INT64_MAX);

	/* malformed */
	start(CHAT_MSG_LOGGED_IN);
	chat_put_str8(&wb, "alice");
	chat_put_u8(&wb, 3);
	chat_put_u64(&wb, 0);
	expect_bad("LOGGED_IN: group 3 is not 0 (guest), 1 (regular) or 2 (admin)");
	start(CHAT_MSG_LOGGED_IN);
	chat_put_str8(&wb, "guest1");
	chat_put_u8(&wb, 0);
	chat_put_u64(&wb, 5);
	expect_bad("LOGGED_IN: last client id 5 given for a guest");
	start(CHAT_MSG_LOGGED_IN); /* the old format */
	chat_put_str8(&wb, "alice");
	expect_bad("LOGGED_IN: truncated before group");
	start(CHAT_MSG_LOGGED_IN);
	chat_put_str8(&wb, "alice");
	chat_put_u8(&wb, 1);
	chat_put_u32(&wb, 1);
	expect_bad("LOGGED_IN: truncated before last client id");

	start(CHAT_MSG_SEND);
	chat_put_str8(&wb, "bob");
	chat_put_u64(&wb, 42);
	expect_bad("SEND: payload is empty");
	start(CHAT_MSG_SEND);
	chat_put_str8(&wb, "bob");
	chat_put_u64(&wb, 0);
	chat_put_bytes(&wb, sizeof(payload), payload);
	expect_bad("SEND: client id is 0");
	start(CHAT_MSG_SEND);
	chat_put_str8(&wb, "");
	chat_put_u64(&wb, 1);
	chat_put_bytes(&wb, sizeof(payload), payload);
	expect_bad("SEND: name '' is empty");
	start(CHAT_MSG_SEND);
	chat_put_str8(&wb, "B");
	chat_put_u64(&wb, 1);
	chat_put_bytes(&wb, sizeof(payload), payload);
	expect_bad("SEND: name 'B' must start with");
	start(CHAT_MSG_SEND);
	chat_put_str8(&wb, "bob");
	chat_put_u16(&wb, 1);
	expect_bad("SEND: truncated before client id");

	start(CHAT_MSG_ACK);
	chat_put_u64(&wb, 7);
	chat_put_u8(&wb, 0);
	chat_put_str16(&wb, "why");
	expect_bad("ACK: reason given with flag 0 (processed)");
	start(CHAT_MSG_ACK);
	chat_put_u64(&wb, 7);
	chat_put_u8(&wb, 2);
	chat_put_str16(&wb, "");
	expect_bad("ACK: flag 2 is not 0 (processed) or 1 (unreadable)");
	start(CHAT_MSG_ACK);
	chat_put_u64(&wb, 0);
	chat_put_u8(&wb, 0);
	chat_put_str16(&wb, "");
	expect_bad("ACK: mail id is 0");
	start(CHAT_MSG_ACK);
	chat_put_u64(&wb, 7);
	chat_put_u8(&wb, 1);
	chat_put_u16(&wb, 2);
	chat_put_bytes(&wb, 2, (const uint8_t *)"a\0");
	expect_bad("ACK: reason contains a NUL byte");

	start(CHAT_MSG_STORED);
	chat_put_str8(&wb, "bob");
	chat_put_u64(&wb, 42);
	chat_put_u64(&wb, 0);
	chat_put_u8(&wb, CHAT_STORED_ONLINE);
	expect_bad("STORED: mail id is 0 with state 1");
	start(CHAT_MSG_STORED);
	chat_put_str8(&wb, "bob");
	chat_put_u64(&wb, 42);
	chat_put_u64(&wb, 0);
	chat_put_u8(&wb, CHAT_STORED_QUEUED);
	expect_bad("STORED: mail id is 0 with state 2");
	start(CHAT_MSG_STORED);
	chat_put_str8(&wb, "bob");
	chat_put_u64(&wb, 42);
	chat_put_u64(&wb, 1);
	chat_put_u8(&wb, 0);
	expect_bad("STORED: state 0 is not 1 (online)");
	start(CHAT_MSG_STORED);
	chat_put_str8(&wb, "bob");
	chat_put_u64(&wb, 42);
	chat_put_u64(&wb, 1);
	chat_put_u8(&wb, 5);
	expect_bad("STORED: state 5 is not");
	start(CHAT_MSG_STORED);
	chat_put_str8(&wb, "bob");
	chat_put_u64(&wb, 0);
	chat_put_u64(&wb, 1);
	chat_put_u8(&wb, 1);
	expect_bad("STORED: client id is 0");
	start(CHAT_MSG_STORED);
	chat_put_str8(&wb, "");
	chat_put_u64(&wb, 1);
	chat_put_u64(&wb, 1);
	chat_put_u8(&wb, 1);
	expect_bad("STORED: recipient '' is empty");

	start(CHAT_MSG_RECEIPT);
	chat_put_str8(&wb, "bob");
	chat_put_u64(&wb, 1);
	chat_put_u8(&wb, 0);
	chat_put_str16(&wb, "");
	expect_bad("RECEIPT: status 0 is not 1 (delivered)");
	start(CHAT_MSG_RECEIPT);
	chat_put_str8(&wb, "bob");
	chat_put_u64(&wb, 1);
	chat_put_u8(&wb, 5);
	chat_put_str16(&wb, "");
	expect_bad("RECEIPT: status 5 is not");
	start(CHAT_MSG_RECEIPT);
	chat_put_str8(&wb, "bob");
	chat_put_u64(&wb, 0);
	chat_put_u8(&wb, 1);
	chat_put_str16(&wb, "");
	expect_bad("RECEIPT: client id is 0");
	start(CHAT_MSG_RECEIPT);
	chat_put_str8(&wb, "bob!");
	chat_put_u64(&wb, 1);
	chat_put_u8(&wb, 1);
	chat_put_str16(&wb, "");
	expect_bad("RECEIPT: recipient 'bob!' may contain only");

	start(CHAT_MSG_FRIEND_EVENT);
	chat_put_str8(&wb, "dave");
	chat_put_u8(&wb, 0);
	expect_bad("FRIEND_EVENT: event 0 is not 1 (asks), 2 (accepted) or 3 (removed)");
	start(CHAT_MSG_FRIEND_EVENT);
	chat_put_str8(&wb, "dave");
	chat_put_u8(&wb, 4);
	expect_bad("FRIEND_EVENT: event 4 is not");
	start(CHAT_MSG_FRIEND_EVENT);
	chat_put_str8(&wb, "");
	chat_put_u8(&wb, 1);
	expect_bad("FRIEND_EVENT: name '' is empty");

	start(CHAT_MSG_DONE);
	chat_put_u8(&wb, CHAT_MSG_WELCOME);
	chat_put_u8(&wb, 0);
	chat_put_str8(&wb, "");
	chat_put_str16(&wb, "");
	expect_bad("DONE: request type 0x81 is not a client request");
	start(CHAT_MSG_DONE);
	chat_put_u8(&wb, 0);
	chat_put_u8(&wb, 0);
	chat_put_str8(&wb, "");
	chat_put_str16(&wb, "");
	expect_bad("DONE: request type 0x00 is not a client request");
	start(CHAT_MSG_DONE);
	chat_put_u8(&wb, 0x7f);
	chat_put_u8(&wb, 0);
	chat_put_str8(&wb, "");
	chat_put_str16(&wb, "");
	expect_bad("DONE: request type 0x7f is not a client request");
	start(CHAT_MSG_DONE);
	chat_put_u8(&wb, CHAT_MSG_FRIEND);
	chat_put_u8(&wb, 1);
	chat_put_str8(&wb, "Bob");
	chat_put_str16(&wb, "");
	expect_bad("DONE: subject 'Bob' must start with");

	start(CHAT_MSG_MAIL); /* no nesting */
	chat_put_u64(&wb, 1);
	chat_put_u64(&wb, 1);
	chat_put_u8(&wb, CHAT_MSG_MAIL);
	chat_put_u64(&wb, 2);
	chat_put_u64(&wb, 2);
	chat_put_u8(&wb, CHAT_MSG_CLOSED);
	chat_put_str8(&wb, "bob");
	expect_bad("MAIL: inner message type 0x96 (MAIL) cannot be mailed");
	start(CHAT_MSG_MAIL); /* a client->relay type */
	chat_put_u64(&wb, 1);
	chat_put_u64(&wb, 1);
	chat_put_u8(&wb, CHAT_MSG_SEND);
	chat_put_str8(&wb, "bob");
	chat_put_u64(&wb, 1);
	chat_put_u8(&wb, 0);
	expect_bad("MAIL: inner message type 0x12 (SEND) cannot be mailed");
	start(CHAT_MSG_MAIL);
	chat_put_u64(&wb, 1);
	chat_put_u64(&wb, 1);
	chat_put_u8(&wb, CHAT_MSG_ROUTE);
	chat_put_str8(&wb, "bob");
	expect_bad("MAIL: inner message type 0x06 (ROUTE) cannot be mailed");
	start(CHAT_MSG_MAIL); /* relay->client types that are not queued */
	chat_put_u64(&wb, 1);
	chat_put_u64(&wb, 1);
	chat_put_u8(&wb, CHAT_MSG_ERROR);
	expect_bad("MAIL: inner message type 0x8c (ERROR) cannot be mailed");
	start(CHAT_MSG_MAIL);
	chat_put_u64(&wb, 1);
	chat_put_u64(&wb, 1);
	chat_put_u8(&wb, 0xee);
	expect_bad("MAIL: inner message type 0xee (UNKNOWN) cannot be mailed");
	start(CHAT_MSG_MAIL);
	chat_put_u64(&wb, 1);
	chat_put_u64(&wb, 1);
	expect_bad("MAIL: inner message is empty");
	start(CHAT_MSG_MAIL);
	chat_put_u64(&wb, 0);
	chat_put_u64(&wb, 1);
	chat_put_u8(&wb, CHAT_MSG_CLOSED);
	chat_put_str8(&wb, "bob");
	expect_bad("MAIL: mail id is 0");
	start(CHAT_MSG_MAIL);
	chat_put_u64(&wb, 1);
	chat_put_u64(&wb, (uint64_t)INT64_MAX + 1);
	chat_put_u8(&wb, CHAT_MSG_CLOSED);
	chat_put_str8(&wb, "bob");
	expect_bad("MAIL: stored-at time 9223372036854775808 is out of range");
	start(CHAT_MSG_MAIL);
	chat_put_u64(&wb, 1);
	chat_put_u32(&wb, 1);
	expect_bad("MAIL: truncated before stored-at time");
}

/* USERS and FRIENDS lists, and the WHO_LIST flags. */
static void test_new_lists(void)
{
	struct chat_msg m;
	const char suites[2][CHAT_NAME_MAX + 1] = { "aescbc-hmac", "rc4dh" };
	char name[CHAT_NAME_MAX + 1], addr[CHAT_ADDR_MAX + 1];
	char got[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	char longaddr[CHAT_ADDR_MAX + 2];
	size_t n;
	unsigned group, state;
	int64_t since;
	int online;
	struct chat_iter it;

	memset(longaddr, '9', sizeof(longaddr));
	longaddr[CHAT_ADDR_MAX] = '\0';
	start(CHAT_MSG_USERS);
	chat_put_u16(&wb, 3);
	chat_put_str8(&wb, "alice");
	chat_put_u8(&wb, 2);
	chat_put_str8(&wb, "127.0.0.1:5555");
	chat_put_suites(&wb, 2, suites);
	chat_put_u64(&wb, 1700000000000ull);
	chat_put_str8(&wb, "guest3");
	chat_put_u8(&wb, 0);
	chat_put_str8(&wb, "[::1]:6000");
	chat_put_suites(&wb, 0, suites);
	chat_put_u64(&wb, 0);
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 1);
	chat_put_str8(&wb, longaddr);
	chat_put_suites(&wb, 1, suites + 1);
	chat_put_u64(&wb, (uint64_t)INT64_MAX);
	expect_strict(&m, wb.len);
	CHECK_EQ_INT(m.list.type, CHAT_MSG_USERS);
	CHECK_EQ_INT(m.list.count, 3);
	it = m.list;
	CHECK(chat_iter_user(&it, name, &group, addr, &n, got, &since));
	CHECK(!strcmp(name, "alice") && group == 2 && !strcmp(addr, "127.0.0.1:5555") && n == 2 &&
	      !strcmp(got[0], "aescbc-hmac") && !strcmp(got[1], "rc4dh") && since == 1700000000000ll);
	CHECK(chat_iter_user(&it, name, &group, addr, &n, got, &since));
	CHECK(!strcmp(name, "guest3") && group == 0 && !strcmp(addr, "[::1]:6000") && n == 0 && since == 0);
	CHECK(chat_iter_user(&it, name, &group, addr, &n, got, &since));
	CHECK(!strcmp(name, "bob") && group == 1 && !strcmp(addr, longaddr) && n == 1 && since == INT64_MAX);
	CHECK(!chat_iter_user(&it, name, &group, addr, &n, got, &since));
	CHECK_EQ_INT(it.left, 0);

	start(CHAT_MSG_USERS);
	chat_put_u16(&wb, 0);
	expect_strict(&m, wb.len);
	it = m.list;
	CHECK(!chat_iter_user(&it, name, &group, addr, &n, got, &since));

	start(CHAT_MSG_FRIENDS);
	chat_put_u16(&wb, 3);
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 1);
	chat_put_u8(&wb, 1);
	chat_put_str8(&wb, "carol");
	chat_put_u8(&wb, 2);
	chat_put_u8(&wb, 0);
	chat_put_str8(&wb, "dave");
	chat_put_u8(&wb, 3);
	chat_put_u8(&wb, 0);
	expect_strict(&m, wb.len);
	CHECK_EQ_INT(m.list.type, CHAT_MSG_FRIENDS);
	it = m.list;
	CHECK(chat_iter_friend(&it, name, &state, &online) && !strcmp(name, "bob") && state == 1 && online == 1);
	CHECK(chat_iter_friend(&it, name, &state, &online) && !strcmp(name, "carol") && state == 2 && online == 0);
	CHECK(chat_iter_friend(&it, name, &state, &online) && !strcmp(name, "dave") && state == 3 && online == 0);
	CHECK(!chat_iter_friend(&it, name, &state, &online));
	CHECK_EQ_INT(it.left, 0);

	/* malformed USERS */
	start(CHAT_MSG_USERS);
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "alice");
	chat_put_u8(&wb, 1);
	chat_put_str8(&wb, "");
	chat_put_suites(&wb, 0, suites);
	chat_put_u64(&wb, 0);
	expect_bad("USERS: address is empty");
	longaddr[CHAT_ADDR_MAX] = '9';
	longaddr[CHAT_ADDR_MAX + 1] = '\0';
	start(CHAT_MSG_USERS);
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "alice");
	chat_put_u8(&wb, 1);
	chat_put_str8(&wb, longaddr);
	chat_put_suites(&wb, 0, suites);
	chat_put_u64(&wb, 0);
	char why[80];
	snprintf(why, sizeof(why), "USERS: address is %d bytes, at most %d allowed", CHAT_ADDR_MAX + 1,
	         CHAT_ADDR_MAX);
	expect_bad(why);
	start(CHAT_MSG_USERS);
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "alice");
	chat_put_u8(&wb, 1);
	chat_put_str8(&wb, "10.0.0.1:1\n");
	chat_put_suites(&wb, 0, suites);
	chat_put_u64(&wb, 0);
	expect_bad("USERS: address has byte 0x0a at offset 10, not printable ASCII");
	start(CHAT_MSG_USERS);
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "alice");
	chat_put_u8(&wb, 3);
	chat_put_str8(&wb, "x");
	chat_put_suites(&wb, 0, suites);
	chat_put_u64(&wb, 0);
	expect_bad("USERS: group 3 is not");
	start(CHAT_MSG_USERS);
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "alice");
	chat_put_u8(&wb, 1);
	chat_put_str8(&wb, "x");
	chat_put_suites(&wb, 0, suites);
	chat_put_u64(&wb, UINT64_MAX);
	expect_bad("USERS: since 18446744073709551615 is out of range");
	start(CHAT_MSG_USERS);
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "Alice");
	expect_bad("USERS: user 'Alice' must start with");
	start(CHAT_MSG_USERS);
	chat_put_u16(&wb, 2);
	chat_put_str8(&wb, "alice");
	chat_put_u8(&wb, 1);
	chat_put_str8(&wb, "x");
	chat_put_suites(&wb, 0, suites);
	chat_put_u64(&wb, 0);
	expect_bad("USERS: truncated before user");

	/* malformed FRIENDS */
	start(CHAT_MSG_FRIENDS);
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 0);
	chat_put_u8(&wb, 0);
	expect_bad("FRIENDS: state 0 is not 1 (friends), 2 (you asked) or 3 (they asked)");
	start(CHAT_MSG_FRIENDS);
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 4);
	chat_put_u8(&wb, 0);
	expect_bad("FRIENDS: state 4 is not");
	start(CHAT_MSG_FRIENDS);
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "bob");
	chat_put_u8(&wb, 1);
	chat_put_u8(&wb, 2);
	expect_bad("FRIENDS: online flag 2 is not 0 or 1");
	start(CHAT_MSG_FRIENDS);
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "");
	expect_bad("FRIENDS: friend '' is empty");

	/* malformed WHO_LIST */
	start(CHAT_MSG_WHO_LIST);
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "alice");
	chat_put_suites(&wb, 1, suites);
	chat_put_u8(&wb, 4);
	expect_bad("WHO_LIST: flags 0x04 of alice have unknown bits");
	start(CHAT_MSG_WHO_LIST);
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "alice");
	chat_put_suites(&wb, 1, suites);
	chat_put_u8(&wb, 0x83);
	expect_bad("WHO_LIST: flags 0x83 of alice have unknown bits");
	start(CHAT_MSG_WHO_LIST); /* the old format, without flags */
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "alice");
	chat_put_suites(&wb, 1, suites);
	expect_bad("WHO_LIST: truncated before flags");
	start(CHAT_MSG_MEMBERS); /* MEMBERS does not take flags */
	chat_put_str8(&wb, "lobby");
	chat_put_u16(&wb, 1);
	chat_put_str8(&wb, "alice");
	chat_put_suites(&wb, 1, suites);
	chat_put_u8(&wb, 0);
	expect_bad("MEMBERS: 1 unexpected bytes after the message");
}

/* Every new type has a name. */
static void test_type_names(void)
{
	static const int types[] = {
		CHAT_MSG_AUTH, CHAT_MSG_AUTH_FINAL, CHAT_MSG_REGISTER, CHAT_MSG_PASSWD, CHAT_MSG_ADMIN,
		CHAT_MSG_FRIEND, CHAT_MSG_SEND, CHAT_MSG_ACK, CHAT_MSG_AUTH_CHALLENGE, CHAT_MSG_AUTH_OK,
		CHAT_MSG_USERS, CHAT_MSG_DONE, CHAT_MSG_FRIENDS, CHAT_MSG_FRIEND_EVENT, CHAT_MSG_STORED,
		CHAT_MSG_RECEIPT, CHAT_MSG_MAIL, CHAT_MSG_KEYS_PUT, CHAT_MSG_KEYS_GET, CHAT_MSG_KEYS,
	};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		CHECK(strcmp(chat_msg_type_name(types[i]), "UNKNOWN") != 0);
	CHECK(!strcmp(chat_msg_type_name(CHAT_MSG_AUTH_CHALLENGE), "AUTH_CHALLENGE"));
	CHECK(!strcmp(chat_msg_type_name(CHAT_MSG_MAIL), "MAIL"));
	CHECK(!strcmp(chat_msg_type_name(0x16), "UNKNOWN"));
	CHECK(!strcmp(chat_msg_type_name(0x98), "UNKNOWN"));
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

/* PING and PONG: a u64 token, any value; nothing before or after it. */
static void test_keepalive(void)
{
	static const uint64_t tokens[] = { 0, 1, 0x0102030405060708ull, UINT64_MAX };
	static const int types[] = { CHAT_MSG_PING, CHAT_MSG_PONG };
	struct chat_msg m;

	for (size_t t = 0; t < 2; t++) {
		for (size_t i = 0; i < sizeof(tokens) / sizeof(tokens[0]); i++) {
			start(types[t]);
			chat_put_u64(&wb, tokens[i]);
			CHECK_EQ_INT(wb.len, 9);
			expect_strict(&m, wb.len); /* every cut and a trailing byte are malformed */
			CHECK_EQ_INT(m.type, types[t]);
			CHECK(m.id == tokens[i]);
		}
		start(types[t]); /* no token at all */
		expect_bad("truncated before token");
		start(types[t]);
		chat_put_u64(&wb, 7);
		chat_put_u8(&wb, 0);
		expect_bad(types[t] == CHAT_MSG_PING ? "PING: 1 unexpected bytes after the message"
		                                     : "PONG: 1 unexpected bytes after the message");
	}
	CHECK(!strcmp(chat_msg_type_name(CHAT_MSG_PING), "PING"));
	CHECK(!strcmp(chat_msg_type_name(CHAT_MSG_PONG), "PONG"));
	/* Neither is a request the relay confirms with DONE. */
	start(CHAT_MSG_DONE);
	chat_put_u8(&wb, CHAT_MSG_PING);
	chat_put_u8(&wb, 0);
	chat_put_str8(&wb, "");
	chat_put_str16(&wb, "");
	expect_bad("request type 0x40 is not a client request");
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
			buf[0] = (uint8_t)(1 + test_rand() % 0x13);
		else if (i % 3 == 1)
			buf[0] = (uint8_t)(0x81 + test_rand() % 0x16);
		else if (i % 30 == 2)
			buf[0] = (uint8_t)(CHAT_MSG_PING + test_rand() % 2);
		int rc = chat_msg_parse(len, buf, &m, 0, NULL);
		CHECK(rc == CHAT_OK || rc == CHAT_ERR_MALFORMED);
		if (rc == CHAT_OK && m.list.count) { /* validated lists iterate to their end */
			struct chat_iter it = m.list;
			char name[CHAT_NAME_MAX + 1], s[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
			char addr[CHAT_ADDR_MAX + 1];
			size_t n;
			const uint8_t *p;
			unsigned k;
			int64_t t;
			int on;
			CHECK_EQ_INT(it.type, m.type);
			while (m.type == CHAT_MSG_ROOM_SEND ? chat_iter_target(&it, name, &p, &n) :
			       m.type == CHAT_MSG_ROOM_LIST ? chat_iter_room(&it, name, &k) :
			       m.type == CHAT_MSG_USERS ? chat_iter_user(&it, name, &k, addr, &n, s, &t) :
			       m.type == CHAT_MSG_FRIENDS ? chat_iter_friend(&it, name, &k, &on) :
			       chat_iter_who_flags(&it, name, &n, s, &k))
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
	test_auth();
	test_accounts();
	test_mail();
	test_new_lists();
	test_type_names();
	test_truncations();
	test_keepalive();
	test_random();
	test_builder_limits();
	chat_wbuf_free(&wb);
	return test_done("test_proto");
}
