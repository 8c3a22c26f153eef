#!/bin/bash
# Every --help is true against docs/cli.md: the verbs `qprof --help` lists are
# the verbs of the docs' table; each verb's --help goes to stdout with exit 0
# and names exactly the options (and --format values) its row in the table
# names; `qprof --help` names every report format. When a verb gains an
# option, its --help and docs/cli.md say so in the same change.
set -euo pipefail
QPROF=${QPROF_BIN:?QPROF_BIN not set}
DOC=${QP_TEST_SOURCE_DIR:?}/docs/cli.md
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$QPROF" --help >"$T/main.out" 2>"$T/main.err" || fail "qprof --help: exit $?"
[ ! -s "$T/main.err" ] || fail "qprof --help wrote to stderr: $(cat "$T/main.err")"
# The verbs: indented "  VERB  summary" lines after "Verbs:" in --help, and
# the `qprof VERB ...` rows of the docs' verb table.
help_verbs=$(sed -n '/^Verbs:/,/^$/p' "$T/main.out" | awk '/^  [a-z]/ {print $1}' | sort)
doc_verbs=$(grep -oE '^\| `qprof [a-z]+' "$DOC" | awk '{print $3}' | sort)
[ -n "$help_verbs" ] || fail "qprof --help lists no verbs"
[ "$help_verbs" = "$doc_verbs" ] ||
  fail "verbs in qprof --help ($(echo $help_verbs)) are not docs/cli.md's ($(echo $doc_verbs))"

# Options named in a text: --long-names, without --help (every verb has it).
opts() { sed 's/--[a-z-]*\*//g' | { grep -oE -- '--[a-z][a-z0-9-]*[a-z0-9]' || true; } | { grep -vx -- '--help' || true; } | sort -u; }
# --format values: the list after "--format" in a usage line (a|b|c, the docs
# escape | as \|).
formats() { { grep -oE -- '--format [a-z|\\]+' || true; } | head -1 | sed 's/--format //; s/\\//g' | tr '|' '\n' | sort; }

for v in $help_verbs; do
  "$QPROF" "$v" --help >"$T/$v.out" 2>"$T/$v.err" || fail "qprof $v --help: exit $?"
  [ -s "$T/$v.out" ] || fail "qprof $v --help printed nothing on stdout"
  [ ! -s "$T/$v.err" ] || fail "qprof $v --help wrote to stderr: $(cat "$T/$v.err")"
  row=$(grep -E "^\| \`qprof $v( |\`)" "$DOC" | sed 's/^| `\(.*\)` |.*|.*|$/\1/')
  doc_opts=$(printf '%s\n' "$row" | opts)
  help_opts=$(opts <"$T/$v.out")
  missing=$(comm -23 <(printf '%s\n' "$doc_opts") <(printf '%s\n' "$help_opts") | grep . || true)
  extra=$(comm -13 <(printf '%s\n' "$doc_opts") <(printf '%s\n' "$help_opts") | grep . || true)
  [ -z "$missing" ] || fail "docs/cli.md names $(echo $missing) for '$v', 'qprof $v --help' does not"
  [ -z "$extra" ] || fail "'qprof $v --help' names $(echo $extra), docs/cli.md's row for '$v' does not"
  doc_formats=$(printf '%s\n' "$row" | formats)
  help_formats=$(formats <"$T/$v.out")
  [ "$doc_formats" = "$help_formats" ] ||
    fail "--format of '$v': docs/cli.md says '$(echo $doc_formats)', --help says '$(echo $help_formats)'"
  echo "ok: qprof $v --help ($(echo $help_opts | wc -w) options, formats: $(echo $help_formats))"
done

# The summary of report in `qprof --help` names every format report takes.
line=$(grep -E '^  report ' "$T/main.out")
for f in $(formats <"$T/report.out"); do
  printf '%s\n' "$line" | grep -qiw "$f" || fail "qprof --help does not name report's format '$f': $line"
done
echo "ok: qprof --help names every report format"
