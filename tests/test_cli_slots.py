"""The live (seq, src) bookkeeping of ``asbru capture`` (asbru/cli/slots.py), in process."""
from __future__ import annotations

import numpy as np
import pytest

from asbru.cli import slots as S


def _expected(stream, nsrc):
    u = set(stream)
    smin = min(s for s, _ in u)
    smax = max(s for s, _ in u)
    return len(stream) - len(u), (smax - smin + 1) * nsrc - len(u)


@pytest.mark.parametrize("seed", range(6))
def test_duplicates_and_missing_match_a_set_count(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        nsrc = int(rng.integers(1, 6))
        ntime = int(rng.integers(1, 400))
        rows = int(rng.integers(64, 160))
        pk = [(5000 + t, j) for t in range(ntime) for j in range(nsrc)]
        keep = [p for p in pk if rng.random() > 0.25]
        if not keep:
            continue
        dup = set(p for p in keep if rng.random() < 0.1)
        stream = [q for p in keep for q in ([p, p] if p in dup else [p])]
        key = np.arange(len(stream)) + rng.uniform(0, 10, len(stream))
        stream = [stream[i] for i in np.argsort(key, kind="stable")]
        seen, track = S.new_tracker(nsrc, rows)
        results = [S.note(seen, track, s, j, 100) for s, j in stream]
        live = int(track[S.T_MISSING]) + int(S.pending_missing(seen, track))
        S.finish(seen, track)
        ndup, nmiss = _expected(stream, nsrc)
        assert track[S.T_LATE] == 0 and track[S.T_RESTARTS] == 0
        assert track[S.T_DUP] == ndup == results.count(S.DUPLICATE)
        assert track[S.T_MISSING] == nmiss
        assert live <= nmiss                       # the newest row is not judged live
        assert track[S.T_UNIQUE] == len(set(stream))
        assert track[S.T_GOOD_BYTES] == 100 * len(set(stream))


def test_late_and_restart():
    seen, track = S.new_tracker(2, 64)
    for s in range(100, 200):
        assert S.note(seen, track, s, 0, 8) == S.NEW
    assert S.note(seen, track, 100, 1, 8) == S.LATE           # far behind the window
    assert S.note(seen, track, 10**9, 0, 8) == S.NEW           # a jump: restart
    assert track[S.T_RESTARTS] == 1
    assert S.note(seen, track, 10**9 + 1, 1, 8) == S.NEW
    S.finish(seen, track)
    # source 1 missing for 100..199, then (10**9, 1) and (10**9 + 1, 0): the jump is not
    assert track[S.T_MISSING] == 100 + 2
    assert track[S.T_LATE] == 1


def test_out_of_range_source_is_not_a_slot():
    seen, track = S.new_tracker(2, 16)
    assert S.note(seen, track, 5, 2, 8) == S.LATE
    assert S.note(seen, track, 5, -1, 8) == S.LATE
    assert track[S.T_UNIQUE] == 0
    assert S.window_rows(1) == 4096 and S.window_rows(1 << 20) == 16
