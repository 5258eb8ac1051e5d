#!/usr/bin/env bash
# The three programs' common command line: --help, --version, --list-plugins,
# --check-config, configuration errors with file:line, every broken-plugin
# case with its own message and a non-zero exit before any socket is opened.
. "$(dirname "$0")/lib-e2e.sh"
# The ABI minor the programs are built with (core/include/chat/plugin.h).
MINOR=$(sed -n 's/^#define CHAT_ABI_MINOR \([0-9]*\).*/\1/p' "$CHAT_SOURCE_DIR/core/include/chat/plugin.h")
test_ini
B=${CHAT_TEST_PLUGIN_DIR:?}

for prog in chat-relay chat-client chat-peer; do
	run $prog --help
	expect_rc 0 "$prog --help"
	expect_out "--check-config" "$prog --help"
	expect_out "--list-plugins" "$prog --help"
	run $prog --version
	expect_rc 0 "$prog --version"
	expect_out "$prog 0.1.0 (plugin ABI 1.$MINOR)" "$prog --version"
	run $prog --config "$T/chat.ini" --check-config
	expect_rc 0 "$prog --check-config"
	expect_out "configuration OK" "$prog --check-config"
	[ $prog = chat-peer ] && want=tcp || want=$CHAT_TEST_TRANSPORT # chat-peer keeps tcp
	expect_out "transport '$want' 1.0.0" "$prog --check-config"
	run $prog --config "$T/chat.ini" --list-plugins
	expect_rc 0 "$prog --list-plugins"
	expect_out "transport  tcp" "$prog --list-plugins"
	expect_out "transport-tcp.so" "$prog --list-plugins"
	run $prog --bogus-option
	expect_rc 2 "$prog unknown option"
	expect_err "unknown option" "$prog unknown option"
done

# The repository's own chat.ini works as is from the source tree (build/plugins).
if [ -d "$CHAT_SOURCE_DIR/build/plugins" ]; then
	(cd "$CHAT_SOURCE_DIR" && "$CHAT_BIN/chat-relay" --check-config >"$T/out" 2>"$T/err"); RC=$?
	ERR=$(cat "$T/err")
	expect_rc 0 "repository chat.ini"
fi

# Missing configuration file.
run chat-relay --config "$T/none.ini" --check-config
expect_rc 1 "missing config"
expect_err "cannot read config file '$T/none.ini': No such file or directory" "missing config"

# Unknown key, with its line number.
cp "$T/chat.ini" "$T/bad.ini"
printf '[relay]\nlisen = 1.2.3.4:5\n' >>"$T/bad.ini"
line=$(grep -n '^lisen' "$T/bad.ini" | cut -d: -f1)
run chat-relay --config "$T/bad.ini" --check-config
expect_rc 1 "unknown key"
expect_err "$T/bad.ini:$line: unknown key 'lisen' in section [relay]" "unknown key"

# Unknown section, malformed number, malformed address.
printf '[core]\nmax_frame = 12x\n' >"$T/bad2.ini"
run chat-relay --config "$T/bad2.ini" --check-config
expect_rc 1 "bad number"
expect_err "$T/bad2.ini:2: core.max_frame: '12x' is not a number" "bad number"
printf '\n[rely]\n' >"$T/bad3.ini"
run chat-relay --config "$T/bad3.ini" --check-config
expect_rc 1 "unknown section"
expect_err "$T/bad3.ini:2: unknown section [rely]" "unknown section"

# Overrides: --set, --listen; bad values name the flag.
run chat-relay --config "$T/chat.ini" --set relay.listen=nonsense --check-config
expect_rc 2 "bad --set"
expect_err "relay.listen" "bad --set"
expect_err "--set" "bad --set"
run chat-relay --config "$T/chat.ini" --listen '[::1]:99999' --check-config
expect_rc 2 "bad --listen"
expect_err "--listen" "bad --listen"
expect_err "port 99999 is out of range" "bad --listen"
run chat-relay --config "$T/chat.ini" --set nodot --check-config
expect_rc 2 "bad --set syntax"
expect_err "expected section.key=value" "bad --set syntax"

# The configured transport does not exist.
run chat-relay --config "$T/chat.ini" --set relay.transport=nope --check-config
expect_rc 1 "missing transport"
expect_err "transport plugin 'nope': file not found: $CHAT_PLUGIN_DIR/transport-nope.so" "missing transport"

# A configured cipher suite that does not exist is found by --check-config,
# naming the key it came from.
run chat-client --config "$T/chat.ini" --set client.suites=rc4dh,nosuch --check-config
expect_rc 1 "missing client suite"
expect_err "cipher plugin 'nosuch': file not found" "missing client suite"
expect_err "client.suites" "missing client suite"
run chat-relay --config "$T/chat.ini" --set relay.suites=ghost --check-config
expect_rc 1 "missing relay suite"
expect_err "cipher plugin 'ghost': file not found" "missing relay suite"
run chat-peer --config "$T/chat.ini" --set peer.suite=ghost --check-config
expect_rc 1 "missing peer suite"
expect_err "(peer.suite, --set)" "missing peer suite"

# Plugin directory missing.
run chat-relay --config "$T/chat.ini" --set core.plugin_dir=/nonexistent --check-config
expect_rc 1 "missing plugin dir"
expect_err "plugin directory /nonexistent does not exist" "missing plugin dir"

# A [plugin.NAME] section for a plugin that does not exist.
cp "$T/chat.ini" "$T/sect.ini"
printf '[plugin.ghost]\nx = 1\n' >>"$T/sect.ini"
line=$(grep -n 'plugin.ghost' "$T/sect.ini" | cut -d: -f1)
run chat-relay --config "$T/sect.ini" --check-config
expect_rc 1 "unknown plugin section"
expect_err "$T/sect.ini:$line: section [plugin.ghost]: no plugin named 'ghost'" "unknown plugin section"

# Every broken plugin, given by path: its own message naming the path; exit 1.
check_broken() { # FILE PHRASE
	# on tcp, so that dup-tcp.so meets the real transport-tcp
	run chat-relay --config "$T/chat.ini" --set relay.transport=tcp --plugin "$B/$1" --check-config
	expect_rc 1 "broken plugin $1"
	expect_err "$B/$1" "broken plugin $1 names its path"
	expect_err "$2" "broken plugin $1"
}
check_broken does-not-exist.so "file not found"
check_broken not-elf.so "not a loadable shared object"
check_broken undefined.so "undefined symbol"
check_broken no-symbol.so "does not export the entry symbol 'chat_plugin_entry'"
check_broken null-desc.so "returned no descriptor"
check_broken abi-major.so "ABI mismatch: plugin built for ABI 2.0, this program supports 1.$MINOR"
check_broken abi-minor.so "ABI mismatch: plugin built for ABI 1.$((MINOR + 1)), this program supports 1.$MINOR (same major, minor up to $MINOR)"
check_broken small-size.so "descriptor is 8 bytes"
check_broken bad-kind.so "unknown plugin kind 7"
check_broken no-ops.so "missing required field 'ops'"
check_broken ops-size.so "operations table is 4 bytes"
check_broken missing-op.so "missing required op 'read'"
check_broken no-name.so "missing required field 'name'"
check_broken bad-name.so "invalid name 'Bad Name'"
check_broken no-summary.so "missing required field 'summary'"
check_broken bad-keys.so "config key 'weird' has unknown type 99"
check_broken dup-tcp.so "duplicate transport plugin name 'tcp'"
check_broken half-session.so "has session_save but not session_load"

# Wrong kind: a cipher named where a transport is needed.
run chat-relay --config "$T/chat.ini" --set "relay.transport=$B/good-cipher.so" --check-config
expect_rc 1 "wrong kind"
expect_err "wrong kind: it is a cipher plugin, a transport plugin is needed here" "wrong kind"

# A transport given by path in chat.ini works.
run chat-relay --config "$T/chat.ini" --set "relay.transport=$CHAT_PLUGIN_DIR/transport-tcp.so" --check-config
expect_rc 0 "transport by path"

# --list-plugins on a directory holding broken plugins: lists the good ones,
# reports each broken one, exits 1.
run chat-relay --config "$T/chat.ini" --set "core.plugin_dir=$B" --list-plugins
expect_rc 1 "list broken dir"
expect_out "good-cipher" "list broken dir"
expect_out "old-cipher" "list broken dir (an ABI 1.0 plugin still loads)"
expect_err "abi-major.so: ABI mismatch" "list broken dir"
expect_err "missing-op.so: missing required op 'read'" "list broken dir"

# Failing before touching the network: a broken plugin with a listen address
# in use by nothing; the relay must exit, not listen.
run chat-relay --config "$T/chat.ini" --plugin "$B/abi-major.so" --listen 127.0.0.1:0
expect_rc 1 "broken plugin stops the relay"
if grep -q "listening on" <<<"$ERR"; then fail "relay listened despite a broken plugin"; else pass; fi

# chat-peer's run mode needs the log passphrase: without a terminal or
# --passphrase-file it says so and exits 2 before opening any socket.
run chat-peer --config "$T/chat.ini" --user zed --listen 127.0.0.1:0
expect_rc 2 "chat-peer run"
expect_err "give --passphrase-file FILE" "chat-peer run"

# ---- Which plugin files are trusted (docs/PLUGIN-ABI.md): the real file and
# every directory above it must be root's or ours and writable by neither
# group nor others (root's sticky directories, like /tmp, excepted), checked
# before anything of the plugin runs.  The marker plugin's constructor (it
# runs inside dlopen, before any check of the loader's own) appends to
# $CHAT_TEST_MARKER, so a refused plugin must leave no marker.
export CHAT_TEST_MARKER="$T/marker"
M="$B/transport-marker.so"
marker_absent() { # WHAT
	if [ -e "$CHAT_TEST_MARKER" ]; then fail "$1: the plugin's constructor ran"; rm -f "$CHAT_TEST_MARKER"; else pass; fi
}
marker_present() { # WHAT
	if [ -e "$CHAT_TEST_MARKER" ]; then pass; rm -f "$CHAT_TEST_MARKER"; else fail "$1: the plugin was not loaded"; fi
}
rm -f "$CHAT_TEST_MARKER"

# The control: from a good directory (0755, ours) it loads, and the marker shows it.
mkdir "$T/good" && chmod 755 "$T/good"
cp "$M" "$T/good/transport-marker.so" && chmod 755 "$T/good/transport-marker.so"
run chat-relay --config "$T/chat.ini" --plugin "$T/good/transport-marker.so" --check-config
expect_rc 0 "good plugin layout"
marker_present "good plugin layout"

# plugin_dir (0755) under a world-writable directory: every plugin named is
# refused, each with its own message, and nothing is loaded.
mkdir -p "$T/ww/plugins" && chmod 777 "$T/ww" && chmod 755 "$T/ww/plugins"
cp "$CHAT_PLUGIN_DIR"/*.so "$M" "$T/ww/plugins/"
run chat-relay --config "$T/chat.ini" --set "core.plugin_dir=$T/ww/plugins" --set relay.transport=marker \
	--set relay.suites=rc4dh,aescbc-hmac --check-config
expect_rc 1 "world-writable plugin_dir"
expect_err "plugin $T/ww/plugins/transport-marker.so: refused before loading: directory $T/ww is writable by its group and others (mode 0777; fix: chmod go-w $T/ww)" "world-writable plugin_dir"
expect_err "(relay.transport, --set)" "world-writable plugin_dir: which key named it"
expect_err "plugin $T/ww/plugins/cipher-rc4dh.so: refused" "world-writable plugin_dir: every failure (rc4dh)"
expect_err "plugin $T/ww/plugins/cipher-aescbc-hmac.so: refused" "world-writable plugin_dir: every failure (aescbc-hmac)"
# (on tls the test's chat.ini has a [plugin.tls] section: that file is checked too)
[ "$CHAT_TEST_TRANSPORT" = tls ] && refused=4 || refused=3
expect_err "$refused plugin file(s) refused: nothing was loaded" "world-writable plugin_dir"
marker_absent "world-writable plugin_dir"
# Outside --check-config too: the relay does not start, let alone listen.
run chat-relay --config "$T/chat.ini" --set "core.plugin_dir=$T/ww/plugins" --set relay.transport=marker \
	--listen 127.0.0.1:0
expect_rc 1 "world-writable plugin_dir, relay run"
expect_err "chmod go-w $T/ww" "world-writable plugin_dir, relay run"
if grep -q "listening on" <<<"$ERR"; then fail "relay listened with a refused plugin"; else pass; fi
marker_absent "world-writable plugin_dir, relay run"
# --list-plugins reports each file of the directory.
run chat-relay --config "$T/chat.ini" --set "core.plugin_dir=$T/ww/plugins" --list-plugins
expect_rc 1 "world-writable plugin_dir, --list-plugins"
expect_err "plugin $T/ww/plugins/transport-tcp.so: refused before loading" "world-writable plugin_dir, --list-plugins"
marker_absent "world-writable plugin_dir, --list-plugins"
# A symlink from a good directory to a file there: judged by the real file.
ln -s "$T/ww/plugins/transport-marker.so" "$T/good/link.so"
run chat-relay --config "$T/chat.ini" --plugin "$T/good/link.so" --check-config
expect_rc 1 "symlink to a refused plugin"
expect_err "plugin $T/good/link.so (which is $T/ww/plugins/transport-marker.so): refused before loading" "symlink to a refused plugin"
marker_absent "symlink to a refused plugin"
# A file writable by others, a group-writable directory (a build made with umask 002).
mkdir "$T/gw" && chmod 775 "$T/gw"
cp "$M" "$T/gw/transport-marker.so" && chmod 755 "$T/gw/transport-marker.so"
cp "$M" "$T/good/open.so" && chmod 666 "$T/good/open.so"
run chat-relay --config "$T/chat.ini" --plugin "$T/gw/transport-marker.so" --plugin "$T/good/open.so" --check-config
expect_rc 1 "group-writable directory, 0666 file"
expect_err "directory $T/gw is writable by its group (mode 0775; fix: chmod go-w $T/gw)" "group-writable directory"
expect_err "the plugin file $T/good/open.so is writable by its group and others (mode 0666; fix: chmod go-w $T/good/open.so)" "0666 plugin file"
expect_err "2 plugin file(s) refused" "group-writable directory, 0666 file"
marker_absent "group-writable directory, 0666 file"

# The finding: a plugin owned by nobody in a sticky world-writable directory,
# run by root.  Needs root (chown); the sticky directory is root's then.
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
	mkdir "$T/sticky" && chmod 1777 "$T/sticky"
	cp "$M" "$T/sticky/transport-marker.so" && chmod 755 "$T/sticky/transport-marker.so"
	chown nobody "$T/sticky/transport-marker.so"
	run chat-relay --config "$T/chat.ini" --plugin "$T/sticky/transport-marker.so" --check-config
	expect_rc 1 "plugin owned by nobody in a sticky directory"
	expect_err "the plugin file $T/sticky/transport-marker.so is owned by nobody (uid $(id -u nobody)), not by root, who runs this program (fix: chown root $T/sticky/transport-marker.so" "plugin owned by nobody"
	marker_absent "plugin owned by nobody in a sticky directory"
	run chat-relay --config "$T/chat.ini" --set "core.plugin_dir=$T/sticky" --set relay.transport=marker --check-config
	expect_rc 1 "plugin owned by nobody, by name"
	expect_err "is owned by nobody" "plugin owned by nobody, by name"
	marker_absent "plugin owned by nobody, by name"
	# The same file, root's: root's sticky directory above it is fine.
	chown root "$T/sticky/transport-marker.so"
	run chat-relay --config "$T/chat.ini" --plugin "$T/sticky/transport-marker.so" --check-config
	expect_rc 0 "root's plugin in root's sticky directory"
	marker_present "root's plugin in root's sticky directory"
else
	echo "e2e_programs: SKIP the plugin owned by nobody (needs root for chown)" >&2
fi
unset CHAT_TEST_MARKER

# ---- Files holding secrets that other users can read: a warning (the
# program still runs) naming the file and the chmod.
mkdir "$T/db" && chmod 700 "$T/db"
start_relay db1 --set "relay.database=$T/db/relay.db" || finish
kill "$RELAY_PID"; wait_exit "$RELAY_PID" 20
if grep -q "other users" "$T/db1.err"; then fail "a private database warned: $(cat "$T/db1.err")"; else pass; fi
chmod 644 "$T/db/relay.db"; chmod 755 "$T/db"
start_relay db2 --set "relay.database=$T/db/relay.db" || finish
expect_file "$T/db2.err" "relay.database: $T/db/relay.db can be read by other users (mode 0644): chmod 600 $T/db/relay.db" "world-readable database"
expect_file "$T/db2.err" "relay.database's directory: directory $T/db is open to other users (mode 0755): chmod 700 $T/db" "open database directory"
# The contact directory holds passwords.
printf '[{"username": "bob", "password": "a shared secret"}]\n' >"$T/contacts.json"
chmod 644 "$T/contacts.json"
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u carol --set "client.directory=$T/contacts.json" \
	--set client.data_dir=
expect_err "the contact directory (it holds passwords): $T/contacts.json can be read by other users (mode 0644): chmod 600 $T/contacts.json" "world-readable contact directory"
chmod 600 "$T/contacts.json"
run chat-client --config "$T/chat.ini" --connect "$RELAY_ADDR" -u carol --set "client.directory=$T/contacts.json" \
	--set client.data_dir=
if grep -q "other users" <<<"$ERR"; then fail "a private contact directory warned: $ERR"; else pass; fi
kill "$RELAY_PID"; wait_exit "$RELAY_PID" 20

# Every option that takes a value, given without one, is named in the form
# it was given (long, short), exit status 2.  The options come from each
# program's --help, which prints its option tables (core/src/program.c):
# "  -C, --connect ADDR  ..." or "      --read-log FILE ...".
declare -A want_opts=([chat-relay]=5 [chat-client]=9 [chat-peer]=9)
for prog in chat-relay chat-client chat-peer; do
	n=0
	while IFS='|' read -r short long; do
		[ -n "$long" ] || { fail "$prog --help: an option line without a name"; continue; }
		n=$((n + 1))
		run $prog "--$long"
		expect_rc 2 "$prog --$long without a value"
		expect_err "$prog: option --$long needs a value" "$prog --$long without a value"
		if [ -n "$short" ]; then
			run $prog "-$short"
			expect_rc 2 "$prog -$short without a value"
			expect_err "$prog: option -$short needs a value" "$prog -$short without a value"
		fi
		# After other options too.
		run $prog --config "$T/chat.ini" "--$long"
		expect_err "option --$long needs a value" "$prog --config F --$long"
	done < <("$CHAT_BIN/$prog" --help |
	         sed -nE 's/^ {2,}(-([A-Za-z]), )?--([a-z][a-z-]*) [A-Z].*/\2|\3/p')
	if [ "$n" -ge "${want_opts[$prog]}" ]; then pass; else
		fail "$prog --help lists $n options with a value, expected at least ${want_opts[$prog]}"; fi
done
run chat-client --conn
expect_rc 2 "prefix without a value"
expect_err "chat-client: option --connect needs a value" "prefix without a value"
run chat-client --c x
expect_rc 2 "ambiguous option"
expect_err "option --c is ambiguous (--config, --check-config, --connect)" "ambiguous option"
run chat-relay -x
expect_rc 2 "unknown short option"
expect_err "chat-relay: unknown option -x" "unknown short option"
run chat-peer --help=yes
expect_rc 2 "value to an option without one"
expect_err "chat-peer: option --help takes no value" "value to an option without one"

finish
