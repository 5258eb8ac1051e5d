/* The host-services table the core lends each plugin (see <chat/host.h>). */
#ifndef CHAT_HOST_IMPL_H
#define CHAT_HOST_IMPL_H

#include <chat/plugin.h>

struct chat_config;

/* What host->ctx points to for a loaded plugin. */
struct chat_host_ctx {
	const char *plugin_name;              /* log tag and config section */
	const struct chat_config *cfg;        /* may be NULL: defaults only */
	const struct chat_config_key *keys;   /* the plugin's declared keys */
	const char *const *state_dir;         /* the registry's (may point to NULL) */
};

/* Fill h with the core's implementations; ctx may be NULL (no config, tag "plugin"). */
void chat_host_init(struct chat_host *h, struct chat_host_ctx *ctx);

/* The default services, for callers that build their own table (tests). */
int chat_host_os_random(const struct chat_host *h, size_t len, uint8_t *dst);
/* The core's own: random bytes from the OS (CHAT_OK or CHAT_ERR_RANDOM), and
 * the wall clock in Unix milliseconds. */
int chat_os_random(size_t len, uint8_t *dst);
int64_t chat_unix_ms(void);
int chat_memeq(const void *a, const void *b, size_t n);
void chat_wipe(void *p, size_t n);

#endif
