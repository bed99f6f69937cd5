#!/bin/sh
# The man page's option list is made from the broker's option table: they must say the same.
# (Regenerate with: WORMHOLE_MAN_OPTIONS=1 broker/wormhole-broker, between the marks.)
set -eu
page="$top_srcdir/docs/man/wormhole-broker.8"
want=$(WORMHOLE_MAN_OPTIONS=1 "$top_builddir/broker/wormhole-broker")
have=$(sed -n '/^\.\\" options-begin$/,/^\.\\" options-end$/p' "$page" | sed '1d;$d')
if [ "$want" != "$have" ]; then
	echo "check_man: docs/man/wormhole-broker.8 and the option table differ:" >&2
	printf '%s\n' "$want" > "${TMPDIR:-/tmp}/wh-man-want.$$"
	printf '%s\n' "$have" > "${TMPDIR:-/tmp}/wh-man-have.$$"
	diff -u "${TMPDIR:-/tmp}/wh-man-have.$$" "${TMPDIR:-/tmp}/wh-man-want.$$" >&2 || true
	rm -f "${TMPDIR:-/tmp}/wh-man-want.$$" "${TMPDIR:-/tmp}/wh-man-have.$$"
	exit 1
fi
# every option is in the config file's page too (those that can be set there)
conf="$top_srcdir/docs/man/wormhole-broker.conf.5"
for name in $(WORMHOLE_MAN_OPTIONS=1 "$top_builddir/broker/wormhole-broker" | sed -n 's/.*\\-\\-\([a-z\\-]*\).*/\1/p' | sed 's/\\-/-/g'); do
	case "$name" in config|check-config|help|version|peer) continue ;; esac
	grep -q -- "$(printf '%s' "$name" | sed 's/-/\\\\-/g')" "$conf" || { echo "check_man: $name is not in wormhole-broker.conf(5)" >&2; exit 1; }
done
echo "check_man: the man pages and the option table agree"
