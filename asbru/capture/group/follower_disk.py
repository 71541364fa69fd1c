"""A follower of ``DiskReader(..., threads=N)``: one reading thread of a recording
(asbru/capture/group/disk.py).

The file is read in chunks of ``FIO_CHUNK`` whole records; follower ``me`` of ``N`` reads
chunks ``me, me + N, me + 2N, ...`` with ``pread`` (the file position stays where it is;
the threads never share one), so that together they go through the file in order, each
within a few chunks of the others -- the chunks are at most half a gulp, and a follower
that reaches the gulp beyond the window waits for the window as every follower does.  Its
records are consumed as the socket follower consumes datagrams (``_consume``: placed
straight into the ring when the window is open, else handed to the leader).

Unlike datagrams of several sockets, the records of one file have one order.  Each record
is stamped with its index in the file, the follower publishes the index of the record it
is working on (``F_POS``), and the leader takes a hand-off only when every follower has
finished the records before it (asbru/capture/group/handoff.py): it sees the records it
decides about in the file's order, after those before them were placed -- the order a
single-thread DiskReader sees.

Template bound once (:func:`bind`): its collaborators are the follower's functions
(:data:`asbru.capture.group.bindings.SHARED`), which reach the format's decode/place through
the capture config.
"""
from __future__ import annotations

import numpy as np

from asbru.capture.borrow import borrow as _borrow
from asbru.capture.group.bindings import SHARED as BINDS  # noqa: F401  (the bound names)
from asbru.capture.group.follower import (  # defaults; bound (bindings.py)
    _adopt, _batch_done, _consume, _finish, _queue_busy, _wait_idle, _wait_paused)  # noqa: F401
from asbru.capture.group.follower import (FIO_EVFD, FIO_FD, FIO_NMSG, FIO_ONE_ADDR, FIO_TS,
                                          GATHER_BATCH, NFIO)
from asbru.capture.group.shared import (F_BASE, F_ERRNO, F_NRECV, F_POS, F_QHEAD, F_QTAIL,
                                        F_STRIDE, G_EPOCH, G_LWAIT, G_NF, G_STATE, G_STOP, G_WANT,
                                        LAST_NONE, POS_ANY, ST_OPEN, ST_PAUSE, fence)
from asbru.capture.layout import C_ERRNO, C_NRECEIVED
from asbru.formats.engine import bound_kernel
from asbru.sockets import syscalls as sc
from asbru.sockets.pread import pread_e


# the follower's io words beyond the socket follower's (asbru/capture/group/follower.py)
FIO_START = NFIO + 0    # byte offset of the first record
FIO_CHUNK = NFIO + 1    # records per chunk
FIO_NF = NFIO + 2       # followers (the stride between one follower's chunks)
FIO_NEXT = NFIO + 3     # the next chunk this follower reads
NFIO_DISK = NFIO + 4

_W = 1 - G_STATE


@bound_kernel
def _read_chunk(fio, rbuf, rlen, c, cnt):
    """Read chunk ``c`` into ``rbuf``: the number of records (a short last one at the end
    of the file counts, with its length), 0 at the end, -errno on an error."""
    rs = rbuf.shape[1]
    chunk = fio[FIO_CHUNK]
    want = chunk * rs
    start = fio[FIO_START] + c * want
    got = 0
    while got < want:
        r = pread_e(fio[FIO_FD], rbuf.ctypes.data + got, want - got, start + got)
        if r < 0:
            if -r == sc.EINTR:
                continue
            return r
        if r == 0:
            break
        got += r
    n = got // rs
    for j in range(n):
        rlen[j] = rs
    if got - n * rs > 0:
        rlen[n] = got - n * rs     # the file's short tail: a record decode rejects
        n += 1
    cnt[C_NRECEIVED] += n
    return n


@bound_kernel
def _handoffs_queued(ctl):
    """Does any follower's queue hold a packet (that the leader, asleep, may be keeping
    back until we have passed it)?"""
    fence()
    for f in range(ctl[G_NF]):
        r = F_BASE + f * F_STRIDE
        if ctl[r + F_QHEAD] > ctl[r + F_QTAIL]:
            return True
    return False


@bound_kernel
def follow(ctl, me, fio, rbuf, rlen, qbuf, qlen, qstamp, fmask, cfg, fs, d, chg, cnt, psrc, loc):
    """Consume this follower's chunks of the file until its end or ``ctl[G_STOP]``;
    returns the number of records read.  ``rbuf``: uint8 [chunk, record size]."""
    ctl = _borrow(ctl)
    fio = _borrow(fio)
    rbuf = _borrow(rbuf)
    rlen = _borrow(rlen)
    qbuf = _borrow(qbuf)
    qlen = _borrow(qlen)
    qstamp = _borrow(qstamp)
    fmask = _borrow(fmask)
    cfg = _borrow(cfg)
    fs = _borrow(fs)
    d = _borrow(d)
    chg = _borrow(chg)
    cnt = _borrow(cnt)
    psrc = _borrow(psrc)
    loc = _borrow(loc)
    row = F_BASE + me * F_STRIDE
    chunk = fio[FIO_CHUNK]
    c = fio[FIO_NEXT]
    n = 0                        # records of the chunk read
    i = 0                        # the next one to consume
    first = c * chunk            # the file index of rbuf's first record
    last = LAST_NONE
    total = 0
    triggered = np.int64(-1)
    ts = fio[FIO_TS:FIO_TS + 2]     # (follower.py: no local array)
    waits = 0
    while True:
        if ctl[G_EPOCH] != loc[0]:
            last = _adopt(ctl, row, loc, fs, last)
        stopping = ctl[G_STOP] != 0
        if stopping and i >= n:
            break
        state = loc[_W + G_STATE]
        if state == ST_PAUSE and not stopping:
            _wait_paused(ctl, row, loc, ts)
            continue
        quota = fio[FIO_NMSG]
        if state != ST_OPEN and not stopping:
            waits = _queue_busy(ctl, row, waits)
            if waits > 0:
                continue
            quota = GATHER_BATCH
        waits = 0
        if i >= n:
            r = _read_chunk(fio, rbuf, rlen, c, cnt)
            if r <= 0:
                if r < 0:
                    ctl[row + F_ERRNO] = -r
                    cnt[C_ERRNO] = -r
                break            # the end of the file (or an error)
            first = c * chunk
            n = r
            i = 0
            total += r
            ctl[row + F_NRECV] += r
            c += fio[FIO_NF]
            fio[FIO_NEXT] = c
            continue             # look at the window again before consuming
        end = i + quota
        if end > n:
            end = n
        while i < end:
            k = i
            i += 1
            ctl[row + F_POS] = first + k
            state, last, triggered = _consume(ctl, row, fio, rbuf[k, :rlen[k]], rlen[k], first + k,
                                              state, last, triggered, qbuf, qlen, qstamp, fmask,
                                              cfg, fs, d, chg, cnt, psrc, loc, ts)
            if state != ST_OPEN and not stopping:
                break
        # every record before the next one is done: a hand-off waiting for that may go
        ctl[row + F_POS] = first + i if i < n else c * chunk
        _batch_done(ctl, row, last)
        if ctl[G_LWAIT] != 0 and ctl[row + F_POS] >= ctl[G_WANT] and _handoffs_queued(ctl):
            sc.write_e(fio[FIO_EVFD], fio[FIO_ONE_ADDR], 8)   # (one may wait for us)
    ctl[row + F_POS] = POS_ANY       # nothing more from this follower
    fence()
    _finish(ctl, row, fio, last)
    return total


def bind() -> object:
    """This template bound to the follower's functions (compiled once, for every format)."""
    import sys

    from asbru.capture import layout
    from asbru.capture.group import bindings, shared
    from asbru.sockets import pread, syscalls
    return bindings.bind_to_follower("capture_follower_disk", sys.modules[__name__],
                                     depends_on=(layout, shared, syscalls, pread))
