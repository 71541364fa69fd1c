"""A writer and three readers moving random spans through a small ring, many times around.

Two readers are guaranteed (they must see every byte, intact); one is not (it is made slow,
gets overrun, and must account for every byte: read intact + reported lost == sequence size).
Every byte is derived from its offset in its sequence, so misplaced, stale or torn data is
caught.  Threads are real; every join has a timeout and a live thread fails the test.
"""
from __future__ import annotations

import json
import random
import threading
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asbru.errors import EndOfDataStop
from asbru.ring import Ring

JOIN = 60.0
CONTIG = 4096
CAPACITY = 16384


def pattern(start: int, n: int, salt: int) -> np.ndarray:
    x = np.arange(start, start + n, dtype=np.int64)
    return ((x ^ (x >> 8) ^ (x >> 16)) + salt * 37).astype(np.uint8)


def header_for(k: int):
    # str, bytes and dict headers in turn
    return [f"sequence {k}", bytes([k, 0, 255]) * 3, {"k": k, "axes": "time"}][k % 3]


def header_ok(k: int, blob: bytes) -> bool:
    h = header_for(k)
    if isinstance(h, str):
        return blob == h.encode()
    if isinstance(h, bytes):
        return blob == h
    return json.loads(blob) == h


sequences = st.lists(st.lists(st.integers(1, CONTIG), min_size=0, max_size=40), min_size=1, max_size=4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seqs=sequences,
       # readers' span sizes start at 61 bytes: 1-byte spans would only make the test slow
       span_a=st.integers(61, CONTIG), span_b=st.integers(61, CONTIG), span_c=st.integers(61, CONTIG),
       seed=st.integers(0, 2**32 - 1))
def test_writer_and_three_readers(seqs, span_a, span_b, span_c, seed):
    ring = Ring(name="stress")
    ring.resize(CONTIG, CAPACITY)
    assert ring.total_span == CAPACITY and ring.contiguous_span == CONTIG
    expected: list[np.ndarray] = [np.zeros(0, np.uint8)] * len(seqs)
    errors: list[str] = []
    results: dict[str, list] = {"a": [], "b": [], "c": []}

    writer = ring.begin_writing()
    first = writer.begin_sequence(name="s0", time_tag=1000, header=header_for(0))
    # Opened before any data is written, so the guaranteed readers pin offset 0.
    ra = ring.open_earliest_sequence(guarantee=True)
    rb = ring.open_earliest_sequence(guarantee=True)
    rc = ring.open_earliest_sequence(guarantee=False)

    def write():
        """Like the capture: up to two spans reserved at once, committed oldest first, some
        committed in part or cancelled.  ``expected`` models what readers must then see."""
        rng = random.Random(seed)
        wseq = first
        for k, spans in enumerate(seqs):
            if k:
                wseq = writer.begin_sequence(name=f"s{k}", time_tag=1000 + k, header=header_for(k))
            depth = rng.choice([1, 2])
            model = np.zeros(CONTIG * (len(spans) + 1), np.uint8)
            begin = None
            pending: list = []

            def commit_oldest():
                span, o, n = pending.pop(0)
                c = rng.randrange(n + 1) if rng.random() < 0.2 else n
                span.commit(c)
                model[o:o + c] = pattern(o, c, k)
                model[o + c:o + n] = 0          # a hole: zero-filled if later data follows
                span.close()

            for n in spans:
                span = wseq.reserve(n)
                if begin is None:
                    begin = span.offset
                o = span.offset - begin
                span.data[0][:] = pattern(o, n, k)
                pending.append((span, o, n))
                if len(pending) >= depth:
                    commit_oldest()
            while pending:
                commit_oldest()
            wseq.end()
            expected[k] = model[:wseq.size].copy()
            if rng.random() < 0.3:
                time.sleep(0.001)
        writer.end_writing()

    def check_meta(who, rseq, k):
        if (rseq.name, rseq.time_tag) != (f"s{k}", 1000 + k) or not header_ok(k, bytes(rseq.header)):
            errors.append(f"{who}: sequence {k} has name={rseq.name!r} time_tag={rseq.time_tag}")

    def guaranteed_via_read(who, rseq, span_size):
        k = 0
        while True:
            check_meta(who, rseq, k)
            chunks = []
            for span in rseq.read(span_size):
                if span.offset != sum(map(len, chunks)) or span.size_overwritten:
                    errors.append(f"{who}: seq {k} span at {span.offset}, overwritten {span.size_overwritten}")
                chunks.append(span.data[0].copy())
            results[who].append(np.concatenate(chunks) if chunks else np.zeros(0, np.uint8))
            try:
                rseq.increment()
            except EndOfDataStop:
                return
            k += 1

    def guaranteed_via_acquire(who, rseq, span_size):
        k = 0
        while True:
            check_meta(who, rseq, k)
            chunks, got = [], 0
            while True:
                try:
                    span = rseq.acquire(got, span_size)
                except EndOfDataStop:
                    break
                with span:
                    if span.size_overwritten:
                        errors.append(f"{who}: seq {k} span at {got} overwritten")
                    chunks.append(span.data[0].copy())
                    got += span.size
            results[who].append(np.concatenate(chunks) if chunks else np.zeros(0, np.uint8))
            try:
                rseq.increment()
            except EndOfDataStop:
                return
            k += 1

    def unguaranteed(who, rseq, span_size):
        rng = random.Random(seed ^ 0x5A5A)
        naps = 200                          # bounded, so the test's run time is too
        k = 0
        while True:
            check_meta(who, rseq, k)
            spans = []
            expect_offset = 0
            for span in rseq.read(span_size):
                if not spans and rng.random() < 0.7:
                    time.sleep(0.005)       # fall behind at the start of a sequence
                copy = span.data[0].copy()
                if naps and rng.random() < 0.3:
                    naps -= 1
                    time.sleep(0.0005)      # slow reader: let the writer lap it
                ow = span.size_overwritten  # checked after copying (seqlock-style)
                if span.offset != expect_offset:
                    errors.append(f"{who}: span at {span.offset}, expected {expect_offset}")
                spans.append((span.offset, copy, ow))
                expect_offset += span.size
            results[who].append(spans)
            try:
                rseq.increment()
            except EndOfDataStop:
                return
            k += 1

    threads = [threading.Thread(target=fn, args=args, daemon=True) for fn, args in [
        (write, ()),
        (guaranteed_via_read, ("a", ra, span_a)),
        (guaranteed_via_acquire, ("b", rb, span_b)),
        (unguaranteed, ("c", rc, span_c)),
    ]]
    for t in threads:
        t.start()
    deadline = time.monotonic() + JOIN
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    if alive:
        ring.end_writing()   # let the others go before failing
    assert not alive, f"threads still running after {JOIN}s: {alive}"
    assert not errors, errors[:5]
    for who in "ab":
        assert len(results[who]) == len(seqs)
        for k, got in enumerate(results[who]):
            assert np.array_equal(got, expected[k]), f"reader {who}, sequence {k}"
    assert len(results["c"]) == len(seqs)
    for k, spans in enumerate(results["c"]):
        intact = lost = 0
        for off, copy, ow in spans:
            assert np.array_equal(copy[ow:], expected[k][off + ow:off + len(copy)]), \
                f"reader c, sequence {k}: bytes reported intact at {off + ow} are wrong"
            intact += len(copy) - ow
            lost += ow
        assert intact + lost == len(expected[k])
    for r in (ra, rb, rc):
        r.close()


def test_unguaranteed_reader_really_is_overrun():
    """Deterministic counterpart: a reader that never keeps up loses exactly what was reused."""
    ring = Ring()
    ring.resize(CONTIG, CAPACITY)
    w = ring.begin_writing()
    s = w.begin_sequence("x")
    slow = ring.open_earliest_sequence(guarantee=False)
    fast = ring.open_earliest_sequence(guarantee=True)
    total = 0
    fast_spans = fast.read(CONTIG)
    got_fast = 0
    for i in range(40):   # 10 laps
        with s.reserve(CONTIG) as span:
            span.data[0][:] = pattern(total, CONTIG, 0)
        total += CONTIG
        sp = next(fast_spans)
        assert np.array_equal(sp.data[0], pattern(got_fast, CONTIG, 0))
        got_fast += sp.size
    s.end()
    w.end_writing()
    assert list(fast_spans) == [] and got_fast == total
    intact = lost = 0
    for sp in slow.read(1000):
        d = sp.data[0].copy()
        ow = sp.size_overwritten
        assert np.array_equal(d[ow:], pattern(sp.offset, sp.size, 0)[ow:])
        intact += sp.size - ow
        lost += ow
    assert lost == total - CAPACITY and intact == CAPACITY
    assert ring.writer_blocked_seconds == 0.0


def test_a_span_read_across_the_end_while_the_writer_reuses_the_start_is_intact_where_it_says():
    """Found by test_writer_and_three_readers (hypothesis): an unguaranteed reader's span
    that crosses the end of the buffer is read through the ghost; when the writer had already
    reserved the first bytes of the buffer for its next pass, the ghost was not filled at
    all, and the bytes still intact (above the tail) were handed over as zeros while
    size_overwritten called them intact."""
    ring = Ring(name="ghost_reuse")
    ring.resize(CONTIG, CAPACITY)
    writer = ring.begin_writing()
    wseq = writer.begin_sequence(name="g", time_tag=1, header="g")
    rseq = ring.open_earliest_sequence(guarantee=False)
    for off in range(0, 3 * CAPACITY, CONTIG):      # three passes; no span crosses the end
        span = wseq.reserve(CONTIG)
        span.data[0][:] = pattern(off, CONTIG, 0)
        span.commit(CONTIG)
        span.close()
    nxt = wseq.reserve(100)                          # the next pass: buffer bytes [0, 100)
    start = 2 * CAPACITY - 500                       # a span over the end of the second pass
    rspan = rseq.acquire(start, 1000)
    try:
        got = rspan.data[0].copy()
        ow = rspan.size_overwritten
    finally:
        rspan.release()
    assert ow == 600                                 # below the tail (2 * CAPACITY + 100)
    assert np.array_equal(got[ow:], pattern(start + ow, 1000 - ow, 0))
    nxt.commit(0)
    nxt.close()
    wseq.end()
    writer.end_writing()
    rseq.close()
