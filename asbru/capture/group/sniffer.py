"""``UDPSniffer(..., threads=N)``: N packet sockets of one PACKET_FANOUT group, each with
its own TPACKET_V3 ring drained by its own follower thread, all placing into one ring
(docs/multicore.md).

The first packet socket is the single-thread sniffer's (the ``sock`` after ``sniff(addr)``,
or the one the sniffer opens for a bound socket); the capture opens N-1 more on the same
interface for the same address and joins them into one fanout group (:mod:`.fanout`).
The leader's side is :class:`~asbru.capture.group.capture.GroupCapture`'s; the followers run
:mod:`.follower_sniff`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from asbru.capture import layout as L
from asbru.capture.sniffer import UDPSniffer
from asbru.errors import ArgumentError
from asbru.sockets import packet_ring as pr

from . import follower_sniff
from .capture import GroupCapture
from .fanout import FanoutGroup


class GroupUDPSniffer(GroupCapture, UDPSniffer):
    """A UDPSniffer received by ``threads=N`` threads (``cores=[...]`` pins them)."""

    def __init__(self, fmt: str, sock: Any, *args: Any, threads: Any = None, cores: Any = None,
                 socks: Any = None, **kwargs: Any) -> None:
        if socks is not None:
            raise ArgumentError("socks: UDPSniffer spreads one address over threads=N packet "
                                "sockets (a PACKET_FANOUT group); give threads=N")
        self._nthreads = 1
        self._rings: list[pr.PacketRing] = []
        self._group_init(threads, cores)
        super().__init__(fmt, sock, *args, **kwargs)
        self._group_start()

    def _compile_before_ring(self, fmt: Any) -> None:
        # as the single-thread sniffer does: the kernel copies datagrams into the rings from
        # the moment they open, and a cold compile takes seconds -- compile the leader's
        # loop and the follower first
        from asbru import formats
        from asbru.capture import precompile
        from asbru.capture.loop import capture_module
        from asbru.formats.spec import FormatError
        try:
            f = formats.get(fmt, "capture")
        except (FormatError, TypeError, ValueError):
            return                     # UDPCapture.__init__ reports it, in its own words
        kmod = capture_module(f, "group")
        with precompile.announce(kmod, f.name, "sniffer"):
            precompile.compile_capture(f, "group")
            self.compile_follower(follower_sniff.bind(), f, follower_sniff.NFIO_SNIFF,
                                  np.zeros(1, dtype=np.uint8), np.zeros((2, 1), dtype=np.int64))

    def _open_packet_ring(self, sock: Any, bsize: int, bcount: int, retire: int) -> pr.PacketRing:
        ring0 = super()._open_packet_ring(sock, bsize, bcount, retire)
        self._rings = [ring0]
        if self._nthreads == 1:
            self.steering = "one packet socket"
            return ring0
        from asbru.sockets.udp import UDPSocket
        try:
            group = FanoutGroup(ring0.fd)
            for _ in range(self._nthreads - 1):
                s = UDPSocket(buffer_size=1 << 20)
                s.sniff(ring0.address, interface=getattr(ring0.sock, "sniff_interface", None))
                try:
                    if group.join_before_filter:
                        group.add(s.fileno())
                    ring = pr.PacketRing(s, block_size=bsize, block_count=bcount,
                                         retire_ms=retire, _owns_socket=True)
                except BaseException:
                    s.close()
                    raise
                self._own.append(ring)
                self._rings.append(ring)
                if not group.join_before_filter:
                    group.add(ring.fd)
            group.steer()
        except BaseException:
            self._close_own()
            ring0.close()
            raise
        self.steering = group.mode
        return ring0

    def _open_sources(self) -> int:
        self._fds = [r.fd for r in self._rings]
        return len(self._rings)

    def _follower_kernel(self) -> Any:
        return follower_sniff.bind()

    def _follower_io(self, i: int) -> tuple[np.ndarray, Any, Any, Any]:
        ring = self._rings[i]
        fio = self._follower_base_io(ring.fd, follower_sniff.NFIO_SNIFF)
        fio[follower_sniff.FIO_BSIZE] = ring.block_size
        fio[follower_sniff.FIO_NBLOCK] = ring.block_count
        fio[follower_sniff.FIO_BLOCK] = ring.next_block
        fio[follower_sniff.FIO_MAXLEN] = self._bufsize
        offlen = np.zeros((2, pr.max_frames_per_block(ring.block_size)), dtype=np.int64)
        return fio, ring.ring, offlen, ring

    def _leader_poll_ms(self) -> int:
        return self._poll_ms()

    def _update_kernel_drops(self) -> None:
        for ring in self._rings:
            if ring.ring is not None:
                try:
                    _packets, drops = ring.stats()   # reset on read: accumulate
                    self.stats_obj.cnt[L.C_NKDROPS] += drops
                except OSError:
                    pass

