"""Fault injection: writer -> loss / reorder / duplication / corruption / truncation ->
capture (DiskReader, and UDPCapture on 127.0.0.1) for chips, tbn, drx and cor.

Faults are injected by choosing which packets to write/send (never by relying on the
network): for UDP the receive buffer is big and sending is paced, and a run where the
kernel dropped anything is inconclusive and retried once.  Then:

* every delivered ring slot equals the reference placement of the packets delivered
  (the format's own ``place`` on a zero slot), every missing (time, source) is zero and
  flagged 0 in ``ReadSpan.flags``;
* the statistics equal the injected truth exactly: nvalid, nduplicate, ninvalid, nlate,
  nmissing_bytes.
"""
from __future__ import annotations

import dataclasses
import os
import importlib.util
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from asbru import formats
from asbru.address import Address
from asbru.capture.testing import RingCollector, free_udp_port, run_capture
from asbru.formats import batch, spec
from asbru.packet_capture import DiskReader, UDPCapture
from asbru.ring import Ring
from asbru.udp_socket import UDPSocket

_TOOL = Path(__file__).resolve().parent.parent / "tools" / "fuzz.py"
if "asbru_tools_fuzz" not in sys.modules:
    _s = importlib.util.spec_from_file_location("asbru_tools_fuzz", _TOOL)
    _m = importlib.util.module_from_spec(_s)
    sys.modules["asbru_tools_fuzz"] = _m
    _s.loader.exec_module(_m)
fuzz = sys.modules["asbru_tools_fuzz"]

N = 4          # buffer_ntime
NTIME = 24     # time steps written
_ring_ids = iter(range(10**9))


@dataclasses.dataclass
class Truth:
    send: list[bytes]                   # what is written / sent, in order
    delivered: dict[tuple[int, int], bytes]  # (t, s) -> the valid packet that reaches the ring
    nvalid: int = 0
    nduplicate: int = 0
    nlate: int = 0
    ninvalid: int = 0
    ninvalid_bytes: int = 0


def _corrupt(name: str, pkt: bytes) -> bytes:
    """A packet every decoder must reject."""
    b = bytearray(pkt)
    if name == "chips":
        b[0] = 0xFF          # roach 255: source out of range
    else:
        b[0:4] = bytes([0x00, 0x11, 0x22, 0x33])  # no sync word
    return bytes(b)


def plan(name: str, seed: int, loss: float = 0.08, dup: float = 0.05, corrupt: float = 0.04,
         reorder: int = 3, late: int = 2, garbage: int = 3) -> Truth:
    """The injected faults, chosen deterministically from ``seed``."""
    rng = np.random.default_rng(seed)
    pk = fuzz.stream(name, NTIME, seed)
    nsrc = fuzz.FUZZ_FORMATS[name].nsrc
    out: list[bytes] = []
    delivered: dict[tuple[int, int], bytes] = {}
    tr = Truth(out, delivered)
    for t, s, p in pk:
        edge = t == 0 or t == NTIME - 1          # keep the first/last slot: fixed range
        r = rng.random()
        if not edge and r < loss:
            continue                              # lost
        if not edge and r < loss + corrupt:
            c = _corrupt(name, p)                 # replaced by a corrupt copy: missing + invalid
            out.append(c)
            tr.ninvalid += 1
            tr.ninvalid_bytes += len(c)
            continue
        out.append(p)
        delivered[(t, s)] = p
        tr.nvalid += 1
        if rng.random() < dup:
            out.append(p)                         # duplicate, right behind: its gulp is open
            tr.nduplicate += 1
    # reorder: shuffle inside windows of `reorder` packets (less than a gulp: nothing late)
    for i in range(nsrc * 2, len(out) - reorder, reorder):
        w = out[i:i + reorder]
        rng.shuffle(w)
        out[i:i + reorder] = w
    # garbage datagrams/records (never valid: bad sync / source 255), and late copies of t=0
    for _ in range(garbage):
        i = int(rng.integers(nsrc * 2, len(out)))
        g = _corrupt(name, out[i])
        out.insert(i, g)
        tr.ninvalid += 1
        tr.ninvalid_bytes += len(g)
    for k in range(late):
        out.append(pk[k % nsrc][2])  # time 0, far behind the window by now
        tr.nlate += 1
    return tr


def _reference(name: str, tr: Truth, nsrc: int, src0: int) -> tuple[dict[int, np.ndarray], dict]:
    """seq -> expected slot bytes (reference placement), and (t, s) -> (seq, src)."""
    cf = formats.get(fuzz.FUZZ_FORMATS[name].capture, "capture")
    keys = sorted(tr.delivered)
    buf = np.frombuffer(b"".join(tr.delivered[k] for k in keys), np.uint8).copy()
    lens = np.array([len(tr.delivered[k]) for k in keys], np.int64)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    desc, status = batch.decode_buffer(cf, buf, offs, lens, nsrc, src0)
    assert (status == spec.VALID).all(), name
    p = int(desc[0, spec.PAYLOAD_SIZE])
    slots: dict[int, np.ndarray] = {}
    where = {}
    for i, k in enumerate(keys):
        d = desc[i]
        seq = int(d[spec.SEQ])
        where[k] = (seq, int(d[spec.SRC]))
        slot = slots.setdefault(seq, np.zeros(nsrc * p, np.uint8))
        po = int(offs[i] + d[spec.PAYLOAD_OFFSET])
        cf.place(buf[po:po + p], d, slot, nsrc)
    return slots, where


def _check(name: str, tr: Truth, cap, seqs) -> None:
    ff = fuzz.FUZZ_FORMATS[name]
    nsrc = ff.nsrc
    slots, where = _reference(name, tr, nsrc, ff.src0)
    p = cap.sequence_info["payload_size"]
    assert len(seqs) == 1 and len(cap.sequence_history) == 1, [s["seq0"] for s in cap.sequence_history]
    seq0 = cap.sequence_history[0]["seq0"]
    rows = seqs[0].data.reshape(-1, nsrc * p)
    flags = seqs[0].flags
    seq_first = min(slots)
    seq_last = max(slots)
    assert seq0 == seq_first and rows.shape[0] == seq_last - seq0 + 1
    got_flags = {(seq0 + k, s) for k in range(rows.shape[0]) for s in range(nsrc) if flags[k, s]}
    assert got_flags == set(where.values())      # flagged exactly the delivered packets
    for k in range(rows.shape[0]):
        want = slots.get(seq0 + k)
        if want is None:
            want = np.zeros(nsrc * p, np.uint8)   # a whole time step missing: all zero
        assert np.array_equal(rows[k], want), (name, k)
    st = cap.stats
    nmissing = rows.shape[0] * nsrc - len(where)
    assert (st["nvalid"], st["nduplicate"], st["nlate"], st["ninvalid"]) == \
        (tr.nvalid, tr.nduplicate, tr.nlate, tr.ninvalid)
    assert st["nmissing_bytes"] == nmissing * p
    assert st["ninvalid_bytes"] == tr.ninvalid_bytes
    assert st["nvalid_bytes"] == st["ngood_bytes"] == tr.nvalid * p


def _ring() -> Ring:
    ring = Ring(name=f"faults_{next(_ring_ids)}")
    ring.resize(4096, 16 << 20)  # holds the whole capture: no reader race
    return ring


FORMATS = ["chips", "tbn", "drx", "cor"]


def _gulp_bytes(name: str) -> int:
    """Read whole gulps: a span that ends inside a time slot gets that slot's flag row too,
    so the concatenated flags would no longer line up with the data."""
    ff = fuzz.FUZZ_FORMATS[name]
    return N * ff.nsrc * int(formats.get(ff.write, "write").params.payload_size)


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("seed", [1, 2])
def test_diskreader_statistics_equal_injected_truth(tmp_path, name, seed):
    tr = plan(name, seed)
    ff = fuzz.FUZZ_FORMATS[name]
    rs = len(tr.send[0])
    path = tmp_path / f"{name}.dat"
    path.write_bytes(b"".join(tr.send))
    disk_fmt = ff.write if name != "cor" else "cor_4"
    ring = _ring()
    with open(path, "rb") as fh:
        cap = DiskReader(disk_fmt, fh, ring, ff.nsrc, ff.src0, N, N, None)
        col = RingCollector(ring, _gulp_bytes(name))
        statuses = run_capture(cap)
        cap.end()
        seqs = col.join(30)
    assert statuses[0] == 0 and statuses[-1] == 1
    assert all(len(x) == rs for x in tr.send)
    _check(name, tr, cap, seqs)


@pytest.mark.parametrize("name", FORMATS)
def test_truncated_file_last_record_is_invalid(tmp_path, name):
    tr = plan(name, 3, late=0)
    ff = fuzz.FUZZ_FORMATS[name]
    cut = len(tr.send[-1]) // 3
    tail = tr.send[-1][:cut]                # the file ends in the middle of a record
    path = tmp_path / f"{name}_cut.dat"
    path.write_bytes(b"".join(tr.send) + tail)
    tr.ninvalid += 1
    tr.ninvalid_bytes += cut
    ring = _ring()
    with open(path, "rb") as fh:
        cap = DiskReader(ff.write if name != "cor" else "cor_4", fh, ring, ff.nsrc, ff.src0, N, N, None)
        col = RingCollector(ring, _gulp_bytes(name))
        run_capture(cap)
        cap.end()
        seqs = col.join(30)
    _check(name, tr, cap, seqs)


@pytest.mark.parametrize("name", FORMATS)
def test_udp_statistics_equal_injected_truth(name):
    tr = plan(name, 7)
    ff = fuzz.FUZZ_FORMATS[name]
    for attempt in range(2):
        port = free_udp_port()
        rx = UDPSocket()   # default: a big receive buffer
        rx.bind(Address("127.0.0.1", port))
        rx.timeout = 0.3
        ring = _ring()
        cap = UDPCapture(ff.capture, rx, ring, ff.nsrc, ff.src0, 9000, N, N, None)
        col = RingCollector(ring, _gulp_bytes(name))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for i, p in enumerate(tr.send):
                tx.sendto(p, ("127.0.0.1", port))
                if i % 32 == 31:
                    time.sleep(0.001)  # pacing
        statuses = run_capture(cap)
        cap.end()
        seqs = col.join(30)
        rx.close()
        if cap.stats["nkernel_drops"] == 0:
            break
    assert cap.stats["nkernel_drops"] == 0, "inconclusive twice: the kernel dropped datagrams"
    assert statuses[0] == 0 and statuses[-1] == 1
    assert cap.stats["nreceived"] == len(tr.send)
    _check(name, tr, cap, seqs)


# ------------------------------------------------------------------ through the real writers

def _chips_data(ntime: int, nsrc: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (ntime, nsrc, 4 * 32), dtype=np.uint8)


def _chips_hdr(nsrc: int):
    from asbru.packet_writer import HeaderInfo
    h = HeaderInfo()
    h.set_nsrc(nsrc)
    h.set_nchan(4)
    h.set_chan0(100)
    return h


def _chips_slot(data_t: np.ndarray) -> np.ndarray:
    nsrc = data_t.shape[0]
    return data_t.reshape(nsrc, 4, 32).transpose(1, 0, 2).ravel()


def test_diskwriter_file_cut_mid_record(tmp_path):
    """DiskWriter -> file cut in the middle of a record -> DiskReader: the complete records
    are delivered, the partial one is one invalid record, the slot it belonged to is zero
    and flagged missing."""
    from asbru.packet_writer import DiskWriter
    nsrc, ntime, rs = 3, 20, 16 + 128
    data = _chips_data(ntime, nsrc, 11)
    path = tmp_path / "cut.dat"
    with open(path, "wb") as fh:
        w = DiskWriter("chips_4", fh)
        for t in range(ntime):  # one send() per time step, as a real-time writer does
            w.send(_chips_hdr(nsrc), 1001 + t, 1, 0, 1, data[t:t + 1])
        w.close()
    nrec = ntime * nsrc - 2                   # cut inside record nrec: keep 50 bytes of it
    os.truncate(path, nrec * rs + 50)
    ring = _ring()
    with open(path, "rb") as fh:
        cap = DiskReader("chips_4", fh, ring, nsrc, 0, N, N, None)
        col = RingCollector(ring, N * nsrc * 128)
        run_capture(cap)
        cap.end()
        seqs = col.join(30)
    st = cap.stats
    assert (st["nvalid"], st["ninvalid"], st["ninvalid_bytes"]) == (nrec, 1, 50)
    rows = seqs[0].data.reshape(-1, nsrc * 128)
    assert rows.shape[0] == ntime             # up to the last slot that received a packet
    for t in range(ntime - 1):
        assert np.array_equal(rows[t], _chips_slot(data[t]))
    last = _chips_slot(data[ntime - 1]).reshape(4, nsrc, 32).copy()
    last[:, 1:] = 0                           # sources 1 and 2 of the last step never arrived
    assert np.array_equal(rows[-1], last.ravel())
    assert seqs[0].flags[-1].tolist() == [1, 0, 0]
    assert st["nmissing_bytes"] == 2 * 128


def test_udptransmit_with_skipped_and_repeated_sends():
    """UDPTransmit -> UDPCapture, faults chosen by which send() calls are made: time steps
    5 and 11 are never sent (loss), step 8 is sent twice (duplicates)."""
    from asbru.packet_writer import UDPTransmit
    nsrc, ntime = 2, 20
    data = _chips_data(ntime, nsrc, 12)
    skip, twice = {5, 11}, {8}
    for attempt in range(2):
        port = free_udp_port()
        rx = UDPSocket()
        rx.bind(Address("127.0.0.1", port))
        rx.timeout = 0.3
        ring = _ring()
        cap = UDPCapture("chips", rx, ring, nsrc, 0, 9000, N, N, None)
        col = RingCollector(ring, N * nsrc * 128)
        tx = UDPSocket()
        tx.connect(Address("127.0.0.1", port))
        w = UDPTransmit("chips_4", tx)
        for t in range(ntime):
            for _ in range(0 if t in skip else 2 if t in twice else 1):
                w.send(_chips_hdr(nsrc), 1001 + t, 1, 0, 1, data[t:t + 1])
        run_capture(cap)
        cap.end()
        seqs = col.join(30)
        rx.close()
        tx.close()
        if cap.stats["nkernel_drops"] == 0:
            break
    st = cap.stats
    assert st["nkernel_drops"] == 0
    assert (st["nvalid"], st["nduplicate"], st["nlate"], st["ninvalid"]) == \
        ((ntime - len(skip)) * nsrc, nsrc * len(twice), 0, 0)
    assert st["nmissing_bytes"] == len(skip) * nsrc * 128
    rows = seqs[0].data.reshape(-1, nsrc * 128)
    for t in range(ntime):
        want = np.zeros(nsrc * 128, np.uint8) if t in skip else _chips_slot(data[t])
        assert np.array_equal(rows[t], want), t
        assert seqs[0].flags[t].tolist() == [int(t not in skip)] * nsrc
