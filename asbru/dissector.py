"""Wireshark Lua dissectors generated from format files.

:func:`lua_dissector` turns the header tables of the chosen formats (``HEADER``: field
names, offsets, sizes, wire types and byte order, bit fields) into one Lua script for
Wireshark/tshark (``tshark -X lua_script:asbru.lua``).  Each format becomes a protocol
``asbru_<name>`` whose fields are ``asbru_<name>.<field>`` (bit fields too), so
``tshark -T fields -e asbru_tbx.first_chan`` prints what asbru's own table says.

How a UDP datagram finds its dissector:

* ports: ``ports`` maps a UDP port to the formats expected there; the script registers one
  dispatcher per port that tries them in order (a format with a signature only takes a
  datagram its signature accepts; one without takes any datagram at least a header long);
* heuristics: every chosen format with a ``SIGNATURE`` (sync word, frame ID, packet sizes)
  is also tried on UDP traffic of any port, most specific signature first.

Nothing here is written per format: a new format file with a header table (and a
signature, if it has a sync word) gets a dissector without a line of code elsewhere.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

from . import formats
from .formats.spec import Field, FormatError, Signature

__all__ = ["lua_dissector", "DissectedFormat"]

# wire type -> (ProtoField constructor, little endian)
_PROTOFIELD = {
    "u8": ("uint8", False), "i8": ("int8", False),
    "u16be": ("uint16", False), "u16le": ("uint16", True), "i16be": ("int16", False),
    "u24be": ("uint24", False),
    "u32be": ("uint32", False), "u32le": ("uint32", True), "i32be": ("int32", False),
    "u64be": ("uint64", False), "u64le": ("uint64", True),
    "f64be": ("double", False), "bytes": ("bytes", False),
}


@dataclasses.dataclass(frozen=True)
class DissectedFormat:
    """One format as the dissector sees it."""
    name: str
    fields: tuple[Field, ...]
    header_size: int
    doc: str
    signature: Signature | None
    packet_size: int | None  # the only packet size, when the format string fixes it

    @property
    def proto(self) -> str:
        return f"asbru_{self.name}"


def _resolve(fmt: str) -> DissectedFormat:
    f = formats.get(fmt, "capture")
    doc = (f.module.__doc__ or f.name).strip().splitlines()[0]
    return DissectedFormat(name=f.name, fields=f.header.fields, header_size=f.header.size,
                           doc=doc.replace("``", ""), signature=getattr(f.module, "SIGNATURE", None),
                           packet_size=f.params.fixed_packet_size)


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _lua_bytes(b: bytes) -> str:
    return "{" + ", ".join(str(x) for x in b) + "}"


def _field_decls(df: DissectedFormat) -> list[str]:
    lines, seen = [], set()
    v = f"F_{df.name}"
    for f in df.fields:
        ctor, _ = _PROTOFIELD[f.wire]
        for name in [f.name] + [b.name for b in f.bits]:
            if name in seen:
                raise FormatError(f"format {df.name!r}: header field name {name!r} used twice")
            seen.add(name)
        abbrev = f"{df.proto}.{f.name}"
        if ctor == "bytes":
            lines.append(f"{v}.{f.name} = ProtoField.bytes({_lua_str(abbrev)}, {_lua_str(f.name)}, base.NONE, {_lua_str(f.doc)})")
        elif ctor == "double":
            lines.append(f"{v}.{f.name} = ProtoField.double({_lua_str(abbrev)}, {_lua_str(f.name)}, {_lua_str(f.doc)})")
        else:
            base = "base.HEX" if f.bits or f.name.startswith("sync") else "base.DEC"
            lines.append(f"{v}.{f.name} = ProtoField.{ctor}({_lua_str(abbrev)}, {_lua_str(f.name)}, {base}, nil, nil, {_lua_str(f.doc)})")
        for b in f.bits:
            if f.nbytes > 4:
                raise FormatError(f"format {df.name!r}: bit field {b.name!r} of a {f.nbytes}-byte field "
                                  "cannot be shown by a Lua dissector (masks are 32-bit)")
            mask = ((1 << b.width) - 1) << b.lsb
            lines.append(f"{v}.{b.name} = ProtoField.{ctor}({_lua_str(df.proto + '.' + b.name)}, "
                         f"{_lua_str(b.name)}, base.DEC, nil, 0x{mask:X}, {_lua_str(b.doc)})")
    return lines


def _signature_test(df: DissectedFormat) -> str:
    """A Lua boolean expression over ``tvb``: the format's signature and size rules."""
    sig = df.signature
    n = "tvb:len()"
    conds = [f"{n} >= {df.header_size}"]
    if df.packet_size is not None:
        conds.append(f"{n} == {df.packet_size}")
    if sig is not None:
        if sig.packet_sizes:
            conds.append("(" + " or ".join(f"{n} == {s}" for s in sig.packet_sizes) + ")")
        if sig.size_rule:
            h, m = sig.size_rule
            conds.append(f"{n} > {h} and ({n} - {h}) % {m} == 0")
        for off, alts in sig.alternatives():
            conds.append("(" + " or ".join(f"has_bytes(tvb, {off}, {_lua_bytes(w)})" for w in alts) + ")")
    return " and ".join(conds)


def _dissect_fn(df: DissectedFormat) -> list[str]:
    v = f"F_{df.name}"
    out = [f"local function looks_like_{df.name}(tvb)",
           f"    return {_signature_test(df)}",
           "end",
           f"local function dissect_{df.name}(tvb, pinfo, tree)",
           f"    if not looks_like_{df.name}(tvb) then return 0 end",
           f"    pinfo.cols.protocol = {_lua_str(df.proto.upper())}",
           f"    local t = tree:add(P_{df.name}, tvb(0, math.min(tvb:len(), {df.header_size})))"]
    for f in df.fields:
        _, le = _PROTOFIELD[f.wire]
        add = "add_le" if le else "add"
        rng = f"tvb({f.offset}, {f.nbytes})"
        out.append(f"    if tvb:len() >= {f.offset + f.nbytes} then")
        if f.bits:
            out.append(f"        local w = t:{add}({v}.{f.name}, {rng})")
            for b in f.bits:
                out.append(f"        w:{add}({v}.{b.name}, {rng})")
        else:
            out.append(f"        t:{add}({v}.{f.name}, {rng})")
        out.append("    end")
    out += [f"    if tvb:len() > {df.header_size} then",
            f"        t:add(tvb({df.header_size}), \"payload (\" .. (tvb:len() - {df.header_size}) .. \" bytes)\")",
            "    end",
            "    return tvb:len()",
            "end", ""]
    return out


def _specificity(df: DissectedFormat) -> tuple:
    sig = df.signature
    nbytes = sum(len(a[0]) for _, a in sig.alternatives()) if sig else 0
    return (-(bool(sig and sig.packet_sizes) or df.packet_size is not None), -nbytes,
            -bool(sig and sig.size_rule))


def lua_dissector(fmts: Iterable[str], ports: Mapping[int, Iterable[str]] | None = None) -> str:
    """The Lua source of a dissector for format strings ``fmts``; ``ports`` maps UDP ports
    to the format strings (among ``fmts``) expected there, tried in the order given."""
    chosen: dict[str, DissectedFormat] = {}
    by_string: dict[str, DissectedFormat] = {}
    for fmt in fmts:
        df = _resolve(fmt)
        if df.name in chosen and chosen[df.name] != df:
            raise FormatError(f"format {fmt!r}: another string of format {df.name!r} was given already")
        chosen.setdefault(df.name, df)
        by_string[fmt] = chosen[df.name]
    if not chosen:
        raise FormatError("no format given")
    ports = {int(p): [by_string[s] if s in by_string else _unknown(s, by_string) for s in names]
             for p, names in (ports or {}).items()}
    lines = ["-- Generated by `asbru dissector` from asbru's format files: do not edit;",
             "-- regenerate after a format changes.  Formats: " + ", ".join(chosen) + ".",
             "",
             "local function has_bytes(tvb, off, want)",
             "    if tvb:len() < off + #want then return false end",
             "    for i, b in ipairs(want) do",
             "        if tvb(off + i - 1, 1):uint() ~= b then return false end",
             "    end",
             "    return true",
             "end",
             ""]
    for df in chosen.values():
        lines.append(f"local P_{df.name} = Proto({_lua_str(df.proto)}, {_lua_str('asbru ' + df.name + ': ' + df.doc)})")
        lines.append(f"local F_{df.name} = P_{df.name}.fields")
        lines += _field_decls(df)
        lines += _dissect_fn(df)
        lines.append(f"P_{df.name}.dissector = function(tvb, pinfo, tree) return dissect_{df.name}(tvb, pinfo, tree) end")
        lines.append("")
    heur = sorted((df for df in chosen.values() if df.signature is not None), key=_specificity)
    if heur:
        lines.append("-- formats with a sync word are recognised on any UDP port; a format takes a")
        lines.append("-- datagram only if no more specific one (listed before it) would, whatever the")
        lines.append("-- order in which Wireshark tries the heuristics")
        for i, df in enumerate(heur):
            before = " or ".join(f"looks_like_{e.name}(tvb)" for e in heur[:i])
            lines += [f"P_{df.name}:register_heuristic(\"udp\", function(tvb, pinfo, tree)",
                      f"    if not looks_like_{df.name}(tvb){' or ' + before if before else ''} then return false end",
                      f"    dissect_{df.name}(tvb, pinfo, tree)",
                      "    return true",
                      "end)"]
        lines.append("")
    if ports:
        lines.append("-- formats expected on given UDP ports, tried in the order given")
        lines.append("local udp_port = DissectorTable.get(\"udp.port\")")
        for port, dfs in sorted(ports.items()):
            if len(dfs) == 1:
                lines += [f"udp_port:add({port}, P_{dfs[0].name})", ""]
                continue
            lines += [f"local P_port{port} = Proto(\"asbru_port{port}\", \"asbru formats on UDP port {port}\")",
                      f"P_port{port}.dissector = function(tvb, pinfo, tree)",
                      "    local n = 0"]
            for df in dfs:
                lines.append(f"    n = Dissector.get({_lua_str(df.proto)}):call(tvb, pinfo, tree); if n > 0 then return n end")
            lines += ["    return 0", "end", f"udp_port:add({port}, P_port{port})", ""]
    return "\n".join(lines) + "\n"


def _unknown(s: str, known: Mapping[str, DissectedFormat]) -> DissectedFormat:
    raise FormatError(f"port mapping names {s!r}, which is not among the formats given ({', '.join(known)})")
