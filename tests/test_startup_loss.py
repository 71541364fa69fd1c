"""A capture made on a cold kernel cache loses nothing that arrived after its socket was bound.

Issue 14: the loop used to compile at the first ``recv()`` (10-16 s cold) while the bound
socket overflowed -- at 2000 packets/s of 8 KiB into an 8 MiB buffer, 35 047 of 39 998
packets were lost.  Now the loop compiles when the capture is made, and a thread drains the
socket into staging rows meanwhile (asbru/capture/staging.py).

The child (tests/startup_child.py) runs with ``ASBRU_CACHE_DIR`` and ``NUMBA_CACHE_DIR``
pointing at empty directories, so everything compiles from scratch.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run_child(tmp_path: Path, rate: float, after: float = 3.0) -> dict:
    env = dict(os.environ, ASBRU_CACHE_DIR=str(tmp_path / "kernels"),
               NUMBA_CACHE_DIR=str(tmp_path / "numba"), ASBRU_PROCLOG_DIR=str(tmp_path / "proclog"))
    proc = subprocess.run([sys.executable, str(HERE / "startup_child.py"), "--rate", str(rate),
                           "--after", str(after)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cold_cache_capture_loses_nothing_after_bind(tmp_path):
    r = run_child(tmp_path, rate=2000)
    log = r["sender_log"]
    # time slots whose sending began after the bind; each is 16 packets
    after = [seq for t, seq in log[:-1] if t > r["t_bind"]]
    assert r["construct_s"] > 1.0, r          # it did compile from scratch
    assert len(after) * 16 > 2000 * r["construct_s"] / 2, r   # the sender ran all along
    assert r["rcvbuf"] <= 9 << 20, r
    assert r["nkernel_drops"] == 0, r
    assert r["ninvalid"] == 0, r
    assert r["nvalid"] >= len(after) * 16, r
