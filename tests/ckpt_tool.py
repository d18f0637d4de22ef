#!/usr/bin/env python3
"""Checkpoint files for the tests (include/cltrain/checkpoint.h), read independently of cltrain.

    ckpt_tool.py check PATH           the file's magic, format version, sizes and CRC32; prints
                                      "PATH: version V, step S, world W, CRC ok" (exit 1 if not)
    ckpt_tool.py to-v1 IN OUT         IN (version 2) as the version-1 file the same run wrote
                                      before the run state existed: no run state, version 1,
                                      the CRC32 recomputed
    ckpt_tool.py set-version IN OUT V IN with another version number, the CRC32 recomputed
    ckpt_tool.py show PATH            the run state (version 2): "sync S since N pending P
                                      balance B measured M weights W0,W1,.. ms X0,X1,.."
    ckpt_tool.py set-run IN OUT K=V   IN's run state with pending, since or weights (W0,W1,..)
                                      set, the CRC32 recomputed: files cltrain must refuse
    ckpt_tool.py watch PATH LOG STOP TIMEOUT [KEEP]
                                      checks PATH each time it changes (polled every 0.05 s:
                                      inode, size, mtime) until the file STOP exists or TIMEOUT
                                      seconds pass; a line per checkpoint seen in LOG ("ok step
                                      S world W version V" or "BAD ..."); exit 1 if any was
                                      bad. KEEP: a folder where each good one is kept, as
                                      step<S>-world<W>.ck
The layout: a 1120-byte header ("CLTRCKPT", version, header size, 1024-byte architecture,
parameter count, state count, optimizer, shuffle, optimizer steps, step, epoch, step in epoch,
seed, world, batch), float32 parameters and state, from version 2 a run state of 96 + 32 x world
bytes ("CLTRRUN\\0" ...), then a CRC32 (zlib) of every byte before it.
"""
import os
import struct
import sys
import time
import zlib

HEADER = 1120


def parse(b):
    """(version, step, world, header fields) of a whole checkpoint, or raises ValueError."""
    if len(b) < HEADER + 4 or b[:8] != b"CLTRCKPT":
        raise ValueError("not a checkpoint (%d bytes)" % len(b))
    version, hbytes = struct.unpack_from("<II", b, 8)
    if version not in (1, 2) or hbytes != HEADER:
        raise ValueError("version %d, header %d" % (version, hbytes))
    pc, sc, kind, shuffle, t, step, epoch, sie, seed, world, batch = \
        struct.unpack_from("<QQIIqqqqQII", b, 16 + 1024)
    run = 96 + 32 * world if version >= 2 else 0
    want = HEADER + 4 * (pc + sc) + run + 4
    if len(b) != want:
        raise ValueError("%d bytes, the header says %d" % (len(b), want))
    stored, = struct.unpack_from("<I", b, len(b) - 4)
    crc = zlib.crc32(b[:-4]) & 0xffffffff
    if crc != stored:
        raise ValueError("CRC32 mismatch (stored %08x, computed %08x)" % (stored, crc))
    if run and b[len(b) - 4 - run:len(b) - 4 - run + 8] != b"CLTRRUN\0":
        raise ValueError("no run state")
    return version, step, world, (pc, sc, run)


def with_crc(body):
    return body + struct.pack("<I", zlib.crc32(body) & 0xffffffff)


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "check" and len(argv) == 3:
        try:
            v, step, world, _ = parse(open(argv[2], "rb").read())
        except (OSError, ValueError) as e:
            print("%s: %s" % (argv[2], e))
            return 1
        print("%s: version %d, step %d, world %d, CRC ok" % (argv[2], v, step, world))
        return 0
    if cmd == "to-v1" and len(argv) == 4:
        b = open(argv[2], "rb").read()
        v, _, _, (pc, sc, run) = parse(b)
        if v != 2:
            raise SystemExit("to-v1: %s is version %d" % (argv[2], v))
        body = bytearray(b[:HEADER + 4 * (pc + sc)])
        struct.pack_into("<I", body, 8, 1)
        open(argv[3], "wb").write(with_crc(bytes(body)))
        return 0
    if cmd == "set-version" and len(argv) == 5:
        b = bytearray(open(argv[2], "rb").read()[:-4])
        struct.pack_into("<I", b, 8, int(argv[4]))
        open(argv[3], "wb").write(with_crc(bytes(b)))
        return 0
    if cmd == "show" and len(argv) == 3:
        b = open(argv[2], "rb").read()
        v, _, world, (pc, sc, run) = parse(b)
        if v < 2:
            print("version %d: no run state" % v)
            return 0
        o = HEADER + 4 * (pc + sc)
        _, _, _, sync, since, pending, flags, bal = struct.unpack_from("<8sII32sqII32s", b, o)
        ranks = [struct.unpack_from("<IIdQQ", b, o + 96 + 32 * r) for r in range(world)]
        print("sync %s since %d pending %d balance %s measured %d weights %s ms %s" % (
            sync.rstrip(b"\0").decode(), since, pending, bal.rstrip(b"\0").decode(), flags & 1,
            ",".join(str(x[0]) for x in ranks), ",".join("%.4g" % x[2] for x in ranks)))
        return 0
    if cmd == "set-run" and len(argv) == 5:
        b = bytearray(open(argv[2], "rb").read())
        _, _, world, (pc, sc, run) = parse(bytes(b))
        o = HEADER + 4 * (pc + sc)
        key, val = argv[4].split("=", 1)
        if key == "pending":
            struct.pack_into("<I", b, o + 56, int(val))
        elif key == "since":
            struct.pack_into("<q", b, o + 48, int(val))
        elif key == "weights":
            for r, w in enumerate(val.split(",")[:world]):
                struct.pack_into("<I", b, o + 96 + 32 * r, int(w))
        else:
            raise SystemExit("set-run: unknown field " + key)
        open(argv[3], "wb").write(with_crc(bytes(b[:-4])))
        return 0
    if cmd == "watch" and len(argv) in (6, 7):
        path, log, stop, limit = argv[2], argv[3], argv[4], float(argv[5])
        keep = argv[6] if len(argv) == 7 else None
        seen, bad, t_end = None, 0, time.time() + limit
        with open(log, "a") as out:
            while time.time() < t_end and not os.path.exists(stop):
                try:
                    with open(path, "rb") as f:   # the renamed file is never written again
                        st = os.fstat(f.fileno())
                        key = (st.st_ino, st.st_size, st.st_mtime_ns)
                        if key != seen:
                            seen = key
                            try:
                                b = f.read()
                                v, step, world, _ = parse(b)
                                if keep:
                                    open(os.path.join(keep, "step%d-world%d.ck" % (step, world)),
                                         "wb").write(b)
                                out.write("ok step %d world %d version %d\n" % (step, world, v))
                            except ValueError as e:
                                bad += 1
                                out.write("BAD %s\n" % e)
                            out.flush()
                except FileNotFoundError:
                    pass
                time.sleep(0.05)
        return 1 if bad else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
