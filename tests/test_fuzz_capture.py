"""Fuzzing whole captures: DiskReader over files of garbage mixed with real records, and
UDPCapture over garbage datagrams on 127.0.0.1.

Whatever arrives, the capture must not crash or hang, and every packet the backend handed
over must be counted exactly once: ``nvalid + ninvalid + nlate + nduplicate`` equals the
records in the file / the datagrams sent (after ``end()``, which counts held packets).
Records that were not touched by the fuzzer must reach the ring intact.
"""
from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from asbru.address import Address
from asbru.capture.testing import RingCollector, free_udp_port, run_capture
from asbru import formats
from asbru.formats import batch
from asbru.packet_capture import DiskReader, PacketCaptureCallback, UDPCapture
from asbru.ring import Ring
from asbru.udp_socket import UDPSocket

SETTINGS = settings(max_examples=6, deadline=None, derandomize=True,
                    phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

NCHAN = 4
P = 32 * NCHAN
RS = 16 + P
FMT = f"chips_{NCHAN}"


def _chips(ntime: int, nsrc: int, seed: int) -> tuple[np.ndarray, list[bytes]]:
    data = np.random.default_rng(seed).integers(0, 256, (ntime, nsrc, P), dtype=np.uint8)
    raw = batch.encode_packets(formats.get(FMT, "write"),
                               batch.headerinfo(nsrc=nsrc, nchan=NCHAN, chan0=100), 1001, 1, 0, 1, data)
    return data, [raw[i * RS:(i + 1) * RS] for i in range(ntime * nsrc)]


def _slot(data_t: np.ndarray) -> np.ndarray:
    nsrc = data_t.shape[0]
    return data_t.reshape(nsrc, NCHAN, 32).transpose(1, 0, 2).ravel()


_nring = iter(range(10**9))


def _big_ring() -> Ring:
    # room for the whole capture: the collector thread may open the sequence only after the
    # capture has written several gulps (a later reader is not guaranteed, data would be
    # overwritten: size_overwritten > 0)
    ring = Ring(name=f"fuzzcap_{next(_nring)}")
    ring.resize(4096, 8 << 20)
    return ring


_MUTATIONS = st.sampled_from(["noise", "flip", "zero_header", "ones_header", "bad_src",
                              "huge_seq", "nchan0", "nchan_big"])


def _mutate(pkt: bytes, how: str, rng: np.random.Generator) -> bytes:
    b = bytearray(pkt)
    if how == "noise":
        return rng.integers(0, 256, len(b), dtype=np.uint8).tobytes()
    if how == "flip":
        for _ in range(int(rng.integers(1, 6))):
            i = int(rng.integers(0, 16))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif how == "zero_header":
        b[:16] = bytes(16)
    elif how == "ones_header":
        b[:16] = b"\xff" * 16
    elif how == "bad_src":
        b[0] = 200                     # roach 200 of a 3-source stream
    elif how == "huge_seq":
        b[8:16] = (1 << 62).to_bytes(8, "big")
    elif how == "nchan0":
        b[2] = 0
    elif how == "nchan_big":
        b[2] = 255                     # more channels than the payload holds
    return bytes(b)


@SETTINGS
@given(seed=st.integers(0, 10**6), nbad=st.integers(1, 40), muts=st.lists(_MUTATIONS, min_size=1, max_size=4),
       tail=st.integers(0, RS - 1))
def test_diskreader_on_mixed_garbage_counts_every_record(tmp_path_factory, seed, nbad, muts, tail):
    nsrc, ntime = 3, 40
    rng = np.random.default_rng(seed)
    data, packets = _chips(ntime, nsrc, seed)
    records = list(packets)
    touched = set()
    for _ in range(nbad):
        i = int(rng.integers(0, len(records)))
        how = muts[int(rng.integers(0, len(muts)))]
        if rng.integers(0, 2):
            records.insert(i, _mutate(records[i], how, rng))       # extra garbage record
        else:
            touched.add(records[i])
            records[i] = _mutate(records[i], how, rng)             # replaced by garbage
    path = tmp_path_factory.mktemp("fz") / "mixed.dat"
    blob = b"".join(records) + rng.integers(0, 256, tail, dtype=np.uint8).tobytes()
    path.write_bytes(blob)
    # a corrupt chan0/nchan may start a new sequence, and the next good packet another one
    # at the same seq0: give every sequence its own time tag so the ring's sequences can be
    # told apart by it
    tags = iter(range(10**9, 10**9 + 100000))
    cb = PacketCaptureCallback()
    cb.set_chips(lambda seq0, chan0, nchan, nsrc_: (next(tags), None))
    with open(path, "rb") as fh:
        cap = DiskReader(FMT, fh, _big_ring(), nsrc, 0, 4, 4, cb, budget=2000)
        col = RingCollector(cap.ring, 4 * nsrc * P)
        statuses = run_capture(cap, max_calls=5000)
        cap.end()
        seqs = col.join(30)
    assert statuses[-1] in (1, 4)
    s = cap.stats
    nrec = len(records) + (1 if tail else 0)   # a short tail is one (invalid) record
    assert s["nvalid"] + s["ninvalid"] + s["nlate"] + s["nduplicate"] == nrec
    assert s["nreceived"] == nrec
    assert all(q.overwritten == 0 for q in seqs)
    # the first sequence: untouched packets whose (seq, src) no corrupt record claims are
    # in the ring with their bytes (a corrupt record decoding to the same slot may come first)
    claimed = set()
    for rec in records:
        if rec not in packets:
            desc, status = batch.decode_buffer(formats.get(FMT, "disk"),
                                               np.frombuffer(rec, np.uint8).copy(),
                                               np.zeros(1, np.int64), np.array([len(rec)]), nsrc)
            if status[0] == 0:
                claimed.add((int(desc[0, 0]), int(desc[0, 1])))
    if seqs and cap.sequence_history[0]["seq0"] == 1000 and seqs[0].flags is not None:
        got = seqs[0].data.reshape(-1, nsrc * P)
        checked = 0
        for t in range(min(ntime, got.shape[0])):
            for src in range(nsrc):
                if packets[t * nsrc + src] in touched or (1000 + t, src) in claimed:
                    continue
                assert seqs[0].flags[t, src] == 1, (t, src)
                want = _slot(data[t]).reshape(NCHAN, nsrc, 32)[:, src]
                assert np.array_equal(got[t].reshape(NCHAN, nsrc, 32)[:, src], want), (t, src, seed, nbad, muts, tail, cap.sequence_history[:3])
                checked += 1
        assert checked > 0


def test_one_corrupt_chan0_does_not_kill_the_capture(tmp_path):
    """One packet with a corrupt CHANGE field (chan0) inside a clean stream: the capture must
    go on (no exception, e.g. from a repeated seq0/time tag), keep every good packet and
    count the corrupt one exactly once."""
    nsrc, ntime = 2, 40
    data, packets = _chips(ntime, nsrc, 5)
    bad = bytearray(packets[17 * nsrc]); bad[6:8] = (999).to_bytes(2, "big")  # chan0 bit errors
    packets.insert(17 * nsrc + 1, bytes(bad))
    path = tmp_path / "one_bad.dat"
    path.write_bytes(b"".join(packets))
    with open(path, "rb") as fh:
        cap = DiskReader(FMT, fh, _big_ring(), nsrc, 0, 4, 4, None)
        col = RingCollector(cap.ring, 4 * nsrc * P)
        statuses = run_capture(cap)
        cap.end()
        seqs = col.join(30)
    assert statuses[-1] == 1
    s = cap.stats
    assert s["nvalid"] + s["ninvalid"] + s["nlate"] + s["nduplicate"] == len(packets)
    # every good packet is in the ring, in the sequence(s) that cover its seq
    got = {}
    for hist, q in zip(cap.sequence_history, seqs):
        r = q.data.reshape(-1, nsrc * P)
        for k in range(r.shape[0]):
            got[hist["seq0"] + k] = (r[k], q.flags[k])
    for t in range(ntime):
        row, fl = got[1000 + t]
        if t != 17 or len(seqs) == 1:
            assert fl.all() and np.array_equal(row, _slot(data[t])), t


def _udp_capture(nsrc: int, max_payload: int = 9000):
    port = free_udp_port()
    sock = UDPSocket()
    sock.bind(Address("127.0.0.1", port))
    sock.timeout = 0.3
    cap = UDPCapture(FMT, sock, _big_ring(), nsrc, 0, max_payload, 4, 4, None, budget=4000)
    return sock, port, cap


@SETTINGS
@given(seed=st.integers(0, 10**6), ngarbage=st.integers(1, 300),
       sizes=st.lists(st.integers(0, 9500), min_size=1, max_size=8))
def test_udpcapture_on_garbage_datagrams_counts_every_datagram(seed, ngarbage, sizes):
    nsrc, ntime = 2, 24
    rng = np.random.default_rng(seed)
    _, packets = _chips(ntime, nsrc, seed)
    out: list[bytes] = []
    for p in packets:
        out.append(p)
        if rng.integers(0, 3) == 0:
            out.append(_mutate(p, ["noise", "flip", "bad_src", "huge_seq", "nchan_big"][int(rng.integers(0, 5))], rng))
    for _ in range(ngarbage):
        n = sizes[int(rng.integers(0, len(sizes)))]
        out.insert(int(rng.integers(0, len(out) + 1)), rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    for attempt in range(2):
        sock, port, cap = _udp_capture(nsrc)
        col = RingCollector(cap.ring, 4 * nsrc * P)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for i, dgram in enumerate(out):
                tx.sendto(dgram, ("127.0.0.1", port))
                if i % 64 == 63:
                    time.sleep(0.002)  # pacing: the kernel must drop nothing
            statuses = run_capture(cap, max_calls=5000)
            cap.end()
            col.join(30)
        finally:
            tx.close()
            sock.close()
        s = cap.stats
        if s["nkernel_drops"] == 0:
            break
    assert s["nkernel_drops"] == 0, "inconclusive: the kernel dropped datagrams twice"
    assert statuses[-1] in (1, 4)
    assert s["nvalid"] + s["ninvalid"] + s["nlate"] + s["nduplicate"] == len(out) == s["nreceived"]
    assert s["nvalid"] >= 1
