#include "installdirs.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Set by core/CMakeLists.txt from GNUInstallDirs. */
#ifndef CHAT_DEFAULT_PLUGIN_DIR
#define CHAT_DEFAULT_PLUGIN_DIR "/usr/local/lib/chat/plugins"
#endif
#ifndef CHAT_SYSCONFDIR
#define CHAT_SYSCONFDIR "/usr/local/etc"
#endif
#ifndef CHAT_BIN_TO_PLUGIN_DIR
#define CHAT_BIN_TO_PLUGIN_DIR "../lib/chat/plugins"
#endif
#ifndef CHAT_BIN_TO_SYSCONFDIR
#define CHAT_BIN_TO_SYSCONFDIR "../etc"
#endif

/* The directory of the running program, resolved; 0 or -1. */
static int exe_dir(size_t len, char *buf)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (n <= 0)
		return -1;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	if ((size_t)snprintf(buf, len, "%s", slash == exe ? "/" : exe) >= len)
		return -1;
	return 0;
}

/* dir/rel, made canonical if it exists; 1 if it is a directory. */
static int join(const char *dir, const char *rel, size_t len, char *buf)
{
	char tmp[PATH_MAX + 256], real[PATH_MAX];
	struct stat st;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/%s", strcmp(dir, "/") ? dir : "", rel) >=
	    sizeof(tmp))
		return 0;
	if (realpath(tmp, real) && strlen(real) < len) {
		memcpy(buf, real, strlen(real) + 1);
		return stat(real, &st) == 0 && S_ISDIR(st.st_mode);
	}
	if (strlen(tmp) < len)
		memcpy(buf, tmp, strlen(tmp) + 1);
	else if (len)
		buf[0] = '\0';
	return 0;
}

static void add(struct chat_config_places *pl, const char *why, const char *fmt, const char *a,
                const char *b)
{
	if (pl->n >= CHAT_CONFIG_PLACES)
		return;
	/* A path too long to open is left out, not cut. */
	if ((size_t)snprintf(pl->path[pl->n], sizeof(pl->path[0]), fmt, a, b) < sizeof(pl->path[0]))
		pl->why[pl->n++] = why;
}

void chat_paths_config_places(int user_config, struct chat_config_places *pl,
                              int *explicit_file)
{
	const char *env = getenv("CHAT_CONFIG");
	char dir[PATH_MAX], etc[PATH_MAX];

	pl->n = 0;
	*explicit_file = 0;
	if (env && *env) {
		add(pl, "$CHAT_CONFIG", "%s%s", env, "");
		*explicit_file = 1;
		return;
	}
	add(pl, "the current directory", "%s%s", "chat.ini", "");
	if (user_config) {
		const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
		/* The XDG spec: a relative $XDG_CONFIG_HOME is ignored. */
		if (xdg && xdg[0] == '/')
			add(pl, "$XDG_CONFIG_HOME", "%s%s", xdg, "/chat/chat.ini");
		else if (home && *home)
			add(pl, "your configuration directory", "%s%s", home, "/.config/chat/chat.ini");
	}
	if (exe_dir(sizeof(dir), dir) == 0) {
		join(dir, CHAT_BIN_TO_SYSCONFDIR, sizeof(etc), etc);
		add(pl, "the installation's configuration directory", "%s%s", etc, "/chat/chat.ini");
	} else {
		add(pl, "the configured configuration directory", "%s%s", CHAT_SYSCONFDIR,
		    "/chat/chat.ini");
	}
}

void chat_paths_default_plugin_dir(size_t len, char *buf)
{
	char dir[PATH_MAX], cand[PATH_MAX];

	if (exe_dir(sizeof(dir), dir) == 0) {
		if (join(dir, CHAT_BIN_TO_PLUGIN_DIR, sizeof(cand), cand)) {
			snprintf(buf, len, "%s", cand);
			return;
		}
#if defined(CHAT_BUILD_BIN_DIR) && defined(CHAT_BUILD_PLUGIN_DIR)
		/* A program run from the build tree uses the plugins built with it. */
		char build[PATH_MAX];
		if (realpath(CHAT_BUILD_BIN_DIR, build) && !strcmp(build, dir)) {
			snprintf(buf, len, "%s", CHAT_BUILD_PLUGIN_DIR);
			return;
		}
#endif
	}
	snprintf(buf, len, "%s", CHAT_DEFAULT_PLUGIN_DIR);
}

void chat_paths_module_dir(size_t len, char *buf)
{
	const char *env = getenv("CHAT_MODULE_DIR");
	char plugins[PATH_MAX];
	char *slash;

	if (env && *env) {
		snprintf(buf, len, "%s", env);
		return;
	}
	chat_paths_default_plugin_dir(sizeof(plugins), plugins);
	slash = strrchr(plugins, '/');
	if (slash)
		*slash = '\0';
	snprintf(buf, len, "%s/modules", slash ? plugins : ".");
}
