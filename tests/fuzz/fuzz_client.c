/* The client's end-to-end payload handling: a real client engine
 * (chatclient) as bob, connected to a fake relay (the harness, on the
 * in-memory transport), with a conversation with alice established
 * in-process: alice is a session of the same suite that the harness drives
 * through the plugin's ops, so it can seal whatever the input says and the
 * client opens it as a real message.  Reached: client_on_payload,
 * client_on_data (chunks, headers, reassembly), client_deliver_received
 * (order, held messages, gaps, receipts), MAIL and ACK handling, and every
 * relay message the client dispatches.
 *
 * Input: u8 setup: bits 0-1 the suite (xor-demo, aescbc-hmac, rc4dh), bit 2
 * bob logs in as a guest (live ROUTE/DELIVER) instead of registered
 * (SEND/MAIL), then operations until the input ends, u8 op % 8:
 *   0  alice seals a chunk: u8 kind, u64 seq, u16 chunk index (bit 15: the
 *      last chunk), u16-length body; sent as DELIVER
 *   1  the same, inside MAIL: u64 mail id, then as 0
 *   2  a relay frame: u16 length + bytes
 *   3  DELIVER from alice: u16-length payload (not sealed by the harness)
 *   4  MAIL: u64 mail id, u16-length inner message
 *   5  a line typed by bob: u16 length + text (a message, or a /command)
 *   6  STORED or RECEIPT (u8 status) for bob's last SEND id
 *   7  alice seals E_TEXT message number `next` (u16-length text) in one
 *      chunk, kept back (u8: 1 = deliver now, else swap with the kept one)
 * The harness plays the relay: it answers HELLO, LOGIN, every SEND with
 * STORED, and hands bob's payloads to alice (handshake, and P_DATA, which
 * alice must be able to open: bob seals correctly).  Invariants: every
 * frame bob writes parses; alice opens everything bob sealed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"
#include "fakenet.h"
#include "fuzz.h"

static const char *const suite_names[] = { "xor-demo", "aescbc-hmac", "rc4dh" };

struct h {
	struct chat_loop *loop;
	struct chat_client *c;
	struct fake_conn *fc;
	const struct chat_cipher_ops *ops;
	void *alice;
	int alice_up, hs_failed;
	uint64_t last_send, next_mail, alice_seq;
	struct chat_wbuf w;
	struct fuzz_buf kept;
	int guest;
};

static struct chat_directory directory;
static struct chat_contact contact;
static struct chat_host tp_host;
static uint8_t sealed[1 << 17];

static void on_event(void *ui, const struct chat_event *ev)
{
	(void)ui;
	FUZZ_CHECK(ev->kind >= 0 && ev->kind < CHAT_EV_KINDS);
	FUZZ_CHECK(ev->peer && ev->room && ev->suite && ev->code);
	FUZZ_CHECK(ev->text || !ev->text_len);
	if (getenv("CHAT_FUZZ_EVENTS")) /* to see what an input does */
		fprintf(stderr, "event %d peer=%s code=%s text=%.*s\n", ev->kind, ev->peer, ev->code,
		        (int)ev->text_len, ev->text ? ev->text : "");
}

static void setup(void)
{
	static int done;

	if (done)
		return;
	done = 1;
	fuzz_init();
	snprintf(contact.username, sizeof(contact.username), "alice");
	contact.password = (char *)"s3cret";
	directory.contacts = &contact;
	directory.count = 1;
	directory.path = (char *)"peers.json";
	chat_host_init(&tp_host, NULL);
	fuzz_registry();
}

static void relay_send(struct h *h)
{
	fake_push_frame(h->fc, h->w.len, h->w.data);
	chat_wbuf_reset(&h->w);
}

/* alice takes a payload bob sent her */
static void to_alice(struct h *h, size_t len, const uint8_t *p)
{
	struct chat_buf dst = { .data = sealed, .cap = sizeof(sealed) };

	if (!len || !h->alice)
		return;
	if (p[0] == P_HS && !h->alice_up && !h->hs_failed) {
		int rc = h->ops->handshake(h->alice, len - 1, &dst, p + 1);
		if (rc < 0) {
			h->hs_failed = 1;
			return;
		}
		if (rc == CHAT_HS_ESTABLISHED)
			h->alice_up = 1;
		if (dst.len) {
			chat_put_u8(&h->w, CHAT_MSG_DELIVER);
			chat_put_str8(&h->w, "alice");
			chat_put_u8(&h->w, P_HS);
			chat_put_bytes(&h->w, dst.len, dst.data);
			relay_send(h);
		}
	} else if (p[0] == P_DATA && h->alice_up && len >= 2) {
		int rc = h->ops->open(h->alice, len - 2, &dst, p + 2);
		if (rc != CHAT_OK)
			fprintf(stderr, "alice cannot open bob's message: %s\n", chat_strerror(rc));
		FUZZ_CHECK(rc == CHAT_OK);
		FUZZ_CHECK(dst.len >= E_HEADER);
	}
}

/* Read what bob wrote; play the relay. */
static void relay(struct h *h)
{
	const uint8_t *f;
	size_t len;
	struct chat_msg m;
	char err[CHAT_TEXT_MAX];

	while (h->fc && fake_next_frame(h->fc, &f, &len)) {
		if (chat_msg_parse(len, f, &m, sizeof(err), err) != CHAT_OK) {
			fprintf(stderr, "client wrote a malformed frame: %s\n", err);
			FUZZ_CHECK(!"client frames parse");
		}
		FUZZ_CHECK(m.type < 0x80);
		switch (m.type) {
		case CHAT_MSG_HELLO:
			chat_put_u8(&h->w, CHAT_MSG_WELCOME);
			chat_put_u8(&h->w, CHAT_PROTO_VERSION);
			chat_put_u8(&h->w, 0);
			relay_send(h);
			break;
		case CHAT_MSG_LOGIN:
			chat_put_u8(&h->w, CHAT_MSG_LOGGED_IN);
			chat_put_str8(&h->w, m.name);
			chat_put_u8(&h->w, h->guest ? CHAT_GROUP_GUEST : CHAT_GROUP_REGULAR);
			chat_put_u64(&h->w, 0);
			relay_send(h);
			break;
		case CHAT_MSG_PING:
			chat_put_u8(&h->w, CHAT_MSG_PONG);
			chat_put_u64(&h->w, m.id);
			relay_send(h);
			break;
		case CHAT_MSG_ROUTE:
			if (!strcmp(m.name, "alice"))
				to_alice(h, m.payload_len, m.payload);
			break;
		case CHAT_MSG_SEND:
			h->last_send = m.id;
			chat_put_u8(&h->w, CHAT_MSG_STORED);
			chat_put_str8(&h->w, m.name);
			chat_put_u64(&h->w, m.id);
			chat_put_u64(&h->w, 1000 + m.id);
			chat_put_u8(&h->w, CHAT_STORED_ONLINE);
			relay_send(h);
			if (!strcmp(m.name, "alice"))
				to_alice(h, m.payload_len, m.payload);
			break;
		default:
			break;
		}
	}
}

static void run(struct h *h, int rounds)
{
	for (int i = 0; i < 3; i++) {
		fake_run(h->loop, rounds);
		relay(h);
	}
}

/* alice seals plaintext p into a P_DATA payload in out (flags from the index). */
static int alice_seal(struct h *h, size_t len, const uint8_t *p, int more, struct fuzz_buf *out)
{
	struct chat_buf dst = { .data = sealed, .cap = sizeof(sealed) };

	out->len = 0;
	if (!h->alice_up || h->ops->seal(h->alice, len, &dst, p) != CHAT_OK)
		return -1;
	fb_u8(out, P_DATA);
	fb_u8(out, more ? DATA_MORE : 0);
	fb_put(out, dst.len, dst.data);
	return 0;
}

static void deliver(struct h *h, int as_mail, uint64_t mail_id, size_t len, const uint8_t *payload)
{
	struct chat_wbuf in;

	chat_wbuf_init(&in, 1 << 17);
	chat_put_u8(&in, CHAT_MSG_DELIVER);
	chat_put_str8(&in, "alice");
	chat_put_bytes(&in, len, payload);
	if (as_mail) {
		chat_put_u8(&h->w, CHAT_MSG_MAIL);
		chat_put_u64(&h->w, mail_id ? mail_id : ++h->next_mail);
		chat_put_u64(&h->w, (uint64_t)chat_unix_ms());
		chat_put_bytes(&h->w, in.len, in.data);
	} else {
		chat_put_bytes(&h->w, in.len, in.data);
	}
	chat_wbuf_free(&in);
	relay_send(h);
}

static void establish(struct h *h, const char *suite)
{
	char bind[512];
	const struct chat_loaded *l = chat_registry_find(fuzz_registry(), CHAT_PLUGIN_CIPHER, suite);
	const char one[1][CHAT_NAME_MAX + 1] = { "" };
	char (*list)[CHAT_NAME_MAX + 1] = (char (*)[CHAT_NAME_MAX + 1])one;

	snprintf(list[0], CHAT_NAME_MAX + 1, "%s", suite);
	chat_put_u8(&h->w, CHAT_MSG_OFFERED);
	chat_put_str8(&h->w, "alice");
	chat_put_suites(&h->w, 1, (const char (*)[CHAT_NAME_MAX + 1])list);
	relay_send(h);
	run(h, 3);
	chat_client_input(h->c, 13, "/accept alice");
	run(h, 3);
	snprintf(bind, sizeof(bind), "chat-binding-v2\ninitiator alice suites %s\nresponder bob suites %s\n"
	         "suite %s\n", suite, suite, suite);
	struct chat_cipher_params p = {
		.size = sizeof(p), .role = CHAT_ROLE_INITIATOR, .local_id = "alice", .peer_id = "bob",
		.suite = suite, .secret = (const uint8_t *)"s3cret", .secret_len = 6,
		.binding = (const uint8_t *)bind, .binding_len = strlen(bind),
	};
	h->ops = l->desc->ops.cipher;
	FUZZ_CHECK(h->ops->session_new(&l->host, &p, &h->alice) == CHAT_OK);
	struct chat_buf dst = { .data = sealed, .cap = sizeof(sealed) };
	int rc = h->ops->handshake(h->alice, 0, &dst, NULL);
	FUZZ_CHECK(rc >= 0);
	h->alice_up = rc == CHAT_HS_ESTABLISHED;
	chat_put_u8(&h->w, CHAT_MSG_DELIVER);
	chat_put_str8(&h->w, "alice");
	chat_put_u8(&h->w, P_HS);
	chat_put_bytes(&h->w, dst.len, dst.data);
	relay_send(h);
	run(h, 4);
	struct conv *v = client_find_conv(h->c, "alice");
	if (!h->alice_up || !v || v->state != C_ESTABLISHED) {
		fprintf(stderr, "fuzz_client: no session with alice (%s)\n", suite);
		FUZZ_CHECK(!"the honest handshake establishes");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct h h;
	char err[256];
	const char *suite;
	static char allowed[1][33];

	setup();
	memset(&h, 0, sizeof(h));
	unsigned setup_byte = fin_u8(&in);
	suite = suite_names[(setup_byte & 3) % 3];
	h.guest = (setup_byte & 4) != 0;
	snprintf(allowed[0], sizeof(allowed[0]), "%s", suite);
	struct chat_client_config cfg = {
		.relay = "relay:7400", .user = "bob", .tp = &fake_ops, .tp_host = &tp_host,
		.reg = fuzz_registry(), .plugin_dir = "/nonexistent", .nsuites = 1,
		.suites = (const char (*)[33])allowed, .directory = &directory, .max_frame = 65536,
		.max_message = 4096, .connect_timeout_ms = 5000,
	};
	FUZZ_CHECK(chat_loop_new(&h.loop) == CHAT_OK);
	chat_wbuf_init(&h.w, 1 << 17);
	if (chat_client_new(h.loop, &cfg, on_event, NULL, &h.c, sizeof(err), err) != CHAT_OK ||
	    chat_client_start(h.c, sizeof(err), err) != CHAT_OK) {
		fprintf(stderr, "fuzz_client: %s\n", err);
		abort();
	}
	h.fc = fake_connected();
	FUZZ_CHECK(h.fc != NULL);
	run(&h, 3);
	establish(&h, suite);
	h.alice_seq = 1;

	for (int steps = 0; in.left && steps < 128 && !chat_client_done(h.c); steps++) {
		unsigned op = fin_u8(&in) % 8;
		struct fuzz_buf pt = { 0 }, payload = { 0 };
		size_t len;
		const uint8_t *p;
		uint64_t mail_id = 0;

		switch (op) {
		case 1:
			mail_id = fin_u64(&in);
			/* fall through */
		case 0: {
			unsigned kind = fin_u8(&in);
			uint64_t seq = fin_u64(&in);
			unsigned index = fin_u16(&in);
			p = fin_blob(&in, &len);
			fb_u8(&pt, kind);
			fb_u64(&pt, seq);
			fb_u16(&pt, index);
			fb_put(&pt, len, p);
			if (alice_seal(&h, pt.len, pt.data, !(index & E_LAST), &payload) == 0)
				deliver(&h, op == 1 && !h.guest, mail_id, payload.len, payload.data);
			break;
		}
		case 2:
			p = fin_blob(&in, &len);
			fake_push_frame(h.fc, len, p);
			break;
		case 3:
			p = fin_blob(&in, &len);
			deliver(&h, 0, 0, len, p);
			break;
		case 4:
			mail_id = fin_u64(&in);
			p = fin_blob(&in, &len);
			chat_put_u8(&h.w, CHAT_MSG_MAIL);
			chat_put_u64(&h.w, mail_id);
			chat_put_u64(&h.w, (uint64_t)chat_unix_ms());
			chat_put_bytes(&h.w, len, p);
			relay_send(&h);
			break;
		case 5: {
			p = fin_blob(&in, &len);
			char *line = malloc(len + 1);
			FUZZ_CHECK(line);
			memcpy(line, p, len);
			line[len] = '\0';
			if (!strstr(line, "/quit")) /* the end of the client is not news */
				chat_client_input(h.c, len, line);
			free(line);
			break;
		}
		case 6: {
			unsigned st = fin_u8(&in);
			if (!h.last_send)
				break;
			if (st & 8) {
				chat_put_u8(&h.w, CHAT_MSG_RECEIPT);
				chat_put_str8(&h.w, "alice");
				chat_put_u64(&h.w, h.last_send);
				chat_put_u8(&h.w, 1 + st % 4);
				chat_put_str16(&h.w, "");
			} else {
				chat_put_u8(&h.w, CHAT_MSG_STORED);
				chat_put_str8(&h.w, "alice");
				chat_put_u64(&h.w, h.last_send);
				chat_put_u64(&h.w, 1000 + h.last_send);
				chat_put_u8(&h.w, 1 + st % 4);
			}
			relay_send(&h);
			break;
		}
		case 7: {
			p = fin_blob(&in, &len);
			unsigned now = fin_u8(&in) & 1;
			fb_u8(&pt, E_TEXT);
			fb_u64(&pt, h.alice_seq++);
			fb_u16(&pt, E_LAST);
			fb_put(&pt, len, p);
			if (alice_seal(&h, pt.len, pt.data, 0, &payload) != 0)
				break;
			if (!now) {
				struct fuzz_buf t = h.kept;
				h.kept = payload;
				payload = t;
			}
			if (payload.len)
				deliver(&h, !h.guest, 0, payload.len, payload.data);
			break;
		}
		}
		fb_free(&pt);
		fb_free(&payload);
		run(&h, 3);
	}
	fb_free(&h.kept);
	chat_client_free(h.c);
	if (h.alice)
		h.ops->session_free(h.alice);
	chat_wbuf_free(&h.w);
	chat_loop_free(h.loop);
	fakenet_reset();
	return 0;
}

/* ---- seeds */

static void chunk(struct fuzz_buf *b, int mail, unsigned kind, uint64_t seq, unsigned index,
                  const char *text)
{
	fb_u8(b, mail ? 1 : 0);
	if (mail)
		fb_u64(b, 0);
	fb_u8(b, kind);
	fb_u64(b, seq);
	fb_u16(b, index);
	fb_blob(b, strlen(text), text);
}

void fuzz_seeds(const char *dir)
{
	struct fuzz_buf b = { 0 };
	struct chat_wbuf w;
	char name[32];

	chat_wbuf_init(&w, 4096);
	for (unsigned s = 0; s < 3; s++) {
		for (unsigned guest = 0; guest < 2; guest++) {
			b.len = 0;
			fb_u8(&b, s | guest << 2);
			chunk(&b, 0, E_TEXT, 1, E_LAST, "hello bob");
			chunk(&b, !guest, E_TEXT, 2, 0, "part one, ");
			chunk(&b, !guest, E_TEXT, 2, 1 | E_LAST, "part two");
			chunk(&b, 0, E_TEXT, 4, E_LAST, "early: 3 is missing");
			chunk(&b, 0, E_TEXT, 3, E_LAST, "three");
			chunk(&b, 0, E_RECEIPT, 0, E_LAST, "\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01");
			chunk(&b, 0, E_TEXT, 2, E_LAST, "a duplicate");
			fb_u8(&b, 5); fb_blob(&b, 13, "hi alice, bye");
			fb_u8(&b, 6); fb_u8(&b, 1);
			fb_u8(&b, 6); fb_u8(&b, 8);
			fb_u8(&b, 7); fb_blob(&b, 4, "kept"); fb_u8(&b, 0);
			fb_u8(&b, 7); fb_blob(&b, 5, "later"); fb_u8(&b, 0);
			fb_u8(&b, 7); fb_blob(&b, 5, "swap!"); fb_u8(&b, 0);
			fb_u8(&b, 3); fb_blob(&b, 5, "\x04\x00\x03" "bye");
			snprintf(name, sizeof(name), "%s%s", suite_names[s], guest ? "_guest" : "");
			fuzz_write_seed(dir, name, b.len, b.data);
		}
	}
	/* relay frames the client dispatches */
	b.len = 0;
	fb_u8(&b, 0);
	chat_put_u8(&w, CHAT_MSG_WHO_LIST); chat_put_u16(&w, 1); chat_put_str8(&w, "carol");
	chat_put_u8(&w, 1); chat_put_str8(&w, "xor-demo"); chat_put_u8(&w, 2);
	fb_u8(&b, 2); fb_blob(&b, w.len, w.data); chat_wbuf_reset(&w);
	chat_put_u8(&w, CHAT_MSG_MEMBERS); chat_put_str8(&w, "lobby"); chat_put_u16(&w, 1);
	chat_put_str8(&w, "alice"); chat_put_u8(&w, 1); chat_put_str8(&w, "xor-demo");
	fb_u8(&b, 2); fb_blob(&b, w.len, w.data); chat_wbuf_reset(&w);
	chat_put_u8(&w, CHAT_MSG_ROOM_DELIVER); chat_put_str8(&w, "lobby"); chat_put_str8(&w, "alice");
	chat_put_bytes(&w, 4, (const uint8_t *)"\x03\x00zz");
	fb_u8(&b, 2); fb_blob(&b, w.len, w.data); chat_wbuf_reset(&w);
	chat_put_u8(&w, CHAT_MSG_ERROR); chat_put_u16(&w, CHAT_PERR_QUEUE_FULL); chat_put_u8(&w, CHAT_MSG_SEND);
	chat_put_str8(&w, "alice"); chat_put_str16(&w, "queue full"); chat_put_u64(&w, 1);
	fb_u8(&b, 2); fb_blob(&b, w.len, w.data); chat_wbuf_reset(&w);
	chat_put_u8(&w, CHAT_MSG_CLOSED); chat_put_str8(&w, "alice");
	fb_u8(&b, 4); fb_u64(&b, 77); fb_blob(&b, w.len, w.data); chat_wbuf_reset(&w);
	chat_put_u8(&w, CHAT_MSG_FRIEND_EVENT); chat_put_str8(&w, "carol"); chat_put_u8(&w, 1);
	fb_u8(&b, 4); fb_u64(&b, 78); fb_blob(&b, w.len, w.data); chat_wbuf_reset(&w);
	fb_u8(&b, 5); fb_blob(&b, 11, "/join lobby");
	fb_u8(&b, 5); fb_blob(&b, 7, "/who");
	fuzz_write_seed(dir, "relay_frames", b.len, b.data);
	chat_wbuf_free(&w);
	fb_free(&b);
}
