"""Fixtures for the data tests: an isolated cache and environment, and the shared offline data."""

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def session_cache_dir(tmp_path_factory):
  """One cache for the session, so CIFAR strips are decoded once, never into ~/.cache."""
  return tmp_path_factory.mktemp("jaxrobust_cache")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, session_cache_dir):
  """A user's JAXROBUST_DATA_DIR or cache must not change what the tests see."""
  monkeypatch.setenv("JAXROBUST_CACHE_DIR", str(session_cache_dir))
  monkeypatch.delenv("JAXROBUST_DATA_DIR", raising=False)


@pytest.fixture(scope="session")
def shared_data() -> Path:
  """$JAXROBUST_SHARED_DATA or <repo>/../shared/data; skips if absent."""
  root = Path(os.environ.get("JAXROBUST_SHARED_DATA") or _REPO.parent / "shared" / "data")
  if not (root / "mnist").is_dir():
    pytest.skip(f"shared offline data not found at {root} (set JAXROBUST_SHARED_DATA)")
  return root
