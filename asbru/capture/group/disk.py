"""``DiskReader(..., threads=N)``: N threads reading one recording, all placing into one
ring (docs/multicore.md).

Follower ``i`` reads chunks ``i, i + N, ...`` of the file with ``pread``
(:mod:`.follower_disk`); the leader's side is
:class:`~asbru.capture.group.capture.GroupCapture`'s, and it takes the records handed over in
the file's order (``F_POS``), so that the result is the single-thread reader's.  Needs a
regular file (reading at offsets) of a fixed-record-size format.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from asbru.capture.disk import DiskReader
from asbru.errors import ArgumentError

from . import follower_disk
from .capture import GroupCapture


class GroupDiskReader(GroupCapture, DiskReader):
    """A DiskReader read by ``threads=N`` threads (``cores=[...]`` pins them)."""

    # a commit waits this long for a reading thread to leave the gulp: reading has no
    # deadline, and a thread that lags (descheduled) must not find its records late
    _watermark_s = 5.0

    def __init__(self, fmt: str, fh: Any, *args: Any, threads: Any = None, cores: Any = None,
                 **kwargs: Any) -> None:
        self._nthreads = 1
        self._group_init(threads, cores)
        super().__init__(fmt, fh, *args, **kwargs)
        self._group_start()

    def _open_sources(self) -> int:
        if not self._seekable:
            raise ArgumentError("threads: DiskReader reads a pipe, FIFO or socket in one thread "
                                "only (several threads read a regular file at offsets)")
        self._start = os.lseek(self._fd, 0, os.SEEK_CUR)
        nf = self._nthreads
        # chunks of at most half a gulp over the threads: together they stay within the
        # window, and a thread's next chunk lies at most one gulp further on
        per_gulp = self.buffer_ntime * self.nsrc
        self._chunk = max(1, min(self._nrec, per_gulp // (2 * nf)))
        self._fds = [self._fd] * nf
        return nf

    def _first_positions(self) -> Optional[list[int]]:
        return [i * self._chunk for i in range(self._nthreads)]

    def _follower_kernel(self) -> Any:
        return follower_disk.bind()

    def _follower_io(self, i: int) -> tuple[np.ndarray, Any, Any, Any]:
        fio = self._follower_base_io(self._fd, follower_disk.NFIO_DISK)
        fio[follower_disk.FIO_START] = self._start
        fio[follower_disk.FIO_CHUNK] = self._chunk
        fio[follower_disk.FIO_NF] = self._nthreads
        fio[follower_disk.FIO_NEXT] = i
        rbuf = np.zeros((self._chunk, self._record_size), dtype=np.uint8)
        rlen = np.zeros(self._chunk, dtype=np.int64)
        return fio, rbuf, rlen, None

    def _leader_poll_ms(self) -> int:
        return -1        # the stream ends when every thread has read its last chunk

    def tell(self) -> int:
        raise ArgumentError("DiskReader.tell: not with threads=N (the threads read at their "
                            "own offsets)")

    def seek(self, offset: int, whence: int = os.SEEK_CUR) -> int:
        raise ArgumentError("DiskReader.seek: not with threads=N (the threads read at their "
                            "own offsets); seek the file before creating the reader")
