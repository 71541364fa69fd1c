"""``drx8`` -- DRX with 8-bit samples: 4096 ``ci8`` samples (int8 re, int8 im) per frame.

A frame is exactly 8224 bytes (32-byte DRX header + 8192 payload bytes).  Header, decoding
rules, sources and ring order are those of ``drx`` (see ``asbru/formats/drx.py``); the ring
layout is ``[sample 4096][src nsrc][re, im]``.  The writer sets bit 6 of the ID byte, as
Bifrost's does.

Deliberate difference from Bifrost (docs/differences-from-bifrost.md, formats #2): the frame size test uses
8224 bytes.  Bifrost compared against DRX's 4128, so it never accepted a drx8 frame.
All of drx's differences apply as well.
"""
from __future__ import annotations

from .drx import (CALLBACK_ARGS, CALLBACK_FAMILY, CHANGE, HEADER, HEADER_SIZE, SAMPLES,
                  callback_args, capture_config, decode_frame, fill_frame, parse_exact,
                  place_interleaved, synth_recipe, time_tag_of, write_config)
from .spec import FormatParams, Signature, kernel

NAME = "drx8"
BYTES_PER_SAMPLE = 2
PAYLOAD = SAMPLES * BYTES_PER_SAMPLE
FRAME_SIZE = HEADER_SIZE + PAYLOAD
WRITE_DTYPE = "ci8"
ID_FLAG = 0x40
SIGNATURE = Signature(match=((0, b"\xde\xc0\xde\x5c"),), packet_sizes=(FRAME_SIZE,))

__all__ = ["NAME", "HEADER", "CHANGE", "CALLBACK_FAMILY", "CALLBACK_ARGS", "WRITE_DTYPE",
           "matches", "parse", "capture_config", "decode", "place", "fill", "callback_args",
           "time_tag_of", "write_config", "SIGNATURE", "synth_recipe"]


def matches(fmt: str) -> bool:
    """Bifrost selects DRX8 only for the exact string ``"drx8"``."""
    return fmt == NAME


def parse(fmt: str, role: str) -> FormatParams:
    return parse_exact(fmt, role, NAME, PAYLOAD, SAMPLES, WRITE_DTYPE)


@kernel
def decode(pkt, cfg, state, d):
    return decode_frame(pkt, cfg, state, d, FRAME_SIZE)


@kernel
def place(payload, d, slot, nsrc):
    place_interleaved(payload, d, slot, nsrc, BYTES_PER_SAMPLE)


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    fill_frame(hdr, info, wcfg, seq, src, ID_FLAG)
