/* relay.cluster's bus (frontends/relay/relay_cluster.c): a real relay engine
 * on its real event loop, three guests on the in-memory transport
 * (fakenet.h), and its cluster link replaced by a table of this harness, so
 * the input plays the other relays: presence (UP, DOWN, JOIN, LEAVE,
 * heartbeats, SYNC), frames forwarded to local users (with the link changes
 * they imply), mail wake-ups, the link going down and up — mixed with the
 * local users' own requests, which reach the ghosts.
 *   Input: 3 x u8 prelude, one per connection: odd: HELLO and a guest
 *   LOGIN as gN; then operations until the input ends, u8 op: bits 0-1 the
 *   connection (3: a new one is opened for it), bits 2-4 what:
 *     0, 1  a frame from the connection: u16 length + bytes
 *     2, 3  a bus message from relay nK: u8 kind, u8 K (0..3), u16 length +
 *           bytes (the rest after kind and node)
 *     4     a bus message as raw bytes: u16 length + bytes
 *     5     the link goes down      6  the link comes up
 *     7     the loop runs a few rounds
 * Invariants: every frame the relay writes to a client parses; every
 * message it publishes starts with a kind and its node id; ASan/UBSan. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_link.h"
#include "fakenet.h"
#include "fuzz.h"
#include "proto.h"
#include "relay.h"
#include "relay_int.h"

#define NCONN 4

static struct fake_conn *conns[NCONN];
static struct chat_cluster_cbs bus_cbs;
static void *bus_arg;
static int bus_up;
static size_t published;

static int fake_open(const struct chat_cluster_host *host, const char *addr, int port,
                     const char *name, size_t nchannels, const char *const *channels,
                     size_t out_max, const struct chat_cluster_cbs *cbs, void *arg,
                     struct chat_cluster_link **out, size_t errlen, char *err)
{
	(void)host, (void)addr, (void)port, (void)name, (void)nchannels, (void)channels;
	(void)out_max, (void)errlen, (void)err;
	bus_cbs = *cbs;
	bus_arg = arg;
	*out = (struct chat_cluster_link *)&bus_cbs; /* any non-NULL handle */
	return 0;
}

static int fake_publish(struct chat_cluster_link *l, const char *channel, size_t len,
                        const uint8_t *data)
{
	(void)l;
	FUZZ_CHECK(!strncmp(channel, "chat:", 5));
	FUZZ_CHECK(len >= 2 + 4 && data[1] == 4 && !memcmp(data + 2, "self", 4));
	if (!bus_up)
		return -1;
	published++;
	return 0;
}

static void fake_close(struct chat_cluster_link *l)
{
	(void)l;
}

static const struct chat_cluster_module fake_module = {
	.version = CHAT_CLUSTER_LINK_VERSION,
	.open = fake_open,
	.publish = fake_publish,
	.close = fake_close,
};

static void drain(struct fake_conn *c)
{
	const uint8_t *f;
	size_t len;
	struct chat_msg m;
	char err[CHAT_TEXT_MAX];

	while (c && fake_next_frame(c, &f, &len)) {
		if (chat_msg_parse(len, f, &m, sizeof(err), err) != CHAT_OK) {
			fprintf(stderr, "relay wrote a malformed frame: %s\n", err);
			FUZZ_CHECK(!"relay frames parse");
		}
	}
}

static void run(struct chat_loop *loop, int rounds)
{
	fake_run(loop, rounds);
	for (int i = 0; i < NCONN; i++)
		drain(conns[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct chat_loop *loop;
	struct chat_relay *r;
	struct chat_wbuf b;
	static const char *const carried[] = { "xor-demo", "aescbc-hmac" };
	const char suites[2][CHAT_NAME_MAX + 1] = { "xor-demo", "aescbc-hmac" };

	fuzz_init();
	FUZZ_CHECK(chat_loop_new(&loop) == CHAT_OK);
	struct chat_relay_config cfg = {
		.limits = { .max_frame = 65536, .out_limit = 1 << 20 },
		.max_clients = 16,
		.nsuites = 2,
		.suites = carried,
		.max_rooms_per_client = 4,
		.max_room_members = 8,
		.max_pending_offers = 4,
		.max_bad_requests = 8,
		.guests = 1,
		.node_id = "self",
		.cluster_ttl_s = 9,
	};
	FUZZ_CHECK(chat_relay_new(loop, &cfg, &r) == CHAT_OK);
	FUZZ_CHECK(relay_cluster_start(r, &fake_module, "redis://fake:1", "fake", 1, 0) == CHAT_OK);
	bus_up = 1;
	bus_cbs.on_up(bus_arg);
	chat_wbuf_init(&b, 65536);
	memset(conns, 0, sizeof(conns));
	for (int i = 0; i < 3; i++) {
		unsigned pre = fin_u8(&in);
		conns[i] = fake_conn_new(NULL);
		FUZZ_CHECK(chat_relay_accept(r, &fake_ops, conns[i]) == CHAT_OK);
		if (pre & 1) {
			char name[8];
			chat_put_u8(&b, CHAT_MSG_HELLO);
			chat_put_u8(&b, CHAT_PROTO_VERSION);
			chat_put_suites(&b, 2, suites);
			fake_push_frame(conns[i], b.len, b.data);
			chat_wbuf_reset(&b);
			snprintf(name, sizeof(name), "g%d", i);
			chat_put_u8(&b, CHAT_MSG_LOGIN);
			chat_put_str8(&b, name);
			fake_push_frame(conns[i], b.len, b.data);
			chat_wbuf_reset(&b);
		}
		run(loop, 3);
	}
	for (int steps = 0; in.left && steps < 256; steps++) {
		unsigned op = fin_u8(&in), what = (op >> 2) & 7;
		struct fake_conn **c = &conns[op & 3];
		size_t len;
		const uint8_t *p;

		if (!*c) {
			*c = fake_conn_new(NULL);
			if (chat_relay_accept(r, &fake_ops, *c) != CHAT_OK)
				*c = NULL;
		}
		switch (what) {
		case 0:
		case 1:
			p = fin_blob(&in, &len);
			if (*c)
				fake_push_frame(*c, len, p);
			break;
		case 2:
		case 3: {
			unsigned kind = fin_u8(&in), node = fin_u8(&in) & 3;
			p = fin_blob(&in, &len);
			chat_put_u8(&b, kind);
			chat_put_u8(&b, 2);
			chat_put_u8(&b, 'n');
			chat_put_u8(&b, '0' + node);
			chat_put_bytes(&b, len, p);
			if (bus_up)
				bus_cbs.on_message(bus_arg, "chat:presence", b.len, b.data);
			chat_wbuf_reset(&b);
			break;
		}
		case 4:
			p = fin_blob(&in, &len);
			if (bus_up)
				bus_cbs.on_message(bus_arg, "chat:presence", len, p);
			break;
		case 5:
			if (bus_up) {
				bus_up = 0;
				bus_cbs.on_down(bus_arg, "redis://fake:1: connection lost: fuzzed");
			}
			break;
		case 6:
			if (!bus_up) {
				bus_up = 1;
				bus_cbs.on_up(bus_arg);
			}
			break;
		case 7:
			run(loop, 8);
			break;
		}
		run(loop, 4);
		if (*c && (*c)->closed && (op & 3) == 3)
			*c = NULL;
	}
	run(loop, 4);
	chat_wbuf_free(&b);
	chat_relay_free(r);
	chat_loop_free(loop);
	fakenet_reset();
	return 0;
}

/* ---- seeds: what two other relays say about their users */

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

/* A bus message from relay nK: kind, K, then the body built in s->w. */
static void op_bus(struct seed *s, unsigned kind, unsigned node)
{
	fb_u8(&s->f, 2u << 2);
	fb_u8(&s->f, kind);
	fb_u8(&s->f, node);
	fb_blob(&s->f, s->w.len, s->w.data);
	chat_wbuf_reset(&s->w);
}

/* The record of a remote user: name, flags, login ms, suites, rooms. */
static void record(struct chat_wbuf *w, const char *name, int registered, const char *room)
{
	chat_put_str8(w, name);
	chat_put_u8(w, registered ? 1 : 0);
	chat_put_u64(w, 1700000000000ull);
	chat_put_u8(w, 2);
	chat_put_str8(w, "xor-demo");
	chat_put_str8(w, "noise-xx");
	chat_put_u8(w, room ? 1 : 0);
	if (room)
		chat_put_str8(w, room);
}

void fuzz_seeds(const char *dir)
{
	struct seed s;
	static const uint8_t payload[] = { 0x03, 0x00, 0x11, 0x22, 0x33 };

	memset(&s, 0, sizeof(s));
	chat_wbuf_init(&s.w, 65536);

	/* A remote user offers g0 a conversation, g0 accepts and they talk;
	 * a room with a ghost member; the remote relay goes down. */
	fb_u8(&s.f, 1); fb_u8(&s.f, 1); fb_u8(&s.f, 0);
	record(&s.w, "rem", 0, "lobby"); op_bus(&s, 'U', 1);
	chat_put_u8(&s.w, CHAT_MSG_WHO); op_frame(&s, 0);
	chat_put_str8(&s.w, "g0");
	chat_put_u8(&s.w, CHAT_MSG_OFFERED); chat_put_str8(&s.w, "rem");
	chat_put_u8(&s.w, 2); chat_put_str8(&s.w, "xor-demo"); chat_put_str8(&s.w, "noise-xx");
	op_bus(&s, 'F', 1);
	chat_put_u8(&s.w, CHAT_MSG_ANSWER); chat_put_str8(&s.w, "rem"); chat_put_u8(&s.w, 1);
	chat_put_str8(&s.w, "xor-demo"); chat_put_str16(&s.w, ""); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_ROUTE); chat_put_str8(&s.w, "rem");
	chat_put_bytes(&s.w, sizeof(payload), payload); op_frame(&s, 0);
	chat_put_str8(&s.w, "g0");
	chat_put_u8(&s.w, CHAT_MSG_DELIVER); chat_put_str8(&s.w, "rem");
	chat_put_bytes(&s.w, sizeof(payload), payload); op_bus(&s, 'F', 1);
	chat_put_u8(&s.w, CHAT_MSG_JOIN); chat_put_str8(&s.w, "lobby"); op_frame(&s, 1);
	chat_put_u8(&s.w, CHAT_MSG_ROOM_SEND); chat_put_str8(&s.w, "lobby"); chat_put_u16(&s.w, 1);
	chat_put_str8(&s.w, "rem"); chat_put_u32(&s.w, sizeof(payload));
	chat_put_bytes(&s.w, sizeof(payload), payload); op_frame(&s, 1);
	chat_put_str8(&s.w, "rem"); chat_put_str8(&s.w, "lobby"); op_bus(&s, 'L', 1);
	chat_put_str8(&s.w, "g0");
	chat_put_u8(&s.w, CHAT_MSG_CLOSED); chat_put_str8(&s.w, "rem"); op_bus(&s, 'F', 1);
	chat_put_str8(&s.w, "rem"); op_bus(&s, 'D', 1);
	fuzz_write_seed(dir, "talk", s.f.len, s.f.data);

	/* Heartbeats in two parts from two relays, one name on both (the
	 * older guest keeps it), a local name claimed remotely, SYNC, the link
	 * going down and up, a mail wake-up. */
	s.f.len = 0;
	fb_u8(&s.f, 1); fb_u8(&s.f, 1); fb_u8(&s.f, 1);
	chat_put_u32(&s.w, 7); chat_put_u8(&s.w, 1); chat_put_u16(&s.w, 2);
	record(&s.w, "ann", 0, "lobby"); record(&s.w, "dup", 0, NULL); op_bus(&s, 'H', 2);
	chat_put_u32(&s.w, 7); chat_put_u8(&s.w, 2); chat_put_u16(&s.w, 1);
	record(&s.w, "reg", 1, NULL); op_bus(&s, 'H', 2);
	record(&s.w, "dup", 0, "lobby"); op_bus(&s, 'U', 3);
	record(&s.w, "g2", 0, NULL); op_bus(&s, 'U', 3);
	chat_put_u8(&s.w, CHAT_MSG_TALK); chat_put_str8(&s.w, "ann"); op_frame(&s, 0);
	chat_put_u8(&s.w, CHAT_MSG_JOIN); chat_put_str8(&s.w, "lobby"); op_frame(&s, 1);
	chat_put_str8(&s.w, "ann"); chat_put_str8(&s.w, "other"); op_bus(&s, 'J', 2);
	chat_put_u8(&s.w, CHAT_MSG_ROOMS); op_frame(&s, 1);
	op_bus(&s, 'S', 2);
	chat_put_str8(&s.w, "g1"); op_bus(&s, 'M', 3);
	fb_u8(&s.f, 5u << 2);
	chat_put_u8(&s.w, CHAT_MSG_TALK); chat_put_str8(&s.w, "ann"); op_frame(&s, 0);
	fb_u8(&s.f, 6u << 2);
	fb_u8(&s.f, 7u << 2);
	chat_put_u8(&s.w, CHAT_MSG_WHO); op_frame(&s, 2);
	fuzz_write_seed(dir, "presence", s.f.len, s.f.data);

	fb_free(&s.f);
	chat_wbuf_free(&s.w);
}
