"""Compile a capture loop ahead of its first packet.

numba compiles a function at its first call, for the argument types of that call.  A
capture's first ``recv()`` would therefore spend seconds compiling (cold kernel cache) or
loading (warm) while its socket fills.  Here the loop is called once with arrays of exactly
the types a capture passes and a work budget of zero: it returns at once (``RS_BUDGET``),
having touched nothing, and every later call with those types runs the compiled code.

The argument types per backend are written down once, in :func:`backend_arrays`; a capture
engine compiles with its own arrays (:meth:`CaptureEngine._compile`), ``asbru warmup`` with
these stand-ins -- both produce the same signatures, so the cache entries are shared.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from asbru.formats import Format, spec
# the compile announcement and cache check live with the kernel builder (writers use them too)
from asbru.formats.engine import announce, is_cached  # noqa: F401  (re-exported)

from . import layout as L


def backend_arrays(backend: str, slot: int = 64, nbatch: int = 2) -> tuple[Any, ...]:
    """Stand-ins of ``(io, rbuf, rlen, meta, aux, auxlens)`` with the dtypes and
    layouts the ``backend``'s ``_setup_backend`` gives them (see udp.py, disk.py, sniffer.py)."""
    if backend in ("udp", "group"):
        # group: the leader of a multi-thread capture (asbru/capture/group/capture.py) has
        # the udp backend's receive arrays and a longer io
        from asbru.sockets.msgvec import RecvVec
        rv = RecvVec(nbatch, slot, control=False)
        keep = rv
        if backend == "group":
            from .group.handoff import NIO_GROUP
            io = np.zeros(NIO_GROUP, dtype=np.int64)
        else:
            io = np.zeros(L.NIO, dtype=np.int64)
        return (io, rv.buffers, np.zeros(nbatch, dtype=np.int64), rv.hdrs, rv.control,
                rv.controllens, keep)
    if backend == "disk":
        # as disk.py: rows before and after the batch (see _fetch), a length per batch row
        # meta: a view of io[IO_ROW0] (the current region); aux: the read-ahead's control
        from .backends import disk_readahead as ra
        nrow = 2 * L.DISK_BACK_ROWS + nbatch
        io = np.zeros(ra.NIO_DISK, dtype=np.int64)
        return (io, np.zeros((nrow, slot), dtype=np.uint8),
                np.zeros(nrow - L.DISK_BACK_ROWS, dtype=np.int64), io[ra.IO_ROW0:ra.IO_ROW0 + 1],
                np.zeros(ra.NCTL, dtype=np.int64), np.zeros(1, dtype=np.uint64), None)
    if backend == "sniffer":
        return (np.zeros(L.NIO + 8, dtype=np.int64), np.zeros((1, slot), dtype=np.uint8),
                np.zeros(nbatch, dtype=np.int64), np.zeros(nbatch, dtype=np.int64),
                np.zeros(0, dtype=np.uint8), np.zeros(1, dtype=np.uint64), None)
    raise ValueError(f"unknown capture backend {backend!r}; known: udp, disk, sniffer, group")


def call_with_zero_budget(kmod: Any, io: np.ndarray, rbuf: np.ndarray, rlen: np.ndarray,
                          meta: np.ndarray, aux: np.ndarray, auxlens: np.ndarray,
                          nsrc: int = 1) -> None:
    """Compile (or load from the cache) ``kmod.run`` and ``kmod.zero_fill`` for these
    receive arrays: one call of each that does no work."""
    from .loop.state import LoopState, as_args
    nd = spec.NDESC
    i64 = np.int64
    win = np.zeros(L.NWIN, dtype=i64)
    win[L.W_BUDGET] = 0          # run() returns RS_BUDGET before it looks at anything
    gulp = np.zeros(1, dtype=np.uint8)
    mask = np.zeros((1, 1), dtype=np.uint8)
    cnt = np.zeros(L.NCNT, dtype=i64)
    psrc = np.zeros((L.NPS, nsrc), dtype=i64)
    cfg = kmod.install(np.zeros(spec.NCFG, dtype=i64))
    s = LoopState(io=io, rbuf=rbuf, rlen=rlen, meta=meta, aux=aux, auxlens=auxlens,
                  rst=np.zeros(L.NRST, dtype=i64),
                  hold=np.zeros((2, rbuf.shape[1]), dtype=np.uint8), hlen=np.zeros(2, dtype=i64),
                  hst=np.zeros(L.NHST, dtype=i64), cfg=cfg,
                  fstate=np.zeros(spec.NSTATE, dtype=i64), d=np.full(nd, -1, dtype=i64),
                  cur=np.full(nd, -1, dtype=i64), ref=np.full(nd, -1, dtype=i64),
                  chg=np.zeros(0, dtype=i64), gA=gulp, gB=gulp, mA=mask, mB=mask, win=win,
                  cnt=cnt, psrc=psrc, pend=np.zeros((1, 6), dtype=i64),
                  addrs=np.zeros(nsrc, dtype=i64))
    r = kmod.run(as_args(s))
    if r != L.RS_BUDGET:
        raise RuntimeError(f"capture kernel warm-up: run() returned {r}, expected RS_BUDGET")
    kmod.zero_fill(cfg, gulp, mask, 0, np.full(nd, -1, dtype=i64), np.zeros(1, dtype=np.uint8),
                   1, 1, 0, cnt, psrc)


def compile_capture(fmt: Format, backend: str) -> None:
    """Compile (or load) the capture loop of ``fmt`` for ``backend`` (``udp``, ``disk``,
    ``sniffer``) with stand-in arrays."""
    from .loop import capture_module
    kmod = capture_module(fmt, backend)
    io, rbuf, rlen, meta, aux, auxlens, _keep = backend_arrays(backend)
    call_with_zero_budget(kmod, io, rbuf, rlen, meta, aux, auxlens)
    if backend == "disk":
        from .backends.disk_readahead import compile_serve
        compile_serve()          # the read-ahead thread's loop


def compiled_here(dispatcher: Any) -> bool:
    """True when this process has compiled (or loaded) ``dispatcher`` already."""
    return bool(getattr(dispatcher, "overloads", None))


