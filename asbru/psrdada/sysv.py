"""System V shared memory and semaphores through libc (what PSRDADA's rings are made of)."""
from __future__ import annotations

import ctypes
import errno as _errno
import os
from typing import Optional

IPC_CREAT = 0o1000
IPC_EXCL = 0o2000
IPC_NOWAIT = 0o4000
IPC_RMID = 0
SEM_UNDO = 0x1000
GETVAL = 12
SETVAL = 16

_libc = ctypes.CDLL(None, use_errno=True)
_libc.shmat.restype = ctypes.c_void_p
_libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
_libc.shmdt.argtypes = [ctypes.c_void_p]
_libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
_libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
_libc.semget.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]


class _Sembuf(ctypes.Structure):
    _fields_ = [("sem_num", ctypes.c_ushort), ("sem_op", ctypes.c_short), ("sem_flg", ctypes.c_short)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc.semtimedop.argtypes = [ctypes.c_int, ctypes.POINTER(_Sembuf), ctypes.c_size_t, ctypes.POINTER(_Timespec)]


class SysVError(OSError):
    pass


def _fail(what: str) -> SysVError:
    e = ctypes.get_errno()
    return SysVError(e, f"{what}: {os.strerror(e)}")


def shmget(key: int, size: int, flags: int) -> int:
    shmid = _libc.shmget(ctypes.c_int(_key(key)), size, flags)
    if shmid < 0:
        raise _fail(f"shmget(key=0x{key & 0xFFFFFFFF:x})")
    return shmid


def shm_exists(key: int) -> bool:
    return _libc.shmget(ctypes.c_int(_key(key)), 0, 0) >= 0


def sem_exists(key: int) -> bool:
    return _libc.semget(ctypes.c_int(_key(key)), 0, 0) >= 0


def shmat(shmid: int) -> int:
    addr = _libc.shmat(shmid, None, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        raise _fail(f"shmat(shmid={shmid})")
    return int(addr)


def shmdt(addr: int) -> None:
    _libc.shmdt(ctypes.c_void_p(addr))


def shm_remove(shmid: int) -> None:
    if _libc.shmctl(shmid, IPC_RMID, None) < 0 and ctypes.get_errno() not in (_errno.EINVAL, _errno.EIDRM):
        raise _fail(f"shmctl(shmid={shmid}, IPC_RMID)")


def semget(key: int, nsems: int, flags: int) -> int:
    semid = _libc.semget(ctypes.c_int(_key(key)), nsems, flags)
    if semid < 0:
        raise _fail(f"semget(key=0x{key & 0xFFFFFFFF:x})")
    return semid


def semop(semid: int, num: int, op: int, flags: int = 0, timeout: Optional[float] = None) -> bool:
    """One semaphore operation; False if it would block (IPC_NOWAIT) or timed out."""
    buf = _Sembuf(num, op, flags)
    ts = None
    if timeout is not None:
        ts = ctypes.byref(_Timespec(int(timeout), int((timeout % 1) * 1e9)))
    while True:
        if _libc.semtimedop(semid, ctypes.byref(buf), 1, ts) == 0:
            return True
        e = ctypes.get_errno()
        if e == _errno.EINTR:
            continue
        if e == _errno.EAGAIN:
            return False
        raise _fail(f"semop(semid={semid}, num={num}, op={op})")


def semval(semid: int, num: int) -> int:
    v = _libc.semctl(semid, num, GETVAL)
    if v < 0:
        raise _fail(f"semctl(semid={semid}, GETVAL)")
    return int(v)


def sem_remove(semid: int) -> None:
    if _libc.semctl(semid, 0, IPC_RMID) < 0 and ctypes.get_errno() not in (_errno.EINVAL, _errno.EIDRM):
        raise _fail(f"semctl(semid={semid}, IPC_RMID)")


def _key(key: int) -> int:
    """A key_t (signed 32-bit) from any integer in 0..2**32-1."""
    key &= 0xFFFFFFFF
    return key - (1 << 32) if key >= 1 << 31 else key
