"""``asbru top``: every running asbru capture on the machine, from the proclog files, and the
shared-memory rings (``Ring(space="shm")``) with their readers.

A capture publishes cumulative counters (Bifrost's ``stats`` log: nvalid, nvalid_bytes,
ninvalid, nlate, ngood_bytes, nmissing_bytes, plus asbru extensions such as duplicates and
kernel drops when the publisher knows them); rates are differences between two samples
``--interval`` seconds apart.  ``--prometheus PORT`` serves the same numbers.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any, Optional

import typer

from . import common
from ..proclog import list_pids, load_by_pid
from .rings import ring_rows, ring_table

# blocks that receive packets (Bifrost's names, asbru's, and this CLI's recorder)
CAPTURE_KINDS = ("udp_capture", "udp_sniffer", "udp_verbs_capture", "disk_reader", "cli_capture")
WRITER_KINDS = ("disk_writer", "udp_transmit", "udp_verbs_transmit")

_DUP_KEYS = ("nduplicate", "nduplicates", "duplicates", "nduplicate_packets")
_DROP_KEYS = ("nkernel_drops", "nkernel_drop", "kernel_drops", "ndropped_kernel", "nrxq_ovfl")


def _kind(block: str) -> str:
    base, sep, tail = block.rpartition("_")
    return base if sep and tail.isdigit() else block


def _first(d: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return None


def _ring_fill(logs: dict[str, dict[str, Any]], stats: dict[str, Any]) -> Any:
    for key in ("ring_fill", "fill", "ring_fill_percent"):
        if key in stats:
            return stats[key]
    for name, values in logs.items():
        if "ring" in name or name.startswith("out"):
            for key in ("fill", "ring_fill", "fill_percent"):
                if key in values:
                    return values[key]
    return None


def sample() -> dict[tuple[int, str], dict[str, Any]]:
    """{(pid, block): {"stats": {...}, "type": str, "logs": {...}}} for every live capture."""
    found: dict[tuple[int, str], dict[str, Any]] = {}
    me = os.getpid()
    for pid in list_pids():
        if pid == me:
            continue
        try:
            blocks = load_by_pid(pid)
        except OSError:
            continue
        for block, logs in blocks.items():
            kind = _kind(block)
            stats = logs.get("stats")
            if kind in WRITER_KINDS:
                continue
            if kind in CAPTURE_KINDS:
                stats = stats if isinstance(stats, dict) else {}   # constructed, no recv() yet
            elif not isinstance(stats, dict) or "nvalid" not in stats:
                continue
            fmt = (logs.get("type") or {}).get("type", "")
            found[(pid, block)] = {"stats": stats, "type": fmt, "logs": logs}
    return found


def _num(d: dict[str, Any], key: str) -> int:
    v = d.get(key, 0)
    return int(v) if isinstance(v, (int, float)) else 0


def rows(before: dict, after: dict, dt: float) -> list[dict[str, Any]]:
    out = []
    for key in sorted(after):
        pid, block = key
        s1 = after[key]["stats"]
        s0 = before.get(key, {}).get("stats", s1) if key in before else None
        good, missing = _num(s1, "ngood_bytes"), _num(s1, "nmissing_bytes")
        r: dict[str, Any] = {
            "pid": pid, "block": block, "format": after[key]["type"],
            "packets_per_second": None, "gbit_per_second": None,
            "valid": _num(s1, "nvalid"), "valid_bytes": _num(s1, "nvalid_bytes"),
            "missing_percent": round(100.0 * missing / (good + missing), 3) if good + missing else 0.0,
            "late": _num(s1, "nlate"), "invalid": _num(s1, "ninvalid"),
            "duplicates": _first(s1, _DUP_KEYS), "kernel_drops": _first(s1, _DROP_KEYS),
            "ring_fill": _ring_fill(after[key]["logs"], s1),
        }
        if s0 is not None and dt > 0:
            r["packets_per_second"] = round((_num(s1, "nvalid") - _num(s0, "nvalid")) / dt, 1)
            r["gbit_per_second"] = round((_num(s1, "nvalid_bytes") - _num(s0, "nvalid_bytes")) * 8 / dt / 1e9, 6)
        out.append(r)
    return out


def _table(rs: list[dict[str, Any]]):
    from rich.table import Table
    t = Table(title=f"asbru captures ({len(rs)})", title_justify="left")
    cols = (("pid", "pid"), ("block", "block"), ("format", "format"), ("pkt/s", "packets_per_second"),
            ("Gbit/s", "gbit_per_second"), ("missing %", "missing_percent"), ("late", "late"),
            ("invalid", "invalid"), ("dup", "duplicates"), ("kernel drops", "kernel_drops"),
            ("ring fill", "ring_fill"))
    for title, _ in cols:
        t.add_column(title, justify="left" if title in ("block", "format") else "right")
    for r in rs:
        t.add_row(*(_cell(key, r.get(key)) for _, key in cols))
    if not rs:
        t.caption = NO_CAPTURE
    return t


NO_CAPTURE = ("no capture running (asbru top shows the UDPCapture/UDPSniffer/DiskReader and "
              "`asbru capture` processes of this machine)")
# decimals per column: packets/s are whole packets, the rest keeps what it means
_DECIMALS = {"packets_per_second": 0, "gbit_per_second": 3, "missing_percent": 3, "ring_fill": 2}


def _cell(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{_DECIMALS.get(key, 3)}f}"
    if isinstance(v, int) and not isinstance(v, bool) and key != "pid":
        return f"{v:,}"
    return str(v)


def _view(rs: list[dict[str, Any]], shared: list[dict[str, Any]]):
    """The captures table, and the shared rings (with their readers) when there are any."""
    if not shared:
        return _table(rs)
    from rich.console import Group
    return Group(_table(rs), ring_table(shared))


class _Collector:
    """prometheus-client collector: reads the proclog files on every scrape."""

    def __init__(self) -> None:
        self._last: dict = {}
        self._last_t = time.monotonic()

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        now = time.monotonic()
        snap = sample()
        rs = rows(self._last, snap, now - self._last_t)
        self._last, self._last_t = snap, now
        labels = ["pid", "block", "format"]
        counters = {
            "valid_packets": ("valid", "packets accepted by the decoder"),
            "valid_bytes": ("valid_bytes", "payload bytes accepted"),
            "invalid_packets": ("invalid", "packets rejected by the decoder"),
            "late_packets": ("late", "packets that arrived after their slot was committed"),
        }
        fams = {name: CounterMetricFamily(f"asbru_capture_{name}", doc, labels=labels)
                for name, (_, doc) in counters.items()}
        gauges = {
            "missing_percent": GaugeMetricFamily("asbru_capture_missing_percent", "missing data, percent of committed bytes", labels=labels),
            "packets_per_second": GaugeMetricFamily("asbru_capture_packets_per_second", "valid packets per second", labels=labels),
            "gbit_per_second": GaugeMetricFamily("asbru_capture_gbit_per_second", "valid payload Gbit/s", labels=labels),
            "duplicates": GaugeMetricFamily("asbru_capture_duplicate_packets", "duplicate packets (when published)", labels=labels),
            "kernel_drops": GaugeMetricFamily("asbru_capture_kernel_drops", "datagrams dropped by the kernel (when published)", labels=labels),
            "ring_fill": GaugeMetricFamily("asbru_capture_ring_fill", "ring fill (when published)", labels=labels),
        }
        for r in rs:
            lv = [str(r["pid"]), r["block"], str(r["format"])]
            for name, (key, _) in counters.items():
                fams[name].add_metric(lv, float(r[key]))
            for key, fam in gauges.items():
                v = r.get(key)
                if isinstance(v, (int, float)):
                    fam.add_metric(lv, float(v))
        yield from fams.values()
        yield from gauges.values()


def serve_prometheus(port: int, host: str):
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        from ..errors import ArgumentError
        raise ArgumentError("--prometheus: needs the prometheus-client package "
                            "(pip install 'asbru[prometheus]')") from None
    registry = CollectorRegistry()
    registry.register(_Collector())
    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        from ..errors import ArgumentError
        raise ArgumentError(f"--prometheus: cannot listen on {common.endpoint(host, port)} ({exc.strerror})") from None


def top(
    once: bool = typer.Option(False, "--once", metavar="", help="print one sample and exit"),
    json_out: bool = typer.Option(False, "--json", metavar="", help="print JSON (one object per sample)"),
    interval: float = typer.Option(1.0, "--interval", help="seconds between samples (rates are over this interval)"),
    prometheus: Optional[int] = typer.Option(None, "--prometheus", help="serve the counters for Prometheus on this port"),
    prometheus_host: str = typer.Option("127.0.0.1", "--prometheus-host", help="address to serve Prometheus on"),
) -> None:
    """Live view of every running asbru capture: packets/s, Gbit/s, missing %, late, invalid, ..."""
    common.positive(interval, "--interval")
    if prometheus is not None and not 1 <= prometheus <= 65535:
        from ..errors import ArgumentError
        raise ArgumentError(f"--prometheus: port must be in 1..65535, got {prometheus}")
    server = serve_prometheus(prometheus, prometheus_host) if prometheus is not None else None
    if server is not None and not json_out:
        common.err.print(f"serving Prometheus metrics on http://{common.endpoint(prometheus_host, prometheus)}/metrics")
    stop = {"flag": False}
    old = signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("flag", True))
    live = None
    try:
        prev, prev_t = sample(), time.monotonic()
        if not json_out and not once and common.out.is_terminal:
            from rich.live import Live
            live = Live(_view(rows({}, prev, 0.0), ring_rows()), console=common.out, refresh_per_second=2)
            live.start()
        while not stop["flag"]:
            time.sleep(interval)
            cur, now = sample(), time.monotonic()
            rs = rows(prev, cur, now - prev_t)
            prev, prev_t = cur, now
            shared = ring_rows()
            if json_out:
                common.print_json({"time": time.time(), "interval": interval, "captures": rs,
                                   "rings": shared})
            elif live is not None:
                live.update(_view(rs, shared))
            else:
                common.out.print(_view(rs, shared))
            if once:
                break
    except KeyboardInterrupt:
        pass
    finally:
        if live is not None:
            live.stop()
        signal.signal(signal.SIGTERM, old)
        if server is not None:
            try:
                server[0].shutdown()
            except Exception:
                pass
