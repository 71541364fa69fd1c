"""The compiled capture loop, built per (format, receive backend) from real Python modules.

Each piece is a template module (ordinary Python, see :mod:`asbru.formats.engine`) bound
to its collaborators and compiled once for everything that shares it -- numba charges
~0.1-0.3 s per function compiled whatever its size, so a cold cache compiles:

1. the **backend** (:mod:`asbru.capture.backends`), per backend: ``fetch``/``packet``;
2. the **per-format** part (:mod:`.per_format`), per format, shared by every backend:
   ``_active`` (one packet of an open sequence: the format's ``decode``/``place``
   inlined), ``_finalize``, ``zero_fill`` ...; for a byte-stream backend also its
   per-format ``resync`` (:mod:`asbru.capture.backends.disk_resync`);
3. the **loop** (:mod:`.run`), per pair: ``run(s)`` and ``_flush`` (deferred ``place_row``).

What depends on neither format nor backend is :mod:`asbru.capture.loop_parts` (a plain
numba module).  ``run`` takes a :class:`~.state.LoopState`.
"""
from __future__ import annotations

import types
from typing import Any, NamedTuple

from asbru.formats import Format, engine, spec

from .. import backends as _backends
from .. import borrow, layout, loop_parts
from . import per_format, run, state

__all__ = ["CaptureKernels", "capture_module"]


class CaptureKernels(NamedTuple):
    """The compiled functions the capture engine calls."""

    run: Any          # run(LoopState) -> RS_* reason
    zero_fill: Any    # zero_fill(gulp, mask, nslots, d, zero, nsrc, p, seq_start, cnt, psrc)
    drop_far: Any     # drop_far(hlen, win, cnt): far-ahead packets kept in vain, invalid


_COMMON = (spec, layout, borrow, loop_parts)


def _backend_binding(b: _backends.Backend) -> types.ModuleType:
    return engine.bound_module(f"capture_backend_{b.name}", b.template(), {},
                               depends_on=b.dependencies())


def _format_binding(fmt: Format) -> types.ModuleType:
    m = engine.importable_name(fmt.module)
    return engine.bound_module(
        f"capture_format_{fmt.name}", per_format,
        {"_decode": f"{m}:decode", "_decode_inl": f"inline:{m}:decode",
         "_place": f"{m}:place", "_place_inl": f"inline:{m}:place",
         "DEFER": getattr(fmt.module, "place_row", None) is not None},
        depends_on=_COMMON)


def _resync_binding(fmt: Format, b: _backends.Backend) -> types.ModuleType:
    template = b.resync_template()
    assert template is not None
    m = engine.importable_name(fmt.module)
    return engine.bound_module(f"capture_{b.name}_resync_{fmt.name}", template,
                               {"_decode": f"{m}:decode"},
                               depends_on=(*_COMMON, *b.dependencies()))


def capture_module(fmt: Format, backend: str) -> CaptureKernels:
    """The compiled capture loop of ``fmt`` on ``backend`` (a name of
    :data:`asbru.capture.backends.BACKENDS`), bound on first use (compiled at first call)."""
    b = _backends.get(backend)
    m = engine.importable_name(fmt.module)
    backend_mod = _backend_binding(b).__name__
    fmt_mod = _format_binding(fmt)
    f = fmt_mod.__name__
    if b.resync:
        resync: engine.Binding = f"{_resync_binding(fmt, b).__name__}:resync"
    else:
        resync = "asbru.capture.loop_parts:_no_resync"
    has_row = getattr(fmt.module, "place_row", None) is not None
    loop = engine.bound_module(
        f"capture_{b.name}_{fmt.name}", run,
        {"_decode_fresh": f"{f}:_decode_fresh", "_finalize": f"{f}:_finalize",
         "_active": f"{f}:_active", "_finish": f"{f}:_finish",
         "_place": f"{m}:place",
         "_place_row": f"{m}:place_row" if has_row else "asbru.capture.loop_parts:_no_place_row",
         "_fetch": f"{backend_mod}:fetch", "_packet": f"{backend_mod}:packet",
         "_resync": resync, "RESYNC": bool(b.resync)},
        depends_on=(*_COMMON, per_format, state, *b.dependencies(), b.template()))
    return CaptureKernels(run=loop.run, zero_fill=fmt_mod.zero_fill, drop_far=fmt_mod._drop_far)
