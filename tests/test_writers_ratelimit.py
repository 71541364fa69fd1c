"""Rate limiting: even pacing, no catch-up burst after idle, limiter state machine.

Rates are measured where they matter, at the receiver, from the kernel's arrival
timestamps (SO_TIMESTAMPNS), so a slow test process does not distort them.
"""
from __future__ import annotations

import socket
import statistics
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from asbru.errors import ArgumentError
from asbru.packet_writer import DiskWriter, HeaderInfo, UDPTransmit
from asbru.writers import ratelimit as rl

_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def _receiver() -> socket.socket:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 64 << 20)
    rx.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2.0)
    return rx


def _arrivals(rx: socket.socket, n: int) -> np.ndarray:
    """Kernel arrival time (s) of the next n datagrams."""
    t = np.empty(n)
    for k in range(n):
        _, anc, _, _ = rx.recvmsg(2048, 64)
        (level, kind, raw), = anc
        assert level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS
        sec, nsec = struct.unpack("qq", raw[:16])
        t[k] = sec + nsec * 1e-9
    return t


def _connected_writer(rx: socket.socket, fmt: str = "generic_64") -> tuple[socket.socket, UDPTransmit]:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname())
    return tx, UDPTransmit(fmt, tx)


def test_rate_limit_20000_pps_within_5_percent() -> None:
    rate, n = 20_000, 20_000                   # one second of packets in ONE send()
    data = np.zeros((n, 1, 64), np.uint8)
    measured = []
    for _attempt in range(3):
        rx = _receiver()
        tx, w = _connected_writer(rx)
        with rx, tx:
            w.set_rate_limit(rate)
            assert w.send(HeaderInfo(), 0, 1, 0, 1, data) == n
            t = _arrivals(rx, n)
        measured.append((n - 1) / (t[-1] - t[0]))
        # evenness: no second of the stream carries a catch-up burst; bursts are <= 16
        gaps = np.diff(t)
        assert np.count_nonzero(gaps > 0.5 * 16 / rate) >= n // 16 // 2
    med = statistics.median(measured)
    assert abs(med - rate) <= 0.05 * rate, measured


def test_no_burst_after_idle() -> None:
    # Bifrost: the same 100-packet send after 0.3 s idle took 0.00 s (catch-up burst)
    rx = _receiver()
    tx, w = _connected_writer(rx)
    data = np.zeros((100, 1, 64), np.uint8)
    with rx, tx:
        w.set_rate_limit(1000)
        w.send(HeaderInfo(), 0, 1, 0, 1, data)
        first = _arrivals(rx, 100)
        time.sleep(0.3)
        t0 = time.perf_counter()
        w.send(HeaderInfo(), 0, 1, 0, 1, data)
        elapsed = time.perf_counter() - t0
        second = _arrivals(rx, 100)
    assert 0.09 <= elapsed < 0.5
    for t in (first, second):
        assert 0.09 <= t[-1] - t[0] < 0.5
        assert np.max(np.diff(t)) < 0.05


def test_rate_limit_applies_to_disk_writer(tmp_path: Path) -> None:
    with open(tmp_path / "x", "wb") as fh:
        w = DiskWriter("generic_64", fh)
        w.set_rate_limit(2000)
        t0 = time.perf_counter()
        w.send(HeaderInfo(), 0, 1, 0, 1, np.zeros((201, 1, 64), np.uint8))
        elapsed = time.perf_counter() - t0
    assert elapsed >= 0.09  # 200 intervals of 0.5 ms; unlimited would take microseconds
    assert (tmp_path / "x").stat().st_size == 201 * 64


def test_rate_limit_off_again_and_reset(tmp_path: Path) -> None:
    with open(tmp_path / "x", "wb") as fh:
        w = DiskWriter("generic_64", fh)
        w.set_rate_limit(100)
        assert w.rate_limit == 100
        w.set_rate_limit(0)
        t0 = time.perf_counter()
        w.send(HeaderInfo(), 0, 1, 0, 1, np.zeros((500, 1, 64), np.uint8))
        assert time.perf_counter() - t0 < 2.0   # at 100 pkt/s this would take 5 s
        w.reset_rate_limit()


@pytest.mark.parametrize("value", [-1, 1.5, "100", None, True])
def test_bad_rate_limit(value, tmp_path: Path) -> None:
    with open(tmp_path / "x", "wb") as fh:
        with pytest.raises(ArgumentError, match="packets_per_second"):
            DiskWriter("generic_64", fh).set_rate_limit(value)


# -- the limiter state machine, driven directly ----------------------------------------------
def test_limiter_bursts_and_restart() -> None:
    lim = rl.RateLimiter()
    lim.set(20_000)
    assert lim.state[rl.R_BURST] == 16
    assert rl.pace(lim.state, lim.ts, 1000, True) == 16      # first burst: at once, at most 16
    rl.paced(lim.state, 16)
    assert lim.state[rl.R_COUNT] == 16
    # pretend the run started long ago: more than a burst behind -> restart, no catch-up
    lim.state[rl.R_T0] -= 10_000_000_000
    assert rl.pace(lim.state, lim.ts, 1000, True) == 16
    assert lim.state[rl.R_NRESTART] == 1 and lim.state[rl.R_COUNT] == 0
    lim.set(500)
    assert lim.state[rl.R_BURST] == 1                   # low rates: packet by packet
    lim.set(0)
    assert rl.pace(lim.state, lim.ts, 1000, True) == 1000     # unlimited: everything at once


def test_limiter_rebases_whole_seconds_exactly() -> None:
    lim = rl.RateLimiter()
    lim.set(1000)
    rl.pace(lim.state, lim.ts, 1, True)
    t0 = int(lim.state[rl.R_T0])
    rl.paced(lim.state, 2500)                           # 2.5 s worth of packets
    assert lim.state[rl.R_COUNT] == 500 and lim.state[rl.R_T0] == t0 + 2_000_000_000


def test_limiter_catches_up_short_preemption_inside_a_send_only() -> None:
    lim = rl.RateLimiter()
    lim.set(20_000)
    rl.pace(lim.state, lim.ts, 16, True)
    rl.paced(lim.state, 16)
    lim.state[rl.R_T0] -= 5_000_000                     # 5 ms late: more than a 0.8 ms burst
    assert rl.pace(lim.state, lim.ts, 16, False) == 16  # inside a send: catch up, no restart
    assert lim.state[rl.R_NRESTART] == 0 and lim.state[rl.R_COUNT] == 16
    assert rl.pace(lim.state, lim.ts, 16, True) == 16   # a new send(): the caller was late
    assert lim.state[rl.R_NRESTART] == 1 and lim.state[rl.R_COUNT] == 0
