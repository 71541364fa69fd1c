"""``DiskWriter``: packets back to back (header, payload) into a file descriptor."""
from __future__ import annotations

from typing import Any

import numpy as np

from asbru.errors import ArgumentError
from asbru.writers import kernels as K
from asbru.writers.base import PacketWriter

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
    (512 packets per call, no copy of the payload); ``"image"`` copies records into a 1 MiB
    staging buffer and writes it in one call.  ``"auto"`` (default) picks the faster one
    measured in ``benchmarks/writers.py``: writev when payloads are at least 4 KiB (or the
    format has no header), the staging buffer for smaller packets.
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
        self._stage = np.zeros(max(STAGE_BYTES, rec), dtype=np.uint8) if method == "image" else None
        self._iovs = np.zeros((K.IOV_MAX, 2), dtype=np.uint64)

    def _transfer(self, fd: int, hdrs: np.ndarray, payload: np.ndarray, out: np.ndarray) -> None:
        flush = getattr(self._target, "flush", None)
        if flush is not None:
            flush()
        st = self._limiter
        if self._stage is not None and self._stage.size >= hdrs.shape[1] + payload.shape[1]:
            K.disk_write_image(fd, hdrs, payload, self._stage, self._iovs, self._pfd,
                               st.state, st.ts, out)
        else:
            K.disk_write_pairs(fd, hdrs, payload, self._iovs, self._pfd, st.state, st.ts, out)
