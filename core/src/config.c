/* chat.ini: one pass of inih over the file through our own line reader, so
 * every error names its line, into per-section value lists that the getters,
 * command-line overrides and plugin checks all share. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <ini.h>

/* Hard caps keep lookups (linear scans) cheap on hostile input; real files
 * have a handful of sections with a handful of keys each. */
#define CFG_MAX_SECTIONS 4096
#define CFG_MAX_KEYS 256 /* per section */
#define CFG_NAME_MAX 32
#define CFG_PLUGIN_PREFIX "plugin."
#define CFG_PLUGIN_PREFIX_LEN (sizeof(CFG_PLUGIN_PREFIX) - 1)
#define CFG_SYNTAX "syntax error: expected 'key = value' or '[section]'"

struct chat_cfg_value {
	char *key, *value;
	char *where;    /* chat_config_where(): "chat.ini:12", "--set", "--listen" */
	char *loc;      /* error prefix when it says more than where ("--set a.b=1") */
	int line;       /* line in the file; 0 for overrides */
	char *resolved; /* chat_config_path() cache */
};

struct chat_cfg_section {
	char *name;  /* "relay", "plugin.rc4dh" */
	char *where; /* first header ("chat.ini:30") or the override that made it */
	struct chat_cfg_value *vals;
	size_t n, cap;
};

struct chat_config {
	char *file; /* as given to chat_config_load(); NULL without a file */
	char *dir;  /* base of relative paths; NULL: the current directory */
	struct chat_cfg_section *secs;
	size_t n, cap;
};

struct cfg_parse {
	struct chat_config *cfg;
	FILE *fp;
	const char *path;
	int line;       /* lines handed to inih, which counts the same way */
	int err_line;   /* line of the first error we found; 0: none */
	int rc;
	int read_errno;
	size_t cur;     /* index of the current section; SIZE_MAX before one */
	size_t errlen;
	char *err;
};

/* Messages quote file contents; keep control bytes off the user's terminal. */
static void cfg_sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

__attribute__((format(printf, 3, 4)))
static void cfg_err(size_t errlen, char *err, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	cfg_sanitize(err);
}

__attribute__((format(printf, 3, 4)))
static void cfg_err_append(size_t errlen, char *err, const char *fmt, ...)
{
	va_list ap;
	size_t used;

	if (!err || !errlen)
		return;
	used = strnlen(err, errlen);
	if (used + 1 >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + used, errlen - used, fmt, ap);
	va_end(ap);
	cfg_sanitize(err + used);
}

__attribute__((format(printf, 1, 2)))
static char *cfg_printf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (!s)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

static int cfg_is_plugin_section(const char *section)
{
	return strncmp(section, CFG_PLUGIN_PREFIX, CFG_PLUGIN_PREFIX_LEN) == 0;
}

/* [a-z0-9-]{1,32}: plugin names and CHAT_CFG_NAME values. */
static int cfg_name_ok(const char *s)
{
	size_t n = 0;

	for (; *s; s++, n++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
			return 0;
	return n >= 1 && n <= CFG_NAME_MAX;
}

static const struct chat_cfg_key *cfg_schema_find(const char *section, const char *key)
{
	for (const struct chat_cfg_key *k = chat_cfg_schema; k->section; k++)
		if (!strcmp(k->section, section) && !strcmp(k->key, key))
			return k;
	return NULL;
}

static int cfg_schema_has_section(const char *section)
{
	for (const struct chat_cfg_key *k = chat_cfg_schema; k->section; k++)
		if (!strcmp(k->section, section))
			return 1;
	return 0;
}

/* 0, -1 if s is not "-?[0-9]+", -2 if it does not fit a long long.  strtoll
 * alone would accept blanks, '+' and trailing junk. */
static int cfg_parse_ll(const char *s, long long *v)
{
	const char *p = s;

	if (*p == '-')
		p++;
	if (*p < '0' || *p > '9')
		return -1;
	while (*p >= '0' && *p <= '9')
		p++;
	if (*p)
		return -1;
	errno = 0;
	*v = strtoll(s, NULL, 10);
	return errno == ERANGE ? -2 : 0;
}

/* 1, 0, or -1 if s is not a boolean. */
static int cfg_parse_bool(const char *s)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(s, yes[i]))
			return 1;
		if (!strcasecmp(s, no[i]))
			return 0;
	}
	return -1;
}

/* Hosts go to the resolver and into log lines: no blanks, no control bytes. */
static int cfg_host_char(char c)
{
	return (unsigned char)c > 0x20 && c != 0x7f;
}

/* 0; -1 if s is not host:port or [v6]:port; -2 if the port is over 65535. */
static int cfg_check_address(const char *s, const char **port)
{
	const char *p, *colon;
	unsigned long v = 0;

	if (*s == '[') {
		const char *close = strchr(s + 1, ']');

		if (!close || close == s + 1 || close[1] != ':')
			return -1;
		for (p = s + 1; p < close; p++)
			if (!cfg_host_char(*p) || *p == '[')
				return -1;
		colon = close + 1;
	} else {
		colon = strchr(s, ':');
		if (!colon || colon == s)
			return -1;
		for (p = s; p < colon; p++)
			if (!cfg_host_char(*p) || *p == '[' || *p == ']')
				return -1;
	}
	*port = colon + 1;
	if (!**port)
		return -1;
	for (p = *port; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		if (v <= 65535)
			v = v * 10 + (unsigned long)(*p - '0');
	}
	return v > 65535 ? -2 : 0;
}

/* Walks a comma-separated value: each item trimmed of blanks. */
struct items {
	const char *p;
	int done;
};

/* The next item (maybe empty): 1 with its start and length, 0 at the end. */
static int next_item(struct items *it, const char **start, size_t *len)
{
	const char *end;

	if (it->done)
		return 0;
	while (*it->p == ' ' || *it->p == '\t')
		it->p++;
	*start = it->p;
	while (*it->p && *it->p != ',')
		it->p++;
	end = it->p;
	while (end > *start && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*len = (size_t)(end - *start);
	if (*it->p)
		it->p++; /* the comma */
	else
		it->done = 1;
	return 1;
}

/* Split "a, b,c" into names; *bad is set if an item is empty or not
 * [a-z0-9-]{1,32}.  Returns how many items there were (stores at most max). */
static size_t list_split(const char *value, size_t max, char (*names)[33], int *bad)
{
	struct items it = { value, 0 };
	const char *start;
	size_t n = 0, len;

	*bad = 0;
	while (*it.p == ' ' || *it.p == '\t')
		it.p++;
	if (!*it.p)
		return 0; /* blank: no names */
	while (next_item(&it, &start, &len)) {
		if (len == 0 || len > 32)
			*bad = 1;
		for (size_t i = 0; i < len; i++)
			if (!((start[i] >= 'a' && start[i] <= 'z') || (start[i] >= '0' && start[i] <= '9') ||
			      start[i] == '-'))
				*bad = 1;
		if (n < max && !*bad) {
			memcpy(names[n], start, len);
			names[n][len] = '\0';
		}
		n++;
	}
	return n;
}

/* Split "a:1, [::1]:2" into addresses; *bad if one is empty or too long.
 * Returns how many items there were (stores at most max). */
static size_t addr_split(const char *value, size_t max, char (*addrs)[CHAT_CFG_ADDR_LEN], int *bad)
{
	struct items it = { value, 0 };
	const char *start;
	size_t n = 0, len;

	*bad = 0;
	while (next_item(&it, &start, &len)) {
		if (len == 0 || len >= CHAT_CFG_ADDR_LEN) {
			*bad = 1;
		} else if (n < max) {
			memcpy(addrs[n], start, len);
			addrs[n][len] = '\0';
		}
		n++;
	}
	return n;
}

size_t chat_config_addresses(const struct chat_config *cfg, const char *section, const char *key,
                             size_t max, char (*addrs)[CHAT_CFG_ADDR_LEN])
{
	const char *v = chat_config_get(cfg, section, key);
	int bad;
	size_t n;

	if (!v)
		return 0;
	n = addr_split(v, max, addrs, &bad);
	return bad ? 0 : (n < max ? n : max);
}

size_t chat_config_list(const struct chat_config *cfg, const char *section, const char *key,
                        size_t max, char (*names)[33])
{
	const char *v = chat_config_get(cfg, section, key);
	int bad;
	size_t n;

	if (!v)
		return 0;
	n = list_split(v, max, names, &bad);
	return bad ? 0 : (n < max ? n : max);
}

/* Check value against a CHAT_CFG_* type; on failure err says
 * "LOC: SECTION.KEY: why". */
static int cfg_check(int type, long long min, long long max, const char *choices,
                     const char *loc, const char *section, const char *key, const char *value,
                     size_t errlen, char *err)
{
	static const char *const levels[] = { "error", "warn", "info", "debug" };
	const char *port;
	long long v;
	int r;

	if (!*value && type != CHAT_CFG_STRING && type != CHAT_CFG_PATH && type != CHAT_CFG_LIST) {
		cfg_err(errlen, err, "%s: %s.%s: empty value (only strings and paths may be empty)",
		        loc, section, key);
		return CHAT_ERR_CONFIG;
	}
	switch (type) {
	case CHAT_CFG_STRING:
	case CHAT_CFG_PATH:
		return 0;
	case CHAT_CFG_LIST: {
		char names[17][33];
		size_t n = list_split(value, 17, names, &r);
		if (r) {
			cfg_err(errlen, err, "%s: %s.%s: '%s' is not a comma-separated list of suite names "
			        "(each 1 to 32 of a-z, 0-9 and '-')", loc, section, key, value);
			return CHAT_ERR_CONFIG;
		}
		if (n > 16) {
			cfg_err(errlen, err, "%s: %s.%s: more than 16 names listed", loc, section, key);
			return CHAT_ERR_CONFIG;
		}
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < i; j++)
				if (!strcmp(names[i], names[j])) {
					cfg_err(errlen, err, "%s: %s.%s: '%s' is listed twice", loc, section,
					        key, names[i]);
					return CHAT_ERR_CONFIG;
				}
		return 0;
	}
	case CHAT_CFG_INT:
		r = cfg_parse_ll(value, &v);
		if (r == -1) {
			cfg_err(errlen, err, "%s: %s.%s: '%s' is not a number", loc, section, key, value);
			return CHAT_ERR_CONFIG;
		}
		if (r == -2 || v < min || v > max) {
			cfg_err(errlen, err, "%s: %s.%s: %s is out of range %lld..%lld",
			        loc, section, key, value, min, max);
			return CHAT_ERR_CONFIG;
		}
		return 0;
	case CHAT_CFG_BOOL:
		if (cfg_parse_bool(value) < 0) {
			cfg_err(errlen, err, "%s: %s.%s: '%s' is not a boolean "
			        "(true/false, yes/no, on/off, 1/0)", loc, section, key, value);
			return CHAT_ERR_CONFIG;
		}
		return 0;
	case CHAT_CFG_ADDRESSES: {
		char addrs[CHAT_CFG_ADDRS_MAX][CHAT_CFG_ADDR_LEN];
		size_t n = addr_split(value, CHAT_CFG_ADDRS_MAX, addrs, &r);
		if (r) {
			cfg_err(errlen, err, "%s: %s.%s: '%s' is not a comma-separated list of addresses "
			        "(host:port or [v6]:port)", loc, section, key, value);
			return CHAT_ERR_CONFIG;
		}
		if (n > CHAT_CFG_ADDRS_MAX) {
			cfg_err(errlen, err, "%s: %s.%s: more than %d addresses listed", loc, section, key,
			        CHAT_CFG_ADDRS_MAX);
			return CHAT_ERR_CONFIG;
		}
		for (size_t i = 0; i < n; i++) {
			r = cfg_check_address(addrs[i], &port);
			if (r == -1) {
				cfg_err(errlen, err, "%s: %s.%s: '%s' is not an address of the form "
				        "host:port or [v6]:port", loc, section, key, addrs[i]);
				return CHAT_ERR_CONFIG;
			}
			if (r == -2) {
				cfg_err(errlen, err, "%s: %s.%s: port %s is out of range 0..65535",
				        loc, section, key, port);
				return CHAT_ERR_CONFIG;
			}
		}
		return 0;
	}
	case CHAT_CFG_ADDRESS:
		r = cfg_check_address(value, &port);
		if (r == -1) {
			cfg_err(errlen, err, "%s: %s.%s: '%s' is not an address of the form "
			        "host:port or [v6]:port", loc, section, key, value);
			return CHAT_ERR_CONFIG;
		}
		if (r == -2) {
			cfg_err(errlen, err, "%s: %s.%s: port %s is out of range 0..65535",
			        loc, section, key, port);
			return CHAT_ERR_CONFIG;
		}
		return 0;
	case CHAT_CFG_NAME:
		/* A plugin is named (resolved in plugin_dir) or given by path. */
		if (!cfg_name_ok(value) && !strchr(value, '/')) {
			cfg_err(errlen, err, "%s: %s.%s: '%s' is not a valid plugin name "
			        "(1 to %d of a-z, 0-9 and '-') or a path containing '/'", loc, section,
			        key, value, CFG_NAME_MAX);
			return CHAT_ERR_CONFIG;
		}
		return 0;
	case CHAT_CFG_CHOICE: {
		size_t n = strlen(value);
		for (const char *w = choices; w && *w;) {
			size_t len = strcspn(w, "|");
			if (n && len == n && !memcmp(w, value, n))
				return 0;
			w += len + (w[len] == '|');
		}
		char list[128];
		snprintf(list, sizeof(list), "%s", choices ? choices : "");
		for (char *p = list; *p; p++)
			if (*p == '|')
				*p = ',';
		cfg_err(errlen, err, "%s: %s.%s: '%s' is not one of %s", loc, section, key, value, list);
		return CHAT_ERR_CONFIG;
	}
	case CHAT_CFG_LEVEL:
		for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
			if (!strcmp(value, levels[i]))
				return 0;
		cfg_err(errlen, err, "%s: %s.%s: '%s' is not one of error, warn, info, debug",
		        loc, section, key, value);
		return CHAT_ERR_CONFIG;
	}
	cfg_err(errlen, err, "%s: %s.%s: unknown value type %d", loc, section, key, type);
	return CHAT_ERR_CONFIG;
}

static void cfg_unknown_core_key(const char *loc, const char *section, const char *key,
                                 size_t errlen, char *err)
{
	const char *sep = "";

	cfg_err(errlen, err, "%s: unknown key '%s' in section [%s] (known keys: ", loc, key, section);
	for (const struct chat_cfg_key *k = chat_cfg_schema; k->section; k++) {
		if (strcmp(k->section, section))
			continue;
		cfg_err_append(errlen, err, "%s%s", sep, k->key);
		sep = ", ";
	}
	cfg_err_append(errlen, err, ")");
}

/* Whether [name] may appear at all: a core section or plugin.NAME. */
static int cfg_section_ok(const char *loc, const char *name, size_t errlen, char *err)
{
	const char *prev = NULL;

	if (cfg_is_plugin_section(name)) {
		if (cfg_name_ok(name + CFG_PLUGIN_PREFIX_LEN))
			return 0;
		cfg_err(errlen, err, "%s: invalid plugin name '%s' in section [%s] "
		        "(1 to %d of a-z, 0-9 and '-')", loc, name + CFG_PLUGIN_PREFIX_LEN, name,
		        CFG_NAME_MAX);
		return CHAT_ERR_CONFIG;
	}
	if (cfg_schema_has_section(name))
		return 0;
	cfg_err(errlen, err, "%s: unknown section [%s] (known sections: ", loc, name);
	for (const struct chat_cfg_key *k = chat_cfg_schema; k->section; k++) {
		if (prev && !strcmp(prev, k->section))
			continue;
		cfg_err_append(errlen, err, "%s, ", k->section);
		prev = k->section;
	}
	cfg_err_append(errlen, err, "plugin.NAME)");
	return CHAT_ERR_CONFIG;
}

static struct chat_cfg_section *cfg_section_find(const struct chat_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n; i++)
		if (!strcmp(cfg->secs[i].name, name))
			return &cfg->secs[i];
	return NULL;
}

/* Find [name] or append it with where as its origin; *idx is its index. */
static int cfg_section_get(struct chat_config *cfg, const char *name, const char *where,
                           const char *loc, size_t *idx, size_t errlen, char *err)
{
	struct chat_cfg_section *sec = cfg_section_find(cfg, name);
	char *n = NULL, *w = NULL;
	int rc = CHAT_ERR_NOMEM;

	if (sec) {
		*idx = (size_t)(sec - cfg->secs);
		return 0;
	}
	if (cfg->n >= CFG_MAX_SECTIONS) {
		cfg_err(errlen, err, "%s: too many sections (at most %d)", loc, CFG_MAX_SECTIONS);
		return CHAT_ERR_CONFIG;
	}
	if (cfg->n == cfg->cap) {
		size_t cap = cfg->cap ? cfg->cap * 2 : 8;
		struct chat_cfg_section *secs = realloc(cfg->secs, cap * sizeof(*secs));

		if (!secs)
			goto out;
		cfg->secs = secs;
		cfg->cap = cap;
	}
	n = strdup(name);
	w = strdup(where);
	if (!n || !w)
		goto out;
	sec = &cfg->secs[cfg->n];
	memset(sec, 0, sizeof(*sec));
	sec->name = n;
	sec->where = w;
	*idx = cfg->n++;
	n = w = NULL;
	rc = 0;
out:
	if (rc == CHAT_ERR_NOMEM)
		cfg_err(errlen, err, "%s: out of memory", loc);
	free(n);
	free(w);
	return rc;
}

static struct chat_cfg_value *cfg_value_find(const struct chat_cfg_section *sec, const char *key)
{
	for (size_t i = 0; i < sec->n; i++)
		if (!strcmp(sec->vals[i].key, key))
			return &sec->vals[i];
	return NULL;
}

static struct chat_cfg_value *cfg_lookup(const struct chat_config *cfg, const char *section,
                                         const char *key)
{
	const struct chat_cfg_section *sec;

	if (!cfg || !section || !key)
		return NULL;
	sec = cfg_section_find(cfg, section);
	return sec ? cfg_value_find(sec, key) : NULL;
}

/* Set key in sec, replacing an earlier value; nothing changes on failure.
 * loc may be NULL when it would equal where. */
static int cfg_value_put(struct chat_cfg_section *sec, const char *key, const char *value,
                         const char *where, const char *loc, int line, size_t errlen, char *err)
{
	struct chat_cfg_value *v = cfg_value_find(sec, key);
	struct chat_cfg_value nv = { .line = line };
	int rc = CHAT_ERR_NOMEM;

	if (!v && sec->n >= CFG_MAX_KEYS) {
		cfg_err(errlen, err, "%s: too many keys in section [%s] (at most %d)",
		        loc ? loc : where, sec->name, CFG_MAX_KEYS);
		return CHAT_ERR_CONFIG;
	}
	if (!v && sec->n == sec->cap) {
		size_t cap = sec->cap ? sec->cap * 2 : 8;
		struct chat_cfg_value *vals = realloc(sec->vals, cap * sizeof(*vals));

		if (!vals)
			goto out;
		sec->vals = vals;
		sec->cap = cap;
	}
	nv.key = strdup(key);
	nv.value = strdup(value);
	nv.where = strdup(where);
	nv.loc = loc ? strdup(loc) : NULL;
	if (!nv.key || !nv.value || !nv.where || (loc && !nv.loc))
		goto out;
	if (v) {
		free(v->key);
		free(v->value);
		free(v->where);
		free(v->loc);
		free(v->resolved);
	} else {
		v = &sec->vals[sec->n++];
	}
	*v = nv;
	memset(&nv, 0, sizeof(nv));
	rc = 0;
out:
	if (rc == CHAT_ERR_NOMEM)
		cfg_err(errlen, err, "%s: out of memory", loc ? loc : where);
	free(nv.key);
	free(nv.value);
	free(nv.where);
	free(nv.loc);
	return rc;
}

__attribute__((format(printf, 2, 3)))
static void cfg_parse_fail(struct cfg_parse *p, const char *fmt, ...)
{
	va_list ap;

	if (p->err_line)
		return;
	p->err_line = p->line;
	p->rc = CHAT_ERR_CONFIG;
	if (!p->err || !p->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(p->err, p->errlen, fmt, ap);
	va_end(ap);
	cfg_sanitize(p->err);
}

/* A "[section]" line.  The scan is inih's (']' ends the name, " ;" starts a
 * comment) so both agree on the name; unlike inih we refuse text after ']',
 * and we check the name here so an empty unknown section is caught too. */
static int cfg_header(struct cfg_parse *p, const char *line)
{
	char name[256], *where = NULL;
	const char *end, *rest;
	int was_space = 0;
	size_t idx;
	int rc;

	for (end = line + 1; *end && *end != ']' && !(was_space && *end == ';'); end++)
		was_space = isspace((unsigned char)*end);
	for (rest = end + (*end == ']'); isspace((unsigned char)*rest); rest++)
		;
	if (*end != ']' || (*rest && *rest != ';') || (size_t)(end - line) > sizeof(name)) {
		cfg_parse_fail(p, "%s:%d: " CFG_SYNTAX, p->path, p->line);
		return CHAT_ERR_CONFIG;
	}
	memcpy(name, line + 1, (size_t)(end - line - 1));
	name[end - line - 1] = '\0';
	where = cfg_printf("%s:%d", p->path, p->line);
	if (!where) {
		cfg_parse_fail(p, "%s:%d: out of memory", p->path, p->line);
		rc = p->rc = CHAT_ERR_NOMEM;
		goto out;
	}
	rc = cfg_section_ok(where, name, p->errlen, p->err);
	if (!rc)
		rc = cfg_section_get(p->cfg, name, where, where, &idx, p->errlen, p->err);
	if (rc) {
		p->err_line = p->line;
		p->rc = rc;
		goto out;
	}
	p->cur = idx;
out:
	free(where);
	return rc;
}

/* inih's reader: fgets() that counts lines, finds lines inih would split,
 * and checks section headers. */
static char *cfg_reader(char *buf, int num, void *stream)
{
	struct cfg_parse *p = stream;
	size_t size, len;
	char *start;

	/* After our first error the rest of the file cannot change the result. */
	if (p->err_line)
		return NULL;
	if (num < 4) {
		p->read_errno = EINVAL; /* an inih built with a tiny buffer */
		return NULL;
	}
	size = (size_t)num;
	/* fgets() does not say how much it read, and a NUL byte would hide the
	 * end; with the buffer pre-filled, the last NUL is fgets()'s own. */
	memset(buf, '\n', size);
	if (!fgets(buf, num, p->fp)) {
		if (ferror(p->fp))
			p->read_errno = errno ? errno : EIO;
		return NULL;
	}
	if (p->line == INT_MAX) {
		/* inih counts in an int too; stop before either count overflows. */
		cfg_parse_fail(p, "%s:%d: file too long", p->path, p->line);
		return NULL;
	}
	p->line++;
	for (len = size - 1; buf[len]; len--)
		;
	if (memchr(buf, '\0', len)) {
		cfg_parse_fail(p, "%s:%d: line contains a NUL byte", p->path, p->line);
		return NULL;
	}
	if (len == size - 1 && buf[len - 1] != '\n') {
		/* A CRLF line one character longer than an LF line still fits:
		 * its '\r' makes room for the '\n' inih never needs. */
		if (buf[len - 1] == '\r' && getc(p->fp) == '\n') {
			buf[len - 1] = '\n';
		} else {
			/* inih r55 would parse the rest as a line of its own. */
			cfg_parse_fail(p, "%s:%d: line too long (at most %d characters)",
			               p->path, p->line, num - 2);
			return NULL;
		}
	}
	start = buf;
	if (p->line == 1 && !strncmp(start, "\xEF\xBB\xBF", 3))
		start += 3;
	/* inih treats an indented line after a key as a continuation of that
	 * key's value (INI_ALLOW_MULTILINE); no value here spans lines, and an
	 * indented key or header should simply work, so drop the indentation. */
	while (isspace((unsigned char)*start))
		start++;
	if (start != buf)
		memmove(buf, start, strlen(start) + 1);
	if (buf[0] == '[' && cfg_header(p, buf))
		return NULL;
	return buf;
}

static int cfg_handler(void *user, const char *section, const char *key, const char *value)
{
	struct cfg_parse *p = user;
	struct chat_config *cfg = p->cfg;
	const struct chat_cfg_key *def = NULL;
	struct chat_cfg_section *sec;
	struct chat_cfg_value *old;
	char *where = NULL;
	int rc;

	if (p->err_line)
		return 0;
	if (!*section) {
		cfg_parse_fail(p, "%s:%d: key outside any section", p->path, p->line);
		return 0;
	}
	if (!*key) {
		cfg_parse_fail(p, "%s:%d: " CFG_SYNTAX, p->path, p->line);
		return 0;
	}
	if (p->cur < cfg->n && !strcmp(cfg->secs[p->cur].name, section))
		sec = &cfg->secs[p->cur];
	else
		sec = cfg_section_find(cfg, section);
	if (!sec) {
		/* cfg_header() admits every section inih can report; be safe. */
		cfg_parse_fail(p, "%s:%d: unknown section [%s]", p->path, p->line, section);
		return 0;
	}
	where = cfg_printf("%s:%d", p->path, p->line);
	if (!where) {
		cfg_parse_fail(p, "%s:%d: out of memory", p->path, p->line);
		p->rc = CHAT_ERR_NOMEM;
		return 0;
	}
	if (!cfg_is_plugin_section(section)) {
		def = cfg_schema_find(section, key);
		if (!def) {
			cfg_unknown_core_key(where, section, key, p->errlen, p->err);
			rc = CHAT_ERR_CONFIG;
			goto out;
		}
	}
	old = cfg_value_find(sec, key);
	if (old) {
		cfg_err(p->errlen, p->err, "%s: duplicate key '%s' in section [%s] (first set at line %d)",
		        where, key, section, old->line);
		rc = CHAT_ERR_CONFIG;
		goto out;
	}
	if (def) {
		rc = cfg_check(def->type, def->min, def->max, def->choices, where, section, key, value,
		               p->errlen, p->err);
		if (rc)
			goto out;
	}
	rc = cfg_value_put(sec, key, value, where, NULL, p->line, p->errlen, p->err);
out:
	free(where);
	if (rc) {
		p->err_line = p->line;
		p->rc = rc;
		return 0;
	}
	return 1;
}

/* Directory of path for resolving relative values; NULL if path has none. */
static int cfg_dirname(const char *path, char **dir)
{
	const char *slash = strrchr(path, '/');
	size_t len;

	*dir = NULL;
	if (!slash)
		return 0;
	for (len = (size_t)(slash - path); len > 0 && path[len - 1] == '/'; len--)
		;
	*dir = len ? strndup(path, len) : strdup("/");
	return *dir ? 0 : CHAT_ERR_NOMEM;
}

int chat_config_load(const char *path, struct chat_config **cfgp, size_t errlen, char *err)
{
	struct chat_config *cfg = NULL;
	struct cfg_parse p;
	struct stat st;
	FILE *fp = NULL;
	int rc, line, e = 0;

	cfg_err(errlen, err, "%s", "");
	if (!cfgp) {
		cfg_err(errlen, err, "chat_config_load: invalid argument");
		return CHAT_ERR_INVALID;
	}
	rc = CHAT_ERR_NOMEM;
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		goto out;
	if (!path) {
		rc = 0;
		goto out;
	}
	cfg->file = strdup(path);
	if (!cfg->file || cfg_dirname(path, &cfg->dir))
		goto out;

	fp = fopen(path, "r");
	if (!fp || fstat(fileno(fp), &st))
		e = errno;
	else if (S_ISDIR(st.st_mode))
		e = EISDIR; /* fopen() succeeds on a directory; reading fails */
	if (e) {
		rc = e == ENOENT ? CHAT_ERR_NOTFOUND : CHAT_ERR_IO;
		cfg_err(errlen, err, "cannot read config file '%s': %s", path, strerror(e));
		goto out;
	}

	memset(&p, 0, sizeof(p));
	p.cfg = cfg;
	p.fp = fp;
	p.path = path;
	p.cur = SIZE_MAX;
	p.errlen = errlen;
	p.err = err;
	line = ini_parse_stream(cfg_reader, &p, cfg_handler, &p);
	if (p.read_errno) {
		rc = CHAT_ERR_IO;
		cfg_err(errlen, err, "cannot read config file '%s': %s", path, strerror(p.read_errno));
	} else if (line < 0) {
		rc = CHAT_ERR_NOMEM;
		cfg_err(errlen, err, "%s: out of memory", path);
	} else if (line > 0 && (!p.err_line || line < p.err_line)) {
		/* inih found a line it cannot parse before anything we objected to. */
		rc = CHAT_ERR_CONFIG;
		cfg_err(errlen, err, "%s:%d: " CFG_SYNTAX, path, line);
	} else {
		rc = p.err_line ? p.rc : 0;
	}
out:
	if (fp)
		fclose(fp);
	if (rc == CHAT_ERR_NOMEM && err && errlen && !err[0])
		cfg_err(errlen, err, "out of memory");
	if (rc) {
		chat_config_free(cfg);
		return rc;
	}
	*cfgp = cfg;
	return 0;
}

void chat_config_free(struct chat_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->n; i++) {
		struct chat_cfg_section *sec = &cfg->secs[i];

		for (size_t j = 0; j < sec->n; j++) {
			free(sec->vals[j].key);
			free(sec->vals[j].value);
			free(sec->vals[j].where);
			free(sec->vals[j].loc);
			free(sec->vals[j].resolved);
		}
		free(sec->vals);
		free(sec->name);
		free(sec->where);
	}
	free(cfg->secs);
	free(cfg->file);
	free(cfg->dir);
	free(cfg);
}

/* The shared part of --set and flag overrides: validate, then store. */
static int cfg_assign(struct chat_config *cfg, const char *section, const char *key,
                      const char *value, const char *where, const char *loc,
                      size_t errlen, char *err)
{
	const struct chat_cfg_key *def;
	size_t idx;
	int rc;

	rc = cfg_section_ok(loc, section, errlen, err);
	if (rc)
		return rc;
	if (!cfg_is_plugin_section(section)) {
		def = cfg_schema_find(section, key);
		if (!def) {
			cfg_unknown_core_key(loc, section, key, errlen, err);
			return CHAT_ERR_CONFIG;
		}
		rc = cfg_check(def->type, def->min, def->max, def->choices, loc, section, key, value, errlen, err);
		if (rc)
			return rc;
	}
	rc = cfg_section_get(cfg, section, where, loc, &idx, errlen, err);
	if (rc)
		return rc;
	return cfg_value_put(&cfg->secs[idx], key, value, where,
	                     strcmp(loc, where) ? loc : NULL, 0, errlen, err);
}

static char *cfg_strndup_trim(const char *s, size_t n)
{
	while (n > 0 && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	return strndup(s, n);
}

int chat_config_set(struct chat_config *cfg, const char *assignment, size_t errlen, char *err)
{
	char *section = NULL, *key = NULL, *value = NULL, *loc = NULL;
	const char *eq, *dot = NULL;
	int rc = CHAT_ERR_NOMEM;

	cfg_err(errlen, err, "%s", "");
	if (!cfg || !assignment) {
		cfg_err(errlen, err, "chat_config_set: invalid argument");
		return CHAT_ERR_INVALID;
	}
	eq = strchr(assignment, '=');
	for (const char *s = assignment; eq && s < eq; s++)
		if (*s == '.')
			dot = s;
	if (!eq || !dot) {
		cfg_err(errlen, err, "--set '%s': expected section.key=value", assignment);
		return CHAT_ERR_CONFIG;
	}
	section = cfg_strndup_trim(assignment, (size_t)(dot - assignment));
	key = cfg_strndup_trim(dot + 1, (size_t)(eq - dot - 1));
	value = cfg_strndup_trim(eq + 1, strlen(eq + 1));
	loc = cfg_printf("--set %s", assignment);
	if (!section || !key || !value || !loc) {
		cfg_err(errlen, err, "--set '%s': out of memory", assignment);
		goto out;
	}
	if (!*section || !*key) {
		cfg_err(errlen, err, "--set '%s': expected section.key=value", assignment);
		rc = CHAT_ERR_CONFIG;
		goto out;
	}
	rc = cfg_assign(cfg, section, key, value, "--set", loc, errlen, err);
out:
	free(section);
	free(key);
	free(value);
	free(loc);
	return rc;
}

int chat_config_override(struct chat_config *cfg, const char *section, const char *key,
                         const char *value, const char *origin, size_t errlen, char *err)
{
	cfg_err(errlen, err, "%s", "");
	if (!cfg || !section || !key || !value || !origin || !*origin) {
		cfg_err(errlen, err, "chat_config_override: invalid argument");
		return CHAT_ERR_INVALID;
	}
	if (!*key) {
		cfg_err(errlen, err, "%s: empty key name", origin);
		return CHAT_ERR_CONFIG;
	}
	return cfg_assign(cfg, section, key, value, origin, origin, errlen, err);
}

const char *chat_config_get(const struct chat_config *cfg, const char *section, const char *key)
{
	const struct chat_cfg_value *v = cfg_lookup(cfg, section, key);
	const struct chat_cfg_key *def;

	if (v)
		return v->value;
	if (!section || !key)
		return NULL;
	def = cfg_schema_find(section, key);
	return def ? def->def : NULL;
}

long long chat_config_int(const struct chat_config *cfg, const char *section, const char *key)
{
	const char *s = chat_config_get(cfg, section, key);
	long long v;

	if (!s || cfg_parse_ll(s, &v))
		return 0;
	return v;
}

int chat_config_bool(const struct chat_config *cfg, const char *section, const char *key)
{
	const char *s = chat_config_get(cfg, section, key);

	return s && cfg_parse_bool(s) == 1;
}

const char *chat_config_path(const struct chat_config *cfg, const char *section, const char *key)
{
	struct chat_cfg_value *v = cfg_lookup(cfg, section, key);

	if (!v)
		return chat_config_get(cfg, section, key);
	/* Overrides come from a command line: relative to the working
	 * directory, which is how they are already written. */
	if (!v->line || !cfg->dir || !v->value[0] || v->value[0] == '/')
		return v->value;
	if (!v->resolved)
		v->resolved = cfg_printf("%s%s%s", cfg->dir, strcmp(cfg->dir, "/") ? "/" : "",
		                         v->value);
	return v->resolved;
}

void chat_config_resolve(const struct chat_config *cfg, const char *section, const char *key,
                         const char *path, size_t cap, char *dst)
{
	struct chat_cfg_value *v = cfg_lookup(cfg, section, key);

	if (!v || !v->line || !cfg->dir || !path[0] || path[0] == '/')
		snprintf(dst, cap, "%s", path);
	else
		snprintf(dst, cap, "%s%s%s", cfg->dir, strcmp(cfg->dir, "/") ? "/" : "", path);
}

const char *chat_config_where(const struct chat_config *cfg, const char *section, const char *key)
{
	const struct chat_cfg_value *v = cfg_lookup(cfg, section, key);

	return v ? v->where : "default";
}

const char *chat_config_key_at(const struct chat_config *cfg, const char *section, size_t i)
{
	const struct chat_cfg_section *sec = cfg && section ? cfg_section_find(cfg, section) : NULL;

	return sec && i < sec->n ? sec->vals[i].key : NULL;
}

const char *chat_config_file(const struct chat_config *cfg)
{
	return cfg ? cfg->file : NULL;
}

static const struct chat_cfg_section *cfg_plugin_nth(const struct chat_config *cfg, size_t i)
{
	if (!cfg)
		return NULL;
	for (size_t j = 0; j < cfg->n; j++)
		if (cfg_is_plugin_section(cfg->secs[j].name) && i-- == 0)
			return &cfg->secs[j];
	return NULL;
}

size_t chat_config_plugin_sections(const struct chat_config *cfg)
{
	size_t n = 0;

	for (size_t j = 0; cfg && j < cfg->n; j++)
		n += cfg_is_plugin_section(cfg->secs[j].name) != 0;
	return n;
}

const char *chat_config_plugin_section(const struct chat_config *cfg, size_t i)
{
	const struct chat_cfg_section *sec = cfg_plugin_nth(cfg, i);

	return sec ? sec->name + CFG_PLUGIN_PREFIX_LEN : NULL;
}

const char *chat_config_plugin_section_where(const struct chat_config *cfg, size_t i)
{
	const struct chat_cfg_section *sec = cfg_plugin_nth(cfg, i);

	return sec ? sec->where : NULL;
}

static int cfg_plugin_type(int type)
{
	switch (type) {
	case CHAT_CONFIG_STRING:
		return CHAT_CFG_STRING;
	case CHAT_CONFIG_INT:
		return CHAT_CFG_INT;
	case CHAT_CONFIG_BOOL:
		return CHAT_CFG_BOOL;
	}
	return 0;
}

static const struct chat_config_key *cfg_plugin_key(const struct chat_config_key *keys,
                                                    const char *key)
{
	for (; keys && keys->name; keys++)
		if (!strcmp(keys->name, key))
			return keys;
	return NULL;
}

int chat_config_check_plugin(const struct chat_config *cfg, const char *name,
                             const struct chat_config_key *keys, size_t errlen, char *err)
{
	const struct chat_cfg_section *sec;
	const struct chat_config_key *k;
	char section[CFG_PLUGIN_PREFIX_LEN + CFG_NAME_MAX + 1];
	char what[CFG_NAME_MAX + 32];
	int rc;

	cfg_err(errlen, err, "%s", "");
	if (!cfg || !name || !cfg_name_ok(name)) {
		cfg_err(errlen, err, "chat_config_check_plugin: invalid argument");
		return CHAT_ERR_INVALID;
	}
	snprintf(section, sizeof(section), "%s%s", CFG_PLUGIN_PREFIX, name);
	/* A plugin's own declarations are checked too: a broken default
	 * would otherwise surface as a puzzling failure far from its cause. */
	snprintf(what, sizeof(what), "plugin %s (declared default)", name);
	for (k = keys; k && k->name; k++) {
		if (!cfg_plugin_type(k->type)) {
			cfg_err(errlen, err, "plugin %s: key '%s' has unknown type %d",
			        name, k->name, k->type);
			return CHAT_ERR_PLUGIN;
		}
		if (k->def && cfg_check(cfg_plugin_type(k->type), k->min, k->max, NULL, what,
		                        section, k->name, k->def, errlen, err))
			return CHAT_ERR_PLUGIN;
	}

	sec = cfg_section_find(cfg, section);
	for (size_t i = 0; sec && i < sec->n; i++) {
		const struct chat_cfg_value *v = &sec->vals[i];
		const char *loc = v->loc ? v->loc : v->where;

		k = cfg_plugin_key(keys, v->key);
		if (!k) {
			const char *sep = "";

			cfg_err(errlen, err, "%s: unknown key '%s' in section [%s] (known keys: ",
			        loc, v->key, section);
			for (k = keys; k && k->name; k++, sep = ", ")
				cfg_err_append(errlen, err, "%s%s", sep, k->name);
			cfg_err_append(errlen, err, "%s)", keys && keys->name ? "" : "none");
			return CHAT_ERR_CONFIG;
		}
		rc = cfg_check(cfg_plugin_type(k->type), k->min, k->max, NULL, loc, section, v->key,
		               v->value, errlen, err);
		if (rc)
			return rc;
	}
	for (k = keys; k && k->name; k++) {
		if (k->def || (sec && cfg_value_find(sec, k->name)))
			continue;
		if (sec)
			cfg_err(errlen, err, "%s: section [%s]: missing required key '%s'",
			        sec->where, section, k->name);
		else
			cfg_err(errlen, err, "%s: missing required key [%s] %s",
			        cfg->file ? cfg->file : "(no config file)", section, k->name);
		return CHAT_ERR_CONFIG;
	}
	return 0;
}

const char *chat_config_plugin_get(const struct chat_config *cfg, const char *name,
                                   const struct chat_config_key *keys, const char *key)
{
	const struct chat_config_key *k;
	const struct chat_cfg_value *v;
	char section[CFG_PLUGIN_PREFIX_LEN + CFG_NAME_MAX + 1];

	if (!cfg || !name || !key || !cfg_name_ok(name))
		return NULL;
	k = cfg_plugin_key(keys, key);
	if (!k)
		return NULL;
	snprintf(section, sizeof(section), "%s%s", CFG_PLUGIN_PREFIX, name);
	v = cfg_lookup(cfg, section, key);
	return v ? v->value : k->def;
}
