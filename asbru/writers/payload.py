"""Check a ``send()`` data array against a format and view it as packet payload bytes.

Accepted arrays (always C-contiguous, host memory; the bytes are sent as they are):

=========  =======================================================================
format     data dtype, shape
=========  =======================================================================
``cf32``   complex64 ``(ntime, nsrc, S)``
``f32``    float32 ``(ntime, nsrc, S)``
``u8``     uint8 ``(ntime, nsrc, S)``
``ci4``    asbru/Bifrost ci4 (``[('re_im', 'u1')]`` or ``'i1'``) or uint8 raw bytes
           ``(ntime, nsrc, S)``; one byte per sample, re in the high nibble
``ci8``    structured ``[('re','i1'),('im','i1')]`` ``(ntime, nsrc, S)``, or int8
           ``(ntime, nsrc, S, 2)`` (re, im)
``ci16``   structured ``[('re','<i2'),('im','<i2')]`` ``(ntime, nsrc, S)``, or little-endian
           int16 ``(ntime, nsrc, S, 2)``
=========  =======================================================================

``S`` is the format's samples per packet.  Anything else raises a one-line
:class:`ArgumentError` naming the expected dtype and shape; nothing is converted or copied
(a conversion would hide a wrong dtype, and a copy would cost as much as the send).
"""
from __future__ import annotations

import numpy as np

from asbru.errors import ArgumentError

__all__ = ["payload_view", "describe_accepted"]

_C4 = np.dtype([("re_im", "u1")])
_C4S = np.dtype([("re_im", "i1")])
_CI8 = np.dtype([("re", "i1"), ("im", "i1")])
_CI16 = np.dtype([("re", "<i2"), ("im", "<i2")])
_LE = np.little_endian

# write dtype -> (numpy dtypes accepted as (ntime, nsrc, S), scalar dtype accepted as
# (ntime, nsrc, S, 2) or None)
_RULES: dict[str, tuple[tuple[np.dtype, ...], np.dtype | None]] = {
    "cf32": ((np.dtype("<c8"),), None),
    "f32": ((np.dtype("<f4"),), None),
    "u8": ((np.dtype("u1"),), None),
    "ci4": ((_C4, _C4S, np.dtype("u1")), None),
    "ci8": ((_CI8,), np.dtype("i1")),
    "ci16": ((_CI16,), np.dtype("<i2")),
}

_NAMES = {
    "cf32": "complex64", "f32": "float32", "u8": "uint8",
    "ci4": "ci4 or uint8 (one byte per sample)",
    "ci8": "ci8 [('re','i1'),('im','i1')] or int8 with a trailing axis of 2",
    "ci16": "ci16 [('re','<i2'),('im','<i2')] or little-endian int16 with a trailing axis of 2",
}


def describe_accepted(write_dtype: str, samples_per_packet: int) -> str:
    """Human-readable rule, used in error messages and docs."""
    tail = ", 2" if _RULES.get(write_dtype, ((), None))[1] is not None else ""
    return (f"{_NAMES.get(write_dtype, write_dtype)} of shape (ntime, nsrc, {samples_per_packet})"
            + (f" or (ntime, nsrc, {samples_per_packet}{tail})" if tail else ""))


def _same(a: np.dtype, b: np.dtype) -> bool:
    # '=' and '<' are the same on a little-endian host; structured dtypes compare by fields
    if a == b:
        return True
    if a.fields is None and b.fields is None:
        return a.kind == b.kind and a.itemsize == b.itemsize and a.isnative == b.isnative \
            and (a.isnative or a.byteorder == b.byteorder)
    return False


_verdicts: dict[tuple[str, np.dtype], str] = {}


def _verdict(write_dtype: str, dt: np.dtype) -> str:
    """"scalar", "pair" or "" for a numpy dtype (cached: send() is called in tight loops)."""
    key = (write_dtype, dt)
    v = _verdicts.get(key)
    if v is None:
        scalars, pair = _RULES[write_dtype]
        v = "scalar" if any(_same(dt, s) for s in scalars) else \
            "pair" if pair is not None and _same(dt, pair) else ""
        if len(_verdicts) < 256:
            _verdicts[key] = v
    return v


def payload_view(data: object, fmt_name: str, write_dtype: str,
                 samples_per_packet: int) -> tuple[np.ndarray, int, int]:
    """``data`` as ``uint8[npkt, P]`` (a view, no copy) plus ``(ntime, nsrc)``.

    Raises :class:`ArgumentError` (one line) for anything but the accepted layouts.
    """
    if write_dtype not in _RULES:
        raise ArgumentError(f"format {fmt_name!r}: writer dtype {write_dtype!r} is not supported")
    if not isinstance(data, np.ndarray):
        raise ArgumentError(f"data: expected a numpy/asbru array of "
                            f"{describe_accepted(write_dtype, samples_per_packet)}, "
                            f"got {type(data).__name__}")
    dt = data.dtype
    bf = getattr(getattr(data, "bf", None), "dtype", None)
    if bf is not None and str(bf) != write_dtype and not (write_dtype == "ci4" and str(bf) == "u8"):
        # an asbru.ndarray says what it holds: a packed i4 array is not ci4 even if both are bytes
        raise ArgumentError(f"data: format {fmt_name!r} needs "
                            f"{describe_accepted(write_dtype, samples_per_packet)}; "
                            f"got an asbru.ndarray of {bf}")
    verdict = _verdict(write_dtype, dt)
    shape = data.shape
    if verdict == "scalar":
        if len(shape) != 3:
            raise ArgumentError(f"data: format {fmt_name!r} needs "
                                f"{describe_accepted(write_dtype, samples_per_packet)}; "
                                f"got ndim {data.ndim} shape {shape}")
    elif verdict == "pair":
        if len(shape) != 4 or shape[3] != 2:
            raise ArgumentError(f"data: format {fmt_name!r} needs "
                                f"{describe_accepted(write_dtype, samples_per_packet)}; "
                                f"got {dt} of shape {shape}")
    else:
        raise ArgumentError(f"data: format {fmt_name!r} needs "
                            f"{describe_accepted(write_dtype, samples_per_packet)}; got dtype {dt}")
    if shape[2] != samples_per_packet:
        raise ArgumentError(f"data: format {fmt_name!r} needs {samples_per_packet} samples per packet "
                            f"(last axis); got shape {shape}")
    if not data.flags.c_contiguous:
        raise ArgumentError(f"data: must be C-contiguous (use numpy.ascontiguousarray); "
                            f"got strides {data.strides}")
    ntime, nsrc = int(shape[0]), int(shape[1])
    npkt = ntime * nsrc
    # a plain ndarray view of the same memory (asbru.ndarray subclass hooks never run here)
    raw = np.asarray(data).reshape(-1).view(np.uint8)
    return raw.reshape(npkt, raw.size // npkt if npkt else 0), ntime, nsrc
