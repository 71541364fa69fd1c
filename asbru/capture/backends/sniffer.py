"""The ``sniffer`` receive backend (template, bound once): an AF_PACKET TPACKET_V3 ring.

See :mod:`asbru.capture.backends` for what a backend provides.  Packets stay where the
kernel put them, in the memory-mapped ring: ``fetch`` walks the next block the kernel handed
over and writes each UDP payload's offset in the ring into ``offsets`` (the engine's
``meta`` array, int64) and its length into ``rlen``; ``packet`` returns the payload as a
view of ``ring`` (the engine's ``aux`` array).  ``auxlens`` is unused.  ``io`` slots past
``NIO`` are this backend's own (:data:`IO_BSIZE` ...; set by asbru/capture/sniffer.py).
"""
from __future__ import annotations

import numpy as np

from asbru.capture.layout import (C_ERRNO, C_NINVALID, C_NRECEIVED, F_ERROR, F_INTR,
                                  F_TIMEOUT, IO_FD, IO_POLL_MS, IO_POLLFD, IO_POLLFD_ADDR, NIO)
from asbru.formats.engine import bound_kernel
from asbru.sockets import syscalls as sc
from asbru.sockets.packet_ring import (TP_STATUS_USER, block_status as _blk_status,
                                       release_block as _release, walk_block as _walk)

BINDS = ()

# io[] slots past layout.NIO: this backend's own (the Python side: asbru/capture/sniffer.py)
IO_BSIZE = NIO + 0     # block size (bytes)
IO_NBLOCK = NIO + 1    # number of blocks
IO_BLOCK = NIO + 2     # current block
IO_HELD = NIO + 3      # 1: the current block is ours (its packets may still be pending)
IO_MAXLEN = NIO + 4    # largest accepted datagram payload (max_payload_size)
NIO_SNIFF = NIO + 8
BD_NUM_PKTS = 12


@bound_kernel
def packet(rbuf, offsets, ring, i, ln):
    o = offsets[i]
    return ring[o:o + ln]


@bound_kernel
def _num_pkts(ring, base):
    p = ring[base + BD_NUM_PKTS:base + BD_NUM_PKTS + 4]
    return (np.int64(p[0]) | (np.int64(p[1]) << 8) | (np.int64(p[2]) << 16)
            | (np.int64(p[3]) << 24))


@bound_kernel
def _give_back(ring, io, bsize, nblock, b):
    # hand block b back to the kernel; the next block to look at
    _release(ring, bsize, b)
    io[IO_HELD] = 0
    b += 1
    if b >= nblock:
        b = 0
    io[IO_BLOCK] = b
    return b


@bound_kernel
def fetch(io, rbuf, rlen, offsets, ring, auxlens, cnt):
    bsize = io[IO_BSIZE]
    nblock = io[IO_NBLOCK]
    b = io[IO_BLOCK]
    if bsize <= 0 or nblock <= 0 or nblock * bsize > ring.shape[0]:
        cnt[C_ERRNO] = 22  # EINVAL: set-up does not match the ring
        return F_ERROR
    if io[IO_HELD] != 0:
        # every packet of the previous block has been consumed: give it back
        b = _give_back(ring, io, bsize, nblock, b)
    waited = False
    while True:
        st = _blk_status(ring, bsize, b)
        if (st & TP_STATUS_USER) == 0:
            if waited:
                return F_TIMEOUT
            io[IO_POLLFD] = (io[IO_FD] & 0xFFFFFFFF) | ((sc.POLLIN | sc.POLLERR) << 32)
            r = sc.poll_e(io[IO_POLLFD_ADDR], 1, io[IO_POLL_MS])
            if r == 0:
                waited = True      # look once more, then report the timeout
            elif r < 0:
                if -r == sc.EINTR:
                    return F_INTR
                cnt[C_ERRNO] = -r
                return F_ERROR
            continue
        npkt = _num_pkts(ring, b * bsize)
        n = _walk(ring, bsize, b, offsets, rlen)
        io[IO_HELD] = 1
        if npkt < n:
            npkt = n
        # frames the walker could not use (truncated, malformed) are received and invalid
        cnt[C_NRECEIVED] += npkt
        cnt[C_NINVALID] += npkt - n
        maxlen = io[IO_MAXLEN]
        for i in range(n):
            if rlen[i] > maxlen:
                rlen[i] = -1 - rlen[i]   # bigger than max_payload_size: invalid, never half-used
        if n > 0:
            return n
        b = _give_back(ring, io, bsize, nblock, b)
