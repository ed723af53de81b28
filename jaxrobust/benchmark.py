"""Benchmark harness: JAX vs PyTorch, side by side in one process (``jaxrobust benchmark``).

    jaxrobust benchmark [--quick] [--rows ROWS] [--batch-size B] [--repeats N] [--steps T]
                        [--curves] [--torch-compile] [--no-torch] [--json OUT] [--markdown OUT]

Rows (ids ``KIND:MODEL``, KIND in pgd, pgd_at, trades, memory; MODEL in small_cnn, preact_resnet18):

* ``pgd``: PGD-T Linf throughput (random start, step eps/4; eps 0.3 on SmallCNN 28x28x1,
  8/255 on PreAct ResNet-18 32x32x3). JAX as the library runs it (``jax``: ``lax.fori_loop``,
  forward passes in micro-batches of 64 rows per device), fully unrolled (``jax_unrolled``) and without
  micro-batches (``jax_whole_batch``); PyTorch eager (torchattacks' PGD loop); torch.compile
  with ``--torch-compile`` (slow to compile, so off by default).
* ``pgd_at`` / ``trades``: one whole train step (attack + SGD update) per call; examples/s.
  The JAX step is ``make_train_step`` with the library's defaults (rolled PGD loop).
* ``memory``: XLA's ``memory_analysis()`` of the compiled PGD-T programs and of one
  forward-backward at the same batch (input gradient, i.e. one PGD step; and parameter gradient
  in train mode), with the ratios. No timing.

Method: every JAX function is compiled ahead of time (``jax.jit(f).lower(...).compile()``, the
lower and compile times are recorded per row) and then called through the compiled executable.
Each variant gets ``--warmup`` untimed calls, then the variants of a row are timed
*interleaved*: repeat r runs every variant once, in an order rotated by r, so slow drifts in
machine load hit all variants alike. We report the median and the spread (min/max and the
quartiles) of the wall time per call, and images/s = batch / time. Both frameworks see the
same weights (ported with ``torch_reference.port_flax_to_torch``) and the same data; the
clean-logit difference is recorded as a sanity check.

``--curves`` adds SmallCNN cost curves: PGD time vs batch size, vs steps, vs the number of eps
values vmapped (against a Python loop over eps) and vs the number of ensemble members vmapped
(against a loop over members).

Timings are only as good as the machine is quiet: the JSON records the load average before and
after the run, the CPU model, core count, thread settings and library versions.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import os
import platform
import shlex
import sys
import time
import traceback
from typing import Callable, Dict, List, Optional

import numpy as np

SCHEMA = "jaxrobust.benchmark/1"
KINDS = ("pgd", "pgd_at", "trades", "memory")
MODELS = ("small_cnn", "preact_resnet18")
KIND_TITLES = {"pgd": "PGD-{steps} Linf", "pgd_at": "PGD-AT step (PGD-{steps})",
               "trades": "TRADES step (PGD-{steps})", "memory": "memory"}
# A short pause before each timed call: torch's OpenMP workers may still be spinning after a
# torch call and would steal cores from the JAX call that follows (and the other way round).
GAP_S = 0.05
NUM_CLASSES = 10
# (name, lax.fori_loop unroll, microbatch): the library default first, then the ablations.
PGD_JAX_VARIANTS = (("jax", 1, "auto"), ("jax_unrolled", True, "auto"), ("jax_whole_batch", 1, None))


def _model_specs(quick: bool) -> Dict[str, dict]:
  """Per model: input shape, eps, normalisation, get_model kwargs and default repeats."""
  from jaxrobust.models import CIFAR10_MEAN, CIFAR10_STD, MNIST_MEAN, MNIST_STD
  specs = {
    "small_cnn": dict(shape=(28, 28, 1), eps=0.3, mean=MNIST_MEAN, std=MNIST_STD, kwargs={},
                      repeats=5, label="SmallCNN 28x28x1"),
    "preact_resnet18": dict(shape=(32, 32, 3), eps=8 / 255, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                            kwargs={}, repeats=3, label="PreAct ResNet-18 32x32x3"),
  }
  if quick:  # tiny shapes for smoke tests; the numbers mean nothing
    specs["preact_resnet18"].update(shape=(16, 16, 3), kwargs={"width": 8},
                                    label="PreAct ResNet-18 (width 8) 16x16x3")
    for s in specs.values():
      s["repeats"] = 2
  return specs


def row_ids() -> List[str]:
  return [f"{k}:{m}" for k in KINDS for m in MODELS]


def select_rows(spec: str) -> List[str]:
  """--rows: comma-separated kinds, models, 'train' (= pgd_at,trades), 'all', or id globs."""
  ids = row_ids()
  if spec.strip() in ("", "all"):
    return ids
  if spec.strip() == "none":  # e.g. --curves alone
    return []
  chosen = []
  for item in (s.strip() for s in spec.split(",") if s.strip()):
    kinds = ("pgd_at", "trades") if item == "train" else (item,)
    hits = [i for i in ids if fnmatch.fnmatch(i, item) or i.split(":")[0] in kinds or i.split(":")[1] == item]
    if not hits:
      raise ValueError(f"--rows item {item!r} matches no row; rows are {', '.join(ids)} "
                       "(or a kind, a model, 'train', 'all', 'none')")
    chosen.extend(h for h in hits if h not in chosen)
  return [i for i in ids if i in chosen]  # canonical order


# ----------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------

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


def _error_text(e: BaseException) -> str:
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
        v.error = _error_text(e)
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
        v.error = _error_text(e)
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


# ----------------------------------------------------------------------------------------
# JAX helpers
# ----------------------------------------------------------------------------------------

def memory_stats(compiled) -> dict:
  """XLA's static memory analysis of a compiled program, in bytes.

  peak_estimate_bytes = arguments + outputs + temporaries - aliased (donated) bytes: the live
  set XLA planned for, which is what grows with an unrolled attack loop.
  """
  try:
    m = compiled.memory_analysis()
  except Exception as e:  # noqa: BLE001 - not every backend implements it
    return {"error": _error_text(e)}
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


# ----------------------------------------------------------------------------------------
# The benchmark context: models, data, compiled programs, torch twins
# ----------------------------------------------------------------------------------------

class Bench:
  def __init__(self, cfg: dict, torch_mod, log):
    self.cfg = cfg
    self.torch = torch_mod
    self.log = log
    self.specs = _model_specs(cfg["quick"])
    self._models: Dict[str, tuple] = {}
    self._compiled: Dict[tuple, tuple] = {}

  # -- models and data ---------------------------------------------------------------------

  def model(self, name: str):
    """(module, variables) for a model, built once with a fixed seed."""
    if name not in self._models:
      import jax
      from jaxrobust.models import get_model, init_model
      s = self.specs[name]
      module = get_model(name, NUM_CLASSES, mean=s["mean"], std=s["std"], **s["kwargs"])
      variables = init_model(module, jax.random.key(self.cfg["seed"]), s["shape"])
      self._models[name] = (module, variables)
    return self._models[name]

  def data(self, name: str, batch: int):
    """Fixed random images in [0, 1] and labels (timing does not depend on the values)."""
    rng = np.random.default_rng(self.cfg["seed"] + batch)
    x = rng.random((batch,) + tuple(self.specs[name]["shape"]), dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, batch).astype(np.int32)
    return x, y

  def torch_twin(self, name: str):
    """A fresh torch model with our weights (fresh, because train rows update it in place)."""
    from jaxrobust import torch_reference as tr
    module, variables = self.model(name)
    s = self.specs[name]
    net = tr.build_torch_model(name, s["shape"], NUM_CLASSES, mean=s["mean"], std=s["std"], **s["kwargs"])
    return tr.port_flax_to_torch(variables, net)

  def torch_data(self, x, y):
    from jaxrobust import torch_reference as tr
    return tr.to_torch_images(x), self.torch.from_numpy(y.astype(np.int64))

  # -- compiled JAX programs ---------------------------------------------------------------

  def pgd_program(self, name: str, batch: int, steps: int, unroll, microbatch="auto"):
    """AOT-compiled ``(variables, x, y, key) -> x_adv``, cached (memory rows reuse it)."""
    # repr(unroll): 1 == True in Python, so the raw value would alias fori and full unroll.
    cache_key = ("pgd", name, batch, steps, repr(unroll), repr(microbatch))
    if cache_key not in self._compiled:
      import jax
      from jaxrobust.attacks.pgd import pgd
      from jaxrobust.models import make_apply
      module, variables = self.model(name)
      apply = make_apply(module, microbatch=microbatch)
      eps = self.specs[name]["eps"]

      def attack(v, x, y, key):
        return pgd(lambda xx: apply(v, xx), x, y, key, eps=eps, step_size=eps / 4, steps=steps, unroll=unroll)
      x, y = self.data(name, batch)
      self._compiled[cache_key] = aot_compile(attack, variables, x, y, jax.random.key(0))
    return self._compiled[cache_key]


# ----------------------------------------------------------------------------------------
# Variants
# ----------------------------------------------------------------------------------------

def _try(name: str, framework: str, build: Callable[[], Variant], log) -> Variant:
  """Builds a variant; a failure becomes a Variant carrying the error (reported, not fatal)."""
  try:
    return build()
  except Exception as e:  # noqa: BLE001
    log(f"    {name}: setup failed: {_error_text(e)}")
    if os.environ.get("JAXROBUST_BENCH_DEBUG"):
      traceback.print_exc()
    return Variant(name, framework, error=_error_text(e))


def jax_pgd_variant(bench: Bench, name: str, model: str, batch: int, steps: int, unroll,
                    microbatch="auto") -> Variant:
  import jax
  from jaxrobust.models.microbatch import resolve_microbatch
  compiled, info = bench.pgd_program(model, batch, steps, unroll, microbatch)
  module, variables = bench.model(model)
  x, y = bench.data(model, batch)
  x, y, key = jax.device_put(x), jax.device_put(y), jax.random.key(1)

  def call():
    jax.block_until_ready(compiled(variables, x, y, key))
  bench.log(f"    {name}: lower {info['lower_s']:.2f} s + compile {info['compile_s']:.2f} s")
  return Variant(name, "jax", call, dict(info, unroll=unroll if unroll is True else int(unroll),
                                         microbatch=resolve_microbatch(microbatch)))


def torch_pgd_variant(bench: Bench, name: str, model: str, batch: int, steps: int,
                      compile_model: bool = False) -> Variant:
  from jaxrobust import torch_reference as tr
  net = bench.torch_twin(model).eval()
  if compile_model:
    net = bench.torch.compile(net)
  x, y = bench.data(model, batch)
  xt, yt = bench.torch_data(x, y)
  eps = bench.specs[model]["eps"]

  def call():
    tr.pgd_linf(net, xt, yt, eps=eps, step_size=eps / 4, steps=steps, random_start=True)
  # torch.compile compiles on the first call(s): two untimed calls, and the first-call excess
  # over the median is its compile time.
  return Variant(name, "torch", call, {"mode": "eval", "torch_compile": compile_model},
                 warmup=max(2, bench.cfg["warmup"]) if compile_model else None)


def _method(kind: str, eps: float, steps: int):
  from jaxrobust.methods import get_method
  kw = dict(eps=eps, step_size=eps / 4, steps=steps)
  if kind == "trades":
    kw["beta"] = 6.0
  return get_method(kind, **kw)


def jax_train_variant(bench: Bench, kind: str, model: str, batch: int, steps: int) -> Variant:
  import jax
  import jax.numpy as jnp
  from jaxrobust.methods import DatasetInfo
  from jaxrobust.train.optim import make_optimizer, make_schedule
  from jaxrobust.train.state import create_train_state
  from jaxrobust.train.step import make_train_step
  module, variables = bench.model(model)
  method = _method(kind, bench.specs[model]["eps"], steps)
  tx = make_optimizer(name="sgd", lr_schedule=make_schedule(lr=0.1, steps_per_epoch=1, epochs=1),
                      momentum=0.9, weight_decay=5e-4)
  step = make_train_step(module, method, tx, steps_per_epoch=1, num_classes=NUM_CLASSES)
  x, y = bench.data(model, batch)
  # Copy: the state is donated to the step, and must not take the shared variables with it.
  own = jax.tree.map(lambda a: jnp.array(a, copy=True), variables)
  state = create_train_state(own, tx, jax.random.key(2),
                             method.init_state(DatasetInfo(batch, NUM_CLASSES, y)))
  batch_arrays = {"image": jax.device_put(x), "label": jax.device_put(y),
                  "index": jnp.arange(batch, dtype=jnp.int32)}
  compiled, info = aot_compile(step, state, batch_arrays, donate=(0,))
  holder = [state]

  def call():
    new_state, metrics = compiled(holder[0], batch_arrays)
    jax.block_until_ready((new_state, metrics))
    holder[0] = new_state
  bench.log(f"    jax: lower {info['lower_s']:.2f} s + compile {info['compile_s']:.2f} s")
  return Variant("jax", "jax", call, dict(info, pgd_unroll="library default (lax.fori_loop, unroll 1)"))


def torch_train_variant(bench: Bench, kind: str, model: str, batch: int, steps: int,
                        compile_model: bool = False) -> Variant:
  from jaxrobust import torch_reference as tr
  net = bench.torch_twin(model)
  opt = tr.make_sgd(net, lr=0.1, momentum=0.9, weight_decay=5e-4)
  if compile_model:
    # The compiled module shares the twin's parameters, so the optimizer built above updates
    # what the compiled graph reads. Only the network is compiled; the attack loop stays eager.
    net = bench.torch.compile(net)
  x, y = bench.data(model, batch)
  xt, yt = bench.torch_data(x, y)
  eps = bench.specs[model]["eps"]
  if kind == "pgd_at":
    def call():
      tr.pgd_at_step(net, opt, xt, yt, eps=eps, step_size=eps / 4, steps=steps)
  else:
    def call():
      tr.trades_step(net, opt, xt, yt, eps=eps, step_size=eps / 4, steps=steps, beta=6.0)
  name = "torch_compile" if compile_model else "torch_eager"
  return Variant(name, "torch", call, {"optimizer": "SGD(lr 0.1, momentum 0.9, wd 5e-4, coupled)",
                                       "torch_compile": compile_model},
                 warmup=max(2, bench.cfg["warmup"]) if compile_model else None)


# ----------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------

def _logit_parity(bench: Bench, model: str, batch: int) -> Optional[float]:
  """max |logits_jax - logits_torch| on the row's clean batch (eval mode): same network?"""
  if bench.torch is None:
    return None
  import jax
  from jaxrobust.models import make_apply
  module, variables = bench.model(model)
  x, y = bench.data(model, batch)
  net = bench.torch_twin(model).eval()
  with bench.torch.no_grad():
    theirs = net(bench.torch_data(x, y)[0]).numpy()
  ours = np.asarray(jax.jit(make_apply(module))(variables, x))  # eager would compile op by op
  return float(np.max(np.abs(ours - theirs)))


def _speedups(records: List[dict]) -> dict:
  """torch_eager median / variant median: > 1 means the variant is faster than eager torch."""
  ref = next((r for r in records if r["name"] == "torch_eager" and "median_s" in r), None)
  if ref is None:
    return {}
  return {r["name"]: ref["median_s"] / r["median_s"] for r in records if "median_s" in r and r is not ref}


def run_timed_row(bench: Bench, kind: str, model: str) -> dict:
  cfg, log = bench.cfg, bench.log
  batch, steps = cfg["batch_size"], cfg["steps"]
  spec = bench.specs[model]
  repeats = cfg["repeats"] if cfg["repeats"] is not None else spec["repeats"]
  variants: List[Variant] = []
  if kind == "pgd":
    for name, unroll, micro in PGD_JAX_VARIANTS:
      variants.append(_try(name, "jax", lambda n=name, u=unroll, m=micro: jax_pgd_variant(
          bench, n, model, batch, steps, u, m), log))
    if bench.torch is not None:
      variants.append(_try("torch_eager", "torch",
                           lambda: torch_pgd_variant(bench, "torch_eager", model, batch, steps), log))
      if cfg["torch_compile"]:
        variants.append(_try("torch_compile", "torch",
                             lambda: torch_pgd_variant(bench, "torch_compile", model, batch, steps, True), log))
  else:
    variants.append(_try("jax", "jax", lambda: jax_train_variant(bench, kind, model, batch, steps), log))
    if bench.torch is not None:
      variants.append(_try("torch_eager", "torch", lambda: torch_train_variant(bench, kind, model, batch, steps),
                           log))
      if cfg["torch_compile"]:
        variants.append(_try("torch_compile", "torch", lambda: torch_train_variant(
            bench, kind, model, batch, steps, compile_model=True), log))
  measure(variants, repeats, cfg["warmup"], log)
  records = [variant_record(v, batch) for v in variants]
  eps = spec["eps"]
  row = {"id": f"{kind}:{model}", "kind": kind, "model": model, "model_label": spec["label"],
         "input_shape": list(spec["shape"]), "batch_size": batch, "steps": steps, "eps": eps,
         "step_size": eps / 4, "repeats": repeats, "warmup": cfg["warmup"],
         "items": "images" if kind == "pgd" else "examples", "variants": records,
         "speedup_vs_torch_eager": _speedups(records)}
  if kind == "trades":
    row["beta"] = 6.0
  if kind == "pgd":
    try:
      row["logits_max_abs_diff_jax_torch"] = _logit_parity(bench, model, batch)
    except Exception as e:  # noqa: BLE001
      row["logits_max_abs_diff_jax_torch"] = None
      row["parity_error"] = _error_text(e)
  return row


def run_memory_row(bench: Bench, model: str) -> dict:
  """Static peak-memory estimates: PGD-T (library default, unrolled, whole batch) vs one
  whole-batch forward-backward."""
  import jax
  import jax.numpy as jnp
  from jaxrobust import losses
  from jaxrobust.models import make_apply
  cfg, log = bench.cfg, bench.log
  batch, steps = cfg["batch_size"], cfg["steps"]
  module, variables = bench.model(model)
  apply = make_apply(module, microbatch=None)  # the plain whole-batch forward-backward
  x, y = bench.data(model, batch)
  programs = {}

  def input_grad(v, x, y):  # exactly the work of one PGD step
    return jax.grad(lambda xx: jnp.sum(losses.cross_entropy(apply(v, xx), y)))(x)

  def param_grad(v, x, y):  # one training forward-backward (train-mode BN)
    def loss(params):
      variables = dict(v, params=params)
      if "batch_stats" in v:
        logits, _ = module.apply(variables, x, train=True, mutable=["batch_stats"])
      else:
        logits = module.apply(variables, x, train=True)
      return jnp.mean(losses.cross_entropy(logits, y))
    return jax.grad(loss)(v["params"])

  for name, build in (("fwd_bwd_input", lambda: aot_compile(input_grad, variables, x, y)),
                      ("fwd_bwd_params", lambda: aot_compile(param_grad, variables, x, y)),
                      (f"pgd{steps}", lambda: bench.pgd_program(model, batch, steps, 1)),
                      (f"pgd{steps}_unrolled", lambda: bench.pgd_program(model, batch, steps, True)),
                      (f"pgd{steps}_whole_batch", lambda: bench.pgd_program(model, batch, steps, 1, None))):
    try:
      _, info = build()
      programs[name] = {"memory": info["memory"], "compile_total_s": info["compile_total_s"]}
      log(f"    {name}: peak estimate {info['memory'].get('peak_estimate_bytes', 0) / 2**20:.1f} MiB")
    except Exception as e:  # noqa: BLE001
      programs[name] = {"error": _error_text(e)}
      log(f"    {name}: failed: {_error_text(e)}")
  base = programs.get("fwd_bwd_input", {}).get("memory", {}).get("peak_estimate_bytes")
  base_temp = programs.get("fwd_bwd_input", {}).get("memory", {}).get("temp_size_in_bytes")
  ratios = {}
  for name, p in programs.items():
    mem = p.get("memory", {})
    if base and "peak_estimate_bytes" in mem:
      ratios[name] = {"peak_estimate": mem["peak_estimate_bytes"] / base,
                      "temp": (mem["temp_size_in_bytes"] / base_temp) if base_temp else None}
  spec = bench.specs[model]
  return {"id": f"memory:{model}", "kind": "memory", "model": model, "model_label": spec["label"],
          "input_shape": list(spec["shape"]), "batch_size": batch, "steps": steps, "programs": programs,
          "ratio_vs_fwd_bwd_input": ratios}


# ----------------------------------------------------------------------------------------
# Curves (SmallCNN only)
# ----------------------------------------------------------------------------------------

def _curve_points(quick: bool) -> dict:
  if quick:
    return {"batch": (4, 8), "steps": (1, 2), "eps": (1, 2), "members": (1, 2)}
  return {"batch": (32, 64, 128, 256), "steps": (5, 10, 20, 40), "eps": (1, 2, 4, 8), "members": (1, 2, 4)}


def _curve_point(bench: Bench, x_value, variants: List[Variant], items: int, repeats: int) -> dict:
  measure(variants, repeats, bench.cfg["warmup"], bench.log)
  records = [variant_record(v, items) for v in variants]
  return {"x": x_value, "items": items, "variants": records, "speedup_vs_torch_eager": _speedups(records)}


def _eps_variants(bench: Bench, model: str, batch: int, steps: int, n: int) -> List[Variant]:
  """n eps values: one vmapped program vs a Python loop over one compiled single-eps program."""
  import jax
  import jax.numpy as jnp
  from jaxrobust.attacks.pgd import pgd
  from jaxrobust.models import make_apply
  module, variables = bench.model(model)
  apply = make_apply(module)
  base = bench.specs[model]["eps"]
  epss = jnp.asarray([base * (i + 1) / n for i in range(n)], jnp.float32)
  x, y = bench.data(model, batch)
  x, y, key = jax.device_put(x), jax.device_put(y), jax.random.key(1)

  def single(v, x, y, key, e):
    return pgd(lambda xx: apply(v, xx), x, y, key, eps=e, step_size=e / 4, steps=steps)

  def multi(v, x, y, key, es):
    return jax.vmap(lambda e: single(v, x, y, key, e))(es)

  def build_vmap():
    compiled, info = aot_compile(multi, variables, x, y, key, epss)
    return Variant("jax_vmap", "jax", lambda: jax.block_until_ready(compiled(variables, x, y, key, epss)), info)

  def build_loop():
    compiled, info = aot_compile(single, variables, x, y, key, epss[0])

    def call():
      jax.block_until_ready([compiled(variables, x, y, key, e) for e in epss])
    return Variant("jax_loop", "jax", call, info)
  return [_try("jax_vmap", "jax", build_vmap, bench.log), _try("jax_loop", "jax", build_loop, bench.log)]


def _ensemble_variants(bench: Bench, model: str, batch: int, steps: int, m: int) -> List[Variant]:
  """m members attacked one by one: vmapped over stacked params vs a loop over members."""
  import jax
  from jaxrobust.attacks.ensemble import attack_ensemble_members, member_keys
  from jaxrobust.attacks.pgd import pgd
  from jaxrobust.models import init_model, make_apply
  module, _ = bench.model(model)
  apply = make_apply(module)
  eps = bench.specs[model]["eps"]
  shape = bench.specs[model]["shape"]
  stacked = jax.vmap(lambda k: init_model(module, k, shape))(jax.random.split(jax.random.key(3), m))
  members = [jax.tree.map(lambda a, i=i: a[i], stacked) for i in range(m)]
  x, y = bench.data(model, batch)
  x, y, key = jax.device_put(x), jax.device_put(y), jax.random.key(1)
  keys = member_keys(key, m)

  def attack(f, x, y, k):
    return pgd(f, x, y, k, eps=eps, step_size=eps / 4, steps=steps)

  def multi(sv, x, y, key):
    return attack_ensemble_members(apply, sv, x, y, key, attack)

  def single(v, x, y, k):
    return attack(lambda xx: apply(v, xx), x, y, k)

  def build_vmap():
    compiled, info = aot_compile(multi, stacked, x, y, key)
    return Variant("jax_vmap", "jax", lambda: jax.block_until_ready(compiled(stacked, x, y, key)), info)

  def build_loop():
    compiled, info = aot_compile(single, members[0], x, y, keys[0])

    def call():
      jax.block_until_ready([compiled(v, x, y, k) for v, k in zip(members, keys)])
    return Variant("jax_loop", "jax", call, info)
  return [_try("jax_vmap", "jax", build_vmap, bench.log), _try("jax_loop", "jax", build_loop, bench.log)]


def run_curves(bench: Bench) -> dict:
  cfg, log = bench.cfg, bench.log
  model = "small_cnn"
  pts = _curve_points(cfg["quick"])
  batch, steps = cfg["batch_size"], cfg["steps"]
  repeats = cfg["repeats"] if cfg["repeats"] is not None else (2 if cfg["quick"] else 3)

  def pgd_variants(b, s):
    out = [_try(n, "jax", lambda n=n, u=u, m=m: jax_pgd_variant(bench, n, model, b, s, u, m), log)
           for n, u, m in PGD_JAX_VARIANTS[:1]]
    if bench.torch is not None:
      out.append(_try("torch_eager", "torch", lambda: torch_pgd_variant(bench, "torch_eager", model, b, s), log))
    return out

  curves = {"model": model, "repeats": repeats,
            "note": "all JAX curves use the library defaults (fori_loop, micro-batches of 32)"}
  log(f"[curve batch] steps {steps}")
  curves["batch"] = {"x_label": "batch size", "steps": steps, "points": [
      (log(f"  batch {b}"), _curve_point(bench, b, pgd_variants(b, steps), b, repeats))[1] for b in pts["batch"]]}
  log(f"[curve steps] batch {batch}")
  curves["steps"] = {"x_label": "PGD steps", "batch_size": batch, "points": [
      (log(f"  steps {s}"), _curve_point(bench, s, pgd_variants(batch, s), batch, repeats))[1] for s in pts["steps"]]}
  log(f"[curve eps] batch {batch}, steps {steps}")
  curves["eps"] = {"x_label": "eps values", "batch_size": batch, "steps": steps, "points": [
      (log(f"  eps values {n}"), _curve_point(bench, n, _eps_variants(bench, model, batch, steps, n), batch * n,
                                               repeats))[1] for n in pts["eps"]]}
  log(f"[curve members] batch {batch}, steps {steps}")
  curves["members"] = {"x_label": "ensemble members", "batch_size": batch, "steps": steps, "points": [
      (log(f"  members {m}"), _curve_point(bench, m, _ensemble_variants(bench, model, batch, steps, m), batch * m,
                                            repeats))[1] for m in pts["members"]]}
  return curves


# ----------------------------------------------------------------------------------------
# Machine record and reports
# ----------------------------------------------------------------------------------------

def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def _xla_cpu_status() -> str:
  from jaxrobust import xla_cpu
  return xla_cpu.status()


def _load_average() -> Optional[List[float]]:
  try:
    return [round(v, 2) for v in os.getloadavg()]
  except OSError:
    return None


def machine_info(torch_mod) -> dict:
  import flax
  import jax
  import jaxlib
  import optax
  try:
    affinity = len(os.sched_getaffinity(0))
  except AttributeError:
    affinity = None
  info = {
    "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(), "cpu_affinity": affinity,
    "platform": platform.platform(), "python": platform.python_version(),
    "jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__,
    "jax_backend": jax.default_backend(), "jax_devices": [str(d) for d in jax.devices()],
    "numpy": np.__version__,
    "env": {k: os.environ[k] for k in ("XLA_FLAGS", "JAX_PLATFORMS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                       "OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ},
    "threads": {"jax": "XLA CPU default (one intra-op pool over all cores)"},
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "jaxrobust_xla_cpu": _xla_cpu_status(),
  }
  if torch_mod is not None:
    from jaxrobust import torch_reference as tr
    info["torch"] = torch_mod.__version__
    info["threads"].update(tr.thread_info())
    info["torch_device"] = "cpu"
  return info


def _fmt_s(v) -> str:
  if v is None:
    return "-"
  return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _fmt_rate(v) -> str:
  if v is None:
    return "-"
  return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def _mib(b) -> str:
  return "-" if b is None else f"{b / 2**20:.1f}"


def render_markdown(report: dict) -> str:
  m = report["machine"]
  lines = ["```", report["command"], "```", ""]
  threads = m["threads"]
  tline = f"torch {m['torch']}, {threads.get('torch_num_threads')} threads" if "torch" in m else "no torch"
  load0, load1 = report.get("load_average_start"), report.get("load_average_end")
  lines.append(f"{m['date_utc']} · {m['cpu_model']} · {m['cpu_count']} cores · jax {m['jax']} "
               f"({m['jax_backend']}) · {tline} · load average (1/5/15 min) at start {load0}, at end {load1}")
  lines.append("")
  lines.append("Median of interleaved repeats after warm-up; spread is min-max over the repeats. "
               "Rate = batch / median time (images/s for PGD, examples/s for train steps). "
               "x torch = torch eager median / this median (> 1: faster than eager PyTorch). "
               "Compile = jax lower + XLA compile (torch.compile: first call minus median).")
  lines.append("")
  timed = [r for r in report["rows"] if r["kind"] != "memory"]
  if timed:
    lines.append("| row | model | batch | variant | median s | min-max s | rate/s | x torch | compile s |")
    lines.append("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for r in timed:
      title = KIND_TITLES[r["kind"]].format(steps=r["steps"])
      for v in r["variants"]:
        if "error" in v:
          lines.append(f"| {title} | {r['model_label']} | {r['batch_size']} | {v['name']} | failed: "
                       f"{v['error'][:80]} | | | | |")
          continue
        comp = v.get("compile_total_s")
        if comp is None and v.get("torch_compile"):
          comp = v.get("first_call_minus_median_s")
        sp = r["speedup_vs_torch_eager"].get(v["name"])
        lines.append(f"| {title} | {r['model_label']} | {r['batch_size']} | {v['name']} | {_fmt_s(v.get('median_s'))} "
                     f"| {_fmt_s(v.get('min_s'))}-{_fmt_s(v.get('max_s'))} | {_fmt_rate(v.get('items_per_s'))} "
                     f"| {'-' if sp is None else f'{sp:.2f}'} | {_fmt_s(comp)} |")
    parity = [f"{r['model']} {r['logits_max_abs_diff_jax_torch']:.1e}" for r in timed
              if r.get("logits_max_abs_diff_jax_torch") is not None]
    if parity:
      lines.append("")
      lines.append("Same network check, max |logits jax - logits torch| on the clean batch: " + ", ".join(parity))
  mem = [r for r in report["rows"] if r["kind"] == "memory"]
  if mem:
    lines += ["", "XLA memory analysis (static; peak estimate = arguments + outputs + temporaries - aliased):", "",
              "| model | batch | program | temp MiB | peak est. MiB | x fwd-bwd (input grad) |",
              "|---|---:|---|---:|---:|---:|"]
    for r in mem:
      for name, p in r["programs"].items():
        if "error" in p:
          lines.append(f"| {r['model_label']} | {r['batch_size']} | {name} | failed: {p['error'][:80]} | | |")
          continue
        ratio = r["ratio_vs_fwd_bwd_input"].get(name, {}).get("peak_estimate")
        lines.append(f"| {r['model_label']} | {r['batch_size']} | {name} | {_mib(p['memory'].get('temp_size_in_bytes'))} "
                     f"| {_mib(p['memory'].get('peak_estimate_bytes'))} | {'-' if ratio is None else f'{ratio:.2f}'} |")
  curves = report.get("curves")
  if curves:
    for cname in ("batch", "steps", "eps", "members"):
      c = curves[cname]
      names = []
      for p in c["points"]:
        names += [v["name"] for v in p["variants"] if v["name"] not in names]
      lines += ["", f"Curve: SmallCNN PGD time vs {c['x_label']} "
                f"({', '.join(f'{k} {c[k]}' for k in ('batch_size', 'steps') if k in c)}); "
                "median s (rate/s), compile s in brackets:", "",
                "| " + c["x_label"] + " | " + " | ".join(names) + " |",
                "|---:|" + "---:|" * len(names)]
      for p in c["points"]:
        cells = []
        for n in names:
          v = next((v for v in p["variants"] if v["name"] == n), None)
          if v is None or "median_s" not in v:
            cells.append("failed" if v is not None else "-")
            continue
          comp = v.get("compile_total_s")
          cells.append(f"{_fmt_s(v['median_s'])} ({_fmt_rate(v['items_per_s'])})"
                       + (f" [{_fmt_s(comp)}]" if comp is not None else ""))
        lines.append(f"| {p['x']} | " + " | ".join(cells) + " |")
  if report["errors"]:
    lines += ["", "Errors: " + "; ".join(report["errors"])]
  return "\n".join(lines) + "\n"


def _collect_errors(report: dict) -> List[str]:
  errs = []
  for r in report["rows"]:
    for v in r.get("variants", []):
      if "error" in v:
        errs.append(f"{r['id']}/{v['name']}: {v['error']}")
    for name, p in r.get("programs", {}).items():
      if "error" in p:
        errs.append(f"{r['id']}/{name}: {p['error']}")
    if r.get("parity_error"):
      errs.append(f"{r['id']}/parity: {r['parity_error']}")
  for cname, c in (report.get("curves") or {}).items():
    if isinstance(c, dict):
      for p in c.get("points", []):
        for v in p["variants"]:
          if "error" in v:
            errs.append(f"curve {cname}={p['x']}/{v['name']}: {v['error']}")
  return errs


# ----------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="jaxrobust benchmark", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true",
                 help="smoke-test sizes: batch 8, 2 steps, 2 repeats, a width-8 ResNet on 16x16 (numbers mean nothing)")
  p.add_argument("--rows", default="all",
                 help="comma-separated rows: kinds (pgd, pgd_at, trades, memory, train), models (small_cnn, "
                      "preact_resnet18), ids or globs like 'pgd:*', 'all' (default) or 'none'")
  p.add_argument("--batch-size", type=int, default=None, help="batch size (default 128; 8 with --quick)")
  p.add_argument("--steps", type=int, default=None, help="attack steps (default 10; 2 with --quick)")
  p.add_argument("--repeats", type=int, default=None,
                 help="timed repeats per variant (default 5 for SmallCNN rows, 3 for ResNet rows and curves)")
  p.add_argument("--warmup", type=int, default=1, help="untimed calls per variant before timing (default 1)")
  p.add_argument("--curves", action="store_true", help="also run the SmallCNN cost curves")
  p.add_argument("--torch-compile", action="store_true", help="add a torch.compile variant (network compiled, attack loop eager) to the PGD and train rows")
  p.add_argument("--no-torch", action="store_true", help="JAX only (no PyTorch columns)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", help="write the full results here")
  p.add_argument("--markdown", help="write a markdown table (for BENCHMARKS.md) here")
  p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
  return p


def _write(path: str, text: str) -> None:
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def main(argv=None, *, command_prefix: str = "jaxrobust benchmark") -> int:
  """Runs the benchmark; returns 0 when every variant ran, 1 when some failed, 2 on bad arguments.

  command_prefix: how this run was invoked, for the command line recorded in the reports.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  # `jaxrobust benchmark -- --quick ...`: the top-level CLI hands the '--' through.
  args = parser.parse_args(argv[1:] if argv[:1] == ["--"] else argv)
  try:
    rows = select_rows(args.rows)
  except ValueError as e:
    parser.error(str(e))
  for name in ("batch_size", "steps", "repeats"):
    v = getattr(args, name)
    if v is not None and v < 1:
      parser.error(f"--{name.replace('_', '-')} must be >= 1")
  if args.warmup < 0:
    parser.error("--warmup must be >= 0")
  log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))

  torch_mod = None
  if not args.no_torch:
    from jaxrobust import torch_reference as tr
    torch_mod = tr.require_torch()
    # Both frameworks get every core; JAX's XLA CPU pool already does by default.
    torch_mod.set_num_threads(os.cpu_count() or 1)
    torch_mod.manual_seed(args.seed)

  cfg = {"quick": args.quick, "batch_size": args.batch_size or (8 if args.quick else 128),
         "steps": args.steps or (2 if args.quick else 10), "repeats": args.repeats, "warmup": args.warmup,
         "torch_compile": args.torch_compile, "curves": args.curves, "seed": args.seed}
  report = {"schema": SCHEMA, "command": (command_prefix + " " + shlex.join(argv)).strip(),
            "load_average_start": _load_average(), "machine": machine_info(torch_mod),
            "settings": dict(cfg, rows=rows, torch=torch_mod is not None, gap_s=GAP_S), "rows": []}
  bench = Bench(cfg, torch_mod, log)
  t_start = time.perf_counter()
  for row_id in rows:
    kind, model = row_id.split(":")
    log(f"[{row_id}] batch {cfg['batch_size']}, steps {cfg['steps']}")
    if kind == "memory":
      report["rows"].append(run_memory_row(bench, model))
    else:
      report["rows"].append(run_timed_row(bench, kind, model))
  if args.curves:
    report["curves"] = run_curves(bench)
  report["load_average_end"] = _load_average()
  report["total_s"] = time.perf_counter() - t_start
  report["errors"] = _collect_errors(report)
  markdown = render_markdown(report)
  if args.json:
    _write(args.json, json.dumps(report, indent=2) + "\n")
    log(f"json: {args.json}")
  if args.markdown:
    _write(args.markdown, markdown)
    log(f"markdown: {args.markdown}")
  print(markdown)
  return 1 if report["errors"] else 0


if __name__ == "__main__":
  sys.exit(main(command_prefix="python -m jaxrobust.benchmark"))
