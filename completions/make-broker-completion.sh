#!/bin/sh
# Writes the bash completion of wormhole-broker from its option table, as the man page's option
# list is made (WORMHOLE_MAN_OPTIONS=1): every option, and what each one's value is (a path:
# file names; yes|no and the log levels: those words; anything else: nothing to offer).
#   completions/make-broker-completion.sh broker/wormhole-broker > completions/wormhole-broker
# tests/unit/check_completion.sh checks the committed file against the table.
set -eu
broker=$1
WORMHOLE_MAN_OPTIONS=1 "$broker" | sed -n '/^\.TP$/{n;s/\\-/-/g;p;}' | awk '
	# .BR -c ", " --config " \fIPATH\fR"   or   .BI --tls-key " PATH"   or   .B --check-config
	$2 !~ /^-/ { next }              # a config-file-only setting ("address = ...")
	{
		names = ""; value = ""
		for (i = 2; i <= NF; i++) {
			w = $i; gsub(/"/, "", w); gsub(/\\f[IRB]/, "", w)
			if (w ~ /^--?[a-zA-Z]/) names = names (names == "" ? "" : " ") w
			else if (w != "," && w != "") value = w
		}
		all = all " " names
		n = split(names, list, " ")
		for (i = 1; i <= n; i++) {
			if (value == "PATH") paths = paths "|" list[i]
			else if (value == "yes|no") bools = bools "|" list[i]
			else if (value == "LEVEL") levels = levels "|" list[i]
			else if (value != "") others = others "|" list[i]
		}
	}
	# one arm of the case on the previous word: its options, what to offer, return
	function arm(list, body) {
		if (list == "") return
		print "\t" substr(list, 2) ")"
		if (body != "") print body
		print "\t\treturn ;;"
	}
	END {
		print "# bash completion for wormhole-broker(8). Made by completions/make-broker-completion.sh"
		print "# from the broker'"'"'s option table: do not edit (tests/unit/check_completion.sh checks it)."
		print "_wormhole_broker()"
		print "{"
		print "\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}"
		print "\tCOMPREPLY=()"
		print "\t# --NAME=VALUE: bash splits it at the = (COMP_WORDBREAKS), or not"
		print "\tif [[ $prev == = && $COMP_CWORD -ge 2 ]]; then"
		print "\t\tprev=${COMP_WORDS[COMP_CWORD-2]}"
		print "\telif [[ $cur == --*=* ]]; then"
		print "\t\tprev=${cur%%=*}"
		print "\t\tcur=${cur#*=}"
		print "\tfi"
		print "\tcase $prev in"
		arm(paths, "\t\tcompopt -o filenames 2>/dev/null\n\t\tCOMPREPLY=($(compgen -f -- \"$cur\"))")
		arm(bools, "\t\tCOMPREPLY=($(compgen -W \"yes no\" -- \"$cur\"))")
		arm(levels, "\t\tCOMPREPLY=($(compgen -W \"error warn info debug\" -- \"$cur\"))")
		arm(others, "")
		print "\tesac"
		print "\tCOMPREPLY=($(compgen -W \"" substr(all, 2) "\" -- \"$cur\"))"
		print "}"
		print "complete -F _wormhole_broker wormhole-broker"
	}'
