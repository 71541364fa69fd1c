"""UDPCapture over real loopback sockets: asbru's UDPTransmit -> UDPCapture, IPv6, multicast
pinned to lo, shutdown from another thread, late floods, oversize and empty datagrams, and
a Python socket with settimeout()."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from asbru.address import Address
from asbru.capture.testing import RingCollector, free_udp_port, run_capture
from asbru.packet_capture import UDPCapture
from asbru.packet_writer import HeaderInfo, UDPTransmit
from asbru.ring import Ring
from asbru.udp_socket import UDPSocket

from helpers.chips import FMT, P, chips_stream, in_order, slot_of

DECIM = 10


def _tbn_roundtrip(group: str, bind_iface=None, send_iface=None, family=None):
    port = free_udp_port("::1" if ":" in group else "127.0.0.1")
    nsrc, ntime = 4, 32
    rng = np.random.default_rng(5)
    data = rng.integers(-127, 128, (ntime, nsrc, 512, 2), dtype=np.int8)
    isock = UDPSocket()
    isock.bind(Address(group, port), interface=bind_iface) if bind_iface else isock.bind(Address(group, port))
    isock.timeout = 0.5
    ring = Ring(name=f"tbn_{group}")
    ring.resize(4096, 8 << 20)
    cap = UDPCapture("tbn", isock, ring, nsrc, 0, 9000, 8, 64, None)
    col = RingCollector(ring, 8 * nsrc * 1024)
    osock = UDPSocket()
    osock.connect(Address(group, port), interface=send_iface) if send_iface else osock.connect(Address(group, port))
    w = UDPTransmit("tbn", osock)
    hdr = HeaderInfo()
    hdr.set_tuning(123456789)
    hdr.set_gain(20)
    t0 = 512 * DECIM * 5000
    for t in range(ntime):  # one frame per send(), as Bifrost's tests
        w.send(hdr, t0 + t * 512 * DECIM, 512 * DECIM, 0, 1, data[t:t + 1])
    statuses = run_capture(cap)
    cap.end()
    seqs = col.join()
    isock.close()
    osock.close()
    assert statuses[0] == 0 and statuses[-1] == 1
    assert len(seqs) == 1 and cap.sequence_history[0]["seq0"] == 5000
    ring_slots = seqs[0].data.reshape(-1, 512, nsrc, 2)
    # every frame, including the first ones Bifrost loses while learning the decimation
    assert ring_slots.shape[0] == ntime
    expect = data.transpose(0, 2, 1, 3).view(np.uint8)  # [time][sample][input][re, im]
    assert np.array_equal(ring_slots, expect)
    assert seqs[0].time_tag == t0  # value family: the time tag of seq0
    st = cap.stats
    assert st["nvalid"] == ntime * nsrc and st["ninvalid"] == 0 and st["nmissing_bytes"] == 0


def test_udptransmit_to_udpcapture_ipv4():
    _tbn_roundtrip("127.0.0.1")


def test_ipv6_loopback():
    _tbn_roundtrip("::1")


def test_multicast_pinned_to_loopback():
    _tbn_roundtrip("224.0.0.251", bind_iface="lo", send_iface="lo")


def _bound(timeout=None):
    port = free_udp_port()
    s = UDPSocket()
    s.bind(Address("127.0.0.1", port))
    if timeout:
        s.timeout = timeout
    return s, port


def test_shutdown_from_another_thread_ends_a_blocking_recv():
    nsrc = 1
    s, port = _bound()  # no timeout: recv() blocks
    cap = UDPCapture("chips", s, None, nsrc, 0, 9000, 4, 4, None)
    col = RingCollector(cap.ring, 4 * nsrc * P)
    data, pk = chips_stream(6, nsrc, seed=21)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for p in in_order(pk, 6, nsrc):
        out.sendto(p, ("127.0.0.1", port))
    statuses = []
    th = threading.Thread(target=lambda: statuses.extend(run_capture(cap)), daemon=True)
    th.start()
    time.sleep(0.3)
    s.shutdown()
    th.join(10)
    assert not th.is_alive()
    assert statuses[0] == 0 and statuses[-1] == 1  # the open sequence ENDED
    cap.end()
    seqs = col.join()
    got = seqs[0].data.reshape(-1, nsrc * P)
    assert got.shape[0] == 6 and all(np.array_equal(got[t], slot_of(data[t])) for t in range(6))
    out.close()
    s.close()


def test_flood_of_late_packets_returns_and_counts():
    nsrc, n = 1, 4
    s, port = _bound(timeout=0.3)
    cap = UDPCapture("chips", s, None, nsrc, 0, 9000, n, n, None, budget=200)
    col = RingCollector(cap.ring, n * nsrc * P)
    data, pk = chips_stream(12, nsrc, seed=22)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for p in in_order(pk, 12, nsrc):
        out.sendto(p, ("127.0.0.1", port))
    late = pk[(1, 0)]
    for i in range(1000):
        out.sendto(late, ("127.0.0.1", port))
        if i % 100 == 99:
            time.sleep(0.001)
    statuses = run_capture(cap)
    cap.end()
    col.join()
    st = cap.stats
    assert st["nvalid"] == 12 and st["nlate"] == st["nreceived"] - 12  # each counted once
    assert st["nlate"] + st["nkernel_drops"] >= 1000
    assert statuses.count(2) >= st["nlate"] // 200  # bounded work: returned regularly
    assert statuses[-1] == 1
    out.close()
    s.close()


def test_oversize_and_empty_datagrams_are_invalid_not_the_end():
    nsrc = 1
    s, port = _bound(timeout=0.3)
    cap = UDPCapture("chips", s, None, nsrc, 0, 1000, 4, 4, None)  # 1000-byte packets at most
    col = RingCollector(cap.ring, 4 * nsrc * P)
    data, pk = chips_stream(8, nsrc, seed=23)
    packets = in_order(pk, 8, nsrc)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i, p in enumerate(packets):
        if i == 3:
            out.sendto(b"", ("127.0.0.1", port))
            out.sendto(p + bytes(2000), ("127.0.0.1", port))  # too big: invalid, never truncated
        out.sendto(p, ("127.0.0.1", port))
    statuses = run_capture(cap)
    cap.end()
    seqs = col.join()
    assert statuses[0] == 0 and statuses[-1] == 1 and len(seqs) == 1
    st = cap.stats
    assert st["ninvalid"] == 2 and st["nvalid"] == 8
    # empty datagram 0 + the big one's real size (not the 1000 bytes kept of it)
    assert st["ninvalid_bytes"] == len(packets[3]) + 2000
    got = seqs[0].data.reshape(-1, nsrc * P)
    assert all(np.array_equal(got[t], slot_of(data[t])) for t in range(8))
    out.close()
    s.close()


def test_python_socket_with_settimeout():
    nsrc = 2
    port = free_udp_port()
    ps = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ps.bind(("127.0.0.1", port))
    ps.settimeout(0.3)  # non-blocking descriptor: asbru waits in poll()
    cap = UDPCapture("chips", ps, None, nsrc, 0, 9000, 4, 4, None)
    col = RingCollector(cap.ring, 4 * nsrc * P)
    data, pk = chips_stream(8, nsrc, seed=24)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for p in in_order(pk, 8, nsrc):
        out.sendto(p, ("127.0.0.1", port))
    statuses = run_capture(cap)
    assert statuses[0] == 0 and statuses[-1] == 1
    assert int(cap.recv()) == 4  # nothing more: NO_DATA once poll() times out
    cap.end()
    seqs = col.join()
    got = seqs[0].data.reshape(-1, nsrc * P)
    assert all(np.array_equal(got[t], slot_of(data[t])) for t in range(8))
    out.close()
    ps.close()
