"""Which format does a packet file look like?  Used when ``asbru inspect --format X``
decodes nothing: the user most likely named the wrong format.

Cheap first (no compile): candidate format strings are the fixed-record formats whose record
size divides the file, and, for formats whose size is a header field (``nchan``, ...), the
string that field names, kept when the next record repeats the field.  Then at most a few
candidates are confirmed by decoding the first records.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import formats
from ..formats import spec

_SIZE_FIELDS = ("nchan", "nchan_pkt", "nchans")
MAX_CONFIRM = 4


def _candidates(data: bytes, exclude: str) -> list[str]:
    out: list[str] = []
    for name in formats.list():
        if name == exclude or name.startswith("example"):
            continue
        try:
            hdr = formats.module(name).HEADER
        except Exception:
            continue
        if len(data) < hdr.size:
            continue
        first = hdr.unpack(data[:hdr.size])
        sized = [(f"{name}_{first[k]}", k) for k in _SIZE_FIELDS
                 if isinstance(first.get(k), int) and first[k] > 0]
        for s, key in sized + [(name, None)]:
            try:
                rs = formats.get(s, "disk").params.record_size
            except spec.FormatError:
                continue
            if not rs or len(data) < rs:
                continue
            if key is not None:
                # a size named by the header: the next record (if any) must say it again
                nxt = data[rs:rs + hdr.size]
                if len(nxt) == hdr.size and hdr.unpack(nxt).get(key) != first[key]:
                    continue
            elif len(data) % rs:
                continue
            out.append(s)
            break
    return out


def guess(data: bytes, exclude: str) -> Optional[tuple[str, int, int]]:
    """(format string, valid, decoded) of the best candidate, or None."""
    from ..formats.batch import decode_buffer, split_records
    best = None
    for s in _candidates(data, exclude)[:MAX_CONFIRM]:
        f = formats.get(s, "disk")
        rs = int(f.params.record_size)
        head = np.frombuffer(data[: rs * 64], dtype=np.uint8)
        buf, offsets, lengths = split_records(head, rs)
        keep = lengths == rs
        if not keep.any():
            continue
        _desc, status = decode_buffer(f, buf, offsets[keep], lengths[keep], nsrc=4096)
        nvalid = int((status == spec.VALID).sum())
        if nvalid and (best is None or nvalid > best[1]):
            best = (s, nvalid, int(keep.sum()))
    return best
