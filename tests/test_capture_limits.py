"""Engine options and sizes that cannot work are one-line errors before anything is
allocated; a failed receive says its errno; an oversize datagram is counted at its real
size (issue 13, "arguments and errors")."""
from __future__ import annotations

import errno
import os
import socket
import time

import pytest

from asbru.address import Address
from asbru.capture.testing import run_capture
from asbru.errors import ArgumentError
from asbru.packet_capture import DiskReader, UDPCapture
from asbru.udp_socket import UDPSocket


@pytest.fixture
def sock():
    s = UDPSocket()
    s.bind(Address("127.0.0.1", 0))
    s.timeout = 0.05
    yield s
    s.close()


@pytest.fixture
def rec(tmp_path):
    path = tmp_path / "empty.dat"
    path.write_bytes(b"")
    with open(path, "rb") as fh:
        yield fh


class FakeFile:
    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd


def one_line(exc, *words):
    msg = str(exc)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("option", ["budget", "hold_packets", "max_jump_gulps"])
@pytest.mark.parametrize("value", [0, -1, -100])
def test_engine_options_must_be_positive(sock, rec, option, value):
    # main: budget=0 made end() spin forever; hold_packets/max_jump_gulps <= 0 were accepted
    with pytest.raises(ArgumentError) as ei:
        UDPCapture("chips", sock, None, 2, 0, 9000, 4, 4, None, **{option: value})
    one_line(ei.value, option)
    with pytest.raises(ArgumentError) as ei:
        DiskReader("chips_4", rec, None, 2, 0, 4, 4, None, **{option: value})
    one_line(ei.value, option)


HUGE = [2 ** 40, 2 ** 63 - 1, 2 ** 70]


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("name, pos", [("nsrc", 3), ("src0", 4), ("max_payload_size", 5),
                                       ("buffer_ntime", 6)])
def test_absurd_sizes_are_one_line_errors(sock, name, pos, value):
    # main: raw OverflowError / MemoryError / "Maximum allowed dimension exceeded"
    args = ["chips", sock, None, 2, 0, 9000, 4, 4, None]
    args[pos] = value
    with pytest.raises(ArgumentError) as ei:
        UDPCapture(*args)
    one_line(ei.value, name)


@pytest.mark.parametrize("value", HUGE)
def test_absurd_src0_and_nsrc_for_a_disk_reader(rec, value):
    for args, name in (((2, value), "src0"), ((value, 0), "nsrc")):
        with pytest.raises(ArgumentError) as ei:
            DiskReader("chips_4", rec, None, *args, 4, 4, None)
        one_line(ei.value, name)


def test_the_ring_must_fit_in_memory(sock):
    with pytest.raises(ArgumentError) as ei:
        UDPCapture("chips", sock, None, 1 << 20, 0, 9000, 1 << 16, 4, None)
    one_line(ei.value, "buffer_ntime * nsrc", "memory")


@pytest.mark.parametrize("value", [2 ** 31, 2 ** 40, 2 ** 70])
def test_absurd_file_descriptors(value):
    with pytest.raises(ArgumentError) as ei:
        UDPCapture("chips", FakeFile(value), None, 2, 0, 9000, 4, 4, None)
    one_line(ei.value, "fileno()", "not a file descriptor")
    with pytest.raises(ArgumentError) as ei:
        DiskReader("chips_4", FakeFile(value), None, 2, 0, 4, 4, None)
    one_line(ei.value, "fileno()")


def test_absurd_batch_and_read_sizes(sock, rec):
    with pytest.raises(ArgumentError) as ei:
        UDPCapture("chips", sock, None, 2, 0, 9000, 4, 4, None, nbatch=2 ** 40)
    one_line(ei.value, "nbatch")
    with pytest.raises(ArgumentError) as ei:
        DiskReader("chips_4", rec, None, 2, 0, 4, 4, None, read_size=2 ** 50)
    one_line(ei.value, "read_size")


# ---------------------------------------------------------------------- errno of ERROR
def test_udp_receive_error_carries_its_errno():
    # recvmmsg on a TCP socket that is not connected fails with ENOTCONN
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
        cap = UDPCapture("chips", t, None, 2, 0, 9000, 4, 4, None)
        assert cap.recv() == 6
        st = cap.stats
        assert st["errno"] == errno.ENOTCONN and st["error"] == os.strerror(errno.ENOTCONN)
        err = cap.last_error
        assert isinstance(err, OSError) and err.errno == errno.ENOTCONN
        one_line(err, "UDPCapture.recv", os.strerror(errno.ENOTCONN))
        cap.end()


def test_disk_read_error_carries_its_errno(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY)      # read() of a directory: EISDIR
    try:
        cap = DiskReader("chips_4", FakeFile(fd), None, 2, 0, 4, 4, None)
        assert cap.last_error is None
        assert cap.recv() == 6
        assert cap.stats["errno"] == errno.EISDIR and cap.last_error.errno == errno.EISDIR
        cap.end()
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- oversize datagrams
def test_oversize_datagram_is_counted_at_its_real_size(sock):
    # main: counted as max_payload_size bytes
    with socket.socket(fileno=os.dup(sock.fileno())) as dup:
        port = dup.getsockname()[1]
    cap = UDPCapture("chips", sock, None, 2, 0, 1000, 4, 4, None)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for size in (1001, 5000, 20000):
            tx.sendto(bytes(size), ("127.0.0.1", port))
    deadline = time.monotonic() + 10
    while cap.stats["nreceived"] < 3 and time.monotonic() < deadline:
        run_capture(cap, max_calls=5)
    cap.end()
    st = cap.stats
    assert st["ninvalid"] == 3 and st["ninvalid_bytes"] == 1001 + 5000 + 20000
