"""A follower: one receive thread of a multi-core capture (docs/multicore.md).

``follow`` runs in its own thread without the GIL until the capture stops it.  It receives
from its own socket (``recvmmsg``) and handles the fast path itself: a packet that decodes,
agrees with the open sequence and lands in the published window is placed straight into
the ring span, its mask bit set in this follower's own mask plane, and counted in this
follower's own counters; a packet a little late is counted late.  Everything else -- no
sequence open, a new or changed sequence, a packet beyond the window or far behind it, one
that does not decode -- goes to the leader through this follower's hand-off queue, and the
leader treats it exactly as a single-thread capture would.

This file is a template module (asbru/formats/engine.py), bound once (:func:`bind`): the
format's ``decode``/``place`` are reached through their addresses in the capture config
(:mod:`asbru.formats.indirect`), so one compiled follower serves every format.
"""
from __future__ import annotations

import numpy as np

from asbru.capture.borrow import borrow as _borrow
from asbru.capture.loop_parts import inline_into_callers
from asbru.formats.engine import bound_kernel
from asbru.formats.indirect import decode as _decode, place as _place
from asbru.sockets.msgvec import OFF_MSG_FLAGS as MSG_OFF_FLAGS, OFF_MSG_LEN as MSG_OFF_LEN

BINDS = ()

from asbru.capture.layout import (C_NDUP, C_NDUP_BYTES, C_NINVALID, C_NINVALID_BYTES, C_NLATE,
                                  C_NLATE_BYTES, C_NRECEIVED, C_NVALID, C_NVALID_BYTES, C_ERRNO,
                                  PS_DUP, PS_LATE, PS_VALID)
from asbru.capture.group.shared import (F_ACK, F_BASE, F_DONE, F_ERRNO, F_IDLE, F_LAST, F_NHAND, F_SEEN,
                                        F_WAIT_NS, now_ns,
                                        F_NRECV, F_QHEAD, F_QTAIL, F_SEQID, F_STRIDE, G_CUR,
                                        G_EPOCH, G_FSTATE, G_GA, G_GB, G_K, G_LWAIT, G_N, G_NSRC,
                                        G_P, G_S, G_SEQID, G_SLOTA, G_SLOTB, G_STATE, G_STOP,
                                        LAST_NONE, ST_OPEN, ST_PAUSE, fence, read_window, u8_at,
                                        yield_cpu)
from asbru.formats.spec import CFG_USES_STATE, NSTATE, PAYLOAD_OFFSET, PAYLOAD_SIZE, SEQ, SRC, VALID
from asbru.sockets import syscalls as sc

# what the follower's own io array holds
FIO_FD = 0        # its socket
FIO_ADDR = 1      # address of its mmsghdr array
FIO_NMSG = 2      # datagrams per recvmmsg
FIO_EVFD = 3      # the leader's event descriptor (written to wake a sleeping leader)
FIO_POLLFD = 4    # scratch: one struct pollfd
FIO_POLLFD_ADDR = 5
FIO_ONE = 6       # the 8-byte value 1 written to the event descriptor
FIO_ONE_ADDR = 7
FIO_IDLE_MS = 8   # how long one wait for packets lasts (a stop is noticed this soon)
FIO_TS = 9        # scratch: two words for clock_gettime (a slice of the borrowed fio: a
                  # local array took an atomic reference count per packet, 12-17 % of a
                  # receive thread's time on the 16-core host)
NFIO = 11

POLLRDHUP = 0x2000

# datagrams received per call while no window is open (all of them go to the leader)
GATHER_BATCH = 4

# what _fast says about a packet (any larger value: placed, its seq)
HAND = LAST_NONE + 1
NEXT_GULP = LAST_NONE + 2
CONSUMED = LAST_NONE + 3

# offsets of the window words in the follower's private copy (loc[0] is the epoch)
_W = 1 - G_STATE


@bound_kernel
def _rd_u32(b, p):
    return (np.int64(b[p]) | (np.int64(b[p + 1]) << 8) | (np.int64(b[p + 2]) << 16)
            | (np.int64(b[p + 3]) << 24))


@bound_kernel
def _adopt(ctl, row, loc, fs, last):
    """Take the newest window: copy it (and the format's decode state), then acknowledge
    it -- after a fence, so that every placement made with older windows is visible first.
    Returns the largest seq placed so far in the (maybe new) sequence."""
    seqid = loc[_W + G_SEQID]
    read_window(ctl, loc)
    for j in range(NSTATE):
        fs[j] = loc[_W + G_FSTATE + j]
    if loc[_W + G_SEQID] != seqid:
        last = LAST_NONE
        ctl[row + F_LAST] = LAST_NONE
        ctl[row + F_SEEN] = LAST_NONE
        ctl[row + F_SEQID] = loc[_W + G_SEQID]
    fence()
    ctl[row + F_ACK] = loc[0]
    return last


@bound_kernel
def _hand(ctl, row, fio, pkt, ln, qbuf, qlen, qstamp, stamp, loc, fs, last):
    """Push one packet to the leader's queue; while the queue is full, keep acknowledging
    new windows (the leader may be waiting for that before it takes from the queue)."""
    head = ctl[row + F_QHEAD]
    q = qbuf.shape[0]
    while head - ctl[row + F_QTAIL] >= q:
        if ctl[G_STOP] == 2:
            return last       # the capture was dropped without end(): nobody will take it
        if ctl[G_EPOCH] != loc[0]:
            ctl[row + F_LAST] = last
            fence()
            last = _adopt(ctl, row, loc, fs, last)
        yield_cpu()
    k = head % q
    qbuf[k, :ln] = pkt
    qlen[k] = ln
    qstamp[k] = stamp
    fence()
    ctl[row + F_QHEAD] = head + 1
    ctl[row + F_NHAND] += 1
    fence()
    if ctl[G_LWAIT] != 0:
        sc.write_e(fio[FIO_EVFD], fio[FIO_ONE_ADDR], 8)
    return last


@bound_kernel
def _shut_down(fio):
    fio[FIO_POLLFD] = (fio[FIO_FD] & 0xFFFFFFFF) | (POLLRDHUP << 32)
    r = sc.poll_e(fio[FIO_POLLFD_ADDR], 1, 0)
    if r <= 0:
        return False
    return (((fio[FIO_POLLFD] >> 48) & 0xFFFF) & POLLRDHUP) != 0


@bound_kernel
def _wait_paused(ctl, row, loc, ts):
    """``PAUSE``: receive nothing until the leader publishes the next window (or stops)."""
    t0 = now_ns(ts)
    while ctl[G_EPOCH] == loc[0] and ctl[G_STOP] == 0:
        yield_cpu()
    ctl[row + F_WAIT_NS] += now_ns(ts) - t0


@bound_kernel
def _queue_busy(ctl, row, waits):
    """No window open: everything goes to the leader, a few packets at a time, and only
    once it has taken the last ones, so that what each source holds stays there and the
    leader sees the sources' packets interleaved as they arrived (a thread that read its
    whole backlog at once would be far ahead of the rest).  Returns 0 when this follower
    may receive, else how long it has waited (the caller looks at the window again)."""
    if ctl[row + F_QHEAD] > ctl[row + F_QTAIL]:
        waits += 1
        if waits < 2000:
            yield_cpu()
        else:
            sc.poll_e(0, 0, 1)
        return waits
    return 0


@bound_kernel
def _wait_idle(ctl, row, loc, fio, events):
    """Nothing to receive: wait for ``events`` on ``fio[FIO_FD]`` (at most
    ``fio[FIO_IDLE_MS]``), marked idle, so that the leader need not wait for us."""
    fence()
    ctl[row + F_IDLE] = 1
    fence()
    if ctl[G_EPOCH] == loc[0] and ctl[G_STOP] == 0:
        fio[FIO_POLLFD] = (fio[FIO_FD] & 0xFFFFFFFF) | (events << 32)
        sc.poll_e(fio[FIO_POLLFD_ADDR], 1, fio[FIO_IDLE_MS])
    ctl[row + F_IDLE] = 0
    fence()


@bound_kernel
def _batch_done(ctl, row, last):
    """After a batch: the placements (streaming stores too) visible before the leader
    reads how far this follower's stream has come."""
    fence()
    ctl[row + F_LAST] = last
    if last > ctl[row + F_SEEN]:
        ctl[row + F_SEEN] = last


@bound_kernel
def _finish(ctl, row, fio, last):
    """Leave: the largest seq placed, then ``F_DONE`` (and wake a sleeping leader)."""
    ctl[row + F_LAST] = last
    fence()
    ctl[row + F_DONE] = 1
    fence()
    if ctl[G_LWAIT] != 0:
        sc.write_e(fio[FIO_EVFD], fio[FIO_ONE_ADDR], 8)


@bound_kernel
def _consume(ctl, row, fio, pkt, ln, stamp, state, last, triggered, qbuf, qlen, qstamp,
             fmask, cfg, fs, d, chg, cnt, psrc, loc, ts):
    """One received packet (any receive loop: this one, the sniffer's, the disk's): placed
    (or found late or duplicate) while the window is open, else handed to the leader.
    Returns the window state now, the largest seq placed, and the epoch in which this
    follower handed over a packet of the gulp beyond the window."""
    # folded into the receive loop by LLVM: as a call, each of its array arguments travels
    # as a struct on the stack (the single-thread loop folds its per-packet work in too)
    inline_into_callers()
    s = LAST_NONE
    while state == ST_OPEN:
        s = _fast(pkt, ln, loc, cfg, fs, d, chg, fmask, cnt, psrc)
        if s > NEXT_GULP:
            if s > last:
                last = s
            break
        if s == NEXT_GULP and triggered == loc[0]:
            # the window is moving (our first such packet told the leader): wait
            # for it rather than hand the leader the packets of the next gulp
            ctl[row + F_LAST] = last
            if d[SEQ] > ctl[row + F_SEEN]:
                ctl[row + F_SEEN] = d[SEQ]
            fence()
            t0 = now_ns(ts)
            while ctl[G_EPOCH] == loc[0] and ctl[G_STOP] == 0:
                yield_cpu()
            while ctl[G_STOP] == 0:
                if ctl[G_EPOCH] != loc[0]:
                    last = _adopt(ctl, row, loc, fs, last)
                if loc[_W + G_STATE] != ST_PAUSE:
                    break
                yield_cpu()
            ctl[row + F_WAIT_NS] += now_ns(ts) - t0
            state = loc[_W + G_STATE]
            if ctl[G_STOP] != 0:
                break
            continue
        if s == NEXT_GULP:
            triggered = loc[0]
            if d[SEQ] > ctl[row + F_SEEN]:
                ctl[row + F_SEEN] = d[SEQ]
        break
    if state == ST_OPEN and s > NEXT_GULP:
        return state, last, triggered
    last = _hand(ctl, row, fio, pkt, ln, qbuf, qlen, qstamp, stamp, loc, fs, last)
    return loc[_W + G_STATE], last, triggered


@bound_kernel
def follow(ctl, me, fio, rbuf, hdrs, qbuf, qlen, qstamp, fmask, cfg, fs, d, chg, cnt, psrc, loc):
    """Receive and place until ``ctl[G_STOP]``; returns the number of datagrams received."""
    # the caller (the thread's Python frame) holds every array for the whole call: work on
    # borrowed views, so that slicing costs no atomic reference counting (borrow.py)
    ctl = _borrow(ctl)
    fio = _borrow(fio)
    rbuf = _borrow(rbuf)
    hdrs = _borrow(hdrs)
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
    fd = fio[FIO_FD]
    bufsize = rbuf.shape[1]
    last = LAST_NONE
    total = 0
    triggered = np.int64(-1)     # the epoch in which we handed over a next-gulp packet
    ts = fio[FIO_TS:FIO_TS + 2]
    waits = 0
    while True:
        if ctl[G_EPOCH] != loc[0]:
            last = _adopt(ctl, row, loc, fs, last)
        if ctl[G_STOP] != 0:
            break
        state = loc[_W + G_STATE]
        if state == ST_PAUSE:
            _wait_paused(ctl, row, loc, ts)
            continue
        nmsg = fio[FIO_NMSG]
        if state != ST_OPEN:
            waits = _queue_busy(ctl, row, waits)
            if waits > 0:
                continue
            if nmsg > GATHER_BATCH:
                nmsg = GATHER_BATCH
        waits = 0
        r = sc.recvmmsg_e(fd, fio[FIO_ADDR], nmsg, sc.MSG_DONTWAIT | sc.MSG_TRUNC, 0)
        if r < 0:
            e = -r
            if e == sc.EAGAIN or e == sc.EWOULDBLOCK:
                _wait_idle(ctl, row, loc, fio, sc.POLLIN | POLLRDHUP)
                continue
            if e == sc.EINTR:
                continue
            ctl[row + F_ERRNO] = e
            cnt[C_ERRNO] = e
            break
        if r >= 1 and _rd_u32(hdrs[0], MSG_OFF_LEN) == 0 and _shut_down(fio):
            break        # shutdown(): the end of this socket's stream
        # when they arrived (ns, + the index in the batch): the leader takes hand-offs of
        # all sockets in this order
        stamp = now_ns(ts) * 64
        total += r
        cnt[C_NRECEIVED] += r
        ctl[row + F_NRECV] += r
        for i in range(r):
            h = hdrs[i]
            ln = _rd_u32(h, MSG_OFF_LEN)
            if (_rd_u32(h, MSG_OFF_FLAGS) & sc.MSG_TRUNC) != 0 or ln > bufsize:
                cnt[C_NINVALID] += 1          # larger than max_payload_size
                cnt[C_NINVALID_BYTES] += ln
                continue
            state, last, triggered = _consume(ctl, row, fio, rbuf[i, :ln], ln, stamp + i, state,
                                              last, triggered, qbuf, qlen, qstamp, fmask, cfg,
                                              fs, d, chg, cnt, psrc, loc, ts)
        _batch_done(ctl, row, last)
    _finish(ctl, row, fio, last)
    return total


@bound_kernel
def _fast(pkt, ln, loc, cfg, fs, d, chg, fmask, cnt, psrc):
    """One packet while the window is open.  Returns ``HAND`` when the leader must have it,
    ``NEXT_GULP`` when it lies in the gulp just beyond the window; otherwise it is consumed
    (placed, late or duplicate) and the return value is its seq if placed, else
    ``LAST_NONE + 3``."""
    inline_into_callers()      # folded into _consume (see there)
    hand = HAND
    for j in range(chg.shape[0]):
        d[chg[j]] = -1
    if _decode(pkt, cfg, fs, d) != VALID:
        return hand           # invalid, or the format must learn: the leader decides
    if cfg[CFG_USES_STATE] != 0:
        # the decode state must be the leader's: a packet that changes it (learning) is
        # decoded again by the leader, with the leader's state
        changed = False
        for j in range(NSTATE):
            if fs[j] != loc[_W + G_FSTATE + j]:
                changed = True
        if changed:
            for j in range(NSTATE):
                fs[j] = loc[_W + G_FSTATE + j]
            return hand
    nsrc = loc[_W + G_NSRC]
    p = loc[_W + G_P]
    src = d[SRC]
    po = d[PAYLOAD_OFFSET]
    ps = d[PAYLOAD_SIZE]
    if src < 0 or src >= nsrc or ps != p or po < 0 or po + ps > ln:
        return hand
    for j in range(chg.shape[0]):
        f = chg[j]
        v = d[f]
        if v != -1 and v != loc[_W + G_CUR + f]:
            return hand       # a change, or a field the sequence has not stated yet
    n = loc[_W + G_N]
    diff = d[SEQ] - loc[_W + G_S]
    if diff < 0:
        if diff < -2 * n:
            return hand       # far behind: the leader watches for a backward jump
        cnt[C_NLATE] += 1
        cnt[C_NLATE_BYTES] += ps
        psrc[PS_LATE, src] += 1
        return CONSUMED
    k = loc[_W + G_K]
    if diff >= k * n:
        if diff < (k + 1) * n:
            return NEXT_GULP  # just beyond: the leader opens the next gulp for it
        return hand           # further: the leader decides (a jump, or a stray)
    g = diff // n
    t = diff - g * n
    plane = loc[_W + G_SLOTA] if g == 0 else loc[_W + G_SLOTB]
    if fmask[plane, t, src] != 0:
        cnt[C_NDUP] += 1
        cnt[C_NDUP_BYTES] += ps
        psrc[PS_DUP, src] += 1
        return CONSUMED
    fmask[plane, t, src] = 1
    sb = nsrc * p
    base = loc[_W + G_GA] if g == 0 else loc[_W + G_GB]
    slot = u8_at(base + t * sb, sb)
    _place(cfg, pkt[po:po + p], d, slot, nsrc)
    cnt[C_NVALID] += 1
    cnt[C_NVALID_BYTES] += ps
    psrc[PS_VALID, src] += 1
    return d[SEQ]


def bind() -> object:
    """This template bound (compiled and cached once, for every format)."""
    import sys

    from asbru.capture import layout, loop_parts
    from asbru.capture.group import shared
    from asbru.formats import engine, indirect, spec
    from asbru.sockets import msgvec, syscalls

    return engine.bound_module("capture_follower", sys.modules[__name__], {},
                               depends_on=(spec, indirect, layout, loop_parts, shared, syscalls,
                                           msgvec))
