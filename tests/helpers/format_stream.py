"""Streams of packets for format tests (tbn, drx, drx8, vdif, snap2).

* :func:`decode_stream` decodes packets one at a time the way the capture engine does with
  HOLD: ``batch.decode_buffer`` decodes a whole buffer and then the held packets once; the
  engine decodes the held packets again as soon as a later packet comes back VALID, so a
  held packet sees the state of that moment.
* :func:`capture_file` runs a real ``DiskReader`` over a file and collects the ring's
  sequences and the sequence-callback arguments (end-to-end check of a format).
"""
from __future__ import annotations

import numpy as np

from asbru.formats import Format, spec


def capture_file(path, fmt: str, nsrc: int, setter: str, src0: int = 0, buffer_ntime: int = 4):
    """-> (statuses, [callback leading args], [(time_tag, ring bytes)]) of a DiskReader run."""
    import ctypes

    from asbru.capture.callbacks import PacketCaptureCallback
    from asbru.capture.disk import DiskReader
    from asbru.capture.testing import RingCollector, run_capture
    from asbru.ring import Ring

    calls: list[tuple] = []
    keep = ctypes.create_string_buffer(b"{}")

    def callback(*args):
        calls.append(tuple(args[:-2]))
        args[-2][0] = ctypes.cast(keep, ctypes.c_void_p).value
        args[-1][0] = 2
        return 0

    cb = PacketCaptureCallback()
    getattr(cb, setter)(callback)
    ring = Ring(name=f"fmt_{fmt}_{id(calls):x}")
    with open(path, "rb") as fh:
        cap = DiskReader(fmt, fh, ring, nsrc, src0, buffer_ntime, buffer_ntime, cb)
        collector = RingCollector(ring, 1 << 20)
        statuses = run_capture(cap, max_calls=10000)
        cap.end()
        seqs = collector.join(30)
    return statuses, calls, [(s.time_tag, s.data) for s in seqs]


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
