"""``chips``: LEDA/ADP "CHIPS" F-engine packets, 32 ci4 inputs x nchan channels.

Wire format identical to Bifrost's (docs/formats.md, chips).  Deliberate differences:

* ``DiskReader('chips_N')`` reads records of 16 + 32*N bytes (what the writer emits);
  Bifrost reads 16 + 4*N (docs/differences-from-bifrost.md,
  formats #3), so Bifrost users wrote ``chips_<8N>`` as a
  workaround.  asbru accepts that string too, and reads it the asbru way, i.e. records of
  16 + 32*8N bytes: pass the real channel count (``chips_N``).
* The header seq is 1-based: ``seq = header - 1`` as in Bifrost, but a header seq of 0
  is INVALID instead of wrapping to 2**64 - 1 (docs/formats.md, chips).  The writer writes the
  seq it is given, unchanged, as Bifrost does (a round trip shifts seq by -1).
* The payload must be exactly 32 * nchan bytes and nchan > 0 (docs/differences-from-bifrost.md, formats #18); a
  DiskReader with ``chips_N`` also requires nchan == N.  Network captures look only at
  the prefix, as Bifrost's do (``chips_N`` captures any nchan).
"""
from __future__ import annotations

import numpy as np

from .spec import (CFG_NSRC, CFG_SRC0, CHAN0, INVALID, NCHAN, NSRC, PAYLOAD_OFFSET,
                   PAYLOAD_SIZE, SEQ, SRC, TUNING, VALID, Field, FormatError, FormatParams,
                   Header, H_CHAN0, H_NCHAN, H_NSRC, H_TUNING, channel_format, copy_bytes, copy_unchecked,
                   kernel, parse_int_suffix, stream_pair32)
from .spec import new_capture_config

NAME = "chips"
HEADER = Header([
    Field("roach", 0, "u8", "source (board) number, 1-based"),
    Field("gbe", 1, "u8", "GbE link / tuning; not decoded"),
    Field("nchan", 2, "u8", "channels in this packet"),
    Field("nsubband", 3, "u8", "not decoded (writer: 1)"),
    Field("subband", 4, "u8", "not decoded (writer: 0)"),
    Field("nroach", 5, "u8", "not decoded (writer: nsrc)"),
    Field("chan0", 6, "u16be", "first channel in this packet"),
    Field("seq", 8, "u64be", "spectrum counter, 1-based"),
])
HSIZE = HEADER.size
NINPUT = 32  # bytes per channel: 16 stands x 2 pols x ci4
WRITE_DTYPE = "ci4"

CFG_NCHAN = 2  # expected nchan (0 = any)

get_roach, get_gbe, get_nchan, get_chan0, get_seq = HEADER.readers(
    "roach", "gbe", "nchan", "chan0", "seq")
put_roach, put_gbe, put_nchan, put_nsubband, put_subband, put_nroach, put_chan0, put_seq = \
    HEADER.writers("roach", "gbe", "nchan", "nsubband", "subband", "nroach", "chan0", "seq")

CHANGE = ("chan0", "nchan")
CALLBACK_FAMILY = "pointer"
CALLBACK_ARGS = ("seq0", "chan0", "nchan", "nsrc")


def matches(fmt: str) -> bool:
    return fmt.startswith("chips")


def parse(fmt: str, role: str) -> FormatParams:
    return channel_format(fmt, role, name=NAME, header_size=HSIZE,
                          nchan=None if fmt == "chips" else _parse_nchan(fmt),
                          bytes_per_chan=NINPUT, samples_per_chan=NINPUT, write_dtype=WRITE_DTYPE)


def _parse_nchan(fmt: str) -> int:
    nchan = parse_int_suffix(fmt, "chips_", "N")
    if nchan > 255:
        raise FormatError(f"format {fmt!r}: N (channels per packet) must be 1..255 (the header nchan is one byte)")
    return nchan


def capture_config(params: FormatParams, nsrc: int, src0: int) -> np.ndarray:
    cfg = new_capture_config(nsrc, src0)
    cfg[CFG_NCHAN] = params.extra.get("nchan", 0)
    return cfg


@kernel
def decode(pkt, cfg, state, d):
    if pkt.size < HSIZE:
        return INVALID
    nchan = get_nchan(pkt)
    if nchan == 0 or (cfg[CFG_NCHAN] != 0 and nchan != cfg[CFG_NCHAN]):
        return INVALID
    if pkt.size != HSIZE + NINPUT * nchan:
        return INVALID
    hseq = get_seq(pkt)
    if hseq <= 0:  # 0 would wrap; >= 2**63 reads negative
        return INVALID
    src = get_roach(pkt) - 1 - cfg[CFG_SRC0]
    if src < 0 or src >= cfg[CFG_NSRC]:
        return INVALID
    d[SEQ] = hseq - 1
    d[SRC] = src
    d[NSRC] = cfg[CFG_NSRC]
    d[NCHAN] = nchan
    d[CHAN0] = get_chan0(pkt)
    d[TUNING] = get_gbe(pkt)
    d[PAYLOAD_OFFSET] = HSIZE
    d[PAYLOAD_SIZE] = NINPUT * nchan
    return VALID


@kernel
def place(payload, d, slot, nsrc):
    # layout [chan][src][32 inputs]: channel c of source s at (c*nsrc + s)*32
    src = d[SRC]
    nchan = d[NCHAN]
    if src < 0 or src >= nsrc or nchan <= 0:
        return
    if ((nchan - 1) * nsrc + src + 1) * NINPUT <= slot.size and nchan * NINPUT <= payload.size:
        for c in range(nchan):  # every chunk fits: checked once, copied inline
            copy_unchecked(slot, (c * nsrc + src) * NINPUT, payload, c * NINPUT, NINPUT)
        return
    for c in range(nchan):
        copy_bytes(slot, (c * nsrc + src) * NINPUT, payload, c * NINPUT, NINPUT)


@kernel
def place_row(addrs, d, slot, nsrc):
    # all sources of one time slot: each channel's row of the slot ([src][32 inputs], nsrc*32
    # contiguous bytes) is written in address order, two sources per cache line, with
    # streaming stores -- measured here 2.1x faster than 32-byte copies per packet, which
    # make the CPU read every line of the slot from memory before half-writing it
    nchan = d[NCHAN]
    if nchan <= 0 or nsrc % 2 != 0 or slot.size != nsrc * nchan * NINPUT:
        return False
    base = slot.ctypes.data
    if base % 64 != 0:
        return False
    rowb = nsrc * NINPUT
    for c in range(nchan):
        row = base + c * rowb
        off = c * NINPUT
        for s in range(0, nsrc, 2):
            stream_pair32(row + s * NINPUT, addrs[s] + off, addrs[s + 1] + off)
    return True


def callback_args(seq0: int, d: np.ndarray, nsrc: int) -> tuple:
    return (int(seq0), int(d[CHAN0]), int(d[NCHAN]), int(nsrc))


def time_tag_of(seq: int, d: np.ndarray) -> int:
    return int(seq)  # pointer family: the callback decides; default seq0


def write_config(params: FormatParams) -> np.ndarray:
    return np.array([params.extra["nchan"]], dtype=np.int64)


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    if hdr.size < HSIZE:
        return
    put_roach(hdr, src + 1)
    put_gbe(hdr, info[H_TUNING])
    put_nchan(hdr, info[H_NCHAN])
    put_nsubband(hdr, 1)
    put_subband(hdr, 0)
    put_nroach(hdr, info[H_NSRC])
    put_chan0(hdr, info[H_CHAN0])
    put_seq(hdr, seq)


def synth_recipe(params: FormatParams, nsrc: int) -> dict:
    """How ``asbru generate`` makes a valid stream: boards 1..nsrc, one channel block.  The
    header seq is 1-based: writer seq 1001 is decoded as 1000."""
    nchan = params.extra["nchan"]
    return dict(reader=params.fmt, src0=0, seq0=1001, seq_inc=1, src_value=lambda j: j,
                info=lambda j: {"nsrc": nsrc, "nchan": nchan, "chan0": 0}, max_nsrc=255)
