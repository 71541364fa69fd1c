"""Bridges between asbru rings and PSRDADA rings.

* :func:`ring_to_dada`: every sequence of an asbru ring becomes one PSRDADA observation
  (header block: ``KEY value`` lines built by :func:`dada_header`; data block: the sequence's
  bytes, in order), so ``dada_dbdisk``, ``dada_dbnull``, dspsr or heimdall read a capture
  live.  Per-packet flags have no place in PSRDADA: missing packets arrive as the zeros the
  capture wrote.
* :func:`dada_to_ring`: every PSRDADA observation becomes one asbru sequence (header: the
  PSRDADA header as a JSON object of strings; time tag: ``ASBRU_TIME_TAG`` when the writer
  was asbru, else -1).
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Optional

import numpy as np

from ..errors import ArgumentError, EndOfDataStop
from .hdu import DadaReader, DadaWriter, parse_key

# sequence-header (callback JSON) key -> PSRDADA key
STANDARD_KEYS = {
    "nchan": "NCHAN", "nbit": "NBIT", "npol": "NPOL", "ndim": "NDIM", "tsamp": "TSAMP",
    "bw": "BW", "freq": "FREQ", "cfreq": "FREQ", "utc_start": "UTC_START", "source": "SOURCE",
    "telescope": "TELESCOPE", "instrument": "INSTRUMENT", "nant": "NANT", "nsrc": "NANT",
}


def dada_header(name: str, time_tag: int, header: Any, now: Optional[float] = None) -> dict[str, object]:
    """PSRDADA header pairs for one asbru sequence.

    Always: ``UTC_START`` (the callback's ``utc_start``, else the wall clock when the
    sequence reached the bridge), ``OBS_OFFSET 0``, ``ASBRU_TIME_TAG``, and ``ASBRU_SEQUENCE``
    when the sequence has a name.  From a JSON-object header: the keys of
    :data:`STANDARD_KEYS` under their PSRDADA names (``complex: true/false`` gives ``NDIM
    2/1`` when there is no ``ndim``), and every other scalar as ``ASBRU_<KEY>``.
    """
    pairs: dict[str, object] = {}
    hdr = header if isinstance(header, dict) else None
    if hdr is not None:
        for k, v in hdr.items():
            if isinstance(v, (dict, list)) or v is None:
                continue
            key = STANDARD_KEYS.get(str(k).lower())
            if key is not None:
                pairs.setdefault(key, v)
            elif "".join(str(k).split()) == str(k) and str(k):
                pairs[f"ASBRU_{str(k).upper()}"] = v
        if "NDIM" not in pairs and isinstance(hdr.get("complex"), bool):
            pairs["NDIM"] = 2 if hdr["complex"] else 1
    if "UTC_START" not in pairs:
        pairs["UTC_START"] = time.strftime("%Y-%m-%d-%H:%M:%S", time.gmtime(time.time() if now is None else now))
    pairs["OBS_OFFSET"] = 0
    pairs["ASBRU_TIME_TAG"] = time_tag
    if name:
        pairs["ASBRU_SEQUENCE"] = name
    return pairs


def ring_to_dada(ring: Any, key: Any, *, span_size: Optional[int] = None, guarantee: bool = True,
                 stop: Optional[threading.Event] = None, extra: Optional[dict[str, object]] = None) -> dict[str, int]:
    """Write every sequence of ``ring`` into the PSRDADA ring at ``key`` until the ring's
    writer ends (or ``stop`` is set).  Returns ``{"nobs", "nbyte"}``."""
    k = parse_key(key)
    writer = DadaWriter(k, stop)
    stats = {"nobs": 0, "nbyte": 0}
    try:
        for rseq in ring.read(guarantee=guarantee):
            if stop is not None and stop.is_set():
                break
            pairs = dada_header(rseq.name, rseq.time_tag, rseq.header_json)
            if extra:
                pairs.update(extra)
            writer.begin(pairs)
            try:
                size = int(span_size or ring.contiguous_span)
                offset = 0
                while True:
                    try:
                        span = rseq.acquire(offset, size)
                    except EndOfDataStop:
                        break
                    with span:
                        writer.write(span.data_view()[0])
                        stats["nbyte"] += span.size
                    offset += span.size
                    if stop is not None and stop.is_set():
                        break
            finally:
                writer.end()
            stats["nobs"] += 1
    except InterruptedError:
        pass
    finally:
        writer.close()
    return stats


def dada_to_ring(key: Any, ring: Any, *, nobs: Optional[int] = None,
                 stop: Optional[threading.Event] = None, end_writing: bool = True) -> dict[str, int]:
    """Read observations from the PSRDADA ring at ``key`` into ``ring`` (one sequence each)
    until ``nobs`` observations were read or ``stop`` is set.  Returns ``{"nobs", "nbyte"}``."""
    k = parse_key(key)
    if nobs is not None and nobs < 1:
        raise ArgumentError(f"nobs must be >= 1 or None; got {nobs!r}")
    reader = DadaReader(k, stop)
    stats = {"nobs": 0, "nbyte": 0}
    w = None
    try:
        if not reader.lock():
            return stats
        bufsz = reader.data.bufsz
        if ring.contiguous_span < bufsz:
            ring.resize(bufsz, max(4 * bufsz, ring.total_span))
        w = ring.begin_writing()
        while nobs is None or stats["nobs"] < nobs:
            hdr = reader.next_header()
            if hdr is None:
                break
            tt = hdr.get("ASBRU_TIME_TAG", "-1")
            try:
                time_tag = int(tt)
            except ValueError:
                time_tag = -1
            with w.begin_sequence(name="", time_tag=time_tag if time_tag >= 0 else -1,
                                  header=json.dumps(hdr)) as seq:
                for block in reader.blocks():
                    pos = 0
                    while pos < block.size:
                        n = min(block.size - pos, ring.contiguous_span)
                        with seq.reserve(n) as span:
                            np.copyto(span.data_view()[0], block[pos:pos + n])
                        pos += n
                        stats["nbyte"] += n
            stats["nobs"] += 1
    finally:
        reader.close()
        if w is not None and end_writing:
            w.end_writing()
    return stats
