"""``cor``: LWA-SV ADP / NDP correlator visibilities, cf32 [chan][4 pol products].

Wire format identical to Bifrost's (docs/formats.md, cor).  Strings: ``cor`` (capture, any
nchan), ``cor_N`` (N channels per packet; files and writing; a network capture ignores N,
as Bifrost's does).  Deliberate differences:

* seq is the integration index computed exactly, ``time_tag // (navg * 1 960 000)``
  (navg counts 10 ms sub-slots of the 196 MHz clock).  Bifrost computes
  ``(time_tag // 196e6) // (navg // 100)``: whole seconds only, so sub-second or
  non-integer-second integrations are mis-numbered and navg < 100 divides by zero
  (docs/differences-from-bifrost.md, formats #9, #5).  Both agree whenever integrations are whole seconds and the
  time tags fall on them (the Bifrost vector does).  navg == 0 is INVALID.
* The source index keeps Bifrost's convention (docs/formats.md, cor):
  ``(baseline + 1 - src0) * nserver + (server - 1)``, so ``src0 = 1`` gives 0-based
  baselines, which is what Bifrost users pass; changing it would silently shift every
  existing pipeline's baselines by one.
* Absurd headers are INVALID instead of dividing by zero or mis-indexing: nserver == 0 with
  server != 0, server outside 1..nserver, stands outside 1..nstand or stand0 > stand1, a payload that is
  not a positive multiple of 32 bytes (or not 32*N for a DiskReader ``cor_N``), bad sync
  word.
* Both server fields 0 (nserver and server; real LWA-SV recordings are written so) mean a
  single server, as the LWA Software Library's reader decodes them; Bifrost rejected them.
* The callback's time tag is the one of seq0 (plus the stream's phase), not that of the
  packet that triggered the sequence.
"""
from __future__ import annotations

import math

import numpy as np

from .spec import (CFG_NSRC, CFG_SRC0, CHAN0, DECIMATION, GAIN, INVALID, NAVG, NCHAN, NSRC,
                   PAYLOAD_OFFSET, PAYLOAD_SIZE, SEQ, SRC, TIME_TAG, TUNING, VALID, X1, X2,
                   BitField, Field, FormatError, FormatParams, Header, H_CHAN0, H_DECIMATION,
                   H_GAIN, H_NSRC, H_TUNING, kernel, rd_be16, rd_be32, rd_be64, rd_u8,
                   parse_int_suffix, wr_be16, wr_be32, wr_be64)
from .spec import channel_format, split_time_tag, time_tag_at
from .spec import new_capture_config
from .spec import place_source_block
from .spec import Signature

NAME = "cor"
HEADER = Header([
    Field("sync", 0, "u32be", "Mark 5C sync word, bytes DE C0 DE 5C"),
    Field("frame_count_word", 4, "u32be", "ID and server description", bits=(
        BitField("server", 0, 8, "this server, 1-based"),
        BitField("nserver", 8, 8, "servers in the stream"),
        BitField("nchan_decim", 16, 8, "channel decimation between servers"),
        BitField("id", 24, 8, "Mark 5C ID (0x02 = COR)"),
    )),
    Field("second_count", 8, "u32be", "not decoded (writer: 0)"),
    Field("first_chan", 12, "u16be", "first channel of this packet"),
    Field("gain", 14, "u16be", "gain"),
    Field("time_tag", 16, "u64be", "ticks of the 196 MHz clock"),
    Field("navg", 24, "u32be", "integration length in 10 ms sub-slots"),
    Field("stand0", 28, "u16be", "unconjugated stand, 1-based"),
    Field("stand1", 30, "u16be", "conjugated stand, 1-based"),
])
HSIZE = 32
WRITE_DTYPE = "cf32"
SYNC = 0xDEC0DE5C  # as read big-endian: the bytes DE C0 DE 5C
TICKS_PER_NAVG = 1_960_000  # 196 MHz x 10 ms
# sync word, ID 0x02 (ADP) or 0x06 (NDP), 32 + 32*nchan bytes: how tools recognise COR
SIGNATURE = Signature(match=((0, b"\xde\xc0\xde\x5c"), (4, (b"\x02", b"\x06"))), size_rule=(32, 32))

CFG_NCHAN = 2  # 0 = any

CHANGE = ("chan0", "nchan", "navg")
# the descriptor's spare slots this format uses, by name (spec.SPARE_SLOTS)
PHASE = X1    # the time tag's remainder within one seq step (for time_tag_of)
NSERVER = X2  # servers the baselines are spread over
SLOTS = {"phase": PHASE, "nserver": NSERVER}
CALLBACK_FAMILY = "value"
CALLBACK_ARGS = ("seq0", "time_tag", "chan0", "nchan", "navg", "nsrc")


def matches(fmt: str) -> bool:
    return fmt.startswith("cor")


def parse(fmt: str, role: str) -> FormatParams:
    return channel_format(fmt, role, name=NAME, header_size=HSIZE,
                          nchan=None if fmt == "cor" else parse_int_suffix(fmt, "cor_", "N"),
                          bytes_per_chan=32, samples_per_chan=4, write_dtype=WRITE_DTYPE)


def capture_config(params: FormatParams, nsrc: int, src0: int) -> np.ndarray:
    cfg = new_capture_config(nsrc, src0)
    cfg[CFG_NCHAN] = params.extra["nchan"]
    return cfg


@kernel
def _isqrt(n):
    # floor(sqrt(n)) for n >= 0, exact for the integers used here
    if n <= 0:
        return 0
    r = np.int64(math.sqrt(n))
    while r * r > n:
        r -= 1
    while (r + 1) * (r + 1) <= n:
        r += 1
    return r


@kernel
def decode(pkt, cfg, state, d):
    if pkt.size < HSIZE:
        return INVALID
    if rd_be32(pkt, 0) != SYNC:
        return INVALID
    psize = pkt.size - HSIZE
    if psize <= 0 or psize % 32 != 0:
        return INVALID
    nchan = psize // 32
    if cfg[CFG_NCHAN] != 0 and nchan != cfg[CFG_NCHAN]:
        return INVALID
    server = rd_u8(pkt, 7)
    nserver = rd_u8(pkt, 6)
    nchan_decim = rd_u8(pkt, 5)
    if nserver == 0 and server == 0:
        # LWA-SV recordings leave both server fields 0: one server (as the LWA's reader)
        nserver = 1
        server = 1
    if nserver == 0 or server < 1 or server > nserver:
        return INVALID
    navg = rd_be32(pkt, 24)
    if navg == 0:
        return INVALID
    time_tag = rd_be64(pkt, 16)
    if time_tag < 0:
        return INVALID
    nsrc = cfg[CFG_NSRC]
    nstand = (_isqrt((8 * nsrc) // nserver + 1) - 1) // 2
    stand0 = rd_be16(pkt, 28) - 1
    stand1 = rd_be16(pkt, 30) - 1
    if stand0 < 0 or stand1 < stand0 or stand1 >= nstand:
        return INVALID
    baseline = stand0 * (2 * nstand - 1 - stand0) // 2 + stand1
    src = (baseline + 1 - cfg[CFG_SRC0]) * nserver + (server - 1)
    if src < 0 or src >= nsrc:
        return INVALID
    chan0 = rd_be16(pkt, 12) - nchan_decim * nchan * (server - 1)
    if chan0 < 0:
        return INVALID
    ticks = navg * TICKS_PER_NAVG
    d[SEQ], d[PHASE] = split_time_tag(time_tag, ticks)
    d[SRC] = src
    d[NSRC] = nsrc
    d[NCHAN] = nchan
    d[CHAN0] = chan0
    d[TUNING] = (nserver << 8) | (server - 1)
    d[GAIN] = rd_be16(pkt, 14)
    d[TIME_TAG] = time_tag
    d[NAVG] = navg
    d[DECIMATION] = navg
    d[NSERVER] = nserver
    d[PAYLOAD_OFFSET] = HSIZE
    d[PAYLOAD_SIZE] = psize
    return VALID


# ring layout [src = baseline*nserver + server][chan][4 products][cf32]: the whole payload at src * P
place = place_source_block


def time_tag_of(seq: int, d: np.ndarray) -> int:
    return time_tag_at(seq, int(d[NAVG]) * TICKS_PER_NAVG, d[PHASE])


def callback_args(seq0: int, d: np.ndarray, nsrc: int) -> tuple:
    nserver = max(int(d[NSERVER]), 1)
    return (int(seq0), time_tag_of(seq0, d), int(d[CHAN0]), int(d[NCHAN]) * nserver,
            int(d[NAVG]), int(nsrc) // nserver)


def write_config(params: FormatParams) -> np.ndarray:
    return np.array([params.extra["nchan"]], dtype=np.int64)


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    if hdr.size < HSIZE:
        return
    nsrc = info[H_NSRC]
    # baseline src -> (stand0, stand1) among nsrc baselines (autos included), Bifrost's
    # floating-point formula (exact for any realistic stand count)
    nst = np.int64((math.sqrt(8.0 * nsrc + 1.0) - 1.0) / 2.0)
    b = 2 * nst + 1
    disc = float(b * b - 8 * src)
    stand0 = np.int64((b - math.sqrt(disc)) / 2.0) if disc >= 0.0 else np.int64(0)
    stand1 = src - stand0 * (2 * nst - 1 - stand0) // 2
    wr_be32(hdr, 0, SYNC)
    wr_be32(hdr, 4, (info[H_TUNING] & 0xFFFFFF) | 0x02000000)
    wr_be32(hdr, 8, 0)
    wr_be16(hdr, 12, info[H_CHAN0])
    wr_be16(hdr, 14, info[H_GAIN])
    wr_be64(hdr, 16, seq)
    wr_be32(hdr, 24, info[H_DECIMATION])
    wr_be16(hdr, 28, stand0 + 1)
    wr_be16(hdr, 30, stand1 + 1)


def _triangular_error(n: int) -> str | None:
    nst = int((np.sqrt(8 * n + 1) - 1) // 2)
    if nst * (nst + 1) // 2 != n:
        return f"cor needs a number of baselines nstand*(nstand+1)/2 (1, 3, 6, 10, ...), got {n}"
    return None


def synth_recipe(params: FormatParams, nsrc: int) -> dict:
    """How ``asbru generate`` makes a valid stream: one server, nsrc baselines (a triangular
    number), 1 s integrations (navg 100)."""
    ticks = 100 * TICKS_PER_NAVG
    return dict(reader=params.fmt, src0=1, seq0=1000 * ticks, seq_inc=ticks, src_value=lambda j: j,
                info=lambda j: {"nsrc": nsrc, "chan0": 0, "gain": 1, "decimation": 100,
                                "tuning": (1 << 16) | (1 << 8) | 1},
                check_nsrc=_triangular_error)
