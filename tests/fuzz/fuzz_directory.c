/* The contact directory (core/src/directory.c): a JSON file read by
 * chat-peer and chat-client.  The input is the file.  Invariants on success:
 * every username is valid and unique (and found by chat_directory_find),
 * every password non-empty, ports 0 (unset) or 1..65535, ip terminated. */
#include <stdio.h>
#include <string.h>

#include "directory.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chat_directory *dir = NULL;
	char err[512];
	const char *path;

	fuzz_init();
	path = fuzz_file("peers.json", size, data);
	if (chat_directory_load(path, &dir, sizeof(err), err) != CHAT_OK) {
		FUZZ_CHECK(dir == NULL && err[0]);
		return 0;
	}
	for (size_t i = 0; i < dir->count; i++) {
		const struct chat_contact *c = &dir->contacts[i];
		FUZZ_CHECK(chat_name_check(strlen(c->username), c->username) == NULL);
		FUZZ_CHECK(chat_directory_find(dir, c->username) == c);
		FUZZ_CHECK(c->password && c->password[0]);
		FUZZ_CHECK(c->port <= 65535);
		FUZZ_CHECK(memchr(c->ip, '\0', sizeof(c->ip)) != NULL);
	}
	FUZZ_CHECK(chat_directory_find(dir, "") == NULL);
	chat_directory_free(dir);
	return 0;
}

void fuzz_seeds(const char *dir)
{
	static const char *const seeds[] = {
		("[{\"username\": \"alice\", \"ip\": \"127.0.0.1\", \"port\": 7401, \"password\": \"s3cret\"},\n"
		 " {\"username\": \"bob\", \"ip\": \"::1\", \"port\": 7402, \"password\": \"hunter2\"}]\n"),
		"[{\"username\": \"carol\", \"password\": \"\\u00e9t\\u00e9\"}]",
		"[]",
		"[{\"username\": \"dave\", \"password\": \"x\", \"port\": 70000}]",
		"[{\"username\": \"eve\", \"password\": \"x\", \"Password\": \"y\"}]",
		"[{\"username\": \"a\", \"password\": \"x\"}, {\"username\": \"a\", \"password\": \"y\"}]",
		"{\"username\": \"alice\"}",
	};
	char name[16];

	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		snprintf(name, sizeof(name), "dir%zu", i);
		fuzz_write_seed(dir, name, strlen(seeds[i]), seeds[i]);
	}
}
