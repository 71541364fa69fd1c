"""A small CHIPS stream for capture-engine tests: packets made by asbru's own writer and
the ring time slot each time step must become."""
from __future__ import annotations

import numpy as np

from asbru import formats
from asbru.formats import batch

NCHAN = 4
P = 32 * NCHAN          # chips payload bytes
RS = 16 + P             # chips record size
FMT = f"chips_{NCHAN}"


def chips_stream(ntime, nsrc, seq1=1001, chan0=100, seed=0):
    """(data[ntime, nsrc, P], {(t, s): packet bytes}) -- header seq of time t = seq1 + t."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (ntime, nsrc, P), dtype=np.uint8)
    wf = formats.get(FMT, "write")
    raw = batch.encode_packets(wf, batch.headerinfo(nsrc=nsrc, nchan=NCHAN, chan0=chan0),
                               seq1, 1, 0, 1, data)
    pk = {(t, s): raw[(t * nsrc + s) * RS:(t * nsrc + s + 1) * RS]
          for t in range(ntime) for s in range(nsrc)}
    return data, pk


def slot_of(data_t):
    """Ring time slot of one time step: chips layout [chan][src][32]."""
    nsrc = data_t.shape[0]
    return data_t.reshape(nsrc, NCHAN, 32).transpose(1, 0, 2).ravel()


def in_order(pk, ntime, nsrc):
    return [pk[(t, s)] for t in range(ntime) for s in range(nsrc)]
