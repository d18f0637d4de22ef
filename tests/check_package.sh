#!/usr/bin/env bash
# The Debian package: `cpack -G DEB` into a temporary folder, read back with dpkg-deb.
#   check_package.sh BUILD_DIR [CPACK]
# Checks: one cltrain_<version>-1_<arch>.deb; Package cltrain, Version = the tools' --version
# (Debian-valid); the file list (the tools in /usr/bin, executable; README and docs in
# /usr/share/doc/cltrain; no library, no headers); Depends names the Debian package of every
# shared library the tools link (found with dpkg -S on this machine) and openmpi-bin (mpirun);
# Recommends pocl-opencl-icd; the unpacked cltrain runs --version from /. Skipped (77) without
# cpack or dpkg-deb.
set -u
B=$(cd "$1" && pwd)
CPACK=${2:-cpack}
fail() { echo "FAIL: $*"; exit 1; }
command -v "$CPACK" >/dev/null || { echo "SKIP: no cpack"; exit 77; }
command -v dpkg-deb >/dev/null || { echo "SKIP: no dpkg-deb"; exit 77; }
work=$(mktemp -d /tmp/cltrain-package-XXXXXX)
trap 'rm -rf "$work"' EXIT

"$CPACK" -G DEB --config "$B/CPackConfig.cmake" -B "$work/out" >"$work/log" 2>&1 \
  || { cat "$work/log"; fail "cpack -G DEB exited $?"; }
debs=("$work"/out/*.deb)
[ "${#debs[@]}" -eq 1 ] && [ -f "${debs[0]}" ] || fail "expected one .deb, got: ${debs[*]}"
deb=${debs[0]}
dpkg-deb -I "$deb" | sed 's/^/  /'
field() { dpkg-deb -f "$deb" "$1"; }

version=$(cd / && "$B/cltrain" --version | head -n 1 | awk '{print $3}')
[ "$(field Package)" = cltrain ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$version-1" ] || fail "Version: $(field Version), cltrain --version says $version"
field Version | grep -Eq '^[0-9][A-Za-z0-9.+~]*-1$' || fail "not a Debian version: $(field Version)"
arch=$(field Architecture)
[ "$(basename "$deb")" = "cltrain_$(field Version)_$arch.deb" ] || fail "file name $(basename "$deb")"

# the file list
dpkg-deb -c "$deb" >"$work/list"
for t in cltrain cltrain-devices cltrain-bench-allreduce cltrain-tune cltrain-export cltrain-generate cltrain-plot cltrain-relaunch; do
  grep -Eq "^-rwxr-xr-x .* \./usr/bin/$t\$" "$work/list" || fail "no executable /usr/bin/$t"
  grep -Eq "^-rw-r--r-- .* \./usr/share/man/man1/$t\.1\$" "$work/list" || fail "no man page /usr/share/man/man1/$t.1"
done
for f in README.md docs/metrics.md docs/bad-input.md docs/design-notes.md docs/options.md docs/cluster.md docs/img/quickstart.png; do
  grep -q " \./usr/share/doc/cltrain/$f\$" "$work/list" || fail "no /usr/share/doc/cltrain/$f"
done
grep -Eq '\./usr/(include|lib)/|\.a$|\.so' "$work/list" && fail "a library or header is packaged: $(grep -E '/include/|/lib/|\.a$|\.so' "$work/list")"
awk '{print $6}' "$work/list" | grep -v '^\./usr/' | grep -v '^\./$' && fail "files outside /usr"

# dependencies: the package of every linked library, and mpirun's
deps=$(field Depends)
# every package name Depends mentions, alternatives included, one a line
echo "$deps" | tr ',|' '\n\n' | awk '{print $1}' | sort -u >"$work/depnames"
grep -qx openmpi-bin "$work/depnames" || fail "Depends lacks openmpi-bin: $deps"
dpkg-deb -x "$deb" "$work/root"
if command -v readelf >/dev/null && command -v dpkg >/dev/null; then
  for t in cltrain cltrain-devices cltrain-bench-allreduce cltrain-tune cltrain-export cltrain-generate; do
    readelf -d "$work/root/usr/bin/$t" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'
  done | sort -u >"$work/needed"
  [ -s "$work/needed" ] || fail "no NEEDED library found"
  while read -r lib; do
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64|x32|AArch64|64bit/ {print $NF; exit}')
    [ -n "$path" ] || path=$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')
    [ -n "$path" ] || fail "$lib: not found by ldconfig"
    pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "$path" 2>/dev/null)
    pkg=${pkg%%:*}
    [ -n "$pkg" ] || fail "$lib ($path) belongs to no Debian package: the .deb cannot depend on it"
    echo "  $lib -> $pkg"
    grep -qxF "$pkg" "$work/depnames" || fail "Depends lacks $pkg (for $lib): $deps"
  done <"$work/needed"
fi
echo "$(field Recommends)" | grep -q pocl-opencl-icd || fail "Recommends lacks pocl-opencl-icd"

# the unpacked tree runs (its libraries are this machine's)
out=$(cd / && "$work/root/usr/bin/cltrain" --version) || fail "unpacked cltrain --version: exit $?"
[ "$(echo "$out" | head -n 1)" = "cltrain (cltrain) $version" ] || fail "unpacked cltrain --version: $out"
echo "PASS: $(basename "$deb")"
