"""A shared-memory ring read by another process, beside memcpy measured in that process.

    python benchmarks/shm_ring.py [--gib 4] [--file-mib 512]

1. Capture writing: a DiskReader (chips_255, 16 sources, a page-cached file, read
   ``--gib`` GiB in passes) writes into ``Ring(space='shm')``; a second process reads every
   span with a guarantee and copies it out (``np.copyto`` into its own buffer).  Printed: the
   capture's rate, the reader's rate (bytes over its wall time: it keeps up when this equals
   the capture's), and the reader's own capacity while the capture runs: bytes over the time
   it was not waiting for data (acquire, copy, release), beside the baseline.  Target:
   capacity >= 0.5x memcpy.

The baseline ("memcpy"), measured in the reader process after it has read: ``np.copyto`` of
the same span size, the spans taken in turn from a buffer the size of the ring (as the
reader takes them from the ring), into the same destination buffer.
2. Ring alone: the writer only reserves and commits (no bytes written), so the reader process
   is the bottleneck: its rate beside the same memcpy.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asbru.ring import Ring  # noqa: E402
from benchmarks.machine import describe  # noqa: E402

MiB = 1 << 20


def memcpy_gbps(span: int, ring_bytes: int, total: int) -> float:
    """np.copyto of ``span``-byte pieces taken in turn from a buffer the size of the ring (as
    the reader takes them from the ring) into one buffer of the reader's."""
    nspan = max(1, ring_bytes // span)
    src = np.ones(nspan * span, dtype=np.uint8)
    dst = np.empty(span, dtype=np.uint8)
    n = max(nspan, total // span)
    for i in range(nspan):
        np.copyto(dst, src[i * span:(i + 1) * span])
    t0 = time.perf_counter()
    for i in range(n):
        k = i % nspan
        np.copyto(dst, src[k * span:(k + 1) * span])
    return n * span / (time.perf_counter() - t0) / 1e9


def reader(name: str) -> None:
    """The reading process: prints one JSON line."""
    ring = Ring(space="shm", name=name)
    print("ready", flush=True)
    nbyte = 0
    t0 = None
    own = None
    for seq in ring.read(guarantee=True):
        span = ring.contiguous_span
        if own is None:
            own = np.empty(span, dtype=np.uint8)
            waited0 = ring.reader_wait_seconds
            t0 = time.perf_counter()
        for s in seq.read(span):
            np.copyto(own[:s.size], s.data_view()[0])
            nbyte += s.size
    dt = time.perf_counter() - t0
    waited = ring.reader_wait_seconds - waited0
    cap = ring.total_span
    ring.close()
    base = memcpy_gbps(span, cap, min(nbyte, 2 << 30))   # same process and sizes, afterwards
    print(json.dumps({"nbyte": nbyte, "seconds": dt, "waited": waited, "memcpy": base,
                      "span": int(span)}), flush=True)


def start_reader(name: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, __file__, "--reader", name], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "ready"
    return p


def chips_file(mib: int) -> tuple[Path, int, int]:
    from benchmarks.gpu import chips_file as make
    return make(mib)


def with_capture(gib: float, file_mib: int) -> None:
    from asbru.packet_capture import DiskReader, PacketCaptureCallback
    path, nrec, nbytes = chips_file(file_mib)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    ring = Ring(space="shm", name=name)
    try:
        passes = max(1, int(gib * (1 << 30) // nbytes))
        it = iter(range(1, 1 << 30))
        cb = PacketCaptureCallback()
        cb.set_chips(lambda seq0, chan0, nchan, nsrc: (next(it) << 32, None))
        with open(path, "rb") as fh:
            dr = DiskReader("chips_255", fh, ring, 16, 0, 128, 1, cb)
            proc = start_reader(name)
            while ring.guaranteed_readers < 1:
                time.sleep(0.001)
            t0 = time.perf_counter()
            for _ in range(passes):
                dr.seek(0, os.SEEK_SET)
                while int(dr.recv()) not in (1, 4, 5, 6):
                    pass
            dt = time.perf_counter() - t0
            dr.end()
        got = json.loads(proc.communicate(timeout=600)[0].strip().splitlines()[-1])
    finally:
        ring.close()
        path.unlink(missing_ok=True)
    cap = passes * nbytes / dt / 1e9
    rd = got["nbyte"] / got["seconds"] / 1e9
    busy = got["nbyte"] / max(got["seconds"] - got["waited"], 1e-9) / 1e9
    print(f"shm ring, DiskReader capture writing ({got['nbyte'] / 2**30:.1f} GiB, spans of "
          f"{got['span'] / MiB:.0f} MiB): capture {cap:.2f} GB/s, reader process {rd:.2f} GB/s "
          f"(keeps up: ratio {rd / cap:.2f}); reader capacity (time not waiting) {busy:.2f} GB/s beside "
          f"memcpy {got['memcpy']:.2f} GB/s in the reader process: ratio {busy / got['memcpy']:.2f} "
          f"(target >= 0.5)", flush=True)


def ring_alone(gib: float) -> None:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    span = 16 * MiB
    ring = Ring(space="shm", name=name)
    try:
        ring.resize(span, 8 * span)
        proc = start_reader(name)
        while ring.guaranteed_readers < 1:
            time.sleep(0.001)
        n = int(gib * (1 << 30)) // span
        with ring.begin_writing() as w, w.begin_sequence(name="bench", time_tag=1) as seq:
            for _ in range(n):
                with seq.reserve(span):
                    pass
        got = json.loads(proc.communicate(timeout=600)[0].strip().splitlines()[-1])
    finally:
        ring.close()
    rd = got["nbyte"] / got["seconds"] / 1e9
    print(f"shm ring alone (writer only commits, 16 MiB spans, {got['nbyte'] / 2**30:.1f} GiB): reader "
          f"process {rd:.2f} GB/s beside memcpy {got['memcpy']:.2f} GB/s: ratio {rd / got['memcpy']:.2f}",
          flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gib", type=float, default=4.0)
    p.add_argument("--file-mib", type=int, default=512)
    p.add_argument("--reader", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.reader:
        reader(a.reader)
        return
    print(describe(), flush=True)
    ring_alone(a.gib)
    with_capture(a.gib, a.file_mib)


if __name__ == "__main__":
    main()
