/* chat-peer: direct peer-to-peer messages, one authenticated connection per
 * message (docs/PEER.md).  This file is the thin part: arguments, prompts,
 * the passphrase, the encrypted log, the event loop and how events look.
 * The protocol and its state machines are peer.c; the log is
 * core/src/seclog.c. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "host.h"
#include "lines.h"
#include "log.h"
#include "loop.h"
#include "peer.h"
#include "program.h"
#include "proto.h"
#include "seclog.h"
#include "secret.h"
#include "term.h"
#include "text.h"

struct app {
	struct chat_prog prog;
	const char *passphrase_file, *read_log; /* not configuration keys */
	int tty;
	char user[CHAT_NAME_MAX + 1];
	struct chat_loop *loop;
	struct chat_peer *peer;
	struct chat_seclog *log;
	struct chat_watch *sig_watch;
	struct chat_lines *input;
	int sig_fd;
};

/* ---- the passphrase */

/* The log passphrase: the first line of --passphrase-file, else typed at the
 * terminal with echo off.  Never the first line of the message input. */
static int get_passphrase(struct app *a, const char *log_path, int confirm, char *dst, size_t cap)
{
	char prompt[600], err[1024];
	int rc;

	if (!a->passphrase_file && !a->tty) {
		chat_prog_error(&a->prog, "the log passphrase for %s is needed: give --passphrase-file "
		                "FILE (stdin is not a terminal, and a passphrase is never read from the "
		                "message input)", log_path);
		return 2;
	}
	snprintf(prompt, sizeof(prompt), "%s passphrase for %s: ", confirm ? "new log" : "log",
	         log_path);
	rc = a->passphrase_file ?
	     chat_secret_from_file(a->passphrase_file, "passphrase", cap, dst, sizeof(err), err) :
	     chat_secret_ask(prompt, "passphrase", confirm ? CHAT_SECRET_CONFIRM : 0, cap, dst,
	                     sizeof(err), err);
	if (rc) {
		chat_prog_error(&a->prog, "%s", err);
		return 1;
	}
	return 0;
}

/* ---- --read-log */

static int read_log(struct app *a)
{
	char pass[CHAT_SECRET_MAX];
	int rc;

	a->tty = isatty(STDIN_FILENO);
	if (access(a->read_log, F_OK) != 0) {
		chat_prog_error(&a->prog, "%s: %s", a->read_log, strerror(errno));
		return 1;
	}
	rc = get_passphrase(a, a->read_log, 0, pass, sizeof(pass));
	if (!rc)
		rc = chat_prog_show_log(&a->prog, a->read_log, strlen(pass), pass);
	chat_wipe(pass, sizeof(pass));
	return rc;
}

/* ---- events */

static const char *const kind_names[] = {
	[CHAT_PEER_EV_LISTENING] = "listening", [CHAT_PEER_EV_MSG] = "msg",
	[CHAT_PEER_EV_COMPOSE] = "compose", [CHAT_PEER_EV_PASSWORD] = "need-password",
	[CHAT_PEER_EV_SENDING] = "sending", [CHAT_PEER_EV_DELIVERED] = "delivered",
	[CHAT_PEER_EV_ERROR] = "error", [CHAT_PEER_EV_WARNING] = "warning",
	[CHAT_PEER_EV_INFO] = "info", [CHAT_PEER_EV_HELP] = "help",
};

/* Line mode: "KIND [CODE] [PEER] [TEXT]", TEXT escaped to one safe line. */
static void line_event(void *ui, const struct chat_peer_event *ev)
{
	size_t cap = 4 * ev->text_len + 1;
	char *text = malloc(cap);

	(void)ui;
	if (!text)
		return;
	chat_text_escape(ev->text_len, ev->text, cap, text);
	printf("%s%s%s%s%s%s%s\n", kind_names[ev->kind], ev->code[0] ? " " : "", ev->code,
	       ev->peer[0] ? " " : "", ev->peer, text[0] ? " " : "", text);
	fflush(stdout);
	chat_wipe(text, cap);
	free(text);
}

/* At a terminal: for a person.  Message lines are escaped one by one. */
static void tty_event(void *ui, const struct chat_peer_event *ev)
{
	struct app *a = ui;
	size_t cap = 4 * ev->text_len + 1;
	char *text = malloc(cap), stamp[16];
	time_t now = time(NULL);
	struct tm tm;

	if (!text)
		return;
	chat_text_escape(ev->text_len, ev->text, cap, text);
	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%H:%M", &tm);
	switch (ev->kind) {
	case CHAT_PEER_EV_LISTENING:
		printf("chat-peer: you are %s, listening on %s with suite %s.\n"
		       "/send USER to write a message, /help for more.\n", a->user, text,
		       chat_config_get(a->prog.cfg, "peer", "suite"));
		break;
	case CHAT_PEER_EV_MSG: {
		const char *s = ev->text;
		size_t left = ev->text_len;
		printf("[%s] %s:", stamp, ev->peer);
		/* One escaped line per line of the message. */
		while (1) {
			const char *nl = memchr(s, '\n', left);
			size_t n = nl ? (size_t)(nl - s) : left;
			chat_text_escape(n, s, cap, text);
			printf(" %s\n", text);
			if (!nl)
				break;
			printf("%*s", (int)strlen(stamp) + 3 + (int)strlen(ev->peer), ":");
			left -= n + 1;
			s = nl + 1;
		}
		break;
	}
	case CHAT_PEER_EV_COMPOSE:
		printf("(message to %s: end it with a line holding only '.')\n", ev->peer);
		break;
	case CHAT_PEER_EV_PASSWORD:
		printf("password for %s at %s: ", ev->peer, text);
		break;
	case CHAT_PEER_EV_SENDING:
		printf("(sending to %s at %s)\n", ev->peer, text);
		break;
	case CHAT_PEER_EV_DELIVERED:
		printf("[%s] delivered to %s\n", stamp, ev->peer);
		break;
	case CHAT_PEER_EV_ERROR:
		printf("[%s] ! %s%s%s: %s\n", stamp, ev->code, ev->peer[0] ? " " : "", ev->peer, text);
		break;
	case CHAT_PEER_EV_WARNING:
		printf("warning: %s\n", text);
		break;
	default:
		printf("%s\n", text);
	}
	fflush(stdout);
	chat_wipe(text, cap);
	free(text);
}

/* ---- input */

static void input_line(void *arg, size_t len, const char *line)
{
	struct app *a = arg;

	/* A password line was typed without echo: end its line on the screen. */
	if (a->tty && chat_term_echo_is_off()) {
		fputc('\n', stdout);
		fflush(stdout);
	}
	chat_peer_input(a->peer, len, line);
	if (a->tty && chat_peer_wants_secret(a->peer) != chat_term_echo_is_off())
		chat_term_echo(!chat_peer_wants_secret(a->peer));
}

static void input_too_long(void *arg, size_t max)
{
	struct app *a = arg;

	chat_prog_error(&a->prog, "input line longer than %zu bytes; it is cut there", max);
}

static void input_eof(void *arg)
{
	struct app *a = arg;

	chat_peer_input_end(a->peer);
}

static const struct chat_lines_cbs input_cbs = {
	.line = input_line,
	.eof = input_eof,
	.too_long = input_too_long,
};

static void on_signal(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct signalfd_siginfo si;

	(void)events;
	(void)arg;
	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	chat_info("stopping on %s", strsignal((int)si.ssi_signo));
	chat_loop_stop(loop);
}

/* ---- setup */

static int setup_user(struct app *a)
{
	const char *u = chat_config_get(a->prog.cfg, "peer", "user");
	char buf[128];

	if (u && *u)
		snprintf(buf, sizeof(buf), "%s", u);
	else if (chat_term_prompt("username: ", 0, sizeof(buf), buf) != CHAT_OK)
		buf[0] = '\0';
	const char *why = chat_name_check(strlen(buf), buf);
	if (why) {
		chat_prog_error(&a->prog, "username '%s' %s", buf, why);
		return 2;
	}
	memcpy(a->user, buf, strlen(buf) + 1); /* checked: at most CHAT_NAME_MAX */
	return 0;
}

/* At a terminal, what chat.ini leaves open is asked for: the contacts file
 * (if empty) and the port (if peer.listen was not set anywhere). */
static int setup_terminal_questions(struct app *a)
{
	char buf[512], err[1024];

	if (!a->tty)
		return 0;
	const char *dir = chat_config_get(a->prog.cfg, "peer", "directory");
	if (!dir || !*dir) {
		if (chat_term_prompt("contacts file (JSON; empty: none, addresses typed by hand): ", 0,
		                     sizeof(buf), buf) != CHAT_OK)
			return 1;
		if (buf[0] && chat_config_override(a->prog.cfg, "peer", "directory", buf, "terminal",
		                                   sizeof(err), err)) {
			chat_prog_error(&a->prog, "%s", err);
			return 2;
		}
	}
	if (!strcmp(chat_config_where(a->prog.cfg, "peer", "listen"), "default")) {
		const char *def = chat_config_get(a->prog.cfg, "peer", "listen");
		const char *colon = strrchr(def, ':');
		char prompt[256];
		snprintf(prompt, sizeof(prompt), "port to listen on [%s]: ", colon ? colon + 1 : def);
		if (chat_term_prompt(prompt, 0, sizeof(buf), buf) != CHAT_OK)
			return 1;
		if (buf[0]) {
			char addr[sizeof(buf) + CHAT_ADDR_MAX + 2];
			snprintf(addr, sizeof(addr), "%.*s:%s", colon ? (int)(colon - def) : 0, def, buf);
			if (chat_config_override(a->prog.cfg, "peer", "listen", addr, "terminal",
			                         sizeof(err), err)) {
				chat_prog_error(&a->prog, "%s", err);
				return 2;
			}
		}
	}
	return 0;
}

static int open_log(struct app *a)
{
	char path[4096], pass[CHAT_SECRET_MAX], err[1024];
	const char *cfg_path = chat_config_path(a->prog.cfg, "peer", "log");
	int rc, created = 0;

	if (cfg_path && *cfg_path)
		snprintf(path, sizeof(path), "%s", cfg_path);
	else
		snprintf(path, sizeof(path), "chat-peer-%s.log", a->user);
	rc = get_passphrase(a, path, access(path, F_OK) != 0, pass, sizeof(pass));
	if (rc)
		return rc;
	rc = chat_seclog_open(path, strlen(pass), pass,
	                      (unsigned)chat_config_int(a->prog.cfg, "peer", "log_iterations"), &a->log,
	                      &created, NULL, sizeof(err), err);
	chat_wipe(pass, sizeof(pass));
	if (rc) {
		chat_prog_error(&a->prog, "%s%s", err, rc == CHAT_ERR_AUTH || rc == CHAT_ERR_INTEGRITY ||
		                rc == CHAT_ERR_MALFORMED ? " (nothing is appended to a log that does not "
		                "verify: check it with --read-log, or move it away)" : "");
		return 1;
	}
	chat_warn_if_shared(path, "peer.log");
	chat_info("message log %s: %s, %llu record(s)", path, created ? "created" : "verified",
	          (unsigned long long)chat_seclog_count(a->log));
	return 0;
}

static int run(struct app *a)
{
	char err[1024];
	const struct chat_loaded *suite = NULL;
	const char *suite_name = chat_config_get(a->prog.cfg, "peer", "suite");
	sigset_t mask;
	int rc;

	a->tty = isatty(STDIN_FILENO);
	if ((rc = setup_user(a)) || (rc = setup_terminal_questions(a)))
		return rc;
	if (chat_registry_load(a->prog.reg, a->prog.plugin_dir, CHAT_PLUGIN_CIPHER, suite_name, &suite,
	                       sizeof(err), err) != CHAT_OK) {
		chat_prog_error(&a->prog, "%s (peer.suite, %s)", err,
		                chat_config_where(a->prog.cfg, "peer", "suite"));
		return 1;
	}
	if ((rc = open_log(a)))
		return rc;

	struct chat_peer_config pc = {
		.user = a->user,
		.listen = chat_config_get(a->prog.cfg, "peer", "listen"),
		.tp = a->prog.transport->desc->ops.transport,
		.tp_host = &a->prog.transport->host,
		.suite = suite,
		.directory = chat_config_path(a->prog.cfg, "peer", "directory"),
		.log = a->log,
		.max_frame = a->prog.max_frame,
		.timeout_ms = (int)chat_config_int(a->prog.cfg, "peer", "timeout"),
	};
	if ((rc = chat_loop_new(&a->loop))) {
		chat_prog_error(&a->prog, "cannot create the event loop: %s", chat_strerror(rc));
		return 1;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	a->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (a->sig_fd < 0 || chat_loop_add(a->loop, a->sig_fd, CHAT_EV_READ, on_signal, a, &a->sig_watch)) {
		chat_prog_error(&a->prog, "cannot set up signal handling");
		return 1;
	}
	rc = chat_peer_new(a->loop, &pc, a->tty ? tty_event : line_event, a, &a->peer, sizeof(err), err);
	if (rc) {
		chat_prog_error(&a->prog, "%s (peer.listen %s, peer.directory %s)", err,
		                chat_config_where(a->prog.cfg, "peer", "listen"),
		                chat_config_where(a->prog.cfg, "peer", "directory"));
		return 1;
	}
	chat_info("listening on %s as %s (suite %s, transport %s)", chat_peer_address(a->peer), a->user,
	          suite->desc->name, a->prog.transport->desc->name);
	if (chat_lines_start(a->loop, STDIN_FILENO, CHAT_PEER_MAX_MESSAGE + 256, &input_cbs, a,
	                     &a->input) != CHAT_OK) {
		chat_prog_error(&a->prog, "cannot read standard input");
		return 1;
	}
	if (!chat_peer_done(a->peer))
		rc = chat_loop_run(a->loop);
	if (rc) {
		chat_prog_error(&a->prog, "event loop failed: %s", chat_strerror(rc));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct chat_prog_flag flags[] = {
		{ "listen", 'l', "peer", "listen", "ADDR", "address to listen on, host:port or [v6]:port" },
		{ "user", 'u', "peer", "user", "NAME", "your username (asked for when not given)" },
		{ "directory", 'd', "peer", "directory", "FILE", "JSON contacts: username, ip, port, password" },
		{ "suite", 'S', "peer", "suite", "NAME", "cipher suite to send with and to accept" },
		{ NULL, 0, NULL, NULL, NULL, NULL },
	};
	struct app a = {
		.prog = {
			.name = "chat-peer",
			.section = "peer",
			.summary = "Peer-to-peer node of the chat framework: one authenticated connection per message.",
			.usage_tail =
				"Input: /send USER (a directory contact) or /send USER@HOST:PORT (then a line with\n"
				"USER's password), then the message lines, ended by a line holding only '.'; a\n"
				"line starting with '.' is written with one more '.'.  /contacts /help /quit.\n"
				"With stdin not a terminal, one event per line (docs/PEER.md).\n",
			.flags = flags,
			.refuse_flags = CHAT_FLAG_IDENTITY,
			.refuse_why = "authenticates with identity keys, which chat-peer does not keep yet: "
			              "use a suite with a shared password (aescbc-hmac)",
		},
		.sig_fd = -1,
	};
	/* Not configuration keys: chat_prog_take_opts takes them out of argv. */
	const struct chat_prog_opt opts[] = {
		{ "passphrase-file", "FILE", CHAT_PROG_OPT_FILE, &a.passphrase_file, NULL,
		  "the log passphrase is the first line of FILE (else it\n"
		  "is asked at the terminal; never read from the input)" },
		{ "read-log", "FILE", CHAT_PROG_OPT_FILE, &a.read_log, NULL,
		  "verify the encrypted message log FILE completely, then\n"
		  "print its records (nothing if anything fails to verify)" },
		{ NULL, NULL, 0, NULL, NULL, NULL },
	};
	int status;

	a.prog.opts = opts;
	status = chat_prog_take_opts(&a.prog, &argc, argv);
	if (status)
		return status;
	if (a.read_log) {
		/* A log is read without chat.ini, plugins or network. */
		if (argc > 1) {
			chat_prog_error(&a.prog, "--read-log takes only --passphrase-file, not '%s'", argv[1]);
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
	if (a.loop) {
		chat_peer_free(a.peer);
		chat_lines_stop(a.input);
		chat_loop_remove(a.loop, a.sig_watch);
		chat_loop_free(a.loop);
	}
	if (a.sig_fd >= 0)
		close(a.sig_fd);
	chat_seclog_close(a.log);
	chat_prog_finish(&a.prog);
	return status;
}
