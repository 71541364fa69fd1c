"""A chips file with gaps for ring tests: written by DiskWriter, read back by DiskReader."""
from __future__ import annotations

import numpy as np

from asbru.packet_capture import DiskReader
from asbru.packet_writer import DiskWriter, HeaderInfo

NCHAN, NSRC, NTIME = 4, 2, 96


def gappy_file(path, seed=1):
    """A chips_4 file of NTIME slots, 2 sources, source 1 silent for slots 5..7 and 40..49."""
    hdr = HeaderInfo()
    hdr.set_nsrc(NSRC)
    hdr.set_nchan(NCHAN)
    hdr.set_chan0(100)
    data = np.random.default_rng(seed).integers(1, 256, size=(NTIME, NSRC, 32 * NCHAN), dtype=np.uint8)
    with open(path, "wb") as fh:
        writer = DiskWriter(f"chips_{NCHAN}", fh)
        for t in range(NTIME):
            silent = 5 <= t < 8 or 40 <= t < 50
            writer.send(hdr, t + 1, 1, 0, 1, data[t:t + 1, :1] if silent else data[t:t + 1])
    return data


def capture_file(path, ring):
    with open(path, "rb") as fh, DiskReader(f"chips_{NCHAN}", fh, ring, NSRC, 0, 8, 8, None) as cap:
        while cap.recv() not in (1, 4, 5, 6):
            pass
