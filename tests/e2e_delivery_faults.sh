#!/usr/bin/env bash
# End-to-end delivery ("Delivery you can trust") when the relay or the path
# fails, with the real programs: the sender's client keeps every typed
# message until the recipient's client confirms it, whatever happened on
# the way, and the recipient shows each once, in order.
#   queue-full: the relay refuses SENDs (relay.queue_max_messages=3) while
#     the recipient is away; refused ones go again after a backoff, later ones
#     wait behind them -- without a new login (rc4dh and aescbc-hmac).
#   disk-full: the relay's database on a full tmpfs refuses SENDs (ERROR
#     storage); they go again once there is room, without a new login.
#   stall: the sender's link stalls for 30 s (chat-tap) while she types
#     (aescbc-hmac): the messages reach the relay 30 s late, the recipient's
#     client rejects them as stale, they are sealed again and shown once.
#   outbox: the sender types while her SENDs cannot reach the relay, is
#     killed, and is restarted straight to the relay 30 s later: everything
#     arrives (sealed again where stale), nothing twice.
# Each case prints its totals ("queue-full rc4dh: sent 8, delivered 8,
# shown 8, duplicated 0, lost 0").  The kills of e2e_delivery_kills.sh are
# the other half.
# transports: tcp (chat-tap reads and rewrites frames on the path: it stands for
# the relay or a path that TLS would shut out)
. "$(dirname "$0")/lib-e2e.sh"
test_ini
. "$(dirname "$0")/lib-delivery.sh"

DBFS="$T/dbfs"
MOUNTED=0
on_exit() {
	for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
	wait 2>/dev/null
	[ "$MOUNTED" = 1 ] && umount -l "$DBFS" 2>/dev/null
	cleanup
}
trap on_exit EXIT

# tap NAME: a chat-tap to the relay at $RELAY_PORT; sets TAP_PID, TAP_ADDR
tap() {
	"$CHAT_TAP" "$T/$1.port" "$RELAY_PORT" "$T/$1.rec" &
	TAP_PID=$!
	PIDS+=("$TAP_PID")
	for _ in $(seq 1 100); do [ -s "$T/$1.port" ] && break; sleep 0.05; done
	TAP_ADDR="127.0.0.1:$(cat "$T/$1.port")"
}

# ---- queue-full: both suites at once, one pair each, on one relay
start_relay queue --set relay.database="$T/queue.db" --set relay.queue_max_messages=3 || finish
QUEUE_PID=$RELAY_PID
SUITES=(rc4dh aescbc-hmac)
for s in "${SUITES[@]}"; do user "qa${s//-/}"; user "qb${s//-/}"; done
directories
for s in "${SUITES[@]}"; do
	a="qa${s//-/}" b="qb${s//-/}"
	up "$a" "$a" "$s"
	up "$b" "$b-1" "$s"
	converse "$a" "$a" "$b" "$b-1" "$s"
	quit "$b-1"
done
# Away: three are stored, the fourth and fifth refused.
for s in "${SUITES[@]}"; do
	a="qa${s//-/}" b="qb${s//-/}"
	for i in 1 2 3 4 5; do say "$a" "q$i"; done
done
for s in "${SUITES[@]}"; do
	a="qa${s//-/}" b="qb${s//-/}"
	wait_lines "$a" "^sent $b $s .* #5$" 1
	wait_lines "$a" "^stored $b [0-9]+ queued" 3
	wait_lines "$a" "^error queue-full $b " 2
	wait_lines "$a" "^info $b message #4 to $b is kept and sent again in [0-9]+ s" 1
done
sleep 2
for s in "${SUITES[@]}"; do
	a="qa${s//-/}" b="qb${s//-/}"
	up "$b" "$b-2" "$s"
done
for s in "${SUITES[@]}"; do
	a="qa${s//-/}" b="qb${s//-/}"
	wait_msg "$a" "$s" q5 60 "$T/$b-2.out"
	for i in 6 7 8; do say "$a" "q$i"; done
done
for s in "${SUITES[@]}"; do
	a="qa${s//-/}" b="qb${s//-/}"
	wait_msg "$a" "$s" q8 60 "$T/$b-2.out"
	wait_lines "$a" "^delivered $b $s .*#8( |$)" 1 60
	sleep 1 # a second copy would come now
	tally "queue-full $s" "$a" "$b" "$s" "$T/$a.out" "$T/$b-1.out $T/$b-2.out" q1 q2 q3 q4 q5 q6 q7 q8
	[ "$(lines "$a" "^logged-in ")" = 1 ] && pass || fail "queue-full $s: $a logged in again"
	quit "$a"
	quit "$b-2"
done
kill -TERM "$QUEUE_PID"
wait_exit "$QUEUE_PID" 30
expect_rc 0 "queue relay exit"
echo "queue-full: done after $SECONDS s"

# ---- disk-full: the relay's database on a tmpfs, filled, then freed
mkdir -p "$DBFS"
if ! why=$(mount -t tmpfs -o size=4m tmpfs "$DBFS" 2>&1); then
	echo "disk-full: SKIPPED, cannot mount a tmpfs for the relay's database: ${why:-mount failed}"
else
	MOUNTED=1
	start_relay disk --set relay.database="$DBFS/relay.db" || finish
	DISK_PID=$RELAY_PID
	for s in "${SUITES[@]}"; do user "da${s//-/}"; user "db${s//-/}"; done
	directories
	for s in "${SUITES[@]}"; do
		a="da${s//-/}" b="db${s//-/}"
		up "$a" "$a" "$s"
		up "$b" "$b" "$s"
		converse "$a" "$a" "$b" "$b" "$s"
		say "$a" "d1"
		wait_lines "$a" "^delivered $b $s .*#1( |$)" 1
	done
	# Full: nothing more fits (4 KiB pages; the last blocks by the smaller writes).
	dd if=/dev/zero of="$DBFS/fill" bs=64k 2>/dev/null
	dd if=/dev/zero of="$DBFS/fill2" bs=4k 2>/dev/null
	echo "disk-full: $(df -k "$DBFS" | awk 'NR == 2 { print $4 }') KiB left on the relay's file system"
	for s in "${SUITES[@]}"; do
		a="da${s//-/}" b="db${s//-/}"
		for i in 2 3 4; do say "$a" "d$i"; done
	done
	for s in "${SUITES[@]}"; do
		a="da${s//-/}" b="db${s//-/}"
		wait_lines "$a" "^error storage " 1
		wait_lines "$a" "^info $b message #2 to $b is kept and sent again in [0-9]+ s" 1
	done
	sleep 2 # a try or two more while it is full
	for s in "${SUITES[@]}"; do
		a="da${s//-/}" b="db${s//-/}"
		k=$(lines "$b" "^msg $a ")
		[ "$k" = 1 ] && pass || fail "disk-full $s: $b was shown $k messages while the disk was full"
	done
	rm -f "$DBFS/fill" "$DBFS/fill2"
	for s in "${SUITES[@]}"; do
		a="da${s//-/}" b="db${s//-/}"
		for i in 5 6; do say "$a" "d$i"; done
	done
	for s in "${SUITES[@]}"; do
		a="da${s//-/}" b="db${s//-/}"
		wait_msg "$a" "$s" d6 60 "$T/$b.out"
		wait_lines "$a" "^delivered $b $s .*#6( |$)" 1 60
		sleep 1
		tally "disk-full $s" "$a" "$b" "$s" "$T/$a.out" "$T/$b.out" d1 d2 d3 d4 d5 d6
		[ "$(lines "$a" "^logged-in ")" = 1 ] && pass || fail "disk-full $s: $a logged in again"
		quit "$a"
		quit "$b"
	done
	expect_file "$T/disk.err" "database commit failed" "disk-full: the relay says why"
	kill -TERM "$DISK_PID"
	wait_exit "$DISK_PID" 30
	expect_rc 0 "disk relay exit"
	umount "$DBFS" && MOUNTED=0
	echo "disk-full: done after $SECONDS s"
fi

# ---- stall and outbox, side by side (their 30 s overlap): aescbc-hmac
# The links outlive a 30 s silence; alice and oalice go through taps.
S=aescbc-hmac
LONG=(--set client.dead_after=60)
start_relay stall --set relay.database="$T/stall.db" --set relay.dead_after=60 || finish
STALL_PID=$RELAY_PID
for u in salice sbob oalice obob; do user "$u"; done
directories
tap tapS
TAPS_PID=$TAP_PID TAPS_ADDR=$TAP_ADDR
tap tapO
TAPO_PID=$TAP_PID TAPO_ADDR=$TAP_ADDR
up sbob sbob $S "${LONG[@]}"
up obob obob $S "${LONG[@]}"
up salice salice $S --connect "$TAPS_ADDR" "${LONG[@]}"
up oalice oalice-1 $S --connect "$TAPO_ADDR" "${LONG[@]}"
converse salice salice sbob sbob $S
converse oalice oalice-1 obob obob $S
say salice "s0"
say oalice-1 "o0"
wait_lines salice "^delivered sbob $S #1$" 1
wait_lines oalice-1 "^delivered obob $S #1$" 1
kill -USR1 "$TAPS_PID"
kill -USR1 "$TAPO_PID"
stalled=$SECONDS
for i in 1 2 3; do say salice "s$i"; say oalice-1 "o$i"; done
wait_lines salice "^sent sbob $S .* #4$" 1
wait_lines oalice-1 "^sent obob $S .* #4$" 1
# oalice's client dies with its outbox in the keystore.
kill -9 "${CPID[oalice-1]}"
wait "${CPID[oalice-1]}" 2>/dev/null
exec {CFD[oalice-1]}>&-
left=$((30 - (SECONDS - stalled)))
[ "$left" -gt 0 ] && sleep "$left"
[ "$(lines sbob "^msg salice ")" = 1 ] && pass || fail "stall: sbob got messages through a stalled link"
# 30 s later: the tap lets salice's SENDs through; oalice starts again, straight to the relay.
kill -USR1 "$TAPS_PID"
up oalice oalice-2 $S "${LONG[@]}"
wait_msg salice $S s3 60 "$T/sbob.out"
wait_msg oalice $S o3 60 "$T/obob.out"
wait_lines salice "^delivered sbob $S #4$" 1 60
wait_lines oalice-2 "^delivered obob $S #4$" 1 60
# The old link of oalice lets its bytes through too: nothing new comes of them.
kill -USR1 "$TAPO_PID"
sleep 2
tally "stall $S" salice sbob $S "$T/salice.out" "$T/sbob.out" s0 s1 s2 s3
tally "outbox $S" oalice obob $S "$T/oalice-1.out $T/oalice-2.out" "$T/obob.out" o0 o1 o2 o3
# They were late: the recipients rejected them as stale, the senders sealed them again.
for p in "salice sbob" "oalice obob"; do
	set -- $p
	k=$(lines "$2" "^error stale $1 ")
	[ "$k" -ge 3 ] && pass || fail "$2 rejected $k of $1's messages as stale, expected 3: $(grep -v '^msg' "$T/$2.out" | tail -5)"
done
k=$(lines salice "^receipt sbob [0-9]+ unreadable ")
[ "$k" -ge 3 ] && pass || fail "salice heard of $k unreadable copies, expected 3"
[ "$(lines salice "^logged-in ")" = 1 ] && pass || fail "stall: salice logged in again"
expect_file "$T/salice.out" "warning relay not answering for" "stall: salice noticed"
quit salice
quit sbob
quit oalice-2
quit obob
kill -TERM "$STALL_PID"
wait_exit "$STALL_PID" 30
expect_rc 0 "stall relay exit"
echo "stall, outbox: done after $SECONDS s"
finish
