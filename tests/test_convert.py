"""asbru.quantize / asbru.unpack: rounding, saturation, packing order, round trips, errors,
and the values printed by the Bifrost data-capture tutorial."""
from __future__ import annotations

import struct
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import asbru
from asbru import convert
from asbru.array import asarray, ndarray
from asbru.errors import ArgumentError

INF, NAN = float("inf"), float("nan")


def cplx(re, im) -> np.ndarray:
    """complex64 from parts (re + 1j*im would turn inf parts into nan)."""
    z = np.empty(len(re), np.complex64)
    z.real, z.imag = re, im
    return z

# Inputs shared by every output type, and the expected outputs per type.  Written out by hand
# (not computed with numpy) so that a wrong rounding or clipping rule fails loudly.
X = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49, 6.5, 126.5, 127.5, -128.0, 1000.0, -1000.0,
     32766.5, 40000.0, -40000.0, INF, -INF, NAN]
EXPECTED = {
    "i8":  [0, 2, 2, 0, -2, -2, 0, 6, 126, 127, -127, 127, -127, 127, 127, -127, 127, -127, 0],
    "i16": [0, 2, 2, 0, -2, -2, 0, 6, 126, 128, -128, 1000, -1000, 32766, 32767, -32767, 32767, -32767, 0],
    "i32": [0, 2, 2, 0, -2, -2, 0, 6, 126, 128, -128, 1000, -1000, 32766, 40000, -40000,
            2147483647, -2147483647, 0],
    "u8":  [0, 2, 2, 0, 0, 0, 0, 6, 126, 128, 0, 255, 0, 255, 255, 0, 255, 0, 0],
    "u16": [0, 2, 2, 0, 0, 0, 0, 6, 126, 128, 0, 1000, 0, 32766, 40000, 0, 65535, 0, 0],
    "u32": [0, 2, 2, 0, 0, 0, 0, 6, 126, 128, 0, 1000, 0, 32766, 40000, 0, 4294967295, 0, 0],
    "4bit": [0, 2, 2, 0, -2, -2, 0, 6, 7, 7, -7, 7, -7, 7, 7, -7, 7, -7, 0],
    "2bit": [0, 1, 1, 0, -1, -1, 0, 1, 1, 1, -1, 1, -1, 1, 1, -1, 1, -1, 0],
}


@pytest.mark.parametrize("name", ["i8", "i16", "i32", "u8", "u16", "u32"])
def test_quantize_real_rounds_half_even_and_saturates(name):
    src = ndarray(np.array(X, np.float32))
    dst = ndarray(shape=src.shape, dtype=name)
    out = asbru.quantize(src, dst)
    assert out is dst
    assert dst.tolist() == EXPECTED[name]


@pytest.mark.parametrize("name", ["ci8", "ci16", "ci32"])
def test_quantize_complex_processes_re_and_im_alike(name):
    real = name[1:]
    src = ndarray(cplx(X, X[::-1]))
    dst = ndarray(shape=src.shape, dtype=name)
    asbru.quantize(src, dst)
    assert dst["re"].tolist() == EXPECTED[real]
    assert dst["im"].tolist() == EXPECTED[real][::-1]


def test_quantize_32bit_uses_float64_arithmetic():
    # 16777215 * 3 = 50331645 is exact in float64 but rounds to 50331644 in float32
    # (spacing 4 there): a 32-bit output must see the float64 product.
    src = np.array([16777215.0, 2147483520.0, 3e9, -3e9], np.float32)
    dst = np.zeros(4, np.int32)
    asbru.quantize(src[:1], dst[:1], scale=3.0)
    assert dst[0] == 50331645
    asbru.quantize(src, dst)
    assert dst.tolist() == [16777215, 2147483520, 2147483647, -2147483647]


def test_quantize_scale_is_applied_before_rounding():
    src = np.array([0.25, 0.75, 1.25, -0.25, 100.0], np.float32)
    dst = np.zeros(5, np.int8)
    asbru.quantize(src, dst, scale=2)  # 0.5 1.5 2.5 -0.5 200
    assert dst.tolist() == [0, 2, 2, 0, 127]


# --- 4-bit and 2-bit ----------------------------------------------------------------------

def _i4_values(packed: np.ndarray) -> list[int]:
    out = []
    for b in np.asarray(packed).view(np.uint8).ravel():
        for nib in (b >> 4, b & 0xF):
            out.append(int(nib) - 16 if nib >= 8 else int(nib))
    return out


def test_quantize_4bit_rounds_and_saturates():
    x = np.array(X + [8.5, 200.0, -200.0, 1e10, -7.5], np.float32)  # 24 values: even
    dst = ndarray(shape=x.shape, dtype="i4")
    asbru.quantize(x, dst)
    assert _i4_values(dst) == EXPECTED["4bit"] + [7, 7, -7, 7, -7]
    # complex: same rule on each component, 4-bit spec values from the brief
    z = cplx([0.5, 2.5, 200, INF, NAN], [1.5, 8.5, -200, -INF, NAN])
    q = ndarray(shape=z.shape, dtype="ci4")
    asbru.quantize(z, q)
    assert _i4_values(q) == [0, 2, 2, 7, 7, -7, 7, -7, 0, 0]


def test_ci4_packs_real_in_high_nibble():
    q = ndarray(shape=(3,), dtype="ci4")
    asbru.quantize(np.array([0.6 + 1.5j, -1 + 0j, 3 - 2j], np.complex64), q)
    # Bifrost's CPU path would give 0x01 for 0.6+1.5j (truncation); rounding gives 1, 2
    assert q.tobytes() == bytes([0x12, 0xF0, 0x3E])
    # i4: the first value of each pair in the high nibble
    p = ndarray(shape=(4,), dtype="i4")
    asbru.quantize(np.array([1, -1, 7, -7], np.float32), p)
    assert p.tobytes() == bytes([0x1F, 0x79])


def test_quantize_2bit_packs_first_value_in_top_bits():
    x = np.array(X + [0.0], np.float32)  # 20 values: multiple of 4
    dst = ndarray(shape=x.shape, dtype="i2")
    asbru.quantize(x, dst)
    vals = []
    for b in dst.view(np.uint8):
        for sh in (6, 4, 2, 0):
            f = (int(b) >> sh) & 3
            vals.append(f - 4 if f >= 2 else f)
    assert vals == EXPECTED["2bit"] + [0]
    q = ndarray(shape=(2,), dtype="ci2")
    asbru.quantize(np.array([1 - 1j, -1 + 0j], np.complex64), q)
    assert q.tobytes() == bytes([0b01_11_11_00])


# --- unpack -------------------------------------------------------------------------------

def test_unpack_ci4_reads_high_nibble_as_real():
    src = ndarray([(0x10,), (0x98,), (0xF7,), (0x00,)], dtype="ci4")
    d8 = asbru.unpack(src, ndarray(shape=(4,), dtype="ci8"))
    assert d8.tolist() == [(1, 0), (-7, -8), (-1, 7), (0, 0)]
    f = asbru.unpack(src, ndarray(shape=(4,), dtype="cf32"))
    assert f.dtype == np.complex64 and f.tolist() == [1 + 0j, -7 - 8j, -1 + 7j, 0j]
    f64 = asbru.unpack(src, np.zeros(4, np.complex128))
    assert f64.tolist() == f.tolist()


def test_unpack_low_first_matches_bifrost_native_arrays():
    # Bifrost's own test values: 0x10 -> 0+1j, 0x98 -> -8-7j
    src = ndarray([(0x10,), (0x98,)], dtype="ci4")
    d = asbru.unpack(src, ndarray(shape=(2,), dtype="ci8"), nibble_order="low_first")
    assert d.tolist() == [(0, 1), (-8, -7)]


def test_unpack_align_msb_leaves_values_in_top_bits():
    src = ndarray([(0x98,), (0xF1,)], dtype="ci4")
    d = asbru.unpack(src, ndarray(shape=(2,), dtype="ci8"), align_msb=True)
    assert d.tolist() == [(-112, -128), (-16, 16)]
    p = asarray(np.array([0b11_01_00_10 - 256], np.int8), dtype="i2")
    r = asbru.unpack(p, np.zeros(4, np.int8), align_msb=True)
    assert r.tolist() == [-64, 64, 0, -128]
    assert asbru.unpack(p, np.zeros(4, np.float32)).tolist() == [-1, 1, 0, -2]


def test_unpack_i4_to_real_outputs():
    p = asarray(np.array([0x1F, 0x79, 0x80 - 256], np.int8), dtype="i4")
    assert asbru.unpack(p, np.zeros(6, np.int8)).tolist() == [1, -1, 7, -7, -8, 0]
    assert asbru.unpack(p, ndarray(shape=(6,), dtype="f32")).tolist() == [1, -1, 7, -7, -8, 0]


finite_f32 = st.floats(-300, 300, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int8, st.tuples(st.integers(1, 4), st.integers(1, 40).map(lambda n: 2 * n)),
                  elements=st.integers(-7, 7)))
def test_ci4_roundtrip_integers_exact(vals):
    z = (vals[:, 0::2] + 1j * vals[:, 1::2]).astype(np.complex64)
    q = ndarray(shape=z.shape, dtype="ci4")
    asbru.quantize(z, q)
    back = asbru.unpack(q, ndarray(shape=z.shape, dtype="ci8"))
    assert back["re"].tolist() == vals[:, 0::2].tolist()
    assert back["im"].tolist() == vals[:, 1::2].tolist()
    np.testing.assert_equal(q.to_complex(), z)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 64).map(lambda n: 2 * n), elements=finite_f32),
       st.sampled_from([0.01, 0.5, 1.0, 2.0, 37.0]))
def test_quantize_unpack_roundtrip_matches_reference(x, scale):
    ref = np.clip(np.rint(x * np.float32(scale)), -7, 7).astype(np.int8)
    for name, out in (("i4", np.zeros(x.size, np.int8)), ("ci4", None)):
        if name == "i4":
            q = ndarray(shape=x.shape, dtype="i4")
            asbru.quantize(x, q, scale=scale)
            asbru.unpack(q, out)
            assert out.tolist() == ref.tolist()
        else:
            z = x.view(np.complex64)
            q = ndarray(shape=z.shape, dtype="ci4")
            asbru.quantize(z, q, scale=scale)
            back = asbru.unpack(q, ndarray(shape=z.shape, dtype="cf32"))
            assert back.view(np.float32).tolist() == ref.astype(np.float32).tolist()
    ref8 = np.clip(np.rint(x * np.float32(scale)), -127, 127).astype(np.int8)
    q8 = ndarray(shape=(x.size // 2,), dtype="ci8")
    asbru.quantize(x.view(np.complex64), q8, scale=scale)
    assert q8.view(np.int8).tolist() == ref8.tolist()


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.int8, st.integers(1, 50).map(lambda n: 4 * n), elements=st.integers(-1, 1)))
def test_2bit_roundtrip_exact(vals):
    q = ndarray(shape=vals.shape, dtype="i2")
    asbru.quantize(vals.astype(np.float32), q)
    assert asbru.unpack(q, np.zeros_like(vals)).tolist() == vals.tolist()


# --- the Bifrost tutorial ("Writing Data") -------------------------------------------------

TUTORIAL_PAIRS = [
    (-9.040182113647461 + 5.184663772583008j, (-9, 5)),
    (-0.7387441396713257 - 1.1859489679336548j, (-1, -1)),
    (14.541327476501465 - 2.5483381748199463j, (15, -3)),
    (10.429906845092773 + 19.244178771972656j, (10, 19)),
    (-1.082539439201355 + 6.93345832824707j, (-1, 7)),
]


def test_tutorial_input_lines():
    printed = np.array([p for p, _ in TUTORIAL_PAIRS], np.complex64)
    expected = [q for _, q in TUTORIAL_PAIRS]
    # the tutorial prints data*2 beside quantize(data, scale=2): quantizing the printed
    # value with scale 1 gives the printed pair ...
    q1 = ndarray(shape=printed.shape, dtype="ci8")
    asbru.quantize(ndarray(printed), q1)
    assert [tuple(v) for v in q1.tolist()] == expected
    # ... and so does the tutorial's own call on data = printed / 2 (exact in float32)
    data = ndarray((printed / 2).astype(np.complex64))
    q2 = ndarray(shape=data.shape, dtype="ci8")
    asbru.quantize(data, q2, scale=2)
    for i in range(5):
        assert str(q2[i]) == f"({expected[i][0]}, {expected[i][1]})"


def test_tutorial_output_readback():
    # The tutorial's flow: (16, 5120) cf32 -> ci8, reshape/transpose into (10, 16, 512),
    # and the first packet's payload read back as interleaved int8 I, Q.
    rng = np.random.default_rng(5)
    data = (rng.standard_normal((16, 5120)) + 1j * rng.standard_normal((16, 5120))) * 4
    data[0, :5] = [p / 2 for p, _ in TUTORIAL_PAIRS]
    data = asbru.ndarray(data.astype(np.complex64))
    qdata = asbru.ndarray(shape=data.shape, dtype="ci8")
    asbru.quantize(data, qdata, scale=2)
    qdata = qdata.reshape(16, -1, 512)
    qdata = qdata.transpose(1, 0, 2).copy()
    assert qdata.shape == (10, 16, 512) and qdata.bifrost_dtype == "ci8"
    payload = qdata[0, 0].tobytes()
    assert len(payload) == 512 * 2
    vals = struct.unpack("<1024b", payload)
    i, q = vals[0::2], vals[1::2]
    assert list(zip(i, q))[:5] == [q for _, q in TUTORIAL_PAIRS]


# --- errors and safety --------------------------------------------------------------------

@pytest.mark.parametrize(
    "call,pattern",
    [
        (lambda: asbru.quantize(np.zeros(4, np.float64), np.zeros(4, np.int8)), "^src: dtype f64 is not supported; accepted: f32, cf32$"),
        (lambda: asbru.quantize(np.zeros(4, np.float32), np.zeros(5, np.int8)), r"^quantize: src and dst must have the same shape, got \(4,\) and \(5,\)$"),
        (lambda: asbru.quantize(np.zeros(4, np.complex64), np.zeros(4, np.int8)), "^dst: i8 is real but src is cf32"),
        (lambda: asbru.quantize(np.zeros(4, np.float32), np.zeros(4, np.float32)), "^dst: dtype f32 is not supported"),
        (lambda: asbru.quantize(np.zeros(8, np.float32)[::2], np.zeros(4, np.int8)), "^src: must be C-contiguous"),
        (lambda: asbru.quantize(np.zeros(4, np.float32), np.zeros(4, np.int8), scale="x"), "^scale: expected a number"),
        (lambda: asbru.quantize([1.0], np.zeros(1, np.int8)), "^src: expected an asbru.ndarray or numpy.ndarray, got list"),
        (lambda: asbru.unpack(np.zeros(4, np.int8), np.zeros(4, np.int8)), "^src: dtype i8 is not supported; accepted: ci4, i4, ci2, i2$"),
        (lambda: asbru.unpack(ndarray(shape=(4,), dtype="ci4"), np.zeros(4, np.int8)), "^dst: i8 is real but src is ci4"),
        (lambda: asbru.unpack(ndarray(shape=(4,), dtype="ci4"), ndarray(shape=(2,), dtype="ci8")), "^unpack: src and dst must have the same shape"),
        (lambda: asbru.unpack(ndarray(shape=(4,), dtype="ci4"), ndarray(shape=(4,), dtype="ci8"), nibble_order="msb"), "^nibble_order: expected one of high_first, low_first"),
    ],
)
def test_errors_are_one_line(call, pattern):
    with pytest.raises(ArgumentError, match=pattern) as e:
        call()
    assert "\n" not in str(e.value)


def test_read_only_dst_is_refused():
    dst = np.zeros(4, np.int8)
    dst.flags.writeable = False
    with pytest.raises(ArgumentError, match="^dst: array is read-only$"):
        asbru.quantize(np.zeros(4, np.float32), dst)


def test_kernels_never_write_past_their_buffers():
    # Called directly with inconsistent sizes, the compiled loops stop at the shorter buffer.
    src = np.full(9, 3.0, np.float32)
    out = np.full(8, 99, np.uint8)
    convert._quantize_4bit(src, out[:2], np.float32(1))
    assert out.tolist() == [0x33, 0x33] + [99] * 6
    wide = np.full(8, 99, np.int8)
    convert._quantize_wide(src, wide[:3], np.float32(1), np.float32(-127), np.float32(127))
    assert wide.tolist() == [3, 3, 3] + [99] * 5
    un = np.full(8, 99, np.int8)
    convert._unpack_4bit(np.full(9, 0x11, np.int8), un[:3], np.int32(1), True)
    assert un.tolist() == [1, 1, 99, 99, 99, 99, 99, 99]  # 3 slots hold one whole byte
    convert._unpack_2bit(np.full(9, 0x55, np.int8), un[:6], np.int32(1), True)
    assert un.tolist() == [1, 1, 1, 1, 99, 99, 99, 99]
    wide_out = np.full(3, 7, np.uint64)
    convert._unpack_4bit_swar(np.full(5, 0x11111111, np.uint32), wide_out[:2], False, True)
    assert wide_out.tolist() == [0x0101010101010101, 0x0101010101010101, 7]


def test_kernels_release_the_gil():
    for k in (convert._quantize_wide, convert._quantize_4bit, convert._unpack_4bit,
              convert._unpack_4bit_swar, convert._quantize_2bit, convert._unpack_2bit):
        assert k.targetoptions.get("nogil") is True


def test_works_on_multidimensional_and_empty_arrays():
    z = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 12
    q = ndarray(shape=z.shape, dtype="i4")
    asbru.quantize(z, q)
    back = asbru.unpack(q, np.zeros(z.shape, np.int8))
    assert back.tolist() == np.clip(z, -7, 7).astype(np.int8).tolist()
    e = ndarray(shape=(0, 4), dtype="ci8")
    assert asbru.quantize(np.zeros((0, 4), np.complex64), e) is e


@pytest.mark.parametrize("align_msb", [False, True])
@pytest.mark.parametrize("order", ["high_first", "low_first"])
@pytest.mark.parametrize("n,start", [(256, 0), (7, 0), (301, 1), (3, 2)])
def test_unpack_fast_path_matches_scalar_rule(align_msb, order, n, start):
    # Every byte value, odd lengths and an unaligned start: the SWAR path and the scalar
    # tail must agree with the nibble rule written out in Python.
    raw = (np.arange(n + start) * 37 % 256).astype(np.uint8)
    src = asarray(raw[start:].view([("re_im", "u1")]))
    dst = asbru.unpack(src, ndarray(shape=(n,), dtype="ci8"), align_msb=align_msb, nibble_order=order)
    mul = 16 if align_msb else 1
    expect = []
    for b in raw[start:]:
        hi, lo = int(b) >> 4, int(b) & 0xF
        hi, lo = (hi - 16 if hi >= 8 else hi) * mul, (lo - 16 if lo >= 8 else lo) * mul
        expect.append((hi, lo) if order == "high_first" else (lo, hi))
    assert dst.tolist() == expect


@pytest.mark.parametrize("dname", ["ci8", "ci4", "ci2", "ci16", "ci32"])
def test_threaded_quantize_matches_one_thread(monkeypatch, dname):
    # large arrays are split across threads: every piece boundary (and the odd tail, not a
    # whole piece) must give exactly what one thread gives, and nothing past dst is written
    rng = np.random.default_rng(3)
    n = 100_002                 # not a multiple of any piece size (ci2: 2 values per byte)
    z = cplx(rng.standard_normal(n).astype(np.float32) * 9, rng.standard_normal(n).astype(np.float32) * 9)
    z[::997] = NAN
    results = []
    for threads in (1, 4):
        convert.set_num_threads(threads)
        monkeypatch.setattr(convert, "PARALLEL_MIN_BYTES", 0)
        monkeypatch.setattr(convert, "PIECE_MIN_BYTES", 4096 + 12)
        q = ndarray(shape=(n,), dtype=dname)
        asbru.quantize(z, q, scale=1.5)
        results.append(np.asarray(q).view(np.uint8).copy())
    convert.set_num_threads(convert._default_threads())
    assert np.array_equal(results[0], results[1])


def test_threaded_unpack_values(monkeypatch):
    rng = np.random.default_rng(5)
    n = 50_001
    packed = ndarray(shape=(n,), dtype="ci4")
    np.asarray(packed).view(np.uint8)[:] = rng.integers(0, 256, n, dtype=np.uint8)
    outs = []
    for threads in (1, 4):
        convert.set_num_threads(threads)
        monkeypatch.setattr(convert, "PARALLEL_MIN_BYTES", 0)
        monkeypatch.setattr(convert, "PIECE_MIN_BYTES", 1000)
        out = ndarray(shape=(n,), dtype="ci8")
        asbru.unpack(packed, out)
        outs.append(np.asarray(out).view(np.int8).copy())
    convert.set_num_threads(convert._default_threads())
    assert np.array_equal(outs[0], outs[1])
    b = np.asarray(packed).view(np.uint8)
    hi = (b.astype(np.int8) >> 4)
    assert np.array_equal(outs[1][0::2], hi)


def test_set_num_threads_checks_its_argument(monkeypatch):
    with pytest.raises(ArgumentError, match="^set_num_threads: expected a positive integer, got 0$"):
        convert.set_num_threads(0)
    monkeypatch.setenv("ASBRU_CONVERT_THREADS", "x")
    with pytest.raises(ArgumentError, match="^ASBRU_CONVERT_THREADS: expected a positive integer"):
        convert._default_threads()
    monkeypatch.setenv("ASBRU_CONVERT_THREADS", "3")
    assert convert._default_threads() == 3


def test_threaded_quantize_works_in_a_forked_child(monkeypatch):
    # a child forked after the pool started inherits the pool object but not its threads:
    # it must make its own, not wait forever on threads that do not exist
    import os
    monkeypatch.setattr(convert, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(convert, "PIECE_MIN_BYTES", 4096)
    convert.set_num_threads(3)
    try:
        z = np.full(40_000, 2.5 + 1.5j, np.complex64)
        q = ndarray(shape=z.shape, dtype="ci8")
        asbru.quantize(z, q)                       # starts the pool in this process
        pid = os.fork()
        if pid == 0:                               # child: convert again, report by exit code
            try:
                out = ndarray(shape=z.shape, dtype="ci8")
                asbru.quantize(z, out)
                ok = np.asarray(out).view(np.int8).reshape(-1, 2).tolist() == [[2, 2]] * z.size
                os._exit(0 if ok else 1)
            finally:
                os._exit(2)
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("quantize in a forked child did not finish")
            time.sleep(0.02)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        convert.set_num_threads(convert._default_threads())
