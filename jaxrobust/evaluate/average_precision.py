"""Average precision, clean and under attack, for single-logit models (AdAP evaluation, spec 1.6, 1.9).

AP (sklearn ``average_precision_score``, ties included)::

    AP = sum_k (R_k - R_{k-1}) P_k  over the distinct score thresholds t_k in decreasing order,
    P_k = #{pos: s >= t_k} / #{s >= t_k},  R_k = #{pos: s >= t_k} / n+
       = (1/n+) sum_{i in D+} #{pos: s >= s_i} / #{s >= s_i}                 (paper section 3.1)

Tied scores form one threshold (every tied example counts as ranked above each of them), exactly as
sklearn's ``_binary_clf_curve``; ``average_precision`` equals sklearn's to float64 round-off.
Scores are the raw logits z by default: sigmoid is monotone, so the ranking is the same, but float32
sigmoid saturates at 1.0 for z > ~17 and creates ties the model does not make. ``score='sigmoid'``
ranks by float32 sigmoid(z) like the reference's ``average_precision_score(y, sigmoid(z))``.

Robust AP: every test point is perturbed independently (the attacks below are per-example in inference
mode) and the AP of the adversarial scores over the whole split is reported:

* ``PGD_BCE`` (code ``val_classification``): PGD-Linf on BCE(sigmoid z, y), 10 steps, step 0.007,
  eps 0.031, start x + 0.001 N(0, I).
* ``APGD_CE`` (paper Table 3; not in the released code): APGD-CE (``jaxrobust.attacks.apgd``) on the
  two-class logits [0, z] (softmax([0, z])_1 = sigmoid z, so CE = BCE), 10 iterations, eps 8/255, and
  ``best_loss=True``: the highest-loss iterate of every point, not AutoAttack's "first point that flips
  the label, else clean x", because AP depends on scores, not on flipped decisions.
* transfer (paper Table 4; not released): PGD-20, step 0.003, eps 8/255, BCE, crafted on a
  CE-trained *source* model (same 0.001 N start as the code's PGD), scored by the target.

``worst_case_ap``: per point the most damaging of the attacks' scores (lowest for positives, highest
for negatives) -- a per-point ensemble, again an independent perturbation of every point.
Model selection (spec 1.7): ``select_best_epoch`` keeps the epoch with the best validation robust AP
(best clean AP for CE / AP Max.), first best on ties (the reference's strict ``>``).
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust import parallel
from jaxrobust.types import ApplyFn

PGD_BCE = {"name": "pgd", "label": "PGD-10", "eps": 0.031, "steps": 10, "step_size": 0.007}
APGD_CE = {"name": "apgd_ce", "label": "APGD-CE-10", "eps": 8 / 255, "n_iter": 10}
SCORES = ("logit", "sigmoid")


# -------------------------------------------------------------------------------------------
# The metric
# -------------------------------------------------------------------------------------------

def average_precision(y, scores) -> float:
  """sklearn-compatible AP of ``scores`` for binary labels ``y`` (1 = positive); NaN without positives."""
  y = np.asarray(y).reshape(-1) == 1
  s = np.asarray(scores, np.float64).reshape(-1)
  if y.shape != s.shape:
    raise ValueError(f"labels {y.shape} and scores {s.shape} differ in length")
  n_pos = int(y.sum())
  if n_pos == 0:
    return float("nan")
  order = np.argsort(-s, kind="mergesort")
  s, y = s[order], y[order]
  ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last row of each tie group
  tp = np.cumsum(y)[ends]
  fp = (ends + 1) - tp
  precision = tp / (tp + fp)
  recall = tp / n_pos
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def inverted_ranking_ap(n_pos: int, n_neg: int) -> float:
  """AP when every positive ranks below every negative: (1/n+) sum_{k=1..n+} k / (n- + k).

  The attacked-undefended floor of Tables 2/3: 0.05181 for 1000/9000 (CIFAR-10 test), 0.02548 for 500/9500.
  """
  k = np.arange(1, int(n_pos) + 1, dtype=np.float64)
  return float(np.mean(k / (n_neg + k))) if n_pos else float("nan")


# -------------------------------------------------------------------------------------------
# Attacks for single-logit models
# -------------------------------------------------------------------------------------------

def two_class_logits(z):
  """(B,) or (B, 1) single logit -> (B, 2) logits [0, z]: softmax(.)_1 = sigmoid z."""
  z = z.reshape(z.shape[0])
  return jnp.stack([jnp.zeros_like(z), z], axis=1)


def transfer_spec(source_apply: ApplyFn, source_variables, *, label: str = "transfer PGD-20",
                  eps: float = 8 / 255, steps: int = 20, step_size: float = 0.003) -> dict:
  """A black-box spec: PGD-BCE crafted on ``source_apply(source_variables, x)`` (a CE-trained model)."""
  return {"name": "transfer", "label": label, "eps": eps, "steps": steps, "step_size": step_size,
          "source_apply": source_apply, "source_variables": source_variables}


def paper_attacks(transfer_source: tuple | None = None, apgd: bool = True) -> list[dict]:
  """PGD-10 (always), APGD-CE-10 and, given (source_apply, source_variables), the transfer attack."""
  out = [dict(PGD_BCE)] + ([dict(APGD_CE)] if apgd else [])
  if transfer_source is not None:
    out.append(transfer_spec(*transfer_source))
  return out


def _pgd_bce(logits_fn, x, y, key, *, eps, steps, step_size, init="normal", init_scale=0.001):
  from jaxrobust.attacks.pgd import pgd
  return pgd(logits_fn, x, y, key, eps=eps, step_size=step_size, steps=steps, loss="bce", init=init,
             init_scale=init_scale)


def _label(spec: dict) -> str:
  if "label" in spec:
    return str(spec["label"])
  skip = ("name", "label", "source_apply", "source_variables")
  return " ".join([spec["name"]] + [f"{k}={v}" for k, v in sorted(spec.items()) if k not in skip])


class APEvaluator:
  """Clean and adversarial scores of every point of a split; one jitted program per attack spec.

  apply(variables, x) -> (B, 1) logits (inference mode). Batches are sharded over ``mesh`` and the
  last one is padded and masked, so every point counts once.
  """

  def __init__(self, apply: ApplyFn, *, mesh=None):
    self.apply = apply
    self.mesh = mesh if mesh is not None else parallel.make_mesh()
    self._repl, self._data = parallel.replicated(self.mesh), parallel.data_sharded(self.mesh)
    self._clean = jax.jit(lambda v, x: self._z(v, x), in_shardings=(self._repl, self._data),
                          out_shardings=self._data)
    self._steps: dict = {}
    # A stable function object, so APGD's own program cache (keyed on the function) is reused.
    self._two_class = lambda v, x: two_class_logits(self.apply(v, x))

  def _z(self, v, x):
    z = self.apply(v, x)
    if z.ndim == 2 and z.shape[1] == 1:
      return z[:, 0]
    if z.ndim != 1:
      raise ValueError(f"AP evaluation needs a single-logit model; got logits of shape {z.shape}")
    return z

  def _attack_step(self, spec: dict) -> Callable:
    name = spec["name"]
    kw = {k: v for k, v in spec.items() if k not in ("name", "label", "source_apply", "source_variables")}
    source_apply = spec.get("source_apply")
    cache_key = (name, tuple(sorted((k, repr(v)) for k, v in kw.items())), id(source_apply))
    if cache_key in self._steps:
      return self._steps[cache_key]
    if name == "pgd":
      def craft(v, x, y, key, src):
        return _pgd_bce(lambda xx: self.apply(v, xx), x, y, key, **kw)
    elif name == "apgd_ce":
      from jaxrobust.attacks.apgd import apgd
      kw.setdefault("n_iter", 10)
      kw.setdefault("best_loss", True)

      def craft(v, x, y, key, src):
        return apgd(jax.tree_util.Partial(self._two_class, v), x, y, key, loss="ce", **kw)
    elif name == "transfer":
      if source_apply is None:
        raise ValueError("a 'transfer' spec needs source_apply and source_variables (see transfer_spec)")

      def craft(v, x, y, key, src):
        return _pgd_bce(lambda xx: source_apply(src, xx), x, y, key, **kw)
    else:
      raise ValueError(f"unknown AP attack {name!r}; use 'pgd' (BCE), 'apgd_ce' or 'transfer'")

    def run(v, x, y, key, src):
      return self._z(v, jax.lax.stop_gradient(craft(v, x, y, key, src)))

    fn = jax.jit(run, in_shardings=(self._repl, self._data, self._data, self._repl, self._repl),
                 out_shardings=self._data)
    self._steps[cache_key] = fn
    return fn

  def scores(self, variables, dataset, attacks: Sequence[dict] = (), *, batch_size: int = 256, key=None,
             max_examples: int | None = None) -> dict:
    """{'labels': (n,), 'clean': (n,) logits, label: (n,) adversarial logits, 'seconds': {...}}."""
    from jaxrobust.data.pipeline import batch_iterator
    if max_examples:
      dataset = dataset.take(int(max_examples))
    n_dev = self.mesh.devices.size
    batch_size = max(n_dev, (int(batch_size) // n_dev) * n_dev)
    key = jax.random.PRNGKey(0) if key is None else key
    labels = [_label(s) for s in attacks]
    if len(set(labels)) != len(labels) or "clean" in labels or "labels" in labels:
      raise ValueError(f"attack labels must be unique and not 'clean'/'labels'; got {labels}")
    steps = [self._attack_step(s) for s in attacks]
    variables = parallel.replicate(variables, self.mesh)
    sources = [parallel.replicate(s.get("source_variables", ()), self.mesh) for s in attacks]
    out = {"labels": [], "clean": [], **{l: [] for l in labels}}
    seconds = {"clean": 0.0, **{l: 0.0 for l in labels}}
    it = batch_iterator(dataset, batch_size, seed=0, epoch=0, shuffle=False, drop_remainder=False,
                        pad_last=True, process_index=0, process_count=1)
    for b, batch in enumerate(it):
      keep = np.asarray(batch["mask"]) > 0
      x = jax.device_put(batch["image"], self._data)
      y = jax.device_put(batch["label"].astype(np.int32), self._data)
      t0 = time.perf_counter()
      out["clean"].append(np.asarray(self._clean(variables, x))[keep])
      seconds["clean"] += time.perf_counter() - t0
      out["labels"].append(np.asarray(batch["label"])[keep])
      for a, (label, step, src) in enumerate(zip(labels, steps, sources)):
        k = jax.random.fold_in(jax.random.fold_in(key, b), a)
        t0 = time.perf_counter()
        out[label].append(np.asarray(step(variables, x, y, k, src))[keep])
        seconds[label] += time.perf_counter() - t0
    result = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in out.items()}
    result["seconds"] = seconds
    return result

  def evaluate(self, variables, dataset, attacks: Sequence[dict] = (), *, batch_size: int = 256, key=None,
               max_examples: int | None = None, score: str = "logit", keep_scores: bool = False) -> dict:
    """{'n', 'n_pos', 'positive_rate', 'clean_ap', 'clean_acc', 'robust_ap': {label}, 'robust_acc': {label},
    'worst_case_ap', 'inverted_floor_ap', 'seconds'} (AP in [0, 1]; accuracy of the 1[z > 0] decision)."""
    if score not in SCORES:
      raise ValueError(f"score must be one of {SCORES}; got {score!r}")
    sc = self.scores(variables, dataset, attacks, batch_size=batch_size, key=key, max_examples=max_examples)
    y = sc["labels"] == 1
    labels = [_label(s) for s in attacks]
    rank = (lambda z: z) if score == "logit" else (lambda z: np.asarray(jax.nn.sigmoid(jnp.asarray(z, jnp.float32))))
    report = {"n": int(len(y)), "n_pos": int(y.sum()), "positive_rate": float(y.mean()) if len(y) else float("nan"),
              "clean_ap": average_precision(y, rank(sc["clean"])),
              "clean_acc": float(np.mean((sc["clean"] > 0) == y)),
              "robust_ap": {l: average_precision(y, rank(sc[l])) for l in labels},
              "robust_acc": {l: float(np.mean((sc[l] > 0) == y)) for l in labels},
              "inverted_floor_ap": inverted_ranking_ap(int(y.sum()), int((~y).sum())),
              "seconds": sc["seconds"], "score": score,
              "attacks": [{k: v for k, v in s.items() if k not in ("source_apply", "source_variables")}
                          for s in attacks]}
    if labels:
      stacked = np.stack([sc[l] for l in labels])
      worst = np.where(y, stacked.min(0), stacked.max(0))
      report["worst_case_ap"] = average_precision(y, rank(worst))
    if keep_scores:
      report["scores"] = sc
    return report


def evaluate_ap(apply: ApplyFn, variables, dataset, attacks: Sequence[dict] = (), **kw) -> dict:
  """One-shot ``APEvaluator(apply, mesh=...).evaluate(variables, dataset, attacks, ...)``."""
  mesh = kw.pop("mesh", None)
  return APEvaluator(apply, mesh=mesh).evaluate(variables, dataset, attacks, **kw)


def select_best_epoch(records: Sequence[dict], metric: str = "val_robust_ap") -> dict:
  """The record (a dict with 'epoch' and ``metric``) with the largest ``metric``; the first on ties.

  Use metric='val_robust_ap' for adversarial methods and 'val_clean_ap' for CE / AP Max. (spec 1.7).
  NaN values never win.
  """
  best = None
  for r in records:
    v = r.get(metric)
    if v is None or not np.isfinite(v):
      continue
    if best is None or v > best[metric]:
      best = r
  if best is None:
    raise ValueError(f"no record has a finite {metric!r}; got {len(records)} records")
  return best


__all__ = ["average_precision", "inverted_ranking_ap", "APEvaluator", "evaluate_ap", "select_best_epoch",
           "paper_attacks", "transfer_spec", "two_class_logits", "PGD_BCE", "APGD_CE"]
