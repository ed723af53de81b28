"""JAX's persistent compilation cache: compiled programs kept on disk across processes.

    enable_compile_cache()            # ~/.cache/jaxrobust/xla, or $JAXROBUST_COMPILE_CACHE
    enable_compile_cache("/scratch/xla")

A second ``jaxrobust evaluate`` (or a preempted job's restart) loads its attacks' XLA programs instead of
compiling them again. Every program is cached, however quick to compile or small (the minimum compile
time is 0 s and the size limit is off), since an attack loop is many small programs. The CLI turns it on
unless ``--no-compile-cache`` is given or JAXROBUST_COMPILE_CACHE is ``off``.
"""

from __future__ import annotations

import os

ENV = "JAXROBUST_COMPILE_CACHE"
DEFAULT_DIR = os.path.join("~", ".cache", "jaxrobust", "xla")


def compile_cache_dir(path: str | None = None) -> str | None:
  """The folder to use: ``path``, else $JAXROBUST_COMPILE_CACHE, else ~/.cache/jaxrobust/xla; None when the
  variable says off ('off', '0', 'false', 'no' or empty)."""
  if path is None:
    path = os.environ.get(ENV, DEFAULT_DIR)
    if path.strip().lower() in ("", "off", "0", "false", "no"):
      return None
  return os.path.abspath(os.path.expanduser(path))


def enable_compile_cache(path: str | None = None) -> str | None:
  """Turns the cache on in ``compile_cache_dir(path)`` (created if missing) and returns it; None when off.

  Raises PermissionError naming the variable to set when the folder cannot be created or written."""
  import jax
  folder = compile_cache_dir(path)
  if folder is None:
    return None
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise PermissionError(f"cannot create the compilation cache folder {folder!r} ({e}); set {ENV}=DIR to a "
                          f"writable folder, or {ENV}=off / --no-compile-cache to run without it") from e
  if not os.access(folder, os.W_OK):
    raise PermissionError(f"the compilation cache folder {folder!r} is not writable; set {ENV}=DIR to a "
                          f"writable folder, or {ENV}=off / --no-compile-cache to run without it")
  jax.config.update("jax_compilation_cache_dir", folder)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  return folder
