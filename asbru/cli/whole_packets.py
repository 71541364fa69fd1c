"""The format view ``asbru capture`` runs the capture engine with: whole packets as payloads.

``asbru capture --out FILE`` records packets, not ring payloads.  It runs an ordinary
:class:`~asbru.capture.udp.UDPCapture` (same socket code, same compiled receive loop, same
late/duplicate/missing accounting) on a *view* of the format: the format's own ``decode``
decides what is valid and where it belongs, then the view widens the packet's payload to
the whole packet (offset 0, the datagram's length), and ``place`` puts it at its
``[time][src]`` cell.  A ring time slot of the view is therefore ``nsrc`` whole packets, and
the cells the capture flags as received are exactly the placed packets, byte for byte
(:mod:`asbru.cli.packet_file` writes them out).  Everything else -- sequences, CHANGE
fields, rate learning, callbacks' arguments -- is the format's.

Every format's decoder ties the payload to the packet length through a header size fixed
within a stream, so "same payload size" (the engine's rule for a sequence) and "same packet
size" agree: the view accepts exactly the packets the format accepts.  (The one exception
would be a VDIF stream mixing legacy 16-byte and 32-byte headers with one payload size: the
view counts the minority invalid.)  Byte counters of such a capture count whole packets.

The view also says which sources ``--nsrc``/``--src0`` rejected: a packet the format finds
invalid is decoded once more with a configuration accepting :data:`WIDE_NSRC` sources, and
the source it would have had is counted (:func:`rejected_sources`).  Those counts live in
the view's capture config, after the format's own entries (``CFG_*`` below), so the
compiled loop needs no extra argument.

The view's ``decode`` (:mod:`asbru.cli.whole_packets_view`, a template) is bound to the
format's by :func:`asbru.formats.engine.bound_module`; its logic is the compiled functions
of this file.
"""
from __future__ import annotations

import dataclasses
import sys
import types
from typing import Optional

import numpy as np

from ..formats import Format, engine, spec
from ..formats.spec import NCFG, NSTATE, PAYLOAD_OFFSET, PAYLOAD_SIZE, SRC, VALID

#: source indices the "would it decode with more sources" check tells apart
WIDE_NSRC = 4096

# the view's capture config: [the format's cfg | a cfg accepting WIDE_NSRC sources | that
# decoder's state | packets per source index that only the wide decoder accepted]
CFG_WIDE = NCFG
CFG_WIDE_STATE = 2 * NCFG
CFG_REJECTED = 2 * NCFG + NSTATE
CFG_LEN = CFG_REJECTED + WIDE_NSRC


@spec.kernel
def whole_packet(status, pkt, d):
    """``decode``'s result for the view: a valid packet's payload is the whole packet."""
    if status == VALID:
        d[PAYLOAD_OFFSET] = 0
        d[PAYLOAD_SIZE] = pkt.size
    return status


@spec.kernel
def wide_config(cfg):
    return cfg[CFG_WIDE:CFG_WIDE_STATE]


@spec.kernel
def wide_state(cfg):
    return cfg[CFG_WIDE_STATE:CFG_REJECTED]


@spec.kernel
def note_rejected(wide_status, d, cfg):
    """After the wide decode of an invalid packet: count its source, forget the descriptor."""
    if wide_status == VALID:
        src = d[SRC]
        if src >= 0 and src < WIDE_NSRC:
            cfg[CFG_REJECTED + src] += 1
    for q in range(d.shape[0]):
        d[q] = -1


@spec.kernel
def has_wide(cfg):
    return cfg.shape[0] >= CFG_LEN


# what the view takes over from the format module unchanged (the engine reads these)
_SHARED = ("NAME", "HEADER", "matches", "parse", "capture_config", "CHANGE", "CALLBACK_FAMILY",
           "CALLBACK_ARGS", "callback_args", "time_tag_of", "LEARNS", "check_sample_rate", "NOTES",
           "SLOTS")


def view_module(inner: types.ModuleType) -> types.ModuleType:
    """The whole-packet view of format module ``inner`` (a real module, importable by name):
    the binding of :mod:`asbru.cli.whole_packets_view` to ``inner``'s decode."""
    from . import whole_packets_view
    name = engine.importable_name(inner)
    mod = engine.bound_module(f"whole_packets_{inner.NAME}", whole_packets_view,
                              {"_decode": f"{name}:decode"},
                              depends_on=(inner, spec, sys.modules[__name__]))
    for attr in _SHARED:
        if hasattr(inner, attr):
            setattr(mod, attr, getattr(inner, attr))
    from ..formats.dispatch import uses_state
    mod.USES_STATE = uses_state(inner)   # the view's decode keeps the inner decode's state
    return mod


@dataclasses.dataclass(frozen=True)
class WholePacketFormat(Format):
    """A :class:`Format` whose payloads are whole packets (see the module docstring).

    ``capture_config`` returns the view's longer config (the format's first); the last one
    made is kept for :meth:`rejected_sources`."""

    inner: Optional[Format] = None
    _made: list = dataclasses.field(default_factory=list, compare=False, repr=False)

    def capture_config(self, nsrc: int, src0: int = 0) -> np.ndarray:
        assert self.inner is not None
        own = self.inner.capture_config(nsrc, src0)
        try:
            wide = self.inner.capture_config(WIDE_NSRC, src0)
        except spec.FormatError:          # a format that refuses so many sources
            wide = self.inner.capture_config(1, src0)
        cfg = np.zeros(CFG_LEN, dtype=np.int64)
        cfg[:NCFG] = own
        cfg[CFG_WIDE:CFG_WIDE_STATE] = wide
        self._made[:] = [cfg]
        return cfg

    def rejected_sources(self) -> np.ndarray:
        """Invalid packets per source index (header id minus src0) that a decoder accepting
        :data:`WIDE_NSRC` sources would have taken: what ``--nsrc``/``--src0`` rejected."""
        if not self._made:
            return np.zeros(WIDE_NSRC, dtype=np.int64)
        return self._made[0][CFG_REJECTED:].copy()


def whole_packets(f: Format) -> WholePacketFormat:
    """The whole-packet view of capture format ``f`` (resolved for role ``"capture"``)."""
    mod = view_module(f.module)
    return WholePacketFormat(name=f.name, params=f.params, header=f.header, module=mod,
                             decode=mod.decode, place=mod.place, fill=None, change=f.change,
                             callback_family=f.callback_family, inner=f)


__all__ = ["WholePacketFormat", "whole_packets", "view_module", "WIDE_NSRC"]
