#!/usr/bin/env bash
# chat-client against a real chat-relay on 127.0.0.1: lines go out as frames
# and come back (relay protocol 0, echo); a refused connection, a relay that
# dies mid-conversation, and a relay that shuts down are each reported with a
# clear message and a non-zero exit, never a hang.
. "$(dirname "$0")/lib-e2e.sh"
test_ini

start_relay relay || finish

# Lines out, echoes back, including a long one (60 KiB).
long=$(head -c 61440 /dev/zero | tr '\0' 'x')
printf 'hello\nsecond line\n%s\n' "$long" >"$T/in"
"${VG[@]}" "$CHAT_BIN/chat-client" --config "$T/chat.ini" --connect "$RELAY_ADDR" \
	<"$T/in" >"$T/c.out" 2>"$T/c.err" &
cpid=$!
wait_exit $cpid 60
ERR=$(cat "$T/c.err"); OUT=$(cat "$T/c.out")
expect_rc 0 "client echo"
expect_out "< hello" "client echo"
expect_out "< second line" "client echo"
if grep -qx "< $long" "$T/c.out"; then pass; else fail "client echo: the 60 KiB line did not come back whole"; fi
expect_file "$T/relay.err" "client 127.0.0.1:" "relay logs the connection"

# Nobody listening: connection refused, exit 1, naming the address.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 1)
run chat-client --config "$T/chat.ini" --connect "127.0.0.1:$port"
expect_rc 1 "refused"
expect_err "cannot connect to relay 127.0.0.1:$port" "refused"
expect_err "connection refused" "refused"

# Malformed address and unresolvable host.
run chat-client --config "$T/chat.ini" --connect "127.0.0.1"
expect_rc 2 "malformed address"
expect_err "--connect" "malformed address"
run chat-client --config "$T/chat.ini" --connect "no-such-host.invalid:7400"
expect_rc 1 "unresolvable"
expect_err "host name cannot be resolved" "unresolvable"

# The relay is killed while the client talks: the client says so and exits 1.
mkfifo "$T/fifo"
"${VG[@]}" "$CHAT_BIN/chat-client" --config "$T/chat.ini" --connect "$RELAY_ADDR" \
	<"$T/fifo" >"$T/k.out" 2>"$T/k.err" &
cpid=$!
exec 7>"$T/fifo"
echo "are you there" >&7
for _ in $(seq 1 200); do grep -q "< are you there" "$T/k.out" && break; sleep 0.05; done
expect_file "$T/k.out" "< are you there" "client before relay death"
kill -9 "$RELAY_PID"
wait_exit $cpid 20
exec 7>&-
ERR=$(cat "$T/k.err")
expect_rc 1 "relay killed"
expect_err "lost the relay $RELAY_ADDR" "relay killed"

# A relay shut down with SIGTERM says so in its log and exits 0.
start_relay relay2 || finish
kill -TERM "$RELAY_PID"
wait_exit "$RELAY_PID" 20
expect_rc 0 "relay SIGTERM"
expect_file "$T/relay2.err" "shutting down on Terminated" "relay SIGTERM"

finish
