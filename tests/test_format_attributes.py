"""Format knowledge declared by the formats themselves (not by writers, CLI or tools): the
time-tag rule and prefix parsing written once in asbru.formats.spec, and the optional
attributes ``proclog_type``, ``reader_format`` and ``synth_recipe``."""
from __future__ import annotations

import os

import numpy as np
import pytest

from asbru import formats, proclog
from asbru.formats import spec
from asbru.writers.disk import DiskWriter


@pytest.mark.parametrize("time_tag, step", [(0, 7), (13, 7), (2**62 + 5, 196_000_000), (99, 1)])
def test_split_time_tag_and_time_tag_at_round_trip(time_tag, step):
    seq, phase = spec.split_time_tag(np.int64(time_tag), np.int64(step))
    assert (seq, phase) == divmod(time_tag, step)
    assert spec.time_tag_at(seq, step, phase) == time_tag


def test_time_tag_at_ignores_a_negative_phase():
    # a descriptor whose phase slot was never written holds -1 or 0: both count as 0
    assert spec.time_tag_at(5, 10, -1) == 50


@pytest.mark.parametrize("fmt, role, want", [
    ("chips", "capture", dict(payload_size=None, extra={"nchan": 0})),
    ("chips_4", "capture", dict(payload_size=None, extra={"nchan": 0, "nchan_given": 4})),
    ("chips_4", "disk", dict(payload_size=128, record_size=144, samples_per_packet=128)),
    ("cor_2", "write", dict(payload_size=64, record_size=96, samples_per_packet=8)),
    ("ibeam3_2", "write", dict(payload_size=96, samples_per_packet=12, extra={"nbeam": 3, "nchan": 2})),
    ("pbeam2_5", "write", dict(payload_size=80, samples_per_packet=20, extra={"nbeam": 2, "nchan": 5})),
])
def test_prefix_formats_share_one_parser(fmt, role, want):
    p = formats.get(fmt, role).params
    for key, value in want.items():
        assert getattr(p, key) == value, key


@pytest.mark.parametrize("fmt, msg", [("chips", "'chips_N'"), ("cor", "'cor_N'"),
                                      ("ibeam2", "'ibeam2_N'"), ("pbeam", "'pbeam_N' or 'pbeam1_N'")])
def test_bare_prefix_names_are_capture_only(fmt, msg):
    with pytest.raises(spec.FormatError, match=f"the write role needs {msg}"):
        formats.get(fmt, "write")


def test_reader_string_is_the_formats_own():
    assert formats.reader_string("pbeam1_8") == "pbeam_8"
    assert formats.reader_string("pbeam_8") == "pbeam_8"
    assert formats.reader_string("chips_8") == "chips_8"
    assert formats.reader_string("nonsense") == "nonsense"


@pytest.mark.parametrize("fmt, want", [("ibeam3_2", "ibeam3"), ("pbeam1_4", "pbeam1"),
                                       ("tbf", "tbf256"), ("vbeam_8", "vbeam"), ("tbn", "tbn")])
def test_writer_proclog_type_comes_from_the_format(tmp_path, monkeypatch, fmt, want):
    monkeypatch.setenv("ASBRU_PROCLOG_DIR", str(tmp_path))
    with open(tmp_path / "out.dat", "wb") as fh:
        w = DiskWriter(fmt, fh)
        try:
            blocks = proclog.load_by_pid(os.getpid())
            assert [b["type"] for b in blocks.values() if "type" in b] == [{"type": want}]
        finally:
            w.close()


def test_writable_formats_with_a_stream_recipe_declare_it():
    # every writable built-in format that asbru generate supports says how in its own file
    for name in ("simple", "chips", "ibeam", "pbeam", "cor", "tbn", "drx", "drx8", "vdif",
                 "snap2", "tbf", "tbx", "ndp_tbf"):
        assert callable(getattr(formats.module(name), "synth_recipe", None)), name
