#include "directory.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <chat/error.h>

#include "host.h"
#include "secret.h"

#define DIRECTORY_MAX_BYTES (4u << 20)
#define DIRECTORY_MAX_ENTRIES 10000

static int fail(size_t errlen, char *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(size_t errlen, char *err, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return CHAT_ERR_CONFIG;
}

void chat_directory_free(struct chat_directory *dir)
{
	if (!dir)
		return;
	for (size_t i = 0; i < dir->count; i++) {
		if (dir->contacts[i].password) {
			chat_wipe(dir->contacts[i].password, strlen(dir->contacts[i].password));
			free(dir->contacts[i].password);
		}
	}
	free(dir->contacts);
	free(dir->path);
	free(dir);
}

const struct chat_contact *chat_directory_find(const struct chat_directory *dir, const char *username)
{
	for (size_t i = 0; dir && i < dir->count; i++)
		if (strcmp(dir->contacts[i].username, username) == 0)
			return &dir->contacts[i];
	return NULL;
}

static int entry(const char *path, size_t i, json_t *obj, struct chat_contact *c, size_t errlen,
                 char *err)
{
	const char *key;
	json_t *v;
	const char *name = "?";
	json_t *u = json_object_get(obj, "username");

	if (json_is_string(u))
		name = json_string_value(u);
	json_object_foreach(obj, key, v) {
		if (strcmp(key, "username") && strcmp(key, "ip") && strcmp(key, "port") &&
		    strcmp(key, "password"))
			return fail(errlen, err, "%s: entry %zu (%.32s): unknown key '%s' "
			            "(keys are username, ip, port, password, all lowercase)", path, i + 1, name, key);
	}
	if (!json_is_string(u))
		return fail(errlen, err, "%s: entry %zu: 'username' is missing or not a string", path, i + 1);
	const char *why = chat_name_check(strlen(name), name);
	if (why)
		return fail(errlen, err, "%s: entry %zu: username '%.40s' %s", path, i + 1, name, why);
	snprintf(c->username, sizeof(c->username), "%s", name);

	v = json_object_get(obj, "password");
	if (!json_is_string(v) || !json_string_length(v))
		return fail(errlen, err, "%s: entry %zu (%s): 'password' is missing, empty or not a string",
		            path, i + 1, name);
	c->password = strdup(json_string_value(v));
	if (!c->password)
		return CHAT_ERR_NOMEM;

	v = json_object_get(obj, "ip");
	if (v) {
		if (!json_is_string(v) || !json_string_length(v) || json_string_length(v) >= sizeof(c->ip))
			return fail(errlen, err, "%s: entry %zu (%s): 'ip' must be a non-empty string of at most %zu characters",
			            path, i + 1, name, sizeof(c->ip) - 1);
		snprintf(c->ip, sizeof(c->ip), "%s", json_string_value(v));
	}
	v = json_object_get(obj, "port");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535)
			return fail(errlen, err, "%s: entry %zu (%s): 'port' must be an integer 1..65535",
			            path, i + 1, name);
		c->port = (unsigned)json_integer_value(v);
	}
	return CHAT_OK;
}

int chat_directory_load(const char *path, struct chat_directory **out, size_t errlen, char *err)
{
	struct chat_directory *dir = NULL;
	json_error_t jerr;
	json_t *root = NULL;
	char *text = NULL;
	size_t len = 0;
	int rc;
	FILE *f;

	*out = NULL;
	f = fopen(path, "rb");
	if (!f)
		return fail(errlen, err, "cannot read directory file '%s': %s", path, strerror(errno)),
		       CHAT_ERR_NOTFOUND;
	chat_warn_if_shared_fd(fileno(f), path, "the contact directory (it holds passwords)");
	/* A buffer that grows with what is read (to one byte past the limit, so
	 * a larger file is noticed), not one of the limit's size: a directory is
	 * read again on every change.  Grown by copying, so no copy of the
	 * passwords is left behind unwiped. */
	size_t cap = 0;
	int nomem = 0;
	for (;;) {
		if (len == cap) {
			size_t ncap = cap ? 2 * cap : 4096;
			if (ncap > DIRECTORY_MAX_BYTES + 1)
				ncap = DIRECTORY_MAX_BYTES + 1;
			if (ncap == cap)
				break;
			char *grown = malloc(ncap);
			if (!grown) {
				nomem = 1;
				break;
			}
			if (len)
				memcpy(grown, text, len);
			if (text) {
				chat_wipe(text, len);
				free(text);
			}
			text = grown;
			cap = ncap;
		}
		size_t got = fread(text + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	int read_err = ferror(f);
	fclose(f);
	if (nomem || !text) {
		if (text) {
			chat_wipe(text, len);
			free(text);
		}
		return CHAT_ERR_NOMEM;
	}
	if (read_err) {
		rc = fail(errlen, err, "cannot read directory file '%s'", path);
		goto out;
	}
	if (len > DIRECTORY_MAX_BYTES) {
		rc = fail(errlen, err, "%s: larger than %u bytes", path, DIRECTORY_MAX_BYTES);
		goto out;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		rc = fail(errlen, err, "%s:%d:%d: invalid JSON: %s", path, jerr.line, jerr.column, jerr.text);
		goto out;
	}
	if (!json_is_array(root)) {
		rc = fail(errlen, err, "%s: expected a JSON list of contacts [ {\"username\": ..., "
		          "\"ip\": ..., \"port\": ..., \"password\": ...}, ... ]", path);
		goto out;
	}
	if (json_array_size(root) > DIRECTORY_MAX_ENTRIES) {
		rc = fail(errlen, err, "%s: more than %d entries", path, DIRECTORY_MAX_ENTRIES);
		goto out;
	}
	dir = calloc(1, sizeof(*dir));
	if (!dir || !(dir->path = strdup(path)) ||
	    !(dir->contacts = calloc(json_array_size(root) + 1, sizeof(*dir->contacts)))) {
		rc = CHAT_ERR_NOMEM;
		goto out;
	}
	for (size_t i = 0; i < json_array_size(root); i++) {
		json_t *obj = json_array_get(root, i);
		if (!json_is_object(obj)) {
			rc = fail(errlen, err, "%s: entry %zu is not an object", path, i + 1);
			goto out;
		}
		rc = entry(path, i, obj, &dir->contacts[dir->count], errlen, err);
		dir->count++;
		if (rc)
			goto out;
		for (size_t j = 0; j + 1 < dir->count; j++)
			if (!strcmp(dir->contacts[j].username, dir->contacts[i].username)) {
				rc = fail(errlen, err, "%s: entry %zu: username '%s' already used by entry %zu",
				          path, i + 1, dir->contacts[i].username, j + 1);
				goto out;
			}
	}
	*out = dir;
	dir = NULL;
	rc = CHAT_OK;
out:
	chat_directory_free(dir);
	if (root) {
		/* Passwords were in the parsed tree and the file text: wipe both. */
		json_decref(root);
	}
	if (text) {
		chat_wipe(text, len);
		free(text);
	}
	return rc;
}
