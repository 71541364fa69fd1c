"""``generic_N``: headerless packets of N bytes (u8) — writer only, as in Bifrost.

Each packet is ``data[i, j, :]`` verbatim (docs/formats.md, generic_N); a DiskWriter file is the raw
array.  There is deliberately no reader: without a header a packet carries no time index
or source, so a capture could only guess where it belongs (a record's position in a file
is not a time index once anything is lost).  ``get("generic_N", "capture"/"disk")`` raises
FormatError; ``decode`` exists only to satisfy the format interface and rejects everything.
"""
from __future__ import annotations

import numpy as np

from .spec import (INVALID, FormatError, FormatParams, Header,
                   kernel, parse_int_suffix)
from .spec import place_source_block

NAME = "generic"
HEADER = Header([], size=0)
WRITE_DTYPE = "u8"

CHANGE: tuple[str, ...] = ()
CALLBACK_FAMILY = "value"
CALLBACK_ARGS: tuple[str, ...] = ()


def matches(fmt: str) -> bool:
    return fmt.startswith("generic")


def parse(fmt: str, role: str) -> FormatParams:
    n = parse_int_suffix(fmt, "generic_", "N")
    if role != "write":
        raise FormatError(f"format {fmt!r} is writer-only (no header: nothing to place packets by); "
                          "use it with DiskWriter/UDPTransmit")
    return FormatParams(name=NAME, fmt=fmt, role=role, header_size=0, payload_size=n,
                        record_size=n, fixed_packet_size=n, samples_per_packet=n,
                        write_dtype=WRITE_DTYPE, extra={"nbyte": n})


def capture_config(params: FormatParams, nsrc: int, src0: int) -> np.ndarray:
    raise FormatError(f"format {params.fmt!r} is writer-only")


@kernel
def decode(pkt, cfg, state, d):
    return INVALID


# ring layout [src][N bytes]: the whole payload at src * P
place = place_source_block


def callback_args(seq0: int, d: np.ndarray, nsrc: int) -> tuple:
    return ()


def time_tag_of(seq: int, d: np.ndarray) -> int:
    return int(seq)


def write_config(params: FormatParams) -> np.ndarray:
    return np.zeros(1, dtype=np.int64)


@kernel
def fill(hdr, info, wcfg, seq, src, framecount):
    return  # no header
