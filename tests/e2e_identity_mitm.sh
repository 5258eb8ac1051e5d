#!/usr/bin/env bash
# transports: tcp
# A relay operator in the middle (issue 13): the relay is untrusted, and an
# operator who controls it can put a client of its own between two users.
# Here the "evil" side is built from the real programs: a second relay R2
# runs on a copy of R1's database (so alice's and carol's passwords work
# there: SCRAM verifiers are in it), the operator re-registers bob and dave
# on R2 and carol on R1 with its own clients ("mallory", with its own
# identity keys), and the victims' links are pointed at the relay of the
# operator's choosing.  Mallory reads every message and passes it on.
#
# 1. alice and bob talked before (honestly, on R1): alice pinned bob's key.
#    Mallory posing as bob on R2 cannot prove that key: alice's client
#    refuses the handshake, naming bob and both fingerprints (TOFU).
# 2. carol and dave never talked: first contact through mallory succeeds
#    on both sides, messages flow (and mallory reads them), no warning --
#    only /verify shows it: the safety numbers on the two screens differ.
#    And bob, on the honest relay, sees a different key than alice pinned.
# Runs on tcp only: the attack is the relay's, not the link's.
. "$(dirname "$0")/lib-e2e.sh"
test_ini
FAST=(--set client.kdf_iterations=1000)
MAL=(--set "client.data_dir=$T/mallory" "${FAST[@]}")
for u in alice bob carol dave mallory; do printf '%s password\n' "$u" >"$T/$u.pw"; done
chmod 600 "$T"/*.pw

start_relay r1 --set "relay.database=$T/r1.db" --init-store || finish
R1=$RELAY_ADDR
R1_PID=$RELAY_PID
for u in alice bob carol dave; do
	run chat-client --config "$T/chat.ini" --connect "$R1" -u $u --register \
		--password-file "$T/$u.pw" --suites noise-xx "${FAST[@]}"
	expect_out "logged-in $u registered" "register $u on R1"
done

# ---- 1. honest first: alice and bob pin each other's keys on R1.
client a alice noise-xx --password-file "$T/alice.pw" "${FAST[@]}"
client b bob noise-xx --password-file "$T/bob.pw" "${FAST[@]}"
wait_for a "logged-in alice registered"
wait_for b "logged-in bob registered"
say a "/talk bob"
wait_for b "offer alice noise-xx"
say b "/accept alice"
wait_for a "established bob noise-xx"
wait_for a "bob's noise-xx identity key sha256:"
BOB_FP=$(sed -n "s/.*bob's noise-xx identity key \(sha256:[0-9a-f]*\) is pinned.*/\1/p" "$T/a.out" | head -1)
[ -n "$BOB_FP" ] && pass || fail "alice did not say which key of bob she pinned"
say a "/msg bob honest hello"
wait_for b "msg alice noise-xx honest hello"
quit a
quit b

# ---- the operator's setup: R2 on a copy of R1's database, where bob and
# dave are mallory's; on R1, carol is mallory's.
sqlite3 "$T/r1.db" ".backup '$T/r2.db'" || fail "cannot copy R1's database"
sqlite3 "$T/r2.db" "DELETE FROM accounts WHERE name IN ('bob','dave');
	DELETE FROM identity_keys WHERE name IN ('bob','dave');" || fail "cannot edit R2's database"
kill "$R1_PID"
wait_exit "$R1_PID" 10
sqlite3 "$T/r1.db" "DELETE FROM accounts WHERE name = 'carol';
	DELETE FROM identity_keys WHERE name = 'carol';" || fail "cannot edit R1's database"
start_relay r1b --set "relay.database=$T/r1.db" || finish
R1=$RELAY_ADDR
start_relay r2 --set "relay.database=$T/r2.db" || finish
R2=$RELAY_ADDR
for u in bob dave; do
	run chat-client --config "$T/chat.ini" --connect "$R2" -u $u --register \
		--password-file "$T/mallory.pw" --suites noise-xx "${MAL[@]}"
	expect_out "logged-in $u registered" "mallory registers $u on R2"
done
run chat-client --config "$T/chat.ini" --connect "$R1" -u carol --register \
	--password-file "$T/mallory.pw" --suites noise-xx "${MAL[@]}"
expect_out "logged-in carol registered" "mallory registers carol on R1"

# ---- 1. alice, led to R2, meets mallory as bob: refused against the pin.
RELAY_ADDR=$R2
client a2 alice noise-xx --password-file "$T/alice.pw" "${FAST[@]}"
client mb bob noise-xx --password-file "$T/mallory.pw" "${MAL[@]}"
wait_for a2 "logged-in alice registered"
wait_for mb "logged-in bob registered"
wait_for a2 "resumed bob noise-xx"
# R2's copy still has alice and bob's conversation: mallory closes it
# (alice's client keeps its saved session) and offers a new one.
say mb "/close alice"
say mb "/talk alice"
wait_for a2 "offer bob noise-xx"
say a2 "/accept bob"
wait_for a2 "bob did not prove the noise-xx identity key pinned" 20
grep -F "bob did not prove the noise-xx identity key pinned" "$T/a2.out" | grep -qF "$BOB_FP" &&
	pass || fail "the warning does not name the pinned key $BOB_FP: $(grep -F 'did not prove' "$T/a2.out")"
grep -F "bob did not prove the noise-xx identity key pinned" "$T/a2.out" | grep -q "they presented sha256:" &&
	! grep -F "did not prove" "$T/a2.out" | grep -qF "they presented $BOB_FP" &&
	pass || fail "the warning does not name the key mallory presented: $(grep -F 'did not prove' "$T/a2.out")"
sleep 0.5
grep -q "^established bob" <(sed -n '/did not prove/,$p' "$T/a2.out") &&
	fail "alice established a session with mallory posing as bob" || pass
say a2 "/msg bob are you there"
sleep 1
grep -q "are you there" "$T/mb.out" && fail "mallory read what alice sent to bob" || pass
quit a2
quit mb

# ---- 2. carol (led to R2) and dave (on R1), first contact, each through
# a mallory client: mallory/dave on R2, mallory/carol on R1.
client c carol noise-xx --password-file "$T/carol.pw" "${FAST[@]}"
client md dave noise-xx --password-file "$T/mallory.pw" "${MAL[@]}"
RELAY_ADDR=$R1
client d dave noise-xx --password-file "$T/dave.pw" "${FAST[@]}"
client mc carol noise-xx --password-file "$T/mallory.pw" "${MAL[@]}"
for n in c md d mc; do wait_for $n "registered"; done
say c "/talk dave"
wait_for md "offer carol noise-xx"
say md "/accept carol"
say mc "/talk dave"
wait_for d "offer carol noise-xx"
say d "/accept carol"
wait_for c "established dave noise-xx"
wait_for d "established carol noise-xx"
# Mallory passes each message on, having read it.
say c "/msg dave meet me at noon"
wait_for md "msg carol noise-xx meet me at noon"
say mc "/msg dave meet me at noon"
wait_for d "msg carol noise-xx meet me at noon"
say d "/msg carol see you there"
wait_for mc "msg dave noise-xx see you there"
say md "/msg carol see you there"
wait_for c "msg dave noise-xx see you there"
# No client noticed anything: keys pinned on first use, the relays consistent.
for n in c d; do
	grep -qE "^(error|warning) .*(identity|did not prove|relay publishes)" "$T/$n.out" &&
		fail "client $n warned before /verify: $(grep -E '^(error|warning)' "$T/$n.out")" || pass
done
# /verify on each screen: the numbers differ (each one mixes in a key of mallory's).
say c "/verify dave"
say d "/verify carol"
wait_for c "safety number with dave"
wait_for d "safety number with carol"
nc=$(sed -n 's/.*safety number with dave (noise-xx): \([0-9 ]*\) — .*/\1/p' "$T/c.out")
nd=$(sed -n 's/.*safety number with carol (noise-xx): \([0-9 ]*\) — .*/\1/p' "$T/d.out")
[ "$(wc -w <<<"$nc")" -eq 12 ] && [ "$(wc -w <<<"$nd")" -eq 12 ] && pass ||
	fail "no safety numbers: '$nc' / '$nd'"
[ "$nc" != "$nd" ] && pass || fail "carol and dave see the same safety number through mallory: $nc"
# The keys each pinned are mallory's, not the other's own.
cfp=$(sed -n "s/.*dave's noise-xx identity key \(sha256:[0-9a-f]*\) is pinned.*/\1/p" "$T/c.out" | head -1)
dfp=$(sed -n "s/.*carol's noise-xx identity key \(sha256:[0-9a-f]*\) is pinned.*/\1/p" "$T/d.out" | head -1)
mdfp=$(sed -n "s/.*carol's noise-xx identity key \(sha256:[0-9a-f]*\) is pinned.*/\1/p" "$T/md.out" | head -1)
[ -n "$cfp" ] && [ -n "$dfp" ] && [ "$cfp" != "$dfp" ] && pass || fail "pinned keys: carol has '$cfp' for dave, dave has '$dfp' for carol"
[ -n "$mdfp" ] && pass || fail "mallory/dave pinned no key for carol"
for n in c d md mc; do quit $n; done
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
finish
