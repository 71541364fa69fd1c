"""spec.copy_to_ring: streaming-store copies into ring slots, clipped like copy_bytes."""
from __future__ import annotations

import numba
import numpy as np
import pytest

from asbru.formats.spec import STREAM_MIN, copy_bytes, copy_to_ring, store_fence


@numba.njit(nogil=True)
def _copy(dst, dst_off, src, src_off, n, stream):
    if stream:
        m = copy_to_ring(dst, dst_off, src, src_off, n)
    else:
        m = copy_bytes(dst, dst_off, src, src_off, n)
    store_fence()
    return m


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, STREAM_MIN - 1, STREAM_MIN, 1000, 8192, 8193])
@pytest.mark.parametrize("dst_off", [0, 1, 7, 31, 32, 45])
def test_copy_to_ring_equals_copy_bytes(n, dst_off):
    rng = np.random.default_rng(n * 64 + dst_off)
    src = rng.integers(0, 256, size=9000, dtype=np.uint8)
    # the destination starts at every alignment relative to 32 bytes; guard bytes around it
    for base in range(0, 64, 9):
        a = np.full(9300, 0xEE, dtype=np.uint8)
        b = a.copy()
        dst_a, dst_b = a[base:base + 9200], b[base:base + 9200]
        ma = _copy(dst_a, dst_off, src, 3, n, True)
        mb = _copy(dst_b, dst_off, src, 3, n, False)
        assert ma == mb == n
        assert np.array_equal(a, b)
        assert np.array_equal(dst_a[dst_off:dst_off + n], src[3:3 + n])
        assert (a[:base] == 0xEE).all() and (a[base + dst_off + n:] == 0xEE).all()


def test_copy_to_ring_clips_at_both_ends():
    src = np.arange(4096, dtype=np.int64).astype(np.uint8)
    dst = np.zeros(1000, dtype=np.uint8)
    guard = np.full(64, 0xAB, dtype=np.uint8)
    buf = np.concatenate([dst, guard])
    view = buf[:1000]
    assert _copy(view, 600, src, 0, 4096, True) == 400        # clipped by the destination
    assert np.array_equal(view[600:], src[:400])
    assert (buf[1000:] == 0xAB).all()
    assert _copy(view, 0, src, 3900, 4096, True) == 196       # clipped by the source
    assert np.array_equal(view[:196], src[3900:])
    assert _copy(view, -1, src, 0, 10, True) == 0
    assert _copy(view, 0, src, -5, 10, True) == 0
    assert _copy(view, 1000, src, 0, 10, True) == 0
