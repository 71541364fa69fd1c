"""``example_beacon`` -- a made-up format: the worked example of docs/adding-a-format.md.

A beacon packet is a 16-byte big-endian header and ``payload_length`` bytes of payload.
Every source sends one packet per sequence number; the ring holds one time slot per
sequence number with the sources' payloads side by side: ``[src nsrc][payload]``.

Format strings: ``example_beacon`` (capture: any payload length) and ``example_beacon_N``
(N = payload bytes per packet: the record size of a file is 16 + N; the writer needs it).
"""
from __future__ import annotations

import numpy as np

from asbru.formats.spec import (CFG_NSRC, CFG_SRC0, INVALID, NCFG, PAYLOAD_OFFSET,
                                PAYLOAD_SIZE, SEQ, SRC, TIME_TAG, VALID, Field, FormatError,
                                FormatParams, Header, copy_to_ring, kernel, parse_int_suffix)

NAME = "example_beacon"

MAGIC = 0x42434E31  # the bytes "BCN1"

HEADER = Header([
    Field("magic", 0, "u32be", "always the bytes 'BCN1'"),
    Field("source", 4, "u16be", "sender id, 0-based"),
    Field("payload_length", 6, "u16be", "payload bytes after the header"),
    Field("seq", 8, "u64be", "packet sequence number (one per time slot)"),
])
get_magic, get_source, get_payload_length, get_seq = HEADER.readers(
    "magic", "source", "payload_length", "seq")
put_magic, put_source, put_payload_length, put_seq = HEADER.writers(
    "magic", "source", "payload_length", "seq")

HEADER_SIZE = 16
WRITE_DTYPE = "u8"


def matches(fmt: str) -> bool:
    return fmt == NAME or fmt.startswith(NAME + "_")


def parse(fmt: str, role: str) -> FormatParams:
    payload = None
    if fmt != NAME:
        payload = parse_int_suffix(fmt, NAME + "_", "N (payload bytes)")
        if payload > 0xFFFF:
            raise FormatError(f"format {fmt!r}: N must be at most 65535 (a 16-bit length)")
    elif role != "capture":
        raise FormatError(f"format {fmt!r}: role {role!r} needs '{NAME}_N' (N = payload bytes)")
    return FormatParams(name=NAME, fmt=fmt, role=role, header_size=HEADER_SIZE,
                        payload_size=payload,
                        record_size=None if payload is None else HEADER_SIZE + payload,
                        samples_per_packet=payload, write_dtype=WRITE_DTYPE)


def capture_config(params: FormatParams, nsrc: int, src0: int) -> np.ndarray:
    cfg = np.zeros(NCFG, dtype=np.int64)
    cfg[CFG_NSRC] = nsrc
    cfg[CFG_SRC0] = src0
    return cfg


@kernel
def decode(pkt, cfg, state, d):
    if pkt.size < HEADER_SIZE:
        return INVALID
    if get_magic(pkt) != MAGIC:
        return INVALID
    length = get_payload_length(pkt)
    if length == 0 or pkt.size != HEADER_SIZE + length:
        return INVALID
    seq = get_seq(pkt)
    if seq < 0:
        return INVALID
    src = get_source(pkt) - cfg[CFG_SRC0]
    if src < 0 or src >= cfg[CFG_NSRC]:
        return INVALID
    d[SEQ] = seq
    d[SRC] = src
    d[TIME_TAG] = seq
    d[PAYLOAD_OFFSET] = HEADER_SIZE
    d[PAYLOAD_SIZE] = length
    return VALID


@kernel
def place(payload, d, slot, nsrc):
    src = d[SRC]
    if src < 0 or src >= nsrc:
        return
    copy_to_ring(slot, src * payload.size, payload, 0, payload.size)


CHANGE = ("payload_size",)
CALLBACK_FAMILY = "value"
CALLBACK_ARGS = ("seq0", "time_tag", "payload_size", "nsrc")


def callback_args(seq0: int, d: np.ndarray, nsrc: int) -> tuple:
    return (int(seq0), time_tag_of(seq0, d), int(d[PAYLOAD_SIZE]), int(nsrc))


def time_tag_of(seq: int, d: np.ndarray) -> int:
    return int(seq)


def write_config(params: FormatParams) -> np.ndarray:
    return np.array([params.payload_size], dtype=np.int64)


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    put_magic(hdr, MAGIC)
    put_source(hdr, src & 0xFFFF)
    put_payload_length(hdr, wcfg[0] & 0xFFFF)
    put_seq(hdr, seq)
