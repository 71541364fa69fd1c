"""Even packet pacing for the writers, run inside the compiled send loops.

Bifrost's limiter compares the packet count since its first burst with the wall clock after
each burst; its clock never restarts, so after an idle period a writer sends a catch-up
burst at full speed, and by default a whole ``send()`` is one burst (docs/differences-from-bifrost.md, engine #12).

Here the limiter state is a small int64 array (:class:`RateLimiter.state`) that the compiled
loops update before every burst of at most :data:`MAX_BURST` packets:

* the target time of a burst is ``t0 + count / rate`` with ``t0`` the start of the current
  run of bursts and ``count`` the packets sent since then (so pacing errors do not
  accumulate: every target is computed from ``t0``, not from the previous burst);
* the loop sleeps (``clock_nanosleep``, absolute, CLOCK_MONOTONIC) until the target;
* at the start of a ``send()``, if the writer is later than its target by more than one
  full burst (it was idle, or the caller was slow to send more), the run restarts at "now":
  there is no catch-up burst after an idle period;
* inside one ``send()``, a delay that is not the caller's (the sending thread was preempted,
  the socket was full) is caught up - in bursts of at most 16 - as long as it is at most
  :data:`CATCHUP_NS` (20 ms); a longer delay also restarts the run.  Without this grace a
  busy machine (a few ms of preemption now and then) would make the average rate fall
  short of the limit by several per cent, and a real-time stream fall behind for good.

The burst size is ``clamp(rate / 1000, 1, 16)``: low rates are paced packet by packet (one
packet per millisecond at 1000 pkt/s), high rates in bursts of 16 so that the sleep/wake
cost stays small next to the send cost.
"""
from __future__ import annotations

import ctypes
import ctypes.util

import llvmlite.binding as _ll
import numpy as np
from numba import njit, types
from numba.core import config as _nbconfig

from asbru.errors import ArgumentError

__all__ = ["RateLimiter", "pace", "paced", "now_ns", "MAX_BURST"]

MAX_BURST = 16
CATCHUP_NS = 20_000_000
CLOCK_MONOTONIC = 1
TIMER_ABSTIME = 1

# state layout
R_RATE = 0    # packets per second, 0 = unlimited
R_T0 = 1      # CLOCK_MONOTONIC ns at the start of the current run, 0 = not started
R_COUNT = 2   # packets paced since R_T0
R_BURST = 3   # packets per burst
R_NRESTART = 4  # how many times the run restarted (statistics, tests)
NSTATE = 8

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
for _name in ("clock_gettime", "clock_nanosleep"):
    # by-name external functions keep numba's on-disk cache usable (see asbru.sockets.syscalls)
    _ll.add_symbol(_name, ctypes.cast(getattr(_libc, _name), ctypes.c_void_p).value)
_clock_gettime = types.ExternalFunction("clock_gettime", types.int32(types.int32, types.int64))
_clock_nanosleep = types.ExternalFunction(
    "clock_nanosleep", types.int32(types.int32, types.int32, types.int64, types.int64))

if _nbconfig.DISABLE_JIT:
    # NUMBA_DISABLE_JIT=1 (pacing run as Python, for a debugger): the same libc calls
    # through ctypes, with the same arguments (timespec pointers as integers)
    _libc_py = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _libc_py.clock_gettime.argtypes = [ctypes.c_int, ctypes.c_void_p]
    _libc_py.clock_nanosleep.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]

    def _clock_gettime(clock: int, ts_addr: int) -> int:
        return _libc_py.clock_gettime(int(clock), int(ts_addr))

    def _clock_nanosleep(clock: int, flags: int, ts_addr: int, rem_addr: int) -> int:
        return _libc_py.clock_nanosleep(int(clock), int(flags), int(ts_addr), int(rem_addr) or None)


@njit(nogil=True, cache=True)
def now_ns(ts):
    """CLOCK_MONOTONIC in ns; ``ts`` is an int64[2] scratch (struct timespec)."""
    _clock_gettime(CLOCK_MONOTONIC, ts.ctypes.data)
    return ts[0] * 1000000000 + ts[1]


@njit(nogil=True, cache=True)
def sleep_until(ts, t_ns):
    """Sleep until CLOCK_MONOTONIC ``t_ns`` (absolute: no drift from wake-up latency)."""
    ts[0] = t_ns // 1000000000
    ts[1] = t_ns - ts[0] * 1000000000
    # EINTR: a signal woke us early; sleeping again to the same absolute time is correct
    for _ in range(1000):
        if _clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ts.ctypes.data, 0) == 0:
            break


@njit(nogil=True, cache=True)
def pace(state, ts, want, first):
    """Wait until a burst may go; return how many of ``want`` packets it may hold.

    Called by the send loops before each burst (``first``: the first burst of a ``send()``);
    they then report the packets actually handed over with :func:`paced`.  With no limit
    it returns ``want`` at once.
    """
    rate = state[R_RATE]
    if rate <= 0:
        return want
    n = want
    if n > state[R_BURST]:
        n = state[R_BURST]
    now = now_ns(ts)
    if state[R_T0] == 0:
        state[R_T0] = now
        state[R_COUNT] = 0
        return n
    # integer ns arithmetic; count * 1e9 stays far below 2**63 for any realistic run
    target = state[R_T0] + (state[R_COUNT] * 1000000000) // rate
    slack = (MAX_BURST * 1000000000) // rate
    if not first and slack < CATCHUP_NS:
        slack = CATCHUP_NS
    if now - target > slack:
        # idle (or too far behind): restart the run, no catch-up burst
        state[R_T0] = now
        state[R_COUNT] = 0
        state[R_NRESTART] += 1
    elif target > now:
        sleep_until(ts, target)
    return n


@njit(nogil=True, cache=True)
def paced(state, n):
    """Record that ``n`` packets of the burst left (or failed): they used their time slot."""
    rate = state[R_RATE]
    if rate > 0:
        state[R_COUNT] += n
        # keep count * 1e9 far from int64 overflow on long runs: move t0 on by whole
        # seconds (exact in integers, so the pacing grid does not drift)
        while state[R_COUNT] >= rate and state[R_T0] != 0:
            state[R_COUNT] -= rate
            state[R_T0] += 1000000000


class RateLimiter:
    """The limiter state of one writer; shared with its compiled send loop."""

    def __init__(self) -> None:
        self.state = np.zeros(NSTATE, dtype=np.int64)
        self.ts = np.zeros(2, dtype=np.int64)  # timespec scratch for the compiled loop

    @property
    def rate(self) -> int:
        return int(self.state[R_RATE])

    def set(self, packets_per_second: int) -> None:
        """Limit to ``packets_per_second`` (0 = unlimited); restarts the pacing clock."""
        try:
            pps = -1 if isinstance(packets_per_second, bool) else int(packets_per_second)
        except (TypeError, ValueError):
            pps = -1
        if pps < 0 or pps != packets_per_second:
            raise ArgumentError(f"packets_per_second: expected an integer >= 0 (0 = no limit), "
                                f"got {packets_per_second!r}")
        self.state[R_RATE] = pps
        self.state[R_BURST] = min(MAX_BURST, max(1, pps // 1000))
        self.reset()

    def reset(self) -> None:
        """Restart the pacing clock: the next packet goes at once, later ones are paced from it."""
        self.state[R_T0] = 0
        self.state[R_COUNT] = 0
