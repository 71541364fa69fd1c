"""The staging drain: a compiled loop that reads a bound UDP socket into staging rows with
the GIL released, for as long as a capture loop compiles.

Why compiled: while numba compiles a capture loop, the compiling thread runs Python
(type inference, lowering) almost all the time.  A Python thread that drains the socket
must take the GIL back after every system call, and each time it waits up to a switch
interval (5 ms) behind the compiler; on a loaded machine that throttled a ctypes drain far
below a 20 000 packets/s stream, and the socket buffer overflowed.  :func:`drain` takes
the GIL once, on entry, and never again until it returns: ``poll`` and ``recvmmsg`` are
plain C calls (:mod:`asbru.sockets.syscalls`), the bookkeeping is compiled.

It is one small function with its own numba cache entry, compiled once per machine (about
a second; :func:`load` says how long) and loaded from the cache after that (milliseconds),
before the capture loop's compile starts (see :mod:`asbru.capture.staging`).

The owner and the loop share ``ctl`` (int64, ``NCTL`` slots, ``CTL_*`` below): the owner
sets ``ctl[CTL_STOP] = 1`` to stop it, and writes a byte to a pipe the loop polls beside
the socket so that it sees the stop at once (else within ``CTL_POLL_MS``); the loop counts
what it staged there.  Rows hold
one datagram each, ``lens[i]`` its length in the receive-buffer convention of the capture
loop: ``n`` for a datagram of ``n`` bytes, ``-1 - n`` for one longer than a row (its real
size: ``MSG_TRUNC`` makes ``recvmmsg`` report it), which the loop counts invalid.
"""
from __future__ import annotations

import time

import numba
import numpy as np

from asbru.sockets import syscalls as sc
from asbru.sockets.msgvec import (IOVEC_SIZE, MMSGHDR_SIZE, OFF_MSG_FLAGS, OFF_MSG_IOV,
                                  OFF_MSG_IOVLEN, OFF_MSG_LEN)

# ctl slots
CTL_STOP = 0        # the owner sets 1: the loop returns within one poll timeout
CTL_POLL_MS = 1     # poll timeout (ms) while nothing arrives: how soon a stop is seen
CTL_N = 2           # rows filled: datagrams staged, in arrival order
CTL_BYTES = 3       # bytes those datagrams had (an oversize one counted at its real size)
CTL_NOVERSIZE = 4   # of CTL_N: longer than a row (staged cut to the row, marked invalid)
CTL_END = 5         # why the loop returned (END_*); END_RUNNING while it runs
CTL_ERRNO = 6       # the errno that ended it (END_ERROR)
CTL_NCALLS = 7      # recvmmsg calls that returned datagrams (how batched the drain was)
NCTL = 8

END_RUNNING = 0
END_STOPPED = 1     # the owner asked
END_FULL = 2        # every row is used: later datagrams wait in the socket buffer
END_SHUT = 3        # shut down, hung up or closed under us: the capture loop will see it
END_ERROR = 4       # recvmmsg/poll failed (CTL_ERRNO)

#: datagrams per recvmmsg call (the kernel takes at most 1024)
BATCH = 256
#: when a call returned less than a full batch, wait this long before the next (ms): a
#: slow stream then costs one call per few datagrams, not one per datagram
SETTLE_MS = 2
POLL_MS = 20
POLLRDHUP = 0x2000


@numba.njit(nogil=True, cache=True)
def take_batch(hdrs, lens, first, got, row, ctl):
    """Record the ``got`` datagrams just received into rows ``first..``: their lengths
    (receive-buffer convention), bytes and oversize count.  It calls no other compiled
    function, so its ``py_func`` serves the ctypes drain in staging.py as it is."""
    nbytes = 0
    nover = 0
    for j in range(got):
        h = hdrs[j]
        p = OFF_MSG_LEN             # msg_len: the real size (MSG_TRUNC asked), u32 LE
        ln = (np.int64(h[p]) | (np.int64(h[p + 1]) << 8) | (np.int64(h[p + 2]) << 16)
              | (np.int64(h[p + 3]) << 24))
        p = OFF_MSG_FLAGS
        fl = (np.int64(h[p]) | (np.int64(h[p + 1]) << 8) | (np.int64(h[p + 2]) << 16)
              | (np.int64(h[p + 3]) << 24))
        if (fl & sc.MSG_TRUNC) != 0 or ln > row:
            lens[first + j] = -1 - ln
            nover += 1
        else:
            lens[first + j] = ln
        nbytes += ln
    ctl[CTL_BYTES] += nbytes
    ctl[CTL_NOVERSIZE] += nover
    ctl[CTL_N] = first + got      # last: the rows up to here are complete
    ctl[CTL_NCALLS] += 1


@numba.njit(nogil=True, cache=True)
def point_iovs(iov, rows, first, k):
    """Aim the first ``k`` iovecs at rows ``first..first+k-1`` (their lengths stay a row)."""
    base = rows.ctypes.data
    row = rows.shape[1]
    for j in range(k):
        iov[j, 0] = np.uint64(base + (first + j) * row)


@numba.njit(nogil=True, cache=True)
def readable(fd, pfd, timeout_ms):
    """poll ``fd`` (``pfd[0]``) and, when ``pfd`` has a second entry, the owner's wake-up
    descriptor (its low 32 bits: written to by stop(), so that a stop is seen at once):
    1 ``fd`` readable, 0 not (timeout, or a wake-up: the caller checks its stop flag),
    2 ``fd`` shut down/hung up/closed, ``-errno`` on failure (EINTR: the caller retries).
    A pollfd is one int64: fd in the low 32 bits, events above, revents in the top 16."""
    pfd[0] = (fd & 0xFFFFFFFF) | ((sc.POLLIN | POLLRDHUP) << 32)
    for i in range(1, pfd.shape[0]):
        pfd[i] = (pfd[i] & 0xFFFFFFFF) | (sc.POLLIN << 32)
    r = sc.poll_e(pfd.ctypes.data, pfd.shape[0], timeout_ms)
    if r <= 0:
        return r
    revents = (pfd[0] >> 48) & 0xFFFF
    if (revents & (POLLRDHUP | sc.POLLHUP | sc.POLLERR | sc.POLLNVAL)) != 0:
        return 2
    if (revents & sc.POLLIN) != 0:
        return 1
    return 0


@numba.njit(nogil=True, cache=True)
def drain(fd, rows, lens, hdrs, iov, pfd, ctl):
    """Receive datagrams from ``fd`` into ``rows`` until ``ctl[CTL_STOP]`` is set or the
    rows are full; returns (and leaves in ``ctl[CTL_END]``) why it stopped.  ``pfd``: one
    int64 per pollfd, the second (optional) holding the owner's wake-up descriptor.

    ``hdrs`` are ``BATCH`` mmsghdrs whose ``msg_iov`` point at the ``iov`` rows (one iovec
    each, ``iov_len`` = a row); each call aims them at the next free rows.  The socket is
    read only when ``poll`` says it is readable, with ``MSG_DONTWAIT``: a blocking
    descriptor (asbru's UDPSocket) never holds the loop past a stop."""
    nrow = rows.shape[0]
    row = rows.shape[1]
    batch = hdrs.shape[0]
    if batch > iov.shape[0]:
        batch = iov.shape[0]
    ctl[CTL_END] = END_RUNNING
    while True:
        if ctl[CTL_STOP] != 0:
            ctl[CTL_END] = END_STOPPED
            return END_STOPPED
        first = ctl[CTL_N]
        if first >= nrow:
            ctl[CTL_END] = END_FULL
            return END_FULL
        r = readable(fd, pfd, ctl[CTL_POLL_MS])
        if r == 0 or r == -sc.EINTR:
            continue
        if r == 2:
            ctl[CTL_END] = END_SHUT
            return END_SHUT
        if r < 0:
            ctl[CTL_ERRNO] = -r
            ctl[CTL_END] = END_ERROR
            return END_ERROR
        k = nrow - first
        if k > batch:
            k = batch
        point_iovs(iov, rows, first, k)
        got = sc.recvmmsg_e(fd, hdrs.ctypes.data, k, sc.MSG_DONTWAIT | sc.MSG_TRUNC, 0)
        if got < 0:
            if got == -sc.EAGAIN or got == -sc.EWOULDBLOCK or got == -sc.EINTR:
                continue
            if got == -sc.EBADF or got == -sc.ENOTSOCK:
                ctl[CTL_END] = END_SHUT
                return END_SHUT
            ctl[CTL_ERRNO] = -got
            ctl[CTL_END] = END_ERROR
            return END_ERROR
        take_batch(hdrs, lens, first, got, row, ctl)
        if got < k and ctl[CTL_STOP] == 0:
            sc.poll_e(0, 0, SETTLE_MS)     # a sleep: let a few more arrive
    return END_STOPPED


def batch_arrays(row: int, batch: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """``(hdrs, iov)`` for :func:`drain`: ``batch`` mmsghdrs, each pointing at its own
    iovec of ``row`` bytes.  Keep both alive while the loop runs."""
    iov = np.zeros((batch, IOVEC_SIZE // 8), dtype=np.uint64)
    iov[:, 1] = row
    hdrs = np.zeros((batch, MMSGHDR_SIZE), dtype=np.uint8)
    words = hdrs.view(np.uint64)
    words[:, OFF_MSG_IOV // 8] = (np.uint64(iov.ctypes.data)
                                  + np.arange(batch, dtype=np.uint64) * np.uint64(IOVEC_SIZE))
    words[:, OFF_MSG_IOVLEN // 8] = 1
    return hdrs, iov


def new_ctl(poll_ms: int = POLL_MS) -> np.ndarray:
    ctl = np.zeros(NCTL, dtype=np.int64)
    ctl[CTL_POLL_MS] = poll_ms
    return ctl


def is_loaded() -> bool:
    """True when this process can call :func:`drain` without compiling anything."""
    return bool(getattr(drain, "overloads", True))


def load() -> float:
    """Compile :func:`drain` (first use on this machine) or load it from numba's cache, for
    exactly the argument types :class:`~asbru.capture.staging.Stager` passes, so that the
    drain thread never compiles (a compile there would wait for the capture loop's, behind
    numba's compiler lock).  Returns the seconds it took."""
    t0 = time.perf_counter()
    if not is_loaded():
        hdrs, iov = batch_arrays(8, 1)
        ctl = new_ctl()
        ctl[CTL_STOP] = 1             # returns at once, before touching the descriptor
        drain(-1, np.zeros((1, 8), dtype=np.uint8), np.zeros(1, dtype=np.int64), hdrs, iov,
              np.zeros(1, dtype=np.int64), ctl)
    return time.perf_counter() - t0
