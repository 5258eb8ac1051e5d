#!/usr/bin/env bash
# transports: tcp
# Registered users across two relays of one cluster (relay.cluster on a
# throwaway redis-server, tests/lib-redis.sh) sharing one store on
# PostgreSQL (tests/lib-postgres.sh): alice on relay A offers bob on relay B
# a conversation; offer, answer and messages are stored and pushed across
# the relays by wake-ups after each commit; bob logging in again on A ends
# his session on B (one live session per name in the cluster); a message
# stored while bob's relay was cut from Redis arrives when it rejoins.
. "$(dirname "$0")/lib-e2e.sh"
. "$(dirname "$0")/lib-postgres.sh"
. "$(dirname "$0")/lib-redis.sh"
pg_start
redis_start || finish
export CHAT_MODULE_DIR=${CHAT_BUILD_DIR:?set by ctest}/modules
URL=$PG_URL
test_ini
sed -i "s|^database = .*|store = $URL|" "$T/chat.ini"
FAST=(--set client.kdf_iterations=1000)
cluster=(--set "relay.cluster=$REDIS_URL" --set relay.cluster_ttl=3)

start_relay relay-a "${cluster[@]}" --set relay.node_id=a || finish
ADDR_A=$RELAY_ADDR
start_relay relay-b "${cluster[@]}" --set relay.node_id=b || finish
ADDR_B=$RELAY_ADDR
for r in relay-a relay-b; do
	wait_file "$T/$r.err" "cluster: joined" 5 # $r joins the cluster
	grep -q "registered users on other relays will not see" "$T/$r.err" &&
		fail "$r warns about its store although it is shared" || pass
done

user() {
	printf '%s secret\n' "$1" >"$T/$1.pw"
	chmod 600 "$T/$1.pw"
	run chat-client --config "$T/chat.ini" --connect "$ADDR_A" -u "$1" --register \
		--password-file "$T/$1.pw" "${FAST[@]}"
	expect_rc 0 "register $1"
}
# up USER NAME ADDR [ARGS...]
up() {
	local u=$1 n=$2 addr=$3; shift 3
	RELAY_ADDR=$addr client "$n" "$u" noise-xx --password-file "$T/$u.pw" "${FAST[@]}" "$@"
	wait_for "$n" "logged-in $u registered"
}

user alice
user bob
up alice a1 "$ADDR_A"
up bob b1 "$ADDR_B"
say a1 "/talk bob"
wait_for b1 "offer alice noise-xx"
say b1 "/accept alice"
wait_for a1 "established bob noise-xx"
wait_for b1 "established alice noise-xx"
say a1 "stored on A, pushed by B"
wait_for b1 "msg alice noise-xx stored on A, pushed by B"
say b1 "and the other way"
wait_for a1 "msg bob noise-xx and the other way"

# bob logs in again on A (from another machine: a data directory of its
# own): his session on B ends, as on one relay.
up bob b2 "$ADDR_A" --set client.data_dir="$T/client-2"
wait_for b1 "logged in from another connection"
quit b2
kill "${CPID[b1]}" 2>/dev/null
wait "${CPID[b1]}" 2>/dev/null

# B is cut from Redis while a message for bob (on B again) is stored: the
# wake-up is lost, and B's rejoin looks for his mail.
up bob b3 "$ADDR_B"
for _ in $(seq 1 50); do say a1 "/who"; grep -q "^who bob" "$T/a1.out" && break; sleep 0.1; done
addrs=$(redis-cli -p "$REDIS_PORT" CLIENT LIST | sed -n 's/^id=[0-9]* addr=\([^ ]*\) .*name=chat-relay:b .*/\1/p')
[ "$(wc -w <<<"$addrs")" = 2 ] && pass || fail "relay b's Redis connections: '$addrs'"
for a in $addrs; do redis-cli -p "$REDIS_PORT" CLIENT KILL ADDR "$a" >/dev/null; done
say a1 "while B is away"
wait_for a1 "stored bob"
for _ in $(seq 1 200); do grep -q "cluster: rejoined" "$T/relay-b.err" && break; sleep 0.05; done
expect_file "$T/relay-b.err" "cluster: rejoined" "relay b rejoins"
wait_for b3 "msg alice noise-xx while B is away"
finish
