/* chat-relay: the relay server.  One epoll loop, non-blocking sockets,
 * bounded per-client output queues; the routing itself is relay.c.  As a
 * service (docs/SERVICE.md): SIGHUP reads chat.ini again and reopens the
 * log, SIGTERM and SIGINT stop it, a lock keeps a second relay off its
 * database. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "durable.h"
#include "lockfile.h"
#include "log.h"
#include "loop.h"
#include "program.h"
#include "proto.h"
#include "relay.h"
#include "secret.h"
#include "store.h"

struct server {
	struct chat_prog prog;
	struct chat_loop *loop;
	struct chat_relay *relay;
	const struct chat_transport_ops *tp;
	void *listener;
	struct chat_watch *listen_watch, *signal_watch;
	int signal_fd;
	int stopping;
	struct chat_store *store;
	const char *add_admin; /* --add-admin NAME */
	int init_store;        /* --init-store */
	int fingerprint;       /* --fingerprint */
	size_t max_clients;
	unsigned long long nofile; /* the open-file limit the relay runs with */
	struct chat_log_limit lim_accept;
	int lock_fd;              /* DATABASE.lock, held while the relay runs */
	/* The configuration last applied: prog.cfg at start, then the newest a
	 * SIGHUP accepted.  prog.cfg stays what the relay started with (the
	 * plugins read it; settings that need a restart are compared with it). */
	struct chat_config *live;
	char log_target[PATH_MAX]; /* "stderr", "syslog" or the file */
};

/* Files the relay holds besides its clients: stdio, the listener, epoll,
 * the signalfd, the database with its -wal and -shm, a few spare. */
#define FD_MARGIN 32

/* At start, and when SIGHUP raises relay.max_clients. */
static void warn_fd_limit(struct server *s)
{
	struct rlimit rl;

	if (!s->nofile || s->nofile >= s->max_clients + FD_MARGIN || getrlimit(RLIMIT_NOFILE, &rl))
		return;
	chat_warn("the open-file limit (RLIMIT_NOFILE) is %llu (hard limit %llu), below "
	          "relay.max_clients (%zu) + %d for the relay's own files: from about %llu "
	          "connections on, new ones fail with 'too many open files (EMFILE)'.  Raise "
	          "the hard limit (ulimit -Hn; LimitNOFILE= under systemd) or lower "
	          "relay.max_clients", s->nofile,
	          rl.rlim_max == RLIM_INFINITY ? 0ull : (unsigned long long)rl.rlim_max,
	          s->max_clients, FD_MARGIN, s->nofile > FD_MARGIN ? s->nofile - FD_MARGIN : 0ull);
}

/* RLIMIT_NOFILE: the soft limit up to the hard one (a default soft limit
 * of 1,024 would stop a relay of 10,000 clients at about 1,000), and a
 * warning when even that is below max_clients + FD_MARGIN. */
static void raise_fd_limit(struct server *s)
{
	struct rlimit rl;
	unsigned long long nr_open = 0, want, before;
	FILE *f;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		chat_warn("cannot read the open-file limit (RLIMIT_NOFILE): %s", strerror(errno));
		return;
	}
	before = rl.rlim_cur;
	want = rl.rlim_max;
	/* Beyond fs.nr_open the kernel refuses, whatever the hard limit says. */
	f = fopen("/proc/sys/fs/nr_open", "r");
	if (f) {
		if (fscanf(f, "%llu", &nr_open) != 1)
			nr_open = 0;
		fclose(f);
	}
	if (nr_open && (rl.rlim_max == RLIM_INFINITY || want > nr_open))
		want = nr_open;
	else if (rl.rlim_max == RLIM_INFINITY)
		want = s->max_clients + FD_MARGIN > before ? s->max_clients + FD_MARGIN : before;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			chat_info("open-file limit (RLIMIT_NOFILE) raised from %llu to %llu", before, want);
		else
			chat_warn("cannot raise the open-file limit (RLIMIT_NOFILE) from %llu to %llu: %s",
			          before, want, strerror(errno));
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	s->nofile = rl.rlim_cur == RLIM_INFINITY ? 0 : rl.rlim_cur;
	warn_fd_limit(s);
}

/* errno of a failed accept (the transport keeps it with CHAT_ERR_IO), named:
 * "input/output error" says nothing to whoever reads the log. */
static const char *accept_error(struct server *s, int rc, int e, size_t cap, char *dst)
{
	if (rc != CHAT_ERR_IO)
		return chat_strerror(rc);
	switch (e) {
	case EMFILE:
		snprintf(dst, cap, "too many open files (EMFILE: the relay's limit is %llu, "
		         "relay.max_clients is %zu)", s->nofile, s->max_clients);
		break;
	case ENFILE:
		snprintf(dst, cap, "too many open files in the system (ENFILE)");
		break;
	case ENOBUFS:
	case ENOMEM:
		snprintf(dst, cap, "out of kernel memory (%s)", e == ENOBUFS ? "ENOBUFS" : "ENOMEM");
		break;
	default:
		snprintf(dst, cap, "%s", strerror(e));
		break;
	}
	return dst;
}

/* PATH.marker, next to the database, says a store was created at PATH: a
 * database that disappears is then noticed at the next start instead of
 * being replaced by an empty one (docs/CONFIG.md).  0, or -1 with errno. */
static int write_marker(const char *marker, const char *path)
{
	char text[5000];
	int fd, n, rc = -1, e = 0;

	n = snprintf(text, sizeof(text),
	             "chat-relay keeps its store in %s (marked at Unix time %lld).\n"
	             "While this file exists chat-relay refuses to start without that database;\n"
	             "chat-relay --init-store creates an empty one on purpose.\n",
	             path, (long long)time(NULL));
	if (n < 0 || (size_t)n >= sizeof(text)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, text, (size_t)n);
	if (w != n) {
		if (w >= 0)
			errno = EIO; /* short write: no errno of its own */
		goto out;
	}
	if (fsync(fd) != 0)
		goto out;
	rc = 0;
out:
	e = errno;
	if (close(fd) != 0 && rc == 0) {
		e = errno;
		rc = -1;
	}
	if (rc == 0 && chat_fsync_dir_of(marker) != 0) {
		e = errno;
		rc = -1;
	}
	errno = e;
	return rc;
}

/* relay.store or relay.database: the store's spec into spec[cap] ("" for
 * none: guests only), the key it came from and where it was set.  Only one
 * of the two may be set.  0, or 1 with the error printed (never the value
 * of relay.store: a URL may hold a password). */
static int store_setting(struct chat_prog *p, size_t cap, char *spec, const char **key,
                         const char **where)
{
	const char *db = chat_config_path(p->cfg, "relay", "database");
	const char *st = chat_config_get(p->cfg, "relay", "store");

	spec[0] = '\0';
	*key = "relay.database";
	*where = chat_config_where(p->cfg, "relay", "database");
	if (st && *st && db && *db) {
		chat_prog_error(p, "relay.store (%s) and relay.database (%s) are both set: keep one "
		                "(relay.store = sqlite:PATH is relay.database = PATH)",
		                chat_config_where(p->cfg, "relay", "store"), *where);
		return 1;
	}
	if (!st || !*st) {
		if ((size_t)snprintf(spec, cap, "%s", db ? db : "") >= cap) {
			chat_prog_error(p, "relay.database (%s): path too long", *where);
			return 1;
		}
		return 0;
	}
	*key = "relay.store";
	*where = chat_config_where(p->cfg, "relay", "store");
	if (chat_store_spec_is_postgresql(st)) {
		if ((size_t)snprintf(spec, cap, "%s", st) >= cap) {
			chat_prog_error(p, "relay.store (%s): URL too long", *where);
			return 1;
		}
		return 0;
	}
	if (strncmp(st, "sqlite:", 7) == 0 && st[7]) {
		chat_config_resolve(p->cfg, "relay", "store", st + 7, cap, spec);
		return 0;
	}
	chat_prog_error(p, "relay.store (%s): expected sqlite:PATH or postgresql://USER@HOST:PORT/DB",
	                *where);
	return 1;
}

/* DATABASE.lock: one relay per database.  0, or the exit status. */
static int lock_store(struct server *s, const char *path, const char *where)
{
	char lock[PATH_MAX + 8], err[PATH_MAX + 200];
	pid_t holder;

	if ((size_t)snprintf(lock, sizeof(lock), "%s.lock", path) >= sizeof(lock)) {
		chat_prog_error(&s->prog, "relay.database (%s): path too long", where);
		return 1;
	}
	switch (chat_lockfile_take(lock, &s->lock_fd, &holder, sizeof(err), err)) {
	case CHAT_OK:
		return 0;
	case CHAT_ERR_AGAIN:
		if (holder > 0)
			chat_prog_error(&s->prog, "the database %s (relay.database, %s) is in use by another "
			                "relay, pid %ld (it holds the lock %s): one relay per database.  "
			                "Stop that one first, or give this one another relay.database",
			                path, where, (long)holder, lock);
		else
			chat_prog_error(&s->prog, "the database %s (relay.database, %s) is in use by another "
			                "relay (it holds the lock %s; its pid cannot be told): one relay "
			                "per database", path, where, lock);
		return 1;
	default:
		chat_prog_error(&s->prog, "%s (relay.database, %s)", err, where);
		return 1;
	}
}

/* relay.store = postgresql://...: shared by several relays, so no lock
 * file and no marker; --init-store refuses a database that holds a store
 * already.  0, or the exit status. */
static int open_store_postgresql(struct server *s, const char *url, const char *key,
                                 const char *where)
{
	char err[1200], shown[1024];
	int version = 0, dir_missing = 0;

	chat_store_spec_redact(url, sizeof(shown), shown);
	if (s->init_store) {
		if (chat_store_probe(url, &version, &dir_missing, sizeof(err), err) != CHAT_OK) {
			chat_prog_error(&s->prog, "cannot use the database (%s, %s): %s", key, where, err);
			return 1;
		}
		if (version > 0) {
			chat_prog_error(&s->prog, "--init-store: %s (%s, %s) holds a store already (schema "
			                "version %d) and is never replaced; start without --init-store to "
			                "use it", shown, key, where, version);
			return 1;
		}
	}
	if (chat_store_open(url, &s->store, sizeof(err), err) != CHAT_OK) {
		chat_prog_error(&s->prog, "cannot use the database (%s, %s): %s", key, where, err);
		return 1;
	}
	if (chat_store_created(s->store))
		chat_info("created a new store in %s%s", shown, s->init_store ? " (--init-store)" : "");
	return 0;
}

/* relay.database (or relay.store = sqlite:PATH): open (creating the file, and its directory if that is
 * missing) and check it before anything listens; never replace a store
 * that existed by an empty one without --init-store.  With lock, first
 * take DATABASE.lock (--add-admin goes without: it may run beside the
 * relay, as SQLite allows).  0, or the exit status. */
static int open_store(struct server *s, int lock)
{
	char spec[4096];
	const char *path = spec, *key, *where;
	char err[1200], marker[4200];
	struct stat sb;
	int have_db, have_marker;

	if (store_setting(&s->prog, sizeof(spec), spec, &key, &where))
		return 1;
	if (!path[0]) {
		if (s->init_store) {
			chat_prog_error(&s->prog, "--init-store needs relay.database or relay.store (both are "
			                "empty in %s)", where);
			return 1;
		}
		return 0;
	}
	if (chat_store_spec_is_postgresql(spec))
		return open_store_postgresql(s, spec, key, where);
	if ((size_t)snprintf(marker, sizeof(marker), "%s.marker", path) >= sizeof(marker)) {
		chat_prog_error(&s->prog, "relay.database (%s): path too long", where);
		return 1;
	}
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			chat_prog_error(&s->prog, "cannot create the directory %s for relay.database (%s): %s",
			                dir, chat_config_where(s->prog.cfg, "relay", "database"), strerror(errno));
			return 1;
		}
	}
	/* Before anything is looked at: another relay may be creating it. */
	if (lock && lock_store(s, path, where))
		return 1;
	/* Anything but "not there" is left for chat_store_open to report. */
	have_db = !(stat(path, &sb) != 0 && errno == ENOENT);
	have_marker = !(lstat(marker, &sb) != 0 && errno == ENOENT);
	if (!have_db && have_marker && !s->init_store) {
		chat_prog_error(&s->prog, "the database %s (relay.database, %s) is missing, but %s says "
		                "a store was created there: refusing to start with an empty store (its "
		                "accounts and stored messages would be gone).  Restore the database, or "
		                "pass --init-store to create an empty store on purpose", path, where, marker);
		return 1;
	}
	if (have_db && s->init_store) {
		chat_prog_error(&s->prog, "--init-store: %s (relay.database, %s) exists already and is "
		                "never replaced; start without --init-store to use it, or move it away "
		                "first", path, where);
		return 1;
	}
	if (chat_store_open(path, &s->store, sizeof(err), err) != CHAT_OK) {
		chat_prog_error(&s->prog, "cannot use the database (%s, %s): %s", key, where, err);
		return 1;
	}
	/* It holds every account's SCRAM verifier (enough to try passwords
	 * offline) and the stored mail: for the relay's user only. */
	chat_warn_if_shared(path, "relay.database");
	chat_warn_if_shared(slash ? (slash == dir ? "/" : dir) : ".", "relay.database's directory");
	if (chat_store_created(s->store))
		chat_info("created a new store at %s%s", path,
		          s->init_store ? " (--init-store)" : "");
	/* Also beside a store made before markers existed. */
	if ((chat_store_created(s->store) || !have_marker) && write_marker(marker, path) != 0) {
		chat_prog_error(&s->prog, "cannot write %s (it marks that %s exists): %s", marker, path,
		                strerror(errno));
		return 1;
	}
	return 0;
}

/* chat-relay --add-admin NAME: make the first admin (or another one) on the
 * relay's own machine, without the network. */
static int add_admin(struct server *s)
{
	const char *name = s->add_admin;
	const char *why = chat_name_check(strlen(name), name);
	struct chat_account a = { 0 };
	char pw[CHAT_SECRET_MAX], prompt[128], err[600];
	uint8_t salt[16];
	int rc;

	if (why) {
		chat_prog_error(&s->prog, "--add-admin: '%s' is not a valid user name: %s", name, why);
		return 2;
	}
	if (!s->store) {
		chat_prog_error(&s->prog, "--add-admin needs relay.database or relay.store (both are "
		                "empty in %s)", chat_config_where(s->prog.cfg, "relay", "database"));
		return 1;
	}
	rc = chat_store_account_exists(s->store, name);
	if (rc == CHAT_OK) {
		chat_prog_error(&s->prog, "--add-admin: the account %s exists already (an admin can "
		                "promote it: /promote %s)", name, name);
		return 1;
	}
	snprintf(prompt, sizeof(prompt), "password for the new admin %s: ", name);
	if (chat_secret_ask(prompt, "password", CHAT_SECRET_CONFIRM, sizeof(pw), pw, sizeof(err), err) != CHAT_OK) {
		chat_prog_error(&s->prog, "--add-admin: %s", err);
		return 1;
	}
	if (getrandom(salt, sizeof(salt), 0) != (ssize_t)sizeof(salt)) {
		explicit_bzero(pw, sizeof(pw));
		chat_prog_error(&s->prog, "--add-admin: no random numbers: %s", strerror(errno));
		return 1;
	}
	snprintf(a.name, sizeof(a.name), "%s", name);
	a.group = CHAT_GROUP_ADMIN;
	a.created_ms = (int64_t)time(NULL) * 1000;
	chat_scram_make_verifier(strlen(pw), pw, sizeof(salt), salt,
	                         (unsigned)chat_config_int(s->prog.cfg, "relay", "scram_iterations"), &a.v);
	explicit_bzero(pw, sizeof(pw));
	rc = chat_store_account_add(s->store, &a);
	explicit_bzero(&a, sizeof(a));
	if (rc != CHAT_OK) {
		chat_prog_error(&s->prog, "--add-admin: %s", chat_store_error(s->store));
		return 1;
	}
	{
		char spec[4096], shown[1024];
		const char *key, *where;
		store_setting(&s->prog, sizeof(spec), spec, &key, &where);
		chat_store_spec_redact(spec, sizeof(shown), shown);
		printf("admin %s added to %s\n", name, shown);
	}
	return 0;
}

/* chat-relay --fingerprint: what clients pin or find in their known_relays. */
static int print_fingerprint(struct server *s)
{
	const struct chat_loaded *t = s->prog.transport;
	const struct chat_transport_ops *tp = t->desc->ops.transport;
	char fp[CHAT_ADDR_MAX];
	int rc;

	/* An ABI 1.2 op: only inside a table that long, and set. */
	if (tp->size < offsetof(struct chat_transport_ops, local_fingerprint) +
	               sizeof(tp->local_fingerprint) || !tp->local_fingerprint) {
		chat_prog_error(&s->prog, "transport %s has no key: nothing to fingerprint",
		                t->desc->name);
		return 1;
	}
	rc = tp->local_fingerprint(&t->host, sizeof(fp), fp);
	if (rc != CHAT_OK) {
		chat_prog_error(&s->prog, "--fingerprint: transport %s: %s", t->desc->name,
		                chat_strerror(rc));
		return 1;
	}
	printf("%s\n", fp);
	return 0;
}

static long long resume_accept(struct chat_loop *loop, void *arg)
{
	struct server *s = arg;

	chat_loop_modify(loop, s->listen_watch, CHAT_EV_READ);
	return -1;
}

static void on_accept(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct server *s = arg;

	(void)fd;
	(void)events;
	for (int i = 0; i < 64; i++) {
		void *handle = NULL;
		int rc = s->tp->accept(s->listener, &handle);
		if (rc == CHAT_ERR_AGAIN)
			return;
		if (rc != CHAT_OK) {
			/* Out of fds or memory: the listener stays readable, so a
			 * level-triggered loop would spin.  Pause accepting for a second. */
			char why[200];
			int e = errno;
			chat_log_limited(&s->lim_accept, chat_loop_now_ms(),
			                 "accept failed: %s; pausing new connections for 1 s",
			                 accept_error(s, rc, e, sizeof(why), why));
			if (chat_loop_modify(loop, s->listen_watch, 0) == CHAT_OK)
				chat_loop_timer_add(loop, 1000, resume_accept, s, NULL);
			return;
		}
		rc = chat_relay_accept(s->relay, s->tp, handle);
		if (rc && rc != CHAT_ERR_NOSPACE)
			chat_err("cannot take a new client: %s", chat_strerror(rc));
	}
}

static long long stop_when_drained(struct chat_loop *loop, void *arg)
{
	struct server *s = arg;
	static int ticks;

	/* Give clients up to 2 s to receive their BYE, then stop regardless. */
	if (chat_relay_clients(s->relay) == 0 || ++ticks >= 40) {
		chat_loop_stop(loop);
		return -1;
	}
	return 50;
}

/* relay.log as chat_log_open takes it: "stderr", "syslog", or the file's
 * path (relative to chat.ini's directory, or to the working directory when
 * given on the command line). */
static void log_target(const struct chat_config *cfg, size_t cap, char *dst)
{
	const char *raw = chat_config_get(cfg, "relay", "log");

	if (!raw || !*raw || !strcmp(raw, "stderr") || !strcmp(raw, "syslog"))
		snprintf(dst, cap, "%s", raw && *raw ? raw : "stderr");
	else
		snprintf(dst, cap, "%s", chat_config_path(cfg, "relay", "log"));
}

/* Everything the relay engine takes from the configuration; names and ptrs
 * hold relay.suites (the engine copies them). */
static void relay_settings(const struct chat_config *cfg, size_t max_frame,
                           struct chat_relay_config *rc, char (*names)[33], const char **ptrs)
{
	memset(rc, 0, sizeof(*rc));
	rc->nsuites = chat_config_list(cfg, "relay", "suites", 16, names);
	for (size_t i = 0; i < rc->nsuites; i++)
		ptrs[i] = names[i];
	rc->suites = ptrs;
	rc->guests = chat_config_bool(cfg, "relay", "guests");
	rc->open_registration = chat_config_bool(cfg, "relay", "open_registration");
	rc->friends_only = chat_config_bool(cfg, "relay", "friends_only");
	rc->queue_max_messages = (size_t)chat_config_int(cfg, "relay", "queue_max_messages");
	rc->queue_max_bytes = (uint64_t)chat_config_int(cfg, "relay", "queue_max_bytes");
	rc->queue_expiry_ms = chat_config_int(cfg, "relay", "queue_expiry") * 1000LL;
	rc->archive = chat_config_bool(cfg, "relay", "archive");
	rc->archive_ms = chat_config_int(cfg, "relay", "archive_days") * 86400000LL;
	rc->throttle_after = (unsigned)chat_config_int(cfg, "relay", "login_throttle_after");
	rc->throttle_ms = chat_config_int(cfg, "relay", "login_throttle_ms");
	rc->throttle_max_ms = chat_config_int(cfg, "relay", "login_throttle_max_ms");
	rc->guard_after = (unsigned)chat_config_int(cfg, "relay", "login_guard_after");
	rc->register_after = (unsigned)chat_config_int(cfg, "relay", "register_throttle_after");
	rc->register_ms = chat_config_int(cfg, "relay", "register_throttle_ms");
	rc->register_max_ms = chat_config_int(cfg, "relay", "register_throttle_max_ms");
	rc->reveal_accounts = chat_config_bool(cfg, "relay", "reveal_accounts");
	rc->scram_iterations = (unsigned)chat_config_int(cfg, "relay", "scram_iterations");
	rc->cluster = chat_config_get(cfg, "relay", "cluster");
	rc->cluster_ttl_s = (unsigned)chat_config_int(cfg, "relay", "cluster_ttl");
	rc->node_id = chat_config_get(cfg, "relay", "node_id");
	rc->limits.max_frame = max_frame;
	rc->limits.out_limit = (size_t)chat_config_int(cfg, "relay", "out_queue_limit");
	rc->max_clients = (size_t)chat_config_int(cfg, "relay", "max_clients");
	rc->idle_timeout_ms = chat_config_int(cfg, "relay", "idle_timeout") * 1000;
	rc->keepalive_s = (unsigned)chat_config_int(cfg, "relay", "keepalive");
	rc->dead_after_s = (unsigned)chat_config_int(cfg, "relay", "dead_after");
	rc->max_rooms_per_client = (size_t)chat_config_int(cfg, "relay", "max_rooms");
	rc->max_room_members = (size_t)chat_config_int(cfg, "relay", "max_room_members");
	rc->max_pending_offers = 32;
	rc->max_bad_requests = 10;
	rc->login_timeout_s = (unsigned)chat_config_int(cfg, "relay", "login_timeout");
	rc->max_unauth_per_address = (unsigned)chat_config_int(cfg, "relay", "max_unauth_per_address");
	rc->prelogin_max_frame = (size_t)chat_config_int(cfg, "relay", "prelogin_max_frame");
	long long reserved = chat_config_int(cfg, "relay", "reserved_slots");
	/* -1: a tenth; chat_prog_start (and chat_prog_reload) checked that an
	 * explicit value is below max_clients. */
	rc->reserved_slots = reserved < 0 ? rc->max_clients / 10 : (size_t)reserved;
	rc->log_interval_s = (unsigned)chat_config_int(cfg, "relay", "log_interval");
}

/* A setting as people read it, to compare and to log: a path resolved,
 * a list normalised, a boolean as yes/no, "(empty)" for nothing. */
static void setting_text(const struct chat_config *cfg, const struct chat_cfg_key *k, size_t cap,
                         char *dst)
{
	const char *v = chat_config_get(cfg, k->section, k->key);
	char names[16][33];

	if (!strcmp(k->section, "relay") && !strcmp(k->key, "log")) {
		log_target(cfg, cap, dst);
		return;
	}
	switch (k->type) {
	case CHAT_CFG_PATH:
		v = chat_config_path(cfg, k->section, k->key);
		break;
	case CHAT_CFG_BOOL:
		v = chat_config_bool(cfg, k->section, k->key) ? "yes" : "no";
		break;
	case CHAT_CFG_INT:
		snprintf(dst, cap, "%lld", chat_config_int(cfg, k->section, k->key));
		return;
	case CHAT_CFG_LIST: {
		size_t n = chat_config_list(cfg, k->section, k->key, 16, names), used = 0;
		dst[0] = '\0';
		for (size_t i = 0; i < n && used < cap; i++)
			used += (size_t)snprintf(dst + used, cap - used, "%s%s", i ? ", " : "", names[i]);
		if (!n)
			snprintf(dst, cap, "(empty)");
		return;
	}
	}
	snprintf(dst, cap, "%s", v && *v ? v : "(empty)");
}

/* Say what cfg changes, one line a setting: those the relay applies
 * (CHAT_CFG_LIVE) against the configuration last applied, the others
 * against the one it started with, as needing a restart (also a
 * [plugin.NAME] key, named without its value: it may be a secret).  The
 * counts in *applied and *restart. */
static void say_changes(struct server *s, const struct chat_config *cfg, int *applied, int *restart)
{
	char was[PATH_MAX + 64], now[PATH_MAX + 64];
	const struct chat_config *cfgs[2] = { s->prog.cfg, cfg };

	*applied = *restart = 0;
	for (const struct chat_cfg_key *k = chat_cfg_schema; k->section; k++) {
		if (strcmp(k->section, "core") && strcmp(k->section, "relay"))
			continue; /* the client's and peer's: not the relay's business */
		int live = (k->flags & CHAT_CFG_LIVE) != 0;
		setting_text(live ? s->live : s->prog.cfg, k, sizeof(was), was);
		setting_text(cfg, k, sizeof(now), now);
		if (!strcmp(was, now))
			continue;
		if (live) {
			chat_info("SIGHUP: %s.%s: %s -> %s (%s)", k->section, k->key, was, now,
			          chat_config_where(cfg, k->section, k->key));
			++*applied;
		} else {
			chat_warn("SIGHUP: %s.%s: %s -> %s (%s) needs a restart: the relay goes on with %s",
			          k->section, k->key, was, now, chat_config_where(cfg, k->section, k->key),
			          was);
			++*restart;
		}
	}
	/* Every [plugin.NAME] key set on either side, each once. */
	for (int side = 0; side < 2; side++) {
		for (size_t i = 0; i < chat_config_plugin_sections(cfgs[side]); i++) {
			char section[64];
			const char *key;
			snprintf(section, sizeof(section), "plugin.%s", chat_config_plugin_section(cfgs[side], i));
			if (side == 1 && chat_config_key_at(cfgs[0], section, 0))
				continue; /* done from the old side */
			for (int kside = 0; kside < 2; kside++) {
				for (size_t j = 0; (key = chat_config_key_at(cfgs[kside], section, j)); j++) {
					const char *a = chat_config_get(cfgs[0], section, key);
					const char *b = chat_config_get(cfgs[1], section, key);
					if ((kside == 1 && a) || (a && b && !strcmp(a, b)))
						continue;
					chat_warn("SIGHUP: [%s] %s %s (%s) needs a restart", section, key,
					          !a ? "set" : !b ? "removed" : "changed",
					          b ? chat_config_where(cfg, section, key)
					            : chat_config_file(cfg) ? chat_config_file(cfg) : "no file");
					++*restart;
				}
			}
		}
	}
}

/* The log file opened again by its name (logrotate renamed it); on failure
 * the lines go on to the file as it was. */
static void reopen_log(void)
{
	char err[PATH_MAX + 200];

	if (chat_log_reopen(sizeof(err), err) != CHAT_OK)
		chat_err("SIGHUP: %s (relay.log); logging on to the file as it was open", err);
}

/* SIGHUP: the log reopened, chat.ini read again (with the same command-line
 * overrides) and what can change on a running relay applied; a
 * configuration that does not pass is refused whole, and the relay goes on
 * as it was. */
static void reload(struct server *s)
{
	struct chat_config *cfg = NULL;
	struct chat_relay_config rc;
	char err[2048], target[PATH_MAX], names[16][33];
	const char *ptrs[16];
	int applied, restart, level, old_level = chat_log_level(), rv;

	if (chat_prog_reload(&s->prog, &cfg, sizeof(err), err) != CHAT_OK) {
		reopen_log();
		chat_err("SIGHUP: %s: the configuration is refused; the relay goes on with its "
		         "settings as they were", err);
		return;
	}
	relay_settings(cfg, s->prog.max_frame, &rc, names, ptrs);
	log_target(cfg, sizeof(target), target);
	if (strcmp(target, s->log_target)) {
		/* Said in the old log (once the new one is known to open), then in
		 * the new one. */
		int fd = -1;
		if (strcmp(target, "stderr") && strcmp(target, "syslog") &&
		    (fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600)) >= 0)
			close(fd);
		if (fd >= 0 || !strcmp(target, "stderr") || !strcmp(target, "syslog"))
			chat_info("SIGHUP: relay.log: %s -> %s (%s): the log goes on there", s->log_target,
			          target, chat_config_where(cfg, "relay", "log"));
		if (chat_log_open(target, sizeof(err), err) != CHAT_OK) {
			chat_err("SIGHUP: %s (relay.log, %s): the configuration is refused; the relay goes on "
			         "with its settings as they were", err, chat_config_where(cfg, "relay", "log"));
			chat_config_free(cfg);
			return;
		}
		chat_info("SIGHUP: the log continues here, from %s", s->log_target);
		snprintf(s->log_target, sizeof(s->log_target), "%s", target);
	} else {
		reopen_log();
	}
	if ((rv = chat_relay_reconfigure(s->relay, &rc)) != CHAT_OK) {
		chat_err("SIGHUP: the relay cannot take the new settings (%s); it goes on with them as "
		         "they were", chat_strerror(rv));
		chat_config_free(cfg);
		return;
	}
	/* Said at the more verbose of the two levels, then the new one. */
	level = chat_log_parse_level(chat_config_get(cfg, "core", "log_level"));
	chat_log_set_level(level > old_level ? level : old_level);
	say_changes(s, cfg, &applied, &restart);
	chat_info("SIGHUP: read %s again: %d setting(s) applied, %d need(s) a restart",
	          chat_config_file(cfg) ? chat_config_file(cfg) : "(no file)", applied, restart);
	chat_log_set_level(level);
	s->lim_accept.interval_ms = rc.log_interval_s * 1000u;
	if (rc.max_clients != s->max_clients) {
		s->max_clients = rc.max_clients;
		warn_fd_limit(s);
	}
	if (s->live != s->prog.cfg)
		chat_config_free(s->live);
	s->live = cfg;
}

static void on_signal(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct server *s = arg;
	struct signalfd_siginfo si;

	(void)events;
	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	if (si.ssi_signo == SIGHUP) {
		if (s->stopping)
			chat_info("SIGHUP ignored: shutting down");
		else
			reload(s);
		return;
	}
	if (s->stopping) {
		chat_info("second %s: stopping now", strsignal((int)si.ssi_signo));
		chat_loop_stop(loop);
		return;
	}
	s->stopping = 1;
	chat_info("shutting down on %s: telling %zu client(s)", strsignal((int)si.ssi_signo),
	          chat_relay_clients(s->relay));
	chat_loop_remove(loop, s->listen_watch);
	s->listen_watch = NULL;
	chat_relay_shutdown(s->relay, "relay shutting down");
	chat_loop_timer_add(loop, 0, stop_when_drained, s, NULL);
}

/* --check-config, the relay's part: can relay.log be written, and what is
 * the database (read-only: never created or migrated here)?  0, or 1. */
static int check_config(struct chat_prog *p)
{
	char spec[4096];
	const char *db = spec, *key, *where;
	char target[PATH_MAX], err[PATH_MAX + 1200], lock[PATH_MAX + 8];
	int version, dir_missing;
	struct stat sb;

	if (store_setting(p, sizeof(spec), spec, &key, &where))
		return 1;

	log_target(p->cfg, sizeof(target), target);
	if (strcmp(target, "stderr") && strcmp(target, "syslog")) {
		/* Writable as the relay opens it, without creating it here. */
		char dir[PATH_MAX], *slash;
		snprintf(dir, sizeof(dir), "%s", target);
		slash = strrchr(dir, '/');
		if (slash)
			*(slash == dir ? slash + 1 : slash) = '\0';
		const char *d = slash ? dir : ".";
		int rc = stat(target, &sb) == 0 ? (S_ISDIR(sb.st_mode) ? (errno = EISDIR, -1)
		                                                       : access(target, W_OK))
		                                : errno != ENOENT ? -1 : access(d, W_OK | X_OK);
		if (rc != 0) {
			chat_prog_error(p, "cannot write the log file %s (relay.log, %s): %s", target,
			                chat_config_where(p->cfg, "relay", "log"), strerror(errno));
			return 1;
		}
	}
	const char *cluster = chat_config_get(p->cfg, "relay", "cluster");
	if (cluster && *cluster) {
		if (chat_relay_cluster_check(cluster, chat_config_get(p->cfg, "relay", "node_id"),
		                             sizeof(err), err) != CHAT_OK) {
			chat_prog_error(p, "%s (%s)", err, chat_config_where(p->cfg, "relay", "cluster"));
			return 1;
		}
		printf("%s: relay.cluster %s: module cluster-redis found (Redis is reached at start)\n",
		       p->name, cluster);
	}
	if (!*db) {
		printf("%s: no relay.database: guests only, nothing is stored\n", p->name);
		return 0;
	}
	if (chat_store_spec_is_postgresql(spec)) {
		char shown[1024];
		chat_store_spec_redact(spec, sizeof(shown), shown);
		if (chat_store_probe(spec, &version, &dir_missing, sizeof(err), err) != CHAT_OK) {
			chat_prog_error(p, "%s (%s): %s", key, where, err);
			return 1;
		}
		if (version == 0)
			printf("%s: %s %s: no store there yet: the relay creates it at its first start\n",
			       p->name, key, shown);
		else if (version < CHAT_STORE_SCHEMA_VERSION)
			printf("%s: %s %s: schema version %d, migrated to %d at the next start\n", p->name,
			       key, shown, version, CHAT_STORE_SCHEMA_VERSION);
		else
			printf("%s: %s %s: schema version %d\n", p->name, key, shown, version);
		return 0;
	}
	snprintf(lock, sizeof(lock), "%s.lock", db);
	int rc = chat_store_probe(db, &version, &dir_missing, sizeof(err), err);
	if (rc == CHAT_ERR_NOTFOUND) {
		char marker[PATH_MAX + 8];
		snprintf(marker, sizeof(marker), "%s.marker", db);
		if (lstat(marker, &sb) == 0) {
			chat_prog_error(p, "%s (%s): %s, but %s says a store was created there: "
			                "the relay refuses to start.  Restore the database, or start once "
			                "with --init-store to create an empty one", key, where, err, marker);
			return 1;
		}
		printf("%s: %s (%s): %s: the relay creates it at its first start (or "
		       "chat-relay --init-store)%s\n", p->name, key, where, err,
		       dir_missing ? ", and the directory too (one level)" : "");
		return 0;
	}
	if (rc != CHAT_OK) {
		chat_prog_error(p, "%s (%s): %s", key, where, err);
		return 1;
	}
	pid_t holder = chat_lockfile_holder(lock, sizeof(err), err);
	char in_use[64] = "";
	if (holder > 0)
		snprintf(in_use, sizeof(in_use), "; in use by the relay with pid %ld", (long)holder);
	if (version < CHAT_STORE_SCHEMA_VERSION)
		printf("%s: %s %s: schema version %d, migrated to %d at the next start%s\n",
		       p->name, key, db, version, CHAT_STORE_SCHEMA_VERSION, in_use);
	else
		printf("%s: %s %s: schema version %d%s\n", p->name, key, db, version, in_use);
	return 0;
}

static int serve(struct server *s)
{
	const char *address = chat_config_get(s->prog.cfg, "relay", "listen");
	struct chat_relay_config rc;
	char names[16][33], bound[CHAT_ADDR_MAX], err[PATH_MAX + 200];
	const char *ptrs[16];
	sigset_t mask;
	int rv;

	relay_settings(s->prog.cfg, s->prog.max_frame, &rc, names, ptrs);
	if (s->add_admin) {
		if ((rv = open_store(s, 0)))
			return rv;
		return add_admin(s);
	}
	/* From here on, these come through the signalfd (made below; until
	 * then they wait): a SIGHUP while the store opens no longer kills. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	log_target(s->prog.cfg, sizeof(s->log_target), s->log_target);
	if (chat_log_open(s->log_target, sizeof(err), err) != CHAT_OK) {
		chat_prog_error(&s->prog, "%s (relay.log, %s)", err,
		                chat_config_where(s->prog.cfg, "relay", "log"));
		return 1;
	}
	if ((rv = open_store(s, 1)))
		return rv;
	rc.store = s->store;
	s->tp = s->prog.transport->desc->ops.transport;
	s->max_clients = rc.max_clients;
	s->lim_accept.kind = "failed accepts";
	s->lim_accept.level = CHAT_LOG_WARN;
	s->lim_accept.interval_ms = rc.log_interval_s * 1000u;
	raise_fd_limit(s);

	if ((rv = chat_loop_new(&s->loop)) || (rv = chat_relay_new(s->loop, &rc, &s->relay))) {
		chat_prog_error(&s->prog, "cannot start: %s", chat_strerror(rv));
		return 1;
	}
	rv = s->tp->listen(&s->prog.transport->host, address, &s->listener);
	if (rv) {
		chat_prog_error(&s->prog, "cannot listen on %s (relay.listen, %s): %s", address,
		                chat_config_where(s->prog.cfg, "relay", "listen"), chat_strerror(rv));
		return 1;
	}
	if (s->tp->address(s->listener, 1, sizeof(bound), bound) != CHAT_OK)
		snprintf(bound, sizeof(bound), "%s", address);

	s->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->signal_fd < 0 ||
	    chat_loop_add(s->loop, s->signal_fd, CHAT_EV_READ, on_signal, s, &s->signal_watch) ||
	    chat_loop_add(s->loop, s->tp->fd(s->listener), CHAT_EV_READ, on_accept, s,
	                  &s->listen_watch)) {
		chat_prog_error(&s->prog, "cannot set up the event loop");
		return 1;
	}
	chat_info("listening on %s (transport %s %s, max frame %zu bytes, max %zu clients, suites: %s)",
	          bound, s->prog.transport->desc->name, s->prog.transport->desc->version,
	          rc.limits.max_frame, rc.max_clients,
	          rc.nsuites ? chat_config_get(s->prog.cfg, "relay", "suites") : "any");
	char store_shown[1024] = "";
	int store_shared = 0; /* on PostgreSQL: every relay of a cluster sees the same accounts */
	if (s->store) {
		char spec[4096];
		const char *key, *where;
		store_setting(&s->prog, sizeof(spec), spec, &key, &where);
		chat_store_spec_redact(spec, sizeof(store_shown), store_shown);
		store_shared = chat_store_spec_is_postgresql(spec);
	}
	if (s->store)
		chat_info("accounts and stored messages in %s (registration %s, guests %s%s)",
		          store_shown,
		          rc.open_registration ? "open" : "by admins", rc.guests ? "allowed" : "refused",
		          rc.friends_only ? ", talk between friends only" : "");
	else
		chat_info("no relay.database: guests only, nothing is stored");
	if (rc.cluster && *rc.cluster && s->store && !store_shared)
		chat_warn("relay.cluster with the SQLite store %s, this relay's own file: guests work "
		          "across the relays, but registered users on other relays will not see each "
		          "other's accounts or messages unless the store is shared "
		          "(relay.store = postgresql://...)", store_shown);
	{
		char per[48], timeout[48];
		snprintf(per, sizeof(per), "%u per address", rc.max_unauth_per_address);
		snprintf(timeout, sizeof(timeout), "%u s", rc.login_timeout_s);
		chat_info("before login: at most %zu connections (%zu slots reserved), %s, %s to log in, "
		          "frames up to %zu bytes", rc.max_clients - rc.reserved_slots, rc.reserved_slots,
		          rc.max_unauth_per_address ? per : "any number per address",
		          rc.login_timeout_s ? timeout : "no limit",
		          rc.prelogin_max_frame < rc.limits.max_frame ? rc.prelogin_max_frame
		                                                      : rc.limits.max_frame);
	}
	rv = chat_loop_run(s->loop);
	if (rv) {
		chat_prog_error(&s->prog, "event loop failed: %s", chat_strerror(rv));
		return 1;
	}
	chat_info("stopped");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct chat_prog_flag flags[] = {
		{ "listen", 'l', "relay", "listen", "ADDR", "address to listen on, host:port or [v6]:port" },
		{ NULL, 0, NULL, NULL, NULL, NULL },
	};
	struct server s = {
		.prog = {
			.name = "chat-relay",
			.section = "relay",
			.summary = "Relay server of the chat framework: routes end-to-end encrypted messages it cannot read.",
			.flags = flags,
			.check_config = check_config,
		},
		.signal_fd = -1,
		.lock_fd = -1,
	};
	/* An action, not a configuration key. */
	const struct chat_prog_opt opts[] = {
		{ "add-admin", "NAME", 0, &s.add_admin, NULL,
		  "add the admin account NAME to relay.database (asks for\n"
		  "the password; reads one line when stdin is not a\n"
		  "terminal), then exit" },
		{ "init-store", NULL, 0, NULL, &s.init_store,
		  "create an empty store on purpose when relay.database\n"
		  "is missing but its DATABASE.marker says one existed\n"
		  "(refused when the database exists)" },
		{ "fingerprint", NULL, 0, NULL, &s.fingerprint,
		  "print the fingerprint (sha256:HEX) of the key the\n"
		  "relay's transport presents (made if the transport makes\n"
		  "its own, as transport tls does), then exit" },
		{ NULL, NULL, 0, NULL, NULL, NULL },
	};
	int status;

	s.prog.opts = opts;
	status = chat_prog_start(&s.prog, argc, argv);
	s.live = s.prog.cfg;
	if (status < 0 && s.fingerprint)
		status = print_fingerprint(&s);
	if (status < 0)
		status = serve(&s);
	if (s.loop) {
		chat_relay_free(s.relay);
		chat_loop_remove(s.loop, s.listen_watch);
		chat_loop_remove(s.loop, s.signal_watch);
		if (s.listener)
			s.tp->listener_close(s.listener);
		chat_loop_free(s.loop);
	}
	if (s.signal_fd >= 0)
		close(s.signal_fd);
	chat_store_close(s.store);
	chat_lockfile_release(s.lock_fd); /* after the store: nobody else writes it before */
	if (s.live != s.prog.cfg)
		chat_config_free(s.live);
	chat_prog_finish(&s.prog);
	chat_log_close();
	return status;
}
