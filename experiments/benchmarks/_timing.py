"""The timing helper the single-op probes share (scripts in this folder import it by name)."""

import time

import numpy as np


def median_ms(f, n: int = 10, warmup: int = 1) -> float:
  """Median wall time of ``f()`` over ``n`` calls after ``warmup`` untimed ones, in ms (0.1 ms).

  ``f`` must block until its work is done (``jax.block_until_ready`` for JAX results).
  """
  for _ in range(warmup):
    f()
  ts = []
  for _ in range(n):
    t = time.perf_counter()
    f()
    ts.append(time.perf_counter() - t)
  return round(1e3 * float(np.median(ts)), 1)
