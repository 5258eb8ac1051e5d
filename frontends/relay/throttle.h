/* Throttling of failed logins, per key (an account name or a client
 * address): after `free_failures` failures in a row a key must wait, and
 * every further failure doubles the wait (base_ms, 2*base_ms, ... up to
 * max_ms).  A success clears the key.  The table is bounded: when full, the
 * entry whose wait ended longest ago is reused, so an attacker cycling
 * through addresses cannot grow memory.  No I/O, no clock of its own. */
#ifndef CHAT_THROTTLE_H
#define CHAT_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

struct chat_throttle_config {
	unsigned free_failures;  /* failures allowed before any wait (>= 1) */
	int64_t base_ms;         /* first wait */
	int64_t max_ms;          /* cap on the wait */
	size_t max_entries;      /* table size */
};

struct chat_throttle;

int chat_throttle_new(const struct chat_throttle_config *cfg, struct chat_throttle **out);
void chat_throttle_free(struct chat_throttle *t);

/* 0 if key may try now, else the milliseconds it must still wait. */
int64_t chat_throttle_wait(struct chat_throttle *t, const char *key, int64_t now_ms);
/* Record a failure; returns the wait now imposed (0 if none yet). */
int64_t chat_throttle_fail(struct chat_throttle *t, const char *key, int64_t now_ms);
/* Failures recorded in a row for key. */
unsigned chat_throttle_failures(struct chat_throttle *t, const char *key);
void chat_throttle_success(struct chat_throttle *t, const char *key);
size_t chat_throttle_entries(const struct chat_throttle *t);

#endif
