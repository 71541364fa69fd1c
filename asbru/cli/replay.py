"""``asbru replay``: send a packet file (or the UDP payloads of a pcap) with sendmmsg batches."""
from __future__ import annotations

import contextlib
import signal
from typing import Callable, Iterator, Optional

import typer

from ..recorder import load_packets, send_packets
from . import common


@contextlib.contextmanager
def progress_bar(total: int, what: str, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr when it is a terminal; a no-op otherwise."""
    if not enabled or not common.err.is_terminal or total <= 0:
        yield lambda n: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                               TimeRemainingColumn)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TaskProgressColumn(), TimeRemainingColumn(), console=common.err) as prog:
        task = prog.add_task(what, total=total)
        yield lambda n: prog.advance(task, n)


def replay(
    file: str = typer.Argument(..., metavar="FILE", help="packet file (records back to back) or classic pcap"),
    fmt: str = typer.Option(..., "--format", help="format of the records (gives the record size; any for a pcap)"),
    to: str = typer.Option(..., "--to", help="destination HOST:PORT"),
    rate: float = typer.Option(0.0, "--rate", help="packets per second (0 = as fast as possible)"),
    loop: int = typer.Option(1, "--loop", help="send the file this many times"),
    port: Optional[int] = typer.Option(None, "--port", help="pcap: only datagrams that were sent to this port"),
    json_out: bool = typer.Option(False, "--json", metavar="", help="print the summary as one JSON object"),
    interface: Optional[str] = typer.Option(None, "--interface", help="multicast: IPv4 address of the interface to send through"),
) -> None:
    """Send FILE's packets to --to at --rate, --loop times."""
    f = common.get_reader_format(fmt, "disk", "--format")
    host, dport, family = common.parse_hostport(to, "--to")
    common.positive(rate, "--rate", allow_zero=True)
    common.positive(loop, "--loop")
    packets = load_packets(file, f.params.record_size, port=port)
    common.interface_address(interface)
    sock = common.connect_sender(host, dport, family, interface)
    stop = {"flag": False}
    old = signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("flag", True))
    try:
        with progress_bar(len(packets) * loop, "replaying", enabled=not json_out) as advance:
            res = send_packets(sock, packets, rate=rate, loops=loop, progress=advance,
                               should_stop=lambda: stop["flag"])
    except KeyboardInterrupt:
        res = None
    finally:
        signal.signal(signal.SIGTERM, old)
        sock.close()
    if res is None:
        raise typer.Exit(130)
    summary = {"file": file, "kind": packets.kind, "to": common.endpoint(host, dport), "packets": len(packets),
               "loops": loop, "sent": res.sent, "failed": res.failed, "bytes": res.bytes,
               "seconds": round(res.seconds, 6),
               "rate_pps": round(res.sent / res.seconds, 1) if res.seconds > 0 else None}
    if res.refused:
        summary["refused"] = res.refused
    if res.last_error:
        summary["error"] = res.last_error
    common.warn_refused(res.refused, host, dport)
    if json_out:
        common.print_json(summary)
    else:
        common.out.print(", ".join(f"{k}={v}" for k, v in summary.items()), soft_wrap=True)
