"""``HeaderInfo``: the per-stream header values a packet writer copies into every header.

Backed by one int64 array in :data:`asbru.formats.spec.HEADERINFO_FIELDS` order (``.array``),
which the compiled header fillers read directly: a ``send()`` passes it to compiled code
without converting anything.

Each setter takes Bifrost's C argument type.  Bifrost silently truncates out-of-range values
(a gain of 70000 becomes 4464); asbru rejects them with a one-line :class:`ArgumentError`
instead, except where Bifrost's wrapping is documented behaviour that callers rely on:
``set_tuning`` (and ``set_tuning1``) accept 0 .. 2**32-1 as well as negative int32 values,
and store the signed 32-bit interpretation, so the 32 bits written to the wire are exactly
the caller's (a DRX tuning word of 3e9 is written as 0xB2D05E00).
"""
from __future__ import annotations

import operator

import numpy as np

from asbru.errors import ArgumentError
from asbru.formats.spec import (H_BEAM, H_CHAN0, H_DECIMATION, H_GAIN, H_NCHAN, H_NSRC,
                                H_TUNING, H_TUNING1, HEADERINFO_FIELDS, NINFO)

__all__ = ["HeaderInfo"]

_INT32 = (-(1 << 31), (1 << 31) - 1)
_UINT16 = (0, (1 << 16) - 1)
_UINT32 = (0, (1 << 32) - 1)
_TUNING = (-(1 << 31), (1 << 32) - 1)


def _as_int(name: str, value: object, lo: int, hi: int, what: str) -> int:
    try:
        v = operator.index(value)  # ints and numpy integers; refuses floats (no silent rounding)
    except TypeError:
        raise ArgumentError(f"{name}: expected an integer ({what}, {lo}..{hi}), "
                            f"got {type(value).__name__} {value!r}") from None
    if not lo <= v <= hi:
        raise ArgumentError(f"{name}: {v} is out of range; accepted: {lo}..{hi} ({what})")
    return v


def _wrap_int32(v: int) -> int:
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


class HeaderInfo:
    """Header fields shared by all packets of a ``send()`` (Bifrost's ``HeaderInfo``).

    All fields start at zero.  Which fields a format writes, and where, is listed in
    ``docs/writing.md``.
    """

    __slots__ = ("_a",)

    def __init__(self) -> None:
        self._a = np.zeros(NINFO, dtype=np.int64)

    @property
    def array(self) -> np.ndarray:
        """The int64 array handed to the compiled header fillers (``HEADERINFO_FIELDS`` order)."""
        return self._a

    # -- Bifrost's setters -------------------------------------------------------------
    def set_nsrc(self, nsrc: int) -> None:
        """Number of sources (C int).  Formats: chips/ibeam nroach/nserver, pbeam, cor, tbf."""
        self._a[H_NSRC] = _as_int("nsrc", nsrc, *_INT32, "C int")

    def set_nchan(self, nchan: int) -> None:
        """Channels per packet (C int)."""
        self._a[H_NCHAN] = _as_int("nchan", nchan, *_INT32, "C int")

    def set_chan0(self, chan0: int) -> None:
        """First channel (C int)."""
        self._a[H_CHAN0] = _as_int("chan0", chan0, *_INT32, "C int")

    def set_tuning(self, tuning: int) -> None:
        """Tuning word (signed 32-bit; 2**31..2**32-1 are stored wrapped, bits unchanged)."""
        self._a[H_TUNING] = _wrap_int32(_as_int("tuning", tuning, *_TUNING, "32-bit word"))

    def set_gain(self, gain: int) -> None:
        """Gain (C uint16)."""
        self._a[H_GAIN] = _as_int("gain", gain, *_UINT16, "uint16")

    def set_decimation(self, decimation: int) -> None:
        """Decimation / integration count (C uint32)."""
        self._a[H_DECIMATION] = _as_int("decimation", decimation, *_UINT32, "uint32")

    # -- asbru extensions (fields some formats can carry) ------------------------------
    def set_tuning1(self, tuning1: int) -> None:
        """Second tuning word (signed 32-bit, as :meth:`set_tuning`)."""
        self._a[H_TUNING1] = _wrap_int32(_as_int("tuning1", tuning1, *_TUNING, "32-bit word"))

    def set_beam(self, beam: int) -> None:
        """Beam number (C int)."""
        self._a[H_BEAM] = _as_int("beam", beam, *_INT32, "C int")

    # -- reading back --------------------------------------------------------------------
    def __getattr__(self, name: str) -> int:
        # read access in the setters' names: info.nsrc, info.tuning, ...
        if name in HEADERINFO_FIELDS:
            return int(self._a[HEADERINFO_FIELDS.index(name)])
        raise AttributeError(f"'HeaderInfo' object has no attribute {name!r}")

    def as_dict(self) -> dict[str, int]:
        return {n: int(v) for n, v in zip(HEADERINFO_FIELDS, self._a)}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self.as_dict().items() if v)
        return f"HeaderInfo({fields})"
