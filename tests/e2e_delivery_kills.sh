#!/usr/bin/env bash
# End-to-end delivery ("Delivery you can trust") across kill -9, with the
# real programs, for rc4dh and aescbc-hmac side by side:
#   recipient killed: bob's client is killed at random moments (20 times)
#     while alice's 100 messages come in, and started again each time: every
#     message is shown exactly once over all his runs (and is in his history
#     once), in order, and alice hears 'delivered' for each.
#   sender killed: alice's client is killed at random moments (20 times)
#     while she types a numbered stream, and started again each time: every
#     message her client acknowledged with 'sent' (in any run) is shown
#     exactly once, in order, and confirmed; nothing is shown twice.
# Each case prints its totals.  Under valgrind (CHAT_VALGRIND=1) there are
# fewer rounds, each slower.  The relay's and the path's failures are in
# e2e_delivery_faults.sh.
# transports: tcp (the kill loop takes a minute and does not depend on the link;
# the clients' reconnecting over TLS is in e2e_offline_on_tls and e2e_identity_on_tls)
. "$(dirname "$0")/lib-e2e.sh"
test_ini
. "$(dirname "$0")/lib-delivery.sh"

ROUNDS=20 MESSAGES=100
if [ ${#VG[@]} -gt 0 ]; then
	ROUNDS=4 MESSAGES=30
	echo "valgrind: $ROUNDS kills of each client instead of 20, $MESSAGES messages instead of 100"
fi
SUITES=(rc4dh aescbc-hmac)
RANDOM=$$

# nap SECONDS: sleep without starting a process (read times out on a pipe
# that never has anything to read)
exec {NAPFD}<> <(:)
nap() { read -r -t "$1" -u "$NAPFD" _; }
# ms MS: MS (stretched by SLOW) as seconds
ms() { local v=$(($1 * SLOW)); printf -v MS '%d.%03d' $((v / 1000)) $((v % 1000)); }
# pause MIN_MS MAX_MS: a random wait in [MIN_MS, MAX_MS) ms
pause() { ms $(($1 + ($2 - $1) * RANDOM / 32768)); nap "$MS"; }
# kill_client NAME: kill -9 NAME's client, close its input
kill_client() {
	kill -9 "${CPID[$1]}" 2>/dev/null
	wait "${CPID[$1]}" 2>/dev/null
	exec {CFD[$1]}>&-
}
# typer NAME DELAY_MS TEXT...: type the TEXTs into NAME's client in the
# background, DELAY_MS apart (stops once the client is gone); sets TYPER
typer() {
	local name=$1
	ms "$2"
	shift 2
	(
		trap '' PIPE
		for t in "$@"; do
			printf '%s\n' "$t" >&"${CFD[$name]}" 2>/dev/null || exit 0
			nap "$MS"
		done
	) &
	TYPER=$!
}

start_relay relay || finish
for s in "${SUITES[@]}"; do
	for u in ra rb sa sb; do user "$u${s//-/}"; done
done
directories

# ---- recipient killed
for s in "${SUITES[@]}"; do
	a="ra${s//-/}" b="rb${s//-/}"
	up "$a" "$a" "$s"
	up "$b" "$b-00" "$s"
	converse "$a" "$a" "$b" "$b-00" "$s"
	quit "$b-00"
done
# alice types for about as long as the rounds take
declare -A TEXTS
typers=()
for s in "${SUITES[@]}"; do
	a="ra${s//-/}"
	TEXTS[$s]=$(seq -f "r%g-$s" 1 "$MESSAGES" | tr '\n' ' ')
	# shellcheck disable=SC2086
	typer "$a" $((ROUNDS * 800 / MESSAGES)) ${TEXTS[$s]}
	typers+=("$TYPER")
done
# (client names sort in the order of the runs: bob-00 .. bob-20, bob-last)
for i in $(seq -w 1 "$ROUNDS"); do
	for s in "${SUITES[@]}"; do start "rb${s//-/}" "rb${s//-/}-$i" "$s"; done
	for s in "${SUITES[@]}"; do
		pause 150 900
		kill_client "rb${s//-/}-$i"
	done
done
for t in "${typers[@]}"; do wait "$t"; done
for s in "${SUITES[@]}"; do up "rb${s//-/}" "rb${s//-/}-last" "$s"; done
for s in "${SUITES[@]}"; do
	a="ra${s//-/}" b="rb${s//-/}"
	wait_msg "$a" "$s" "r$MESSAGES-$s" 60 "$T/$b"-*.out
	wait_lines "$a" "^delivered $b $s .*#$MESSAGES( |$)" 1 60
done
sleep 2 # a second copy would come now
for s in "${SUITES[@]}"; do
	a="ra${s//-/}" b="rb${s//-/}"
	quit "$b-last"
	# shellcheck disable=SC2086
	tally "recipient killed ${ROUNDS}x $s" "$a" "$b" "$s" "$T/$a.out" "$(echo "$T/$b"-*.out)" ${TEXTS[$s]}
	# his history holds each once, in order
	run chat-client --read-log "$T/client/$b.log" --password-file "$T/$b.pw"
	expect_rc 0 "$b --read-log"
	got=$(grep -oE " received $a r[0-9]+-$s$" <<<"$OUT" | sed 's/.* //' | tr '\n' ' ')
	[ "$got" = "${TEXTS[$s]}" ] && pass || fail "recipient killed $s: $b's history holds '${got:0:300}'"
	echo "recipient killed ${ROUNDS}x $s: history $(wc -w <<<"$got") of $MESSAGES"
	quit "$a"
done
echo "recipient killed: done after $SECONDS s"

# ---- sender killed
for s in "${SUITES[@]}"; do
	a="sa${s//-/}" b="sb${s//-/}"
	up "$a" "$a-00" "$s"
	up "$b" "$b" "$s"
	converse "$a" "$a-00" "$b" "$b" "$s"
	quit "$a-00"
done
# text G: "kG-" and G dots, so its size ('sent ... SIZE') says which it is
text() { printf -v TEXT 'k%d-%*s' "$1" "$1" ""; TEXT=${TEXT// /.}; }
PER=12
g=0
for i in $(seq -w 1 "$ROUNDS"); do
	typers=()
	for s in "${SUITES[@]}"; do
		start "sa${s//-/}" "sa${s//-/}-$i" "$s"
		set --
		for k in $(seq 1 $PER); do text $((g + k)); set -- "$@" "$TEXT"; done
		typer "sa${s//-/}-$i" 100 "$@"
		typers+=("$TYPER")
	done
	g=$((g + PER))
	pause 200 1400
	kill_client "sarc4dh-$i"
	pause 0 400
	kill_client "saaescbchmac-$i"
	for t in "${typers[@]}"; do wait "$t"; done
done
for s in "${SUITES[@]}"; do up "sa${s//-/}" "sa${s//-/}-last" "$s"; done
for s in "${SUITES[@]}"; do
	a="sa${s//-/}" b="sb${s//-/}"
	# What alice's client acknowledged, in the order typed (sizes name them).
	sizes=" $(cat "$T/$a"-*.out | grep "^sent $b $s " | awk '{ print $4 }' | sort -n | tr '\n' ' ')"
	acked=()
	for k in $(seq 1 $g); do
		text "$k"
		[[ $sizes == *" ${#TEXT} "* ]] && acked+=("$TEXT")
	done
	if [ ${#acked[@]} -gt 0 ]; then
		pass
		wait_msg "$a" "$s" "${acked[-1]}" 60 "$T/$b.out"
	else
		fail "sender killed $s: $a's client acknowledged nothing in $ROUNDS runs"
	fi
	n=$(cat "$T/$a"-*.out | grep -c "^sent $b $s ")
	for _ in $(seq 1 $((60 * SLOW * 10))); do
		[ "$(numbers "^delivered $b $s " "$T/$a"-*.out | uniq | wc -l)" -ge "$n" ] && break
		sleep 0.1
	done
	sleep 2 # a second copy would come now
	# shellcheck disable=SC2046
	tally "sender killed ${ROUNDS}x $s" "$a" "$b" "$s" "$(echo "$T/$a"-*.out)" "$T/$b.out" "${acked[@]}"
	echo "sender killed ${ROUNDS}x $s: $g typed, ${#acked[@]} acknowledged, $(grep -c "^msg $a $s " "$T/$b.out") shown"
	quit "$a-last"
	quit "$b"
done
echo "sender killed: done after $SECONDS s"
kill -TERM "$RELAY_PID"
wait_exit "$RELAY_PID" 30
expect_rc 0 "relay exit"
finish
