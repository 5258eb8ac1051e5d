/* The body shared by the suite harnesses fuzz_suite_NAME.c: each defines
 * SUITE_NAME and two hooks, then includes this.
 *
 *   static int suite_fix_hs(struct fuzz_buf *msg);
 *       After the harness changed a handshake message: repair what a suite
 *       checks before anything else (aescbc-hmac: the CRC), so the change
 *       reaches the parser behind it.  1 if it repaired anything.
 *   static void suite_fix_sealed(void *sender, int sender_role, struct fuzz_in *in,
 *                                struct fuzz_buf *msg);
 *       Change a sealed message as the input says and repair its
 *       checksums and MAC with the sender's keys (aescbc-hmac), or just
 *       change its bytes (suites without).
 *
 * Input: u8 mode, u8 seed of the deterministic host (bit 7 set: identity
 * suites run without pinned peer keys), then by mode % 6:
 *   0  responder: u16-length handshake messages from the "initiator";
 *   1  initiator: its first message is made, then messages as in 0;
 *   2  both sides honest, every handshake message changed by the input
 *      (u8 count of (u16 position, u8 xor)) and repaired by suite_fix_hs;
 *      with no change the handshake must succeed;
 *   3  session_load of a u16-length blob (a keystore's saved session);
 *   4, 5  an established pair, then operations until the input ends:
 *      u8 op % 8:
 *        0  open(u16-length bytes) by the responder, as from the initiator
 *        1  seal(u16-length text) by the initiator, u8 flag: bit 0 changed
 *           by suite_fix_sealed, bit 1 opened with open_at(now); unchanged,
 *           it must open to the same text
 *        2  seal and keep (4 slots, u8 slot), 3 deliver a kept one (u8 slot)
 *        4  move the clock (s16 seconds)
 *        5  session_save of the responder, u8 count of (u16 position, u8
 *           xor) changes, session_load; unchanged, the loaded session
 *           replaces the responder and must go on working
 *        6  the other direction: seal by the responder, open by the initiator
 *        7  fingerprints: equal on both sides
 *
 * A suite with identity keys (CHAT_FLAG_IDENTITY) also defines SUITE_IDENTITY
 * and  static void suite_identity(int role, struct chat_cipher_params *p);
 * which fills in the identity fields of the params of alice (initiator) or
 * bob (responder); every session of the harness is then made with them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chat/plugin.h>

#include "fuzz.h"

static int suite_fix_hs(struct fuzz_buf *msg);
#ifdef SUITE_IDENTITY
static void suite_identity(int role, struct chat_cipher_params *p);
#endif
static void suite_fix_sealed(void *sender, int sender_role, struct fuzz_in *in,
                             struct fuzz_buf *msg);

#define BIND "chat-binding-v1\ninitiator alice suites " SUITE_NAME "\nresponder bob suites " \
             SUITE_NAME "\nsuite " SUITE_NAME "\n"
#define SECRET "s3cret"

static const struct chat_plugin *plugin;
static const struct chat_cipher_ops *ops;
static uint8_t out[1 << 17], plain[1 << 17];
/* Identity suites: whether each end pins the other's key (fuzz_identity) or
 * meets it for the first time; bit 7 of the input's seed byte. */
static int pin_peer = 1;

static struct chat_cipher_params params(int role)
{
	struct chat_cipher_params p = {
		.size = sizeof(p), .role = role,
		.local_id = role == CHAT_ROLE_INITIATOR ? "alice" : "bob",
		.peer_id = role == CHAT_ROLE_INITIATOR ? "bob" : "alice",
		.suite = SUITE_NAME, .secret = (const uint8_t *)SECRET, .secret_len = strlen(SECRET),
		.binding = (const uint8_t *)BIND, .binding_len = strlen(BIND),
	};
#ifdef SUITE_IDENTITY
	suite_identity(role, &p);
#else
	fuzz_identity_params(plugin, &p, pin_peer);
#endif
	return p;
}

/* fuzz_pair with the harness's params. */
static int pair_up(const struct chat_host *hi, const struct chat_host *hr, void **si, void **sr,
                   struct fuzz_buf *transcript)
{
#ifdef SUITE_IDENTITY
	struct chat_cipher_params pi = params(CHAT_ROLE_INITIATOR), pr = params(CHAT_ROLE_RESPONDER);

	return fuzz_pair_params(plugin, hi, hr, &pi, &pr, si, sr, transcript);
#else
	return fuzz_pair(plugin, hi, hr, "alice", "bob", SECRET, strlen(BIND), BIND, si, sr,
	                 transcript);
#endif
}

/* Apply u8 count x (u16 position, u8 xor) to msg; 1 if anything changed. */
static int mutate(struct fuzz_in *in, struct fuzz_buf *msg)
{
	unsigned n = fin_u8(in) % 4;
	int changed = 0;

	for (unsigned i = 0; i < n; i++) {
		unsigned pos = fin_u16(in), x = fin_u8(in);
		if (msg->len && x) {
			msg->data[pos % msg->len] ^= (uint8_t)x;
			changed = 1;
		}
	}
	return changed;
}

static void handshake_with(struct fuzz_in *in, int role, struct fuzz_host *h)
{
	struct chat_cipher_params p = params(role);
	void *s = NULL;
	int rc;

	if (ops->session_new(&h->host, &p, &s) != CHAT_OK)
		return;
	if (role == CHAT_ROLE_INITIATOR) {
		struct chat_buf dst = { .data = out, .cap = sizeof(out) };
		rc = ops->handshake(s, 0, &dst, NULL);
		FUZZ_CHECK(rc >= 0 && dst.len > 0);
	}
	for (int i = 0; i < 4 && in->left; i++) {
		size_t len;
		const uint8_t *msg = fin_blob(in, &len);
		uint8_t *copy = malloc(len ? len : 1);
		struct chat_buf dst = { .data = out, .cap = sizeof(out) };
		FUZZ_CHECK(copy);
		memcpy(copy, msg, len);
		rc = ops->handshake(s, len, &dst, copy);
		free(copy);
		FUZZ_CHECK(dst.len <= dst.cap);
		if (rc < 0) {
			/* an error is final (but for NOSPACE and INVALID) */
			struct chat_buf again = { .data = out, .cap = sizeof(out) };
			if (rc != CHAT_ERR_NOSPACE && rc != CHAT_ERR_INVALID)
				FUZZ_CHECK(ops->handshake(s, 1, &again, (const uint8_t *)"x") < 0);
			break;
		}
		if (rc == CHAT_HS_ESTABLISHED) {
			/* established from bytes of the input: sealing works */
			struct chat_buf d2 = { .data = out, .cap = sizeof(out) };
			FUZZ_CHECK(ops->seal(s, 5, &d2, (const uint8_t *)"hello") == CHAT_OK);
			break;
		}
	}
	ops->session_free(s);
}

/* Both sides honest, the messages changed on the way. */
static void man_in_the_middle(struct fuzz_in *in, struct fuzz_host *hi, struct fuzz_host *hr)
{
	struct chat_cipher_params pi = params(CHAT_ROLE_INITIATOR), pr = params(CHAT_ROLE_RESPONDER);
	void *s[2] = { NULL, NULL };
	struct fuzz_buf msg = { 0 };
	int done[2] = { 0, 0 }, changed = 0, failed = 0;

	if (ops->session_new(&hi->host, &pi, &s[0]) || ops->session_new(&hr->host, &pr, &s[1]))
		goto out;
	for (int turn = 0; turn < 12 && !(done[0] && done[1]); turn++) {
		int who = turn % 2;
		struct chat_buf dst = { .data = out, .cap = sizeof(out) };
		if (turn > 0 && msg.len == 0)
			break;
		int rc = ops->handshake(s[who], msg.len, &dst, msg.data);
		if (rc < 0) {
			failed = 1;
			break;
		}
		done[who] |= rc == CHAT_HS_ESTABLISHED;
		msg.len = 0;
		fb_put(&msg, dst.len, dst.data);
		if (mutate(in, &msg)) {
			changed = 1;
			suite_fix_hs(&msg);
		}
	}
	if (!changed)
		FUZZ_CHECK(!failed && done[0] && done[1]);
out:
	fb_free(&msg);
	ops->session_free(s[0]);
	ops->session_free(s[1]);
}

static void load_blob(struct fuzz_in *in, struct fuzz_host *h)
{
	struct chat_cipher_params p = params(fin_u8(in) & 1 ? CHAT_ROLE_INITIATOR : CHAT_ROLE_RESPONDER);
	size_t len;
	const uint8_t *blob = fin_blob(in, &len);
	uint8_t *copy = malloc(len ? len : 1);
	void *s = NULL;

	if (!CHAT_CIPHER_HAS(ops, session_load) || !copy) {
		free(copy);
		return;
	}
	memcpy(copy, blob, len);
	if (ops->session_load(&h->host, &p, len, copy, &s) == CHAT_OK) {
		struct chat_buf dst = { .data = out, .cap = sizeof(out) };
		FUZZ_CHECK(s != NULL);
		FUZZ_CHECK(ops->seal(s, 2, &dst, (const uint8_t *)"hi") == CHAT_OK);
		ops->session_free(s);
	}
	free(copy);
}

/* open src by s (at: 0 for open()); CHAT_OK with the text in plain. */
static int open_it(void *s, uint64_t at, size_t len, const uint8_t *src, size_t *plen)
{
	struct chat_buf dst = { .data = plain, .cap = sizeof(plain) };
	uint8_t *copy = malloc(len ? len : 1);
	int rc;

	FUZZ_CHECK(copy);
	if (len)
		memcpy(copy, src, len);
	if (at && CHAT_CIPHER_HAS(ops, open_at))
		rc = ops->open_at(s, at, len, &dst, copy);
	else
		rc = ops->open(s, len, &dst, copy);
	free(copy);
	FUZZ_CHECK(dst.len <= dst.cap);
	if (rc != CHAT_OK)
		FUZZ_CHECK(rc == CHAT_ERR_INTEGRITY || rc == CHAT_ERR_REPLAY || rc == CHAT_ERR_STALE ||
		           rc == CHAT_ERR_MALFORMED || rc == CHAT_ERR_STATE || rc == CHAT_ERR_TOO_BIG ||
		           rc == CHAT_ERR_NOSPACE);
	*plen = dst.len;
	return rc;
}

static int seal_it(void *s, size_t len, const uint8_t *text, struct fuzz_buf *msg)
{
	struct chat_buf dst = { .data = out, .cap = sizeof(out) };
	int rc = ops->seal(s, len, &dst, text);

	msg->len = 0;
	if (rc == CHAT_OK) {
		FUZZ_CHECK(dst.len <= ops->sealed_size(s, len));
		fb_put(msg, dst.len, dst.data);
	}
	return rc;
}

/* An established pair.  The handshake runs once per process, with hosts
 * of fixed seeds (rc4dh's Diffie-Hellman would cost more than the rest of an
 * input), and every input loads both sides from what session_save wrote
 * then: the same keys whatever ran before, so a crash replays alone.
 * Suites that cannot save shake hands every time. */
static int make_pair(struct fuzz_host *hi, struct fuzz_host *hr, void **si, void **sr)
{
	static uint8_t *saved[2];
	static size_t saved_len[2];
	struct chat_cipher_params pi = params(CHAT_ROLE_INITIATOR), pr = params(CHAT_ROLE_RESPONDER);

	if (!CHAT_CIPHER_HAS(ops, session_save))
		return pair_up(&hi->host, &hr->host, si, sr, NULL);
	if (!saved[0]) {
		struct fuzz_host ci, cr;
		void *a, *b;
		fuzz_host_init(&ci, plugin, 1);
		fuzz_host_init(&cr, plugin, 2);
		int rc = pair_up(&ci.host, &cr.host, &a, &b, NULL);
		if (rc != CHAT_OK)
			return rc;
		for (int i = 0; i < 2; i++) {
			struct chat_buf dst = { .data = out, .cap = sizeof(out) };
			FUZZ_CHECK(ops->session_save(i ? b : a, &dst) == CHAT_OK);
			saved[i] = malloc(dst.len);
			FUZZ_CHECK(saved[i]);
			memcpy(saved[i], dst.data, dst.len);
			saved_len[i] = dst.len;
		}
		ops->session_free(a);
		ops->session_free(b);
	}
	FUZZ_CHECK(ops->session_load(&hi->host, &pi, saved_len[0], saved[0], si) == CHAT_OK);
	FUZZ_CHECK(ops->session_load(&hr->host, &pr, saved_len[1], saved[1], sr) == CHAT_OK);
	return CHAT_OK;
}

static void established(struct fuzz_in *in, struct fuzz_host *hi, struct fuzz_host *hr)
{
	void *si = NULL, *sr = NULL;
	struct fuzz_buf msg = { 0 }, kept[4] = { { 0 } };
	int lost = 0; /* a sealed message was dropped: order-dependent oracles are off */

	if (make_pair(hi, hr, &si, &sr) != CHAT_OK)
		fuzz_fail(__FILE__, __LINE__, "the honest handshake failed");
	for (int steps = 0; in->left && steps < 64; steps++) {
		unsigned op = fin_u8(in) % 8, flag, slot;
		size_t len, plen;
		const uint8_t *p;
		int rc;

		switch (op) {
		case 0:
			p = fin_blob(in, &len);
			if (open_it(sr, 0, len, p, &plen) == CHAT_OK)
				lost = 1; /* an input that opens: the streams may have moved */
			break;
		case 1:
			p = fin_blob(in, &len);
			flag = fin_u8(in);
			if (seal_it(si, len, p, &msg) != CHAT_OK)
				break;
			if (flag & 1) {
				suite_fix_sealed(si, CHAT_ROLE_INITIATOR, in, &msg);
				lost = 1;
			}
			rc = open_it(sr, (flag & 2) ? (uint64_t)hr->now_ms : 0, msg.len, msg.data, &plen);
			if (!(flag & 1) && !lost) {
				FUZZ_CHECK(rc == CHAT_OK);
				FUZZ_CHECK(plen == len && (!len || memcmp(plain, p, len) == 0));
			}
			break;
		case 2:
			p = fin_blob(in, &len);
			slot = fin_u8(in) % 4;
			if (seal_it(si, len, p, &kept[slot]) == CHAT_OK)
				lost = 1;
			break;
		case 3:
			slot = fin_u8(in) % 4;
			if (kept[slot].len)
				open_it(sr, 0, kept[slot].len, kept[slot].data, &plen);
			break;
		case 4: {
			int16_t d = (int16_t)fin_u16(in);
			hi->now_ms += (int64_t)d * 1000;
			hr->now_ms += (int64_t)d * 1000;
			if (d > 20 || d < -20)
				lost = 1; /* beyond a freshness window */
			break;
		}
		case 5: {
			struct chat_buf dst = { .data = out, .cap = sizeof(out) };
			struct chat_cipher_params pr = params(CHAT_ROLE_RESPONDER);
			void *loaded = NULL;
			if (!CHAT_CIPHER_HAS(ops, session_save)) {
				fin_u8(in);
				break;
			}
			FUZZ_CHECK(ops->session_save(sr, &dst) == CHAT_OK);
			msg.len = 0;
			fb_put(&msg, dst.len, dst.data);
			int changed = mutate(in, &msg);
			rc = ops->session_load(&hr->host, &pr, msg.len, msg.data, &loaded);
			if (!changed) {
				FUZZ_CHECK(rc == CHAT_OK);
				ops->session_free(sr);
				sr = loaded;
			} else if (rc == CHAT_OK) {
				ops->session_free(loaded);
			}
			break;
		}
		case 6:
			p = fin_blob(in, &len);
			if (seal_it(sr, len, p, &msg) != CHAT_OK)
				break;
			rc = open_it(si, 0, msg.len, msg.data, &plen);
			FUZZ_CHECK(rc == CHAT_OK || lost || hi->now_ms != hr->now_ms);
			if (rc == CHAT_OK)
				FUZZ_CHECK(plen == len && (!len || memcmp(plain, p, len) == 0));
			break;
		case 7:
			if (ops->fingerprint) {
				char a[128], b[128];
				if (ops->fingerprint(si, sizeof(a), a) == CHAT_OK &&
				    ops->fingerprint(sr, sizeof(b), b) == CHAT_OK)
					FUZZ_CHECK(strcmp(a, b) == 0);
			}
			break;
		}
	}
	for (int i = 0; i < 4; i++)
		fb_free(&kept[i]);
	fb_free(&msg);
	ops->session_free(si);
	ops->session_free(sr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct fuzz_host hi, hr;

	fuzz_init();
	if (!plugin) {
		plugin = fuzz_suite(SUITE_NAME);
		ops = plugin->ops.cipher;
	}
	unsigned mode = fin_u8(&in), seed = fin_u8(&in);
	pin_peer = !(seed & 0x80);
	fuzz_host_init(&hi, plugin, 1 + 2 * seed);
	fuzz_host_init(&hr, plugin, 2 + 2 * seed);
	switch (mode % 6) {
	case 0:
		handshake_with(&in, CHAT_ROLE_RESPONDER, &hr);
		break;
	case 1:
		handshake_with(&in, CHAT_ROLE_INITIATOR, &hi);
		break;
	case 2:
		man_in_the_middle(&in, &hi, &hr);
		break;
	case 3:
		load_blob(&in, &hr);
		break;
	default:
		established(&in, &hi, &hr);
	}
	return 0;
}

/* Seeds: a real handshake (each message as the responder or initiator gets
 * it), a saved session, and a conversation of every operation. */
void fuzz_seeds(const char *dir)
{
	struct fuzz_host hi, hr;
	struct fuzz_buf t = { 0 }, b = { 0 };
	void *si, *sr;
	uint8_t saved[8192];
	struct chat_buf dst = { .data = saved, .cap = sizeof(saved) };

	plugin = fuzz_suite(SUITE_NAME);
	ops = plugin->ops.cipher;
	fuzz_host_init(&hi, plugin, 1);
	fuzz_host_init(&hr, plugin, 2);
	if (pair_up(&hi.host, &hr.host, &si, &sr, &t) != CHAT_OK)
		abort();
	/* the transcript: messages as u16 length + bytes, the initiator's first */
	fb_u8(&b, 0); fb_u8(&b, 0);
	fb_put(&b, t.len, t.data);
	fuzz_write_seed(dir, "responder", b.len, b.data);
	b.len = 0;
	fb_u8(&b, 1); fb_u8(&b, 0);
	{
		struct fuzz_in in = { t.data, t.len };
		size_t len;
		fin_blob(&in, &len); /* the initiator's own first message */
		fb_put(&b, in.left, in.p);
	}
	fuzz_write_seed(dir, "initiator", b.len, b.data);
	b.len = 0;
	fb_u8(&b, 2); fb_u8(&b, 0);
	fb_u8(&b, 0); fb_u8(&b, 1); fb_u16(&b, 40); fb_u8(&b, 0x20); fb_u8(&b, 0);
	fuzz_write_seed(dir, "mitm", b.len, b.data);
	if (CHAT_CIPHER_HAS(ops, session_save) && ops->session_save(sr, &dst) == CHAT_OK) {
		b.len = 0;
		fb_u8(&b, 3); fb_u8(&b, 0); fb_u8(&b, 0);
		fb_blob(&b, dst.len, dst.data);
		fuzz_write_seed(dir, "load", b.len, b.data);
	}
	b.len = 0;
	fb_u8(&b, 4); fb_u8(&b, 0);
	fb_u8(&b, 1); fb_blob(&b, 5, "hello"); fb_u8(&b, 0);
	fb_u8(&b, 1); fb_blob(&b, 17, "a second message!"); fb_u8(&b, 2);
	fb_u8(&b, 6); fb_blob(&b, 5, "reply");
	fb_u8(&b, 2); fb_blob(&b, 4, "kept"); fb_u8(&b, 1);
	fb_u8(&b, 3); fb_u8(&b, 1);
	fb_u8(&b, 4); fb_u16(&b, 30);
	fb_u8(&b, 5); fb_u8(&b, 0);
	fb_u8(&b, 1); fb_blob(&b, 5, "after"); fb_u8(&b, 1);
	fb_u16(&b, 0); fb_u16(&b, 0); fb_u8(&b, 1); fb_u16(&b, 3); fb_u8(&b, 0x10);
	fb_u8(&b, 7);
	fuzz_write_seed(dir, "established", b.len, b.data);
	b.len = 0;
	fb_u8(&b, 4); fb_u8(&b, 0);
	{
		struct chat_buf d = { .data = out, .cap = sizeof(out) };
		if (ops->seal(si, 3, &d, (const uint8_t *)"abc") == CHAT_OK) {
			fb_u8(&b, 0);
			fb_blob(&b, d.len, d.data);
		}
	}
	fuzz_write_seed(dir, "open_raw", b.len, b.data);
	ops->session_free(si);
	ops->session_free(sr);
	fb_free(&t);
	fb_free(&b);
}
