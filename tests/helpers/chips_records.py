"""CHIPS records of the DiskReader tests (tests/test_disk_streams.py, test_multicore_disk.py)."""
from __future__ import annotations

import numpy as np

from asbru import formats
from asbru.formats import batch

NCHAN = 4
P = 32 * NCHAN
RS = 16 + P
FMT = f"chips_{NCHAN}"
NSRC = 2
NTIME = 400          # 800 records


def chips_records(ntime=NTIME, nsrc=NSRC, seed=0):
    """(payloads[ntime, nsrc, P], [record bytes] in time-major order)."""
    data = np.random.default_rng(seed).integers(0, 256, (ntime, nsrc, P), dtype=np.uint8)
    raw = batch.encode_packets(formats.get(FMT, "write"),
                               batch.headerinfo(nsrc=nsrc, nchan=NCHAN, chan0=100), 1001, 1, 0, 1,
                               data)
    return data, [raw[k * RS:(k + 1) * RS] for k in range(ntime * nsrc)]
