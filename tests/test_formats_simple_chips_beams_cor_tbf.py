"""Formats simple, generic, chips, ibeam, pbeam, cor, tbf, vbeam: Bifrost's vectors byte for
byte, reference header bytes (docs/formats.md), encode -> decode round trips, rejection of bad packets."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import helpers.format_harness as H
from helpers.vectors_path import needs_vectors
from asbru import formats
from asbru.formats import batch, spec


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------
# Bifrost vectors

WRITE_VECTORS = ["generic", "simple", "chips", "ibeam", "ibeam1_2src", "pbeam", "cor", "tbf", "vbeam"]


@needs_vectors
@pytest.mark.parametrize("name", WRITE_VECTORS)
def test_vector_written_byte_for_byte(name):
    v = H.load_vector(name)
    out = H.write_vector_bytes(v.fmt, v.write, v.input)
    assert len(out) == v.write["file_bytes"]
    assert out == v.output


# (vector, read tag, asbru reader string): chips is read with the real channel count
# (Bifrost needed chips_32 for this chips_4 file: docs/differences-from-bifrost.md,
# formats #3)
READS = [("simple", "simple", "simple"), ("chips", "clean", "chips_4"),
         ("chips", "clean_slot3", "chips_4"), ("ibeam", "clean", "ibeam2_4"),
         ("ibeam1_2src", "clean", "ibeam1_4"), ("pbeam", "clean", "pbeam_4"),
         ("pbeam", "clean", "pbeam1_4"), ("cor", "clean", "cor_4")]


@needs_vectors
@pytest.mark.parametrize("name,tag,reader", READS)
def test_vector_decodes_to_bifrost_ring(name, tag, reader):
    v = H.load_vector(name)
    cmp = H.compare_with_bifrost(reader, v, tag)
    assert cmp.ok, (cmp.checked, cmp.mismatched[:5], cmp.missing[:5])
    # every packet of the file decodes (Bifrost dropped some as late; asbru does not)
    desc, status = H.decode_file(reader, v.output, v.reads[tag].read["spec"]["nsrc"],
                                 v.reads[tag].read["spec"]["src0"])
    assert (status == spec.VALID).all()
    ntime, nsrc = v.input.shape[:2]
    assert cmp.checked == sum(s["by_src"].count("match")
                              for q in v.reads[tag].verify["sequences"] for s in q["slots"])
    assert len(status) == ntime * nsrc


@needs_vectors
@pytest.mark.parametrize("name,tag,reader", [r for r in READS if r[1] != "clean_slot3"])
def test_vector_callback_arguments(name, tag, reader):
    """callback_args(seq0, first packet's descriptor) equals what Bifrost passed."""
    v = H.load_vector(name)
    read = v.reads[tag].read
    nsrc, src0 = read["spec"]["nsrc"], read["spec"]["src0"]
    desc, status = H.decode_file(reader, v.output, nsrc, src0)
    f = formats.get(reader, "disk")
    bif = read["callbacks"][0]["args"]
    assert int(desc[0, spec.SEQ]) == bif["seq0"]  # first packet starts the sequence
    mine = f.callback_args(bif["seq0"], desc[0], nsrc)
    names = f.callback_arg_names
    assert len(names) == len(mine)
    assert dict(zip(names, mine)) == bif


@needs_vectors
def test_chips_slot_layout_is_channel_major():
    v = H.load_vector("chips")
    slots = H.decode_file_to_slots("chips_4", v.output, nsrc=4)
    # input (t, s, 128 bytes = 4 chan x 32); ring slot [chan][src][32]
    for t in range(v.input.shape[0]):
        expect = v.input[t].reshape(4, 4, 32).transpose(1, 0, 2).reshape(-1)
        assert np.array_equal(slots[1000 + t], expect)  # header seq 1001 + t, 1-based


def test_generic_has_no_reader():
    with pytest.raises(spec.FormatError):
        formats.get("generic_64", "disk")


# ---------------------------------------------------------------------------------------
# Bifrost's header bytes (docs/formats.md, Reference header bytes)

def _hdr(fmt, info, seq, src, framecount=0):
    f = formats.get(fmt, "write")
    hdrs = np.zeros((1, f.header.size), dtype=np.uint8)
    batch.header_filler(f)(hdrs, info, f.write_config(), seq, 0, src, 0, 1, 1, framecount)
    return hdrs[0].tobytes().hex()


def test_hex_cor():
    info = batch.headerinfo(nsrc=3, tuning=(1 << 16) | (1 << 8) | 1, chan0=100, gain=2, decimation=500)
    base = "dec0de5c" "02010101" "00000000" "0064" "0002" "0000000490404400" "000001f4"
    assert _hdr("cor_2", info, 19_600_000_000, 0) == base + "0001" "0001"
    assert _hdr("cor_2", info, 19_600_000_000, 1) == base + "0001" "0002"
    assert _hdr("cor_2", info, 19_600_000_000, 2) == base + "0002" "0002"


def test_hex_pbeam():
    info = batch.headerinfo(tuning=1, nchan=8, nsrc=1, decimation=300, chan0=10)
    assert _hdr("pbeam1_8", info, 0, 0) == "01" "01" "01" "08" "01" "01" "012c" "000a" "0000000000000000"


def test_hex_chips():
    info = batch.headerinfo(tuning=7, nchan=4, nsrc=2, chan0=100)
    assert _hdr("chips_4", info, 1, 0) == "01" "07" "04" "01" "00" "02" "0064" "0000000000000001"


def test_hex_tbf_two_rows():
    f = formats.get("tbf", "write")
    data = np.zeros((2, 1, 6144), dtype=np.uint8)
    out = batch.encode_packets(f, batch.headerinfo(nsrc=256), 1000, 10, 24, 12, data)
    # one source per row here, so the second row's src is 24 (the reference dump used src 48 with
    # src_increment 12 on the second of several sources); check both fields explicitly
    assert out[:24].hex() == "dec0de5c" "01" "000000" "00000000" "0018" "0100" "00000000000003e8"
    assert out[6168:6168 + 24].hex() == "dec0de5c" "01" "000001" "00000000" "0018" "0100" "00000000000003f2"
    assert _hdr("tbf", batch.headerinfo(nsrc=256), 1010, 48, framecount=1) == \
        "dec0de5c" "01" "000001" "00000000" "0030" "0100" "00000000000003f2"


def test_vbeam_bifrost_header_and_described_header():
    assert _hdr("vbeam_4", batch.headerinfo(nsrc=2), 5000, 1) == \
        "00000000ddccbbaa" + "00" * 8 + "0000000000001388" + "00" * 28
    h = _hdr("vbeam_4", batch.headerinfo(nsrc=2, nchan=4, chan0=100), 5000, 1)
    assert h[-24:] == "00000004" "00000068" "00000002"


def test_fill_headers_batch_order():
    """k = i*nsrc + j: seq_i = seq + i*seq_inc, src_j = src + j*src_inc, framecount per row."""
    f = formats.get("tbf", "write")
    hdrs = np.zeros((6, 24), dtype=np.uint8)
    n = batch.header_filler(f)(hdrs, batch.headerinfo(nsrc=3), f.write_config(),
                               100, 7, 12, 12, 2, 3, 5)
    assert n == 6
    for k in range(6):
        i, j = divmod(k, 3)
        row = f.header.unpack(hdrs[k])
        assert row["time_tag"] == 100 + 7 * i and row["first_chan"] == 12 + 12 * j
        assert row["frame_count"] == 5 + i and row["nstand"] == 3


def test_fill_headers_never_writes_past_hdrs():
    f = formats.get("chips_4", "write")
    hdrs = np.zeros((3, 16), dtype=np.uint8)
    n = batch.header_filler(f)(hdrs, batch.headerinfo(nsrc=4), f.write_config(), 1, 1, 0, 1, 4, 4, 0)
    assert n == 3


# ---------------------------------------------------------------------------------------
# Round trips: encode with fill, decode, place

def _roundtrip(fmt_w, fmt_r, info, seq, seq_inc, src, src_inc, data, nsrc, src0):
    fw = formats.get(fmt_w, "write")
    raw = batch.encode_packets(fw, info, seq, seq_inc, src, src_inc, data)
    desc, status = H.decode_file(fmt_r, raw, nsrc, src0, record_size=fw.params.record_size)
    return raw, desc, status


def _payload_rows(data):
    ntime, ns = data.shape[:2]
    return np.ascontiguousarray(data).reshape(ntime, ns, -1).view(np.uint8).reshape(ntime, ns, -1)


def _check_contiguous_slots(fmt_r, raw, data, nsrc, src0, seq_of_row, src_of_col, record_size):
    slots = H.decode_file_to_slots(fmt_r, raw, nsrc, src0, record_size=record_size)
    rows = _payload_rows(data)
    p = rows.shape[2]
    for i in range(rows.shape[0]):
        slot = slots[seq_of_row(i)]
        for j in range(rows.shape[1]):
            s = src_of_col(j)
            assert np.array_equal(slot[s * p:(s + 1) * p], rows[i, j])


def _rand(rng, shape, dtype):
    if np.dtype(dtype).kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return rng.integers(0, 256, size=n, dtype=np.uint8).view(dtype).reshape(shape)


@SETTINGS
@given(seq=st.integers(0, 2**63 - 10), ntime=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_roundtrip_simple(seq, ntime, seed):
    data = _rand(np.random.default_rng(seed), (ntime, 1, 2048, 2), np.int16)
    raw, desc, status = _roundtrip("simple", "simple", batch.headerinfo(), seq, 1, 0, 1, data, 1, 0)
    assert (status == spec.VALID).all()
    assert list(desc[:, spec.SEQ]) == [seq + i for i in range(ntime)]
    assert (desc[:, spec.SRC] == 0).all()
    _check_contiguous_slots("simple", raw, data, 1, 0, lambda i: seq + i, lambda j: j, 8200)


@SETTINGS
@given(nchan=st.integers(1, 8), nsrc=st.integers(1, 4), src0=st.integers(0, 3),
       chan0=st.integers(0, 65535), tuning=st.integers(0, 255),
       seq=st.integers(1, 2**62), seed=st.integers(0, 2**32 - 1))
def test_roundtrip_chips(nchan, nsrc, src0, chan0, tuning, seq, seed):
    data = _rand(np.random.default_rng(seed), (2, nsrc, 32 * nchan), np.uint8)
    info = batch.headerinfo(nsrc=nsrc, nchan=nchan, chan0=chan0, tuning=tuning)
    raw, desc, status = _roundtrip(f"chips_{nchan}", f"chips_{nchan}", info, seq, 1, src0, 1,
                                   data, nsrc, src0)
    assert (status == spec.VALID).all()
    assert list(desc[:, spec.SEQ]) == [seq - 1 + k // nsrc for k in range(2 * nsrc)]
    assert list(desc[:, spec.SRC]) == [k % nsrc for k in range(2 * nsrc)]
    assert (desc[:, spec.CHAN0] == chan0).all() and (desc[:, spec.NCHAN] == nchan).all()
    slots = H.decode_file_to_slots(f"chips_{nchan}", raw, nsrc, src0)
    for i in range(2):
        expect = data[i].reshape(nsrc, nchan, 32).transpose(1, 0, 2).reshape(-1)
        assert np.array_equal(slots[seq - 1 + i], expect)
    # the capture string without N accepts the same packets
    _, desc2, status2 = _roundtrip(f"chips_{nchan}", formats.get("chips", "capture"), info, seq, 1,
                                   src0, 1, data, nsrc, src0)
    assert (status2 == spec.VALID).all() and np.array_equal(desc2, desc)


@SETTINGS
@given(nbeam=st.integers(1, 4), nchan=st.integers(1, 6), nsrc=st.integers(1, 3),
       chan0=st.integers(20, 60000), seq=st.integers(1, 2**62), seed=st.integers(0, 2**32 - 1))
def test_roundtrip_ibeam(nbeam, nchan, nsrc, chan0, seq, seed):
    data = _rand(np.random.default_rng(seed), (2, nsrc, 2 * nbeam * nchan), np.complex64)
    info = batch.headerinfo(nsrc=nsrc, nchan=nchan, chan0=chan0, tuning=1)
    fmt = f"ibeam{nbeam}_{nchan}"
    raw, desc, status = _roundtrip(fmt, fmt, info, seq, 1, 0, 1, data, nsrc, 0)
    assert (status == spec.VALID).all()
    assert list(desc[:, spec.SEQ]) == [seq - 1 + k // nsrc for k in range(2 * nsrc)]
    srcs = desc[:, spec.SRC]
    assert list(srcs) == [k % nsrc for k in range(2 * nsrc)]
    assert list(desc[:, spec.CHAN0]) == [chan0 - nchan * s for s in srcs]  # Bifrost's normalisation
    assert list(desc[:, spec.X0]) == [chan0 if s == 0 else -1 for s in srcs]
    assert (desc[:, spec.BEAM] == nbeam).all()
    _check_contiguous_slots(fmt, raw, data, nsrc, 0, lambda i: seq - 1 + i, lambda j: j,
                            15 + 16 * nbeam * nchan)


@SETTINGS
@given(nbeam=st.integers(1, 3), nserver=st.integers(1, 3), nchan=st.integers(1, 6),
       navg=st.integers(1, 65535), t0=st.integers(0, 2**40), chan0=st.integers(20, 60000),
       seed=st.integers(0, 2**32 - 1))
def test_roundtrip_pbeam(nbeam, nserver, nchan, navg, t0, chan0, seed):
    nsrc = nbeam * nserver
    data = _rand(np.random.default_rng(seed), (2, nsrc, 4 * nchan), np.float32)
    info = batch.headerinfo(nsrc=nsrc, nchan=nchan, chan0=chan0, decimation=navg, tuning=2)
    fmt = f"pbeam{nbeam}_{nchan}"
    tt = t0 * navg
    raw, desc, status = _roundtrip(fmt, f"pbeam_{nchan}", info, tt, navg, 0, 1, data, nsrc, 1)
    assert (status == spec.VALID).all()
    assert list(desc[:, spec.SEQ]) == [t0 + k // nsrc for k in range(2 * nsrc)]
    assert list(desc[:, spec.SRC]) == [k % nsrc for k in range(2 * nsrc)]
    assert (desc[:, spec.NAVG] == navg).all()  # full width (Bifrost: 8 bits)
    servers = [k % nsrc % nserver for k in range(2 * nsrc)]
    assert list(desc[:, spec.CHAN0]) == [chan0 - nchan * s for s in servers]
    f = formats.get(f"pbeam_{nchan}", "disk")
    assert f.time_tag_of(int(desc[0, spec.SEQ]), desc[0]) == tt
    _check_contiguous_slots(f"pbeam_{nchan}", raw, data, nsrc, 1, lambda i: t0 + i, lambda j: j,
                            18 + 16 * nchan)


@SETTINGS
@given(nstand=st.integers(1, 6), nchan=st.integers(1, 4), navg=st.integers(1, 3000),
       i0=st.integers(0, 2**30), chan0=st.integers(0, 60000), gain=st.integers(0, 65535),
       seed=st.integers(0, 2**32 - 1))
def test_roundtrip_cor(nstand, nchan, navg, i0, chan0, gain, seed):
    nbl = nstand * (nstand + 1) // 2
    data = _rand(np.random.default_rng(seed), (2, nbl, 4 * nchan), np.complex64)
    info = batch.headerinfo(nsrc=nbl, chan0=chan0, gain=gain, decimation=navg,
                            tuning=(1 << 16) | (1 << 8) | 1)
    ticks = navg * 1_960_000
    raw, desc, status = _roundtrip(f"cor_{nchan}", f"cor_{nchan}", info, i0 * ticks, ticks, 0, 1,
                                   data, nbl, 1)
    assert (status == spec.VALID).all()
    assert list(desc[:, spec.SEQ]) == [i0 + k // nbl for k in range(2 * nbl)]
    assert list(desc[:, spec.SRC]) == [k % nbl for k in range(2 * nbl)]
    assert (desc[:, spec.CHAN0] == chan0).all() and (desc[:, spec.GAIN] == gain).all()
    f = formats.get(f"cor_{nchan}", "disk")
    assert f.time_tag_of(i0 + 1, desc[0]) == (i0 + 1) * ticks
    _check_contiguous_slots(f"cor_{nchan}", raw, data, nbl, 1, lambda i: i0 + i, lambda j: j,
                            32 + 32 * nchan)


@SETTINGS
@given(nsrc=st.integers(1, 3), first=st.integers(0, 4000), ticks=st.integers(1, 10000),
       t0=st.integers(0, 2**40), phase=st.integers(0, 9999), seed=st.integers(0, 2**32 - 1))
def test_roundtrip_tbf(nsrc, first, ticks, t0, phase, seed):
    phase %= ticks
    data = _rand(np.random.default_rng(seed), (2, nsrc, 6144), np.uint8)
    tt = t0 * ticks + phase
    raw, desc, status = _roundtrip("tbf", f"tbf_{ticks}", batch.headerinfo(nsrc=256), tt, ticks,
                                   first, 12, data, nsrc, first)
    assert (status == spec.VALID).all()
    assert list(desc[:, spec.SEQ]) == [t0 + k // nsrc for k in range(2 * nsrc)]
    assert list(desc[:, spec.SRC]) == [k % nsrc for k in range(2 * nsrc)]
    f = formats.get(f"tbf_{ticks}", "capture")
    assert f.time_tag_of(t0 + 1, desc[0]) == tt + ticks
    _check_contiguous_slots(f"tbf_{ticks}", raw, data, nsrc, first, lambda i: t0 + i,
                            lambda j: j, 6168)


@SETTINGS
@given(nchan=st.integers(1, 8), nsrc=st.integers(1, 3), chan0=st.integers(0, 5000),
       ticks=st.integers(1, 100), t0=st.integers(0, 2**40), seed=st.integers(0, 2**32 - 1))
def test_roundtrip_vbeam(nchan, nsrc, chan0, ticks, t0, seed):
    data = _rand(np.random.default_rng(seed), (2, nsrc, 2 * nchan), np.complex64)
    info = batch.headerinfo(nsrc=nsrc, nchan=nchan, chan0=chan0)
    raw, desc, status = _roundtrip(f"vbeam_{nchan}", f"vbeam_{nchan}_{ticks}", info, t0 * ticks,
                                   ticks, 0, 1, data, nsrc, chan0)
    assert (status == spec.VALID).all()
    assert list(desc[:, spec.SEQ]) == [t0 + k // nsrc for k in range(2 * nsrc)]
    assert list(desc[:, spec.SRC]) == [k % nsrc for k in range(2 * nsrc)]
    _check_contiguous_slots(f"vbeam_{nchan}_{ticks}", raw, data, nsrc, chan0, lambda i: t0 + i,
                            lambda j: j, 52 + 16 * nchan)


@needs_vectors
def test_vbeam_bifrost_file_decodes_as_source_0():
    v = H.load_vector("vbeam")
    desc, status = H.decode_file("vbeam_4_10", v.output, 1, 0)
    assert (status == spec.VALID).all()
    assert list(desc[:, spec.SEQ]) == [500 + k // 2 for k in range(8)]
    assert (desc[:, spec.SRC] == 0).all()


def test_generic_write_is_raw_array():
    f = formats.get("generic_5", "write")
    data = np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    assert batch.encode_packets(f, batch.headerinfo(), 0, 1, 0, 1, data) == data.tobytes()


# ---------------------------------------------------------------------------------------
# Rejections

def _one_packet(fmt_w, info, seq, src, data_shape, dtype):
    f = formats.get(fmt_w, "write")
    data = np.zeros((1, 1) + data_shape, dtype=dtype)
    data.reshape(-1).view(np.uint8)[:] = np.arange(data.nbytes, dtype=np.uint64).astype(np.uint8)
    return bytearray(batch.encode_packets(f, info, seq, 1, src, 1, data))


def _role(fmt_r):
    # bare prefixes exist only for network capture; 'name_N' strings are read as files,
    # where N is enforced
    return "capture" if fmt_r in ("chips", "ibeam2", "pbeam", "cor") else "disk"


def _decode1(fmt_r, pkt, nsrc, src0=0):
    f = formats.get(fmt_r, _role(fmt_r))
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    return f.decode(np.frombuffer(bytes(pkt), dtype=np.uint8), f.capture_config(nsrc, src0),
                    np.zeros(spec.NSTATE, dtype=np.int64), d), d


GOOD = {
    # name: (writer string, reader string, info, seq, src, payload shape, dtype, nsrc, src0)
    "simple": ("simple", "simple", batch.headerinfo(), 9, 0, (2048, 2), np.int16, 1, 0),
    "chips": ("chips_2", "chips_2", batch.headerinfo(nsrc=2, nchan=2, chan0=5), 9, 1, (64,), np.uint8, 2, 0),
    "chips_any": ("chips_2", "chips", batch.headerinfo(nsrc=2, nchan=2, chan0=5), 9, 1, (64,), np.uint8, 2, 0),
    "ibeam": ("ibeam2_2", "ibeam2_2", batch.headerinfo(nsrc=2, nchan=2, chan0=50), 9, 1, (8,), np.complex64, 2, 0),
    "ibeam_any": ("ibeam2_2", "ibeam2", batch.headerinfo(nsrc=2, nchan=2, chan0=50), 9, 1, (8,), np.complex64, 2, 0),
    "pbeam": ("pbeam1_2", "pbeam_2", batch.headerinfo(nsrc=2, nchan=2, chan0=50, decimation=300), 900, 1,
              (8,), np.float32, 2, 1),
    "pbeam_any": ("pbeam1_2", "pbeam", batch.headerinfo(nsrc=2, nchan=2, chan0=50, decimation=300), 900, 1,
                  (8,), np.float32, 2, 1),
    "cor": ("cor_2", "cor_2", batch.headerinfo(nsrc=3, chan0=5, decimation=100, tuning=0x10101),
            196_000_000, 2, (8,), np.complex64, 3, 1),
    "cor_any": ("cor_2", "cor", batch.headerinfo(nsrc=3, chan0=5, decimation=100, tuning=0x10101),
                196_000_000, 2, (8,), np.complex64, 3, 1),
    "tbf": ("tbf", "tbf", batch.headerinfo(nsrc=256), 7840 * 3, 24, (6144,), np.uint8, 3, 0),
    "vbeam": ("vbeam_2", "vbeam_2", batch.headerinfo(nsrc=2, nchan=2, chan0=10), 77, 1, (4,), np.complex64, 2, 10),
}


@pytest.mark.parametrize("case", sorted(GOOD))
def test_good_packet_is_valid_and_lengths_are_checked(case):
    fw, fr, info, seq, src, shape, dtype, nsrc, src0 = GOOD[case]
    pkt = _one_packet(fw, info, seq, src, shape, dtype)
    r, d = _decode1(fr, pkt, nsrc, src0)
    assert r == spec.VALID
    assert d[spec.PAYLOAD_OFFSET] + d[spec.PAYLOAD_SIZE] == len(pkt)
    assert 0 <= d[spec.SRC] < nsrc
    for n in range(len(pkt)):  # every truncation, including the empty packet
        if case == "cor_any" and n > 32 and (n - 32) % 32 == 0:
            continue  # 'cor' takes nchan from the packet size: whole channels are valid
        assert _decode1(fr, pkt[:n], nsrc, src0)[0] == spec.INVALID, n
    assert _decode1(fr, pkt + b"\0", nsrc, src0)[0] == spec.INVALID
    # one source fewer configured: this packet's source is out of range
    if d[spec.SRC] == nsrc - 1 and nsrc > 1:
        assert _decode1(fr, pkt, nsrc - 1, src0)[0] == spec.INVALID


def _mutated(case, offset, value_bytes):
    fw, fr, info, seq, src, shape, dtype, nsrc, src0 = GOOD[case]
    pkt = _one_packet(fw, info, seq, src, shape, dtype)
    pkt[offset:offset + len(value_bytes)] = value_bytes
    return _decode1(fr, pkt, nsrc, src0)[0]


@pytest.mark.parametrize("case,offset,value,why", [
    ("simple", 0, b"\x80" + b"\0" * 7, "seq >= 2**63"),
    ("chips", 8, b"\0" * 8, "header seq 0 (would wrap)"),
    ("chips", 2, b"\x00", "nchan 0"),
    ("chips", 2, b"\x03", "nchan disagrees with payload"),
    ("chips_any", 2, b"\x00", "nchan 0"),
    ("chips", 0, b"\x00", "roach 0 -> src -1"),
    ("chips", 0, b"\x03", "roach 3 -> src 2 >= nsrc"),
    ("ibeam", 7, b"\0" * 8, "header seq 0"),
    ("ibeam", 3, b"\x01", "nbeam != B"),
    ("ibeam", 2, b"\x00", "nchan 0"),
    ("ibeam_any", 2, b"\x01", "nchan disagrees with payload"),
    ("ibeam", 5, b"\x00\x01", "normalised chan0 < 0"),
    ("pbeam", 6, b"\x00\x00", "navg 0"),
    ("pbeam_any", 6, b"\x00\x00", "navg 0"),
    ("pbeam", 3, b"\x00", "nchan 0"),
    ("pbeam", 5, b"\x00", "nserver 0"),
    ("pbeam", 0, b"\x03", "server > nserver"),
    ("pbeam", 1, b"\x00", "beam 0"),
    ("pbeam", 4, b"\x00", "nbeam 0"),
    ("cor", 0, b"\x5c\xde\xc0\xde", "sync word byte-swapped"),
    ("cor", 24, b"\0\0\0\0", "navg 0"),
    ("cor_any", 24, b"\0\0\0\0", "navg 0"),
    ("cor", 6, b"\x00", "nserver 0"),
    ("cor", 7, b"\x02", "server > nserver"),
    ("cor", 28, b"\x00\x03", "stand0 > stand1"),
    ("cor", 30, b"\x00\x03", "stand1 >= nstand"),
    ("cor", 28, b"\x00\x00", "stand0 0"),
    ("tbf", 0, b"\xde\xc0\xde\x5d", "sync word"),
    ("tbf", 4, b"\x02", "id != TBF"),
    ("tbf", 12, b"\x00\x19", "first_chan not on a 12-channel block"),
    ("tbf", 12, b"\x00\x24", "block 3 >= nsrc"),
    ("vbeam", 4, b"\xdd\xcc\xbb\xab", "sync word"),
    ("vbeam", 40, b"\0\0\0\x03", "nchan != N"),
    ("vbeam", 48, b"\0\0\0\x01", "npol != 2"),
    ("vbeam", 44, b"\0\0\0\x0b", "chan0 not on a block"),
    ("vbeam", 44, b"\0\0\0\x0e", "block 2 >= nsrc"),
])
def test_bad_header_is_invalid(case, offset, value, why):
    assert _mutated(case, offset, value) == spec.INVALID, why


def test_cor_sub_second_integrations_are_numbered_exactly():
    # navg 50 = 0.5 s: Bifrost divides by zero (navg // 100 == 0); asbru counts half seconds
    info = batch.headerinfo(nsrc=1, decimation=50, tuning=0x10101)
    f = formats.get("cor_1", "write")
    data = np.zeros((3, 1, 4), dtype=np.complex64)
    raw = batch.encode_packets(f, info, 98_000_000 * 7, 98_000_000, 0, 1, data)
    desc, status = H.decode_file("cor_1", raw, 1, 1)
    assert (status == spec.VALID).all() and list(desc[:, spec.SEQ]) == [7, 8, 9]


def test_pbeam_navg_above_255_is_kept_whole():
    fw, fr, info, seq, src, shape, dtype, nsrc, src0 = GOOD["pbeam"]
    pkt = _one_packet(fw, info, seq, src, shape, dtype)
    r, d = _decode1(fr, pkt, nsrc, src0)
    assert r == spec.VALID and d[spec.NAVG] == 300 and d[spec.SEQ] == 3


@pytest.mark.parametrize("case", sorted(GOOD))
def test_place_stays_inside_slot(case):
    """place clips to the slot: a too-small slot and an out-of-range src write nothing outside."""
    fw, fr, info, seq, src, shape, dtype, nsrc, src0 = GOOD[case]
    pkt = _one_packet(fw, info, seq, src, shape, dtype)
    r, d = _decode1(fr, pkt, nsrc, src0)
    assert r == spec.VALID
    f = formats.get(fr, _role(fr))
    payload = np.frombuffer(bytes(pkt), dtype=np.uint8)[d[spec.PAYLOAD_OFFSET]:]
    p = int(d[spec.PAYLOAD_SIZE])
    for slot_len in (0, 1, p - 1, nsrc * p - 1, nsrc * p):
        arena = np.full(slot_len + 64, 0xEE, dtype=np.uint8)
        f.place(payload, d, arena[32:32 + slot_len], nsrc)
        assert (arena[:32] == 0xEE).all() and (arena[32 + slot_len:] == 0xEE).all()
    arena = np.full(nsrc * p + 64, 0xEE, dtype=np.uint8)
    for bad in (-1, nsrc, 10**9):
        dd = d.copy()
        dd[spec.SRC] = bad
        f.place(payload, dd, arena[32:32 + nsrc * p], nsrc)
    assert (arena == 0xEE).all()
    # zero-fill of a missing source works from d + payload length alone
    slot = np.full(nsrc * p, 0xAA, dtype=np.uint8)
    dd = d.copy()
    dd[spec.SRC] = 0
    f.place(np.zeros(p, dtype=np.uint8), dd, slot, nsrc)
    assert (H.source_mask(f, d, 0, nsrc, slot.size) == (slot == 0)).all()


def test_decode_records_rejects_out_of_buffer_records():
    f = formats.get("simple", "disk")
    fn = batch.decode_records(f)
    buf = np.zeros(8200, dtype=np.uint8)
    offsets = np.array([0, 1, -5, 8000], dtype=np.int64)
    lengths = np.array([8200, 8200, 8200, 8200], dtype=np.int64)
    desc = np.zeros((4, spec.NDESC), dtype=np.int64)
    status = np.zeros(4, dtype=np.int64)
    assert fn(buf, offsets, lengths, f.capture_config(1, 0), np.zeros(spec.NSTATE, np.int64),
              desc, status) == 1
    assert list(status) == [spec.VALID, spec.INVALID, spec.INVALID, spec.INVALID]


@needs_vectors
def test_record_placer_matches_reference_placement():
    v = H.load_vector("chips")
    f = formats.get("chips_4", "disk")
    buf, offsets, lengths = batch.split_records(v.output, f.params.record_size)
    desc, status = batch.decode_buffer(f, buf, offsets, lengths, 4, 0)
    slots = np.zeros((48, 4 * 128), dtype=np.uint8)
    placed = batch.record_placer(f)(buf, offsets, desc, status, slots, 1000, 4)
    assert placed == 48 * 4
    ref = H.decode_file_to_slots(f, v.output, 4)
    for t in range(48):
        assert np.array_equal(slots[t], ref[1000 + t])
    # a window that starts later skips earlier packets instead of writing before the array
    few = np.zeros((2, 4 * 128), dtype=np.uint8)
    assert batch.record_placer(f)(buf, offsets, desc, status, few, 1046, 4) == 8
    assert np.array_equal(few[1], ref[1047])


@pytest.mark.parametrize("wfmt,rfmt,info,shape,dtype,nsrc,src0", [
    ("chips_3", "chips_2", batch.headerinfo(nsrc=1, nchan=3), (96,), np.uint8, 1, 0),
    ("ibeam1_3", "ibeam1_2", batch.headerinfo(nsrc=1, nchan=3), (6,), np.complex64, 1, 0),
    ("pbeam1_3", "pbeam_2", batch.headerinfo(nsrc=1, nchan=3, decimation=1), (12,), np.float32, 1, 1),
    ("cor_3", "cor_2", batch.headerinfo(nsrc=1, decimation=100, tuning=0x10101), (12,), np.complex64, 1, 1),
])
def test_capture_ignores_n_but_disk_reader_enforces_it(wfmt, rfmt, info, shape, dtype, nsrc, src0):
    pkt = np.frombuffer(bytes(_one_packet(wfmt, info, 100, 0, shape, dtype)), dtype=np.uint8)
    for role, expect in (("capture", spec.VALID), ("disk", spec.INVALID)):
        f = formats.get(rfmt, role)
        d = np.full(spec.NDESC, -1, dtype=np.int64)
        r = f.decode(pkt, f.capture_config(nsrc, src0), np.zeros(spec.NSTATE, np.int64), d)
        assert r == expect, role
    assert formats.get(rfmt, "capture").params.fixed_packet_size is None


# ----------------------------------------------------------------------------- chips place_row
def _chips_place_row_case(nsrc, nchan, offset):
    from asbru.formats import chips
    from asbru.formats.spec import CHAN0, NCHAN, NDESC, SEQ, SRC

    rng = np.random.default_rng(nsrc * 1000 + nchan + offset)
    p = 32 * nchan
    payloads = rng.integers(0, 256, (nsrc, p), dtype=np.uint8)
    d = np.full(NDESC, -1, dtype=np.int64)
    d[NCHAN], d[CHAN0], d[SEQ] = nchan, 7, 123
    raw = np.full(nsrc * p + 256, 0xEE, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    slot = raw[start:start + nsrc * p]
    addrs = np.array([payloads[s].ctypes.data for s in range(nsrc)], dtype=np.int64)
    placed = chips.place_row(addrs, d, slot, nsrc)
    expect = np.zeros(nsrc * p, dtype=np.uint8)
    for s in range(nsrc):
        d[SRC] = s
        chips.place(payloads[s], d, expect, nsrc)
    return placed, raw, start, slot, expect


@pytest.mark.parametrize("nsrc", [2, 4, 16])
@pytest.mark.parametrize("nchan", [1, 7, 255])
def test_chips_place_row_equals_place_per_source(nsrc, nchan):
    placed, raw, start, slot, expect = _chips_place_row_case(nsrc, nchan, 0)
    assert placed
    assert np.array_equal(slot, expect)
    assert (raw[:start] == 0xEE).all() and (raw[start + slot.size:] == 0xEE).all()


@pytest.mark.parametrize("nsrc, offset", [(3, 0), (4, 32), (4, 1)])
def test_chips_place_row_declines_what_it_cannot_stream(nsrc, offset):
    # an odd source count or a slot not on a cache line: the engine places one by one
    placed, raw, start, slot, expect = _chips_place_row_case(nsrc, 5, offset)
    assert not placed
    assert (raw == 0xEE).all()
