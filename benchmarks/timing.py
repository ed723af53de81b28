"""Timing for the benchmarks: interleaved repeats, their summary, and AOT-compiled XLA programs.

* ``Variant`` / ``measure``: contenders of one row, warmed up, then timed *interleaved* (repeat r
  runs every variant once, in an order rotated by r), so slow drifts in machine load hit all alike.
* ``summarize`` / ``variant_record``: median, min/max and quartiles of the wall times; items/s.
* ``aot_compile``: ``jax.jit(f).lower(...).compile()`` with lower and compile times, XLA's static
  memory analysis and flop estimate.
* ``median_ms``: the plain median of a single-op probe.
"""

from __future__ import annotations

import time
from typing import Callable, List, Optional

import numpy as np

# A short pause before each timed call: torch's OpenMP workers may still be spinning after a
# torch call and would steal cores from the JAX call that follows (and the other way round).
GAP_S = 0.05


class Variant:
  """One contender in a row: a zero-argument ``call`` that runs to completion (blocks)."""

  def __init__(self, name: str, framework: str, call: Optional[Callable[[], None]] = None,
               info: Optional[dict] = None, warmup: Optional[int] = None, error: Optional[str] = None):
    self.name, self.framework, self.call = name, framework, call
    self.info = dict(info or {})
    self.warmup = warmup
    self.error = error
    self.times: List[float] = []
    self.first_call_s: Optional[float] = None


def _timed(call) -> float:
  t0 = time.perf_counter()
  call()
  return time.perf_counter() - t0


def error_text(e: BaseException) -> str:
  return f"{type(e).__name__}: {e}".strip()[:2000]


def measure(variants: List[Variant], repeats: int, warmup: int, log) -> None:
  """Warm-up each variant, then time them interleaved (order rotated every repeat)."""
  for v in variants:
    if v.error is not None:
      continue
    for i in range(v.warmup if v.warmup is not None else warmup):
      try:
        t = _timed(v.call)
      except Exception as e:  # noqa: BLE001 - one failing contender must not sink the run
        v.error = error_text(e)
        log(f"    {v.name}: warm-up failed: {v.error}")
        break
      if i == 0:
        v.first_call_s = t
        log(f"    {v.name}: first call {t:.3f} s")
  live = [v for v in variants if v.error is None]
  for r in range(repeats):
    if not live:
      break
    k = r % len(live)
    for v in live[k:] + live[:k]:
      time.sleep(GAP_S)
      try:
        v.times.append(_timed(v.call))
      except Exception as e:  # noqa: BLE001
        v.error = error_text(e)
        log(f"    {v.name}: failed: {v.error}")
    live = [v for v in live if v.error is None]
    log("    repeat %d/%d: %s" % (r + 1, repeats, "  ".join(f"{v.name} {v.times[-1]:.3f}s" for v in live)))


def summarize(times: List[float], items: int) -> dict:
  """Median and spread of wall times, and items/s (images or examples)."""
  if not times:
    return {"times_s": []}
  a = np.asarray(times, np.float64)
  med = float(np.median(a))
  return {"times_s": [round(float(t), 6) for t in a], "median_s": med, "min_s": float(a.min()),
          "max_s": float(a.max()), "q25_s": float(np.percentile(a, 25)), "q75_s": float(np.percentile(a, 75)),
          "items_per_s": items / med, "items_per_s_min": items / float(a.max()),
          "items_per_s_max": items / float(a.min())}


def variant_record(v: Variant, items: int) -> dict:
  out = {"name": v.name, "framework": v.framework, **v.info}
  if v.error is not None:
    out["error"] = v.error
  out.update(summarize(v.times, items))
  if v.first_call_s is not None:
    out["first_call_s"] = v.first_call_s
    if v.times:
      # For torch.compile this is its compile time; for AOT-compiled JAX it should be ~0.
      out["first_call_minus_median_s"] = v.first_call_s - out["median_s"]
  return out


def memory_stats(compiled) -> dict:
  """XLA's static memory analysis of a compiled program, in bytes.

  peak_estimate_bytes = arguments + outputs + temporaries - aliased (donated) bytes: the live
  set XLA planned for, which is what grows with an unrolled attack loop.
  """
  try:
    m = compiled.memory_analysis()
  except Exception as e:  # noqa: BLE001 - not every backend implements it
    return {"error": error_text(e)}
  if m is None:
    return {"error": "memory_analysis() returned None on this backend"}
  fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "alias_size_in_bytes",
            "generated_code_size_in_bytes", "peak_memory_in_bytes")
  out = {f: int(getattr(m, f)) for f in fields if hasattr(m, f)}
  out["peak_estimate_bytes"] = (out.get("argument_size_in_bytes", 0) + out.get("output_size_in_bytes", 0)
                                + out.get("temp_size_in_bytes", 0) - out.get("alias_size_in_bytes", 0))
  return out


def xla_flops(compiled) -> Optional[float]:
  """XLA's flop estimate (a while-loop body is counted once, so fori_loop programs read low)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # noqa: BLE001
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or "flops" not in cost:
    return None
  return float(cost["flops"])


def aot_compile(fn, *args, donate=()):
  """jit(fn).lower(*args).compile(), timed. Returns (compiled, info)."""
  import jax
  t0 = time.perf_counter()
  lowered = jax.jit(fn, donate_argnums=donate).lower(*args)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  info = {"lower_s": t1 - t0, "compile_s": t2 - t1, "compile_total_s": t2 - t0,
          "memory": memory_stats(compiled), "xla_flops": xla_flops(compiled)}
  return compiled, info



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
