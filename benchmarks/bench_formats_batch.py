"""Header filling and decoding rates of the generated batch kernels, beside a baseline
measured in the same run (a plain Python ``struct`` loop doing the same work).

Run: ``.venv/bin/python benchmarks/bench_formats_batch.py [--npkt N]`` (a few seconds).
"""
from __future__ import annotations

import argparse
import sys
import struct
import time

from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asbru import formats  # noqa: E402
from asbru.formats import batch, spec  # noqa: E402
from benchmarks.machine import describe  # noqa: E402


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
    ap.add_argument("--npkt", type=int, default=65536)
    args = ap.parse_args()
    nsrc = 16
    ntime = max(args.npkt // nsrc, 1)
    npkt = ntime * nsrc

    # --- header filling (chips_4)
    fw = formats.get("chips_4", "write")
    info = batch.headerinfo(nsrc=nsrc, nchan=4, chan0=100, tuning=1)
    wcfg = fw.write_config()
    hdrs = np.zeros((npkt, fw.header.size), dtype=np.uint8)
    fill = batch.header_filler(fw)
    fill(hdrs, info, wcfg, 1, 1, 0, 1, ntime, nsrc, 0)  # compile / load from cache
    t_fill = _best(lambda: fill(hdrs, info, wcfg, 1, 1, 0, 1, ntime, nsrc, 0))

    def py_fill():
        out = bytearray(npkt * 16)
        for i in range(ntime):
            for j in range(nsrc):
                struct.pack_into(">BBBBBBHQ", out, (i * nsrc + j) * 16, j + 1, 1, 4, 1, 0, nsrc, 100, 1 + i)
        return out

    assert bytes(py_fill()) == hdrs.tobytes()
    t_py = _best(py_fill, repeat=2)
    print(f"fill_headers chips_4: {npkt / t_fill / 1e6:8.2f} Mpkt/s   "
          f"(baseline python struct loop: {npkt / t_py / 1e6:6.2f} Mpkt/s)")

    # --- decoding (chips_4 records)
    fr = formats.get("chips_4", "disk")
    data = np.zeros((ntime, nsrc, 128), dtype=np.uint8)
    raw = batch.encode_packets(fw, info, 1, 1, 0, 1, data)
    buf, offsets, lengths = batch.split_records(raw, fr.params.record_size)
    desc = np.zeros((npkt, spec.NDESC), dtype=np.int64)
    status = np.zeros(npkt, dtype=np.int64)
    cfg = fr.capture_config(nsrc, 0)
    state = np.zeros(spec.NSTATE, dtype=np.int64)
    dec = batch.decode_records(fr)
    dec(buf, offsets, lengths, cfg, state, desc, status)
    t_dec = _best(lambda: dec(buf, offsets, lengths, cfg, state, desc, status))
    assert (status == spec.VALID).all()

    def py_decode():
        out = []
        mv = memoryview(raw)
        for k in range(npkt):
            roach, _gbe, nchan, _a, _b, _c, chan0, seq = struct.unpack_from(">BBBBBBHQ", mv, k * 144)
            out.append((seq - 1, roach - 1, nchan, chan0))
        return out

    t_pyd = _best(py_decode, repeat=2)
    print(f"decode_records chips_4: {npkt / t_dec / 1e6:8.2f} Mpkt/s   "
          f"(baseline python struct loop: {npkt / t_pyd / 1e6:6.2f} Mpkt/s)")


if __name__ == "__main__":
    main()
