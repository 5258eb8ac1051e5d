/* The JSON PDUs of the aescbc-hmac suite (plugins/cipher-aescbc-hmac/pdu.c:
 * ach_pdu_parse), what every handshake and text message of that suite goes
 * through first.  Input: u8 mode, then the PDU.  Mode bit 0 fixes up the
 * CRC: if the input is a JSON object with a header holding msg_type,
 * timestamp and seq, the harness sets header.crc to the right value (and
 * serializes it again), so the fuzzer reaches the body and security checks.
 * Invariants: a parsed PDU builds again (ach_pdu_build_hs / _text) into one
 * that parses to the same fields, within ach_pdu_text_bound for text. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zlib.h>

#include "ach_crc.h"
#include "aescbc_hmac.h"
#include "fuzz.h"

static void same(const struct ach_pdu *a, const struct ach_pdu *b)
{
	FUZZ_CHECK(a->type == b->type && a->timestamp == b->timestamp && a->seq == b->seq);
	FUZZ_CHECK(strcmp(a->username, b->username) == 0);
	FUZZ_CHECK(memcmp(a->challenge, b->challenge, sizeof(a->challenge)) == 0);
	FUZZ_CHECK(memcmp(a->proof, b->proof, sizeof(a->proof)) == 0);
	FUZZ_CHECK(memcmp(a->mac, b->mac, sizeof(a->mac)) == 0);
	FUZZ_CHECK(a->body_len == b->body_len);
	FUZZ_CHECK(!a->body_len || memcmp(a->body, b->body, a->body_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ach_pdu pdu, again;
	const char *why;
	char *fixed = NULL;
	static uint8_t buf[1 << 20];
	struct chat_buf dst = { .data = buf, .cap = sizeof(buf) };
	int rc;

	fuzz_init();
	if (size < 1)
		return 0;
	if ((data[0] & 1) && ach_fix_crc(size - 1, data + 1, &fixed) == 0) {
		rc = ach_pdu_parse(ACH_HS_PDU_MAX * 64, strlen(fixed), (const uint8_t *)fixed, &pdu, &why);
		FUZZ_CHECK(rc != CHAT_ERR_INTEGRITY);
	} else {
		rc = ach_pdu_parse(ACH_HS_PDU_MAX * 64, size - 1, data + 1, &pdu, &why);
	}
	free(fixed);
	if (rc != CHAT_OK) {
		FUZZ_CHECK(why && why[0]);
		return 0;
	}
	FUZZ_CHECK(pdu.type >= ACH_T_TEXT && pdu.type <= ACH_T_NACK);
	FUZZ_CHECK(strcmp(ach_type_name(pdu.type), "?") != 0);
	if (pdu.type == ACH_T_TEXT) {
		FUZZ_CHECK(pdu.body_len >= 32 && pdu.body_len % 16 == 0);
		rc = ach_pdu_build_text(pdu.timestamp, pdu.seq, pdu.body_len, pdu.body, pdu.mac, &dst);
		FUZZ_CHECK(rc == CHAT_OK);
		FUZZ_CHECK(dst.len <= ach_pdu_text_bound(pdu.body_len));
	} else {
		rc = ach_pdu_build_hs(pdu.type, pdu.timestamp, pdu.seq, pdu.username, pdu.challenge,
		                      pdu.proof, &dst);
		FUZZ_CHECK(rc == CHAT_OK);
	}
	rc = ach_pdu_parse(sizeof(buf), dst.len, dst.data, &again, &why);
	FUZZ_CHECK(rc == CHAT_OK);
	same(&pdu, &again);
	ach_pdu_clear(&pdu);
	ach_pdu_clear(&again);
	return 0;
}

void fuzz_seeds(const char *dir)
{
	uint8_t ch[32], proof[32], body[48], mac[32];
	static uint8_t out[4096], seed[4097];
	struct chat_buf dst = { .data = out, .cap = sizeof(out) };
	const int types[] = { ACH_T_HELLO, ACH_T_CHALLENGE, ACH_T_RESPONSE, ACH_T_ACK, ACH_T_NACK };
	char name[32];

	memset(ch, 0xc1, sizeof(ch));
	memset(proof, 0x9f, sizeof(proof));
	memset(body, 0x42, sizeof(body));
	memset(mac, 0x0d, sizeof(mac));
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (ach_pdu_build_hs(types[i], 1700000000000, i, "alice", ch, proof, &dst) != CHAT_OK)
			abort();
		seed[0] = (uint8_t)(i & 1);
		memcpy(seed + 1, dst.data, dst.len);
		snprintf(name, sizeof(name), "%s", ach_type_name(types[i]));
		fuzz_write_seed(dir, name, dst.len + 1, seed);
	}
	if (ach_pdu_build_text(1700000000001, 7, sizeof(body), body, mac, &dst) != CHAT_OK)
		abort();
	seed[0] = 1;
	memcpy(seed + 1, dst.data, dst.len);
	fuzz_write_seed(dir, "text", dst.len + 1, seed);
	seed[0] = 0;
	fuzz_write_seed(dir, "text_plain", dst.len + 1, seed);
}
