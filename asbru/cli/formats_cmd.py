"""``asbru formats``: every registered format (plugins included) and its header field table."""
from __future__ import annotations

from typing import Any, Optional

import typer

from ..errors import ArgumentError
from . import common


def _describe(name: str) -> dict[str, Any]:
    from .. import formats
    mod = formats.module(name)
    fields = mod.HEADER.table()
    doc = (getattr(mod, "__doc__", "") or "").strip().splitlines()
    info: dict[str, Any] = {
        "name": name,
        "summary": doc[0] if doc else "",
        "header_size": mod.HEADER.size,
        "writable": getattr(mod, "fill", None) is not None,
        "callback_family": getattr(mod, "CALLBACK_FAMILY", ""),
        "change": list(getattr(mod, "CHANGE", ())),
        "module": mod.__name__,
        "header": fields,
    }
    return info


def formats(
    name: Optional[str] = typer.Argument(None, metavar="[NAME]", help="a format name or string (e.g. chips or chips_132)"),
    json_out: bool = typer.Option(False, "--json", metavar="", help="print one JSON object"),
) -> None:
    """List every format with its header field table (or one format with NAME)."""
    from .. import formats as registry
    from ..formats.spec import FormatError
    names = registry.list()
    if name is not None:
        if name in names:
            names = [name]
        else:
            try:
                names = [registry.get(name, "capture").name]
            except FormatError:
                try:
                    names = [registry.get(name, "write").name]
                except FormatError:
                    raise ArgumentError(f"NAME: unknown format {name!r}; known formats: "
                                        f"{', '.join(registry.list())}") from None
    described = [_describe(n) for n in names]
    if json_out:
        common.print_json({"formats": described} if name is None else described[0])
        return
    from rich.table import Table
    for info in described:
        t = Table(title=f"{info['name']} — {info['summary']}", title_justify="left")
        for col, just in (("offset", "right"), ("size", "right"), ("field", "left"),
                          ("type", "left"), ("meaning", "left")):
            t.add_column(col, justify=just)
        for f in info["header"]:
            t.add_row(str(f["offset"]), str(f["size"]), f["name"], f["type"], f["doc"])
            for b in f["bits"]:
                t.add_row("", "", f"  .{b['name']}", f"bits {b['lsb']}..{b['lsb'] + b['width'] - 1}",
                          b["doc"])
        t.caption = (f"header {info['header_size']} bytes; "
                     f"{'writable' if info['writable'] else 'capture only'}; "
                     f"new sequence on change of: {', '.join(info['change']) or 'never'}")
        common.out.print(t)
