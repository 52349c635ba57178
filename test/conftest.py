"""Shared fixtures: the ``../shared`` data (tests that need it skip with the reason)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lutfuse_ros.core.synthetic import synthetic_pair

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data beside the repository), absent here")
    return path


@pytest.fixture(scope="session")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A procedural 96x128 (IR, RGB) pair."""
    return synthetic_pair(seed=3, size=(96, 128))
