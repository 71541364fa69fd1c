"""DiskWriter and UDPTransmit reproduce real Bifrost's writer output byte for byte.

Every vector directory of the shared vectors (tests/helpers/vectors_path.py) that was made by Bifrost's DiskWriter is
replayed call by call from its write.json (HeaderInfo setters, send() arguments, slices of
input.npy) and the bytes are compared with Bifrost's output.dat: on disk (a real file in
tmp_path) and on the wire (a real UDP socket on 127.0.0.1, every datagram received).
"""
from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest

import asbru
from asbru import dtypes
from asbru.formats.spec import FormatError
from asbru.packet_writer import DiskWriter, HeaderInfo, UDPTransmit

from helpers.vectors_path import VECTORS
WRITER_VECTORS = ["generic", "simple", "chips", "tbn", "drx", "drx_2src", "drx8", "ibeam",
                  "ibeam1_2src", "pbeam", "cor", "tbf", "vbeam"]

_SLICE = re.compile(r"^input\[(\d+):(\d+), (\d+):(\d+), :\]$")


def _load(name: str) -> tuple[dict, np.ndarray, bytes]:
    d = VECTORS / name
    if not (d / "write.json").exists():
        pytest.skip(f"vector {name} not present under {VECTORS}")
    spec = json.loads((d / "write.json").read_text())
    return spec, np.load(d / "input.npy"), (d / "output.dat").read_bytes()


def _slice(inp: np.ndarray, text: str) -> np.ndarray:
    m = _SLICE.match(text)
    assert m, f"unexpected slice description {text!r}"
    t0, t1, s0, s1 = map(int, m.groups())
    return np.ascontiguousarray(inp[t0:t1, s0:s1])


def _as_bifrost(arr: np.ndarray, dtype: str, style: str) -> np.ndarray:
    """input.npy storage -> an array send() accepts.  ``style`` "structured" uses the
    asbru/Bifrost dtypes (asbru.ndarray for ci4), "plain" the plain numpy spellings."""
    if style == "plain":
        return arr  # uint8 for ci4/u8, int8/int16 (..., 2) for ci8/ci16, complex64, float32
    if dtype == "ci4":
        return asbru.asarray(arr.view(dtypes.ci4))
    if dtype in ("ci8", "ci16"):
        st = dtypes.ci8 if dtype == "ci8" else dtypes.ci16
        return np.ascontiguousarray(arr).view(st)[..., 0]
    return asbru.asarray(arr)


def _writer_format(spec: dict) -> str:
    try:
        asbru.formats.get(spec["format"], role="write")
    except FormatError as exc:
        pytest.fail(f"format {spec['format']!r} is not writable: {exc}")
    return spec["format"]


def _replay(writer, spec: dict, inp: np.ndarray, style: str) -> int:
    hdr = HeaderInfo()
    for name, value in spec["header_setters_initial"]:
        getattr(hdr, name)(value)
    npkt = 0
    for call in spec["calls"]:
        for name, value in call["setters_before_call"]:
            getattr(hdr, name)(value)
        data = _as_bifrost(_slice(inp, call["data"]), spec["data_dtype"], style)
        npkt += writer.send(hdr, call["seq0"], call["seq_increment"], call["src0"],
                            call["src_increment"], data)
    return npkt


def _packet_size(spec: dict, expected: bytes) -> int:
    total = sum(int(np.prod([int(a) - int(b) for b, a in zip(*[iter(_SLICE.match(c["data"]).groups())] * 2)]))
                for c in spec["calls"])
    assert len(expected) % total == 0
    return len(expected) // total


@pytest.mark.parametrize("style", ["structured", "plain"])
@pytest.mark.parametrize("name", WRITER_VECTORS)
def test_disk_writer_matches_bifrost(name: str, style: str, tmp_path: Path) -> None:
    spec, inp, expected = _load(name)
    fmt = _writer_format(spec)
    path = tmp_path / "out.dat"
    with open(path, "wb") as fh, DiskWriter(fmt, fh) as writer:
        npkt = _replay(writer, spec, inp, style)
    got = path.read_bytes()
    assert len(got) == len(expected) == spec["file_bytes"]
    assert got == expected
    st = writer.stats
    assert (st.nvalid, st.nvalid_bytes, st.ninvalid, st.ninvalid_bytes) == (npkt, len(got), 0, 0)


@pytest.mark.parametrize("method", ["writev", "image", "overlapped"])
@pytest.mark.parametrize("name", ["tbn", "chips", "generic", "pbeam"])
def test_disk_writer_methods_agree(name: str, method: str, tmp_path: Path, monkeypatch) -> None:
    spec, inp, expected = _load(name)
    fmt = _writer_format(spec)
    path = tmp_path / "out.dat"
    finished = []
    if method == "overlapped":
        # staging slots of one record: every send of 4 packets or more copies and writes
        # in two threads (asbru/writers/overlap.py), filling its headers time step by time step
        from asbru.writers import disk, overlap
        monkeypatch.setattr(disk, "STAGE_BYTES", 1)
        real = overlap.finish_copy
        monkeypatch.setattr(overlap, "finish_copy", lambda *a: finished.append(1) or real(*a))
    with open(path, "wb") as fh:
        _replay(DiskWriter(fmt, fh, method="image" if method == "overlapped" else method),
                spec, inp, "plain")
    assert path.read_bytes() == expected
    assert bool(finished) == (method == "overlapped")


def _udp_pair(rcvbuf: int = 64 << 20) -> tuple[socket.socket, socket.socket]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), rcvbuf)
    except OSError:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2.0)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname())
    return rx, tx


def _receive(rx: socket.socket, n: int, maxsize: int = 65536) -> list[bytes]:
    return [rx.recv(maxsize) for _ in range(n)]


@pytest.mark.parametrize("name", WRITER_VECTORS)
def test_udp_transmit_matches_bifrost(name: str) -> None:
    spec, inp, expected = _load(name)
    fmt = _writer_format(spec)
    psize = _packet_size(spec, expected)
    rx, tx = _udp_pair()
    with rx, tx:
        with UDPTransmit(fmt, tx) as writer:
            npkt = _replay(writer, spec, inp, "structured" if name in ("tbn", "drx") else "plain")
        got = _receive(rx, npkt)
        rx.setblocking(False)
        with pytest.raises(BlockingIOError):
            rx.recv(65536)  # nothing more than the packets
    assert npkt == len(expected) // psize
    assert all(len(g) == psize for g in got)
    assert b"".join(got) == expected
    assert writer.stats.nvalid == npkt and writer.stats.ninvalid == 0
