"""``pread`` for compiled code: read at a file offset without moving the file position, so
that several threads can read one file at once (``DiskReader(..., threads=N)``).

The same pattern as :mod:`asbru.sockets.syscalls` (the libc symbol registered with LLVM, a
ctypes form under ``NUMBA_DISABLE_JIT=1``), kept apart so that adding it leaves the
kernels compiled against that module valid.
"""
from __future__ import annotations

import ctypes
import ctypes.util

import llvmlite.binding as _ll
from numba import njit, types
from numba.core import config as _nbconfig

from .syscalls import _errno_location

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_ll.add_symbol("pread", ctypes.cast(_libc.pread, ctypes.c_void_p).value)

#: ``ssize_t pread(int fd, void *buf, size_t n, off_t offset)``
pread = types.ExternalFunction("pread", types.int64(types.int32, types.int64, types.int64,
                                                    types.int64))

if _nbconfig.DISABLE_JIT:
    _fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).pread
    _fn.restype = ctypes.c_ssize_t
    _fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64]

    def pread(fd, addr, n, offset):  # noqa: F811  (the Python form)
        return _fn(int(fd), int(addr), int(n), int(offset))


@njit(nogil=True, cache=True)
def pread_e(fd: int, addr: int, n: int, offset: int) -> int:
    """``pread``: bytes read (0 at the end of the file), or -errno."""
    r = pread(fd, addr, n, offset)
    if r < 0:
        return -_errno_location()[0]
    return r
