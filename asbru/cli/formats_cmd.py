"""``asbru formats``: every registered format (plugins included) and its header field table."""
from __future__ import annotations

from typing import Any, Optional

import typer

from ..errors import ArgumentError
from . import common


def _plain(doc: str) -> str:
    """A module docstring's first sentence as plain text: no reST markup (``name``,
    :func:`x`), no repeated format name, one line."""
    import re
    para = doc.strip().split("\n\n")[0]
    text = " ".join(para.split())
    text = re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", text)
    text = re.sub(r"``([^`]*)``", r"\1", text)
    text = re.sub(r"^[\w.]+\s*(?:--|:|—)\s*", "", text)   # "chips -- LEDA ..." -> "LEDA ..."
    end = text.find(". ")
    return text[:end + 1] if end > 0 else text


def _describe(name: str) -> dict[str, Any]:
    from .. import formats
    mod = formats.module(name)
    fields = mod.HEADER.table()
    doc = _plain(getattr(mod, "__doc__", "") or "")
    example = bool(getattr(mod, "EXAMPLE", False)) or name.startswith("example")
    info: dict[str, Any] = {
        "name": name,
        "summary": doc,
        "example": example,
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
    if name is None:
        # the list: one line per format; `asbru formats NAME` shows a header table
        t = Table(title="formats (`asbru formats NAME` for the header table)", title_justify="left")
        for col in ("name", "header", "writable", "description"):
            t.add_column(col, justify="right" if col == "header" else "left")
        for info in described:
            kind = "(example plug-in, not a telescope format) " if info["example"] else ""
            t.add_row(info["name"], f"{info['header_size']} B", "yes" if info["writable"] else "no",
                      kind + info["summary"])
        common.out.print(t)
        return
    for info in described:
        kind = " (worked example of a plug-in, not a telescope format)" if info["example"] else ""
        t = Table(title=f"{info['name']} — {info['summary']}{kind}", title_justify="left")
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
