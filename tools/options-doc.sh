#!/usr/bin/env bash
# Writes the options reference, docs/options.md, from every tool's --help:
#   tools/options-doc.sh BUILD_DIR [OUT]      (OUT: docs/options.md; - for stdout)
# ctest docs_options runs it into a temporary file and fails when docs/options.md differs, so
# the reference is always what the tools say. After changing a tool's --help:
#   tools/options-doc.sh build
set -eu
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: tools/options-doc.sh BUILD_DIR [OUT.md|-]" >&2; exit 2; }
B=$1
here=$(cd "$(dirname "$0")/.." && pwd)
out=${2:-$here/docs/options.md}
tools="cltrain cltrain-devices cltrain-tune cltrain-generate cltrain-export cltrain-bench-allreduce cltrain-plot cltrain-relaunch"
for t in $tools; do
  [ -x "$B/$t" ] || { echo "tools/options-doc.sh: $B/$t: no such program (build first: cmake --build $B)" >&2; exit 1; }
done
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
  echo "# Options reference"
  echo
  echo "Every tool's \`--help\`, as the tools print it (this file is written by"
  echo "\`tools/options-doc.sh BUILD_DIR\`, and ctest \`docs_options\` fails when it differs from"
  echo "what the built tools say). The same text is each tool's man page (\`man cltrain\`)."
  echo
  for t in $tools; do echo "- [\`$t\`](#$t)"; done
  for t in $tools; do
    echo
    echo "## $t"
    echo
    echo '```'
    "$B/$t" --help
    echo '```'
  done
} >"$tmp"
if [ "$out" = - ]; then cat "$tmp"; else cp "$tmp" "$out.tmp.$$" && mv "$out.tmp.$$" "$out"; fi
