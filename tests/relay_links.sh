#!/usr/bin/env bash
# chat-relay links neither hiredis nor libpq: the relay's optional modules
# (frontends/relay/module.h) carry them, loaded only when chat.ini names what
# needs them.  Each module links its library and exports one symbol, its table.
#   relay_links.sh BIN_DIR MODULE_DIR
set -uo pipefail
bin=$1 modules=$2
fail=0
# (ldd's output read whole: grep -q closing a pipe early fails it under pipefail)
deps=$(ldd "$bin/chat-relay") || { echo "FAIL: ldd $bin/chat-relay"; exit 1; }
for lib in hiredis libpq; do
	if grep -q "$lib" <<<"$deps"; then
		echo "FAIL: chat-relay links $lib:"; grep "$lib" <<<"$deps"; fail=1
	fi
done
# module:library:symbol
for m in cluster-redis:hiredis:chat_cluster_link_module store-postgresql:libpq:chat_store_backend_entry; do
	IFS=: read -r name lib sym <<<"$m"
	so=$modules/$name.so
	if [ ! -e "$so" ]; then
		echo "FAIL: $so was not built (lib$lib-dev missing? .ci/bootstrap installs it)"; fail=1
		continue
	fi
	mdeps=$(ldd "$so") || { echo "FAIL: ldd $so"; fail=1; continue; }
	grep -q "$lib" <<<"$mdeps" || { echo "FAIL: $name.so does not link $lib"; fail=1; }
	exported=$(nm -D --defined-only "$so" | awk '$2 ~ /^[A-Z]$/ && $3 !~ /^_/ {print $3}')
	if [ "$exported" != "$sym" ]; then
		echo "FAIL: $name.so should export only $sym, exports: $exported"; fail=1
	fi
done
[ $fail = 0 ] && echo "relay_links: chat-relay links neither hiredis nor libpq; each module links its library and exports one symbol"
exit $fail
