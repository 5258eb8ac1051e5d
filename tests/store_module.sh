# store_module: chat-relay links no libpq (only the module
# store-postgresql.so does), and the module exports one symbol, its entry.
#   store_module.sh CHAT_RELAY MODULE
set -uo pipefail
relay=$1 module=$2
rc=0
# ldd's output read whole: grep -q closing the pipe early fails it under pipefail
relay_libs=$(ldd "$relay") || { echo "FAIL: ldd $relay" >&2; exit 1; }
module_libs=$(ldd "$module") || { echo "FAIL: ldd $module" >&2; exit 1; }
if grep -q libpq <<<"$relay_libs"; then
	echo "FAIL: $relay links libpq: $(grep libpq <<<"$relay_libs")" >&2
	rc=1
fi
if ! grep -q libpq <<<"$module_libs"; then
	echo "FAIL: $module does not link libpq" >&2
	rc=1
fi
syms=$(nm -D --defined-only "$module") || { echo "FAIL: nm -D $module" >&2; exit 1; }
exports=$(awk '$2 ~ /^[TDBR]$/ { print $3 }' <<<"$syms" | sort | tr '\n' ' ')
if [ "$exports" != "chat_store_backend_entry " ]; then
	echo "FAIL: $module exports '$exports', not only chat_store_backend_entry" >&2
	rc=1
fi
[ $rc = 0 ] && echo "store_module: chat-relay without libpq, the module exports its entry only"
exit $rc
