#!/usr/bin/env bash
# A network attacker on the recipient's path is defeated (end-to-end
# delivery, docs/PROTOCOL.md 3.3): alice writes five messages to bob while
# he is away (stored at the relay), then bob logs in through chat-tap, which
# rewrites what the relay sends him: --mail-replay (a copy of a stored
# message under a new mail id), --mail-reorder (two swapped), --mail-drop
# (one never arrives) or --mail-dup (one sent twice, same mail id).  For each
# attack and suite: every message is shown at bob exactly once, in the order
# typed; the replayed copy is reported (rejected); alice's "delivered"
# receipts name exactly the messages bob's screen showed, none missing, none
# extra.  A dropped message is sealed again by alice once bob confirms later
# ones (rc4dh skips the gap and opens it); aescbc-hmac has strict sequence
# numbers, so nothing after the lost one can open in that session: bob holds
# them unacknowledged and says so, and they all come, in order, when he logs
# in again.  Then both restart (straight to the relay, saved sessions) and
# write both ways: again each message exactly once, the receipts match,
# nothing from before is shown again.  Totals per case on stdout.
# The cases run side by side (separate users, one tap each); every wait is
# bounded.  CHAT_ATTACK_SUITES / CHAT_ATTACK_MODES pick a subset.
# transports: tcp (chat-tap reads and rewrites frames on the path: it stands for
# the relay or a path that TLS would shut out)
. "$(dirname "$0")/lib-e2e.sh"
test_ini
printf '\n[plugin.aescbc-hmac]\niterations = 10000\n' >>"$T/chat.ini"
FAST=(--set client.kdf_iterations=1000)
start_relay relay || finish

SUITES=(${CHAT_ATTACK_SUITES:-aescbc-hmac rc4dh})
MODES=(${CHAT_ATTACK_MODES:-replay reorder drop dup})
declare -A NTH=([replay]=2 [reorder]=2 [drop]=3 [dup]=3)
SENT=5     # alice's messages while bob is away
AFTER=3    # messages each way after the restart

# password NAME: NAME's password file $T/NAME.pw
password() {
	printf '%s secret\n' "$1" >"$T/$1.pw"
	chmod 600 "$T/$1.pw"
}
# directory NAME OTHER: NAME's directory knows OTHER's shared aescbc-hmac password
directory() {
	printf '[{"username": "%s", "ip": "127.0.0.1", "port": 1, "password": "shared words"}]\n' \
		"$2" >"$T/$1.json"
}
# up USER CLIENT SUITE [ARGS...]: start USER's client, wait for the login
up() {
	local u=$1 name=$2 suite=$3; shift 3
	client "$name" "$u" "$suite" --password-file "$T/$u.pw" --directory "$T/$u.json" "${FAST[@]}" "$@"
	wait_for "$name" "logged-in $u registered"
}
# lines CLIENT PATTERN: how many lines of CLIENT's output match (grep -E)
lines() { local n; n=$(grep -cE -- "$2" "$T/$1.out" 2>/dev/null); echo "${n:-0}"; }
# wait_lines CLIENT PATTERN N SECONDS: at least N such lines within SECONDS (status 0 if so)
wait_lines() {
	local end=$((SECONDS + $4))
	while [ "$(lines "$1" "$2")" -lt "$3" ]; do
		[ $SECONDS -ge $end ] && return 1
		sleep 0.2
	done
}
# shown FILE... : the texts shown ("msg PEER SUITE TEXT"), one a line
shown() { cat "$@" 2>/dev/null | sed -n 's/^msg [^ ]* [^ ]* //p'; }
# numbers FILE...: the #numbers of the "delivered" lines, one a line, in order
numbers() { cat "$@" 2>/dev/null | sed -n 's/^delivered .* #\([0-9]*\).*/\1/p' | sort -n; }
# count LIST: non-empty lines; distinct LIST: distinct non-empty lines
count() { grep -c . <<<"$1"; }
distinct() { sort -u <<<"$1" | grep -c .; }
# same WHAT WANT GOT: the same lines in the same order
same() {
	if [ "$(xargs <<<"$2")" = "$(xargs <<<"$3")" ]; then pass
	else fail "$1: expected '$(xargs <<<"$2")', got '$(xargs <<<"$3")'"; fi
}
# texts PREFIX FIRST LAST: "PREFIX FIRST" .. "PREFIX LAST", one a line
texts() { for i in $(seq "$2" "$3"); do echo "$1 $i"; done; }
# total WHAT SENT SHOWN_LIST DELIVERED_LIST: the totals line
total() {
	echo "$1: sent $2, shown $(distinct "$3"), delivered $(distinct "$4")," \
		"duplicated $(($(count "$3") - $(distinct "$3"))), lost $(($2 - $(distinct "$3")))"
}

# attack_case MODE SUITE: one attack on one suite, then the restart of both.
attack_case() {
	local mode=$1 suite=$2
	local tag="${mode}-${suite//-/}" a="a-${mode}-${suite//-/}" b="b-${mode}-${suite//-/}"
	local ta="$tag to bob" tb="$tag to alice" start=$SECONDS again=""

	password "$a"
	password "$b"
	directory "$a" "$b"
	directory "$b" "$a"
	# Both register (and stay logged in); a conversation, then bob goes
	# away and alice writes.
	up "$a" "$a-1" "$suite" --register
	up "$b" "$b-1" "$suite" --register
	say "$a-1" "/talk $b"
	wait_for "$b-1" "offer $a $suite" || return
	say "$b-1" "/accept $a"
	wait_for "$a-1" "established $b $suite" || return
	wait_for "$b-1" "established $a $suite" || return
	sleep 1 # the handshake's last mail reaches bob before he goes
	quit "$b-1"
	for i in $(seq 1 $SENT); do say "$a-1" "$ta $i"; done
	wait_lines "$a-1" "^stored $b [0-9]+ queued" $SENT 30 && pass ||
		fail "$tag: alice's messages were not all stored: $(tail -3 "$T/$a-1.out")"

	# bob comes back through the attacker.
	"$CHAT_TAP" "--mail-$mode" "${NTH[$mode]}" "$T/$tag.port" "$RELAY_PORT" "$T/$tag.rec" \
		2>"$T/$tag.tap" &
	local tap=$!
	PIDS+=("$tap")
	for _ in $(seq 1 100); do [ -s "$T/$tag.port" ] && break; sleep 0.05; done
	local via="127.0.0.1:$(cat "$T/$tag.port")"
	up "$b" "$b-2" "$suite" --connect "$via"
	wait_for "$b-2" "resumed $a $suite"
	# Every message shown: a dropped one within 40 s (sealed again by alice
	# once bob confirms later ones), the others at once.
	local limit=30
	[ "$mode" = drop ] && limit=40
	wait_lines "$b-2" "^msg $a $suite $ta " $SENT $limit
	case $mode in
	replay) # the copy under a new mail id is held, tried, and rejected (up to 15 s later)
		wait_lines "$b-2" "^error (replay|integrity|malformed) $a message from $a rejected" 1 30 &&
			pass || fail "$tag: the replayed copy was not reported: $(tail -5 "$T/$b-2.out")" ;;
	drop)
		if [ "$(lines "$b-2" "^msg $a $suite $ta ")" -lt $SENT ] && [ "$suite" = aescbc-hmac ]; then
			# Strict sequence numbers (docs/suites/aescbc-hmac.md): nothing
			# after the lost one opens, and a copy sealed again would not
			# either.  bob holds them unacknowledged and says so; the relay
			# delivers them again, in order, when he logs in again.
			expect_file "$T/$b-2.out" "warning $a a stored message from $a could not be opened: one sent before it has not come" \
				"$tag: bob says why he waits"
			same "$tag: alice's receipts before bob logs in again" \
				"$(shown "$T/$b-2.out" | sed 's/.* //' | sort -n)" "$(numbers "$T/$a-1.out")"
			quit "$b-2"
			up "$b" "$b-2b" "$suite" --connect "$via"
			wait_lines "$b-2b" "^msg $a $suite $ta " $((SENT - $(lines "$b-2" "^msg $a $suite $ta "))) 30
			again="after bob logged in again"
		fi ;;
	esac
	local bob2=("$T/$b-2.out")
	[ -n "$again" ] && bob2+=("$T/$b-2b.out")
	# alice is told of exactly what bob's screen showed.
	local got_b
	got_b=$(shown "${bob2[@]}")
	wait_lines "$a-1" "^delivered $b " "$(count "$got_b")" 20
	sleep 2 # anything more (a second copy, a late receipt) would show now
	got_b=$(shown "${bob2[@]}")
	# No storm: each message is sealed again at most once (not sealed,
	# refused and sealed again in a loop).
	local copies
	copies=$(sed -n '/^sent /,$p' "$T/$a-1.out" | grep -cE "^stored $b [0-9]+ ")
	[ "$copies" -le $((2 * SENT)) ] && pass || fail "$tag: alice stored $copies copies of $SENT messages"
	# The attack hit one of alice's messages (not a leftover of the handshake).
	local hit=""
	case $mode in
	replay) hit=$(lines "$b-2" "^error replay ") ;;
	reorder) hit=$(grep -cE "out of order or a gap|never arrived" "$T/$b-2.err") ;;
	drop) [ -n "$again" ] || [ "$copies" -gt $SENT ] && hit=1 ;;
	dup) # bob acknowledged both copies (ACK: length 12, type 0x13, the mail id, 0, "")
		local id
		id=$(sed -n 's/.*twice (mail id \([0-9]*\)).*/\1/p' "$T/$tag.tap")
		[ -n "$id" ] && [ "$(od -An -v -tx1 "$T/$tag.rec" | tr -d ' \n' |
			grep -o "0000000c13$(printf '%016x' "$id")000000" | wc -l)" = 2 ] && hit=1 ;;
	esac
	[ "${hit:-0}" -gt 0 ] && pass || fail "$tag: no sign that the tap hit one of alice's messages: $(cat "$T/$tag.tap")"
	same "$tag: bob's screen (each message once, in the order typed)${again:+, $again}" \
		"$(texts "$ta" 1 $SENT)" "$got_b"
	same "$tag: alice's receipts${again:+, $again}" "$(sed 's/.* //' <<<"$got_b" | sort -n)" "$(numbers "$T/$a-1.out")"
	total "attack $mode $suite" $SENT "$got_b" "$(numbers "$T/$a-1.out")"
	echo "  ($((SECONDS - start)) s${again:+, $again}; copies stored $copies;" \
		"tap: $(sed 's/^chat-tap: //' "$T/$tag.tap" | paste -sd ';' | sed 's/;/; /g'))"

	# Both restart, straight to the relay, and write both ways.
	quit "$b-2${again:+b}"
	quit "$a-1"
	kill "$tap" 2>/dev/null
	up "$a" "$a-3" "$suite"
	up "$b" "$b-3" "$suite"
	wait_for "$a-3" "resumed $b $suite"
	wait_for "$b-3" "resumed $a $suite"
	for i in $(seq 1 $AFTER); do
		say "$a-3" "$ta after restart $i"
		say "$b-3" "$tb after restart $i"
	done
	wait_lines "$b-3" "^msg $a $suite $ta after restart" $AFTER 30
	wait_lines "$a-3" "^msg $b $suite $tb after restart" $AFTER 30
	wait_lines "$a-3" "^delivered $b " $AFTER 30
	wait_lines "$b-3" "^delivered $a " $AFTER 30
	sleep 2
	same "$tag: bob's screen after the restart (nothing from before)" \
		"$(texts "$ta after restart" 1 $AFTER)" "$(shown "$T/$b-3.out")"
	same "$tag: alice's screen after the restart" "$(texts "$tb after restart" 1 $AFTER)" \
		"$(shown "$T/$a-3.out")"
	same "$tag: alice's receipts, all" "$(seq 1 $((SENT + AFTER)))" "$(numbers "$T/$a-1.out" "$T/$a-3.out")"
	same "$tag: bob's receipts" "$(seq 1 $AFTER)" "$(numbers "$T/$b-1.out" "${bob2[@]}" "$T/$b-3.out")"
	grep -qE "^established" "$T/$a-3.out" "$T/$b-3.out" && fail "$tag: a new handshake after the restart" || pass
	total "attack $mode $suite, after a restart of both: to bob" $((SENT + AFTER)) \
		"$(shown "${bob2[@]}" "$T/$b-3.out")" "$(numbers "$T/$a-1.out" "$T/$a-3.out")"
	total "attack $mode $suite, after a restart of both: to alice" $AFTER \
		"$(shown "$T/$a-3.out")" "$(numbers "$T/$b-3.out")"
	quit "$a-3"
	quit "$b-3"
	echo "  ($((SECONDS - start)) s)"
}

# Side by side: each case in a subshell that reports its checks at the end.
cases=()
for suite in "${SUITES[@]}"; do
	for mode in "${MODES[@]}"; do
		tag="${mode}-${suite//-/}"
		(
			trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done' EXIT
			CHECKS=0 FAILS=0 PIDS=()
			attack_case "$mode" "$suite" >"$T/$tag.report"
			echo "$CHECKS $FAILS" >"$T/$tag.result"
		) &
		cases+=("$tag:$!")
	done
done
for c in "${cases[@]}"; do
	tag=${c%%:*}
	wait "${c#*:}"
	cat "$T/$tag.report" 2>/dev/null
	if [ -s "$T/$tag.result" ]; then
		read -r n f <"$T/$tag.result"
		CHECKS=$((CHECKS + n)) FAILS=$((FAILS + f))
	else
		fail "$tag: the case did not finish"
	fi
done

# The relay stored ciphertext only.
grep -qaF "to bob" "$T"/relay.db* && fail "plaintext in the database" || pass
kill "$RELAY_PID"
wait_exit "$RELAY_PID" 10
finish
