"""Where Bifrost's golden vectors are: ``$ASBRU_VECTORS``, else ``shared/vectors`` beside the
repository (where CI puts it), else /work/shared/vectors."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


def vectors_dir() -> Path:
    env = os.environ.get("ASBRU_VECTORS")
    if env:
        return Path(env)
    beside_repo = Path(__file__).resolve().parents[2] / "shared" / "vectors"
    if beside_repo.is_dir():
        return beside_repo
    return Path("/work/shared/vectors")


VECTORS = vectors_dir()


#: for the tests that read the vectors (and only those): skipped, with the reason, without them
needs_vectors = pytest.mark.skipif(not VECTORS.is_dir(), reason=f"Bifrost vectors not found at {VECTORS}")
