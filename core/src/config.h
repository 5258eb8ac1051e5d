/* chat.ini: parsed once with inih into a validated store.  Core sections are
 * checked against the schema in config_schema.c; [plugin.NAME] sections are
 * checked against the keys the plugin declares when it is loaded.  Every
 * error names file:line (or the command-line flag that set the value). */
#ifndef CHAT_CONFIG_H
#define CHAT_CONFIG_H

#include <stddef.h>

#include <chat/plugin.h>

enum chat_cfg_type {
	CHAT_CFG_STRING = 1,
	CHAT_CFG_INT,     /* decimal, within [min, max] */
	CHAT_CFG_BOOL,    /* true/false yes/no on/off 1/0 */
	CHAT_CFG_ADDRESS, /* host:port or [v6]:port, port 0..65535 */
	CHAT_CFG_NAME,    /* plugin: a name [a-z0-9-]{1,32}, or a path containing '/' */
	CHAT_CFG_LEVEL,   /* error|warn|info|debug */
	CHAT_CFG_PATH,    /* relative paths resolve against the defining file's directory */
	CHAT_CFG_LIST,    /* comma-separated suite names ([a-z0-9-]{1,32}), at most 16, may be empty */
	CHAT_CFG_CHOICE,  /* one of the words in the key's choices ("a|b|c") */
	CHAT_CFG_ADDRESSES, /* comma-separated CHAT_CFG_ADDRESS values, 1 to CHAT_CFG_ADDRS_MAX */
};

struct chat_cfg_key {
	const char *section, *key;
	int type;
	const char *def; /* NULL: no default (required where used) */
	long long min, max;
	const char *help;
	const char *choices; /* CHAT_CFG_CHOICE: the allowed words, "|"-separated */
	unsigned flags;      /* CHAT_CFG_LIVE */
};

/* A running chat-relay applies a new value of the key when it reads its
 * configuration again (SIGHUP); any other key of [core] and [relay] needs a
 * restart (docs/SERVICE.md). */
#define CHAT_CFG_LIVE 1u

/* NULL-terminated schema of the core sections (config_schema.c). */
extern const struct chat_cfg_key chat_cfg_schema[];

struct chat_config;

/* Parse and validate path.  On failure *cfg is untouched and err holds e.g.
 * "chat.ini:12: unknown key 'lisen' in section [relay]".  path NULL: no file,
 * every value its default (overrides still apply). */
int chat_config_load(const char *path, struct chat_config **cfg, size_t errlen, char *err);
void chat_config_free(struct chat_config *cfg);

/* "section.key=value" from --set (section may be "plugin.NAME"); validated like
 * a file value; origin "--set". */
int chat_config_set(struct chat_config *cfg, const char *assignment, size_t errlen, char *err);
/* A value from a named flag, e.g. ("relay", "listen", "[::1]:0", "--listen"). */
int chat_config_override(struct chat_config *cfg, const char *section, const char *key,
                         const char *value, const char *origin, size_t errlen, char *err);

/* Value or schema default (NULL if neither). */
const char *chat_config_get(const struct chat_config *cfg, const char *section, const char *key);
long long chat_config_int(const struct chat_config *cfg, const char *section, const char *key);
int chat_config_bool(const struct chat_config *cfg, const char *section, const char *key);
/* Split a CHAT_CFG_LIST value into at most max names of up to 32 characters;
 * returns the count (the value was validated at load). */
size_t chat_config_list(const struct chat_config *cfg, const char *section, const char *key,
                        size_t max, char (*names)[33]);
/* Split a CHAT_CFG_ADDRESSES value into at most max addresses; returns the
 * count (the value was validated at load). */
#define CHAT_CFG_ADDRS_MAX 8
#define CHAT_CFG_ADDR_LEN 300
size_t chat_config_addresses(const struct chat_config *cfg, const char *section, const char *key,
                             size_t max, char (*addrs)[CHAT_CFG_ADDR_LEN]);
/* Resolved path for a CHAT_CFG_PATH key; owned by cfg, valid until the key
 * is set again or cfg is freed. */
const char *chat_config_path(const struct chat_config *cfg, const char *section, const char *key);
/* path, found inside the value of section.key (relay.store = sqlite:PATH),
 * resolved as chat_config_path resolves a path key's value, into dst[cap]. */
void chat_config_resolve(const struct chat_config *cfg, const char *section, const char *key,
                         const char *path, size_t cap, char *dst);
/* "chat.ini:12", "--set", "--listen" or "default": where a value came from. */
const char *chat_config_where(const struct chat_config *cfg, const char *section, const char *key);
/* The file the configuration was read from; NULL if loaded without one. */
const char *chat_config_file(const struct chat_config *cfg);

/* The i-th key set in [section] by the file or an override, in the order
 * they were set; NULL past the last (or no such section). */
const char *chat_config_key_at(const struct chat_config *cfg, const char *section, size_t i);

/* Plugin sections. */
size_t chat_config_plugin_sections(const struct chat_config *cfg);
const char *chat_config_plugin_section(const struct chat_config *cfg, size_t i); /* NAME of [plugin.NAME] */
const char *chat_config_plugin_section_where(const struct chat_config *cfg, size_t i); /* "chat.ini:30" */
/* Check [plugin.NAME] against the plugin's declared keys (keys may be NULL: no keys). */
int chat_config_check_plugin(const struct chat_config *cfg, const char *name,
                             const struct chat_config_key *keys, size_t errlen, char *err);
/* Value of a plugin key, or its declared default; NULL if undeclared. */
const char *chat_config_plugin_get(const struct chat_config *cfg, const char *name,
                                   const struct chat_config_key *keys, const char *key);

#endif
