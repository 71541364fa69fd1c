"""Ring placement rate of the sample-interleaved LWA layouts (drx, drx8, tbn), beside a
baseline measured in the same run: the same scatter written with a computed index per
sample (numba keeps an index check per element there).  Both run inside one compiled loop,
as in the capture engine, so no per-call dispatch is measured.

Run: ``.venv/bin/python benchmarks/bench_formats_lwa_place.py [--npkt N]`` (a few seconds).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asbru.formats import drx, drx8, spec, tbn  # noqa: E402
from benchmarks.machine import describe  # noqa: E402


@numba.njit(nogil=True)
def _computed_index(payload, d, slot, nsrc, bps):
    src = d[spec.SRC]
    for k in range(payload.size // bps):
        o = (k * nsrc + src) * bps
        if o + bps > slot.size:
            return
        for b in range(bps):
            slot[o + b] = payload[k * bps + b]


def _looper(place, extra):
    if extra:
        @numba.njit(nogil=True)
        def loop(pl, d, slot, nsrc, n):
            for i in range(n):
                d[spec.SRC] = i % nsrc
                place(pl, d, slot, nsrc, extra)
    else:
        @numba.njit(nogil=True)
        def loop(pl, d, slot, nsrc, n):
            for i in range(n):
                d[spec.SRC] = i % nsrc
                place(pl, d, slot, nsrc)
    return loop


def _best(fn, repeat=5):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    print(describe(), flush=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--npkt", type=int, default=20000)
    n = ap.parse_args().npkt
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    nsrc = 4
    for name, mod, bps in (("drx", drx, 1), ("drx8", drx8, 2), ("tbn", tbn, 2)):
        p = mod.PAYLOAD
        slot = np.zeros(nsrc * p, dtype=np.uint8)
        pl = np.arange(p, dtype=np.uint32).astype(np.uint8)
        ours, base = _looper(mod.place, 0), _looper(_computed_index, bps)
        ours(pl, d, slot, nsrc, 4)
        base(pl, d, slot, nsrc, 4)
        t_ours = _best(lambda: ours(pl, d, slot, nsrc, n))
        t_base = _best(lambda: base(pl, d, slot, nsrc, n))
        print(f"{name:5s} place: {n / t_ours / 1e3:8.0f} k pkt/s ({n * p / t_ours / 1e9:.2f} GB/s)"
              f"   baseline computed-index scatter: {n / t_base / 1e3:8.0f} k pkt/s"
              f" ({n * p / t_base / 1e9:.2f} GB/s)   ratio {t_base / t_ours:.2f}")


if __name__ == "__main__":
    main()
