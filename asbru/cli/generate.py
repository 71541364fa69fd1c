"""``asbru generate``: synthetic traffic of a format with injected faults, plus its truth file."""
from __future__ import annotations

import json
from typing import Optional

import typer

from ..errors import ArgumentError
from . import common
from .replay import progress_bar
from .synth import make_stream

MAX_BYTES = 4 << 30


def generate(
    fmt: str = typer.Argument(..., metavar="FORMAT", help="writer format string, e.g. simple, chips_4, tbn, drx, cor_4, pbeam1_4"),
    to: Optional[str] = typer.Option(None, "--to", help="send to HOST:PORT over UDP"),
    out: Optional[str] = typer.Option(None, "--out", help="write a packet file"),
    nsrc: int = typer.Option(1, "--nsrc", help="number of sources"),
    ntime: int = typer.Option(..., "--ntime", help="number of time steps (packets per source)"),
    rate: float = typer.Option(0.0, "--rate", help="packets per second when sending (0 = as fast as possible)"),
    loss: float = typer.Option(0.0, "--loss", help="probability a packet is dropped"),
    reorder: int = typer.Option(0, "--reorder", help="reorder window in packets (0/1 = in order)"),
    duplicate: float = typer.Option(0.0, "--duplicate", help="probability a packet is sent twice"),
    corrupt: float = typer.Option(0.0, "--corrupt", help="probability a packet is made invalid (header overwritten)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="random seed (payloads and faults)"),
    truth: Optional[str] = typer.Option(None, "--truth", help="write the truth JSON here"),
    json_out: bool = typer.Option(False, "--json", metavar="", help="print the truth (without packet lists) as JSON"),
    interface: Optional[str] = typer.Option(None, "--interface", help="multicast: IPv4 address of the interface to send through"),
    pcap: Optional[str] = typer.Option(None, "--pcap", help="write a pcap file (Ethernet/IPv4/UDP datagrams to --pcap-port)"),
    pcap_port: int = typer.Option(4015, "--pcap-port", help="--pcap: the datagrams' UDP destination port"),
) -> None:
    """Make synthetic FORMAT traffic with faults; --truth records what was sent, dropped, ..."""
    if sum(x is not None for x in (to, out, pcap)) != 1:
        raise ArgumentError("--to/--out/--pcap: give exactly one of --to HOST:PORT, --out FILE or --pcap FILE")
    if not 0 < pcap_port < 65536:
        raise ArgumentError(f"--pcap-port: {pcap_port} is not a UDP port (1..65535)")
    f = common.get_format(fmt, "write")
    common.positive(nsrc, "--nsrc")
    common.positive(ntime, "--ntime")
    common.positive(rate, "--rate", allow_zero=True)
    common.positive(reorder, "--reorder", allow_zero=True)
    for value, opt in ((loss, "--loss"), (duplicate, "--duplicate"), (corrupt, "--corrupt")):
        common.probability(value, opt)
    dest = common.parse_hostport(to, "--to") if to is not None else None
    common.interface_address(interface)
    rec = (f.params.payload_size or 0) + f.header.size
    if rec * nsrc * ntime > MAX_BYTES:
        raise ArgumentError(f"--ntime/--nsrc: {nsrc}x{ntime} packets of {rec} bytes exceed "
                            f"{MAX_BYTES >> 30} GiB; generate in pieces")
    packets, t = make_stream(f, nsrc, ntime, loss, reorder, duplicate, corrupt, seed,
                             for_file=out is not None)
    if out is not None:
        try:
            with open(out, "wb") as fh:
                fh.write(memoryview(packets.buf))
        except OSError as exc:
            raise ArgumentError(f"--out {out!r}: cannot be written ({exc.strerror})") from None
        t["out"] = out
    elif pcap is not None:
        from ..pcap_writer import write_pcap
        write_pcap(pcap, packets.buf, packets.offsets, packets.lengths, pcap_port)
        t["pcap"] = pcap
    else:
        from ..recorder import send_packets
        host, port, family = dest
        sock = common.connect_sender(host, port, family, interface)
        with progress_bar(len(packets), "sending", enabled=not json_out) as advance:
            res = send_packets(sock, packets, rate=rate, progress=advance)
        sock.close()
        t.update(to=common.endpoint(host, port), send_failed=res.failed, send_seconds=round(res.seconds, 6))
        if res.refused:
            t["send_refused"] = res.refused
        if res.last_error:
            t["send_error"] = res.last_error
        common.warn_refused(res.refused, host, port)
    if truth is not None:
        try:
            with open(truth, "w") as fh:
                json.dump(t, fh)
        except OSError as exc:
            raise ArgumentError(f"--truth {truth!r}: cannot be written ({exc.strerror})") from None
    short = {k: v for k, v in t.items() if not k.endswith("_packets")}
    if json_out:
        common.print_json(short)
    else:
        keys = ["sent", "dropped", "duplicated", "reordered", "corrupted", "out", "to",
                "send_failed", "send_refused"]
        common.out.print(", ".join(f"{k}={short[k]}" for k in keys if k in short), soft_wrap=True)
