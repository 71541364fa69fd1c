"""What the disk and UDP writers share: format lookup, argument checks, header building,
framecount, rate limiter, statistics, the optional pinned sending thread.

One ``send()`` = one compiled call that fills every header of the batch into one
``(npkt, header_size)`` array (the format's generated ``fill_headers``), then one compiled
call of the back end's transfer loop (:mod:`asbru.writers.kernels`) that hands all packets
to the kernel.  Python does a fixed amount of work per ``send()``, none per packet.
"""
from __future__ import annotations

import concurrent.futures
import errno as _errno
import operator
import os
import threading
import time
import weakref
from typing import Any, NamedTuple

import numpy as np

from asbru import formats
from asbru.errors import ArgumentError, AsbruError
from asbru.formats import batch
from asbru.formats.spec import NINFO
from asbru.proclog import BlockLogs
from asbru.writers import kernels as K
from asbru.writers.headerinfo import HeaderInfo
from asbru.writers.payload import payload_view
from asbru.writers.ratelimit import RateLimiter

__all__ = ["PacketWriter", "WriterStats"]

_I64 = (-(1 << 63), (1 << 63) - 1)


class WriterStats(NamedTuple):
    """Cumulative counts of one writer (Bifrost's proclog ``<kind>/stats`` values)."""
    nvalid: int          # packets handed to the kernel (written / sent)
    nvalid_bytes: int    # their bytes, header + payload
    ninvalid: int        # packets that failed
    ninvalid_bytes: int


def _seq_arg(name: str, value: Any) -> int:
    """seq/src arguments: any integer that fits 64 bits; u64 values above 2**63 wrap to the
    same bits (headers carry them as u64)."""
    try:
        v = operator.index(value)
    except TypeError:
        raise ArgumentError(f"{name}: expected an integer, got {type(value).__name__} {value!r}") from None
    if not -(1 << 63) <= v < (1 << 64):
        raise ArgumentError(f"{name}: {v} does not fit in 64 bits")
    if v > _I64[1]:
        v -= 1 << 64
    return v


def _info_array(headerinfo: Any) -> np.ndarray:
    if isinstance(headerinfo, HeaderInfo):
        return headerinfo.array
    arr = getattr(headerinfo, "array", headerinfo)
    if isinstance(arr, np.ndarray) and arr.dtype == np.int64 and arr.shape == (NINFO,) \
            and arr.flags.c_contiguous:
        return arr
    raise ArgumentError(f"headerinfo: expected an asbru HeaderInfo, got {type(headerinfo).__name__}")


def _check_core(core: Any) -> int | None:
    if core is None:
        return None
    try:
        c = operator.index(core)
    except TypeError:
        raise ArgumentError(f"core: expected None, -1 or a CPU number, got {core!r}") from None
    if c == -1:  # Bifrost's "not pinned"
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if c not in allowed:
        raise ArgumentError(f"core: {c} is not a CPU this process may use; accepted: None, -1, "
                            f"{', '.join(map(str, allowed))}")
    return c


#: header arrays up to this size are kept for the next send() (no allocation per call)
KEEP_HEADER_BYTES = 16 << 20

#: statistics are published at most this often (s): rewriting the proclog file costs
#: ~0.1 ms, more than a small send() itself; monitoring tools sample about once a second
PUBLISH_INTERVAL = 0.1


class PacketWriter:
    """Base of :class:`DiskWriter` and :class:`UDPTransmit` (not used directly)."""

    #: proclog block name, Bifrost's
    KIND = "packet_writer"

    def __init__(self, fmt: str, target: Any, core: int | None = None) -> None:
        self._format = formats.get(fmt, role="write")  # FormatError: unknown or not writable
        params = self._format.params
        self._fmt_string = fmt
        self._hsize = int(self._format.header.size)
        self._spp = int(params.samples_per_packet or 0)
        self._dtype = str(params.write_dtype)
        self._wcfg = self._format.write_config()
        self._fill = batch.header_filler(self._format) if self._hsize else None
        self._compile_fill()
        self._target = target       # keep the object (and so its descriptor) alive
        self._check_target(self._fileno())  # reject an unusable target before anything else
        self._core = _check_core(core)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._framecount = 0
        self._limiter = RateLimiter()
        self._counts = np.zeros(4, dtype=np.int64)
        self._hbuf = np.zeros((0, self._hsize), dtype=np.uint8)
        self._pfd = np.zeros(2, dtype=np.int32)
        self.last_error: int = 0
        """errno of the last per-packet failure that did not stop a send (e.g. ECONNREFUSED)."""
        self._published = -1.0
        self._proclog = self._open_proclog()

    def _compile_fill(self) -> None:
        """Compile (or load) the header filler now, saying so when it compiles, not silently
        in the first send(): one call that fills no header, with send()'s argument types."""
        if self._fill is None:
            return
        import sys

        from asbru.formats.engine import announce
        with announce(sys.modules[self._fill.__module__], self._format.name, "write",
                      entry="fill_headers"):
            self._fill(np.zeros((0, self._hsize), dtype=np.uint8), np.zeros(NINFO, dtype=np.int64),
                       self._wcfg, 0, 0, 0, 0, 0, 0, 0)

    # -- descriptor -------------------------------------------------------------------
    def _fileno(self) -> int:
        name = self._TARGET_ARG
        try:
            fd = self._target.fileno()
        except AttributeError:
            raise ArgumentError(f"{name}: expected an object with fileno(), got "
                                f"{type(self._target).__name__}") from None
        except (ValueError, OSError) as exc:  # closed file objects raise ValueError
            raise ArgumentError(f"{name}: has no usable descriptor ({exc})") from None
        if not isinstance(fd, int) or fd < 0:
            raise ArgumentError(f"{name}: is not open (fileno() returned {fd!r}); "
                                f"open/connect it before writing")
        return fd

    _TARGET_ARG = "target"

    def _check_target(self, fd: int) -> None:
        """Back ends refuse descriptors they cannot use (one-line ArgumentError)."""

    # -- Bifrost API ------------------------------------------------------------------
    def send(self, headerinfo: HeaderInfo, seq: int, seq_increment: int, src: int,
             src_increment: int, data: Any) -> int:
        """Write/send every packet of ``data`` (shape ``(ntime, nsrc, samples_per_packet)``).

        Packet ``k = i*nsrc + j`` (time-major) carries ``seq + i*seq_increment``, source
        ``src + j*src_increment`` and framecount ``framecount + i``; its payload is
        ``data[i, j]``.  Returns the number of packets handed to the kernel (Bifrost returns
        None).  Raises :class:`AsbruError` when the descriptor fails (the packets not
        written are counted in ``stats.ninvalid``); packets refused by an unreachable UDP
        peer are only counted (see ``docs/writing.md``).
        """
        info = _info_array(headerinfo)
        seq = _seq_arg("seq", seq)
        seq_increment = _seq_arg("seq_increment", seq_increment)
        src = _seq_arg("src", src)
        src_increment = _seq_arg("src_increment", src_increment)
        payload, ntime, nsrc = payload_view(data, self._fmt_string, self._dtype, self._spp)
        npkt = ntime * nsrc
        out = np.zeros(K.NOUT, dtype=np.int64)
        with self._lock:
            fd = self._fileno()
            if npkt == 0:
                return 0
            if self._hbuf.shape[0] >= npkt:
                hdrs = self._hbuf[:npkt]
            else:
                hdrs = np.zeros((npkt, self._hsize), dtype=np.uint8)
                if hdrs.nbytes <= KEEP_HEADER_BYTES:  # reused by later sends of this size
                    self._hbuf = hdrs
            if self._fill is not None:
                # Python ints: numba types them int64 (cheaper than building np.int64s)
                fill_args = (info, self._wcfg, seq, seq_increment, src, src_increment,
                             ntime, nsrc, self._framecount)
                if not self._defer_fill(hdrs, payload, fill_args):
                    self._fill(hdrs, *fill_args)
            self._framecount += ntime
            try:
                self._run(fd, hdrs, payload, out)
            finally:
                # also when interrupted (a KeyboardInterrupt between two batches of an
                # overlapped disk write): the packets written so far are counted
                self._counts += out[:4]
            if out[K.O_NSOFT]:
                self.last_error = int(out[K.O_SOFT])
            self._publish(force=bool(out[K.O_FATAL]))
        fatal = int(out[K.O_FATAL])
        if fatal:
            code = _errno.errorcode.get(fatal, str(fatal))
            raise AsbruError(f"{type(self).__name__}.send: {os.strerror(fatal)} ({code}) after "
                             f"{int(out[K.O_NVALID])} of {npkt} packets; the rest are counted in "
                             "stats.ninvalid")
        return int(out[K.O_NVALID])

    def set_rate_limit(self, packets_per_second: int) -> None:
        """Pace packets at ``packets_per_second`` (0 = no limit), in bursts of at most 16."""
        with self._lock:
            self._limiter.set(packets_per_second)

    def reset_rate_limit(self) -> None:
        """Restart the pacing clock (asbru extension; Bifrost's C API has it, Python not)."""
        with self._lock:
            self._limiter.reset()

    def reset_counter(self) -> None:
        """Reset the header framecount (tbn/tbf frame counter) to 0."""
        with self._lock:
            self._framecount = 0

    # -- asbru extensions ---------------------------------------------------------------
    @property
    def stats(self) -> WriterStats:
        """Cumulative ``nvalid``, ``nvalid_bytes``, ``ninvalid``, ``ninvalid_bytes``."""
        c = self._counts
        return WriterStats(int(c[0]), int(c[1]), int(c[2]), int(c[3]))

    @property
    def format(self) -> str:
        return self._fmt_string

    @property
    def framecount(self) -> int:
        return self._framecount

    @property
    def rate_limit(self) -> int:
        return self._limiter.rate

    @property
    def core(self) -> int | None:
        return self._core

    def close(self) -> None:
        """Stop the pinned sending thread, if any (the file/socket stays open: it is the caller's)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        with self._lock:
            self._publish(force=True)  # the final counts, whatever the publish interval

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)

    # -- internals ------------------------------------------------------------------------
    def _defer_fill(self, hdrs: np.ndarray, payload: np.ndarray, fill_args: tuple) -> bool:
        """A back end that fills the headers itself, batch by batch during the transfer,
        keeps ``fill_args`` (the filler's arguments after ``hdrs``) and returns True."""
        return False

    def _transfer(self, fd: int, hdrs: np.ndarray, payload: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError

    def _run(self, fd: int, hdrs: np.ndarray, payload: np.ndarray, out: np.ndarray) -> None:
        if self._core is None:
            self._transfer(fd, hdrs, payload, out)
            return
        if self._pool is None:
            # the worker pins itself (pid 0 = the calling *thread* on Linux); the thread
            # that called send() keeps its affinity
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"asbru-{self.KIND}",
                initializer=os.sched_setaffinity, initargs=(0, {self._core}))
        self._pool.submit(self._transfer, fd, hdrs, payload, out).result()

    def _open_proclog(self) -> Any | None:
        try:
            logs = BlockLogs(self.KIND)
            logs.update("type", {"type": self._type_name()})
            logs.update("bind", {"ncore": 1, "core0": -1 if self._core is None else self._core})
        except OSError:
            return None  # monitoring must never stop data from being written
        weakref.finalize(self, logs.close)  # the block's files go with the writer
        return logs

    def _type_name(self) -> str:
        # the proclog "type" string: the format's own (ibeam<B>, tbf256...) or its name
        own = getattr(self._format.module, "proclog_type", None)
        return own(self._format.params) if own is not None else self._format.name

    def _publish(self, force: bool = False) -> None:
        if self._proclog is None:
            return
        now = time.monotonic()
        if not force and now - self._published < PUBLISH_INTERVAL:
            return
        self._published = now
        s = self.stats
        try:
            self._proclog.update("stats", {
                "ngood_bytes": s.nvalid_bytes, "nmissing_bytes": s.ninvalid_bytes,
                "ninvalid": s.ninvalid, "ninvalid_bytes": s.ninvalid_bytes,
                "nlate": 0, "nlate_bytes": 0, "nvalid": s.nvalid, "nvalid_bytes": s.nvalid_bytes})
        except OSError:
            pass
