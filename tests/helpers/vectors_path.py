"""The one place outside the repository that tests read: the shared test data.

``$ASBRU_SHARED`` (default: ``shared`` beside the repository's directory, where CI puts it)
holds ``vectors/`` (Bifrost's golden vectors; ``$ASBRU_VECTORS`` overrides that one) and
``seed/`` (the Bifrost tutorial the example script is checked against).  Tests that need a
file from there skip, naming the path, when it is absent.  See docs/index.md ("Tests").
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest


def shared_dir() -> Path:
    env = os.environ.get("ASBRU_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared"  # tests/helpers/ -> beside the repository


def vectors_dir() -> Path:
    env = os.environ.get("ASBRU_VECTORS")
    return Path(env) if env else shared_dir() / "vectors"


SHARED = shared_dir()
VECTORS = vectors_dir()
SEED = SHARED / "seed"


def need(path: Path, what: str) -> Path:
    """``path``, or skip the test saying what is missing and how to provide it."""
    if not path.exists():
        pytest.skip(f"{what} not available: {path} is absent (set ASBRU_SHARED or ASBRU_VECTORS)")
    return path


#: for the tests that read the vectors (and only those): skipped, with the reason, without them
needs_vectors = pytest.mark.skipif(not VECTORS.is_dir(), reason=f"Bifrost vectors not available: {VECTORS} "
                                   "is absent (set ASBRU_SHARED or ASBRU_VECTORS)")
