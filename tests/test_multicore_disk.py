"""DiskReader(..., threads=N): N threads read one recording into one ring (docs/multicore.md).

A real recording on disk (CHIPS records, two sources) with gaps, a duplicate record and a
short tail, read by one thread and by N: the ring bytes, flags, time tags and every count
must be the single-thread reader's, the per-thread rows must add up to the totals, and
the reading threads must have placed most records themselves.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from asbru.capture.testing import RingCollector, run_capture
from asbru.errors import ArgumentError
from asbru.packet_capture import DiskReader
from asbru.ring import Ring

from helpers.chips_records import FMT, NSRC, P, chips_records

NTIME = 1500
GULP = 40            # time slots per gulp
GAPS = (50, 51, 777, 1500, 2001)      # records left out (a whole time slot: 50, 51)
DUP = 900            # a record written twice
COUNTS = ("nvalid", "nvalid_bytes", "nlate", "nlate_bytes", "nduplicate", "nduplicate_bytes",
          "ninvalid", "ninvalid_bytes", "ngood_bytes", "nmissing_bytes", "nreceived",
          "nsequences")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    data, recs = chips_records(ntime=NTIME, nsrc=NSRC, seed=3)
    out = []
    for k, r in enumerate(recs):
        if k in GAPS:
            continue
        out.append(r)
        if k == DUP:
            out.append(r)
    path = tmp_path_factory.mktemp("mcdisk") / "rec.dat"
    path.write_bytes(b"".join(out) + recs[7][:40])        # and a short tail
    return path, data


def read(path, threads, **kw):
    with open(path, "rb") as fh:
        ring = Ring(name=f"mcdisk_{threads}_{time.monotonic_ns() & 0xffffff:x}")
        cap = DiskReader(FMT, fh, ring, NSRC, 0, GULP, 1, None, threads=threads, **kw)
        col = RingCollector(ring, 1 << 16)
        statuses = run_capture(cap)
        cap.end()
        return cap, statuses, col.join(30)


@pytest.fixture(scope="module")
def single(recording):
    return read(recording[0], 1)


@pytest.mark.parametrize("threads", [2, 3])
def test_n_threads_read_a_recording_as_one_does(recording, single, threads):
    path, data = recording
    cap1, st1, seqs1 = single
    capn, stn, seqsn = read(path, threads)
    s1, sn = cap1.stats, capn.stats
    assert type(cap1) is DiskReader and "per_thread" not in s1
    # the recording, as one thread reads it
    nrec = NTIME * NSRC - len(GAPS) + 1
    assert s1["nreceived"] == nrec + 1 and s1["nvalid"] == nrec - 1
    assert s1["nduplicate"] == 1 and s1["ninvalid"] == 1 and s1["nlate"] == 0
    assert s1["nmissing_bytes"] == len(GAPS) * P
    # ... and as N threads read it: every count, the ring's bytes, flags and time tags
    assert {k: sn[k] for k in COUNTS} == {k: s1[k] for k in COUNTS}
    for key in ("valid", "late", "duplicate", "missing"):
        assert np.array_equal(sn["per_source"][key], s1["per_source"][key]), key
    assert [(q.time_tag, q.header) for q in seqsn] == [(q.time_tag, q.header) for q in seqs1]
    assert len(seqs1) == 1
    a, b = seqsn[0], seqs1[0]
    assert a.data.size == b.data.size == NTIME * NSRC * P and np.array_equal(a.data, b.data)
    assert (a.flags is None) == (b.flags is None)
    if a.flags is not None:
        assert np.array_equal(a.flags, b.flags)
    got = a.data.reshape(NTIME, P // 32, NSRC, 32).transpose(0, 2, 1, 3).reshape(NTIME, NSRC, P)
    assert np.array_equal(got[200], data[200]) and not got[25].any()      # data; a gap
    # per thread: the rows add up, and the reading threads placed most records
    rows = sn["per_thread"]
    assert len(rows) == threads + 1
    for k in ("nreceived", "nvalid", "nlate", "nduplicate", "ninvalid"):
        assert sum(r[k] for r in rows) == sn[k], k
    assert all(r["nreceived"] > 0 for r in rows[1:])
    assert sum(r["nvalid"] for r in rows[1:]) > sn["nvalid"] // 2


def test_threads_need_a_regular_file_and_cannot_seek(recording):
    path, _ = recording
    r, w = os.pipe()
    try:
        with os.fdopen(r, "rb", closefd=False) as fh:
            with pytest.raises(ArgumentError, match="pipe, FIFO or socket in one thread"):
                DiskReader(FMT, fh, None, NSRC, 0, GULP, 1, None, threads=2)
    finally:
        os.close(r)
        os.close(w)
    with open(path, "rb") as fh:
        cap = DiskReader(FMT, fh, None, NSRC, 0, GULP, 1, None, threads=2)
        try:
            with pytest.raises(ArgumentError, match="not with threads=N"):
                cap.seek(0)
            with pytest.raises(ArgumentError, match="not with threads=N"):
                cap.tell()
        finally:
            cap.end()
        with pytest.raises(ArgumentError, match="cores must list 2 CPU numbers"):
            DiskReader(FMT, fh, None, NSRC, 0, GULP, 1, None, threads=2, cores=[0])
        with pytest.raises(ArgumentError, match="threads must be an integer"):
            DiskReader(FMT, fh, None, NSRC, 0, GULP, 1, None, threads=-1)


def test_reading_starts_where_the_file_is(recording, single):
    """Records before ``fh.tell()`` are not read, by one thread or by several."""
    path, _ = recording
    skip = 100 * (16 + P)
    out = {}
    for threads in (1, 2):
        with open(path, "rb") as fh:
            fh.seek(skip)
            ring = Ring(name=f"mcdisk_at_{threads}_{time.monotonic_ns() & 0xffffff:x}")
            cap = DiskReader(FMT, fh, ring, NSRC, 0, GULP, 1, None, threads=threads)
            col = RingCollector(ring, 1 << 16)
            run_capture(cap)
            cap.end()
            out[threads] = (cap.stats["nreceived"], col.join(30)[0].time_tag)
    assert out[1] == out[2] and out[1][0] == single[0].stats["nreceived"] - 100
