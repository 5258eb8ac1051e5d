#!/usr/bin/env bash
# The talk-style screen of chat-client, driven in a real terminal (tmux) as a
# person would: incoming text appears above without garbling the line being
# typed, own messages are shown, resizing redraws, editing keys, input
# history, Tab completion, scrollback, colours and NO_COLOR; the relay
# killed and restarted (reconnecting, the half-typed line survives, messages
# flow again); Ctrl-D quits; a fatal error (no relay) is on the terminal
# after the screen closes; TERM=dumb falls back to line mode.
. "$(dirname "$0")/lib-e2e.sh"
command -v tmux >/dev/null || { echo "tmux not installed: skipped"; exit 77; }
test_ini
start_relay relay || finish
client bob bob rc4dh
wait_for bob "logged-in bob"

sock="$T/tmux.sock"
tm() { tmux -S "$sock" "$@"; }
screen() { tm capture-pane -t chat -p -J; } # wrapped lines joined
# screen_has TEXT: the screen shows TEXT within 10 s
screen_has() {
	for _ in $(seq 1 200); do
		screen | grep -qF -- "$1" && { pass; return 0; }
		sleep 0.05
	done
	fail "screen lacks '$1':"$'\n'"$(screen)"
}
# input_is TEXT: the input line (the last line) is exactly "> TEXT" within
# 10 s -- screen_has would also match a line of the window above it
input_is() {
	local last="" want
	want=$(printf '> %s' "$1" | sed 's/ *$//')
	for _ in $(seq 1 200); do
		last=$(screen | sed 's/ *$//' | grep -v '^$' | tail -1)
		[ "$last" = "$want" ] && { pass; return 0; }
		sleep 0.05
	done
	fail "input line is '$last', not '> $1'"
}
# Over TLS alice trusts the relay in a file of her own, so her first
# connection is logged (a log line for the window: see below).
own_known=""
[ "$CHAT_TEST_TRANSPORT" = tls ] && own_known="--set plugin.tls.known_relays=$T/known_alice"
# ESCDELAY=100: a key's bytes more than 0.1 s apart reach the client apart
# (the split-sequence check below); the client puts them together itself.
tm new-session -d -s chat -x 80 -y 20 \
	"ESCDELAY=100 ${VG[*]} $CHAT_BIN/chat-client --config $T/chat.ini --connect $RELAY_ADDR --user alice --suites rc4dh $own_known; echo exited \$? >$T/tui.status; sleep 30"
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
last=$(screen | sed 's/ *$//' | grep -v '^$' | tail -1)
[ "$last" = "> half a sentence" ] && pass || fail "typing line garbled: '$last'"
tm send-keys -t chat " and the rest" Enter
wait_for bob "msg alice rc4dh half a sentence and the rest"
screen_has "<alice> half a sentence and the rest"
# Warnings go into the window, not over the screen: the client's own (the
# suite's summary in it) and, over TLS, a log line of the transport plugin
# (the suites log none here: the client warns once per conversation).
screen_has "WARNING: suite rc4dh is INSECURE (RC4-drop"
[ "$CHAT_TEST_TRANSPORT" = tls ] && screen_has "warn: [tls] first connection to $RELAY_ADDR"
# Resize: everything is redrawn at the new size.
tm resize-window -t chat -x 50 -y 12 2>/dev/null || true
say bob "after resize"
screen_has "<bob> after resize"
screen_has "alice | to: bob"
# Editing: ^W deletes a word, ^A/^E move, ^U and ^K cut, Up brings back.
tm resize-window -t chat -x 100 -y 20 2>/dev/null || true
tm send-keys -t chat "one two three" C-w
input_is "one two"
tm send-keys -t chat C-a "X" C-e "Y"
input_is "Xone two Y"
tm send-keys -t chat C-a Right C-k
input_is "X"
# A cursor key whose bytes come apart (ESC, a pause past ESCDELAY, "[D"),
# as over a slow link: still Left, not "[D" typed.
tm send-keys -t chat "ab" Escape
sleep 0.4
tm send-keys -t chat -l "[D"
tm send-keys -t chat "Y"
input_is "XaYb"
tm send-keys -t chat C-e C-u "X"
input_is "X"
tm send-keys -t chat C-u "/whatever-not-sent" C-u Up
input_is "half a sentence and the rest"
tm send-keys -t chat C-u
input_is ""
# Tab: a command, then a user name seen.
tm send-keys -t chat "/fing" Tab "b" Tab Enter
screen_has "fingerprint bob rc4dh"
# Colours: bob's lines in cyan (ESC[36m) unless NO_COLOR.
say bob "in colour"
screen_has "<bob> in colour"
colour=0
for _ in $(seq 1 100); do
	tm capture-pane -t chat -p -e | grep -q $'\e\[36m.*<bob> in colour' && { colour=1; break; }
	sleep 0.1
done
[ "$colour" = 1 ] && pass || fail "no colour for bob's lines: $(tm capture-pane -t chat -p -e | grep -a 'in colour' | od -c | head -5)"
# Scrollback: PgUp shows older lines, PgDn returns.
for i in $(seq 1 30); do say bob "line $i of many"; done
screen_has "<bob> line 30 of many"
tm send-keys -t chat PPage
screen_has "scrolled back: PgDn"
screen | grep -qF "<bob> line 30 of many" && fail "PgUp did not scroll" || pass
tm send-keys -t chat NPage
screen_has "<bob> line 30 of many"
# The relay dies and comes back on the same address: the screen client
# says it is reconnecting, keeps the half-typed line, and talks again.
tm send-keys -t chat "typed across the outage"
{ kill -9 "$RELAY_PID"; wait "$RELAY_PID"; } 2>/dev/null
screen_has "reconnecting to $RELAY_ADDR in"
last=$(screen | sed 's/ *$//' | grep -v '^$' | tail -1)
[ "$last" = "> typed across the outage" ] && pass || fail "the typed line was lost: '$last'"
start_relay relay2 --listen "$RELAY_ADDR" || finish
wait_for bob "logged-in bob" # again
screen_has "the conversation with bob ended with the relay link: offered again"
wait_for bob "established alice rc4dh"
tm send-keys -t chat Enter
wait_for bob "msg alice rc4dh typed across the outage"
# Ctrl-D on an empty line quits cleanly.
tm send-keys -t chat C-d
for _ in $(seq 1 100); do [ -s "$T/tui.status" ] && break; sleep 0.1; done
grep -q "exited 0" "$T/tui.status" 2>/dev/null && pass || fail "screen client did not exit 0: $(cat "$T/tui.status" 2>/dev/null)"
wait_for bob "closed alice"
tm kill-server 2>/dev/null
sock="$T/tmux1.sock" # a fresh server: the old one may still be going
quit bob

# No relay: the error is on the normal terminal after the screen closes.
tm new-session -d -s chat -x 100 -y 20 \
	"${VG[*]} $CHAT_BIN/chat-client --config $T/chat.ini --connect 127.0.0.1:1 --user zed --suites rc4dh; echo exited \$? >$T/tui2.status; sleep 30"
for _ in $(seq 1 100); do [ -s "$T/tui2.status" ] && break; sleep 0.1; done
grep -q "exited 1" "$T/tui2.status" 2>/dev/null && pass || fail "no relay: not exit 1: $(cat "$T/tui2.status" 2>/dev/null)"
screen_has "chat-client: error connect cannot connect to relay 127.0.0.1:1"
tm kill-server 2>/dev/null
sock="$T/tmux2.sock" # a fresh server: the old one may still be going
# NO_COLOR: no colour codes; TERM=dumb: line mode, with a note.
client bob2 bob rc4dh
wait_for bob2 "logged-in bob"
tm new-session -d -s chat -x 100 -y 20 \
	"NO_COLOR=1 ${VG[*]} $CHAT_BIN/chat-client --config $T/chat.ini --connect $RELAY_ADDR --user amy --suites rc4dh; sleep 30"
screen_has "amy | to: (nobody"
tm send-keys -t chat "/talk bob" Enter
wait_for bob2 "offer amy rc4dh"
say bob2 "/accept amy"
say bob2 "colourless"
screen_has "<bob> colourless"
tm capture-pane -t chat -p -e | grep -q $'\e\[3[1-6]m' && fail "colours despite NO_COLOR" || pass
tm send-keys -t chat "/quit" Enter
tm kill-server 2>/dev/null
sock="$T/tmux3.sock" # a fresh server: the old one may still be going
tm new-session -d -s chat -x 100 -y 20 \
	"TERM=dumb ${VG[*]} $CHAT_BIN/chat-client --config $T/chat.ini --connect $RELAY_ADDR --user dee --suites rc4dh; sleep 30"
screen_has "the terminal 'dumb' cannot show the screen: line mode"
screen_has "logged-in dee guest"
tm send-keys -t chat "/quit" Enter
tm kill-server 2>/dev/null
sock="$T/tmux4.sock" # a fresh server: the old one may still be going
quit bob2

# A registered name on a machine with no keystore yet (nothing to check a
# password against but the relay): a person at the terminal gets three
# tries, like ssh; after the third refusal the client exits 1.  The relay
# closes a connection with no login after relay.login_timeout: a password
# typed after that goes over a new connection.
kill "$RELAY_PID" 2>/dev/null; wait "$RELAY_PID" 2>/dev/null
start_relay accounts --set "relay.database=$T/accounts.db" --set relay.login_throttle_after=1000 \
	--set relay.login_timeout=5 || finish
printf 'right one\n' >"$T/pat.pw"; chmod 600 "$T/pat.pw"
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u pat --register \
	--password-file "$T/pat.pw" --set client.kdf_iterations=1000 --set client.data_dir=
expect_rc 0 "register pat"
# pw_client TMUX_SOCKET STATUS_FILE: line mode (TERM=dumb) at a terminal, no keystore
pw_client() {
	sock=$1
	tm new-session -d -s chat -x 200 -y 50 \
		"TERM=dumb ${VG[*]} $CHAT_BIN/chat-client --config $T/chat.ini --connect $RELAY_ADDR --user pat --suites rc4dh --set client.data_dir=$T/new-$(basename "$1") --set client.kdf_iterations=1000; echo exited \$? >$2; sleep 30"
}
# wrong_count N: the screen shows N lines saying "wrong password" within 10 s
wrong_count() {
	local got=0
	for _ in $(seq 1 200); do
		got=$(screen | grep -c "wrong password")
		[ "$got" -ge "$1" ] && break
		sleep 0.05
	done
	[ "$got" = "$1" ] && pass || fail "'wrong password' $got times, not $1:"$'\n'"$(screen)"
}
pw_client "$T/tmux5.sock" "$T/pw1.status"
screen_has "password for pat: "
tm send-keys -t chat "wrong one" Enter
wrong_count 1
screen_has "(try 2 of 3)"
sleep 6 # past relay.login_timeout: the next try goes over a new connection
screen_has "the password will be sent over a new one"
tm send-keys -t chat "wrong two" Enter
wrong_count 2
screen_has "(try 3 of 3)"
tm send-keys -t chat "wrong three" Enter
wrong_count 3
for _ in $(seq 1 100); do [ -s "$T/pw1.status" ] && break; sleep 0.1; done
grep -q "exited 1" "$T/pw1.status" 2>/dev/null && pass || fail "three wrong passwords: not exit 1: $(cat "$T/pw1.status" 2>/dev/null)"$'\n'"$(screen)"
screen | grep -q "logged-in" && fail "logged in with a wrong password:"$'\n'"$(screen)" || pass
[ -e "$T/new-tmux5.sock/pat.keys" ] && fail "a keystore was written with a refused password" || pass
tm kill-server 2>/dev/null
# One wrong, then the right one: logged in, and the keystore is made with
# the right one (a --password-file login opens it).
pw_client "$T/tmux6.sock" "$T/pw2.status"
screen_has "password for pat: "
tm send-keys -t chat "wrong one" Enter
wrong_count 1
tm send-keys -t chat "right one" Enter
screen_has "logged-in pat registered"
tm send-keys -t chat "/quit" Enter
for _ in $(seq 1 100); do [ -s "$T/pw2.status" ] && break; sleep 0.1; done
grep -q "exited 0" "$T/pw2.status" 2>/dev/null && pass || fail "wrong then right: not exit 0: $(cat "$T/pw2.status" 2>/dev/null)"$'\n'"$(screen)"
tm kill-server 2>/dev/null
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u pat --password-file "$T/pat.pw" \
	--set client.data_dir="$T/new-tmux6.sock"
expect_rc 0 "the keystore made at the terminal opens with the right password"
# ^D (end of input) at the password prompt quits like the empty line: it is
# not taken for a password (before, "/quit" was, and the client then waited
# for a second try on an input that had ended).
pw_client "$T/tmux7.sock" "$T/pw3.status"
screen_has "password for pat: "
tm send-keys -t chat C-d
for _ in $(seq 1 100); do [ -s "$T/pw3.status" ] && break; sleep 0.1; done
grep -q "exited 1" "$T/pw3.status" 2>/dev/null && pass || fail "^D at the password prompt: not exit 1: $(cat "$T/pw3.status" 2>/dev/null)"$'\n'"$(screen)"
screen_has "no password given for pat"
tm kill-server 2>/dev/null
# Not at a terminal: one refusal is final, as before.
printf 'wrong one\n' >"$T/patw.pw"; chmod 600 "$T/patw.pw"
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u pat --password-file "$T/patw.pw" \
	--set client.data_dir=
expect_rc 1 "a wrong --password-file"
expect_out "error auth login failed" "a wrong --password-file"
finish
