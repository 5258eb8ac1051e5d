#!/usr/bin/env bash
# transport-tls with the real programs and real TLS tools, on 127.0.0.1 only:
#   1. gnutls-cli and openssl s_client complete TLS 1.3 with chat-relay and
#      get ALPN chat/1; a client without ALPN, or with TLS 1.2 only, is refused;
#   2. chat-client against openssl s_server presenting an expired certificate,
#      a not yet valid one, one for another host name, one of an unknown CA,
#      a key other than the pinned one, TLS 1.2 only: each refused with its own
#      sentence, exit 1, nothing sent (and the good ones accepted);
#   3. known_relays: the first connection records the relay's key (WARN) and
#      logs in; a regenerated relay key is refused naming the file, the line
#      and both keys; the printed command lets it connect again;
#   4. chat-relay --fingerprint prints the key the client recorded;
#   5. a tcp client at a TLS relay and a TLS client at a tcp relay: clear
#      errors; 50 non-TLS connections make one log line, not 50;
#   6. chat-tap records every byte between a client and the relay: no account
#      name, suite name or message text in it.
# transports: its own (each case sets relay and client transports itself)
. "$(dirname "$0")/lib-e2e.sh"
for tool in gnutls-cli certtool openssl; do
	command -v $tool >/dev/null || { echo "FAIL: $tool not installed (Debian: gnutls-bin, openssl; .ci/bootstrap installs them)" >&2; exit 1; }
done
test_ini
printf '\n[plugin.aescbc-hmac]\niterations = 10000\n' >>"$T/chat.ini"
TLS=(--set relay.transport=tls)
CTLS=(--set client.transport=tls)
FAST=(--set client.kdf_iterations=1000)

# The relay's state directory is the directory of relay.database: $T.
# ---- 4 (first part): --fingerprint makes the key, then prints the same one
run chat-relay --config "$T/chat.ini" --fingerprint
expect_rc 1 "--fingerprint with transport tcp"
expect_err "transport tcp has no key: nothing to fingerprint" "--fingerprint with transport tcp"
run chat-relay --config "$T/chat.ini" "${TLS[@]}" --fingerprint
expect_rc 0 "--fingerprint"
FP=$OUT
[[ $FP =~ ^sha256:[0-9a-f]{64}$ ]] && pass || fail "--fingerprint printed '$FP'"
expect_err "TLS key $FP (created in $T/tls-key.pem" "--fingerprint makes the key"
[ "$(stat -c %a "$T/tls-key.pem")" = 600 ] && pass || fail "tls-key.pem mode $(stat -c %a "$T/tls-key.pem")"
# The fingerprint is the SHA-256 of the certificate's SubjectPublicKeyInfo.
ofp=$(openssl x509 -in "$T/tls-cert.pem" -noout -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -r | cut -d' ' -f1)
[ "sha256:$ofp" = "$FP" ] && pass || fail "openssl says sha256:$ofp, --fingerprint $FP"
run chat-relay --config "$T/chat.ini" "${TLS[@]}" --fingerprint
[ "$OUT" = "$FP" ] && pass || fail "second --fingerprint '$OUT' is not '$FP'"
expect_err "(loaded from $T/tls-key.pem" "--fingerprint reuses the key"

start_relay relay "${TLS[@]}" || finish
expect_file "$T/relay.err" "TLS key $FP (loaded from" "relay logs its key"

# ---- 1. real TLS clients
timeout 10 gnutls-cli --insecure --alpn=chat/1 -p "$RELAY_PORT" 127.0.0.1 </dev/null >"$T/gnutls-cli.out" 2>&1
expect_file "$T/gnutls-cli.out" "- Description: (TLS1.3-X.509)" "gnutls-cli: TLS 1.3"
expect_file "$T/gnutls-cli.out" "- Application protocol: chat/1" "gnutls-cli: ALPN"
expect_file "$T/gnutls-cli.out" "$FP" "gnutls-cli sees the key --fingerprint printed"
timeout 10 openssl s_client -connect "$RELAY_ADDR" -alpn chat/1 </dev/null >"$T/s_client.out" 2>&1
expect_file "$T/s_client.out" "New, TLSv1.3, Cipher is" "openssl s_client: TLS 1.3"
expect_file "$T/s_client.out" "ALPN protocol: chat/1" "openssl s_client: ALPN"
# The relay requires ALPN chat/1, and TLS 1.3 by default.
timeout 10 openssl s_client -connect "$RELAY_ADDR" </dev/null >"$T/s_client2.out" 2>&1
expect_file "$T/s_client2.out" "alert no application protocol" "a client without ALPN is refused"
timeout 10 openssl s_client -connect "$RELAY_ADDR" -alpn chat/1 -tls1_2 </dev/null >"$T/s_client3.out" 2>&1
# (gnutls answers a TLS 1.2-only hello with handshake_failure)
expect_file "$T/s_client3.out" "alert handshake failure" "a TLS 1.2 client is refused (min_version 1.3)"
grep -q "New, TLSv1.2, Cipher is" "$T/s_client3.out" && fail "a TLS 1.2 client got through" || pass

# ---- 3. known_relays: trust on first use
client a alice aescbc-hmac "${CTLS[@]}"
wait_for a "logged-in alice"
quit a
expect_file "$T/a.err" "first connection to $RELAY_ADDR: its key $FP is now trusted (recorded in $T/client/known_relays line 1)" "first use said at WARN"
expect_file "$T/a.err" "warn" "first use said at WARN"
expect_file "$T/client/known_relays" "$RELAY_ADDR $FP" "known_relays line"
[ "$(stat -c %a "$T/client/known_relays")" = 600 ] && pass || fail "known_relays mode $(stat -c %a "$T/client/known_relays")"
[ "$(stat -c %a "$T/client")" = 700 ] && pass || fail "data_dir mode $(stat -c %a "$T/client")"
client a2 alice aescbc-hmac "${CTLS[@]}"
wait_for a2 "logged-in alice"
quit a2
grep -q "first connection" "$T/a2.err" && fail "the second connection was announced as a first one" || pass
[ "$(wc -l <"$T/client/known_relays")" = 1 ] && pass || fail "known_relays grew: $(cat "$T/client/known_relays")"

# A new relay key (its files deleted, the relay restarted on the same address).
kill "$RELAY_PID"; wait_exit "$RELAY_PID" 10
rm -f "$T/tls-key.pem" "$T/tls-cert.pem"
start_relay relay2 "${TLS[@]}" --listen "$RELAY_ADDR" || finish
FP2=$(sed -n 's/.*TLS key \(sha256:[0-9a-f]*\) (created in.*/\1/p' "$T/relay2.err")
[ -n "$FP2" ] && [ "$FP2" != "$FP" ] && pass || fail "no new key: '$FP2'"
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" --user alice --suites aescbc-hmac "${CTLS[@]}"
expect_rc 1 "changed relay key"
expect_out "the key of $RELAY_ADDR has changed: it now presents $FP2, but $T/client/known_relays line 1 has $FP" "changed relay key"
expect_out "Refused." "changed relay key"
expect_out "sed -i '1d' $T/client/known_relays and connect again" "changed relay key: the way out"
grep -q "logged-in" <<<"$OUT" && fail "logged in despite a changed key" || pass
# The command it printed, then again: recorded and in.
fix=$(grep -o "sed -i '1d' [^ ]*known_relays" <<<"$OUT")
sh -c "$fix"
client a3 alice aescbc-hmac "${CTLS[@]}"
wait_for a3 "logged-in alice"
quit a3
expect_file "$T/client/known_relays" "$RELAY_ADDR $FP2" "the new key recorded"
# ---- 4. --fingerprint prints what the client recorded
run chat-relay --config "$T/chat.ini" "${TLS[@]}" --fingerprint
[ "$OUT" = "$FP2" ] && pass || fail "--fingerprint '$OUT', the client recorded '$FP2'"

# ---- 5. transports that do not match
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" --user bob --suites aescbc-hmac
expect_rc 1 "tcp client at a TLS relay"
expect_out "cannot connect to relay $RELAY_ADDR: the peer sent a TLS record instead of a frame: it speaks TLS" "tcp client at a TLS relay"
for _ in $(seq 1 40); do grep -q "not TLS" "$T/relay2.err" && break; sleep 0.05; done
NONTLS_AT=$SECONDS
expect_file "$T/relay2.err" "sent bytes that are not TLS (a client whose transport is tcp?); closed it" "the relay names a tcp client"
before=$(wc -l <"$T/relay2.err")
for _ in $(seq 1 50); do
	"$CHAT_BIN/chat-client" --config "$T/chat.ini" --connect "$RELAY_ADDR" --user bob \
		--suites aescbc-hmac </dev/null >/dev/null 2>&1
done
sleep 1
after=$(wc -l <"$T/relay2.err")
n=$(grep -c "not TLS" "$T/relay2.err")
[ "$n" = 1 ] && pass || fail "$n log lines about non-TLS clients after 51 of them (expected 1 per 10 s)"
[ $((after - before)) -lt 10 ] && pass || fail "50 non-TLS connections added $((after - before)) log lines: $(tail -5 "$T/relay2.err")"
echo "  51 non-TLS connections in a row: $n plugin line(s), $((after - before)) relay log line(s) for the last 50"
# (checked at the end, 10 s later: the next line counts the 50 not logged)

"$CHAT_BIN/chat-relay" --config "$T/chat.ini" --listen 127.0.0.1:0 --set relay.database="$T/plain/relay.db" \
	>"$T/plain.out" 2>"$T/plain.err" &
PLAIN_PID=$!
PIDS+=("$PLAIN_PID")
for _ in $(seq 1 100); do
	PLAIN_ADDR=$(sed -n 's/.*listening on \([^ ]*\) .*/\1/p' "$T/plain.err" | head -1)
	[ -n "$PLAIN_ADDR" ] && break; sleep 0.05
done
run chat-client --config "$T/chat.ini" --connect "$PLAIN_ADDR" --user bob --suites aescbc-hmac "${CTLS[@]}" --set plugin.tls.pin="$FP2"
expect_rc 1 "TLS client at a tcp relay"
expect_out "cannot connect to relay $PLAIN_ADDR: connect failed: $PLAIN_ADDR closed the connection without answering the TLS handshake: it does not speak TLS (is its transport tcp?)" "TLS client at a tcp relay"
kill "$PLAIN_PID"; wait_exit "$PLAIN_PID" 10

# ---- 2. chat-client against openssl s_server with bad certificates
P=$T/pki
mkdir -p "$P"
tmpl() { local f=$1; shift; printf '%s\n' "$@" >"$P/$f.tmpl"; }
certtool --generate-privkey --key-type ecdsa --outfile "$P/ca.key" 2>/dev/null
tmpl ca 'cn = "Test CA"' ca cert_signing_key 'expiration_days = 3650'
certtool --generate-self-signed --load-privkey "$P/ca.key" --template "$P/ca.tmpl" --outfile "$P/ca.pem" 2>/dev/null
certtool --generate-privkey --key-type ecdsa --outfile "$P/ca2.key" 2>/dev/null
tmpl ca2 'cn = "Other CA"' ca cert_signing_key 'expiration_days = 3650'
certtool --generate-self-signed --load-privkey "$P/ca2.key" --template "$P/ca2.tmpl" --outfile "$P/ca2.pem" 2>/dev/null
certtool --generate-privkey --key-type ecdsa --outfile "$P/srv.key" 2>/dev/null
names=('dns_name = "localhost"' 'ip_address = "127.0.0.1"' tls_www_server signing_key)
tmpl good 'cn = "relay"' "${names[@]}" 'expiration_days = 365'
tmpl expired 'cn = "relay"' "${names[@]}" 'activation_date = "2019-01-01 00:00:00"' 'expiration_date = "2020-02-01 00:00:00"'
tmpl future 'cn = "relay"' "${names[@]}" 'activation_date = "2090-01-01 00:00:00"' 'expiration_date = "2091-01-01 00:00:00"'
tmpl other 'cn = "other"' 'dns_name = "other.example"' tls_www_server signing_key 'expiration_days = 365'
for c in good expired future other; do
	certtool --generate-certificate --load-privkey "$P/srv.key" --load-ca-certificate "$P/ca.pem" \
		--load-ca-privkey "$P/ca.key" --template "$P/$c.tmpl" --outfile "$P/$c.pem" 2>/dev/null
done
certtool --generate-certificate --load-privkey "$P/srv.key" --load-ca-certificate "$P/ca2.pem" \
	--load-ca-privkey "$P/ca2.key" --template "$P/good.tmpl" --outfile "$P/unknown.pem" 2>/dev/null
certtool --generate-self-signed --load-privkey "$P/srv.key" --template "$P/good.tmpl" --outfile "$P/self.pem" 2>/dev/null
for c in good expired future other unknown self; do
	[ -s "$P/$c.pem" ] && pass || fail "certtool made no $c.pem"
done
GOOD_FP=sha256:$(openssl x509 -in "$P/good.pem" -noout -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -r | cut -d' ' -f1)

# serve NAME CERT [s_server args...]: one TLS connection on 127.0.0.1 (SS_ADDR)
serve() {
	local name=$1 cert=$2; shift 2
	# Its stdin stays open (a fifo we hold): at EOF s_server would quit.
	mkfifo "$T/ss-$name.in"
	timeout 20 openssl s_server -accept 127.0.0.1:0 -cert "$P/$cert.pem" -key "$P/srv.key" \
		-alpn chat/1 -naccept 1 "$@" <"$T/ss-$name.in" >"$T/ss-$name.out" 2>"$T/ss-$name.err" &
	SS_PID=$!
	PIDS+=("$SS_PID")
	exec {SS_FD}>"$T/ss-$name.in"
	SS_ADDR=
	for _ in $(seq 1 100); do
		SS_ADDR=$(sed -n 's/^ACCEPT \(127.0.0.1:[0-9]*\)$/\1/p' "$T/ss-$name.out")
		[ -n "$SS_ADDR" ] && break; sleep 0.05
	done
	[ -n "$SS_ADDR" ] || fail "openssl s_server $name did not start: $(cat "$T/ss-$name.err")"
}
stop_server() {
	kill "$SS_PID" 2>/dev/null
	wait "$SS_PID" 2>/dev/null
	exec {SS_FD}>&-
}
# refused NAME PHRASE CHAT-CLIENT-ARGS...: the client exits 1 saying PHRASE; HELLO never sent
refused() {
	local name=$1 phrase=$2; shift 2
	run chat-client --config "$T/chat.ini" --connect "$SS_ADDR" --user carol --suites aescbc-hmac "${CTLS[@]}" "$@"
	expect_rc 1 "s_server $name"
	expect_out "cannot connect to relay $SS_ADDR: connect failed: $phrase" "s_server $name"
	stop_server
	grep -qa "aescbc-hmac" "$T/ss-$name.out" && fail "s_server $name: the client sent its HELLO anyway" || pass
}
# accepted NAME CHAT-CLIENT-ARGS...: the client's HELLO (its suite list) reaches s_server
accepted() {
	local name=$1; shift
	"$CHAT_BIN/chat-client" --config "$T/chat.ini" --connect "$SS_ADDR" --user carol \
		--suites aescbc-hmac "${CTLS[@]}" "$@" </dev/null >"$T/cc-$name.out" 2>"$T/cc-$name.err" &
	local pid=$!
	PIDS+=("$pid")
	for _ in $(seq 1 100); do grep -qa aescbc-hmac "$T/ss-$name.out" && break; sleep 0.05; done
	kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
	grep -qa "aescbc-hmac" "$T/ss-$name.out" && pass || fail "s_server $name: no HELLO arrived: $(cat "$T/cc-$name.out" "$T/cc-$name.err")"
	stop_server
}
CA=(--set "plugin.tls.ca=$P/ca.pem")
serve good good
accepted good "${CA[@]}"
serve good-name good
accepted good-name "${CA[@]}" --set plugin.tls.server_name=localhost
serve expired expired
refused expired "the certificate of $SS_ADDR expired on 2020-02-01 00:00:00 UTC" "${CA[@]}"
serve future future
refused future "the certificate of $SS_ADDR is not valid before 2090-01-01 00:00:00 UTC" "${CA[@]}"
serve other other
refused other "the certificate of $SS_ADDR is for other.example, not for 127.0.0.1: wrong host name" "${CA[@]}"
serve wrong-name good
refused wrong-name "the certificate of $SS_ADDR is for localhost, 127.0.0.1, not for relay.example: wrong host name" "${CA[@]}" --set plugin.tls.server_name=relay.example
serve unknown unknown
refused unknown "the certificate of $SS_ADDR ('CN=relay', issued by 'CN=Other CA') is not signed by a CA of $P/ca.pem ([plugin.tls] ca): unknown CA" "${CA[@]}"
serve self self
refused self "the certificate of $SS_ADDR ('CN=relay') is self-signed, not issued by a CA of $P/ca.pem ([plugin.tls] ca): unknown CA" "${CA[@]}"
serve pin good
refused pin "the key of $SS_ADDR is $GOOD_FP, not the one [plugin.tls] pin names ($FP2): refused" --set "plugin.tls.pin=$FP2"
serve pin-ok good
accepted pin-ok --set "plugin.tls.pin=$GOOD_FP"
serve tls12 good -tls1_2
refused tls12 "$SS_ADDR refused the TLS version or ciphers this side offers (its alert: Error in protocol version); this side allows TLS 1.3 and later" "${CA[@]}"
serve tls12-ok good -tls1_2
accepted tls12-ok "${CA[@]}" --set plugin.tls.min_version=1.2
serve no-alpn good -alpn other/1
refused no-alpn "$SS_ADDR refused the application protocol chat/1 (ALPN)" "${CA[@]}"
# A malformed pin is a configuration error, before any packet.
run chat-client --config "$T/chat.ini" --connect 127.0.0.1:9 --user carol --suites aescbc-hmac "${CTLS[@]}" --set plugin.tls.pin=sha256:abc
expect_rc 1 "malformed pin"
expect_err "[plugin.tls] pin: 'sha256:abc' is not 'sha256:' followed by 64 hex digits" "malformed pin"
# Neither ca nor pin nor a data directory: nothing to check the key against.
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" --user carol --suites aescbc-hmac "${CTLS[@]}" --set client.data_dir=
expect_rc 1 "no way to check the key"
expect_err "no way to check the key of $RELAY_ADDR: set [plugin.tls] ca (a CA file) or pin" "no way to check the key"

# ---- 6. what the path sees
"$CHAT_TAP" "$T/tap.port" "$RELAY_PORT" "$T/tap.rec" &
PIDS+=("$!")
for _ in $(seq 1 100); do [ -s "$T/tap.port" ] && break; sleep 0.05; done
TAP_ADDR="127.0.0.1:$(cat "$T/tap.port")"
PIN=(--set "plugin.tls.pin=$FP2")
for u in zebulon quentin; do
	printf 'a long %s passphrase\n' "$u" >"$T/$u.pw"
	chmod 600 "$T/$u.pw"
	run chat-client --config "$T/chat.ini" --connect "$TAP_ADDR" -u "$u" --register \
		--password-file "$T/$u.pw" "${FAST[@]}" "${CTLS[@]}" "${PIN[@]}"
	expect_rc 0 "register $u through the tap"
done
printf '[ {"username": "quentin", "ip": "127.0.0.1", "port": 1, "password": "shared words"} ]\n' >"$T/zebulon.json"
printf '[ {"username": "zebulon", "ip": "127.0.0.1", "port": 1, "password": "shared words"} ]\n' >"$T/quentin.json"
chmod 600 "$T"/zebulon.json "$T"/quentin.json
SAVED=$RELAY_ADDR; RELAY_ADDR=$TAP_ADDR
client z zebulon aescbc-hmac --password-file "$T/zebulon.pw" --directory "$T/zebulon.json" "${FAST[@]}" "${CTLS[@]}" "${PIN[@]}"
client q quentin aescbc-hmac --password-file "$T/quentin.pw" --directory "$T/quentin.json" "${FAST[@]}" "${CTLS[@]}" "${PIN[@]}"
RELAY_ADDR=$SAVED
wait_for z "logged-in zebulon registered"
wait_for q "logged-in quentin registered"
say z "/msg quentin the owl flies at midnight"
wait_for q "offer zebulon aescbc-hmac"
say q "/accept zebulon"
wait_for q "msg zebulon aescbc-hmac the owl flies at midnight"
quit z
quit q
size=$(stat -c %s "$T/tap.rec")
[ "$size" -gt 2000 ] && pass || fail "the tap recorded only $size bytes"
[ "$(head -c 1 "$T/tap.rec" | od -An -tx1 | tr -d ' ')" = 16 ] && pass || fail "the recording does not begin with a TLS handshake record"
for text in zebulon quentin aescbc-hmac "owl flies" "a long zebulon"; do
	if grep -qaF -- "$text" "$T/tap.rec"; then fail "'$text' crossed the path in clear"; else pass; fi
done
echo "  the tap recorded $size bytes: none of the names, the suite or the text in clear"

# ---- 5 (end): 10 s after the line about the first non-TLS client, the next
# one is logged with the count of the 50 in between.
while [ $((SECONDS - NONTLS_AT)) -le 10 ]; do sleep 0.5; done
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" --user bob --suites aescbc-hmac
for _ in $(seq 1 40); do [ "$(grep -c "not TLS" "$T/relay2.err")" -ge 2 ] && break; sleep 0.05; done
expect_file "$T/relay2.err" "sent bytes that are not TLS (a client whose transport is tcp?); closed it (and 50 more such connections since the last line, not logged one by one)" "the count of non-TLS clients not logged"

# ---- A TLS handshake that never finishes is dropped: relay.login_timeout
# bounds the time from connect to login, the TLS handshake included.
start_relay relay3 --set relay.transport=tls --set "relay.state_dir=$T/state3" --set relay.login_timeout=1 \
	--set "relay.database=$T/relay3.db" || finish # another relay runs on $T/relay.db
exec 9<>"/dev/tcp/127.0.0.1/$RELAY_PORT"
printf '\x16\x03\x01' >&9 # the first bytes of a ClientHello, then nothing
sleep 2.5
if read -r -t 2 -u 9 _; then st=0; else st=$?; fi
[ "$st" -eq 1 ] && pass || fail "a stalled TLS handshake was not closed by the relay (read status $st)"
exec 9<&-
expect_file "$T/relay3.err" "login_timeout" "the relay says why it closed the stalled handshake"
kill "$RELAY_PID"

finish
