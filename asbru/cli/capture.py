"""``asbru capture``: receive one format's packets from a UDP address and record the valid ones."""
from __future__ import annotations

import errno as _errno
import functools
import ipaddress
import os
import signal
import socket
import struct
import sys
import time
from typing import Optional

import numpy as np
import typer

from ..errors import ArgumentError
from ..formats import spec
from . import common
from . import recv_kernel as rk
from . import slots
from .proclog_compat import Publisher

BLOCK = "cli_capture"
SO_RCVBUFFORCE = 33
SO_RXQ_OVFL = 40


def open_socket(host: str, port: int, family: int, rcvbuf: int, timeout: float,
                interface: str = "0.0.0.0") -> socket.socket:
    """A bound UDP socket with a large receive buffer, drop counting and a receive timeout."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        ip = ipaddress.ip_address(host)
        # binding a multicast group's address keeps other traffic to the port out
        sock.bind((host, port))
        if ip.is_multicast:
            if family == socket.AF_INET:
                mreq = socket.inet_aton(host) + socket.inet_aton(interface)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            else:
                mreq = socket.inet_pton(socket.AF_INET6, host) + struct.pack("@I", 0)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
    except OSError as exc:
        sock.close()
        raise ArgumentError(f"--bind: cannot bind {common.endpoint(host, port)} ({exc.strerror})") from None
    for opt in (SO_RCVBUFFORCE, socket.SO_RCVBUF):   # FORCE works as root beyond rmem_max
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
            break
        except OSError:
            continue
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    except OSError:
        pass
    sec = int(timeout)
    usec = int((timeout - sec) * 1e6)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("@ll", sec, usec))
    return sock


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


def _missing(seen: np.ndarray, track: np.ndarray) -> int:
    return int(track[slots.T_MISSING]) + int(slots.pending_missing(seen, track))


def _snapshot(c: np.ndarray, seen: np.ndarray, track: np.ndarray, seconds: float,
              rate_pps: float, rate_bps: float) -> dict:
    return {"seconds": seconds, "received": int(c[rk.RECEIVED]), "valid": int(c[rk.VALID]),
            "invalid": int(c[rk.INVALID]), "held": int(c[rk.HELD]),
            "duplicates": int(track[slots.T_DUP]), "missing": _missing(seen, track),
            "late": int(track[slots.T_LATE]), "restarts": int(track[slots.T_RESTARTS]),
            "kept": int(c[rk.KEPT]),
            "kept_bytes": int(c[rk.KEPT_BYTES]), "kernel_drops": int(c[rk.KERNEL_DROPS]),
            "truncated": int(c[rk.TRUNCATED]), "rate_pps": rate_pps, "rate_gbps": rate_bps / 1e9}


def _stats_log(c: np.ndarray, seen: np.ndarray, track: np.ndarray) -> dict:
    # Bifrost's stats keys + extensions; "good" = payload of first arrivals, "missing" =
    # empty (seq, src) slots times the last payload size (see slots.py)
    psize = int(track[slots.T_PSIZE])
    return {"ngood_bytes": int(track[slots.T_GOOD_BYTES]),
            "nmissing_bytes": _missing(seen, track) * psize,
            "ninvalid": int(c[rk.INVALID]), "ninvalid_bytes": int(c[rk.INVALID_BYTES]),
            "nlate": int(track[slots.T_LATE]), "nlate_bytes": int(track[slots.T_LATE]) * psize,
            "nvalid": int(c[rk.VALID]),
            "nvalid_bytes": int(c[rk.VALID_BYTES]),
            "nduplicate": int(track[slots.T_DUP]), "nmissing": _missing(seen, track),
            "nreceived": int(c[rk.RECEIVED]), "nreceived_bytes": int(c[rk.RECEIVED_BYTES]),
            "nheld": int(c[rk.HELD]), "nrecorded": int(c[rk.KEPT]),
            "nkernel_drops": int(c[rk.KERNEL_DROPS]), "ntruncated": int(c[rk.TRUNCATED])}


def _close_quietly(fh):
    try:
        fh.close()
    except OSError:
        pass
    return None


def _source_note(src_seen: np.ndarray, nsrc: int, src0: int) -> Optional[tuple[list[int], str]]:
    """Packets rejected only because of --nsrc/--src0: ([first, last] source index, a line)."""
    idx = np.flatnonzero(src_seen)
    idx = idx[idx >= nsrc]
    if idx.size == 0:
        return None
    n = int(src_seen[idx].sum())
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
    out: Optional[str] = typer.Option(None, "--out", help="record the kept packets back to back to this file"),
    duration: Optional[float] = typer.Option(None, "--duration", help="stop after this many seconds"),
    packets: Optional[int] = typer.Option(None, "--packets", help="stop after recording this many packets"),
    json_out: bool = typer.Option(False, "--json", metavar="", help="print the summary as one JSON object"),
    rcvbuf: int = typer.Option(64 << 20, "--rcvbuf", help="socket receive buffer to ask for (bytes)"),
    batch: int = typer.Option(64, "--batch", help="datagrams per recvmmsg call"),
    interface: Optional[str] = typer.Option(None, "--interface", help="multicast: IPv4 address of the interface to join the group on"),
    dada: Optional[str] = typer.Option(None, "--dada", help="stream into the PSRDADA ring with this hex key (dada_db -k KEY): one observation per capture sequence"),
) -> None:
    """Receive FORMAT packets, keep the valid ones (recorded to --out), show live statistics."""
    if dada is not None:    # a UDPCapture into a ring, streamed into PSRDADA (asbru/cli/capture_dada.py)
        from .capture_dada import capture_to_dada
        return capture_to_dada(fmt, bind, nsrc, src0, max_size, duration, json_out, rcvbuf, dada)
    f = common.get_format(fmt, "capture")
    host, port, family = common.parse_hostport(bind, "--bind", allow_port_zero=True)
    iface = common.interface_address(interface)
    common.positive(nsrc, "--nsrc")
    common.positive(src0, "--src0", allow_zero=True)
    common.positive(batch, "--batch")
    if duration is not None:
        common.positive(duration, "--duration")
    if packets is not None:
        common.positive(packets, "--packets")
    size = max_size or f.params.fixed_packet_size or 9000
    if not 1 <= size <= 65536:
        raise ArgumentError(f"--max-size: must be in 1..65536, got {size}")
    try:
        cfg = f.capture_config(nsrc, src0)
    except spec.FormatError as exc:
        raise ArgumentError(f"--nsrc/--src0: {exc}") from None

    from ..sockets.msgvec import RecvVec
    recv = rk.receiver(f)
    rv = RecvVec(batch, size, control=True)
    outbuf = np.empty(max(16 << 20, 4 * batch * size), dtype=np.uint8)
    counters = np.zeros(rk.NCOUNTERS, dtype=np.int64)
    state = np.zeros(spec.NSTATE, dtype=np.int64)
    d = np.full(spec.NDESC, -1, dtype=np.int64)
    seen, track = slots.new_tracker(nsrc)
    wide = rk.wide_args(f, src0)
    args = (rv.buffers, rv.lengths, rv.flags, rv.controllens, rv.control, np.int64(rv.control_size),
            cfg, state, d, outbuf)
    # compile (or load from the cache) before binding: a sender is lost on an unbound port
    from ..capture.precompile import announce
    with announce(sys.modules[recv.__module__], f.name, "cli", entry="recv_decode"):
        recv(np.int32(-1), np.int64(rv.addr), *args, np.int64(0), np.int64(-1), counters,
             np.int64(0), seen, track, *wide)

    sock = open_socket(host, port, family, rcvbuf, 0.1, iface)
    bound = sock.getsockname()
    fh = None
    if out is not None:
        try:
            fh = open(out, "wb")
        except OSError as exc:
            sock.close()
            raise ArgumentError(f"--out {out!r}: cannot be written ({exc.strerror})") from None
    pub = Publisher(BLOCK)
    pub.update("type", {"type": fmt})
    pub.update("sizes", {"nsrc": nsrc, "src0": src0, "max_size": size})
    pub.update("bind", {"address": common.endpoint(bound[0], bound[1]), "ncore": 1, "core0": -1})
    pub.update("out", {"file": os.path.abspath(out) if out else "-"})
    pub.update("stats", _stats_log(counters, seen, track))

    stop = {"why": ""}

    def _on_signal(signum, _frame):
        stop["why"] = "signal"

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    if not json_out and common.err.is_terminal:
        common.err.print(f"capturing {fmt} on {common.endpoint(bound[0], bound[1])}"
                         + (f" -> {out}" if out else "") + " (Ctrl-C to stop)")
    live = _Live(enabled=(not json_out) and common.err.is_terminal, title=f"asbru capture {fmt}")
    t0 = time.monotonic()
    last_t, last_n, last_b = t0, 0, 0
    rate_pps = rate_bps = 0.0
    keep_limit = np.int64(packets if packets is not None else -1)
    fd = np.int32(sock.fileno())
    error = ""
    try:
        while not stop["why"]:
            pos, e = recv(fd, np.int64(rv.addr), *args, np.int64(0), keep_limit, counters, np.int64(8),
                          seen, track, *wide)
            if pos and fh is not None:
                try:
                    fh.write(memoryview(outbuf[:pos]))
                except OSError as exc:       # ENOSPC, EIO, ...: stop, keep what was written
                    error = f"--out {out}: {exc.strerror or exc}"
                    stop["why"] = "error"
                    fh = _close_quietly(fh)
            if e not in (0, _errno.EAGAIN, _errno.EWOULDBLOCK, _errno.EINTR):
                error = os.strerror(e)
                stop["why"] = "error"
            now = time.monotonic()
            if packets is not None and counters[rk.KEPT] >= packets:
                stop["why"] = "packets"
            if duration is not None and now - t0 >= duration:
                stop["why"] = stop["why"] or "duration"
            if now - last_t >= 0.5 or stop["why"]:
                dt = now - last_t
                if dt > 0:
                    rate_pps = (counters[rk.RECEIVED] - last_n) / dt
                    rate_bps = (counters[rk.RECEIVED_BYTES] - last_b) * 8 / dt
                last_t, last_n, last_b = now, int(counters[rk.RECEIVED]), int(counters[rk.RECEIVED_BYTES])
                pub.update("stats", _stats_log(counters, seen, track))
                live.show(_snapshot(counters, seen, track, now - t0, rate_pps, rate_bps))
    finally:
        live.stop()
        for s, h in old.items():
            signal.signal(s, h)
        sock.close()
        if fh is not None:
            try:
                fh.close()
            except OSError as exc:           # the last buffered bytes did not fit either
                error = error or f"--out {out}: {exc.strerror or exc}"
        pub.close()
    seconds = time.monotonic() - t0
    slots.finish(seen, track)
    summary = _snapshot(counters, seen, track, seconds, counters[rk.RECEIVED] / seconds if seconds else 0.0,
                        counters[rk.RECEIVED_BYTES] * 8 / seconds if seconds else 0.0)
    summary = {"format": fmt, "bind": common.endpoint(bound[0], bound[1]), "out": out, **summary,
               "stopped_by": stop["why"]}
    if error:
        summary["error"] = error
    note = _source_note(wide[2], nsrc, src0)
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
