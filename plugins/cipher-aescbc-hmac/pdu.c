/* The JSON PDU codec of aescbc-hmac (format: docs/suites/aescbc-hmac.md).
 *
 * Parsing is strict: a size cap and a nesting pre-scan before jansson sees
 * the bytes, duplicate keys rejected, exactly the expected keys with exactly
 * the expected types, lowercase names only, canonical base64 and lowercase
 * hex.  No keys live here: the caller verifies MACs and proofs. */
#include "aescbc_hmac.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <nettle/base16.h>
#include <nettle/base64.h>
#include <zlib.h>

#define B64_FIXED 44 /* base64 of 32 bytes */

static const char *const type_names[] = {
	[ACH_T_TEXT] = "text",
	[ACH_T_HELLO] = "hello",
	[ACH_T_CHALLENGE] = "challenge",
	[ACH_T_RESPONSE] = "response",
	[ACH_T_ACK] = "ack",
	[ACH_T_NACK] = "nack",
};

#define N_TYPES (sizeof(type_names) / sizeof(type_names[0]))

const char *ach_type_name(int type)
{
	if (type <= 0 || (size_t)type >= N_TYPES)
		return "?";
	return type_names[type];
}

/* Exact match only: "Hello" or "TEXT" is malformed, not a synonym. */
static int type_from_name(const char *s)
{
	for (size_t i = 1; i < N_TYPES; i++)
		if (strcmp(s, type_names[i]) == 0)
			return (int)i;
	return 0;
}

/* jansson's own limit is 2048 levels; ours is far lower because no PDU needs
 * more than 3 and a deep document costs the parser stack and heap. */
int ach_json_depth_ok(size_t len, const uint8_t *src, unsigned max_depth)
{
	unsigned depth = 0;
	bool in_str = false, esc = false;

	for (size_t i = 0; i < len; i++) {
		uint8_t c = src[i];

		if (in_str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
			continue;
		}
		if (c == '"') {
			in_str = true;
		} else if (c == '{' || c == '[') {
			if (++depth > max_depth)
				return 0;
		} else if ((c == '}' || c == ']') && depth > 0) {
			depth--;
		}
	}
	return 1;
}

/* CRC-32 (zlib) over msg_type "\n" timestamp "\n" seq "\n" body, the numbers
 * in decimal and the body re-serialized by jansson (compact, sorted keys):
 * both ends can compute it from the parsed values, whatever whitespace or
 * key order the sender used. */
static int pdu_crc(const char *msg_type, int64_t timestamp, uint64_t seq, const json_t *body,
                   uint32_t *crc)
{
	char head[96];
	char *text;
	uLong c;
	int n;

	n = snprintf(head, sizeof(head), "%s\n%" PRId64 "\n%" PRIu64 "\n", msg_type, timestamp, seq);
	if (n < 0 || (size_t)n >= sizeof(head))
		return CHAT_ERR_INVALID;
	text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	if (!text)
		return CHAT_ERR_NOMEM;
	c = crc32_z(0L, Z_NULL, 0);
	c = crc32_z(c, (const Bytef *)head, (size_t)n);
	c = crc32_z(c, (const Bytef *)text, strlen(text));
	free(text);
	*crc = (uint32_t)c;
	return CHAT_OK;
}

/* Canonical base64 only: the re-encoding must give back the same text, so
 * whitespace, missing padding and non-zero trailing bits are all refused. */
static int b64_decode(size_t slen, const char *s, size_t cap, uint8_t *dst, size_t *out)
{
	struct base64_decode_ctx ctx;
	char *again = NULL;
	size_t n = 0;
	int rc = CHAT_ERR_MALFORMED;

	if (slen % 4 || BASE64_DECODE_LENGTH(slen) > cap)
		goto out;
	base64_decode_init(&ctx);
	if (!base64_decode_update(&ctx, &n, dst, slen, s) || !base64_decode_final(&ctx))
		goto out;
	if (BASE64_ENCODE_RAW_LENGTH(n) != slen)
		goto out;
	again = malloc(slen ? slen : 1);
	if (!again) {
		rc = CHAT_ERR_NOMEM;
		goto out;
	}
	base64_encode_raw(again, n, dst);
	if (memcmp(again, s, slen) != 0)
		goto out;
	*out = n;
	rc = CHAT_OK;
out:
	free(again);
	return rc;
}

static int b64_fixed(const json_t *v, uint8_t dst[32])
{
	uint8_t tmp[BASE64_DECODE_LENGTH(B64_FIXED)];
	size_t n;

	if (!json_is_string(v) || json_string_length(v) != B64_FIXED)
		return CHAT_ERR_MALFORMED;
	if (b64_decode(B64_FIXED, json_string_value(v), sizeof(tmp), tmp, &n) < 0 || n != 32)
		return CHAT_ERR_MALFORMED;
	memcpy(dst, tmp, 32);
	return CHAT_OK;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* uppercase too: the format says lowercase */
}

static int hex_decode(size_t slen, const char *s, size_t len, uint8_t *dst)
{
	if (slen != 2 * len)
		return CHAT_ERR_MALFORMED;
	for (size_t i = 0; i < len; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return CHAT_ERR_MALFORMED;
		dst[i] = (uint8_t)(hi << 4 | lo);
	}
	return CHAT_OK;
}

static bool is_string_eq(const json_t *v, const char *want)
{
	return json_is_string(v) && strcmp(json_string_value(v), want) == 0;
}

void ach_pdu_clear(struct ach_pdu *pdu)
{
	if (!pdu)
		return;
	free(pdu->body);
	memset(pdu, 0, sizeof(*pdu));
}

#define FAIL(code, text) do { rc = (code); *why = (text); goto out; } while (0)

static int parse_hs_body(const json_t *body, struct ach_pdu *pdu, const char **why)
{
	const json_t *user, *ch, *proof;
	size_t want = pdu->type == ACH_T_HELLO ? 2 : pdu->type == ACH_T_CHALLENGE ? 3 : 1;
	int rc = CHAT_OK;

	if (json_object_size(body) != want)
		FAIL(CHAT_ERR_MALFORMED, "unexpected or missing keys in the body");
	if (pdu->type == ACH_T_RESPONSE) {
		proof = json_object_get(body, "proof_i");
		if (!proof || b64_fixed(proof, pdu->proof) < 0)
			FAIL(CHAT_ERR_MALFORMED, "bad proof_i");
		goto out;
	}
	user = json_object_get(body, "username");
	ch = json_object_get(body, "challenge");
	if (!json_is_string(user) || json_string_length(user) == 0 ||
	    json_string_length(user) > ACH_USER_MAX)
		FAIL(CHAT_ERR_MALFORMED, "bad username");
	memcpy(pdu->username, json_string_value(user), json_string_length(user) + 1);
	if (!ch || b64_fixed(ch, pdu->challenge) < 0)
		FAIL(CHAT_ERR_MALFORMED, "bad challenge");
	if (pdu->type == ACH_T_CHALLENGE) {
		proof = json_object_get(body, "proof_r");
		if (!proof || b64_fixed(proof, pdu->proof) < 0)
			FAIL(CHAT_ERR_MALFORMED, "bad proof_r");
	}
out:
	return rc;
}

static int parse_security(const json_t *sec, struct ach_pdu *pdu, const char **why)
{
	const json_t *hmac, *val;
	int rc = CHAT_OK;

	if (!json_is_object(sec) || json_object_size(sec) != 2)
		FAIL(CHAT_ERR_MALFORMED, "bad security object");
	if (!is_string_eq(json_object_get(sec, "enc_type"), "AES256CBC"))
		FAIL(CHAT_ERR_MALFORMED, "enc_type is not AES256CBC");
	hmac = json_object_get(sec, "hmac");
	if (!json_is_object(hmac) || json_object_size(hmac) != 2)
		FAIL(CHAT_ERR_MALFORMED, "bad hmac object");
	if (!is_string_eq(json_object_get(hmac, "hmac_type"), "SHA256"))
		FAIL(CHAT_ERR_MALFORMED, "hmac_type is not SHA256");
	val = json_object_get(hmac, "hmac_val");
	if (!json_is_string(val) ||
	    hex_decode(json_string_length(val), json_string_value(val), ACH_MAC_LEN, pdu->mac) < 0)
		FAIL(CHAT_ERR_MALFORMED, "hmac_val is not 64 lowercase hex digits");
out:
	return rc;
}

static int parse_text_body(const json_t *body, struct ach_pdu *pdu, const char **why)
{
	size_t slen = json_string_length(body), n = 0;
	int rc = CHAT_OK;

	pdu->body = malloc(BASE64_DECODE_LENGTH(slen) + 1);
	if (!pdu->body)
		FAIL(CHAT_ERR_NOMEM, "out of memory");
	rc = b64_decode(slen, json_string_value(body), BASE64_DECODE_LENGTH(slen) + 1, pdu->body, &n);
	if (rc < 0)
		FAIL(rc, "body is not canonical base64");
	/* IV and at least one block: PKCS#7 always adds one. */
	if (n < 2 * ACH_BLOCK || n % ACH_BLOCK)
		FAIL(CHAT_ERR_MALFORMED, "body is not IV plus whole AES blocks");
	pdu->body_len = n;
out:
	return rc;
}

int ach_pdu_parse(size_t max, size_t len, const uint8_t *src, struct ach_pdu *pdu,
                  const char **why)
{
	json_t *root = NULL;
	const json_t *header, *body, *mt, *crc, *ts, *seq;
	json_error_t jerr;
	uint32_t want_crc;
	int rc = CHAT_OK;

	memset(pdu, 0, sizeof(*pdu));
	*why = "";
	if (len > max)
		FAIL(CHAT_ERR_TOO_BIG, "PDU over the size limit");
	if (!src || len == 0)
		FAIL(CHAT_ERR_MALFORMED, "empty PDU");
	if (!ach_json_depth_ok(len, src, ACH_JSON_DEPTH_MAX))
		FAIL(CHAT_ERR_MALFORMED, "JSON nested too deeply");
	root = json_loadb((const char *)src, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		FAIL(CHAT_ERR_MALFORMED, "not a JSON document (or a duplicate key)");
	if (!json_is_object(root))
		FAIL(CHAT_ERR_MALFORMED, "not a JSON object");

	header = json_object_get(root, "header");
	if (!json_is_object(header) || json_object_size(header) != 4)
		FAIL(CHAT_ERR_MALFORMED, "bad header object");
	mt = json_object_get(header, "msg_type");
	crc = json_object_get(header, "crc");
	ts = json_object_get(header, "timestamp");
	seq = json_object_get(header, "seq");
	if (!json_is_string(mt) || !json_is_integer(crc) || !json_is_integer(ts) ||
	    !json_is_integer(seq))
		FAIL(CHAT_ERR_MALFORMED, "missing or mistyped header field");
	pdu->type = type_from_name(json_string_value(mt));
	if (!pdu->type)
		FAIL(CHAT_ERR_MALFORMED, "unknown msg_type");
	if (json_integer_value(crc) < 0 || json_integer_value(crc) > 0xffffffffLL)
		FAIL(CHAT_ERR_MALFORMED, "crc out of range");
	if (json_integer_value(seq) < 0)
		FAIL(CHAT_ERR_MALFORMED, "negative seq");
	pdu->crc = (uint32_t)json_integer_value(crc);
	pdu->timestamp = (int64_t)json_integer_value(ts);
	pdu->seq = (uint64_t)json_integer_value(seq);

	body = json_object_get(root, "body");
	if (pdu->type == ACH_T_TEXT) {
		if (json_object_size(root) != 3 || !json_is_string(body))
			FAIL(CHAT_ERR_MALFORMED, "a text PDU has header, body (a string) and security");
	} else if (pdu->type == ACH_T_ACK || pdu->type == ACH_T_NACK) {
		if (json_object_size(root) != 2 || !json_is_null(body))
			FAIL(CHAT_ERR_MALFORMED, "an ack/nack PDU has header and a null body");
	} else if (json_object_size(root) != 2 || !json_is_object(body)) {
		FAIL(CHAT_ERR_MALFORMED, "a handshake PDU has header and an object body");
	}

	/* The CRC before the contents: an accident in the body shows as an
	 * integrity error, not as whatever the damaged field looks like. */
	rc = pdu_crc(json_string_value(mt), pdu->timestamp, pdu->seq, body, &want_crc);
	if (rc < 0)
		FAIL(rc, "cannot compute the CRC");
	if (want_crc != pdu->crc)
		FAIL(CHAT_ERR_INTEGRITY, "CRC mismatch");

	if (pdu->type == ACH_T_TEXT) {
		rc = parse_security(json_object_get(root, "security"), pdu, why);
		if (rc == CHAT_OK)
			rc = parse_text_body(body, pdu, why);
	} else if (pdu->type != ACH_T_ACK && pdu->type != ACH_T_NACK) {
		rc = parse_hs_body(body, pdu, why);
	}
out:
	json_decref(root);
	if (rc < 0) {
		free(pdu->body);
		memset(pdu, 0, sizeof(*pdu));
	}
	return rc;
}

#undef FAIL

static json_t *b64_string(size_t len, const uint8_t *src)
{
	size_t n = BASE64_ENCODE_RAW_LENGTH(len);
	char *text = malloc(n ? n : 1);
	json_t *s;

	if (!text)
		return NULL;
	base64_encode_raw(text, len, src);
	s = json_stringn(text, n);
	free(text);
	return s;
}

/* Wrap body (reference stolen) in a PDU and serialize it into dst. */
static int finish(int type, int64_t timestamp, uint64_t seq, json_t *body, json_t *security,
                  struct chat_buf *dst)
{
	json_t *root = NULL;
	uint32_t crc;
	size_t n;
	int rc;

	if (!body) {
		json_decref(security);
		return CHAT_ERR_NOMEM;
	}
	rc = pdu_crc(ach_type_name(type), timestamp, seq, body, &crc);
	if (rc < 0) {
		json_decref(body);
		json_decref(security);
		return rc;
	}
	/* json_pack steals "o" references, also when it fails. */
	if (security)
		root = json_pack("{s:{s:s,s:I,s:I,s:I},s:o,s:o}", "header",
		                 "msg_type", ach_type_name(type), "crc", (json_int_t)crc,
		                 "timestamp", (json_int_t)timestamp, "seq", (json_int_t)seq,
		                 "body", body, "security", security);
	else
		root = json_pack("{s:{s:s,s:I,s:I,s:I},s:o}", "header",
		                 "msg_type", ach_type_name(type), "crc", (json_int_t)crc,
		                 "timestamp", (json_int_t)timestamp, "seq", (json_int_t)seq,
		                 "body", body);
	if (!root)
		return CHAT_ERR_NOMEM;
	n = json_dumpb(root, NULL, 0, JSON_COMPACT);
	if (n == 0) {
		rc = CHAT_ERR_NOMEM;
	} else if (n > dst->cap) {
		rc = CHAT_ERR_NOSPACE;
	} else {
		json_dumpb(root, (char *)dst->data, dst->cap, JSON_COMPACT);
		dst->len = n;
		rc = CHAT_OK;
	}
	json_decref(root);
	return rc;
}

int ach_pdu_build_hs(int type, int64_t timestamp, uint64_t seq, const char *username,
                     const uint8_t *challenge, const uint8_t *proof, struct chat_buf *dst)
{
	json_t *body;

	dst->len = 0;
	if (seq > (uint64_t)ACH_SEQ_MAX)
		return CHAT_ERR_INVALID;
	switch (type) {
	case ACH_T_HELLO:
		body = json_pack("{s:s,s:o}", "username", username,
		                 "challenge", b64_string(ACH_CHALLENGE_LEN, challenge));
		break;
	case ACH_T_CHALLENGE:
		body = json_pack("{s:s,s:o,s:o}", "username", username,
		                 "challenge", b64_string(ACH_CHALLENGE_LEN, challenge),
		                 "proof_r", b64_string(ACH_MAC_LEN, proof));
		break;
	case ACH_T_RESPONSE:
		body = json_pack("{s:o}", "proof_i", b64_string(ACH_MAC_LEN, proof));
		break;
	case ACH_T_ACK:
	case ACH_T_NACK:
		body = json_null();
		break;
	default:
		return CHAT_ERR_INVALID;
	}
	return finish(type, timestamp, seq, body, NULL, dst);
}

int ach_pdu_build_text(int64_t timestamp, uint64_t seq, size_t body_len, const uint8_t *body,
                       const uint8_t mac[ACH_MAC_LEN], struct chat_buf *dst)
{
	char hex[2 * ACH_MAC_LEN + 1];
	json_t *security;

	dst->len = 0;
	if (seq > (uint64_t)ACH_SEQ_MAX)
		return CHAT_ERR_INVALID;
	base16_encode_update(hex, ACH_MAC_LEN, mac); /* Nettle writes lowercase */
	hex[2 * ACH_MAC_LEN] = '\0';
	security = json_pack("{s:{s:s,s:s},s:s}", "hmac", "hmac_type", "SHA256", "hmac_val", hex,
	                     "enc_type", "AES256CBC");
	if (!security)
		return CHAT_ERR_NOMEM;
	return finish(ACH_T_TEXT, timestamp, seq, b64_string(body_len, body), security, dst);
}

/* The widest text PDU with an empty body; a real one differs only in the
 * digits of crc, timestamp and seq and in the body text (base64 needs no JSON
 * escapes), so this plus the base64 length is a true upper bound. */
#define TEXT_TEMPLATE \
	"{\"header\":{\"msg_type\":\"text\",\"crc\":4294967295," \
	"\"timestamp\":-9223372036854775808,\"seq\":9223372036854775807}," \
	"\"body\":\"\",\"security\":{\"hmac\":{\"hmac_type\":\"SHA256\",\"hmac_val\":\"" \
	"0000000000000000000000000000000000000000000000000000000000000000" \
	"\"},\"enc_type\":\"AES256CBC\"}}"

size_t ach_pdu_text_bound(size_t body_len)
{
	if (body_len > SIZE_MAX / 2)
		return SIZE_MAX;
	return sizeof(TEXT_TEMPLATE) - 1 + BASE64_ENCODE_RAW_LENGTH(body_len);
}
