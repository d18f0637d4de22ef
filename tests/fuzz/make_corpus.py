#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer harnesses: tests/fuzz/corpus/<harness>/.

    python3 tests/fuzz/make_corpus.py        # rewrites every seed file (deterministic)

Seeds are small valid inputs and a few damaged ones, built by hand from the documented
formats (no cltrain binary involved):
  checkpoint  include/cltrain/checkpoint.h, src/checkpoint.c: a 1120-byte little-endian header
              ("CLTRCKPT", version 1 or 2, header size, 1024-byte architecture text, parameter
              count, state count, optimizer kind, shuffle, optimizer steps, step, epoch, step in
              epoch, seed, world size, global batch), float32 parameters, float32 state, from
              version 2 the run state (96 bytes + 32 per rank), CRC32 (zlib) of every byte
              before it.
  idx         include/cltrain/data.h: big-endian magic 0x000008NN, NN big-endian uint32 sizes,
              the bytes; raw and gzip (also two concatenated gzip members).
  npy         include/cltrain/data.h, src/npy.c: "\x93NUMPY", version, header length, a dict
              of 'descr', 'fortran_order' and 'shape' padded to 64 bytes, the data.
  arch        include/cltrain/model.h: architecture strings, parsed for 1x28x28 and 10 classes
              (a first byte 0x01..0x04 picks another shape, see fuzz_arch.c).
  device      include/cltrain/device.h: byte 0 = rank | local_rank << 4, then the spec.
"""
import gzip
import os
import shutil
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

HEADER_BYTES = 1120
SGD, ADAMW = 0, 1


def run_state(world, sync=b"sync", balance=b"even", since=0, pending=0, flags=0,
              weights=None, ms=None, nranks=None):
    """The version-2 run state: 96 bytes, then 32 per rank."""
    n = world if nranks is None else nranks
    b = bytearray(96 + 32 * n)
    struct.pack_into("<8sII32sqII32s", b, 0, b"CLTRRUN\0", 96 + 32 * n, world, sync, since,
                     pending, flags, balance)
    for r in range(n):
        struct.pack_into("<IIdQQ", b, 96 + 32 * r, (weights or [1] * n)[r], 0,
                         (ms or [0.0] * n)[r], 0x1000 + r, 0x2000)
    return bytes(b)


def checkpoint(arch, params, state, kind, t=0, step=0, epoch=0, step_in_epoch=0, seed=1,
               shuffle=1, world=1, batch=128, version=1, header_bytes=HEADER_BYTES, crc=True,
               run=None):
    h = bytearray(HEADER_BYTES)
    struct.pack_into("<8sII", h, 0, b"CLTRCKPT", version, header_bytes)
    a = arch.encode()
    h[16:16 + len(a)] = a
    struct.pack_into("<QQIIqqqqQII", h, 16 + 1024, len(params), len(state), kind, shuffle, t,
                     step, epoch, step_in_epoch, seed, world, batch)
    if version >= 2 and run is None:
        run = run_state(world)
    body = bytes(h) + struct.pack("<%df" % len(params), *params) + \
        struct.pack("<%df" % len(state), *state) + (run or b"")
    c = zlib.crc32(body) & 0xffffffff
    return body + struct.pack("<I", c if crc else c ^ 0xdeadbeef)


def idx(dims, payload):
    return struct.pack(">I", 0x800 | len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + \
        bytes(payload)


def npy(descr, shape, payload, major=1, fortran=False, extra=""):
    shp = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    d = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, %s}" % (
        descr, "True" if fortran else "False", shp, extra)
    pre = 10 if major == 1 else 12
    hdr = (d + " " * ((64 - (pre + len(d) + 1) % 64) % 64) + "\n").encode()
    ln = struct.pack("<H", len(hdr)) if major == 1 else struct.pack("<I", len(hdr))
    return b"\x93NUMPY" + bytes([major, 0]) + ln + hdr + bytes(payload)


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


def write(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)

    # ---- checkpoint: "dense:2" on a 1x2x2 input = 4*2 + 2 = 10 parameters
    arch = "flatten,dense:2"
    params = [0.5 - 0.125 * i for i in range(10)]
    mom = [0.01 * i for i in range(10)]
    m_v = mom + [0.001 * i for i in range(10)]
    write("checkpoint", "valid-sgd.ckpt",
          checkpoint(arch, params, mom, SGD, t=7, step=7, epoch=1, step_in_epoch=2, world=2))
    write("checkpoint", "valid-adamw.ckpt",
          checkpoint(arch, params, m_v, ADAMW, t=3, step=3, epoch=0, step_in_epoch=3, seed=42,
                     shuffle=0, world=4))
    write("checkpoint", "valid-no-state.ckpt", checkpoint(arch, params, [], SGD))
    good = checkpoint(arch, params, mom, SGD, t=7, step=7, epoch=1, step_in_epoch=2)
    write("checkpoint", "bad-crc.ckpt", checkpoint(arch, params, mom, SGD, crc=False))
    write("checkpoint", "bad-truncated.ckpt", good[:len(good) // 2])
    write("checkpoint", "bad-trailing.ckpt", good + b"\0\0\0\0")
    write("checkpoint", "bad-header-only.ckpt", good[:HEADER_BYTES + 4])
    write("checkpoint", "bad-magic.ckpt", b"CLTRCKPX" + good[8:])
    write("checkpoint", "bad-version.ckpt", checkpoint(arch, params, mom, SGD, version=3))
    # version 2: the run state (sync mode's position, balance) after the optimizer state
    write("checkpoint", "valid-v2-sgd.ckpt",
          checkpoint(arch, params, mom, SGD, t=7, step=7, epoch=1, step_in_epoch=2, world=2,
                     version=2, run=run_state(2, b"local:3", b"throughput", flags=1,
                                              weights=[60, 4], ms=[0.009, 0.31])))
    write("checkpoint", "valid-v2-adamw.ckpt",
          checkpoint(arch, params, m_v, ADAMW, t=3, step=3, world=3, version=2))
    write("checkpoint", "bad-v2-no-run.ckpt", checkpoint(arch, params, mom, SGD, version=2,
                                                         run=b""))
    write("checkpoint", "bad-v2-run-world.ckpt",
          checkpoint(arch, params, mom, SGD, world=2, version=2, run=run_state(3, nranks=2)))
    write("checkpoint", "bad-v2-weights-0.ckpt",
          checkpoint(arch, params, mom, SGD, world=2, version=2, run=run_state(2, weights=[0, 0])))
    write("checkpoint", "bad-v2-nan-rate.ckpt",
          checkpoint(arch, params, mom, SGD, version=2, run=run_state(1, ms=[float("nan")])))
    write("checkpoint", "bad-v2-pending-2.ckpt",
          checkpoint(arch, params, mom, SGD, version=2, run=run_state(1, pending=2)))
    write("checkpoint", "bad-v2-sync-text.ckpt",
          checkpoint(arch, params, mom, SGD, version=2, run=run_state(1, sync=b"x" * 32)))
    write("checkpoint", "bad-nonfinite.ckpt",
          checkpoint(arch, params[:9] + [float("nan")], mom, SGD))
    write("checkpoint", "bad-inf-state.ckpt",
          checkpoint(arch, params, mom[:9] + [float("inf")], SGD))
    write("checkpoint", "bad-negative-epoch.ckpt", checkpoint(arch, params, mom, SGD, epoch=-1))
    write("checkpoint", "bad-world-0.ckpt", checkpoint(arch, params, mom, SGD, world=0))
    write("checkpoint", "bad-optimizer.ckpt", checkpoint(arch, params, mom, 7))
    write("checkpoint", "bad-no-params.ckpt", checkpoint(arch, [], mom, SGD))
    write("checkpoint", "bad-arch-unterminated.ckpt", checkpoint("x" * 1024, params, mom, SGD))
    write("checkpoint", "bad-short.ckpt", b"CLTRCKPT\1\0\0\0")

    # ---- idx: 3 images of 2x2, their labels
    images = idx([3, 2, 2], range(0, 240, 20))
    labels = idx([3], [0, 9, 4])
    write("idx", "images-3x2x2.idx3", images)
    write("idx", "labels-3.idx1", labels)
    write("idx", "images-3x2x2.idx3.gz", gz(images))
    write("idx", "labels-3.idx1.gz", gz(labels))
    write("idx", "images-two-members.idx3.gz", gz(images[:9]) + gz(images[9:]))
    # the last member's trailer (ISIZE 1) under-states the total: the output buffer must grow
    big = idx([1, 1000, 1100], bytes(1100000))
    write("idx", "images-grow-two-members.idx3.gz", gz(big[:-1]) + gz(big[-1:]))
    write("idx", "images-1x1x1.idx3", idx([1, 1, 1], [255]))
    write("idx", "matrix-2x3.idx2", idx([2, 3], range(6)))
    write("idx", "bad-truncated.idx3", images[:-1])
    write("idx", "bad-trailing.idx1", labels + b"\x07")
    write("idx", "bad-magic-float.idx3", b"\0\0\x0d\x03" + images[4:])
    write("idx", "bad-dims-4.idx", idx([1, 1, 1, 1], [1]))
    write("idx", "bad-zero-dim.idx3", idx([3, 0, 2], []))
    write("idx", "bad-absurd.idx3", idx([0x7fffffff, 0x7fffffff, 28], []))
    write("idx", "bad-header.idx3", images[:10])
    write("idx", "bad-gz-truncated.idx3.gz", gz(images)[:-6])
    write("idx", "bad-gz-trailing.idx3.gz", gz(images) + b"garbage")
    write("idx", "bad-gz-crc.idx3.gz", gz(images)[:-8] + b"\0\0\0\0" + gz(images)[-4:])
    write("idx", "bad-gz-magic-only", b"\x1f\x8b")
    write("idx", "bad-gz-isize.idx3.gz", gz(images)[:-4] + struct.pack("<I", 1))

    # ---- npy
    write("npy", "images-u1-2x3x3.npy", npy("|u1", [2, 3, 3], range(18)))
    write("npy", "images-f4-1x2x2x3.npy", npy("<f4", [1, 2, 2, 3], struct.pack("<12f", *range(12))))
    write("npy", "labels-i8.npy", npy("<i8", [3], struct.pack("<3q", 0, 9, 4)))
    write("npy", "labels-be-u2-v2.npy", npy(">u2", [2], struct.pack(">2H", 1, 2), major=2))
    write("npy", "scalar-f8-v3.npy", npy("<f8", [], struct.pack("<d", 1.5), major=3))
    write("npy", "empty-0x4.npy", npy("|i1", [0, 4], b""))
    write("npy", "bad-fortran.npy", npy("|u1", [2, 2], range(4), fortran=True))
    write("npy", "bad-extra-key.npy", npy("|u1", [2], range(2), extra="'x': 1, "))
    write("npy", "bad-truncated.npy", npy("|u1", [2, 3, 3], range(17)))
    write("npy", "bad-object.npy", npy("|O", [1], range(8)))

    # ---- arch
    arch_seeds = {
        "mlp": "mlp",
        "cnn": "cnn",
        "conv-pool": "conv3x3:32,relu,maxpool2,flatten,dense:10",
        "conv-stride-pad": "conv5x5:16/s2/p2,relu,dense:10",
        "dropout": "dropout:0.5,dense:10",
        "canonical-mix": "conv3x3:8,relu,maxpool2,conv3x3:8/s2/p1,relu,flatten,dense:32,relu,"
                         "dropout:0.25,dense:10",
        "spaces": " flatten , dense:10 ",
        "shape-cifar": "\x01conv3x3:16/p0,relu,maxpool2,flatten,dense:10",
        "shape-1x1x1": "\x03dense:1",
        "bad-empty-token": "relu,,dense:10",
        "bad-conv": "conv3x:32,dense:10",
        "bad-classes": "dense:11",
        "bad-dropout": "dropout:1.0,dense:10",
        "bad-pool-too-big": "maxpool64,dense:10",
        "bad-conv-after-dense": "dense:20,conv3x3:4,dense:10",
        "bad-padding": "conv3x3:4/p3,dense:10",
        "bad-empty": "",
    }
    for name, text in arch_seeds.items():
        write("arch", name, text)

    # ---- device: byte 0 = rank | local_rank << 4
    device_seeds = {
        "auto": (0, "auto"),
        "gpu-local1": (0x10, "gpu"),
        "cpu": (0, "cpu"),
        "pd": (0, "1:0"),
        "name": (0x20, "nvidia"),
        "per-rank": (1, "0=pocl,1=oclgrind,gpu"),
        "per-rank-default": (3, "1=0:0,cpu"),
        "bad-empty-entry": (0, "0=pocl,,1=x"),
        "bad-rank": (0, "x=pocl"),
        "bad-no-spec": (0, "0="),
        "bad-two-defaults": (0, "gpu,cpu"),
        "bad-pd": (0, "a:b"),
        "bad-notfound": (0, "nosuchthing"),
    }
    for name, (b0, text) in device_seeds.items():
        write("device", name, bytes([b0]) + text.encode())


if __name__ == "__main__":
    main()
