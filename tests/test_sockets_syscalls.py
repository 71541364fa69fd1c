"""asbru.sockets.syscalls and asbru.sockets.msgvec: real syscalls on loopback sockets,
called from numba-compiled code, including errno and on-disk caching across processes."""
from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from numba import njit

from asbru.errors import ArgumentError
from asbru.sockets import msgvec as mv
from asbru.sockets import syscalls as sc


# ---- compiled callers (module globals so that they cache) -----------------------------
@njit(nogil=True, cache=True)
def _recv_batch(fd, addr, vlen, controllens, control_size, flags):
    mv.reset_controllens(controllens, control_size)
    r = sc.recvmmsg(fd, addr, vlen, flags, 0)
    if r < 0:
        return -sc.errno()
    return r


@njit(nogil=True, cache=True)
def _send_batch(fd, sv_iov, sv_addr, hdrs, hdr_size, payloads, count):
    # header i = hdrs[i], payload i = payloads[i]; no copy of either
    plen = payloads.shape[1]
    hbase = hdrs.ctypes.data
    pbase = payloads.ctypes.data
    for i in range(count):
        mv.set_iov(sv_iov, i, hbase + i * hdr_size, hdr_size, pbase + i * plen, plen)
    return sc.sendmmsg_e(fd, sv_addr, count, 0)


@njit(nogil=True, cache=True)
def _file_roundtrip(fd, src, dst):
    w = sc.write_e(fd, src.ctypes.data, src.size)
    pos = sc.lseek_e(fd, 0, sc.SEEK_SET)
    r = sc.read_e(fd, dst.ctypes.data, dst.size)
    end = sc.lseek_e(fd, 0, sc.SEEK_END)
    return w, pos, r, end


@njit(nogil=True, cache=True)
def _writev(fd, iov, n):
    return sc.writev_e(fd, iov.ctypes.data, n)


@njit(nogil=True, cache=True)
def _poll(fds, timeout_ms):
    return sc.poll_e(fds.ctypes.data, fds.shape[0], timeout_ms)


@njit(nogil=True, cache=True)
def _errno_roundtrip(v):
    sc.set_errno(v)
    return sc.errno()


def _udp_pair(family=socket.AF_INET, host="127.0.0.1"):
    """A receiver and a sender connected to each other: the receiver accepts datagrams
    only from the sender, so stray loopback traffic from other processes cannot arrive."""
    rx = socket.socket(family, socket.SOCK_DGRAM)
    rx.bind((host, 0))
    tx = socket.socket(family, socket.SOCK_DGRAM)
    tx.bind((host, 0))
    tx.connect(rx.getsockname()[:2])
    rx.connect(tx.getsockname()[:2])
    return rx, tx


# ---- errno ------------------------------------------------------------------------------
def test_errno_is_readable_and_thread_local():
    assert _errno_roundtrip(sc.EINTR) == sc.EINTR
    seen = []
    t = threading.Thread(target=lambda: seen.append(_errno_roundtrip(sc.EBADF)))
    t.start()
    t.join(10)
    assert seen == [sc.EBADF]


def test_recvmmsg_timeout_gives_eagain():
    rx, _tx = _udp_pair()
    with rx, _tx:
        rx.settimeout(None)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, np.array([0, 50_000], np.int64).tobytes())
        rv = mv.RecvVec(8, 256)
        # blocking call: SO_RCVTIMEO (50 ms) expires with nothing queued
        assert _recv_batch(rx.fileno(), rv.addr, 8, rv.controllens, rv.control_size, 0) == -sc.EAGAIN
        # non-blocking call returns at once with EAGAIN as well
        assert _recv_batch(rx.fileno(), rv.addr, 8, rv.controllens, rv.control_size,
                           sc.MSG_DONTWAIT) == -sc.EAGAIN


def test_recvmmsg_on_closed_fd_gives_ebadf():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = s.detach()
    os.close(fd)
    rv = mv.RecvVec(4, 64)
    assert _recv_batch(fd, rv.addr, 4, rv.controllens, rv.control_size, 0) == -sc.EBADF


# ---- recvmmsg / RecvVec ----------------------------------------------------------------
def test_recvvec_receives_exact_bytes_and_lengths():
    rx, tx = _udp_pair()
    with rx, tx:
        sent = [bytes([i]) * (100 + i) + b"end" for i in range(20)]
        for p in sent:
            tx.send(p)
        rv = mv.RecvVec(32, 512)
        n = _recv_batch(rx.fileno(), rv.addr, 32, rv.controllens, rv.control_size, sc.MSG_DONTWAIT)
        assert n == 20
        got = [rv.buffers[i, : rv.lengths[i]].tobytes() for i in range(n)]
        assert got == sent
        assert (rv.flags[:n] & sc.MSG_TRUNC).sum() == 0


def test_recvvec_truncation_is_flagged_and_bounded():
    rx, tx = _udp_pair()
    with rx, tx:
        tx.send(b"a" * 300)
        rv = mv.RecvVec(2, 100)
        rv.buffers[1, :] = 7
        n = _recv_batch(rx.fileno(), rv.addr, 2, rv.controllens, rv.control_size, sc.MSG_DONTWAIT)
        assert n == 1
        assert rv.lengths[0] == 100 and rv.flags[0] & sc.MSG_TRUNC
        assert (rv.buffers[1] == 7).all()  # nothing written past message 0's buffer


def test_ipv6_loopback_recvmmsg():
    try:
        rx, tx = _udp_pair(socket.AF_INET6, "::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    with rx, tx:
        tx.send(b"six")
        rv = mv.RecvVec(4, 64, control=False)
        assert rv.control_size == 0
        n = _recv_batch(rx.fileno(), rv.addr, 4, rv.controllens, rv.control_size, sc.MSG_DONTWAIT)
        assert n == 1 and rv.buffers[0, :3].tobytes() == b"six"


def test_rxq_ovfl_reports_kernel_drops():
    rx, tx = _udp_pair()
    with rx, tx:
        rx.setsockopt(socket.SOL_SOCKET, sc.SO_RXQ_OVFL, 1)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # tiny: most of a burst drops
        rv = mv.RecvVec(64, 2048)
        for _ in range(40):
            tx.send(b"x" * 1000)
        queued = _recv_batch(rx.fileno(), rv.addr, 64, rv.controllens, rv.control_size, sc.MSG_DONTWAIT)
        assert 0 < queued < 40
        first = [mv.rxq_ovfl(rv.control, rv.controllens, i) for i in range(queued)]
        assert first == [-1] * queued   # nothing had been dropped when these were queued
        tx.send(b"late")
        n = _recv_batch(rx.fileno(), rv.addr, 64, rv.controllens, rv.control_size, sc.MSG_DONTWAIT)
        assert n == 1 and rv.buffers[0, :4].tobytes() == b"late"
        assert mv.rxq_ovfl(rv.control, rv.controllens, 0) == 40 - queued
        # a stale msg_controllen (not reset) loses the cmsg: the documented per-call reset matters
        tx.send(b"again")
        rv.controllens[:] = 0
        assert sc.recvmmsg_e(rx.fileno(), rv.addr, 64, sc.MSG_DONTWAIT, 0) == 1
        assert mv.rxq_ovfl(rv.control, rv.controllens, 0) == -1
        assert mv.rxq_ovfl(rv.control, rv.controllens, 99) == -1    # out of range index


def test_rxq_ovfl_survives_garbage_control_data():
    rv = mv.RecvVec(2, 16)
    rng = np.random.default_rng(1)
    for _ in range(200):
        rv.control[:] = rng.integers(0, 256, rv.control.shape, dtype=np.uint8)
        rv.controllens[:] = rng.integers(0, 1 << 40, 2, dtype=np.uint64)
        v = mv.rxq_ovfl(rv.control, rv.controllens, 0)
        assert v == -1 or 0 <= v <= 0xFFFFFFFF


def test_layout_matches_ctypes():
    assert mv.MMSGHDR_SIZE == ctypes.sizeof(mv._mmsghdr)
    assert mv.OFF_MSG_LEN == ctypes.sizeof(mv._msghdr)
    rv = mv.RecvVec(3, 10)
    m = mv._mmsghdr.from_address(rv.addr + 2 * mv.MMSGHDR_SIZE)
    assert m.msg_hdr.msg_iovlen == 1
    iov = mv._iovec.from_address(m.msg_hdr.msg_iov)
    assert iov.iov_base == rv.buffers[2].ctypes.data and iov.iov_len == 10
    assert m.msg_hdr.msg_control == rv.control[2].ctypes.data
    assert m.msg_hdr.msg_controllen == rv.control_size >= mv.cmsg_space(4)


def test_bad_sizes_raise_argument_error():
    with pytest.raises(ArgumentError, match="bufsize"):
        mv.RecvVec(4, 0)
    with pytest.raises(ArgumentError, match="n must be"):
        mv.SendVec(-1)


# ---- sendmmsg / SendVec ----------------------------------------------------------------
def test_sendvec_sends_header_payload_pairs_without_copy():
    rx, tx = _udp_pair()
    with rx, tx:
        count = 16
        hdrs = np.arange(count * 8, dtype=np.uint8).reshape(count, 8)
        payloads = np.repeat(np.arange(count, dtype=np.uint8)[:, None] + 100, 500, axis=1)
        sv = mv.SendVec(32)
        sent = _send_batch(tx.fileno(), sv.iov, sv.addr, hdrs, 8, payloads, count)
        assert sent == count
        assert (sv.lengths[:count] == 508).all()
        rx.settimeout(5)
        for i in range(count):
            assert rx.recv(2048) == hdrs[i].tobytes() + payloads[i].tobytes()


def test_sendmmsg_on_unconnected_socket_reports_errno():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        hdr = np.zeros((1, 4), np.uint8)
        pay = np.zeros((1, 4), np.uint8)
        sv = mv.SendVec(1)
        assert _send_batch(s.fileno(), sv.iov, sv.addr, hdr, 4, pay, 1) == -errno.EDESTADDRREQ


# ---- read / write / writev / lseek / poll ------------------------------------------------
def test_file_calls(tmp_path):
    path = tmp_path / "f.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        src = np.arange(1000, dtype=np.uint8) % 251
        dst = np.zeros(1000, np.uint8)
        assert _file_roundtrip(fd, src, dst) == (1000, 0, 1000, 1000)
        assert (dst == src).all()
        a = np.frombuffer(b"head", np.uint8).copy()
        b = np.frombuffer(b"-payload", np.uint8).copy()
        iov = np.array([[a.ctypes.data, 4], [b.ctypes.data, 8]], dtype=np.uint64)
        assert _writev(fd, iov, 2) == 12
    finally:
        os.close(fd)
    assert path.read_bytes()[1000:] == b"head-payload"
    assert _file_roundtrip(-1, dst, dst)[0] == -sc.EBADF


def test_poll_waits_and_sees_data():
    rx, tx = _udp_pair()
    with rx, tx:
        fds = np.zeros((1, 2), np.int32)  # one struct pollfd: [fd, events | revents << 16]
        fds[0, 0] = rx.fileno()
        fds[0, 1] = sc.POLLIN
        assert _poll(fds, 20) == 0
        tx.send(b"p")
        assert _poll(fds, 5000) == 1
        assert (fds[0, 1] >> 16) & sc.POLLIN


# ---- caching across processes ------------------------------------------------------------
def test_compiled_callers_cache_across_processes(tmp_path):
    mod = tmp_path / "sc_cache_probe.py"
    mod.write_text(textwrap.dedent("""
        import numpy as np
        from numba import njit
        from asbru.sockets import syscalls as sc, msgvec as mv

        @njit(nogil=True, cache=True)
        def probe(fd, addr, n, controllens, size):
            mv.reset_controllens(controllens, size)
            r = sc.recvmmsg(fd, addr, n, sc.MSG_DONTWAIT, 0)
            return -sc.errno() if r < 0 else r

        if __name__ == "__main__":
            rv = mv.RecvVec(4, 64)
            print(probe(-1, rv.addr, 4, rv.controllens, rv.control_size),
                  sum(probe.stats.cache_hits.values()), sum(probe.stats.cache_misses.values()))
    """))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(tmp_path))
    outs = [subprocess.run([sys.executable, str(mod)], env=env, capture_output=True, text=True,
                           timeout=180, check=True).stdout.split() for _ in range(2)]
    assert outs[0] == [str(-sc.EBADF), "0", "1"]   # compiled and stored
    assert outs[1] == [str(-sc.EBADF), "1", "0"]   # loaded from the cache, not recompiled


def test_drop_counter_reads_sk_drops_exactly():
    from asbru.sockets.drops import DropCounter
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # a few datagrams only
        rx.bind(("127.0.0.1", 0))
        dc = DropCounter(rx.fileno())
        assert dc.available and dc.total() == 0
        for _ in range(60):
            tx.sendto(b"x" * 1000, rx.getsockname())
        rx.setblocking(False)
        received = 0
        try:
            while True:
                rx.recv(2000)
                received += 1
        except BlockingIOError:
            pass
        assert 0 < received < 60
        assert dc.total() == 60 - received          # every datagram: received or dropped
        assert dc.total() == 60 - received          # reading again counts nothing twice
