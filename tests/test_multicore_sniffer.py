"""UDPSniffer(..., threads=N): N packet sockets of one PACKET_FANOUT group, each drained by
its own thread, into one ring (docs/multicore.md).  Real datagrams on 127.0.0.1, real
packet sockets (CAP_NET_RAW; skipped without it).

Sixteen senders (one UDP socket each, so that the fanout group's by-source program spreads
them), a stream with gaps and a duplicate (sent again by the same sender: it meets its
original in one thread), sent one gulp at a time as tests/test_multicore.py does; one
thread and N threads must agree on every count and every byte of the ring.
"""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from asbru.address import Address
from asbru.capture.sniffer import UDPSniffer, have_cap_net_raw
from asbru.capture.testing import RingCollector, TERMINAL
from asbru.errors import ArgumentError
from asbru.ring import Ring
from asbru.udp_socket import UDPSocket

from helpers.chips_stream import NCHAN, NSRC, NTIME, SEQ0, chips

pytestmark = pytest.mark.skipif(not have_cap_net_raw(), reason="CAP_NET_RAW is not available")

NGULP = 5
GAPS = ((1, 3, 5), (3, 0, 0), (3, 0, 1))       # (gulp, time, source) never sent
DUP = (2, 4, 9)                                 # sent twice by its sender
COUNTS = ("nvalid", "nvalid_bytes", "nlate", "nduplicate", "nduplicate_bytes", "ninvalid",
          "ngood_bytes", "nmissing_bytes", "nreceived", "nsequences")


def sniff_stream(threads: int):
    sock = UDPSocket()
    sock.bind(Address("127.0.0.1", 0))
    sock.timeout = 0.5
    port = sock._sock.getsockname()[1]
    ring = Ring(name=f"mcsniff_{threads}_{time.monotonic_ns() & 0xffffff:x}")
    cap = UDPSniffer("chips", sock, ring, NSRC, 0, 9000, NTIME, 1, None, threads=threads)
    col = RingCollector(ring, NTIME * NSRC * 32 * NCHAN)
    senders = []
    statuses: list = []

    def receive():      # the documented loop, until the stream has been quiet for a timeout
        try:
            while not statuses or statuses[-1] not in TERMINAL:
                statuses.append(int(cap.recv()))
        except BaseException as exc:  # surfaced below
            statuses.append(exc)

    rx = threading.Thread(target=receive, daemon=True)
    rx.start()
    sent = 0
    try:
        for _ in range(NSRC):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            senders.append(s)
        deadline = time.monotonic() + 60
        for g in range(NGULP):
            for t in range(NTIME):
                for s in range(NSRC):
                    if (g, t, s) in GAPS:
                        continue
                    n = 2 if (g, t, s) == DUP else 1
                    for _ in range(n):
                        senders[s].sendto(chips(s, SEQ0 + g * NTIME + t), ("127.0.0.1", port))
                    sent += n
            # a gulp at a time, each received before the next is sent (tests/test_multicore.py)
            while cap.stats["nreceived"] < sent:
                assert time.monotonic() < deadline, "the sniffer stopped receiving"
                time.sleep(0.002)
        rx.join(30)
        assert not rx.is_alive()
        cap.end()
        seqs = col.join(30)
    finally:
        for s in senders:
            s.close()
        sock.close()
    assert not any(isinstance(x, BaseException) for x in statuses), statuses
    return cap, seqs, sent


@pytest.fixture(scope="module")
def single():
    return sniff_stream(1)


@pytest.mark.parametrize("threads", [2, 3])
def test_n_sniffing_threads_fill_one_ring_exactly(single, threads):
    cap1, seqs1, sent = single
    capn, seqsn, sentn = sniff_stream(threads)
    s1, sn = cap1.stats, capn.stats
    assert type(cap1) is UDPSniffer and "per_thread" not in s1
    assert capn.steering.startswith("PACKET_FANOUT")
    npk = NGULP * NTIME * NSRC
    assert sent == sentn == npk - len(GAPS) + 1
    assert s1["nreceived"] == sent and s1["nvalid"] == npk - len(GAPS)
    assert s1["nduplicate"] == 1 and s1["nmissing_bytes"] == len(GAPS) * 32 * NCHAN
    assert {k: sn[k] for k in COUNTS} == {k: s1[k] for k in COUNTS}
    assert sn["per_source"]["duplicate"][DUP[2]] == 1
    rows = sn["per_thread"]
    assert len(rows) == threads + 1 and sn["threads"] == threads
    for k in ("nreceived", "nvalid", "nlate", "nduplicate", "ninvalid"):
        assert sum(r[k] for r in rows) == sn[k], k
    assert sum(1 for r in rows[1:] if r["nreceived"] > 0) >= 2        # spread over threads
    assert sum(r["nvalid"] for r in rows[1:]) > sn["nvalid"] // 2     # placed by them
    # the ring: the same sequence, bytes and flags; the data is what was sent
    assert [(q.time_tag, q.header) for q in seqsn] == [(q.time_tag, q.header) for q in seqs1]
    a, b = seqsn[0], seqs1[0]
    assert a.data.size == b.data.size == npk * 32 * NCHAN and np.array_equal(a.data, b.data)
    if b.flags is not None:
        assert np.array_equal(a.flags, b.flags)
    got = a.data.reshape(-1, NCHAN, NSRC, 32)
    want = np.frombuffer(chips(12, SEQ0 + 37)[16:], np.uint8).reshape(NCHAN, 32)
    assert np.array_equal(got[37, :, 12], want) and not got[NTIME + 3, :, 5].any()


def test_sniffer_group_arguments():
    sock = UDPSocket()
    sock.bind(Address("127.0.0.1", 0))
    try:
        with pytest.raises(ArgumentError, match="socks: UDPSniffer spreads one address"):
            UDPSniffer("chips", sock, None, NSRC, 0, 9000, NTIME, 1, None, socks=[sock])
        with pytest.raises(ArgumentError, match="threads must be an integer"):
            UDPSniffer("chips", sock, None, NSRC, 0, 9000, NTIME, 1, None, threads=2.5)
        with pytest.raises(ArgumentError, match="cores must list 2 CPU numbers"):
            UDPSniffer("chips", sock, None, NSRC, 0, 9000, NTIME, 1, None, threads=2, cores=[0, 1, 2])
        cap = UDPSniffer("chips", sock, None, NSRC, 0, 9000, NTIME, 1, None, threads=1)
        assert type(cap) is UDPSniffer
        cap.end()
    finally:
        sock.close()


def test_bifrost_sniff_socket_with_threads():
    """Bifrost's usage, ``sock.sniff(addr)`` then the sniffer, with ``threads=2``: the
    sniffing socket is the group's first member; every datagram counted once, in the
    ring once."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    sock = UDPSocket()
    sock.sniff(Address("127.0.0.1", port))
    sock.timeout = 0.3
    ring = Ring(name=f"mcsniff_bf_{time.monotonic_ns() & 0xffffff:x}")
    cap = UDPSniffer("chips", sock, ring, NSRC, 0, 9000, NTIME, 1, None, threads=2)
    col = RingCollector(ring, NTIME * NSRC * 32 * NCHAN)
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(NSRC)]
    try:
        for t in range(2 * NTIME):
            for s, tx in enumerate(senders):
                tx.sendto(chips(s, SEQ0 + t), ("127.0.0.1", port))
        st: list = []
        while not st or st[-1] not in TERMINAL:
            st.append(int(cap.recv()))
        cap.end()
        seqs = col.join(30)
    finally:
        for tx in senders:
            tx.close()
        sock.close()
    d = cap.stats
    assert d["nreceived"] == d["nvalid"] == 2 * NTIME * NSRC and d["nmissing_bytes"] == 0
    assert sum(r["nreceived"] for r in d["per_thread"]) == d["nreceived"]
    assert seqs[0].data.size == 2 * NTIME * NSRC * 32 * NCHAN
