"""``ndp_tbf`` -- LWA NDP transient buffer, frequency domain: 12 channels x 64 stands x 2 pols ci4.

NDP's TBF frames have ADP TBF's 24-byte header (see ``tbf.py``) with their own frame ID,
0x05 (ADP's 0x01 with the NDP bit 0x04), and 64 stands: the payload is 12 x 64 x 2 ``ci4``
bytes = 1536, the frame 1560 bytes.  The nstand field says 64.  The LWA Software Library
(LSL 3) tells the two apart by this ID and the nstand field; its channel width is NDP's
196 MHz / 8192 = 23 925.78125 Hz, so one spectrum is 8192 ticks of the time tag.

Format strings: ``ndp_tbf`` (every role) and, for readers, ``ndp_tbf_T`` (T = time-tag ticks
between spectra, default 8192).  Everything else is ADP TBF's: ``seq = time_tag // T``
with the phase kept, sources are 12-channel blocks ``src = (first_chan - src0) / 12``
(pass the first channel as ``src0``), ring slot ``[src][12 chan][64 stand][2 pol]``, no
configuration change, callback ``(seq0, time_tag, chan0 = src0, nchan = 12 * nsrc, nsrc)``.

Writer: dtype ci4, 1536 samples per frame; ``src`` to first_chan (callers step it by 12),
the frame counter to the 24-bit frame count, 64 to nstand, ``seq`` to the time tag.  A
frame with ADP's ID (or any other) is INVALID here, and an NDP frame is INVALID for ``tbf``.
Bifrost has no NDP TBF.
"""
from __future__ import annotations

from .spec import FormatError, FormatParams, Signature, kernel, place_source_block
from .tbf import (CALLBACK_ARGS, CALLBACK_FAMILY, CHANGE, HEADER, HSIZE, NCHAN_PKT, SLOTS,
                  callback_args, capture_config, decode_frame, fill_frame, time_tag_of,
                  write_config)

NAME = "ndp_tbf"
NSTAND = 64
PAYLOAD = NCHAN_PKT * NSTAND * 2  # 1536 bytes of ci4
WRITE_DTYPE = "ci4"
NDP_TBF_ID = 0x05
DEFAULT_TICKS = 8192  # 196 MHz / 23 925.78125 Hz
SIGNATURE = Signature(match=((0, b"\xde\xc0\xde\x5c"), (4, b"\x05")), packet_sizes=(HSIZE + PAYLOAD,))

__all__ = ["NAME", "HEADER", "CHANGE", "CALLBACK_FAMILY", "CALLBACK_ARGS", "WRITE_DTYPE",
           "matches", "parse", "capture_config", "decode", "place", "fill", "callback_args",
           "time_tag_of", "write_config", "synth_recipe"]


def matches(fmt: str) -> bool:
    return fmt == NAME or fmt.startswith(NAME + "_")


def parse(fmt: str, role: str) -> FormatParams:
    ticks = DEFAULT_TICKS
    if fmt != NAME:
        tail = fmt[len(NAME) + 1:]
        if role == "write" or not (tail.isdigit() and int(tail) > 0):
            raise FormatError(f"format {fmt!r}: expected 'ndp_tbf'" +
                              ("" if role == "write" else " or 'ndp_tbf_T' (T = time-tag ticks per spectrum, > 0)"))
        ticks = int(tail)
    return FormatParams(name=NAME, fmt=fmt, role=role, header_size=HSIZE, payload_size=PAYLOAD,
                        record_size=HSIZE + PAYLOAD, fixed_packet_size=HSIZE + PAYLOAD,
                        samples_per_packet=PAYLOAD, write_dtype=WRITE_DTYPE,
                        extra={"ticks": ticks, "nchan": NCHAN_PKT, "nstand": NSTAND})


@kernel
def decode(pkt, cfg, state, d):
    return decode_frame(pkt, cfg, d, NDP_TBF_ID, PAYLOAD)


# ring layout [src = 12-channel block][12 chan][64 stand][2 pol][ci4]: the payload at src * P
place = place_source_block


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    fill_frame(hdr, seq, src, framecount, NDP_TBF_ID, NSTAND)


def synth_recipe(params: FormatParams, nsrc: int) -> dict:
    """How ``asbru generate`` makes a valid stream: 12-channel blocks from channel 1000,
    one spectrum (8192 ticks) per time step."""
    return dict(reader=NAME, src0=1000, seq0=1000 * DEFAULT_TICKS, seq_inc=DEFAULT_TICKS,
                src_value=lambda j: 1000 + NCHAN_PKT * j, info=lambda j: {})
