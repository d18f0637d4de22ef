#!/usr/bin/env python3
"""Writes NumPy .npy data sets for cltrain's tests, with the standard library only (no numpy).

  make_npy.py from-idx IDX_DIR OUT_DIR [--float32] [--channels-last] [--labels DTYPE] [--limit N]
      Fashion-MNIST (or any MNIST-format folder) as train/test_{images,labels}.npy: images uint8
      N x 28 x 28 (or float32 = pixel/255; --channels-last adds a trailing axis of 1), labels of
      the given dtype (numpy descr, e.g. '<i8', '|u1', '>u2'; default '<i8' as numpy makes them).
  make_npy.py synthetic OUT_DIR [--train N] [--test N] [--classes K] [--seed S] [--float32]
      A learnable 3-channel 32x32 set (channels last): class k is a bright square whose colour
      channel and place depend on k, on a noisy background.
  make_npy.py damaged OUT_DIR
      Copies of one small valid set, each damaged in one way, as OUT_DIR/<case>/; prints the
      case names, one per line (the trainer must reject each with one line and exit 1).

Files follow the .npy format 1.0 as numpy.save writes it: magic, version, header length,
a dict literal padded with spaces to a multiple of 64 bytes, ended by a newline.
"""
import argparse
import gzip
import os
import random
import struct
import sys


def npy_bytes(descr, shape, payload, fortran=False, version=(1, 0), header_extra=""):
    shp = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    d = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, %s}" % (
        descr, "True" if fortran else "False", shp, header_extra)
    pre = 10 if version[0] == 1 else 12
    pad = 64 - (pre + len(d) + 1) % 64
    header = (d + " " * (pad % 64) + "\n").encode("ascii")
    head = b"\x93NUMPY" + bytes(version)
    head += struct.pack("<H", len(header)) if version[0] == 1 else struct.pack("<I", len(header))
    return head + header + payload


def write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def pack_ints(descr, values):
    order = {"<": "<", ">": ">", "|": "<"}[descr[0]]
    code = {("i", 1): "b", ("u", 1): "B", ("i", 2): "h", ("u", 2): "H", ("i", 4): "i",
            ("u", 4): "I", ("i", 8): "q", ("u", 8): "Q"}[(descr[1], int(descr[2:]))]
    return struct.pack(order + code * len(values), *values)


def read_idx(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return dims, raw[4 + 4 * ndim:]


def find(d, base):
    for name in (base, base + ".gz"):
        if os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    sys.exit("make_npy.py: no %s[.gz] in %s" % (base, d))


def from_idx(a):
    os.makedirs(a.out, exist_ok=True)
    for split, npy in (("train", "train"), ("t10k", "test")):
        idims, pixels = read_idx(find(a.idx_dir, split + "-images-idx3-ubyte"))
        _, labels = read_idx(find(a.idx_dir, split + "-labels-idx1-ubyte"))
        n = idims[0] if not a.limit else min(a.limit, idims[0])
        shape = (n, idims[1], idims[2]) + ((1,) if a.channels_last else ())
        pixels = pixels[: n * idims[1] * idims[2]]
        if a.float32:
            payload = struct.pack("<%df" % len(pixels), *[v / 255.0 for v in pixels])
            descr = "<f4"
        else:
            payload, descr = bytes(pixels), "|u1"
        write(os.path.join(a.out, npy + "_images.npy"), npy_bytes(descr, shape, payload))
        write(os.path.join(a.out, npy + "_labels.npy"),
              npy_bytes(a.labels, (n,), pack_ints(a.labels, list(labels[:n]))))


def synthetic_split(n, classes, rng, as_float):
    h = w = 32
    images, labels = bytearray(n * h * w * 3), []
    for i in range(n):
        k = rng.randrange(classes)
        labels.append(k)
        ch = k % 3
        q = k // 3                       # the square's quadrant
        qy, qx = q % 2, (q // 2) % 2
        y0 = 4 + 14 * qy + rng.randrange(-2, 3)
        x0 = 4 + 14 * qx + rng.randrange(-2, 3)
        base = i * h * w * 3
        for y in range(h):
            for x in range(w):
                for c in range(3):
                    v = rng.randrange(0, 90)
                    if c == ch and y0 <= y < y0 + 10 and x0 <= x < x0 + 10:
                        v += 150
                    images[base + (y * w + x) * 3 + c] = v
    if as_float:
        return "<f4", struct.pack("<%df" % len(images), *[v / 255.0 for v in images]), labels
    return "|u1", bytes(images), labels


def synthetic(a):
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    for split, n in (("train", a.train), ("test", a.test)):
        descr, payload, labels = synthetic_split(n, a.classes, rng, a.float32)
        write(os.path.join(a.out, split + "_images.npy"), npy_bytes(descr, (n, 32, 32, 3), payload))
        write(os.path.join(a.out, split + "_labels.npy"),
              npy_bytes("<i8", (n,), pack_ints("<i8", labels)))


def damaged(a):
    """One small valid set (uint8, 8 x 4 x 4, labels 0..2), then one damage per case."""
    n, h, w = 8, 4, 4
    pix = bytes((i * 7) % 256 for i in range(n * h * w))
    lab = [i % 3 for i in range(n)]
    good = {
        "train_images.npy": npy_bytes("|u1", (n, h, w), pix),
        "train_labels.npy": npy_bytes("<i8", (n,), pack_ints("<i8", lab)),
        "test_images.npy": npy_bytes("|u1", (n, h, w), pix),
        "test_labels.npy": npy_bytes("<i8", (n,), pack_ints("<i8", lab)),
    }
    img = good["train_images.npy"]
    cases = {
        # case name: (file, bytes, what the one-line error says)
        "magic": ("train_images.npy", b"\x93NUMPX" + img[6:], "not a .npy file"),
        "version": ("train_images.npy", img[:6] + b"\x04\x00" + img[8:], "format version 4.0"),
        "truncated": ("train_images.npy", img[:-5], "truncated"),
        "trailing": ("train_images.npy", img + b"\0\0\0", "trailing garbage"),
        "header-length": ("train_images.npy", img[:8] + struct.pack("<H", 60000) + img[10:],
                          "truncated header"),
        "fortran": ("train_images.npy", npy_bytes("|u1", (n, h, w), pix, fortran=True),
                    "Fortran order"),
        "dtype": ("train_images.npy", npy_bytes("<c8", (n, h, w), pix * 8), "dtype '<c8'"),
        "object": ("train_images.npy", npy_bytes("|O", (n, h, w), pix), "dtype '|O'"),
        "image-int16": ("train_images.npy", npy_bytes("<i2", (n, h, w), pix * 2),
                        "expected uint8"),
        "image-dims": ("train_images.npy", npy_bytes("|u1", (n, h * w), pix), "2 dimensions"),
        "extra-key": ("train_images.npy",
                      npy_bytes("|u1", (n, h, w), pix, header_extra="'x': 1, "), "key 'x'"),
        "shape-text": ("train_images.npy",
                       img.replace(b"(8, 4, 4)", b"(8, 4, q)"), "malformed header"),
        "nan": ("train_images.npy",
                npy_bytes("<f4", (n, h, w), struct.pack("<f", float("nan")) * (n * h * w)),
                "not a finite float32"),
        "label-float": ("train_labels.npy", npy_bytes("<f4", (n,), struct.pack("<8f", *lab)),
                        "float dtype"),
        "label-negative": ("train_labels.npy",
                           npy_bytes("<i8", (n,), pack_ints("<i8", [-1] + lab[1:])),
                           "label -1 at index 0"),
        "label-count": ("test_labels.npy", npy_bytes("<i8", (n - 1,), pack_ints("<i8", lab[1:])),
                        "holds 8 images but"),
        "test-missing": ("test_images.npy", None, "cannot open"),
        "test-shape-3ch": ("test_images.npy", npy_bytes("|u1", (n, 2, 2, 4), pix),
                           "test images are 4x2x2"),
    }
    for case, (name, data, expect) in cases.items():
        d = os.path.join(a.out, case)
        os.makedirs(d, exist_ok=True)
        for f, b in good.items():
            write(os.path.join(d, f), b)
        if data is None:
            os.remove(os.path.join(d, name))
        else:
            write(os.path.join(d, name), data)
        print("%s\t%s\t%s" % (case, name, expect))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("from-idx")
    q.add_argument("idx_dir")
    q.add_argument("out")
    q.add_argument("--float32", action="store_true")
    q.add_argument("--channels-last", action="store_true")
    q.add_argument("--labels", default="<i8")
    q.add_argument("--limit", type=int, default=0)
    q = sub.add_parser("synthetic")
    q.add_argument("out")
    q.add_argument("--train", type=int, default=2000)
    q.add_argument("--test", type=int, default=500)
    q.add_argument("--classes", type=int, default=4)
    q.add_argument("--seed", type=int, default=1)
    q.add_argument("--float32", action="store_true")
    q = sub.add_parser("damaged")
    q.add_argument("out")
    a = p.parse_args()
    {"from-idx": from_idx, "synthetic": synthetic, "damaged": damaged}[a.cmd](a)


if __name__ == "__main__":
    main()
