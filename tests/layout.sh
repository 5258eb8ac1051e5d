#!/usr/bin/env bash
# The layers depend one way (docs/ARCHITECTURE.md): plugins see only the
# public ABI (core/include) and their own folder; each program's folder sees
# the core and itself, never another program; the core sees nothing of a
# program or a plugin.  plugins/common/ is not a plugin: it holds sources
# that several plugins compile into themselves (plugin_util.c in all of them,
# the TCP socket code of transport-tcp and transport-tls), and every plugin
# may include it.  The build already enforces most of it through include
# paths; this also catches a relative path ("../../frontends/...").
#   tests/layout.sh SOURCE_DIR
set -u
src=${1:?usage: layout.sh SOURCE_DIR}
cd "$src" || exit 1
fail=0
checked=0

# includes FILE: every quoted #include of FILE, one per line
includes() { sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$1"; }

# check FILE ALLOWED_DIR...: each quoted include must be a file in one of the
# allowed directories (or the generated config the build makes)
check() {
	local file=$1 inc dir ok
	shift
	while read -r inc; do
		[ -n "$inc" ] || continue
		checked=$((checked + 1))
		ok=0
		case $inc in */..*|../*|/*) ;; *)
			for dir in "$@"; do
				[ -f "$dir/$inc" ] && ok=1 && break
			done ;;
		esac
		if [ $ok -eq 0 ]; then
			echo "layout: $file includes \"$inc\", which is outside what it may see: $*" >&2
			fail=1
		fi
	done < <(includes "$file")
}

for f in core/src/*.[ch] core/include/chat/*.h; do
	check "$f" core/src core/include "$(dirname "$f")"
done
for d in frontends/*/; do
	d=${d%/}
	for f in "$d"/*.[ch]; do
		check "$f" "$d" core/src core/include
	done
done
for d in plugins/*/; do
	d=${d%/}
	for f in "$d"/*.[ch]; do
		check "$f" "$d" core/include plugins/common
	done
done
if grep -rn 'frontends/' core --include='*.[ch]' | grep -q '#[[:space:]]*include'; then
	echo "layout: the core names frontends/ in an #include" >&2
	fail=1
fi
echo "layout: $checked includes checked"
exit $fail
