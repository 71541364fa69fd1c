"""Helpers for format tests: Bifrost's golden vectors, HeaderInfo replay, reference placement.

* :func:`load_vector` reads ``<vectors>/<name>`` (tests/helpers/vectors_path.py: ``$ASBRU_VECTORS``).
* :func:`write_vector_bytes` replays a vector's ``write.json`` through
  :func:`asbru.formats.batch.encode_packets` — the bytes asbru's DiskWriter would write.
* :func:`decode_file_to_slots` decodes a file record by record and places every valid
  packet into per-seq time slots (a reference of ring placement independent of the
  capture engine; keyed by seq, so the engine's choice of seq0 does not matter).
* :func:`compare_with_bifrost` checks those slots against the ring bytes Bifrost's
  DiskReader produced, for every (seq, src) that Bifrost's ``verify.json`` marks ``match``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from asbru import formats
from asbru.formats import batch, spec

from helpers.vectors_path import VECTORS, need


@dataclasses.dataclass
class Read:
    """One ``read_<tag>`` directory: Bifrost's DiskReader result."""
    tag: str
    path: Path
    read: dict[str, Any]
    verify: dict[str, Any] | None
    rings: list[np.ndarray]  # seq<i>_ring.npy, uint8 1-D


@dataclasses.dataclass
class Vector:
    name: str
    path: Path
    input: np.ndarray
    output: bytes
    write: dict[str, Any]
    reads: dict[str, Read]

    @property
    def fmt(self) -> str:
        return self.write["format"]


def load_vector(name: str) -> Vector:
    """Everything in one vector directory (input.npy, output.dat, write.json, read_*);
    skips the calling test, with the reason, when the vectors are not available."""
    path = need(VECTORS / name / "input.npy", f"Bifrost vector {name!r}").parent
    reads: dict[str, Read] = {}
    for rdir in sorted(path.glob("read_*")):
        read = json.loads((rdir / "read.json").read_text())
        vpath = rdir / "verify.json"
        verify = json.loads(vpath.read_text()) if vpath.exists() else None
        rings = []
        i = 0
        while (rdir / f"seq{i}_ring.npy").exists():
            rings.append(np.load(rdir / f"seq{i}_ring.npy"))
            i += 1
        tag = rdir.name[len("read_"):]
        reads[tag] = Read(tag, rdir, read, verify, rings)
    return Vector(name=name, path=path, input=np.load(path / "input.npy"),
                  output=(path / "output.dat").read_bytes(),
                  write=json.loads((path / "write.json").read_text()), reads=reads)


# ---------------------------------------------------------------------------------------
# HeaderInfo replay

def _wrap(value: int, bits: int, signed: bool) -> int:
    value &= (1 << bits) - 1
    if signed and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


# Bifrost's HeaderInfo setter -> (HeaderInfo array field, C width, signed)
_SETTERS = {
    "set_nsrc": ("nsrc", 32, True),
    "set_nchan": ("nchan", 32, True),
    "set_chan0": ("chan0", 32, True),
    "set_tuning": ("tuning", 32, True),
    "set_gain": ("gain", 16, False),
    "set_decimation": ("decimation", 32, False),
    "set_tuning1": ("tuning1", 32, True),
    "set_beam": ("beam", 32, True),
}


def apply_setters(info: np.ndarray, setters: list) -> None:
    for name, value in setters:
        field, bits, signed = _SETTERS[name]
        info[spec.HEADERINFO_FIELDS.index(field)] = _wrap(int(value), bits, signed)


_SLICE = re.compile(r"^input\[(.*)\]$")


def _slice_of(expr: str) -> tuple:
    """``"input[0:12, 0:1, :]"`` -> a tuple of slices (no eval)."""
    m = _SLICE.match(expr.strip())
    if not m:
        raise ValueError(f"cannot parse data slice {expr!r}")
    out = []
    for part in m.group(1).split(","):
        part = part.strip()
        if ":" in part:
            bounds = [int(x) if x.strip() else None for x in part.split(":")]
            out.append(slice(*bounds))
        else:
            out.append(int(part))
    return tuple(out)


def write_vector_bytes(fmt_string: str, write_json: dict[str, Any], input: np.ndarray) -> bytes:
    """The bytes asbru writes for the calls of a vector's ``write.json``."""
    fmt = formats.get(fmt_string, "write")
    info = np.zeros(spec.NINFO, dtype=np.int64)
    apply_setters(info, write_json.get("header_setters_initial", []))
    out = []
    framecount = 0  # one writer object: its frame counter runs across calls
    for call in write_json["calls"]:
        apply_setters(info, call.get("setters_before_call", []))
        data = input[_slice_of(call["data"])]
        out.append(batch.encode_packets(fmt, info, call["seq0"], call["seq_increment"],
                                        call["src0"], call["src_increment"], data, framecount))
        framecount += data.shape[0]
    return b"".join(out)


# ---------------------------------------------------------------------------------------
# Reference placement

def decode_file_to_slots(fmt: str | formats.Format, data: bytes, nsrc: int, src0: int = 0,
                         record_size: int | None = None) -> dict[int, np.ndarray]:
    """seq -> time slot bytes (uint8, nsrc * P), decoding ``data`` as fixed-size records.

    Every VALID packet is placed with the format's ``place``; slots that no packet touched
    stay zero (asbru zero-fills).  P = the payload size of the first valid packet.
    """
    f = formats.get(fmt, "disk") if isinstance(fmt, str) else fmt
    rsize = record_size or f.params.record_size
    if not rsize:
        raise ValueError(f"format {f.params.fmt!r} has no fixed record size; pass record_size")
    buf, offsets, lengths = batch.split_records(data, rsize)
    desc, status = batch.decode_buffer(f, buf, offsets, lengths, nsrc, src0)
    valid = np.flatnonzero(status == spec.VALID)
    slots: dict[int, np.ndarray] = {}
    if valid.size == 0:
        return slots
    p = int(desc[valid[0], spec.PAYLOAD_SIZE])
    for k in valid:
        d = desc[k]
        seq = int(d[spec.SEQ])
        slot = slots.get(seq)
        if slot is None:
            slot = slots[seq] = np.zeros(nsrc * p, dtype=np.uint8)
        po = int(offsets[k] + d[spec.PAYLOAD_OFFSET])
        payload = buf[po: po + int(d[spec.PAYLOAD_SIZE])]
        f.place(payload, d, slot, nsrc)
    return slots


def decode_file(fmt: str | formats.Format, data: bytes, nsrc: int, src0: int = 0,
                record_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors, statuses) of every record of ``data``."""
    f = formats.get(fmt, "disk") if isinstance(fmt, str) else fmt
    buf, offsets, lengths = batch.split_records(data, record_size or f.params.record_size)
    return batch.decode_buffer(f, buf, offsets, lengths, nsrc, src0)


def source_mask(fmt: formats.Format, d: np.ndarray, src: int, nsrc: int, slot_size: int) -> np.ndarray:
    """Bytes of a time slot that belong to source ``src`` (placing an all-ones payload)."""
    dd = d.copy()
    dd[spec.SRC] = src
    probe = np.zeros(slot_size, dtype=np.uint8)
    fmt.place(np.full(int(d[spec.PAYLOAD_SIZE]), 0xFF, dtype=np.uint8), dd, probe, nsrc)
    return probe.astype(bool)


@dataclasses.dataclass
class Comparison:
    checked: int      # (seq, src) pairs Bifrost marked match and asbru compared
    mismatched: list  # (seq, src) pairs whose bytes differ
    missing: list     # (seq, src) pairs Bifrost has but asbru decoded no slot for

    @property
    def ok(self) -> bool:
        return self.checked > 0 and not self.mismatched and not self.missing


def compare_with_bifrost(fmt: str | formats.Format, vector: Vector, tag: str,
                         slots: dict[int, np.ndarray] | None = None) -> Comparison:
    """Compare asbru's reference placement with Bifrost's ring for read ``tag``.

    ``slots`` defaults to :func:`decode_file_to_slots` of the vector's output.dat with the
    read's nsrc/src0 (decoded with ``fmt``, which may differ from Bifrost's reader string
    where Bifrost's is wrong, e.g. chips).
    """
    read = vector.reads[tag]
    rspec = read.read["spec"]
    nsrc, src0 = int(rspec["nsrc"]), int(rspec["src0"])
    f = formats.get(fmt, "disk") if isinstance(fmt, str) else fmt
    if slots is None:
        slots = decode_file_to_slots(f, vector.output, nsrc, src0)
    desc, status = decode_file(f, vector.output, nsrc, src0)
    valid = np.flatnonzero(status == spec.VALID)
    d0 = desc[valid[0]] if valid.size else None
    checked, mismatched, missing = 0, [], []
    assert read.verify is not None, f"{vector.name}/read_{tag} has no verify.json"
    for sequence in read.verify["sequences"]:
        ring = read.rings[sequence["sequence"]]
        nslots = int(sequence["nslots"])
        if nslots == 0:
            continue
        slot_size = ring.size // nslots
        masks = {}
        for s in sequence["slots"]:
            seq = int(s["seq"])
            k = int(s["k"])
            ring_slot = ring[k * slot_size:(k + 1) * slot_size]
            for src, verdict in enumerate(s["by_src"]):
                if verdict != "match":
                    continue
                mine = slots.get(seq)
                if mine is None or d0 is None:
                    missing.append((seq, src))
                    continue
                if mine.size != slot_size:
                    mismatched.append((seq, src))
                    continue
                if src not in masks:
                    masks[src] = source_mask(f, d0, src, nsrc, slot_size)
                m = masks[src]
                checked += 1
                if not np.array_equal(mine[m], ring_slot[m]):
                    mismatched.append((seq, src))
    return Comparison(checked, mismatched, missing)


# (vector, read tag, asbru reader string); chips: asbru reads chips_N as the writer wrote it
CASES = [
    ("simple", "simple", "simple"),
    ("chips", "clean", "chips_4"),
    ("chips", "clean_slot3", "chips_4"),
    ("tbn", "clean", "tbn"),
    ("drx", "clean", "drx"),
    ("drx_2src", "clean", "drx"),
    ("drx8", "clean", "drx8"),
    ("ibeam", "clean", "ibeam2_4"),
    ("ibeam1_2src", "clean", "ibeam1_4"),
    ("pbeam", "clean", "pbeam_4"),
    ("cor", "clean", "cor_4"),
    ("vdif", "clean", "vdif_1056"),
]
