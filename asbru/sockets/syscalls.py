"""libc system calls that numba-compiled code can call directly, and ``errno``.

Why not ctypes function objects: numba can call them, but it embeds their address in the
machine code as a "dynamic global", which makes every function that calls one uncachable
(each process recompiles).  Here each call is declared as a :class:`numba.types.
ExternalFunction` -- a call *by symbol name* -- and the symbol's address is registered
with LLVM (``llvmlite.binding.add_symbol``) when this module is imported.  Compiled code
therefore caches on disk and is relinked against the current process's libc on load.
Any module whose compiled functions call these must import this module (normally as
``from asbru.sockets import syscalls as sc`` and calling ``sc.recvmmsg``), which is also
what numba needs: dispatchers and external functions must be module globals to cache.

Pointers are passed as 64-bit integers (``arr.ctypes.data``): on x86-64 and aarch64 a
pointer and an ``int64`` travel in the same register, so the declarations below use
``int64`` for every ``void *``/``struct *`` argument.  0 is NULL.

``errno``: ``errno()`` (compiled) reads the calling thread's errno through glibc's
``__errno_location()``.  Call it immediately after the failing call, before anything else
that might touch errno.  The wrappers ending in ``_e`` do that for you and return
``-errno`` on failure, the kernel convention.

All calls are plain C calls; inside ``nogil=True`` code they block without holding the GIL.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno as _errno_mod
import os
import socket as _socket

import llvmlite.binding as _ll
from numba import njit, types

__all__ = [
    "recvmmsg", "sendmmsg", "read", "write", "writev", "poll", "lseek", "close",
    "errno", "set_errno", "recvmmsg_e", "sendmmsg_e", "read_e", "write_e", "writev_e", "poll_e",
    "lseek_e",
    "MSG_DONTWAIT", "MSG_WAITFORONE", "MSG_TRUNC", "MSG_CTRUNC", "MSG_PEEK",
    "EAGAIN", "EWOULDBLOCK", "EINTR", "EBADF", "EINVAL", "ENOBUFS", "ECONNREFUSED",
    "EMSGSIZE", "ENOTSOCK", "EFAULT", "ENOMEM",
    "POLLIN", "POLLOUT", "POLLERR", "POLLHUP", "POLLNVAL", "POLLFD_SIZE",
    "SEEK_SET", "SEEK_CUR", "SEEK_END",
    "SOL_SOCKET", "SO_RXQ_OVFL",
]

# --------------------------------------------------------------------------------------
# Constants (Linux values; taken from the Python build where it knows them).
MSG_DONTWAIT: int = getattr(_socket, "MSG_DONTWAIT", 0x40)
MSG_WAITFORONE: int = 0x10000          # recvmmsg: block for the first datagram only
MSG_TRUNC: int = getattr(_socket, "MSG_TRUNC", 0x20)
MSG_CTRUNC: int = getattr(_socket, "MSG_CTRUNC", 0x08)
MSG_PEEK: int = getattr(_socket, "MSG_PEEK", 0x02)

EAGAIN: int = _errno_mod.EAGAIN
EWOULDBLOCK: int = _errno_mod.EWOULDBLOCK
EINTR: int = _errno_mod.EINTR
EBADF: int = _errno_mod.EBADF
EINVAL: int = _errno_mod.EINVAL
ENOBUFS: int = _errno_mod.ENOBUFS
ECONNREFUSED: int = _errno_mod.ECONNREFUSED
EMSGSIZE: int = _errno_mod.EMSGSIZE
ENOTSOCK: int = _errno_mod.ENOTSOCK
EFAULT: int = _errno_mod.EFAULT
ENOMEM: int = _errno_mod.ENOMEM

# struct pollfd { int fd; short events; short revents; }  -> 8 bytes.  Use an int32 numpy
# array of shape (nfds, 2): row i = [fd, events | revents << 16] (little-endian hosts), and
# pass arr.shape[0] (not arr.size) as nfds.
POLLIN = 0x001
POLLOUT = 0x004
POLLERR = 0x008
POLLHUP = 0x010
POLLNVAL = 0x020
POLLFD_SIZE = 8

SEEK_SET: int = os.SEEK_SET
SEEK_CUR: int = os.SEEK_CUR
SEEK_END: int = os.SEEK_END

from .options import SO_RXQ_OVFL, SOL_SOCKET  # noqa: E402,F401  (one table: options.py)

# --------------------------------------------------------------------------------------
# Symbol registration.
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

_SYMBOLS = ("recvmmsg", "sendmmsg", "read", "write", "writev", "poll", "lseek", "close",
            "__errno_location")
for _name in _SYMBOLS:
    # Registering the exact libc address makes resolution independent of how LLVM
    # searches the process (and of a libc symbol being shadowed by another library).
    _ll.add_symbol(_name, ctypes.cast(getattr(_libc, _name), ctypes.c_void_p).value)

_i32 = types.int32
_i64 = types.int64
_u32 = types.uint32

#: ``int recvmmsg(int fd, struct mmsghdr *msgvec, unsigned vlen, int flags, struct timespec *timeout)``
#: Prefer ``SO_RCVTIMEO`` over ``timeout`` (the kernel checks ``timeout`` only after a
#: datagram arrives).  Pass 0 for no timeout.  Results: n >= 1 messages; -1 with EAGAIN
#: (SO_RCVTIMEO expired or MSG_DONTWAIT and nothing queued) or EINTR.  After
#: ``shutdown(SHUT_RD)`` (``UDPSocket.shutdown``) it returns 1 with ``msg_len == 0``: a
#: zero-length message means "no more data", like recvmsg returning 0.
recvmmsg = types.ExternalFunction("recvmmsg", _i32(_i32, _i64, _u32, _i32, _i64))
#: ``int sendmmsg(int fd, struct mmsghdr *msgvec, unsigned vlen, int flags)``
sendmmsg = types.ExternalFunction("sendmmsg", _i32(_i32, _i64, _u32, _i32))
#: ``ssize_t read(int fd, void *buf, size_t n)``
read = types.ExternalFunction("read", _i64(_i32, _i64, _i64))
#: ``ssize_t write(int fd, const void *buf, size_t n)``
write = types.ExternalFunction("write", _i64(_i32, _i64, _i64))
#: ``ssize_t writev(int fd, const struct iovec *iov, int iovcnt)``
writev = types.ExternalFunction("writev", _i64(_i32, _i64, _i32))
#: ``int poll(struct pollfd *fds, nfds_t nfds, int timeout_ms)``
poll = types.ExternalFunction("poll", _i32(_i64, types.uint64, _i32))
#: ``off_t lseek(int fd, off_t offset, int whence)``
lseek = types.ExternalFunction("lseek", _i64(_i32, _i64, _i32))
#: ``int close(int fd)`` (for tests and tools; sockets are normally closed from Python)
close = types.ExternalFunction("close", _i32(_i32))

_errno_location = types.ExternalFunction("__errno_location", types.CPointer(_i32)())


@njit(nogil=True, cache=True)
def errno() -> int:
    """The calling thread's errno (read it right after the failing call)."""
    return _errno_location()[0]


@njit(nogil=True, cache=True)
def set_errno(value: int) -> None:
    """Set the calling thread's errno (tests; clearing before a call whose result is ambiguous)."""
    _errno_location()[0] = value


# Wrappers returning the result, or -errno on failure (read it before anything else can).
@njit(nogil=True, cache=True)
def recvmmsg_e(fd: int, msgvec_addr: int, vlen: int, flags: int, timeout_addr: int) -> int:
    r = recvmmsg(fd, msgvec_addr, vlen, flags, timeout_addr)
    if r < 0:
        return -_errno_location()[0]
    return r


@njit(nogil=True, cache=True)
def sendmmsg_e(fd: int, msgvec_addr: int, vlen: int, flags: int) -> int:
    r = sendmmsg(fd, msgvec_addr, vlen, flags)
    if r < 0:
        return -_errno_location()[0]
    return r


@njit(nogil=True, cache=True)
def read_e(fd: int, addr: int, n: int) -> int:
    r = read(fd, addr, n)
    if r < 0:
        return -_errno_location()[0]
    return r


@njit(nogil=True, cache=True)
def write_e(fd: int, addr: int, n: int) -> int:
    r = write(fd, addr, n)
    if r < 0:
        return -_errno_location()[0]
    return r


@njit(nogil=True, cache=True)
def writev_e(fd: int, iov_addr: int, iovcnt: int) -> int:
    r = writev(fd, iov_addr, iovcnt)
    if r < 0:
        return -_errno_location()[0]
    return r


@njit(nogil=True, cache=True)
def poll_e(fds_addr: int, nfds: int, timeout_ms: int) -> int:
    r = poll(fds_addr, nfds, timeout_ms)
    if r < 0:
        return -_errno_location()[0]
    return r


@njit(nogil=True, cache=True)
def lseek_e(fd: int, offset: int, whence: int) -> int:
    r = lseek(fd, offset, whence)
    if r < 0:
        return -_errno_location()[0]
    return r
