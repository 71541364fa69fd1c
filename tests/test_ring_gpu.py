"""GPU memory spaces: ``cuda_host`` (pinned) and ``cuda`` (device) rings, and ring copies.

Run on a machine with CuPy and a CUDA GPU; elsewhere the GPU tests skip with the reason and
only the error a user gets without them is checked.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from asbru.errors import ArgumentError
from asbru.packet_capture import DiskReader
from asbru.ring import Ring, SpaceUnavailable, copy
from asbru.ring.gpu import gpu_unavailable_reason

from helpers.gappy_chips import NCHAN, NSRC, NTIME
from helpers.gappy_chips import capture_file as _capture
from helpers.gappy_chips import gappy_file as _gappy_file

WHY = gpu_unavailable_reason()
needs_gpu = pytest.mark.skipif(WHY is not None, reason=f"no GPU space here: {WHY}")

FRAME = NSRC * 32 * NCHAN


@pytest.mark.skipif(WHY is None, reason="CuPy and a GPU are present: the error path cannot be reached")
@pytest.mark.parametrize("space", ["cuda_host", "cuda"])
def test_gpu_space_without_cupy_or_gpu_is_one_line(space):
    with pytest.raises(SpaceUnavailable) as exc:
        Ring(space=space, name="nogpu")
    msg = str(exc.value)
    assert "\n" not in msg and space in msg
    assert "CuPy" in msg or "GPU" in msg


def test_gpu_spaces_are_listed():
    from asbru.ring import spaces
    assert {"system", "cuda_host", "cuda", "shm"} <= set(spaces())


def _collect(ring, span_size, out, device=False):
    for seq in ring.read(guarantee=True):
        for span in seq.read(span_size):
            d = span.data
            if device:
                assert hasattr(d, "__cuda_array_interface__") and hasattr(d, "__dlpack__")
                d = d.get()
            out.append((seq.time_tag, bytes(seq.header), span.offset, np.array(d),
                        None if span.flags is None else span.flags.copy()))


def _frames(chunks):
    data = np.concatenate([c[3].reshape(-1) for c in chunks])
    flags = {}
    for _, _, off, _, f in chunks:
        if f is not None:
            for i, row in enumerate(f):
                flags[off // FRAME + i] = tuple(row)
    return data, flags


def test_copy_system_to_system_keeps_data_flags_sequences(tmp_path):
    """The host path of asbru.ring.copy (no GPU needed): bytes, flags, header, time tag."""
    _gappy_file(tmp_path / "g.dat")
    src, dst = Ring(name="src"), Ring(name="dst")
    a, b, res = [], [], {}
    threads = [threading.Thread(target=_collect, args=(src, 3000, a)),
               threading.Thread(target=_collect, args=(dst, 3500, b)),
               threading.Thread(target=lambda: res.update(copy(src, dst, span_size=3900)))]
    for t in threads:
        t.start()
    while src.guaranteed_readers < 2:
        threading.Event().wait(0.005)
    _capture(tmp_path / "g.dat", src)
    for t in threads:
        t.join(60)
    da, fa = _frames(a)
    db, fb = _frames(b)
    assert da.size == NTIME * FRAME and np.array_equal(da, db)
    assert fa == fb and sum(v[1] == 0 for v in fa.values()) == 13
    assert [x[:2] for x in a[:1]] == [x[:2] for x in b[:1]]
    assert res["nsequence"] == 1 and res["nbyte"] == NTIME * FRAME and res["noverwritten_bytes"] == 0


def test_copy_keeps_every_sequence_name_header_and_tag():
    src, dst = Ring(name="s2"), Ring(name="d2")
    src.resize(4096, 4 * 4096)
    got, res = [], {}
    tc = threading.Thread(target=lambda: res.update(copy(src, dst)))
    tr = threading.Thread(target=_collect, args=(dst, 1000, got))
    tc.start()
    tr.start()
    while src.guaranteed_readers < 1:
        threading.Event().wait(0.005)
    with src.begin_writing() as w:
        for n in range(3):
            with w.begin_sequence(name=f"obs{n}", time_tag=100 + n, header={"n": n}) as seq:
                for k in range(n + 1):
                    with seq.reserve(1000) as span:
                        span.data[0, :] = 10 * n + k
                        span.set_flags(np.full((10, 1), k + 1, np.uint8), 100)
    tc.join(30)
    tr.join(30)
    assert [(g[0], g[1]) for g in got] == [(100, b'{"n": 0}'), (101, b'{"n": 1}'), (101, b'{"n": 1}'),
                                          (102, b'{"n": 2}'), (102, b'{"n": 2}'), (102, b'{"n": 2}')]
    assert [int(g[3][0, 0]) for g in got] == [0, 10, 11, 20, 21, 22]
    assert [int(g[4][0, 0]) for g in got] == [1, 1, 2, 1, 2, 3]
    assert res["nsequence"] == 3


def test_copy_bad_arguments():
    r = Ring(name="x")
    with pytest.raises(ArgumentError, match="different rings"):
        copy(r, r)
    with pytest.raises(ArgumentError, match="span_size"):
        copy(r, Ring(name="y"), span_size=0)


def test_capture_refuses_a_device_ring(tmp_path):
    class FakeCuda(Ring):
        @property
        def space(self):
            return "cuda"
    (tmp_path / "e.dat").write_bytes(b"")
    with open(tmp_path / "e.dat", "rb") as fh, pytest.raises(ArgumentError, match="cuda_host"):
        DiskReader(f"chips_{NCHAN}", fh, FakeCuda(name="c"), NSRC, 0, 8, 8, None)


@needs_gpu
def test_cuda_host_ring_is_pinned_and_captures_like_system(tmp_path):
    import cupy
    data = _gappy_file(tmp_path / "g.dat")
    out = {}
    for space in ("system", "cuda_host"):
        ring = Ring(space=space, name=f"cap_{space}")
        got = []
        t = threading.Thread(target=_collect, args=(ring, 4 * FRAME, got))
        t.start()
        while ring.guaranteed_readers < 1:
            threading.Event().wait(0.005)
        _capture(tmp_path / "g.dat", ring)
        t.join(60)
        out[space] = _frames(got)
        if space == "cuda_host":
            attrs = cupy.cuda.runtime.pointerGetAttributes(ring._buf.ctypes.data)
            assert attrs.type == 1            # cudaMemoryTypeHost: page-locked
            assert isinstance(got[0][3], np.ndarray)
    assert np.array_equal(out["system"][0], out["cuda_host"][0])
    assert out["system"][1] == out["cuda_host"][1]
    assert out["system"][0].size == data.size


@needs_gpu
def test_cuda_ring_spans_are_cupy_arrays_with_dlpack():
    import cupy
    ring = Ring(space="cuda", name="dev")
    ring.resize(4096, 16384)
    assert ring.space == "cuda"
    with ring.begin_writing() as w, w.begin_sequence(name="a", time_tag=7, header="h") as seq:
        for k in range(6):                                 # laps the 16 KiB ring
            with seq.reserve(3000) as span:
                view = span.data_view(np.float32)
                assert isinstance(view, cupy.ndarray)
                view[0, :] = cupy.arange(view.shape[1], dtype=cupy.float32) + k
    # a reader of the newest data: spans are device arrays readable through DLPack
    rseq = ring.open_latest_sequence(guarantee=False)
    span = rseq.acquire(5 * 3000, 3000)
    arr = span.data_view(np.float32)
    assert isinstance(arr, cupy.ndarray) and arr.shape == (1, 750)
    assert arr.__cuda_array_interface__["data"][0] == span._buf.data.ptr + span._bufpos
    again = cupy.from_dlpack(arr)
    assert float(again[0, 0]) == 5.0 and float(again[0, 749]) == 754.0
    assert span.size_overwritten == 0
    span.release()
    rseq.close()


@needs_gpu
def test_gpu_consumer_sees_what_a_system_reader_sees(tmp_path):
    """capture -> cuda_host ring -> copy -> cuda ring -> GPU reader == system reader of the
    host ring, byte for byte and flag for flag; then back to a system ring."""
    _gappy_file(tmp_path / "g.dat", seed=3)
    host = Ring(space="cuda_host", name="h")
    dev = Ring(space="cuda", name="d")
    back = Ring(space="system", name="b")
    a, g, r, res = [], [], [], {}
    threads = [threading.Thread(target=_collect, args=(host, 3 * FRAME, a)),
               threading.Thread(target=_collect, args=(dev, 5 * FRAME, g, True)),
               threading.Thread(target=_collect, args=(back, 7 * FRAME, r)),
               threading.Thread(target=lambda: res.update(copy(host, dev, span_size=6 * FRAME + 100))),
               threading.Thread(target=lambda: copy(dev, back, span_size=2 * FRAME + 7))]
    for t in threads:
        t.start()
    while host.guaranteed_readers < 2:
        threading.Event().wait(0.005)
    _capture(tmp_path / "g.dat", host)
    for t in threads:
        t.join(60)
    da, fa = _frames(a)
    dg, fg = _frames(g)
    dr, fr = _frames(r)
    assert da.size == NTIME * FRAME
    assert np.array_equal(da, dg) and np.array_equal(da, dr)
    assert fa == fg == fr and sum(v[1] == 0 for v in fa.values()) == 13
    assert res["nbyte"] == NTIME * FRAME


def test_unguaranteed_copy_zeroes_and_counts_what_was_overwritten():
    src, dst = Ring(name="lapped"), Ring(name="out")
    src.resize(4096, 4 * 4096)
    dst.resize(4096, 16 * 4096)
    with src.begin_writing() as w, w.begin_sequence(name="a", time_tag=1) as seq:
        for k in range(10):                          # 10 spans through a 4-span ring
            with seq.reserve(4096) as span:
                span.data[0, :] = k + 1
                span.set_flags(np.ones((32, 1), np.uint8), 128)
    res = copy(src, dst, guarantee=False)
    assert res["noverwritten_bytes"] == 6 * 4096 and res["nbyte"] == 10 * 4096
    rseq = dst.open_earliest_sequence()
    spans = [(int(s.data[0, 0]), int(s.data.max()), int(s.flags.max())) for s in rseq.read(4096)]
    assert spans == [(0, 0, 0)] * 6 + [(k + 1, k + 1, 1) for k in range(6, 10)]
