"""``ibeamB`` (B = 1..4 beams): integrated/voltage beam packets, cf32 [chan][beam][pol].

Wire format identical to Bifrost's (docs/formats.md, ibeamB).  Strings: ``ibeamB`` (capture, any
nchan), ``ibeamB_N`` (N channels per packet; required to read files and to write; a network
capture ignores N, as Bifrost's does).
Deliberate differences:

* The header seq is 1-based (``seq = header - 1``) as in Bifrost, but header seq 0 is
  INVALID instead of wrapping; the writer writes the seq it is given (Bifrost's asymmetry,
  docs/formats.md, ibeamB).
* The payload must be exactly 16 * B * nchan bytes, nchan > 0, and for a DiskReader
  ``ibeamB_N`` nchan == N (docs/differences-from-bifrost.md, formats #18).
* chan0 is normalised as Bifrost does (header chan0 - nchan * src: server k is assumed to
  carry channels chan0 + k*nchan) and reported to the callback.  But only packets of
  source 0 vote on a chan0 change (descriptor ``x0``): Bifrost's own writer puts the same
  chan0 in every source's header, so the normalised chan0 differs between sources, and
  comparing every packet (asbru's engine tests every packet, Bifrost only one per gulp)
  would start a new sequence at each source.
"""
from __future__ import annotations

import numpy as np

from .spec import (BEAM, CFG_NSRC, CFG_SRC0, CHAN0, INVALID, NCHAN, NSRC, PAYLOAD_OFFSET,
                   PAYLOAD_SIZE, SEQ, SRC, TUNING, VALID, X0, Field, FormatError, FormatParams,
                   Header, H_CHAN0, H_NCHAN, H_NSRC, H_TUNING, kernel)
from .spec import channel_format
from .spec import new_capture_config
from .spec import place_source_block

NAME = "ibeam"
HEADER = Header([
    Field("server", 0, "u8", "source number, 1-based"),
    Field("gbe", 1, "u8", "GbE link / tuning; not decoded"),
    Field("nchan", 2, "u8", "channels in this packet"),
    Field("nbeam", 3, "u8", "beams in this packet (must equal B)"),
    Field("nserver", 4, "u8", "not decoded (writer: nsrc)"),
    Field("chan0", 5, "u16be", "first channel of this packet"),
    Field("seq", 7, "u64be", "spectrum counter, 1-based"),
])
(get_server, get_gbe, get_nchan, get_nbeam, get_chan0, get_seq) = HEADER.readers(
    "server", "gbe", "nchan", "nbeam", "chan0", "seq")
(put_server, put_gbe, put_nchan, put_nbeam, put_nserver, put_chan0, put_seq) = HEADER.writers(
    "server", "gbe", "nchan", "nbeam", "nserver", "chan0", "seq")
HSIZE = HEADER.size
WRITE_DTYPE = "cf32"

CFG_NBEAM = 2
CFG_NCHAN = 3  # 0 = any

CHANGE = ("nchan", "band_chan0")
# the descriptor's spare slots this format uses, by name (spec.SPARE_SLOTS)
BAND_CHAN0 = X0  # chan0 of the whole band: said by source 0 only (a CHANGE field)
SLOTS = {"band_chan0": BAND_CHAN0}
CALLBACK_FAMILY = "pointer"
CALLBACK_ARGS = ("seq0", "chan0", "nchan", "nbeam")


def matches(fmt: str) -> bool:
    return fmt.startswith("ibeam")


def parse(fmt: str, role: str) -> FormatParams:
    usage = f"format {fmt!r}: expected 'ibeamB' or 'ibeamB_N' with B = 1..4 beams and N channels"
    if len(fmt) < 6 or fmt[5] not in "1234":
        raise FormatError(usage)
    nbeam = int(fmt[5])
    nchan = None
    if len(fmt) > 6:
        tail = fmt[6:]
        if not (tail.startswith("_") and tail[1:].isdigit() and int(tail[1:]) > 0):
            raise FormatError(usage)
        nchan = int(tail[1:])
        if nchan > 255:
            raise FormatError(f"format {fmt!r}: N (channels per packet) must be 1..255 (one header byte)")
    return channel_format(fmt, role, name=NAME, header_size=HSIZE, nchan=nchan,
                          bytes_per_chan=16 * nbeam, samples_per_chan=2 * nbeam,
                          write_dtype=WRITE_DTYPE, extra={"nbeam": nbeam},
                          usage=f"'ibeam{nbeam}_N'")


def proclog_type(params: FormatParams) -> str:
    """The writer's proclog "type" string: Bifrost's ``ibeam<B>``."""
    return f"ibeam{params.extra.get('nbeam', 1)}"


def capture_config(params: FormatParams, nsrc: int, src0: int) -> np.ndarray:
    cfg = new_capture_config(nsrc, src0)
    cfg[CFG_NBEAM] = params.extra["nbeam"]
    cfg[CFG_NCHAN] = params.extra["nchan"]
    return cfg


@kernel
def decode(pkt, cfg, state, d):
    if pkt.size < HSIZE:
        return INVALID
    nchan = get_nchan(pkt)
    nbeam = get_nbeam(pkt)
    if nchan == 0 or nbeam != cfg[CFG_NBEAM]:
        return INVALID
    if cfg[CFG_NCHAN] != 0 and nchan != cfg[CFG_NCHAN]:
        return INVALID
    psize = 16 * nbeam * nchan
    if pkt.size != HSIZE + psize:
        return INVALID
    hseq = get_seq(pkt)
    if hseq <= 0:
        return INVALID
    src = get_server(pkt) - 1 - cfg[CFG_SRC0]
    if src < 0 or src >= cfg[CFG_NSRC]:
        return INVALID
    chan0 = get_chan0(pkt) - nchan * src
    if chan0 < 0:
        return INVALID
    d[SEQ] = hseq - 1
    d[SRC] = src
    d[NSRC] = cfg[CFG_NSRC]
    d[NCHAN] = nchan
    d[CHAN0] = chan0
    d[BEAM] = nbeam
    d[TUNING] = get_gbe(pkt)
    d[BAND_CHAN0] = chan0 if src == 0 else -1
    d[PAYLOAD_OFFSET] = HSIZE
    d[PAYLOAD_SIZE] = psize
    return VALID


# ring layout [src][chan][beam][pol][cf32]: the whole payload at src * P
place = place_source_block


def callback_args(seq0: int, d: np.ndarray, nsrc: int) -> tuple:
    return (int(seq0), int(d[CHAN0]), int(d[NCHAN]) * int(nsrc), int(d[BEAM]))


def time_tag_of(seq: int, d: np.ndarray) -> int:
    return int(seq)  # pointer family: the callback decides; default seq0


def write_config(params: FormatParams) -> np.ndarray:
    return np.array([params.extra["nbeam"], params.extra["nchan"]], dtype=np.int64)


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    if hdr.size < HSIZE or wcfg.size < 1:
        return
    put_server(hdr, src + 1)
    put_gbe(hdr, info[H_TUNING])
    put_nchan(hdr, info[H_NCHAN])
    put_nbeam(hdr, wcfg[0])
    put_nserver(hdr, info[H_NSRC])
    put_chan0(hdr, info[H_CHAN0])
    put_seq(hdr, seq)


def synth_recipe(params: FormatParams, nsrc: int) -> dict:
    """How ``asbru generate`` makes a valid stream: servers 1..nsrc, consecutive channel
    blocks from channel 100; the header seq is 1-based (writer 1001 decodes as 1000)."""
    nchan = params.extra["nchan"]
    return dict(reader=params.fmt, src0=0, seq0=1001, seq_inc=1, src_value=lambda j: j,
                info=lambda j: {"nsrc": nsrc, "nchan": nchan, "chan0": 100 + j * nchan},
                max_nsrc=255)
