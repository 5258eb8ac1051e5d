#!/usr/bin/env bash
# Identity keys end to end (plugin ABI 1.3) with the noise-xx suite and two
# registered users: each client makes its key pair, keeps it in the keystore
# and publishes it (KEYS_PUT); the first handshake pins the peer's key on
# both sides; /verify shows the same safety number on both screens; a
# restart resumes with the same keys; when bob loses his keystore (a new
# key), alice's client refuses his handshake against the pinned, verified
# key and says so as an error, until /trust bob.  Then the same first steps
# with the rsa suite.
. "$(dirname "$0")/lib-e2e.sh"
test_ini
FAST=(--set client.kdf_iterations=1000)
printf 'alice password\n' >"$T/alice.pw"
printf 'bob password\n' >"$T/bob.pw"
chmod 600 "$T"/*.pw
start_relay relay --set "relay.database=$T/relay.db" || finish
for u in alice bob; do
	run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u $u --register \
		--password-file "$T/$u.pw" --suites noise-xx "${FAST[@]}"
	expect_out "logged-in $u registered" "register $u"
done
expect_file "$T/relay.err" "alice published an identity key for noise-xx (32 bytes)" "alice's key published"
expect_file "$T/relay.err" "bob published an identity key for noise-xx (32 bytes)" "bob's key published"

client a alice noise-xx --password-file "$T/alice.pw" "${FAST[@]}"
client b bob noise-xx --password-file "$T/bob.pw" "${FAST[@]}"
wait_for a "logged-in alice registered"
wait_for b "logged-in bob registered"
# The relay lies about bob's key (its database says another one; bob's
# client published the real one at login, just now).
sleep 0.5
sqlite3 "$T/relay.db" "UPDATE identity_keys SET key = zeroblob(32) WHERE name = 'bob'" ||
	fail "cannot change bob's key in the relay's database"
say a "/talk bob"
wait_for b "offer alice noise-xx"
say b "/accept alice"
wait_for a "established bob noise-xx"
wait_for b "established alice noise-xx"
wait_for a "bob's noise-xx identity key sha256:"
wait_for b "alice's noise-xx identity key sha256:"
# alice pinned what bob's handshake proved, not what the relay says, and
# notices the difference; bob, whose view of alice is honest, does not.
wait_for a "the relay publishes sha256:66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925 as bob's noise-xx identity key, not the pinned"
sleep 0.3
grep -q "the relay publishes" "$T/b.out" && fail "bob warned about an honest key" || pass
say a "/verify bob"
say b "/verify alice"
wait_for a "safety number with bob"
wait_for b "safety number with alice"
na=$(sed -n 's/.*safety number with bob (noise-xx): \([0-9 ]*\) — .*/\1/p' "$T/a.out")
nb=$(sed -n 's/.*safety number with alice (noise-xx): \([0-9 ]*\) — .*/\1/p' "$T/b.out")
[ -n "$na" ] && [ "$na" = "$nb" ] && pass || fail "safety numbers differ: '$na' vs '$nb'"
[ "$(wc -w <<<"$na")" -eq 12 ] && pass || fail "the safety number is not 12 groups: '$na'"
say a "/verify bob yes"
wait_for a "bob is verified"
say a "/msg bob the first secret"
wait_for b "msg alice noise-xx the first secret"
quit a
quit b

# A restart: the same keys, nothing new pinned, the conversation resumes.
client a2 alice noise-xx --password-file "$T/alice.pw" "${FAST[@]}"
client b2 bob noise-xx --password-file "$T/bob.pw" "${FAST[@]}"
wait_for a2 "resumed bob noise-xx"
wait_for b2 "resumed alice noise-xx"
say a2 "/msg bob after the restart"
wait_for b2 "msg alice noise-xx after the restart"
say b2 "/verify alice"
wait_for b2 "safety number with alice"
nb2=$(sed -n 's/.*safety number with alice (noise-xx): \([0-9 ]*\) — .*/\1/p' "$T/b2.out")
[ "$nb2" = "$nb" ] && pass || fail "the safety number changed over a restart: '$nb' vs '$nb2'"
quit b2

# bob loses his keystore: a new identity key.  What alice sends in the old
# session he cannot open (said, and retried with growing waits, not in a
# storm); he starts a new conversation, and alice's client refuses it
# against the pinned, verified key.
rm -f "$T/client/bob.keys"
client b3 bob noise-xx --password-file "$T/bob.pw" "${FAST[@]}"
wait_for b3 "logged-in bob registered"
say a2 "/msg bob into the old session"
wait_for a2 "bob cannot open messages of this session" 20
n=$(grep -c "sealed and sent again" "$T/a2.out")
[ "$n" -le 4 ] && pass || fail "alice re-sealed $n times within seconds (a resend storm)"
say b3 "/close alice"
say b3 "/talk alice"
wait_for a2 "offer bob noise-xx"
say a2 "/accept bob"
wait_for a2 "error identity-changed bob VERIFIED CONTACT: bob did not prove the noise-xx identity key pinned" 20
grep -q "^established bob" <(sed -n '/error identity-changed bob/,$p' "$T/a2.out") &&
	fail "alice established a session with bob's new key" || pass
wait_for a2 "the relay publishes sha256:" # bob's new key, as his client published it
# alice accepts the new key; bob offers again.
say a2 "/trust bob"
wait_for a2 "forgot 1 pinned identity key(s) of bob"
say b3 "/close alice"
say b3 "/talk alice"
wait_count a2 "offer bob noise-xx" 2 20 # bob's second offer
say a2 "/accept bob"
wait_for b3 "established alice noise-xx"
for _ in $(seq 1 100); do [ "$(grep -c "bob's noise-xx identity key sha256:" "$T/a2.out")" -ge 1 ] && break; sleep 0.05; done
expect_file "$T/a2.out" "bob's noise-xx identity key sha256:" "the new key is pinned after /trust"
say a2 "/msg bob with the new key"
wait_for b3 "msg alice noise-xx with the new key"
quit a2
quit b3

# The same with the rsa suite (keys exchanged in the handshake, RSA-3072):
# published, pinned on both sides, equal safety numbers, a message.
printf 'carol password\n' >"$T/carol.pw"
printf 'dave password\n' >"$T/dave.pw"
chmod 600 "$T"/*.pw
for u in carol dave; do
	run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u $u --register \
		--password-file "$T/$u.pw" --suites rsa "${FAST[@]}"
	expect_out "logged-in $u registered" "register $u (rsa)"
done
expect_file "$T/relay.err" "carol published an identity key for rsa" "carol's rsa key published"
client c carol rsa --password-file "$T/carol.pw" "${FAST[@]}"
client d dave rsa --password-file "$T/dave.pw" "${FAST[@]}"
wait_for c "logged-in carol registered"
wait_for d "logged-in dave registered"
say c "/talk dave"
wait_for d "offer carol rsa"
say d "/accept carol"
wait_for c "established dave rsa" 60
wait_for d "carol's rsa identity key sha256:"
wait_for c "dave's rsa identity key sha256:"
say c "/verify dave"
say d "/verify carol"
wait_for c "safety number with dave"
wait_for d "safety number with carol"
nc=$(sed -n 's/.*safety number with dave (rsa): \([0-9 ]*\) — .*/\1/p' "$T/c.out")
nd=$(sed -n 's/.*safety number with carol (rsa): \([0-9 ]*\) — .*/\1/p' "$T/d.out")
[ -n "$nc" ] && [ "$nc" = "$nd" ] && pass || fail "rsa safety numbers differ: '$nc' vs '$nd'"
say c "/msg dave sealed with AES-256-GCM"
wait_for d "msg carol rsa sealed with AES-256-GCM"
quit c
quit d
kill "$RELAY_PID"
wait_exit "$RELAY_PID" 10
finish
