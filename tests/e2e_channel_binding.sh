#!/usr/bin/env bash
# SCRAM-SHA-256-PLUS with tls-exporter channel binding (docs/PROTOCOL.md
# section 4) against a TLS-intercepting proxy the client was made to trust:
# chat-tap --tls-terminate ends the client's TLS with its own certificate
# (the client accepts it on first use), opens its own TLS to the relay and
# sees every frame in clear.  With the right password, alice's login through
# it still fails, because the relay's TLS channel is not the one her login
# is bound to; straight to the relay it works.  A guest (no SCRAM) passes
# through the proxy, so the proxy itself works.  A TLS front before a plain
# relay (like stunnel; --tls-terminate-plain) is the one case without a
# binding: the relay says so, the client logs in with SCRAM's 'y' flag.
# transports: its own (TLS towards the relay and the proxy, tcp behind the front)
. "$(dirname "$0")/lib-e2e.sh"
CHAT_TEST_TRANSPORT=tls
test_ini
FAST=(--set client.kdf_iterations=1000 --set client.data_dir=)
printf 'alice password\n' >"$T/alice.pw"
chmod 600 "$T/alice.pw"
start_relay relay --set "relay.database=$T/relay.db" || finish

# The interceptor's own key and certificate (its name is right; only the
# key differs from the relay's).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
	-keyout "$T/mitm-key.pem" -out "$T/mitm-cert.pem" 2>"$T/openssl.err" ||
	{ fail "openssl could not make the proxy's certificate: $(cat "$T/openssl.err")"; finish; }

# Register straight at the relay (known_relays gets the relay's key).
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u alice --register \
	--password-file "$T/alice.pw" "${FAST[@]}"
expect_rc 0 "register alice directly"
expect_out "logged-in alice registered" "register alice directly"
expect_out "link to the relay: TLS1.3" "the link is TLS"
grep -q "login from .* refused" "$T/relay.err" && fail "the direct login was refused" || pass

start_tap() { # NAME MODE
	"$CHAT_TAP" "$2" "$T/mitm-cert.pem" "$T/mitm-key.pem" "$T/$1.port" "$3" "$T/$1.rec" 2>"$T/$1.err" &
	PIDS+=("$!")
	for _ in $(seq 1 100); do [ -s "$T/$1.port" ] && break; sleep 0.05; done
	[ -s "$T/$1.port" ] || fail "chat-tap $1 did not start: $(cat "$T/$1.err")"
}

# The interceptor.  The client has never seen this address: it trusts the
# proxy's key on first use (that is how it "was made to accept" it).
start_tap mitm --tls-terminate "$RELAY_PORT"
MITM="127.0.0.1:$(cat "$T/mitm.port")"
run chat-client --config "$T/chat.ini" --connect "$MITM" -u alice --password-file "$T/alice.pw" "${FAST[@]}"
expect_rc 1 "login through the interceptor"
expect_err "first connection to $MITM" "the client trusted the interceptor's key"
expect_out "error channel-binding" "login through the interceptor: the relay refuses it"
expect_out "someone in between terminates TLS" "login through the interceptor: says why"
if grep -q "^logged-in alice" <<<"$OUT"; then fail "alice logged in through the interceptor"; else pass; fi
expect_file "$T/relay.err" "refused: the TLS channel the client bound its login to is not the relay's" \
	"the relay logs the refused login"
# The interceptor saw the exchange in clear (the binding, not secrecy, stopped it).
grep -qa "p=tls-exporter,,n=alice" "$T/mitm.rec" && pass ||
	fail "the interceptor's record lacks the client-first in clear"

# A guest needs no SCRAM: the interceptor itself works.
run chat-client --config "$T/chat.ini" --connect "$MITM" -u guestuser "${FAST[@]}" </dev/null
expect_out "logged-in guestuser guest" "a guest through the interceptor"

# Straight to the relay again: the same password works.
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u alice --password-file "$T/alice.pw" "${FAST[@]}"
expect_rc 0 "direct login after the attempt"
expect_out "logged-in alice registered" "direct login after the attempt"

# A TLS front before a plain relay: no binding is possible, the relay says
# so at AUTH, and the client logs in with 'y' (a relay that could bind
# would refuse that as a downgrade: tests/test_scram.c).
start_relay plain --set relay.transport=tcp --set "relay.database=$T/plain.db" || finish
PLAIN_PORT=$RELAY_PORT
run chat-client --config "$T/chat.ini" --set client.transport=tcp --connect "127.0.0.1:$PLAIN_PORT" \
	-u alice --register --password-file "$T/alice.pw" "${FAST[@]}"
expect_out "logged-in alice registered" "register at the plain relay"
start_tap front --tls-terminate-plain "$PLAIN_PORT"
run chat-client --config "$T/chat.ini" --connect "127.0.0.1:$(cat "$T/front.port")" -u alice \
	--password-file "$T/alice.pw" "${FAST[@]}"
expect_rc 0 "login through a TLS front before a plain relay"
expect_out "the relay cannot bind the login to this TLS channel" "the client says it logs in without binding"
expect_out "logged-in alice registered" "login through a TLS front"
grep -qa "y,,n=alice" "$T/front.rec" && pass || fail "the second client-first was not 'y,,'"

kill "$RELAY_PID"
finish
