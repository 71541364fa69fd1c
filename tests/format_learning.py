"""Decode packets one at a time the way the capture engine does with HOLD (tests of the
formats that learn a stream parameter: tbn decimation, vdif frames per second).

``batch.decode_buffer`` decodes a whole buffer and then the held packets once; the engine
decodes the held packets again as soon as a later packet comes back VALID, so a held
packet sees the state of that moment.  This reproduces that order in Python (tests only).
"""
from __future__ import annotations

import numpy as np

from asbru.formats import Format, spec


def decode_stream(fmt: Format, packets: list[bytes], nsrc: int, src0: int = 0
                  ) -> tuple[list[tuple[int, np.ndarray]], list[int], list[int]]:
    """-> (valid, invalid, still_held): ``valid`` = (packet index, descriptor) in the order
    the engine would get them; ``invalid`` and ``still_held`` are packet indices."""
    cfg = fmt.capture_config(nsrc, src0)
    state = np.zeros(spec.NSTATE, dtype=np.int64)
    arrays = [np.frombuffer(p, dtype=np.uint8).copy() for p in packets]
    held: list[int] = []
    valid: list[tuple[int, np.ndarray]] = []
    invalid: list[int] = []

    def one(i: int) -> int:
        d = np.full(spec.NDESC, -1, dtype=np.int64)
        r = fmt.decode(arrays[i], cfg, state, d)
        if r == spec.VALID:
            valid.append((i, d))
        elif r == spec.INVALID:
            invalid.append(i)
        return r

    for i in range(len(arrays)):
        r = one(i)
        if r == spec.HOLD:
            held.append(i)
        elif r == spec.VALID and held:
            again, held = held, []
            for j in again:
                if one(j) == spec.HOLD:
                    held.append(j)
    return valid, invalid, held


def split(raw: bytes, size: int) -> list[bytes]:
    return [raw[i: i + size] for i in range(0, len(raw), size)]
