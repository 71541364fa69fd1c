"""The ring buffer: one writer, any number of readers, thread-safe, zero-copy.

Positions are absolute byte offsets that only grow (``head``: end of committed data,
``reserve_head``: end of reserved data, ``tail``: oldest byte not yet reused).  Offset
``x`` lives at buffer position ``x % capacity``.  The buffer is ``capacity + ghost`` bytes
long per ringlet: the ghost continues the buffer past its end, so that any span of up to
``ghost`` (= the contiguous span) bytes is one contiguous view.  Only spans that cross the
end use it, so it is filled only for them: a writer's span that wrapped wrote its overhang
into the ghost and its commit copies that to the start; a reader's span that crosses the end
has the start copied into the ghost when it is acquired (once per pass: ``_ghost_base`` and
``_ghost_valid`` say which bytes the ghost holds).  A stream whose spans divide the capacity
therefore never copies anything.

Back-pressure: a guaranteed reader "pins" the oldest offset it may still read; a
reservation waits until ``reserve_end - capacity <= min(pins)``.  Unguaranteed readers are
not waited for; ``tail = max(reserve_head - capacity)`` is raised *before* the writer
touches memory, so a reader that reads data and then compares its span with ``tail``
(``ReadSpan.size_overwritten``) knows exactly which bytes may have been clobbered.

Writing: spans are reserved back to back and published in reservation order.  The most
recent reservation may commit less (or 0 = cancel) and gives the rest back; an older span
that commits less leaves a hole, zero-filled if later data of its sequence is published.
A sequence begins at the reserve head (= the head when nothing is reserved), so bytes still
reserved for the previous sequence never show up in the next one.
"""
from __future__ import annotations

import itertools
import re
import threading
import time
import uuid
from _thread import allocate_lock as _allocate_lock
from collections import deque
from typing import Any, Iterator, Optional

import numpy as np

from ..errors import ArgumentError, EndOfDataStop, WouldBlock
from . import memory
from .flags import FlagStore
from .sequence import ReadSequence, WriteSequence, _Sequence, check_time_tag, header_bytes
from .span import AcquiredSpan, ReadSpan, WriteSpan

PAGE = memory.PAGE
_NAME_BAD = re.compile(r"[^-_.() A-Za-z0-9]")
_WHENCE = ("earliest", "latest")
# Safety net for waits: a guarantee or span dropped by the garbage collector (which cannot
# take the lock) is noticed within this many seconds even if nobody notifies.
_POLL = 0.25


def _wake_all(waiters: list[Any]) -> None:
    """Release every waiting thread's lock (the ring's lock held)."""
    for w in waiters:
        w.release()
    waiters.clear()


def is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _pow2_at_least(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def resize_request(contiguous_bytes: Any, total_bytes: Any, nringlet: Any,
                    buffer_factor: Any) -> tuple[int, int, int]:
    """Check :meth:`Ring.resize`'s arguments -> (contiguous span rounded up to whole pages,
    total bytes asked for, nringlet)."""
    if not is_int(contiguous_bytes) or contiguous_bytes < 0:
        raise ArgumentError(f"contiguous_bytes must be a non-negative integer; got {contiguous_bytes!r}")
    if not is_int(buffer_factor) or buffer_factor < 1:
        raise ArgumentError(f"buffer_factor must be an integer >= 1; got {buffer_factor!r}")
    if total_bytes is None:
        total_bytes = int(contiguous_bytes) * int(buffer_factor)
    elif not is_int(total_bytes) or total_bytes < 0:
        raise ArgumentError(f"total_bytes must be a non-negative integer or None; got {total_bytes!r}")
    if not is_int(nringlet) or nringlet < 1:
        raise ArgumentError(f"nringlet must be an integer >= 1; got {nringlet!r}")
    return -(-int(contiguous_bytes) // PAGE) * PAGE, int(total_bytes), int(nringlet)


class RingWriter:
    """Returned by ``Ring.begin_writing()``; leaving the ``with`` block ends writing."""

    def __init__(self, ring: "Ring") -> None:
        self._ring = ring

    @property
    def ring(self) -> "Ring":
        return self._ring

    def begin_sequence(self, name: str = "", time_tag: int = -1, header: Any = "",
                       nringlet: int = 1) -> WriteSequence:
        """Start a sequence at the current head (the previous one must have ended)."""
        return self._ring._begin_sequence(name, time_tag, header, nringlet)

    def end_writing(self) -> None:
        self._ring.end_writing()

    def __enter__(self) -> "RingWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self._ring.end_writing()


class Ring:
    """A circular byte buffer carrying sequences (Bifrost's ``bifrost.ring.Ring``)."""

    # Forget sequences whose data has left as each reservation moves the tail?  Not here:
    # the next begin_sequence or open, which look sequences up, forget them first (one
    # call fewer per span).  A shared ring does, for the monitors that list its table.
    _forget_on_reserve = False

    def __new__(cls, space: str = "system", name: Optional[str] = None, core: Optional[int] = None) -> "Ring":
        if cls is Ring and space in ("shm", b"shm"):
            from .shm import SharedRing      # a ring shared between processes
            return super().__new__(SharedRing)
        return super().__new__(cls)

    def __init__(self, space: str = "system", name: Optional[str] = None, core: Optional[int] = None) -> None:
        self._space = memory.check_space(space)
        # device memory: a writer's queued GPU work into a span is waited for at commit
        self._device = self._space == "cuda"
        if name is None:
            name = str(uuid.uuid4())
        elif isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        elif not isinstance(name, str):
            raise ArgumentError(f"name must be a str or None; got {type(name).__name__}")
        self._name = _NAME_BAD.sub("_", name)
        if core is not None and not (is_int(core) and core >= -1):
            raise ArgumentError(f"core must be None or an integer >= -1; got {core!r}")
        self._core = None if core is None else int(core)

        self._lock = threading.Lock()
        # Threads waiting under self._lock, each on a lock of its own that a wake releases:
        # readers for commits, sequences and the end; the writer and resize for pins, order
        # and spans.  (threading.Condition does the same in several Python calls per wait and
        # per wake: a reader caught up with its writer waits once per span.)
        self._data_waiters: list[Any] = []
        self._space_waiters: list[Any] = []
        self._nringlet = 1
        self._capacity = 0
        self._ghost = 0
        # the ghost holds absolute offsets [_ghost_base, _ghost_base + _ghost_valid)
        # (_ghost_base a multiple of the capacity; -1: nothing)
        self._ghost_base = -1
        self._ghost_valid = 0
        self._buf = memory.allocate(self._space, 1, 0, self._core)
        self._rbuf = self._readonly(self._buf)
        self._head = 0
        self._reserve_head = 0
        self._tail = 0
        self._pending: deque[WriteSpan] = deque()
        self._holes: list[tuple[int, int, _Sequence]] = []   # uncommitted tails of older spans
        self._open_spans = 0
        self._resizing = False
        self._pins: dict[int, int] = {}
        self._keys = itertools.count(1)
        self._graveyard: list[tuple[str, int]] = []
        self._sequences: deque[_Sequence] = deque()
        self._by_name: dict[str, _Sequence] = {}
        self._by_time: dict[int, _Sequence] = {}
        self._last: Optional[_Sequence] = None
        self._open_seq: Optional[_Sequence] = None
        self._writing_begun = False
        self._writing_ended = False
        self._blocked = 0.0

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        return self._name

    @property
    def space(self) -> str:
        return self._space

    @property
    def core(self) -> Optional[int]:
        return self._core

    @property
    def nringlet(self) -> int:
        return self._nringlet

    @property
    def total_span(self) -> int:
        """Capacity in bytes (per ringlet): a power of two, or 0 before the first resize."""
        return self._capacity

    @property
    def contiguous_span(self) -> int:
        """Largest span (bytes) that can be reserved or acquired in one piece."""
        return self._ghost

    @property
    def guaranteed_readers(self) -> int:
        """Guaranteed readers holding the writer back, including those still waiting for the
        first sequence (a test or a pipeline can wait for this before starting a writer)."""
        with self._lock:
            return len(self._pins)

    @property
    def fill(self) -> float:
        """How full the ring is for the writer, 0..1: bytes reserved beyond the oldest byte
        a guaranteed reader still holds, over the capacity (0 with no guaranteed reader).
        1 means the next reservation waits (back-pressure)."""
        with self._lock:
            if not self._pins or self._capacity <= 0:
                return 0.0
            held = self._reserve_head - min(self._pins.values())
            return max(0.0, min(1.0, held / self._capacity))

    @property
    def writer_blocked_seconds(self) -> float:
        """Total time ``reserve`` spent waiting for guaranteed readers (back-pressure)."""
        return self._blocked

    def __repr__(self) -> str:
        return (f"<Ring name={self._name!r} space={self._space!r} total_span={self._capacity} "
                f"contiguous_span={self._ghost} nringlet={self._nringlet}>")

    def close(self) -> None:
        """Nothing to release for an in-process ring (a shared ring detaches here)."""

    # ------------------------------------------------------------------ internals
    # Wait/wake helpers (lock held).  Waits are timed only as a safety net (see _POLL).
    def _wait_on(self, waiters: list[Any]) -> None:
        """Release the lock until a wake of ``waiters`` (or _POLL seconds), then retake it."""
        me = _allocate_lock()
        me.acquire()
        waiters.append(me)
        self._lock.release()
        woken = False
        try:
            woken = me.acquire(True, _POLL)
        finally:
            self._lock.acquire()
            if not woken:
                try:
                    waiters.remove(me)
                except ValueError:
                    pass                # woken between the timeout and retaking the lock

    def _wait_space(self) -> None:
        self._wait_on(self._space_waiters)

    def _wait_data(self) -> None:
        self._wait_on(self._data_waiters)

    def _wake_space(self) -> None:
        if self._space_waiters:
            _wake_all(self._space_waiters)

    def _wake_data(self) -> None:
        if self._data_waiters:
            _wake_all(self._data_waiters)

    def _wake_everyone(self) -> None:
        """_wake_data and _wake_space in one call (a publish does both, once per span)."""
        if self._data_waiters:
            _wake_all(self._data_waiters)
        if self._space_waiters:
            _wake_all(self._space_waiters)

    def _bury(self) -> None:
        """Apply guarantees/spans dropped by the garbage collector (lock held)."""
        while self._graveyard:
            kind, key = self._graveyard.pop()
            if kind == "pin":
                self._pins.pop(key, None)
            else:
                self._open_spans -= 1
            self._wake_space()

    def _min_pin(self) -> Optional[int]:
        if self._graveyard:
            self._bury()
        return min(self._pins.values()) if self._pins else None

    def _drop_old(self) -> None:
        """Forget ended sequences whose data has left the ring (lock held)."""
        seqs, tail = self._sequences, self._tail
        while seqs:
            s = seqs[0]
            if s.end is None or not (tail > s.end or (tail >= s.end > s.begin)):
                break
            seqs.popleft()
            if s.name and self._by_name.get(s.name) is s:
                del self._by_name[s.name]
            if s.time_tag != -1 and self._by_time.get(s.time_tag) is s:
                del self._by_time[s.time_tag]

    def _check_span_size(self, what: str, size: Any) -> int:
        if not (type(size) is int or is_int(size)) or size < 0 or size > self._ghost:
            raise ArgumentError(f"{what} must be an integer in [0, contiguous span {self._ghost}] "
                                f"(Ring.resize sets the contiguous span); got {size!r}")
        return int(size)

    # ------------------------------------------------------------------ resize
    def _grown_layout(self, ghost: int, total_bytes: int, nringlet: int) -> tuple[int, int, int]:
        """(ghost, capacity, nringlet) after growing to hold a request (never shrinks)."""
        new_ghost = max(self._ghost, ghost)
        return (new_ghost, max(self._capacity, _pow2_at_least(max(total_bytes, PAGE, new_ghost))),
                max(self._nringlet, nringlet))

    def _readable(self, seq: Any, start: int, offset: int, size: int) -> Optional[int]:
        """The size a read span at ``start`` can have now (clipped at the sequence's end), or
        None while its bytes are not written yet."""
        end = seq.end
        if end is not None:
            if start >= end:
                raise EndOfDataStop(f"offset {offset} is at or past the end of the sequence "
                                    f"({end - seq.begin} bytes)")
            return min(size, end - start)
        return size if self._head >= start + size else None

    def resize(self, contiguous_bytes: int, total_bytes: Optional[int] = None, nringlet: int = 1,
               buffer_factor: int = 4) -> None:
        """Grow the ring (never shrinks); existing data is kept.  Waits until no span is open.

        Capacity = ``total_bytes`` (default ``contiguous_bytes * buffer_factor``) rounded up to a
        power of two >= 4096; the contiguous span is rounded up to a multiple of 4096.
        """
        ghost, total_bytes, nringlet = resize_request(contiguous_bytes, total_bytes, nringlet,
                                                       buffer_factor)
        with self._lock:
            while self._resizing:
                self._wait_space()
            new_ghost, new_cap, new_nr = self._grown_layout(ghost, total_bytes, nringlet)
            if (new_ghost, new_cap, new_nr) == (self._ghost, self._capacity, self._nringlet):
                return
            me = threading.get_ident()
            if self._pending and all(p._owner == me for p in self._pending):
                raise ArgumentError("resize: this thread has reserved spans that are not committed; "
                                    "commit them first (resize waits until no span is open)")
            self._resizing = True
            try:
                while True:
                    if self._graveyard:
                        self._bury()
                    if self._open_spans <= 0:
                        break
                    self._wait_space()
                self._regrow(new_ghost, new_cap, new_nr)
            finally:
                self._resizing = False
                self._wake_everyone()

    def _regrow(self, ghost: int, cap: int, nringlet: int) -> None:
        """Copy the live bytes into a bigger buffer (lock held, no span open)."""
        old, old_cap = self._buf, self._capacity
        new = memory.allocate(self._space, nringlet, cap + ghost, self._core)
        hi = self._head
        lo = max(self._tail, hi - old_cap, 0)
        nr = old.shape[0]
        pos = lo
        while pos < hi:
            ob, nb = pos % old_cap, pos % cap
            n = min(hi - pos, old_cap - ob, cap - nb)
            new[:nr, nb:nb + n] = old[:, ob:ob + n]
            pos += n
        self._buf, self._capacity, self._ghost, self._nringlet = new, cap, ghost, nringlet
        self._ghost_base, self._ghost_valid = -1, 0     # readers refill it when they need it
        self._rbuf = self._readonly(new)

    @staticmethod
    def _readonly(buf: np.ndarray) -> np.ndarray:
        if not isinstance(buf, np.ndarray):
            return buf                  # a CuPy array has no read-only flag
        view = buf.view()
        view.flags.writeable = False
        return view

    # ------------------------------------------------------------------ writing
    def begin_writing(self) -> RingWriter:
        """Start the (single) writing session of this ring."""
        with self._lock:
            if self._writing_begun and not self._writing_ended:
                raise ArgumentError(f"begin_writing: ring {self._name!r} is being written already; "
                                    f"end that writer first (one writer at a time)")
            # Bifrost allows one writing session per ring lifetime; asbru lets a new writer
            # (say, a second capture) continue the ring once the previous one has ended.
            self._writing_begun = True
            self._writing_ended = False
        return RingWriter(self)

    def end_writing(self) -> None:
        """End writing (ends an open sequence); wakes every waiting reader."""
        with self._lock:
            self._writing_ended = True
            if self._open_seq is not None:
                self._end_locked(self._open_seq)
            self._wake_everyone()

    def writing_ended(self) -> bool:
        return self._writing_ended

    def _begin_sequence(self, name: Any, time_tag: Any, header: Any, nringlet: Any) -> WriteSequence:
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        if not isinstance(name, str):
            raise ArgumentError(f"name must be a str; got {type(name).__name__}")
        tt = check_time_tag(time_tag)
        hdr = header_bytes(header)
        if not is_int(nringlet) or nringlet < 1:
            raise ArgumentError(f"nringlet must be an integer >= 1; got {nringlet!r}")
        with self._lock:
            if self._writing_ended:
                raise ArgumentError("begin_sequence: writing to this ring has ended")
            if self._open_seq is not None:
                raise ArgumentError("begin_sequence: the previous sequence must be ended first")
            if nringlet > self._nringlet:
                raise ArgumentError(f"nringlet must be <= the ring's nringlet {self._nringlet} "
                                    f"(Ring.resize sets it); got {nringlet}")
            self._drop_old()
            if name and name in self._by_name:
                raise ArgumentError(f"begin_sequence: name {name!r} is already used by a sequence still in the ring")
            # a repeated time tag is allowed (Bifrost refused it): open_sequence_at() then
            # finds the newest sequence with that tag
            # = the head when nothing is reserved; bytes still reserved for the previous
            # sequence stay outside this one.
            seq = _Sequence(name, tt, hdr, int(nringlet), self._reserve_head)
            if self._last is not None:
                self._last.next = seq
            self._last = seq
            self._sequences.append(seq)
            if name:
                self._by_name[name] = seq
            if tt != -1:
                self._by_time[tt] = seq
            self._open_seq = seq
            self._wake_data()
        return WriteSequence(self, seq)

    def _end_locked(self, seq: _Sequence) -> None:
        if seq.end is None:
            seq.end = max(self._head, seq.begin)
        if self._open_seq is seq:
            self._open_seq = None
        self._wake_data()

    def _end_sequence(self, seq: _Sequence) -> None:
        with self._lock:
            self._end_locked(seq)

    def _reserve(self, seq: _Sequence, size: Any, nonblocking: bool) -> WriteSpan:
        if not (type(size) is int or is_int(size)) or size < 0 or size > self._ghost:
            raise ArgumentError(f"reserve: size must be an integer in [0, contiguous span {self._ghost}] "
                                f"(Ring.resize sets the contiguous span); got {size!r}")
        size = int(size)
        if not self._capacity:
            raise ArgumentError("reserve: the ring has no memory yet; call Ring.resize first")
        with self._lock:
            if seq is not self._open_seq:
                raise ArgumentError("reserve: this sequence has ended")
            span = self._reserve_now(seq, size)
            if span is None:
                if nonblocking:
                    raise WouldBlock("reserve: a guaranteed reader still holds the space (nonblocking=True)")
                t0 = time.perf_counter()
                while span is None:
                    self._wait_space()
                    span = self._reserve_now(seq, size)
                self._blocked += time.perf_counter() - t0
        return span

    def _reserve_now(self, seq: _Sequence, size: int) -> Optional[WriteSpan]:
        """Reserve ``size`` bytes (checked) of the open sequence ``seq``, or None when that
        must wait: a resize is under way or a guaranteed reader still holds the space (lock
        held)."""
        if self._resizing:
            return None
        begin = self._reserve_head
        end = begin + size
        floor = end - self._capacity
        pin = self._min_pin()
        if pin is not None and floor > pin:
            return None
        self._reserve_head = end
        if floor > self._tail:
            self._tail = floor          # published before the writer touches the memory
            if self._forget_on_reserve:
                self._drop_old()
        self._open_spans += 1
        bufpos = begin % self._capacity
        if bufpos + size > self._capacity:
            self._ghost_base, self._ghost_valid = -1, 0   # this span writes the ghost
        span = WriteSpan(self, seq, self._buf, bufpos, begin, size)
        self._pending.append(span)
        return span

    def _commit_then_reserve(self, span: WriteSpan, flags: np.ndarray, frame_nbyte: int,
                             size: int) -> WriteSpan:
        """Commit all of ``span`` with ``flags`` handed over (as ``hand_over_flags`` does),
        then reserve ``size`` bytes more of its sequence and return that span: what a capture
        does once per gulp, here under one hold of the lock.

        Why one call: a capture's Python between two gulps runs from caches its drain has
        just flushed (it is several times dearer on a many-core host than here), and each
        call of the separate route (hand over, commit, close, reserve: a dozen functions)
        is paid at that price.  Anything out of the common case (device memory, holes left
        by a partial commit, a commit size set on the span, a sequence that ended, a resize,
        a reader holding the space) takes the separate calls, which wait where needed."""
        seq = span._seq
        nbyte = span._size
        store = seq.flags
        if (self._device or self._holes or not span._open or span._commit_size != nbyte
                or type(size) is not int or not 0 <= size <= self._ghost
                or (store is not None and (store.frame_nbyte != frame_nbyte
                                           or store.ncol != flags.shape[1]))):
            return self._commit_then_reserve_in_turn(span, flags, frame_nbyte, size)
        span._open = False
        span._flags, span._frame_nbyte = flags, frame_nbyte
        if span._bufpos + nbyte > self._capacity:
            self._mirror(span, nbyte)       # still reserved (invisible to readers): no lock
        with self._lock:
            while self._pending[0] is not span:
                self._wait_space()
            self._publish(span, nbyte)
            if seq is self._open_seq:
                new = self._reserve_now(seq, size)
                if new is not None:
                    return new
        return self._reserve(seq, size, False)

    def _commit_then_reserve_in_turn(self, span: WriteSpan, flags: np.ndarray, frame_nbyte: int,
                                     size: int) -> WriteSpan:
        """:meth:`_commit_then_reserve` by the separate calls (every ring kind has them)."""
        span.hand_over_flags(flags, frame_nbyte)
        span.close()
        return self._reserve(span._seq, size, False)

    def _mirror(self, span: WriteSpan, nbyte: int) -> None:
        """A span that wrapped wrote its overhang into the ghost: copy it to the start."""
        buf, cap = span._buf, self._capacity
        e = span._bufpos + nbyte
        if nbyte > 0 and e > cap:
            buf[:, :e - cap] = buf[:, cap:e]

    def _fill_ghost(self, start: int, bufpos: int, size: int) -> None:
        """A read span [start, start + size) at ``bufpos`` crosses the end: make the ghost
        hold the bytes it needs from the start of the buffer (lock held)."""
        cap = self._capacity
        need = bufpos + size - cap
        base = start - bufpos + cap
        if self._ghost_base == base and self._ghost_valid >= need:
            return
        if self._reserve_head > base + cap:
            # the writer has reserved the start of the buffer for its next pass (a span of it
            # that crosses the end writes the ghost's first bytes): what it reserved is lost
            # to the reader (below the tail: size_overwritten says so), the rest is still at
            # the start of the buffer and must be in the ghost too -- the reader is told it
            # is intact.  The ghost is left marked as not holding this pass.
            lo = self._reserve_head - base - cap
            if lo < need:
                self._buf[:, cap + lo:cap + need] = self._buf[:, lo:need]
                if self._device:
                    from .gpu import sync_current_stream
                    sync_current_stream()
            return
        lo = self._ghost_valid if self._ghost_base == base else 0
        self._buf[:, cap + lo:cap + need] = self._buf[:, lo:need]
        if self._device:
            from .gpu import sync_current_stream
            sync_current_stream()
        self._ghost_base, self._ghost_valid = base, need

    def _zero(self, lo: int, hi: int) -> None:
        """Zero absolute offsets [lo, hi) (still reserved, so no reader sees this), and the
        ghost's copy of them if it holds one."""
        buf, cap = self._buf, self._capacity
        while lo < hi:
            pos = lo % cap
            n = min(hi - lo, cap - pos)
            buf[:, pos:pos + n] = 0
            if self._ghost_base == lo - pos and pos < self._ghost_valid:
                buf[:, cap + pos:cap + min(pos + n, self._ghost_valid)] = 0
            lo += n

    def _check_order(self, span: WriteSpan, nbyte: int) -> None:
        """Refuse a commit that would wait forever on this thread's own earlier spans."""
        with self._lock:
            if nbyte == 0 and self._pending[-1] is span:
                return                      # cancelling the latest span does not wait
            me = threading.get_ident()
            earlier = list(itertools.takewhile(lambda p: p is not span, self._pending))
            if earlier and all(p._owner == me for p in earlier):
                span._open = True           # still reserved: it can be closed again later
                raise ArgumentError(f"commit: the span at offset {earlier[0]._abs} was reserved earlier by "
                                    f"this thread and is not committed; commit spans in reservation order")

    def _commit(self, span: WriteSpan) -> None:
        nbyte = span._commit_size
        if self._device:
            from .gpu import sync_current_stream
            sync_current_stream()       # the span's bytes are on the GPU before readers see them
        if self._pending[0] is not span:
            self._check_order(span, nbyte)
        if nbyte == span._size:
            # The memory is still reserved (invisible to readers): mirror without the lock.
            if span._bufpos + nbyte > self._capacity:
                self._mirror(span, nbyte)
            with self._lock:
                while self._pending[0] is not span:
                    self._wait_space()
                self._publish(span, nbyte)
            return
        with self._lock:
            if self._pending[-1] is span:
                # The most recent reservation: give the unused tail back right away (unless its
                # sequence has ended and a new one may already start at the reserve head).
                if span._seq is self._open_seq:
                    self._reserve_head = span._abs + nbyte
                if nbyte == 0:
                    self._pending.pop()
                    self._open_spans -= 1
                    self._wake_space()
                    return
            else:
                # An older span commits less while later ones are still reserved (a capture
                # ending mid-gulp): the rest becomes a hole.  If the sequence ends before a
                # later span commits data, the hole is simply outside it; otherwise the hole is
                # zero-filled when that data is published (see _publish).
                self._holes.append((span._abs + nbyte, span._abs + span._size, span._seq))
            while self._pending[0] is not span:
                self._wait_space()
        self._mirror(span, nbyte)
        with self._lock:
            self._publish(span, nbyte)

    def _publish(self, span: WriteSpan, nbyte: int) -> None:
        """Make ``nbyte`` bytes of the oldest pending span visible (lock held)."""
        self._pending.popleft()
        if self._holes and nbyte > 0:
            for lo, hi, seq in self._holes:
                if seq is span._seq and hi <= span._abs:
                    self._zero(lo, hi)
            self._holes = [h for h in self._holes if h[1] > span._abs]
        if span._flags is not None and nbyte > 0:
            # before the head moves: a shared ring's writer killed in between never leaves
            # published bytes without their flags
            self._store_flags(span, nbyte)
        self._head = span._abs + nbyte
        self._open_spans -= 1
        over = span._bufpos + nbyte - self._capacity
        if over > 0:                     # the ghost holds this span's overhang
            self._ghost_base, self._ghost_valid = span._abs - span._bufpos + self._capacity, over
        self._wake_everyone()

    def _store_flags(self, span: WriteSpan, nbyte: int) -> None:
        """Keep the flag rows of the frames a published span covers (lock held)."""
        seq, fn = span._seq, span._frame_nbyte
        store = seq.flags
        if store is None:
            store = seq.flags = FlagStore(fn, span._flags.shape[1])
        first = span._first_frame
        if first < 0:
            first = (span._abs - seq.begin) // fn
        nrow = -(-(span._abs - seq.begin + nbyte) // fn) - first
        rows = span._flags
        store.add(first, rows if nrow == len(rows) else rows[:nrow])
        if self._tail > seq.begin:
            store.prune((self._tail - seq.begin) // fn)

    # ------------------------------------------------------------------ reading
    def _pin_at(self, key: int, offset: int) -> None:
        """Set a guarantee (lock held); never below what may already be overwritten."""
        self._pins[key] = max(offset, self._tail)
        self._wake_space()

    def _open(self, which: str, guarantee: bool, arg: Any = None) -> ReadSequence:
        waiting_pin = None
        with self._lock:
            while True:
                self._drop_old()
                seqs = self._sequences
                if which == "name":
                    seq = self._by_name.get(arg)
                    if seq is None:
                        raise ArgumentError(f"open_sequence: no sequence named {arg!r} is in the ring")
                    break
                if which == "at":
                    best = None
                    for s in seqs:
                        if s.time_tag != -1 and s.time_tag <= arg and (best is None or s.time_tag >= best.time_tag):
                            best = s
                    if best is None:
                        tags = [s.time_tag for s in seqs if s.time_tag != -1]
                        held = f"held: {min(tags)}..{max(tags)}" if tags else "none held"
                        raise ArgumentError(f"open_sequence_at: no sequence in the ring has time_tag <= {arg} ({held})")
                    seq = best
                    break
                if seqs:
                    seq = seqs[0] if which == "earliest" else seqs[-1]
                    break
                if self._writing_ended:
                    if waiting_pin is not None:
                        self._pins.pop(waiting_pin, None)
                        self._wake_space()
                    raise EndOfDataStop(f"ring {self._name!r}: writing has ended and no sequence is in the ring")
                if guarantee and waiting_pin is None:
                    # a guaranteed reader that waits for the first sequence already holds
                    # back the writer from where that sequence will begin, so a fast writer
                    # cannot overwrite it before the reader gets there
                    waiting_pin = next(self._keys)
                    self._pin_at(waiting_pin, self._reserve_head)
                self._wait_data()
            if waiting_pin is not None:
                self._pins.pop(waiting_pin, None)
            key = next(self._keys)
            if guarantee:
                self._pin_at(key, seq.begin)
            return ReadSequence(self, seq, bool(guarantee), key)

    def open_earliest_sequence(self, guarantee: bool = True) -> ReadSequence:
        """The oldest sequence still in the ring (waits for one; EndOfDataStop if writing ended)."""
        return self._open("earliest", guarantee)

    def open_latest_sequence(self, guarantee: bool = True) -> ReadSequence:
        """The newest sequence (waits for one; EndOfDataStop if writing ended)."""
        return self._open("latest", guarantee)

    def open_sequence_at(self, time_tag: int, guarantee: bool = True) -> ReadSequence:
        """The sequence with the largest time tag <= ``time_tag``."""
        if not is_int(time_tag) or time_tag < 0:
            raise ArgumentError(f"time_tag must be a non-negative integer; got {time_tag!r}")
        return self._open("at", guarantee, int(time_tag))

    def open_sequence(self, name: str, guarantee: bool = True) -> ReadSequence:
        """The sequence called ``name``."""
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return self._open("name", guarantee, name)

    def read(self, whence: str = "earliest", guarantee: bool = True) -> Iterator[ReadSequence]:
        """Yield one ReadSequence, advanced to each following sequence in turn.

        Finishes when writing has ended and no further sequence exists.
        """
        if whence not in _WHENCE:
            raise ArgumentError(f"whence must be one of {', '.join(map(repr, _WHENCE))}; got {whence!r}")
        try:
            rseq = self._open(whence, guarantee)
        except EndOfDataStop:
            return
        with rseq:
            while True:
                yield rseq
                try:
                    rseq.increment()
                except EndOfDataStop:
                    return

    def _next_sequence(self, rseq: ReadSequence) -> None:
        with self._lock:
            while rseq._seq.next is None:
                if self._writing_ended:
                    raise EndOfDataStop(f"ring {self._name!r}: writing has ended and there is no next sequence")
                self._wait_data()
            rseq._seq = seq = rseq._seq.next
            if rseq._guarantee:
                self._pin_at(rseq._key, seq.begin)

    def _move_pin(self, rseq: ReadSequence, offset: int) -> None:
        with self._lock:
            if rseq._key in self._pins:
                self._pin_at(rseq._key, offset)

    def _drop_pin(self, key: int) -> None:
        with self._lock:
            if self._pins.pop(key, None) is not None:
                self._wake_space()

    def _acquire(self, rseq: ReadSequence, offset: Any, size: Any, hold: bool = False,
                 release: Optional[ReadSpan] = None, iterated: bool = False) -> ReadSpan:
        """``hold``: leave the guarantee where it is (a reader with several spans in flight,
        such as ``asbru.ring.copy``, moves it itself with ``_move_pin``).  ``release``: a span
        of the reader's to give back first, under the same hold of the lock
        (``ReadSequence.read``: one lock round per span instead of two).  ``iterated``: the
        span is ``ReadSequence.read``'s, which gives it back itself (no finalizer needed).

        A reader caught up with its writer runs this once per span, and on a many-core host
        from caches the span copies have just flushed: the common case (a checked size, a
        span already committed) is written out here rather than through helper calls."""
        if type(size) is not int or not 0 <= size <= self._ghost:
            size = self._check_span_size("size", size)
        if type(offset) is not int or offset < 0:
            if not is_int(offset) or offset < 0:
                raise ArgumentError(f"offset must be a non-negative integer; got {offset!r}")
            offset = int(offset)
        with self._lock:
            if release is not None and release._open:       # _let_go, written out
                release._open = False
                self._open_spans -= 1
                if self._resizing:
                    self._wake_space()
            seq = rseq._seq
            start = seq.begin + offset
            pins = self._pins
            if rseq._guarantee and not hold and rseq._key in pins:   # _pin_at, written out
                pins[rseq._key] = start if start > self._tail else self._tail
                if self._space_waiters:
                    _wake_all(self._space_waiters)
            while True:
                if not self._resizing:
                    if seq.end is None and self._head >= start + size:
                        break
                    ready = self._readable(seq, start, offset, size)
                    if ready is not None:
                        size = ready
                        break
                self._wait_data()
            self._open_spans += 1
            bufpos = start % self._capacity if self._capacity else 0
            if bufpos + size > self._capacity:
                self._fill_ghost(start, bufpos, size)
            return (ReadSpan if iterated else AcquiredSpan)(rseq, seq, self._rbuf, bufpos, start,
                                                            size, offset)

    def _release_span(self) -> None:
        with self._lock:
            self._one_span_fewer()

    def _let_go(self, span: ReadSpan) -> None:
        """Give back a read span that is still open (lock held): ``ReadSpan.release``'s
        work, for a caller that holds the lock already."""
        if span._open:
            span._open = False
            self._one_span_fewer()

    def _one_span_fewer(self) -> None:
        """A span was given back (lock held): a resize waits for every open span."""
        self._open_spans -= 1
        if self._resizing:
            self._wake_space()

    def _flag_layout(self, seq: _Sequence) -> Optional[tuple[int, int]]:
        """(frame_nbyte, columns) of a sequence's flags, or None while it has none."""
        store = seq.flags
        return None if store is None else (store.frame_nbyte, store.ncol)

    def _flags_for(self, seq: _Sequence, offset: int, size: int) -> Optional[np.ndarray]:
        with self._lock:
            store = seq.flags
            if store is None or size <= 0:
                return None
            fn = store.frame_nbyte
            return store.rows(offset // fn, -(-(offset + size) // fn))
