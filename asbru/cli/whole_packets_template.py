"""Template (see :mod:`asbru.formats.engine`) of ``asbru capture``'s whole-packet view of a
format: its ``decode`` is the format's, bound per format, with the payload widened to the
whole packet and the sources that ``--nsrc``/``--src0`` rejected counted
(:mod:`asbru.cli.whole_packets`)."""
from __future__ import annotations

from asbru.cli.whole_packets import has_wide, note_rejected, whole_packet, wide_config, wide_state
from asbru.formats.engine import bound_kernel
from asbru.formats.simple import decode as _decode  # the default; bound per format
from asbru.formats.spec import INVALID
from asbru.formats.spec import place_source_block as place  # noqa: F401 (the view's place)

BINDS = ("_decode",)


@bound_kernel
def decode(pkt, cfg, state, d):
    status = _decode(pkt, cfg, state, d)
    if status == INVALID and has_wide(cfg):
        note_rejected(_decode(pkt, wide_config(cfg), wide_state(cfg), d), d, cfg)
    return whole_packet(status, pkt, d)
