#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chat/error.h>

#include "log.h"
#include "term.h"

static int warn_shared(const struct stat *st, const char *path, const char *what)
{
	unsigned mode = (unsigned)(st->st_mode & 07777);

	if (!(st->st_mode & 077))
		return 0;
	if (S_ISDIR(st->st_mode)) {
		if (st->st_mode & S_ISVTX)
			chat_warn("%s: %s is a shared directory (mode %04o): other users see the names "
			          "there; keep it in a private directory (mode 700) instead",
			          what, path, mode);
		else
			chat_warn("%s: directory %s is open to other users (mode %04o): chmod 700 %s",
			          what, path, mode, path);
	} else {
		chat_warn("%s: %s can be %s by other users (mode %04o): chmod 600 %s", what, path,
		          (st->st_mode & 044) ? "read" : "changed", mode, path);
	}
	return 1;
}

int chat_warn_if_shared(const char *path, const char *what)
{
	struct stat st;

	if (!path || !*path || stat(path, &st) != 0)
		return 0;
	return warn_shared(&st, path, what);
}

int chat_warn_if_shared_fd(int fd, const char *path, const char *what)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		return 0;
	return warn_shared(&st, path, what);
}

int chat_secret_from_file(const char *path, const char *noun, size_t cap, char *dst,
                          size_t errlen, char *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	ssize_t n;

	dst[0] = '\0';
	if (fd < 0) {
		snprintf(err, errlen, "cannot read the %s file %s: %s", noun, path, strerror(errno));
		return CHAT_ERR_IO;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & 077))
		chat_warn("%s file %s can be read by other users (chmod 600 it)", noun, path);
	n = read(fd, dst, cap - 1);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "cannot read the %s file %s: %s", noun, path, strerror(errno));
		dst[0] = '\0';
		return CHAT_ERR_IO;
	}
	dst[n] = '\0';
	dst[strcspn(dst, "\r\n")] = '\0';
	if (!dst[0]) {
		snprintf(err, errlen, "the %s file %s is empty (its first line is the %s)", noun, path,
		         noun);
		return CHAT_ERR_INVALID;
	}
	return CHAT_OK;
}

int chat_secret_ask(const char *prompt, const char *noun, unsigned flags, size_t cap, char *dst,
                    size_t errlen, char *err)
{
	int tty = isatty(STDIN_FILENO);
	char again[CHAT_SECRET_MAX];

	for (;;) {
		if (chat_term_prompt(prompt, 1, cap, dst) != CHAT_OK)
			break;
		if (!dst[0] && !(flags & CHAT_SECRET_ALLOW_EMPTY)) {
			if (!tty) {
				snprintf(err, errlen, "the %s must not be empty", noun);
				return CHAT_ERR_INVALID;
			}
			fprintf(stderr, "the %s must not be empty\n", noun);
			continue;
		}
		if (!(flags & CHAT_SECRET_CONFIRM) || !tty)
			return CHAT_OK;
		int rc = chat_term_prompt("again: ", 1, cap < sizeof(again) ? cap : sizeof(again), again);
		int same = rc == CHAT_OK && strcmp(dst, again) == 0;
		explicit_bzero(again, sizeof(again));
		if (rc != CHAT_OK)
			break;
		if (same)
			return CHAT_OK;
		fprintf(stderr, "the two %ss differ; again\n", noun);
	}
	explicit_bzero(dst, cap);
	snprintf(err, errlen, "no %s given (end of input)", noun);
	return CHAT_ERR_CLOSED;
}
