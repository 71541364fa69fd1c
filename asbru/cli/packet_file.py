"""The raw-packet writer at the end of ``asbru capture``: ring cells back to a packet file.

The capture runs on the whole-packet view of its format (:mod:`asbru.cli.whole_packets`), so
every time slot of its ring holds ``nsrc`` cells of one packet each, and each committed span
carries flags saying which cells received a packet.  :class:`PacketFileWriter` reads the
ring in a thread (a guaranteed reader: a slow disk holds the capture back rather than lose
data it has placed) and writes the received cells back to back, in (time slot, source)
order -- the packets exactly as they arrived, each once, which is a packet file
(docs/cli.md) that ``DiskReader``, ``asbru inspect`` and ``asbru replay`` read.  Empty cells
(missing packets) are not written.
"""
from __future__ import annotations

import threading
import time
from typing import Any, BinaryIO, Optional

import numpy as np

from ..errors import EndOfDataStop


class PacketFileWriter:
    """Write the received cells of ``ring`` to ``fh`` (None: count them only) until the
    ring's writing ends; at most ``limit`` packets when given (the rest are read, not
    written).  ``ntime`` is the capture's gulp length in time slots: spans are read a gulp
    at a time.

    ``packets``/``nbytes`` count what was written; a failed write (a full disk) ends the
    writing, keeps the message in ``error`` and sets ``stopped`` -- reading goes on so that
    the capture is never blocked by a reader that gave up."""

    def __init__(self, ring: Any, fh: Optional[BinaryIO], nsrc: int, ntime: int,
                 limit: Optional[int] = None, label: str = "--out") -> None:
        self.ring = ring
        self.fh = fh
        self.nsrc = nsrc
        self.ntime = ntime
        self.limit = limit
        self.label = label                  # error messages start with it ("--out FILE")
        self.packets = 0
        self.nbytes = 0
        self.error = ""
        self.stopped = threading.Event()      # set when the limit is reached or a write failed
        self._failure: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="asbru-packet-file", daemon=True)
        before = int(getattr(ring, "guaranteed_readers", 0))
        self._thread.start()
        # return once the reader holds the writer back (it waits in ring.read(), pinned where
        # the first sequence will begin): a capture started earlier could lap the ring first
        deadline = time.monotonic() + 10.0
        while (ring.guaranteed_readers <= before and self._thread.is_alive()
               and time.monotonic() < deadline):
            time.sleep(0.0005)

    # -- the reader thread
    def _run(self) -> None:
        try:
            for rseq in self.ring.read(guarantee=True):
                self._sequence(rseq)
        except BaseException as exc:  # surfaced by join()
            self._failure = exc

    def _sequence(self, rseq: Any) -> None:
        try:
            first = rseq.acquire(0, 1)         # waits for the first committed gulp
        except EndOfDataStop:
            return                             # an empty sequence
        cell_row = first.frame_nbyte           # nsrc whole packets: one flag row
        first.release()
        if not cell_row:
            return                             # not written by a capture: nothing to say
        for span in rseq.read(self.ntime * cell_row):
            flags = span.flags
            if flags is None or self.stopped.is_set():
                continue
            data = span.data_view(np.uint8)[0]
            nslot = data.size // cell_row
            cells = data[:nslot * cell_row].reshape(nslot, self.nsrc, cell_row // self.nsrc)
            self._write(cells[flags[:nslot].astype(bool)])

    def _write(self, packets: np.ndarray) -> None:
        if self.limit is not None:
            packets = packets[:max(0, self.limit - self.packets)]
        if packets.shape[0] == 0:
            return
        if self.fh is not None:
            try:
                self.fh.write(memoryview(np.ascontiguousarray(packets)).cast("B"))
            except OSError as exc:             # ENOSPC, EIO...: stop writing, keep what was written
                self._fail(exc)
                return
        self.packets += int(packets.shape[0])
        self.nbytes += int(packets.size)
        if self.limit is not None and self.packets >= self.limit:
            self.stopped.set()

    def _fail(self, exc: OSError) -> None:
        self.error = f"{self.label}: {exc.strerror or exc}"
        self.stopped.set()
        fh, self.fh = self.fh, None
        try:
            if fh is not None:
                fh.close()
        except OSError:
            pass

    # -- the caller's side
    def join(self, timeout: float = 60.0) -> None:
        """Wait until the ring's writing has ended and everything is written; close the
        file (a failure to flush its last bytes is an ``error`` too)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the packet file writer did not finish (the capture's writing never ended?)")
        if self.fh is not None:
            try:
                self.fh.close()
            except OSError as exc:
                self.error = self.error or f"{self.label}: {exc.strerror or exc}"
            self.fh = None
        if self._failure is not None:
            raise self._failure
