"""Throughput of asbru.quantize / asbru.unpack beside a numpy copy measured in the same run.

    .venv/bin/python benchmarks/dtypes.py [--mib 256] [--repeat 3]

GB/s counts bytes READ + bytes WRITTEN (10^9 bytes/s).  The baseline is ``numpy.copyto`` of
a buffer the size of the case's input (so it also counts input size x 2).  Each figure is the
best of ``--repeat`` runs after a warm-up run (JIT compilation, page faults).  Single thread.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asbru  # noqa: E402
from benchmarks.machine import describe  # noqa: E402


def best_seconds(fn, repeat: int) -> float:
    fn()  # warm up: compile, fault in every page
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def copy_gbps(nbytes: int, repeat: int) -> float:
    a = np.ones(nbytes, np.uint8)
    b = np.empty_like(a)
    t = best_seconds(lambda: np.copyto(b, a), repeat)
    return 2 * nbytes / t / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="input size per case in MiB")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(describe(), flush=True)
    nbytes = args.mib << 20
    rng = np.random.default_rng(1)

    n = nbytes // 8  # complex64 values
    z = asbru.ndarray(shape=(n,), dtype="cf32")
    z.view(np.float32)[:] = rng.standard_normal(2 * n, dtype=np.float32) * 8
    q8 = asbru.ndarray(shape=(n,), dtype="ci8")
    q4 = asbru.ndarray(shape=(n,), dtype="ci4")

    m = nbytes  # ci4 values (one byte each)
    packed = asbru.ndarray(shape=(m,), dtype="ci4")
    packed.view(np.uint8)[:] = rng.integers(0, 256, m, dtype=np.uint8)
    u8 = asbru.ndarray(shape=(m,), dtype="ci8")

    cases = [
        ("quantize cf32->ci8", lambda: asbru.quantize(z, q8, scale=2.0), z.nbytes + q8.nbytes),
        ("quantize cf32->ci4", lambda: asbru.quantize(z, q4, scale=1.0), z.nbytes + q4.nbytes),
        ("unpack ci4->ci8", lambda: asbru.unpack(packed, u8), packed.nbytes + u8.nbytes),
    ]
    print(f"input {args.mib} MiB per case; GB/s = (bytes read + bytes written) / s; "
          f"baseline = numpy copy of the input (read + write), same run")
    for label, fn, moved in cases:
        t = best_seconds(fn, args.repeat)
        gbps = moved / t / 1e9
        base = copy_gbps(nbytes, args.repeat)
        print(f"{label}: {gbps:.1f} GB/s  (numpy copy {base:.1f} GB/s, ratio {gbps / base:.2f})")


if __name__ == "__main__":
    main()
