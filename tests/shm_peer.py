"""A process on the other side of a shared ring, for tests/test_ring_shm.py (no tests here).

    python tests/shm_peer.py write NAME NSEQ NSPAN SPAN [DELAY]   # writes, then ends writing
    python tests/shm_peer.py read NAME SPAN GUARANTEE [HOLD]      # prints one JSON summary line

The writer fills span k of sequence n with the byte (n * 31 + k) % 256 and flags every frame
(64 bytes, or 100 if the span is not a multiple of 64) of it with k % 3; header {"n": n}, time tag 1000 + n, name "obs<n>".  The reader
prints "ready" once its first sequence is open, then one JSON line per span it read
(``span`` lines) when HOLD is "hold-first", holding its first span until killed.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from asbru.ring import Ring


def write(name: str, nseq: int, nspan: int, span: int, delay: float = 0.0) -> None:
    ring = Ring(space="shm", name=name)
    ring.resize(span, 4 * span)
    print("ready", flush=True)
    sys.stdin.readline()                      # the test says when to start
    with ring.begin_writing() as w:
        for n in range(nseq):
            with w.begin_sequence(name=f"obs{n}", time_tag=1000 + n, header={"n": n}) as seq:
                for k in range(nspan):
                    with seq.reserve(span) as s:
                        s.data[0, :] = (n * 31 + k) % 256
                        frame = 64 if span % 64 == 0 else 100
                        s.set_flags(np.full((span // frame, 1), k % 3, np.uint8), frame)
                    if delay:
                        time.sleep(delay)
    print("done", flush=True)
    ring.close()


def read(name: str, span: int, guarantee: bool, hold: str = "") -> None:
    ring = Ring(space="shm", name=name)
    out = {"spans": 0, "bytes": 0, "bad": 0, "sequences": [], "flags_bad": 0, "overwritten": 0}
    first = True
    for seq in ring.read(guarantee=guarantee):
        n = seq.header_json["n"]
        out["sequences"].append([seq.name, seq.time_tag, n])
        if first:
            print("ready", flush=True)
        for s in seq.read(span):
            k = s.offset // span
            data = s.data
            if first and hold == "hold-first":
                print(json.dumps({"holding": s.offset}), flush=True)
                time.sleep(3600)                      # killed while holding the span
            first = False
            lost = s.size_overwritten
            out["overwritten"] += lost
            if not lost and not (data == (n * 31 + k) % 256).all():
                out["bad"] += 1
            f = s.flags
            if f is None or not (f == k % 3).all():
                out["flags_bad"] += 1
            out["spans"] += 1
            out["bytes"] += s.size
            if hold == "slow":
                time.sleep(0.002)
        first = False
    out["writer_died"] = ring.writer_died
    ring.close()
    print(json.dumps(out), flush=True)


def digest(name: str, span: int) -> None:
    """SHA-256 of every byte and of every flag row read, per sequence."""
    import hashlib
    ring = Ring(space="shm", name=name)
    print("ready", flush=True)
    out = []
    for seq in ring.read(guarantee=True):
        h, f = hashlib.sha256(), hashlib.sha256()
        nbyte = 0
        for s in seq.read(span):
            h.update(s.data.tobytes())
            nbyte += s.size
            if s.flags is not None:
                f.update(s.flags.tobytes())
        out.append([seq.time_tag, nbyte, h.hexdigest(), f.hexdigest()])
    ring.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    role, args = sys.argv[1], sys.argv[2:]
    if role == "digest":
        digest(args[0], int(args[1]))
    elif role == "write":
        write(args[0], int(args[1]), int(args[2]), int(args[3]), float(args[4]) if len(args) > 4 else 0.0)
    else:
        read(args[0], int(args[1]), args[2] == "1", args[3] if len(args) > 3 else "")
