"""``UDPTransmit``: packets as datagrams on a connected UDP socket, via sendmmsg."""
from __future__ import annotations

import os
import socket
import stat
from typing import Any

import numpy as np

from asbru.errors import ArgumentError, AsbruError
from asbru.sockets.msgvec import SendVec
from asbru.writers import kernels as K
from asbru.writers.base import PacketWriter

__all__ = ["UDPTransmit"]


def _check_connected_udp(fd: int) -> None:
    """One-line errors for a descriptor that cannot carry our datagrams."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise AsbruError(f"sock: descriptor {fd} is not open ({exc.strerror})") from None
    if not stat.S_ISSOCK(mode):
        raise ArgumentError(f"sock: expected a connected UDP socket, descriptor {fd} is not a socket")
    dup = socket.socket(fileno=os.dup(fd))  # inspect without taking over the caller's descriptor
    try:
        if dup.type != socket.SOCK_DGRAM:
            raise ArgumentError(f"sock: expected a UDP (datagram) socket, got {dup.type!r}")
        try:
            dup.getpeername()
        except OSError:
            raise ArgumentError("sock: the socket is not connected; call sock.connect(address) "
                                "before creating UDPTransmit") from None
    finally:
        dup.close()


class UDPTransmit(PacketWriter):
    """``UDPTransmit(fmt, sock, core=None)``: send packets of ``fmt`` on connected ``sock``.

    ``sock`` is an :class:`asbru.udp_socket.UDPSocket` (or any object with ``fileno()``
    whose descriptor is a connected UDP socket).  One datagram per packet, handed to the
    kernel with ``sendmmsg`` in batches of 1024 from compiled code (header and payload as
    two iovecs: the payload is never copied).
    """

    KIND = "udp_transmit"
    _TARGET_ARG = "sock"

    def __init__(self, fmt: str, sock: Any, core: int | None = None) -> None:
        super().__init__(fmt, sock, core)
        self._vec = SendVec(K.MMSG_BATCH)

    def _check_target(self, fd: int) -> None:
        _check_connected_udp(fd)

    def _transfer(self, fd: int, hdrs: np.ndarray, payload: np.ndarray, out: np.ndarray) -> None:
        st = self._limiter
        K.udp_send(fd, hdrs, payload, self._vec.hdrs, self._vec.iov, self._pfd,
                   st.state, st.ts, out)
