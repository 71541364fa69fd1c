"""numpy-backed ``struct mmsghdr`` / ``struct iovec`` arrays for recvmmsg and sendmmsg.

The C layouts are taken from ctypes (``sizeof``/``offsetof`` of structures declared with
the C types of ``<sys/socket.h>``), so they follow the platform ABI (x86-64, aarch64)
instead of hard-coded numbers.  All memory is owned by numpy arrays held by the object:
keep the object alive while the kernel or compiled code uses its addresses.

Receive (:class:`RecvVec`) — one buffer per message::

    rv = RecvVec(64, 9000)
    # compiled, per batch:
    #   rv.controllens[:] = rv.control_size     (only when control is used)
    #   n = syscalls.recvmmsg(fd, rv.addr, 64, flags, 0)
    #   message i: rv.buffers[i, :rv.lengths[i]]  (rv.lengths = msg_len fields)
    #   kernel drop counter: rxq_ovfl(rv.control, rv.controllens, i)

    Fields the kernel *writes* on each call: ``msg_len`` (bytes received),
    ``msg_controllen`` (control bytes used), ``msg_flags`` (MSG_TRUNC, MSG_CTRUNC).
    ``msg_controllen`` must be reset to the control buffer size before every call that
    wants control data, or the kernel sees the previous (smaller, possibly 0) length and
    drops the cmsg (setting MSG_CTRUNC).  ``msg_name`` is NULL (namelen 0); ``msg_iov``
    and ``iov_len`` are read-only for the kernel and need no reset.

Send (:class:`SendVec`) — two iovecs per message (header, payload), pointing into caller
arrays (no copy).  Compiled code sets, per packet i, ``sv.iov[i] = [hdr_addr, hdr_len,
payload_addr, payload_len]`` (uint64 view; or :func:`set_iov`) and calls
``syscalls.sendmmsg(fd, sv.addr + i0 * MMSGHDR_SIZE, count, 0)``.  ``sv.lengths`` then
holds the bytes sent for each message.  The socket must be connected (msg_name NULL).
"""
from __future__ import annotations

import ctypes

import numpy as np
from numba import njit

from asbru.errors import ArgumentError
from asbru.sockets.options import SO_RXQ_OVFL as _SO_RXQ_OVFL
from asbru.sockets.options import SOL_SOCKET as _SOL_SOCKET

__all__ = [
    "RecvVec", "SendVec", "rxq_ovfl", "set_iov", "reset_controllens",
    "MMSGHDR_SIZE", "IOVEC_SIZE", "CMSGHDR_SIZE", "CMSG_ALIGN_TO",
    "OFF_MSG_NAME", "OFF_MSG_NAMELEN", "OFF_MSG_IOV", "OFF_MSG_IOVLEN", "OFF_MSG_CONTROL",
    "OFF_MSG_CONTROLLEN", "OFF_MSG_FLAGS", "OFF_MSG_LEN", "OFF_IOV_BASE", "OFF_IOV_LEN",
    "RXQ_OVFL_CONTROL_SIZE", "cmsg_align", "cmsg_space", "cmsg_len",
]


# --------------------------------------------------------------------------------------
# C layouts
class _iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),      # socklen_t
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _msghdr), ("msg_len", ctypes.c_uint)]


class _cmsghdr(ctypes.Structure):
    _fields_ = [("cmsg_len", ctypes.c_size_t), ("cmsg_level", ctypes.c_int),
                ("cmsg_type", ctypes.c_int)]


IOVEC_SIZE: int = ctypes.sizeof(_iovec)
OFF_IOV_BASE: int = _iovec.iov_base.offset
OFF_IOV_LEN: int = _iovec.iov_len.offset
MMSGHDR_SIZE: int = ctypes.sizeof(_mmsghdr)
OFF_MSG_NAME: int = _msghdr.msg_name.offset
OFF_MSG_NAMELEN: int = _msghdr.msg_namelen.offset
OFF_MSG_IOV: int = _msghdr.msg_iov.offset
OFF_MSG_IOVLEN: int = _msghdr.msg_iovlen.offset
OFF_MSG_CONTROL: int = _msghdr.msg_control.offset
OFF_MSG_CONTROLLEN: int = _msghdr.msg_controllen.offset
OFF_MSG_FLAGS: int = _msghdr.msg_flags.offset
OFF_MSG_LEN: int = _mmsghdr.msg_len.offset
CMSGHDR_SIZE: int = ctypes.sizeof(_cmsghdr)
CMSG_ALIGN_TO: int = ctypes.sizeof(ctypes.c_size_t)   # glibc aligns cmsgs to size_t
_OFF_CMSG_LEVEL: int = _cmsghdr.cmsg_level.offset
_OFF_CMSG_TYPE: int = _cmsghdr.cmsg_type.offset

_SIZE_T_DTYPE = np.dtype(np.uint64) if ctypes.sizeof(ctypes.c_size_t) == 8 else np.dtype(np.uint32)
assert ctypes.sizeof(ctypes.c_void_p) == 8, "asbru needs a 64-bit platform"
assert MMSGHDR_SIZE % 8 == 0 and IOVEC_SIZE == 16


def cmsg_align(n: int) -> int:
    return (n + CMSG_ALIGN_TO - 1) & ~(CMSG_ALIGN_TO - 1)


def cmsg_len(n: int) -> int:
    """``CMSG_LEN(n)``: header plus ``n`` data bytes."""
    return cmsg_align(CMSGHDR_SIZE) + n


def cmsg_space(n: int) -> int:
    """``CMSG_SPACE(n)``: room one cmsg with ``n`` data bytes takes in a control buffer."""
    return cmsg_align(CMSGHDR_SIZE) + cmsg_align(n)


#: control bytes per message: one SO_RXQ_OVFL cmsg (u32), doubled so that one more small
#: cmsg (e.g. a timestamp someone enables) does not truncate it.
RXQ_OVFL_CONTROL_SIZE: int = 2 * cmsg_space(16)

assert CMSGHDR_SIZE == 16 and cmsg_align(CMSGHDR_SIZE) == 16  # compiled helpers rely on it


def _strided(base: np.ndarray, dtype, offset: int, n: int, stride: int) -> np.ndarray:
    """A 1-D view of one field of each record of ``base`` (uint8, C-contiguous)."""
    return np.ndarray((n,), dtype=dtype, buffer=base, offset=offset, strides=(stride,))


def _check_count(name: str, value, limit: int = 1 << 20) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 < value <= limit:
        raise ArgumentError(f"{name} must be an int in 1..{limit}, got {value!r}")
    return int(value)


class RecvVec:
    """``n`` receive messages of up to ``bufsize`` bytes each (one iovec per message).

    Attributes (all numpy, alive as long as this object):
      ``buffers``      uint8 ``(n, bufsize)``: message i's bytes are ``buffers[i, :lengths[i]]``.
      ``hdrs``         uint8 ``(n, MMSGHDR_SIZE)``: the ``struct mmsghdr`` array.
      ``addr``         int: address of ``hdrs`` (pass to recvmmsg).
      ``lengths``      uint32 ``(n,)`` strided view of ``msg_len`` (written by the kernel).
      ``flags``        int32 ``(n,)`` strided view of ``msg_flags`` (MSG_TRUNC etc.).
      ``controllens``  size_t ``(n,)`` strided view of ``msg_controllen`` (reset per call).
      ``control``      uint8 ``(n, control_size)`` control buffers (``(n, 0)`` if no control).
      ``control_size`` int: bytes of control buffer per message (0 if ``control=False``).
      ``iovecs``       uint64 ``(n, 2)``: ``[iov_base, iov_len]`` per message.
    """

    def __init__(self, n: int, bufsize: int, control: bool = True) -> None:
        n = _check_count("n", n)
        bufsize = _check_count("bufsize", bufsize, 1 << 24)
        self.n = n
        self.bufsize = bufsize
        self.buffers = np.zeros((n, bufsize), dtype=np.uint8)
        self.iovecs = np.zeros((n, 2), dtype=np.uint64)
        self.iovecs[:, 0] = self.buffers.ctypes.data + np.arange(n, dtype=np.uint64) * np.uint64(bufsize)
        self.iovecs[:, 1] = bufsize
        self.control_size = RXQ_OVFL_CONTROL_SIZE if control else 0
        self.control = np.zeros((n, self.control_size), dtype=np.uint8)
        self.hdrs = np.zeros((n, MMSGHDR_SIZE), dtype=np.uint8)
        words = self.hdrs.view(np.uint64)                        # (n, MMSGHDR_SIZE // 8)
        words[:, OFF_MSG_IOV // 8] = self.iovecs.ctypes.data + np.arange(n, dtype=np.uint64) * np.uint64(IOVEC_SIZE)
        words[:, OFF_MSG_IOVLEN // 8] = 1
        if self.control_size:
            words[:, OFF_MSG_CONTROL // 8] = (self.control.ctypes.data
                                              + np.arange(n, dtype=np.uint64) * np.uint64(self.control_size))
        self.addr: int = int(self.hdrs.ctypes.data)
        self.lengths = _strided(self.hdrs, np.uint32, OFF_MSG_LEN, n, MMSGHDR_SIZE)
        self.flags = _strided(self.hdrs, np.int32, OFF_MSG_FLAGS, n, MMSGHDR_SIZE)
        self.controllens = _strided(self.hdrs, _SIZE_T_DTYPE, OFF_MSG_CONTROLLEN, n, MMSGHDR_SIZE)
        self.controllens[:] = self.control_size

    def __len__(self) -> int:
        return self.n


class SendVec:
    """``n`` send messages of two iovecs each: (header, payload).

    Attributes:
      ``iov``      uint64 ``(n, 4)``: ``[hdr_base, hdr_len, payload_base, payload_len]`` per
                   message -- the two ``struct iovec`` of message i, written by compiled code.
      ``iovecs``   the same memory as uint64 ``(2n, 2)`` (iovec-shaped).
      ``hdrs``     uint8 ``(n, MMSGHDR_SIZE)``: the ``struct mmsghdr`` array (msg_iovlen 2).
      ``addr``     int: address of ``hdrs``; message i is at ``addr + i * MMSGHDR_SIZE``.
      ``lengths``  uint32 ``(n,)`` view of ``msg_len`` (bytes sent, written by the kernel).

    A message with a zero-length header is fine (its first iovec is simply empty).
    """

    def __init__(self, n: int) -> None:
        n = _check_count("n", n)
        self.n = n
        self.iov = np.zeros((n, 4), dtype=np.uint64)
        self.iovecs = self.iov.reshape(2 * n, 2)
        self.hdrs = np.zeros((n, MMSGHDR_SIZE), dtype=np.uint8)
        words = self.hdrs.view(np.uint64)
        words[:, OFF_MSG_IOV // 8] = self.iov.ctypes.data + np.arange(n, dtype=np.uint64) * np.uint64(2 * IOVEC_SIZE)
        words[:, OFF_MSG_IOVLEN // 8] = 2
        self.addr: int = int(self.hdrs.ctypes.data)
        self.lengths = _strided(self.hdrs, np.uint32, OFF_MSG_LEN, n, MMSGHDR_SIZE)

    def __len__(self) -> int:
        return self.n


# --------------------------------------------------------------------------------------
# Compiled helpers
@njit(nogil=True, cache=True)
def set_iov(iov, i, hdr_addr, hdr_len, payload_addr, payload_len):
    """Point message ``i`` of a SendVec (``iov`` = ``SendVec.iov``) at a header and a payload."""
    row = iov[i]
    row[0] = hdr_addr
    row[1] = hdr_len
    row[2] = payload_addr
    row[3] = payload_len


@njit(nogil=True, cache=True)
def reset_controllens(controllens, control_size):
    """Before each recvmmsg: give every message its whole control buffer again."""
    for i in range(controllens.shape[0]):
        controllens[i] = control_size


@njit(nogil=True, cache=True)
def _rd_u64(b, p):
    v = np.uint64(0)
    for k in range(8):
        v |= np.uint64(b[p + k]) << np.uint64(8 * k)
    return v


@njit(nogil=True, cache=True)
def _rd_i32(b, p):
    v = np.uint32(0)
    for k in range(4):
        v |= np.uint32(b[p + k]) << np.uint32(8 * k)
    return np.int64(np.int32(v))


@njit(nogil=True, cache=True)
def rxq_ovfl(control, controllens, i):
    """Kernel drop counter (SO_RXQ_OVFL) carried by message ``i``, or -1 if it has none.

    The kernel attaches the cmsg only once the socket has dropped something, so -1 means
    "no drops reported".  The value is the socket's cumulative drop count (u32, wraps) at
    the time the datagram was queued.  Walks the cmsgs within ``msg_controllen`` with
    explicit bounds checks (little-endian hosts: x86-64, aarch64).
    """
    if i < 0 or i >= control.shape[0]:
        return -1
    buf = control[i]
    size = buf.shape[0]
    used = np.int64(controllens[i])
    if used > size:
        used = size
    p = 0
    while p + 16 <= used:           # a cmsghdr is 16 bytes on 64-bit Linux
        clen = np.int64(_rd_u64(buf, p))
        if clen < 16 or p + clen > used:
            return -1
        level = _rd_i32(buf, p + 8)
        ctype = _rd_i32(buf, p + 12)
        if level == _SOL_SOCKET and ctype == _SO_RXQ_OVFL and clen >= 16 + 4:
            return np.int64(_rd_i32(buf, p + 16)) & 0xFFFFFFFF
        p += (clen + 7) & ~7
    return -1
