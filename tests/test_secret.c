/* Password sources (core/src/secret.c, core/src/term.c) without a terminal:
 * the first line of a file and its errors, and lines read from stdin one at
 * a time without reading ahead (what follows stays for the event loop). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chat/error.h>

#include "secret.h"
#include "term.h"
#include "testutils.h"

static char dir[64];

static const char *file_with(const char *name, const char *content, mode_t mode)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	fputs(content, f);
	fclose(f);
	chmod(path, mode);
	return path;
}

static void test_from_file(void)
{
	char pw[CHAT_SECRET_MAX], err[512];
	const char *p;

	p = file_with("ok", "correct horse\r\nsecond line\n", 0600);
	CHECK_EQ_INT(chat_secret_from_file(p, "password", sizeof(pw), pw, sizeof(err), err), CHAT_OK);
	CHECK(strcmp(pw, "correct horse") == 0);
	p = file_with("noeol", "no newline", 0600);
	CHECK_EQ_INT(chat_secret_from_file(p, "password", sizeof(pw), pw, sizeof(err), err), CHAT_OK);
	CHECK(strcmp(pw, "no newline") == 0);
	p = file_with("empty", "", 0600);
	CHECK(chat_secret_from_file(p, "password", sizeof(pw), pw, sizeof(err), err) != CHAT_OK);
	CHECK_STR_CONTAINS(err, p);
	CHECK_STR_CONTAINS(err, "is empty");
	p = file_with("emptyline", "\nsecond\n", 0600);
	CHECK(chat_secret_from_file(p, "passphrase", sizeof(pw), pw, sizeof(err), err) != CHAT_OK);
	CHECK_STR_CONTAINS(err, "passphrase");
	char missing[128];
	snprintf(missing, sizeof(missing), "%s/missing", dir);
	CHECK(chat_secret_from_file(missing, "password", sizeof(pw), pw, sizeof(err), err) != CHAT_OK);
	CHECK_STR_CONTAINS(err, missing);
	CHECK_STR_CONTAINS(err, "No such file");
	/* a world-readable file still works (with a warning in the log) */
	p = file_with("open", "shared\n", 0644);
	CHECK_EQ_INT(chat_secret_from_file(p, "password", sizeof(pw), pw, sizeof(err), err), CHAT_OK);
}

static void test_stdin_lines(void)
{
	char line[16], err[256];
	int fds[2], saved = dup(0);

	CHECK(pipe(fds) == 0);
	const char *input = "first\r\nthe second line is long\nrest for the loop";
	CHECK(write(fds[1], input, strlen(input)) == (ssize_t)strlen(input));
	close(fds[1]);
	dup2(fds[0], 0);
	close(fds[0]);
	CHECK_EQ_INT(chat_term_read_line(sizeof(line), line), CHAT_OK);
	CHECK(strcmp(line, "first") == 0);
	CHECK_EQ_INT(chat_term_read_line(sizeof(line), line), CHAT_OK);
	CHECK(strcmp(line, "the second line") == 0); /* cut to cap - 1, the rest skipped */
	/* not a terminal: no echo games, and the answer is the next line */
	CHECK_EQ_INT(chat_secret_ask("", "password", 0, sizeof(line), line, sizeof(err), err), CHAT_OK);
	CHECK(strcmp(line, "rest for the lo") == 0);
	CHECK_EQ_INT(chat_term_read_line(sizeof(line), line), CHAT_ERR_CLOSED);
	CHECK(chat_secret_ask("", "password", 0, sizeof(line), line, sizeof(err), err) != CHAT_OK);
	CHECK_STR_CONTAINS(err, "end of input");
	CHECK_EQ_INT(chat_term_echo_is_off(), 0);
	dup2(saved, 0);
	close(saved);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test_secret.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	test_from_file();
	test_stdin_lines();
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return test_done("test_secret");
}
