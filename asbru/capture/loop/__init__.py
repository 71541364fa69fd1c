"""The compiled capture loop: built once per receive backend, for every format.

Each piece is ordinary Python.  A cold cache compiles:

1. per **backend** (:mod:`asbru.capture.backends`): the backend's ``fetch``/``packet`` (and
   ``resync`` for a byte stream) and the loop (:mod:`.run`: ``run(s)``, ``_flush``) bound
   to them -- a template module bound by :func:`asbru.formats.engine.bound_module`;
2. once: :mod:`.sequence` (``_active``, ``_finalize``, ``zero_fill`` ...) and
   :mod:`asbru.capture.loop_parts`, plain numba modules;
3. per **format**: only its ``decode``/``place``/``place_row`` as C entry points
   (:func:`asbru.formats.dispatch.entry_table`, about a second), whose addresses the
   engine writes into the capture config; the loop calls them through those
   (:mod:`asbru.formats.indirect`).

``run`` takes a :class:`~.state.LoopState`'s fields as a plain tuple (``state.as_args``).
"""
from __future__ import annotations

import types
from typing import Any, NamedTuple

import numpy as np

from asbru.formats import Format, dispatch, engine, indirect, spec

from .. import backends as _backends
from .. import borrow, layout, loop_parts
from . import run, sequence, state

__all__ = ["CaptureKernels", "capture_module"]


class CaptureKernels(NamedTuple):
    """The compiled functions the capture engine calls, and the format's entry points."""

    run: Any          # run(as_args(LoopState)) -> RS_* reason
    zero_fill: Any    # zero_fill(cfg, gulp, mask, nslots, d, zero, nsrc, p, seq_start, cnt, psrc)
    drop_far: Any     # drop_far(hlen, win, cnt): far-ahead packets kept in vain, invalid
    entries: dispatch.EntryPoints   # install(cfg): where the loop finds decode/place

    def install(self, cfg: np.ndarray) -> np.ndarray:
        """Write the format's entry points into capture config ``cfg``; returns it."""
        return self.entries.install(cfg)


_COMMON = (spec, layout, borrow, loop_parts, indirect, sequence)


def _backend_binding(b: _backends.Backend) -> types.ModuleType:
    return engine.bound_module(f"capture_backend_{b.name}", b.template(), {},
                               depends_on=b.dependencies())


def _resync_binding(b: _backends.Backend) -> types.ModuleType:
    template = b.resync_template()
    assert template is not None
    return engine.bound_module(f"capture_{b.name}_resync", template, {},
                               depends_on=(*_COMMON, *b.dependencies()))


_loops: dict[str, types.ModuleType] = {}


def loop_module(backend: str) -> types.ModuleType:
    """The capture loop bound to receive backend ``backend`` (compiled at first call)."""
    got = _loops.get(backend)
    if got is not None:
        return got
    b = _backends.get(backend)
    backend_mod = _backend_binding(b).__name__
    if b.resync:
        resync: engine.Binding = f"{_resync_binding(b).__name__}:resync"
    else:
        resync = "asbru.capture.loop_parts:_no_resync"
    loop = engine.bound_module(
        f"capture_{b.name}", run,
        {"_fetch": f"{backend_mod}:fetch", "_packet": f"{backend_mod}:packet",
         "_resync": resync, "RESYNC": bool(b.resync)},
        depends_on=(*_COMMON, state, *b.dependencies(), b.template()))
    _loops[backend] = loop
    return loop


def capture_module(fmt: Format, backend: str) -> CaptureKernels:
    """The compiled capture loop for ``fmt`` on ``backend`` (a name of
    :data:`asbru.capture.backends.BACKENDS`): the backend's loop (shared by every format)
    and ``fmt``'s entry points (compiled or loaded here)."""
    loop = loop_module(backend)
    return CaptureKernels(run=loop.run, zero_fill=sequence.zero_fill, drop_far=sequence._drop_far,
                          entries=dispatch.entry_table(fmt.module))
