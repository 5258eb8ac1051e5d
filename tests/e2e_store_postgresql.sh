#!/usr/bin/env bash
# transports: tcp
# A real chat-relay on relay.store = postgresql://... (tests/lib-postgres.sh
# starts a throwaway server): two users register, one writes to the other
# while that one is offline, the relay is restarted, and the message
# arrives exactly once.  A second relay runs on the same database at the
# same time (no lock file: shared on purpose); --check-config reads the
# schema version; chat-relay itself does not link libpq; the password in
# the URL appears in no output.
. "$(dirname "$0")/lib-e2e.sh"
. "$(dirname "$0")/lib-postgres.sh"
pg_start
export CHAT_MODULE_DIR=${CHAT_BUILD_DIR:?set by ctest}/modules
URL="postgresql://postgres:sekrit@$PG_HOST:$PG_PORT/$PG_DB"
test_ini
sed -i "s|^database = .*|store = $URL|" "$T/chat.ini"
FAST=(--set client.kdf_iterations=1000)

# chat-relay links no libpq (the module does).
# (ldd's output read whole: grep -q closing the pipe early fails it under pipefail)
libs=$(ldd "$CHAT_BIN/chat-relay")
if grep -q libpq <<<"$libs"; then fail "chat-relay links libpq: $(grep libpq <<<"$libs")"; else pass; fi
libs=$(ldd "$CHAT_MODULE_DIR/store-postgresql.so")
grep -q libpq <<<"$libs" && pass || fail "store-postgresql.so does not link libpq"

run chat-relay --config "$T/chat.ini" --check-config
expect_rc 0 "--check-config before the first start"
expect_out "no store there yet" "--check-config on an empty database"

start_relay relay1 || finish
expect_file "$T/relay1.err" "accounts and stored messages in postgresql://postgres:***@$PG_HOST:$PG_PORT/$PG_DB" "relay names its store"

user() {
	printf '%s secret\n' "$1" >"$T/$1.pw"
	chmod 600 "$T/$1.pw"
	run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u "$1" --register \
		--password-file "$T/$1.pw" "${FAST[@]}"
	expect_rc 0 "register $1"
}
up() { client "$2" "$1" noise-xx --password-file "$T/$1.pw" "${FAST[@]}"; wait_for "$2" "logged-in $1 registered"; }
count() { grep -c -- "$2" "$T/$1.out" 2>/dev/null || true; }

user alice
user bob
up alice a1
up bob b1
say a1 "/talk bob"
wait_for b1 "offer alice noise-xx"
say b1 "/accept alice"
wait_for a1 "established bob noise-xx"
wait_for b1 "established alice noise-xx"
quit b1
say a1 "while bob is away"
wait_for a1 "stored bob"
quit a1
[ "$(pg_psql "COPY (SELECT count(*) FROM mail WHERE recipient = 'bob') TO STDOUT")" -ge 1 ] && pass ||
	fail "no mail for bob in PostgreSQL"

# The relay restarted: the mail is still there.
kill -TERM "$RELAY_PID"
wait_exit "$RELAY_PID" 20
expect_rc 0 "relay1 stops"
start_relay relay2 || finish
# A second relay on the same database at the same time.
addr2=$RELAY_ADDR
start_relay relay3 || finish
RELAY_ADDR=$addr2
run chat-relay --config "$T/chat.ini" --check-config
expect_rc 0 "--check-config with relays running"
expect_out "schema version 3" "--check-config reads the version"

up bob b2
wait_for b2 "msg alice noise-xx while bob is away"
sleep 1
[ "$(count b2 'while bob is away')" = 1 ] && pass || fail "delivered $(count b2 'while bob is away') times"
quit b2
# Acknowledged: gone from the database, not delivered again.
[ "$(pg_psql "COPY (SELECT count(*) FROM mail WHERE recipient = 'bob') TO STDOUT")" = 0 ] && pass ||
	fail "bob's mail is still stored after the acknowledgement"
up bob b3
sleep 1
[ "$(count b3 'while bob is away')" = 0 ] && pass || fail "delivered again after a new login"
quit b3

# Both relays and every client: never the password.
grep -l sekrit "$T"/*.err "$T"/*.out "$T/err" "$T/out" 2>/dev/null && fail "the password was shown" || pass
finish
