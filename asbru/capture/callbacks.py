"""``PacketCaptureCallback``: the per-format sequence callbacks, in two styles.

*Bifrost style* (pointer arguments): ``cb(<leading args>, [time_tag_ptr,] hdr_ptr,
hdr_size_ptr) -> int``.  The callback does ``time_tag_ptr[0] = t`` (pointer-family formats
only), ``hdr_ptr[0] = ctypes.cast(buf, ctypes.c_void_p)`` and ``hdr_size_ptr[0] = n`` and
returns 0.  The header is copied out of ``buf`` (``ctypes.string_at``) as soon as the
callback returns, so ``buf`` need not outlive the call.  ``hdr_ptr[0]`` may also be given
an int address, a ctypes buffer, ``bytes`` or ``str``.

*Pythonic style*: ``cb(<leading args>) -> header`` or ``-> (time_tag, header)``, where the
header is a dict (stored as JSON), str, bytes, or None (empty).

The two are told apart by how many positional arguments the callable takes: exactly the
number of leading arguments -> pythonic; the leading arguments plus the pointer arguments
(or ``*args``) -> Bifrost style.  References are held per instance (Bifrost kept them in a
class-level cache keyed by format, so a second instance could free the first's callback).
"""
from __future__ import annotations

import ctypes
import inspect
import json
from typing import Any, Callable

from asbru.errors import ArgumentError, AsbruError

__all__ = ["PacketCaptureCallback", "CallbackResult"]

# Bifrost's capturable formats; plugin formats get set_<name> through __getattr__.
BUILTIN = ("simple", "chips", "snap2", "ibeam", "pbeam", "cor", "vdif", "tbn", "drx", "drx8")


class _Out:
    """What a pointer argument looks like to a Bifrost-style callback: ``p[0] = value``."""

    __slots__ = ("value", "written")

    def __init__(self, value: Any = 0) -> None:
        self.value = value
        self.written = False

    def __setitem__(self, index: int, value: Any) -> None:
        if index != 0:
            raise IndexError("only [0] of a capture callback pointer argument can be set")
        self.value = value
        self.written = True

    def __getitem__(self, index: int) -> Any:
        if index != 0:
            raise IndexError("only [0] of a capture callback pointer argument can be read")
        return self.value

    @property
    def contents(self) -> Any:
        return self.value


def _header_from_pointer(value: Any, size: Any) -> bytes:
    """Copy the header the callback pointed at (right away: the buffer may be temporary)."""
    if value is None:
        return b""
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        try:
            n = int(size.value if hasattr(size, "value") else size)
        except (TypeError, ValueError):
            n = 0
        return data[:n] if n > 0 else data
    try:
        n = int(size.value if hasattr(size, "value") else size)
    except (TypeError, ValueError):
        raise AsbruError(f"capture callback: hdr_size_ptr[0] must be an int, got {size!r}") from None
    if n <= 0:
        return b""
    if isinstance(value, ctypes.c_void_p):
        addr = value.value
    elif isinstance(value, int):
        addr = value
    elif isinstance(value, ctypes.Array):
        addr = ctypes.addressof(value)
    elif hasattr(value, "value") and isinstance(value.value, int):
        addr = value.value
    else:
        try:
            addr = ctypes.cast(value, ctypes.c_void_p).value
        except (TypeError, ctypes.ArgumentError):
            raise AsbruError(f"capture callback: hdr_ptr[0] must be a pointer (ctypes.c_void_p, int "
                             f"address, ctypes buffer) or bytes; got {type(value).__name__}") from None
    if not addr:
        return b""
    return ctypes.string_at(addr, n)


def _header_value(h: Any) -> bytes:
    if h is None:
        return b""
    if isinstance(h, (dict, list)):
        return json.dumps(h).encode()
    if isinstance(h, str):
        return h.encode()
    if isinstance(h, (bytes, bytearray, memoryview)):
        return bytes(h)
    raise AsbruError(f"capture callback returned a header of type {type(h).__name__}; "
                     f"return a dict, str, bytes or (time_tag, header)")


class CallbackResult:
    """What one callback call produced: the header bytes and the time tag it set (or None)."""

    __slots__ = ("header", "time_tag")

    def __init__(self, header: bytes, time_tag: int | None) -> None:
        self.header = header
        self.time_tag = time_tag


def _positional_arity(func: Callable) -> tuple[int, int, bool]:
    """(required positional, max positional, has *args) of a callable."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return (-1, -1, True)  # builtins / ctypes functions: assume Bifrost style
    req = mx = 0
    star = False
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            mx += 1
            if p.default is p.empty:
                req += 1
        elif p.kind == p.VAR_POSITIONAL:
            star = True
    return req, mx, star


def call_sequence_callback(func: Callable, lead: tuple, family: str, fmt_name: str,
                           default_time_tag: int) -> CallbackResult:
    """Call ``func`` in whichever style it is written; errors propagate to ``recv()``."""
    nptr = 3 if family == "pointer" else 2
    nlead = len(lead)
    req, mx, star = _positional_arity(func)
    if not star and req <= nlead <= mx < nlead + nptr:
        ret = func(*lead)
        if isinstance(ret, tuple):
            if len(ret) != 2:
                raise AsbruError(f"{fmt_name} callback returned a tuple of {len(ret)} items; "
                                 f"expected (time_tag, header)")
            return CallbackResult(_header_value(ret[1]), int(ret[0]))
        return CallbackResult(_header_value(ret), None)
    if not (star or req <= nlead + nptr <= mx):
        raise ArgumentError(f"{fmt_name} callback must take {nlead} arguments (pythonic style) or "
                            f"{nlead + nptr} (Bifrost style, with pointers); it takes {req}..{mx}")
    tt = _Out(default_time_tag if family == "pointer" else 0)
    hp = _Out(None)
    hs = _Out(0)
    args = lead + ((tt, hp, hs) if family == "pointer" else (hp, hs))
    ret = func(*args)
    if ret not in (None, 0) and not (isinstance(ret, int) and ret == 0):
        raise AsbruError(f"{fmt_name} sequence callback returned {ret!r} (Bifrost-style callbacks "
                         f"must return 0)")
    header = _header_from_pointer(hp.value, hs.value) if hp.written else b""
    time_tag = None
    if family == "pointer" and tt.written:
        v = tt.value
        time_tag = int(v.value if hasattr(v, "value") else v)
    return CallbackResult(header, time_tag)


class PacketCaptureCallback:
    """Holds one sequence callback per format (``set_chips(cb)``, ``set_tbn(cb)``...)."""

    def __init__(self) -> None:
        self._callbacks: dict[str, Callable] = {}

    def _set(self, name: str, func: Callable | None) -> None:
        if func is not None and not callable(func):
            raise ArgumentError(f"set_{name}: the callback must be callable or None; "
                                f"got {type(func).__name__}")
        if func is None:
            self._callbacks.pop(name, None)
        else:
            self._callbacks[name] = func

    def get(self, name: str) -> Callable | None:
        """The callback set for format ``name`` (a format NAME such as ``"chips"``), or None."""
        return self._callbacks.get(name)

    def __getattr__(self, attr: str) -> Any:
        # set_<format> for every format, built-in or plugin
        if attr.startswith("set_") and len(attr) > 4:
            name = attr[4:]
            if name not in BUILTIN:
                try:
                    from asbru import formats
                    formats.module(name)
                except Exception:
                    raise AttributeError(f"PacketCaptureCallback has no {attr!r}: "
                                         f"no capturable format named {name!r}") from None
            return lambda func: self._set(name, func)
        raise AttributeError(f"'PacketCaptureCallback' object has no attribute {attr!r}")

    def set_simple(self, func: Callable | None) -> None:
        self._set("simple", func)

    def set_chips(self, func: Callable | None) -> None:
        self._set("chips", func)

    def set_snap2(self, func: Callable | None) -> None:
        self._set("snap2", func)

    def set_ibeam(self, func: Callable | None) -> None:
        self._set("ibeam", func)

    def set_pbeam(self, func: Callable | None) -> None:
        self._set("pbeam", func)

    def set_cor(self, func: Callable | None) -> None:
        self._set("cor", func)

    def set_vdif(self, func: Callable | None) -> None:
        self._set("vdif", func)

    def set_tbn(self, func: Callable | None) -> None:
        self._set("tbn", func)

    def set_drx(self, func: Callable | None) -> None:
        self._set("drx", func)

    def set_drx8(self, func: Callable | None) -> None:
        self._set("drx8", func)
