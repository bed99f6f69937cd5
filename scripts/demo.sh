#!/bin/sh
# The demo on built-in defaults: two brokers joined by loopback TCP (broker B keeps a pool to
# broker A), then a peer speaking the reference protocol opens 10 streams through broker A's
# default service (echo) and checks every byte that comes back. Run from the build directory.
set -eu
build=${1:-.}
dir=$(mktemp -d /tmp/wormhole-demo.XXXXXX)
trap 'kill $a $b 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT INT TERM

"$build/broker/wormhole-broker" --listen 127.0.0.1:0 --port-file "$dir/a.port" \
	--socket "$dir/a.sock" --log-level info 2>"$dir/a.log" &
a=$!
for _ in $(seq 100); do [ -s "$dir/a.port" ] && break; sleep 0.05; done
port_a=$(cat "$dir/a.port")
echo "demo: broker A listening on 127.0.0.1:$port_a"

"$build/broker/wormhole-broker" --listen 127.0.0.1:0 --port-file "$dir/b.port" --socket "$dir/b.sock" \
	--peer "a=127.0.0.1:$port_a" --pool-min 2 --log-level info 2>"$dir/b.log" &
b=$!
for _ in $(seq 100); do grep -c dialled "$dir/b.log" 2>/dev/null | grep -q 2 && break; sleep 0.05; done
echo "demo: broker B keeps a pool of $(grep -c dialled "$dir/b.log") connections to A"

"$build/tests/refpeer" dial 127.0.0.1 "$port_a" 10 1048576
kill -TERM $a $b
wait $a $b 2>/dev/null || true
echo "demo: both brokers stopped in order; their logs:"
sed 's/^/  A: /' "$dir/a.log" | tail -5
sed 's/^/  B: /' "$dir/b.log" | tail -5
