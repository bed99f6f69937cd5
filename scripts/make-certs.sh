#!/bin/sh
# Makes a CA and one certificate per broker name for TLS between brokers, with the openssl
# command: DIR/ca.pem (give it to every broker as tls-ca), DIR/NAME.pem and DIR/NAME.key
# (that broker's tls-cert and tls-key). The certificate names the broker in its subject
# alternative name (DNS:NAME), which is what a peer checks: a broker dialling [peer NAME]
# expects the name NAME (or the peer's tls-name). Keys are EC P-256; the CA key stays in
# DIR/ca.key: keep it off the brokers.
#
#   wormhole-make-certs DIR NAME... [--group GROUP] [--days N] [--expired NAME]
#
# (installed as wormhole-make-certs; scripts/make-certs.sh in the source tree.)
# Keys are mode 0600, owned by whoever runs it. --group GROUP gives the brokers' keys (not the
# CA's) to GROUP with mode 0640, so that a broker running as a member of GROUP may read them:
# `--group wormhole` for the systemd service. --expired NAME makes NAME's certificate one that
# expired yesterday (for tests).
set -eu
version="(source tree)" # the package's version once installed (the install rule sets it)
usage() {
	echo "usage: ${0##*/} DIR NAME... [--group GROUP] [--days N] [--expired NAME]" >&2
	exit 2
}
case ${1:-} in
-h|--help) echo "usage: ${0##*/} DIR NAME... [--group GROUP] [--days N] [--expired NAME]"; exit 0 ;;
-V|--version) echo "wormhole-make-certs $version"; exit 0 ;;
esac
[ $# -ge 2 ] || usage
dir=$1
shift
days=825
expired=""
group=""
names=""
while [ $# -gt 0 ]; do
	case $1 in
	--days|--expired|--group) [ $# -ge 2 ] || usage ;;
	esac
	case $1 in
	--days) days=$2; shift 2 ;;
	--expired) expired=$2; names="$names $2"; shift 2 ;;
	--group) group=$2; shift 2 ;;
	-*) echo "${0##*/}: unknown option $1" >&2; usage ;;
	*) names="$names $1"; shift ;;
	esac
done
[ -n "$names" ] || usage
if [ -n "$group" ] && ! getent group "$group" >/dev/null; then
	echo "${0##*/}: no group $group here (the service's group is made by systemd-sysusers" \
		"when the package is installed)" >&2
	exit 1
fi
mkdir -p "$dir"
umask 077
if [ ! -f "$dir/ca.pem" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
		-subj "/CN=wormhole test CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
fi
for name in $names; do
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
		-keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
	printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$name" >"$dir/$name.ext"
	if [ "$name" = "$expired" ]; then
		# valid for one day, two days ago: only `openssl ca` takes explicit dates
		db=$(mktemp -d)
		: >"$db/index.txt"
		printf '[ca]\ndefault_ca=d\n[d]\ndatabase=%s/index.txt\nnew_certs_dir=%s\n' "$db" "$db" >"$db/ca.cnf"
		printf 'serial=%s/serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' "$db" >>"$db/ca.cnf"
		openssl rand -hex 8 >"$db/serial"
		openssl ca -batch -config "$db/ca.cnf" -cert "$dir/ca.pem" -keyfile "$dir/ca.key" \
			-startdate "$(date -u -d '2 days ago' +%Y%m%d%H%M%SZ)" \
			-enddate "$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)" \
			-extfile "$dir/$name.ext" -in "$dir/$name.csr" -out "$dir/$name.pem" 2>/dev/null
		rm -rf "$db"
	else
		openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
			-CAcreateserial -days "$days" -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null
	fi
	rm -f "$dir/$name.csr" "$dir/$name.ext"
	if [ -n "$group" ]; then
		# the broker's user reads its key through the group; the CA key stays 0600
		chgrp "$group" "$dir/$name.key"
		chmod 0640 "$dir/$name.key"
	fi
done
chmod 644 "$dir"/*.pem
