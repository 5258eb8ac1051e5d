#!/usr/bin/env bash
# The talk-style screen of chat-client, driven in a real terminal (tmux) as a
# person would: incoming text appears above without garbling the line being
# typed, own messages are shown, resizing redraws, Ctrl-D quits.
. "$(dirname "$0")/lib-e2e.sh"
command -v tmux >/dev/null || { echo "tmux not installed: skipped"; exit 77; }
test_ini
start_relay relay || finish
client bob bob rc4dh
wait_for bob "logged-in bob"

sock="$T/tmux.sock"
tm() { tmux -S "$sock" "$@"; }
screen() { tm capture-pane -t chat -p; }
# screen_has TEXT: the screen shows TEXT within 10 s
screen_has() {
	for _ in $(seq 1 200); do
		screen | grep -qF -- "$1" && { pass; return 0; }
		sleep 0.05
	done
	fail "screen lacks '$1':"$'\n'"$(screen)"
}
tm new-session -d -s chat -x 80 -y 20 \
	"${VG[*]} $CHAT_BIN/chat-client --config $T/chat.ini --connect $RELAY_ADDR --user alice --suites rc4dh; echo exited \$? >$T/tui.status; sleep 30"
screen_has "alice | to: (nobody"
tm send-keys -t chat "/talk bob" Enter
wait_for bob "offer alice rc4dh"
say bob "/accept alice"
screen_has "talking with bob, suite rc4dh  [INSECURE"
screen_has "alice | to: bob"
# Type without Enter; a message arrives; the typed text is still intact.
tm send-keys -t chat "half a sentence"
say bob "interrupting you"
screen_has "<bob> interrupting you"
last=$(screen | grep -v '^$' | tail -1)
[ "$last" = "> half a sentence" ] && pass || fail "typing line garbled: '$last'"
tm send-keys -t chat " and the rest" Enter
wait_for bob "msg alice rc4dh half a sentence and the rest"
screen_has "<alice> half a sentence and the rest"
# Log lines (the suite's warning) go into the window, not over the screen.
screen_has "warn: [rc4dh] rc4dh is INSECURE"
# Resize: everything is redrawn at the new size.
tm resize-window -t chat -x 50 -y 12 2>/dev/null || true
say bob "after resize"
screen_has "<bob> after resize"
screen_has "alice | to: bob"
# Ctrl-D on an empty line quits cleanly.
tm send-keys -t chat C-d
for _ in $(seq 1 100); do [ -s "$T/tui.status" ] && break; sleep 0.1; done
grep -q "exited 0" "$T/tui.status" 2>/dev/null && pass || fail "screen client did not exit 0: $(cat "$T/tui.status" 2>/dev/null)"
wait_for bob "closed alice"
tm kill-server 2>/dev/null
quit bob
finish
