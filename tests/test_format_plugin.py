"""The third-party format example: found through its entry point, round-trips, and
docs/adding-a-format.md is the installed file, block by block."""
from __future__ import annotations

import importlib.metadata
import inspect
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asbru import formats
from asbru.formats import batch, example_beacon, spec

from helpers.format_stream import capture_file

DOC = Path(__file__).resolve().parent.parent / "docs" / "adding-a-format.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)


def _lines(text: str) -> list[str]:
    return [ln.rstrip() for ln in text.splitlines() if ln.strip()]


def test_entry_point_declares_the_module():
    eps = importlib.metadata.entry_points(group="asbru.formats")
    values = {ep.name: ep.value for ep in eps}
    assert values.get("example_beacon") == "asbru.formats.example_beacon"
    assert [ep for ep in eps if ep.name == "example_beacon"][0].load() is example_beacon


def test_registry_finds_plugin_through_entry_point():
    formats._reset_for_tests()
    assert "example_beacon" in formats.list()
    f = formats.get("example_beacon_64", "write")
    assert f.module is example_beacon
    assert f.params.record_size == 80 and f.params.samples_per_packet == 64
    assert f.change == (spec.PAYLOAD_SIZE,)


def test_doc_blocks_are_the_installed_file():
    source = inspect.getsource(example_beacon)
    blocks = _blocks("python")
    assert len(blocks) >= 8
    for block in blocks:
        assert block.strip() in source, f"doc block not in the module:\n{block[:200]}"
    # together, in order, they are the whole file (blank lines aside)
    assert _lines("\n".join(blocks)) == _lines(source)


def test_doc_trying_it_block_runs():
    (snippet,) = _blocks("py")
    ns: dict = {}
    exec(compile(snippet, str(DOC), "exec"), ns)
    raw, status, desc, data = ns["raw"], ns["status"], ns["desc"], ns["data"]
    assert len(raw) == 6 * 80
    assert list(status) == [spec.VALID] * 6
    assert list(desc[:, spec.SEQ]) == [100, 100, 101, 101, 102, 102]
    assert list(desc[:, spec.SRC]) == [0, 1] * 3
    assert raw[80 + 16: 160] == data[0, 1].tobytes()


def test_header_bytes():
    f = formats.get("example_beacon_4", "write")
    raw = batch.encode_packets(f, batch.headerinfo(), 0x0102030405060708, 1, 7, 1,
                               np.full((1, 1, 4), 0xAB, dtype=np.uint8))
    assert raw == bytes.fromhex("42434e31 0007 0004 0102030405060708 abababab")
    assert f.header.unpack(raw) == {"magic": 0x42434E31, "source": 7, "payload_length": 4,
                                    "seq": 0x0102030405060708}


@settings(max_examples=40, deadline=None)
@given(seq=st.integers(0, 2**63 - 1000), nsrc=st.integers(1, 6), src0=st.integers(0, 3),
       ntime=st.integers(1, 4), plen=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_encode_decode_place_round_trip(seq, nsrc, src0, ntime, plen, seed):
    data = np.random.default_rng(seed).integers(0, 256, (ntime, nsrc, plen), dtype=np.uint8)
    wf = formats.get(f"example_beacon_{plen}", "write")
    raw = batch.encode_packets(wf, batch.headerinfo(), seq, 1, src0, 1, data)
    rf = formats.get(f"example_beacon_{plen}", "disk")
    buf, off, ln = batch.split_records(raw, rf.params.record_size)
    desc, status = batch.decode_buffer(rf, buf, off, ln, nsrc, src0)
    assert (status == spec.VALID).all()
    assert list(desc[:, spec.SEQ]) == [seq + i for i in range(ntime) for _ in range(nsrc)]
    slots = np.zeros((ntime, nsrc * plen), dtype=np.uint8)
    assert batch.record_placer(rf)(buf, off, desc, status, slots, seq, nsrc) == ntime * nsrc
    assert np.array_equal(slots, data.reshape(ntime, -1))
    assert rf.callback_args(seq, desc[0], nsrc) == (seq, seq, plen, nsrc)


def _decode_one(pkt: bytes, nsrc: int = 2, src0: int = 0) -> int:
    f = formats.get("example_beacon")
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    return f.decode(np.frombuffer(pkt, dtype=np.uint8).copy(), f.capture_config(nsrc, src0),
                    np.zeros(spec.NSTATE, dtype=np.int64), d)


GOOD = bytes.fromhex("42434e31 0001 0004 0000000000000005 01020304")


@pytest.mark.parametrize("pkt", [
    b"", GOOD[:15], GOOD[:16], GOOD[:-1],            # short and truncated
    GOOD + b"\0",                                    # longer than its length field
    b"XCN1" + GOOD[4:],                              # bad magic
    GOOD[:4] + b"\x00\x02" + GOOD[6:],               # source 2 >= nsrc
    GOOD[:6] + b"\x00\x00" + GOOD[8:16],             # zero length
    GOOD[:8] + b"\xff" * 8 + GOOD[16:],              # seq >= 2**63: absurd
])
def test_rejects_bad_packets(pkt):
    assert _decode_one(GOOD) == spec.VALID
    assert _decode_one(pkt) == spec.INVALID


def test_src0_is_subtracted():
    assert _decode_one(GOOD, nsrc=1, src0=1) == spec.VALID
    assert _decode_one(GOOD, nsrc=1, src0=2) == spec.INVALID


def test_place_clips_to_slot():
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    d[spec.SRC] = 1
    slot = np.zeros(8, dtype=np.uint8)  # too small for source 1 of 6-byte payloads
    guard = np.zeros(16, dtype=np.uint8)
    guard[:8] = slot
    example_beacon.place(np.full(6, 9, dtype=np.uint8), d, guard[:8], 2)
    assert list(guard[:8]) == [0] * 6 + [9, 9] and not guard[8:].any()


@pytest.mark.parametrize("fmt,role", [("example_beacon", "write"), ("example_beacon", "disk"),
                                      ("example_beacon_0", "capture"),
                                      ("example_beacon_70000", "write"),
                                      ("example_beacon_x", "capture")])
def test_bad_format_strings(fmt, role):
    with pytest.raises(spec.FormatError) as exc:
        formats.get(fmt, role)
    assert "\n" not in str(exc.value) and fmt in str(exc.value)


def test_disk_reader_end_to_end(tmp_path):
    """The plugin runs through the real capture engine like a built-in format."""
    data = np.random.default_rng(5).integers(0, 256, (8, 3, 40), dtype=np.uint8)
    raw = batch.encode_packets(formats.get("example_beacon_40", "write"), batch.headerinfo(),
                               1000, 1, 0, 1, data)
    path = tmp_path / "beacon.dat"
    path.write_bytes(raw)
    statuses, calls, seqs = capture_file(path, "example_beacon_40", 3, "set_example_beacon")
    assert statuses[0] == 0 and statuses[-1] == 1
    assert calls == [(1000, 1000, 40, 3)]
    assert len(seqs) == 1 and seqs[0][0] == 1000
    assert np.array_equal(seqs[0][1], data.reshape(-1))
