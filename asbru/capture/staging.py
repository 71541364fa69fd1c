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

import os
import select
import threading
from typing import Optional

import numpy as np

#: default staging capacity (bytes of rows): 20 000 packets/s of 8 KiB for ~6 s
STAGE_BYTES = 1 << 30
_POLLRDHUP = 0x2000


class Stager:
    """Reads datagrams of up to ``row`` bytes from ``fd`` in a thread until :meth:`stop`."""

    def __init__(self, fd: int, row: int, max_bytes: int = STAGE_BYTES) -> None:
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
        self._spare = bytearray(1)   # one byte past the row: tells a datagram too big
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="asbru-stage", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN | _POLLRDHUP)
        nrow = self.buf.shape[0]
        try:
            while not self._stop.is_set() and self.n < nrow:
                events = poller.poll(20)             # ms: how soon stop() is noticed
                if not events:
                    continue
                # read everything queued now (each readable poll precedes one read, so a
                # blocking descriptor never blocks here)
                while self.n < nrow:
                    ev = poller.poll(0)
                    if not ev:
                        break
                    mask = ev[0][1]
                    if mask & (select.POLLERR | select.POLLNVAL):
                        return
                    i = self.n
                    got = os.readv(self.fd, [memoryview(self.buf[i]), self._spare])
                    if got == 0 and mask & _POLLRDHUP:
                        return                        # shut down: the loop will see it
                    self.lens[i] = got if got <= self.row else -1 - self.row
                    self.n = i + 1
        except OSError as exc:        # closed under us, or a socket error: stop staging
            self.error = exc

    def stop(self) -> int:
        """Stop reading; the number of datagrams staged."""
        self._stop.set()
        self._thread.join()
        return self.n
