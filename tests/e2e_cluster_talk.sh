#!/usr/bin/env bash
# Two chat-relays as one service over Redis (relay.cluster, docs/CLUSTER.md)
# and two real chat-clients in line mode, one on each relay: they see each
# other, talk end to end under aescbc-hmac (shared secret) and rc4dh, both
# ways, with the same fingerprint on both sides; a room spans the relays.
# Guests only: registered users across relays need a shared store.
# transports: tcp (two relays with no database have no state_dir for a TLS key)
. "$(dirname "$0")/lib-e2e.sh"
. "$(dirname "$0")/lib-redis.sh"
test_ini
printf '\n[plugin.aescbc-hmac]\niterations = 10000\n' >>"$T/chat.ini"
cat >"$T/dir-alice.json" <<'JSON'
[ {"username": "bob", "ip": "127.0.0.1", "port": 7501, "password": "correct horse battery staple"} ]
JSON
cat >"$T/dir-bob.json" <<'JSON'
[ {"username": "alice", "ip": "127.0.0.1", "port": 7500, "password": "correct horse battery staple"} ]
JSON
chmod 600 "$T"/dir-*.json

redis_start || finish
cluster=(--set relay.database= --set "relay.cluster=$REDIS_URL" --set relay.cluster_ttl=3)
start_relay relay-a "${cluster[@]}" --set relay.node_id=a || finish
ADDR_A=$RELAY_ADDR
start_relay relay-b "${cluster[@]}" --set relay.node_id=b || finish
ADDR_B=$RELAY_ADDR
for r in relay-a relay-b; do
	wait_file "$T/$r.err" "cluster: joined $REDIS_URL" 5 # $r joins the cluster
done

for suite in aescbc-hmac rc4dh; do
	a="a-$suite" b="b-$suite"
	RELAY_ADDR=$ADDR_A client "$a" alice "$suite" --directory "$T/dir-alice.json"
	RELAY_ADDR=$ADDR_B client "$b" bob "$suite" --directory "$T/dir-bob.json"
	wait_for "$a" "logged-in alice"
	wait_for "$b" "logged-in bob"
	for _ in $(seq 1 50); do
		say "$a" "/who"
		grep -qF "who bob $suite" "$T/$a.out" && break
		sleep 0.1
	done
	wait_for "$a" "who bob $suite"
	say "$a" "/msg bob across the relays under $suite"
	wait_for "$b" "offer alice $suite"
	say "$b" "/accept alice"
	wait_for "$a" "established bob $suite"
	wait_for "$b" "established alice $suite"
	wait_for "$b" "msg alice $suite across the relays under $suite"
	say "$b" "and back through the other relay"
	wait_for "$a" "msg bob $suite and back through the other relay"
	say "$a" "/fingerprint bob"
	say "$b" "/fingerprint"
	wait_for "$a" "fingerprint bob $suite"
	wait_for "$b" "fingerprint alice $suite"
	fa=$(grep "^fingerprint bob" "$T/$a.out" | awk '{print $4}')
	fb=$(grep "^fingerprint alice" "$T/$b.out" | awk '{print $4}')
	[ -n "$fa" ] && [ "$fa" = "$fb" ] && pass || fail "$suite fingerprints differ: '$fa' vs '$fb'"
	say "$a" "exit"
	wait_for "$b" "closed alice"
	quit "$a"
	quit "$b"
done

# Neither relay logged a payload (they never see plaintext, nor log ciphertext).
for r in relay-a relay-b; do
	if grep -qF "across the relays" "$T/$r.err"; then fail "$r logged a message"; else pass; fi
done
finish
