# Sourced by the e2e_*.sh tests.  Runs the real programs as separate
# processes on 127.0.0.1 only.  With CHAT_VALGRIND=1 every program runs under
# valgrind and any error or leak fails the test.
set -uo pipefail

: "${CHAT_BIN:?set by ctest}"
: "${CHAT_PLUGIN_DIR:?set by ctest}"
: "${CHAT_SOURCE_DIR:?set by ctest}"

T=$(mktemp -d "${TMPDIR:-/tmp}/chat-e2e.XXXXXX")
FAILS=0
CHECKS=0
PIDS=()

cleanup() {
	for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
	wait 2>/dev/null
	if [ "${CHAT_KEEP_TMP:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

VG=()
if [ "${CHAT_VALGRIND:-0}" = 1 ] && [ "${CHAT_SANITIZE:-0}" != 1 ]; then
	VG=(valgrind -q --leak-check=full --show-leak-kinds=definite,indirect
	    --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --log-file="$T/vg.%p")
fi

# run PROGRAM ARGS...: run a program (under valgrind if asked), output in $OUT / $ERR, status in $RC.
run() {
	local prog=$1; shift
	"${VG[@]}" "$CHAT_BIN/$prog" "$@" >"$T/out" 2>"$T/err" </dev/null
	RC=$?
	OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
}

pass() { CHECKS=$((CHECKS + 1)); }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); echo "FAIL: $*" >&2; }

expect_rc() { # expect_rc WANT WHAT
	if [ "$RC" = "$1" ]; then pass; else fail "$2: exit status $RC, expected $1 (stderr: $ERR)"; fi
}
expect_err() { # expect_err PHRASE WHAT
	if grep -qF -- "$1" <<<"$ERR"; then pass; else fail "$2: stderr lacks '$1': $ERR"; fi
}
expect_out() {
	if grep -qF -- "$1" <<<"$OUT"; then pass; else fail "$2: stdout lacks '$1': $OUT"; fi
}
expect_file() { # expect_file FILE PHRASE WHAT
	if grep -qF -- "$2" "$1"; then pass; else fail "$3: $1 lacks '$2': $(cat "$1")"; fi
}

# The link between clients and relay: ctest runs every e2e script once per
# transport (tests/CMakeLists.txt: NAME with tcp, NAME_on_tls with tls), except
# scripts that say "# transports: tcp" (their chat-tap reads the frames).
CHAT_TEST_TRANSPORT=${CHAT_TEST_TRANSPORT:-tcp}

# A chat.ini for tests: the repository default pointed at this build's plugins,
test_ini() {
	# ... with its database and the clients' data in this test's directory,
	# and relay and client on $CHAT_TEST_TRANSPORT (over TLS the clients
	# trust the relay on first use: $T/client/known_relays).
	sed -e "s|^plugin_dir = .*|plugin_dir = $CHAT_PLUGIN_DIR|" \
	    -e "s|^database = .*|database = $T/relay.db|" \
	    -e "s|^data_dir = .*|data_dir = $T/client|" \
	    -e "/^\[relay\]/,/^\[/ s|^transport = .*|transport = $CHAT_TEST_TRANSPORT|" \
	    -e "/^\[client\]/,/^\[/ s|^transport = .*|transport = $CHAT_TEST_TRANSPORT|" \
	    "$CHAT_SOURCE_DIR/chat.ini" >"$T/chat.ini"
	# One known_relays file for every client of the test, also those run
	# with client.data_dir empty.
	[ "$CHAT_TEST_TRANSPORT" = tls ] && printf '\n[plugin.tls]\nknown_relays = %s\n' "$T/known_relays" >>"$T/chat.ini"
	return 0
}

# start_relay NAME ARGS...: start chat-relay on 127.0.0.1:0; sets RELAY_PID, RELAY_ADDR, RELAY_PORT.
# Every client of a test registers from 127.0.0.1: registrations are not
# throttled unless ARGS say so (a later --set wins).
start_relay() {
	local name=$1; shift
	"${VG[@]}" "$CHAT_BIN/chat-relay" --config "$T/chat.ini" --listen 127.0.0.1:0 \
		--set relay.register_throttle_after=1000 "$@" \
		>"$T/$name.out" 2>"$T/$name.err" &
	RELAY_PID=$!
	PIDS+=("$RELAY_PID")
	for _ in $(seq 1 200); do
		RELAY_ADDR=$(sed -n 's/.*listening on \([^ ]*\) .*/\1/p' "$T/$name.err" | head -1)
		[ -n "$RELAY_ADDR" ] && break
		kill -0 "$RELAY_PID" 2>/dev/null || break
		sleep 0.05
	done
	if [ -z "$RELAY_ADDR" ]; then
		fail "relay $name did not start: $(cat "$T/$name.err")"
		return 1
	fi
	RELAY_PORT=${RELAY_ADDR##*:}
}

# wait_exit PID SECONDS: wait for a process, at most SECONDS; sets RC (124 on timeout).
wait_exit() {
	local pid=$1 limit=$2
	for _ in $(seq 1 $((limit * 20))); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"; RC=$?; return 0
		fi
		sleep 0.05
	done
	kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
	RC=124
}

# Valgrind findings fail the test.
check_valgrind() {
	[ ${#VG[@]} -eq 0 ] && return 0
	for f in "$T"/vg.*; do
		[ -e "$f" ] || continue
		if [ -s "$f" ]; then fail "valgrind: $(cat "$f")"; else pass; fi
	done
}

finish() {
	check_valgrind
	# A script that stops before its first check (a helper file missing, a
	# function not defined) must not pass.
	[ "$CHECKS" -gt 0 ] || fail "$(basename "$0") ran no check at all"
	echo "$(basename "$0"): $((CHECKS - FAILS)) passed, $FAILS failed"
	[ "$FAILS" -eq 0 ]
	exit $?
}

# ---- chat-client sessions driven through fifos (line mode, docs/CLIENT.md)

declare -A CFD CPID
# client NAME USER SUITES [ARGS...]: start chat-client as USER allowing SUITES
client() {
	local name=$1 user=$2 suites=$3; shift 3
	mkfifo "$T/$name.in"
	"${VG[@]}" "$CHAT_BIN/chat-client" --config "$T/chat.ini" --connect "$RELAY_ADDR" \
		--user "$user" --suites "$suites" "$@" <"$T/$name.in" >"$T/$name.out" 2>"$T/$name.err" &
	CPID[$name]=$!
	PIDS+=("$!")
	exec {fd}>"$T/$name.in"
	CFD[$name]=$fd
}
# say NAME LINE: type LINE into NAME's client
say() { printf '%s\n' "$2" >&"${CFD[$1]}"; }
# wait_for NAME TEXT [SECONDS]: NAME's output gets a line containing TEXT
# wait_file FILE TEXT [SECONDS]: FILE (a log) gets a line containing TEXT
# within SECONDS (default 30)
wait_file() {
	local file=$1 text=$2 limit=${3:-30}
	for _ in $(seq 1 $((limit * 20))); do
		grep -qF -- "$text" "$file" 2>/dev/null && { pass; return 0; }
		sleep 0.05
	done
	fail "$file never got '$text': $(tail -5 "$file" 2>/dev/null)"
	return 1
}
wait_for() {
	local name=$1 text=$2 limit=${3:-30}
	for _ in $(seq 1 $((limit * 20))); do
		grep -qF -- "$text" "$T/$name.out" 2>/dev/null && { pass; return 0; }
		sleep 0.05
	done
	fail "$name never printed '${text:0:80}'; it printed: $(tail -5 "$T/$name.out" | cut -c1-200; tail -5 "$T/$name.err" | cut -c1-200)"
	return 1
}
# count NAME PATTERN: lines of NAME's output matching PATTERN (grep regex)
count() { grep -c -- "$2" "$T/$1.out" 2>/dev/null || true; }
# wait_count NAME PATTERN N [LIMIT]: NAME printed at least N lines matching
# PATTERN (a line seen before would satisfy wait_for at once)
wait_count() {
	local name=$1 text=$2 n=$3 limit=${4:-30}
	for _ in $(seq 1 $((limit * 20))); do
		[ "$(count "$name" "$text")" -ge "$n" ] && { pass; return 0; }
		sleep 0.05
	done
	fail "$name printed '${text:0:80}' fewer than $n times; it printed: $(tail -5 "$T/$name.out" | cut -c1-200)"
	return 1
}
# quit NAME [WANT_STATUS]: /quit, close its input, check its exit status
quit() {
	local name=$1 want=${2:-0}
	say "$name" "/quit" 2>/dev/null
	exec {CFD[$name]}>&-
	wait_exit "${CPID[$name]}" 30
	ERR=$(cat "$T/$name.err")
	expect_rc "$want" "client $name exit"
}
