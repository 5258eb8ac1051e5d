/* How chat-client shows an event (format.h). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "format.h"
#include "text.h"

static const char *const kind_names[CHAT_EV_KINDS] = {
	[CHAT_EV_CONNECTED] = "connected", [CHAT_EV_LOGGED_IN] = "logged-in",
	[CHAT_EV_WHO] = "who", [CHAT_EV_WHO_END] = "who-end", [CHAT_EV_OFFER] = "offer",
	[CHAT_EV_OFFERED] = "offered", [CHAT_EV_REJECTED] = "rejected",
	[CHAT_EV_ESTABLISHED] = "established", [CHAT_EV_MSG] = "msg", [CHAT_EV_ROOM_MSG] = "room",
	[CHAT_EV_JOINED] = "joined", [CHAT_EV_ROOM_JOIN] = "room-join",
	[CHAT_EV_ROOM_LEAVE] = "room-leave", [CHAT_EV_ROOMS] = "rooms", [CHAT_EV_LEFT] = "left",
	[CHAT_EV_CLOSED] = "closed", [CHAT_EV_FINGERPRINT] = "fingerprint", [CHAT_EV_SUITE] = "suite",
	[CHAT_EV_QUEUED] = "queued", [CHAT_EV_INFO] = "info", [CHAT_EV_WARNING] = "warning",
	[CHAT_EV_ERROR] = "error", [CHAT_EV_BYE] = "bye", [CHAT_EV_HELP] = "help",
	[CHAT_EV_SENT] = "sent", [CHAT_EV_PASSWORD] = "password", [CHAT_EV_DONE] = "done",
	[CHAT_EV_STORED] = "stored", [CHAT_EV_RECEIPT] = "receipt", [CHAT_EV_USER] = "user",
	[CHAT_EV_USERS_END] = "users-end", [CHAT_EV_FRIEND] = "friend",
	[CHAT_EV_FRIENDS_END] = "friends-end", [CHAT_EV_FRIEND_REQUEST] = "friend-request",
	[CHAT_EV_FRIEND_ACCEPTED] = "friend-accepted", [CHAT_EV_FRIEND_REMOVED] = "friend-removed",
	[CHAT_EV_RESUMED] = "resumed", [CHAT_EV_DELIVERED] = "delivered",
};

size_t chat_ui_format(const struct chat_event *ev, size_t cap, char *dst)
{
	size_t used = 0;
	int n;

#define ADD(...) do { n = snprintf(dst + used, used < cap ? cap - used : 0, __VA_ARGS__); \
	if (n > 0) used += (size_t)n; } while (0)
	ADD("%s", ev->kind >= 0 && ev->kind < CHAT_EV_KINDS ? kind_names[ev->kind] : "event");
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
		if (ev->seq)
			ADD(" #%llu", (unsigned long long)ev->seq);
	} else if (ev->kind == CHAT_EV_DELIVERED) {
		ADD(" #%llu", (unsigned long long)ev->seq);
		if (ev->text_len)
			ADD(" %.*s", (int)ev->text_len, ev->text);
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

/* The line-mode text, stamped, for the rarer kinds. */
void chat_ui_human(const struct chat_event *ev, const char *me, size_t cap, char *dst)
{
	char stamp[16];
	time_t now = time(NULL);
	struct tm tm;
	size_t tcap = 4 * ev->text_len + 1;
	char *text = malloc(tcap);

	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%H:%M", &tm);
	if (!text) {
		snprintf(dst, cap, "%s (out of memory)", stamp);
		return;
	}
	chat_text_escape(ev->text_len, ev->text, tcap, text);
	switch (ev->kind) {
	case CHAT_EV_MSG:
		snprintf(dst, cap, "%s <%s> %s", stamp, ev->peer, text);
		break;
	case CHAT_EV_ROOM_MSG:
		snprintf(dst, cap, "%s #%s <%s> %s", stamp, ev->room, ev->peer, text);
		break;
	case CHAT_EV_SENT:
		if (ev->room[0])
			snprintf(dst, cap, "%s #%s <%s> %s", stamp, ev->room, me, text);
		else
			snprintf(dst, cap, "%s <%s> %s", stamp, me, text);
		break;
	case CHAT_EV_OFFER:
		snprintf(dst, cap, "%s *** %s wants to talk (suite %s%s): /accept %s or /reject %s", stamp,
		         ev->peer, ev->suite, ev->insecure ? ", INSECURE" : "", ev->peer, ev->peer);
		break;
	case CHAT_EV_ESTABLISHED:
		snprintf(dst, cap, "%s *** talking with %s, suite %s%s", stamp, ev->peer, ev->suite,
		         ev->insecure ? "  [INSECURE: for demonstration only]" : "");
		break;
	case CHAT_EV_RESUMED:
		snprintf(dst, cap, "%s *** talking with %s again, suite %s (saved session, no new "
		         "handshake)%s", stamp, ev->peer, ev->suite, ev->insecure ? "  [INSECURE]" : "");
		break;
	case CHAT_EV_PASSWORD:
		snprintf(dst, cap, "%s *** %s.  Password for %s (typed below, not shown; an empty line "
		         "quits):", stamp, text, ev->peer);
		break;
	case CHAT_EV_FRIEND_REQUEST:
		snprintf(dst, cap, "%s *** %s asks to be your friend: /friend add %s or /friend remove %s",
		         stamp, ev->peer, ev->peer, ev->peer);
		break;
	case CHAT_EV_FRIEND_ACCEPTED:
		snprintf(dst, cap, "%s *** %s and you are friends now", stamp, ev->peer);
		break;
	case CHAT_EV_FRIEND_REMOVED:
		snprintf(dst, cap, "%s *** %s is no longer your friend (or declined)", stamp, ev->peer);
		break;
	case CHAT_EV_ERROR:
		snprintf(dst, cap, "%s !!! %s", stamp, text);
		break;
	case CHAT_EV_WARNING:
		snprintf(dst, cap, "%s !!! WARNING: %s", stamp, text);
		break;
	case CHAT_EV_DELIVERED:
		snprintf(dst, cap, "%s *** %s has your message #%llu%s", stamp, ev->peer,
		         (unsigned long long)ev->seq,
		         ev->insecure ? " (unauthenticated: this suite cannot prove who said so)" : "");
		break;
	default: {
		char *line = malloc(cap);
		if (line) {
			chat_ui_format(ev, cap, line);
			snprintf(dst, cap, "%s --- %s", stamp, line);
			free(line);
		}
	}
	}
	free(text);
}

