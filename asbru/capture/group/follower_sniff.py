"""A follower of ``UDPSniffer(..., threads=N)``: one receive thread on one packet socket of
a PACKET_FANOUT group (asbru/capture/group/sniffer.py).

The loop of :mod:`.follower`, with the datagrams taken from the socket's TPACKET_V3 ring
(asbru/sockets/packet_ring.py) instead of ``recvmmsg``: a block the kernel has handed over
is walked once (the UDP payloads' offsets and lengths), its packets are consumed in batches
of ``FIO_NMSG`` (placed straight from the ring, or handed to the leader: ``_consume``),
and the block is given back once every packet of it is consumed.  While no window is open
only ``GATHER_BATCH`` packets are handed over at a time, as the socket follower does.

Template bound once (:func:`bind`): its collaborators are the follower's functions
(:data:`asbru.capture.group.bindings.SHARED`), which reach the format's decode/place through
the capture config.
"""
from __future__ import annotations

import numpy as np

from asbru.capture.borrow import borrow as _borrow
from asbru.capture.group.bindings import SHARED as BINDS  # noqa: F401  (the bound names)
from asbru.capture.group.follower import (  # defaults; bound (bindings.py)
    _adopt, _batch_done, _consume, _finish, _queue_busy, _wait_idle, _wait_paused)
from asbru.capture.group.follower import FIO_NMSG, FIO_TS, GATHER_BATCH, NFIO
from asbru.capture.group.shared import (F_BASE, F_NRECV, F_STRIDE, G_EPOCH, G_STATE, G_STOP,
                                        LAST_NONE, ST_OPEN, ST_PAUSE, now_ns)
from asbru.capture.layout import C_NINVALID, C_NINVALID_BYTES, C_NRECEIVED
from asbru.formats.engine import bound_kernel
from asbru.sockets import syscalls as sc
from asbru.sockets.packet_ring import (TP_STATUS_USER, block_status as _blk_status,
                                       release_block as _release, walk_block as _walk)


# the follower's io words beyond the socket follower's (asbru/capture/group/follower.py)
FIO_BSIZE = NFIO + 0    # block size of its ring (bytes)
FIO_NBLOCK = NFIO + 1   # blocks in its ring
FIO_BLOCK = NFIO + 2    # the next block to look at
FIO_MAXLEN = NFIO + 3   # largest accepted payload (max_payload_size)
NFIO_SNIFF = NFIO + 4

BD_NUM_PKTS = 12
_W = 1 - G_STATE


@bound_kernel
def _frames(ring, base):
    p = ring[base + BD_NUM_PKTS:base + BD_NUM_PKTS + 4]
    return (np.int64(p[0]) | (np.int64(p[1]) << 8) | (np.int64(p[2]) << 16)
            | (np.int64(p[3]) << 24))


@bound_kernel
def follow(ctl, me, fio, ring, offlen, qbuf, qlen, qstamp, fmask, cfg, fs, d, chg, cnt, psrc, loc):
    """Consume the ring's packets until ``ctl[G_STOP]`` (then those of the block it holds);
    returns the number of frames received.  ``offlen``: int64 [2, frames per block]."""
    ctl = _borrow(ctl)
    fio = _borrow(fio)
    ring = _borrow(ring)
    offlen = _borrow(offlen)
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
    bsize = fio[FIO_BSIZE]
    nblock = fio[FIO_NBLOCK]
    maxlen = fio[FIO_MAXLEN]
    off = offlen[0]
    lens = offlen[1]
    b = fio[FIO_BLOCK]
    n = 0                        # packets of the held block
    i = 0                        # the next one to consume
    held = False
    last = LAST_NONE
    total = 0
    triggered = np.int64(-1)
    ts = fio[FIO_TS:FIO_TS + 2]     # (follower.py: no local array)
    waits = 0
    if bsize <= 0 or nblock <= 0 or nblock * bsize > ring.shape[0]:
        _finish(ctl, row, fio, last)
        return 0
    while True:
        if ctl[G_EPOCH] != loc[0]:
            last = _adopt(ctl, row, loc, fs, last)
        stopping = ctl[G_STOP] != 0
        if stopping and i >= n:
            break                # (the packets of a held block are consumed first)
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
            if held:
                _release(ring, bsize, b)
                held = False
                b += 1
                if b >= nblock:
                    b = 0
                fio[FIO_BLOCK] = b
            if (_blk_status(ring, bsize, b) & TP_STATUS_USER) == 0:
                _wait_idle(ctl, row, loc, fio, sc.POLLIN | sc.POLLERR)
                continue
            nframe = _frames(ring, b * bsize)
            n = _walk(ring, bsize, b, off, lens)
            i = 0
            held = True
            if nframe < n:
                nframe = n
            # frames the walker cannot use (truncated, malformed) are received and invalid
            total += nframe
            cnt[C_NRECEIVED] += nframe
            ctl[row + F_NRECV] += nframe
            cnt[C_NINVALID] += nframe - n
            continue             # look at the window again before consuming
        end = i + quota
        if end > n:
            end = n
        stamp = now_ns(ts) * 64
        while i < end:
            o = off[i]
            ln = lens[i]
            k = i
            i += 1
            if ln > maxlen:
                cnt[C_NINVALID] += 1          # larger than max_payload_size
                cnt[C_NINVALID_BYTES] += ln
                continue
            state, last, triggered = _consume(ctl, row, fio, ring[o:o + ln], ln, stamp + (k & 63),
                                              state, last, triggered, qbuf, qlen, qstamp, fmask,
                                              cfg, fs, d, chg, cnt, psrc, loc, ts)
            if state != ST_OPEN and not stopping:
                break            # the window changed: look at it before the next packet
        _batch_done(ctl, row, last)
    if held:
        _release(ring, bsize, b)
        b += 1
        if b >= nblock:
            b = 0
        fio[FIO_BLOCK] = b
    _finish(ctl, row, fio, last)
    return total


def bind() -> object:
    """This template bound to the follower's functions (compiled once, for every format)."""
    import sys

    from asbru.capture import layout
    from asbru.capture.group import bindings, shared
    from asbru.sockets import packet_ring, syscalls
    return bindings.bind_to_follower("capture_follower_sniff", sys.modules[__name__],
                                     depends_on=(layout, shared, syscalls, packet_ring))
