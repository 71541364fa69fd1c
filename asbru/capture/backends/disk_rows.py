"""How the ``disk`` backend's receive buffer is laid out, for its two templates
(:mod:`.disk`'s ``fetch`` and :mod:`.disk_resync`'s ``resync``): plain numba functions,
compiled once and called by both.

Rows ``DISK_BACK_ROWS..`` of the buffer (of its current region, :func:`rows`) hold a
batch's records; the rows in front keep the bytes that came just before it, so that a
resync of the first records can look back.
"""
from __future__ import annotations

import numba

from asbru.capture.backends.disk_readahead import IO_NROW as _IO_NROW, IO_ROW0 as _IO_ROW0
from asbru.capture.layout import DISK_BACK_ROWS
from asbru.formats.spec import _raw_move


@numba.njit(nogil=True, cache=True)
def rows(io, rbuf):
    """The region of the receive buffer that holds the current batch (``io[IO_NROW]`` rows
    from ``io[IO_ROW0]``; the whole buffer where no row count is set, as in the stand-in
    arrays a loop is compiled with)."""
    n = io[_IO_NROW]
    if n <= 0:
        return rbuf
    r0 = io[_IO_ROW0]
    return rbuf[r0:r0 + n]


@numba.njit(nogil=True, cache=True)
def flat(rbuf):
    """The receive buffer as one run of bytes."""
    return rbuf.reshape(rbuf.shape[0] * rbuf.shape[1])


@numba.njit(nogil=True, cache=True)
def read_cap(rbuf, rlen):
    """Bytes a read fills the batch up to.  The batch rows end with DISK_BACK_ROWS spare
    rows: a resync may keep bytes from the rows in front for the next batch, which then
    holds up to two records more than a read gives."""
    nrec = rbuf.shape[0] - DISK_BACK_ROWS
    if nrec > rlen.shape[0]:
        nrec = rlen.shape[0]
    return (nrec - DISK_BACK_ROWS) * rbuf.shape[1]


@numba.njit(nogil=True, cache=True)
def move(flat, dst, src, n):
    """Move ``n`` bytes of ``flat`` from offset ``src`` to offset ``dst`` (overlapping is
    fine), clipped to the array.  One memmove: a numba slice assignment of the same bytes
    compiles to a loop (and copies through a temporary when the ranges overlap)."""
    if dst < 0 or src < 0:
        return
    size = flat.shape[0]
    if dst + n > size:
        n = size - dst
    if src + n > size:
        n = size - src
    if n > 0:
        _raw_move(flat.ctypes.data + dst, flat.ctypes.data + src, n)
