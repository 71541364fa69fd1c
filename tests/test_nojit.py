"""The compiled code runs as plain Python under ``NUMBA_DISABLE_JIT=1`` and does exactly
what the compiled code does.

A child process with ``NUMBA_DISABLE_JIT=1`` (and a kernel cache directory of its own)
runs tests/helpers/nojit_runs.py: for every registered format, the writer's stream, the
decode and place of each packet, and a DiskReader through the capture engine's loop; then
a UDPCapture over loopback and a UDPSniffer (when CAP_NET_RAW is there).  This process
runs the same with the JIT on, and every byte and count must agree.  That is what makes a
placement debuggable with pdb (docs/architecture.md, "Debug a placement").
"""
from __future__ import annotations

import errno
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asbru import formats
from asbru.capture.sniffer import have_cap_net_raw
from asbru.formats import spec

from helpers import nojit_runs

HERE = Path(__file__).resolve().parent
SNIFFER = have_cap_net_raw()


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where ``a`` (compiled) and ``b`` (plain Python) differ, as readable paths."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return [f"{where}: {type(a).__name__} vs {type(b).__name__}"]
        if a.dtype != b.dtype or a.shape != b.shape:
            return [f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"]
        bad = np.flatnonzero(a.reshape(-1) != b.reshape(-1))
        return [f"{where}: {bad.size} element(s) differ, first at flat index {bad[0]}"] if bad.size else []
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}: keys {sorted(set(a) ^ set(b))} in one run only"] if set(a) != set(b) else []
        for k in sorted(set(a) & set(b), key=str):
            out += _differences(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += _differences(x, y, f"{where}[{i}]")
        return out
    return [] if a == b and type(a) is type(b) else [f"{where}: {a!r} vs {b!r}"]


@pytest.fixture(scope="module")
def plain_python(tmp_path_factory) -> dict[str, Any]:
    """The child's results (NUMBA_DISABLE_JIT=1)."""
    tmp = tmp_path_factory.mktemp("nojit")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", ASBRU_CACHE_DIR=str(tmp / "kernels"))
    out = tmp / "runs.pickle"
    proc = subprocess.run([sys.executable, str(HERE / "helpers" / "nojit_runs.py"), str(out),
                           str(tmp), "1" if SNIFFER else "0"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(out, "rb") as fh:
        result = pickle.load(fh)
    assert result["disable_jit"] is True
    return result["runs"]


def test_every_registered_format_is_run_both_ways(plain_python):
    # the child saw the same registry, and every format in it can make a stream
    assert set(formats.list()) <= set(plain_python)
    for name in formats.list():
        write_fmt, nsrc, ntime = nojit_runs.plan(name)
        assert formats.get(write_fmt, "write").name == name and nsrc >= 1 and ntime >= 4


def _python_run(plain_python: dict[str, Any], key: str) -> dict[str, Any]:
    run = plain_python[key]
    assert "error" not in run, f"under NUMBA_DISABLE_JIT=1:\n{run.get('error')}"
    return run


@pytest.mark.parametrize("name", nojit_runs.registered())
def test_format_runs_the_same_as_plain_python(plain_python, tmp_path, name):
    python = _python_run(plain_python, name)
    compiled = nojit_runs.format_run(name, str(tmp_path))
    assert _differences(compiled, python) == []
    if "desc" not in compiled:             # writer only (generic): its packets agree
        assert name == "generic"
        return
    # and the runs did what they claim: every packet decoded VALID and was placed; the
    # DiskReader's ring holds exactly the slots that place() fills, from the sequence's
    # first slot to the last (vdif: the frames held while the frame rate was learnt come
    # before that first slot and count as late), every packet counted once
    npkt = compiled["stream"].shape[0]
    assert len(compiled["valid"]) == npkt and not compiled["invalid"] and not compiled["held"]
    assert compiled["placed"].any(axis=1).all()
    assert compiled["statuses"][0] == 0 and compiled["statuses"][-1] == 1   # STARTED ... ENDED
    (_, _, data, flags), = compiled["sequences"]
    assembled = compiled["assembled"]
    nslot = data.size // assembled.shape[1]
    assert nslot > 0 and np.array_equal(data, assembled[-nslot:].reshape(-1))
    assert flags.shape[1] == nojit_runs.plan(name)[1] and flags.all()
    st = compiled["stats"]
    assert st["nreceived"] == npkt and st["nvalid"] == nslot * nojit_runs.plan(name)[1]
    assert st["nvalid"] + st["nlate"] == npkt
    assert st["ninvalid"] == st["nduplicate"] == st["nmissing_bytes"] == 0
    assert st["ngood_bytes"] == data.size
    assert (compiled["desc"][:, spec.SEQ] >= 0).all()


def _check_network_run(compiled: dict[str, Any], python: dict[str, Any]) -> None:
    assert _differences(compiled, python) == []
    n = nojit_runs.NET_NTIME * nojit_runs.NET_NSRC
    assert python["sent"] == n
    assert python["statuses"][0] == 0 and 1 in python["statuses"]       # STARTED ... ENDED
    (_, _, data, flags), = python["sequences"]
    assert np.array_equal(data, nojit_runs.net_expected())
    assert flags.shape == (nojit_runs.NET_NTIME, nojit_runs.NET_NSRC) and flags.all()
    st = python["stats"]
    assert st["nvalid"] == st["nreceived"] == n
    assert st["ninvalid"] == st["nlate"] == st["nduplicate"] == st["nmissing_bytes"] == 0
    assert st["ngood_bytes"] == data.size


def test_udp_capture_runs_the_same_as_plain_python(plain_python):
    python = _python_run(plain_python, "udp")
    _check_network_run(nojit_runs.udp_run(), python)


@pytest.mark.skipif(not SNIFFER, reason="UDPSniffer needs CAP_NET_RAW (run as root or setcap)")
def test_udp_sniffer_runs_the_same_as_plain_python(plain_python):
    python = _python_run(plain_python, "sniffer")
    _check_network_run(nojit_runs.sniffer_run(), python)


def test_writers_run_the_same_as_plain_python(plain_python, tmp_path):
    python = _python_run(plain_python, "writer")
    compiled = nojit_runs.writer_run(str(tmp_path))
    assert _differences(compiled, python) == []
    n = nojit_runs.NET_NTIME * nojit_runs.NET_NSRC
    assert python["sent"] == n and len(python["datagrams"]) == n
    assert python["file"].tobytes() == b"".join(python["datagrams"])
    assert python["overlapped"] == 1 and np.array_equal(python["image_file"], python["file"])


def test_syscalls_return_the_same_as_plain_python(plain_python):
    python = _python_run(plain_python, "syscalls")
    assert _differences(nojit_runs.syscalls_run(), python) == []
    assert python == {
        "read_bad_fd": -errno.EBADF, "errno_set": 0, "lseek_pipe": -errno.ESPIPE, "write": 5,
        "poll": 1, "read": 5, "poll_empty": 0, "recvmmsg_empty": -errno.EAGAIN,
        "recvmmsg_one": 1, "recvmmsg_bytes": b"abc", "slept_2ms": True}
