/* Accounts at the relay (docs/PROTOCOL.md section 4): SCRAM-SHA-256 logins
 * with throttling, registration, password changes, admin commands and
 * friends.  The relay keeps only SCRAM verifiers; passwords never reach it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/hmac.h>

#include "host.h"
#include "log.h"
#include "relay_int.h"

static const char *const admin_ops[] = { "", "USERS", "ADD", "REMOVE", "RESET", "PROMOTE", "DEMOTE" };

#define THROTTLE_ENTRIES 4096          /* of each table, and rows kept in the store per kind */
#define REGISTER_FORGET_MS (24LL * 3600 * 1000) /* an address quiet this long registers freely again */

static int restore_guard(void *arg, const char *key, unsigned failures, int64_t last_ms)
{
	struct chat_relay *r = arg;

	chat_logins_restore_account(r->logins, key, failures, last_ms);
	return 0;
}

static int restore_registrations(void *arg, const char *key, unsigned failures, int64_t last_ms)
{
	struct chat_relay *r = arg;

	chat_throttle_restore(r->registrations, key, failures, last_ms);
	return 0;
}

/* The throttling rules of cfg; unset values (a relay made by a test) get
 * the documented defaults, and no rule is inconsistent. */
static void rules(const struct chat_relay_config *cfg, struct chat_logins_config *lc,
                  struct chat_throttle_config *rc)
{
	*lc = (struct chat_logins_config){
		.after = cfg->throttle_after ? cfg->throttle_after : 5,
		.guard_after = cfg->guard_after ? cfg->guard_after : 100,
		.base_ms = cfg->throttle_ms > 0 ? cfg->throttle_ms : 1000,
		.max_ms = cfg->throttle_max_ms > 0 ? cfg->throttle_max_ms : 300000,
		.max_entries = THROTTLE_ENTRIES,
	};
	*rc = (struct chat_throttle_config){
		.free_failures = cfg->register_after ? cfg->register_after : 3,
		.base_ms = cfg->register_ms > 0 ? cfg->register_ms : 60000,
		.max_ms = cfg->register_max_ms > 0 ? cfg->register_max_ms : 3600000,
		.max_entries = THROTTLE_ENTRIES,
	};
	if (lc->guard_after < lc->after)
		lc->guard_after = lc->after; /* the guard never engages before the others */
	if (lc->max_ms < lc->base_ms)
		lc->max_ms = lc->base_ms;
	if (rc->max_ms < rc->base_ms)
		rc->max_ms = rc->base_ms;
	rc->forget_ms = rc->max_ms * 2 > REGISTER_FORGET_MS ? rc->max_ms * 2 : REGISTER_FORGET_MS;
}

/* The throttling tables, with the counts the store kept (the guard per
 * account, registrations per address), and the key of fake verifiers: made
 * once and kept in the store, so a restart does not change an unknown name's
 * salt (which would tell it from a real account, whose salt stays). */
int relay_accounts_new(struct chat_relay *r)
{
	struct chat_logins_config lc;
	struct chat_throttle_config rc;
	uint8_t fresh[sizeof(r->fake_secret)];
	int err;

	if (!r->cfg.store)
		return CHAT_OK;
	rules(&r->cfg, &lc, &rc);
	r->register_forget_ms = rc.forget_ms;
	if ((err = chat_logins_new(&lc, &r->logins)) != CHAT_OK ||
	    (err = chat_throttle_new(&rc, &r->registrations)) != CHAT_OK)
		return err;
	if (chat_os_random(sizeof(fresh), fresh) != CHAT_OK)
		return CHAT_ERR_RANDOM;
	err = chat_store_secret(r->cfg.store, "fake-verifier", sizeof(fresh), fresh, r->fake_secret);
	explicit_bzero(fresh, sizeof(fresh));
	if (err == CHAT_OK)
		err = chat_store_throttle_each(r->cfg.store, CHAT_STORE_THROTTLE_ACCOUNT, THROTTLE_ENTRIES,
		                               restore_guard, r);
	if (err == CHAT_OK)
		err = chat_store_throttle_each(r->cfg.store, CHAT_STORE_THROTTLE_REGISTER, THROTTLE_ENTRIES,
		                               restore_registrations, r);
	if (err != CHAT_OK)
		chat_err("cannot read the relay's secrets and throttling counts: %s",
		         chat_store_error(r->cfg.store));
	return err;
}

int relay_accounts_configure(struct chat_relay *r, const struct chat_relay_config *cfg)
{
	struct chat_logins_config lc;
	struct chat_throttle_config rc;

	if (!r->logins)
		return CHAT_OK; /* no store: nothing is throttled */
	rules(cfg, &lc, &rc);
	/* rules() leaves nothing either would refuse. */
	if (chat_logins_configure(r->logins, &lc) != CHAT_OK ||
	    chat_throttle_configure(r->registrations, &rc) != CHAT_OK)
		return CHAT_ERR_INVALID;
	r->register_forget_ms = rc.forget_ms;
	return CHAT_OK;
}

void relay_accounts_free(struct chat_relay *r)
{
	chat_logins_free(r->logins);
	r->logins = NULL;
	chat_throttle_free(r->registrations);
	r->registrations = NULL;
	explicit_bzero(r->fake_secret, sizeof(r->fake_secret));
}

/* Hourly: the store keeps at most as many counts as the tables hold, and
 * forgets registrations once the table would (relay_mail.c's housekeeping,
 * inside its transaction). */
int relay_accounts_prune(struct chat_relay *r, int64_t now_ms)
{
	int rc = chat_store_throttle_prune(r->cfg.store, CHAT_STORE_THROTTLE_ACCOUNT, INT64_MIN,
	                                   THROTTLE_ENTRIES);
	if (rc == CHAT_OK)
		rc = chat_store_throttle_prune(r->cfg.store, CHAT_STORE_THROTTLE_REGISTER,
		                               now_ms - r->register_forget_ms, THROTTLE_ENTRIES);
	return rc;
}

/* A count the store keeps across restarts, written in this round's
 * transaction.  The request's answer does not wait for it. */
static void save_count(struct chat_relay *r, int kind, const char *key, unsigned failures, int64_t now)
{
	if (relay_write_begin(r, NULL, 0) != CHAT_OK)
		return;
	if (chat_store_throttle_put(r->cfg.store, kind, key, failures, now) != CHAT_OK)
		relay_write_failed(r, NULL, 0);
}

static void scram_end(struct client *c)
{
	if (c->acct && c->acct->scram) {
		chat_scram_server_wipe(c->acct->scram);
		free(c->acct->scram);
		c->acct->scram = NULL;
	}
}

void relay_account_state_free(struct client *c)
{
	scram_end(c);
	free(c->acct);
	c->acct = NULL;
}

static struct account_state *acct_of(struct client *c)
{
	if (!c->acct)
		c->acct = calloc(1, sizeof(*c->acct));
	return c->acct;
}

/* A verifier for a name that has no account: derived from the name and the
 * relay's secret (kept in the store), so asking twice, or after a restart,
 * gives the same salt, of the length and iteration count a client makes, and
 * the exchange costs the relay the same as for a real account. */
static void fake_verifier(struct chat_relay *r, const char *name, struct chat_scram_verifier *v)
{
	struct hmac_sha256_ctx h;
	uint8_t out[SHA256_DIGEST_SIZE];
	static const char *const label[] = { "salt", "stored", "server" };

	memset(v, 0, sizeof(*v));
	for (int i = 0; i < 3; i++) {
		hmac_sha256_set_key(&h, sizeof(r->fake_secret), r->fake_secret);
		hmac_sha256_update(&h, strlen(label[i]) + 1, (const uint8_t *)label[i]);
		hmac_sha256_update(&h, strlen(name), (const uint8_t *)name);
		hmac_sha256_digest(&h, sizeof(out), out);
		if (i == 0)
			memcpy(v->salt, out, 16);
		else
			memcpy(i == 1 ? v->stored_key : v->server_key, out, CHAT_SCRAM_KEY);
	}
	v->salt_len = 16;
	v->iterations = r->cfg.scram_iterations ? r->cfg.scram_iterations : CHAT_SCRAM_MIN_ITER;
	explicit_bzero(&h, sizeof(h));
	explicit_bzero(out, sizeof(out));
}

void relay_peer_host(const struct client *c, size_t cap, char *dst)
{
	const char *peer = chat_conn_peer(c->conn);
	const char *colon = strrchr(peer, ':');
	int n = colon ? (int)(colon - peer) : (int)strlen(peer);

	snprintf(dst, cap, "%.*s", n, peer);
}

static int no_store(struct chat_relay *r, struct client *c, int ref)
{
	if (r->cfg.store)
		return 0;
	relay_error(r, c, CHAT_PERR_FORBIDDEN, ref, NULL,
	            "this relay has no accounts (relay.database is not set): log in as a guest");
	return 1;
}

void relay_on_auth(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct chat_scram_verifier v;
	char out[CHAT_SCRAM_MSG_MAX], host[CHAT_ADDR_MAX + 1];
	uint8_t raw[18];
	char nonce[2 * sizeof(raw) + 1];
	struct chat_account a;
	int rc;

	if (no_store(r, c, m->type))
		return;
	if (m->op == CHAT_AUTH_PASSWD && !relay_is_registered(c)) {
		relay_error(r, c, CHAT_PERR_FORBIDDEN, m->type, NULL, "guests have no password to change");
		return;
	}
	if (!acct_of(c)) {
		relay_error(r, c, CHAT_PERR_LIMIT, m->type, NULL, "relay out of memory");
		return;
	}
	scram_end(c); /* a new AUTH restarts the exchange */
	c->acct->passwd_ok = 0;
	c->acct->scram = calloc(1, sizeof(*c->acct->scram));
	if (!c->acct->scram) {
		relay_error(r, c, CHAT_PERR_LIMIT, m->type, NULL, "relay out of memory");
		return;
	}
	uint8_t link[CHAT_SCRAM_CB_MAX];
	size_t link_len = 0;
	if (chat_conn_channel_binding(c->conn, CHAT_SCRAM_CB_TYPE, sizeof(link), link, &link_len) != CHAT_OK)
		link_len = 0;
	rc = chat_scram_server_first_in(c->acct->scram, m->text, link_len, link);
	explicit_bzero(link, sizeof(link));
	if (rc == CHAT_ERR_AUTH) {
		const char *why = c->acct->scram->why;
		chat_warn("login from %s refused: %s", chat_conn_peer(c->conn), why);
		scram_end(c);
		relay_error(r, c, CHAT_PERR_CHANNEL_BINDING, m->type, NULL, "AUTH: channel binding: %s", why);
		return;
	}
	if (rc != CHAT_OK) {
		scram_end(c);
		relay_error(r, c, CHAT_PERR_MALFORMED, m->type, NULL,
		            "AUTH: not a SCRAM-SHA-256 client-first message (expected \"n,,n=USER,r=NONCE\")");
		return;
	}
	const char *user = c->acct->scram->user;
	const char *why = chat_name_check(strlen(user), user);
	if (why) {
		scram_end(c);
		relay_error(r, c, CHAT_PERR_BAD_NAME, m->type, NULL, "AUTH: user name: %s", why);
		return;
	}
	if (m->op == CHAT_AUTH_PASSWD && strcmp(user, c->name) != 0) {
		scram_end(c);
		relay_error(r, c, CHAT_PERR_FORBIDDEN, m->type, user,
		            "you can only prove your own password (%s)", c->name);
		return;
	}
	relay_peer_host(c, sizeof(host), host);
	int which;
	int64_t wait = chat_logins_wait(r->logins, user, host, chat_unix_ms(), &which);
	if (wait) {
		chat_info("login as %s from %s refused: throttled for %lld ms more (%s)", user,
		          chat_conn_peer(c->conn), (long long)wait,
		          which == CHAT_LOGINS_ACCOUNT ? "too many failures for this account from every address"
		          : which == CHAT_LOGINS_PAIR ? "too many failures for this account from this address"
		                                      : "too many failures from this address");
		relay_error(r, c, CHAT_PERR_THROTTLED, m->type, user,
		            "too many failed logins: try again in %lld s", (long long)((wait + 999) / 1000));
		scram_end(c);
		return;
	}
	snprintf(c->acct->scram_user, sizeof(c->acct->scram_user), "%.32s", user);
	c->acct->scram_op = (uint8_t)m->op;
	rc = chat_store_account_get(r->cfg.store, user, &a);
	if (rc == CHAT_OK) {
		v = a.v;
	} else if (rc == CHAT_ERR_NOTFOUND) {
		fake_verifier(r, user, &v);
	} else {
		chat_err("%s", chat_store_error(r->cfg.store));
		scram_end(c);
		relay_error(r, c, CHAT_PERR_STORAGE, m->type, user, "the relay cannot read its database; try later");
		return;
	}
	explicit_bzero(&a, sizeof(a));
	if (chat_os_random(sizeof(raw), raw) != CHAT_OK) {
		explicit_bzero(&v, sizeof(v));
		scram_end(c);
		relay_error(r, c, CHAT_PERR_STORAGE, m->type, user, "the relay has no random numbers now; try later");
		return;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(nonce + 2 * i, 3, "%02x", raw[i]);
	rc = chat_scram_server_first(c->acct->scram, &v, nonce, sizeof(out), out);
	explicit_bzero(&v, sizeof(v));
	if (rc != CHAT_OK) {
		scram_end(c);
		relay_error(r, c, CHAT_PERR_MALFORMED, m->type, user, "AUTH: cannot answer this client-first message");
		return;
	}
	relay_begin(r, CHAT_MSG_AUTH_CHALLENGE);
	chat_put_str16(&r->wb, out);
	relay_flush_to(r, c);
}

/* Log in as name; an older connection of the same account is replaced. */
static void login_registered(struct chat_relay *r, struct client *c, const struct chat_account *a)
{
	uint64_t last = 0;
	struct client *old = relay_find_user(r, a->name);

	if (old && !old->conn) {
		/* Logged in on another relay of the cluster: this newer login
		 * wins there too (relay_cluster.c). */
		chat_info("%s logged in again from %s: its session on another relay ends",
		          a->name, chat_conn_peer(c->conn));
		relay_cluster_drop_ghost(r, old);
	} else if (old && old != c) {
		relay_remove_user(r, old);
		old->state = ST_HELLO; /* no longer logged in: its close will not unregister c */
		chat_info("%s logged in again from %s: closing the older connection %s", a->name,
		          chat_conn_peer(c->conn), chat_conn_peer(old->conn));
		relay_bye(r, old, "logged in from another connection");
	}
	if (chat_store_sender_last(r->cfg.store, a->name, &last) != CHAT_OK) {
		/* without it the client could reuse ids the relay drops as duplicates */
		chat_err("%s", chat_store_error(r->cfg.store));
		relay_error(r, c, CHAT_PERR_STORAGE, CHAT_MSG_AUTH_FINAL, a->name,
		            "the relay cannot read its database; try later");
		return;
	}
	c->acct->registered = 1;
	c->acct->group = (uint8_t)a->group;
	c->acct->pushed_id = 0;
	c->acct->inflight = 0;
	c->acct->inflight_bytes = 0;
	relay_logged_in(r, c, a->name, a->group, last);
}

void relay_on_auth_final(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	char out[CHAT_SCRAM_MSG_MAX], host[CHAT_ADDR_MAX + 1];
	struct chat_account a;
	int rc;

	if (!c->acct || !c->acct->scram) {
		relay_error(r, c, CHAT_PERR_UNEXPECTED, m->type, NULL, "AUTH_FINAL without AUTH");
		return;
	}
	const char *user = c->acct->scram_user;
	int op = c->acct->scram_op;
	if (op == CHAT_AUTH_LOGIN && c->state == ST_LOGGED_IN) { /* AUTH, then LOGIN as a guest */
		scram_end(c);
		relay_error(r, c, CHAT_PERR_ALREADY, m->type, c->name, "already logged in as %s", c->name);
		return;
	}
	rc = chat_scram_server_final(c->acct->scram, m->text, sizeof(out), out);
	const char *cb_why = rc == CHAT_ERR_AUTH ? c->acct->scram->why : NULL; /* static text */
	scram_end(c);
	relay_peer_host(c, sizeof(host), host);
	int64_t now = chat_unix_ms();
	if (rc == CHAT_OK) {
		rc = chat_store_account_get(r->cfg.store, user, &a);
		if (rc != CHAT_OK) /* removed meanwhile, or a fake verifier matched: refuse */
			rc = CHAT_ERR_AUTH;
	}
	if (rc != CHAT_OK) {
		struct chat_logins_result res;
		/* Known or not, the same counts and the same write: nothing tells them apart. */
		chat_logins_fail(r->logins, user, host, now, &res);
		save_count(r, CHAT_STORE_THROTTLE_ACCOUNT, user, res.account_failures, now);
		chat_info("%s failed for %s from %s (failures in a row: %u for the account from this address, "
		          "%u from this address, %u for the account from every address)",
		          op == CHAT_AUTH_PASSWD ? "password check" : "login", user, chat_conn_peer(c->conn),
		          res.pair_failures, res.address_failures, res.account_failures);
		if (res.wait)
			chat_warn("throttling logins: %s waits %lld ms (%s)",
			          res.which == CHAT_LOGINS_ADDRESS ? "every login from this address"
			          : res.which == CHAT_LOGINS_PAIR ? "this account from this address"
			                                          : "this account from every address",
			          (long long)res.wait,
			          res.which == CHAT_LOGINS_ADDRESS ? host : user);
		explicit_bzero(&a, sizeof(a));
		if (cb_why) {
			chat_warn("%s as %s from %s refused: %s", op == CHAT_AUTH_PASSWD ? "password check" : "login",
			          user, chat_conn_peer(c->conn), cb_why);
			relay_error(r, c, CHAT_PERR_CHANNEL_BINDING, m->type, NULL, "channel binding: %s", cb_why);
		} else if (op == CHAT_AUTH_PASSWD)
			relay_error(r, c, CHAT_PERR_AUTH, m->type, user, "password check failed: wrong password");
		else
			relay_error(r, c, CHAT_PERR_AUTH, m->type, NULL,
			            "login failed: unknown user or wrong password");
		return;
	}
	if (chat_logins_account_failures(r->logins, user))
		save_count(r, CHAT_STORE_THROTTLE_ACCOUNT, user, 0, now);
	chat_logins_success(r->logins, user, host);
	relay_begin(r, CHAT_MSG_AUTH_OK);
	chat_put_u8(&r->wb, (unsigned)op);
	chat_put_str16(&r->wb, out);
	relay_flush_to(r, c);
	explicit_bzero(out, sizeof(out));
	if (op == CHAT_AUTH_PASSWD) {
		c->acct->passwd_ok = 1;
	} else if (!c->dead) {
		login_registered(r, c, &a);
	}
	explicit_bzero(&a, sizeof(a));
}

/* What REGISTER answers when it succeeds and, unless relay.reveal_accounts,
 * when the name is taken (registered, or in use by a connected user): the
 * same DONE, so the answer does not say whether a name exists.  The account
 * is then not changed; the registrant's login fails like any wrong password. */
#define REGISTER_DONE_TEXT \
	"registration received: now log in with this password (if the name was taken already, " \
	"that login fails; this relay does not say whether a name exists)"

void relay_on_register(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct chat_account a = { 0 };
	char host[CHAT_ADDR_MAX + 1];
	int rc;

	if (no_store(r, c, m->type))
		return;
	if (!r->cfg.open_registration) {
		relay_error(r, c, CHAT_PERR_FORBIDDEN, m->type, m->name,
		            "registration on this relay is by an admin only (relay.open_registration = no)");
		return;
	}
	relay_peer_host(c, sizeof(host), host);
	int64_t now = chat_unix_ms();
	int64_t wait = chat_throttle_wait(r->registrations, host, now);
	if (wait) {
		chat_info("registration of %s from %s refused: throttled for %lld ms more", m->name,
		          chat_conn_peer(c->conn), (long long)wait);
		relay_error(r, c, CHAT_PERR_THROTTLED, m->type, m->name,
		            "too many registrations from your address: try again in %lld s",
		            (long long)((wait + 999) / 1000));
		return;
	}
	if (relay_write_begin(r, c, m->type) != CHAT_OK)
		return;
	/* Every registration counts, taken name or not, before the name is looked
	 * at; the count is written either way (the same work for both). */
	int64_t next = chat_throttle_fail(r->registrations, host, now);
	if (chat_store_throttle_put(r->cfg.store, CHAT_STORE_THROTTLE_REGISTER, host,
	                            chat_throttle_failures(r->registrations, host), now) != CHAT_OK) {
		relay_write_failed(r, c, m->type);
		return;
	}
	if (next)
		chat_warn("throttling registrations: %s waits %lld ms before the next one", host,
		          (long long)next);
	int in_use = relay_find_user(r, m->name) != NULL;
	if (in_use) {
		rc = CHAT_ERR_INVALID;
	} else {
		snprintf(a.name, sizeof(a.name), "%s", m->name);
		a.group = CHAT_GROUP_REGULAR;
		a.v = m->verifier;
		a.created_ms = now;
		rc = chat_store_account_add(r->cfg.store, &a);
		explicit_bzero(&a, sizeof(a));
	}
	if (rc == CHAT_ERR_INVALID) {
		if (r->cfg.reveal_accounts) {
			if (in_use)
				relay_error(r, c, CHAT_PERR_EXISTS, m->type, m->name, "the name %s is in use", m->name);
			else
				relay_error(r, c, CHAT_PERR_EXISTS, m->type, m->name, "the account %s exists already",
				            m->name);
			return;
		}
		chat_info("registration of %s from %s not done: the name is %s (answered like a success: "
		          "relay.reveal_accounts = no)", m->name, chat_conn_peer(c->conn),
		          in_use ? "in use" : "registered");
		relay_done(r, c, m->type, 0, m->name, REGISTER_DONE_TEXT);
		return;
	}
	if (rc != CHAT_OK) {
		relay_write_failed(r, c, m->type);
		return;
	}
	chat_info("account %s registered from %s", m->name, chat_conn_peer(c->conn));
	relay_done(r, c, m->type, 0, m->name,
	           r->cfg.reveal_accounts ? "registered; now log in" : REGISTER_DONE_TEXT);
}

void relay_on_passwd(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	if (!relay_is_registered(c)) {
		relay_error(r, c, CHAT_PERR_FORBIDDEN, m->type, NULL, "guests have no password to change");
		return;
	}
	if (!c->acct->passwd_ok) {
		relay_error(r, c, CHAT_PERR_FORBIDDEN, m->type, c->name,
		            "prove your current password first (AUTH op 2)");
		return;
	}
	c->acct->passwd_ok = 0;
	if (relay_write_begin(r, c, m->type) != CHAT_OK)
		return;
	if (chat_store_account_set_verifier(r->cfg.store, c->name, &m->verifier) != CHAT_OK) {
		relay_write_failed(r, c, m->type);
		return;
	}
	chat_info("%s changed their password", c->name);
	relay_done(r, c, m->type, 0, c->name, "password changed");
}

/* ---- admin */

static void admin_users(struct chat_relay *r, struct client *c)
{
	size_t count = 0, count_at = relay_list_begin(r, CHAT_MSG_USERS);

	for (struct client *x = r->clients; x && count < 65535; x = x->next) {
		if (x->state != ST_LOGGED_IN || x->dead)
			continue;
		size_t before = r->wb.len;
		chat_put_str8(&r->wb, x->name);
		chat_put_u8(&r->wb, relay_is_registered(x) ? x->acct->group : CHAT_GROUP_GUEST);
		chat_put_str8(&r->wb, chat_conn_peer(x->conn));
		relay_put_suites(r, x);
		chat_put_u64(&r->wb, (uint64_t)x->since_s * 1000u);
		if (!relay_list_fits(r, before))
			break;
		count++;
	}
	relay_list_end(r, count_at, count);
	relay_flush_to(r, c);
}

struct removed_mail {
	char (*senders)[CHAT_NAME_MAX + 1];
	uint64_t *ids;
	size_t n, cap;
};

static int collect_removed(void *arg, const struct chat_mail *m)
{
	struct removed_mail *l = arg;

	if (!m->client_id || !m->from[0])
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		void *s = realloc(l->senders, cap * sizeof(*l->senders));
		if (!s)
			return 1;
		l->senders = s;
		void *i = realloc(l->ids, cap * sizeof(*l->ids));
		if (!i)
			return 1;
		l->ids = i;
		l->cap = cap;
	}
	snprintf(l->senders[l->n], CHAT_NAME_MAX + 1, "%s", m->from);
	l->ids[l->n++] = m->client_id;
	return 0;
}

static int admin_remove(struct chat_relay *r, struct client *c, const char *name)
{
	struct removed_mail l = { 0 };
	int rc = chat_store_mail_for(r->cfg.store, name, 0, 0, collect_removed, &l);

	if (rc == CHAT_OK)
		rc = chat_store_account_remove(r->cfg.store, name);
	for (size_t i = 0; rc == CHAT_OK && i < l.n; i++) {
		relay_begin(r, CHAT_MSG_RECEIPT);
		chat_put_str8(&r->wb, name);
		chat_put_u64(&r->wb, l.ids[i]);
		chat_put_u8(&r->wb, CHAT_RECEIPT_REMOVED);
		chat_put_str16(&r->wb, "the recipient's account was removed before they read it");
		if (strcmp(l.senders[i], name) != 0)
			rc = relay_mail_to(r, l.senders[i], "", 0, NULL);
	}
	free(l.senders);
	free(l.ids);
	if (rc != CHAT_OK)
		return rc;
	struct client *t = relay_find_user(r, name);
	if (t && t != c && relay_is_registered(t))
		relay_bye(r, t, "your account was removed by an admin");
	return CHAT_OK;
}

void relay_on_admin(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct chat_store *st = r->cfg.store;
	struct chat_account a = { 0 };
	size_t admins = 0;
	char text[CHAT_TEXT_MAX];
	int rc;

	if (!relay_is_registered(c) || c->acct->group != CHAT_GROUP_ADMIN) {
		relay_error(r, c, CHAT_PERR_FORBIDDEN, m->type, m->name[0] ? m->name : NULL,
		            "%s is not an admin: %s is for admins only", c->name, admin_ops[m->op]);
		chat_info("%s (not an admin) tried ADMIN %s %s", c->name, admin_ops[m->op], m->name);
		return;
	}
	if (m->op == CHAT_ADMIN_USERS) {
		admin_users(r, c);
		return;
	}
	rc = chat_store_account_get(st, m->name, &a);
	explicit_bzero(&a.v, sizeof(a.v));
	if (m->op == CHAT_ADMIN_ADD) {
		if (rc == CHAT_OK) {
			relay_error(r, c, CHAT_PERR_EXISTS, m->type, m->name, "the account %s exists already", m->name);
			return;
		}
		struct client *g = relay_find_user(r, m->name);
		if (g) {
			relay_error(r, c, CHAT_PERR_EXISTS, m->type, m->name,
			            "the name %s is in use by a connected guest", m->name);
			return;
		}
	} else if (rc == CHAT_ERR_NOTFOUND) {
		relay_error(r, c, CHAT_PERR_NO_USER, m->type, m->name, "no account %s", m->name);
		return;
	}
	if (rc != CHAT_OK && rc != CHAT_ERR_NOTFOUND) {
		relay_error(r, c, CHAT_PERR_STORAGE, m->type, m->name, "the relay cannot read its database; try later");
		return;
	}
	if ((m->op == CHAT_ADMIN_REMOVE || m->op == CHAT_ADMIN_DEMOTE) && strcmp(m->name, c->name) == 0) {
		relay_error(r, c, CHAT_PERR_FORBIDDEN, m->type, m->name,
		            "you cannot %s yourself; ask another admin",
		            m->op == CHAT_ADMIN_REMOVE ? "remove" : "demote");
		return;
	}
	if ((m->op == CHAT_ADMIN_REMOVE || m->op == CHAT_ADMIN_DEMOTE) && a.group == CHAT_GROUP_ADMIN &&
	    (chat_store_account_count(st, CHAT_GROUP_ADMIN, &admins) != CHAT_OK || admins <= 1)) {
		relay_error(r, c, CHAT_PERR_FORBIDDEN, m->type, m->name, "%s is the last admin", m->name);
		return;
	}
	if (relay_write_begin(r, c, m->type) != CHAT_OK)
		return;
	switch (m->op) {
	case CHAT_ADMIN_ADD:
		snprintf(a.name, sizeof(a.name), "%s", m->name);
		a.group = CHAT_GROUP_REGULAR;
		a.v = m->verifier;
		a.created_ms = chat_unix_ms();
		rc = chat_store_account_add(st, &a);
		snprintf(text, sizeof(text), "added user %s", m->name);
		break;
	case CHAT_ADMIN_REMOVE:
		rc = admin_remove(r, c, m->name);
		snprintf(text, sizeof(text), "removed user %s", m->name);
		break;
	case CHAT_ADMIN_RESET:
		rc = chat_store_account_set_verifier(st, m->name, &m->verifier);
		snprintf(text, sizeof(text), "password of %s reset", m->name);
		break;
	default: { /* PROMOTE, DEMOTE */
		int group = m->op == CHAT_ADMIN_PROMOTE ? CHAT_GROUP_ADMIN : CHAT_GROUP_REGULAR;
		rc = chat_store_account_set_group(st, m->name, group);
		struct client *t = relay_find_user(r, m->name);
		if (rc == CHAT_OK && t && relay_is_registered(t))
			t->acct->group = (uint8_t)group;
		snprintf(text, sizeof(text), "%s is now %s", m->name, group == CHAT_GROUP_ADMIN ? "an admin" : "a regular user");
		break;
	}
	}
	explicit_bzero(&a, sizeof(a));
	if (rc != CHAT_OK) {
		relay_write_failed(r, c, m->type);
		return;
	}
	chat_info("admin %s: %s", c->name, text);
	relay_done(r, c, m->type, m->op, m->name, text);
}

/* ---- identity keys */

void relay_on_keys_put(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	char text[96];
	int rc;

	if (!relay_is_registered(c)) {
		relay_error(r, c, CHAT_PERR_FORBIDDEN, m->type, NULL,
		            "guests have no identity keys to publish: register an account");
		return;
	}
	if (relay_write_begin(r, c, m->type) != CHAT_OK)
		return;
	rc = chat_store_key_put(r->cfg.store, c->name, m->suite, m->payload_len, m->payload, chat_unix_ms());
	if (rc == CHAT_ERR_NOSPACE) {
		relay_error(r, c, CHAT_PERR_LIMIT, m->type, NULL,
		            "you have identity keys for %d suites already: the most a user may publish",
		            CHAT_STORE_KEYS_PER_USER);
		return;
	}
	if (rc != CHAT_OK) {
		relay_write_failed(r, c, m->type);
		return;
	}
	chat_info("%s published an identity key for %s (%zu bytes)", c->name, m->suite, m->payload_len);
	snprintf(text, sizeof(text), "your %s identity key is published", m->suite);
	relay_done(r, c, m->type, 0, m->suite, text);
}

struct keys_reply {
	struct chat_relay *r;
	size_t count;
};

static int put_key(void *arg, const char *suite, size_t len, const void *key)
{
	struct keys_reply *k = arg;

	chat_put_str8(&k->r->wb, suite);
	chat_put_u16(&k->r->wb, (unsigned)len);
	chat_put_bytes(&k->r->wb, len, key);
	k->count++;
	return 0;
}

/* KEYS for any name: none for a guest, an unknown name or a relay without
 * accounts, the same answer for all three. */
void relay_on_keys_get(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct keys_reply k = { r, 0 };

	relay_begin(r, CHAT_MSG_KEYS);
	chat_put_str8(&r->wb, m->name);
	size_t count_at = r->wb.len;
	chat_put_u16(&r->wb, 0);
	if (r->cfg.store && chat_store_keys(r->cfg.store, m->name, put_key, &k) != CHAT_OK) {
		chat_err("%s", chat_store_error(r->cfg.store));
		relay_error(r, c, CHAT_PERR_STORAGE, m->type, m->name, "the relay cannot read its database; try later");
		return;
	}
	relay_list_end(r, count_at, k.count);
	relay_flush_to(r, c);
}

/* ---- friends */

int relay_friend_state(struct chat_relay *r, const char *a, const char *b)
{
	int state = CHAT_FRIEND_NONE;

	if (!r->cfg.store || chat_store_friend_get(r->cfg.store, a, b, &state) != CHAT_OK)
		return CHAT_FRIEND_NONE;
	return state;
}

struct friends_reply {
	struct chat_relay *r;
	size_t count, count_at;
	int full;
};

static int put_friend(void *arg, const char *other, int state)
{
	struct friends_reply *f = arg;
	struct chat_relay *r = f->r;
	struct client *t = relay_find_user(r, other);
	size_t before = r->wb.len;

	chat_put_str8(&r->wb, other);
	chat_put_u8(&r->wb, (unsigned)state);
	chat_put_u8(&r->wb, t && !t->dead && relay_is_registered(t));
	if (!relay_list_fits(r, before) || f->count == 65535)
		return 1;
	f->count++;
	return 0;
}

static int friend_event(struct chat_relay *r, const char *to, const char *about, unsigned ev)
{
	relay_begin(r, CHAT_MSG_FRIEND_EVENT);
	chat_put_str8(&r->wb, about);
	chat_put_u8(&r->wb, ev);
	return relay_mail_to(r, to, about, 0, NULL);
}

void relay_on_friend(struct chat_relay *r, struct client *c, const struct chat_msg *m)
{
	struct chat_store *st = r->cfg.store;
	int state = CHAT_FRIEND_NONE, rc;
	const char *t = m->name;

	if (!relay_is_registered(c)) {
		relay_error(r, c, CHAT_PERR_FORBIDDEN, m->type, NULL,
		            "guests have no friends list: register an account");
		return;
	}
	if (m->op == CHAT_FRIEND_OP_LIST) {
		struct friends_reply f = { r, 0, relay_list_begin(r, CHAT_MSG_FRIENDS), 0 };
		if (chat_store_friends(st, c->name, put_friend, &f) != CHAT_OK) {
			relay_error(r, c, CHAT_PERR_STORAGE, m->type, NULL, "the relay cannot read its database; try later");
			return;
		}
		relay_list_end(r, f.count_at, f.count);
		relay_flush_to(r, c);
		return;
	}
	if (strcmp(t, c->name) == 0) {
		relay_error(r, c, CHAT_PERR_SELF, m->type, t, "you cannot befriend yourself");
		return;
	}
	rc = chat_store_account_exists(st, t);
	if (rc == CHAT_ERR_NOTFOUND) {
		relay_error(r, c, CHAT_PERR_NO_USER, m->type, t, "no registered user %s", t);
		return;
	}
	if (rc == CHAT_OK)
		rc = chat_store_friend_get(st, c->name, t, &state);
	if (rc != CHAT_OK) {
		relay_error(r, c, CHAT_PERR_STORAGE, m->type, t, "the relay cannot read its database; try later");
		return;
	}
	if (m->op == CHAT_FRIEND_OP_ADD && (state == CHAT_FRIEND_YES || state == CHAT_FRIEND_ASKED)) {
		relay_error(r, c, CHAT_PERR_ALREADY, m->type, t,
		            state == CHAT_FRIEND_YES ? "you and %s are friends already"
		                                     : "you already asked %s; waiting for them to accept", t);
		return;
	}
	if (m->op == CHAT_FRIEND_OP_REMOVE && state == CHAT_FRIEND_NONE) {
		relay_error(r, c, CHAT_PERR_NO_USER, m->type, t,
		            "%s is not your friend and there is no request between you", t);
		return;
	}
	if (relay_write_begin(r, c, m->type) != CHAT_OK)
		return;
	const char *text;
	unsigned ev;
	int next;
	if (m->op == CHAT_FRIEND_OP_REMOVE) {
		next = CHAT_FRIEND_NONE;
		ev = CHAT_FRIEND_EV_REMOVED;
		text = state == CHAT_FRIEND_YES ? "friendship ended" : state == CHAT_FRIEND_ASKED ? "request withdrawn" : "request declined";
	} else if (state == CHAT_FRIEND_ASKED_BY) {
		next = CHAT_FRIEND_YES;
		ev = CHAT_FRIEND_EV_ACCEPTED;
		text = "you are friends now";
	} else {
		next = CHAT_FRIEND_ASKED;
		ev = CHAT_FRIEND_EV_ASKS;
		text = "request sent; they must accept";
	}
	if (chat_store_friend_set(st, c->name, t, next) != CHAT_OK || friend_event(r, t, c->name, ev) != CHAT_OK) {
		relay_write_failed(r, c, m->type);
		return;
	}
	chat_info("friends: %s -> %s: %s", c->name, t, text);
	relay_done(r, c, m->type, m->op, t, text);
}
