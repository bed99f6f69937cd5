#!/bin/sh
# The Debian packages, tried as an admin would (run as root; `make deb-smoke`):
#   1. build them from the tracked tree (dpkg-buildpackage -us -uc -b, DEB_BUILD_OPTIONS=nocheck:
#      the test suite runs elsewhere), or take them from WH_DEBS_DIR;
#   2. make a fresh Debian 12 root from Debian's packages (mmdebstrap, from the mirror this
#      machine's apt uses, or WH_MIRROR), install the packages' dependencies, note every file;
#   3. install the four packages with dpkg -i, then there: `wormhole-broker --check-config` on
#      the installed config, certificates from wormhole-make-certs --group wormhole, two brokers
#      as user wormhole (A on the installed /etc/wormhole/broker.conf, B on a copy) over TLS, a
#      stream between them from a small C program built with the -dev package's pkg-config
#      file against the installed library, `wormhole-ctl status` on both;
#   4. purge the packages and check that the root is as before, but for the conffile's removal.
# Exits non-zero at the first failure. WH_KEEP=1 keeps the work directory.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
suite=bookworm
say() { printf 'deb-smoke: %s\n' "$*"; }
die() { printf 'deb-smoke: FAILED: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap roots, chroot, dpkg)"
for tool in mmdebstrap dpkg-buildpackage chroot; do
	command -v "$tool" >/dev/null 2>&1 || die "no $tool here (scripts/install-deps.sh installs it)"
done

# the mirror apt uses here: the first Debian archive in sources.list(.d)
mirror=${WH_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
	grep -o -E 'https?://[^ ]*/debian/?( |$)' | grep -v -- '-security' | head -1 | tr -d ' ')}
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian

work=$(mktemp -d /tmp/wh-deb-smoke.XXXXXX)
root=$work/root
cleanup() {
	for m in proc dev/shm; do
		mountpoint -q "$root/$m" 2>/dev/null && umount "$root/$m"
	done
	if [ "${WH_KEEP:-0}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# ---- 1. the packages ----------------------------------------------------------------------
if [ -n "${WH_DEBS_DIR:-}" ]; then
	debs=$WH_DEBS_DIR
else
	say "building the packages from the tracked tree"
	mkdir -p "$work/src/wormhole"
	git -C "$top" ls-files -z | (cd "$top" && xargs -0 tar cf -) | tar xf - -C "$work/src/wormhole"
	(cd "$work/src/wormhole" && DEB_BUILD_OPTIONS="nocheck parallel=2" dpkg-buildpackage -us -uc -b \
		>"$work/build.log" 2>&1) || { tail -40 "$work/build.log"; die "dpkg-buildpackage"; }
	debs=$work/src
fi
pkgs="wormhole-broker wormhole-ctl libwormholeclient0 libwormholeclient-dev"
files=""
for p in $pkgs; do
	f=$(find "$debs" -maxdepth 1 -name "${p}_*.deb" | head -1)
	[ -n "$f" ] || die "no ${p}_*.deb in $debs"
	files="$files $f"
	say "$(basename "$f"): $(dpkg-deb -c "$f" | grep -c -v '/$') files"
done

# ---- 2. a fresh Debian 12 root with the dependencies ------------------------------------------
say "making a $suite root with mmdebstrap from $mirror"
mmdebstrap --quiet --variant=apt --include=gcc,libc6-dev,pkgconf,openssl "$suite" "$root" "$mirror" \
	>"$work/mmdebstrap.log" 2>&1 || { tail -20 "$work/mmdebstrap.log"; die "mmdebstrap (see above)"; }
# the packages' dependencies, by name (not ours): installed first so that the purge is measured
deps=$(for f in $files; do dpkg-deb -f "$f" Depends; done | tr ',' '\n' |
	sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g' | grep -v -x -E "($(echo "$pkgs" | tr ' ' '|'))?" | sort -u)
say "dependencies: $(echo "$deps" | tr '\n' ' ')"
chroot "$root" apt-get update -q >"$work/apt.log" 2>&1 || { tail "$work/apt.log"; die "apt-get update in the root"; }
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --no-install-recommends $deps \
	>>"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log"; die "installing the dependencies in the root"; }
chroot "$root" apt-get clean
mount -t proc proc "$root/proc"
mount -t tmpfs shm "$root/dev/shm"

# every file with its type, mode, owner and (for regular files) content, but the logs and
# caches that any dpkg run changes
snapshot() {
	chroot "$root" sh -c 'find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run \
		-o -path /tmp -o -path /var/log -o -path /var/cache -o -path /var/lib/apt \
		-o -path /var/lib/dpkg -o -path /root \) -prune -o -print0 |
		xargs -0 stat -c "%n %F %a %U:%G" | sort' >"$1.stat"
	chroot "$root" sh -c 'find /etc /usr /lib /var -xdev \( -path /var/log -o -path /var/cache \
		-o -path /var/lib/apt -o -path /var/lib/dpkg \) -prune -o -type f -print0 | xargs -0 md5sum | sort -k2' >"$1.md5"
}
snapshot "$work/before"

# ---- 3. install, and use it ---------------------------------------------------------------
mkdir -p "$root/tmp/debs"
# shellcheck disable=SC2086
cp $files "$root/tmp/debs/"
say "dpkg -i $pkgs"
chroot "$root" sh -c 'dpkg -i /tmp/debs/*.deb' >"$work/dpkg-install.log" 2>&1 ||
	{ cat "$work/dpkg-install.log"; die "dpkg -i"; }
chroot "$root" sh -c 'getent passwd wormhole && getent group wormhole' >/dev/null ||
	die "installing made no wormhole user and group (sysusers.d)"
cp "$top/scripts/deb-smoke-inside.sh" "$root/tmp/inside.sh"
chroot "$root" /bin/sh /tmp/inside.sh || die "the checks in the root (above)"

# ---- 4. purge: nothing left but what every system user leaves ---------------------------------
chroot "$root" rm -rf /tmp/inside.sh /tmp/debs
say "dpkg --purge $pkgs"
# shellcheck disable=SC2086
chroot "$root" dpkg --purge $pkgs >"$work/dpkg-purge.log" 2>&1 || { cat "$work/dpkg-purge.log"; die "dpkg --purge"; }
snapshot "$work/after"
# The wormhole user and group stay, as Debian leaves every system user on purge (files they
# own could remain anywhere): those lines in passwd, group, shadow, gshadow are expected.
users='^/etc/(passwd|group|shadow|gshadow)-?$'
left=$(diff "$work/before.stat" "$work/after.stat" | sed -n 's/^[<>] //p' | grep -v -E "${users%\$} " || true)
changed=$(diff "$work/before.md5" "$work/after.md5" | sed -n 's/^[<>] [0-9a-f]*  //p' | sort -u |
	grep -v -E "$users" || true)
if [ -n "$left" ] || [ -n "$changed" ]; then
	printf '%s\n' "$left" "$changed" | grep -v '^$' | sed 's/^/deb-smoke:   /' >&2
	die "the purge left the root different from before (above)"
fi
for f in passwd group; do
	say "kept, as for every system user: $(chroot "$root" getent "$f" wormhole)"
done
chroot "$root" test ! -e /etc/wormhole || die "/etc/wormhole is still there"
say "purged: no file of the packages left, /etc/wormhole/broker.conf (the conffile) removed"
say "all good"
