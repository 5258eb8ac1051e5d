/* The relay's request handlers: a real relay engine (chatrelay) with its
 * real event loop and a fresh SQLite store per input, its clients on the
 * in-memory transport (fakenet.h).  What parser-only fuzzing cannot reach:
 * state across requests and clients (conversations, rooms, accounts,
 * friends, stored mail, ACKs, the commit of each loop round).
 *
 * The store holds three accounts: alice (admin), bob and carol (regular),
 * all with the password "pw".  Input:
 *   u8 config: bit 0 open registration, bit 1 friends only, bit 2 archive,
 *     bit 3 the relay carries only xor-demo and aescbc-hmac, bit 4 no guests
 *   3 x u8 prelude, one per connection (10.0.0.1..3):
 *     0 nothing, 1 HELLO, 2 HELLO and a guest LOGIN as gN, 3 HELLO and a
 *     SCRAM login as alice/bob/carol (the harness computes the proof)
 *   then operations until the input ends, u8 op: bits 0-1 the connection
 *   (3: a new connection is opened for it), bits 2-4 what:
 *     0, 1, 4  a frame: u16 length + bytes
 *     2  raw stream bytes: u16 length + bytes (cut frames, bad headers)
 *     3  end of stream from the client (the connection goes)
 *     5  ACK (processed) of the last MAIL this connection was sent
 *     6  the loop runs a few more rounds
 *     7  the client stops reading: its writes take 1 byte at a time
 * Invariants: every frame the relay writes parses (chat_msg_parse), and a
 * MAIL's inner message too; ASan/UBSan on everything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nettle/base64.h>
#include <nettle/hmac.h>
#include <nettle/pbkdf2.h>
#include <nettle/sha2.h>

#include "fakenet.h"
#include "fuzz.h"
#include "proto.h"
#include "relay.h"
#include "store.h"

#define NCONN 4

static struct chat_scram_verifier ver;
static uint8_t client_key[CHAT_SCRAM_KEY];
static const uint8_t salt[16] = "relay-fuzz-salt";

struct cl {
	struct fake_conn *fc;
	uint64_t last_mail;
	char server_first[CHAT_SCRAM_MSG_MAX + 1];
};

static struct cl cls[NCONN];

static void setup(void)
{
	static int done;
	struct hmac_sha256_ctx h;
	uint8_t salted[32];

	if (done)
		return;
	done = 1;
	fuzz_init();
	chat_scram_make_verifier(2, "pw", sizeof(salt), salt, 4096, &ver);
	pbkdf2_hmac_sha256(2, (const uint8_t *)"pw", 4096, sizeof(salt), salt, sizeof(salted), salted);
	hmac_sha256_set_key(&h, sizeof(salted), salted);
	hmac_sha256_update(&h, 10, (const uint8_t *)"Client Key");
	hmac_sha256_digest(&h, sizeof(client_key), client_key);
}

/* Every frame the relay wrote to c so far must parse; remember MAIL ids and
 * the last AUTH_CHALLENGE. */
static void drain(struct cl *c)
{
	const uint8_t *f;
	size_t len;
	struct chat_msg m, inner;
	char err[CHAT_TEXT_MAX];

	while (c->fc && fake_next_frame(c->fc, &f, &len)) {
		if (chat_msg_parse(len, f, &m, sizeof(err), err) != CHAT_OK) {
			fprintf(stderr, "relay wrote a malformed frame: %s\n", err);
			FUZZ_CHECK(!"relay frames parse");
		}
		FUZZ_CHECK(m.type >= 0x80 || m.type == CHAT_MSG_PING || m.type == CHAT_MSG_PONG);
		if (m.type == CHAT_MSG_MAIL) {
			FUZZ_CHECK(chat_msg_parse(m.payload_len, m.payload, &inner, sizeof(err), err) == CHAT_OK);
			c->last_mail = m.id;
		}
		if (m.type == CHAT_MSG_AUTH_CHALLENGE)
			snprintf(c->server_first, sizeof(c->server_first), "%s", m.text);
	}
}

static void run(struct chat_loop *loop, int rounds)
{
	fake_run(loop, rounds);
	for (int i = 0; i < NCONN; i++)
		drain(&cls[i]);
}

static void send_msg(struct cl *c, struct chat_wbuf *b)
{
	fake_push_frame(c->fc, b->len, b->data);
	chat_wbuf_reset(b);
}

static void hello(struct cl *c, struct chat_wbuf *b)
{
	const char suites[2][CHAT_NAME_MAX + 1] = { "xor-demo", "aescbc-hmac" };

	chat_put_u8(b, CHAT_MSG_HELLO);
	chat_put_u8(b, CHAT_PROTO_VERSION);
	chat_put_suites(b, 2, suites);
	send_msg(c, b);
}

static void scram_login(struct chat_loop *loop, struct cl *c, struct chat_wbuf *b, const char *user)
{
	char first[128], fin[CHAT_SCRAM_MSG_MAX], auth[4 * CHAT_SCRAM_MSG_MAX], nonce[256];
	uint8_t sig[32], proof[32];
	char proof_b64[64];
	struct hmac_sha256_ctx h;

	snprintf(first, sizeof(first), "n,,n=%s,r=fuzzclientnonce", user);
	chat_put_u8(b, CHAT_MSG_AUTH);
	chat_put_u8(b, CHAT_AUTH_LOGIN);
	chat_put_str16(b, first);
	send_msg(c, b);
	c->server_first[0] = '\0';
	run(loop, 3);
	if (strncmp(c->server_first, "r=", 2))
		return;
	snprintf(nonce, sizeof(nonce), "%.*s", (int)strcspn(c->server_first + 2, ","), c->server_first + 2);
	snprintf(fin, sizeof(fin), "c=biws,r=%s", nonce);
	snprintf(auth, sizeof(auth), "%s,%s,%s", first + 3, c->server_first, fin);
	hmac_sha256_set_key(&h, 32, ver.stored_key);
	hmac_sha256_update(&h, strlen(auth), (const uint8_t *)auth);
	hmac_sha256_digest(&h, 32, sig);
	for (int i = 0; i < 32; i++)
		proof[i] = client_key[i] ^ sig[i];
	base64_encode_raw(proof_b64, 32, proof);
	proof_b64[BASE64_ENCODE_RAW_LENGTH(32)] = '\0';
	snprintf(fin + strlen(fin), sizeof(fin) - strlen(fin), ",p=%s", proof_b64);
	chat_put_u8(b, CHAT_MSG_AUTH_FINAL);
	chat_put_str16(b, fin);
	send_msg(c, b);
}

/* The store: made once (schema and the three accounts) and kept as an
 * image; every input starts from a copy of it, which is much cheaper than
 * creating a database. */
static struct chat_store *new_store(void)
{
	static uint8_t *image;
	static size_t image_len;
	char path[512], err[512];
	static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
	struct chat_store *s;
	static const char *const names[] = { "alice", "bob", "carol" };

	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/relay.db%s", fuzz_tmpdir(), suffixes[i]);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/relay.db", fuzz_tmpdir());
	if (!image) {
		if (chat_store_open(path, &s, sizeof(err), err) != CHAT_OK) {
			fprintf(stderr, "fuzz_relay: %s\n", err);
			abort();
		}
		for (int i = 0; i < 3; i++) {
			struct chat_account a = { .group = i ? CHAT_GROUP_REGULAR : CHAT_GROUP_ADMIN, .v = ver,
			                          .created_ms = 1700000000000 };
			snprintf(a.name, sizeof(a.name), "%s", names[i]);
			FUZZ_CHECK(chat_store_account_add(s, &a) == CHAT_OK);
		}
		chat_store_close(s); /* checkpoints the WAL into the file */
		FILE *f = fopen(path, "rb");
		struct fuzz_buf b = { 0 };
		uint8_t buf[4096];
		size_t n;
		FUZZ_CHECK(f);
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
			fb_put(&b, n, buf);
		fclose(f);
		image = b.data;
		image_len = b.len;
	}
	fuzz_file("relay.db", image_len, image);
	if (chat_store_open(path, &s, sizeof(err), err) != CHAT_OK) {
		fprintf(stderr, "fuzz_relay: %s\n", err);
		abort();
	}
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct chat_loop *loop;
	struct chat_relay *r;
	struct chat_store *store;
	struct chat_wbuf b;
	static const char *const carried[] = { "xor-demo", "aescbc-hmac" };
	static const char *const users[] = { "alice", "bob", "carol", "alice" };

	setup();
	unsigned config = fin_u8(&in);
	store = new_store();
	FUZZ_CHECK(chat_loop_new(&loop) == CHAT_OK);
	struct chat_relay_config cfg = {
		.limits = { .max_frame = 65536, .out_limit = 1 << 20 },
		.max_clients = 16,
		.nsuites = (config & 8) ? 2 : 0,
		.suites = carried,
		.max_rooms_per_client = 4,
		.max_room_members = 8,
		.max_pending_offers = 4,
		.max_bad_requests = 8,
		.store = store,
		.guests = !(config & 16),
		.open_registration = (config & 1) != 0,
		.friends_only = (config & 2) != 0,
		.queue_max_messages = 6,
		.queue_max_bytes = 4096,
		.queue_expiry_ms = 86400000,
		.archive = (config & 4) != 0,
		.archive_ms = 86400000,
		.throttle_after = 2,
		.throttle_ms = 1000,
		.throttle_max_ms = 10000,
		.scram_iterations = 4096,
	};
	FUZZ_CHECK(chat_relay_new(loop, &cfg, &r) == CHAT_OK);
	chat_wbuf_init(&b, 65536);
	memset(cls, 0, sizeof(cls));
	for (int i = 0; i < 3; i++) {
		unsigned pre = fin_u8(&in) % 4;
		cls[i].fc = fake_conn_new(NULL);
		FUZZ_CHECK(chat_relay_accept(r, &fake_ops, cls[i].fc) == CHAT_OK);
		if (pre >= 1)
			hello(&cls[i], &b);
		if (pre == 2) {
			char name[8];
			snprintf(name, sizeof(name), "g%d", i);
			chat_put_u8(&b, CHAT_MSG_LOGIN);
			chat_put_str8(&b, name);
			send_msg(&cls[i], &b);
		}
		run(loop, 3);
		if (pre == 3)
			scram_login(loop, &cls[i], &b, users[i]);
		run(loop, 3);
	}
	for (int steps = 0; in.left && steps < 256; steps++) {
		unsigned op = fin_u8(&in);
		struct cl *c = &cls[op & 3];
		size_t len;
		const uint8_t *p;

		if (!c->fc) {
			c->fc = fake_conn_new(NULL);
			if (chat_relay_accept(r, &fake_ops, c->fc) != CHAT_OK)
				c->fc = NULL;
		}
		if (!c->fc)
			continue;
		switch ((op >> 2) & 7) {
		case 0:
		case 1:
		case 4:
			p = fin_blob(&in, &len);
			fake_push_frame(c->fc, len, p);
			break;
		case 2:
			p = fin_blob(&in, &len);
			fake_push(c->fc, len, p);
			break;
		case 3:
			fake_push_eof(c->fc);
			break;
		case 5:
			if (c->last_mail) {
				chat_put_u8(&b, CHAT_MSG_ACK);
				chat_put_u64(&b, c->last_mail);
				chat_put_u8(&b, 0);
				chat_put_str16(&b, "");
				send_msg(c, &b);
			}
			break;
		case 6:
			run(loop, 8);
			break;
		case 7:
			c->fc->write_budget = 1;
			break;
		}
		run(loop, 4);
		if (c->fc->closed && (op & 3) == 3)
			c->fc = NULL; /* the spare slot takes a new connection next time */
	}
	run(loop, 4);
	chat_wbuf_free(&b);
	chat_relay_free(r);
	chat_loop_free(loop);
	chat_store_close(store);
	fakenet_reset();
	return 0;
}

/* ---- seeds: conversations as the real clients have them */

struct seed {
	struct fuzz_buf f;
	struct chat_wbuf w;
};

static void op_frame(struct seed *s, unsigned conn)
{
	fb_u8(&s->f, conn & 3);
	fb_blob(&s->f, s->w.len, s->w.data);
	chat_wbuf_reset(&s->w);
}

static void seed_begin(struct seed *s, unsigned config, unsigned p0, unsigned p1, unsigned p2)
{
	s->f.len = 0;
	fb_u8(&s->f, config);
	fb_u8(&s->f, p0);
	fb_u8(&s->f, p1);
	fb_u8(&s->f, p2);
}

void fuzz_seeds(const char *dir)
{
	struct seed s;
	const uint8_t hs[] = { 0x02, 'C', 'H', 'X', 'R', 0x01, 0x2a };
	const uint8_t data[] = { 0x03, 0x00, 0x11, 0x22, 0x33 };
	struct chat_scram_verifier v;
	const char one[1][CHAT_NAME_MAX + 1] = { "xor-demo" };

	memset(&s, 0, sizeof(s));
	chat_wbuf_init(&s.w, 65536);
	memset(&v, 0, sizeof(v));
	v.salt_len = 16;
	memset(v.salt, 7, 16);
	v.iterations = 4096;

	/* guests talking live, a room */
	seed_begin(&s, 0, 2, 2, 1);
	chat_put_u8(&s.w, CHAT_MSG_WHO); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_TALK); chat_put_str8(&s.w, "g1"); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_ANSWER); chat_put_str8(&s.w, "g0"); chat_put_u8(&s.w, 1);
	chat_put_str8(&s.w, "xor-demo"); chat_put_str16(&s.w, ""); op_frame(&s, 1);
	chat_put_u8(&s.w, CHAT_MSG_ROUTE); chat_put_str8(&s.w, "g1"); chat_put_bytes(&s.w, sizeof(hs), hs); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_ROUTE); chat_put_str8(&s.w, "g0"); chat_put_bytes(&s.w, sizeof(data), data); op_frame(&s, 1);
	chat_put_u8(&s.w, CHAT_MSG_JOIN); chat_put_str8(&s.w, "lobby"); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_JOIN); chat_put_str8(&s.w, "lobby"); op_frame(&s, 1);
	chat_put_u8(&s.w, CHAT_MSG_ROOMS); op_frame(&s, 1);
	chat_put_u8(&s.w, CHAT_MSG_ROOM_SEND); chat_put_str8(&s.w, "lobby"); chat_put_u16(&s.w, 1);
	chat_put_str8(&s.w, "g1"); chat_put_u32(&s.w, sizeof(data)); chat_put_bytes(&s.w, sizeof(data), data); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_LEAVE); chat_put_str8(&s.w, "lobby"); op_frame(&s, 1);
	chat_put_u8(&s.w, CHAT_MSG_CLOSE); chat_put_str8(&s.w, "g1"); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_LOGIN); chat_put_str8(&s.w, "g9"); op_frame(&s, 2);
	chat_put_u8(&s.w, CHAT_MSG_PING); chat_put_u64(&s.w, 5); op_frame(&s, 2);
	fb_u8(&s.f, 3 << 2 | 1); /* g1 goes */
	fuzz_write_seed(dir, "guests", s.f.len, s.f.data);

	/* registered users: offers, stored mail, ACKs, friends */
	seed_begin(&s, 0, 3, 3, 3);
	chat_put_u8(&s.w, CHAT_MSG_TALK); chat_put_str8(&s.w, "bob"); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_ANSWER); chat_put_str8(&s.w, "alice"); chat_put_u8(&s.w, 1);
	chat_put_str8(&s.w, "xor-demo"); chat_put_str16(&s.w, ""); op_frame(&s, 1);
	chat_put_u8(&s.w, CHAT_MSG_SEND); chat_put_str8(&s.w, "bob"); chat_put_u64(&s.w, 1);
	chat_put_bytes(&s.w, sizeof(hs), hs); op_frame(&s, 0);
	fb_u8(&s.f, 5 << 2 | 1); /* bob ACKs */
	chat_put_u8(&s.w, CHAT_MSG_SEND); chat_put_str8(&s.w, "bob"); chat_put_u64(&s.w, 2);
	chat_put_bytes(&s.w, sizeof(data), data); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_SEND); chat_put_str8(&s.w, "bob"); chat_put_u64(&s.w, 2);
	chat_put_bytes(&s.w, sizeof(data), data); op_frame(&s, 0); /* duplicate */
	chat_put_u8(&s.w, CHAT_MSG_ACK); chat_put_u64(&s.w, 3); chat_put_u8(&s.w, 1);
	chat_put_str16(&s.w, "integrity"); op_frame(&s, 1);
	fb_u8(&s.f, 3 << 2 | 1); /* bob goes; alice's next SEND is queued */
	chat_put_u8(&s.w, CHAT_MSG_SEND); chat_put_str8(&s.w, "bob"); chat_put_u64(&s.w, 3);
	chat_put_bytes(&s.w, sizeof(data), data); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_FRIEND); chat_put_u8(&s.w, CHAT_FRIEND_OP_ADD); chat_put_str8(&s.w, "carol"); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_FRIEND); chat_put_u8(&s.w, CHAT_FRIEND_OP_ADD); chat_put_str8(&s.w, "alice"); op_frame(&s, 2);
	chat_put_u8(&s.w, CHAT_MSG_FRIEND); chat_put_u8(&s.w, CHAT_FRIEND_OP_LIST); chat_put_str8(&s.w, ""); op_frame(&s, 2);
	chat_put_u8(&s.w, CHAT_MSG_CLOSE); chat_put_str8(&s.w, "bob"); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_WHO); op_frame(&s, 2);
	fuzz_write_seed(dir, "registered", s.f.len, s.f.data);

	/* admin, registration, login failures */
	seed_begin(&s, 1, 3, 1, 1);
	chat_put_u8(&s.w, CHAT_MSG_ADMIN); chat_put_u8(&s.w, CHAT_ADMIN_USERS); chat_put_str8(&s.w, ""); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_ADMIN); chat_put_u8(&s.w, CHAT_ADMIN_ADD); chat_put_str8(&s.w, "dave");
	chat_put_verifier(&s.w, &v); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_ADMIN); chat_put_u8(&s.w, CHAT_ADMIN_PROMOTE); chat_put_str8(&s.w, "carol"); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_ADMIN); chat_put_u8(&s.w, CHAT_ADMIN_REMOVE); chat_put_str8(&s.w, "bob"); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_REGISTER); chat_put_str8(&s.w, "erin"); chat_put_verifier(&s.w, &v); op_frame(&s, 1);
	chat_put_u8(&s.w, CHAT_MSG_AUTH); chat_put_u8(&s.w, 1); chat_put_str16(&s.w, "n,,n=carol,r=abc"); op_frame(&s, 2);
	chat_put_u8(&s.w, CHAT_MSG_AUTH_FINAL); chat_put_str16(&s.w, "c=biws,r=abcdef,p=AAAA"); op_frame(&s, 2);
	chat_put_u8(&s.w, CHAT_MSG_AUTH); chat_put_u8(&s.w, 1); chat_put_str16(&s.w, "n,,n=nobody,r=abc"); op_frame(&s, 2);
	chat_put_u8(&s.w, CHAT_MSG_HELLO); chat_put_u8(&s.w, 1); chat_put_suites(&s.w, 1, one); op_frame(&s, 2);
	fb_u8(&s.f, 2 << 2 | 2); fb_blob(&s.f, 6, "\x00\x00\x10\x00\x01\x02"); /* a cut frame */
	fuzz_write_seed(dir, "admin", s.f.len, s.f.data);

	/* friends only, a slow reader */
	seed_begin(&s, 2 | 4, 3, 3, 0);
	fb_u8(&s.f, 7 << 2 | 1);
	chat_put_u8(&s.w, CHAT_MSG_TALK); chat_put_str8(&s.w, "bob"); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_FRIEND); chat_put_u8(&s.w, CHAT_FRIEND_OP_ADD); chat_put_str8(&s.w, "bob"); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_FRIEND); chat_put_u8(&s.w, CHAT_FRIEND_OP_ADD); chat_put_str8(&s.w, "alice"); op_frame(&s, 1);
	chat_put_u8(&s.w, CHAT_MSG_TALK); chat_put_str8(&s.w, "bob"); op_frame(&s, 0);
	fb_u8(&s.f, 6 << 2);
	fuzz_write_seed(dir, "friends_only", s.f.len, s.f.data);
	fb_free(&s.f);
	chat_wbuf_free(&s.w);
}
