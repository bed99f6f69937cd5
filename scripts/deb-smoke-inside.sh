#!/bin/sh
# Run by scripts/deb-smoke.sh inside a fresh Debian 12 root with the packages installed: what an
# admin and an app developer do first, with the installed files only. Cleans up what it made
# (certificates, B's config, run directories) so that the purge can be checked afterwards.
set -eu
say() { printf 'deb-smoke: [root] %s\n' "$*"; }
fail() { printf 'deb-smoke: [root] FAILED: %s\n' "$*" >&2; for l in /tmp/a.log /tmp/b.log; do
	[ -f $l ] && { echo "---- $l" >&2; cat $l >&2; }; done; exit 1; }
pids=""
trap 'for p in $pids; do kill "$p" 2>/dev/null || true; done' EXIT

# waits up to 10 s for a socket
wait_socket() {
	i=0
	while [ ! -S "$1" ]; do
		i=$((i + 1))
		[ $i -le 100 ] || fail "no socket $1 after 10 s"
		sleep 0.1
	done
}

say "installed: $(dpkg-query -W -f '${Package} ${Version}, ' wormhole-broker wormhole-ctl libwormholeclient0 libwormholeclient-dev)"
say "conffiles: $(dpkg-query -W -f '${Conffiles}' wormhole-broker | awk 'NF {print $1}' | tr '\n' ' ')"
out=$(wormhole-broker --check-config 2>&1) || fail "wormhole-broker --check-config: $out"
say "wormhole-broker --check-config on /etc/wormhole/broker.conf: exit 0 ${out:+($out)}"

# certificates for both brokers, readable by the service's group
wormhole-make-certs /etc/wormhole/pki a b --group wormhole >/dev/null
for k in a b; do
	m=$(stat -c '%a %U:%G' /etc/wormhole/pki/$k.key)
	[ "$m" = "640 root:wormhole" ] || fail "pki/$k.key is $m, not 640 root:wormhole"
done
say "wormhole-make-certs --group wormhole: $(stat -c '%n %a %U:%G' /etc/wormhole/pki/a.key /etc/wormhole/pki/ca.key | tr '\n' ' ')"

# broker B's config: a copy of the installed one, its own ports and sockets, peer a
cp /etc/wormhole/broker.conf /etc/wormhole/b.conf
sed -i -e 's|^listen = .*|listen = 127.0.0.1:7421|' \
	-e 's|^socket = .*|socket = /run/wormhole-b/broker.sock\ncontrol-socket = /run/wormhole-b/control.sock|' \
	-e 's|^#tls-cert = .*|tls-cert = /etc/wormhole/pki/b.pem|' -e 's|^#tls-key = .*|tls-key = /etc/wormhole/pki/b.key|' \
	-e 's|^#tls-ca = .*|tls-ca = /etc/wormhole/pki/ca.pem|' /etc/wormhole/b.conf
printf '\n[peer a]\naddress = 127.0.0.1:7420\n' >>/etc/wormhole/b.conf
# broker A: the installed config, with the certificate lines an admin uncomments
cp /etc/wormhole/broker.conf /tmp/broker.conf.installed
sed -i -e 's|^#tls-cert = .*|tls-cert = /etc/wormhole/pki/a.pem|' -e 's|^#tls-key = .*|tls-key = /etc/wormhole/pki/a.key|' \
	-e 's|^#tls-ca = .*|tls-ca = /etc/wormhole/pki/ca.pem|' /etc/wormhole/broker.conf
for c in broker b; do
	out=$(wormhole-broker --check-config --config /etc/wormhole/$c.conf 2>&1) ||
		fail "--check-config --config /etc/wormhole/$c.conf: $out"
done

# as the unit runs it: user wormhole, /run/wormhole its runtime directory
install -d -o wormhole -g wormhole -m 0750 /run/wormhole /run/wormhole-b
setpriv --reuid=wormhole --regid=wormhole --init-groups wormhole-broker >/tmp/a.log 2>&1 &
pids="$pids $!"
setpriv --reuid=wormhole --regid=wormhole --init-groups wormhole-broker --config /etc/wormhole/b.conf >/tmp/b.log 2>&1 &
pids="$pids $!"
wait_socket /run/wormhole/broker.sock
wait_socket /run/wormhole-b/broker.sock
say "brokers A (/etc/wormhole/broker.conf) and B (/etc/wormhole/b.conf) run as user $(stat -c %U "/proc/${pids##* }")"

# an app built against the installed -dev package, run against the installed library
cat >/tmp/smoke.c <<'EOF'
#include <stdio.h>
#include <string.h>
#include <wormhole/wormhole.h>
#include <wormhole/version.h>

/* Opens a stream to peer a's echo service through broker B, sends 256 KiB and checks every
 * byte that comes back. */
int main(void)
{
	static unsigned char out[256 * 1024], in[sizeof out];
	char why[WH_DETAIL_MAX];
	wh_client *client;
	wh_stream *stream;
	for (size_t i = 0; i < sizeof out; i++)
		out[i] = (unsigned char)(i * 7 + i / 251);
	if (wh_client_attach_detail(NULL, &client, why, sizeof why) != WH_OK) {
		fprintf(stderr, "attach: %s\n", why);
		return 1;
	}
	int rc = wh_open(client, "a", "echo", 10000, &stream);
	if (rc != WH_OK) {
		fprintf(stderr, "open a/echo: %s: %s\n", wh_strerror(rc), wh_client_errmsg(client));
		return 1;
	}
	if (wh_write(stream, out, sizeof out) != (long)sizeof out || wh_shutdown(stream) != WH_OK) {
		fprintf(stderr, "write failed\n");
		return 1;
	}
	size_t got = 0;
	for (;;) {
		long n = wh_read(stream, in + got, sizeof in - got);
		if (n < 0) {
			fprintf(stderr, "read: %s\n", wh_strerror((int)n));
			return 1;
		}
		if (n == 0 || (got += (size_t)n) == sizeof in)
			break;
	}
	if (got != sizeof out || memcmp(in, out, sizeof out) != 0) {
		fprintf(stderr, "echo: %zu bytes back, or not the same\n", got);
		return 1;
	}
	printf("stream b -> a/echo: %zu bytes sent and checked, library %s\n", got, wh_version());
	wh_close(stream);
	wh_client_detach(client);
	return 0;
}
EOF
# shellcheck disable=SC2046
cc -o /tmp/smoke /tmp/smoke.c $(pkg-config --cflags --libs wormholeclient) || fail "building against the -dev package"
say "cc smoke.c \$(pkg-config --cflags --libs wormholeclient): $(pkg-config --libs wormholeclient); linked: $(ldd /tmp/smoke | sed -n 's/.*libwormholeclient.so.0 => \([^ ]*\).*/\1/p')"
out=$(WORMHOLE_SOCKET=/run/wormhole-b/broker.sock /tmp/smoke 2>&1) || fail "the stream: $out"
say "$out"

wormhole-ctl status >/tmp/status-a || fail "wormhole-ctl status (A, the default socket)"
wormhole-ctl -s /run/wormhole-b/control.sock status >/tmp/status-b || fail "wormhole-ctl status (B)"
wormhole-ctl -s /run/wormhole-b/control.sock peers >/tmp/peers-b || fail "wormhole-ctl peers (B)"
say "wormhole-ctl status (A):"
sed 's/^/    /' /tmp/status-a | head -12
say "wormhole-ctl -s /run/wormhole-b/control.sock peers:"
sed 's/^/    /' /tmp/peers-b
grep -q '^a .* up ' /tmp/peers-b || fail "B does not show peer a up"

# the installed completions, where bash-completion looks, naming B's peer
comp=/usr/share/bash-completion/completions
got=$(bash -c '. "$0/wormhole-ctl"; COMP_WORDS=(wormhole-ctl -s /run/wormhole-b/control.sock drain-peer ""); COMP_CWORD=4
	_wormhole_ctl; echo "${COMPREPLY[@]}"' "$comp")
[ "$got" = a ] || fail "completing drain-peer on B gave '$got', not 'a'"
got=$(bash -c '. "$0/wormhole-broker"; COMP_WORDS=(wormhole-broker --check-c); COMP_CWORD=1
	_wormhole_broker; echo "${COMPREPLY[@]}"' "$comp")
[ "$got" = --check-config ] || fail "completing wormhole-broker --check-c gave '$got'"
say "bash completion from $comp: 'wormhole-ctl -s B drain-peer <TAB>' offers a, 'wormhole-broker --check-c<TAB>' --check-config"

for p in $pids; do kill -TERM "$p"; done
for p in $pids; do wait "$p" || fail "a broker exited with $? on SIGTERM"; done
pids=""
say "both brokers drained and exited 0 on SIGTERM"

# leave only what the packages put here
mv /tmp/broker.conf.installed /etc/wormhole/broker.conf
rm -rf /etc/wormhole/pki /etc/wormhole/b.conf /run/wormhole /run/wormhole-b /tmp/smoke /tmp/smoke.c \
	/tmp/a.log /tmp/b.log /tmp/status-a /tmp/status-b /tmp/peers-b
