#!/usr/bin/env bash
# cltrain-devices as a user runs it: the tree, --json (parsed), --bench figures, a spec that
# matches nothing, bad flags, and a node with no platform at all.
#   check_devices_tool.sh path/to/cltrain-devices
set -u
tool=$1
fail() { echo "FAIL: $*"; exit 1; }
out=$("$tool") || fail "plain listing exited $?"
echo "$out" | grep -q '^Platform 0: ' || fail "no 'Platform 0:' line"
echo "$out" | grep -Eq '^ .-- [0-9]+:[0-9]+  ' || fail "no device line"
have() { echo "$out" | grep -q "$1"; }
if ! have "Portable Computing Language" || ! have "Oclgrind"; then
  echo "SKIP: PoCL and Oclgrind are not both present"; exit 77
fi
"$tool" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
names = [p["name"] for p in d["platforms"]]
assert any("Portable" in n for n in names) and "Oclgrind" in names, names
devs = [x for p in d["platforms"] for x in p["devices"]]
assert d["device_count"] == len(devs) >= 2
for x in devs:
    assert x["compute_units"] > 0 and x["global_mem"] > 0 and x["max_alloc"] > 0, x
v = d["versions"]   # the same as --version (tests/check_version.sh compares them line by line)
assert [p["name"] for p in v["opencl_platforms"]] == names, (v, names)
assert all(p["version"].startswith("OpenCL ") for p in v["opencl_platforms"]), v
assert v["cltrain"][0].isdigit() and v["clblast_build"] and v["mpi"] not in ("", "unknown"), v
' || fail "--json"
# --bench: measured figures (positive numbers) for both platforms
"$tool" --bench --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
for p in d["platforms"]:
    for x in p["devices"]:
        b = x["bench"]
        assert b["ok"], (x["name"], b)
        assert b["h2d_gbs"] > 0 and b["d2h_gbs"] > 0 and b["build_s"] > 0, b
        assert len(b["sgemm"]) >= 2 and all(g["gflops"] > 0 for g in b["sgemm"]), b
        assert b["gemms"], b   # where the GEMM choices came from (tuning cache or defaults)
        print(x["name"], "h2d", b["h2d_gbs"], "d2h", b["d2h_gbs"], "sgemm", b["sgemm"])
' || fail "--bench --json"
# one device by spec, with the same indices
"$tool" --device pocl | grep -q "Portable Computing Language" || fail "--device pocl"
"$tool" --device pocl | grep -q "Oclgrind" && fail "--device pocl listed Oclgrind"
# a spec that matches nothing: non-zero, one line that lists what exists
err=$("$tool" --device nosuchthing 2>&1 >/dev/null); rc=$?
[ $rc -ne 0 ] || fail "--device nosuchthing exited 0"
[ "$(echo "$err" | wc -l)" -eq 1 ] || fail "--device nosuchthing printed more than one line: $err"
echo "$err" | grep -q "Oclgrind" && echo "$err" | grep -q "Portable" || fail "error does not list devices: $err"
# --spec: the device each local rank takes, by the platform a name names
sp=$("$tool" --spec pocl --ranks 2) || fail "--spec pocl exited $?"
echo "$sp"
[ "$(echo "$sp" | grep -c '^local rank [01]: [0-9]*:[0-9]* .* \[Portable Computing Language\] (CPU)$')" -eq 2 ] \
  || fail "--spec pocl --ranks 2: both local ranks on PoCL expected"
echo "$sp" | grep -q "^--device pocl: 1 device (by platform vendor)$" || fail "--spec pocl: how it matched"
sp=$("$tool" --spec 0=oclgrind,1=pocl) || fail "--spec with a per-rank list exited $?"
echo "$sp" | grep -q "^local rank 0: .* \[Oclgrind\] (simulator)  spec oclgrind, by platform name$" \
  && echo "$sp" | grep -q "^local rank 1: .* \[Portable Computing Language\]" || fail "--spec per rank: $sp"
if have "Intel(R) OpenCL"; then   # the platform, whatever PoCL's device is called on this host
  "$tool" --spec intel | grep -q "^local rank 0: .* \[Intel(R) OpenCL\] (CPU)$" || fail "--spec intel"
fi
"$tool" --spec pocl:gpu >/dev/null 2>&1; [ $? -eq 1 ] || fail "--spec pocl:gpu (no such device) did not exit 1"
"$tool" --spec pocl:fpga >/dev/null 2>&1; [ $? -eq 2 ] || fail "--spec pocl:fpga did not exit 2"
"$tool" --ranks 2 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--ranks without --spec did not exit 2"
"$tool" --spec pocl --ranks 0 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--ranks 0 did not exit 2"
"$tool" --bogus 2>/dev/null; [ $? -eq 2 ] || fail "--bogus did not exit 2"
"$tool" --device 2>/dev/null; [ $? -eq 2 ] || fail "--device without a value did not exit 2"
# no platform at all: says so with a hint, exits 0
empty=$(mktemp -d)
out=$(OCL_ICD_VENDORS=$empty OCL_ICD_FILENAMES= "$tool") || fail "no-platform run exited $?"
echo "$out" | grep -q "No OpenCL platforms found" || fail "no-platform message missing: $out"
echo "$out" | grep -q "icd" || fail "no ICD hint"
# ... and --json says so too, versions included
OCL_ICD_VENDORS=$empty OCL_ICD_FILENAMES= "$tool" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["platforms"] == [] and d["device_count"] == 0 and d["versions"]["opencl_platforms"] == [], d
' || fail "no-platform --json"
rmdir "$empty"
echo "PASS"
