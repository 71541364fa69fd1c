"""``quantize`` (f32/cf32 -> integers, including packed 4- and 2-bit) and ``unpack`` (packed
4- and 2-bit -> 8-bit integers or floats), compiled with numba (``nogil``: other Python threads
keep running while a large array converts).

Conventions (the same in both directions, so ``unpack(quantize(x))`` gives back the rounded
values exactly):

* Rounding is half to even (``numpy.rint``: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2) and values saturate
  at the SYMMETRIC range of the output (i8: -127..127, i16: -32767..32767, i32:
  -2147483647..2147483647, 4-bit: -7..7, 2-bit: -1..1, unsigned: 0..max).  The most negative
  two's complement value is never produced.  +-inf saturate.  **NaN becomes 0** for every
  output type.
* ``y = x * scale`` is computed in float32 for outputs of up to 16 bits and in float64 for
  32-bit outputs (as Bifrost does), then clipped, then rounded.
* Arrays of ``PARALLEL_MIN_BYTES`` (8 MiB) of input and more are split into contiguous
  pieces converted by a pool of threads (the kernels release the GIL): up to 8 threads, or
  ``$ASBRU_CONVERT_THREADS``, or :func:`set_num_threads`.  The output is the same whatever
  the number of threads (each value is converted on its own).
* Packed outputs hold the FIRST value in the MOST significant bits: ci4 is one byte per
  complex value with the real part in the HIGH nibble and the imaginary part in the LOW
  nibble (the LWA wire convention of DRX, TBF, CHIPS payloads); i4 holds values 0, 1 of the
  last axis as (high nibble, low nibble) of byte 0, and so on.

Where this differs from Bifrost:

* Bifrost's CPU 4-bit quantize truncates toward zero and wraps (200 -> -7, 1.5 -> 1);
  asbru rounds half to even and saturates (200 -> 7, 1.5 -> 2), like Bifrost's GPU path.
* **Bifrost's unpack of a native ci4 array takes the LOW nibble as the real part**, so in
  Bifrost ``unpack(quantize(x))`` swaps re and im unless the array was ``.byteswap()``-ed.
  asbru's unpack reads the wire convention by default (HIGH nibble = real, first value in
  the top bits for every packed type).  Pass ``nibble_order='low_first'`` to get Bifrost's
  native-array behaviour (e.g. ``0x10`` -> 0+1j, ``0x98`` -> -8-7j).
* NaN -> 0 for 32-bit outputs too (Bifrost's x86 build gives -2147483648 there).
"""
from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

import numba
import numpy as np

from asbru.dtypes import DataType, bifrost_dtype_of
from asbru.errors import ArgumentError

__all__ = ["quantize", "unpack", "QUANTIZE_OUTPUTS", "UNPACK_INPUTS", "UNPACK_OUTPUTS",
           "set_num_threads", "get_num_threads"]

QUANTIZE_INPUTS = ("f32", "cf32")
QUANTIZE_OUTPUTS = (
    "i8", "i16", "i32", "u8", "u16", "u32", "ci8", "ci16", "ci32", "i4", "ci4", "i2", "ci2",
)
UNPACK_INPUTS = ("ci4", "i4", "ci2", "i2")
UNPACK_OUTPUTS = ("i8", "ci8", "f32", "cf32", "f64", "cf64")
NIBBLE_ORDERS = ("high_first", "low_first")

_kernel = numba.njit(nogil=True, cache=True)


# --- compiled kernels ----------------------------------------------------------------------

@_kernel
def _quantize_wide(src, dst, scale, lo, hi):
    """dst[i] = rint(clip(src[i] * scale, lo, hi)), NaN -> 0.  The float type of ``scale``
    (float32 or float64) is the precision of the arithmetic."""
    n = min(src.size, dst.size)  # never index past either buffer
    zero = lo - lo  # 0 in the arithmetic's float type (scale may be inf)
    for i in range(n):
        y = src[i] * scale
        if y != y:
            y = zero
        y = min(max(y, lo), hi)
        dst[i] = np.rint(y)


#: float32 values quantized per step of the packed-output kernels: the int8 staging block
#: stays in L1 (two passes over 8 KiB beat one pass that cannot be vectorized)
_PACK_BLOCK = 8192
_LITTLE = sys.byteorder == "little"


@_kernel
def _quantize_4bit(src, dst, scale):
    """Two float32 -> one byte, first in the high nibble (ci4: re high, im low).

    In blocks: quantize to int8 (a plain loop that LLVM vectorizes), then pack each pair,
    read as one little-endian uint16 (first value in the low byte), into a byte."""
    n = min(src.size // 2, dst.size)
    tmp = np.empty(_PACK_BLOCK, np.int8)
    pairs = tmp.view(np.uint16)
    lo, hi, zero = np.float32(-7.0), np.float32(7.0), np.float32(0.0)
    for c0 in range(0, n, _PACK_BLOCK // 2):
        m = min(_PACK_BLOCK // 2, n - c0)
        x = src[2 * c0: 2 * c0 + 2 * m]
        for i in range(2 * m):
            y = x[i] * scale
            if y != y:
                y = zero
            tmp[i] = np.int8(np.rint(min(max(y, lo), hi)))
        out = dst[c0: c0 + m]
        if _LITTLE:
            for i in range(m):
                v = pairs[i]
                out[i] = np.uint8(((v & 0xF) << 4) | ((v >> 8) & 0xF))
        else:
            for i in range(m):
                out[i] = np.uint8(((tmp[2 * i] & 0xF) << 4) | (tmp[2 * i + 1] & 0xF))


@_kernel
def _quantize_2bit(src, dst, scale):
    """Four float32 -> one byte, first in bits 7-6 (two's complement, -1..1)."""
    n = min(src.size // 4, dst.size)
    for i in range(n):
        byte = 0
        for j in range(4):
            y = src[4 * i + j] * scale
            if y != y:
                y = np.float32(0.0)
            y = min(max(y, np.float32(-1.0)), np.float32(1.0))
            byte |= (np.int32(np.rint(y)) & 0x3) << (6 - 2 * j)
        dst[i] = np.uint8(byte)


@_kernel
def _unpack_4bit(src, dst, mul, high_first):
    """One signed byte -> two sign-extended nibble values (times ``mul``: 1, or 16 for
    align_msb).  ``high_first``: the high nibble is the first value (wire convention)."""
    n = min(src.size, dst.size // 2)
    if high_first:
        for i in range(n):
            b = np.int32(src[i])
            dst[2 * i] = (b >> 4) * mul
            dst[2 * i + 1] = (np.int32(np.int8(b << 4)) >> 4) * mul
    else:
        for i in range(n):
            b = np.int32(src[i])
            dst[2 * i + 1] = (b >> 4) * mul
            dst[2 * i] = (np.int32(np.int8(b << 4)) >> 4) * mul


@_kernel
def _unpack_4bit_swar(src, dst, align_msb, high_first):
    """4-bit -> int8, four input bytes (one uint32) -> eight output bytes (one uint64) per
    step, using integer lanes (SWAR); about twice the scalar loop.  Little-endian hosts.

    Each byte b is spread into its own 16-bit lane; the lane's low byte takes one nibble and
    its high byte the other; a nibble v (0..15) is sign-extended within its byte by OR-ing
    0xF0 when bit 3 is set ((v & 8) * 0x1E == 0xF0, no carry into the next byte), or moved to
    the top of its byte for align_msb (v << 4 <= 0xF0, no carry either)."""
    n = min(src.size, dst.size)
    m16 = np.uint64(0x0000FFFF0000FFFF)
    m8 = np.uint64(0x00FF00FF00FF00FF)
    nib = np.uint64(0x000F000F000F000F)
    bit3 = np.uint64(0x0808080808080808)
    ext = np.uint64(0x1E)
    for i in range(n):
        y = np.uint64(src[i])
        y = (y | (y << np.uint64(16))) & m16
        y = (y | (y << np.uint64(8))) & m8
        hi = (y >> np.uint64(4)) & nib
        lo = y & nib
        if high_first:
            v = hi | (lo << np.uint64(8))
        else:
            v = lo | (hi << np.uint64(8))
        if align_msb:
            dst[i] = v << np.uint64(4)
        else:
            dst[i] = v | ((v & bit3) * ext)


@_kernel
def _unpack_2bit(src, dst, mul, high_first):
    """One byte -> four sign-extended 2-bit values (times ``mul``: 1, or 64 for align_msb)."""
    n = min(src.size, dst.size // 4)
    for i in range(n):
        b = np.int32(src[i])
        for j in range(4):
            k = j if high_first else 3 - j
            # Move field j to the top of an int8, then arithmetic-shift it back down.
            v = np.int32(np.int8(b << (2 * j))) >> 6
            dst[4 * i + k] = v * mul


# --- threads ------------------------------------------------------------------------------
# Large conversions are split into contiguous pieces converted by a pool of threads (the
# kernels release the GIL), as Bifrost's CPU kernels use OpenMP: one core reads and writes
# memory at well under the machine's bandwidth.  Small arrays stay on the calling thread.

#: arrays with fewer input bytes than this are converted by the calling thread
PARALLEL_MIN_BYTES = 8 << 20
#: input bytes per piece at least (fewer, larger pieces when the array is small)
PIECE_MIN_BYTES = 2 << 20

_nthreads: Optional[int] = None
_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0
_pool_pid = 0
_pool_lock = threading.Lock()


def _default_threads() -> int:
    env = os.environ.get("ASBRU_CONVERT_THREADS", "")
    if env.strip():
        try:
            return max(1, int(env))
        except ValueError:
            raise ArgumentError(f"ASBRU_CONVERT_THREADS: expected a positive integer, got {env!r}") from None
    try:
        ncpu = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        ncpu = os.cpu_count() or 1
    return max(1, min(8, ncpu))


def set_num_threads(n: int) -> None:
    """Threads that ``quantize``/``unpack`` use for large arrays (1: the calling thread only).
    Default: ``$ASBRU_CONVERT_THREADS``, else the usable CPUs, at most 8."""
    global _nthreads
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ArgumentError(f"set_num_threads: expected a positive integer, got {n!r}")
    _nthreads = int(n)


def get_num_threads() -> int:
    """Threads that ``quantize``/``unpack`` use for large arrays."""
    global _nthreads
    if _nthreads is None:
        _nthreads = _default_threads()
    return _nthreads


def _executor(n: int) -> ThreadPoolExecutor:
    """The pool, with at least ``n`` threads.  A forked child gets a new one: it inherits
    the parent's pool object but none of its threads (work handed to it would never run)."""
    global _pool, _pool_size, _pool_pid
    with _pool_lock:
        pid = os.getpid()
        if _pool is None or _pool_size < n or _pool_pid != pid:
            if _pool is not None and _pool_pid == pid:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="asbru-convert")
            _pool_size, _pool_pid = n, pid
        return _pool


def _split(kernel: Callable[..., Any], src: np.ndarray, dst: np.ndarray, src_per: int,
           dst_per: int, *args: Any) -> None:
    """``kernel(src, dst, *args)`` over ``units`` of ``src_per`` src items -> ``dst_per`` dst
    items, in pieces on the thread pool when the array is large (a unit is never split: a
    piece's src and dst slices hold the same whole units)."""
    units = min(src.size // src_per, dst.size // dst_per)
    nthreads = get_num_threads()
    nbytes = units * src_per * src.itemsize
    if nthreads <= 1 or nbytes < PARALLEL_MIN_BYTES:
        kernel(src, dst, *args)
        return
    npiece = max(1, min(nthreads, nbytes // PIECE_MIN_BYTES))
    step = -(-units // npiece)
    pieces = [(k, min(k + step, units)) for k in range(0, units, step)]
    # the last piece also takes the tail that is not a whole unit
    jobs = [(src[a * src_per: b * src_per], dst[a * dst_per: b * dst_per]) for a, b in pieces[:-1]]
    a = pieces[-1][0]
    jobs.append((src[a * src_per:], dst[a * dst_per:]))
    first, rest = jobs[0], jobs[1:]
    futures = [_executor(nthreads).submit(kernel, s, d, *args) for s, d in rest]
    kernel(first[0], first[1], *args)
    for f in futures:
        f.result()


# --- argument checking --------------------------------------------------------------------

def _operand(arr: Any, role: str, accepted: tuple[str, ...], writable: bool = False):
    """(Bifrost name, logical shape, flat numpy view) of one argument, or a one-line error."""
    if not isinstance(arr, np.ndarray):
        raise ArgumentError(
            f"{role}: expected an asbru.ndarray or numpy.ndarray, got {type(arr).__name__}"
        )
    try:
        name = bifrost_dtype_of(arr)
    except ArgumentError:
        name = str(arr.dtype)
    if name not in accepted:
        raise ArgumentError(f"{role}: dtype {name} is not supported; accepted: {', '.join(accepted)}")
    if not arr.flags.c_contiguous:
        raise ArgumentError(f"{role}: must be C-contiguous (use numpy.ascontiguousarray)")
    if writable and not arr.flags.writeable:
        raise ArgumentError(f"{role}: array is read-only")
    dt = arr.dtype
    fields = [dt] if dt.names is None else [dt.fields[n][0] for n in dt.names]
    if any(f.byteorder not in ("=", "|") for f in fields):
        raise ArgumentError(f"{role}: must be in native byte order (use .astype(native dtype))")
    shape = getattr(arr, "logical_shape", arr.shape)
    return name, tuple(shape), np.asarray(arr).reshape(-1)


def _check_shapes(src_shape, dst_shape, what: str) -> None:
    if src_shape != dst_shape:
        raise ArgumentError(f"{what}: src and dst must have the same shape, got {src_shape} and {dst_shape}")


# --- public API ---------------------------------------------------------------------------

def quantize(src: np.ndarray, dst: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Quantize ``src`` (f32 or cf32) into the integer array ``dst``; returns ``dst``.

    ``dst`` is one of i8 i16 i32 u8 u16 u32 ci8 ci16 ci32 i4 ci4 i2 ci2 with the same (logical)
    shape as ``src``, real for real input and complex for complex input.  Each real component
    becomes ``rint(clip(x * scale, -max, max))`` (half to even, symmetric saturation, NaN ->
    0); packed types put the first value in the top bits (ci4: real part in the HIGH nibble).
    See the module docstring for the differences from Bifrost (4-bit rounds and saturates)."""
    sname, sshape, sflat = _operand(src, "src", QUANTIZE_INPUTS)
    dname, dshape, dflat = _operand(dst, "dst", QUANTIZE_OUTPUTS, writable=True)
    _check_shapes(sshape, dshape, "quantize")
    sdt, ddt = DataType(sname), DataType(dname)
    if sdt.is_complex != ddt.is_complex:
        raise ArgumentError(
            f"dst: {dname} is {'complex' if ddt.is_complex else 'real'} but src is {sname}; "
            "use a complex dst (ci*) for cf32 and a real dst for f32"
        )
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise ArgumentError(f"scale: expected a number, got {scale!r}") from None
    x = sflat.view(np.float32)  # complex values are processed as interleaved reals
    if ddt.nbit == 4:
        _split(_quantize_4bit, x, dflat.view(np.uint8), 2, 1, np.float32(scale))
    elif ddt.nbit == 2:
        _split(_quantize_2bit, x, dflat.view(np.uint8), 4, 1, np.float32(scale))
    else:
        out = dflat.view(ddt.as_real().as_numpy_dtype())
        hi = float(2 ** (ddt.nbit - 1) - 1) if ddt.is_signed else float(2**ddt.nbit - 1)
        lo = -hi if ddt.is_signed else 0.0
        if ddt.nbit >= 32:
            _split(_quantize_wide, x, out, 1, 1, np.float64(scale), np.float64(lo), np.float64(hi))
        else:
            _split(_quantize_wide, x, out, 1, 1, np.float32(scale), np.float32(lo), np.float32(hi))
    return dst


def _unpack_4bit_to(packed: np.ndarray, out: np.ndarray, align_msb: bool, high_first: bool) -> None:
    """Fast SWAR path for int8 outputs when the buffers allow it; the scalar loop does the
    rest (the tail of < 4 bytes, unaligned buffers, float outputs, big-endian hosts)."""
    head = 0
    if out.dtype == np.int8 and sys.byteorder == "little":
        head = packed.size // 4 * 4
        s32 = packed[:head].view(np.uint32)
        d64 = out[: 2 * head].view(np.uint64)
        if s32.flags.aligned and d64.flags.aligned:
            _split(_unpack_4bit_swar, s32, d64, 1, 1, align_msb, high_first)
        else:
            head = 0
    if head < packed.size:
        _split(_unpack_4bit, packed[head:], out[2 * head:], 1, 2,
               np.int32(16 if align_msb else 1), high_first)


def unpack(
    src: np.ndarray,
    dst: np.ndarray,
    align_msb: bool = False,
    nibble_order: str = "high_first",
) -> np.ndarray:
    """Unpack packed integers ``src`` (ci4, i4, ci2, i2) into ``dst``; returns ``dst``.

    ``dst`` is i8/ci8, f32/cf32 or f64/cf64 with the same (logical) shape, complex iff ``src``
    is.  Values are sign-extended (nibble 0xF -> -1); ``align_msb=True`` leaves each field in
    the top bits instead (4-bit: value x 16, 2-bit: value x 64).

    NOTE, differs from Bifrost: ci4 is read with the REAL part in the HIGH nibble (the wire
    convention, and what ``quantize`` writes), so ``unpack(quantize(x))`` round-trips.
    Bifrost reads native ci4 arrays low-nibble-first (re/im swapped); pass
    ``nibble_order='low_first'`` for that behaviour."""
    if nibble_order not in NIBBLE_ORDERS:
        raise ArgumentError(f"nibble_order: expected one of {', '.join(NIBBLE_ORDERS)}, got {nibble_order!r}")
    sname, sshape, sflat = _operand(src, "src", UNPACK_INPUTS)
    dname, dshape, dflat = _operand(dst, "dst", UNPACK_OUTPUTS, writable=True)
    _check_shapes(sshape, dshape, "unpack")
    sdt, ddt = DataType(sname), DataType(dname)
    if sdt.is_complex != ddt.is_complex:
        raise ArgumentError(
            f"dst: {dname} is {'complex' if ddt.is_complex else 'real'} but src is {sname}; "
            "use ci8/cf32/cf64 for complex input and i8/f32/f64 for real input"
        )
    out = dflat.view(ddt.as_real().as_numpy_dtype())
    packed = sflat.view(np.int8)
    high_first = nibble_order == "high_first"
    if sdt.nbit == 4:
        _unpack_4bit_to(packed, out, bool(align_msb), high_first)
    else:
        _split(_unpack_2bit, packed, out, 1, 4, np.int32(64 if align_msb else 1), high_first)
    return dst
