#!/usr/bin/env bash
# A relay (here: chat-tap --rewrite-suites in front of both clients) that
# rewrites WELCOME, OFFERED and ANSWERED consistently to [rc4dh], so that two
# users who both allow aescbc-hmac,rc4dh and share an aescbc-hmac password
# would end up on insecure rc4dh with identical fingerprints.  With
# client.min_security=auto (the default) both refuse: the client judges from
# its own configuration that a secure suite was possible with this peer.
# transports: tcp (chat-tap reads and rewrites frames on the path: it stands for
# the relay or a path that TLS would shut out)
. "$(dirname "$0")/lib-e2e.sh"
test_ini
start_relay relay || finish
printf '[ {"username": "bob", "ip": "127.0.0.1", "port": 1, "password": "shared words"} ]\n' >"$T/alice.json"
printf '[ {"username": "alice", "ip": "127.0.0.1", "port": 1, "password": "shared words"} ]\n' >"$T/bob.json"
printf '[]\n' >"$T/nobody.json"
chmod 600 "$T"/*.json

"$CHAT_TAP" --rewrite-suites rc4dh "$T/tap.port" "$RELAY_PORT" "$T/tap.rec" &
PIDS+=("$!")
for _ in $(seq 1 100); do [ -s "$T/tap.port" ] && break; sleep 0.05; done
DIRECT=$RELAY_ADDR
HOSTILE="127.0.0.1:$(cat "$T/tap.port")"
SUITES=aescbc-hmac,rc4dh

# 1. Honest relay: aescbc-hmac.
RELAY_ADDR=$DIRECT
client a1 alice "$SUITES" --directory "$T/alice.json"
client b1 bob "$SUITES" --directory "$T/bob.json"
wait_for a1 "logged-in alice"
wait_for b1 "logged-in bob"
say a1 "/talk bob"
wait_for b1 "offer alice aescbc-hmac"
say b1 "/accept alice"
wait_for a1 "established bob aescbc-hmac"
quit a1
quit b1

# 2. The hostile relay, default policy: bob (responder) refuses; alice sees why.
RELAY_ADDR=$HOSTILE
client a2 alice "$SUITES" --directory "$T/alice.json"
client b2 bob "$SUITES" --directory "$T/bob.json"
wait_for a2 "logged-in alice"
wait_for b2 "logged-in bob"
say a2 "/talk bob"
wait_for b2 "error downgrade alice"
expect_file "$T/b2.out" "you could use aescbc-hmac with alice" "bob says what was possible"
wait_for a2 "rejected bob"
sleep 0.5
grep -q "^established" "$T/a2.out" "$T/b2.out" && fail "a conversation was established through the downgrading relay" || pass
quit a2
quit b2

# 3. The hostile relay, bob has no secure suite with alice (no password): he
#    accepts rc4dh, but alice (initiator, who has bob's password) refuses.
client a3 alice "$SUITES" --directory "$T/alice.json"
client b3 bob "$SUITES" --directory "$T/nobody.json"
wait_for a3 "logged-in alice"
wait_for b3 "logged-in bob"
say a3 "/talk bob"
wait_for b3 "offer alice rc4dh"
say b3 "/accept alice"
wait_for a3 "error downgrade bob"
expect_file "$T/a3.out" "you could use aescbc-hmac with bob" "alice says what was possible"
sleep 0.5
grep -q "^established" "$T/a3.out" && fail "alice used rc4dh through the downgrading relay" || pass
quit a3
quit b3

# 4. Without the policy the relay does get both onto rc4dh, but it cannot
#    hide it: each side binds its own configured list (as it sent it in
#    HELLO) and the peer's list as the relay passed it on, so the two
#    transcripts differ and so do the fingerprints read aloud.
client a4 alice "$SUITES" --directory "$T/alice.json" --set client.min_security=insecure
client b4 bob "$SUITES" --directory "$T/bob.json" --set client.min_security=insecure
wait_for a4 "logged-in alice"
wait_for b4 "logged-in bob"
say a4 "/talk bob"
wait_for b4 "offer alice rc4dh insecure"
say b4 "/accept alice"
wait_for a4 "established bob rc4dh insecure"
wait_for b4 "established alice rc4dh insecure"
say a4 "/fingerprint bob"
say b4 "/fingerprint alice"
wait_for a4 "fingerprint bob rc4dh"
wait_for b4 "fingerprint alice rc4dh"
fa=$(sed -n 's/^fingerprint bob rc4dh //p' "$T/a4.out")
fb=$(sed -n 's/^fingerprint alice rc4dh //p' "$T/b4.out")
[ -n "$fa" ] && [ -n "$fb" ] && [ "$fa" != "$fb" ] && pass ||
	fail "expected the rewrite to show as different fingerprints: '$fa' vs '$fb'"
quit a4
quit b4

# 5. min_security=secure: even with no secure suite possible, rc4dh is refused.
client a5 alice "$SUITES" --directory "$T/nobody.json" --set client.min_security=secure
client b5 bob rc4dh --directory "$T/nobody.json"
wait_for a5 "logged-in alice"
wait_for b5 "logged-in bob"
say b5 "/talk alice"
wait_for a5 "error downgrade bob"
expect_file "$T/a5.out" "client.min_security is 'secure'" "the reason names the setting"
quit a5
quit b5

# 6. A relay that steers to the suite an honest one would also give
#    (aescbc-hmac) but lies about the lists: the authenticated handshake
#    fails on both sides, nothing is established, and no message passes.
"$CHAT_TAP" --rewrite-suites aescbc-hmac "$T/tap6.port" "$RELAY_PORT" "$T/tap6.rec" &
PIDS+=("$!")
for _ in $(seq 1 100); do [ -s "$T/tap6.port" ] && break; sleep 0.05; done
RELAY_ADDR="127.0.0.1:$(cat "$T/tap6.port")"
client a6 alice "$SUITES" --directory "$T/alice.json"
client b6 bob "$SUITES" --directory "$T/bob.json"
wait_for a6 "logged-in alice"
wait_for b6 "logged-in bob"
say a6 "/talk bob"
wait_for b6 "offer alice aescbc-hmac"
say b6 "/accept alice"
wait_for a6 "error auth bob"
wait_for b6 "error auth alice"
expect_file "$T/a6.out" "or the relay changed the suite lists" "alice is told the lists may have been changed"
sleep 0.5
grep -q "^established" "$T/a6.out" "$T/b6.out" && fail "a conversation was established over rewritten lists" || pass
quit a6
quit b6

kill "$RELAY_PID"
wait_exit "$RELAY_PID" 10
finish
