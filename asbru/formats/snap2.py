"""``snap2`` -- OVRO-LWA SNAP2 F-engine packets: ``nchan`` channels x ``npol`` inputs of ``ci4``.

A packet is a 32-byte big-endian header and ``nchan * npol`` payload bytes, channel-major
(``[chan][input]``, one ci4 byte per input).  A pipeline receives ``nsrc`` packets per
spectrum: ``npol_tot / npol`` input blocks times ``nchan_tot / nchan`` channel blocks.  The
ring holds one time slot per spectrum in the "vector" layout ``[chan nchan_tot][input
npol_tot]``: the ``npol`` bytes of local channel ``c`` go to ``(chan_rel0 + c) * npol_tot +
pol0``, with ``chan_rel0 = chan_block_id * nchan``.  ``src = pol0 / npol + chan_block_id *
(npol_tot / npol) - src0``.

Deliberate differences from Bifrost (docs/differences-from-bifrost.md, formats #5, #13,
#18):

* One layout, the general form of Bifrost's vector path (any ``npol``, any ``pol0``
  multiple of ``npol``).  Bifrost builds actually ran a scalar path with another layout
  (``[local chan][src][32 bytes]``, half of a 64-input row).
* ``src0`` is honoured (Bifrost ignored it); ``0 <= src < nsrc`` is checked.
* Zero ``npol``/``nchan``/``npol_tot``/``nchan_tot`` (Bifrost divided by them), totals that
  are not whole multiples of the packet's counts, ``pol0`` not a multiple of ``npol``, a block
  that reaches past the totals, a header-derived source count that differs from the
  configured ``nsrc``, and a payload length other than ``nchan * npol`` are INVALID.
* Sequence changes come from the configuration, not from a jump of ``seq``: CHANGE fields
  are the pipeline's first absolute channel (``chan0``: header chan0 minus the block's
  offset, the same for every packet of the pipeline), ``nchan``, ``npol`` (x0), ``npol_tot``
  (x1), ``nchan_tot`` (x2) and ``sync_time`` (``sync``).  Forward and backward jumps are the
  engine's business, as for every other format.
* The callback's ``chan0_absolute`` is that pipeline first channel (Bifrost: the header chan0
  of whichever packet triggered the callback).  ``time_tag_ptr`` is pre-set to ``sync_time``
  (``time_tag_of``), as in Bifrost.
* A writer exists (Bifrost's filler was unregistered and stored fields in host order): write
  string ``snap2_<nchan>x<npol>`` (per packet); every field big-endian.  HeaderInfo: ``nsrc``
  = packets per spectrum, ``nchan`` = ``nchan_tot`` (channels of the pipeline), ``chan0`` =
  the pipeline's first absolute channel, ``tuning`` = ``sync_time``; ``send()``'s ``seq`` is
  the spectrum counter and ``src`` the source index (input block varies fastest).  The same
  string names the record size for a DiskReader (``32 + nchan * npol``); plain ``snap2`` reads
  Bifrost's 9000-byte records.
"""
from __future__ import annotations

import re

import numpy as np

from .spec import (CFG_NSRC, CFG_SRC0, CHAN0, H_CHAN0, H_NCHAN, H_NSRC, H_TUNING, INVALID,
                   NCHAN, NSRC, PAYLOAD_OFFSET, PAYLOAD_SIZE, SEQ, SRC, SYNC, TIME_TAG,
                   TUNING, VALID, X0, X1, X2, X3, Field, FormatError, FormatParams, Header,
                   kernel)
from .spec import default_capture_config

NAME = "snap2"

HEADER = Header([
    Field("seq", 0, "u64be", "spectrum counter"),
    Field("sync_time", 8, "u32be", "UNIX time of the F-engine sync"),
    Field("npol", 12, "u16be", "inputs in this packet"),
    Field("npol_tot", 14, "u16be", "inputs in the whole system"),
    Field("nchan", 16, "u16be", "channels in this packet"),
    Field("nchan_tot", 18, "u16be", "channels of this pipeline"),
    Field("chan_block_id", 20, "u32be", "index of this packet's channel block"),
    Field("chan0", 24, "u32be", "absolute first channel of this packet"),
    Field("pol0", 28, "u32be", "first input of this packet"),
])
(get_seq, get_sync_time, get_npol, get_npol_tot, get_nchan, get_nchan_tot, get_chan_block_id,
 get_chan0, get_pol0) = HEADER.readers(
    "seq", "sync_time", "npol", "npol_tot", "nchan", "nchan_tot", "chan_block_id", "chan0",
    "pol0")
(put_seq, put_sync_time, put_npol, put_npol_tot, put_nchan, put_nchan_tot, put_chan_block_id,
 put_chan0, put_pol0) = HEADER.writers(
    "seq", "sync_time", "npol", "npol_tot", "nchan", "nchan_tot", "chan_block_id", "chan0",
    "pol0")

HEADER_SIZE = HEADER.size
WRITE_DTYPE = "ci4"

CHANGE = ("chan0", "nchan", "npol", "npol_tot", "nchan_tot", "sync")
# the descriptor's spare slots this format uses, by name (spec.SPARE_SLOTS)
NPOL = X0       # polarisations in this packet
NPOL_TOT = X1   # polarisations in the stream
NCHAN_TOT = X2  # channels in the stream
POL0 = X3       # first polarisation of this packet
SLOTS = {"npol": NPOL, "npol_tot": NPOL_TOT, "nchan_tot": NCHAN_TOT, "pol0": POL0}
CALLBACK_FAMILY = "pointer"
CALLBACK_ARGS = ("seq0", "chan0_absolute", "nchan_per_packet", "nsrc")

_WRITE_RE = re.compile(r"snap2_(\d+)x(\d+)")


def matches(fmt: str) -> bool:
    """Bifrost selects SNAP2 for any string starting with ``snap2``."""
    return fmt.startswith("snap2")


def parse(fmt: str, role: str) -> FormatParams:
    m = _WRITE_RE.fullmatch(fmt)
    if m and (int(m.group(1)) <= 0 or int(m.group(2)) <= 0):
        m = None
    if role == "write" and not m:
        raise FormatError(f"format {fmt!r}: the snap2 writer takes 'snap2_<nchan>x<npol>' "
                          "(channels and inputs per packet, both > 0)")
    if m:
        nchan, npol = int(m.group(1)), int(m.group(2))
        p = nchan * npol
        return FormatParams(name=NAME, fmt=fmt, role=role, header_size=HEADER_SIZE,
                            payload_size=p, record_size=HEADER_SIZE + p,
                            samples_per_packet=p, write_dtype=WRITE_DTYPE,
                            extra={"nchan": nchan, "npol": npol})
    if fmt != "snap2":
        raise FormatError(f"format {fmt!r}: expected 'snap2' or 'snap2_<nchan>x<npol>' "
                          "(channels and inputs per packet)")
    # plain 'snap2': any packet size over UDP; Bifrost's DiskReader reads 9000-byte records
    return FormatParams(name=NAME, fmt=fmt, role=role, header_size=HEADER_SIZE,
                        payload_size=None, record_size=9000 if role == "disk" else None)


capture_config = default_capture_config


@kernel
def decode(pkt, cfg, state, d):
    if pkt.size < HEADER_SIZE:
        return INVALID
    seq = get_seq(pkt)
    npol = get_npol(pkt)
    npol_tot = get_npol_tot(pkt)
    nchan = get_nchan(pkt)
    nchan_tot = get_nchan_tot(pkt)
    block = get_chan_block_id(pkt)
    chan0_abs = get_chan0(pkt)
    pol0 = get_pol0(pkt)
    if seq < 0 or npol == 0 or nchan == 0 or npol_tot == 0 or nchan_tot == 0:
        return INVALID
    if npol_tot % npol != 0 or nchan_tot % nchan != 0 or pol0 % npol != 0:
        return INVALID
    if pkt.size - HEADER_SIZE != nchan * npol:
        return INVALID  # short (or long) payload: never copy stale bytes
    if pol0 + npol > npol_tot or (block + 1) * nchan > nchan_tot:
        return INVALID
    npol_blocks = npol_tot // npol
    if npol_blocks * (nchan_tot // nchan) != cfg[CFG_NSRC]:
        return INVALID
    src = pol0 // npol + block * npol_blocks - cfg[CFG_SRC0]
    if src < 0 or src >= cfg[CFG_NSRC]:
        return INVALID
    d[SEQ] = seq
    d[SRC] = src
    d[NSRC] = npol_blocks * (nchan_tot // nchan)
    d[TIME_TAG] = get_sync_time(pkt)
    d[SYNC] = d[TIME_TAG]
    d[TUNING] = chan0_abs
    d[CHAN0] = chan0_abs - block * nchan
    d[NCHAN] = nchan
    d[NPOL] = npol
    d[NPOL_TOT] = npol_tot
    d[NCHAN_TOT] = nchan_tot
    d[POL0] = pol0
    d[PAYLOAD_OFFSET] = HEADER_SIZE
    d[PAYLOAD_SIZE] = nchan * npol
    return VALID


@kernel
def place(payload, d, slot, nsrc):
    """Channel c's ``npol`` bytes go to ``(chan_rel0 + c) * npol_tot + pol0`` in the slot;
    the block position comes from ``src`` alone, so zero-filling a source needs only ``d``."""
    src = d[SRC]
    nchan = d[NCHAN]
    npol = d[NPOL]
    npol_tot = d[NPOL_TOT]
    if src < 0 or src >= nsrc or nchan <= 0 or npol <= 0 or npol_tot < npol:
        return
    npol_blocks = npol_tot // npol
    pol0 = (src % npol_blocks) * npol
    chan_rel0 = (src // npol_blocks) * nchan
    for c in range(nchan):
        s = c * npol
        if s + npol > payload.size:
            return
        o = (chan_rel0 + c) * npol_tot + pol0
        if o + npol > slot.size:
            return
        for k in range(npol):
            slot[o + k] = payload[s + k]


def callback_args(seq0: int, d: np.ndarray, nsrc: int) -> tuple:
    return (int(seq0), int(d[CHAN0]), int(d[NCHAN]), int(nsrc))


def time_tag_of(seq: int, d: np.ndarray) -> int:
    """Pointer family: the value ``time_tag_ptr`` is pre-set to (the sync time)."""
    return int(d[SYNC])


def write_config(params: FormatParams) -> np.ndarray:
    return np.array([params.extra["nchan"], params.extra["npol"]], dtype=np.int64)


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    """A snap2 header (all fields big-endian) for source ``src`` of spectrum ``seq``."""
    nchan = wcfg[0]
    npol = wcfg[1]
    nchan_tot = info[H_NCHAN]
    nsrc = info[H_NSRC]
    nchan_blocks = nchan_tot // nchan if nchan > 0 else 0
    npol_blocks = nsrc // nchan_blocks if nchan_blocks > 0 else 0
    if npol_blocks > 0:
        block = src // npol_blocks
        pol0 = (src - block * npol_blocks) * npol
    else:
        block = 0
        pol0 = 0
    put_seq(hdr, seq)
    put_sync_time(hdr, info[H_TUNING] & 0xFFFFFFFF)
    put_npol(hdr, npol & 0xFFFF)
    put_npol_tot(hdr, (npol_blocks * npol) & 0xFFFF)
    put_nchan(hdr, nchan & 0xFFFF)
    put_nchan_tot(hdr, nchan_tot & 0xFFFF)
    put_chan_block_id(hdr, block & 0xFFFFFFFF)
    put_chan0(hdr, (info[H_CHAN0] + block * nchan) & 0xFFFFFFFF)
    put_pol0(hdr, pol0 & 0xFFFFFFFF)


def synth_recipe(params: FormatParams, nsrc: int) -> dict:
    """How ``asbru generate`` makes a valid stream: every source an input block of the same
    channels."""
    nchan = params.extra.get("nchan", 0) or 0
    return dict(reader=params.fmt, src0=0, seq0=1000, seq_inc=1, src_value=lambda j: j,
                info=lambda j: {"nsrc": nsrc, "nchan": nchan, "chan0": 0})
