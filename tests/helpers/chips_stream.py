"""CHIPS datagrams of the multi-core capture tests (tests/test_multicore*.py)."""
from __future__ import annotations

NSRC = 16
NTIME = 16          # time slots per gulp
NCHAN = 4
SEQ0 = 5000


def chips(src: int, seq: int, chan0: int = 100, fill: int | None = None) -> bytes:
    h = bytearray(16)
    h[0] = src + 1
    h[2] = NCHAN
    h[3] = 1
    h[5] = NSRC
    h[6:8] = chan0.to_bytes(2, "big")
    h[8:16] = (seq + 1).to_bytes(8, "big")
    b = (seq * 31 + src * 7) & 0xFF if fill is None else fill
    return bytes(h) + bytes((b + i) & 0xFF for i in range(32 * NCHAN))
