#!/usr/bin/env bash
# transports: tcp
# The relay goes away and comes back (client.reconnect, the default): the
# clients keep running, say "reconnecting to ADDR in N s", try again with
# growing waits, and after the relay is back:
#   registered users resume their conversations from the keystore and what
#   was typed meanwhile is delivered (once, in order, with receipts);
#   guests' conversations are offered again by the smaller name and
#   accepted by the other's client (the text typed meanwhile arrives),
#   rooms are joined again;
# /quit during the wait ends the client at once; --no-reconnect ends it
# with exit 1; a list of addresses in client.connect is tried in turn.
. "$(dirname "$0")/lib-e2e.sh"
test_ini
FAST=(--set client.kdf_iterations=1000)
for u in alice bob; do printf '%s password\n' "$u" >"$T/$u.pw"; done
chmod 600 "$T"/*.pw
start_relay relay --set "relay.database=$T/relay.db" --init-store || finish
PORT=$RELAY_PORT
for u in alice bob; do
	run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u $u --register \
		--password-file "$T/$u.pw" "${FAST[@]}"
	expect_out "logged-in $u registered" "register $u"
done

client a alice noise-xx --password-file "$T/alice.pw" "${FAST[@]}"
client b bob noise-xx --password-file "$T/bob.pw" "${FAST[@]}"
client g1 gina noise-xx
client g2 hank noise-xx
client q quincy noise-xx
client n nora noise-xx --no-reconnect
for n in a b g1 g2 q n; do wait_for $n "logged-in"; done
say a "/talk bob"
wait_for b "offer alice noise-xx"
say b "/accept alice"
wait_for a "established bob noise-xx"
say g1 "/talk hank"
wait_for g2 "offer gina noise-xx"
say g2 "/accept gina"
wait_for g1 "established hank noise-xx"
say g1 "/join lobby"
say g2 "/join lobby"
wait_for g1 "joined lobby"
wait_for g2 "joined lobby"
say a "/msg bob before"
wait_for b "msg alice noise-xx before"

# The relay dies (kill -9: no BYE).
{ kill -9 "$RELAY_PID"; wait "$RELAY_PID"; } 2>/dev/null
for n in a b g1 g2 q; do wait_for $n "reconnecting to 127.0.0.1:$PORT in 1 s (attempt 1"; done
wait_exit "${CPID[n]}" 20
ERR=$(cat "$T/n.err")
expect_rc 1 "--no-reconnect: the client ends when the relay is lost"
expect_file "$T/n.out" "error relay-lost lost the relay 127.0.0.1:$PORT" "--no-reconnect says why"
# Typed while the relay is away: kept, sent after the login.
say a "/msg bob typed while away 1"
say a "/msg bob typed while away 2"
say g1 "/msg hank guest text while away"
# /quit does not wait for the relay.
start=$SECONDS
quit q 0
[ $((SECONDS - start)) -le 5 ] && pass || fail "/quit during the wait took $((SECONDS - start)) s"
# The waits grow: attempt 2 comes after a failed attempt 1.
wait_for a "reconnecting to 127.0.0.1:$PORT in 2 s (attempt 2" 10
wait_for a "warning cannot connect to relay 127.0.0.1:$PORT"

start_relay relay2 --set "relay.database=$T/relay.db" --listen "127.0.0.1:$PORT" || finish
for n in a b g1 g2; do wait_for $n "connected 127.0.0.1:$PORT" 40; done
wait_for a "resumed bob noise-xx"
wait_for b "msg alice noise-xx typed while away 2" 20
grep "msg alice noise-xx typed while away" "$T/b.out" | sed 's/.* //' | tr '\n' ' ' | grep -q "^1 2 $" &&
	pass || fail "the held messages arrived out of order or twice: $(grep 'typed while away' "$T/b.out")"
wait_for a "delivered bob noise-xx #3"
grep -q "^established" <(sed -n '/reconnecting/,$p' "$T/a.out") && fail "registered users made a new handshake" || pass
# Guests: gina (the smaller name) offers again, hank's client accepts by
# itself (both lost the conversation: no glare), the held text arrives.
wait_for g1 "the conversation with hank ended with the relay link: offered again"
wait_for g2 "gina offers again the conversation the relay link ended: accepted"
wait_for g2 "msg gina noise-xx guest text while away"
say g2 "/msg gina and back"
wait_for g1 "msg hank noise-xx and back"
wait_count g1 "joined lobby" 2 10
wait_count g2 "joined lobby" 2 10
say g1 "/to #lobby"
say g1 "hello room again"
wait_for g2 "room lobby gina noise-xx hello room again"
for n in a b g1 g2; do quit $n; done

# Several addresses: the first refuses, the second is the relay.
client m alice noise-xx --password-file "$T/alice.pw" "${FAST[@]}" \
	--connect "127.0.0.1:1,127.0.0.1:$PORT"
wait_for m "logged-in alice registered"
expect_file "$T/m.out" "cannot connect to relay 127.0.0.1:1" "the first address is tried first"
quit m
run chat-client --config "$T/chat.ini" --connect "127.0.0.1:$PORT, nonsense" -u x --guest
expect_rc 2 "a bad address in the list"
expect_err "client.connect: 'nonsense' is not an address of the form host:port or [v6]:port" "a bad address is named"
kill "$RELAY_PID"
wait_exit "$RELAY_PID" 10
finish
