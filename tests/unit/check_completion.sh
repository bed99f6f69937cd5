#!/bin/sh
# The bash completions: wormhole-broker's is the one its option table makes (regenerate with
# completions/make-broker-completion.sh broker/wormhole-broker > completions/wormhole-broker),
# and both complete what they should, wormhole-ctl's with peer names from a running broker.
set -eu
command -v bash >/dev/null 2>&1 || { echo "check_completion: no bash here: skipped" >&2; exit 77; }
broker="$top_builddir/broker/wormhole-broker"
ctl="$top_builddir/ctl/wormhole-ctl"
want=$(sh "$top_srcdir/completions/make-broker-completion.sh" "$broker")
have=$(cat "$top_srcdir/completions/wormhole-broker")
if [ "$want" != "$have" ]; then
	echo "check_completion: completions/wormhole-broker and the option table differ:" >&2
	printf '%s\n' "$want" | diff -u "$top_srcdir/completions/wormhole-broker" - >&2 || true
	exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wh-compl.XXXXXX")
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
# a broker with two peers (nowhere to be reached: only their names are asked for)
"$broker" --config /dev/null --listen none --socket none --control-socket "$tmp/ctl" \
	--peer alpha=127.0.0.1:1 --peer beta=127.0.0.1:1 >"$tmp/log" 2>&1 &
pid=$!
i=0
while [ ! -S "$tmp/ctl" ]; do
	i=$((i + 1))
	[ $i -lt 300 ] || { echo "check_completion: the broker made no control socket:" >&2; cat "$tmp/log" >&2; exit 1; }
	kill -0 "$pid" 2>/dev/null || { echo "check_completion: the broker exited:" >&2; cat "$tmp/log" >&2; exit 1; }
	sleep 0.1
done
# complete WORDS... (the last is the one being completed) with the function of the first word
cat >"$tmp/complete.bash" <<EOS
source "$top_srcdir/completions/wormhole-broker"
source "$top_srcdir/completions/wormhole-ctl"
complete_words() {
	local fn=\$1; shift
	COMP_WORDS=("\$@"); COMP_CWORD=\$((\$# - 1)); COMPREPLY=()
	"\$fn"
	printf '%s\n' "\${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ \$//'
}
EOS
check() { # expected, function, words...
	expected=$1; shift
	got=$(bash -c '. "$0"; complete_words "$@"' "$tmp/complete.bash" "$@")
	if [ "$got" != "$expected" ]; then
		echo "check_completion: '$*' gave '$got', not '$expected'" >&2
		exit 1
	fi
}
check "--tls-ca --tls-cert --tls-key --tls-name" _wormhole_broker wormhole-broker --tls-
check "warn" _wormhole_broker wormhole-broker --log-level w
check "no yes" _wormhole_broker wormhole-broker --plaintext ""
check "$tmp/log" _wormhole_broker wormhole-broker --config="$tmp/l"
check "$tmp/log" _wormhole_broker wormhole-broker --config = "$tmp/l"
check "" _wormhole_broker wormhole-broker --budget ""
check "status streams" _wormhole_ctl "$ctl" st
check "--json" _wormhole_ctl "$ctl" --js
check "config conns" _wormhole_ctl "$ctl" watch co
check "$tmp/log" _wormhole_ctl "$ctl" --socket = "$tmp/l"
check "alpha" _wormhole_ctl "$ctl" --socket = "$tmp/ctl" --json warm-peer al
check "alpha beta" _wormhole_ctl "$ctl" -s "$tmp/ctl" drain-peer ""
check "beta" _wormhole_ctl "$ctl" --socket "$tmp/ctl" warm-peer b
check "alpha" _wormhole_ctl "$ctl" -s "$tmp/ctl" streams --peer a
check "debug" _wormhole_ctl "$ctl" log-level d
check "" _wormhole_ctl "$ctl" -s "$tmp/ctl" close-stream ""
# stream names as CONN/STREAM from the streams view's JSON (a stand-in for a busy broker)
cat >"$tmp/fake-ctl" <<EOS
#!/bin/sh
case "\$*" in
*--help*) exec "$ctl" --help ;;
*streams*) printf '{\n"streams": [\n  {"conn": 1, "stream": 7, "peer": "a"},\n  {"conn": 12, "stream": 3, "peer": "b"}\n]\n}\n' ;;
esac
EOS
chmod +x "$tmp/fake-ctl"
check "1/7 12/3" _wormhole_ctl "$tmp/fake-ctl" close-stream ""
check "12/3" _wormhole_ctl "$tmp/fake-ctl" close-stream 12
echo "check_completion: wormhole-broker's completion matches its option table; both complete"
