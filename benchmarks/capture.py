"""Capture throughput beside baselines measured in the same run.

    .venv/bin/python benchmarks/capture.py [--repeat 3] [--quick]

Receive side ("drain"): the receiver's queue is pre-filled first, then one receiver drains
it all, so the figure is the receiver's capacity, not the sender's (on loopback with two
vCPUs the sender is the limit).  Packets from 16 sources, sent by the C sendmmsg sender of
benchmarks/baseline, in two formats, each beside a C recvmmsg receiver
(benchmarks/baseline/recvmmsg_rx.c: batch 64, pre-faulted ring) doing the same work:

* ``vdif``: VDIF frames, 32-byte header + 8192 B ("8 KiB") or 1024 B payload, threads 0-15,
  ``FPS`` frames per second.  A VDIF capture decodes the header and copies the payload as
  one block to [frame][thread][payload] -- exactly what the minimal C receiver does (VDIF
  decode: thread, seconds * fps + frame number, frame-length and invalid-bit checks; one
  memcpy per packet).  This is the like-for-like comparison, with the targets.
* ``chips``: CHIPS packets, 16-byte header + 8160 B ("8 KiB": chips_255, the largest CHIPS
  packet) or 1024 B payload.  A CHIPS capture scatters the payload in 32-byte pieces, one per
  channel, to [time][chan][src][32 B], so it is shown beside the C receiver doing that same
  placement (``--layout chips``) and beside the minimal one (one memcpy per packet), which
  does less work than any CHIPS capture can.

How each is timed:

* C baseline: the receiver is stopped (SIGSTOP) while its socket (SO_RCVBUFFORCE 512 MiB)
  is filled, then continued; it times itself from its first packet;
* UDPCapture: the same, into a bound asbru UDPSocket of the same buffer size; timed from the
  first recv() until every packet is placed in the ring (a watcher thread reads the
  capture's live counters, so the final receive timeout is not counted);
* UDPSniffer: the kernel copies each datagram into the TPACKET_V3 ring while it is sent
  (softirq), so the pre-filled ring is drained and timed the same way.

The asbru rings are pre-faulted by a warm-up stream (which also compiles the kernels) before
anything is timed.  VDIF captures learn the frames per second from the data (they hold a
thread's frames until a frame of its next second arrives), so the stream uses a small
``FPS`` and the warm-up starts at the last frame of a second: the rate is known after one
frame per thread, and the warm-up (6 gulps) spans three seconds.  Each round is a new
sequence (the receive timeout after a drain ends the previous one, and the time index jumps
ahead), so a round's time includes starting a sequence (gathering one packet per source,
the ring sequence, proclog); every round checks that all its packets were placed.
Every figure is the median of ``--repeat`` rounds; each round measures the baseline(s) and
both captures one after the other.

DiskReader: GB/s reading a page-cached file of chips_255 records (16 sources) into a ring
(second pass; the first compiles and faults the ring), beside reading the same file in
1 MiB ``readinto`` calls (what ``cat`` does), and the same reader with ``read_ahead=False``
(reading in its own thread only; by default a regular file is read ahead by two threads of
the reader's, docs/capture.md "Reading ahead").  The same for chips_32 (1 KiB payloads) in
packets/s: with no system call per packet, that is close to the engine's per-packet ceiling
(decode + place into the CHIPS layout + a read() copy), which bounds what any receive
backend can reach.

Start-up: seconds from starting a fresh ``python`` to the return of its first
UDPCapture.recv() (a 10 ms timeout), with the kernel cache warm (second run), beside
``python -c "import numpy"``.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asbru.address import Address  # noqa: E402
from asbru.capture import layout as L  # noqa: E402
from asbru.capture.sniffer import have_cap_net_raw  # noqa: E402
from asbru.packet_capture import DiskReader, PacketCaptureCallback, UDPCapture, UDPSniffer  # noqa: E402
from asbru.capture.backends import disk_readahead as RA  # noqa: E402
from asbru.ring import Ring  # noqa: E402
from asbru.udp_socket import UDPSocket  # noqa: E402
from benchmarks.baseline.build import BuildError, build, run_sender, start_receiver  # noqa: E402
from benchmarks.machine import describe  # noqa: E402

NSRC = 16
RCVBUF = 512 << 20
# the sniffer's blocks are handed over when full or after this long: long enough that the
# pre-fill packs them (a block retired every 8 ms while the sender runs is mostly empty)
RETIRE_MS = 200
GULP = 128                    # time slots per gulp: 2048 packets (Python work once per gulp)
HDR = {"vdif": 32, "chips": 16}
SIZES = {"vdif": {"8 KiB": 8192, "1 KiB": 1024},        # payload bytes
         "chips": {"8 KiB": 8160, "1 KiB": 1024}}
# VDIF frames per second of the benchmark stream: small, so that the capture learns it soon
# (it holds a thread's frames until that thread's next second begins)
FPS = 256
NPKT = {"8 KiB": 16_000, "1 KiB": 100_000}   # fits the 512 MiB socket buffer / the sniffer ring
# against the like-for-like C baseline (VDIF: same decode + one memcpy per packet)
TARGET = {("UDPCapture", "8 KiB"): 1.0, ("UDPCapture", "1 KiB"): 1.0,
          ("UDPSniffer", "8 KiB"): 2.0, ("UDPSniffer", "1 KiB"): 3.0}
SHM = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


def _k(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


# --------------------------------------------------------------------------------------
# baseline: the C receiver, stopped while its socket fills
def baseline_drain(exe: Any, npkt: int, payload: int, fmt: str,
                   layout: str = "rows") -> dict[str, float]:
    """``fmt``: "vdif" or "chips" (header decode, sender and receiver alike).  layout
    "rows": one memcpy per packet (the minimal receiver; all a VDIF capture does);
    "chips" (CHIPS only): the same [chan][src][32 B] placement a CHIPS capture must do (one
    32-byte copy per channel)."""
    rx = start_receiver(exe.rx, npkt, nsrc=NSRC, ring_mib=256, timeout=1.0, layout=layout,
                        hdr=fmt, fps=FPS, rcvbuf=RCVBUF)
    try:
        os.kill(rx.proc.pid, signal.SIGSTOP)
        try:
            run_sender(exe.tx, rx.port, npkt, payload, nsrc=NSRC, hdr=fmt, fps=FPS)
            time.sleep(0.05)
        finally:
            os.kill(rx.proc.pid, signal.SIGCONT)
        return rx.result(timeout=60)
    finally:
        rx.kill()


# --------------------------------------------------------------------------------------
# asbru captures: warm-up stream, pre-fill, timed drain
def _drain(cap: Any, want: int, limit_s: float = 30.0) -> tuple[int, float]:
    """recv() until ``want`` packets are placed or the stream ends (receive timeout);
    returns (packets placed, seconds from the first recv() to the last placement).

    A watcher thread samples the capture's live counters (the compiled loop updates them
    without the GIL), so the final receive timeout is not counted."""
    cnt = cap.stats_obj.cnt
    start = int(cnt[L.C_NVALID])
    watch = LastPlacement(lambda: int(cnt[L.C_NVALID]) - start, want)
    t0 = time.perf_counter()
    deadline = t0 + limit_s
    ended = False
    with watch:
        while int(cnt[L.C_NVALID]) - start < want and time.perf_counter() < deadline:
            if int(cap.recv()) in (1, 4, 5, 6):
                ended = True       # the stream ended before every packet arrived (drops)
                break
    while not ended and int(cap.recv()) not in (1, 4, 5, 6):
        pass                       # let the capture see the end of the stream, untimed
    got = int(cnt[L.C_NVALID]) - start
    if got == 0 or watch.at == 0.0:
        raise RuntimeError(f"{type(cap).__name__}: no packet was placed")
    return got, watch.at - t0


class LastPlacement:
    """A thread that samples a capture's live placed count (``placed()``: the compiled loop
    updates the counters without the GIL) and keeps the time it last grew, so a drain's final
    receive timeout is not counted.  Use as a context manager around the timed recv()s;
    it stops sampling once ``want`` packets were placed."""

    def __init__(self, placed: Callable[[], int], want: int) -> None:
        self._placed, self._want = placed, want
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self.count = 0
        self.at = 0.0          # perf_counter() of the last placement seen

    def _watch(self) -> None:
        while not self._done.is_set():
            c = self._placed()
            if c != self.count:
                self.count, self.at = c, time.perf_counter()
                if c >= self._want:
                    return
            time.sleep(0.0002)

    def __enter__(self) -> "LastPlacement":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


class Receiver:
    """One asbru capture (UDP or sniffer) on its own port, warmed up."""

    def __init__(self, kind: str, exe: Any, fmt: str, payload: int) -> None:
        self.kind = kind
        self.exe = exe
        self.fmt = fmt
        self.payload = payload
        self.sock = UDPSocket(buffer_size=RCVBUF)
        port = _free_port()
        addr = Address("127.0.0.1", port)
        self.port = port
        ring = Ring(name=f"bench_{kind}_{fmt}_{payload}")
        if kind == "udp":
            self.sock.bind(addr)
            self.sock.timeout = 0.1
            self.cap = UDPCapture(fmt, self.sock, ring, NSRC, 0, 9000, GULP, 1, None)
        else:
            self.sock.sniff(addr)
            self.sock.timeout = 0.1
            self.cap = UDPSniffer(fmt, self.sock, ring, NSRC, 0, 9000, GULP, 1, None,
                                  sniff_block_size=1 << 22, sniff_block_count=96,
                                  sniff_retire_ms=RETIRE_MS)
            pr = self.cap._pring.ring
            pr[::4096].max()              # map every page of the kernel ring
        # VDIF: start at the last frame of a second, so that the frame rate is learnt after
        # one held frame per thread (the capture's hold is small: a whole held second would
        # not fit)
        self.seq = FPS - 1 if fmt == "vdif" else 1
        # warm-up: compile, and cycle the data ring once (first-touch page faults)
        self.round(6 * GULP * NSRC)

    def round(self, npkt: int) -> float:
        """Pre-fill, drain; packets/s."""
        run_sender(self.exe.tx, self.port, npkt, self.payload, nsrc=NSRC, seq0=self.seq,
                   hdr=self.fmt, fps=FPS)
        self.seq += npkt // NSRC + 1000     # a new sequence each round
        time.sleep(RETIRE_MS / 1000 + 0.05)  # the sniffer's last block is handed over
        got, secs = _drain(self.cap, npkt)
        if got < npkt:
            print(f"  ({type(self.cap).__name__} {self.fmt}: {got} of {npkt} packets placed; "
                  f"kernel drops {self.cap.stats['nkernel_drops']})")
        return got / secs

    def close(self) -> None:
        self.cap.end()
        self.sock.close()


def _free_port() -> int:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_receive(exe: Any, repeat: int, sniffer: bool, scale: float,
                  formats: tuple[str, ...] = tuple(SIZES)) -> None:
    kinds = ["udp"] + (["sniffer"] if sniffer else [])
    for fmt, sizes in SIZES.items():
        if fmt not in formats:
            continue
        for label, payload in sizes.items():
            npkt = int(NPKT[label] * scale) // NSRC * NSRC
            rx = {k: Receiver(k, exe, fmt, payload) for k in kinds}
            # "same": the like-for-like C receiver (VDIF: rows; CHIPS: the CHIPS placement);
            # "min": the minimal one (one memcpy per packet), CHIPS only
            base: dict[str, list[float]] = {"same": [], "min": []}
            ours: dict[str, list[float]] = {k: [] for k in kinds}
            try:
                for _ in range(repeat):
                    layouts = {"same": "rows"} if fmt == "vdif" else {"same": "chips", "min": "rows"}
                    for key, layout in layouts.items():
                        b = baseline_drain(exe, npkt, payload, fmt, layout)
                        if b["packets"] < npkt or b["invalid"]:
                            print(f"  (baseline {fmt} {layout}: received {b['packets']:.0f} of {npkt}, "
                                  f"{b['invalid']:.0f} invalid)")
                        base[key].append(b["pps"])
                    for k in kinds:
                        ours[k].append(rx[k].round(npkt))
            finally:
                for r in rx.values():
                    r.close()
            same = statistics.median(base["same"])
            gbit = lambda pps: pps * (HDR[fmt] + payload) * 8 / 1e9
            for k in kinds:
                name = "UDPCapture" if k == "udp" else "UDPSniffer"
                pps = statistics.median(ours[k])
                head = f"{name} {fmt} {label}: {_k(pps)} pkt/s, {gbit(pps):.1f} Gbit/s"
                if fmt == "vdif":
                    print(f"{head} (baseline C recvmmsg, same decode + one memcpy per packet: "
                          f"{_k(same)} pkt/s, ratio {pps / same:.2f}; "
                          f"target >= {TARGET[(name, label)]:.0f}x)", flush=True)
                else:
                    mpps = statistics.median(base["min"])
                    print(f"{head} (baseline C recvmmsg with the same CHIPS placement: "
                          f"{_k(same)} pkt/s, ratio {pps / same:.2f}; minimal C receiver (one "
                          f"memcpy per packet) {_k(mpps)} pkt/s, ratio {pps / mpps:.2f})",
                          flush=True)
    if not sniffer:
        print("UDPSniffer: not measured (needs CAP_NET_RAW)")


# --------------------------------------------------------------------------------------
def chips_recording(mib: int, payload: int, tag: str) -> tuple[Path, int]:
    """About ``mib`` MiB of chips records in SHM, laid out as DiskWriter('chips_N') writes
    them (time-major, roach = src + 1, seq 1, 2, ...): (its path, number of records)."""
    rec = 16 + payload
    ntime = (mib << 20) // (rec * NSRC)
    recs = np.empty((ntime, NSRC, rec), dtype=np.uint8)
    recs[:, :, 16:] = np.random.default_rng(0).integers(0, 256, size=payload, dtype=np.uint8)
    recs[:, :, :16] = 0
    recs[:, :, 0] = np.arange(1, NSRC + 1, dtype=np.uint8)
    recs[:, :, 2] = payload // 32
    recs[:, :, 3] = 1
    recs[:, :, 5] = NSRC
    seq = np.arange(1, ntime + 1, dtype=">u8").view(np.uint8).reshape(ntime, 1, 8)
    recs[:, :, 8:16] = seq
    path = SHM / f"asbru-bench-{tag}-{os.getpid()}.dat"
    path.write_bytes(recs.tobytes())
    return path, ntime * NSRC


def bench_disk(mib: int, repeat: int, payload: int = 8160, read_size: int | None = None) -> None:
    rec = 16 + payload
    path, nrec = chips_recording(mib, payload, "capture")
    try:
        nbytes = path.stat().st_size
        buf = bytearray(1 << 20)

        def cat() -> float:
            t0 = time.perf_counter()
            with open(path, "rb", buffering=0) as fh:
                while fh.readinto(buf):
                    pass
            return nbytes / (time.perf_counter() - t0) / 1e9

        ring = Ring(name="bench_disk")
        # each pass re-reads the same seqs: give each sequence its own time tag (the ring
        # refuses a time tag still in use)
        passes = iter(range(1, 1 << 30))
        cb = PacketCaptureCallback()
        cb.set_chips(lambda seq0, chan0, nchan, nsrc: (next(passes) << 32, None))
        with open(path, "rb") as fh, open(path, "rb") as fh1:
            extra = {} if read_size is None else {"read_size": read_size}
            readers = {"ahead": DiskReader(f"chips_{payload // 32}", fh, ring, NSRC, 0, GULP, 1,
                                           cb, **extra)}
            if read_size is None:
                # the same reader reading in its own thread only (the default before)
                ring1 = Ring(name="bench_disk_one")
                readers["one"] = DiskReader(f"chips_{payload // 32}", fh1, ring1, NSRC, 0, GULP, 1,
                                            cb, read_ahead=False, **extra)

            def ours(dr) -> float:
                dr.seek(0, os.SEEK_SET)
                before = dr.stats["nvalid"]
                t0 = time.perf_counter()
                while int(dr.recv()) not in (1, 4, 5, 6):
                    pass
                dt = time.perf_counter() - t0
                got = dr.stats["nvalid"] - before
                if got != nrec:
                    raise RuntimeError(f"DiskReader placed {got} of {nrec} records")
                return nbytes / dt / 1e9

            for dr in readers.values():
                ours(dr)                 # compile + fault the ring
            cat()
            mine: dict[str, list[float]] = {k: [] for k in readers}
            base = []
            for _ in range(repeat):
                base.append(cat())
                for k, dr in readers.items():
                    mine[k].append(ours(dr))
            for dr in readers.values():
                dr.end()
        m, b = statistics.median(mine["ahead"]), statistics.median(base)
        pps = m * 1e9 / rec
        target = "target >= 3 GB/s" if payload == 8160 else "no target: the engine's per-packet ceiling"
        size = "" if read_size is None else f", read_size {read_size >> 10} KiB"
        print(f"DiskReader chips_{payload // 32} ({nbytes >> 20} MiB, page cache{size}): {m:.2f} GB/s, "
              f"{_k(pps)} pkt/s (baseline readinto 1 MiB 'cat' {b:.2f} GB/s, ratio {m / b:.2f}; "
              f"{target})", flush=True)
        io = readers["ahead"]._io
        if io[RA.IO_RA]:
            # which of the two was the slower: reading (the loop waited) or placing
            print(f"  (read ahead: the loop waited for {io[RA.IO_RA_WAITED]} of the "
                  f"{io[RA.IO_RA_TAKEN]} regions it took)", flush=True)
        if "one" in mine:
            m1 = statistics.median(mine["one"])
            print(f"  the same, read_ahead=False (read in the loop's thread): {m1:.2f} GB/s, ratio "
                  f"{m1 / b:.2f}", flush=True)
    finally:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------
_STARTUP = r"""
import time, sys
from asbru.address import Address
from asbru.packet_capture import UDPCapture
from asbru.udp_socket import UDPSocket
s = UDPSocket(buffer_size=1 << 20)
s.bind(Address("127.0.0.1", 0))
s.timeout = 0.01
cap = UDPCapture("chips", s, 16, 0, 9000, 32, 1, None)
cap.recv()
print("first-recv", flush=True)
cap.end()
"""


def _time_process(code: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    t = time.perf_counter() - t0
    proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError("start-up probe failed")
    return t


def bench_startup() -> None:
    first = _time_process(_STARTUP)
    second = _time_process(_STARTUP)
    bare = _time_process("import numpy; print('x', flush=True)")
    print(f"UDPCapture start-up to first recv (2nd run, JIT cache): {second:.2f} s (first run "
          f"{first:.2f} s; baseline python + import numpy {bare:.2f} s; target < 2 s)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description="capture benchmarks")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a quarter of the packets, 1 round")
    ap.add_argument("--disk-mib", type=int, default=512)
    ap.add_argument("--formats", default=",".join(SIZES),
                    help="receive formats to measure, comma-separated (default: all)")
    ap.add_argument("--read-sizes", default="",
                    help="DiskReader: also measure chips_255 with these read_size values "
                         "(KiB, comma-separated) beside the default")
    ap.add_argument("--only", choices=("receive", "disk", "startup"), action="append",
                    help="measure only these parts (repeatable; default: all)")
    a = ap.parse_args()
    print(describe(), flush=True)
    parts = set(a.only or ("receive", "disk", "startup"))
    repeat = 1 if a.quick else max(1, a.repeat)
    scale = 0.25 if a.quick else 1.0
    if "receive" in parts:
        try:
            exe = build()
        except BuildError as exc:
            exe = None
            print(f"UDPCapture/UDPSniffer: not measured ({exc})")
        if exe is not None:
            bench_receive(exe, repeat, have_cap_net_raw(), scale,
                          tuple(f for f in a.formats.split(",") if f))
    if "disk" in parts:
        bench_disk(max(16, int(a.disk_mib * scale)), repeat)
        bench_disk(max(16, int(a.disk_mib * scale)) // 2, repeat, payload=1024)
        for kib in (int(x) for x in a.read_sizes.split(",") if x):
            bench_disk(max(16, int(a.disk_mib * scale)), repeat, read_size=kib << 10)
    if "startup" in parts:
        bench_startup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
