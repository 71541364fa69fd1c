"""The generated Wireshark dissector decodes asbru's formats as asbru does.

Packets of every writable format (asbru's writers, via the stream ``asbru generate`` makes)
go into one pcap (asbru's pcap writer); tshark decodes it with the Lua script
``asbru dissector`` generated from the header tables; every field tshark prints must equal
asbru's reading of the same packet (the header table, which test_header_tables.py ties to
the compiled decode and fill).  Formats with a sync word travel on a port the script does
not register, so they are found by the heuristic; the others on their own ports.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from asbru import formats
from asbru.cli.synth import make_stream, recipe_for
from asbru.dissector import lua_dissector
from asbru.pcap import read_payloads
from asbru.pcap_writer import write_pcap

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (Debian package tshark; make interop installs it)")

# a writer string and source count for every writable format (the registry is checked below)
WRITE = {"simple": ("simple", 1), "chips": ("chips_4", 2), "ibeam": ("ibeam2_4", 2),
         "pbeam": ("pbeam1_4", 2), "cor": ("cor_4", 3), "vdif": ("vdif_1056", 2),
         "tbn": ("tbn", 2), "drx": ("drx", 2), "drx8": ("drx8", 2), "tbx": ("tbx_12x64", 2),
         "ndp_tbf": ("ndp_tbf", 2), "tbf": ("tbf", 2), "vbeam": ("vbeam_4", 1),
         "snap2": ("snap2_4x8", 2), "example_beacon": ("example_beacon_64", 2)}
HEADERLESS = {"generic"}  # no header: nothing to dissect
HEURISTIC_PORT = 61999     # registered by nobody: sync-word formats are found by their signature


def writable():
    return [n for n in formats.list() if getattr(formats.module(n), "fill", None) is not None]


def test_every_writable_format_is_dissected():
    missing = [n for n in writable() if n not in WRITE and n not in HEADERLESS]
    assert not missing, f"no dissector test packets for {missing}"


def _packets():
    """(format name, writer string, list of packet bytes) per writable format."""
    out = []
    for name in writable():
        if name in HEADERLESS or name not in WRITE:
            continue
        fmt, nsrc = WRITE[name]
        f = formats.get(fmt, "write")
        ntime = 3 + recipe_for(f, nsrc).learn_steps  # vdif: a whole second before frames decode
        ps, _ = make_stream(f, nsrc, ntime, 0.0, 0, 0.0, 0.0, 7, for_file=False)
        out.append((name, fmt, [ps.packet(k) for k in range(len(ps))]))
    return out


def _tshark_fields(lua, pcap, fields):
    cmd = [TSHARK, "-n", "-X", f"lua_script:{lua}", "-r", str(pcap), "-T", "fields",
           "-E", "separator=\t", "-E", "occurrence=f", "-e", "frame.protocols"]
    for f in fields:
        cmd += ["-e", f]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return [line.split("\t") for line in res.stdout.splitlines()]


def _as_value(text: str, wire: str):
    if wire == "bytes":
        return bytes.fromhex(text.replace(":", ""))
    if wire == "f64be":
        return float(text)
    return int(text, 0)


@needs_tshark
def test_tshark_decodes_every_writable_format_like_asbru(tmp_path):
    groups = _packets()
    ports, payloads, port_of = {}, [], []
    next_port = 47000
    for name, fmt, pkts in groups:
        if getattr(formats.module(name), "SIGNATURE", None) is not None:
            port = HEURISTIC_PORT
        else:
            port = next_port
            ports[port] = [fmt]
            next_port += 1
        payloads += pkts
        port_of += [port] * len(pkts)
    lengths = np.array([len(p) for p in payloads], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    buf = np.frombuffer(b"".join(payloads), dtype=np.uint8)
    pcap = tmp_path / "all.pcap"
    write_pcap(pcap, buf, offsets, lengths, np.array(port_of))
    assert len(read_payloads(pcap).offsets) == len(payloads)   # asbru reads its own pcap back

    lua = tmp_path / "asbru.lua"
    lua.write_text(lua_dissector([fmt for _, fmt, _ in groups], ports))
    columns = []   # (format name, field name, wire type, tshark abbreviation)
    for name, fmt, _ in groups:
        for f in formats.module(name).HEADER.fields:
            columns.append((name, f.name, f.wire, f"asbru_{name}.{f.name}"))
            for b in f.bits:
                columns.append((name, b.name, "bits", f"asbru_{name}.{b.name}"))
    rows = _tshark_fields(lua, pcap, [c[3] for c in columns])
    assert len(rows) == len(payloads)

    k = 0
    compared = {}
    for name, fmt, pkts in groups:
        header = formats.module(name).HEADER
        for pkt in pkts:
            row = rows[k]
            k += 1
            assert f"asbru_{name}" in row[0].split(":"), f"packet {k - 1} ({fmt}) dissected as {row[0]}"
            mine = header.unpack(pkt)
            for i, (cname, field, wire, abbrev) in enumerate(columns, start=1):
                if cname != name:
                    assert row[i] == "", f"{fmt}: {abbrev} filled for a {name} packet"
                    continue
                assert row[i] != "", f"{fmt}: tshark printed no {abbrev}"
                got = _as_value(row[i], "u32" if wire == "bits" else wire)
                want = mine[field]
                assert got == want, f"{fmt} packet {k - 1}: {abbrev} = {row[i]}, asbru reads {want}"
                compared[name] = compared.get(name, 0) + 1
    assert set(compared) == {n for n, _, _ in groups}


def _asbru(*args):
    return subprocess.run([sys.executable, "-m", "asbru", *args], capture_output=True, text=True, timeout=300)


@needs_tshark
def test_generate_pcap_and_dissector_cli(tmp_path):
    pcap, lua = tmp_path / "tbx.pcap", tmp_path / "asbru.lua"
    res = _asbru("generate", "tbx_12x64", "--nsrc", "3", "--ntime", "2", "--seed", "1",
                 "--pcap", str(pcap), "--pcap-port", "4015")
    assert res.returncode == 0, res.stderr
    res = _asbru("dissector", "tbx", "chips", "--port", "chips=4016", "-o", str(lua))
    assert res.returncode == 0, res.stderr
    rows = _tshark_fields(lua, pcap, ["udp.dstport", "asbru_tbx.first_chan", "asbru_tbx.nchan",
                                      "asbru_tbx.id", "asbru_tbx.time_tag"])
    assert [r[1:] for r in rows] == [["4015", str(1000 + 12 * j), "12", "8", str(8192 * (1000 + i))]
                                     for i in range(2) for j in range(3)]


@pytest.mark.parametrize("args,needle", [
    (["dissector", "nosuch"], "nosuch"),
    (["dissector", "tbx", "--port", "drx=4000"], "drx"),
    (["dissector", "tbx", "--port", "70000"], "PORT"),
    (["generate", "tbx_12x64", "--ntime", "1", "--pcap", "/nonexistent/dir/x.pcap"], "cannot be written"),
    (["generate", "tbx_12x64", "--ntime", "1", "--pcap", "x.pcap", "--out", "y"], "exactly one"),
])
def test_cli_errors_are_one_line(args, needle):
    res = _asbru(*args)
    assert res.returncode == 2 and needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_generated_lua_has_every_table_field():
    src = lua_dissector(["tbx", "cor", "vdif"], {4015: ["vdif"]})
    for name in ("tbx", "cor", "vdif"):
        for f in formats.module(name).HEADER.fields:
            assert f'"asbru_{name}.{f.name}"' in src
            for b in f.bits:
                assert f'"asbru_{name}.{b.name}"' in src
    assert "udp_port:add(4015" in src and 'register_heuristic("udp"' in src
