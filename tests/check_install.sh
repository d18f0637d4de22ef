#!/usr/bin/env bash
# `cmake --install` into a temporary prefix gives a tree that runs from anywhere:
#   check_install.sh SOURCE_DIR BUILD_DIR [CMAKE] [SANITIZED]
# The tools and the docs are where the README says, nothing else is installed (no library, no
# headers), no installed file names the source or the build folder (error messages' __FILE__,
# debug info, RPATH), no binary has an RPATH, and every installed tool answers --version and
# --help from / with only the prefix's bin/ on PATH. SANITIZED=1 (the ASan build, never
# installed for use): its binaries keep source paths (AddressSanitizer names each instrumented
# module after its source file, which -ffile-prefix-map does not rewrite), so that check is
# left to the plain build.
set -u
S=$(cd "$1" && pwd)
B=$(cd "$2" && pwd)
CMAKE=${3:-cmake}
SANITIZED=${4:-0}
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d /tmp/cltrain-install-XXXXXX)
trap 'rm -rf "$work"' EXIT
P=$work/prefix
"$CMAKE" --install "$B" --prefix "$P" >"$work/log" 2>&1 || { cat "$work/log"; fail "cmake --install exited $?"; }

tools="cltrain cltrain-devices cltrain-bench-allreduce cltrain-tune cltrain-export cltrain-generate cltrain-plot cltrain-relaunch"
expected=$( (for t in $tools; do echo "bin/$t"; echo "share/man/man1/$t.1"; done
             echo share/doc/cltrain/README.md
             (cd "$S" && find docs -type f | sed 's|^|share/doc/cltrain/|')) | sort)
(cd "$P" && find . -type f -o -type l | sed 's|^\./||' | sort) >"$work/files"
diff <(echo "$expected") "$work/files" >"$work/diff" || { cat "$work/diff"; fail "installed files differ from the expected list (< expected, > installed)"; }
for t in $tools; do [ -x "$P/bin/$t" ] || fail "bin/$t is not executable"; done

# nothing points back at this machine's folders
for d in "$S" "$B"; do
  [ "$SANITIZED" = 1 ] && { echo "note: sanitizer build: source paths in its binaries not checked"; break; }
  hits=$(grep -rlF "$d" "$P")
  [ -z "$hits" ] || fail "installed files name $d: $hits"
done
if command -v readelf >/dev/null; then
  for t in $tools; do
    case "$t" in cltrain-plot|cltrain-relaunch) continue ;; esac   # (scripts)
    rp=$(readelf -d "$P/bin/$t" | grep -E 'R(UN)?PATH')
    [ -z "$rp" ] || fail "bin/$t has an RPATH: $rp"
  done
fi

# runs from / with only the prefix on PATH (plus the system's folders)
for t in $tools; do
  out=$(cd / && PATH="$P/bin:/usr/bin:/bin" "$t" --version 2>&1) || fail "$t --version from the prefix: exit $?: $out"
  echo "$out" | head -n 1
  echo "$out" | head -n 1 | grep -q "^$t (cltrain) [0-9]" || fail "$t --version: $out"
  (cd / && PATH="$P/bin:/usr/bin:/bin" "$t" --help >/dev/null 2>&1) || fail "$t --help from the prefix: exit $?"
done
# a man page for every tool, that man renders, naming the tool and its version
if command -v man >/dev/null; then
  for t in $tools; do
    page=$(MANWIDTH=80 man -l "$P/share/man/man1/$t.1" 2>"$work/manerr") || fail "man -l $t.1: exit $?: $(cat "$work/manerr")"
    echo "$page" | grep -q "^NAME" || fail "man $t: no NAME section"
    echo "$page" | grep -Eq "^ +$t +- " || fail "man $t: the NAME line does not name $t"
    echo "$page" | grep -q -- "--help" || echo "$page" | grep -q -- "--" || fail "man $t: no options"
    echo "$page" | tail -n 1 | grep -q "$t [0-9]" || fail "man $t: no version in the footer"
  done
  echo "man pages: $(echo $tools | wc -w) render"
fi
echo "PASS: $(wc -l <"$work/files") files in $P"
