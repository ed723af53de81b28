"""Robust accuracy against eps from one minimum-norm attack run (what foolbox's ``epsilons=[...]`` gives).

A minimum-norm attack (FMN, DDN: registry ``AttackInfo.min_norm``) run without eps returns, per point, the
smallest adversarial perturbation it found. With the per-point minimum norm

    r_i = 0                     if x_i is misclassified clean
          ||x_adv_i - x_i||_p   if the attack's output x_adv_i is misclassified
          +inf                  otherwise (no adversarial found)

point i is robust at radius eps iff r_i > eps (an adversarial at exactly eps breaks it), so for every eps at once

    robust_acc(eps) = mean_i 1[r_i > eps],

non-increasing in eps, equal to clean accuracy at eps = 0 (r_i > 0 iff x_i is correct clean: a correct point's
adversarial has a positive norm) and to the attack's own robust accuracy as eps -> inf. It is an upper bound on
the true robust accuracy, as tight as the attack's norms.

``min_norms`` and ``robust_accuracy_at`` are the two formulas; ``MinNormCurve`` is the evaluator plug-in: an
attack spec with ``eps_curve: [eps, ...]`` makes the evaluator record ||x_adv - x||_p per point
(``Points.adv_norms``, p the spec's norm) and the metric writes ``report['eps_curve'][label]``;
``plot_min_norm_curve`` draws the curves (matplotlib, imported lazily).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np


def min_norms(clean_correct, adv_fooled, dist) -> np.ndarray:
  """Per-point minimum norms r_i (float64): 0 where misclassified clean, ``dist`` where the attack's output
  is misclassified, +inf elsewhere. All arguments (m,)."""
  clean_correct = np.asarray(clean_correct, bool)
  adv_fooled = np.asarray(adv_fooled, bool)
  dist = np.asarray(dist, np.float64)
  if not clean_correct.shape == adv_fooled.shape == dist.shape:
    raise ValueError(f"clean_correct {clean_correct.shape}, adv_fooled {adv_fooled.shape} and dist {dist.shape} "
                     "must have the same (m,) shape")
  return np.where(~clean_correct, 0.0, np.where(adv_fooled, dist, np.inf))


def robust_accuracy_at(norms, eps_values: Sequence[float]) -> np.ndarray:
  """robust_acc(eps) = mean_i 1[r_i > eps] for every eps of ``eps_values`` (float64, same order).

  norms: (m,) per-point minimum norms (``min_norms``; inf = not broken, 0 = misclassified clean).
  """
  norms = np.asarray(norms, np.float64).reshape(-1)
  eps = np.asarray(eps_values, np.float64).reshape(-1)
  if np.any(np.isnan(norms)):
    raise ValueError("norms must not be NaN (use inf for points no attack broke)")
  if np.any(~np.isfinite(eps)) or np.any(eps < 0):
    raise ValueError(f"eps values must be finite and >= 0; got {list(eps_values)}")
  if norms.size == 0:
    return np.full(eps.shape, np.nan)
  # sorted norms: #{r_i > e} = m - #{r_i <= e}
  s = np.sort(norms)
  return (s.size - np.searchsorted(s, eps, side="right")) / s.size


def check_eps_curve(value, what: str) -> list[float]:
  """An ``eps_curve`` spec value: a non-empty list of finite numbers >= 0."""
  if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
    raise ValueError(f"eps_curve of attack {what!r} must be a list of radii, e.g. [0.1, 0.5, 1.0]; got {value!r}")
  out = []
  for v in value:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v) or v < 0:
      raise ValueError(f"eps_curve of attack {what!r} must hold finite numbers >= 0; got {value!r}")
    out.append(float(v))
  if not out:
    raise ValueError(f"eps_curve of attack {what!r} is empty")
  return out


def per_point_distance(x_adv, x, norm: str) -> np.ndarray:
  """(m,) ||x_adv_i - x_i||_p on the host, in float64 (norm 'linf', 'l2' or 'l1')."""
  d = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
  if norm == "linf":
    return np.abs(d).max(axis=1) if d.shape[1] else np.zeros(len(d))
  if norm == "l2":
    return np.sqrt(np.sum(d * d, axis=1))
  if norm == "l1":
    return np.abs(d).sum(axis=1)
  raise ValueError(f"unknown norm {norm!r}")


class MinNormCurve:
  """report['eps_curve'][label] = {'norm', 'eps', 'robust_acc', 'n', 'broken', 'median_norm', 'norms'} for
  every attack whose spec has ``eps_curve``; adds nothing when none has (reports stay as they were).

  median_norm: the median of r_i over the points correct clean (inf when fewer than half are broken);
  broken: the fraction of those the attack broke; norms: r_i per point (inf = not broken).
  plot: a PNG path for ``plot_min_norm_curve`` (all curves in one figure), or None.
  """
  name = "eps_curve"

  def __init__(self, plot: str | None = None):
    self.plot = plot

  def __call__(self, points) -> dict:
    adv_norms = getattr(points, "adv_norms", None)
    if not adv_norms:
      return {}
    from jaxrobust.evaluate.metrics import clean_correct
    from jaxrobust.evaluate.specs import curve_norm
    specs = {a["label"]: a for a in points.attacks}
    correct = clean_correct(points)
    out = {}
    for label, dist in adv_norms.items():
      spec = specs[label]
      m = len(dist)
      fooled = points.adv_pred[label] != points.labels[:m]
      r = min_norms(correct[:m], fooled, dist)
      eps = check_eps_curve(spec["eps_curve"], label)
      on_correct = r[correct[:m]]
      out[label] = {"norm": curve_norm(spec), "eps": eps, "robust_acc": robust_accuracy_at(r, eps).tolist(),
                    "n": m, "broken": float(np.mean(np.isfinite(on_correct))) if on_correct.size else float("nan"),
                    "median_norm": float(np.median(on_correct)) if on_correct.size else float("nan"),
                    "norms": r.tolist()}
    if self.plot:
      path = plot_min_norm_curve(out, self.plot)
      for entry in out.values():
        entry["plot"] = path
    return {"eps_curve": out}


def plot_min_norm_curve(curves: dict, path: str, *, title: str = "") -> str:
  """Saves robust accuracy against eps of every curve (``MinNormCurve`` entries: {label: {'norm', 'eps',
  'robust_acc', 'norms'}}) at ``path`` and returns it. Each curve is drawn as the step function
  mean_i 1[r_i > eps] from its per-point norms (exact between the requested eps) with the requested eps marked.
  One panel per norm. matplotlib is imported here only."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError as e:  # pragma: no cover - matplotlib is a declared dependency
    raise ImportError("plot_min_norm_curve needs matplotlib: pip install 'jaxrobust[plot]' "
                      "(or leave the plot out: MinNormCurve(plot=None))") from e
  norms_used = sorted({c["norm"] for c in curves.values()})
  fig, axes = plt.subplots(1, len(norms_used), figsize=(5.2 * len(norms_used), 4), dpi=110, squeeze=False)
  for ax, norm in zip(axes[0], norms_used):
    for k, (label, c) in enumerate((l, c) for l, c in curves.items() if c["norm"] == norm):
      eps = np.asarray(c["eps"], np.float64)
      top = float(eps.max()) if eps.size else 1.0
      r = np.asarray(c.get("norms", []), np.float64)
      if r.size:
        finite = r[np.isfinite(r) & (r > 0)]
        top = max(top, float(finite.max()) * 1.05 if finite.size else top)
        grid = np.unique(np.r_[0.0, np.clip(finite, 0, top), eps, top])
        ax.step(grid, robust_accuracy_at(r, grid), where="post", color=f"C{k}", lw=1.3, label=label)
      ax.plot(eps, c["robust_acc"], "o", color=f"C{k}", ms=4)
    ax.set_xlabel(f"eps ({norm})")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.suptitle(title or "robust accuracy against eps (minimum-norm attacks, one run each)")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path
