"""Capture statistics: the counter arrays the compiled loop updates, as a dict and as
Bifrost's proclog ``stats``/``perf`` files.

Every packet handed over by the receive backend ends up counted exactly once as valid
(placed), duplicate, late or invalid -- except packets still waiting in the hold buffer
or in the receive buffer (pending), which are counted when processed.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import layout as L

#: Bifrost's proclog ``stats`` keys, in its order.
PROCLOG_KEYS = ("ngood_bytes", "nmissing_bytes", "ninvalid", "ninvalid_bytes", "nlate",
                "nlate_bytes", "nvalid", "nvalid_bytes")


class CaptureStats:
    """Counters of one capture (int64 arrays shared with compiled code)."""

    def __init__(self, nsrc: int) -> None:
        self.cnt = np.zeros(L.NCNT, dtype=np.int64)
        self.cntv = memoryview(self.cnt)   # the same counters as plain ints (engine._winv says why)
        self.cnt[L.C_KDROP_LAST] = -1
        self.psrc = np.zeros((L.NPS, nsrc), dtype=np.int64)
        self.blocked_seconds = 0.0     # waiting in ring reserve (back-pressure)
        self.process_seconds = 0.0     # inside the compiled loop (last recv)
        self.reserve_seconds = 0.0     # commit + reserve (last recv)
        self.nsequences = 0
        self.nrestarts = 0             # sequences ended by a forward/backward jump

    def as_dict(self) -> dict[str, Any]:
        c = self.cnt
        return {
            "nvalid": int(c[L.C_NVALID]), "nvalid_bytes": int(c[L.C_NVALID_BYTES]),
            "ninvalid": int(c[L.C_NINVALID]), "ninvalid_bytes": int(c[L.C_NINVALID_BYTES]),
            "nlate": int(c[L.C_NLATE]), "nlate_bytes": int(c[L.C_NLATE_BYTES]),
            "nduplicate": int(c[L.C_NDUP]), "nduplicate_bytes": int(c[L.C_NDUP_BYTES]),
            "ngood_bytes": int(c[L.C_NGOOD_BYTES]), "nmissing_bytes": int(c[L.C_NMISSING_BYTES]),
            "nkernel_drops": int(c[L.C_NKDROPS]),
            "nreceived": int(c[L.C_NRECEIVED]),
            # of ninvalid: came while the format learnt its rate and could not be placed (the
            # stream ended first, or the hold buffer was full); give sample_rate=
            "nunlearned": int(c[L.C_NUNLEARNED]),
            "nresyncs": int(c[L.C_NRESYNC]), "nskipped_bytes": int(c[L.C_NSKIPPED_BYTES]),
            "errno": int(c[L.C_ERRNO]),
            "error": os.strerror(int(c[L.C_ERRNO])) if c[L.C_ERRNO] > 0 else "",
            "nsequences": self.nsequences, "nrestarts": self.nrestarts,
            "blocked_seconds": float(self.blocked_seconds),
            "per_source": {
                "valid": self.psrc[L.PS_VALID].copy(),
                "late": self.psrc[L.PS_LATE].copy(),
                "duplicate": self.psrc[L.PS_DUP].copy(),
                "missing": self.psrc[L.PS_MISSING].copy(),
            },
        }

    def proclog_stats(self) -> dict[str, int]:
        d = self.as_dict()
        out = {k: d[k] for k in PROCLOG_KEYS}
        out.update(nduplicate=d["nduplicate"], nduplicate_bytes=d["nduplicate_bytes"],
                   nkernel_drops=d["nkernel_drops"], nreceived=d["nreceived"])
        return out

    def proclog_perf(self) -> dict[str, float]:
        return {"acquire_time": -1, "process_time": self.process_seconds,
                "reserve_time": self.reserve_seconds, "blocked_time": self.blocked_seconds}
