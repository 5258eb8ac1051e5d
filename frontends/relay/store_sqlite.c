/* The relay's durable store on SQLite (see store.h), the backend built
 * into the relay (store_backend.h; store.c picks it for relay.store = sqlite:PATH).
 *
 * Every statement is prepared once at open and kept in s->st[]; after each
 * use it is reset and its bindings cleared, so text and blobs are bound
 * SQLITE_STATIC: the caller's buffers outlive the step, and no pointer into
 * them is kept once a function returns.
 *
 * Functions that run several statements (account_remove, friend_set,
 * mail_take, mail_expire) start their own BEGIN IMMEDIATE transaction, or,
 * inside the caller's transaction (or a callback of another store function),
 * a savepoint: each stays all-or-nothing either way.
 *
 * Client ids are uint64_t; SQLite's INTEGER is int64, so they are stored as
 * the same 64 bits cast to int64 (ids above 2^63 read back unchanged, but
 * compare as negative in SQL: the store never compares them in SQL). */
#include "store_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include <chat/error.h>

#include "host.h"

#define NAME_MAX_LEN 32      /* names and suites fit char[33] */
#define BUSY_TIMEOUT_MS 5000 /* another process (a backup, the sqlite3 shell) holding a lock */
#define SQLITE_MAGIC "SQLite format 3"
#define SQLITE_HEADER 100

/* Schema migrations: entry i takes user_version i to i + 1, in its own
 * transaction.  A new version is one more entry (and CHAT_STORE_SCHEMA_VERSION + 1). */
static const char *const migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE accounts ("
	" name TEXT PRIMARY KEY NOT NULL,"
	" grp INTEGER NOT NULL,"
	" salt BLOB NOT NULL,"
	" iterations INTEGER NOT NULL,"
	" stored_key BLOB NOT NULL,"
	" server_key BLOB NOT NULL,"
	" created_ms INTEGER NOT NULL);"
	/* Both directions are stored: (a, b, ASKED) with (b, a, ASKED_BY), or YES twice. */
	"CREATE TABLE friends ("
	" a TEXT NOT NULL,"
	" b TEXT NOT NULL,"
	" state INTEGER NOT NULL,"
	" PRIMARY KEY (a, b)) WITHOUT ROWID;"
	"CREATE INDEX friends_b ON friends (b);"
	/* (a, b) normalized: a <= b. */
	"CREATE TABLE conversations ("
	" a TEXT NOT NULL,"
	" b TEXT NOT NULL,"
	" suite TEXT NOT NULL,"
	" since_ms INTEGER NOT NULL,"
	" PRIMARY KEY (a, b),"
	" CHECK (a <= b)) WITHOUT ROWID;"
	"CREATE INDEX conversations_b ON conversations (b);"
	/* AUTOINCREMENT: an id is never reused, so a late ACK cannot hit newer mail. */
	"CREATE TABLE mail ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" recipient TEXT NOT NULL,"
	" sender TEXT NOT NULL,"
	" client_id INTEGER NOT NULL,"
	" stored_ms INTEGER NOT NULL,"
	" expires_ms INTEGER NOT NULL,"
	" data BLOB NOT NULL);"
	"CREATE INDEX mail_recipient ON mail (recipient, id);"
	"CREATE INDEX mail_expires ON mail (expires_ms) WHERE expires_ms > 0;"
	/* Per-recipient totals kept by triggers, so checking a queue's limits
	 * costs one row, not a scan of everything queued. */
	"CREATE TABLE mail_usage ("
	" recipient TEXT PRIMARY KEY NOT NULL,"
	" count INTEGER NOT NULL,"
	" bytes INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TRIGGER mail_usage_add AFTER INSERT ON mail BEGIN"
	" INSERT INTO mail_usage (recipient, count, bytes) VALUES (new.recipient, 1, length(new.data))"
	" ON CONFLICT (recipient) DO UPDATE SET count = count + 1, bytes = bytes + length(new.data);"
	" END;"
	"CREATE TRIGGER mail_usage_del AFTER DELETE ON mail BEGIN"
	" UPDATE mail_usage SET count = count - 1, bytes = bytes - length(old.data)"
	" WHERE recipient = old.recipient;"
	" DELETE FROM mail_usage WHERE recipient = old.recipient AND count <= 0;"
	" END;"
	"CREATE TABLE senders ("
	" name TEXT PRIMARY KEY NOT NULL,"
	" last_client_id INTEGER NOT NULL) WITHOUT ROWID;"
	/* Every SEND id accepted, so a resend is recognised exactly (an id
	 * refused once and resent after later ones were accepted is new). */
	"CREATE TABLE accepted ("
	" sender TEXT NOT NULL,"
	" client_id INTEGER NOT NULL,"
	" accepted_ms INTEGER NOT NULL,"
	" PRIMARY KEY (sender, client_id)) WITHOUT ROWID;"
	"CREATE INDEX accepted_time ON accepted (accepted_ms);"
	/* (a, b) normalized like conversations; sender says which way it went. */
	"CREATE TABLE archive ("
	" id INTEGER PRIMARY KEY,"
	" a TEXT NOT NULL,"
	" b TEXT NOT NULL,"
	" sender TEXT NOT NULL,"
	" stored_ms INTEGER NOT NULL,"
	" data BLOB NOT NULL);"
	"CREATE INDEX archive_time ON archive (stored_ms);"
	"CREATE INDEX archive_pair ON archive (a, b);"
	/* TALK between registered users waiting for an answer. */
	"CREATE TABLE offers ("
	" sender TEXT NOT NULL,"
	" recipient TEXT NOT NULL,"
	" suites TEXT NOT NULL,"
	" since_ms INTEGER NOT NULL,"
	" PRIMARY KEY (sender, recipient)) WITHOUT ROWID;"
	"CREATE INDEX offers_recipient ON offers (recipient);",
	/* 1 -> 2: what must survive a restart to keep the relay from telling
	 * which names exist (docs/SECURITY.md): throttling counts (kind 1 failed
	 * logins of an account from every address, 2 registrations from an
	 * address) and the relay's own secrets (the key of fake verifiers). */
	"CREATE TABLE throttle ("
	" kind INTEGER NOT NULL,"
	" key TEXT NOT NULL,"
	" failures INTEGER NOT NULL,"
	" last_ms INTEGER NOT NULL,"
	" PRIMARY KEY (kind, key)) WITHOUT ROWID;"
	"CREATE INDEX throttle_time ON throttle (kind, last_ms);"
	"CREATE TABLE secrets ("
	" name TEXT PRIMARY KEY NOT NULL,"
	" value BLOB NOT NULL) WITHOUT ROWID;",
	/* 2 -> 3: users' public identity keys, one per suite (PROTOCOL.md
	 * KEYS_PUT); never a private key. */
	"CREATE TABLE identity_keys ("
	" name TEXT NOT NULL,"
	" suite TEXT NOT NULL,"
	" key BLOB NOT NULL,"
	" updated_ms INTEGER NOT NULL,"
	" PRIMARY KEY (name, suite)) WITHOUT ROWID;",
};
_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == CHAT_STORE_SCHEMA_VERSION,
               "one migration per schema version");

enum {
	S_BEGIN, S_COMMIT, S_ROLLBACK, S_SAVEPOINT, S_RELEASE, S_ROLLBACK_TO, S_VERSION,
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

static const struct {
	const char *sql;
	const char *what; /* for "PATH: what: sqlite message" */
} stmts[S_COUNT] = {
	[S_BEGIN] = { "BEGIN IMMEDIATE", "starting a transaction" },
	[S_COMMIT] = { "COMMIT", "committing" },
	[S_ROLLBACK] = { "ROLLBACK", "rolling back" },
	[S_SAVEPOINT] = { "SAVEPOINT chat_store_op", "starting a savepoint" },
	[S_RELEASE] = { "RELEASE chat_store_op", "releasing a savepoint" },
	[S_ROLLBACK_TO] = { "ROLLBACK TO chat_store_op", "rolling back a savepoint" },
	[S_VERSION] = { "PRAGMA user_version", "reading the schema version" },
	[S_ACC_GET] = { "SELECT grp, salt, iterations, stored_key, server_key, created_ms"
	                " FROM accounts WHERE name = ?1", "reading an account" },
	[S_ACC_EXISTS] = { "SELECT 1 FROM accounts WHERE name = ?1", "looking up an account" },
	[S_ACC_ADD] = { "INSERT INTO accounts (name, grp, salt, iterations, stored_key, server_key,"
	                " created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", "adding an account" },
	[S_ACC_SET_VERIFIER] = { "UPDATE accounts SET salt = ?2, iterations = ?3, stored_key = ?4,"
	                         " server_key = ?5 WHERE name = ?1", "changing a verifier" },
	[S_ACC_SET_GROUP] = { "UPDATE accounts SET grp = ?2 WHERE name = ?1",
	                      "changing an account's group" },
	[S_ACC_DEL] = { "DELETE FROM accounts WHERE name = ?1", "removing an account" },
	[S_ACC_COUNT] = { "SELECT count(*) FROM accounts WHERE ?1 = 0 OR grp = ?1",
	                  "counting accounts" },
	[S_FRIEND_DEL_ALL] = { "DELETE FROM friends WHERE a = ?1 OR b = ?1",
	                       "removing an account's friendships" },
	[S_CONV_DEL_ALL] = { "DELETE FROM conversations WHERE a = ?1 OR b = ?1",
	                     "removing an account's conversations" },
	[S_MAIL_DEL_TO] = { "DELETE FROM mail WHERE recipient = ?1", "removing an account's mail" },
	[S_SENDER_DEL] = { "DELETE FROM senders WHERE name = ?1", "removing a sender's client id" },
	[S_KEY_DEL_ALL] = { "DELETE FROM identity_keys WHERE name = ?1", "removing an account's identity keys" },
	[S_KEY_PUT] = { "INSERT OR REPLACE INTO identity_keys (name, suite, key, updated_ms) VALUES (?1, ?2, ?3, ?4)",
	                "storing an identity key" },
	[S_KEY_COUNT] = { "SELECT count(*) FROM identity_keys WHERE name = ?1 AND suite <> ?2",
	                  "counting identity keys" },
	[S_KEY_LIST] = { "SELECT suite, key FROM identity_keys WHERE name = ?1 ORDER BY suite",
	                 "reading identity keys" },
	[S_FRIEND_GET] = { "SELECT state FROM friends WHERE a = ?1 AND b = ?2",
	                   "reading a friendship" },
	[S_FRIEND_PUT] = { "INSERT OR REPLACE INTO friends (a, b, state) VALUES (?1, ?2, ?3)",
	                   "writing a friendship" },
	[S_FRIEND_DEL] = { "DELETE FROM friends WHERE (a = ?1 AND b = ?2) OR (a = ?2 AND b = ?1)",
	                   "removing a friendship" },
	[S_FRIEND_LIST] = { "SELECT b, state FROM friends WHERE a = ?1 ORDER BY b",
	                    "listing friends" },
	[S_CONV_PUT] = { "INSERT OR REPLACE INTO conversations (a, b, suite, since_ms)"
	                 " VALUES (?1, ?2, ?3, ?4)", "recording a conversation" },
	[S_CONV_GET] = { "SELECT suite FROM conversations WHERE a = ?1 AND b = ?2",
	                 "reading a conversation" },
	[S_CONV_DEL] = { "DELETE FROM conversations WHERE a = ?1 AND b = ?2",
	                 "removing a conversation" },
	[S_OFFER_PUT] = { "INSERT OR REPLACE INTO offers (sender, recipient, suites, since_ms)"
	                  " VALUES (?1, ?2, ?3, ?4)", "recording an offer" },
	[S_OFFER_GET] = { "SELECT suites FROM offers WHERE sender = ?1 AND recipient = ?2",
	                  "reading an offer" },
	[S_OFFER_DEL] = { "DELETE FROM offers WHERE sender = ?1 AND recipient = ?2",
	                  "removing an offer" },
	[S_OFFER_DEL_ALL] = { "DELETE FROM offers WHERE sender = ?1 OR recipient = ?1",
	                      "removing an account's offers" },
	[S_MAIL_ADD] = { "INSERT INTO mail (recipient, sender, client_id, stored_ms, expires_ms, data)"
	                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6)", "storing mail" },
	[S_MAIL_USAGE] = { "SELECT coalesce(sum(count), 0), coalesce(sum(bytes), 0) FROM mail_usage"
	                   " WHERE recipient = ?1", "measuring a mail queue" },
	[S_MAIL_FOR] = { "SELECT id, sender, client_id, stored_ms, expires_ms, data FROM mail"
	                 " WHERE recipient = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
	                 "reading mail" },
	[S_MAIL_GET] = { "SELECT sender, client_id, stored_ms, expires_ms, length(data) FROM mail"
	                 " WHERE id = ?1 AND recipient = ?2", "reading mail" },
	[S_MAIL_DEL] = { "DELETE FROM mail WHERE id = ?1", "removing mail" },
	[S_MAIL_EXPIRED] = { "SELECT id, recipient, sender, client_id, stored_ms, expires_ms, data"
	                     " FROM mail WHERE expires_ms > 0 AND expires_ms <= ?1 ORDER BY id",
	                     "reading expired mail" },
	[S_MAIL_DEL_EXPIRED] = { "DELETE FROM mail WHERE expires_ms > 0 AND expires_ms <= ?1"
	                         " AND id <= ?2", "removing expired mail" },
	[S_SENDER_GET] = { "SELECT last_client_id FROM senders WHERE name = ?1",
	                   "reading a sender's client id" },
	[S_ACCEPTED_GET] = { "SELECT 1 FROM accepted WHERE sender = ?1 AND client_id = ?2",
	                     "looking up an accepted client id" },
	[S_ACCEPTED_PUT] = { "INSERT OR IGNORE INTO accepted (sender, client_id, accepted_ms)"
	                     " VALUES (?1, ?2, ?3)", "recording an accepted client id" },
	[S_ACCEPTED_PRUNE] = { "DELETE FROM accepted WHERE accepted_ms < ?1",
	                       "forgetting old accepted client ids" },
	[S_SENDER_PUT] = { "INSERT OR REPLACE INTO senders (name, last_client_id) VALUES (?1, ?2)",
	                   "writing a sender's client id" },
	[S_ARCHIVE_ADD] = { "INSERT INTO archive (a, b, sender, stored_ms, data)"
	                    " VALUES (?1, ?2, ?3, ?4, ?5)", "archiving" },
	[S_ARCHIVE_PRUNE] = { "DELETE FROM archive WHERE stored_ms < ?1", "pruning the archive" },
	[S_ARCHIVE_COUNT] = { "SELECT count(*) FROM archive WHERE a = ?1 AND b = ?2",
	                      "counting archived messages" },
	[S_THR_PUT] = { "INSERT OR REPLACE INTO throttle (kind, key, failures, last_ms)"
	                " VALUES (?1, ?2, ?3, ?4)", "recording a throttling count" },
	[S_THR_DEL] = { "DELETE FROM throttle WHERE kind = ?1 AND key = ?2",
	                "clearing a throttling count" },
	[S_THR_LIST] = { "SELECT key, failures, last_ms FROM throttle WHERE kind = ?1"
	                 " ORDER BY last_ms DESC LIMIT ?2", "reading throttling counts" },
	[S_THR_PRUNE_AGE] = { "DELETE FROM throttle WHERE kind = ?1 AND last_ms < ?2",
	                      "forgetting old throttling counts" },
	[S_THR_PRUNE_COUNT] = { "DELETE FROM throttle WHERE kind = ?1 AND key NOT IN"
	                        " (SELECT key FROM throttle WHERE kind = ?1 ORDER BY last_ms DESC LIMIT ?2)",
	                        "bounding the throttling counts" },
	[S_SECRET_ADD] = { "INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)",
	                   "creating a secret" },
	[S_SECRET_GET] = { "SELECT value FROM secrets WHERE name = ?1", "reading a secret" },
};

struct chat_store {
	const struct chat_store_backend *backend; /* first: store_backend.h */
	sqlite3 *db;
	char *path;
	sqlite3_stmt *st[S_COUNT];
	int in_tx;      /* sq_begin() is open */
	int depth;      /* own transactions / savepoints of running functions */
	int created;    /* chat_store_open created the file */
	int probing;    /* chat_store_probe: opened read-only */
	dev_t dev;      /* the file SQLite opened, to notice it removed or replaced */
	ino_t ino;
	char gone[512]; /* non-empty: the file is gone or replaced (sticky) */
	char err[1024];
};

static int sq_check(struct chat_store *s);
static void sq_close(struct chat_store *s);
static int sq_throttle_del(struct chat_store *s, int kind, const char *key);

static void errf(struct chat_store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void errf(struct chat_store *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
}

static int sql_fail(struct chat_store *s, const char *what)
{
	errf(s, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
	return CHAT_ERR_IO;
}

static int bad_name(const char *n)
{
	return !n || !*n || strlen(n) > NAME_MAX_LEN;
}

/* Reset after every use: no binding points into a caller's buffer afterwards. */
static void done(struct chat_store *s, int id)
{
	sqlite3_reset(s->st[id]);
	sqlite3_clear_bindings(s->st[id]);
}

static int bind_text(struct chat_store *s, int id, int i, const char *v)
{
	if (sqlite3_bind_text(s->st[id], i, v, -1, SQLITE_STATIC) != SQLITE_OK)
		return sql_fail(s, stmts[id].what);
	return CHAT_OK;
}

static int bind_i64(struct chat_store *s, int id, int i, int64_t v)
{
	if (sqlite3_bind_int64(s->st[id], i, v) != SQLITE_OK)
		return sql_fail(s, stmts[id].what);
	return CHAT_OK;
}

static int bind_blob(struct chat_store *s, int id, int i, size_t len, const void *v)
{
	/* A NULL pointer would bind SQL NULL, not an empty blob. */
	if (sqlite3_bind_blob64(s->st[id], i, len ? v : "", len, SQLITE_STATIC) != SQLITE_OK)
		return sql_fail(s, stmts[id].what);
	return CHAT_OK;
}

/* 1: a row, 0: done, else CHAT_ERR_IO with the error text set. */
static int step(struct chat_store *s, int id)
{
	int rc = sqlite3_step(s->st[id]);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return sql_fail(s, stmts[id].what);
}

/* Run a statement without rows to completion and reset it. */
static int run(struct chat_store *s, int id)
{
	int rc = step(s, id);

	done(s, id);
	return rc < 0 ? rc : CHAT_OK;
}

/* Copy a text column into dst[cap]; a longer value means a damaged row. */
static int col_text(struct chat_store *s, int id, int col, size_t cap, char *dst)
{
	const unsigned char *t = sqlite3_column_text(s->st[id], col);
	size_t n = (size_t)sqlite3_column_bytes(s->st[id], col);

	if (!t && sqlite3_errcode(s->db) == SQLITE_NOMEM)
		return sql_fail(s, stmts[id].what);
	if (n >= cap) {
		errf(s, "%s: %s: stored text of %zu bytes is too long (damaged row)", s->path,
		     stmts[id].what, n);
		return CHAT_ERR_IO;
	}
	memcpy(dst, t ? (const char *)t : "", n);
	dst[n] = '\0';
	return CHAT_OK;
}

static const char *col_str(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	return t ? (const char *)t : "";
}

/* A transaction SQLite rolled back on its own (I/O error, disk full) stays
 * failed until the caller ends it: nothing more is written into its place. */
static int usable(struct chat_store *s)
{
	if (s->in_tx && sqlite3_get_autocommit(s->db)) {
		errf(s, "%s: the transaction was rolled back after an earlier error", s->path);
		return CHAT_ERR_IO;
	}
	return CHAT_OK;
}

/* Nothing may be acknowledged as stored in a file nobody will open again:
 * before a commit, the path must still name the file SQLite has open.  One
 * stat() per commit (per relay round), not per message. */
static int commit_checked(struct chat_store *s)
{
	int rc = sq_check(s);

	if (rc != CHAT_OK) {
		errf(s, "%s", s->gone);
		return rc;
	}
	return run(s, S_COMMIT);
}

/* Own transaction, or a savepoint inside an open one. */
static int tx_enter(struct chat_store *s, int *savepoint)
{
	int rc;

	*savepoint = s->in_tx || s->depth > 0;
	if (!*savepoint && s->gone[0]) {
		errf(s, "%s", s->gone);
		return CHAT_ERR_FAILED;
	}
	rc = run(s, *savepoint ? S_SAVEPOINT : S_BEGIN);
	if (rc == CHAT_OK)
		s->depth++;
	return rc;
}

/* Roll back the open transaction, keeping the error text that caused it. */
static void rollback_keep_err(struct chat_store *s, int id)
{
	char keep[sizeof(s->err)];

	memcpy(keep, s->err, sizeof(keep));
	if (!sqlite3_get_autocommit(s->db))
		run(s, id);
	memcpy(s->err, keep, sizeof(keep));
}

static int tx_leave(struct chat_store *s, int savepoint, int rc)
{
	s->depth--;
	if (savepoint) {
		if (rc != CHAT_OK)
			rollback_keep_err(s, S_ROLLBACK_TO);
		if (!sqlite3_get_autocommit(s->db)) {
			int r = run(s, S_RELEASE);
			if (rc == CHAT_OK)
				rc = r;
		}
		return rc;
	}
	if (rc == CHAT_OK)
		rc = commit_checked(s);
	if (rc != CHAT_OK)
		rollback_keep_err(s, S_ROLLBACK);
	return rc;
}

/* ---- open */

/* An SQLite failure during open, worded for what it says about the file. */
static int open_fail(struct chat_store *s, int rc, const char *what)
{
	switch (rc & 0xff) {
	case SQLITE_NOTADB:
		errf(s, "%s: not an SQLite database (or encrypted/corrupt): %s", s->path,
		     sqlite3_errmsg(s->db));
		break;
	case SQLITE_CORRUPT:
		errf(s, "%s: database is corrupt (%s): %s", s->path, what, sqlite3_errmsg(s->db));
		break;
	case SQLITE_READONLY:
	case SQLITE_CANTOPEN:
	case SQLITE_PERM:
		errf(s, "%s: cannot %s the database (%s): %s; check the permissions of the file "
		     "and its directory", s->path, s->probing ? "read" : "write", what,
		     sqlite3_errmsg(s->db));
		break;
	default:
		errf(s, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
	}
	return CHAT_ERR_IO;
}

/* Run sql (rows ignored; the first row's first column into *first if
 * asked) with a one-off statement. */
static int open_exec(struct chat_store *s, const char *sql, const char *what, int64_t *first,
                     char *text, size_t text_cap)
{
	sqlite3_stmt *st = NULL;
	int rc, rows = 0;

	rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return open_fail(s, rc, what);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (rows++ == 0) {
			if (first)
				*first = sqlite3_column_int64(st, 0);
			if (text)
				snprintf(text, text_cap, "%s", col_str(st, 0));
		}
	}
	if (rc != SQLITE_DONE) {
		rc = open_fail(s, rc, what);
		sqlite3_finalize(st);
		return rc;
	}
	sqlite3_finalize(st);
	return CHAT_OK;
}

/* Checks on the file before SQLite sees it.  SQLite takes a file shorter
 * than a page for an empty database and would overwrite it, so the header
 * is checked here. */
static int check_file(struct chat_store *s, int *created)
{
	struct stat sb;
	char *copy, *dir;
	int rc = CHAT_OK, fd;

	copy = strdup(s->path);
	if (!copy)
		return CHAT_ERR_NOMEM;
	dir = dirname(copy);
	if (stat(s->path, &sb) != 0) {
		if (errno != ENOENT) {
			errf(s, "%s: %s", s->path, strerror(errno));
			rc = CHAT_ERR_IO;
		} else if (stat(dir, &sb) != 0) {
			if (errno == ENOENT) {
				errf(s, "%s: cannot create the database: directory %s does not exist",
				     s->path, dir);
				rc = CHAT_ERR_NOTFOUND;
			} else {
				errf(s, "%s: cannot create the database: directory %s: %s", s->path, dir,
				     strerror(errno));
				rc = CHAT_ERR_IO;
			}
		} else if (!S_ISDIR(sb.st_mode)) {
			errf(s, "%s: cannot create the database: %s is not a directory", s->path, dir);
			rc = CHAT_ERR_IO;
		} else if ((fd = open(s->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		                      0600)) < 0) {
			errf(s, "%s: cannot create the database: %s", s->path, strerror(errno));
			rc = CHAT_ERR_IO;
		} else {
			close(fd);
			*created = 1;
		}
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		errf(s, "%s: not a regular file", s->path);
		rc = CHAT_ERR_IO;
		goto out;
	}
	if (access(s->path, R_OK | W_OK) != 0) {
		errf(s, "%s: cannot write the database: %s", s->path, strerror(errno));
		rc = CHAT_ERR_IO;
		goto out;
	}
	/* SQLite creates PATH-wal and PATH-shm next to the database. */
	if (access(dir, W_OK | X_OK) != 0) {
		errf(s, "%s: directory %s is not writable (SQLite keeps %s-wal there): %s", s->path,
		     dir, s->path, strerror(errno));
		rc = CHAT_ERR_IO;
		goto out;
	}
	if (sb.st_size > 0) {
		char hdr[SQLITE_HEADER];
		ssize_t n;

		fd = open(s->path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			errf(s, "%s: %s", s->path, strerror(errno));
			rc = CHAT_ERR_IO;
			goto out;
		}
		do
			n = read(fd, hdr, sizeof(hdr));
		while (n < 0 && errno == EINTR);
		close(fd);
		if (n < 0) {
			errf(s, "%s: %s", s->path, strerror(errno));
			rc = CHAT_ERR_IO;
		} else if ((size_t)n < sizeof(hdr) || memcmp(hdr, SQLITE_MAGIC, sizeof(SQLITE_MAGIC))) {
			errf(s, "%s: not an SQLite database (or encrypted/corrupt): file is not a database",
			     s->path);
			rc = CHAT_ERR_IO;
		}
	}
out:
	free(copy);
	return rc;
}

/* Everything that may refuse the file, before anything is written. */
static int check_db(struct chat_store *s)
{
	char row[512];
	int64_t v = 0, objects = 0;
	int rc;

	/* The first read parses the header: "file is not a database". */
	if ((rc = open_exec(s, "PRAGMA user_version", "reading the schema version", &v, NULL, 0)))
		return rc;
	row[0] = '\0';
	if ((rc = open_exec(s, "PRAGMA quick_check", "PRAGMA quick_check", NULL, row, sizeof(row))))
		return rc;
	if (strcmp(row, "ok") != 0) {
		errf(s, "%s: database is corrupt (PRAGMA quick_check: %s)", s->path, row);
		return CHAT_ERR_IO;
	}
	if (v > CHAT_STORE_SCHEMA_VERSION || v < 0) {
		errf(s, "%s: schema version %lld is newer than this program knows (%d): "
		     "use the newer program that wrote it", s->path, (long long)v,
		     CHAT_STORE_SCHEMA_VERSION);
		return CHAT_ERR_IO;
	}
	if (v == 0) {
		if ((rc = open_exec(s, "SELECT count(*) FROM sqlite_master", "reading the schema",
		                    &objects, NULL, 0)))
			return rc;
		if (objects > 0) {
			errf(s, "%s: an SQLite database of something else (schema version 0 with %lld "
			     "objects): refusing to change it", s->path, (long long)objects);
			return CHAT_ERR_IO;
		}
	}
	/* Writable: SQLite silently opens a read-only file read-only. */
	if (sqlite3_db_readonly(s->db, "main") != 0) {
		errf(s, "%s: cannot write the database (opened read-only): check the permissions of "
		     "the file and its directory", s->path);
		return CHAT_ERR_IO;
	}
	if ((rc = open_exec(s, "BEGIN IMMEDIATE", "taking the write lock", NULL, NULL, 0)))
		return rc;
	return open_exec(s, "ROLLBACK", "taking the write lock", NULL, NULL, 0);
}

static int migrate(struct chat_store *s)
{
	char sql[64];
	int64_t v;
	int rc;

	for (;;) {
		if ((rc = open_exec(s, "BEGIN IMMEDIATE", "starting a migration", NULL, NULL, 0)))
			return rc;
		/* Read again under the write lock: another process may have migrated. */
		rc = open_exec(s, "PRAGMA user_version", "reading the schema version", &v, NULL, 0);
		if (rc == CHAT_OK && v == CHAT_STORE_SCHEMA_VERSION)
			return open_exec(s, "COMMIT", "reading the schema version", NULL, NULL, 0);
		if (rc == CHAT_OK && (v < 0 || v > CHAT_STORE_SCHEMA_VERSION)) {
			errf(s, "%s: schema version %lld is newer than this program knows (%d)", s->path,
			     (long long)v, CHAT_STORE_SCHEMA_VERSION);
			rc = CHAT_ERR_IO;
		}
		if (rc == CHAT_OK) {
			char *msg = NULL;
			if (sqlite3_exec(s->db, migrations[v], NULL, NULL, &msg) != SQLITE_OK) {
				errf(s, "%s: migrating the schema from version %lld to %lld: %s", s->path,
				     (long long)v, (long long)v + 1, msg ? msg : sqlite3_errmsg(s->db));
				rc = CHAT_ERR_IO;
			}
			sqlite3_free(msg);
		}
		if (rc == CHAT_OK) {
			snprintf(sql, sizeof(sql), "PRAGMA user_version = %lld", (long long)v + 1);
			rc = open_exec(s, sql, "setting the schema version", NULL, NULL, 0);
		}
		if (rc == CHAT_OK)
			rc = open_exec(s, "COMMIT", "committing a migration", NULL, NULL, 0);
		if (rc != CHAT_OK) {
			if (!sqlite3_get_autocommit(s->db))
				sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			return rc;
		}
	}
}

static int setup(struct chat_store *s)
{
	char mode[16] = "";
	int rc;

	/* A refused file is never written, not even by the checkpoint at close. */
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	if ((rc = check_db(s)))
		return rc;
	if ((rc = open_exec(s, "PRAGMA journal_mode = WAL", "switching to WAL mode", NULL, mode,
	                    sizeof(mode))))
		return rc;
	if (strcmp(mode, "wal") != 0) {
		errf(s, "%s: cannot switch to WAL mode (journal mode stays \"%s\")", s->path, mode);
		return CHAT_ERR_IO;
	}
	if ((rc = open_exec(s, "PRAGMA synchronous = FULL", "setting synchronous", NULL, NULL, 0)) ||
	    (rc = open_exec(s, "PRAGMA foreign_keys = ON", "enabling foreign keys", NULL, NULL, 0)))
		return rc;
	if ((rc = migrate(s)))
		return rc;
	for (int i = 0; i < S_COUNT; i++) {
		int r = sqlite3_prepare_v3(s->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
		                           &s->st[i], NULL);
		if (r != SQLITE_OK) {
			errf(s, "%s: preparing \"%s\": %s", s->path, stmts[i].sql, sqlite3_errmsg(s->db));
			return CHAT_ERR_IO;
		}
	}
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, NULL);
	return CHAT_OK;
}

/* Which file SQLite opened (it does not give out its descriptor): stat()
 * after setup has read it, so the path still names it. */
static int remember_file(struct chat_store *s)
{
	struct stat sb;

	if (stat(s->path, &sb) != 0) {
		errf(s, "%s: %s", s->path, strerror(errno));
		return CHAT_ERR_IO;
	}
	s->dev = sb.st_dev;
	s->ino = sb.st_ino;
	return CHAT_OK;
}

static int sq_open(const char *path, struct chat_store **out, size_t errlen, char *err)
{
	struct chat_store *s;
	int rc, created = 0;

	if (out)
		*out = NULL;
	if (errlen)
		err[0] = '\0';
	if (!path || !*path || !out) {
		if (errlen)
			snprintf(err, errlen, "no database path");
		return CHAT_ERR_INVALID;
	}
	s = calloc(1, sizeof(*s));
	if (!s || !(s->path = strdup(path))) {
		free(s);
		if (errlen)
			snprintf(err, errlen, "%s: out of memory", path);
		return CHAT_ERR_NOMEM;
	}
	s->backend = &chat_store_sqlite;
	rc = check_file(s, &created);
	if (rc == CHAT_OK) {
		int r = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE, NULL);
		if (r != SQLITE_OK)
			rc = s->db ? open_fail(s, r, "opening") : CHAT_ERR_NOMEM;
	}
	if (rc == CHAT_OK)
		rc = setup(s);
	if (rc == CHAT_OK)
		rc = remember_file(s);
	if (rc == CHAT_OK) {
		s->created = created;
		*out = s;
		return CHAT_OK;
	}
	if (rc == CHAT_ERR_NOMEM && !s->err[0])
		errf(s, "%s: out of memory", path);
	if (errlen)
		snprintf(err, errlen, "%s", s->err);
	sq_close(s);
	/* Only a database this call created is removed (it held nothing). */
	if (created) {
		char side[PATH_MAX + 8];
		unlink(path);
		snprintf(side, sizeof(side), "%s-wal", path);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", path);
		unlink(side);
	}
	return rc;
}

/* "file:PATH?immutable=1", PATH percent-encoded as URIs want (RFC 3986
 * unreserved characters and '/' as they are).  0, or -1 if it does not fit. */
static int uri_of(const char *path, size_t cap, char *dst)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = (size_t)snprintf(dst, cap, "file:");

	for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
		if (n + 4 >= cap)
			return -1;
		if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
		    strchr("-._~/", *c)) {
			dst[n++] = (char)*c;
		} else {
			dst[n++] = '%';
			dst[n++] = hex[*c >> 4];
			dst[n++] = hex[*c & 15];
		}
	}
	return (size_t)snprintf(dst + n, cap - n, "?immutable=1") < cap - n ? 0 : -1;
}

static int sq_probe(const char *path, int *version, int *dir_missing, size_t errlen, char *err)
{
	struct chat_store s = { .path = (char *)path, .probing = 1 };
	struct stat sb;
	int64_t v = 0, objects = 0;
	int rc = CHAT_OK;

	*version = 0;
	*dir_missing = 0;
	if (stat(path, &sb) != 0) {
		char *copy = strdup(path);
		const char *dir = copy ? dirname(copy) : ".";
		if (errno != ENOENT) {
			errf(&s, "%s: %s", path, strerror(errno));
			rc = CHAT_ERR_IO;
		} else if (stat(dir, &sb) != 0 && errno == ENOENT) {
			errf(&s, "%s does not exist, nor does its directory %s", path, dir);
			*dir_missing = 1;
			rc = CHAT_ERR_NOTFOUND;
		} else {
			errf(&s, "%s does not exist", path);
			rc = CHAT_ERR_NOTFOUND;
		}
		free(copy);
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		errf(&s, "%s: not a regular file", path);
		rc = CHAT_ERR_IO;
		goto out;
	}
	if (sb.st_size == 0)
		goto out; /* what check_file makes: set up at the next start */
	/* Read-only, SQLite still makes PATH-wal and PATH-shm when they are
	 * missing.  Without a PATH-wal no relay has it open (nor left anything
	 * to recover): read it as an immutable file, which makes nothing. */
	char wal[PATH_MAX + 8], uri[3 * PATH_MAX + 32];
	snprintf(wal, sizeof(wal), "%s-wal", path);
	int flags = SQLITE_OPEN_READONLY;
	const char *name = path;
	if (lstat(wal, &sb) != 0 && errno == ENOENT && uri_of(path, sizeof(uri), uri) == 0) {
		flags |= SQLITE_OPEN_URI;
		name = uri;
	}
	int r = sqlite3_open_v2(name, &s.db, flags, NULL);
	if (r != SQLITE_OK) {
		rc = s.db ? open_fail(&s, r, "opening read-only") : CHAT_ERR_NOMEM;
		goto out;
	}
	sqlite3_extended_result_codes(s.db, 1);
	sqlite3_busy_timeout(s.db, BUSY_TIMEOUT_MS);
	/* The first read parses the header: "file is not a database". */
	if ((rc = open_exec(&s, "PRAGMA user_version", "reading the schema version", &v, NULL, 0)))
		goto out;
	if (v > CHAT_STORE_SCHEMA_VERSION || v < 0) {
		errf(&s, "%s: schema version %lld is newer than this program knows (%d): use the newer "
		     "program that wrote it", path, (long long)v, CHAT_STORE_SCHEMA_VERSION);
		rc = CHAT_ERR_IO;
		goto out;
	}
	if (v == 0) {
		if ((rc = open_exec(&s, "SELECT count(*) FROM sqlite_master", "reading the schema",
		                    &objects, NULL, 0)))
			goto out;
		if (objects > 0) {
			errf(&s, "%s: an SQLite database of something else (schema version 0 with %lld "
			     "objects)", path, (long long)objects);
			rc = CHAT_ERR_IO;
			goto out;
		}
	}
	*version = (int)v;
out:
	if (s.db)
		sqlite3_close(s.db);
	if (rc == CHAT_ERR_NOMEM && !s.err[0])
		errf(&s, "%s: out of memory", path);
	if (errlen)
		snprintf(err, errlen, "%s", rc ? s.err : "");
	return rc;
}

static void sq_close(struct chat_store *s)
{
	if (!s)
		return;
	if (s->db && !sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	free(s->path);
	free(s);
}

static const char * sq_error(const struct chat_store *s)
{
	return s ? s->err : "no store";
}

static int sq_created(const struct chat_store *s)
{
	return s && s->created;
}

static int sq_check(struct chat_store *s)
{
	struct stat sb;

	if (!s)
		return CHAT_ERR_INVALID;
	if (s->gone[0])
		return CHAT_ERR_FAILED;
	if (stat(s->path, &sb) != 0) {
		snprintf(s->gone, sizeof(s->gone), "%s: the database file was removed while the relay "
		         "was running (%s; the open file was inode %llu)", s->path, strerror(errno),
		         (unsigned long long)s->ino);
	} else if (sb.st_dev != s->dev || sb.st_ino != s->ino) {
		snprintf(s->gone, sizeof(s->gone), "%s: the database file was replaced by another file "
		         "while the relay was running (the open file was inode %llu on device %llu, "
		         "the path now names inode %llu on device %llu)", s->path,
		         (unsigned long long)s->ino, (unsigned long long)s->dev,
		         (unsigned long long)sb.st_ino, (unsigned long long)sb.st_dev);
	} else {
		return CHAT_OK;
	}
	return CHAT_ERR_FAILED;
}

static const char * sq_gone(const struct chat_store *s)
{
	return s && s->gone[0] ? s->gone : NULL;
}

static int sq_schema_version(struct chat_store *s)
{
	int rc, v;

	if (!s)
		return CHAT_ERR_INVALID;
	rc = step(s, S_VERSION);
	v = rc == 1 ? sqlite3_column_int(s->st[S_VERSION], 0) : rc == 0 ? 0 : rc;
	done(s, S_VERSION);
	return v;
}

/* ---- transactions */

static int sq_begin(struct chat_store *s)
{
	int rc;

	if (!s)
		return CHAT_ERR_INVALID;
	if (s->in_tx || s->depth > 0) {
		errf(s, "%s: a transaction is already open (nesting is not supported)", s->path);
		return CHAT_ERR_STATE;
	}
	if (s->gone[0]) { /* nothing more goes into a file that is gone */
		errf(s, "%s", s->gone);
		return CHAT_ERR_FAILED;
	}
	rc = run(s, S_BEGIN);
	if (rc == CHAT_OK)
		s->in_tx = 1;
	return rc;
}

static int sq_commit(struct chat_store *s)
{
	int rc;

	if (!s)
		return CHAT_ERR_INVALID;
	if (!s->in_tx || s->depth > 0) {
		errf(s, "%s: commit without a transaction", s->path);
		return CHAT_ERR_STATE;
	}
	s->in_tx = 0;
	if (sqlite3_get_autocommit(s->db)) {
		errf(s, "%s: the transaction was rolled back after an earlier error", s->path);
		return CHAT_ERR_IO;
	}
	rc = commit_checked(s);
	if (rc != CHAT_OK)
		rollback_keep_err(s, S_ROLLBACK);
	return rc;
}

static void sq_rollback(struct chat_store *s)
{
	if (!s || !s->in_tx || s->depth > 0)
		return;
	s->in_tx = 0;
	if (!sqlite3_get_autocommit(s->db))
		run(s, S_ROLLBACK);
}

static int sq_in_transaction(const struct chat_store *s)
{
	return s && s->in_tx;
}

/* ---- accounts */

static int check_verifier(const struct chat_scram_verifier *v)
{
	return v && v->salt_len <= sizeof(v->salt) && v->iterations > 0;
}

static int sq_account_exists(struct chat_store *s, const char *name)
{
	const int id = S_ACC_EXISTS;
	int rc;

	if (!s || bad_name(name))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_text(s, id, 1, name)))
		goto out;
	rc = step(s, id);
	if (rc >= 0)
		rc = rc == 1 ? CHAT_OK : CHAT_ERR_NOTFOUND;
out:
	done(s, id);
	return rc;
}

static int sq_account_get(struct chat_store *s, const char *name, struct chat_account *a)
{
	const int id = S_ACC_GET;
	sqlite3_stmt *st;
	const void *p;
	size_t n;
	int64_t it;
	int rc;

	if (a)
		memset(a, 0, sizeof(*a));
	if (!s || !a || bad_name(name))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_text(s, id, 1, name)))
		goto out;
	st = s->st[id];
	rc = step(s, id);
	if (rc <= 0) {
		if (rc == 0)
			rc = CHAT_ERR_NOTFOUND;
		goto out;
	}
	rc = CHAT_ERR_IO;
	memcpy(a->name, name, strlen(name) + 1);
	a->group = sqlite3_column_int(st, 0);
	p = sqlite3_column_blob(st, 1);
	n = (size_t)sqlite3_column_bytes(st, 1);
	if (n > sizeof(a->v.salt))
		goto damaged;
	memcpy(a->v.salt, p, n);
	a->v.salt_len = n;
	it = sqlite3_column_int64(st, 2);
	if (it <= 0 || it > UINT_MAX)
		goto damaged;
	a->v.iterations = (unsigned)it;
	p = sqlite3_column_blob(st, 3);
	if (sqlite3_column_bytes(st, 3) != CHAT_SCRAM_KEY)
		goto damaged;
	memcpy(a->v.stored_key, p, CHAT_SCRAM_KEY);
	p = sqlite3_column_blob(st, 4);
	if (sqlite3_column_bytes(st, 4) != CHAT_SCRAM_KEY)
		goto damaged;
	memcpy(a->v.server_key, p, CHAT_SCRAM_KEY);
	a->created_ms = sqlite3_column_int64(st, 5);
	rc = CHAT_OK;
	goto out;
damaged:
	errf(s, "%s: account %s: the stored verifier is malformed (damaged row)", s->path, name);
out:
	done(s, id);
	if (rc != CHAT_OK)
		chat_wipe(a, sizeof(*a));
	return rc;
}

static int sq_account_add(struct chat_store *s, const struct chat_account *a)
{
	const int id = S_ACC_ADD;
	int rc;

	if (!s || !a || memchr(a->name, '\0', sizeof(a->name)) == NULL || bad_name(a->name) ||
	    (a->group != CHAT_GROUP_REGULAR && a->group != CHAT_GROUP_ADMIN) ||
	    !check_verifier(&a->v))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_text(s, id, 1, a->name)) ||
	    (rc = bind_i64(s, id, 2, a->group)) ||
	    (rc = bind_blob(s, id, 3, a->v.salt_len, a->v.salt)) ||
	    (rc = bind_i64(s, id, 4, a->v.iterations)) ||
	    (rc = bind_blob(s, id, 5, CHAT_SCRAM_KEY, a->v.stored_key)) ||
	    (rc = bind_blob(s, id, 6, CHAT_SCRAM_KEY, a->v.server_key)) ||
	    (rc = bind_i64(s, id, 7, a->created_ms)))
		goto out;
	rc = step(s, id);
	if (rc < 0 && sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_PRIMARYKEY) {
		errf(s, "%s: account %s exists already", s->path, a->name);
		rc = CHAT_ERR_INVALID;
	}
out:
	done(s, id);
	return rc < 0 ? rc : CHAT_OK;
}

/* An UPDATE or DELETE that must hit a row: NOTFOUND when it did not. */
static int run_changed(struct chat_store *s, int id, const char *name)
{
	int rc = run(s, id);

	if (rc == CHAT_OK && sqlite3_changes(s->db) == 0) {
		errf(s, "%s: %s: no such row (%s)", s->path, stmts[id].what, name);
		rc = CHAT_ERR_NOTFOUND;
	}
	return rc;
}

static int sq_account_set_verifier(struct chat_store *s, const char *name,
                                    const struct chat_scram_verifier *v)
{
	const int id = S_ACC_SET_VERIFIER;
	int rc;

	if (!s || bad_name(name) || !check_verifier(v))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_text(s, id, 1, name)) ||
	    (rc = bind_blob(s, id, 2, v->salt_len, v->salt)) ||
	    (rc = bind_i64(s, id, 3, v->iterations)) ||
	    (rc = bind_blob(s, id, 4, CHAT_SCRAM_KEY, v->stored_key)) ||
	    (rc = bind_blob(s, id, 5, CHAT_SCRAM_KEY, v->server_key))) {
		done(s, id);
		return rc;
	}
	return run_changed(s, id, name);
}

static int sq_account_set_group(struct chat_store *s, const char *name, int group)
{
	const int id = S_ACC_SET_GROUP;
	int rc;

	if (!s || bad_name(name) || (group != CHAT_GROUP_REGULAR && group != CHAT_GROUP_ADMIN))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_text(s, id, 1, name)) || (rc = bind_i64(s, id, 2, group))) {
		done(s, id);
		return rc;
	}
	return run_changed(s, id, name);
}

static int sq_account_remove(struct chat_store *s, const char *name)
{
	static const int cascade[] = { S_FRIEND_DEL_ALL, S_CONV_DEL_ALL, S_OFFER_DEL_ALL, S_MAIL_DEL_TO,
	                               S_SENDER_DEL, S_KEY_DEL_ALL };
	int rc, sp;

	if (!s || bad_name(name))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = tx_enter(s, &sp)))
		return rc;
	if ((rc = bind_text(s, S_ACC_DEL, 1, name)) == CHAT_OK)
		rc = run_changed(s, S_ACC_DEL, name);
	else
		done(s, S_ACC_DEL);
	for (size_t i = 0; rc == CHAT_OK && i < sizeof(cascade) / sizeof(cascade[0]); i++) {
		if ((rc = bind_text(s, cascade[i], 1, name)) == CHAT_OK)
			rc = run(s, cascade[i]);
		else
			done(s, cascade[i]);
	}
	return tx_leave(s, sp, rc);
}

static int sq_account_count(struct chat_store *s, int group, size_t *count)
{
	const int id = S_ACC_COUNT;
	int rc;

	if (count)
		*count = 0;
	if (!s || !count)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_i64(s, id, 1, group)))
		goto out;
	rc = step(s, id);
	if (rc == 1)
		*count = (size_t)sqlite3_column_int64(s->st[id], 0);
out:
	done(s, id);
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

static int sq_friend_get(struct chat_store *s, const char *a, const char *b, int *state)
{
	const int id = S_FRIEND_GET;
	int rc;

	if (state)
		*state = CHAT_FRIEND_NONE;
	if (!s || bad_name(a) || bad_name(b) || !state)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_text(s, id, 1, a)) || (rc = bind_text(s, id, 2, b)))
		goto out;
	rc = step(s, id);
	if (rc == 1) {
		*state = sqlite3_column_int(s->st[id], 0);
		if (*state < CHAT_FRIEND_YES || *state > CHAT_FRIEND_ASKED_BY) {
			errf(s, "%s: friendship %s/%s: unknown state %d (damaged row)", s->path, a, b,
			     *state);
			*state = CHAT_FRIEND_NONE;
			rc = CHAT_ERR_IO;
		}
	}
out:
	done(s, id);
	return rc < 0 ? rc : CHAT_OK;
}

static int friend_put(struct chat_store *s, const char *a, const char *b, int state)
{
	const int id = S_FRIEND_PUT;
	int rc;

	if ((rc = bind_text(s, id, 1, a)) || (rc = bind_text(s, id, 2, b)) ||
	    (rc = bind_i64(s, id, 3, state))) {
		done(s, id);
		return rc;
	}
	return run(s, id);
}

static int sq_friend_set(struct chat_store *s, const char *a, const char *b, int state)
{
	int rc, sp;

	if (!s || bad_name(a) || bad_name(b) || strcmp(a, b) == 0 || state < CHAT_FRIEND_NONE ||
	    state > CHAT_FRIEND_ASKED_BY)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)))
		return rc;
	if (state == CHAT_FRIEND_NONE) {
		if ((rc = bind_text(s, S_FRIEND_DEL, 1, a)) || (rc = bind_text(s, S_FRIEND_DEL, 2, b))) {
			done(s, S_FRIEND_DEL);
			return rc;
		}
		return run(s, S_FRIEND_DEL);
	}
	if ((rc = tx_enter(s, &sp)))
		return rc;
	rc = friend_put(s, a, b, state);
	if (rc == CHAT_OK)
		rc = friend_put(s, b, a, mirror(state));
	return tx_leave(s, sp, rc);
}

static int sq_friends(struct chat_store *s, const char *name, chat_store_friend_cb cb, void *arg)
{
	const int id = S_FRIEND_LIST;
	int rc;

	if (!s || bad_name(name) || !cb)
		return CHAT_ERR_INVALID;
	if (sqlite3_stmt_busy(s->st[id])) {
		errf(s, "%s: chat_store_friends called from its own callback", s->path);
		return CHAT_ERR_STATE;
	}
	if ((rc = usable(s)) || (rc = bind_text(s, id, 1, name)))
		goto out;
	while ((rc = step(s, id)) == 1) {
		if (cb(arg, col_str(s->st[id], 0), sqlite3_column_int(s->st[id], 1)) != 0)
			break;
	}
out:
	done(s, id);
	return rc < 0 ? rc : CHAT_OK;
}

/* ---- identity keys */

static int sq_key_put(struct chat_store *s, const char *name, const char *suite, size_t len,
                       const uint8_t *key, int64_t now_ms)
{
	int rc, n = 0;

	if (!s || bad_name(name) || bad_name(suite) || !key || !len || len > CHAT_STORE_KEY_MAX)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_text(s, S_KEY_COUNT, 1, name)) ||
	    (rc = bind_text(s, S_KEY_COUNT, 2, suite))) {
		done(s, S_KEY_COUNT);
		return rc;
	}
	if ((rc = step(s, S_KEY_COUNT)) == 1)
		n = sqlite3_column_int(s->st[S_KEY_COUNT], 0);
	done(s, S_KEY_COUNT);
	if (rc < 0)
		return rc;
	if (n >= CHAT_STORE_KEYS_PER_USER)
		return CHAT_ERR_NOSPACE;
	if ((rc = bind_text(s, S_KEY_PUT, 1, name)) || (rc = bind_text(s, S_KEY_PUT, 2, suite)) ||
	    (rc = bind_blob(s, S_KEY_PUT, 3, len, key)) || (rc = bind_i64(s, S_KEY_PUT, 4, now_ms))) {
		done(s, S_KEY_PUT);
		return rc;
	}
	return run(s, S_KEY_PUT);
}

static int sq_keys(struct chat_store *s, const char *name, chat_store_key_cb cb, void *arg)
{
	const int id = S_KEY_LIST;
	int rc;

	if (!s || bad_name(name) || !cb)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_text(s, id, 1, name)))
		goto out;
	while ((rc = step(s, id)) == 1) {
		const void *key = sqlite3_column_blob(s->st[id], 1);
		int len = sqlite3_column_bytes(s->st[id], 1);
		const char *suite = col_str(s->st[id], 0);
		if (!key || len <= 0 || len > CHAT_STORE_KEY_MAX || bad_name(suite)) {
			errf(s, "%s: an identity key of %s is damaged", s->path, name);
			rc = CHAT_ERR_IO;
			break;
		}
		if (cb(arg, suite, (size_t)len, key) != 0)
			break;
	}
out:
	done(s, id);
	return rc < 0 ? rc : CHAT_OK;
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

static int bind_pair(struct chat_store *s, int id, const char *a, const char *b)
{
	int rc;

	order(&a, &b);
	if ((rc = bind_text(s, id, 1, a)) == CHAT_OK)
		rc = bind_text(s, id, 2, b);
	return rc;
}

static int sq_conv_add(struct chat_store *s, const char *a, const char *b, const char *suite,
                        int64_t now_ms)
{
	const int id = S_CONV_PUT;
	int rc;

	if (!s || bad_name(a) || bad_name(b) || bad_name(suite))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_pair(s, id, a, b)) || (rc = bind_text(s, id, 3, suite)) ||
	    (rc = bind_i64(s, id, 4, now_ms))) {
		done(s, id);
		return rc;
	}
	return run(s, id);
}

static int sq_conv_get(struct chat_store *s, const char *a, const char *b, char suite[33])
{
	const int id = S_CONV_GET;
	int rc;

	if (suite)
		suite[0] = '\0';
	if (!s || bad_name(a) || bad_name(b) || !suite)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_pair(s, id, a, b)))
		goto out;
	rc = step(s, id);
	if (rc == 0)
		rc = CHAT_ERR_NOTFOUND;
	else if (rc == 1)
		rc = col_text(s, id, 0, NAME_MAX_LEN + 1, suite);
out:
	done(s, id);
	return rc;
}

static int sq_conv_remove(struct chat_store *s, const char *a, const char *b)
{
	const int id = S_CONV_DEL;
	int rc;

	if (!s || bad_name(a) || bad_name(b))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_pair(s, id, a, b))) {
		done(s, id);
		return rc;
	}
	return run_changed(s, id, a);
}

/* ---- offers (directional: from asked to) */

static int bind_from_to(struct chat_store *s, int id, const char *from, const char *to)
{
	int rc = bind_text(s, id, 1, from);

	return rc == CHAT_OK ? bind_text(s, id, 2, to) : rc;
}

static int sq_offer_add(struct chat_store *s, const char *from, const char *to,
                         const char *suites, int64_t now_ms)
{
	const int id = S_OFFER_PUT;
	int rc;

	if (!s || bad_name(from) || bad_name(to) || !suites || strlen(suites) >= 16 * 34)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_from_to(s, id, from, to)) ||
	    (rc = bind_text(s, id, 3, suites)) || (rc = bind_i64(s, id, 4, now_ms))) {
		done(s, id);
		return rc;
	}
	return run(s, id);
}

static int sq_offer_get(struct chat_store *s, const char *from, const char *to,
                         char suites[16 * 34])
{
	const int id = S_OFFER_GET;
	int rc;

	if (suites)
		suites[0] = '\0';
	if (!s || bad_name(from) || bad_name(to) || !suites)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_from_to(s, id, from, to)))
		goto out;
	rc = step(s, id);
	if (rc == 0)
		rc = CHAT_ERR_NOTFOUND;
	else if (rc == 1)
		rc = col_text(s, id, 0, 16 * 34, suites);
out:
	done(s, id);
	return rc;
}

static int sq_offer_remove(struct chat_store *s, const char *from, const char *to)
{
	const int id = S_OFFER_DEL;
	int rc;

	if (!s || bad_name(from) || bad_name(to))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_from_to(s, id, from, to))) {
		done(s, id);
		return rc;
	}
	return run_changed(s, id, from);
}

/* ---- mail */

static int sq_mail_add(struct chat_store *s, const char *to, const char *from,
                        uint64_t client_id, int64_t stored_ms, int64_t expires_ms, size_t len,
                        const uint8_t *data, int64_t *id_out)
{
	const int id = S_MAIL_ADD;
	int rc;

	if (id_out)
		*id_out = 0;
	if (!from)
		from = "";
	if (!s || bad_name(to) || strlen(from) > NAME_MAX_LEN || (len && !data) || expires_ms < 0)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_text(s, id, 1, to)) || (rc = bind_text(s, id, 2, from)) ||
	    (rc = bind_i64(s, id, 3, (int64_t)client_id)) || (rc = bind_i64(s, id, 4, stored_ms)) ||
	    (rc = bind_i64(s, id, 5, expires_ms)) || (rc = bind_blob(s, id, 6, len, data))) {
		done(s, id);
		return rc;
	}
	rc = run(s, id);
	if (rc == CHAT_OK && id_out)
		*id_out = sqlite3_last_insert_rowid(s->db);
	return rc;
}

static int sq_mail_usage(struct chat_store *s, const char *to, size_t *count, uint64_t *bytes)
{
	const int id = S_MAIL_USAGE;
	int rc;

	if (count)
		*count = 0;
	if (bytes)
		*bytes = 0;
	if (!s || bad_name(to))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_text(s, id, 1, to)))
		goto out;
	rc = step(s, id);
	if (rc == 1) {
		if (count)
			*count = (size_t)sqlite3_column_int64(s->st[id], 0);
		if (bytes)
			*bytes = (uint64_t)sqlite3_column_int64(s->st[id], 1);
	}
out:
	done(s, id);
	return rc < 0 ? rc : CHAT_OK;
}

/* Columns from, client_id, stored_ms, expires_ms, data starting at col. */
static void mail_row(sqlite3_stmt *st, int col, struct chat_mail *m)
{
	m->from = col_str(st, col);
	m->client_id = (uint64_t)sqlite3_column_int64(st, col + 1);
	m->stored_ms = sqlite3_column_int64(st, col + 2);
	m->expires_ms = sqlite3_column_int64(st, col + 3);
	m->data = sqlite3_column_blob(st, col + 4);
	m->len = (size_t)sqlite3_column_bytes(st, col + 4);
	if (!m->data)
		m->data = (const uint8_t *)"";
}

static int sq_mail_for(struct chat_store *s, const char *to, int64_t after_id, size_t limit,
                        chat_store_mail_cb cb, void *arg)
{
	const int id = S_MAIL_FOR;
	struct chat_mail m;
	int rc;

	if (!s || bad_name(to) || !cb)
		return CHAT_ERR_INVALID;
	if (sqlite3_stmt_busy(s->st[id])) {
		errf(s, "%s: chat_store_mail_for called from its own callback", s->path);
		return CHAT_ERR_STATE;
	}
	if ((rc = usable(s)) || (rc = bind_text(s, id, 1, to)) || (rc = bind_i64(s, id, 2, after_id)) ||
	    (rc = bind_i64(s, id, 3, limit == 0 || limit > (uint64_t)INT64_MAX ? -1 : (int64_t)limit)))
		goto out;
	while ((rc = step(s, id)) == 1) {
		memset(&m, 0, sizeof(m));
		m.id = sqlite3_column_int64(s->st[id], 0);
		m.to = to;
		mail_row(s->st[id], 1, &m);
		if (cb(arg, &m) != 0)
			break;
	}
out:
	done(s, id);
	return rc < 0 ? rc : CHAT_OK;
}

static int sq_mail_take(struct chat_store *s, const char *to, int64_t mail_id, struct chat_mail *m,
                         char from[33])
{
	const int id = S_MAIL_GET;
	sqlite3_stmt *st;
	char sender[NAME_MAX_LEN + 1];
	int rc, sp;

	if (m)
		memset(m, 0, sizeof(*m));
	if (from)
		from[0] = '\0';
	if (!s || bad_name(to) || (m && !from))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = tx_enter(s, &sp)))
		return rc;
	st = s->st[id];
	if ((rc = bind_i64(s, id, 1, mail_id)) || (rc = bind_text(s, id, 2, to)))
		goto out;
	rc = step(s, id);
	if (rc == 0) {
		errf(s, "%s: no mail %lld for %s", s->path, (long long)mail_id, to);
		rc = CHAT_ERR_NOTFOUND;
		goto out;
	}
	if (rc < 0 || (rc = col_text(s, id, 0, sizeof(sender), sender)))
		goto out;
	if (m) {
		m->id = mail_id;
		m->to = to;
		m->from = from;
		m->client_id = (uint64_t)sqlite3_column_int64(st, 1);
		m->stored_ms = sqlite3_column_int64(st, 2);
		m->expires_ms = sqlite3_column_int64(st, 3);
		m->len = (size_t)sqlite3_column_int64(st, 4); /* the size only: data stays NULL */
	}
	done(s, id);
	if ((rc = bind_i64(s, S_MAIL_DEL, 1, mail_id)) == CHAT_OK)
		rc = run(s, S_MAIL_DEL);
	else
		done(s, S_MAIL_DEL);
out:
	done(s, id);
	rc = tx_leave(s, sp, rc);
	if (rc == CHAT_OK && from)
		memcpy(from, sender, strlen(sender) + 1);
	else if (m)
		memset(m, 0, sizeof(*m));
	return rc;
}

static int sq_mail_expire(struct chat_store *s, int64_t now_ms, chat_store_mail_cb cb, void *arg)
{
	const int id = S_MAIL_EXPIRED;
	struct chat_mail m;
	int64_t last = 0;
	int rc, sp, seen = 0;

	if (!s)
		return CHAT_ERR_INVALID;
	if (sqlite3_stmt_busy(s->st[id])) {
		errf(s, "%s: chat_store_mail_expire called from its own callback", s->path);
		return CHAT_ERR_STATE;
	}
	if ((rc = usable(s)) || (rc = tx_enter(s, &sp)))
		return rc;
	if ((rc = bind_i64(s, id, 1, now_ms)))
		goto out;
	/* Rows are deleted up to the last one shown: mail added by a callback
	 * has a higher id, and a callback that stops leaves the rest for later. */
	while ((rc = step(s, id)) == 1) {
		memset(&m, 0, sizeof(m));
		m.id = sqlite3_column_int64(s->st[id], 0);
		m.to = col_str(s->st[id], 1);
		mail_row(s->st[id], 2, &m);
		last = m.id;
		seen = 1;
		if (cb && cb(arg, &m) != 0)
			break;
	}
	done(s, id);
	if (rc >= 0 && seen) {
		if ((rc = bind_i64(s, S_MAIL_DEL_EXPIRED, 1, now_ms)) ||
		    (rc = bind_i64(s, S_MAIL_DEL_EXPIRED, 2, last)))
			done(s, S_MAIL_DEL_EXPIRED);
		else
			rc = run(s, S_MAIL_DEL_EXPIRED);
	}
out:
	done(s, id);
	return tx_leave(s, sp, rc < 0 ? rc : CHAT_OK);
}

static int sq_sender_last(struct chat_store *s, const char *sender, uint64_t *client_id)
{
	const int id = S_SENDER_GET;
	int rc;

	if (client_id)
		*client_id = 0;
	if (!s || bad_name(sender) || !client_id)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_text(s, id, 1, sender)))
		goto out;
	rc = step(s, id);
	if (rc == 1)
		*client_id = (uint64_t)sqlite3_column_int64(s->st[id], 0);
out:
	done(s, id);
	return rc < 0 ? rc : CHAT_OK;
}

static int sq_sender_set_last(struct chat_store *s, const char *sender, uint64_t client_id)
{
	const int id = S_SENDER_PUT;
	int rc;

	if (!s || bad_name(sender))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_text(s, id, 1, sender)) ||
	    (rc = bind_i64(s, id, 2, (int64_t)client_id))) {
		done(s, id);
		return rc;
	}
	return run(s, id);
}

static int sq_accepted_get(struct chat_store *s, const char *sender, uint64_t client_id,
                            int *seen)
{
	const int id = S_ACCEPTED_GET;
	int rc;

	if (seen)
		*seen = 0;
	if (!s || bad_name(sender) || !seen)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_text(s, id, 1, sender)) ||
	    (rc = bind_i64(s, id, 2, (int64_t)client_id)))
		goto out;
	rc = step(s, id);
	if (rc >= 0) {
		*seen = rc == 1;
		rc = CHAT_OK;
	}
out:
	done(s, id);
	return rc;
}

static int sq_accepted_add(struct chat_store *s, const char *sender, uint64_t client_id,
                            int64_t now_ms)
{
	const int id = S_ACCEPTED_PUT;
	int rc;

	if (!s || bad_name(sender))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_text(s, id, 1, sender)) ||
	    (rc = bind_i64(s, id, 2, (int64_t)client_id)) || (rc = bind_i64(s, id, 3, now_ms))) {
		done(s, id);
		return rc;
	}
	return run(s, id);
}

static int sq_accepted_prune(struct chat_store *s, int64_t older_than_ms)
{
	const int id = S_ACCEPTED_PRUNE;
	int rc;

	if (!s)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_i64(s, id, 1, older_than_ms))) {
		done(s, id);
		return rc;
	}
	return run(s, id);
}

/* ---- archive */

static int sq_archive_add(struct chat_store *s, const char *from, const char *to,
                           int64_t stored_ms, size_t len, const uint8_t *data)
{
	const int id = S_ARCHIVE_ADD;
	int rc;

	if (!s || bad_name(from) || bad_name(to) || (len && !data))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_pair(s, id, from, to)) ||
	    (rc = bind_text(s, id, 3, from)) || (rc = bind_i64(s, id, 4, stored_ms)) ||
	    (rc = bind_blob(s, id, 5, len, data))) {
		done(s, id);
		return rc;
	}
	return run(s, id);
}

static int sq_archive_prune(struct chat_store *s, int64_t older_than_ms, size_t *removed)
{
	const int id = S_ARCHIVE_PRUNE;
	int rc;

	if (removed)
		*removed = 0;
	if (!s)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_i64(s, id, 1, older_than_ms))) {
		done(s, id);
		return rc;
	}
	rc = run(s, id);
	if (rc == CHAT_OK && removed)
		*removed = (size_t)sqlite3_changes(s->db);
	return rc;
}

static int sq_archive_count(struct chat_store *s, const char *a, const char *b, size_t *count)
{
	const int id = S_ARCHIVE_COUNT;
	int rc;

	if (count)
		*count = 0;
	if (!s || bad_name(a) || bad_name(b) || !count)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_pair(s, id, a, b)))
		goto out;
	rc = step(s, id);
	if (rc == 1)
		*count = (size_t)sqlite3_column_int64(s->st[id], 0);
out:
	done(s, id);
	return rc < 0 ? rc : CHAT_OK;
}

/* ---- throttling counts kept across restarts */

#define THROTTLE_KEY_MAX 255

static int bad_throttle(int kind, const char *key)
{
	return (kind != CHAT_STORE_THROTTLE_ACCOUNT && kind != CHAT_STORE_THROTTLE_REGISTER) || !key ||
	       strlen(key) > THROTTLE_KEY_MAX;
}

static int sq_throttle_put(struct chat_store *s, int kind, const char *key, unsigned failures,
                            int64_t last_ms)
{
	const int id = S_THR_PUT;
	int rc;

	if (!s || bad_throttle(kind, key))
		return CHAT_ERR_INVALID;
	if (!failures)
		return sq_throttle_del(s, kind, key);
	if ((rc = usable(s)) || (rc = bind_i64(s, id, 1, kind)) || (rc = bind_text(s, id, 2, key)) ||
	    (rc = bind_i64(s, id, 3, failures)) || (rc = bind_i64(s, id, 4, last_ms))) {
		done(s, id);
		return rc;
	}
	return run(s, id);
}

static int sq_throttle_del(struct chat_store *s, int kind, const char *key)
{
	const int id = S_THR_DEL;
	int rc;

	if (!s || bad_throttle(kind, key))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_i64(s, id, 1, kind)) || (rc = bind_text(s, id, 2, key))) {
		done(s, id);
		return rc;
	}
	return run(s, id);
}

static int sq_throttle_each(struct chat_store *s, int kind, size_t limit, chat_store_throttle_cb cb,
                             void *arg)
{
	const int id = S_THR_LIST;
	int rc;

	if (!s || bad_throttle(kind, "") || !cb)
		return CHAT_ERR_INVALID;
	if (sqlite3_stmt_busy(s->st[id])) {
		errf(s, "%s: chat_store_throttle_each called from its own callback", s->path);
		return CHAT_ERR_STATE;
	}
	if ((rc = usable(s)) || (rc = bind_i64(s, id, 1, kind)) ||
	    (rc = bind_i64(s, id, 2, limit == 0 || limit > (uint64_t)INT64_MAX ? -1 : (int64_t)limit)))
		goto out;
	while ((rc = step(s, id)) == 1) {
		sqlite3_stmt *st = s->st[id];
		int64_t f = sqlite3_column_int64(st, 1);
		if (f <= 0 || f > UINT_MAX)
			continue; /* not a count this program wrote: ignored */
		if (cb(arg, col_str(st, 0), (unsigned)f, sqlite3_column_int64(st, 2)) != 0)
			break;
	}
out:
	done(s, id);
	return rc < 0 ? rc : CHAT_OK;
}

static int sq_throttle_prune(struct chat_store *s, int kind, int64_t older_than_ms, size_t keep)
{
	int rc;

	if (!s || bad_throttle(kind, ""))
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = bind_i64(s, S_THR_PRUNE_AGE, 1, kind)) ||
	    (rc = bind_i64(s, S_THR_PRUNE_AGE, 2, older_than_ms))) {
		done(s, S_THR_PRUNE_AGE);
		return rc;
	}
	if ((rc = run(s, S_THR_PRUNE_AGE)))
		return rc;
	if ((rc = bind_i64(s, S_THR_PRUNE_COUNT, 1, kind)) ||
	    (rc = bind_i64(s, S_THR_PRUNE_COUNT, 2, keep > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)keep))) {
		done(s, S_THR_PRUNE_COUNT);
		return rc;
	}
	return run(s, S_THR_PRUNE_COUNT);
}

/* ---- the relay's own secrets */

static int sq_secret(struct chat_store *s, const char *name, size_t len, const uint8_t *fresh,
                      uint8_t *out)
{
	int rc, sp;

	if (!s || !name || !*name || strlen(name) > THROTTLE_KEY_MAX || !len || len > CHAT_STORE_SECRET_MAX ||
	    !fresh || !out)
		return CHAT_ERR_INVALID;
	if ((rc = usable(s)) || (rc = tx_enter(s, &sp)))
		return rc;
	if ((rc = bind_text(s, S_SECRET_ADD, 1, name)) || (rc = bind_blob(s, S_SECRET_ADD, 2, len, fresh)))
		done(s, S_SECRET_ADD);
	else
		rc = run(s, S_SECRET_ADD);
	if (rc == CHAT_OK && (rc = bind_text(s, S_SECRET_GET, 1, name)) == CHAT_OK) {
		rc = step(s, S_SECRET_GET);
		if (rc == 1) {
			sqlite3_stmt *st = s->st[S_SECRET_GET];
			const void *p = sqlite3_column_blob(st, 0);
			if ((size_t)sqlite3_column_bytes(st, 0) != len || !p) {
				errf(s, "%s: the stored secret %s is not %zu bytes long (damaged row)", s->path,
				     name, len);
				rc = CHAT_ERR_IO;
			} else {
				memcpy(out, p, len);
				rc = CHAT_OK;
			}
		} else if (rc == 0) {
			errf(s, "%s: the secret %s vanished while it was written", s->path, name);
			rc = CHAT_ERR_IO;
		}
	}
	done(s, S_SECRET_GET);
	return tx_leave(s, sp, rc);
}

const struct chat_store_backend chat_store_sqlite = {
	.version = CHAT_STORE_BACKEND_VERSION,
	.size = sizeof(struct chat_store_backend),
	.name = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.probe = sq_probe,
	.created = sq_created,
	.check = sq_check,
	.gone = sq_gone,
	.error = sq_error,
	.schema_version = sq_schema_version,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.in_transaction = sq_in_transaction,
	.account_get = sq_account_get,
	.account_exists = sq_account_exists,
	.account_add = sq_account_add,
	.account_set_verifier = sq_account_set_verifier,
	.account_set_group = sq_account_set_group,
	.account_remove = sq_account_remove,
	.account_count = sq_account_count,
	.key_put = sq_key_put,
	.keys = sq_keys,
	.friend_get = sq_friend_get,
	.friend_set = sq_friend_set,
	.friends = sq_friends,
	.conv_add = sq_conv_add,
	.conv_get = sq_conv_get,
	.conv_remove = sq_conv_remove,
	.offer_add = sq_offer_add,
	.offer_get = sq_offer_get,
	.offer_remove = sq_offer_remove,
	.mail_add = sq_mail_add,
	.mail_usage = sq_mail_usage,
	.mail_for = sq_mail_for,
	.mail_take = sq_mail_take,
	.mail_expire = sq_mail_expire,
	.sender_last = sq_sender_last,
	.sender_set_last = sq_sender_set_last,
	.accepted_get = sq_accepted_get,
	.accepted_add = sq_accepted_add,
	.accepted_prune = sq_accepted_prune,
	.archive_add = sq_archive_add,
	.archive_prune = sq_archive_prune,
	.archive_count = sq_archive_count,
	.throttle_put = sq_throttle_put,
	.throttle_del = sq_throttle_del,
	.throttle_each = sq_throttle_each,
	.throttle_prune = sq_throttle_prune,
	.secret = sq_secret,
};
