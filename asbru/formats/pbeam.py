"""``pbeam``: OVRO-LWA style power-beam packets, f32 [chan][4 products].

Wire format identical to Bifrost's (docs/formats.md, pbeam).  Strings: ``pbeam`` (capture, any
nchan); ``pbeam_N`` and ``pbeamB_N`` (N channels per packet, B beams) for every role —
Bifrost's reader only understands ``pbeam_N`` (``pbeam1_N`` makes it divide by zero) and
its writer only ``pbeam1_N``; asbru accepts both spellings everywhere.  A network capture
ignores N (Bifrost looks only at the prefix there).
Deliberate differences (docs/differences-from-bifrost.md, formats #5, #7, #18):

* navg is kept at full width (Bifrost stores it in 8 bits: a spurious CHANGED on every
  gulp for navg > 255) and navg == 0 is INVALID (Bifrost divides by zero).
* chan0 is normalised with the server index only: ``chan0 - nchan * (server - 1)``.
  Bifrost uses the combined beam/server index, so beams after the first got shifted (often
  negative, hence rejected) channel numbers.  Only packets of server 1 vote on a chan0
  change (descriptor ``x0``): Bifrost's writer gives every server the same chan0.
* The source index is Bifrost's: ``(beam - src0) * nserver + (server - 1)``, beams being
  1-based on the wire, so ``src0 = 1`` makes the first beam source 0 (what Bifrost users
  pass).  nserver == 0, server outside 1..nserver, nbeam == 0 or beam == 0 are INVALID.
* The payload must be exactly 16 * nchan bytes, nchan > 0 (== N for a DiskReader).
* The callback's time tag is the one of seq0 (``seq0 * navg`` plus the stream's phase
  ``time_tag % navg``), not that of whichever packet triggered the sequence.
* Writer: with ``nsrc < B`` Bifrost divides by zero (nserver = nsrc / B); asbru uses
  nserver = 1 there.
"""
from __future__ import annotations

import numpy as np

from .spec import (BEAM, CFG_NSRC, CFG_SRC0, CHAN0, DECIMATION, INVALID, NAVG, NCHAN, NSRC,
                   PAYLOAD_OFFSET, PAYLOAD_SIZE, SEQ, SRC, TIME_TAG, TUNING, VALID, X0, X1, Field,
                   FormatError, FormatParams, Header, H_CHAN0, H_DECIMATION, H_NCHAN, H_NSRC,
                   H_TUNING, kernel)
from .spec import channel_format, split_time_tag, time_tag_at
from .spec import new_capture_config
from .spec import place_source_block

NAME = "pbeam"
HEADER = Header([
    Field("server", 0, "u8", "server number, 1-based"),
    Field("beam", 1, "u8", "beam number, 1-based"),
    Field("gbe", 2, "u8", "GbE link / tuning; not decoded"),
    Field("nchan", 3, "u8", "channels in this packet"),
    Field("nbeam", 4, "u8", "beams in the stream"),
    Field("nserver", 5, "u8", "servers in the stream"),
    Field("navg", 6, "u16be", "raw spectra averaged per packet"),
    Field("chan0", 8, "u16be", "first channel of this packet"),
    Field("seq", 10, "u64be", "time tag (spectrum counter x navg)"),
])
(get_server, get_beam, get_gbe, get_nchan, get_nbeam, get_nserver, get_navg, get_chan0,
 get_seq) = HEADER.readers(
    "server", "beam", "gbe", "nchan", "nbeam", "nserver", "navg", "chan0", "seq")
(put_server, put_beam, put_gbe, put_nchan, put_nbeam, put_nserver, put_navg, put_chan0,
 put_seq) = HEADER.writers(
    "server", "beam", "gbe", "nchan", "nbeam", "nserver", "navg", "chan0", "seq")
HSIZE = HEADER.size
WRITE_DTYPE = "f32"

CFG_NCHAN = 2  # 0 = any

CHANGE = ("nchan", "navg", "band_chan0")
# the descriptor's spare slots this format uses, by name (spec.SPARE_SLOTS)
BAND_CHAN0 = X0  # chan0 of the whole band: said by server 1 only (a CHANGE field)
PHASE = X1       # the time tag's remainder within one seq step (for time_tag_of)
SLOTS = {"band_chan0": BAND_CHAN0, "phase": PHASE}
CALLBACK_FAMILY = "value"
CALLBACK_ARGS = ("seq0", "time_tag", "navg", "chan0", "nchan", "nbeam")


def matches(fmt: str) -> bool:
    return fmt.startswith("pbeam")


def parse(fmt: str, role: str) -> FormatParams:
    usage = f"format {fmt!r}: expected 'pbeam', 'pbeam_N' or 'pbeamB_N' (B beams, N channels)"
    nbeam, nchan = 1, None
    if fmt != "pbeam":
        head, sep, tail = fmt[5:].partition("_")
        if not sep or not tail.isdigit() or int(tail) <= 0 or (head and not head.isdigit()):
            raise FormatError(usage)
        nbeam = int(head) if head else 1
        nchan = int(tail)
        if not 1 <= nbeam <= 255 or nchan > 255:
            raise FormatError(f"format {fmt!r}: B and N must be 1..255 (one header byte each)")
    return channel_format(fmt, role, name=NAME, header_size=HSIZE, nchan=nchan,
                          bytes_per_chan=16, samples_per_chan=4, write_dtype=WRITE_DTYPE,
                          extra={"nbeam": nbeam}, usage="'pbeam_N' or 'pbeam1_N'")


def reader_format(fmt: str) -> str:
    """The capture/DiskReader string for a writer string: Bifrost writes the power beam as
    ``pbeamB_N`` and reads it as ``pbeam_N``."""
    if len(fmt) > 6 and fmt[5].isdigit() and fmt[6] == "_":
        return "pbeam" + fmt[6:]
    return fmt


def proclog_type(params: FormatParams) -> str:
    """The writer's proclog "type" string: Bifrost's ``pbeam<B>``."""
    return f"pbeam{params.extra.get('nbeam', 1)}"


def capture_config(params: FormatParams, nsrc: int, src0: int) -> np.ndarray:
    cfg = new_capture_config(nsrc, src0)
    cfg[CFG_NCHAN] = params.extra["nchan"]
    return cfg


@kernel
def decode(pkt, cfg, state, d):
    if pkt.size < HSIZE:
        return INVALID
    server = get_server(pkt)
    beam = get_beam(pkt)
    nchan = get_nchan(pkt)
    nbeam = get_nbeam(pkt)
    nserver = get_nserver(pkt)
    navg = get_navg(pkt)
    if nchan == 0 or nbeam == 0 or nserver == 0 or navg == 0 or beam == 0:
        return INVALID
    if server < 1 or server > nserver:
        return INVALID
    if cfg[CFG_NCHAN] != 0 and nchan != cfg[CFG_NCHAN]:
        return INVALID
    psize = 16 * nchan
    if pkt.size != HSIZE + psize:
        return INVALID
    time_tag = get_seq(pkt)
    if time_tag < 0:
        return INVALID
    src = (beam - cfg[CFG_SRC0]) * nserver + (server - 1)
    if src < 0 or src >= cfg[CFG_NSRC]:
        return INVALID
    chan0 = get_chan0(pkt) - nchan * (server - 1)
    if chan0 < 0:
        return INVALID
    d[SEQ], d[PHASE] = split_time_tag(time_tag, navg)
    d[SRC] = src
    d[NSRC] = cfg[CFG_NSRC]
    d[NCHAN] = nchan
    d[CHAN0] = chan0
    d[BEAM] = nbeam
    d[NAVG] = navg
    d[DECIMATION] = navg
    d[TIME_TAG] = time_tag
    d[TUNING] = get_gbe(pkt)
    d[BAND_CHAN0] = chan0 if server == 1 else -1
    d[PAYLOAD_OFFSET] = HSIZE
    d[PAYLOAD_SIZE] = psize
    return VALID


# ring layout [src = beam*nserver + server][chan][4 f32]: the whole payload at src * P
place = place_source_block


def time_tag_of(seq: int, d: np.ndarray) -> int:
    return time_tag_at(seq, d[NAVG], d[PHASE])


def callback_args(seq0: int, d: np.ndarray, nsrc: int) -> tuple:
    nbeam = max(int(d[BEAM]), 1)
    return (int(seq0), time_tag_of(seq0, d), int(d[NAVG]), int(d[CHAN0]),
            int(d[NCHAN]) * int(nsrc) // nbeam, int(d[BEAM]))


def write_config(params: FormatParams) -> np.ndarray:
    return np.array([params.extra["nbeam"], params.extra["nchan"]], dtype=np.int64)


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    if hdr.size < HSIZE or wcfg.size < 1:
        return
    nbeam = wcfg[0]
    nserver = info[H_NSRC] // nbeam if nbeam > 0 else info[H_NSRC]
    if nserver <= 0:
        nserver = 1
    put_server(hdr, src % nserver + 1)
    put_beam(hdr, src // nserver + 1)
    put_gbe(hdr, info[H_TUNING])
    put_nchan(hdr, info[H_NCHAN])
    put_nbeam(hdr, nbeam)
    put_nserver(hdr, nserver)
    put_navg(hdr, info[H_DECIMATION])
    put_chan0(hdr, info[H_CHAN0])
    put_seq(hdr, seq)


def synth_recipe(params: FormatParams, nsrc: int) -> dict:
    """How ``asbru generate`` makes a valid stream: consecutive channel blocks from channel
    100, 24 spectra averaged per packet (time tags step by navg)."""
    nchan = params.extra["nchan"]
    navg = 24
    return dict(reader=reader_format(params.fmt), src0=1, seq0=1000 * navg, seq_inc=navg,
                src_value=lambda j: j,
                info=lambda j: {"nsrc": nsrc, "nchan": nchan, "chan0": 100 + j * nchan,
                                "decimation": navg}, max_nsrc=255)
