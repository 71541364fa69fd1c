"""``asbru capture``'s receive side beside a plain UDPCapture, measured in the same run.

    .venv/bin/python benchmarks/cli_capture.py [--packets N] [--repeat 3] [--format chips_4]

``asbru capture`` is a UDPCapture on the whole-packet view of its format plus a ring reader
that writes the placed packets (asbru/cli/capture.py): this measures what that costs.  Both
receivers are built exactly as their users build them (``build_capture`` of the command,
with a PacketFileWriter to /dev/null; ``UDPCapture(fmt, ...)`` with a ring reader that only
releases), on a bound socket with a 512 MiB buffer that is filled with ``--packets``
datagrams (16 sources) *before* the receiver runs; the figure is packets per second from the
first ``recv()`` until every packet is placed (the drain rate: the receiver's capacity, not
the sender's).  Median of ``--repeat`` rounds; each round measures both, one after the other.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import describe  # noqa: E402

from asbru import formats  # noqa: E402
from asbru.cli.capture import build_capture, gulp_ntime, open_socket  # noqa: E402
from asbru.cli.packet_file import PacketFileWriter  # noqa: E402
from asbru.cli.synth import build_clean, recipe_for  # noqa: E402
from asbru.packet_capture import UDPCapture  # noqa: E402

NSRC = 16
RCVBUF = 512 << 20


def _packets(fmt: str, n: int) -> list[bytes]:
    wf = formats.get(fmt, "write")
    rows = build_clean(wf, recipe_for(wf, NSRC), NSRC, max(1, n // NSRC), np.random.default_rng(1))
    return [r.tobytes() for r in rows]


def _port(sock) -> int:
    probe = socket.socket(fileno=os.dup(sock.fileno()))
    try:
        return probe.getsockname()[1]
    finally:
        probe.close()


def _fill(port: int, pkts: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for p in pkts:
            tx.sendto(p, ("127.0.0.1", port))


def _drain(cap, n: int) -> float:
    """Seconds from the first recv() until ``n`` packets are placed."""
    t0 = time.perf_counter()
    while cap.stats["nvalid"] < n:
        cap.recv()
        if time.perf_counter() - t0 > 120:
            raise RuntimeError(f"only {cap.stats['nvalid']} of {n} packets placed")
    return time.perf_counter() - t0


def round_cli(fmt: str, pkts: list[bytes]) -> float:
    f = formats.get(fmt, "capture")
    size = max(len(p) for p in pkts)
    sock = open_socket("127.0.0.1", 0, RCVBUF)
    cap, _view, ntime = build_capture(f, sock, NSRC, 0, size, 64)
    with open(os.devnull, "wb") as fh:
        writer = PacketFileWriter(cap.ring, fh, NSRC, ntime)
        _fill(_port(sock), pkts[:NSRC * ntime])          # warm-up: faults the ring in
        _drain(cap, NSRC * ntime)
        _fill(_port(sock), pkts)
        seconds = _drain(cap, NSRC * ntime + len(pkts))
        cap.end()
        writer.join()
    sock.close()
    if writer.packets != NSRC * ntime + len(pkts):
        raise RuntimeError(f"the writer wrote {writer.packets} packets")
    return len(pkts) / seconds


def round_udpcapture(fmt: str, pkts: list[bytes]) -> float:
    size = max(len(p) for p in pkts)
    ntime = gulp_ntime(NSRC, size)
    payload = size - formats.get(fmt, "capture").params.header_size
    sock = open_socket("127.0.0.1", 0, RCVBUF)
    cap = UDPCapture(fmt, sock, None, NSRC, 0, size, ntime, ntime, None)

    def release() -> None:                              # a reader that only releases
        for rseq in cap.ring.read(guarantee=True):
            for _span in rseq.read(ntime * NSRC * payload):
                pass

    reader = threading.Thread(target=release, daemon=True)
    before = cap.ring.guaranteed_readers
    reader.start()
    while cap.ring.guaranteed_readers <= before:
        time.sleep(0.001)
    _fill(_port(sock), pkts[:NSRC * ntime])
    _drain(cap, NSRC * ntime)
    _fill(_port(sock), pkts)
    seconds = _drain(cap, NSRC * ntime + len(pkts))
    cap.end()
    reader.join(30)
    sock.close()
    return len(pkts) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--format", default="chips_4", help="a format string both writable and capturable")
    a = ap.parse_args()
    print(describe(), flush=True)
    os.environ.setdefault("ASBRU_QUIET", "1")
    pkts = _packets(a.format, a.packets)
    cli, base = [], []
    for _ in range(a.repeat):
        base.append(round_udpcapture(a.format, pkts))
        cli.append(round_cli(a.format, pkts))
    b, c = statistics.median(base), statistics.median(cli)
    print(f"asbru capture {a.format} x{NSRC} sources, --out /dev/null: {c / 1e6:.2f} Mpkt/s "
          f"(baseline UDPCapture, same stream and gulp: {b / 1e6:.2f} Mpkt/s, ratio {c / b:.2f}; "
          f"drain of {len(pkts)} pre-filled datagrams, median of {a.repeat})")


if __name__ == "__main__":
    main()
