"""Rings shared between processes: ``Ring(space='shm', name='cap0')``.

The first process that names a ring creates ``/dev/shm/asbru-ring.<name>``; every later one
attaches to it.  One process writes (a capture, say); any process reads, with Bifrost's
guaranteed / unguaranteed semantics, sequences, headers, time tags, per-frame flags and
overwrite reporting exactly as in one process: :class:`SharedRing` is :class:`Ring` with its
state moved into the shared file, and the ring's own algorithms (reserve, commit, publish,
ghost region) run unchanged on it.  Reader spans are NumPy views of the shared mapping: no
copy.

The file holds, page-aligned, in this order:

* control words (int64): positions (head, reserve head, tail), geometry, the writer's
  identity, two futex words that waiting processes sleep on (one for "data published",
  one for "space freed");
* reader slots: one per open ReadSequence of any process (pid, start time, guarantee, pin,
  position, counters), so the writer honours guarantees of other processes and ``asbru
  top`` can show every reader;
* attach slots: one per Ring object of any process (who uses the ring);
* the sequence table (``NSEQ`` records: id, time tag, begin, end, name, flag layout) and
  each sequence's header (up to ``HEADER_MAX`` bytes);
* flag chunks (which frames of which sequence, where in the flag area) and the flag area;
* the data: ``nringlet`` rows of ``capacity + ghost`` bytes.

Mutual exclusion is a ``flock`` on the file (released by the kernel if its holder dies)
plus a thread lock.  Liveness: every slot records ``(pid, start time)``; a reader that
died is dropped (its guarantee released) when the writer would wait for it, and a writer
that died is noticed by a waiting reader, which ends the writing (``writer_died``) so every
reader finishes with the data that was committed.  The last Ring object to close (or the
last process to exit) removes the file; after a crash, ``asbru rings --remove-stale`` (or
:func:`remove_stale`) removes files whose users are all gone, and naming such a ring again
replaces it with a fresh one.
"""
from __future__ import annotations

import atexit
import errno
import fcntl
import mmap
import os
import re
import threading
import time
import weakref
from typing import Any, Iterator, Optional

import numpy as np

from ..errors import ArgumentError, AsbruError, EndOfDataStop
from . import ipc
from .ring import PAGE, Ring, is_int, resize_request
from .sequence import ReadSequence, WriteSequence, check_time_tag, header_bytes
from .span import AcquiredSpan, ReadSpan

SHM_DIR = "/dev/shm"
PREFIX = "asbru-ring."
MAGIC = 0x4153425255524E47          # "ASBRURNG"
VERSION = 1

NREADER = 64            # reader slots (open ReadSequences, all processes together)
NATTACH = 64            # attach slots (Ring objects, all processes together)
NSEQ = 256              # sequences the table holds at once
NAME_MAX = 255
HEADER_MAX = 16384      # bytes of header per sequence
NCHUNK = 4096           # flag chunks remembered

# control words
(C_MAGIC, C_VERSION, C_READY, C_CAPACITY, C_GHOST, C_NRINGLET, C_DATA_OFF, C_FILE_SIZE, C_HEAD,
 C_RESERVE_HEAD, C_TAIL, C_GHOST_BASE, C_GHOST_VALID, C_WRITER_PID, C_WRITER_START, C_BEGUN,
 C_ENDED, C_WRITER_DIED, C_NSEQ_TOTAL, C_OPEN_SEQ, C_DATA_GEN, C_SPACE_GEN, C_NWAIT_DATA,
 C_NWAIT_SPACE, C_FLAG_CAP, C_FLAG_HEAD, C_NCHUNK_TOTAL, C_CREATED, C_LAYOUT_GEN, C_SEQ_FIRST,
 C_FLAG_OFF, C_BLOCKED_NS) = range(32)
NCTL = 512

# reader slot fields
R_USED, R_PID, R_START, R_GUARANTEE, R_PIN, R_SEQ, R_POS, R_NSPAN, R_NBYTE, R_NOVER = range(10)
RFIELDS = 16
# attach slot fields
A_USED, A_PID, A_START = range(3)
AFIELDS = 4
# sequence record fields (int64), name bytes after them
S_ID, S_TIME_TAG, S_BEGIN, S_END, S_NRINGLET, S_HLEN, S_NLEN, S_FLAG_FN, S_FLAG_NCOL = range(9)
SREC = 512              # bytes per record: 128 of fields, then the name
SFIELDS = 16
# flag chunk fields
K_SEQ, K_FIRST, K_NFRAME, K_NCOL, K_FN, K_FLAG_ABS, K_ORDINAL = range(7)
KFIELDS = 8


def _page(n: int) -> int:
    return -(-n // PAGE) * PAGE


OFF_READERS = NCTL * 8
OFF_ATTACH = OFF_READERS + NREADER * RFIELDS * 8
OFF_SEQS = _page(OFF_ATTACH + NATTACH * AFIELDS * 8)
OFF_CHUNKS = _page(OFF_SEQS + NSEQ * SREC)
OFF_HEADERS = _page(OFF_CHUNKS + NCHUNK * KFIELDS * 8)
META = _page(OFF_HEADERS + NSEQ * HEADER_MAX)

_NAME_OK = re.compile(r"^[-_.A-Za-z0-9]{1,200}$")
_POLL = 0.1                  # futex timeout: dead peers are noticed within about this long
_LIVE: "weakref.WeakSet[SharedRing]" = weakref.WeakSet()


def path_of(name: str) -> str:
    return os.path.join(SHM_DIR, PREFIX + name)


def check_name(name: Any) -> str:
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if name is None:
        raise ArgumentError("space 'shm' needs a name shared by every process: Ring(space='shm', name='cap0')")
    if not isinstance(name, str) or not _NAME_OK.match(name):
        raise ArgumentError(f"a shared ring's name must be 1-200 characters of letters, digits, '-', '_' "
                            f"and '.'; got {name!r}")
    return name


class _ShmLock:
    """A thread lock plus an exclusive flock on the ring file: one holder across processes."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._thread = threading.Lock()

    def __enter__(self) -> "_ShmLock":
        self._thread.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread.release()


class _FlagLayout:
    """What ``WriteSpan.set_flags`` checks against: the sequence's frame size and columns."""

    __slots__ = ("frame_nbyte", "ncol")

    def __init__(self, frame_nbyte: int, ncol: int) -> None:
        self.frame_nbyte, self.ncol = frame_nbyte, ncol

    def check(self, frame_nbyte: int, ncol: int) -> None:
        if frame_nbyte != self.frame_nbyte or ncol != self.ncol:
            raise ArgumentError(
                f"set_flags: a sequence uses one frame_nbyte and one column count; this sequence has "
                f"frame_nbyte={self.frame_nbyte}, k={self.ncol}; got frame_nbyte={frame_nbyte}, k={ncol}")


class _SharedSeq:
    """A process's handle on one record of the shared sequence table.

    Immutable fields are copied at open; ``end`` and the flag layout are read from the table
    while the record still holds this sequence.  A record reused for a newer sequence means
    this one's data left the ring long ago: it then reads as ended where it began.
    """

    __slots__ = ("ring", "id", "name", "time_tag", "header", "nringlet", "begin", "_end", "_json")

    def __init__(self, ring: "SharedRing", sid: int) -> None:
        rec = ring._seqrec(sid)
        self.ring = ring
        self.id = sid
        self.time_tag = int(rec[S_TIME_TAG])
        self.begin = int(rec[S_BEGIN])
        self.nringlet = int(rec[S_NRINGLET])
        raw = ring._seqname(sid)
        self.name = raw.decode("utf-8", "replace")
        hlen = int(rec[S_HLEN])
        hoff = OFF_HEADERS + (sid % NSEQ) * HEADER_MAX
        header = np.array(ring._meta[hoff:hoff + hlen])
        header.flags.writeable = False
        self.header = header
        end = int(rec[S_END])
        self._end: Optional[int] = None if end < 0 else end
        self._json: Any = None

    def _live(self) -> Optional[np.ndarray]:
        rec = self.ring._seqrec(self.id)
        return rec if int(rec[S_ID]) == self.id else None

    @property
    def end(self) -> Optional[int]:
        if self._end is None:
            rec = self._live()
            if rec is None:
                self._end = self.begin
            else:
                e = int(rec[S_END])
                if e >= 0:
                    self._end = e
        return self._end

    @property
    def flags(self) -> Optional[_FlagLayout]:
        rec = self._live()
        if rec is None or int(rec[S_FLAG_FN]) <= 0:
            return None
        return _FlagLayout(int(rec[S_FLAG_FN]), int(rec[S_FLAG_NCOL]))

    @property
    def next(self) -> Optional["_SharedSeq"]:
        return None   # sequences are followed through the table (SharedRing._next_sequence)

    def header_json(self) -> Optional[Any]:
        if self._json is None:
            import json
            try:
                self._json = (json.loads(self.header.tobytes()),)
            except (ValueError, UnicodeDecodeError):
                self._json = (None,)
        return self._json[0]


class SharedRing(Ring):
    """A :class:`Ring` whose memory and state live in ``/dev/shm``, shared by processes."""

    _forget_on_reserve = True    # `asbru rings` lists the sequence table from outside

    def __init__(self, space: str = "shm", name: Optional[str] = None, core: Optional[int] = None) -> None:
        if isinstance(space, bytes):
            space = space.decode("ascii", "replace")
        if space != "shm":
            raise ArgumentError(f"SharedRing: space must be 'shm'; got {space!r}")
        self._space = "shm"
        self._device = False
        self._name = check_name(name)
        if core is not None and not (is_int(core) and core >= -1):
            raise ArgumentError(f"core must be None or an integer >= -1; got {core!r}")
        self._core = None if core is None else int(core)
        self._path = path_of(self._name)
        self._fd = -1
        self._closed = True
        self._fd, self.created = _open_or_create(self._path)
        self._closed = False
        self._lock = _ShmLock(self._fd)
        self._mm: Optional[mmap.mmap] = None
        self._layout_gen = -1
        with self._lock:                 # not while another process is resizing the ring
            self._map_meta()
        # the writer's (and every reader's) process-local state, as in Ring
        self._pending: Any = __import__("collections").deque()
        self._holes: list = []
        self._open_spans = 0
        self._resizing = False
        self._graveyard: list[tuple[str, int]] = []
        self._open_seq: Optional[_SharedSeq] = None
        self._writer_here = False
        self._blocked = 0.0
        self._waited = 0.0
        self._my_readers: set[int] = set()
        self._attach_slot = 0 if self.created else self._attach()
        _LIVE.add(self)

    # ------------------------------------------------------------------ mapping
    def _map_meta(self) -> None:
        size = os.fstat(self._fd).st_size
        # MAP_POPULATE: the page tables are filled now, not by faults inside a reader's or
        # the capture's loop
        self._mm = mmap.mmap(self._fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        raw = np.frombuffer(self._mm, dtype=np.uint8)
        self._meta = raw
        self._ctl = raw[:NCTL * 8].view(np.int64)
        self._readers = raw[OFF_READERS:OFF_ATTACH].view(np.int64).reshape(NREADER, RFIELDS)
        self._attached = raw[OFF_ATTACH:OFF_ATTACH + NATTACH * AFIELDS * 8].view(np.int64).reshape(NATTACH, AFIELDS)
        self._chunks = raw[OFF_CHUNKS:OFF_CHUNKS + NCHUNK * KFIELDS * 8].view(np.int64).reshape(NCHUNK, KFIELDS)
        base = raw.ctypes.data
        self._data_word = base + C_DATA_GEN * 8
        self._space_word = base + C_SPACE_GEN * 8
        self._layout_gen = int(self._ctl[C_LAYOUT_GEN])
        cap, ghost, nr = self._capacity, self._ghost, max(self._nringlet, 1)
        if cap and size >= int(self._ctl[C_FILE_SIZE]):
            off = int(self._ctl[C_DATA_OFF])
            self._buf = raw[off:off + nr * (cap + ghost)].reshape(nr, cap + ghost)
            foff, fcap = int(self._ctl[C_FLAG_OFF]), int(self._ctl[C_FLAG_CAP])
            self._flagmem = raw[foff:foff + fcap]
        else:
            if cap:
                self._layout_gen = -1    # mapped before the file grew: map again when used
            self._buf = np.zeros((1, 0), dtype=np.uint8)
            self._flagmem = np.zeros(0, dtype=np.uint8)
        self._rbuf = self._readonly(self._buf)

    def _sync_layout(self) -> None:
        """Remap if another process resized the ring (lock held)."""
        if int(self._ctl[C_LAYOUT_GEN]) != self._layout_gen:
            self._map_meta()

    # ------------------------------------------------------------------ shared fields
    def _get(i: int) -> property:  # type: ignore[misc]
        def fget(self: "SharedRing") -> int:
            return int(self._ctl[i])

        def fset(self: "SharedRing", v: int) -> None:
            self._ctl[i] = v
        return property(fget, fset)

    _capacity = _get(C_CAPACITY)
    _ghost = _get(C_GHOST)
    _nringlet = _get(C_NRINGLET)
    _head = _get(C_HEAD)
    _reserve_head = _get(C_RESERVE_HEAD)
    _tail = _get(C_TAIL)
    _ghost_base = _get(C_GHOST_BASE)
    _ghost_valid = _get(C_GHOST_VALID)
    _writing_ended = _get(C_ENDED)
    del _get

    def _seqrec(self, sid: int) -> np.ndarray:
        off = OFF_SEQS + (sid % NSEQ) * SREC
        return self._meta[off:off + SFIELDS * 8].view(np.int64)

    def _seqname(self, sid: int) -> bytes:
        off = OFF_SEQS + (sid % NSEQ) * SREC
        n = int(self._meta[off:off + SFIELDS * 8].view(np.int64)[S_NLEN])
        return self._meta[off + 128:off + 128 + n].tobytes()

    # ------------------------------------------------------------------ attach / close
    def _attach(self) -> int:
        pid, start = ipc.me()
        with self._lock:
            slots = self._attached
            for i in range(NATTACH):
                if slots[i, A_USED] and not ipc.process_alive(int(slots[i, A_PID]), int(slots[i, A_START])):
                    slots[i, A_USED] = 0          # a process that died without closing
            free = np.flatnonzero(slots[:, A_USED] == 0)
            if not free.size:
                raise AsbruError(f"shared ring {self._name!r}: {NATTACH} Ring objects are attached already")
            i = int(free[0])
            slots[i, A_PID], slots[i, A_START], slots[i, A_USED] = pid, start, 1
            return i

    def close(self) -> None:
        """Detach: end writing if this object writes, drop its readers' guarantees; the last
        user of the ring removes its file."""
        if self._closed:
            return
        try:
            if self._writer_here and not self.writing_ended():
                self.end_writing()
            with self._lock:
                for key in list(self._my_readers):
                    self._free_reader(key)
                self._attached[self._attach_slot, A_USED] = 0
                users = [i for i in range(NATTACH) if self._attached[i, A_USED]
                         and ipc.process_alive(int(self._attached[i, A_PID]), int(self._attached[i, A_START]))]
                if not users:
                    try:
                        os.unlink(self._path)
                    except FileNotFoundError:
                        pass
                self._wake_everyone()
        finally:
            self._closed = True
            os.close(self._fd)

    def __enter__(self) -> "SharedRing":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ properties
    @property
    def path(self) -> str:
        """The ring's file in /dev/shm."""
        return self._path

    @property
    def guaranteed_readers(self) -> int:
        with self._lock:
            r = self._readers
            return int(np.count_nonzero((r[:, R_USED] == 1) & (r[:, R_GUARANTEE] == 1)))

    @property
    def fill(self) -> float:
        with self._lock:
            pin = self._min_pin()
            if pin is None or self._capacity <= 0:
                return 0.0
            return max(0.0, min(1.0, (self._reserve_head - pin) / self._capacity))

    @property
    def writer_died(self) -> bool:
        """True once a reader noticed that the writing process died without ending writing."""
        return bool(self._ctl[C_WRITER_DIED])

    @property
    def reader_wait_seconds(self) -> float:
        """Time this process's readers spent waiting for data (for benchmarks)."""
        return self._waited

    def writing_ended(self) -> bool:
        return bool(self._ctl[C_ENDED])

    def __repr__(self) -> str:
        return (f"<SharedRing name={self._name!r} path={self._path!r} total_span={self._capacity} "
                f"contiguous_span={self._ghost} nringlet={self._nringlet}>")

    # ------------------------------------------------------------------ waiting
    def _wait_on(self, gen: int, nwait: int, word: int, timeout: float) -> None:
        """Release the lock, sleep until the futex word changes (or timeout), re-lock."""
        expected = int(self._ctl[gen]) & 0xFFFFFFFF
        self._ctl[nwait] += 1
        self._lock.__exit__()
        try:
            ipc.futex_wait(word, expected, timeout)
        finally:
            self._lock.__enter__()
            self._ctl[nwait] -= 1

    def _wait_space(self) -> None:
        self._reap_readers()
        t0 = time.perf_counter()
        self._wait_on(C_SPACE_GEN, C_NWAIT_SPACE, self._space_word, _POLL)
        if self._graveyard:
            self._bury()
        self._ctl[C_BLOCKED_NS] += int((time.perf_counter() - t0) * 1e9)

    def _wait_data(self) -> None:
        t0 = time.perf_counter()
        self._check_writer()
        self._wait_on(C_DATA_GEN, C_NWAIT_DATA, self._data_word, _POLL)
        self._sync_layout()
        self._waited += time.perf_counter() - t0

    def _wake_space(self) -> None:
        self._ctl[C_SPACE_GEN] = (int(self._ctl[C_SPACE_GEN]) + 1) & 0xFFFFFFFF
        if self._ctl[C_NWAIT_SPACE] > 0:
            ipc.futex_wake(self._space_word)

    def _wake_data(self) -> None:
        self._ctl[C_DATA_GEN] = (int(self._ctl[C_DATA_GEN]) + 1) & 0xFFFFFFFF
        if self._ctl[C_NWAIT_DATA] > 0:
            ipc.futex_wake(self._data_word)

    def _wake_everyone(self) -> None:
        self._wake_data()
        self._wake_space()

    def _reap_readers(self) -> None:
        """Drop reader slots of processes that died (lock held)."""
        r = self._readers
        for i in np.flatnonzero(r[:, R_USED] == 1):
            if not ipc.process_alive(int(r[i, R_PID]), int(r[i, R_START])):
                r[i, R_USED] = 0
                r[i, R_PIN] = -1

    def _check_writer(self) -> None:
        """A writer that died without ending writing: end it for everyone (lock held)."""
        c = self._ctl
        if c[C_BEGUN] and not c[C_ENDED] and not self._writer_here:
            if not ipc.process_alive(int(c[C_WRITER_PID]), int(c[C_WRITER_START])):
                c[C_WRITER_DIED] = 1
                self._abandon_writer()

    def _abandon_writer(self) -> None:
        c = self._ctl
        c[C_RESERVE_HEAD] = c[C_HEAD]        # spans it reserved and never committed are gone
        sid = int(c[C_OPEN_SEQ])
        if sid >= 0:
            rec = self._seqrec(sid)
            if int(rec[S_ID]) == sid and rec[S_END] < 0:
                rec[S_END] = max(int(c[C_HEAD]), int(rec[S_BEGIN]))
        c[C_OPEN_SEQ] = -1
        c[C_ENDED] = 1
        self._wake_everyone()

    # ------------------------------------------------------------------ pins (reader slots)
    def _bury(self) -> None:
        while self._graveyard:
            kind, key = self._graveyard.pop()
            if kind == "pin":
                self._free_reader(key)
            else:
                self._open_spans -= 1
            self._wake_space()

    def _min_pin(self) -> Optional[int]:
        if self._graveyard:
            self._bury()
        r = self._readers
        held = r[(r[:, R_USED] == 1) & (r[:, R_GUARANTEE] == 1) & (r[:, R_PIN] >= 0), R_PIN]
        return int(held.min()) if held.size else None

    def _new_reader(self, guarantee: bool, sid: int) -> int:
        r = self._readers
        free = np.flatnonzero(r[:, R_USED] == 0)
        if not free.size:
            self._reap_readers()
            free = np.flatnonzero(r[:, R_USED] == 0)
            if not free.size:
                raise AsbruError(f"shared ring {self._name!r}: {NREADER} readers are open already")
        i = int(free[0])
        pid, start = ipc.me()
        r[i, :] = 0
        r[i, R_PID], r[i, R_START], r[i, R_GUARANTEE] = pid, start, int(bool(guarantee))
        r[i, R_PIN], r[i, R_SEQ], r[i, R_POS] = -1, sid, -1
        r[i, R_USED] = 1
        self._my_readers.add(i)
        return i

    def _free_reader(self, key: int) -> None:
        if key in self._my_readers:
            self._my_readers.discard(key)
            r = self._readers
            if r[key, R_USED] and int(r[key, R_PID]) == os.getpid():
                r[key, R_USED] = 0
                r[key, R_PIN] = -1
            self._wake_space()

    def _pin_at(self, key: int, offset: int) -> None:
        self._readers[key, R_PIN] = max(offset, self._tail)
        self._wake_space()

    def _move_pin(self, rseq: ReadSequence, offset: int) -> None:
        with self._lock:
            r = self._readers
            if r[rseq._key, R_USED] and r[rseq._key, R_GUARANTEE]:
                self._pin_at(rseq._key, offset)

    def _drop_pin(self, key: int) -> None:
        with self._lock:
            self._free_reader(key)

    # ------------------------------------------------------------------ sizes
    def resize(self, contiguous_bytes: int, total_bytes: Optional[int] = None, nringlet: int = 1,
               buffer_factor: int = 4) -> None:
        """As :meth:`Ring.resize`; a shared ring is sized once, before data is written (later
        calls that fit are no-ops, others raise ArgumentError)."""
        ghost, total_bytes, nringlet = resize_request(contiguous_bytes, total_bytes, nringlet,
                                                       buffer_factor)
        with self._lock:
            self._sync_layout()
            new_ghost, new_cap, new_nr = self._grown_layout(ghost, total_bytes, nringlet)
            if (new_ghost, new_cap, new_nr) == (self._ghost, self._capacity, self._nringlet):
                return
            if self._reserve_head > 0 or self._ctl[C_NSEQ_TOTAL] > 0:
                raise ArgumentError(
                    f"resize: shared ring {self._name!r} holds data already and is sized "
                    f"(contiguous {self._ghost}, total {self._capacity}, nringlet {self._nringlet}); "
                    f"a shared ring is sized once, before its first sequence")
            fcap = _page(max(new_cap // 8, 1 << 20))
            data_off = META + fcap
            size = data_off + new_nr * (new_cap + new_ghost)
            os.ftruncate(self._fd, size)
            try:
                os.posix_fallocate(self._fd, 0, size)   # the memory is taken now (or refused now)
            except OSError as exc:
                raise ArgumentError(f"resize: /dev/shm cannot hold shared ring {self._name!r} of {size} bytes "
                                    f"({exc.strerror})") from None
            c = self._ctl
            c[C_FLAG_OFF], c[C_FLAG_CAP], c[C_DATA_OFF], c[C_FILE_SIZE] = META, fcap, data_off, size
            c[C_CAPACITY], c[C_GHOST], c[C_NRINGLET] = new_cap, new_ghost, new_nr
            c[C_GHOST_BASE], c[C_GHOST_VALID] = -1, 0
            c[C_LAYOUT_GEN] += 1
            self._map_meta()
            self._wake_everyone()

    # ------------------------------------------------------------------ writing
    def begin_writing(self) -> Any:
        from .ring import RingWriter
        pid, start = ipc.me()
        with self._lock:
            c = self._ctl
            if c[C_BEGUN] and not c[C_ENDED]:
                if ipc.process_alive(int(c[C_WRITER_PID]), int(c[C_WRITER_START])):
                    raise ArgumentError(f"begin_writing: shared ring {self._name!r} is being written by "
                                        f"process {int(c[C_WRITER_PID])}; one writer at a time")
                c[C_WRITER_DIED] = 1
                self._abandon_writer()
            c[C_WRITER_PID], c[C_WRITER_START] = pid, start
            c[C_BEGUN], c[C_ENDED], c[C_WRITER_DIED] = 1, 0, 0
            self._writer_here = True
        return RingWriter(self)

    def end_writing(self) -> None:
        with self._lock:
            c = self._ctl
            if self._writer_here:
                c[C_ENDED] = 1
                if self._open_seq is not None:
                    self._end_locked(self._open_seq)
                self._writer_here = False
            self._wake_everyone()

    def _begin_sequence(self, name: Any, time_tag: Any, header: Any, nringlet: Any) -> WriteSequence:
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        if not isinstance(name, str):
            raise ArgumentError(f"name must be a str; got {type(name).__name__}")
        raw_name = name.encode("utf-8")
        if len(raw_name) > NAME_MAX:
            raise ArgumentError(f"begin_sequence: a shared ring's sequence names are at most {NAME_MAX} bytes; "
                                f"got {len(raw_name)}")
        tt = check_time_tag(time_tag)
        hdr = header_bytes(header)
        if len(hdr) > HEADER_MAX:
            raise ArgumentError(f"begin_sequence: a shared ring holds headers of up to {HEADER_MAX} bytes; "
                                f"got {len(hdr)}")
        if not is_int(nringlet) or nringlet < 1:
            raise ArgumentError(f"nringlet must be an integer >= 1; got {nringlet!r}")
        with self._lock:
            c = self._ctl
            if not self._writer_here or c[C_ENDED]:
                raise ArgumentError("begin_sequence: writing to this ring has ended")
            if self._open_seq is not None:
                raise ArgumentError("begin_sequence: the previous sequence must be ended first")
            if nringlet > self._nringlet:
                raise ArgumentError(f"nringlet must be <= the ring's nringlet {self._nringlet} "
                                    f"(Ring.resize sets it); got {nringlet}")
            self._drop_old()
            if name and self._find(lambda rec, sid: self._seqname(sid) == raw_name) is not None:
                raise ArgumentError(f"begin_sequence: name {name!r} is already used by a sequence still in the ring")
            sid = int(c[C_NSEQ_TOTAL])
            while sid - int(c[C_SEQ_FIRST]) >= NSEQ:
                # The table is full: forget the oldest sequence unless a guaranteed reader
                # still reads it (then wait for that reader to move on).
                oldest = int(c[C_SEQ_FIRST])
                r = self._readers
                if not np.any((r[:, R_USED] == 1) & (r[:, R_GUARANTEE] == 1) & (r[:, R_SEQ] == oldest)):
                    c[C_SEQ_FIRST] = oldest + 1
                    break
                self._wait_space()
            off = OFF_SEQS + (sid % NSEQ) * SREC
            rec = self._seqrec(sid)
            rec[:] = 0
            rec[S_ID] = -1
            rec[S_TIME_TAG], rec[S_BEGIN], rec[S_END] = tt, self._reserve_head, -1
            rec[S_NRINGLET], rec[S_HLEN], rec[S_NLEN] = int(nringlet), len(hdr), len(raw_name)
            self._meta[off + 128:off + 128 + len(raw_name)] = np.frombuffer(raw_name, np.uint8)
            hoff = OFF_HEADERS + (sid % NSEQ) * HEADER_MAX
            self._meta[hoff:hoff + len(hdr)] = np.frombuffer(hdr, np.uint8)
            rec[S_ID] = sid
            c[C_NSEQ_TOTAL] = sid + 1
            c[C_OPEN_SEQ] = sid
            seq = _SharedSeq(self, sid)
            self._open_seq = seq
            self._wake_data()
        return WriteSequence(self, seq)  # type: ignore[arg-type]

    def _end_locked(self, seq: Any) -> None:
        rec = self._seqrec(seq.id)
        if int(rec[S_ID]) == seq.id and rec[S_END] < 0:
            rec[S_END] = max(self._head, seq.begin)
        seq._end = None
        if self._open_seq is seq:
            self._open_seq = None
            self._ctl[C_OPEN_SEQ] = -1
        self._wake_data()

    def _drop_old(self) -> None:
        """Forget ended sequences whose data has left the ring (lock held)."""
        c = self._ctl
        tail = int(c[C_TAIL])
        first, total = int(c[C_SEQ_FIRST]), int(c[C_NSEQ_TOTAL])
        while first < total:
            rec = self._seqrec(first)
            end, begin = int(rec[S_END]), int(rec[S_BEGIN])
            if int(rec[S_ID]) == first and (end < 0 or not (tail > end or (tail >= end > begin))):
                break
            first += 1
        c[C_SEQ_FIRST] = first

    def _find(self, pred: Any) -> Optional[int]:
        for sid in range(int(self._ctl[C_NSEQ_TOTAL]) - 1, int(self._ctl[C_SEQ_FIRST]) - 1, -1):
            rec = self._seqrec(sid)
            if int(rec[S_ID]) == sid and pred(rec, sid):
                return sid
        return None

    def _store_flags(self, span: Any, nbyte: int) -> None:
        seq, fn = span._seq, span._frame_nbyte
        rows = span._flags
        first = span._first_frame
        if first < 0:
            first = (span._abs - seq.begin) // fn
        nrow = -(-(span._abs - seq.begin + nbyte) // fn) - first
        rows = np.ascontiguousarray(rows[:nrow], dtype=np.uint8)
        rec = self._seqrec(seq.id)
        if rec[S_FLAG_FN] <= 0:
            rec[S_FLAG_FN], rec[S_FLAG_NCOL] = fn, rows.shape[1]
        c = self._ctl
        flat = rows.reshape(-1)
        fcap = int(c[C_FLAG_CAP])
        n = min(flat.size, fcap)
        pos = int(c[C_FLAG_HEAD])
        at = pos % fcap
        k = min(n, fcap - at)
        self._flagmem[at:at + k] = flat[:k]
        if n > k:
            self._flagmem[:n - k] = flat[k:n]
        ordinal = int(c[C_NCHUNK_TOTAL])
        ch = self._chunks[ordinal % NCHUNK]
        ch[K_SEQ], ch[K_FIRST], ch[K_NFRAME], ch[K_NCOL] = seq.id, first, n // rows.shape[1], rows.shape[1]
        ch[K_FN], ch[K_FLAG_ABS], ch[K_ORDINAL] = fn, pos, ordinal
        c[C_FLAG_HEAD] = pos + n
        c[C_NCHUNK_TOTAL] = ordinal + 1

    # ------------------------------------------------------------------ reading
    def _open(self, which: str, guarantee: bool, arg: Any = None) -> ReadSequence:
        key = None
        try:
            with self._lock:
                while True:
                    self._drop_old()
                    c = self._ctl
                    first, total = int(c[C_SEQ_FIRST]), int(c[C_NSEQ_TOTAL])
                    sid = None
                    if which == "name":
                        raw = arg.encode("utf-8")
                        sid = self._find(lambda rec, s: self._seqname(s) == raw)
                        if sid is None:
                            raise ArgumentError(f"open_sequence: no sequence named {arg!r} is in the ring")
                    elif which == "at":
                        best = None
                        for s in range(first, total):
                            rec = self._seqrec(s)
                            tt = int(rec[S_TIME_TAG])
                            if int(rec[S_ID]) == s and tt != -1 and tt <= arg and (best is None or tt >= best[1]):
                                best = (s, tt)
                        if best is None:
                            raise ArgumentError(f"open_sequence_at: no sequence in the ring has time_tag <= {arg}")
                        sid = best[0]
                    elif first < total:
                        sid = first if which == "earliest" else total - 1
                    if sid is not None:
                        break
                    if c[C_ENDED]:
                        raise EndOfDataStop(f"ring {self._name!r}: writing has ended and no sequence is in the ring")
                    if guarantee and key is None:
                        key = self._new_reader(True, -1)
                        self._pin_at(key, self._reserve_head)
                    self._wait_data()
                if key is None:
                    key = self._new_reader(guarantee, sid)
                seq = _SharedSeq(self, sid)
                r = self._readers
                r[key, R_SEQ] = sid
                if guarantee:
                    self._pin_at(key, seq.begin)
                return ReadSequence(self, seq, bool(guarantee), key)  # type: ignore[arg-type]
        except BaseException:
            if key is not None:
                with self._lock:
                    self._free_reader(key)
            raise

    def _next_sequence(self, rseq: ReadSequence) -> None:
        with self._lock:
            while True:
                c = self._ctl
                nxt = rseq._seq.id + 1
                if nxt < int(c[C_NSEQ_TOTAL]):
                    self._drop_old()
                    nxt = max(nxt, int(c[C_SEQ_FIRST]))   # skipped sequences left the ring
                    if nxt < int(c[C_NSEQ_TOTAL]):
                        break
                if c[C_ENDED]:
                    raise EndOfDataStop(f"ring {self._name!r}: writing has ended and there is no next sequence")
                self._wait_data()
            rseq._seq = seq = _SharedSeq(self, nxt)
            self._readers[rseq._key, R_SEQ] = nxt
            if rseq._guarantee:
                self._pin_at(rseq._key, seq.begin)

    def _acquire(self, rseq: ReadSequence, offset: Any, size: Any, hold: bool = False,
                 release: Optional[ReadSpan] = None, iterated: bool = False) -> ReadSpan:
        size = self._check_span_size("size", size)
        if not (type(offset) is int or is_int(offset)) or offset < 0:
            raise ArgumentError(f"offset must be a non-negative integer; got {offset!r}")
        offset = int(offset)
        with self._lock:
            if release is not None:
                self._let_go(release)
            self._sync_layout()
            seq = rseq._seq
            start = seq.begin + offset
            r = self._readers
            key = rseq._key
            if rseq._guarantee and not hold and r[key, R_USED]:
                self._pin_at(key, start)
            while True:
                ready = self._readable(seq, start, offset, size)
                if ready is not None:
                    size = ready
                    break
                self._wait_data()
            self._open_spans += 1
            cap = self._capacity
            bufpos = start % cap if cap else 0
            if bufpos + size > cap:
                self._fill_ghost(start, bufpos, size)
            r[key, R_POS] = start + size
            r[key, R_NSPAN] += 1
            r[key, R_NBYTE] += size
            return (ReadSpan if iterated else AcquiredSpan)(  # type: ignore[arg-type]
                rseq, seq, self._rbuf, bufpos, start, size, offset)

    def _reserve(self, seq: Any, size: Any, nonblocking: bool) -> Any:
        if self._layout_gen != int(self._ctl[C_LAYOUT_GEN]):
            with self._lock:             # another process sized the ring: map its memory
                self._sync_layout()
        return super()._reserve(seq, size, nonblocking)

    def _commit_then_reserve(self, span: Any, flags: np.ndarray, frame_nbyte: int, size: int) -> Any:
        # the shared ring's commit and reserve keep its control block and the other processes
        # in step: take them one after the other
        return self._commit_then_reserve_in_turn(span, flags, frame_nbyte, size)

    def _check_span_size(self, what: str, size: Any) -> int:
        if self._layout_gen != int(self._ctl[C_LAYOUT_GEN]):
            with self._lock:
                self._sync_layout()
        return super()._check_span_size(what, size)

    def _flag_layout(self, seq: Any) -> Optional[tuple[int, int]]:
        lay = seq.flags
        return None if lay is None else (lay.frame_nbyte, lay.ncol)

    def _flags_for(self, seq: Any, offset: int, size: int) -> Optional[np.ndarray]:
        with self._lock:
            self._sync_layout()
            lay = seq.flags
            if lay is None or size <= 0:
                return None
            fn, ncol = lay.frame_nbyte, lay.ncol
            f0, f1 = offset // fn, -(-(offset + size) // fn)
            c = self._ctl
            total = int(c[C_NCHUNK_TOTAL])
            ch = self._chunks[:min(total, NCHUNK)]
            hit = np.flatnonzero((ch[:, K_SEQ] == seq.id) & (ch[:, K_FIRST] < f1)
                                 & (ch[:, K_FIRST] + ch[:, K_NFRAME] > f0) & (ch[:, K_ORDINAL] >= total - NCHUNK))
            if not hit.size:
                return None
            hit = hit[np.argsort(ch[hit, K_ORDINAL])]
            fcap, fhead = int(c[C_FLAG_CAP]), int(c[C_FLAG_HEAD])
            out = np.zeros((f1 - f0, ncol), dtype=np.uint8)
            for i in hit:
                s, nf, pos = int(ch[i, K_FIRST]), int(ch[i, K_NFRAME]), int(ch[i, K_FLAG_ABS])
                if pos < fhead - fcap:
                    continue                  # those rows were overwritten by newer flags
                lo, hi = max(s, f0), min(s + nf, f1)
                a = pos + (lo - s) * ncol
                n = (hi - lo) * ncol
                at = a % fcap
                k = min(n, fcap - at)
                rows = np.empty(n, dtype=np.uint8)
                rows[:k] = self._flagmem[at:at + k]
                rows[k:] = self._flagmem[:n - k]
                out[lo - f0:hi - f0] = rows.reshape(hi - lo, ncol)
            return out


def _open_or_create(path: str) -> tuple[int, bool]:
    """Open the ring file, creating and initialising it if it does not exist."""
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue                      # removed between the two opens: try again
            # wait (briefly) for its creator to finish initialising it
            deadline = time.monotonic() + 5.0
            while True:
                st = os.fstat(fd)
                if st.st_size >= META:
                    head = os.pread(fd, 24, 0)
                    magic, version, ready = np.frombuffer(head, dtype=np.int64)
                    if ready == 1:
                        if magic != MAGIC or version != VERSION:
                            os.close(fd)
                            raise ArgumentError(f"{path} is not an asbru shared ring of version {VERSION}; "
                                                f"remove it with `asbru rings --remove NAME`")
                        if not _replace_if_stale(path, fd):
                            return fd, False
                        os.close(fd)              # a crashed ring nobody used: start afresh
                        break
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise AsbruError(f"{path}: its creator never finished initialising it; remove it with "
                                     f"`asbru rings --remove-stale`")
                time.sleep(0.005)
        else:
            try:
                os.ftruncate(fd, META)
                ctl = np.zeros(NCTL, dtype=np.int64)
                ctl[C_MAGIC], ctl[C_VERSION] = MAGIC, VERSION
                ctl[C_GHOST_BASE], ctl[C_OPEN_SEQ] = -1, -1
                ctl[C_CREATED] = int(time.time())
                os.pwrite(fd, ctl.tobytes(), 0)
                readers = np.zeros((NREADER, RFIELDS), dtype=np.int64)
                readers[:, R_PIN] = -1
                os.pwrite(fd, readers.tobytes(), OFF_READERS)
                seqs = np.zeros((NSEQ, SREC // 8), dtype=np.int64)
                seqs[:, S_ID] = -1
                os.pwrite(fd, seqs.tobytes(), OFF_SEQS)
                chunks = np.full((NCHUNK, KFIELDS), -1, dtype=np.int64)
                os.pwrite(fd, chunks.tobytes(), OFF_CHUNKS)
                # the creator is the ring's first user before anyone can see the ring, so
                # that a process attaching meanwhile does not take it for a crashed one
                pid, start = ipc.me()
                os.pwrite(fd, np.array([1, pid, start, 0], dtype=np.int64).tobytes(), OFF_ATTACH)
                os.pwrite(fd, np.int64(1).tobytes(), C_READY * 8)
            except BaseException:
                os.close(fd)
                os.unlink(path)
                raise
            return fd, True
    raise AsbruError(f"{path}: could not open or create it")


def _replace_if_stale(path: str, fd: int) -> bool:
    """Remove the ring file if no live process uses it (what a crash leaves behind), so that
    a restarted writer or reader gets a fresh ring; True if the caller must open again."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return True                       # replaced meanwhile by another process
        except FileNotFoundError:
            return True
        info = _read_ctl(path)
        if info is not None and is_stale(info):
            os.unlink(path)
            return True
        return False
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@atexit.register
def _close_all() -> None:
    """A process that exits normally detaches from every shared ring it still holds."""
    for ring in list(_LIVE):
        try:
            ring.close()
        except Exception:
            pass


# ---------------------------------------------------------------------- inspection
def _read_ctl(path: str) -> Optional[dict[str, Any]]:
    """A snapshot of a ring file's state (no lock: for display)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size < META:
            return {"path": path, "valid": False, "size": size}
        head = np.frombuffer(os.pread(fd, OFF_SEQS, 0), dtype=np.int64)
        ctl = head[:NCTL]
        if ctl[C_MAGIC] != MAGIC:
            return {"path": path, "valid": False, "size": size}
        readers = head[OFF_READERS // 8:OFF_ATTACH // 8].reshape(NREADER, RFIELDS)
        attached = head[OFF_ATTACH // 8:OFF_ATTACH // 8 + NATTACH * AFIELDS].reshape(NATTACH, AFIELDS)
        seqs = []
        first, total = int(ctl[C_SEQ_FIRST]), int(ctl[C_NSEQ_TOTAL])
        for sid in range(max(first, total - 8), total):
            rec = np.frombuffer(os.pread(fd, SREC, OFF_SEQS + (sid % NSEQ) * SREC), dtype=np.int64)
            if int(rec[S_ID]) != sid:
                continue
            raw = os.pread(fd, int(rec[S_NLEN]), OFF_SEQS + (sid % NSEQ) * SREC + 128)
            seqs.append({"id": sid, "name": raw.decode("utf-8", "replace"), "time_tag": int(rec[S_TIME_TAG]),
                         "begin": int(rec[S_BEGIN]), "end": None if rec[S_END] < 0 else int(rec[S_END]),
                         "header_size": int(rec[S_HLEN])})
    finally:
        os.close(fd)
    head_pos = int(ctl[C_HEAD])
    rl = []
    for i in range(NREADER):
        if readers[i, R_USED]:
            pid, start = int(readers[i, R_PID]), int(readers[i, R_START])
            pos = int(readers[i, R_POS])
            rl.append({"slot": i, "pid": pid, "alive": ipc.process_alive(pid, start),
                       "guarantee": bool(readers[i, R_GUARANTEE]), "sequence": int(readers[i, R_SEQ]),
                       "pin": int(readers[i, R_PIN]), "position": pos,
                       "lag_bytes": max(0, head_pos - pos) if pos >= 0 else None,
                       "nspan": int(readers[i, R_NSPAN]), "nbyte": int(readers[i, R_NBYTE])})
    users = []
    for i in range(NATTACH):
        if attached[i, A_USED]:
            pid, start = int(attached[i, A_PID]), int(attached[i, A_START])
            users.append({"pid": pid, "alive": ipc.process_alive(pid, start)})
    wpid, wstart = int(ctl[C_WRITER_PID]), int(ctl[C_WRITER_START])
    writing = bool(ctl[C_BEGUN]) and not bool(ctl[C_ENDED])
    return {
        "path": path, "valid": True, "size": size, "name": os.path.basename(path)[len(PREFIX):],
        "capacity": int(ctl[C_CAPACITY]), "contiguous": int(ctl[C_GHOST]), "nringlet": int(ctl[C_NRINGLET]),
        "head": head_pos, "tail": int(ctl[C_TAIL]), "reserve_head": int(ctl[C_RESERVE_HEAD]),
        "writer_pid": wpid if ctl[C_BEGUN] else None,
        "writer_alive": writing and ipc.process_alive(wpid, wstart),
        "writing": writing, "writer_died": bool(ctl[C_WRITER_DIED]),
        "writer_blocked_seconds": int(ctl[C_BLOCKED_NS]) / 1e9,
        "nsequence": int(ctl[C_NSEQ_TOTAL]), "sequences": seqs, "readers": rl, "users": users,
        "created": int(ctl[C_CREATED]),
    }


def list_rings() -> list[str]:
    """Names of the shared-ring files in /dev/shm."""
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return []
    return sorted(n[len(PREFIX):] for n in names if n.startswith(PREFIX))


def inspect(name: str) -> dict[str, Any]:
    """State of shared ring ``name``: geometry, positions, writer, readers, recent sequences."""
    info = _read_ctl(path_of(check_name(name)))
    if info is None:
        raise ArgumentError(f"no shared ring named {name!r} ({path_of(name)} does not exist)")
    return info


def is_stale(info: dict[str, Any]) -> bool:
    """No live process uses the ring (or the file is not a valid ring)."""
    if not info.get("valid"):
        return True
    return not any(u["alive"] for u in info["users"]) and not info["writer_alive"] \
        and not any(r["alive"] for r in info["readers"])


def remove(name: str) -> None:
    """Remove shared ring ``name``'s file (processes attached keep their mapping)."""
    try:
        os.unlink(path_of(check_name(name)))
    except FileNotFoundError:
        raise ArgumentError(f"no shared ring named {name!r}") from None


def remove_stale() -> list[str]:
    """Remove every shared-ring file no live process uses; returns their names."""
    gone = []
    for name in list_rings():
        try:
            info = _read_ctl(path_of(name))
        except OSError:
            continue
        if info is not None and is_stale(info):
            try:
                os.unlink(path_of(name))
                gone.append(name)
            except FileNotFoundError:
                pass
    return gone


def iter_infos() -> Iterator[dict[str, Any]]:
    for name in list_rings():
        info = _read_ctl(path_of(name))
        if info is not None:
            yield info


__all__ = ["SharedRing", "list_rings", "inspect", "remove", "remove_stale", "is_stale", "path_of"]
_ = errno
