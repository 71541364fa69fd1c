"""The format registry: turn a Bifrost format string into a :class:`Format`.

Each wire format is one module (``asbru/formats/<name>.py``) written against the contract
in :mod:`asbru.formats.spec`.  The registry knows the built-in modules by name, imports
them lazily (so ``import asbru.formats`` stays cheap and a format being written does not
break the others), and asks them in Bifrost's selection order whether a string is theirs.
Third-party formats join through the ``asbru.formats`` entry-point group (each entry point
names a module following the same contract) or through :func:`register` at run time.
"""
from __future__ import annotations

import builtins
import dataclasses
import importlib
import importlib.metadata
import threading
import types
import warnings
from typing import Any, Callable

import numpy as np

from ..errors import ArgumentError
from .spec import (CFG_NSRC, CFG_SRC0, DESC_INDEX, DESCRIPTOR_FIELDS, NCFG, SPARE_SLOTS,
                   FormatError, FormatParams, Header)

__all__ = ["Format", "FormatError", "get", "list", "module", "register", "broken", "describe",
           "reader_string", "ROLES"]

ROLES = ("capture", "disk", "write")

# Bifrost's order (docs/formats.md, Common rules): capture prefixes first, then the
# writer-only formats.
# A name whose module does not exist (yet) is skipped silently.
BUILTIN = ("simple", "chips", "snap2", "ibeam", "pbeam", "cor", "vdif", "tbn", "drx", "drx8",
           "tbx", "ndp_tbf", "generic", "tbf", "vbeam")  # tbx, ndp_tbf: LWA NDP, not in Bifrost

_REQUIRED = ("NAME", "HEADER", "matches", "parse", "capture_config", "decode", "place",
             "CHANGE", "CALLBACK_FAMILY", "callback_args", "time_tag_of")

_lock = threading.RLock()  # re-entrant: a format module may use the registry at import
_modules: dict[str, types.ModuleType] | None = None  # NAME -> module, in lookup order
_runtime: dict[str, types.ModuleType] = {}            # added by register()
_broken: dict[str, str] = {}                          # failed to load: name -> reason


@dataclasses.dataclass(frozen=True)
class Format:
    """One format string resolved for one role: the format module plus its parameters."""
    name: str
    params: FormatParams
    header: Header
    module: types.ModuleType
    decode: Callable[..., int]
    place: Callable[..., None]
    fill: Callable[..., None] | None
    change: tuple[int, ...]
    callback_family: str

    @property
    def fmt(self) -> str:
        return self.params.fmt

    @property
    def role(self) -> str:
        return self.params.role

    @property
    def writable(self) -> bool:
        return self.fill is not None

    def capture_config(self, nsrc: int, src0: int = 0) -> np.ndarray:
        """The int64 ``cfg`` array for ``decode`` (``NCFG`` long)."""
        if int(nsrc) < 1:
            raise ArgumentError(f"nsrc must be >= 1 (number of sources), got {nsrc}")
        cfg = np.asarray(self.module.capture_config(self.params, int(nsrc), int(src0)), dtype=np.int64)
        if cfg.shape != (NCFG,) or cfg[CFG_NSRC] != nsrc or cfg[CFG_SRC0] != src0:
            raise FormatError(f"format {self.name!r}: capture_config must return int64[{NCFG}] "
                              "starting with nsrc, src0")
        return cfg

    def write_config(self) -> np.ndarray:
        """The int64 ``wcfg`` array for ``fill`` (writable formats only)."""
        if self.fill is None:
            raise FormatError(f"format {self.params.fmt!r} cannot be written")
        return np.asarray(self.module.write_config(self.params), dtype=np.int64)

    def callback_args(self, seq0: int, d: np.ndarray, nsrc: int) -> tuple:
        """The sequence callback's leading arguments (Bifrost's order, no pointers)."""
        return tuple(self.module.callback_args(int(seq0), d, int(nsrc)))

    @property
    def callback_arg_names(self) -> tuple[str, ...]:
        return tuple(getattr(self.module, "CALLBACK_ARGS", ()))

    def time_tag_of(self, seq: int, d: np.ndarray) -> int:
        """Time tag of time index ``seq`` given a descriptor of the sequence."""
        return int(self.module.time_tag_of(int(seq), d))

    @property
    def slots(self) -> dict[str, int]:
        """The spare descriptor slots this format uses: name -> index (its ``SLOTS``)."""
        return dict(getattr(self.module, "SLOTS", {}))

    @property
    def descriptor_fields(self) -> tuple[str, ...]:
        """The names of a descriptor row's fields for this format (spare slots by the
        format's names, unused ones as ``x0``..``x4``)."""
        names = builtins.list(DESCRIPTOR_FIELDS)
        for name, i in self.slots.items():
            names[i] = name
        return tuple(names)

    @property
    def notes(self) -> str:
        """The format's documented differences from Bifrost."""
        return getattr(self.module, "NOTES", None) or (self.module.__doc__ or "")


def _check_module(mod: types.ModuleType) -> None:
    missing = [n for n in _REQUIRED if not hasattr(mod, n)]
    if missing:
        raise FormatError(f"format module {mod.__name__} lacks {', '.join(missing)}")
    slots = getattr(mod, "SLOTS", {})
    bad = {n: i for n, i in slots.items() if i not in SPARE_SLOTS or n in DESC_INDEX}
    if bad or len(set(slots.values())) != len(slots):
        raise FormatError(f"format module {mod.__name__}: SLOTS must give distinct spare descriptor "
                          f"slots (spec.X0..X4) names of their own; got {slots}")
    unknown = [c for c in mod.CHANGE if c not in DESC_INDEX and c not in slots]
    if unknown:
        raise FormatError(f"format module {mod.__name__}: CHANGE names unknown descriptor fields {unknown}")


def _field_index(mod: types.ModuleType, name: str) -> int:
    """The descriptor index of ``name``: a common field or one of the format's ``SLOTS``."""
    slots = getattr(mod, "SLOTS", {})
    return slots[name] if name in slots else DESC_INDEX[name]


def _entry_point_modules() -> builtins.list[tuple[str, types.ModuleType]]:
    found = []
    try:
        eps = importlib.metadata.entry_points(group="asbru.formats")
    except Exception:  # broken metadata must not break the built-in formats
        return found
    for ep in eps:
        try:
            mod = ep.load()
        except ModuleNotFoundError as exc:
            if exc.name != ep.value.split(":")[0].strip():
                _skip(ep.name, exc)  # the plugin exists but one of its imports is missing
            continue  # declared but not installed/written: skip, like a missing built-in
        except Exception as exc:  # a broken plugin must not take the built-ins down
            _skip(ep.name, exc)
            continue
        if isinstance(mod, types.ModuleType):
            found.append((ep.name, mod))
    return found


def _load() -> dict[str, types.ModuleType]:
    global _modules
    with _lock:
        if _modules is not None:
            return _modules
        mods: dict[str, types.ModuleType] = {}
        _broken.clear()
        for name in BUILTIN:
            try:
                mod = importlib.import_module(f"{__name__}.{name}")
                _check_module(mod)
            except ModuleNotFoundError as exc:
                if exc.name == f"{__name__}.{name}":
                    continue  # not written (yet)
                _skip(name, exc)
                continue
            except Exception as exc:  # one broken format must not take the others down
                _skip(name, exc)
                continue
            mods[mod.NAME] = mod
        for ep_name, mod in _entry_point_modules():
            try:
                _check_module(mod)
            except FormatError as exc:
                _skip(ep_name, exc)
                continue
            mods.setdefault(mod.NAME, mod)
        for name, mod in _runtime.items():
            mods.setdefault(name, mod)
        _modules = mods
        return mods


def _skip(name: str, exc: BaseException) -> None:
    msg = f"{type(exc).__name__}: {exc}".splitlines()[0]
    _broken[name] = msg
    warnings.warn(f"asbru format {name!r} skipped: {msg}", RuntimeWarning, stacklevel=3)


def broken() -> dict[str, str]:
    """Formats that failed to load (name -> one-line reason); empty when all is well."""
    _load()
    return dict(_broken)


def register(mod: types.ModuleType) -> None:
    """Add a format module at run time (it is tried after the built-in ones)."""
    _check_module(mod)
    with _lock:
        _runtime[mod.NAME] = mod
        if _modules is not None:
            _modules.setdefault(mod.NAME, mod)


def list() -> builtins.list[str]:  # noqa: A001 - Bifrost-style registry name
    """Every registered format name, in lookup order (plugins included)."""
    return builtins.list(_load())


def module(name: str) -> types.ModuleType:
    """The module implementing format ``name`` (a NAME, e.g. ``"chips"``)."""
    mods = _load()
    try:
        return mods[name]
    except KeyError:
        raise FormatError(f"unknown format name {name!r}; known: {', '.join(mods)}") from None


def get(fmt: "str | Format", role: str = "capture") -> Format:
    """Resolve Bifrost format string ``fmt`` (``"chips_132"``, ``"tbn"``...) for ``role``.

    ``role`` is ``"capture"`` (UDP / sniffer), ``"disk"`` (DiskReader) or ``"write"``.
    ``fmt`` may also be a :class:`Format` already resolved for ``role`` (e.g. a view built
    on a format, such as ``asbru capture``'s whole-packet view): it is returned as it is.
    """
    if isinstance(fmt, Format):
        if fmt.role != role:
            raise FormatError(f"format {fmt.fmt!r} was resolved for role {fmt.role!r}, not {role!r}")
        return fmt
    if not isinstance(fmt, str):
        raise FormatError(f"format must be a string such as 'chips' or 'tbn', got {type(fmt).__name__}")
    if role not in ROLES:
        raise FormatError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    mods = _load()
    for mod in mods.values():
        if mod.matches(fmt):
            params = mod.parse(fmt, role)
            return _make(mod, params)
    extra = f" (failed to load: {', '.join(_broken)})" if _broken else ""
    raise FormatError(f"unknown format {fmt!r}; known formats: {', '.join(mods)}{extra}")


def reader_string(fmt: str) -> str:
    """The capture/DiskReader string that reads what writer string ``fmt`` writes: the
    format's ``reader_format(fmt)`` if it declares one (Bifrost writes ``pbeam1_N`` and
    reads ``pbeam_N``), else ``fmt`` itself (also for strings no format claims)."""
    for mod in _load().values():
        if mod.matches(fmt):
            own = getattr(mod, "reader_format", None)
            return own(fmt) if own is not None else fmt
    return fmt


def _make(mod: types.ModuleType, params: FormatParams) -> Format:
    fill = getattr(mod, "fill", None) if params.role == "write" else None
    if params.role == "write" and fill is None:
        raise FormatError(f"format {params.fmt!r} cannot be written; writable: "
                          f"{', '.join(n for n, m in _load().items() if getattr(m, 'fill', None))}")
    return Format(name=mod.NAME, params=params, header=mod.HEADER, module=mod,
                  decode=mod.decode, place=mod.place, fill=fill,
                  change=tuple(_field_index(mod, c) for c in mod.CHANGE),
                  callback_family=mod.CALLBACK_FAMILY)


def _reset_for_tests() -> None:
    """Forget the loaded modules so that newly written ones are found (tests, tools)."""
    global _modules
    with _lock:
        _modules = None


def describe(fmt: str, role: str = "capture") -> dict[str, Any]:
    """A summary for tools: name, sizes, header table, notes."""
    f = get(fmt, role)
    p = f.params
    return {"name": f.name, "fmt": p.fmt, "role": p.role, "header_size": p.header_size,
            "payload_size": p.payload_size, "record_size": p.record_size,
            "samples_per_packet": p.samples_per_packet, "write_dtype": p.write_dtype,
            "callback_family": f.callback_family, "header": f.header.table(), "notes": f.notes}
