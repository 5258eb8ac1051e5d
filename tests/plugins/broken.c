/* One source, many deliberately broken plugins: each target defines one
 * BROKEN_* macro (tests/plugins/CMakeLists.txt).  A "good" build of it is a
 * complete, valid transport or cipher whose ops do nothing useful, used to
 * test wrong-kind and duplicate-name handling. */
#include <chat/plugin.h>

#ifdef WITH_MARKER
#include <stdio.h>
#include <stdlib.h>

/* A constructor runs inside dlopen, before the loader sees the descriptor:
 * it writes the file named by CHAT_TEST_MARKER, so a test can tell whether
 * this plugin's code ran at all (the loader's file checks must come first). */
__attribute__((constructor)) static void mark_loaded(void)
{
	const char *path = getenv("CHAT_TEST_MARKER");
	FILE *f = path && *path ? fopen(path, "a") : NULL;

	if (f) {
		fputs("the marker plugin's constructor ran\n", f);
		fclose(f);
	}
}
#endif

static int t_listen(const struct chat_host *h, const char *a, void **l) { (void)h; (void)a; *l = 0; return CHAT_ERR_UNSUPPORTED; }
static int t_accept(void *l, void **c) { (void)l; *c = 0; return CHAT_ERR_UNSUPPORTED; }
static int t_connect(const struct chat_host *h, const char *a, void **c) { (void)h; (void)a; *c = 0; return CHAT_ERR_UNSUPPORTED; }
static int t_finish(void *c) { (void)c; return CHAT_ERR_UNSUPPORTED; }
__attribute__((unused)) static int t_read(void *c, size_t n, uint8_t *d, size_t *g) { (void)c; (void)n; (void)d; *g = 0; return CHAT_ERR_UNSUPPORTED; }
static int t_write(void *c, size_t n, const uint8_t *s, size_t *w) { (void)c; (void)n; (void)s; *w = 0; return CHAT_ERR_UNSUPPORTED; }
static int t_fd(void *c) { (void)c; return -1; }
static int t_address(void *c, int l, size_t n, char *d) { (void)c; (void)l; (void)n; (void)d; return CHAT_ERR_UNSUPPORTED; }
static void t_close(void *c) { (void)c; }

static const struct chat_transport_ops transport_ops __attribute__((unused)) = {
#ifdef BROKEN_OPS_SIZE
	.size = 4,
#else
	.size = sizeof(struct chat_transport_ops),
#endif
	.listen = t_listen,
	.accept = t_accept,
	.connect = t_connect,
	.connect_finish = t_finish,
#ifndef BROKEN_MISSING_OP
	.read = t_read,
#endif
	.write = t_write,
	.fd = t_fd,
	.address = t_address,
	.close = t_close,
	.listener_close = t_close,
};

static int c_new(const struct chat_host *h, const struct chat_cipher_params *p, void **s) { (void)h; (void)p; *s = 0; return CHAT_ERR_UNSUPPORTED; }
static int c_hs(void *s, size_t n, struct chat_buf *d, const uint8_t *src) { (void)s; (void)n; (void)d; (void)src; return CHAT_ERR_UNSUPPORTED; }
static size_t c_size(void *s, size_t n) { (void)s; return n; }
static int c_seal(void *s, size_t n, struct chat_buf *d, const uint8_t *src) { (void)s; (void)n; (void)d; (void)src; return CHAT_ERR_UNSUPPORTED; }
static void c_free(void *s) { (void)s; }

#ifdef BROKEN_HALF_SESSION
static int c_save(void *s, struct chat_buf *d) { (void)s; d->len = 0; return CHAT_ERR_UNSUPPORTED; }
#endif

static const struct chat_cipher_ops cipher_ops __attribute__((unused)) = {
	.size = sizeof(struct chat_cipher_ops),
	.session_new = c_new,
	.handshake = c_hs,
	.sealed_size = c_size,
	.seal = c_seal,
	.open = c_seal,
	.session_free = c_free,
#ifdef BROKEN_HALF_SESSION
	.session_save = c_save, /* and no session_load */
#endif
};

#ifdef ABI_1_0
/* A cipher plugin as built against the ABI 1.0 headers: its table ends at
 * session_free.  Non-NULL words follow it in memory, so anything that read
 * the 1.1 ops of this table without looking at `size` would find "ops". */
struct cipher_ops_1_0 {
	uint32_t size;
	int (*session_new)(const struct chat_host *, const struct chat_cipher_params *, void **);
	int (*handshake)(void *, size_t, struct chat_buf *, const uint8_t *);
	size_t (*sealed_size)(void *, size_t);
	int (*seal)(void *, size_t, struct chat_buf *, const uint8_t *);
	int (*open)(void *, size_t, struct chat_buf *, const uint8_t *);
	int (*fingerprint)(void *, size_t, char *);
	void (*session_free)(void *);
};

static const struct {
	struct cipher_ops_1_0 ops;
	const void *after[3];
} old_cipher = {
	.ops = {
		.size = sizeof(struct cipher_ops_1_0),
		.session_new = c_new,
		.handshake = c_hs,
		.sealed_size = c_size,
		.seal = c_seal,
		.open = c_seal,
		.session_free = c_free,
	},
	.after = { &old_cipher, &old_cipher, &old_cipher },
};
#endif

#ifdef BROKEN_CONFIG_KEYS
static const struct chat_config_key keys[] = {
	{ .name = "weird", .type = 99, .def = "1", .help = "a key of an unknown type" },
	{ .name = NULL },
};
#endif
#ifdef WITH_CONFIG_KEYS
static const struct chat_config_key keys[] = {
	{ .name = "level", .type = CHAT_CONFIG_INT, .def = "3", .min = 1, .max = 9, .help = "a number" },
	{ .name = "fast", .type = CHAT_CONFIG_BOOL, .def = "no", .help = "a switch" },
	{ .name = NULL },
};
#endif

#ifndef PLUGIN_NAME
#define PLUGIN_NAME "broken"
#endif

static const struct chat_plugin desc __attribute__((unused)) = {
#if defined(BROKEN_ABI_MAJOR)
	.abi_major = CHAT_ABI_MAJOR + 1, .abi_minor = 0, .size = sizeof(struct chat_plugin),
#elif defined(BROKEN_ABI_MINOR)
	.abi_major = CHAT_ABI_MAJOR, .abi_minor = CHAT_ABI_MINOR + 1, .size = sizeof(struct chat_plugin),
#elif defined(BROKEN_SIZE)
	.abi_major = CHAT_ABI_MAJOR, .abi_minor = CHAT_ABI_MINOR, .size = 8,
#elif defined(ABI_1_0)
	.abi_major = 1, .abi_minor = 0, .size = sizeof(struct chat_plugin),
#else
	CHAT_PLUGIN_HEADER,
#endif
#ifdef ABI_1_0
	.kind = CHAT_PLUGIN_CIPHER,
	.ops.cipher = (const struct chat_cipher_ops *)(const void *)&old_cipher.ops,
#elif defined(AS_CIPHER)
	.kind = CHAT_PLUGIN_CIPHER,
	.ops.cipher = &cipher_ops,
#elif defined(BROKEN_KIND)
	.kind = 7,
	.ops.transport = &transport_ops,
#elif defined(BROKEN_NO_OPS)
	.kind = CHAT_PLUGIN_TRANSPORT,
#else
	.kind = CHAT_PLUGIN_TRANSPORT,
	.ops.transport = &transport_ops,
#endif
#ifdef BROKEN_NO_NAME
	.name = "",
#else
	.name = PLUGIN_NAME,
#endif
	.version = "0.0.1",
#ifndef BROKEN_NO_SUMMARY
	.summary = "deliberately broken plugin for the loader tests",
#endif
#if defined(BROKEN_CONFIG_KEYS) || defined(WITH_CONFIG_KEYS)
	.config_keys = keys,
#endif
};

#ifdef BROKEN_UNDEFINED
/* Never defined anywhere: dlopen(RTLD_NOW) must fail. */
extern int chat_no_such_function_anywhere(void);
int chat_force_undefined(void);
CHAT_PLUGIN_EXPORT int chat_force_undefined(void) { return chat_no_such_function_anywhere(); }
#endif

#ifdef BROKEN_NO_SYMBOL
const struct chat_plugin *chat_plugin_entry_misspelled(void);
CHAT_PLUGIN_EXPORT const struct chat_plugin *chat_plugin_entry_misspelled(void)
#else
CHAT_PLUGIN_EXPORT const struct chat_plugin *chat_plugin_entry(void)
#endif
{
#ifdef BROKEN_NULL
	return 0;
#else
	return &desc;
#endif
}
