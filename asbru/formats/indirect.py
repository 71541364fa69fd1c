"""A format's compiled functions reached through their addresses, so that the loops calling
them are compiled once for every format.

Why: numba compiles a function per distinct set of globals.  A capture loop that called a
format's ``decode``/``place`` by name was therefore a separate multi-second compile for
every format (and again for ``asbru capture``'s whole-packet view of it).  Instead, each
format's ``decode``, ``place`` and ``place_row`` are compiled on their own as C-callable
entry points (:mod:`asbru.formats.entry_points`, ~1 s per format) and their addresses are
written into the capture config (``cfg[CFG_FN_DECODE]`` ...).  The loops call
:func:`decode` / :func:`place` / :func:`place_row` below, which read the address from
``cfg`` and make an indirect call -- a few nanoseconds per packet, against the ~1 us a
packet takes.

The C ABI of the entry points: every array is passed as (pointer to its first element,
number of elements); the arrays passed are contiguous (packet rows, payload slices, ring
time slots, the descriptor).

Under ``NUMBA_DISABLE_JIT=1`` the "addresses" are handles into a table of the format's
Python functions (:func:`python_handle`), so the same loops run as plain Python.
"""
from __future__ import annotations

from typing import Any, Callable

import numba
from llvmlite import ir as _ir
from numba import types as _t
from numba.core import config as _nbconfig
from numba.extending import intrinsic

from .spec import CFG_FN_DECODE, CFG_FN_PLACE, CFG_FN_PLACE_ROW

#: the entry points' C signatures (see the module docstring)
_U8P = _t.CPointer(_t.uint8)
_I64P = _t.CPointer(_t.int64)
DECODE_SIG = _t.int64(_U8P, _t.int64, _I64P, _t.int64, _I64P, _t.int64, _I64P, _t.int64)
PLACE_SIG = _t.void(_U8P, _t.int64, _I64P, _t.int64, _U8P, _t.int64, _t.int64)
PLACE_ROW_SIG = _t.int64(_I64P, _t.int64, _I64P, _t.int64, _U8P, _t.int64, _t.int64)

# ---------------------------------------------------------------------------------------
# The indirect call (an LLVM intrinsic) and its plain-Python twin

_python_entries: list[Callable[..., Any]] = [lambda *a: None]   # handle 0: no function


def python_handle(fn: Callable[..., Any]) -> int:
    """A handle standing for ``fn`` where the JIT is off (the capture config's address)."""
    for h, known in enumerate(_python_entries):
        if known is fn:
            return h
    _python_entries.append(fn)
    return len(_python_entries) - 1


def _llvm_arg_types(sig_args: tuple) -> list:
    # each array becomes (element pointer, element count); an integer stays one i64
    out: list = []
    for a in sig_args:
        if isinstance(a, _t.Array):
            out += [_ir.IntType(a.dtype.bitwidth).as_pointer(), _ir.IntType(64)]
        else:
            out.append(_ir.IntType(64))
    return out


def _indirect(returns: Any) -> Callable[..., Any]:
    """An intrinsic ``call(addr, a0, a1, a2, a3)``: call the C function at ``addr`` with each
    array argument passed as (data pointer, size) and each integer as int64 (every entry
    point takes four arguments: numba intrinsics have a fixed arity)."""

    def typer(typingctx, addr, a0, a1, a2, a3):
        args = (a0, a1, a2, a3)
        if not isinstance(addr, _t.Integer):
            return None
        for a in args:
            if not (isinstance(a, _t.Integer) or (isinstance(a, _t.Array) and a.ndim == 1)):
                return None
        sig = returns(_t.int64, *[a if isinstance(a, _t.Array) else _t.int64 for a in args])

        def codegen(context, builder, signature, llargs):
            ret = _ir.VoidType() if returns is _t.void else _ir.IntType(64)
            fnty = _ir.FunctionType(ret, _llvm_arg_types(signature.args[1:]))
            values = []
            for ty, v in zip(signature.args[1:], llargs[1:]):
                if isinstance(ty, _t.Array):
                    ary = context.make_array(ty)(context, builder, v)
                    values += [ary.data, ary.nitems]
                else:
                    values.append(context.cast(builder, v, ty, _t.int64))
            fn = builder.inttoptr(context.cast(builder, llargs[0], signature.args[0], _t.int64),
                                  fnty.as_pointer())
            r = builder.call(fn, values)
            return context.get_dummy_value() if returns is _t.void else r

        return sig, codegen

    return intrinsic(typer)


_call_i64_compiled = _indirect(_t.int64)
_call_void_compiled = _indirect(_t.void)


def _call_python(addr: int, *args: Any) -> Any:
    """Python twin of the indirect call: ``addr`` is a :func:`python_handle`."""
    return _python_entries[int(addr)](*args)


_call_i64 = _call_python if _nbconfig.DISABLE_JIT else _call_i64_compiled
_call_void = _call_python if _nbconfig.DISABLE_JIT else _call_void_compiled

# ---------------------------------------------------------------------------------------
# What the loops call: the format's functions, found in cfg


@numba.njit(nogil=True, cache=True)
def decode(pkt, cfg, state, d):
    """The format's ``decode(pkt, cfg, state, d)``."""
    return _call_i64(cfg[CFG_FN_DECODE], pkt, cfg, state, d)


@numba.njit(nogil=True, cache=True)
def place(cfg, payload, d, slot, nsrc):
    """The format's ``place(payload, d, slot, nsrc)``."""
    _call_void(cfg[CFG_FN_PLACE], payload, d, slot, nsrc)


@numba.njit(nogil=True, cache=True)
def place_row(cfg, addrs, d, slot, nsrc):
    """The format's ``place_row(addrs, d, slot, nsrc)``; False where it has none."""
    if cfg[CFG_FN_PLACE_ROW] == 0:
        return False
    return _call_i64(cfg[CFG_FN_PLACE_ROW], addrs, d, slot, nsrc) != 0


@numba.njit(nogil=True, cache=True)
def has_place_row(cfg):
    """Whether the format has a ``place_row`` (its packets may be placed a row at a time)."""
    return cfg[CFG_FN_PLACE_ROW] != 0


# ---------------------------------------------------------------------------------------
# Folding the format's functions into their entry points


def _inline_calls_above_python() -> None:
    """Under NUMBA_DISABLE_JIT=1 there is nothing to inline."""


@intrinsic
def _inline_calls_above_compiled(typingctx):
    """Mark every call to a numba function made so far in the calling function
    ``alwaysinline`` (a call-site attribute: LLVM inlines the callee once the libraries are
    linked).  The entry points call the format's ``decode``/``place`` with arrays rebuilt
    from pointers; as a call, each array travels as a struct and every reference count
    the format's code takes is a call into the runtime (the arrays own nothing, so once
    inlined those fold away): decode + place of a CHIPS 1 KiB packet took 32 ns through
    the entry points, 19 ns folded (``benchmarks/indirect_call.py``, 2-core VM)."""
    sig = _t.void()

    def codegen(context, builder, signature, args):
        for block in builder.function.blocks:
            for ins in block.instructions:
                if (isinstance(ins, _ir.CallInstr) and isinstance(ins.callee, _ir.Function)
                        and ins.callee.name.startswith("_ZN")):
                    ins.attributes.add("alwaysinline")
        return context.get_dummy_value()

    return sig, codegen


inline_calls_above = (_inline_calls_above_python if _nbconfig.DISABLE_JIT
                      else _inline_calls_above_compiled)
