"""Packet files for tools: load one (fixed-size records or a pcap), send one over UDP.

A *packet file* is what DiskWriter writes and DiskReader reads: packets back to back, no
framing, every record the format's record size.  ``asbru capture --out`` writes the same
layout.  A classic pcap file (tcpdump) is accepted wherever a packet file is: its UDP
payloads are the packets (see :mod:`asbru.pcap`).

Both loaders return a :class:`PacketSet`: one uint8 buffer (the file, memory-mapped) plus
int64 ``offsets``/``lengths`` per packet, the shape the compiled batch decoders and the
sendmmsg kernel below work on without a Python loop per packet.
"""
from __future__ import annotations

import dataclasses
import errno as _errno
import os
import socket
import time
from typing import Callable

import numba
import numpy as np

from . import pcap as _pcap
from .errors import ArgumentError
from .sockets import syscalls as sc
from .sockets.msgvec import SendVec

__all__ = ["PacketSet", "load_packets", "open_for_reading", "send_packets", "SendResult",
           "send_batch"]


@dataclasses.dataclass
class PacketSet:
    """Packets ``buf[offsets[k]: offsets[k] + lengths[k]]``."""
    buf: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    kind: str                 # "records" or "pcap"
    record_size: int | None   # records: the size used to split the file
    short_tail: int = 0       # records: bytes of an incomplete last record (kept as a packet)
    skipped: int = 0          # pcap: records that were not UDP datagrams
    truncated: bool = False   # pcap: the file ends inside a record

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    def packet(self, k: int) -> bytes:
        o, n = int(self.offsets[k]), int(self.lengths[k])
        return bytes(self.buf[o: o + n])


def open_for_reading(path: str | os.PathLike, what: str = "FILE") -> int:
    """Size of ``path`` after checking it is a readable regular file (one-line errors)."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise ArgumentError(f"{what} {p!r}: no such file")
    if os.path.isdir(p):
        raise ArgumentError(f"{what} {p!r}: is a directory, expected a packet file or pcap")
    try:
        with open(p, "rb"):
            pass
    except PermissionError:
        raise ArgumentError(f"{what} {p!r}: permission denied (not readable)") from None
    except OSError as exc:
        raise ArgumentError(f"{what} {p!r}: cannot be read ({exc.strerror})") from None
    return os.path.getsize(p)


def load_packets(path: str | os.PathLike, record_size: int | None, port: int | None = None,
                 what: str = "FILE") -> PacketSet:
    """Load a pcap (detected by its magic) or a file of ``record_size``-byte records."""
    size = open_for_reading(path, what)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if _pcap.is_pcapng(head) or (len(head) == 4 and _pcap.is_pcap(path)):
        p = _pcap.read_payloads(path, port=port)
        return PacketSet(buf=p.buf, offsets=p.offsets, lengths=p.lengths, kind="pcap",
                         record_size=None, skipped=p.skipped, truncated=p.truncated)
    if record_size is None or record_size <= 0:
        raise ArgumentError(f"{what} {os.fspath(path)!r}: this format has no fixed record size, "
                            "so only a pcap file can be read for it")
    buf = np.memmap(path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    n = -(-size // record_size)
    offsets = np.arange(n, dtype=np.int64) * record_size
    lengths = np.minimum(record_size, size - offsets).astype(np.int64)
    tail = size % record_size
    return PacketSet(buf=buf, offsets=offsets, lengths=lengths, kind="records",
                     record_size=record_size, short_tail=int(tail))


# -------------------------------------------------------------------------------------
# Sending

@numba.njit(cache=True, nogil=True)
def send_batch(fd, iov, vaddr, base_addr, offsets, lengths, i0, count):
    """sendmmsg packets ``i0 .. i0+count`` of a PacketSet (no payload copy).

    Returns the number sent (>= 0) or ``-errno``.  ``iov`` is ``SendVec.iov``; the header
    iovec of every message is left empty and the payload iovec points into the buffer.
    """
    n = count
    if n > iov.shape[0]:
        n = iov.shape[0]
    if i0 < 0 or i0 + n > offsets.shape[0] or i0 + n > lengths.shape[0]:
        return -sc.EINVAL
    for k in range(n):
        row = iov[k]
        row[0] = 0
        row[1] = 0
        row[2] = base_addr + offsets[i0 + k]
        row[3] = lengths[i0 + k]
    r = sc.sendmmsg(fd, vaddr, n, 0)
    if r < 0:
        return -sc.errno()
    return r


@dataclasses.dataclass
class SendResult:
    sent: int = 0            # packets handed to the kernel
    failed: int = 0          # packets skipped after an error (e.g. nobody listening)
    bytes: int = 0
    seconds: float = 0.0
    last_error: str = ""
    refused: int = 0         # ICMP port-unreachable reports: nobody listens at the destination


def send_packets(sock: socket.socket, packets: PacketSet, rate: float = 0.0, loops: int = 1,
                 batch: int = 64, progress: Callable[[int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> SendResult:
    """Send every packet ``loops`` times on a connected UDP socket with sendmmsg batches.

    ``rate`` (packets/s, 0 = as fast as possible) paces bursts against a clock started at
    the first packet: before a burst starting at packet k the sender waits until
    ``k / rate`` seconds have passed, so the average rate holds and bursts are short
    (``rate / 1000`` packets, at least 1, at most ``batch``).  ECONNREFUSED (the kernel
    reporting an ICMP port-unreachable for an *earlier* datagram: nobody listens there) is
    counted in ``refused`` and the batch is sent again -- the report consumed the error, so
    the outcome no longer depends on how the sends were spaced (unpaced, all datagrams
    leave before the first report comes back; paced, every other send used to fail).
    Another error counts the batch as failed and moves on, as Bifrost's writer does;
    ENOBUFS/EAGAIN are retried.
    """
    n = len(packets)
    res = SendResult()
    if n == 0 or loops <= 0:
        return res
    burst = batch
    if rate and rate > 0:
        burst = int(max(1, min(batch, rate / 1000.0)))
    sv = SendVec(burst)
    buf = packets.buf
    if buf.size == 0:
        return res
    base = int(buf.ctypes.data)
    offsets = np.ascontiguousarray(packets.offsets, dtype=np.int64)
    lengths = np.ascontiguousarray(packets.lengths, dtype=np.int64)
    fd = sock.fileno()
    t0 = time.perf_counter()
    total = 0  # packets attempted so far (for pacing)
    refusals = 0  # in a row, on the same batch
    for _ in range(loops):
        i = 0
        while i < n:
            if should_stop is not None and should_stop():
                res.seconds = time.perf_counter() - t0
                return res
            count = min(burst, n - i)
            if rate and rate > 0:
                due = t0 + total / rate
                wait = due - time.perf_counter()
                if wait > 0.0005:
                    time.sleep(wait)
            r = send_batch(fd, sv.iov, sv.addr, base, offsets, lengths, i, count)
            if r == 0 or r == -_errno.ENOBUFS or r == -_errno.EAGAIN or r == -_errno.EINTR:
                time.sleep(0.0005)
                continue
            if r == -_errno.ECONNREFUSED and refusals < 3:
                refusals += 1
                res.refused += 1
                res.last_error = os.strerror(-r)
                continue
            refusals = 0
            if r < 0:
                res.failed += count
                res.last_error = os.strerror(-r)
                r = count
                sent_now = 0
            else:
                sent_now = r
                res.bytes += int(lengths[i: i + r].sum())
            res.sent += sent_now
            i += r
            total += r
            if progress is not None:
                progress(r)
    res.seconds = time.perf_counter() - t0
    # a report for the last datagrams may still be on its way (loopback: microseconds)
    time.sleep(0.02)
    try:
        pending = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except OSError:
        pending = 0
    if pending == _errno.ECONNREFUSED:
        res.refused += 1
        res.last_error = os.strerror(pending)
    return res
