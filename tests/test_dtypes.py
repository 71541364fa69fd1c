"""asbru.DataType, asbru.ndarray, asbru.asarray, bifrost_dtype_of: names, byte layouts, views,
buffer ownership."""
from __future__ import annotations

import gc
import pickle
import weakref

import numpy as np
import pytest

import asbru
from asbru.array import ndarray, asarray
from asbru.dtypes import DataType, bifrost_dtype_of
from asbru.errors import ArgumentError

# name -> (numpy storage dtype, bytes per value, nbit, complex)
TABLE = {
    "i8": (np.int8, 1, 8, False),
    "i16": (np.int16, 2, 16, False),
    "i32": (np.int32, 4, 32, False),
    "i64": (np.int64, 8, 64, False),
    "u8": (np.uint8, 1, 8, False),
    "u16": (np.uint16, 2, 16, False),
    "u32": (np.uint32, 4, 32, False),
    "u64": (np.uint64, 8, 64, False),
    "f16": (np.float16, 2, 16, False),
    "f32": (np.float32, 4, 32, False),
    "f64": (np.float64, 8, 64, False),
    "cf32": (np.complex64, 8, 32, True),
    "cf64": (np.complex128, 16, 64, True),
    "ci4": ([("re_im", "u1")], 1, 4, True),
    "ci8": ([("re", "i1"), ("im", "i1")], 2, 8, True),
    "ci16": ([("re", "<i2"), ("im", "<i2")], 4, 16, True),
    "ci32": ([("re", "<i4"), ("im", "<i4")], 8, 32, True),
    "ci64": ([("re", "<i8"), ("im", "<i8")], 16, 64, True),
    "cf16": ([("re", "<f2"), ("im", "<f2")], 4, 16, True),
}


# --- DataType -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TABLE))
def test_datatype_table(name):
    np_dtype, size, nbit, cplx = TABLE[name]
    dt = DataType(name)
    assert str(dt) == name
    assert dt.itemsize == size
    assert dt.nbit == nbit
    assert dt.is_complex is cplx
    assert dt.as_numpy_dtype() == np.dtype(np_dtype)
    assert dt == name and dt == DataType(dt)
    # numpy dtype -> name, the reverse mapping asarray relies on
    assert DataType(np.dtype(np_dtype)).name == name


def test_datatype_codes_and_helpers():
    # Bifrost's C code: nbit | type << 8 | complex << 20 (type 0 int, 1 uint, 2 float)
    assert DataType("ci8").code == 8 | (1 << 20)
    assert DataType("u16").code == 16 | (1 << 8)
    assert DataType("cf32").code == 32 | (2 << 8) | (1 << 20)
    assert DataType("ci4").itemsize_bits == 8
    assert DataType("i4").values_per_byte == 2 and DataType("ci2").values_per_byte == 2
    assert DataType("ci8").as_real() == "i8" and DataType("f32").as_complex() == "cf32"
    assert DataType(np.complex64) == "cf32" and DataType("complex64") == "cf32"
    assert DataType("i4").as_numpy_dtype() == np.int8  # packed storage
    assert {DataType("ci8"), DataType("ci8")} == {DataType("ci8")}


def test_datatype_errors_are_one_line():
    with pytest.raises(ArgumentError, match=r"^dtype: unknown data type 'ci3'; accepted: .*ci4") as e:
        DataType("ci3")
    assert "\n" not in str(e.value)
    with pytest.raises(ArgumentError, match="itemsize"):
        DataType("i4").itemsize
    with pytest.raises(ArgumentError):
        DataType(np.bool_)


# --- byte layouts -------------------------------------------------------------------------

def test_complex_integer_byte_layouts():
    a = ndarray([(1, -2), (127, -127)], dtype="ci8")
    assert a.tobytes() == bytes([1, 0xFE, 127, 0x81])
    b = ndarray([(1, -2)], dtype="ci16")
    assert b.tobytes() == bytes([1, 0, 0xFE, 0xFF])
    c = ndarray([(1, -2)], dtype="ci32")
    assert c.tobytes() == bytes([1, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF])
    d = ndarray(np.array([1 - 2j], np.complex64))
    assert d.tobytes() == np.array([1.0, -2.0], "<f4").tobytes()
    h = ndarray([(1.5, -2.0)], dtype="cf16")
    assert h.tobytes() == np.array([1.5, -2.0], "<f2").tobytes()


def test_ci4_is_one_byte_real_in_high_nibble():
    # Bifrost's tuple literal form: one byte per value
    a = ndarray([[(0x10,), (0x98,), (0xF7,)]], dtype="ci4")
    assert a.shape == (1, 3) and a.itemsize == 1 and a.bifrost_dtype == "ci4"
    assert a.tobytes() == bytes([0x10, 0x98, 0xF7])
    # wire convention: re = high nibble, im = low nibble, two's complement
    assert a.to_complex().tolist() == [[1 + 0j, -7 - 8j, -1 + 7j]]
    # and building from complex values writes the same bytes; -8 is never produced
    # (symmetric saturation), so -7-8j comes out as -7-7j = 0x99
    b = ndarray.from_complex(np.array([[1, -7 - 8j, -1 + 7j]]), "ci4")
    assert b.tobytes() == bytes([0x10, 0x99, 0xF7])


def test_packed_i4_storage_and_logical_shape():
    a = ndarray(shape=(2, 6), dtype="i4")
    assert a.shape == (2, 3) and a.logical_shape == (2, 6) and a.bifrost_dtype == "i4"
    v = ndarray([[1, -1, 7, -7]], dtype="i4")  # packed types: base holds values
    assert v.tobytes() == bytes([0x1F, 0x79]) and v.logical_shape == (1, 4)
    assert v.to_complex().real.tolist() == [[1, -1, 7, -7]]
    with pytest.raises(ArgumentError, match="multiple of 2"):
        ndarray(shape=(2, 5), dtype="i4")


# --- ndarray behaviour --------------------------------------------------------------------

def test_ci8_element_prints_like_the_tutorial():
    q = ndarray(shape=(2, 4), dtype="ci8")
    q[...] = (0, 0)
    q[0, 1] = (-9, 5)
    assert str(q[0, 1]) == "(-9, 5)"
    assert tuple(q[0, 1]) == (-9, 5)


def test_views_keep_the_bifrost_type():
    q = ndarray(shape=(16, 1024), dtype="ci8")
    q[...] = (1, 2)
    r = q.reshape(16, -1, 512)
    t = r.transpose(1, 0, 2).copy()
    for x in (r, t, q[3:5], q[:, ::2], q.copy(), q.T):
        assert isinstance(x, ndarray)
        assert x.bifrost_dtype == "ci8" and bifrost_dtype_of(x) == "ci8"
    assert t.flags.c_contiguous and t.shape == (2, 16, 512)
    # packed names survive views of the same storage, and not a re-typing view
    p = ndarray(shape=(4, 8), dtype="i4")
    assert p[1:].bifrost_dtype == "i4" and p.reshape(-1).bifrost_dtype == "i4"
    assert p.view(np.uint8).bifrost_dtype == "u8"


def test_assert_equal_between_ndarrays():
    a = ndarray([(1, 2), (3, -4)], dtype="ci8")
    b = a.copy()
    np.testing.assert_equal(a, b)
    b[1] = (3, 4)
    with pytest.raises(AssertionError):
        np.testing.assert_equal(a, b)
    c = ndarray(np.arange(6, dtype=np.float32))
    np.testing.assert_equal(c, c.copy())
    assert (a == a.copy()).all() and (a == a.copy()).bifrost_dtype is None  # bool: no name


def test_constructor_copies_base():
    base = np.arange(4, dtype=np.uint8)
    a = ndarray(base)
    base[0] = 99
    assert a[0] == 0 and a.bifrost_dtype == "u8"


def test_constructor_converts_complex_to_ci():
    z = np.array([0.5 + 1.5j, 2.5 - 200j, np.nan + np.inf * 1j])
    a = ndarray(z, dtype="ci8")
    assert a.tolist() == [(0, 2), (2, -127), (0, 127)]
    assert ndarray([1 + 2j, -3j], dtype="ci16").tolist() == [(1, 2), (0, -3)]


def test_to_complex_and_from_complex():
    a = ndarray([(1, 2), (-128, 127)], dtype="ci8")
    z = a.to_complex()
    assert z.dtype == np.complex64 and z.bifrost_dtype == "cf32"
    assert z.tolist() == [1 + 2j, -128 + 127j]
    assert a.to_complex("cf64").dtype == np.complex128
    back = ndarray.from_complex(z, "ci8")
    np.testing.assert_equal(back, ndarray([(1, 2), (-127, 127)], dtype="ci8"))
    big = ndarray.from_complex(np.array([3e9 - 3e9j]), "ci32")
    assert big.tolist() == [(2147483647, -2147483647)]
    with pytest.raises(ArgumentError, match="cf32"):
        a.to_complex("ci8")


def test_shape_dtype_allocates_and_pickles():
    a = ndarray(shape=(3, 5), dtype="ci16")
    assert a.shape == (3, 5) and a.dtype == np.dtype(TABLE["ci16"][0]) and a.flags.writeable
    p = ndarray([[1, 2, 3, -4]], dtype="i4")
    p2 = pickle.loads(pickle.dumps(p))
    assert p2.bifrost_dtype == "i4" and p2.tobytes() == p.tobytes()


def test_bf_namespace():
    a = ndarray(shape=(4,), dtype="cf32")
    assert a.bf.dtype == "cf32" and str(a.bf.dtype) == "cf32"
    assert a.bf.space == "system" and a.bf.native and not a.bf.conj


def test_constructor_errors_are_one_line():
    for kwargs, pattern in [
        (dict(shape=(2,), dtype="ci9"), "^dtype:"),
        (dict(shape=(2,)), "^dtype: required"),
        (dict(dtype="ci8"), "^shape: required"),
        (dict(shape=(2,), dtype="ci8", space="cuda"), "^space:"),
        (dict(shape=(-1,), dtype="ci8"), "^shape:"),
        (dict(shape=(64,), dtype="ci8", buffer=bytearray(8)), "^buffer:"),
    ]:
        with pytest.raises(ArgumentError, match=pattern) as e:
            ndarray(**kwargs)
        assert "\n" not in str(e.value)


# --- buffer= and ownership ----------------------------------------------------------------

def _wrap_temporary_bytearray() -> ndarray:
    tmp = bytearray(range(16))
    return ndarray(shape=(8,), dtype="ci8", buffer=tmp)


def test_buffer_protocol_object_is_kept_alive():
    a = _wrap_temporary_bytearray()
    gc.collect()
    _ = [bytearray(b"\xAA" * 16) for _ in range(1000)]  # reuse any freed memory
    assert a.tolist() == [(2 * i, 2 * i + 1) for i in range(8)]


def test_buffer_shares_memory():
    buf = np.zeros(8, np.uint8)
    a = ndarray(shape=(4,), dtype="ci8", buffer=buf)
    a[1] = (5, -6)
    assert buf.tolist() == [0, 0, 5, 250, 0, 0, 0, 0]


class _Owner:
    """Owns memory and reports when it is freed, like a ring buffer object would."""

    def __init__(self, n: int) -> None:
        self.mem = np.arange(n, dtype=np.uint8)

    @property
    def address(self) -> int:
        return self.mem.ctypes.data


def _wrap_address(owner_cls=_Owner):
    owner = owner_cls(32)
    ref = weakref.ref(owner)
    a = ndarray(shape=(4, 4), dtype="ci8", buffer=owner.address, offset=0, owner=owner)
    return a, ref


def test_integer_address_keeps_owner_alive():
    a, ref = _wrap_address()
    gc.collect()
    _ = [np.full(32, 0xAA, np.uint8) for _ in range(1000)]
    assert ref() is not None  # the array holds the owner
    assert a.reshape(-1).tolist() == [(2 * i, 2 * i + 1) for i in range(16)]
    v = a[1:3].T.copy()
    del a
    gc.collect()
    assert v.tolist()[0][0] == (8, 9)
    b, ref2 = _wrap_address()
    view = b[2:]
    del b
    gc.collect()
    assert ref2() is not None and view[0, 0].tolist() == (16, 17)
    del view
    gc.collect()
    assert ref2() is None  # and releases it once no view remains


def test_integer_address_with_buffer_owner_is_range_checked():
    mem = np.zeros(16, np.uint8)
    ok = ndarray(shape=(2,), dtype="ci8", buffer=mem.ctypes.data + 12, owner=mem)
    ok[1] = (3, 4)
    assert mem[14:].tolist() == [3, 4]
    with pytest.raises(ArgumentError, match="outside the memory of owner"):
        ndarray(shape=(3,), dtype="ci8", buffer=mem.ctypes.data + 12, owner=mem)
    with pytest.raises(ArgumentError, match="^buffer: address"):
        ndarray(shape=(3,), dtype="ci8", buffer=0)
    # memory its owner exports read-only stays read-only
    frozen = bytes(range(8))
    addr = np.frombuffer(frozen, np.uint8).ctypes.data
    ro = ndarray(shape=(4,), dtype="ci8", buffer=addr, owner=frozen)
    assert ro.tolist() == [(0, 1), (2, 3), (4, 5), (6, 7)] and not ro.flags.writeable


# --- asarray / bifrost_dtype_of -------------------------------------------------------------

@pytest.mark.parametrize(
    "np_dtype,name",
    [(np.complex64, "cf32"), (np.float32, "f32"), (np.uint8, "u8"), (np.int16, "i16"),
     (np.complex128, "cf64")] + [(TABLE[n][0], n) for n in ("ci4", "ci8", "ci16", "ci32")],
)
def test_asarray_maps_without_copy(np_dtype, name):
    x = np.zeros(6, dtype=np_dtype)
    a = asarray(x)
    assert isinstance(a, ndarray) and a.bifrost_dtype == name
    assert np.shares_memory(a, x)
    assert bifrost_dtype_of(x) == name and bifrost_dtype_of(a) == name
    assert asarray(a) is a


def test_asarray_names_packed_storage_and_bifrost_ci4_spelling():
    raw = np.array([0x1F, 0x79], np.int8)
    a = asarray(raw, dtype="i4")
    assert a.bifrost_dtype == "i4" and np.shares_memory(a, raw) and a.logical_shape == (4,)
    assert bifrost_dtype_of(np.zeros(2, [("re_im", "i1")])) == "ci4"  # Bifrost's spelling
    with pytest.raises(ArgumentError, match="^dtype: an array of numpy dtype float64"):
        asarray(np.zeros(2), dtype="ci8")
    with pytest.raises(ArgumentError, match="^x: numpy dtype bool"):
        asarray(np.zeros(2, bool))
    with pytest.raises(ArgumentError, match="^data: numpy dtype <U1"):
        bifrost_dtype_of(np.array(["a"]))


def test_top_level_names():
    assert asbru.ndarray is ndarray and asbru.asarray is asarray and asbru.DataType is DataType


def test_copies_and_conversions_of_packed_and_real_values():
    p = ndarray([[1, 2, 3, -4]], dtype="i4")
    q = ndarray(p)  # a copy keeps the packed type and its bytes
    assert q.bifrost_dtype == "i4" and q.tobytes() == p.tobytes() and not np.shares_memory(p, q)
    assert ndarray(p, dtype="i4").tobytes() == p.tobytes()
    r = ndarray.from_complex(np.array([1.5, 2.5, -9.5], np.float32), "ci8")  # real -> im = 0
    assert r.tolist() == [(2, 0), (2, 0), (-10, 0)]
    with pytest.raises(ArgumentError, match="^base: numpy dtype bool has no Bifrost type"):
        ndarray(np.zeros(2, bool))
    with pytest.raises(ArgumentError, match="^offset:"):
        ndarray(shape=(1,), dtype="ci8", buffer=np.zeros(4, np.uint8).ctypes.data, offset=-1)
