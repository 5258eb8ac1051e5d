# Sourced (after lib-e2e.sh) by the e2e_delivery_*.sh tests: registered
# users with a shared aescbc-hmac password, conversations between them, and
# the totals of one delivery case (what the sender's client acknowledged and
# confirmed, what the recipient's client showed).
printf '\n[plugin.aescbc-hmac]\niterations = 10000\n' >>"$T/chat.ini"
FAST=(--set client.kdf_iterations=1000)

# Slower everything under valgrind: waits are stretched, never shortened.
SLOW=1
[ ${#VG[@]} -gt 0 ] && SLOW=4

# user NAME: register NAME at the relay $RELAY_ADDR (password file $T/NAME.pw)
users=()
user() {
	printf '%s secret\n' "$1" >"$T/$1.pw"
	chmod 600 "$T/$1.pw"
	users+=("$1")
	run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u "$1" --register \
		--password-file "$T/$1.pw" "${FAST[@]}"
	expect_rc 0 "register $1"
}
# directories: every user's directory ($T/NAME.json) knows every other user's
# aescbc-hmac password
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
	done
}
# start USER CLIENT SUITE [ARGS...]: USER's client named CLIENT, not waiting
start() {
	local u=$1 name=$2 suite=$3
	shift 3
	client "$name" "$u" "$suite" --password-file "$T/$u.pw" --directory "$T/$u.json" "${FAST[@]}" "$@"
}
# up USER CLIENT SUITE [ARGS...]: start it and wait for the login
up() {
	start "$@"
	wait_for "$2" "logged-in $1 registered" $((30 * SLOW))
}
# converse A CLIENT_A B CLIENT_B SUITE: A offers, B accepts, both established
converse() {
	say "$2" "/talk $3"
	wait_for "$4" "offer $1 $5" $((20 * SLOW))
	say "$4" "/accept $1"
	wait_for "$2" "established $3 $5" $((20 * SLOW))
	wait_for "$4" "established $1 $5" $((20 * SLOW))
}
# lines CLIENT REGEX: lines of CLIENT's output matching REGEX
lines() { grep -cE -- "$2" "$T/$1.out" 2>/dev/null || true; }
# wait_lines CLIENT REGEX N [SECONDS]: at least N such lines
wait_lines() {
	local limit=${4:-30}
	for _ in $(seq 1 $((limit * SLOW * 10))); do
		[ "$(lines "$1" "$2")" -ge "$3" ] && { pass; return 0; }
		sleep 0.1
	done
	fail "$1: fewer than $3 lines matching '$2': $(tail -5 "$T/$1.out" | cut -c1-200)"
	return 1
}
# shown_all FROM SUITE TEXT FILES...: every one of FILES' msg lines together
# show TEXT (quoted as one word) -- a wait condition
has_msg() {
	local from=$1 suite=$2 text=$3
	shift 3
	cat "$@" 2>/dev/null | grep -qxF -- "msg $from $suite $text"
}
# wait_msg FROM SUITE TEXT SECONDS FILES...: has_msg, waiting at most SECONDS
wait_msg() {
	local from=$1 suite=$2 text=$3 limit=$4
	shift 4
	for _ in $(seq 1 $((limit * SLOW * 10))); do
		has_msg "$from" "$suite" "$text" "$@" && { pass; return 0; }
		sleep 0.1
	done
	fail "msg $from $suite $text never shown in $*"
	return 1
}
# numbers REGEX FILES...: the #N of the matching lines, one a line, sorted
numbers() {
	local re=$1
	shift
	cat "$@" 2>/dev/null | grep -E -- "$re" | grep -oE '#[0-9]+' | tr -d '#' | sort -n
}

# tally LABEL FROM TO SUITE "SENDER_FILES" "RECIPIENT_FILES" TEXT...
# FROM's client output (all its runs) sent TEXT... to TO, in this order; the
# totals, printed: messages FROM's client acknowledged ("sent"), how many of
# those TO's client confirmed ("delivered"), TEXTs TO's client showed, copies
# shown more than once (of any text), TEXTs never shown.  Fails unless every
# TEXT was acknowledged, confirmed and shown exactly once, in order.
tally() {
	local label=$1 from=$2 to=$3 suite=$4 sfiles=$5 rfiles=$6
	shift 6
	local n=$# shown lost dup order k sent delivered
	# shellcheck disable=SC2086
	cat $rfiles 2>/dev/null | grep -F "msg $from $suite " | sed "s/^msg $from $suite //" >"$T/tally.shown"
	printf '%s\n' "$@" >"$T/tally.expected"
	# shown, lost, texts shown more than once, and whether the first showing
	# of each expected text came in the order typed
	read -r shown lost dup order < <(awk '
		NR == FNR { want[++n] = $0; is[$0] = 1; next }
		{ c[$0]++; if (($0 in is) && c[$0] == 1) seen[++m] = $0 }
		END {
			for (i = 1; i <= n; i++) if (c[want[i]]) s++; else l++
			for (t in c) if (c[t] > 1) d++
			o = 1; j = 0
			for (i = 1; i <= n; i++) if (c[want[i]] && seen[++j] != want[i]) o = 0
			print s + 0, l + 0, d + 0, o
		}' "$T/tally.expected" "$T/tally.shown")
	# shellcheck disable=SC2086
	numbers "^sent $to $suite " $sfiles >"$T/tally.sent"
	# shellcheck disable=SC2086
	numbers "^delivered $to $suite " $sfiles >"$T/tally.delivered"
	sent=$(wc -l <"$T/tally.sent")
	delivered=$(sort -u "$T/tally.delivered" | comm -12 - <(sort -u "$T/tally.sent") | wc -l)
	echo "$label: sent $sent, delivered $delivered, shown $shown, duplicated $dup, lost $lost"
	[ "$sent" -eq "$n" ] && pass || fail "$label: $sent 'sent' lines for $n messages"
	k=$(uniq -d "$T/tally.sent" | wc -l)
	[ "$k" -eq 0 ] && pass || fail "$label: $k message numbers acknowledged twice"
	[ "$delivered" -eq "$sent" ] && pass || fail "$label: only $delivered of $sent messages confirmed 'delivered'"
	k=$(uniq -d "$T/tally.delivered" | wc -l)
	[ "$k" -eq 0 ] && pass || fail "$label: $k messages confirmed 'delivered' twice"
	[ "$lost" -eq 0 ] && pass || fail "$label: $lost of $n messages never shown: $(grep -vxF -f "$T/tally.shown" "$T/tally.expected" | head -5 | tr '\n' ' ')"
	[ "$dup" -eq 0 ] && pass || fail "$label: $dup messages shown twice: $(sort "$T/tally.shown" | uniq -d | head -5 | tr '\n' ' ')"
	[ "$order" = 1 ] && pass || fail "$label: shown out of order: $(tr '\n' ' ' <"$T/tally.shown" | cut -c1-300)"
}
