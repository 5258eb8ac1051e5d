/* The plugin ABI.  A plugin is one shared object exporting one function,
 * chat_plugin_entry(), that returns a const descriptor.  Include only this
 * header (it pulls in the others) and build with -fvisibility=hidden.
 *
 * Versioning (docs/PLUGIN-ABI.md): CHAT_ABI_MAJOR changes when anything a
 * plugin relies on changes incompatibly — a field moves, a signature or a
 * meaning changes.  CHAT_ABI_MINOR changes when something is appended at the
 * end of a struct or a new optional op appears.  The core loads a plugin
 * whose major equals its own and whose minor is not newer than its own; the
 * size fields say how much of each struct an older plugin filled in. */
#ifndef CHAT_PLUGIN_H
#define CHAT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <chat/cipher.h>
#include <chat/error.h>
#include <chat/host.h>
#include <chat/transport.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CHAT_ABI_MAJOR 1
#define CHAT_ABI_MINOR 3 /* 1.1: session_save, session_load, open_at in chat_cipher_ops;
                          * 1.2: host->state_dir; optional transport ops interest, pending,
                          *      channel_binding, last_error, describe, local_fingerprint;
                          * 1.3: identity keys: params identity_*, peer_identity; cipher ops
                          *      identity_keygen, peer_identity; CHAT_FLAG_IDENTITY */

#define CHAT_PLUGIN_ENTRY_SYMBOL "chat_plugin_entry"

enum chat_plugin_kind {
	CHAT_PLUGIN_CIPHER = 1,
	CHAT_PLUGIN_TRANSPORT = 2,
};

/* Flags: what the suite or transport does and does not protect.  The core and
 * the frontends show them; relay policy can refuse insecure suites. */
#define CHAT_FLAG_INSECURE (1u << 0)      /* for demonstration only; warn loudly */
#define CHAT_FLAG_AUTHENTICATED (1u << 1) /* authenticates the peer */
#define CHAT_FLAG_NEEDS_SECRET (1u << 2)  /* needs a shared secret (password) */
#define CHAT_FLAG_INTEGRITY (1u << 3)     /* detects modified messages */
#define CHAT_FLAG_REPLAY (1u << 4)        /* detects replayed messages */
#define CHAT_FLAG_ENCRYPTED (1u << 5)     /* transport encrypts the stream */
#define CHAT_FLAG_IDENTITY (1u << 6)      /* authenticates with long-term identity keys (ABI 1.3) */

enum chat_config_type {
	CHAT_CONFIG_STRING = 1,
	CHAT_CONFIG_INT = 2,  /* decimal integer within [min, max] */
	CHAT_CONFIG_BOOL = 3, /* true/false, yes/no, on/off, 1/0 */
};

/* One key a plugin accepts in its [plugin.NAME] section.  The core validates
 * the section against this list (unknown keys, bad numbers: errors with
 * file:line) before the plugin runs. */
struct chat_config_key {
	const char *name;
	int type; /* enum chat_config_type */
	const char *def; /* default as text; NULL means the key is required */
	long long min, max; /* for CHAT_CONFIG_INT */
	const char *help;
};

struct chat_plugin {
	uint16_t abi_major;  /* CHAT_ABI_MAJOR the plugin was built against */
	uint16_t abi_minor;  /* CHAT_ABI_MINOR the plugin was built against */
	uint32_t size;       /* sizeof(struct chat_plugin) as the plugin was built */
	uint32_t kind;       /* enum chat_plugin_kind */
	uint32_t flags;      /* CHAT_FLAG_* */
	const char *name;    /* [a-z0-9-]{1,32}: what chat.ini names */
	const char *version; /* the plugin's own version, e.g. "1.0.0" */
	const char *summary; /* one line for --list-plugins */
	/* Keys of [plugin.NAME], terminated by an entry with name == NULL;
	 * NULL if the plugin takes no configuration. */
	const struct chat_config_key *config_keys;
	union {
		const struct chat_cipher_ops *cipher;
		const struct chat_transport_ops *transport;
	} ops;
};

#if defined(__GNUC__)
#define CHAT_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define CHAT_PLUGIN_EXPORT
#endif

/* Every plugin defines exactly this one exported function. */
typedef const struct chat_plugin *(*chat_plugin_entry_fn)(void);
CHAT_PLUGIN_EXPORT const struct chat_plugin *chat_plugin_entry(void);

/* Convenience for plugins: set the ABI fields of a descriptor. */
#define CHAT_PLUGIN_HEADER \
	.abi_major = CHAT_ABI_MAJOR, .abi_minor = CHAT_ABI_MINOR, \
	.size = sizeof(struct chat_plugin)

#ifdef __cplusplus
}
#endif
#endif
