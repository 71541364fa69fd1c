"""asbru.sockets.packet_ring: the TPACKET_V3 ring sees exactly the UDP datagrams sent to
the sniffed address and port on loopback, once each; the compiled walker stays in bounds."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from numba import njit

from asbru.address import Address
from asbru.errors import ArgumentError, PermissionNeeded
from asbru.sockets import bpf
from asbru.sockets import packet_ring as pr
from asbru.udp_socket import UDPSocket


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _open_ring(port: int, **kw) -> pr.PacketRing:
    try:
        return pr.PacketRing.open(Address("127.0.0.1", port), **kw)
    except PermissionNeeded as exc:
        pytest.skip(f"not permitted: {exc}")


def _collect(ring: pr.PacketRing, want: int, limit_s: float = 5.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + limit_s
    while len(got) < want and time.monotonic() < deadline:
        got += ring.read_payloads(100)
    # a little longer: anything extra (duplicates, other ports) would show up now
    got += ring.read_payloads(50)
    return got


@njit(nogil=True, cache=True)
def _consume_ready(ring, bsize, nblock, b, off, length, out_sum):
    """Compiled consumer: walk every ready block from b, summing payload bytes."""
    nblocks = 0
    npkt = 0
    while pr.block_status(ring, bsize, b) & pr.TP_STATUS_USER:
        n = pr.walk_block(ring, bsize, b, off, length)
        for i in range(n):
            p = ring[off[i]:off[i] + length[i]]
            for j in range(p.shape[0]):
                out_sum[0] += p[j]
        npkt += n
        pr.release_block(ring, bsize, b)
        b = (b + 1) % nblock
        nblocks += 1
    return b, nblocks, npkt


def test_exact_payloads_once_each_across_block_wraps():
    port = _free_port()
    # Blocks are handed over when full (64 KiB) or 50 ms old; a round is ~80 KB, so it
    # takes at least 2 blocks and 10 rounds wrap the 8-block ring at least twice.  (A short
    # retire time on a loaded machine would hand over many part-filled blocks while this
    # thread is still sending and overflow the small ring.)
    with _open_ring(port, block_size=1 << 16, block_count=8, retire_ms=50) as ring:
        assert ring.sock.fileno() >= 0 and ring.sock.sniff_interface == "lo"
        sent: list[bytes] = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for rnd in range(10):
                batch = [bytes([rnd, i]) + os.urandom(8 + 97 * i) for i in range(40)]
                for p in batch:
                    tx.sendto(p, ("127.0.0.1", port))
                sent += batch
                got = _collect(ring, len(batch))
                assert got == batch, f"round {rnd}: ring stats (packets, drops) = {ring.stats()}"
        assert ring.blocks_read >= 2 * ring.block_count          # the ring wrapped
        packets, drops = ring.stats()
        assert (packets, drops) == (len(sent), 0)


def test_traffic_while_the_ring_opens_is_neither_queued_nor_counted():
    # Other traffic on lo (tests running beside this one) while the ring is being set up:
    # the packet socket used to be hooked to the interface before its port filter was in,
    # so PACKET_STATISTICS counted what came in meanwhile (422 packets for 400 sent).
    import threading
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as noise:
        sink.bind(("127.0.0.1", 0))
        stop = threading.Event()

        def flood():
            while not stop.is_set():
                for _ in range(100):
                    noise.sendto(b"not for the ring", sink.getsockname())
        th = threading.Thread(target=flood, daemon=True)
        th.start()
        try:
            rings = [_open_ring(_free_port(), block_size=1 << 16, block_count=4)
                     for _ in range(20)]
        finally:
            stop.set()
            th.join(10)
    for ring in rings:
        with ring:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                tx.sendto(b"mine", ("127.0.0.1", ring.address.port))
            assert _collect(ring, 1) == [b"mine"]
            assert ring.stats() == (1, 0)


def test_other_ports_and_addresses_are_not_seen():
    port = _free_port()
    with _open_ring(port, block_size=1 << 16, block_count=4) as ring, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other_rx:
        other_rx.bind(("127.0.0.1", 0))      # ours: nobody else's traffic, and it arrives here
        other = other_rx.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.sendto(b"to other port", ("127.0.0.1", other))
            tx.sendto(b"to other address", ("127.0.0.2", port))
            tx.sendto(b"mine", ("127.0.0.1", port))
        assert _collect(ring, 1) == [b"mine"]
        other_rx.settimeout(5)
        assert other_rx.recv(100) == b"to other port"


def test_ipv4_options_are_skipped_by_header_length():
    port = _free_port()
    with _open_ring(port, block_size=1 << 16, block_count=4) as ring:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            # 8 bytes of options (NOP x 7 + EOL): IHL = 7 words instead of 5
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, b"\x01" * 7 + b"\x00")
            tx.sendto(b"with options", ("127.0.0.1", port))
        assert _collect(ring, 1) == [b"with options"]


def test_compiled_consumer_walks_and_releases_blocks():
    port = _free_port()
    with _open_ring(port, block_size=1 << 16, block_count=8, retire_ms=50) as ring:
        payloads = [bytes([i % 251]) * (500 + i) for i in range(60)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for p in payloads:
                tx.sendto(p, ("127.0.0.1", port))
        total = np.zeros(1, np.int64)
        b, npkt = 0, 0
        deadline = time.monotonic() + 5
        while npkt < len(payloads) and time.monotonic() < deadline:
            if pr.wait(ring.pollfd, 100) < 0:
                break
            b, _nb, n = _consume_ready(ring.ring, ring.block_size, ring.block_count, b,
                                       ring.off, ring.length, total)
            npkt += n
        assert npkt == len(payloads)
        assert total[0] == sum(sum(p) for p in payloads)


def test_walker_never_leaves_the_block_on_garbage():
    bsize = 4096
    ring = np.zeros(3 * bsize, np.uint8)
    off = np.zeros(pr.max_frames_per_block(bsize), np.int64)
    length = np.zeros_like(off)
    rng = np.random.default_rng(7)
    for trial in range(300):
        ring[bsize:2 * bsize] = rng.integers(0, 256, bsize, dtype=np.uint8)
        if trial % 2:   # plausible block header so the frame loop is actually exercised
            ring[bsize + 12:bsize + 24] = np.frombuffer(
                np.array([50, 48, bsize], np.uint32).tobytes(), np.uint8)
        n = pr.walk_block(ring, bsize, 1, off, length)
        assert 0 <= n <= off.shape[0]
        for i in range(n):
            assert bsize <= off[i] and off[i] + length[i] <= 2 * bsize and length[i] >= 0
    assert pr.walk_block(ring, bsize, 3, off, length) == 0       # block index out of range
    assert pr.block_status(ring, bsize, 7) == 0


def test_bpf_filter_program_shape():
    prog = bpf.udp4_dest(4015, "127.0.0.1")
    assert prog[-1]["code"] == 0x06 and prog[-1]["k"] == 0          # reject
    assert prog[-2]["code"] == 0x06 and prog[-2]["k"] > 0           # accept
    assert len(bpf.udp4_dest(4015, "0.0.0.0")) == len(prog) - 2      # wildcard: no address test


def test_bad_arguments():
    with pytest.raises(ArgumentError, match="sniff"):
        pr.PacketRing(UDPSocket())
    s = UDPSocket()
    try:
        s.sniff(Address("127.0.0.1", _free_port()))
    except PermissionNeeded as exc:
        pytest.skip(f"not permitted: {exc}")
    try:
        with pytest.raises(ArgumentError, match="block_size must be a multiple of the page size"):
            pr.PacketRing(s, block_size=1000)
        with pytest.raises(ArgumentError, match="block_count"):
            pr.PacketRing(s, block_count=0)
    finally:
        s.close()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run a child without CAP_NET_RAW")
def test_without_cap_net_raw_the_error_says_what_is_needed():
    code = ("from asbru.address import Address\n"
            "from asbru.errors import PermissionNeeded\n"
            "from asbru.sockets.packet_ring import PacketRing\n"
            "try:\n    PacketRing.open(Address('127.0.0.1', 4015))\n"
            "except PermissionNeeded as e:\n    print('NEEDS', e)\n")
    out = subprocess.run(["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw",
                          sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.startswith("NEEDS sniff: the packet sniffer needs CAP_NET_RAW")
    assert out.stdout.count("\n") == 1
