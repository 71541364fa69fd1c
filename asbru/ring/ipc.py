"""Process-shared waiting and liveness, for rings shared between processes.

* :func:`futex_wait` / :func:`futex_wake`: sleep on a 32-bit word in shared memory until
  another process changes it and wakes the waiters (Linux futex, the non-private kind, which
  works across processes mapping the same file), with a timeout as a safety net.
* :func:`process_alive`: whether the process that registered itself as ``(pid, start)`` still
  runs; ``start`` is its start time in clock ticks since boot (``/proc/PID/stat`` field 22),
  so a recycled pid is not mistaken for the original process, and a zombie counts as dead.
"""
from __future__ import annotations

import ctypes
import os
import platform
import time
from typing import Optional

_SYS_FUTEX = {"x86_64": 202, "aarch64": 98, "ppc64le": 221, "riscv64": 98}.get(platform.machine())
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def futex_wait(addr: int, expected: int, timeout: float) -> None:
    """Sleep while the uint32 at ``addr`` equals ``expected``, at most ``timeout`` seconds."""
    if _SYS_FUTEX is None:            # no futex number known: poll
        time.sleep(min(timeout, 0.0005))
        return
    ts = _Timespec(int(timeout), int((timeout % 1) * 1e9))
    _syscall(ctypes.c_long(_SYS_FUTEX), ctypes.c_void_p(addr), ctypes.c_int(_FUTEX_WAIT),
             ctypes.c_uint32(expected & 0xFFFFFFFF), ctypes.byref(ts), None, ctypes.c_int(0))


def futex_wake(addr: int) -> None:
    """Wake every process/thread sleeping on the word at ``addr``."""
    if _SYS_FUTEX is not None:
        _syscall(ctypes.c_long(_SYS_FUTEX), ctypes.c_void_p(addr), ctypes.c_int(_FUTEX_WAKE),
                 ctypes.c_int(0x7FFFFFFF), None, None, ctypes.c_int(0))


def start_time(pid: int) -> Optional[int]:
    """Start time of ``pid`` (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(b")") + 2:].split()
    if not fields or fields[0] in (b"Z", b"X", b"x"):
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


_ME: Optional[tuple[int, int]] = None


def me() -> tuple[int, int]:
    """(pid, start time) of this process (recomputed after a fork)."""
    global _ME
    pid = os.getpid()
    if _ME is None or _ME[0] != pid:
        _ME = (pid, start_time(pid) or 0)
    return _ME


def process_alive(pid: int, start: int) -> bool:
    if pid <= 0:
        return False
    st = start_time(pid)
    return st is not None and st == start
