"""Issue 13: stream-parameter learning that survives real recordings and damaged streams,
``sample_rate=``, a window one packet cannot move, COR server fields 0, VDIF threads >= 30.

Every test here failed on the code before the fix (the docstrings say how)."""
from __future__ import annotations

import os
import socket
import warnings

import numpy as np
import pytest

from asbru import formats
from asbru.capture.disk import DiskReader
from asbru.capture.testing import RingCollector, free_udp_port, run_capture
from asbru.errors import ArgumentError, CaptureWarning
from asbru.formats import batch
from asbru.packet_capture import UDPCapture
from asbru.ring import Ring

from helpers.chips import FMT, P, chips_stream, in_order, slot_of

DECIM = 1960
STEP = 512 * DECIM
T0 = 10**9 // STEP * STEP


def tbn_frames(ntime: int, nsrc: int, t0: int = T0, seed: int = 0):
    """(data[ntime, nsrc, 512, 2] int8, [frame bytes], time-major)."""
    wf = formats.get("tbn", "write")
    data = np.random.default_rng(seed).integers(-128, 128, (ntime, nsrc, 512, 2), dtype=np.int8)
    raw = batch.encode_packets(wf, batch.headerinfo(tuning=1000, gain=3), t0, STEP, 0, 1, data)
    return data, [raw[i * 1048:(i + 1) * 1048] for i in range(ntime * nsrc)]


def tbn_slots(data):
    return data.transpose(0, 2, 1, 3).reshape(data.shape[0], -1).view(np.uint8)


def read(tmp_path, fmt, packets, nsrc, n=4, src0=0, **kw):
    """DiskReader over the concatenated packets -> (stats, sequences, callback seq0s, warnings)."""
    path = tmp_path / "rec.dat"
    path.write_bytes(b"".join(packets))
    ring = Ring(name=f"learn_{tmp_path.name}")
    with open(path, "rb") as fh, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cap = DiskReader(fmt, fh, ring, nsrc, src0, n, n, None, **kw)
        col = RingCollector(ring, 1 << 22)
        run_capture(cap)
        cap.end()
        seqs = col.join(30)
    told = [str(w.message) for w in caught if issubclass(w.category, CaptureWarning)]
    return cap, seqs, told


# --------------------------------------------------------------------- TBN
def test_tbn_early_frame_as_second_record(tmp_path):
    """Before: nvalid 0, ninvalid 801 (the early frame moved the learner, the hold filled)."""
    nsrc, ntime = 4, 200
    data, pk = tbn_frames(ntime, nsrc)
    _, early = tbn_frames(1, 1, t0=T0 + 16 * STEP, seed=99)
    cap, seqs, told = read(tmp_path, "tbn", [pk[0]] + early + pk[1:], nsrc)
    st = cap.stats
    assert (st["nvalid"], st["ninvalid"], st["nlate"], st["nsequences"]) == (800, 1, 0, 1)
    assert np.array_equal(seqs[0].data.reshape(ntime, -1), tbn_slots(data)) and not told


def _send_all(port, packets):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in packets:
            s.sendto(p, ("127.0.0.1", port))


def test_tbn_early_frame_over_udp():
    """Before: a steady stream with such a frame never started a sequence while it flowed."""
    nsrc, ntime = 4, 60
    data, pk = tbn_frames(ntime, nsrc)
    _, early = tbn_frames(1, 1, t0=T0 + 16 * STEP, seed=99)
    port = free_udp_port()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(0.5)
    ring = Ring(name=f"learn_udp_{port}")
    cap = UDPCapture("tbn", sock, ring, nsrc, 0, 9000, 4, 4, None)
    col = RingCollector(ring, 1 << 22)
    _send_all(port, [pk[0]] + early + pk[1:])
    statuses = run_capture(cap)
    cap.end()
    seqs = col.join(30)
    sock.close()
    st = cap.stats
    assert statuses[0] == 0 and (st["nvalid"], st["ninvalid"], st["nsequences"]) == (240, 1, 1)
    assert np.array_equal(seqs[0].data.reshape(ntime, -1), tbn_slots(data))


@pytest.mark.parametrize("bit", [3, 9, 12, 40])
def test_tbn_one_bit_flip_in_a_time_tag(tmp_path, bit):
    """Before: the gcd rule adopted a wrong decimation (301 one-frame sequences) or frames
    were lost as late.  Now the flipped frame is one invalid (or late) frame."""
    nsrc, ntime = 4, 100
    data, pk = tbn_frames(ntime, nsrc)
    bad = bytearray(pk[5])
    t = int.from_bytes(bad[16:24], "big") ^ (1 << bit)
    bad[16:24] = t.to_bytes(8, "big")
    pk[5] = bytes(bad)
    cap, seqs, _ = read(tmp_path, "tbn", pk, nsrc)
    st = cap.stats
    assert st["nsequences"] == 1 and st["nvalid"] == 399
    assert st["ninvalid"] + st["nlate"] + st["nduplicate"] == 1
    assert cap.sequence_history[0]["seq0"] == T0 // STEP
    ring = seqs[0].data.reshape(-1, 512, nsrc, 2)
    expect = tbn_slots(data).reshape(-1, 512, nsrc, 2)
    assert np.array_equal(ring[:ntime, :, [0, 2, 3]], expect[:, :, [0, 2, 3]])


def test_tbn_recording_of_two_frame_times(tmp_path):
    """Before: nvalid 0.  Two frame times are enough (as in the LWA Software Library)."""
    nsrc = 10
    data, pk = tbn_frames(2, nsrc)
    calls = []
    from asbru.capture.callbacks import PacketCaptureCallback
    cb = PacketCaptureCallback()
    cb.set_tbn(lambda *a: calls.append(a[:5]) or 0)
    path = tmp_path / "two.tbn"
    path.write_bytes(b"".join(pk))
    ring = Ring(name=f"learn2_{tmp_path.name}")
    with open(path, "rb") as fh:
        cap = DiskReader("tbn", fh, ring, nsrc, 0, 4, 4, cb)
        col = RingCollector(ring, 1 << 22)
        run_capture(cap)
        cap.end()
        seqs = col.join(30)
    assert cap.stats["nvalid"] == 20 and cap.stats["ninvalid"] == 0
    assert calls == [(T0 // STEP, T0, DECIM, 1000, nsrc)]
    assert np.array_equal(seqs[0].data.reshape(2, -1), tbn_slots(data))


def test_tbn_one_frame_time_says_why_and_sample_rate_reads_it(tmp_path):
    """Nothing to learn from: a warning naming sample_rate and stats['nunlearned'];
    with sample_rate= every frame is placed and nothing is held."""
    nsrc = 4
    data, pk = tbn_frames(1, nsrc)
    cap, seqs, told = read(tmp_path, "tbn", pk, nsrc)
    assert cap.stats["nvalid"] == 0 and cap.stats["nunlearned"] == 4 == cap.stats["ninvalid"]
    assert len(told) == 1 and "sample_rate" in told[0] and "\n" not in told[0]
    cap, seqs, told = read(tmp_path, "tbn", pk, nsrc, sample_rate=100_000)
    assert cap.stats["nvalid"] == 4 and not told
    assert np.array_equal(seqs[0].data.reshape(1, -1), tbn_slots(data))


# --------------------------------------------------------------------- VDIF
def vdif_frames(order, fps=100, payload=64, edv3_rate_khz=None, nbit=8):
    """One frame per (second, frame, thread): real samples, 1 channel."""
    f = formats.get(f"vdif_{32 + payload}", "write")
    info = batch.headerinfo(decimation=fps, tuning=(10 << 16) | (nbit << 8) | 0, nchan=1, gain=7)
    out = []
    for sec, frame, thread in order:
        data = np.full((1, 1, payload), (sec * 7 + frame * 3 + thread) & 0xFF, dtype=np.uint8)
        b = bytearray(batch.encode_packets(f, info, sec * fps + frame, 0, thread, 0, data))
        if edv3_rate_khz is not None:  # EDV 3: word 4 = edv << 24 | unit kHz | rate; word 5 sync
            b[16:20] = ((3 << 24) | (edv3_rate_khz // 2)).to_bytes(4, "little")
            b[20:24] = (0xACABFEED).to_bytes(4, "little")
        out.append(bytes(b))
    return out


SPF = 64  # 64 payload bytes of 8-bit real samples, one channel


def test_vdif_shorter_than_a_second_needs_sample_rate(tmp_path):
    """Before: nvalid 0 and silence; now a warning naming sample_rate, and sample_rate=
    reads it (4 threads x 10 frames of one second)."""
    order = [(500, f, t) for f in range(10) for t in range(4)]
    pk = vdif_frames(order)
    cap, seqs, told = read(tmp_path, "vdif_96", pk, 4)
    assert cap.stats["nvalid"] == 0 and cap.stats["nunlearned"] == 40
    assert len(told) == 1 and "sample_rate" in told[0]
    cap, seqs, told = read(tmp_path, "vdif_96", pk, 4, sample_rate=100 * SPF)
    assert cap.stats["nvalid"] == 40 and cap.stats["nunlearned"] == 0 and not told
    assert seqs[0].time_tag == 500 * 100 * SPF
    ring = seqs[0].data.reshape(10, 4, 64)
    assert all((ring[f, t] == ((500 * 7 + f * 3 + t) & 0xFF)).all() for f in range(10) for t in range(4))


def test_vdif_edv3_sample_rate(tmp_path):
    """Before: the EDV 3 rate was ignored (nvalid 0 for a short recording)."""
    order = [(500, f, t) for f in range(10) for t in range(2)]
    pk = vdif_frames(order, edv3_rate_khz=128)  # 128 kHz real = 2000 frames/s of 64 samples
    cap, seqs, told = read(tmp_path, "vdif_96", pk, 2)
    assert cap.stats["nvalid"] == 20 and not told
    assert seqs[0].time_tag == (500 * 2000) * SPF


def test_vdif_threads_40_to_43_with_src0_0(tmp_path):
    """Before: threads >= src0 + 30 were never learnt: the whole stream was dropped."""
    order = [(s, f, t) for s in (7, 8, 9) for f in range(4) for t in range(40, 44)]
    pk = vdif_frames(order, fps=4)
    cap, seqs, _ = read(tmp_path, "vdif_96", pk, 44)
    assert cap.stats["nvalid"] == 48 and cap.stats["ninvalid"] == 0


@pytest.mark.parametrize("gulp", [1, 2, 3])
def test_vdif_learnt_over_many_short_gulps_starts_at_the_first_frame(tmp_path, gulp):
    """Before: the frames held while the rate was learnt spanned more gulps than the window,
    no seq had a quarter of them within a gulp, and the sequence began at their median: with
    gulps of 2 frames, 10 of the first 24 frames of a clean stream were counted late."""
    fps = 16
    frames = [(s, f) for s in (7, 8, 9) for f in range(fps)]
    pk = vdif_frames([(s, f, t) for s, f in frames for t in range(2)], fps=fps)
    path = tmp_path / "rec.dat"
    path.write_bytes(b"".join(pk))
    ring = Ring(name=f"learn_{tmp_path.name}")
    with open(path, "rb") as fh, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cap = DiskReader("vdif_96", fh, ring, 2, 0, gulp, gulp, None)
        col = RingCollector(ring, gulp * 2 * 64)   # a gulp per read: the ring is a few gulps
        run_capture(cap)
        cap.end()
        seqs = col.join(30)
    told = [str(w.message) for w in caught if issubclass(w.category, CaptureWarning)]
    st = cap.stats
    # before: gulp 1 -> 26 late, 11 sequences; gulp 2 -> 20 late, 3 sequences; gulp 3 -> 16 late
    assert (st["nvalid"], st["nlate"], st["ninvalid"], st["nsequences"]) == (2 * len(frames), 0, 0, 1)
    assert cap.sequence_history[0]["time_tag"] == 7 * fps * SPF and not told
    ring = np.concatenate([x.data for x in seqs]).reshape(-1, 2, 64)[:len(frames)]
    assert all((ring[k, t] == ((s * 7 + f * 3 + t) & 0xFF)).all()
               for k, (s, f) in enumerate(frames) for t in range(2))


def test_vdif_one_stray_frame_while_learning(tmp_path):
    """Before: a frame of the next second a quarter into the learning second gave a 4x
    wrong rate.  Now it is one invalid frame at most."""
    order = [(s, f, 0) for s in (7, 8, 9) for f in range(8)]
    pk = vdif_frames(order, fps=8)
    stray = vdif_frames([(8, 1, 0)], fps=8)[0]
    cap, seqs, _ = read(tmp_path, "vdif_96", pk[:2] + [stray] + pk[2:], 1)
    st = cap.stats
    assert st["nvalid"] == 24 and st["nsequences"] == 1
    assert st["nduplicate"] + st["ninvalid"] == 1
    assert cap.sequence_history[0]["time_tag"] == 7 * 8 * SPF


def _baseband_file(name):
    bb = pytest.importorskip("baseband.data", reason="baseband is not installed (pip install baseband)")
    path = os.path.join(os.path.dirname(bb.__file__), name)
    if not os.path.exists(path):
        pytest.skip(f"baseband's sample file {name} is absent")
    return path


def test_baseband_sample_vdif_edv3(tmp_path):
    """baseband's sample.vdif (VLBA, EDV 3, 8 threads, 2 frames each): read by its header's
    sample rate, payloads in the ring as in the file."""
    raw = open(_baseband_file("sample.vdif"), "rb").read()
    frames = [raw[i:i + 5032] for i in range(0, len(raw), 5032)]
    cap, seqs, told = read(tmp_path, "vdif_5032", frames, 8)
    assert cap.stats["nvalid"] == 16 and not told
    ring = seqs[0].data.reshape(-1, 8, 5000)
    for fr in frames:
        w1, w3 = int.from_bytes(fr[4:8], "little"), int.from_bytes(fr[12:16], "little")
        assert ring[w1 & 0xFFFFFF, (w3 >> 16) & 0x3FF].tobytes() == fr[32:]


def test_baseband_sample_mwa_with_sample_rate(tmp_path):
    """baseband's sample_mwa.vdif (EDV 0): shorter than a second, read with sample_rate="""
    raw = open(_baseband_file("sample_mwa.vdif"), "rb").read()
    frames = [raw[i:i + 544] for i in range(0, len(raw), 544)]
    cap, _, told = read(tmp_path, "vdif_544", frames, 1)
    assert cap.stats["nvalid"] == 0 and told
    cap, _, told = read(tmp_path, "vdif_544", frames, 1, sample_rate=1_280_000)
    assert cap.stats["nvalid"] == len(frames) and not told


# --------------------------------------------------------------------- COR
def test_cor_server_fields_zero(tmp_path):
    """Before: every frame INVALID.  Now one server, the same data as with 1/1."""
    nbl, nchan, ntime = 3, 2, 5
    wf = formats.get(f"cor_{nchan}", "write")
    data = np.random.default_rng(1).standard_normal((ntime, nbl, nchan * 4 * 2)).astype(np.float32)
    data = data.view(np.complex64)
    info = batch.headerinfo(nsrc=nbl, chan0=5, decimation=100, tuning=(1 << 8) | 1)
    raw = batch.encode_packets(wf, info, 196_000_000 * 10, 196_000_000, 0, 1, data)
    rs = 32 + 32 * nchan
    good = [raw[i:i + rs] for i in range(0, len(raw), rs)]
    zero = [p[:6] + b"\0\0" + p[8:] for p in good]
    a, sa, _ = read(tmp_path, f"cor_{nchan}", good, nbl, src0=1)
    b, sb, _ = read(tmp_path, f"cor_{nchan}", zero, nbl, src0=1)
    assert b.stats["nvalid"] == a.stats["nvalid"] == ntime * nbl and b.stats["ninvalid"] == 0
    assert np.array_equal(sa[0].data, sb[0].data)


# --------------------------------------------------------------------- the window
def _chips(tmp_path, packets, nsrc, n=4, **kw):
    path = tmp_path / "w.dat"
    path.write_bytes(b"".join(packets))
    ring = Ring(name=f"win_{tmp_path.name}")
    with open(path, "rb") as fh:
        cap = DiskReader(FMT, fh, ring, nsrc, 0, n, n, None, **kw)
        col = RingCollector(ring, 1 << 22)
        run_capture(cap)
        cap.end()
        seqs = col.join(30)
    return cap, seqs


def _with_seq(pkt, seq):
    b = bytearray(pkt)
    b[8:16] = int(seq).to_bytes(8, "big")
    return bytes(b)


@pytest.mark.parametrize("ahead", [2, 3, 4])
def test_one_far_ahead_packet_costs_one_packet(tmp_path, ahead):
    """Before: one packet 2-4 gulps ahead moved the window (~174 of 800 genuine late)."""
    nsrc, ntime, n = 4, 200, 4
    data, pk = chips_stream(ntime, nsrc)
    stream = in_order(pk, ntime, nsrc)
    k = 400
    stray = _with_seq(pk[(0, 1)], 1001 + 100 + ahead * n + 2)
    cap, seqs = _chips(tmp_path, stream[:k] + [stray] + stream[k:], nsrc, n)
    st = cap.stats
    assert (st["nvalid"], st["nlate"], st["ninvalid"] + st["nduplicate"]) == (800, 0, 1)
    assert st["nsequences"] == 1


def test_one_far_behind_packet_costs_one_packet(tmp_path):
    nsrc, ntime, n = 4, 200, 4
    data, pk = chips_stream(ntime, nsrc)
    stream = in_order(pk, ntime, nsrc)
    stray = _with_seq(pk[(0, 1)], 1001 + 100 - 3 * n)
    cap, seqs = _chips(tmp_path, stream[:400] + [stray] + stream[400:], nsrc, n)
    st = cap.stats
    assert (st["nvalid"], st["nlate"], st["nsequences"]) == (800, 1, 1)


def test_a_stray_from_long_ago_does_not_move_seq0(tmp_path):
    nsrc, ntime, n = 4, 50, 4
    data, pk = chips_stream(ntime, nsrc)
    stream = in_order(pk, ntime, nsrc)
    stray = _with_seq(pk[(0, 1)], 1001 - 3 * n)  # (chips: seq = header seq - 1)
    cap, seqs = _chips(tmp_path, stream[:1] + [stray] + stream[1:], nsrc, n)
    assert cap.sequence_history[0]["seq0"] == 1000 and cap.stats["nvalid"] == 200
    assert (cap.stats["nsequences"], cap.stats["nlate"]) == (1, 1)


def test_a_real_gap_moves_the_window_without_loss(tmp_path):
    """Three gulps of the stream missing: the packets after the gap agree, every one of
    them is placed, the gap is zero-filled, one sequence."""
    nsrc, ntime, n = 4, 100, 4
    data, pk = chips_stream(ntime, nsrc)
    gap = range(40, 52)
    stream = [pk[(t, s)] for t in range(ntime) if t not in gap for s in range(nsrc)]
    cap, seqs = _chips(tmp_path, stream, nsrc, n)
    st = cap.stats
    assert (st["nvalid"], st["nlate"], st["ninvalid"], st["nsequences"]) == (352, 0, 0, 1)
    ring = seqs[0].data.reshape(ntime, -1)
    for t in range(ntime):
        assert np.array_equal(ring[t], 0 * ring[t] if t in gap else slot_of(data[t]))


# --------------------------------------------------------------------- sample_rate
def test_sample_rate_is_checked():
    with open(os.devnull, "rb") as fh:
        with pytest.raises(ArgumentError, match="sample_rate: format 'chips'"):
            DiskReader(FMT, fh, None, 1, 0, 4, 4, None, sample_rate=1000)
        with pytest.raises(ArgumentError, match="sample_rate: tbn"):
            DiskReader("tbn", fh, None, 1, 0, 4, 4, None, sample_rate=123457)
        with pytest.raises(ArgumentError, match="positive whole number"):
            DiskReader("vdif_96", fh, None, 1, 0, 4, 4, None, sample_rate=-5)
        assert DiskReader("tbn", fh, None, 1, 0, 4, 4, None, sample_rate=100e3).sample_rate == 100_000


def test_sample_rate_on_udpcapture_places_a_single_frame_time():
    nsrc = 4
    data, pk = tbn_frames(1, nsrc)
    port = free_udp_port()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(0.3)
    ring = Ring(name=f"learn_sr_{port}")
    cap = UDPCapture("tbn", sock, ring, nsrc, 0, 9000, 4, 4, None, sample_rate=100_000)
    col = RingCollector(ring, 1 << 22)
    _send_all(port, pk)
    run_capture(cap)
    cap.end()
    seqs = col.join(30)
    sock.close()
    assert cap.stats["nvalid"] == 4 and cap.stats["nunlearned"] == 0
    assert np.array_equal(seqs[0].data.reshape(1, -1), tbn_slots(data))


def test_sample_rate_on_udpsniffer():
    from asbru.capture.sniffer import have_cap_net_raw
    if not have_cap_net_raw():
        pytest.skip("UDPSniffer needs CAP_NET_RAW (run as root or setcap cap_net_raw)")
    from asbru.address import Address
    from asbru.packet_capture import UDPSniffer
    from asbru.udp_socket import UDPSocket
    nsrc = 4
    data, pk = tbn_frames(1, nsrc)
    port = free_udp_port()
    sock = UDPSocket()
    sock.sniff(Address("127.0.0.1", port))
    sock.timeout = 0.3
    ring = Ring(name=f"learn_sn_{port}")
    cap = UDPSniffer("tbn", sock, ring, nsrc, 0, 9000, 4, 4, None, sample_rate=100_000,
                     sniff_block_size=1 << 18, sniff_block_count=8)
    col = RingCollector(ring, 1 << 22)
    _send_all(port, pk)
    run_capture(cap)
    cap.end()
    seqs = col.join(30)
    sock.close()
    assert cap.stats["nvalid"] == 4
    assert np.array_equal(seqs[0].data.reshape(1, -1), tbn_slots(data))
