#!/usr/bin/env bash
# chat-client <-> chat-relay <-> chat-client as real processes on 127.0.0.1,
# for every suite: consent, talk both ways, a 60 KiB message, fingerprints,
# text typed before the session is up, and what the relay can see (a tap
# records every byte the relay receives and forwards: no plaintext in it).
# transports: tcp (chat-tap reads and rewrites frames on the path: it stands for
# the relay or a path that TLS would shut out)
. "$(dirname "$0")/lib-e2e.sh"
test_ini
# Fast key derivation for the tests (both ends must agree on it).
printf '\n[plugin.aescbc-hmac]\niterations = 10000\n' >>"$T/chat.ini"
cat >"$T/dir-alice.json" <<'JSON'
[ {"username": "bob", "ip": "127.0.0.1", "port": 7501, "password": "correct horse battery staple"} ]
JSON
cat >"$T/dir-bob.json" <<'JSON'
[ {"username": "alice", "ip": "127.0.0.1", "port": 7500, "password": "correct horse battery staple"} ]
JSON
chmod 600 "$T"/dir-*.json # they hold passwords (else a warning)

start_relay relay || finish
"$CHAT_TAP" "$T/tap.port" "$RELAY_PORT" "$T/tap.rec" &
PIDS+=("$!")
for _ in $(seq 1 100); do [ -s "$T/tap.port" ] && break; sleep 0.05; done
TAP_ADDR="127.0.0.1:$(cat "$T/tap.port")"

long=$(head -c 61440 /dev/zero | tr '\0' 'L')

for suite in xor-demo rc4dh aescbc-hmac; do
	a="a-$suite" b="b-$suite"
	: >"$T/tap.rec"
	# Both clients go through the tap, so it sees everything the relay does.
	RELAY_ADDR_SAVED=$RELAY_ADDR; RELAY_ADDR=$TAP_ADDR
	client "$a" alice "$suite" --directory "$T/dir-alice.json"
	client "$b" bob "$suite" --directory "$T/dir-bob.json"
	RELAY_ADDR=$RELAY_ADDR_SAVED
	wait_for "$a" "logged-in alice"
	wait_for "$b" "logged-in bob"
	say "$a" "/who"
	wait_for "$a" "who bob $suite"
	# Text typed before the conversation exists is held, then delivered.
	say "$a" "/msg bob the first words of $suite"
	wait_for "$a" "queued bob"
	wait_for "$b" "offer alice $suite"
	say "$b" "/accept alice"
	wait_for "$a" "established bob $suite"
	wait_for "$b" "established alice $suite"
	wait_for "$b" "msg alice $suite the first words of $suite"
	say "$a" "secret plans for $suite"
	wait_for "$a" "sent bob $suite $((17 + ${#suite}))"
	say "$b" "reply through $suite"
	wait_for "$b" "msg alice $suite secret plans for $suite"
	wait_for "$a" "msg bob $suite reply through $suite"
	say "$a" "$long"
	wait_for "$b" "msg alice $suite $long" 60
	if [ "$suite" != aescbc-hmac ]; then
		wait_for "$a" "warning bob suite $suite is INSECURE"
		grep -q "established bob $suite insecure" "$T/$a.out" && pass || fail "$suite not shown as insecure"
	else
		grep -q "established bob $suite insecure" "$T/$a.out" && fail "aescbc-hmac shown as insecure" || pass
	fi
	if [ "$suite" != xor-demo ]; then
		say "$a" "/fingerprint bob"
		say "$b" "/fingerprint" # the current conversation
		wait_for "$a" "fingerprint bob $suite"
		wait_for "$b" "fingerprint alice $suite"
		fa=$(grep "^fingerprint bob" "$T/$a.out" | awk '{print $4}')
		fb=$(grep "^fingerprint alice" "$T/$b.out" | awk '{print $4}')
		[ -n "$fa" ] && [ "$fa" = "$fb" ] && pass || fail "$suite fingerprints differ: '$fa' vs '$fb'"
		# The relay saw only ciphertext.
		for text in "secret plans for $suite" "reply through $suite" "the first words" LLLLLLLLLLLLLLLL; do
			if grep -qaF -- "$text" "$T/tap.rec"; then fail "$suite: plaintext '$text' crossed the relay"; else pass; fi
		done
	fi
	say "$a" "/suite bob"
	wait_for "$a" "suite bob $suite"
	# "/msg bob exit" sends the word; "exit" ends the conversation (the
	# classic designs' way), the program goes on.
	say "$a" "/msg bob exit"
	wait_for "$b" "msg alice $suite exit"
	say "$a" "exit"
	wait_for "$b" "closed alice"
	say "$a" "/who"
	wait_for "$a" "who bob"
	quit "$a"
	quit "$b"
	# One warning per event: the client's line, not a second one logged by
	# the suite (on stderr) for the same conversation.
	want=1; [ "$suite" = aescbc-hmac ] && want=0
	for n in "$a" "$b"; do
		got=$(cat "$T/$n.out" "$T/$n.err" | grep -c "INSECURE")
		[ "$got" = "$want" ] && pass ||
			fail "$n: $got INSECURE warning(s) for one conversation on $suite, expected $want: $(grep INSECURE "$T/$n.out" "$T/$n.err")"
	done
done

# Consent refused, with the reason.
client carol carol rc4dh
client dave dave rc4dh
wait_for dave "logged-in dave"
say carol "/talk dave"
wait_for dave "offer carol rc4dh"
wait_for carol "offered dave" # the relay took the offer
say dave "/reject carol not now"
wait_for carol "rejected dave not now"
# A user who is not connected.
say carol "/talk nobody"
wait_for carol "error not-connected nobody nobody is not connected"
# No common suite: the relay says which each side offers.
client xena xena xor-demo
wait_for xena "logged-in xena"
say carol "/talk xena"
wait_for carol "error no-common-suite xena xena offers only xor-demo; you allow only rc4dh"
# "offered" only for an offer the relay took, never before its refusal.
for who in nobody xena; do
	[ "$(count carol "^offered $who")" = 0 ] && pass || fail "carol: 'offered $who' for a refused offer"
done
# A name already taken: the second client says so and exits 1.
client dup carol rc4dh
wait_for dup "error name-taken carol the name carol cannot be used by a guest"
wait_exit "${CPID[dup]}" 20; ERR=$(cat "$T/dup.err")
expect_rc 1 "name taken"
# Unknown command and plain text without a conversation.
say carol "/frobnicate"
wait_for carol "error usage unknown command /frobnicate"
say carol "hello?"
wait_for carol "error no-conversation no current conversation"

# aescbc-hmac with the wrong password: both sides fail authentication, nothing is shown.
cat >"$T/dir-eve.json" <<'JSON'
[ {"username": "frank", "ip": "127.0.0.1", "port": 7501, "password": "not the right one"} ]
JSON
cat >"$T/dir-frank.json" <<'JSON'
[ {"username": "eve", "ip": "127.0.0.1", "port": 7500, "password": "correct horse battery staple"} ]
JSON
chmod 600 "$T"/dir-*.json
client eve eve aescbc-hmac --directory "$T/dir-eve.json"
client frank frank aescbc-hmac --directory "$T/dir-frank.json"
wait_for frank "logged-in frank"
say eve "/msg frank must never be shown"
wait_for frank "offer eve aescbc-hmac"
say frank "/accept eve"
wait_for eve "authentication failed for frank"
wait_for frank "authentication failed for eve"
grep -q "must never be shown" "$T/frank.out" && fail "a message crossed a failed authentication" || pass
wait_for eve "error undelivered frank 1 message(s) to frank were not delivered"

# A room of three, each with a different first choice of suite.
client r1 ann "rc4dh,xor-demo"
client r2 ben "xor-demo,rc4dh"
client r3 cat "rc4dh"
wait_for r3 "logged-in cat"
say r1 "/join lobby"
wait_for r1 "joined lobby"
say r2 "/join lobby"
wait_for r2 "joined lobby ann"
say r3 "/join lobby"
wait_for r3 "joined lobby"
wait_for r3 "established ann rc4dh"
wait_for r3 "established ben rc4dh"
wait_for r2 "established ann"
say r1 "hello room"
wait_for r2 "room lobby ann"
wait_for r2 "hello room"
wait_for r3 "room lobby ann rc4dh hello room"
say r3 "/rooms"
wait_for r3 "rooms lobby 3"
say r2 "/leave lobby"
wait_for r1 "room-leave lobby ben"
wait_for r3 "room-leave lobby ben"
say r3 "still here"
wait_for r1 "room lobby cat rc4dh still here"
for c in r1 r2 r3 carol dave xena eve frank; do quit "$c"; done

# No username given: it is asked for (here the first input line).
printf 'zoe\n/who\n' >"$T/zoe.in"
"$CHAT_BIN/chat-client" --config "$T/chat.ini" --connect "$RELAY_ADDR" --suites rc4dh \
	<"$T/zoe.in" >"$T/zoe.out" 2>"$T/zoe.err"; RC=$?
ERR=$(cat "$T/zoe.err"); OUT=$(cat "$T/zoe.out")
expect_rc 0 "username asked"
expect_err "username: " "username asked"
expect_out "logged-in zoe" "username asked"
expect_out "who zoe rc4dh" "username asked"

# The relay dies mid-conversation: each client says so and, with
# --no-reconnect, exits 1 (e2e_reconnect.sh: without it, they connect again).
client k1 kim rc4dh --no-reconnect
client k2 lee rc4dh --no-reconnect
wait_for k2 "logged-in lee"
say k1 "/talk lee"
wait_for k2 "offer kim"
say k2 "/accept kim"
wait_for k1 "established lee"
{ kill -9 "$RELAY_PID"; wait "$RELAY_PID"; } 2>/dev/null
wait_for k1 "error relay-lost lost the relay"
wait_exit "${CPID[k1]}" 20; ERR=$(cat "$T/k1.err")
expect_rc 1 "relay killed"
wait_exit "${CPID[k2]}" 20; ERR=$(cat "$T/k2.err")
expect_rc 1 "relay killed (other side)"

# Nobody listening: refused, exit 1.
run chat-client --config "$T/chat.ini" --connect "127.0.0.1:$RELAY_PORT" --user zed
expect_rc 1 "refused"
expect_out "error connect cannot connect to relay 127.0.0.1:$RELAY_PORT" "refused"
expect_out "connection refused" "refused"
run chat-client --config "$T/chat.ini" --connect "no-such-host.invalid:7400" --user zed
expect_rc 1 "unresolvable"
expect_err "host name cannot be resolved" "unresolvable"
run chat-client --config "$T/chat.ini" --connect "127.0.0.1" --user zed
expect_rc 2 "malformed address"
expect_err "--connect" "malformed address"
run chat-client --config "$T/chat.ini" --user "Not Valid"
expect_rc 2 "bad username"
expect_err "username 'Not Valid'" "bad username"
run chat-client --config "$T/chat.ini" --user zed --suites nosuch
expect_rc 1 "unknown suite"
expect_err "cipher plugin 'nosuch': file not found" "unknown suite"
expect_err "(installed in $CHAT_PLUGIN_DIR: aescbc-hmac, noise-xx, rc4dh, rsa, xor-demo)" "an unknown suite: the error lists the installed ones"
printf '[ {"username": "x", "port": 99999, "password": "p"} ]' >"$T/bad-dir.json"
run chat-client --config "$T/chat.ini" --user zed --directory "$T/bad-dir.json"
expect_rc 1 "bad directory"
expect_err "bad-dir.json: entry 1 (x): 'port' must be an integer 1..65535" "bad directory"
finish
