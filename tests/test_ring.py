"""asbru.ring.Ring: construction, resize, writing, reading, sequences, flags, overrun, shutdown."""
from __future__ import annotations

import gc
import threading
import uuid

import numpy as np
import pytest

from asbru.errors import ArgumentError, EndOfDataStop, WouldBlock
from asbru.ring import Ring

JOIN = 10.0  # seconds; a thread still alive after this is a deadlock


def pattern(start: int, n: int, salt: int = 0) -> np.ndarray:
    """Bytes derived from their absolute position, distinct one ring-lap apart."""
    x = np.arange(start, start + n, dtype=np.int64)
    return ((x ^ (x >> 8) ^ (x >> 16)) + salt).astype(np.uint8)


def run(fn, *args):
    """Run ``fn`` in a thread; return (thread, box) where box holds its result or exception."""
    box: dict = {}

    def body():
        try:
            box["result"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            box["error"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, box


def joined(t: threading.Thread, box: dict):
    t.join(JOIN)
    assert not t.is_alive(), "thread did not finish (deadlock?)"
    if "error" in box:
        raise box["error"]
    return box.get("result")


def write_seq(w, sizes, name="", time_tag=-1, header="", salt=0):
    """Write one sequence of spans of ``sizes`` bytes filled with pattern(seq offset)."""
    off = 0
    with w.begin_sequence(name=name, time_tag=time_tag, header=header) as s:
        for n in sizes:
            with s.reserve(n) as span:
                span.data[0][:] = pattern(off, n, salt)
            off += n
    return off


# ----------------------------------------------------------------------------- construction
def test_constructor_names_and_space():
    r = Ring()
    assert r.space == "system" and r.core is None
    uuid.UUID(r.name)  # default name is a UUID
    assert Ring("system", name="a/b:c d(1).x-y_z").name == "a_b_c d(1).x-y_z"
    assert Ring(space="system", name="x", core=0).core == 0
    with pytest.raises(ArgumentError, match="space must be one of .*'system'; got 'cuda_managed'"):
        Ring("cuda_managed")
    with pytest.raises(ArgumentError, match="core"):
        Ring(core="zero")


def test_resize_rounds_and_only_grows():
    r = Ring()
    r.resize(10000)
    assert (r.contiguous_span, r.total_span, r.nringlet) == (12288, 65536, 1)
    r.resize(100, 100)
    assert (r.contiguous_span, r.total_span) == (12288, 65536)
    r.resize(1, 1)
    r2 = Ring()
    r2.resize(1, 1)
    assert (r2.contiguous_span, r2.total_span) == (4096, 4096)
    r.resize(4096, 70000, nringlet=2)
    assert (r.contiguous_span, r.total_span, r.nringlet) == (12288, 131072, 2)
    with pytest.raises(ArgumentError, match="contiguous_bytes"):
        r.resize(-1)
    with pytest.raises(ArgumentError, match="nringlet"):
        r.resize(4096, nringlet=0)


def test_resize_preserves_data_across_wrap():
    r = Ring()
    r.resize(4096, 8192)
    w = r.begin_writing()
    s = w.begin_sequence("a")
    rseq = r.open_earliest_sequence(guarantee=False)
    sizes = [3000] * 5  # 15000 bytes through an 8 KiB ring: the live part wraps
    off = 0
    for n in sizes:
        with s.reserve(n) as span:
            span.data[0][:] = pattern(off, n)
        off += n
    r.resize(4096 * 3, 1 << 16)  # larger capacity *and* ghost
    assert (r.contiguous_span, r.total_span) == (12288, 65536)
    with s.reserve(12288) as span:
        span.data[0][:] = pattern(off, 12288)
    off += 12288
    s.end()
    got = {}
    for span in rseq.read(5000):
        d = span.data[0].copy()
        ow = span.size_overwritten
        got[span.offset] = (ow, d)
        assert np.array_equal(d[ow:], pattern(span.offset, span.size)[ow:])
    # 15000 - 8192 bytes were lost before the resize, the rest survived it.
    assert sum(ow for ow, _ in got.values()) == 15000 - 8192
    assert sum(len(d) for _, d in got.values()) == off


def test_resize_waits_for_open_spans():
    r = Ring()
    r.resize(4096)
    w = r.begin_writing()
    write_seq(w, [4096])
    rseq = r.open_earliest_sequence()
    span = rseq.acquire(0, 4096)
    t, box = run(r.resize, 8192)
    t.join(0.3)
    assert t.is_alive(), "resize must wait while a span is open"
    assert r.contiguous_span == 4096
    view = span.data[0].copy()
    span.release()
    joined(t, box)
    assert r.contiguous_span == 8192
    assert np.array_equal(view, pattern(0, 4096))
    # The data is still there after the resize.
    with rseq.acquire(0, 4096) as again:
        assert np.array_equal(again.data[0], pattern(0, 4096))
    # A writer resizing while holding its own reservation would wait forever: refused.
    with w.begin_sequence() as s:
        span = s.reserve(10)
        with pytest.raises(ArgumentError, match="resize: this thread has reserved spans"):
            r.resize(1 << 16)
        span.close()
    r.resize(1 << 16)
    assert r.contiguous_span == 1 << 16
    # A span dropped without a release is given back by the garbage collector.
    span = rseq.acquire(0, 4096)
    del span
    gc.collect()
    t, box = run(r.resize, 1 << 17)
    joined(t, box)
    assert r.contiguous_span == 1 << 17


def test_spans_of_an_abandoned_read_loop_are_given_back():
    from asbru.ring import AcquiredSpan, ReadSpan
    r = Ring()
    r.resize(4096)
    w = r.begin_writing()
    write_seq(w, [4096, 4096])
    rseq = r.open_earliest_sequence()
    spans = rseq.read(4096)
    first = next(spans)
    # read()'s spans are given back by the loop itself (no finalizer per span);
    # acquire()'s carry one, in case the caller drops them
    assert type(first) is ReadSpan and not isinstance(first, AcquiredSpan)
    assert isinstance(rseq.acquire(0, 10), AcquiredSpan)
    gc.collect()
    spans.close()       # a loop left early: its open span goes back with it
    t, box = run(r.resize, 8192)
    joined(t, box)
    assert r.contiguous_span == 8192
    assert not first._open


def test_waits_that_time_out_leave_no_waiter_behind():
    r = Ring()
    r.resize(4096)
    w = r.begin_writing()
    s = w.begin_sequence()
    rseq = r.open_earliest_sequence()
    t, box = run(lambda: rseq.acquire(0, 4096).data[0].copy())
    t.join(0.7)         # past two of the reader's timed waits (0.25 s each)
    assert t.is_alive()
    with s.reserve(4096) as span:
        span.data[0][:] = pattern(0, 4096)
    assert np.array_equal(joined(t, box), pattern(0, 4096))
    assert r._data_waiters == [] and r._space_waiters == []
    s.end()
    w.end_writing()


# ----------------------------------------------------------------------------- writing
def test_one_writer_at_a_time_and_a_new_writer_after_end():
    r = Ring()
    r.resize(4096, 1 << 14)
    with r.begin_writing() as w:
        assert not r.writing_ended()
        with pytest.raises(ArgumentError, match="being written already"):
            r.begin_writing()
        write_seq(w, [100], name="first", time_tag=1)
    assert r.writing_ended()
    # Bifrost: writing can begin once per ring; asbru: a new writer continues the ring
    with r.begin_writing() as w2:
        assert not r.writing_ended()
        write_seq(w2, [50], name="second", time_tag=2)
    assert [(s.name, s.size) for s in r.read(guarantee=False)] == [("first", 100), ("second", 50)]


def test_repeated_time_tags_are_allowed():
    r = Ring()
    r.resize(4096, 1 << 14)
    with r.begin_writing() as w:
        write_seq(w, [10], name="a", time_tag=20)
        write_seq(w, [20], name="b", time_tag=20)  # Bifrost refused a repeat
    assert r.open_sequence_at(20).name == "b"  # the newest with that tag
    assert [s.time_tag for s in r.read(guarantee=False)] == [20, 20]


def test_waiting_guaranteed_reader_holds_back_a_fast_writer():
    """A guaranteed reader that is still waiting for the first sequence must not miss its
    start, however fast the writer is (the writer would otherwise lap a small ring)."""
    import threading
    r = Ring()
    r.resize(4096, 1 << 13)  # 8 KiB: the writer writes 64 KiB
    got = []
    opened = threading.Event()

    def reader():
        for rs in r.read(guarantee=True):
            opened.set()
            for span in rs.read(4096):
                got.append((span.offset, span.size_overwritten, bytes(span.data_view(np.uint8)[0][:1])))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    import time as _time
    deadline = _time.monotonic() + 5
    while r.guaranteed_readers == 0 and _time.monotonic() < deadline:  # reader waiting, pinned
        _time.sleep(0.001)
    with r.begin_writing() as w:
        with w.begin_sequence("s", 1) as seq:
            for k in range(16):
                with seq.reserve(4096) as span:
                    span.data_view(np.uint8)[0][:] = k
    t.join(10)
    assert not t.is_alive()
    assert [(o, lost) for o, lost, _ in got] == [(4096 * k, 0) for k in range(16)]
    assert [b[0] for _, _, b in got] == list(range(16))


def test_data_view_shapes_and_writability():
    r = Ring()
    r.resize(16384)
    with r.begin_writing() as w:
        with w.begin_sequence() as s:
            with s.reserve(16384) as span:
                assert span.data.shape == (1, 16384)
                assert span.data_view(np.float32).shape == (1, 4096)
                v = span.data_view(np.complex64, (2048,))
                assert v.shape == (2048,)
                v[:] = np.arange(2048) * (1 + 1j)
                assert span.offset == 0 and span.size == 16384
    rseq = r.open_earliest_sequence()
    span = rseq.acquire(0, 16384)
    assert span.data.shape == (1, 16384)
    c = span.data_view(np.complex64)
    assert c.shape == (1, 2048)
    assert np.array_equal(c[0], np.arange(2048) * (1 + 1j))
    assert span.data_view(np.int16, (-1, 2)).shape == (4096, 2)
    with pytest.raises(ValueError):
        c[0, 0] = 0  # read spans are read-only
    assert span.stride == 16384 and span.nringlet == 1 and span.offset == 0
    span.release()


def test_reserve_limits():
    r = Ring()
    with r.begin_writing() as w:
        s = w.begin_sequence()
        with pytest.raises(ArgumentError, match="resize"):
            s.reserve(1)
        r.resize(4096)
        with pytest.raises(ArgumentError, match="contiguous span 4096"):
            s.reserve(4097)
        with pytest.raises(ArgumentError, match="previous sequence"):
            w.begin_sequence()
        s.end()
        with pytest.raises(ArgumentError, match="ended"):
            s.reserve(10)


def test_partial_commit_and_cancel():
    r = Ring()
    r.resize(8192)
    with r.begin_writing() as w:
        with w.begin_sequence("p") as s:
            with s.reserve(8192) as span:
                span.data[0][:100] = pattern(0, 100)
                span.commit(100)
            with s.reserve(8192) as span:
                assert span.offset == 100  # the unused 8092 bytes were given back
                span.commit(0)            # cancel
            with s.reserve(50) as span:
                assert span.offset == 100
                span.data[0][:] = pattern(100, 50)
            with s.reserve(10) as span:
                with pytest.raises(ArgumentError, match="commit: size"):
                    span.commit(11)
                span.data[0][:] = pattern(150, 10)
    rseq = r.open_sequence("p")
    assert rseq.size == 160
    spans = [(sp.offset, sp.data[0].copy()) for sp in rseq.read(4096)]
    assert len(spans) == 1 and spans[0][0] == 0
    assert np.array_equal(spans[0][1], pattern(0, 160))


def test_partial_commit_of_older_span_then_cancel_ends_there():
    """The capture's end of sequence: the older gulp is committed in part, the newer cancelled."""
    r = Ring()
    r.resize(4096)
    with r.begin_writing() as w:
        with w.begin_sequence("a") as s:
            a = s.reserve(1000)
            b = s.reserve(1000)
            a.data[0][:] = pattern(0, 1000)
            b.data[0][:] = 7
            a.commit(10)
            a.close()
            b.commit(0)
            b.close()
        with w.begin_sequence("b") as s:
            with s.reserve(5) as span:
                span.data[0][:] = 3
    assert r.open_sequence("a").size == 10
    with r.open_sequence("a").acquire(0, 4096) as sp:
        assert np.array_equal(sp.data[0], pattern(0, 10))
    with r.open_sequence("b").acquire(0, 4096) as sp:
        assert sp.size == 5 and (sp.data[0] == 3).all()


def test_partial_commit_of_older_span_then_more_data_zero_fills_the_hole():
    r = Ring()
    r.resize(4096, 4096)
    with r.begin_writing() as w:
        with w.begin_sequence("h") as s:
            for _ in range(3):        # leave old non-zero bytes all over the ring
                with s.reserve(4096) as span:
                    span.data[0][:] = 0xEE
            a = s.reserve(1000)
            b = s.reserve(1000)
            a.data[0][:] = 1
            b.data[0][:] = 2
            a.commit(600)
            a.close()
            b.close()
    rseq = r.open_sequence("h", guarantee=False)
    assert rseq.size == 3 * 4096 + 2000
    with rseq.acquire(3 * 4096, 2000) as sp:
        d = sp.data[0]
        assert (d[:600] == 1).all() and (d[600:1000] == 0).all() and (d[1000:] == 2).all()


def test_commits_publish_in_reservation_order():
    r = Ring()
    r.resize(4096)
    w = r.begin_writing()
    s = w.begin_sequence()
    a = s.reserve(1000)
    b = s.reserve(1000)
    b.data[0][:] = 2
    t, box = run(b.close)
    t.join(0.3)
    assert t.is_alive(), "a later span's commit waits for the earlier one"
    rseq = r.open_earliest_sequence(guarantee=False)
    a.data[0][:] = 1
    a.close()
    joined(t, box)
    with rseq.acquire(0, 2000) as span:
        assert span.size == 2000
        assert (span.data[0][:1000] == 1).all() and (span.data[0][1000:] == 2).all()
    r.end_writing()


# ----------------------------------------------------------------------------- sequences
def test_headers_time_tags_and_lookup():
    r = Ring()
    r.resize(4096, 1 << 16)
    with r.begin_writing() as w:
        write_seq(w, [100], name="s", time_tag=10, header="héllo")
        write_seq(w, [200], name="b", time_tag=20, header=b"\x00\x01\x02")
        write_seq(w, [300], name="d", time_tag=30, header={"nchan": 4, "axes": "time,chan"})
        write_seq(w, [0], name="", time_tag=-1, header="")
        write_seq(w, [0], name="", time_tag=-1)  # -1 and "" may repeat
        with pytest.raises(ArgumentError, match="name 's' is already used"):
            w.begin_sequence("s", 40)
        with pytest.raises(ArgumentError, match="time_tag must be"):
            w.begin_sequence("y", -5)

    s = r.open_sequence_at(25)
    assert (s.name, s.time_tag, s.size) == ("b", 20, 200)
    assert bytes(s.header) == b"\x00\x01\x02" and s.header_size == 3 and s.header_json is None
    assert not s.header.flags.writeable
    assert r.open_sequence_at(10).name == "s"
    assert r.open_sequence_at(10**6).name == "d"
    with pytest.raises(ArgumentError, match="time_tag <= 9"):
        r.open_sequence_at(9)
    e = r.open_earliest_sequence()
    assert bytes(e.header).decode() == "héllo" and e.header_size == len("héllo".encode())
    d = r.open_sequence("d")
    assert d.header_json == {"nchan": 4, "axes": "time,chan"}
    latest = r.open_latest_sequence()
    assert (latest.name, latest.time_tag, latest.header_size) == ("", -1, 0)
    assert latest.header.dtype == np.uint8 and latest.header.shape == (0,)
    with pytest.raises(ArgumentError, match="no sequence named 'zz'"):
        r.open_sequence("zz")
    # ring.read yields one object advanced through every sequence.
    objs, names = set(), []
    for rs in r.read():
        objs.add(id(rs))
        names.append((rs.name, rs.time_tag, rs.size))
    assert names == [("s", 10, 100), ("b", 20, 200), ("d", 30, 300), ("", -1, 0), ("", -1, 0)]
    assert len(objs) == 1
    assert [x.name for x in r.read("latest")] == [""]
    with pytest.raises(ArgumentError, match="whence"):
        next(r.read("middle"))


def test_old_sequences_are_dropped_and_their_tags_reusable():
    r = Ring()
    r.resize(4096, 8192)
    w = r.begin_writing()
    write_seq(w, [4096], name="a", time_tag=1)
    write_seq(w, [4096], name="b", time_tag=2)
    assert r.open_earliest_sequence(guarantee=False).name == "a"
    write_seq(w, [1], name="c", time_tag=3)  # reuses the first byte of "a": "a" is still held
    assert r.open_earliest_sequence(guarantee=False).name == "a"
    write_seq(w, [4095], name="e", time_tag=4)  # now all of "a" has left the ring
    assert r.open_earliest_sequence(guarantee=False).name == "b"
    write_seq(w, [100], name="a", time_tag=1)  # "a" has left the ring: name and tag free again
    with pytest.raises(ArgumentError, match="already used"):
        w.begin_sequence("b")
    w.end_writing()


# ----------------------------------------------------------------------------- overrun
def test_overrun_is_reported_exactly():
    r = Ring()
    r.resize(4096, 8192)
    w = r.begin_writing()
    s = w.begin_sequence("o", header="h")
    slow = r.open_earliest_sequence(guarantee=False)
    off = 0
    for n in [4096, 4096, 4096, 1000]:   # 13288 bytes through 8192: 5096 bytes overwritten
        with s.reserve(n) as span:
            span.data[0][:] = pattern(off, n)
        off += n
    # a span opened before more writing, then overrun while it is held
    held = slow.acquire(8192, 4096)
    assert held.size_overwritten == 0
    copy = held.data[0].copy()
    with s.reserve(4096) as span:     # reuses [8192, 12288) - the held span's memory
        span.data[0][:] = pattern(off, 4096)
    off += 4096
    # the writer's tail is now off - 8192 = 9192: the first 1000 bytes of the held span are gone
    assert held.size_overwritten == 1000
    assert np.array_equal(copy, pattern(8192, 4096))
    held.release()
    s.end()
    w.end_writing()
    total_read = total_lost = 0
    for span in slow.read(3000):
        d = span.data[0].copy()
        ow = span.size_overwritten
        assert np.array_equal(d[ow:], pattern(span.offset, span.size)[ow:])
        total_read += span.size - ow
        total_lost += ow
    assert total_read + total_lost == off == slow.size
    assert total_lost == off - 8192  # exactly the bytes that left the ring


def test_fully_overwritten_tail_still_yields_spans():
    r = Ring()
    r.resize(4096, 4096)
    w = r.begin_writing()
    write_seq(w, [4096, 4096], name="gone")
    rseq = r.open_sequence("gone", guarantee=False)
    write_seq(w, [4096], name="next")
    w.end_writing()
    sizes = [(sp.offset, sp.size, sp.size_overwritten) for sp in rseq.read(4096)]
    assert sizes == [(0, 4096, 4096), (4096, 4096, 4096)]


def test_guaranteed_reader_holds_writer_back():
    r = Ring()
    r.resize(4096, 8192)
    w = r.begin_writing()
    s = w.begin_sequence()
    reader = r.open_earliest_sequence(guarantee=True)
    for i in range(2):
        with s.reserve(4096) as span:
            span.data[0][:] = pattern(i * 4096, 4096)
    with pytest.raises(WouldBlock):
        s.reserve(1, nonblocking=True)
    assert r.writer_blocked_seconds == 0.0

    def write_more():
        with s.reserve(4096) as span:
            span.data[0][:] = pattern(8192, 4096)

    t, box = run(write_more)
    t.join(0.3)
    assert t.is_alive(), "reserve must wait for the guaranteed reader"
    spans = reader.read(4096)
    first = next(spans)
    assert first.size_overwritten == 0 and np.array_equal(first.data[0], pattern(0, 4096))
    second = next(spans)  # pins offset 4096: the writer may now reuse [0, 4096)
    joined(t, box)
    assert r.writer_blocked_seconds > 0
    assert second.size_overwritten == 0 and np.array_equal(second.data[0], pattern(4096, 4096))
    spans.close()
    reader.close()
    s.end()
    w.end_writing()


def test_dropped_reader_releases_its_guarantee():
    r = Ring()
    r.resize(4096, 4096)
    w = r.begin_writing()
    s = w.begin_sequence()
    reader = r.open_earliest_sequence(guarantee=True)
    with s.reserve(4096):
        pass
    with pytest.raises(WouldBlock):
        s.reserve(4096, nonblocking=True)
    del reader
    gc.collect()
    t, box = run(lambda: s.reserve(4096).close())
    joined(t, box)
    r.end_writing()


# ----------------------------------------------------------------------------- wrap
def test_spans_are_contiguous_across_the_wrap():
    r = Ring()
    r.resize(4096, 16384)   # capacity 16384, ghost 4096
    w = r.begin_writing()
    s = w.begin_sequence()
    rseq = r.open_earliest_sequence(guarantee=True)
    gen = rseq.read(3000)
    off = 0
    seen = 0
    for n in [3000, 3000, 3000, 2500, 4096, 1, 4095, 3333] * 3:
        with s.reserve(n) as span:
            span.data[0][:] = pattern(off, n)
        off += n
        # drain whatever is complete so the writer never blocks (single thread)
        while seen + 3000 <= off:
            sp = next(gen)
            assert sp.offset == seen and sp.size_overwritten == 0
            assert np.array_equal(sp.data[0], pattern(seen, 3000)), f"mismatch at {seen}"
            seen += 3000
    s.end()
    for sp in gen:
        assert np.array_equal(sp.data[0], pattern(sp.offset, sp.size))
        seen += sp.size
    assert seen == off
    w.end_writing()


def test_reader_spans_cross_the_end_when_writer_spans_do_not():
    # the writer's spans divide the capacity (never touch the ghost); readers of other sizes
    # cross the end, in both ringlets, and still see contiguous, correct bytes
    r = Ring()
    r.resize(4096, 16384, nringlet=2)
    w = r.begin_writing()
    s = w.begin_sequence(nringlet=2)
    readers = [r.open_earliest_sequence(guarantee=True) for _ in range(2)]
    gens = [rd.read(n) for rd, n in zip(readers, (3000, 4096 - 7))]
    seen = [0, 0]
    off = 0
    for _ in range(4 * 16384 // 2048):
        with s.reserve(2048) as span:
            span.data[0][:] = pattern(off, 2048, 0)
            span.data[1][:] = pattern(off, 2048, 91)
        off += 2048
        for k, (g, n) in enumerate(zip(gens, (3000, 4096 - 7))):
            while seen[k] + n <= off:
                sp = next(g)
                assert sp.offset == seen[k] and sp.size_overwritten == 0
                assert np.array_equal(sp.data[0], pattern(seen[k], n, 0)), f"reader {k} at {seen[k]}"
                assert np.array_equal(sp.data[1], pattern(seen[k], n, 91)), f"reader {k} at {seen[k]}"
                seen[k] += n
    assert min(seen) > 3 * 16384      # several passes, each crossing the end
    s.end()
    w.end_writing()


def test_lagging_reader_never_writes_into_the_writers_ghost():
    # an unguaranteed reader acquiring an overwritten span that crosses the end must not copy
    # stale bytes over the ghost the writer is filling for the next pass
    r = Ring()
    r.resize(4096, 16384)   # capacity 16384, ghost 4096
    w = r.begin_writing()
    s = w.begin_sequence()
    lag = r.open_earliest_sequence(guarantee=False)
    off = 0
    for n in [4096, 4096, 4096, 2048, 4096, 2048]:     # the 5th crosses abs 16384
        with s.reserve(n) as span:
            span.data[0][:] = pattern(off, n)
        off += n
    with lag.acquire(15000, 4000) as sp:               # crosses the end beyond that overhang
        assert sp.size_overwritten == 0
        assert np.array_equal(sp.data[0], pattern(15000, 4000))
    while off + 4096 <= 30720:
        with s.reserve(4096) as span:
            span.data[0][:] = pattern(off, 4096)
        off += 4096
    while off < 30720:
        with s.reserve(30720 - off) as span:
            span.data[0][:] = pattern(off, span.size)
        off = 30720
    span = s.reserve(4096)                              # [30720, 34816): writes the ghost
    span.data[0][:] = pattern(off, 4096, 5)
    with lag.acquire(15000, 4000) as old:              # overwritten: reported, not copied
        assert old.size_overwritten > 0
    span.commit()
    span.close()
    fresh = r.open_latest_sequence(guarantee=False)
    with fresh.acquire(30720, 4096) as sp:
        assert sp.size_overwritten == 0
        assert np.array_equal(sp.data[0], pattern(30720, 4096, 5))
    s.end()
    w.end_writing()


def test_multiple_ringlets():
    r = Ring()
    r.resize(4096, 8192, nringlet=2)
    w = r.begin_writing()
    s = w.begin_sequence(nringlet=2)
    rseq = r.open_earliest_sequence()
    off = 0
    for n in [3000, 3000, 3000]:
        with s.reserve(n) as span:
            assert span.data.shape == (2, n)
            span.data[0][:] = pattern(off, n, 0)
            span.data[1][:] = pattern(off, n, 77)
        off += n
        with rseq.acquire(off - n, n) as sp:
            assert sp.nringlet == 2 and sp.data.shape == (2, n)
            assert np.array_equal(sp.data[0], pattern(off - n, n, 0))
            assert np.array_equal(sp.data[1], pattern(off - n, n, 77))
    with rseq.acquire(4000, 4096) as sp:
        assert np.array_equal(sp.data[1][:4096], pattern(4000, 4096, 77))
    with rseq.acquire(6000, 3000) as sp:   # wraps past capacity 8192
        assert np.array_equal(sp.data[0], pattern(6000, 3000, 0))
        assert np.array_equal(sp.data[1], pattern(6000, 3000, 77))
    s.end()
    with pytest.raises(ArgumentError, match="nringlet must be <= the ring's nringlet 2"):
        w.begin_sequence(nringlet=3)
    w.end_writing()


# ----------------------------------------------------------------------------- flags
def test_hand_over_flags_keeps_the_callers_array():
    # the capture engine's public way to attach a per-gulp mask: no copy, same rows read back
    r = Ring()
    r.resize(8192, 1 << 16)
    w = r.begin_writing()
    fn = 512
    mask = (np.arange(16).reshape(8, 2) + 1).astype(np.uint8)
    with w.begin_sequence("h") as s:
        with s.reserve(4096) as span:
            span.hand_over_flags(mask, fn)
    with r.open_sequence("h") as rseq, rseq.acquire(0, 4096) as sp:
        assert np.array_equal(sp.flags, mask)
    w.end_writing()


def _commit_then_reserve_three(r: Ring, size: int, partial: bool = False):
    """Spans A, B reserved; A committed (with flags) and C reserved in one call."""
    w = r.begin_writing()
    s = w.begin_sequence("cr")
    a = s.reserve(size)
    a.data[0][:] = pattern(0, size)
    b = s.reserve(size)
    b.data[0][:] = pattern(size, size)
    if partial:
        a.commit(size // 2)
    mask = (np.arange(2 * size // 512) % 7 + 1).astype(np.uint8).reshape(-1, 2)
    c = s.commit_then_reserve(a, mask, 512, size)
    return w, s, a, b, c, mask


def test_commit_then_reserve_publishes_the_span_with_its_flags_and_reserves_the_next():
    # the capture engine's one call per gulp: the same bytes, flags and offsets as
    # hand_over_flags + close + reserve
    size = 4096
    r = Ring()
    r.resize(size, 8 * size)
    w, s, a, b, c, mask = _commit_then_reserve_three(r, size)
    assert c.offset == 2 * size and c.size == size and not a._open
    assert np.shares_memory(c.first_ringlet(), r._buf) and c.first_ringlet().size == size
    rseq = r.open_sequence("cr")
    with rseq.acquire(0, size) as sp:
        assert np.array_equal(sp.data[0], pattern(0, size))
        assert sp.flags is mask or np.array_equal(sp.flags, mask)
    b.close()
    c.close()
    s.end()
    w.end_writing()
    assert [sp.size for sp in rseq.read(size)][:3] == [size, size, size]


def test_commit_then_reserve_commits_before_it_waits_for_a_reader():
    # a guaranteed reader holds the space the next span needs until it has read the span
    # being committed: the commit must come first, or neither side moves
    size = 4096
    r = Ring()
    r.resize(size, 2 * size)
    w = r.begin_writing()
    s = w.begin_sequence("wait")
    rseq = r.open_sequence("wait", guarantee=True)
    a = s.reserve(size)
    a.data[0][:] = pattern(0, size, 3)
    b = s.reserve(size)
    b.data[0][:] = pattern(size, size, 3)

    def read_two():
        got = []
        for off in (0, size):      # acquiring B moves the guarantee off A
            with rseq.acquire(off, size) as sp:
                got.append(bytes(sp.data[0]))
        return got

    rt, rbox = run(read_two)
    t, box = run(lambda: s.commit_then_reserve(a, np.ones((8, 1), np.uint8), 512, size))
    c = joined(t, box)
    assert c.offset == 2 * size
    b.close()
    assert joined(rt, rbox) == [pattern(0, size, 3).tobytes(), pattern(size, size, 3).tobytes()]
    c.close()
    s.end()
    w.end_writing()
    rseq.close()


def test_commit_then_reserve_after_a_partial_commit_takes_the_ordinary_route():
    size = 4096
    r = Ring()
    r.resize(size, 8 * size)
    w, s, a, b, c, mask = _commit_then_reserve_three(r, size, partial=True)
    b.close()
    c.close()
    s.end()
    w.end_writing()
    rseq = r.open_sequence("cr")
    with rseq.acquire(0, size // 2) as sp:
        assert np.array_equal(sp.data[0], pattern(0, size // 2))
    assert rseq.size == 3 * size     # A's uncommitted half is a zero-filled hole, not data lost


def test_read_gives_each_span_back_when_the_next_is_asked_for():
    # ReadSequence.read hands the previous span back inside the call that acquires the next
    # (one lock round per span): every span is still given back exactly once, the last one
    # when the loop ends or is left early
    r = Ring()
    r.resize(1024, 1 << 14)
    w = r.begin_writing()
    with w.begin_sequence("rel") as s:
        for i in range(6):
            with s.reserve(1024) as sp:
                sp.data[0][:] = i
    w.end_writing()
    rseq = r.open_sequence("rel")
    seen = []
    for sp in rseq.read(1024):
        assert r._open_spans == 1 and all(not old._open for old in seen)
        assert (sp.data[0] == len(seen)).all()
        seen.append(sp)
    assert len(seen) == 6 and r._open_spans == 0 and not seen[-1]._open
    it = iter(rseq.read(1024))
    first = next(it)
    it.close()                                   # left early: the span is given back
    assert not first._open and r._open_spans == 0
    rseq.close()


def test_flags_round_trip():
    r = Ring()
    r.resize(8192, 1 << 16)
    w = r.begin_writing()
    fn = 512
    expected = np.zeros((64, 3), dtype=np.uint8)
    with w.begin_sequence("f") as s:
        for i in range(4):   # four spans of 8 frames
            with s.reserve(4096) as span:
                rows = (np.arange(24).reshape(8, 3) + 10 * i).astype(np.uint8)
                src = rows.copy()
                span.set_flags(src, fn)
                src[:] = 0  # the ring keeps a copy
                expected[8 * i:8 * i + 8] = rows
        with s.reserve(4096) as span:   # partial commit: 1000 bytes = frames 32, 33
            span.set_flags(np.full((8, 3), 9, np.uint8), fn)
            span.commit(1000)
        expected[32:34] = 9
        with s.reserve(512):            # no flags on frame 34 (offset 17384 is not frame-aligned)
            pass
    rseq = r.open_sequence("f")
    for sp in rseq.read(2048):          # 4 frames per span
        f0 = sp.offset // fn
        f1 = -(-(sp.offset + sp.size) // fn)
        flags = sp.flags
        if f0 >= 34:
            assert flags is None
        else:
            assert flags.shape == (f1 - f0, 3)
            assert np.array_equal(flags[: max(0, min(f1, 34) - f0)], expected[f0:min(f1, 34)])
    with rseq.acquire(700, 1000) as sp:  # frames 1..3, partially covered at both ends
        assert np.array_equal(sp.flags, expected[1:4])
    with w.begin_sequence("g") as s2:
        with s2.reserve(4096) as span:
            with pytest.raises(ArgumentError, match="2-D"):
                span.set_flags(np.zeros(8, np.uint8), fn)
            with pytest.raises(ArgumentError, match="frame_nbyte"):
                span.set_flags(np.zeros((8, 1), np.uint8), 0)
        with s2.reserve(100) as span:
            with pytest.raises(ArgumentError, match="not a multiple of frame_nbyte"):
                span.set_flags(np.zeros((1, 1), np.uint8), 3000)
    with r.open_sequence("g").acquire(0, 100) as sp:
        assert sp.flags is None
    w.end_writing()


# ----------------------------------------------------------------------------- shutdown
def test_end_writing_wakes_every_waiting_reader():
    r = Ring()
    r.resize(4096)
    w = r.begin_writing()
    t1, b1 = run(r.open_earliest_sequence)        # waits for a first sequence
    t1.join(0.2)
    assert t1.is_alive()
    r2 = Ring()
    r2.resize(4096)
    w2 = r2.begin_writing()
    s2 = w2.begin_sequence("only")
    with s2.reserve(100) as span:
        span.data[0][:] = 5
    rs = r2.open_earliest_sequence()

    def wait_for_more():
        with rs.acquire(0, 200) as sp:        # 100 more bytes never come
            return sp.size

    t2, b2 = run(wait_for_more)

    def iterate():
        return [x.name for x in r2.read()]    # waits for a next sequence

    t3, b3 = run(iterate)
    t2.join(0.2)
    assert t2.is_alive() and t3.is_alive()
    w.end_writing()
    w2.end_writing()
    with pytest.raises(EndOfDataStop):
        joined(t1, b1)
    assert joined(t2, b2) == 100   # cut at the end of the (now ended) sequence
    assert joined(t3, b3) == ["only"]
    with pytest.raises(EndOfDataStop):
        rs.acquire(100, 10)
    with pytest.raises(EndOfDataStop):
        r.open_latest_sequence()
    assert list(r.read()) == []


# ----------------------------------------------------------------------------- odds and ends
def test_bifrost_type_names_and_array_header():
    r = Ring()
    r.resize(4096)
    hdr = np.arange(6, dtype=np.uint16)
    with r.begin_writing() as w:
        with w.begin_sequence("t", header=hdr) as s:
            with s.reserve(4096) as span:
                span.data_view("cf32")[0][:] = np.arange(512) * (1 - 1j)
    rseq = r.open_sequence("t")
    assert bytes(rseq.header) == hdr.tobytes()
    with rseq.acquire(0, 4096) as sp:
        assert sp.data_view("cf32").dtype == np.complex64
        assert np.array_equal(sp.data_view("cf32")[0], np.arange(512) * (1 - 1j))
        assert sp.data_view("u8").shape == (1, 4096)       # Bifrost 'u8' is one byte
        ci8 = sp.data_view("ci8")
        assert ci8.shape == (1, 2048) and ci8.dtype.names == ("re", "im")
        with pytest.raises(ArgumentError, match="dtype"):
            sp.data_view("no such type")


def test_strided_read_with_begin():
    r = Ring()
    r.resize(4096, 1 << 15)
    with r.begin_writing() as w:
        write_seq(w, [4096, 4096, 2000], name="s")
    rseq = r.open_sequence("s")
    got = [(sp.offset, sp.size, sp.data[0][0]) for sp in rseq.read(1000, stride=3000, begin=500)]
    assert [(o, n) for o, n, _ in got] == [(500, 1000), (3500, 1000), (6500, 1000), (9500, 692)]
    assert [b for _, _, b in got] == [pattern(o, 1)[0] for o, _, _ in got]
    with pytest.raises(ArgumentError, match="stride"):
        next(rseq.read(100, stride=0))


def test_span_reserved_when_its_sequence_ends_stays_out_of_the_next():
    r = Ring()
    r.resize(4096, 1 << 15)
    w = r.begin_writing()
    s1 = w.begin_sequence("one")
    with s1.reserve(100) as span:
        span.data[0][:] = 1
    late = s1.reserve(300)
    s1.end()                       # ends at the committed head (100 bytes)
    s2 = w.begin_sequence("two")   # starts after the still-reserved bytes
    sp2 = s2.reserve(50)
    sp2.data[0][:] = 2
    with pytest.raises(ArgumentError, match="commit spans in reservation order"):
        sp2.close()                # would wait forever for `late`, reserved by this thread
    late.data[0][:] = 9
    late.close()
    sp2.close()
    s2.end()
    w.end_writing()
    one, two = r.open_sequence("one"), r.open_sequence("two")
    assert one.size == 100 and two.size == 50
    with two.acquire(0, 50) as sp:
        assert (sp.data[0] == 2).all()


def test_cancel_after_sequence_end_leaves_a_gap():
    r = Ring()
    r.resize(4096, 1 << 15)
    w = r.begin_writing()
    s1 = w.begin_sequence("one")
    late = s1.reserve(300)
    s1.end()
    late.commit(0)
    late.close()
    with w.begin_sequence("two") as s2:
        with s2.reserve(10) as sp:
            assert sp.offset == 300   # the cancelled bytes stay a gap, outside both sequences
            sp.data[0][:] = 4
    w.end_writing()
    assert r.open_sequence("one").size == 0
    two = r.open_sequence("two")
    assert two.size == 10
    with two.acquire(0, 10) as sp:
        assert (sp.data[0] == 4).all()


def test_deleting_everything_is_clean():
    r = Ring()
    r.resize(4096)
    w = r.begin_writing()
    s = w.begin_sequence()
    with s.reserve(4096):
        pass
    rseq = r.open_earliest_sequence()
    span = rseq.acquire(0, 4096)
    gen = r.read(guarantee=False)
    next(gen)
    view = span.data
    del r, w, s, rseq, span, gen
    gc.collect()
    assert view.shape == (1, 4096)  # a view outliving everything still points at valid memory
    assert int(view.sum()) == 0     # ring memory starts zeroed


def test_fill_reports_what_guaranteed_readers_hold():
    r = Ring()
    r.resize(4096, 1 << 14)
    w = r.begin_writing()
    seq = w.begin_sequence("s", 1)
    assert r.fill == 0.0  # no guaranteed reader: nothing is held
    reader = r.open_earliest_sequence(guarantee=True)
    with seq.reserve(4096) as span:
        span.data_view(np.uint8)[0][:] = 1
    assert r.fill == 4096 / r.total_span
    with seq.reserve(4096):
        pass
    assert r.fill == 8192 / r.total_span
    reader.close()
    assert r.fill == 0.0
    seq.end()
    w.end_writing()
