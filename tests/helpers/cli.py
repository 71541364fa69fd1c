"""Helpers for the command-line tests (no tests here): run ``python -m asbru`` as a user would."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

TIMEOUT = 120  # generous: numba may compile on first use and the machine is shared

ENV = {**os.environ, "COLUMNS": "200"}


def run(*args: str, timeout: float = TIMEOUT, check: bool = True, cwd: str | Path | None = None,
        prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    proc = subprocess.run([*prefix, sys.executable, "-m", "asbru", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=ENV)
    if check and proc.returncode != 0:
        raise AssertionError(f"asbru {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_json(*args: str, **kw) -> dict:
    proc = run(*args, **kw)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "asbru", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def free_udp_port(host: str = "127.0.0.1") -> int:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_published(pid: int, block: str = "cli_capture", timeout: float = TIMEOUT,
                   proc: subprocess.Popen | None = None) -> Path:
    """Wait until process ``pid`` has published ``<block>/stats`` (i.e. it is receiving)."""
    from asbru.proclog import proclog_root as root
    path = root() / str(pid) / block / "stats"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"capture exited early: {proc.returncode}\n{proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout} s")


def stop(proc: subprocess.Popen, timeout: float = 30) -> tuple[str, str]:
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()
