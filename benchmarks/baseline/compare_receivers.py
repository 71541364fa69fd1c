"""Receive-side check of asbru's socket layer against the C baseline, in one run.

"Drain" measurement (receiver capacity): the C sender (``sendmmsg_tx``) first queues N
CHIPS-headed datagrams into a receiver that is not reading yet, then the receiver reads
them all and only that is timed.  Receivers, each run in turn, best of 3:
  1. the C receiver (``recvmmsg_rx``: recvmmsg batch 64 + decode + memcpy scatter),
  2. a numba loop calling ``asbru.sockets.syscalls.recvmmsg`` on a ``RecvVec`` (same work),
  3. a numba loop walking ``asbru.sockets.packet_ring`` (TPACKET_V3; root only).
N defaults to what a 256 MiB socket buffer holds; packets lost (buffer overflow) are shown.

usage: python benchmarks/baseline/compare_receivers.py [NPKT] [PAYLOAD]
"""
from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from asbru.address import Address  # noqa: E402
from asbru.errors import PermissionNeeded  # noqa: E402
from asbru.sockets import msgvec as mv  # noqa: E402
from asbru.sockets import packet_ring as pr  # noqa: E402
from asbru.sockets import syscalls as sc  # noqa: E402
from asbru.udp_socket import UDPSocket  # noqa: E402
from benchmarks.baseline.build import build, run_sender, start_receiver  # noqa: E402

NSRC = 4


@njit(nogil=True, cache=True, inline="always")
def _scatter(pkt, ring, nslot, payload, nsrc):
    if pkt.shape[0] != 16 + payload:
        return False
    src = np.int64(pkt[0]) - 1
    seq = np.uint64(0)
    for k in range(8):
        seq = (seq << np.uint64(8)) | np.uint64(pkt[8 + k])
    seq -= np.uint64(1)
    if src < 0 or src >= nsrc:
        return False
    row = np.int64(seq % np.uint64(nslot)) * nsrc + src
    dst = ring[row * payload:(row + 1) * payload]     # slice first, then index: vectorised copy
    src_b = pkt[16:16 + payload]
    for j in range(payload):
        dst[j] = src_b[j]
    return True


@njit(nogil=True, cache=True)
def _recvmmsg_loop(fd, rv_addr, bufs, lengths, nmsg, ring, nslot, payload, nsrc, npkt, times):
    got = 0
    bad = 0
    while got + bad < npkt:
        n = sc.recvmmsg(fd, rv_addr, nmsg, sc.MSG_WAITFORONE, 0)
        if n < 0:
            if sc.errno() == sc.EINTR:
                continue
            break
        if got + bad == 0:
            times[0] = 1
        for i in range(n):
            if _scatter(bufs[i, :lengths[i]], ring, nslot, payload, nsrc):
                got += 1
            else:
                bad += 1
    return got


@njit(nogil=True, cache=True)
def _ring_loop(prbuf, bsize, nblock, off, length, pollfd, ring, nslot, payload, nsrc, npkt, timeout_ms):
    got = 0
    b = 0
    while got < npkt:
        if pr.block_status(prbuf, bsize, b) & pr.TP_STATUS_USER == 0:
            r = pr.wait(pollfd, timeout_ms)
            if r == 0:
                break
            continue
        n = pr.walk_block(prbuf, bsize, b, off, length)
        for i in range(n):
            pkt = prbuf[off[i]:off[i] + length[i]]
            if _scatter(pkt, ring, nslot, payload, nsrc):
                got += 1
        pr.release_block(prbuf, bsize, b)
        b = (b + 1) % nblock
    return got


def _best(values):
    return max(values) if values else 0.0


def main() -> int:
    payload = int(sys.argv[2]) if len(sys.argv) > 2 else 8192
    default_n = 20_000 if payload > 4096 else 100_000     # what the socket buffer holds
    npkt = int(sys.argv[1]) if len(sys.argv) > 1 else default_n
    reps = 3
    ring = np.empty(256 << 20, np.uint8)
    ring.fill(0)                                   # pre-fault: first-touch faults skew the figures
    nslot = ring.size // (payload * NSRC)
    c_pps, n_pps, r_pps, lost = [], [], [], {"C": 0, "numba": 0, "ring": 0}
    ring_note = ""
    with tempfile.TemporaryDirectory(prefix="asbru-baseline-") as d:
        exe = build(d)
        for _rep in range(reps):
            # 1. C receiver: bound and waiting; sender fills its buffer; then drain
            rx = start_receiver(exe.rx, npkt, timeout=0.2, maxsize=payload + 64, wait_ms=-1)
            try:
                run_sender(exe.tx, rx.port, npkt, payload, nsrc=NSRC)
                rx.go()
                c = rx.result()
            finally:
                rx.kill()
            c_pps.append(c["packets"] / c["seconds"] if c["seconds"] else 0.0)
            lost["C"] += npkt - int(c["packets"])

            # 2. numba recvmmsg loop on a UDPSocket
            with UDPSocket() as s:
                s.bind(Address("127.0.0.1", 0))
                s.timeout = 0.2
                with socket.socket(fileno=os.dup(s.fileno())) as dup:
                    port = dup.getsockname()[1]
                rv = mv.RecvVec(64, payload + 64, control=False)
                _recvmmsg_loop(s.fileno(), rv.addr, rv.buffers, rv.lengths, 64, ring, nslot,
                               payload, NSRC, 0, np.zeros(1, np.int64))        # compile/load
                run_sender(exe.tx, port, npkt, payload, nsrc=NSRC)
                t0 = time.perf_counter()
                got = _recvmmsg_loop(s.fileno(), rv.addr, rv.buffers, rv.lengths, 64, ring, nslot,
                                     payload, NSRC, npkt, np.zeros(1, np.int64))
                secs = time.perf_counter() - t0 - (0.2 if got < npkt else 0.0)  # final timeout
            n_pps.append(got / secs)
            lost["numba"] += npkt - got

            # 3. TPACKET_V3 ring walked by numba
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tmp:
                    tmp.bind(("127.0.0.1", 0))
                    p = tmp.getsockname()[1]
                with pr.PacketRing.open(Address("127.0.0.1", p), block_size=1 << 22,
                                        block_count=64, retire_ms=50) as r:
                    _ring_loop(r.ring, r.block_size, r.block_count, r.off, r.length, r.pollfd,
                               ring, nslot, payload, NSRC, 0, 1)                # compile/load
                    run_sender(exe.tx, p, npkt, payload, nsrc=NSRC)
                    time.sleep(0.08)       # let the retire timer hand over the last block
                    t0 = time.perf_counter()
                    got_r = _ring_loop(r.ring, r.block_size, r.block_count, r.off, r.length,
                                       r.pollfd, ring, nslot, payload, NSRC, npkt, 200)
                    secs_r = time.perf_counter() - t0 - (0.2 if got_r < npkt else 0.0)
                r_pps.append(got_r / secs_r)
                lost["ring"] += npkt - got_r
            except PermissionNeeded:
                ring_note = "skipped (needs CAP_NET_RAW)"

    c_best = _best(c_pps)
    print(f"drain of {npkt} pre-queued datagrams (16 B CHIPS header + {payload} B), best of {reps}, "
          f"decode + scatter into a 256 MiB ring")
    print(f"  C recvmmsg baseline            : {c_best:12,.0f} pkt/s  1.00 x   "
          f"({c_best * (payload + 16) * 8e-9:.2f} Gbit/s, lost {lost['C']})")
    nb = _best(n_pps)
    print(f"  numba recvmmsg (asbru.sockets) : {nb:12,.0f} pkt/s  {nb / c_best:.2f} x   (lost {lost['numba']})")
    if ring_note:
        print(f"  TPACKET_V3 ring                : {ring_note}")
    else:
        rb = _best(r_pps)
        print(f"  TPACKET_V3 ring (numba walk)   : {rb:12,.0f} pkt/s  {rb / c_best:.2f} x   (lost {lost['ring']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
