"""Merging the followers' mask planes into a gulp's mask before it is committed."""
from __future__ import annotations

import numba

from asbru.capture.layout import C_NDUP, C_NDUP_BYTES, C_NVALID, C_NVALID_BYTES, PS_DUP, PS_VALID


@numba.njit(nogil=True, cache=True)
def merge(mask, fmask, plane, corr, corr_psrc, p):
    """OR every follower's plane ``plane`` of ``fmask`` [follower][plane][time][source] into
    ``mask`` [time][source] (the leader's own), and return how many cells are set.

    A cell set by more than one thread is one packet placed more than once (a duplicate
    that arrived on two sockets): every thread but the first in the order leader, follower
    0, 1, ... has it turned from valid into duplicate in its correction row (``corr[i]``,
    ``corr_psrc[i]``, row 0 the leader's)."""
    nf = fmask.shape[0]
    nt = mask.shape[0]
    nsrc = mask.shape[1]
    placed = 0
    for t in range(nt):
        for s in range(nsrc):
            have = mask[t, s] != 0
            for f in range(nf):
                if fmask[f, plane, t, s] != 0:
                    if have:
                        corr[f + 1, C_NVALID] -= 1
                        corr[f + 1, C_NVALID_BYTES] -= p
                        corr[f + 1, C_NDUP] += 1
                        corr[f + 1, C_NDUP_BYTES] += p
                        corr_psrc[f + 1, PS_VALID, s] -= 1
                        corr_psrc[f + 1, PS_DUP, s] += 1
                    have = True
            if have:
                mask[t, s] = 1
                placed += 1
    return placed
