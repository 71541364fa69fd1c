"""The ``udp`` receive backend (template, bound once): ``recvmmsg`` into the receive buffer.

See :mod:`asbru.capture.backends` for what a backend provides.  Its receive arrays:
``meta`` is ``hdrs``, the ``mmsghdr`` array (uint8 ``[nbatch, MMSGHDR_SIZE]``) that
``io[IO_ADDR]`` points at; ``aux``/``auxlens`` are ``control``/``controllens``, the
SO_RXQ_OVFL control buffers (zero columns when the kernel reports drops otherwise).
The packets drained while the loop compiled (:mod:`asbru.capture.staging`) come first.
"""
from __future__ import annotations

import numpy as np

from asbru.capture.layout import (C_ERRNO, C_KDROP_LAST, C_NKDROPS, C_NRECEIVED, F_EOF,
                                  F_ERROR, F_INTR, F_TIMEOUT, IO_ADDR, IO_FD, IO_NMSG,
                                  IO_POLL_MS, IO_POLLFD, IO_POLLFD_ADDR, IO_STAGE_ADDR,
                                  IO_STAGE_LENS, IO_STAGE_N, IO_STAGE_POS, IO_STAGE_ROW)
from asbru.formats.engine import bound_kernel
from asbru.formats.spec import _raw_copy
from asbru.sockets import syscalls as sc
from asbru.sockets.msgvec import OFF_MSG_FLAGS as MSG_OFF_FLAGS, OFF_MSG_LEN as MSG_OFF_LEN
from asbru.sockets.msgvec import rxq_ovfl as _rxq_ovfl

BINDS = ()
POLLRDHUP = 0x2000


@bound_kernel
def _rd_u32(b, p):
    return (np.int64(b[p]) | (np.int64(b[p + 1]) << 8) | (np.int64(b[p + 2]) << 16)
            | (np.int64(b[p + 3]) << 24))


@bound_kernel
def _shut_down(io):
    # a zero-length first message is what recvmmsg reports after shutdown(SHUT_RD);
    # POLLRDHUP tells that apart from a real zero-length datagram
    io[IO_POLLFD] = (io[IO_FD] & 0xFFFFFFFF) | (POLLRDHUP << 32)
    r = sc.poll_e(io[IO_POLLFD_ADDR], 1, 0)
    if r <= 0:
        return False
    revents = (io[IO_POLLFD] >> 48) & 0xFFFF
    return (revents & POLLRDHUP) != 0


@bound_kernel
def _fetch_staged(io, rbuf, rlen, cnt):
    # the next packets drained into the staging rows while the loop was compiled; every
    # copy stays inside a staged row (IO_STAGE_ROW bytes) and a receive-buffer row
    n = rbuf.shape[0]
    if n > rlen.shape[0]:
        n = rlen.shape[0]
    pos = io[IO_STAGE_POS]
    left = io[IO_STAGE_N] - pos
    if n > left:
        n = left
    bufsize = rbuf.shape[1]
    row = io[IO_STAGE_ROW]
    for i in range(n):
        _raw_copy(rlen.ctypes.data + 8 * i, io[IO_STAGE_LENS] + 8 * (pos + i), 8)
        ln = rlen[i]
        nb = ln if ln >= 0 else -1 - ln
        if nb > bufsize:
            nb = bufsize
        if nb > row:
            nb = row
        _raw_copy(rbuf.ctypes.data + i * bufsize, io[IO_STAGE_ADDR] + (pos + i) * row, nb)
    io[IO_STAGE_POS] = pos + n
    cnt[C_NRECEIVED] += n
    return n


@bound_kernel
def fetch(io, rbuf, rlen, hdrs, control, controllens, cnt):
    if io[IO_STAGE_POS] < io[IO_STAGE_N]:
        return _fetch_staged(io, rbuf, rlen, cnt)
    fd = io[IO_FD]
    n = io[IO_NMSG]
    if n > rbuf.shape[0]:
        n = rbuf.shape[0]
    if n > hdrs.shape[0]:
        n = hdrs.shape[0]
    if n > rlen.shape[0]:
        n = rlen.shape[0]
    bufsize = rbuf.shape[1]
    if io[IO_POLL_MS] != -2:
        # non-blocking descriptor (e.g. a Python socket with settimeout): wait here
        io[IO_POLLFD] = (fd & 0xFFFFFFFF) | (sc.POLLIN << 32)
        r = sc.poll_e(io[IO_POLLFD_ADDR], 1, io[IO_POLL_MS])
        if r == 0:
            return F_TIMEOUT
        if r < 0:
            if -r == sc.EINTR:
                return F_INTR
            cnt[C_ERRNO] = -r
            return F_ERROR
    csize = control.shape[1]
    if csize > 0:
        for i in range(n):
            controllens[i] = csize
    # MSG_TRUNC: the length of a datagram larger than the buffer is its real size, so an
    # oversize datagram is counted invalid with the bytes it really had
    r = sc.recvmmsg_e(fd, io[IO_ADDR], n, sc.MSG_WAITFORONE | sc.MSG_TRUNC, 0)
    if r < 0:
        e = -r
        if e == sc.EAGAIN or e == sc.EWOULDBLOCK:
            return F_TIMEOUT
        if e == sc.EINTR:
            return F_INTR
        cnt[C_ERRNO] = e
        return F_ERROR
    if r == 0:
        return F_EOF
    for i in range(r):
        h = hdrs[i]
        ln = _rd_u32(h, MSG_OFF_LEN)
        fl = _rd_u32(h, MSG_OFF_FLAGS)
        if (fl & sc.MSG_TRUNC) != 0 or ln > bufsize:
            rlen[i] = -1 - ln   # bigger than max_payload_size: invalid, never half-used
        else:
            rlen[i] = ln
        if csize > 0:
            v = _rxq_ovfl(control, controllens, i)
            if v >= 0:
                last = cnt[C_KDROP_LAST]
                if last < 0:
                    last = 0
                cnt[C_NKDROPS] += (v - last) & 0xFFFFFFFF
                cnt[C_KDROP_LAST] = v
    if r >= 1 and rlen[0] == 0 and _shut_down(io):
        return F_EOF
    cnt[C_NRECEIVED] += r
    return r


@bound_kernel
def packet(rbuf, hdrs, control, i, ln):
    return rbuf[i, :ln]
