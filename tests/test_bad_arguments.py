"""Bad arguments everywhere: every mistake a user can make gives a one-line error that names
the argument and says what is accepted (ArgumentError, or FormatError for format strings)."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from asbru import formats
from asbru.address import Address
from asbru.capture.testing import free_udp_port
from asbru.errors import ArgumentError, AsbruError
from asbru.formats.spec import FormatError
from asbru.packet_capture import DiskReader, UDPCapture
from asbru.packet_writer import DiskWriter, HeaderInfo, UDPTransmit
from asbru.udp_socket import UDPSocket


def one_line(exc: BaseException, *words: str) -> str:
    """The message is one line and names each of ``words`` (case-insensitive)."""
    msg = str(exc)
    assert msg and "\n" not in msg, repr(msg)
    for w in words:
        assert re.search(re.escape(w), msg, re.I), f"{w!r} not in {msg!r}"
    return msg


@pytest.fixture
def sock():
    s = UDPSocket()
    s.bind(Address("127.0.0.1", free_udp_port()))
    s.timeout = 0.1
    yield s
    s.close()


@pytest.fixture
def datafile(tmp_path):
    p = tmp_path / "d.dat"
    p.write_bytes(bytes(144 * 4))
    with open(p, "rb") as fh:
        yield fh


# ------------------------------------------------------------------ formats

@pytest.mark.parametrize("fmt", ["nosuchformat", "", "chips_x", "chips_-3", "ibeam9_4", "vdif_7"])
def test_unknown_or_malformed_format_string(fmt):
    with pytest.raises(FormatError) as ei:
        formats.get(fmt, "disk")
    one_line(ei.value, "format")


def test_unknown_format_lists_known_ones():
    with pytest.raises(FormatError) as ei:
        formats.get("nosuchformat")
    msg = one_line(ei.value, "nosuchformat")
    assert "chips" in msg and "tbn" in msg


def test_unknown_role():
    with pytest.raises((ArgumentError, FormatError)) as ei:
        formats.get("chips", "sideways")
    one_line(ei.value, "role", "capture")


def test_capture_unknown_format(sock):
    with pytest.raises(ArgumentError) as ei:
        UDPCapture("nosuchformat", sock, None, 1, 0, 9000, 4, 4, None)
    one_line(ei.value, "fmt")


def test_writer_unknown_or_not_writable_format(tmp_path):
    with open(tmp_path / "w", "wb") as fh:
        for fmt in ("nosuchformat", "chips"):  # 'chips' without _N has no payload size
            with pytest.raises((ArgumentError, FormatError)) as ei:
                DiskWriter(fmt, fh)
            one_line(ei.value, "format")


# ------------------------------------------------------------------ capture constructors

@pytest.mark.parametrize("nsrc", [0, -1, 2.5, "4", None, [2, 0]])
def test_udpcapture_bad_nsrc(sock, nsrc):
    with pytest.raises(ArgumentError) as ei:
        UDPCapture("chips", sock, None, nsrc, 0, 9000, 4, 4, None)
    one_line(ei.value, "nsrc")


@pytest.mark.parametrize("nsrc", [0, -3])
def test_diskreader_bad_nsrc(datafile, nsrc):
    with pytest.raises(ArgumentError) as ei:
        DiskReader("chips_4", datafile, None, nsrc, 0, 4, 4, None)
    one_line(ei.value, "nsrc", "positive")


@pytest.mark.parametrize("arg,pos", [("buffer_ntime", 6), ("slot_ntime", 7)])
@pytest.mark.parametrize("value", [0, -1])
def test_udpcapture_zero_or_negative_sizes(sock, arg, pos, value):
    args = ["chips", sock, None, 1, 0, 9000, 4, 4, None]
    args[pos] = value
    with pytest.raises(ArgumentError) as ei:
        UDPCapture(*args)
    one_line(ei.value, arg)


@pytest.mark.parametrize("value", [0, -1, 10])
def test_udpcapture_max_payload_size_too_small(sock, value):
    with pytest.raises(ArgumentError) as ei:
        UDPCapture("chips", sock, None, 1, 0, value, 4, 4, None)
    one_line(ei.value, "max_payload_size")


@pytest.mark.parametrize("arg,pos", [("buffer_nframe", 5), ("slot_nframe", 6)])
def test_diskreader_zero_sizes(datafile, arg, pos):
    args = ["chips_4", datafile, None, 1, 0, 4, 4, None]
    args[pos] = 0
    with pytest.raises(ArgumentError) as ei:
        DiskReader(*args)
    one_line(ei.value, arg)


def test_capture_unknown_keyword(sock):
    with pytest.raises(ArgumentError) as ei:
        UDPCapture("chips", sock, None, 1, 0, 9000, 4, 4, None, bogus=3)
    one_line(ei.value, "bogus", "accepted")


def test_capture_bad_ring(sock):
    with pytest.raises(ArgumentError) as ei:
        UDPCapture("chips", sock, ring="not a ring", nsrc=1, src0=0, max_payload_size=9000,
                   buffer_ntime=4, slot_ntime=4, sequence_callback=None)
    one_line(ei.value, "ring")


def test_capture_bad_callback(sock):
    with pytest.raises(ArgumentError) as ei:
        UDPCapture("chips", sock, None, 1, 0, 9000, 4, 4, 42)
    one_line(ei.value, "sequence_callback")


def test_capture_closed_socket():
    s = UDPSocket()
    s.bind(Address("127.0.0.1", free_udp_port()))
    s.close()
    with pytest.raises(ArgumentError) as ei:
        UDPCapture("chips", s, None, 1, 0, 9000, 4, 4, None)
    one_line(ei.value, "sock")


def test_capture_socket_closed_after_construction():
    s = UDPSocket()
    s.bind(Address("127.0.0.1", free_udp_port()))
    s.timeout = 0.1
    cap = UDPCapture("chips", s, None, 1, 0, 9000, 4, 4, None)
    s.close()
    with pytest.raises(ArgumentError) as ei:
        cap.recv()
    one_line(ei.value, "sock", "closed")
    cap.end()


def test_capture_not_a_socket():
    with pytest.raises(ArgumentError) as ei:
        UDPCapture("chips", "eth0", None, 1, 0, 9000, 4, 4, None)
    one_line(ei.value, "sock")


def test_diskreader_closed_file(tmp_path):
    p = tmp_path / "c.dat"
    p.write_bytes(bytes(144))
    fh = open(p, "rb")
    fh.close()
    with pytest.raises(ArgumentError) as ei:
        DiskReader("chips_4", fh, None, 1, 0, 4, 4, None)
    one_line(ei.value, "fh")


def test_diskreader_unreadable_file(tmp_path):
    fh = open(tmp_path / "wo.dat", "wb")  # write-only: cannot be read
    try:
        with pytest.raises(ArgumentError) as ei:
            DiskReader("chips_4", fh, None, 1, 0, 4, 4, None)
        one_line(ei.value, "fh", "read")
    finally:
        fh.close()


def test_diskreader_read_failure_is_an_error_status_not_a_hang(tmp_path):
    """A descriptor that opens for reading but cannot be read (a directory: EISDIR)."""
    fd = os.open(tmp_path, os.O_RDONLY)

    class Dir:
        def fileno(self):
            return fd

        def tell(self):
            return 0

    try:
        cap = DiskReader("chips_4", Dir(), None, 1, 0, 4, 4, None)
        assert int(cap.recv()) == 6  # ERROR, statistics still published
        cap.end()
    finally:
        os.close(fd)


def test_diskreader_format_without_record_size(datafile):
    with pytest.raises((ArgumentError, FormatError)) as ei:
        DiskReader("vdif", datafile, None, 1, 0, 4, 4, None)
    one_line(ei.value, "vdif")


def test_recv_after_end(datafile):
    cap = DiskReader("chips_4", datafile, None, 1, 0, 4, 4, None)
    cap.end()
    with pytest.raises(ArgumentError) as ei:
        cap.recv()
    one_line(ei.value, "ended")


def test_seek_bad_whence(datafile):
    cap = DiskReader("chips_4", datafile, None, 1, 0, 4, 4, None)
    with pytest.raises(ArgumentError) as ei:
        cap.seek(0, 7)
    one_line(ei.value, "whence")
    cap.end()


# ------------------------------------------------------------------ writers

@pytest.fixture
def writer(tmp_path):
    fh = open(tmp_path / "out.dat", "wb")
    w = DiskWriter("chips_4", fh)
    yield w
    w.close()
    fh.close()


def _hdr():
    h = HeaderInfo()
    h.set_nsrc(2)
    h.set_nchan(4)
    return h


@pytest.mark.parametrize("shape", [(3, 2, 100), (3, 2), (128,), (3, 2, 128, 2)])
def test_send_wrong_shape(writer, shape):
    with pytest.raises(ArgumentError) as ei:
        writer.send(_hdr(), 1, 1, 0, 1, np.zeros(shape, np.uint8))
    one_line(ei.value, "data")


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.complex64])
def test_send_wrong_dtype(writer, dtype):
    with pytest.raises(ArgumentError) as ei:
        writer.send(_hdr(), 1, 1, 0, 1, np.zeros((3, 2, 128), dtype))
    one_line(ei.value, "data")


def test_send_bad_headerinfo_and_seq(writer):
    data = np.zeros((1, 2, 128), np.uint8)
    with pytest.raises(ArgumentError) as ei:
        writer.send({"nsrc": 2}, 1, 1, 0, 1, data)
    one_line(ei.value, "headerinfo")
    with pytest.raises(ArgumentError) as ei:
        writer.send(_hdr(), "one", 1, 0, 1, data)
    one_line(ei.value, "seq")
    with pytest.raises(ArgumentError) as ei:
        writer.send(_hdr(), 1 << 70, 1, 0, 1, data)
    one_line(ei.value, "seq")


def test_writer_closed_file(tmp_path):
    fh = open(tmp_path / "x", "wb")
    w = DiskWriter("chips_4", fh)
    fh.close()
    with pytest.raises(ArgumentError) as ei:
        w.send(_hdr(), 1, 1, 0, 1, np.zeros((1, 2, 128), np.uint8))
    one_line(ei.value)


def test_writer_on_closed_socket():
    s = UDPSocket()
    s.connect(Address("127.0.0.1", free_udp_port()))
    s.close()
    with pytest.raises(ArgumentError) as ei:
        UDPTransmit("chips_4", s)
    one_line(ei.value)


@pytest.mark.parametrize("value", [-1, 1.5, "fast"])
def test_bad_rate_limit(writer, value):
    with pytest.raises(ArgumentError) as ei:
        writer.set_rate_limit(value)
    one_line(ei.value, "packets_per_second")


def test_writer_bad_core(tmp_path):
    bad = max(os.sched_getaffinity(0)) + 1000
    with open(tmp_path / "c", "wb") as fh:
        with pytest.raises(ArgumentError) as ei:
            DiskWriter("chips_4", fh, core=bad)
    one_line(ei.value, "core")


# ------------------------------------------------------------------ sockets and addresses

@pytest.mark.parametrize("addr,port", [("not an address at all", 1), ("127.0.0.1", 70000),
                                       ("127.0.0.1", "80")])  # port < 0 means a UNIX path
def test_bad_address(addr, port):
    with pytest.raises(ArgumentError) as ei:
        Address(addr, port)
    one_line(ei.value)


@pytest.mark.parametrize("value", [-1, "soon", float("nan")])
def test_bad_socket_timeout(value):
    s = UDPSocket()
    with pytest.raises(ArgumentError) as ei:
        s.timeout = value
    one_line(ei.value, "timeout")


def test_bind_twice():
    s = UDPSocket()
    s.bind(Address("127.0.0.1", free_udp_port()))
    try:
        with pytest.raises(AsbruError) as ei:
            s.bind(Address("127.0.0.1", free_udp_port()))
        one_line(ei.value, "bind", "already open")
    finally:
        s.close()
