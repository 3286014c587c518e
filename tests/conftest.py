"""Shared test fixtures. Real parts only: shared face data, fetched model files, a real broker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED = Path(os.environ.get("EDGE_LIVENESS_SHARED_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(TESTS))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (the team's third-party face data); skip with the reason when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared face data not found at {SHARED} (set EDGE_LIVENESS_SHARED_DATA or put shared/ beside the repo)")
    return SHARED


def shared_file(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data file {p} is absent")
    return p


# Fixture modules owned by the parts of the tree that need them.
for _mod in ("fixtures_broker", "fixtures_models"):
    try:
        _m = __import__(_mod)
        globals().update({k: v for k, v in vars(_m).items() if not k.startswith("_")})
    except ModuleNotFoundError as e:
        if e.name != _mod:
            raise
