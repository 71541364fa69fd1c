"""Ring throughput: one writer, one guaranteed reader, beside plain NumPy memcpy.

Moves ``--gib`` GiB per round (default 1) through a ``--ring-mib`` MiB ring (default 64) in
``--span-mib`` MiB spans (default 1).  The writer fills each span with ``np.copyto`` from a
prepared block; the reader copies each span out (``np.copyto``) into a buffer of its own.
The baseline ("memcpy") is one thread doing the writer's copies alone, with no ring calls,
into the ring's own memory just before the ring runs on it (the same pages), in the same
run.  Further lines: the writer alone (no reader), and where each thread's time went
(copies, ring calls, waiting), to tell the ring's own cost from that of two copies running
at once.  The ring moves every byte twice (in and out), so one line compares with those
two copies done by one thread without a ring, and another with the two copies done at once
by two threads with no ring between them (the ceiling of any ring whose writer and reader
both copy).

    python benchmarks/ring.py [--gib 1] [--ring-mib 64] [--span-mib 1] [--repeat 9]

With ``--repeat N`` (default 9) the memcpy baseline, the ring and its ceiling are measured
in turn N times; each ratio is taken within one round and the median of the N printed.
On the 16-core host one memcpy pass moved 6-20 GB/s from one start of the machine to the
next and drifted within a run, so a ratio of two passes far apart was a ratio of two draws.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asbru.ring import Ring  # noqa: E402
from benchmarks.machine import describe  # noqa: E402

MiB = 1 << 20


def fresh_ring(span: int, ring_bytes: int) -> Ring:
    ring = Ring(name=f"bench{time.monotonic_ns()}")
    ring.resize(span, ring_bytes)
    return ring


def memcpy_gbps(total: int, ring: Ring, span: int, block: np.ndarray) -> float:
    """The writer's copies alone, with no ring calls, into ``ring``'s own memory: the same
    pages the ring run then uses, so that the ratio compares copies into one buffer (on the
    16-core host a fresh 64 MiB buffer per measurement copied at 11-20 GB/s, round to
    round).  The ring's memory is written when it is allocated: copies, not page faults."""
    dst = ring._buf[0]
    nslot = ring.total_span // span
    n = total // span
    t0 = time.perf_counter()
    for i in range(n):
        j = (i % nslot) * span
        np.copyto(dst[j:j + span], block)
    return total / (time.perf_counter() - t0) / 1e9


def concurrent_copies_gbps(total: int, ring: Ring, span: int, block: np.ndarray) -> float:
    """The ring's two copies at once with no ring at all: one thread copies spans into
    ``ring``'s memory while another copies out the span two behind the one the first is
    writing (as a ring's reader trails its writer), read from a shared counter with no
    lock, no wait and no check (a span may be read while rewritten; only the traffic
    matters).  What any ring whose writer and reader each copy every byte can reach on
    this machine: its ceiling."""
    buf = ring._buf[0]
    nslot = ring.total_span // span
    n = total // span
    out = np.empty(span, dtype=np.uint8)
    took = [0.0, 0.0]
    written = [0]
    go = threading.Barrier(2)

    def copy_out():
        go.wait()
        t0 = time.perf_counter()
        for _ in range(n):
            j = ((written[0] - 2) % nslot) * span
            np.copyto(out, buf[j:j + span])
        took[1] = time.perf_counter() - t0

    reader = threading.Thread(target=copy_out)
    reader.start()
    go.wait()
    t0 = time.perf_counter()
    for i in range(n):
        j = (i % nslot) * span
        np.copyto(buf[j:j + span], block)
        written[0] = i + 1
    took[0] = time.perf_counter() - t0
    reader.join(600)
    return total / max(took) / 1e9


def two_copy_gbps(total: int, ring_bytes: int, span: int, block: np.ndarray) -> float:
    """The ring's work (copy in, copy out) done by one thread with no ring: overhead yardstick."""
    dst = np.ones(ring_bytes, dtype=np.uint8)
    out = np.empty(span, dtype=np.uint8)
    nslot = ring_bytes // span
    n = total // span
    t0 = time.perf_counter()
    for i in range(n):
        j = (i % nslot) * span
        np.copyto(dst[j:j + span], block)
        np.copyto(out, dst[j:j + span])
    return total / (time.perf_counter() - t0) / 1e9


def ring_gbps(total: int, ring: Ring, span: int, block: np.ndarray,
              timed: bool = False) -> tuple[float, float, int, dict]:
    """Ring throughput, writer-blocked seconds, bytes read, and (``timed``) where each
    thread's time went (seconds): ``wcopy``/``wring`` (the writer's copies / its
    reserve+commit calls), ``rcopy``/``rwait`` (the reader's copies / its waits for the next
    span).  Untimed, each thread's loop is just its ring calls and its copy, as the memcpy
    baseline's is just its copy: four clock reads and four sums per span and thread would be
    counted against the ring."""
    writer = ring.begin_writing()
    wseq = writer.begin_sequence("bench")
    rseq = ring.open_earliest_sequence(guarantee=True)
    out = np.empty(span, dtype=np.uint8)
    got = [0]
    prof = {"wcopy": 0.0, "wring": 0.0, "rcopy": 0.0, "rwait": 0.0}
    clock = time.perf_counter

    def read_timed():
        n = 0
        spans = iter(rseq.read(span))
        while True:
            t0 = clock()
            s = next(spans, None)
            t1 = clock()
            if s is None:
                break
            np.copyto(out, s.data[0])
            prof["rwait"] += t1 - t0
            prof["rcopy"] += clock() - t1
            n += s.size
        got[0] = n

    def read():
        n = 0
        for s in rseq.read(span):
            np.copyto(out, s.data[0])
            n += s.size
        got[0] = n

    reader = threading.Thread(target=read_timed if timed else read)
    t0 = clock()
    reader.start()
    if timed:
        for _ in range(total // span):
            a = clock()
            s = wseq.reserve(span)
            b = clock()
            np.copyto(s.data[0], block)
            c = clock()
            s.commit(span)
            s.close()
            prof["wcopy"] += c - b
            prof["wring"] += (b - a) + (clock() - c)
    else:
        for _ in range(total // span):
            s = wseq.reserve(span)
            np.copyto(s.data[0], block)
            s.commit(span)
            s.close()
    wseq.end()
    writer.end_writing()
    reader.join(600)
    dt = clock() - t0
    if reader.is_alive() or got[0] != total:
        raise SystemExit(f"reader finished={not reader.is_alive()} got {got[0]} of {total} bytes")
    if not np.array_equal(out, block):
        raise SystemExit("last span read back differs from what was written")
    rseq.close()
    return total / dt / 1e9, ring.writer_blocked_seconds, got[0], prof


def writer_alone_gbps(total: int, ring_bytes: int, span: int, block: np.ndarray) -> float:
    """The writer's half with no reader: what the ring's bookkeeping costs on top of memcpy."""
    ring = Ring(name="bench_alone")
    ring.resize(span, ring_bytes)
    writer = ring.begin_writing()
    wseq = writer.begin_sequence("alone")
    t0 = time.perf_counter()
    for _ in range(total // span):
        with wseq.reserve(span) as s:
            np.copyto(s.data[0], block)
    dt = time.perf_counter() - t0
    wseq.end()
    writer.end_writing()
    return total / dt / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gib", type=float, default=1.0, help="GiB moved per round")
    p.add_argument("--ring-mib", type=int, default=64)
    p.add_argument("--span-mib", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=9,
                   help="rounds of memcpy, ring and ceiling, in turn (medians of each round's ratios)")
    a = p.parse_args()
    print(describe(), flush=True)
    span = int(a.span_mib * MiB)
    ring_bytes = a.ring_mib * MiB
    total = int(a.gib * (1 << 30)) // span * span
    block = np.random.default_rng(1).integers(0, 256, span, dtype=np.uint8)
    bases, rings, ceilings = [], [], []
    for _ in range(max(1, a.repeat)):      # in turn, so that all see the same drift
        ring = fresh_ring(span, ring_bytes)
        bases.append(memcpy_gbps(total, ring, span, block))
        rings.append(ring_gbps(total, ring, span, block))
        ceilings.append(concurrent_copies_gbps(total, fresh_ring(span, ring_bytes), span, block))
    med = statistics.median
    base, ceiling = med(bases), med(ceilings)
    ring, blocked, nbyte, _ = sorted(rings, key=lambda r: r[0])[len(rings) // 2]
    # each ratio from one round (its memcpy measured just before its ring), then the median:
    # the host's memory moved 6-20 GB/s from one start to the next, and drifted within a run
    ratio = med(r[0] / b for r, b in zip(rings, bases))
    ceiling_ratio = med(c / b for c, b in zip(ceilings, bases))
    ring_to_ceiling = med(r[0] / c for r, c in zip(rings, ceilings))
    timed, tblocked, _, prof = ring_gbps(total, fresh_ring(span, ring_bytes), span, block, timed=True)
    both = two_copy_gbps(total, ring_bytes, span, block)
    alone = writer_alone_gbps(total, ring_bytes, span, block)
    print(f"ring: {ring:.2f} GB/s (memcpy {base:.2f} GB/s, ratio {ratio:.2f})"
          f"  [{nbyte / (1 << 30):.2f} GiB x {len(rings)} rounds, ring {a.ring_mib} MiB, span {span} B, "
          f"writer blocked {blocked:.2f} s]")
    if len(rings) > 1:
        print(f"ring: each round: {' / '.join(f'{r[0]:.2f}' for r in rings)} GB/s "
              f"(memcpy {' / '.join(f'{b:.2f}' for b in bases)}; "
              f"ratio {' / '.join(f'{r[0] / b:.2f}' for r, b in zip(rings, bases))})")
    print(f"ring: same copy-in + copy-out in one thread without a ring: {both:.2f} GB/s "
          f"(ring/that = {ring / both:.2f}; > 1 means writer and reader overlapped)")
    print(f"ring: the same two copies in two threads at once, no ring (its ceiling): {ceiling:.2f} GB/s "
          f"(ratio to memcpy {ceiling_ratio:.2f}; ring/that = {ring_to_ceiling:.2f})")
    print(f"ring: the writer alone (no reader): {alone:.2f} GB/s (ratio to memcpy {alone / base:.2f})")
    nspan = total // span
    us = lambda sec: sec / nspan * 1e6  # noqa: E731
    print(f"ring: where the time went (one more round, {timed:.2f} GB/s, with clocks read around "
          f"each call), per {span >> 10} KiB span: writer copy {us(prof['wcopy']):.1f} us "
          f"({total / prof['wcopy'] / 1e9:.2f} GB/s), reserve+commit {us(prof['wring']):.1f} us (of it "
          f"blocked by the reader {us(tblocked):.1f}); reader copy {us(prof['rcopy']):.1f} us "
          f"({total / prof['rcopy'] / 1e9:.2f} GB/s), waiting for data {us(prof['rwait']):.1f} us")


if __name__ == "__main__":
    main()
