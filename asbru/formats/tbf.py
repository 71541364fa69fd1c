"""``tbf``: LWA-SV ADP transient buffer, frequency domain: 12 channels x 256 stands x 2 pols ci4.

The writer is Bifrost's, byte for byte (docs/formats.md, tbf): any string beginning
with ``tbf``; the ``src`` of ``send()`` goes into ``first_chan`` (callers use
``src_increment = 12``), HeaderInfo nsrc into the nstand field, the per-writer frame
counter into the 24-bit frame count; payload fixed at 6144 bytes.

asbru adds a reader (Bifrost has none) so that files can be read back:

* Strings ``tbf`` or ``tbf_T``: T = time-tag ticks between consecutive spectra
  (default 7840 = 196 MHz / 25 kHz, LWA-SV's channel width).  ``seq = time_tag // T``;
  the remainder (the stream's phase) is kept so that time tags are reproduced exactly.
* Sources are channel blocks: ``src = (first_chan - src0) / 12``, so pass the first
  channel of the capture as ``src0`` (e.g. 1000 for blocks 1000, 1012, ...).  A
  first_chan that is not ``src0`` plus a multiple of 12 is INVALID.
* Ring slot: ``[src][12 chan][256 stand][2 pol]`` = ``[chan][stand][pol]`` over all
  ``12 * nsrc`` channels (copy of each payload at ``src * 6144``).
* Sync word, ID 0x01 and the 6168-byte packet size are checked.  No configuration change
  is ever reported (the header carries nothing that could change).
"""
from __future__ import annotations

import numpy as np

from .spec import (CFG_NSRC, CFG_SRC0, CHAN0, INVALID, NCHAN, NSRC, PAYLOAD_OFFSET,
                   PAYLOAD_SIZE, SEQ, SRC, TIME_TAG, VALID, X1, X2, Field, FormatError,
                   FormatParams, Header, H_NSRC, Signature, kernel)
from .spec import split_time_tag, time_tag_at
from .spec import new_capture_config
from .spec import place_source_block

NAME = "tbf"
HEADER = Header([
    Field("sync", 0, "u32be", "Mark 5C sync word, bytes DE C0 DE 5C"),
    Field("id", 4, "u8", "0x01 = TBF"),
    Field("frame_count", 5, "u24be", "writer frame counter (24 bits)"),
    Field("seconds_count", 8, "u32be", "not used (writer: 0)"),
    Field("first_chan", 12, "u16be", "first of the 12 channels (the writer's src)"),
    Field("nstand", 14, "u16be", "HeaderInfo nsrc (ICD: unassigned)"),
    Field("time_tag", 16, "u64be", "ticks of the 196 MHz clock"),
])
(get_sync, get_id, get_first_chan, get_time_tag) = HEADER.readers(
    "sync", "id", "first_chan", "time_tag")
(put_sync, put_id, put_frame_count, put_seconds_count, put_first_chan, put_nstand,
 put_time_tag) = HEADER.writers(
    "sync", "id", "frame_count", "seconds_count", "first_chan", "nstand", "time_tag")
HSIZE = HEADER.size
NCHAN_PKT = 12
SIGNATURE = Signature(match=((0, b"\xde\xc0\xde\x5c"), (4, b"\x01")), packet_sizes=(24 + 6144,))
PAYLOAD = 6144  # 12 chan x 256 stand x 2 pol x ci4
WRITE_DTYPE = "ci4"
SYNC = 0xDEC0DE5C
TBF_ID = 0x01
DEFAULT_TICKS = 7840  # 196 MHz / 25 kHz

CFG_TICKS = 2

CHANGE: tuple[str, ...] = ()
# the descriptor's spare slots this format uses, by name (spec.SPARE_SLOTS)
PHASE = X1          # the time tag's remainder within one seq step (for time_tag_of)
TICKS_PER_SEQ = X2  # time-tag ticks per seq step
SLOTS = {"phase": PHASE, "ticks_per_seq": TICKS_PER_SEQ}
CALLBACK_FAMILY = "value"
CALLBACK_ARGS = ("seq0", "time_tag", "chan0", "nchan", "nsrc")


def matches(fmt: str) -> bool:
    return fmt.startswith("tbf")


def parse(fmt: str, role: str) -> FormatParams:
    ticks = DEFAULT_TICKS
    if role != "write":  # Bifrost's writer takes any 'tbf...' string; the reader is asbru's
        if fmt != "tbf":
            tail = fmt[3:]
            if not (tail.startswith("_") and tail[1:].isdigit() and int(tail[1:]) > 0):
                raise FormatError(f"format {fmt!r}: expected 'tbf' or 'tbf_T' (T = time-tag ticks per spectrum, > 0)")
            ticks = int(tail[1:])
    return FormatParams(name=NAME, fmt=fmt, role=role, header_size=HSIZE, payload_size=PAYLOAD,
                        record_size=HSIZE + PAYLOAD, fixed_packet_size=HSIZE + PAYLOAD,
                        samples_per_packet=PAYLOAD, write_dtype=WRITE_DTYPE,
                        extra={"ticks": ticks, "nchan": NCHAN_PKT})


def capture_config(params: FormatParams, nsrc: int, src0: int) -> np.ndarray:
    cfg = new_capture_config(nsrc, src0)
    cfg[CFG_TICKS] = params.extra["ticks"]
    return cfg


@kernel
def decode_frame(pkt, cfg, d, frame_id, payload):
    """Shared by ADP TBF and NDP TBF (``ndp_tbf.py``): they differ in ID and stand count."""
    if pkt.size != HSIZE + payload:
        return INVALID
    if get_sync(pkt) != SYNC or get_id(pkt) != frame_id:
        return INVALID
    ticks = cfg[CFG_TICKS]
    if ticks <= 0:
        return INVALID
    time_tag = get_time_tag(pkt)
    if time_tag < 0:
        return INVALID
    rel = get_first_chan(pkt) - cfg[CFG_SRC0]
    if rel < 0 or rel % NCHAN_PKT != 0:
        return INVALID
    src = rel // NCHAN_PKT
    if src >= cfg[CFG_NSRC]:
        return INVALID
    d[SEQ], d[PHASE] = split_time_tag(time_tag, ticks)
    d[SRC] = src
    d[NSRC] = cfg[CFG_NSRC]
    d[NCHAN] = NCHAN_PKT
    d[CHAN0] = cfg[CFG_SRC0]
    d[TIME_TAG] = time_tag
    d[TICKS_PER_SEQ] = ticks
    d[PAYLOAD_OFFSET] = HSIZE
    d[PAYLOAD_SIZE] = payload
    return VALID


@kernel
def decode(pkt, cfg, state, d):
    return decode_frame(pkt, cfg, d, TBF_ID, PAYLOAD)


# ring layout [src = 12-channel block][12 chan][256 stand][2 pol][ci4]: the whole payload at src * P
place = place_source_block


def time_tag_of(seq: int, d: np.ndarray) -> int:
    return time_tag_at(seq, d[TICKS_PER_SEQ], d[PHASE])


def callback_args(seq0: int, d: np.ndarray, nsrc: int) -> tuple:
    return (int(seq0), time_tag_of(seq0, d), int(d[CHAN0]), NCHAN_PKT * int(nsrc), int(nsrc))


def write_config(params: FormatParams) -> np.ndarray:
    return np.zeros(1, dtype=np.int64)


@kernel
def fill_frame(hdr, seq, src, framecount, frame_id, nstand):
    """Shared by ADP TBF and NDP TBF: ``src`` to first_chan, ``nstand`` to its field."""
    if hdr.size < HSIZE:
        return
    put_sync(hdr, SYNC)
    put_id(hdr, frame_id)
    put_frame_count(hdr, framecount & 0xFFFFFF)
    put_seconds_count(hdr, 0)
    put_first_chan(hdr, src)
    put_nstand(hdr, nstand)
    put_time_tag(hdr, seq)


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    fill_frame(hdr, seq, src, framecount, TBF_ID, info[H_NSRC])


def proclog_type(params: FormatParams) -> str:
    """The writer's proclog "type" string: Bifrost's ``tbf256`` (its vbeam writer says
    "tbf" too, a bug asbru does not keep: vbeam reports "vbeam")."""
    return "tbf256"


def synth_recipe(params: FormatParams, nsrc: int) -> dict:
    """How ``asbru generate`` makes a valid stream: 12-channel blocks from channel 1000
    (the reader's src0), one spectrum of the reader's default ticks per time step."""
    return dict(reader=NAME, src0=1000,
                seq0=1000 * DEFAULT_TICKS, seq_inc=DEFAULT_TICKS,
                src_value=lambda j: 1000 + NCHAN_PKT * j, info=lambda j: {"nsrc": 256})
