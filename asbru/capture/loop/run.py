"""The capture loop (template), bound once per receive backend.

Ordinary Python; :func:`asbru.capture.loop.capture_module` binds it
(:func:`asbru.formats.engine.bound_module`) to the receive backend's ``fetch``/``packet``
(``_fetch``/``_packet``: see :mod:`asbru.capture.backends`) and, for a byte-stream backend,
its ``resync`` (``_resync``, ``RESYNC`` True).  Nothing here depends on the format: its
``decode``/``place``/``place_row`` are reached through the addresses in the capture config
(:mod:`asbru.formats.indirect`), so one compile per backend serves every format.

The imports below bind the UDP backend (a valid default).

``run(s)`` takes one :class:`~asbru.capture.loop.state.LoopState`'s fields (a plain tuple,
``state.as_args``) and returns to Python
only for the ``RS_*`` reasons of :mod:`asbru.capture.layout`; the packet that caused a
return stays where it is (receive buffer index ``rst[R_POS]`` or hold index
``hst[H_POS]``/``hst[H_GPOS]``) and is looked at again by the next call.
"""
from __future__ import annotations

import numpy as np

from asbru.capture.backends.udp import fetch as _fetch, packet as _packet
from asbru.capture.borrow import borrow as _borrow
from asbru.capture.loop import state as _ls
from asbru.capture.layout import (C_NUNLEARNED, F_EOF, F_TIMEOUT, FAR_STASH, H_GPOS, H_N,
                                  H_NVALID, H_POS, MODE_ACTIVE, R_COUNT, R_NPEND, R_POS,
                                  RS_BUDGET, RS_DRAINED, RS_START, W_BUDGET, W_FAR_N,
                                  W_FAR_REPLAY, W_FARGO, W_MODE, W_N, W_NOFETCH, W_NSRC, W_P,
                                  W_S, W_VOTE)
from asbru.capture.loop.sequence import _active, _decode_fresh, _decode_held, _finalize, _finish
from asbru.capture.loop_parts import (_drop_hold, _fetch_reason, _invalid, _merge, _no_resync as _resync,
                                      _ready)
from asbru.formats.engine import bound_kernel
from asbru.formats.indirect import place as _place, place_row as _place_row
from asbru.formats.spec import HOLD, INVALID, SEQ, SRC, VALID
from asbru.formats.spec import store_fence as _store_fence

#: the globals a binding gives
BINDS = ("_fetch", "_packet", "_resync", "RESYNC")
#: the backend reads a byte stream: after a bad record, _resync finds the alignment again
RESYNC = False


@bound_kernel
def _flush(cfg, rbuf, meta, aux, rst, pend, addrs, cur, d, gA, gB, win):
    # place the deferred packets (still in the receive buffer): a run of pend entries of one
    # time slot holding all nsrc sources goes through place_row, anything else one by one
    n = rst[R_NPEND]
    if n == 0:
        return
    # borrowed (the callers hold every array): no locked reference-count instruction between
    # streaming stores, each of which would wait for them to reach memory
    rbuf = _borrow(rbuf)
    meta = _borrow(meta)
    aux = _borrow(aux)
    pend = _borrow(pend)
    addrs = _borrow(addrs)
    d = _borrow(d)
    gA = _borrow(gA)
    gB = _borrow(gB)
    rst[R_NPEND] = 0
    nsrc = win[W_NSRC]
    p = win[W_P]
    sb = nsrc * p
    nt = win[W_N]
    for q in range(d.shape[0]):
        d[q] = cur[q]
    j = 0
    while j < n:
        g = pend[j, 3]
        t = pend[j, 4]
        e = j + 1
        while e < n and pend[e, 3] == g and pend[e, 4] == t:
            e += 1
        if g == 0:
            slot = gA[t * sb:(t + 1) * sb]
        else:
            slot = gB[t * sb:(t + 1) * sb]
        d[SEQ] = win[W_S] + g * nt + t
        done = False
        if e - j == nsrc and addrs.shape[0] >= nsrc:
            # one entry per source (the mask let no duplicate in): all of the slot is here
            for q in range(j, e):
                pk = _packet(rbuf, meta, aux, pend[q, 0], pend[q, 1])
                addrs[pend[q, 5]] = pk.ctypes.data + pend[q, 2]
            done = _place_row(cfg, addrs, d, slot, nsrc)
        if not done:
            for q in range(j, e):
                pk = _packet(rbuf, meta, aux, pend[q, 0], pend[q, 1])
                po = pend[q, 2]
                d[SRC] = pend[q, 5]
                _place(cfg, pk[po:po + p], d, slot, nsrc)
        j = e


@bound_kernel
def run(s):
    # s: a LoopState's fields (asbru/capture/loop/state.py).  Every array in it is held by the
    # caller for the whole call: work on borrowed views, so slicing and passing them on
    # costs no atomic reference counting (asbru/capture/borrow.py)
    io = _borrow(s[_ls.IO])
    rbuf = _borrow(s[_ls.RBUF])
    rlen = _borrow(s[_ls.RLEN])
    rst = _borrow(s[_ls.RST])
    meta = _borrow(s[_ls.META])
    aux = _borrow(s[_ls.AUX])
    auxlens = _borrow(s[_ls.AUXLENS])
    hold = _borrow(s[_ls.HOLD])
    hlen = _borrow(s[_ls.HLEN])
    hst = _borrow(s[_ls.HST])
    cfg = _borrow(s[_ls.CFG])
    fstate = _borrow(s[_ls.FSTATE])
    d = _borrow(s[_ls.D])
    cur = _borrow(s[_ls.CUR])
    ref = _borrow(s[_ls.REF])
    chg = _borrow(s[_ls.CHG])
    gA = _borrow(s[_ls.GA])
    gB = _borrow(s[_ls.GB])
    mA = _borrow(s[_ls.MA])
    mB = _borrow(s[_ls.MB])
    win = _borrow(s[_ls.WIN])
    cnt = _borrow(s[_ls.CNT])
    psrc = _borrow(s[_ls.PSRC])
    pend = _borrow(s[_ls.PEND])
    addrs = _borrow(s[_ls.ADDRS])
    # the receive-buffer index of a held packet: a run-time int64 (a literal -1 would make
    # numba compile _active a second time, specialised for it)
    from_hold = np.int64(-1)
    reason = RS_BUDGET
    consumed = 0
    budget = win[W_BUDGET]
    while True:
        if consumed >= budget:
            reason = RS_BUDGET
            break
        if win[W_MODE] == MODE_ACTIVE:
            # 0. far-ahead packets the stream has just agreed on, in arrival order
            if win[W_FAR_REPLAY] > 0:
                j = win[W_FAR_REPLAY] - 1
                if j < win[W_FAR_N]:
                    row = hold.shape[0] - FAR_STASH + j
                    ln = hlen[row]
                    rr = _active(hold[row, :ln], ln, cfg, fstate, d, cur, chg, gA, gB, mA, mB,
                                 win, cnt, psrc, from_hold, rst, pend, hold, hlen)
                    if rr > 0:
                        reason = rr
                        break
                    win[W_FAR_REPLAY] = j + 2
                    consumed += 1
                    continue
                win[W_FAR_REPLAY] = 0
                win[W_FAR_N] = 0
                win[W_FARGO] = 1  # the packet that completed the agreement comes next
            # 1. held packets of the sequence start, in arrival order
            if hst[H_POS] < hst[H_N]:
                i = hst[H_POS]
                ln = hlen[i]
                if ln >= 0:
                    rr = _active(hold[i, :ln], ln, cfg, fstate, d, cur, chg, gA, gB, mA, mB,
                                 win, cnt, psrc, from_hold, rst, pend, hold, hlen)
                    if rr > 0:
                        reason = rr
                        break
                    consumed += 1
                hst[H_POS] += 1
                if hst[H_POS] >= hst[H_N]:
                    hst[H_N] = 0
                    hst[H_POS] = 0
                    hst[H_GPOS] = 0
                    hst[H_NVALID] = 0
                continue
            # 2. the receive buffer (W_NOFETCH 1: flush only finishes the hold;
            #    2: end() also processes what was already received, without receiving)
            nofetch = win[W_NOFETCH]
            if nofetch == 1 or (nofetch == 2 and rst[R_POS] >= rst[R_COUNT]):
                reason = RS_DRAINED
                break
            if rst[R_POS] >= rst[R_COUNT]:
                _flush(cfg, rbuf, meta, aux, rst, pend, addrs, cur, d, gA, gB, win)
                f = _fetch(io, rbuf, rlen, meta, aux, auxlens, cnt)
                if f < 0:
                    reason = _fetch_reason(f)
                    break
                rst[R_POS] = 0
                rst[R_COUNT] = f
                continue
            i = rst[R_POS]
            ln = rlen[i]
            if ln < 0:
                _invalid(cnt, -1 - ln)
            else:
                rr = _active(_packet(rbuf, meta, aux, i, ln), ln, cfg, fstate, d, cur, chg, gA, gB, mA, mB,
                             win, cnt, psrc, i, rst, pend, hold, hlen)
                if rr != 0:
                    if rr > 0:
                        reason = rr
                        break
                    if RESYNC:
                        _resync(io, rbuf, rlen, rst, i, cfg, fstate, cnt, win)
            rst[R_POS] += 1
            consumed += 1
        else:
            # gather: hold packets until the stream's parameters are known
            if hst[H_GPOS] < hst[H_N]:
                i = hst[H_GPOS]
                hst[H_GPOS] += 1
                if _decode_held(hold, hlen, i, cfg, fstate, d, cnt) == VALID:
                    _merge(cur, d, chg, hst[H_NVALID] == 0)
                    hst[H_NVALID] += 1
                    if _ready(cur, chg, hst, win) and _finalize(hold, hlen, hst, cfg, fstate, d, cur, ref, chg, win, cnt, psrc) > 0:
                        reason = RS_START
                        break
                continue
            nofetch = win[W_NOFETCH]
            if nofetch == 1 or (nofetch == 2 and rst[R_POS] >= rst[R_COUNT]):
                if hst[H_NVALID] > 0 and _finalize(hold, hlen, hst, cfg, fstate, d, cur, ref, chg, win, cnt, psrc) > 0:
                    reason = RS_START
                    break
                if nofetch == 2 and win[W_VOTE] == 0 and _finish(hold, hlen, hst, cfg, fstate, d, cur, ref, chg, win, cnt, psrc) > 0:
                    reason = RS_START  # end(): the last chance to learn from what is held
                    break
                reason = RS_DRAINED
                break
            if rst[R_POS] >= rst[R_COUNT]:
                _flush(cfg, rbuf, meta, aux, rst, pend, addrs, cur, d, gA, gB, win)
                f = _fetch(io, rbuf, rlen, meta, aux, auxlens, cnt)
                if f < 0:
                    if f == F_TIMEOUT or f == F_EOF:
                        if hst[H_NVALID] > 0 and _finalize(hold, hlen, hst, cfg, fstate, d, cur, ref, chg, win, cnt, psrc) > 0:
                            reason = RS_START
                            break
                        if win[W_VOTE] == 0 and _finish(hold, hlen, hst, cfg, fstate, d, cur, ref, chg, win, cnt, psrc) > 0:
                            reason = RS_START  # learnt from what is held: start with it
                            break
                        _drop_hold(hlen, hst, cnt)
                    reason = _fetch_reason(f)
                    break
                rst[R_POS] = 0
                rst[R_COUNT] = f
                continue
            i = rst[R_POS]
            ln = rlen[i]
            if ln < 0:
                _invalid(cnt, -1 - ln)
                rst[R_POS] += 1
                consumed += 1
                continue
            pkt = _packet(rbuf, meta, aux, i, ln)
            r = _decode_fresh(pkt, cfg, fstate, d)
            if r == INVALID:
                _invalid(cnt, ln)
                if RESYNC:
                    _resync(io, rbuf, rlen, rst, i, cfg, fstate, cnt, win)
                rst[R_POS] += 1
                consumed += 1
                continue
            if hst[H_N] >= hold.shape[0] - FAR_STASH or ln > hold.shape[1]:
                if (hst[H_NVALID] > 0 or r == VALID) and _finalize(hold, hlen, hst, cfg, fstate, d, cur, ref, chg, win, cnt, psrc) > 0:
                    reason = RS_START  # this packet stays pending
                    break
                if r == VALID and ln <= hold.shape[1]:
                    # the format has learnt, yet nothing held decodes: those are the
                    # undecodable ones; this VALID packet starts a fresh hold
                    _drop_hold(hlen, hst, cnt)
                else:
                    _invalid(cnt, ln)  # hold full of packets still waiting for the rate
                    if r == HOLD:
                        cnt[C_NUNLEARNED] += 1
                    rst[R_POS] += 1
                    consumed += 1
                    continue
            j = hst[H_N]
            hold[j, :ln] = pkt
            hlen[j] = ln
            hst[H_N] = j + 1
            hst[H_GPOS] = j + 1
            rst[R_POS] += 1
            consumed += 1
            if r == VALID:
                if hst[H_NVALID] == 0 and j > 0:
                    # the format has just learnt what it needed: look at the held packets
                    # again now (this one included), in arrival order
                    hst[H_GPOS] = 0
                    continue
                _merge(cur, d, chg, hst[H_NVALID] == 0)
                hst[H_NVALID] += 1
                if _ready(cur, chg, hst, win) and _finalize(hold, hlen, hst, cfg, fstate, d, cur, ref, chg, win, cnt, psrc) > 0:
                    reason = RS_START
                    break
    _flush(cfg, rbuf, meta, aux, rst, pend, addrs, cur, d, gA, gB, win)
    # place()/place_row() may use streaming stores: make them visible before Python commits
    # the gulp to readers on other threads
    _store_fence()
    return reason
