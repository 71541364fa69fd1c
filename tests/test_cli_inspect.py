"""``asbru inspect``'s analysis in process: chunked decoding gives the same answer."""
from __future__ import annotations

import numpy as np
import pytest

from asbru.cli import inspect_cmd
from asbru.cli.common import get_reader_format
from asbru.cli.synth import make_stream
from asbru.formats import get


@pytest.mark.parametrize("fmt,nsrc", [("tbn", 3), ("vdif_1032", 2), ("chips_2", 2)])
def test_chunked_analysis_equals_whole(monkeypatch, fmt, nsrc):
    packets, truth = make_stream(get(fmt, "write"), nsrc, 40, loss=0.1, reorder=0, duplicate=0.1,
                                 corrupt=0.1, seed=7, for_file=True)
    reader = get_reader_format(fmt)
    whole = inspect_cmd.analyze(packets, reader, nsrc, truth["src0"], limit=30)
    monkeypatch.setattr(inspect_cmd, "CHUNK", 7)
    chunked = inspect_cmd.analyze(packets, reader, nsrc, truth["src0"], limit=30)
    assert chunked == whole
    assert whole["held"] == 0
    for key in ("valid", "invalid", "duplicates", "missing", "seq_min", "seq_max", "per_source"):
        assert whole[key] == truth[key], key
    assert [r["status"] for r in whole["rows"]].count("held") == 0
    assert len(whole["rows"]) == 30 and np.all([r["index"] for r in whole["rows"]] == np.arange(30))
