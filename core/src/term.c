#include "term.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <termios.h>
#include <unistd.h>

#include <chat/error.h>

static struct termios saved;
static volatile sig_atomic_t saved_set;
static int echo_off;
static int caught[2];
static struct sigaction old_action[2];
static const int caught_signals[2] = { SIGINT, SIGTERM };

/* A signal while echo is off must not leave the terminal silent. */
static void restore_and_die(int sig)
{
	if (saved_set)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void catch_signals(void)
{
	struct sigaction sa = { 0 };

	sa.sa_handler = restore_and_die;
	for (int i = 0; i < 2; i++) {
		if (caught[i] || sigaction(caught_signals[i], NULL, &old_action[i]) != 0 ||
		    old_action[i].sa_handler == SIG_IGN)
			continue;
		caught[i] = sigaction(caught_signals[i], &sa, NULL) == 0;
	}
}

static void release_signals(void)
{
	for (int i = 0; i < 2; i++) {
		if (caught[i])
			sigaction(caught_signals[i], &old_action[i], NULL);
		caught[i] = 0;
	}
}

void chat_term_echo(int on)
{
	struct termios t;

	if (tcgetattr(STDIN_FILENO, &t) != 0)
		return;
	if (!saved_set) {
		saved = t;
		saved_set = 1;
	}
	if (on) {
		t.c_lflag |= ECHO;
	} else {
		t.c_lflag &= ~(tcflag_t)ECHO;
		catch_signals();
	}
	tcsetattr(STDIN_FILENO, TCSANOW, &t);
	echo_off = !on;
	if (on)
		release_signals();
}

int chat_term_echo_is_off(void)
{
	return echo_off;
}

void chat_term_restore(void)
{
	if (saved_set)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	echo_off = 0;
	release_signals();
}

int chat_term_read_line(size_t cap, char *dst)
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

int chat_term_prompt(const char *prompt, int hidden, size_t cap, char *dst)
{
	int rc;

	fputs(prompt, stderr);
	fflush(stderr);
	if (hidden)
		chat_term_echo(0);
	rc = chat_term_read_line(cap, dst);
	if (hidden && echo_off) {
		chat_term_echo(1);
		fputc('\n', stderr);
	}
	return rc;
}
