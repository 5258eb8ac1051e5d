#!/usr/bin/env bash
# Stalls and dead links (docs/PROTOCOL.md, keepalive): chat-client talks to
# chat-relay through chat-tap, which stalls on SIGUSR1 (nothing forwarded,
# nothing closed).  A short stall: the client warns, then says the relay
# answers again.  A long one: the client gives up (error relay-lost, exit 1)
# and the relay drops it as dead, so /who no longer lists it.  A relay that
# accepts the connection and never answers: error connect, no "connected".
# Small keepalive values keep it fast; the waits are generous (valgrind).
# transports: tcp (chat-tap reads and rewrites frames on the path: it stands for
# the relay or a path that TLS would shut out)
. "$(dirname "$0")/lib-e2e.sh"
test_ini

# The client pings after 1 s of silence, warns after 2 s, gives up after 6 s;
# the relay pings after 1 s and drops a client silent for 5 s.
KA=(--set client.keepalive=1 --set client.dead_after=6)
start_relay relay --set relay.keepalive=1 --set relay.dead_after=5 || finish
MAIN_PID=$RELAY_PID
"$CHAT_TAP" "$T/tap.port" "$RELAY_PORT" "$T/tap.rec" &
TAP_PID=$!
PIDS+=("$TAP_PID")
for _ in $(seq 1 100); do [ -s "$T/tap.port" ] && break; sleep 0.05; done
TAP_ADDR="127.0.0.1:$(cat "$T/tap.port")"


# alice goes through the tap, bob straight to the relay.
client bob bob rc4dh "${KA[@]}"
client alice alice rc4dh --connect "$TAP_ADDR" "${KA[@]}" --no-reconnect
wait_for alice "logged-in alice"
wait_for bob "logged-in bob"
expect_file "$T/alice.out" "connected 127.0.0.1:" "connected once the relay answered"
say bob "/who"
wait_for bob "who-end 2"

# A quiet but healthy link: keepalives flow, nobody warns or is dropped.
sleep 4
if [ "$(count alice "relay not answering")" = 0 ]; then pass; else fail "alice warned on a live link"; fi
if grep -q "relay.dead_after" "$T/relay.err"; then fail "relay dropped a live client"; else pass; fi
# a PING frame: length 9, type 0x40
if od -An -v -tx1 "$T/tap.rec" | tr -d ' \n' | grep -q 0000000940; then pass; else fail "no PING crossed the tap"; fi

# A short stall: the warning, then the relay is heard again; the relay keeps alice.
kill -USR1 "$TAP_PID"
wait_for alice "warning relay not answering for " 20
kill -USR1 "$TAP_PID"
wait_for alice "info relay answering again after" 20
say bob "/who"
wait_count bob "who-end 2" 2
wait_count bob "who alice" 2

# A long stall: alice warns and gives up (exit 1, the message says why);
# the relay drops her as dead (address and silence in its log).
start=$SECONDS
kill -USR1 "$TAP_PID"
wait_count alice "warning relay not answering" 2 20
wait_for alice "error relay-lost lost the relay $TAP_ADDR: the relay did not answer for " 30
expect_file "$T/alice.out" "s (client.dead_after)" "alice gives up" 
wait_exit "${CPID[alice]}" 20
ERR=$(cat "$T/alice.err")
expect_rc 1 "alice after the stall"
# Generous: 6 s plus slack for a slow (valgrind) machine.
if [ $((SECONDS - start)) -le 25 ]; then pass; else fail "alice took $((SECONDS - start)) s to give up"; fi
wait_file "$T/relay.err" "client alice dropped: nothing received from 127.0.0.1:" 20
wait_file "$T/relay.err" "for 5 s (relay.dead_after)" 5
say bob "/who"
wait_for bob "who-end 1"

# Connecting into a stall (the tap still stalls): TCP is accepted, nothing
# answers.  carol gives up within client.dead_after, never says "connected".
start=$SECONDS
client carol carol rc4dh --connect "$TAP_ADDR" "${KA[@]}"
wait_exit "${CPID[carol]}" 30
ERR=$(cat "$T/carol.err")
expect_rc 1 "connecting into a stall"
expect_file "$T/carol.out" "error connect cannot connect to relay $TAP_ADDR: it accepted the connection but did not answer for " "connecting into a stall"
if grep -q "^connected" "$T/carol.out"; then fail "carol said connected: $(cat "$T/carol.out")"; else pass; fi
if [ $((SECONDS - start)) -le 25 ]; then pass; else fail "carol took $((SECONDS - start)) s to give up"; fi
kill -USR1 "$TAP_PID"

# relay.idle_timeout still drops a client that only answers keepalives.
# Its own database: the first relay still runs on $T/relay.db (one relay per database).
start_relay idle --set relay.keepalive=1 --set relay.idle_timeout=3 --set "relay.database=$T/idle.db" || finish
IDLE_PID=$RELAY_PID
client dave dave rc4dh "${KA[@]}" --no-reconnect
wait_for dave "logged-in dave"
wait_for dave "bye idle for too long" 20
wait_exit "${CPID[dave]}" 20
expect_rc 1 "idle client"
kill -TERM "$IDLE_PID"; wait_exit "$IDLE_PID" 30
expect_rc 0 "idle relay exit"

# The two keys must leave the PING time to be answered.
run chat-relay --config "$T/chat.ini" --set relay.keepalive=5 --set relay.dead_after=5 --check-config
expect_rc 1 "dead_after not above keepalive"
expect_err "relay.dead_after (5, --set) must be more than relay.keepalive (5, --set), or 0" "dead_after not above keepalive"

quit bob
kill -TERM "$MAIN_PID"; wait_exit "$MAIN_PID" 30
expect_rc 0 "relay exit"
finish
