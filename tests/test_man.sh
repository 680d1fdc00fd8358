#!/bin/sh
# test_man.sh: the man pages in man/ are well-formed and have not drifted
# from the code (TAP).
#
#   test_man.sh SRCDIR VERSION GOROD GOROCTL LIBGORO
#
# For each page, groff (or mandoc) finds nothing to warn about. Then:
# every long option that `gorod --help` prints is in gorod.8; every one that
# `goroctl --help` and `goroctl help COMMAND` print is in goroctl.1, and each
# command has an entry there; every function of goro.h and every error code
# of errors.h is in libgoro.3, whose EXAMPLE programs compile and link
# against LIBGORO (with $CC, or cc); every page's .TH carries VERSION.
# Options a page documents that --help does not print yet are fine: the
# check goes from the code to the page. No daemon is started.
set -u

src=$1 version=$2 gorod=$3 goroctl=$4 libgoro=$5
man=$src/man
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_man.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
n=0 failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)) failed=$((failed + 1)); echo "not ok $n - $1"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
diag() { sed 's/^/# /' "$1"; }

echo "1..11"

# The page's text with roff's escapes for -, " and fonts taken out, so that
# `\-\-socket` reads --socket.
plain() {
	sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\(dq/"/g' -e 's/\\&//g' "$1"
}

# Long options printed by a program's help on stdin, one per line.
long_opts() {
	grep -o -- '--[a-z][a-z0-9-]*' | sort -u
}

# Checks that every option in file $2 is in page $1; says which are not.
check_opts() {
	plain "$man/$1" > "$tmp/page"
	: > "$tmp/missing"
	while read -r opt; do
		grep -Eq -- "$opt([^a-z0-9-]|\$)" "$tmp/page" || echo "$opt" >> "$tmp/missing"
	done < "$2"
	if [ -s "$2" ] && [ ! -s "$tmp/missing" ]; then
		ok "$1 names every long option of $3"
	else
		not_ok "$1 names every long option of $3"
		[ -s "$2" ] || echo "# $3 printed no options"
		sed 's/^/# missing: /' "$tmp/missing"
	fi
}

# 1-3: the pages are clean roff.
for page in gorod.8 goroctl.1 libgoro.3; do
	if command -v groff > /dev/null; then
		{ groff -man -ww -z "$man/$page" && groff -man -ww -z -Tutf8 "$man/$page"; } \
			> "$tmp/lint" 2>&1
		rc=$?
	elif command -v mandoc > /dev/null; then
		mandoc -Tlint -Wwarning "$man/$page" > "$tmp/lint" 2>&1
		rc=$?
	else
		skip "$page: no roff warnings" "neither groff nor mandoc is installed"
		continue
	fi
	if [ "$rc" -eq 0 ] && [ ! -s "$tmp/lint" ]; then
		ok "$page: no roff warnings"
	else
		not_ok "$page: no roff warnings"
		diag "$tmp/lint"
	fi
done

# 4: gorod --help.
"$gorod" --help | long_opts > "$tmp/opts"
check_opts gorod.8 "$tmp/opts" "gorod --help"

# 5-6: goroctl --help, and each command's help.
"$goroctl" --help > "$tmp/help"
# "  wg add NAME [N]     add N ...": the words before the operands.
sed -n '/^Commands:/,/^$/p' "$tmp/help" | sed -e '1d;$d' -e 's/^ *//' -e 's/  .*//' |
	awk '{ w = ""; for (i = 1; i <= NF && $i ~ /^[a-z]+$/; i++) w = w (w ? " " : "") $i; print w }' \
	> "$tmp/commands"
cp "$tmp/help" "$tmp/allhelp"
while read -r words; do
	# shellcheck disable=SC2086 # the words are separate arguments
	"$goroctl" help $words >> "$tmp/allhelp"
done < "$tmp/commands"
long_opts < "$tmp/allhelp" > "$tmp/opts"
check_opts goroctl.1 "$tmp/opts" "goroctl --help and goroctl help COMMAND"

# An entry is a .TP paragraph of COMMANDS whose tag starts with the words.
plain "$man/goroctl.1" |
	awk '/^\.SH / { in_cmds = $0 ~ /^\.SH COMMANDS/ } in_cmds && prev ~ /^\.TP/ { print } { prev = $0 }' \
	> "$tmp/tags"
: > "$tmp/missing"
while read -r words; do
	grep -Eq "^\\.B[IR]? \"?$words( |\"|\$)" "$tmp/tags" || echo "$words" >> "$tmp/missing"
done < "$tmp/commands"
if [ -s "$tmp/commands" ] && [ ! -s "$tmp/missing" ]; then
	ok "goroctl.1 has an entry for every command of goroctl --help"
else
	not_ok "goroctl.1 has an entry for every command of goroctl --help"
	sed 's/^/# no entry: /' "$tmp/missing"
fi

# 7-8: goro.h's functions and errors.h's codes.
sed -n 's/^GORO_EXPORT .*[ *]\(goro_[a-z0-9_]*\)(.*/\1/p' "$src/include/goro/goro.h" |
	sort -u > "$tmp/functions"
plain "$man/libgoro.3" > "$tmp/page"
: > "$tmp/missing"
while read -r f; do
	grep -q "$f\\b" "$tmp/page" || echo "$f" >> "$tmp/missing"
done < "$tmp/functions"
if [ -s "$tmp/functions" ] && [ ! -s "$tmp/missing" ]; then
	ok "libgoro.3 names every function of goro.h"
else
	not_ok "libgoro.3 names every function of goro.h"
	sed 's/^/# missing: /' "$tmp/missing"
fi

grep -o 'X(E[A-Z0-9]*,' "$src/include/goro/errors.h" | sed 's/X(\(.*\),/\1/' > "$tmp/codes"
: > "$tmp/missing"
while read -r e; do
	grep -Eq "(^|[^A-Z0-9])$e([^A-Z0-9]|\$)" "$tmp/page" || echo "$e" >> "$tmp/missing"
done < "$tmp/codes"
if [ -s "$tmp/codes" ] && [ ! -s "$tmp/missing" ]; then
	ok "libgoro.3 names every error code of errors.h"
else
	not_ok "libgoro.3 names every error code of errors.h"
	sed 's/^/# missing: /' "$tmp/missing"
fi

# 9: the version in each page's header.
: > "$tmp/missing"
for page in gorod.8 goroctl.1 libgoro.3; do
	grep -q "^\\.TH .* \"gorod $version\" " "$man/$page" ||
		echo "$page: $(grep '^\.TH' "$man/$page")" >> "$tmp/missing"
done
if [ ! -s "$tmp/missing" ]; then
	ok "every page's .TH says gorod $version"
else
	not_ok "every page's .TH says gorod $version"
	sed 's/^/# /' "$tmp/missing"
fi

# 10-11: libgoro.3's examples compile and link. The library may be built
# with a sanitizer whose runtime the example does not link: its own
# undefined symbols are not the example's concern.
cc=${CC:-cc}
for ex in blocking.c eventloop.c; do
	sed -n "/^\\.\\\\\" EXAMPLE $ex\$/,/^\\.\\\\\" END EXAMPLE/p" "$man/libgoro.3" |
		sed -e '1d;$d' -e '/^\.EX$/d' -e '/^\.EE$/d' |
		sed -e "s/\\\\(aq/'/g" -e 's/\\-/-/g' -e 's/\\&//g' -e 's/\\e/\\/g' > "$tmp/$ex"
	if [ ! -s "$tmp/$ex" ]; then
		not_ok "libgoro.3 EXAMPLE $ex compiles and links"
		echo "# no EXAMPLE $ex in libgoro.3"
	elif ! command -v "${cc%% *}" > /dev/null; then
		skip "libgoro.3 EXAMPLE $ex compiles and links" "no C compiler ($cc)"
	elif $cc -std=gnu11 -Wall -Wextra -I"$src/include" -o "$tmp/example" "$tmp/$ex" \
		"$libgoro" -Wl,--allow-shlib-undefined > "$tmp/cc" 2>&1; then
		ok "libgoro.3 EXAMPLE $ex compiles and links"
		diag "$tmp/cc"
	else
		not_ok "libgoro.3 EXAMPLE $ex compiles and links"
		diag "$tmp/cc"
	fi
done
exit $((failed > 0))
