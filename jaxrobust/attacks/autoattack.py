"""AutoAttack (Croce & Hein 2020): a cascade of parameter-free attacks, the point-wise worst case.

Versions (``autoattack/autoattack.py``, ``set_version``):

    standard: APGD-CE (100 it, 1 restart) -> APGD-T (9 targets x 100 it) -> FAB-T (9 targets x 100 it)
              -> Square (5000 queries, p_init 0.8)
    plus:     APGD-CE (5 restarts) -> APGD-DLR (5) -> FAB (5) -> Square -> APGD-T -> FAB-T
    rand:     APGD-CE and APGD-DLR with EoT = 20 (randomised models; ``randomized=True``)

    L1 standard (``norm='l1'``; the reference's ``set_version`` for 'L1', Croce & Hein 2021):
              APGD-CE (5 restarts, each the 3 eps / 2 eps / eps schedule ``use_largereps``) -> APGD-T (5 targets,
              1 restart, ``use_largereps``) -> FAB-T (9 targets x 100 it, FAB-L1) -> Square-L1 (5000 queries,
              p_init 0.8). Square needs an image grid: on non-image inputs (B, D) this version runs the first three
              stages, warns, and names Square in ``report['omitted']`` (the number is then an upper bound on the
              reference's by whatever Square-L1 adds)

    robust_0 = [argmax f(x) = y];  stage s attacks only {i : robust_s-1,i}, starting from the clean x_i;
    robust_s = robust_s-1 & ~fooled_s;  x_adv_i = the first stage's adversarial point that fooled i (else x_i).

A point is robust iff every component failed; clean-misclassified points count as non-robust. With K < 10
classes the targeted attacks use n_target_classes = K - 1 (the reference would index out of range).

Execution model. The cascade is a Python loop over stages; each stage is ONE compiled program
(``apgd.apgd_masked``, ``fab.fab_masked``, ``square.square_masked``) per bucket shape. Before every run of a
stage (each target of APGD-T / FAB-T, each restart) the still-robust points are gathered on the host, as the
reference does, into buckets of ``bucket_rows(n)`` rows: n rounded up to ..., 40, 48, 56, 64, 80, 96, ...
(at most ``batch_size`` rows; padding rows are inactive). So the work follows the number of points left,
with at most 25% padding and a handful of compiled shapes; the run index is a traced argument, so the
9 targets share one program. On a robust SmallCNN (100 Fashion-MNIST points, 62 clean-correct, 46 left
after APGD-CE) this and the APGD/FAB loop changes of the same round took the cascade from 225.8 s (one
128-row masked bucket per stage) to 88.1 s (BENCHMARKS.md section 1b).
``compact=False`` keeps fixed buckets of ``batch_size`` rows and runs all targets/restarts inside one call
(``lax.while_loop`` that stops when no point of the bucket is left): one compiled shape per stage.
Randomness is per example (``fold_in(key, global index)``) and every stage uses the same ``key``, as the
reference uses the same seed for every attack; so a stage reproduces the standalone attack (``apgd``,
``apgd_targeted``, ``fab_targeted``, ``square`` with the same key) on the points it attacks: bit for bit when the
bucket has the standalone batch shape, and up to the float rounding of the model's batched matmuls otherwise.

Resumable: ``AutoAttackState`` (robust flags, x_adv, per-stage fooled flags, number of stages done) is a small
pytree; ``state.save(path)`` writes an ``.npz`` and ``AutoAttackState.load(path)`` reads it back. Passing it as
``state=`` continues after the last finished stage and gives the same result as an uninterrupted run;
``on_stage_end(state)`` is called after every stage (e.g. to checkpoint).
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks import apgd as apgd_lib
from jaxrobust.attacks import fab as fab_lib
from jaxrobust.attacks import square as square_lib
from jaxrobust.attacks.model_calls import as_partial, linf_or_l2, num_classes, validate
from jaxrobust.attacks.per_example import active_buckets, per_example
from jaxrobust.attacks.registry import AttackInfo
from jaxrobust.types import Array

VERSIONS: dict[str, tuple[tuple[str, dict], ...]] = {
    "standard": (
        ("apgd-ce", dict(n_restarts=1)),
        ("apgd-t", dict(n_restarts=1, n_target_classes=9)),
        ("fab-t", dict(n_restarts=1, n_target_classes=9)),
        ("square", dict(n_queries=5000)),
    ),
    "plus": (
        ("apgd-ce", dict(n_restarts=5)),
        ("apgd-dlr", dict(n_restarts=5)),
        ("fab", dict(n_restarts=5)),
        ("square", dict(n_queries=5000)),
        ("apgd-t", dict(n_restarts=1, n_target_classes=9)),
        ("fab-t", dict(n_restarts=1, n_target_classes=9)),
    ),
    "rand": (
        ("apgd-ce", dict(n_restarts=1, eot_iter=20)),
        ("apgd-dlr", dict(n_restarts=1, eot_iter=20)),
    ),
}

# L1 versions (``set_version`` with norm 'L1').
VERSIONS_L1: dict[str, tuple[tuple[str, dict], ...]] = {
    "standard": (
        ("apgd-ce", dict(n_restarts=5, use_largereps=True)),
        ("apgd-t", dict(n_restarts=1, n_target_classes=5, use_largereps=True)),
        ("fab-t", dict(n_restarts=1, n_target_classes=9)),
        ("square", dict(n_queries=5000)),
    ),
    "rand": VERSIONS["rand"],
}

# Defaults shared by every version (AutoAttack's constructor arguments).
_DEFAULTS = {
    "apgd-ce": dict(n_iter=100, rho=0.75, eot_iter=1, use_largereps=False),
    "apgd-dlr": dict(n_iter=100, rho=0.75, eot_iter=1, use_largereps=False),
    "apgd-t": dict(n_iter=100, rho=0.75, eot_iter=1, use_largereps=False),
    "fab": dict(n_iter=100, alpha_max=0.1, eta=1.05, beta=0.9),
    "fab-t": dict(n_iter=100, alpha_max=0.1, eta=1.05, beta=0.9),
    "square": dict(p_init=0.8, n_restarts=1, rescale_schedule=False),
}
ATTACKS = tuple(_DEFAULTS)


@struct.dataclass
class AutoAttackState:
  """Where an AutoAttack evaluation stands (B points, S stages).

  robust: (B,) bool, still robust after the finished stages (False for clean-misclassified points).
  x_adv: (B, ...) current worst-case points (x where no attack succeeded).
  fooled_by: (S, B) bool, the stage that first fooled each point.
  clean_correct: (B,) bool.
  stage: () int32, number of finished stages.
  attacks / norm: the cascade and threat model this state belongs to (static metadata).
  """
  robust: Array
  x_adv: Array
  fooled_by: Array
  clean_correct: Array
  stage: Array
  attacks: tuple = struct.field(pytree_node=False, default=())
  norm: str = struct.field(pytree_node=False, default="linf")

  def save(self, path) -> None:
    np.savez(path, robust=np.asarray(self.robust), x_adv=np.asarray(self.x_adv),
             fooled_by=np.asarray(self.fooled_by), clean_correct=np.asarray(self.clean_correct),
             stage=np.asarray(self.stage), attacks=np.asarray(list(self.attacks), dtype=str),
             norm=np.asarray(self.norm))

  @classmethod
  def load(cls, path) -> "AutoAttackState":
    with np.load(path) as d:
      return cls(robust=jnp.asarray(d["robust"]), x_adv=jnp.asarray(d["x_adv"]),
                 fooled_by=jnp.asarray(d["fooled_by"]), clean_correct=jnp.asarray(d["clean_correct"]),
                 stage=jnp.asarray(d["stage"]), attacks=tuple(str(a) for a in d["attacks"]),
                 norm=str(d["norm"]))


def cascade(version: str = "standard", attacks=None, attack_kwargs: Optional[dict] = None,
            num_classes: Optional[int] = None, norm: str = "linf") -> list[tuple[str, dict]]:
  """The list of (attack name, full config) a version runs; ``attacks`` (names) gives a custom cascade.

  ``attack_kwargs`` {name: {option: value}} overrides options (e.g. fewer iterations in tests). norm 'l1' picks
  ``VERSIONS_L1``.
  """
  norm = threat.canonical_norm(norm)
  if attacks is not None:
    stages = [(a, {}) for a in attacks]
  elif norm == "l1":
    if version not in VERSIONS_L1:
      raise ValueError(f"AutoAttack version {version!r} has no L1 cascade (the reference defines none); "
                       f"L1 versions: {sorted(VERSIONS_L1)} or attacks=[...]")
    stages = [(a, dict(c)) for a, c in VERSIONS_L1[version]]
  elif version in VERSIONS:
    stages = [(a, dict(c)) for a, c in VERSIONS[version]]
  else:
    raise ValueError(f"unknown AutoAttack version {version!r}; expected one of {sorted(VERSIONS)} or attacks=[...]")
  out = []
  for name, cfg in stages:
    if name not in _DEFAULTS:
      raise ValueError(f"unknown AutoAttack component {name!r}; expected one of {ATTACKS}")
    full = dict(_DEFAULTS[name])
    full.update(cfg)
    full.update((attack_kwargs or {}).get(name, {}))
    if name in ("apgd-t", "fab-t"):
      full.setdefault("n_target_classes", 9)
      full.setdefault("n_restarts", 1)
      if num_classes is not None:
        full["n_target_classes"] = min(full["n_target_classes"], num_classes - 1)
    if name == "square":
      full.setdefault("n_queries", 5000)
    if name.startswith("apgd") or name.startswith("fab"):
      full.setdefault("n_restarts", 1)
    out.append((name, full))
  return out


def stage_runs(name: str, cfg: dict) -> int:
  """Runs of a stage: targets x restarts (APGD-T, FAB-T), restarts (APGD, FAB), 1 (Square restarts inside)."""
  if name in ("apgd-t", "fab-t"):
    return int(cfg["n_target_classes"]) * int(cfg["n_restarts"])
  if name == "square":
    return 1
  return int(cfg["n_restarts"])


def bucket_rows(n: int, cap: int) -> int:
  """Rows of a bucket for n points: at least 8, else n rounded up to a multiple of 2^(ceil(log2 n) - 3)
  (..., 40, 48, 56, 64, 80, 96, 112, 128, 160, ...): at most 4 sizes per octave, so few compiled shapes,
  and less than 25% padding; never above cap."""
  if int(n) != n or int(cap) != cap or n < 1 or cap < 1:
    raise ValueError(f"bucket_rows needs integers n >= 1 and cap >= 1; got n={n!r}, cap={cap!r}")
  n, cap = int(n), int(cap)
  if n <= 8:
    rows = 8
  else:
    step = 2 ** ((n - 1).bit_length() - 3)
    rows = -(-n // step) * step
  return min(rows, cap)


def _run_stage(name: str, cfg: dict, logits_fn, x, y, key, index, active, eps, norm, randomized, runs=None,
               compact=False):
  """One compiled stage on one bucket -> (x_adv, fooled). runs: (start, stop) of the stage's runs, or all;
  compact: Square also re-gathers its still-attacked points during its query loop (``square.square_masked``)."""
  if name in ("apgd-ce", "apgd-dlr"):
    return apgd_lib.apgd_masked(logits_fn, x, y, key, index, active, eps, norm=norm,
                                loss="ce" if name == "apgd-ce" else "dlr", n_iter=cfg["n_iter"],
                                n_restarts=cfg["n_restarts"], rho=float(cfg["rho"]), eot_iter=cfg["eot_iter"],
                                randomized=randomized, runs=runs, use_largereps=cfg["use_largereps"])
  if name == "apgd-t":
    return apgd_lib.apgd_masked(logits_fn, x, y, key, index, active, eps, norm=norm, loss="dlr-targeted",
                                n_iter=cfg["n_iter"], n_restarts=cfg["n_restarts"],
                                n_target_classes=cfg["n_target_classes"], rho=float(cfg["rho"]),
                                eot_iter=cfg["eot_iter"], randomized=randomized, runs=runs,
                                use_largereps=cfg["use_largereps"])
  if name in ("fab", "fab-t"):
    return fab_lib.fab_masked(logits_fn, x, y, key, index, active, eps, norm=norm, n_iter=cfg["n_iter"],
                              n_restarts=cfg["n_restarts"], n_target_classes=cfg.get("n_target_classes", 9),
                              alpha_max=float(cfg["alpha_max"]), eta=float(cfg["eta"]), beta=float(cfg["beta"]),
                              targeted=name == "fab-t", runs=runs)
  return square_lib.square_masked(logits_fn, x, y, key, index, active, eps, norm=norm,
                                  n_queries=cfg["n_queries"], p_init=float(cfg["p_init"]),
                                  n_restarts=cfg["n_restarts"], rescale_schedule=cfg["rescale_schedule"],
                                  compact=compact)


@jax.jit
def _predict(logits_fn, x):
  return losses_lib.predict(logits_fn(x))


def _predict_any(logits_fn, x, key, randomized):
  if randomized:
    return losses_lib.predict(logits_fn(x, key))
  return _predict(logits_fn, x)


def run_autoattack(logits_fn, x: Array, y: Array, key, *, eps, norm="linf", version: str = "standard",
                   state: Optional[AutoAttackState] = None,
                   on_stage_end: Optional[Callable[[AutoAttackState], Any]] = None,
                   batch_size: Optional[int] = None, compact: bool = True, randomized: bool = False,
                   attacks=None, attack_kwargs: Optional[dict] = None, verbose: bool = False):
  """Runs the AutoAttack cascade. Returns (x_adv, report).

  Args:
    logits_fn: ``x -> logits (B, K)`` (``(x, key) -> logits`` with ``randomized=True``, version 'rand' only).
      A ``jax.tree_util.Partial(apply_fn, params)`` lets the compiled stages be reused across calls.
    x: (B, ...) float in [0, 1]; y: (B,) int; key: PRNG key (the same for every stage).
    eps: scalar or (B,). norm: 'linf', 'l2' or 'l1' (L1: 'standard' or 'rand'; see the module docstring). version: 'standard', 'plus' or 'rand' (or ``attacks=[...]``).
    state: an ``AutoAttackState`` to resume from. on_stage_end: called with the state after every stage.
    batch_size: the most points per bucket (None: the whole batch).
    compact: re-gather the still-robust points before every run of a stage (each target / restart) into
      buckets of ``bucket_rows`` rows, as the reference does, and inside Square's query loop every
      ``square.CHUNK_QUERIES`` queries; False: buckets of exactly ``batch_size`` rows and one program call per
      bucket for all runs of a stage (masks only, one compiled shape per stage).
    attack_kwargs: per-component overrides, e.g. ``{'square': {'n_queries': 1000}}``.

  Returns:
    x_adv (B, ...): the worst case per point (x for robust points).
    report: dict with clean_accuracy, robust_accuracy, robust_accuracy_after {attack: acc}, robust (B,) bool,
      robust_after {attack: (B,) bool}, fooled_by {attack: (B,) bool}, seconds {attack: s},
      max_perturbation, attacks, cascade (configs), state (the final AutoAttackState), omitted (components of
      the reference's version that are not run here: ['square'] for L1 'standard' on non-image inputs, else []).
  """
  norm = linf_or_l2(norm, "AutoAttack", ("linf", "l2", "l1"))
  k = num_classes(logits_fn, x, randomized)
  validate(x, y, k, eps=eps)
  stages = cascade(version, attacks, attack_kwargs, num_classes=k, norm=norm)
  omitted = []
  if norm == "l1" and attacks is None and x.ndim != 4 and any(n == "square" for n, _ in stages):
    # The reference's L1 cascade assumes images; on feature vectors run the white-box stages and say so.
    stages = [(n, c) for n, c in stages if n != "square"]
    omitted = ["square"]
    warnings.warn(f"AutoAttack L1 {version!r}: Square-L1 needs NHWC images and the inputs have shape {x.shape}; "
                  f"running {', '.join(n for n, _ in stages)} only (report['omitted'])", stacklevel=2)
  names = tuple(n for n, _ in stages)
  if len(set(names)) != len(names):
    raise ValueError(f"each component may appear once in a cascade; got {names}")
  if randomized and any(not n.startswith("apgd") for n in names):
    raise ValueError("randomized models are supported by the APGD components only (version 'rand')")
  if "apgd-dlr" in names and k < 3:
    raise ValueError(f"APGD-DLR needs at least 3 classes; the model outputs {k} logits")
  if "apgd-t" in names and k < 4:
    raise ValueError(f"APGD-T (targeted DLR) needs at least 4 classes; the model outputs {k} logits")
  if "square" in names and x.ndim != 4:
    raise ValueError(f"Square needs NHWC images (B, H, W, C); got shape {x.shape}")

  fn = as_partial(logits_fn)
  b = x.shape[0]
  eps_v = per_example(eps, x)
  bs = b if batch_size is None else int(batch_size)
  if bs < 1:
    raise ValueError(f"batch_size must be >= 1; got {batch_size}")

  if state is None:
    correct = np.asarray(_predict_any(fn, x, jax.random.fold_in(key, 2**31 - 1), randomized)) == np.asarray(y)
    state = AutoAttackState(robust=jnp.asarray(correct), x_adv=x, fooled_by=jnp.zeros((len(stages), b), bool),
                            clean_correct=jnp.asarray(correct), stage=jnp.asarray(0, jnp.int32), attacks=names,
                            norm=norm)
  else:
    if tuple(state.attacks) != names or state.norm != norm or state.robust.shape != (b,):
      raise ValueError(f"state was made for attacks={state.attacks}, norm={state.norm!r}, "
                       f"{state.robust.shape[0]} points; this call has attacks={names}, norm={norm!r}, {b} points")

  seconds = {}
  robust = np.array(state.robust)
  x_adv = np.array(state.x_adv)
  fooled_by = np.array(state.fooled_by)
  xn, yn, en = np.asarray(x), np.asarray(y), np.asarray(eps_v)
  for s in range(int(state.stage), len(stages)):
    name, cfg = stages[s]
    t0 = time.time()
    # compact: one call per run on the points still robust (the reference's loop); else all runs per call.
    run_ranges = [(r, r + 1) for r in range(stage_runs(name, cfg))] if compact else [None]
    for runs in run_ranges:
      n_left = int(np.sum(robust))
      if n_left == 0:
        break
      rows = bs
      if compact:
        n_buckets = -(-n_left // bs)
        rows = bucket_rows(-(-n_left // n_buckets), bs)
      for pad, active in active_buckets(robust, rows):
        xc, yc = jnp.asarray(xn[pad]), jnp.asarray(yn[pad])
        adv, fooled = _run_stage(name, cfg, fn, xc, yc, key, jnp.asarray(pad), jnp.asarray(active),
                                 jnp.asarray(en[pad]), norm, randomized, runs, compact=compact)
        # AutoAttack re-evaluates the model at the returned point before declaring a point broken.
        pred = _predict_any(fn, adv, jax.random.fold_in(key, 2**31 - 2 - s), randomized)
        dist = np.asarray(threat.per_example_norm(adv - xc, norm))
        ok = np.asarray(fooled) & (np.asarray(pred) != yn[pad]) & (dist <= en[pad] * (1 + 1e-5) + 1e-6) & active
        hit = pad[ok]
        robust[hit] = False
        fooled_by[s, hit] = True
        x_adv[hit] = np.asarray(adv)[ok]
    seconds[name] = time.time() - t0
    state = state.replace(robust=jnp.asarray(robust), x_adv=jnp.asarray(x_adv), fooled_by=jnp.asarray(fooled_by),
                          stage=jnp.asarray(s + 1, jnp.int32))
    if verbose:
      print(f"[autoattack] {name}: robust accuracy {robust.mean():.2%} ({seconds[name]:.1f} s)")
    if on_stage_end is not None:
      on_stage_end(state)

  clean = np.asarray(state.clean_correct)
  robust_after, acc_after, cum = {}, {}, clean.copy()
  for s, name in enumerate(names):
    cum = cum & ~fooled_by[s]
    robust_after[name] = cum.copy()
    acc_after[name] = float(cum.mean())
  report = dict(
      version=version if attacks is None else "custom", norm=norm, attacks=list(names), cascade=stages,
      clean_accuracy=float(clean.mean()), robust_accuracy=float(robust.mean()),
      robust_accuracy_after=acc_after, robust=robust.copy(), robust_after=robust_after,
      fooled_by={name: fooled_by[s].copy() for s, name in enumerate(names)}, seconds=seconds,
      max_perturbation=float(np.max(np.asarray(threat.per_example_norm(jnp.asarray(x_adv) - x, norm)),
                                    initial=0.0)),
      state=state, omitted=omitted)
  return jnp.asarray(x_adv), report


def _autoattack_factory(*, eps, norm="linf", version="standard", **kw):
  def attack(logits_fn, x, y, key):
    return run_autoattack(logits_fn, x, y, key, eps=eps, norm=norm, version=version, **kw)[0]
  return attack


REGISTRY = {
    "autoattack": AttackInfo(_autoattack_factory, norms=("linf", "l2", "l1"), jittable=False,
                             forwards_to=(run_autoattack,),
                             own_targets="AutoAttack is untargeted overall: its targeted stages (APGD-T, FAB-T) "
                                         "try the top n_target_classes classes themselves; for one chosen target "
                                         "use a single-target attack, e.g. get_attack('pgd', eps=..., target=...)",
                             summary="AutoAttack cascade: APGD-CE, APGD-T, FAB-T, Square (Croce & Hein 2020; "
                                     "L1: Croce & Hein 2021)"),
}
