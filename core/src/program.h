/* What the three programs share: command-line parsing (common flags plus
 * per-program flags that map to chat.ini keys), loading and validating the
 * configuration and the plugins, --list-plugins and --check-config.  All of it
 * happens before any socket is opened. */
#ifndef CHAT_PROGRAM_H
#define CHAT_PROGRAM_H

#include "config.h"
#include "loader.h"

/* A program flag that sets a configuration key, e.g. --listen -> relay.listen. */
struct chat_prog_flag {
	const char *name;     /* long option without "--" */
	int letter;           /* short option, or 0 */
	const char *section, *key;
	const char *arg_name; /* e.g. "ADDR" */
	const char *help;
};

struct chat_prog {
	/* Set by the program before chat_prog_start. */
	const char *name;     /* "chat-relay" */
	const char *section;  /* its chat.ini section: "relay" */
	const char *summary;  /* one line for --help */
	const char *usage_tail; /* extra --help text, or NULL */
	const struct chat_prog_flag *flags; /* terminated by name == NULL; may be NULL */

	/* Filled in by chat_prog_start. */
	struct chat_config *cfg;
	struct chat_registry *reg;
	const struct chat_loaded *transport;
	const char *plugin_dir;
	size_t max_frame;
};

/* Returns -1 when the program should go on running, otherwise the exit status
 * (0 after --help/--version/--check-config/--list-plugins, 1 on a
 * configuration or plugin error, 2 on a usage error); messages are printed. */
int chat_prog_start(struct chat_prog *p, int argc, char **argv);
void chat_prog_finish(struct chat_prog *p);

/* Print "<program>: <message>" to stderr. */
void chat_prog_error(const struct chat_prog *p, const char *fmt, ...) CHAT_PRINTF(2, 3);

#endif
