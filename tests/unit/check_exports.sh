#!/bin/sh
# The client library exports exactly its public wh_ symbols: internal modules stay hidden.
set -eu
lib="${top_builddir:-.}/libclient/.libs/libwormholeclient.so"
[ -f "$lib" ] || { echo "missing $lib"; exit 1; }
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort)
echo "exported symbols:"; echo "$exported" | sed 's/^/  /'
bad=$(echo "$exported" | grep -v '^wh_' || true)
if [ -n "$bad" ]; then
	echo "symbols without the wh_ prefix are exported:"; echo "$bad"; exit 1
fi
for required in wh_strerror wh_error_name wh_version; do
	echo "$exported" | grep -qx "$required" || { echo "missing export: $required"; exit 1; }
done
