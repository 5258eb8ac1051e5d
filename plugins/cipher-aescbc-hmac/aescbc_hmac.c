/* aescbc-hmac: password-authenticated chat messages (SEEDS.md item 3).
 *
 * Both users share a password.  PBKDF2 turns it into a master key per
 * handshake (salted with both usernames and both challenges); a CHAP exchange (a random challenge each way, an HMAC proof each
 * way) shows each side that the other knows it and binds the negotiated suite
 * lists; HKDF over both challenges gives fresh AES-256-CBC and HMAC-SHA256
 * keys per direction.  Every PDU is a JSON object with a CRC-32 and a
 * timestamp; messages are encrypt-then-MAC with a strict sequence number.
 * Format, state machines and weaknesses: docs/suites/aescbc-hmac.md.
 *
 * Choices a caller can rely on:
 * - Handshake errors are final (the ABI says so), except CHAT_ERR_NOSPACE and
 *   CHAT_ERR_INVALID (NULL arguments), which consume nothing.
 * - open() drops a bad message (CHAT_ERR_MALFORMED, _INTEGRITY, _REPLAY,
 *   _STALE, _TOO_BIG, and _STATE for an unauthenticated handshake PDU arriving
 *   after the handshake) but keeps the session: one injected PDU must not
 *   kill it.  Calling seal/open before the handshake completed fails it.
 * - sealed_size() returns 0 for a message over ACH_MSG_MAX (seal says
 *   CHAT_ERR_TOO_BIG).
 * - session_save keeps only what seal/open need (the four keys, both
 *   sequence numbers, the fingerprint), never the master key or the
 *   challenges; session_load needs no password and runs no PBKDF2.
 * - open_at is open with the freshness window measured from the time the
 *   relay stored the message instead of our clock. */
#include "aescbc_hmac.h"
#include "plugin_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <nettle/memops.h>

/* A host table from an older core may end before the members we use. */
static bool host_ok(const struct chat_host *host)
{
	return CHAT_PU_HOST_HAS(host, wipe) && host->random && host->unix_ms;
}

/* The core validated the section already; check again rather than trust
 * text, and refuse (not silently default) since these are security knobs. */
static int config_int(const struct chat_host *host, const char *key, long def, long min,
                      long max, long *out)
{
	const char *s = chat_pu_config(host, key, NULL);
	char *end;
	long v;

	if (!s) {
		*out = def;
		return CHAT_OK;
	}
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		chat_pu_log(host, CHAT_LOG_ERROR, "invalid %s '%.40s' (allowed %ld..%ld)",
		            key, s, min, max);
		return CHAT_ERR_CONFIG;
	}
	*out = v;
	return CHAT_OK;
}

static bool username_ok(const char *name)
{
	size_t n = strlen(name);
	json_t *s;

	if (n == 0 || n > ACH_USER_MAX)
		return false;
	s = json_stringn(name, n); /* NULL unless valid UTF-8: it goes into JSON */
	json_decref(s);
	return s != NULL;
}

/* The password and the master key: needed only until the handshake is over. */
static void wipe_secrets(struct ach_session *s)
{
	if (s->secret) {
		explicit_bzero(s->secret, s->secret_len);
		free(s->secret);
		s->secret = NULL;
		s->secret_len = 0;
	}
	explicit_bzero(s->master, sizeof(s->master));
}

static void session_wipe_free(struct ach_session *s)
{
	if (!s)
		return;
	wipe_secrets(s);
	if (s->binding) {
		explicit_bzero(s->binding, s->binding_len);
		free(s->binding);
	}
	free(s->salt);
	explicit_bzero(s, sizeof(*s));
	free(s);
}

/* Keys are useless once failed: wipe them now, not at free time. */
static void session_fail(struct ach_session *s)
{
	s->state = ACH_S_FAILED;
	wipe_secrets(s);
	explicit_bzero(s->keys, sizeof(s->keys));
}

/* The checks session_new and session_load share, before any allocation. */
static int params_ok(const struct chat_host *host, const struct chat_cipher_params *params)
{
	if (!host_ok(host) || !params)
		return CHAT_ERR_INVALID;
	if (params->size < offsetof(struct chat_cipher_params, binding_len) +
	                   sizeof(params->binding_len))
		return CHAT_ERR_ABI;
	if ((params->role != CHAT_ROLE_INITIATOR && params->role != CHAT_ROLE_RESPONDER) ||
	    !params->local_id || !params->peer_id || (params->binding_len && !params->binding))
		return CHAT_ERR_INVALID;
	if (!username_ok(params->local_id) || !username_ok(params->peer_id)) {
		chat_pu_log(host, CHAT_LOG_ERROR, "usernames must be 1..%d bytes of UTF-8",
		            ACH_USER_MAX);
		return CHAT_ERR_INVALID;
	}
	if (params->suite && strlen(params->suite) >= sizeof(((struct ach_session *)0)->suite))
		return CHAT_ERR_INVALID;
	return CHAT_OK;
}

/* A session for checked params, with its configuration, and no keys yet. */
static int session_alloc(const struct chat_host *host, const struct chat_cipher_params *params,
                         struct ach_session **out)
{
	struct ach_session *s = NULL;
	long iterations, window;
	int rc;

	*out = NULL;
	rc = config_int(host, "iterations", ACH_ITER_DEFAULT, ACH_ITER_MIN, ACH_ITER_MAX, &iterations);
	if (rc < 0)
		return rc;
	rc = config_int(host, "window", ACH_WINDOW_DEFAULT, ACH_WINDOW_MIN, ACH_WINDOW_MAX, &window);
	if (rc < 0)
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s)
		return CHAT_ERR_NOMEM;
	s->host = host;
	s->role = params->role;
	s->iterations = (unsigned)iterations;
	s->window_ms = (int64_t)window * 1000;
	strcpy(s->local_id, params->local_id);
	strcpy(s->peer_id, params->peer_id);
	strcpy(s->suite, params->suite ? params->suite : ACH_SUITE);
	if (params->binding_len) {
		s->binding = malloc(params->binding_len);
		if (!s->binding) {
			session_wipe_free(s);
			return CHAT_ERR_NOMEM;
		}
		memcpy(s->binding, params->binding, params->binding_len);
		s->binding_len = params->binding_len;
	}
	*out = s;
	return CHAT_OK;
}

static int ach_session_new(const struct chat_host *host, const struct chat_cipher_params *params,
                           void **session)
{
	struct ach_session *s = NULL;
	const char *salt = NULL;
	char who[64];
	int rc;

	if (!session)
		return CHAT_ERR_INVALID;
	*session = NULL;
	rc = params_ok(host, params);
	if (rc < 0)
		return rc;
	chat_pu_quote(sizeof(who), who, params->peer_id);
	if (!params->secret || params->secret_len == 0) {
		chat_pu_log(host, CHAT_LOG_ERROR, "no shared password for %s: this suite needs one",
		            who);
		return CHAT_ERR_NOSECRET;
	}
	rc = session_alloc(host, params, &s);
	if (rc < 0)
		goto out;
	if (host->config_get)
		salt = host->config_get(host, "salt");
	if (!salt)
		salt = ACH_SALT_DEFAULT;
	/* PBKDF2 runs in the handshake, once both challenges are known. */
	s->salt = strdup(salt);
	s->secret = malloc(params->secret_len);
	if (!s->salt || !s->secret) {
		rc = CHAT_ERR_NOMEM;
		goto out;
	}
	memcpy(s->secret, params->secret, params->secret_len);
	s->secret_len = params->secret_len;
	s->state = s->role == CHAT_ROLE_INITIATOR ? ACH_S_INIT_START : ACH_S_RESP_WAIT_HELLO;
	*session = s;
	s = NULL;
out:
	session_wipe_free(s);
	return rc;
}

static void ach_session_free(void *session)
{
	session_wipe_free(session);
}

/* |ts - now| within the window.  Unsigned differences are exact for any two
 * int64 values, so a hostile timestamp cannot overflow the check. */
static bool fresh(const struct ach_session *s, int64_t ts, int64_t now, char sign[2],
                  uint64_t *off)
{
	if (ts >= now) {
		*off = (uint64_t)ts - (uint64_t)now;
		sign[0] = '+';
	} else {
		*off = (uint64_t)now - (uint64_t)ts;
		sign[0] = '-';
	}
	sign[1] = '\0';
	return *off <= (uint64_t)s->window_ms;
}

/* --- Handshake ------------------------------------------------------------ */

static int send_hs(struct ach_session *s, int type, const uint8_t *challenge,
                   const uint8_t *proof, struct chat_buf *dst)
{
	return ach_pdu_build_hs(type, s->host->unix_ms(s->host), s->hs_send, s->local_id,
	                        challenge, proof, dst);
}

/* A last word for the peer before failing; if it does not fit, the peer
 * learns from the closed connection instead. */
static void send_nack(struct ach_session *s, struct chat_buf *dst)
{
	if (send_hs(s, ACH_T_NACK, NULL, NULL, dst) < 0)
		dst->len = 0;
}

static int auth_failed(struct ach_session *s, struct chat_buf *dst, const char *reason)
{
	char who[64];

	chat_pu_quote(sizeof(who), who, s->peer_id);
	chat_pu_log(s->host, CHAT_LOG_ERROR, "authentication failed for %s: %s", who, reason);
	send_nack(s, dst);
	return CHAT_ERR_AUTH;
}

static int check_username(struct ach_session *s, const struct ach_pdu *pdu, struct chat_buf *dst)
{
	char said[64], want[64];

	if (strcmp(pdu->username, s->peer_id) == 0)
		return CHAT_OK;
	chat_pu_quote(sizeof(said), said, pdu->username);
	chat_pu_quote(sizeof(want), want, s->peer_id);
	chat_pu_log(s->host, CHAT_LOG_ERROR,
	            "authentication failed for %s: the peer says it is '%s', expected '%s'",
	            want, said, want);
	send_nack(s, dst);
	return CHAT_ERR_AUTH;
}

/* Both challenges are known: this handshake's master key.  The password
 * stays until the handshake ends (a NOSPACE retry derives again, with a new
 * challenge). */
static int derive_master(struct ach_session *s)
{
	return ach_master_key(s->iterations, s->salt, s->local_id, s->peer_id, s->ch_i, s->ch_r,
	                      s->secret_len, s->secret, s->master);
}

static int establish(struct ach_session *s)
{
	int rc = ach_session_keys(s);

	if (rc < 0)
		return rc;
	ach_fingerprint_bytes(s, s->fp);
	wipe_secrets(s); /* the session keys are all that is needed now */
	return CHAT_OK;
}

static int on_hello(struct ach_session *s, const struct ach_pdu *pdu, struct chat_buf *dst)
{
	uint8_t proof[ACH_MAC_LEN];
	int rc;

	rc = check_username(s, pdu, dst);
	if (rc < 0)
		return rc;
	if (s->host->random(s->host, ACH_CHALLENGE_LEN, s->ch_r) < 0)
		return CHAT_ERR_RANDOM;
	memcpy(s->ch_i, pdu->challenge, ACH_CHALLENGE_LEN);
	rc = derive_master(s);
	if (rc < 0)
		return rc;
	ach_proof(s, 1, proof);
	rc = send_hs(s, ACH_T_CHALLENGE, s->ch_r, proof, dst);
	if (rc < 0)
		return rc;
	s->state = ACH_S_RESP_WAIT_RESPONSE;
	return CHAT_HS_CONTINUE;
}

static int on_challenge(struct ach_session *s, const struct ach_pdu *pdu, struct chat_buf *dst)
{
	uint8_t want[ACH_MAC_LEN], proof[ACH_MAC_LEN];
	int rc;

	rc = check_username(s, pdu, dst);
	if (rc < 0)
		goto out;
	/* Our own challenge coming back means someone reflects our hello. */
	if (memeql_sec(pdu->challenge, s->ch_i, ACH_CHALLENGE_LEN)) {
		rc = auth_failed(s, dst, "the peer echoed our challenge");
		goto out;
	}
	memcpy(s->ch_r, pdu->challenge, ACH_CHALLENGE_LEN);
	rc = derive_master(s);
	if (rc < 0)
		goto out;
	ach_proof(s, 1, want);
	if (!memeql_sec(want, pdu->proof, ACH_MAC_LEN)) {
		rc = auth_failed(s, dst, "wrong proof (wrong password, or the suite negotiation "
		                         "was tampered with)");
		goto out;
	}
	ach_proof(s, 0, proof);
	rc = send_hs(s, ACH_T_RESPONSE, NULL, proof, dst);
	if (rc < 0)
		goto out;
	s->state = ACH_S_INIT_WAIT_ACK;
	rc = CHAT_HS_CONTINUE;
out:
	explicit_bzero(want, sizeof(want));
	return rc;
}

static int on_response(struct ach_session *s, const struct ach_pdu *pdu, struct chat_buf *dst)
{
	uint8_t want[ACH_MAC_LEN];
	int rc;

	ach_proof(s, 0, want);
	if (!memeql_sec(want, pdu->proof, ACH_MAC_LEN)) {
		rc = auth_failed(s, dst, "wrong proof (wrong password, or the suite negotiation "
		                         "was tampered with)");
		goto out;
	}
	rc = establish(s);
	if (rc < 0)
		goto out;
	rc = send_hs(s, ACH_T_ACK, NULL, NULL, dst);
	if (rc < 0)
		goto out;
	s->state = ACH_S_ESTABLISHED;
	rc = CHAT_HS_ESTABLISHED;
out:
	explicit_bzero(want, sizeof(want));
	return rc;
}

static bool type_expected(int state, int type)
{
	switch (state) {
	case ACH_S_RESP_WAIT_HELLO:
		return type == ACH_T_HELLO;
	case ACH_S_INIT_WAIT_CHALLENGE:
		return type == ACH_T_CHALLENGE || type == ACH_T_NACK;
	case ACH_S_RESP_WAIT_RESPONSE:
		return type == ACH_T_RESPONSE || type == ACH_T_NACK;
	case ACH_S_INIT_WAIT_ACK:
		return type == ACH_T_ACK || type == ACH_T_NACK;
	default:
		return false;
	}
}

/* at: the time the peer's message was stored on the way (0: now). */
static int hs_step(struct ach_session *s, int64_t at, size_t src_len, const uint8_t *src,
                   struct chat_buf *dst)
{
	struct ach_pdu pdu;
	const char *why;
	char who[64], sign[2];
	uint64_t off;
	int rc;

	chat_pu_quote(sizeof(who), who, s->peer_id);
	if (s->state == ACH_S_INIT_START) {
		if (src_len != 0) {
			chat_pu_log(s->host, CHAT_LOG_ERROR,
			            "handshake with %s: the initiator speaks first", who);
			return CHAT_ERR_STATE;
		}
		if (s->host->random(s->host, ACH_CHALLENGE_LEN, s->ch_i) < 0)
			return CHAT_ERR_RANDOM;
		rc = send_hs(s, ACH_T_HELLO, s->ch_i, NULL, dst);
		if (rc < 0)
			return rc;
		s->hs_send++;
		s->state = ACH_S_INIT_WAIT_CHALLENGE;
		return CHAT_HS_CONTINUE;
	}
	if (s->state == ACH_S_ESTABLISHED) {
		chat_pu_log(s->host, CHAT_LOG_ERROR, "handshake with %s: already established", who);
		return CHAT_ERR_STATE;
	}

	rc = ach_pdu_parse(ACH_HS_PDU_MAX, src_len, src, &pdu, &why);
	if (rc < 0) {
		chat_pu_log(s->host, CHAT_LOG_ERROR, "handshake with %s: bad PDU: %s", who, why);
		return rc;
	}
	if (!type_expected(s->state, pdu.type)) {
		chat_pu_log(s->host, CHAT_LOG_ERROR, "handshake with %s: unexpected '%s' PDU", who,
		            ach_type_name(pdu.type));
		rc = CHAT_ERR_STATE;
		goto out;
	}
	if (!fresh(s, pdu.timestamp, at ? at : s->host->unix_ms(s->host), sign, &off)) {
		chat_pu_log(s->host, CHAT_LOG_ERROR,
		            "handshake with %s: stale PDU, timestamp %s%llu ms from %s "
		            "(window %lld s)",
		            who, sign, (unsigned long long)off,
		            at ? "when the relay stored it" : "our clock",
		            (long long)(s->window_ms / 1000));
		rc = CHAT_ERR_STALE;
		goto out;
	}
	if (pdu.seq != s->hs_recv) {
		chat_pu_log(s->host, CHAT_LOG_ERROR, "handshake with %s: seq %llu, expected %llu",
		            who, (unsigned long long)pdu.seq, (unsigned long long)s->hs_recv);
		rc = CHAT_ERR_REPLAY;
		goto out;
	}
	if (pdu.type == ACH_T_NACK) {
		chat_pu_log(s->host, CHAT_LOG_ERROR,
		            "authentication failed for %s: the peer rejected the handshake", who);
		rc = CHAT_ERR_AUTH;
		goto out;
	}
	switch (pdu.type) {
	case ACH_T_HELLO:
		rc = on_hello(s, &pdu, dst);
		break;
	case ACH_T_CHALLENGE:
		rc = on_challenge(s, &pdu, dst);
		break;
	case ACH_T_RESPONSE:
		rc = on_response(s, &pdu, dst);
		break;
	default: /* ACH_T_ACK, the only one left in ACH_S_INIT_WAIT_ACK */
		rc = establish(s);
		if (rc < 0)
			break;
		s->state = ACH_S_ESTABLISHED;
		rc = CHAT_HS_ESTABLISHED;
		break;
	}
	/* Commit the counters only when the step happened: NOSPACE retries. */
	if (rc >= 0) {
		s->hs_recv++;
		if (dst->len)
			s->hs_send++;
	}
out:
	ach_pdu_clear(&pdu);
	return rc;
}

static int handshake(struct ach_session *s, int64_t at, size_t src_len, struct chat_buf *dst,
                     const uint8_t *src)
{
	int rc;

	if (!s || !dst || (!src && src_len))
		return CHAT_ERR_INVALID;
	dst->len = 0;
	if (s->state == ACH_S_FAILED)
		return CHAT_ERR_FAILED;
	rc = hs_step(s, at, src_len, src, dst);
	if (rc == CHAT_ERR_NOSPACE)
		dst->len = 0;
	else if (rc < 0)
		session_fail(s); /* dst may still hold a nack for the peer */
	if (rc == CHAT_HS_ESTABLISHED) {
		char who[64];

		chat_pu_quote(sizeof(who), who, s->peer_id);
		chat_pu_log(s->host, CHAT_LOG_INFO, "authenticated %s", who);
	}
	return rc;
}

static int ach_handshake(void *session, size_t src_len, struct chat_buf *dst, const uint8_t *src)
{
	return handshake(session, 0, src_len, dst, src);
}

static int ach_handshake_at(void *session, uint64_t at_unix_ms, size_t src_len,
                            struct chat_buf *dst, const uint8_t *src)
{
	if (!at_unix_ms || at_unix_ms > (uint64_t)INT64_MAX)
		return CHAT_ERR_INVALID;
	return handshake(session, (int64_t)at_unix_ms, src_len, dst, src);
}

/* --- Messages ------------------------------------------------------------- */

static const uint8_t *send_key(const struct ach_session *s, int mac)
{
	int i2r = s->role == CHAT_ROLE_INITIATOR;

	return s->keys[i2r ? (mac ? ACH_K_MAC_I2R : ACH_K_ENC_I2R)
	                   : (mac ? ACH_K_MAC_R2I : ACH_K_ENC_R2I)];
}

static const uint8_t *recv_key(const struct ach_session *s, int mac)
{
	int i2r = s->role == CHAT_ROLE_RESPONDER;

	return s->keys[i2r ? (mac ? ACH_K_MAC_I2R : ACH_K_ENC_I2R)
	                   : (mac ? ACH_K_MAC_R2I : ACH_K_ENC_R2I)];
}

static size_t body_len_for(size_t len)
{
	return ACH_BLOCK + ach_padded_len(len);
}

static size_t ach_sealed_size(void *session, size_t len)
{
	(void)session;
	if (len > ACH_MSG_MAX)
		return 0;
	return ach_pdu_text_bound(body_len_for(len));
}

/* Misusing the API (seal/open before the handshake finished) is a state
 * error and final, like any handshake error. */
static int usable(struct ach_session *s)
{
	if (s->state == ACH_S_FAILED)
		return CHAT_ERR_FAILED;
	if (s->state != ACH_S_ESTABLISHED) {
		chat_pu_log(s->host, CHAT_LOG_ERROR, "seal/open before the handshake completed");
		session_fail(s);
		return CHAT_ERR_STATE;
	}
	return CHAT_OK;
}

static int ach_seal(void *session, size_t src_len, struct chat_buf *dst, const uint8_t *src)
{
	struct ach_session *s = session;
	uint8_t mac[ACH_MAC_LEN];
	uint8_t *body = NULL;
	size_t body_len = 0;
	int64_t ts;
	int rc;

	if (!s || !dst || (!src && src_len))
		return CHAT_ERR_INVALID;
	dst->len = 0;
	rc = usable(s);
	if (rc < 0)
		return rc;
	if (src_len > ACH_MSG_MAX)
		return CHAT_ERR_TOO_BIG;
	if (s->send_seq > (uint64_t)ACH_SEQ_MAX)
		return CHAT_ERR_TOO_BIG; /* 2^63 messages: unreachable in practice */

	body_len = body_len_for(src_len);
	body = malloc(body_len);
	if (!body) {
		rc = CHAT_ERR_NOMEM;
		goto out;
	}
	if (s->host->random(s->host, ACH_BLOCK, body) < 0) {
		rc = CHAT_ERR_RANDOM;
		goto out;
	}
	if (src_len)
		memcpy(body + ACH_BLOCK, src, src_len);
	ach_pkcs7_pad(src_len, body + ACH_BLOCK);
	ach_cbc_encrypt(send_key(s, 0), body, body_len - ACH_BLOCK, body + ACH_BLOCK,
	                body + ACH_BLOCK);
	ts = s->host->unix_ms(s->host);
	ach_msg_mac(send_key(s, 1), ts, s->send_seq, body_len, body, mac);
	rc = ach_pdu_build_text(ts, s->send_seq, body_len, body, mac, dst);
	if (rc < 0)
		goto out;
	s->send_seq++;
out:
	if (body) {
		explicit_bzero(body, body_len);
		free(body);
	}
	return rc;
}

/* open and open_at: stored says the freshness window is measured from at
 * (when the relay accepted the message) rather than from our clock. */
static int open_msg(struct ach_session *s, bool stored, int64_t at, size_t src_len,
                    struct chat_buf *dst, const uint8_t *src)
{
	struct ach_pdu pdu;
	uint8_t mac[ACH_MAC_LEN];
	uint8_t *plain = NULL;
	size_t ct_len = 0, pt_len = 0;
	const char *why;
	char who[64], sign[2];
	uint64_t off;
	int rc;

	rc = usable(s);
	if (rc < 0)
		return rc;
	chat_pu_quote(sizeof(who), who, s->peer_id);
	rc = ach_pdu_parse(ach_sealed_size(s, ACH_MSG_MAX), src_len, src, &pdu, &why);
	if (rc < 0) {
		chat_pu_log(s->host, CHAT_LOG_WARN, "dropped a message from %s: %s", who, why);
		return rc;
	}
	if (pdu.type != ACH_T_TEXT) {
		/* Unauthenticated, so it must not end the session. */
		chat_pu_log(s->host, CHAT_LOG_WARN,
		            "dropped a handshake PDU ('%s') from %s after the handshake",
		            ach_type_name(pdu.type), who);
		rc = CHAT_ERR_STATE;
		goto out;
	}
	/* The MAC first: nothing of an unauthenticated message is acted on. */
	ach_msg_mac(recv_key(s, 1), pdu.timestamp, pdu.seq, pdu.body_len, pdu.body, mac);
	if (!memeql_sec(mac, pdu.mac, ACH_MAC_LEN)) {
		chat_pu_log(s->host, CHAT_LOG_WARN, "dropped a message from %s: MAC mismatch", who);
		rc = CHAT_ERR_INTEGRITY;
		goto out;
	}
	if (pdu.seq != s->recv_seq) {
		chat_pu_log(s->host, CHAT_LOG_WARN,
		            "dropped a message from %s: seq %llu, expected %llu (%s)",
		            who, (unsigned long long)pdu.seq, (unsigned long long)s->recv_seq,
		            pdu.seq < s->recv_seq ? "replayed" : "out of order or a gap");
		rc = CHAT_ERR_REPLAY;
		goto out;
	}
	/* From here the message is authentic and in order: its seq is used up
	 * even if it is dropped, so the next one is still accepted. */
	s->recv_seq++;
	if (!fresh(s, pdu.timestamp, stored ? at : s->host->unix_ms(s->host), sign, &off)) {
		chat_pu_log(s->host, CHAT_LOG_WARN,
		            "dropped a message from %s: timestamp %s%llu ms from %s "
		            "(window %lld s)",
		            who, sign, (unsigned long long)off,
		            stored ? "when the relay stored it" : "our clock",
		            (long long)(s->window_ms / 1000));
		rc = CHAT_ERR_STALE;
		goto out;
	}
	ct_len = pdu.body_len - ACH_BLOCK;
	plain = malloc(ct_len);
	if (!plain) {
		s->recv_seq--;
		rc = CHAT_ERR_NOMEM;
		goto out;
	}
	ach_cbc_decrypt(recv_key(s, 0), pdu.body, ct_len, plain, pdu.body + ACH_BLOCK);
	rc = ach_pkcs7_unpad(ct_len, plain, &pt_len);
	if (rc < 0) {
		chat_pu_log(s->host, CHAT_LOG_WARN,
		            "dropped a message from %s: bad padding under a valid MAC", who);
		goto out;
	}
	if (pt_len > dst->cap) {
		s->recv_seq--; /* nothing consumed: the caller retries with room */
		rc = CHAT_ERR_NOSPACE;
		goto out;
	}
	if (pt_len)
		memcpy(dst->data, plain, pt_len);
	dst->len = pt_len;
	rc = CHAT_OK;
out:
	if (plain) {
		explicit_bzero(plain, ct_len);
		free(plain);
	}
	explicit_bzero(mac, sizeof(mac));
	ach_pdu_clear(&pdu);
	return rc;
}

static int ach_open(void *session, size_t src_len, struct chat_buf *dst, const uint8_t *src)
{
	struct ach_session *s = session;

	if (!s || !dst || (!src && src_len))
		return CHAT_ERR_INVALID;
	dst->len = 0;
	return open_msg(s, false, 0, src_len, dst, src);
}

static int ach_open_at(void *session, uint64_t at_unix_ms, size_t src_len, struct chat_buf *dst,
                       const uint8_t *src)
{
	struct ach_session *s = session;

	if (!s || !dst || (!src && src_len))
		return CHAT_ERR_INVALID;
	dst->len = 0;
	if (at_unix_ms > (uint64_t)INT64_MAX)
		return CHAT_ERR_INVALID;
	return open_msg(s, true, (int64_t)at_unix_ms, src_len, dst, src);
}

/* 80 bits of SHA-256 over the transcript as "xxxx xxxx xxxx xxxx xxxx". */
static int ach_fingerprint(void *session, size_t cap, char *dst)
{
	const struct ach_session *s = session;

	if (!s || !dst)
		return CHAT_ERR_INVALID;
	if (cap)
		dst[0] = '\0';
	if (s->state != ACH_S_ESTABLISHED)
		return CHAT_ERR_STATE;
	return chat_pu_fingerprint_text(cap, dst, ACH_FP_BYTES, s->fp);
}

/* --- Saved sessions ------------------------------------------------------- */

/* What seal and open use after the handshake, and nothing of the handshake
 * itself: the master key and the challenges stay out. */
static int ach_session_save(void *session, struct chat_buf *dst)
{
	struct ach_session *s = session;
	uint8_t *p;

	if (dst)
		dst->len = 0;
	if (!s || !dst || (dst->cap && !dst->data))
		return CHAT_ERR_INVALID;
	if (s->state != ACH_S_ESTABLISHED)
		return s->state == ACH_S_FAILED ? CHAT_ERR_FAILED : CHAT_ERR_STATE;
	if (dst->cap < ACH_SAVE_LEN)
		return CHAT_ERR_NOSPACE;
	p = dst->data;
	memcpy(p, ACH_SAVE_MAGIC, 4);
	p[4] = ACH_SAVE_VERSION;
	p[5] = sizeof(ACH_SUITE) - 1;
	memcpy(p + 6, ACH_SUITE, sizeof(ACH_SUITE) - 1);
	p += ACH_SAVE_HEAD;
	ach_params_digest(s, p);
	p += ACH_DIGEST_LEN;
	memcpy(p, s->keys, sizeof(s->keys));
	p += sizeof(s->keys);
	memcpy(p, s->fp, ACH_FP_BYTES);
	p += ACH_FP_BYTES;
	chat_pu_put_be64(p, s->send_seq);
	chat_pu_put_be64(p + 8, s->recv_seq);
	dst->len = ACH_SAVE_LEN;
	return CHAT_OK;
}

static int ach_session_load(const struct chat_host *host, const struct chat_cipher_params *params,
                            size_t src_len, const uint8_t *src, void **session)
{
	struct ach_session *s = NULL;
	uint8_t digest[ACH_DIGEST_LEN];
	const uint8_t *p = src;
	uint64_t send_seq, recv_seq;
	int rc;

	if (!session)
		return CHAT_ERR_INVALID;
	*session = NULL;
	if (!src && src_len)
		return CHAT_ERR_INVALID;
	rc = params_ok(host, params);
	if (rc < 0)
		return rc;
	rc = session_alloc(host, params, &s);
	if (rc < 0)
		return rc;
	rc = CHAT_ERR_MALFORMED;
	if (src_len != ACH_SAVE_LEN || memcmp(p, ACH_SAVE_MAGIC, 4) != 0 ||
	    p[4] != ACH_SAVE_VERSION || p[5] != sizeof(ACH_SUITE) - 1 ||
	    memcmp(p + 6, ACH_SUITE, sizeof(ACH_SUITE) - 1) != 0)
		goto out;
	p += ACH_SAVE_HEAD;
	ach_params_digest(s, digest);
	if (!memeql_sec(digest, p, ACH_DIGEST_LEN))
		goto out;
	p += ACH_DIGEST_LEN + sizeof(s->keys) + ACH_FP_BYTES;
	send_seq = chat_pu_get_be64(p);
	recv_seq = chat_pu_get_be64(p + 8);
	/* seal stops after seq ACH_SEQ_MAX; open accepts no seq beyond it. */
	if (send_seq > (uint64_t)ACH_SEQ_MAX + 1 || recv_seq > (uint64_t)ACH_SEQ_MAX + 1)
		goto out;
	p = src + ACH_SAVE_HEAD + ACH_DIGEST_LEN;
	memcpy(s->keys, p, sizeof(s->keys));
	memcpy(s->fp, p + sizeof(s->keys), ACH_FP_BYTES);
	s->send_seq = send_seq;
	s->recv_seq = recv_seq;
	s->state = ACH_S_ESTABLISHED;
	*session = s;
	s = NULL;
	rc = CHAT_OK;
out:
	if (rc < 0) {
		char who[64];

		chat_pu_quote(sizeof(who), who, params->peer_id);
		chat_pu_log(host, CHAT_LOG_WARN,
		            "saved session with %s refused (%zu bytes): not an %s session saved "
		            "with these usernames, role, suite and binding",
		            who, src_len, ACH_SUITE);
	}
	session_wipe_free(s);
	return rc;
}

static const struct chat_cipher_ops ach_ops = {
	.size = sizeof(struct chat_cipher_ops),
	.session_new = ach_session_new,
	.handshake = ach_handshake,
	.sealed_size = ach_sealed_size,
	.seal = ach_seal,
	.open = ach_open,
	.fingerprint = ach_fingerprint,
	.session_free = ach_session_free,
	.session_save = ach_session_save,
	.session_load = ach_session_load,
	.open_at = ach_open_at,
	.handshake_at = ach_handshake_at,
};

static const struct chat_config_key ach_keys[] = {
	{ "iterations", CHAT_CONFIG_INT, "100000", ACH_ITER_MIN, ACH_ITER_MAX,
	  "PBKDF2-HMAC-SHA256 iterations for the master key (both ends must agree)" },
	{ "salt", CHAT_CONFIG_STRING, ACH_SALT_DEFAULT, 0, 0,
	  "PBKDF2 salt prefix; the two usernames are appended (both ends must agree)" },
	{ "window", CHAT_CONFIG_INT, "25", ACH_WINDOW_MIN, ACH_WINDOW_MAX,
	  "seconds a PDU timestamp may differ from our clock" },
	{ NULL, 0, NULL, 0, 0, NULL },
};

static const struct chat_plugin ach_plugin = {
	CHAT_PLUGIN_HEADER,
	.kind = CHAT_PLUGIN_CIPHER,
	.flags = CHAT_FLAG_AUTHENTICATED | CHAT_FLAG_NEEDS_SECRET | CHAT_FLAG_INTEGRITY |
	         CHAT_FLAG_REPLAY,
	.name = ACH_SUITE,
	.version = ACH_VERSION,
	.summary = "password CHAP, AES-256-CBC + HMAC-SHA256 JSON messages (PBKDF2, HKDF)",
	.config_keys = ach_keys,
	.ops.cipher = &ach_ops,
};

CHAT_PLUGIN_EXPORT const struct chat_plugin *chat_plugin_entry(void)
{
	return &ach_plugin;
}
