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

Devices and hosts. The buckets run data-parallel over a ``jax.sharding`` mesh (``mesh``, default all devices,
across hosts after ``jax.distributed`` initialisation): a bucket's rows are rounded up to a multiple of the device
count (padding rows inactive), every stage program is partitioned along the batch, and its results are brought
back to every host (``parallel.to_host``), so between runs and stages every host re-gathers the same
still-robust points and spreads them evenly over all devices again. ``key`` may be an
``per_example.IndexedKey`` (the evaluator's): point i then draws from ``fold_in(key, index_i)`` with its global
id, so the result is the same whatever batch or host the point was evaluated in.

Resumable: ``AutoAttackState`` (robust flags, x_adv, per-stage fooled flags, number of stages done) is a small
pytree; ``state.save(path)`` writes an ``.npz`` atomically (a temporary file, then a rename) and
``AutoAttackState.load(path)`` reads it back. Passing it as ``state=`` continues after the last finished stage and
gives the same result as an uninterrupted run; ``on_stage_end(state)`` is called after every stage (e.g. to
checkpoint), and ``state_dir=`` does both with one file per (images, labels, eps, norm, cascade). The state carries
a fingerprint of what it was computed for (eps, norm, version and stage configs, SHA-256 of the images and labels,
the model's logits on the first points): resuming with anything else is refused, naming the part that differs.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import time
import warnings
import zipfile
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrobust import losses as losses_lib
from jaxrobust import parallel, threat
from jaxrobust.attacks import apgd as apgd_lib
from jaxrobust.attacks import fab as fab_lib
from jaxrobust.attacks import square as square_lib
from jaxrobust.attacks.model_calls import as_partial, linf_or_l2, num_classes, validate
from jaxrobust.attacks.per_example import active_buckets, key_and_index, per_example
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
  fingerprint: tuple = struct.field(pytree_node=False, default=())  # ((part, digest), ...): see fingerprint()
  model_probe: Optional[Array] = None  # (P, K) the model's logits on the first P points

  def save(self, path) -> None:
    """Writes ``path`` (``.npz`` appended if missing, as ``np.savez``) atomically: a temporary file in the same
    folder, then a rename, so a kill mid-save leaves the previous state intact."""
    path = os.fspath(path)
    path = path if path.endswith(".npz") else path + ".npz"
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
      with os.fdopen(fd, "wb") as f:
        np.savez(f, robust=np.asarray(self.robust), x_adv=np.asarray(self.x_adv),
                 fooled_by=np.asarray(self.fooled_by), clean_correct=np.asarray(self.clean_correct),
                 stage=np.asarray(self.stage), attacks=np.asarray(list(self.attacks), dtype=str),
                 norm=np.asarray(self.norm),
                 fingerprint=np.asarray([f"{k}={v}" for k, v in self.fingerprint], dtype=str).reshape(-1),
                 model_probe=np.zeros((0, 0), np.float32) if self.model_probe is None else np.asarray(self.model_probe))
      os.replace(tmp, path)
    except BaseException:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise

  @classmethod
  def load(cls, path) -> "AutoAttackState":
    """Reads a state written by ``save``; a truncated or foreign file raises ValueError naming it."""
    path = os.fspath(path)
    if not os.path.exists(path):
      raise FileNotFoundError(f"no AutoAttack state file {path!r}")
    try:
      with np.load(path, allow_pickle=False) as d:
        probe = np.asarray(d["model_probe"]) if "model_probe" in d.files else np.zeros((0, 0))
        return cls(robust=jnp.asarray(d["robust"]), x_adv=jnp.asarray(d["x_adv"]),
                   fooled_by=jnp.asarray(d["fooled_by"]), clean_correct=jnp.asarray(d["clean_correct"]),
                   stage=jnp.asarray(d["stage"]), attacks=tuple(str(a) for a in d["attacks"]),
                   norm=str(d["norm"]),
                   fingerprint=tuple(tuple(str(p).split("=", 1)) for p in d["fingerprint"])
                   if "fingerprint" in d.files else (),
                   model_probe=jnp.asarray(probe) if probe.size else None)
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError) as e:
      raise ValueError(f"AutoAttack state file {path!r} is truncated or not an AutoAttack state "
                       f"({type(e).__name__}: {e}); delete it to run the attack from the start") from e


PROBE_POINTS = 8  # points whose logits fingerprint the model


def _digest(a) -> str:
  a = np.ascontiguousarray(np.asarray(a))
  h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
  h.update(a.tobytes())
  return h.hexdigest()[:16]


def fingerprint(x, y, eps_v, norm: str, version: str, stages) -> tuple:
  """((part, digest), ...) of what an AutoAttack result depends on besides the model and key: eps (per point),
  norm, version, the stage configs, the images and the labels."""
  eps_v = np.asarray(eps_v, np.float32)
  eps_text = f"{float(eps_v.flat[0]):g}" if eps_v.size and np.all(eps_v == eps_v.flat[0]) else _digest(eps_v)
  return (("eps", eps_text), ("norm", norm), ("version", version),
          ("cascade", hashlib.sha256(repr(list(stages)).encode()).hexdigest()[:16]),
          ("images", _digest(np.asarray(x, np.float32))), ("labels", _digest(np.asarray(y).astype(np.int64))))


def _check_fingerprint(state: "AutoAttackState", expected: tuple, probe) -> None:
  """Refuses a state made for other eps / norm / version / cascade / images / labels / model, naming the parts."""
  if not state.fingerprint:
    raise ValueError("the AutoAttack state has no fingerprint (saved before states recorded eps, data and model); "
                     "it cannot be checked against this call: run without state= to start over")
  saved = dict(state.fingerprint)
  differ = [f"{k} (state {saved.get(k)!r}, this call {v!r})" for k, v in expected if saved.get(k) != v]
  if state.model_probe is None or np.shape(state.model_probe) != np.shape(probe) or not np.allclose(
      np.asarray(state.model_probe), np.asarray(probe), rtol=1e-3, atol=1e-4):
    differ.append("model (its logits on the first points differ)")
  if differ:
    raise ValueError("the AutoAttack state was made for a different evaluation; these differ: " + "; ".join(differ)
                     + ". Resume with the same eps, norm, version, points and model, or start over without state=")


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
  _check_attack_kwargs(attack_kwargs)
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


def component_options(name: str) -> tuple[str, ...]:
  """The options ``attack_kwargs[name]`` may set for one component."""
  extra = ("n_restarts",) if name != "square" else ("n_queries",)
  if name in ("apgd-t", "fab-t"):
    extra += ("n_target_classes",)
  return tuple(sorted({*_DEFAULTS[name], *extra}))


def _check_attack_kwargs(attack_kwargs) -> None:
  """Refuses a misspelt component ('apgdce') or option ('n_iters'), naming the valid ones."""
  import difflib
  if attack_kwargs is None:
    return
  if not isinstance(attack_kwargs, dict):
    raise ValueError(f"attack_kwargs must be {{component: {{option: value}}}}; got {attack_kwargs!r}")
  for name, options in attack_kwargs.items():
    if name not in _DEFAULTS:
      close = difflib.get_close_matches(str(name), ATTACKS, n=1)
      raise ValueError(f"attack_kwargs: unknown AutoAttack component {name!r}"
                       + (f" (did you mean {close[0]!r}?)" if close else "") + f"; valid: {', '.join(ATTACKS)}")
    valid = component_options(name)
    if not isinstance(options, dict):
      raise ValueError(f"attack_kwargs[{name!r}] must be a dict of options ({', '.join(valid)}); got {options!r}")
    for k in options:
      if k not in valid:
        close = difflib.get_close_matches(str(k), valid, n=1)
        raise ValueError(f"attack_kwargs[{name!r}]: unknown option {k!r}"
                         + (f" (did you mean {close[0]!r}?)" if close else "") + f"; valid: {', '.join(valid)}")


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
               compact=False, row_runs=None):
  """One compiled stage on one bucket -> (x_adv, fooled). runs: (start, stop) of the stage's runs, or all;
  compact: Square also re-gathers its still-attacked points during its query loop (``square.square_masked``);
  row_runs: (rows,) int, APGD-T / FAB-T only: row i does run row_runs[i] of its point (``apgd_rows``)."""
  if row_runs is not None:
    if name == "apgd-t":
      return apgd_lib.apgd_rows(logits_fn, x, y, key, index, active, eps, row_runs, norm=norm,
                                loss="dlr-targeted", n_iter=cfg["n_iter"], n_restarts=cfg["n_restarts"],
                                n_target_classes=cfg["n_target_classes"], rho=float(cfg["rho"]),
                                eot_iter=cfg["eot_iter"], use_largereps=cfg["use_largereps"])
    return fab_lib.fab_rows(logits_fn, x, y, key, index, active, eps, row_runs, norm=norm, n_iter=cfg["n_iter"],
                            n_restarts=cfg["n_restarts"], n_target_classes=cfg["n_target_classes"],
                            alpha_max=float(cfg["alpha_max"]), eta=float(cfg["eta"]), beta=float(cfg["beta"]),
                            targeted=True)
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


@functools.partial(jax.jit, static_argnums=(3,))
def _logits(logits_fn, x, key, randomized):
  return logits_fn(x, key) if randomized else logits_fn(x)


def _predict_any(logits_fn, x, key, randomized):
  if randomized:
    return losses_lib.predict(logits_fn(x, key))
  return _predict(logits_fn, x)


def _predict_on_mesh(logits_fn, xn: np.ndarray, key, randomized: bool, mesh) -> np.ndarray:
  """Host predictions at host points xn (N, ...), computed over the mesh (N padded to a multiple of its size)."""
  n, n_dev = xn.shape[0], mesh.devices.size
  padded = np.concatenate([xn, np.repeat(xn[:1], -n % n_dev, axis=0)]) if n % n_dev else xn
  return parallel.to_host(_predict_any(logits_fn, parallel.place_global(padded, mesh), key, randomized))[:n]


def _accepted(adv, fooled, pred, x, y, eps, active, norm) -> np.ndarray:
  """(rows,) bool: the stage fooled the row, the model misclassifies the returned point when asked again, and the
  point lies in the eps-ball (AutoAttack's check before it declares a point broken). Host arrays."""
  dist = np.asarray(threat.per_example_norm(jnp.asarray(adv - x), norm))
  return fooled & (pred != y) & (dist <= eps * (1 + 1e-5) + 1e-6) & active


def _run_stage_pairs(name, cfg, s, fn, xn, yn, ids, en, key, robust, x_adv, fooled_by, bs, mesh, norm) -> None:
  """APGD-T / FAB-T with every run of every still-robust point as one row (``batch_targets``); updates robust,
  x_adv and fooled_by[s] in place. A point takes its lowest fooling run, the one the sequential cascade keeps."""
  n_runs = stage_runs(name, cfg)
  points = np.nonzero(robust)[0]
  if points.size == 0:
    return
  pair_point, pair_run = np.repeat(points, n_runs), np.tile(np.arange(n_runs), points.size)
  n_pairs, n_dev = pair_point.size, mesh.devices.size
  rows = bucket_rows(-(-n_pairs // -(-n_pairs // bs)), bs)
  rows = -(-rows // n_dev) * n_dev
  first = np.full(robust.shape, n_runs)
  for pad, valid in active_buckets(np.ones(n_pairs, bool), rows):
    pt, run = pair_point[pad], pair_run[pad]
    xc, yc, pid, act, ec, rc = parallel.place_global((xn[pt], yn[pt], ids[pt], valid, en[pt], run), mesh)
    adv, fooled = _run_stage(name, cfg, fn, xc, yc, key, pid, act, ec, norm, False, row_runs=rc)
    pred = _predict(fn, adv)
    adv, fooled, pred = parallel.to_host((adv, fooled, pred))
    ok = _accepted(adv, fooled, pred, xn[pt], yn[pt], en[pt], valid, norm)
    for i in np.nonzero(ok)[0]:
      if run[i] < first[pt[i]]:
        first[pt[i]] = run[i]
        x_adv[pt[i]] = adv[i]
  hit = first < n_runs
  robust[hit] = False
  fooled_by[s, hit] = True


def run_autoattack(logits_fn, x: Array, y: Array, key, *, eps, norm="linf", version: str = "standard",
                   state: Optional[AutoAttackState] = None,
                   on_stage_end: Optional[Callable[[AutoAttackState], Any]] = None,
                   batch_size: Optional[int] = None, compact: bool = True, randomized: bool = False,
                   attacks=None, attack_kwargs: Optional[dict] = None, verbose: bool = False,
                   state_dir: Optional[str] = None, mesh=None, batch_targets: bool = False):
  """Runs the AutoAttack cascade. Returns (x_adv, report).

  Args:
    logits_fn: ``x -> logits (B, K)`` (``(x, key) -> logits`` with ``randomized=True``, version 'rand' only).
      A ``jax.tree_util.Partial(apply_fn, params)`` lets the compiled stages be reused across calls.
    x: (B, ...) float in [0, 1]; y: (B,) int; key: PRNG key (the same for every stage), or an
      ``IndexedKey`` carrying the points' global ids (``per_example``).
    eps: scalar or (B,). norm: 'linf', 'l2' or 'l1' (L1: 'standard' or 'rand'; see the module docstring).
      version: 'standard', 'plus' or 'rand' (or ``attacks=[...]``).
    state: an ``AutoAttackState`` to resume from. on_stage_end: called with the state after every stage.
    batch_size: the most points per bucket (None: the whole batch).
    compact: re-gather the still-robust points before every run of a stage (each target / restart) into
      buckets of ``bucket_rows`` rows, as the reference does, and (one process) inside Square's query loop every
      ``square.CHUNK_QUERIES`` queries; False: buckets of exactly ``batch_size`` rows and one program call per
      bucket for all runs of a stage (masks only, one compiled shape per stage).
    attack_kwargs: per-component overrides, e.g. ``{'square': {'n_queries': 1000}}``; unknown components or
      options are refused.
    state_dir: keep the state in ``state_dir/autoattack_<digest>.npz`` (one file per images, labels, eps, norm and
      cascade), saved after every stage and resumed from when it exists (``jaxrobust evaluate --resume``).
    mesh: the ``jax.sharding.Mesh`` the buckets are split over (default ``parallel.make_mesh()``: all devices);
      the model's parameters in ``logits_fn`` must live on it (replicated) or be uncommitted.
    batch_targets: run all the targets (and restarts) of APGD-T and FAB-T at once, one row per (still-robust
      point, run), in buckets of at most ``batch_size`` rows, instead of one run after another on the points the
      earlier runs left. Same robust set and the same x_adv as the default up to float rounding (a point takes
      its first fooling run), but every run attacks every point, including those an earlier run would have
      removed. Needs ``compact`` and a deterministic model.

  Returns:
    x_adv (B, ...): the worst case per point (x for robust points).
    report: dict with clean_accuracy, robust_accuracy, robust_accuracy_after {attack: acc}, robust (B,) bool,
      robust_after {attack: (B,) bool}, fooled_by {attack: (B,) bool}, seconds {attack: s},
      max_perturbation, attacks, cascade (configs), state (the final AutoAttackState), omitted (components of
      the reference's version that are not run here: ['square'] for L1 'standard' on non-image inputs, else []).
  """
  norm = linf_or_l2(norm, "AutoAttack", ("linf", "l2", "l1"))
  key, ids = key_and_index(key, x.shape[0])
  mesh = parallel.make_mesh() if mesh is None else mesh
  n_dev = mesh.devices.size
  # Every host keeps the whole batch: x may arrive split over the devices of several hosts.
  xn, yn, ids = parallel.to_host((x, y, ids))
  x, y = jnp.asarray(xn), jnp.asarray(yn)
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
  if batch_targets and (randomized or not compact):
    raise ValueError("batch_targets needs compact=True and a deterministic model (randomized=False): a "
                     "randomised model draws one key per call, which rows of different runs cannot share")

  fn = as_partial(logits_fn)
  b = x.shape[0]
  eps_v = per_example(eps, x)
  bs = b if batch_size is None else int(batch_size)
  if bs < 1:
    raise ValueError(f"batch_size must be >= 1; got {batch_size}")

  prints = fingerprint(x, y, eps_v, norm, version if attacks is None else "custom", stages)
  probe_x = x[:PROBE_POINTS]
  probe = np.asarray(_logits(fn, probe_x, jax.random.fold_in(key, 2**31 - 3), randomized))
  if state_dir is not None:
    if state is not None or on_stage_end is not None:
      raise ValueError("state_dir keeps the state itself: pass either state_dir or state= / on_stage_end")
    state_path = os.path.join(os.fspath(state_dir), "autoattack_" + hashlib.sha256(
        repr(prints).encode()).hexdigest()[:16] + ".npz")
    os.makedirs(os.fspath(state_dir), exist_ok=True)
    state = AutoAttackState.load(state_path) if os.path.exists(state_path) else None
    on_stage_end = lambda st: st.save(state_path)  # noqa: E731
  if state is None:
    clean_pred = _predict_on_mesh(fn, xn, jax.random.fold_in(key, 2**31 - 1), randomized, mesh)
    correct = clean_pred == yn
    state = AutoAttackState(robust=jnp.asarray(correct), x_adv=x, fooled_by=jnp.zeros((len(stages), b), bool),
                            clean_correct=jnp.asarray(correct), stage=jnp.asarray(0, jnp.int32), attacks=names,
                            norm=norm, fingerprint=prints, model_probe=jnp.asarray(probe))
  else:
    if tuple(state.attacks) != names or state.norm != norm or state.robust.shape != (b,):
      raise ValueError(f"state was made for attacks={state.attacks}, norm={state.norm!r}, "
                       f"{state.robust.shape[0]} points; this call has attacks={names}, norm={norm!r}, {b} points")
    _check_fingerprint(state, prints, probe)

  seconds = {}
  robust = np.array(state.robust)
  x_adv = np.array(state.x_adv)
  fooled_by = np.array(state.fooled_by)
  en = np.asarray(eps_v)
  for s in range(int(state.stage), len(stages)):
    name, cfg = stages[s]
    t0 = time.time()
    if batch_targets and name in ("apgd-t", "fab-t") and stage_runs(name, cfg) > 1:
      _run_stage_pairs(name, cfg, s, fn, xn, yn, ids, en, key, robust, x_adv, fooled_by, bs, mesh, norm)
      run_ranges = []
    else:
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
      rows = -(-rows // n_dev) * n_dev  # an equal share per device; padding rows are inactive
      for pad, active in active_buckets(robust, rows):
        xc, yc, pid, act, ec = parallel.place_global((xn[pad], yn[pad], ids[pad], active, en[pad]), mesh)
        # Square's own re-gathering reads its points on the host: one process only.
        adv, fooled = _run_stage(name, cfg, fn, xc, yc, key, pid, act, ec, norm, randomized, runs,
                                 compact=compact and jax.process_count() == 1)
        # AutoAttack re-evaluates the model at the returned point before declaring a point broken.
        pred = _predict_any(fn, adv, jax.random.fold_in(key, 2**31 - 2 - s), randomized)
        adv, fooled, pred = parallel.to_host((adv, fooled, pred))
        ok = _accepted(adv, fooled, pred, xn[pad], yn[pad], en[pad], active, norm)
        hit = pad[ok]
        robust[hit] = False
        fooled_by[s, hit] = True
        x_adv[hit] = adv[ok]
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
  cascade(version, kw.get("attacks"), kw.get("attack_kwargs"), norm=norm)  # misspelt settings fail now
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
