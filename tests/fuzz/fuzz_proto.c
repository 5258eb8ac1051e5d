/* The relay wire protocol: chat_msg_parse() on one frame (what the relay
 * does with every request and the client with every relay message), then
 * the list iterators over a validated list and the inner message of MAIL.
 * Invariants: text fields are terminated within their arrays; every name is
 * valid; an iterator reads exactly the entries and bytes the parser
 * validated; a MAIL's inner message is one that may be mailed. */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "proto.h"

static void check_str(const char *s, size_t cap)
{
	FUZZ_CHECK(memchr(s, '\0', cap) != NULL);
}

static void check_name(const char *s, int may_be_empty)
{
	check_str(s, CHAT_NAME_MAX + 1);
	if (!s[0])
		FUZZ_CHECK(may_be_empty);
	else
		FUZZ_CHECK(chat_name_check(strlen(s), s) == NULL);
}

static void walk_list(const struct chat_msg *m)
{
	struct chat_iter it = m->list;
	char name[CHAT_NAME_MAX + 1], addr[CHAT_ADDR_MAX + 1];
	char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	size_t n = 0, ns, plen;
	unsigned u, flags;
	int online;
	int64_t since;
	const uint8_t *payload;
	size_t count = it.count;

	switch (m->type) {
	case CHAT_MSG_WHO_LIST:
	case CHAT_MSG_MEMBERS:
		while (chat_iter_who_flags(&it, name, &ns, suites, &flags)) {
			check_name(name, 0);
			FUZZ_CHECK(ns <= CHAT_SUITES_MAX);
			n++;
		}
		break;
	case CHAT_MSG_USERS:
		while (chat_iter_user(&it, name, &u, addr, &ns, suites, &since)) {
			check_name(name, 0);
			FUZZ_CHECK(u <= 2 && since >= 0 && ns <= CHAT_SUITES_MAX);
			n++;
		}
		break;
	case CHAT_MSG_FRIENDS:
		while (chat_iter_friend(&it, name, &u, &online)) {
			check_name(name, 0);
			FUZZ_CHECK(u >= 1 && u <= 3 && (online == 0 || online == 1));
			n++;
		}
		break;
	case CHAT_MSG_ROOM_LIST:
		while (chat_iter_room(&it, name, &u)) {
			check_name(name, 0);
			n++;
		}
		break;
	case CHAT_MSG_ROOM_SEND:
		while (chat_iter_target(&it, name, &payload, &plen)) {
			check_name(name, 0);
			FUZZ_CHECK(payload >= m->list.p && payload + plen <= m->list.p + m->list.left);
			n++;
		}
		break;
	default:
		return;
	}
	FUZZ_CHECK(n == count);
	FUZZ_CHECK(it.left == 0);
}

static void check_msg(size_t len, const uint8_t *src, const struct chat_msg *m)
{
	FUZZ_CHECK(m->type == src[0]);
	FUZZ_CHECK(strcmp(chat_msg_type_name(m->type), "UNKNOWN") != 0);
	check_name(m->name, 1);
	check_name(m->room, 1);
	check_str(m->suite, sizeof(m->suite));
	check_str(m->text, sizeof(m->text));
	FUZZ_CHECK(m->nsuites <= CHAT_SUITES_MAX);
	for (size_t i = 0; i < m->nsuites; i++)
		check_str(m->suites[i], sizeof(m->suites[i]));
	if (m->payload)
		FUZZ_CHECK(m->payload >= src && m->payload + m->payload_len <= src + len);
	walk_list(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chat_msg m, inner;
	char err[CHAT_TEXT_MAX];

	fuzz_init();
	if (chat_msg_parse(size, data, &m, sizeof(err), err) != CHAT_OK) {
		FUZZ_CHECK(err[0] != '\0');
		return 0;
	}
	check_msg(size, data, &m);
	if (m.type == CHAT_MSG_MAIL) {
		/* the client's path: the inner message is parsed like a live one */
		FUZZ_CHECK(m.payload_len > 0);
		if (chat_msg_parse(m.payload_len, m.payload, &inner, sizeof(err), err) == CHAT_OK) {
			check_msg(m.payload_len, m.payload, &inner);
			FUZZ_CHECK(inner.type != CHAT_MSG_MAIL);
		}
	}
	return 0;
}

/* ---- seeds: one of every message type, built as the programs build them */

static void seed(const char *dir, const char *name, struct chat_wbuf *b)
{
	if (b->err)
		fuzz_fail(__FILE__, __LINE__, name);
	fuzz_write_seed(dir, name, b->len, b->data);
	chat_wbuf_reset(b);
}

void fuzz_seeds(const char *dir)
{
	struct chat_wbuf b, in;
	const char suites[2][CHAT_NAME_MAX + 1] = { "aescbc-hmac", "xor-demo" };
	struct chat_scram_verifier v;
	const uint8_t payload[] = { 0x03, 0x00, 'c', 'i', 'p', 'h', 'e', 'r' };

	memset(&v, 0, sizeof(v));
	v.salt_len = 16;
	memset(v.salt, 0x5a, 16);
	v.iterations = 4096;
	chat_wbuf_init(&b, 65536);
	chat_wbuf_init(&in, 65536);
	chat_put_u8(&b, CHAT_MSG_HELLO); chat_put_u8(&b, 1); chat_put_suites(&b, 2, suites);
	seed(dir, "hello", &b);
	chat_put_u8(&b, CHAT_MSG_WELCOME); chat_put_u8(&b, 1); chat_put_suites(&b, 1, suites);
	seed(dir, "welcome", &b);
	chat_put_u8(&b, CHAT_MSG_LOGIN); chat_put_str8(&b, "alice");
	seed(dir, "login", &b);
	chat_put_u8(&b, CHAT_MSG_ANSWER); chat_put_str8(&b, "bob"); chat_put_u8(&b, 1);
	chat_put_str8(&b, "xor-demo"); chat_put_str16(&b, "");
	seed(dir, "answer", &b);
	chat_put_u8(&b, CHAT_MSG_ANSWERED); chat_put_str8(&b, "bob"); chat_put_u8(&b, 0);
	chat_put_str8(&b, ""); chat_put_suites(&b, 2, suites); chat_put_str16(&b, "busy");
	seed(dir, "answered", &b);
	chat_put_u8(&b, CHAT_MSG_ROUTE); chat_put_str8(&b, "bob"); chat_put_bytes(&b, sizeof(payload), payload);
	seed(dir, "route", &b);
	chat_put_u8(&b, CHAT_MSG_ROOM_SEND); chat_put_str8(&b, "lobby"); chat_put_u16(&b, 2);
	chat_put_str8(&b, "bob"); chat_put_u32(&b, sizeof(payload)); chat_put_bytes(&b, sizeof(payload), payload);
	chat_put_str8(&b, "carol"); chat_put_u32(&b, 3); chat_put_bytes(&b, 3, payload);
	seed(dir, "room_send", &b);
	chat_put_u8(&b, CHAT_MSG_MEMBERS); chat_put_str8(&b, "lobby"); chat_put_u16(&b, 1);
	chat_put_str8(&b, "bob"); chat_put_suites(&b, 2, suites);
	seed(dir, "members", &b);
	chat_put_u8(&b, CHAT_MSG_WHO_LIST); chat_put_u16(&b, 2);
	chat_put_str8(&b, "bob"); chat_put_suites(&b, 1, suites); chat_put_u8(&b, 3);
	chat_put_str8(&b, "carol"); chat_put_suites(&b, 2, suites); chat_put_u8(&b, 0);
	seed(dir, "who_list", &b);
	chat_put_u8(&b, CHAT_MSG_USERS); chat_put_u16(&b, 1); chat_put_str8(&b, "bob"); chat_put_u8(&b, 2);
	chat_put_str8(&b, "[::1]:5555"); chat_put_suites(&b, 1, suites); chat_put_u64(&b, 1700000000000ull);
	seed(dir, "users", &b);
	chat_put_u8(&b, CHAT_MSG_FRIENDS); chat_put_u16(&b, 1); chat_put_str8(&b, "bob");
	chat_put_u8(&b, 1); chat_put_u8(&b, 1);
	seed(dir, "friends", &b);
	chat_put_u8(&b, CHAT_MSG_ROOM_LIST); chat_put_u16(&b, 1); chat_put_str8(&b, "lobby"); chat_put_u16(&b, 3);
	seed(dir, "room_list", &b);
	chat_put_u8(&b, CHAT_MSG_ROOM_EVENT); chat_put_str8(&b, "lobby"); chat_put_str8(&b, "bob"); chat_put_u8(&b, 1);
	seed(dir, "room_event", &b);
	chat_put_u8(&b, CHAT_MSG_ERROR); chat_put_u16(&b, CHAT_PERR_QUEUE_FULL); chat_put_u8(&b, CHAT_MSG_SEND);
	chat_put_str8(&b, "bob"); chat_put_str16(&b, "queue full"); chat_put_u64(&b, 7);
	seed(dir, "error", &b);
	chat_put_u8(&b, CHAT_MSG_AUTH); chat_put_u8(&b, 1); chat_put_str16(&b, "n,,n=alice,r=abcdef0123456789");
	seed(dir, "auth", &b);
	chat_put_u8(&b, CHAT_MSG_AUTH_OK); chat_put_u8(&b, 1); chat_put_str16(&b, "v=dGVzdA==");
	seed(dir, "auth_ok", &b);
	chat_put_u8(&b, CHAT_MSG_REGISTER); chat_put_str8(&b, "alice"); chat_put_verifier(&b, &v);
	seed(dir, "register", &b);
	chat_put_u8(&b, CHAT_MSG_ADMIN); chat_put_u8(&b, CHAT_ADMIN_RESET); chat_put_str8(&b, "bob");
	chat_put_verifier(&b, &v);
	seed(dir, "admin_reset", &b);
	chat_put_u8(&b, CHAT_MSG_FRIEND); chat_put_u8(&b, CHAT_FRIEND_OP_LIST); chat_put_str8(&b, "");
	seed(dir, "friend_list", &b);
	chat_put_u8(&b, CHAT_MSG_SEND); chat_put_str8(&b, "bob"); chat_put_u64(&b, 3);
	chat_put_bytes(&b, sizeof(payload), payload);
	seed(dir, "send", &b);
	chat_put_u8(&b, CHAT_MSG_ACK); chat_put_u64(&b, 9); chat_put_u8(&b, 1); chat_put_str16(&b, "bad mac");
	seed(dir, "ack", &b);
	chat_put_u8(&b, CHAT_MSG_LOGGED_IN); chat_put_str8(&b, "alice"); chat_put_u8(&b, 1); chat_put_u64(&b, 4);
	seed(dir, "logged_in", &b);
	chat_put_u8(&b, CHAT_MSG_DONE); chat_put_u8(&b, CHAT_MSG_ADMIN); chat_put_u8(&b, 2);
	chat_put_str8(&b, "bob"); chat_put_str16(&b, "added");
	seed(dir, "done", &b);
	chat_put_u8(&b, CHAT_MSG_STORED); chat_put_str8(&b, "bob"); chat_put_u64(&b, 3); chat_put_u64(&b, 12);
	chat_put_u8(&b, CHAT_STORED_QUEUED);
	seed(dir, "stored", &b);
	chat_put_u8(&b, CHAT_MSG_RECEIPT); chat_put_str8(&b, "bob"); chat_put_u64(&b, 3);
	chat_put_u8(&b, CHAT_RECEIPT_UNREADABLE); chat_put_str16(&b, "integrity");
	seed(dir, "receipt", &b);
	chat_put_u8(&b, CHAT_MSG_PING); chat_put_u64(&b, 0);
	seed(dir, "ping", &b);
	chat_put_u8(&in, CHAT_MSG_DELIVER); chat_put_str8(&in, "alice"); chat_put_bytes(&in, sizeof(payload), payload);
	chat_put_u8(&b, CHAT_MSG_MAIL); chat_put_u64(&b, 12); chat_put_u64(&b, 1700000000000ull);
	chat_put_bytes(&b, in.len, in.data);
	seed(dir, "mail", &b);
	chat_wbuf_free(&b);
	chat_wbuf_free(&in);
}
