/* The peer protocol (frontends/peer/peer.c): a real peer engine (chatpeer)
 * as bob, listening and connecting on the in-memory transport, with its
 * directory (alice, password s3cret) on disk.  The harness is alice: a
 * session of the same suite driven through the plugin's ops, so it can get
 * through the preamble and the handshake honestly and then send whatever
 * the input says, sealed or not.
 *
 * Input: u8 setup: bits 0-1 the suite (xor-demo, aescbc-hmac, rc4dh), bit 2
 * bob sends alice a message (the harness answers as the receiving side),
 * else alice connects to bob; bit 3 no honest start: frames from the input
 * from the first byte.  Then operations until the input ends, u8 op % 8:
 *   0  a frame: u16 length + bytes
 *   1  alice seals a DATA chunk: u8 flags (bit 0: more follow), u16-length text
 *   2  alice seals an ACK: u8 (1: of the right digest), u16-length bytes
 *   3  raw stream bytes: u16 length + bytes
 *   4  end of stream from alice
 *   5  a NACK: u8 code, u16-length reason
 *   6  a line typed at bob: u16 length + text (/send, a message body, ...)
 *   7  the loop runs a few rounds
 * Invariants: every frame bob writes is one of the five types, a NACK is
 * well-formed; events are well-formed; alice opens what bob seals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/sha2.h>

#include "be.h"
#include "fakenet.h"
#include "fuzz.h"
#include "peer.h"

static const char *const suite_names[] = { "xor-demo", "aescbc-hmac", "rc4dh" };
static const char directory_json[] =
	"[{\"username\": \"alice\", \"ip\": \"10.9.9.9\", \"port\": 7501, \"password\": \"s3cret\"}]";

struct h {
	struct chat_loop *loop;
	struct chat_peer *p;
	struct fake_conn *fc;
	const struct chat_cipher_ops *ops;
	const struct chat_loaded *suite;
	void *alice;
	int alice_up, failed;
	uint8_t digest[32];      /* of what bob sent us */
	struct fuzz_buf got;     /* what bob sent, opened */
	struct fuzz_buf hello;   /* the preamble frame: the binding */
};

static struct chat_host tp_host;
static uint8_t buf[1 << 17];

static void on_event(void *ui, const struct chat_peer_event *ev)
{
	(void)ui;
	FUZZ_CHECK(ev->kind >= CHAT_PEER_EV_LISTENING && ev->kind <= CHAT_PEER_EV_HELP);
	FUZZ_CHECK(ev->peer && ev->code && ev->text);
	if (getenv("CHAT_FUZZ_EVENTS"))
		fprintf(stderr, "event %d peer=%s code=%s text=%.*s\n", ev->kind, ev->peer, ev->code,
		        (int)ev->text_len, ev->text);
}

static void alice_frame(struct h *h, int type, size_t len, const uint8_t *body)
{
	uint8_t *f = malloc(len + 1);
	FUZZ_CHECK(f);
	f[0] = (uint8_t)type;
	if (len)
		memcpy(f + 1, body, len);
	fake_push_frame(h->fc, len + 1, f);
	free(f);
}

static int alice_session(struct h *h, int role)
{
	struct chat_cipher_params p = {
		.size = sizeof(p), .role = role, .local_id = "alice", .peer_id = "bob",
		.suite = h->suite->desc->name, .secret = (const uint8_t *)"s3cret", .secret_len = 6,
		.binding = h->hello.data, .binding_len = h->hello.len,
	};
	return h->ops->session_new(&h->suite->host, &p, &h->alice);
}

static void alice_step(struct h *h, size_t len, const uint8_t *src)
{
	struct chat_buf dst = { .data = buf, .cap = sizeof(buf) };
	int rc;

	if (!h->alice || h->alice_up || h->failed)
		return;
	rc = h->ops->handshake(h->alice, len, &dst, src);
	if (rc < 0) {
		h->failed = 1;
		return;
	}
	if (dst.len)
		alice_frame(h, 0x02, dst.len, dst.data);
	h->alice_up = rc == CHAT_HS_ESTABLISHED;
}

/* What bob wrote: check it, and answer as alice would. */
static void alice_reads(struct h *h)
{
	const uint8_t *f;
	size_t len;

	while (h->fc && fake_next_frame(h->fc, &f, &len)) {
		FUZZ_CHECK(len >= 1 && f[0] >= 0x01 && f[0] <= 0x05);
		switch (f[0]) {
		case 0x01: /* bob's preamble: alice is the responder */
			FUZZ_CHECK(len <= 256);
			if (h->alice)
				break;
			h->hello.len = 0;
			fb_put(&h->hello, len, f);
			if (alice_session(h, CHAT_ROLE_RESPONDER) != CHAT_OK)
				h->failed = 1;
			break;
		case 0x02:
			alice_step(h, len - 1, f + 1);
			break;
		case 0x03: {
			struct chat_buf dst = { .data = buf, .cap = sizeof(buf) };
			FUZZ_CHECK(len >= 2);
			if (!h->alice_up)
				break;
			int rc = h->ops->open(h->alice, len - 2, &dst, f + 2);
			if (rc != CHAT_OK)
				fprintf(stderr, "alice cannot open bob's chunk: %s\n", chat_strerror(rc));
			FUZZ_CHECK(rc == CHAT_OK);
			fb_put(&h->got, dst.len, dst.data);
			if (!(f[1] & 1)) {
				struct sha256_ctx s;
				sha256_init(&s);
				sha256_update(&s, h->got.len, h->got.data);
				sha256_digest(&s, sizeof(h->digest), h->digest);
			}
			break;
		}
		case 0x05:
			FUZZ_CHECK(len >= 4 && f[1] >= 1 && chat_be16_get(f + 2) == len - 4 && len - 4 <= 512);
			break;
		}
	}
}

static void run(struct h *h, int rounds)
{
	for (int i = 0; i < 3; i++) {
		fake_run(h->loop, rounds);
		alice_reads(h);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct h h;
	char err[512];
	static const char *dir_path;

	fuzz_init();
	if (!dir_path) {
		chat_host_init(&tp_host, NULL);
		dir_path = strdup(fuzz_file("peers.json", strlen(directory_json), directory_json));
	}
	memset(&h, 0, sizeof(h));
	unsigned setup = fin_u8(&in);
	const char *sname = suite_names[(setup & 3) % 3];
	h.suite = chat_registry_find(fuzz_registry(), CHAT_PLUGIN_CIPHER, sname);
	h.ops = h.suite->desc->ops.cipher;
	struct chat_peer_config cfg = {
		.user = "bob", .listen = "127.0.0.1:7500", .tp = &fake_ops, .tp_host = &tp_host,
		.suite = h.suite, .directory = dir_path, .max_frame = 65536, .timeout_ms = 10000,
	};
	FUZZ_CHECK(chat_loop_new(&h.loop) == CHAT_OK);
	if (chat_peer_new(h.loop, &cfg, on_event, NULL, &h.p, sizeof(err), err) != CHAT_OK) {
		fprintf(stderr, "fuzz_peer: %s\n", err);
		abort();
	}
	if (setup & 4) {
		FUZZ_CHECK(chat_peer_send(h.p, "alice", NULL, NULL, 11, "hello alice") == CHAT_OK);
		h.fc = fake_connected();
		FUZZ_CHECK(h.fc);
		if (setup & 8) /* alice says nothing honest: no session */
			h.failed = 1;
		run(&h, 3);
	} else {
		h.fc = fake_conn_new("10.9.9.9:40001");
		fake_listener_queue(fake_the_listener(), h.fc);
		if (!(setup & 8)) {
			char text[128];
			int n = snprintf(text, sizeof(text), "chat-peer/1\nsuite %s\nfrom alice\nto bob\n", sname);
			fb_u8(&h.hello, 0x01);
			fb_put(&h.hello, (size_t)n, text);
			fake_push_frame(h.fc, h.hello.len, h.hello.data);
			FUZZ_CHECK(alice_session(&h, CHAT_ROLE_INITIATOR) == CHAT_OK);
			alice_step(&h, 0, NULL);
		}
		run(&h, 3);
	}
	for (int steps = 0; in.left && steps < 64; steps++) {
		unsigned op = fin_u8(&in) % 8, x;
		size_t len;
		const uint8_t *p;
		struct chat_buf dst = { .data = buf, .cap = sizeof(buf) };

		switch (op) {
		case 0:
			p = fin_blob(&in, &len);
			fake_push_frame(h.fc, len, p);
			break;
		case 1:
			x = fin_u8(&in);
			p = fin_blob(&in, &len);
			if (h.alice_up && h.ops->seal(h.alice, len, &dst, p) == CHAT_OK) {
				struct fuzz_buf f = { 0 };
				fb_u8(&f, x & 1);
				fb_put(&f, dst.len, dst.data);
				alice_frame(&h, 0x03, f.len, f.data);
				fb_free(&f);
			}
			break;
		case 2:
			x = fin_u8(&in);
			p = fin_blob(&in, &len);
			if (x == 1) {
				p = h.digest;
				len = sizeof(h.digest);
			}
			if (h.alice_up && h.ops->seal(h.alice, len, &dst, p) == CHAT_OK)
				alice_frame(&h, 0x04, dst.len, dst.data);
			break;
		case 3:
			p = fin_blob(&in, &len);
			fake_push(h.fc, len, p);
			break;
		case 4:
			fake_push_eof(h.fc);
			break;
		case 5: {
			struct fuzz_buf f = { 0 };
			fb_u8(&f, fin_u8(&in));
			p = fin_blob(&in, &len);
			fb_u16(&f, (unsigned)len);
			fb_put(&f, len, p);
			alice_frame(&h, 0x05, f.len, f.data);
			fb_free(&f);
			break;
		}
		case 6: {
			p = fin_blob(&in, &len);
			char *line = malloc(len + 1);
			FUZZ_CHECK(line);
			memcpy(line, p, len);
			line[len] = '\0';
			chat_peer_input(h.p, strlen(line), line);
			free(line);
			break;
		}
		case 7:
			run(&h, 8);
			break;
		}
		run(&h, 3);
	}
	chat_peer_input_end(h.p);
	run(&h, 3);
	chat_peer_free(h.p);
	if (h.alice)
		h.ops->session_free(h.alice);
	chat_loop_free(h.loop);
	fakenet_reset();
	fb_free(&h.got);
	fb_free(&h.hello);
	return 0;
}

void fuzz_seeds(const char *dir)
{
	struct fuzz_buf b = { 0 };
	char name[32];

	for (unsigned s = 0; s < 3; s++) {
		/* alice writes to bob: two chunks */
		b.len = 0;
		fb_u8(&b, s);
		fb_u8(&b, 1); fb_u8(&b, 1); fb_blob(&b, 6, "hello ");
		fb_u8(&b, 1); fb_u8(&b, 0); fb_blob(&b, 3, "bob");
		fb_u8(&b, 7);
		snprintf(name, sizeof(name), "to_bob_%s", suite_names[s]);
		fuzz_write_seed(dir, name, b.len, b.data);
		/* bob writes to alice: she acknowledges */
		b.len = 0;
		fb_u8(&b, s | 4);
		fb_u8(&b, 7);
		fb_u8(&b, 2); fb_u8(&b, 1); fb_blob(&b, 0, "");
		snprintf(name, sizeof(name), "to_alice_%s", suite_names[s]);
		fuzz_write_seed(dir, name, b.len, b.data);
	}
	b.len = 0;
	fb_u8(&b, 4);
	fb_u8(&b, 2); fb_u8(&b, 0); fb_blob(&b, 3, "bad");
	fb_u8(&b, 5); fb_u8(&b, 6); fb_blob(&b, 6, "denied");
	fuzz_write_seed(dir, "bad_ack", b.len, b.data);
	b.len = 0;
	fb_u8(&b, 8);
	fb_u8(&b, 0); fb_blob(&b, 52, "\x01" "chat-peer/1\nsuite xor-demo\nfrom alice\nto bob\n\0\0\0\0\0\0\0");
	fb_u8(&b, 0); fb_blob(&b, 7, "\x02" "CHXR\x01\x05");
	fb_u8(&b, 3); fb_blob(&b, 5, "\x00\x00\x00\x09\x03");
	fb_u8(&b, 6); fb_blob(&b, 11, "/send alice");
	fb_u8(&b, 6); fb_blob(&b, 5, "hello");
	fb_u8(&b, 6); fb_blob(&b, 1, ".");
	fuzz_write_seed(dir, "raw", b.len, b.data);
	fb_free(&b);
}
