/* What the three programs share: command-line parsing (common flags,
 * per-program flags that map to chat.ini keys, and program options that are
 * not), loading and validating the configuration and the plugins,
 * --list-plugins, --check-config and --read-log.  All of it happens before
 * any socket is opened. */
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

/* A program option that is not a configuration key, e.g. --read-log FILE or
 * --guest; chat_prog_take_opts stores what it finds through the pointers. */
struct chat_prog_opt {
	const char *name;     /* long option without "--" */
	const char *arg_name; /* e.g. "FILE"; NULL for a flag without a value */
	unsigned flags;       /* CHAT_PROG_OPT_* */
	const char **value;   /* set to the value (arg_name set) */
	int *set;             /* set to 1 when given, or NULL (then value must be set) */
	const char *help;     /* for --help; may hold '\n' for more lines */
};

/* The value names a file: an empty one is refused. */
#define CHAT_PROG_OPT_FILE 1u

struct chat_prog_override; /* a --set or a program flag, kept for chat_prog_reload */

struct chat_prog {
	/* Set by the program before chat_prog_start. */
	const char *name;     /* "chat-relay" */
	const char *section;  /* its chat.ini section: "relay" */
	const char *summary;  /* one line for --help */
	const char *usage_tail; /* extra --help text, or NULL */
	const struct chat_prog_flag *flags; /* terminated by name == NULL; may be NULL */
	const struct chat_prog_opt *opts;   /* terminated by name == NULL; may be NULL */
	/* Suites with any of these flags are refused (also by --check-config),
	 * with refuse_why after "suite NAME ": what this program cannot do. */
	unsigned refuse_flags;
	const char *refuse_why;
	/* The program's own part of --check-config, or NULL: run once the
	 * configuration and the plugins passed, before "configuration OK" (the
	 * relay checks its database and log there).  Prints what it finds;
	 * returns 0, or the exit status. */
	int (*check_config)(struct chat_prog *p);

	/* Filled in by chat_prog_start. */
	struct chat_config *cfg;
	struct chat_registry *reg;
	const struct chat_loaded *transport;
	const char *plugin_dir;
	size_t max_frame;
	/* How the configuration was made, for chat_prog_reload: the file, then
	 * the command line's overrides in their order (their values point into
	 * argv). */
	const char *config_path;
	struct chat_prog_override *overrides;
	size_t n_overrides;
};

/* Take the program options (p->opts) out of argv, as --NAME VALUE,
 * --NAME=VALUE or --NAME, and leave the rest in order for chat_prog_start:
 * argv[0 .. *argc) then NULL.  Which of the rest take a value (and so are
 * never read as one of ours) comes from the common options and p->flags;
 * nothing after "--" is taken.  Returns 0, or 2 with the message printed
 * (then argv is in no useful order).  chat_prog_start does this itself;
 * call it first only to act on an option before any configuration loads
 * (--read-log).  Taking twice is the same as once.  Also names the
 * program in log lines. */
int chat_prog_take_opts(const struct chat_prog *p, int *argc, char **argv);

/* --read-log: verify all of the encrypted log at path (core/src/seclog.c)
 * with the secret before printing anything, then print one line a record on
 * stdout and the count on stderr.  0, or 1 with the error printed. */
int chat_prog_show_log(const struct chat_prog *p, const char *path, size_t secret_len,
                       const char *secret);

/* Parses argv (taking out p->opts first), loads the configuration and the
 * plugins.  Returns -1 when the program should go on running, otherwise the
 * exit status (0 after --help/--version/--check-config/--list-plugins, 1 on
 * a configuration or plugin error, 2 on a usage error); messages are
 * printed. */
int chat_prog_start(struct chat_prog *p, int argc, char **argv);
/* Read the configuration again as chat_prog_start made it (the same file,
 * then the same overrides, which win again) and check it as at start:
 * values, the suites the program uses (loaded now if new), [plugin.NAME]
 * sections against their plugins.  Nothing of p changes: the caller decides
 * what to apply.  CHAT_OK with *out the new configuration (the caller frees
 * it), or an error with err saying what is wrong, e.g. "chat.ini:12: ...". */
int chat_prog_reload(struct chat_prog *p, struct chat_config **out, size_t errlen, char *err);
void chat_prog_finish(struct chat_prog *p);

/* Print "<program>: <message>" to stderr (and log it as an error too when
 * the log goes elsewhere: chat_log_open). */
void chat_prog_error(const struct chat_prog *p, const char *fmt, ...) CHAT_PRINTF(2, 3);

#endif
