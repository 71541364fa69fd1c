"""The capture engine's accounting and placement, driven through DiskReader with crafted
chips files (deterministic packet order): gaps, reordering, duplicates, late packets,
garbage, sequence changes, forward/backward jumps, flush, seek, bounded work."""
from __future__ import annotations

import os

import numpy as np
import pytest

from asbru.capture.testing import RingCollector, run_capture
from asbru.errors import AsbruError
from asbru.packet_capture import DiskReader, PacketCaptureCallback
from asbru.ring import Ring

from helpers.chips import FMT, NCHAN, P, RS, chips_stream, in_order, slot_of


def capture_file(tmp_path, packets, nsrc, n=4, cb=None, ring_bytes=None, calls=None, **kw):
    path = tmp_path / "stream.dat"
    path.write_bytes(b"".join(packets))
    ring = Ring(name=f"eng_{tmp_path.name}")
    # room for everything unless a test wants the ring to wrap: the reader thread may
    # open the first sequence late, and only then does its guarantee hold the writer back
    ring.resize(4096, ring_bytes or 4 * sum(len(p) for p in packets))
    with open(path, "rb") as f:
        cap = DiskReader(FMT, f, ring, nsrc, 0, n, n, cb, **kw)
        col = RingCollector(ring, n * nsrc * P)
        if calls is None:
            statuses = run_capture(cap)
        else:
            statuses = [int(cap.recv()) for _ in range(calls)]
        cap.end()
        seqs = col.join()
    return cap, statuses, seqs


def slots(seq, nsrc, check_overwritten=True):
    if check_overwritten:
        assert seq.overwritten == 0
    return seq.data.reshape(-1, nsrc * P)


def test_clean_stream(tmp_path):
    nsrc, ntime = 3, 40
    data, pk = chips_stream(ntime, nsrc)
    cap, statuses, seqs = capture_file(tmp_path, in_order(pk, ntime, nsrc), nsrc)
    assert statuses == [0] + [2] * 9 + [1]  # STARTED, a gulp per call, ENDED at EOF
    assert len(seqs) == 1
    ring = slots(seqs[0], nsrc)
    assert ring.shape[0] == ntime
    for t in range(ntime):
        assert np.array_equal(ring[t], slot_of(data[t]))
    assert seqs[0].flags.shape == (ntime, nsrc) and seqs[0].flags.all()
    assert seqs[0].time_tag == 1000  # pointer family, no callback: seq0 (header seq - 1)
    st = cap.stats
    assert (st["nvalid"], st["ninvalid"], st["nlate"], st["nduplicate"]) == (120, 0, 0, 0)
    assert st["nvalid_bytes"] == st["ngood_bytes"] == 120 * P
    assert st["nmissing_bytes"] == 0
    assert list(st["per_source"]["valid"]) == [40, 40, 40]


def test_gaps_are_zero_and_flagged_even_after_the_ring_wraps(tmp_path):
    nsrc, ntime = 3, 40
    _, pk_a = chips_stream(ntime, nsrc, seed=99)               # fills the ring first
    data, pk = chips_stream(ntime, nsrc, seq1=1_000_001, seed=1)  # then reuses its memory
    dropped = {(5, 1), (33, 0), (33, 1), (33, 2), (37, 1), (39, 2)}
    packets = in_order(pk_a, ntime, nsrc)
    packets += [pk[(t, s)] for t in range(ntime) for s in range(nsrc) if (t, s) not in dropped]
    # a ring of 8 gulps for 2 x 10 gulps of data: stale bytes would show
    cap, statuses, seqs = capture_file(tmp_path, packets, nsrc, ring_bytes=4 * nsrc * RS * 8)
    assert len(seqs) == 2 and cap.ring.total_span < 2 * ntime * nsrc * P
    ring = slots(seqs[1], nsrc)
    flags = seqs[1].flags
    assert ring.shape[0] == ntime  # t=39 still has sources 0 and 1
    for t in range(ntime):
        expect = slot_of(data[t]).reshape(NCHAN, nsrc, 32).copy()
        for s in range(nsrc):
            received = (t, s) not in dropped
            assert flags[t, s] == received
            if not received:
                expect[:, s, :] = 0
        assert np.array_equal(ring[t], expect.ravel()), t
    st = cap.stats
    assert st["nvalid"] == 2 * ntime * nsrc - len(dropped)
    assert st["nmissing_bytes"] == len(dropped) * P
    assert st["ngood_bytes"] == st["nvalid_bytes"]
    assert list(st["per_source"]["missing"]) == [1, 3, 2]


@pytest.mark.parametrize("nsrc", [4, 16])
@pytest.mark.parametrize("read_records", [None, 5])
def test_whole_time_slots_placed_at_once_equal_one_by_one(tmp_path, nsrc, read_records):
    """CHIPS places a time slot whose nsrc packets are received together with place_row
    (streaming stores); slots with a packet missing, duplicated, reordered or split over two
    reads go through place() one by one: the ring must not tell the difference."""
    ntime = 48
    data, pk = chips_stream(ntime, nsrc, seed=40 + nsrc)
    dropped = {(7, 1), (20, nsrc - 1), (21, 0)}
    packets = []
    ndup = 0
    for t in range(ntime):
        row = [pk[(t, s)] for s in range(nsrc) if (t, s) not in dropped]
        if t == 11:
            row.reverse()                                    # complete, in reverse order
        if t == 15:
            bad = bytearray(pk[(t, 2)])
            bad[16:] = bytes(P)                              # a corrupt copy after the original
            row.insert(3, bytes(bad))
            ndup += 1
        if t == 30:
            row.insert(nsrc // 2, pk[(t - 1, 0)])            # one of the previous slot, again
            ndup += 1
        packets += row
    kw = {} if read_records is None else {"read_size": read_records * RS}
    cap, statuses, seqs = capture_file(tmp_path, packets, nsrc, n=4,
                                       ring_bytes=4 * nsrc * RS * 8, **kw)
    assert len(seqs) == 1
    ring = slots(seqs[0], nsrc)
    assert ring.shape[0] == ntime
    for t in range(ntime):
        expect = slot_of(data[t]).reshape(NCHAN, nsrc, 32).copy()
        for s in range(nsrc):
            if (t, s) in dropped:
                expect[:, s, :] = 0
            assert seqs[0].flags[t, s] == ((t, s) not in dropped)
        assert np.array_equal(ring[t], expect.ravel()), t
    st = cap.stats
    assert st["nvalid"] == ntime * nsrc - len(dropped)
    assert st["nduplicate"] == ndup and st["nlate"] == 0 and st["ninvalid"] == 0
    assert st["nmissing_bytes"] == len(dropped) * P and st["ngood_bytes"] == st["nvalid_bytes"]


def test_reordering_within_the_window_loses_nothing(tmp_path):
    nsrc, ntime = 2, 24
    data, pk = chips_stream(ntime, nsrc, seed=2)
    order = []
    for t in range(0, ntime, 2):  # time t+1 before t, sources reversed
        order += [pk[(t + 1, 1)], pk[(t, 1)], pk[(t + 1, 0)], pk[(t, 0)]]
    cap, statuses, seqs = capture_file(tmp_path, order, nsrc)
    assert len(seqs) == 1 and cap.sequence_history[0]["seq0"] == 1000
    ring = slots(seqs[0], nsrc)
    assert ring.shape[0] == ntime
    for t in range(ntime):
        assert np.array_equal(ring[t], slot_of(data[t]))
    st = cap.stats
    assert (st["nvalid"], st["nlate"], st["nduplicate"], st["nmissing_bytes"]) == (48, 0, 0, 0)


def test_duplicates_late_and_garbage_are_counted_once_each(tmp_path):
    nsrc, ntime, n = 3, 32, 4
    data, pk = chips_stream(ntime, nsrc, seed=3)
    packets = in_order(pk, ntime, nsrc)
    bad_src = bytearray(pk[(10, 0)]); bad_src[0] = 99          # roach 99: no such source
    zero_seq = bytearray(pk[(11, 0)]); zero_seq[8:16] = bytes(8)  # header seq 0: invalid
    noise = np.random.default_rng(9).integers(0, 256, RS, dtype=np.uint8).tobytes()
    noise = bytes([200]) + noise[1:]                            # roach 200: invalid
    corrupt_dup = bytearray(pk[(12, 1)]); corrupt_dup[16:] = bytes(P)  # same slot, other bytes
    i = 13 * nsrc  # insert after time 12
    packets[i:i] = [pk[(12, 2)], bytes(bad_src), bytes(zero_seq), noise, bytes(corrupt_dup)]
    packets.append(pk[(0, 1)])  # far behind: late
    packets.append(pk[(29, 0)])  # one more copy of a committed-window packet
    cap, statuses, seqs = capture_file(tmp_path, packets, nsrc, n=n)
    ring = slots(seqs[0], nsrc)
    for t in range(ntime):
        assert np.array_equal(ring[t], slot_of(data[t])), t  # duplicates never overwrite
    st = cap.stats
    assert st["ninvalid"] == 3 and st["ninvalid_bytes"] == 3 * RS
    assert st["nduplicate"] == 2 + (st["nlate"] == 1)  # (29,0) is a dup if its gulp is open
    assert st["nlate"] + st["nduplicate"] == 4 - 0 and st["nlate"] >= 1
    assert st["nvalid"] == ntime * nsrc
    assert st["nvalid"] + st["ninvalid"] + st["nlate"] + st["nduplicate"] == len(packets)
    assert st["per_source"]["late"][1] >= 1
    assert st["nduplicate_bytes"] == st["nduplicate"] * P and st["nlate_bytes"] == st["nlate"] * P


def test_sequence_change_closes_old_sequence_with_its_own_data(tmp_path):
    nsrc, ntime, tc = 2, 40, 22
    d1, pk1 = chips_stream(ntime, nsrc, chan0=100, seed=4)
    d2, pk2 = chips_stream(ntime, nsrc, chan0=200, seed=5)
    packets = [pk1[(t, s)] for t in range(tc) for s in range(nsrc)]
    packets += [pk2[(t, s)] for t in range(tc, ntime) for s in range(nsrc)]
    seen = []

    def cb(seq0, chan0, nchan, nsrc_):
        seen.append((seq0, chan0, nchan, nsrc_))
        return (5000 + seq0, {"chan0": chan0})

    pcc = PacketCaptureCallback()
    pcc.set_chips(cb)
    cap, statuses, seqs = capture_file(tmp_path, packets, nsrc, cb=pcc)
    assert statuses.count(3) == 1 and statuses[0] == 0 and statuses[-1] == 1
    assert seen == [(1000, 100, NCHAN, nsrc), (1000 + tc, 200, NCHAN, nsrc)]
    assert [s.time_tag for s in seqs] == [6000, 6000 + tc]
    assert [s.header for s in seqs] == [b'{"chan0": 100}', b'{"chan0": 200}']
    a, b = slots(seqs[0], nsrc), slots(seqs[1], nsrc)
    assert a.shape[0] == tc and b.shape[0] == ntime - tc
    for t in range(tc):
        assert np.array_equal(a[t], slot_of(d1[t]))
    for t in range(tc, ntime):
        assert np.array_equal(b[t - tc], slot_of(d2[t]))
    assert seqs[0].flags.all() and seqs[1].flags.all()
    assert cap.stats["nmissing_bytes"] == 0 and cap.stats["nvalid"] == ntime * nsrc


def test_small_forward_gap_is_zero_filled_big_jump_restarts(tmp_path):
    nsrc, n = 2, 4
    d, pk = chips_stream(48, nsrc, seed=6)
    _, pkfar = chips_stream(48, nsrc, seq1=1001 + 1_000_000, seed=6)
    # t 0..11, skip 12..19 (two gulps), 20..27, then jump a million ahead
    packets = [pk[(t, s)] for t in list(range(12)) + list(range(20, 28)) for s in range(nsrc)]
    packets += [pkfar[(t, s)] for t in range(28, 40) for s in range(nsrc)]
    cap, statuses, seqs = capture_file(tmp_path, packets, nsrc, n=n)
    assert len(seqs) == 2 and cap.stats["nrestarts"] == 1
    first = slots(seqs[0], nsrc)
    assert first.shape[0] == 28
    assert not first[12:20].any() and not seqs[0].flags[12:20].any()
    for t in list(range(12)) + list(range(20, 28)):
        assert np.array_equal(first[t], slot_of(d[t]))
    second = slots(seqs[1], nsrc)
    assert cap.sequence_history[1]["seq0"] == 1000 + 1_000_000 + 28
    assert second.shape[0] == 12
    assert statuses.count(0) == 2 and statuses[-1] == 1
    assert cap.stats["nvalid"] == len(packets) and cap.stats["nlate"] == 0


def test_backward_jump_restarts(tmp_path):
    nsrc, n = 3, 4
    d, pk = chips_stream(32, nsrc, seq1=100_001, seed=7)
    d2, pk2 = chips_stream(32, nsrc, seq1=1, seed=8)
    packets = in_order(pk, 32, nsrc) + in_order(pk2, 32, nsrc)
    cap, statuses, seqs = capture_file(tmp_path, packets, nsrc, n=n)
    assert len(seqs) == 2 and cap.stats["nrestarts"] == 1
    # the first n*nsrc packets of the restarted stream are what proves the jump: late
    lost = n * nsrc
    assert cap.stats["nlate"] == lost
    assert cap.sequence_history[1]["seq0"] == lost // nsrc
    second = slots(seqs[1], nsrc)
    for k in range(second.shape[0]):
        assert np.array_equal(second[k], slot_of(d2[lost // nsrc + k]))
    assert cap.stats["nvalid"] + cap.stats["nlate"] == len(packets)


def test_flush_commits_and_next_packet_starts_a_new_sequence(tmp_path):
    nsrc, ntime, n = 2, 40, 4
    data, pk = chips_stream(ntime, nsrc, seed=10)
    path = tmp_path / "s.dat"
    path.write_bytes(b"".join(in_order(pk, ntime, nsrc)))
    ring = Ring(name="flush")
    ring.resize(4096, 1 << 20)
    pcc = PacketCaptureCallback()
    tags = iter(range(10, 100))
    pcc.set_chips(lambda seq0, chan0, nchan, ns: (next(tags), None))
    with open(path, "rb") as f:
        cap = DiskReader(FMT, f, ring, nsrc, 0, n, n, pcc, read_size=12 * RS)
        col = RingCollector(ring, n * nsrc * P)
        first = [int(cap.recv()) for _ in range(3)]
        cap.flush()
        rest = run_capture(cap)
        cap.end()
        seqs = col.join()
    assert first == [0, 2, 2] and rest[0] == 0 and rest[-1] == 1
    assert len(seqs) == 2
    a, b = slots(seqs[0], nsrc), slots(seqs[1], nsrc)
    seq0b = cap.sequence_history[1]["seq0"] - 1000
    # together the two sequences hold every frame exactly once
    assert a.shape[0] == seq0b and a.shape[0] + b.shape[0] == ntime
    for t in range(ntime):
        got = a[t] if t < seq0b else b[t - seq0b]
        assert np.array_equal(got, slot_of(data[t]))
    assert cap.stats["nmissing_bytes"] == 0 and cap.stats["nvalid"] == ntime * nsrc


def test_seek_and_tell(tmp_path):
    nsrc, ntime, n = 2, 16, 4
    data, pk = chips_stream(ntime, nsrc, seed=11)
    path = tmp_path / "s.dat"
    path.write_bytes(b"".join(in_order(pk, ntime, nsrc)))
    ring = Ring(name="seek")
    ring.resize(4096, 1 << 20)
    pcc = PacketCaptureCallback()
    tags = iter(range(1, 100))
    pcc.set_chips(lambda seq0, chan0, nchan, ns: (next(tags), None))
    with open(path, "rb") as f:
        f.seek(4 * nsrc * RS)  # DiskReader starts at fh.tell()
        cap = DiskReader(FMT, f, ring, nsrc, 0, n, n, pcc)
        assert cap.tell() == 4 * nsrc * RS
        col = RingCollector(ring, n * nsrc * P)
        s1 = run_capture(cap)
        assert cap.tell() == ntime * nsrc * RS
        assert cap.seek(0, os.SEEK_SET) == 0 and cap.tell() == 0
        s2 = run_capture(cap)
        cap.end()
        seqs = col.join()
    assert s1[0] == 0 and s1[-1] == 1 and s2[0] == 0 and s2[-1] == 1
    assert [h["seq0"] for h in cap.sequence_history] == [1004, 1000]
    a, b = slots(seqs[0], nsrc), slots(seqs[1], nsrc)
    assert a.shape[0] == ntime - 4 and b.shape[0] == ntime
    for t in range(ntime):
        assert np.array_equal(b[t], slot_of(data[t]))


def test_seek_back_replays_the_file_as_a_new_sequence(tmp_path):
    """Reading the file again after seek(0) starts a new sequence with the same seq0 and the
    same default time tag (Bifrost's ring refused a repeated time tag)."""
    nsrc = 1
    data, pk = chips_stream(8, nsrc, seed=12)
    path = tmp_path / "s.dat"
    path.write_bytes(b"".join(in_order(pk, 8, nsrc)))
    ring = Ring(name="dup_tt")
    ring.resize(4096, 1 << 20)
    with open(path, "rb") as f:
        cap = DiskReader(FMT, f, ring, nsrc, 0, 4, 4, None)
        first = run_capture(cap)
        cap.seek(0, os.SEEK_SET)
        second = run_capture(cap)
        cap.end()
    assert first[0] == 0 and second[0] == 0  # STARTED both times
    assert cap.stats["nvalid"] == 16 and cap.stats["nsequences"] == 2
    seqs = [(s.time_tag, s.size) for s in ring.read(guarantee=False)]
    assert len(seqs) == 2 and seqs[0] == seqs[1]


def test_only_late_packets_return_within_the_work_bound(tmp_path):
    nsrc, n = 1, 4
    data, pk = chips_stream(12, nsrc, seed=13)
    packets = in_order(pk, 12, nsrc) + [pk[(1, 0)]] * 5000  # late, by < 2 gulps
    cap, statuses, seqs = capture_file(tmp_path, packets, nsrc, n=n, budget=100)
    assert statuses[0] == 0 and statuses[-1] == 1
    assert statuses.count(2) >= 5000 // 100  # returned (CONTINUED) every ~100 packets
    assert cap.stats["nlate"] == 5000 and cap.stats["nrestarts"] == 0
    assert slots(seqs[0], nsrc).shape[0] == 12


def test_garbage_only_returns_no_data(tmp_path):
    noise = [bytes([250]) + bytes(RS - 1)] * 3000
    # each recv() gives up after 500 packets (CONTINUED: the file goes on); NO_DATA only at
    # the end of the file
    cap, statuses, seqs = capture_file(tmp_path, noise, 2, budget=500, calls=7)
    assert statuses == [2] * 6 + [4]
    assert cap.stats["ninvalid"] == 3000 and seqs == []


def test_end_places_everything_already_received(tmp_path):
    nsrc, ntime = 2, 24
    data, pk = chips_stream(ntime, nsrc, seed=14)
    # the whole file is read by the first receive; end() after two calls must still place it
    cap, statuses, seqs = capture_file(tmp_path, in_order(pk, ntime, nsrc), nsrc, calls=2)
    assert statuses == [0, 2]
    st = cap.stats
    assert st["nreceived"] == ntime * nsrc == st["nvalid"]
    got = slots(seqs[0], nsrc)
    assert got.shape[0] == ntime
    assert all(np.array_equal(got[t], slot_of(data[t])) for t in range(ntime))


@pytest.mark.parametrize("nsrc", [1, 2, 3])
def test_one_corrupt_header_does_not_split_the_stream(tmp_path, nsrc):
    ntime = 40
    data, pk = chips_stream(ntime, nsrc, seed=15)
    packets = in_order(pk, ntime, nsrc)
    bad = bytearray(pk[(17, 0)]); bad[6:8] = (999).to_bytes(2, "big")  # chan0 bit errors
    packets.insert(17 * nsrc + 1, bytes(bad))
    cap, statuses, seqs = capture_file(tmp_path, packets, nsrc)
    assert 3 not in statuses and len(seqs) == 1  # the majority of the next packets says no
    got = slots(seqs[0], nsrc)
    assert got.shape[0] == ntime and seqs[0].flags.all()
    assert all(np.array_equal(got[t], slot_of(data[t])) for t in range(ntime))
    st = cap.stats
    assert (st["nvalid"], st["ninvalid"], st["nlate"], st["nduplicate"]) == (ntime * nsrc, 1, 0, 0)


def test_change_with_reordered_old_packets(tmp_path):
    # the first packets of the new configuration arrive before the last old ones
    nsrc, ntime, tc = 2, 32, 16
    d1, pk1 = chips_stream(ntime, nsrc, chan0=100, seed=16)
    d2, pk2 = chips_stream(ntime, nsrc, chan0=300, seed=17)
    packets = [pk1[(t, s)] for t in range(tc - 1) for s in range(nsrc)]
    packets += [pk2[(tc, 0)], pk1[(tc - 1, 0)], pk1[(tc - 1, 1)]]
    packets += [pk2[(t, s)] for t in range(tc, ntime) for s in range(nsrc) if (t, s) != (tc, 0)]
    cap, statuses, seqs = capture_file(tmp_path, packets, nsrc)
    assert statuses.count(3) == 1 and len(seqs) == 2
    a, b = slots(seqs[0], nsrc), slots(seqs[1], nsrc)
    # the old packets that came after the change was seen are counted late (the vote had
    # already closed their sequence); every new-configuration packet is placed
    assert cap.stats["nlate"] == 2 and cap.stats["nvalid"] == ntime * nsrc - 2
    assert a.shape[0] == tc and not a[tc - 1].any() and not seqs[0].flags[tc - 1].any()
    assert all(np.array_equal(a[t], slot_of(d1[t])) for t in range(tc - 1))
    assert b.shape[0] == ntime - tc
    assert all(np.array_equal(b[t - tc], slot_of(d2[t])) for t in range(tc, ntime))


def test_one_far_future_packet_is_a_glitch_not_a_jump(tmp_path):
    nsrc, ntime = 2, 32
    data, pk = chips_stream(ntime, nsrc, seed=18)
    packets = in_order(pk, ntime, nsrc)
    bad = bytearray(pk[(9, 1)]); bad[8:16] = (1 << 62).to_bytes(8, "big")  # seq bit error
    packets.insert(10 * nsrc, bytes(bad))
    cap, statuses, seqs = capture_file(tmp_path, packets, nsrc)
    assert len(seqs) == 1 and cap.stats["nrestarts"] == 0 and statuses.count(0) == 1
    got = slots(seqs[0], nsrc)
    assert got.shape[0] == ntime and all(np.array_equal(got[t], slot_of(data[t])) for t in range(ntime))
    st = cap.stats
    assert (st["nvalid"], st["ninvalid"], st["nlate"], st["nduplicate"]) == (ntime * nsrc, 1, 0, 0)
