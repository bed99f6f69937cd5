#!/bin/sh
# Installs the Debian 12 packages that building and testing Wormhole need (run as root).
# systemd is here for systemd-analyze, which checks the unit file (tests/unit/check_unit.sh);
# python3-pytest runs the Python binding's tests (python/tests); setuptools and venv install it;
# debhelper, dpkg-dev, fakeroot, lintian and bash-completion build and check the Debian
# packages (CI), mmdebstrap makes the fresh root of `make deb-smoke`. Forwarding's tests and
# benchmarks start real programs: haproxy (a PROXY protocol consumer), socat and sshd (the
# relays `make bench` compares a forward with). Their packages' services are not used.
# Skips apt entirely when everything is already there, so repeated runs are quick.
set -eu
packages="build-essential autoconf automake libtool pkg-config libev-dev libsodium-dev libinih-dev libssl-dev openssl check curl
	clang libclang-rt-14-dev iproute2 nftables procps python3 valgrind systemd
	python3-pytest python3-setuptools python3-venv
	debhelper dpkg-dev fakeroot lintian bash-completion mmdebstrap
	haproxy socat openssh-server openssh-client"
missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
	exit 0
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
