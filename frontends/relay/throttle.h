/* Throttling of failures, per key (an account name, a client address, an
 * account from one address, registrations from an address): after
 * `free_failures` failures in a row a key must wait, and every further
 * failure doubles the wait (base_ms, 2*base_ms, ... up to max_ms).  A
 * success clears the key; with forget_ms, so does a quiet time that long.
 * The table is bounded: when full, the entry whose wait ended longest ago is
 * reused, so an attacker cycling through addresses cannot grow memory.  No
 * I/O, no clock of its own.
 *
 * chat_logins (below) is the relay's policy for failed logins on top of
 * three such keys. */
#ifndef CHAT_THROTTLE_H
#define CHAT_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

struct chat_throttle_config {
	unsigned free_failures;  /* failures allowed before any wait (>= 1) */
	int64_t base_ms;         /* first wait */
	int64_t max_ms;          /* cap on the wait */
	size_t max_entries;      /* table size */
	int64_t forget_ms;       /* a key whose last failure is this old starts again
	                            from 0 failures (0: never; else > max_ms) */
};

struct chat_throttle;

int chat_throttle_new(const struct chat_throttle_config *cfg, struct chat_throttle **out);
void chat_throttle_free(struct chat_throttle *t);

/* Another rule for the same table (cfg->max_entries is ignored: the table
 * keeps its size): every key's wait is counted again from its failures and
 * its last failure under the new rule.  CHAT_ERR_INVALID, nothing changed,
 * for a rule chat_throttle_new would refuse. */
int chat_throttle_configure(struct chat_throttle *t, const struct chat_throttle_config *cfg);

/* 0 if key may try now, else the milliseconds it must still wait. */
int64_t chat_throttle_wait(struct chat_throttle *t, const char *key, int64_t now_ms);
/* Record a failure; returns the wait now imposed (0 if none yet). */
int64_t chat_throttle_fail(struct chat_throttle *t, const char *key, int64_t now_ms);
/* Failures recorded in a row for key. */
unsigned chat_throttle_failures(struct chat_throttle *t, const char *key);
void chat_throttle_success(struct chat_throttle *t, const char *key);
size_t chat_throttle_entries(const struct chat_throttle *t);
/* Put back a key's state as saved (failures in a row, time of the last
 * one), e.g. read from a database at start: the wait it imposes is the one
 * a failure at last_fail_ms would have imposed.  failures 0 removes the key. */
int chat_throttle_restore(struct chat_throttle *t, const char *key, unsigned failures,
                          int64_t last_fail_ms);

/* ---- failed logins: the relay's policy (docs/PROTOCOL.md section 4)
 *
 * Three counts, each of failures in a row:
 *  - per address (every account tried from it),
 *  - per (account, address): an attacker's failures from one address make
 *    only that address wait for that account,
 *  - per account from all addresses together: a guard against guessing from
 *    many addresses, engaging only after guard_after failures (much more
 *    than `after`); while it waits, the owner waits too.
 * A successful login of an account from an address clears all three. */
enum chat_logins_which {
	CHAT_LOGINS_FREE = 0,
	CHAT_LOGINS_ADDRESS = 1,   /* too many failures from this address */
	CHAT_LOGINS_PAIR = 2,      /* too many failures for this account from this address */
	CHAT_LOGINS_ACCOUNT = 3,   /* too many failures for this account (the guard) */
};

struct chat_logins_config {
	unsigned after;            /* per address and per (account, address) */
	unsigned guard_after;      /* per account, every address together */
	int64_t base_ms, max_ms;
	size_t max_entries;        /* of each of the two tables */
};

struct chat_logins_result {
	int64_t wait;              /* the longest of the waits now imposed (0: none) */
	int which;                 /* whose it is (CHAT_LOGINS_*) */
	unsigned address_failures, pair_failures, account_failures;
};

struct chat_logins;

int chat_logins_new(const struct chat_logins_config *cfg, struct chat_logins **out);
void chat_logins_free(struct chat_logins *l);
/* Another rule (chat_throttle_configure for each count). */
int chat_logins_configure(struct chat_logins *l, const struct chat_logins_config *cfg);
/* May account try from address now?  0, or the ms to wait (*which says why). */
int64_t chat_logins_wait(struct chat_logins *l, const char *account, const char *address,
                         int64_t now_ms, int *which);
void chat_logins_fail(struct chat_logins *l, const char *account, const char *address,
                      int64_t now_ms, struct chat_logins_result *res);
void chat_logins_success(struct chat_logins *l, const char *account, const char *address);
/* The address alone (a guest LOGIN under a name that is not free): its
 * wait, and a failure counted for it (returns the wait now imposed). */
int64_t chat_logins_address_wait(struct chat_logins *l, const char *address, int64_t now_ms);
int64_t chat_logins_address_fail(struct chat_logins *l, const char *address, int64_t now_ms);
/* The per-account guard's count (what is saved across restarts). */
unsigned chat_logins_account_failures(struct chat_logins *l, const char *account);
int chat_logins_restore_account(struct chat_logins *l, const char *account, unsigned failures,
                                int64_t last_fail_ms);

#endif
