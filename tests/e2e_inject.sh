#!/usr/bin/env bash
# An attacker on the network path injects a command into an admin's stream
# (chat-tap --inject: the frame ADMIN promote mallory, written towards the
# relay after root has logged in).  On a plain TCP link the relay obeys it
# and root is not told (the attack of the TLS issue); over TLS the injected
# bytes fail the record check: the relay drops that connection, says why
# in its log, promotes nobody, and root's client says the relay was lost.
# transports: its own (the same attack on tcp, then on tls)
. "$(dirname "$0")/lib-e2e.sh"
printf 'root password\n' >"$T/root.pw"
printf 'mallory password\n' >"$T/mallory.pw"
chmod 600 "$T"/*.pw
# ADMIN (0x10) op 5 (promote) str8 "mallory", framed: u32 length 10.
printf '\x00\x00\x00\x0a\x10\x05\x07mallory' >"$T/promote.bin"
FAST=(--set client.kdf_iterations=1000 --set client.data_dir=)

attack() { # TRANSPORT
	local tp=$1
	CHAT_TEST_TRANSPORT=$tp
	test_ini
	start_relay "relay-$tp" --set "relay.database=$T/$tp.db" || return
	"$CHAT_BIN/chat-relay" --config "$T/chat.ini" --set "relay.database=$T/$tp.db" --add-admin root \
		<"$T/root.pw" >/dev/null 2>"$T/add-$tp.err" || fail "--add-admin root: $(cat "$T/add-$tp.err")"
	run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u mallory --register \
		--password-file "$T/mallory.pw" "${FAST[@]}"
	expect_out "logged-in mallory registered" "$tp: mallory registers"
	"$CHAT_TAP" --inject "$T/promote.bin" "$T/tap-$tp.port" "$RELAY_PORT" "$T/tap-$tp.rec" \
		2>"$T/tap-$tp.err" &
	local tap=$!
	PIDS+=("$tap")
	for _ in $(seq 1 100); do [ -s "$T/tap-$tp.port" ] && break; sleep 0.05; done
	local direct=$RELAY_ADDR
	RELAY_ADDR="127.0.0.1:$(cat "$T/tap-$tp.port")"
	client "root-$tp" root rc4dh --password-file "$T/root.pw" "${FAST[@]}" --no-reconnect
	wait_for "root-$tp" "logged-in root admin"
	kill -USR2 "$tap"
	RELAY_ADDR=$direct
}

# Plain TCP: the injected command is obeyed, and root sees nothing of it.
attack tcp
for _ in $(seq 1 100); do grep -q "mallory is now an admin" "$T/relay-tcp.err" && break; sleep 0.05; done
expect_file "$T/relay-tcp.err" "admin root: mallory is now an admin" "tcp: the injected command is obeyed"
quit root-tcp
kill "$RELAY_PID"

# TLS: the same bytes break the TLS record; nothing is obeyed.
attack tls
wait_for root-tls "error relay-lost" 10
sleep 0.5
if grep -q "mallory is now an admin" "$T/relay-tls.err"; then
	fail "tls: the injected command was obeyed"
else
	pass
fi
grep -qiE "tls.*(decrypt|mac|record|packet)|TLS" "$T/relay-tls.err" && pass ||
	fail "tls: the relay's log does not say why it dropped the connection: $(tail -3 "$T/relay-tls.err")"
exec {CFD[root-tls]}>&- # it has gone: no /quit into a closed pipe
wait_exit "${CPID[root-tls]}" 10
expect_rc 1 "tls: root's client ends, saying the relay was lost"
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u mallory --password-file "$T/mallory.pw" \
	"${FAST[@]}" </dev/null
expect_out "logged-in mallory registered" "tls: mallory is still a regular user"
kill "$RELAY_PID"
finish
