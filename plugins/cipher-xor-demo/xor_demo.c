/* xor-demo: the classic "multi-user chat box with single-byte XOR" design,
 * kept so the other suites have something to be compared with.  It is NOT
 * encryption: the one key byte travels in the clear in the handshake, and
 * even without it frequency analysis recovers any English message of a few
 * dozen bytes (tests/test_xor_demo.c does both).  docs/suites/xor-demo.md.
 *
 * Handshake (the initiator speaks once, the responder never):
 *   initiator -> responder: "XORD" || version 0x01 || key byte (6 bytes)
 * Message: every byte XOR the key byte; no header, no integrity, no counter.
 *
 * Saved session (ABI 1.1 session_save/session_load), all lengths big-endian:
 *   "XORS" || version 0x01 || name length || "xor-demo" ||
 *   record length (4) || record || key byte
 * where record = role (1) || lp(suite) || lp(local id) || lp(peer id) ||
 * lp(binding), lp(x) = 4-byte length || x: a copy of the params, so a load
 * with other params is refused.  No open_at: there is no clock to check. */
#include <stdlib.h>
#include <string.h>

#include <chat/plugin.h>

#include "plugin_util.h"

#define XOR_NAME "xor-demo"
#define XOR_MAGIC "XORD"
#define XOR_MAGIC_LEN 4
#define XOR_WIRE_VERSION 1
#define XOR_HS_LEN (XOR_MAGIC_LEN + 2)
/* Each draw is zero with probability 1/256; this many zeros in a row means
 * the random source is broken. */
#define XOR_DRAWS 32
#define XOR_SAVE_MAGIC "XORS"
#define XOR_SAVE_VERSION 1
#define XOR_SAVE_HEAD (XOR_MAGIC_LEN + 2 + sizeof(XOR_NAME) - 1) /* up to the record length */

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
	size_t record_len; /* the params as session_save writes them */
	uint8_t record[];
};

static int xor_host_ok(const struct chat_host *host)
{
	return CHAT_PU_HOST_HAS(host, log) && host->random && host->log;
}

/* Append lp(src) at dst + *o when dst is not NULL; always advance *o. */
static void xor_put_lp(uint8_t *dst, size_t *o, size_t len, const void *src)
{
	if (dst) {
		chat_pu_put_be32(dst + *o, (uint32_t)len);
		if (len)
			memcpy(dst + *o + 4, src, len);
	}
	*o += 4 + len;
}

/* role || lp(suite) || lp(local) || lp(peer) || lp(binding); members a
 * smaller (older) params struct lacks count as empty.  Returns the length;
 * with dst NULL it only measures. */
static size_t xor_record(const struct chat_cipher_params *p, uint8_t *dst)
{
	int full = p->size >= offsetof(struct chat_cipher_params, binding_len) +
	                      sizeof(p->binding_len);
	const char *suite = full && p->suite ? p->suite : XOR_NAME;
	const char *local = full && p->local_id ? p->local_id : "";
	const char *peer = full && p->peer_id ? p->peer_id : "";
	size_t o = 1;

	if (dst)
		dst[0] = (uint8_t)p->role;
	xor_put_lp(dst, &o, strlen(suite), suite);
	xor_put_lp(dst, &o, strlen(local), local);
	xor_put_lp(dst, &o, strlen(peer), peer);
	xor_put_lp(dst, &o, full ? p->binding_len : 0, full ? p->binding : NULL);
	return o;
}

/* A session in XOR_START for these params, with its record. */
static int xor_alloc(const struct chat_host *host, const struct chat_cipher_params *params,
                     struct xor_demo **out)
{
	struct xor_demo *s;
	size_t n;

	*out = NULL;
	if (!xor_host_ok(host) || !params ||
	    params->size < offsetof(struct chat_cipher_params, role) + sizeof(params->role) ||
	    (params->role != CHAT_ROLE_INITIATOR && params->role != CHAT_ROLE_RESPONDER))
		return CHAT_ERR_INVALID;
	if (params->size >= offsetof(struct chat_cipher_params, binding_len) +
	                    sizeof(params->binding_len)) {
		if (params->binding_len && !params->binding)
			return CHAT_ERR_INVALID;
		/* Every lp() length must fit its 4 bytes. */
		if (params->binding_len > UINT32_MAX ||
		    (params->local_id && strlen(params->local_id) > UINT32_MAX) ||
		    (params->peer_id && strlen(params->peer_id) > UINT32_MAX) ||
		    (params->suite && strlen(params->suite) > UINT32_MAX))
			return CHAT_ERR_TOO_BIG;
	}
	n = xor_record(params, NULL);
	s = calloc(1, sizeof(*s) + n);
	if (!s)
		return CHAT_ERR_NOMEM;
	s->host = host;
	s->role = params->role;
	s->state = XOR_START;
	s->record_len = xor_record(params, s->record);
	*out = s;
	return CHAT_OK;
}

static int xor_session_new(const struct chat_host *host, const struct chat_cipher_params *params,
                           void **session)
{
	struct xor_demo *s;
	int rc;

	if (!session)
		return CHAT_ERR_INVALID;
	*session = NULL;
	rc = xor_alloc(host, params, &s);
	if (rc)
		return rc;
	/* No warning here: the frontends warn once per conversation from
	 * CHAT_FLAG_INSECURE and the summary. */
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

static size_t xor_saved_len(const struct xor_demo *s)
{
	return XOR_SAVE_HEAD + 4 + s->record_len + 1;
}

static int xor_session_save(void *session, struct chat_buf *dst)
{
	struct xor_demo *s = session;
	size_t n, o = 0;

	if (dst)
		dst->len = 0;
	if (!s || !dst || (dst->cap && !dst->data))
		return CHAT_ERR_INVALID;
	if (s->state != XOR_ESTABLISHED)
		return s->state == XOR_FAILED ? CHAT_ERR_FAILED : CHAT_ERR_STATE;
	n = xor_saved_len(s);
	if (dst->cap < n)
		return CHAT_ERR_NOSPACE;
	memcpy(dst->data, XOR_SAVE_MAGIC, XOR_MAGIC_LEN);
	o += XOR_MAGIC_LEN;
	dst->data[o++] = XOR_SAVE_VERSION;
	dst->data[o++] = sizeof(XOR_NAME) - 1;
	memcpy(dst->data + o, XOR_NAME, sizeof(XOR_NAME) - 1);
	o += sizeof(XOR_NAME) - 1;
	xor_put_lp(dst->data, &o, s->record_len, s->record);
	dst->data[o++] = s->key;
	dst->len = o;
	return CHAT_OK;
}

static int xor_session_load(const struct chat_host *host, const struct chat_cipher_params *params,
                            size_t src_len, const uint8_t *src, void **session)
{
	struct xor_demo *s;
	int rc;

	if (!session)
		return CHAT_ERR_INVALID;
	*session = NULL;
	if (src_len && !src)
		return CHAT_ERR_INVALID;
	rc = xor_alloc(host, params, &s);
	if (rc)
		return rc;
	/* Exactly one length is right: the head, our record, one key byte. */
	if (src_len != xor_saved_len(s) || memcmp(src, XOR_SAVE_MAGIC, XOR_MAGIC_LEN) != 0 ||
	    src[XOR_MAGIC_LEN] != XOR_SAVE_VERSION ||
	    src[XOR_MAGIC_LEN + 1] != sizeof(XOR_NAME) - 1 ||
	    memcmp(src + XOR_MAGIC_LEN + 2, XOR_NAME, sizeof(XOR_NAME) - 1) != 0 ||
	    chat_pu_get_be32(src + XOR_SAVE_HEAD) != s->record_len ||
	    memcmp(src + XOR_SAVE_HEAD + 4, s->record, s->record_len) != 0 ||
	    src[src_len - 1] == 0) {
		host->log(host, CHAT_LOG_WARN,
		          "saved session refused (%zu bytes): not an xor-demo session saved "
		          "with these ids, role and binding", src_len);
		free(s);
		return CHAT_ERR_MALFORMED;
	}
	s->key = src[src_len - 1];
	s->state = XOR_ESTABLISHED;
	*session = s;
	return CHAT_OK;
}

static void xor_session_free(void *session)
{
	struct xor_demo *s = session;

	if (!s)
		return;
	explicit_bzero(s, sizeof(*s) + s->record_len);
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
	.session_save = xor_session_save,
	.session_load = xor_session_load,
	.open_at = NULL, /* no time check: the core calls open() */
};

static const struct chat_plugin xor_plugin = {
	CHAT_PLUGIN_HEADER,
	.kind = CHAT_PLUGIN_CIPHER,
	.flags = CHAT_FLAG_INSECURE,
	.name = XOR_NAME,
	.version = "1.0.0",
	/* The frontends quote this in their warning: say what a user can do. */
	.summary = "single-byte XOR with the key sent in the clear: no security at all; "
	           "comparing fingerprints reveals nothing",
	.config_keys = NULL,
	.ops.cipher = &xor_ops,
};

CHAT_PLUGIN_EXPORT const struct chat_plugin *chat_plugin_entry(void)
{
	return &xor_plugin;
}
