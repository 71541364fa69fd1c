"""Per-frame flags: a side channel that travels with a sequence's data.

A writer attaches a ``(nframe, k)`` uint8 array to a span (one row per frame of
``frame_nbyte`` bytes, counted from the sequence start); a reader gets back the rows for
the frames its span covers.  The capture uses it to say which (time slot, source) cells
received a packet.  Flags are copies held outside ring memory, so they can be dropped
once their data has left the ring.
"""
from __future__ import annotations

from bisect import bisect_right
from typing import Optional

import numpy as np

from ..errors import ArgumentError


def as_flags(flags: object, frame_nbyte: object) -> tuple[np.ndarray, int]:
    """Validate and copy what ``WriteSpan.set_flags`` was given."""
    try:
        fn = int(frame_nbyte)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        fn = 0
    if fn <= 0 or fn != frame_nbyte:
        raise ArgumentError(f"set_flags: frame_nbyte must be a positive integer; got {frame_nbyte!r}")
    arr = np.array(flags, dtype=np.uint8, copy=True)  # a copy: the caller may reuse its array
    if arr.ndim != 2:
        raise ArgumentError(f"set_flags: flags must be a 2-D (nframe, k) uint8 array; got shape {arr.shape}")
    return arr, fn


class FlagStore:
    """Flag rows of one sequence, kept as the chunks the writer committed (in frame order)."""

    __slots__ = ("frame_nbyte", "ncol", "_starts", "_chunks")

    def __init__(self, frame_nbyte: int, ncol: int) -> None:
        self.frame_nbyte = frame_nbyte
        self.ncol = ncol
        self._starts: list[int] = []          # first frame of each chunk (sorted)
        self._chunks: list[np.ndarray] = []

    def check(self, frame_nbyte: int, ncol: int) -> None:
        if frame_nbyte != self.frame_nbyte or ncol != self.ncol:
            raise ArgumentError(
                f"set_flags: a sequence uses one frame_nbyte and one column count; this sequence has "
                f"frame_nbyte={self.frame_nbyte}, k={self.ncol}; got frame_nbyte={frame_nbyte}, k={ncol}")

    def add(self, first_frame: int, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        # Commits arrive in order, so appending keeps the list sorted; a chunk overlapping the
        # previous one (a rewritten frame) simply wins for the frames it covers.
        self._starts.append(first_frame)
        self._chunks.append(rows)

    def prune(self, first_kept_frame: int) -> None:
        """Forget chunks that end before ``first_kept_frame`` (their data left the ring)."""
        n = 0
        while n < len(self._chunks) and self._starts[n] + len(self._chunks[n]) <= first_kept_frame:
            n += 1
        if n:
            del self._starts[:n]
            del self._chunks[:n]

    def rows(self, f0: int, f1: int) -> Optional[np.ndarray]:
        """Rows for frames ``[f0, f1)``; frames without flags read as 0; None if none overlap."""
        out: Optional[np.ndarray] = None
        i = max(bisect_right(self._starts, f0) - 1, 0)
        while i < len(self._chunks) and self._starts[i] < f1:
            s = self._starts[i]
            c = self._chunks[i]
            lo, hi = max(s, f0), min(s + len(c), f1)
            if lo < hi:
                if out is None:
                    out = np.zeros((f1 - f0, self.ncol), dtype=np.uint8)
                out[lo - f0:hi - f0] = c[lo - s:hi - s]
            i += 1
        return out
