"""Bifrost's data-type names (``ci4``, ``ci8``, ``cf32``, ``u8``, ...) and their numpy layouts.

A Bifrost type name is a kind (``i``, ``u``, ``f``, ``ci``, ``cf``) followed by the number of
bits of ONE real component: ``ci8`` is a complex value made of two int8, two bytes in all.

Storage (the bytes are what the wire formats and Bifrost's files carry, so they must match):

========  ==========================================  =====================================
name      numpy dtype used for storage                 bytes
========  ==========================================  =====================================
i8..i64   int8 .. int64                                native
u8..u64   uint8 .. uint64                              native
f16..f64  float16 .. float64                           native
ci4       ``[('re_im', 'u1')]``                        1 byte / value: re in the HIGH nibble,
                                                       im in the LOW nibble, two's complement
ci8..ci64 ``[('re', iN), ('im', iN)]``                 re then im, little-endian integers
cf16      ``[('re', 'f2'), ('im', 'f2')]``             re then im
cf32/64   complex64 / complex128                       native
i4 i2 i1  int8, several values per byte                packed along the last axis, first value
u4 u2     uint8, several values per byte               in the most significant bits
ci2 ci1   int8, several complex values per byte
========  ==========================================  =====================================

This module imports only numpy, so that code which merely checks dtypes (the packet writers)
does not pay for numba.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from asbru.errors import ArgumentError

__all__ = [
    "DataType",
    "bifrost_dtype_of",
    "name_of_numpy_dtype",
    "numpy_dtype_of",
    "KNOWN_NAMES",
    "ci4",
    "ci8",
    "ci16",
    "ci32",
    "ci64",
    "cf16",
]

# Structured dtypes of the complex types numpy has no native type for.  Field names are
# Bifrost's, so that arrays written by either library read back field by field.
ci4 = np.dtype([("re_im", "u1")])
ci8 = np.dtype([("re", "i1"), ("im", "i1")])
ci16 = np.dtype([("re", "<i2"), ("im", "<i2")])
ci32 = np.dtype([("re", "<i4"), ("im", "<i4")])
ci64 = np.dtype([("re", "<i8"), ("im", "<i8")])
cf16 = np.dtype([("re", "<f2"), ("im", "<f2")])

# name -> numpy storage dtype.  Packed sub-byte types store whole bytes.
_STORAGE: dict[str, np.dtype] = {
    "i1": np.dtype(np.int8),
    "i2": np.dtype(np.int8),
    "i4": np.dtype(np.int8),
    "i8": np.dtype(np.int8),
    "i16": np.dtype(np.int16),
    "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64),
    "u2": np.dtype(np.uint8),
    "u4": np.dtype(np.uint8),
    "u8": np.dtype(np.uint8),
    "u16": np.dtype(np.uint16),
    "u32": np.dtype(np.uint32),
    "u64": np.dtype(np.uint64),
    "f16": np.dtype(np.float16),
    "f32": np.dtype(np.float32),
    "f64": np.dtype(np.float64),
    "ci1": np.dtype(np.int8),
    "ci2": np.dtype(np.int8),
    "ci4": ci4,
    "ci8": ci8,
    "ci16": ci16,
    "ci32": ci32,
    "ci64": ci64,
    "cf16": cf16,
    "cf32": np.dtype(np.complex64),
    "cf64": np.dtype(np.complex128),
}

KNOWN_NAMES: tuple[str, ...] = tuple(_STORAGE)

# Types whose storage is shared with a wider type (several values per byte): the numpy dtype
# alone cannot say which one an array holds, so asbru.ndarray remembers the name.
PACKED_NAMES: frozenset[str] = frozenset({"i1", "i2", "i4", "u2", "u4", "ci1", "ci2"})

_TYPE_CODE = {"i": 0, "u": 1, "f": 2, "ci": 0, "cf": 2}

# numpy dtype -> Bifrost name, for the unambiguous storage dtypes (byte order ignored here;
# it is checked where bytes are interpreted).
_FROM_NUMPY: dict[np.dtype, str] = {
    dt: name for name, dt in _STORAGE.items() if name not in PACKED_NAMES
}
# Bifrost itself declares ci4 with a signed byte; accept that spelling too.
_FROM_NUMPY[np.dtype([("re_im", "i1")])] = "ci4"


def _split(name: str) -> tuple[str, int]:
    i = 0
    while i < len(name) and not name[i].isdigit():
        i += 1
    return name[:i], int(name[i:]) if name[i:].isdigit() else -1


def _accepted() -> str:
    return ", ".join(KNOWN_NAMES)


def name_of_numpy_dtype(dtype: Any) -> str | None:
    """The Bifrost name of a numpy dtype, or None if Bifrost has no name for it.

    Byte order is ignored (``>i2`` is ``i16``); bool, strings, objects have no name."""
    if dtype is None:
        return None
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        return None
    if dt.fields is None and dt.byteorder not in ("=", "|"):
        dt = dt.newbyteorder("=")
    elif dt.fields is not None:
        # Structured: normalise each field to native order for the lookup.
        try:
            dt = np.dtype([(n, dt.fields[n][0].newbyteorder("=")) for n in dt.names])
        except (TypeError, ValueError):
            return None
    return _FROM_NUMPY.get(dt)


class DataType:
    """A Bifrost data type: ``DataType('ci8')``, ``DataType(numpy.complex64)``, ``DataType(other)``.

    ``str(DataType('ci8')) == 'ci8'`` and a DataType compares equal to its name, so code that
    compares ``a.bf.dtype == 'ci8'`` works."""

    __slots__ = ("_name", "_kind", "_nbit")

    def __init__(self, t: "str | DataType | np.dtype | type | Any") -> None:
        if isinstance(t, DataType):
            name = t._name
        elif isinstance(t, str) and t in _STORAGE:
            name = t
        else:
            # Not a Bifrost name: maybe a numpy dtype, type or spelling ('complex64').
            # Bifrost names win over numpy's short codes ('i4' is 4-bit, not int32).
            name = name_of_numpy_dtype(t)
            if name is None:
                raise ArgumentError(
                    f"dtype: unknown data type {t!r}; accepted: {_accepted()} "
                    "(or the matching numpy dtype)"
                )
        self._name = name
        self._kind, self._nbit = _split(name)

    # -- description -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        """``'i'``, ``'u'``, ``'f'``, ``'ci'`` or ``'cf'``."""
        return self._kind

    @property
    def nbit(self) -> int:
        """Bits per real component (``ci8`` -> 8, ``cf32`` -> 32)."""
        return self._nbit

    @property
    def is_complex(self) -> bool:
        return self._kind.startswith("c")

    @property
    def is_real(self) -> bool:
        return not self.is_complex

    @property
    def is_integer(self) -> bool:
        return self._kind in ("i", "u", "ci")

    @property
    def is_signed(self) -> bool:
        return self._kind != "u"

    @property
    def is_floating_point(self) -> bool:
        return self._kind in ("f", "cf")

    @property
    def is_packed(self) -> bool:
        """True when several values share one storage byte (i4, i2, i1, u4, u2, ci2, ci1)."""
        return self._name in PACKED_NAMES

    @property
    def itemsize_bits(self) -> int:
        """Bits per (complex or real) value."""
        return self._nbit * (2 if self.is_complex else 1)

    @property
    def itemsize(self) -> int:
        """Bytes per value.  Undefined (ArgumentError) for the packed types below one byte."""
        bits = self.itemsize_bits
        if bits < 8:
            raise ArgumentError(
                f"itemsize: {self._name} uses {bits} bits per value, less than a byte; "
                "use itemsize_bits or values_per_byte"
            )
        return bits // 8

    @property
    def values_per_byte(self) -> int:
        """How many values one storage byte holds (1 for every type of a byte or more)."""
        bits = self.itemsize_bits
        return 8 // bits if bits < 8 else 1

    @property
    def code(self) -> int:
        """Bifrost's C dtype code: ``nbit | type << 8 | complex << 20``."""
        return self._nbit | (_TYPE_CODE[self._kind] << 8) | (int(self.is_complex) << 20)

    # -- conversions -----------------------------------------------------------------
    def as_numpy_dtype(self) -> np.dtype:
        """The numpy dtype of the storage (packed types: the int8/uint8 byte that holds them)."""
        return _STORAGE[self._name]

    def as_real(self) -> "DataType":
        """``ci8`` -> ``i8``, ``cf32`` -> ``f32``; real types are returned unchanged."""
        if not self.is_complex:
            return self
        return DataType(self._kind[1:] + str(self._nbit))

    def as_complex(self) -> "DataType":
        """``i8`` -> ``ci8``, ``f32`` -> ``cf32``; complex types are returned unchanged."""
        if self.is_complex:
            return self
        name = "c" + self._kind + str(self._nbit)
        if name not in _STORAGE:
            raise ArgumentError(f"dtype: {self._name} has no complex counterpart")
        return DataType(name)

    # -- protocol ----------------------------------------------------------------------
    def __str__(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"DataType({self._name!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DataType):
            return other._name == self._name
        if isinstance(other, str):
            return other == self._name
        name = name_of_numpy_dtype(other)
        return name is not None and name == self._name

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self._name)


def numpy_dtype_of(name: "str | DataType") -> np.dtype:
    """Storage numpy dtype for a Bifrost name (``'ci8'`` -> ``[('re','i1'),('im','i1')]``)."""
    return DataType(name).as_numpy_dtype()


def bifrost_dtype_of(array: Any) -> str:
    """The Bifrost type name of an array: ``'ci4'``, ``'ci8'``, ``'cf32'``, ``'f32'``, ``'u8'``...

    An ``asbru.ndarray`` answers with the name it carries (so a packed ``i4`` array is ``'i4'``,
    not ``'i8'``); any other object with a ``dtype`` is mapped from its numpy dtype.  Raises
    ArgumentError when Bifrost has no name for the dtype (bool, strings, objects...)."""
    bf = getattr(array, "bf", None)
    dt = getattr(bf, "dtype", None)
    if isinstance(dt, DataType):
        return dt.name
    np_dtype = getattr(array, "dtype", None)
    if np_dtype is None:
        raise ArgumentError(
            f"data: expected an array (asbru.ndarray or numpy.ndarray), got {type(array).__name__}"
        )
    name = name_of_numpy_dtype(np_dtype)
    if name is None:
        raise ArgumentError(
            f"data: numpy dtype {np.dtype(np_dtype)} has no Bifrost name; accepted: {_accepted()}"
        )
    return name
