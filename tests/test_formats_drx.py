"""drx: Bifrost's vectors byte for byte, merged tuning configuration, beams, rejections."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asbru import formats
from asbru.formats import batch, drx, spec

from helpers.format_harness import (VECTORS, compare_with_bifrost, decode_file, decode_file_to_slots,
                            load_vector, write_vector_bytes)
from helpers.vectors_path import needs_vectors
from helpers.format_stream import capture_file


T1, T2 = 832697741, 1621569285


def expected_slots(inp: np.ndarray, itemsize: int) -> np.ndarray:
    """input (ntime, nsrc, 4096[, 2]) -> ring slots [t][sample][src][item]."""
    nt, ns = inp.shape[:2]
    return inp.view(np.uint8).reshape(nt, ns, 4096, itemsize).transpose(0, 2, 1, 3).reshape(nt, -1)


def merged(desc: np.ndarray, status: np.ndarray) -> np.ndarray:
    """A sequence's configuration: the fields said by any of its packets (-1 = not said)."""
    d = desc[np.flatnonzero(status == spec.VALID)[0]].copy()
    for f in (spec.TUNING, spec.TUNING1):
        d[f] = desc[status == spec.VALID, f].max()
    return d


@pytest.mark.parametrize("name", ["drx", "drx_2src"])
@needs_vectors
def test_writer_matches_bifrost_bytes(name):
    v = load_vector(name)
    assert write_vector_bytes(v.fmt, v.write, v.input) == v.output


@pytest.mark.parametrize("name,nsrc,words", [("drx", 4, (T1, T2)), ("drx_2src", 2, (T2, 0))])
@needs_vectors
def test_reader_matches_input_and_bifrost_ring(name, nsrc, words):
    v = load_vector(name)
    slots = decode_file_to_slots("drx", v.output, nsrc)
    # every frame, the first ones included (Bifrost lost tuning 1's first frame with nsrc 4)
    assert sorted(slots) == list(range(1000, 1012))
    exp = expected_slots(v.input, 1)
    assert all(np.array_equal(slots[1000 + k], exp[k]) for k in range(12))
    cmp = compare_with_bifrost("drx", v, "clean", slots)
    assert cmp.ok, (cmp.mismatched, cmp.missing)
    desc, status = decode_file("drx", v.output, nsrc)
    assert (status == spec.VALID).all()
    f = formats.get("drx", "disk")
    # Bifrost's callback arguments, except the time tag: that of seq0 (here the same)
    bif = v.reads["clean"].read["callbacks"][0]["args"]
    assert f.callback_args(1000, merged(desc, status), nsrc) == \
        (1000, 40960000, 10, words[0], words[1], nsrc) == \
        (bif["seq0"], bif["time_tag"], bif["decim"], bif["chan0"], bif["chan1"], bif["nsrc"])


def test_tunings_are_said_separately():
    f = formats.get("drx", "write")
    data = np.zeros((1, 2, 4096), dtype=np.uint8)
    raw1 = batch.encode_packets(f, batch.headerinfo(decimation=10, tuning=T1), 4096 * 10, 0,
                                8, 128, data)
    raw2 = batch.encode_packets(f, batch.headerinfo(decimation=10, tuning=T2), 4096 * 10, 0,
                                16, 128, data)
    desc, status = decode_file("drx", raw1 + raw2, 4)
    assert (status == spec.VALID).all()
    assert list(desc[:, spec.TUNING]) == [T1, T1, -1, -1]
    assert list(desc[:, spec.TUNING1]) == [-1, -1, T2, T2]
    assert list(desc[:, spec.SRC]) == [0, 1, 2, 3]
    assert list(desc[:, spec.SEQ]) == [1] * 4
    assert f.module.CHANGE == ("tuning", "tuning1", "decimation")


def _frame(ident: int, decim: int = 10, toff: int = 0, t: int = 10 * 4096 * 7,
           word: int = T1, size: int = 4128) -> bytes:
    hdr = (bytes.fromhex("dec0de5c") + bytes([ident]) + b"\0" * 7 + decim.to_bytes(2, "big")
           + toff.to_bytes(2, "big") + t.to_bytes(8, "big") + word.to_bytes(4, "big") + b"\0" * 4)
    return hdr + bytes(range(256)) * ((size - 32) // 256) + b"\0" * ((size - 32) % 256)


def _one(pkt: bytes, nsrc: int = 4, src0: int = 0, fmt: str = "drx", state=None):
    f = formats.get(fmt)
    st_ = np.zeros(spec.NSTATE, dtype=np.int64) if state is None else state
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    r = f.decode(np.frombuffer(pkt, dtype=np.uint8).copy(), f.capture_config(nsrc, src0), st_, d)
    return r, d


@settings(max_examples=60, deadline=None)
@given(decim=st.integers(1, 65535), toff=st.integers(0, 65535), seq=st.integers(0, 2**30),
       word=st.integers(0, 2**32 - 1), tune=st.sampled_from([1, 2]), pol=st.integers(0, 1),
       beam=st.integers(0, 7), sub=st.integers(0, 4095))
def test_decode_round_trip(decim, toff, seq, word, tune, pol, beam, sub):
    t = seq * decim * 4096 + sub * (decim > 1) + toff
    ident = beam | (tune << 3) | (pol << 7)
    f = formats.get("drx", "write")
    raw = batch.encode_packets(f, batch.headerinfo(decimation=decim, tuning=word), t, 0,
                               ident, 0, np.zeros((1, 1, 4096), dtype=np.uint8))
    raw = raw[:14] + toff.to_bytes(2, "big") + raw[16:]  # Bifrost's writer sets no time offset
    r, d = _one(raw)
    assert r == spec.VALID
    assert d[spec.SRC] == 2 * (tune - 1) + pol and d[spec.BEAM] == beam
    assert d[spec.SEQ] == seq and d[spec.TIME_TAG] == t - toff and d[spec.DECIMATION] == decim
    assert (d[spec.TUNING], d[spec.TUNING1]) == ((word, -1) if tune == 1 else (-1, word))
    assert formats.get("drx").time_tag_of(seq + 5, d) == t - toff + 5 * decim * 4096


@pytest.mark.parametrize("pkt,nsrc,src0", [
    (_frame(0x08)[:4127], 4, 0), (_frame(0x08) + b"\0", 4, 0), (b"", 4, 0),
    (_frame(0x08, size=8224), 4, 0),                 # a drx8 frame
    (b"\0" + _frame(0x08)[1:], 4, 0),                # sync
    (_frame(0x08, decim=0), 4, 0),                   # decimation 0 (Bifrost divided by it)
    (_frame(0x00), 4, 0), (_frame(0x18), 4, 0),      # tuning field 0 and 3
    (_frame(0x10), 2, 0),                            # T2 X with nsrc 2: src 2 >= 2
    (_frame(0x08), 2, 1),                            # T1 X with src0 1: src -1
    (_frame(0x08, toff=100, t=50), 4, 0),            # time tag below the time offset
    (_frame(0x08, t=2**63), 4, 0),                   # absurd time tag
])
def test_rejects(pkt, nsrc, src0):
    assert _one(_frame(0x08))[0] == spec.VALID
    assert _one(pkt, nsrc, src0)[0] == spec.INVALID


def test_any_nsrc_that_fits():
    assert _one(_frame(0x90), nsrc=1, src0=3)[1][spec.SRC] == 0   # T2 Y alone
    assert _one(_frame(0x10), nsrc=3, src0=0)[1][spec.SRC] == 2   # T2 X
    assert _one(_frame(0x88), nsrc=5, src0=0)[1][spec.SRC] == 1


def test_only_the_first_beam_is_accepted():
    state = np.zeros(spec.NSTATE, dtype=np.int64)
    assert _one(_frame(0x0A), state=state)[0] == spec.VALID        # beam 2
    assert _one(_frame(0x8A), state=state)[1][spec.BEAM] == 2
    assert _one(_frame(0x0B), state=state)[0] == spec.INVALID      # beam 3
    assert _one(_frame(0x12), state=state)[0] == spec.VALID        # beam 2, tuning 2


def test_place_geometry_and_zero_fill_of_one_source():
    nsrc = 4
    slot = np.full(4096 * nsrc, 0x55, dtype=np.uint8)
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    payload = np.arange(4096, dtype=np.uint32).astype(np.uint8)
    for s in range(nsrc):
        d[spec.SRC] = s
        drx.place(payload + s, d, slot, nsrc)
    view = slot.reshape(4096, nsrc)
    assert all(np.array_equal(view[:, s], payload + s) for s in range(nsrc))
    d[spec.SRC] = 2
    drx.place(np.zeros(4096, dtype=np.uint8), d, slot, nsrc)  # engine's zero-fill of source 2
    assert (view[:, 2] == 0).all()
    assert all(np.array_equal(view[:, s], payload + s) for s in (0, 1, 3))
    guard = np.full(3 * 4096, 0x77, dtype=np.uint8)
    d[spec.SRC] = 3
    drx.place(payload, d, guard[:4096], nsrc)  # slot too small: clipped
    assert (guard[4096:] == 0x77).all()


@pytest.mark.parametrize("fmt", ["drx_4", "drxx", "DRX"])
def test_bad_strings(fmt):
    with pytest.raises(spec.FormatError):
        drx.parse(fmt, "capture")


@pytest.mark.parametrize("name,nsrc,words", [("drx", 4, (T1, T2)), ("drx_2src", 2, (T2, 0))])
@needs_vectors
def test_disk_reader_end_to_end(name, nsrc, words):
    v = load_vector(name)
    statuses, calls, seqs = capture_file(VECTORS / name / "output.dat", "drx", nsrc, "set_drx")
    assert statuses[0] == 0 and statuses[-1] == 1
    assert calls == [(1000, 40960000, 10, words[0], words[1], nsrc)]
    assert len(seqs) == 1 and seqs[0][0] == 40960000
    assert np.array_equal(seqs[0][1], expected_slots(v.input, 1).reshape(-1))
