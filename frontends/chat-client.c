/* chat-client: the terminal client.  A talk-style screen when stdin is a
 * terminal, line mode otherwise (scriptable: docs/CLIENT.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client-ui.h"
#include "client.h"
#include "directory.h"
#include "lines.h"
#include "log.h"
#include "loop.h"
#include "program.h"
#include "text.h"

struct app {
	struct chat_prog prog;
	struct chat_loop *loop;
	struct chat_client *client;
	struct chat_directory *dir;
	struct chat_tui *tui;
	struct chat_lines *input;
	uint64_t eof_at, last_event; /* monotonic ms */
};

/* At end of scripted input, replies may still be on their way: quit once the
 * relay has been quiet for a moment, or after a bound. */
#define LINGER_QUIET_MS 500
#define LINGER_MAX_MS 5000

static const char *const kind_names[] = {
	[CHAT_EV_CONNECTED] = "connected", [CHAT_EV_LOGGED_IN] = "logged-in",
	[CHAT_EV_WHO] = "who", [CHAT_EV_WHO_END] = "who-end", [CHAT_EV_OFFER] = "offer",
	[CHAT_EV_OFFERED] = "offered", [CHAT_EV_REJECTED] = "rejected",
	[CHAT_EV_ESTABLISHED] = "established", [CHAT_EV_MSG] = "msg", [CHAT_EV_ROOM_MSG] = "room",
	[CHAT_EV_JOINED] = "joined", [CHAT_EV_ROOM_JOIN] = "room-join",
	[CHAT_EV_ROOM_LEAVE] = "room-leave", [CHAT_EV_ROOMS] = "rooms", [CHAT_EV_LEFT] = "left",
	[CHAT_EV_CLOSED] = "closed", [CHAT_EV_FINGERPRINT] = "fingerprint", [CHAT_EV_SUITE] = "suite",
	[CHAT_EV_QUEUED] = "queued", [CHAT_EV_INFO] = "info", [CHAT_EV_WARNING] = "warning",
	[CHAT_EV_ERROR] = "error", [CHAT_EV_BYE] = "bye", [CHAT_EV_HELP] = "help",
	[CHAT_EV_SENT] = "sent",
};

size_t chat_ui_format(const struct chat_event *ev, size_t cap, char *dst)
{
	size_t used = 0;
	int n;

#define ADD(...) do { n = snprintf(dst + used, used < cap ? cap - used : 0, __VA_ARGS__); \
	if (n > 0) used += (size_t)n; } while (0)
	ADD("%s", kind_names[ev->kind]);
	if (ev->kind == CHAT_EV_ERROR)
		ADD(" %s", ev->code);
	if (ev->room[0])
		ADD(" %s", ev->room);
	if (ev->peer[0])
		ADD(" %s", ev->peer);
	if (ev->suite[0])
		ADD(" %s", ev->suite);
	if (ev->insecure)
		ADD(" insecure");
	if (ev->kind == CHAT_EV_SENT) { /* scripts get the size; the text is theirs already */
		ADD(" %zu", ev->text_len);
	} else if (ev->text_len) {
		ADD(" ");
		used += chat_text_escape(ev->text_len, ev->text, used < cap ? cap - used : 0,
		                         dst + (used < cap ? used : cap));
	}
#undef ADD
	if (cap)
		dst[used < cap ? used : cap - 1] = '\0';
	return used;
}

static void line_event(void *ui, const struct chat_event *ev)
{
	struct app *a = ui;
	size_t cap = 4 * ev->text_len + 256;
	char *buf = malloc(cap);

	a->last_event = chat_loop_now_ms();
	if (!buf)
		return;
	chat_ui_format(ev, cap, buf);
	puts(buf);
	fflush(stdout);
	free(buf);
}

static void input_line(void *arg, size_t len, const char *line)
{
	struct app *a = arg;

	chat_client_input(a->client, len, line);
}

static void input_too_long(void *arg, size_t max)
{
	struct app *a = arg;

	chat_prog_error(&a->prog, "input line longer than %zu bytes; it is cut there", max);
}

static long long linger(struct chat_loop *loop, void *arg)
{
	struct app *a = arg;
	uint64_t now = chat_loop_now_ms();

	(void)loop;
	if (now - a->last_event >= LINGER_QUIET_MS || now - a->eof_at >= LINGER_MAX_MS) {
		chat_client_input(a->client, 5, "/quit");
		return -1;
	}
	return 100;
}

static void input_eof(void *arg)
{
	struct app *a = arg;

	a->eof_at = a->last_event = chat_loop_now_ms();
	if (chat_loop_timer_add(a->loop, 100, linger, a, NULL) != CHAT_OK)
		chat_client_input(a->client, 5, "/quit");
}

static const struct chat_lines_cbs input_cbs = {
	.line = input_line,
	.eof = input_eof,
	.too_long = input_too_long,
};

/* The username: from --user / client.user, else asked for. */
static int ask_user(struct app *a, char *dst, size_t cap)
{
	const char *u = chat_config_get(a->prog.cfg, "client", "user");
	size_t n = 0;
	char c;

	if (u && *u) {
		snprintf(dst, cap, "%s", u);
	} else {
		fprintf(stderr, "username: ");
		fflush(stderr);
		/* Byte by byte: what follows the name stays unread for the loop. */
		while (read(STDIN_FILENO, &c, 1) == 1 && c != '\n')
			if (n + 1 < cap && c != '\r')
				dst[n++] = c;
		dst[n] = '\0';
	}
	const char *why = chat_name_check(strlen(dst), dst);
	if (why) {
		chat_prog_error(&a->prog, "username '%s' %s", dst, why);
		return -1;
	}
	return 0;
}

static int run(struct app *a)
{
	char user[CHAT_NAME_MAX + 8], err[1024], suites[16][33];
	const char *dir_path = chat_config_path(a->prog.cfg, "client", "directory");
	int rc, tty = isatty(STDIN_FILENO);

	if (ask_user(a, user, sizeof(user)))
		return 2;
	if (dir_path && *dir_path &&
	    chat_directory_load(dir_path, &a->dir, sizeof(err), err) != CHAT_OK) {
		chat_prog_error(&a->prog, "%s (client.directory, %s)", err,
		                chat_config_where(a->prog.cfg, "client", "directory"));
		return 1;
	}
	struct chat_client_config cc = {
		.relay = chat_config_get(a->prog.cfg, "client", "connect"),
		.user = user,
		.tp = a->prog.transport->desc->ops.transport,
		.tp_host = &a->prog.transport->host,
		.reg = a->prog.reg,
		.plugin_dir = a->prog.plugin_dir,
		.suites = (const char (*)[33])suites,
		.directory = a->dir,
		.max_frame = a->prog.max_frame,
		.max_message = (size_t)chat_config_int(a->prog.cfg, "client", "max_message"),
		.connect_timeout_ms = (int)chat_config_int(a->prog.cfg, "client", "connect_timeout"),
	};
	cc.nsuites = chat_config_list(a->prog.cfg, "client", "suites", 16, suites);
	if ((rc = chat_loop_new(&a->loop))) {
		chat_prog_error(&a->prog, "cannot create the event loop: %s", chat_strerror(rc));
		return 1;
	}
	if (tty && chat_tui_start(a->loop, &a->tui) != 0)
		a->tui = NULL;
	rc = chat_client_new(a->loop, &cc, a->tui ? chat_tui_event : line_event,
	                     a->tui ? (void *)a->tui : (void *)a, &a->client, sizeof(err), err);
	if (rc) {
		chat_tui_stop(a->tui);
		a->tui = NULL;
		chat_prog_error(&a->prog, "%s (client.suites, %s)", err,
		                chat_config_where(a->prog.cfg, "client", "suites"));
		return 1;
	}
	if (a->tui) {
		chat_tui_attach(a->tui, a->client);
	} else if (chat_lines_start(a->loop, STDIN_FILENO, cc.max_message + 256, &input_cbs, a,
	                            &a->input) != CHAT_OK) {
		chat_prog_error(&a->prog, "cannot read standard input");
		return 1;
	}
	rc = chat_loop_run(a->loop);
	chat_tui_stop(a->tui);
	a->tui = NULL;
	if (rc) {
		chat_prog_error(&a->prog, "event loop failed: %s", chat_strerror(rc));
		return 1;
	}
	return chat_client_done(a->client) ? chat_client_status(a->client) : 0;
}

int main(int argc, char **argv)
{
	static const struct chat_prog_flag flags[] = {
		{ "connect", 'C', "client", "connect", "ADDR", "relay address, host:port or [v6]:port" },
		{ "user", 'u', "client", "user", "NAME", "your username (asked for when not given)" },
		{ "suites", 'S', "client", "suites", "LIST", "suites you allow, most preferred first" },
		{ "directory", 'd', "client", "directory", "FILE", "JSON contacts with shared passwords" },
		{ NULL, 0, NULL, NULL, NULL, NULL },
	};
	struct app a = {
		.prog = {
			.name = "chat-client",
			.section = "client",
			.summary = "Terminal client of the chat framework: end-to-end encrypted talk through a relay.",
			.usage_tail = "Commands: /who /talk /accept /reject /msg /to /join /leave /rooms /fingerprint\n"
			              "/suite /close /quit /help.  With stdin not a terminal, one event per line\n"
			              "(docs/CLIENT.md).\n",
			.flags = flags,
		},
	};
	int status = chat_prog_start(&a.prog, argc, argv);

	if (status < 0)
		status = run(&a);
	if (a.loop) {
		chat_client_free(a.client);
		chat_lines_stop(a.input);
		chat_loop_free(a.loop);
	}
	chat_directory_free(a.dir);
	chat_prog_finish(&a.prog);
	return status;
}
