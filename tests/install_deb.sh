#!/usr/bin/env bash
# The Debian package (docs/INSTALL.md): a tree of its own configured for the
# prefix /usr, built, `cpack -G DEB`; its contents and control fields are
# checked with dpkg-deb.  As root in CI (CI=true) or with CHAT_TEST_DPKG=1,
# it is also installed with dpkg -i, the installed relay checks and starts
# with /etc/chat/chat.ini, and the package is purged again.
. "$(dirname "$0")/lib-e2e.sh"
: "${CHAT_BUILD_DIR:?}"
for tool in cpack dpkg-deb; do
	command -v $tool >/dev/null || { echo "install_deb.sh: no $tool: skipped" >&2; exit 77; }
done
B="$CHAT_BUILD_DIR/deb"
if cmake -S "$CHAT_SOURCE_DIR" -B "$B" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DCHAT_BUILD_TESTS=OFF -DCHAT_SANITIZE=OFF >"$T/cmake.log" 2>&1 &&
	cmake --build "$B" -j2 >>"$T/cmake.log" 2>&1; then pass; else fail "building for /usr: $(tail -20 "$T/cmake.log")"; finish; fi
rm -f "$B"/chat_*.deb
if (cd "$B" && cpack -G DEB) >"$T/cpack.log" 2>&1; then pass; else fail "cpack -G DEB: $(cat "$T/cpack.log")"; finish; fi
deb=$(ls "$B"/chat_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] && pass || { fail "no .deb made: $(cat "$T/cpack.log")"; finish; }

dpkg-deb --info "$deb" >"$T/out" 2>"$T/err"; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
expect_rc 0 "dpkg-deb --info"
expect_out "Package: chat" "package name"
expect_out "Version: $(sed -n 's/^project(chat VERSION \([0-9.]*\).*/\1/p' "$CHAT_SOURCE_DIR/CMakeLists.txt")" "package version"
expect_out "Maintainer:" "maintainer"
if command -v dpkg-shlibdeps >/dev/null; then expect_out "libgnutls30" "Depends from dpkg-shlibdeps"; fi
expect_out "conffiles" "chat.ini is a conffile"
dpkg-deb -c "$deb" | awk '{print $6}' >"$T/files"
for f in ./usr/bin/chat-relay ./usr/bin/chat-client ./usr/bin/chat-peer ./etc/chat/chat.ini \
         ./usr/lib/systemd/system/chat-relay.service ./usr/share/man/man1/chat-relay.1 \
         ./usr/share/man/man5/chat.ini.5 ./usr/share/doc/chat/INSTALL.md \
         ./usr/share/bash-completion/completions/chat-client; do
	grep -qxF "$f" "$T/files" && pass || fail "not in the package: $f"
done
grep -q '/chat/plugins/transport-tls.so$' "$T/files" && pass || fail "no plugins in the package"
grep -v '^\./\(usr\|etc\)/' "$T/files" | grep -v '^\./$' >"$T/stray"
[ ! -s "$T/stray" ] && pass || fail "files outside /usr and /etc: $(cat "$T/stray")"
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/lib/systemd/system/chat-relay.service >"$T/unit"
expect_file "$T/unit" "ExecStart=/usr/bin/chat-relay --config /etc/chat/chat.ini" "the unit runs the packaged relay"

if [ "$(id -u)" -ne 0 ] || { [ "${CI:-}" != true ] && [ "${CHAT_TEST_DPKG:-0}" != 1 ]; } || ! command -v dpkg >/dev/null; then
	echo "install_deb.sh: dpkg -i left out (root in CI, or CHAT_TEST_DPKG=1)" >&2
	finish
fi
if dpkg -s chat >/dev/null 2>&1; then
	echo "install_deb.sh: a package 'chat' is installed already: dpkg -i left out" >&2
	finish
fi
if dpkg -i "$deb" >"$T/dpkg.log" 2>&1; then pass; else fail "dpkg -i: $(cat "$T/dpkg.log")"; fi
cd "$T" || exit 1
unset CHAT_CONFIG
/usr/bin/chat-relay --check-config >"$T/out" 2>"$T/err"; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
expect_rc 0 "the packaged relay checks /etc/chat/chat.ini"
expect_out "configuration OK: /etc/chat/chat.ini" "the packaged relay finds /etc/chat/chat.ini"
mkdir -m 700 "$T/state"
/usr/bin/chat-relay --listen 127.0.0.1:0 --set relay.database="$T/state/relay.db" >"$T/relay.out" 2>"$T/relay.err" &
rpid=$!; PIDS+=("$rpid")
for _ in $(seq 1 200); do
	grep -q "listening on" "$T/relay.err" && break
	kill -0 "$rpid" 2>/dev/null || break
	sleep 0.05
done
expect_file "$T/relay.err" "listening on 127.0.0.1:" "the packaged relay starts"
kill -TERM "$rpid" 2>/dev/null
wait_exit "$rpid" 10
expect_rc 0 "the packaged relay stops on SIGTERM"
if dpkg --purge chat >"$T/dpkg.log" 2>&1; then pass; else fail "dpkg --purge: $(cat "$T/dpkg.log")"; fi
[ ! -e /etc/chat/chat.ini ] && [ ! -e /usr/bin/chat-relay ] && pass || fail "files left after dpkg --purge"
finish
