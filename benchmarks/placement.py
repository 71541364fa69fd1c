"""Placing payloads into ring memory: streaming stores beside ordinary copies, same run.

    .venv/bin/python benchmarks/placement.py

A capture writes each ring byte once, and a reader looks at it much later (a gulp is
megabytes, long out of cache by then).  An ordinary store first reads the destination cache
line from memory ("read for ownership") only to overwrite it; a streaming (non-temporal)
store does not.  Two placements, each into a 128 MiB ring (pre-faulted) from a 64-packet
receive buffer, 16 sources, time-major order:

* one block per packet (VDIF, tbn-like ``place_source_block``): ``spec.copy_to_ring``
  (streaming stores) beside ``spec.copy_bytes`` (an ordinary ``memcpy``);
* CHIPS ``[time][chan][src][32 B]``: ``chips.place_row`` (a whole time slot, written row by
  row with streaming stores, two sources per cache line) beside ``chips.place`` per packet
  (one 32-byte copy per channel, what Bifrost does).

GB/s counts payload bytes placed.  The figures back the claims in docs/capture.md and
docs/adding-a-format.md.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asbru.capture.borrow import borrow  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from asbru.formats import chips  # noqa: E402
from asbru.formats.spec import (NCHAN, NDESC, SEQ, SRC, copy_bytes, copy_to_ring,  # noqa: E402
                                store_fence)

NSRC = 16
RING_BYTES = 128 << 20
NBUF = 64                  # packets in the receive buffer
TOTAL = 1 << 30            # payload bytes placed per measurement


@numba.njit(nogil=True, cache=True)
def _blocks(ring, pkts, npkt, p, stream):
    # borrowed views, as in the capture loop: no atomic reference counting per slice (a
    # locked instruction after streaming stores waits for them to reach memory)
    ring = borrow(ring)
    pkts = borrow(pkts)
    sb = NSRC * p
    nslot = ring.size // sb
    for i in range(npkt):
        j = i % pkts.shape[0]
        o = ((i // NSRC) % nslot) * sb + (i % NSRC) * p
        if stream:
            copy_to_ring(ring, o, pkts[j], 16, p)
        else:
            copy_bytes(ring, o, pkts[j], 16, p)
    store_fence()


@numba.njit(nogil=True, cache=True)
def _chips(ring, pkts, npkt, p, d, addrs, rows):
    ring = borrow(ring)
    pkts = borrow(pkts)
    d = borrow(d)
    addrs = borrow(addrs)
    sb = NSRC * p
    nslot = ring.size // sb
    i = 0
    while i < npkt:
        t = (i // NSRC) % nslot
        slot = ring[t * sb:(t + 1) * sb]
        if rows:
            for s in range(NSRC):
                addrs[s] = pkts[(i + s) % pkts.shape[0]].ctypes.data + 16
            chips.place_row(addrs, d, slot, NSRC)
        else:
            for s in range(NSRC):
                d[SRC] = s
                chips.place(pkts[(i + s) % pkts.shape[0], 16:16 + p], d, slot, NSRC)
        i += NSRC
    store_fence()


def _ring() -> np.ndarray:
    raw = np.empty(RING_BYTES + 4096, dtype=np.uint8)
    start = (-raw.ctypes.data) % 4096
    ring = raw[start:start + RING_BYTES]
    ring[:] = 1                                # pre-faulted
    return ring


def _rate(fn, npkt: int, p: int) -> float:
    fn(1024)                                   # compile / warm
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        fn(npkt)
        best = max(best, npkt * p / (time.perf_counter() - t0) / 1e9)
    return best


def main() -> int:
    print(describe(), flush=True)
    ring = _ring()
    rng = np.random.default_rng(0)
    for p in (8192, 1024):
        pkts = rng.integers(0, 256, (NBUF, 16 + p), dtype=np.uint8)
        npkt = TOTAL // p // NSRC * NSRC
        ours = _rate(lambda n: _blocks(ring, pkts, n, p, True), npkt, p)
        base = _rate(lambda n: _blocks(ring, pkts, n, p, False), npkt, p)
        print(f"one block per packet, {p} B: copy_to_ring {ours:.1f} GB/s "
              f"(baseline memcpy copy_bytes {base:.1f} GB/s, ratio {ours / base:.2f})", flush=True)
    d = np.full(NDESC, -1, dtype=np.int64)
    addrs = np.zeros(NSRC, dtype=np.int64)
    for p in (8160, 1024):
        pkts = rng.integers(0, 256, (NBUF, 16 + p), dtype=np.uint8)
        d[NCHAN], d[SEQ] = p // 32, 0
        npkt = TOTAL // p // NSRC * NSRC
        ours = _rate(lambda n: _chips(ring, pkts, n, p, d, addrs, True), npkt, p)
        base = _rate(lambda n: _chips(ring, pkts, n, p, d, addrs, False), npkt, p)
        print(f"CHIPS [chan][src][32 B], {p} B: place_row {ours:.1f} GB/s "
              f"(baseline place per packet {base:.1f} GB/s, ratio {ours / base:.2f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
