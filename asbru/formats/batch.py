"""Whole-batch kernels for one format: header filling (writers) and record decoding (tools).

The kernels are the ordinary Python functions of :mod:`asbru.formats.batch_kernels`, bound
per format by :func:`asbru.formats.engine.bound_module` (the format's ``fill``/``decode``/
``place`` become their module globals: a dispatcher passed as an argument would defeat
numba's on-disk cache -- measured: every start-up recompiled).

* :func:`header_filler` -> ``fill_headers(hdrs, info, wcfg, seq, seq_inc, src, src_inc,
  ntime, nsrc, framecount0)``: the headers of a ``send()`` batch in one compiled call.
* :func:`encode_packets` -> the bytes a DiskWriter would write (tests, tools).
* :func:`decode_records` -> ``decode_all(buf, offsets, lengths, cfg, state, desc, status)``:
  decode many packets held in one buffer (``asbru inspect``, tests).
"""
from __future__ import annotations

import types

import numpy as np

from . import Format, batch_kernels, engine, spec

def _bound(fmt: Format) -> types.ModuleType:
    """The binding of :mod:`asbru.formats.batch_kernels` to ``fmt``'s functions."""
    modname = engine.importable_name(fmt.module)
    fill = f"{modname}:fill" if getattr(fmt.module, "fill", None) is not None else None
    return engine.bound_module(f"batch_{fmt.name}", batch_kernels,
                               {"_decode": f"{modname}:decode", "_place": f"{modname}:place",
                                "_fill": fill}, depends_on=(spec,))


def header_filler(fmt: Format):
    """Compiled ``fill_headers(hdrs uint8[npkt, hsize], info, wcfg, seq, seq_inc, src,
    src_inc, ntime, nsrc, framecount0) -> npkt filled`` for a writable format."""
    if fmt.fill is None:
        raise spec.FormatError(f"format {fmt.params.fmt!r} has no header filler (not writable)")
    return _bound(fmt).fill_headers


def decode_records(fmt: Format):
    """Compiled ``decode_all(buf uint8[:], offsets int64[n], lengths int64[n], cfg, state,
    desc int64[n, NDESC], status int64[n]) -> nvalid``; ``desc`` rows start at -1."""
    return _bound(fmt).decode_all


def record_placer(fmt: Format):
    """Compiled ``place_all(buf, offsets, desc, status, slots uint8[nslot, nsrc*P], seq0,
    nsrc) -> nplaced``: a reference ring placement of decoded records (tests, tools)."""
    return _bound(fmt).place_all


def headerinfo(**fields: int) -> np.ndarray:
    """A HeaderInfo int64 array (``spec.HEADERINFO_FIELDS``), unspecified fields 0."""
    info = np.zeros(spec.NINFO, dtype=np.int64)
    for name, value in fields.items():
        if name not in spec.HEADERINFO_FIELDS:
            raise spec.FormatError(f"unknown HeaderInfo field {name!r}; known: "
                                   f"{', '.join(spec.HEADERINFO_FIELDS)}")
        info[spec.HEADERINFO_FIELDS.index(name)] = int(value)
    return info


def payload_bytes(fmt: Format, data: np.ndarray) -> np.ndarray:
    """``data`` (ntime, nsrc, ...) as uint8[ntime, nsrc, P], checking P against the format."""
    arr = np.ascontiguousarray(data)
    if arr.ndim < 3:
        raise spec.FormatError(f"data must be (ntime, nsrc, nsamples); got shape {arr.shape}")
    ntime, nsrc = arr.shape[:2]
    raw = arr.reshape(ntime, nsrc, -1).view(np.uint8).reshape(ntime, nsrc, -1)
    p = fmt.params.payload_size
    if p is not None and raw.shape[2] != p:
        raise spec.FormatError(f"format {fmt.params.fmt!r}: payload must be {p} bytes per packet, "
                               f"data gives {raw.shape[2]}")
    return raw


def encode_packets(fmt: Format, info: np.ndarray, seq: int, seq_inc: int, src: int,
                   src_inc: int, data: np.ndarray, framecount0: int = 0) -> bytes:
    """Header + payload of every packet of ``data`` (ntime, nsrc, ...) back to back, in
    ``send()`` order — byte for byte what a DiskWriter writes."""
    raw = payload_bytes(fmt, data)
    ntime, nsrc, p = raw.shape
    hsize = fmt.header.size
    npkt = ntime * nsrc
    hdrs = np.zeros((npkt, hsize), dtype=np.uint8)
    if hsize:
        filler = header_filler(fmt)
        filler(hdrs, np.asarray(info, dtype=np.int64), fmt.write_config(), np.int64(seq),
               np.int64(seq_inc), np.int64(src), np.int64(src_inc), np.int64(ntime),
               np.int64(nsrc), np.int64(framecount0))
    out = np.empty((npkt, hsize + p), dtype=np.uint8)
    out[:, :hsize] = hdrs
    out[:, hsize:] = raw.reshape(npkt, p)
    return out.tobytes()


def split_records(data: bytes | np.ndarray, record_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(buf, offsets, lengths) for a file of fixed-size records (a short tail is kept)."""
    buf = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    buf = np.ascontiguousarray(buf, dtype=np.uint8).reshape(-1)
    if record_size <= 0:
        raise spec.FormatError(f"record_size must be > 0, got {record_size}")
    n = -(-buf.size // record_size)
    offsets = np.arange(n, dtype=np.int64) * record_size
    lengths = np.minimum(record_size, buf.size - offsets).astype(np.int64)
    return buf, offsets, lengths


def decode_buffer(fmt: Format, buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
                  nsrc: int, src0: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Decode packets ``buf[offsets[k]: offsets[k] + lengths[k]]`` -> (desc, status).

    HOLD packets are decoded again after the next VALID one, as the capture engine does.
    """
    n = offsets.shape[0]
    desc = np.full((n, spec.NDESC), -1, dtype=np.int64)
    status = np.full(n, spec.INVALID, dtype=np.int64)
    cfg = fmt.capture_config(nsrc, src0)
    state = np.zeros(spec.NSTATE, dtype=np.int64)
    fn = decode_records(fmt)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    fn(buf, offsets, lengths, cfg, state, desc, status)
    held = np.flatnonzero(status == spec.HOLD)
    if held.size:
        # decoding in order already advanced the state; re-decode the held packets once
        d2 = np.full((held.size, spec.NDESC), -1, dtype=np.int64)
        s2 = np.full(held.size, spec.INVALID, dtype=np.int64)
        fn(buf, offsets[held], lengths[held], cfg, state, d2, s2)
        desc[held] = d2
        status[held] = s2
    return desc, status
