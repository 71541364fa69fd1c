"""A PSRDADA ring buffer ("ipcbuf") in SysV shared memory, spoken from Python.

The layout and the semaphore protocol are PSRDADA's (src/ipcbuf.h, ipcbuf.c, ipcio.c of the
public PSRDADA source), so that PSRDADA's own programs (dada_db, dada_dbdisk, dada_dbnull,
dspsr, heimdall) and asbru share one ring:

* a "sync" segment at the ring's key: the ``ipcsync_t`` struct (keys of the other pieces,
  buffer count and size, writer and reader positions, start/end-of-data markers of the last
  8 transfers), then one pending-reader count byte per buffer, then one key per buffer;
* ``nbufs`` data segments of ``bufsz`` bytes, at ``key + 0x10000 * (10 + i)``;
* a "connect" semaphore set (2: writer slot, reader slots) at ``key + 0x10000`` and, per
  reader, a "data" set (5: start-of-data ack, end-of-data ack, full buffers, cleared
  buffers, reader connected) at ``key + 0x10000 * (2 + reader)``.

A writer takes the writer slot (SEM_UNDO, so the kernel gives it back if the process dies),
raises start of data on its first buffer (every reader's SODACK taken once), counts each
filled buffer up in every reader's FULL semaphore, waits on each reader's CLEAR before
reusing a buffer, and ends a transfer by recording the end buffer and byte (every reader's
EODACK taken once).  A reader takes a reader slot, waits on its FULL, reads, and counts
CLEAR up; at the end buffer of a transfer it counts EODACK up and stops.
"""
from __future__ import annotations

import ctypes
import struct
from typing import Optional

import numpy as np

from ..errors import ArgumentError, AsbruError
from . import sysv

WRITE, READ = 0, 1                                  # connect semaphores
SODACK, EODACK, FULL, CLEAR, READER_CONN = range(5)  # data semaphores, per reader
XFERS = 8
READERS = 8
KEY_INCREMENT = 0x00010000
PERM = 0o666

# process states (ipcbuf.c)
DISCON, VIEWER, WRITER, WRITING, WCHANGE, READER, READING, RSTOP, VIEWING, VSTOP = range(10)


class IpcSync(ctypes.Structure):
    """PSRDADA's ``ipcsync_t`` (natural alignment, as its C compiler lays it out)."""

    _fields_ = [
        ("semkey_connect", ctypes.c_int32),
        ("semkey_data", ctypes.c_int32 * READERS),
        ("nbufs", ctypes.c_uint64),
        ("bufsz", ctypes.c_uint64),
        ("w_buf_next", ctypes.c_uint64),
        ("w_buf_curr", ctypes.c_uint64),
        ("w_state", ctypes.c_int),
        ("w_xfer", ctypes.c_uint64),
        ("r_bufs", ctypes.c_uint64 * READERS),
        ("r_states", ctypes.c_int * READERS),
        ("r_xfers", ctypes.c_uint64 * READERS),
        ("n_readers", ctypes.c_uint),
        ("s_buf", ctypes.c_uint64 * XFERS),
        ("s_byte", ctypes.c_uint64 * XFERS),
        ("eod", ctypes.c_uint8 * XFERS),
        ("e_buf", ctypes.c_uint64 * XFERS),
        ("e_byte", ctypes.c_uint64 * XFERS),
        ("on_device_id", ctypes.c_int),
    ]


SYNC_SIZE = ctypes.sizeof(IpcSync)


class IpcBuf:
    """One connected PSRDADA ring buffer (header block or data block)."""

    def __init__(self, key: int) -> None:
        self.key = key & 0xFFFFFFFF
        self.state = DISCON
        self.iread = -1
        self.xfer = 0
        self._attached: list[int] = []
        self.buffers: list[np.ndarray] = []
        self.sync: Optional[IpcSync] = None

    # ------------------------------------------------------------------ connect
    @classmethod
    def create(cls, key: int, nbufs: int, bufsz: int, nreaders: int = 1) -> "IpcBuf":
        """Create a ring as ``dada_db`` does (fails if any of its keys is in use)."""
        if not 1 <= nreaders <= READERS:
            raise ArgumentError(f"nreaders must be in 1..{READERS}; got {nreaders}")
        if nbufs < 1 or bufsz < 1:
            raise ArgumentError(f"nbufs and bufsz must be positive; got {nbufs}, {bufsz}")
        self = cls(key)
        flag = PERM | sysv.IPC_CREAT | sysv.IPC_EXCL
        self._get_sync(nbufs, flag)
        s = self.sync
        s.nbufs, s.bufsz, s.n_readers, s.on_device_id = nbufs, bufsz, nreaders, -1
        for i in range(XFERS):
            s.s_buf[i] = s.s_byte[i] = s.e_buf[i] = s.e_byte[i] = 0
            s.eod[i] = 1
        k = self.key + KEY_INCREMENT
        s.semkey_connect = sysv._key(k)
        for i in range(READERS):
            k += KEY_INCREMENT
            s.semkey_data[i] = sysv._key(k)
        for b in range(nbufs):
            self.count[b] = 0
            k += KEY_INCREMENT
            struct.pack_into("<i", self._shmkeys, 4 * b, sysv._key(k))
        s.w_buf_curr = s.w_buf_next = s.w_xfer = 0
        s.w_state = DISCON
        for i in range(READERS):
            s.r_bufs[i] = s.r_xfers[i] = 0
            s.r_states[i] = DISCON
        try:
            self._get(flag)
            sysv.semop(self.semid_connect, WRITE, 1)
            sysv.semop(self.semid_connect, READ, nreaders)
            for r in range(nreaders):
                sysv.semop(self.semid_data[r], SODACK, XFERS)
                sysv.semop(self.semid_data[r], EODACK, XFERS)
                sysv.semop(self.semid_data[r], READER_CONN, 1)
        except BaseException:
            self.destroy()
            raise
        self.state = VIEWER
        return self

    @classmethod
    def connect(cls, key: int) -> "IpcBuf":
        self = cls(key)
        self._get_sync(0, PERM)
        self._get(PERM)
        self.state = VIEWER
        return self

    def _get_sync(self, nbufs: int, flag: int) -> None:
        size = SYNC_SIZE + nbufs + 4 * nbufs
        try:
            self.syncid = sysv.shmget(self.key, size if flag & sysv.IPC_CREAT else 0, flag)
        except sysv.SysVError as exc:
            if flag & sysv.IPC_CREAT:
                raise ArgumentError(f"PSRDADA key {self.key:x}: cannot create its ring ({exc.strerror}); "
                                    f"is the key in use?") from None
            raise ArgumentError(f"no PSRDADA ring at key {self.key:x} ({exc.strerror}); create one with "
                                f"`dada_db -k {self.key:x}`") from None
        addr = sysv.shmat(self.syncid)
        self._attached.append(addr)
        self.sync = IpcSync.from_address(addr)
        n = nbufs or int(self.sync.nbufs)
        self.count = (ctypes.c_uint8 * n).from_address(addr + SYNC_SIZE)
        self._shmkeys = (ctypes.c_uint8 * (4 * n)).from_address(addr + SYNC_SIZE + n)

    def _get(self, flag: int) -> None:
        s = self.sync
        self.semid_connect = sysv.semget(s.semkey_connect, 2, flag)
        self.semid_data = [sysv.semget(s.semkey_data[r], 5, flag) for r in range(s.n_readers)]
        self.shmids = []
        self.buffers = []
        for b in range(int(s.nbufs)):
            key = struct.unpack_from("<i", self._shmkeys, 4 * b)[0]
            shmid = sysv.shmget(key, int(s.bufsz), flag)
            self.shmids.append(shmid)
            addr = sysv.shmat(shmid)
            self._attached.append(addr)
            self.buffers.append(np.ctypeslib.as_array((ctypes.c_uint8 * int(s.bufsz)).from_address(addr)))

    def disconnect(self) -> None:
        self.buffers = []
        self.sync = None
        self.count = None
        for addr in self._attached:
            sysv.shmdt(addr)
        self._attached = []
        self.state = DISCON

    def destroy(self) -> None:
        """Remove the semaphores and segments (as ``dada_db -d``)."""
        s = self.sync
        if s is None:
            return
        for semid in [getattr(self, "semid_connect", -1)] + list(getattr(self, "semid_data", [])):
            if semid >= 0:
                sysv.sem_remove(semid)
        for shmid in getattr(self, "shmids", []):
            sysv.shm_remove(shmid)
        syncid = self.syncid
        self.disconnect()
        sysv.shm_remove(syncid)

    @property
    def nbufs(self) -> int:
        return int(self.sync.nbufs)

    @property
    def bufsz(self) -> int:
        return int(self.sync.bufsz)

    @property
    def nreaders(self) -> int:
        return int(self.sync.n_readers)

    # ------------------------------------------------------------------ writer
    def lock_write(self, timeout: Optional[float] = None) -> bool:
        if self.state != VIEWER:
            raise AsbruError("PSRDADA: lock_write: not connected as a viewer")
        if not sysv.semop(self.semid_connect, WRITE, -1, sysv.SEM_UNDO, timeout):
            return False
        self.state = WCHANGE if self.sync.w_state == 0 else WRITING
        self.xfer = int(self.sync.w_xfer) % XFERS
        return True

    def unlock_write(self) -> None:
        if self.state not in (WRITER, WCHANGE, WRITING):
            raise AsbruError("PSRDADA: unlock_write: not the writer")
        sysv.semop(self.semid_connect, WRITE, 1, sysv.SEM_UNDO)
        self.state = VIEWER

    def enable_sod(self, start_buf: int, start_byte: int) -> None:
        s = self.sync
        if self.state not in (WRITER, WCHANGE):
            raise AsbruError("PSRDADA: enable_sod: not the writer, or already writing")
        for r in range(s.n_readers):
            sysv.semop(self.semid_data[r], SODACK, -1)
        self.xfer = int(s.w_xfer) % XFERS
        s.s_buf[self.xfer] = start_buf
        s.s_byte[self.xfer] = start_byte
        if s.w_buf_curr == 0:
            s.eod[self.xfer] = 0
        for b in range(int(s.s_buf[self.xfer]), int(s.w_buf_curr)):
            self.count[b % s.nbufs] += 1
        new_bufs = int(s.w_buf_curr) - int(s.s_buf[self.xfer])
        self.state = WRITING
        s.w_state = WRITING
        for r in range(s.n_readers):
            if new_bufs:
                sysv.semop(self.semid_data[r], FULL, new_bufs)

    def get_next_write(self, stop: Optional[object] = None) -> np.ndarray:
        """The next empty buffer (waits until every reader has cleared it)."""
        s = self.sync
        if self.state == WCHANGE:
            self.enable_sod(int(s.w_buf_curr), 0)
        b = int(s.w_buf_next) % int(s.nbufs)
        while self.count[b]:
            for r in range(s.n_readers):
                while not sysv.semop(self.semid_data[r], CLEAR, -1, 0, 0.2):
                    if stop is not None and getattr(stop, "is_set")():
                        raise InterruptedError("PSRDADA: stopped while waiting for a reader to clear a buffer")
            self.count[b] -= 1
        s.w_buf_next += 1
        return self.buffers[b]

    def mark_filled(self, nbytes: int) -> None:
        s = self.sync
        if self.state == WRITER:
            s.w_buf_curr += 1
            return
        if self.state == WCHANGE or nbytes < s.bufsz:
            for r in range(s.n_readers):
                sysv.semop(self.semid_data[r], EODACK, -1)
            s.e_buf[self.xfer] = s.w_buf_curr
            s.e_byte[self.xfer] = nbytes
            s.eod[self.xfer] = 1
            s.w_xfer += 1
            self.xfer = int(s.w_xfer) % XFERS
            self.state = WRITER
            s.w_state = 0
            if nbytes == 0:
                self.get_next_write()
        b = int(s.w_buf_curr) % int(s.nbufs)
        self.count[b] += 1
        s.w_buf_curr += 1
        for r in range(s.n_readers):
            sysv.semop(self.semid_data[r], FULL, 1)

    def enable_eod(self) -> None:
        if self.state != WRITING:
            raise AsbruError("PSRDADA: enable_eod: not writing")
        self.state = WCHANGE

    # ------------------------------------------------------------------ reader
    def lock_read(self, timeout: Optional[float] = None) -> bool:
        s = self.sync
        if self.state != VIEWER or self.iread != -1:
            raise AsbruError("PSRDADA: lock_read: not connected as a viewer")
        if not sysv.semop(self.semid_connect, READ, -1, sysv.SEM_UNDO, timeout):
            return False
        order = sorted(range(s.n_readers), key=lambda r: (int(s.r_bufs[r]), r))
        for r in order:
            if sysv.semop(self.semid_data[r], READER_CONN, -1, sysv.IPC_NOWAIT | sysv.SEM_UNDO):
                self.iread = r
                break
        if self.iread == -1:
            sysv.semop(self.semid_connect, READ, 1, sysv.SEM_UNDO)
            raise AsbruError(f"PSRDADA key {self.key:x}: every reader slot is taken")
        self.state = READER if s.r_states[self.iread] == DISCON else READING
        self.xfer = int(s.r_xfers[self.iread]) % XFERS
        return True

    def unlock_read(self) -> None:
        if self.state not in (READER, READING, RSTOP) or self.iread < 0:
            raise AsbruError("PSRDADA: unlock_read: not a reader")
        sysv.semop(self.semid_data[self.iread], READER_CONN, 1, sysv.SEM_UNDO)
        sysv.semop(self.semid_connect, READ, 1, sysv.SEM_UNDO)
        self.state = VIEWER
        self.iread = -1

    def eod(self) -> bool:
        return self.state in (RSTOP, VSTOP)

    def get_next_read(self, stop: Optional[object] = None) -> Optional[np.ndarray]:
        """The next full buffer (a view of its valid bytes), None at end of data."""
        if self.eod():
            return None
        s = self.sync
        r = self.iread
        while not sysv.semop(self.semid_data[r], FULL, -1, 0, 0.2):
            if stop is not None and getattr(stop, "is_set")():
                return None
        start = 0
        if self.state == READER:
            self.xfer = int(s.r_xfers[r]) % XFERS
            self.state = READING
            s.r_states[r] = READING
            s.r_bufs[r] = s.s_buf[self.xfer]
            start = int(s.s_byte[self.xfer])
            sysv.semop(self.semid_data[r], SODACK, 1)
        b = int(s.r_bufs[r]) % int(s.nbufs)
        if s.eod[self.xfer] and s.r_bufs[r] == s.e_buf[self.xfer]:
            n = int(s.e_byte[self.xfer]) - start
        else:
            n = int(s.bufsz) - start
        return self.buffers[b][start:start + n]

    def mark_cleared(self) -> None:
        s = self.sync
        r = self.iread
        if self.state != READING:
            raise AsbruError("PSRDADA: mark_cleared: not reading")
        sysv.semop(self.semid_data[r], CLEAR, 1)
        if s.eod[self.xfer] and s.r_bufs[r] == s.e_buf[self.xfer]:
            self.state = RSTOP
            s.r_states[r] = DISCON
            s.r_xfers[r] += 1
            self.xfer = int(s.r_xfers[r]) % XFERS
            sysv.semop(self.semid_data[r], EODACK, 1)
        else:
            s.r_bufs[r] += 1

    def reset_reader(self) -> None:
        """After end of data: ready for the next transfer (ipcbuf_reset for a reader)."""
        if self.state == RSTOP:
            self.state = READER
