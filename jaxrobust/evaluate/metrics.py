"""Metrics as plug-ins over the per-point outputs of one evaluation pass.

The evaluator's batch loop (``RobustEvaluator.points``) runs the model and every attack over a split
once and returns ``Points``: per point the label, the clean prediction and, for single-logit models,
the clean score z; per attack the same at the attack's output. A metric is a small object with a
declared ``name`` that reads ``Points`` and returns the entries it adds to the report::

    report = {**CleanAccuracy()(points), **RobustAccuracy()(points), ...}

Accuracy (Croce & Hein 2020, robust accuracy): point i is robust to attack a iff it is classified
correctly both clean and at a's output; the worst case is robust iff robust to every attack. A targeted
attack (spec ``target``) counts the same way: robust iff the prediction is still y, so a point pushed to a
wrong class other than its target is broken; ``TargetedSuccess`` reports how often the target was reached.

Average precision (Li, Tong & Yang 2023, section 3.1; sklearn ``average_precision_score``, ties
included)::

    AP = sum_k (R_k - R_{k-1}) P_k  over the distinct score thresholds t_k in decreasing order,
    P_k = #{pos: s >= t_k} / #{s >= t_k},  R_k = #{pos: s >= t_k} / n+
       = (1/n+) sum_{i in D+} #{pos: s >= s_i} / #{s >= s_i}

Tied scores form one threshold (every tied example counts as ranked above each of them), exactly as
sklearn's ``_binary_clf_curve``. Robust AP is the AP of the adversarial scores, every point perturbed
independently (Li, Tong & Yang 2023, section 5.1).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, Sequence

import numpy as np

SCORES = ("logit", "sigmoid")


class Points(NamedTuple):
  """Per-point outputs of one pass over a split (n points; attack a ran on the first m_a).

  labels: (n,) int. clean_pred: (n,) int32 predicted class (argmax, or 1[z > 0] for one logit).
  clean_score: (n,) float32 logit z of a single-logit model; None for a multi-class model.
  adv_pred: {label: (m_a,) int32} the prediction at attack a's output.
  adv_score: {label: (m_a,) float32} z at a's output; None for a multi-class model.
  attacks: the specs as reported (labels set). seconds: {'clean' or label: wall time}.
  adversarials: {label: (m_a, ...) x_adv} when kept, else None.
  sample: (x, y) host arrays of the first batch (for the gradient-masking checks).
  clean_features: (n, D) latent features at the clean points, when a metric asked for them
    (``needs_features``), else None. adv_features: {label: (m_a, D)} latents at attack a's outputs.
  adv_norms: {label: (m_a,) float64 ||x_adv - x||_p} for the attacks whose spec has ``eps_curve`` (p its
    norm, ``specs.curve_norm``), else None (``jaxrobust.evaluate.min_norm_curve.MinNormCurve``).
  adv_targets: {label: (m_a,) int32 target classes} for the attacks whose spec has ``target`` (a targeted mode,
    ``jaxrobust.attacks.targets``), else None (``TargetedSuccess``).
  clean_member_probs: (M, n, K) float32 softmax probabilities of each member of an ensemble at the clean points
    (an evaluator with a member apply), else None. adv_member_probs: {label: (M, m_a, K)} at attack a's outputs
    (``jaxrobust.evaluate.ensemble_metrics.EnsembleMembers``).
  """
  labels: np.ndarray
  clean_pred: np.ndarray
  clean_score: np.ndarray | None
  adv_pred: dict
  adv_score: dict | None
  attacks: list
  seconds: dict
  adversarials: dict | None = None
  sample: tuple | None = None
  clean_features: np.ndarray | None = None
  adv_features: dict | None = None
  adv_norms: dict | None = None
  adv_targets: dict | None = None
  clean_member_probs: np.ndarray | None = None
  adv_member_probs: dict | None = None

  @property
  def n(self) -> int:
    return int(len(self.labels))

  @property
  def attack_labels(self) -> list[str]:
    return list(self.adv_pred)


class Metric(Protocol):
  """``name`` identifies the metric; calling it on ``Points`` returns its report entries.

  A metric that reads latent features declares ``needs_features = True`` and ``feature_attacks``
  (the attack labels whose outputs' latents it reads, None for all): the evaluator then fills
  ``Points.clean_features`` / ``adv_features`` through its features apply (e.g.
  ``jaxrobust.evaluate.latent_divergence.LatentDivergence``). Other metrics need neither.
  """
  name: str

  def __call__(self, points: Points) -> dict[str, Any]:
    ...


def compute(points: Points, metrics: Sequence[Metric]) -> dict[str, Any]:
  """The report entries of every metric; two metrics may not write the same entry."""
  out: dict[str, Any] = {}
  for m in metrics:
    entries = m(points)
    clash = set(entries) & set(out)
    if clash:
      raise ValueError(f"metric {m.name!r} writes report entries another metric wrote: {sorted(clash)}")
    out.update(entries)
  return out


# -------------------------------------------------------------------------------------------
# Accuracy
# -------------------------------------------------------------------------------------------

def clean_correct(points: Points) -> np.ndarray:
  """(n,) bool: classified correctly on the clean input."""
  return points.clean_pred == points.labels


def robust_flags(points: Points) -> dict[str, np.ndarray]:
  """{label: (m_a,) bool}: correct clean and at attack a's output."""
  clean = clean_correct(points)
  return {l: clean[:len(p)] & (p == points.labels[:len(p)]) for l, p in points.adv_pred.items()}


class CleanAccuracy:
  """clean_acc = mean_i 1[pred(x_i) = y_i]."""
  name = "clean_acc"

  def __call__(self, points: Points) -> dict:
    return {"clean_acc": float(clean_correct(points).mean())}


class RobustAccuracy:
  """robust_acc[a] = mean_{i < m_a} 1[pred(x_i) = y_i and pred(x_adv_i^a) = y_i]; worst_case_acc over
  the n_worst = min_a m_a points every attack saw, robust iff robust to every attack."""
  name = "robust_acc"

  def __call__(self, points: Points) -> dict:
    flags = robust_flags(points)
    n_worst = min([points.n] + [len(f) for f in flags.values()])
    worst = clean_correct(points)[:n_worst].copy()
    for f in flags.values():
      worst &= f[:n_worst]
    return {"robust_acc": {l: float(f.mean()) for l, f in flags.items()},
            "worst_case_acc": float(worst.mean()), "n_worst": n_worst,
            "n_attacked": {l: int(len(f)) for l, f in flags.items()}}


class TargetedSuccess:
  """targeted_success[a] = mean over the clean-correct points i < m_a of 1[pred(x_adv_i^a) = t_i^a], for the
  attacks run with a ``target`` (t^a their targets); n_targeted[a] = the number of those points. Clean-wrong
  points are left out: their robust accuracy is already 0, and a target may be their clean prediction
  (most_likely_wrong), reached with no perturbation. NaN when no attacked point is clean-correct. Adds
  nothing when no spec has a target."""
  name = "targeted_success"

  def __call__(self, points: Points) -> dict:
    if not points.adv_targets:
      return {}
    clean = clean_correct(points)
    rates, counts = {}, {}
    for l, t in points.adv_targets.items():
      p = points.adv_pred[l]
      ok = clean[:len(p)]
      counts[l] = int(ok.sum())
      rates[l] = float(np.mean(p[ok] == t[ok])) if ok.any() else float("nan")
    return {"targeted_success": rates, "n_targeted": counts}


class AdversarialAccuracy:
  """Accuracy at the attack's output alone, mean_{i < m_a} 1[pred(x_adv_i^a) = y_i] (the accuracy
  column of the AdAP protocol, which does not require the clean point to be correct)."""

  def __init__(self, name: str = "adversarial_acc"):
    self.name = name

  def __call__(self, points: Points) -> dict:
    return {self.name: {l: float(np.mean(p == points.labels[:len(p)])) for l, p in points.adv_pred.items()}}


# -------------------------------------------------------------------------------------------
# Average precision
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

  The floor of an attacked undefended model (Li, Tong & Yang 2023, Tables 2 and 3): 0.05181 for
  1000 positives / 9000 negatives (CIFAR-10 one-vs-all test set), 0.02548 for 500 / 9500.
  """
  k = np.arange(1, int(n_pos) + 1, dtype=np.float64)
  return float(np.mean(k / (n_neg + k))) if n_pos else float("nan")


def ranking(score: str):
  """Scores -> ranking values. 'logit': z itself. 'sigmoid': float32 sigmoid(z), which saturates at
  1.0 for z > ~17 and so ties points the logits order (the reference code ranks by it)."""
  if score not in SCORES:
    raise ValueError(f"score must be one of {SCORES}; got {score!r}")
  if score == "logit":
    return lambda z: z
  import jax
  import jax.numpy as jnp
  return lambda z: np.asarray(jax.nn.sigmoid(jnp.asarray(z, jnp.float32)))


class AveragePrecision:
  """clean_ap = AP(y, z); robust_ap[a] = AP(y_{<m_a}, z_adv^a). Single-logit models only: adds
  nothing for a multi-class model."""
  name = "average_precision"

  def __init__(self, score: str = "logit"):
    self.rank = ranking(score)

  def __call__(self, points: Points) -> dict:
    if points.clean_score is None:
      return {}
    y = points.labels
    return {"clean_ap": average_precision(y, self.rank(points.clean_score)),
            "robust_ap": {l: average_precision(y[:len(s)], self.rank(s)) for l, s in points.adv_score.items()}}


class WorstCaseAP:
  """AP of the per-point most damaging attack score over the points every attack saw: the lowest z
  for a positive, the highest for a negative (a per-point ensemble, each point perturbed
  independently). Adds nothing without attacks or for a multi-class model."""
  name = "worst_case_ap"

  def __init__(self, score: str = "logit"):
    self.rank = ranking(score)

  def __call__(self, points: Points) -> dict:
    if points.adv_score is None or not points.adv_score:
      return {}
    m = min(len(s) for s in points.adv_score.values())
    y = points.labels[:m] == 1
    stacked = np.stack([s[:m] for s in points.adv_score.values()])
    return {"worst_case_ap": average_precision(y, self.rank(np.where(y, stacked.min(0), stacked.max(0))))}


class PositiveRate:
  """n_pos, positive_rate and inverted_floor_ap: the AP of the worst possible ranking."""
  name = "positive_rate"

  def __call__(self, points: Points) -> dict:
    y = points.labels == 1
    return {"n_pos": int(y.sum()), "positive_rate": float(y.mean()) if len(y) else float("nan"),
            "inverted_floor_ap": inverted_ranking_ap(int(y.sum()), int((~y).sum()))}
