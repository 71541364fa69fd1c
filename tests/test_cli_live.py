"""The ``asbru`` command line over real loopback sockets: capture, replay, generate --to,
top (JSON and Prometheus).  Captures run as subprocesses on free ports."""
from __future__ import annotations

import json
import struct
import time
import urllib.request
from pathlib import Path

import pytest

from helpers.cli import (free_tcp_port, free_udp_port, run, run_json, start, stop,
                              wait_published)


def _summary(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def test_generate_to_capture_out_inspect_round_trip(tmp_path):
    port = free_udp_port()
    cap_file, truth_path = tmp_path / "cap.dat", tmp_path / "truth.json"
    cap = start("capture", "chips_4", "--bind", f"127.0.0.1:{port}", "--nsrc", "3",
                "--out", str(cap_file), "--duration", "120", "--json")
    try:
        wait_published(cap.pid, proc=cap)
        truth = run_json("generate", "chips_4", "--to", f"127.0.0.1:{port}", "--nsrc", "3",
                         "--ntime", "400", "--rate", "4000", "--loss", "0.05", "--duplicate",
                         "0.05", "--corrupt", "0.05", "--reorder", "8", "--seed", "21",
                         "--truth", str(truth_path), "--json")
        assert truth["send_failed"] == 0
        stats = wait_published(cap.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:      # the capture publishes every 0.5 s
            text = stats.read_text()
            if f"nreceived : {truth['sent']}\n" in text:
                break
            time.sleep(0.1)
    finally:
        out, err = stop(cap)
    summary = _summary(out)
    assert cap.returncode == 0, err
    assert summary["stopped_by"] == "signal"
    assert summary["kernel_drops"] == 0
    assert summary["received"] == truth["sent"]
    assert summary["invalid"] == truth["corrupted"]
    # the engine places each (seq, src) once: duplicates are counted, not recorded
    unique = truth["valid"] - truth["duplicated"]
    assert summary["valid"] == summary["kept"] == unique
    assert summary["duplicates"] == truth["duplicated"]
    assert summary["missing"] == truth["missing"]
    assert summary["late"] == 0 and summary["restarts"] == 0
    rep = run_json("inspect", str(cap_file), "--format", "chips_4", "--nsrc", "3", "--json")
    assert rep["packets"] == rep["valid"] == unique
    assert rep["invalid"] == 0 and rep["duplicates"] == 0   # each valid packet once
    assert rep["missing"] == truth["missing"]
    assert (rep["seq_min"], rep["seq_max"]) == (truth["seq_min"], truth["seq_max"])
    per_source = dict(truth["per_source"])
    for _seq, src in json.loads(truth_path.read_text())["duplicated_packets"]:
        per_source[str(src)] -= 1
    assert rep["per_source"] == per_source


def _capture_replayed(fmt: str, nsrc: int, src: Path, got: Path, n: int, **replay) -> tuple[dict, dict]:
    """``asbru capture`` of ``n`` packets replayed from ``src``: (capture summary, replay report)."""
    port = free_udp_port()
    cap = start("capture", fmt, "--bind", f"127.0.0.1:{port}", "--nsrc", str(nsrc), "--out", str(got),
                "--packets", str(n), "--duration", "120", "--json")
    try:
        wait_published(cap.pid, proc=cap)
        args = [x for k, v in replay.items() for x in (f"--{k}", str(v))]
        rep = run_json("replay", str(src), "--format", fmt, "--to", f"127.0.0.1:{port}", *args, "--json")
        out, _ = cap.communicate(timeout=120)
    finally:
        stop(cap)
    return _summary(out), rep


def test_replay_file_and_pcap_byte_exact(tmp_path):
    src = tmp_path / "src.dat"
    run("generate", "tbn", "--out", str(src), "--nsrc", "2", "--ntime", "50", "--seed", "3")
    data = src.read_bytes()
    n = len(data) // 1048
    got = tmp_path / "got.dat"
    summary, rep = _capture_replayed("tbn", 2, src, got, n, rate=5000)
    assert rep["sent"] == n and rep["failed"] == 0 and rep["kind"] == "records"
    assert summary["stopped_by"] == "packets" and summary["kept"] == n
    assert got.read_bytes() == data
    # the same packets again, from a pcap (Ethernet/IPv4/UDP) written here
    frames = []
    for k in range(n):
        payload = data[k * 1048:(k + 1) * 1048]
        udp = struct.pack("!HHHH", 1, 9, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                         b"\x7f\0\0\1", b"\x7f\0\0\1") + udp
        fr = b"\0" * 12 + b"\x08\x00" + ip
        frames.append(struct.pack("<IIII", k, 0, len(fr), len(fr)) + fr)
    pcap = tmp_path / "src.pcap"
    pcap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(frames))
    got2 = tmp_path / "got2.dat"
    summary, rep = _capture_replayed("tbn", 2, pcap, got2, n, rate=5000)
    assert rep["sent"] == n and rep["kind"] == "pcap"
    assert summary["kept"] == n and got2.read_bytes() == data


def test_replay_loop_and_rate(tmp_path):
    src = tmp_path / "src.dat"
    run("generate", "simple", "--out", str(src), "--ntime", "30", "--seed", "3")
    port = free_udp_port()
    got = tmp_path / "got.dat"
    cap = start("capture", "simple", "--bind", f"127.0.0.1:{port}", "--out", str(got),
                "--duration", "120", "--json")
    try:
        stats = wait_published(cap.pid, proc=cap)
        rep = run_json("replay", str(src), "--format", "simple", "--to", f"127.0.0.1:{port}",
                       "--loop", "3", "--rate", "300", "--json")
        deadline = time.monotonic() + 60
        while "nreceived : 90\n" not in stats.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        out, _ = stop(cap)
    assert rep["sent"] == 90 and rep["loops"] == 3
    # 90 packets paced at 300/s cannot take less than (90 - 1) / 300 s: the limiter works
    assert rep["seconds"] >= 89 / 300
    # the stream is recorded once; its two repeats find their (seq, src) slots filled
    summary = _summary(out)
    assert (summary["received"], summary["kept"], summary["duplicates"]) == (90, 30, 60)
    assert got.read_bytes() == src.read_bytes()


def test_capture_ipv6_loopback(tmp_path):
    try:
        port = free_udp_port("::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    got = tmp_path / "got.dat"
    cap = start("capture", "simple", "--bind", f"[::1]:{port}", "--out", str(got), "--packets", "5",
                "--duration", "120", "--json")
    try:
        wait_published(cap.pid, proc=cap)
        run("generate", "simple", "--to", f"[::1]:{port}", "--ntime", "5", "--rate", "1000")
        out, _ = cap.communicate(timeout=120)
    finally:
        stop(cap)
    assert _summary(out)["kept"] == 5
    assert len(got.read_bytes()) == 5 * 8200


def test_top_sees_a_running_capture_and_serves_prometheus(tmp_path):
    port = free_udp_port()
    cap = start("capture", "simple", "--bind", f"127.0.0.1:{port}", "--duration", "120", "--json")
    prom = None
    try:
        wait_published(cap.pid, proc=cap)
        rep = run_json("top", "--once", "--json", "--interval", "0.2")
        mine = [c for c in rep["captures"] if c["pid"] == cap.pid]
        assert len(mine) == 1
        assert mine[0]["block"] == "cli_capture" and mine[0]["format"] == "simple"
        assert mine[0]["valid"] == 0 and mine[0]["invalid"] == 0
        run("generate", "simple", "--to", f"127.0.0.1:{port}", "--ntime", "40", "--rate", "2000",
            "--corrupt", "0.25", "--seed", "8", "--truth", str(tmp_path / "t.json"))
        truth = json.loads((tmp_path / "t.json").read_text())
        deadline = time.monotonic() + 60
        while True:
            rep = run_json("top", "--once", "--json", "--interval", "0.2")
            mine = [c for c in rep["captures"] if c["pid"] == cap.pid][0]
            if mine["valid"] + mine["invalid"] == 40 or time.monotonic() > deadline:
                break
        assert mine["valid"] == truth["valid"] and mine["invalid"] == truth["corrupted"]
        assert mine["kernel_drops"] == 0 and mine["duplicates"] == 0
        lost = truth["missing"]                        # corrupted packets leave empty slots
        assert mine["missing_percent"] == pytest.approx(100.0 * lost / 40, abs=1e-3)
        assert mine["packets_per_second"] == 0.0      # nothing arrives any more
        text = run("top", "--once", "--interval", "0.2").stdout
        assert str(cap.pid) in text and "cli_capture" in text

        hport = free_tcp_port()
        prom = start("top", "--prometheus", str(hport), "--json", "--interval", "0.5")
        body = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{hport}/metrics", timeout=5) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        line = [ln for ln in body.splitlines()
                if ln.startswith("asbru_capture_valid_packets_total") and f'pid="{cap.pid}"' in ln]
        assert line and float(line[0].rsplit(" ", 1)[1]) == truth["valid"]
    finally:
        if prom is not None:
            stop(prom)
        out, _ = stop(cap)
    assert _summary(out)["stopped_by"] == "signal"
    # the capture removed its statistics when it ended
    from asbru.proclog import proclog_root as root
    assert not (root() / str(cap.pid) / "cli_capture").exists()


def test_capture_multicast_pinned_to_loopback(tmp_path):
    group, port = "239.255.77.11", free_udp_port()
    got = tmp_path / "got.dat"
    cap = start("capture", "simple", "--bind", f"{group}:{port}", "--interface", "127.0.0.1",
                "--out", str(got), "--packets", "6", "--duration", "120", "--json")
    try:
        wait_published(cap.pid, proc=cap)
        run("generate", "simple", "--to", f"{group}:{port}", "--interface", "127.0.0.1",
            "--ntime", "6", "--rate", "1000", "--seed", "4")
        out, _ = cap.communicate(timeout=120)
    finally:
        stop(cap)
    assert _summary(out)["kept"] == 6
    rep = run_json("inspect", str(got), "--format", "simple", "--json")
    assert rep["valid"] == 6 and (rep["seq_min"], rep["seq_max"]) == (1000, 1005)
