"""drx8: Bifrost's writer bytes, and the reader Bifrost never had (8224-byte frames)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asbru import formats
from asbru.formats import batch, drx8, spec

from helpers.format_harness import (VECTORS, decode_file, decode_file_to_slots, load_vector, write_vector_bytes)
from helpers.vectors_path import needs_vectors
from helpers.format_stream import capture_file



def expected_slots(inp: np.ndarray) -> np.ndarray:
    nt, ns = inp.shape[:2]
    return inp.view(np.uint8).reshape(nt, ns, 4096, 2).transpose(0, 2, 1, 3).reshape(nt, -1)


@needs_vectors
def test_writer_matches_bifrost_bytes():
    v = load_vector("drx8")
    assert write_vector_bytes(v.fmt, v.write, v.input) == v.output


@needs_vectors
def test_reader_decodes_every_frame():
    """Bifrost rejected all 32 frames (size test against 4128); asbru reads all of them."""
    v = load_vector("drx8")
    assert v.reads["clean"].read["statuses"] == [4]  # Bifrost: NO_DATA
    desc, status = decode_file("drx8", v.output, 4)
    assert len(status) == 32 and (status == spec.VALID).all()
    slots = decode_file_to_slots("drx8", v.output, 4)
    assert sorted(slots) == list(range(1000, 1008))
    exp = expected_slots(v.input)
    assert all(np.array_equal(slots[1000 + k], exp[k]) for k in range(8))
    d = desc[0].copy()
    d[spec.TUNING1] = desc[:, spec.TUNING1].max()
    assert formats.get("drx8", "disk").callback_args(1000, d, 4) == \
        (1000, 40960000, 10, 832697741, 1621569285, 4)


def test_header_bytes_as_bifrost():
    """Bifrost's header bytes (docs/formats.md, Reference header bytes): drx8, decimation 10, tuning 12345678, src 1<<3, time tag 1."""
    f = formats.get("drx8", "write")
    raw = batch.encode_packets(f, batch.headerinfo(decimation=10, tuning=12345678), 1, 0,
                               1 << 3, 0, np.zeros((1, 1, 4096, 2), dtype=np.int8))
    assert raw[:32] == bytes.fromhex("dec0de5c 48 000000 00000000 000a 0000 0000000000000001 "
                                     "00bc614e 00000000")
    assert len(raw) == 8224 and f.params.write_dtype == "ci8"


@settings(max_examples=30, deadline=None)
@given(decim=st.integers(1, 65535), seq=st.integers(0, 2**30), ntime=st.integers(1, 3),
       nsrc=st.sampled_from([1, 2, 4]), seed=st.integers(0, 1000))
def test_round_trip(decim, seq, ntime, nsrc, seed):
    data = np.random.default_rng(seed).integers(-128, 128, (ntime, nsrc, 4096, 2), dtype=np.int8)
    step = decim * 4096
    raw = batch.encode_packets(formats.get("drx8", "write"),
                               batch.headerinfo(decimation=decim, tuning=77), seq * step, step,
                               1 << 3, 128 if nsrc > 1 else 0, data[:, :min(nsrc, 2)])
    if nsrc == 4:  # tuning 2 after tuning 1, as the LWA sends them
        raw += batch.encode_packets(formats.get("drx8", "write"),
                                    batch.headerinfo(decimation=decim, tuning=88), seq * step,
                                    step, 2 << 3, 128, data[:, 2:])
        expect = np.concatenate([data[:, :2], data[:, 2:]], axis=1)
    else:
        expect = data
    slots = decode_file_to_slots("drx8", raw, nsrc)
    assert sorted(slots) == list(range(seq, seq + ntime))
    assert np.array_equal(np.stack([slots[seq + t] for t in range(ntime)]), expected_slots(expect))


def _one(pkt: bytes, fmt: str) -> int:
    f = formats.get(fmt)
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    return f.decode(np.frombuffer(pkt, dtype=np.uint8).copy(), f.capture_config(4, 0),
                    np.zeros(spec.NSTATE, dtype=np.int64), d)


def test_frame_sizes():
    good = batch.encode_packets(formats.get("drx8", "write"), batch.headerinfo(decimation=10),
                                4096 * 10, 0, 8, 0, np.zeros((1, 1, 4096, 2), dtype=np.int8))
    assert _one(good, "drx8") == spec.VALID
    assert _one(good[:4128], "drx8") == spec.INVALID   # the size Bifrost wrongly required
    assert _one(good[:-1], "drx8") == spec.INVALID
    assert _one(good + b"\0", "drx8") == spec.INVALID
    assert _one(good[:4128], "drx") == spec.VALID      # same header, DRX size: a drx frame
    zero_decim = good[:12] + b"\0\0" + good[14:]
    assert _one(zero_decim, "drx8") == spec.INVALID


def test_place_two_bytes_per_sample():
    slot = np.full(2 * 8192, 0x55, dtype=np.uint8)
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    d[spec.SRC] = 1
    payload = np.arange(8192, dtype=np.uint32).astype(np.uint8)
    drx8.place(payload, d, slot, 2)
    view = slot.reshape(4096, 2, 2)
    assert np.array_equal(view[:, 1, :].reshape(-1), payload) and (view[:, 0, :] == 0x55).all()
    drx8.place(np.zeros(8192, dtype=np.uint8), d, slot, 2)
    assert (view[:, 1, :] == 0).all() and (view[:, 0, :] == 0x55).all()


@needs_vectors
def test_disk_reader_end_to_end():
    v = load_vector("drx8")
    statuses, calls, seqs = capture_file(VECTORS / "drx8" / "output.dat", "drx8", 4, "set_drx8")
    assert statuses[0] == 0 and statuses[-1] == 1
    assert calls == [(1000, 40960000, 10, 832697741, 1621569285, 4)]
    assert len(seqs) == 1 and np.array_equal(seqs[0][1], expected_slots(v.input).reshape(-1))
