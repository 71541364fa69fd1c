"""The ``disk`` receive backend (template, bound once): ``read()`` of whole records.

See :mod:`asbru.capture.backends` for what a backend provides.  The receive buffer's rows
``DISK_BACK_ROWS..`` hold the records of a batch; the rows in front keep the bytes that came
just before it (for :mod:`~asbru.capture.backends.disk_resync`, this backend's resync;
the layout helpers are :mod:`~asbru.capture.backends.disk_rows`).  ``meta``, ``aux``, ``auxlens`` are unused.
"""
from __future__ import annotations

from asbru.capture.layout import (C_ERRNO, C_NRECEIVED, DISK_BACK_ROWS, F_EOF, F_ERROR, F_INTR,
                                  IO_ADDR, IO_BACK, IO_CARRY_LEN, IO_CARRY_OFF, IO_EOF, IO_FD,
                                  IO_FILL, IO_NEED, IO_OFFSET, IO_POLLFD, IO_POLLFD_ADDR,
                                  IO_SCAN_END)
from asbru.capture.backends.disk_rows import flat as _flat, read_cap as _read_cap
from asbru.formats.engine import bound_kernel
from asbru.sockets import syscalls as sc

BINDS = ()


@bound_kernel
def fetch(io, rbuf, rlen, meta, aux, auxlens, cnt):
    # hand over whole records (rows DISK_BACK_ROWS.. of rbuf are records), ~1 MiB per
    # read().  Bytes kept back by the last call (a partial record, or the records after a
    # resync point) come first; the bytes just before them stay in the rows in front
    # (io[IO_BACK] of them), so that a resync of the first records can look back.
    # A pipe, FIFO or socket may return less than asked: the call returns as soon as it
    # holds one whole record (or io[IO_NEED] bytes: a resync that needs to see further)
    # and keeps the partial rest for the next; a short tail at end of input is a short
    # record handed to decode (which rejects it)
    fd = io[IO_FD]
    rs = rbuf.shape[1]
    base = DISK_BACK_ROWS * rs
    cap = _read_cap(rbuf, rlen)
    flat = _flat(rbuf)
    got = io[IO_CARRY_LEN]
    # what the last batch consumed ends where the kept bytes start (or at its fill)
    end = io[IO_CARRY_OFF] if got > 0 else io[IO_FILL]
    back = io[IO_BACK] + end
    if back > base:
        back = base
    if back < 0:
        back = 0
    if end != 0 and back + got > 0:
        flat[base - back:base + got] = flat[base + end - back:base + end + got]
    io[IO_BACK] = back
    io[IO_FILL] = 0      # moved: a call that returns early moves nothing again
    io[IO_CARRY_LEN] = 0
    io[IO_CARRY_OFF] = 0
    io[IO_SCAN_END] = 0
    want = io[IO_NEED]
    io[IO_NEED] = 0
    if want < rs:
        want = rs
    if want > cap:
        want = cap
    carried = got
    eof = False
    while got < cap:
        r = sc.read_e(fd, io[IO_ADDR] + base + got, cap - got)
        if r < 0:
            e = -r
            if e == sc.EAGAIN or e == sc.EWOULDBLOCK:
                # a non-blocking descriptor (a socket with a timeout): wait for data
                if got >= want:
                    break
                io[IO_POLLFD] = (fd & 0xFFFFFFFF) | (sc.POLLIN << 32)
                sc.poll_e(io[IO_POLLFD_ADDR], 1, -1)
                continue
            if e == sc.EINTR:
                if got > 0:
                    continue
                return F_INTR
            if got > 0:
                break
            cnt[C_ERRNO] = e
            return F_ERROR
        if r == 0:
            eof = True
            break
        got += r
        if got >= want:
            break
    io[IO_OFFSET] += got - carried
    io[IO_EOF] = 1 if eof else 0
    if got == 0:
        return F_EOF
    nfull = got // rs
    rem = got - nfull * rs
    for i in range(nfull):
        rlen[i] = rs
    if rem > 0:
        if eof or nfull == 0:
            rlen[nfull] = rem
            nfull += 1
        else:
            io[IO_CARRY_OFF] = nfull * rs
            io[IO_CARRY_LEN] = rem
    io[IO_FILL] = got - io[IO_CARRY_LEN]
    cnt[C_NRECEIVED] += nfull
    return nfull


@bound_kernel
def packet(rbuf, meta, aux, i, ln):
    return rbuf[DISK_BACK_ROWS + i, :ln]
