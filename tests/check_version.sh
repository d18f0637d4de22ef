#!/usr/bin/env bash
# --version of every tool, as a user runs it: from /, without mpirun, without a device.
#   check_version.sh BUILD_DIR
# Each tool prints "<tool> (cltrain) <version>" (the same version for all), then the same lines:
# one per OpenCL platform the ICD loader lists (checked against cltrain-devices --json, which
# enumerates them another way), CLBlast's version (the run-time one matching the loaded
# library's file name) and MPI's (against ompi_info where present); it exits 0, also with no
# OpenCL platform at all. Each tool's --help mentions --version; cltrain-devices --json carries
# the same versions.
set -u
B=$(cd "$1" && pwd)
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d /tmp/cltrain-version-XXXXXX)
trap 'rm -rf "$work"' EXIT
VRE='[0-9]+\.[0-9]+\.[0-9]+(\+git[0-9]+\.g[0-9a-f]{7,}(\.dirty)?)?'

version=""
for tool in cltrain cltrain-devices cltrain-bench-allreduce cltrain-tune cltrain-export cltrain-generate; do
  [ -x "$B/$tool" ] || fail "$B/$tool not built"
  (cd / && "$B/$tool" --version) >"$work/$tool" 2>"$work/err"; rc=$?
  [ "$rc" -eq 0 ] || fail "$tool --version: exit $rc: $(cat "$work/err")"
  [ -s "$work/err" ] && fail "$tool --version wrote to stderr: $(cat "$work/err")"
  first=$(head -n 1 "$work/$tool")
  echo "$first" | grep -Eq "^$tool \(cltrain\) $VRE\$" || fail "$tool: first line '$first'"
  v=${first##* }
  [ -z "$version" ] || [ "$v" = "$version" ] || fail "$tool says $v, cltrain says $version"
  version=$v
  # the platforms, CLBlast and MPI are the same for every tool
  [ "$tool" = cltrain ] || cmp -s <(tail -n +2 "$work/$tool") <(tail -n +2 "$work/cltrain") \
    || fail "$tool --version differs from cltrain's: $(cat "$work/$tool")"
  "$B/$tool" --help 2>/dev/null | grep -q -- "--version" || fail "$tool --help does not mention --version"
done
cat "$work/cltrain"

# the fields of cltrain's, against independent sources; the --json of cltrain-devices
(cd / && "$B/cltrain-devices" --json) >"$work/devices.json" || fail "cltrain-devices --json exited $?"
ompi=""
if command -v ompi_info >/dev/null; then
  ompi=$(ompi_info --version 2>/dev/null | sed -n 's/^Open MPI \(v[0-9.]*\).*/\1/p' | head -n 1)
fi
python3 - "$work/cltrain" "$work/devices.json" "$ompi" <<'PY' || fail "fields"
import json, os, re, sys
lines = open(sys.argv[1]).read().splitlines()
dev = json.load(open(sys.argv[2]))
ver, ompi = dev["versions"], sys.argv[3]
# OpenCL: one line per platform, in the loader's order, the names cltrain-devices lists
names = [p["name"] for p in dev["platforms"]]
plat = [l for l in lines if l.startswith("OpenCL platform")]
if names:
    assert len(plat) == len(names), (plat, names)
    for i, (l, n) in enumerate(zip(plat, names)):
        assert re.match(rf"OpenCL platform {i}: {re.escape(n)}, .*OpenCL \d+\.\d+", l), (l, n)
else:
    assert plat == ["OpenCL platforms: none found (the ICD loader reads /etc/OpenCL/vendors/*.icd)"], plat
# CLBlast: the run-time version is the suffix of the library file that was loaded
cl = [l for l in lines if l.startswith("CLBlast ")]
assert len(cl) == 1, lines
m = re.fullmatch(r"CLBlast (\d+\.\d+\.\d+) \(run time: (/\S+); built with (\d+\.\d+\.\d+)\)", cl[0])
if m:
    assert os.path.exists(m[2]) and m[2].endswith(".so." + m[1]), cl
else:
    assert re.fullmatch(r"CLBlast \d+\.\d+\.\d+ \(build time: .*\)", cl[0]), cl
# MPI: the library's own first line; the version ompi_info reports where it is installed
mpi = [l for l in lines if l.startswith("MPI: ")]
assert len(mpi) == 1 and mpi[0] != "MPI: unknown", lines
assert not ompi or f"Open MPI {ompi}" in mpi[0], (mpi, ompi)
assert len(lines) == 1 + max(len(names), 1) + 2, lines
# --json: the same versions
assert ver["cltrain"] == lines[0].split()[-1], ver
assert [f"OpenCL platform {i}: {p['name']}, {p['version']}"
        for i, p in enumerate(ver["opencl_platforms"])] == (plat if names else []), ver
assert "MPI: " + ver["mpi"] == mpi[0], ver
assert (m and ver["clblast"] == m[1] and ver["clblast_library"] == m[2]
        and ver["clblast_build"] == m[3]) or (not m and ver["clblast"] == "unknown"), ver
PY

# no OpenCL platform at all: still exit 0, saying so
empty=$(mktemp -d)
out=$(OCL_ICD_VENDORS=$empty OCL_ICD_FILENAMES= "$B/cltrain" --version); rc=$?
rmdir "$empty"
[ "$rc" -eq 0 ] || fail "--version with no platform: exit $rc"
echo "$out" | grep -q "^OpenCL platforms: none found" || fail "--version with no platform: $out"
echo "$out" | grep -q "^OpenCL platform 0" && fail "--version with no platform listed one"

# cltrain-plot: the build folder's copy knows the version
plot=$(cd / && "$B/cltrain-plot" --version) || fail "cltrain-plot --version exited $?"
[ "$plot" = "cltrain-plot (cltrain) $version" ] || fail "cltrain-plot --version: '$plot'"
# cltrain-relaunch: the same
rl=$(cd / && "$B/cltrain-relaunch" --version) || fail "cltrain-relaunch --version exited $?"
[ "$rl" = "cltrain-relaunch (cltrain) $version" ] || fail "cltrain-relaunch --version: '$rl'"
echo "PASS: $version"
