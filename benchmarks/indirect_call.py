"""A format's decode and place called through their addresses, beside numba's own calls.

    .venv/bin/python benchmarks/indirect_call.py [--repeat 5]

The capture loops are compiled once for every format and reach the format's ``decode`` and
``place`` through the addresses in the capture config (``asbru.formats.indirect``: an
indirect call of a C entry point).  Before, each format compiled its own loop with the
functions called by name.  This script times a tight loop over 64 CHIPS packets (16
sources, 32 channels: a 1 KiB payload each), decoding each and placing it into a ring time
slot, three ways in the same run: through the addresses (what the loops do now), calling
the format's numba functions, and with them inlined into the loop (``inline="always"``).
ns per packet, best of ``--repeat``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asbru import formats  # noqa: E402
from asbru.formats import dispatch, indirect, spec  # noqa: E402
from benchmarks.machine import describe  # noqa: E402

NSRC, NCHAN, NPKT, ROUNDS = 16, 32, 64, 20000

_fmt = formats.get(f"chips_{NCHAN}", "capture")
_decode, _place = _fmt.decode, _fmt.place
_decode_inl = numba.njit(nogil=True, inline="always")(_fmt.decode.py_func)
_place_inl = numba.njit(nogil=True, inline="always")(_fmt.place.py_func)


@numba.njit(nogil=True)
def through_addresses(pkts, cfg, st, d, ring, rounds):
    for _ in range(rounds):
        for i in range(pkts.shape[0]):
            if indirect.decode(pkts[i], cfg, st, d) == spec.VALID:
                indirect.place(cfg, pkts[i][16:], d, ring[d[spec.SEQ] % ring.shape[0]], NSRC)


@numba.njit(nogil=True)
def called(pkts, cfg, st, d, ring, rounds):
    for _ in range(rounds):
        for i in range(pkts.shape[0]):
            if _decode(pkts[i], cfg, st, d) == spec.VALID:
                _place(pkts[i][16:], d, ring[d[spec.SEQ] % ring.shape[0]], NSRC)


@numba.njit(nogil=True)
def inlined(pkts, cfg, st, d, ring, rounds):
    for _ in range(rounds):
        for i in range(pkts.shape[0]):
            if _decode_inl(pkts[i], cfg, st, d) == spec.VALID:
                _place_inl(pkts[i][16:], d, ring[d[spec.SEQ] % ring.shape[0]], NSRC)


def main() -> int:
    print(describe(), flush=True)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    cfg = dispatch.entry_table(_fmt.module).install(_fmt.capture_config(NSRC, 0))
    pkts = np.zeros((NPKT, 16 + NCHAN * 32), np.uint8)
    for i in range(NPKT):       # roach = src + 1, nchan, seq (big-endian) = time + 1
        pkts[i, 0], pkts[i, 2], pkts[i, 15] = i % NSRC + 1, NCHAN, 1 + i // NSRC
        pkts[i, 16:] = i
    st = np.zeros(spec.NSTATE, np.int64)
    d = np.full(spec.NDESC, -1, np.int64)
    ring = np.zeros((64, NSRC * NCHAN * 32), np.uint8)
    ways = {"through the addresses": through_addresses, "numba call": called,
            "inlined": inlined}
    best = dict.fromkeys(ways, float("inf"))
    for f in ways.values():
        f(pkts, cfg, st, d, ring, 1)          # compile
    for _ in range(a.repeat):
        for name, f in ways.items():
            t0 = time.perf_counter()
            f(pkts, cfg, st, d, ring, ROUNDS)
            best[name] = min(best[name], (time.perf_counter() - t0) / (NPKT * ROUNDS))
    ours = best["through the addresses"]
    print(f"decode + place of a CHIPS 1 KiB packet through the addresses: {ours * 1e9:.1f} ns "
          f"(baseline numba call {best['numba call'] * 1e9:.1f} ns, ratio "
          f"{best['numba call'] / ours:.2f}; inlined {best['inlined'] * 1e9:.1f} ns, ratio "
          f"{best['inlined'] / ours:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
