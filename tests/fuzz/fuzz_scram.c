/* SCRAM-SHA-256 messages, both sides (core/src/scram.c): what the relay does
 * with AUTH / AUTH_FINAL text and the client with AUTH_CHALLENGE / AUTH_OK.
 *
 * Input: u8 mode (bit 0: client side, else server side; bit 1: fix up, so
 * the exchange reaches past the proof or signature check), then u16-length
 * strings.
 *   server: client-first, client-final.  Fixed up, the harness appends the
 *     correct ",p=PROOF" to client-final (it knows the password), and the
 *     relay's side must then accept it and answer the right signature.
 *   client: user, server-first, server-final.  Fixed up, server-first is
 *     "r=CLIENTNONCE<suffix>,s=<salt>,i=4096" with the suffix from the input,
 *     and the final client-final is checked by a real server side with the
 *     same verifier, which must accept it; a server-final of "!" is then
 *     replaced by the correct signature, which the client must accept.
 * PBKDF2 runs only for iteration counts up to 4096 (larger ones from the
 * input are skipped: they test nothing but patience). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/base64.h>
#include <nettle/hmac.h>
#include <nettle/pbkdf2.h>

#include "fuzz.h"
#include "scram.h"

#define PASSWORD "pencil"
#define CNONCE "fyko+d2lbbFgONRv9qkxdawL"
#define SNONCE "3rfcNHYJY1ZVvWVs7j"

static struct chat_scram_verifier ver;
static uint8_t client_key[CHAT_SCRAM_KEY];
static const uint8_t salt[16] = "chat-fuzz-salt!";

static void setup(void)
{
	static int done;
	struct hmac_sha256_ctx h;
	uint8_t salted[CHAT_SCRAM_KEY];

	if (done)
		return;
	done = 1;
	fuzz_init();
	chat_scram_make_verifier(strlen(PASSWORD), PASSWORD, sizeof(salt), salt, 4096, &ver);
	/* ClientKey = HMAC(SaltedPassword, "Client Key") */
	pbkdf2_hmac_sha256(strlen(PASSWORD), (const uint8_t *)PASSWORD, 4096, sizeof(salt), salt,
	                   sizeof(salted), salted);
	hmac_sha256_set_key(&h, sizeof(salted), salted);
	hmac_sha256_update(&h, 10, (const uint8_t *)"Client Key");
	hmac_sha256_digest(&h, sizeof(client_key), client_key);
}

static void hmac(const uint8_t *key, const char *msg, uint8_t out[CHAT_SCRAM_KEY])
{
	struct hmac_sha256_ctx h;

	hmac_sha256_set_key(&h, CHAT_SCRAM_KEY, key);
	hmac_sha256_update(&h, strlen(msg), (const uint8_t *)msg);
	hmac_sha256_digest(&h, CHAT_SCRAM_KEY, out);
}

static void b64(size_t len, const uint8_t *src, char *dst)
{
	base64_encode_raw(dst, len, src);
	dst[BASE64_ENCODE_RAW_LENGTH(len)] = '\0';
}

/* A u16-length string from the input, NUL-terminated (cut at a NUL). */
static void text(struct fuzz_in *in, size_t cap, char *dst)
{
	size_t n;
	const uint8_t *p = fin_blob(in, &n);

	if (n >= cap)
		n = cap - 1;
	memcpy(dst, p, n);
	dst[n] = '\0';
}

/* The iteration count in a server-first, if any is readable: 0 otherwise. */
static unsigned long iterations_of(const char *sf)
{
	const char *i = strstr(sf, ",i=");
	return i ? strtoul(i + 3, NULL, 10) : 0;
}

static void server_side(struct fuzz_in *in, int fixup, int tls)
{
	struct chat_scram_server s;
	char cf[1024], cfin[1024], sf[CHAT_SCRAM_MSG_MAX], out[CHAT_SCRAM_MSG_MAX];
	char auth[4096];
	uint8_t sig[CHAT_SCRAM_KEY], proof[CHAT_SCRAM_KEY];
	char proof_b64[64];

	/* The link the message came over: plain, or TLS with a binding. */
	static const uint8_t link[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
	size_t link_len = tls ? sizeof(link) : 0;
	text(in, sizeof(cf), cf);
	text(in, sizeof(cfin) - 64, cfin);
	int first = chat_scram_server_first_in(&s, cf, link_len, link);
	if (first == CHAT_ERR_AUTH)
		FUZZ_CHECK(s.why && (cf[0] == 'p' || (cf[0] == 'y' && link_len))); /* only binding rules */
	if (first != CHAT_OK)
		return;
	FUZZ_CHECK(s.cb.flag == cf[0]);
	FUZZ_CHECK(s.cb.flag != 'y' || !link_len);
	FUZZ_CHECK(s.cb.flag != 'p' || link_len);
	FUZZ_CHECK(s.user[0] && strlen(s.user) < sizeof(s.user));
	if (chat_scram_server_first(&s, &ver, SNONCE, sizeof(sf), sf) != CHAT_OK)
		return;
	FUZZ_CHECK(strncmp(sf, "r=", 2) == 0 && iterations_of(sf) == 4096);
	if (fixup) {
		/* the proof a client knowing the password sends for this exchange */
		snprintf(auth, sizeof(auth), "%s,%s,%s", s.client_first_bare, sf, cfin);
		hmac(ver.stored_key, auth, sig);
		for (size_t i = 0; i < CHAT_SCRAM_KEY; i++)
			proof[i] = client_key[i] ^ sig[i];
		b64(sizeof(proof), proof, proof_b64);
		strcat(cfin, ",p=");
		strcat(cfin, proof_b64);
	}
	int rc = chat_scram_server_final(&s, cfin, sizeof(out), out);
	char want_p[80] = "";
	if (fixup)
		snprintf(want_p, sizeof(want_p), ",p=%s", proof_b64);
	if (fixup && s.cb.flag == 'n' && strlen(cfin) < CHAT_SCRAM_MSG_MAX && !strncmp(cfin, "c=biws,r=", 9) &&
	    !strncmp(cfin + 9, s.nonce, strlen(s.nonce)) && !strcmp(cfin + 9 + strlen(s.nonce), want_p)) {
		/* exactly "c=biws,r=NONCE,p=PROOF" (not a p= of the input's before
		 * the proof appended: that is two proofs, refused): must be accepted */
		FUZZ_CHECK(rc == CHAT_OK);
		hmac(ver.server_key, auth, sig);
		b64(sizeof(sig), sig, proof_b64);
		FUZZ_CHECK(!strncmp(out, "v=", 2) && !strcmp(out + 2, proof_b64));
	}
	if (rc == CHAT_OK)
		FUZZ_CHECK(fixup); /* no proof without the password */
	/* a finished exchange takes nothing more */
	FUZZ_CHECK(chat_scram_server_final(&s, cfin, sizeof(out), out) == CHAT_ERR_STATE);
	chat_scram_server_wipe(&s);
}

static void client_side(struct fuzz_in *in, int fixup)
{
	struct chat_scram_client c;
	struct chat_scram_server s;
	char user[300], sf[1024], sfin[1024], first[CHAT_SCRAM_MSG_MAX], fin[CHAT_SCRAM_MSG_MAX];
	char out[CHAT_SCRAM_MSG_MAX], salt_b64[64];

	text(in, sizeof(user), user);
	if (chat_scram_client_first(&c, user[0] ? user : "alice", CNONCE, NULL, sizeof(first), first) != CHAT_OK)
		return;
	if (fixup) {
		char suffix[200];
		text(in, sizeof(suffix), suffix);
		b64(sizeof(salt), salt, salt_b64);
		snprintf(sf, sizeof(sf), "r=%s%s,s=%s,i=4096", CNONCE, suffix, salt_b64);
	} else {
		text(in, sizeof(sf), sf);
	}
	text(in, sizeof(sfin), sfin);
	unsigned long it = iterations_of(sf);
	if (it > 4096)
		return;
	int rc = chat_scram_client_final(&c, sf, strlen(PASSWORD), PASSWORD, sizeof(fin), fin);
	if (rc != CHAT_OK)
		return;
	FUZZ_CHECK(!strncmp(fin, "c=biws,r=", 9));
	if (fixup) {
		/* the relay's side, with the verifier of the same password, accepts it */
		FUZZ_CHECK(chat_scram_server_first_in(&s, first, 0, NULL) == CHAT_OK);
		const char *suffix = sf + 2 + strlen(CNONCE);
		size_t slen = strcspn(suffix, ",");
		char sn[200];
		snprintf(sn, sizeof(sn), "%.*s", (int)slen, suffix);
		if (chat_scram_server_first(&s, &ver, sn, sizeof(out), out) == CHAT_OK &&
		    !strcmp(out, sf)) {
			FUZZ_CHECK(chat_scram_server_final(&s, fin, sizeof(out), out) == CHAT_OK);
			if (!strcmp(sfin, "!"))
				snprintf(sfin, sizeof(sfin), "%s", out);
			if (!strcmp(sfin, out)) {
				FUZZ_CHECK(chat_scram_client_verify(&c, sfin) == CHAT_OK);
				return;
			}
		}
	}
	rc = chat_scram_client_verify(&c, sfin);
	FUZZ_CHECK(rc != CHAT_OK || fixup);
	FUZZ_CHECK(chat_scram_client_verify(&c, sfin) == CHAT_ERR_STATE);
	chat_scram_client_wipe(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	unsigned mode;

	setup();
	mode = fin_u8(&in);
	if (mode & 1)
		client_side(&in, (mode & 2) != 0);
	else
		server_side(&in, (mode & 2) != 0, (mode & 4) != 0); /* bit 2: a TLS link with a binding */
	return 0;
}

static void seed(const char *dir, const char *name, unsigned mode, const char *a, const char *b,
                 const char *c)
{
	struct fuzz_buf f = { 0 };

	fb_u8(&f, mode);
	fb_blob(&f, strlen(a), a);
	fb_blob(&f, strlen(b), b);
	if (c)
		fb_blob(&f, strlen(c), c);
	fuzz_write_seed(dir, name, f.len, f.data);
	fb_free(&f);
}

void fuzz_seeds(const char *dir)
{
	char sf[256], salt_b64[64];

	b64(sizeof(salt), salt, salt_b64);
	snprintf(sf, sizeof(sf), "r=%s%s,s=%s,i=4096", CNONCE, SNONCE, salt_b64);
	seed(dir, "server_plain", 0, "n,,n=alice,r=" CNONCE,
	     "c=biws,r=" CNONCE SNONCE ",p=dGhpcyBpcyBub3QgYSB2YWxpZCBwcm9vZiBhdCBhbGwhISE=", NULL);
	seed(dir, "server_fixup", 2, "n,,n=al=2Cice,r=" CNONCE, "c=biws,r=" CNONCE SNONCE, NULL);
	seed(dir, "server_plus", 6, "p=tls-exporter,,n=alice,r=" CNONCE,
	     "c=cD10bHMtZXhwb3J0ZXIsLAECAwQFBgcICQoLDA0ODxAAAAAAAAAAAAAAAAAAAAAA,r=" CNONCE SNONCE, NULL);
	seed(dir, "server_y_downgrade", 4, "y,,n=alice,r=" CNONCE, "c=eSws,r=" CNONCE SNONCE, NULL);
	seed(dir, "client_plain", 1, "alice", sf, "v=dGhpcyBpcyBub3QgYSB2YWxpZCBwcm9vZiBhdCBhbGwhISE=");
	seed(dir, "client_fixup", 3, "bob=,x", SNONCE, "!");
	seed(dir, "client_error", 3, "bob", SNONCE, "e=invalid-proof");
}
