#!/bin/sh
# The certificate helper: keys 0600 by default; with --group, the brokers' keys are the group's
# and 0640 (the service's user reads them) while the CA key stays 0600; bad usage exits 2.
set -eu
certs="$top_srcdir/scripts/make-certs.sh"
command -v openssl >/dev/null 2>&1 || { echo "check_make_certs: no openssl here: skipped" >&2; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wh-certs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check_make_certs: $*" >&2; exit 1; }
mode() { stat -c '%a %G' "$1"; }
group=$(id -gn)

sh "$certs" "$tmp/plain" a >/dev/null
[ "$(stat -c %a "$tmp/plain/a.key")" = 600 ] || fail "a.key without --group: $(mode "$tmp/plain/a.key")"

sh "$certs" "$tmp/grp" a b --group "$group" >/dev/null
for k in a b; do
	[ "$(mode "$tmp/grp/$k.key")" = "640 $group" ] || fail "$k.key with --group $group: $(mode "$tmp/grp/$k.key")"
done
[ "$(stat -c %a "$tmp/grp/ca.key")" = 600 ] || fail "ca.key with --group: $(mode "$tmp/grp/ca.key")"
[ "$(stat -c %a "$tmp/grp/a.pem")" = 644 ] || fail "a.pem: $(mode "$tmp/grp/a.pem")"
openssl verify -CAfile "$tmp/grp/ca.pem" "$tmp/grp/a.pem" >/dev/null || fail "a.pem does not chain to ca.pem"

rc=0; sh "$certs" "$tmp/x" a --group >/dev/null 2>&1 || rc=$?
[ $rc = 2 ] || fail "--group without a value exited $rc, not 2"
rc=0; sh "$certs" "$tmp/x" a --bogus x >/dev/null 2>&1 || rc=$?
[ $rc = 2 ] || fail "--bogus exited $rc, not 2"
rc=0; sh "$certs" "$tmp/x" a --group no-such-group-wh >/dev/null 2>&1 || rc=$?
[ $rc = 1 ] || fail "an unknown group exited $rc, not 1"
# the installed command answers --help and --version like every program the project ships
made="$top_builddir/contrib/wormhole-make-certs"
if [ -x "$made" ]; then
	"$made" --help | grep -q '^usage: wormhole-make-certs DIR NAME' || fail "wormhole-make-certs --help"
	v=$("$made" --version)
	case $v in "wormhole-make-certs "[0-9]*) ;; *) fail "wormhole-make-certs --version said '$v'" ;; esac
fi
echo "check_make_certs: keys 0600, or 0640 and group $group with --group; the CA key 0600"
