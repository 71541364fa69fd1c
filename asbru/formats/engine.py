"""Turn a format's compiled pieces into whole-batch kernels.

numba caches a compiled function on disk only when every function it calls is a module
global (a dispatcher passed as an argument defeats the cache: measured here, every start-up
recompiles).  So a batch kernel for one format is made by writing a tiny Python module whose
globals are that format's ``decode``/``place``/``fill`` and whose body is a shared template,
and importing it.  The module lives in the kernel cache directory; its name carries a hash of
the template and of the format's source, so editing either gives a fresh module and a fresh
numba cache, and an unchanged pair reuses both (start-up in well under a second).
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import tempfile
import types
from pathlib import Path

_loaded: dict[str, types.ModuleType] = {}


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


def _module_fingerprint(module: types.ModuleType) -> str:
    try:
        src = inspect.getsource(module)
    except (OSError, TypeError):
        src = repr(getattr(module, "__file__", module.__name__))
    return hashlib.sha256(src.encode()).hexdigest()


def generated_module(tag: str, source: str, depends_on: tuple[types.ModuleType, ...] = ()) -> types.ModuleType:
    """Import ``source`` as a real module file named after ``tag`` and a content hash.

    ``depends_on``: modules whose source change must invalidate the generated module
    (the format module, the template module).
    """
    h = hashlib.sha256(source.encode())
    for mod in depends_on:
        h.update(_module_fingerprint(mod).encode())
    safe_tag = "".join(c if c.isalnum() else "_" for c in tag)
    name = f"asbru_kernel_{safe_tag}_{h.hexdigest()[:16]}"
    if name in _loaded:
        return _loaded[name]
    directory = kernel_cache_dir()
    path = directory / f"{name}.py"
    if not path.exists():
        # write atomically: concurrent processes may generate the same module
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _loaded[name] = module
    return module
