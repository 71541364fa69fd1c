"""UDPSniffer: asbru's own UDPTransmit -> loopback -> TPACKET_V3 ring -> capture -> Ring.

Real datagrams on 127.0.0.1, real sniffing sockets (CAP_NET_RAW; skipped without it), a
real reader thread.  The ring must hold exactly what was sent, gaps zero-filled and flagged
and counted, as UDPCapture does.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from asbru.address import Address
from asbru.capture.sniffer import UDPSniffer, have_cap_net_raw
from asbru.capture.testing import RingCollector, free_udp_port, run_capture
from asbru.errors import ArgumentError, PermissionNeeded
from asbru.packet_writer import HeaderInfo, UDPTransmit
from asbru.ring import Ring
from asbru.udp_socket import UDPSocket

needs_raw = pytest.mark.skipif(not have_cap_net_raw(), reason="CAP_NET_RAW is not available")

SMALL_RING = {"sniff_block_size": 1 << 18, "sniff_block_count": 8}


def _sniffing_socket(port: int) -> UDPSocket:
    s = UDPSocket()
    s.sniff(Address("127.0.0.1", port))
    s.timeout = 0.3
    return s


def _transmitter(fmt: str, port: int) -> tuple[UDPSocket, UDPTransmit]:
    tx = UDPSocket()
    tx.connect(Address("127.0.0.1", port))
    return tx, UDPTransmit(fmt, tx)


def _chips_expected(data: np.ndarray) -> np.ndarray:
    """Ring bytes of chips time slots: [chan][src][32 bytes]."""
    ntime, nsrc, p = data.shape
    return data.reshape(ntime, nsrc, p // 32, 32).transpose(0, 2, 1, 3).reshape(-1)


def _capture_all(cap, ring):
    col = RingCollector(ring, 1 << 16)
    statuses = run_capture(cap)
    cap.end()
    return statuses, col.join()


@needs_raw
def test_chips_round_trip_equals_input():
    port = free_udp_port()
    sock = _sniffing_socket(port)
    ring = Ring(name="sniff_chips")
    nsrc, nchan, ntime = 4, 4, 48
    cap = UDPSniffer("chips", sock, ring, nsrc, 0, 9000, 8, 1, None, **SMALL_RING)
    tx, w = _transmitter(f"chips_{nchan}", port)
    info = HeaderInfo()
    info.set_nchan(nchan)
    info.set_chan0(100)
    info.set_nsrc(nsrc)
    data = np.random.default_rng(7).integers(0, 256, size=(ntime, nsrc, 32 * nchan), dtype=np.uint8)
    assert w.send(info, 1, 1, 0, 1, data) == ntime * nsrc
    statuses, seqs = _capture_all(cap, ring)
    tx.close()
    sock.close()
    assert statuses[0] == 0 and statuses[-1] == 1        # STARTED ... ENDED
    assert len(seqs) == 1
    assert np.array_equal(seqs[0].data, _chips_expected(data))
    assert seqs[0].flags.shape == (ntime, nsrc) and seqs[0].flags.all()
    st = cap.stats
    assert st["nvalid"] == st["nreceived"] == ntime * nsrc
    assert st["ninvalid"] == st["nlate"] == st["nduplicate"] == st["nmissing_bytes"] == 0
    assert st["ngood_bytes"] == data.size
    assert cap.sequence_info["seq0"] == 0                # header seq 1 is seq 0


@needs_raw
def test_tbn_fixed_size_frames_are_not_truncated():
    # Bifrost's sniffer cuts 28 bytes off every 1048-byte tbn frame and rejects them all
    port = free_udp_port()
    sock = _sniffing_socket(port)
    ring = Ring(name="sniff_tbn")
    nsrc, ntime, dec = 2, 24, 10
    step = 512 * dec
    cap = UDPSniffer("tbn", sock, ring, nsrc, 0, 9000, 4, 1, None, **SMALL_RING)
    tx, w = _transmitter("tbn", port)
    info = HeaderInfo()
    info.set_tuning(123456)
    data = np.random.default_rng(3).integers(-128, 128, size=(ntime, nsrc, 512, 2), dtype=np.int8)
    t0 = 1000 * step
    assert w.send(info, t0, step, 0, 1, data) == ntime * nsrc
    statuses, seqs = _capture_all(cap, ring)
    tx.close()
    sock.close()
    assert statuses[0] == 0 and statuses[-1] == 1
    st = cap.stats
    assert st["nvalid"] == ntime * nsrc and st["ninvalid"] == 0
    assert cap.sequence_info["seq0"] == 1000
    # slot layout [sample][input][re, im]
    expected = data.transpose(0, 2, 1, 3).reshape(-1).view(np.uint8)
    assert np.array_equal(seqs[0].data, expected)


@needs_raw
def test_gaps_duplicates_and_invalid_are_counted():
    port = free_udp_port()
    sock = _sniffing_socket(port)
    ring = Ring(name="sniff_gaps")
    nsrc, nchan, ntime, p = 4, 2, 16, 64
    cap = UDPSniffer("chips", sock, ring, nsrc, 0, 9000, 4, 1, None, **SMALL_RING)
    tx, w = _transmitter(f"chips_{nchan}", port)
    info = HeaderInfo()
    info.set_nchan(nchan)
    data = np.random.default_rng(11).integers(1, 256, size=(ntime, nsrc, p), dtype=np.uint8)
    received = np.ones((ntime, nsrc), dtype=bool)
    for t in range(ntime):
        if t == 5:       # source 3 lost
            w.send(info, t + 1, 1, 0, 1, data[t:t + 1, :3])
            received[t, 3] = False
        elif t == 9:     # the whole time slot lost
            received[t] = False
        else:
            w.send(info, t + 1, 1, 0, 1, data[t:t + 1])
        if t == 2:       # the same row again: duplicates
            w.send(info, t + 1, 1, 0, 1, data[t:t + 1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(b"not a chips packet", ("127.0.0.1", port))
        raw.sendto(b"x" * 100, ("127.0.0.1", port + 1 if port < 65535 else port - 1))  # other port
    statuses, seqs = _capture_all(cap, ring)
    tx.close()
    sock.close()
    assert statuses[0] == 0 and statuses[-1] == 1
    expected = data.copy()
    expected[~received] = 0
    assert np.array_equal(seqs[0].data, _chips_expected(expected))
    assert np.array_equal(seqs[0].flags.astype(bool), received)
    st = cap.stats
    assert st["nvalid"] == received.sum()
    assert st["nduplicate"] == nsrc
    assert st["ninvalid"] == 1                      # the garbage datagram; the other port is filtered
    assert st["nreceived"] == received.sum() + nsrc + 1
    assert st["nmissing_bytes"] == (~received).sum() * p
    assert list(st["per_source"]["missing"]) == [1, 1, 1, 2]


@needs_raw
def test_same_ring_and_statistics_as_udpcapture():
    # one stream seen by both backends at once: the engine is shared, so the rings, flags
    # and counters must be identical
    from asbru.packet_capture import UDPCapture
    port = free_udp_port()
    usock = UDPSocket()
    usock.bind(Address("127.0.0.1", port))
    usock.timeout = 0.3
    ssock = _sniffing_socket(port)
    uring, sring = Ring(name="both_udp"), Ring(name="both_sniff")
    nsrc, nchan, ntime = 3, 3, 40
    ucap = UDPCapture("chips", usock, uring, nsrc, 0, 9000, 4, 1, None)
    scap = UDPSniffer("chips", ssock, sring, nsrc, 0, 9000, 4, 1, None, **SMALL_RING)
    tx, w = _transmitter(f"chips_{nchan}", port)
    info = HeaderInfo()
    info.set_nchan(nchan)
    data = np.random.default_rng(2).integers(0, 256, size=(ntime, nsrc, 32 * nchan), dtype=np.uint8)
    w.send(info, 1, 1, 0, 1, data[:10])
    w.send(info, 12, 1, 0, 1, np.ascontiguousarray(data[11:20, :2]))  # slot 10 lost; src 2 lost 11..19
    w.send(info, 21, 1, 0, 1, data[20:])
    w.send(info, 3, 1, 0, 1, data[2:3])           # far behind the window by now: late
    ucol, scol = RingCollector(uring, 1 << 16), RingCollector(sring, 1 << 16)
    ust, sst = run_capture(ucap), run_capture(scap)
    ucap.end()
    scap.end()
    useqs, sseqs = ucol.join(), scol.join()
    tx.close()
    usock.close()
    ssock.close()
    assert ust == sst
    assert len(useqs) == len(sseqs) == 1
    assert np.array_equal(useqs[0].data, sseqs[0].data)
    assert np.array_equal(useqs[0].flags, sseqs[0].flags)
    a, b = ucap.stats, scap.stats
    for key in ("nvalid", "nvalid_bytes", "ninvalid", "nlate", "nduplicate", "ngood_bytes",
                "nmissing_bytes", "nreceived", "nsequences"):
        assert a[key] == b[key], key
    for key in ("valid", "late", "duplicate", "missing"):
        assert np.array_equal(a["per_source"][key], b["per_source"][key]), key
    assert b["nlate"] == nsrc and b["nmissing_bytes"] == (nsrc + 9) * 32 * nchan


@needs_raw
def test_a_timeout_set_between_recv_calls_is_the_next_calls():
    """recv() waits for the socket's timeout as it is at that call: the sniffer takes the
    value last set (UDPSocket.requested_timeout), not one read once."""
    import time
    port = free_udp_port()
    sock = _sniffing_socket(port)
    sock.timeout = 1.0
    cap = UDPSniffer("chips", sock, Ring(name=f"sniff_timeout_{port}"), 2, 0, 9000, 4, 1, None,
                     **SMALL_RING)
    try:
        t0 = time.monotonic()
        assert int(cap.recv()) == 4                      # NO_DATA after the timeout
        slow = time.monotonic() - t0
        sock.timeout = 0.05
        t0 = time.monotonic()
        assert int(cap.recv()) == 4
        fast = time.monotonic() - t0
        assert slow >= 0.9 and fast < 0.5, (slow, fast)
    finally:
        cap.end()
        sock.close()


@needs_raw
def test_ipv4_options_move_the_payload():
    # the payload is found from the IPv4 header length, not at a fixed 28 bytes
    port = free_udp_port()
    sock = _sniffing_socket(port)
    ring = Ring(name="sniff_ipopt")
    cap = UDPSniffer("chips", sock, ring, 2, 0, 9000, 2, 1, None, **SMALL_RING)
    hdr = lambda roach, seq: bytes([roach, 0, 1, 1, 0, 2, 0, 0]) + seq.to_bytes(8, "big")
    payloads = {(s, r): os.urandom(32) for s in (1, 2) for r in (1, 2)}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, b"\x01\x01\x01\x00")  # 4 option bytes
        for (s, r), pl in payloads.items():
            raw.sendto(hdr(r, s) + pl, ("127.0.0.1", port))
    statuses, seqs = _capture_all(cap, ring)
    sock.close()
    assert cap.stats["nvalid"] == 4 and cap.stats["ninvalid"] == 0
    want = b"".join(payloads[(s, r)] for s in (1, 2) for r in (1, 2))
    assert seqs[0].data.tobytes() == want


@needs_raw
def test_bound_socket_holds_the_port_and_queues_nothing():
    port = free_udp_port()
    sock = UDPSocket()
    sock.bind(Address("127.0.0.1", port))
    sock.timeout = 0.3
    ring = Ring(name="sniff_bound")
    cap = UDPSniffer("chips", sock, ring, 2, 0, 9000, 4, 1, None, **SMALL_RING)
    tx, w = _transmitter("chips_1", port)
    info = HeaderInfo()
    info.set_nchan(1)
    data = np.random.default_rng(5).integers(0, 256, size=(8, 2, 32), dtype=np.uint8)
    w.send(info, 1, 1, 0, 1, data)
    statuses, seqs = _capture_all(cap, ring)
    assert np.array_equal(seqs[0].data, _chips_expected(data))
    assert w.stats.ninvalid == 0 and w.last_error == 0     # no ICMP port-unreachable
    # the bound socket itself queued nothing (drop-all filter)
    with socket.socket(fileno=os.dup(sock.fileno())) as dup:
        dup.setblocking(False)
        with pytest.raises(BlockingIOError):
            dup.recv(100)
    tx.close()
    # end() detached the filter: the socket is an ordinary bound socket again
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(b"after", ("127.0.0.1", port))
    with socket.socket(fileno=os.dup(sock.fileno())) as dup:
        dup.settimeout(5)
        assert dup.recv(100) == b"after"
    sock.close()


@needs_raw
def test_kernel_ring_overflow_is_counted_as_kernel_drops():
    port = free_udp_port()
    sock = _sniffing_socket(port)
    ring = Ring(name="sniff_drops")
    # two one-page blocks hold a few dozen small frames; the rest overflow in the kernel
    cap = UDPSniffer("chips", sock, ring, 4, 0, 9000, 4, 1, None, sniff_block_size=4096,
                     sniff_block_count=2, sniff_retire_ms=1000)
    tx, w = _transmitter("chips_1", port)
    info = HeaderInfo()
    info.set_nchan(1)
    data = np.random.default_rng(9).integers(0, 256, size=(50, 4, 32), dtype=np.uint8)
    assert w.send(info, 1, 1, 0, 1, data) == 200
    statuses, seqs = _capture_all(cap, ring)
    tx.close()
    sock.close()
    st = cap.stats
    assert 0 < st["nvalid"] < 200
    assert st["nkernel_drops"] == 200 - st["nreceived"] > 0
    assert st["nvalid"] == st["nreceived"] and st["ninvalid"] == 0
    # what did arrive is in place, bit-exact, and flagged
    flags = seqs[0].flags.astype(bool)
    assert flags.sum() == st["nvalid"]
    seq0 = cap.sequence_info["seq0"]
    got = seqs[0].data.reshape(-1, 4, 32)
    want = data[seq0:seq0 + got.shape[0]].copy()
    want[~flags] = 0
    assert np.array_equal(got, want)


def test_bad_socket_arguments_are_one_line():
    ring = Ring(name="sniff_args")
    with pytest.raises(ArgumentError, match="sock must be") as e:
        UDPSniffer("chips", object(), ring, 1, 0, 9000, 4, 1, None)
    assert "\n" not in str(e.value)
    with pytest.raises(ArgumentError, match="not open"):
        UDPSniffer("chips", UDPSocket(), ring, 1, 0, 9000, 4, 1, None)
    with pytest.raises(ArgumentError, match="sniff_block_count"):
        UDPSniffer("chips", UDPSocket(), ring, 1, 0, 9000, 4, 1, None, sniff_block_count=0)


def test_permission_needed_without_cap_net_raw_probe(monkeypatch):
    import asbru.capture.sniffer as sn
    monkeypatch.setattr(sn, "have_cap_net_raw", lambda: False)
    sock = UDPSocket()
    sock.bind(Address("127.0.0.1", 0))
    ring = Ring(name="sniff_perm")
    with pytest.raises(PermissionNeeded, match="CAP_NET_RAW") as e:
        UDPSniffer("chips", sock, ring, 1, 0, 9000, 4, 1, None)
    assert "\n" not in str(e.value)
    # the ring was not touched: a real capture can still write it
    from asbru.packet_capture import UDPCapture
    UDPCapture("chips", sock, ring, 1, 0, 9000, 4, 1, None).end()
    sock.close()


_CHILD = textwrap.dedent("""
    import sys
    from asbru.address import Address
    from asbru.capture.sniffer import UDPSniffer, have_cap_net_raw
    from asbru.errors import PermissionNeeded
    from asbru.udp_socket import UDPSocket
    assert not have_cap_net_raw()
    for mode in ("bound", "sniff"):
        s = UDPSocket()
        try:
            if mode == "bound":
                s.bind(Address("127.0.0.1", 0))
            else:
                s.sniff(Address("127.0.0.1", 4000))
            UDPSniffer("chips", s, 4, 0, 9000, 4, 1, None)
        except PermissionNeeded as exc:
            print(mode, "PermissionNeeded:", exc)
        else:
            print(mode, "no error")
""")


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv is not installed")
@needs_raw
def test_permission_needed_in_a_process_without_cap_net_raw():
    cmd = ["setpriv", "--inh-caps=-all", "--bounding-set=-net_raw", "--",
           sys.executable, "-c", _CHILD]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except OSError as exc:
        pytest.skip(f"setpriv cannot run here: {exc}")
    if "Operation not permitted" in proc.stderr and proc.returncode != 0 and not proc.stdout:
        pytest.skip(f"setpriv is not permitted here: {proc.stderr.strip()[:100]}")
    assert proc.returncode == 0, proc.stderr[-800:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    for line, mode in zip(lines, ("bound", "sniff")):
        assert line.startswith(f"{mode} PermissionNeeded:") and "CAP_NET_RAW" in line
