"""Start-up: what a cold kernel cache costs, and that it costs no packets.

    .venv/bin/python benchmarks/startup.py [--formats chips,tbn,drx,vdif] [--all] [--rate 20000]
                                           [--stage-bytes N] [--loss-only]

Every figure is measured in fresh processes whose ``ASBRU_CACHE_DIR`` and
``NUMBA_CACHE_DIR`` point at empty temporary directories (a first use on a new machine),
beside ``python -c "import numpy"`` measured in the same run:

* compile, per format: seconds of one process compiling the UDPCapture loop of each
  format in turn (the first format also compiles what all formats share), then the
  sniffer and DiskReader loops of the same formats (the per-format part is shared);
* ``asbru warmup`` of every format and backend (``--all``; minutes on 2 cores);
* warm: a fresh process from start to the return of a UDPCapture's first ``recv()``,
  the kernels cached (what every later start costs);
* start-up loss: a sender at ``--rate`` packets/s of 8 KiB CHIPS from 16 sources runs while
  a capture is made on a cold cache (8 MiB socket buffer): packets lost after the bind,
  beside what bounds it -- the bytes that arrived while the loop compiled against what the
  staging rows (``stage_bytes``, default a quarter of the available memory) could take.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import describe  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

_COMPILE = r'''
import json, sys, time
t0 = time.perf_counter()
from asbru.cli.warmup import compile_one
out = {"import": time.perf_counter() - t0}
for backend in sys.argv[2].split(","):
    for name in sys.argv[1].split(","):
        t = time.perf_counter()
        compile_one(name, backend)
        out[f"{name} {backend}"] = time.perf_counter() - t
print(json.dumps(out))
'''

_WARM = r'''
import time
t0 = time.perf_counter()
from asbru.address import Address
from asbru.packet_capture import UDPCapture
from asbru.udp_socket import UDPSocket
s = UDPSocket()
s.bind(Address("127.0.0.1", 0))
s.timeout = 0.01
cap = UDPCapture("chips", s, None, 16, 0, 9000, 64, 1, None)
cap.recv()
print(time.perf_counter() - t0)
cap.end()
'''


def machine() -> str:
    return f"{describe()}, Python {platform.python_version()}"


def _env(tmp: str) -> dict[str, str]:
    return dict(os.environ, ASBRU_CACHE_DIR=f"{tmp}/kernels", NUMBA_CACHE_DIR=f"{tmp}/numba",
                ASBRU_PROCLOG_DIR=f"{tmp}/proclog", ASBRU_QUIET="1")


def _run(code: list[str], env: dict[str, str], timeout: float = 1800) -> str:
    p = subprocess.run([sys.executable, *code], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    return p.stdout


def import_numpy() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import numpy"], check=True)
    return time.perf_counter() - t0


def startup_loss(rate: float, stage_bytes: Optional[int] = None) -> None:
    """The start-up loss line: a capture made on a cold cache while a sender runs at
    ``rate`` packets/s.  What bounds it is said beside it: the bytes that arrived while the
    loop compiled against the bytes the staging rows could take."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [str(ROOT / "tests" / "startup_child.py"), "--rate", str(rate), "--after", "3"]
        if stage_bytes is not None:
            args += ["--stage-bytes", str(stage_bytes)]
        res = json.loads(_run(args, _env(tmp)).strip().splitlines()[-1])
    log = res["sender_log"]
    t_bind, t_made = res["t_bind"], res["t_bind"] + res["construct_s"]
    sent_after = 16 * len([seq for t, seq in log[:-1] if t > t_bind])
    during = 16 * len([seq for t, seq in log[:-1] if t_bind < t <= t_made])
    size = res["packet_bytes"]
    staged = res.get("staged") or {}
    line = (f"start-up loss at {rate:.0f} packets/s, {size} B CHIPS, 16 sources, 8 MiB socket "
            f"buffer, cold cache: capture made in {res['construct_s']:.1f} s while the sender "
            f"ran; {sent_after} packets sent after the bind, {res['nvalid']} captured, "
            f"{res['nkernel_drops']} dropped by the kernel")
    if staged:
        cap_gib = staged["rows"] * staged["row"] / 2**30
        secs = staged["seconds"]
        fill = (f"full after {secs:.1f} s" if staged["full"] else "not full")
        if secs > 0:
            fill += f", drained at {staged['nstaged'] / secs:.0f} packets/s"
        line += (f"; staged {staged['nstaged']} packets ({staged['nstaged_bytes'] / 2**30:.2f} "
                 f"GiB) in rows of {staged['row']} B ({cap_gib:.2f} GiB, {fill}) of the "
                 f"{during} ({during * size / 2**30:.2f} GiB) that arrived while the loop "
                 f"compiled; drain kernel ready in {staged['kernel_seconds']:.2f} s")
    print(line + " (before issue 14: the loop compiled at the first recv(), the socket "
          "overflowed)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--formats", default="chips,tbn,drx,vdif,cor")
    ap.add_argument("--all", action="store_true", help="also time `asbru warmup` of everything")
    ap.add_argument("--rate", type=float, default=20000.0)
    ap.add_argument("--stage-bytes", type=int, default=None,
                    help="UDPCapture's stage_bytes for the start-up loss line (default: its default)")
    ap.add_argument("--loss-only", action="store_true", help="only the start-up loss line")
    a = ap.parse_args()
    print(machine(), flush=True)
    if a.loss_only:
        startup_loss(a.rate, a.stage_bytes)
        return 0
    base = min(import_numpy() for _ in range(3))
    print(f"baseline: python -c 'import numpy' {base:.2f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        r = json.loads(_run(["-c", _COMPILE, a.formats, "udp,sniffer,disk"], _env(tmp)))
        names = a.formats.split(",")
        for backend in ("udp", "sniffer", "disk"):
            cells = ", ".join(f"{n} {r[f'{n} {backend}']:.1f} s" for n in names)
            print(f"cold compile, {backend} loop, in order: {cells}", flush=True)
        later = [r[f"{n} udp"] for n in names[1:]]
        print(f"cold compile of each format after the first (udp loop): max {max(later):.1f} s, "
              f"median {sorted(later)[len(later) // 2]:.1f} s (target <= 3 s; baseline import "
              f"numpy {base:.2f} s)", flush=True)
        # warm: the same cache, a fresh process
        warm = min(float(_run(["-c", _WARM], _env(tmp)).strip()) for _ in range(3))
        print(f"warm start (fresh process to first UDPCapture.recv(), kernels cached): {warm:.2f} s "
              f"(baseline import numpy {base:.2f} s)", flush=True)

    if a.all:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            out = _run(["-m", "asbru", "warmup", "--json"], _env(tmp), timeout=3600)
            total = time.perf_counter() - t0
            w = json.loads(out)
            print(f"asbru warmup, every format and backend, cold: {total:.1f} s "
                  f"({len(w['kernels'])} (format, backend) pairs, {w['processes']} processes; "
                  f"target <= 60 s)", flush=True)

    startup_loss(a.rate, a.stage_bytes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
