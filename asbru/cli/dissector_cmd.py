"""``asbru dissector``: write a Wireshark Lua dissector for formats, from their header tables."""
from __future__ import annotations

from typing import List, Optional

import typer

from ..errors import ArgumentError


def _port_map(specs: List[str], fmts: List[str]) -> dict[int, list[str]]:
    """``FORMAT=PORT`` (that format on that port) or ``PORT`` (every format given)."""
    ports: dict[int, list[str]] = {}
    for spec in specs:
        fmt, sep, port = spec.rpartition("=")
        names = [fmt] if sep else list(fmts)
        if sep and fmt not in fmts:
            raise ArgumentError(f"--port {spec!r}: {fmt!r} is not one of the formats given ({', '.join(fmts)})")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ArgumentError(f"--port {spec!r}: expected PORT or FORMAT=PORT with PORT in 1..65535")
        ports.setdefault(int(port), [])
        ports[int(port)] += [n for n in names if n not in ports[int(port)]]
    return ports


def dissector(
    fmts: List[str] = typer.Argument(..., metavar="FORMAT...", help="format strings, e.g. tbx drx cor chips vdif"),
    out: Optional[str] = typer.Option(None, "-o", "--out", help="write the Lua script here (default: standard output)"),
    port: List[str] = typer.Option([], "--port", help="FORMAT=PORT, or PORT for every format given (repeatable); "
                                   "formats without a sync word are found by port only"),
) -> None:
    """Write a Wireshark Lua dissector for FORMATs: tshark -X lua_script:FILE -T fields -e asbru_tbx.first_chan ..."""
    from ..dissector import lua_dissector
    ports = _port_map(port, fmts)
    source = lua_dissector(fmts, ports)
    if out is None:
        typer.echo(source, nl=False)
        return
    try:
        with open(out, "w") as fh:
            fh.write(source)
    except OSError as exc:
        raise ArgumentError(f"-o {out!r}: cannot be written ({exc.strerror})") from None
