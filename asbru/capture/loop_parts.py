"""The parts of the compiled capture loop that depend on neither the format nor the receive
backend, compiled once for every (format, backend) kernel.

They used to be written into every generated kernel module, which compiled them again for
each (format, backend) pair: numba spends ~0.2-0.3 s of fixed cost per function compiled
(pass pipeline, LLVM module, cache file) whatever its size, and these six made up a quarter
of a cold kernel's compile time.  Imported as module globals by the generated modules, so
numba's disk cache keeps working (see asbru/formats/engine.py).
"""
from __future__ import annotations

import numba
from numba import types
from numba.core import config
from numba.extending import intrinsic

from asbru.capture.layout import *  # noqa: F401,F403  (index constants, as in the generated modules)
from asbru.formats.spec import PAYLOAD_OFFSET, PAYLOAD_SIZE, SEQ, SRC


def _inline_into_callers_python() -> None:
    """Under NUMBA_DISABLE_JIT=1 the loop runs as Python: there is nothing to inline into."""


@intrinsic
def _inline_into_callers_compiled(typingctx):
    """Mark the compiled function that calls this as LLVM ``alwaysinline``.

    Per packet the loop calls ``_active`` and ``_admit``; as calls, every array argument
    travels as a 7-word struct on the stack (measured: the 1 KiB VDIF sniffer drain fell
    from 6.3 to 1.4 M packets/s).  numba's own ``inline="always"`` copies and re-types the
    callee's IR at every call site -- seconds of compile time per kernel -- while LLVM
    inlines a function it has already optimized in milliseconds.  So these functions are
    compiled once, on their own, and LLVM folds them into their callers."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        builder.function.attributes.add("alwaysinline")
        return context.get_dummy_value()

    return sig, codegen


inline_into_callers = (_inline_into_callers_python if config.DISABLE_JIT
                       else _inline_into_callers_compiled)


@numba.njit(nogil=True, cache=True)
def _invalid(cnt, nbytes):
    cnt[C_NINVALID] += 1
    cnt[C_NINVALID_BYTES] += nbytes


@numba.njit(nogil=True, cache=True)
def _merge(cur, d, chg, first):
    # the sequence's descriptor: the first VALID packet's, with every CHANGE field it did
    # not state (-1) taken from later packets
    if first:
        for i in range(cur.shape[0]):
            cur[i] = d[i]
        return
    for j in range(chg.shape[0]):
        f = chg[j]
        if cur[f] == -1 and d[f] != -1:
            cur[f] = d[f]


@numba.njit(nogil=True, cache=True)
def _ready(cur, chg, hst, win):
    # start once W_GTARGET VALID packets are held (one time slot's worth, nsrc, at start-up:
    # every CHANGE field a multi-source format spreads over its sources -- DRX tunings -- is
    # then known, and a reordered first time slot is not lost; 2*nsrc+1 to confirm a change)
    return hst[H_NVALID] >= win[W_GTARGET]


@numba.njit(nogil=True, cache=True)
def _agrees(d, ref, chg, win):
    # does this packet side with the open sequence? W_VOTE 2 (a forward jump): it is not
    # far ahead of the window; W_VOTE 1 (a change): its configuration agrees
    if win[W_VOTE] == 2:
        return d[SEQ] - win[W_S] < (win[W_K] + win[W_MAXJUMP]) * win[W_N]
    for j in range(chg.shape[0]):
        f = chg[j]
        if d[f] != -1 and ref[f] != -1 and d[f] != ref[f]:
            return False
    return True


@numba.njit(nogil=True, cache=True)
def _drop_hold(hlen, hst, cnt):
    # nothing decodable will come: the held packets count as invalid (and as unlearned:
    # they waited for a rate the stream never gave)
    for i in range(hst[H_N]):
        if hlen[i] >= 0:
            _invalid(cnt, hlen[i])
            cnt[C_NUNLEARNED] += 1
    hst[H_N] = 0
    hst[H_POS] = 0
    hst[H_GPOS] = 0
    hst[H_NVALID] = 0


@numba.njit(nogil=True, cache=True)
def _fetch_reason(f):
    if f == F_TIMEOUT:
        return RS_TIMEOUT
    if f == F_EOF:
        return RS_EOF
    if f == F_INTR:
        return RS_INTR
    return RS_ERROR


@numba.njit(nogil=True, cache=True)
def _no_place_row(addrs, d, slot, nsrc):
    # the place_row of a format without one: "not placed", the loop calls place() per packet
    return False


@numba.njit(nogil=True, cache=True)
def _no_resync(io, rbuf, rlen, rst, i, cfg, fstate, cnt, win):
    # the resync of a backend without one (datagrams: nothing to realign)
    return


@numba.njit(nogil=True, cache=True)
def _admit(d, ln, cur, chg, mA, mB, win, cnt, psrc, di, rst, pend, room):
    # a VALID packet while a sequence is open: is it in the window, new, of the sequence's
    # configuration?  Returns an RS_* reason (> 0, not consumed), 0 (consumed: invalid,
    # late, duplicate, or its placement deferred to place_row as a row of ``pend``, of which
    # it may use ``room``) or
    # -1 - q: the caller places it in time slot q of the two open gulps (q < W_N: the
    # first).  Counted as valid here.
    inline_into_callers()
    nsrc = win[W_NSRC]
    p = win[W_P]
    src = d[SRC]
    po = d[PAYLOAD_OFFSET]
    ps = d[PAYLOAD_SIZE]
    if src < 0 or src >= nsrc or ps != p or po < 0 or po + ps > ln:
        _invalid(cnt, ln)
        return 0
    s = d[SEQ]
    n = win[W_N]
    k = win[W_K]
    diff = s - win[W_S]
    if diff < 0:
        if diff < -2 * n:
            if win[W_BACKRUN] + 1 >= win[W_BACKTHRESH]:
                win[W_BACKRUN] = 0
                return RS_BACKJUMP
            win[W_BACKRUN] += 1
        else:
            win[W_BACKRUN] = 0
        cnt[C_NLATE] += 1
        cnt[C_NLATE_BYTES] += ps
        psrc[PS_LATE, src] += 1
        win[W_FARGO] = 0
        return 0
    win[W_BACKRUN] = 0
    for j in range(chg.shape[0]):
        f = chg[j]
        v = d[f]
        if v != -1:
            if cur[f] == -1:
                cur[f] = v
            elif cur[f] != v:
                win[W_SC] = s
                return RS_CHANGE
    if diff >= k * n:
        if diff >= (k + win[W_MAXJUMP]) * n:
            return RS_JUMP
        if diff >= (k + 1) * n and win[W_FARGO] == 0:
            return RS_FAR  # more than a gulp ahead: the caller keeps it until others agree
        return RS_ADVANCE
    win[W_FARGO] = 0
    # 0 <= diff < k * n with k <= 2 (two open gulps): no division (a 64-bit divide is tens
    # of cycles, paid per packet)
    if diff < n:
        g = 0
        t = diff
    else:
        g = 1
        t = diff - n
    m = mA if g == 0 else mB
    if m[t, src] != 0:
        cnt[C_NDUP] += 1
        cnt[C_NDUP_BYTES] += ps
        psrc[PS_DUP, src] += 1
        return 0
    m[t, src] = 1
    win[W_PLACED0 + g] += 1
    k = rst[R_NPEND]
    deferred = di >= 0 and k < room and k < pend.shape[0]
    if deferred:
        row = pend[k]
        row[0] = di
        row[1] = ln
        row[2] = po
        row[3] = g
        row[4] = t
        row[5] = src
        rst[R_NPEND] = k + 1
    cnt[C_NVALID] += 1
    cnt[C_NVALID_BYTES] += ps
    psrc[PS_VALID, src] += 1
    if s - win[W_LAST] > 0:
        win[W_LAST] = s
    return 0 if deferred else -1 - (g * n + t)
