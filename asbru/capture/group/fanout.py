"""Spreading the packets of one address over several packet sockets: a PACKET_FANOUT group.

A packet socket (AF_PACKET) normally gets a copy of every packet its filter accepts: two
sniffing sockets for one port would each see every datagram.  Sockets that join one
*fanout group* (``setsockopt(SOL_PACKET, PACKET_FANOUT, id | mode << 16)``; same protocol
and interface, same mode) share instead: the kernel gives each packet to exactly one
member, chosen by the group's mode, and that member's own filter then accepts or drops it
(a packet given to a member that drops it reaches no other).  The modes: ``HASH`` (the
packet's flow hash: addresses and ports, so one sender always meets one member), ``LB``
(round robin), ``CPU`` (the CPU that receives the packet), ``RND``, ``ROLLOVER`` (the next
member when one is full), ``QM`` (the NIC queue) and ``CBPF``/``EBPF`` (a program returns
the member's index; the kernel takes it modulo the number of members).

The sniffer's receive threads must see one sender on one socket -- its packets stay in
order, and a duplicate meets its original in one thread -- and should spread consecutive
senders evenly.  ``LB``, ``RND`` and ``CPU`` break the first (a sender's packets land on
any member; with ``CPU`` that depends on RSS), ``HASH`` keeps it but spreads a handful of
senders unevenly.  So the group uses ``CBPF`` with the program the UDP capture steers its
SO_REUSEPORT group with (asbru/capture/group/steer.py: member ``(source address ^ source
port) % N``; it reads the headers from the network header on, which is where a packet
socket's fanout program starts too), and falls back to ``HASH`` where the kernel refuses it.

Joining has no gap and no double: the group's first member is the socket already sniffing
(it takes every packet while alone); each further socket joins while its own filter still
drops everything and the group's program gives every packet to member 0, and only when all
have joined and taken their port filter does the program become the by-source one.  (With
``HASH`` there is no such program: a socket joins once its filter is in, and a datagram
arriving in the microseconds between the two is seen twice -- counted once valid, once a
duplicate, by the capture's mask merge.)  Group
ids are per network namespace; ``PACKET_FANOUT_FLAG_UNIQUEID`` lets the kernel pick an
unused one (read back with ``getsockopt``).
"""
from __future__ import annotations

import os
import socket
import struct
from typing import Any

import numpy as np

from asbru.errors import AsbruError
from asbru.sockets import bpf

from . import steer

SOL_PACKET = 263
PACKET_FANOUT = 18
PACKET_FANOUT_DATA = 22
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_CBPF = 6
PACKET_FANOUT_FLAG_UNIQUEID = 0x2000


def _setsockopt(fd: int, opt: int, value: Any) -> None:
    with socket.socket(fileno=os.dup(fd)) as s:
        s.setsockopt(SOL_PACKET, opt, value)


def _group_id(fd: int) -> int:
    with socket.socket(fileno=os.dup(fd)) as s:
        return s.getsockopt(SOL_PACKET, PACKET_FANOUT) & 0xFFFF


def _set_program(fd: int, prog: np.ndarray) -> None:
    prog = np.ascontiguousarray(prog, dtype=bpf.SOCK_FILTER)
    _setsockopt(fd, PACKET_FANOUT_DATA, struct.pack("HxxxxxxQ", len(prog), prog.ctypes.data))


class FanoutGroup:
    """A fanout group formed around ``fd0`` (a packet socket already sniffing): call
    :meth:`add` for each further socket (its filter still dropping everything), then
    :meth:`steer` once every member has its port filter."""

    def __init__(self, fd0: int) -> None:
        self.mode = "PACKET_FANOUT by source (classic BPF)"
        self._cbpf = True
        try:
            _setsockopt(fd0, PACKET_FANOUT, (PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_UNIQUEID) << 16)
            _set_program(fd0, bpf.drop_all())     # returns 0: every packet to member 0
        except OSError:
            self._cbpf = False
            self.mode = "PACKET_FANOUT_HASH (the kernel's flow hash)"
            try:
                _setsockopt(fd0, PACKET_FANOUT, (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID) << 16)
            except OSError as exc:
                raise AsbruError(f"threads: cannot form a PACKET_FANOUT group: {exc.strerror}") from None
        #: join a socket before its port filter is in (no gap, see above), else after
        self.join_before_filter = self._cbpf
        self.id = _group_id(fd0)
        self._fd0 = fd0
        self.members = 1

    def add(self, fd: int) -> None:
        mode = PACKET_FANOUT_CBPF if self._cbpf else PACKET_FANOUT_HASH
        try:
            _setsockopt(fd, PACKET_FANOUT, self.id | (mode << 16))
        except OSError as exc:
            raise AsbruError(f"threads: cannot join PACKET_FANOUT group {self.id}: {exc.strerror}") from None
        self.members += 1

    def steer(self) -> None:
        """Every member is in: spread the packets by source."""
        if self._cbpf:
            _set_program(self._fd0, steer.by_source(self.members))
