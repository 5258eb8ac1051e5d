/* Identity keys (plugin ABI 1.3, suites with CHAT_FLAG_IDENTITY): our own
 * long-term key pair per suite, made by the suite's identity_keygen and kept
 * in the keystore (guests keep theirs in memory for the run), published to
 * the relay (KEYS_PUT) at login; and the peers' keys, pinned on first use
 * from what the handshake proved (peer_identity), handed to the suite at the
 * next session so that a changed key fails the handshake.  /trust NAME
 * forgets NAME's pins, /verify NAME shows a safety number computed from
 * both keys (the same on both screens) and /verify NAME yes marks NAME
 * verified: a verified peer's changed key is an error, not a warning. */
#include "client_int.h"
#include "host.h"

#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_BUF 4096

static int has_identity(const struct chat_loaded *s)
{
	const struct chat_cipher_ops *ops = s->desc->ops.cipher;

	return (s->desc->flags & CHAT_FLAG_IDENTITY) && CHAT_CIPHER_HAS(ops, identity_keygen) &&
	       CHAT_CIPHER_HAS(ops, peer_identity);
}

int client_suite_has_identity(const struct chat_loaded *s)
{
	return has_identity(s);
}

/* "sha256:" and 64 hex digits of the key. */
void client_key_fingerprint(size_t len, const uint8_t *key, char out[CLIENT_KEY_FP])
{
	struct sha256_ctx h;
	uint8_t d[SHA256_DIGEST_SIZE];

	sha256_init(&h);
	sha256_update(&h, len, key);
	sha256_digest(&h, sizeof(d), d);
	memcpy(out, "sha256:", 7);
	for (size_t i = 0; i < sizeof(d); i++)
		snprintf(out + 7 + 2 * i, 3, "%02x", d[i]);
}

static void ask_keys(struct chat_client *c, const char *peer);

static struct ident_own *own_find(struct chat_client *c, const char *suite)
{
	for (size_t i = 0; i < c->nown; i++)
		if (!strcmp(c->own[i].suite, suite))
			return &c->own[i];
	return NULL;
}

struct ident_pin *client_pin_find(struct chat_client *c, const char *peer, const char *suite)
{
	for (size_t i = 0; i < c->npins; i++)
		if (!strcmp(c->pins[i].peer, peer) && !strcmp(c->pins[i].suite, suite))
			return &c->pins[i];
	return NULL;
}

static void own_clear(struct ident_own *o)
{
	if (o->priv) {
		chat_wipe(o->priv, o->priv_len);
		free(o->priv);
	}
	free(o->pub);
	memset(o, 0, sizeof(*o));
}

/* Keep a key pair (copied) for suite; replaces one there was. */
int client_own_add(struct chat_client *c, const char *suite, size_t priv_len, const uint8_t *priv,
                   size_t pub_len, const uint8_t *pub)
{
	struct ident_own *o = own_find(c, suite);

	if (!priv_len || !pub_len || priv_len > KEY_BUF || pub_len > KEY_BUF)
		return CHAT_ERR_INVALID;
	if (!o) {
		struct ident_own *grown = realloc(c->own, (c->nown + 1) * sizeof(*grown));
		if (!grown)
			return CHAT_ERR_NOMEM;
		c->own = grown;
		o = &c->own[c->nown++];
		memset(o, 0, sizeof(*o));
	} else {
		own_clear(o);
	}
	snprintf(o->suite, sizeof(o->suite), "%s", suite);
	o->priv = malloc(priv_len);
	o->pub = malloc(pub_len);
	if (!o->priv || !o->pub) {
		own_clear(o);
		c->nown--;
		return CHAT_ERR_NOMEM;
	}
	memcpy(o->priv, priv, priv_len);
	memcpy(o->pub, pub, pub_len);
	o->priv_len = priv_len;
	o->pub_len = pub_len;
	return CHAT_OK;
}

int client_pin_add(struct chat_client *c, const char *peer, const char *suite, size_t len,
                   const uint8_t *key, int verified)
{
	struct ident_pin *p = client_pin_find(c, peer, suite);

	if (!len || len > KEY_BUF)
		return CHAT_ERR_INVALID;
	if (!p) {
		struct ident_pin *grown = realloc(c->pins, (c->npins + 1) * sizeof(*grown));
		if (!grown)
			return CHAT_ERR_NOMEM;
		c->pins = grown;
		p = &c->pins[c->npins++];
		memset(p, 0, sizeof(*p));
	} else {
		free(p->key);
	}
	snprintf(p->peer, sizeof(p->peer), "%s", peer);
	snprintf(p->suite, sizeof(p->suite), "%s", suite);
	if (!(p->key = malloc(len))) {
		c->npins--;
		return CHAT_ERR_NOMEM;
	}
	memcpy(p->key, key, len);
	p->len = len;
	p->verified = (uint8_t)(verified != 0);
	return CHAT_OK;
}

void client_identity_free(struct chat_client *c)
{
	for (size_t i = 0; i < c->nown; i++)
		own_clear(&c->own[i]);
	free(c->own);
	for (size_t i = 0; i < c->npins; i++)
		free(c->pins[i].key);
	free(c->pins);
	c->own = NULL;
	c->pins = NULL;
	c->nown = c->npins = 0;
}

/* Our pair for the suite, made now if we have none (and kept: the caller
 * saves the keystore). */
static struct ident_own *own_get(struct chat_client *c, const struct chat_loaded *s, int *made)
{
	struct ident_own *o = own_find(c, s->desc->name);
	uint8_t *priv, pub[KEY_BUF];
	struct chat_buf bp, bq = { .data = pub, .cap = sizeof(pub) };
	int rc;

	if (made)
		*made = 0;
	if (o)
		return o;
	if (!(priv = malloc(KEY_BUF)))
		return NULL;
	bp = (struct chat_buf){ .data = priv, .cap = KEY_BUF };
	rc = s->desc->ops.cipher->identity_keygen(&s->host, &bp, &bq);
	if (rc == CHAT_OK)
		rc = client_own_add(c, s->desc->name, bp.len, priv, bq.len, pub);
	chat_wipe(priv, KEY_BUF);
	free(priv);
	if (rc != CHAT_OK) {
		client_fail(c, NULL, "identity", "cannot make an identity key for suite %s: %s", s->desc->name,
		            chat_strerror(rc));
		return NULL;
	}
	if (made)
		*made = 1;
	return own_find(c, s->desc->name);
}

int client_identity_params(struct chat_client *c, const struct conv *v, struct chat_cipher_params *p)
{
	int made = 0;

	if (!has_identity(v->suite))
		return CHAT_OK;
	struct ident_own *o = own_get(c, v->suite, &made);
	if (!o)
		return CHAT_ERR_NOMEM;
	p->identity_private = o->priv;
	p->identity_private_len = o->priv_len;
	p->identity_public = o->pub;
	p->identity_public_len = o->pub_len;
	const struct ident_pin *pin = client_pin_find(c, v->peer, v->suite->desc->name);
	if (pin) {
		p->peer_identity = pin->key;
		p->peer_identity_len = pin->len;
	}
	if (made)
		client_store_mark(c);
	return CHAT_OK;
}

void client_identity_established(struct chat_client *c, struct conv *v)
{
	uint8_t key[KEY_BUF];
	struct chat_buf b = { .data = key, .cap = sizeof(key) };
	char fp[CLIENT_KEY_FP];

	if (!has_identity(v->suite) || client_pin_find(c, v->peer, v->suite->desc->name))
		return;
	if (v->suite->desc->ops.cipher->peer_identity(v->session, &b) != CHAT_OK || !b.len)
		return;
	if (client_pin_add(c, v->peer, v->suite->desc->name, b.len, key, 0) != CHAT_OK)
		return;
	client_key_fingerprint(b.len, key, fp);
	client_say(c, CHAT_EV_INFO, v->peer, "%s's %s identity key %s is pinned (first use); compare "
	           "safety numbers with /verify %s", v->peer, v->suite->desc->name, fp, v->peer);
	client_store_mark(c);
	if (v->relay_link)
		ask_keys(c, v->peer); /* does the relay publish the same? */
}

int client_identity_refused(struct chat_client *c, const struct conv *v)
{
	const struct ident_pin *pin;
	uint8_t key[KEY_BUF];
	struct chat_buf b = { .data = key, .cap = sizeof(key) };
	char fp[CLIENT_KEY_FP], seen[CLIENT_KEY_FP + 32];

	if (!has_identity(v->suite) || !(pin = client_pin_find(c, v->peer, v->suite->desc->name)))
		return 0;
	client_key_fingerprint(pin->len, pin->key, fp);
	/* The key they presented instead (ABI 1.3: peer_identity after a pin
	 * mismatch), shown next to the pinned one, never pinned from here. */
	if (v->suite->desc->ops.cipher->peer_identity(v->session, &b) == CHAT_ERR_AUTH && b.len) {
		char nfp[CLIENT_KEY_FP];
		client_key_fingerprint(b.len, key, nfp);
		snprintf(seen, sizeof(seen), "; they presented %s", nfp);
	} else {
		seen[0] = '\0';
	}
	if (v->relay_link)
		ask_keys(c, v->peer); /* what the relay publishes for them now */
	if (pin->verified)
		client_fail(c, v->peer, "identity-changed", "VERIFIED CONTACT: %s did not prove the %s identity "
		            "key pinned and verified for them (%s%s): their key changed (a new registration, a "
		            "lost keystore) or someone is in the middle. Ask them in person; /trust %s accepts "
		            "the key they use now", v->peer, v->suite->desc->name, fp, seen, v->peer);
	else
		client_say(c, CHAT_EV_WARNING, v->peer, "%s did not prove the %s identity key pinned for them "
		           "(%s%s): their key changed (a new registration, a lost keystore) or someone is in the "
		           "middle. Ask them; /trust %s accepts the key they use now", v->peer,
		           v->suite->desc->name, fp, seen, v->peer);
	return 1;
}

/* ---- the relay's directory: what it says of a peer's keys, compared */

static void ask_keys(struct chat_client *c, const char *peer)
{
	if (c->state != CS_READY || !c->conn)
		return;
	client_begin(c, CHAT_MSG_KEYS_GET);
	chat_put_str8(&c->wb, peer);
	client_flush(c);
}

void client_identity_keys(struct chat_client *c, const struct chat_msg *m)
{
	struct chat_iter it = m->list;
	char suite[CHAT_NAME_MAX + 1], fp[CLIENT_KEY_FP], pinned[CLIENT_KEY_FP];
	const uint8_t *key;
	size_t len;

	while (chat_iter_key(&it, suite, &len, &key)) {
		const struct ident_pin *pin = client_pin_find(c, m->name, suite);
		if (!pin || (pin->len == len && !memcmp(pin->key, key, len)))
			continue;
		client_key_fingerprint(len, key, fp);
		client_key_fingerprint(pin->len, pin->key, pinned);
		client_say(c, CHAT_EV_WARNING, m->name, "the relay publishes %s as %s's %s identity key, not the "
		           "pinned %s: %s changed keys, or the relay (or someone on the way) is lying; ask %s "
		           "and compare /verify %s", fp, m->name, suite, pinned, m->name, m->name, m->name);
	}
}

/* ---- the relay's directory: publish ours at login */

void client_identity_publish(struct chat_client *c)
{
	int saved = 0;

	for (size_t i = 0; i < c->nsuites; i++) {
		const struct chat_loaded *s = c->suites[i];
		int made = 0;
		if (!has_identity(s))
			continue;
		struct ident_own *o = own_get(c, s, &made);
		if (!o)
			continue;
		saved |= made;
		client_begin(c, CHAT_MSG_KEYS_PUT);
		chat_put_str8(&c->wb, s->desc->name);
		chat_put_bytes(&c->wb, o->pub_len, o->pub);
		client_flush(c);
	}
	if (saved)
		client_store_save(c);
}

/* ---- /trust and /verify */

void client_trust(struct chat_client *c, const char *peer)
{
	size_t k = 0, dropped = 0;

	for (size_t i = 0; i < c->npins; i++) {
		if (!strcmp(c->pins[i].peer, peer)) {
			free(c->pins[i].key);
			dropped++;
			continue;
		}
		c->pins[k++] = c->pins[i];
	}
	c->npins = k;
	if (!dropped) {
		client_say(c, CHAT_EV_INFO, peer, "no identity key of %s is pinned", peer);
		return;
	}
	client_say(c, CHAT_EV_INFO, peer, "forgot %zu pinned identity key(s) of %s: the key they prove "
	           "next is pinned then (compare with /verify %s)", dropped, peer, peer);
	client_store_save(c);
}

/* 30 digits for one party: SHA-512 iterated over its name and key, six
 * 5-byte chunks, each mod 100000. */
static void party_digits(const char *name, size_t len, const uint8_t *key, char out[31])
{
	uint8_t h[SHA512_DIGEST_SIZE];
	struct sha512_ctx x;
	uint8_t nl = (uint8_t)strlen(name);

	sha512_init(&x);
	sha512_update(&x, 15, (const uint8_t *)"chat-safety-v1\n");
	sha512_update(&x, 1, &nl);
	sha512_update(&x, nl, (const uint8_t *)name);
	sha512_update(&x, len, key);
	sha512_digest(&x, sizeof(h), h);
	for (int i = 1; i < 1024; i++) {
		sha512_update(&x, sizeof(h), h);
		sha512_update(&x, len, key);
		sha512_digest(&x, sizeof(h), h);
	}
	for (int g = 0; g < 6; g++) {
		uint64_t v = 0;
		for (int b = 0; b < 5; b++)
			v = v << 8 | h[5 * g + b];
		snprintf(out + 5 * g, 6, "%05u", (unsigned)(v % 100000));
	}
}

void client_verify(struct chat_client *c, const char *peer, const char *rest)
{
	const struct ident_pin *pin = NULL;
	const struct ident_own *o = NULL;

	for (size_t i = 0; i < c->npins && !o; i++) {
		if (strcmp(c->pins[i].peer, peer))
			continue;
		pin = &c->pins[i];
		o = own_find(c, pin->suite);
	}
	if (!pin || !o) {
		client_fail(c, peer, "no-identity", "no identity key of %s is pinned yet: talk with a suite that "
		            "has identity keys (noise-xx, rsa) first", peer);
		return;
	}
	char me[31], them[31], line[128];
	const char *self = c->name[0] ? c->name : c->cfg.user;
	party_digits(self, o->pub_len, o->pub, me);
	party_digits(peer, pin->len, pin->key, them);
	/* The same order on both screens: by name. */
	const char *a = strcmp(self, peer) < 0 ? me : them, *b = a == me ? them : me;
	size_t n = 0;
	for (int g = 0; g < 12; g++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%.5s", g ? " " : "", (g < 6 ? a : b) + 5 * (g % 6));
	if (rest && !strncmp(rest, "yes", 3)) {
		for (size_t i = 0; i < c->npins; i++)
			if (!strcmp(c->pins[i].peer, peer))
				c->pins[i].verified = 1;
		client_store_save(c);
		client_say(c, CHAT_EV_INFO, peer, "%s is verified: a change of their key is now an error", peer);
		return;
	}
	client_say(c, CHAT_EV_INFO, peer, "safety number with %s (%s%s): %s — the same on both screens "
	           "means no one is in the middle; then /verify %s yes", peer, pin->suite,
	           pin->verified ? ", verified" : "", line, peer);
}
