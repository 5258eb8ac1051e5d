#include "host.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "config.h"
#include "log.h"

int chat_host_os_random(const struct chat_host *h, size_t len, uint8_t *dst)
{
	(void)h;
	return chat_os_random(len, dst);
}

int chat_os_random(size_t len, uint8_t *dst)
{
	while (len > 0) {
		ssize_t n = getrandom(dst, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			chat_err("getrandom failed: %s", strerror(errno));
			return CHAT_ERR_RANDOM;
		}
		dst += n;
		len -= (size_t)n;
	}
	return CHAT_OK;
}

static uint64_t host_monotonic_ms(const struct chat_host *h)
{
	struct timespec ts;

	(void)h;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t chat_unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t host_unix_ms(const struct chat_host *h)
{
	(void)h;
	return chat_unix_ms();
}

static void host_log(const struct chat_host *h, int level, const char *fmt, ...)
{
	const struct chat_host_ctx *ctx = h ? h->ctx : NULL;
	va_list ap;

	va_start(ap, fmt);
	chat_logv_tag(level, ctx ? ctx->plugin_name : "plugin", fmt, ap);
	va_end(ap);
}

static const char *host_config_get(const struct chat_host *h, const char *key)
{
	const struct chat_host_ctx *ctx = h ? h->ctx : NULL;

	if (!ctx || !key)
		return NULL;
	if (ctx->cfg)
		return chat_config_plugin_get(ctx->cfg, ctx->plugin_name, ctx->keys, key);
	for (const struct chat_config_key *k = ctx->keys; k && k->name; k++)
		if (strcmp(k->name, key) == 0)
			return k->def;
	return NULL;
}

static const char *host_state_dir(const struct chat_host *h)
{
	const struct chat_host_ctx *ctx = h ? h->ctx : NULL;

	return ctx && ctx->state_dir ? *ctx->state_dir : NULL;
}

int chat_memeq(const void *a, const void *b, size_t n)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t diff = 0;

	for (size_t i = 0; i < n; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

void chat_wipe(void *p, size_t n)
{
	if (p && n)
		explicit_bzero(p, n);
}

void chat_host_init(struct chat_host *h, struct chat_host_ctx *ctx)
{
	memset(h, 0, sizeof(*h));
	h->size = sizeof(*h);
	h->abi_major = CHAT_ABI_MAJOR;
	h->abi_minor = CHAT_ABI_MINOR;
	h->ctx = ctx;
	h->random = chat_host_os_random;
	h->monotonic_ms = host_monotonic_ms;
	h->unix_ms = host_unix_ms;
	h->log = host_log;
	h->config_get = host_config_get;
	h->memeq = chat_memeq;
	h->wipe = chat_wipe;
	h->state_dir = host_state_dir;
}
