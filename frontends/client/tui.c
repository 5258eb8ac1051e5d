/* The talk-style screen: conversation above, your typing below; incoming
 * text is drawn in its own window so it never garbles the line being typed;
 * SIGWINCH redraws at the new size.  Editing as in readline/irssi (Left,
 * Right, Home, End, ^A ^E ^U ^K ^W, Delete, Up/Down through this run's
 * input, PgUp/PgDn through the conversation, Tab completes commands, user
 * and room names), colours unless NO_COLOR is set.  Errors stay in the
 * status line until the next input, and the last ones are printed on the
 * normal terminal when the program ends with an error. */
#define _XOPEN_SOURCE_EXTENDED 1
#include <curses.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
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
#define TYPED 100      /* input lines kept for Up/Down */
#define NAMES 256      /* user and room names seen, for Tab */
#define LAST_ERRORS 4  /* printed after the screen closes */

enum { PAIR_OWN = 1, PAIR_PEER, PAIR_SYSTEM, PAIR_WARN, PAIR_ERROR, PAIR_INSECURE };

struct chat_tui {
	struct chat_loop *loop;
	struct chat_client *client;
	WINDOW *out, *status, *in;
	struct chat_watch *key_watch, *sig_watch;
	SCREEN *screen;
	int sig_fd;
	char *history[HISTORY];
	short hist_attr[HISTORY];      /* colour pair of each line */
	size_t hist_start, hist_count;
	size_t scroll;                 /* lines above the bottom shown (PgUp/PgDn) */
	wchar_t input[INPUT_MAX];
	size_t input_len, cursor;
	char *typed[TYPED];            /* Up/Down */
	size_t ntyped, typed_pos;
	char names[NAMES][CHAT_NAME_MAX + 2]; /* "alice", "#lobby" */
	size_t nnames, names_next;
	char *errors[LAST_ERRORS];     /* the last error lines */
	size_t nerrors;
	char status_err[256];
	int color;
	char me[64];
	/* A cursor key whose bytes came apart (a slow link, a loaded machine:
	 * ESC alone past ESCDELAY, then "[C"): decoded here, not typed. */
	int esc;                       /* 0; 1 after ESC; 2 after ESC [ or ESC O */
	unsigned esc_num;              /* the number of ESC [ 3 ~ */
};

static void add_history(struct chat_tui *t, const char *line, short attr)
{
	size_t idx = (t->hist_start + t->hist_count) % HISTORY;

	if (t->hist_count == HISTORY) {
		free(t->history[t->hist_start]);
		t->hist_start = (t->hist_start + 1) % HISTORY;
		t->hist_count--;
		idx = (t->hist_start + t->hist_count) % HISTORY;
	}
	t->history[idx] = strdup(line);
	t->hist_attr[idx] = attr;
	if (t->history[idx]) {
		t->hist_count++;
		if (t->scroll)
			t->scroll++; /* what is being read stays in place */
	}
}

static void add_line(WINDOW *w, const struct chat_tui *t, const char *line, short pair)
{
	if (t->color && pair)
		wattron(w, COLOR_PAIR(pair));
	waddstr(w, line);
	if (t->color && pair)
		wattroff(w, COLOR_PAIR(pair));
	waddch(w, '\n');
}

/* A name seen in an event, for Tab completion. */
static void learn_name(struct chat_tui *t, const char *prefix, const char *name)
{
	char full[CHAT_NAME_MAX + 2];

	if (!name || !*name || strlen(name) > CHAT_NAME_MAX)
		return;
	snprintf(full, sizeof(full), "%s%s", prefix, name);
	for (size_t i = 0; i < t->nnames; i++)
		if (!strcmp(t->names[i], full))
			return;
	if (t->nnames < NAMES) {
		snprintf(t->names[t->nnames++], sizeof(t->names[0]), "%s", full);
	} else {
		snprintf(t->names[t->names_next], sizeof(t->names[0]), "%s", full);
		t->names_next = (t->names_next + 1) % NAMES;
	}
}

static void draw_status(struct chat_tui *t)
{
	const char *cur = t->client ? chat_client_current(t->client) : "";

	werase(t->status);
	wattron(t->status, A_REVERSE);
	mvwhline(t->status, 0, 0, ' ', COLS);
	if (t->status_err[0])
		mvwprintw(t->status, 0, 0, " %s | %s", t->me[0] ? t->me : "connecting...", t->status_err);
	else
		mvwprintw(t->status, 0, 0, " %s | to: %s%s | /help for commands",
		          t->me[0] ? t->me : "connecting...",
		          cur[0] ? cur : "(nobody: /talk USER or /join ROOM)",
		          t->scroll ? " | scrolled back: PgDn" : "");
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
	size_t end = t->hist_count - (t->scroll < t->hist_count ? t->scroll : t->hist_count);
	size_t rows = LINES > 3 ? (size_t)LINES - 2 : 1, start = end > 4 * rows ? end - 4 * rows : 0;

	werase(t->out);
	for (size_t i = start; i < end; i++) {
		size_t k = (t->hist_start + i) % HISTORY;
		add_line(t->out, t, t->history[k], t->hist_attr[k]);
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

static short pair_of(const struct chat_event *ev)
{
	if (ev->insecure && (ev->kind == CHAT_EV_ESTABLISHED || ev->kind == CHAT_EV_RESUMED ||
	                     ev->kind == CHAT_EV_OFFER || ev->kind == CHAT_EV_MSG ||
	                     ev->kind == CHAT_EV_ROOM_MSG || ev->kind == CHAT_EV_DELIVERED))
		return PAIR_INSECURE;
	switch (ev->kind) {
	case CHAT_EV_MSG:
	case CHAT_EV_ROOM_MSG:
		return PAIR_PEER;
	case CHAT_EV_SENT:
		return PAIR_OWN;
	case CHAT_EV_ERROR:
		return PAIR_ERROR;
	case CHAT_EV_WARNING:
	case CHAT_EV_BYE:
		return PAIR_WARN;
	default:
		return PAIR_SYSTEM;
	}
}

void chat_tui_event(void *ui, const struct chat_event *ev)
{
	struct chat_tui *t = ui;
	size_t cap = 4 * ev->text_len + 512;
	char *line = malloc(cap);
	short pair = pair_of(ev);

	if (ev->kind == CHAT_EV_LOGGED_IN)
		snprintf(t->me, sizeof(t->me), "%s", ev->peer);
	/* Stored-and-passed-on is the normal case: only "kept for later" is news. */
	if (ev->kind == CHAT_EV_STORED && !(ev->text_len > 6 && !memcmp(ev->text + ev->text_len - 6, "queued", 6))) {
		free(line);
		return;
	}
	if (!line)
		return;
	if (ev->peer && ev->kind != CHAT_EV_LOGGED_IN)
		learn_name(t, "", ev->peer);
	if (ev->room)
		learn_name(t, "#", ev->room);
	chat_ui_human(ev, t->me, cap, line);
	if (ev->kind == CHAT_EV_ERROR) {
		/* Kept: in the status line until the next input, and printed on
		 * the terminal if the program ends with an error. */
		snprintf(t->status_err, sizeof(t->status_err), "%s", line);
		if (t->nerrors == LAST_ERRORS) {
			free(t->errors[0]);
			memmove(t->errors, t->errors + 1, (LAST_ERRORS - 1) * sizeof(t->errors[0]));
			t->nerrors--;
		}
		char *plain = malloc(cap); /* printed as in line mode: "error CODE ..." */
		if (plain) {
			chat_ui_format(ev, cap, plain);
			t->errors[t->nerrors++] = plain;
		}
	}
	add_history(t, line, pair);
	if (!t->scroll)
		add_line(t->out, t, line, pair);
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
	/* Up/Down bring it back; never a password or a command carrying one. */
	if (n && secret_from(t) == (size_t)-1) {
		if (t->ntyped == TYPED) {
			free(t->typed[0]);
			memmove(t->typed, t->typed + 1, (TYPED - 1) * sizeof(t->typed[0]));
			t->ntyped--;
		}
		if ((t->typed[t->ntyped] = strndup(mb, n)) != NULL)
			t->ntyped++;
	}
	t->typed_pos = t->ntyped;
	t->status_err[0] = '\0';
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

/* Replace the typed line with the multibyte text s. */
static void set_input(struct chat_tui *t, const char *s)
{
	mbstate_t st;
	size_t n = 0;

	memset(&st, 0, sizeof(st));
	chat_wipe(t->input, t->input_len * sizeof(wchar_t));
	while (*s && n + 1 < INPUT_MAX) {
		wchar_t wc;
		size_t k = mbrtowc(&wc, s, strlen(s), &st);
		if (k == (size_t)-1 || k == (size_t)-2 || k == 0)
			break;
		t->input[n++] = wc;
		s += k;
	}
	t->input_len = t->cursor = n;
}

static void history_move(struct chat_tui *t, int dir)
{
	if (dir < 0 && t->typed_pos > 0)
		t->typed_pos--;
	else if (dir > 0 && t->typed_pos < t->ntyped)
		t->typed_pos++;
	else
		return;
	set_input(t, t->typed_pos < t->ntyped ? t->typed[t->typed_pos] : "");
}

static void kill_range(struct chat_tui *t, size_t from, size_t to)
{
	memmove(&t->input[from], &t->input[to], (t->input_len - to) * sizeof(wchar_t));
	t->input_len -= to - from;
	chat_wipe(&t->input[t->input_len], (to - from) * sizeof(wchar_t));
	t->cursor = from;
}

/* Tab: complete the word before the cursor -- a command at the start of
 * the line, else a user or #room name seen so far.  One match is put in;
 * several are listed and their common part is put in. */
static void complete(struct chat_tui *t)
{
	static const char *const cmds[] = {
		"/accept", "/adduser", "/close", "/deluser", "/demote", "/exit", "/fingerprint",
		"/friend", "/friends", "/help", "/join", "/leave", "/msg", "/passwd", "/promote",
		"/quit", "/reject", "/resetpw", "/rooms", "/suite", "/talk", "/to", "/trust",
		"/users", "/verify", "/who",
	};
	const char *cand[NAMES + 32];
	size_t start = t->cursor, ncand = 0, common = 0;
	char word[CHAT_NAME_MAX + 4];

	while (start > 0 && t->input[start - 1] != L' ')
		start--;
	if (t->cursor - start >= sizeof(word) - 1)
		return;
	for (size_t i = start; i < t->cursor; i++) {
		if (t->input[i] > 127)
			return;
		word[i - start] = (char)t->input[i];
	}
	word[t->cursor - start] = '\0';
	size_t wl = strlen(word);
	if (start == 0 && word[0] == '/') {
		for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
			if (!strncmp(cmds[i], word, wl))
				cand[ncand++] = cmds[i];
	} else {
		for (size_t i = 0; i < t->nnames; i++)
			if (!strncmp(t->names[i], word, wl))
				cand[ncand++] = t->names[i];
	}
	if (!ncand)
		return;
	common = strlen(cand[0]);
	for (size_t i = 1; i < ncand; i++) {
		size_t k = 0;
		while (k < common && cand[i][k] == cand[0][k])
			k++;
		common = k;
	}
	if (ncand > 1) {
		char list[1024];
		size_t used = 0;
		for (size_t i = 0; i < ncand && used < sizeof(list); i++) {
			int k = snprintf(list + used, sizeof(list) - used, "%s%s", i ? " " : "", cand[i]);
			if (k < 0)
				break;
			used += (size_t)k;
		}
		add_history(t, list, PAIR_SYSTEM);
		if (!t->scroll)
			add_line(t->out, t, list, PAIR_SYSTEM);
		wnoutrefresh(t->out);
	}
	for (size_t k = wl; k < common && t->input_len + 2 < INPUT_MAX; k++) {
		memmove(&t->input[t->cursor + 1], &t->input[t->cursor],
		        (t->input_len - t->cursor) * sizeof(wchar_t));
		t->input[t->cursor++] = (wchar_t)(unsigned char)cand[0][k];
		t->input_len++;
	}
	if (ncand == 1 && t->input_len + 2 < INPUT_MAX &&
	    (t->cursor == t->input_len || t->input[t->cursor] != L' ')) {
		memmove(&t->input[t->cursor + 1], &t->input[t->cursor],
		        (t->input_len - t->cursor) * sizeof(wchar_t));
		t->input[t->cursor++] = L' ';
		t->input_len++;
	}
}

static void scroll_by(struct chat_tui *t, int pages)
{
	size_t page = LINES > 6 ? (size_t)LINES - 4 : 1;

	if (pages < 0)
		t->scroll = t->scroll + page < t->hist_count ? t->scroll + page :
		            t->hist_count ? t->hist_count - 1 : 0;
	else
		t->scroll = t->scroll > page ? t->scroll - page : 0;
	redraw(t);
}

/* A function key (KEY_*): 1 if the input line must be drawn again. */
static int on_code(struct chat_tui *t, wint_t ch)
{
	switch (ch) {
	case KEY_BACKSPACE:
		if (t->cursor) {
			memmove(&t->input[t->cursor - 1], &t->input[t->cursor],
			        (t->input_len - t->cursor) * sizeof(wchar_t));
			t->cursor--;
			t->input_len--;
		}
		break;
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
	case KEY_DC:
		if (t->cursor < t->input_len)
			kill_range(t, t->cursor, t->cursor + 1);
		break;
	case KEY_UP:
		history_move(t, -1);
		break;
	case KEY_DOWN:
		history_move(t, 1);
		break;
	case KEY_PPAGE:
		scroll_by(t, -1);
		return 0;
	case KEY_NPAGE:
		scroll_by(t, 1);
		return 0;
	case KEY_ENTER:
		submit(t);
		return 0;
	case KEY_RESIZE:
		layout(t);
		redraw(t);
		return 0;
	default:
		break;
	}
	return 1;
}

/* The bytes after a lone ESC: "[" or "O", digits, then the final byte of
 * an ANSI/VT cursor or editing key.  *code gets the KEY_* value when one is
 * complete; 1 while the byte belongs to the sequence (eaten), 0 when it is
 * not one (typed as usual). */
static int esc_byte(struct chat_tui *t, wint_t ch, wint_t *code)
{
	*code = 0;
	if (t->esc == 1) {
		t->esc = (ch == '[' || ch == 'O') ? 2 : 0;
		t->esc_num = 0;
		return t->esc == 2;
	}
	if (ch >= '0' && ch <= '9' && t->esc_num < 100) {
		t->esc_num = t->esc_num * 10 + (unsigned)(ch - '0');
		return 1;
	}
	t->esc = 0;
	switch (ch) {
	case 'A': *code = KEY_UP; break;
	case 'B': *code = KEY_DOWN; break;
	case 'C': *code = KEY_RIGHT; break;
	case 'D': *code = KEY_LEFT; break;
	case 'H': *code = KEY_HOME; break;
	case 'F': *code = KEY_END; break;
	case '~':
		*code = t->esc_num == 1 || t->esc_num == 7 ? KEY_HOME :
		        t->esc_num == 4 || t->esc_num == 8 ? KEY_END :
		        t->esc_num == 3 ? KEY_DC : t->esc_num == 5 ? KEY_PPAGE :
		        t->esc_num == 6 ? KEY_NPAGE : 0;
		break;
	default:
		return 0;
	}
	return 1;
}

static void on_key(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct chat_tui *t = arg;
	wint_t ch, code;
	int r;

	(void)loop;
	(void)fd;
	(void)events;
	while ((r = wget_wch(t->in, &ch)) != ERR) {
		if (r == KEY_CODE_YES) {
			if (ch != KEY_RESIZE) /* (ncurses may put one between ESC and "[") */
				t->esc = 0;
			if (!on_code(t, ch))
				continue;
		} else if (t->esc && esc_byte(t, ch, &code)) {
			if (!code || !on_code(t, code))
				continue;
		} else if (ch == 27) {
			t->esc = 1;
			continue;
		} else if (ch == '\n' || ch == '\r') {
			submit(t);
			continue;
		} else if (ch == 127 || ch == 8) {
			on_code(t, KEY_BACKSPACE);
		} else if (ch == 21) { /* ^U: all before the cursor */
			kill_range(t, 0, t->cursor);
		} else if (ch == 11) { /* ^K: all from the cursor */
			kill_range(t, t->cursor, t->input_len);
		} else if (ch == 23) { /* ^W: the word before the cursor */
			size_t from = t->cursor;
			while (from > 0 && t->input[from - 1] == L' ')
				from--;
			while (from > 0 && t->input[from - 1] != L' ')
				from--;
			kill_range(t, from, t->cursor);
		} else if (ch == 1) { /* ^A */
			t->cursor = 0;
		} else if (ch == 5) { /* ^E */
			t->cursor = t->input_len;
		} else if (ch == '\t') {
			complete(t);
		} else if (ch == 4 && !t->input_len) { /* ^D on an empty line */
			if (t->client)
				chat_client_input_quit(t->client);
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
		chat_client_input_quit(t->client);
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
	/* newterm, not initscr: an unknown terminal is an error to handle
	 * (line mode), not an exit. */
	const char *term = getenv("TERM");
	if (!term || !*term || !strcmp(term, "dumb") ||
	    !(t->screen = newterm(term, stdout, stdin))) {
		free(t);
		return -1;
	}
	set_term(t->screen);
	if (has_colors() && !getenv("NO_COLOR") && start_color() == OK) {
		use_default_colors();
		init_pair(PAIR_OWN, COLOR_GREEN, -1);
		init_pair(PAIR_PEER, COLOR_CYAN, -1);
		init_pair(PAIR_SYSTEM, -1, -1);
		init_pair(PAIR_WARN, COLOR_YELLOW, -1);
		init_pair(PAIR_ERROR, COLOR_RED, -1);
		init_pair(PAIR_INSECURE, COLOR_MAGENTA, -1);
		t->color = 1;
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
		delscreen(t->screen);
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

void chat_tui_stop(struct chat_tui *t, int status)
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
	delscreen(t->screen);
	/* The screen is gone with what it showed: why it ended stays visible. */
	if (status)
		for (size_t i = 0; i < t->nerrors; i++)
			fprintf(stderr, "chat-client: %s\n", t->errors[i]);
	for (size_t i = 0; i < t->nerrors; i++)
		free(t->errors[i]);
	for (size_t i = 0; i < t->ntyped; i++)
		free(t->typed[i]);
	for (size_t i = 0; i < t->hist_count; i++)
		free(t->history[(t->hist_start + i) % HISTORY]);
	free(t);
}
