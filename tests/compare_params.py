#!/usr/bin/env python3
"""Compares two raw float32 parameter files (cltrain --save-params).

  compare_params.py A B [--rtol R] [--atol A]   exit 0 when |a-b| <= atol + rtol*|b| everywhere
  compare_params.py A B --exact                 exit 0 when the bytes are identical
Prints the largest differences either way."""
import argparse, array, math, sys

ap = argparse.ArgumentParser()
ap.add_argument("a"); ap.add_argument("b")
ap.add_argument("--rtol", type=float, default=1e-5); ap.add_argument("--atol", type=float, default=1e-7)
ap.add_argument("--exact", action="store_true")
o = ap.parse_args()
ra, rb = open(o.a, "rb").read(), open(o.b, "rb").read()
if len(ra) != len(rb) or len(ra) % 4:
    sys.exit(f"sizes differ or are not float32: {o.a} {len(ra)} bytes, {o.b} {len(rb)} bytes")
a, b = array.array("f"), array.array("f")
a.frombytes(ra); b.frombytes(rb)
bad = worst = 0; worst_rel = 0.0
for i, (x, y) in enumerate(zip(a, b)):
    if not (math.isfinite(x) and math.isfinite(y)):
        sys.exit(f"non-finite value at {i}: {x} {y}")
    d = abs(x - y)
    if d > o.atol + o.rtol * abs(y):
        bad += 1
    rel = d / max(abs(y), 1e-30)
    if d > 0 and rel > worst_rel:
        worst_rel, worst = rel, i
same = ra == rb
print(f"{len(a)} params, identical bytes: {same}, outside tolerance: {bad}, "
      f"max relative difference {worst_rel:.3g} (at {worst}: {a[worst]!r} vs {b[worst]!r})")
sys.exit(0 if (same if o.exact else bad == 0) else 1)
