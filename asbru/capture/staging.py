"""Drain a bound UDP socket while the capture loop compiles, so that nothing is lost.

A ``UDPCapture`` is made for a socket the caller has already bound: datagrams queue from
that moment.  Compiling the loop takes seconds on a cold kernel cache (loading it from the
cache ~0.2 s); an unprivileged socket buffer (a few MiB) holds well under a second of a
fast stream, and the kernel drops the rest.  So from the start of the construction until
the loop is ready, a thread reads the socket into staging rows; the compiled ``_fetch`` of the UDP backend then hands the staged
packets out first, in arrival order, before it receives anything newer (see ``IO_STAGE_*``
in :mod:`asbru.capture.layout`).

The reading is done by a compiled loop that holds no GIL
(:func:`asbru.capture.drain_kernel.drain`): the compile keeps the GIL busy, and a drain
that needed it between system calls fell behind a fast stream.  That loop is loaded (or,
once per machine, compiled) before the capture loop's compile starts; while it compiles,
the thread drains through ctypes (``_drain_with_ctypes``), which is enough for the
second or so it takes.

The staging rows are one ``numpy.empty`` allocation of ``max_bytes`` (default:
:func:`default_stage_bytes`): only the pages written to are backed by memory.  When they are full the drain stops and the socket
buffer takes over; what that cannot hold the kernel drops and counts (the capture's
``stats["nkernel_drops"]``), and :meth:`Stager.stop` warns (:class:`StagingFullWarning`).
"""
from __future__ import annotations

import ctypes
import errno
import os
import select
import threading
import time
import warnings
from typing import Any, Optional

import numpy as np

from . import drain_kernel as K

#: the default staging capacity is a quarter of the memory available when the capture is
#: made, within these bounds (1 GiB where /proc/meminfo cannot say): rows take memory only
#: as datagrams fill them, and are freed once the loop has handed them all out.  A cold
#: compile took 9-90 s on a shared 2-core machine (the more loaded, the longer); 20 000
#: datagrams/s of 8 KiB (rows of 9000 bytes) fill 180 MB/s: 5 GiB hold ~30 s of that
STAGE_BYTES_MIN = 256 << 20
STAGE_BYTES_MAX = 16 << 30
STAGE_BYTES = 1 << 30

#: how long stop() waits for the drain to notice (it polls every K.POLL_MS)
_JOIN_S = 30.0


def default_stage_bytes() -> int:
    """``stage_bytes`` when none is given: a quarter of ``MemAvailable``, kept within
    ``STAGE_BYTES_MIN..STAGE_BYTES_MAX`` (``STAGE_BYTES`` where that is unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    return int(min(max(avail // 4, STAGE_BYTES_MIN), STAGE_BYTES_MAX))
    except (OSError, ValueError, IndexError):
        pass
    return STAGE_BYTES


class StagingFullWarning(RuntimeWarning):
    """The staging rows filled while the capture loop compiled: later datagrams waited in
    the socket buffer, and the kernel dropped (and counted) what it could not hold."""


def _libc_recvmmsg() -> Any:
    import ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fn = libc.recvmmsg
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    return fn


def _compile_in_child() -> None:
    """Compile the drain loop into numba's on-disk cache in a child process.

    Meanwhile this process only waits (the GIL free), so the ctypes drain keeps up; a
    compile here would keep the GIL busy for the second or more it takes -- the very thing
    the compiled drain is there to avoid.  Any failure leaves the compile to this process."""
    import subprocess
    import sys
    exe = sys.executable or ""
    if not os.path.basename(exe).startswith("python"):
        return                          # an embedding program, not an interpreter to run
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    try:
        subprocess.run([exe, "-c", "from asbru.capture import drain_kernel; drain_kernel.load()"],
                       env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=600, check=False)
    except (OSError, subprocess.SubprocessError):
        pass


def _load_kernel() -> float:
    """Load the drain loop (or compile it: first use on this machine, said on stderr)."""
    import sys
    from asbru.formats.engine import is_cached
    cold = not is_cached(K.drain)
    quiet = not cold or bool(os.environ.get("ASBRU_QUIET"))
    if not quiet:
        sys.stderr.write("asbru: compiling the staging drain kernel (first use on this machine) ...\n")
        sys.stderr.flush()
    t0 = time.perf_counter()
    if cold:
        _compile_in_child()
    K.load()                            # from the cache now (or compiled here, if that failed)
    seconds = time.perf_counter() - t0
    if not quiet:
        sys.stderr.write(f"asbru: compiled the staging drain kernel in {seconds:.1f} s\n")
        sys.stderr.flush()
    return seconds


class Stager:
    """Reads datagrams of up to ``row`` bytes from ``fd`` in a thread until :meth:`stop`
    or ``max_bytes`` of rows are full.

    The thread enters the compiled drain loop and stays in it, without the GIL, until
    stopped; the constructor returns once it is there (or once it has ended), so that a
    compile started afterwards cannot starve it."""

    def __init__(self, fd: int, row: int, max_bytes: Optional[int] = None,
                 poll_ms: int = K.POLL_MS) -> None:
        if max_bytes is None:
            max_bytes = default_stage_bytes()
        self.fd = fd
        self.row = row
        self.max_bytes = max_bytes
        nrow = max(1, max_bytes // row)
        while True:    # address space may be limited (ulimit -v): settle for less
            try:
                self.buf = np.empty((nrow, row), dtype=np.uint8)
                break
            except MemoryError:
                if nrow <= 64:
                    raise
                nrow //= 2
        # lengths in the receive-buffer convention: -1 - n marks a datagram longer than a row
        self.lens = np.empty(nrow, dtype=np.int64)
        self.ctl = K.new_ctl(poll_ms)
        self._hdrs, self._iov = K.batch_arrays(row)
        # pollfds of the socket and of a pipe that stop() writes to: a stop is seen at once
        self._wake_r, self._wake_w = os.pipe()
        self._pfd = np.array([0, self._wake_r], dtype=np.int64)
        self.error: Optional[OSError] = None
        self.kernel_seconds = 0.0      # loading (or compiling) the drain loop
        self.t_start = time.monotonic()
        self.t_stop = 0.0
        self.t_end = 0.0               # when the drain ended (stopped, full, shut down)
        self._kernel_ready = threading.Event()
        self._in_kernel = threading.Event()   # set when the thread is in it (or has ended)
        self._thread = threading.Thread(target=self._drain, name="asbru-stage", daemon=True)
        self._thread.start()
        try:
            self.kernel_seconds = _load_kernel()
        except BaseException:
            self.ctl[K.CTL_STOP] = 1         # the thread must not call an uncompiled loop
            self._kernel_ready.set()
            self._halt()
            raise
        self._kernel_ready.set()
        # the thread needs the GIL once more to enter the loop: give it before a compile
        # takes the GIL for seconds
        self._in_kernel.wait(timeout=_JOIN_S)

    # -- the thread
    def _drain(self) -> None:
        try:
            if not self._kernel_ready.is_set() and not self._drain_with_ctypes():
                return
            if self.ctl[K.CTL_STOP]:
                self.ctl[K.CTL_END] = K.END_STOPPED
                return
            self._in_kernel.set()
            K.drain(self.fd, self.buf, self.lens, self._hdrs, self._iov, self._pfd, self.ctl)
            if self.ctl[K.CTL_END] == K.END_ERROR:
                e = int(self.ctl[K.CTL_ERRNO])
                self.error = OSError(e, os.strerror(e))
        finally:
            self.t_end = time.monotonic()
            self._in_kernel.set()

    def _drain_with_ctypes(self) -> bool:
        """Drain through ctypes until the compiled loop is ready; False when draining ended
        here (stopped, full, shut down or failed)."""
        recvmmsg = _libc_recvmmsg()
        take = getattr(K.take_batch, "py_func", K.take_batch)
        poller = select.poll()
        poller.register(self.fd, select.POLLIN | K.POLLRDHUP)
        poller.register(self._wake_r, select.POLLIN)
        ctl = self.ctl
        nrow = self.buf.shape[0]
        flags = K.sc.MSG_DONTWAIT | K.sc.MSG_TRUNC
        while not self._kernel_ready.is_set():
            if ctl[K.CTL_STOP]:
                ctl[K.CTL_END] = K.END_STOPPED
                return False
            first = int(ctl[K.CTL_N])
            if first >= nrow:
                ctl[K.CTL_END] = K.END_FULL
                return False
            revents = dict(poller.poll(int(ctl[K.CTL_POLL_MS]))).get(self.fd, 0)
            if revents & (K.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL):
                ctl[K.CTL_END] = K.END_SHUT
                return False
            if not revents & select.POLLIN:
                continue               # nothing yet, or a wake-up: look at the flags again
            k = min(K.BATCH, nrow - first)
            self._iov[:k, 0] = (self.buf.ctypes.data
                                + (first + np.arange(k, dtype=np.uint64)) * np.uint64(self.row))
            got = recvmmsg(self.fd, self._hdrs.ctypes.data, k, flags, None)
            if got < 0:
                e = ctypes.get_errno()
                if e in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    continue
                ctl[K.CTL_END] = K.END_ERROR
                ctl[K.CTL_ERRNO] = e
                self.error = OSError(e, os.strerror(e))
                return False
            take(self._hdrs, self.lens, first, got, self.row, ctl)
            if got < k:
                time.sleep(K.SETTLE_MS / 1000)      # let a few arrive: fewer, fuller calls
        return True

    # -- the owner
    @property
    def n(self) -> int:
        """Datagrams staged so far (rows ``0..n-1`` are complete)."""
        return int(self.ctl[K.CTL_N])

    @property
    def nbytes(self) -> int:
        """Bytes those datagrams had (an oversize one at its real size)."""
        return int(self.ctl[K.CTL_BYTES])

    @property
    def noversize(self) -> int:
        """Of :attr:`n`: longer than a row, staged cut to the row and marked invalid."""
        return int(self.ctl[K.CTL_NOVERSIZE])

    @property
    def full(self) -> bool:
        """The rows filled: the drain stopped before it was asked to."""
        return int(self.ctl[K.CTL_END]) == K.END_FULL

    def _halt(self) -> None:
        """Tell the thread to stop, wake it, wait for it, close the wake-up pipe."""
        self.ctl[K.CTL_STOP] = 1
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass                    # the loop still sees the flag within CTL_POLL_MS
        self._thread.join(_JOIN_S)
        if not self._thread.is_alive():
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1

    def stop(self) -> int:
        """Stop reading; the number of datagrams staged.  Warns if the rows were full."""
        if self.t_stop:
            return self.n               # stopped already
        self._halt()
        if self._thread.is_alive():     # never expected: poll wakes every CTL_POLL_MS
            raise RuntimeError("asbru: the staging drain did not stop")
        self.t_stop = time.monotonic()
        if self.full:
            warnings.warn(
                f"the staging rows filled while the capture loop compiled: {self.n} datagrams "
                f"({self.nbytes / 2**20:.0f} MiB, stage_bytes={self.max_bytes}) staged in "
                f"{self.t_stop - self.t_start:.1f} s; later datagrams waited in the socket "
                f"buffer and what it could not hold the kernel dropped (counted in "
                f"stats['nkernel_drops']); give a larger stage_bytes= or run `asbru warmup` "
                f"first", StagingFullWarning, stacklevel=2)
        return self.n

    def summary(self) -> dict[str, Any]:
        """What the drain did (for tools and tests)."""
        return {"nstaged": self.n, "nstaged_bytes": self.nbytes, "noversize": self.noversize,
                "full": self.full, "rows": int(self.buf.shape[0]), "row": self.row,
                "calls": int(self.ctl[K.CTL_NCALLS]), "kernel_seconds": self.kernel_seconds,
                "seconds": max(0.0, self.t_end - self.t_start), "end": int(self.ctl[K.CTL_END])}
