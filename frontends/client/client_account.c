/* Accounts: guest LOGIN, SCRAM-SHA-256 login (the relay must prove it knows
 * our verifier), REGISTER, password change, and the account commands: admin
 * (USERS, ADD, REMOVE, RESET, PROMOTE, DEMOTE) and friends.  Passwords are
 * turned into verifiers here; they never leave the client. */
#include "client_int.h"
#include "host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>


#define SALT_LEN 16
#define NONCE_BYTES 18 /* 24 base64 characters */

int client_keep_password(struct chat_client *c, size_t len, const char *pw)
{
	char *copy = malloc(len + 1);

	if (!copy)
		return -1;
	memcpy(copy, pw, len);
	copy[len] = '\0';
	if (c->password) {
		chat_wipe(c->password, c->password_len);
		free(c->password);
	}
	c->password = copy;
	c->password_len = len;
	return 0;
}

/* A SCRAM nonce: random bytes in base64's alphabet (printable, never ','). */
static int make_nonce(size_t cap, char *dst)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint8_t raw[NONCE_BYTES];
	size_t n = 0;

	if (cap < NONCE_BYTES / 3 * 4 + 1 || chat_os_random(sizeof(raw), raw))
		return CHAT_ERR_RANDOM;
	for (size_t i = 0; i < sizeof(raw); i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
		dst[n++] = b64[v >> 18 & 63];
		dst[n++] = b64[v >> 12 & 63];
		dst[n++] = b64[v >> 6 & 63];
		dst[n++] = b64[v & 63];
	}
	dst[n] = '\0';
	chat_wipe(raw, sizeof(raw));
	return CHAT_OK;
}

static int make_verifier(struct chat_client *c, size_t len, const char *pw,
                         struct chat_scram_verifier *v)
{
	uint8_t salt[SALT_LEN];

	if (chat_os_random(sizeof(salt), salt)) {
		client_fail(c, NULL, "random", "no random bytes for a password salt");
		return CHAT_ERR_RANDOM;
	}
	chat_scram_make_verifier(len, pw, sizeof(salt), salt, c->cfg.scram_iterations, v);
	return CHAT_OK;
}

/* AUTH op with a fresh client-first for us. */
static int send_auth(struct chat_client *c, int op)
{
	char nonce[64], first[CHAT_SCRAM_MSG_MAX];
	const char *user = c->name[0] ? c->name : c->cfg.user;
	int rc;

	chat_scram_client_wipe(&c->scram);
	if ((rc = make_nonce(sizeof(nonce), nonce)) != CHAT_OK) {
		client_fail(c, NULL, "random", "no random bytes for a login nonce");
		return rc;
	}
	/* SCRAM-SHA-256-PLUS over a link that has a channel binding (TLS): the
	 * login is then bound to this very TLS channel, and a TLS-terminating
	 * proxy in between cannot pass it on.  'y' only after the relay said its
	 * link has none (a TLS proxy in front of it): a relay that can bind
	 * refuses 'y' as a downgrade. */
	struct chat_scram_cb cb = { .flag = 'n' };
	if (chat_conn_channel_binding(c->conn, CHAT_SCRAM_CB_TYPE, sizeof(cb.data), cb.data, &cb.len) ==
	    CHAT_OK)
		cb.flag = c->cb_plain ? 'y' : 'p';
	rc = chat_scram_client_first(&c->scram, user, nonce, &cb, sizeof(first), first);
	chat_wipe(&cb, sizeof(cb));
	chat_wipe(nonce, sizeof(nonce));
	if (rc) {
		client_fail(c, user, "auth", "cannot start a login for %s: %s", user, chat_strerror(rc));
		return rc;
	}
	client_begin(c, CHAT_MSG_AUTH);
	chat_put_u8(&c->wb, (unsigned)op);
	chat_put_str16(&c->wb, first);
	client_flush(c);
	c->scram_op = op;
	return CHAT_OK;
}

void client_login_start(struct chat_client *c)
{
	struct chat_scram_verifier v;

	switch (c->login_mode) {
	case LM_REGISTER:
		if (make_verifier(c, c->password_len, c->password, &v)) {
			client_finish(c, 1);
			return;
		}
		client_begin(c, CHAT_MSG_REGISTER);
		chat_put_str8(&c->wb, c->cfg.user);
		chat_put_verifier(&c->wb, &v);
		client_flush(c);
		chat_wipe(&v, sizeof(v));
		c->state = CS_REGISTER;
		break;
	case LM_PASSWORD:
		if (send_auth(c, CHAT_AUTH_LOGIN)) {
			client_finish(c, 1);
			return;
		}
		c->state = CS_AUTH;
		break;
	default:
		client_begin(c, CHAT_MSG_LOGIN);
		chat_put_str8(&c->wb, c->cfg.user);
		client_flush(c);
		c->state = CS_LOGIN;
	}
}

static void end_scram(struct chat_client *c)
{
	chat_scram_client_wipe(&c->scram);
	c->scram_op = 0;
}

static void end_passwd(struct chat_client *c)
{
	end_scram(c);
	if (c->new_password) {
		chat_wipe(c->new_password, c->new_password_len);
		free(c->new_password);
	}
	c->new_password = NULL;
	c->new_password_len = 0;
}

int client_login_error(struct chat_client *c, const struct chat_msg *m)
{
	if (m->ref != CHAT_MSG_LOGIN && m->ref != CHAT_MSG_AUTH && m->ref != CHAT_MSG_AUTH_FINAL &&
	    m->ref != CHAT_MSG_REGISTER)
		return 0;
	/* A registered name (or a relay without guests) and a person at the
	 * keyboard: ask for the password instead of giving up.  A relay that
	 * does not reveal accounts (relay.reveal_accounts = no) says "registered
	 * or in use" for both: asked too, since it may be ours; a relay that does
	 * says "taken by another connected user" for a name in use: not asked. */
	if (m->ref == CHAT_MSG_LOGIN && c->cfg.interactive &&
	    ((m->code == CHAT_PERR_NAME_TAKEN && strstr(m->text, "registered")) ||
	     m->code == CHAT_PERR_FORBIDDEN)) {
		c->state = CS_NEED_PW;
		client_emit(c, CHAT_EV_PASSWORD, c->cfg.user, NULL, NULL, NULL, strlen(m->text), m->text, 0);
		return 1;
	}
	/* The relay accepted our REGISTER and then refused the password we
	 * registered: a relay that does not reveal accounts answers a taken name
	 * exactly like a new one, and this is how the name shows itself taken. */
	if (c->just_registered && m->code == CHAT_PERR_AUTH &&
	    (m->ref == CHAT_MSG_AUTH || m->ref == CHAT_MSG_AUTH_FINAL)) {
		const char *u = c->cfg.user;
		client_fail(c, u, "exists", "the relay took the registration of %s but not its password: "
		            "the name %s was taken already (this relay does not say so directly); "
		            "register another name", u, u);
		end_scram(c);
		client_finish(c, 1);
		return 1;
	}
	/* A password typed at the terminal, refused by the relay, and no
	 * keystore to have caught the typo first (a new machine): ask again,
	 * like ssh.  The keystore made with it was never written (nothing is
	 * until the relay accepts the password): it is made anew. */
	if (c->cfg.interactive && c->pw_typed && c->pw_typed < CHAT_CLIENT_PASSWORD_TRIES &&
	    m->code == CHAT_PERR_AUTH && (m->ref == CHAT_MSG_AUTH || m->ref == CHAT_MSG_AUTH_FINAL) &&
	    c->scram_op == CHAT_AUTH_LOGIN && !c->ks_trusted) {
		char text[CHAT_TEXT_MAX + 64];
		snprintf(text, sizeof(text), "%s (try %d of %d)", m->text, c->pw_typed + 1,
		         CHAT_CLIENT_PASSWORD_TRIES);
		end_scram(c);
		client_store_close(c);
		c->state = CS_NEED_PW;
		client_emit(c, CHAT_EV_PASSWORD, c->cfg.user, NULL, NULL, NULL, strlen(text), text, 0);
		return 1;
	}
	/* Our 'p' at AUTH refused: the relay's end of the link has no binding
	 * (TLS ends at a proxy in front of it).  Once, log in with 'y'. */
	if (m->code == CHAT_PERR_CHANNEL_BINDING && m->ref == CHAT_MSG_AUTH && c->scram.cb.flag == 'p' &&
	    !c->cb_plain && c->scram_op) {
		int op = c->scram_op;
		c->cb_plain = 1;
		client_say(c, CHAT_EV_INFO, NULL, "the relay cannot bind the login to this TLS channel (%s); "
		           "logging in without channel binding", m->text);
		end_scram(c);
		if (send_auth(c, op) == CHAT_OK)
			return 1;
	}
	client_emit(c, CHAT_EV_ERROR, m->name[0] ? m->name : NULL, NULL, NULL, client_perr_code(m->code),
	            strlen(m->text), m->text, 0);
	end_scram(c);
	client_finish(c, 1);
	return 1;
}

void client_password_typed(struct chat_client *c, size_t len, const char *pw)
{
	char err[1024];
	int rc;

	if (!len) {
		client_fail(c, c->cfg.user, "auth", "no password given for %s", c->cfg.user);
		client_finish(c, 1);
		return;
	}
	if (client_keep_password(c, len, pw)) {
		client_finish(c, 1);
		return;
	}
	c->pw_typed++;
	c->login_mode = LM_PASSWORD;
	/* The keystore opens with the same password (its PBKDF2 runs here, once). */
	if ((rc = client_store_open(c, sizeof(err), err)) != CHAT_OK ||
	    (rc = client_store_restore(c, sizeof(err), err)) != CHAT_OK) {
		client_fail(c, c->cfg.user, rc == CHAT_ERR_AUTH ? "auth" :
		            rc == CHAT_ERR_STATE ? "keystore-in-use" : "keystore", "%s", err);
		client_finish(c, 1);
		return;
	}
	/* The relay closed the connection while the password was typed
	 * (relay.login_timeout): a new one, which logs in at its WELCOME. */
	if (!c->conn) {
		if (client_connect(c, sizeof(err), err) != CHAT_OK) {
			client_fail(c, NULL, "connect", "%s", err);
			client_finish(c, 1);
		}
		return;
	}
	if (send_auth(c, CHAT_AUTH_LOGIN)) {
		client_finish(c, 1);
		return;
	}
	c->state = CS_AUTH;
}

static void untrusted_relay(struct chat_client *c, const char *why)
{
	client_fail(c, NULL, "relay-auth", "the relay %s %s: it cannot prove that it knows your "
	            "password's verifier, so it is not trusted", c->cfg.relay, why);
	end_passwd(c);
	client_finish(c, 1);
}

static void on_challenge(struct chat_client *c, const struct chat_msg *m)
{
	char final[CHAT_SCRAM_MSG_MAX];

	if (!c->scram_op || (c->scram_op == CHAT_AUTH_LOGIN && c->state != CS_AUTH)) {
		client_fail(c, NULL, "unexpected", "unexpected AUTH_CHALLENGE from the relay; ignored");
		return;
	}
	int rc = chat_scram_client_final(&c->scram, m->text, c->password_len, c->password,
	                                 sizeof(final), final);
	if (rc) {
		chat_wipe(final, sizeof(final));
		untrusted_relay(c, "sent a malformed SCRAM challenge");
		return;
	}
	client_begin(c, CHAT_MSG_AUTH_FINAL);
	chat_put_str16(&c->wb, final);
	client_flush(c);
	chat_wipe(final, sizeof(final));
	if (c->scram_op == CHAT_AUTH_LOGIN)
		c->state = CS_AUTH_FINAL;
}

static void on_auth_ok(struct chat_client *c, const struct chat_msg *m)
{
	struct chat_scram_verifier v;

	if (!c->scram_op || (unsigned)c->scram_op != m->op ||
	    (c->scram_op == CHAT_AUTH_LOGIN && c->state != CS_AUTH_FINAL)) {
		untrusted_relay(c, "answered AUTH_OK out of turn");
		return;
	}
	if (chat_scram_client_verify(&c->scram, m->text) != CHAT_OK) {
		untrusted_relay(c, "sent a wrong server signature (v=)");
		return;
	}
	end_scram(c);
	c->just_registered = 0;
	if (m->op == CHAT_AUTH_LOGIN) {
		c->state = CS_AUTH_OK;
		return;
	}
	/* Proven again: now the new verifier. */
	if (!c->new_password || make_verifier(c, c->new_password_len, c->new_password, &v)) {
		end_passwd(c);
		return;
	}
	client_begin(c, CHAT_MSG_PASSWD);
	chat_put_verifier(&c->wb, &v);
	client_flush(c);
	chat_wipe(&v, sizeof(v));
}

static void passwd_done(struct chat_client *c, const struct chat_msg *m)
{
	char err[1024];

	if (!c->new_password) {
		client_emit(c, CHAT_EV_DONE, m->name, NULL, NULL, NULL, strlen(m->text), m->text, 0);
		return;
	}
	client_emit(c, CHAT_EV_DONE, m->name, NULL, NULL, NULL, strlen(m->text), m->text, 0);
	if (client_store_rekey(c, c->new_password_len, c->new_password, sizeof(err), err) != CHAT_OK)
		client_fail(c, NULL, "keystore", "%s", err);
	else if (c->ks || c->log)
		client_say(c, CHAT_EV_INFO, NULL, "your keystore and history are now encrypted with the "
		           "new password");
	if (client_keep_password(c, c->new_password_len, c->new_password))
		client_fail(c, NULL, "no-memory", "out of memory");
	end_passwd(c);
}

static void on_done(struct chat_client *c, const struct chat_msg *m)
{
	switch (m->ref) {
	case CHAT_MSG_REGISTER:
		if (c->state != CS_REGISTER)
			break;
		client_emit(c, CHAT_EV_DONE, m->name, NULL, NULL, NULL, strlen(m->text), m->text, 0);
		c->login_mode = LM_PASSWORD;
		c->just_registered = 1;
		if (send_auth(c, CHAT_AUTH_LOGIN)) {
			client_finish(c, 1);
			return;
		}
		c->state = CS_AUTH;
		return;
	case CHAT_MSG_PASSWD:
		passwd_done(c, m);
		return;
	case CHAT_MSG_TALK:
		/* An offline registered user: the offer waits for them, and so does held text. */
		client_emit(c, CHAT_EV_INFO, m->name, NULL, NULL, NULL, strlen(m->text), m->text, 0);
		return;
	case CHAT_MSG_KEYS_PUT:
		return; /* our identity key, published at every login: nothing to say */
	default:
		break;
	}
	client_emit(c, CHAT_EV_DONE, m->name, NULL, NULL, NULL, strlen(m->text), m->text, 0);
}

static void on_users(struct chat_client *c, const struct chat_msg *m)
{
	static const char *const groups[] = { "guest", "regular", "admin" };
	struct chat_iter it = m->list;
	char name[CHAT_NAME_MAX + 1], addr[CHAT_ADDR_MAX + 1], list[600], text[1024], when[32];
	char suites[CHAT_SUITES_MAX][CHAT_NAME_MAX + 1];
	size_t n, count = 0;
	unsigned group;
	int64_t since;

	while (chat_iter_user(&it, name, &group, addr, &n, suites, &since)) {
		time_t secs = (time_t)(since / 1000);
		struct tm tm;
		gmtime_r(&secs, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		client_csv(n, (const char (*)[CHAT_NAME_MAX + 1])suites, sizeof(list), list);
		snprintf(text, sizeof(text), "%s %s %s %s", groups[group % 3], addr, n ? list : "-", when);
		client_emit(c, CHAT_EV_USER, name, NULL, NULL, NULL, strlen(text), text, 0);
		count++;
	}
	client_say(c, CHAT_EV_USERS_END, NULL, "%zu", count);
}

static void on_friends(struct chat_client *c, const struct chat_msg *m)
{
	static const char *const states[] = { "?", "friend", "asked", "asks" };
	struct chat_iter it = m->list;
	char name[CHAT_NAME_MAX + 1], text[64];
	size_t count = 0;
	unsigned state;
	int online;

	while (chat_iter_friend(&it, name, &state, &online)) {
		snprintf(text, sizeof(text), "%s %s", states[state & 3], online ? "online" : "offline");
		client_emit(c, CHAT_EV_FRIEND, name, NULL, NULL, NULL, strlen(text), text, 0);
		count++;
	}
	client_say(c, CHAT_EV_FRIENDS_END, NULL, "%zu", count);
}

static void on_friend_event(struct chat_client *c, const struct chat_msg *m)
{
	int kind = m->flag == CHAT_FRIEND_EV_ASKS ? CHAT_EV_FRIEND_REQUEST :
	           m->flag == CHAT_FRIEND_EV_ACCEPTED ? CHAT_EV_FRIEND_ACCEPTED : CHAT_EV_FRIEND_REMOVED;

	client_emit(c, kind, m->name, NULL, NULL, NULL, 0, NULL, 0);
}

int client_account_msg(struct chat_client *c, const struct chat_msg *m)
{
	switch (m->type) {
	case CHAT_MSG_AUTH_CHALLENGE:
		on_challenge(c, m);
		return 1;
	case CHAT_MSG_AUTH_OK:
		on_auth_ok(c, m);
		return 1;
	case CHAT_MSG_DONE:
		on_done(c, m);
		return 1;
	case CHAT_MSG_USERS:
		on_users(c, m);
		return 1;
	case CHAT_MSG_FRIENDS:
		on_friends(c, m);
		return 1;
	case CHAT_MSG_FRIEND_EVENT:
		on_friend_event(c, m);
		return 1;
	case CHAT_MSG_KEYS:
		client_identity_keys(c, m);
		return 1;
	case CHAT_MSG_ERROR:
		/* A password change that failed (the error line is out already). */
		if (m->ref == CHAT_MSG_PASSWD || m->ref == CHAT_MSG_AUTH || m->ref == CHAT_MSG_AUTH_FINAL) {
			end_passwd(c);
			return 1;
		}
		return m->ref == CHAT_MSG_ADMIN || m->ref == CHAT_MSG_FRIEND;
	default:
		return 0;
	}
}

/* ---- commands */

void client_cmd_passwd(struct chat_client *c, const char *arg)
{
	if (!client_registered(c) || !c->password) {
		client_fail(c, NULL, "not-registered", "/passwd changes an account's password; you are "
		            "logged in as a guest");
		return;
	}
	if (!*arg) {
		client_fail(c, NULL, "usage", "/passwd NEW: give the new password");
		return;
	}
	if (c->scram_op || c->new_password) {
		client_fail(c, NULL, "already", "a password change is already under way");
		return;
	}
	c->new_password_len = strlen(arg);
	if (!(c->new_password = strdup(arg))) {
		c->new_password_len = 0;
		return;
	}
	if (send_auth(c, CHAT_AUTH_PASSWD))
		end_passwd(c);
}

void client_cmd_admin(struct chat_client *c, const char *cmd, const char *rest)
{
	static const struct {
		const char *cmd;
		unsigned op;
		int password;
	} ops[] = {
		{ "users", CHAT_ADMIN_USERS, 0 }, { "adduser", CHAT_ADMIN_ADD, 1 },
		{ "deluser", CHAT_ADMIN_REMOVE, 0 }, { "resetpw", CHAT_ADMIN_RESET, 1 },
		{ "promote", CHAT_ADMIN_PROMOTE, 0 }, { "demote", CHAT_ADMIN_DEMOTE, 0 },
	};
	char name[CHAT_NAME_MAX + 2] = "";
	struct chat_scram_verifier v;
	size_t i;

	for (i = 0; strcmp(ops[i].cmd, cmd); i++)
		;
	if (ops[i].op != CHAT_ADMIN_USERS) {
		rest = client_word(rest, sizeof(name), name);
		if (!name[0] || (ops[i].password && !*rest)) {
			client_fail(c, NULL, "usage", "/%s NAME%s", cmd, ops[i].password ? " PASSWORD" : "");
			return;
		}
		if (!client_valid_name(c, "user", name))
			return;
	}
	client_begin(c, CHAT_MSG_ADMIN);
	chat_put_u8(&c->wb, ops[i].op);
	chat_put_str8(&c->wb, name);
	if (ops[i].password) {
		if (make_verifier(c, strlen(rest), rest, &v))
			return;
		chat_put_verifier(&c->wb, &v);
		chat_wipe(&v, sizeof(v));
	}
	client_flush(c);
}

void client_cmd_friend(struct chat_client *c, const char *cmd, const char *rest)
{
	char op[16], name[CHAT_NAME_MAX + 2] = "";
	unsigned code = CHAT_FRIEND_OP_LIST;

	if (!strcmp(cmd, "friend")) {
		rest = client_word(rest, sizeof(op), op);
		rest = client_word(rest, sizeof(name), name);
		if (!strcmp(op, "add"))
			code = CHAT_FRIEND_OP_ADD;
		else if (!strcmp(op, "remove"))
			code = CHAT_FRIEND_OP_REMOVE;
		else if (!op[0] || !strcmp(op, "list"))
			name[0] = '\0';
		else
			code = 0;
		if (!code || (code != CHAT_FRIEND_OP_LIST && !name[0])) {
			client_fail(c, NULL, "usage", "/friend add USER, /friend remove USER, or /friends");
			return;
		}
		if (name[0] && !client_valid_name(c, "user", name))
			return;
	}
	client_begin(c, CHAT_MSG_FRIEND);
	chat_put_u8(&c->wb, code);
	chat_put_str8(&c->wb, name);
	client_flush(c);
}
