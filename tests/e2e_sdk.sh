#!/usr/bin/env bash
# The plugin SDK: install into a temporary prefix, build the out-of-tree
# example plugin with nothing but pkg-config and cc, and load it by path into
# the installed programs.
. "$(dirname "$0")/lib-e2e.sh"
: "${CHAT_BUILD_DIR:?}"
prefix="$T/prefix"

if cmake --install "$CHAT_BUILD_DIR" --prefix "$prefix" >"$T/install.log" 2>&1; then pass; else fail "cmake --install: $(cat "$T/install.log")"; finish; fi
libdir=$(find "$prefix" -name chat-plugin.pc -printf '%h\n' | head -1)
[ -n "$libdir" ] && pass || fail "chat-plugin.pc not installed"
for f in bin/chat-relay bin/chat-client bin/chat-peer include/chat/plugin.h include/chat/cipher.h \
         include/chat/transport.h include/chat/host.h include/chat/error.h; do
	[ -e "$prefix/$f" ] && pass || fail "not installed: $f"
done
plugdir=$(PKG_CONFIG_PATH="$libdir" pkg-config --variable=plugindir chat-plugin)
[ -e "$plugdir/transport-tcp.so" ] && pass || fail "transport-tcp.so not in the installed plugin dir '$plugdir'"

# The public headers stand alone, even in strict C99 and in C++.
cflags=$(PKG_CONFIG_PATH="$libdir" pkg-config --cflags chat-plugin)
echo '#include <chat/plugin.h>' >"$T/hdr.c"
if cc -std=c99 -pedantic -Wall -Wextra -Werror $cflags -c "$T/hdr.c" -o "$T/hdr.o" 2>"$T/cc.err"; then pass; else fail "headers in C99: $(cat "$T/cc.err")"; fi
if command -v c++ >/dev/null; then
	cp "$T/hdr.c" "$T/hdr.cc"
	if c++ -Wall -Wextra -Werror $cflags -c "$T/hdr.cc" -o "$T/hdrcc.o" 2>"$T/cc.err"; then pass; else fail "headers in C++: $(cat "$T/cc.err")"; fi
fi

# Build the example exactly as docs/PLUGIN-ABI.md tells a third party to.
if cc -shared -Wall -Wextra -Werror $cflags -o "$T/cipher-rot13.so" \
	"$CHAT_SOURCE_DIR/examples/cipher-rot13/rot13.c" 2>"$T/cc.err"; then pass; else fail "building rot13: $(cat "$T/cc.err")"; finish; fi
syms=$(nm -D --defined-only "$T/cipher-rot13.so" | awk '$2 ~ /^[TDBRVW]$/ {print $3}')
[ "$syms" = "chat_plugin_entry" ] && pass || fail "rot13 exports: $syms"

# The installed relay, configured for the installed plugin dir, loads it by path.
sed -e "s|^plugin_dir = .*|plugin_dir = $plugdir|" "$CHAT_SOURCE_DIR/chat.ini" >"$T/inst.ini"
"$prefix/bin/chat-relay" --config "$T/inst.ini" --plugin "$T/cipher-rot13.so" --list-plugins >"$T/out" 2>"$T/err"; RC=$?
OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
expect_rc 0 "installed relay lists rot13"
expect_out "cipher     rot13" "installed relay lists rot13"
expect_out "insecure" "rot13 flagged insecure"
expect_out "transport  tcp" "installed relay lists tcp"
"$prefix/bin/chat-relay" --config "$T/inst.ini" --plugin "$T/cipher-rot13.so" --check-config >"$T/out" 2>"$T/err"; RC=$?
ERR=$(cat "$T/err")
expect_rc 0 "installed relay --check-config with rot13"
finish
