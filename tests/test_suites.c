/* The generic suite test (Nettle's meta-*-test idea): every cipher plugin in
 * the build's plugin directory, loaded by the core's loader, goes through the
 * same checks, chosen from its descriptor's flags alone -- never its name:
 *
 *   all suites     in-process handshake by passing buffers (bounded steps),
 *                  round trips of many random-length messages both ways,
 *                  CHAT_ERR_NOSPACE consuming nothing, equal fingerprints;
 *   INTEGRITY      every flipped bit and every truncation rejected by open
 *                  with nothing written;
 *   not INSECURE   two handshakes of the same pair with the same params
 *                  (and secret) give unrelated sessions: what one seals,
 *                  the other does not open to the same text;
 *   REPLAY         a sealed message opened twice is rejected the second time;
 *                  two delivered out of order and then again open once each;
 *   NEEDS_SECRET   a wrong secret makes the handshake fail, a missing one is
 *                  CHAT_ERR_NOSECRET at session_new or at the first step;
 *   session_save   (ABI 1.1, when the plugin has it) both ends saved and
 *                  loaded mid-conversation continue exactly like the
 *                  originals; saving too early, into too little room, and
 *                  loading under other params, truncated, extended or with
 *                  a damaged header are all refused; open_at (if present)
 *                  at the current time behaves as open;
 *   IDENTITY       (ABI 1.3) identity_keygen makes a key pair for alice, bob
 *                  and carol; every other check runs with both pairs in the
 *                  params and the peer's public key pinned; then the
 *                  handshake with nothing pinned (first contact) and pinned,
 *                  each end's peer_identity() equal to the other's public
 *                  key (CHAT_ERR_STATE before the handshake); a wrong key
 *                  pinned at either end, and carol answering with her own
 *                  key for bob, fail with CHAT_ERR_AUTH, and the end that
 *                  refused reports the key it was shown (peer_identity
 *                  returns CHAT_ERR_AUTH with it).
 *
 * One line per suite; the number tested must equal the number of cipher
 * plugins the registry loaded, and a plugin that fails to load fails the
 * test too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"
#include "log.h"
#include "paths.h"
#include "testutils.h"

#define HS_CAP 65536     /* a handshake message fits in one default frame */
#define MAX_STEPS 16     /* handshake calls, both ends together */
#define MESSAGES 400     /* per suite, both directions */
#define MSG_MAX 4096     /* plaintext bytes per message */
#define QMAX 4           /* messages in flight per direction */
#define RT_CAP (4 * MSG_MAX) /* open's room in the round trips */
#define FILL 0xa5        /* open's dst is prefilled to see what it wrote */

static const char secret[] = "correct horse battery staple";
static const char wrong_secret[] = "correct horse battery stapler";
static const uint8_t binding[] = "offer=a,b,c;accept=b,c;choice=b";
static uint8_t pool[2 * MSG_MAX];

#define ID_CAP 4096 /* the ABI's room for either half of an identity key pair */

/* An identity key pair made by the suite's identity_keygen. */
struct idkey {
	uint8_t priv[ID_CAP], pub[ID_CAP];
	size_t priv_len, pub_len;
};

enum { ID_ALICE, ID_BOB, ID_CAROL, ID_COUNT };
enum pin_mode {
	PIN_NONE = 0,      /* first contact: peer_identity NULL */
	PIN_RIGHT,         /* each end pins the other's real key */
	PIN_WRONG_AT_I,    /* the initiator pins carol's key for bob */
	PIN_WRONG_AT_R,    /* the responder pins carol's key for alice */
	PIN_IMPOSTOR,      /* carol answers as bob with her own key; alice pinned bob's */
};

struct suite {
	const struct chat_loaded *l;
	const struct chat_cipher_ops *ops;
	unsigned flags;
	char notes[1024];
	/* CHAT_FLAG_IDENTITY suites only. */
	struct idkey *ids; /* ID_COUNT pairs */
	int pin;           /* enum pin_mode */
};

static void note(struct suite *t, const char *text)
{
	size_t n = strlen(t->notes);

	snprintf(t->notes + n, sizeof(t->notes) - n, "%s%s", n ? ", " : "", text);
}

static struct chat_cipher_params params_for(const struct suite *t, int role, const char *pw)
{
	struct chat_cipher_params params = {
		.size = sizeof(params),
		.role = role,
		.local_id = role == CHAT_ROLE_INITIATOR ? "alice" : "bob",
		.peer_id = role == CHAT_ROLE_INITIATOR ? "bob" : "alice",
		.suite = t->l->desc->name,
		.secret = (const uint8_t *)pw,
		.secret_len = pw ? strlen(pw) : 0,
		.binding = binding,
		.binding_len = sizeof(binding) - 1,
	};

	if ((t->flags & CHAT_FLAG_IDENTITY) && t->ids) {
		int me = role == CHAT_ROLE_INITIATOR ? ID_ALICE : ID_BOB;
		int peer = role == CHAT_ROLE_INITIATOR ? ID_BOB : ID_ALICE;
		const struct idkey *own, *pinned = &t->ids[peer];

		if (t->pin == PIN_IMPOSTOR && role == CHAT_ROLE_RESPONDER)
			me = ID_CAROL;
		if ((t->pin == PIN_WRONG_AT_I && role == CHAT_ROLE_INITIATOR) ||
		    (t->pin == PIN_WRONG_AT_R && role == CHAT_ROLE_RESPONDER))
			pinned = &t->ids[ID_CAROL];
		own = &t->ids[me];
		params.identity_private = own->priv;
		params.identity_private_len = own->priv_len;
		params.identity_public = own->pub;
		params.identity_public_len = own->pub_len;
		if (t->pin != PIN_NONE) {
			params.peer_identity = pinned->pub;
			params.peer_identity_len = pinned->pub_len;
		}
	}
	return params;
}

static int new_session(const struct suite *t, int role, const char *pw, void **s)
{
	struct chat_cipher_params params = params_for(t, role, pw);

	*s = NULL;
	return t->ops->session_new(&t->l->host, &params, s);
}

/* Pass messages back and forth until both ends say ESTABLISHED.  CHAT_OK,
 * or the first error with *who naming the end (or the protocol problem). */
static int run_handshake(const struct suite *t, void *i, void *r, int *steps, const char **who)
{
	uint8_t *buf[2] = { malloc(HS_CAP), malloc(HS_CAP) };
	void *end[2] = { i, r };
	int done[2] = { 0, 0 }, turn = 0, cur = 0, rc;
	struct chat_buf out = { buf[0], HS_CAP, 0 };
	size_t msg_len;

	*steps = 0;
	*who = "";
	if (!buf[0] || !buf[1])
		abort();
	rc = t->ops->handshake(i, 0, &out, NULL);
	++*steps;
	if (rc < 0) {
		*who = "initiator";
		goto out;
	}
	done[0] = rc == CHAT_HS_ESTABLISHED;
	msg_len = out.len;
	turn = 1;
	while (!(done[0] && done[1])) {
		if (*steps >= MAX_STEPS) {
			rc = CHAT_ERR_TIMEOUT;
			*who = "no end (too many steps)";
			goto out;
		}
		if (msg_len == 0) {
			rc = CHAT_ERR_STATE;
			*who = "no end (stalled: nothing to send, not established)";
			goto out;
		}
		if (done[turn]) {
			rc = CHAT_ERR_STATE;
			*who = "no end (a message for an end already established)";
			goto out;
		}
		out = (struct chat_buf){ buf[!cur], HS_CAP, 0 };
		rc = t->ops->handshake(end[turn], msg_len, &out, buf[cur]);
		++*steps;
		if (rc < 0) {
			*who = turn ? "responder" : "initiator";
			/* A last message (a nack) goes to the peer, as the core would send
			 * it; whatever the peer makes of it, the handshake has failed. */
			if (out.len && !done[!turn]) {
				struct chat_buf sink = { buf[cur], HS_CAP, 0 };

				t->ops->handshake(end[!turn], out.len, &sink, buf[!cur]);
			}
			goto out;
		}
		if (rc != CHAT_HS_CONTINUE && rc != CHAT_HS_ESTABLISHED) {
			rc = CHAT_ERR_STATE;
			*who = turn ? "responder (unknown return value)" : "initiator (unknown return value)";
			goto out;
		}
		done[turn] = rc == CHAT_HS_ESTABLISHED;
		msg_len = out.len;
		cur = !cur;
		turn = !turn;
	}
	rc = CHAT_OK;
	if (msg_len) {
		rc = CHAT_ERR_STATE;
		*who = "no end (a message left over after both established)";
	}
out:
	free(buf[0]);
	free(buf[1]);
	return rc;
}

/* A pair of established sessions, or 0 with everything freed. */
static int pair_new(const struct suite *t, void **i, void **r, int *steps)
{
	const char *pw = t->flags & CHAT_FLAG_NEEDS_SECRET ? secret : NULL;
	const char *who;
	int rc;

	*r = NULL;
	rc = new_session(t, CHAT_ROLE_INITIATOR, pw, i);
	if (rc == CHAT_OK)
		rc = new_session(t, CHAT_ROLE_RESPONDER, pw, r);
	if (rc) {
		fprintf(stderr, "%s: session_new: %s\n", t->l->desc->name, chat_strerror(rc));
		goto fail;
	}
	rc = run_handshake(t, *i, *r, steps, &who);
	if (rc) {
		fprintf(stderr, "%s: handshake failed at %s: %s\n", t->l->desc->name, who,
		        chat_strerror(rc));
		goto fail;
	}
	return 1;
fail:
	CHECK_EQ_INT(rc, CHAT_OK);
	t->ops->session_free(*i);
	t->ops->session_free(*r);
	*i = *r = NULL;
	return 0;
}

/* Seal into a buffer of sealed_size(); the caller frees it. */
static uint8_t *seal(const struct suite *t, void *s, size_t len, const uint8_t *src,
                     size_t *sealed_len)
{
	size_t cap = t->ops->sealed_size(s, len);
	uint8_t *buf = malloc(cap ? cap : 1);
	struct chat_buf b = { buf, cap, 0 };
	int rc;

	if (!buf)
		abort();
	rc = t->ops->seal(s, len, &b, src);
	CHECK_EQ_INT(rc, CHAT_OK);
	CHECK(b.len <= cap);
	*sealed_len = rc == CHAT_OK ? b.len : 0;
	return buf;
}

/* Open into a prefilled buffer; when open fails, check it wrote nothing. */
static int open_msg(const struct suite *t, void *s, size_t len, const uint8_t *src,
                    size_t cap, uint8_t *dst, size_t *out_len)
{
	struct chat_buf b = { dst, cap, 0 };
	int rc;

	memset(dst, FILL, cap);
	rc = t->ops->open(s, len, &b, src);
	if (rc != CHAT_OK) {
		size_t k = 0;

		while (k < cap && dst[k] == FILL)
			k++;
		CHECK_EQ_INT(b.len, 0);
		CHECK_EQ_INT(k, cap); /* not a byte written */
	}
	*out_len = b.len;
	return rc;
}

struct flight {
	uint8_t *sealed;
	size_t sealed_len;
	const uint8_t *plain;
	size_t len;
};

/* Many messages both ways, several in flight per direction (delivered in
 * order within a direction), in a random interleaving. */
static int round_trips(const struct suite *t, void *i, void *r, size_t *bytes)
{
	struct flight q[2][QMAX];
	size_t head[2] = { 0, 0 }, count[2] = { 0, 0 }, sent = 0, delivered = 0;
	void *end[2] = { i, r };
	uint8_t *dst = malloc(RT_CAP);
	int bad = 0;

	if (!dst)
		abort();
	*bytes = 0;
	while (delivered < MESSAGES) {
		int d = (int)(test_rand() & 1);
		int deliver = sent >= MESSAGES || (test_rand() & 1);

		if (!deliver && count[d] < QMAX) {
			struct flight *f = &q[d][(head[d] + count[d]) % QMAX];

			f->len = test_rand() % 4 ? (size_t)(test_rand() % 200) :
			                           (size_t)(test_rand() % (MSG_MAX + 1));
			f->plain = pool + test_rand() % MSG_MAX;
			f->sealed = seal(t, end[d], f->len, f->plain, &f->sealed_len);
			count[d]++;
			sent++;
		} else if (count[d]) {
			struct flight *f = &q[d][head[d]];
			size_t n;
			int rc = open_msg(t, end[!d], f->sealed_len, f->sealed, RT_CAP, dst, &n);

			if (rc != CHAT_OK || n != f->len || (n && memcmp(dst, f->plain, n))) {
				if (!bad)
					fprintf(stderr, "%s: message %zu (%zu bytes) did not round-trip: %s\n",
					        t->l->desc->name, delivered, f->len, chat_strerror(rc));
				bad++;
			}
			*bytes += n;
			free(f->sealed);
			head[d] = (head[d] + 1) % QMAX;
			count[d]--;
			delivered++;
		}
	}
	free(dst);
	CHECK_EQ_INT(bad, 0);
	return bad == 0;
}

/* Seal from s, open at peer, compare. */
static int xfer(const struct suite *t, void *s, void *peer, size_t len, const uint8_t *src)
{
	size_t sl, n;
	uint8_t *sealed = seal(t, s, len, src, &sl), *dst = malloc(sl + len + 64);
	int rc, ok;

	if (!dst)
		abort();
	rc = open_msg(t, peer, sl, sealed, sl + len + 64, dst, &n);
	ok = rc == CHAT_OK && n == len && (!len || !memcmp(dst, src, len));
	free(sealed);
	free(dst);
	return ok;
}

/* CHAT_ERR_NOSPACE writes and consumes nothing, in seal and in open: the
 * same message then goes through, and the next one too. */
static void check_nospace(const struct suite *t, void *i, void *r)
{
	const uint8_t *text = pool + 17;
	uint8_t small[1], *sealed;
	struct chat_buf b = { small, 0, 0 };
	size_t sl;

	for (size_t cap = 0; cap < 2; cap++) {
		b.cap = cap;
		CHECK_EQ_INT(t->ops->seal(i, 100, &b, text), CHAT_ERR_NOSPACE);
		CHECK_EQ_INT(b.len, 0);
	}
	sealed = seal(t, i, 100, text, &sl);
	b.cap = 0;
	CHECK_EQ_INT(t->ops->open(r, sl, &b, sealed), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(b.len, 0);
	{
		uint8_t *dst = malloc(sl + 128);
		size_t n;

		if (!dst)
			abort();
		CHECK_EQ_INT(open_msg(t, r, sl, sealed, sl + 128, dst, &n), CHAT_OK);
		CHECK(n == 100 && !memcmp(dst, text, 100));
		free(dst);
	}
	free(sealed);
	CHECK(xfer(t, i, r, 33, pool + 99));
	CHECK(xfer(t, r, i, 44, pool + 999));
}

/* Every flipped bit, every truncation: rejected, nothing written.  A suite
 * may drop a forgery and go on (then the genuine message still opens
 * afterwards) or fail for good (then each forgery gets a fresh pair). */
/* Buffers for the tampering checks: a sealed 37-byte message and whatever
 * open writes must fit (any sane suite is far below). */
#define ROOM 4096

static int sealed_fits(const struct suite *t, size_t sl)
{
	if (sl > 0 && sl <= ROOM)
		return 1;
	fprintf(stderr, "%s: a 37-byte message sealed to %zu bytes\n", t->l->desc->name, sl);
	CHECK(sl > 0 && sl <= ROOM);
	return 0;
}

static void check_integrity(struct suite *t, void *i, void *r)
{
	const uint8_t *text = pool + 5;
	const size_t len = 37;
	uint8_t *sealed, *forged, *dst;
	size_t sl, n, flips = 0, cuts = 0;
	int survives;
	char line[128];

	forged = malloc(ROOM);
	dst = malloc(ROOM);
	if (!forged || !dst)
		abort();
	sealed = seal(t, i, len, text, &sl);
	if (!sealed_fits(t, sl)) {
		free(sealed);
		goto out;
	}

	/* Does a session survive one forgery? */
	memcpy(forged, sealed, sl);
	forged[sl - 1] ^= 1;
	CHECK(open_msg(t, r, sl, forged, ROOM, dst, &n) < 0);
	survives = open_msg(t, r, sl, sealed, ROOM, dst, &n) == CHAT_OK &&
	           n == len && !memcmp(dst, text, len);
	free(sealed);

	if (survives) {
		sealed = seal(t, i, len, text, &sl);
		if (!sealed_fits(t, sl)) {
			free(sealed);
			goto out;
		}
		for (size_t bit = 0; bit < sl * 8; bit++) {
			memcpy(forged, sealed, sl);
			forged[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			if (open_msg(t, r, sl, forged, ROOM, dst, &n) < 0)
				flips++;
			else
				fprintf(stderr, "%s: a flip of bit %zu of %zu was accepted\n",
				        t->l->desc->name, bit, sl * 8);
		}
		CHECK_EQ_INT(flips, sl * 8);
		for (size_t cut = 0; cut < sl; cut++) {
			if (open_msg(t, r, cut, sealed, ROOM, dst, &n) < 0)
				cuts++;
			else
				fprintf(stderr, "%s: a truncation to %zu of %zu bytes was accepted\n",
				        t->l->desc->name, cut, sl);
		}
		CHECK_EQ_INT(cuts, sl);
		/* None of that consumed anything: the genuine message opens. */
		CHECK_EQ_INT(open_msg(t, r, sl, sealed, ROOM, dst, &n), CHAT_OK);
		CHECK(n == len && !memcmp(dst, text, len));
		free(sealed);
		snprintf(line, sizeof(line), "%zu bit flips and %zu truncations rejected", flips, cuts);
		note(t, line);
	} else {
		/* Fails closed: sample positions, one fresh pair each. */
		size_t positions[] = { 0, 1, 7, 8, 63, 64, 100, 0, 0 };
		size_t np = sizeof(positions) / sizeof(positions[0]);

		positions[np - 2] = sl * 4;
		positions[np - 1] = sl * 8 - 1;
		for (size_t k = 0; k < np; k++) {
			void *i2, *r2;
			int steps;

			if (!pair_new(t, &i2, &r2, &steps))
				break;
			sealed = seal(t, i2, len, text, &sl);
			if (!sealed_fits(t, sl)) {
				free(sealed);
				t->ops->session_free(i2);
				t->ops->session_free(r2);
				break;
			}
			memcpy(forged, sealed, sl);
			forged[(positions[k] % (sl * 8)) / 8] ^= (uint8_t)(1u << (positions[k] % 8));
			if (open_msg(t, r2, sl, forged, ROOM, dst, &n) < 0)
				flips++;
			if (open_msg(t, r2, sl - 1 - k % sl, sealed, ROOM, dst, &n) < 0)
				cuts++;
			free(sealed);
			t->ops->session_free(i2);
			t->ops->session_free(r2);
		}
		CHECK_EQ_INT(flips, np);
		CHECK_EQ_INT(cuts, np);
		snprintf(line, sizeof(line),
		         "fails closed after a forgery; %zu sampled bit flips and %zu truncations "
		         "rejected", flips, cuts);
		note(t, line);
	}
out:
	free(forged);
	free(dst);
}

/* The same sealed message twice: the second is refused, and the session
 * still works afterwards. */
static void check_replay(struct suite *t, void *i, void *r)
{
	uint8_t *sealed, *dst;
	size_t sl, n;
	int rc;

	sealed = seal(t, i, 21, pool + 300, &sl);
	dst = malloc(sl + 64);
	if (!dst)
		abort();
	CHECK_EQ_INT(open_msg(t, r, sl, sealed, sl + 64, dst, &n), CHAT_OK);
	rc = open_msg(t, r, sl, sealed, sl + 64, dst, &n);
	CHECK(rc < 0);
	free(sealed);
	free(dst);
	if (rc < 0) {
		char line[64];

		snprintf(line, sizeof(line), "replay rejected (%s)", chat_strerror(rc));
		note(t, line);
	}
	CHECK(xfer(t, i, r, 12, pool + 400));
}

/* Two messages delivered out of order, then both again: whether a suite
 * takes the later one first (a window) or refuses it until the gap is filled
 * (strict order), each must open exactly once in the four attempts. */
static void check_reorder(struct suite *t, void *i, void *r)
{
	uint8_t *m1, *m2, *dst;
	size_t l1, l2, n, ok1 = 0, ok2 = 0;
	int first;

	m1 = seal(t, i, 31, pool + 500, &l1);
	m2 = seal(t, i, 32, pool + 600, &l2);
	dst = malloc(l1 + l2 + 64);
	if (!dst)
		abort();
	first = open_msg(t, r, l2, m2, l1 + l2 + 64, dst, &n);
	if (first == CHAT_OK) {
		ok2++;
		CHECK(n == 32 && !memcmp(dst, pool + 600, 32));
	}
	if (open_msg(t, r, l1, m1, l1 + l2 + 64, dst, &n) == CHAT_OK) {
		ok1++;
		CHECK(n == 31 && !memcmp(dst, pool + 500, 31));
	}
	if (open_msg(t, r, l2, m2, l1 + l2 + 64, dst, &n) == CHAT_OK) {
		ok2++;
		CHECK(n == 32 && !memcmp(dst, pool + 600, 32));
	}
	if (open_msg(t, r, l1, m1, l1 + l2 + 64, dst, &n) == CHAT_OK)
		ok1++;
	CHECK_EQ_INT(ok1, 1);
	CHECK_EQ_INT(ok2, 1);
	note(t, first == CHAT_OK ? "reordered pair opened once each (window)" :
	     "reordered pair refused until in order, then opened once each (strict order)");
	free(m1);
	free(m2);
	free(dst);
	CHECK(xfer(t, i, r, 13, pool + 700));
}

/* A wrong secret must make the handshake fail on at least one end; a
 * missing one is CHAT_ERR_NOSECRET at session_new or at the first step. */
static void check_secret(struct suite *t)
{
	void *i = NULL, *r = NULL;
	const char *who;
	char line[160];
	int rc, steps;

	rc = new_session(t, CHAT_ROLE_INITIATOR, secret, &i);
	CHECK_EQ_INT(rc, CHAT_OK);
	if (rc == CHAT_OK) {
		rc = new_session(t, CHAT_ROLE_RESPONDER, wrong_secret, &r);
		CHECK_EQ_INT(rc, CHAT_OK);
	}
	if (rc == CHAT_OK) {
		rc = run_handshake(t, i, r, &steps, &who);
		CHECK(rc < 0);
		snprintf(line, sizeof(line), "wrong secret: %s at the %s", chat_strerror(rc), who);
		note(t, line);
	}
	t->ops->session_free(i);
	t->ops->session_free(r);

	/* No secret on the initiator. */
	rc = new_session(t, CHAT_ROLE_INITIATOR, NULL, &i);
	if (rc == CHAT_OK) {
		uint8_t *buf = malloc(HS_CAP);
		struct chat_buf b = { buf, HS_CAP, 0 };

		if (!buf)
			abort();
		rc = t->ops->handshake(i, 0, &b, NULL);
		free(buf);
		note(t, "missing secret: initiator refuses at its first step");
	} else {
		CHECK(i == NULL);
		note(t, "missing secret: initiator refused at session_new");
	}
	CHECK_EQ_INT(rc, CHAT_ERR_NOSECRET);
	t->ops->session_free(i);
	i = NULL;

	/* No secret on the responder: it sees a genuine first message. */
	rc = new_session(t, CHAT_ROLE_RESPONDER, NULL, &r);
	if (rc == CHAT_OK) {
		uint8_t *m1 = malloc(HS_CAP), *m2 = malloc(HS_CAP);
		struct chat_buf b1 = { m1, HS_CAP, 0 }, b2 = { m2, HS_CAP, 0 };

		if (!m1 || !m2)
			abort();
		CHECK_EQ_INT(new_session(t, CHAT_ROLE_INITIATOR, secret, &i), CHAT_OK);
		rc = i ? t->ops->handshake(i, 0, &b1, NULL) : CHAT_ERR_FAILED;
		CHECK(rc >= 0);
		if (rc >= 0)
			rc = t->ops->handshake(r, b1.len, &b2, m1);
		free(m1);
		free(m2);
		note(t, "responder refuses at its first step");
	} else {
		CHECK(r == NULL);
		note(t, "responder refused at session_new");
	}
	CHECK_EQ_INT(rc, CHAT_ERR_NOSECRET);
	t->ops->session_free(i);
	t->ops->session_free(r);
}

/* Two handshakes of the same pair, same params and secret: a message sealed
 * in the first session does not open to its text in the second.
 * (aescbc-hmac salts even its password key with the handshake's challenges;
 * rc4dh draws new exponents.)  Asserted unless the suite is INSECURE. */
static void check_fresh(struct suite *t)
{
	static const uint8_t text[] = "the same words, another session";
	void *i1, *r1, *i2, *r2;
	int steps;
	size_t sl;
	uint8_t *sealed, *out;
	struct chat_buf b;
	int rc, same;

	if (!pair_new(t, &i1, &r1, &steps))
		return;
	if (!pair_new(t, &i2, &r2, &steps)) {
		t->ops->session_free(i1);
		t->ops->session_free(r1);
		return;
	}
	sealed = seal(t, i1, sizeof(text), text, &sl);
	out = malloc(sl + sizeof(text));
	if (!out)
		abort();
	b = (struct chat_buf){ out, sl + sizeof(text), 0 };
	rc = t->ops->open(r2, sl, &b, sealed);
	same = rc == CHAT_OK && b.len == sizeof(text) && memcmp(out, text, sizeof(text)) == 0;
	if (!(t->flags & CHAT_FLAG_INSECURE))
		CHECK(!same);
	note(t, same ? "a second handshake gives the SAME keys" :
	     rc == CHAT_OK ? "a second handshake gives other keys (garbage)" :
	     "a second handshake gives other keys (refused)");
	/* ... while its own session reads it. */
	b = (struct chat_buf){ out, sl + sizeof(text), 0 };
	CHECK_EQ_INT(t->ops->open(r1, sl, &b, sealed), CHAT_OK);
	free(sealed);
	free(out);
	t->ops->session_free(i1);
	t->ops->session_free(r1);
	t->ops->session_free(i2);
	t->ops->session_free(r2);
}

static void check_fingerprints(struct suite *t, void *i, void *r)
{
	char fi[256], fr[256], line[300];

	if (!t->ops->fingerprint) {
		note(t, "no fingerprint");
		return;
	}
	memset(fi, 'x', sizeof(fi));
	memset(fr, 'y', sizeof(fr));
	CHECK_EQ_INT(t->ops->fingerprint(i, sizeof(fi), fi), CHAT_OK);
	CHECK_EQ_INT(t->ops->fingerprint(r, sizeof(fr), fr), CHAT_OK);
	CHECK(memchr(fi, '\0', sizeof(fi)) && memchr(fr, '\0', sizeof(fr)));
	fi[sizeof(fi) - 1] = fr[sizeof(fr) - 1] = '\0';
	CHECK(fi[0] != '\0');
	CHECK(!strcmp(fi, fr));
	snprintf(line, sizeof(line), "fingerprint \"%s\" on both ends", fi);
	note(t, line);
}

/* ---- ABI 1.1: saved sessions and open_at -------------------------------- */

#define SAVE_CAP 65536 /* room for a saved session */
#define DET_T0 1700000000000LL

/* The saved-session checks run on a copy of the plugin's host (same config
 * and log tag) whose RNG and clock the test controls, so an original and its
 * loaded copy can be given the same draws and compared byte for byte. */
static uint64_t det_state;
static int64_t det_now;

static int det_random(const struct chat_host *h, size_t len, uint8_t *dst)
{
	(void)h;
	for (size_t k = 0; k < len; k++) {
		det_state = det_state * 6364136223846793005ull + 1442695040888963407ull;
		dst[k] = (uint8_t)(det_state >> 56);
	}
	return CHAT_OK;
}

static int64_t det_clock(const struct chat_host *h)
{
	(void)h;
	return det_now;
}

static int save(const struct suite *t, void *s, size_t cap, uint8_t *dst, size_t *len)
{
	struct chat_buf b = { dst, cap, 12345 };
	int rc = t->ops->session_save(s, &b);

	if (rc != CHAT_OK)
		CHECK_EQ_INT(b.len, 0);
	*len = b.len;
	return rc;
}

static int load(const struct suite *t, const struct chat_host *h,
                const struct chat_cipher_params *p, size_t len, const uint8_t *src, void **s)
{
	int rc;

	*s = (void *)&det_state; /* must be cleared */
	rc = t->ops->session_load(h, p, len, src, s);
	if (rc != CHAT_OK)
		CHECK(*s == NULL);
	return rc;
}

/* A load that must be refused as CHAT_ERR_MALFORMED. */
static int load_refused(const struct suite *t, const struct chat_host *h,
                        const struct chat_cipher_params *p, size_t len, const uint8_t *src,
                        const char *what)
{
	void *s;
	int rc = load(t, h, p, len, src, &s);

	if (rc == CHAT_OK)
		t->ops->session_free(s);
	if (rc != CHAT_ERR_MALFORMED)
		fprintf(stderr, "%s: loading a saved session %s: %s, expected %s\n",
		        t->l->desc->name, what, chat_strerror(rc), chat_strerror(CHAT_ERR_MALFORMED));
	return rc == CHAT_ERR_MALFORMED;
}

/* The message in flight opens at p, and at its loaded copy p2. */
static void opens_at_both(const struct suite *t, void *p, void *p2, size_t sl, const uint8_t *sealed,
                          size_t len, const uint8_t *text)
{
	uint8_t *dst = malloc(sl + 64);
	size_t n;

	if (!dst)
		abort();
	CHECK_EQ_INT(open_msg(t, p, sl, sealed, sl + 64, dst, &n), CHAT_OK);
	CHECK(n == len && !memcmp(dst, text, len));
	CHECK_EQ_INT(open_msg(t, p2, sl, sealed, sl + 64, dst, &n), CHAT_OK);
	CHECK(n == len && !memcmp(dst, text, len));
	free(dst);
}

/* s and its copy s2 seal the same text with the same draws and clock: the
 * same bytes, which the peer p and its copy p2 both open. */
static void continues_alike(const struct suite *t, void *s, void *s2, void *p, void *p2,
                            size_t len, const uint8_t *text)
{
	uint64_t seed = det_state;
	size_t l1, l2;
	uint8_t *c1 = seal(t, s, len, text, &l1), *c2;

	det_state = seed;
	c2 = seal(t, s2, len, text, &l2);
	CHECK(l1 == l2 && l1 && !memcmp(c1, c2, l1));
	opens_at_both(t, p, p2, l1, c1, len, text);
	free(c1);
	free(c2);
}

/* The refusals, on the initiator's saved blob bi of length n. */
static void check_load_refusals(struct suite *t, const struct chat_host *h,
                                const struct chat_cipher_params *pi,
                                const struct chat_cipher_params *pr, size_t n, const uint8_t *bi)
{
	static const uint8_t other_binding[] = "offer=a,b,c;accept=b,c;choice=c";
	struct chat_cipher_params q;
	uint8_t *tmp = malloc(n + 1);
	size_t head = 4 + 1 + 1 + strlen(t->l->desc->name), cuts = 0, flips = 0, taken = 0;
	char line[160];
	void *x;

	if (!tmp)
		abort();
	q = *pi;
	q.role = CHAT_ROLE_RESPONDER;
	CHECK(load_refused(t, h, &q, n, bi, "with the role swapped"));
	CHECK(load_refused(t, h, pr, n, bi, "with the peer's params"));
	q = *pi;
	q.peer_id = "carol";
	CHECK(load_refused(t, h, &q, n, bi, "with another peer id"));
	q = *pi;
	q.local_id = "mallory";
	CHECK(load_refused(t, h, &q, n, bi, "with another local id"));
	q = *pi;
	q.binding = other_binding;
	q.binding_len = sizeof(other_binding) - 1;
	CHECK(load_refused(t, h, &q, n, bi, "with another binding"));
	q.binding = NULL;
	q.binding_len = 0;
	CHECK(load_refused(t, h, &q, n, bi, "with no binding"));

	/* Every truncation, one byte extra. */
	for (size_t k = 0; k < n; k++) {
		memcpy(tmp, bi, k);
		cuts += load_refused(t, h, pi, k, tmp, "truncated");
	}
	CHECK_EQ_INT(cuts, n);
	memcpy(tmp, bi, n);
	tmp[n] = 0;
	CHECK(load_refused(t, h, pi, n + 1, tmp, "with a byte appended"));

	/* The header (magic, version, the suite's name) is checked byte for byte;
	 * later bytes may be state a loader cannot check, but nothing crashes. */
	for (size_t k = 0; k < n; k++) {
		int rc;

		memcpy(tmp, bi, n);
		tmp[k] ^= 0xff;
		if (k < head) {
			flips += load_refused(t, h, pi, n, tmp, "with a flipped header byte");
			continue;
		}
		rc = load(t, h, pi, n, tmp, &x);
		CHECK(rc == CHAT_OK || rc == CHAT_ERR_MALFORMED);
		if (rc == CHAT_OK) {
			taken++;
			t->ops->session_free(x);
		}
	}
	CHECK_EQ_INT(flips, head < n ? head : n);
	/* None of that disturbed anything: the genuine blob still loads. */
	CHECK_EQ_INT(load(t, h, pi, n, bi, &x), CHAT_OK);
	if (x != (void *)&det_state)
		t->ops->session_free(x);
	snprintf(line, sizeof(line),
	         "saved sessions (%zu bytes) refused under other params, all %zu truncations, "
	         "%zu header flips (%zu of %zu other flips load)", n, cuts, flips, taken, n - head);
	note(t, line);
	free(tmp);
}

static void check_saved(struct suite *t)
{
	const char *pw = t->flags & CHAT_FLAG_NEEDS_SECRET ? secret : NULL;
	struct chat_cipher_params pi = params_for(t, CHAT_ROLE_INITIATOR, pw);
	struct chat_cipher_params pr = params_for(t, CHAT_ROLE_RESPONDER, pw);
	struct chat_host h = t->l->host;
	uint8_t *bi = malloc(SAVE_CAP), *br = malloc(SAVE_CAP), *tmp = malloc(SAVE_CAP);
	uint8_t *p_ir = NULL, *p_ri = NULL;
	void *i = NULL, *r = NULL, *i2 = NULL, *r2 = NULL;
	size_t ni = 0, nr = 0, n, l_ir, l_ri, bytes;
	const char *who;
	int steps;

	if (!bi || !br || !tmp)
		abort();
	if (!CHAT_CIPHER_HAS(t->ops, session_save)) {
		CHECK(!CHAT_CIPHER_HAS(t->ops, session_load));
		note(t, "no saved sessions");
		goto out;
	}
	CHECK(CHAT_CIPHER_HAS(t->ops, session_load));
	h.random = det_random;
	h.unix_ms = det_clock;
	det_state = 0x5eed;
	det_now = DET_T0;
	CHECK_EQ_INT(t->ops->session_new(&h, &pi, &i), CHAT_OK);
	CHECK_EQ_INT(t->ops->session_new(&h, &pr, &r), CHAT_OK);
	if (!i || !r)
		goto out;

	/* Nothing to save before the handshake, and asking does no harm. */
	CHECK_EQ_INT(save(t, i, SAVE_CAP, bi, &n), CHAT_ERR_STATE);
	CHECK_EQ_INT(save(t, r, SAVE_CAP, br, &n), CHAT_ERR_STATE);
	CHECK_EQ_INT(run_handshake(t, i, r, &steps, &who), CHAT_OK);

	/* Mid-conversation, with one message in flight each way. */
	for (size_t k = 0; k < 5; k++) {
		CHECK(xfer(t, i, r, 10 + k, pool + k));
		CHECK(xfer(t, r, i, 20 + k, pool + 100 + k));
	}
	p_ir = seal(t, i, 50, pool + 200, &l_ir);
	p_ri = seal(t, r, 60, pool + 300, &l_ri);
	CHECK_EQ_INT(save(t, i, SAVE_CAP, bi, &ni), CHAT_OK);
	CHECK_EQ_INT(save(t, r, SAVE_CAP, br, &nr), CHAT_OK);
	if (!ni || !nr)
		goto out;
	/* Saving changes nothing: saving again gives the same bytes. */
	CHECK_EQ_INT(save(t, i, SAVE_CAP, tmp, &n), CHAT_OK);
	CHECK(n == ni && !memcmp(tmp, bi, ni));
	/* Too little room, by one byte or entirely: NOSPACE, len 0. */
	CHECK_EQ_INT(save(t, i, ni - 1, tmp, &n), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(save(t, i, 0, tmp, &n), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(save(t, i, SAVE_CAP, tmp, &n), CHAT_OK);
	CHECK(n == ni && !memcmp(tmp, bi, ni));

	CHECK_EQ_INT(load(t, &h, &pi, ni, bi, &i2), CHAT_OK);
	CHECK_EQ_INT(load(t, &h, &pr, nr, br, &r2), CHAT_OK);
	if (i2 == (void *)&det_state || r2 == (void *)&det_state)
		i2 = r2 = NULL;
	if (!i2 || !r2)
		goto out;

	/* What was in flight opens at the originals and at the copies. */
	opens_at_both(t, r, r2, l_ir, p_ir, 50, pool + 200);
	opens_at_both(t, i, i2, l_ri, p_ri, 60, pool + 300);
	/* Original and copy go on identically, both directions. */
	for (size_t k = 0; k < 3; k++) {
		continues_alike(t, i, i2, r, r2, 30 + k * 40, pool + 500 + k);
		continues_alike(t, r, r2, i, i2, 31 + k * 50, pool + 700 + k);
	}
	if (t->ops->fingerprint) {
		char f1[256], f2[256];

		CHECK_EQ_INT(t->ops->fingerprint(i, sizeof(f1), f1), CHAT_OK);
		CHECK_EQ_INT(t->ops->fingerprint(i2, sizeof(f2), f2), CHAT_OK);
		CHECK(!strcmp(f1, f2));
		CHECK_EQ_INT(t->ops->fingerprint(r2, sizeof(f2), f2), CHAT_OK);
		CHECK(!strcmp(f1, f2));
	}
	t->ops->session_free(i);
	t->ops->session_free(r);
	i = r = NULL;
	/* The copies alone carry the conversation on. */
	if (round_trips(t, i2, r2, &bytes))
		note(t, "saved mid-conversation, loaded copies continue identically both ways");

	if (CHAT_CIPHER_HAS(t->ops, open_at)) {
		uint8_t *sealed, dst[128];
		size_t sl;
		struct chat_buf b = { dst, sizeof(dst), 0 };

		/* Stored "now": exactly open. */
		sealed = seal(t, i2, 40, pool + 900, &sl);
		CHECK_EQ_INT(t->ops->open_at(r2, (uint64_t)det_now, sl, &b, sealed), CHAT_OK);
		CHECK(b.len == 40 && !memcmp(dst, pool + 900, 40));
		if (t->flags & CHAT_FLAG_REPLAY)
			CHECK(t->ops->open_at(r2, (uint64_t)det_now, sl, &b, sealed) < 0);
		free(sealed);
		CHECK(xfer(t, r2, i2, 41, pool + 950));
		note(t, "open_at at the current time opens as open does");
	} else {
		note(t, "no open_at (the core calls open)");
	}
	check_load_refusals(t, &h, &pi, &pr, ni, bi);
out:
	free(p_ir);
	free(p_ri);
	if (i)
		t->ops->session_free(i);
	if (r)
		t->ops->session_free(r);
	if (i2)
		t->ops->session_free(i2);
	if (r2)
		t->ops->session_free(r2);
	free(bi);
	free(br);
	free(tmp);
}

/* ---- ABI 1.3: identity keys ---------------------------------------------- */

static int make_ids(struct suite *t)
{
	for (int k = 0; k < ID_COUNT; k++) {
		struct idkey *id = &t->ids[k];
		struct chat_buf priv = { id->priv, ID_CAP, 0 }, pub = { id->pub, ID_CAP, 0 };
		int rc = t->ops->identity_keygen(&t->l->host, &priv, &pub);

		CHECK_EQ_INT(rc, CHAT_OK);
		if (rc != CHAT_OK || !priv.len || !pub.len || priv.len > ID_CAP || pub.len > ID_CAP)
			return 0;
		id->priv_len = priv.len;
		id->pub_len = pub.len;
	}
	/* Three draws, three different keys. */
	CHECK(t->ids[0].pub_len != t->ids[1].pub_len ||
	      memcmp(t->ids[0].pub, t->ids[1].pub, t->ids[0].pub_len));
	CHECK(t->ids[1].pub_len != t->ids[2].pub_len ||
	      memcmp(t->ids[1].pub, t->ids[2].pub, t->ids[1].pub_len));
	return 1;
}

/* s proved the key of id to its peer. */
static void check_peer_identity(const struct suite *t, void *s, const struct idkey *id)
{
	uint8_t *buf = malloc(ID_CAP);
	struct chat_buf b = { buf, ID_CAP, 0 };

	if (!buf)
		abort();
	CHECK_EQ_INT(t->ops->peer_identity(s, &b), CHAT_OK);
	CHECK(b.len == id->pub_len && !memcmp(buf, id->pub, id->pub_len));
	b = (struct chat_buf){ buf, b.len ? b.len - 1 : 0, 7 };
	CHECK_EQ_INT(t->ops->peer_identity(s, &b), CHAT_ERR_NOSPACE);
	CHECK_EQ_INT(b.len, 0);
	free(buf);
}

/* A handshake that must fail with CHAT_ERR_AUTH; returns the failing end. */
static const char *handshake_refused(struct suite *t)
{
	void *i = NULL, *r = NULL;
	const char *who = "session_new";
	int rc, steps;

	rc = new_session(t, CHAT_ROLE_INITIATOR, NULL, &i);
	if (rc == CHAT_OK)
		rc = new_session(t, CHAT_ROLE_RESPONDER, NULL, &r);
	if (rc == CHAT_OK)
		rc = run_handshake(t, i, r, &steps, &who);
	if (rc != CHAT_ERR_AUTH)
		fprintf(stderr, "%s: pin mode %d: %s at the %s, expected %s\n", t->l->desc->name,
		        t->pin, chat_strerror(rc), who, chat_strerror(CHAT_ERR_AUTH));
	CHECK_EQ_INT(rc, CHAT_ERR_AUTH);
	/* The end that refused shows the key its peer presented instead of
	 * the pinned one (peer_identity returns CHAT_ERR_AUTH with it), so
	 * the user sees both fingerprints. */
	if (rc == CHAT_ERR_AUTH && (!strcmp(who, "initiator") || !strcmp(who, "responder"))) {
		int init = !strcmp(who, "initiator");
		const struct idkey *seen = &t->ids[init ? (t->pin == PIN_IMPOSTOR ? ID_CAROL : ID_BOB)
		                                        : ID_ALICE];
		uint8_t *buf = malloc(ID_CAP);
		struct chat_buf b = { buf, ID_CAP, 0 };

		if (!buf)
			abort();
		CHECK_EQ_INT(t->ops->peer_identity(init ? i : r, &b), CHAT_ERR_AUTH);
		CHECK(b.len == seen->pub_len && !memcmp(buf, seen->pub, seen->pub_len));
		free(buf);
	}
	t->ops->session_free(i);
	t->ops->session_free(r);
	return who;
}

static void check_identity(struct suite *t)
{
	static const int modes[] = { PIN_NONE, PIN_RIGHT };
	uint8_t small[1];
	struct chat_buf a = { small, 0, 3 }, b = { small, 0, 3 };
	char line[256];
	void *i, *r;
	int steps;

	/* No room: NOSPACE, both lengths 0. */
	CHECK_EQ_INT(t->ops->identity_keygen(&t->l->host, &a, &b), CHAT_ERR_NOSPACE);
	CHECK(a.len == 0 && b.len == 0);
	/* Nothing to report before the handshake. */
	if (new_session(t, CHAT_ROLE_INITIATOR, NULL, &i) == CHAT_OK) {
		uint8_t buf[64];
		struct chat_buf d = { buf, sizeof(buf), 0 };

		CHECK_EQ_INT(t->ops->peer_identity(i, &d), CHAT_ERR_STATE);
		t->ops->session_free(i);
	} else {
		CHECK(0);
	}
	for (size_t k = 0; k < sizeof(modes) / sizeof(modes[0]); k++) {
		t->pin = modes[k];
		if (!pair_new(t, &i, &r, &steps))
			continue;
		check_peer_identity(t, i, &t->ids[ID_BOB]);
		check_peer_identity(t, r, &t->ids[ID_ALICE]);
		CHECK(xfer(t, i, r, 19, pool + 77));
		CHECK(xfer(t, r, i, 23, pool + 88));
		t->ops->session_free(i);
		t->ops->session_free(r);
	}
	t->pin = PIN_WRONG_AT_I;
	snprintf(line, sizeof(line), "identity keys: first contact and pinned, peer_identity "
	         "right; a wrong pin refused at the %s", handshake_refused(t));
	t->pin = PIN_WRONG_AT_R;
	snprintf(line + strlen(line), sizeof(line) - strlen(line), " / %s",
	         handshake_refused(t));
	t->pin = PIN_IMPOSTOR;
	snprintf(line + strlen(line), sizeof(line) - strlen(line), ", an impostor at the %s",
	         handshake_refused(t));
	t->pin = PIN_RIGHT;
	note(t, line);
}

static void test_suite(struct suite *t)
{
	int before = test_failures, steps = 0;
	void *i, *r;
	size_t bytes = 0;
	char flags[128], line[160];

	chat_plugin_flags_text(t->flags, sizeof(flags), flags);
	if (t->flags & CHAT_FLAG_IDENTITY) {
		CHECK(CHAT_CIPHER_HAS(t->ops, identity_keygen) && CHAT_CIPHER_HAS(t->ops, peer_identity));
		t->ids = calloc(ID_COUNT, sizeof(*t->ids));
		if (!t->ids)
			abort();
		if (!make_ids(t)) {
			printf("suite %-12s [%s]: FAILED: identity_keygen\n", t->l->desc->name, flags);
			free(t->ids);
			return;
		}
		t->pin = PIN_RIGHT; /* every other check runs with the keys pinned */
	} else {
		CHECK(!CHAT_CIPHER_HAS(t->ops, identity_keygen) && !CHAT_CIPHER_HAS(t->ops, peer_identity));
	}
	if (pair_new(t, &i, &r, &steps)) {
		snprintf(line, sizeof(line), "handshake in %d steps", steps);
		note(t, line);
		if (round_trips(t, i, r, &bytes)) {
			snprintf(line, sizeof(line), "%d messages (%zu bytes) both ways", MESSAGES,
			         bytes);
			note(t, line);
		}
		check_nospace(t, i, r);
		note(t, "NOSPACE consumes nothing");
		check_fingerprints(t, i, r);
		if (t->flags & CHAT_FLAG_INTEGRITY)
			check_integrity(t, i, r);
		if (t->flags & CHAT_FLAG_REPLAY) {
			check_replay(t, i, r);
			check_reorder(t, i, r);
		}
		t->ops->session_free(i);
		t->ops->session_free(r);
	}
	check_fresh(t);
	if (t->flags & CHAT_FLAG_NEEDS_SECRET)
		check_secret(t);
	check_saved(t);
	if (t->flags & CHAT_FLAG_IDENTITY)
		check_identity(t);
	if (t->ids) {
		memset(t->ids, 0, ID_COUNT * sizeof(*t->ids));
		free(t->ids);
		t->ids = NULL;
	}
	printf("suite %-12s [%s]: %s: %s\n", t->l->desc->name, flags,
	       test_failures == before ? "ok" : "FAILED", t->notes);
}

static void on_scan_error(void *arg, const char *path, int err, const char *msg)
{
	int *failures = arg;

	(*failures)++;
	fprintf(stderr, "cannot load %s (%s): %s\n", path, chat_strerror(err), msg);
}

int main(void)
{
	struct chat_registry *reg = NULL;
	size_t ciphers = 0, tested = 0;
	int failures = 0, rc;

	if (!getenv("TEST_VERBOSE"))
		chat_log_set_level(CHAT_LOG_ERROR); /* the insecure suites' warnings are expected */
	for (size_t k = 0; k < sizeof(pool); k++)
		pool[k] = (uint8_t)(test_rand() >> 56);

	CHECK_EQ_INT(chat_registry_new(NULL, &reg), CHAT_OK);
	rc = chat_registry_scan(reg, CHAT_TEST_PLUGIN_DIR, on_scan_error, &failures);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(failures, 0);

	for (size_t k = 0; k < chat_registry_count(reg); k++) {
		const struct chat_loaded *l = chat_registry_get(reg, k);
		struct suite t = { .l = l };

		if (l->desc->kind != CHAT_PLUGIN_CIPHER)
			continue;
		ciphers++;
		t.ops = l->desc->ops.cipher;
		t.flags = l->desc->flags;
		test_suite(&t);
		tested++;
	}
	printf("%zu cipher suite(s) loaded from %s, %zu tested\n", ciphers, CHAT_TEST_PLUGIN_DIR,
	       tested);
	CHECK_EQ_INT(tested, ciphers);
	CHECK(tested >= 2);
	chat_registry_free(reg);
	return test_done("test_suites");
}
