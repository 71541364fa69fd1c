"""Constructor argument handling shared by the capture classes.

Accepts Bifrost's positional order, keywords, the seed tutorial's spellings
(``max_size``, ``ntime_gulp``, ``ntime_slot``) and the tutorial's form without a ring
(the third argument is then ``nsrc``: an int or a sequence of ints, not a ring).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from asbru.errors import ArgumentError


def _is_ring(x: Any) -> bool:
    return hasattr(x, "begin_writing") and hasattr(x, "resize")


def bind_args(cls_name: str, names: list[str], aliases: dict[str, str], args: tuple,
              kwargs: dict, defaults: dict[str, Any], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Map positional + keyword arguments onto ``names`` (which start with ``"ring"``)."""
    kw = {}
    for k, v in kwargs.items():
        k2 = aliases.get(k, k)
        if k2 in kw:
            raise ArgumentError(f"{cls_name}: argument {k2!r} given twice")
        kw[k2] = v
    order = list(names)
    if "ring" not in kw and args and args[0] is not None and not _is_ring(args[0]):
        order.remove("ring")        # tutorial form: the capture owns its ring
    if len(args) > len(order):
        raise ArgumentError(f"{cls_name}: too many positional arguments ({len(args)}); expected at "
                            f"most {len(order)}: {', '.join(order)}")
    out: dict[str, Any] = {}
    for name, value in zip(order, args):
        out[name] = value
    for k, v in kw.items():
        if k not in names and k not in extra:
            raise ArgumentError(f"{cls_name}: unknown argument {k!r}; accepted: "
                                f"{', '.join(names + list(extra))}")
        if k in out:
            raise ArgumentError(f"{cls_name}: argument {k!r} given twice")
        out[k] = v
    for k, v in defaults.items():
        out.setdefault(k, v)
    missing = [n for n in names if n not in out]
    if missing:
        raise ArgumentError(f"{cls_name}: missing argument(s) {', '.join(missing)}")
    ring = out.get("ring")
    if ring is not None and not _is_ring(ring):
        raise ArgumentError(f"{cls_name}: ring must be an asbru.ring.Ring or None; got "
                            f"{type(ring).__name__}")
    if ring is not None and getattr(ring, "space", "system") == "cuda":
        raise ArgumentError(f"{cls_name}: a capture writes host memory: give it a 'cuda_host' ring and "
                            f"stream that into the 'cuda' ring with asbru.ring.copy")
    return out


def as_nsrc(nsrc: Any) -> int:
    """``nsrc`` as an int; a sequence means the product of its items (Bifrost)."""
    if isinstance(nsrc, (list, tuple, np.ndarray)):
        total = 1
        for x in nsrc:
            total *= positive_int("nsrc", x)
        return total
    return positive_int("nsrc", nsrc)


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ArgumentError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ArgumentError(f"{name} must be an integer; got {value!r}")
    return int(value)


def wants_threads(kwargs: dict) -> bool:
    """Do the keywords ask for several receive threads (``threads=N > 1``, ``socks=[...]``)?"""
    return kwargs.get("socks") is not None or kwargs.get("threads") not in (None, 1)


def drop_single_thread_keywords(kwargs: dict) -> None:
    """``threads=1`` (or none) is the single-thread capture itself: remove the keywords of
    the multi-thread one (``cores`` pins receive threads, which it has none of)."""
    if wants_threads(kwargs):
        return
    kwargs.pop("threads", None)
    kwargs.pop("socks", None)
    if kwargs.get("cores") is not None:
        raise ArgumentError("cores: pins receive threads; give threads=N (a single-thread "
                            "capture runs in the thread calling recv())")
    kwargs.pop("cores", None)
