/* Where an installed program finds its files: the configuration file
 * (a search path) and the default plugin directory, both found from the
 * running binary (/proc/self/exe) so that an installed tree can be moved,
 * falling back to the directories chosen when the build was configured. */
#ifndef CHAT_INSTALLDIRS_H
#define CHAT_INSTALLDIRS_H

#include <stddef.h>

/* The most places the configuration search path has. */
#define CHAT_CONFIG_PLACES 6

struct chat_config_places {
	char path[CHAT_CONFIG_PLACES][4096];
	const char *why[CHAT_CONFIG_PLACES]; /* "$CHAT_CONFIG", "the current directory", ... */
	size_t n;
};

/* The configuration files a program looks for, in order, when no --config
 * is given: $CHAT_CONFIG alone if it is set (then *explicit_file = 1: a
 * missing one is an error, no fallback); otherwise ./chat.ini, for the
 * client $XDG_CONFIG_HOME/chat/chat.ini (default ~/.config/chat/chat.ini),
 * then SYSCONFDIR/chat/chat.ini next to the installed program. */
void chat_paths_config_places(int user_config, struct chat_config_places *pl,
                              int *explicit_file);

/* The plugin directory to use when core.plugin_dir is not set: the
 * installed one next to the running program (BINDIR/../lib/chat/plugins, as
 * configured), the build tree's plugins/ for a program in the build tree,
 * else the directory configured at build time.  Written to buf. */
void chat_paths_default_plugin_dir(size_t len, char *buf);

/* The directory of the relay's optional modules (the PostgreSQL store, the
 * Redis cluster link: shared objects loaded only when chat.ini asks for
 * them): $CHAT_MODULE_DIR if set, else the sibling "modules" of the default
 * plugin directory (BINDIR/../lib/chat/modules installed, build/modules in
 * the build tree).  Written to buf. */
void chat_paths_module_dir(size_t len, char *buf);

#endif
