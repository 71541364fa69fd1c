"""The per-packet and per-sequence part of the capture loop: compiled once for every format.

``_active`` is one packet of an open sequence: the format's ``decode``, the window logic of
:func:`asbru.capture.loop_parts._admit`, the format's ``place`` -- folded into the loop by
LLVM (``inline_into_callers``).  The rest runs when a sequence starts, ends or changes
(``_finalize`` and its vote) and when a gulp is committed (``zero_fill``).

The format's functions are reached through the addresses in the capture config
(:mod:`asbru.formats.indirect`), so nothing here depends on the format: one compile serves
every format and every receive backend.
"""
from __future__ import annotations

import numba
import numpy as np

from asbru.capture.borrow import borrow as _borrow
from asbru.capture.layout import (C_NLATE, C_NLATE_BYTES, FAR_NEED, FAR_STASH, H_N, PS_LATE,
                                  PS_MISSING, RS_ADVANCE, RS_FAR, W_FAR_N, W_FAR_REPLAY,
                                  W_FAR_SEQ, W_FARGO, W_GMIN, W_MAXJUMP, W_N, W_NEWCFG, W_NSRC,
                                  W_P, W_VOTE, C_NGOOD_BYTES, C_NMISSING_BYTES, H_NVALID)
from asbru.capture.loop_parts import _admit, _agrees, _invalid, _merge, inline_into_callers
from asbru.formats.indirect import decode as _decode, has_place_row as _has_place_row
from asbru.formats.indirect import place as _place
from asbru.formats.spec import (INVALID, PAYLOAD_OFFSET, PAYLOAD_SIZE, SEQ, SRC, ST_FINISH,
                                VALID)
from asbru.formats.spec import store_fence as _store_fence

#: how every function here is compiled
compiled = numba.njit(nogil=True, cache=True)


@compiled
def _decode_fresh(pkt, cfg, fstate, d):
    for i in range(d.shape[0]):
        d[i] = -1
    return _decode(pkt, cfg, fstate, d)


@compiled
def _decode_held(hold, hlen, i, cfg, fstate, d, cnt):
    # decode held packet i afresh; one that does not decode is counted invalid and leaves
    # the hold (INVALID also for a packet that has left it already)
    ln = hlen[i]
    if ln < 0:
        return INVALID
    r = _decode_fresh(hold[i, :ln], cfg, fstate, d)
    if r == INVALID:
        _invalid(cnt, ln)
        hlen[i] = -1
    return r


@compiled
def _like(d, cand, chg, win):
    # does this packet side with the new candidate? (a jump: near its position; a change:
    # its configuration)
    if win[W_VOTE] == 2:
        dist = d[SEQ] - cand[SEQ]
        lim = win[W_MAXJUMP] * win[W_N]
        return -lim < dist < lim
    for j in range(chg.shape[0]):
        f = chg[j]
        if d[f] != -1 and cand[f] != -1 and d[f] != cand[f]:
            return False
    return True


@compiled
def _keep(d, ref, cand, chg, win, new_wins):
    # after a vote: 0 = the packet goes with the winner, 1 = old data of a sequence that
    # ends (late), 2 = with neither side (invalid)
    a = _agrees(d, ref, chg, win)
    if not new_wins:
        return 0 if a else 2
    if a:
        return 1
    return 0 if _like(d, cand, chg, win) else 2


@compiled
def _seq_floor(hold, hlen, hst, cfg, fstate, d, ref, cand, chg, win, new_wins):
    # the sequence starts at the smallest seq of the held VALID packets that has a quarter of
    # them (2 at least, at most half a window's worth) within the window above it: strays from long ago cannot move seq0
    # (they are counted late when the hold is placed)
    n = 0
    for i in range(hst[H_N]):
        if hlen[i] >= 0:
            n += 1
    seqs = np.empty(max(n, 1), dtype=np.int64)
    m = 0
    vote = win[W_VOTE] != 0
    for i in range(hst[H_N]):
        ln = hlen[i]
        if ln < 0:
            continue
        if _decode_fresh(hold[i, :ln], cfg, fstate, d) != VALID:
            continue
        if vote and _keep(d, ref, cand, chg, win, new_wins) != 0:
            continue
        seqs[m] = d[SEQ]
        m += 1
    if m == 0:
        return np.int64(0)
    s = np.sort(seqs[:m])
    # "within a gulp" is measured over the open window (two gulps), and a quarter of a long
    # hold need not fit there: at most half of what the window can hold is asked for, else a
    # hold spanning many gulps (a rate learnt over a second of short gulps) would start at its
    # median and count the packets before it late
    span = 2 * win[W_N]
    need = min(m, max(2, min(m // 4, (span * win[W_NSRC]) // 2)))
    e = 0
    for k in range(m):
        if e < k:
            e = k
        while e + 1 < m and s[e + 1] - s[k] < span:
            e += 1
        if e - k + 1 >= need:
            return s[k]  # the first seq with a quarter of the packets within a gulp of it
    return s[(m - 1) // 2]


@compiled
def _finish(hold, hlen, hst, cfg, fstate, d, cur, ref, chg, win, cnt, psrc):
    # the stream ended or went quiet with packets held: a learning format adopts the best
    # estimate its state supports (ST_FINISH set while the hold is decoded once more)
    if hst[H_N] == 0:
        return 0
    fstate[ST_FINISH] = 1
    nv = _finalize(hold, hlen, hst, cfg, fstate, d, cur, ref, chg, win, cnt, psrc)
    fstate[ST_FINISH] = 0
    return nv


@compiled
def _finalize(hold, hlen, hst, cfg, fstate, d, cur, ref, chg, win, cnt, psrc):
    # decode every held packet again (the format may have learnt what it needed) and
    # derive seq0 (_seq_floor) and the sequence descriptor; returns #VALID used.
    # W_VOTE: a change (1) or a forward jump (2) is being confirmed: the held packets vote
    # for the open sequence (its configuration ref, its window) or against it; a change needs
    # a majority, a jump two thirds; the losers are dropped: counted invalid (a glitch) or
    # late (old data, when the sequence ends)
    # the new side is one candidate (the first disagreeing packet's configuration or
    # position): packets that disagree with both sides (corrupt ones) vote for neither
    n_same = 0
    n_diff = 0
    vote = win[W_VOTE] != 0
    cand = np.full(d.shape[0], -1, dtype=np.int64)
    have_cand = False
    if vote:
        for i in range(hst[H_N]):
            ln = hlen[i]
            if ln < 0:
                continue
            if _decode_fresh(hold[i, :ln], cfg, fstate, d) == VALID:
                if _agrees(d, ref, chg, win):
                    n_same += 1
                elif not have_cand:
                    cand[:] = d
                    have_cand = True
                    n_diff += 1
                elif _like(d, cand, chg, win):
                    n_diff += 1
    # a jump needs twice the old side's votes: a burst of agreeing strays (records of another
    # time) among the genuine packets must not end the sequence
    new_wins = n_diff > 2 * n_same if win[W_VOTE] == 2 else n_diff > n_same
    win[W_NEWCFG] = 1 if new_wins else 0
    nv = 0
    floor = _seq_floor(hold, hlen, hst, cfg, fstate, d, ref, cand, chg, win, new_wins)
    for i in range(hst[H_N]):
        if _decode_held(hold, hlen, i, cfg, fstate, d, cnt) != VALID:
            continue
        k = _keep(d, ref, cand, chg, win, new_wins) if vote else 0
        if k != 0:
            if k == 1:
                cnt[C_NLATE] += 1
                cnt[C_NLATE_BYTES] += d[PAYLOAD_SIZE]
                if d[SRC] >= 0 and d[SRC] < psrc.shape[1]:
                    psrc[PS_LATE, d[SRC]] += 1
            else:
                _invalid(cnt, hlen[i])
            hlen[i] = -1
            continue
        _merge(cur, d, chg, nv == 0)
        nv += 1
    hst[H_NVALID] = nv
    win[W_GMIN] = floor  # seq0: the smallest kept seq, strays from long ago left out
    return nv


@compiled
def _drop_far(hlen, win, cnt):
    # the far-ahead packets kept so far never found agreement: lone strays, invalid
    base = hlen.shape[0] - FAR_STASH
    for j in range(win[W_FAR_REPLAY] - 1 if win[W_FAR_REPLAY] > 0 else 0, win[W_FAR_N]):
        _invalid(cnt, hlen[base + j])
    win[W_FAR_N] = 0
    win[W_FAR_REPLAY] = 0


@compiled
def _far_ahead(pkt, ln, s, hold, hlen, win, cnt):
    # a packet more than one gulp beyond the window: kept (not placed) until FAR_NEED
    # packets within one gulp of each other say the stream is there; one corrupt seq then
    # costs one packet, never the genuine packets the window would have left behind
    n = win[W_N]
    if win[W_FAR_REPLAY] > 0:
        return RS_ADVANCE  # (cannot happen: replay runs with W_FARGO set)
    nf = win[W_FAR_N]
    a = win[W_FAR_SEQ]
    if nf > 0 and (s - a >= n or a - s >= n):
        _drop_far(hlen, win, cnt)  # a new run: the old one was a stray
        nf = 0
    if nf == 0:
        win[W_FAR_SEQ] = s
    if nf + 1 >= FAR_NEED:
        win[W_FARGO] = 1
        if nf > 0:
            win[W_FAR_REPLAY] = 1  # place the kept ones first, then this one
            return RS_ADVANCE
        return RS_ADVANCE
    row = hold.shape[0] - FAR_STASH + nf
    if ln > hold.shape[1]:
        _invalid(cnt, ln)
        return 0
    hold[row, :ln] = pkt
    hlen[row] = ln
    win[W_FAR_N] = nf + 1
    return 0


@compiled
def _active(pkt, ln, cfg, fstate, d, cur, chg, gA, gB, mA, mB, win, cnt, psrc, di, rst, pend,
            hold, hlen):
    # one packet while a sequence is open: 0 = consumed, -1 = consumed and counted invalid
    # because it does not decode, else an RS_* reason (> 0, not consumed).
    # di: the packet's receive-buffer index (its placement may be deferred), -1 from hold.
    # A format sets every descriptor field it owns on VALID (FORMATS contract); only the
    # CHANGE fields may be left unset ("not said"), so only they are reset to -1 here (d is
    # private to the compiled loop; the gather path resets it all)
    inline_into_callers()
    for j in range(chg.shape[0]):
        d[chg[j]] = -1
    r = _decode(pkt, cfg, fstate, d)
    if r != VALID:
        _invalid(cnt, ln)
        return -1 if r == INVALID else 0
    # where it goes (format-independent: compiled once, asbru/capture/loop_parts.py)
    # (how many rows of pend it may use: none unless the format places a row at a time)
    room = pend.shape[0] if _has_place_row(cfg) else 0
    a = _admit(d, ln, cur, chg, mA, mB, win, cnt, psrc, di, rst, pend, room)
    if a >= 0:
        if a == RS_FAR:  # far ahead of the window: kept until the stream agrees
            return _far_ahead(pkt, ln, d[SEQ], hold, hlen, win, cnt)
        return a
    q = -1 - a
    n = win[W_N]
    nsrc = win[W_NSRC]
    p = win[W_P]
    sb = nsrc * p
    po = d[PAYLOAD_OFFSET]
    if q < n:
        _place(cfg, pkt[po:po + p], d, gA[q * sb:(q + 1) * sb], nsrc)
    else:
        t = q - n
        _place(cfg, pkt[po:po + p], d, gB[t * sb:(t + 1) * sb], nsrc)
    return 0


@compiled
def zero_fill(cfg, gulp, mask, nslots, d, zero, nsrc, p, seq_start, cnt, psrc):
    # every (time, source) without a packet becomes zeros: a whole empty time slot is
    # cleared directly, a partly received one through the format's place(); the gulp's
    # received and missing bytes (and missing per source) are counted here too
    gulp = _borrow(gulp)      # the caller holds them; see _flush
    mask = _borrow(mask)
    d = _borrow(d)
    zero = _borrow(zero)
    sb = nsrc * p
    nrecv_all = 0
    for t in range(nslots):
        row = mask[t]
        nrecv = 0
        for s in range(nsrc):
            nrecv += np.int64(row[s])   # as numba types it; Python would keep uint8 and wrap
        nrecv_all += nrecv
        slot = gulp[t * sb:(t + 1) * sb]
        if nrecv == nsrc:
            continue
        for s in range(nsrc):
            if row[s] == 0:
                psrc[PS_MISSING, s] += 1
        if nrecv == 0:
            slot[:] = 0
            continue
        d[SEQ] = seq_start + t
        for s in range(nsrc):
            if row[s] == 0:
                d[SRC] = s
                _place(cfg, zero[:p], d, slot, nsrc)
    cnt[C_NGOOD_BYTES] += nrecv_all * p
    cnt[C_NMISSING_BYTES] += (nslots * nsrc - nrecv_all) * p
    _store_fence()
