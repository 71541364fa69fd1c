"""Read-ahead for the ``disk`` backend: a second thread reads the next stretches of a
regular file while the capture loop places the current one.

A DiskReader on one thread copies every byte twice in series: the kernel copies the page
cache into the receive buffer (``read``), then the loop copies each payload into the ring.
Here the first copy runs on another core: the file is read in *regions* of the receive
buffer (``K`` of them, each laid out as the single buffer of the plain reader), by a
thread that serves requests "read region k from offset X" with ``pread``, in order.  The
loop works on one region while the reader fills the others with what follows in the file.

Requests and answers are 8-byte tokens (the region's index) written to two pipes; a region
is marked done in its control entry after its bytes (a fence between), and the loop waits
for that mark, reading answer tokens (blocking) while it is not there.  Several reading
threads may serve the requests (they finish in any order).  ``pread`` reads a duplicate of the descriptor, so a file
the user closes (or whose number is reused) is never read by this thread.

Everything here is plain numba (compiled once); the ``disk`` backend's ``fetch`` calls
:func:`take`, :func:`drain`, :func:`prime` and :func:`give_back`; :func:`serve` is the
reading thread's body (``asbru/capture/disk.py`` starts it).
"""
from __future__ import annotations

from numba import njit

from asbru.capture.group.shared import fence
from asbru.capture.layout import NIO
from asbru.sockets import syscalls as sc
from asbru.sockets.pread import pread_e

# io[] slots past layout.NIO: the disk backend's own (the Python side: asbru/capture/disk.py)
IO_ROW0 = NIO + 0       # first row of the region that holds the current batch (meta[0])
IO_NROW = NIO + 1       # rows per region
IO_RA = NIO + 2         # regions read ahead (K >= 2), 0: plain read() in the loop's thread
IO_RA_REQ = NIO + 3     # write end of the request pipe
IO_RA_DONE = NIO + 4    # read end of the answer pipe
IO_RA_CUR = NIO + 5     # region of the current batch
IO_RA_INFLIGHT = NIO + 6  # regions asked for and not yet taken
IO_RA_OFF = NIO + 7     # file offset the next request reads from
IO_POS = NIO + 8        # file offset just past the current batch's bytes (the read position)
IO_RA_LEN = NIO + 9    # bytes a request reads (whole records)
IO_RA_TOKEN = NIO + 10  # scratch: one token
IO_RA_TOKEN_ADDR = NIO + 11  # address of io[IO_RA_TOKEN]
IO_RA_TAKEN = NIO + 12  # regions taken from the reading threads (capture.py prints these two)
IO_RA_WAITED = NIO + 13  # ... of them not read yet when the loop wanted them (reading is
                         # the slower of the two)
IO_RA_UNREAD = NIO + 14  # answer tokens not yet read from the pipe
NIO_DISK = NIO + 16

# control entries per region
CTL_OFF = 0     # file offset asked for
CTL_LEN = 1     # bytes asked for
CTL_GOT = 2     # bytes read (fewer: the end of the file)
CTL_ERR = 3     # errno of a failed read (0: none)
CTL_DONE = 4    # 1: read (set by the reading thread after the bytes and the entries above)
NCTL = 5

STOP = -1       # request token that ends the reading thread


@njit(nogil=True, cache=True)
def serve(ctl, fd, req_fd, done_fd, addr0, stride, tok):
    """A reading thread: for each request token k, read ``ctl[k]``'s stretch of the file
    into region k (``addr0 + k * stride``), mark it done and answer with k.  Returns on STOP
    or when the request pipe is closed.  Several threads may serve one pipe (a token is
    read whole by one of them): regions then come back in any order."""
    ta = tok.ctypes.data
    while True:
        r = sc.read_e(req_fd, ta, 8)
        if r == -sc.EINTR:
            continue
        if r != 8:
            return
        k = tok[0]
        if k < 0:
            return
        e = k * NCTL
        off = ctl[e + CTL_OFF]
        n = ctl[e + CTL_LEN]
        got = 0
        err = 0
        while got < n:
            x = pread_e(fd, addr0 + k * stride + got, n - got, off + got)
            if x < 0:
                if -x == sc.EINTR:
                    continue
                err = -x
                break
            if x == 0:
                break
            got += x
        ctl[e + CTL_GOT] = got
        ctl[e + CTL_ERR] = err
        fence()                     # the region and its entry before the flag
        ctl[e + CTL_DONE] = 1
        while True:
            w = sc.write_e(done_fd, ta, 8)
            if w != -sc.EINTR:
                break


@njit(nogil=True, cache=True)
def _ask(io, ctl, k):
    # request region k: the next io[IO_RA_LEN] bytes from io[IO_RA_OFF]
    e = k * NCTL
    ctl[e + CTL_OFF] = io[IO_RA_OFF]
    ctl[e + CTL_LEN] = io[IO_RA_LEN]
    ctl[e + CTL_GOT] = 0
    ctl[e + CTL_ERR] = 0
    ctl[e + CTL_DONE] = 0
    io[IO_RA_OFF] += io[IO_RA_LEN]
    io[IO_RA_TOKEN] = k
    while True:
        w = sc.write_e(io[IO_RA_REQ], io[IO_RA_TOKEN_ADDR], 8)
        if w != -sc.EINTR:
            break
    io[IO_RA_INFLIGHT] += 1
    io[IO_RA_UNREAD] += 1


@njit(nogil=True, cache=True)
def _answer(io):
    # read one answer token (blocks until some region is done); False if the pipe failed
    while True:
        r = sc.read_e(io[IO_RA_DONE], io[IO_RA_TOKEN_ADDR], 8)
        if r != -sc.EINTR:
            break
    if r != 8:
        return False
    io[IO_RA_UNREAD] -= 1
    return True


@njit(nogil=True, cache=True)
def drain(io):
    """Wait for every request still out and forget what it read (it belongs to a position
    the reader has left); the next request reads from the read position."""
    while io[IO_RA_UNREAD] > 0:
        if not _answer(io):
            _broken(io)
            break
    io[IO_RA_INFLIGHT] = 0
    io[IO_RA_OFF] = io[IO_POS]


@njit(nogil=True, cache=True)
def _broken(io):
    # the pipes failed (cannot happen unless someone closes them): read in the loop's
    # thread from now on
    io[IO_RA] = 0
    io[IO_RA_UNREAD] = 0


@njit(nogil=True, cache=True)
def prime(io, ctl):
    """Ask for every region but the current one, in file order from io[IO_RA_OFF]."""
    k = io[IO_RA_CUR]
    for j in range(1, io[IO_RA]):
        _ask(io, ctl, (k + j) % io[IO_RA])


@njit(nogil=True, cache=True)
def take(io, ctl):
    """Wait for the region after the current one; returns it, or -1 if what came back is
    not the stretch at the read position (the caller then reads in its own thread)."""
    k = (io[IO_RA_CUR] + 1) % io[IO_RA]
    e = k * NCTL
    io[IO_RA_TAKEN] += 1
    fence()
    if ctl[e + CTL_DONE] == 0:
        io[IO_RA_WAITED] += 1
    while True:
        fence()
        if ctl[e + CTL_DONE] != 0:
            break
        if io[IO_RA_UNREAD] == 0 or not _answer(io):
            _broken(io)
            return -1
    fence()
    io[IO_RA_INFLIGHT] -= 1
    if ctl[e + CTL_OFF] != io[IO_POS]:
        drain(io)
        return -1
    return k


@njit(nogil=True, cache=True)
def give_back(io, ctl, k):
    """Region k (the batch before) is done with: ask for the next stretch into it."""
    _ask(io, ctl, k)


def compile_serve() -> None:
    """Compile (or load) :func:`serve` now: one call that finds STOP waiting."""
    import os

    import numpy as np
    req_r, req_w = os.pipe()
    try:
        os.write(req_w, STOP.to_bytes(8, "little", signed=True))
        serve(np.zeros(NCTL, dtype=np.int64), -1, req_r, -1, 0, 0, np.zeros(1, dtype=np.int64))
    finally:
        os.close(req_r)
        os.close(req_w)
