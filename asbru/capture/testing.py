"""Helpers for tests, benchmarks and demos of the capture engine (not a hot path).

* :class:`RingCollector` -- a reader thread that copies every sequence of a ring (time
  tag, header, bytes, flags) with a bounded join;
* :func:`run_capture` -- call ``recv()`` until a terminal status, returning the statuses;
* :func:`free_udp_port` -- a free loopback port.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Any

import numpy as np

TERMINAL = (1, 4, 5, 6)  # ENDED, NO_DATA, INTERRUPTED, ERROR


class CollectedSequence:
    def __init__(self, time_tag: int, header: bytes) -> None:
        self.time_tag = time_tag
        self.header = header
        self.chunks: list[np.ndarray] = []
        self.flag_chunks: list[np.ndarray] = []
        self.overwritten = 0

    @property
    def data(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.uint8)

    @property
    def flags(self) -> np.ndarray | None:
        if not self.flag_chunks:
            return None
        return np.concatenate(self.flag_chunks)


class RingCollector:
    """Read every sequence of ``ring`` in a thread (guaranteed reads) until writing ends."""

    def __init__(self, ring: Any, span_size: int) -> None:
        self.ring = ring
        self.span_size = span_size
        self.sequences: list[CollectedSequence] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        before = int(getattr(ring, "guaranteed_readers", 0))
        self._thread.start()
        # return only once the reader holds the writer back (it waits in ring.read(), which
        # pins where the first sequence will begin): a capture started before that could
        # lap a small ring before the reader got there
        deadline = time.monotonic() + 10.0
        while (hasattr(ring, "guaranteed_readers") and ring.guaranteed_readers <= before
               and self._thread.is_alive() and time.monotonic() < deadline):
            time.sleep(0.0005)

    def _run(self) -> None:
        try:
            for rseq in self.ring.read(guarantee=True):
                cs = CollectedSequence(int(rseq.time_tag), bytes(rseq.header))
                self.sequences.append(cs)
                size = min(self.span_size, int(self.ring.contiguous_span))
                for span in rseq.read(size):
                    cs.chunks.append(np.array(span.data_view(np.uint8)[0]))
                    f = span.flags
                    if f is not None:
                        cs.flag_chunks.append(np.array(f))
                    cs.overwritten += span.size_overwritten
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def join(self, timeout: float = 30.0) -> list[CollectedSequence]:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("ring reader thread did not finish (writing never ended?)")
        if self.error is not None:
            raise self.error
        return self.sequences


def run_capture(capture: Any, max_calls: int = 100000) -> list[int]:
    """``recv()`` until ENDED/NO_DATA/INTERRUPTED/ERROR (or ``max_calls``); the statuses."""
    out = []
    for _ in range(max_calls):
        s = int(capture.recv())
        out.append(s)
        if s in TERMINAL:
            break
    return out


def free_udp_port(host: str = "127.0.0.1") -> int:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def udp_queued_bytes(port: int) -> int:
    """Bytes waiting in the receive queue of the UDP socket (IPv4 or IPv6) bound to
    ``port`` on this machine, from the rx_queue column of /proc/net/udp{,6}; -1 if none is
    bound there (or /proc is not Linux's)."""
    found = -1
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port:
                found = max(found, 0) + int(f[4].split(":")[1], 16)
    return found


def wait_udp_read(port: int, timeout: float = 30.0) -> bool:
    """Wait until the process bound to UDP ``port`` has read every datagram queued for it
    (what a capture has read, ``end()`` places; what is still queued, it does not): the
    sync point for stopping a capture after sending, where a fixed sleep is too short on
    a loaded machine.  False if the queue did not empty within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if udp_queued_bytes(port) == 0:
            return True
        time.sleep(0.002)
    return False
