"""``vbeam_N``: OVRO-LWA voltage beam, cf32 [chan (N)][pol 2].

Wire format: Bifrost's 52-byte header (docs/formats.md, vbeam_N).  Deliberate differences:

* Strings: ``vbeam_N`` is parsed properly (N after the underscore); Bifrost aborts the
  interpreter on it (N is read from string index 13, docs/differences-from-bifrost.md, formats #15).  Bifrost's working
  spelling ``vbeam_lwa352_N`` is accepted too.  Readers may add ``_T``
  (``vbeam_N_T``, ``vbeam_lwa352_N_T``): T = time-tag ticks between packets, default 1.
* Header fields: Bifrost writes only the sync word and the time tag (everything else 0).
  asbru writes exactly that unless the caller describes the channels with
  ``HeaderInfo.set_nchan``: then nchan = HeaderInfo nchan, chan0 = HeaderInfo chan0 +
  src * nchan (each source a block of channels, the convention ibeam/pbeam decoders
  assume) and npol = 2, as u32 big endian like the time tag.  bw_hz, sfreq and sync_time
  stay 0 (HeaderInfo has no field for them).  So a Bifrost-style call reproduces
  Bifrost's bytes exactly (the vector test), and a described stream can be captured.
* Reader (Bifrost has none): sync word checked; payload must be 16*N bytes.  A described
  header needs nchan == N, npol == 2 and ``src = (chan0 - src0) / N`` (src0 = first channel
  of the capture); an undescribed header (nchan == 0, Bifrost's writer) has no source
  information, so it is source 0 (capture it with nsrc = 1).  ``seq = time_tag // T``.
"""
from __future__ import annotations

import numpy as np

from .spec import (CFG_NSRC, CFG_SRC0, CHAN0, INVALID, NCHAN, NSRC, PAYLOAD_OFFSET,
                   PAYLOAD_SIZE, SEQ, SRC, TIME_TAG, VALID, X1, X2, Field, FormatError,
                   FormatParams, Header, H_CHAN0, H_NCHAN, kernel, wr_u8)
from .spec import split_time_tag, time_tag_at
from .spec import new_capture_config
from .spec import place_source_block
from .spec import Signature

NAME = "vbeam"
HEADER = Header([
    Field("sync_word", 0, "u64le", "0xAABBCCDD00000000 little endian: bytes 00 00 00 00 DD CC BB AA"),
    Field("sync_time", 8, "u64be", "0 (not filled)"),
    Field("time_tag", 16, "u64be", "time tag of the packet"),
    Field("bw_hz", 24, "f64be", "0 (not filled)"),
    Field("sfreq", 32, "f64be", "0 (not filled)"),
    Field("nchan", 40, "u32be", "channels (0 = not described, Bifrost's writer)"),
    Field("chan0", 44, "u32be", "first channel of this packet"),
    Field("npol", 48, "u32be", "polarisations (2 when described)"),
])
get_time_tag, get_nchan, get_chan0, get_npol = HEADER.readers("time_tag", "nchan", "chan0", "npol")
put_time_tag, put_nchan, put_chan0, put_npol = HEADER.writers("time_tag", "nchan", "chan0", "npol")
HSIZE = HEADER.size
WRITE_DTYPE = "cf32"
SYNC_BYTES = (0x00, 0x00, 0x00, 0x00, 0xDD, 0xCC, 0xBB, 0xAA)
SIGNATURE = Signature(match=((0, bytes(SYNC_BYTES)),), size_rule=(HSIZE, 16))

CFG_NCHAN = 2
CFG_TICKS = 3

CHANGE: tuple[str, ...] = ()
# the descriptor's spare slots this format uses, by name (spec.SPARE_SLOTS)
PHASE = X1          # the time tag's remainder within one seq step (for time_tag_of)
TICKS_PER_SEQ = X2  # time-tag ticks per seq step
SLOTS = {"phase": PHASE, "ticks_per_seq": TICKS_PER_SEQ}
CALLBACK_FAMILY = "value"
CALLBACK_ARGS = ("seq0", "time_tag", "chan0", "nchan", "nsrc")


def matches(fmt: str) -> bool:
    return fmt.startswith("vbeam")


def parse(fmt: str, role: str) -> FormatParams:
    usage = (f"format {fmt!r}: expected 'vbeam_N' or 'vbeam_lwa352_N' (N channels"
             + (", optional '_T' ticks per packet)" if role != "write" else ")"))
    rest = fmt[len("vbeam_lwa352_"):] if fmt.startswith("vbeam_lwa352_") else (
        fmt[len("vbeam_"):] if fmt.startswith("vbeam_") else "")
    parts = rest.split("_")
    if not 1 <= len(parts) <= (1 if role == "write" else 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise FormatError(usage)
    nchan = int(parts[0])
    ticks = int(parts[1]) if len(parts) == 2 else 1
    p = 16 * nchan
    return FormatParams(name=NAME, fmt=fmt, role=role, header_size=HSIZE, payload_size=p,
                        record_size=HSIZE + p, fixed_packet_size=HSIZE + p,
                        samples_per_packet=2 * nchan, write_dtype=WRITE_DTYPE,
                        extra={"nchan": nchan, "ticks": ticks})


def capture_config(params: FormatParams, nsrc: int, src0: int) -> np.ndarray:
    cfg = new_capture_config(nsrc, src0)
    cfg[CFG_NCHAN] = params.extra["nchan"]
    cfg[CFG_TICKS] = params.extra["ticks"]
    return cfg


@kernel
def decode(pkt, cfg, state, d):
    nchan = cfg[CFG_NCHAN]
    ticks = cfg[CFG_TICKS]
    if nchan <= 0 or ticks <= 0 or pkt.size != HSIZE + 16 * nchan:
        return INVALID
    for i in range(8):
        if pkt[i] != SYNC_BYTES[i]:
            return INVALID
    time_tag = get_time_tag(pkt)
    if time_tag < 0:
        return INVALID
    hnchan = get_nchan(pkt)
    if hnchan == 0:
        src = 0
        chan0 = cfg[CFG_SRC0]
    else:
        if hnchan != nchan or get_npol(pkt) != 2:
            return INVALID
        rel = get_chan0(pkt) - cfg[CFG_SRC0]
        if rel < 0 or rel % nchan != 0:
            return INVALID
        src = rel // nchan
        chan0 = cfg[CFG_SRC0]
    if src >= cfg[CFG_NSRC]:
        return INVALID
    d[SEQ], d[PHASE] = split_time_tag(time_tag, ticks)
    d[SRC] = src
    d[NSRC] = cfg[CFG_NSRC]
    d[NCHAN] = nchan
    d[CHAN0] = chan0
    d[TIME_TAG] = time_tag
    d[TICKS_PER_SEQ] = ticks
    d[PAYLOAD_OFFSET] = HSIZE
    d[PAYLOAD_SIZE] = 16 * nchan
    return VALID


# ring layout [src][chan][2 pol][cf32]: the whole payload at src * P
place = place_source_block


def time_tag_of(seq: int, d: np.ndarray) -> int:
    return time_tag_at(seq, max(int(d[TICKS_PER_SEQ]), 1), d[PHASE])


def callback_args(seq0: int, d: np.ndarray, nsrc: int) -> tuple:
    return (int(seq0), time_tag_of(seq0, d), int(d[CHAN0]), int(d[NCHAN]) * int(nsrc), int(nsrc))


def write_config(params: FormatParams) -> np.ndarray:
    return np.array([params.extra["nchan"]], dtype=np.int64)


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    if hdr.size < HSIZE:
        return
    for i in range(8):
        wr_u8(hdr, i, SYNC_BYTES[i])
    for i in range(8, HSIZE):
        hdr[i] = 0
    put_time_tag(hdr, seq)
    nchan = info[H_NCHAN]
    if nchan != 0:
        put_nchan(hdr, nchan)
        put_chan0(hdr, info[H_CHAN0] + src * nchan)
        put_npol(hdr, 2)
