/* The relay's store on PostgreSQL (store.h, store_backend.h): the module
 * store-postgresql.so, so that only a relay configured with
 * relay.store = postgresql://... loads libpq.
 *
 * Several relays may share one database (docs/SERVICE.md), so:
 * - migrations run under a session advisory lock: two relays starting
 *   together do not both migrate;
 * - mail ids come out in commit order per recipient: mail_add takes a
 *   transaction advisory lock on the recipient before the sequence gives
 *   the id, held until commit.  With a bare sequence relay A could commit
 *   id 12 before relay C commits id 11, and a relay that pushed 12 (it
 *   pushes id > last pushed) would never push 11;
 * - a secret is first-writer-wins (INSERT ... ON CONFLICT DO NOTHING, then
 *   SELECT).
 *
 * The libpq calls are synchronous: a slow database stalls the relay's
 * event loop for that long.  Accepted for now (one round trip per
 * statement, one COMMIT per loop pass); an asynchronous store would need the
 * relay to wait for the commit before it acknowledges.
 *
 * Statements are prepared once per connection (again after a reset) and
 * run with binary parameters and binary results: every integer column is
 * BIGINT (int8 on the wire), bytea and text are raw bytes.
 *
 * A statement that fails inside a transaction aborts the whole transaction
 * on PostgreSQL (SQLite undoes only the statement): the store avoids
 * expected failures (an account that exists: ON CONFLICT DO NOTHING), and
 * after an unexpected one every statement and the commit fail, as they do
 * with SQLite after it rolled back on its own.
 *
 * The password of the URL never appears in a message: errors name the
 * database as postgresql://USER@HOST:PORT/DB, and every text from libpq or
 * the server is scrubbed of the password too. */
#include "store_backend.h"

#include <endian.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include <chat/error.h>

#define NAME_MAX_LEN 32
#define THROTTLE_KEY_MAX 255
#define CONNECT_TIMEOUT "10"       /* seconds, unless the URL says otherwise */
/* Advisory lock keys: pg_advisory_lock(bigint) for migrations,
 * pg_advisory_xact_lock(int, int) with the recipient's hash for mail. */
#define LOCK_MIGRATE "6354830250931024242"
#define LOCK_MAIL "1835100524"

#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25

/* Schema migrations, numbered as store_sqlite.c's: entry i takes version i
 * to i + 1, in one transaction with the update of chat_schema. */
static const char *const migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE chat_schema (version BIGINT NOT NULL);"
	"INSERT INTO chat_schema (version) VALUES (0);"
	"CREATE TABLE accounts ("
	" name TEXT COLLATE \"C\" PRIMARY KEY NOT NULL,"
	" grp BIGINT NOT NULL,"
	" salt BYTEA NOT NULL,"
	" iterations BIGINT NOT NULL,"
	" stored_key BYTEA NOT NULL,"
	" server_key BYTEA NOT NULL,"
	" created_ms BIGINT NOT NULL);"
	"CREATE TABLE friends ("
	" a TEXT COLLATE \"C\" NOT NULL,"
	" b TEXT COLLATE \"C\" NOT NULL,"
	" state BIGINT NOT NULL,"
	" PRIMARY KEY (a, b));"
	"CREATE INDEX friends_b ON friends (b);"
	"CREATE TABLE conversations ("
	" a TEXT COLLATE \"C\" NOT NULL,"
	" b TEXT COLLATE \"C\" NOT NULL,"
	" suite TEXT NOT NULL,"
	" since_ms BIGINT NOT NULL,"
	" PRIMARY KEY (a, b),"
	" CHECK (a <= b));"
	"CREATE INDEX conversations_b ON conversations (b);"
	/* A sequence never gives an id twice: a late ACK cannot hit newer mail. */
	"CREATE TABLE mail ("
	" id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
	" recipient TEXT COLLATE \"C\" NOT NULL,"
	" sender TEXT NOT NULL,"
	" client_id BIGINT NOT NULL,"
	" stored_ms BIGINT NOT NULL,"
	" expires_ms BIGINT NOT NULL,"
	" data BYTEA NOT NULL);"
	"CREATE INDEX mail_recipient ON mail (recipient, id);"
	"CREATE INDEX mail_expires ON mail (expires_ms) WHERE expires_ms > 0;"
	"CREATE TABLE mail_usage ("
	" recipient TEXT COLLATE \"C\" PRIMARY KEY NOT NULL,"
	" count BIGINT NOT NULL,"
	" bytes BIGINT NOT NULL);"
	"CREATE FUNCTION mail_usage_add() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
	" INSERT INTO mail_usage AS u (recipient, count, bytes)"
	" VALUES (NEW.recipient, 1, octet_length(NEW.data))"
	" ON CONFLICT (recipient) DO UPDATE SET count = u.count + 1,"
	" bytes = u.bytes + octet_length(NEW.data);"
	" RETURN NULL; END $$;"
	"CREATE FUNCTION mail_usage_del() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
	" UPDATE mail_usage SET count = count - 1, bytes = bytes - octet_length(OLD.data)"
	" WHERE recipient = OLD.recipient;"
	" DELETE FROM mail_usage WHERE recipient = OLD.recipient AND count <= 0;"
	" RETURN NULL; END $$;"
	"CREATE TRIGGER mail_usage_add AFTER INSERT ON mail FOR EACH ROW"
	" EXECUTE FUNCTION mail_usage_add();"
	"CREATE TRIGGER mail_usage_del AFTER DELETE ON mail FOR EACH ROW"
	" EXECUTE FUNCTION mail_usage_del();"
	"CREATE TABLE senders ("
	" name TEXT COLLATE \"C\" PRIMARY KEY NOT NULL,"
	" last_client_id BIGINT NOT NULL);"
	"CREATE TABLE accepted ("
	" sender TEXT COLLATE \"C\" NOT NULL,"
	" client_id BIGINT NOT NULL,"
	" accepted_ms BIGINT NOT NULL,"
	" PRIMARY KEY (sender, client_id));"
	"CREATE INDEX accepted_time ON accepted (accepted_ms);"
	"CREATE TABLE archive ("
	" id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
	" a TEXT COLLATE \"C\" NOT NULL,"
	" b TEXT COLLATE \"C\" NOT NULL,"
	" sender TEXT NOT NULL,"
	" stored_ms BIGINT NOT NULL,"
	" data BYTEA NOT NULL);"
	"CREATE INDEX archive_time ON archive (stored_ms);"
	"CREATE INDEX archive_pair ON archive (a, b);"
	"CREATE TABLE offers ("
	" sender TEXT COLLATE \"C\" NOT NULL,"
	" recipient TEXT COLLATE \"C\" NOT NULL,"
	" suites TEXT NOT NULL,"
	" since_ms BIGINT NOT NULL,"
	" PRIMARY KEY (sender, recipient));"
	"CREATE INDEX offers_recipient ON offers (recipient);",
	/* 1 -> 2 */
	"CREATE TABLE throttle ("
	" kind BIGINT NOT NULL,"
	" key TEXT COLLATE \"C\" NOT NULL,"
	" failures BIGINT NOT NULL,"
	" last_ms BIGINT NOT NULL,"
	" PRIMARY KEY (kind, key));"
	"CREATE INDEX throttle_time ON throttle (kind, last_ms);"
	"CREATE TABLE secrets ("
	" name TEXT COLLATE \"C\" PRIMARY KEY NOT NULL,"
	" value BYTEA NOT NULL);",
	/* 2 -> 3 */
	"CREATE TABLE identity_keys ("
	" name TEXT COLLATE \"C\" NOT NULL,"
	" suite TEXT COLLATE \"C\" NOT NULL,"
	" key BYTEA NOT NULL,"
	" updated_ms BIGINT NOT NULL,"
	" PRIMARY KEY (name, suite));",
};
_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == CHAT_STORE_SCHEMA_VERSION,
               "one migration per schema version");

enum {
	S_VERSION,
	S_ACC_GET, S_ACC_EXISTS, S_ACC_ADD, S_ACC_SET_VERIFIER, S_ACC_SET_GROUP, S_ACC_DEL, S_ACC_COUNT,
	S_FRIEND_DEL_ALL, S_CONV_DEL_ALL, S_MAIL_DEL_TO, S_SENDER_DEL, S_KEY_DEL_ALL,
	S_KEY_PUT, S_KEY_COUNT, S_KEY_LIST,
	S_FRIEND_GET, S_FRIEND_PUT, S_FRIEND_DEL, S_FRIEND_LIST,
	S_CONV_PUT, S_CONV_GET, S_CONV_DEL,
	S_OFFER_PUT, S_OFFER_GET, S_OFFER_DEL, S_OFFER_DEL_ALL,
	S_MAIL_ADD, S_MAIL_USAGE, S_MAIL_FOR, S_MAIL_GET, S_MAIL_DEL, S_MAIL_EXPIRED,
	S_MAIL_DEL_EXPIRED,
	S_SENDER_GET, S_SENDER_PUT, S_ACCEPTED_GET, S_ACCEPTED_PUT, S_ACCEPTED_PRUNE,
	S_ARCHIVE_ADD, S_ARCHIVE_PRUNE, S_ARCHIVE_COUNT,
	S_THR_PUT, S_THR_DEL, S_THR_LIST, S_THR_PRUNE_AGE, S_THR_PRUNE_COUNT,
	S_SECRET_ADD, S_SECRET_GET,
	S_COUNT
};

/* params: one letter per $n: t text, i int8, b bytea, n int8 or NULL (a
 * negative value: LIMIT NULL is no limit). */
static const struct {
	const char *sql;
	const char *params;
	const char *what;
} stmts[S_COUNT] = {
	[S_VERSION] = { "SELECT version FROM chat_schema", "", "reading the schema version" },
	[S_ACC_GET] = { "SELECT grp, salt, iterations, stored_key, server_key, created_ms"
	                " FROM accounts WHERE name = $1", "t", "reading an account" },
	[S_ACC_EXISTS] = { "SELECT 1 FROM accounts WHERE name = $1", "t", "looking up an account" },
	[S_ACC_ADD] = { "INSERT INTO accounts (name, grp, salt, iterations, stored_key, server_key,"
	                " created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)"
	                " ON CONFLICT (name) DO NOTHING", "tibibbi", "adding an account" },
	[S_ACC_SET_VERIFIER] = { "UPDATE accounts SET salt = $2, iterations = $3, stored_key = $4,"
	                         " server_key = $5 WHERE name = $1", "tbibb", "changing a verifier" },
	[S_ACC_SET_GROUP] = { "UPDATE accounts SET grp = $2 WHERE name = $1", "ti",
	                      "changing an account's group" },
	[S_ACC_DEL] = { "DELETE FROM accounts WHERE name = $1", "t", "removing an account" },
	[S_ACC_COUNT] = { "SELECT count(*) FROM accounts WHERE $1 = 0 OR grp = $1", "i",
	                  "counting accounts" },
	[S_FRIEND_DEL_ALL] = { "DELETE FROM friends WHERE a = $1 OR b = $1", "t",
	                       "removing an account's friendships" },
	[S_CONV_DEL_ALL] = { "DELETE FROM conversations WHERE a = $1 OR b = $1", "t",
	                     "removing an account's conversations" },
	[S_MAIL_DEL_TO] = { "DELETE FROM mail WHERE recipient = $1", "t", "removing an account's mail" },
	[S_SENDER_DEL] = { "DELETE FROM senders WHERE name = $1", "t", "removing a sender's client id" },
	[S_KEY_DEL_ALL] = { "DELETE FROM identity_keys WHERE name = $1", "t",
	                    "removing an account's identity keys" },
	[S_KEY_PUT] = { "INSERT INTO identity_keys (name, suite, key, updated_ms) VALUES ($1, $2, $3, $4)"
	                " ON CONFLICT (name, suite) DO UPDATE SET key = EXCLUDED.key,"
	                " updated_ms = EXCLUDED.updated_ms", "ttbi", "storing an identity key" },
	[S_KEY_COUNT] = { "SELECT count(*) FROM identity_keys WHERE name = $1 AND suite <> $2", "tt",
	                  "counting identity keys" },
	[S_KEY_LIST] = { "SELECT suite, key FROM identity_keys WHERE name = $1 ORDER BY suite", "t",
	                 "reading identity keys" },
	[S_FRIEND_GET] = { "SELECT state FROM friends WHERE a = $1 AND b = $2", "tt",
	                   "reading a friendship" },
	[S_FRIEND_PUT] = { "INSERT INTO friends (a, b, state) VALUES ($1, $2, $3)"
	                   " ON CONFLICT (a, b) DO UPDATE SET state = EXCLUDED.state", "tti",
	                   "writing a friendship" },
	[S_FRIEND_DEL] = { "DELETE FROM friends WHERE (a = $1 AND b = $2) OR (a = $2 AND b = $1)", "tt",
	                   "removing a friendship" },
	[S_FRIEND_LIST] = { "SELECT b, state FROM friends WHERE a = $1 ORDER BY b", "t",
	                    "listing friends" },
	[S_CONV_PUT] = { "INSERT INTO conversations (a, b, suite, since_ms) VALUES ($1, $2, $3, $4)"
	                 " ON CONFLICT (a, b) DO UPDATE SET suite = EXCLUDED.suite,"
	                 " since_ms = EXCLUDED.since_ms", "ttti", "recording a conversation" },
	[S_CONV_GET] = { "SELECT suite FROM conversations WHERE a = $1 AND b = $2", "tt",
	                 "reading a conversation" },
	[S_CONV_DEL] = { "DELETE FROM conversations WHERE a = $1 AND b = $2", "tt",
	                 "removing a conversation" },
	[S_OFFER_PUT] = { "INSERT INTO offers (sender, recipient, suites, since_ms) VALUES ($1, $2, $3, $4)"
	                  " ON CONFLICT (sender, recipient) DO UPDATE SET suites = EXCLUDED.suites,"
	                  " since_ms = EXCLUDED.since_ms", "ttti", "recording an offer" },
	[S_OFFER_GET] = { "SELECT suites FROM offers WHERE sender = $1 AND recipient = $2", "tt",
	                  "reading an offer" },
	[S_OFFER_DEL] = { "DELETE FROM offers WHERE sender = $1 AND recipient = $2", "tt",
	                  "removing an offer" },
	[S_OFFER_DEL_ALL] = { "DELETE FROM offers WHERE sender = $1 OR recipient = $1", "t",
	                      "removing an account's offers" },
	/* The lock on the recipient is taken before the identity gives the
	 * id (the CTE's row is read first) and held until the commit. */
	[S_MAIL_ADD] = { "WITH l AS (SELECT pg_advisory_xact_lock(" LOCK_MAIL ", hashtext($1)))"
	                 " INSERT INTO mail (recipient, sender, client_id, stored_ms, expires_ms, data)"
	                 " SELECT $1, $2, $3, $4, $5, $6 FROM l RETURNING id", "ttiiib",
	                 "storing mail" },
	[S_MAIL_USAGE] = { "SELECT coalesce(sum(count), 0)::bigint, coalesce(sum(bytes), 0)::bigint"
	                   " FROM mail_usage WHERE recipient = $1", "t", "measuring a mail queue" },
	[S_MAIL_FOR] = { "SELECT id, sender, client_id, stored_ms, expires_ms, data FROM mail"
	                 " WHERE recipient = $1 AND id > $2 ORDER BY id LIMIT $3", "tin",
	                 "reading mail" },
	[S_MAIL_GET] = { "SELECT sender, client_id, stored_ms, expires_ms, octet_length(data)::bigint"
	                 " FROM mail WHERE id = $1 AND recipient = $2", "it", "reading mail" },
	[S_MAIL_DEL] = { "DELETE FROM mail WHERE id = $1", "i", "removing mail" },
	[S_MAIL_EXPIRED] = { "SELECT id, recipient, sender, client_id, stored_ms, expires_ms, data"
	                     " FROM mail WHERE expires_ms > 0 AND expires_ms <= $1 ORDER BY id", "i",
	                     "reading expired mail" },
	[S_MAIL_DEL_EXPIRED] = { "DELETE FROM mail WHERE expires_ms > 0 AND expires_ms <= $1"
	                         " AND id <= $2", "ii", "removing expired mail" },
	[S_SENDER_GET] = { "SELECT last_client_id FROM senders WHERE name = $1", "t",
	                   "reading a sender's client id" },
	[S_SENDER_PUT] = { "INSERT INTO senders (name, last_client_id) VALUES ($1, $2)"
	                   " ON CONFLICT (name) DO UPDATE SET last_client_id = EXCLUDED.last_client_id",
	                   "ti", "writing a sender's client id" },
	[S_ACCEPTED_GET] = { "SELECT 1 FROM accepted WHERE sender = $1 AND client_id = $2", "ti",
	                     "looking up an accepted client id" },
	[S_ACCEPTED_PUT] = { "INSERT INTO accepted (sender, client_id, accepted_ms) VALUES ($1, $2, $3)"
	                     " ON CONFLICT DO NOTHING", "tii", "recording an accepted client id" },
	[S_ACCEPTED_PRUNE] = { "DELETE FROM accepted WHERE accepted_ms < $1", "i",
	                       "forgetting old accepted client ids" },
	[S_ARCHIVE_ADD] = { "INSERT INTO archive (a, b, sender, stored_ms, data)"
	                    " VALUES ($1, $2, $3, $4, $5)", "tttib", "archiving" },
	[S_ARCHIVE_PRUNE] = { "DELETE FROM archive WHERE stored_ms < $1", "i", "pruning the archive" },
	[S_ARCHIVE_COUNT] = { "SELECT count(*) FROM archive WHERE a = $1 AND b = $2", "tt",
	                      "counting archived messages" },
	[S_THR_PUT] = { "INSERT INTO throttle (kind, key, failures, last_ms) VALUES ($1, $2, $3, $4)"
	                " ON CONFLICT (kind, key) DO UPDATE SET failures = EXCLUDED.failures,"
	                " last_ms = EXCLUDED.last_ms", "itii", "recording a throttling count" },
	[S_THR_DEL] = { "DELETE FROM throttle WHERE kind = $1 AND key = $2", "it",
	                "clearing a throttling count" },
	[S_THR_LIST] = { "SELECT key, failures, last_ms FROM throttle WHERE kind = $1"
	                 " ORDER BY last_ms DESC LIMIT $2", "in", "reading throttling counts" },
	[S_THR_PRUNE_AGE] = { "DELETE FROM throttle WHERE kind = $1 AND last_ms < $2", "ii",
	                      "forgetting old throttling counts" },
	[S_THR_PRUNE_COUNT] = { "DELETE FROM throttle WHERE kind = $1 AND key NOT IN"
	                        " (SELECT key FROM throttle WHERE kind = $1 ORDER BY last_ms DESC"
	                        " LIMIT $2)", "ii", "bounding the throttling counts" },
	[S_SECRET_ADD] = { "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
	                   "tb", "creating a secret" },
	[S_SECRET_GET] = { "SELECT value FROM secrets WHERE name = $1", "t", "reading a secret" },
};

struct chat_store {
	const struct chat_store_backend *backend; /* first: store_backend.h */
	PGconn *conn;
	char label[512];    /* postgresql://USER@HOST:PORT/DB, never the password */
	char *password;     /* from the URL, to scrub it from messages; NULL if none */
	int prepared;       /* the statements exist on this connection */
	int in_tx;          /* chat_store_begin() is open */
	int depth;          /* own transactions / savepoints of running functions */
	int created;        /* chat_store_open made the schema */
	int busy[S_COUNT];  /* a callback of this statement's rows is running */
	char err[1024];
};

static const struct chat_store_backend pg_backend;

/* Replace every copy of the password in s->err by "***". */
static void scrub(struct chat_store *s)
{
	char out[sizeof(s->err)];
	size_t n, o = 0;
	const char *p = s->err, *hit;

	if (!s->password || !(n = strlen(s->password)))
		return;
	while ((hit = strstr(p, s->password)) && o < sizeof(out) - 1) {
		o += (size_t)snprintf(out + o, sizeof(out) - o, "%.*s***", (int)(hit - p), p);
		p = hit + n;
	}
	if (o >= sizeof(out))
		o = sizeof(out) - 1;
	snprintf(out + o, sizeof(out) - o, "%s", p);
	memcpy(s->err, out, sizeof(out));
	explicit_bzero(out, sizeof(out));
}

static void errf(struct chat_store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void errf(struct chat_store *s, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	/* libpq's messages end with a newline, and some hold several lines. */
	n = strlen(s->err);
	while (n && (s->err[n - 1] == '\n' || s->err[n - 1] == ' '))
		s->err[--n] = '\0';
	for (char *c = s->err; *c; c++)
		if (*c == '\n' || *c == '\t')
			*c = ' ';
	scrub(s);
}

/* The server's or libpq's reason for a failure. */
static const char *why(struct chat_store *s, const PGresult *r)
{
	const char *m = r ? PQresultErrorMessage(r) : NULL;

	if (!m || !*m)
		m = PQerrorMessage(s->conn);
	return m && *m ? m : "unknown error";
}

static int bad_name(const char *n)
{
	return !n || !*n || strlen(n) > NAME_MAX_LEN;
}

static void no_notices(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* ---- running statements */

static int prepare_all(struct chat_store *s)
{
	for (int i = 0; i < S_COUNT; i++) {
		Oid types[8];
		char name[16];
		int n = (int)strlen(stmts[i].params);

		for (int k = 0; k < n; k++)
			types[k] = stmts[i].params[k] == 'b' ? OID_BYTEA : stmts[i].params[k] == 't'
			                                                       ? OID_TEXT : OID_INT8;
		snprintf(name, sizeof(name), "chat%d", i);
		PGresult *r = PQprepare(s->conn, name, stmts[i].sql, n, types);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			errf(s, "%s: preparing \"%s\": %s", s->label, stmts[i].sql, why(s, r));
			PQclear(r);
			return CHAT_ERR_IO;
		}
		PQclear(r);
	}
	s->prepared = 1;
	return CHAT_OK;
}

/* The connection is lost: outside a transaction, one PQreset (and the
 * statements prepared again); inside one, the transaction is gone with it. */
static int reconnect(struct chat_store *s)
{
	if (PQstatus(s->conn) == CONNECTION_OK)
		return CHAT_OK;
	if (s->in_tx || s->depth > 0) {
		errf(s, "%s: the connection to the server was lost in a transaction: %s", s->label,
		     PQerrorMessage(s->conn));
		return CHAT_ERR_IO;
	}
	s->prepared = 0;
	PQreset(s->conn);
	if (PQstatus(s->conn) != CONNECTION_OK) {
		errf(s, "%s: the connection to the server was lost and cannot be made again: %s",
		     s->label, PQerrorMessage(s->conn));
		return CHAT_ERR_IO;
	}
	PQsetNoticeProcessor(s->conn, no_notices, NULL);
	return prepare_all(s);
}

/* Run statement id with its parameters (per stmts[id].params: t const char *,
 * i int64_t, b size_t len + const void *, n int64_t, negative for NULL).
 * The result, or NULL with the error text set. */
static PGresult *run_va(struct chat_store *s, int id, va_list ap)
{
	const char *values[8];
	int lens[8], formats[8];
	uint64_t ints[8];
	const char *p = stmts[id].params;
	int n = (int)strlen(p);
	char name[16];
	PGresult *r;

	for (int k = 0; k < n; k++) {
		formats[k] = 1;
		switch (p[k]) {
		case 't':
			values[k] = va_arg(ap, const char *);
			lens[k] = (int)strlen(values[k]);
			break;
		case 'b': {
			size_t len = va_arg(ap, size_t);
			const void *v = va_arg(ap, const void *);
			values[k] = len ? v : "";
			lens[k] = (int)len;
			break;
		}
		default: {
			int64_t v = va_arg(ap, int64_t);
			ints[k] = htobe64((uint64_t)v);
			values[k] = p[k] == 'n' && v < 0 ? NULL : (const char *)&ints[k];
			lens[k] = 8;
			break;
		}
		}
	}
	if (PQstatus(s->conn) != CONNECTION_OK || !s->prepared) {
		if (reconnect(s) != CHAT_OK)
			return NULL;
		if (!s->prepared && prepare_all(s) != CHAT_OK)
			return NULL;
	}
	snprintf(name, sizeof(name), "chat%d", id);
	r = PQexecPrepared(s->conn, name, n, values, lens, formats, 1);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
		errf(s, "%s: %s: %s", s->label, stmts[id].what, why(s, r));
		PQclear(r);
		return NULL;
	}
	return r;
}

static PGresult *run_params(struct chat_store *s, int id, ...)
{
	PGresult *r;
	va_list ap;

	va_start(ap, id);
	r = run_va(s, id, ap);
	va_end(ap);
	return r;
}

/* A statement without rows: CHAT_OK or CHAT_ERR_IO; *changed (may be
 * NULL) its row count. */
static int run(struct chat_store *s, long *changed, int id, ...)
{
	PGresult *r;
	va_list ap;

	va_start(ap, id);
	r = run_va(s, id, ap);
	va_end(ap);
	if (!r)
		return CHAT_ERR_IO;
	if (changed)
		*changed = strtol(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	return CHAT_OK;
}

static int64_t col_i64(const PGresult *r, int row, int col)
{
	uint64_t v;

	if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
		return 0;
	memcpy(&v, PQgetvalue(r, row, col), 8);
	return (int64_t)be64toh(v);
}

/* One-off SQL (no parameters, text results): migrations and setup. */
static int exec_sql(struct chat_store *s, const char *sql, const char *what, PGresult **out)
{
	PGresult *r = PQexec(s->conn, sql);
	ExecStatusType st = PQresultStatus(r);

	if (out)
		*out = NULL;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		errf(s, "%s: %s: %s", s->label, what, why(s, r));
		PQclear(r);
		return CHAT_ERR_IO;
	}
	if (out)
		*out = r;
	else
		PQclear(r);
	return CHAT_OK;
}

/* ---- transactions */

static int pg_check(struct chat_store *s);

static int tx_status_ok(struct chat_store *s)
{
	return PQtransactionStatus(s->conn) == PQTRANS_INTRANS;
}

/* A transaction the server aborted after an error stays failed until the
 * caller ends it. */
static int usable(struct chat_store *s)
{
	if (s->in_tx && !tx_status_ok(s)) {
		errf(s, "%s: the transaction was rolled back after an earlier error", s->label);
		return CHAT_ERR_IO;
	}
	return CHAT_OK;
}

/* BEGIN, once more after a reconnect if the connection turned out to be
 * dead (a server restarted while the relay was idle): nothing was done yet. */
static int begin_tx(struct chat_store *s)
{
	int rc = exec_sql(s, "BEGIN", "starting a transaction", NULL);

	if (rc != CHAT_OK && PQstatus(s->conn) != CONNECTION_OK && reconnect(s) == CHAT_OK)
		rc = exec_sql(s, "BEGIN", "starting a transaction", NULL);
	return rc;
}

static int tx_enter(struct chat_store *s, int *savepoint)
{
	int rc;

	*savepoint = s->in_tx || s->depth > 0;
	if (!*savepoint && (rc = pg_check(s)))
		return rc;
	rc = *savepoint ? exec_sql(s, "SAVEPOINT chat_store_op", "starting a savepoint", NULL)
	                : begin_tx(s);
	if (rc == CHAT_OK)
		s->depth++;
	return rc;
}

static void rollback_keep_err(struct chat_store *s, const char *sql)
{
	char keep[sizeof(s->err)];

	memcpy(keep, s->err, sizeof(keep));
	if (PQtransactionStatus(s->conn) != PQTRANS_IDLE)
		exec_sql(s, sql, "rolling back", NULL);
	memcpy(s->err, keep, sizeof(keep));
}

/* COMMIT of an aborted transaction "succeeds" as a ROLLBACK: refused here. */
static int commit(struct chat_store *s)
{
	if (!tx_status_ok(s)) {
		if (PQstatus(s->conn) != CONNECTION_OK)
			errf(s, "%s: committing: the connection to the server was lost: %s", s->label,
			     PQerrorMessage(s->conn));
		else
			errf(s, "%s: the transaction was rolled back after an earlier error", s->label);
		return CHAT_ERR_IO;
	}
	return exec_sql(s, "COMMIT", "committing", NULL);
}

static int tx_leave(struct chat_store *s, int savepoint, int rc)
{
	s->depth--;
	if (savepoint) {
		if (rc != CHAT_OK)
			rollback_keep_err(s, "ROLLBACK TO chat_store_op");
		if (tx_status_ok(s)) {
			int r = exec_sql(s, "RELEASE chat_store_op", "releasing a savepoint", NULL);
			if (rc == CHAT_OK)
				rc = r;
		}
		return rc;
	}
	if (rc == CHAT_OK)
		rc = commit(s);
	if (rc != CHAT_OK)
		rollback_keep_err(s, "ROLLBACK");
	return rc;
}

/* ---- open */

/* The label naming the database in messages, from what libpq tried. */
static void make_label(struct chat_store *s)
{
	const char *host = PQhost(s->conn), *port = PQport(s->conn), *db = PQdb(s->conn),
	           *user = PQuser(s->conn);

	if (!host || !*host)
		host = "localhost";
	snprintf(s->label, sizeof(s->label), "postgresql://%s%s%s%s%s/%s", user && *user ? user : "",
	         user && *user ? "@" : "", host, port && *port ? ":" : "", port ? port : "",
	         db ? db : "");
}

/* Connect (no query yet): CHAT_OK, or CHAT_ERR_IO/NOMEM with s->err. */
static int connect_db(struct chat_store *s, const char *url)
{
	PQconninfoOption *opts;
	char *perr = NULL;
	/* The URL's own settings come last and win. */
	const char *keys[] = { "connect_timeout", "application_name", "dbname", NULL };
	const char *vals[] = { CONNECT_TIMEOUT, "chat-relay", url, NULL };

	opts = PQconninfoParse(url, &perr);
	if (!opts) {
		/* libpq names the bad part; the URL itself (and a password in it) is not repeated. */
		errf(s, "relay.store: not a usable PostgreSQL URL: %s", perr ? perr : "out of memory");
		PQfreemem(perr);
		return perr ? CHAT_ERR_INVALID : CHAT_ERR_NOMEM;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (!strcmp(o->keyword, "password") && o->val && *o->val && !s->password)
			s->password = strdup(o->val);
	PQconninfoFree(opts);
	s->conn = PQconnectdbParams(keys, vals, 1);
	if (!s->conn) {
		errf(s, "relay.store: out of memory");
		return CHAT_ERR_NOMEM;
	}
	make_label(s);
	if (PQstatus(s->conn) != CONNECTION_OK) {
		errf(s, "%s: cannot connect: %s", s->label, PQerrorMessage(s->conn));
		return CHAT_ERR_IO;
	}
	PQsetNoticeProcessor(s->conn, no_notices, NULL);
	return CHAT_OK;
}

/* The schema version (0: no chat_schema table); CHAT_ERR_IO for a
 * database of something else or a version newer than this program's. */
static int read_version(struct chat_store *s, int *version)
{
	PGresult *r;
	int rc;

	*version = 0;
	if ((rc = exec_sql(s, "SELECT to_regclass('chat_schema') IS NOT NULL,"
	                      " (SELECT count(*) FROM pg_class c JOIN pg_namespace n"
	                      " ON n.oid = c.relnamespace WHERE n.nspname = current_schema()"
	                      " AND c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p'))",
	                   "reading the schema", &r)))
		return rc;
	int have = !strcmp(PQgetvalue(r, 0, 0), "t");
	long objects = strtol(PQgetvalue(r, 0, 1), NULL, 10);
	PQclear(r);
	if (!have) {
		if (objects > 0) {
			errf(s, "%s: a database of something else (no chat_schema table, but %ld other "
			     "tables in its schema): refusing to change it", s->label, objects);
			return CHAT_ERR_IO;
		}
		return CHAT_OK;
	}
	if ((rc = exec_sql(s, "SELECT version FROM chat_schema", "reading the schema version", &r)))
		return rc;
	if (PQntuples(r) != 1) {
		errf(s, "%s: the table chat_schema holds %d rows, not 1 (damaged)", s->label,
		     PQntuples(r));
		PQclear(r);
		return CHAT_ERR_IO;
	}
	long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	if (v < 0 || v > CHAT_STORE_SCHEMA_VERSION) {
		errf(s, "%s: schema version %lld is newer than this program knows (%d): use the newer "
		     "program that wrote it", s->label, v, CHAT_STORE_SCHEMA_VERSION);
		return CHAT_ERR_IO;
	}
	*version = (int)v;
	return CHAT_OK;
}

/* Under the migration lock, so relays starting together migrate once. */
static int migrate(struct chat_store *s)
{
	char sql[80];
	int rc, v = 0;

	if ((rc = exec_sql(s, "SELECT pg_advisory_lock(" LOCK_MIGRATE ")",
	                   "taking the migration lock", NULL)))
		return rc;
	while ((rc = read_version(s, &v)) == CHAT_OK && v < CHAT_STORE_SCHEMA_VERSION) {
		if (v == 0)
			s->created = 1;
		snprintf(sql, sizeof(sql), "UPDATE chat_schema SET version = %d", v + 1);
		rc = exec_sql(s, "BEGIN", "starting a migration", NULL);
		if (rc == CHAT_OK && (rc = exec_sql(s, migrations[v], "migrating the schema", NULL)))
			errf(s, "%s (from version %d to %d)", s->err, v, v + 1);
		if (rc == CHAT_OK)
			rc = exec_sql(s, sql, "setting the schema version", NULL);
		if (rc == CHAT_OK)
			rc = exec_sql(s, "COMMIT", "committing a migration", NULL);
		if (rc != CHAT_OK) {
			rollback_keep_err(s, "ROLLBACK");
			break;
		}
	}
	if (PQstatus(s->conn) == CONNECTION_OK) {
		char keep[sizeof(s->err)];
		memcpy(keep, s->err, sizeof(keep));
		exec_sql(s, "SELECT pg_advisory_unlock(" LOCK_MIGRATE ")", "releasing the lock", NULL);
		memcpy(s->err, keep, sizeof(keep));
	}
	return rc;
}

static void pg_close(struct chat_store *s)
{
	if (!s)
		return;
	if (s->conn)
		PQfinish(s->conn); /* an open transaction is rolled back by the server */
	if (s->password) {
		explicit_bzero(s->password, strlen(s->password));
		free(s->password);
	}
	explicit_bzero(s->err, sizeof(s->err));
	free(s);
}

static int pg_open(const char *url, struct chat_store **out, size_t errlen, char *err)
{
	struct chat_store *s;
	int rc;

	if (out)
		*out = NULL;
	if (errlen)
		err[0] = '\0';
	if (!url || !out)
		return CHAT_ERR_INVALID;
	s = calloc(1, sizeof(*s));
	if (!s) {
		if (errlen)
			snprintf(err, errlen, "relay.store: out of memory");
		return CHAT_ERR_NOMEM;
	}
	s->backend = &pg_backend;
	snprintf(s->label, sizeof(s->label), "postgresql");
	rc = connect_db(s, url);
	/* Every commit waits for the server's durable write (the default,
	 * said here so that a server's setting cannot weaken "stored"). */
	if (rc == CHAT_OK)
		rc = exec_sql(s, "SET synchronous_commit = on", "setting synchronous_commit", NULL);
	if (rc == CHAT_OK)
		rc = migrate(s);
	if (rc == CHAT_OK)
		rc = prepare_all(s);
	if (rc == CHAT_OK) {
		*out = s;
		return CHAT_OK;
	}
	if (errlen)
		snprintf(err, errlen, "%s", s->err);
	pg_close(s);
	return rc;
}

/* Connect and read the version; nothing is written. */
static int pg_probe(const char *url, int *version, int *dir_missing, size_t errlen, char *err)
{
	struct chat_store s = { .backend = &pg_backend };
	int rc;

	*version = 0;
	*dir_missing = 0;
	snprintf(s.label, sizeof(s.label), "postgresql");
	rc = connect_db(&s, url);
	if (rc == CHAT_OK)
		rc = exec_sql(&s, "SET default_transaction_read_only = on", "going read-only", NULL);
	if (rc == CHAT_OK)
		rc = read_version(&s, version);
	if (rc != CHAT_OK && rc != CHAT_ERR_NOMEM)
		rc = CHAT_ERR_IO;
	if (errlen)
		snprintf(err, errlen, "%s", rc ? s.err : "");
	if (s.conn)
		PQfinish(s.conn);
	if (s.password) {
		explicit_bzero(s.password, strlen(s.password));
		free(s.password);
	}
	return rc;
}

static const char *pg_error(const struct chat_store *s)
{
	return s ? s->err : "no store";
}

static int pg_created(const struct chat_store *s)
{
	return s && s->created;
}

static int pg_check(struct chat_store *s)
{
	if (!s)
		return CHAT_ERR_INVALID;
	return reconnect(s);
}

/* Nothing on a server is "gone" the way a file is: a lost connection is an
 * I/O error that the next check may repair. */
static const char *pg_gone(const struct chat_store *s)
{
	(void)s;
	return NULL;
}

static int pg_schema_version(struct chat_store *s)
{
	PGresult *r;
	int v;

	if (!s)
		return CHAT_ERR_INVALID;
	if (!(r = run_params(s, S_VERSION)))
		return CHAT_ERR_IO;
	v = PQntuples(r) == 1 ? (int)col_i64(r, 0, 0) : 0;
	PQclear(r);
	return v;
}

static int pg_begin(struct chat_store *s)
{
	int rc;

	if (!s)
		return CHAT_ERR_INVALID;
	if (s->in_tx || s->depth > 0) {
		errf(s, "%s: a transaction is already open (nesting is not supported)", s->label);
		return CHAT_ERR_STATE;
	}
	if ((rc = pg_check(s)))
		return rc;
	rc = begin_tx(s);
	if (rc == CHAT_OK)
		s->in_tx = 1;
	return rc;
}

static int pg_commit(struct chat_store *s)
{
	int rc;

	if (!s)
		return CHAT_ERR_INVALID;
	if (!s->in_tx || s->depth > 0) {
		errf(s, "%s: commit without a transaction", s->label);
		return CHAT_ERR_STATE;
	}
	s->in_tx = 0;
	rc = commit(s);
	if (rc != CHAT_OK)
		rollback_keep_err(s, "ROLLBACK");
	return rc;
}

static void pg_rollback(struct chat_store *s)
{
	if (!s || !s->in_tx || s->depth > 0)
		return;
	s->in_tx = 0;
	if (PQtransactionStatus(s->conn) != PQTRANS_IDLE)
		exec_sql(s, "ROLLBACK", "rolling back", NULL);
}

static int pg_in_transaction(const struct chat_store *s)
{
	return s && s->in_tx;
}

/* ---- accounts */

static int check_verifier(const struct chat_scram_verifier *v)
{
	return v && v->salt_len <= sizeof(v->salt) && v->iterations > 0;
}

/* SELECT returning at most a row: 1 row, 0 none, or CHAT_ERR_IO; *out the
 * result (to clear) when 1. */
static int one_row(PGresult *r, PGresult **out)
{
	*out = NULL;
	if (!r)
		return CHAT_ERR_IO;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return 0;
	}
	*out = r;
	return 1;
}

static int pg_account_exists(struct chat_store *s, const char *name)
{
	PGresult *r;
	int rc;

	if (!s || bad_name(name))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	rc = one_row(run_params(s, S_ACC_EXISTS, name), &r);
	PQclear(r);
	return rc < 0 ? rc : rc ? CHAT_OK : CHAT_ERR_NOTFOUND;
}

static int pg_account_get(struct chat_store *s, const char *name, struct chat_account *a)
{
	PGresult *r;
	int64_t it;
	int rc;

	if (a)
		memset(a, 0, sizeof(*a));
	if (!s || !a || bad_name(name))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	rc = one_row(run_params(s, S_ACC_GET, name), &r);
	if (rc <= 0)
		return rc == 0 ? CHAT_ERR_NOTFOUND : rc;
	rc = CHAT_ERR_IO;
	memcpy(a->name, name, strlen(name) + 1);
	a->group = (int)col_i64(r, 0, 0);
	size_t n = (size_t)PQgetlength(r, 0, 1);
	if (n > sizeof(a->v.salt))
		goto damaged;
	memcpy(a->v.salt, PQgetvalue(r, 0, 1), n);
	a->v.salt_len = n;
	it = col_i64(r, 0, 2);
	if (it <= 0 || it > UINT_MAX)
		goto damaged;
	a->v.iterations = (unsigned)it;
	if (PQgetlength(r, 0, 3) != CHAT_SCRAM_KEY || PQgetlength(r, 0, 4) != CHAT_SCRAM_KEY)
		goto damaged;
	memcpy(a->v.stored_key, PQgetvalue(r, 0, 3), CHAT_SCRAM_KEY);
	memcpy(a->v.server_key, PQgetvalue(r, 0, 4), CHAT_SCRAM_KEY);
	a->created_ms = col_i64(r, 0, 5);
	rc = CHAT_OK;
	goto out;
damaged:
	errf(s, "%s: account %s: the stored verifier is malformed (damaged row)", s->label, name);
out:
	PQclear(r);
	if (rc != CHAT_OK)
		explicit_bzero(a, sizeof(*a));
	return rc;
}

static int pg_account_add(struct chat_store *s, const struct chat_account *a)
{
	long changed = 0;
	int rc;

	if (!s || !a || memchr(a->name, '\0', sizeof(a->name)) == NULL || bad_name(a->name) ||
	    (a->group != CHAT_GROUP_REGULAR && a->group != CHAT_GROUP_ADMIN) ||
	    !check_verifier(&a->v))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	rc = run(s, &changed, S_ACC_ADD, a->name, (int64_t)a->group, a->v.salt_len,
	         (const void *)a->v.salt, (int64_t)a->v.iterations, (size_t)CHAT_SCRAM_KEY,
	         (const void *)a->v.stored_key, (size_t)CHAT_SCRAM_KEY,
	         (const void *)a->v.server_key, a->created_ms);
	if (rc == CHAT_OK && changed == 0) {
		errf(s, "%s: account %s exists already", s->label, a->name);
		rc = CHAT_ERR_INVALID;
	}
	return rc;
}

static int changed_or_notfound(struct chat_store *s, int rc, long changed, int id, const char *name)
{
	if (rc == CHAT_OK && changed == 0) {
		errf(s, "%s: %s: no such row (%s)", s->label, stmts[id].what, name);
		rc = CHAT_ERR_NOTFOUND;
	}
	return rc;
}

static int pg_account_set_verifier(struct chat_store *s, const char *name,
                                   const struct chat_scram_verifier *v)
{
	long changed = 0;
	int rc;

	if (!s || bad_name(name) || !check_verifier(v))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	rc = run(s, &changed, S_ACC_SET_VERIFIER, name, v->salt_len, (const void *)v->salt,
	         (int64_t)v->iterations, (size_t)CHAT_SCRAM_KEY, (const void *)v->stored_key,
	         (size_t)CHAT_SCRAM_KEY, (const void *)v->server_key);
	return changed_or_notfound(s, rc, changed, S_ACC_SET_VERIFIER, name);
}

static int pg_account_set_group(struct chat_store *s, const char *name, int group)
{
	long changed = 0;
	int rc;

	if (!s || bad_name(name) || (group != CHAT_GROUP_REGULAR && group != CHAT_GROUP_ADMIN))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	rc = run(s, &changed, S_ACC_SET_GROUP, name, (int64_t)group);
	return changed_or_notfound(s, rc, changed, S_ACC_SET_GROUP, name);
}

static int pg_account_remove(struct chat_store *s, const char *name)
{
	static const int cascade[] = { S_FRIEND_DEL_ALL, S_CONV_DEL_ALL, S_OFFER_DEL_ALL, S_MAIL_DEL_TO,
	                               S_SENDER_DEL, S_KEY_DEL_ALL };
	long changed = 0;
	int rc, sp;

	if (!s || bad_name(name))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = tx_enter(s, &sp)))
		return rc;
	rc = run(s, &changed, S_ACC_DEL, name);
	rc = changed_or_notfound(s, rc, changed, S_ACC_DEL, name);
	for (size_t i = 0; rc == CHAT_OK && i < sizeof(cascade) / sizeof(cascade[0]); i++)
		rc = run(s, NULL, cascade[i], name);
	return tx_leave(s, sp, rc);
}

static int pg_account_count(struct chat_store *s, int group, size_t *count)
{
	PGresult *r;
	int rc;

	if (count)
		*count = 0;
	if (!s || !count)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	rc = one_row(run_params(s, S_ACC_COUNT, (int64_t)group), &r);
	if (rc == 1)
		*count = (size_t)col_i64(r, 0, 0);
	PQclear(r);
	return rc < 0 ? rc : CHAT_OK;
}

/* ---- friends */

static int mirror(int state)
{
	switch (state) {
	case CHAT_FRIEND_ASKED:
		return CHAT_FRIEND_ASKED_BY;
	case CHAT_FRIEND_ASKED_BY:
		return CHAT_FRIEND_ASKED;
	default:
		return state;
	}
}

static int pg_friend_get(struct chat_store *s, const char *a, const char *b, int *state)
{
	PGresult *r;
	int rc;

	if (state)
		*state = CHAT_FRIEND_NONE;
	if (!s || bad_name(a) || bad_name(b) || !state)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	rc = one_row(run_params(s, S_FRIEND_GET, a, b), &r);
	if (rc == 1) {
		int64_t v = col_i64(r, 0, 0);
		if (v < CHAT_FRIEND_YES || v > CHAT_FRIEND_ASKED_BY) {
			errf(s, "%s: friendship %s/%s: unknown state %lld (damaged row)", s->label, a, b,
			     (long long)v);
			rc = CHAT_ERR_IO;
		} else {
			*state = (int)v;
		}
	}
	PQclear(r);
	return rc < 0 ? rc : CHAT_OK;
}

static int pg_friend_set(struct chat_store *s, const char *a, const char *b, int state)
{
	int rc, sp;

	if (!s || bad_name(a) || bad_name(b) || strcmp(a, b) == 0 || state < CHAT_FRIEND_NONE ||
	    state > CHAT_FRIEND_ASKED_BY)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	if (state == CHAT_FRIEND_NONE)
		return run(s, NULL, S_FRIEND_DEL, a, b);
	if ((rc = tx_enter(s, &sp)))
		return rc;
	rc = run(s, NULL, S_FRIEND_PUT, a, b, (int64_t)state);
	if (rc == CHAT_OK)
		rc = run(s, NULL, S_FRIEND_PUT, b, a, (int64_t)mirror(state));
	return tx_leave(s, sp, rc);
}

/* Rows of a listing are fetched whole before the first callback, so a
 * callback may call the store; calling the same listing again from its
 * own callback is refused as with SQLite. */
static int listing(struct chat_store *s, int id, const char *fn, PGresult **out)
{
	*out = NULL;
	if (s->busy[id]) {
		errf(s, "%s: %s called from its own callback", s->label, fn);
		return CHAT_ERR_STATE;
	}
	return usable(s);
}

static int pg_friends(struct chat_store *s, const char *name, chat_store_friend_cb cb, void *arg)
{
	PGresult *r;
	int rc;

	if (!s || bad_name(name) || !cb)
		return CHAT_ERR_INVALID;
	if ((rc = listing(s, S_FRIEND_LIST, "chat_store_friends", &r)))
		return rc;
	if (!(r = run_params(s, S_FRIEND_LIST, name)))
		return CHAT_ERR_IO;
	s->busy[S_FRIEND_LIST] = 1;
	for (int i = 0; i < PQntuples(r); i++)
		if (cb(arg, PQgetvalue(r, i, 0), (int)col_i64(r, i, 1)) != 0)
			break;
	s->busy[S_FRIEND_LIST] = 0;
	PQclear(r);
	return CHAT_OK;
}

/* ---- identity keys */

static int pg_key_put(struct chat_store *s, const char *name, const char *suite, size_t len,
                      const uint8_t *key, int64_t now_ms)
{
	PGresult *r;
	int64_t n = 0;
	int rc;

	if (!s || bad_name(name) || bad_name(suite) || !key || !len || len > CHAT_STORE_KEY_MAX)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	rc = one_row(run_params(s, S_KEY_COUNT, name, suite), &r);
	if (rc == 1)
		n = col_i64(r, 0, 0);
	PQclear(r);
	if (rc < 0)
		return rc;
	if (n >= CHAT_STORE_KEYS_PER_USER)
		return CHAT_ERR_NOSPACE;
	return run(s, NULL, S_KEY_PUT, name, suite, len, (const void *)key, now_ms);
}

static int pg_keys(struct chat_store *s, const char *name, chat_store_key_cb cb, void *arg)
{
	PGresult *r;
	int rc = CHAT_OK;

	if (!s || bad_name(name) || !cb)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	if (!(r = run_params(s, S_KEY_LIST, name)))
		return CHAT_ERR_IO;
	for (int i = 0; i < PQntuples(r); i++) {
		const char *suite = PQgetvalue(r, i, 0);
		int len = PQgetlength(r, i, 1);
		if (len <= 0 || len > CHAT_STORE_KEY_MAX || bad_name(suite)) {
			errf(s, "%s: an identity key of %s is damaged", s->label, name);
			rc = CHAT_ERR_IO;
			break;
		}
		if (cb(arg, suite, (size_t)len, PQgetvalue(r, i, 1)) != 0)
			break;
	}
	PQclear(r);
	return rc;
}

/* ---- conversations: (a, b) stored with a <= b */

static void order(const char **a, const char **b)
{
	if (strcmp(*a, *b) > 0) {
		const char *t = *a;
		*a = *b;
		*b = t;
	}
}

static int copy_text(struct chat_store *s, const PGresult *r, int col, size_t cap, char *dst,
                     const char *what)
{
	size_t n = (size_t)PQgetlength(r, 0, col);

	if (n >= cap) {
		errf(s, "%s: %s: stored text of %zu bytes is too long (damaged row)", s->label, what, n);
		return CHAT_ERR_IO;
	}
	memcpy(dst, PQgetvalue(r, 0, col), n);
	dst[n] = '\0';
	return CHAT_OK;
}

static int pg_conv_add(struct chat_store *s, const char *a, const char *b, const char *suite,
                       int64_t now_ms)
{
	int rc;

	if (!s || bad_name(a) || bad_name(b) || bad_name(suite))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	order(&a, &b);
	return run(s, NULL, S_CONV_PUT, a, b, suite, now_ms);
}

static int pg_conv_get(struct chat_store *s, const char *a, const char *b, char suite[33])
{
	PGresult *r;
	int rc;

	if (suite)
		suite[0] = '\0';
	if (!s || bad_name(a) || bad_name(b) || !suite)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	order(&a, &b);
	rc = one_row(run_params(s, S_CONV_GET, a, b), &r);
	if (rc == 0)
		return CHAT_ERR_NOTFOUND;
	if (rc == 1)
		rc = copy_text(s, r, 0, NAME_MAX_LEN + 1, suite, stmts[S_CONV_GET].what);
	PQclear(r);
	return rc;
}

static int pg_conv_remove(struct chat_store *s, const char *a, const char *b)
{
	long changed = 0;
	const char *first = a;
	int rc;

	if (!s || bad_name(a) || bad_name(b))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	order(&a, &b);
	rc = run(s, &changed, S_CONV_DEL, a, b);
	return changed_or_notfound(s, rc, changed, S_CONV_DEL, first);
}

/* ---- offers */

static int pg_offer_add(struct chat_store *s, const char *from, const char *to, const char *suites,
                        int64_t now_ms)
{
	int rc;

	if (!s || bad_name(from) || bad_name(to) || !suites || strlen(suites) >= 16 * 34)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	return run(s, NULL, S_OFFER_PUT, from, to, suites, now_ms);
}

static int pg_offer_get(struct chat_store *s, const char *from, const char *to,
                        char suites[16 * 34])
{
	PGresult *r;
	int rc;

	if (suites)
		suites[0] = '\0';
	if (!s || bad_name(from) || bad_name(to) || !suites)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	rc = one_row(run_params(s, S_OFFER_GET, from, to), &r);
	if (rc == 0)
		return CHAT_ERR_NOTFOUND;
	if (rc == 1)
		rc = copy_text(s, r, 0, 16 * 34, suites, stmts[S_OFFER_GET].what);
	PQclear(r);
	return rc;
}

static int pg_offer_remove(struct chat_store *s, const char *from, const char *to)
{
	long changed = 0;
	int rc;

	if (!s || bad_name(from) || bad_name(to))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	rc = run(s, &changed, S_OFFER_DEL, from, to);
	return changed_or_notfound(s, rc, changed, S_OFFER_DEL, from);
}

/* ---- mail */

static int pg_mail_add(struct chat_store *s, const char *to, const char *from, uint64_t client_id,
                       int64_t stored_ms, int64_t expires_ms, size_t len, const uint8_t *data,
                       int64_t *id_out)
{
	PGresult *r;
	int rc;

	if (id_out)
		*id_out = 0;
	if (!from)
		from = "";
	if (!s || bad_name(to) || strlen(from) > NAME_MAX_LEN || (len && !data) || expires_ms < 0 ||
	    len > INT_MAX)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	rc = one_row(run_params(s, S_MAIL_ADD, to, from, (int64_t)client_id, stored_ms, expires_ms,
	                        len, (const void *)data), &r);
	if (rc == 0) {
		errf(s, "%s: storing mail: no id returned", s->label);
		return CHAT_ERR_IO;
	}
	if (rc == 1 && id_out)
		*id_out = col_i64(r, 0, 0);
	PQclear(r);
	return rc < 0 ? rc : CHAT_OK;
}

static int pg_mail_usage(struct chat_store *s, const char *to, size_t *count, uint64_t *bytes)
{
	PGresult *r;
	int rc;

	if (count)
		*count = 0;
	if (bytes)
		*bytes = 0;
	if (!s || bad_name(to))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	rc = one_row(run_params(s, S_MAIL_USAGE, to), &r);
	if (rc == 1) {
		if (count)
			*count = (size_t)col_i64(r, 0, 0);
		if (bytes)
			*bytes = (uint64_t)col_i64(r, 0, 1);
	}
	PQclear(r);
	return rc < 0 ? rc : CHAT_OK;
}

/* Columns from, client_id, stored_ms, expires_ms, data starting at col. */
static void mail_row(const PGresult *r, int row, int col, struct chat_mail *m)
{
	m->from = PQgetvalue(r, row, col);
	m->client_id = (uint64_t)col_i64(r, row, col + 1);
	m->stored_ms = col_i64(r, row, col + 2);
	m->expires_ms = col_i64(r, row, col + 3);
	m->data = (const uint8_t *)PQgetvalue(r, row, col + 4);
	m->len = (size_t)PQgetlength(r, row, col + 4);
}

static int pg_mail_for(struct chat_store *s, const char *to, int64_t after_id, size_t limit,
                       chat_store_mail_cb cb, void *arg)
{
	struct chat_mail m;
	PGresult *r;
	int rc;

	if (!s || bad_name(to) || !cb)
		return CHAT_ERR_INVALID;
	if ((rc = listing(s, S_MAIL_FOR, "chat_store_mail_for", &r)))
		return rc;
	if (!(r = run_params(s, S_MAIL_FOR, to, after_id,
	                     limit == 0 || limit > (uint64_t)INT64_MAX ? (int64_t)-1 : (int64_t)limit)))
		return CHAT_ERR_IO;
	s->busy[S_MAIL_FOR] = 1;
	for (int i = 0; i < PQntuples(r); i++) {
		memset(&m, 0, sizeof(m));
		m.id = col_i64(r, i, 0);
		m.to = to;
		mail_row(r, i, 1, &m);
		if (cb(arg, &m) != 0)
			break;
	}
	s->busy[S_MAIL_FOR] = 0;
	PQclear(r);
	return CHAT_OK;
}

static int pg_mail_take(struct chat_store *s, const char *to, int64_t mail_id, struct chat_mail *m,
                        char from[33])
{
	char sender[NAME_MAX_LEN + 1] = "";
	PGresult *r = NULL;
	int rc, sp;

	if (m)
		memset(m, 0, sizeof(*m));
	if (from)
		from[0] = '\0';
	if (!s || bad_name(to) || (m && !from))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = tx_enter(s, &sp)))
		return rc;
	rc = one_row(run_params(s, S_MAIL_GET, mail_id, to), &r);
	if (rc == 0) {
		errf(s, "%s: no mail %lld for %s", s->label, (long long)mail_id, to);
		rc = CHAT_ERR_NOTFOUND;
		goto out;
	}
	if (rc < 0 || (rc = copy_text(s, r, 0, sizeof(sender), sender, "reading mail")))
		goto out;
	if (m) {
		m->id = mail_id;
		m->to = to;
		m->from = from;
		m->client_id = (uint64_t)col_i64(r, 0, 1);
		m->stored_ms = col_i64(r, 0, 2);
		m->expires_ms = col_i64(r, 0, 3);
		m->len = (size_t)col_i64(r, 0, 4); /* the size only: data stays NULL */
	}
	rc = run(s, NULL, S_MAIL_DEL, mail_id);
out:
	PQclear(r);
	rc = tx_leave(s, sp, rc);
	if (rc == CHAT_OK && from)
		memcpy(from, sender, strlen(sender) + 1);
	else if (m)
		memset(m, 0, sizeof(*m));
	return rc;
}

static int pg_mail_expire(struct chat_store *s, int64_t now_ms, chat_store_mail_cb cb, void *arg)
{
	struct chat_mail m;
	PGresult *r;
	int64_t last = 0;
	int rc, sp, seen = 0;

	if (!s)
		return CHAT_ERR_INVALID;
	if ((rc = listing(s, S_MAIL_EXPIRED, "chat_store_mail_expire", &r)))
		return rc;
	if ((rc = tx_enter(s, &sp)))
		return rc;
	if (!(r = run_params(s, S_MAIL_EXPIRED, now_ms)))
		return tx_leave(s, sp, CHAT_ERR_IO);
	/* Rows are deleted up to the last one shown: mail added by a callback
	 * has a higher id, and a callback that stops leaves the rest for later. */
	s->busy[S_MAIL_EXPIRED] = 1;
	for (int i = 0; i < PQntuples(r); i++) {
		memset(&m, 0, sizeof(m));
		m.id = col_i64(r, i, 0);
		m.to = PQgetvalue(r, i, 1);
		mail_row(r, i, 2, &m);
		last = m.id;
		seen = 1;
		if (cb && cb(arg, &m) != 0)
			break;
	}
	s->busy[S_MAIL_EXPIRED] = 0;
	PQclear(r);
	if (seen)
		rc = run(s, NULL, S_MAIL_DEL_EXPIRED, now_ms, last);
	return tx_leave(s, sp, rc);
}

static int pg_sender_last(struct chat_store *s, const char *sender, uint64_t *client_id)
{
	PGresult *r;
	int rc;

	if (client_id)
		*client_id = 0;
	if (!s || bad_name(sender) || !client_id)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	rc = one_row(run_params(s, S_SENDER_GET, sender), &r);
	if (rc == 1)
		*client_id = (uint64_t)col_i64(r, 0, 0);
	PQclear(r);
	return rc < 0 ? rc : CHAT_OK;
}

static int pg_sender_set_last(struct chat_store *s, const char *sender, uint64_t client_id)
{
	int rc;

	if (!s || bad_name(sender))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	return run(s, NULL, S_SENDER_PUT, sender, (int64_t)client_id);
}

static int pg_accepted_get(struct chat_store *s, const char *sender, uint64_t client_id, int *seen)
{
	PGresult *r;
	int rc;

	if (seen)
		*seen = 0;
	if (!s || bad_name(sender) || !seen)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	rc = one_row(run_params(s, S_ACCEPTED_GET, sender, (int64_t)client_id), &r);
	PQclear(r);
	if (rc < 0)
		return rc;
	*seen = rc == 1;
	return CHAT_OK;
}

static int pg_accepted_add(struct chat_store *s, const char *sender, uint64_t client_id,
                           int64_t now_ms)
{
	int rc;

	if (!s || bad_name(sender))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	return run(s, NULL, S_ACCEPTED_PUT, sender, (int64_t)client_id, now_ms);
}

static int pg_accepted_prune(struct chat_store *s, int64_t older_than_ms)
{
	int rc;

	if (!s)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	return run(s, NULL, S_ACCEPTED_PRUNE, older_than_ms);
}

/* ---- archive */

static int pg_archive_add(struct chat_store *s, const char *from, const char *to, int64_t stored_ms,
                          size_t len, const uint8_t *data)
{
	const char *a = from, *b = to;
	int rc;

	if (!s || bad_name(from) || bad_name(to) || (len && !data) || len > INT_MAX)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	order(&a, &b);
	return run(s, NULL, S_ARCHIVE_ADD, a, b, from, stored_ms, len, (const void *)data);
}

static int pg_archive_prune(struct chat_store *s, int64_t older_than_ms, size_t *removed)
{
	long changed = 0;
	int rc;

	if (removed)
		*removed = 0;
	if (!s)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	rc = run(s, &changed, S_ARCHIVE_PRUNE, older_than_ms);
	if (rc == CHAT_OK && removed)
		*removed = (size_t)changed;
	return rc;
}

static int pg_archive_count(struct chat_store *s, const char *a, const char *b, size_t *count)
{
	PGresult *r;
	int rc;

	if (count)
		*count = 0;
	if (!s || bad_name(a) || bad_name(b) || !count)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	order(&a, &b);
	rc = one_row(run_params(s, S_ARCHIVE_COUNT, a, b), &r);
	if (rc == 1)
		*count = (size_t)col_i64(r, 0, 0);
	PQclear(r);
	return rc < 0 ? rc : CHAT_OK;
}

/* ---- throttling counts (shared by every relay on the database) */

static int bad_throttle(int kind, const char *key)
{
	return (kind != CHAT_STORE_THROTTLE_ACCOUNT && kind != CHAT_STORE_THROTTLE_REGISTER) || !key ||
	       strlen(key) > THROTTLE_KEY_MAX;
}

static int pg_throttle_del(struct chat_store *s, int kind, const char *key)
{
	int rc;

	if (!s || bad_throttle(kind, key))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	return run(s, NULL, S_THR_DEL, (int64_t)kind, key);
}

static int pg_throttle_put(struct chat_store *s, int kind, const char *key, unsigned failures,
                           int64_t last_ms)
{
	int rc;

	if (!s || bad_throttle(kind, key))
		return CHAT_ERR_INVALID;
	if (!failures)
		return pg_throttle_del(s, kind, key);
	if ((rc = usable(s)))
		return rc;
	return run(s, NULL, S_THR_PUT, (int64_t)kind, key, (int64_t)failures, last_ms);
}

static int pg_throttle_each(struct chat_store *s, int kind, size_t limit, chat_store_throttle_cb cb,
                            void *arg)
{
	PGresult *r;
	int rc;

	if (!s || bad_throttle(kind, "") || !cb)
		return CHAT_ERR_INVALID;
	if ((rc = listing(s, S_THR_LIST, "chat_store_throttle_each", &r)))
		return rc;
	if (!(r = run_params(s, S_THR_LIST, (int64_t)kind,
	                     limit == 0 || limit > (uint64_t)INT64_MAX ? (int64_t)-1 : (int64_t)limit)))
		return CHAT_ERR_IO;
	s->busy[S_THR_LIST] = 1;
	for (int i = 0; i < PQntuples(r); i++) {
		int64_t f = col_i64(r, i, 1);
		if (f <= 0 || f > UINT_MAX)
			continue; /* not a count this program wrote: ignored */
		if (cb(arg, PQgetvalue(r, i, 0), (unsigned)f, col_i64(r, i, 2)) != 0)
			break;
	}
	s->busy[S_THR_LIST] = 0;
	PQclear(r);
	return CHAT_OK;
}

static int pg_throttle_prune(struct chat_store *s, int kind, int64_t older_than_ms, size_t keep)
{
	int rc;

	if (!s || bad_throttle(kind, ""))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	if ((rc = run(s, NULL, S_THR_PRUNE_AGE, (int64_t)kind, older_than_ms)))
		return rc;
	return run(s, NULL, S_THR_PRUNE_COUNT, (int64_t)kind,
	           keep > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)keep);
}

/* ---- the relay's own secrets: the first relay to write one wins */

static int pg_secret(struct chat_store *s, const char *name, size_t len, const uint8_t *fresh,
                     uint8_t *out)
{
	PGresult *r = NULL;
	int rc, sp;

	if (!s || !name || !*name || strlen(name) > THROTTLE_KEY_MAX || !len ||
	    len > CHAT_STORE_SECRET_MAX || !fresh || !out)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = tx_enter(s, &sp)))
		return rc;
	rc = run(s, NULL, S_SECRET_ADD, name, len, (const void *)fresh);
	if (rc == CHAT_OK) {
		rc = one_row(run_params(s, S_SECRET_GET, name), &r);
		if (rc == 1) {
			if ((size_t)PQgetlength(r, 0, 0) != len) {
				errf(s, "%s: the stored secret %s is not %zu bytes long (damaged row)", s->label,
				     name, len);
				rc = CHAT_ERR_IO;
			} else {
				memcpy(out, PQgetvalue(r, 0, 0), len);
				rc = CHAT_OK;
			}
		} else if (rc == 0) {
			errf(s, "%s: the secret %s vanished while it was written", s->label, name);
			rc = CHAT_ERR_IO;
		}
	}
	if (r) {
		/* the secret's bytes are in libpq's buffer: wiped before it is freed */
		explicit_bzero(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
		PQclear(r);
	}
	return tx_leave(s, sp, rc);
}

static const struct chat_store_backend pg_backend = {
	.version = CHAT_STORE_BACKEND_VERSION,
	.size = sizeof(struct chat_store_backend),
	.name = "postgresql",
	.open = pg_open,
	.close = pg_close,
	.probe = pg_probe,
	.created = pg_created,
	.check = pg_check,
	.gone = pg_gone,
	.error = pg_error,
	.schema_version = pg_schema_version,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.in_transaction = pg_in_transaction,
	.account_get = pg_account_get,
	.account_exists = pg_account_exists,
	.account_add = pg_account_add,
	.account_set_verifier = pg_account_set_verifier,
	.account_set_group = pg_account_set_group,
	.account_remove = pg_account_remove,
	.account_count = pg_account_count,
	.key_put = pg_key_put,
	.keys = pg_keys,
	.friend_get = pg_friend_get,
	.friend_set = pg_friend_set,
	.friends = pg_friends,
	.conv_add = pg_conv_add,
	.conv_get = pg_conv_get,
	.conv_remove = pg_conv_remove,
	.offer_add = pg_offer_add,
	.offer_get = pg_offer_get,
	.offer_remove = pg_offer_remove,
	.mail_add = pg_mail_add,
	.mail_usage = pg_mail_usage,
	.mail_for = pg_mail_for,
	.mail_take = pg_mail_take,
	.mail_expire = pg_mail_expire,
	.sender_last = pg_sender_last,
	.sender_set_last = pg_sender_set_last,
	.accepted_get = pg_accepted_get,
	.accepted_add = pg_accepted_add,
	.accepted_prune = pg_accepted_prune,
	.archive_add = pg_archive_add,
	.archive_prune = pg_archive_prune,
	.archive_count = pg_archive_count,
	.throttle_put = pg_throttle_put,
	.throttle_del = pg_throttle_del,
	.throttle_each = pg_throttle_each,
	.throttle_prune = pg_throttle_prune,
	.secret = pg_secret,
};

__attribute__((visibility("default"))) const struct chat_store_backend *chat_store_backend_entry(void);
const struct chat_store_backend *chat_store_backend_entry(void)
{
	return &pg_backend;
}
