"""asbru: packet capture and packet writing for radio-telescope data streams.

Bifrost-compatible public names (``asbru.ndarray``, ``asbru.quantize``, ``asbru.unpack``,
``asbru.ring.Ring``, ``asbru.packet_capture``, ``asbru.packet_writer``, ``asbru.address``,
``asbru.udp_socket``), implemented in Python with numba-compiled hot paths.
"""
from __future__ import annotations

import importlib

from asbru import _numba_cache  # noqa: F401  (before anything compiled is imported)

__version__ = "0.1.0"

# Top-level names are loaded on first use so that `import asbru` stays cheap (numba is
# imported only by the parts that need it).
_LAZY = {
    "ndarray": ("asbru.array", "ndarray"),
    "DataType": ("asbru.dtypes", "DataType"),
    "quantize": ("asbru.convert", "quantize"),
    "unpack": ("asbru.convert", "unpack"),
    "asarray": ("asbru.array", "asarray"),
    "EndOfDataStop": ("asbru.errors", "EndOfDataStop"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'asbru' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
