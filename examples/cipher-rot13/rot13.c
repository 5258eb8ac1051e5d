/* A toy cipher suite written only against the installed SDK, to show (and
 * test) how a third party builds a plugin out of tree:
 *
 *   cc -shared $(pkg-config --cflags chat-plugin) -o cipher-rot13.so rot13.c
 *
 * ROT13 is no encryption at all: the plugin is flagged insecure. */
#include <stdlib.h>
#include <string.h>

#include <chat/plugin.h>

struct rot13 {
	const struct chat_host *host;
	int role;
	int state; /* 0 start, 1 waiting for the peer, 2 established, 3 failed */
};

static const char hello[] = "rot13-hello";
static const char ready[] = "rot13-ready";

static int session_new(const struct chat_host *host, const struct chat_cipher_params *p,
                       void **out)
{
	struct rot13 *s;

	*out = NULL;
	if (!host || !p || (p->role != CHAT_ROLE_INITIATOR && p->role != CHAT_ROLE_RESPONDER))
		return CHAT_ERR_INVALID;
	s = calloc(1, sizeof(*s));
	if (!s)
		return CHAT_ERR_NOMEM;
	s->host = host;
	s->role = p->role;
	*out = s;
	return CHAT_OK;
}

static int put(struct chat_buf *dst, const char *msg)
{
	size_t n = strlen(msg);

	if (dst->cap < n)
		return CHAT_ERR_NOSPACE;
	memcpy(dst->data, msg, n);
	dst->len = n;
	return CHAT_OK;
}

static int handshake(void *session, size_t len, struct chat_buf *dst, const uint8_t *src)
{
	struct rot13 *s = session;
	int rc;

	dst->len = 0;
	if (s->state == 3)
		return CHAT_ERR_FAILED;
	if (s->role == CHAT_ROLE_INITIATOR && s->state == 0 && len == 0) {
		if ((rc = put(dst, hello)) != CHAT_OK)
			return rc;
		s->state = 1;
		return CHAT_HS_CONTINUE;
	}
	if (s->role == CHAT_ROLE_RESPONDER && s->state == 0 &&
	    len == strlen(hello) && memcmp(src, hello, len) == 0) {
		if ((rc = put(dst, ready)) != CHAT_OK)
			return rc;
		s->state = 2;
		return CHAT_HS_ESTABLISHED;
	}
	if (s->role == CHAT_ROLE_INITIATOR && s->state == 1 &&
	    len == strlen(ready) && memcmp(src, ready, len) == 0) {
		s->state = 2;
		return CHAT_HS_ESTABLISHED;
	}
	s->state = 3;
	s->host->log(s->host, CHAT_LOG_WARN, "unexpected handshake message (%zu bytes)", len);
	return CHAT_ERR_STATE;
}

static size_t sealed_size(void *session, size_t len)
{
	(void)session;
	return len;
}

static int rot(void *session, size_t len, struct chat_buf *dst, const uint8_t *src)
{
	struct rot13 *s = session;

	dst->len = 0;
	if (s->state != 2)
		return s->state == 3 ? CHAT_ERR_FAILED : CHAT_ERR_STATE;
	if (dst->cap < len)
		return CHAT_ERR_NOSPACE;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = src[i];
		if (c >= 'a' && c <= 'z')
			c = (uint8_t)('a' + (c - 'a' + 13) % 26);
		else if (c >= 'A' && c <= 'Z')
			c = (uint8_t)('A' + (c - 'A' + 13) % 26);
		dst->data[i] = c;
	}
	dst->len = len;
	return CHAT_OK;
}

static void session_free(void *session)
{
	free(session);
}

static const struct chat_cipher_ops ops = {
	.size = sizeof(struct chat_cipher_ops),
	.session_new = session_new,
	.handshake = handshake,
	.sealed_size = sealed_size,
	.seal = rot,
	.open = rot,
	.fingerprint = NULL, /* nothing to compare: there is no key */
	.session_free = session_free,
};

static const struct chat_plugin plugin = {
	CHAT_PLUGIN_HEADER,
	.kind = CHAT_PLUGIN_CIPHER,
	.flags = CHAT_FLAG_INSECURE,
	.name = "rot13",
	.version = "0.1.0",
	.summary = "ROT13 toy suite built out of tree with the SDK (no security at all)",
	.ops.cipher = &ops,
};

CHAT_PLUGIN_EXPORT const struct chat_plugin *chat_plugin_entry(void)
{
	return &plugin;
}
