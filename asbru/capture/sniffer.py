"""``UDPSniffer``: the capture engine fed by an AF_PACKET TPACKET_V3 memory-mapped ring.

Same constructor, statuses, ring layout and statistics as :class:`UDPCapture` -- only the
receive backend differs.  Instead of ``recvmmsg`` (one kernel-to-user copy per datagram, in
the receiving thread), the kernel copies each matching datagram into a shared ring while it
delivers the packet (softirq, at send time on loopback), and the compiled loop decodes and
places payloads straight out of that ring: no system call and no copy per packet.

How it differs from Bifrost's sniffer (SEMANTICS §5.2, §14.14):

* a BPF filter passes only IPv4 UDP datagrams to the sniffed address and port (Bifrost
  takes every IPv4 packet of the interface);
* the UDP payload is found from the IPv4 header length (options allowed), not a fixed 28;
* fixed-size formats (tbn, drx, drx8) work: the payload is never truncated;
* a datagram larger than ``max_payload_size`` is counted invalid, never half-used;
* ``PACKET_IGNORE_OUTGOING``: on ``lo`` each datagram is seen once, not twice.

``sock`` is either a :class:`~asbru.udp_socket.UDPSocket` on which ``sniff(addr)`` was
called (Bifrost's usage), or a UDP socket bound to an IPv4 address: the sniffer then opens
its own packet socket for that address and port, and the bound socket only holds the port
(so the kernel does not answer each datagram with ICMP port-unreachable); a drop-all
filter is attached to it so that it does not queue a second copy of every datagram
(``end()`` detaches it).

Needs CAP_NET_RAW; without it construction raises :class:`~asbru.errors.PermissionNeeded`.
"""
from __future__ import annotations

import os
import socket
from typing import Any, Optional

import numpy as np

from asbru.errors import ArgumentError, PermissionNeeded
from asbru.sockets import bpf
from asbru.sockets import packet_ring as pr
from asbru.sockets.options import SO_DETACH_FILTER

from . import layout as L
from .backends import sniffer as _backend
from .loop import capture_module
from .udp import UDPCapture

__all__ = ["UDPSniffer", "have_cap_net_raw", "SNIFF_BLOCK_SIZE", "SNIFF_BLOCK_COUNT"]

#: default TPACKET_V3 ring: 32 blocks of 4 MiB (128 MiB, ~15 000 jumbo datagrams)
SNIFF_BLOCK_SIZE = 1 << 22
SNIFF_BLOCK_COUNT = 32
#: a block is handed to user space when full or after this many ms (latency bound)
SNIFF_RETIRE_MS = 8

_CAP_NET_RAW = 13
_NEEDS_RAW = ("UDPSniffer needs CAP_NET_RAW (run as root, or `setcap cap_net_raw+ep` on the "
              "python binary); use UDPCapture without it")

# io[] slots past layout.NIO: the sniffer backend's own (asbru/capture/backends/sniffer.py)
_IO_BSIZE, _IO_NBLOCK, _IO_BLOCK, _IO_HELD, _IO_MAXLEN = (
    _backend.IO_BSIZE, _backend.IO_NBLOCK, _backend.IO_BLOCK, _backend.IO_HELD, _backend.IO_MAXLEN)
_NIO_SNIFF = _backend.NIO_SNIFF


def have_cap_net_raw() -> bool:
    """True if this process has CAP_NET_RAW in its effective set (Linux)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_NET_RAW & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def _check_block(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ArgumentError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


class UDPSniffer(UDPCapture):
    """``UDPSniffer(fmt, sock, ring, nsrc, src0, max_payload_size, buffer_ntime, slot_ntime,
    sequence_callback, core=None)``: :class:`UDPCapture` on a TPACKET_V3 ring.

    ``sock``: a ``UDPSocket`` after ``sniff(addr)``, or one bound to an IPv4 address (see
    the module docstring).  Extra keywords: ``sniff_block_size`` (bytes, a multiple of the
    page size; default 4 MiB) and ``sniff_block_count`` (default 32) size the kernel ring;
    ``sniff_retire_ms`` (default 8) is how long the kernel fills a block before handing it
    over anyway (latency; a slow stream leaves blocks part-filled, so the ring then holds
    fewer packets);
    the receive timeout is ``sock.timeout`` (0: wait forever), read at every ``recv()``.
    """

    _backend = "sniffer"
    _kind = "udp_sniffer"
    _what = "sock"

    def __init__(self, fmt: str, sock: Any, *args: Any, sniff_block_size: int = SNIFF_BLOCK_SIZE,
                 sniff_block_count: int = SNIFF_BLOCK_COUNT,
                 sniff_retire_ms: int = SNIFF_RETIRE_MS, **kwargs: Any) -> None:
        self._pring: Optional[pr.PacketRing] = None
        self._poll_from: Any = None              # the socket timeout IO_POLL_MS was set from
        self._filtered: Optional[Any] = None     # a bound socket we attached drop-all to
        bsize = _check_block("sniff_block_size", sniff_block_size)
        bcount = _check_block("sniff_block_count", sniff_block_count)
        retire = _check_block("sniff_retire_ms", sniff_retire_ms)
        # the loop is compiled before the packet ring opens: the kernel starts copying
        # datagrams into the ring from that moment, and a cold compile takes seconds
        if have_cap_net_raw():
            self._compile_before_ring(fmt)
        # the packet ring first: a permission or socket error must not leave the data ring
        # with writing begun (a ring accepts only one writer, ever)
        self._pring = self._open_packet_ring(sock, bsize, bcount, retire)
        try:
            super().__init__(fmt, sock, *args, **kwargs)
        except BaseException:
            self._close_packet_ring()
            raise

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _compile_before_ring(fmt: Any) -> None:
        from asbru import formats
        from asbru.formats.spec import FormatError

        from . import precompile
        try:
            f = formats.get(fmt, "capture")
        except (FormatError, TypeError, ValueError):
            return                     # UDPCapture.__init__ reports it, in its own words
        kmod = capture_module(f, "sniffer")
        with precompile.announce(kmod, f.name, "sniffer"):
            precompile.compile_capture(f, "sniffer")

    def _open_packet_ring(self, sock: Any, bsize: int, bcount: int, retire: int) -> pr.PacketRing:
        if not hasattr(sock, "fileno"):
            raise ArgumentError(f"sock must be an asbru UDPSocket (after sniff(addr), or bound to an "
                                f"IPv4 address); got {type(sock).__name__}")
        if getattr(sock, "sniff_address", None) is not None:
            if not have_cap_net_raw():
                raise PermissionNeeded(_NEEDS_RAW)
            return pr.PacketRing(sock, block_size=bsize, block_count=bcount, retire_ms=retire)
        addr = self._bound_address(sock)
        if not have_cap_net_raw():
            raise PermissionNeeded(_NEEDS_RAW)
        from asbru.address import Address
        ring = pr.PacketRing.open(Address(addr[0], addr[1]), block_size=bsize,
                                  block_count=bcount, retire_ms=retire)
        # the bound socket only holds the port: it must not queue a second copy of each
        # datagram (detached again by end())
        with socket.socket(fileno=os.dup(sock.fileno())) as dup:
            bpf.attach(dup, bpf.drop_all())
        self._filtered = sock
        return ring

    @staticmethod
    def _bound_address(sock: Any) -> tuple[str, int]:
        try:
            fd = int(sock.fileno())
        except (OSError, ValueError):
            fd = -1
        if fd < 0:
            raise ArgumentError("sock is not open: call sock.sniff(addr) (or bind it to an IPv4 "
                                "address) before creating UDPSniffer")
        with socket.socket(fileno=os.dup(fd)) as dup:
            if dup.family != socket.AF_INET or dup.type != socket.SOCK_DGRAM:
                raise ArgumentError("sock must be sniffing (sock.sniff(addr)) or a UDP socket bound "
                                    "to an IPv4 address (the sniffer decodes IPv4/UDP)")
            host, port = dup.getsockname()[:2]
        if port == 0:
            raise ArgumentError("sock is not bound: call sock.sniff(addr) or sock.bind(addr) first")
        return host, int(port)

    def _setup_backend(self) -> None:
        ring = self._pring
        assert ring is not None
        nmax = pr.max_frames_per_block(ring.block_size)
        # packets stay in the kernel ring: rbuf only sizes the hold buffer (one packet each);
        # the backend's own arrays: meta = payload offsets in the ring, aux = the ring
        self._rbuf = np.zeros((1, self._bufsize), dtype=np.uint8)
        self._rlen = np.zeros(nmax, dtype=np.int64)
        self._meta = np.zeros(nmax, dtype=np.int64)
        self._aux = ring.ring
        self._auxlens = np.zeros(1, dtype=np.uint64)
        io = np.zeros(_NIO_SNIFF, dtype=np.int64)
        io[L.IO_FD] = ring.fd
        io[L.IO_POLL_MS] = self._poll_ms()
        io[L.IO_POLLFD_ADDR] = io.ctypes.data + 8 * L.IO_POLLFD
        io[_IO_BSIZE] = ring.block_size
        io[_IO_NBLOCK] = ring.block_count
        io[_IO_BLOCK] = ring.next_block
        io[_IO_HELD] = 0
        io[_IO_MAXLEN] = self._bufsize
        self._io = io

    def _poll_ms(self) -> int:
        # what was set, where the socket says so: reading the timeout back from the kernel
        # is a getsockopt per recv() (~7 us per gulp on the 16-core host)
        t = getattr(self._sock, "requested_timeout", None)
        if t is None:
            t = getattr(self._sock, "timeout", 0.0)
        try:
            t = float(t or 0.0)
        except (TypeError, ValueError):
            t = 0.0
        return -1 if t <= 0 else max(1, int(round(t * 1000)))

    # ------------------------------------------------------------------ engine hooks
    def _check_open(self) -> None:
        super()._check_open()
        if self._pring is None or self._pring.ring is None:
            raise ArgumentError("UDPSniffer.recv: the packet ring was closed")
        # the poll timeout again only when the socket's timeout was set since: UDPSocket
        # keeps the value last set (the same object until set again)
        t = getattr(self._sock, "requested_timeout", None)
        if t is None or t is not self._poll_from:
            self._poll_from = t
            self._io[L.IO_POLL_MS] = self._poll_ms()

    def _update_kernel_drops(self) -> None:
        # the packet ring's own counter (PACKET_STATISTICS), not the UDP socket's: that one
        # counts every datagram its drop-all filter discards
        ring = self._pring
        if ring is not None and ring.ring is not None:
            try:
                _packets, drops = ring.stats()   # reset on read: accumulate
                self.stats_obj.cnt[L.C_NKDROPS] += drops
            except OSError:
                pass

    def end(self) -> None:
        """``UDPCapture.end()``, then unmap the kernel ring (and close a socket we opened)."""
        try:
            super().end()
        finally:
            self._close_packet_ring()

    def _close_packet_ring(self) -> None:
        sock, self._filtered = self._filtered, None
        if sock is not None:
            try:
                with socket.socket(fileno=os.dup(sock.fileno())) as dup:
                    dup.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
            except OSError:
                pass              # closed meanwhile: nothing to undo
        ring, self._pring = self._pring, None
        if ring is None:
            return
        self._aux = np.zeros(0, dtype=np.uint8)   # drop our view of the mmap
        ring.close()
