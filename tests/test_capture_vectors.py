"""Bifrost's golden vectors read back through asbru's DiskReader (and sent over UDP):
the ring must hold every valid packet in its place (asbru loses none at start-up) and
agree with Bifrost's ring wherever Bifrost's verify.json marks a slot ``match``."""
from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from asbru.address import Address
from asbru.capture.testing import RingCollector, free_udp_port, run_capture
from asbru.packet_capture import DiskReader, UDPCapture
from asbru.ring import Ring
from asbru.udp_socket import UDPSocket

import helpers.format_harness as fh
from helpers.format_harness import CASES
from helpers.vectors_path import needs_vectors

pytestmark = needs_vectors

def _ids(c):
    return f"{c[0]}-{c[1]}"


def _gulp_bytes(vec, tag, reader_fmt):
    # read spans of whole gulps, so that each span's flag rows are its own frames
    spec = vec.reads[tag].read["spec"]
    ref = fh.decode_file_to_slots(reader_fmt, vec.output, int(spec["nsrc"]), int(spec["src0"]))
    return int(spec["buffer_ntime"]) * len(next(iter(ref.values())))


def _check_ring(vec, tag, reader_fmt, cap, seqs, nrecords):
    spec = vec.reads[tag].read["spec"]
    nsrc, src0 = int(spec["nsrc"]), int(spec["src0"])
    ref = fh.decode_file_to_slots(reader_fmt, vec.output, nsrc, src0)
    assert ref, "the reference decoder found no valid packet"
    assert len(seqs) == 1 and len(cap.sequence_history) == 1
    info = cap.sequence_history[0]
    sb = info["slot_bytes"]
    seq0 = info["seq0"]
    data = seqs[0].data
    assert data.size % sb == 0
    nslots = data.size // sb
    # seq0 is the smallest seq of the stream (no rounding), the last slot is the last sent
    assert seq0 == min(ref)
    assert seq0 + nslots - 1 == max(ref)
    assert seqs[0].overwritten == 0
    flags = seqs[0].flags
    assert flags.shape == (nslots, nsrc)
    for k in range(nslots):
        mine = data[k * sb:(k + 1) * sb]
        expect = ref.get(seq0 + k)
        if expect is None:
            assert not mine.any() and not flags[k].any()
        else:
            assert np.array_equal(mine, expect), f"slot {k} (seq {seq0 + k}) differs"
    st = cap.stats
    assert st["nvalid"] + st["ninvalid"] + st["nlate"] + st["nduplicate"] == nrecords
    assert st["nvalid"] == int(flags.sum())
    assert st["ngood_bytes"] == st["nvalid_bytes"]
    assert st["ngood_bytes"] + st["nmissing_bytes"] == data.size
    if vec.reads[tag].verify is None:
        return  # Bifrost captured nothing (drx8): nothing to compare with
    slots = {seq0 + k: data[k * sb:(k + 1) * sb] for k in range(nslots)}
    cmp = fh.compare_with_bifrost(reader_fmt, vec, tag, slots=slots)
    if vec.reads[tag].rings and vec.reads[tag].rings[0].size:
        assert cmp.ok, (cmp.checked, cmp.mismatched[:5], cmp.missing[:5])


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_vector_disk(case, tmp_path):
    name, tag, reader_fmt = case
    vec = fh.load_vector(name)
    spec = vec.reads[tag].read["spec"]
    path = tmp_path / "data.dat"
    path.write_bytes(vec.output)
    ring = Ring(name=f"vec_{name}")
    ring.resize(4096, 4 * len(vec.output))  # room for the whole file: no reader race
    with open(path, "rb") as f:
        cap = DiskReader(reader_fmt, f, ring, int(spec["nsrc"]), int(spec["src0"]),
                         int(spec["buffer_ntime"]), int(spec["slot_ntime"]), None)
        col = RingCollector(ring, _gulp_bytes(vec, tag, reader_fmt))
        statuses = run_capture(cap)
        cap.end()
        seqs = col.join()
    # STARTED, CONTINUED..., ENDED: the whole file in one sequence
    assert statuses[0] == 0 and statuses[-1] == 1 and set(statuses[1:-1]) <= {2}
    rsize = cap.format.params.record_size
    _check_ring(vec, tag, reader_fmt, cap, seqs, -(-len(vec.output) // rsize))


@pytest.mark.parametrize("case", [c for c in CASES if c[1] == "clean" or c[0] == "simple"], ids=_ids)
def test_vector_udp(case):
    name, tag, reader_fmt = case
    vec = fh.load_vector(name)
    spec = vec.reads[tag].read["spec"]
    from asbru import formats
    rsize = formats.get(reader_fmt, "disk").params.record_size
    packets = [vec.output[i:i + rsize] for i in range(0, len(vec.output), rsize)]
    port = free_udp_port()
    ring = Ring(name=f"vecudp_{name}")
    ring.resize(4096, 4 * len(vec.output))
    isock = UDPSocket()
    isock.bind(Address("127.0.0.1", port))
    isock.timeout = 0.5
    cap = UDPCapture(reader_fmt.split("_")[0] if name != "vdif" else "vdif", isock, ring,
                     int(spec["nsrc"]), int(spec["src0"]), 9000, int(spec["buffer_ntime"]),
                     int(spec["slot_ntime"]), None)
    col = RingCollector(ring, _gulp_bytes(vec, tag, reader_fmt))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        for i, p in enumerate(packets):
            out.sendto(p, ("127.0.0.1", port))
            if i % 32 == 31:
                time.sleep(0.001)  # stay within the socket buffer
    statuses = run_capture(cap)
    cap.end()
    seqs = col.join()
    isock.close()
    assert statuses[0] == 0 and statuses[-1] == 1
    assert cap.stats["nkernel_drops"] == 0
    _check_ring(vec, tag, reader_fmt, cap, seqs, len(packets))
