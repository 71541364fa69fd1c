"""The multi-thread sniffer and disk reader as plain Python (``NUMBA_DISABLE_JIT=1``): their
follower loops are ordinary Python source and give the compiled code's exact results.

A child process with the JIT off (and a kernel cache directory of its own) runs the
exactness tests of tests/test_multicore_disk.py and tests/test_multicore_sniffer.py (the
sniffer's only with CAP_NET_RAW), with N = 2 threads.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_multicore_sniffer_and_disk_run_as_plain_python(tmp_path):
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", ASBRU_CACHE_DIR=str(tmp_path / "kernels"))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-k", "2] or arguments or regular_file",
                        str(HERE / "test_multicore_disk.py"), str(HERE / "test_multicore_sniffer.py")],
                       cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=600)
    tail = (r.stdout + r.stderr)[-3000:]
    assert r.returncode == 0, tail
    assert " passed" in r.stdout and "failed" not in r.stdout, tail
