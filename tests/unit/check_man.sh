#!/bin/sh
# The man page's option list is made from the broker's option table: they must say the same.
# (Regenerate with: WORMHOLE_MAN_OPTIONS=1 broker/wormhole-broker, between the marks.)
set -eu
page="$top_srcdir/docs/man/wormhole-broker.8"
want=$(WORMHOLE_MAN_OPTIONS=1 "$top_builddir/broker/wormhole-broker")
have=$(sed -n '/^\.\\" options-begin$/,/^\.\\" options-end$/p' "$page" | sed '1d;$d')
if [ "$want" != "$have" ]; then
	echo "check_man: docs/man/wormhole-broker.8 and the option table differ:" >&2
	printf '%s\n' "$want" > "${TMPDIR:-/tmp}/wh-man-want.$$"
	printf '%s\n' "$have" > "${TMPDIR:-/tmp}/wh-man-have.$$"
	diff -u "${TMPDIR:-/tmp}/wh-man-have.$$" "${TMPDIR:-/tmp}/wh-man-want.$$" >&2 || true
	rm -f "${TMPDIR:-/tmp}/wh-man-want.$$" "${TMPDIR:-/tmp}/wh-man-have.$$"
	exit 1
fi
# every option is in the config file's page too (those that can be set there)
conf="$top_srcdir/docs/man/wormhole-broker.conf.5"
for name in $(WORMHOLE_MAN_OPTIONS=1 "$top_builddir/broker/wormhole-broker" | sed -n 's/.*\\-\\-\([a-z\\-]*\).*/\1/p' | sed 's/\\-/-/g'); do
	case "$name" in config|check-config|help|version|peer) continue ;; esac
	grep -q -- "$(printf '%s' "$name" | sed 's/-/\\\\-/g')" "$conf" || { echo "check_man: $name is not in wormhole-broker.conf(5)" >&2; exit 1; }
done
# what a reader would otherwise trip over: a make variable printed as it is, a SEE ALSO without
# the other programs and the library, limits the code has that no page states
for man in "$top_srcdir"/docs/man/*.[0-9]; do
	if grep -n '\$([a-z_]*)' "$man" >&2; then
		echo "check_man: $man prints a make variable (above)" >&2
		exit 1
	fi
done
see_also=$(sed -n '/^\.SH SEE ALSO/,/^\.SH/p' "$page")
for want in 'wormhole-broker.conf (5)' 'wormhole-ctl (1)' 'libwormholeclient (3)'; do
	printf '%s\n' "$see_also" | grep -q "^\.BR $want" || { echo "check_man: wormhole-broker(8)'s SEE ALSO lacks $want" >&2; exit 1; }
done
peers=$(sed -n 's/^#define BROKER_PEERS_MAX \([0-9]*\).*/\1/p' "$top_srcdir/broker/broker.h")
rules=$(sed -n 's/^#define SERVICE_RULES_MAX \([0-9]*\).*/\1/p' "$top_srcdir/broker/services.h")
grep -q "at most $peers peers" "$conf" || { echo "check_man: wormhole-broker.conf(5) does not say at most $peers peers" >&2; exit 1; }
grep -q "At most $rules services have rules" "$conf" || { echo "check_man: wormhole-broker.conf(5) does not say at most $rules service rules" >&2; exit 1; }
# every program the project ships (and the examples an app developer starts from) answers
# --help (a usage line, exit 0) and --version (the version, exit 0)
version=$(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"/\1/p' "$top_builddir/config.h")
for program in broker/wormhole-broker ctl/wormhole-ctl examples/wh-echo examples/wh-send; do
	help=$("$top_builddir/$program" --help 2>&1) || { echo "check_man: $program --help exits $?: $help" >&2; exit 1; }
	case "$help" in
	usage:*) ;;
	*) echo "check_man: $program --help does not start with its usage: $help" >&2; exit 1 ;;
	esac
	said=$("$top_builddir/$program" --version 2>&1) || { echo "check_man: $program --version exits $?: $said" >&2; exit 1; }
	case "$said" in
	*"$version"*) ;;
	*) echo "check_man: $program --version does not say $version: $said" >&2; exit 1 ;;
	esac
done
# --help says each option's whole help text and default, as the man page does (a help text cut
# short, by a fixed buffer say, shows here): the man page's sentence for each option that the
# command line takes, up to its default, is in the option's --help entry, unwrapped
"$top_builddir/broker/wormhole-broker" --help | awk '
	/^                                     [^ ]/ { sub(/^ +/, ""); entry = entry " " $0; next }
	/^  (-[a-zA-Z], |    )--/ { if (entry != "") print entry; entry = $0; next }
	{ if (entry != "") print entry; entry = "" }
	END { if (entry != "") print entry }' > "${TMPDIR:-/tmp}/wh-help.$$"
sed -n '/^\.\\" options-begin$/,/^\.\\" options-end$/p' "$page" | awk '
	/^\.TP$/ { getline head; getline text
		if (head ~ /^\.BI "/) next   # config file only
		gsub(/\\-/, "-", head)
		if (match(head, /--[a-z-]+/) == 0) next
		name = substr(head, RSTART, RLENGTH)
		sub(/ A change applies [^.]*\.$/, "", text)
		sub(/ Per peer: in a \[peer NAME\] section it sets that peer.s\.$/, "", text)
		sub(/\.$/, "", text)
		if (name == "--config") sub(/ \(default .*\)$/, "", text)
		print name "\t" text }' > "${TMPDIR:-/tmp}/wh-man-text.$$"
bad=$(awk -F '\t' 'NR == FNR { n = index($0, "--"); rest = substr($0, n); split(rest, w, " "); help[w[1]] = $0; next }
	{ want = tolower(substr($2, 1, 1)) substr($2, 2)
	  if (!($1 in help)) { print $1 ": not in --help"; next }
	  if (index(help[$1], want) == 0 && index(help[$1], $2) == 0) print $1 ": --help says \"" help[$1] "\", the man page \"" $2 "\"" }' \
	"${TMPDIR:-/tmp}/wh-help.$$" "${TMPDIR:-/tmp}/wh-man-text.$$")
rm -f "${TMPDIR:-/tmp}/wh-help.$$" "${TMPDIR:-/tmp}/wh-man-text.$$"
if [ -n "$bad" ]; then
	echo "check_man: --help and the man page differ:" >&2
	printf '%s\n' "$bad" >&2
	exit 1
fi
echo "check_man: the man pages, --help and the option table agree"
