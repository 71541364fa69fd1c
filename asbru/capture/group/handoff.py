"""The leader's receive backend (template, bound once: see asbru/capture/backends):
packets handed over by the followers' queues.

In a multi-core capture the thread that calls ``recv()`` -- the *leader* -- runs the usual
single-thread capture loop (all of its sequence, learning, voting and window logic), but
its ``_fetch`` takes packets from the followers' hand-off queues instead of a socket.
Each queue is single-producer (its follower) single-consumer (the leader): rows of
``max_payload_size`` bytes, a length per row, and two counters in the control block
(``F_QHEAD`` written by the follower after the row, ``F_QTAIL`` by the leader after it has
copied the row out).

When every queue is empty the leader sleeps on an event descriptor that a follower writes
after a hand-off (only while ``G_LWAIT`` says the leader sleeps).  It reports a receive
timeout only when no follower has received anything for the whole timeout -- the stream
may well flow while every packet of it is placed by the followers -- and the end of the
stream when every follower has left and the queues are empty.
"""
from __future__ import annotations

import numpy as np

from asbru.capture.layout import (C_ERRNO, F_EOF, F_ERROR, F_INTR, F_TIMEOUT, IO_POLL_MS,
                                  IO_POLLFD, IO_POLLFD_ADDR, NIO)
from asbru.capture.group.shared import (F_BASE, F_DONE, F_ERRNO, F_NRECV, F_POS, F_QHEAD,
                                        F_QTAIL, F_STRIDE, G_LWAIT, G_NF, G_WANT, fence, now_ns,
                                        u8_at)
from asbru.capture.borrow import borrow as _borrow
from asbru.formats.engine import bound_kernel
from asbru.sockets import syscalls as sc

BINDS = ()

# the leader's io words beyond the single-thread layout
IO_CTL = NIO           # address of the control block
IO_NCTL = NIO + 1      # its length (words)
IO_QBUF = NIO + 2      # address of the queues' rows: [follower][row][max_payload_size]
IO_QLEN = NIO + 3      # address of their lengths: int64 [follower][row]
IO_QROWS = NIO + 4     # rows per queue
IO_EVFD = NIO + 5      # the event descriptor followers write to wake the leader
IO_RR = NIO + 6        # the queue to look at first (round robin)
IO_SCRATCH = NIO + 7   # 8 bytes: what is read from the event descriptor
IO_TS = NIO + 8        # 2 words: struct timespec
IO_QSTAMP = NIO + 10   # address of the rows' receive times: int64 [follower][row]
NIO_GROUP = NIO + 12

_SLICE_MS = 50         # the longest single sleep (a timeout is measured in these)


@bound_kernel
def _i64_at(addr, n):
    return u8_at(addr, 8 * n).view(np.int64)


@bound_kernel
def _take(io, ctl, rbuf, rlen):
    """Move queued packets into the receive buffer, oldest first; how many.

    Every queued packet carries the time its follower received it: the queues are merged
    by that time, so the leader sees the handed-over packets of all sockets in the order
    they arrived (e.g. a burst queued while no sequence was open, before the packets
    another socket hands over later).  Followers of one ordered stream (a file) stamp
    their packets with their place in it, and a packet is taken only once every follower
    has finished everything before it (``F_POS``): the leader sees the hand-offs in the
    stream's order, after the packets before them were placed."""
    nf = ctl[G_NF]
    rows = io[IO_QROWS]
    bufsize = rbuf.shape[1]
    cap = min(rbuf.shape[0], rlen.shape[0])
    qlen = _i64_at(io[IO_QLEN], nf * rows)
    qstamp = _i64_at(io[IO_QSTAMP], nf * rows)
    n = 0
    while n < cap:
        best = -1
        bstamp = np.int64(0)
        for f in range(nf):
            r = F_BASE + f * F_STRIDE
            tail = ctl[r + F_QTAIL]
            if tail < ctl[r + F_QHEAD]:
                fence()
                st = qstamp[f * rows + tail % rows]
                if best < 0 or st < bstamp:
                    best = f
                    bstamp = st
        if best < 0:
            break
        if not _in_order(ctl, nf, bstamp):
            ctl[G_WANT] = bstamp     # a follower that passes it wakes the leader
            break
        r = F_BASE + best * F_STRIDE
        tail = ctl[r + F_QTAIL]
        k = tail % rows
        ln = qlen[best * rows + k]
        src = u8_at(io[IO_QBUF] + (best * rows + k) * bufsize, bufsize)
        rbuf[n, :ln] = src[:ln]
        rlen[n] = ln
        n += 1
        fence()
        ctl[r + F_QTAIL] = tail + 1
    return n


@bound_kernel
def _in_order(ctl, nf, stamp):
    """Has every follower finished its packets before ``stamp`` (POS_ANY: no order)?"""
    fence()
    for f in range(nf):
        if ctl[F_BASE + f * F_STRIDE + F_POS] < stamp:
            return False
    return True


@bound_kernel
def _received(ctl):
    s = 0
    for f in range(ctl[G_NF]):
        s += ctl[F_BASE + f * F_STRIDE + F_NRECV]
    return s


@bound_kernel
def _ended(ctl):
    """0: a follower still runs; 1: all have left; -errno: one left on an error."""
    err = 0
    for f in range(ctl[G_NF]):
        r = F_BASE + f * F_STRIDE
        if ctl[r + F_DONE] == 0:
            return 0
        if ctl[r + F_ERRNO] != 0:
            err = ctl[r + F_ERRNO]
    fence()
    return -err if err != 0 else 1


@bound_kernel
def fetch(io, rbuf, rlen, meta, aux, auxlens, cnt):
    io = _borrow(io)
    rbuf = _borrow(rbuf)
    rlen = _borrow(rlen)
    cnt = _borrow(cnt)
    ctl = _i64_at(io[IO_CTL], io[IO_NCTL])
    n = _take(io, ctl, rbuf, rlen)
    if n > 0:
        return n
    timeout = io[IO_POLL_MS]           # ms; -1: wait for ever; 0: do not wait
    ts = _i64_at(io.ctypes.data + 8 * IO_TS, 2)
    seen = _received(ctl)
    since = now_ns(ts)
    while True:
        done = _ended(ctl)
        if done != 0:
            n = _take(io, ctl, rbuf, rlen)     # what was queued before the last one left
            if n > 0:
                return n
            if done < 0:
                cnt[C_ERRNO] = -done
                return F_ERROR
            return F_EOF
        ctl[G_LWAIT] = 1
        fence()
        n = _take(io, ctl, rbuf, rlen)
        if n > 0:
            ctl[G_LWAIT] = 0
            return n
        wait = _SLICE_MS
        if timeout >= 0:
            left = timeout - (now_ns(ts) - since) // 1_000_000
            if left < wait:
                wait = left if left > 0 else 0
        io[IO_POLLFD] = (io[IO_EVFD] & 0xFFFFFFFF) | (sc.POLLIN << 32)
        r = sc.poll_e(io[IO_POLLFD_ADDR], 1, wait)
        ctl[G_LWAIT] = 0
        if r > 0:
            sc.read_e(io[IO_EVFD], io.ctypes.data + 8 * IO_SCRATCH, 8)
        elif r < 0 and -r == sc.EINTR:
            return F_INTR
        n = _take(io, ctl, rbuf, rlen)
        if n > 0:
            return n
        got = _received(ctl)
        if got != seen:                      # the followers still receive: not quiet
            seen = got
            since = now_ns(ts)
        elif timeout >= 0 and now_ns(ts) - since >= timeout * 1_000_000:
            return F_TIMEOUT


@bound_kernel
def packet(rbuf, meta, aux, i, ln):
    return rbuf[i, :ln]
