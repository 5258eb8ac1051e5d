/* The contact directory: a JSON list of {"username", "ip", "port",
 * "password"} objects (lowercase keys), as in the peer-to-peer design this
 * framework inherits.  chat-peer uses all fields; chat-client uses the
 * passwords of suites that need a shared secret.  Passwords are wiped when
 * the directory is freed. */
#ifndef CHAT_DIRECTORY_H
#define CHAT_DIRECTORY_H

#include <stddef.h>

#include "proto.h"

struct chat_contact {
	char username[CHAT_NAME_MAX + 1];
	char ip[64];
	unsigned port;
	char *password;
};

struct chat_directory {
	struct chat_contact *contacts;
	size_t count;
	char *path;
};

/* Load and validate path; err names the file and the entry at fault, e.g.
 * "peers.json: entry 2 (bob): 'port' must be an integer 1..65535". */
int chat_directory_load(const char *path, struct chat_directory **dir, size_t errlen, char *err);
void chat_directory_free(struct chat_directory *dir);
const struct chat_contact *chat_directory_find(const struct chat_directory *dir, const char *username);

#endif
