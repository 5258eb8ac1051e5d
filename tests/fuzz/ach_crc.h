/* For the aescbc-hmac harnesses: set a PDU's header.crc to the right value
 * (the formula of plugins/cipher-aescbc-hmac/pdu.c, docs/suites/aescbc-hmac.md)
 * so that a changed PDU gets past the CRC to the checks behind it. */
#ifndef CHAT_FUZZ_ACH_CRC_H
#define CHAT_FUZZ_ACH_CRC_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zlib.h>

#include "aescbc_hmac.h"

/* *res: the PDU serialized again with the right CRC (malloc'd), or -1 if
 * src is not an object with a header holding msg_type, timestamp and seq. */
static int ach_fix_crc(size_t len, const uint8_t *src, char **res)
{
	json_error_t jerr;
	json_t *root, *header, *mt, *ts, *seq;
	char head[96], *text;
	uLong c;

	*res = NULL;
	if (!ach_json_depth_ok(len, src, ACH_JSON_DEPTH_MAX))
		return -1;
	root = json_loadb((const char *)src, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return -1;
	header = json_object_get(root, "header");
	mt = json_object_get(header, "msg_type");
	ts = json_object_get(header, "timestamp");
	seq = json_object_get(header, "seq");
	if (!json_is_object(header) || !json_is_string(mt) || !json_is_integer(ts) ||
	    !json_is_integer(seq)) {
		json_decref(root);
		return -1;
	}
	int n = snprintf(head, sizeof(head), "%s\n%" PRId64 "\n%" PRIu64 "\n", json_string_value(mt),
	                 (int64_t)json_integer_value(ts), (uint64_t)json_integer_value(seq));
	text = json_dumps(json_object_get(root, "body"), JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	if (n < 0 || (size_t)n >= sizeof(head) || !text) {
		free(text);
		json_decref(root);
		return -1;
	}
	c = crc32_z(0L, Z_NULL, 0);
	c = crc32_z(c, (const Bytef *)head, (size_t)n);
	c = crc32_z(c, (const Bytef *)text, strlen(text));
	free(text);
	json_object_set_new(header, "crc", json_integer((json_int_t)c));
	*res = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return *res ? 0 : -1;
}

#endif
