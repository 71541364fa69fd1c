"""Spans: windows onto ring memory, handed out as NumPy views (zero copy).

A span's bytes are always contiguous, even when the span wraps past the end of the ring's
capacity: the ring continues its buffer with a "ghost" of ``contiguous_span`` bytes, filled
only for spans that cross the end (see ``ring.py``), so a view never has to be stitched
together.
"""
from __future__ import annotations

import threading
from typing import Any, Optional

import numpy as np

from ..errors import ArgumentError
from .flags import as_flags
from .protocols import RingSide
from .sequence import ReadSequence, _Sequence

_DTYPES: dict[Any, np.dtype] = {}


def _as_dtype(dtype: Any) -> np.dtype:
    """A NumPy dtype for a NumPy dtype/type or a type name.

    Strings are read as Bifrost type names first ('u8' is uint8, 'cf32' complex64, 'ci8' a
    (re, im) int8 pair), as Bifrost's ``data_view`` does, then as NumPy spellings.
    """
    try:
        return _DTYPES[dtype]
    except (KeyError, TypeError):
        pass
    dt = None
    if isinstance(dtype, str):
        try:
            from ..dtypes import DataType
            dt = np.dtype(DataType(dtype).as_numpy_dtype())
        except Exception:
            dt = None
    if dt is None:
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise ArgumentError(f"dtype must be a NumPy dtype or a Bifrost type name; got {dtype!r}") from None
    try:
        _DTYPES[dtype] = dt
    except TypeError:
        pass
    return dt


def _view(buf: np.ndarray, nringlet: int, bufpos: int, size: int, dtype: Any, shape: Any) -> np.ndarray:
    """``(nringlet, size // itemsize)`` view of ring memory, optionally reshaped.

    Read spans are given a read-only view of the ring buffer, so every view cut from it is
    read-only too without touching flags per span.
    """
    if dtype is np.uint8 and type(shape) is int and shape == -1:           # the common case, kept cheap
        return buf[:nringlet, bufpos:bufpos + size]
    dt = _as_dtype(dtype)
    n = size // dt.itemsize
    a = buf[:nringlet, bufpos:bufpos + n * dt.itemsize]
    if dt != np.uint8:
        a = a.view(dt)
    if not (isinstance(shape, (int, np.integer)) and shape == -1):
        a = a.reshape(shape)
    return a


class SpanBase:
    """What read and write spans share: size, offset, nringlet and the data views."""

    __slots__ = ("_ring", "_buf", "_bufpos", "_abs", "_size", "_nringlet", "_open")

    def __init__(self, ring: RingSide, buf: np.ndarray, bufpos: int, abs_offset: int, size: int,
                 nringlet: int) -> None:
        self._ring = ring
        self._buf = buf
        self._bufpos = bufpos
        self._abs = abs_offset
        self._size = size
        self._nringlet = nringlet
        self._open = True

    @property
    def ring(self) -> RingSide:
        return self._ring

    @property
    def size(self) -> int:
        """Bytes in the span (per ringlet)."""
        return self._size

    @property
    def stride(self) -> int:
        """Bytes between ringlets' copies of this span as seen by the caller (Bifrost: = size)."""
        return self._size

    @property
    def nringlet(self) -> int:
        return self._nringlet

    @property
    def data(self) -> np.ndarray:
        """``data_view(np.uint8)``: shape ``(nringlet, size)``; writable for a write span,
        read-only for a read span (its ``_buf`` is the ring's read-only view)."""
        # what _view's common case returns, without its two calls: once per span per side
        return self._buf[:self._nringlet, self._bufpos:self._bufpos + self._size]

    def data_view(self, dtype: Any = np.uint8, shape: Any = -1) -> np.ndarray:
        raise NotImplementedError


class WriteSpan(SpanBase):
    """A reserved region the writer fills; committed (published to readers) on close/exit."""

    __slots__ = ("_seq", "_commit_size", "_flags", "_frame_nbyte", "_owner", "_first_frame")

    def __init__(self, ring: RingSide, seq: _Sequence, buf: np.ndarray, bufpos: int, abs_offset: int,
                 size: int) -> None:
        # SpanBase's fields set here, not through its __init__: a capture makes one of these
        # per gulp, from cold caches (Ring._commit_then_reserve says why that matters)
        self._ring = ring
        self._buf = buf
        self._bufpos = bufpos
        self._abs = abs_offset
        self._size = size
        self._nringlet = seq.nringlet
        self._open = True
        self._seq = seq
        self._commit_size = size
        self._flags: Optional[np.ndarray] = None
        self._frame_nbyte = 0
        self._first_frame = -1      # -1: the span's first byte starts frame 0 of its rows
        self._owner = threading.get_ident()   # lets the ring refuse a self-deadlocking commit

    @property
    def offset(self) -> int:
        """Absolute ring offset of the span's first byte (Bifrost: write spans are absolute)."""
        return self._abs

    @property
    def commit_size(self) -> int:
        return self._commit_size

    def data_view(self, dtype: Any = np.uint8, shape: Any = -1) -> np.ndarray:
        """Writable view of shape ``(nringlet, size // itemsize)``, reshaped to ``shape`` if given."""
        return _view(self._buf, self._nringlet, self._bufpos, self._size, dtype, shape)

    def first_ringlet(self) -> np.ndarray:
        """``data_view()[0]`` in one step: the span's bytes of ringlet 0, writable."""
        return self._buf[0, self._bufpos:self._bufpos + self._size]

    def commit(self, size: Optional[int] = None) -> None:
        """Record how many bytes to publish on close (default all; 0 cancels the reservation)."""
        if size is None:
            size = self._size
        elif type(size) is not int and isinstance(size, (int, np.integer)):
            size = int(size)
        if type(size) is not int or not 0 <= size <= self._size:
            raise ArgumentError(f"commit: size must be an integer in [0, {self._size}]; got {size!r}")
        self._commit_size = size

    def set_flags(self, flags: Any, frame_nbyte: int) -> None:
        """Attach per-frame flags (``(nframe, k)`` uint8) to this span; published on commit.

        Frame ``i`` of the array is the frame starting at this span's first byte plus
        ``i * frame_nbyte``; the span must start on a frame boundary of its sequence.
        """
        arr, fn = as_flags(flags, frame_nbyte)
        rel = self._abs - self._seq.begin
        if rel % fn:
            raise ArgumentError(f"set_flags: the span starts {rel} bytes into its sequence, "
                                f"not a multiple of frame_nbyte={fn}")
        store = self._seq.flags
        if store is not None:
            store.check(fn, arr.shape[1])
        self._flags, self._frame_nbyte = arr, fn

    def hand_over_flags(self, flags: np.ndarray, frame_nbyte: int) -> None:
        """:meth:`set_flags` for a caller that hands the array over (a C-contiguous uint8
        ``(nframe, k)`` array it never touches again, e.g. the capture engine's per-gulp
        mask): no copy, no argument checks beyond the sequence's flag width."""
        store = self._seq.flags
        if store is not None:
            store.check(frame_nbyte, flags.shape[1])
        self._flags, self._frame_nbyte = flags, frame_nbyte


    def _adopt_flag_rows(self, first_frame: int, rows: np.ndarray, frame_nbyte: int) -> None:
        """Flag rows for frames ``first_frame, first_frame + 1, ...`` of the sequence, for a
        span that need not start on a frame boundary (``asbru.ring.copy`` forwards a reader's
        rows this way); the rows must cover the span's frames."""
        store = self._seq.flags
        if store is not None:
            store.check(frame_nbyte, rows.shape[1])
        self._flags, self._frame_nbyte, self._first_frame = rows, frame_nbyte, int(first_frame)

    def close(self) -> None:
        """Commit ``commit_size`` bytes (waits for earlier spans to commit first)."""
        if self._open:
            self._open = False
            self._ring._commit(self)

    def __enter__(self) -> "WriteSpan":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<WriteSpan offset={self._abs} size={self._size} open={self._open}>"


class ReadSpan(SpanBase):
    """Committed bytes of a sequence, as a read-only view of ring memory.

    Ring memory can be reused by the writer under a reader that did not ask for a
    guarantee.  The reader copies (or uses) ``data`` and *then* checks
    :attr:`size_overwritten`: bytes ``[0, size_overwritten)`` of the span may be garbage,
    the rest were intact when the check ran (the writer only ever overwrites the oldest
    bytes first).
    """

    __slots__ = ("_rseq", "_seq", "_offset", "_flags_done", "_flags_val")

    def __init__(self, rseq: ReadSequence, seq: _Sequence, buf: np.ndarray, bufpos: int,
                 abs_offset: int, size: int, offset: int) -> None:
        super().__init__(rseq._ring, buf, bufpos, abs_offset, size, seq.nringlet)
        self._rseq = rseq
        self._seq = seq
        self._offset = offset
        self._flags_done = False
        self._flags_val: Optional[np.ndarray] = None

    @property
    def sequence(self) -> ReadSequence:
        return self._rseq

    @property
    def offset(self) -> int:
        """Offset of the span's first byte from the start of its sequence."""
        return self._offset

    @property
    def size_overwritten(self) -> int:
        """Bytes at the start of this span the writer has reused (so far).  Check after reading."""
        lost = self._ring._tail - self._abs
        return 0 if lost <= 0 else (lost if lost < self._size else self._size)

    @property
    def flags(self) -> Optional[np.ndarray]:
        """Writer's flag rows for the frames this span covers, or None if it attached none."""
        if not self._flags_done:
            self._flags_val = self._ring._flags_for(self._seq, self._offset, self._size)
            self._flags_done = True
        return self._flags_val

    @property
    def frame_nbyte(self) -> Optional[int]:
        """Bytes per flag row of this span's sequence (a capture: one time slot, ``nsrc``
        packets), or None while its writer has attached no flags."""
        layout = self._ring._flag_layout(self._seq)
        return None if layout is None else int(layout[0])

    def data_view(self, dtype: Any = np.uint8, shape: Any = -1) -> np.ndarray:
        """Read-only view of shape ``(nringlet, size // itemsize)``, reshaped to ``shape`` if given."""
        return _view(self._buf, self._nringlet, self._bufpos, self._size, dtype, shape)

    def release(self) -> None:
        """Give the span back (a resize waits for every open span)."""
        if self._open:
            self._open = False
            self._ring._release_span()

    close = release

    def __enter__(self) -> "ReadSpan":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<ReadSpan offset={self._offset} size={self._size} open={self._open}>"


class AcquiredSpan(ReadSpan):
    """A read span handed out by ``ReadSequence.acquire``: the caller gives it back, and one
    that is dropped without a release is given back by the garbage collector.

    (``ReadSequence.read`` gives its spans back itself, so they are plain ``ReadSpan``s: no
    finalizer to run once per span.)"""

    __slots__ = ()

    def __del__(self) -> None:
        if getattr(self, "_open", False):
            self._open = False
            try:
                self._ring._graveyard.append(("span", 0))
            except Exception:
                pass
