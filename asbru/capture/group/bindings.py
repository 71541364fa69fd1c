"""Binding a receive loop of a multi-core capture to a format.

A follower's work per packet -- place it if the window is open, else hand it to the leader
-- is :mod:`.follower`'s (``_consume`` and the waits around it), bound to the format's
``decode``/``place``.  The receive loops that take packets from elsewhere than a UDP socket
(:mod:`.follower_sniff`: a packet ring; :mod:`.follower_disk`: a file) are templates whose
only collaborators are those functions of the format's follower binding (:data:`SHARED`).
"""
from __future__ import annotations

import types
from typing import Any

from asbru.formats import engine

#: what a receive loop takes from the format's follower binding (asbru/capture/group/follower.py)
SHARED = ("_adopt", "_consume", "_wait_paused", "_queue_busy", "_wait_idle", "_batch_done",
          "_finish")


def bind_to_follower(tag: str, template: types.ModuleType, fmt: Any,
                     depends_on: tuple[types.ModuleType, ...] = ()) -> types.ModuleType:
    """``template`` (a receive loop whose BINDS are :data:`SHARED`) bound to the follower
    functions of ``fmt``: compiled and cached once per format."""
    from . import follower
    fmod = follower.bind(fmt)
    return engine.bound_module(f"{tag}_{fmt.name}", template,
                               {name: f"{fmod.__name__}:{name}" for name in SHARED},
                               depends_on=depends_on)
