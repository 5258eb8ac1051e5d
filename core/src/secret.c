#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <chat/error.h>

#include "log.h"

static struct termios saved;
static volatile sig_atomic_t saved_set;
static struct sigaction old_int, old_term;

static void restore_and_die(int sig)
{
	if (saved_set)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void echo_off(void)
{
	struct termios t;
	struct sigaction sa = { 0 };

	if (tcgetattr(STDIN_FILENO, &t) != 0)
		return;
	saved = t;
	saved_set = 1;
	sa.sa_handler = restore_and_die;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	t.c_lflag &= ~(tcflag_t)ECHO;
	tcsetattr(STDIN_FILENO, TCSANOW, &t);
}

static void echo_on(void)
{
	if (!saved_set)
		return;
	tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	saved_set = 0;
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
}

/* One line from stdin, byte by byte so nothing after it is consumed. */
static int read_line(size_t cap, char *dst)
{
	size_t n = 0;
	char c;
	ssize_t r;

	while ((r = read(STDIN_FILENO, &c, 1)) == 1 || (r < 0 && errno == EINTR)) {
		if (r < 0)
			continue;
		if (c == '\n')
			break;
		if (n + 1 < cap && c != '\r')
			dst[n++] = c;
	}
	dst[n] = '\0';
	return r == 1 || n ? CHAT_OK : CHAT_ERR_CLOSED;
}

int chat_secret_from_file(const char *path, size_t cap, char *dst, size_t errlen, char *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	ssize_t n;

	dst[0] = '\0';
	if (fd < 0) {
		snprintf(err, errlen, "cannot read the password file %s: %s", path, strerror(errno));
		return CHAT_ERR_IO;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & 077))
		chat_warn("password file %s can be read by other users (chmod 600 it)", path);
	n = read(fd, dst, cap - 1);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "cannot read the password file %s: %s", path, strerror(errno));
		dst[0] = '\0';
		return CHAT_ERR_IO;
	}
	dst[n] = '\0';
	dst[strcspn(dst, "\r\n")] = '\0';
	if (!dst[0]) {
		snprintf(err, errlen, "the password file %s is empty (its first line is the password)", path);
		return CHAT_ERR_INVALID;
	}
	return CHAT_OK;
}

int chat_secret_ask(const char *prompt, int confirm, int allow_empty, size_t cap, char *dst,
                    size_t errlen, char *err)
{
	int tty = isatty(STDIN_FILENO);
	char again[CHAT_SECRET_MAX];

	for (;;) {
		fputs(prompt, stderr);
		fflush(stderr);
		if (tty)
			echo_off();
		int rc = read_line(cap, dst);
		if (tty) {
			echo_on();
			fputc('\n', stderr);
		}
		if (rc != CHAT_OK) {
			snprintf(err, errlen, "no password given (end of input)");
			return rc;
		}
		if (!dst[0] && !allow_empty) {
			if (!tty) {
				snprintf(err, errlen, "the password must not be empty");
				return CHAT_ERR_INVALID;
			}
			fprintf(stderr, "the password must not be empty\n");
			continue;
		}
		if (!confirm || !tty)
			return CHAT_OK;
		fputs("again: ", stderr);
		fflush(stderr);
		echo_off();
		rc = read_line(sizeof(again), again);
		echo_on();
		fputc('\n', stderr);
		int same = rc == CHAT_OK && strcmp(dst, again) == 0;
		explicit_bzero(again, sizeof(again));
		if (same)
			return CHAT_OK;
		fprintf(stderr, "the two passwords differ; again\n");
	}
}
