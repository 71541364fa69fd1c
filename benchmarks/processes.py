"""How far N independent capture processes scale, beside N C receivers, with a profile.

    .venv/bin/python benchmarks/processes.py [--n 1,2,4,8] [--payload 1024] [--npkt 100000]

N asbru processes each run one ``UDPCapture('vdif')`` (16 threads, 32-byte header +
``--payload`` bytes, ``GULP`` time slots per gulp) on their own port, pinned to their own
core (one logical CPU per physical core first); N C recvmmsg receivers
(benchmarks/baseline/recvmmsg_rx.c: same VDIF decode, one memcpy per packet) are measured
the same way in the same run.  Every socket is pre-filled first (the receivers wait), then
all drain together: the figure is the sum of the per-process rates (each timed from its
first receive to its last placed packet), and its ratio to N = 1.

Each asbru process also reports where its time went, so that a shortfall can be traced:
``loop`` = share of the drain spent inside the compiled receive loop (the rest is the
per-gulp Python work: commit, reserve, proclog), ``sys`` = share in the kernel (the
datagram copies), ``minflt`` = page faults during the drain, ``csw`` = voluntary /
involuntary context switches, ``gulp us`` = Python microseconds per gulp outside the loop.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.capture import LastPlacement  # noqa: E402
from benchmarks.machine import describe  # noqa: E402

NSRC = 16
FPS = 256
GULP = 128
RCVBUF = 512 << 20


def physical_first_cpus() -> list[int]:
    """Logical CPUs ordered so that each physical core comes once before any sibling."""
    cpus = sorted(os.sched_getaffinity(0))
    seen: set[tuple[str, str]] = set()
    first, rest = [], []
    for c in cpus:
        base = Path(f"/sys/devices/system/cpu/cpu{c}/topology")
        try:
            key = ((base / "physical_package_id").read_text().strip(),
                   (base / "core_id").read_text().strip())
        except OSError:
            key = (str(c), "")
        (rest if key in seen else first).append(c)
        seen.add(key)
    return first + rest


# ------------------------------------------------------------------------------- child
def child(a: argparse.Namespace) -> int:
    """One asbru capture: warm up, say ready, wait for go, drain, report one JSON line."""
    from asbru.address import Address
    from asbru.capture import layout as L
    from asbru.packet_capture import UDPCapture
    from asbru.ring import Ring
    from asbru.udp_socket import UDPSocket
    from benchmarks.baseline.build import run_sender

    if a.core >= 0:
        os.sched_setaffinity(0, {a.core})
    sock = UDPSocket(buffer_size=RCVBUF)
    import socket as pysock
    with pysock.socket(pysock.AF_INET, pysock.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    sock.bind(Address("127.0.0.1", port))
    sock.timeout = 0.1
    cap = UDPCapture("vdif", sock, Ring(name=f"proc_{os.getpid()}"), NSRC, 0, 9000, GULP, 1, None)
    cnt = cap.stats_obj.cnt
    seq = FPS - 1
    # warm-up: compile (or load) the loop, cycle the ring once
    warm = 6 * GULP * NSRC
    run_sender(a.tx, port, warm, a.payload, nsrc=NSRC, seq0=seq, hdr="vdif", fps=FPS)
    while int(cnt[L.C_NVALID]) < warm:
        if int(cap.recv()) in (1, 4, 5, 6) and int(cnt[L.C_NVALID]) < warm:
            break
    while int(cap.recv()) not in (1, 4, 5, 6):
        pass
    seq += warm // NSRC + 1000
    print(f"ready {port} {seq}", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    want = a.npkt
    start = int(cnt[L.C_NVALID])
    st = cap.stats_obj
    loop_s = 0.0
    ngulp = 0
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    watch = LastPlacement(lambda: int(cnt[L.C_NVALID]) - start, want)
    t0 = time.perf_counter()
    deadline = t0 + 30
    with watch:
        while int(cnt[L.C_NVALID]) - start < want and time.perf_counter() < deadline:
            s = int(cap.recv())
            loop_s += st.process_seconds
            ngulp += 1
            if s in (1, 4, 5, 6):
                break
        t1 = time.perf_counter()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    while int(cap.recv()) not in (1, 4, 5, 6):
        pass
    got = int(cnt[L.C_NVALID]) - start
    # the drain ends at the last placement; the last recv() then waits out its timeout
    # (inside the loop, no CPU), which is taken off the loop's time
    wall = max(watch.at - t0, 1e-9)
    idle = t1 - watch.at
    out = {"port": port, "core": a.core, "got": got, "pps": got / wall,
           "wall": wall, "loop": (loop_s - idle) / wall, "ngulp": ngulp,
           "gulp_us": (t1 - t0 - loop_s) / max(ngulp, 1) * 1e6,
           "sys": (r1.ru_stime - r0.ru_stime) / wall, "usr": (r1.ru_utime - r0.ru_utime) / wall,
           "minflt": r1.ru_minflt - r0.ru_minflt, "majflt": r1.ru_majflt - r0.ru_majflt,
           "nvcsw": r1.ru_nvcsw - r0.ru_nvcsw, "nivcsw": r1.ru_nivcsw - r0.ru_nivcsw,
           "kdrops": cap.stats["nkernel_drops"]}
    cap.end()
    sock.close()
    print("result " + json.dumps(out), flush=True)
    return 0


# ------------------------------------------------------------------------------- parent
def run_asbru(n: int, cpus: list[int], exe: Any, a: argparse.Namespace) -> list[dict[str, Any]]:
    from benchmarks.baseline.build import run_sender
    procs = [subprocess.Popen([sys.executable, __file__, "--child", "--core", str(cpus[i]),
                               "--tx", str(exe.tx), "--payload", str(a.payload),
                               "--npkt", str(a.npkt)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in range(n)]
    try:
        ready = []
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().split()
            if not line or line[0] != "ready":
                raise RuntimeError(f"capture process did not start: {line}")
            ready.append((int(line[1]), int(line[2])))
        for port, seq in ready:
            run_sender(exe.tx, port, a.npkt, a.payload, nsrc=NSRC, seq0=seq, hdr="vdif", fps=FPS)
        time.sleep(0.05)
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        res = []
        for p in procs:
            out, _ = p.communicate(timeout=120)
            line = [x for x in out.splitlines() if x.startswith("result ")]
            if not line:
                raise RuntimeError(f"capture process failed ({p.returncode})")
            res.append(json.loads(line[-1][7:]))
        return res
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def run_c(n: int, cpus: list[int], exe: Any, a: argparse.Namespace) -> list[float]:
    from benchmarks.baseline.build import run_sender, start_receiver
    rxs = []
    try:
        for i in range(n):
            rx = start_receiver(exe.rx, a.npkt, nsrc=NSRC, ring_mib=256, timeout=1.0,
                                wait_ms=-1, hdr="vdif", fps=FPS, rcvbuf=RCVBUF)
            os.sched_setaffinity(rx.proc.pid, {cpus[i]})
            rxs.append(rx)
        for rx in rxs:
            run_sender(exe.tx, rx.port, a.npkt, a.payload, nsrc=NSRC, hdr="vdif", fps=FPS)
        time.sleep(0.05)
        for rx in rxs:
            rx.go()
        return [rx.result(timeout=120)["pps"] for rx in rxs]
    finally:
        for rx in rxs:
            rx.kill()


def _m(x: float) -> str:
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.0f} k"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="1,2,4,8", help="process counts, comma-separated")
    ap.add_argument("--payload", type=int, default=1024)
    ap.add_argument("--npkt", type=int, default=100_000, help="packets per process")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--core", type=int, default=-1, help=argparse.SUPPRESS)
    ap.add_argument("--tx", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a)
    print(describe(), flush=True)
    from benchmarks.baseline.build import BuildError, build
    try:
        exe = build()
    except BuildError as exc:
        print(f"processes: not measured ({exc})")
        return 0
    cpus = physical_first_cpus()
    ns = [n for n in (int(x) for x in a.n.split(",")) if n <= len(cpus)]
    print(f"vdif {a.payload} B payload, {a.npkt} packets per process, CPUs in order {cpus}")
    base: dict[str, float] = {}
    for n in ns:
        ours, theirs, rows = [], [], []
        for _ in range(a.repeat):
            rows = run_asbru(n, cpus, exe, a)
            ours.append(sum(r["pps"] for r in rows))
            theirs.append(sum(run_c(n, cpus, exe, a)))
        o, t = statistics.median(ours), statistics.median(theirs)
        base.setdefault("o", o)
        base.setdefault("t", t)
        print(f"N={n}: asbru {_m(o)}pkt/s ({o / base['o']:.2f}x of N=1), C {_m(t)}pkt/s "
              f"({t / base['t']:.2f}x of N=1), asbru/C {o / t:.2f}", flush=True)
        for r in rows:
            print(f"    core {r['core']:>2}: {_m(r['pps'])}pkt/s, loop {r['loop']:.2f}, "
                  f"sys {r['sys']:.2f}, usr {r['usr']:.2f}, gulp us {r['gulp_us']:.0f} "
                  f"({r['ngulp']} recv), minflt {r['minflt']}, csw {r['nvcsw']}/{r['nivcsw']}, "
                  f"got {r['got']}, kdrops {r['kdrops']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
