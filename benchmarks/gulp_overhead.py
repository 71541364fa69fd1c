"""The Python part of a capture, once per gulp, beside the compiled loop's part.

    .venv/bin/python benchmarks/gulp_overhead.py [--npkt 200000] [--repeat 3]

A capture's ``recv()`` runs the compiled loop until a gulp is full, then commits it and
reserves the next in Python (ring calls, the engine's bookkeeping, the loop's arguments).
This script drains pre-filled sockets (UDPCapture, and UDPSniffer where CAP_NET_RAW
allows) of 1 KiB VDIF packets, as ``benchmarks/capture.py`` does, and splits each
``recv()`` into the time spent in the compiled loop (the baseline: the work per packet)
and the rest; medians of ``--repeat`` rounds, microseconds per gulp.  A last line times
one call of a compiled function taking the loop's 25 arrays as a plain tuple (how the
loop takes them) beside the same arrays in the named tuple ``LoopState``.

``--evict MIB`` (default 64; 0: off) measures each kind a second time with that many MiB
copied after every call of the compiled loop (not counted in either part): the Python then
runs from caches emptied the way a drain empties them on a many-core host, where each
function call and NumPy operation of the per-gulp Python costs several microseconds
(the 16-core host's per-gulp Python was 3x this machine's, in caches the drain had just
flushed).  The copy empties more than a drain does (the last-level cache too), so that
line is an upper bound.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asbru.capture.loop.state import LoopState, as_args  # noqa: E402
from asbru.capture.sniffer import have_cap_net_raw  # noqa: E402
from benchmarks.baseline.build import BuildError, build, run_sender  # noqa: E402
from benchmarks.capture import FPS, GULP, NSRC, Receiver  # noqa: E402
from benchmarks.machine import describe  # noqa: E402

PAYLOAD = 1024


def split_round(rx: Receiver, npkt: int, evict: Optional[tuple[np.ndarray, np.ndarray]] = None
                ) -> tuple[float, float, int]:
    """Drain ``npkt`` pre-filled packets; (Python us per gulp, loop us per gulp, gulps).
    ``evict``: (source, destination) copied after each loop call, counted as neither."""
    run_sender(rx.exe.tx, rx.port, npkt, rx.payload, nsrc=NSRC, seq0=rx.seq, hdr="vdif", fps=FPS)
    rx.seq += npkt // NSRC + 1000
    time.sleep(0.2)
    cap = rx.cap
    run = cap._kmod.run
    in_loop = [0.0]
    evicting = [0.0]

    def timed(s):
        t = time.perf_counter()
        try:
            return run(s)
        finally:
            t1 = time.perf_counter()
            in_loop[0] += t1 - t
            if evict is not None:
                np.copyto(evict[1], evict[0])
                evicting[0] += time.perf_counter() - t1

    cap._kmod = cap._kmod._replace(run=timed)
    try:
        n = 0
        t0 = time.perf_counter()
        last = t0
        loop_at_last = 0.0
        evict_at_last = 0.0
        while int(cap.recv()) not in (1, 4, 5, 6):
            n += 1
            last = time.perf_counter()
            loop_at_last = in_loop[0]
            evict_at_last = evicting[0]
    finally:
        cap._kmod = cap._kmod._replace(run=run)
    # the final recv() (the receive timeout at the end of the stream) is not counted
    total = last - t0 - evict_at_last
    return (total - loop_at_last) / n * 1e6, loop_at_last / n * 1e6, n


def call_cost() -> tuple[float, float]:
    """us per call of a compiled function given the loop's 25 arrays: plain, named tuple."""
    s = LoopState(*[np.zeros(16, dtype=np.int64) for _ in LoopState._fields])

    @numba.njit(nogil=True)
    def first(t):
        return t[0][0]

    plain = as_args(s)
    first(plain)
    first(s)
    out = []
    for arg in (plain, s):
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(20000):
                first(arg)
            best = min(best, (time.perf_counter() - t) / 20000 * 1e6)
        out.append(best)
    return out[0], out[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npkt", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--evict", type=int, default=64, help="MiB copied after each loop call in a "
                    "second measurement (0: none)")
    a = ap.parse_args()
    print(describe(), flush=True)
    try:
        exe = build()
    except BuildError as exc:
        print(f"not measured: {exc}")
        return 0
    npkt = a.npkt // NSRC * NSRC
    kinds = ["udp"] + (["sniffer"] if have_cap_net_raw() else [])
    if "sniffer" not in kinds:
        print("UDPSniffer: not measured (CAP_NET_RAW is not available)")
    evict = None
    if a.evict > 0:
        src = np.ones(a.evict << 20, dtype=np.uint8)
        evict = (src, np.ones_like(src))
    for kind in kinds:
        name = "UDPCapture" if kind == "udp" else "UDPSniffer"
        rx = Receiver(kind, exe, "vdif", PAYLOAD)
        try:
            for how in ([None, evict] if evict is not None else [None]):
                rounds = [split_round(rx, npkt, how) for _ in range(max(1, a.repeat))]
                py = statistics.median(r[0] for r in rounds)
                loop = statistics.median(r[1] for r in rounds)
                if how is None:
                    print(f"{name} vdif 1 KiB: Python {py:.1f} us per gulp of {GULP * NSRC} packets "
                          f"(baseline: the compiled loop's {loop:.1f} us per gulp; Python share "
                          f"{100 * py / (py + loop):.1f} %)", flush=True)
                else:
                    print(f"{name} vdif 1 KiB, caches evicted before the Python ({a.evict} MiB "
                          f"copied): Python {py:.1f} us per gulp (baseline: the compiled loop's "
                          f"{loop:.1f} us per gulp)", flush=True)
        finally:
            rx.close()
    plain, named = call_cost()
    print(f"one call with the loop's 25 arrays: {plain:.2f} us as a plain tuple "
          f"(baseline: as the named tuple LoopState {named:.2f} us, ratio {named / plain:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
