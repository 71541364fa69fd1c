"""``DiskReader``: the capture engine fed by ``read()`` of whole records from a file."""
from __future__ import annotations

import fcntl
import os
import stat
import threading
import weakref
from typing import Any

import numpy as np

from asbru import formats
from asbru.errors import ArgumentError
from asbru.formats.spec import FormatError

from . import layout as L
from .backends import disk_readahead as RA
from .args import bind_args, drop_single_thread_keywords, wants_threads
from .args import as_int, as_nsrc, positive_int
from .engine import CaptureEngine
from .status import Status
from .udp import socket_fd

_NAMES = ["ring", "nsrc", "src0", "buffer_nframe", "slot_nframe", "sequence_callback", "core"]
_ALIASES = {"buffer_ntime": "buffer_nframe", "slot_ntime": "slot_nframe",
            "ntime_gulp": "buffer_nframe", "ntime_slot": "slot_nframe"}
_EXTRA = ("max_jump_gulps", "budget", "hold_packets", "sample_rate", "read_size", "read_ahead")
READ_SIZE = 1 << 20   # bytes per read(): ~1 MiB of whole records
READ_SIZE_MAX = 1 << 30
#: receive-buffer regions of a reader that reads ahead: the loop places one while
#: READ_AHEAD_THREADS threads read the next ones (16-core host: 2 threads and 4 regions of
#: 1 MiB left the loop waiting for 1 % of the regions, 1 thread for 80 %)
READ_AHEAD_REGIONS = 4
READ_AHEAD_THREADS = 2


def _stop_read_ahead(threads: list[threading.Thread], req_w: int, fds: tuple[int, ...],
                     keep: tuple[Any, ...]) -> None:
    """End the read-ahead threads (after the requests still out) and close their pipes and
    descriptor.  ``keep``: the arrays they write, alive until they have stopped."""
    try:
        os.write(req_w, RA.STOP.to_bytes(8, "little", signed=True) * len(threads))
    except OSError:
        pass
    for t in threads:
        t.join(30)
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _seekable(fd: int) -> bool:
    """False for a pipe, FIFO, socket or terminal (lseek fails with ESPIPE)."""
    if stat.S_ISREG(os.fstat(fd).st_mode):
        return True
    try:
        os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return False
    return True


class DiskReader(CaptureEngine):
    """``DiskReader(fmt, fh, ring, nsrc, src0, buffer_nframe, slot_nframe, sequence_callback,
    core=None)`` (``ring`` may be omitted: the reader then owns one, ``.ring``).

    Reading starts at ``fh.tell()``; the reader reads the descriptor directly (Python's
    buffered position is not updated: use :meth:`tell`).  ``fh`` may also be a pipe, FIFO
    or socket (``sys.stdin.buffer``, ``subprocess.PIPE``): it is read forward to its end,
    and :meth:`seek`/:meth:`tell` raise.  ``recv()`` returns NO_DATA/ENDED only at the end
    of the input (bounded work with no sequence open returns CONTINUED)."""

    _budget_status_idle = Status.CONTINUED

    _backend = "disk"
    _kind = "disk_reader"

    def __new__(cls, *args: Any, **kwargs: Any) -> "DiskReader":
        # threads=N (N > 1): several threads read the file (asbru/capture/group/disk.py)
        if wants_threads(kwargs):
            from .group.capture import group_class
            cls = group_class(cls)
        return super().__new__(cls)

    def __init__(self, fmt: str, fh: Any, *args: Any, **kwargs: Any) -> None:
        drop_single_thread_keywords(kwargs)      # threads=1: this very reader
        a = bind_args(type(self).__name__, _NAMES, _ALIASES, args, kwargs,
                      {"ring": None, "sequence_callback": None, "core": None}, _EXTRA)
        try:
            f = formats.get(fmt, "disk")
        except FormatError as exc:
            raise ArgumentError(f"fmt: {exc}") from None
        rs = f.params.record_size
        if not rs:
            raise ArgumentError(f"fmt: {fmt!r} has no fixed record size for DiskReader; give the "
                                f"size in the format string (e.g. 'chips_132')")
        self._fh = fh  # keep the file object alive: its descriptor is ours to read
        self._fd = socket_fd(fh, "fh")
        if fcntl.fcntl(self._fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
            raise ArgumentError("fh: the file is open for writing only; DiskReader needs a file "
                                "opened for reading ('rb')")
        self._seekable = _seekable(self._fd)
        if self._seekable:
            start = fh.tell() if hasattr(fh, "tell") else os.lseek(self._fd, 0, os.SEEK_CUR)
            os.lseek(self._fd, int(start), os.SEEK_SET)
        self._record_size = int(rs)
        read_size = positive_int("read_size", a.get("read_size", READ_SIZE))
        if read_size > READ_SIZE_MAX:
            raise ArgumentError(f"read_size must be at most {READ_SIZE_MAX} bytes; got {read_size}")
        self._nrec = max(1, read_size // self._record_size)
        read_ahead = a.get("read_ahead", None)
        regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        if read_ahead is None:
            read_ahead = regular
        elif not isinstance(read_ahead, bool):
            raise ArgumentError(f"read_ahead must be True or False; got {read_ahead!r}")
        elif read_ahead and not regular:
            raise ArgumentError("read_ahead: only a regular file is read ahead (a second thread "
                                "reads it at offsets); this input is a pipe, FIFO, socket or device")
        self._read_ahead = read_ahead
        self._init_engine(f, a["ring"], as_nsrc(a["nsrc"]), as_int("src0", a["src0"]),
                          positive_int("buffer_nframe", a["buffer_nframe"]),
                          positive_int("slot_nframe", a["slot_nframe"]), a["sequence_callback"],
                          a["core"], self._record_size, max_jump_gulps=a.get("max_jump_gulps"),
                          budget=a.get("budget"), hold_packets=a.get("hold_packets"),
                          sample_rate=a.get("sample_rate"))

    def _setup_backend(self) -> None:
        # rows in front keep the bytes before the batch, spare rows after it take what a
        # resync keeps from them (see fetch in asbru/capture/backends/disk.py); a reader
        # that reads ahead has READ_AHEAD_REGIONS such regions (disk_readahead.py)
        nrow = self._nrec + 2 * L.DISK_BACK_ROWS
        nregion = READ_AHEAD_REGIONS if self._read_ahead else 1
        rs = self._record_size
        self._rbuf = np.zeros((nregion * nrow, rs), dtype=np.uint8)
        self._rlen = np.zeros(nrow - L.DISK_BACK_ROWS, dtype=np.int64)
        self._aux = np.zeros(nregion * RA.NCTL, dtype=np.int64)     # read-ahead control
        self._auxlens = np.zeros(1, dtype=np.uint64)
        io = np.zeros(RA.NIO_DISK, dtype=np.int64)
        io[L.IO_FD] = self._fd
        io[L.IO_ADDR] = self._rbuf.ctypes.data
        io[L.IO_POLL_MS] = -2
        io[L.IO_POLLFD_ADDR] = io.ctypes.data + 8 * L.IO_POLLFD
        io[RA.IO_NROW] = nrow
        io[RA.IO_RA_TOKEN_ADDR] = io.ctypes.data + 8 * RA.IO_RA_TOKEN
        self._meta = io[RA.IO_ROW0:RA.IO_ROW0 + 1]      # the current region's first row
        self._io = io
        if self._read_ahead:
            self._start_read_ahead(nregion, nrow)

    def _start_read_ahead(self, nregion: int, nrow: int) -> None:
        """Start the thread that reads the file ahead into the other regions."""
        io, rs = self._io, self._record_size
        io[RA.IO_POS] = io[RA.IO_RA_OFF] = os.lseek(self._fd, 0, os.SEEK_CUR)
        io[RA.IO_RA_LEN] = self._nrec * rs
        req_r, req_w = os.pipe2(os.O_CLOEXEC)
        done_r, done_w = os.pipe2(os.O_CLOEXEC)
        dup = os.dup(self._fd)          # pread of this, whatever becomes of the user's fd
        io[RA.IO_RA_REQ] = req_w
        io[RA.IO_RA_DONE] = done_r
        nthread = max(1, min(READ_AHEAD_THREADS, nregion - 1, (os.cpu_count() or 2) - 1))
        toks = [np.zeros(1, dtype=np.int64) for _ in range(nthread)]
        threads = [threading.Thread(
            target=RA.serve, name=f"asbru-{self._kind}-read-ahead", daemon=True,
            args=(self._aux, dup, req_r, done_w, self._rbuf.ctypes.data + L.DISK_BACK_ROWS * rs,
                  nrow * rs, tok)) for tok in toks]
        for t in threads:
            t.start()
        io[RA.IO_RA] = nregion
        self._ra_pid = os.getpid()
        self._ra_stop = weakref.finalize(self, _stop_read_ahead, threads, req_w,
                                         (req_w, req_r, done_w, done_r, dup),
                                         (self._rbuf, self._aux, toks))

    def end(self) -> None:
        try:
            super().end()
        finally:
            stop = getattr(self, "_ra_stop", None)
            if stop is not None:
                stop()

    def _check_open(self) -> None:
        try:
            fd = int(self._fh.fileno())
        except (OSError, ValueError):
            fd = -1
        if fd != self._fd:
            raise ArgumentError(f"DiskReader.recv: the file was closed (fileno() is now {fd})")
        pid = getattr(self, "_ra_pid", None)       # None: nothing is read ahead
        if pid is not None and pid != os.getpid() and self._io[RA.IO_RA]:
            # a forked child: the reading threads stayed in the parent (waiting for them
            # would never end); read in this thread from where the parent's batches ended
            for k in (RA.IO_RA, RA.IO_RA_INFLIGHT, RA.IO_RA_UNREAD):
                self._io[k] = 0

    def _unread_bytes(self) -> int:
        """Bytes read from the file but not yet looked at (the receive buffer's rest, and
        the bytes kept back for the next read: a partial record, or the records after a
        resynchronisation point)."""
        pos, count = int(self._rst[L.R_POS]), int(self._rst[L.R_COUNT])
        lens = self._rlen[pos:count]
        rest = int(np.where(lens >= 0, lens, -1 - lens).sum()) if count > pos else 0
        return rest + int(self._io[L.IO_CARRY_LEN])

    def _need_seekable(self, what: str) -> None:
        if not self._seekable:
            raise ArgumentError(f"DiskReader.{what}: the input is a pipe, FIFO or socket, which "
                                f"cannot seek; only reading forward works")

    def tell(self) -> int:
        """Offset of the next record not yet processed (a one-line ArgumentError for a
        pipe, FIFO or socket)."""
        self._need_seekable("tell")
        return os.lseek(self._fd, 0, os.SEEK_CUR) - self._unread_bytes()

    def seek(self, offset: int, whence: int = os.SEEK_CUR) -> int:
        """Move the read position (relative to :meth:`tell` for SEEK_CUR), commit what is
        open, end the sequence; the next packet starts a new one.  Returns the new offset."""
        if self._ended:
            raise ArgumentError("DiskReader.seek: the reader has ended")
        self._need_seekable("seek")
        if whence not in (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END):
            raise ArgumentError(f"whence must be os.SEEK_SET, SEEK_CUR or SEEK_END (0, 1, 2); got {whence!r}")
        offset = as_int("offset", offset)
        if whence == os.SEEK_CUR:
            offset, whence = self.tell() + offset, os.SEEK_SET
        self._rst[:] = 0  # records read ahead belong to the old position
        for k in (L.IO_CARRY_LEN, L.IO_CARRY_OFF, L.IO_FILL, L.IO_BACK, L.IO_NEED, L.IO_EOF):
            self._io[k] = 0     # nothing read before the new position is kept
        try:
            new = os.lseek(self._fd, offset, whence)
        except OSError as exc:
            raise ArgumentError(f"DiskReader.seek: cannot seek to {offset} (whence {whence}): "
                                f"{exc.strerror}") from None
        self.flush()
        return new
