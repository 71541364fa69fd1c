"""``asbru.ring.copy``: stream one ring into another, across memory spaces.

Every sequence of the input ring becomes a sequence of the output ring with the same name,
time tag, header and ringlet count; every byte is copied in order, and the per-frame flags
travel with their bytes.  Copies between host memory (``system``, ``cuda_host``, ``shm``) are
``memcpy``; a copy that touches ``cuda`` memory is an asynchronous ``cudaMemcpyAsync`` on one
of ``nbuf`` CUDA streams, so that the next span is already moving while the previous one is
finishing (double buffering with the default ``nbuf=2``).  From ``cuda_host`` memory these
copies run at the PCIe peak; from pageable memory the driver stages them.

The input is read with a guarantee by default (the writer waits for the copy), holding every
span that is still in flight: the guarantee stays at the oldest one until its copy is done.
With ``guarantee=False`` the copy never holds the writer back; bytes the writer reused before
their copy finished are written as zeros, their frames flagged 0, and counted in
``noverwritten_bytes`` of the result.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Optional

import numpy as np

from ..errors import ArgumentError, EndOfDataStop

_CUDA_MEMCPY_DEFAULT = 4     # cudaMemcpyDefault: direction from unified addressing


class _HostMover:
    """Host to host: a plain copy, finished when it returns."""

    def start(self, slot: int, src: Any, dst: Any) -> None:
        np.copyto(dst, src)

    def finish(self, slot: int) -> None:
        pass

    def zero(self, dst: Any, nbyte: int) -> None:
        dst[:, :nbyte] = 0


class _CudaMover:
    """Any copy that touches device memory: cudaMemcpyAsync per ringlet on one stream per slot."""

    def __init__(self, nbuf: int) -> None:
        from .gpu import cupy_or_raise
        self._cp = cp = cupy_or_raise("cuda")
        self._streams = [cp.cuda.Stream(non_blocking=True) for _ in range(nbuf)]

    @staticmethod
    def _ptr(a: Any) -> int:
        return int(a.data.ptr) if hasattr(a, "data") and hasattr(a.data, "ptr") else int(a.ctypes.data)

    def start(self, slot: int, src: Any, dst: Any) -> None:
        stream = self._streams[slot]
        n = int(src.shape[1])
        memcpy = self._cp.cuda.runtime.memcpyAsync
        for r in range(src.shape[0]):
            memcpy(self._ptr(dst[r]), self._ptr(src[r]), n, _CUDA_MEMCPY_DEFAULT, stream.ptr)

    def finish(self, slot: int) -> None:
        self._streams[slot].synchronize()

    def zero(self, dst: Any, nbyte: int) -> None:
        if isinstance(dst, np.ndarray):
            dst[:, :nbyte] = 0
        else:
            dst[:, :nbyte] = 0
            self._cp.cuda.get_current_stream().synchronize()


def copy(iring: Any, oring: Any, span_size: Optional[int] = None, *, guarantee: bool = True,
         whence: str = "earliest", nbuf: int = 2, end_writing: bool = True) -> dict[str, int | float]:
    """Copy every sequence of ``iring`` into ``oring`` until ``iring``'s writer has ended.

    ``span_size`` (default: the input's contiguous span once its writer has sized it) is the
    unit of each copy; ``oring`` is grown to hold ``4 * span_size`` if it is smaller.  Runs
    in the calling thread (start it in a ``threading.Thread`` beside the writer).  Returns
    ``{"nsequence", "nbyte", "noverwritten_bytes", "seconds"}``.
    """
    if iring is oring:
        raise ArgumentError("copy: the input and output rings must be different rings")
    if span_size is not None and (not isinstance(span_size, (int, np.integer)) or span_size <= 0):
        raise ArgumentError(f"copy: span_size must be a positive integer or None; got {span_size!r}")
    if not isinstance(nbuf, (int, np.integer)) or not 1 <= nbuf <= 16:
        raise ArgumentError(f"copy: nbuf must be an integer in [1, 16]; got {nbuf!r}")
    nbuf = int(nbuf)
    device = "cuda" in (iring.space, oring.space)
    mover: Any = _CudaMover(nbuf) if device else _HostMover()
    stats: dict[str, int | float] = {"nsequence": 0, "nbyte": 0, "noverwritten_bytes": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    writer = None
    try:
        for rseq in iring.read(whence, guarantee=guarantee):
            size = int(span_size) if span_size is not None else int(iring.contiguous_span)
            size = min(size, int(iring.contiguous_span))
            if size <= 0:
                raise ArgumentError("copy: the input ring has no memory (Ring.resize was never called)")
            nringlet = max(int(rseq.nringlet), 1)
            if oring.contiguous_span < size or oring.total_span < nbuf * size or oring.nringlet < nringlet:
                oring.resize(size, max(4 * size, nbuf * size, int(oring.total_span)), nringlet)
            if writer is None:
                writer = oring.begin_writing()
            wseq = writer.begin_sequence(name=rseq.name, time_tag=rseq.time_tag,
                                         header=rseq.header.tobytes(), nringlet=rseq.nringlet)
            _copy_sequence(iring, rseq, wseq, size, nbuf, mover, stats)
            wseq.end()
            stats["nsequence"] += 1
    finally:
        if writer is not None and end_writing:
            writer.end_writing()
        stats["seconds"] = time.perf_counter() - t0
    return stats


def _copy_sequence(iring: Any, rseq: Any, wseq: Any, size: int, nbuf: int, mover: Any,
                   stats: dict[str, int | float]) -> None:
    inflight: deque[tuple[int, Any, Any]] = deque()
    slot = 0
    offset = 0
    try:
        while True:
            try:
                ispan = iring._acquire(rseq, offset, size, hold=True)
            except EndOfDataStop:
                break
            n = ispan.size
            ospan = wseq.reserve(n)
            mover.start(slot, ispan.data_view(), ospan.data_view())
            inflight.append((slot, ispan, ospan))
            slot = (slot + 1) % nbuf
            offset += n
            if len(inflight) >= nbuf:
                _finish(iring, rseq, inflight.popleft(), inflight, mover, stats)
        while inflight:
            _finish(iring, rseq, inflight.popleft(), inflight, mover, stats)
    finally:
        for _, ispan, ospan in inflight:          # an error: give everything back
            ispan.release()
            ospan.commit(0)
            ospan.close()
        if rseq.guarantee:
            end = rseq._seq.end
            iring._move_pin(rseq, end if end is not None else rseq._seq.begin + offset)


def _finish(iring: Any, rseq: Any, item: tuple[int, Any, Any], rest: deque, mover: Any,
            stats: dict[str, int | float]) -> None:
    slot, ispan, ospan = item
    mover.finish(slot)
    n = ispan.size
    lost = ispan.size_overwritten           # checked after the copy: never optimistic
    layout = iring._flag_layout(ispan._seq)
    rows = ispan.flags if layout is not None else None
    if lost:
        mover.zero(ospan.data_view(), lost)
        stats["noverwritten_bytes"] += lost
    if layout is not None:
        fn = layout[0]
        first = ispan.offset // fn
        if rows is None:                   # rows of data that left the ring are forgotten
            rows = np.zeros((-(-(ispan.offset + n) // fn) - first, layout[1]), dtype=np.uint8)
        if lost:
            rows = rows.copy()
            rows[:-(-(ispan.offset + lost) // fn) - first] = 0
        ospan._adopt_flag_rows(first, rows, fn)
    ispan.release()
    ospan.close()
    stats["nbyte"] += n
    if rseq.guarantee:
        # the guarantee moves up to the oldest span still being copied
        nxt = rest[0][1]._abs if rest else ispan._abs + n
        iring._move_pin(rseq, nxt)
