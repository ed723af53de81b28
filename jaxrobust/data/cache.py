"""An .npz cache for decoded arrays whose decoding is slow (CIFAR PNG strips, tarballs).

Entries live in $JAXROBUST_CACHE_DIR (default ~/.cache/jaxrobust) under a key that includes a
fingerprint (path, size, mtime) of the source files, so changed sources miss the cache. An
entry that cannot be read or has the wrong shapes is rebuilt; writes are atomic (temp file +
rename) because several processes may load the same dataset at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

_log = logging.getLogger(__name__)

# Bump when the layout of cached entries changes, so old entries are ignored.
CACHE_FORMAT_VERSION = 1


def cache_dir() -> Path:
  """$JAXROBUST_CACHE_DIR, else ~/.cache/jaxrobust (not created here)."""
  return Path(os.environ.get("JAXROBUST_CACHE_DIR") or "~/.cache/jaxrobust").expanduser()


def fingerprint(paths: Sequence[Path]) -> str:
  """16 hex digits identifying the files by resolved path, size and mtime."""
  digest = hashlib.sha256(f"v{CACHE_FORMAT_VERSION}".encode())
  for path in sorted(Path(p).resolve() for p in paths):
    stat = path.stat()
    digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()[:16]


def _valid(arrays: dict, image_shape: tuple[int, ...], expected_n: Optional[int]) -> bool:
  """True iff arrays has uint8 'images' (N, *image_shape) and only (N,) integer arrays else."""
  images = arrays.get("images")
  if images is None or images.dtype != np.uint8 or images.shape[1:] != tuple(image_shape):
    return False
  n = images.shape[0]
  if expected_n is not None and n != expected_n:
    return False
  return all(v.shape == (n,) and np.issubdtype(v.dtype, np.integer)
             for k, v in arrays.items() if k != "images")


def cached_arrays(key: str, sources: Sequence[Path], build: Callable[[], dict],
                  image_shape: tuple[int, ...], expected_n: Optional[int] = None) -> dict:
  """Returns build()'s dict of arrays ('images' + (N,) label arrays), via the cache.

  key: a readable prefix (e.g. 'cifar10_pngstrips_train'); the source fingerprint is appended.
  """
  path = cache_dir() / f"{key}_{fingerprint(sources)}.npz"
  if path.exists():
    try:
      with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
      if _valid(arrays, image_shape, expected_n):
        return arrays
      _log.warning("cache entry %s has unexpected shapes; rebuilding it", path)
    except Exception as err:  # A truncated or corrupt file: rebuild rather than fail.
      _log.warning("cache entry %s is unreadable (%s); rebuilding it", path, err)
  arrays = build()
  if not _valid(arrays, image_shape, expected_n):
    raise ValueError(f"decoded arrays for {key} have unexpected shapes: "
                     f"{ {k: v.shape for k, v in arrays.items()} }")
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
      with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)  # Uncompressed: loading is then a plain read.
      os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache should be readable.
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.unlink(tmp)
  except OSError as err:  # A read-only home must not stop loading.
    _log.warning("could not write cache entry %s (%s); continuing without cache", path, err)
  return arrays
