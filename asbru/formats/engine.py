"""How every compiled kernel of asbru is built: a template module bound to its collaborators.

A kernel that must be specialised (the capture loop per receive backend, a format's C
entry points and whole-batch kernels) is written once, as ordinary Python, in a **template
module**: plain functions marked :func:`bound_kernel` (or :func:`bound_cfunc`) whose
collaborators (``_decode``, ``_place``, ``_fetch``, ...) are module globals, listed in the
template's ``BINDS``.  The template
imports a default for each, so it is also a valid module that editors, linters, type
checkers and coverage read as usual.

A **binding** is a tiny generated module, written to the kernel cache directory, whose text
is only import lines naming the collaborators, then ``bind(globals(), TEMPLATE)``:
:func:`bind` copies each template function with the binding's globals (so ``_decode``
resolves to this format's decode) and compiles it with ``numba.njit(nogil=True,
cache=True)``.  No other numba code in asbru is generated from text.

numba's disk cache (numba/core/caching.py) keys a function by its file, qualified name and
first line, and stamps the content of that file: functions copied from one template for
two formats would share one cache entry -- and the second format would load the first's
machine code.  So each copy's code object names the *binding* file as its file
(``co_filename``), whose name holds a hash of the binding text and of the source of every
module the compiled code depends on (template, format, helpers): a changed dependency gives
a new binding and a fresh cache, an unchanged one reuses both (start-up well under a
second).  Under ``NUMBA_DISABLE_JIT=1`` nothing is compiled and the copies keep the
template's file name, so a debugger or coverage steps through the template's real lines.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, TypeVar, Union

_loaded: dict[str, types.ModuleType] = {}
_PREFIX = "asbru_kernel_"   # the module name of every binding starts so
_F = TypeVar("_F", bound=Callable[..., Any])

#: what a binding may give a template's global: ``"module:attribute"`` (imported) or a
#: literal bool / int / None
Binding = Union[str, bool, int, None]


def bound_kernel(fn: _F) -> _F:
    """Mark a template function as a kernel: :func:`bind` compiles a copy of it per binding.
    The function itself stays plain Python (the template module is never compiled)."""
    fn.__asbru_kernel__ = True  # type: ignore[attr-defined]
    return fn


def bound_cfunc(signature: Any) -> Callable[[_F], _F]:
    """Mark a template function as a C-callable kernel of ``signature`` (a numba signature):
    :func:`bind` compiles a copy of it per binding with ``numba.cfunc`` (its ``.address`` is
    a C function pointer).  Under ``NUMBA_DISABLE_JIT=1`` the copy stays plain Python."""
    def mark(fn: _F) -> _F:
        fn.__asbru_kernel__ = True  # type: ignore[attr-defined]
        fn.__asbru_cfunc__ = signature  # type: ignore[attr-defined]
        return fn
    return mark


def kernel_cache_dir() -> Path:
    """``$ASBRU_CACHE_DIR``, else ``~/.cache/asbru/kernels``, else a temp directory."""
    env = os.environ.get("ASBRU_CACHE_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path.home() / ".cache" / "asbru" / "kernels")
    candidates.append(Path(tempfile.gettempdir()) / f"asbru-kernels-{os.getuid()}")
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
            return path
        except OSError:
            continue
    raise RuntimeError("no writable directory for asbru's compiled kernels (set ASBRU_CACHE_DIR)")


def importable_name(mod: types.ModuleType) -> str:
    """``mod``'s name, registered in ``sys.modules`` so that a binding can import it (a
    format module registered at run time may not be importable by its name otherwise)."""
    name = mod.__name__
    if sys.modules.get(name) is not mod:
        sys.modules[name] = mod
    return name


_fingerprints: dict[tuple[str, str], str] = {}


def _module_fingerprint(module: types.ModuleType) -> str:
    # once per process: a forked child that dropped privileges may no longer read the
    # files its parent fingerprinted, and must still find the parent's bindings
    key = (module.__name__, str(getattr(module, "__file__", "")))
    if key not in _fingerprints:
        try:
            src = inspect.getsource(module)
        except (OSError, TypeError):
            src = repr(key)
        _fingerprints[key] = hashlib.sha256(src.encode()).hexdigest()
    return _fingerprints[key]


def _binding_line(name: str, value: Binding) -> str:
    if isinstance(value, str):
        modname, _, attr = value.partition(":")
        if not attr:
            raise ValueError(f"binding of {name}: expected 'module:attribute', got {value!r}")
        return f"from {modname} import {attr} as {name}"
    if value is None or isinstance(value, (bool, int)):
        return f"{name} = {value!r}"
    raise TypeError(f"binding of {name}: {value!r} is not a 'module:attribute' string or a literal")


def bound_module(tag: str, template: types.ModuleType, bindings: Mapping[str, Binding],
                 depends_on: tuple[types.ModuleType, ...] = ()) -> types.ModuleType:
    """The binding of ``template`` to ``bindings`` (global name -> :data:`Binding`): a
    module in the kernel cache directory whose kernels are ``template``'s, compiled with
    these globals.  ``depends_on``: modules whose compiled code ends up in the kernels (the
    format module, helpers); ``template`` and the bound modules are added."""
    missing = [n for n in getattr(template, "BINDS", ()) if n not in bindings]
    extra = [n for n in bindings if n not in getattr(template, "BINDS", ())]
    if missing or extra:
        raise ValueError(f"binding {tag} of {template.__name__}: missing {missing}, unknown {extra} "
                         f"(the template's BINDS is {getattr(template, 'BINDS', ())})")
    lines = [f'"""Binding of {template.__name__} ({tag}), generated by asbru.formats.engine: do not',
             "edit.  Its kernels are the template's functions; numba names this file in errors, the",
             'line numbers are the template\'s."""',
             "from asbru.formats.engine import bind"]
    lines += [_binding_line(n, v) for n, v in bindings.items()]
    lines.append(f"bind(globals(), {template.__name__!r})")
    text = "\n".join(lines) + "\n"
    deps = [template, *depends_on]
    for v in bindings.values():
        if isinstance(v, str):
            mod = sys.modules.get(v.partition(":")[0])
            # a binding's own name already hashes everything it is made of
            if mod is not None and not mod.__name__.startswith(_PREFIX):
                deps.append(mod)
    h = hashlib.sha256(text.encode())
    for mod in dict.fromkeys(deps):
        h.update(_module_fingerprint(mod).encode())
    safe_tag = "".join(c if c.isalnum() else "_" for c in tag)
    name = f"{_PREFIX}{safe_tag}_{h.hexdigest()[:16]}"
    if name in _loaded:
        return _loaded[name]
    directory = kernel_cache_dir()
    path = directory / f"{name}.py"
    if not path.exists():
        # write atomically: concurrent processes may bind the same pair
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _loaded[name] = module
    return module


def jit_disabled() -> bool:
    from numba.core import config
    return bool(config.DISABLE_JIT)


def bind(g: dict[str, Any], template_name: str, jit: Optional[bool] = None) -> None:
    """Fill a binding module's globals ``g``: the template's globals that the binding does
    not set itself, then a copy of each :func:`bound_kernel` of the template whose globals are
    ``g``, compiled (``numba.njit(nogil=True, cache=True)``) unless the JIT is disabled."""
    template = importlib.import_module(template_name)
    if jit is None:
        jit = not jit_disabled()
    kernels = {k: v for k, v in vars(template).items()
               if isinstance(v, types.FunctionType) and getattr(v, "__asbru_kernel__", False)
               and v.__module__ == template.__name__}
    for k, v in vars(template).items():
        if k not in g and k not in kernels and not (k.startswith("__") and k.endswith("__")):
            g[k] = v
    njit = None
    if jit:
        import numba
        njit = numba.njit(nogil=True, cache=True)
    for k, fn in kernels.items():
        code = fn.__code__
        if jit:
            # numba's cache locates (and stamps) a function by its file: the binding's
            code = code.replace(co_filename=g["__file__"])
        copy = types.FunctionType(code, g, fn.__name__, fn.__defaults__, fn.__closure__)
        copy.__qualname__ = fn.__qualname__
        copy.__doc__ = fn.__doc__
        copy.__module__ = g["__name__"]
        copy.__kwdefaults__ = fn.__kwdefaults__
        sig = getattr(fn, "__asbru_cfunc__", None)
        if not jit:
            g[k] = copy
        elif sig is not None:
            import numba
            g[k] = numba.cfunc(sig, nogil=True, cache=True)(copy)
        else:
            g[k] = njit(copy)


def is_cached(dispatcher: Any) -> bool:
    """True when ``dispatcher`` (a numba function) is compiled in this process or has an
    entry in numba's on-disk cache (loading it then takes ~0.1 s, not a compile)."""
    if getattr(dispatcher, "overloads", None):
        return True
    cache = getattr(dispatcher, "_cache", None)
    index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
    if index is None:     # NUMBA_DISABLE_JIT, or a cache-less dispatcher: nothing to say
        return True
    return os.path.exists(index)


_LABELS = {"udp": "capture", "sniffer": "sniffer capture", "disk": "disk reader",
           "write": "writer", "cli": "`asbru capture`"}


@contextlib.contextmanager
def announce(kmod: Any, fmt: str, backend: str,
             entry: str = "run") -> Iterator[None]:
    """Say on stderr that a kernel is being compiled, and how long it took -- only when it
    is not in the cache (a warm start says nothing).  ``ASBRU_QUIET=1`` silences it."""
    fn = getattr(kmod, entry, None)
    if fn is None or is_cached(fn) or os.environ.get("ASBRU_QUIET"):
        yield
        return
    label = _LABELS.get(backend, backend)
    sys.stderr.write(f"asbru: compiling the {fmt} {label} kernel (first use on this machine; "
                     f"`asbru warmup` compiles ahead) ...\n")
    sys.stderr.flush()
    t0 = time.monotonic()
    yield
    sys.stderr.write(f"asbru: compiled the {fmt} {label} kernel in {time.monotonic() - t0:.1f} s "
                     f"(cached in {kernel_cache_dir()})\n")
    sys.stderr.flush()
