"""The capture state machine (Python side): sequences, gulps, commits, callbacks.

The compiled loop (:mod:`asbru.capture.loop`) does all per-packet work and returns
here only when the ring or the sequence must change (see ``RS_*`` in
:mod:`asbru.capture.layout`).  This module turns those returns into ring operations and
Bifrost status codes.  Behaviour and every difference from Bifrost: docs/capture.md.

Invariants that make partial commits legal (the ring lets only its most recent
reservation commit less than it reserved):

* a gulp is reserved only when a packet for it (or beyond it) has been seen, so the newest
  open gulp always holds the newest placed packet (``W_LAST``);
* a sequence therefore ends inside its newest gulp, and only that gulp is committed short.
"""
from __future__ import annotations

import os
import time
import warnings
import weakref
from typing import Any, Optional

import numpy as np

from asbru.errors import ArgumentError, AsbruError, CaptureWarning
from asbru.formats import Format, spec
from asbru.formats.spec import NDESC, PAYLOAD_SIZE

from . import layout as L
from .args import as_int, positive_int
from .loop import capture_module
from .callbacks import PacketCaptureCallback, call_sequence_callback, describe
from .stats import CaptureStats
from .status import Status

_DRAINED = -1          # internal: nothing left to do without receiving
# A recv() that returns while data flows (CONTINUED, STARTED, CHANGED) publishes the proclog
# statistics at most this often: two file rewrites per gulp cost ~4 % of the receive rate,
# and monitors (asbru top) poll once a second.  The other returns (ENDED, NO_DATA,
# INTERRUPTED, ERROR), flush() and end() always publish.
PUBLISH_INTERVAL = 0.1
_THROTTLED = (Status.CONTINUED, Status.STARTED, Status.CHANGED)
_HOLD_BYTES_MAX = 64 << 20






def _sample_rate(fmt: Format, value: Any) -> Optional[int]:
    """``sample_rate=``: samples per second (an int, a whole float, or anything with
    ``to_value('Hz')`` such as an astropy Quantity), only for a format that learns it."""
    if value is None:
        return None
    if not hasattr(fmt.module, "LEARNS"):
        raise ArgumentError(f"sample_rate: format {fmt.name!r} does not learn a rate from the "
                            f"stream (its headers place every packet); leave sample_rate out")
    if hasattr(value, "to_value"):
        try:
            value = value.to_value("Hz")
        except Exception as exc:  # noqa: BLE001 - any unit error, one line
            raise ArgumentError(f"sample_rate: {value!r} is not a frequency ({exc})") from None
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or value <= 0 or value != int(value) or value >= 2**53:
        raise ArgumentError(f"sample_rate must be a positive whole number of samples per second; "
                            f"got {value!r}")
    rate = int(value)
    check = getattr(fmt.module, "check_sample_rate", None)
    if check is not None:
        try:
            check(rate)
        except spec.FormatError as exc:
            raise ArgumentError(f"sample_rate: {exc}") from None
    return rate




# Limits checked before anything is allocated (beyond them an argument is a mistake, and
# numpy would fail with a raw OverflowError/MemoryError, or a C int would wrap)
NSRC_MAX = 1 << 20          # sources
SRC0_MAX = 1 << 31          # |src0|
NTIME_MAX = 1 << 30         # buffer_ntime


def _bounded(name: str, value: int, lo: int, hi: int, why: str) -> int:
    if not lo <= value <= hi:
        raise ArgumentError(f"{name} must be in {lo}..{hi} ({why}); got {value}")
    return value


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 1 << 40


def check_sizes(nsrc: int, src0: int, buffer_ntime: int, max_packet: int, ring_factor: int) -> None:
    """One line for sizes that cannot work, before any buffer is allocated: the ring holds
    ``ring_factor`` gulps of ``buffer_ntime * nsrc * max_packet`` bytes."""
    _bounded("nsrc", nsrc, 1, NSRC_MAX, "sources of one capture")
    _bounded("src0", src0, -SRC0_MAX, SRC0_MAX, "the first source number")
    _bounded("buffer_ntime", buffer_ntime, 1, NTIME_MAX, "time slots per gulp")
    ring = ring_factor * buffer_ntime * nsrc * max_packet
    mem = _memory_bytes()
    if ring > mem:
        raise ArgumentError(f"buffer_ntime * nsrc * packet size = {buffer_ntime} * {nsrc} * "
                            f"{max_packet} bytes per gulp: the ring ({ring_factor} gulps, "
                            f"{ring / 2**30:.1f} GiB) would not fit this machine's "
                            f"{mem / 2**30:.1f} GiB of memory")


def _limit(name: str, value: Any, default: int, hi: int) -> int:
    """An engine option: None -> ``default``; else a positive integer up to ``hi``."""
    if value is None:
        return default
    return _bounded(name, positive_int(name, value), 1, hi, "a positive count")


class _Gulp:
    """One open gulp: a reserved ring span, its received mask, its first seq."""

    __slots__ = ("span", "data", "mask", "start")

    def __init__(self, span: Any, data: np.ndarray, mask: np.ndarray, start: int) -> None:
        self.span = span
        self.data = data
        self.mask = mask
        self.start = start


class CaptureEngine:
    """Shared by UDPCapture, DiskReader and the sniffer; subclasses provide the backend:

    ``_backend`` (name in :data:`asbru.capture.backends.BACKENDS`), ``_kind`` (proclog block
    name) and ``_setup_backend()`` which sets the receive arrays of the
    :class:`~asbru.capture.loop.state.LoopState`: ``self._io``, ``self._rbuf``,
    ``self._rlen``, ``self._meta``, ``self._aux``, ``self._auxlens``.
    """

    _backend = ""
    _kind = "capture"
    # what recv() returns when its bounded work is spent with no sequence open: NO_DATA for a
    # network stream (a flood of garbage); a file reader returns CONTINUED (data remains)
    _budget_status_idle = Status.NO_DATA

    def _init_engine(self, fmt: Format, ring: Any, nsrc: int, src0: int, buffer_ntime: int,
                     slot_ntime: int, sequence_callback: Optional[PacketCaptureCallback],
                     core: Optional[int], max_packet: int, *, max_jump_gulps: Optional[int] = None,
                     budget: Optional[int] = None, hold_packets: Optional[int] = None,
                     ring_factor: int = 4, sample_rate: Any = None) -> None:
        check_sizes(nsrc, src0, buffer_ntime, max_packet, ring_factor)
        rate = _sample_rate(fmt, sample_rate)
        # a format that learns its rate holds what comes before it has learnt (a VDIF
        # second): more room by default, still bounded by _HOLD_BYTES_MAX
        learns = hasattr(fmt.module, "LEARNS") and not rate
        budget = _limit("budget", budget, 4 * buffer_ntime * nsrc + 4096, 1 << 62)
        hold_packets = _limit("hold_packets", hold_packets,
                              max(4 * nsrc, 1024 if learns else 64), 1 << 62)
        max_jump_gulps = _limit("max_jump_gulps", max_jump_gulps, max(ring_factor, 2), 1 << 62)
        self._fmt = fmt
        self.sample_rate = rate
        self._unlearned_told = 0
        self.nsrc = nsrc
        self.src0 = src0
        self.buffer_ntime = buffer_ntime
        self.slot_ntime = slot_ntime
        if sequence_callback is not None and not isinstance(sequence_callback, PacketCaptureCallback):
            if not hasattr(sequence_callback, "get"):
                raise ArgumentError("sequence_callback must be a PacketCaptureCallback or None; got "
                                    f"{type(sequence_callback).__name__}")
        self._callback = sequence_callback
        self.core = -1 if core is None else as_int("core", core)
        self._max_packet = max_packet
        self._ended = False
        self._in_callback = False
        #: the failure behind the last ERROR status (an OSError with its errno), or None
        self.last_error: Optional[OSError] = None
        self._failed_callback: Any = None   # the callback whose last call raised
        self.stats_obj = CaptureStats(nsrc)
        self.sequence_info: dict[str, Any] | None = None  # the current/last sequence
        self.sequence_history: list[dict[str, Any]] = []  # the last 1000 sequences begun

        # the ring: grown as Bifrost does (contiguous = one gulp at the largest packet size)
        from asbru.ring import Ring
        if ring is None:
            ring = Ring(name=f"{self._kind}_{os.getpid()}_{id(self):x}")
        self.ring = ring
        gulp_max = buffer_ntime * nsrc * max_packet
        ring.resize(gulp_max, ring_factor * gulp_max)
        self._writer = ring.begin_writing()
        self._wseq: Any = None
        self._gulps: list[_Gulp] = []
        self._seqdesc = np.full(NDESC, -1, dtype=np.int64)
        self._zero = np.zeros(max_packet, dtype=np.uint8)

        # compiled loop state
        self._kmod = capture_module(fmt, self._backend)
        # the format's decode/place are found by the loop through their addresses in cfg
        self._cfg = self._kmod.install(fmt.capture_config(nsrc, src0))
        self._cfg[spec.CFG_SAMPLE_RATE] = self.sample_rate or 0
        self._fstate = np.zeros(spec.NSTATE, dtype=np.int64)
        self._d = np.full(NDESC, -1, dtype=np.int64)
        self._cur = np.full(NDESC, -1, dtype=np.int64)
        self._ref = np.full(NDESC, -1, dtype=np.int64)   # open sequence's config, while confirming
        self._confirming = False
        self._change_end = 0
        self._chg = np.asarray(fmt.change, dtype=np.int64)
        self._rst = np.zeros(L.NRST, dtype=np.int64)
        self._setup_backend()
        slot = self._rbuf.shape[1]
        hcap = max(2, min(hold_packets, max(2 * nsrc + 2, _HOLD_BYTES_MAX // slot)))
        # the last FAR_STASH rows keep far-ahead packets while the stream agrees (kernels)
        self._hold = np.zeros((hcap + L.FAR_STASH, slot), dtype=np.uint8)
        self._hlen = np.zeros(hcap + L.FAR_STASH, dtype=np.int64)
        self._hst = np.zeros(L.NHST, dtype=np.int64)
        self._win = np.zeros(L.NWIN, dtype=np.int64)
        # the same words for the Python that runs once per gulp: an element of a memoryview
        # is a plain int read or written by a few instructions, a NumPy scalar goes through
        # NumPy's indexing machinery (its code cold by then: _commit_then_reserve says why)
        self._winv = memoryview(self._win)
        w = self._win
        w[L.W_MODE] = L.MODE_GATHER
        w[L.W_N] = buffer_ntime
        w[L.W_NSRC] = nsrc
        w[L.W_BUDGET] = budget
        w[L.W_MAXJUMP] = min(max_jump_gulps, 1 << 30)
        w[L.W_BACKTHRESH] = buffer_ntime * nsrc + 1
        w[L.W_GTARGET] = nsrc
        # placements deferred to the format's place_row: at most one per received packet
        self._pend = np.zeros((max(len(self._rlen), 1), 6), dtype=np.int64)
        self._addrs = np.zeros(nsrc, dtype=np.int64)
        self._dummy_gulp = np.zeros(1, dtype=np.uint8)
        self._dummy_mask = np.zeros((1, 1), dtype=np.uint8)

        # proclog (Bifrost's files)
        from asbru.proclog import BlockLogs
        self._logs = BlockLogs(self._kind)
        self._logs.update("bind", {"ncore": 1, "core0": self.core})
        self._logs.update("out", {"nring": 1, "ring0": getattr(ring, "name", "")})
        self._logs.update("sizes", {"nsrc": nsrc, "nseq_per_buf": buffer_ntime,
                                    "slot_ntime": slot_ntime})
        self._logs.update("type", {"type": fmt.params.fmt})
        self._finalizer = weakref.finalize(self, self._logs.close)
        self._next_publish = 0.0
        self._compile_loop()

    def _compile_loop(self) -> None:
        """Compile (or load from the kernel cache) the loop now, not at the first recv().

        A backend whose socket is already bound stages what arrives meanwhile
        (:meth:`_start_staging`), so a cold cache costs time, never packets."""
        from . import precompile
        # nothing to wait for when this process has already compiled it
        stager = None if precompile.compiled_here(self._kmod.run) else self._start_staging()
        try:
            with precompile.announce(self._kmod, self._fmt.name, self._backend):
                precompile.call_with_zero_budget(self._kmod, self._io, self._rbuf, self._rlen,
                                                 self._meta, self._aux, self._auxlens, self.nsrc)
        finally:
            if stager is not None:
                self._adopt_staged(stager)

    def _start_staging(self) -> Any:
        """Subclasses that receive from a bound socket: a started
        :class:`~asbru.capture.staging.Stager` (or None)."""
        return None

    def _adopt_staged(self, stager: Any) -> None:
        """Subclasses: hand the staged packets to the loop."""

    # ------------------------------------------------------------------ public
    @property
    def stats(self) -> dict[str, Any]:
        """Counters since construction (see docs/capture.md)."""
        if not self._ended:
            self._update_kernel_drops()
        return self.stats_obj.as_dict()

    @property
    def format(self) -> Format:
        return self._fmt

    def recv(self) -> int:
        """Receive until a gulp is committed/opened, a sequence starts/changes/ends, the
        receive times out / reaches EOF / fails, or the bounded-work limit is hit."""
        self._not_in_callback("recv")
        if self._ended:
            raise ArgumentError(f"{type(self).__name__}.recv: the capture has ended (end() was called)")
        self._check_open()
        st = self.stats_obj
        st.process_seconds = st.reserve_seconds = 0.0
        status = Status.ERROR
        try:
            status = self._pump(nofetch=0)
        finally:
            if status not in _THROTTLED or time.monotonic() >= self._next_publish:
                self._update_kernel_drops()
                self._publish()
            self._tell_unlearned()
        # (an Enum call by value runs several Python frames: skipped when it is one already)
        return status if type(status) is Status else Status(status)

    def flush(self) -> None:
        """Commit what is open, end the sequence, and leave the capture inactive."""
        self._not_in_callback("flush")
        if self._ended:
            return
        try:
            self._drain()
        finally:
            self._publish()

    def end(self) -> None:
        """``flush()`` then end writing on the ring (readers see end of data).

        A sequence callback that raised (and is still the one set) is not called again:
        the packets still held or received are counted invalid instead.  If a callback
        raises here, its exception leaves ``end()`` after everything is counted and the
        ring's writing has ended."""
        self._not_in_callback("end")
        if self._ended:
            return
        try:
            failed = self._failed_callback
            if failed is not None and self._callback is not None and \
                    self._callback.get(self._fmt.name) is failed:
                self._drop_pending()
            try:
                self._drain(received_too=True)
            except BaseException:
                self._drop_pending()
                raise
            # held packets that never became decodable count as invalid
            self._kmod_drop_hold(unlearned=True)
        finally:
            self._tell_unlearned()
            self._update_kernel_drops()
            self._ended = True
            self._publish()
            try:
                self._writer.end_writing()
            finally:
                self._finalizer()

    def __enter__(self) -> "CaptureEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()

    # ------------------------------------------------------------------ internals
    def _not_in_callback(self, what: str) -> None:
        if self._in_callback:
            raise ArgumentError(f"{type(self).__name__}.{what}() called from inside the sequence "
                                f"callback; a callback may only return the header and time tag")

    def _drop_pending(self) -> None:
        """Count everything held or received but not processed as invalid (a callback that
        cannot start their sequence): every received packet is counted once."""
        self._kmod_drop_hold()
        rst, cnt = self._rst, self.stats_obj.cnt
        for i in range(int(rst[L.R_POS]), int(rst[L.R_COUNT])):
            ln = int(self._rlen[i])
            cnt[L.C_NINVALID] += 1
            cnt[L.C_NINVALID_BYTES] += ln if ln >= 0 else -1 - ln
        rst[L.R_POS] = rst[L.R_COUNT]

    def _check_open(self) -> None:
        """Subclasses: raise ArgumentError when the socket/file was closed."""

    def _update_kernel_drops(self) -> None:
        """Subclasses that receive from the network: refresh ``cnt[C_NKDROPS]`` (called
        before each proclog publication, by ``stats`` and by ``end()``)."""

    def _loop_args(self) -> tuple:
        """What the compiled loop works on: this engine's arrays in the order of
        :class:`~asbru.capture.loop.state.LoopState`'s fields (the one place they are put
        together; a test checks that each lands in the field of its name).  A plain tuple
        built here, not a ``LoopState`` turned into one: its 25 keywords cost microseconds
        once per gulp, from cold caches."""
        g = self._gulps
        n = len(g)
        if n >= 2:
            gA, gB, mA, mB = g[0].data, g[1].data, g[0].mask, g[1].mask
        elif n == 1:
            gA, gB, mA, mB = g[0].data, self._dummy_gulp, g[0].mask, self._dummy_mask
        else:
            gA = gB = self._dummy_gulp
            mA = mB = self._dummy_mask
        st = self.stats_obj
        return (self._io, self._rbuf, self._rlen, self._meta, self._aux, self._auxlens, self._rst,
                self._hold, self._hlen, self._hst, self._cfg, self._fstate, self._d, self._cur,
                self._ref, self._chg, gA, gB, mA, mB, self._win, st.cnt, st.psrc, self._pend,
                self._addrs)

    def _run(self, nofetch: int) -> int:
        self._winv[L.W_NOFETCH] = nofetch
        args = self._loop_args()
        t0 = time.perf_counter()
        r = self._kmod.run(args)
        self.stats_obj.process_seconds += time.perf_counter() - t0
        return int(r)

    def _pump(self, nofetch: int) -> int:
        """Run the compiled loop and act on why it returned, until there is a status."""
        w = self._win
        wv = self._winv
        while True:
            reason = self._run(nofetch)
            active = wv[L.W_MODE] == L.MODE_ACTIVE or self._confirming
            if reason == L.RS_START and self._confirming:
                kind = int(w[L.W_VOTE])
                if self._resolve_change():
                    if kind == 2:
                        self.stats_obj.nrestarts += 1
                        return Status.STARTED
                    return Status.CHANGED
                continue  # a glitch: the open sequence goes on with the held packets
            if reason == L.RS_START:
                try:
                    self._begin_sequence()
                except BaseException:
                    # the callback or the ring refused: the gathered packets cannot be
                    # placed; count them (invalid) so that end() does not retry forever
                    self._kmod_drop_hold()
                    raise
                return Status.STARTED
            if reason == L.RS_ADVANCE:
                self._advance()
                return Status.CONTINUED
            if reason == L.RS_CHANGE:
                self._start_confirming(1)
                continue
            if reason == L.RS_JUMP:
                self._start_confirming(2)
                continue
            if reason == L.RS_BACKJUMP:
                self._end_sequence(int(w[L.W_LAST]) + 1)
                self.stats_obj.nrestarts += 1
                continue
            if reason in (L.RS_TIMEOUT, L.RS_EOF):
                if self._confirming:   # nothing left to vote with: keep the old config
                    self._stop_confirming()
                if active:
                    self._end_sequence(int(w[L.W_LAST]) + 1)
                    return Status.ENDED
                return Status.NO_DATA
            if reason == L.RS_INTR:
                return Status.INTERRUPTED
            if reason == L.RS_ERROR:
                e = int(self.stats_obj.cnt[L.C_ERRNO])
                self.last_error = OSError(e, f"{type(self).__name__}.recv: the receive failed: "
                                             f"{os.strerror(e) if e > 0 else 'unknown error'}")
                return Status.ERROR
            if reason == L.RS_BUDGET:
                return Status.CONTINUED if active else self._budget_status_idle
            if reason == L.RS_DRAINED:
                return _DRAINED
            raise AsbruError(f"capture: internal error, compiled loop returned {reason}")

    def _start_confirming(self, kind: int) -> None:
        """A packet disagrees with the open sequence's CHANGE fields (``kind`` 1) or is
        far ahead of its window (2): before ending the sequence, gather 2*nsrc+1 packets and
        let them vote (one corrupt header must not split the stream).  The open gulps stay
        reserved meanwhile."""
        w = self._win
        if kind == 1:
            # if the change wins, the old sequence ends at the change point, or after the
            # last old-configuration packet already placed
            s_c = int(w[L.W_SC])
            self._change_end = max(min(s_c, self._window_end()), int(w[L.W_LAST]) + 1)
        else:
            self._change_end = int(w[L.W_LAST]) + 1
        self._ref[:] = self._cur
        self._compact_hold()
        w[L.W_MODE] = L.MODE_GATHER
        w[L.W_VOTE] = kind
        w[L.W_GTARGET] = 2 * self.nsrc + 1
        self._confirming = True

    def _stop_confirming(self) -> None:
        w = self._win
        self._confirming = False
        w[L.W_VOTE] = 0
        w[L.W_GTARGET] = self.nsrc
        self._cur[:] = self._ref
        w[L.W_MODE] = L.MODE_ACTIVE
        self._hst[L.H_POS] = 0

    def _resolve_change(self) -> bool:
        """The vote is in (``W_NEWCFG``).  New configuration: end the old sequence, begin
        the new one at max(its smallest seq, the old sequence's end).  Old: carry on."""
        w = self._win
        if not w[L.W_NEWCFG]:
            self._stop_confirming()
            return False
        self._confirming = False
        w[L.W_VOTE] = 0
        w[L.W_GTARGET] = self.nsrc
        end = self._change_end
        gmin = int(w[L.W_GMIN])
        self._end_sequence(end)
        # sequences after a change never overlap in time, so their default time tags differ
        w[L.W_GMIN] = gmin if gmin - end >= 0 else end
        try:
            self._begin_sequence()
        except BaseException:
            self._kmod_drop_hold()
            raise
        return True

    def _compact_hold(self) -> None:
        """Forget the held packets already processed (before ``H_POS``)."""
        h = self._hst
        pos, nh = int(h[L.H_POS]), int(h[L.H_N])
        if pos > 0:
            rest = nh - pos
            if rest > 0:
                self._hold[:rest] = self._hold[pos:nh]
                self._hlen[:rest] = self._hlen[pos:nh]
            h[L.H_N] = max(rest, 0)
        h[L.H_POS] = 0
        h[L.H_GPOS] = 0
        h[L.H_NVALID] = 0

    def _drain(self, received_too: bool = False) -> None:
        """Place the held packets (and, for end(), the received but unprocessed ones)
        without receiving more, then close the sequence."""
        while self._pump(nofetch=2 if received_too else 1) != _DRAINED:
            pass
        if self._confirming:  # the disagreeing packet is still unprocessed: keep the old state
            self._stop_confirming()
            while self._pump(nofetch=1) != _DRAINED:
                pass
        if self._win[L.W_MODE] == L.MODE_ACTIVE:
            self._end_sequence(int(self._win[L.W_LAST]) + 1)

    def _kmod_drop_hold(self, unlearned: bool = False) -> None:
        h = self._hst
        for i in range(int(h[L.H_N])):
            if self._hlen[i] >= 0:
                self.stats_obj.cnt[L.C_NINVALID] += 1
                self.stats_obj.cnt[L.C_NINVALID_BYTES] += int(self._hlen[i])
                if unlearned:
                    self.stats_obj.cnt[L.C_NUNLEARNED] += 1
        h[:] = 0

    def _tell_unlearned(self) -> None:
        """One warning line each time more packets were dropped because the format never
        learnt the stream's rate (``stats['nunlearned']``)."""
        n = int(self.stats_obj.cnt[L.C_NUNLEARNED])
        if n <= self._unlearned_told:
            return
        new = n - self._unlearned_told
        self._unlearned_told = n
        what = getattr(self._fmt.module, "LEARNS", "its stream parameters")
        warnings.warn(f"{type(self).__name__}: {new} {self._fmt.name} packet(s) not placed: they "
                      f"came while the {what} was still being learnt from the stream (it ended, "
                      f"or the hold buffer was full); give sample_rate= (samples per second) "
                      f"to place every packet", CaptureWarning, stacklevel=3)

    def _window_end(self) -> int:
        w = self._win
        return int(w[L.W_S] + w[L.W_K] * w[L.W_N])

    # --- sequences
    def _begin_sequence(self) -> None:
        w = self._win
        seq0 = int(w[L.W_GMIN])
        d = self._cur.copy()
        p = int(d[PAYLOAD_SIZE])
        if p <= 0 or p > self._max_packet:
            raise AsbruError(f"capture: format {self._fmt.name!r} reported payload size {p}")
        fmt = self._fmt
        family = fmt.callback_family
        lead = fmt.callback_args(seq0, d, self.nsrc)
        default_tt = seq0 if family == "pointer" else fmt.time_tag_of(seq0, d)
        time_tag, header = default_tt, b""
        func = self._callback.get(fmt.name) if self._callback is not None else None
        source = "the format"
        if func is not None:
            self._in_callback = True
            try:
                res = call_sequence_callback(func, lead, family, fmt.name, seq0)
            except BaseException:
                self._failed_callback = func   # end() will not call it again
                raise
            finally:
                self._in_callback = False
            self._failed_callback = None
            header = res.header
            if res.time_tag is not None:
                time_tag = res.time_tag
                source = describe(func, fmt.name)
        try:
            self._wseq = self._writer.begin_sequence(name="", time_tag=int(time_tag),
                                                     header=header, nringlet=1)
        except ArgumentError as exc:
            if func is not None:
                self._failed_callback = func
            raise AsbruError(f"capture: cannot begin a ring sequence at seq0={seq0} with the time "
                             f"tag {time_tag} from {source}: {exc}") from None
        self._seqdesc[:] = d
        w[L.W_S] = seq0
        w[L.W_K] = 0
        w[L.W_P] = p
        w[L.W_LAST] = seq0 - 1
        w[L.W_BACKRUN] = 0
        w[L.W_MODE] = L.MODE_ACTIVE
        self._hst[L.H_POS] = 0
        self.stats_obj.nsequences += 1
        self.sequence_info = {"seq0": seq0, "time_tag": int(time_tag), "header": header,
                              "payload_size": p, "slot_bytes": p * self.nsrc}
        self.sequence_history.append(self.sequence_info)
        del self.sequence_history[:-1000]
        self._reserve()
        chans = {"payload_size": p}
        for name in ("chan0", "nchan", "tuning", "tuning1", "decimation", "navg"):
            v = int(d[spec.DESC_INDEX[name]])
            if v != -1:
                chans[name] = v
        self._logs.update("chans", chans)

    def _end_sequence(self, end_seq: int) -> None:
        """Commit the open gulps up to (not including) ``end_seq``, end the ring sequence,
        go back to gathering (keeping unprocessed held packets)."""
        n = self.buffer_ntime
        # far-ahead packets still waiting for agreement were strays: counted invalid
        self._kmod.drop_far(self._hlen, self._win, self.stats_obj.cnt)
        self._win[L.W_FARGO] = 0
        while self._gulps:
            g = self._gulps[0]
            self._commit(g, max(0, min(n, end_seq - g.start)))
            self._gulps.pop(0)
            self._shift_placed()
        if self._wseq is not None:
            self._wseq.end()
            self._wseq = None
        w = self._win
        w[L.W_K] = 0
        w[L.W_MODE] = L.MODE_GATHER
        # keep the held packets not yet processed, at the front, for the next gather
        self._compact_hold()

    # --- gulps
    def _reserve(self, span: Any = None) -> None:
        """Open the next gulp: a span reserved here, or ``span`` when the commit of the one
        before reserved it (``_commit``'s ``next_size``)."""
        w = self._winv
        n = self.buffer_ntime
        size = n * self.nsrc * w[L.W_P]
        st = self.stats_obj
        if span is None:
            t0 = time.perf_counter()
            span = self._wseq.reserve(size)
            dt = time.perf_counter() - t0
            st.blocked_seconds += dt
            st.reserve_seconds += dt
        data = span.first_ringlet()     # one row of the ring's C-contiguous buffer: contiguous
        if data.size != size:
            raise AsbruError(f"capture: the ring returned a span of {data.size} bytes for {size}")
        gulps = self._gulps
        k = len(gulps)
        w[L.W_PLACED0 + k] = 0
        gulps.append(_Gulp(span, data, np.zeros((n, self.nsrc), dtype=np.uint8), w[L.W_S] + k * n))
        w[L.W_K] = k + 1

    def _advance(self) -> None:
        t0 = time.perf_counter()
        gulps = self._gulps
        span = None
        if len(gulps) == 2:
            g = gulps.pop(0)
            span = self._commit(g, self.buffer_ntime, next_size=g.data.size)
            self._shift_placed()
            w = self._winv
            w[L.W_S] = gulps[0].start
            w[L.W_K] = 1
        self._reserve(span)
        self.stats_obj.reserve_seconds += time.perf_counter() - t0

    def _shift_placed(self) -> None:
        """The window's first gulp was committed: the second one's count moves up."""
        w = self._winv
        w[L.W_PLACED0] = w[L.W_PLACED0 + 1]
        w[L.W_PLACED0 + 1] = 0

    def _commit(self, g: _Gulp, nslots: int, next_size: int = 0) -> Any:
        """Commit the window's first gulp (``g``) up to ``nslots`` time slots.  With
        ``next_size``, the next gulp's span of that many bytes is reserved in the same call
        and returned (once per gulp: one ring call instead of four; ``engine``'s Python runs
        from caches the drain has just flushed)."""
        w = self._winv
        p = w[L.W_P]
        sb = self.nsrc * p
        span = g.span
        if nslots > 0:
            whole = nslots == self.buffer_ntime
            mask = g.mask if whole else g.mask[:nslots]
            st = self.stats_obj
            full = nslots * self.nsrc
            if whole and w[L.W_PLACED0] == full:
                st.cntv[L.C_NGOOD_BYTES] += full * p     # every packet came: nothing to zero
            else:
                self._kmod.zero_fill(self._cfg, g.data, mask, nslots, self._seqdesc.copy(), self._zero,
                                     self.nsrc, p, g.start, st.cnt, st.psrc)
            if next_size and whole:
                t0 = time.perf_counter()
                nxt = self._wseq.commit_then_reserve(span, mask, sb, next_size)
                dt = time.perf_counter() - t0
                st.blocked_seconds += dt
                st.reserve_seconds += dt
                return nxt
            span.hand_over_flags(mask, sb)
        span.commit(nslots * sb)
        span.close()
        return None

    # --- statistics
    def _publish(self) -> None:
        self._next_publish = time.monotonic() + PUBLISH_INTERVAL
        st = self.stats_obj
        stats = st.proclog_stats()
        # how much of the ring guaranteed readers still hold (1.0 = the capture waits), for
        # `asbru top`
        stats["ring_fill"] = round(float(getattr(self.ring, "fill", 0.0)), 4)
        self._logs.update("stats", stats)
        self._logs.update("perf", st.proclog_perf())
