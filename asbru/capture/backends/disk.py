"""The ``disk`` receive backend (template, bound once): ``read()`` of whole records.

See :mod:`asbru.capture.backends` for what a backend provides.  The receive buffer is one
*region* (a pipe, FIFO or socket) or ``K`` regions read ahead by a second thread (a regular
file: :mod:`~asbru.capture.backends.disk_readahead`), each laid out alike: its rows
``DISK_BACK_ROWS..`` hold the records of a batch, the rows in front keep the bytes that came
just before it (for :mod:`~asbru.capture.backends.disk_resync`, this backend's resync; the
layout helpers are :mod:`~asbru.capture.backends.disk_rows`).  ``meta`` is a view of
``io[IO_ROW0]`` (the current region's first row), ``aux`` the read-ahead's control array
(int64); ``auxlens`` is unused.
"""
from __future__ import annotations

from asbru.capture.layout import (C_ERRNO, C_NRECEIVED, DISK_BACK_ROWS, F_EOF, F_ERROR, F_INTR,
                                  IO_ADDR, IO_BACK, IO_CARRY_LEN, IO_CARRY_OFF, IO_EOF, IO_FD,
                                  IO_FILL, IO_NEED, IO_OFFSET, IO_POLLFD, IO_POLLFD_ADDR,
                                  IO_SCAN_END)
from asbru.capture.backends.disk_readahead import (IO_NROW, IO_POS, IO_RA, IO_RA_CUR,
                                                   IO_RA_INFLIGHT, IO_RA_LEN, IO_RA_OFF, IO_ROW0, NCTL,
                                                   CTL_ERR, CTL_GOT, drain as _ra_drain,
                                                   give_back as _ra_give_back,
                                                   prime as _ra_prime, take as _ra_take)
from asbru.capture.backends.disk_rows import (flat as _flat, move as _move,
                                              read_cap as _read_cap, rows as _rows)
from asbru.formats.engine import bound_kernel
from asbru.formats.spec import copy_bytes
from asbru.sockets import syscalls as sc

BINDS = ()


@bound_kernel
def fetch(io, rbuf, rlen, meta, ctl, auxlens, cnt):
    # hand over whole records (rows DISK_BACK_ROWS.. of the current region are records),
    # ~1 MiB per read().  Bytes kept back by the last call (a partial record, or the
    # records after a resync point) come first; the bytes just before them stay in the rows
    # in front (io[IO_BACK] of them), so that a resync of the first records can look back.
    # A pipe, FIFO or socket may return less than asked: the call returns as soon as it
    # holds one whole record (or io[IO_NEED] bytes: a resync that needs to see further)
    # and keeps the partial rest for the next; a short tail at end of input is a short
    # record handed to decode (which rejects it)
    fd = io[IO_FD]
    rb = _rows(io, rbuf)
    rs = rb.shape[1]
    base = DISK_BACK_ROWS * rs
    cap = _read_cap(rb, rlen)
    flat = _flat(rb)
    got = io[IO_CARRY_LEN]
    # what the last batch consumed ends where the kept bytes start (or at its fill)
    end = io[IO_CARRY_OFF] if got > 0 else io[IO_FILL]
    back = io[IO_BACK] + end
    if back > base:
        back = base
    if back < 0:
        back = 0
    ra = io[IO_RA]
    if ra > 0:
        # read ahead: the region after the current one holds the next bytes of the file,
        # unless the descriptor was moved (seek) or bytes are kept back (they would have
        # to come first: rare, after a resync or a partial record at the end of the file)
        pos = sc.lseek_e(fd, 0, sc.SEEK_CUR)
        if pos != io[IO_POS]:
            _ra_drain(io)
            io[IO_POS] = pos
            io[IO_RA_OFF] = pos
        if got > 0:
            _ra_drain(io)
        else:
            if io[IO_RA_INFLIGHT] == 0:
                _ra_prime(io, ctl)
            k = _ra_take(io, ctl)
            if k >= 0:
                return _take_region(io, rbuf, rlen, ctl, cnt, flat, back, end, k)
    if end != 0 and back + got > 0:
        _move(flat, base - back, base + end - back, back + got)
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
        r = sc.read_e(fd, io[IO_ADDR] + io[IO_ROW0] * rs + base + got, cap - got)
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
    io[IO_POS] += got - carried
    return _hand_over(io, rlen, cnt, got, rs, eof)


@bound_kernel
def _take_region(io, rbuf, rlen, ctl, cnt, old, back, end, k):
    # the reading thread has filled region k with the bytes after the current batch: the
    # bytes before them (the current batch's last ``back``) go to its rows in front, and
    # the current region goes back to the reader for the next stretch of the file
    nrow = io[IO_NROW]
    rs = rbuf.shape[1]
    base = DISK_BACK_ROWS * rs
    new = _flat(rbuf[k * nrow:(k + 1) * nrow])
    if back > 0:
        # one memcpy (a slice assignment here compiled to a loop that cost a tenth of the
        # loop thread's time on the 16-core host)
        copy_bytes(new, base - back, old, base + end - back, back)
    got = ctl[k * NCTL + CTL_GOT]
    err = ctl[k * NCTL + CTL_ERR]
    io[IO_BACK] = back
    io[IO_FILL] = 0
    io[IO_CARRY_LEN] = 0
    io[IO_CARRY_OFF] = 0
    io[IO_SCAN_END] = 0
    io[IO_NEED] = 0
    cur = io[IO_RA_CUR]
    io[IO_RA_CUR] = k
    io[IO_ROW0] = k * nrow
    io[IO_POS] += got
    io[IO_OFFSET] += got
    # the descriptor's position follows, as if this thread had read (tell(), and the
    # check that nobody moved it)
    sc.lseek_e(io[IO_FD], io[IO_POS], sc.SEEK_SET)
    if got == io[IO_RA_LEN] and err == 0:
        _ra_give_back(io, ctl, cur)
    else:
        # the end of the file (or an error): what was asked for after it is not the
        # stream's continuation (the file may grow meanwhile); ask again from here
        _ra_drain(io)
    if got == 0:
        if err != 0:
            cnt[C_ERRNO] = err
            return F_ERROR
        io[IO_EOF] = 1
        return F_EOF
    # a read in this thread stops at the first whole record and meets the end of the file
    # only below one: the same here, so that both ways hand over the same batches
    return _hand_over(io, rlen, cnt, got, rs, got < rs)


@bound_kernel
def _hand_over(io, rlen, cnt, got, rs, eof):
    # the batch of ``got`` bytes at the current region's rows DISK_BACK_ROWS..: whole
    # records, a partial one kept for the next call (or handed over short at the end)
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
    return rbuf[meta[0] + DISK_BACK_ROWS + i, :ln]
