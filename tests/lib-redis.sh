# Sourced after lib-e2e.sh by tests that need Redis (relay.cluster,
# docs/CLUSTER.md): a throwaway redis-server on 127.0.0.1, nothing saved, in
# this test's directory, killed on exit with the test's other processes.
# redis-server is a dependency of the tests (.ci/bootstrap installs it): if
# it is missing or does not start, the test fails; it never skips.

# redis_start [PORT]: start it (on PORT, else on a free port); sets
# REDIS_PORT, REDIS_PID, REDIS_URL.  Returns 1 (after fail) if it does not
# answer within 5 s.
redis_start() {
	if ! command -v redis-server >/dev/null; then
		fail "redis-server is not installed (apt-get install redis-server; .ci/bootstrap installs it)"
		return 1
	fi
	mkdir -p "$T/redis"
	local tries=1 port=${1:-}
	[ -z "$port" ] && tries=5
	for _ in $(seq 1 $tries); do
		REDIS_PORT=${port:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
		redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
			--dir "$T/redis" >>"$T/redis/log" 2>&1 &
		REDIS_PID=$!
		PIDS+=("$REDIS_PID")
		REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
		for _ in $(seq 1 100); do
			(exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && return 0
			kill -0 "$REDIS_PID" 2>/dev/null || break
			sleep 0.05
		done
		kill -9 "$REDIS_PID" 2>/dev/null
		wait "$REDIS_PID" 2>/dev/null
	done
	fail "redis-server did not start on 127.0.0.1:$REDIS_PORT: $(tail -5 "$T/redis/log")"
	return 1
}

# redis_stop: kill it at once (as a crash would).
redis_stop() {
	kill -9 "$REDIS_PID" 2>/dev/null
	wait "$REDIS_PID" 2>/dev/null
	return 0
}
