/* xor-demo: the classic "multi-user chat box with single-byte XOR" design,
 * kept so the other suites have something to be compared with.  It is NOT
 * encryption: the one key byte travels in the clear in the handshake, and
 * even without it frequency analysis recovers any English message of a few
 * dozen bytes (tests/test_xor_demo.c does both).  docs/suites/xor-demo.md.
 *
 * Handshake (the initiator speaks once, the responder never):
 *   initiator -> responder: "XORD" || version 0x01 || key byte (6 bytes)
 * Message: every byte XOR the key byte; no header, no integrity, no counter. */
#include <stdlib.h>
#include <string.h>

#include <chat/plugin.h>

#define XOR_NAME "xor-demo"
#define XOR_MAGIC "XORD"
#define XOR_MAGIC_LEN 4
#define XOR_WIRE_VERSION 1
#define XOR_HS_LEN (XOR_MAGIC_LEN + 2)
/* Each draw is zero with probability 1/256; this many zeros in a row means
 * the random source is broken. */
#define XOR_DRAWS 32

enum xor_state {
	XOR_START = 0,
	XOR_ESTABLISHED,
	XOR_FAILED,
};

struct xor_demo {
	const struct chat_host *host;
	int role;
	int state; /* enum xor_state */
	uint8_t key;
};

static int xor_host_ok(const struct chat_host *host)
{
	return host && host->size >= offsetof(struct chat_host, log) + sizeof(host->log) &&
	       host->random && host->log;
}

static int xor_session_new(const struct chat_host *host, const struct chat_cipher_params *params,
                           void **session)
{
	struct xor_demo *s;

	if (session)
		*session = NULL;
	if (!xor_host_ok(host) || !params || !session ||
	    params->size < offsetof(struct chat_cipher_params, role) + sizeof(params->role) ||
	    (params->role != CHAT_ROLE_INITIATOR && params->role != CHAT_ROLE_RESPONDER))
		return CHAT_ERR_INVALID;
	s = calloc(1, sizeof(*s));
	if (!s)
		return CHAT_ERR_NOMEM;
	s->host = host;
	s->role = params->role;
	s->state = XOR_START;
	host->log(host, CHAT_LOG_WARN,
	          "xor-demo is INSECURE: the key travels in the clear in the handshake and "
	          "single-byte XOR falls to frequency analysis anyway; "
	          "for demonstration only");
	*session = s;
	return CHAT_OK;
}

static int xor_fail(struct xor_demo *s, int rc)
{
	s->state = XOR_FAILED;
	s->key = 0;
	return rc;
}

/* A zero key would send every message as plaintext, so zero is drawn again;
 * the key is then uniform over 1..255. */
static int xor_draw_key(struct xor_demo *s)
{
	uint8_t k = 0;

	for (int i = 0; i < XOR_DRAWS && k == 0; i++) {
		if (s->host->random(s->host, 1, &k)) {
			s->host->log(s->host, CHAT_LOG_ERROR, "random source failed");
			return CHAT_ERR_RANDOM;
		}
	}
	if (k == 0) {
		s->host->log(s->host, CHAT_LOG_ERROR,
		             "random source returned %d zero bytes in a row", XOR_DRAWS);
		return CHAT_ERR_RANDOM;
	}
	s->key = k;
	return CHAT_OK;
}

static int xor_handshake(void *session, size_t src_len, struct chat_buf *dst, const uint8_t *src)
{
	struct xor_demo *s = session;
	int rc;

	if (dst)
		dst->len = 0;
	if (!s || (src_len && !src))
		return CHAT_ERR_INVALID;

	switch (s->state) {
	case XOR_START:
		if (s->role == CHAT_ROLE_INITIATOR) {
			if (src_len != 0) {
				s->host->log(s->host, CHAT_LOG_WARN,
				             "initiator received a message before speaking");
				return xor_fail(s, CHAT_ERR_STATE);
			}
			if (!dst || !dst->data)
				return CHAT_ERR_INVALID;
			/* Before drawing, so a retry with room finds nothing consumed. */
			if (dst->cap < XOR_HS_LEN)
				return CHAT_ERR_NOSPACE;
			rc = xor_draw_key(s);
			if (rc)
				return xor_fail(s, rc);
			memcpy(dst->data, XOR_MAGIC, XOR_MAGIC_LEN);
			dst->data[XOR_MAGIC_LEN] = XOR_WIRE_VERSION;
			dst->data[XOR_MAGIC_LEN + 1] = s->key; /* in the clear: that is the point */
			dst->len = XOR_HS_LEN;
			s->state = XOR_ESTABLISHED;
			return CHAT_HS_ESTABLISHED;
		}
		if (src_len == 0) {
			s->host->log(s->host, CHAT_LOG_WARN, "responder asked to speak first");
			return xor_fail(s, CHAT_ERR_STATE);
		}
		if (src_len != XOR_HS_LEN || memcmp(src, XOR_MAGIC, XOR_MAGIC_LEN) != 0 ||
		    src[XOR_MAGIC_LEN] != XOR_WIRE_VERSION) {
			s->host->log(s->host, CHAT_LOG_WARN,
			             "malformed handshake message (%zu bytes)", src_len);
			return xor_fail(s, CHAT_ERR_MALFORMED);
		}
		if (src[XOR_MAGIC_LEN + 1] == 0) {
			s->host->log(s->host, CHAT_LOG_WARN,
			             "peer chose key 0 (which would send plaintext)");
			return xor_fail(s, CHAT_ERR_PEER_VALUE);
		}
		s->key = src[XOR_MAGIC_LEN + 1];
		s->state = XOR_ESTABLISHED;
		return CHAT_HS_ESTABLISHED;

	case XOR_ESTABLISHED:
		s->host->log(s->host, CHAT_LOG_WARN, "handshake message after the handshake");
		return xor_fail(s, CHAT_ERR_STATE);

	default:
		return CHAT_ERR_FAILED;
	}
}

static size_t xor_sealed_size(void *session, size_t len)
{
	(void)session;
	return len;
}

/* seal and open are the same operation; there is nothing to verify. */
static int xor_apply(void *session, size_t src_len, struct chat_buf *dst, const uint8_t *src)
{
	struct xor_demo *s = session;

	if (dst)
		dst->len = 0;
	if (!s || !dst || (dst->cap && !dst->data) || (src_len && !src))
		return CHAT_ERR_INVALID;
	if (s->state != XOR_ESTABLISHED)
		return s->state == XOR_FAILED ? CHAT_ERR_FAILED : CHAT_ERR_STATE;
	if (dst->cap < src_len)
		return CHAT_ERR_NOSPACE;
	for (size_t i = 0; i < src_len; i++)
		dst->data[i] = src[i] ^ s->key;
	dst->len = src_len;
	return CHAT_OK;
}

/* Honest about what it is: the same on both ends, and equally visible to
 * everyone on the wire. */
static int xor_fingerprint(void *session, size_t cap, char *dst)
{
	static const char hex[] = "0123456789abcdef";
	static const char head[] = "xor-demo key 0x";
	static const char tail[] = " (no security)";
	struct xor_demo *s = session;
	size_t n = sizeof(head) - 1 + 2 + sizeof(tail); /* with the NUL */

	if (dst && cap)
		dst[0] = '\0';
	if (!s || !dst)
		return CHAT_ERR_INVALID;
	if (s->state != XOR_ESTABLISHED)
		return s->state == XOR_FAILED ? CHAT_ERR_FAILED : CHAT_ERR_STATE;
	if (cap < n)
		return CHAT_ERR_NOSPACE;
	memcpy(dst, head, sizeof(head) - 1);
	dst[sizeof(head) - 1] = hex[s->key >> 4];
	dst[sizeof(head)] = hex[s->key & 15];
	memcpy(dst + sizeof(head) + 1, tail, sizeof(tail));
	return CHAT_OK;
}

static void xor_session_free(void *session)
{
	struct xor_demo *s = session;

	if (!s)
		return;
	explicit_bzero(s, sizeof(*s));
	free(s);
}

static const struct chat_cipher_ops xor_ops = {
	.size = sizeof(struct chat_cipher_ops),
	.session_new = xor_session_new,
	.handshake = xor_handshake,
	.sealed_size = xor_sealed_size,
	.seal = xor_apply,
	.open = xor_apply,
	.fingerprint = xor_fingerprint,
	.session_free = xor_session_free,
};

static const struct chat_plugin xor_plugin = {
	CHAT_PLUGIN_HEADER,
	.kind = CHAT_PLUGIN_CIPHER,
	.flags = CHAT_FLAG_INSECURE,
	.name = XOR_NAME,
	.version = "1.0.0",
	.summary = "single-byte XOR with the key sent in the clear: no security at all",
	.config_keys = NULL,
	.ops.cipher = &xor_ops,
};

CHAT_PLUGIN_EXPORT const struct chat_plugin *chat_plugin_entry(void)
{
	return &xor_plugin;
}
