"""``asbru rings``: list, inspect and clean up the shared-memory rings in /dev/shm.

    asbru rings                  every shared ring: size, writer, readers, state (live/stale)
    asbru rings NAME             one ring: geometry, positions, writer, readers, recent sequences
    asbru rings --remove-stale   remove every ring no live process uses (after a crash)
    asbru rings --remove NAME    remove one ring (refused while a live process uses it, unless --force)

Reading the state takes no lock and attaches nothing, so it never holds a ring alive.
"""
from __future__ import annotations

from typing import Any, Optional

import typer

from ..errors import ArgumentError
from ..ring import shm
from . import common


def ring_rows() -> list[dict[str, Any]]:
    """One summary per shared ring (also used by ``asbru top``)."""
    out = []
    for info in shm.iter_infos():
        if not info.get("valid"):
            out.append({"name": info["path"], "state": "invalid", "size": info["size"]})
            continue
        readers = [r for r in info["readers"] if r["alive"]]
        out.append({
            "name": info["name"], "state": "stale" if shm.is_stale(info) else "live",
            "size": info["size"], "capacity": info["capacity"], "contiguous": info["contiguous"],
            "head": info["head"], "writer_pid": info["writer_pid"], "writing": info["writing"],
            "writer_alive": info["writer_alive"], "writer_died": info["writer_died"],
            "nsequence": info["nsequence"], "nreaders": len(readers),
            "readers": [{k: r[k] for k in ("pid", "guarantee", "lag_bytes", "nspan", "nbyte")} for r in readers],
            "writer_blocked_seconds": round(info["writer_blocked_seconds"], 3),
        })
    return out


def _mib(n: Optional[int]) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def ring_table(rs: list[dict[str, Any]]):
    from rich.table import Table
    t = Table(title=f"shared rings ({len(rs)})", title_justify="left")
    for col in ("name", "state", "MiB", "writer", "sequences", "head MiB", "readers (pid:lag MiB, g=guaranteed)"):
        t.add_column(col, justify="left" if col in ("name", "state", "writer") or col.startswith("readers") else "right")
    for r in rs:
        if r["state"] == "invalid":
            t.add_row(r["name"], "invalid", f"{r['size'] / 2**20:.1f}", "-", "-", "-", "-")
            continue
        if r["writing"]:
            writer = f"{r['writer_pid']}" + ("" if r["writer_alive"] else " (dead)")
        else:
            writer = "died" if r["writer_died"] else ("ended" if r["writer_pid"] else "-")
        readers = " ".join(f"{x['pid']}{'g' if x['guarantee'] else ''}:{_mib(x['lag_bytes'])}"
                           for x in r["readers"]) or "-"
        t.add_row(r["name"], r["state"], f"{r['size'] / 2**20:.1f}", writer, str(r["nsequence"]),
                  f"{r['head'] / 2**20:.1f}", readers)
    return t


def rings(
    name: Optional[str] = typer.Argument(None, help="a ring to inspect (default: list them all)"),
    remove_stale: bool = typer.Option(False, "--remove-stale", help="remove every ring no live process uses"),
    remove: Optional[str] = typer.Option(None, "--remove", help="remove this ring"),
    force: bool = typer.Option(False, "--force", help="with --remove: even while live processes use it"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """List, inspect and clean up shared-memory rings (Ring(space='shm')) in /dev/shm."""
    if remove_stale:
        gone = shm.remove_stale()
        if json_out:
            common.print_json({"removed": gone})
        else:
            common.out.print(f"removed {len(gone)} stale ring(s)" + (": " + ", ".join(gone) if gone else ""))
        return
    if remove is not None:
        info = shm.inspect(remove)
        if not force and not shm.is_stale(info):
            live = sorted({u["pid"] for u in info["users"] if u["alive"]}
                          | ({info["writer_pid"]} if info["writer_alive"] else set()))
            raise ArgumentError(f"--remove: ring {remove!r} is used by live process(es) "
                                f"{', '.join(map(str, live))}; stop them or add --force")
        shm.remove(remove)
        if json_out:
            common.print_json({"removed": [remove]})
        else:
            common.out.print(f"removed {remove}")
        return
    if name is not None:
        info = shm.inspect(name)
        info["state"] = "stale" if shm.is_stale(info) else "live"
        if json_out:
            common.print_json(info)
            return
        o = common.out
        o.print(f"{info['name']} ({info['path']}, {info['state']}): capacity {info['capacity']} B, contiguous "
                f"{info['contiguous']} B, nringlet {info['nringlet']}")
        o.print(f"  head {info['head']}  tail {info['tail']}  reserve head {info['reserve_head']}  "
                f"writer blocked {info['writer_blocked_seconds']:.3f} s")
        w = info["writer_pid"]
        o.print(f"  writer: {'-' if w is None else w} "
                f"({'writing' if info['writing'] else 'ended'}{', alive' if info['writer_alive'] else ''}"
                f"{', died' if info['writer_died'] else ''})")
        for r in info["readers"]:
            o.print(f"  reader pid {r['pid']} ({'alive' if r['alive'] else 'dead'}, "
                    f"{'guaranteed' if r['guarantee'] else 'unguaranteed'}): sequence {r['sequence']}, "
                    f"lag {r['lag_bytes']} B, {r['nspan']} spans, {r['nbyte']} B")
        for s in info["sequences"]:
            o.print(f"  sequence {s['id']} {s['name']!r} time_tag {s['time_tag']}: bytes "
                    f"{s['begin']}..{'(open)' if s['end'] is None else s['end']}, header {s['header_size']} B")
        return
    rs = ring_rows()
    if json_out:
        common.print_json({"rings": rs})
    else:
        common.out.print(ring_table(rs))
