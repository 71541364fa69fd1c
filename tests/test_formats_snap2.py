"""snap2: the vector layout [chan][input], writer round trips, rejections, zero-fill."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asbru import formats
from asbru.formats import batch, snap2, spec

from helpers.format_harness import decode_file, decode_file_to_slots
from helpers.format_stream import capture_file


def stream(nchan, npol, npb, ncb, ntime=2, seq=100, chan0=1000, sync=1700000000, seed=0,
           src0=0):
    """(raw bytes, data (ntime, nsrc, nchan*npol)) written by asbru's snap2 writer."""
    nsrc = npb * ncb
    data = np.random.default_rng(seed).integers(0, 256, (ntime, nsrc, nchan * npol), dtype=np.uint8)
    f = formats.get(f"snap2_{nchan}x{npol}", "write")
    info = batch.headerinfo(nsrc=nsrc, nchan=nchan * ncb, chan0=chan0, tuning=sync)
    return batch.encode_packets(f, info, seq, 1, src0, 1, data), data


def vector_layout(data, nchan, npol, npb, ncb):
    """(ntime, nsrc, nchan*npol) -> [t][chan nchan_tot][input npol_tot]."""
    nt = data.shape[0]
    return data.reshape(nt, ncb, npb, nchan, npol).transpose(0, 1, 3, 2, 4).reshape(nt, -1)


def test_header_fields_are_big_endian():
    raw, _ = stream(4, 8, 2, 3, ntime=1, seq=0x0102030405060708, chan0=0x01020304,
                    sync=0x0A0B0C0D)
    pkt = raw[3 * 64: 3 * 64 + 32]  # source 3: input block 1, channel block 1
    assert pkt == bytes.fromhex("0102030405060708 0a0b0c0d 0008 0010 0004 000c 00000001 "
                                "01020308 00000008")
    assert snap2.HEADER.unpack(pkt)["chan0"] == 0x01020308


@settings(max_examples=40, deadline=None)
@given(nchan=st.integers(1, 12), npol=st.integers(1, 16), npb=st.integers(1, 4),
       ncb=st.integers(1, 4), ntime=st.integers(1, 3), seq=st.integers(0, 2**62),
       chan0=st.integers(0, 2**31), sync=st.integers(0, 2**32 - 1), seed=st.integers(0, 99))
def test_round_trip_vector_layout(nchan, npol, npb, ncb, ntime, seq, chan0, sync, seed):
    raw, data = stream(nchan, npol, npb, ncb, ntime, seq, chan0, sync, seed)
    fmt = formats.get(f"snap2_{nchan}x{npol}", "disk")
    nsrc = npb * ncb
    desc, status = decode_file(fmt, raw, nsrc)
    assert (status == spec.VALID).all()
    assert list(desc[:, spec.SRC]) == list(range(nsrc)) * ntime
    assert set(desc[:, spec.CHAN0]) == {chan0} and set(desc[:, spec.SYNC]) == {sync}
    slots = decode_file_to_slots(fmt, raw, nsrc)
    assert np.array_equal(np.stack([slots[seq + t] for t in range(ntime)]),
                          vector_layout(data, nchan, npol, npb, ncb))
    assert fmt.callback_args(seq, desc[0], nsrc) == (seq, chan0, nchan, nsrc)
    assert fmt.time_tag_of(seq, desc[0]) == sync


def test_src0_is_honoured():
    raw, data = stream(2, 4, 2, 2)
    desc, status = decode_file("snap2_2x4", raw, 4, src0=1)
    # header sources 1..3 -> 0..2; source 0 would be -1; header nsrc 4 == configured 4
    assert list(status[:4]) == [spec.INVALID, spec.VALID, spec.VALID, spec.VALID]
    assert list(desc[1:4, spec.SRC]) == [0, 1, 2]


def _pkt(**fields) -> bytes:
    h = dict(seq=5, sync_time=9, npol=4, npol_tot=8, nchan=2, nchan_tot=4, chan_block_id=1,
             chan0=102, pol0=4)
    h.update(fields)
    hdr = (h["seq"].to_bytes(8, "big") + h["sync_time"].to_bytes(4, "big")
           + b"".join(h[k].to_bytes(2, "big") for k in ("npol", "npol_tot", "nchan", "nchan_tot"))
           + b"".join(h[k].to_bytes(4, "big") for k in ("chan_block_id", "chan0", "pol0")))
    return hdr + bytes(range(1, 1 + fields.pop("payload", h["nchan"] * h["npol"])))


def _one(pkt: bytes, nsrc: int = 4, src0: int = 0):
    f = formats.get("snap2")
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    r = f.decode(np.frombuffer(pkt, dtype=np.uint8).copy(), f.capture_config(nsrc, src0),
                 np.zeros(spec.NSTATE, dtype=np.int64), d)
    return r, d


def test_good_packet_descriptor():
    r, d = _one(_pkt())
    assert r == spec.VALID
    assert (d[spec.SEQ], d[spec.SRC], d[spec.CHAN0], d[spec.TUNING], d[spec.NCHAN]) == \
        (5, 3, 100, 102, 2)
    assert (d[spec.X0], d[spec.X1], d[spec.X2], d[spec.X3]) == (4, 8, 4, 4)


@pytest.mark.parametrize("pkt,nsrc", [
    (b"", 4), (_pkt()[:31], 4), (_pkt()[:32], 4), (_pkt()[:-1], 4), (_pkt() + b"\0", 4),
    (_pkt(npol=0, payload=8), 4), (_pkt(nchan=0, payload=8), 4),
    (_pkt(npol_tot=0), 4), (_pkt(nchan_tot=0), 4),
    (_pkt(npol_tot=6), 4),                    # not a whole number of input blocks
    (_pkt(pol0=2), 4),                        # pol0 not on a block boundary
    (_pkt(chan_block_id=2), 4),               # channel block past nchan_tot
    (_pkt(pol0=8), 4),                        # input block past npol_tot
    (_pkt(), 8),                              # header says 4 sources, configured 8
    (_pkt(seq=2**63), 4),                     # absurd seq
])
def test_rejects(pkt, nsrc):
    assert _one(pkt, nsrc)[0] == spec.INVALID


def test_zero_fill_of_one_source_keeps_the_others():
    nchan, npol, npb, ncb = 3, 4, 2, 2
    raw, data = stream(nchan, npol, npb, ncb, ntime=1)
    slots = decode_file_to_slots(f"snap2_{nchan}x{npol}", raw, 4)
    slot = slots[100].copy()
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    d[spec.NCHAN], d[spec.X0], d[spec.X1] = nchan, npol, npol * npb
    d[spec.SRC] = 2  # input block 0, channel block 1
    snap2.place(np.zeros(nchan * npol, dtype=np.uint8), d, slot, 4)
    view = slot.reshape(nchan * ncb, npol * npb)
    assert (view[3:6, 0:4] == 0).all()
    ref = slots[100].reshape(nchan * ncb, npol * npb)
    mask = np.ones_like(view, dtype=bool)
    mask[3:6, 0:4] = False
    assert np.array_equal(view[mask], ref[mask])
    guard = np.full(200, 0x77, dtype=np.uint8)
    d[spec.SRC] = 3
    snap2.place(np.ones(nchan * npol, dtype=np.uint8), d, guard[:40], 4)  # clipped
    assert (guard[40:] == 0x77).all()


@pytest.mark.parametrize("fmt,role", [("snap2", "write"), ("snap2_4", "write"),
                                      ("snap2_0x4", "write"), ("snap2_x", "capture")])
def test_bad_strings(fmt, role):
    with pytest.raises(spec.FormatError) as exc:
        formats.get(fmt, role)
    assert "\n" not in str(exc.value)


def test_disk_record_sizes():
    assert formats.get("snap2", "disk").params.record_size == 9000  # Bifrost's DiskReader
    assert formats.get("snap2_4x8", "disk").params.record_size == 64


def test_disk_reader_end_to_end(tmp_path):
    nchan, npol, npb, ncb = 4, 8, 2, 3
    raw, data = stream(nchan, npol, npb, ncb, ntime=8, seq=64)
    path = tmp_path / "snap2.dat"
    path.write_bytes(raw)
    statuses, calls, seqs = capture_file(path, f"snap2_{nchan}x{npol}", npb * ncb, "set_snap2")
    assert statuses[0] == 0 and statuses[-1] == 1
    assert len(calls) == 1 and calls[0][:4] == (64, 1000, nchan, npb * ncb)
    # (the time tag is the engine's pointer-family preset unless the callback writes one)
    expect = vector_layout(data, nchan, npol, npb, ncb).reshape(-1)
    assert len(seqs) == 1 and np.array_equal(seqs[0][1], expect)
