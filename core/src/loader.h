/* The plugin loader and registry.  A plugin is dlopen'ed RTLD_NOW|RTLD_LOCAL;
 * its descriptor is checked (ABI, size, kind, required fields and ops, config
 * keys) before any of its code other than the entry accessor runs.  Loaded
 * plugins are never unloaded: sessions and connections may still point into
 * them, and sanitizers can only symbolize code that is still mapped. */
#ifndef CHAT_LOADER_H
#define CHAT_LOADER_H

#include <stddef.h>

#include <chat/plugin.h>

#include "host.h"

struct chat_config;

struct chat_loaded {
	const struct chat_plugin *desc;
	char *path;               /* as resolved (realpath) */
	void *dl;                 /* dlopen handle, kept open */
	struct chat_host host;    /* the services lent to this plugin */
	struct chat_host_ctx host_ctx;
};

struct chat_registry;

/* cfg may be NULL (plugins then see only their declared defaults). */
int chat_registry_new(const struct chat_config *cfg, struct chat_registry **reg);
void chat_registry_free(struct chat_registry *reg);

/* Load the shared object at path.  kind 0 accepts any kind.  Loading the
 * same file twice returns the first record.  err receives a message naming
 * the path, e.g. "plugin /x/y.so: ABI mismatch: built for ABI 2.0, this
 * program supports 1.0". */
int chat_registry_load_path(struct chat_registry *reg, const char *path, int kind,
                            const struct chat_loaded **out, size_t errlen, char *err);

/* Register a plugin that is linked into the program instead of loaded from
 * a shared object: the descriptor gets every check a loaded one gets and the
 * same host services; its path reads "builtin:NAME" and it is found by name
 * like any other (chat_registry_load finds it when dir has no file of that
 * name).  Used by the fuzz harnesses (tests/fuzz/), which link the suites
 * statically so that they are instrumented with the harness; no program
 * calls it. */
int chat_registry_add_builtin(struct chat_registry *reg, const struct chat_plugin *desc,
                              const struct chat_loaded **out, size_t errlen, char *err);

/* Load "<kind>-<name>.so" from dir; a ref containing '/' is a path instead. */
int chat_registry_load(struct chat_registry *reg, const char *dir, int kind, const char *ref,
                       const struct chat_loaded **out, size_t errlen, char *err);

/* The file chat_registry_load loads for ref: "<dir>/<kind>-<ref>.so", or
 * ref itself when it contains '/'.  CHAT_ERR_CONFIG for an invalid name or
 * a path too long (err says which). */
int chat_plugin_file(const char *dir, int kind, const char *ref, size_t cap, char *dst,
                     size_t errlen, char *err);

/* May the plugin file at path be loaded?  Checked before every dlopen (a
 * constructor runs inside dlopen, before any other check could).  path is
 * resolved with realpath; the real file and every real directory above it,
 * up to "/", must be owned by root or by the effective user and writable
 * by neither group nor others; the one exception is a directory owned by
 * root with the sticky bit (like /tmp), which may be writable by anyone
 * since only root and each entry's owner can rename or remove that entry.
 * CHAT_OK; CHAT_ERR_NOTFOUND; or CHAT_ERR_PLUGIN, err naming path (and its
 * real path) and every component at fault: its mode or owner and the fix
 * (chmod go-w DIR, chown USER FILE).  docs/PLUGIN-ABI.md has the rule. */
int chat_plugin_trusted(const char *path, size_t errlen, char *err);

/* Load every *.so in dir, in name order.  Each failure is reported through
 * on_error (the scan goes on); returns the number of failures, or a negative
 * error if dir cannot be read. */
int chat_registry_scan(struct chat_registry *reg, const char *dir,
                       void (*on_error)(void *arg, const char *path, int err, const char *msg),
                       void *arg);

/* The program's state directory, lent to every plugin as host->state_dir
 * (copied; NULL: none). */
int chat_registry_set_state_dir(struct chat_registry *reg, const char *dir);

size_t chat_registry_count(const struct chat_registry *reg);
const struct chat_loaded *chat_registry_get(const struct chat_registry *reg, size_t i);
const struct chat_loaded *chat_registry_find(const struct chat_registry *reg, int kind,
                                             const char *name);

const char *chat_plugin_kind_name(int kind);
/* "insecure,authenticated" or "-" for no flags. */
void chat_plugin_flags_text(unsigned flags, size_t cap, char *dst);
/* [a-z0-9-]{1,32} */
int chat_plugin_name_valid(const char *name);

#endif
