#!/usr/bin/env bash
# An installation (docs/INSTALL.md): `cmake --install` into a temporary
# prefix, then, from a directory with no chat.ini, the installed programs
# find the installed example configuration and plugins by themselves
# (the search path of docs/CONFIG.md); the no-config message lists the
# places; the man pages render and pass mandoc's lint (or groff's warnings);
# systemd-analyze verifies the unit; the bash completion completes; the
# installed relay starts with the installed configuration and stops cleanly.
. "$(dirname "$0")/lib-e2e.sh"
: "${CHAT_BUILD_DIR:?}"
P="$T/prefix"
unset CHAT_CONFIG XDG_CONFIG_HOME

if cmake --install "$CHAT_BUILD_DIR" --prefix "$P" >"$T/install.log" 2>&1; then pass; else fail "cmake --install: $(cat "$T/install.log")"; finish; fi
for f in bin/chat-relay bin/chat-client bin/chat-peer etc/chat/chat.ini \
         lib/systemd/system/chat-relay.service share/man/man1/chat-relay.1 \
         share/man/man1/chat-client.1 share/man/man1/chat-peer.1 share/man/man5/chat.ini.5 \
         share/doc/chat/README.md share/doc/chat/CONFIG.md share/doc/chat/INSTALL.md \
         share/bash-completion/completions/chat-relay share/bash-completion/completions/chat-client \
         share/bash-completion/completions/chat-peer; do
	[ -e "$P/$f" ] && pass || fail "not installed: $f"
done
plugdir=$(dirname "$(find "$P" -name transport-tcp.so | head -1)")
case $plugdir in "$P"/lib*/chat/plugins) pass ;; *) fail "plugins installed in '$plugdir'" ;; esac
grep -q '^plugin_dir' "$P/etc/chat/chat.ini" && fail "the installed chat.ini sets plugin_dir" || pass
grep -qF "$CHAT_BUILD_DIR" "$P/etc/chat/chat.ini" && fail "the installed chat.ini names the build tree" || pass

# From an empty directory, with a HOME that has no configuration.
W="$T/cwd"; mkdir -p "$W" "$T/home"
cd "$W" || exit 1
export HOME="$T/home"
for prog in chat-relay chat-client chat-peer; do
	"$P/bin/$prog" --check-config >"$T/out" 2>"$T/err" </dev/null; RC=$?
	OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
	expect_rc 0 "$prog --check-config with the installed chat.ini"
	expect_out "configuration OK: $P/etc/chat/chat.ini" "$prog found the installed chat.ini"
	expect_out "from $plugdir/" "$prog loads the installed plugins"
done

# chat-client prefers ~/.config/chat/chat.ini, then $XDG_CONFIG_HOME's.
mkdir -p "$HOME/.config/chat" "$T/xdg/chat"
sed 's/^log_level = .*/log_level = warn/' "$P/etc/chat/chat.ini" >"$HOME/.config/chat/chat.ini"
cp "$HOME/.config/chat/chat.ini" "$T/xdg/chat/chat.ini"
"$P/bin/chat-client" --check-config >"$T/out" 2>"$T/err"; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
expect_out "configuration OK: $HOME/.config/chat/chat.ini" "chat-client reads ~/.config/chat/chat.ini"
XDG_CONFIG_HOME="$T/xdg" "$P/bin/chat-client" --check-config >"$T/out" 2>"$T/err"; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
expect_out "configuration OK: $T/xdg/chat/chat.ini" "chat-client reads \$XDG_CONFIG_HOME/chat/chat.ini"
"$P/bin/chat-relay" --check-config >"$T/out" 2>"$T/err"; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
expect_out "configuration OK: $P/etc/chat/chat.ini" "chat-relay does not read the user's configuration"
# ./chat.ini comes first; $CHAT_CONFIG before it.
cp "$HOME/.config/chat/chat.ini" "$W/chat.ini"
"$P/bin/chat-peer" --check-config >"$T/out" 2>"$T/err"; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
expect_out "configuration OK: chat.ini" "./chat.ini first"
CHAT_CONFIG="$T/xdg/chat/chat.ini" "$P/bin/chat-peer" --check-config >"$T/out" 2>"$T/err"; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
expect_out "configuration OK: $T/xdg/chat/chat.ini" "\$CHAT_CONFIG before ./chat.ini"
rm -f "$W/chat.ini" "$HOME/.config/chat/chat.ini"

# A file named explicitly must exist: no fallback.
CHAT_CONFIG="$T/none.ini" "$P/bin/chat-relay" --check-config >"$T/out" 2>"$T/err"; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
expect_rc 1 "a missing \$CHAT_CONFIG"
expect_err "cannot read config file '$T/none.ini': No such file or directory (from \$CHAT_CONFIG)" "a missing \$CHAT_CONFIG"
"$P/bin/chat-relay" --config "$T/none.ini" --check-config >"$T/out" 2>"$T/err"; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
expect_rc 1 "a missing --config"
expect_err "cannot read config file '$T/none.ini'" "a missing --config"

# No configuration anywhere: every place is named.
mv "$P/etc/chat/chat.ini" "$T/chat.ini.installed"
for prog in chat-relay chat-client chat-peer; do
	"$P/bin/$prog" --check-config >"$T/out" 2>"$T/err"; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
	expect_rc 1 "$prog without any configuration"
	expect_err "no configuration file found; looked for:" "$prog without any configuration"
	expect_err "chat.ini (the current directory)" "$prog lists ./chat.ini"
	expect_err "$P/etc/chat/chat.ini (the installation's configuration directory)" "$prog lists SYSCONFDIR"
	if [ $prog = chat-client ]; then
		expect_err "$HOME/.config/chat/chat.ini" "chat-client lists ~/.config/chat/chat.ini"
	elif grep -qF ".config/chat" <<<"$ERR"; then
		fail "$prog looks in ~/.config: $ERR"
	else
		pass
	fi
done
mv "$T/chat.ini.installed" "$P/etc/chat/chat.ini"

# Relative paths in a configuration file are relative to its directory.
mkdir -p "$T/conf/sub"
printf '[core]\nplugin_dir = ../prefix-plugins\n[relay]\ntransport = tcp\ndatabase = sub/relay.db\n' >"$T/conf/chat.ini"
cp -r "$plugdir" "$T/prefix-plugins"
"$P/bin/chat-relay" --config "$T/conf/chat.ini" --check-config >"$T/out" 2>"$T/err"; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
expect_rc 0 "relative plugin_dir"
expect_out "prefix-plugins/transport-tcp.so" "plugin_dir relative to the file"

# The installed relay starts with the installed configuration (its database
# in a temporary state directory) on a free port, and stops cleanly.
mkdir -m 700 "$T/state"
"$P/bin/chat-relay" --listen 127.0.0.1:0 --set relay.database="$T/state/relay.db" >"$T/relay.out" 2>"$T/relay.err" &
rpid=$!; PIDS+=("$rpid")
addr=""
for _ in $(seq 1 200); do
	addr=$(sed -n 's/.*listening on \([^ ]*\) .*/\1/p' "$T/relay.err" | head -1)
	[ -n "$addr" ] && break
	kill -0 "$rpid" 2>/dev/null || break
	sleep 0.05
done
[ -n "$addr" ] && pass || fail "the installed relay did not start: $(cat "$T/relay.err")"
expect_file "$T/relay.err" "transport tls" "the installed relay runs the installed config's transport"
[ -e "$T/state/relay.db" ] && [ -e "$T/state/tls-key.pem" ] && pass || fail "state not in $T/state: $(ls "$T/state")"
if [ -n "$addr" ]; then
	kill -TERM "$rpid"
	wait_exit "$rpid" 10
	expect_rc 0 "the installed relay stops on SIGTERM"
	expect_file "$T/relay.err" "stopped" "the installed relay stops cleanly"
fi

# The man pages: man -l renders each, mandoc -T lint (else groff -ww) is silent.
for page in man1/chat-relay.1 man1/chat-client.1 man1/chat-peer.1 man5/chat.ini.5; do
	f="$P/share/man/$page"
	if command -v man >/dev/null; then
		MANWIDTH=80 man -l "$f" >"$T/man.out" 2>"$T/man.err"; RC=$?; ERR=$(cat "$T/man.err")
		expect_rc 0 "man -l $page"
		[ -s "$T/man.out" ] && [ ! -s "$T/man.err" ] && pass || fail "man -l $page: $ERR"
	fi
	if command -v mandoc >/dev/null; then
		lint=$(mandoc -T lint -W warning "$f" 2>&1)
	elif command -v groff >/dev/null; then
		lint=$(groff -ww -z -mandoc "$f" 2>&1)
	else
		lint=""; echo "install.sh: neither mandoc nor groff: man pages not linted" >&2
	fi
	[ -z "$lint" ] && pass || fail "lint of $page: $lint"
done

# The systemd unit, pointed at the installed binary and config.
unit="$P/lib/systemd/system/chat-relay.service"
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID' "$unit" && pass || fail "no ExecReload sending HUP"
grep -q '^StateDirectory=chat' "$unit" && pass || fail "no StateDirectory=chat"
if command -v systemd-analyze >/dev/null; then
	mkdir -p "$T/unit"
	sed -e "s|^ExecStart=[^ ]*/chat-relay --config [^ ]*|ExecStart=$P/bin/chat-relay --config $P/etc/chat/chat.ini|" \
		"$unit" >"$T/unit/chat-relay.service"
	# The man: pages of Documentation= are looked up too.
	if MANPATH="$P/share/man" systemd-analyze verify "$T/unit/chat-relay.service" >"$T/sa.out" 2>&1; then
		pass
	else
		fail "systemd-analyze verify: $(cat "$T/sa.out")"
	fi
else
	echo "install.sh: no systemd-analyze: unit not verified" >&2
fi

# The bash completion (bash-completion's helpers stubbed).
comp() { # comp WORDS...: COMPREPLY for the last word, one line
	bash -c '
		_init_completion() { words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; cur=${words[cword]}; prev=${words[cword-1]}; }
		_filedir() { :; }
		compopt() { :; }
		. "$1"; shift
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
		_chat; echo "${COMPREPLY[*]}"' comp "$P/share/bash-completion/completions/chat-relay" "$@"
}
out=$(comp "$P/bin/chat-relay" --fin); [ "$out" = "--fingerprint" ] && pass || fail "completion of --fin: '$out'"
out=$(comp "$P/bin/chat-peer" --suite a); [ "$out" = "aescbc-hmac" ] && pass || fail "completion of --suite a: '$out'"
out=$(comp "$P/bin/chat-client" --suites noise-xx,aes); [ "$out" = "noise-xx,aescbc-hmac" ] && pass || fail "completion of --suites noise-xx,aes: '$out'"
finish
