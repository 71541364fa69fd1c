"""One regression test per Bifrost defect that asbru fixes (docs/differences-from-bifrost.md).

Each test is named after the defect and drives asbru's public API with real bytes, files
and loopback sockets.  docs/differences-from-bifrost.md lists every defect with asbru's
behaviour and the test that proves it.
"""
from __future__ import annotations

import gc
import os
import socket
import threading

import numpy as np
import pytest

from asbru import formats
from asbru.address import Address
from asbru.capture.testing import RingCollector, free_udp_port, run_capture
from asbru.formats import batch, spec
from asbru.packet_capture import DiskReader, PacketCaptureCallback, UDPCapture
from asbru.packet_writer import DiskWriter, HeaderInfo, UDPTransmit
from asbru.ring import Ring
from asbru.udp_socket import UDPSocket

NCHAN = 4
P = 32 * NCHAN
RS = 16 + P
FMT = f"chips_{NCHAN}"
_n = iter(range(10**9))


def big_ring() -> Ring:
    """A ring that holds a whole test capture: the collector thread may open the sequence
    after the capture has written several gulps (an unopened reader is not guaranteed)."""
    ring = Ring(name=f"defects_{next(_n)}")
    ring.resize(4096, 16 << 20)
    return ring


def chips(ntime, nsrc, seq1=1001, chan0=100, seed=0):
    data = np.random.default_rng(seed).integers(0, 256, (ntime, nsrc, P), dtype=np.uint8)
    raw = batch.encode_packets(formats.get(FMT, "write"),
                               batch.headerinfo(nsrc=nsrc, nchan=NCHAN, chan0=chan0), seq1, 1, 0, 1, data)
    return data, {(t, s): raw[(t * nsrc + s) * RS:(t * nsrc + s + 1) * RS]
                  for t in range(ntime) for s in range(nsrc)}


def slot_of(data_t):
    nsrc = data_t.shape[0]
    return data_t.reshape(nsrc, NCHAN, 32).transpose(1, 0, 2).ravel()


def read_file(tmp_path, blob, fmt, nsrc, n=4, cb=None, src0=0, calls=None, **kw):
    path = tmp_path / f"f{next(_n)}.dat"
    path.write_bytes(blob)
    ring = big_ring()
    with open(path, "rb") as fh:
        cap = DiskReader(fmt, fh, ring, nsrc, src0, n, n, cb, **kw)
        col = RingCollector(ring, 1 << 20)
        statuses = run_capture(cap) if calls is None else [int(cap.recv()) for _ in range(calls)]
        cap.end()
        seqs = col.join(30)
    assert all(s.overwritten == 0 for s in seqs)
    return cap, statuses, seqs


def rows(seq, nsrc, p=P):
    return seq.data.reshape(-1, nsrc * p)


# ------------------------------------------- docs/differences-from-bifrost.md: engine

def test_missing_packets_are_zero_filled_not_stale(tmp_path):
    """§14.1: Bifrost left stale ring bytes in missing slots; asbru zeroes and flags them,
    even after the ring has wrapped (old data in the reused memory)."""
    nsrc, ntime = 2, 48
    data, pk = chips(ntime, nsrc, seed=1)
    drop = {(9, 0), (30, 1), (31, 0), (31, 1)}
    blob = b"".join(pk[(t, s)] for t in range(ntime) for s in range(nsrc) if (t, s) not in drop)
    path = tmp_path / "gaps.dat"
    path.write_bytes(blob)
    ring = Ring(name=f"wrap_{next(_n)}")
    with open(path, "rb") as fh:  # ring of 4 gulps for 12 gulps of data: memory is reused
        cap = DiskReader(FMT, fh, ring, nsrc, 0, 4, 4, None)
        got = []
        opened = threading.Event()

        def reader():
            for rseq in ring.read(guarantee=True):
                opened.set()
                for span in rseq.read(4 * nsrc * P):
                    assert span.size_overwritten == 0
                    got.append((np.array(span.data_view(np.uint8)[0]), np.array(span.flags)))
        th = threading.Thread(target=reader, daemon=True)
        th.start()
        # STARTED writes nothing yet: let the guaranteed reader open the sequence first
        # (a reader still waiting for a sequence holds no guarantee)
        assert int(cap.recv()) == 0 and opened.wait(10)
        run_capture(cap)
        cap.end()
        th.join(30)
    data_rows = np.concatenate([g[0] for g in got]).reshape(-1, nsrc * P)
    flags = np.concatenate([g[1] for g in got])
    assert data_rows.shape[0] == ntime
    for t in range(ntime):
        want = slot_of(data[t]).reshape(NCHAN, nsrc, 32).copy()
        for s in range(nsrc):
            assert flags[t, s] == ((t, s) not in drop)
            if (t, s) in drop:
                want[:, s] = 0
        assert np.array_equal(data_rows[t], want.ravel()), t
    assert cap.stats["nmissing_bytes"] == len(drop) * P


def test_received_packets_of_a_mostly_missing_source_are_kept(tmp_path):
    """§14.1: Bifrost blanked a whole gulp of a source missing > half its packets, erasing
    the packets it did receive."""
    nsrc, ntime = 2, 16
    data, pk = chips(ntime, nsrc, seed=2)
    keep1 = {0, 5, 9, 14}  # source 1 sends 1 packet of 4 in each gulp
    blob = b"".join(pk[(t, s)] for t in range(ntime) for s in range(nsrc) if s == 0 or t in keep1)
    cap, _, seqs = read_file(tmp_path, blob, FMT, nsrc)
    r = rows(seqs[0], nsrc)
    for t in keep1:
        assert np.array_equal(r[t].reshape(NCHAN, nsrc, 32)[:, 1], slot_of(data[t]).reshape(NCHAN, nsrc, 32)[:, 1])


def test_change_closes_old_sequence_with_its_data(tmp_path):
    """§14.2: on CHANGED Bifrost committed the two open old-configuration gulps into the new
    sequence."""
    nsrc, tc = 2, 10  # change in the middle of a gulp
    d1, pk1 = chips(24, nsrc, chan0=100, seed=3)
    d2, pk2 = chips(24, nsrc, chan0=300, seed=4)
    blob = b"".join(pk1[(t, s)] for t in range(tc) for s in range(nsrc))
    blob += b"".join(pk2[(t, s)] for t in range(tc, 24) for s in range(nsrc))
    cap, statuses, seqs = read_file(tmp_path, blob, FMT, nsrc)
    assert 3 in statuses and len(seqs) == 2
    a, b = rows(seqs[0], nsrc), rows(seqs[1], nsrc)
    assert a.shape[0] == tc and all(np.array_equal(a[t], slot_of(d1[t])) for t in range(tc))
    assert all(np.array_equal(b[t - tc], slot_of(d2[t])) for t in range(tc, 24))
    assert seqs[1].time_tag == 1000 + tc  # pointer default: seq0 of the new sequence


def test_value_family_time_tag_is_that_of_seq0(tmp_path):
    """§14.2 / FORMATS §14.17: Bifrost gave the callback the time tag of the packet that
    triggered it (up to two gulps after seq0)."""
    f = formats.get("drx", "write")
    step = 4096 * 10
    t0 = step * 5000
    rng = np.random.default_rng(5)
    blob = b""
    for t in range(12):
        data = rng.integers(0, 256, (1, 1, 4096), dtype=np.uint8)
        for ident in (1 | 1 << 3, 1 | 1 << 3 | 1 << 7, 1 | 2 << 3, 1 | 2 << 3 | 1 << 7):
            blob += batch.encode_packets(f, batch.headerinfo(decimation=10, tuning=777), t0 + t * step,
                                         0, ident, 0, data)
    seen = []
    cb = PacketCaptureCallback()
    cb.set_drx(lambda seq0, time_tag, decim, c0, c1, nsrc: seen.append((seq0, time_tag)) or None)
    cap, _, seqs = read_file(tmp_path, blob, "drx", 4, cb=cb)
    assert seen == [(5000, t0)] and seqs[0].time_tag == t0


def test_first_packets_out_of_order_are_not_dropped_as_late(tmp_path):
    """§14.3: Bifrost rounded the first seq up to slot_ntime/buffer_ntime and silently
    dropped the packets before it.  asbru starts at the smallest seq held at start-up (no
    rounding) and counts anything earlier as late (never silently)."""
    nsrc = 2
    data, pk = chips(12, nsrc, seq1=1004, seed=6)  # seq 1003: not a multiple of 4
    rest = [pk[(t, s)] for t in range(2, 12) for s in range(nsrc)]
    order = [pk[(1, 0)], pk[(0, 1)], pk[(1, 1)], pk[(0, 0)]] + rest
    cap, _, seqs = read_file(tmp_path, b"".join(order), FMT, nsrc)
    assert cap.sequence_history[0]["seq0"] == 1003 and cap.stats["nlate"] == 0
    r = rows(seqs[0], nsrc)
    assert r.shape[0] == 12 and all(np.array_equal(r[t], slot_of(data[t])) for t in range(12))
    # a whole time slot of t=1 before any t=0 packet: t=0 comes too late, and is counted
    order = [pk[(1, 0)], pk[(1, 1)], pk[(0, 1)], pk[(0, 0)]] + rest
    cap, _, seqs = read_file(tmp_path, b"".join(order), FMT, nsrc)
    st = cap.stats
    assert st["nvalid"] + st["nlate"] == 24 and st["per_source"]["late"].sum() == st["nlate"]


def test_backward_jump_restarts_capture(tmp_path):
    """§14.4: Bifrost never recovered from a backward jump in seq."""
    nsrc = 2
    _, pk = chips(20, nsrc, seq1=500_001, seed=7)
    d2, pk2 = chips(40, nsrc, seq1=1, seed=8)
    blob = b"".join(pk[(t, s)] for t in range(20) for s in range(nsrc))
    blob += b"".join(pk2[(t, s)] for t in range(40) for s in range(nsrc))
    cap, statuses, seqs = read_file(tmp_path, blob, FMT, nsrc)
    assert len(seqs) == 2 and cap.stats["nrestarts"] == 1
    seq0 = cap.sequence_history[1]["seq0"]
    r = rows(seqs[1], nsrc)
    assert r.shape[0] == 40 - seq0
    assert all(np.array_equal(r[t - seq0], slot_of(d2[t])) for t in range(seq0, 40))
    assert cap.stats["nvalid"] + cap.stats["nlate"] == 120


def test_flush_leaves_capture_inactive(tmp_path):
    """§14.5: after flush() Bifrost stayed "active" without a ring sequence (orphaned data,
    possible deadlock); asbru ends the sequence and the next packet starts a new one."""
    nsrc = 1
    data, pk = chips(16, nsrc, seed=9)
    path = tmp_path / "flush.dat"
    path.write_bytes(b"".join(pk[(t, 0)] for t in range(16)))
    ring = big_ring()
    tags = iter(range(100, 1000))
    cb = PacketCaptureCallback()
    cb.set_chips(lambda seq0, chan0, nchan, nsrc_: (next(tags), None))
    with open(path, "rb") as fh:
        cap = DiskReader(FMT, fh, ring, nsrc, 0, 4, 4, cb, read_size=4 * RS)
        col = RingCollector(ring, 1 << 20)
        assert [int(cap.recv()) for _ in range(2)] == [0, 2]
        cap.flush()
        rest = run_capture(cap)
        cap.end()
        seqs = col.join(30)
    assert rest[0] == 0  # STARTED: a new sequence, not data written into nothing
    assert len(seqs) == 2
    total = sum(rows(s, nsrc).shape[0] for s in seqs)
    assert total == 16 and cap.stats["nvalid"] == 16


def test_seek_leaves_capture_inactive(tmp_path):
    """§14.5: seek() too left Bifrost's capture active without a sequence."""
    nsrc = 1
    data, pk = chips(12, nsrc, seed=25)
    path = tmp_path / "seek.dat"
    path.write_bytes(b"".join(pk[(t, 0)] for t in range(12)))
    tags = iter(range(100, 1000))
    cb = PacketCaptureCallback()
    cb.set_chips(lambda seq0, chan0, nchan, nsrc_: (next(tags), None))
    with open(path, "rb") as fh:
        cap = DiskReader(FMT, fh, big_ring(), nsrc, 0, 4, 4, cb)
        col = RingCollector(cap.ring, 4 * nsrc * P)
        assert int(cap.recv()) == 0
        cap.seek(8 * RS, os.SEEK_SET)  # commit, end the sequence, jump to t = 8
        assert cap.tell() == 8 * RS
        rest = run_capture(cap)
        cap.end()
        seqs = col.join(30)
    assert rest[0] == 0 and len(seqs) == 2
    assert cap.sequence_history[1]["seq0"] == 1008
    r = rows(seqs[1], nsrc)
    assert r.shape[0] == 4 and all(np.array_equal(r[t - 8], slot_of(data[t])) for t in range(8, 12))


def test_error_status_still_publishes_statistics(tmp_path):
    """§14.8: Bifrost skipped the statistics update on ERROR/INTERRUPTED returns."""
    from asbru.proclog import load_by_pid
    _, pk = chips(4, 1, seed=26)
    path = tmp_path / "err.dat"
    path.write_bytes(b"".join(pk[(t, 0)] for t in range(4)))
    with open(path, "rb") as fh:
        # read in the loop's own thread: the descriptor is swapped below, under the reader
        cap = DiskReader(FMT, fh, big_ring(), 1, 0, 4, 4, None, read_ahead=False)
        col = RingCollector(cap.ring, 4 * P)
        run_capture(cap)
    from asbru.capture import layout as L
    with open(tmp_path / "wo.dat", "wb") as bad:
        # white-box: point the reader at a write-only descriptor, so read() fails (EBADF)
        cap._fd = cap._io[L.IO_FD] = bad.fileno()
        cap._fh = bad
        status = int(cap.recv())
        logs = load_by_pid(os.getpid())
        block = cap._logs.block
        assert status == 6
        assert int(logs[block]["stats"]["nvalid"]) == 4  # published on the ERROR return
        cap.end()
    col.join(30)


def test_capture_keeps_socket_reference():
    """§14.5a: Bifrost kept only the descriptor; a collected socket object closed it."""
    port = free_udp_port()

    def make():
        s = UDPSocket()
        s.bind(Address("127.0.0.1", port))
        s.timeout = 0.3
        return UDPCapture(FMT, s, big_ring(), 1, 0, 9000, 4, 4, None)
    cap = make()  # the only reference to the socket is inside the capture
    gc.collect()
    col = RingCollector(cap.ring, 1 << 20)
    data, pk = chips(8, 1, seed=10)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for t in range(8):
            tx.sendto(pk[(t, 0)], ("127.0.0.1", port))
    statuses = run_capture(cap)
    cap.end()
    seqs = col.join(30)
    assert statuses[0] == 0 and cap.stats["nvalid"] == 8
    assert all(np.array_equal(rows(seqs[0], 1)[t], slot_of(data[t])) for t in range(8))


def test_diskreader_keeps_file_reference(tmp_path):
    """§14.5a for files: ``DiskReader(fmt, open(path, 'rb'), ...)`` keeps working."""
    data, pk = chips(8, 1, seed=11)
    path = tmp_path / "ref.dat"
    path.write_bytes(b"".join(pk[(t, 0)] for t in range(8)))
    cap = DiskReader(FMT, open(path, "rb"), big_ring(), 1, 0, 4, 4, None)  # noqa: SIM115
    gc.collect()
    col = RingCollector(cap.ring, 1 << 20)
    run_capture(cap)
    cap.end()
    col.join(30)
    assert cap.stats["nvalid"] == 8
    cap._fh.close()


def test_duplicate_packet_does_not_blank_source(tmp_path):
    """§14.6: duplicates wrapped unsigned counters and blanked the source."""
    nsrc = 2
    data, pk = chips(16, nsrc, seed=12)
    order = []
    for t in range(16):
        for s in range(nsrc):
            order += [pk[(t, s)]] * (3 if s == 1 else 1)
    cap, _, seqs = read_file(tmp_path, b"".join(order), FMT, nsrc)
    r = rows(seqs[0], nsrc)
    assert all(np.array_equal(r[t], slot_of(data[t])) for t in range(16))
    st = cap.stats
    assert st["nduplicate"] == 32 and st["nvalid"] == 32 and st["nmissing_bytes"] == 0
    assert list(st["per_source"]["missing"]) == [0, 0] and seqs[0].flags.all()


def test_only_late_stream_does_not_block():
    """§14.7: a stream of only late/invalid packets kept Bifrost's recv() forever; asbru
    returns after a bounded amount of work even on a socket without timeout."""
    port = free_udp_port()
    s = UDPSocket()
    s.bind(Address("127.0.0.1", port))  # no timeout: would block forever waiting for data
    cap = UDPCapture(FMT, s, big_ring(), 1, 0, 9000, 4, 4, None, budget=100)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for _ in range(300):
            tx.sendto(b"\xff" * RS, ("127.0.0.1", port))  # garbage only
        out = []
        th = threading.Thread(target=lambda: out.append(int(cap.recv())), daemon=True)
        th.start()
        th.join(20)
    assert not th.is_alive() and out == [4]  # NO_DATA after the work bound
    assert cap.stats["ninvalid"] >= 100
    s.shutdown()
    cap.end()
    s.close()


def test_callback_exception_surfaces(tmp_path):
    """§14.8 / §14.11: Bifrost swallowed exceptions raised in sequence callbacks."""
    _, pk = chips(8, 1, seed=13)

    class Boom(Exception):
        pass

    def bad(seq0, chan0, nchan, nsrc):
        raise Boom("callback failed")
    cb = PacketCaptureCallback()
    cb.set_chips(bad)
    path = tmp_path / "cb.dat"
    path.write_bytes(b"".join(pk[(t, 0)] for t in range(8)))
    with open(path, "rb") as fh:
        cap = DiskReader(FMT, fh, big_ring(), 1, 0, 4, 4, cb)
        with pytest.raises(Boom):
            run_capture(cap)
        cap.end()  # the callback that raised is not called again
    # end() always ends writing: a reader is never left waiting
    assert [s.time_tag for s in cap.ring.read(guarantee=True)] == []
    assert cap.stats["nvalid"] == 0 and cap.stats["ninvalid"] == cap.stats["nreceived"] == 8


def test_core_does_not_change_caller_affinity(tmp_path):
    """§14.9: Bifrost's constructor pinned (or un-pinned) the calling thread."""
    before = os.sched_getaffinity(0)
    cpu = sorted(before)[0]
    path = tmp_path / "aff.dat"
    path.write_bytes(b"")
    with open(path, "rb") as fh:
        cap = DiskReader(FMT, fh, big_ring(), 1, 0, 4, 4, None, core=cpu)
        run_capture(cap)
        cap.end()
    assert os.sched_getaffinity(0) == before
    with open(tmp_path / "w.dat", "wb") as fh:
        w = DiskWriter(FMT, fh, core=cpu)
        w.send(HeaderInfo(), 1, 1, 0, 1, np.zeros((3, 2, NCHAN * 32), np.uint8).view("u1"))
        w.close()
    assert os.sched_getaffinity(0) == before


def test_writer_core_is_not_the_burst_size(tmp_path):
    """§14.9: Bifrost's writers used ``core`` as the send burst size."""
    with open(tmp_path / "w.dat", "wb") as fh:
        w = DiskWriter("generic_64", fh, core=-1)
        assert w.send(HeaderInfo(), 0, 1, 0, 1, np.zeros((37, 1, 64), np.uint8)) == 37
    assert (tmp_path / "w.dat").stat().st_size == 37 * 64


def test_per_source_statistics_are_published(tmp_path):
    """§14.10: Bifrost kept statistics only in proclog files and had no per-source counts."""
    nsrc = 3
    _, pk = chips(8, nsrc, seed=14)
    order = [pk[(t, s)] for t in range(8) for s in range(nsrc) if not (s == 2 and t % 2)]
    cap, _, _ = read_file(tmp_path, b"".join(order), FMT, nsrc)
    ps = cap.stats["per_source"]
    assert list(ps["valid"]) == [8, 8, 4] and list(ps["missing"]) == [0, 0, 4]


def test_callbacks_are_per_instance_and_header_is_copied(tmp_path):
    """§14.11: a class-level cache let a second PacketCaptureCallback replace the first's
    function; the header buffer had to outlive the callback."""
    import ctypes
    _, pk = chips(8, 1, seed=15)
    path = tmp_path / "cb2.dat"
    path.write_bytes(b"".join(pk[(t, 0)] for t in range(8)))
    calls = []

    def first(seq0, chan0, nchan, nsrc, time_tag_ptr, hdr_ptr, hdr_size_ptr):
        buf = ctypes.create_string_buffer(b'{"who": "first"}')  # dies when we return
        calls.append("first")
        time_tag_ptr[0] = 77
        hdr_ptr[0] = ctypes.cast(buf, ctypes.c_void_p).value
        hdr_size_ptr[0] = 16
        return 0
    a, b = PacketCaptureCallback(), PacketCaptureCallback()
    a.set_chips(first)
    b.set_chips(lambda *args: calls.append("second") or 0)
    with open(path, "rb") as fh:
        cap = DiskReader(FMT, fh, big_ring(), 1, 0, 4, 4, a)
        col = RingCollector(cap.ring, 1 << 20)
        run_capture(cap)
        cap.end()
        seqs = col.join(30)
    assert calls == ["first"]
    assert seqs[0].time_tag == 77 and seqs[0].header == b'{"who": "first"}'


def test_rate_limit_failures_are_reported():
    """§14.12: Bifrost never reported send failures to the caller."""
    port = free_udp_port()  # nobody listens: ECONNREFUSED comes back
    s = UDPSocket()
    s.connect(Address("127.0.0.1", port))
    w = UDPTransmit("generic_64", s)
    total = 0
    for _ in range(5):
        total += w.send(HeaderInfo(), 0, 1, 0, 1, np.zeros((4, 1, 64), np.uint8))
    st = w.stats
    assert st.nvalid + st.ninvalid == 20 and st.ninvalid >= 1 and w.last_error != 0
    s.close()


def test_ring_time_tags_need_not_be_unique():
    """§14.13: "the ring time tags must be unique"; asbru should accept a repeat."""
    ring = Ring(name=f"tt_{next(_n)}")
    ring.resize(4096, 1 << 16)
    w = ring.begin_writing()
    for _ in range(2):
        seq = w.begin_sequence(name="", time_tag=20, header=b"", nringlet=1)
        seq.end()
    w.end_writing()


def test_two_captures_write_one_ring_in_turn(tmp_path):
    """§14.13: only one capture could ever write a given ring."""
    ring = big_ring()
    _, pk1 = chips(8, 1, seed=16)
    _, pk2 = chips(8, 1, seq1=5001, seed=17)
    p1, p2 = tmp_path / "a.dat", tmp_path / "b.dat"
    p1.write_bytes(b"".join(pk1[(t, 0)] for t in range(8)))
    p2.write_bytes(b"".join(pk2[(t, 0)] for t in range(8)))
    with open(p1, "rb") as f1:
        c1 = DiskReader(FMT, f1, ring, 1, 0, 4, 4, None)
        run_capture(c1)
        c1.end()
    with open(p2, "rb") as f2:
        c2 = DiskReader(FMT, f2, ring, 1, 0, 4, 4, None)  # ArgumentError: already written
        run_capture(c2)
        c2.end()
    assert c2.stats["nvalid"] == 8


# ------------------------------------------ docs/differences-from-bifrost.md: sockets

def test_ipv6_bind_works():
    """§14.14: Bifrost passed the IPv4 address length to bind/connect for IPv6."""
    port = free_udp_port("::1")
    rx = UDPSocket()
    rx.bind(Address("::1", port))
    rx.timeout = 0.3
    cap = UDPCapture(FMT, rx, big_ring(), 1, 0, 9000, 4, 4, None)
    col = RingCollector(cap.ring, 1 << 20)
    tx = UDPSocket()
    tx.connect(Address("::1", port))
    w = UDPTransmit(FMT, tx)
    data = np.random.default_rng(18).integers(0, 256, (8, 1, NCHAN * 32), dtype=np.uint8)
    w.send(batch_headerinfo(), 1001, 1, 0, 1, data.view("u1"))
    run_capture(cap)
    cap.end()
    seqs = col.join(30)
    assert cap.stats["nvalid"] == 8
    assert np.array_equal(rows(seqs[0], 1)[5], slot_of(data[5]))
    rx.close()
    tx.close()


def batch_headerinfo() -> HeaderInfo:
    h = HeaderInfo()
    h.set_nsrc(1)
    h.set_nchan(NCHAN)
    h.set_chan0(100)
    return h


def test_timeout_can_be_cleared():
    """§14.14: Bifrost's UDPSocket timeout could not be cleared once set."""
    s = UDPSocket()
    s.bind(Address("127.0.0.1", free_udp_port()))
    s.timeout = 0.25
    assert abs(s.timeout - 0.25) < 0.02
    s.timeout = None
    assert s.timeout == 0.0
    s.timeout = 0.1
    s.timeout = 0
    assert s.timeout == 0.0
    s.close()


def test_zero_length_datagram_does_not_end_sequence():
    """§14.14: a zero-length datagram ended Bifrost's sequence."""
    port = free_udp_port()
    rx = UDPSocket()
    rx.bind(Address("127.0.0.1", port))
    rx.timeout = 0.3
    cap = UDPCapture(FMT, rx, big_ring(), 1, 0, 9000, 4, 4, None)
    col = RingCollector(cap.ring, 1 << 20)
    data, pk = chips(12, 1, seed=19)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for t in range(12):
            tx.sendto(pk[(t, 0)], ("127.0.0.1", port))
            if t == 5:
                tx.sendto(b"", ("127.0.0.1", port))
    statuses = run_capture(cap)
    cap.end()
    seqs = col.join(30)
    assert statuses.count(1) == 1 and statuses[-1] == 1 and len(seqs) == 1
    assert cap.stats["nvalid"] == 12 and cap.stats["ninvalid"] == 1
    rx.close()


# ----------------------------------------- docs/differences-from-bifrost.md: numerics

def test_quantize_4bit_rounds_and_saturates():
    """§14.15: Bifrost's CPU 4-bit quantize truncated and wrapped (200 -> -7)."""
    import asbru
    x = np.array([200.0, -200.0, 2.6, -2.6, 7.4, 0.4], np.float32)
    dst = asbru.ndarray(shape=x.shape, dtype="i4")
    asbru.quantize(x, dst)
    raw = np.asarray(dst).view(np.uint8).ravel()
    vals = []
    for b in raw:
        for nib in (b >> 4, b & 0xF):
            vals.append(int(nib) - 16 if nib >= 8 else int(nib))
    assert vals == [7, -7, 3, -3, 7, 0]


def test_ci4_quantize_unpack_round_trip_keeps_re_im_order():
    """§14.15: quantize packed MSB-first while unpack read LSB-first (re/im swapped)."""
    import asbru
    z = np.array([1 + 2j, -3 + 4j, 5 - 6j, -7 - 1j], np.complex64)
    q = asbru.ndarray(shape=z.shape, dtype="ci4")
    asbru.quantize(z, q)
    out = asbru.ndarray(shape=z.shape, dtype="ci8")
    asbru.unpack(q, out)
    o = np.asarray(out).view(np.int8).reshape(-1, 2)
    assert o[:, 0].tolist() == [1, -3, 5, -7] and o[:, 1].tolist() == [2, 4, -6, -1]


# ------------------------------------------------------------------ FORMATS §14

def _fuzz_module():
    """tools/fuzz.py (valid template packets of every capturable format)."""
    import importlib.util
    import sys
    from pathlib import Path
    name = "asbru_tools_fuzz"
    if name not in sys.modules:
        sp = importlib.util.spec_from_file_location(name, Path(__file__).parent.parent / "tools" / "fuzz.py")
        m = importlib.util.module_from_spec(sp)
        sys.modules[name] = m
        sp.loader.exec_module(m)
    return sys.modules[name]


def _drx_blob(fmt, ntime, drop=(), decim=10, seed=0):
    f = formats.get(fmt, "write")
    step = 4096 * decim
    rng = np.random.default_rng(seed)
    pay = f.params.payload_size
    data = rng.integers(0, 256, (ntime, 4, pay), dtype=np.uint8)
    ids = (1 | 1 << 3, 1 | 1 << 3 | 1 << 7, 1 | 2 << 3, 1 | 2 << 3 | 1 << 7)
    blob = b""
    for t in range(ntime):
        for s, ident in enumerate(ids):
            if (t, s) in drop:
                continue
            blob += batch.encode_packets(f, batch.headerinfo(decimation=decim, tuning=999),
                                         step * (100 + t), 0, ident, 0, data[t:t + 1, s:s + 1])
    return blob, data


def test_sync_words_are_explicit_bytes():
    """FORMATS §14.1: Bifrost wrote/compared sync words in host order; asbru writes and
    checks the bytes DE C0 DE 5C whatever the host."""
    f = formats.get("tbn", "write")
    raw = batch.encode_packets(f, batch.headerinfo(tuning=1, gain=1), 1960 * 512, 0, 0, 1,
                               np.zeros((1, 1, 1024), np.uint8))
    assert raw[:4] == bytes.fromhex("dec0de5c")
    swapped = bytes.fromhex("5cdec0de") + raw[4:]
    d = np.full(spec.NDESC, -1, np.int64)
    cf = formats.get("tbn")
    assert cf.decode(np.frombuffer(swapped, np.uint8).copy(), cf.capture_config(1, 0),
                     np.zeros(spec.NSTATE, np.int64), d) == spec.INVALID


def test_cor_seq_is_exact_for_sub_second_integrations(tmp_path):
    """FORMATS §14.9: Bifrost numbered COR integrations in whole seconds (navg // 100):
    half-second integrations collided."""
    f = formats.get("cor_4", "write")
    navg = 50  # 0.5 s
    step = navg * 1_960_000
    data = np.random.default_rng(27).integers(0, 256, (6, 3, 128), dtype=np.uint8)
    blob = batch.encode_packets(f, batch.headerinfo(nsrc=3, chan0=5, decimation=navg, tuning=0x10101),
                                step * 400, step, 0, 1, data)
    cap, statuses, seqs = read_file(tmp_path, blob, "cor_4", 3, src0=1)
    assert cap.stats["nvalid"] == 18 and cap.stats["nduplicate"] == 0
    assert cap.sequence_history[0]["seq0"] == 400 and rows(seqs[0], 3).shape[0] == 6


def test_drx8_capture_accepts_8224_byte_frames(tmp_path):
    """FORMATS §14.2: Bifrost checked drx8 frames against 4128 bytes: nothing captured."""
    blob, data = _drx_blob("drx8", 8)
    assert len(blob) == 8 * 4 * 8224
    cap, _, seqs = read_file(tmp_path, blob, "drx8", 4)
    assert cap.stats["nvalid"] == 32 and cap.stats["ninvalid"] == 0
    assert rows(seqs[0], 4, 8192).shape[0] == 8


def test_chips_reader_record_size(tmp_path):
    """FORMATS §14.3: DiskReader('chips_N') read 16 + 4N bytes per record, not 16 + 32N."""
    assert formats.get("chips_132", "disk").params.record_size == 16 + 32 * 132
    data, pk = chips(8, 2, seed=20)
    cap, _, seqs = read_file(tmp_path, b"".join(pk[(t, s)] for t in range(8) for s in range(2)), FMT, 2)
    assert cap.stats["nvalid"] == 16 and cap.stats["ninvalid"] == 0
    assert all(np.array_equal(rows(seqs[0], 2)[t], slot_of(data[t])) for t in range(8))


def test_drx_blank_out_stays_in_gulp(tmp_path):
    """FORMATS §14.4: Bifrost's DRX blank-out walked a triangular pointer sequence and
    wrote past the gulp.  Missing DRX packets are zeroed in their own slot only."""
    drop = {(1, 0), (2, 3), (3, 1), (3, 2), (6, 0)}
    blob, data = _drx_blob("drx", 12, drop=drop, seed=21)
    cap, _, seqs = read_file(tmp_path, blob, "drx", 4)
    r = rows(seqs[0], 4, 4096).reshape(-1, 4096, 4)  # [time][sample][src] (ci4: 1 byte)
    assert r.shape[0] == 12
    for t in range(12):
        for s in range(4):
            want = 0 if (t, s) in drop else data[t, s]
            assert np.array_equal(r[t, :, s], np.broadcast_to(want, 4096)), (t, s)
    assert cap.stats["nmissing_bytes"] == len(drop) * 4096


@pytest.mark.parametrize("fmt,field,value", [
    ("drx", "decimation", 0), ("drx8", "decimation", 0), ("pbeam", "navg", 0),
    ("cor", "navg", 0), ("snap2", "nchan", 0), ("snap2", "npol", 0),
])
def test_division_by_zero_fields_are_invalid(fmt, field, value):
    """FORMATS §14.5: zero decimation/navg/nserver/npol/nchan divided by zero in Bifrost.
    (COR navg < 100 is not invalid in asbru: its seq is computed exactly, FORMATS §14.9.)"""
    fz = _fuzz_module()
    cf, tpl, lens, p = fz.templates(fmt)
    ff = fz.FUZZ_FORMATS[fmt]
    fields = {f.name: f for f in cf.header.fields}
    f = fields[field]
    raw = bytearray(tpl[-1, :lens[-1]].tobytes())
    raw[f.offset:f.offset + f.nbytes] = value.to_bytes(f.nbytes, "little" if f.wire.endswith("le") else "big")
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    r = cf.decode(np.frombuffer(bytes(raw), np.uint8).copy(), cf.capture_config(ff.nsrc, ff.src0),
                  np.zeros(spec.NSTATE, np.int64), d)
    assert r == spec.INVALID


def test_pbeam_navg_above_255_no_spurious_change(tmp_path):
    """FORMATS §14.7: Bifrost kept navg in 8 bits: navg > 255 flip-flopped the sequence."""
    f = formats.get("pbeam1_4", "write")
    navg = 1000
    data = np.random.default_rng(22).integers(0, 256, (10, 2, 64), dtype=np.uint8)
    blob = batch.encode_packets(f, batch.headerinfo(nsrc=2, nchan=4, chan0=50, decimation=navg),
                                navg * 7, navg, 0, 1, data)
    cap, statuses, seqs = read_file(tmp_path, blob, "pbeam_4", 2, src0=1)
    assert 3 not in statuses and len(seqs) == 1
    assert cap.stats["nvalid"] == 20


def test_vdif_time_tag_dimension(tmp_path):
    """FORMATS §14.10: Bifrost's VDIF time tag was seq * sample_rate (no unit) and the frame
    length was not checked.  asbru: samples since the reference epoch."""
    f = formats.get("vdif_1056", "write")
    fps = 4
    info = batch.headerinfo(decimation=fps, tuning=(10 << 16) | (8 << 8) | 1, nchan=1, gain=7)
    blob = b""
    for k in range(3 * fps):
        blob += batch.encode_packets(f, info, 100 * fps + k, 0, 0, 0, np.full((1, 1, 1024), k, np.uint8))
    seen = []
    cb = PacketCaptureCallback()
    cb.set_vdif(lambda *a: seen.append(a) or None)
    cap, _, seqs = read_file(tmp_path, blob, "vdif_1056", 1, cb=cb)
    assert cap.stats["nvalid"] == 3 * fps
    seq0, time_tag, _epoch, sample_rate = seen[0][:4]
    spf = 1024 // 2  # 8-bit complex, one channel: 2 bytes per sample
    assert sample_rate == fps * spf
    assert time_tag == seq0 * spf and time_tag != seq0 * sample_rate
    assert seqs[0].time_tag == time_tag
    # a frame whose length field disagrees with the packet is invalid
    buf, off, ln = batch.split_records(blob, 1056)
    bad = bytearray(blob[:1056])
    bad[8] ^= 0x01  # frame length in units of 8 bytes, low bit flipped
    desc, status = batch.decode_buffer(formats.get("vdif"), np.frombuffer(bytes(bad), np.uint8).copy(),
                                       np.zeros(1, np.int64), np.array([1056]), 1)
    assert status[0] == spec.INVALID


def test_tbn_first_frame_kept(tmp_path):
    """FORMATS §14.11: Bifrost dropped the first frame of every input while learning the
    decimation (and masked the input id to 10 bits)."""
    f = formats.get("tbn", "write")
    step = 512 * 1960
    data = np.random.default_rng(23).integers(0, 256, (6, 2, 1024), dtype=np.uint8)
    blob = b""
    for t in range(6):
        blob += batch.encode_packets(f, batch.headerinfo(tuning=1000, gain=3), step * (50 + t), 0,
                                     1200, 1, data[t:t + 1])  # inputs 1201, 1202 (> 1023)
    cap, _, seqs = read_file(tmp_path, blob, "tbn", 2, src0=1200)
    assert cap.stats["nvalid"] == 12 and cap.sequence_history[0]["seq0"] == 50
    r = rows(seqs[0], 2, 1024).reshape(6, 512, 2, 2)
    assert np.array_equal(r[0, :, 0].ravel(), data[0, 0])


def test_simple_accepts_more_than_one_source(tmp_path):
    """FORMATS §14.14: Bifrost's simple format forced nsrc = 1."""
    f = formats.get("simple", "write")
    data = np.random.default_rng(24).integers(0, 256, (4, 1, 8192), dtype=np.uint8)
    blob = batch.encode_packets(f, batch.headerinfo(), 10, 1, 0, 1, data)
    cap, _, seqs = read_file(tmp_path, blob, "simple", 1)
    assert cap.stats["nvalid"] == 4


def test_vbeam_format_string_parses():
    """FORMATS §14.15: Bifrost's vbeam_N string parsing was broken."""
    f = formats.get("vbeam_4", "write")
    assert f.params.extra.get("nchan", 4) == 4 or f.params.payload_size


@pytest.mark.parametrize("fmt", ["chips", "ibeam", "pbeam", "snap2"])
def test_short_packet_is_invalid(fmt):
    """FORMATS §14.18: a packet shorter than its header's channel count made Bifrost copy
    stale bytes; asbru rejects it."""
    fz = _fuzz_module()
    cf, tpl, lens, p = fz.templates(fmt)
    ff = fz.FUZZ_FORMATS[fmt]
    raw = tpl[-1, :lens[-1] - 8].copy()
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    r = cf.decode(raw, cf.capture_config(ff.nsrc, ff.src0), np.zeros(spec.NSTATE, np.int64), d)
    assert r == spec.INVALID or d[spec.PAYLOAD_SIZE] != p
