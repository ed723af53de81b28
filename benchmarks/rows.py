"""The benchmark rows: JAX and PyTorch variants of PGD, PGD-AT and TRADES steps, memory, cost curves,
and (opt-in) the ADR-TRADES and ASCL-ADV train steps of the representation methods.

Both frameworks see the same weights (the Flax model ported with
``benchmarks.torch_models.port_flax_to_torch``) and the same data; a row records the clean-logit
difference as a check that they run the same network. Every JAX program is compiled ahead of
time (``timing.aot_compile``) and called through the compiled executable.
"""

from __future__ import annotations

import os
import traceback
from typing import Callable, Dict, List, Optional

import numpy as np

from benchmarks import torch_models, torch_steps
from benchmarks.timing import Variant, aot_compile, error_text, measure, variant_record

KINDS = ("pgd", "pgd_at", "trades", "memory")
# Opt-in kinds: only run when named (``--rows adr_trades:small_cnn``, ``--rows ascl``), never by 'all'
# or a model name, so the default throughput run is unchanged.
EXTRA_KINDS = ("adr_trades", "ascl")
MODELS = ("small_cnn", "preact_resnet18")
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


# ----------------------------------------------------------------------------------------
# The benchmark context: models, data, compiled programs, torch twins
# ----------------------------------------------------------------------------------------

class Bench:
  """What the rows of one run share: settings, models (built once), data, AOT-compiled PGD programs."""

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
    module, variables = self.model(name)
    s = self.specs[name]
    net = torch_models.build_torch_model(name, s["shape"], NUM_CLASSES, mean=s["mean"], std=s["std"],
                                         **s["kwargs"])
    return torch_models.port_flax_to_torch(variables, net)

  def torch_data(self, x, y):
    return torch_models.to_torch_images(x), self.torch.from_numpy(y.astype(np.int64))

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
    log(f"    {name}: setup failed: {error_text(e)}")
    if os.environ.get("JAXROBUST_BENCH_DEBUG"):
      traceback.print_exc()
    return Variant(name, framework, error=error_text(e))


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
  net = bench.torch_twin(model).eval()
  if compile_model:
    net = bench.torch.compile(net)
  x, y = bench.data(model, batch)
  xt, yt = bench.torch_data(x, y)
  eps = bench.specs[model]["eps"]

  def call():
    torch_steps.pgd_linf(net, xt, yt, eps=eps, step_size=eps / 4, steps=steps, random_start=True)
  # torch.compile compiles on the first call(s): two untimed calls, and the first-call excess
  # over the median is its compile time.
  return Variant(name, "torch", call, {"mode": "eval", "torch_compile": compile_model},
                 warmup=max(2, bench.cfg["warmup"]) if compile_model else None)


def _method(kind: str, eps: float, steps: int):
  """The row's method: the library defaults with the row's threat model (TRADES with beta 6;
  ADR-TRADES: beta 1, lc = gb = smt = 1; ASCL-ADV: Leaked-ASCL, cosine, tau 0.07, lambda_VAT 2)."""
  from jaxrobust.methods import get_method
  kw = dict(eps=eps, step_size=eps / 4, steps=steps)
  if kind == "trades":
    kw["beta"] = 6.0
  return get_method(kind, **kw)


def method_hparams(kind: str, eps: float, steps: int) -> dict:
  """The hyperparameters of a train row's JAX method (recorded in the row)."""
  return {k: v for k, v in _method(kind, eps, steps).hparams.items()}


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
  net = bench.torch_twin(model)
  opt = torch_steps.make_sgd(net, lr=0.1, momentum=0.9, weight_decay=5e-4)
  if compile_model:
    # The compiled module shares the twin's parameters, so the optimizer built above updates
    # what the compiled graph reads. Only the network is compiled; the attack loop stays eager.
    net = bench.torch.compile(net)
  x, y = bench.data(model, batch)
  xt, yt = bench.torch_data(x, y)
  eps = bench.specs[model]["eps"]
  if kind == "pgd_at":
    def call():
      torch_steps.pgd_at_step(net, opt, xt, yt, eps=eps, step_size=eps / 4, steps=steps)
  elif kind == "trades":
    def call():
      torch_steps.trades_step(net, opt, xt, yt, eps=eps, step_size=eps / 4, steps=steps, beta=6.0)
  elif kind == "adr_trades":  # the weights of _method's ADR-TRADES
    def call():
      torch_steps.adr_trades_step(net, opt, xt, yt, eps=eps, step_size=eps / 4, steps=steps, beta=1.0,
                                  lccomw=1.0, lcsmtw=1.0, gbcomw=1.0, gbsmtw=0.0, confw=0.0)
  elif kind == "ascl":  # _method's ASCL-ADV; the torch loss is the code's (float64 SCL, KL / C)
    def call():
      torch_steps.ascl_step(net, opt, xt, yt, eps=eps, step_size=eps / 4, steps=steps, dist="cosine",
                            neg_type="leaking", temperature=0.07, hidden_norm=False, alpha=1.0, gbcomw=1.0,
                            lcsmtw=2.0)
  else:
    raise ValueError(f"no torch train step for kind {kind!r}")
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
  if kind in EXTRA_KINDS:
    row["method_hparams"] = method_hparams(kind, eps, steps)
  if kind == "pgd":
    try:
      row["logits_max_abs_diff_jax_torch"] = _logit_parity(bench, model, batch)
    except Exception as e:  # noqa: BLE001
      row["logits_max_abs_diff_jax_torch"] = None
      row["parity_error"] = error_text(e)
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
      programs[name] = {"error": error_text(e)}
      log(f"    {name}: failed: {error_text(e)}")
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
