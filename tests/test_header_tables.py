"""Every format's HEADER table is the byte layout its compiled code really uses.

The Wireshark dissector (asbru/dissector.py) and ``asbru inspect`` read packets through the
table only, so a table that disagreed with ``fill``/``decode`` would show wrong values.  For
every writable format:

1. coverage: ``fill`` writes every byte of every table field and no byte outside the
   table (two fills into buffers pre-set to 0x00 and 0xFF must agree on the field bytes,
   and bytes outside the fields must keep their pre-set value);
2. fill -> table: headers written by ``fill`` (a few time steps and sources of
   ``batch.encode_packets``) parsed with the table give, field by field, what was asked for;
3. table -> decode: the compiled ``decode`` of those packets gives descriptors equal to the
   table's fields through the format's documented rules (stated below by field NAME only,
   so a wrong offset in a table cannot agree with the code by accident).
"""
from __future__ import annotations

import numpy as np
import pytest

from asbru import formats
from asbru.formats import batch, spec

TT = 196_000_000 * 1_700_000_000  # a realistic 196 MHz time tag (needs 64 bits)


def pairs(nstand):
    return [(a, b) for a in range(1, nstand + 1) for b in range(a, nstand + 1)]


# name: (write string, HeaderInfo, seq0, seq_inc, src0 (writer), src_inc, nsrc, ntime,
#        read string, reader nsrc, reader src0,
#        fields(i, j) -> table values expected from fill,
#        desc(u, j) -> descriptor values expected from decode, u = the table's fields)
CASES = {
    "simple": ("simple", {}, 5000, 1, 0, 1, 1, 3, "simple", 1, 0,
               lambda i, j: {"seq": 5000 + i},
               lambda u, j: {spec.SEQ: u["seq"], spec.SRC: 0}),
    "chips": ("chips_4", dict(nsrc=3, nchan=4, chan0=300, tuning=5), 1001, 1, 0, 1, 3, 3, "chips", 3, 0,
              lambda i, j: {"roach": j + 1, "gbe": 5, "nchan": 4, "nsubband": 1, "subband": 0,
                            "nroach": 3, "chan0": 300, "seq": 1001 + i},
              lambda u, j: {spec.SEQ: u["seq"] - 1, spec.SRC: u["roach"] - 1, spec.NCHAN: u["nchan"],
                            spec.CHAN0: u["chan0"]}),
    "ibeam": ("ibeam2_4", dict(nsrc=3, nchan=4, chan0=108, tuning=6), 1001, 1, 0, 1, 3, 3, "ibeam2", 3, 0,
              lambda i, j: {"server": j + 1, "gbe": 6, "nchan": 4, "nbeam": 2, "nserver": 3,
                            "chan0": 108, "seq": 1001 + i},
              lambda u, j: {spec.SEQ: u["seq"] - 1, spec.SRC: u["server"] - 1, spec.NCHAN: u["nchan"],
                            spec.CHAN0: u["chan0"] - u["nchan"] * (u["server"] - 1)}),
    "pbeam": ("pbeam1_4", dict(nsrc=3, nchan=4, chan0=108, tuning=6, decimation=24), 24 * 1000, 24, 0, 1, 3, 3,
              "pbeam1_4", 3, 1,
              lambda i, j: {"server": j + 1, "beam": 1, "gbe": 6, "nchan": 4, "nbeam": 1, "nserver": 3,
                            "navg": 24, "chan0": 108, "seq": 24 * (1000 + i)},
              lambda u, j: {spec.SEQ: u["seq"] // u["navg"], spec.SRC: (u["beam"] - 1) * u["nserver"] + u["server"] - 1,
                            spec.NAVG: u["navg"], spec.CHAN0: u["chan0"] - u["nchan"] * (u["server"] - 1)}),
    "cor": ("cor_4", dict(nsrc=6, chan0=1234, gain=9, decimation=100, tuning=(3 << 16) | (1 << 8) | 1),
            77 * 196_000_000, 196_000_000, 0, 1, 6, 2, "cor_4", 6, 1,
            lambda i, j: {"sync": 0xDEC0DE5C, "id": 2, "nchan_decim": 3, "nserver": 1, "server": 1,
                          "second_count": 0, "first_chan": 1234, "gain": 9, "time_tag": (77 + i) * 196_000_000,
                          "navg": 100, "stand0": pairs(3)[j][0], "stand1": pairs(3)[j][1]},
            lambda u, j: {spec.SEQ: u["time_tag"] // (u["navg"] * 1_960_000),
                          spec.SRC: pairs(3).index((u["stand0"], u["stand1"])), spec.GAIN: u["gain"],
                          spec.NAVG: u["navg"], spec.CHAN0: u["first_chan"], spec.TIME_TAG: u["time_tag"]}),
    "vdif": ("vdif_1056", dict(decimation=4, tuning=(21 << 16) | (8 << 8) | 1, nchan=4, gain=0x4C57),
             777 * 4 + 1, 1, 5, 1, 2, 10, "vdif_1056", 8, 0,
             lambda i, j: {"seconds": (777 * 4 + 1 + i) // 4, "legacy": 0, "invalid": 0,
                           "frame_number": (1 + i) % 4, "ref_epoch": 21, "unassigned": 0,
                           "frame_length": 1056 // 8, "log2_nchan": 2, "version": 0, "station_id": 0x4C57,
                           "thread_id": 5 + j, "bits_per_sample_minus_1": 7, "is_complex": 1,
                           "extended_user_data": bytes(16)},
             lambda u, j: {spec.SEQ: u["seconds"] * 4 + u["frame_number"], spec.SRC: u["thread_id"],
                           spec.EPOCH: u["ref_epoch"], spec.NBIT: u["bits_per_sample_minus_1"] + 1,
                           spec.COMPLEX: u["is_complex"], spec.NCHAN: 1 << u["log2_nchan"]}),
    "tbn": ("tbn", dict(tuning=0x12345678, gain=20), TT, 512 * 1960, 0, 1, 2, 4, "tbn", 2, 0,
            lambda i, j: {"sync": 0xDEC0DE5C, "frame_count": i, "id": 0, "tuning_word": 0x12345678,
                          "input_id": j + 1, "reserved": 0, "tbw": 0, "gain": 20, "time_tag": TT + i * 512 * 1960},
            lambda u, j: {spec.SRC: u["input_id"] - 1, spec.TUNING: u["tuning_word"], spec.GAIN: u["gain"],
                          spec.TIME_TAG: u["time_tag"], spec.SEQ: u["time_tag"] // (512 * 1960)}),
    "drx": ("drx", dict(tuning=0x2ABCDEF1, decimation=10), TT, 40960, 3 | (1 << 3), 128, 2, 2, "drx", 2, 0,
            lambda i, j: {"sync": 0xDEC0DE5C, "beam": 3, "tuning": 1, "reserved": 0, "pol": j,
                          "frame_count": 0, "seconds_count": 0, "decimation": 10, "time_offset": 0,
                          "time_tag": TT + i * 40960, "tuning_word": 0x2ABCDEF1, "flags": 0},
            lambda u, j: {spec.SRC: 2 * (u["tuning"] - 1) + u["pol"], spec.BEAM: u["beam"],
                          spec.DECIMATION: u["decimation"], spec.TUNING: u["tuning_word"],
                          spec.TIME_TAG: u["time_tag"] - u["time_offset"],
                          spec.SEQ: (u["time_tag"] - u["time_offset"]) // (4096 * u["decimation"])}),
    "tbx": ("tbx_8x128", {}, TT, 8192, 2000, 8, 3, 2, "tbx_8x128", 3, 2000,
            lambda i, j: {"sync": 0xDEC0DE5C, "frame_count": i, "id": 8, "second_count": 0,
                          "first_chan": 2000 + 8 * j, "nstand": 128, "nchan": 8, "time_tag": TT + 8192 * i},
            lambda u, j: {spec.SRC: (u["first_chan"] - 2000) // u["nchan"], spec.NCHAN: u["nchan"],
                          spec.X0: u["nstand"], spec.TIME_TAG: u["time_tag"], spec.SEQ: u["time_tag"] // 8192}),
    "tbf": ("tbf", dict(nsrc=256), TT, 7840, 1200, 12, 2, 2, "tbf", 2, 1200,
            lambda i, j: {"sync": 0xDEC0DE5C, "id": 1, "frame_count": i, "seconds_count": 0,
                          "first_chan": 1200 + 12 * j, "nstand": 256, "time_tag": TT + 7840 * i},
            lambda u, j: {spec.SRC: (u["first_chan"] - 1200) // 12, spec.TIME_TAG: u["time_tag"],
                          spec.SEQ: u["time_tag"] // 7840}),
    "vbeam": ("vbeam_4", dict(nsrc=2, nchan=4, chan0=40), 555, 1, 0, 1, 2, 2, "vbeam_4", 2, 40,
              lambda i, j: {"sync_word": 0xAABBCCDD00000000, "sync_time": 0, "time_tag": 555 + i, "bw_hz": 0.0,
                            "sfreq": 0.0, "nchan": 4, "chan0": 40 + 4 * j, "npol": 2},
              lambda u, j: {spec.SRC: (u["chan0"] - 40) // u["nchan"], spec.NCHAN: u["nchan"],
                            spec.TIME_TAG: u["time_tag"], spec.SEQ: u["time_tag"]}),
    "snap2": ("snap2_4x8", dict(nsrc=2, nchan=8, chan0=1000, tuning=1234567), 100, 1, 0, 1, 2, 2, "snap2", 2, 0,
              lambda i, j: {"seq": 100 + i, "sync_time": 1234567, "npol": 8, "npol_tot": 8, "nchan": 4,
                            "nchan_tot": 8, "chan_block_id": j, "chan0": 1000 + 4 * j, "pol0": 0},
              lambda u, j: {spec.SEQ: u["seq"], spec.TIME_TAG: u["sync_time"], spec.NCHAN: u["nchan"],
                            spec.CHAN0: u["chan0"] - u["chan_block_id"] * u["nchan"], spec.X0: u["npol"],
                            spec.X1: u["npol_tot"], spec.X2: u["nchan_tot"], spec.X3: u["pol0"],
                            spec.SRC: u["pol0"] // u["npol"] + u["chan_block_id"] * (u["npol_tot"] // u["npol"])}),
    "example_beacon": ("example_beacon_64", {}, 7, 1, 0, 1, 3, 2, "example_beacon_64", 3, 0,
                       lambda i, j: {"magic": int.from_bytes(b"BCN1", "big"), "source": j, "payload_length": 64, "seq": 7 + i},
                       lambda u, j: {spec.SEQ: u["seq"], spec.SRC: u["source"], spec.PAYLOAD_SIZE: u["payload_length"]}),
}
CASES["drx8"] = ("drx8",) + CASES["drx"][1:8] + ("drx8",) + CASES["drx"][9:11] + (
    lambda i, j: dict(CASES["drx"][11](i, j), reserved=1),) + CASES["drx"][12:]
CASES["ndp_tbf"] = ("ndp_tbf", {}, TT, 8192, 600, 12, 2, 2, "ndp_tbf", 2, 600,
                    lambda i, j: {"sync": 0xDEC0DE5C, "id": 5, "frame_count": i, "seconds_count": 0,
                                  "first_chan": 600 + 12 * j, "nstand": 64, "time_tag": TT + 8192 * i},
                    lambda u, j: {spec.SRC: (u["first_chan"] - 600) // 12, spec.TIME_TAG: u["time_tag"],
                                  spec.SEQ: u["time_tag"] // 8192})

HEADERLESS = {"generic"}


def writable():
    return [n for n in formats.list() if getattr(formats.module(n), "fill", None) is not None]


def test_every_writable_format_has_a_case():
    missing = [n for n in writable() if n not in CASES and n not in HEADERLESS]
    assert not missing, f"no header-table test for {missing}"


def _field_bytes(header) -> np.ndarray:
    mask = np.zeros(header.size, dtype=bool)
    for f in header.fields:
        assert not mask[f.offset: f.offset + f.nbytes].any(), f"field {f.name} overlaps another"
        assert f.offset + f.nbytes <= header.size, f"field {f.name} ends past the header"
        mask[f.offset: f.offset + f.nbytes] = True
        used = 0
        for b in f.bits:
            assert 0 <= b.lsb and b.lsb + b.width <= 8 * f.nbytes, f"bit field {b.name} outside {f.name}"
            bits = ((1 << b.width) - 1) << b.lsb
            assert not used & bits, f"bit field {b.name} overlaps another in {f.name}"
            used |= bits
        assert not f.bits or used == (1 << 8 * f.nbytes) - 1, f"bit fields of {f.name} leave bits undescribed"
    return mask


@pytest.mark.parametrize("name", sorted(CASES))
def test_fill_writes_exactly_the_table(name):
    (wfmt, info, seq0, seq_inc, src0w, src_inc, nsrc, ntime, *_rest) = CASES[name]
    f = formats.get(wfmt, "write")
    mask = _field_bytes(f.header)
    filler = batch.header_filler(f)
    outs = []
    for fillbyte in (0x00, 0xFF):
        hdrs = np.full((ntime * nsrc, f.header.size), fillbyte, dtype=np.uint8)
        filler(hdrs, batch.headerinfo(**info), f.write_config(), np.int64(seq0), np.int64(seq_inc),
               np.int64(src0w), np.int64(src_inc), np.int64(ntime), np.int64(nsrc), np.int64(0))
        outs.append(hdrs)
    written = (outs[0] == outs[1]).all(axis=0)
    assert written[mask].all(), f"{name}: fill leaves table bytes {np.flatnonzero(mask & ~written)} unwritten"
    assert not written[~mask].any(), f"{name}: fill writes bytes {np.flatnonzero(written & ~mask)} outside the table"


@pytest.mark.parametrize("name", sorted(CASES))
def test_fill_table_decode_agree(name):
    (wfmt, info, seq0, seq_inc, src0w, src_inc, nsrc, ntime, rfmt, rnsrc, rsrc0, fields, desc) = CASES[name]
    w = formats.get(wfmt, "write")
    p = w.params.payload_size
    data = np.random.default_rng(len(name)).integers(0, 256, (ntime, nsrc, p), dtype=np.uint8)
    raw = batch.encode_packets(w, batch.headerinfo(**info), seq0, seq_inc, src0w, src_inc, data)
    rec = w.header.size + p
    r = formats.get(rfmt, "disk" if formats.get(rfmt, "capture").params.payload_size is not None else "capture")
    buf, offsets, lengths = batch.split_records(raw, rec)
    d, status = batch.decode_buffer(r, buf, offsets, lengths, rnsrc, rsrc0)
    valid = 0
    for k in range(ntime * nsrc):
        i, j = divmod(k, nsrc)
        u = w.header.unpack(raw[k * rec: (k + 1) * rec])
        # a field split into bit fields is checked through them (they cover all its bits)
        u = {n: v for n, v in u.items() if n not in {f.name for f in w.header.fields if f.bits}}
        want = fields(i, j)
        assert set(want) == set(u), f"{name}: the test must name every table field: {sorted(set(u) ^ set(want))}"
        assert u == want, f"{name} packet {k}: table reads {u}, fill was asked for {want}"
        if status[k] == spec.HOLD:
            continue
        assert status[k] == spec.VALID, f"{name} packet {k} decodes {status[k]}"
        valid += 1
        for idx, value in desc(u, j).items():
            assert d[k, idx] == value, f"{name} packet {k}: decode gives {spec.DESCRIPTOR_FIELDS[idx]} = {d[k, idx]}, table says {value}"
        assert d[k, spec.PAYLOAD_OFFSET] == w.header.size and d[k, spec.PAYLOAD_SIZE] == p
        # a spare descriptor slot is written only under a name the format declares (SLOTS)
        unnamed = [x for x in spec.SPARE_SLOTS if x not in r.slots.values()]
        assert (d[k, unnamed] == -1).all(), f"{name}: decode writes spare slots it does not name"
    assert valid >= nsrc  # at least one whole time step decoded


def test_a_wrong_table_is_caught():
    """The check above fails for a table whose offset disagrees with the code."""
    import dataclasses
    mod = formats.module("tbx")
    bad = [dataclasses.replace(f, offset=14) if f.name == "first_chan" else f for f in mod.HEADER.fields]
    with pytest.raises(AssertionError):
        _field_bytes(spec.Header(bad))
    moved = spec.Header([dataclasses.replace(f, offset=f.offset + 2) if f.name == "nchan" else f
                         for f in mod.HEADER.fields if f.name != "time_tag"])
    w = formats.get("tbx_8x128", "write")
    raw = batch.encode_packets(w, batch.headerinfo(), TT, 1, 2000, 8,
                               np.zeros((1, 1, w.params.payload_size), np.uint8))
    assert moved.unpack(raw)["nchan"] != 8
