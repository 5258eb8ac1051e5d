/* chat-client: the terminal client.  A talk-style screen when stdin is a
 * terminal, line mode otherwise (scriptable: docs/CLIENT.md).  This file is
 * the thin part: arguments, the account password, --read-log, the loop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "directory.h"
#include "format.h"
#include "host.h"
#include "lines.h"
#include "log.h"
#include "loop.h"
#include "program.h"
#include "secret.h"
#include "term.h"
#include "text.h"
#include "tui.h"

struct app {
	struct chat_prog prog;
	struct chat_loop *loop;
	struct chat_client *client;
	struct chat_directory *dir;
	struct chat_tui *tui;
	struct chat_lines *input;
	uint64_t eof_at, last_event; /* monotonic ms */
	/* options that are not configuration keys */
	const char *password_file, *read_log;
	int guest, register_account;
	int tty;
	/* What the client's configuration points at: it outlives run(), since
	 * chat_client_free() (which saves the keystore) runs after it. */
	char user[CHAT_NAME_MAX + 8];
	char suites[16][33];
	char relays[CHAT_CFG_ADDRS_MAX][CHAT_CFG_ADDR_LEN];
	int no_reconnect;
	int pw_asked; /* the keystore's password was typed at the terminal: wrong, ask again */
};

/* At end of scripted input, replies may still be on their way: quit once the
 * relay has been quiet for a moment, or after a bound. */
#define LINGER_QUIET_MS 500
#define LINGER_MAX_MS 5000
#define PASSWORD_TRIES CHAT_CLIENT_PASSWORD_TRIES

static int min_security(const char *v)
{
	return !strcmp(v, "secure") ? CHAT_MINSEC_SECURE :
	       !strcmp(v, "insecure") ? CHAT_MINSEC_INSECURE : CHAT_MINSEC_AUTO;
}

/* ---- passwords */

/* From file if given, else typed at the terminal (flags: chat_secret_ask).
 * 0, or 1 with the error printed. */
static int get_secret(struct app *a, const char *file, const char *prompt, unsigned flags,
                      char *dst, size_t cap)
{
	char err[1024];
	int rc = file ? chat_secret_from_file(file, "password", cap, dst, sizeof(err), err)
	              : chat_secret_ask(prompt, "password", flags, cap, dst, sizeof(err), err);

	if (rc)
		chat_prog_error(&a->prog, "%s", err);
	return rc ? 1 : 0;
}

/* ---- --read-log */

static int read_log(struct app *a)
{
	char pw[CHAT_SECRET_MAX], prompt[600];
	int rc;

	if (access(a->read_log, F_OK) != 0) {
		chat_prog_error(&a->prog, "%s: %s", a->read_log, strerror(errno));
		return 1;
	}
	if (!a->password_file && !a->tty) {
		chat_prog_error(&a->prog, "the password of %s is needed: give --password-file FILE "
		                "(stdin is not a terminal)", a->read_log);
		return 2;
	}
	snprintf(prompt, sizeof(prompt), "password for %s: ", a->read_log);
	rc = get_secret(a, a->password_file, prompt, 0, pw, sizeof(pw)) ? 1 :
	     chat_prog_show_log(&a->prog, a->read_log, strlen(pw), pw);
	chat_wipe(pw, sizeof(pw));
	return rc;
}

/* ---- line mode */

static void line_event(void *ui, const struct chat_event *ev)
{
	struct app *a = ui;
	size_t cap = 4 * ev->text_len + 256;
	char *buf = malloc(cap);

	a->last_event = chat_loop_now_ms();
	if (a->tui) {
		free(buf);
		chat_tui_event(a->tui, ev);
		return;
	}
	if (!buf)
		return;
	chat_ui_format(ev, cap, buf);
	puts(buf);
	fflush(stdout);
	free(buf);
	/* A person at a terminal types the password next: no echo. */
	if (ev->kind == CHAT_EV_PASSWORD && a->tty) {
		fprintf(stderr, "password for %s: ", ev->peer);
		fflush(stderr);
		chat_term_echo(0);
	}
}

static void input_line(void *arg, size_t len, const char *line)
{
	struct app *a = arg;
	int secret = chat_client_wants_password(a->client);

	chat_client_input(a->client, len, line);
	if (secret && chat_term_echo_is_off()) {
		chat_term_echo(1);
		fputc('\n', stderr); /* the Enter not echoed: what follows starts a line */
	}
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
		chat_client_input_quit(a->client);
		return -1;
	}
	return 100;
}

static void input_eof(void *arg)
{
	struct app *a = arg;

	a->eof_at = a->last_event = chat_loop_now_ms();
	if (chat_client_wants_password(a->client)) { /* nothing to linger for */
		if (chat_term_echo_is_off()) {
			chat_term_echo(1);
			fputc('\n', stderr);
		}
		chat_client_input_quit(a->client);
		return;
	}
	if (chat_loop_timer_add(a->loop, 100, linger, a, NULL) != CHAT_OK)
		chat_client_input_quit(a->client);
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

	if (u && *u) {
		snprintf(dst, cap, "%s", u);
	} else {
		chat_term_prompt("username: ", 0, cap, dst);
	}
	const char *why = chat_name_check(strlen(dst), dst);
	if (why) {
		chat_prog_error(&a->prog, "username '%s' %s", dst, why);
		return -1;
	}
	return 0;
}

/* The account password: the password file; else, at a terminal, asked for
 * when it is sure to be needed (--register, or a keystore exists for the
 * user); otherwise none (a guest, or asked later if the relay says the name
 * is registered).  Returns 0, or the exit status. */
static int get_password(struct app *a, const char *user, const char *data_dir, char *pw,
                        size_t cap, int *have, int *interactive)
{
	const char *file = a->password_file ? a->password_file :
	                   chat_config_path(a->prog.cfg, "client", "password_file");
	char prompt[600];

	*have = *interactive = 0;
	if (a->guest && a->register_account) {
		chat_prog_error(&a->prog, "--guest and --register exclude each other");
		return 2;
	}
	if (a->guest)
		return 0;
	if (file && *file) {
		if (get_secret(a, file, NULL, 0, pw, cap))
			return 1;
		*have = 1;
		return 0;
	}
	if (!a->tty) {
		if (a->register_account) {
			chat_prog_error(&a->prog, "--register needs a password: give --password-file FILE "
			                "(stdin is not a terminal, and a password is never read from the "
			                "message input)");
			return 2;
		}
		return 0; /* scripted: a guest */
	}
	if (a->register_account) {
		snprintf(prompt, sizeof(prompt), "new password for %s: ", user);
		if (get_secret(a, NULL, prompt, CHAT_SECRET_CONFIRM, pw, cap))
			return 1;
		*have = 1;
		return 0;
	}
	char keys[4096];
	snprintf(keys, sizeof(keys), "%s/%s.keys", data_dir ? data_dir : "", user);
	if (data_dir && *data_dir && access(keys, F_OK) == 0) {
		snprintf(prompt, sizeof(prompt), "password for %s (empty: log in as a guest): ", user);
		if (get_secret(a, NULL, prompt, CHAT_SECRET_ALLOW_EMPTY, pw, cap))
			return 1;
		*have = pw[0] != '\0';
		a->pw_asked = *have;
		return 0;
	}
	*interactive = 1;
	return 0;
}

static int run(struct app *a)
{
	char *user = a->user, (*suites)[33] = a->suites, err[1024], pw[CHAT_SECRET_MAX];
	const char *dir_path = chat_config_path(a->prog.cfg, "client", "directory");
	const char *data_dir = chat_config_path(a->prog.cfg, "client", "data_dir");
	int rc, have_pw = 0, interactive = 0;

	if (ask_user(a, user, sizeof(a->user)))
		return 2;
	if (dir_path && *dir_path &&
	    chat_directory_load(dir_path, &a->dir, sizeof(err), err) != CHAT_OK) {
		chat_prog_error(&a->prog, "%s (client.directory, %s)", err,
		                chat_config_where(a->prog.cfg, "client", "directory"));
		return 1;
	}
	rc = get_password(a, user, data_dir, pw, sizeof(pw), &have_pw, &interactive);
	if (rc)
		goto out;
	size_t nrelays = chat_config_addresses(a->prog.cfg, "client", "connect", CHAT_CFG_ADDRS_MAX,
	                                       a->relays);
	struct chat_client_config cc = {
		.relay = nrelays ? a->relays[0] : chat_config_get(a->prog.cfg, "client", "connect"),
		.relays = nrelays ? (const char (*)[CHAT_CFG_ADDR_LEN])a->relays : NULL,
		.nrelays = nrelays,
		.reconnect = !a->no_reconnect && chat_config_bool(a->prog.cfg, "client", "reconnect"),
		.user = user,
		.tp = a->prog.transport->desc->ops.transport,
		.tp_host = &a->prog.transport->host,
		.reg = a->prog.reg,
		.plugin_dir = a->prog.plugin_dir,
		.suites = (const char (*)[33])suites,
		.directory = a->dir,
		.min_security = min_security(chat_config_get(a->prog.cfg, "client", "min_security")),
		.max_frame = a->prog.max_frame,
		.max_message = (size_t)chat_config_int(a->prog.cfg, "client", "max_message"),
		.connect_timeout_ms = (int)chat_config_int(a->prog.cfg, "client", "connect_timeout"),
		.keepalive_ms = (int)chat_config_int(a->prog.cfg, "client", "keepalive") * 1000,
		.dead_after_ms = (int)chat_config_int(a->prog.cfg, "client", "dead_after") * 1000,
		.password = have_pw ? pw : NULL,
		.password_len = have_pw ? strlen(pw) : 0,
		.register_account = a->register_account,
		.interactive = interactive,
		.data_dir = data_dir,
		.kdf_iterations = (unsigned)chat_config_int(a->prog.cfg, "client", "kdf_iterations"),
		.scram_iterations = (unsigned)chat_config_int(a->prog.cfg, "client", "scram_iterations"),
	};
	cc.nsuites = chat_config_list(a->prog.cfg, "client", "suites", 16, suites);
	if ((rc = chat_loop_new(&a->loop))) {
		chat_prog_error(&a->prog, "cannot create the event loop: %s", chat_strerror(rc));
		rc = 1;
		goto out;
	}
	rc = chat_client_new(a->loop, &cc, line_event, a, &a->client, sizeof(err), err);
	if (rc) {
		chat_prog_error(&a->prog, "%s (client.suites, %s)", err,
		                chat_config_where(a->prog.cfg, "client", "suites"));
		rc = 1;
		goto out;
	}
	/* The keystore and history open here, before any network (PBKDF2 runs once). */
	/* A mistyped password at the terminal: three tries, like ssh. */
	for (int tries = 1;; tries++) {
		rc = chat_client_start(a->client, sizeof(err), err);
		if (rc != CHAT_ERR_AUTH || !a->pw_asked || tries >= PASSWORD_TRIES)
			break;
		char prompt[600];
		snprintf(prompt, sizeof(prompt), "wrong password; password for %s (try %d of %d): ", user,
		         tries + 1, PASSWORD_TRIES);
		if (get_secret(a, NULL, prompt, 0, pw, sizeof(pw)) ||
		    chat_client_set_password(a->client, strlen(pw), pw) != CHAT_OK) {
			rc = 1;
			goto out;
		}
	}
	chat_wipe(pw, sizeof(pw));
	if (rc) {
		chat_prog_error(&a->prog, "%s", err);
		rc = 1;
		goto out;
	}
	if (a->tty && chat_tui_start(a->loop, &a->tui) == 0) {
		chat_tui_attach(a->tui, a->client);
	} else {
		if (a->tty) /* TERM unset, dumb or unknown: the line mode works anywhere */
			fprintf(stderr, "chat-client: the terminal '%s' cannot show the screen: line mode "
			        "(docs/CLIENT.md)\n", getenv("TERM") ? getenv("TERM") : "(TERM unset)");
		if (chat_lines_start(a->loop, STDIN_FILENO, cc.max_message + 256, &input_cbs, a,
		                     &a->input) != CHAT_OK) {
			chat_prog_error(&a->prog, "cannot read standard input");
			rc = 1;
			goto out;
		}
	}
	rc = chat_loop_run(a->loop);
	chat_tui_stop(a->tui, rc || (chat_client_done(a->client) && chat_client_status(a->client)));
	a->tui = NULL;
	if (rc) {
		chat_prog_error(&a->prog, "event loop failed: %s", chat_strerror(rc));
		rc = 1;
		goto out;
	}
	rc = chat_client_done(a->client) ? chat_client_status(a->client) : 0;
out:
	chat_wipe(pw, sizeof(pw));
	return rc;
}

int main(int argc, char **argv)
{
	static const struct chat_prog_flag flags[] = {
		{ "connect", 'C', "client", "connect", "ADDR", "relay address, host:port or [v6]:port;\nseveral, comma-separated, tried in turn" },
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
			.usage_tail =
				"Commands: /who /talk /accept /reject /msg /to /join /leave /rooms /fingerprint\n"
				"/verify /trust /suite /close /friends /friend /passwd /users /adduser /deluser\n"
				"/resetpw /promote /demote /quit /help.  With stdin not a terminal, one event per line\n"
				"(docs/CLIENT.md).\n",
			.flags = flags,
		},
	};
	/* Not configuration keys: chat_prog_take_opts takes them out of argv. */
	const struct chat_prog_opt opts[] = {
		{ "password-file", "FILE", CHAT_PROG_OPT_FILE, &a.password_file, NULL,
		  "log in with the account password on FILE's first line\n"
		  "(sets client.password_file); without it, at a\n"
		  "terminal the password is asked for when needed" },
		{ "register", NULL, 0, NULL, &a.register_account,
		  "create the account first (open registration), then log in" },
		{ "guest", NULL, 0, NULL, &a.guest, "log in as a guest, never ask for a password" },
		{ "no-reconnect", NULL, 0, NULL, &a.no_reconnect,
		  "end when the relay is lost instead of connecting again\n"
		  "(client.reconnect = no)" },
		{ "read-log", "FILE", CHAT_PROG_OPT_FILE, &a.read_log, NULL,
		  "verify your history FILE (client.data_dir/USER.log)\n"
		  "completely, then print it (nothing if anything fails)" },
		{ NULL, NULL, 0, NULL, NULL, NULL },
	};
	int status;

	a.tty = isatty(STDIN_FILENO);
	a.prog.opts = opts;
	status = chat_prog_take_opts(&a.prog, &argc, argv);
	if (status)
		return status;
	if (a.read_log) {
		/* A history is read without chat.ini, plugins or network. */
		if (argc > 1 || a.guest || a.register_account) {
			chat_prog_error(&a.prog, "--read-log takes only --password-file, not '%s'",
			                argc > 1 ? argv[1] : a.guest ? "--guest" : "--register");
			return 2;
		}
		status = read_log(&a);
		chat_term_restore();
		return status;
	}
	status = chat_prog_start(&a.prog, argc, argv);
	if (status < 0)
		status = run(&a);
	chat_term_restore();
	chat_client_free(a.client);
	if (a.loop) {
		chat_lines_stop(a.input);
		chat_loop_free(a.loop);
	}
	chat_directory_free(a.dir);
	chat_prog_finish(&a.prog);
	return status;
}
