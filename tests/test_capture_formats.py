"""writer -> capture -> ring for every capturable format the registry reports: formats with
a Bifrost vector are covered by test_capture_vectors.py; the rest (snap2, plugin formats)
are written here with asbru's writer and captured from a file and over UDP."""
from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from asbru import formats
from asbru.address import Address
from asbru.capture.testing import RingCollector, free_udp_port, run_capture
from asbru.formats import batch
from asbru.packet_capture import DiskReader, UDPCapture
from asbru.ring import Ring
from asbru.udp_socket import UDPSocket

import helpers.format_harness as fh
from helpers.format_harness import CASES

# name -> (write string, disk string, capture string, nsrc, HeaderInfo fields, seq0[, src step])
SYNTH = {
    # LWA NDP: sources are channel blocks (first_chan = src, stepped by the block size);
    # readers with 1 time-tag tick per spectrum so that seq steps by 1
    "tbx": ("tbx_4x64", "tbx_4x64_1", "tbx_1", 3, {}, 5000, 4),
    "ndp_tbf": ("ndp_tbf", "ndp_tbf_1", "ndp_tbf_1", 3, {}, 5000, 12),
    "snap2": ("snap2_4x8", "snap2_4x8", "snap2", 4,
              dict(nsrc=4, nchan=8, chan0=1000, tuning=1234567), 100),
    "example_beacon": ("example_beacon_64", "example_beacon_64", "example_beacon", 3,
                       dict(nsrc=3), 7),
}
NOT_CAPTURABLE = {"generic", "tbf", "vbeam"}  # writer-only formats
VECTOR_FORMATS = {formats.get(c[2], "disk").name for c in CASES}


def capturable():
    return [n for n in formats.list() if n not in NOT_CAPTURABLE]


def test_every_capturable_format_is_covered():
    missing = [n for n in capturable() if n not in VECTOR_FORMATS and n not in SYNTH]
    assert not missing, f"no capture round-trip test for {missing}"


def _stream(name, ntime=24):
    wfmt, dfmt, cfmt, nsrc, info, seq0, *step = SYNTH[name]
    wf = formats.get(wfmt, "write")
    p = wf.params.payload_size
    data = np.random.default_rng(len(name)).integers(0, 256, (ntime, nsrc, p), dtype=np.uint8)
    raw = batch.encode_packets(wf, batch.headerinfo(**info), seq0, 1, 0, step[0] if step else 1, data)
    return raw, wf.params.header_size + p, nsrc


def _check(raw, dfmt, nsrc, cap, seqs, n):
    ref = fh.decode_file_to_slots(dfmt, raw, nsrc, 0)
    assert ref and len(seqs) == 1
    info = cap.sequence_history[0]
    sb, seq0 = info["slot_bytes"], info["seq0"]
    data = seqs[0].data
    assert seq0 == min(ref) and data.size == (max(ref) - seq0 + 1) * sb
    for k in range(data.size // sb):
        assert np.array_equal(data[k * sb:(k + 1) * sb], ref[seq0 + k])
    assert seqs[0].flags.all()
    assert cap.stats["nvalid"] == len(ref) * nsrc and cap.stats["ninvalid"] == 0


@pytest.mark.parametrize("name", sorted(n for n in SYNTH if n in formats.list()))
def test_synth_disk(name, tmp_path):
    raw, rs, nsrc = _stream(name)
    dfmt = SYNTH[name][1]
    path = tmp_path / "f.dat"
    path.write_bytes(raw)
    ring = Ring(name=f"synth_{name}")
    ring.resize(4096, 4 * len(raw))
    with open(path, "rb") as f:
        cap = DiskReader(dfmt, f, ring, nsrc, 0, 4, 4, None)
        col = RingCollector(ring, 4 * nsrc * (rs - formats.get(dfmt, "disk").params.header_size))
        st = run_capture(cap)
        cap.end()
        seqs = col.join()
    assert st[0] == 0 and st[-1] == 1
    _check(raw, dfmt, nsrc, cap, seqs, 4)


@pytest.mark.parametrize("name", sorted(n for n in SYNTH if n in formats.list()))
def test_synth_udp(name):
    raw, rs, nsrc = _stream(name)
    dfmt, cfmt = SYNTH[name][1], SYNTH[name][2]
    port = free_udp_port()
    sock = UDPSocket()
    sock.bind(Address("127.0.0.1", port))
    sock.timeout = 0.5
    ring = Ring(name=f"synthudp_{name}")
    ring.resize(4096, 4 * len(raw))
    cap = UDPCapture(cfmt, sock, ring, nsrc, 0, 9000, 4, 4, None)
    col = RingCollector(ring, 4 * nsrc * (rs - formats.get(dfmt, "disk").params.header_size))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        for i in range(0, len(raw), rs):
            out.sendto(raw[i:i + rs], ("127.0.0.1", port))
            if i % (32 * rs) == 0:
                time.sleep(0.001)
    st = run_capture(cap)
    cap.end()
    seqs = col.join()
    sock.close()
    assert st[0] == 0 and st[-1] == 1
    _check(raw, dfmt, nsrc, cap, seqs, 4)
