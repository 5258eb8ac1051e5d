#include "proto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chat/error.h>

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

static unsigned rd_u8(struct rd *r, const char *field)
{
	if (r->failed)
		return 0;
	if (r->left < 1) {
		rd_fail(r, "truncated before %s", field);
		return 0;
	}
	r->left--;
	return *r->p++;
}

static unsigned rd_u16(struct rd *r, const char *field)
{
	if (r->failed)
		return 0;
	if (r->left < 2) {
		rd_fail(r, "truncated before %s", field);
		return 0;
	}
	unsigned v = (unsigned)r->p[0] << 8 | r->p[1];
	r->p += 2;
	r->left -= 2;
	return v;
}

static uint32_t rd_u32(struct rd *r, const char *field)
{
	if (r->failed)
		return 0;
	if (r->left < 4) {
		rd_fail(r, "truncated before %s", field);
		return 0;
	}
	uint32_t v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
	r->p += 4;
	r->left -= 4;
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

/* Validate a list body now, so the iterators cannot fail later. */
static void rd_list(struct rd *r, struct chat_msg *m, int type)
{
	size_t count = rd_u16(r, "entry count");
	const uint8_t *start = r->p;
	char name[CHAT_NAME_MAX + 1];
	char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	size_t n;

	for (size_t i = 0; i < count && !r->failed; i++) {
		switch (type) {
		case CHAT_MSG_WHO_LIST:
			rd_name(r, name, "user", 0);
			rd_suites(r, &n, suites, 0);
			break;
		case CHAT_MSG_MEMBERS:
			rd_name(r, name, "member", 0);
			rd_suites(r, &n, suites, 0);
			break;
		case CHAT_MSG_ROOM_LIST:
			rd_name(r, name, "room", 0);
			rd_u16(r, "member count");
			break;
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
	default: return "UNKNOWN";
	}
}

int chat_msg_parse(size_t len, const uint8_t *src, struct chat_msg *m, size_t errlen, char *err)
{
	struct rd r = { .p = src, .left = len, .err = err, .errlen = errlen, .what = "message" };

	memset(m, 0, sizeof(*m));
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
	case CHAT_MSG_LOGGED_IN:
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
		break;
	case CHAT_MSG_BYE:
		rd_text(&r, m->text, "reason");
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

int chat_iter_who(struct chat_iter *it, char name[CHAT_NAME_MAX + 1], size_t *nsuites,
                  char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1])
{
	if (!it->count)
		return 0;
	it->count--;
	it_str(it, name);
	*nsuites = *it->p++;
	it->left--;
	for (size_t i = 0; i < *nsuites; i++)
		it_str(it, suites[i]);
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
	*members = (unsigned)it->p[0] << 8 | it->p[1];
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
	*len = (size_t)it->p[0] << 24 | (size_t)it->p[1] << 16 | (size_t)it->p[2] << 8 | it->p[3];
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

	if (p) {
		p[0] = (uint8_t)(v >> 8);
		p[1] = (uint8_t)v;
	}
}

void chat_put_u32(struct chat_wbuf *b, uint32_t v)
{
	uint8_t *p = wb_room(b, 4);

	if (p) {
		p[0] = (uint8_t)(v >> 24);
		p[1] = (uint8_t)(v >> 16);
		p[2] = (uint8_t)(v >> 8);
		p[3] = (uint8_t)v;
	}
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
