#!/usr/bin/env bash
# chat-relay links neither hiredis nor libpq: the relay's optional modules
# (frontends/relay/module.h) carry them, loaded only when chat.ini names what
# needs them.  Each module exports one symbol, its table.
#   relay_links.sh BIN_DIR MODULE_DIR
set -u
bin=$1 modules=$2
fail=0
deps=$(ldd "$bin/chat-relay") || { echo "FAIL: ldd $bin/chat-relay"; exit 1; }
for lib in hiredis libpq; do
	if grep -q "$lib" <<<"$deps"; then
		echo "FAIL: chat-relay links $lib:"; grep "$lib" <<<"$deps"; fail=1
	fi
done
if [ -e "$modules/cluster-redis.so" ]; then
	ldd "$modules/cluster-redis.so" | grep -q hiredis || { echo "FAIL: cluster-redis.so does not link hiredis"; fail=1; }
	exported=$(nm -D --defined-only "$modules/cluster-redis.so" | awk '$2 ~ /^[A-Z]$/ && $3 !~ /^_/ {print $3}')
	if [ "$exported" != "chat_cluster_link_module" ]; then
		echo "FAIL: cluster-redis.so should export only chat_cluster_link_module, exports: $exported"; fail=1
	fi
else
	echo "FAIL: $modules/cluster-redis.so was not built (libhiredis-dev missing?)"; fail=1
fi
[ $fail = 0 ] && echo "relay_links: chat-relay links no hiredis, cluster-redis.so exports one symbol"
exit $fail
