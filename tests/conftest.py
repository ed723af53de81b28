"""Shared test setup: CPU only, no persistent compilation cache, and the path to ../shared/data."""

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The CLI's persistent compilation cache is process-wide: tests calling main() leave it off (hermetic runs);
# tests/test_plumbing.py turns it on in its own folders.
os.environ.setdefault("JAXROBUST_COMPILE_CACHE", "off")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("JAXROBUST_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  if not SHARED_DATA.exists():
    pytest.skip(f"shared data folder {SHARED_DATA} not present (set JAXROBUST_SHARED_DATA)")
  return SHARED_DATA
