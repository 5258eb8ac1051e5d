#!/usr/bin/env bash
# transports: its own
# (ports: a random block below 32768, out of the range the kernel hands out
# for outgoing connections)
# The recipe of docs/CLUSTER.md, as a user runs it: examples/cluster/three-relays.sh
# starts PostgreSQL, Redis and three relays (TLS, chat.ini's default); alice
# registers through the first relay and bob through the third, they talk
# (noise-xx, the default) across relays; SIGTERM to the script stops
# everything it started and removes PostgreSQL's temporary files.
. "$(dirname "$0")/lib-e2e.sh"
CHAT_TEST_TRANSPORT=tls
test_ini
FAST=(--set client.kdf_iterations=1000)
base=$(python3 -c 'import random; print(random.randrange(20000, 32000, 20))')
"$CHAT_SOURCE_DIR/examples/cluster/three-relays.sh" --build "$CHAT_BUILD_DIR" --port "$base" \
	--ready "$T/ready" >"$T/recipe.out" 2>"$T/recipe.err" &
RECIPE=$!
PIDS+=("$RECIPE")
for _ in $(seq 1 600); do [ -s "$T/ready" ] && break; kill -0 $RECIPE 2>/dev/null || break; sleep 0.05; done
[ -s "$T/ready" ] && pass || { fail "three-relays.sh did not start: $(cat "$T/recipe.err")"; finish; }
IFS=, read -r r1 r2 r3 <"$T/ready"
[ "$r1" = "127.0.0.1:$((base + 1))" ] && [ "$r3" = "127.0.0.1:$((base + 3))" ] && pass ||
	fail "relay addresses: $(cat "$T/ready")"
grep -q "chat-client --connect $r1,$r2,$r3 --user alice --register" "$T/recipe.err" && pass ||
	fail "the script does not print how to connect: $(cat "$T/recipe.err")"

for u in alice bob; do printf '%s secret\n' "$u" >"$T/$u.pw"; chmod 600 "$T/$u.pw"; done
run chat-client --config "$T/chat.ini" --connect "$r1" -u alice --register --password-file "$T/alice.pw" "${FAST[@]}"
expect_rc 0 "alice registers through relay 1"
run chat-client --config "$T/chat.ini" --connect "$r3" -u bob --register --password-file "$T/bob.pw" "${FAST[@]}"
expect_rc 0 "bob registers through relay 3"
[ "$RC" = 0 ] || { fail "the script said: $(cat "$T/recipe.err")"; finish; }
RELAY_ADDR="$r1,$r2,$r3" client a alice noise-xx --password-file "$T/alice.pw" "${FAST[@]}"
RELAY_ADDR="$r3,$r1,$r2" client b bob noise-xx --password-file "$T/bob.pw" "${FAST[@]}"
wait_for a "logged-in alice registered"
wait_for b "logged-in bob registered"
grep -q "^connected $r1" "$T/a.out" && grep -q "^connected $r3" "$T/b.out" && pass ||
	fail "alice and bob are not on relays 1 and 3: $(grep connected "$T/a.out" "$T/b.out")"
say a "/talk bob"
wait_for b "offer alice noise-xx"
say b "/accept alice"
wait_for a "established bob noise-xx"
say a "hello across relays"
wait_for b "msg alice noise-xx hello across relays"
say b "and back"
wait_for a "msg bob noise-xx and back"
quit a
quit b

pgdir=$(sed -n 's/.*(files in \(.*\))$/\1/p' "$T/recipe.err")
kill -TERM $RECIPE
wait_exit $RECIPE 20
[ "$RC" != 124 ] && pass || fail "three-relays.sh did not stop on SIGTERM"
grep -q "three-relays.sh: stopped" "$T/recipe.err" && pass || fail "no 'stopped': $(tail -3 "$T/recipe.err")"
[ -n "$pgdir" ] && [ ! -e "$pgdir" ] && pass || fail "PostgreSQL's files '$pgdir' are still there"
for p in $((base + 1)) $((base + 3)) $((base + 10)); do
	(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && fail "something still listens on 127.0.0.1:$p" || pass
done
finish
