"""Where a sniffer drain's time goes, per packet, on memory the kernel wrote long ago.

    .venv/bin/python benchmarks/drain.py [--payload 1024] [--repeat 3]

``UDPSniffer`` reads packets where the kernel put them, in a TPACKET_V3 ring.  In
``benchmarks/capture.py`` that ring is pre-filled (96 blocks of 4 MiB) and then drained, so
every byte comes from DRAM.  This script splits such a drain into its memory-bound parts,
each timed on a ring of synthetic IPv4/UDP frames (``benchmarks/walk.py``'s) that is evicted
from the caches before every pass, in ns per frame (best of ``--repeat``):

* ``copy the blocks``: one memcpy of every block into a 64 MiB destination, the bytes read
  and written once with nothing per packet (the bound any drain faces);
* ``walk``: ``walk_block`` (follow the frame headers, find each UDP payload);
* ``walk + place``: then copy each payload into a ring slot with streaming stores
  (``spec.copy_to_ring``, what ``place`` does for a one-block-per-packet format);
* ``walk + place, prefetch``: the same, asking for the payload of the packet
  ``AHEAD`` frames later before each copy;
* ``walk + place, 4 KiB pages``: the same blocks in memory mapped with 4 KiB pages only
  (``MADV_NOHUGEPAGE``), as the kernel maps its packet ring, where numpy may ask for huge
  pages: a TLB miss per page, and the hardware prefetchers stop at every page boundary.

The rest of a real drain's time per packet (decode, the window logic, counters, masks) is
the difference between these and the UDPSniffer figure of ``benchmarks/capture.py``.
"""
from __future__ import annotations

import argparse
import mmap
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asbru.capture.borrow import borrow  # noqa: E402
from asbru.formats.spec import copy_to_ring, store_fence  # noqa: E402
from asbru.sockets import packet_ring as pr  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from benchmarks.walk import BLOCK, NBLOCK, build_ring  # noqa: E402

AHEAD = 2     # frames ahead whose payload is asked for
LINES = 4     # cache lines of it asked for (the hardware prefetcher follows the rest)


@numba.njit(nogil=True)
def copy_blocks(ring, dst):
    ring, dst = borrow(ring), borrow(dst)
    m = dst.shape[0]
    o = 0
    for b in range(NBLOCK):
        if o + BLOCK > m:
            o = 0
        copy_to_ring(dst, o, ring, b * BLOCK, BLOCK)
        o += BLOCK
    store_fence()


@numba.njit(nogil=True)
def walk_place(ring, off, ln, dst, slot, prefetch):
    # borrowed, as the capture loop's arrays are: no atomic reference counting per copy
    # (a locked instruction waits for the streaming stores before it: 3x slower here)
    ring, off, ln, dst = borrow(ring), borrow(off), borrow(ln), borrow(dst)
    n_all = 0
    m = dst.shape[0] // slot
    k = 0
    base = ring.ctypes.data
    for b in range(NBLOCK):
        n = pr.walk_block(ring, BLOCK, b, off, ln)
        for i in range(n):
            if prefetch and i + AHEAD < n:
                a = base + off[i + AHEAD]
                for j in range(LINES):
                    pr._prefetch(a + 64 * j)
            copy_to_ring(dst, k * slot, ring, off[i], ln[i])
            k += 1
            if k >= m:
                k = 0
        n_all += n
    store_fence()
    return n_all


@numba.njit(nogil=True)
def walk_only(ring, off, ln):
    n_all = 0
    for b in range(NBLOCK):
        n_all += pr.walk_block(ring, BLOCK, b, off, ln)
    return n_all


def aligned(nbyte: int) -> np.ndarray:
    """``nbyte`` bytes starting on a cache line, written (as a ring's memory is)."""
    raw = np.ones(nbyte + 64, np.uint8)
    skip = -raw.ctypes.data % 64
    return raw[skip:skip + nbyte]


def main() -> int:
    print(describe(), flush=True)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--payload", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    ring, npk = build_ring(a.payload)
    nframe = npk * NBLOCK
    small_map = mmap.mmap(-1, ring.nbytes)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        small_map.madvise(mmap.MADV_NOHUGEPAGE)
    small = np.frombuffer(small_map, np.uint8)
    small[:] = ring
    off = np.zeros(1 << 16, np.int64)
    ln = np.zeros(1 << 16, np.int64)
    slot = a.payload + 32
    dst = aligned(64 << 20)
    evict = np.ones(512 << 20, np.uint8)
    cases = {
        "copy the blocks": lambda: copy_blocks(ring, dst),
        "walk": lambda: walk_only(ring, off, ln),
        "walk + place": lambda: walk_place(ring, off, ln, dst, slot, False),
        "walk + place, prefetch": lambda: walk_place(ring, off, ln, dst, slot, True),
        "walk + place, 4 KiB pages": lambda: walk_place(small, off, ln, dst, slot, False),
    }
    for f in cases.values():
        f()                                    # compile
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(a.repeat):
        for name, f in cases.items():
            evict += 1
            t0 = time.perf_counter()
            f()
            best[name] = min(best[name], (time.perf_counter() - t0) / nframe)
    ring_bytes = NBLOCK * BLOCK
    print(f"sniffer drain parts, {a.payload} B datagrams ({nframe} frames in {NBLOCK} blocks of "
          f"{BLOCK >> 20} MiB, cold), ns per frame:")
    for name, t in best.items():
        extra = (f" ({ring_bytes / (t * nframe) / 1e9:.1f} GB/s of blocks)" if name == "copy the blocks"
                 else f" ({1e-6 / t:.2f} M frames/s)")
        print(f"  {name}: {t * 1e9:.1f}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
