#include "loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

struct chat_registry {
	const struct chat_config *cfg;
	char *state_dir; /* host->state_dir for every plugin (NULL: none) */
	struct chat_loaded **items;
	size_t count, cap;
};

const char *chat_plugin_kind_name(int kind)
{
	switch (kind) {
	case CHAT_PLUGIN_CIPHER:
		return "cipher";
	case CHAT_PLUGIN_TRANSPORT:
		return "transport";
	default:
		return "unknown";
	}
}

void chat_plugin_flags_text(unsigned flags, size_t cap, char *dst)
{
	static const struct { unsigned bit; const char *name; } names[] = {
		{ CHAT_FLAG_INSECURE, "insecure" },
		{ CHAT_FLAG_AUTHENTICATED, "authenticated" },
		{ CHAT_FLAG_NEEDS_SECRET, "needs-secret" },
		{ CHAT_FLAG_INTEGRITY, "integrity" },
		{ CHAT_FLAG_REPLAY, "replay-protected" },
		{ CHAT_FLAG_ENCRYPTED, "encrypted" },
	};
	size_t used = 0;

	if (!cap)
		return;
	dst[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(flags & names[i].bit))
			continue;
		int n = snprintf(dst + used, cap - used, "%s%s", used ? "," : "", names[i].name);
		if (n < 0 || (size_t)n >= cap - used)
			break;
		used += (size_t)n;
	}
	if (!used)
		snprintf(dst, cap, "-");
}

int chat_plugin_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > 32)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return 0;
	}
	return 1;
}

int chat_registry_new(const struct chat_config *cfg, struct chat_registry **reg)
{
	struct chat_registry *r;

	*reg = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return CHAT_ERR_NOMEM;
	r->cfg = cfg;
	*reg = r;
	return CHAT_OK;
}

void chat_registry_free(struct chat_registry *reg)
{
	if (!reg)
		return;
	/* The shared objects stay mapped on purpose (see loader.h). */
	for (size_t i = 0; i < reg->count; i++) {
		free(reg->items[i]->path);
		free(reg->items[i]);
	}
	free(reg->items);
	free(reg->state_dir);
	free(reg);
}

int chat_registry_set_state_dir(struct chat_registry *reg, const char *dir)
{
	char *copy = NULL;

	if (dir && !(copy = strdup(dir)))
		return CHAT_ERR_NOMEM;
	free(reg->state_dir);
	reg->state_dir = copy;
	return CHAT_OK;
}

size_t chat_registry_count(const struct chat_registry *reg)
{
	return reg->count;
}

const struct chat_loaded *chat_registry_get(const struct chat_registry *reg, size_t i)
{
	return i < reg->count ? reg->items[i] : NULL;
}

const struct chat_loaded *chat_registry_find(const struct chat_registry *reg, int kind,
                                             const char *name)
{
	for (size_t i = 0; i < reg->count; i++) {
		const struct chat_plugin *d = reg->items[i]->desc;
		if ((kind == 0 || (int)d->kind == kind) && strcmp(d->name, name) == 0)
			return reg->items[i];
	}
	return NULL;
}

static int fail(int rc, size_t errlen, char *err, const char *fmt, ...) CHAT_PRINTF(4, 5);
static int fail(int rc, size_t errlen, char *err, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

struct op_slot {
	size_t offset;
	const char *name;
};

/* Every op a 1.0 table must fill in.  cipher fingerprint is optional. */
static const struct op_slot cipher_required[] = {
	{ offsetof(struct chat_cipher_ops, session_new), "session_new" },
	{ offsetof(struct chat_cipher_ops, handshake), "handshake" },
	{ offsetof(struct chat_cipher_ops, sealed_size), "sealed_size" },
	{ offsetof(struct chat_cipher_ops, seal), "seal" },
	{ offsetof(struct chat_cipher_ops, open), "open" },
	{ offsetof(struct chat_cipher_ops, session_free), "session_free" },
	{ 0, NULL },
};
static const struct op_slot transport_required[] = {
	{ offsetof(struct chat_transport_ops, listen), "listen" },
	{ offsetof(struct chat_transport_ops, accept), "accept" },
	{ offsetof(struct chat_transport_ops, connect), "connect" },
	{ offsetof(struct chat_transport_ops, connect_finish), "connect_finish" },
	{ offsetof(struct chat_transport_ops, read), "read" },
	{ offsetof(struct chat_transport_ops, write), "write" },
	{ offsetof(struct chat_transport_ops, fd), "fd" },
	{ offsetof(struct chat_transport_ops, address), "address" },
	{ offsetof(struct chat_transport_ops, close), "close" },
	{ offsetof(struct chat_transport_ops, listener_close), "listener_close" },
	{ 0, NULL },
};

/* The size a 1.0 table has: everything up to its last 1.0 member.  Every
 * 1.x plugin has at least this much; what a newer minor appended (the
 * cipher's session_save, session_load, open_at in 1.1) may lie beyond an
 * older plugin's `size` and is only ever read through CHAT_CIPHER_HAS. */
#define CIPHER_OPS_V1_SIZE (offsetof(struct chat_cipher_ops, session_free) + sizeof(void *))
#define TRANSPORT_OPS_V1_SIZE (offsetof(struct chat_transport_ops, listener_close) + sizeof(void *))
#define PLUGIN_V1_SIZE (offsetof(struct chat_plugin, ops) + sizeof(void *))

_Static_assert(CIPHER_OPS_V1_SIZE == offsetof(struct chat_cipher_ops, session_save),
               "ABI 1.1 appends to the 1.0 cipher table: the 1.0 size must not move");

static int check_ops(const char *path, const struct chat_plugin *d, size_t errlen, char *err)
{
	const void *ops;
	const struct op_slot *slots;
	size_t min_size;

	if (d->kind == CHAT_PLUGIN_CIPHER) {
		ops = d->ops.cipher;
		slots = cipher_required;
		min_size = CIPHER_OPS_V1_SIZE;
	} else {
		ops = d->ops.transport;
		slots = transport_required;
		min_size = TRANSPORT_OPS_V1_SIZE;
	}
	if (!ops)
		return fail(CHAT_ERR_PLUGIN, errlen, err,
		            "plugin %s: missing required field 'ops' (no %s operations table)",
		            path, chat_plugin_kind_name((int)d->kind));
	uint32_t size = *(const uint32_t *)ops; /* every ops table starts with its size */
	if (size < min_size)
		return fail(CHAT_ERR_ABI, errlen, err,
		            "plugin %s: %s operations table is %u bytes, ABI %d.0 needs at least %zu",
		            path, chat_plugin_kind_name((int)d->kind), size, CHAT_ABI_MAJOR,
		            min_size);
	for (const struct op_slot *s = slots; s->name; s++) {
		void *fn;
		memcpy(&fn, (const char *)ops + s->offset, sizeof(fn));
		if (!fn)
			return fail(CHAT_ERR_PLUGIN, errlen, err,
			            "plugin %s: missing required op '%s' in its %s operations table",
			            path, s->name, chat_plugin_kind_name((int)d->kind));
	}
	/* ABI 1.1: a saved session is useless without a way to load it, and a
	 * caller that finds one op must be able to count on the other. */
	if (d->kind == CHAT_PLUGIN_CIPHER) {
		const struct chat_cipher_ops *c = ops;

		if (CHAT_CIPHER_HAS(c, session_save) != CHAT_CIPHER_HAS(c, session_load))
			return fail(CHAT_ERR_PLUGIN, errlen, err,
			            "plugin %s: its cipher operations table has %s but not %s "
			            "(ABI 1.1: both or neither)", path,
			            CHAT_CIPHER_HAS(c, session_save) ? "session_save" : "session_load",
			            CHAT_CIPHER_HAS(c, session_save) ? "session_load" : "session_save");
		/* ABI 1.3: identity keys come as a pair of ops and the flag that
		 * tells the core to hand the suite its keys. */
		int keygen = CHAT_CIPHER_HAS(c, identity_keygen), peer = CHAT_CIPHER_HAS(c, peer_identity);
		int flag = (d->flags & CHAT_FLAG_IDENTITY) != 0;
		if (keygen != peer || keygen != flag)
			return fail(CHAT_ERR_PLUGIN, errlen, err,
			            "plugin %s: identity_keygen, peer_identity and the flag CHAT_FLAG_IDENTITY "
			            "go together (ABI 1.3: all or none); it has %s%s%s", path,
			            keygen ? "identity_keygen " : "", peer ? "peer_identity " : "",
			            flag ? "the flag" : keygen || peer ? "no flag" : "the ops missing");
	}
	return CHAT_OK;
}

static int check_config_keys(const char *path, const struct chat_plugin *d, size_t errlen,
                             char *err)
{
	size_t n = 0;

	for (const struct chat_config_key *k = d->config_keys; k && k->name; k++, n++) {
		if (!k->name[0] || n > 256)
			return fail(CHAT_ERR_PLUGIN, errlen, err,
			            "plugin %s: config key #%zu has an empty name (or the list is not terminated)",
			            path, n + 1);
		if (k->type < CHAT_CONFIG_STRING || k->type > CHAT_CONFIG_BOOL)
			return fail(CHAT_ERR_PLUGIN, errlen, err,
			            "plugin %s: config key '%s' has unknown type %d", path, k->name, k->type);
		if (k->type == CHAT_CONFIG_INT && k->min > k->max)
			return fail(CHAT_ERR_PLUGIN, errlen, err,
			            "plugin %s: config key '%s' has min %lld > max %lld", path,
			            k->name, k->min, k->max);
	}
	return CHAT_OK;
}

/* Everything about the descriptor, before any op is called. */
static int check_descriptor(const char *path, const struct chat_plugin *d, int kind,
                            size_t errlen, char *err)
{
	if (d->abi_major != CHAT_ABI_MAJOR || d->abi_minor > CHAT_ABI_MINOR)
		return fail(CHAT_ERR_ABI, errlen, err,
		            "plugin %s: ABI mismatch: plugin built for ABI %u.%u, this program supports %d.%d "
		            "(same major, minor up to %d)",
		            path, d->abi_major, d->abi_minor, CHAT_ABI_MAJOR, CHAT_ABI_MINOR,
		            CHAT_ABI_MINOR);
	if (d->size < PLUGIN_V1_SIZE)
		return fail(CHAT_ERR_ABI, errlen, err,
		            "plugin %s: descriptor is %u bytes, ABI %u.0 needs at least %zu",
		            path, d->size, d->abi_major, PLUGIN_V1_SIZE);
	if (d->kind != CHAT_PLUGIN_CIPHER && d->kind != CHAT_PLUGIN_TRANSPORT)
		return fail(CHAT_ERR_PLUGIN, errlen, err, "plugin %s: unknown plugin kind %u",
		            path, d->kind);
	if (kind && (int)d->kind != kind)
		return fail(CHAT_ERR_PLUGIN, errlen, err,
		            "plugin %s: wrong kind: it is a %s plugin, a %s plugin is needed here",
		            path, chat_plugin_kind_name((int)d->kind), chat_plugin_kind_name(kind));
	if (!d->name || !d->name[0])
		return fail(CHAT_ERR_PLUGIN, errlen, err, "plugin %s: missing required field 'name'", path);
	if (!chat_plugin_name_valid(d->name))
		return fail(CHAT_ERR_PLUGIN, errlen, err,
		            "plugin %s: invalid name '%.40s' (1-32 characters of a-z, 0-9, '-')",
		            path, d->name);
	if (!d->version || !d->version[0])
		return fail(CHAT_ERR_PLUGIN, errlen, err, "plugin %s: missing required field 'version'", path);
	if (!d->summary || !d->summary[0])
		return fail(CHAT_ERR_PLUGIN, errlen, err, "plugin %s: missing required field 'summary'", path);
	int rc = check_ops(path, d, errlen, err);
	if (rc)
		return rc;
	return check_config_keys(path, d, errlen, err);
}

/* ---- where a plugin may come from (docs/PLUGIN-ABI.md, "Which plugin
 * files are trusted"): OpenSSH's safe_path(), plus root's sticky directories. */

struct trust {
	size_t errlen, used;
	char *err;
	int problems;
};

static void problem(struct trust *t, const char *fmt, ...) CHAT_PRINTF(2, 3);
static void problem(struct trust *t, const char *fmt, ...)
{
	va_list ap;

	t->problems++;
	if (!t->errlen || t->used + 1 >= t->errlen)
		return;
	if (t->problems > 1) {
		int n = snprintf(t->err + t->used, t->errlen - t->used, "; ");
		t->used += n > 0 ? (size_t)n : 0;
		if (t->used >= t->errlen) {
			t->used = t->errlen - 1;
			return;
		}
	}
	va_start(ap, fmt);
	int n = vsnprintf(t->err + t->used, t->errlen - t->used, fmt, ap);
	va_end(ap);
	t->used += n > 0 ? (size_t)n : 0;
	if (t->used >= t->errlen)
		t->used = t->errlen - 1;
}

/* "alice (uid 1000)", or "uid 1000" for a uid without a name. */
static void user_text(uid_t uid, size_t cap, char *dst)
{
	struct passwd *pw = getpwuid(uid);

	if (pw && pw->pw_name)
		snprintf(dst, cap, "%s (uid %u)", pw->pw_name, (unsigned)uid);
	else
		snprintf(dst, cap, "uid %u", (unsigned)uid);
}

/* One component of the real path: the plugin file itself or a directory
 * above it. */
static void check_component(struct trust *t, const char *path, const struct stat *st, int is_file)
{
	const char *what = is_file ? "the plugin file" : "directory";
	uid_t me = geteuid();
	unsigned mode = (unsigned)(st->st_mode & 07777);

	if (is_file && !S_ISREG(st->st_mode))
		problem(t, "%s is not a regular file", path);
	else if (!is_file && !S_ISDIR(st->st_mode))
		problem(t, "%s is not a directory", path);
	if (st->st_uid != 0 && st->st_uid != me) {
		char owner[96], self[96] = "root";
		struct passwd *pw = me ? getpwuid(me) : NULL;
		char me_name[64] = "root";

		if (me)
			snprintf(me_name, sizeof(me_name), "%s", pw && pw->pw_name ? pw->pw_name : "YOU");
		if (me)
			user_text(me, sizeof(self), self);
		user_text(st->st_uid, sizeof(owner), owner);
		problem(t, "%s %s is owned by %s, not by root%s%s, who runs this program "
		        "(fix: chown %s %s%s, or keep the plugin elsewhere)", what, path, owner,
		        me ? " or by " : "", me ? self : "", me_name, path, me ? " as root" : "");
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		const char *who = (st->st_mode & S_IWGRP) && (st->st_mode & S_IWOTH)
			? "its group and others" : (st->st_mode & S_IWGRP) ? "its group" : "others";
		if (!is_file && (st->st_mode & S_ISVTX) && st->st_uid == 0)
			return; /* like /tmp: only root and each entry's owner may rename or remove
			         * it, and every entry on our path is checked in turn */
		problem(t, "%s %s is writable by %s (mode %04o%s; fix: chmod go-w %s)", what, path, who,
		        mode, !is_file && (st->st_mode & S_ISVTX)
		              ? ", sticky but not owned by root" : "", path);
	}
}

/* Check real (the realpath of path, which names it in messages). */
static int check_real(const char *path, const char *real, size_t errlen, char *err)
{
	char dir[PATH_MAX];
	struct stat st;
	struct trust t = { .errlen = errlen, .err = err };

	if (errlen) {
		int n = strcmp(real, path)
			? snprintf(err, errlen, "plugin %s (which is %s): refused before loading: ", path, real)
			: snprintf(err, errlen, "plugin %s: refused before loading: ", path);
		t.used = n > 0 ? (size_t)n : 0;
		if (t.used >= errlen)
			t.used = errlen - 1;
	}
	/* The file, then each directory above it, up to and including "/". */
	snprintf(dir, sizeof(dir), "%s", real);
	for (int is_file = 1;; is_file = 0) {
		if (stat(dir, &st) != 0)
			problem(&t, "cannot check %s: %s", dir, strerror(errno));
		else
			check_component(&t, dir, &st, is_file);
		char *slash = strrchr(dir, '/');
		if (!slash || !strcmp(dir, "/"))
			break; /* realpath's result is absolute: "/" is always reached */
		if (slash == dir)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
	if (!t.problems) {
		if (errlen)
			err[0] = '\0';
		return CHAT_OK;
	}
	return CHAT_ERR_PLUGIN;
}

int chat_plugin_trusted(const char *path, size_t errlen, char *err)
{
	char real[PATH_MAX];

	if (errlen)
		err[0] = '\0';
	if (!realpath(path, real))
		return fail(errno == ENOENT ? CHAT_ERR_NOTFOUND : CHAT_ERR_PLUGIN, errlen, err,
		            "plugin %s: %s", path, errno == ENOENT ? "file not found" : strerror(errno));
	return check_real(path, real, errlen, err);
}

static int registry_add(struct chat_registry *reg, struct chat_loaded *p)
{
	if (reg->count == reg->cap) {
		size_t cap = reg->cap ? reg->cap * 2 : 8;
		struct chat_loaded **items = realloc(reg->items, cap * sizeof(*items));
		if (!items)
			return CHAT_ERR_NOMEM;
		reg->items = items;
		reg->cap = cap;
	}
	reg->items[reg->count++] = p;
	return CHAT_OK;
}

int chat_registry_load_path(struct chat_registry *reg, const char *path, int kind,
                            const struct chat_loaded **out, size_t errlen, char *err)
{
	char real[PATH_MAX];
	struct stat st;
	struct chat_loaded *p = NULL;
	void *dl = NULL;
	int rc;

	if (out)
		*out = NULL;
	if (errlen)
		err[0] = '\0';
	if (stat(path, &st) != 0)
		return fail(errno == ENOENT ? CHAT_ERR_NOTFOUND : CHAT_ERR_PLUGIN, errlen, err,
		            "plugin %s: %s", path,
		            errno == ENOENT ? "file not found" : strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(CHAT_ERR_PLUGIN, errlen, err, "plugin %s: not a regular file", path);
	if (!realpath(path, real))
		return fail(CHAT_ERR_PLUGIN, errlen, err, "plugin %s: %s", path, strerror(errno));

	for (size_t i = 0; i < reg->count; i++) {
		if (strcmp(reg->items[i]->path, real) == 0) {
			const struct chat_plugin *d = reg->items[i]->desc;
			if (kind && (int)d->kind != kind)
				return fail(CHAT_ERR_PLUGIN, errlen, err,
				            "plugin %s: wrong kind: it is a %s plugin, a %s plugin is needed here",
				            path, chat_plugin_kind_name((int)d->kind),
				            chat_plugin_kind_name(kind));
			if (out)
				*out = reg->items[i];
			return CHAT_OK;
		}
	}

	/* Nothing of a plugin runs (not even its constructors, which dlopen
	 * calls) before the file and every directory above it are checked. */
	rc = check_real(path, real, errlen, err);
	if (rc)
		return rc;
	dl = dlopen(real, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		const char *why = dlerror();
		return fail(CHAT_ERR_PLUGIN, errlen, err, "plugin %s: not a loadable shared object: %s",
		            path, why ? why : "unknown dlopen error");
	}
	dlerror();
	void *sym = dlsym(dl, CHAT_PLUGIN_ENTRY_SYMBOL);
	if (!sym) {
		rc = fail(CHAT_ERR_PLUGIN, errlen, err,
		          "plugin %s: does not export the entry symbol '%s' (is it a chat plugin? "
		          "was it built with CHAT_PLUGIN_EXPORT?)", path, CHAT_PLUGIN_ENTRY_SYMBOL);
		goto out;
	}
	chat_plugin_entry_fn entry;
	memcpy(&entry, &sym, sizeof(entry)); /* object pointer -> function pointer, POSIX-style */
	const struct chat_plugin *d = entry();
	if (!d) {
		rc = fail(CHAT_ERR_PLUGIN, errlen, err, "plugin %s: %s() returned no descriptor",
		          path, CHAT_PLUGIN_ENTRY_SYMBOL);
		goto out;
	}
	rc = check_descriptor(path, d, kind, errlen, err);
	if (rc)
		goto out;
	const struct chat_loaded *dup = chat_registry_find(reg, (int)d->kind, d->name);
	if (dup) {
		rc = fail(CHAT_ERR_PLUGIN, errlen, err,
		          "plugin %s: duplicate %s plugin name '%s' (already loaded from %s)",
		          path, chat_plugin_kind_name((int)d->kind), d->name, dup->path);
		goto out;
	}
	if (reg->cfg) {
		char why[512];
		rc = chat_config_check_plugin(reg->cfg, d->name, d->config_keys, sizeof(why), why);
		if (rc) {
			rc = fail(CHAT_ERR_CONFIG, errlen, err, "%s", why);
			goto out;
		}
	}

	p = calloc(1, sizeof(*p));
	if (!p || !(p->path = strdup(real))) {
		rc = fail(CHAT_ERR_NOMEM, errlen, err, "plugin %s: out of memory", path);
		goto out;
	}
	p->desc = d;
	p->dl = dl;
	p->host_ctx.plugin_name = d->name;
	p->host_ctx.cfg = reg->cfg;
	p->host_ctx.keys = d->config_keys;
	p->host_ctx.state_dir = (const char *const *)&reg->state_dir;
	chat_host_init(&p->host, &p->host_ctx);
	rc = registry_add(reg, p);
	if (rc) {
		fail(rc, errlen, err, "plugin %s: out of memory", path);
		goto out;
	}
	if (d->kind == CHAT_PLUGIN_CIPHER && (d->flags & CHAT_FLAG_INSECURE))
		chat_debug("loaded cipher suite '%s' from %s: INSECURE, for demonstration only",
		           d->name, real);
	else
		chat_debug("loaded %s plugin '%s' %s from %s", chat_plugin_kind_name((int)d->kind),
		           d->name, d->version, real);
	if (out)
		*out = p;
	return CHAT_OK;
out:
	if (p) {
		free(p->path);
		free(p);
	}
	/* Nothing of this plugin is in use yet, so closing it is safe. */
	dlclose(dl);
	return rc;
}

int chat_plugin_file(const char *dir, int kind, const char *ref, size_t cap, char *dst,
                     size_t errlen, char *err)
{
	int n;

	if (strchr(ref, '/'))
		n = snprintf(dst, cap, "%s", ref);
	else if (!chat_plugin_name_valid(ref))
		return fail(CHAT_ERR_CONFIG, errlen, err,
		            "invalid plugin name '%s' (1-32 characters of a-z, 0-9, '-'; or a path containing '/')",
		            ref);
	else
		n = snprintf(dst, cap, "%s/%s-%s.so", dir, chat_plugin_kind_name(kind), ref);
	if (n < 0 || (size_t)n >= cap)
		return fail(CHAT_ERR_CONFIG, errlen, err, "plugin path too long: %s%s%s",
		            strchr(ref, '/') ? "" : dir, strchr(ref, '/') ? "" : "/", ref);
	return CHAT_OK;
}

int chat_registry_add_builtin(struct chat_registry *reg, const struct chat_plugin *d,
                              const struct chat_loaded **out, size_t errlen, char *err)
{
	char path[64];
	struct chat_loaded *p;
	int rc;

	if (out)
		*out = NULL;
	if (!d)
		return fail(CHAT_ERR_PLUGIN, errlen, err, "builtin plugin: no descriptor");
	snprintf(path, sizeof(path), "builtin:%.40s", d->name ? d->name : "?");
	rc = check_descriptor(path, d, 0, errlen, err);
	if (rc)
		return rc;
	if (chat_registry_find(reg, (int)d->kind, d->name))
		return fail(CHAT_ERR_PLUGIN, errlen, err, "plugin %s: duplicate %s plugin name '%s'",
		            path, chat_plugin_kind_name((int)d->kind), d->name);
	if (reg->cfg) {
		char why[512];
		rc = chat_config_check_plugin(reg->cfg, d->name, d->config_keys, sizeof(why), why);
		if (rc)
			return fail(CHAT_ERR_CONFIG, errlen, err, "%s", why);
	}
	p = calloc(1, sizeof(*p));
	if (!p || !(p->path = strdup(path))) {
		free(p);
		return fail(CHAT_ERR_NOMEM, errlen, err, "plugin %s: out of memory", path);
	}
	p->desc = d;
	p->host_ctx.plugin_name = d->name;
	p->host_ctx.cfg = reg->cfg;
	p->host_ctx.keys = d->config_keys;
	p->host_ctx.state_dir = (const char *const *)&reg->state_dir;
	chat_host_init(&p->host, &p->host_ctx);
	rc = registry_add(reg, p);
	if (rc) {
		free(p->path);
		free(p);
		return fail(rc, errlen, err, "plugin %s: out of memory", path);
	}
	if (out)
		*out = p;
	return CHAT_OK;
}

/* "a, b, c": the plugins of kind in dir, by file name (KIND-NAME.so), sorted. */
static void installed(const char *dir, int kind, size_t cap, char *dst)
{
	char names[64][33];
	const char *kname = chat_plugin_kind_name(kind);
	size_t n = 0, klen = strlen(kname), used = 0;
	struct dirent *e;
	DIR *d = opendir(dir);

	dst[0] = '\0';
	if (!d)
		return;
	while ((e = readdir(d)) != NULL && n < 64) {
		size_t len = strlen(e->d_name);
		if (len <= klen + 4 || strncmp(e->d_name, kname, klen) || e->d_name[klen] != '-' ||
		    strcmp(e->d_name + len - 3, ".so") || len - klen - 4 > 32)
			continue;
		memcpy(names[n], e->d_name + klen + 1, len - klen - 4);
		names[n++][len - klen - 4] = '\0';
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
	for (size_t i = 0; i < n && used < cap; i++) {
		int k = snprintf(dst + used, cap - used, "%s%s", i ? ", " : "", names[i]);
		if (k < 0)
			break;
		used += (size_t)k;
	}
}

int chat_registry_load(struct chat_registry *reg, const char *dir, int kind, const char *ref,
                       const struct chat_loaded **out, size_t errlen, char *err)
{
	char path[PATH_MAX];

	if (out)
		*out = NULL;
	if (strchr(ref, '/'))
		return chat_registry_load_path(reg, ref, kind, out, errlen, err);
	int frc = chat_plugin_file(dir, kind, ref, sizeof(path), path, errlen, err);
	if (frc)
		return frc;
	/* A plugin loaded by path (--plugin) can be named like one in dir; if dir
	 * has its own file of that name too, load_path reports the duplicate. */
	const struct chat_loaded *have = chat_registry_find(reg, kind, ref);
	if (have && access(path, F_OK) != 0) {
		if (out)
			*out = have;
		return CHAT_OK;
	}
	int rc = chat_registry_load_path(reg, path, kind, out, errlen, err);
	if (rc == CHAT_ERR_NOTFOUND) {
		struct stat st;
		if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
			return fail(rc, errlen, err,
			            "%s plugin '%s': plugin directory %s does not exist (set core.plugin_dir, "
			            "or build the project first)", chat_plugin_kind_name(kind), ref, dir);
		char have_list[512];
		installed(dir, kind, sizeof(have_list), have_list);
		return fail(rc, errlen, err, "%s plugin '%s': file not found: %s (installed in %s: %s)",
		            chat_plugin_kind_name(kind), ref, path, dir,
		            have_list[0] ? have_list : "none");
	}
	if (rc == CHAT_OK && out && strcmp((*out)->desc->name, ref) != 0) {
		/* The file is named after one plugin but holds another. */
		return fail(CHAT_ERR_PLUGIN, errlen, err,
		            "plugin %s: file is named for '%s' but the plugin calls itself '%s'",
		            path, ref, (*out)->desc->name);
	}
	return rc;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int chat_registry_scan(struct chat_registry *reg, const char *dir,
                       void (*on_error)(void *arg, const char *path, int err, const char *msg),
                       void *arg)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t count = 0, cap = 0;
	int failures = 0;

	if (!d)
		return errno == ENOENT ? CHAT_ERR_NOTFOUND : CHAT_ERR_IO;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0 || e->d_name[0] == '.')
			continue;
		if (count == cap) {
			cap = cap ? cap * 2 : 16;
			char **grown = realloc(names, cap * sizeof(*names));
			if (!grown)
				goto nomem;
			names = grown;
		}
		if (!(names[count] = strdup(e->d_name)))
			goto nomem;
		count++;
	}
	closedir(d);
	d = NULL;
	qsort(names, count, sizeof(*names), cmp_names);
	for (size_t i = 0; i < count; i++) {
		char path[PATH_MAX], msg[1024];
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		int rc = chat_registry_load_path(reg, path, 0, NULL, sizeof(msg), msg);
		if (rc) {
			failures++;
			if (on_error)
				on_error(arg, path, rc, msg);
		}
	}
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
	return failures;
nomem:
	if (d)
		closedir(d);
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
	return CHAT_ERR_NOMEM;
}
