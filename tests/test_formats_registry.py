"""The format registry: names, lookup order, roles, one-line errors, plugins."""
from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest

from asbru import formats
from asbru.formats import batch, spec
from asbru.formats.spec import FormatError

MINE = ("simple", "chips", "ibeam", "pbeam", "cor", "generic", "tbf", "vbeam")


def test_list_has_builtin_formats_in_bifrost_order():
    names = formats.list()
    for name in MINE:
        assert name in names
    order = [n for n in formats.BUILTIN if n in names]
    assert names[:len(order)] == order


@pytest.mark.parametrize("fmt,role,name", [
    ("simple", "capture", "simple"), ("simple", "disk", "simple"), ("simple", "write", "simple"),
    ("chips", "capture", "chips"), ("chips_132", "disk", "chips"), ("chips_4", "write", "chips"),
    ("ibeam2", "capture", "ibeam"), ("ibeam2_128", "disk", "ibeam"), ("ibeam4_3", "write", "ibeam"),
    ("pbeam", "capture", "pbeam"), ("pbeam_4", "disk", "pbeam"), ("pbeam1_4", "disk", "pbeam"),
    ("pbeam1_4", "write", "pbeam"), ("cor", "capture", "cor"), ("cor_72", "disk", "cor"),
    ("cor_4", "write", "cor"), ("generic_64", "write", "generic"), ("tbf", "write", "tbf"),
    ("tbf", "disk", "tbf"), ("tbf_8192", "capture", "tbf"), ("vbeam_184", "write", "vbeam"),
    ("vbeam_lwa352_4", "write", "vbeam"), ("vbeam_4_10", "disk", "vbeam"),
])
def test_get_resolves_strings(fmt, role, name):
    f = formats.get(fmt, role)
    assert f.name == name and f.params.fmt == fmt and f.params.role == role
    assert f.header is formats.module(name).HEADER
    assert (f.fill is not None) == (role == "write")
    assert all(0 <= i < spec.NDESC for i in f.change)
    assert f.callback_family in ("pointer", "value")


def test_record_sizes_match_bifrost_files():
    # record sizes of Bifrost's files (docs/formats.md, Reference header bytes; chips and pbeam
    # with asbru's fixed strings)
    assert formats.get("simple", "disk").params.record_size == 8200
    assert formats.get("chips_4", "disk").params.record_size == 144
    assert formats.get("cor_2", "disk").params.record_size == 96
    assert formats.get("pbeam1_8", "disk").params.record_size == 146
    assert formats.get("pbeam_8", "disk").params.record_size == 146
    assert formats.get("tbf", "disk").params.record_size == 6168
    assert formats.get("ibeam2_4", "disk").params.record_size == 15 + 128


@pytest.mark.parametrize("fmt,role", [
    ("nonsense", "capture"), ("", "capture"), ("chips_", "disk"), ("chips_x", "write"),
    ("chips_0", "write"), ("chips_256", "write"), ("chips", "write"), ("ibeam", "capture"),
    ("ibeam5_4", "disk"), ("ibeam2_", "disk"), ("ibeam2", "write"), ("pbeam", "disk"),
    ("pbeam1_", "write"), ("pbeamx_4", "disk"), ("cor_-1", "disk"), ("cor", "write"),
    ("generic_64", "capture"), ("generic_64", "disk"), ("generic", "write"),
    ("tbf_0", "disk"), ("tbf_x", "capture"), ("vbeam_", "write"), ("vbeam_4_10", "write"),
    ("vbeam_lwa352_", "write"), ("vbeam_4_0", "disk"), ("simple", "bogus"),
])
def test_bad_strings_raise_one_line_format_error(fmt, role):
    with pytest.raises(FormatError) as exc:
        formats.get(fmt, role)
    msg = str(exc.value)
    assert "\n" not in msg and msg


def test_unknown_format_lists_known_names():
    with pytest.raises(FormatError) as exc:
        formats.get("foo_12")
    msg = str(exc.value)
    assert "'foo_12'" in msg
    for name in MINE:
        assert name in msg


def test_non_string_format():
    with pytest.raises(FormatError):
        formats.get(42)  # type: ignore[arg-type]


def test_module_lookup():
    assert formats.module("cor").NAME == "cor"
    with pytest.raises(FormatError):
        formats.module("nope")


def test_capture_config_shape_and_prefix():
    cfg = formats.get("chips_4", "disk").capture_config(4, 2)
    assert cfg.dtype == np.int64 and cfg.shape == (spec.NCFG,)
    assert cfg[spec.CFG_NSRC] == 4 and cfg[spec.CFG_SRC0] == 2


def test_write_config_only_for_writers():
    with pytest.raises(FormatError):
        formats.get("chips_4", "disk").write_config()
    assert formats.get("chips_4", "write").write_config().dtype == np.int64


def test_header_tables_are_consistent():
    for name in MINE:
        h = formats.module(name).HEADER
        for row in h.table():
            assert row["offset"] + row["size"] <= h.size
        assert h.dtype.itemsize == h.size


def test_register_runtime_module():
    # a minimal third-party format, built from simple's pieces under another name
    simple = formats.module("simple")
    mod = types.ModuleType("asbru_test_plugin_fmt")
    for attr in ("HEADER", "capture_config", "decode", "place", "CHANGE",
                 "CALLBACK_FAMILY", "callback_args", "time_tag_of", "write_config", "fill"):
        setattr(mod, attr, getattr(simple, attr))
    mod.NAME = "plugtest"
    mod.matches = lambda fmt: fmt == "plugtest"
    mod.parse = lambda fmt, role: dataclasses.replace(simple.parse("simple", role), name="plugtest", fmt=fmt)
    formats.register(mod)
    try:
        assert "plugtest" in formats.list()
        f = formats.get("plugtest", "write")
        assert f.module is mod
        out = batch.encode_packets(f, batch.headerinfo(), 5, 1, 0, 1,
                                   np.zeros((1, 1, 2048, 2), dtype=np.int16))
        assert out[:8] == (5).to_bytes(8, "big")
    finally:
        formats._runtime.pop("plugtest", None)
        formats._reset_for_tests()
    assert "plugtest" not in formats.list()


def test_register_rejects_incomplete_module():
    mod = types.ModuleType("broken")
    mod.NAME = "broken"
    with pytest.raises(FormatError):
        formats.register(mod)


def test_describe():
    info = formats.describe("cor_4", "disk")
    assert info["header_size"] == 32 and info["record_size"] == 160
    assert [r["name"] for r in info["header"]][0] == "sync"
    assert "src0" in info["notes"]


def test_capture_config_rejects_no_sources():
    from asbru.errors import ArgumentError
    with pytest.raises(ArgumentError, match="nsrc"):
        formats.get("chips_4", "disk").capture_config(0, 0)


def test_broken_builtin_is_skipped_not_fatal(monkeypatch):
    import sys
    bad = types.ModuleType("asbru.formats.zz_broken_test")
    bad.NAME = "zz_broken_test"  # lacks everything else
    monkeypatch.setitem(sys.modules, "asbru.formats.zz_broken_test", bad)
    monkeypatch.setattr(formats, "BUILTIN", formats.BUILTIN + ("zz_broken_test", "zz_absent_test"))
    formats._reset_for_tests()
    try:
        with pytest.warns(RuntimeWarning, match="zz_broken_test"):
            names = formats.list()
        assert "zz_broken_test" not in names and "chips" in names
        assert "zz_broken_test" in formats.broken() and "zz_absent_test" not in formats.broken()
        with pytest.raises(FormatError, match="failed to load: zz_broken_test"):
            formats.get("zz_broken_test")
    finally:
        monkeypatch.undo()
        formats._reset_for_tests()
    assert formats.broken() == {}
