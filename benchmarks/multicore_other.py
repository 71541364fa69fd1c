"""``benchmarks/multicore.py --what sniffer|disk``: UDPSniffer and DiskReader with N threads.

* **sniffer**: one ``UDPSniffer(..., threads=N)`` (VDIF, 16 sources) on one address; N C
  senders (``sendmmsg_tx``, one source port each, so that the fanout group's by-source
  program spreads them; each sends the same number of packets at every N) fill the packet
  sockets' rings while the receive threads are held, then the capture drains them (timed
  from the first recv() to the last placement).  Baseline in the same run: N C
  ``recvmmsg`` receivers, each pre-filled by its own sender (multicore.py's ``c_round``).
* **disk**: one ``DiskReader(..., threads=N)`` reading a chips recording in /dev/shm (page
  cache); baseline: N Python threads each reading 1/N of the file with ``readinto`` of
  1 MiB (the GIL is released while the kernel copies), i.e. N ``cat``s at once.

Lines: ``N=<n>: <packets/s> pkt/s, <ratio>x of N=1 (baseline: <ratio>x); ...``.
"""
from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable

from asbru.address import Address
from asbru.capture import layout as L
from asbru.capture.sniffer import UDPSniffer, have_cap_net_raw
from asbru.packet_capture import DiskReader
from asbru.ring import Ring
from asbru.udp_socket import UDPSocket
from benchmarks import multicore
from benchmarks.capture import LastPlacement, chips_recording

NSRC = 16
FPS = 256


def _k(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def placed(cap: Any) -> int:
    st = cap.stats_obj
    v = int(st.cnt[L.C_NVALID])
    if hasattr(st, "fcnt"):
        v += int(st.fcnt[:, L.C_NVALID].sum()) + int(st.corr[:, L.C_NVALID].sum())
    return v


def _line(n: int, ours: dict, theirs: dict, ns: list, what: str) -> str:
    r1 = ours[n] / ours[ns[0]]
    c1 = theirs[n] / theirs[ns[0]]
    return (f"N={n}: {_k(ours[n])} pkt/s, {r1:.2f}x of N=1 ({what}: {c1:.2f}x); "
            f"{n} {what} {_k(theirs[n])} pkt/s, ratio {ours[n] / theirs[n]:.2f}")


# -- sniffer -------------------------------------------------------------------------------
class Sniffer:
    def __init__(self, n: int, exe: Any, payload: int, gulp: int, per: int) -> None:
        self.n, self.exe, self.payload = n, exe, payload
        self.sock = UDPSocket(buffer_size=1 << 20)
        probe = UDPSocket()
        probe.bind(Address("127.0.0.1", 0))
        self.port = probe._sock.getsockname()[1]
        probe.close()
        self.sock.sniff(Address("127.0.0.1", self.port))
        self.sock.timeout = 0.5
        # each ring holds a whole round (pre-filled; the senders' source ports are chosen so
        # that the by-source steering gives each socket one sender; the kernel hands a block
        # over part-filled after sniff_retire_ms: a margin)
        nblock = n * per * max(4096, 2 * payload) // (1 << 22) + 16
        extra = {"threads": n} if n > 1 else {}
        self.cap = UDPSniffer("vdif", self.sock, Ring(name=f"bench_mcsniff_{n}_{payload}_{os.getpid()}"),
                              NSRC, 0, 9000, gulp, 1, None, sniff_block_size=1 << 22,
                              sniff_block_count=nblock, sniff_retire_ms=4, **extra)
        self.seq = FPS - 1
        self.round(min(per, max(6 * gulp * NSRC // n, 4096)))   # compile, fault the ring in

    def round(self, per: int) -> float:
        if self.n > 1:
            from asbru.capture.group import shared
            self.cap._group_quiesce(shared.ST_PAUSE)           # hold the receive threads
        # n C senders, one source port each, all to the one sniffed port
        multicore._senders(self.exe, [self.port] * self.n, per, self.payload, self.seq,
                           sports=multicore.steered_ports(self.n) if self.n > 1 else None)
        self.seq += per // (NSRC // self.n) + 1000
        time.sleep(0.05)
        want = per * self.n
        start = placed(self.cap)
        watch = LastPlacement(lambda: placed(self.cap) - start, want)
        t0 = time.perf_counter()
        with watch:
            while placed(self.cap) - start < want:
                if int(self.cap.recv()) in (1, 4, 5, 6):
                    break
        while int(self.cap.recv()) not in (1, 4, 5, 6):
            pass
        got = placed(self.cap) - start
        if self.n > 1:
            rows = self.cap.stats["per_thread"]
            self.where = ", ".join(f"{r['thread']}: {r['nvalid']} placed, {r['nhanded']} handed over"
                                   for r in rows)
        if got < want:
            print(f"  (asbru N={self.n}: {got} of {want} packets placed; kernel drops "
                  f"{self.cap.stats['nkernel_drops']})")
        return got / (watch.at - t0)

    def close(self) -> None:
        self.cap.end()
        self.sock.close()


def bench_sniffer(exe: Any, ns: list[int], repeat: int, scale: float,
                  c_round: Callable[..., float], sizes: dict, per_socket: dict, gulps: dict,
                  detail: bool = False) -> None:
    if not have_cap_net_raw():
        print("UDPSniffer: not measured (needs CAP_NET_RAW)")
        return
    for label, payload in sizes.items():
        per = int(per_socket[label] * scale)
        print(f"UDPSniffer vdif {label} payload, {NSRC} sources, {per} packets per sender, "
              f"{gulps[label]} time slots per gulp:", flush=True)
        ours: dict[int, float] = {}
        theirs: dict[int, float] = {}
        for n in ns:
            cap = Sniffer(n, exe, payload, gulps[label], per)
            mine, base = [], []
            try:
                for _ in range(repeat):
                    base.append(c_round(exe, n, per, payload))
                    mine.append(cap.round(per))
            finally:
                cap.close()
            ours[n], theirs[n] = statistics.median(mine), statistics.median(base)
            print(_line(n, ours, theirs, ns, "C receivers"), flush=True)
            if detail and n > 1:
                print(f"  (N={n}, counts since start: {cap.where})", flush=True)


# -- disk ----------------------------------------------------------------------------------
def _cats(path: Path, n: int) -> float:
    """N threads, each reading its 1/N of the file with readinto(1 MiB): seconds."""
    size = path.stat().st_size
    part = -(-size // n)

    def one(k: int) -> None:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        with open(path, "rb", buffering=0) as fh:
            fh.seek(k * part)
            left = min(part, size - k * part)
            while left > 0:
                got = fh.readinto(view[:min(len(buf), left)])
                if not got:
                    break
                left -= got
    ts = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - t0


def _read(path: Path, n: int, nrec: int, payload: int, gulp: int) -> float:
    """One DiskReader(threads=n) through the whole file: seconds."""
    with open(path, "rb") as fh:
        extra = {"threads": n} if n > 1 else {}
        dr = DiskReader(f"chips_{payload // 32}", fh, Ring(name=f"bench_mcdisk_{n}_{os.getpid()}"),
                        NSRC, 0, gulp, 1, None, **extra)
        t0 = time.perf_counter()
        while int(dr.recv()) not in (1, 4, 5, 6):
            pass
        dt = time.perf_counter() - t0
        got = placed(dr)
        dr.end()
    if got != nrec:
        raise RuntimeError(f"DiskReader threads={n} placed {got} of {nrec} records")
    return dt


def bench_disk(ns: list[int], repeat: int, scale: float) -> None:
    for label, payload, mib, gulp in (("8 KiB", 8160, 512, 256), ("1 KiB", 1024, 256, 1024)):
        mib = max(16, int(mib * scale))
        path, nrec = chips_recording(mib, payload, "multicore")
        try:
            print(f"DiskReader chips_{payload // 32} ({label} records, {mib} MiB in the page "
                  f"cache, {gulp} time slots per gulp):", flush=True)
            ours: dict[int, float] = {}
            theirs: dict[int, float] = {}
            for n in ns:
                _read(path, n, nrec, payload, gulp)          # compile, fault the ring in
                mine = [nrec / _read(path, n, nrec, payload, gulp) for _ in range(repeat)]
                base = [nrec / _cats(path, n) for _ in range(repeat)]
                ours[n], theirs[n] = statistics.median(mine), statistics.median(base)
                print(_line(n, ours, theirs, ns, "readinto threads") +
                      f" ({ours[n] * (16 + payload) / 1e9:.2f} GB/s)", flush=True)
        finally:
            path.unlink(missing_ok=True)


def main() -> int:
    """Both, as ``benchmarks/multicore.py --what sniffer`` and ``--what disk`` run them."""
    import sys
    from benchmarks.machine import describe
    print(describe(), flush=True)
    for what in ("sniffer", "disk"):
        sys.argv = [sys.argv[0], "--what", what] + sys.argv[1:]
        multicore.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
