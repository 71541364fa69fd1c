"""The descriptor's spare slots (spec.X0..X4) have per-format names (a format's SLOTS)."""
from __future__ import annotations

import types

import pytest

from asbru import formats
from asbru.formats import simple, spec


def _module(**attrs):
    mod = types.ModuleType("asbru_test_slots_format")
    for name in dir(simple):
        if not name.startswith("__"):
            setattr(mod, name, getattr(simple, name))
    for k, v in attrs.items():
        setattr(mod, k, v)
    return mod


def test_every_format_names_distinct_spare_slots_and_its_change_fields_resolve():
    for name in formats.list():
        mod = formats.module(name)
        slots = getattr(mod, "SLOTS", {})
        assert set(slots.values()) <= set(spec.SPARE_SLOTS), name
        assert len(set(slots.values())) == len(slots), name
        for c in mod.CHANGE:
            assert c in spec.DESC_INDEX or c in slots, f"{name}: CHANGE {c}"


def test_change_fields_named_by_slot_resolve_to_the_slot():
    tbx = formats.get("tbx", "capture")
    assert tbx.slots["nstand"] == spec.X0
    assert spec.X0 in tbx.change
    assert tbx.descriptor_fields[spec.X0] == "nstand"
    assert tbx.descriptor_fields[spec.X4] == "x4"


@pytest.mark.parametrize("slots", [{"seq": spec.X0}, {"a": spec.SEQ}, {"a": spec.X1, "b": spec.X1}])
def test_a_format_whose_slots_are_not_distinct_spare_slots_is_refused(slots):
    with pytest.raises(spec.FormatError, match="SLOTS"):
        formats.register(_module(SLOTS=slots, NAME="slots_test"))


def test_a_change_field_must_be_a_common_field_or_a_named_slot():
    with pytest.raises(spec.FormatError, match="CHANGE"):
        formats.register(_module(SLOTS={"phase": spec.X1}, CHANGE=("tempo",), NAME="slots_test"))
    formats.register(_module(SLOTS={"phase": spec.X1}, CHANGE=("phase",), NAME="slots_test_ok",
                             matches=lambda fmt: fmt == "slots_test_ok",
                             parse=lambda fmt, role: simple.parse("simple", role)))
    try:
        assert formats.get("slots_test_ok").change == (spec.X1,)
    finally:
        formats._runtime.pop("slots_test_ok", None)
        formats._reset_for_tests()
