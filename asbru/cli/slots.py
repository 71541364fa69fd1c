"""Live (seq, src) bookkeeping for ``asbru capture``: duplicates, missing slots, late packets.

A recorder has no ring, so it tracks arrivals in a sliding window of ``W`` time steps x
``nsrc`` sources (one byte each).  A valid packet marks its slot; a slot already marked is
a duplicate; a packet older than the window is late.  When the window slides forward the
rows leaving it are *retired*: their unmarked slots count as missing.  The window starts a
quarter of its length before the first packet (stragglers that were overtaken by the first
packet still fit), and rows before the lowest seq seen are never counted, so the result
equals ``asbru inspect``'s "slots between seq_min and seq_max without a valid packet" when
nothing is late.  A forward jump of more than ``W`` steps beyond the highest seq seen is a
restart: the gap is not counted as missing (``restarts`` says it happened).

Compiled; called once per valid packet from the receive loop.
"""
from __future__ import annotations

import numba
import numpy as np

(T_STARTED, T_BASE, T_HI, T_MIN, T_UNIQUE, T_DUP, T_LATE, T_MISSING, T_GOOD_BYTES, T_PSIZE,
 T_RESTARTS) = range(11)
NTRACK = 11
NEW, DUPLICATE, LATE = 0, 1, 2

MAX_WINDOW_BYTES = 1 << 24


def window_rows(nsrc: int, wanted: int = 4096) -> int:
    """Rows of the window: ``wanted``, fewer when ``nsrc`` is large (at most 16 MiB), >= 16."""
    return int(max(16, min(wanted, MAX_WINDOW_BYTES // max(1, nsrc))))


def new_tracker(nsrc: int, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(seen uint8[W, nsrc], track int64[NTRACK]) for :func:`note`."""
    w = rows or window_rows(nsrc)
    return np.zeros((w, nsrc), dtype=np.uint8), np.zeros(NTRACK, dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _retire(seen, track, upto):
    # rows base .. upto-1 leave the window; unmarked slots at or after the lowest seq count
    w = seen.shape[0]
    nsrc = seen.shape[1]
    s = track[T_BASE]
    if upto - s > w:          # never more than the window itself holds
        s = upto - w
    while s < upto:
        row = seen[s % w]
        c = 0
        for j in range(nsrc):
            c += row[j]
            row[j] = 0
        if s >= track[T_MIN] and s <= track[T_HI]:
            track[T_MISSING] += nsrc - c
        s += 1
    track[T_BASE] = upto


@numba.njit(cache=True, nogil=True)
def note(seen, track, seq, src, psize):
    """Record one valid packet; returns NEW, DUPLICATE or LATE."""
    w = seen.shape[0]
    nsrc = seen.shape[1]
    if src < 0 or src >= nsrc:
        track[T_LATE] += 1
        return LATE
    if track[T_STARTED] == 0:
        track[T_STARTED] = 1
        track[T_BASE] = seq - w // 4
        track[T_HI] = seq
        track[T_MIN] = seq
    if seq < track[T_BASE]:
        track[T_LATE] += 1
        return LATE
    if seq >= track[T_BASE] + w:
        if seq - track[T_HI] > w:          # a jump: close what we have, start afresh
            _retire(seen, track, track[T_HI] + 1)
            track[T_RESTARTS] += 1
            track[T_BASE] = seq - w // 4
            track[T_HI] = seq
            track[T_MIN] = seq
        else:
            track[T_HI] = seq                # the gap up to seq is inside the stream: missing
            _retire(seen, track, seq - w + 1)
    if seq > track[T_HI]:
        track[T_HI] = seq
    if seq < track[T_MIN]:
        track[T_MIN] = seq
    row = seen[seq % w]
    if row[src] != 0:
        track[T_DUP] += 1
        return DUPLICATE
    row[src] = 1
    track[T_UNIQUE] += 1
    if psize > 0:
        track[T_GOOD_BYTES] += psize
        track[T_PSIZE] = psize
    return NEW


@numba.njit(cache=True, nogil=True)
def pending_missing(seen, track):
    """Unmarked slots in the rows still in the window, up to (not including) the newest row."""
    if track[T_STARTED] == 0:
        return 0
    w = seen.shape[0]
    nsrc = seen.shape[1]
    lo = track[T_BASE]
    if track[T_MIN] > lo:
        lo = track[T_MIN]
    m = 0
    for s in range(lo, track[T_HI]):
        row = seen[s % w]
        c = 0
        for j in range(nsrc):
            c += row[j]
        m += nsrc - c
    return m


def finish(seen: np.ndarray, track: np.ndarray) -> None:
    """Retire every row (end of capture): ``track[T_MISSING]`` is then final."""
    if track[T_STARTED]:
        _retire(seen, track, np.int64(track[T_HI] + 1))
