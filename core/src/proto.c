#include "proto.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chat/error.h>

#include "be.h"

/* ---- reading */

struct rd {
	const uint8_t *p;
	size_t left;
	const char *what; /* message type name, for errors */
	char *err;
	size_t errlen;
	int failed;
};

static void rd_fail(struct rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void rd_fail(struct rd *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (r->failed)
		return;
	r->failed = 1;
	if (!r->errlen)
		return;
	n = snprintf(r->err, r->errlen, "%s: ", r->what);
	if (n < 0 || (size_t)n >= r->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/* The next n bytes, or NULL (and the reader failed) if they are not there. */
static const uint8_t *rd_take(struct rd *r, size_t n, const char *field)
{
	const uint8_t *p = r->p;

	if (r->failed)
		return NULL;
	if (r->left < n) {
		rd_fail(r, "truncated before %s", field);
		return NULL;
	}
	r->p += n;
	r->left -= n;
	return p;
}

static unsigned rd_u8(struct rd *r, const char *field)
{
	const uint8_t *p = rd_take(r, 1, field);

	return p ? p[0] : 0;
}

static unsigned rd_u16(struct rd *r, const char *field)
{
	const uint8_t *p = rd_take(r, 2, field);

	return p ? chat_be16_get(p) : 0;
}

static uint32_t rd_u32(struct rd *r, const char *field)
{
	const uint8_t *p = rd_take(r, 4, field);

	return p ? chat_be32_get(p) : 0;
}

static uint64_t rd_u64(struct rd *r, const char *field)
{
	const uint8_t *p = rd_take(r, 8, field);

	return p ? chat_be64_get(p) : 0;
}

/* An id that 0 cannot be (client ids, mail ids). */
static uint64_t rd_id(struct rd *r, const char *field)
{
	uint64_t v = rd_u64(r, field);

	if (!r->failed && v == 0)
		rd_fail(r, "%s is 0", field);
	return v;
}

/* A u64 Unix time in milliseconds; must fit an int64_t. */
static int64_t rd_time(struct rd *r, const char *field)
{
	uint64_t v = rd_u64(r, field);

	if (!r->failed && v > (uint64_t)INT64_MAX) {
		rd_fail(r, "%s %llu is out of range", field, (unsigned long long)v);
		return 0;
	}
	return (int64_t)v;
}

/* A u8 that must lie in lo..hi; what names the allowed values for the error. */
static unsigned rd_enum(struct rd *r, const char *field, unsigned lo, unsigned hi, const char *what)
{
	unsigned v = rd_u8(r, field);

	if (!r->failed && (v < lo || v > hi))
		rd_fail(r, "%s %u is not %s", field, v, what);
	return v;
}

/* A length-prefixed string into dst (cap includes the NUL). */
static void rd_str(struct rd *r, int wide, char *dst, size_t cap, const char *field)
{
	size_t len = wide ? rd_u16(r, field) : rd_u8(r, field);

	dst[0] = '\0';
	if (r->failed)
		return;
	if (len > r->left) {
		rd_fail(r, "%s of %zu bytes runs past the end", field, len);
		return;
	}
	if (len >= cap) {
		rd_fail(r, "%s is %zu bytes, at most %zu allowed", field, len, cap - 1);
		return;
	}
	if (memchr(r->p, '\0', len)) {
		rd_fail(r, "%s contains a NUL byte", field);
		return;
	}
	memcpy(dst, r->p, len);
	dst[len] = '\0';
	r->p += len;
	r->left -= len;
}

static void rd_name(struct rd *r, char dst[CHAT_NAME_MAX + 1], const char *field, int may_be_empty)
{
	rd_str(r, 0, dst, CHAT_NAME_MAX + 1, field);
	if (r->failed || (may_be_empty && !dst[0]))
		return;
	const char *why = chat_name_check(strlen(dst), dst);
	if (why)
		rd_fail(r, "%s '%s' %s", field, dst, why);
}

static int suite_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CHAT_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return 0;
	return 1;
}

static void rd_suite(struct rd *r, char dst[CHAT_NAME_MAX + 1], const char *field, int may_be_empty)
{
	rd_str(r, 0, dst, CHAT_NAME_MAX + 1, field);
	if (r->failed || (may_be_empty && !dst[0]))
		return;
	if (!suite_name_ok(dst))
		rd_fail(r, "%s '%s' is not a suite name", field, dst);
}

static void rd_suites(struct rd *r, size_t *n, char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1],
                      int at_least_one)
{
	size_t count = rd_u8(r, "suite count");

	*n = 0;
	if (r->failed)
		return;
	if (count > CHAT_SUITES_MAX) {
		rd_fail(r, "%zu suites listed, at most %d allowed", count, CHAT_SUITES_MAX);
		return;
	}
	if (at_least_one && count == 0) {
		rd_fail(r, "no suite listed");
		return;
	}
	for (size_t i = 0; i < count && !r->failed; i++) {
		rd_suite(r, suites[i], "suite", 0);
		for (size_t j = 0; j < i && !r->failed; j++)
			if (strcmp(suites[i], suites[j]) == 0)
				rd_fail(r, "suite '%s' listed twice", suites[i]);
	}
	if (!r->failed)
		*n = count;
}

static void rd_text(struct rd *r, char dst[CHAT_TEXT_MAX + 1], const char *field)
{
	rd_str(r, 1, dst, CHAT_TEXT_MAX + 1, field);
}

/* A SCRAM message: str16, 1..CHAT_TEXT_MAX bytes of printable ASCII
 * without space (RFC 5802 messages never contain one). */
static void rd_scram(struct rd *r, char dst[CHAT_TEXT_MAX + 1], const char *field)
{
	rd_str(r, 1, dst, CHAT_TEXT_MAX + 1, field);
	if (r->failed)
		return;
	if (!dst[0]) {
		rd_fail(r, "%s is empty", field);
		return;
	}
	for (size_t i = 0; dst[i]; i++)
		if ((unsigned char)dst[i] < 0x21 || (unsigned char)dst[i] > 0x7e) {
			rd_fail(r, "%s has byte 0x%02x at offset %zu, not printable ASCII", field,
			        (unsigned char)dst[i], i);
			return;
		}
}

/* A client address in USERS: str8, 1..CHAT_ADDR_MAX printable ASCII. */
static void rd_addr(struct rd *r, char dst[CHAT_ADDR_MAX + 1], const char *field)
{
	rd_str(r, 0, dst, CHAT_ADDR_MAX + 1, field);
	if (r->failed)
		return;
	if (!dst[0]) {
		rd_fail(r, "%s is empty", field);
		return;
	}
	for (size_t i = 0; dst[i]; i++)
		if ((unsigned char)dst[i] < 0x20 || (unsigned char)dst[i] > 0x7e) {
			rd_fail(r, "%s has byte 0x%02x at offset %zu, not printable ASCII", field,
			        (unsigned char)dst[i], i);
			return;
		}
}

/* str8 salt (binary), u32 iterations, StoredKey, ServerKey. */
static void rd_verifier(struct rd *r, struct chat_msg *m)
{
	struct chat_scram_verifier *v = &m->verifier;
	size_t n = rd_u8(r, "salt length");

	if (r->failed)
		return;
	if (n > r->left) {
		rd_fail(r, "salt of %zu bytes runs past the end", n);
		return;
	}
	if (n < CHAT_SALT_MIN || n > sizeof(v->salt)) {
		rd_fail(r, "salt is %zu bytes, %d to %zu allowed", n, CHAT_SALT_MIN, sizeof(v->salt));
		return;
	}
	memcpy(v->salt, r->p, n);
	v->salt_len = n;
	r->p += n;
	r->left -= n;
	v->iterations = rd_u32(r, "iterations");
	if (!r->failed && (v->iterations < CHAT_SCRAM_MIN_ITER || v->iterations > CHAT_ITER_MAX)) {
		rd_fail(r, "iterations %u out of range %d..%u", v->iterations, CHAT_SCRAM_MIN_ITER,
		        CHAT_ITER_MAX);
		return;
	}
	if (!r->failed && r->left < 2 * CHAT_SCRAM_KEY) {
		rd_fail(r, "truncated before %s", r->left < CHAT_SCRAM_KEY ? "stored key" : "server key");
		return;
	}
	if (r->failed)
		return;
	memcpy(v->stored_key, r->p, CHAT_SCRAM_KEY);
	memcpy(v->server_key, r->p + CHAT_SCRAM_KEY, CHAT_SCRAM_KEY);
	r->p += 2 * CHAT_SCRAM_KEY;
	r->left -= 2 * CHAT_SCRAM_KEY;
	m->has_verifier = 1;
}

static void rd_end(struct rd *r)
{
	if (!r->failed && r->left)
		rd_fail(r, "%zu unexpected bytes after the message", r->left);
}

/* The rest of the frame is an opaque payload. */
static void rd_payload(struct rd *r, struct chat_msg *m)
{
	if (r->failed)
		return;
	m->payload = r->p;
	m->payload_len = r->left;
	r->p += r->left;
	r->left = 0;
}

/* A defined client->relay type (the relay's own types have the top bit set;
 * PING and PONG go both ways and are never answered with DONE). */
static int is_request_type(unsigned type)
{
	return type < 0x80 && type != CHAT_MSG_PING && type != CHAT_MSG_PONG &&
	       strcmp(chat_msg_type_name((int)type), "UNKNOWN") != 0;
}

/* MAIL carries one relay->client message the recipient missed; the caller
 * parses it with chat_msg_parse.  Only these may be queued, and never MAIL
 * itself, so mail cannot nest. */
static int mail_inner_ok(unsigned type)
{
	switch (type) {
	case CHAT_MSG_DELIVER:
	case CHAT_MSG_OFFERED:
	case CHAT_MSG_ANSWERED:
	case CHAT_MSG_CLOSED:
	case CHAT_MSG_RECEIPT:
	case CHAT_MSG_FRIEND_EVENT:
		return 1;
	default:
		return 0;
	}
}

/* Validate a list body now, so the iterators cannot fail later. */
static void rd_list(struct rd *r, struct chat_msg *m, int type)
{
	size_t count = rd_u16(r, "entry count");
	const uint8_t *start = r->p;
	char name[CHAT_NAME_MAX + 1];
	char addr[CHAT_ADDR_MAX + 1];
	char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	size_t n;
	unsigned v;

	for (size_t i = 0; i < count && !r->failed; i++) {
		switch (type) {
		case CHAT_MSG_WHO_LIST:
			rd_name(r, name, "user", 0);
			rd_suites(r, &n, suites, 0);
			v = rd_u8(r, "flags");
			if (!r->failed && (v & ~(CHAT_WHO_FRIEND | CHAT_WHO_REGISTERED)))
				rd_fail(r, "flags 0x%02x of %s have unknown bits", v, name);
			break;
		case CHAT_MSG_USERS:
			rd_name(r, name, "user", 0);
			rd_enum(r, "group", 0, 2, "0 (guest), 1 (regular) or 2 (admin)");
			rd_addr(r, addr, "address");
			rd_suites(r, &n, suites, 0);
			rd_time(r, "since");
			break;
		case CHAT_MSG_FRIENDS:
			rd_name(r, name, "friend", 0);
			rd_enum(r, "state", 1, 3, "1 (friends), 2 (you asked) or 3 (they asked)");
			rd_enum(r, "online flag", 0, 1, "0 or 1");
			break;
		case CHAT_MSG_MEMBERS:
			rd_name(r, name, "member", 0);
			rd_suites(r, &n, suites, 0);
			break;
		case CHAT_MSG_ROOM_LIST:
			rd_name(r, name, "room", 0);
			rd_u16(r, "member count");
			break;
		case CHAT_MSG_KEYS: {
			rd_suite(r, name, "suite", 0);
			size_t len = rd_u16(r, "key length");
			if (!r->failed && (len == 0 || len > CHAT_KEY_MAX))
				rd_fail(r, "key for %s of %zu bytes (1..%d)", name, len, CHAT_KEY_MAX);
			else if (!r->failed && len > r->left)
				rd_fail(r, "key for %s of %zu bytes runs past the end", name, len);
			if (!r->failed) {
				r->p += len;
				r->left -= len;
			}
			break;
		}
		case CHAT_MSG_ROOM_SEND: {
			rd_name(r, name, "recipient", 0);
			uint32_t len = rd_u32(r, "payload length");
			if (!r->failed && len > r->left)
				rd_fail(r, "payload of %u bytes for %s runs past the end", len, name);
			if (!r->failed) {
				r->p += len;
				r->left -= len;
			}
			break;
		}
		}
	}
	if (r->failed)
		return;
	m->list.p = start;
	m->list.left = (size_t)(r->p - start);
	m->list.count = count;
	m->list.type = type;
}

const char *chat_name_check(size_t len, const char *name)
{
	if (len == 0)
		return "is empty";
	if (len > CHAT_NAME_MAX)
		return "is longer than 32 characters";
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (i == 0 && !alnum)
			return "must start with a lowercase letter or a digit";
		if (!alnum && c != '_' && c != '-' && c != '.')
			return "may contain only a-z, 0-9, '_', '-' and '.'";
	}
	return NULL;
}

const char *chat_msg_type_name(int type)
{
	switch (type) {
	case CHAT_MSG_HELLO: return "HELLO";
	case CHAT_MSG_LOGIN: return "LOGIN";
	case CHAT_MSG_WHO: return "WHO";
	case CHAT_MSG_TALK: return "TALK";
	case CHAT_MSG_ANSWER: return "ANSWER";
	case CHAT_MSG_ROUTE: return "ROUTE";
	case CHAT_MSG_JOIN: return "JOIN";
	case CHAT_MSG_LEAVE: return "LEAVE";
	case CHAT_MSG_ROOMS: return "ROOMS";
	case CHAT_MSG_ROOM_SEND: return "ROOM_SEND";
	case CHAT_MSG_CLOSE: return "CLOSE";
	case CHAT_MSG_AUTH: return "AUTH";
	case CHAT_MSG_AUTH_FINAL: return "AUTH_FINAL";
	case CHAT_MSG_REGISTER: return "REGISTER";
	case CHAT_MSG_PASSWD: return "PASSWD";
	case CHAT_MSG_ADMIN: return "ADMIN";
	case CHAT_MSG_FRIEND: return "FRIEND";
	case CHAT_MSG_KEYS_PUT: return "KEYS_PUT";
	case CHAT_MSG_KEYS_GET: return "KEYS_GET";
	case CHAT_MSG_KEYS: return "KEYS";
	case CHAT_MSG_SEND: return "SEND";
	case CHAT_MSG_ACK: return "ACK";
	case CHAT_MSG_PING: return "PING";
	case CHAT_MSG_PONG: return "PONG";
	case CHAT_MSG_WELCOME: return "WELCOME";
	case CHAT_MSG_LOGGED_IN: return "LOGGED_IN";
	case CHAT_MSG_WHO_LIST: return "WHO_LIST";
	case CHAT_MSG_OFFERED: return "OFFERED";
	case CHAT_MSG_ANSWERED: return "ANSWERED";
	case CHAT_MSG_DELIVER: return "DELIVER";
	case CHAT_MSG_MEMBERS: return "MEMBERS";
	case CHAT_MSG_ROOM_EVENT: return "ROOM_EVENT";
	case CHAT_MSG_ROOM_LIST: return "ROOM_LIST";
	case CHAT_MSG_ROOM_DELIVER: return "ROOM_DELIVER";
	case CHAT_MSG_CLOSED: return "CLOSED";
	case CHAT_MSG_ERROR: return "ERROR";
	case CHAT_MSG_BYE: return "BYE";
	case CHAT_MSG_AUTH_CHALLENGE: return "AUTH_CHALLENGE";
	case CHAT_MSG_AUTH_OK: return "AUTH_OK";
	case CHAT_MSG_USERS: return "USERS";
	case CHAT_MSG_DONE: return "DONE";
	case CHAT_MSG_FRIENDS: return "FRIENDS";
	case CHAT_MSG_FRIEND_EVENT: return "FRIEND_EVENT";
	case CHAT_MSG_STORED: return "STORED";
	case CHAT_MSG_RECEIPT: return "RECEIPT";
	case CHAT_MSG_MAIL: return "MAIL";
	default: return "UNKNOWN";
	}
}

int chat_msg_parse(size_t len, const uint8_t *src, struct chat_msg *m, size_t errlen, char *err)
{
	struct rd r = { .p = src, .left = len, .err = err, .errlen = errlen, .what = "message" };

	/* Called per relayed frame: clear the fields every type shares, not the
	 * verifier (valid only when has_verifier is set).  Fields declared from
	 * op on must be set here one by one. */
	memset(m, 0, offsetof(struct chat_msg, op));
	m->op = 0;
	m->group = 0;
	m->id = m->id2 = 0;
	m->time_ms = 0;
	m->has_verifier = 0;
	if (errlen)
		err[0] = '\0';
	if (len == 0) {
		rd_fail(&r, "empty frame");
		return CHAT_ERR_MALFORMED;
	}
	m->type = (int)rd_u8(&r, "type");
	r.what = chat_msg_type_name(m->type);
	switch (m->type) {
	case CHAT_MSG_HELLO:
	case CHAT_MSG_WELCOME:
		m->version = rd_u8(&r, "version");
		rd_suites(&r, &m->nsuites, m->suites, m->type == CHAT_MSG_HELLO);
		break;
	case CHAT_MSG_LOGIN:
	case CHAT_MSG_TALK:
	case CHAT_MSG_CLOSE:
	case CHAT_MSG_CLOSED:
		rd_name(&r, m->name, "name", 0);
		break;
	case CHAT_MSG_WHO:
	case CHAT_MSG_ROOMS:
		break;
	case CHAT_MSG_ANSWER:
		rd_name(&r, m->name, "name", 0);
		m->flag = (int)rd_u8(&r, "accept flag");
		if (!r.failed && m->flag > 1)
			rd_fail(&r, "accept flag %d is not 0 or 1", m->flag);
		rd_suite(&r, m->suite, "suite", !m->flag);
		rd_text(&r, m->text, "reason");
		break;
	case CHAT_MSG_ANSWERED:
		rd_name(&r, m->name, "name", 0);
		m->flag = (int)rd_u8(&r, "accept flag");
		if (!r.failed && m->flag > 1)
			rd_fail(&r, "accept flag %d is not 0 or 1", m->flag);
		rd_suite(&r, m->suite, "suite", !m->flag);
		rd_suites(&r, &m->nsuites, m->suites, 0);
		rd_text(&r, m->text, "reason");
		break;
	case CHAT_MSG_ROUTE:
	case CHAT_MSG_DELIVER:
		rd_name(&r, m->name, "name", 0);
		rd_payload(&r, m);
		break;
	case CHAT_MSG_JOIN:
	case CHAT_MSG_LEAVE:
		rd_name(&r, m->room, "room", 0);
		break;
	case CHAT_MSG_ROOM_SEND:
	case CHAT_MSG_MEMBERS:
		rd_name(&r, m->room, "room", 0);
		rd_list(&r, m, m->type);
		break;
	case CHAT_MSG_WHO_LIST:
	case CHAT_MSG_ROOM_LIST:
	case CHAT_MSG_USERS:
	case CHAT_MSG_FRIENDS:
		rd_list(&r, m, m->type);
		break;
	case CHAT_MSG_OFFERED:
		rd_name(&r, m->name, "name", 0);
		rd_suites(&r, &m->nsuites, m->suites, 1);
		break;
	case CHAT_MSG_ROOM_EVENT:
		rd_name(&r, m->room, "room", 0);
		rd_name(&r, m->name, "name", 0);
		m->flag = (int)rd_u8(&r, "event");
		if (!r.failed && m->flag != 1 && m->flag != 2)
			rd_fail(&r, "event %d is not 1 (joined) or 2 (left)", m->flag);
		break;
	case CHAT_MSG_ROOM_DELIVER:
		rd_name(&r, m->room, "room", 0);
		rd_name(&r, m->name, "name", 0);
		rd_payload(&r, m);
		break;
	case CHAT_MSG_ERROR:
		m->code = rd_u16(&r, "code");
		m->ref = rd_u8(&r, "request type");
		rd_name(&r, m->name, "subject", 1);
		rd_text(&r, m->text, "text");
		m->id = rd_u64(&r, "client id");
		break;
	case CHAT_MSG_BYE:
		rd_text(&r, m->text, "reason");
		break;
	case CHAT_MSG_AUTH:
		m->op = rd_enum(&r, "op", CHAT_AUTH_LOGIN, CHAT_AUTH_PASSWD, "1 (login) or 2 (passwd)");
		rd_scram(&r, m->text, "client-first");
		break;
	case CHAT_MSG_AUTH_FINAL:
		rd_scram(&r, m->text, "client-final");
		break;
	case CHAT_MSG_AUTH_CHALLENGE:
		rd_scram(&r, m->text, "server-first");
		break;
	case CHAT_MSG_AUTH_OK:
		m->op = rd_enum(&r, "op", CHAT_AUTH_LOGIN, CHAT_AUTH_PASSWD, "1 (login) or 2 (passwd)");
		rd_scram(&r, m->text, "server-final");
		break;
	case CHAT_MSG_REGISTER:
		rd_name(&r, m->name, "name", 0);
		rd_verifier(&r, m);
		break;
	case CHAT_MSG_PASSWD:
		rd_verifier(&r, m);
		break;
	case CHAT_MSG_ADMIN:
		m->op = rd_enum(&r, "op", CHAT_ADMIN_USERS, CHAT_ADMIN_DEMOTE, "an admin operation (1..6)");
		rd_name(&r, m->name, "name", m->op == CHAT_ADMIN_USERS);
		if (!r.failed && m->op == CHAT_ADMIN_USERS && m->name[0])
			rd_fail(&r, "name '%s' given for op 1 (users), which takes none", m->name);
		if (m->op == CHAT_ADMIN_ADD || m->op == CHAT_ADMIN_RESET)
			rd_verifier(&r, m);
		break;
	case CHAT_MSG_FRIEND:
		m->op = rd_enum(&r, "op", CHAT_FRIEND_OP_ADD, CHAT_FRIEND_OP_LIST,
		                "1 (add), 2 (remove) or 3 (list)");
		rd_name(&r, m->name, "name", m->op == CHAT_FRIEND_OP_LIST);
		if (!r.failed && m->op == CHAT_FRIEND_OP_LIST && m->name[0])
			rd_fail(&r, "name '%s' given for op 3 (list), which takes none", m->name);
		break;
	case CHAT_MSG_KEYS_PUT:
		rd_suite(&r, m->suite, "suite", 0);
		rd_payload(&r, m);
		if (!r.failed && (!m->payload_len || m->payload_len > CHAT_KEY_MAX))
			rd_fail(&r, "key of %zu bytes (1..%d)", m->payload_len, CHAT_KEY_MAX);
		break;
	case CHAT_MSG_KEYS_GET:
		rd_name(&r, m->name, "name", 0);
		break;
	case CHAT_MSG_KEYS:
		rd_name(&r, m->name, "name", 0);
		rd_list(&r, m, m->type);
		break;
	case CHAT_MSG_SEND:
		rd_name(&r, m->name, "name", 0);
		m->id = rd_id(&r, "client id");
		rd_payload(&r, m);
		if (!r.failed && !m->payload_len)
			rd_fail(&r, "payload is empty");
		break;
	case CHAT_MSG_ACK:
		m->id = rd_id(&r, "mail id");
		m->flag = (int)rd_enum(&r, "flag", 0, 1, "0 (processed) or 1 (unreadable)");
		rd_text(&r, m->text, "reason");
		if (!r.failed && m->flag == 0 && m->text[0])
			rd_fail(&r, "reason given with flag 0 (processed)");
		break;
	case CHAT_MSG_LOGGED_IN:
		rd_name(&r, m->name, "name", 0);
		m->group = rd_enum(&r, "group", 0, 2, "0 (guest), 1 (regular) or 2 (admin)");
		m->id = rd_u64(&r, "last client id");
		if (!r.failed && m->group == 0 && m->id)
			rd_fail(&r, "last client id %llu given for a guest", (unsigned long long)m->id);
		break;
	case CHAT_MSG_DONE:
		m->ref = rd_u8(&r, "request type");
		if (!r.failed && !is_request_type(m->ref))
			rd_fail(&r, "request type 0x%02x is not a client request", m->ref);
		m->op = rd_u8(&r, "op");
		rd_name(&r, m->name, "subject", 1);
		rd_text(&r, m->text, "text");
		break;
	case CHAT_MSG_FRIEND_EVENT:
		rd_name(&r, m->name, "name", 0);
		m->flag = (int)rd_enum(&r, "event", CHAT_FRIEND_EV_ASKS, CHAT_FRIEND_EV_REMOVED,
		                       "1 (asks), 2 (accepted) or 3 (removed)");
		break;
	case CHAT_MSG_STORED:
		rd_name(&r, m->name, "recipient", 0);
		m->id = rd_id(&r, "client id");
		m->id2 = rd_u64(&r, "mail id");
		m->flag = (int)rd_enum(&r, "state", CHAT_STORED_ONLINE, CHAT_STORED_LIVE,
		                       "1 (online), 2 (queued), 3 (duplicate) or 4 (live)");
		if (!r.failed && !m->id2 && m->flag != CHAT_STORED_DUPLICATE && m->flag != CHAT_STORED_LIVE)
			rd_fail(&r, "mail id is 0 with state %d, which stores the message", m->flag);
		break;
	case CHAT_MSG_RECEIPT:
		rd_name(&r, m->name, "recipient", 0);
		m->id = rd_id(&r, "client id");
		m->flag = (int)rd_enum(&r, "status", CHAT_RECEIPT_DELIVERED, CHAT_RECEIPT_REMOVED,
		                       "1 (delivered), 2 (expired), 3 (unreadable) or 4 (removed)");
		rd_text(&r, m->text, "text");
		break;
	case CHAT_MSG_PING:
	case CHAT_MSG_PONG:
		m->id = rd_u64(&r, "token");
		break;
	case CHAT_MSG_MAIL:
		m->id = rd_id(&r, "mail id");
		m->time_ms = rd_time(&r, "stored-at time");
		rd_payload(&r, m);
		if (!r.failed && !m->payload_len)
			rd_fail(&r, "inner message is empty");
		else if (!r.failed && !mail_inner_ok(m->payload[0]))
			rd_fail(&r, "inner message type 0x%02x (%s) cannot be mailed", m->payload[0],
			        chat_msg_type_name(m->payload[0]));
		break;
	default:
		r.what = "message";
		rd_fail(&r, "unknown message type 0x%02x", (unsigned)m->type);
		break;
	}
	rd_end(&r);
	return r.failed ? CHAT_ERR_MALFORMED : CHAT_OK;
}

/* ---- iterators: the body was validated by chat_msg_parse */

static void it_str(struct chat_iter *it, char *dst)
{
	size_t n = *it->p++;

	memcpy(dst, it->p, n);
	dst[n] = '\0';
	it->p += n;
	it->left -= 1 + n;
}

static unsigned it_u8(struct chat_iter *it)
{
	it->left--;
	return *it->p++;
}

static uint64_t it_u64(struct chat_iter *it)
{
	uint64_t v = chat_be64_get(it->p);

	it->p += 8;
	it->left -= 8;
	return v;
}

static void it_suites(struct chat_iter *it, size_t *nsuites,
                      char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1])
{
	*nsuites = it_u8(it);
	for (size_t i = 0; i < *nsuites; i++)
		it_str(it, suites[i]);
}

int chat_iter_who_flags(struct chat_iter *it, char name[CHAT_NAME_MAX + 1], size_t *nsuites,
                        char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1], unsigned *flags)
{
	unsigned f = 0;

	if (!it->count)
		return 0;
	it->count--;
	it_str(it, name);
	it_suites(it, nsuites, suites);
	if (it->type == CHAT_MSG_WHO_LIST)
		f = it_u8(it);
	if (flags)
		*flags = f;
	return 1;
}

int chat_iter_who(struct chat_iter *it, char name[CHAT_NAME_MAX + 1], size_t *nsuites,
                  char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1])
{
	return chat_iter_who_flags(it, name, nsuites, suites, NULL);
}

int chat_iter_user(struct chat_iter *it, char name[CHAT_NAME_MAX + 1], unsigned *group,
                   char addr[CHAT_ADDR_MAX + 1], size_t *nsuites,
                   char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1], int64_t *since_ms)
{
	if (!it->count)
		return 0;
	it->count--;
	it_str(it, name);
	*group = it_u8(it);
	it_str(it, addr);
	it_suites(it, nsuites, suites);
	*since_ms = (int64_t)it_u64(it); /* checked <= INT64_MAX by the parser */
	return 1;
}

int chat_iter_friend(struct chat_iter *it, char name[CHAT_NAME_MAX + 1], unsigned *state,
                     int *online)
{
	if (!it->count)
		return 0;
	it->count--;
	it_str(it, name);
	*state = it_u8(it);
	*online = (int)it_u8(it);
	return 1;
}

int chat_iter_key(struct chat_iter *it, char suite[CHAT_NAME_MAX + 1], size_t *len, const uint8_t **key)
{
	if (!it->count)
		return 0;
	it->count--;
	it_str(it, suite);
	*len = (size_t)it->p[0] << 8 | it->p[1];
	it->p += 2;
	*key = it->p;
	it->p += *len;
	it->left -= 2 + *len;
	return 1;
}

int chat_iter_name(struct chat_iter *it, char name[CHAT_NAME_MAX + 1])
{
	if (!it->count)
		return 0;
	it->count--;
	it_str(it, name);
	return 1;
}

int chat_iter_room(struct chat_iter *it, char room[CHAT_NAME_MAX + 1], unsigned *members)
{
	if (!it->count)
		return 0;
	it->count--;
	it_str(it, room);
	*members = chat_be16_get(it->p);
	it->p += 2;
	it->left -= 2;
	return 1;
}

int chat_iter_target(struct chat_iter *it, char name[CHAT_NAME_MAX + 1], const uint8_t **payload,
                     size_t *len)
{
	if (!it->count)
		return 0;
	it->count--;
	it_str(it, name);
	*len = chat_be32_get(it->p);
	it->p += 4;
	it->left -= 4;
	*payload = it->p;
	it->p += *len;
	it->left -= *len;
	return 1;
}

/* ---- writing */

void chat_wbuf_init(struct chat_wbuf *b, size_t max)
{
	b->data = b->inline_buf;
	b->len = 0;
	b->cap = sizeof(b->inline_buf);
	b->max = max;
	b->err = 0;
}

void chat_wbuf_free(struct chat_wbuf *b)
{
	if (b->data != b->inline_buf)
		free(b->data);
	chat_wbuf_init(b, b->max);
}

void chat_wbuf_reset(struct chat_wbuf *b)
{
	b->len = 0;
	b->err = 0;
}

static uint8_t *wb_room(struct chat_wbuf *b, size_t n)
{
	if (b->err)
		return NULL;
	if (n > b->max - b->len || b->len + n < b->len) {
		b->err = CHAT_ERR_TOO_BIG;
		return NULL;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap * 2;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *grown = b->data == b->inline_buf ? malloc(cap) : realloc(b->data, cap);
		if (!grown) {
			b->err = CHAT_ERR_NOMEM;
			return NULL;
		}
		if (b->data == b->inline_buf)
			memcpy(grown, b->inline_buf, b->len);
		b->data = grown;
		b->cap = cap;
	}
	uint8_t *p = b->data + b->len;
	b->len += n;
	return p;
}

void chat_put_u8(struct chat_wbuf *b, unsigned v)
{
	uint8_t *p = wb_room(b, 1);

	if (p)
		p[0] = (uint8_t)v;
}

void chat_put_u16(struct chat_wbuf *b, unsigned v)
{
	uint8_t *p = wb_room(b, 2);

	if (p)
		chat_be16_put(p, (uint16_t)v);
}

void chat_put_u32(struct chat_wbuf *b, uint32_t v)
{
	uint8_t *p = wb_room(b, 4);

	if (p)
		chat_be32_put(p, v);
}

void chat_put_bytes(struct chat_wbuf *b, size_t len, const uint8_t *src)
{
	uint8_t *p = len ? wb_room(b, len) : NULL;

	if (p)
		memcpy(p, src, len);
}

void chat_put_str8(struct chat_wbuf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n > 255) {
		b->err = b->err ? b->err : CHAT_ERR_TOO_BIG;
		return;
	}
	chat_put_u8(b, (unsigned)n);
	chat_put_bytes(b, n, (const uint8_t *)s);
}

void chat_put_str16(struct chat_wbuf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n > CHAT_TEXT_MAX)
		n = CHAT_TEXT_MAX;
	chat_put_u16(b, (unsigned)n);
	chat_put_bytes(b, n, (const uint8_t *)s);
}

void chat_put_suites(struct chat_wbuf *b, size_t n, const char (*suites)[CHAT_NAME_MAX + 1])
{
	chat_put_u8(b, (unsigned)n);
	for (size_t i = 0; i < n; i++)
		chat_put_str8(b, suites[i]);
}

void chat_put_u64(struct chat_wbuf *b, uint64_t v)
{
	uint8_t *p = wb_room(b, 8);

	if (p)
		chat_be64_put(p, v);
}

void chat_put_verifier(struct chat_wbuf *b, const struct chat_scram_verifier *v)
{
	if (v->salt_len > sizeof(v->salt)) {
		b->err = b->err ? b->err : CHAT_ERR_INVALID;
		return;
	}
	chat_put_u8(b, (unsigned)v->salt_len);
	chat_put_bytes(b, v->salt_len, v->salt);
	chat_put_u32(b, v->iterations);
	chat_put_bytes(b, CHAT_SCRAM_KEY, v->stored_key);
	chat_put_bytes(b, CHAT_SCRAM_KEY, v->server_key);
}
