#include "scram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/base64.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <nettle/pbkdf2.h>
#include <nettle/sha2.h>

#include <chat/error.h>

#include "host.h"

enum { ST_NONE, ST_FIRST, ST_FINAL, ST_DONE };

static void hmac(const uint8_t key[CHAT_SCRAM_KEY], size_t len, const void *msg,
                 uint8_t out[CHAT_SCRAM_KEY])
{
	struct hmac_sha256_ctx ctx;

	hmac_sha256_set_key(&ctx, CHAT_SCRAM_KEY, key);
	hmac_sha256_update(&ctx, len, msg);
	hmac_sha256_digest(&ctx, CHAT_SCRAM_KEY, out);
	chat_wipe(&ctx, sizeof(ctx));
}

static void sha256(size_t len, const uint8_t *msg, uint8_t out[CHAT_SCRAM_KEY])
{
	struct sha256_ctx ctx;

	sha256_init(&ctx);
	sha256_update(&ctx, len, msg);
	sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
}

static size_t b64_encode(size_t len, const uint8_t *src, size_t cap, char *dst)
{
	size_t n = BASE64_ENCODE_RAW_LENGTH(len);

	if (n + 1 > cap)
		return 0;
	base64_encode_raw(dst, len, src);
	dst[n] = '\0';
	return n;
}

/* Decode strictly; returns the length or -1. */
static long b64_decode(const char *src, size_t cap, uint8_t *dst)
{
	struct base64_decode_ctx ctx;
	size_t len = strlen(src), out = cap;

	if (len == 0 || len % 4 || BASE64_DECODE_LENGTH(len) > cap)
		return -1;
	base64_decode_init(&ctx);
	if (!base64_decode_update(&ctx, &out, dst, len, src) || !base64_decode_final(&ctx))
		return -1;
	return (long)out;
}

/* Keys from a salted password: ClientKey, StoredKey, ServerKey. */
static void keys_from_salted(const uint8_t salted[CHAT_SCRAM_KEY], uint8_t client_key[CHAT_SCRAM_KEY],
                             uint8_t stored_key[CHAT_SCRAM_KEY], uint8_t server_key[CHAT_SCRAM_KEY])
{
	hmac(salted, 10, "Client Key", client_key);
	sha256(CHAT_SCRAM_KEY, client_key, stored_key);
	hmac(salted, 10, "Server Key", server_key);
}

static void salted_password(size_t pw_len, const char *pw, size_t salt_len, const uint8_t *salt,
                            unsigned iterations, uint8_t out[CHAT_SCRAM_KEY])
{
	pbkdf2_hmac_sha256(pw_len, (const uint8_t *)pw, iterations, salt_len, salt, CHAT_SCRAM_KEY, out);
}

void chat_scram_make_verifier(size_t pw_len, const char *password, size_t salt_len,
                              const uint8_t *salt, unsigned iterations,
                              struct chat_scram_verifier *v)
{
	uint8_t salted[CHAT_SCRAM_KEY], client_key[CHAT_SCRAM_KEY];

	memset(v, 0, sizeof(*v));
	if (salt_len > sizeof(v->salt))
		salt_len = sizeof(v->salt);
	memcpy(v->salt, salt, salt_len);
	v->salt_len = salt_len;
	v->iterations = iterations;
	salted_password(pw_len, password, salt_len, salt, iterations, salted);
	keys_from_salted(salted, client_key, v->stored_key, v->server_key);
	chat_wipe(salted, sizeof(salted));
	chat_wipe(client_key, sizeof(client_key));
}

/* The value of attribute "x=" at the start of *p, up to the next ','; moves *p. */
static int attr(const char **p, char name, size_t cap, char *dst)
{
	const char *s = *p, *end;

	if (s[0] != name || s[1] != '=')
		return -1;
	s += 2;
	end = strchr(s, ',');
	if (!end)
		end = s + strlen(s);
	if ((size_t)(end - s) >= cap)
		return -1;
	memcpy(dst, s, (size_t)(end - s));
	dst[end - s] = '\0';
	*p = *end ? end + 1 : end;
	return 0;
}

static int printable_nonce(const char *n)
{
	if (!*n)
		return 0;
	for (; *n; n++)
		if (*n < 0x21 || *n > 0x7e || *n == ',')
			return 0;
	return 1;
}

/* RFC 5802 saslname: ',' and '=' escaped as =2C and =3D. */
static int escape_user(const char *user, size_t cap, char *dst)
{
	size_t o = 0;

	for (; *user; user++) {
		const char *rep = *user == ',' ? "=2C" : *user == '=' ? "=3D" : NULL;
		size_t n = rep ? 3 : 1;
		if (o + n + 1 > cap)
			return -1;
		if (rep)
			memcpy(dst + o, rep, 3);
		else
			dst[o] = *user;
		o += n;
	}
	dst[o] = '\0';
	return 0;
}

static int unescape_user(const char *src, size_t cap, char *dst)
{
	size_t o = 0;

	for (; *src; src++) {
		char c = *src;
		if (c == '=') {
			if (!strncmp(src, "=2C", 3))
				c = ',';
			else if (!strncmp(src, "=3D", 3))
				c = '=';
			else
				return -1;
			src += 2;
		}
		if (o + 2 > cap)
			return -1;
		dst[o++] = c;
	}
	dst[o] = '\0';
	return o ? 0 : -1;
}

/* The GS2 header for a binding choice: "n,,", "y,,", "p=tls-exporter,,". */
static const char *gs2_header(const struct chat_scram_cb *cb)
{
	return cb->flag == 'p' ? "p=" CHAT_SCRAM_CB_TYPE ",," : cb->flag == 'y' ? "y,," : "n,,";
}

/* c= of client-final: base64(GS2 header [+ binding data]). */
static int cbind_b64(const struct chat_scram_cb *cb, size_t cap, char *dst)
{
	uint8_t raw[32 + CHAT_SCRAM_CB_MAX];
	const char *h = gs2_header(cb);
	size_t n = strlen(h);

	memcpy(raw, h, n);
	if (cb->flag == 'p') {
		memcpy(raw + n, cb->data, cb->len);
		n += cb->len;
	}
	return b64_encode(n, raw, cap, dst) ? 0 : -1;
}

int chat_scram_client_first(struct chat_scram_client *c, const char *user, const char *nonce,
                            const struct chat_scram_cb *cb, size_t cap, char *out)
{
	char esc[256];

	memset(c, 0, sizeof(*c));
	if (!printable_nonce(nonce) || strlen(nonce) >= sizeof(c->nonce) ||
	    strlen(user) >= sizeof(c->user) || escape_user(user, sizeof(esc), esc))
		return CHAT_ERR_INVALID;
	if (cb && (cb->flag != 'n' && cb->flag != 'y' && cb->flag != 'p'))
		return CHAT_ERR_INVALID;
	if (cb && cb->flag == 'p' && (cb->len == 0 || cb->len > CHAT_SCRAM_CB_MAX))
		return CHAT_ERR_INVALID;
	if (cb)
		c->cb = *cb;
	else
		c->cb.flag = 'n';
	snprintf(c->user, sizeof(c->user), "%s", user);
	snprintf(c->nonce, sizeof(c->nonce), "%s", nonce);
	int n = snprintf(c->client_first_bare, sizeof(c->client_first_bare), "n=%s,r=%s", esc, nonce);
	if (n < 0 || (size_t)n >= sizeof(c->client_first_bare))
		return CHAT_ERR_TOO_BIG;
	n = snprintf(out, cap, "%s%s", gs2_header(&c->cb), c->client_first_bare);
	if (n < 0 || (size_t)n >= cap)
		return CHAT_ERR_NOSPACE;
	c->state = ST_FIRST;
	return CHAT_OK;
}

int chat_scram_client_final(struct chat_scram_client *c, const char *server_first,
                            size_t pw_len, const char *password, size_t cap, char *out)
{
	char nonce[160], salt_b64[120], iter[16], without_proof[336], auth[3 * CHAT_SCRAM_MSG_MAX];
	char cbind[160];
	uint8_t salt[64], salted[CHAT_SCRAM_KEY], client_key[CHAT_SCRAM_KEY], stored[CHAT_SCRAM_KEY];
	uint8_t server_key[CHAT_SCRAM_KEY], sig[CHAT_SCRAM_KEY], proof[CHAT_SCRAM_KEY];
	char proof_b64[64];
	const char *p = server_first;
	int rc = CHAT_ERR_MALFORMED;

	if (c->state != ST_FIRST)
		return CHAT_ERR_STATE;
	if (strlen(server_first) >= sizeof(c->server_first) ||
	    attr(&p, 'r', sizeof(nonce), nonce) || attr(&p, 's', sizeof(salt_b64), salt_b64) ||
	    attr(&p, 'i', sizeof(iter), iter) || *p)
		return CHAT_ERR_MALFORMED;
	/* The server's nonce must extend ours. */
	if (strncmp(nonce, c->nonce, strlen(c->nonce)) || strlen(nonce) == strlen(c->nonce) ||
	    !printable_nonce(nonce))
		return CHAT_ERR_AUTH;
	char *end;
	unsigned long iterations = strtoul(iter, &end, 10);
	if (*end || iter[0] == '0' || iterations < CHAT_SCRAM_MIN_ITER || iterations > 10000000)
		return CHAT_ERR_MALFORMED;
	long salt_len = b64_decode(salt_b64, sizeof(salt), salt);
	if (salt_len <= 0)
		return CHAT_ERR_MALFORMED;
	snprintf(c->server_first, sizeof(c->server_first), "%s", server_first);
	if (cbind_b64(&c->cb, sizeof(cbind), cbind))
		return CHAT_ERR_INVALID;
	snprintf(without_proof, sizeof(without_proof), "c=%s,r=%s", cbind, nonce);
	int n = snprintf(auth, sizeof(auth), "%s,%s,%s", c->client_first_bare, server_first, without_proof);
	if (n < 0 || (size_t)n >= sizeof(auth))
		return CHAT_ERR_TOO_BIG;

	salted_password(pw_len, password, (size_t)salt_len, salt, (unsigned)iterations, salted);
	keys_from_salted(salted, client_key, stored, server_key);
	hmac(stored, (size_t)n, auth, sig);
	for (size_t i = 0; i < CHAT_SCRAM_KEY; i++)
		proof[i] = client_key[i] ^ sig[i];
	hmac(server_key, (size_t)n, auth, c->server_signature);
	b64_encode(sizeof(proof), proof, sizeof(proof_b64), proof_b64);
	n = snprintf(out, cap, "%s,p=%s", without_proof, proof_b64);
	if (n < 0 || (size_t)n >= cap) {
		rc = CHAT_ERR_NOSPACE;
		goto out;
	}
	c->state = ST_FINAL;
	rc = CHAT_OK;
out:
	chat_wipe(salted, sizeof(salted));
	chat_wipe(client_key, sizeof(client_key));
	chat_wipe(server_key, sizeof(server_key));
	chat_wipe(stored, sizeof(stored));
	chat_wipe(proof, sizeof(proof));
	return rc;
}

int chat_scram_client_verify(struct chat_scram_client *c, const char *server_final)
{
	char v[64];
	uint8_t sig[CHAT_SCRAM_KEY + 4];
	const char *p = server_final;

	if (c->state != ST_FINAL)
		return CHAT_ERR_STATE;
	c->state = ST_DONE;
	if (server_final[0] == 'e' && server_final[1] == '=')
		return CHAT_ERR_AUTH;
	if (attr(&p, 'v', sizeof(v), v) || *p || b64_decode(v, sizeof(sig), sig) != CHAT_SCRAM_KEY)
		return CHAT_ERR_MALFORMED;
	return memeql_sec(sig, c->server_signature, CHAT_SCRAM_KEY) ? CHAT_OK : CHAT_ERR_AUTH;
}

int chat_scram_server_first_in(struct chat_scram_server *s, const char *client_first,
                               size_t link_len, const uint8_t *link)
{
	char user[256], nonce[64];
	const char *p;
	static const char plus[] = "p=" CHAT_SCRAM_CB_TYPE ",,";

	memset(s, 0, sizeof(*s));
	if (link_len > CHAT_SCRAM_CB_MAX || strlen(client_first) >= sizeof(s->client_first_bare))
		return CHAT_ERR_MALFORMED;
	/* GS2 header: a binding flag and no authzid. */
	if (!strncmp(client_first, "n,,", 3) || !strncmp(client_first, "y,,", 3)) {
		s->cb.flag = client_first[0];
		p = client_first + 3;
	} else if (!strncmp(client_first, plus, sizeof(plus) - 1)) {
		s->cb.flag = 'p';
		p = client_first + sizeof(plus) - 1;
	} else if (!strncmp(client_first, "p=", 2)) {
		s->why = "the client asked for a channel binding type other than " CHAT_SCRAM_CB_TYPE;
		return CHAT_ERR_AUTH;
	} else {
		return CHAT_ERR_MALFORMED;
	}
	snprintf(s->client_first_bare, sizeof(s->client_first_bare), "%s", p);
	if (attr(&p, 'n', sizeof(user), user) || attr(&p, 'r', sizeof(nonce), nonce) || *p ||
	    !printable_nonce(nonce) || unescape_user(user, sizeof(s->user), s->user))
		return CHAT_ERR_MALFORMED;
	snprintf(s->nonce, sizeof(s->nonce), "%s", nonce);
	if (s->cb.flag == 'p' && !link_len) {
		s->why = "the client binds its login to a TLS channel (" CHAT_SCRAM_CB_TYPE
		         "), but its link ends before the relay (plain TCP here: a TLS proxy in between?)";
		return CHAT_ERR_AUTH;
	}
	if (s->cb.flag == 'y' && link_len) {
		s->why = "the client can bind its login to the TLS channel and thinks this relay cannot, "
		         "but it can: someone removed the binding on the way (downgrade)";
		return CHAT_ERR_AUTH;
	}
	if (s->cb.flag == 'p') {
		memcpy(s->cb.data, link, link_len);
		s->cb.len = link_len;
	}
	s->state = ST_FIRST;
	return CHAT_OK;
}

int chat_scram_server_first(struct chat_scram_server *s, const struct chat_scram_verifier *v,
                            const char *server_nonce, size_t cap, char *out)
{
	char salt_b64[120];
	size_t have = strlen(s->nonce);

	if (s->state != ST_FIRST)
		return CHAT_ERR_STATE;
	if (!printable_nonce(server_nonce) || have + strlen(server_nonce) >= sizeof(s->nonce))
		return CHAT_ERR_INVALID;
	memcpy(s->nonce + have, server_nonce, strlen(server_nonce) + 1);
	s->v = *v;
	if (!b64_encode(v->salt_len, v->salt, sizeof(salt_b64), salt_b64))
		return CHAT_ERR_INVALID;
	int n = snprintf(s->server_first, sizeof(s->server_first), "r=%s,s=%s,i=%u", s->nonce,
	                 salt_b64, v->iterations);
	if (n < 0 || (size_t)n >= sizeof(s->server_first))
		return CHAT_ERR_TOO_BIG;
	if ((size_t)n >= cap)
		return CHAT_ERR_NOSPACE;
	memcpy(out, s->server_first, (size_t)n + 1);
	s->state = ST_FINAL;
	return CHAT_OK;
}

int chat_scram_server_final(struct chat_scram_server *s, const char *client_final, size_t cap,
                            char *out)
{
	char cb[160], want_cb[160], nonce[160], proof_b64[64], auth[3 * CHAT_SCRAM_MSG_MAX], sig_b64[64];
	uint8_t proof[CHAT_SCRAM_KEY + 4], sig[CHAT_SCRAM_KEY], client_key[CHAT_SCRAM_KEY];
	uint8_t stored[CHAT_SCRAM_KEY], server_sig[CHAT_SCRAM_KEY];
	const char *p = client_final, *proof_at;
	int rc;

	if (s->state != ST_FINAL)
		return CHAT_ERR_STATE;
	s->state = ST_DONE;
	if (strlen(client_final) >= CHAT_SCRAM_MSG_MAX || attr(&p, 'c', sizeof(cb), cb) ||
	    attr(&p, 'r', sizeof(nonce), nonce))
		return CHAT_ERR_MALFORMED;
	proof_at = p;
	if (attr(&p, 'p', sizeof(proof_b64), proof_b64) || *p ||
	    b64_decode(proof_b64, sizeof(proof), proof) != CHAT_SCRAM_KEY)
		return CHAT_ERR_MALFORMED;
	if (cbind_b64(&s->cb, sizeof(want_cb), want_cb))
		return CHAT_ERR_MALFORMED;
	if (strcmp(cb, want_cb)) {
		if (s->cb.flag == 'p')
			s->why = "the TLS channel the client bound its login to is not the relay's: "
			         "someone in between terminates TLS (a TLS-intercepting proxy)";
		return CHAT_ERR_AUTH;
	}
	if (strcmp(nonce, s->nonce))
		return CHAT_ERR_AUTH;
	/* AuthMessage uses client-final without ",p=...". */
	int n = snprintf(auth, sizeof(auth), "%s,%s,%.*s", s->client_first_bare, s->server_first,
	                 (int)(proof_at - client_final - 1), client_final);
	if (n < 0 || (size_t)n >= sizeof(auth))
		return CHAT_ERR_TOO_BIG;
	hmac(s->v.stored_key, (size_t)n, auth, sig);
	for (size_t i = 0; i < CHAT_SCRAM_KEY; i++)
		client_key[i] = proof[i] ^ sig[i];
	sha256(CHAT_SCRAM_KEY, client_key, stored);
	if (!memeql_sec(stored, s->v.stored_key, CHAT_SCRAM_KEY)) {
		rc = CHAT_ERR_AUTH;
		goto out;
	}
	hmac(s->v.server_key, (size_t)n, auth, server_sig);
	b64_encode(sizeof(server_sig), server_sig, sizeof(sig_b64), sig_b64);
	if ((size_t)snprintf(out, cap, "v=%s", sig_b64) >= cap) {
		rc = CHAT_ERR_NOSPACE;
		goto out;
	}
	rc = CHAT_OK;
out:
	chat_wipe(client_key, sizeof(client_key));
	chat_wipe(stored, sizeof(stored));
	return rc;
}

void chat_scram_client_wipe(struct chat_scram_client *c)
{
	chat_wipe(c, sizeof(*c));
}

void chat_scram_server_wipe(struct chat_scram_server *s)
{
	chat_wipe(s, sizeof(*s));
}
