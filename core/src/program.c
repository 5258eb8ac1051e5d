#include "program.h"

#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "host.h"
#include "log.h"
#include "installdirs.h"
#include "seclog.h"
#include "text.h"

#ifndef CHAT_VERSION
#define CHAT_VERSION "0"
#endif

enum {
	OPT_LIST = 1000,
	OPT_CHECK,
	OPT_PLUGIN,
	OPT_PROGRAM_BASE = 2000,
};

struct chat_prog_override {
	const char *section, *key; /* NULL section: a --set assignment in value */
	const char *value;
	char origin[48];
};

void chat_prog_error(const struct chat_prog *p, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", p->name, msg);
	/* A relay logging to a file or syslog: its reader looks there. */
	if (!chat_log_to_stderr())
		chat_log(CHAT_LOG_ERROR, "%s", msg);
}

static void usage(const struct chat_prog *p, FILE *f)
{
	fprintf(f, "Usage: %s [OPTION]...\n%s\n\nOptions:\n", p->name, p->summary);
	fprintf(f, "  -c, --config FILE       configuration file (default: $CHAT_CONFIG, else the first\n"
	           "                          of ./chat.ini%s\n"
	           "                          and %s; docs/CONFIG.md)\n"
	           "  -s, --set S.K=VALUE     override key K of section [S] (repeatable),\n"
	           "                          e.g. --set core.log_level=debug, --set plugin.rc4dh.drop=4096\n",
	        strcmp(p->section, "client") ? "" : ", ~/.config/chat/chat.ini",
	        "SYSCONFDIR/chat/chat.ini");
	for (const struct chat_prog_flag *f2 = p->flags; f2 && f2->name; f2++) {
		char left[64];
		if (f2->letter)
			snprintf(left, sizeof(left), "-%c, --%s %s", f2->letter, f2->name, f2->arg_name);
		else
			snprintf(left, sizeof(left), "    --%s %s", f2->name, f2->arg_name);
		fprintf(f, "  %-22s  %s (sets %s.%s)\n", left, f2->help, f2->section, f2->key);
	}
	for (const struct chat_prog_opt *o = p->opts; o && o->name; o++) {
		char left[64];
		snprintf(left, sizeof(left), "    --%s%s%s", o->name, o->arg_name ? " " : "",
		         o->arg_name ? o->arg_name : "");
		/* Too wide for the column: the help starts on the next line. */
		fprintf(f, "  %-22s%s", left, strlen(left) > 22 ? "\n                        " : "");
		const char *h = o->help ? o->help : "";
		do {
			size_t n = strcspn(h, "\n");
			fprintf(f, "  %.*s\n", (int)n, h);
			h += n;
			if (*h && *++h)
				fprintf(f, "%24s", "");
		} while (*h);
	}
	fprintf(f, "      --plugin PATH       also load the plugin at PATH (repeatable)\n"
	           "      --list-plugins      list every plugin found (kind, name, version, ABI, flags)\n"
	           "      --check-config      load and validate configuration and plugins, then exit\n"
	           "  -h, --help              show this help\n"
	           "  -V, --version           show the version\n");
	if (p->usage_tail)
		fprintf(f, "\n%s", p->usage_tail);
}

static void list_error(void *arg, const char *path, int err, const char *msg)
{
	const struct chat_prog *p = arg;

	(void)path;
	(void)err;
	chat_prog_error(p, "%s", msg);
}

static int list_plugins(struct chat_prog *p)
{
	int failures = chat_registry_scan(p->reg, p->plugin_dir, list_error, p);

	if (failures == CHAT_ERR_NOTFOUND) {
		chat_prog_error(p, "plugin directory %s does not exist (core.plugin_dir, %s)",
		                p->plugin_dir, chat_config_where(p->cfg, "core", "plugin_dir"));
		return 1;
	}
	if (failures < 0) {
		chat_prog_error(p, "cannot read plugin directory %s: %s", p->plugin_dir,
		                chat_strerror(failures));
		return 1;
	}
	printf("%-9s  %-14s  %-8s  %-4s  %-38s  %s\n", "KIND", "NAME", "VERSION", "ABI", "FLAGS",
	       "SUMMARY");
	for (size_t i = 0; i < chat_registry_count(p->reg); i++) {
		const struct chat_loaded *l = chat_registry_get(p->reg, i);
		char flags[128], abi[16];
		chat_plugin_flags_text(l->desc->flags, sizeof(flags), flags);
		snprintf(abi, sizeof(abi), "%u.%u", l->desc->abi_major, l->desc->abi_minor);
		printf("%-9s  %-14s  %-8s  %-4s  %-38s  %s\n", chat_plugin_kind_name((int)l->desc->kind),
		       l->desc->name, l->desc->version, abi, flags, l->desc->summary);
		printf("%-9s  %-14s  path: %s\n", "", "", l->path);
	}
	printf("%zu plugin(s) in %s%s\n", chat_registry_count(p->reg), p->plugin_dir,
	       failures ? ", some failed to load (see above)" : "");
	return failures ? 1 : 0;
}

/* Every [plugin.NAME] section of cfg must belong to a plugin we can find
 * (loaded now if it is not yet), and hold what that plugin declares (the
 * loader checks the section of p->cfg; cfg may be a newer one).  0, or 1
 * with err set. */
static int check_plugin_sections(struct chat_prog *p, const struct chat_config *cfg, size_t errlen,
                                 char *err)
{
	for (size_t i = 0; i < chat_config_plugin_sections(cfg); i++) {
		const char *name = chat_config_plugin_section(cfg, i);
		const struct chat_loaded *l = chat_registry_find(p->reg, 0, name);
		int rc = CHAT_OK;
		if (!l) {
			rc = chat_registry_load(p->reg, p->plugin_dir, CHAT_PLUGIN_CIPHER, name, &l,
			                        errlen, err);
			if (rc == CHAT_ERR_NOTFOUND)
				rc = chat_registry_load(p->reg, p->plugin_dir, CHAT_PLUGIN_TRANSPORT, name,
				                        &l, errlen, err);
		}
		if (rc == CHAT_ERR_NOTFOUND) {
			snprintf(err, errlen, "%s: section [plugin.%s]: no plugin named '%s' in %s",
			         chat_config_plugin_section_where(cfg, i), name, name, p->plugin_dir);
			return 1;
		}
		if (rc || (cfg != p->cfg &&
		           chat_config_check_plugin(cfg, name, l->desc->config_keys, errlen, err)))
			return 1;
	}
	return 0;
}

/* The cipher suites this program is configured to use (SECTION.suites, a
 * list, or SECTION.suite, one name) must load too: a typo there is found
 * before any connection, and by --check-config. */
/* SECTION.suites (a list) or SECTION.suite (one name), if the program has
 * either: their names in names, *key which it was; the count. */
static size_t suite_names(const struct chat_prog *p, const struct chat_config *cfg,
                          char names[16][33], const char **key)
{
	size_t n = 0;

	*key = NULL;
	for (const struct chat_cfg_key *k = chat_cfg_schema; k->section; k++) {
		if (strcmp(k->section, p->section))
			continue;
		if (!strcmp(k->key, "suites"))
			*key = "suites";
		else if (!strcmp(k->key, "suite"))
			*key = "suite";
	}
	if (!*key)
		return 0;
	if (!strcmp(*key, "suites"))
		return chat_config_list(cfg, p->section, *key, 16, names);
	const char *one = chat_config_get(cfg, p->section, *key);
	if (one && *one)
		snprintf(names[n++], sizeof(names[0]), "%s", one);
	return n;
}

static int load_suites(struct chat_prog *p, const struct chat_config *cfg, size_t errlen,
                       char *err)
{
	char names[16][33], why[1024];
	const char *key;
	size_t n = suite_names(p, cfg, names, &key);

	for (size_t i = 0; i < n; i++) {
		const struct chat_loaded *s;
		if (chat_registry_load(p->reg, p->plugin_dir, CHAT_PLUGIN_CIPHER, names[i], &s,
		                       sizeof(why), why) != CHAT_OK) {
			snprintf(err, errlen, "%s (%s.%s, %s)", why, p->section, key,
			         chat_config_where(cfg, p->section, key));
			return 1;
		}
		if (s->desc->flags & p->refuse_flags) {
			snprintf(err, errlen, "suite %s %s (%s.%s, %s)", s->desc->name,
			         p->refuse_why ? p->refuse_why : "cannot be used by this program",
			         p->section, key, chat_config_where(cfg, p->section, key));
			return 1;
		}
	}
	return 0;
}

struct trust_pass {
	struct chat_prog *p;
	char seen[64][PATH_MAX];
	size_t nseen;
	int refused;
};

/* Check one plugin file this run would load, if it exists (a missing one
 * is reported by the loader, in its turn). */
static void trust_path(struct trust_pass *tp, const char *path, const char *origin)
{
	char err[4096];

	for (size_t i = 0; i < tp->nseen; i++)
		if (!strcmp(tp->seen[i], path))
			return;
	if (tp->nseen < sizeof(tp->seen) / sizeof(tp->seen[0]))
		snprintf(tp->seen[tp->nseen++], sizeof(tp->seen[0]), "%s", path);
	int rc = chat_plugin_trusted(path, sizeof(err), err);
	if (rc && rc != CHAT_ERR_NOTFOUND) {
		chat_prog_error(tp->p, "%s (%s)", err, origin);
		tp->refused++;
	}
}

/* The same for a plugin named in chat.ini (a name, or a path with '/'). */
static void trust_ref(struct trust_pass *tp, int kind, const char *ref, const char *origin)
{
	char path[PATH_MAX];

	if (ref && *ref &&
	    chat_plugin_file(tp->p->plugin_dir, kind, ref, sizeof(path), path, 0, NULL) == CHAT_OK)
		trust_path(tp, path, origin);
}

/* Before any plugin is loaded (dlopen runs a plugin's constructors), every
 * plugin file this run names is checked for who may have written it
 * (chat_plugin_trusted), and every failure is reported, not just the first.
 * The loader checks each file again before it opens it. */
static int check_plugin_files(struct chat_prog *p, const char **extra, size_t n_extra, int list)
{
	struct trust_pass *tp = calloc(1, sizeof(*tp));
	char names[16][33], origin[600];
	const char *key;

	if (!tp) {
		chat_prog_error(p, "out of memory");
		return 1;
	}
	tp->p = p;
	for (size_t i = 0; i < n_extra; i++)
		trust_path(tp, extra[i], "given with --plugin");
	if (!list) {
		snprintf(origin, sizeof(origin), "%s.transport, %s", p->section,
		         chat_config_where(p->cfg, p->section, "transport"));
		trust_ref(tp, CHAT_PLUGIN_TRANSPORT, chat_config_get(p->cfg, p->section, "transport"),
		          origin);
		for (size_t i = 0; i < chat_config_plugin_sections(p->cfg); i++) {
			const char *name = chat_config_plugin_section(p->cfg, i);
			char path[PATH_MAX];
			int kind = CHAT_PLUGIN_CIPHER;
			if (chat_plugin_file(p->plugin_dir, kind, name, sizeof(path), path, 0, NULL) ||
			    access(path, F_OK) != 0)
				kind = CHAT_PLUGIN_TRANSPORT;
			snprintf(origin, sizeof(origin), "section [plugin.%s], %s", name,
			         chat_config_plugin_section_where(p->cfg, i));
			trust_ref(tp, kind, name, origin);
		}
		size_t n = suite_names(p, p->cfg, names, &key);
		for (size_t i = 0; i < n; i++) {
			snprintf(origin, sizeof(origin), "%s.%s, %s", p->section, key,
			         chat_config_where(p->cfg, p->section, key));
			trust_ref(tp, CHAT_PLUGIN_CIPHER, names[i], origin);
		}
	}
	int refused = tp->refused;
	free(tp);
	if (refused)
		chat_prog_error(p, "%d plugin file(s) refused: nothing was loaded (docs/PLUGIN-ABI.md, "
		                "\"Which plugin files are trusted\")", refused);
	return refused ? 1 : 0;
}

/* SECTION.dead_after must leave room for SECTION.keepalive's PING to be
 * answered, else every quiet link would be cut before it is even asked. */
static int check_keepalive(const struct chat_prog *p, const struct chat_config *cfg, size_t errlen,
                           char *err)
{
	const char *sec = p->section;
	long long ka = chat_config_int(cfg, sec, "keepalive");
	long long dead = chat_config_int(cfg, sec, "dead_after");

	if (!chat_config_get(cfg, sec, "keepalive") || !chat_config_get(cfg, sec, "dead_after"))
		return 0; /* a program without a keepalive */
	if (ka > 0 && dead > 0 && dead <= ka) {
		snprintf(err, errlen, "%s.dead_after (%lld, %s) must be more than %s.keepalive (%lld, "
		         "%s), or 0", sec, dead, chat_config_where(cfg, sec, "dead_after"), sec, ka,
		         chat_config_where(cfg, sec, "keepalive"));
		return 1;
	}
	return 0;
}

/* relay.reserved_slots must leave connections that have not logged in some
 * room, or nobody could ever log in (-1: a tenth, always fine). */
static int check_reserved(const struct chat_prog *p, const struct chat_config *cfg, size_t errlen,
                          char *err)
{
	const char *sec = p->section;

	if (!chat_config_get(cfg, sec, "reserved_slots") || !chat_config_get(cfg, sec, "max_clients"))
		return 0;
	long long res = chat_config_int(cfg, sec, "reserved_slots");
	long long max = chat_config_int(cfg, sec, "max_clients");
	if (res >= max) {
		snprintf(err, errlen, "%s.reserved_slots (%lld, %s) must be less than %s.max_clients "
		         "(%lld, %s): connections that have not logged in yet would have no room at "
		         "all; -1 reserves a tenth", sec, res,
		         chat_config_where(cfg, sec, "reserved_slots"), sec, max,
		         chat_config_where(cfg, sec, "max_clients"));
		return 1;
	}
	return 0;
}

/* What chat_prog_start and chat_prog_reload check once the plugins named
 * are trusted and the transport is loaded.  0, or 1 with err set. */
static int check_loaded(struct chat_prog *p, const struct chat_config *cfg, size_t errlen, char *err)
{
	return check_plugin_sections(p, cfg, errlen, err) || load_suites(p, cfg, errlen, err) ||
	       check_keepalive(p, cfg, errlen, err) || check_reserved(p, cfg, errlen, err);
}

/* The common parser's tables: the common options, then p->flags.  shorts
 * holds every short option, with ':' after those that take a value. */
static void parser_tables(const struct chat_prog *p, struct option opts[64], char shorts[64])
{
	size_t n = 0;

	/* '+': stop at the first argument that is not an option; ':': a
	 * missing value is told apart from an unknown option. */
	snprintf(shorts, 64, "+:c:s:hV");
	opts[n++] = (struct option){ "config", required_argument, NULL, 'c' };
	opts[n++] = (struct option){ "set", required_argument, NULL, 's' };
	opts[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	opts[n++] = (struct option){ "version", no_argument, NULL, 'V' };
	opts[n++] = (struct option){ "list-plugins", no_argument, NULL, OPT_LIST };
	opts[n++] = (struct option){ "check-config", no_argument, NULL, OPT_CHECK };
	opts[n++] = (struct option){ "plugin", required_argument, NULL, OPT_PLUGIN };
	for (int i = 0; p->flags && p->flags[i].name && n < 62; i++) {
		const struct chat_prog_flag *f = &p->flags[i];
		int val = f->letter ? f->letter : OPT_PROGRAM_BASE + i;
		size_t l = strlen(shorts);
		opts[n++] = (struct option){ f->name, required_argument, NULL, val };
		if (f->letter && l + 3 <= 64) {
			shorts[l] = (char)f->letter;
			shorts[l + 1] = ':';
			shorts[l + 2] = '\0';
		}
	}
	opts[n] = (struct option){ NULL, 0, NULL, 0 };
}

/* The option a long argument ("--conf", "--config=x") names, as
 * getopt_long reads it: its whole name, or a prefix of exactly one.  NULL
 * if none (*matches 0) or several (*matches says how many). */
static const struct option *long_option(const struct option *opts, const char *arg, int *matches)
{
	size_t len = strcspn(arg + 2, "=");
	const struct option *hit = NULL;

	*matches = 0;
	if (!len)
		return NULL;
	for (const struct option *o = opts; o->name; o++) {
		if (strncmp(o->name, arg + 2, len))
			continue;
		if (o->name[len] == '\0') {
			*matches = 1;
			return o;
		}
		hit = o;
		++*matches;
	}
	return *matches == 1 ? hit : NULL;
}

/* Does arg, an argument the common parser will see, take the next one as
 * its value?  As getopt_long reads it: --NAME or an unambiguous prefix of
 * NAME, or a cluster of short options whose last one takes a value. */
static int takes_next(const struct option *opts, const char *shorts, const char *arg)
{
	if (arg[0] != '-' || !arg[1])
		return 0;
	if (arg[1] == '-') {
		int matches;
		const struct option *o = long_option(opts, arg, &matches);
		return o && !strchr(arg, '=') && o->has_arg == required_argument;
	}
	for (const char *c = arg + 1; *c; c++) {
		const char *s = *c == ':' ? NULL : strchr(shorts + 2, *c);
		if (!s)
			return 0; /* unknown: the common parser says so */
		if (s[1] == ':')
			return c[1] == '\0'; /* else the value is the rest of arg */
	}
	return 0;
}

static int take_error(const struct chat_prog *p, const char *name, const char *what)
{
	chat_prog_error(p, "option --%s %s", name, what);
	fprintf(stderr, "Try '%s --help'.\n", p->name);
	return 2;
}

/* What getopt_long objected to, said in words: "option --connect needs a
 * value", "option -C needs a value", "unknown option --bogus", "option --c
 * is ambiguous (--config, --check-config, --connect)", "option --help takes
 * no value".  c is what it returned ('?' or ':'), arg the argument it was
 * at (argv[optind - 1]). */
static void usage_error(const struct chat_prog *p, const struct option *opts, const char *shorts,
                        int c, const char *arg)
{
	int matches;
	/* Short options are reported by optopt: a cluster ("-Vx") may not have
	 * moved optind past arg yet.  An unknown one is never in shorts. */
	int is_short = c == ':' ? strncmp(arg, "--", 2) != 0
	                        : optopt > 0 && optopt < 256 && !strchr(shorts + 2, optopt);

	if (is_short) {
		if (c == ':')
			chat_prog_error(p, "option -%c needs a value", optopt);
		else
			chat_prog_error(p, "unknown option -%c", optopt);
	} else {
		const struct option *o = long_option(opts, arg, &matches);
		int len = (int)strcspn(arg, "=");
		if (o && c == ':')
			chat_prog_error(p, "option --%s needs a value", o->name);
		else if (o && strchr(arg, '='))
			chat_prog_error(p, "option --%s takes no value", o->name);
		else if (matches > 1) {
			char list[512] = "";
			size_t used = 0;
			for (const struct option *x = opts; x->name && used < sizeof(list); x++)
				if (!strncmp(x->name, arg + 2, (size_t)len - 2))
					used += (size_t)snprintf(list + used, sizeof(list) - used, "%s--%s",
					                         used ? ", " : "", x->name);
			chat_prog_error(p, "option %.*s is ambiguous (%s)", len, arg, list);
		} else
			chat_prog_error(p, "unknown option %.*s", len, arg);
	}
	fprintf(stderr, "Try '%s --help'.\n", p->name);
}

int chat_prog_take_opts(const struct chat_prog *p, int *argc, char **argv)
{
	struct option opts[64];
	char shorts[64];
	int i, n = 1;

	chat_log_set_program(p->name);
	parser_tables(p, opts, shorts);
	for (i = 1; i < *argc && strcmp(argv[i], "--"); i++) {
		const struct chat_prog_opt *o = NULL;
		const char *arg = argv[i], *eq = NULL;
		if (!strncmp(arg, "--", 2)) {
			eq = strchr(arg + 2, '=');
			size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
			for (o = p->opts; o && o->name; o++)
				if (!strncmp(o->name, arg + 2, len) && o->name[len] == '\0')
					break;
		}
		if (!o || !o->name) {
			argv[n++] = argv[i];
			/* The value of another option is never one of ours. */
			if (takes_next(opts, shorts, arg) && i + 1 < *argc)
				argv[n++] = argv[++i];
			continue;
		}
		if (!o->arg_name) {
			if (eq)
				return take_error(p, o->name, "takes no value");
			*o->set = 1;
			continue;
		}
		const char *value = eq ? eq + 1 : NULL;
		if (!value) {
			if (i + 1 >= *argc)
				return take_error(p, o->name, "needs a value");
			value = argv[++i];
		}
		if (!*value && (o->flags & CHAT_PROG_OPT_FILE))
			return take_error(p, o->name, "needs a file name");
		*o->value = value;
		if (o->set)
			*o->set = 1;
	}
	while (i < *argc)
		argv[n++] = argv[i++];
	argv[n] = NULL;
	*argc = n;
	return 0;
}

/* The configuration: the file given with --config, else the search path
 * (core/src/installdirs.c).  A file named explicitly (--config, $CHAT_CONFIG)
 * must exist; otherwise the first place that has one is used, and when none
 * has, the message lists every place looked at. */
static int load_config(struct chat_prog *p, const char *given, size_t errlen, char *err)
{
	struct chat_config_places pl;
	int explicit_file;
	size_t off;

	if (given)
		return chat_config_load(given, &p->cfg, errlen, err);
	chat_paths_config_places(!strcmp(p->section, "client"), &pl, &explicit_file);
	if (explicit_file) {
		int rc = chat_config_load(pl.path[0], &p->cfg, errlen, err);
		size_t n = strlen(err);
		if (rc && n < errlen)
			snprintf(err + n, errlen - n, " (from $CHAT_CONFIG)");
		return rc;
	}
	for (size_t i = 0; i < pl.n; i++)
		if (access(pl.path[i], F_OK) == 0)
			return chat_config_load(pl.path[i], &p->cfg, errlen, err);
	off = (size_t)snprintf(err, errlen, "no configuration file found; looked for:");
	for (size_t i = 0; i < pl.n && off < errlen; i++)
		off += (size_t)snprintf(err + off, errlen - off, "\n  %s (%s)", pl.path[i], pl.why[i]);
	if (off < errlen)
		snprintf(err + off, errlen - off, "\ngive one with --config FILE or $CHAT_CONFIG "
		         "(docs/CONFIG.md, \"Where the file is found\")");
	return CHAT_ERR_CONFIG;
}

/* core.plugin_dir when chat.ini does not set it: found next to the running
 * program (core/src/installdirs.c), so an installed tree can be moved. */
static int default_plugin_dir(struct chat_config *cfg, size_t errlen, char *err)
{
	char dir[4096];

	if (strcmp(chat_config_where(cfg, "core", "plugin_dir"), "default"))
		return 0;
	chat_paths_default_plugin_dir(sizeof(dir), dir);
	return chat_config_override(cfg, "core", "plugin_dir", dir, "default", errlen, err);
}

/* host->state_dir for the plugins: relay.state_dir (else the directory of
 * relay.database or of relay.store = sqlite:PATH; none on PostgreSQL),
 * client.data_dir, peer.data_dir. */
static int set_state_dir(struct chat_prog *p)
{
	const char *key = strcmp(p->section, "relay") == 0 ? "state_dir" : "data_dir";
	const char *dir = chat_config_path(p->cfg, p->section, key);
	char buf[4096];

	if ((!dir || !*dir) && strcmp(p->section, "relay") == 0) {
		const char *db = chat_config_path(p->cfg, "relay", "database");
		const char *store = chat_config_get(p->cfg, "relay", "store");
		char spath[4096];
		if ((!db || !*db) && store && strncmp(store, "sqlite:", 7) == 0) {
			chat_config_resolve(p->cfg, "relay", "store", store + 7, sizeof(spath), spath);
			db = spath;
		}
		const char *slash = db ? strrchr(db, '/') : NULL;
		if (db && *db) {
			if (!slash)
				snprintf(buf, sizeof(buf), ".");
			else
				snprintf(buf, sizeof(buf), "%.*s", (int)(slash == db ? 1 : slash - db), db);
			dir = buf;
		}
	}
	if (chat_registry_set_state_dir(p->reg, dir && *dir ? dir : NULL) != CHAT_OK) {
		chat_prog_error(p, "out of memory");
		return 1;
	}
	return 0;
}

int chat_prog_start(struct chat_prog *p, int argc, char **argv)
{
	struct option opts[64];
	char shorts[64];
	const char *config_path = NULL;
	struct chat_prog_override *ovr = calloc((size_t)argc + 1, sizeof(*ovr));
	const char **extra = calloc((size_t)argc + 1, sizeof(*extra));
	size_t n_ovr = 0, n_extra = 0;
	int list = 0, check = 0, status = -1;
	char err[1024];

	p->cfg = NULL;
	p->reg = NULL;
	p->transport = NULL;
	p->config_path = NULL;
	p->overrides = ovr;
	p->n_overrides = 0;
	chat_log_set_program(p->name);
	if (!ovr || !extra) {
		chat_prog_error(p, "out of memory");
		status = 1;
		goto out;
	}
	/* Again if the program took them already: nothing is left to take. */
	if (chat_prog_take_opts(p, &argc, argv)) {
		status = 2;
		goto out;
	}

	parser_tables(p, opts, shorts);
	opterr = 0;
	optind = 0; /* 0, not 1: also forgets a cluster an earlier scan stopped in (glibc) */
	for (;;) {
		int c = getopt_long(argc, argv, shorts, opts, NULL);
		if (c == -1)
			break;
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 's':
			ovr[n_ovr].value = optarg;
			snprintf(ovr[n_ovr].origin, sizeof(ovr[n_ovr].origin), "--set");
			n_ovr++;
			break;
		case 'h':
			usage(p, stdout);
			status = 0;
			goto out;
		case 'V':
			printf("%s %s (plugin ABI %d.%d)\n", p->name, CHAT_VERSION, CHAT_ABI_MAJOR,
			       CHAT_ABI_MINOR);
			status = 0;
			goto out;
		case OPT_LIST:
			list = 1;
			break;
		case OPT_CHECK:
			check = 1;
			break;
		case OPT_PLUGIN:
			extra[n_extra++] = optarg;
			break;
		case '?':
		case ':':
			usage_error(p, opts, shorts, c, argv[optind - 1]);
			status = 2;
			goto out;
		default: {
			const struct chat_prog_flag *f = NULL;
			for (int i = 0; p->flags && p->flags[i].name; i++)
				if ((p->flags[i].letter && p->flags[i].letter == c) ||
				    OPT_PROGRAM_BASE + i == c)
					f = &p->flags[i];
			if (!f) {
				status = 2;
				goto out;
			}
			ovr[n_ovr].section = f->section;
			ovr[n_ovr].key = f->key;
			ovr[n_ovr].value = optarg;
			snprintf(ovr[n_ovr].origin, sizeof(ovr[n_ovr].origin), "--%s", f->name);
			n_ovr++;
		}
		}
	}
	if (optind < argc) {
		chat_prog_error(p, "unexpected argument '%s'", argv[optind]);
		fprintf(stderr, "Try '%s --help'.\n", p->name);
		status = 2;
		goto out;
	}

	p->n_overrides = n_ovr;
	if (load_config(p, config_path, sizeof(err), err) != CHAT_OK) {
		chat_prog_error(p, "%s", err);
		status = 1;
		goto out;
	}
	for (size_t i = 0; i < n_ovr; i++) {
		int rc = ovr[i].section
			? chat_config_override(p->cfg, ovr[i].section, ovr[i].key, ovr[i].value,
			                       ovr[i].origin, sizeof(err), err)
			: chat_config_set(p->cfg, ovr[i].value, sizeof(err), err);
		if (rc) {
			chat_prog_error(p, "%s", err);
			status = 2;
			goto out;
		}
	}
	/* The file found (--config, $CHAT_CONFIG or the search path): read
	 * again by chat_prog_reload. */
	p->config_path = chat_config_file(p->cfg);
	if (default_plugin_dir(p->cfg, sizeof(err), err)) {
		chat_prog_error(p, "%s", err);
		status = 1;
		goto out;
	}
	chat_log_set_level(chat_log_parse_level(chat_config_get(p->cfg, "core", "log_level")));
	p->plugin_dir = chat_config_path(p->cfg, "core", "plugin_dir");
	p->max_frame = (size_t)chat_config_int(p->cfg, "core", "max_frame");

	if (chat_registry_new(p->cfg, &p->reg) != CHAT_OK) {
		chat_prog_error(p, "out of memory");
		status = 1;
		goto out;
	}
	if (set_state_dir(p)) {
		status = 1;
		goto out;
	}
	if (check_plugin_files(p, extra, n_extra, list)) {
		status = 1;
		goto out;
	}
	for (size_t i = 0; i < n_extra; i++) {
		if (chat_registry_load_path(p->reg, extra[i], 0, NULL, sizeof(err), err) != CHAT_OK) {
			chat_prog_error(p, "%s (given with --plugin)", err);
			status = 1;
			goto out;
		}
	}
	if (list) {
		status = list_plugins(p);
		goto out;
	}

	const char *tname = chat_config_get(p->cfg, p->section, "transport");
	if (chat_registry_load(p->reg, p->plugin_dir, CHAT_PLUGIN_TRANSPORT, tname, &p->transport,
	                       sizeof(err), err) != CHAT_OK) {
		chat_prog_error(p, "%s (%s.transport, %s)", err, p->section,
		                chat_config_where(p->cfg, p->section, "transport"));
		status = 1;
		goto out;
	}
	if (check_loaded(p, p->cfg, sizeof(err), err)) {
		chat_prog_error(p, "%s", err);
		status = 1;
		goto out;
	}
	if (check && p->check_config && (status = p->check_config(p)) != 0)
		goto out;
	if (check) {
		printf("%s: configuration OK: %s; transport '%s' %s from %s; %zu plugin(s) loaded\n",
		       p->name, chat_config_file(p->cfg), p->transport->desc->name,
		       p->transport->desc->version, p->transport->path, chat_registry_count(p->reg));
		status = 0;
		goto out;
	}
out:
	free(extra);
	return status;
}

int chat_prog_reload(struct chat_prog *p, struct chat_config **out, size_t errlen, char *err)
{
	struct chat_config *cfg = NULL;
	int rc;

	*out = NULL;
	if ((rc = chat_config_load(p->config_path, &cfg, errlen, err)) != CHAT_OK)
		return rc;
	for (size_t i = 0; i < p->n_overrides; i++) {
		const struct chat_prog_override *o = &p->overrides[i];
		rc = o->section ? chat_config_override(cfg, o->section, o->key, o->value, o->origin,
		                                       errlen, err)
		                : chat_config_set(cfg, o->value, errlen, err);
		if (rc)
			goto out;
	}
	if ((rc = default_plugin_dir(cfg, errlen, err)) != CHAT_OK)
		goto out;
	if (check_loaded(p, cfg, errlen, err))
		rc = CHAT_ERR_CONFIG;
out:
	if (rc) {
		chat_config_free(cfg);
		return rc;
	}
	*out = cfg;
	return CHAT_OK;
}

static int print_record(void *arg, const struct chat_seclog_record *r)
{
	size_t cap = 4 * r->text_len + 1;
	char *text = malloc(cap), when[64], peer[4 * CHAT_SECLOG_PEER_MAX + 1];
	time_t secs = (time_t)(r->time_ms / 1000);
	struct tm tm;

	(void)arg;
	if (!text)
		return CHAT_ERR_NOMEM;
	chat_text_escape(r->text_len, r->text, cap, text);
	chat_text_escape(strlen(r->peer), r->peer, sizeof(peer), peer);
	gmtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	printf("record %llu %s.%03dZ %s %s %s\n", (unsigned long long)r->seq, when,
	       (int)(r->time_ms % 1000 + 1000) % 1000,
	       r->direction == CHAT_SECLOG_SENT ? "sent" : "received", peer, text);
	chat_wipe(text, cap);
	free(text);
	return 0;
}

int chat_prog_show_log(const struct chat_prog *p, const char *path, size_t secret_len,
                       const char *secret)
{
	char err[1024];
	uint64_t count = 0;
	int rc = chat_seclog_read(path, secret_len, secret, print_record, NULL, &count, NULL,
	                          sizeof(err), err);

	fflush(stdout);
	if (rc) {
		chat_prog_error(p, "%s", err);
		return 1;
	}
	fprintf(stderr, "%s: %s: %llu record(s), all verified\n", p->name, path,
	        (unsigned long long)count);
	return 0;
}

void chat_prog_finish(struct chat_prog *p)
{
	chat_registry_free(p->reg);
	chat_config_free(p->cfg);
	free(p->overrides);
	p->reg = NULL;
	p->cfg = NULL;
	p->overrides = NULL;
	p->n_overrides = 0;
}
