#!/bin/sh
# The monitoring kit (contrib/monitoring): every metric the alert rules and the dashboard name
# is a family a running broker exports at metrics-listen, rate() and increase() are taken of
# counters only, the dashboard is JSON, and Prometheus's promtool accepts the scrape config and
# the rules and passes the rules' unit tests. Without promtool (Debian's prometheus package;
# CI installs it) the broker half still runs, then the test exits 77.
set -eu
kit="$top_srcdir/contrib/monitoring"
broker="$top_builddir/broker/wormhole-broker"
ctl="$top_builddir/ctl/wormhole-ctl"
fail() { echo "check_monitoring: $*" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "check_monitoring: no python3 here: skipped" >&2; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wh-monitoring.XXXXXX")
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

python3 -m json.tool "$kit/wormhole-dashboard.json" >/dev/null || fail "wormhole-dashboard.json is not JSON"

# a broker with a peer (nowhere to be reached: the peer families need a row only for samples,
# and the check is of families) serving /metrics on an ephemeral port
"$broker" --config /dev/null --listen 127.0.0.1:0 --socket "$tmp/b.sock" --metrics-listen 127.0.0.1:0 \
	--peer far=127.0.0.1:1 >"$tmp/log" 2>&1 &
pid=$!
i=0
while [ ! -S "$tmp/b.control.sock" ]; do
	i=$((i + 1))
	[ $i -lt 300 ] || { cat "$tmp/log" >&2; fail "the broker made no control socket in 30 s"; }
	kill -0 "$pid" 2>/dev/null || { cat "$tmp/log" >&2; fail "the broker exited"; }
	sleep 0.1
done
"$ctl" -s "$tmp/b.control.sock" status --json >"$tmp/status.json" || fail "wormhole-ctl status --json"
address=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["status"][0]["metrics_listen"])' "$tmp/status.json")
case $address in 127.0.0.1:[1-9]*) ;; *) fail "status says metrics_listen '$address'" ;; esac
python3 -c 'import sys, urllib.request
with urllib.request.urlopen("http://" + sys.argv[1] + "/metrics", timeout=10) as r:
    sys.stdout.buffer.write(r.read())' "$address" >"$tmp/metrics" || fail "GET http://$address/metrics"
# the families and their types: "NAME TYPE" a line
sed -n 's/^# TYPE \([a-zA-Z_:][a-zA-Z0-9_:]*\) \([a-z]*\)$/\1 \2/p' "$tmp/metrics" | sort -u >"$tmp/families"
[ "$(wc -l <"$tmp/families")" -gt 50 ] || fail "only $(wc -l <"$tmp/families") families at /metrics"

# every wormhole_* name in the rules and the dashboard is a family there
bad=0
for f in wormhole-alerts.yml wormhole-dashboard.json; do
	for name in $(grep -o 'wormhole_[a-zA-Z0-9_]*' "$kit/$f" | sort -u); do
		grep -q "^$name " "$tmp/families" || { echo "check_monitoring: $f uses $name, which the broker does not export" >&2; bad=1; }
	done
	# rate(), irate() and increase() of a gauge mean nothing; a counter shown raw is rarely meant
	for name in $(grep -o -E '(rate|increase)\(wormhole_[a-zA-Z0-9_]*' "$kit/$f" | sed 's/.*(//' | sort -u); do
		grep -q "^$name counter$" "$tmp/families" || { echo "check_monitoring: $f takes a rate of $name, not a counter" >&2; bad=1; }
	done
done
[ $bad = 0 ] || { echo "check_monitoring: the families the broker exports:" >&2; cat "$tmp/families" >&2; exit 1; }
uses=$(cat "$kit/wormhole-alerts.yml" "$kit/wormhole-dashboard.json" | grep -o 'wormhole_[a-zA-Z0-9_]*' | sort -u | wc -l)
echo "check_monitoring: the $uses families the rules and the dashboard use are all at a broker's /metrics"

command -v promtool >/dev/null 2>&1 || { echo "check_monitoring: no promtool here (Debian: prometheus): skipped the rest" >&2; exit 77; }
promtool check config "$kit/prometheus.yml" >"$tmp/promtool.log" 2>&1 || { cat "$tmp/promtool.log" >&2; fail "promtool check config"; }
promtool check rules "$kit/wormhole-alerts.yml" >"$tmp/promtool.log" 2>&1 || { cat "$tmp/promtool.log" >&2; fail "promtool check rules"; }
(cd "$kit" && promtool test rules wormhole-alerts.test.yml) >"$tmp/promtool.log" 2>&1 ||
	{ cat "$tmp/promtool.log" >&2; fail "promtool test rules"; }
echo "check_monitoring: promtool accepts prometheus.yml and wormhole-alerts.yml; the rules' unit tests pass"
