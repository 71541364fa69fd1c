"""``asbru capture``: receive one format's packets from a UDP address and record the valid ones.

It is the capture engine with a packet file at its end: a :class:`UDPCapture` (the same
socket code, compiled receive loop and late/duplicate/missing accounting as any capture)
runs on the whole-packet view of the format (:mod:`asbru.cli.whole_packets`), and a
:class:`~asbru.cli.packet_file.PacketFileWriter` writes the packets it placed to ``--out``.
The summary and the proclog statistics (block ``cli_capture``, read by ``asbru top``) are
the engine's counters.
"""
from __future__ import annotations

import functools
import os
import signal
import socket
import time
import warnings
from typing import Any, Optional

import numpy as np
import typer

from ..capture.status import Status
from ..capture.udp import UDPCapture
from ..errors import ArgumentError, AsbruError, CaptureWarning
from ..formats import Format
from . import common
from .packet_file import PacketFileWriter
from .whole_packets import WholePacketFormat, whole_packets

BLOCK = "cli_capture"
#: bytes of packets per gulp the capture aims at (time slots: see :func:`gulp_ntime`)
GULP_BYTES = 4 << 20
GULP_NTIME_MIN = 16      # reordering tolerated is about a gulp: never fewer time slots
GULP_NTIME_MAX = 1024
SOCKET_TIMEOUT = 0.1     # a quiet socket returns to Python this often (Ctrl-C, --duration)


class CommandLineCapture(UDPCapture):
    """The UDPCapture of ``asbru capture``: its proclog block is ``cli_capture`` (so that
    ``asbru top`` tells the command apart from captures in programs)."""

    _kind = BLOCK


def gulp_ntime(nsrc: int, packet_size: int) -> int:
    """Time slots per gulp for ``nsrc`` sources of packets up to ``packet_size`` bytes:
    about :data:`GULP_BYTES`, a power of two in ``GULP_NTIME_MIN..GULP_NTIME_MAX``."""
    want = max(1, GULP_BYTES // max(1, nsrc * packet_size))
    n = 1 << (want.bit_length() - 1)
    return int(min(GULP_NTIME_MAX, max(GULP_NTIME_MIN, n)))


def open_socket(host: str, port: int, rcvbuf: int, interface: str = "0.0.0.0") -> Any:
    """A bound :class:`~asbru.udp_socket.UDPSocket` (a multicast group is joined on the
    interface whose IPv4 address ``interface`` is, default the kernel's choice) with a
    :data:`SOCKET_TIMEOUT` receive timeout."""
    from ..sockets.address import Address
    from ..sockets.netif import interface_for_address
    from ..udp_socket import UDPSocket
    name = None
    if interface != "0.0.0.0":
        found = interface_for_address(interface, socket.AF_INET, owned=True)
        if found is None:
            raise ArgumentError(f"--interface: no interface has the address {interface}")
        name = found.name
    sock = UDPSocket(buffer_size=rcvbuf)
    try:
        sock.bind(Address(host, port), interface=name, reuse_port=False)
    except AsbruError as exc:
        why = str(exc).rpartition(": ")[2]
        raise ArgumentError(f"--bind: cannot bind {common.endpoint(host, port)} ({why})") from None
    sock.timeout = SOCKET_TIMEOUT
    return sock


def bound_endpoint(sock: Any) -> str:
    """``HOST:PORT`` the socket is bound to (the port the kernel picked for port 0)."""
    probe = socket.socket(fileno=os.dup(sock.fileno()))
    try:
        host, port = probe.getsockname()[:2]
    finally:
        probe.close()
    return common.endpoint(host, port)


def build_capture(f: Format, sock: Any, nsrc: int, src0: int, max_size: int, nbatch: int,
                  sample_rate: Optional[float] = None) -> tuple[CommandLineCapture, WholePacketFormat, int]:
    """The receive side of ``asbru capture``: (the capture, its whole-packet format view,
    time slots per gulp).  Compiles the loop now (the socket is bound: what arrives
    meanwhile is kept)."""
    view = whole_packets(f)
    ntime = gulp_ntime(nsrc, max_size)
    try:
        cap = CommandLineCapture(view, sock, None, nsrc, src0, max_size, ntime, ntime, None,
                                 nbatch=nbatch, sample_rate=sample_rate)
    except ArgumentError as exc:
        msg = str(exc)
        if msg.startswith("sample_rate"):
            raise ArgumentError("--sample-rate" + msg[len("sample_rate"):]) from None
        raise
    return cap, view, ntime


class _Live:
    """The rich live panel (only on a terminal, never with --json)."""

    def __init__(self, enabled: bool, title: str) -> None:
        self.live = None
        self.title = title
        if enabled:
            from rich.live import Live
            self.live = Live(console=common.err, refresh_per_second=4, transient=False)
            self.live.start()

    def show(self, snap: dict) -> None:
        if self.live is None:
            return
        from rich.table import Table
        t = Table(title=self.title, show_header=True)
        for col in ("elapsed s", "pkt/s", "Gbit/s", "valid", "invalid", "duplicates", "missing",
                    "late", "recorded", "kernel drops"):
            t.add_column(col, justify="right")
        t.add_row(f"{snap['seconds']:.1f}", f"{snap['rate_pps']:,.0f}", f"{snap['rate_gbps']:.3f}",
                  f"{snap['valid']:,}", f"{snap['invalid']:,}", f"{snap['duplicates']:,}",
                  f"{snap['missing']:,}", f"{snap['late']:,}", f"{snap['kept']:,}",
                  f"{snap['kernel_drops']:,}")
        self.live.update(t)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


def _received_bytes(st: dict[str, Any]) -> int:
    # every received packet is counted once as valid, duplicate, late or invalid (whole
    # packets: the view's payload is the packet)
    return int(st["nvalid_bytes"] + st["nduplicate_bytes"] + st["nlate_bytes"] + st["ninvalid_bytes"])


def _snapshot(st: dict[str, Any], writer: PacketFileWriter, seconds: float, rate_pps: float,
              rate_bps: float) -> dict[str, Any]:
    return {"seconds": seconds, "received": int(st["nreceived"]), "valid": int(st["nvalid"]),
            "invalid": int(st["ninvalid"]), "duplicates": int(st["nduplicate"]),
            "missing": int(st["per_source"]["missing"].sum()), "late": int(st["nlate"]),
            "restarts": int(st["nrestarts"]), "unlearned": int(st["nunlearned"]),
            "kept": writer.packets, "kept_bytes": writer.nbytes,
            "kernel_drops": int(st["nkernel_drops"]), "rate_pps": rate_pps,
            "rate_gbps": rate_bps / 1e9}


def _source_note(rejected: np.ndarray, nsrc: int, src0: int) -> Optional[tuple[list[int], str]]:
    """Packets rejected only because of --nsrc/--src0: ([first, last] source index, a line)."""
    idx = np.flatnonzero(rejected)
    idx = idx[idx >= nsrc]
    if idx.size == 0:
        return None
    n = int(rejected[idx].sum())
    lo, hi = int(idx.min()), int(idx.max())
    seen = f"source {lo}" if lo == hi else f"sources {lo}-{hi}"
    accepted = "only source 0" if nsrc == 1 else f"sources 0-{nsrc - 1}"
    return [lo, hi], (f"{n:,} invalid packets came from {seen} (header id minus --src0 {src0}); "
                      f"--nsrc {nsrc} accepts {accepted}: try --nsrc {hi + 1}")


def _interrupt_is_one_line(fn):
    """Ctrl-C before the receive loop has taken over SIGINT (while compiling or binding):
    one line and exit status 130, not a traceback.  Later, Ctrl-C ends the loop and the
    summary is printed as usual."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            common.err.print("asbru: interrupted before the capture started; nothing was received",
                             markup=False)
            raise typer.Exit(130) from None
    return wrapper


@_interrupt_is_one_line
def capture(
    fmt: str = typer.Argument(..., metavar="FORMAT", help="format string, e.g. chips, tbn, drx, simple"),
    bind: str = typer.Option(..., "--bind", help="HOST:PORT to receive on ([::1]:PORT for IPv6; multicast groups are joined)"),
    nsrc: int = typer.Option(1, "--nsrc", help="number of sources the decoder accepts"),
    src0: int = typer.Option(0, "--src0", help="first source id (subtracted from the header's)"),
    max_size: Optional[int] = typer.Option(None, "--max-size", help="largest datagram in bytes (default: the format's packet size, else 9000)"),
    out: Optional[str] = typer.Option(None, "--out", help="record the received packets (each once, in time order) to this file"),
    duration: Optional[float] = typer.Option(None, "--duration", help="stop after this many seconds"),
    packets: Optional[int] = typer.Option(None, "--packets", help="stop after recording this many packets"),
    json_out: bool = typer.Option(False, "--json", metavar="", help="print the summary as one JSON object"),
    rcvbuf: int = typer.Option(64 << 20, "--rcvbuf", help="socket receive buffer to ask for (bytes)"),
    batch: int = typer.Option(64, "--batch", help="datagrams per recvmmsg call (at most 1024)"),
    interface: Optional[str] = typer.Option(None, "--interface", help="multicast: IPv4 address of the interface to join the group on"),
    sample_rate: Optional[float] = typer.Option(None, "--sample-rate", help="samples per second, for formats that otherwise learn it from the stream (tbn, vdif): every packet is placed from the first"),
    dada: Optional[str] = typer.Option(None, "--dada", help="stream into the PSRDADA ring with this hex key (dada_db -k KEY): one observation per capture sequence"),
) -> None:
    """Receive FORMAT packets, keep the valid ones (recorded to --out), show live statistics."""
    if dada is not None:    # a UDPCapture into a ring, streamed into PSRDADA (asbru/cli/capture_dada.py)
        from .capture_dada import capture_to_dada
        return capture_to_dada(fmt, bind, nsrc, src0, max_size, duration, json_out, rcvbuf, dada)
    f = common.get_format(fmt, "capture")
    host, port, _family = common.parse_hostport(bind, "--bind", allow_port_zero=True)
    iface = common.interface_address(interface)
    common.positive(nsrc, "--nsrc")
    common.positive(src0, "--src0", allow_zero=True)
    common.positive(batch, "--batch")
    if batch > 1024:
        raise ArgumentError(f"--batch: must be at most 1024 (recvmmsg's limit), got {batch}")
    if duration is not None:
        common.positive(duration, "--duration")
    if packets is not None:
        common.positive(packets, "--packets")
    if sample_rate is not None:
        common.positive(sample_rate, "--sample-rate")
    size = max_size or f.params.fixed_packet_size or 9000
    low = f.params.header_size + 1
    if not low <= size <= 65536:
        raise ArgumentError(f"--max-size: must be in {low}..65536 (a {f.name} packet has a "
                            f"{low - 1}-byte header), got {size}")
    if sample_rate is not None and sample_rate == int(sample_rate):
        sample_rate = int(sample_rate)
    fh = None
    if out is not None:
        try:
            fh = open(out, "wb")
        except OSError as exc:
            raise ArgumentError(f"--out {out!r}: cannot be written ({exc.strerror})") from None
    try:
        sock = open_socket(host, port, rcvbuf, iface)
    except BaseException:
        if fh is not None:
            fh.close()
        raise
    try:
        cap, view, ntime = build_capture(f, sock, nsrc, src0, size, batch, sample_rate)
    except BaseException:
        sock.close()
        if fh is not None:
            fh.close()
        raise
    _record(cap, view, ntime, sock, fh, fmt=fmt, out=out, nsrc=nsrc, src0=src0, duration=duration,
            packets=packets, json_out=json_out)


def _warning_line(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                  line: Any = None) -> None:
    """The engine's warnings (packets not placed while a rate was learnt...) as one line
    that names the command's option."""
    text = str(message).replace(f"{CommandLineCapture.__name__}: ", "", 1)
    text = text.replace("give sample_rate=", "give --sample-rate")
    common.err.print(f"asbru: warning: {text}", markup=False, soft_wrap=True)


def _record(cap: CommandLineCapture, view: WholePacketFormat, ntime: int, sock: Any, fh: Any,
            **kw: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always", CaptureWarning)
        warnings.showwarning = _warning_line
        _run_and_report(cap, view, ntime, sock, fh, **kw)


def _run_and_report(cap: CommandLineCapture, view: WholePacketFormat, ntime: int, sock: Any,
                    fh: Any, *, fmt: str, out: Optional[str], nsrc: int, src0: int,
                    duration: Optional[float], packets: Optional[int], json_out: bool) -> None:
    """Run the capture until it is told to stop, then print the summary."""
    where = bound_endpoint(sock)
    writer = PacketFileWriter(cap.ring, fh, nsrc, ntime, limit=packets, label=f"--out {out}")
    stop = {"why": ""}

    def _on_signal(signum, _frame):
        stop["why"] = "signal"

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    if not json_out and common.err.is_terminal:
        common.err.print(f"capturing {fmt} on {where}" + (f" -> {out}" if out else "")
                         + " (Ctrl-C to stop)")
    live = _Live(enabled=(not json_out) and common.err.is_terminal, title=f"asbru capture {fmt}")
    t0 = time.monotonic()
    last_t, last_n, last_b = t0, 0, 0
    rate_pps = rate_bps = 0.0
    error = ""
    try:
        while not stop["why"]:
            status = cap.recv()
            if status == Status.ERROR:
                error = str(cap.last_error or "the receive failed")
                stop["why"] = "error"
            if writer.stopped.is_set():
                stop["why"] = stop["why"] or ("error" if writer.error else "packets")
            now = time.monotonic()
            if duration is not None and now - t0 >= duration:
                stop["why"] = stop["why"] or "duration"
            if now - last_t >= 0.5 or stop["why"]:
                st = cap.stats
                dt = now - last_t
                if dt > 0:
                    rate_pps = (st["nreceived"] - last_n) / dt
                    rate_bps = (_received_bytes(st) - last_b) * 8 / dt
                last_t, last_n, last_b = now, int(st["nreceived"]), _received_bytes(st)
                live.show(_snapshot(st, writer, now - t0, rate_pps, rate_bps))
    finally:
        live.stop()
        for s, h in old.items():
            signal.signal(s, h)
        try:
            cap.end()              # commits what is open: the writer sees the end of the data
        finally:
            writer.join()
            sock.close()
    seconds = time.monotonic() - t0
    st = cap.stats
    summary: dict[str, Any] = {"format": fmt, "bind": where, "out": out,
                               **_snapshot(st, writer, seconds,
                                           st["nreceived"] / seconds if seconds else 0.0,
                                           _received_bytes(st) * 8 / seconds if seconds else 0.0),
                               "stopped_by": stop["why"]}
    error = error or writer.error
    if error:
        summary["error"] = error
    note = _source_note(view.rejected_sources(), nsrc, src0)
    if note:
        summary["rejected_sources"] = note[0]
    if json_out:
        common.print_json(summary)
    else:
        from rich.table import Table
        t = Table(title="capture summary", show_header=False)
        for k, v in summary.items():
            t.add_row(k, f"{v:,.3f}" if isinstance(v, float) else str(v))
        common.out.print(t)
    if note:
        common.err.print(f"asbru: note: {note[1]}", markup=False, soft_wrap=True)
    if error:
        raise typer.Exit(1)
