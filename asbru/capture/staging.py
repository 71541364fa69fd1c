"""Drain a bound UDP socket while the capture loop compiles, so that nothing is lost.

A ``UDPCapture`` is made for a socket the caller has already bound: datagrams queue from
that moment.  Compiling the loop takes seconds on a cold kernel cache (loading it from the
cache ~0.2 s); an unprivileged socket buffer (a few MiB) holds well under a second of a
fast stream, and the kernel drops the rest.  So while the loop compiles, a thread reads the
socket into staging rows; the compiled ``_fetch`` of the UDP backend then hands the staged
packets out first, in arrival order, before it receives anything newer (see ``IO_STAGE_*``
in :mod:`asbru.capture.layout`).

The staging rows are one ``numpy.empty`` allocation of ``max_bytes``: only the pages
written to are backed by memory.  When it is full the thread stops reading and the socket
buffer takes over (the kernel counts what it drops, as ever).
"""
from __future__ import annotations

import errno
import os
import select
import threading
import time
from typing import Optional

import numpy as np

#: default staging capacity (bytes of rows): 20 000 packets/s of 8 KiB for ~6 s
STAGE_BYTES = 1 << 30
_POLLRDHUP = 0x2000


_BATCH = 256      # datagrams per recvmmsg: one Python call per batch, the GIL released in it
_MSG_DONTWAIT = 0x40
_MSG_TRUNC = 0x20


def _libc_recvmmsg():
    import ctypes
    import ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fn = libc.recvmmsg
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    return fn


class Stager:
    """Reads datagrams of up to ``row`` bytes from ``fd`` in a thread until :meth:`stop`.

    The thread calls libc's ``recvmmsg`` through ctypes (the loop is not compiled yet:
    compiling is why we stage), up to 256 datagrams per call straight into the staging rows,
    with the GIL released during the call: draining 20 000 datagrams/s costs the compiling
    thread almost nothing."""

    def __init__(self, fd: int, row: int, max_bytes: int = STAGE_BYTES) -> None:
        from asbru.sockets.msgvec import (IOVEC_SIZE, MMSGHDR_SIZE, OFF_MSG_FLAGS, OFF_MSG_IOV,
                                          OFF_MSG_IOVLEN, OFF_MSG_LEN)
        self.fd = fd
        self.row = row
        nrow = max(1, max_bytes // row)
        while True:    # address space may be limited (ulimit -v): settle for less
            try:
                self.buf = np.empty((nrow, row), dtype=np.uint8)
                break
            except MemoryError:
                if nrow <= 64:
                    raise
                nrow //= 2
        # lengths in the receive-buffer convention: -1 - n marks a datagram longer than a row
        self.lens = np.empty(nrow, dtype=np.int64)
        self.n = 0
        self.error: Optional[OSError] = None
        self._recvmmsg = _libc_recvmmsg()
        self._iov = np.zeros((_BATCH, 2), dtype=np.uint64)
        self._iov[:, 1] = row
        self._hdrs = np.zeros((_BATCH, MMSGHDR_SIZE), dtype=np.uint8)
        words = self._hdrs.view(np.uint64)
        words[:, OFF_MSG_IOV // 8] = (self._iov.ctypes.data
                                      + np.arange(_BATCH, dtype=np.uint64) * np.uint64(IOVEC_SIZE))
        words[:, OFF_MSG_IOVLEN // 8] = 1
        self._msg_len = np.ndarray((_BATCH,), dtype=np.uint32, buffer=self._hdrs,
                                   offset=OFF_MSG_LEN, strides=(MMSGHDR_SIZE,))
        self._msg_flags = np.ndarray((_BATCH,), dtype=np.int32, buffer=self._hdrs,
                                     offset=OFF_MSG_FLAGS, strides=(MMSGHDR_SIZE,))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="asbru-stage", daemon=True)
        self._thread.start()

    def _receive(self) -> int:
        """One recvmmsg into the next rows; the number received (0: none queued)."""
        import ctypes
        i = self.n
        k = min(_BATCH, self.buf.shape[0] - i)
        self._iov[:k, 0] = self.buf.ctypes.data + (i + np.arange(k, dtype=np.uint64)) * np.uint64(self.row)
        r = self._recvmmsg(self.fd, self._hdrs.ctypes.data, k, _MSG_DONTWAIT, None)
        if r < 0:
            e = ctypes.get_errno()
            if e in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            raise OSError(e, os.strerror(e))
        if r > 0:
            ln = self._msg_len[:r].astype(np.int64)
            trunc = (self._msg_flags[:r] & _MSG_TRUNC) != 0
            self.lens[i:i + r] = np.where(trunc | (ln > self.row), -1 - np.minimum(ln, self.row), ln)
            self.n = i + r
        return r

    def _drain(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN | _POLLRDHUP)
        nrow = self.buf.shape[0]
        try:
            while not self._stop.is_set() and self.n < nrow:
                events = poller.poll(20)             # ms: how soon stop() is noticed
                if not events:
                    continue
                if events[0][1] & (_POLLRDHUP | select.POLLERR | select.POLLNVAL):
                    return              # shut down or failed: the compiled loop will see it
                got = self._receive()
                if got and got < _BATCH:
                    time.sleep(0.002)                 # let a few arrive: fewer, fuller calls
        except OSError as exc:        # closed under us, or a socket error: stop staging
            self.error = exc

    def stop(self) -> int:
        """Stop reading; the number of datagrams staged."""
        self._stop.set()
        self._thread.join()
        return self.n
