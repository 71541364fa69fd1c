"""A format's ``decode``, ``place`` and ``place_row`` as C-callable entry points (template),
bound once per format by :func:`asbru.formats.dispatch.entry_table`.

The loops of asbru are compiled once for every format and reach these through their
addresses (:mod:`asbru.formats.indirect`, which also gives the C signatures): every array
is passed as (pointer, element count) and rebuilt here with ``numba.carray``.  The format's
functions are inlined into these small wrappers, so a format costs one short compile.

The imports below bind CHIPS (a valid default).
"""
from __future__ import annotations

from numba import carray

from asbru.formats.chips import decode as _decode, place as _place, place_row as _place_row
from asbru.formats.engine import bound_cfunc
from asbru.formats.indirect import DECODE_SIG, PLACE_ROW_SIG, PLACE_SIG, inline_calls_above

#: the globals a binding gives
BINDS = ("_decode", "_place", "_place_row")


@bound_cfunc(DECODE_SIG)
def decode_entry(pkt, npkt, cfg, ncfg, state, nstate, d, nd):
    r = _decode(carray(pkt, npkt), carray(cfg, ncfg), carray(state, nstate), carray(d, nd))
    inline_calls_above()      # the format's decode is folded in here (indirect.py)
    return r


@bound_cfunc(PLACE_SIG)
def place_entry(payload, npayload, d, nd, slot, nslot, nsrc):
    _place(carray(payload, npayload), carray(d, nd), carray(slot, nslot), nsrc)
    inline_calls_above()


@bound_cfunc(PLACE_ROW_SIG)
def place_row_entry(addrs, naddrs, d, nd, slot, nslot, nsrc):
    ok = _place_row(carray(addrs, naddrs), carray(d, nd), carray(slot, nslot), nsrc)
    inline_calls_above()
    return 1 if ok else 0
