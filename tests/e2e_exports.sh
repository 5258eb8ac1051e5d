#!/usr/bin/env bash
# Each plugin exports exactly one symbol: its entry accessor (nm -D).
. "$(dirname "$0")/lib-e2e.sh"
n=0
for so in "$CHAT_PLUGIN_DIR"/*.so; do
	[ -e "$so" ] || continue
	n=$((n + 1))
	syms=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort -u)
	if [ "$syms" = "chat_plugin_entry" ]; then pass; else fail "$so exports: $(echo $syms)"; fi
done
if [ "$n" -ge 1 ]; then pass; else fail "no plugin found in $CHAT_PLUGIN_DIR"; fi
finish
