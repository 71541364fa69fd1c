"""The engine/kernel boundary: every array the compiled capture loop works on, by name.

``run(s)`` takes the fields of one :class:`LoopState` as a plain tuple (:func:`as_args`)
and reads each by its position's name (``s[_ls.RBUF]``; the positions are checked against the
named tuple's fields below), so two arrays of the same type cannot be swapped by position.
Why not the named tuple itself: numba types a plain tuple of arrays in C, a named one
through Python, field by field -- about a microsecond more per call, once per gulp
(``benchmarks/gulp_overhead.py``).  The capture engine builds it in one place
(:meth:`asbru.capture.engine.CaptureEngine._loop_state`); ``asbru.capture.precompile`` builds
stand-ins of the same types to compile ahead.  Index names of the small int64 arrays:
:mod:`asbru.capture.layout`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class LoopState(NamedTuple):
    # --- the receive backend's arrays (asbru/capture/backends)
    io: np.ndarray        # int64[NIO + backend's own]: backend parameters (IO_*)
    rbuf: np.ndarray      # uint8[nbatch, slot]: the receive buffer
    rlen: np.ndarray      # int64[nbatch]: packet lengths (-1 - nbytes: invalid)
    meta: np.ndarray      # backend's own (udp: mmsghdr rows; sniffer: payload offsets)
    aux: np.ndarray       # backend's own (udp: control buffers; sniffer: the packet ring)
    auxlens: np.ndarray   # backend's own (udp: control buffer lengths)
    rst: np.ndarray       # int64[NRST]: receive-buffer state (R_*)
    # --- packets held while a sequence's parameters are gathered (and far-ahead ones)
    hold: np.ndarray      # uint8[nhold + FAR_STASH, slot]
    hlen: np.ndarray      # int64[nhold + FAR_STASH]: their lengths (-1: dropped)
    hst: np.ndarray       # int64[NHST]: hold state (H_*)
    # --- the format
    cfg: np.ndarray       # int64[NCFG]: the format's capture config
    fstate: np.ndarray    # int64[NSTATE]: the format's decode state (what it learnt)
    d: np.ndarray         # int64[NDESC]: descriptor scratch of the packet at hand
    cur: np.ndarray       # int64[NDESC]: the open sequence's descriptor
    ref: np.ndarray       # int64[NDESC]: the open sequence's, while a change is voted on
    chg: np.ndarray       # int64[nchange]: descriptor indices of the format's CHANGE fields
    # --- the two open gulps (ring spans) and their received masks
    gA: np.ndarray        # uint8[ntime * nsrc * P]: the window's first gulp
    gB: np.ndarray        # uint8[...]: the second
    mA: np.ndarray        # uint8[ntime, nsrc]: 1 = packet placed (first gulp)
    mB: np.ndarray        # uint8[ntime, nsrc]: (second gulp)
    # --- window, counters, deferred placements
    win: np.ndarray       # int64[NWIN]: window / sequence state (W_*)
    cnt: np.ndarray       # int64[NCNT]: counters (C_*)
    psrc: np.ndarray      # int64[NPS, nsrc]: per-source counters (PS_*)
    pend: np.ndarray      # int64[nbatch, 6]: placements deferred to place_row
    addrs: np.ndarray     # int64[nsrc]: payload addresses of one row for place_row


# the position of each field in the tuple run() receives (checked below)
IO = 0
RBUF = 1
RLEN = 2
META = 3
AUX = 4
AUXLENS = 5
RST = 6
HOLD = 7
HLEN = 8
HST = 9
CFG = 10
FSTATE = 11
D = 12
CUR = 13
REF = 14
CHG = 15
GA = 16
GB = 17
MA = 18
MB = 19
WIN = 20
CNT = 21
PSRC = 22
PEND = 23
ADDRS = 24
NFIELDS = 25


def as_args(s: LoopState) -> tuple:
    """What ``run`` is called with: ``s``'s fields as a plain tuple."""
    return tuple(s)


def _check_positions() -> None:
    g = globals()
    for i, name in enumerate(LoopState._fields):
        if g[name.upper()] != i:
            raise AssertionError(f"LoopState field {name} is at {i}, its constant says {g[name.upper()]}")
    if len(LoopState._fields) != NFIELDS:
        raise AssertionError("LoopState and its position constants differ in length")


_check_positions()
