#!/usr/bin/env bash
# Offline delivery between registered users with the real programs, for every
# suite and in both directions: messages typed while the other side is away
# (xor-demo, rc4dh, aescbc-hmac, noise-xx, rsa)
# are stored (ciphertext) and delivered in order at their next login, with
# end-to-end receipts (sealed by the recipient's client: "delivered NAME
# SUITE #N", marked unauthenticated for suites that cannot authenticate
# them) for exactly the messages shown; an offer to an offline user is completed when they come
# back, and text typed before that is delivered then.  For aescbc-hmac the
# handshake crosses an offline gap longer than its 25-second window.
. "$(dirname "$0")/lib-e2e.sh"
test_ini
printf '\n[plugin.aescbc-hmac]\niterations = 10000\n' >>"$T/chat.ini"
FAST=(--set client.kdf_iterations=1000)
start_relay relay || finish
SUITES="xor-demo rc4dh aescbc-hmac noise-xx rsa"

# user NAME: register NAME (password file $T/NAME.pw, directory $T/NAME.json
# knowing every other user's shared aescbc-hmac password)
users=()
user() {
	printf '%s secret\n' "$1" >"$T/$1.pw"
	chmod 600 "$T/$1.pw"
	users+=("$1")
	run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u "$1" --register \
		--password-file "$T/$1.pw" "${FAST[@]}"
	expect_rc 0 "register $1"
}
directories() {
	for u in "${users[@]}"; do
		{
			echo "["
			sep=""
			for o in "${users[@]}"; do
				[ "$o" = "$u" ] && continue
				printf '%s {"username": "%s", "ip": "127.0.0.1", "port": 1, "password": "shared words"}\n' "$sep" "$o"
				sep=","
			done
			echo "]"
		} >"$T/$u.json"
		chmod 600 "$T/$u.json" # it holds passwords (else a warning)
	done
}
# up NAME CLIENT SUITE: start NAME's client
up() { client "$2" "$1" "$3" --password-file "$T/$1.pw" --directory "$T/$1.json" "${FAST[@]}"; wait_for "$2" "logged-in $1 registered"; }
# delivered CLIENT PEER SUITE "#1 #2": exactly these end-to-end receipts, each once
delivered() {
	wait_count "$1" "^delivered $2 " "$(wc -w <<<"$4")"
	local got
	got=$(grep "^delivered $2 $3" "$T/$1.out" | grep -o '#[0-9]*' | tr '\n' ' ')
	[ "$got" = "$4 " ] && pass || fail "$1: receipts from $2 are '$got', expected '$4'"
	if [ "$3" != xor-demo ] && [ "$3" != rc4dh ]; then
		grep "^delivered $2" "$T/$1.out" | grep -q unauthenticated && fail "$1: $3 receipt marked unauthenticated" || pass
	else
		[ "$(grep "^delivered $2" "$T/$1.out" | grep -c "insecure #[0-9]* unauthenticated$")" = "$(wc -w <<<"$4")" ] &&
			pass || fail "$1: $3 receipts not marked unauthenticated: $(grep "^delivered $2" "$T/$1.out")"
	fi
}

for suite in $SUITES; do
	a="a${suite//-/}" b="b${suite//-/}"
	user "$a"
	user "$b"
done
user carol
user dave
user erin
user frank
directories

for suite in $SUITES; do
	a="a${suite//-/}" b="b${suite//-/}"
	up "$a" "$a-1" "$suite"
	up "$b" "$b-1" "$suite"
	say "$a-1" "/talk $b"
	wait_for "$b-1" "offer $a $suite"
	say "$b-1" "/accept $a"
	wait_for "$a-1" "established $b $suite"
	wait_for "$b-1" "established $a $suite"
	# b goes away; a writes three messages: stored, then delivered in order.
	quit "$b-1"
	for i in 1 2 3; do say "$a-1" "to $b while away $i"; done
	wait_count "$a-1" "^stored $b [0-9]* queued" 3
	up "$b" "$b-2" "$suite"
	wait_for "$b-2" "resumed $a $suite"
	wait_for "$b-2" "msg $a $suite to $b while away 3"
	grep "msg $a $suite to $b while away" "$T/$b-2.out" | sed 's/.* //' | tr '\n' ' ' | grep -q "^1 2 3 $" &&
		pass || fail "$suite: stored messages out of order: $(grep 'while away' "$T/$b-2.out")"
	delivered "$a-1" "$b" "$suite" "#1 #2 #3"
	grep -q "^sent $b $suite.* #3$" "$T/$a-1.out" && pass || fail "$suite: sent lines carry no number: $(grep '^sent' "$T/$a-1.out")"
	# The other direction: a goes away, b writes.
	quit "$a-1"
	for i in 1 2; do say "$b-2" "to $a while away $i"; done
	wait_count "$b-2" "^stored $a [0-9]* queued" 2
	up "$a" "$a-2" "$suite"
	wait_for "$a-2" "msg $b $suite to $a while away 2"
	grep -q "msg $b $suite to $a while away 1" "$T/$a-2.out" && pass || fail "$suite: first reply lost"
	delivered "$b-2" "$a" "$suite" "#1 #2"
	# Live again, no new handshake.
	say "$a-2" "live again"
	wait_for "$b-2" "msg $a $suite live again"
	wait_count "$a-2" "^delivered $b $suite.* #4" 1
	grep -q "^established" "$T/$a-2.out" "$T/$b-2.out" && fail "$suite: new handshake after a restart" || pass
	quit "$a-2"
	quit "$b-2"
done

# An offer to an offline user, with text typed before it: carol offers dave
# (offline) and leaves; dave accepts and leaves; carol comes back and starts
# the handshake, whose first message waits at the relay for dave more than
# 25 s -- longer than aescbc-hmac's window, so it is checked against the time
# the relay stored it (handshake_at).  (noise-xx below, without the wait.)
up carol carol-1 aescbc-hmac
say carol-1 "/msg dave typed before dave ever answered"
wait_for carol-1 "dave is offline"
quit carol-1
up dave dave-1 aescbc-hmac
wait_for dave-1 "offer carol aescbc-hmac"
say dave-1 "/accept carol"
sleep 1
quit dave-1
up carol carol-2 aescbc-hmac
sleep 2
sqlite3 "$T/relay.db" "select count(*) from mail where recipient = 'dave'" >"$T/dave-mail" 2>&1
[ "$(cat "$T/dave-mail")" -ge 1 ] && pass || fail "carol's handshake was not stored for dave: $(cat "$T/dave-mail")"
sleep 27
up dave dave-2 aescbc-hmac
wait_for dave-2 "msg carol aescbc-hmac typed before dave ever answered" 60
wait_for carol-2 "delivered dave aescbc-hmac #1"
quit carol-2
quit dave-2

# The same through offline gaps with noise-xx (identity keys, first
# contact): erin offers frank (offline) with text and leaves; frank accepts
# and leaves; erin comes back and sends the handshake's first message,
# stored for frank; frank comes back: the handshake completes, both pin
# each other's key, the text arrives.
up erin erin-1 noise-xx
say erin-1 "/msg frank typed before frank ever answered"
wait_for erin-1 "frank is offline"
quit erin-1
up frank frank-1 noise-xx
wait_for frank-1 "offer erin noise-xx"
say frank-1 "/accept erin"
sleep 1
quit frank-1
up erin erin-2 noise-xx
sleep 1
[ "$(sqlite3 "$T/relay.db" "select count(*) from mail where recipient = 'frank'")" -ge 1 ] &&
	pass || fail "erin's noise-xx handshake was not stored for frank"
up frank frank-2 noise-xx
wait_for frank-2 "msg erin noise-xx typed before frank ever answered" 60
wait_for frank-2 "erin's noise-xx identity key sha256:"
wait_for erin-2 "frank's noise-xx identity key sha256:"
wait_for erin-2 "delivered frank noise-xx #1"
quit erin-2
quit frank-2

# The relay stored ciphertext only.
for f in "$T"/relay.db*; do
	grep -qaF "while away" "$f" && fail "plaintext in $f" || pass
done
grep -qaF "typed before" "$T"/relay.db* && fail "plaintext in the database" || pass
kill "$RELAY_PID"
wait_exit "$RELAY_PID" 10
finish
