"""vdif: the vector (writer and reader), per-thread frame-rate learning, rejections."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asbru import formats
from asbru.formats import batch, spec, vdif

from helpers.format_harness import (VECTORS, compare_with_bifrost, decode_file_to_slots, load_vector)
from helpers.vectors_path import needs_vectors
from helpers.format_stream import capture_file, decode_stream, split


VECTOR_INFO = dict(decimation=4, tuning=(10 << 16) | (8 << 8) | 1, nchan=1, gain=16706)


def make(seconds_frames: list[tuple[int, int, int]], fps: int = 4, payload: int = 64,
         nbit: int = 8, cplx: int = 1, nchan: int = 1, epoch: int = 10) -> list[bytes]:
    """One frame per (second, frame, thread), written by asbru's vdif writer."""
    f = formats.get(f"vdif_{32 + payload}", "write")
    info = batch.headerinfo(decimation=fps, tuning=(epoch << 16) | (nbit << 8) | cplx,
                            nchan=nchan, gain=7)
    out = []
    for sec, frame, thread in seconds_frames:
        data = np.full((1, 1, payload), (sec * 7 + frame * 3 + thread) & 0xFF, dtype=np.uint8)
        out.append(batch.encode_packets(f, info, sec * fps + frame, 0, thread, 0, data))
    return out


@needs_vectors
def test_writer_reproduces_the_vector_file():
    v = load_vector("vdif")
    f = formats.get("vdif_1056", "write")
    raw = batch.encode_packets(f, batch.headerinfo(**VECTOR_INFO), 400, 1, 0, 1, v.input)
    assert raw == v.output


@needs_vectors
def test_reader_keeps_the_first_second_and_matches_bifrost_ring():
    v = load_vector("vdif")
    slots = decode_file_to_slots("vdif_1056", v.output, 2)
    # Bifrost's ring starts at seq 404 (second 101): asbru keeps second 100 too
    assert sorted(slots) == list(range(400, 420))
    assert all(np.array_equal(slots[400 + k], v.input[k].reshape(-1)) for k in range(20))
    cmp = compare_with_bifrost("vdif_1056", v, "clean", slots)
    assert cmp.ok and cmp.checked == 16 * 2


@needs_vectors
def test_vector_descriptor_and_callback():
    v = load_vector("vdif")
    f = formats.get("vdif_1056", "disk")
    valid, invalid, held = decode_stream(f, split(v.output, 1056), 2)
    assert len(valid) == 40 and not invalid and not held
    d = dict(valid)[0]
    assert (d[spec.SEQ], d[spec.SRC], d[spec.NCHAN], d[spec.NBIT], d[spec.COMPLEX],
            d[spec.EPOCH], d[spec.SAMPLE_RATE]) == (400, 0, 1, 8, 1, 10, 2048)
    # 512 complex 8-bit samples per frame: time tag counts samples since the epoch
    assert d[spec.TIME_TAG] == 400 * 512
    bif = v.reads["clean"].read["callbacks"][0]["args"]
    assert f.callback_args(404, d, 2) == (404, 404 * 512, bif["ref_epoch"], bif["sample_rate"],
                                          bif["chan0"], bif["bit_depth"], bif["is_complex"], 2)
    assert bif["time_tag"] == 404 * 2048  # Bifrost's seq * sample_rate, fixed in asbru


def test_learning_starts_mid_second_and_loses_nothing():
    order = [(50, f, t) for f in (2, 3) for t in (0, 1)] + \
            [(s, f, t) for s in (51, 52) for f in range(4) for t in (0, 1)]
    valid, invalid, held = decode_stream(formats.get("vdif"), make(order), 2)
    assert not invalid and not held and len(valid) == len(order)
    for i, d in valid:
        s, f, t = order[i]
        assert (d[spec.SEQ], d[spec.SRC], d[spec.SAMPLE_RATE]) == (s * 4 + f, t, 4 * 32)


def test_learning_per_thread_is_not_fooled_by_interleaving():
    """Thread 1 runs half a second behind thread 0: a global "frame number went down"
    test (Bifrost's) would see a wrap at every thread switch."""
    order = []
    for k in range(12):
        order.append((60 + k // 4, k % 4, 0))
        order.append((60 + (k - 2) // 4, (k - 2) % 4, 1))
    valid, invalid, held = decode_stream(formats.get("vdif"), make(order), 2)
    assert not invalid and not held
    assert {int(d[spec.SAMPLE_RATE]) for _, d in valid} == {4 * 32}
    assert sorted(int(d[spec.SEQ]) for _, d in valid if d[spec.SRC] == 0) == list(range(240, 252))


def test_lost_last_frame_while_learning_is_corrected():
    order = [(70, f, 0) for f in (0, 1, 2)] + [(s, f, 0) for s in (71, 72, 73) for f in range(4)]
    # frame 3 of second 70 lost: 3 frames/s learnt; the frame number 3 is believed once 3
    # frames say it (the first two are INVALID: a lone number >= fps is a corrupt header)
    valid, invalid, held = decode_stream(formats.get("vdif"), make(order), 1)
    assert not held and invalid == [6, 10] and len(valid) == len(order) - 2
    rates = {i: int(d[spec.SAMPLE_RATE]) // 32 for i, d in valid}
    assert rates[0] == 3 and rates[len(order) - 1] == 4
    seqs = {i: int(d[spec.SEQ]) for i, d in valid}
    assert [seqs[i] for i in range(14, len(order))] == [73 * 4 + 3]


def _mut(pkt: bytes, word: int, value: int) -> bytes:
    b = bytearray(pkt)
    b[4 * word: 4 * word + 4] = value.to_bytes(4, "little")
    return bytes(b)


def _one(pkt: bytes, nsrc: int = 2) -> tuple[int, np.ndarray]:
    f = formats.get("vdif")
    st_ = np.zeros(spec.NSTATE, dtype=np.int64)
    st_[vdif.ST_FPS] = 4
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    return f.decode(np.frombuffer(pkt, dtype=np.uint8).copy(), f.capture_config(nsrc, 0), st_, d), d


def test_legacy_header():
    pkt = make([(5, 1, 1)])[0]
    w0 = int.from_bytes(pkt[0:4], "little") | (1 << 30)
    w2 = (int.from_bytes(pkt[8:12], "little") & ~0xFFFFFF) | ((len(pkt) - 16) // 8)
    legacy = _mut(_mut(pkt[:16], 0, w0), 2, w2) + pkt[32:]
    r, d = _one(legacy)
    assert r == spec.VALID and d[spec.PAYLOAD_OFFSET] == 16 and d[spec.PAYLOAD_SIZE] == 64
    assert d[spec.SEQ] == 21 and d[spec.SRC] == 1


GOOD = make([(5, 1, 1)])[0]
W2 = int.from_bytes(GOOD[8:12], "little")
W3 = int.from_bytes(GOOD[12:16], "little")


@pytest.mark.parametrize("pkt", [
    b"", GOOD[:15], GOOD[:16], GOOD[:-8], GOOD + b"\0" * 8,   # short, truncated, too long
    _mut(GOOD, 0, int.from_bytes(GOOD[0:4], "little") | (1 << 31)),  # invalid bit
    _mut(GOOD, 2, W2 & ~0xFFFFFF),                               # frame length 0
    _mut(GOOD, 2, (W2 & ~0xFFFFFF) | 4),                         # length = header only
    _mut(GOOD, 3, (W3 & ~(0x3FF << 16)) | (2 << 16)),           # thread 2 >= nsrc
    _mut(GOOD, 2, W2 | (31 << 24)),                              # 2**31 channels: 0 samples
], ids=["empty", "15", "16", "truncated", "long", "invalid-bit", "len0", "len-hdr",
        "thread", "nchan"])
def test_rejects(pkt):
    assert _one(GOOD)[0] == spec.VALID
    assert _one(pkt)[0] == spec.INVALID


@settings(max_examples=40, deadline=None)
@given(fps=st.integers(1, 20), words=st.integers(1, 40), nbit=st.sampled_from([1, 2, 4, 8, 16]),
       cplx=st.integers(0, 1), log2n=st.integers(0, 3), epoch=st.integers(0, 63),
       sec0=st.integers(0, 2**30 - 4), nthread=st.integers(1, 3), first=st.integers(0, 19))
def test_round_trip(fps, words, nbit, cplx, log2n, epoch, sec0, nthread, first):
    payload = 8 * words
    spf = payload * 8 // (nbit * (1 << log2n) * (1 + cplx))
    if spf == 0:
        return
    first %= fps
    # a partial second, then enough of the next ones for 3 frames to complete it
    order = [(sec0, f, t) for f in range(first, fps) for t in range(nthread)] + \
            [(sec0 + k, f, t) for k in (1, 2, 3) for f in range(fps) for t in range(nthread)]
    pk = make(order, fps=fps, payload=payload, nbit=nbit, cplx=cplx, nchan=1 << log2n,
              epoch=epoch)
    valid, invalid, held = decode_stream(formats.get("vdif"), pk, nthread)
    assert not invalid and not held and len(valid) == len(order)
    for i, d in valid:
        s, f, t = order[i]
        assert d[spec.SEQ] == s * fps + f and d[spec.SRC] == t
        assert d[spec.TIME_TAG] == s * fps * spf + f * spf and d[spec.SAMPLE_RATE] == fps * spf
        assert (d[spec.NBIT], d[spec.COMPLEX], d[spec.NCHAN], d[spec.EPOCH]) == \
            (nbit, cplx, 1 << log2n, epoch)
        assert d[spec.PAYLOAD_SIZE] == payload


def test_place_and_zero_fill():
    slot = np.full(3 * 64, 0x55, dtype=np.uint8)
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    d[spec.SRC] = 1
    vdif.place(np.arange(64, dtype=np.uint8), d, slot, 3)
    assert np.array_equal(slot[64:128], np.arange(64)) and (slot[:64] == 0x55).all()
    vdif.place(np.zeros(64, dtype=np.uint8), d, slot, 3)
    assert (slot[64:128] == 0).all() and (slot[128:] == 0x55).all()
    guard = np.full(200, 0x77, dtype=np.uint8)
    d[spec.SRC] = 2
    vdif.place(np.arange(64, dtype=np.uint8), d, guard[:150], 3)  # would end at 192 > 150
    assert (guard == 0x77).all()


@pytest.mark.parametrize("fmt,role", [("vdif", "disk"), ("vdif_100", "disk"), ("vdif_8", "write"),
                                      ("vdif_", "capture"), ("vdifx", "capture"),
                                      ("vdif", "write")])
def test_bad_strings(fmt, role):
    with pytest.raises(spec.FormatError) as exc:
        formats.get(fmt, role)
    assert "\n" not in str(exc.value)


@needs_vectors
def test_disk_reader_end_to_end():
    v = load_vector("vdif")
    statuses, calls, seqs = capture_file(VECTORS / "vdif" / "output.dat", "vdif_1056", 2,
                                         "set_vdif")
    assert statuses[0] == 0 and statuses[-1] == 1
    assert calls == [(400, 400 * 512, 10, 2048, 1, 8, 1, 2)]
    assert len(seqs) == 1 and seqs[0][0] == 400 * 512
    assert np.array_equal(seqs[0][1], v.input.reshape(-1))
