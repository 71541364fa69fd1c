"""The sniffer's block walk over cold memory, with and without asking for headers ahead.

    .venv/bin/python benchmarks/walk.py [--payload 1024] [--repeat 5]

``asbru.sockets.packet_ring.walk_block`` finds the UDP payloads of one TPACKET_V3 block by
following each frame header's ``next_offset``: a chain of dependent loads through memory
the kernel wrote long before (a pre-filled ring of 96 blocks of 4 MiB is far bigger than
the caches).  It asks for the frame header a few frames ahead (``llvm.prefetch``), so that
several misses are in flight at once.  This script builds such blocks (valid IPv4/UDP
frames of ``--payload`` bytes of VDIF), evicts them from the caches before each pass (a
512 MiB write), and times the walk with the prefetch beside the same walk compiled without
it (the baseline), interleaved; best of ``--repeat``.  ns per frame.
"""
from __future__ import annotations

import argparse
import sys
import time
import types as pytypes
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asbru.sockets import packet_ring as pr  # noqa: E402
from benchmarks.machine import describe  # noqa: E402

BLOCK = 4 << 20
NBLOCK = 96


@numba.njit(inline="always")
def _no_prefetch(addr):
    pass


def _variant(name: str, prefetch: object) -> object:
    """walk_block's own code compiled with ``_prefetch`` replaced."""
    fn = pr.walk_block.py_func
    glob = dict(fn.__globals__)
    glob["_prefetch"] = prefetch
    return numba.njit(nogil=True)(pytypes.FunctionType(fn.__code__, glob, name))


def build_ring(payload: int) -> tuple[np.ndarray, int]:
    """NBLOCK ready blocks of back-to-back IPv4/UDP frames; returns (ring, frames per block)."""
    ring = np.zeros(BLOCK * NBLOCK, np.uint8)
    snap = 20 + 8 + 32 + payload          # IPv4 + UDP + VDIF header + payload
    net = 78                              # frame header, sockaddr_ll, Ethernet header
    frame = (net + snap + 15) // 16 * 16
    npk = (BLOCK - 64) // frame
    hdr = np.zeros(frame, np.uint8)
    hdr[12:16] = np.frombuffer(np.uint32(snap).tobytes(), np.uint8)     # tp_snaplen
    hdr[16:20] = hdr[12:16]                                             # tp_len
    hdr[26:28] = np.frombuffer(np.uint16(net).tobytes(), np.uint8)      # tp_net
    ip = hdr[net:]
    ip[0], ip[2], ip[3], ip[9] = 0x45, snap >> 8, snap & 255, 17
    ip[24], ip[25] = (snap - 20) >> 8, (snap - 20) & 255               # UDP length
    frames = np.tile(hdr, (npk, 1))
    frames[:-1, 0:4] = np.frombuffer(np.uint32(frame).tobytes(), np.uint8)  # tp_next_offset
    desc = np.zeros(64, np.uint8)
    for off, v in ((8, 1), (12, npk), (16, 64), (20, 64 + npk * frame)):   # status USER, ...
        desc[off:off + 4] = np.frombuffer(np.uint32(v).tobytes(), np.uint8)
    for b in range(NBLOCK):
        blk = ring[b * BLOCK:(b + 1) * BLOCK]
        blk[:64] = desc
        blk[64:64 + npk * frame] = frames.reshape(-1)
    return ring, npk


def main() -> int:
    print(describe(), flush=True)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--payload", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    ring, npk = build_ring(a.payload)
    off = np.zeros(1 << 16, np.int64)
    ln = np.zeros(1 << 16, np.int64)
    walks = {"prefetch": _variant("walk_prefetch", pr._prefetch),
             "no prefetch": _variant("walk_no_prefetch", _no_prefetch)}
    for f in walks.values():
        if f(ring, BLOCK, 0, off, ln) != npk or ln[0] != a.payload + 32:
            raise SystemExit("walk_block did not find the synthetic frames")
    evict = np.ones(512 << 20, np.uint8)
    best = dict.fromkeys(walks, float("inf"))
    for _ in range(a.repeat):
        for name, f in walks.items():
            evict += 1
            t0 = time.perf_counter()
            n = 0
            for b in range(NBLOCK):
                n += f(ring, BLOCK, b, off, ln)
            best[name] = min(best[name], (time.perf_counter() - t0) / n)
    ours, base = best["prefetch"], best["no prefetch"]
    print(f"walk_block, {a.payload} B datagrams, {NBLOCK} blocks of {BLOCK >> 20} MiB, cold: "
          f"{ours * 1e9:.1f} ns/frame with prefetch (baseline without: {base * 1e9:.1f} ns/frame, "
          f"ratio {base / ours:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
