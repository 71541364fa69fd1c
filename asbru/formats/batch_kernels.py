"""Whole-batch kernels of one format (template): bound per format by :mod:`asbru.formats.batch`.

Ordinary Python, compiled once per format by :func:`asbru.formats.engine.bind`: the
format's ``decode``/``place``/``fill`` are the module globals ``_decode``/``_place``/
``_fill`` of each binding.  The imports below bind the CHIPS format (a valid default, so
that this module reads, lints and runs like any other).
"""
from __future__ import annotations

from asbru.formats.chips import decode as _decode, fill as _fill, place as _place
from asbru.formats.engine import bound_kernel
from asbru.formats.spec import INVALID, PAYLOAD_OFFSET, PAYLOAD_SIZE, SEQ, VALID
from asbru.formats.spec import store_fence as _store_fence

#: the globals a binding gives (``_fill`` None for a format that cannot be written)
BINDS = ("_decode", "_place", "_fill")


@bound_kernel
def fill_headers(hdrs, info, wcfg, seq, seq_inc, src, src_inc, ntime, nsrc, framecount0):
    # packet k = i*nsrc + j (time-major), as Bifrost's send() orders them
    n = ntime * nsrc
    if n > hdrs.shape[0]:
        n = hdrs.shape[0]
    for k in range(n):
        i = k // nsrc
        j = k - i * nsrc
        _fill(hdrs[k], info, wcfg, seq + i * seq_inc, src + j * src_inc, framecount0 + i)
    return n


@bound_kernel
def decode_all(buf, offsets, lengths, cfg, state, desc, status):
    # one packet per (offset, length); packets outside buf are INVALID, never read
    n = offsets.shape[0]
    if lengths.shape[0] < n:
        n = lengths.shape[0]
    if desc.shape[0] < n:
        n = desc.shape[0]
    if status.shape[0] < n:
        n = status.shape[0]
    nvalid = 0
    for k in range(n):
        off = offsets[k]
        ln = lengths[k]
        d = desc[k]
        for q in range(d.shape[0]):
            d[q] = -1
        if off < 0 or ln < 0 or off + ln > buf.shape[0]:
            status[k] = INVALID
            continue
        r = _decode(buf[off: off + ln], cfg, state, d)
        status[k] = r
        if r == VALID:
            nvalid += 1
    return nvalid


@bound_kernel
def place_all(buf, offsets, desc, status, slots, seq0, nsrc):
    # test/tool reference of ring placement: slots is uint8[nslot, nsrc*P]; packet k
    # (status VALID) goes to slot desc[k, SEQ] - seq0 when that slot exists
    n = offsets.shape[0]
    placed = 0
    for k in range(n):
        if status[k] != VALID:
            continue
        t = desc[k, SEQ] - seq0
        if t < 0 or t >= slots.shape[0]:
            continue
        po = offsets[k] + desc[k, PAYLOAD_OFFSET]
        pn = desc[k, PAYLOAD_SIZE]
        if po < 0 or pn < 0 or po + pn > buf.shape[0]:
            continue
        _place(buf[po: po + pn], desc[k], slots[t], nsrc)
        placed += 1
    _store_fence()   # place() may use streaming stores
    return placed
