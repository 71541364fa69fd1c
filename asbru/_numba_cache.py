"""A writable numba cache location for every user (run from ``asbru/__init__.py``)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _ensure_numba_cache() -> None:
    """Give numba a writable cache directory before anything compiled is imported.

    ``cache=True`` functions refuse to be *defined* ("no locator available") when neither the
    package's ``__pycache__`` nor the user's cache directory is writable -- e.g. an
    unprivileged account whose HOME does not exist running a root-installed asbru.  The
    commands must still run there (``asbru doctor`` above all), so fall back to a per-user
    temporary directory.  An explicit ``NUMBA_CACHE_DIR`` always wins.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    pkg = Path(__file__).resolve().parent
    pycache = pkg / "__pycache__"
    if os.access(pycache if pycache.exists() else pkg, os.W_OK):
        return
    home = Path(os.path.expanduser("~"))
    if os.access(home / ".cache", os.W_OK) or (os.access(home, os.W_OK)
                                                and not os.path.lexists(home / ".cache")):
        return
    path = Path(tempfile.gettempdir()) / f"asbru-numba-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(path)
    except OSError:
        pass


_ensure_numba_cache()
