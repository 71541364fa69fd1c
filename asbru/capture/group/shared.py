"""The control block one capture's leader and followers share, and the few low-level
operations they need beyond numpy (an address seen as an array, a memory fence, a yield).

The control block ``ctl`` is one int64 array.  The leader writes the ``G_*`` words (the
window, published seqlock-style: ``G_EPOCH`` is odd while it is being rewritten), each
follower ``i`` writes its own row ``F_BASE + i * F_STRIDE + F_*`` (its acknowledged epoch,
whether it is idle, its hand-off queue's head, ...), and the leader reads them.  Each
follower row is a cache line of its own, so followers do not slow each other down.

The protocol and why it is exact: docs/multicore.md.
"""
from __future__ import annotations

import ctypes

import llvmlite.binding as _ll
import numba
import numpy as np
from numba import types
from numba.core import config
from numba.extending import intrinsic

from asbru.formats.spec import NDESC, NSTATE

# --- window states (G_STATE) ---------------------------------------------------------------
ST_GATHER = 0    # no open window: followers hand every packet to the leader
ST_OPEN = 1      # followers place packets of the published window themselves
ST_PAUSE = 2     # followers wait (receive nothing): only the benchmarks use it, to hold them

# --- leader words -------------------------------------------------------------------------
G_EPOCH = 0      # odd while the leader rewrites the window; +2 per published window
G_STOP = 1       # 1: followers finish the packets they hold and leave (2: and drop hand-offs)
G_LWAIT = 2      # 1: the leader sleeps on the event descriptor: a hand-off must wake it
G_NF = 3         # followers
G_WANT = 4       # the stamp of the hand-off the leader keeps back until every follower of an
                 # ordered stream is past it (see F_POS): the one whose passing should wake it
# the window: the words a publication replaces (G_STATE .. G_END)
G_STATE = 8
G_S = 9          # first seq of the window (the oldest open gulp)
G_K = 10         # open gulps (1 or 2)
G_N = 11         # time slots per gulp
G_NSRC = 12
G_P = 13         # payload bytes per packet
G_GA = 14        # address of the first open gulp's bytes
G_GB = 15        # address of the second's (0 if none)
G_SLOTA = 16     # which of the 3 per-follower mask planes the first gulp uses
G_SLOTB = 17
G_SEQID = 18     # sequences begun: a follower forgets its largest seq when it changes
G_CUR = 20       # the sequence's descriptor (NDESC words; only the CHANGE fields are used)
G_FSTATE = G_CUR + NDESC   # the format's decode state (NSTATE words)
G_END = G_FSTATE + NSTATE  # the words copied by a publication: G_STATE .. G_END
F_BASE = ((G_END + 7) // 8) * 8 + 8

# --- follower rows (F_BASE + i * F_STRIDE + ...) -------------------------------------------
F_ACK = 0        # the newest epoch this follower works with (nothing older is in use)
F_IDLE = 1       # 1 while it waits for packets (it holds no window then)
F_QHEAD = 2      # packets pushed to its hand-off queue (written by the follower)
F_QTAIL = 3      # packets taken from it (written by the leader)
F_LAST = 4       # largest seq it placed in the current sequence (LAST_NONE: none)
F_DONE = 5       # 1: it has left (stop, end of stream or an error)
F_ERRNO = 6      # the errno that ended it (0: none)
F_NRECV = 7      # datagrams received (the leader's "is the stream alive" clock)
F_NHAND = 8      # datagrams handed to the leader
F_SEQID = 9      # the G_SEQID its F_LAST belongs to
F_SEEN = 10      # largest seq it has seen at or beyond the window (how far its stream is)
F_WAIT_NS = 11   # nanoseconds it waited for the leader (a paused or moving window)
F_POS = 12       # followers of one ordered stream (a file): the stamp of the next packet it
                 # has not finished; every packet before it is placed or handed over.  The
                 # leader takes a hand-off only when every follower is past its stamp
                 # (POS_ANY: no order across followers, as for sockets)
F_STRIDE = 16

LAST_NONE = -(1 << 62)
POS_ANY = (1 << 63) - 1


def ctl_size(nfollowers: int) -> int:
    return F_BASE + F_STRIDE * nfollowers


# --------------------------------------------------------------------------------------
# Low-level operations.  Under NUMBA_DISABLE_JIT=1 each has a Python version.

@intrinsic
def _voidptr_compiled(typingctx, addr):
    sig = types.voidptr(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return sig, codegen


@intrinsic
def _fence_compiled(typingctx):
    """A full fence (``mfence`` on x86): also keeps the compiler from moving loads and
    stores of shared words across it."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


def _u8_at_python(addr, n):
    return np.ctypeslib.as_array((ctypes.c_uint8 * int(n)).from_address(int(addr)))


def _fence_python():
    return None


if config.DISABLE_JIT:
    u8_at = _u8_at_python
    fence = _fence_python
else:
    fence = _fence_compiled

    @numba.njit(nogil=True, cache=True, inline="always")
    def u8_at(addr, n):
        """``n`` bytes at address ``addr`` as a uint8 array (no owner: the caller keeps the
        memory alive -- a ring span the leader holds until every follower has let go)."""
        return numba.carray(_voidptr_compiled(addr), (n,), np.uint8)


# sched_yield / clock_gettime by symbol name (cacheable; see asbru/sockets/syscalls.py)
_libc = ctypes.CDLL(None, use_errno=True)
_ll.add_symbol("sched_yield", ctypes.cast(_libc.sched_yield, ctypes.c_void_p).value)
_ll.add_symbol("clock_gettime", ctypes.cast(_libc.clock_gettime, ctypes.c_void_p).value)
_sched_yield = types.ExternalFunction("sched_yield", types.int32())
_clock_gettime = types.ExternalFunction("clock_gettime", types.int32(types.int32, types.int64))


if config.DISABLE_JIT:
    import os as _os
    import time as _time

    def yield_cpu():
        _os.sched_yield()

    def now_ns(ts):
        return _time.monotonic_ns()
else:
    @numba.njit(nogil=True, cache=True)
    def yield_cpu():
        """Let another thread of this core run (a waiting follower or leader spins with it)."""
        _sched_yield()

    @numba.njit(nogil=True, cache=True)
    def now_ns(ts):
        """CLOCK_MONOTONIC in nanoseconds; ``ts``: an int64[2] scratch array."""
        _clock_gettime(1, ts.ctypes.data)
        return ts[0] * 1_000_000_000 + ts[1]


@numba.njit(nogil=True, cache=True)
def publish(ctl, words):
    """Leader: replace the window words ``G_STATE .. G_END`` by ``words`` (seqlock: a
    follower that reads while this runs sees an odd or changed epoch and reads again)."""
    e = ctl[G_EPOCH]
    ctl[G_EPOCH] = e + 1
    fence()
    for i in range(words.shape[0]):
        ctl[G_STATE + i] = words[i]
    fence()
    ctl[G_EPOCH] = e + 2
    fence()
    return e + 2


@numba.njit(nogil=True, cache=True)
def read_window(ctl, loc):
    """Follower: a consistent copy of the window words into ``loc`` (loc[0] = the epoch,
    loc[1:] = ``G_STATE .. G_END``); returns the epoch."""
    n = loc.shape[0] - 1
    while True:
        e1 = ctl[G_EPOCH]
        fence()
        if e1 & 1:
            yield_cpu()
            continue
        for i in range(n):
            loc[1 + i] = ctl[G_STATE + i]
        fence()
        if ctl[G_EPOCH] == e1:
            loc[0] = e1
            return e1


@numba.njit(nogil=True, cache=True)
def all_acked(ctl, nf, e):
    """Leader: has every follower let go of every window older than epoch ``e``?"""
    fence()
    for i in range(nf):
        r = F_BASE + i * F_STRIDE
        if ctl[r + F_ACK] < e and ctl[r + F_IDLE] == 0 and ctl[r + F_DONE] == 0:
            return False
    return True


@numba.njit(nogil=True, cache=True)
def wait_acked(ctl, nf, e):
    """Leader: wait until :func:`all_acked` (a follower acknowledges within one receive
    batch, or at once when idle)."""
    spins = 0
    while not all_acked(ctl, nf, e):
        spins += 1
        if spins > 64:
            yield_cpu()


@numba.njit(nogil=True, cache=True)
def wait_watermark(ctl, nf, target, timeout_ns, ts):
    """Leader, before it commits a gulp: wait (at most ``timeout_ns``) until every follower
    has seen a packet at or beyond ``target`` (its stream has left the gulp behind), has
    nothing to receive, or has left.  Returns False on the timeout."""
    t0 = now_ns(ts)
    spins = 0
    while True:
        fence()
        ok = True
        for i in range(nf):
            r = F_BASE + i * F_STRIDE
            if ctl[r + F_SEEN] < target and ctl[r + F_IDLE] == 0 and ctl[r + F_DONE] == 0:
                ok = False
                break
        if ok:
            return True
        spins += 1
        if spins > 64:
            yield_cpu()
            if now_ns(ts) - t0 > timeout_ns:
                return False


WINDOW_WORDS = G_END - G_STATE
