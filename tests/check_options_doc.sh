#!/usr/bin/env bash
# docs/options.md is what the tools' --help say: tools/options-doc.sh writes it from the built
# tools into a temporary file, which must equal the committed one.
#   check_options_doc.sh SRC BUILD
set -u
S=$1 B=$2
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
"$S/tools/options-doc.sh" "$B" "$tmp" || { echo "FAIL: tools/options-doc.sh $B failed"; exit 1; }
if ! diff -u "$S/docs/options.md" "$tmp" >"$tmp.diff"; then
  head -60 "$tmp.diff"; rm -f "$tmp.diff"
  echo "FAIL: docs/options.md is not what the tools' --help say (- committed, + the tools): run tools/options-doc.sh BUILD_DIR"
  exit 1
fi
rm -f "$tmp.diff"
echo "docs/options.md: $(grep -c '^## ' "$S/docs/options.md") tools, the same as their --help"
