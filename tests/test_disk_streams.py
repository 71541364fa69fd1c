"""DiskReader on inputs as they come: garbage before the data, pipes/FIFOs/sockets/stdin,
and records shifted by one short, long or corrupt record (issue 13, "files as streams")."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from asbru import formats
from asbru.capture.testing import RingCollector, run_capture
from asbru.errors import ArgumentError
from asbru.formats import batch
from asbru.packet_capture import DiskReader
from asbru.ring import Ring

from helpers.chips_records import FMT, NCHAN, NSRC, NTIME, P, RS, chips_records  # noqa: F401

def snap2_records(ntime=200, nsrc=4, seed=1):
    wf = formats.get("snap2_4x8", "write")
    p = wf.params.payload_size
    data = np.random.default_rng(seed).integers(0, 256, (ntime, nsrc, p), dtype=np.uint8)
    raw = batch.encode_packets(wf, batch.headerinfo(nsrc=nsrc, nchan=8, chan0=1000, tuning=1234567),
                               100, 1, 0, 1, data)
    rs = wf.params.header_size + p
    return data, [raw[k * rs:(k + 1) * rs] for k in range(ntime * nsrc)]


def read_all(fh, fmt=FMT, nsrc=NSRC, n=4, **kw):
    """Run the documented loop (stop at ENDED/NO_DATA/INTERRUPTED/ERROR) -> (reader, statuses,
    collected sequences)."""
    ring = Ring(name=f"streams_{id(fh):x}")
    ring.resize(4096, 8 << 20)
    cap = DiskReader(fmt, fh, ring, nsrc, 0, n, n, None, **kw)
    col = RingCollector(ring, 1 << 16)
    statuses = run_capture(cap)
    cap.end()
    return cap, statuses, col.join()


def check_chips_data(seqs, data, times):
    """The ring holds time steps ``times`` of ``data`` in order, in the chips layout."""
    assert len(seqs) == 1
    got = seqs[0].data.reshape(-1, NSRC * P)
    want = np.stack([data[t].reshape(NSRC, NCHAN, 32).transpose(1, 0, 2).ravel() for t in times])
    assert got.shape[0] >= len(times)
    rows = {t: k for k, t in enumerate(range(times[0], times[-1] + 1))}
    for t in times:
        assert np.array_equal(got[rows[t]], want[times.index(t)]), f"time step {t}"


def accounted(st):
    return st["nvalid"] + st["nduplicate"] + st["nlate"] + st["ninvalid"]


# ---------------------------------------------------------------------- NO_DATA mid-file
@pytest.mark.parametrize("budget", [None, 100])
def test_garbage_before_the_data_does_not_end_the_documented_loop(tmp_path, budget):
    # more undecodable records than one recv()'s bounded work: main returned NO_DATA with
    # no sequence open, and every documented loop stopped there, leaving the file unread
    data, recs = chips_records()
    garbage = [bytes([250]) + bytes(RS - 1)] * 6000
    path = tmp_path / "g.dat"
    path.write_bytes(b"".join(garbage + recs))
    kw = {} if budget is None else {"budget": budget}
    with open(path, "rb") as fh:
        cap, statuses, seqs = read_all(fh, **kw)
    assert 4 not in statuses[:-1] and statuses[-1] == 1      # ENDED, only at end of file
    st = cap.stats
    assert st["nvalid"] == 800 and st["ninvalid"] == 6000 and accounted(st) == st["nreceived"]
    check_chips_data(seqs, data, list(range(NTIME)))


def test_no_data_only_at_the_end_of_a_garbage_file(tmp_path):
    path = tmp_path / "noise.dat"
    path.write_bytes((bytes([250]) + bytes(RS - 1)) * 3000)
    with open(path, "rb") as fh:
        cap, statuses, seqs = read_all(fh, budget=500)
    assert statuses == [2] * 6 + [4]      # CONTINUED while data remains, then NO_DATA at EOF
    assert cap.stats["ninvalid"] == 3000 and seqs == []


def test_testing_helper_reads_the_whole_file(tmp_path):
    # capture.testing.run_capture (and examples/demo.py's loop) stop at NO_DATA
    data, recs = chips_records(ntime=50)
    path = tmp_path / "x.dat"
    path.write_bytes(b"".join([bytes(RS)] * 300 + recs))
    with open(path, "rb") as fh:
        cap, statuses, _ = read_all(fh, budget=64, read_size=16 * RS)
    assert 4 not in statuses[:-1] and statuses[-1] == 1
    assert cap.stats["nvalid"] == 100


# ---------------------------------------------------------------------- non-seekable inputs
def _writer(fd_or_sock, raw, chunks=(1, 77, 3000, 131, 65536, 5)):
    """Write ``raw`` in odd pieces (so reads end mid-record), then close."""
    def run():
        i = k = 0
        try:
            while i < len(raw):
                piece = raw[i:i + chunks[k % len(chunks)]]
                if isinstance(fd_or_sock, socket.socket):
                    fd_or_sock.sendall(piece)
                else:
                    view = memoryview(piece)
                    while view:
                        view = view[os.write(fd_or_sock, view):]
                i += len(piece)
                k += 1
                if k % 9 == 0:
                    time.sleep(0.001)
        finally:
            if isinstance(fd_or_sock, socket.socket):
                fd_or_sock.close()
            else:
                os.close(fd_or_sock)
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def _check_whole_stream(cap, statuses, seqs, data):
    assert statuses[-1] == 1
    st = cap.stats
    assert st["nvalid"] == 800 and st["ninvalid"] == 0 and st["nreceived"] == 800
    check_chips_data(seqs, data, list(range(NTIME)))


def test_pipe_read_in_odd_pieces(tmp_path):
    data, recs = chips_records()
    r, w = os.pipe()
    th = _writer(w, b"".join(recs))
    with os.fdopen(r, "rb") as fh:
        cap, statuses, seqs = read_all(fh)
    th.join(10)
    _check_whole_stream(cap, statuses, seqs, data)


def test_fifo(tmp_path):
    data, recs = chips_records()
    path = tmp_path / "fifo"
    os.mkfifo(path)
    box = {}

    def open_writer():
        box["fd"] = os.open(path, os.O_WRONLY)
    opener = threading.Thread(target=open_writer, daemon=True)
    opener.start()
    with open(path, "rb") as fh:
        opener.join(10)
        th = _writer(box["fd"], b"".join(recs))
        cap, statuses, seqs = read_all(fh)
    th.join(10)
    _check_whole_stream(cap, statuses, seqs, data)


def test_stream_socket():
    data, recs = chips_records()
    a, b = socket.socketpair()
    th = _writer(a, b"".join(recs))
    with b:
        cap, statuses, seqs = read_all(b)
    th.join(10)
    _check_whole_stream(cap, statuses, seqs, data)


def test_subprocess_stdout_pipe(tmp_path):
    data, recs = chips_records()
    path = tmp_path / "rec.dat"
    path.write_bytes(b"".join(recs))
    proc = subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE)
    try:
        cap, statuses, seqs = read_all(proc.stdout)
    finally:
        proc.stdout.close()
        proc.wait(10)
    _check_whole_stream(cap, statuses, seqs, data)


def test_stdin_buffer_of_a_pipeline(tmp_path):
    # `cat rec.dat | python reader.py` with DiskReader(..., sys.stdin.buffer, ...)
    data, recs = chips_records()
    path = tmp_path / "rec.dat"
    path.write_bytes(b"".join(recs))
    script = (
        "import sys\n"
        "from asbru.packet_capture import DiskReader\n"
        "from asbru.capture.testing import run_capture\n"
        f"cap = DiskReader({FMT!r}, sys.stdin.buffer, None, {NSRC}, 0, 4, 4, None)\n"
        "st = run_capture(cap)\n"
        "cap.end()\n"
        "s = cap.stats\n"
        "print(st[-1], s['nvalid'], s['ninvalid'], s['nreceived'])\n")
    root = Path(__file__).resolve().parent.parent
    cmd = f"cat {path} | {sys.executable} -c \"$SCRIPT\""
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "SCRIPT": script, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "800", "0", "800"]


def test_seek_and_tell_on_a_pipe_are_one_line_errors():
    r, w = os.pipe()
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        cap = DiskReader(FMT, fh, None, NSRC, 0, 4, 4, None)
        for call in (cap.tell, lambda: cap.seek(0, os.SEEK_SET)):
            with pytest.raises(ArgumentError) as ei:
                call()
            msg = str(ei.value)
            assert "\n" not in msg and "pipe" in msg and "seek" in msg
        assert run_capture(cap) == [4]
        cap.end()


# ---------------------------------------------------------------------- resynchronisation
@pytest.mark.parametrize("cut", [1, 4, 15, 16, 100, RS - 1])
def test_one_short_record_costs_one_record(tmp_path, cut):
    # main: every record after a short one was misaligned (101 of 800 valid after it)
    data, recs = chips_records()
    bad = 301
    recs[bad] = recs[bad][:cut]
    path = tmp_path / "short.dat"
    path.write_bytes(b"".join(recs))
    with open(path, "rb") as fh:
        cap, statuses, seqs = read_all(fh)
    st = cap.stats
    assert st["nresyncs"] == 1 and accounted(st) == st["nreceived"]
    got = seqs[0].data.reshape(-1, NSRC * P)
    flags = seqs[0].flags
    assert got.shape[0] == NTIME and statuses[-1] == 1
    t_bad, s_bad = divmod(bad, NSRC)
    for t in range(NTIME):
        slot = data[t].reshape(NSRC, NCHAN, 32).transpose(1, 0, 2)
        g = got[t].reshape(NCHAN, NSRC, 32)
        for s in range(NSRC):
            if (t, s) != (t_bad, s_bad):       # every other record is in its place
                assert flags[t, s] == 1 and np.array_equal(g[:, s], slot[:, s]), (t, s)
    if cut >= 16:
        # its header survived: it decoded, with the next record's start as its tail; that
        # next record is read again from its real start
        assert st["nvalid"] == 800 and flags[t_bad, s_bad] == 1
        assert np.array_equal(got[t_bad].reshape(NCHAN, NSRC, 32)[:, s_bad].ravel()[:cut - 16],
                              data[t_bad, s_bad, :cut - 16])
    else:
        assert st["nvalid"] == 799 and flags[t_bad, s_bad] == 0
        assert not got[t_bad].reshape(NCHAN, NSRC, 32)[:, s_bad].any()
    if cut == 1:
        assert st["ninvalid"] == 1 and st["ninvalid_bytes"] == 1 and st["nskipped_bytes"] == 1


def test_stray_bytes_cost_nothing_and_a_corrupt_record_one(tmp_path):
    data, recs = chips_records()
    recs[200] = recs[200] + b"\xff" * 37          # 37 stray bytes after record 200
    recs[500] = b"\x00" * RS                      # a zeroed record: alignment kept
    path = tmp_path / "long.dat"
    path.write_bytes(b"".join(recs))
    with open(path, "rb") as fh:
        cap, statuses, seqs = read_all(fh)
    st = cap.stats
    # the stray bytes are one invalid packet of 37 bytes; the zeroed record another
    assert st["nvalid"] == 799 and st["ninvalid"] == 2
    assert st["nresyncs"] == 1 and st["nskipped_bytes"] == 37
    assert st["ninvalid_bytes"] == 37 + RS
    assert accounted(st) == st["nreceived"]


def test_resync_across_read_buffers_and_in_a_pipe(tmp_path):
    # records cut near the end of each ~1 KiB read (read_size) and a pipe delivering odd pieces
    data, recs = chips_records()
    for k in (7, 100, 333, 334, 640):
        recs[k] = recs[k][:50]
    raw = b"".join(recs)
    r, w = os.pipe()
    th = _writer(w, raw)
    with os.fdopen(r, "rb") as fh:
        cap, statuses, seqs = read_all(fh, read_size=7 * RS)
    th.join(10)
    st = cap.stats
    # each short record keeps its header (placed with a corrupt tail); of the adjacent
    # pair, the second lies wholly inside the first one's row and is lost
    assert st["nvalid"] == 799 and st["nresyncs"] == 4, st
    assert accounted(st) == st["nreceived"]


# A short record must cost the same wherever the input happens to be cut into batches: the
# record after it used to be lost as well when the short record's row, or the row after it,
# ended a batch (the resync could not look back into the batch before, nor ahead past the
# end of this one); a pipe cuts the input wherever its writer did.
SHORT = 5


@pytest.mark.parametrize("nrow", [SHORT + 1, SHORT + 2, SHORT + 3])
def test_a_short_record_at_the_end_of_a_file_read_costs_only_itself(tmp_path, nrow):
    # read_size = nrow records: the first read ends at the short record's row (nrow 6), on
    # the row after it (7), or one later (8, the case that always worked)
    data, recs = chips_records()
    recs[SHORT] = recs[SHORT][:50]
    path = tmp_path / "edge.dat"
    path.write_bytes(b"".join(recs))
    with open(path, "rb") as fh:
        cap, statuses, seqs = read_all(fh, read_size=nrow * RS)
    st = cap.stats
    # the short record keeps its header (placed with a corrupt tail): nothing is lost
    assert (st["nvalid"], st["nresyncs"], st["ninvalid"]) == (800, 1, 1), st
    assert accounted(st) == st["nreceived"]


def _pipe_queued(fd: int) -> int:
    import fcntl
    import termios
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, bytes(4)), sys.byteorder)


@pytest.mark.parametrize("first", [SHORT * RS + 50, SHORT * RS + RS, SHORT * RS + 50 + RS,
                                   SHORT * RS + 2 * RS, SHORT * RS + 3 * RS + 7])
def test_a_short_record_where_a_pipe_read_ends_costs_only_itself(first):
    # the pipe holds exactly ``first`` bytes when the reader starts (so its first read ends
    # there), the rest comes once those are read
    data, recs = chips_records()
    recs[SHORT] = recs[SHORT][:50]
    raw = b"".join(recs)
    r, w = os.pipe()
    os.write(w, raw[:first])

    def rest():
        deadline = time.monotonic() + 30
        while _pipe_queued(w) and time.monotonic() < deadline:
            time.sleep(0.001)
        view = memoryview(raw)[first:]
        try:
            while view:
                view = view[os.write(w, view):]
        finally:
            os.close(w)
    th = threading.Thread(target=rest, daemon=True)
    th.start()
    with os.fdopen(r, "rb") as fh:
        cap, statuses, seqs = read_all(fh, read_size=64 * RS)
    th.join(10)
    st = cap.stats
    assert (st["nvalid"], st["nresyncs"], st["ninvalid"]) == (800, 1, 1), st
    # every record in place (but the short one's time step: its tail is the next record's)
    check_chips_data(seqs, data, [t for t in range(NTIME) if t != SHORT // NSRC])


def test_resync_snap2(tmp_path):
    data, recs = snap2_records()
    rs = len(recs[0])
    recs[333] = recs[333][:rs // 3]
    path = tmp_path / "snap2.dat"
    path.write_bytes(b"".join(recs))
    with open(path, "rb") as fh:
        cap, statuses, seqs = read_all(fh, fmt="snap2_4x8", nsrc=4)
    st = cap.stats
    assert st["nvalid"] == len(recs) - 1 and st["ninvalid"] == 1 and st["nresyncs"] == 1


def test_tell_counts_bytes_kept_back_after_a_resync(tmp_path):
    data, recs = chips_records(ntime=40)
    recs[10] = recs[10][:20]
    path = tmp_path / "t.dat"
    path.write_bytes(b"".join(recs))
    with open(path, "rb") as fh:
        cap = DiskReader(FMT, fh, None, NSRC, 0, 4, 4, None)
        ends = []
        while True:
            s = int(cap.recv())
            ends.append(cap.tell())
            if s in (1, 4):
                break
        assert ends[-1] == path.stat().st_size
        assert all(0 <= e <= path.stat().st_size for e in ends)
        assert cap.seek(0, os.SEEK_SET) == 0 and cap.tell() == 0
        assert run_capture(cap)[-1] == 1
        cap.end()
        assert cap.stats["nvalid"] == 2 * 80   # a 20-byte record keeps its header


def test_a_long_run_of_junk_mid_file_costs_only_the_junk(tmp_path):
    data, recs = chips_records()
    recs[400] = bytes([0xEE]) * 1000 + recs[400]     # 1000 junk bytes, not a record multiple
    path = tmp_path / "junk.dat"
    path.write_bytes(b"".join(recs))
    with open(path, "rb") as fh:
        cap, statuses, seqs = read_all(fh)
    st = cap.stats
    assert st["nvalid"] == 800 and st["nresyncs"] == 1 and st["nskipped_bytes"] >= 1000 - RS
    assert accounted(st) == st["nreceived"]
    check_chips_data(seqs, data, list(range(NTIME)))


def test_a_corrupt_copy_of_the_next_record_keeps_the_alignment(tmp_path):
    # a bad record followed by a garbage copy of its neighbour: chips decodes 3 bytes into
    # any record, and two copies agree with each other there -- the stream's own seqs do not
    data, recs = chips_records()
    bad = bytearray(recs[250])
    bad[0] = 0xFF
    junk = bytearray(recs[251])
    junk[0] = 0xFF
    recs[250] = bytes(bad)
    recs.insert(251, bytes(junk))
    path = tmp_path / "copy.dat"
    path.write_bytes(b"".join(recs))
    with open(path, "rb") as fh:
        cap, statuses, seqs = read_all(fh)
    st = cap.stats
    assert st["nvalid"] == 799 and st["ninvalid"] == 2 and st["nresyncs"] == 0
