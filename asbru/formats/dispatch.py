"""The addresses of a format's compiled ``decode``/``place``/``place_row``, and writing them
into a capture config, where the format-independent loops find them
(:mod:`asbru.formats.indirect`)."""
from __future__ import annotations

import inspect
import types
from typing import NamedTuple

import numpy as np

from . import engine, entry_points, indirect, spec


class EntryPoints(NamedTuple):
    """Addresses (handles without the JIT) of one format's functions; 0 = it has none."""

    decode: int
    place: int
    place_row: int
    uses_state: bool = True


    def install(self, cfg: np.ndarray) -> np.ndarray:
        """Write the addresses into ``cfg`` (a capture config) and return it."""
        cfg[spec.CFG_FN_DECODE] = self.decode
        cfg[spec.CFG_FN_PLACE] = self.place
        cfg[spec.CFG_FN_PLACE_ROW] = self.place_row
        cfg[spec.CFG_USES_STATE] = int(self.uses_state)
        return cfg


def uses_state(module: types.ModuleType) -> bool:
    """Whether ``module``'s decode keeps state between packets: its ``USES_STATE`` if it says,
    else whether its source indexes ``state`` (a receive thread that is not the leader hands
    a packet whose decode changed the state to the leader, docs/multicore.md)."""
    said = getattr(module, "USES_STATE", None)
    if said is not None:
        return bool(said)
    try:
        return "state[" in inspect.getsource(module)
    except (OSError, TypeError):
        return True


_tables: dict[str, EntryPoints] = {}
_keep: list[types.ModuleType] = []   # the bindings own the compiled code the addresses point at


def entry_table(module: types.ModuleType) -> EntryPoints:
    """The entry points of format module ``module`` (anything with ``decode``, ``place`` and
    optionally ``place_row``): compiled, or loaded from the kernel cache, on first use."""
    name = engine.importable_name(module)
    got = _tables.get(name)
    if got is not None:
        return got
    has_row = getattr(module, "place_row", None) is not None
    if engine.jit_disabled():
        table = EntryPoints(indirect.python_handle(module.decode), indirect.python_handle(module.place),
                            indirect.python_handle(module.place_row) if has_row else 0,
                            uses_state(module))
    else:
        binding = engine.bound_module(
            f"entry_points_{getattr(module, 'NAME', name)}", entry_points,
            {"_decode": f"{name}:decode", "_place": f"{name}:place",
             "_place_row": f"{name}:place_row" if has_row else "asbru.capture.loop_parts:_no_place_row"},
            depends_on=(spec, indirect))
        _keep.append(binding)
        table = EntryPoints(binding.decode_entry.address, binding.place_entry.address,
                            binding.place_row_entry.address if has_row else 0, uses_state(module))
    _tables[name] = table
    return table
