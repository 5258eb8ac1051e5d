/* The client's keystore (core/src/keystore.c) and what it holds
 * (frontends/client/client_store.c: conversations, saved cipher sessions,
 * held text, the outbox).  Both come from the disk.
 *
 * Input: u8 mode, then
 *   mode bit 0 clear: the keystore file itself (its iteration count is
 *     forced to 1..3: PBKDF2 at the file's count tests nothing but patience);
 *   mode bit 0 set (fixed up): the blob; the harness writes a keystore file
 *     around it with the right key and MAC (mode bit 1: with a bad padding),
 *     so the fuzzer reaches the blob parser.
 * An opened keystore's blob is restored into a client engine (user "bob",
 * the three suites, alice in its directory).  Invariant: what restore
 * accepted, the client saves again (CHAT_OK), and that file opens and
 * restores again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/aes.h>
#include <nettle/cbc.h>
#include <nettle/hmac.h>
#include <nettle/pbkdf2.h>

#include "be.h"
#include "client_int.h"
#include "fuzz.h"

#define PW "correct horse"
#define HDR 48 /* magic 8, version 4, iterations 4, salt 16, iv 16 ... clen 4 */

static struct chat_loop *loop;
static struct chat_directory directory;
static struct chat_contact contact;

static void on_event(void *ui, const struct chat_event *ev)
{
	(void)ui;
	(void)ev;
}

static void setup(void)
{
	if (loop)
		return;
	fuzz_init();
	if (chat_loop_new(&loop) != CHAT_OK)
		abort();
	snprintf(contact.username, sizeof(contact.username), "alice");
	contact.password = (char *)"s3cret";
	directory.contacts = &contact;
	directory.count = 1;
	directory.path = (char *)"peers.json";
}

static struct chat_client *new_client(void)
{
	static const char suites[3][33] = { "aescbc-hmac", "rc4dh", "xor-demo" };
	struct chat_client_config cfg = {
		.relay = "relay:7400", .user = "bob", .reg = fuzz_registry(),
		.plugin_dir = "/nonexistent", .nsuites = 3, .suites = suites,
		.directory = &directory, .max_frame = 65536, .max_message = 61440,
		.kdf_iterations = 1, .scram_iterations = 4096,
	};
	struct chat_client *c;
	char err[256];

	if (chat_client_new(loop, &cfg, on_event, NULL, &c, sizeof(err), err) != CHAT_OK) {
		fprintf(stderr, "fuzz_keystore: %s\n", err);
		abort();
	}
	return c;
}

/* A keystore file around blob, as chat_keystore_save writes it (iterations 1). */
static void build_file(size_t len, const uint8_t *blob, int bad_pad, struct fuzz_buf *out)
{
	uint8_t k[64], salt[16], iv[16], mac[32];
	size_t pad = 16 - len % 16, clen = len + pad;
	uint8_t *pt = malloc(clen), *ct = malloc(clen);
	struct aes256_ctx aes;
	struct hmac_sha256_ctx h;

	if (!pt || !ct)
		abort();
	memset(salt, 0x11, sizeof(salt));
	memset(iv, 0x22, sizeof(iv));
	pbkdf2_hmac_sha256(strlen(PW), (const uint8_t *)PW, 1, sizeof(salt), salt, sizeof(k), k);
	memcpy(pt, blob, len);
	memset(pt + len, (int)pad, pad);
	if (bad_pad)
		pt[clen - 1] ^= 0x40;
	aes256_set_encrypt_key(&aes, k);
	cbc_encrypt(&aes, (nettle_cipher_func *)aes256_encrypt, 16, iv, clen, ct, pt);
	memset(iv, 0x22, sizeof(iv));
	fb_put(out, 8, "CHATKEYS");
	fb_u32(out, 1);
	fb_u32(out, 1);
	fb_put(out, sizeof(salt), salt);
	fb_put(out, sizeof(iv), iv);
	fb_u32(out, (uint32_t)clen);
	fb_put(out, clen, ct);
	hmac_sha256_set_key(&h, 32, k + 32);
	hmac_sha256_update(&h, out->len, out->data);
	hmac_sha256_digest(&h, sizeof(mac), mac);
	fb_put(out, sizeof(mac), mac);
	free(pt);
	free(ct);
}

/* Open path and restore it into a new client; the client (with the keystore
 * open) on success, else NULL.  *opened says whether the file opened. */
static struct chat_client *open_restore(const char *path, int *opened)
{
	struct chat_keystore *ks = NULL;
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	int created = 0;
	char err[512];

	*opened = 0;
	if (chat_keystore_open(path, strlen(PW), PW, 1, &ks, &blob, &blob_len, &created, sizeof(err),
	                       err) != CHAT_OK) {
		FUZZ_CHECK(!ks && err[0]);
		return NULL;
	}
	*opened = 1;
	FUZZ_CHECK(!created && blob);
	struct chat_client *c = new_client();
	c->ks = ks;
	c->ks_path = strdup(path);
	c->ks_blob = blob;
	c->ks_blob_len = blob_len;
	c->ks_trusted = 1;
	if (client_store_restore(c, sizeof(err), err) != CHAT_OK) {
		chat_client_free(c);
		return NULL;
	}
	return c;
}

/* A count of 1..3 stays; any other becomes one of them. */
static void clamp_iterations(uint8_t *p)
{
	uint32_t n = chat_be32_get(p);

	if (n < 1 || n > 3)
		chat_be32_put(p, 1 + n % 3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct fuzz_buf file = { 0 };
	unsigned mode;
	const char *path;
	int opened;

	setup();
	mode = fin_u8(&in);
	if (mode & 1) {
		build_file(in.left, in.p, (mode & 2) != 0, &file);
	} else {
		fb_put(&file, in.left, in.p);
		if (file.len >= 16)
			clamp_iterations(file.data + 12);
	}
	path = fuzz_file("bob.keys", file.len, file.data);
	fb_free(&file);
	struct chat_client *c = open_restore(path, &opened);
	if ((mode & 3) == 1)
		FUZZ_CHECK(opened); /* a well-made file always opens */
	if (!c)
		return 0;
	/* what was restored is saved again, and that reads back */
	c->ks_dirty = 1;
	FUZZ_CHECK(client_store_save(c) == CHAT_OK);
	chat_client_free(c);
	c = open_restore(path, &opened);
	FUZZ_CHECK(c != NULL);
	chat_client_free(c);
	return 0;
}

/* ---- seeds: keystore blobs as chat-client writes them, with real sessions */

static void put_str8(struct fuzz_buf *b, const char *s)
{
	fb_str(b, s);
}

static void put_blob32(struct fuzz_buf *b, size_t len, const void *p)
{
	fb_u32(b, (uint32_t)len);
	fb_put(b, len, p);
}

static void conv(struct fuzz_buf *b, const char *suite, int kind)
{
	char bind[256];
	struct fuzz_host hi, hr;
	void *si = NULL, *sr = NULL;
	uint8_t saved[4096];
	struct chat_buf dst = { .data = saved, .cap = sizeof(saved) };
	const struct chat_plugin *p = fuzz_suite(suite);

	snprintf(bind, sizeof(bind), "chat-binding-v1\ninitiator alice suites %s\nresponder bob suites "
	         "aescbc-hmac,rc4dh,xor-demo\nsuite %s\n", suite, suite);
	fuzz_host_init(&hi, p, 1);
	fuzz_host_init(&hr, p, 2);
	if (kind == 5) {
		if (fuzz_pair(p, &hi.host, &hr.host, "alice", "bob", "s3cret", strlen(bind), bind, &si, &sr,
		              NULL) != CHAT_OK ||
		    p->ops.cipher->session_save(sr, &dst) != CHAT_OK)
			abort();
	}
	put_str8(b, "alice");
	fb_u8(b, (unsigned)kind);
	fb_u8(b, 0); /* bob is the responder */
	put_str8(b, suite);
	put_str8(b, suite);
	fb_u8(b, 1);
	put_str8(b, suite);
	put_blob32(b, strlen(bind), bind);
	put_blob32(b, dst.len, saved);
	fb_u32(b, 1);                 /* held text, typed before the session was up */
	put_blob32(b, 5, "hello");
	fb_u64(b, 2);                 /* last number sent */
	fb_u64(b, 3);                 /* next number expected */
	fb_u32(b, 1);                 /* arrived early */
	fb_u64(b, 5);
	put_blob32(b, 11, "early bird!");
	fb_u8(b, 1);                  /* given up on */
	fb_u64(b, 4);
	if (si)
		p->ops.cipher->session_free(si);
	if (sr)
		p->ops.cipher->session_free(sr);
}

void fuzz_seeds(const char *dir)
{
	static const char *const suites[] = { "xor-demo", "aescbc-hmac", "rc4dh" };
	struct fuzz_buf b = { 0 }, f = { 0 };

	for (size_t s = 0; s < 3; s++) {
		fb_u8(&b, 1);                 /* mode: fixed up */
		fb_put(&b, 4, "CCS2");
		put_str8(&b, "bob");
		fb_u64(&b, 17);               /* next client id */
		fb_u32(&b, 2);                /* mail ids processed */
		fb_u64(&b, 40);
		fb_u64(&b, 41);
		fb_u32(&b, s == 0 ? 2 : 1);   /* conversations */
		conv(&b, suites[s], 5);
		if (s == 0) {
			/* an offer of carol's waiting for /accept */
			put_str8(&b, "carol"); fb_u8(&b, 2); fb_u8(&b, 0); put_str8(&b, ""); put_str8(&b, "xor-demo");
			fb_u8(&b, 1); put_str8(&b, "xor-demo"); put_blob32(&b, 0, ""); put_blob32(&b, 0, "");
			fb_u32(&b, 0); fb_u64(&b, 0); fb_u64(&b, 1); fb_u32(&b, 0); fb_u8(&b, 0);
		}
		fb_u32(&b, 1);                /* outbox: one text, stored, waiting for its receipt */
		put_str8(&b, "alice");
		fb_u8(&b, E_TEXT);
		fb_u8(&b, OM_STORED);
		fb_u64(&b, 2);
		fb_u32(&b, 0);
		put_blob32(&b, 7, "see you");
		fb_u32(&b, 1);
		fb_u64(&b, 16);
		fb_u8(&b, 1);
		put_blob32(&b, 4, "\x03\x00\xaa\xbb");
		char name[32];
		snprintf(name, sizeof(name), "blob_%s", suites[s]);
		fuzz_write_seed(dir, name, b.len, b.data);
		if (s == 1) {
			/* the same, as a file: mode 0 */
			build_file(b.len - 1, b.data + 1, 0, &f);
			uint8_t m = 0;
			struct fuzz_buf g = { 0 };
			fb_put(&g, 1, &m);
			fb_put(&g, f.len, f.data);
			fuzz_write_seed(dir, "file_aescbc", g.len, g.data);
			fb_free(&g);
			fb_free(&f);
		}
		b.len = 0;
	}
	fb_u8(&b, 1);
	fb_put(&b, 4, "CCS1");
	put_str8(&b, "bob");
	fb_u64(&b, 3);
	fb_u64(&b, 9);
	fb_u32(&b, 0);
	fb_u32(&b, 1);
	fb_u64(&b, 2);
	put_str8(&b, "alice");
	put_blob32(&b, 3, "old");
	fuzz_write_seed(dir, "blob_v1", b.len, b.data);
	fb_free(&b);
}
