"""Packet writer throughput beside baselines measured in the same run.

    .venv/bin/python benchmarks/writers.py [--mib 128] [--npkt 100000] [--repeat 3] [--split]

DiskWriter: GB/s (10^9 bytes of file per second, headers included) writing ``--mib`` MiB of
records into a file on /dev/shm (tmpfs: the page-cache copy is the whole cost), for both
transfer methods ("writev": header/payload iovec pairs, no payload copy; "image": records
copied into 1 MiB staging buffers, one write per MiB, the copy of one MiB beside the write of
the one before in a second thread), beside the baseline of writing the same bytes, already
laid out, with one os.write per MiB.  ``--split`` adds a line per format saying where the
image method's time goes: the header fill, the record copy (into /dev/null) and the
os.write, each alone, and the send with the copy and the write in turn in one thread beside
the overlapped one (best of ``--repeat``, milliseconds).

UDPTransmit: packets/s sending CHIPS packets (16-byte header + 8160 B ("8 KiB": chips_255,
the largest CHIPS packet, the header's nchan is one byte) or 1 KiB payload,
4 sources) on loopback to the C recvmmsg receiver (which drains on the other core), beside
the C sendmmsg sender of benchmarks/baseline (same packets, same receiver).  On loopback the
sender is the bottleneck: the kernel copies each datagram in the sender's system call.

Every figure is the best of ``--repeat`` runs after a warm-up (compilation, page faults).
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asbru.packet_writer import DiskWriter, HeaderInfo, UDPTransmit  # noqa: E402
from asbru.writers.disk import WRITEV_MIN_PAYLOAD  # noqa: E402
from benchmarks.baseline.build import build, run_sender, start_receiver  # noqa: E402
from benchmarks.machine import describe  # noqa: E402

#: DiskWriter cases: format -> payload bytes
DISK_CASES = {"chips_255": 8160, "drx": 4096, "tbn": 1024, "chips_32": 1024, "chips_4": 128}
SHM = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


def _best_ms(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def split_line(fmt: str, h: HeaderInfo, data: np.ndarray, path: Path, image: np.ndarray,
               repeat: int) -> str:
    """Where the image method's time goes (see the module docstring, ``--split``)."""
    from asbru import formats
    from asbru.formats import batch
    from asbru.writers import overlap
    wf = formats.get(fmt, "write")
    ntime, nsrc = data.shape[:2]
    hdrs = np.zeros((ntime * nsrc, wf.header.size), np.uint8)
    fill = batch.header_filler(wf)
    fill_ms = _best_ms(lambda: fill(hdrs, h.array, wf.write_config(), 1, 1, 0, 1, ntime, nsrc, 0),
                       repeat)

    def serial(target) -> None:
        keep, overlap.MIN_SLOTS_PER_SEND = overlap.MIN_SLOTS_PER_SEND, 1 << 62
        try:
            with open(target, "wb") as fh:
                DiskWriter(fmt, fh, method="image").send(h, 1, 1, 0, 1, data)
        finally:
            overlap.MIN_SLOTS_PER_SEND = keep

    def overlapped() -> None:
        with open(path, "wb") as fh:
            DiskWriter(fmt, fh, method="image").send(h, 1, 1, 0, 1, data)

    def write() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            for off in range(0, image.size, 1 << 20):
                os.write(fd, image[off: off + (1 << 20)])
        finally:
            os.close(fd)

    copy_ms = _best_ms(lambda: serial(os.devnull), repeat) - fill_ms
    best = dict.fromkeys(("write", "serial", "overlapped"), float("inf"))
    for _ in range(repeat):  # interleaved
        for name, fn in (("write", write), ("serial", lambda: serial(path)),
                         ("overlapped", overlapped)):
            best[name] = min(best[name], _best_ms(fn, 1))
    return (f"DiskWriter {fmt} image split: header fill {fill_ms:.1f} ms, record copy "
            f"{copy_ms:.1f} ms, os.write {best['write']:.1f} ms; send in turn "
            f"{best['serial']:.1f} ms, overlapped {best['overlapped']:.1f} ms")


def bench_disk(fmt: str, payload: int, mib: int, repeat: int, split: bool = False) -> None:
    hsize = {"tbn": 24, "chips_255": 16, "chips_32": 16, "chips_4": 16, "drx": 32}[fmt]
    rec = hsize + payload
    npkt = (mib << 20) // rec
    nsrc = 4
    ntime = npkt // nsrc
    npkt = ntime * nsrc
    rng = np.random.default_rng(0)
    if fmt == "tbn":
        data = rng.integers(-8, 8, size=(ntime, nsrc, 512, 2), dtype=np.int8)
    else:
        data = rng.integers(0, 256, size=(ntime, nsrc, payload), dtype=np.uint8)
    h = HeaderInfo()
    h.set_nsrc(nsrc)
    h.set_nchan(payload // 32 % 256)
    path = SHM / f"asbru-bench-{os.getpid()}.dat"
    nbytes = npkt * rec

    def ours(method: str) -> None:
        with open(path, "wb") as fh:
            DiskWriter(fmt, fh, method=method).send(h, 1, 1, 0, 1, data)

    try:
        ours("writev")  # warm-up: compilation, page faults; also makes the baseline's image
        image = np.frombuffer(path.read_bytes(), np.uint8)
        assert image.size == nbytes

        def base() -> None:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
            try:
                mv = memoryview(image)
                for off in range(0, nbytes, 1 << 20):
                    os.write(fd, mv[off: off + (1 << 20)])
            finally:
                os.close(fd)

        cases = {"writev": lambda: ours("writev"), "image": lambda: ours("image"), "base": base}
        best = dict.fromkeys(cases, float("inf"))
        for _ in range(repeat):  # interleaved, so that load from other processes hits all
            for name, fn in cases.items():
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
        results = {m: nbytes / best[m] / 1e9 for m in ("writev", "image")}
        b = nbytes / best["base"] / 1e9
        extra = split_line(fmt, h, data, path, image, repeat) if split else None
    finally:
        path.unlink(missing_ok=True)
    pick = "writev" if payload >= WRITEV_MIN_PAYLOAD else "image"
    for method, gbps in results.items():
        mark = " (auto)" if method == pick else ""
        print(f"DiskWriter {fmt} {method}{mark}: {gbps:.2f} GB/s "
              f"(baseline os.write 1 MiB {b:.2f} GB/s, ratio {gbps / b:.2f})")
    if extra:
        print(extra)


def bench_udp(payload: int, npkt: int, repeat: int, exe) -> None:
    nchan = payload // 32
    fmt = f"chips_{nchan}"
    nsrc = 4
    # the data array (~1 MiB, reused by every send()) stays in cache as the C sender's
    # nsrc payloads do: the figure compares the send paths, not memory bandwidth
    rows = max(8, (1 << 20) // (nsrc * payload))
    data = np.random.default_rng(1).integers(0, 256, size=(rows, nsrc, payload), dtype=np.uint8)
    h = HeaderInfo()
    h.set_nsrc(nsrc)
    h.set_nchan(nchan % 256)
    nsend = max(1, npkt // (rows * nsrc))
    npkt = nsend * rows * nsrc

    def ours(rx_timeout: float = 1.0) -> float:
        rx = start_receiver(exe.rx, npkt, timeout=rx_timeout, nsrc=nsrc)
        try:
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tx.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_SNDBUFFORCE", 32), 64 << 20)
            tx.connect(("127.0.0.1", rx.port))
            with tx:
                w = UDPTransmit(fmt, tx)
                t0 = time.perf_counter()
                for i in range(nsend):
                    w.send(h, 1 + i * rows, 1, 0, 1, data)
                dt = time.perf_counter() - t0
            rx.result()
        finally:
            rx.kill()
        assert w.stats.nvalid == npkt, w.stats
        return npkt / dt

    def theirs() -> float:
        rx = start_receiver(exe.rx, npkt, timeout=1.0, nsrc=nsrc)
        try:
            res = run_sender(exe.tx, rx.port, npkt, payload, nsrc=nsrc)
            rx.result()
        finally:
            rx.kill()
        return res["pps"]

    # warm-up: a cold kernel cache compiles inside the first send() (1-2 s), longer than
    # the receiver waits between packets (its port closed meanwhile: sends refused, counted
    # invalid)
    ours(rx_timeout=60.0)
    a_runs, b_runs = [], []
    for _ in range(repeat):  # interleaved, so that load from other processes hits both
        a_runs.append(ours())
        b_runs.append(theirs())
    a, b = max(a_runs), max(b_runs)
    label = f"{round(payload / 1024)} KiB"
    print(f"UDPTransmit {label}: {a:.0f} pkt/s (baseline sendmmsg {b:.0f} pkt/s, ratio {a / b:.2f})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=128, help="MiB of records per disk run")
    ap.add_argument("--npkt", type=int, default=100_000, help="packets per UDP run")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", choices=("disk", "udp"), default=None)
    ap.add_argument("--formats", default=",".join(DISK_CASES),
                    help="DiskWriter formats, comma-separated (default: all)")
    ap.add_argument("--split", action="store_true",
                    help="also print where the image method's time goes, per format")
    args = ap.parse_args()
    print(describe(), flush=True)
    if args.only in (None, "disk"):
        for fmt in args.formats.split(","):
            if fmt:
                bench_disk(fmt, DISK_CASES[fmt], args.mib, args.repeat, args.split)
    if args.only in (None, "udp"):
        with tempfile.TemporaryDirectory(prefix="asbru-bench-") as d:
            exe = build(d)
            for payload in (8160, 1024):
                bench_udp(payload, args.npkt, args.repeat, exe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
