/* Connections counted per client address, for relay.max_unauth_per_address.
 * An address is an IPv4 address, or an IPv6 /64 (the smallest block one
 * subscriber is normally given, so one host cannot dodge the cap by using
 * the addresses of its own /64); an IPv4-mapped IPv6 address counts as the
 * IPv4 address.  A transport whose addresses are neither is keyed by its
 * address text without the ":port".  Only addresses with a counted
 * connection have an entry, so memory follows what is counted (the table
 * keeps its largest size).  No I/O, no clock. */
#ifndef CHAT_ADDRCOUNT_H
#define CHAT_ADDRCOUNT_H

#include <stddef.h>
#include <stdint.h>

#define CHAT_ADDRCOUNT_NONE UINT32_MAX /* a slot that names no entry */

struct chat_addrcount;

int chat_addrcount_new(struct chat_addrcount **out);
void chat_addrcount_free(struct chat_addrcount *t);

/* Count one more connection from peer (a transport's address text:
 * "192.0.2.1:5000", "[2001:db8::1]:5000").  CHAT_OK with *slot naming the
 * entry (for chat_addrcount_release) and *count the connections now counted
 * for that address, including this one; or CHAT_ERR_NOMEM. */
int chat_addrcount_add(struct chat_addrcount *t, const char *peer, uint32_t *slot,
                       uint32_t *count);
/* One connection counted at slot is gone (CHAT_ADDRCOUNT_NONE: nothing). */
void chat_addrcount_release(struct chat_addrcount *t, uint32_t slot);
/* Addresses with at least one connection counted. */
size_t chat_addrcount_entries(const struct chat_addrcount *t);

/* The address peer is counted under, for log lines: "192.0.2.1",
 * "2001:db8:1:2::/64". */
void chat_addrcount_describe(const char *peer, size_t cap, char *dst);

#endif
