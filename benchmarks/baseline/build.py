"""Build and run the C baseline programs that asbru's benchmarks measure themselves against.

``build()`` compiles ``recvmmsg_rx.c`` and ``sendmmsg_tx.c`` with the system C compiler
(``$CC``, else ``cc``/``gcc``/``clang``) at ``-O2`` into a directory (a new temp dir by
default) and returns the executables' paths.  Nothing is compiled at install time: only
benchmarks use these.

Helpers for benchmark scripts::

    from benchmarks.baseline.build import build, start_receiver, run_sender, parse_result
    exe = build()
    rx = start_receiver(exe.rx, npkt=200_000, port=0)      # waits until it is bound
    tx = run_sender(exe.tx, rx.port, npkt=200_000, payload=8192)
    res = rx.result(timeout=60)                            # {'packets': ..., 'pps': ...}

Both programs take ``hdr="chips"`` (16-byte CHIPS header, the default) or ``hdr="vdif"``
(32-byte VDIF header; ``fps`` frames per second number the frames: seq = seconds * fps +
frame); sender and receiver must agree on both.

Run as a script for a quick C-to-C loopback figure: ``python benchmarks/baseline/build.py``.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
SOURCES = {"rx": "recvmmsg_rx.c", "tx": "sendmmsg_tx.c"}

__all__ = ["Baseline", "BuildError", "build", "find_compiler", "parse_result",
           "start_receiver", "run_sender", "Receiver"]


class BuildError(RuntimeError):
    """The baseline programs cannot be built (one-line message)."""


@dataclasses.dataclass(frozen=True)
class Baseline:
    rx: Path        #: recvmmsg receiver
    tx: Path        #: sendmmsg sender
    directory: Path


def find_compiler() -> str:
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and shutil.which(cand):
            return shutil.which(cand)  # type: ignore[return-value]
    raise BuildError("benchmarks/baseline: no C compiler found (set CC or install cc/gcc) "
                     "to build the baseline programs")


def build(directory: Optional[os.PathLike] = None) -> Baseline:
    """Compile both programs with ``cc -O2`` into ``directory`` (default: a new temp dir)."""
    cc = find_compiler()
    out = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="asbru-baseline-"))
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, src in SOURCES.items():
        exe = out / Path(src).stem
        proc = subprocess.run([cc, "-O2", "-o", str(exe), str(HERE / src)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["(no output)"])[0]
            raise BuildError(f"benchmarks/baseline: {cc} failed on {src}: {first}")
        paths[key] = exe
    return Baseline(paths["rx"], paths["tx"], out)


def parse_result(line: str) -> dict[str, float]:
    """``"rx packets=1 bytes=2 ..."`` -> ``{"packets": 1.0, "bytes": 2.0, ...}``."""
    out: dict[str, float] = {}
    for tok in line.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            out[k] = float(v)
    return out


class Receiver:
    """A running ``recvmmsg_rx``; ``port`` is the bound port."""

    def __init__(self, proc: subprocess.Popen, port: int) -> None:
        self.proc = proc
        self.port = port

    def go(self) -> None:
        """Let a receiver started with ``wait_ms=-1`` start reading."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, timeout: float = 120) -> dict[str, float]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        lines = [l for l in out.splitlines() if l.startswith("rx ")]
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(f"recvmmsg_rx failed ({self.proc.returncode}): {err.strip()[:200]}")
        return parse_result(lines[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def start_receiver(exe: os.PathLike, npkt: int, port: int = 0, *, addr: str = "127.0.0.1",
                   nsrc: int = 4, ring_mib: int = 256, timeout: float = 2.0, maxsize: int = 9000,
                   batch: int = 64, wait_ms: int = 0, layout: str = "rows", hdr: str = "chips",
                   fps: int = 1000, rcvbuf: Optional[int] = None) -> Receiver:
    """Start the receiver and wait for its ``ready`` line (so a sender can start at once).

    ``wait_ms``: the receiver sleeps that long before reading; ``-1``: until
    :meth:`Receiver.go` (drain measurements: pre-fill the socket buffer, then go).
    ``layout``: ``"rows"`` (one memcpy per packet) or ``"chips"`` (the CHIPS ring layout,
    one 32-byte copy per channel: the placement a CHIPS capture does; ``hdr="chips"`` only).
    ``hdr``: ``"chips"`` or ``"vdif"``; ``fps``: VDIF frames per second (seq = seconds * fps
    + frame).  ``rcvbuf``: socket receive buffer bytes (default: the program's, 256 MiB).
    """
    proc = subprocess.Popen(
        [str(exe), str(port), str(npkt), "--addr", addr, "--nsrc", str(nsrc), "--ring-mib",
         str(ring_mib), "--timeout", str(timeout), "--maxsize", str(maxsize), "--batch", str(batch),
         "--wait-ms", str(wait_ms), "--layout", layout, "--hdr", hdr, "--fps", str(fps)]
        + (["--rcvbuf", str(rcvbuf)] if rcvbuf is not None else []),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready port="):
        proc.kill()
        _out, err = proc.communicate()
        raise RuntimeError(f"recvmmsg_rx did not start: {err.strip()[:200]}")
    return Receiver(proc, int(line.split("=", 1)[1]))


def run_sender(exe: os.PathLike, port: int, npkt: int, payload: int, *, addr: str = "127.0.0.1",
               nsrc: int = 4, batch: int = 64, seq0: int = 1, timeout: float = 120,
               hdr: str = "chips", fps: int = 1000, src0: int = 0,
               sport: int = 0) -> dict[str, float]:
    """Run the sender to completion; returns its parsed result line.

    ``hdr``: ``"chips"`` (16-byte CHIPS header) or ``"vdif"`` (32-byte VDIF header, thread =
    source, ``payload`` a multiple of 8); ``fps``: VDIF frames per second (seconds = seq //
    fps, frame number = seq % fps).  ``sport``: send from this UDP source port (0: any)."""
    proc = subprocess.run(
        [str(exe), str(port), str(npkt), str(payload), "--addr", addr, "--nsrc", str(nsrc),
         "--batch", str(batch), "--seq0", str(seq0), "--hdr", hdr, "--fps", str(fps)]
        + (["--src0", str(src0)] if src0 else []) + (["--sport", str(sport)] if sport else []),
        capture_output=True, text=True, timeout=timeout)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("tx ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"sendmmsg_tx failed ({proc.returncode}): {proc.stderr.strip()[:200]}")
    return parse_result(lines[-1])


def _main() -> int:
    npkt = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    payload = int(sys.argv[2]) if len(sys.argv) > 2 else 8192
    with tempfile.TemporaryDirectory(prefix="asbru-baseline-") as d:
        exe = build(d)
        rx = start_receiver(exe.rx, npkt, timeout=1.0)
        try:
            tx = run_sender(exe.tx, rx.port, npkt, payload)
            res = rx.result()
        finally:
            rx.kill()
    print(f"C sendmmsg -> C recvmmsg, {payload} B payload: sent {tx['pps']:.0f} pkt/s, "
          f"received {res['packets']:.0f}/{npkt} at {res['pps']:.0f} pkt/s ({res['gbps']:.2f} Gbit/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
