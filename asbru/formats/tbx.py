"""``tbx`` -- LWA NDP transient buffer, frequency domain (the successor of TBF).

A TBX frame is a 28-byte big-endian header and ``nchan x nstand x 2 pols`` ``ci4`` bytes
(real part in the high nibble), ``[chan][stand][pol]``.  The header says its own shape:
``nstand`` and ``nchan`` are fields, ``first_chan`` is a 32-bit channel number and the
frame ID is 0x08 (the top byte of the frame count word).  The LWA Software Library (LSL 4)
reads nstand 64, 128 or 256 with nchan 4, 8, 12 or 16 (at most 8192 payload bytes);
asbru accepts any positive shape whose payload fits in 8192 bytes.

Format strings:

* ``tbx`` (capture): any shape, taken from each frame's header (the packet size must
  agree with it); a change of shape starts a new sequence.
* ``tbx_CxS`` (C channels, S stands per frame): all roles; a DiskReader reads records of
  ``28 + 2*C*S`` bytes and the writer needs it.  Frames of another shape are INVALID.
* Readers may append ``_T``: T = time-tag ticks between spectra (default 8192 =
  196 MHz / 23 925.78125 Hz, NDP's channel width); ``seq = time_tag // T``, the remainder
  (the stream's phase) is kept so that time tags are reproduced exactly.

Sources are channel blocks, as for TBF: ``src = (first_chan - src0) / nchan``; pass the
first channel of the capture as ``src0``.  A first_chan off that grid is INVALID.
Ring slot: ``[src][nchan][nstand][2 pol]`` (each payload copied at ``src * P``), i.e.
channel, stand, pol over all ``nchan * nsrc`` channels.

Writer (``tbx_CxS``): dtype ci4, ``2*C*S`` samples per frame; the ``src`` of ``send()``
goes to first_chan (callers step it by C), the writer's frame counter to the 24-bit frame
count, ``seq`` to the time tag; second_count is 0.  Bifrost has no TBX at all.
"""
from __future__ import annotations

import re

import numpy as np

from .spec import (CFG_NSRC, CFG_SRC0, CHAN0, INVALID, NCHAN, NSRC, PAYLOAD_OFFSET,
                   PAYLOAD_SIZE, SEQ, SRC, TIME_TAG, VALID, X0, X1, X2, BitField, Field,
                   FormatError, FormatParams, Header, Signature, kernel, new_capture_config,
                   place_source_block, rd_u8)
from .spec import split_time_tag, time_tag_at

NAME = "tbx"
HEADER = Header([
    Field("sync", 0, "u32be", "Mark 5C sync word, bytes DE C0 DE 5C"),
    Field("frame_count_word", 4, "u32be", "frame ID and frame counter", bits=(
        BitField("frame_count", 0, 24, "writer frame counter"),
        BitField("id", 24, 8, "frame ID, 0x08 = TBX"),
    )),
    Field("second_count", 8, "u32be", "not decoded (writer: 0)"),
    Field("first_chan", 12, "u32be", "first channel of this frame"),
    Field("nstand", 16, "u16be", "stands in this frame"),
    Field("nchan", 18, "u16be", "channels in this frame"),
    Field("time_tag", 20, "u64be", "ticks of the 196 MHz clock"),
])
(get_sync, get_first_chan, get_nstand, get_nchan, get_time_tag) = HEADER.readers(
    "sync", "first_chan", "nstand", "nchan", "time_tag")
(put_sync, put_frame_count_word, put_second_count, put_first_chan, put_nstand, put_nchan,
 put_time_tag) = HEADER.writers(
    "sync", "frame_count_word", "second_count", "first_chan", "nstand", "nchan", "time_tag")
HSIZE = HEADER.size
MAX_PAYLOAD = 8192
WRITE_DTYPE = "ci4"
SYNC = 0xDEC0DE5C
TBX_ID = 0x08
DEFAULT_TICKS = 8192  # 196 MHz / 23 925.78125 Hz
SIGNATURE = Signature(match=((0, b"\xde\xc0\xde\x5c"), (4, b"\x08")))
#: shapes LSL 4 reads, (nchan, nstand): documentation and tests
LSL_SHAPES = tuple((c, s) for s in (64, 128, 256) for c in (4, 8, 12, 16))

CFG_TICKS = 2
CFG_NCHAN = 3   # 0 = any
CFG_NSTAND = 4  # 0 = any

CHANGE = ("nchan", "nstand")
# the descriptor's spare slots this format uses, by name (spec.SPARE_SLOTS)
NSTAND = X0         # stands in the stream (a CHANGE field)
PHASE = X1          # the time tag's remainder within one seq step (for time_tag_of)
TICKS_PER_SEQ = X2  # time-tag ticks per seq step
SLOTS = {"nstand": NSTAND, "phase": PHASE, "ticks_per_seq": TICKS_PER_SEQ}
CALLBACK_FAMILY = "value"
CALLBACK_ARGS = ("seq0", "time_tag", "chan0", "nchan", "nstand", "nsrc")

_STRING = re.compile(r"tbx(?:_(\d+)x(\d+))?(?:_(\d+))?")


def matches(fmt: str) -> bool:
    return fmt == "tbx" or fmt.startswith("tbx_")


def parse(fmt: str, role: str) -> FormatParams:
    m = _STRING.fullmatch(fmt)
    usage = "expected 'tbx', 'tbx_CxS' (C channels, S stands per frame) or either with '_T' (T = ticks per spectrum)"
    if m is None:
        raise FormatError(f"format {fmt!r}: {usage}")
    nchan = int(m.group(1)) if m.group(1) else 0
    nstand = int(m.group(2)) if m.group(2) else 0
    ticks = int(m.group(3)) if m.group(3) else DEFAULT_TICKS
    if m.group(1) and (nchan <= 0 or nstand <= 0 or 2 * nchan * nstand > MAX_PAYLOAD):
        raise FormatError(f"format {fmt!r}: C and S must be > 0 with 2*C*S <= {MAX_PAYLOAD} bytes")
    if ticks <= 0:
        raise FormatError(f"format {fmt!r}: T must be > 0")
    if role == "write" and m.group(3):
        raise FormatError(f"format {fmt!r}: the writer takes 'tbx_CxS' (no ticks)")
    extra = {"ticks": ticks, "nchan": nchan, "nstand": nstand}
    if nchan == 0:
        if role != "capture":
            raise FormatError(f"format {fmt!r}: the {role} role needs 'tbx_CxS' (C channels, S stands)")
        return FormatParams(name=NAME, fmt=fmt, role=role, header_size=HSIZE, payload_size=None,
                            extra=extra)
    p = 2 * nchan * nstand
    return FormatParams(name=NAME, fmt=fmt, role=role, header_size=HSIZE, payload_size=p,
                        record_size=HSIZE + p, fixed_packet_size=HSIZE + p,
                        samples_per_packet=p, write_dtype=WRITE_DTYPE, extra=extra)


def capture_config(params: FormatParams, nsrc: int, src0: int) -> np.ndarray:
    cfg = new_capture_config(nsrc, src0)
    cfg[CFG_TICKS] = params.extra["ticks"]
    cfg[CFG_NCHAN] = params.extra["nchan"]
    cfg[CFG_NSTAND] = params.extra["nstand"]
    return cfg


@kernel
def decode(pkt, cfg, state, d):
    if pkt.size < HSIZE:
        return INVALID
    if get_sync(pkt) != SYNC or rd_u8(pkt, 4) != TBX_ID:
        return INVALID
    nstand = get_nstand(pkt)
    nchan = get_nchan(pkt)
    psize = 2 * nchan * nstand
    if nchan == 0 or nstand == 0 or psize > MAX_PAYLOAD or pkt.size != HSIZE + psize:
        return INVALID
    if (cfg[CFG_NCHAN] != 0 and nchan != cfg[CFG_NCHAN]) or \
            (cfg[CFG_NSTAND] != 0 and nstand != cfg[CFG_NSTAND]):
        return INVALID
    ticks = cfg[CFG_TICKS]
    time_tag = get_time_tag(pkt)
    if ticks <= 0 or time_tag < 0:
        return INVALID
    rel = get_first_chan(pkt) - cfg[CFG_SRC0]
    if rel < 0 or rel % nchan != 0:
        return INVALID
    src = rel // nchan
    if src >= cfg[CFG_NSRC]:
        return INVALID
    d[SEQ], d[PHASE] = split_time_tag(time_tag, ticks)
    d[SRC] = src
    d[NSRC] = cfg[CFG_NSRC]
    d[NCHAN] = nchan
    d[CHAN0] = cfg[CFG_SRC0]
    d[TIME_TAG] = time_tag
    d[NSTAND] = nstand
    d[TICKS_PER_SEQ] = ticks
    d[PAYLOAD_OFFSET] = HSIZE
    d[PAYLOAD_SIZE] = psize
    return VALID


# ring layout [src = channel block][nchan][nstand][2 pol][ci4]: the whole payload at src * P
place = place_source_block


def time_tag_of(seq: int, d: np.ndarray) -> int:
    return time_tag_at(seq, d[TICKS_PER_SEQ], d[PHASE])


def callback_args(seq0: int, d: np.ndarray, nsrc: int) -> tuple:
    return (int(seq0), time_tag_of(seq0, d), int(d[CHAN0]), int(d[NCHAN]) * int(nsrc),
            int(d[NSTAND]), int(nsrc))


def write_config(params: FormatParams) -> np.ndarray:
    return np.array([params.extra["nchan"], params.extra["nstand"]], dtype=np.int64)


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    if hdr.size < HSIZE:
        return
    put_sync(hdr, SYNC)
    put_frame_count_word(hdr, (TBX_ID << 24) | (framecount & 0xFFFFFF))
    put_second_count(hdr, 0)
    put_first_chan(hdr, src)
    put_nstand(hdr, wcfg[1])
    put_nchan(hdr, wcfg[0])
    put_time_tag(hdr, seq)


def synth_recipe(params: FormatParams, nsrc: int) -> dict:
    """How ``asbru generate`` makes a valid stream: channel blocks from channel 1000,
    one spectrum (8192 ticks) per time step."""
    nchan = params.extra["nchan"]
    return dict(reader=f"tbx_{nchan}x{params.extra['nstand']}", src0=1000,
                seq0=1000 * DEFAULT_TICKS, seq_inc=DEFAULT_TICKS,
                src_value=lambda j: 1000 + nchan * j, info=lambda j: {})
