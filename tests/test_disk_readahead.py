"""DiskReader reads a regular file ahead on a second thread (asbru/capture/backends/
disk_readahead.py): what reaches the ring, every count and tell() must be those of the reader
that reads in its own thread (``read_ahead=False``), whatever the file holds and however it is
read; the thread and its descriptors must go away with the reader."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from asbru.capture.backends import disk_readahead as RA
from asbru.capture.testing import RingCollector, run_capture
from asbru.errors import ArgumentError
from asbru.packet_capture import DiskReader
from asbru.ring import Ring
from asbru.capture.status import Status

from helpers.chips_records import FMT, NSRC, P, RS, chips_records

COUNTS = ("nvalid", "nvalid_bytes", "nlate", "nduplicate", "ninvalid", "ninvalid_bytes",
          "nmissing_bytes", "nreceived", "nresyncs", "nskipped_bytes", "nsequences")


def _read(path, read_ahead, **kw):
    with open(path, "rb") as fh:
        ring = Ring(name=f"ra_{int(read_ahead)}_{time.monotonic_ns() & 0xffffff:x}")
        ring.resize(4096, 8 << 20)
        cap = DiskReader(FMT, fh, ring, NSRC, 0, 4, 4, None, read_ahead=read_ahead, **kw)
        col = RingCollector(ring, 1 << 16)
        statuses = run_capture(cap)
        cap.end()
        return cap, statuses, col.join(30)


def _same(path, **kw):
    """Read ``path`` both ways; assert the same ring bytes, flags and counts; return them."""
    a, sa, qa = _read(path, True, **kw)
    b, sb, qb = _read(path, False, **kw)
    assert {k: a.stats[k] for k in COUNTS} == {k: b.stats[k] for k in COUNTS}
    assert [(q.time_tag, q.header) for q in qa] == [(q.time_tag, q.header) for q in qb]
    for x, y in zip(qa, qb):
        assert np.array_equal(x.data, y.data)
    assert sa == sb
    return a.stats, qa


def _threads():
    return [t for t in threading.enumerate() if t.name.endswith("read-ahead")]


@pytest.mark.parametrize("read_size", [None, 7 * RS, 64 * RS + 5])
def test_a_clean_file_reads_the_same_ahead_or_not(tmp_path, read_size):
    data, recs = chips_records()
    path = tmp_path / "clean.dat"
    path.write_bytes(b"".join(recs))
    kw = {} if read_size is None else {"read_size": read_size}
    st, seqs = _same(path, **kw)
    assert st["nvalid"] == len(recs) and st["ninvalid"] == 0
    got = seqs[0].data.reshape(-1, NSRC * P)
    assert got.shape[0] == len(recs) // NSRC


@pytest.mark.parametrize("read_size", [7 * RS, 40 * RS])
def test_resyncs_short_records_and_a_short_tail_read_the_same_ahead_or_not(tmp_path, read_size):
    # a resync keeps bytes for the next batch: that batch is read in the loop's thread and
    # the reading ahead starts again after it
    data, recs = chips_records()
    recs[3] = recs[3] + b"\xff" * 37          # stray bytes in the first region
    for k in (7, 100, 333, 334, 640):
        recs[k] = recs[k][:50]                # short records, one where a region ends
    recs[500] = b"\x00" * RS                  # a zeroed record
    path = tmp_path / "messy.dat"
    path.write_bytes(b"".join(recs) + recs[9][:40])      # and a short tail
    st, _ = _same(path, read_size=read_size)
    assert st["nresyncs"] >= 5 and st["ninvalid"] >= 6
    assert st["nvalid"] + st["nduplicate"] + st["nlate"] + st["ninvalid"] == st["nreceived"]


def test_tell_and_seek_while_regions_are_read_ahead(tmp_path):
    data, recs = chips_records()
    path = tmp_path / "seek.dat"
    path.write_bytes(b"".join(recs))
    with open(path, "rb") as fh:
        ring = Ring(name=f"ra_seek_{time.monotonic_ns() & 0xffffff:x}")
        ring.resize(4096, 8 << 20)
        cap = DiskReader(FMT, fh, ring, NSRC, 0, 4, 4, None, read_size=16 * RS)
        col = RingCollector(ring, 1 << 16)
        while cap.stats["nvalid"] < 40:
            cap.recv()
        # the regions after this batch are being read, yet tell() is the next record's offset
        assert cap.tell() % RS == 0 and cap.tell() <= 64 * RS
        assert cap._io[RA.IO_RA_INFLIGHT] > 0                # regions being read ahead
        # back to the start: what was read ahead from the old position is dropped
        assert cap.seek(0, os.SEEK_SET) == 0
        assert cap.tell() == 0
        run_capture(cap)
        cap.end()
        seqs = col.join(30)
    st = cap.stats
    assert st["nvalid"] >= len(recs) and st["ninvalid"] == 0
    # the second sequence (after the seek) holds the whole file, from its first record
    want0 = data[0].reshape(NSRC, 4, 32).transpose(1, 0, 2).ravel()
    assert np.array_equal(seqs[-1].data.reshape(-1, NSRC * P)[0], want0)


def test_a_file_that_grows_after_the_end_was_reached(tmp_path):
    data, recs = chips_records()
    path = tmp_path / "grow.dat"
    path.write_bytes(b"".join(recs[:300]))
    with open(path, "rb") as fh:
        ring = Ring(name=f"ra_grow_{time.monotonic_ns() & 0xffffff:x}")
        ring.resize(4096, 8 << 20)
        cap = DiskReader(FMT, fh, ring, NSRC, 0, 4, 4, None, read_size=32 * RS)
        col = RingCollector(ring, 1 << 16)
        st = None
        for _ in range(1000):
            st = cap.recv()
            if st == Status.NO_DATA:
                break
        assert st == Status.NO_DATA and cap.tell() == 300 * RS
        with open(path, "ab") as out:                         # the recorder writes on
            out.write(b"".join(recs[300:]))
        run_capture(cap)
        cap.end()
        col.join(30)
    assert cap.stats["nvalid"] == len(recs) and cap.stats["ninvalid"] == 0


def test_the_thread_and_its_descriptors_end_with_the_reader(tmp_path):
    data, recs = chips_records()
    path = tmp_path / "fds.dat"
    path.write_bytes(b"".join(recs))
    before_fds = set(os.listdir("/proc/self/fd"))
    before = len(_threads())
    _read(path, True)
    assert len(_threads()) == before
    assert set(os.listdir("/proc/self/fd")) <= before_fds
    # a reader dropped without end() stops its thread when collected
    fh = open(path, "rb")
    cap = DiskReader(FMT, fh, None, NSRC, 0, 4, 4, None)
    cap.recv()
    assert len(_threads()) > before
    del cap
    import gc
    gc.collect()
    fh.close()
    assert len(_threads()) == before
    assert set(os.listdir("/proc/self/fd")) <= before_fds


def test_a_closed_file_is_a_one_line_error_and_is_not_read_further(tmp_path):
    data, recs = chips_records()
    path = tmp_path / "closed.dat"
    path.write_bytes(b"".join(recs))
    fh = open(path, "rb")
    cap = DiskReader(FMT, fh, None, NSRC, 0, 4, 4, None, read_size=8 * RS)
    cap.recv()
    fh.close()
    with pytest.raises(ArgumentError, match="the file was closed"):
        cap.recv()
    cap.end()
    assert not any(t.is_alive() for t in _threads() if t.name.startswith("asbru-disk_reader"))


def test_read_ahead_argument_errors(tmp_path):
    r, w = os.pipe()
    try:
        with os.fdopen(r, "rb") as fh:
            with pytest.raises(ArgumentError, match="only a regular file is read ahead"):
                DiskReader(FMT, fh, None, NSRC, 0, 4, 4, None, read_ahead=True)
            # a pipe is read in the loop's thread by default
            path = tmp_path / "x.dat"
            path.write_bytes(b"")
            with open(path, "rb") as f2:
                with pytest.raises(ArgumentError, match="read_ahead must be True or False"):
                    DiskReader(FMT, f2, None, NSRC, 0, 4, 4, None, read_ahead="yes")
    finally:
        os.close(w)



_FORK_SCRIPT = r"""
import os, sys
sys.path.insert(0, sys.argv[2])
from helpers.chips_records import FMT, NSRC, RS
from asbru.capture.testing import run_capture
from asbru.packet_capture import DiskReader
fh = open(sys.argv[1], "rb")
cap = DiskReader(FMT, fh, None, NSRC, 0, 4, 4, None, read_size=16 * RS)
while cap.stats["nvalid"] < 40:
    cap.recv()
before = cap.stats["nvalid"]
pid = os.fork()
if pid == 0:
    code = 1
    try:
        run_capture(cap)
        print("child", cap.stats["nvalid"], flush=True)
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
# the child read the shared descriptor to its end; the parent's reading threads still
# answer the parent's own requests, so its next recv() returns (the rest of its batch)
cap.recv()
print("parent", before, cap.stats["nvalid"], os.waitstatus_to_exitcode(status), flush=True)
cap.end()
"""


def test_a_forked_child_reads_on_in_its_own_thread(tmp_path):
    # the reading threads do not survive fork(): the child must not use the parent's pipes
    # (it would take the parent's answers, and the parent would wait for them for ever)
    import subprocess
    import sys
    data, recs = chips_records()
    path = tmp_path / "fork.dat"
    path.write_bytes(b"".join(recs))
    helpers = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run([sys.executable, "-c", _FORK_SCRIPT, str(path),
                              os.path.join(helpers, "tests")],
                             capture_output=True, text=True, timeout=120).stdout
    except subprocess.TimeoutExpired:
        pytest.fail("a forked DiskReader hung")
    lines = dict((ln.split()[0], ln.split()[1:]) for ln in out.splitlines() if ln.strip())
    assert int(lines["child"][0]) == len(recs), out      # the child read every record
    before, after, code = map(int, lines["parent"])
    # the parent places at most what its current batch (16 records) still held
    assert code == 0 and before <= after <= before + 16, out
