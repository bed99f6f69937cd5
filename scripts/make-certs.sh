#!/bin/sh
# Makes a CA and one certificate per broker name for TLS between brokers, with the openssl
# command: DIR/ca.pem (give it to every broker as tls-ca), DIR/NAME.pem and DIR/NAME.key
# (that broker's tls-cert and tls-key). The certificate names the broker in its subject
# alternative name (DNS:NAME), which is what a peer checks: a broker dialling [peer NAME]
# expects the name NAME (or the peer's tls-name). Keys are EC P-256; the CA key stays in
# DIR/ca.key: keep it off the brokers.
#
#   scripts/make-certs.sh DIR NAME... [--days N] [--expired NAME]
#
# --expired NAME makes NAME's certificate one that expired yesterday (for tests).
set -eu
if [ $# -lt 2 ]; then
	echo "usage: $0 DIR NAME... [--days N] [--expired NAME]" >&2
	exit 2
fi
dir=$1
shift
days=825
expired=""
names=""
while [ $# -gt 0 ]; do
	case $1 in
	--days) days=$2; shift 2 ;;
	--expired) expired=$2; names="$names $2"; shift 2 ;;
	*) names="$names $1"; shift ;;
	esac
done
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
done
chmod 644 "$dir"/*.pem
