/* What the user types: /commands and text for the current conversation. */
#include "client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMMAND_MAX 1024 /* longest command line (only /msg carries long text) */

int client_valid_name(struct chat_client *c, const char *what, const char *name)
{
	const char *why = chat_name_check(strlen(name), name);

	if (why) {
		client_fail(c, name, "bad-name", "%s '%s' %s", what, name, why);
		return 0;
	}
	return 1;
}

const char *client_word(const char *s, size_t cap, char *dst)
{
	size_t n = 0;

	while (*s == ' ')
		s++;
	while (*s && *s != ' ') {
		if (n + 1 < cap)
			dst[n++] = *s;
		else
			n = cap; /* too long: poison */
		s++;
	}
	if (n >= cap)
		n = cap - 1, dst[0] = '\001';
	dst[n] = '\0';
	while (*s == ' ')
		s++;
	return s;
}

static void cmd_help(struct chat_client *c)
{
	static const char *const lines[] = {
		"/who                   who is online, with the suites each allows (friends first)",
		"/talk USER             offer USER a conversation (they must /accept)",
		"/accept USER           accept USER's offer;  /reject USER [REASON] refuse it",
		"/msg USER TEXT         send TEXT to USER (offers a conversation if needed)",
		"/to USER | /to #ROOM   where plain lines go",
		"/join ROOM  /leave ROOM  /rooms   rooms (messages are encrypted per member)",
		"/fingerprint [USER]    a string to compare aloud with USER (default: the current one)",
		"/verify USER [yes]     the safety number of your and USER's identity keys; yes: mark verified",
		"/trust USER            accept USER's new identity key (forget the pinned one)",
		"/suite [USER]          the suites you allow, or the one used with USER",
		"/close [USER]          end the conversation with USER, or the current one (also: /exit, exit)",
		"/friends               your friends and friend requests",
		"/friend add USER       ask USER to be your friend (or accept their request)",
		"/friend remove USER    end a friendship, withdraw or decline a request",
		"/passwd NEW            change your account password",
		"/users  /adduser NAME PASSWORD  /deluser NAME  /resetpw NAME PASSWORD",
		"/promote NAME  /demote NAME     administration (admins only)",
		"/quit                  leave",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		client_emit(c, CHAT_EV_HELP, NULL, NULL, NULL, NULL, strlen(lines[i]), lines[i], 0);
}

static void cmd_suite(struct chat_client *c, const char *arg)
{
	struct conv *v;

	if (!arg[0]) {
		char list[600];
		client_csv(c->neff, (const char (*)[CHAT_NAME_MAX + 1])c->eff, sizeof(list), list);
		client_emit(c, CHAT_EV_SUITE, NULL, NULL, NULL, NULL, strlen(list), list, 0);
	} else if ((v = client_find_conv(c, arg)) && v->suite) {
		client_emit(c, CHAT_EV_SUITE, arg, NULL, v->suite->desc->name, NULL,
		            strlen(v->suite->desc->summary), v->suite->desc->summary,
		            (v->suite->desc->flags & CHAT_FLAG_INSECURE) != 0);
	} else {
		client_fail(c, arg, "no-conversation", "no session with %s", arg);
	}
}

static void cmd_to(struct chat_client *c, const char *arg)
{
	if (arg[0] == '#') {
		if (!client_find_croom(c, arg + 1)) {
			client_fail(c, NULL, "not-member", "you are not in room %s", arg + 1);
			return;
		}
	} else if (!client_find_conv(c, arg)) {
		client_fail(c, arg, "no-conversation", "no conversation with %s: /talk %s first", arg, arg);
		return;
	}
	snprintf(c->current, sizeof(c->current), "%s", arg);
	client_say(c, CHAT_EV_INFO, NULL, "now talking to %s", arg);
}

static void cmd_fingerprint(struct chat_client *c, const char *arg)
{
	struct conv *v = client_find_conv(c, arg);
	char fp[128];

	if (!v || v->state != C_ESTABLISHED) {
		client_fail(c, arg, "no-conversation", "no established session with %s", arg);
		return;
	}
	if (!v->suite->desc->ops.cipher->fingerprint ||
	    v->suite->desc->ops.cipher->fingerprint(v->session, sizeof(fp), fp) != CHAT_OK) {
		client_fail(c, arg, "no-fingerprint", "suite %s offers no fingerprint", v->suite->desc->name);
		return;
	}
	client_emit(c, CHAT_EV_FINGERPRINT, arg, NULL, v->suite->desc->name, NULL, strlen(fp), fp, 0);
}

/* Commands taking one user or room argument. */
static void cmd_with_arg(struct chat_client *c, const char *cmd, const char *rest)
{
	char arg[CHAT_NAME_MAX + 2];

	rest = client_word(rest, sizeof(arg), arg);
	if (!strcmp(cmd, "suite")) {
		cmd_suite(c, arg);
		return;
	}
	/* Without a name: the current conversation (the classic "exit"). */
	if (!arg[0] && c->current[0] && (!strcmp(cmd, "fingerprint") || !strcmp(cmd, "close") ||
	                                 !strcmp(cmd, "verify") || !strcmp(cmd, "trust"))) {
		if (c->current[0] == '#' && !strcmp(cmd, "close")) {
			client_leave(c, c->current + 1);
			return;
		}
		if (c->current[0] != '#')
			snprintf(arg, sizeof(arg), "%s", c->current);
	}
	if (!arg[0]) {
		client_fail(c, NULL, "usage", "/%s needs an argument (see /help)%s", cmd,
		            !strcmp(cmd, "close") || !strcmp(cmd, "fingerprint") ?
		            ": there is no current conversation" : "");
		return;
	}
	if (!strcmp(cmd, "to")) {
		cmd_to(c, arg);
		return;
	}
	const char *name = arg[0] == '#' ? arg + 1 : arg;
	int room = !strcmp(cmd, "join") || !strcmp(cmd, "leave");
	if (!client_valid_name(c, room ? "room" : "user", name))
		return;
	if (!strcmp(cmd, "join"))
		client_join(c, name);
	else if (!strcmp(cmd, "leave"))
		client_leave(c, name);
	else if (!strcmp(cmd, "talk"))
		client_talk(c, name);
	else if (!strcmp(cmd, "accept") || !strcmp(cmd, "reject"))
		client_answer(c, name, cmd[0] == 'a', rest);
	else if (!strcmp(cmd, "msg") && !strcmp(name, c->name))
		client_fail(c, name, "self", "you cannot talk to yourself");
	else if (!strcmp(cmd, "msg"))
		client_send_text(c, name, strlen(rest), rest);
	else if (!strcmp(cmd, "fingerprint"))
		cmd_fingerprint(c, name);
	else if (!strcmp(cmd, "verify"))
		client_verify(c, name, rest);
	else if (!strcmp(cmd, "trust"))
		client_trust(c, name);
	else if (!strcmp(cmd, "close"))
		client_close(c, name);
}

static void command(struct chat_client *c, const char *line)
{
	static const char *const with_arg[] = {
		"talk", "accept", "reject", "msg", "fingerprint", "close", "join", "leave", "to", "suite",
		"verify", "trust",
	};
	static const char *const admin[] = {
		"users", "adduser", "deluser", "resetpw", "promote", "demote",
	};
	char cmd[16];
	const char *rest = client_word(line + 1, sizeof(cmd), cmd);

	if (!strcmp(cmd, "help")) {
		cmd_help(c);
		return;
	}
	if (!strcmp(cmd, "who")) {
		client_begin(c, CHAT_MSG_WHO);
		client_flush(c);
		return;
	}
	if (!strcmp(cmd, "rooms")) {
		client_begin(c, CHAT_MSG_ROOMS);
		client_flush(c);
		return;
	}
	if (!strcmp(cmd, "exit")) { /* the classic designs' "exit": end this conversation */
		cmd_with_arg(c, "close", rest);
		return;
	}
	if (!strcmp(cmd, "quit")) {
		chat_client_quit(c);
		return;
	}
	if (!strcmp(cmd, "passwd")) {
		client_cmd_passwd(c, rest);
		return;
	}
	if (!strcmp(cmd, "friends") || !strcmp(cmd, "friend")) {
		client_cmd_friend(c, cmd, rest);
		return;
	}
	for (size_t i = 0; i < sizeof(admin) / sizeof(admin[0]); i++)
		if (!strcmp(cmd, admin[i])) {
			client_cmd_admin(c, cmd, rest);
			return;
		}
	for (size_t i = 0; i < sizeof(with_arg) / sizeof(with_arg[0]); i++)
		if (!strcmp(cmd, with_arg[i])) {
			cmd_with_arg(c, cmd, rest);
			return;
		}
	client_fail(c, NULL, "usage", "unknown command /%s (see /help)", cmd);
}

void client_process_line(struct chat_client *c, size_t len, const char *line)
{
	if (len && line[0] == '/' && !(len > 1 && line[1] == '/')) {
		char buf[COMMAND_MAX];
		if (len >= sizeof(buf)) {
			/* Only /msg carries long text: handle it without copying. */
			if (len > 5 && !strncmp(line, "/msg ", 5)) {
				char arg[CHAT_NAME_MAX + 2];
				char *copy = malloc(len + 1);
				if (!copy)
					return;
				memcpy(copy, line, len);
				copy[len] = '\0';
				const char *rest = client_word(copy + 5, sizeof(arg), arg);
				if (client_valid_name(c, "user", arg))
					client_send_text(c, arg, strlen(rest), rest);
				chat_wipe(copy, len);
				free(copy);
				return;
			}
			client_fail(c, NULL, "usage", "command too long");
			return;
		}
		memcpy(buf, line, len);
		buf[len] = '\0';
		command(c, buf);
		chat_wipe(buf, sizeof(buf)); /* it may have held a password */
		return;
	}
	if (len == 4 && !memcmp(line, "exit", 4)) { /* "/msg USER exit" sends the word */
		command(c, "/exit");
		return;
	}
	if (len && line[0] == '/') { /* "//text" sends "/text" */
		line++;
		len--;
	}
	if (!c->current[0]) {
		client_fail(c, NULL, "no-conversation", "no current conversation: /talk USER or /join ROOM first");
		return;
	}
	if (c->current[0] == '#')
		client_send_room_text(c, c->current + 1, len, line);
	else
		client_send_text(c, c->current, len, line);
}
