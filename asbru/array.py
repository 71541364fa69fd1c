"""``asbru.ndarray``: a numpy array that knows its Bifrost type name (``ci4``, ``ci8``, ``cf32`` ...).

It is a plain ``numpy.ndarray`` subclass: numpy functions, slicing, ``reshape``, ``transpose``
and ``copy`` work unchanged and keep the type, because the type is read from the numpy dtype
(``ci8`` is the structured dtype ``[('re','i1'),('im','i1')]``, see ``asbru.dtypes``).  Only
the packed types (``i4``, ``i2``, ``ci2`` ...) share their storage dtype with ``i8``/``u8``;
for those the name is remembered and kept by every view of the same storage dtype.

Constructor forms (Bifrost's)::

    asbru.ndarray(numpy_array)                    # a copy, type from the numpy dtype
    asbru.ndarray(numpy_array, dtype='ci8')       # a converted copy (see below)
    asbru.ndarray(values, dtype='i4')             # packed types: base holds VALUES, packed
                                                  # (wrap packed bytes with asarray(b, 'i4'))
    asbru.ndarray([[(0x10,), (0x98,)]], dtype='ci4')   # from nested lists of tuples
    asbru.ndarray(shape=(16, 5120), dtype='ci8')  # uninitialised memory, like numpy.empty
    asbru.ndarray(shape=..., dtype=..., buffer=obj)   # wraps obj (buffer protocol), no copy
    asbru.ndarray(shape=..., dtype=..., buffer=address, owner=obj)   # wraps raw memory

Complex conversion is one call each way: ``a.to_complex()`` (-> cf32, or ``'cf64'``) and
``asbru.ndarray.from_complex(z, 'ci8', scale=1.0)`` (rounds half to even and saturates,
exactly like ``asbru.quantize``).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from asbru.dtypes import DataType, name_of_numpy_dtype
from asbru.errors import ArgumentError

__all__ = ["ndarray", "asarray", "ArrayInfo"]


class ArrayInfo:
    """Bifrost's ``a.bf`` namespace: ``dtype`` (a DataType, or None for e.g. bool arrays),
    ``space`` (always ``'system'``: host memory), ``native`` (byte order), ``conj`` (False)."""

    __slots__ = ("dtype", "space", "native", "conj")

    def __init__(self, dtype: DataType | None, native: bool) -> None:
        self.dtype = dtype
        self.space = "system"
        self.native = native
        self.conj = False

    def __repr__(self) -> str:
        return f"ArrayInfo(dtype={self.dtype}, space='system', native={self.native}, conj=False)"


class _Memory:
    """Exposes raw memory at an integer address to numpy, and keeps its owner alive.

    numpy records this object as the array's base, so the owner lives as long as any view."""

    def __init__(self, address: int, nbytes: int, owner: Any, readonly: bool = False) -> None:
        self.owner = owner
        self.__array_interface__ = {
            "shape": (nbytes,),
            "typestr": "|u1",
            "data": (address, readonly),
            "version": 3,
        }


def _owner_extent(owner: Any) -> tuple[int, int, bool] | None:
    """(first address, end address, read-only) of the memory an owner exports, or None."""
    try:
        arr = np.asarray(owner) if isinstance(owner, np.ndarray) else np.frombuffer(owner, np.uint8)
    except (TypeError, ValueError, BufferError):
        return None
    from numpy.lib.array_utils import byte_bounds

    lo, hi = byte_bounds(arr)
    return int(lo), int(hi), not arr.flags.writeable


def _span(shape: tuple[int, ...], itemsize: int, strides: Sequence[int] | None) -> int:
    """Bytes an array of this shape/strides touches from its first element."""
    if any(n == 0 for n in shape):
        return 0
    if strides is None:
        return int(np.prod(shape, dtype=np.int64)) * itemsize
    if len(strides) != len(shape):
        raise ArgumentError(f"strides: need {len(shape)} values (one per dimension), got {len(strides)}")
    if any(s < 0 for s in strides):
        raise ArgumentError("strides: must be >= 0 when buffer is an integer address")
    return sum((n - 1) * s for n, s in zip(shape, strides)) + itemsize


def _normalise_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        out = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise ArgumentError(f"shape: expected an int or a sequence of ints, got {shape!r}") from None
    if any(n < 0 for n in out):
        raise ArgumentError(f"shape: dimensions must be >= 0, got {out}")
    return out


def _storage_shape(shape: tuple[int, ...], dt: DataType) -> tuple[int, ...]:
    """Packed types hold several values per byte along the last axis."""
    k = dt.values_per_byte
    if k == 1:
        return shape
    if not shape or shape[-1] % k:
        raise ArgumentError(
            f"shape: the last dimension of a {dt} array must be a multiple of {k} "
            f"({k} values per byte), got {shape}"
        )
    return shape[:-1] + (shape[-1] // k,)


# --- numpy-level conversions (not hot paths: construction and one-off conversions) --------

_INT_MAX = {4: 7, 8: 127, 16: 32767, 32: 2147483647, 64: 9223372036854775807}


def _round_saturate(x: np.ndarray, nbit: int, signed: bool) -> np.ndarray:
    """Round half to even, clip to the symmetric range, NaN -> 0 (quantize's rules), as int64."""
    hi = _INT_MAX[nbit] if signed else 2 * _INT_MAX[nbit] + 1
    lo = -hi if signed else 0
    y = np.rint(np.asarray(x, dtype=np.float64))
    y = np.where(np.isnan(y), 0.0, y)
    if nbit == 64:
        # float64 cannot hold 2**63 - 1 exactly: clip below the limit, then convert.
        out = np.clip(y, -(2.0**63) + 1024, 2.0**63 - 1024).astype(np.int64)
        return np.clip(out, lo, hi)
    return np.clip(y, lo, hi).astype(np.int64)


def _unpack_fields(raw: np.ndarray, nbit: int) -> np.ndarray:
    """Split each byte of ``raw`` into 8/nbit signed fields, most significant first."""
    b = np.ascontiguousarray(raw).view(np.uint8)
    k = 8 // nbit
    shifts = np.arange(k - 1, -1, -1, dtype=np.uint8) * nbit
    fields = (b[..., None] >> shifts) & ((1 << nbit) - 1)
    fields = fields.astype(np.int8)
    fields = np.where(fields >= (1 << (nbit - 1)), fields - (1 << nbit), fields).astype(np.int8)
    return fields.reshape(b.shape[:-1] + (b.shape[-1] * k,)) if b.ndim else fields


def _pack_fields(values: np.ndarray, nbit: int) -> np.ndarray:
    """Inverse of _unpack_fields: last axis of int values -> bytes, first value in the top bits."""
    k = 8 // nbit
    v = (np.asarray(values, dtype=np.int64) & ((1 << nbit) - 1)).astype(np.uint8)
    v = v.reshape(v.shape[:-1] + (v.shape[-1] // k, k))
    shifts = np.arange(k - 1, -1, -1, dtype=np.uint8) * nbit
    return np.bitwise_or.reduce(v << shifts, axis=-1).astype(np.uint8)


def _complex_values(a: np.ndarray, name: str, out_dtype: np.dtype) -> np.ndarray:
    """Values of any Bifrost-typed storage as a complex (or real->complex) numpy array."""
    dt = DataType(name)
    if name == "ci4":
        b = np.asarray(a["re_im"]).astype(np.uint8)
        re = b.astype(np.int8) >> 4
        im = (b << 4).astype(np.int8) >> 4
    elif dt.is_packed:
        f = _unpack_fields(a, dt.nbit)
        if dt.is_complex:
            re, im = f[..., 0::2], f[..., 1::2]
        else:
            re, im = f, np.zeros_like(f)
    elif a.dtype.names is not None:
        re, im = a["re"], a["im"]
    else:
        re, im = np.real(a), np.imag(a)
    out = np.empty(np.shape(re), dtype=out_dtype)
    out.real = re
    out.imag = im
    return out


def _convert(values: np.ndarray, dt: DataType) -> np.ndarray:
    """A new storage array of type ``dt`` holding ``values`` (numeric numpy array)."""
    values = np.asarray(values)
    storage = dt.as_numpy_dtype()
    if values.dtype == storage and not dt.is_packed:
        return np.array(values, copy=True, order="C")
    src_name = name_of_numpy_dtype(values.dtype)
    if src_name is not None and (src_name.startswith("ci") or src_name == "cf16"):
        values = _complex_values(values, src_name, np.dtype(np.complex128))
    if not (values.dtype.kind in "biufc"):
        raise ArgumentError(f"base: cannot convert numpy dtype {values.dtype} to {dt}")
    if dt.is_complex:
        z = values.astype(np.complex128)
        if dt.kind == "cf":
            if storage.names is None:
                return z.astype(storage)
            out = np.empty(z.shape, storage)
            out["re"], out["im"] = z.real, z.imag
            return out
        re = _round_saturate(z.real, dt.nbit, True)
        im = _round_saturate(z.imag, dt.nbit, True)
        if dt.name == "ci4":
            out = np.empty(z.shape, storage)
            out["re_im"] = ((re & 0xF) << 4) | (im & 0xF)
            return out
        if dt.is_packed:
            inter = np.stack([re, im], axis=-1).reshape(re.shape[:-1] + (-1,))
            return _pack_fields(inter, dt.nbit).view(storage)
        out = np.empty(z.shape, storage)
        out["re"], out["im"] = re, im
        return out
    if values.dtype.kind == "c":
        raise ArgumentError(f"base: complex values cannot be converted to the real type {dt}")
    if dt.is_packed:
        ints = _round_saturate(values, dt.nbit, dt.is_signed)
        return _pack_fields(ints, dt.nbit).view(storage)
    if dt.is_integer and values.dtype.kind == "f":
        return _round_saturate(values, dt.nbit, dt.is_signed).astype(storage)
    return values.astype(storage)


class ndarray(np.ndarray):
    """A numpy array carrying a Bifrost data-type name; see the module docstring."""

    _bf_name: str | None = None  # set only for packed types (storage dtype is ambiguous)

    def __new__(
        cls,
        base: Any = None,
        space: str | None = None,
        shape: Any = None,
        dtype: Any = None,
        buffer: Any = None,
        offset: int = 0,
        strides: Sequence[int] | None = None,
        native: bool | None = None,
        conj: bool | None = None,
        owner: Any = None,
    ) -> "ndarray":
        if space not in (None, "system", "auto"):
            raise ArgumentError(f"space: only 'system' (host memory) is supported, got {space!r}")
        if native is False:
            raise ArgumentError("native: only native byte order is supported (native=True)")
        if conj:
            raise ArgumentError("conj: conjugated arrays are not supported (conj=False)")
        dt = DataType(dtype) if dtype is not None else None

        if base is not None:
            if shape is not None or buffer is not None:
                raise ArgumentError("base: give either base or shape=/buffer=, not both")
            return cls._from_base(base, dt)
        if shape is None:
            raise ArgumentError("shape: required (with dtype=) when no base array is given")
        if dt is None:
            raise ArgumentError("dtype: required with shape=, e.g. dtype='ci8'")
        lshape = _normalise_shape(shape)
        sshape = _storage_shape(lshape, dt)
        storage = dt.as_numpy_dtype()

        if buffer is None:
            obj = np.ndarray.__new__(cls, sshape, storage)
        elif isinstance(buffer, (int, np.integer)) and not isinstance(buffer, bool):
            obj = cls._from_address(int(buffer), sshape, storage, offset, strides, owner)
        else:
            try:
                obj = np.ndarray.__new__(
                    cls, sshape, storage, buffer=buffer, offset=offset, strides=strides
                )
            except (TypeError, ValueError) as exc:
                raise ArgumentError(f"buffer: cannot hold shape {lshape} of {dt} ({exc})") from None
        obj._bf_name = dt.name if dt.is_packed else None
        return obj

    @classmethod
    def _from_address(
        cls,
        address: int,
        sshape: tuple[int, ...],
        storage: np.dtype,
        offset: int,
        strides: Sequence[int] | None,
        owner: Any,
    ) -> "ndarray":
        if offset < 0:
            raise ArgumentError(f"offset: must be >= 0, got {offset}")
        nbytes = offset + _span(sshape, storage.itemsize, strides)
        if address <= 0 and nbytes > 0:
            raise ArgumentError(f"buffer: address must be a positive integer, got {address}")
        readonly = False
        if owner is not None:
            extent = _owner_extent(owner)
            if extent is not None:
                readonly = extent[2]  # never offer writes into memory the owner made read-only
            if extent is not None and nbytes > 0:
                lo, hi, _ = extent
                if address < lo or address + nbytes > hi:
                    raise ArgumentError(
                        f"buffer: [{address:#x}, +{nbytes}) lies outside the memory of owner "
                        f"[{lo:#x}, {hi:#x})"
                    )
        raw = np.asarray(_Memory(address, nbytes, owner, readonly))
        return np.ndarray.__new__(cls, sshape, storage, buffer=raw, offset=offset, strides=strides)

    @classmethod
    def _from_base(cls, base: Any, dt: DataType | None) -> "ndarray":
        if isinstance(base, np.ndarray):
            name = base.bifrost_dtype if isinstance(base, ndarray) else name_of_numpy_dtype(base.dtype)
            if dt is None:
                if name is None:
                    raise ArgumentError(
                        f"base: numpy dtype {base.dtype} has no Bifrost type; give dtype= to convert"
                    )
                out = np.array(base, copy=True, order="C").view(cls)
                out._bf_name = name if DataType(name).is_packed else None
                return out
            if name == dt.name:
                data = np.array(base, copy=True, order="C")  # same type: a plain copy
            else:
                data = _convert(base, dt)
        elif dt is None:
            data = np.array(base)
            if name_of_numpy_dtype(data.dtype) is None:
                raise ArgumentError(
                    f"base: values of numpy dtype {data.dtype} have no Bifrost type; give dtype="
                )
        elif dt.as_numpy_dtype().names is not None:
            try:
                # Nested lists of tuples: Bifrost's ci4/ci8 literals, e.g. [[(0x10,), (0x98,)]].
                data = np.array(base, dtype=dt.as_numpy_dtype())
            except (TypeError, ValueError):
                data = _convert(np.array(base), dt)
        else:
            data = _convert(np.array(base), dt)
        out = np.ascontiguousarray(data).view(cls)
        out._bf_name = dt.name if dt is not None and dt.is_packed else None
        return out

    def __array_finalize__(self, obj: Any) -> None:
        # Views inherit a packed name; it only counts while the dtype is still its storage
        # dtype (see _packed_name), because numpy changes the dtype of .view(dt) AFTER this
        # call.  Anything else (the bool result of ==, .view(np.uint8)) is described by its
        # own numpy dtype.
        self._bf_name = getattr(obj, "_bf_name", None)

    def _packed_name(self) -> str | None:
        name = self._bf_name
        if name is not None and self.dtype == DataType(name).as_numpy_dtype():
            return name
        return None

    def __reduce__(self):
        # Pickle the packed name too (numpy's own reduce forgets subclass attributes).
        fn, args, state = super().__reduce__()
        return fn, args, (state, self._bf_name)

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], tuple):
            np_state, name = state
        else:  # a plain numpy state (pickled by another version)
            np_state, name = state, None
        super().__setstate__(np_state)
        self._bf_name = name

    # -- Bifrost's descriptors -------------------------------------------------------------
    @property
    def bf(self) -> ArrayInfo:
        """Bifrost's ``a.bf``: ``.dtype`` (DataType or None), ``.space``, ``.native``, ``.conj``."""
        name = self._packed_name() or name_of_numpy_dtype(self.dtype)
        native = all(
            (f.byteorder in ("=", "|"))
            for f in ([self.dtype] if self.dtype.names is None else [self.dtype.fields[n][0] for n in self.dtype.names])
        )
        return ArrayInfo(DataType(name) if name else None, native)

    @property
    def bifrost_dtype(self) -> str | None:
        """The Bifrost type name (``'ci8'``), or None if Bifrost has none for this dtype."""
        return self._packed_name() or name_of_numpy_dtype(self.dtype)

    @property
    def logical_shape(self) -> tuple[int, ...]:
        """Shape in values: equal to ``shape`` except for packed types (last axis x values/byte)."""
        name = self._packed_name()
        if name is None or not self.shape:
            return self.shape
        return self.shape[:-1] + (self.shape[-1] * DataType(name).values_per_byte,)

    # -- complex conversions ---------------------------------------------------------------
    def to_complex(self, dtype: str = "cf32") -> "ndarray":
        """A new ``cf32`` (default) or ``cf64`` array holding the values exactly as numbers.

        ci4 reads the wire convention (real part in the HIGH nibble), like ``asbru.unpack``."""
        target = DataType(dtype)
        if target.name not in ("cf32", "cf64"):
            raise ArgumentError(f"dtype: to_complex gives 'cf32' or 'cf64', got {dtype!r}")
        name = self.bifrost_dtype
        if name is None:
            raise ArgumentError(f"array: numpy dtype {self.dtype} has no Bifrost type to convert")
        z = _complex_values(np.asarray(self), name, target.as_numpy_dtype())
        return z.view(ndarray)

    @classmethod
    def from_complex(cls, z: Any, dtype: Any, scale: float = 1.0) -> "ndarray":
        """A new array of Bifrost type ``dtype`` from complex (or real) values ``z * scale``.

        Integer targets round half to even and saturate symmetrically, NaN -> 0: the same
        rules as ``asbru.quantize`` (which does the work for cf32/f32 input)."""
        dt = DataType(dtype)
        z = np.asarray(z)
        if dt.is_complex and z.dtype.kind in "biuf":
            # real values into a complex type: imaginary parts 0
            z = z.astype(np.complex64 if z.dtype == np.float32 else np.complex128)
        shape = z.shape
        if dt.is_packed:
            if not shape or shape[-1] % dt.values_per_byte:
                _storage_shape(shape, dt)  # raises the one-line message
        from asbru import convert

        if z.dtype in (np.complex64, np.float32) and dt.name in convert.QUANTIZE_OUTPUTS:
            out = cls(shape=shape, dtype=dt)
            return convert.quantize(np.ascontiguousarray(z), out, scale=scale)
        if scale != 1.0:
            z = z * scale
        out = _convert(z, dt).view(cls)
        out._bf_name = dt.name if dt.is_packed else None
        return out


def asarray(x: Any, dtype: Any = None) -> ndarray:
    """``x`` as an ``asbru.ndarray`` without copying (a view of the same memory).

    The Bifrost type comes from the numpy dtype (complex64 -> cf32, float32 -> f32, uint8 -> u8,
    the structured ci dtypes -> ciN).  ``dtype=`` names the type when the storage is shared,
    e.g. ``asarray(int8_bytes, dtype='i4')``; it must have the same storage dtype as ``x``."""
    if isinstance(x, ndarray) and dtype is None:
        return x
    a = np.asarray(x)
    if dtype is None:
        if name_of_numpy_dtype(a.dtype) is None:
            raise ArgumentError(
                f"x: numpy dtype {a.dtype} has no Bifrost type; accepted: int8..int64, "
                "uint8..uint64, float16..float64, complex64, complex128, the ci structured dtypes"
            )
        return a.view(ndarray)
    dt = DataType(dtype)
    if a.dtype != dt.as_numpy_dtype():
        raise ArgumentError(
            f"dtype: an array of numpy dtype {a.dtype} cannot be viewed as {dt} (storage "
            f"{dt.as_numpy_dtype()}) without a copy; use asbru.ndarray(x, dtype={dt.name!r})"
        )
    if dt.is_packed and a.ndim == 0:
        raise ArgumentError(f"x: a {dt} array needs at least one dimension")
    out = a.view(ndarray)
    out._bf_name = dt.name if dt.is_packed else None
    return out
