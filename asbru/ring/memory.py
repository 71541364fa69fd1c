"""Ring memory: where the bytes of a ring live.

The ring asks this module for one 2-D ``uint8`` array of shape ``(nringlet, nbyte)`` and never
allocates memory itself, so that another memory space (pinned host memory, a shared-memory
segment, ...) can be plugged in later with :func:`register_space` without touching the ring.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..errors import ArgumentError

PAGE = 4096

#: allocator(nringlet, nbyte, core) -> uint8 array of shape (nringlet, nbyte)
Allocator = Callable[[int, int, Optional[int]], np.ndarray]


def _allocate_system(nringlet: int, nbyte: int, core: Optional[int]) -> np.ndarray:
    """Page-aligned, zeroed and pre-faulted host memory.

    Zeroed because a ring that hands out stale bytes from a previous user is a surprise
    (docs/differences-from-bifrost.md, engine #13); pre-faulted (written, not calloc'ed) because first-touch page faults
    inside a capture loop cost more than the fill does here.  ``core`` (NUMA binding) is
    accepted and ignored, as Bifrost ignores binding failures.
    """
    stride = -(-max(nbyte, 1) // PAGE) * PAGE
    raw = np.empty(nringlet * stride + PAGE, dtype=np.uint8)
    start = (-raw.ctypes.data) % PAGE
    flat = raw[start:start + nringlet * stride]
    flat.fill(0)
    return flat.reshape(nringlet, stride)[:, :nbyte]


def _allocate_shm(nringlet: int, nbyte: int, core: Optional[int]) -> np.ndarray:
    raise ArgumentError("space 'shm' memory belongs to a shared ring: create it with "
                        "Ring(space='shm', name=...)")


def _lazy(name: str) -> Allocator:
    """An allocator from asbru.ring.gpu, imported on first use (CuPy is optional)."""
    def allocate(nringlet: int, nbyte: int, core: Optional[int]) -> np.ndarray:
        from . import gpu
        return getattr(gpu, name)(nringlet, nbyte, core)
    return allocate


_SPACES: dict[str, Allocator] = {
    "system": _allocate_system,
    "cuda_host": _lazy("allocate_cuda_host"),   # pinned host memory (needs CuPy + a GPU)
    "cuda": _lazy("allocate_cuda"),             # device memory (needs CuPy + a GPU)
    "shm": _allocate_shm,                       # shared between processes (asbru.ring.shm)
}


def register_space(space: str, allocator: Allocator) -> None:
    """Make ``Ring(space=space)`` allocate its memory with ``allocator``."""
    _SPACES[str(space)] = allocator


def spaces() -> list[str]:
    """Names of the memory spaces a ring can be created in."""
    return sorted(_SPACES)


def check_space(space: object) -> str:
    """Return ``space`` as a known space name, or raise a one-line ArgumentError."""
    if isinstance(space, bytes):
        space = space.decode("ascii", "replace")
    if not isinstance(space, str) or space not in _SPACES:
        raise ArgumentError(f"space must be one of {', '.join(repr(s) for s in spaces())}; got {space!r}")
    return space


def allocate(space: str, nringlet: int, nbyte: int, core: Optional[int] = None) -> np.ndarray:
    """One ``(nringlet, nbyte)`` uint8 array in ``space`` (a CuPy array for ``"cuda"``)."""
    buf = _SPACES[check_space(space)](int(nringlet), int(nbyte), core)
    if buf.dtype != np.uint8 or tuple(buf.shape) != (nringlet, nbyte):
        raise RuntimeError(f"allocator for space {space!r} returned {buf.dtype} {buf.shape}, "
                           f"expected uint8 {(nringlet, nbyte)}")
    return buf
