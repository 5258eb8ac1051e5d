# store_module: chat-relay links no libpq (only the module
# store-postgresql.so does), and the module exports one symbol, its entry.
#   store_module.sh CHAT_RELAY MODULE
set -uo pipefail
relay=$1 module=$2
rc=0
if ldd "$relay" | grep -q libpq; then
	echo "FAIL: $relay links libpq: $(ldd "$relay" | grep libpq)" >&2
	rc=1
fi
if ! ldd "$module" | grep -q libpq; then
	echo "FAIL: $module does not link libpq" >&2
	rc=1
fi
exports=$(nm -D --defined-only "$module" | awk '$2 ~ /^[TDBR]$/ { print $3 }' | sort | tr '\n' ' ')
if [ "$exports" != "chat_store_backend_entry " ]; then
	echo "FAIL: $module exports '$exports', not only chat_store_backend_entry" >&2
	rc=1
fi
[ $rc = 0 ] && echo "store_module: chat-relay without libpq, the module exports its entry only"
exit $rc
