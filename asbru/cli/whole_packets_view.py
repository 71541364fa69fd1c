"""The whole-packet view's ``decode`` (template), bound per format by
:func:`asbru.cli.whole_packets.view_module` (:func:`asbru.formats.engine.bound_module`).

The binding gives the format's ``decode`` as ``_decode`` (the import below binds CHIPS, a
valid default); the view's logic is the compiled functions of :mod:`asbru.cli.whole_packets`.
"""
from __future__ import annotations

from asbru.cli.whole_packets import has_wide, note_rejected, whole_packet, wide_config, wide_state
from asbru.formats.chips import decode as _decode
from asbru.formats.engine import bound_kernel
from asbru.formats.spec import INVALID
from asbru.formats.spec import place_source_block as place  # noqa: F401  (the view's place)

BINDS = ("_decode",)


@bound_kernel
def decode(pkt, cfg, state, d):
    status = _decode(pkt, cfg, state, d)
    if status == INVALID and has_wide(cfg):
        note_rejected(_decode(pkt, wide_config(cfg), wide_state(cfg), d), d, cfg)
    return whole_packet(status, pkt, d)
