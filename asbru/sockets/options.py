"""Linux socket option numbers that Python's ``socket`` module may not define.

One table for every module that sets them (``socket`` names them on some builds only; the
numbers are Linux's, from ``asm-generic/socket.h``, the same on x86-64 and arm64).
"""
from __future__ import annotations

import socket

__all__ = ["SOL_SOCKET", "SO_SNDBUFFORCE", "SO_RCVBUFFORCE", "SO_ATTACH_FILTER",
           "SO_DETACH_FILTER", "SO_RXQ_OVFL", "SO_MEMINFO"]

SOL_SOCKET = 1
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)   # SO_SNDBUF past wmem_max (CAP_NET_ADMIN)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)   # SO_RCVBUF past rmem_max (CAP_NET_ADMIN)
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)  # classic BPF program
SO_DETACH_FILTER = getattr(socket, "SO_DETACH_FILTER", 27)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)         # drop counter as a control message
SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)           # sk_meminfo u32 array (drops at 8)
