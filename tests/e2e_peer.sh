#!/usr/bin/env bash
# chat-peer as real processes on 127.0.0.1 (docs/PEER.md): messages both
# ways, multi-line with dot-stuffing, unknown sender, wrong password, peer
# offline, a silent peer (timeout), a manual destination with its password
# line, wrong recipient, suite mismatch, several senders at once while the
# receiver is typing, the encrypted log read back and tampered with, rc4dh.
#
# Ports: every peer listens on 127.0.0.1:0 and prints "listening ADDR"; the
# directory files are written after all peers of a group are up.  The peers
# start with an empty directory ("[]") and read it again when it changes.
. "$(dirname "$0")/lib-e2e.sh"
test_ini
# Fast key derivation for the tests (both ends must agree on it).
printf '\n[plugin.aescbc-hmac]\niterations = 10000\n' >>"$T/chat.ini"
printf 'log passphrase for the tests\n' >"$T/pass"
chmod 600 "$T/pass"
# A suite with identity keys: chat-peer does not keep them yet, and says so.
run chat-peer --config "$T/chat.ini" -u zed --suite noise-xx --passphrase-file "$T/pass"
expect_rc 1 "chat-peer with an identity suite"
expect_err "suite noise-xx authenticates with identity keys, which chat-peer does not keep yet" \
	"chat-peer with an identity suite says why"
run chat-peer --config "$T/chat.ini" --suite rsa --check-config
expect_rc 1 "chat-peer --check-config with an identity suite"
expect_err "suite rsa authenticates with identity keys, which chat-peer does not keep yet" \
	"chat-peer --check-config says why"
TIMEOUT=10000
[ ${#VG[@]} -gt 0 ] && TIMEOUT=30000

declare -A PORT
# peer NAME [ARGS...]: start chat-peer as user NAME on 127.0.0.1:0 with
# directory $T/dir-NAME.json and log $T/NAME.log; sets PORT[NAME].
peer() {
	local name=$1; shift
	[ -e "$T/dir-$name.json" ] || { echo '[]' >"$T/dir-$name.json"; chmod 600 "$T/dir-$name.json"; }
	mkfifo "$T/$name.in"
	# The other peers' input fifos are closed in this one, so that closing
	# a fifo in this shell really ends that peer's input.
	(
		for fd in "${CFD[@]}"; do eval "exec $fd>&-"; done
		exec "${VG[@]}" "$CHAT_BIN/chat-peer" --config "$T/chat.ini" --user "$name" \
			--listen 127.0.0.1:0 --directory "$T/dir-$name.json" --passphrase-file "$T/pass" \
			--set "peer.log=$T/$name.log" --set peer.log_iterations=1000 \
			--set "peer.timeout=$TIMEOUT" "$@" \
			<"$T/$name.in" >"$T/$name.out" 2>"$T/$name.err"
	) &
	CPID[$name]=$!
	PIDS+=("$!")
	exec {fd}>"$T/$name.in"
	CFD[$name]=$fd
	wait_for "$name" "listening 127.0.0.1:" || return 1
	PORT[$name]=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/$name.out" | head -1)
}
# directory NAME USER:PASSWORD...: write NAME's contacts (ports from PORT[USER]),
# atomically, so a peer never reads half a file.
directory() {
	local name=$1 sep='' entry user pw; shift
	{
		printf '['
		for entry in "$@"; do
			user=${entry%%:*} pw=${entry#*:}
			printf '%s\n {"username": "%s", "ip": "127.0.0.1", "port": %s, "password": "%s"}' \
				"$sep" "$user" "${PORT[$user]:-1}" "$pw"
			sep=,
		done
		printf '\n]\n'
	} >"$T/dir-$name.json.new"
	chmod 600 "$T/dir-$name.json.new" # it holds passwords (else a warning)
	mv "$T/dir-$name.json.new" "$T/dir-$name.json"
}
# send NAME TO LINE...: NAME writes a message of the given lines to TO.
send() {
	local name=$1 to=$2; shift 2
	say "$name" "/send $to"
	for line in "$@"; do say "$name" "$line"; done
	say "$name" "."
}
# end NAME [STATUS]: close NAME's input; it must exit with STATUS (0).
end() {
	local name=$1 want=${2:-0}
	exec {CFD[$name]}>&-
	wait_exit "${CPID[$name]}" 60
	ERR=$(cat "$T/$name.err")
	expect_rc "$want" "peer $name exit"
}
never() { # never NAME TEXT WHAT: NAME's output must not contain TEXT
	if grep -qF -- "$2" "$T/$1.out"; then fail "$3: $1 printed '$2'"; else pass; fi
}

# ---- a group of peers: alice, bob, carol, dave (unknown to bob), eve (wrong
# password for bob), frank (no directory: destinations by hand)
for p in alice bob carol dave eve; do peer "$p" || finish; done
peer frank --set peer.directory= || finish
# A port nobody listens on: a peer that has come and gone.
peer ghost || finish
end ghost
directory alice bob:pw-ab carol:pw-ac ghost:pw-ag wrongname:pw-ab
directory bob alice:pw-ab carol:pw-bc eve:pw-be frank:pw-bf
directory carol alice:pw-ac bob:pw-bc
directory dave bob:pw-db
directory eve bob:not-the-password
# alice's "wrongname" entry points at bob's port.
PORT[wrongname]=${PORT[bob]}
directory alice bob:pw-ab carol:pw-ac ghost:pw-ag wrongname:pw-ab

# Both ways.
send alice bob "hello bob"
wait_for alice "delivered bob"
wait_for bob "msg alice hello bob"
send bob alice "hello alice, from bob"
wait_for bob "delivered alice"
wait_for alice "msg bob hello alice, from bob"
grep -q "^sending bob 127.0.0.1:${PORT[bob]}$" "$T/alice.out" && pass || fail "alice: no 'sending bob' line"

# Several lines; a line starting with '.' is written with one more '.'.
send alice bob "line one" "..dot line" "" "...two dots"
wait_for bob 'msg alice line one\n.dot line\n\n..two dots'

# A sender bob does not know: refused, nothing shown.
send dave bob "from an unknown sender"
wait_for bob "error unknown-user dave unknown user dave"
wait_for dave "error nack bob unknown-user:"
never bob "from an unknown sender" "unknown sender"

# The wrong password: both sides fail authentication, nothing is shown.
send eve bob "must never be shown"
wait_for eve "error auth bob authentication failed for bob"
wait_for bob "error auth eve authentication failed for eve"
never bob "must never be shown" "wrong password"
never eve "delivered bob" "wrong password"

# Peer offline: connection refused.
send alice ghost "anyone there?"
wait_for alice "error refused ghost cannot connect to ghost at 127.0.0.1:${PORT[ghost]}"
# Not in the directory at all.
send alice nobody "hello?"
wait_for alice "error unknown-user nobody nobody is not in the directory"
# A message for carol arriving at bob: wrong recipient.
send alice wrongname "for wrongname"
wait_for bob "error wrong-recipient alice alice wrote to wrongname, but this is bob"
wait_for alice "error nack wrongname wrong-recipient:"
never bob "for wrongname" "wrong recipient"

# A destination typed by hand (frank has no directory): the next line is the password.
say frank "/send bob@127.0.0.1:${PORT[bob]}"
wait_for frank "need-password bob 127.0.0.1:${PORT[bob]}"
say frank "pw-bf"
say frank "typed by hand"
say frank "."
wait_for frank "delivered bob"
wait_for bob "msg frank typed by hand"
never frank "pw-bf" "password echoed"
# ...and with a wrong password.
say frank "/send bob@127.0.0.1:${PORT[bob]}"
say frank "not-pw-bf"
say frank "never shown either"
say frank "."
wait_for frank "error auth bob authentication failed for bob"
never bob "never shown either" "manual, wrong password"
# Without a directory, a contact name cannot be used.
send frank bob "by name"
wait_for frank "error no-directory bob"

# Bob types a message while two others write to him at once.
say bob "/send alice"
say bob "first half typed"
say alice "/send bob"; say alice "concurrent from alice"
say carol "/send bob"; say carol "concurrent from carol"
say alice "."; say carol "."
wait_for bob "msg alice concurrent from alice"
wait_for bob "msg carol concurrent from carol"
wait_for alice "delivered bob"
wait_for carol "delivered bob"
say bob "second half"
say bob "."
wait_for alice "msg bob first half typed\nsecond half"
# A burst: five messages from alice to bob without waiting.
for i in 1 2 3 4 5; do send alice bob "burst $i"; done
for i in 1 2 3 4 5; do wait_for bob "msg alice burst $i"; done
n=$(grep -c "^delivered bob$" "$T/alice.out")
[ "$n" -eq 8 ] && pass || fail "alice: $n deliveries to bob, expected 8"

# The largest message (60 KiB, several chunks) and one byte more.
long=$(head -c 61440 /dev/zero | tr '\0' 'L')
send alice bob "$long"
wait_for bob "msg alice $long" 60
send alice bob "${long}X"
wait_for alice "error too-big bob message exceeds 61440 bytes"

# Usage errors keep the peer running.
say carol "just text"
wait_for carol "error usage not sent: start a message with /send USER"
say carol "/frobnicate"
wait_for carol "error usage unknown command /frobnicate"
say carol "/help"
wait_for carol "help /send USER@HOST:PORT"

# A silent peer (stopped: the kernel accepts, nobody answers): timeout.
peer tim --set peer.timeout=1500 || finish
directory tim carol:pw-tc
kill -STOP "${CPID[carol]}"
send tim carol "into the void"
wait_for tim "error timeout carol the exchange with carol did not finish within 1500 ms (peer.timeout)"
kill -CONT "${CPID[carol]}"
end tim

# End of input waits for a message under way, then exits 0.
say dave "/send bob"
say dave "last words"
say dave "."
end dave
grep -q "error nack bob unknown-user" "$T/dave.out" && [ "$(grep -c 'error nack bob' "$T/dave.out")" -eq 2 ] \
	&& pass || fail "dave: the last message did not finish before exit: $(cat "$T/dave.out")"
# An unfinished message at end of input is reported.
say eve "/send bob"
say eve "no final dot"
end eve
expect_file "$T/eve.out" "error undelivered bob message to bob not sent" "unfinished message"

# SIGTERM: a clean exit.
kill -TERM "${CPID[frank]}"
wait_exit "${CPID[frank]}" 30
expect_rc 0 "frank on SIGTERM"
# /quit does what the end of input does.
say carol "/quit"
wait_exit "${CPID[carol]}" 30
expect_rc 0 "carol after /quit"
end alice
end bob

# ---- the encrypted log
run chat-peer --read-log "$T/bob.log" --passphrase-file "$T/pass"
expect_rc 0 "read bob's log"
expect_out "received alice hello bob" "bob's log"
expect_out "sent alice hello alice, from bob" "bob's log"
expect_out 'received alice line one\n.dot line' "bob's log"
expect_out "received frank typed by hand" "bob's log"
expect_out "sent alice first half typed\nsecond half" "bob's log"
expect_err "all verified" "bob's log"
# Nothing failed is in the log: not the refused, not the unauthenticated.
for text in "from an unknown sender" "must never be shown" "for wrongname" "never shown either"; do
	grep -qF "$text" <<<"$OUT" && fail "log holds '$text'" || pass
done
grep -qF "hello bob" "$T/bob.log" && fail "plaintext in the log file" || pass
run chat-peer --read-log "$T/alice.log" --passphrase-file "$T/pass"
expect_rc 0 "read alice's log"
expect_out "sent bob hello bob" "alice's log"
expect_out "received bob hello alice, from bob" "alice's log"
n=$(grep -c " sent bob burst" <<<"$OUT")
[ "$n" -eq 5 ] && pass || fail "alice's log: $n burst messages, expected 5"
# Tampering: one byte changed in the middle → exit 1, exact reason, nothing shown.
cp "$T/bob.log" "$T/tampered.log"
size=$(stat -c %s "$T/tampered.log")
printf '\x5a' | dd of="$T/tampered.log" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
cmp -s "$T/bob.log" "$T/tampered.log" && printf '\xa5' | dd of="$T/tampered.log" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
run chat-peer --read-log "$T/tampered.log" --passphrase-file "$T/pass"
expect_rc 1 "tampered log"
expect_err "tampered.log: record" "tampered log"
expect_err "integrity check failed (modified or reordered)" "tampered log"
[ -z "$OUT" ] && pass || fail "tampered log: something was shown: $OUT"
# The trailer cut off: truncation.
head -c $((size - 41)) "$T/bob.log" >"$T/cut.log"
run chat-peer --read-log "$T/cut.log" --passphrase-file "$T/pass"
expect_rc 1 "truncated log"
expect_err "trailer missing" "truncated log"
[ -z "$OUT" ] && pass || fail "truncated log: something was shown"
# The wrong passphrase.
printf 'not it\n' >"$T/wrong"
run chat-peer --read-log "$T/bob.log" --passphrase-file "$T/wrong"
expect_rc 1 "wrong log passphrase"
expect_err "bob.log: wrong passphrase or corrupted header" "wrong log passphrase"
# No terminal and no passphrase file: a clear error, never the first input line.
run chat-peer --read-log "$T/bob.log"
expect_rc 2 "no passphrase source"
expect_err "give --passphrase-file FILE" "no passphrase source"
run chat-peer --config "$T/chat.ini" --user zed --listen 127.0.0.1:0 --set "peer.log=$T/zed.log"
expect_rc 2 "run without a passphrase source"
expect_err "give --passphrase-file FILE" "run without a passphrase source"
# A peer refuses to append to a log that does not verify.
run chat-peer --config "$T/chat.ini" --user bob --listen 127.0.0.1:0 --passphrase-file "$T/pass" \
	--set "peer.log=$T/tampered.log"
expect_rc 1 "tampered log at start"
expect_err "nothing is appended to a log that does not verify" "tampered log at start"

# ---- another suite: rc4dh on both ends (any installed suite works), and a
# suite mismatch is refused.
rm -f "$T"/dir-r*.json
peer ra --suite rc4dh || finish
peer rb --suite rc4dh || finish
peer rc || finish
directory ra rb:pw-r rc:pw-r
directory rb ra:pw-r
directory rc ra:pw-r
send ra rb "over rc4dh"
wait_for ra "delivered rb"
wait_for rb "msg ra over rc4dh"
wait_for ra "warning suite rc4dh is INSECURE"
send rb ra "back over rc4dh"
wait_for rb "delivered ra"
wait_for ra "msg rb back over rc4dh"
send ra rc "wrong suite"
wait_for rc "error suite ra ra uses suite rc4dh; rc accepts only aescbc-hmac"
wait_for ra "error nack rc suite:"
for p in ra rb rc; do end "$p"; done
# One warning per event: the peer's, when it starts listening on an insecure
# suite; none from the suite for each connection (each message is one).
for p in ra rb; do
	got=$(cat "$T/$p.out" "$T/$p.err" | grep -c "INSECURE")
	[ "$got" = 1 ] && pass || fail "$p: $got INSECURE warnings, expected 1: $(grep -h INSECURE "$T/$p.out" "$T/$p.err")"
done

# Every file above was private (contacts written 0600, logs created 0600), so
# no peer warned; a log and a contact directory others can read are warned
# about, naming each and the chmod (docs/CONFIG.md, "Files holding secrets").
if grep -l "other users" "$T"/*.err >/dev/null 2>&1; then
	fail "a warning about private files: $(grep -h "other users" "$T"/*.err)"
else
	pass
fi
echo '[]' >"$T/dir-rd.json"
chmod 644 "$T/dir-rd.json" "$T/ra.log"
peer rd --set "peer.log=$T/ra.log" || finish
expect_file "$T/rd.err" "the contact directory (it holds passwords): $T/dir-rd.json can be read by other users (mode 0644): chmod 600 $T/dir-rd.json" "readable peer directory"
expect_file "$T/rd.err" "peer.log: $T/ra.log can be read by other users (mode 0644): chmod 600 $T/ra.log" "readable peer log"
end rd
finish
