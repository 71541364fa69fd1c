"""``asbru capture`` runs on the capture engine: its counts are UDPCapture's, held packets
are placed, --sample-rate reaches the engine.  Captures run as subprocesses on free ports."""
from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np

from asbru.address import Address
from asbru.capture.status import Status
from asbru.packet_capture import UDPCapture
from asbru.udp_socket import UDPSocket
from helpers.cli import free_udp_port, run, run_json, start, stop, wait_published


def _summary(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def _simple(seq: int) -> bytes:
    return seq.to_bytes(8, "big") + bytes([seq % 251]) * 8192


def _impaired_simple_stream() -> list[bytes]:
    """700 time steps of ``simple`` with 5 dropped, 3 duplicated and, at the end, 2 packets
    from far behind the capture's window (late for the engine)."""
    out = []
    for seq in range(1000, 1700):
        if 1100 <= seq < 1105:
            continue
        out.append(_simple(seq))
        if seq in (1010, 1200, 1300):
            out.append(_simple(seq))
    out += [_simple(1001), _simple(1002)]
    return out


def test_counts_equal_udpcapture_for_the_same_stream(tmp_path):
    from asbru.cli.capture import gulp_ntime
    packets = _impaired_simple_stream()
    port = free_udp_port()
    got = tmp_path / "got.dat"
    cap = start("capture", "simple", "--bind", f"127.0.0.1:{port}", "--out", str(got),
                "--duration", "120", "--json")
    sock = UDPSocket()
    sock.bind(Address("127.0.0.1", 0), reuse_port=False)
    sock.timeout = 0.1
    probe = socket.socket(fileno=__import__("os").dup(sock.fileno()))
    mine = probe.getsockname()[1]
    probe.close()
    ntime = gulp_ntime(1, 8200)          # the gulp the command uses: the same late window
    ucap = UDPCapture("simple", sock, None, 1, 0, 8200, ntime, ntime, None)
    done = threading.Event()

    def receive():
        while not done.is_set():
            ucap.recv()

    rx = threading.Thread(target=receive)
    rx.start()
    try:
        stats = wait_published(cap.pid, proc=cap)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for p in packets:            # paced: neither socket buffer may overflow
                tx.sendto(p, ("127.0.0.1", port))
                tx.sendto(p, ("127.0.0.1", mine))
                time.sleep(0.0005)
        deadline = time.monotonic() + 60
        while (f"nreceived : {len(packets)}\n" not in stats.read_text()
               and time.monotonic() < deadline):
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        out, err = stop(cap)
        done.set()
        rx.join(30)
    ucap.end()
    sock.close()
    want = ucap.stats
    summary = _summary(out)
    assert want["nkernel_drops"] == 0 and summary["kernel_drops"] == 0
    assert want["nreceived"] == summary["received"] == len(packets)
    # 5 dropped, 3 duplicates, 2 late: the engine's rules, not a second set in the command
    assert (want["nvalid"], want["nduplicate"], want["nlate"], int(want["per_source"]["missing"].sum())) \
        == (695, 3, 2, 5)
    assert (summary["valid"], summary["duplicates"], summary["late"], summary["missing"]) == (695, 3, 2, 5)
    assert summary["invalid"] == want["ninvalid"] == 0
    # the file: each placed packet once, in time order
    assert got.read_bytes() == b"".join(_simple(s) for s in range(1000, 1700) if not 1100 <= s < 1105)


def test_packets_held_while_the_rate_is_learnt_are_captured(tmp_path):
    # tbn learns its sample rate from the first time steps: those packets are held and
    # decoded again once it is known; the old command counted them "held" and never placed
    # them in its statistics (valid was short, the slots they filled counted missing)
    src = tmp_path / "src.dat"
    run("generate", "tbn", "--out", str(src), "--nsrc", "4", "--ntime", "30", "--seed", "5")
    data = src.read_bytes()
    n = len(data) // 1048
    port = free_udp_port()
    got = tmp_path / "got.dat"
    cap = start("capture", "tbn", "--bind", f"127.0.0.1:{port}", "--nsrc", "4", "--out", str(got),
                "--packets", str(n), "--duration", "120", "--json")
    try:
        wait_published(cap.pid, proc=cap)
        run("replay", str(src), "--format", "tbn", "--to", f"127.0.0.1:{port}", "--rate", "5000")
        out, _ = cap.communicate(timeout=120)
    finally:
        stop(cap)
    s = _summary(out)
    assert (s["valid"], s["kept"], s["missing"], s["invalid"]) == (n, n, 0, 0)
    assert s["unlearned"] == 0
    assert got.read_bytes() == data


def test_sample_rate_places_a_stream_too_short_to_learn_from(tmp_path):
    # one time step: too little for tbn to learn its rate; --sample-rate gives it
    three = tmp_path / "three.dat"
    run("generate", "tbn", "--out", str(three), "--nsrc", "2", "--ntime", "3", "--seed", "6")
    src = tmp_path / "one.dat"
    src.write_bytes(three.read_bytes()[:2 * 1048])
    port = free_udp_port()
    got = tmp_path / "got.dat"
    cap = start("capture", "tbn", "--bind", f"127.0.0.1:{port}", "--nsrc", "2", "--out", str(got),
                "--sample-rate", "100000", "--packets", "2", "--duration", "120", "--json")
    try:
        wait_published(cap.pid, proc=cap)
        run("replay", str(src), "--format", "tbn", "--to", f"127.0.0.1:{port}")
        out, _ = cap.communicate(timeout=120)
    finally:
        stop(cap)
    s = _summary(out)
    assert (s["valid"], s["kept"], s["unlearned"]) == (2, 2, 0)
    assert got.read_bytes() == src.read_bytes()
    # without it the two packets are counted, not placed, and one line says what to do
    port = free_udp_port()
    cap = start("capture", "tbn", "--bind", f"127.0.0.1:{port}", "--nsrc", "2", "--duration", "120",
                "--json")
    try:
        stats = wait_published(cap.pid, proc=cap)
        run("replay", str(src), "--format", "tbn", "--to", f"127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while "nreceived : 2\n" not in stats.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        out, err = stop(cap)
    s = _summary(out)
    assert (s["valid"], s["invalid"], s["unlearned"]) == (0, 2, 2)
    told = [ln for ln in err.splitlines() if ln.startswith("asbru: warning:")]
    assert len(told) == 1 and "give --sample-rate" in told[0], err


def test_sample_rate_on_a_format_that_does_not_learn_is_one_line():
    p = run("capture", "chips", "--bind", "127.0.0.1:0", "--sample-rate", "1000", "--duration", "1",
            check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().startswith("asbru: error: --sample-rate: format 'chips' does not learn")
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_out_file_reads_back_with_diskreader_to_the_captures_ring(tmp_path):
    # what --out holds, read by DiskReader, is the ring a UDPCapture of the stream fills
    from asbru.capture.testing import RingCollector
    from asbru.packet_capture import DiskReader
    src = tmp_path / "src.dat"
    truth = tmp_path / "t.json"
    run("generate", "chips_4", "--out", str(src), "--nsrc", "3", "--ntime", "60", "--loss", "0.1",
        "--seed", "7", "--truth", str(truth))
    got = tmp_path / "got.dat"
    port = free_udp_port()
    cap = start("capture", "chips_4", "--bind", f"127.0.0.1:{port}", "--nsrc", "3", "--out", str(got),
                "--duration", "120", "--json")
    try:
        stats = wait_published(cap.pid, proc=cap)
        rep = run_json("replay", str(src), "--format", "chips_4", "--to", f"127.0.0.1:{port}", "--json")
        deadline = time.monotonic() + 60
        while f"nreceived : {rep['sent']}\n" not in stats.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        out, _ = stop(cap)
    assert _summary(out)["missing"] == json.loads(truth.read_text())["missing"]

    def ring_of(path):
        with open(path, "rb") as fh:
            reader = DiskReader("chips_4", fh, None, 3, 0, 16, 16, None)
            col = RingCollector(reader.ring, 16 * 3 * 128)
            while reader.recv() not in (Status.ENDED, Status.NO_DATA):
                pass
            reader.end()
            return col.join()

    a, b = ring_of(src), ring_of(got)
    assert len(a) == len(b) == 1
    assert np.array_equal(a[0].data, b[0].data) and np.array_equal(a[0].flags, b[0].flags)
    assert a[0].time_tag == b[0].time_tag
