"""Synthetic traffic for ``asbru generate``: valid packets of a format plus injected faults.

Packets are built with the format's own writer (``fill`` via
``asbru.formats.batch.encode_packets``), one source at a time so that per-source header
values (board numbers, DRX IDs, channel offsets) can differ, with defaults per format that
give consecutive decoded sequence numbers.  Every clean packet is then decoded with the
format's reader, so the truth records seq and src exactly as a capture sees them.

Faults, drawn per packet from one seeded generator (independent draws; a dropped packet
is neither corrupted nor duplicated, a corrupted one is not duplicated):

* loss: the packet is not emitted; its decoded ``[seq, src]`` goes to ``dropped_packets``.
* corrupt: the packet is emitted with its whole header overwritten by ``0xFF`` bytes (then
  ``0x00`` if the decoder still accepts that), keeping its size so a file's fixed records
  stay aligned; every corrupted packet is checked to decode INVALID.  Over UDP, a packet
  neither pattern breaks is cut to fewer bytes than the header instead.
* duplicate: the packet is emitted twice in a row.
* reorder W: each emitted packet's position gets a uniform random delay in [0, W)
  positions (a stable sort by ``position + delay``); ``reordered`` counts the packets
  that arrive after a packet that was originally behind them.

Formats whose decoder learns a stream parameter from the first packets (tbn: decimation
from two frames of one input; vdif: frames per second from a whole second) declare
``learn_steps`` in their recipe: that many leading time steps go out without faults and in
order; a fault there would change how the decoder numbers everything after it, and the
truth could not say what a capture sees.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from ..errors import ArgumentError
from ..formats import Format, spec
from ..recorder import PacketSet
from . import common


@dataclasses.dataclass
class Recipe:
    """How to make a valid stream of one format."""
    reader: str                          # format string to decode with
    src0: int                            # capture src0 that makes sources 0-based
    seq0: int                            # first header seq value passed to the writer
    seq_inc: int                         # header seq step per time
    src_value: Callable[[int], int]      # writer "src" for source j
    info: Callable[[int], dict]          # HeaderInfo fields for source j
    max_nsrc: int | None = None
    check_nsrc: Callable[[int], str | None] = lambda n: None
    learn_steps: int = 0                 # leading time steps kept fault-free (see below)


def recipe_for(fmt: Format, nsrc: int) -> Recipe:
    """The format's own ``synth_recipe``, or a generic stream: sources 0..nsrc-1, seq from
    1000, the HeaderInfo naming nsrc and the channel count."""
    p = fmt.params
    own = getattr(fmt.module, "synth_recipe", None)  # the format file knows its own stream
    if own is not None:
        return Recipe(**own(p, nsrc))
    nchan = int(p.extra.get("nchan", 0) or 0)
    return Recipe(p.fmt, 0, 1000, 1, lambda j: j, lambda j: {"nsrc": nsrc, "nchan": nchan})


def _payloads(rng: np.random.Generator, fmt: Format, ntime: int, nsrc: int) -> np.ndarray:
    size = fmt.params.payload_size
    if size is None:
        raise ArgumentError(f"FORMAT: {fmt.params.fmt!r} has no fixed payload size; give e.g. "
                            f"{fmt.name}_N")
    dt = (fmt.params.write_dtype or "").lower()
    if dt in ("f32", "cf32") and size % 4 == 0:
        # real-looking floats rather than random bit patterns (no NaNs)
        return rng.standard_normal((ntime, nsrc, size // 4), dtype=np.float32).view(np.uint8)
    return rng.integers(0, 256, (ntime, nsrc, size), dtype=np.uint8)


def build_clean(fmt: Format, recipe: Recipe, nsrc: int, ntime: int,
                rng: np.random.Generator) -> np.ndarray:
    """uint8[ntime * nsrc, record] packets in time-major order (packet k = t * nsrc + j)."""
    from ..formats.batch import encode_packets, headerinfo
    data = _payloads(rng, fmt, ntime, nsrc)
    rec = fmt.header.size + data.shape[2]
    out = np.empty((ntime, nsrc, rec), dtype=np.uint8)
    for j in range(nsrc):
        try:
            info = headerinfo(**recipe.info(j))
            raw = encode_packets(fmt, info, recipe.seq0, recipe.seq_inc, recipe.src_value(j), 0,
                                 data[:, j: j + 1, :])
        except spec.FormatError as exc:
            raise ArgumentError(f"FORMAT: {exc}") from None
        out[:, j, :] = np.frombuffer(raw, dtype=np.uint8).reshape(ntime, rec)
    return out.reshape(ntime * nsrc, rec)


def _decode(reader: Format, packets: np.ndarray, lengths: np.ndarray | None, nsrc: int, src0: int):
    from ..formats.batch import decode_buffer
    n, rec = packets.shape
    buf = np.ascontiguousarray(packets).reshape(-1)
    offsets = np.arange(n, dtype=np.int64) * rec
    lens = np.full(n, rec, np.int64) if lengths is None else lengths
    return decode_buffer(reader, buf, offsets, lens, nsrc, src0)


def make_stream(fmt: Format, nsrc: int, ntime: int, loss: float, reorder: int, duplicate: float,
                corrupt: float, seed: int | None, for_file: bool) -> tuple[PacketSet, dict[str, Any]]:
    """The emitted packets and the truth dictionary."""
    recipe = recipe_for(fmt, nsrc)
    if recipe.max_nsrc is not None and nsrc > recipe.max_nsrc:
        raise ArgumentError(f"--nsrc: format {fmt.name} can carry at most {recipe.max_nsrc} "
                            f"source(s), got {nsrc}")
    msg = recipe.check_nsrc(nsrc)
    if msg:
        raise ArgumentError(f"--nsrc: {msg}")
    reader = common.get_reader_format(recipe.reader, "disk", "FORMAT")
    rng = np.random.default_rng(seed)
    clean = build_clean(fmt, recipe, nsrc, ntime, rng)
    n, rec = clean.shape
    desc, status = _decode(reader, clean, None, nsrc, recipe.src0)
    bad = int((status != spec.VALID).sum())
    if bad:
        raise ArgumentError(f"FORMAT: {bad} of {n} generated {fmt.params.fmt} packets do not decode "
                            f"as valid {reader.params.fmt} with nsrc={nsrc} (no generator defaults "
                            "for this format)")
    seq = desc[:, spec.SEQ].copy()
    src = desc[:, spec.SRC].copy()

    # formats that learn a stream parameter (tbn decimation, vdif frames per second) get
    # their first time steps fault-free and in order, so the decoder numbers every packet
    # the same way in the clean and in the faulty stream
    protected = np.arange(n) < min(n, recipe.learn_steps * nsrc)
    drop = (rng.random(n) < loss) & ~protected
    corr = (rng.random(n) < corrupt) & ~drop & ~protected
    dup = (rng.random(n) < duplicate) & ~drop & ~corr & ~protected
    kept = np.flatnonzero(~drop)
    order = np.repeat(kept, 1 + dup[kept].astype(np.int64))       # duplicates adjacent
    if reorder > 1 and order.size:
        delay = rng.uniform(0, reorder, order.size)
        delay[protected[order]] = 0.0
        key = np.arange(order.size) + delay
        order = order[np.argsort(key, kind="stable")]
    if order.size:
        running = np.maximum.accumulate(order)
        reordered = int((order[1:] < running[:-1]).sum())
    else:
        reordered = 0

    emitted = clean[order]
    lengths = np.full(order.size, rec, np.int64)
    rows = np.flatnonzero(corr[order])
    if rows.size:
        hs = fmt.header.size
        if hs == 0 and for_file:
            raise ArgumentError(f"--corrupt: format {fmt.name} has no header to break")
        remaining = rows
        for fill_byte in (0xFF, 0x00):
            if hs == 0:
                break
            emitted[remaining, :hs] = fill_byte
            _, st = _decode(reader, emitted[remaining], None, nsrc, recipe.src0)
            remaining = remaining[st != spec.INVALID]
            if remaining.size == 0:
                break
        if remaining.size:
            if for_file:
                raise ArgumentError(f"--corrupt: cannot make {fmt.name} packets invalid without "
                                    "changing the record size; use --to, or --corrupt 0")
            lengths[remaining] = max(1, hs - 1)     # shorter than a header
    buf = np.ascontiguousarray(emitted).reshape(-1)
    packets = PacketSet(buf=buf, offsets=np.arange(order.size, dtype=np.int64) * rec,
                        lengths=lengths, kind="records", record_size=rec)

    # truth, computed from the injection (not by decoding the emitted stream)
    good = order[~corr[order]]
    pairs = np.unique(np.stack([seq[good], src[good]], axis=1), axis=0) if good.size else np.zeros((0, 2), np.int64)
    per_src = np.bincount(src[good], minlength=nsrc) if good.size else np.zeros(nsrc, np.int64)
    truth: dict[str, Any] = {
        "format": fmt.params.fmt, "reader_format": reader.params.fmt, "nsrc": nsrc,
        "src0": recipe.src0, "ntime": ntime, "seed": seed,
        "sent": int(order.size), "dropped": int(drop.sum()), "duplicated": int(dup.sum()),
        "reordered": reordered, "corrupted": int(corr.sum()),
        "valid": int(good.size), "invalid": int(corr.sum()), "duplicates": int(dup.sum()),
        "seq_min": int(pairs[:, 0].min()) if pairs.size else None,
        "seq_max": int(pairs[:, 0].max()) if pairs.size else None,
        "missing": (int((pairs[:, 0].max() - pairs[:, 0].min() + 1) * nsrc - pairs.shape[0])
                    if pairs.size else 0),
        "per_source": {str(j): int(per_src[j]) for j in range(nsrc) if per_src[j]},
        "dropped_packets": [[int(a), int(b)] for a, b in zip(seq[drop], src[drop])],
        "corrupted_packets": [[int(a), int(b)] for a, b in zip(seq[corr], src[corr])],
        "duplicated_packets": [[int(a), int(b)] for a, b in zip(seq[dup], src[dup])],
    }
    return packets, truth
