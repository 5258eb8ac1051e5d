/* Helpers shared by the harnesses (fuzz.h). */
#include "fuzz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chat/plugin.h>

#include "config.h"
#include "host.h"
#include "log.h"

/* The suites' entry points, renamed at compile time (tests/fuzz/CMakeLists.txt). */
const struct chat_plugin *chat_builtin_cipher_xor_demo(void);
const struct chat_plugin *chat_builtin_cipher_rc4dh(void);
const struct chat_plugin *chat_builtin_cipher_aescbc_hmac(void);
const struct chat_plugin *chat_builtin_cipher_noise_xx(void);
const struct chat_plugin *chat_builtin_cipher_rsa(void);

/* CHAT_FUZZ_WRITE_SEEDS=DIR: write the harness's seeds into DIR and exit
 * (tests/fuzz/run --seeds), in the libFuzzer build as in the replay one. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("CHAT_FUZZ_WRITE_SEEDS");

	(void)argc;
	(void)argv;
	if (dir && dir[0]) {
		fuzz_seeds(dir);
		exit(0);
	}
	return 0;
}

void fuzz_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "%s:%d: invariant failed: %s\n", file, line, what);
	abort();
}

static void discard(void *arg, int level, const char *line)
{
	(void)arg;
	(void)level;
	(void)line;
}

void fuzz_init(void)
{
	static int done;
	const char *lvl = getenv("CHAT_FUZZ_LOG");

	if (done)
		return;
	done = 1;
	chat_log_set_program("fuzz");
	/* The engines log every bad request: quiet unless asked. */
	if (lvl) {
		chat_log_set_level(chat_log_parse_level(lvl));
	} else {
		chat_log_set_level(CHAT_LOG_ERROR);
		chat_log_set_sink(discard, NULL);
	}
}

/* ---- reading inputs */

unsigned fin_u8(struct fuzz_in *in)
{
	if (!in->left)
		return 0;
	in->left--;
	return *in->p++;
}

unsigned fin_u16(struct fuzz_in *in)
{
	unsigned hi = fin_u8(in);
	return hi << 8 | fin_u8(in);
}

uint32_t fin_u32(struct fuzz_in *in)
{
	uint32_t hi = fin_u16(in);
	return hi << 16 | fin_u16(in);
}

uint64_t fin_u64(struct fuzz_in *in)
{
	uint64_t hi = fin_u32(in);
	return hi << 32 | fin_u32(in);
}

const uint8_t *fin_bytes(struct fuzz_in *in, size_t n, size_t *len)
{
	const uint8_t *p = in->p;

	if (n > in->left)
		n = in->left;
	in->p += n;
	in->left -= n;
	*len = n;
	return p;
}

const uint8_t *fin_blob(struct fuzz_in *in, size_t *len)
{
	return fin_bytes(in, fin_u16(in), len);
}

void fin_str(struct fuzz_in *in, size_t cap, char *dst)
{
	size_t n;
	const uint8_t *p = fin_bytes(in, fin_u8(in), &n);

	if (n >= cap)
		n = cap - 1;
	memcpy(dst, p, n);
	dst[n] = '\0';
}

/* ---- building */

void fb_put(struct fuzz_buf *b, size_t len, const void *src)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + len)
			cap *= 2;
		uint8_t *d = realloc(b->data, cap);
		if (!d)
			abort();
		b->data = d;
		b->cap = cap;
	}
	if (len)
		memcpy(b->data + b->len, src, len);
	b->len += len;
}

void fb_u8(struct fuzz_buf *b, unsigned v)
{
	uint8_t x = (uint8_t)v;
	fb_put(b, 1, &x);
}

void fb_u16(struct fuzz_buf *b, unsigned v)
{
	fb_u8(b, v >> 8);
	fb_u8(b, v);
}

void fb_u32(struct fuzz_buf *b, uint32_t v)
{
	fb_u16(b, v >> 16);
	fb_u16(b, v & 0xffff);
}

void fb_u64(struct fuzz_buf *b, uint64_t v)
{
	fb_u32(b, (uint32_t)(v >> 32));
	fb_u32(b, (uint32_t)v);
}

void fb_blob(struct fuzz_buf *b, size_t len, const void *src)
{
	if (len > 0xffff)
		len = 0xffff;
	fb_u16(b, (unsigned)len);
	fb_put(b, len, src);
}

void fb_str(struct fuzz_buf *b, const char *s)
{
	size_t n = strlen(s);
	if (n > 255)
		n = 255;
	fb_u8(b, (unsigned)n);
	fb_put(b, n, s);
}

void fb_free(struct fuzz_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* ---- files */

static char tmpdir[256];

static void remove_tmpdir(void)
{
	char cmd[300];

	if (!tmpdir[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz: cannot remove %s\n", tmpdir);
}

const char *fuzz_tmpdir(void)
{
	if (tmpdir[0])
		return tmpdir;
	struct stat st;
	const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
	                   ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(tmpdir, sizeof(tmpdir), "%s/chat-fuzz-XXXXXX", base);
	if (!mkdtemp(tmpdir)) {
		fprintf(stderr, "fuzz: mkdtemp %s: %s\n", tmpdir, strerror(errno));
		abort();
	}
	atexit(remove_tmpdir);
	return tmpdir;
}

const char *fuzz_file(const char *name, size_t len, const void *data)
{
	static char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", fuzz_tmpdir(), name);
	f = fopen(path, "wb");
	if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
		fprintf(stderr, "fuzz: cannot write %s\n", path);
		abort();
	}
	return path;
}

void fuzz_write_seed(const char *dir, const char *name, size_t len, const void *data)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
		fprintf(stderr, "fuzz: cannot write %s\n", path);
		exit(1);
	}
}

/* ---- suites */

const struct chat_plugin *fuzz_suite(const char *name)
{
	const struct chat_plugin *all[] = {
		chat_builtin_cipher_xor_demo(),
		chat_builtin_cipher_rc4dh(),
		chat_builtin_cipher_aescbc_hmac(),
		chat_builtin_cipher_noise_xx(),
		chat_builtin_cipher_rsa(),
	};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (strcmp(all[i]->name, name) == 0)
			return all[i];
	fprintf(stderr, "fuzz: no builtin suite %s\n", name);
	abort();
}

struct chat_registry *fuzz_registry(void)
{
	static struct chat_registry *reg;
	static struct chat_config *cfg;
	char err[512];

	if (reg)
		return reg;
	if (chat_config_load(NULL, &cfg, sizeof(err), err) != CHAT_OK ||
	    chat_config_set(cfg, "plugin.aescbc-hmac.iterations=1000", sizeof(err), err) != CHAT_OK ||
	    chat_registry_new(cfg, &reg) != CHAT_OK) {
		fprintf(stderr, "fuzz: registry: %s\n", err);
		abort();
	}
	const char *names[] = { "xor-demo", "rc4dh", "aescbc-hmac" };
	for (size_t i = 0; i < 3; i++) {
		if (chat_registry_add_builtin(reg, fuzz_suite(names[i]), NULL, sizeof(err), err) != CHAT_OK) {
			fprintf(stderr, "fuzz: %s\n", err);
			abort();
		}
	}
	return reg;
}

/* ---- a deterministic host */

static int fh_random(const struct chat_host *h, size_t len, uint8_t *dst)
{
	struct fuzz_host *f = (struct fuzz_host *)h;

	for (size_t i = 0; i < len; i++) {
		f->rng = f->rng * 6364136223846793005ull + 1442695040888963407ull;
		dst[i] = (uint8_t)(f->rng >> 56);
	}
	return CHAT_OK;
}

static uint64_t fh_monotonic(const struct chat_host *h)
{
	return (uint64_t)((const struct fuzz_host *)h)->now_ms;
}

static int64_t fh_unix(const struct chat_host *h)
{
	return ((const struct fuzz_host *)h)->now_ms;
}

static void fh_log(const struct chat_host *h, int level, const char *fmt, ...)
{
	(void)h;
	(void)level;
	(void)fmt;
}

static const char *fh_config(const struct chat_host *h, const char *key)
{
	const struct fuzz_host *f = (const struct fuzz_host *)h;

	if (!strcmp(f->plugin->name, "aescbc-hmac") && !strcmp(key, "iterations"))
		return "1000";
	if (!strcmp(f->plugin->name, "noise-xx") && !strcmp(key, "rekey_every"))
		return "64"; /* the minimum: rekeys within reach of an input */
	for (const struct chat_config_key *k = f->plugin->config_keys; k && k->name; k++)
		if (!strcmp(k->name, key))
			return k->def;
	return NULL;
}

void fuzz_host_init(struct fuzz_host *h, const struct chat_plugin *plugin, uint64_t seed)
{
	memset(h, 0, sizeof(*h));
	chat_host_init(&h->host, NULL);
	h->host.random = fh_random;
	h->host.monotonic_ms = fh_monotonic;
	h->host.unix_ms = fh_unix;
	h->host.log = fh_log;
	h->host.config_get = fh_config;
	h->rng = seed;
	h->now_ms = 1700000000000;
	h->plugin = plugin;
}

/* ---- identity keys */

const struct fuzz_identity *fuzz_identity(const struct chat_plugin *p, const char *user)
{
	static struct {
		const struct chat_plugin *p;
		char user[64];
		struct fuzz_identity id;
	} cache[8];
	static size_t used;
	struct fuzz_host h;
	uint64_t seed = 1469598103934665603ull;

	for (size_t i = 0; i < used; i++)
		if (cache[i].p == p && !strcmp(cache[i].user, user))
			return &cache[i].id;
	if (used == sizeof(cache) / sizeof(cache[0]) || strlen(user) >= sizeof(cache[0].user) ||
	    !(p->flags & CHAT_FLAG_IDENTITY) || !CHAT_CIPHER_HAS(p->ops.cipher, identity_keygen))
		abort();
	for (const char *c = user; *c; c++)
		seed = (seed ^ (uint8_t)*c) * 1099511628211ull;
	fuzz_host_init(&h, p, seed);
	struct fuzz_identity *id = &cache[used].id;
	struct chat_buf a = { id->priv, sizeof(id->priv), 0 }, b = { id->pub, sizeof(id->pub), 0 };
	if (p->ops.cipher->identity_keygen(&h.host, &a, &b) != CHAT_OK)
		abort();
	id->priv_len = a.len;
	id->pub_len = b.len;
	cache[used].p = p;
	strcpy(cache[used].user, user);
	used++;
	return id;
}

void fuzz_identity_params(const struct chat_plugin *p, struct chat_cipher_params *params, int pin)
{
	if (!(p->flags & CHAT_FLAG_IDENTITY))
		return;
	const struct fuzz_identity *me = fuzz_identity(p, params->local_id);
	const struct fuzz_identity *peer = fuzz_identity(p, params->peer_id);
	params->identity_private = me->priv;
	params->identity_private_len = me->priv_len;
	params->identity_public = me->pub;
	params->identity_public_len = me->pub_len;
	params->peer_identity = pin ? peer->pub : NULL;
	params->peer_identity_len = pin ? peer->pub_len : 0;
}

/* ---- two sessions talking */

int fuzz_pair(const struct chat_plugin *p, const struct chat_host *hi, const struct chat_host *hr,
              const char *ini, const char *res, const char *secret, size_t bind_len,
              const char *bind, void **si, void **sr, struct fuzz_buf *transcript)
{
	struct chat_cipher_params pi = {
		.size = sizeof(pi), .role = CHAT_ROLE_INITIATOR, .local_id = ini, .peer_id = res,
		.suite = p->name, .secret = (const uint8_t *)secret, .secret_len = secret ? strlen(secret) : 0,
		.binding = (const uint8_t *)bind, .binding_len = bind_len,
	};
	struct chat_cipher_params pr = pi;

	pr.role = CHAT_ROLE_RESPONDER;
	pr.local_id = res;
	pr.peer_id = ini;
	fuzz_identity_params(p, &pi, 1);
	fuzz_identity_params(p, &pr, 1);
	return fuzz_pair_params(p, hi, hr, &pi, &pr, si, sr, transcript);
}

int fuzz_pair_params(const struct chat_plugin *p, const struct chat_host *hi,
                     const struct chat_host *hr, const struct chat_cipher_params *pi,
                     const struct chat_cipher_params *pr, void **si, void **sr,
                     struct fuzz_buf *transcript)
{
	const struct chat_cipher_ops *ops = p->ops.cipher;
	static uint8_t a[65536], b[65536];
	size_t alen = 0;
	int rc, done_i = 0, done_r = 0;

	*si = *sr = NULL;
	if ((rc = ops->session_new(hi, pi, si)) || (rc = ops->session_new(hr, pr, sr)))
		goto fail;
	for (int turn = 0; turn < 16 && !(done_i && done_r); turn++) {
		void *s = turn % 2 ? *sr : *si;
		struct chat_buf dst = { .data = b, .cap = sizeof(b) };
		if (turn > 0 && alen == 0)
			break; /* nothing to answer */
		rc = ops->handshake(s, alen, &dst, a);
		if (rc < 0)
			goto fail;
		if (turn % 2)
			done_r |= rc == CHAT_HS_ESTABLISHED;
		else
			done_i |= rc == CHAT_HS_ESTABLISHED;
		if (transcript)
			fb_blob(transcript, dst.len, dst.data);
		memcpy(a, b, dst.len);
		alen = dst.len;
	}
	if (!done_i || !done_r) {
		rc = CHAT_ERR_STATE;
		goto fail;
	}
	return CHAT_OK;
fail:
	ops->session_free(*si);
	ops->session_free(*sr);
	*si = *sr = NULL;
	return rc;
}
