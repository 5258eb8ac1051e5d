#!/usr/bin/env bash
# transports: tcp
# Three relays as one service (docs/CLUSTER.md) with the real programs and
# real engines: one redis-server, one PostgreSQL, relays A, B and C on both.
#  - registered users on A and on B talk with every suite (messages both
#    ways, end-to-end receipts); /who on C lists users of A and B;
#  - a room of guests on A, B and C: every member hears every other;
#  - mail stored through A for a user who is offline is delivered through C,
#    exactly once and in order;
#  - kill -9 of relay A while its user sends: the client moves to B, and
#    every message the cluster acknowledged (STORED) is shown once, none twice;
#  - Redis stopped: users of one relay keep talking, a remote user is "not
#    reachable"; mail stored meanwhile arrives when Redis is back.
. "$(dirname "$0")/lib-e2e.sh"
. "$(dirname "$0")/lib-postgres.sh"
. "$(dirname "$0")/lib-redis.sh"
pg_start
redis_start || finish
test_ini
printf '\n[plugin.aescbc-hmac]\niterations = 10000\n' >>"$T/chat.ini"
FAST=(--set client.kdf_iterations=1000)
CLUSTER=(--set relay.database= --set "relay.store=$PG_URL" --set "relay.cluster=$REDIS_URL"
	--set relay.cluster_ttl=3)
declare -A ADDR RPID
# relay NAME: start relay NAME of the cluster (again, after a kill)
relay() {
	start_relay "$1" "${CLUSTER[@]}" || finish
	wait_file "$T/$1.err" "cluster: joined" 5
	ADDR[$1]=$RELAY_ADDR
	RPID[$1]=$RELAY_PID
}
relay A
relay B
relay C
SUITES="noise-xx rsa aescbc-hmac rc4dh xor-demo"

# user NAME: register NAME (through relay A: the store is shared)
user() {
	printf '%s secret\n' "$1" >"$T/$1.pw"
	chmod 600 "$T/$1.pw"
	run chat-client --config "$T/chat.ini" --connect "${ADDR[A]}" -u "$1" --register \
		--password-file "$T/$1.pw" "${FAST[@]}"
	expect_rc 0 "register $1"
}
# up NAME CLIENT RELAY SUITES [ARGS]: NAME's client on RELAY (the others next)
up() {
	local name=$1 cl=$2 r=$3 suites=$4 list
	shift 4
	case $r in A) list="${ADDR[A]},${ADDR[B]},${ADDR[C]}" ;; B) list="${ADDR[B]},${ADDR[C]},${ADDR[A]}" ;;
		C) list="${ADDR[C]},${ADDR[A]},${ADDR[B]}" ;; esac
	RELAY_ADDR=$list client "$cl" "$name" "$suites" --password-file "$T/$name.pw" \
		--directory "$T/dir.json" "${FAST[@]}" "$@"
	wait_for "$cl" "logged-in $name registered"
}
# guest CLIENT NAME RELAY SUITES
guest() { RELAY_ADDR=${ADDR[$3]} client "$1" "$2" "$4"; wait_for "$1" "logged-in $2 guest"; }

names=()
for s in $SUITES; do names+=("a${s//-/}" "b${s//-/}"); done
names+=(carol dave erin)
for n in "${names[@]}"; do user "$n"; done
# Everyone knows one shared aescbc-hmac password for everyone else.
{
	echo "["
	sep=""
	for n in "${names[@]}"; do
		printf '%s {"username": "%s", "ip": "127.0.0.1", "port": 1, "password": "shared words"}\n' "$sep" "$n"
		sep=","
	done
	echo "]"
} >"$T/dir.json"
chmod 600 "$T/dir.json"

# ---- every suite between a user on A and a user on B
for s in $SUITES; do
	a="a${s//-/}" b="b${s//-/}"
	up "$a" "$a" A "$s"
	up "$b" "$b" B "$s"
	say "$a" "/talk $b"
	wait_for "$b" "offer $a $s"
	say "$b" "/accept $a"
	wait_for "$a" "established $b $s"
	say "$a" "from A to B with $s"
	wait_for "$b" "msg $a $s from A to B with $s"
	say "$b" "from B to A with $s"
	wait_for "$a" "msg $b $s from B to A with $s"
	wait_count "$a" "^delivered $b $s" 1
done
# /who on C: users of A and of B, registered.
up carol carol C noise-xx
say carol "/who"
wait_for carol "who anoisexx"
wait_for carol "who bnoisexx"
for s in $SUITES; do a="a${s//-/}" b="b${s//-/}"; [ "$s" = noise-xx ] || { quit "$a"; quit "$b"; }; done

# ---- a room across the three relays (guests)
guest g1 gina A rc4dh
guest g2 hank B rc4dh
guest g3 ivan C rc4dh
say g1 "/join lobby"
wait_for g1 "joined lobby"
say g2 "/join lobby"
wait_for g2 "joined lobby gina"
say g3 "/join lobby"
wait_for g3 "joined lobby"
wait_for g3 "established gina rc4dh"
wait_for g3 "established hank rc4dh"
say g1 "hello from A"
wait_for g2 "room lobby gina rc4dh hello from A"
wait_for g3 "room lobby gina rc4dh hello from A"
say g3 "hello from C"
wait_for g1 "room lobby ivan rc4dh hello from C"
wait_for g2 "room lobby ivan rc4dh hello from C"
say g2 "/rooms"
wait_for g2 "rooms lobby 3"
quit g2
wait_for g1 "room-leave lobby hank"

# ---- mail through A for dave (offline), delivered through C
up dave dave C noise-xx
say anoisexx "/talk dave"
wait_for dave "offer anoisexx noise-xx"
say dave "/accept anoisexx"
wait_for anoisexx "established dave noise-xx"
wait_for dave "established anoisexx noise-xx" # the handshake's last message, through A to C
quit dave
say anoisexx "/to dave"
for i in 1 2 3 4 5; do say anoisexx "mail $i for dave"; done
wait_count anoisexx "^stored dave [0-9]* queued" 5
up dave dave2 C noise-xx
wait_for dave2 "msg anoisexx noise-xx mail 5 for dave"
got=$(grep "msg anoisexx noise-xx mail" "$T/dave2.out" | sed 's/.*mail \([0-9]\) for dave/\1/' | tr '\n' ' ')
[ "$got" = "1 2 3 4 5 " ] && pass || fail "mail through A to C: got '$got', want each of 1..5 once, in order"
wait_count anoisexx "^delivered dave noise-xx" 5

# ---- kill -9 relay A while its user sends to a user on B
say anoisexx "/to bnoisexx"
for i in $(seq 1 20); do
	say anoisexx "burst $i"
	[ "$i" = 8 ] && kill -9 "${RPID[A]}"
	sleep 0.05
done
wait_for anoisexx "connected ${ADDR[B]}" 30
wait_for bnoisexx "msg anoisexx noise-xx burst 20" 60
acked=$(grep -c "^stored bnoisexx [0-9]* " "$T/anoisexx.out")
shown=0
for i in $(seq 1 20); do
	n=$(grep -c "msg anoisexx noise-xx burst $i$" "$T/bnoisexx.out")
	shown=$((shown + n))
	[ "$n" = 1 ] && pass || fail "burst $i shown $n times at bnoisexx (the cluster acknowledged $acked)"
done
echo "kill -9 of relay A during a stream: 20 typed, $(grep -c "^stored bnoisexx [0-9]* " "$T/anoisexx.out") STORED lines at the sender (all runs of the conversation), $shown shown at the recipient"
relay A

# ---- Redis goes away and comes back
redis_stop
guest l1 lena C rc4dh
guest l2 max C rc4dh
say l1 "/talk max"
wait_for l2 "offer lena rc4dh"
say l2 "/accept lena"
wait_for l1 "established max rc4dh"
say l1 "local while redis is down"
wait_for l2 "msg lena rc4dh local while redis is down"
say l1 "/talk hank"
wait_for l1 "not reachable"
say bnoisexx "/to anoisexx"
say bnoisexx "stored while redis is down"
wait_for bnoisexx "stored anoisexx"
redis_start "$REDIS_PORT" || finish
wait_for anoisexx "msg bnoisexx noise-xx stored while redis is down" 30
say anoisexx "after redis came back"
wait_for bnoisexx "msg anoisexx noise-xx after redis came back" 30

for c in anoisexx bnoisexx carol dave2 g1 g3 l1 l2; do quit "$c"; done
finish
