"""Receive backends of the capture loop: where packets come from.

A backend is a template module (see :mod:`asbru.formats.engine`), bound and compiled once
per backend, that provides two :func:`~asbru.formats.engine.bound_kernel` functions:

``fetch(io, rbuf, rlen, meta, aux, auxlens, cnt) -> int``
    Receive the next batch.  Packet ``i`` (``0 <= i < n``) has length ``rlen[i]`` (a
    negative ``-1 - nbytes`` marks a packet to count as invalid, e.g. a truncated
    datagram); returns ``n >= 1``, or one of ``F_TIMEOUT`` (nothing arrived in time),
    ``F_EOF`` (end of input / socket shut down), ``F_INTR`` (a signal), ``F_ERROR`` (errno
    in ``cnt[C_ERRNO]``) of :mod:`asbru.capture.layout`.  Adds the packets received to
    ``cnt[C_NRECEIVED]`` (kernel drops, if it sees them, to ``cnt[C_NKDROPS]``).
``packet(rbuf, meta, aux, i, ln) -> uint8[:]``
    Packet ``i`` of the last batch, ``ln`` bytes: a view, valid until the next ``fetch``.

``io`` (int64, ``NIO`` slots of :mod:`~asbru.capture.layout` and any after them that the
backend owns), ``rbuf`` (uint8 ``[nbatch, slot]``: its rows size the hold buffer too),
``rlen`` (int64 ``[nbatch]``) and ``meta``/``aux``/``auxlens`` (any arrays, the backend's
own) are set up by the Python class of the backend (``_setup_backend`` of a
:class:`~asbru.capture.engine.CaptureEngine` subclass, whose ``_backend`` names the entry of
:data:`BACKENDS`).  A byte-stream backend may add a template providing
``resync(io, rbuf, rlen, rst, i, cfg, fstate, cnt, win)`` (see ``disk_resync``), bound
once with it.  Nothing of a backend depends on the format: the format's functions are
reached through the capture config (:mod:`asbru.formats.indirect`).

Register a new backend with :func:`register`; ``asbru.capture.precompile.backend_arrays``
lists the stand-in arrays it is compiled with ahead of use.
"""
from __future__ import annotations

import dataclasses
import importlib
import types
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Backend:
    """A receive backend: ``module`` (template with ``fetch``/``packet``), ``resync`` (a
    template that provides ``resync``, or None: datagrams need none) and
    ``depends_on`` (modules whose compiled functions its kernels call: a change of one
    invalidates the cached kernels)."""

    name: str
    module: str
    resync: Optional[str] = None
    depends_on: tuple[str, ...] = ()

    def template(self) -> types.ModuleType:
        return importlib.import_module(self.module)

    def resync_template(self) -> Optional[types.ModuleType]:
        return importlib.import_module(self.resync) if self.resync else None

    def dependencies(self) -> tuple[types.ModuleType, ...]:
        return tuple(importlib.import_module(m) for m in self.depends_on)


_LAYOUT = "asbru.capture.layout"
_SYSCALLS = "asbru.sockets.syscalls"

#: the receive backends, by name
BACKENDS: dict[str, Backend] = {
    "udp": Backend("udp", f"{__name__}.udp",
                   depends_on=(_LAYOUT, _SYSCALLS, "asbru.sockets.msgvec", "asbru.formats.spec")),
    "disk": Backend("disk", f"{__name__}.disk", resync=f"{__name__}.disk_resync",
                    depends_on=(_LAYOUT, _SYSCALLS, f"{__name__}.disk_rows",
                                f"{__name__}.disk_readahead", "asbru.sockets.pread",
                                "asbru.capture.group.shared", "asbru.formats.spec")),
    "sniffer": Backend("sniffer", f"{__name__}.sniffer",
                       depends_on=(_LAYOUT, _SYSCALLS, "asbru.sockets.packet_ring")),
}


def register(backend: Backend) -> None:
    """Add (or replace) a receive backend."""
    BACKENDS[backend.name] = backend


def get(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown capture backend {name!r}; known: {', '.join(BACKENDS)}") from None
