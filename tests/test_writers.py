"""Packet writers: HeaderInfo, send() semantics, argument errors, failures, core, stats."""
from __future__ import annotations

import errno
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import asbru
import asbru.formats
from asbru.address import Address
from asbru.errors import ArgumentError, AsbruError
from asbru.formats.spec import HEADERINFO_FIELDS, FormatError
from asbru.packet_writer import DiskWriter, HeaderInfo, UDPTransmit
from asbru.udp_socket import UDPSocket


# -- HeaderInfo ---------------------------------------------------------------------------
def test_headerinfo_starts_at_zero_and_setters_fill_the_array() -> None:
    h = HeaderInfo()
    assert h.array.dtype == np.int64 and h.array.shape == (len(HEADERINFO_FIELDS),)
    assert not h.array.any()
    h.set_nsrc(32)
    h.set_nchan(132)
    h.set_chan0(1034)
    h.set_tuning(832697741)
    h.set_gain(20)
    h.set_decimation(1960)
    h.set_tuning1(5)
    h.set_beam(2)
    assert h.as_dict() == {"nsrc": 32, "nchan": 132, "chan0": 1034, "tuning": 832697741,
                           "gain": 20, "decimation": 1960, "tuning1": 5, "beam": 2}
    assert h.nsrc == 32 and h.tuning == 832697741


def test_headerinfo_tuning_is_signed_32_bit_with_bits_unchanged(tmp_path: Path) -> None:
    h = HeaderInfo()
    h.set_tuning(3_000_000_000)          # >= 2**31: stored as the int32 with the same bits
    assert h.tuning == 3_000_000_000 - (1 << 32)
    h.set_tuning(-1)
    assert h.tuning == -1
    h.set_tuning(0xB2D05E00)
    path = tmp_path / "drx.dat"
    with open(path, "wb") as fh:
        DiskWriter("drx", fh).send(h, 1, 1, 8, 1, np.zeros((1, 1, 4096), np.uint8))
    assert path.read_bytes()[24:28] == bytes.fromhex("b2d05e00")  # DRX tuning word, BE


@pytest.mark.parametrize("setter, value", [
    ("set_gain", 1 << 16), ("set_gain", -1), ("set_decimation", 1 << 32),
    ("set_decimation", -1), ("set_tuning", 1 << 32), ("set_tuning", -(1 << 31) - 1),
    ("set_nsrc", 1 << 31), ("set_nchan", 1.5), ("set_chan0", "3")])
def test_headerinfo_rejects_values_bifrost_would_truncate(setter: str, value) -> None:
    h = HeaderInfo()
    with pytest.raises(ArgumentError) as exc:
        getattr(h, setter)(value)
    msg = str(exc.value)
    assert "\n" not in msg and setter[4:] in msg
    assert not h.array.any()


# -- send() semantics ----------------------------------------------------------------------
def _decode_tbn(raw: bytes) -> list[tuple[int, int, int]]:
    """(framecount, tbn_id, time_tag) of every 1048-byte TBN record."""
    out = []
    for k in range(0, len(raw), 1048):
        rec = raw[k:k + 1048]
        assert rec[:4] == bytes.fromhex("dec0de5c")
        out.append((int.from_bytes(rec[5:8], "big"), int.from_bytes(rec[12:14], "big"),
                    int.from_bytes(rec[16:24], "big")))
    return out


def test_send_order_seq_src_and_framecount_across_calls(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(-128, 128, size=(3, 2, 512, 2), dtype=np.int8)
    h = HeaderInfo()
    h.set_gain(3)
    path = tmp_path / "tbn.dat"
    with open(path, "wb") as fh:
        w = DiskWriter("tbn", fh)
        assert w.send(h, 1000, 100, 5, 10, data) == 6
        assert w.framecount == 3
        w.send(h, 7, 1, 0, 1, data[:1])        # framecount continues: 3
        w.reset_counter()
        w.send(h, 9, 1, 0, 1, data[:1])        # back to 0
    raw = path.read_bytes()
    assert len(raw) == 10 * 1048
    assert _decode_tbn(raw) == [
        (0, 6, 1000), (0, 16, 1000), (1, 6, 1100), (1, 16, 1100), (2, 6, 1200), (2, 16, 1200),
        (3, 1, 7), (3, 2, 7), (0, 1, 9), (0, 2, 9)]
    # payload of packet k = data[i, j] (time-major)
    payloads = [raw[k * 1048 + 24:(k + 1) * 1048] for k in range(6)]
    assert payloads == [data[i, j].tobytes() for i in range(3) for j in range(2)]


def test_send_accepts_u64_time_tags(tmp_path: Path) -> None:
    h = HeaderInfo()
    path = tmp_path / "simple.dat"
    with open(path, "wb") as fh:
        DiskWriter("simple", fh).send(h, (1 << 64) - 2, 1, 0, 1, np.zeros((2, 1, 2048, 2), np.int16))
    raw = path.read_bytes()
    assert raw[:8] == bytes.fromhex("fffffffffffffffe") and raw[8200:8208] == b"\xff" * 8


def test_empty_send_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "x.dat"
    with open(path, "wb") as fh:
        w = DiskWriter("tbn", fh)
        assert w.send(HeaderInfo(), 0, 1, 0, 1, np.zeros((0, 4, 512, 2), np.int8)) == 0
    assert path.read_bytes() == b"" and w.stats.nvalid == 0 and w.framecount == 0


def test_disk_writer_flushes_python_buffer_first(tmp_path: Path) -> None:
    path = tmp_path / "x.dat"
    with open(path, "wb") as fh:
        fh.write(b"HEAD")
        DiskWriter("generic_4", fh).send(HeaderInfo(), 0, 1, 0, 1, np.arange(8, dtype=np.uint8).reshape(1, 2, 4))
    assert path.read_bytes() == b"HEAD" + bytes(range(8))


# -- argument errors -------------------------------------------------------------------------
@pytest.mark.parametrize("data, words", [
    (np.zeros((2, 1, 512), np.complex64), ["ci8", "complex64"]),          # wrong dtype
    (np.zeros((2, 1, 512, 2), np.int16), ["ci8", "int16"]),              # wrong width
    (np.zeros((2, 512, 2), np.int8), ["(ntime, nsrc, 512"]),             # ndim 3 of pairs
    (np.zeros((2, 1, 256, 2), np.int8), ["512", "(2, 1, 256, 2)"]),      # wrong sample count
    (np.zeros((2, 1, 512, 3), np.int8), ["trailing axis of 2"]),
    (np.zeros((2, 2, 512, 2), np.int8).transpose(1, 0, 2, 3), ["C-contiguous"]),
    ([[1, 2]], ["list"]),
    (np.zeros((2, 1, 512), np.float32), ["float32"]),
])
def test_bad_data_is_a_one_line_error(data, words, tmp_path: Path) -> None:
    with open(tmp_path / "x", "wb") as fh:
        w = DiskWriter("tbn", fh)
        with pytest.raises(ArgumentError) as exc:
            w.send(HeaderInfo(), 0, 1, 0, 1, data)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("data")
    for word in words:
        assert word in msg
    assert (tmp_path / "x").read_bytes() == b""


def test_big_endian_ci16_and_packed_i4_are_refused(tmp_path: Path) -> None:
    with open(tmp_path / "x", "wb") as fh:
        w = DiskWriter("simple", fh)
        with pytest.raises(ArgumentError, match="ci16"):
            w.send(HeaderInfo(), 0, 1, 0, 1, np.zeros((1, 1, 2048, 2), ">i2"))
        d = DiskWriter("drx", fh)
        i4 = asbru.asarray(np.zeros((1, 1, 4096), np.int8), dtype="i8")
        with pytest.raises(ArgumentError, match="ci4"):
            d.send(HeaderInfo(), 0, 1, 0, 1, i4)


def test_unknown_or_unwritable_format(tmp_path: Path) -> None:
    with open(tmp_path / "x", "wb") as fh:
        with pytest.raises(FormatError) as exc:
            DiskWriter("nosuch", fh)
        assert "\n" not in str(exc.value) and "nosuch" in str(exc.value)
        capture_only = [n for n in asbru.formats.list()
                        if getattr(asbru.formats.module(n), "fill", None) is None]
        for name in capture_only:              # e.g. snap2: no writer
            with pytest.raises(FormatError, match="writ"):
                DiskWriter(name, fh)


@pytest.mark.parametrize("arg, value", [("seq", 1.5), ("src", "0"), ("seq_increment", 1 << 64)])
def test_bad_seq_src_arguments(arg: str, value, tmp_path: Path) -> None:
    args = {"seq": 0, "seq_increment": 1, "src": 0, "src_increment": 1}
    args[arg] = value
    with open(tmp_path / "x", "wb") as fh:
        with pytest.raises(ArgumentError, match=arg):
            DiskWriter("tbn", fh).send(HeaderInfo(), data=np.zeros((1, 1, 512, 2), np.int8), **args)


def test_headerinfo_argument_is_checked(tmp_path: Path) -> None:
    with open(tmp_path / "x", "wb") as fh:
        with pytest.raises(ArgumentError, match="headerinfo"):
            DiskWriter("tbn", fh).send({"gain": 1}, 0, 1, 0, 1, np.zeros((1, 1, 512, 2), np.int8))


def test_target_without_descriptor(tmp_path: Path) -> None:
    with pytest.raises(ArgumentError, match="fh"):
        DiskWriter("tbn", object())
    fh = open(tmp_path / "x", "wb")
    w = DiskWriter("tbn", fh)
    fh.close()
    with pytest.raises(ArgumentError, match="fh"):
        w.send(HeaderInfo(), 0, 1, 0, 1, np.zeros((1, 1, 512, 2), np.int8))


def test_unconnected_and_closed_udp_sockets() -> None:
    with pytest.raises(ArgumentError, match="sock"):
        UDPTransmit("tbn", UDPSocket())                       # never opened: fileno() -1
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s, pytest.raises(ArgumentError, match="not connected"):
        UDPTransmit("tbn", s)
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with t, pytest.raises(ArgumentError, match="UDP"):
        UDPTransmit("tbn", t)
    u = UDPSocket()
    u.connect(Address("127.0.0.1", 9))
    w = UDPTransmit("tbn", u)
    u.close()
    with pytest.raises(ArgumentError, match="sock"):
        w.send(HeaderInfo(), 0, 1, 0, 1, np.zeros((1, 1, 512, 2), np.int8))


# -- failures are counted and reported ---------------------------------------------------------
def test_disk_error_raises_and_counts(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full not available")
    with open("/dev/full", "wb", buffering=0) as fh:
        w = DiskWriter("tbn", fh)
        with pytest.raises(AsbruError) as exc:
            w.send(HeaderInfo(), 0, 1, 0, 1, np.zeros((3, 2, 512, 2), np.int8))
    msg = str(exc.value)
    assert "\n" not in msg and "ENOSPC" in msg and "0 of 6" in msg
    assert w.stats == (0, 0, 6, 6 * 1048)


def test_refused_udp_packets_are_counted_not_raised() -> None:
    # a port with nobody listening: loopback answers with ICMP port unreachable, which the
    # kernel reports on a later send as ECONNREFUSED (Bifrost's test_write must not raise)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(("127.0.0.1", port))
    with tx:
        w = UDPTransmit("tbn", tx)
        data = np.zeros((1, 1, 512, 2), np.int8)
        for i in range(20):
            w.send(HeaderInfo(), i, 1, 0, 1, data)
    st = w.stats
    assert st.nvalid + st.ninvalid == 20
    assert st.ninvalid >= 1 and st.ninvalid_bytes == st.ninvalid * 1048
    assert w.last_error == errno.ECONNREFUSED


# -- many packets, UDP --------------------------------------------------------------------
def test_udp_send_of_more_than_1024_packets_delivers_all() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 64 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2.0)
    tx = UDPSocket()
    tx.connect(Address("127.0.0.1", rx.getsockname()[1]))
    n = 3000
    data = (np.arange(n * 64, dtype=np.uint32) % 251).astype(np.uint8).reshape(n, 1, 64)
    with rx, tx, UDPTransmit("generic_64", tx) as w:
        assert w.send(HeaderInfo(), 0, 1, 0, 1, data) == n
        got = [rx.recv(100) for _ in range(n)]
    assert b"".join(got) == data.tobytes()
    assert w.stats == (n, n * 64, 0, 0)


def test_disk_send_of_many_packets_in_one_call(tmp_path: Path) -> None:
    n = 5000
    data = np.random.default_rng(2).integers(0, 256, size=(n, 2, 128), dtype=np.uint8)
    h = HeaderInfo()
    h.set_nsrc(2)
    h.set_nchan(4)
    path = tmp_path / "chips.dat"
    with open(path, "wb") as fh:
        w = DiskWriter("chips_4", fh)
        w.send(h, 1, 1, 0, 1, data)
    raw = np.frombuffer(path.read_bytes(), np.uint8).reshape(2 * n, 144)
    assert np.array_equal(raw[:, 16:], data.reshape(2 * n, 128))
    seqs = raw[:, 8:16].copy().view(">u8")[:, 0]
    assert np.array_equal(seqs, np.repeat(np.arange(1, n + 1), 2))
    assert w.stats.nvalid == 2 * n


# -- core ---------------------------------------------------------------------------------------
def test_core_pins_a_worker_and_never_the_caller(tmp_path: Path) -> None:
    before = os.sched_getaffinity(0)
    core = max(before)
    seen: list[set[int]] = []
    with open(tmp_path / "x", "wb") as fh:
        w = DiskWriter("generic_4", fh, core=core)
        orig = w._transfer

        def spy(*a):
            seen.append(os.sched_getaffinity(0))
            seen.append({threading.get_ident()})
            orig(*a)

        w._transfer = spy
        w.send(HeaderInfo(), 0, 1, 0, 1, np.ones((2, 1, 4), np.uint8))
        w.close()
    assert os.sched_getaffinity(0) == before
    assert seen[0] == {core} and seen[1] != {threading.get_ident()}
    assert (tmp_path / "x").read_bytes() == b"\x01" * 8


@pytest.mark.parametrize("core", [-1, None])
def test_core_none_sends_inline(core, tmp_path: Path) -> None:
    with open(tmp_path / "x", "wb") as fh:
        w = DiskWriter("generic_4", fh, core=core)
        assert w.core is None
        w.send(HeaderInfo(), 0, 1, 0, 1, np.ones((1, 1, 4), np.uint8))


def test_bad_core(tmp_path: Path) -> None:
    with open(tmp_path / "x", "wb") as fh:
        with pytest.raises(ArgumentError, match="core"):
            DiskWriter("tbn", fh, core=10_000)
        with pytest.raises(ArgumentError, match="core"):
            DiskWriter("tbn", fh, core="0")


def test_disk_method_argument(tmp_path: Path) -> None:
    with open(tmp_path / "x", "wb") as fh:
        with pytest.raises(ArgumentError, match="method"):
            DiskWriter("tbn", fh, method="mmap")


def test_statistics_are_published_in_proclog(tmp_path: Path, monkeypatch) -> None:
    proclog = pytest.importorskip("asbru.proclog")
    monkeypatch.setenv("ASBRU_PROCLOG_DIR", str(tmp_path / "logs"))
    with open(tmp_path / "x", "wb") as fh:
        with DiskWriter("tbn", fh) as w:
            w.send(HeaderInfo(), 0, 1, 0, 1, np.zeros((2, 3, 512, 2), np.int8))
        blocks = proclog.load_by_pid(os.getpid())
    mine = [b for name, b in blocks.items() if name.startswith("disk_writer")]
    assert mine, blocks
    stats = mine[-1]["stats"]
    assert stats["nvalid"] == 6 and stats["nvalid_bytes"] == 6 * 1048
    assert stats["ngood_bytes"] == 6 * 1048 and stats["ninvalid"] == 0 and stats["nlate"] == 0
    assert mine[-1]["type"]["type"] == "tbn"


def test_udp_transmit_over_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        rx.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 not configured")
    rx.settimeout(2.0)
    tx = UDPSocket()
    tx.connect(Address("::1", rx.getsockname()[1]))
    data = np.arange(3 * 64, dtype=np.uint8).reshape(3, 1, 64)
    with rx, tx:
        UDPTransmit("generic_64", tx).send(HeaderInfo(), 0, 1, 0, 1, data)
        assert b"".join(rx.recv(100) for _ in range(3)) == data.tobytes()


def test_udp_transmit_to_multicast_on_loopback() -> None:
    # Bifrost's multicast case (tbn to 224.0.0.251), pinned to lo so nothing leaves the host
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    group = Address("224.0.0.251", port)
    rx = UDPSocket()
    try:
        rx.bind(group, interface="lo")
        tx = UDPSocket()
        tx.connect(group, interface="lo")
    except (AsbruError, OSError) as exc:
        rx.close()
        pytest.skip(f"multicast on lo not available: {exc}")
    rng = np.random.default_rng(5)
    data = rng.integers(-128, 128, size=(3, 2, 512, 2), dtype=np.int8)
    with rx, tx:
        sock = socket.socket(fileno=os.dup(rx.fileno()))
        sock.settimeout(2.0)
        with sock:
            UDPTransmit("tbn", tx).send(HeaderInfo(), 0, 1, 0, 1, data)
            got = [sock.recv(2048) for _ in range(6)]
    assert [g[24:] for g in got] == [data[i, j].tobytes() for i in range(3) for j in range(2)]


@pytest.mark.parametrize("method", ["writev", "image"])
def test_disk_writer_to_a_nonblocking_pipe_resumes_short_writes(method: str) -> None:
    # a pipe holds 64 KiB: the writer meets EAGAIN and short writes, waits with poll and
    # must still deliver every byte in order
    r, wfd = os.pipe()
    os.set_blocking(wfd, False)
    rng = np.random.default_rng(9)
    data = rng.integers(-128, 128, size=(200, 4, 512, 2), dtype=np.int8)   # ~840 KB
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            b = os.read(r, 65536)
            if not b:
                return
            chunks.append(b)
            time.sleep(0.001)

    reader = threading.Thread(target=drain)
    reader.start()
    with os.fdopen(wfd, "wb", buffering=0) as fh:
        w = DiskWriter("tbn", fh, method=method)
        assert w.send(HeaderInfo(), 0, 1, 0, 1, data) == 800
    reader.join(timeout=30)
    os.close(r)
    raw = b"".join(chunks)
    assert len(raw) == 800 * 1048
    recs = np.frombuffer(raw, np.uint8).reshape(800, 1048)
    assert np.array_equal(recs[:, 24:], data.reshape(800, 1024).view(np.uint8))
    assert w.stats == (800, 800 * 1048, 0, 0)


@settings(max_examples=40, deadline=None)
@given(ntime=st.integers(0, 7), nsrc=st.integers(1, 5),
       seq=st.integers(0, (1 << 64) - 1), seq_inc=st.integers(-1000, 1000),
       src=st.integers(0, 200), src_inc=st.integers(0, 10))
def test_chips_headers_follow_send_arguments(ntime, nsrc, seq, seq_inc, src, src_inc) -> None:
    h = HeaderInfo()
    h.set_nsrc(nsrc)
    h.set_nchan(1)
    h.set_chan0(77)
    data = np.arange(ntime * nsrc * 32, dtype=np.uint32).astype(np.uint8).reshape(ntime, nsrc, 32)
    with tempfile.TemporaryFile() as fh:
        n = DiskWriter("chips_1", fh).send(h, seq, seq_inc, src, src_inc, data)
        fh.seek(0)
        raw = fh.read()
    assert n == ntime * nsrc and len(raw) == n * 48
    for k in range(n):
        i, j = divmod(k, nsrc)
        rec = raw[k * 48:(k + 1) * 48]
        assert rec[0] == (src + j * src_inc + 1) & 0xFF                     # roach = src + 1
        assert rec[5] == nsrc and int.from_bytes(rec[6:8], "big") == 77
        assert int.from_bytes(rec[8:16], "big") == (seq + i * seq_inc) % (1 << 64)
        assert rec[16:] == data[i, j].tobytes()
