"""Binding a receive loop of a multi-core capture to the follower's per-packet work.

A follower's work per packet -- place it if the window is open, else hand it to the leader
-- is :mod:`.follower`'s (``_consume`` and the waits around it; the format's decode/place
are reached through the capture config, so one binding serves every format).  The receive
loops that take packets from elsewhere than a UDP socket (:mod:`.follower_sniff`: a packet
ring; :mod:`.follower_disk`: a file) are templates whose only collaborators are those
functions of the follower's binding (:data:`SHARED`): compiled once, for every format.
"""
from __future__ import annotations

import types
from asbru.formats import engine

#: what a receive loop takes from the format's follower binding (asbru/capture/group/follower.py)
SHARED = ("_adopt", "_consume", "_wait_paused", "_queue_busy", "_wait_idle", "_batch_done",
          "_finish")


def bind_to_follower(tag: str, template: types.ModuleType,
                     depends_on: tuple[types.ModuleType, ...] = ()) -> types.ModuleType:
    """``template`` (a receive loop whose BINDS are :data:`SHARED`) bound to the follower's
    functions: compiled and cached once."""
    from . import follower
    fmod = follower.bind()
    return engine.bound_module(tag, template,
                               {name: f"{fmod.__name__}:{name}" for name in SHARED},
                               depends_on=depends_on)
