#!/usr/bin/env bash
# transports: tcp
# chat-relay as a service (docs/SERVICE.md): SIGHUP with clients connected
# (a new relay.suites and relay.max_clients take effect for new requests,
# the log says what changed, a setting that needs a restart is named,
# command-line overrides keep winning, a broken configuration is refused and
# the relay lives on, the log file reopened after logrotate's rename);
# relay.log: a file with ISO 8601 timestamps, syslog, journald's stream, a
# file that cannot be opened; one relay per database (the second names the
# file and the first one's pid; after kill -9 a new one starts);
# --check-config looks at the database read-only.  Nothing here depends on
# the link, so tcp only.
. "$(dirname "$0")/lib-e2e.sh"
test_ini
sed -i -e "s|^database = .*|database = $T/db/relay.db|" "$T/chat.ini"
cp "$T/chat.ini" "$T/base.ini"

# relay_bg NAME LOG ARGS...: chat-relay in the background on 127.0.0.1:0,
# stderr in $T/NAME.err, its log in LOG (that file, or relay.log as ARGS or
# the configuration set it); waits for "listening on" there.  Sets
# RELAY_PID, RELAY_ADDR.
relay_bg() {
	local name=$1 log=$2; shift 2
	"${VG[@]}" "$CHAT_BIN/chat-relay" --listen 127.0.0.1:0 "$@" \
		>"$T/$name.out" 2>"$T/$name.err" &
	RELAY_PID=$!
	PIDS+=("$RELAY_PID")
	RELAY_ADDR=
	for _ in $(seq 1 200); do
		RELAY_ADDR=$(sed -n 's/.*listening on \([^ ]*\) .*/\1/p' "$log" 2>/dev/null | head -1)
		[ -n "$RELAY_ADDR" ] && return 0
		kill -0 "$RELAY_PID" 2>/dev/null || break
		sleep 0.05
	done
	fail "relay $name did not start: $(cat "$T/$name.err" "$log" 2>/dev/null)"
	return 1
}
alive() { # alive PID WHAT
	if kill -0 "$1" 2>/dev/null; then pass; else fail "$2: the relay is gone"; fi
}
# hup FILE: SIGHUP to the relay, then wait for its answer in FILE (a line
# "SIGHUP: read ... again" or "SIGHUP: ... refused" more than before).
hup() {
	local file=$1 before now
	before=$(grep -c 'SIGHUP: read .* again\|SIGHUP: .*refused' "$file" 2>/dev/null)
	kill -HUP "$RELAY_PID"
	for _ in $(seq 1 200); do
		now=$(grep -c 'SIGHUP: read .* again\|SIGHUP: .*refused' "$file" 2>/dev/null)
		[ "${now:-0}" -gt "${before:-0}" ] && return 0
		sleep 0.05
	done
	fail "no answer to SIGHUP in $file: $(tail -3 "$file")"
}

# ---- --check-config and the database, read-only

run chat-relay --config "$T/chat.ini" --check-config
expect_rc 0 "check-config, no database yet"
expect_out "$T/db/relay.db does not exist, nor does its directory $T/db" "check-config, no database"
expect_out "--init-store" "check-config, no database"
[ -e "$T/db" ] && fail "check-config made $T/db" || pass

relay_bg first "$T/first.err" --config "$T/chat.ini" || finish
FIRST=$RELAY_PID
run chat-relay --config "$T/chat.ini" --check-config
expect_rc 0 "check-config, relay running"
expect_out "relay.database $T/db/relay.db: schema version 3; in use by the relay with pid $FIRST" \
	"check-config names the running relay"

# ---- one relay per database

run chat-relay --config "$T/chat.ini" --listen 127.0.0.1:0
expect_rc 1 "second relay on the same database"
expect_err "the database $T/db/relay.db (relay.database, $T/chat.ini:" "second relay names the database"
expect_err "is in use by another relay, pid $FIRST (it holds the lock $T/db/relay.db.lock)" \
	"second relay names the first one's pid"
# --add-admin goes on beside it (SQLite's own locking).
printf 'rootpw\n' | "$CHAT_BIN/chat-relay" --config "$T/chat.ini" --add-admin root >"$T/out" 2>"$T/err"
RC=$?; ERR=$(cat "$T/err")
expect_rc 0 "--add-admin beside the running relay"
kill -9 "$FIRST"
wait "$FIRST" 2>/dev/null
[ -e "$T/db/relay.db.lock" ] && pass || fail "the lock file went away with the relay"
relay_bg third "$T/third.err" --config "$T/chat.ini" || finish
expect_file "$T/db/relay.db.lock" "$RELAY_PID" "the lock file names the new relay"
kill "$RELAY_PID"
wait_exit "$RELAY_PID" 10
expect_rc 0 "relay stops on SIGTERM"
rm -f "$T/db/relay.db-wal" "$T/db/relay.db-shm" # none after a clean stop; checked below

# An old schema is reported, not migrated; no file is made.
sqlite3 "$T/db/relay.db" 'PRAGMA user_version = 2' || fail "sqlite3"
run chat-relay --config "$T/chat.ini" --check-config
expect_rc 0 "check-config, old schema"
expect_out "schema version 2, migrated to 3 at the next start" "check-config, old schema"
[ "$(sqlite3 "$T/db/relay.db" 'PRAGMA user_version')" = 2 ] && pass || fail "check-config migrated the database"
ls "$T/db" >"$T/ls"
if grep -q -- '-wal\|-shm' "$T/ls"; then fail "check-config made $(cat "$T/ls")"; else pass; fi
sqlite3 "$T/db/relay.db" 'PRAGMA user_version = 3'
# A schema from a newer program.
cp "$T/db/relay.db" "$T/future.db"
sqlite3 "$T/future.db" 'PRAGMA user_version = 9'
run chat-relay --config "$T/chat.ini" --set "relay.database=$T/future.db" --check-config
expect_rc 1 "check-config, newer schema"
expect_err "$T/future.db: schema version 9 is newer than this program knows (3)" "check-config, newer schema"
# Not a database.
printf 'not a database at all, just some text that is long enough......................................................\n' >"$T/text.db"
run chat-relay --config "$T/chat.ini" --set "relay.database=$T/text.db" --check-config
expect_rc 1 "check-config, not a database"
expect_err "$T/text.db: not an SQLite database" "check-config, not a database"
# Missing, with its marker: the relay would refuse; --init-store is named.
mkdir -p "$T/lost"
printf 'marker\n' >"$T/lost/relay.db.marker"
run chat-relay --config "$T/chat.ini" --set "relay.database=$T/lost/relay.db" --check-config
expect_rc 1 "check-config, database lost"
expect_err "$T/lost/relay.db does not exist" "check-config, database lost"
expect_err "--init-store" "check-config, database lost"
[ -e "$T/lost/relay.db" ] && fail "check-config created the database" || pass
# Missing, no marker, its directory there.
run chat-relay --config "$T/chat.ini" --set "relay.database=$T/lost/other.db" --check-config
expect_rc 0 "check-config, database not made yet"
expect_out "$T/lost/other.db does not exist: the relay creates it at its first start" "check-config, not made yet"

# ---- relay.log

# A log file that cannot be opened: named with its key, exit 1; --check-config too.
run chat-relay --config "$T/chat.ini" --listen 127.0.0.1:0 --set "relay.log=$T/nodir/relay.log"
expect_rc 1 "unopenable log file"
expect_err "cannot open the log file $T/nodir/relay.log: No such file or directory (relay.log, --set)" "unopenable log file"
run chat-relay --config "$T/chat.ini" --set "relay.log=$T/nodir/relay.log" --check-config
expect_rc 1 "check-config, unopenable log file"
expect_err "cannot write the log file $T/nodir/relay.log (relay.log, --set)" "check-config, unopenable log file"
run chat-relay --config "$T/chat.ini" --set relay.log=syslog --check-config
expect_rc 0 "check-config, syslog"

# syslog: nothing of ours on stderr; HUP and TERM as ever.
"$CHAT_BIN/chat-relay" --config "$T/chat.ini" --listen 127.0.0.1:0 --set relay.log=syslog \
	>"$T/syslog.out" 2>"$T/syslog.err" &
SPID=$!
PIDS+=("$SPID")
sleep 0.3
alive "$SPID" "relay.log = syslog"
kill -HUP "$SPID"
sleep 0.2
alive "$SPID" "relay.log = syslog, SIGHUP"
kill "$SPID"
wait_exit "$SPID" 10
expect_rc 0 "relay.log = syslog stops"
[ -s "$T/syslog.err" ] && fail "relay.log = syslog wrote to stderr: $(cat "$T/syslog.err")" || pass

# On journald's stream (JOURNAL_STREAM names stderr): no time of our own,
# the priority as a <N> prefix.  Named for another stream: as always.
: >"$T/journal.err"
JS=$(stat -c '%d:%i' "$T/journal.err")
JOURNAL_STREAM=$JS "$CHAT_BIN/chat-relay" --config "$T/chat.ini" --listen 127.0.0.1:0 \
	>"$T/journal.out" 2>>"$T/journal.err" &
RELAY_PID=$!
PIDS+=("$RELAY_PID")
wait_file "$T/journal.err" "listening on" 10
kill "$RELAY_PID"; wait_exit "$RELAY_PID" 10
if grep -qE '^<6>info: listening on 127\.0\.0\.1:[0-9]+ ' "$T/journal.err"; then pass; else
	fail "journald format: $(cat "$T/journal.err")"; fi
if grep -vqE '^<[0-9]>(error|warn|info|debug): ' "$T/journal.err"; then
	fail "a line not in journald's form: $(grep -vE '^<[0-9]>' "$T/journal.err")"; else pass; fi
JOURNAL_STREAM=1:1 "$CHAT_BIN/chat-relay" --config "$T/chat.ini" --listen 127.0.0.1:0 \
	>"$T/notjournal.out" 2>"$T/notjournal.err" &
RELAY_PID=$!
PIDS+=("$RELAY_PID")
wait_file "$T/notjournal.err" "listening on" 10
kill "$RELAY_PID"; wait_exit "$RELAY_PID" 10
if grep -qE '^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} chat-relay info: listening on' "$T/notjournal.err"; then pass
else fail "stderr format with another JOURNAL_STREAM: $(cat "$T/notjournal.err")"; fi

# ---- SIGHUP with clients connected; the log in a file

cp "$T/base.ini" "$T/svc.ini"
sed -i -e "/^\[relay\]/a log = $T/relay.log" "$T/svc.ini"
# A fixed offset from UTC, to see it in the timestamps.
# Every refusal logged (relay.log_interval 0), to find each in the log.
TZ=XYZ-05:30 relay_bg svc "$T/relay.log" --config "$T/svc.ini" --set relay.max_rooms=3 \
	--set relay.log_interval=0 || finish
[ -s "$T/svc.err" ] && fail "relay.log = FILE wrote to stderr: $(cat "$T/svc.err")" || pass
client alice alice xor-demo
client bob bob xor-demo
wait_for alice "logged-in alice"
wait_for bob "logged-in bob"

# relay.suites and a setting that needs a restart; the command line's
# relay.max_rooms keeps winning over the file's.
sed -i -e "/^\[relay\]/a suites = noise-xx\nmax_rooms = 1" -e 's/^log_level = info/log_level = debug/' \
       -e "s|^database = .*|database = $T/elsewhere.db|" "$T/svc.ini"
hup "$T/relay.log"
alive "$RELAY_PID" "SIGHUP"
expect_file "$T/relay.log" "SIGHUP: relay.suites: (empty) -> noise-xx ($T/svc.ini:" "log names the new suites"
expect_file "$T/relay.log" "SIGHUP: core.log_level: info -> debug ($T/svc.ini:" "log names the new log level"
expect_file "$T/relay.log" "SIGHUP: relay.database: $T/db/relay.db -> $T/elsewhere.db ($T/svc.ini:" "log names the database change"
expect_file "$T/relay.log" "needs a restart: the relay goes on with $T/db/relay.db" "the database needs a restart"
expect_file "$T/relay.log" "SIGHUP: read $T/svc.ini again: 2 setting(s) applied, 1 need(s) a restart" "SIGHUP summary"
if grep -q 'relay.max_rooms' "$T/relay.log"; then fail "a --set override lost to the file: $(grep max_rooms "$T/relay.log")"; else pass; fi
# For new requests: a new client allowing only xor-demo is refused ...
client carol carol xor-demo
wait_for carol "this relay carries only noise-xx; you allow only xor-demo"
# ... and so is a new conversation on it between clients already connected,
# who stay connected.
say alice "/talk bob"
wait_for alice "bob offers only xor-demo; you allow only xor-demo (and this relay carries only what relay.suites lists)"
say bob "/who"
wait_for bob "who alice xor-demo"

# A limit: max_clients under the clients connected; a new one is refused.
sed -i -e 's/^max_clients = .*/max_clients = 2/' "$T/svc.ini"
hup "$T/relay.log"
expect_file "$T/relay.log" "SIGHUP: relay.max_clients: 10000 -> 2 ($T/svc.ini:" "log names the new max_clients"
client dave dave noise-xx
wait_for dave "the relay is full"
wait_file "$T/relay.log" "refusing 127.0.0.1:" 10

# A configuration that no longer parses: refused, said why, the relay goes
# on with its settings (still full).
cp "$T/svc.ini" "$T/svc.good"
printf '[relay]\nqueue_expiry = lots\n' >>"$T/svc.ini"
hup "$T/relay.log"
alive "$RELAY_PID" "SIGHUP with a broken configuration"
expect_file "$T/relay.log" "SIGHUP: $T/svc.ini:$(wc -l <"$T/svc.ini"): relay.queue_expiry: 'lots' is not a number" "broken configuration named with its line"
expect_file "$T/relay.log" "the configuration is refused; the relay goes on with its settings as they were" "broken configuration refused"
client erin erin noise-xx
wait_for erin "the relay is full"
say alice "/who"
wait_for alice "who-end"
# One that parses but does not pass the checks at start either.
cp "$T/svc.good" "$T/svc.ini"
sed -i -e "/^\[relay\]/a keepalive = 30\ndead_after = 10" "$T/svc.ini"
hup "$T/relay.log"
expect_file "$T/relay.log" "relay.dead_after (10, $T/svc.ini:" "keepalive check on SIGHUP"
alive "$RELAY_PID" "SIGHUP with a configuration that fails its checks"
cp "$T/svc.good" "$T/svc.ini"

# A log file that cannot be opened on SIGHUP: refused, the old log kept.
sed -i -e "s|^log = .*|log = $T/nodir/relay.log\nmax_room_members = 9|" "$T/svc.ini"
hup "$T/relay.log"
expect_file "$T/relay.log" "cannot open the log file $T/nodir/relay.log: No such file or directory (relay.log, $T/svc.ini:" "unopenable log on SIGHUP"
if grep -q 'max_room_members\|the log goes on there' "$T/relay.log"; then fail "a refused configuration was applied: $(tail -3 "$T/relay.log")"; else pass; fi
cp "$T/svc.good" "$T/svc.ini"

# logrotate: rename, SIGHUP, the lines go to a new file of the same name.
mv "$T/relay.log" "$T/relay.log.1"
hup "$T/relay.log"
lines_old=$(wc -l <"$T/relay.log.1")
[ -s "$T/relay.log" ] && pass || fail "no new relay.log after rename + SIGHUP"
expect_file "$T/relay.log" "SIGHUP: read $T/svc.ini again" "SIGHUP said in the new log"
client frank frank noise-xx # refused (full): a line in the new file
wait_file "$T/relay.log" "refusing 127.0.0.1:" 10
[ "$(wc -l <"$T/relay.log.1")" = "$lines_old" ] && pass || fail "the renamed log still grows"
# Every line of the log file starts with a timestamp with date and offset.
for f in "$T/relay.log" "$T/relay.log.1"; do
	bad=$(grep -vE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}\+05:30 chat-relay (error|warn|info|debug): ' "$f")
	[ -z "$bad" ] && pass || fail "lines of $f without an ISO 8601 timestamp: $bad"
done
[ -s "$T/svc.err" ] && fail "the relay wrote to stderr: $(cat "$T/svc.err")" || pass

# Another file: said in both.
sed -i -e "s|^log = .*|log = $T/other.log|" "$T/svc.ini"
hup "$T/other.log"
expect_file "$T/relay.log" "SIGHUP: relay.log: $T/relay.log -> $T/other.log ($T/svc.ini:" "log switch said in the old log"
expect_file "$T/other.log" "SIGHUP: the log continues here, from $T/relay.log" "log switch said in the new log"
expect_file "$T/other.log" "SIGHUP: read $T/svc.ini again: 1 setting(s) applied" "SIGHUP summary in the new log"

quit alice
quit bob
kill "$RELAY_PID"
wait_exit "$RELAY_PID" 10
expect_rc 0 "relay stops"
expect_file "$T/other.log" "stopped" "the log file says it stopped"

finish
