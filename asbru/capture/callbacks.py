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
import math
from typing import Any, Callable

import numpy as np

from asbru.errors import ArgumentError, AsbruError

__all__ = ["PacketCaptureCallback", "CallbackResult", "MAX_HEADER_FROM_ADDRESS"]


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


#: The most header bytes asbru copies from a bare address (an int, or a ``c_void_p`` that
#: does not keep its buffer alive): nothing says how large the memory there is, so a larger
#: ``hdr_size_ptr[0]`` is refused rather than read past the buffer.  A ctypes buffer, or
#: ``ctypes.cast(buffer, c_void_p)``, bounds the header by the buffer's own size instead.
MAX_HEADER_FROM_ADDRESS = 1 << 16


def describe(func: Callable, fmt_name: str) -> str:
    """``"chips sequence callback 'my_cb'"`` -- how errors name a callback."""
    name = getattr(func, "__name__", None) or getattr(func, "__qualname__", None)
    if not isinstance(name, str):
        name = type(func).__name__
    return f"{fmt_name} sequence callback {name!r}"


def _int_value(v: Any, what: str, who: str) -> int:
    """An integer the callback gave (int, numpy integer or ctypes integer); else one line."""
    if isinstance(v, ctypes._SimpleCData) and not isinstance(v, (ctypes.c_char_p, ctypes.c_wchar_p,
                                                                   ctypes.c_void_p)):
        v = v.value
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "..."
    raise AsbruError(f"{who}: {what} must be an integer; got {type(v).__name__} {shown}")


def _buffer_size(obj: Any) -> int | None:
    """Bytes in a ctypes buffer (array, structure, string buffer), or None."""
    if isinstance(obj, (ctypes.Array, ctypes.Structure, ctypes.Union)):
        return ctypes.sizeof(obj)
    return None


def _source_size(ptr: Any) -> int | None:
    """Bytes in the buffer a ctypes pointer was made from -- ``ctypes.cast(buffer,
    c_void_p)`` keeps that buffer alive in ``_objects`` (a ctypes array, or the bytes of a
    ``c_char_p``) -- or None when nothing says."""
    objs = getattr(ptr, "_objects", None)
    if isinstance(objs, bytes):
        return len(objs) + 1           # a bytes object's buffer ends with a NUL
    if isinstance(objs, dict):
        for obj in objs.values():
            n = _buffer_size(obj)
            if n is not None:
                return n
            if isinstance(obj, bytes):
                return len(obj) + 1
    return None


def _header_from_pointer(value: Any, size: Any, who: str) -> bytes:
    """Copy the header the callback pointed at (right away: the buffer may be temporary),
    never more bytes than the buffer it gave holds."""
    if value is None:
        return b""
    n = _int_value(size, "hdr_size_ptr[0] (the header size)", who)
    if n < 0:
        raise AsbruError(f"{who}: hdr_size_ptr[0] (the header size) must be >= 0; got {n}")
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if n > len(data):
            raise AsbruError(f"{who}: hdr_size_ptr[0] = {n} is larger than the {len(data)}-byte "
                             f"header it gave in hdr_ptr[0]")
        return data[:n] if n > 0 else data
    if n == 0:
        return b""
    limit = _buffer_size(value)
    if limit is not None:
        addr = ctypes.addressof(value)
    else:
        if isinstance(value, (ctypes.c_void_p, ctypes.c_char_p)):
            addr = ctypes.cast(value, ctypes.c_void_p).value
            limit = _source_size(value)
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            addr = int(value)
        elif isinstance(value, ctypes._Pointer):
            addr = ctypes.cast(value, ctypes.c_void_p).value
            limit = _source_size(value) or ctypes.sizeof(value._type_)
        elif hasattr(value, "value") and isinstance(value.value, int):
            addr = value.value
        else:
            raise AsbruError(f"{who}: hdr_ptr[0] must be a pointer (ctypes.c_void_p, int address, "
                             f"ctypes buffer) or bytes; got {type(value).__name__}")
        if limit is None and n > MAX_HEADER_FROM_ADDRESS:
            raise AsbruError(f"{who}: hdr_size_ptr[0] = {n} bytes from a bare address is more than "
                             f"asbru copies ({MAX_HEADER_FROM_ADDRESS}); give the ctypes buffer "
                             f"itself (or ctypes.cast(buffer, c_void_p)) so its size is known")
    if limit is not None and n > limit:
        raise AsbruError(f"{who}: hdr_size_ptr[0] = {n} is larger than the {limit}-byte buffer "
                         f"hdr_ptr[0] points at")
    if not addr:
        raise AsbruError(f"{who}: hdr_ptr[0] is a NULL pointer with hdr_size_ptr[0] = {n}")
    return ctypes.string_at(addr, n)


def _plain(v: Any, path: str, who: str) -> Any:
    """``v`` as plain JSON types (numpy scalars become Python numbers); one line naming the
    place of anything JSON cannot hold."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, np.bool_):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(float(v)):
            raise AsbruError(f"{who}: header value at {path} is {float(v)}, which JSON cannot hold")
        return float(v)
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise AsbruError(f"{who}: header key {k!r} at {path} is a {type(k).__name__}; "
                                 f"JSON keys are strings")
            out[k] = _plain(x, f"{path}[{k!r}]", who)
        return out
    if isinstance(v, (list, tuple)):
        return [_plain(x, f"{path}[{i}]", who) for i, x in enumerate(v)]
    what = f"a numpy array of shape {v.shape}" if isinstance(v, np.ndarray) else f"a {type(v).__name__}"
    raise AsbruError(f"{who}: header value at {path} is {what}, which JSON cannot hold "
                     f"(use .tolist() or a number)")


def _header_value(h: Any, who: str) -> bytes:
    if h is None:
        return b""
    if isinstance(h, (dict, list)):
        return json.dumps(_plain(h, "header", who)).encode()
    if isinstance(h, str):
        return h.encode()
    if isinstance(h, (bytes, bytearray, memoryview)):
        return bytes(h)
    raise AsbruError(f"{who} returned a header of type {type(h).__name__}; return a dict, str, "
                     f"bytes, None or (time_tag, header)")


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
        elif p.kind == p.KEYWORD_ONLY and p.default is p.empty:
            req = 10 ** 6   # a required keyword-only parameter can never be given
    return req, mx, star


def _call(func: Callable, args: tuple, who: str, nlead: int, nptr: int) -> Any:
    """``func(*args)``; a TypeError raised by the call itself (not inside the function: the
    arguments do not fit) becomes one line naming the callback."""
    try:
        return func(*args)
    except TypeError as exc:
        tb = exc.__traceback__
        if tb is not None and tb.tb_next is None:
            raise ArgumentError(f"{who} cannot be called with {len(args)} arguments ({exc}); it "
                                f"must take {nlead} (pythonic style) or {nlead + nptr} (Bifrost "
                                f"style, with pointers)") from None
        raise


def call_sequence_callback(func: Callable, lead: tuple, family: str, fmt_name: str,
                           default_time_tag: int) -> CallbackResult:
    """Call ``func`` in whichever style it is written.  Exceptions it raises propagate to
    ``recv()`` unchanged (with a note naming the callback); what it gets wrong in what it
    returns or sets raises a one-line error naming it."""
    who = describe(func, fmt_name)
    nptr = 3 if family == "pointer" else 2
    nlead = len(lead)
    req, mx, star = _positional_arity(func)
    if not star and req <= nlead <= mx < nlead + nptr:
        ret = _noted(func, lead, who, nlead, nptr)
        if isinstance(ret, tuple):
            if len(ret) != 2:
                raise AsbruError(f"{who} returned a tuple of {len(ret)} items; expected "
                                 f"(time_tag, header)")
            time_tag = _int_value(ret[0], "the time tag (first item returned)", who)
            return CallbackResult(_header_value(ret[1], who), time_tag)
        return CallbackResult(_header_value(ret, who), None)
    if not (star or req <= nlead + nptr <= mx):
        takes = ((f"{req}" if req == mx else f"{req}..{mx}") + " positional" if req < 10 ** 6
                 else "a keyword-only argument without a default")
        raise ArgumentError(f"{who} must take {nlead} arguments (pythonic style) or "
                            f"{nlead + nptr} (Bifrost style, with pointers); it takes {takes}")
    tt = _Out(default_time_tag if family == "pointer" else 0)
    hp = _Out(None)
    hs = _Out(0)
    args = lead + ((tt, hp, hs) if family == "pointer" else (hp, hs))
    ret = _noted(func, args, who, nlead, nptr)
    if ret is not None and not (isinstance(ret, (int, np.integer)) and not isinstance(ret, bool)
                                and ret == 0):
        raise AsbruError(f"{who} returned {ret!r} (Bifrost-style callbacks must return 0)")
    header = _header_from_pointer(hp.value, hs.value, who) if hp.written else b""
    time_tag = None
    if family == "pointer" and tt.written:
        time_tag = _int_value(tt.value, "time_tag_ptr[0] (the time tag)", who)
    return CallbackResult(header, time_tag)


def _noted(func: Callable, args: tuple, who: str, nlead: int, nptr: int) -> Any:
    try:
        return _call(func, args, who, nlead, nptr)
    except ArgumentError:
        raise
    except Exception as exc:
        # the callback's own exception, unchanged; the note says where it came from
        if hasattr(exc, "add_note"):
            exc.add_note(f"(raised by the {who})")
        raise


class PacketCaptureCallback:
    """Holds one sequence callback per format: ``set_chips(cb)``, ``set_tbn(cb)``...

    There is a ``set_<NAME>`` for every registered format (built-in or plugin), found in the
    format registry when it is asked for: what a callback receives is declared by the
    format module itself (``CALLBACK_FAMILY``, ``CALLBACK_ARGS``, ``callback_args``), so
    this class knows no format by name."""

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
        if attr.startswith("set_") and len(attr) > 4:
            name = attr[4:]
            from asbru import formats
            try:
                formats.module(name)
            except Exception:
                raise AttributeError(f"PacketCaptureCallback has no {attr!r}: "
                                     f"no capturable format named {name!r}") from None
            setter = lambda func: self._set(name, func)  # noqa: E731
            setter.__name__ = setter.__qualname__ = attr
            setter.__doc__ = f"Set (or with None, clear) the {name} sequence callback."
            return setter
        raise AttributeError(f"'PacketCaptureCallback' object has no attribute {attr!r}")

    def __dir__(self) -> list[str]:
        from asbru import formats
        return sorted(set(super().__dir__()) | {f"set_{n}" for n in formats.list()})
