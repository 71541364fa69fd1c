"""GPU memory spaces: ``cuda_host`` (pinned host memory) and ``cuda`` (device memory).

Both are optional: they need CuPy (``pip install asbru[gpu]``) and a CUDA GPU.  Without
either, creating a ring in one of these spaces raises :class:`SpaceUnavailable` with one
line saying what is missing; nothing is imported at ``import asbru`` time.

* ``cuda_host`` rings are ordinary NumPy arrays over page-locked memory (CuPy's pinned
  allocator, i.e. ``cudaHostAlloc``): every capture, DiskReader and NumPy consumer uses them
  unchanged, and host -> GPU copies from them run at the PCIe peak instead of through the
  driver's pageable staging buffer.
* ``cuda`` rings are CuPy arrays in device memory: spans are CuPy arrays, so they expose
  ``__cuda_array_interface__`` and DLPack (PyTorch, JAX, Numba take them without a copy).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..errors import AsbruError
from .memory import PAGE

GPU_SPACES = ("cuda_host", "cuda")


class SpaceUnavailable(AsbruError):
    """A memory space that needs something this machine lacks (CuPy, a GPU)."""


_cupy: Any = None
_why: Optional[str] = None


def cupy_or_raise(space: str) -> Any:
    """The CuPy module with a usable GPU, or SpaceUnavailable naming what is missing."""
    global _cupy, _why
    if _cupy is not None:
        return _cupy
    if _why is None:
        try:
            import cupy  # noqa: PLC0415  (optional dependency)
        except Exception as exc:  # ImportError, or a CuPy build that fails to load
            _why = (f"needs CuPy, which is not installed (pip install 'asbru[gpu]'): "
                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        else:
            try:
                n = cupy.cuda.runtime.getDeviceCount()
            except Exception as exc:
                _why = f"needs a CUDA GPU, and CuPy found none: {str(exc).splitlines()[0]}"
            else:
                if n < 1:
                    _why = "needs a CUDA GPU, and CuPy found none"
                else:
                    _cupy = cupy
                    return cupy
    raise SpaceUnavailable(f"space {space!r} {_why}")


def gpu_unavailable_reason() -> Optional[str]:
    """None when the GPU spaces work here, else the one-line reason they do not."""
    try:
        cupy_or_raise("cuda")
    except SpaceUnavailable as exc:
        return str(exc)
    return None


def allocate_cuda_host(nringlet: int, nbyte: int, core: Optional[int]) -> np.ndarray:
    """Zeroed, page-aligned pinned host memory as a NumPy ``(nringlet, nbyte)`` array."""
    cupy = cupy_or_raise("cuda_host")
    stride = -(-max(nbyte, 1) // PAGE) * PAGE
    total = nringlet * stride
    mem = cupy.cuda.alloc_pinned_memory(total + PAGE)
    raw = np.frombuffer(mem, dtype=np.uint8, count=total + PAGE)   # keeps `mem` alive
    start = (-raw.ctypes.data) % PAGE
    flat = raw[start:start + total]
    flat.fill(0)                       # zeroed and touched now, not inside a capture loop
    return flat.reshape(nringlet, stride)[:, :nbyte]


def allocate_cuda(nringlet: int, nbyte: int, core: Optional[int]) -> Any:
    """Zeroed device memory as a CuPy ``(nringlet, nbyte)`` uint8 array."""
    cupy = cupy_or_raise("cuda")
    stride = -(-max(nbyte, 1) // PAGE) * PAGE
    flat = cupy.zeros(nringlet * stride, dtype=cupy.uint8)
    cupy.cuda.get_current_stream().synchronize()
    return flat.reshape(nringlet, stride)[:, :nbyte]


def is_device_array(a: Any) -> bool:
    """True for a CuPy (device) array, without importing CuPy."""
    return type(a).__module__.startswith("cupy")


def host_pointer_or_device(a: Any) -> int:
    """Address of an array's first byte (NumPy or CuPy)."""
    if is_device_array(a):
        return int(a.data.ptr)
    return int(a.ctypes.data)


def sync_current_stream() -> None:
    """Wait for work queued on CuPy's current stream (a writer's kernels into a span)."""
    if _cupy is not None:
        _cupy.cuda.get_current_stream().synchronize()
