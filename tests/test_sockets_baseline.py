"""The C baseline programs build, and count real loopback datagrams exactly."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.baseline.build import BuildError, build, run_sender, start_receiver  # noqa: E402


@pytest.fixture(scope="module")
def exe(tmp_path_factory):
    try:
        return build(tmp_path_factory.mktemp("baseline"))
    except BuildError as exc:
        pytest.skip(str(exc))


def test_sender_to_receiver_counts_every_packet(exe):
    rx = start_receiver(exe.rx, 2000, ring_mib=8, timeout=5.0)
    try:
        tx = run_sender(exe.tx, rx.port, 2000, 1024, nsrc=4)
        res = rx.result(timeout=60)
    finally:
        rx.kill()
    assert tx["packets"] == 2000 and tx["bytes"] == 2000 * (16 + 1024)
    assert res["packets"] == 2000 and res["invalid"] == 0 and res["bytes"] == 2000 * 1040


def test_receiver_rejects_short_and_foreign_packets(exe):
    rx = start_receiver(exe.rx, 6, nsrc=2, ring_mib=1, timeout=5.0)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("127.0.0.1", rx.port))
            good = lambda roach, seq: bytes([roach]) + bytes(7) + seq.to_bytes(8, "big") + b"p" * 64
            s.send(good(1, 1))
            s.send(b"short")                 # < 16 bytes
            s.send(good(3, 1))               # roach 3 with nsrc=2
            s.send(good(2, 1))
            s.send(good(1, 2)[:40])          # wrong payload size
            s.send(good(2, 2))
        res = rx.result(timeout=60)
    finally:
        rx.kill()
    assert (res["packets"], res["invalid"], res["bytes"]) == (3, 3, 3 * 80)


def test_missing_compiler_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BuildError, match="no C compiler found") as e:
        build(tmp_path)
    assert "\n" not in str(e.value)
