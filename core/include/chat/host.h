/* Services the core lends to plugins.  Plugins never read files, the
 * environment or the clock on their own: they go through this table, so a test
 * can inject a fixed RNG and a fake clock and replay a handshake exactly. */
#ifndef CHAT_HOST_H
#define CHAT_HOST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CHAT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CHAT_PRINTF(f, a)
#endif

enum chat_log_level {
	CHAT_LOG_ERROR = 0,
	CHAT_LOG_WARN = 1,
	CHAT_LOG_INFO = 2,
	CHAT_LOG_DEBUG = 3,
};

struct chat_host {
	/* sizeof(struct chat_host) as the core was built: grows only at the end. */
	uint32_t size;
	uint16_t abi_major;
	uint16_t abi_minor;
	/* Opaque to plugins; identifies the plugin to the core (log tag, config section). */
	void *ctx;

	/* Fill dst with len bytes of cryptographic randomness.  0 or CHAT_ERR_RANDOM. */
	int (*random)(const struct chat_host *h, size_t len, uint8_t *dst);
	/* Monotonic milliseconds, for timeouts. */
	uint64_t (*monotonic_ms)(const struct chat_host *h);
	/* Wall clock, milliseconds since the Unix epoch, for protocol timestamps. */
	int64_t (*unix_ms)(const struct chat_host *h);
	/* Leveled log line, tagged by the core with the plugin's name.
	 * Never pass plaintext or key material. */
	void (*log)(const struct chat_host *h, int level, const char *fmt, ...) CHAT_PRINTF(3, 4);
	/* A key of the plugin's own chat.ini section [plugin.NAME], already
	 * validated against the plugin's declared keys; the declared default if
	 * unset; NULL only for a key the plugin never declared. */
	const char *(*config_get)(const struct chat_host *h, const char *key);
	/* Constant-time comparison: 1 if the n bytes are equal, else 0. */
	int (*memeq)(const void *a, const void *b, size_t n);
	/* Wipe memory in a way the compiler cannot elide. */
	void (*wipe)(void *p, size_t n);

	/* ABI 1.2 (check size covers it before use).  The running program's
	 * own state directory, where a plugin may keep files of its own (a
	 * relay's TLS key, a client's known relays): the directory of
	 * relay.database for chat-relay, client.data_dir for chat-client,
	 * peer.data_dir for chat-peer.  NULL when the program has none (then
	 * a plugin needing one fails with a message naming the key to set).
	 * The directory may not exist yet; a plugin creates it 0700. */
	const char *(*state_dir)(const struct chat_host *h);
};

#ifdef __cplusplus
}
#endif
#endif
