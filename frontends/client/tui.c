/* The talk-style screen: conversation above, your typing below; incoming
 * text is drawn in its own window so it never garbles the line being typed;
 * SIGWINCH redraws at the new size. */
#define _XOPEN_SOURCE_EXTENDED 1
#include <curses.h>
#include <locale.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "format.h"
#include "host.h"
#include "log.h"
#include "text.h"
#include "tui.h"

#define HISTORY 2000
#define INPUT_MAX 65536

struct chat_tui {
	struct chat_loop *loop;
	struct chat_client *client;
	WINDOW *out, *status, *in;
	struct chat_watch *key_watch, *sig_watch;
	int sig_fd;
	char *history[HISTORY];
	size_t hist_start, hist_count;
	wchar_t input[INPUT_MAX];
	size_t input_len, cursor;
	char me[64];
};

static void add_history(struct chat_tui *t, const char *line)
{
	size_t idx = (t->hist_start + t->hist_count) % HISTORY;

	if (t->hist_count == HISTORY) {
		free(t->history[t->hist_start]);
		t->hist_start = (t->hist_start + 1) % HISTORY;
		t->hist_count--;
		idx = (t->hist_start + t->hist_count) % HISTORY;
	}
	t->history[idx] = strdup(line);
	if (t->history[idx])
		t->hist_count++;
}

static void draw_status(struct chat_tui *t)
{
	const char *cur = t->client ? chat_client_current(t->client) : "";

	werase(t->status);
	wattron(t->status, A_REVERSE);
	mvwhline(t->status, 0, 0, ' ', COLS);
	mvwprintw(t->status, 0, 0, " %s | to: %s | /help for commands", t->me[0] ? t->me : "connecting...",
	          cur[0] ? cur : "(nobody: /talk USER or /join ROOM)");
	wattroff(t->status, A_REVERSE);
	wnoutrefresh(t->status);
}

/* Where the typed line stops being shown: a password being typed, or the
 * password argument of /passwd, /adduser and /resetpw, shows as '*'. */
static size_t secret_from(const struct chat_tui *t)
{
	static const struct {
		const char *cmd;
		int skip; /* words after the command before the password */
	} cmds[] = { { "/passwd ", 0 }, { "/adduser ", 1 }, { "/resetpw ", 1 } };

	if (t->client && chat_client_wants_password(t->client))
		return 0;
	for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
		size_t n = strlen(cmds[k].cmd), i;
		for (i = 0; i < n && i < t->input_len && t->input[i] == (wchar_t)cmds[k].cmd[i]; i++)
			;
		if (i < n)
			continue;
		for (int w = 0; w < cmds[k].skip; w++) {
			while (i < t->input_len && t->input[i] == L' ')
				i++;
			while (i < t->input_len && t->input[i] != L' ')
				i++;
		}
		while (i < t->input_len && t->input[i] == L' ')
			i++;
		return i;
	}
	return (size_t)-1;
}

static void draw_input(struct chat_tui *t)
{
	int width = COLS > 3 ? COLS - 2 : 1;
	size_t first = t->cursor >= (size_t)width ? t->cursor - (size_t)width + 1 : 0;
	size_t hide = secret_from(t);

	werase(t->in);
	mvwaddstr(t->in, 0, 0, "> ");
	for (size_t i = first; i < t->input_len && (int)(i - first) < width; i++) {
		wchar_t wc[2] = { i >= hide ? L'*' : t->input[i], 0 };
		waddwstr(t->in, wc);
	}
	wmove(t->in, 0, (int)(2 + t->cursor - first));
	wnoutrefresh(t->in);
}

static void redraw(struct chat_tui *t)
{
	werase(t->out);
	for (size_t i = 0; i < t->hist_count; i++) {
		waddstr(t->out, t->history[(t->hist_start + i) % HISTORY]);
		waddch(t->out, '\n');
	}
	wnoutrefresh(t->out);
	draw_status(t);
	draw_input(t);
	doupdate();
}

static void layout(struct chat_tui *t)
{
	int rows = LINES > 3 ? LINES : 3;

	if (t->out)
		delwin(t->out);
	if (t->status)
		delwin(t->status);
	if (t->in)
		delwin(t->in);
	t->out = newwin(rows - 2, COLS, 0, 0);
	t->status = newwin(1, COLS, rows - 2, 0);
	t->in = newwin(1, COLS, rows - 1, 0);
	scrollok(t->out, TRUE);
	keypad(t->in, TRUE);
	nodelay(t->in, TRUE);
}

void chat_tui_event(void *ui, const struct chat_event *ev)
{
	struct chat_tui *t = ui;
	size_t cap = 4 * ev->text_len + 512;
	char *line = malloc(cap);

	if (ev->kind == CHAT_EV_LOGGED_IN)
		snprintf(t->me, sizeof(t->me), "%s", ev->peer);
	/* Stored-and-passed-on is the normal case: only "kept for later" is news. */
	if (ev->kind == CHAT_EV_STORED && !(ev->text_len > 6 && !memcmp(ev->text + ev->text_len - 6, "queued", 6))) {
		free(line);
		return;
	}
	if (!line)
		return;
	chat_ui_human(ev, t->me, cap, line);
	add_history(t, line);
	waddstr(t->out, line);
	waddch(t->out, '\n');
	free(line);
	wnoutrefresh(t->out);
	draw_status(t);
	draw_input(t); /* the cursor goes back to the typing line */
	doupdate();
}

/* Log lines would garble the screen on stderr: show them in the window. */
static void log_sink(void *arg, int level, const char *line)
{
	struct chat_event ev = {
		.kind = level <= CHAT_LOG_WARN ? CHAT_EV_WARNING : CHAT_EV_INFO,
		.peer = "", .room = "", .suite = "", .code = "",
		.text = line, .text_len = strlen(line),
	};
	chat_tui_event(arg, &ev);
}

static void submit(struct chat_tui *t)
{
	size_t cap = t->input_len * MB_CUR_MAX + 1;
	char *mb = malloc(cap);
	mbstate_t st;
	size_t n = 0;

	if (!mb)
		return;
	memset(&st, 0, sizeof(st));
	for (size_t i = 0; i < t->input_len; i++) {
		size_t k = wcrtomb(mb + n, t->input[i], &st);
		if (k != (size_t)-1)
			n += k;
	}
	chat_wipe(t->input, t->input_len * sizeof(wchar_t)); /* it may be a password */
	t->input_len = t->cursor = 0;
	if (t->client)
		chat_client_input(t->client, n, mb);
	chat_wipe(mb, cap);
	free(mb);
	draw_status(t);
	draw_input(t);
	doupdate();
}

static void on_key(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct chat_tui *t = arg;
	wint_t ch;
	int r;

	(void)loop;
	(void)fd;
	(void)events;
	while ((r = wget_wch(t->in, &ch)) != ERR) {
		if (r == KEY_CODE_YES) {
			switch (ch) {
			case KEY_BACKSPACE:
				goto backspace;
			case KEY_LEFT:
				if (t->cursor)
					t->cursor--;
				break;
			case KEY_RIGHT:
				if (t->cursor < t->input_len)
					t->cursor++;
				break;
			case KEY_HOME:
				t->cursor = 0;
				break;
			case KEY_END:
				t->cursor = t->input_len;
				break;
			case KEY_ENTER:
				submit(t);
				continue;
			case KEY_RESIZE:
				layout(t);
				redraw(t);
				continue;
			default:
				break;
			}
		} else if (ch == '\n' || ch == '\r') {
			submit(t);
			continue;
		} else if (ch == 127 || ch == 8) {
backspace:
			if (t->cursor) {
				memmove(&t->input[t->cursor - 1], &t->input[t->cursor],
				        (t->input_len - t->cursor) * sizeof(wchar_t));
				t->cursor--;
				t->input_len--;
			}
		} else if (ch == 21) { /* ^U */
			chat_wipe(t->input, t->input_len * sizeof(wchar_t));
			t->input_len = t->cursor = 0;
		} else if (ch == 4 && !t->input_len) { /* ^D on an empty line */
			if (t->client)
				chat_client_input(t->client, 5, "/quit");
		} else if (ch >= 32 && t->input_len + 1 < INPUT_MAX) {
			memmove(&t->input[t->cursor + 1], &t->input[t->cursor],
			        (t->input_len - t->cursor) * sizeof(wchar_t));
			t->input[t->cursor++] = (wchar_t)ch;
			t->input_len++;
		}
		draw_input(t);
		doupdate();
	}
}

static void on_signal(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct chat_tui *t = arg;
	struct signalfd_siginfo si;

	(void)loop;
	(void)events;
	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	if (si.ssi_signo == SIGWINCH) {
		endwin();
		refresh();
		layout(t);
		redraw(t);
	} else if (t->client) {
		chat_client_input(t->client, 5, "/quit");
	}
}

int chat_tui_start(struct chat_loop *loop, struct chat_tui **out)
{
	struct chat_tui *t = calloc(1, sizeof(*t));
	sigset_t mask;

	*out = NULL;
	if (!t)
		return -1;
	setlocale(LC_ALL, "");
	if (!initscr()) {
		free(t);
		return -1;
	}
	cbreak();
	noecho();
	nonl();
	t->loop = loop;
	layout(t);
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGWINCH);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	t->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (t->sig_fd < 0 ||
	    chat_loop_add(loop, STDIN_FILENO, CHAT_EV_READ, on_key, t, &t->key_watch) ||
	    chat_loop_add(loop, t->sig_fd, CHAT_EV_READ, on_signal, t, &t->sig_watch)) {
		endwin();
		if (t->sig_fd >= 0)
			close(t->sig_fd);
		free(t);
		return -1;
	}
	redraw(t);
	chat_log_set_sink(log_sink, t);
	*out = t;
	return 0;
}

void chat_tui_attach(struct chat_tui *t, struct chat_client *c)
{
	t->client = c;
	redraw(t);
}

void chat_tui_stop(struct chat_tui *t)
{
	if (!t)
		return;
	chat_log_set_sink(NULL, NULL);
	chat_wipe(t->input, sizeof(t->input));
	chat_loop_remove(t->loop, t->key_watch);
	chat_loop_remove(t->loop, t->sig_watch);
	close(t->sig_fd);
	delwin(t->out);
	delwin(t->status);
	delwin(t->in);
	endwin();
	for (size_t i = 0; i < t->hist_count; i++)
		free(t->history[(t->hist_start + i) % HISTORY]);
	free(t);
}
