"""One capture on N receive threads, beside N C receivers, in one run.

    .venv/bin/python benchmarks/multicore.py [--repeat 3] [--quick] [--threads 1,2,4,8]
                                             [--what udp|sniffer|disk]

``--what sniffer`` and ``--what disk`` measure ``UDPSniffer(..., threads=N)`` and
``DiskReader(..., threads=N)`` instead (benchmarks/multicore_other.py says how).

For N = 1, 2, 4, 8 (only those the machine has cores for): aggregate packets/s of

* **asbru**: one UDPCapture (VDIF, 16 sources) into one ring.  N = 1 is the ordinary
  single-thread capture; N > 1 is ``UDPCapture(..., socks=[...])`` with one socket per
  port, each received by its own thread, all placing into the same gulps (docs/multicore.md);
* **C**: N ``recvmmsg_rx`` processes (benchmarks/baseline/recvmmsg_rx.c: the same VDIF
  decode and one memcpy per packet into a pre-faulted ring), one per port.

Both are fed the same way: port j gets the sources j*16/N .. (j+1)*16/N - 1 from its own C
sender (``sendmmsg_tx --src0``), so there are always as many senders as receivers, and
the sockets are filled *before* anything receives (drain measurement, as
benchmarks/capture.py does: the C receivers wait for a "go" line, the capture's receive
threads are paused), so the figure is the receivers' capacity, not the senders'.  Each
socket gets the same number of packets at every N.  Timed: the C receivers from their first
packet to their last (the aggregate is all packets over the slowest receiver's time); the
capture from the first recv() to the last placement (a watcher thread reads the live
counters).  Every round is a new sequence; each figure is the median of ``--repeat`` rounds.

Output: the machine, then per packet size one line per N:
``N=<n>: <packets/s> pkt/s, <ratio>x of N=1 (C receivers: <ratio>x); ...`` with the N C
receivers' figure and asbru's ratio to it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asbru.address import Address  # noqa: E402
from asbru.capture import layout as L  # noqa: E402
from asbru.packet_capture import UDPCapture  # noqa: E402
from asbru.ring import Ring  # noqa: E402
from asbru.udp_socket import UDPSocket  # noqa: E402
from benchmarks.baseline.build import BuildError, build, run_sender, start_receiver  # noqa: E402
from benchmarks.capture import LastPlacement  # noqa: E402
from benchmarks.machine import describe  # noqa: E402

NSRC = 16
FPS = 256                     # VDIF frames per second of the stream (learnt by the capture)
RCVBUF = 512 << 20
SIZES = {"8 KiB": 8192, "1 KiB": 1024}
PER_SOCKET = {"8 KiB": 16_000, "1 KiB": 100_000}     # packets each socket is filled with
# time slots per gulp: a gulp of 8 KiB packets is 64 MiB, of 1 KiB 32 MiB -- a few ms of
# the fastest stream, so that the once-per-gulp work (commit, reserve; with N threads the
# short pause of every thread while a gulp is committed) is a small part of the time
GULP = {"8 KiB": 512, "1 KiB": 2048}


def _k(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def steered_ports(n: int) -> list[int]:
    """Free UDP source ports p_0 .. p_{n-1} that the by-source steering of a group of n
    sockets (asbru.capture.group.steer: (source address ^ source port) % n) sends from
    127.0.0.1 to sockets 0 .. n-1: n senders then load every receive thread alike (with
    ports the kernel picks, two senders meet on one socket as often as not)."""
    import socket
    out: list[int] = []
    p = 20000 + (os.getpid() % 1000) * 32
    while len(out) < n and p < 65000:
        if (0x7F000001 ^ p) % n == len(out):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("0.0.0.0", p))
                    out.append(p)
                except OSError:
                    pass
        p += 1
    return out


def _senders(exe: Any, ports: list[int], per: int, payload: int, seq0: int,
             sports: Optional[list[int]] = None) -> None:
    """Fill every port at once, one C sender each (port j: its share of the sources;
    ``sports``: sender j's source port)."""
    n = len(ports)
    share = NSRC // n
    errors: list[BaseException] = []

    def one(j: int) -> None:
        try:
            run_sender(exe.tx, ports[j], per, payload, nsrc=share, src0=j * share, seq0=seq0,
                       hdr="vdif", fps=FPS, sport=sports[j] if sports else 0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    ts = [threading.Thread(target=one, args=(j,)) for j in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


def c_round(exe: Any, n: int, per: int, payload: int, cpus: Optional[list[int]] = None) -> float:
    rxs = [start_receiver(exe.rx, per, nsrc=NSRC, ring_mib=256, timeout=1.0, hdr="vdif",
                          fps=FPS, rcvbuf=RCVBUF, wait_ms=-1) for _ in range(n)]
    if cpus and n > 1:
        for i, r in enumerate(rxs):        # --pin: receiver i on CPU i, as receive thread i
            os.sched_setaffinity(r.proc.pid, {cpus[i]})
    try:
        _senders(exe, [r.port for r in rxs], per, payload, seq0=FPS - 1)
        time.sleep(0.05)
        for r in rxs:
            r.go()
        res = [r.result(timeout=120) for r in rxs]
    finally:
        for r in rxs:
            r.kill()
    got = sum(r["packets"] for r in res)
    if got < n * per:
        print(f"  (C receivers: {got:.0f} of {n * per} packets received)")
    return got / max(r["seconds"] for r in res)


class Capture:
    """One asbru capture on ``n`` sockets (one port each), warmed up."""

    def __init__(self, n: int, exe: Any, payload: int, gulp: int,
                 cpus: Optional[list[int]] = None) -> None:
        self.n = n
        self.exe = exe
        self.payload = payload
        self.socks = []
        for _ in range(n):
            s = UDPSocket(buffer_size=RCVBUF)
            s.bind(Address("127.0.0.1", 0), reuse_port=False)
            self.socks.append(s)
        self.socks[0].timeout = 0.5     # the end of a round (untimed); a loaded machine may stall longer than 0.1 s
        self.ports = [s._sock.getsockname()[1] for s in self.socks]
        ring = Ring(name=f"bench_multicore_{n}_{payload}_{os.getpid()}")
        extra: dict[str, Any] = {"socks": self.socks[1:]} if n > 1 else {}
        if cpus and n > 1:
            extra["cores"] = cpus[:n]         # --pin: receive thread i on CPU i
        self.cap = UDPCapture("vdif", self.socks[0], ring, NSRC, 0, 9000, gulp, 1, None, **extra)
        self.seq = FPS - 1     # the frame rate is learnt from the first frames of a second
        # warm-up: compile, fault the ring in (it is cycled more than once)
        self.round(max(6 * gulp * NSRC // n, 4096))

    def _placed(self) -> int:
        st = self.cap.stats_obj
        v = int(st.cnt[L.C_NVALID])
        if hasattr(st, "fcnt"):
            v += int(st.fcnt[:, L.C_NVALID].sum()) + int(st.corr[:, L.C_NVALID].sum())
        return v

    def _thread_cpu(self) -> dict[int, float]:
        """Seconds of CPU used so far by each receive thread (by native thread id)."""
        out = {}
        tick = os.sysconf("SC_CLK_TCK")
        for t in getattr(self.cap, "_threads", []):
            try:
                with open(f"/proc/self/task/{t.native_id}/stat") as fh:
                    f = fh.read().rsplit(")", 1)[1].split()
                out[t.native_id] = (int(f[11]) + int(f[12])) / tick
            except (OSError, IndexError, ValueError):
                continue
        return out

    def round(self, per: int) -> float:
        before = self.cap.stats["per_thread"] if self.n > 1 else None
        tq = time.perf_counter()
        if self.n > 1:
            # hold the receive threads: fill first, then drain (benchmark only)
            from asbru.capture.group import shared
            self.cap._group_quiesce(shared.ST_PAUSE)
        _senders(self.exe, self.ports, per, self.payload, self.seq)
        self.seq += per // (NSRC // self.n) + 1000        # the next round: a new sequence
        time.sleep(0.05)
        want = per * self.n
        start = self._placed()
        watch = LastPlacement(lambda: self._placed() - start, want)
        cpu0 = self._thread_cpu()
        t0 = time.perf_counter()
        with watch:
            while self._placed() - start < want:
                if int(self.cap.recv()) in (1, 4, 5, 6):
                    break                  # the stream ended early (drops)
        while int(self.cap.recv()) not in (1, 4, 5, 6):
            pass                           # the end of the stream, untimed
        wall = watch.at - t0
        cpu1 = self._thread_cpu()
        got = self._placed() - start
        if self.n > 1:
            # where the receive threads' time went in this round (the last round's is printed)
            d = self.cap.stats
            rows = [{k: r.get(k, 0) - b.get(k, 0) for k in ("nvalid", "nhanded", "wait_seconds")}
                    | {"thread": r["thread"]} for r, b in zip(d["per_thread"], before)]
            for r in rows:
                # the threads were held (waiting) from the quiesce to the drain: take that
                # out; it is known only to a fraction of a ms, hence "~" and no sign below 0
                r["wait_seconds"] = max(0.0, r["wait_seconds"] - (t0 - tq))
            self.where = ", ".join(
                f"{r['thread']}: {r['nvalid']} placed, {r['nhanded']} handed over, "
                f"waited ~{r['wait_seconds'] * 1e3:.1f} ms" for r in rows[1:])
            self.where += f"; leader placed {rows[0]['nvalid']}; drain {wall * 1e3:.1f} ms"
            # CPU time of each receive thread over the timed drain (/proc/self/task/*/stat;
            # includes the untimed end of the stream): 100 % = never waited
            busy = [(cpu1.get(t, 0.0) - cpu0.get(t, 0.0)) / wall for t in cpu0]
            self.where += "; receive threads busy " + " ".join(f"{100 * b:.0f}%" for b in busy)
        if got < want:
            print(f"  (asbru N={self.n}: {got} of {want} packets placed; kernel drops "
                  f"{self.cap.stats['nkernel_drops']})")
        return got / wall

    def close(self) -> None:
        self.cap.end()
        for s in self.socks:
            s.close()


def main() -> int:
    ap = argparse.ArgumentParser(description="N receive threads into one ring vs N C receivers")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a quarter of the packets, 1 round")
    ap.add_argument("--threads", default="1,2,4,8", help="the N to measure (default 1,2,4,8)")
    ap.add_argument("--detail", action="store_true", help="per receive thread: placed, handed "
                    "over, time waited for the leader")
    ap.add_argument("--pin", action="store_true", help="UDPCapture: pin receive thread i and "
                    "C receiver i to CPU i (physical cores first), for N >= 2")
    ap.add_argument("--what", choices=("udp", "sniffer", "disk"), default="udp",
                    help="UDPCapture (default), UDPSniffer or DiskReader on N threads")
    a = ap.parse_args()
    print(describe(), flush=True)
    repeat = 1 if a.quick else max(1, a.repeat)
    scale = 0.25 if a.quick else 1.0
    cores = os.cpu_count() or 1
    wanted = [int(x) for x in a.threads.split(",")]
    ns = [n for n in wanted if n <= cores and NSRC % n == 0]
    if len(ns) < len(wanted):
        print(f"(N = {', '.join(map(str, ns))} only: this machine has {cores} cores, and a "
              f"receive thread per core is what is measured)")
    if a.what == "disk":
        from benchmarks import multicore_other
        multicore_other.bench_disk(ns, repeat, scale)
        return 0
    try:
        exe = build()
    except BuildError as exc:
        print(f"not measured: {exc}")
        return 0
    cpus = None
    if a.pin:
        from benchmarks.processes import physical_first_cpus
        cpus = physical_first_cpus()
        print(f"(--pin, N >= 2: receive thread i and C receiver i on CPU {cpus[:max(ns)]}[i])",
              flush=True)
    if a.what == "sniffer":
        from benchmarks import multicore_other
        multicore_other.bench_sniffer(exe, ns, repeat, scale, c_round, SIZES, PER_SOCKET, GULP,
                                      detail=a.detail)
        return 0
    for label, payload in SIZES.items():
        per = int(PER_SOCKET[label] * scale)
        print(f"vdif {label} payload, {NSRC} sources, {per} packets per socket, "
              f"{GULP[label]} time slots per gulp:", flush=True)
        ours: dict[int, float] = {}
        theirs: dict[int, float] = {}
        for n in ns:
            cap = Capture(n, exe, payload, GULP[label], cpus)
            mine, base = [], []
            try:
                for _ in range(repeat):
                    base.append(c_round(exe, n, per, payload, cpus))
                    mine.append(cap.round(per))
            finally:
                cap.close()
            ours[n] = statistics.median(mine)
            theirs[n] = statistics.median(base)
            r1 = ours[n] / ours[ns[0]]
            c1 = theirs[n] / theirs[ns[0]]
            vs_c = ours[n] / theirs[n]
            # the targets: >= 0.9x of the N C receivers; >= 0.8 * N * the N=1 figure wherever
            # the C receivers scale that far themselves
            scale_ok = "" if c1 < 0.8 * n else \
                f"; scaling {'met' if r1 >= 0.8 * n else 'NOT met'} (target >= {0.8 * n:.1f}x)"
            print(f"N={n}: {_k(ours[n])} pkt/s, {r1:.2f}x of N=1 (C receivers: {c1:.2f}x); "
                  f"{n} C receivers {_k(theirs[n])} pkt/s, ratio {vs_c:.2f} "
                  f"(target >= 0.9{scale_ok})", flush=True)
            if a.detail and n > 1:
                print(f"  (N={n}, last round: {cap.where})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
