"""The ``disk`` backend's ``resync`` (template, bound once with the backend).

A byte stream (a file, a pipe) can lose the record alignment (a short or long record):
after a record that does not decode, :func:`resync` looks for the nearest place where
records decode again.  It decodes through the format's entry points in the capture config
(:mod:`asbru.formats.indirect`), so one compile serves every format; the loop calls it as
``_resync``.
"""
from __future__ import annotations

import numpy as np

from asbru.capture.layout import (C_NINVALID, C_NINVALID_BYTES, C_NRECEIVED, C_NRESYNC,
                                  C_NSKIPPED_BYTES, DISK_BACK_ROWS, IO_BACK, IO_CARRY_LEN,
                                  IO_CARRY_OFF, IO_EOF, IO_FILL, IO_NEED, IO_SCAN_END, R_COUNT,
                                  W_N)
from asbru.capture.backends.disk_rows import flat as _flat, read_cap as _read_cap, rows as _rows
from asbru.formats.engine import bound_kernel
from asbru.formats.indirect import decode as _decode
from asbru.formats.spec import INVALID, NDESC as _NDESC, SEQ, VALID

BINDS = ()


@bound_kernel
def _decode_at(flat, c, rs, cfg, fstate, fs, d):
    # decode the record starting at byte c (VALID, HOLD: a format still learning, or
    # INVALID) on a copy of the learning state, so that looking changes nothing
    for j in range(fs.shape[0]):
        fs[j] = fstate[j]
    for j in range(d.shape[0]):
        d[j] = -1
    return _decode(flat[c:c + rs], cfg, fs, d)


@bound_kernel
def _agree(r1, d1, r2, d2, span):
    # two records that follow each other in a stream have seqs close together; a place
    # inside the records that happens to decode (chips at +3 bytes, say) gives seqs made of
    # payload bytes, far apart
    if r1 == INVALID or r2 == INVALID:
        return False
    if r1 == VALID and r2 == VALID:
        dd = d2[SEQ] - d1[SEQ]
        return -span < dd and dd < span
    return True


@bound_kernel
def _defer(io, rst, i, b, base, fill, rs, need, cnt):
    # the batch ends too soon after record i to decide: hand record i back (it was counted
    # invalid) and read it again at the start of the next batch, which holds at least
    # ``need`` bytes from it (the records before it stay behind it, see _fetch)
    cnt[C_NINVALID] -= 1
    cnt[C_NINVALID_BYTES] -= rs
    cnt[C_NRECEIVED] -= rst[R_COUNT] - i
    rst[R_COUNT] = i + 1
    io[IO_CARRY_LEN] += fill - b
    io[IO_CARRY_OFF] = b - base
    io[IO_NEED] = need


@bound_kernel
def resync(io, rbuf_all, rlen, rst, i, cfg, fstate, cnt, win):
    # record i of the receive buffer decoded INVALID.  If the record after it decodes, only
    # record i was bad.  If not, a short (or long) record has shifted every record after
    # it: go on from the nearest byte past record i's start where a record decodes and the
    # record after it decodes too, with a seq close to its own (where the buffer holds it);
    # record i then counts as one invalid packet of the bytes up to there.  Each byte of a
    # buffer is scanned once (io[IO_SCAN_END]: no record starts before it).
    # The outcome must not depend on where the input was cut into batches (a pipe cuts it
    # anywhere): the records before record i are looked at in the rows in front of the
    # batch (_fetch keeps them there), and a decision that needs bytes beyond the batch
    # while more can come is deferred (_defer) to the next batch, which starts at record i.
    rbuf = _rows(io, rbuf_all)     # the region of the current batch
    rs = rbuf.shape[1]
    base = DISK_BACK_ROWS * rs
    fill = base + io[IO_FILL]
    b = base + i * rs
    lo = base - io[IO_BACK]       # the first byte of the input in the buffer
    if rlen[i] != rs:
        return
    # a later batch can hold more after record i: not at end of input, and not when
    # record i already starts a full batch
    more = io[IO_EOF] == 0 and (i > 0 or fill - base < _read_cap(rbuf, rlen))
    if b + 2 * rs > fill:
        if more:
            _defer(io, rst, i, b, base, fill, rs, 4 * rs, cnt)
        return
    flat = _flat(rbuf)
    fs = np.empty(fstate.shape[0], dtype=np.int64)
    d1 = np.empty(_NDESC, dtype=np.int64)
    d2 = np.empty(_NDESC, dtype=np.int64)
    if _decode_at(flat, b + rs, rs, cfg, fstate, fs, d1) != INVALID:
        return
    if b + 4 * rs > fill and more:
        _defer(io, rst, i, b, base, fill, rs, 4 * rs, cnt)
        return
    span = 2 * win[W_N] + 2
    # the two records before, if they decode and agree, say where the stream is: then a
    # candidate must be near them too (garbage that copies a neighbour's bytes makes a
    # misaligned pair agree with itself), and it is looked for within two records (a short
    # record or a few stray bytes); the next bad record, with no such context, scans on
    ctx = np.int64(0)
    has_ctx = False
    if b - 2 * rs >= lo:
        ra = _decode_at(flat, b - 2 * rs, rs, cfg, fstate, fs, d1)
        rb = _decode_at(flat, b - rs, rs, cfg, fstate, fs, d2)
        if ra == VALID and rb == VALID and _agree(ra, d1, rb, d2, span):
            ctx = d2[SEQ]
            has_ctx = True
    near = 4 * win[W_N] + 4
    c = b + 1
    last = fill - rs
    if has_ctx:
        if last > b + 2 * rs:
            last = b + 2 * rs
    elif io[IO_SCAN_END] > c:
        c = io[IO_SCAN_END]
    found = False
    while c <= last:
        r1 = _decode_at(flat, c, rs, cfg, fstate, fs, d1)
        if r1 != INVALID and not (has_ctx and r1 == VALID and
                                  (d1[SEQ] - ctx >= near or ctx - d1[SEQ] >= near)):
            if c + 2 * rs > fill:
                if more:
                    # only one record to check it by: see the record after it first
                    _defer(io, rst, i, b, base, fill, rs, c - b + 2 * rs, cnt)
                    return
                found = True
                break
            r2 = _decode_at(flat, c + rs, rs, cfg, fstate, fs, d2)
            if _agree(r1, d1, r2, d2, span):
                found = True
                break
        c += 1
    if not has_ctx:
        io[IO_SCAN_END] = c
    x = c - b
    if not found or x % rs == 0:
        return   # nothing decodes / whole bad records: the alignment holds, count them one by one
    if x < rs and c - rs >= lo:
        # was the short record the one before (its header decoded, and the start of this
        # record filled its row)?  Then read this record again from where it really starts
        r1 = _decode_at(flat, c, rs, cfg, fstate, fs, d1)
        r2 = _decode_at(flat, c - rs, rs, cfg, fstate, fs, d2)
        if r2 == VALID and _agree(r2, d2, r1, d1, span):
            c -= rs
    skipped = c - b if c > b else 0
    cnt[C_NRECEIVED] -= rst[R_COUNT] - (i + 1)
    rst[R_COUNT] = i + 1
    cnt[C_NINVALID_BYTES] += skipped - rs
    cnt[C_NRESYNC] += 1
    cnt[C_NSKIPPED_BYTES] += skipped
    io[IO_CARRY_LEN] += fill - c   # any partial record kept by _fetch follows on directly
    io[IO_CARRY_OFF] = c - base
