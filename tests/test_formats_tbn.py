"""tbn: Bifrost's vector byte for byte, decimation learning without loss, rejections."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from numba.core import config as numba_config

from asbru import formats
from asbru.formats import batch, spec, tbn

from helpers.format_harness import (VECTORS, compare_with_bifrost, decode_file_to_slots, load_vector, write_vector_bytes)
from helpers.vectors_path import needs_vectors
from helpers.format_stream import capture_file, decode_stream, split


DECIM = 1960
STEP = 512 * DECIM


def expected_slots(inp: np.ndarray) -> np.ndarray:
    """input (ntime, nsrc, 512, 2) int8 -> ring slots [t][sample][src][re, im]."""
    return inp.view(np.uint8).transpose(0, 2, 1, 3).reshape(inp.shape[0], -1)


def frames(t0: int, times: list[int], srcs: list[int], tuning: int = 1000, gain: int = 3,
           seed: int = 0) -> list[bytes]:
    """One 1048-byte frame per (time index, source), time-major, written by asbru's writer."""
    f = formats.get("tbn", "write")
    rng = np.random.default_rng(seed)
    out = []
    for t in times:
        data = rng.integers(-128, 128, (1, 1, 512, 2), dtype=np.int8)
        for s in srcs:
            out.append(batch.encode_packets(f, batch.headerinfo(tuning=tuning, gain=gain),
                                            t0 + t, 1, s, 1, data))
    return out


@needs_vectors
def test_writer_matches_bifrost_bytes():
    v = load_vector("tbn")
    assert write_vector_bytes(v.fmt, v.write, v.input) == v.output


@needs_vectors
def test_reader_keeps_every_frame_and_matches_bifrost_ring():
    v = load_vector("tbn")
    slots = decode_file_to_slots("tbn", v.output, nsrc=4)
    # all 48 frames, frame 0 included (Bifrost lost it while learning the decimation)
    assert sorted(slots) == list(range(1000, 1048))
    exp = expected_slots(v.input)
    for k, seq in enumerate(range(1000, 1048)):
        assert np.array_equal(slots[seq], exp[k])
    cmp = compare_with_bifrost("tbn", v, "clean", slots)
    assert cmp.ok and cmp.checked == 47 * 4


@needs_vectors
def test_vector_descriptors_and_callback():
    v = load_vector("tbn")
    f = formats.get("tbn", "disk")
    valid, invalid, held = decode_stream(f, split(v.output, 1048), nsrc=4)
    assert len(valid) == 192 and not invalid and not held
    d = valid[0][1]
    assert d[spec.DECIMATION] == DECIM and d[spec.TUNING] == 832697741 and d[spec.GAIN] == 20
    assert f.callback_arg_names == ("seq0", "time_tag", "decimation", "tuning_word", "nsrc")
    # time tag of seq0 itself (Bifrost passed the triggering packet's: 1001 * STEP)
    assert f.callback_args(1000, d, 4) == (1000, 1000 * STEP, DECIM, 832697741, 4)
    assert f.time_tag_of(1047, d) == 1047 * STEP


def test_header_bytes_as_bifrost():
    """Bifrost's header bytes (docs/formats.md, Reference header bytes)."""
    f = formats.get("tbn", "write")
    info = batch.headerinfo(tuning=1000, gain=3)
    hdrs = np.zeros((8, 24), dtype=np.uint8)
    batch.header_filler(f)(hdrs, info, f.write_config(), 0, 1003520, 0, 1, 2, 4, 0)
    assert bytes(hdrs[0]) == bytes.fromhex("dec0de5c 00000000 000003e8 0001 0003 0000000000000000")
    assert bytes(hdrs[7]) == bytes.fromhex("dec0de5c 00000001 000003e8 0004 0003 00000000000f5000")


@settings(max_examples=30, deadline=None)
@given(decim=st.integers(1, 100000), tuning=st.integers(0, 2**32 - 1),
       gain=st.integers(0, 2**16 - 1), src0=st.integers(0, 16300), nsrc=st.integers(1, 5),
       t0=st.integers(0, 2**40), ntime=st.integers(3, 5))
@example(decim=100000, tuning=0, gain=0, src0=0, nsrc=1, t0=2**40, ntime=3)  # 2**40 frames of 2**25.6 ticks
def test_round_trip(decim, tuning, gain, src0, nsrc, t0, ntime):
    step = 512 * decim
    # the header's time tag is a u64 that asbru decodes as int64: keep the last frame's time
    # tag below 2**63 (a larger one is INVALID by design, see test_rejects)
    t0 %= (2**63 - 1) // step - ntime
    start = t0 * step
    wf = formats.get("tbn", "write")
    data = np.random.default_rng(decim).integers(-128, 128, (ntime, nsrc, 512, 2), dtype=np.int8)
    # the writer's src is the 0-based input: tbn_id = src + 1, decoded back as src - src0
    raw = batch.encode_packets(wf, batch.headerinfo(tuning=tuning, gain=gain), start, step,
                               src0, 1, data)
    f = formats.get("tbn", "disk")
    valid, invalid, held = decode_stream(f, split(raw, 1048), nsrc, src0)
    assert not invalid and not held and len(valid) == ntime * nsrc
    for i, d in valid:
        assert d[spec.SEQ] == t0 + i // nsrc and d[spec.SRC] == i % nsrc
        assert d[spec.DECIMATION] == decim and d[spec.TUNING] == tuning and d[spec.GAIN] == gain
        assert d[spec.TIME_TAG] == start + (i // nsrc) * step
    slots = decode_file_to_slots(f, raw, nsrc, src0)
    assert np.array_equal(np.stack([slots[t0 + t] for t in range(ntime)]), expected_slots(data))


def _learnt(valid):
    return {i: (int(d[spec.SEQ]), int(d[spec.DECIMATION])) for i, d in valid}


def test_learning_with_a_lost_frame_keeps_everything():
    """One input; frame 1 lost during learning: Bifrost would learn 2x the decimation."""
    pk = [frames(1000 * STEP, [t * STEP], [0], seed=t)[0] for t in (0, 2, 3, 4, 5)]
    valid, invalid, held = decode_stream(formats.get("tbn"), pk, nsrc=1)
    assert not invalid and not held
    got = _learnt(valid)
    assert sorted(got) == [0, 1, 2, 3, 4]
    assert [got[i] for i in range(5)] == [(1000 + t, DECIM) for t in (0, 2, 3, 4, 5)]


def test_learning_from_interleaved_inputs_with_a_lost_packet():
    t0 = 7 * STEP
    pk = []
    for t in range(5):
        for s in range(3):
            if (t, s) == (1, 0):
                continue  # lost
            pk.extend(frames(t0 + t * STEP, [0], [s], seed=t * 3 + s))
    valid, invalid, held = decode_stream(formats.get("tbn"), pk, nsrc=3)
    assert not invalid and not held and len(valid) == 14
    assert {int(d[spec.DECIMATION]) for _, d in valid} == {DECIM}
    assert sorted((int(d[spec.SEQ]), int(d[spec.SRC])) for _, d in valid) == \
        sorted((7 + t, s) for t in range(5) for s in range(3) if (t, s) != (1, 0))


def test_relearns_when_the_cadence_slows_down():
    """Decimation 1960 for 4 frames, then 3920.  The slower frames sit on the old grid, so
    they decode with 1960 at their true time position (as if every other frame were lost)
    until RELEARN_VOTES differences of the table agree on the new step; no frame is held,
    rejected or misplaced, and the new decimation is adopted within 8 frames."""
    times = [k * STEP for k in range(4)] + [3 * STEP + k * 2 * STEP for k in range(1, 21)]
    pk = [frames(10**9, [t], [0], seed=i)[0] for i, t in enumerate(times)]
    valid, invalid, held = decode_stream(formats.get("tbn"), pk, nsrc=1)
    assert not invalid and not held and len(valid) == len(times)
    got = _learnt(valid)
    decims = [got[i][1] for i in range(len(times))]
    switch = decims.index(2 * DECIM)
    assert 4 < switch <= 4 + 8 and set(decims[switch:]) == {2 * DECIM}
    for i, t in enumerate(times):
        assert got[i][0] == (10**9 + t) // (512 * decims[i])


def test_reordered_frames_do_not_double_the_decimation():
    """Frames arriving up to two steps early give forward differences of 2 steps again and
    again; that must not be mistaken for a slower cadence."""
    order = []
    for base in range(0, 40, 3):
        order += [base + 2, base, base + 1]  # each group of three arrives newest first
    pk = [frames(10**9, [k * STEP], [0], seed=k)[0] for k in range(max(order) + 1)]
    pk = [pk[k] for k in order]
    valid, invalid, held = decode_stream(formats.get("tbn"), pk, nsrc=1)
    assert not invalid
    learnt = [decim for _, (_, decim) in sorted(_learnt(valid).items())]
    # the first forward steps can only suggest 3x the step; frames arriving behind the newest
    # then reveal the finer grid within the first few groups, and it sticks
    assert set(learnt[12:]) == {DECIM}


@pytest.mark.parametrize("new_step", [STEP // 2, 3 * STEP // 2])
def test_relearns_a_faster_or_non_integer_cadence_without_misplacing(new_step):
    """Frames of the new cadence that sit off the old grid are INVALID until the vote adopts
    the new step (a few frames); no frame is ever placed with a wrong decimation."""
    times = [k * STEP for k in range(4)] + [3 * STEP + k * new_step for k in range(1, 21)]
    pk = [frames(0, [t], [0], seed=i)[0] for i, t in enumerate(times)]
    valid, invalid, held = decode_stream(formats.get("tbn"), pk, nsrc=1)
    assert not held and len(invalid) <= 4 and all(i >= 4 for i in invalid)
    got = _learnt(valid)
    for i, (seq, decim) in got.items():
        assert seq * 512 * decim == times[i]
    assert [got[i][1] for i in range(len(times) - 8, len(times))] == [new_step // 512] * 8


def test_a_lost_frame_after_learning_is_not_a_cadence_change():
    times = [k * STEP for k in (0, 1, 2, 3, 5, 6, 7)]
    pk = [frames(0, [t], [0], seed=i)[0] for i, t in enumerate(times)]
    valid, invalid, held = decode_stream(formats.get("tbn"), pk, nsrc=1)
    assert not invalid and not held
    assert sorted(_learnt(valid).values()) == [(k, DECIM) for k in (0, 1, 2, 3, 5, 6, 7)]


def test_no_decimation_without_two_equal_steps():
    # equal time tags (decimation 0) and a step that is not a multiple of 512: held, never valid
    f = formats.get("tbn")
    same = frames(5 * STEP, [0, 0, 0, 0], [0])
    assert decode_stream(f, same, nsrc=1) == ([], [], [0, 1, 2, 3])
    odd = [frames(0, [k * 1000], [0])[0] for k in range(5)]
    valid, invalid, held = decode_stream(f, odd, nsrc=1)
    assert not valid and held == [0, 1, 2, 3, 4]


def _good() -> bytearray:
    return bytearray(frames(3 * STEP, [0], [0])[0])


def _one(pkt: bytes, nsrc: int = 4, src0: int = 0, state=None) -> tuple[int, np.ndarray]:
    f = formats.get("tbn")
    st_ = np.zeros(spec.NSTATE, dtype=np.int64) if state is None else state
    if state is None:  # a learnt decimation, so that only the packet decides
        st_[tbn.ST_STEP] = STEP
        st_[tbn.ST_PHASE] = 0
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    r = f.decode(np.frombuffer(bytes(pkt), dtype=np.uint8).copy(), f.capture_config(nsrc, src0),
                 st_, d)
    return r, d


def test_full_14_bit_input_id_and_unsigned_tuning():
    pkt = _good()
    pkt[12:14] = (1500).to_bytes(2, "big")  # input 1500: Bifrost's 10-bit mask made it 476
    pkt[8:12] = (0xF0000001).to_bytes(4, "big")
    r, d = _one(pkt, nsrc=2000)
    assert r == spec.VALID and d[spec.SRC] == 1499 and d[spec.TUNING] == 0xF0000001
    r, d = _one(pkt, nsrc=2, src0=1499)
    assert r == spec.VALID and d[spec.SRC] == 0


def _mut(offset: int, value: bytes) -> bytearray:
    pkt = _good()
    pkt[offset: offset + len(value)] = value
    return pkt


@pytest.mark.parametrize("pkt", [
    bytes(_good())[:1047], bytes(_good()) + b"\0", b"", bytes(_good())[:24],
    _mut(0, b"\x5c\xde\xc0\xde"),                    # sync in the wrong order
    _mut(12, b"\x80\x01"),                            # TBW flag
    _mut(12, b"\x00\x00"),                            # input id 0 -> src -1
    _mut(12, b"\x00\x05"),                            # src 4 >= nsrc
    _mut(16, b"\x80" + b"\0" * 7),                    # time tag >= 2**63
])
def test_rejects(pkt):
    assert _one(_good())[0] == spec.VALID
    assert _one(pkt)[0] == spec.INVALID


def test_place_geometry_and_zero_fill():
    nsrc, slot = 3, np.full(3 * 1024, 0x55, dtype=np.uint8)
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    d[spec.SRC] = 1
    payload = np.arange(1024, dtype=np.uint32).astype(np.uint8)
    tbn.place(payload, d, slot, nsrc)
    view = slot.reshape(512, nsrc, 2)
    assert np.array_equal(view[:, 1, :].reshape(-1), payload)
    assert (view[:, [0, 2], :] == 0x55).all()
    tbn.place(np.zeros(1024, dtype=np.uint8), d, slot, nsrc)  # zero-fill source 1 only
    assert (view[:, 1, :] == 0).all() and (view[:, [0, 2], :] == 0x55).all()
    # a slot too small: nothing past its end is written
    big = np.full(4000, 0x77, dtype=np.uint8)
    d[spec.SRC] = 2
    tbn.place(payload, d, big[:2000], nsrc)
    assert (big[2000:] == 0x77).all()
    d[spec.SRC] = 3
    tbn.place(payload, d, slot, nsrc)  # src out of range: ignored
    assert (view[:, 1, :] == 0).all()


@pytest.mark.parametrize("fmt", ["tbn_", "tbnx", "TBN"])
def test_bad_strings(fmt):
    with pytest.raises(spec.FormatError):
        formats.get(fmt)
    with pytest.raises(spec.FormatError):
        tbn.parse(fmt, "capture")


@needs_vectors
def test_disk_reader_end_to_end():
    """A real DiskReader over Bifrost's file: one sequence, every frame, time tag of seq0."""
    v = load_vector("tbn")
    statuses, calls, seqs = capture_file(VECTORS / "tbn" / "output.dat", "tbn", 4, "set_tbn")
    assert statuses[0] == 0 and statuses[-1] == 1
    assert calls == [(1000, 1000 * STEP, DECIM, 832697741, 4)]
    assert len(seqs) == 1 and seqs[0][0] == 1000 * STEP
    assert np.array_equal(seqs[0][1], expected_slots(v.input).reshape(-1))


_LEARNER_SIZE = r"""
from numba import types as nbt
from asbru.formats import tbn
a64 = nbt.Array(nbt.int64, 1, "C")
tbn._learn.compile((a64, nbt.int64))
print(tbn._learn.overloads[(a64, nbt.int64)].library.get_llvm_str().count("\n"),
      len(tbn._vote.signatures))
"""


@pytest.mark.skipif(bool(numba_config.DISABLE_JIT), reason="NUMBA_DISABLE_JIT=1: nothing is compiled")
def test_learner_compiles_small(tmp_path):
    """The cadence learner is linked into every loop function that calls ``decode`` and
    re-optimized there: it must stay small.  A ``%`` inside a counting loop made LLVM
    vectorize it and scalarize each remainder lane by lane (~57k lines; a cold TBN kernel
    took ~57 s against ~12 s for the others), and literal ``need`` arguments made three
    copies of ``_vote``.  Compiled in a child with empty caches (a cached library keeps
    no LLVM IR to measure)."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               ASBRU_CACHE_DIR=str(tmp_path / "kernels"))
    out = subprocess.run([sys.executable, "-c", _LEARNER_SIZE], env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout.split()
    lines, nvote = int(out[0]), int(out[1])
    assert lines < 6000, f"tbn._learn compiles to {lines} lines of LLVM"
    assert nvote == 1, f"{nvote} specializations of tbn._vote"
