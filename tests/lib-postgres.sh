# Sourced by the tests that need a PostgreSQL server: pg_start makes a
# throwaway one (initdb into a temporary directory, 127.0.0.1 only on a free
# port, its socket inside that directory, trust authentication for local
# connections), creates the database "chat" and exports its URL as PG_URL
# (plus PG_HOST, PG_PORT, PG_DB, PG_BIN).  It is stopped and removed at exit.
# pg_stop / pg_restart stop and start the same server (tests of a server
# that goes away).
#
# PostgreSQL refuses to run as root: as root the server runs as the user
# "nobody" (runuser), in a directory that user owns.
#
# The packages missing (no initdb): exit 77, skipped.  The packages there but
# the server does not start: the test fails (exit 1), with the server's log.

PG_DIR=
PG_RUN=()

pg_find_bin() {
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			echo "$d"
			return 0
		fi
	done
	if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
		dirname "$(command -v initdb)"
		return 0
	fi
	return 1
}

pg_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_cleanup() {
	if [ -n "$PG_DIR" ] && [ -d "$PG_DIR" ]; then
		"${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1
		rm -rf "$PG_DIR"
	fi
}

pg_fail() {
	echo "lib-postgres: $*" >&2
	[ -f "$PG_DIR/log" ] && sed 's/^/  postgres: /' "$PG_DIR/log" >&2
	exit 1
}

pg_start() {
	PG_BIN=$(pg_find_bin) || { echo "lib-postgres: no initdb (Debian: postgresql): skipped" >&2; exit 77; }
	PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/chat-pg.XXXXXX") || exit 1
	if declare -F cleanup >/dev/null; then
		trap 'pg_cleanup; cleanup' EXIT # lib-e2e.sh's too
	else
		trap pg_cleanup EXIT
	fi
	chmod 755 "$PG_DIR"
	if [ "$(id -u)" = 0 ]; then
		chown nobody "$PG_DIR"
		PG_RUN=(runuser -u nobody --)
		# Every directory above must be traversable by nobody.
		local d=$PG_DIR
		while d=$(dirname "$d") && [ "$d" != / ]; do
			[ -x "$d" ] || chmod o+x "$d"
		done
	fi
	"${PG_RUN[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --locale=C \
		>"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; pg_fail "initdb failed"; }
	PG_HOST=127.0.0.1
	PG_PORT=$(pg_free_port) || pg_fail "no free port"
	PG_DB=chat
	cat >>"$PG_DIR/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
fsync = on
max_connections = 40
shared_buffers = 16MB
EOF
	pg_restart
	"${PG_RUN[@]}" "$PG_BIN/createdb" -h "$PG_HOST" -p "$PG_PORT" -U postgres "$PG_DB" \
		>>"$PG_DIR/log" 2>&1 || pg_fail "createdb failed"
	PG_URL="postgresql://postgres@$PG_HOST:$PG_PORT/$PG_DB"
	export PG_URL PG_HOST PG_PORT PG_DB PG_BIN PG_DIR
}

pg_stop() {
	"${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 ||
		pg_fail "pg_ctl stop failed"
}

pg_restart() {
	"${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 30 start \
		>/dev/null 2>&1 || pg_fail "the server does not start (pg_ctl start failed)"
}

# psql as the superuser: pg_psql SQL
pg_psql() {
	"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U postgres -d "$PG_DB" -c "$1"
}
