#!/bin/sh
# Every function the client library exports has a section 3 page, and every page says what the
# header says: the pages are made from the header's doc comments (scripts/make-man3.py), so
# making them again must give the committed ones (and the list Makefile.am installs).
set -eu
src="${top_srcdir:-.}"
lib="${top_builddir:-.}/libclient/.libs/libwormholeclient.so"
[ -f "$lib" ] || { echo "check_man3: missing $lib"; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "check_man3: no python3, skipped"; exit 77; }
fresh=$(mktemp -d "${TMPDIR:-/tmp}/wh-man3.XXXXXX")
trap 'rm -rf "$fresh"' EXIT
python3 "$src/scripts/make-man3.py" --out "$fresh" || { echo "check_man3: make-man3.py failed (above)"; exit 1; }
status=0
# the committed pages and list are what the header says now
for made in "$fresh"/*; do
	name=$(basename "$made")
	if ! cmp -s "$made" "$src/docs/man/$name"; then
		echo "check_man3: docs/man/$name differs from the header's doc comments (run make man3):"
		diff -u "$src/docs/man/$name" "$made" 2>&1 | head -20 || true
		status=1
	fi
done
# no page of a function the header no longer has
for page in "$src"/docs/man/wh_*.3; do
	[ -f "$fresh/$(basename "$page")" ] || { echo "check_man3: $page documents no function of the header"; status=1; }
done
# every exported function has its page, and it names the function in NAME (whatis, man -k)
for symbol in $(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort); do
	page="$src/docs/man/$symbol.3"
	if [ ! -f "$page" ]; then
		echo "check_man3: $symbol is exported and has no page ($page)"
		status=1
		continue
	fi
	target=$(sed -n 's|^\.so man3/\(.*\)$|\1|p' "$page")
	[ -z "$target" ] || page="$src/docs/man/$target"
	sed -n '/^\.SH NAME/{n;p;}' "$page" | grep -q "\(^\|, \)$symbol\(,\| \\\\-\)" ||
		{ echo "check_man3: $page does not name $symbol"; status=1; }
	grep -q "^\.B .*[ *]$symbol(" "$page" || { echo "check_man3: $page has no prototype of $symbol"; status=1; }
done
# and make install installs them (Makefile.am takes the list made above)
grep -q '^include $(top_srcdir)/docs/man/man3.am$' "$src/Makefile.am" &&
	grep -q '^dist_man_MANS = .*\\$' "$src/Makefile.am" && grep -q '$(man3_pages)' "$src/Makefile.am" ||
	{ echo "check_man3: Makefile.am does not install docs/man/man3.am's pages"; status=1; }
[ "$status" = 0 ] && echo "check_man3: $(ls "$fresh" | grep -c '\.3$') pages agree with the header"
exit "$status"
