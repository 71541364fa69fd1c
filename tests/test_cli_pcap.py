"""asbru.pcap in process: the compiled record walk never reads outside the file."""
from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from asbru import pcap


def _frame(payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 1, 2, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\x7f\0\0\1",
                     b"\x7f\0\0\1") + udp
    return b"\0" * 12 + b"\x08\x00" + ip


def _file(frames, linktype=1):
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for fr in frames:
        out.append(struct.pack("<IIII", 0, 0, len(fr), len(fr)) + fr)
    return b"".join(out)


def _walk(data: bytes, linktype: int):
    buf = np.frombuffer(data, dtype=np.uint8)
    cap = max(1, (buf.size - 24) // 16 + 1)
    arrs = [np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(cap, np.float64),
            np.zeros(cap, np.int64), np.zeros(cap, np.int64)]
    n, nrec, trunc = pcap.walk_records(buf, False, False, linktype, *arrs)
    return buf, arrs, n, nrec


def test_payloads_are_found(tmp_path):
    frames = [_frame(bytes([k]) * (10 + k)) for k in range(5)]
    path = tmp_path / "a.pcap"
    path.write_bytes(_file(frames))
    p = pcap.read_payloads(path)
    assert p.nrecords == 5 and p.skipped == 0 and not p.truncated
    got = [bytes(p.buf[o: o + n]) for o, n in zip(p.offsets, p.lengths)]
    assert got == [bytes([k]) * (10 + k) for k in range(5)]
    assert list(p.dst_ports) == [2] * 5


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=80), min_size=1, max_size=6),
       st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=12),
       st.sampled_from([0, 1, 101, 113, 276]))
def test_mutated_files_stay_in_bounds(payloads, flips, linktype):
    data = bytearray(_file([_frame(p) for p in payloads], linktype))
    for pos, val in flips:
        if 24 <= pos < len(data):
            data[pos] = val
    buf, (offs, lens, _, _, _), n, nrec = _walk(bytes(data), linktype)
    assert 0 <= n <= nrec
    for k in range(n):
        assert 0 <= offs[k] and 0 <= lens[k] and offs[k] + lens[k] <= buf.size


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=24, max_size=300), st.sampled_from([0, 1, 101, 113, 276]))
def test_random_bytes_stay_in_bounds(data, linktype):
    buf, (offs, lens, _, _, _), n, nrec = _walk(data, linktype)
    for k in range(n):
        assert offs[k] + lens[k] <= buf.size
