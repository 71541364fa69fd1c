"""Sequences: named, time-tagged runs of ring data with a header.

``_Sequence`` is the ring's record (shared by the writer and every reader);
``WriteSequence`` and ``ReadSequence`` are the handles users hold.  All mutable state is
guarded by the ring's lock; the handles delegate to the ring for anything that waits.
"""
from __future__ import annotations

import json
from typing import Any, Iterator, Optional

import numpy as np

from ..errors import ArgumentError, EndOfDataStop
from .flags import FlagStore
from .protocols import RingSide, SpanView

U64_MAX = (1 << 64) - 1


def header_bytes(header: Any) -> bytes:
    """The header blob: bytes as given, str encoded (UTF-8), dict/list as JSON, arrays by content."""
    if header is None:
        return b""
    if isinstance(header, str):
        return header.encode("utf-8")
    if isinstance(header, (bytes, bytearray, memoryview)):
        return bytes(header)
    if isinstance(header, np.ndarray):
        return np.ascontiguousarray(header).tobytes()
    if isinstance(header, (dict, list)):
        return json.dumps(header).encode("utf-8")
    raise ArgumentError(f"header must be str, bytes, a dict (JSON) or a NumPy array; got {type(header).__name__}")


def check_time_tag(time_tag: Any) -> int:
    if isinstance(time_tag, (int, np.integer)) and not isinstance(time_tag, bool):
        t = int(time_tag)
        if t == U64_MAX:
            return -1
        if -1 <= t < U64_MAX:
            return t
    raise ArgumentError(f"time_tag must be an integer in [0, 2**64-1) or -1 (none); got {time_tag!r}")


class _Sequence:
    """The ring's record of one sequence.  ``end`` is None while it is being written."""

    __slots__ = ("name", "time_tag", "header", "nringlet", "begin", "end", "next", "flags", "_json")

    def __init__(self, name: str, time_tag: int, header: bytes, nringlet: int, begin: int) -> None:
        self.name = name
        self.time_tag = time_tag
        arr = np.frombuffer(header, dtype=np.uint8) if header else np.zeros(0, dtype=np.uint8)
        arr.flags.writeable = False
        self.header = arr
        self.nringlet = nringlet
        self.begin = begin
        self.end: Optional[int] = None
        self.next: Optional[_Sequence] = None
        self.flags: Optional[FlagStore] = None
        self._json: Any = None

    def header_json(self) -> Optional[Any]:
        if self._json is None:
            try:
                self._json = (json.loads(self.header.tobytes()),)
            except (ValueError, UnicodeDecodeError):
                self._json = (None,)
        return self._json[0]


class _SequenceInfo:
    """Read-only properties shared by write and read handles."""

    _seq: _Sequence

    @property
    def name(self) -> str:
        return self._seq.name

    @property
    def time_tag(self) -> int:
        """The sequence's time tag; -1 when it has none."""
        return self._seq.time_tag

    @property
    def nringlet(self) -> int:
        return self._seq.nringlet

    @property
    def header(self) -> np.ndarray:
        """Header blob as a read-only uint8 array (empty if none)."""
        return self._seq.header

    @property
    def header_size(self) -> int:
        return self._seq.header.size

    @property
    def header_json(self) -> Optional[Any]:
        """The header parsed as JSON, or None if it is not JSON."""
        return self._seq.header_json()

    @property
    def size(self) -> Optional[int]:
        """Bytes in the sequence (per ringlet) once it has ended, else None."""
        end = self._seq.end
        return None if end is None else end - self._seq.begin


class WriteSequence(_SequenceInfo):
    """The sequence being written.  ``end()`` (or leaving the ``with`` block) finishes it."""

    def __init__(self, ring: RingSide, seq: _Sequence) -> None:
        self._ring = ring
        self._seq = seq

    @property
    def ring(self) -> RingSide:
        return self._ring

    def reserve(self, size: int, nonblocking: bool = False) -> SpanView:
        """Reserve the next ``size`` bytes (<= the ring's contiguous span).

        Blocks while a guaranteed reader still needs the memory (or raises WouldBlock when
        ``nonblocking``).
        """
        return self._ring._reserve(self._seq, size, nonblocking)

    def commit_then_reserve(self, span: SpanView, flags: np.ndarray, frame_nbyte: int,
                            size: int) -> SpanView:
        """Commit all of ``span`` (reserved from this sequence) with ``flags`` handed over
        (``WriteSpan.hand_over_flags``: the array is the ring's from now on), then reserve
        the next ``size`` bytes: a capture's step once per gulp, in one call."""
        return self._ring._commit_then_reserve(span, flags, frame_nbyte, size)

    def end(self) -> None:
        """Finish the sequence at the data committed so far (idempotent)."""
        self._ring._end_sequence(self._seq)

    def __enter__(self) -> "WriteSequence":
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()

    def __repr__(self) -> str:
        return f"<WriteSequence name={self.name!r} time_tag={self.time_tag}>"


class ReadSequence(_SequenceInfo):
    """A reader's position in the ring: one sequence at a time, advanced by ``increment()``.

    With ``guarantee`` the reader pins the oldest byte it may still read, which holds the
    writer back (back-pressure); without it the reader can be overrun and every span says
    how many of its bytes were lost (``ReadSpan.size_overwritten``).
    """

    def __init__(self, ring: RingSide, seq: _Sequence, guarantee: bool, key: int) -> None:
        self._ring = ring
        self._seq = seq
        self._guarantee = guarantee
        self._key = key
        self._closed = False

    @property
    def ring(self) -> RingSide:
        return self._ring

    @property
    def guarantee(self) -> bool:
        return self._guarantee

    def acquire(self, offset: int, size: int) -> SpanView:
        """Span of ``size`` bytes at ``offset`` from the sequence start.

        Blocks until those bytes are committed or the sequence ends (then the span is cut at
        the end).  Raises EndOfDataStop if the sequence ended at or before ``offset``.
        """
        if self._closed:
            raise ArgumentError("acquire: this ReadSequence is closed")
        return self._ring._acquire(self, offset, size)

    def read(self, span_size: int, stride: Optional[int] = None, begin: int = 0) -> Iterator[SpanView]:
        """Spans at ``begin, begin+stride, ...`` until the sequence ends (the last may be shorter).

        Each span is released when the consumer asks for the next one.
        """
        ring = self._ring
        span_size = ring._check_span_size("span_size", span_size)
        stride = span_size if stride is None else stride
        if not isinstance(stride, (int, np.integer)) or stride <= 0:
            raise ArgumentError(f"stride must be a positive integer; got {stride!r}")
        if not isinstance(begin, (int, np.integer)) or begin < 0:
            raise ArgumentError(f"begin must be a non-negative integer; got {begin!r}")
        offset = int(begin)
        stride = int(stride)
        prev = None
        try:
            while True:
                if self._closed:
                    raise ArgumentError("acquire: this ReadSequence is closed")
                try:
                    # the span handed out before is given back inside the same call
                    prev = ring._acquire(self, offset, span_size, release=prev, iterated=True)
                except EndOfDataStop:
                    break
                yield prev
                offset += stride
        finally:
            if prev is not None:
                prev.release()          # (a no-op once the ring has taken it back)
        # Done with this sequence: let the writer reuse all of it.
        if self._guarantee and not self._closed:
            ring._move_pin(self, self._seq.end if self._seq.end is not None else self._seq.begin + offset)

    def increment(self) -> None:
        """Move to the next sequence, waiting for the writer to begin one.

        Raises EndOfDataStop once writing has ended and there is no next sequence.
        """
        if self._closed:
            raise ArgumentError("increment: this ReadSequence is closed")
        self._ring._next_sequence(self)

    def close(self) -> None:
        """Drop the guarantee (if any); the handle can no longer read."""
        if not self._closed:
            self._closed = True
            self._ring._drop_pin(self._key)

    def __enter__(self) -> "ReadSequence":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # No lock here: __del__ can run inside a locked section of the same thread.
        if not getattr(self, "_closed", True):
            self._closed = True
            try:
                self._ring._graveyard.append(("pin", self._key))
            except Exception:
                pass

    def __repr__(self) -> str:
        return f"<ReadSequence name={self.name!r} time_tag={self.time_tag} guarantee={self._guarantee}>"
