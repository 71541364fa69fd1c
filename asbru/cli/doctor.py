"""``asbru doctor``: is this machine set up for high-rate capture?  Prints the fix for each gap.

Every check only reads (or opens a throw-away socket), so it runs unprivileged as well as
as root; a value that cannot be read is reported as ``skip`` with the reason.
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import typer

from ..sockets.options import SO_RCVBUFFORCE
from . import common

RMEM_WANT = 256 << 20       # ~15 000 datagrams of 8 KiB (each costs ~16.6 KB of buffer)
WMEM_WANT = 64 << 20
BACKLOG_WANT = 250_000
CAP_NET_RAW = 13


def _check(name: str, status: str, value: Any, detail: str = "", fix: str = "") -> dict[str, Any]:
    return {"check": name, "status": status, "value": value, "detail": detail, "fix": fix}


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _sysctl(key: str, want: int) -> dict[str, Any]:
    path = "/proc/sys/" + key.replace(".", "/")
    v = _read_int(path)
    if v is None:
        return _check(key, "skip", None, f"{path} is not readable")
    if v >= want:
        return _check(key, "ok", v, f">= {want}")
    return _check(key, "warn", v, f"below the recommended {want}",
                  f"sudo sysctl -w {key}={want}   (persist: see below)")


SYSCTL_FILE = "/etc/sysctl.d/90-asbru.conf"


def persist_command(res: list[dict[str, Any]]) -> str:
    """One command that writes every recommended sysctl into one file (each "persist" hint
    used to ``tee`` its own line into the same file, so only the last one survived).  The
    file holds all of them, the ones already high enough included, so running it again
    after a later fix never drops an earlier one."""
    low = {r["check"] for r in res if r["status"] == "warn"}
    if not low & set(SYSCTLS):
        return ""
    lines = []
    for key, want in SYSCTLS.items():
        cur = next((r["value"] for r in res if r["check"] == key), None)
        lines.append(f"{key}={max(want, cur or 0)}")
    body = "\\n".join(lines)
    return f"printf '{body}\\n' | sudo tee {SYSCTL_FILE} && sudo sysctl -p {SYSCTL_FILE}"


def _cap_eff() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        return None
    return None


def _proclog_check() -> dict[str, Any]:
    """Where captures publish statistics for `asbru top`, and whether every user can."""
    from .. import proclog
    r = proclog.root_status()
    return _check("proclog directory", r["status"], r["path"], r["detail"], r["fix"])


SYSCTLS = {"net.core.rmem_max": RMEM_WANT, "net.core.wmem_max": WMEM_WANT,
           "net.core.netdev_max_backlog": BACKLOG_WANT}


def checks() -> list[dict[str, Any]]:
    res = [_sysctl(key, want) for key, want in SYSCTLS.items()]

    # what a capture socket actually gets (the kernel reports twice the usable size)
    caps = _cap_eff()
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        forced = False
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RMEM_WANT)
            forced = True
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RMEM_WANT)
        granted = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        s.close()
        how = "SO_RCVBUFFORCE (privileged)" if forced else "SO_RCVBUF (limited by net.core.rmem_max)"
        if granted >= RMEM_WANT:
            res.append(_check("socket receive buffer", "ok", granted, f"asked {RMEM_WANT} via {how}"))
        else:
            res.append(_check("socket receive buffer", "warn", granted,
                              f"asked {RMEM_WANT} via {how}, got {granted}",
                              f"sudo sysctl -w net.core.rmem_max={RMEM_WANT}   (or run the capture with CAP_NET_ADMIN)"))
    except OSError as exc:
        res.append(_check("socket receive buffer", "fail", None, f"cannot open a UDP socket: {exc.strerror}"))

    if caps is None:
        res.append(_check("CAP_NET_RAW", "skip", None, "/proc/self/status has no CapEff"))
    elif caps >> CAP_NET_RAW & 1:
        res.append(_check("CAP_NET_RAW", "ok", True, "the AF_PACKET sniffer (UDPSniffer) can be used"))
    else:
        py = os.path.realpath(sys.executable)
        res.append(_check("CAP_NET_RAW", "warn", False, "needed only by the sniffer backend (UDPSniffer)",
                          f"sudo setcap cap_net_raw,cap_net_admin+ep {py}   (or run as root)"))

    govs = sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor"))
    values = {}
    for g in govs:
        try:
            values[g.parent.parent.name] = g.read_text().strip()
        except OSError:
            pass
    if not values:
        res.append(_check("CPU frequency governor", "skip", None, "no cpufreq information (VM or container)"))
    else:
        kinds = sorted(set(values.values()))
        if kinds == ["performance"]:
            res.append(_check("CPU frequency governor", "ok", "performance"))
        else:
            res.append(_check("CPU frequency governor", "warn", ",".join(kinds),
                              "frequency scaling adds latency jitter to capture threads",
                              "sudo cpupower frequency-set -g performance   (or: echo performance | sudo tee "
                              "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor)"))

    try:
        import numba
        res.append(_check("numba", "ok", numba.__version__))
    except Exception as exc:  # an import error of any kind means no compiled paths
        res.append(_check("numba", "fail", None, f"import failed: {exc}",
                          f"{sys.executable} -m pip install 'numba>=0.58'"))

    try:
        from ..formats.engine import kernel_cache_dir
        path = kernel_cache_dir()
        res.append(_check("kernel cache dir", "ok", str(path), "writable; compiled kernels are reused across runs"))
    except Exception as exc:
        res.append(_check("kernel cache dir", "fail", None, str(exc),
                          "export ASBRU_CACHE_DIR=/a/writable/directory"))
    res.append(_proclog_check())
    numba_dir = os.environ.get("NUMBA_CACHE_DIR")
    pkg_cache = Path(__file__).resolve().parent.parent / "__pycache__"
    target = Path(numba_dir) if numba_dir else pkg_cache
    if os.access(target if target.exists() else target.parent, os.W_OK):
        res.append(_check("numba cache", "ok", str(target), "writable"))
    else:
        res.append(_check("numba cache", "info", str(target),
                          "not writable: numba falls back to a per-user cache directory",
                          "export NUMBA_CACHE_DIR=$HOME/.cache/numba   (to choose where)"))
    return res


def doctor(json_out: bool = typer.Option(False, "--json", metavar="", help="print one JSON object")) -> None:
    """Check socket buffer limits, privileges, CPU governor, numba, the kernel cache and the
    proclog directory; print fixes."""
    res = checks()
    summary = {"uid": os.geteuid(), "checks": res,
               "ok": all(r["status"] in ("ok", "skip", "info") for r in res),
               "persist": persist_command(res)}
    if json_out:
        common.print_json(summary)
        return
    from rich.table import Table
    t = Table(title="asbru doctor", title_justify="left")
    for col in ("check", "status", "value", "detail"):
        t.add_column(col)
    style = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim", "info": "cyan"}
    for r in res:
        t.add_row(r["check"], f"[{style[r['status']]}]{r['status']}[/]",
                  "-" if r["value"] is None else str(r["value"]), r["detail"])
    common.out.print(t)
    fixes = [r for r in res if r["fix"]]
    if fixes:
        common.out.print("fixes:")
        for r in fixes:
            common.out.print(f"  {r['check']}: {r['fix']}", markup=False)
    if summary["persist"]:
        common.out.print(f"to keep the sysctls across reboots (one file, {SYSCTL_FILE}):")
        common.out.print(f"  {summary['persist']}", markup=False, soft_wrap=True)
