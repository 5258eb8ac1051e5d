#!/usr/bin/env bash
# Three chat-relays as one service on this machine (docs/CLUSTER.md): a
# throwaway PostgreSQL (the shared store: accounts, conversations, mail), a
# redis-server (presence and routing between the relays) and three relays on
# 127.0.0.1, all started here and all stopped on Ctrl-C (or SIGTERM).
#
#   examples/cluster/three-relays.sh [--build DIR] [--port BASE] [--ready FILE]
#
# Relays listen on 127.0.0.1:BASE+1, +2, +3 (BASE default 7100), Redis on
# BASE+10; PostgreSQL on a free port, its files in a temporary directory
# removed at the end (point relay.store at your own server for real use).
# --ready FILE: once everything runs, the relay addresses are written there
# (one line, comma-separated: what chat-client --connect takes).
# Needs the build (.ci/bootstrap) and the packages redis-server and
# postgresql, which .ci/bootstrap installs.  As root, PostgreSQL runs as the
# user nobody (it refuses root).
set -uo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$SRC/build
BASE=7100
READY=
while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$2; shift 2 ;;
	--port) BASE=$2; shift 2 ;;
	--ready) READY=$2; shift 2 ;;
	-h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "three-relays.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
done
RELAY=$BUILD/bin/chat-relay
[ -x "$RELAY" ] || { echo "three-relays.sh: no $RELAY: build first (.ci/bootstrap)" >&2; exit 1; }
command -v redis-server >/dev/null ||
	{ echo "three-relays.sh: redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }

. "$SRC/tests/lib-postgres.sh"
pids=()
stop() {
	trap - EXIT INT TERM
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	pg_cleanup
	echo "three-relays.sh: stopped" >&2
}
pg_start # its own EXIT trap is replaced by stop's below
trap stop EXIT
trap 'exit 0' INT TERM
echo "three-relays.sh: PostgreSQL $PG_URL (files in $PG_DIR)" >&2

LOGS=$PG_DIR/logs
mkdir -p "$LOGS"
redis-server --port $((BASE + 10)) --bind 127.0.0.1 --save '' --appendonly no --dir "$LOGS" \
	>"$LOGS/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$((BASE + 10))") 2>/dev/null && break; sleep 0.05; done
echo "three-relays.sh: Redis redis://127.0.0.1:$((BASE + 10))" >&2

addrs=()
for i in 1 2 3; do
	addr=127.0.0.1:$((BASE + i))
	mkdir -p "$LOGS/relay$i" # its TLS key (relay.transport = tls, chat.ini's default)
	"$RELAY" --config "$SRC/chat.ini" --listen "$addr" --set relay.database= \
		--set "relay.store=$PG_URL" --set "relay.cluster=redis://127.0.0.1:$((BASE + 10))" \
		--set "relay.node_id=relay$i" --set "relay.state_dir=$LOGS/relay$i" \
		>"$LOGS/relay$i.log" 2>&1 &
	pids+=($!)
	addrs+=("$addr")
done
# Each relay says "listening on" once it is up.
for i in 1 2 3; do
	for _ in $(seq 1 200); do
		grep -q "listening on" "$LOGS/relay$i.log" && break
		kill -0 "${pids[$i]}" 2>/dev/null || { cat "$LOGS/relay$i.log" >&2; exit 1; }
		sleep 0.05
	done
	grep -q "listening on" "$LOGS/relay$i.log" || { cat "$LOGS/relay$i.log" >&2; exit 1; }
done
list=$(IFS=,; echo "${addrs[*]}")
cat >&2 <<EOF
three-relays.sh: relays on ${addrs[*]} (logs in $LOGS)
  $BUILD/bin/chat-client --connect $list --user alice --register
  $BUILD/bin/chat-client --connect ${addrs[2]},${addrs[0]},${addrs[1]} --user bob --register
Ctrl-C stops everything.
EOF
[ -n "$READY" ] && echo "$list" >"$READY"
wait -n "${pids[@]}"
echo "three-relays.sh: a process ended; stopping the rest.  The last lines of the logs:" >&2
tail -n 3 "$LOGS"/*.log >&2
exit 1
