"""The compiled loop of tools/fuzz.py (template): mutate, decode, place, check guards.

Bound per format by :func:`tools.fuzz.fuzzer` (:func:`asbru.formats.engine.bound_module`:
the format's ``decode``/``place`` become ``_decode``/``_place``; the import below binds
CHIPS, a valid default).
"""
from __future__ import annotations

import numpy as np

from asbru.formats.chips import decode as _decode, place as _place
from asbru.formats.engine import bound_kernel
from asbru.formats.spec import HOLD, SEQ, SRC, VALID
from asbru.formats.spec import PAYLOAD_OFFSET as POFF, PAYLOAD_SIZE as PSIZE

BINDS = ("_decode", "_place")

#: result counter indices of the compiled loop
(N_VALID, N_INVALID, N_HOLD, N_PLACED, N_ZEROFILL, N_REJECT_SIZE, N_BAD_SRC, N_BAD_PAYLOAD,
 N_GUARD, N_HELD_VALID, N_HELD_INVALID, N_HELD_HOLD) = range(12)
NCOUNT = 12


@bound_kernel
def _guards_ok(slots, row, sb, g):
    base = row * (sb + 2 * g)
    ok = True
    for i in range(g):
        want = (i * 37 + 11) & 0xFF
        if slots[base + i] != want:
            ok = False
            slots[base + i] = want
        if slots[base + g + sb + i] != want:
            ok = False
            slots[base + g + sb + i] = want
    return ok


@bound_kernel
def _mutate(work, tpl, tl, fields, hsize, maxlen):
    # -> length of the mutated packet in work[:len]
    r = np.random.randint(0, 100)
    ln = tl
    work[:tl] = tpl[:tl]
    if r < 12:
        return ln                                     # pristine
    if r < 27:
        return np.random.randint(0, tl + 1)           # truncated
    if r < 42:                                        # bit flips, mostly in the header
        lim = hsize + 16
        if lim > ln:
            lim = ln
        if lim <= 0:
            return ln
        for _ in range(np.random.randint(1, 9)):
            b = np.random.randint(0, lim)
            work[b] ^= np.uint8(1 << np.random.randint(0, 8))
        return ln
    nmut = 1 if r < 70 else 3
    if r < 85:                                        # absurd header field values
        for _ in range(nmut):
            k = np.random.randint(0, fields.shape[0])
            off = fields[k, 0]
            nb = fields[k, 1]
            kind = np.random.randint(0, 7)
            for i in range(nb):
                if off + i >= ln:
                    break
                if kind == 0:
                    v = 0
                elif kind == 1:
                    v = 0xFF
                elif kind == 2:
                    v = 0x80 if i == 0 else 0            # huge (top bit set)
                elif kind == 3:
                    v = 1 if i == nb - 1 else 0          # 1
                elif kind == 4:
                    v = np.random.randint(0, 256)
                elif kind == 5:
                    v = np.random.randint(2, 64) if i == nb - 1 else 0   # smallish
                else:
                    v = 0x7F if i == 0 else 0xFF         # largest signed
                work[off + i] = v
        if r >= 80:                                   # ... and a truncation near the payload
            ln = hsize + np.random.randint(-4, 5) * np.random.randint(0, 9)
            if ln < 0:
                ln = 0
            if ln > tl:
                ln = tl
        return ln
    if r < 92:                                        # random garbage header, random length
        ln = np.random.randint(0, maxlen + 1)
        lim = hsize + 32
        if lim > ln:
            lim = ln
        for i in range(lim):
            work[i] = np.random.randint(0, 256)
        return ln
    # over-long packet: extra random bytes
    ln = tl + np.random.randint(1, maxlen - tl + 1) if maxlen > tl else tl
    for i in range(tl, ln):
        work[i] = np.random.randint(0, 256)
    return ln


@bound_kernel
def _place_checked(pkt, ln, d, slots, nsrc, p, g, zero, counts):
    po = d[POFF]
    ps = d[PSIZE]
    src = d[SRC]
    if src < 0 or src >= nsrc:
        counts[N_BAD_SRC] += 1                      # decode broke its contract
        return False
    if po < 0 or ps < 0 or po + ps > ln:
        counts[N_BAD_PAYLOAD] += 1                  # decode broke its contract
        return False
    if ps != p:
        counts[N_REJECT_SIZE] += 1                  # the engine refuses it (invalid)
        return False
    sb = nsrc * p
    s = d[SEQ]
    nrow = slots.shape[0] // (sb + 2 * g)
    row = ((s % nrow) + nrow) % nrow
    base = row * (sb + 2 * g) + g
    _place(pkt[po:po + ps], d, slots[base:base + sb], nsrc)
    counts[N_PLACED] += 1
    if not _guards_ok(slots, row, sb, g):
        counts[N_GUARD] += 1
    if counts[N_PLACED] % 8 == 0:                   # zero-fill a missing source
        keep = d[SRC]
        d[SRC] = np.random.randint(0, nsrc)
        _place(zero[:p], d, slots[base:base + sb], nsrc)
        d[SRC] = keep
        counts[N_ZEROFILL] += 1
        if not _guards_ok(slots, row, sb, g):
            counts[N_GUARD] += 1
    return True


@bound_kernel
def fuzz_run(tpl, tlens, fields, hsize, npkt, seed, cfg, state, nsrc, p, slots, g, zero,
             counts, work, held, d, reset_every):
    np.random.seed(seed)
    ntpl = tpl.shape[0]
    maxlen = work.shape[0]
    nheld = -1
    for k in range(npkt):
        if reset_every > 0 and k % reset_every == 0:
            state[:] = 0                              # a new capture: learning starts over
            nheld = -1
        t = k % ntpl if np.random.randint(0, 4) != 0 else np.random.randint(0, ntpl)
        ln = _mutate(work, tpl[t], tlens[t], fields, hsize, maxlen)
        for q in range(d.shape[0]):
            d[q] = -1
        r = _decode(work[:ln], cfg, state, d)
        if r == VALID:
            if _place_checked(work, ln, d, slots, nsrc, p, g, zero, counts):
                counts[N_VALID] += 1
            else:
                counts[N_INVALID] += 1
            if nheld >= 0:                            # the engine re-decodes held packets
                for q in range(d.shape[0]):
                    d[q] = -1
                r2 = _decode(held[:nheld], cfg, state, d)
                if r2 == VALID:
                    counts[N_HELD_VALID] += 1
                    _place_checked(held, nheld, d, slots, nsrc, p, g, zero, counts)
                elif r2 == HOLD:
                    counts[N_HELD_HOLD] += 1
                else:
                    counts[N_HELD_INVALID] += 1
                nheld = -1
        elif r == HOLD:
            counts[N_HOLD] += 1
            held[:ln] = work[:ln]
            nheld = ln
        else:
            counts[N_INVALID] += 1
    return counts[N_VALID]
