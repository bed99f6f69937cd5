#!/bin/sh
# The demo on built-in defaults. Two brokers joined by loopback TCP: B keeps a pool of
# connections to A. An app on A (examples/wh-echo) listens on service "demo"; an app on B
# (examples/wh-send) opens 10 streams to a/demo through B, sends 1 MiB on each and checks
# every byte that comes back. Then the same between two apps on one broker ("local"), and a
# peer speaking the reference protocol against A; wormhole-ctl shows B's connections and A's
# status. Run from the build directory.
set -eu
build=${1:-.}
dir=$(mktemp -d /tmp/wormhole-demo.XXXXXX)
pids=""
trap 'kill $pids 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT INT TERM

wait_file() { for _ in $(seq 200); do [ -s "$1" ] && return 0; sleep 0.05; done; return 1; }

"$build/broker/wormhole-broker" --listen 127.0.0.1:0 --port-file "$dir/a.port" \
	--socket "$dir/a.sock" --control-socket "$dir/a.control" --log-level info 2>"$dir/a.log" &
pids="$pids $!"
wait_file "$dir/a.port"
port_a=$(cat "$dir/a.port")
echo "demo: broker A: peers on 127.0.0.1:$port_a, apps on $dir/a.sock"

"$build/broker/wormhole-broker" --listen 127.0.0.1:0 --port-file "$dir/b.port" --socket "$dir/b.sock" \
	--control-socket "$dir/b.control" --peer "a=127.0.0.1:$port_a" --log-level info 2>"$dir/b.log" &
pids="$pids $!"
wait_file "$dir/b.port"
echo "demo: broker B: apps on $dir/b.sock, peer a = broker A"

"$build/examples/wh-echo" -s "$dir/a.sock" -n 10 demo >"$dir/echo-a.log" &
pids="$pids $!"
wait_file "$dir/echo-a.log"
echo "demo: app on A: $(head -1 "$dir/echo-a.log")"
"$build/examples/wh-send" -s "$dir/b.sock" -n 10 -b 1048576 a demo
echo "demo: wormhole-ctl conns on B (its connection to A carried the 10 streams):"
"$build/ctl/wormhole-ctl" -s "$dir/b.control" conns | sed 's/^/  /'

"$build/examples/wh-echo" -s "$dir/b.sock" -n 10 demo-local >"$dir/echo-b.log" &
pids="$pids $!"
wait_file "$dir/echo-b.log"
echo "demo: same-host: an app on B listens on demo-local"
"$build/examples/wh-send" -s "$dir/b.sock" -n 10 -b 1048576 local demo-local

"$build/tests/refpeer" dial 127.0.0.1 "$port_a" 10 1048576
echo "demo: wormhole-ctl status on A:"
"$build/ctl/wormhole-ctl" -s "$dir/a.control" status | sed 's/^/  /'

kill -TERM $pids 2>/dev/null || true
wait 2>/dev/null || true
pids=""
echo "demo: brokers stopped in order; the last lines of their logs:"
sed 's/^/  A: /' "$dir/a.log" | tail -4
sed 's/^/  B: /' "$dir/b.log" | tail -4
