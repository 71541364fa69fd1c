"""``simple``: an 8-byte sequence number followed by 2048 ci16 samples (a test format).

Wire format identical to Bifrost's (docs/formats.md, simple).  Deliberate differences:

* The packet must be exactly 8 + 8192 bytes.  Bifrost copies 8192 bytes whatever the
  packet length, so a short packet pulls stale receive-buffer bytes into the ring; asbru
  rejects it as INVALID (docs/differences-from-bifrost.md, formats #14, #18).
* A header seq >= 2**63 is INVALID (asbru keeps time indices in int64; such a value is
  not a real counter and would wrap the engine's slot arithmetic).
* The source is always 0, as in Bifrost (the header has no source field).  ``nsrc > 1`` is
  accepted but sources 1.. never receive data: their slots are zero-filled as missing.
  Bifrost instead reports descriptor nsrc = 1 and blanks the other sources with a
  layout that is only consistent for nsrc = 1.
"""
from __future__ import annotations

import numpy as np

from .spec import (CFG_NSRC, CHAN0, INVALID, NCHAN, NSRC, PAYLOAD_OFFSET,
                   PAYLOAD_SIZE, SEQ, SRC, VALID, Field, FormatError, FormatParams, Header,
                   kernel)
from .spec import default_capture_config
from .spec import place_source_block

NAME = "simple"
HEADER = Header([Field("seq", 0, "u64be", "time index (sequence number)")])
get_seq, = HEADER.readers("seq")
put_seq, = HEADER.writers("seq")
HSIZE = HEADER.size
NSAMPLES = 2048
PAYLOAD = NSAMPLES * 4  # ci16: int16 re + int16 im, little endian
WRITE_DTYPE = "ci16"

CHANGE: tuple[str, ...] = ()  # a simple stream never changes configuration
CALLBACK_FAMILY = "pointer"
CALLBACK_ARGS = ("seq0", "chan0", "nchan", "nsrc")


def matches(fmt: str) -> bool:
    """Bifrost selects this format for any string beginning with ``simple``."""
    return fmt.startswith("simple")


def parse(fmt: str, role: str) -> FormatParams:
    if not matches(fmt):
        raise FormatError(f"format {fmt!r}: expected 'simple'")
    return FormatParams(name=NAME, fmt=fmt, role=role, header_size=HSIZE, payload_size=PAYLOAD,
                        record_size=HSIZE + PAYLOAD, fixed_packet_size=HSIZE + PAYLOAD,
                        samples_per_packet=NSAMPLES, write_dtype=WRITE_DTYPE)


capture_config = default_capture_config


@kernel
def decode(pkt, cfg, state, d):
    if pkt.size != HSIZE + PAYLOAD:
        return INVALID
    seq = get_seq(pkt)
    if seq < 0 or cfg[CFG_NSRC] < 1:
        return INVALID
    d[SEQ] = seq
    d[SRC] = 0
    d[NSRC] = cfg[CFG_NSRC]
    d[NCHAN] = 0
    d[CHAN0] = 0
    d[PAYLOAD_OFFSET] = HSIZE
    d[PAYLOAD_SIZE] = PAYLOAD
    return VALID


# ring layout [nsrc][P]; source 0 only in practice: the whole payload at src * P
place = place_source_block


def callback_args(seq0: int, d: np.ndarray, nsrc: int) -> tuple:
    # Bifrost never fills chan0/nchan for simple: they reach the callback as 0
    return (int(seq0), 0, 0, int(nsrc))


def time_tag_of(seq: int, d: np.ndarray) -> int:
    # pointer family: the callback decides; without one Bifrost uses seq0
    return int(seq)


def write_config(params: FormatParams) -> np.ndarray:
    return np.zeros(1, dtype=np.int64)


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    if hdr.size < HSIZE:
        return
    put_seq(hdr, seq)


def synth_recipe(params: FormatParams, nsrc: int) -> dict:
    """How ``asbru generate`` makes a valid stream: source 0 only, seq from 1000."""
    return dict(reader=params.fmt, src0=0, seq0=1000, seq_inc=1, src_value=lambda j: 0,
                info=lambda j: {}, max_nsrc=1)
