"""``asbru inspect``: decode a packet file or a pcap and summarise it.

The decode of every packet is one compiled batch call (``asbru.formats.batch``); the
summary (per-source counts, seq range, missing slots, duplicates) is numpy over the
descriptor columns.  Only the displayed rows (the first ``--limit``) are built in Python.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import typer

from ..formats import spec
from ..recorder import PacketSet, load_packets
from . import common

DEFAULT_NSRC = 65536  # decode window when --nsrc is not given: every source id a header can say

_STATUS = {spec.VALID: "valid", spec.INVALID: "invalid", spec.HOLD: "held"}


CHUNK = 1 << 20  # packets decoded per call: bounds the descriptor memory (192 B/packet)


def analyze(packets: PacketSet, fmt, nsrc: int | None, src0: int = 0, limit: int = 20) -> dict[str, Any]:
    """The inspect summary of ``packets`` decoded as ``fmt`` (a ``Format``).

    Large files are decoded in chunks of ``CHUNK`` packets with one decoder state for the
    whole file; packets the decoder holds (still learning a stream parameter) are decoded
    again after each chunk until they resolve, as the capture engine does.  Only (seq, src)
    of the valid packets is kept across chunks.
    """
    from ..formats.batch import decode_records
    n = len(packets)
    buf = np.asarray(packets.buf).view(np.ndarray) if packets.buf.size else np.zeros(1, np.uint8)
    decode_nsrc = nsrc if nsrc is not None else DEFAULT_NSRC
    fn = decode_records(fmt)
    cfg = fmt.capture_config(decode_nsrc, src0)
    state = np.zeros(spec.NSTATE, dtype=np.int64)
    offsets = np.ascontiguousarray(packets.offsets, dtype=np.int64)
    lengths = np.ascontiguousarray(packets.lengths, dtype=np.int64)
    seqs, srcs = [], []
    nvalid = 0
    held_idx = np.zeros(0, np.int64)     # packet indices still held
    first_n = min(n, limit)
    desc_first = np.full((first_n, spec.NDESC), -1, np.int64)
    status_first = np.full(first_n, spec.INVALID, np.int64)

    def _run(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = np.full((idx.size, spec.NDESC), -1, np.int64)
        st = np.full(idx.size, spec.INVALID, np.int64)
        if idx.size:
            fn(buf, offsets[idx], lengths[idx], cfg, state, d, st)
        return d, st

    def _take(idx: np.ndarray, d: np.ndarray, st: np.ndarray) -> np.ndarray:
        nonlocal nvalid
        ok = st == spec.VALID
        seqs.append(d[ok, spec.SEQ])
        srcs.append(d[ok, spec.SRC])
        nvalid += int(ok.sum())
        early = idx < first_n
        desc_first[idx[early]] = d[early]
        status_first[idx[early]] = st[early]
        return idx[st == spec.HOLD]

    for a in range(0, n, CHUNK):
        idx = np.arange(a, min(n, a + CHUNK), dtype=np.int64)
        d, st = _run(idx)
        still = _take(idx, d, st)
        if held_idx.size or still.size:
            again = np.concatenate([held_idx, still])
            d, st = _run(again)
            held_idx = _take(again, d, st)
    held = int(held_idx.size)
    seq = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
    src = np.concatenate(srcs) if srcs else np.zeros(0, np.int64)
    desc, status = desc_first, status_first
    result: dict[str, Any] = {
        "format": fmt.params.fmt, "kind": packets.kind, "packets": n, "valid": nvalid,
        "invalid": n - nvalid, "held": held, "duplicates": 0, "missing": 0,
        "seq_min": None, "seq_max": None, "per_source": {},
    }
    if nvalid:
        seq_min, seq_max = int(seq.min()), int(seq.max())
        pairs = np.unique(np.stack([seq, src], axis=1), axis=0)
        nsrc_eff = nsrc if nsrc is not None else int(src.max()) + 1
        slots = (seq_max - seq_min + 1) * nsrc_eff
        srcs, counts = np.unique(src, return_counts=True)
        result.update(seq_min=seq_min, seq_max=seq_max, duplicates=nvalid - int(pairs.shape[0]),
                      missing=int(slots - pairs.shape[0]), nsrc=nsrc_eff,
                      per_source={str(int(s)): int(c) for s, c in zip(srcs, counts)})
    if packets.kind == "records" and packets.short_tail:
        result["short_tail_bytes"] = packets.short_tail
    if packets.kind == "pcap":
        result["pcap_skipped_records"] = packets.skipped
        result["pcap_truncated"] = packets.truncated
    rows = []
    hsize = fmt.header.size
    for k in range(min(limit, n, status.shape[0])):
        raw = packets.packet(k)
        row: dict[str, Any] = {"index": k, "length": len(raw), "status": _STATUS.get(int(status[k]), "?")}
        if status[k] == spec.VALID:
            row["seq"] = int(desc[k, spec.SEQ])
            row["src"] = int(desc[k, spec.SRC])
        if len(raw) >= hsize:
            for key, value in fmt.header.unpack(raw).items():
                name = key if key not in row else f"hdr_{key}"  # header 'seq' is not the decoded seq
                row[name] = value.hex() if isinstance(value, (bytes, bytearray)) else value
        rows.append(row)
    result["rows"] = rows
    return result


def inspect(
    file: str = typer.Argument(..., metavar="FILE", help="a packet file (records back to back) or a classic pcap"),
    fmt: str = typer.Option(..., "--format", help="format string used to decode (e.g. chips_132, tbn, simple)"),
    json_out: bool = typer.Option(False, "--json", metavar="", help="print one JSON object"),
    limit: int = typer.Option(20, "--limit", help="decoded headers to show"),
    nsrc: Optional[int] = typer.Option(None, "--nsrc", help="sources the decoder accepts (default: any; missing slots then count sources 0..max seen)"),
    src0: int = typer.Option(0, "--src0", help="first source id (subtracted from the header's)"),
    port: Optional[int] = typer.Option(None, "--port", help="pcap: only datagrams sent to this UDP port"),
) -> None:
    """Decode FILE as --format: header table of the first rows, per-source counts, gaps, duplicates."""
    f = common.get_reader_format(fmt, "disk", "--format")
    common.positive(limit, "--limit", allow_zero=True)
    if nsrc is not None:
        common.positive(nsrc, "--nsrc")
    common.positive(src0, "--src0", allow_zero=True)
    packets = load_packets(file, f.params.record_size, port=port)
    res = analyze(packets, f, nsrc, src0, limit)
    res = {"file": file, **res}
    hint = ""
    if res["packets"] and not res["valid"] and not res["held"]:
        # nothing decodes: most likely the wrong --format; say what the file looks like
        from .guess import guess
        with open(file, "rb") as fh:
            head = fh.read(1 << 20)
        g = guess(head, f.name) if packets.kind == "records" else None
        hint = f"no record decodes as {fmt}"
        if g is not None:
            res["looks_like"] = g[0]
            hint += f"; it looks like {g[0]} ({g[1]} of the first {g[2]} records decode)"
    if json_out:
        common.print_json(res)
    else:
        _print_text(res)
    if hint:
        common.err.print(f"asbru: error: {hint}", markup=False, soft_wrap=True)
        raise typer.Exit(1)


def _print_text(res: dict[str, Any]) -> None:
    from rich.table import Table
    rows = res["rows"]
    if rows:
        cols = list(dict.fromkeys(k for r in rows for k in r))
        t = Table(title=f"{res['file']}: first {len(rows)} of {res['packets']} packets ({res['format']})",
                  title_justify="left")
        for c in cols:
            t.add_column(c, justify="left" if c == "status" else "right", overflow="fold")
        for r in rows:
            t.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in cols))
        common.out.print(t)
    # headings as plain lines: a table title would wrap to the (narrow) table's width
    common.out.print("summary", style="bold")
    s = Table(show_header=False)
    for key in ("packets", "valid", "invalid", "held", "duplicates", "missing", "seq_min", "seq_max",
                "short_tail_bytes", "pcap_skipped_records"):
        if key in res:
            s.add_row(key, "-" if res[key] is None else f"{res[key]:,}")
    common.out.print(s)
    if res["per_source"]:
        common.out.print("packets per source", style="bold")
        p = Table()
        p.add_column("src", justify="right")
        p.add_column("packets", justify="right")
        for k, v in res["per_source"].items():
            p.add_row(k, f"{v:,}")
        common.out.print(p)
