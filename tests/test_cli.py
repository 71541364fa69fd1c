"""The ``asbru`` command line, offline parts: generate, inspect (files and pcap), formats,
doctor and the error messages.  Every command runs as a subprocess, as a user would."""
from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import pytest

from helpers.cli import run, run_json

FAULTS = ["--loss", "0.1", "--duplicate", "0.08", "--corrupt", "0.07", "--reorder", "5"]


# --------------------------------------------------------------------------------------
# generate -> inspect

# tbn without reordering: its decoder re-learns the decimation from consecutive forward
# time-tag steps, so frames arriving more than a time step early can change its numbering
@pytest.mark.parametrize("fmt,nsrc,faults", [
    ("simple", 1, FAULTS), ("chips_4", 3, FAULTS), ("tbn", 2, FAULTS[:-2]), ("drx", 4, FAULTS),
    ("cor_4", 3, FAULTS), ("pbeam1_4", 2, FAULTS), ("ibeam2_4", 2, FAULTS),
    ("vdif_1032", 2, FAULTS), ("tbf", 2, FAULTS), ("example_beacon_100", 3, FAULTS)])
def test_generate_then_inspect_counts_match_truth(tmp_path, fmt, nsrc, faults):
    out, truth_path = tmp_path / "g.dat", tmp_path / "truth.json"
    run("generate", fmt, "--out", str(out), "--nsrc", str(nsrc), "--ntime", "60", *faults,
        "--seed", "11", "--truth", str(truth_path))
    truth = json.loads(truth_path.read_text())
    # the truth is self-consistent
    assert truth["dropped"] == len(truth["dropped_packets"]) > 0
    assert truth["corrupted"] == len(truth["corrupted_packets"]) > 0
    assert truth["duplicated"] == len(truth["duplicated_packets"]) > 0
    assert truth["sent"] == nsrc * 60 - truth["dropped"] + truth["duplicated"]
    assert (truth["reordered"] > 0) == ("--reorder" in faults)
    assert all(0 <= src < nsrc for _, src in truth["dropped_packets"])
    rep = run_json("inspect", str(out), "--format", fmt, "--nsrc", str(nsrc),
                   "--src0", str(truth["src0"]), "--json")
    assert rep["packets"] == truth["sent"]
    assert rep["invalid"] == truth["corrupted"]
    assert rep["valid"] == truth["sent"] - truth["corrupted"]
    assert rep["duplicates"] == truth["duplicated"]
    assert rep["missing"] == truth["missing"]
    assert (rep["seq_min"], rep["seq_max"]) == (truth["seq_min"], truth["seq_max"])
    assert rep["per_source"] == truth["per_source"]
    # missing slots are exactly the dropped and the corrupted ones (when not at the edges)
    lost = {tuple(p) for p in truth["dropped_packets"] + truth["corrupted_packets"]}
    inside = {p for p in lost if truth["seq_min"] <= p[0] <= truth["seq_max"]}
    assert rep["missing"] == len(inside)


def test_generate_simple_file_checked_without_asbru(tmp_path):
    """Read the simple file with struct only: the seqs present are all minus the dropped."""
    out, truth_path = tmp_path / "s.dat", tmp_path / "t.json"
    run("generate", "simple", "--out", str(out), "--ntime", "200", "--loss", "0.2",
        "--seed", "5", "--truth", str(truth_path))
    truth = json.loads(truth_path.read_text())
    data = out.read_bytes()
    assert len(data) % 8200 == 0
    seqs = [struct.unpack_from(">Q", data, k)[0] for k in range(0, len(data), 8200)]
    dropped = {s for s, _ in truth["dropped_packets"]}
    assert len(dropped) == truth["dropped"] > 0
    assert sorted(seqs) == seqs                       # no reorder asked: in order
    assert set(seqs) == set(range(1000, 1200)) - dropped
    assert truth["sent"] == len(seqs)


def test_generate_is_deterministic_with_a_seed(tmp_path):
    a, b, c = (tmp_path / n for n in ("a", "b", "c"))
    for path, seed in ((a, "3"), (b, "3"), (c, "4")):
        run("generate", "chips_2", "--out", str(path), "--nsrc", "2", "--ntime", "20",
            *FAULTS, "--seed", seed)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_inspect_table_and_short_tail(tmp_path):
    out = tmp_path / "s.dat"
    run("generate", "simple", "--out", str(out), "--ntime", "4", "--seed", "1")
    with open(out, "ab") as fh:
        fh.write(b"\x00" * 100)                      # an incomplete last record
    rep = run_json("inspect", str(out), "--format", "simple", "--json", "--limit", "2")
    assert rep["packets"] == 5 and rep["valid"] == 4 and rep["invalid"] == 1
    assert rep["short_tail_bytes"] == 100
    assert [r["seq"] for r in rep["rows"]] == [1000, 1001]
    text = run("inspect", str(out), "--format", "simple", "--limit", "3").stdout
    assert "summary" in text and "packets per source" in text and "1002" in text


# --------------------------------------------------------------------------------------
# pcap

def _udp(payload: bytes, dport: int) -> bytes:
    return struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload


def _ipv4(udp: bytes, proto: int = 17, flags_frag: int = 0x4000) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 7, flags_frag, 64, proto, 0,
                      bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    return hdr + udp


def _ipv6(udp: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000, len(udp), 17, 64, b"\x00" * 15 + b"\x01",
                       b"\x00" * 15 + b"\x01") + udp


def _eth(ip: bytes, ethertype: int = 0x0800, vlan: bool = False) -> bytes:
    tag = struct.pack("!HH", 0x8100, 42) if vlan else b""
    return b"\x02" * 6 + b"\x04" * 6 + tag + struct.pack("!H", ethertype) + ip


def _sll(ip: bytes, proto: int) -> bytes:
    return struct.pack("!HHH8sH", 0, 772, 6, b"\x00" * 8, proto) + ip


def _pcap(frames: list[bytes], linktype: int, big: bool = False, nsec: bool = False,
          snap: dict[int, int] | None = None) -> bytes:
    e = ">" if big else "<"
    magic = 0xA1B23C4D if nsec else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for k, fr in enumerate(frames):
        incl = (snap or {}).get(k, len(fr))
        out.append(struct.pack(e + "IIII", 1700000000 + k, 500 * k, incl, len(fr)) + fr[:incl])
    return b"".join(out)


def _simple_packets(tmp_path, n: int) -> list[bytes]:
    path = tmp_path / "src.dat"
    run("generate", "simple", "--out", str(path), "--ntime", str(n), "--seed", "9")
    data = path.read_bytes()
    return [data[k: k + 8200] for k in range(0, len(data), 8200)]


def test_inspect_reads_ethernet_pcap(tmp_path):
    pkts = _simple_packets(tmp_path, 4)
    frames = [_eth(_ipv4(_udp(p, 4015))) for p in pkts[:3]]
    frames.insert(1, _eth(b"\x00" * 28, ethertype=0x0806))                # ARP: skipped
    frames.append(_eth(_ipv4(b"\x00" * 20, proto=6)))                     # TCP: skipped
    frames.append(_eth(_ipv4(_udp(pkts[3][:100], 4015), flags_frag=0x2000)))  # fragment
    frames.append(_eth(_ipv4(_udp(pkts[3], 4015)), vlan=True))           # 802.1Q tagged
    frames.append(_eth(_ipv4(_udp(pkts[0], 4015))))                       # snaplen-cut copy
    f = tmp_path / "cap.pcap"
    f.write_bytes(_pcap(frames, 1, snap={len(frames) - 1: 14 + 20 + 8 + 500}))
    rep = run_json("inspect", str(f), "--format", "simple", "--json")
    assert rep["kind"] == "pcap"
    assert rep["packets"] == 5 and rep["valid"] == 4 and rep["invalid"] == 1
    assert rep["pcap_skipped_records"] == 3
    assert (rep["seq_min"], rep["seq_max"]) == (1000, 1003) and rep["missing"] == 0
    assert rep["rows"][4]["length"] == 500


def test_inspect_reads_sll_ipv6_big_endian_nsec_pcap_and_port_filter(tmp_path):
    pkts = _simple_packets(tmp_path, 3)
    frames = [_sll(_ipv6(_udp(p, 5000 + k)), 0x86DD) for k, p in enumerate(pkts)]
    frames.append(_sll(_ipv4(_udp(pkts[0], 5000)), 0x0800))
    f = tmp_path / "sll.pcap"
    f.write_bytes(_pcap(frames, 113, big=True, nsec=True))
    rep = run_json("inspect", str(f), "--format", "simple", "--json")
    assert rep["packets"] == 4 and rep["valid"] == 4 and rep["duplicates"] == 1
    rep = run_json("inspect", str(f), "--format", "simple", "--json", "--port", "5000")
    assert rep["packets"] == 2 and rep["duplicates"] == 1 and rep["per_source"] == {"0": 2}


def test_truncated_pcap_and_pcapng_are_handled(tmp_path):
    pkts = _simple_packets(tmp_path, 2)
    f = tmp_path / "t.pcap"
    f.write_bytes(_pcap([_eth(_ipv4(_udp(p, 1))) for p in pkts], 1)[:-1000])  # cut the file
    rep = run_json("inspect", str(f), "--format", "simple", "--json")
    assert rep["packets"] == 1 and rep["pcap_truncated"] is True
    g = tmp_path / "n.pcapng"
    g.write_bytes(b"\x0a\x0d\x0d\x0a" + b"\x00" * 60)
    proc = run("inspect", str(g), "--format", "simple", check=False)
    assert proc.returncode == 2 and "pcapng" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------
# formats

def test_formats_lists_every_registered_format():
    import asbru.formats
    rep = run_json("formats", "--json")
    names = [f["name"] for f in rep["formats"]]
    assert names == asbru.formats.list()
    assert "example_beacon" in names                   # the entry-point plugin is listed
    for f in rep["formats"]:
        assert f["header"] == asbru.formats.module(f["name"]).HEADER.table()
    chips = run_json("formats", "chips_132", "--json")
    assert chips["name"] == "chips" and chips["header_size"] == 16
    assert [f["name"] for f in chips["header"]][0] == "roach"
    text = run("formats").stdout
    for name in names:
        assert name in text


# --------------------------------------------------------------------------------------
# errors: one line, exit code 2, no traceback

def _assert_user_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_input_messages(tmp_path):
    good = tmp_path / "s.dat"
    run("generate", "simple", "--out", str(good), "--ntime", "2")
    _assert_user_error(run("inspect", str(good), "--format", "bogus", check=False),
                       "--format", "bogus", "known formats", "chips")
    _assert_user_error(run("generate", "nope_3", "--out", str(tmp_path / "x"), "--ntime", "2",
                           check=False), "nope_3", "known formats")
    _assert_user_error(run("inspect", str(tmp_path / "missing.dat"), "--format", "simple",
                           check=False), "missing.dat", "no such file")
    _assert_user_error(run("inspect", str(tmp_path), "--format", "simple", check=False),
                       "is a directory")
    _assert_user_error(run("replay", str(tmp_path / "missing.dat"), "--format", "simple", "--to",
                           "127.0.0.1:9", check=False), "no such file")
    _assert_user_error(run("generate", "simple", "--to", "127.0.0.1", "--ntime", "2", check=False),
                       "--to", "HOST:PORT")
    _assert_user_error(run("generate", "simple", "--to", "127.0.0.1:70000", "--ntime", "2",
                           check=False), "--to", "65535")
    _assert_user_error(run("replay", str(good), "--format", "simple", "--to", "no.such.host.invalid:5",
                           check=False), "--to", "unknown host")
    _assert_user_error(run("capture", "simple", "--bind", "::1:5000", "--duration", "1", check=False),
                       "--bind", "brackets")
    _assert_user_error(run("capture", "bogus", "--bind", "127.0.0.1:5000", check=False),
                       "bogus", "known formats")
    _assert_user_error(run("generate", "simple", "--out", str(tmp_path / "y"), "--ntime", "2",
                           "--loss", "1.5", check=False), "--loss", "0..1")
    _assert_user_error(run("generate", "chips_2", "--out", str(tmp_path / "y"), "--ntime", "2",
                           "--nsrc", "300", check=False), "--nsrc", "255")
    _assert_user_error(run("generate", "simple", "--ntime", "2", check=False), "--to", "--out")
    _assert_user_error(run("capture", "simple", "--bind", "239.1.1.1:5000", "--interface", "lo",
                           check=False), "--interface", "IPv4 address")
    _assert_user_error(run("generate", "simple", "--out", str(tmp_path / "nodir" / "x"), "--ntime",
                           "2", check=False), "--out", "cannot be written")


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    rep = run_json("inspect", str(empty), "--format", "tbn", "--json")
    assert rep["packets"] == rep["valid"] == rep["missing"] == 0 and rep["seq_min"] is None
    rep = run_json("replay", str(empty), "--format", "tbn", "--to", "127.0.0.1:9", "--json")
    assert rep["sent"] == 0


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0,
                    reason="needs root and setpriv to run as another user")
def test_unreadable_file_message():
    d = Path(tempfile.mkdtemp(prefix="asbru-cli-"))
    try:
        os.chmod(d, 0o755)
        f = d / "secret.dat"
        f.write_bytes(b"\x00" * 8200)
        os.chmod(f, 0o600)
        proc = run("inspect", str(f), "--format", "simple", check=False,
                   prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"))
        _assert_user_error(proc, "secret.dat", "permission denied")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------------------
# doctor

def _cap_net_raw() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 13 & 1)
    return False


def test_doctor_runs_as_is():
    rep = run_json("doctor", "--json")
    checks = {c["check"]: c for c in rep["checks"]}
    for name in ("net.core.rmem_max", "net.core.wmem_max", "net.core.netdev_max_backlog",
                 "socket receive buffer", "CAP_NET_RAW", "CPU frequency governor", "numba",
                 "kernel cache dir"):
        assert name in checks
    rmem = int(Path("/proc/sys/net/core/rmem_max").read_text())
    assert checks["net.core.rmem_max"]["value"] == rmem
    assert checks["CAP_NET_RAW"]["value"] is _cap_net_raw()
    for c in rep["checks"]:
        assert c["status"] in ("ok", "warn", "fail", "skip", "info")
        if c["status"] == "warn":
            assert c["fix"]
    if rmem < 256 << 20:
        assert "sysctl -w net.core.rmem_max=" in checks["net.core.rmem_max"]["fix"]
    text = run("doctor").stdout
    assert "asbru doctor" in text and "numba" in text


SETPRIV = shutil.which("setpriv")


@pytest.mark.skipif(SETPRIV is None or os.geteuid() != 0, reason="needs root and setpriv")
@pytest.mark.parametrize("how", [
    ("--reuid=65534", "--regid=65534", "--clear-groups"),
    ("--inh-caps=-all", "--bounding-set=-net_raw"),
])
def test_doctor_runs_with_reduced_privileges(how):
    rep = run_json("doctor", "--json", prefix=("setpriv", *how))
    checks = {c["check"]: c for c in rep["checks"]}
    assert checks["CAP_NET_RAW"]["value"] is False
    assert "setcap cap_net_raw" in checks["CAP_NET_RAW"]["fix"]
    assert checks["numba"]["status"] == "ok"
    assert checks["kernel cache dir"]["status"] == "ok"
    if "--reuid=65534" in how:
        assert rep["uid"] == 65534
        rmem = int(Path("/proc/sys/net/core/rmem_max").read_text())
        assert checks["socket receive buffer"]["value"] <= rmem


def test_generated_file_is_read_by_diskreader(tmp_path):
    """The file layout is DiskReader's: its statistics reconcile with the truth."""
    from asbru.packet_capture import DiskReader, PacketCaptureCallback
    from asbru.ring import Ring
    out, truth_path = tmp_path / "g.dat", tmp_path / "t.json"
    run("generate", "chips_4", "--out", str(out), "--nsrc", "3", "--ntime", "100", "--loss", "0.05",
        "--duplicate", "0.05", "--corrupt", "0.05", "--seed", "2", "--truth", str(truth_path))
    truth = json.loads(truth_path.read_text())
    cb = PacketCaptureCallback()
    cb.set_chips(lambda *args: 0)
    with open(out, "rb") as fh:
        cap = DiskReader("chips_4", fh, Ring(name="cli_diskreader"), 3, 0, 16, 16, cb)
        for _ in range(10_000):
            if cap.recv() in (1, 4, 5, 6):
                break
        st = cap.stats
    assert st["ninvalid"] == truth["corrupted"]
    assert st["nduplicate"] == truth["duplicated"]
    assert st["nvalid"] + st["nlate"] == truth["valid"] - truth["duplicated"]
