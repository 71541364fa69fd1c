"""``DiskWriter``: packets back to back (header, payload) into a file descriptor."""
from __future__ import annotations

from typing import Any

import numpy as np

from asbru.errors import ArgumentError
from asbru.writers import kernels as K
from asbru.writers.base import PacketWriter
from asbru.writers.overlap import OverlappedImage

__all__ = ["DiskWriter"]

#: bytes per write() when records are staged (METHOD "image")
STAGE_BYTES = 1 << 20
#: "auto" uses writev from this payload size up (benchmarks/writers.py: writev ahead at
#: 4 KiB and 8 KiB, the staging copy level at 1 KiB and well ahead at 128 B)
WRITEV_MIN_PAYLOAD = 4096


class DiskWriter(PacketWriter):
    """``DiskWriter(fmt, fh, core=None)``: write packets of format ``fmt`` to ``fh``.

    ``fh`` is any object with ``fileno()`` (an open file, a pipe, a socket).  The packets are
    written straight to the descriptor at its current position; ``fh.flush()`` is called
    first (when ``fh`` has one), so text written through a buffered ``fh`` before a
    ``send()`` lands before the packets (Bifrost does not flush).

    ``method`` (asbru extension): ``"writev"`` hands header/payload pairs to ``writev``
    (512 packets per call, no copy of the payload); ``"image"`` copies records into 1 MiB
    staging buffers and writes each in one call: in a second thread while the next one is
    copied when a send holds at least 4 MiB and neither ``core`` nor a rate limit is set,
    else in turn in one thread.  ``"auto"`` (default) picks the faster one measured in
    ``benchmarks/writers.py``: writev when payloads are at least 4 KiB (or the format has
    no header), the staging buffers for smaller packets.  ``close()`` stops the second
    thread.
    """

    KIND = "disk_writer"
    _TARGET_ARG = "fh"
    METHODS = ("auto", "writev", "image")

    def __init__(self, fmt: str, fh: Any, core: int | None = None, *, method: str = "auto") -> None:
        if method not in self.METHODS:
            raise ArgumentError(f"method: expected one of {', '.join(self.METHODS)}, got {method!r}")
        super().__init__(fmt, fh, core)
        rec = self._hsize + int(self._format.params.payload_size or 0)
        if method == "auto":
            p = int(self._format.params.payload_size or 0)
            method = "writev" if (self._hsize == 0 or p >= WRITEV_MIN_PAYLOAD) else "image"
        self.method = method
        # the staging slots (slot 0 is the serial loop's buffer), the pipes and the write
        # thread of the overlapped loop; pages are only touched when used
        self._image = OverlappedImage(max(STAGE_BYTES, rec), self.KIND) if method == "image" else None
        self._iovs = np.zeros((K.IOV_MAX, 2), dtype=np.uint64)
        self._fill_args: tuple | None = None   # headers the overlapped loop fills (_defer_fill)

    def _transfer(self, fd: int, hdrs: np.ndarray, payload: np.ndarray, out: np.ndarray) -> None:
        flush = getattr(self._target, "flush", None)
        if flush is not None:
            flush()
        st = self._limiter
        image = self._image
        if image is None or image.stages.shape[1] < hdrs.shape[1] + payload.shape[1]:
            K.disk_write_pairs(fd, hdrs, payload, self._iovs, self._pfd, st.state, st.ts, out)
        elif self._overlaps(hdrs, payload):
            fill_args, self._fill_args = self._fill_args, None
            image.write(fd, hdrs, payload, out, self._fill if fill_args else None, fill_args)
        else:
            K.disk_write_image(fd, hdrs, payload, image.stages[0], self._iovs, self._pfd,
                               st.state, st.ts, out)

    def _overlaps(self, hdrs: np.ndarray, payload: np.ndarray) -> bool:
        """Whether this send copies and writes in two threads (docs/writing.md): a pinned
        writer keeps to its one core, a paced one has time to spare, a short send would
        spend more on the hand-over than it gains."""
        rec = hdrs.shape[1] + payload.shape[1]
        image = self._image
        return (image is not None and image.stages.shape[1] >= rec and self._core is None
                and self._limiter.rate == 0 and image.worth_it(payload.shape[0], rec))

    def _defer_fill(self, hdrs: np.ndarray, payload: np.ndarray, fill_args: tuple) -> bool:
        # the overlapped loop fills the headers batch by batch, so that all but the first
        # batch's are filled while earlier records are being written
        self._fill_args = fill_args if self._overlaps(hdrs, payload) else None
        return self._fill_args is not None

    def close(self) -> None:
        """Stop the internal threads (the write thread of the image method, the pinned
        sending thread); the file stays open: it is the caller's.  A later ``send()`` starts
        them again."""
        if self._image is not None:
            with self._lock:  # after a send() in progress in another thread
                self._image.close()
        super().close()
