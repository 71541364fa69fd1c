"""The compiled receive loop of ``asbru capture``: recvmmsg + decode + append, per format.

One call receives batches (recvmmsg, no GIL), decodes every datagram with the format's
``decode``, notes each valid one's (seq, src) slot (:mod:`asbru.cli.slots`: duplicates,
missing, late), appends the packets to keep to an output buffer and counts; it returns to
Python when the buffer has no room for another full batch, after ``max_batches`` batches,
when the keep limit is reached, or when the socket times out (``SO_RCVTIMEO``).  Python
then writes the buffer to the file and refreshes the statistics.  This module is also the
template of ``recv_decode``, bound per format (see :mod:`asbru.formats.engine`).
"""
from __future__ import annotations

import sys

import numpy as np

from asbru.cli.slots import note
from asbru.formats.chips import decode as _decode
from asbru.formats.engine import bound_kernel
from asbru.sockets import syscalls as sc
from asbru.sockets.msgvec import rxq_ovfl

from ..formats import Format, engine, spec

# counters layout (int64 array)
RECEIVED, RECEIVED_BYTES, VALID, VALID_BYTES, INVALID, INVALID_BYTES, HELD, KEPT, \
    KEPT_BYTES, KERNEL_DROPS, TRUNCATED, OVER_LIMIT = range(12)
NCOUNTERS = 12
COUNTER_NAMES = ("received", "received_bytes", "valid", "valid_bytes", "invalid",
                 "invalid_bytes", "held", "kept", "kept_bytes", "kernel_drops", "truncated",
                 "over_limit")

# the format's codes and descriptor slots the loop reads
VALID_STATUS = spec.VALID
HOLD_STATUS = spec.HOLD
PSIZE = spec.PAYLOAD_SIZE
SEQ = spec.SEQ
SRC = spec.SRC
#: the globals a binding gives (this module is the template, bound per format; the import
#: at the top binds CHIPS, a valid default)
BINDS = ("_decode",)


@bound_kernel
def recv_decode(fd, vaddr, buffers, lengths, flags, controllens, control, control_size,
                cfg, state, d, out, pos, keep_limit, counters, max_batches, seen, track,
                wide_cfg, wide_state, src_seen):
    nmsg = buffers.shape[0]
    bufsize = buffers.shape[1]
    for _b in range(max_batches):
        if out.shape[0] - pos < nmsg * bufsize:
            return pos, 0
        if keep_limit >= 0 and counters[KEPT] >= keep_limit:
            return pos, 0
        for i in range(nmsg):
            controllens[i] = control_size
        n = sc.recvmmsg(fd, vaddr, nmsg, sc.MSG_WAITFORONE, 0)
        if n < 0:
            return pos, sc.errno()
        for i in range(n):
            ln = np.int64(lengths[i])
            if ln > bufsize:
                ln = bufsize
            counters[RECEIVED] += 1
            counters[RECEIVED_BYTES] += ln
            if (flags[i] & sc.MSG_TRUNC) != 0:
                counters[TRUNCATED] += 1
            if control_size > 0:
                drops = rxq_ovfl(control, controllens, i)
                if drops >= 0:
                    counters[KERNEL_DROPS] = drops
            for q in range(d.shape[0]):
                d[q] = -1
            pkt = buffers[i, :ln]
            r = _decode(pkt, cfg, state, d)
            if r == VALID_STATUS:
                counters[VALID] += 1
                if d[PSIZE] > 0:
                    counters[VALID_BYTES] += d[PSIZE]
                note(seen, track, d[SEQ], d[SRC], d[PSIZE])
            elif r == HOLD_STATUS:
                counters[HELD] += 1
            else:
                counters[INVALID] += 1
                counters[INVALID_BYTES] += ln
                # would it decode with any number of sources?  (tells the user that
                # --nsrc/--src0 reject it, not the bytes)
                for q in range(d.shape[0]):
                    d[q] = -1
                if _decode(pkt, wide_cfg, wide_state, d) == VALID_STATUS:
                    if d[SRC] >= 0 and d[SRC] < src_seen.shape[0]:
                        src_seen[d[SRC]] += 1
                continue
            if keep_limit >= 0 and counters[KEPT] >= keep_limit:
                counters[OVER_LIMIT] += 1
                continue
            dst = out[pos: pos + ln]
            for k in range(ln):
                dst[k] = pkt[k]
            pos += ln
            counters[KEPT] += 1
            counters[KEPT_BYTES] += ln
    return pos, 0


def receiver(fmt: Format):
    """The compiled ``recv_decode`` for ``fmt`` (returns ``(new_pos, errno or 0)``)."""
    from . import slots
    m = engine.importable_name(fmt.module)
    mod = engine.bound_module(f"cli_recv_{fmt.name}", sys.modules[__name__],
                              {"_decode": f"{m}:decode"}, depends_on=(spec, slots))
    return mod.recv_decode


def compile_receiver(fmt: Format, nsrc: int = 1):
    """``receiver(fmt)``, compiled (or loaded from the cache) by one call that receives
    nothing (``fd`` -1), with arrays of the types ``asbru capture`` passes."""
    import numpy as np

    from ..sockets.msgvec import RecvVec
    from . import slots
    recv = receiver(fmt)
    rv = RecvVec(2, 64, control=True)
    seen, track = slots.new_tracker(nsrc)
    recv(np.int32(-1), np.int64(rv.addr), rv.buffers, rv.lengths, rv.flags, rv.controllens,
         rv.control, np.int64(rv.control_size), fmt.capture_config(nsrc, 0),
         np.zeros(spec.NSTATE, dtype=np.int64), np.full(spec.NDESC, -1, dtype=np.int64),
         np.empty(64, dtype=np.uint8), np.int64(0), np.int64(-1),
         np.zeros(NCOUNTERS, dtype=np.int64), np.int64(0), seen, track,
         *wide_args(fmt, 0))
    return recv


#: source indices the "would it decode with more sources" check can tell apart
WIDE_NSRC = 4096


def wide_args(fmt: Format, src0: int) -> tuple:
    """(wide_cfg, wide_state, src_seen) for ``recv_decode``: a decoder configuration that
    accepts WIDE_NSRC sources (falling back to nsrc 1 where the format refuses so many)."""
    import numpy as np
    try:
        cfg = fmt.capture_config(WIDE_NSRC, src0)
    except spec.FormatError:
        cfg = fmt.capture_config(1, src0)
    return cfg, np.zeros(spec.NSTATE, dtype=np.int64), np.zeros(WIDE_NSRC, dtype=np.int64)
