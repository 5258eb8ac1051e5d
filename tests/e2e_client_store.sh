#!/usr/bin/env bash
# chat-client's own side of accounts: password sources and their errors, a
# wrong password, the keystore lock, a conversation that survives a restart
# of both clients without a new handshake, and the history (--read-log
# verifies everything first; a tampered file prints nothing).
. "$(dirname "$0")/lib-e2e.sh"
test_ini
FAST=(--set client.kdf_iterations=1000)
printf 'alice password\n' >"$T/alice.pw"
printf 'bob password\n' >"$T/bob.pw"
printf 'not it\n' >"$T/wrong.pw"
: >"$T/empty.pw"
chmod 600 "$T"/*.pw
start_relay relay --set "relay.database=$T/relay.db" || finish

# Password sources.
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u alice --password-file "$T/nope.pw"
expect_rc 1 "missing password file"
expect_err "cannot read the password file $T/nope.pw" "missing password file named"
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u alice --password-file "$T/empty.pw"
expect_rc 1 "empty password file"
expect_err "the password file $T/empty.pw is empty" "empty password file named"
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u alice --register
expect_rc 2 "--register without a password in a script"
expect_err "--register needs a password" "--register without a password says why"

# Register both; a second registration of the name does not get it.
for u in alice bob; do
	run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u $u --register \
		--password-file "$T/$u.pw" "${FAST[@]}"
	expect_rc 0 "register $u"
	expect_out "logged-in $u registered" "register $u then log in"
done
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u alice --register \
	--password-file "$T/bob.pw" --set client.data_dir=
expect_rc 1 "register a taken name"
# The relay answers it like a success (relay.reveal_accounts = no): the
# client learns it from the login that follows, and says so.
expect_out "error exists alice the relay took the registration of alice but not its password" \
	"register a taken name"

# A wrong password (no keystore involved): the relay's answer, exit 1.
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u alice \
	--password-file "$T/wrong.pw" --set client.data_dir=
expect_rc 1 "wrong password"
expect_out "error auth login failed" "wrong password"
# With the keystore: it does not open either, and says which file.
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u alice --password-file "$T/wrong.pw"
expect_rc 1 "wrong password for the keystore"
expect_err "alice.keys: wrong password" "wrong password names the keystore"
# A scripted client without a password is a guest; the name is registered.
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u alice
expect_rc 1 "guest login as a registered name"
expect_out "error name-taken alice the name alice cannot be used by a guest" "guest login as a registered name"

# A conversation between registered users.
client a alice rc4dh --password-file "$T/alice.pw" "${FAST[@]}"
client b bob rc4dh --password-file "$T/bob.pw" "${FAST[@]}"
wait_for a "logged-in alice registered"
wait_for b "logged-in bob registered"
# The keystore is locked while alice runs.
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u alice --password-file "$T/alice.pw"
expect_rc 1 "second client for alice"
expect_out "error keystore-in-use alice" "second client for alice"
say a "/msg bob first words"
wait_for b "offer alice rc4dh"
say b "/accept alice"
wait_for b "msg alice rc4dh first words"
say b "an answer"
wait_for a "msg bob rc4dh an answer"
wait_for a "receipt bob"
quit b
# bob is away: stored for him, delivered at his next login, in order.
say a "while you were away 1"
say a "while you were away 2"
for _ in $(seq 1 200); do
	[ "$(grep -c '^stored bob [0-9]* queued' "$T/a.out")" -ge 2 ] && break
	sleep 0.05
done
[ "$(grep -c '^stored bob [0-9]* queued' "$T/a.out")" -ge 2 ] && pass ||
	fail "messages to bob offline not stored: $(cat "$T/a.out")"
quit a
client b2 bob rc4dh --password-file "$T/bob.pw" "${FAST[@]}"
wait_for b2 "resumed alice rc4dh"
wait_for b2 "msg alice rc4dh while you were away 2"
grep -A1 "while you were away 1" "$T/b2.out" | grep -q "while you were away 2" && pass ||
	fail "stored messages out of order: $(cat "$T/b2.out")"
# Both restart: the saved sessions go on, no new handshake.
client a2 alice rc4dh --password-file "$T/alice.pw" "${FAST[@]}"
wait_for a2 "resumed bob rc4dh"
wait_for a2 "receipt bob"
say a2 "after the restart"
wait_for b2 "msg alice rc4dh after the restart"
grep -q "^established" "$T/a2.out" "$T/b2.out" && fail "a new handshake after the restart" || pass
quit a2
quit b2

# The keystore and history are made private (directory 0700, files 0600);
# copies others can read are warned about, naming the file and the chmod.
[ "$(stat -c %a "$T/client")" = 700 ] && pass || fail "data_dir mode $(stat -c %a "$T/client")"
for f in alice.keys alice.log; do
	[ "$(stat -c %a "$T/client/$f")" = 600 ] && pass || fail "$f mode $(stat -c %a "$T/client/$f")"
done
if grep -q "other users" "$T"/a.err "$T"/a2.err; then fail "a private keystore warned"; else pass; fi
chmod 755 "$T/client"; chmod 644 "$T/client/alice.keys" "$T/client/alice.log"
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u alice --password-file "$T/alice.pw"
expect_rc 0 "a readable keystore is warned about, not refused"
expect_err "client.data_dir: directory $T/client is open to other users (mode 0755): chmod 700 $T/client" "open data_dir"
expect_err "the keystore: $T/client/alice.keys can be read by other users (mode 0644): chmod 600 $T/client/alice.keys" "readable keystore"
expect_err "the history: $T/client/alice.log can be read by other users (mode 0644): chmod 600 $T/client/alice.log" "readable history"
chmod 700 "$T/client"; chmod 600 "$T/client/alice.keys" "$T/client/alice.log"

# The history: verified, then printed; a modified copy prints nothing.
run chat-client --read-log "$T/client/bob.log" --password-file "$T/bob.pw"
expect_rc 0 "read bob's history"
expect_out "received alice first words" "history holds the first message"
expect_out "sent alice an answer" "history holds the answer"
expect_out "received alice after the restart" "history across restarts"
cp "$T/client/bob.log" "$T/tampered.log"
size=$(stat -c %s "$T/tampered.log")
printf '\x55' | dd of="$T/tampered.log" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
run chat-client --read-log "$T/tampered.log" --password-file "$T/bob.pw"
expect_rc 1 "tampered history"
expect_err "$T/tampered.log" "tampered history names the file"
[ -z "$OUT" ] && pass || fail "a tampered history printed records: $OUT"
run chat-client --read-log "$T/client/bob.log" --password-file "$T/alice.pw"
expect_rc 1 "history with the wrong password"
# No plaintext in the files kept on disk.
for f in "$T"/client/* "$T"/relay.db*; do
	[ -f "$f" ] || { fail "missing $f"; continue; }
	grep -qaF "while you were away" "$f" && fail "plaintext in $f" || pass
done

# A relay that reveals accounts (relay.reveal_accounts = yes): the client
# shows its direct answers.
kill "$RELAY_PID"
wait_exit "$RELAY_PID" 20
start_relay relay2 --set "relay.database=$T/relay.db" --set relay.reveal_accounts=yes || finish
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u alice --register \
	--password-file "$T/bob.pw" --set client.data_dir=
expect_rc 1 "register a taken name (revealed)"
expect_out "error exists alice the account alice exists already" "register a taken name (revealed)"
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u alice
expect_rc 1 "guest login as a registered name (revealed)"
expect_out "error name-taken alice alice is a registered user" "guest login as a registered name (revealed)"
finish
