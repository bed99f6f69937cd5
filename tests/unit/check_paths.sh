#!/bin/sh
# The broker reads the config file under the sysconfdir configure was last given, not one from
# an earlier configure (the paths come from wh_paths.h, which depends on config.status).
set -eu
broker="$top_builddir/broker/wormhole-broker"
want="$wh_sysconfdir/wormhole/broker.conf"
if ! grep -q -a -F -- "$want" "$broker"; then
	echo "check_paths: $broker does not read $want (compiled with:" \
		"$(grep -a -o -E '[^[:cntrl:]]*/wormhole/broker\.conf' "$broker" | head -1))" >&2
	exit 1
fi
hdr="$top_builddir/wh_paths.h"
grep -q -F "#define WH_SYSCONFDIR \"$wh_sysconfdir\"" "$hdr" || {
	echo "check_paths: $hdr does not say $wh_sysconfdir" >&2; exit 1; }
echo "check_paths: the broker reads $want"
