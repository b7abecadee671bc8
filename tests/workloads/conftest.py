"""Test configuration for the workloads: strict dtype promotion and no implicit rank broadcasting."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture(autouse=True)
def _strict_numerics():
    """Implicit dtype promotion or rank broadcasting in workload code is an error under test."""
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        yield


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """Point the user cache at an empty temporary folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("BATCHLAB_CACHE", str(folder))
    return folder
