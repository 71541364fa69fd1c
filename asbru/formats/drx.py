"""``drx`` -- LWA beamformer output: 4096 complex 4-bit samples of one tuning and polarisation.

A frame is exactly 4128 bytes: a 32-byte header and 4096 ``ci4`` bytes (re in the high
nibble).  The ring holds one time slot per frame time, samples interleaved by source:
``[sample 4096][src nsrc][1 byte]``.  Source = ``2 * (tuning - 1) + pol - src0``, so with
``src0 = 0`` and ``nsrc = 4`` the order is (T1 X, T1 Y, T2 X, T2 Y).  ``drx8`` (8-bit
samples) shares this file's decoder and placement.

Deliberate differences from Bifrost (docs/differences-from-bifrost.md, formats #1, #2, #4,
#5, #12), wire format unchanged:

* The ID byte is read as the byte at offset 4 (Bifrost read the low byte of a host-order
  word, which is the same byte on little-endian hosts only).
* Decimation 0 is INVALID (Bifrost divided by it first); a tuning field other than 1 or 2 is
  INVALID; a time tag below the time offset (or >= 2**63) is INVALID.
* Tuning words: a frame of tuning 1 says ``tuning`` (and -1 = "not said" for ``tuning1``), a
  frame of tuning 2 says ``tuning1``.  A sequence's configuration is the merge of both: the
  engine holds start-up frames until every CHANGE field has been said or a time slot's worth
  of frames has arrived (a stream of one tuning never says the other).  Bifrost's validity
  depended on sticky descriptor state of earlier packets and lost the first frames of
  tuning 1.
* Any ``nsrc`` is accepted (Bifrost: only 2 and 4); ``0 <= src < nsrc`` is checked.
* Beam: only the beam of the first header-valid frame is accepted; frames of other beams are
  INVALID (counted).  Bifrost ignored the beam field, so frames of two beams landed in the
  same ring slots.  Beam 0 (what Bifrost's writer emits) is an ordinary beam value here.
* Bit 6 of the ID byte (reserved; Bifrost's writer sets it for drx8) is ignored.
* ``place`` works from the descriptor and the payload length only, so zero-filling one source
  for one time slot touches only that source's bytes (Bifrost's blank-out walked a triangular
  pointer sequence and wrote past the gulp).
* The sequence callback's ``time_tag`` is the time tag of ``seq0``; ``tuning_word_0`` /
  ``tuning_word_1``: when the sequence's packets say one tuning only, its word is
  ``tuning_word_0`` and ``tuning_word_1`` is 0 (Bifrost's rule for ``nsrc == 2``); when they
  say both, tuning 1 then tuning 2.
"""
from __future__ import annotations

import numpy as np

from .spec import (BEAM, CFG_NSRC, CFG_SRC0, DECIMATION, H_DECIMATION, H_TUNING, INVALID,
                   PAYLOAD_OFFSET, PAYLOAD_SIZE, SEQ, SRC, TIME_TAG, TUNING, TUNING1,
                   VALID, BitField, Field, Signature, FormatError, FormatParams, Header, kernel)
from .spec import time_tag_at
from .spec import default_capture_config

NAME = "drx"

HEADER = Header([
    Field("sync", 0, "u32be", "Mark 5C sync word, bytes DE C0 DE 5C"),
    Field("drx_id", 4, "u8", "beam, tuning and polarisation",
          bits=(BitField("beam", 0, 3, "beam (LWA: 1-4; Bifrost's writer: 0)"),
                BitField("tuning", 3, 3, "tuning, 1 or 2"),
                BitField("reserved", 6, 1, "set by Bifrost's drx8 writer; ignored"),
                BitField("pol", 7, 1, "0 = X, 1 = Y"))),
    Field("frame_count", 5, "u24be", "not decoded (writer: 0)"),
    Field("seconds_count", 8, "u32be", "not decoded (writer: 0)"),
    Field("decimation", 12, "u16be", "sample rate = 196 MHz / decimation"),
    Field("time_offset", 14, "u16be", "T_nom in 196 MHz ticks, subtracted from time_tag"),
    Field("time_tag", 16, "u64be", "196 MHz ticks since 1970-01-01"),
    Field("tuning_word", 24, "u32be", "f = word * 196 MHz / 2**32"),
    Field("flags", 28, "u32be", "not decoded (writer: 0)"),
])
(get_drx_id, get_decimation, get_time_offset, get_time_tag, get_tuning_word) = HEADER.readers(
    "drx_id", "decimation", "time_offset", "time_tag", "tuning_word")
(put_drx_id, put_seconds_count, put_decimation, put_time_offset, put_time_tag,
 put_tuning_word, put_flags) = HEADER.writers(
    "drx_id", "seconds_count", "decimation", "time_offset", "time_tag", "tuning_word",
    "flags")

HEADER_SIZE = HEADER.size
SAMPLES = 4096
BYTES_PER_SAMPLE = 1
PAYLOAD = SAMPLES * BYTES_PER_SAMPLE
FRAME_SIZE = HEADER_SIZE + PAYLOAD
WRITE_DTYPE = "ci4"
ID_FLAG = 0            # OR-ed into the written ID byte (drx8: 0x40)
SIGNATURE = Signature(match=((0, b"\xde\xc0\xde\x5c"),), packet_sizes=(FRAME_SIZE,))

CHANGE = ("tuning", "tuning1", "decimation")
CALLBACK_FAMILY = "value"
CALLBACK_ARGS = ("seq0", "time_tag", "decimation", "tuning_word_0", "tuning_word_1", "nsrc")

ST_BEAM = 0  # decode state: 1 + the accepted beam; 0 = none seen yet


def matches(fmt: str) -> bool:
    """Bifrost selects DRX only for the exact string ``"drx"``."""
    return fmt == NAME


def parse(fmt: str, role: str) -> FormatParams:
    return parse_exact(fmt, role, NAME, PAYLOAD, SAMPLES, WRITE_DTYPE)


def parse_exact(fmt: str, role: str, name: str, payload: int, samples: int,
                dtype: str) -> FormatParams:
    """drx and drx8 are selected by their exact names and have fixed frame sizes."""
    if fmt != name:
        raise FormatError(f"format {fmt!r}: expected exactly {name!r}")
    return FormatParams(name=name, fmt=fmt, role=role, header_size=HEADER_SIZE,
                        payload_size=payload, record_size=HEADER_SIZE + payload,
                        fixed_packet_size=HEADER_SIZE + payload, samples_per_packet=samples,
                        write_dtype=dtype)


capture_config = default_capture_config


@kernel
def decode_frame(pkt, cfg, state, d, frame_size):
    """Shared by drx and drx8: everything but the frame size is the same."""
    if pkt.size != frame_size:
        return INVALID
    if pkt[0] != 0xDE or pkt[1] != 0xC0 or pkt[2] != 0xDE or pkt[3] != 0x5C:
        return INVALID
    ident = get_drx_id(pkt)
    beam = ident & 0x07
    tune = (ident >> 3) & 0x07
    pol = (ident >> 7) & 0x01
    if tune < 1 or tune > 2:
        return INVALID
    decim = get_decimation(pkt)
    if decim == 0:
        return INVALID
    t = get_time_tag(pkt) - get_time_offset(pkt)
    if t < 0:
        return INVALID
    src = 2 * (tune - 1) + pol - cfg[CFG_SRC0]
    if src < 0 or src >= cfg[CFG_NSRC]:
        return INVALID
    if state[ST_BEAM] == 0:
        state[ST_BEAM] = beam + 1
    elif state[ST_BEAM] != beam + 1:
        return INVALID  # another beam's frames would land in the same slots
    word = get_tuning_word(pkt)
    d[SEQ] = t // (decim * SAMPLES)
    d[SRC] = src
    d[TIME_TAG] = t
    d[DECIMATION] = decim
    d[BEAM] = beam
    if tune == 1:
        d[TUNING] = word
        d[TUNING1] = -1
    else:
        d[TUNING] = -1
        d[TUNING1] = word
    d[PAYLOAD_OFFSET] = HEADER_SIZE
    d[PAYLOAD_SIZE] = frame_size - HEADER_SIZE
    return VALID


@kernel
def place_interleaved(payload, d, slot, nsrc, bps):
    """Sample k of source ``src`` (``bps`` bytes) goes to ``(k * nsrc + src) * bps``.

    Samples that would not fit in ``slot`` are not written.  Strided slices rather than
    computed indices keep numba's per-element index checks out of the loop
    (``benchmarks/bench_formats_lwa_place.py`` compares the two).
    """
    src = d[SRC]
    if src < 0 or src >= nsrc or bps <= 0:
        return
    row = nsrc * bps
    room = slot.size - src * bps - bps
    if room < 0:
        return
    nsamp = min(payload.size // bps, room // row + 1)
    for b in range(bps):
        dst = slot[src * bps + b:: row]
        part = payload[b:: bps]
        for k in range(nsamp):
            dst[k] = part[k]


@kernel
def fill_frame(hdr, info, wcfg, seq, src, id_flag):
    """Bifrost's drx/drx8 writer: ``src`` is the full DRX ID byte, time tag = seq."""
    hdr[0] = 0xDE
    hdr[1] = 0xC0
    hdr[2] = 0xDE
    hdr[3] = 0x5C
    put_drx_id(hdr, (src & 0xBF) | id_flag)
    hdr[5] = 0
    hdr[6] = 0
    hdr[7] = 0
    put_seconds_count(hdr, 0)
    put_decimation(hdr, info[H_DECIMATION] & 0xFFFF)
    put_time_offset(hdr, 0)
    put_time_tag(hdr, seq)
    put_tuning_word(hdr, info[H_TUNING] & 0xFFFFFFFF)
    put_flags(hdr, 0)


@kernel
def decode(pkt, cfg, state, d):
    return decode_frame(pkt, cfg, state, d, FRAME_SIZE)


@kernel
def place(payload, d, slot, nsrc):
    place_interleaved(payload, d, slot, nsrc, BYTES_PER_SAMPLE)


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    fill_frame(hdr, info, wcfg, seq, src, ID_FLAG)


def callback_args(seq0: int, d: np.ndarray, nsrc: int) -> tuple:
    """``d`` is the sequence's merged configuration.  With one tuning said, its word comes
    first and the second is 0 (Bifrost's ``nsrc == 2`` rule); with both, tuning 1 then 2."""
    words = [int(w) for w in (d[TUNING], d[TUNING1]) if w >= 0] + [0, 0]
    return (int(seq0), time_tag_of(seq0, d), int(d[DECIMATION]), words[0], words[1], int(nsrc))


def time_tag_of(seq: int, d: np.ndarray) -> int:
    """Time tag (minus time offset) of frame ``seq``, keeping the sub-frame offset."""
    step = int(d[DECIMATION]) * SAMPLES
    if step <= 0:
        return 0
    return time_tag_at(seq, step, int(d[TIME_TAG]) - int(d[SEQ]) * step)


def write_config(params: FormatParams) -> np.ndarray:
    return np.zeros(1, dtype=np.int64)


def synth_recipe(params: FormatParams, nsrc: int) -> dict:
    """How ``asbru generate`` makes a valid stream: 19.6 MS/s (decimation 10), sources
    (tuning, polarisation) = (1, 0), (1, 1), (2, 0), (2, 1): the DRX ID byte has the tuning
    in bits 3-5 and the polarisation in bit 7."""
    step = 10 * SAMPLES
    return dict(reader=params.fmt, src0=0, seq0=1000 * step, seq_inc=step,
                src_value=lambda j: ((j // 2 + 1) << 3) | ((j % 2) << 7),
                info=lambda j: {"tuning": 0x20000000, "decimation": 10}, max_nsrc=4)
