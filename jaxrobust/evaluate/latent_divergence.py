"""R-DIV: the relative intra-class latent divergence of Bui et al. (2021a), ASCL, section 2.

Bui, Le, Zhao, Montague, deVel, Abraham, Phung. "Understanding and Achieving Efficient Robustness with
Adversarial Supervised Contrastive Learning", 2021 (thesis chapter 3, section 2). For a batch
{(x_i, y_i)}_{i=1..N}, a transformation T (the adversary: "adversarial R-DIV" uses PGD-250, eps 8/255, step 2/255) and latents z = f(x) (the
penultimate features, ``ModelOutput.features``), with d the cosine distance ``1 - cos(z_i, z_j)``::

    X_i^+ = {x_j, x_j^T : j != i, y_j == y_i}          positive pool of anchor i
    X_i^- = {x_j, x_j^T : j != i, y_j != y_i}          negative pool of anchor i
    d_a^+ = (1/N) sum_i (1/|X_i^+|) sum_{x_j in X_i^+} d(z_i, z_j)      absolute intra-class divergence
    d_a^- = (1/N) sum_i (1/|X_i^-|) sum_{x_j in X_i^-} d(z_i, z_j)      absolute inter-class divergence
    R-DIV = d_r^+ = d_a^+ / d_a^-                                        relative intra-class divergence

How this module reads the parts the paper leaves open:

* Pools (``pools``):
  - ``'mixed'`` (default, as written): the anchor is the clean latent z_i; its pools hold the clean
    AND the adversarial latents z_j, z_j^T of the other points (j != i), so |X_i^+| = 2 #{j != i:
    y_j = y_i}. The anchor's own adversarial counterpart z_i^T is not in either pool (j != i).
  - ``'adversarial'``: the anchor is still the clean latent z_i; its pools hold only the adversarial
    latents z_j^T (j != i). This measures how far the other points' adversarial examples land from a
    clean anchor of their (or another) class.
  With z_adv == z_clean both modes give the same numbers, the R-DIV of the clean latents (T = identity).
* Minibatches: N points are cut, in the order given, into minibatches of ``minibatch`` (128, the
  paper's batch size; the last one may be smaller) and the pools are taken inside a minibatch only.
  d_a^+ and d_a^- are computed per minibatch as above (N = the minibatch's anchors) and then averaged
  over the minibatches, each minibatch weighing the same; R-DIV is the ratio of the two averages.
* Empty pools: an anchor whose pool is empty (the only member of its class in its minibatch has no
  positive; a minibatch of one class has no negatives) is left out of that mean instead of giving
  NaN, and a minibatch without any anchor with a non-empty pool is left out of the average over
  minibatches. Only when no anchor anywhere has a positive (negative) pool is d_plus (d_minus) NaN.
* A zero latent (e.g. an all-zero ReLU feature vector) has cosine 0 with everything (the vectors are
  divided by max(||z||, 1e-12), as torch's ``cosine_similarity`` clamps), hence distance 1.

``r_div`` is the pure, jittable function. ``LatentDivergence`` is the evaluator plug-in (the latents
of the clean and the attacked points from the evaluator's one pass, see ``RobustEvaluator``'s
``features_apply``); ``class_divergences`` and ``plot_latent_divergence`` give the per-class view.
"""

from __future__ import annotations

import functools
import os
import re
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust.types import Array

POOLS = ("mixed", "adversarial")
MINIBATCH = 128  # the paper's batch size
_HIGHEST = jax.lax.Precision.HIGHEST


class RDiv(NamedTuple):
  """ratio = d_plus / d_minus (R-DIV, d_r^+); d_plus = d_a^+ (intra-class); d_minus = d_a^- (inter-class)."""
  ratio: Array
  d_plus: Array
  d_minus: Array


class AnchorDivergences(NamedTuple):
  """Per anchor i (N,): mean distance to its positive / negative pool, whether that pool is
  non-empty, d(z_i, z_i^T) to its own adversarial counterpart, and the index of its minibatch."""
  d_plus: Array
  d_minus: Array
  has_plus: Array
  has_minus: Array
  counterpart: Array
  minibatch: Array


def _check(z_clean, z_adv, y, pools: str, minibatch: int) -> None:
  if pools not in POOLS:
    raise ValueError(f"pools must be one of {POOLS}; got {pools!r}")
  if isinstance(minibatch, bool) or not isinstance(minibatch, (int, np.integer)) or minibatch < 1:
    raise ValueError(f"minibatch must be a positive int; got {minibatch!r}")
  if jnp.ndim(z_clean) != 2 or jnp.shape(z_clean) != jnp.shape(z_adv):
    raise ValueError(f"z_clean and z_adv must both be (N, D) latents; got {jnp.shape(z_clean)} and "
                     f"{jnp.shape(z_adv)}")
  if jnp.shape(y) != jnp.shape(z_clean)[:1]:
    raise ValueError(f"y must be (N,) labels for N = {jnp.shape(z_clean)[0]} latents; got shape {jnp.shape(y)}")


def _unit(z: Array) -> Array:
  z = jnp.asarray(z, jnp.float32)
  return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def _one_minibatch(zc, za, y, valid, pools: str):
  """Per-anchor pool means inside one minibatch of m rows (``valid`` masks the padding)."""
  m = zc.shape[0]
  d_ca = 1.0 - jnp.matmul(zc, za.T, precision=_HIGHEST)  # [i, j] = d(z_i, z_j^T)
  if pools == "mixed":
    d_cc = 1.0 - jnp.matmul(zc, zc.T, precision=_HIGHEST)  # [i, j] = d(z_i, z_j)
    pair, per_j = d_cc + d_ca, 2.0  # z_j and z_j^T both in the pool
  else:
    pair, per_j = d_ca, 1.0
  other = valid[None, :] & ~jnp.eye(m, dtype=bool)  # j != i, j a real point
  same = y[:, None] == y[None, :]

  def pool_mean(mask):
    count = per_j * mask.sum(1)
    total = jnp.where(mask, pair, 0.0).sum(1)
    has = valid & (count > 0)
    return jnp.where(has, total / jnp.maximum(count, 1.0), 0.0), has

  d_plus, has_plus = pool_mean(other & same)
  d_minus, has_minus = pool_mean(other & ~same)
  counterpart = 1.0 - jnp.sum(zc * za, axis=-1)
  return d_plus, d_minus, has_plus, has_minus, counterpart


@functools.partial(jax.jit, static_argnames=("pools", "minibatch"))
def _anchors(z_clean, z_adv, y, pools: str, minibatch: int) -> AnchorDivergences:
  n = z_clean.shape[0]
  blocks = max(1, -(-n // minibatch))
  pad = blocks * minibatch - n
  zc = jnp.pad(_unit(z_clean), ((0, pad), (0, 0))).reshape(blocks, minibatch, -1)
  za = jnp.pad(_unit(z_adv), ((0, pad), (0, 0))).reshape(blocks, minibatch, -1)
  yb = jnp.pad(jnp.asarray(y, jnp.int32), (0, pad)).reshape(blocks, minibatch)
  valid = (jnp.arange(blocks * minibatch) < n).reshape(blocks, minibatch)
  out = jax.vmap(functools.partial(_one_minibatch, pools=pools))(zc, za, yb, valid)
  index = jnp.repeat(jnp.arange(blocks, dtype=jnp.int32), minibatch)
  return AnchorDivergences(*(o.reshape(-1)[:n] for o in out), index[:n])


def anchor_divergences(z_clean, z_adv, y, *, pools: str = "mixed", minibatch: int = MINIBATCH
                       ) -> AnchorDivergences:
  """Per-anchor pool means (the terms of ``r_div`` before averaging); see the module docstring."""
  _check(z_clean, z_adv, y, pools, minibatch)
  return _anchors(z_clean, z_adv, y, pools=pools, minibatch=int(minibatch))


def _average(values, has, index, blocks: int):
  """Mean over anchors with a non-empty pool inside each minibatch, then over such minibatches."""
  w = has.astype(jnp.float32)
  total = jax.ops.segment_sum(values * w, index, num_segments=blocks)
  count = jax.ops.segment_sum(w, index, num_segments=blocks)
  used = count > 0
  per_block = jnp.where(used, total / jnp.maximum(count, 1.0), 0.0)
  n_used = used.sum()
  return jnp.where(n_used > 0, per_block.sum() / jnp.maximum(n_used, 1), jnp.nan)


def r_div(z_clean, z_adv, y, *, pools: str = "mixed", minibatch: int = MINIBATCH) -> RDiv:
  """R-DIV of Bui et al. (2021a), ASCL section 2: ``RDiv(ratio, d_plus, d_minus)``, float32 scalars.

      d(a, b) = 1 - <a, b> / (||a|| ||b||)
      d_plus  = mean over minibatches of  mean_i  mean_{j in X_i^+} d(z_i, z_j)
      d_minus = mean over minibatches of  mean_i  mean_{j in X_i^-} d(z_i, z_j)
      ratio   = d_plus / d_minus

  z_clean: (N, D) latents of the clean points (the anchors, in both modes).
  z_adv: (N, D) latents of their transformed (adversarial) versions, row i from x_i.
  y: (N,) integer labels.
  pools: 'mixed' (X_i^+ = {z_j, z_j^T : j != i, y_j = y_i}, as the paper writes it) or 'adversarial'
    (X_i^+ = {z_j^T : j != i, y_j = y_i}); X_i^- likewise with y_j != y_i.
  minibatch: pools are taken within consecutive minibatches of this size (the paper's 128), the
    last one possibly smaller; shuffle first if the rows are sorted by class.

  Anchors with an empty pool are left out of that mean (module docstring). Jittable: pools and
  minibatch are static (``jax.jit(r_div, static_argnames=('pools', 'minibatch'))``).
  """
  a = anchor_divergences(z_clean, z_adv, y, pools=pools, minibatch=minibatch)
  blocks = max(1, -(-int(jnp.shape(z_clean)[0]) // int(minibatch)))
  d_plus = _average(a.d_plus, a.has_plus, a.minibatch, blocks)
  d_minus = _average(a.d_minus, a.has_minus, a.minibatch, blocks)
  return RDiv(d_plus / d_minus, d_plus, d_minus)


def class_divergences(z_clean, z_adv, y, *, pools: str = "mixed", minibatch: int = MINIBATCH) -> dict:
  """Per class c (host lists, JSON-ready), over the anchors i with y_i = c:

  counterpart: mean d(z_i, z_i^T), how far each point's own adversarial latent moved;
  within: mean of the anchors' positive-pool means (their d_a^+ terms; anchors with an empty pool left out);
  between: mean of their negative-pool means (d_a^- terms); n: the number of anchors.
  A class with no usable anchor for a pool gets NaN there."""
  a = jax.tree.map(np.asarray, anchor_divergences(z_clean, z_adv, y, pools=pools, minibatch=minibatch))
  y = np.asarray(y)
  out = {"class": [], "n": [], "counterpart": [], "within": [], "between": []}
  for c in np.unique(y):
    i = y == c
    out["class"].append(int(c))
    out["n"].append(int(i.sum()))
    out["counterpart"].append(float(a.counterpart[i].mean()))
    for key, v, has in (("within", a.d_plus, a.has_plus), ("between", a.d_minus, a.has_minus)):
      used = i & has
      out[key].append(float(v[used].mean()) if used.any() else float("nan"))
  return out


# -------------------------------------------------------------------------------------------
# The evaluator plug-in
# -------------------------------------------------------------------------------------------

class LatentDivergence:
  """Report entry 'r_div': {attack label: {'ratio', 'd_plus', 'd_minus', 'n', 'pools', 'minibatch',
  'shuffle_seed', 'per_class', ['plot']}} from the latents of the clean points and of attack a's
  outputs in the evaluator's one pass (the same x_adv as robust accuracy).

  attacks: the labels to report (None: every attack of the evaluation).
  pools, minibatch: as ``r_div``.
  shuffle_seed: the points (the first m_a, those attack a saw) are permuted with this seed before
    they are cut into minibatches, so the pools look like the random training batches of the paper
    whatever the order of the split's file (class-sorted files would give one-class minibatches);
    None keeps the split's order.
  plot: a PNG path for ``plot_latent_divergence`` (None: no plot); with several attacks '{label}' in
    it is replaced by the label, or the label is appended to the file name.

  Needs the evaluator to have a features apply (``RobustEvaluator(apply,
  features_apply=jaxrobust.models.make_features_apply(module))``); ``needs_features`` declares it.
  """
  name = "r_div"
  needs_features = True

  def __init__(self, attacks: Sequence[str] | str | None = None, *, pools: str = "mixed",
               minibatch: int = MINIBATCH, shuffle_seed: int | None = 0, plot: str | None = None):
    if pools not in POOLS:
      raise ValueError(f"pools must be one of {POOLS}; got {pools!r}")
    self.attacks = (attacks,) if isinstance(attacks, str) else (None if attacks is None else tuple(attacks))
    self.pools, self.minibatch, self.shuffle_seed, self.plot = pools, int(minibatch), shuffle_seed, plot

  @property
  def feature_attacks(self) -> tuple[str, ...] | None:
    """The attacks whose outputs' latents this metric reads (None: all)."""
    return self.attacks

  def __call__(self, points) -> dict:
    if points.clean_features is None or points.adv_features is None:
      raise ValueError("R-DIV needs latent features of the clean and attacked points: build the evaluator as "
                       "RobustEvaluator(apply, features_apply=jaxrobust.models.make_features_apply(module)) and "
                       "pass the metric to evaluate(..., metrics=[..., LatentDivergence()])")
    labels = list(self.attacks) if self.attacks is not None else points.attack_labels
    if not labels:
      raise ValueError("R-DIV compares clean and adversarial latents: the evaluation needs at least one attack "
                       "spec (e.g. {'name': 'pgd', 'eps': 8/255, 'step_size': 2/255, 'steps': 250})")
    missing = [l for l in labels if l not in points.adv_features]
    if missing:
      raise ValueError(f"R-DIV for attacks {missing}: no latents of their outputs (attacks with latents: "
                       f"{sorted(points.adv_features)})")
    out = {}
    for label in labels:
      z_adv = np.asarray(points.adv_features[label])
      m = len(z_adv)
      z_clean, y = np.asarray(points.clean_features[:m]), np.asarray(points.labels[:m])
      if self.shuffle_seed is not None:
        order = np.random.default_rng(self.shuffle_seed).permutation(m)
        z_clean, z_adv, y = z_clean[order], z_adv[order], y[order]
      r = r_div(z_clean, z_adv, y, pools=self.pools, minibatch=self.minibatch)
      entry = {"ratio": float(r.ratio), "d_plus": float(r.d_plus), "d_minus": float(r.d_minus), "n": m,
               "pools": self.pools, "minibatch": self.minibatch, "shuffle_seed": self.shuffle_seed,
               "per_class": class_divergences(z_clean, z_adv, y, pools=self.pools, minibatch=self.minibatch)}
      if self.plot:
        path = _plot_path(self.plot, label, several=len(labels) > 1)
        plot_latent_divergence(z_clean, z_adv, y, path, pools=self.pools, minibatch=self.minibatch,
                               title=f"{label}: R-DIV {entry['ratio']:.3f} ({self.pools} pools)",
                               per_class=entry["per_class"], rdiv=r)
        entry["plot"] = path
      out[label] = entry
    return {"r_div": out}


def _plot_path(template: str, label: str, *, several: bool) -> str:
  safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_") or "attack"
  if "{label}" in template:
    return template.replace("{label}", safe)
  if not several:
    return template
  root, ext = os.path.splitext(template)
  return f"{root}_{safe}{ext or '.png'}"


# -------------------------------------------------------------------------------------------
# The plot
# -------------------------------------------------------------------------------------------

def pca_2d(z_fit, *zs):
  """Projects each of ``zs`` onto the first two principal axes of ``z_fit`` (centred at its mean)."""
  z_fit = np.asarray(z_fit, np.float64)
  mean = z_fit.mean(0)
  _, _, vt = np.linalg.svd(z_fit - mean, full_matrices=False)
  axes = vt[:2].T
  if axes.shape[1] < 2:  # one-dimensional latents or a single point
    axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))
  return [(np.asarray(z, np.float64) - mean) @ axes for z in zs]


def plot_latent_divergence(z_clean, z_adv, y, path: str, *, pools: str = "mixed", minibatch: int = MINIBATCH,
                           title: str = "", max_points: int = 2000, per_class: dict | None = None,
                           rdiv: RDiv | None = None, seed: int = 0) -> str:
  """Saves a two-panel PNG at ``path`` and returns it.

  Left: per class, mean cosine distance of each clean latent to its own adversarial latent
  (counterpart), and the within-class (d_a^+ terms) and between-class (d_a^- terms) pool distances;
  the dashed lines are the overall d_a^+ and d_a^-. Right: clean (dots) and adversarial (crosses)
  latents projected on the first two principal axes of the clean latents, coloured by class
  (at most ``max_points`` points of each, chosen at random with ``seed``).

  matplotlib is imported here only; a missing install raises ImportError naming the fix.
  """
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError as e:  # pragma: no cover - matplotlib is a declared dependency
    raise ImportError("plot_latent_divergence needs matplotlib: pip install 'jaxrobust[plot]' "
                      "(or leave the plot out: LatentDivergence(plot=None))") from e
  z_clean, z_adv, y = np.asarray(z_clean), np.asarray(z_adv), np.asarray(y)
  per_class = per_class or class_divergences(z_clean, z_adv, y, pools=pools, minibatch=minibatch)
  rdiv = rdiv or r_div(z_clean, z_adv, y, pools=pools, minibatch=minibatch)
  fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
  classes = per_class["class"]
  x = np.arange(len(classes))
  width = 0.27
  for k, (key, name) in enumerate((("counterpart", "clean vs own adversarial"),
                                   ("within", "within class (d+ pool)"),
                                   ("between", "between classes (d- pool)"))):
    ax.bar(x + (k - 1) * width, per_class[key], width, label=name)
  ax.axhline(float(rdiv.d_plus), color="C1", ls="--", lw=1, label="d+ (R-DIV numerator)")
  ax.axhline(float(rdiv.d_minus), color="C2", ls="--", lw=1, label="d- (R-DIV denominator)")
  tallest = np.nanmax([np.nanmax(np.asarray(per_class[k], float)) for k in ("counterpart", "within", "between")]
                      + [float(rdiv.d_minus), float(rdiv.d_plus)])
  if np.isfinite(tallest) and tallest > 0:
    ax.set_ylim(0, 1.4 * tallest)  # room for the legend above the bars
  ax.set_xticks(x, [str(c) for c in classes])
  ax.set_xlabel("class")
  ax.set_ylabel("mean cosine distance 1 - cos")
  ax.set_title(f"d+ {float(rdiv.d_plus):.3f}  d- {float(rdiv.d_minus):.3f}  R-DIV {float(rdiv.ratio):.3f}")
  ax.legend(fontsize=7, ncol=2, loc="upper center")
  ax.grid(alpha=0.3, axis="y")

  rng = np.random.default_rng(seed)
  pick = rng.permutation(len(y))[:max_points] if len(y) > max_points else np.arange(len(y))
  pc, pa = pca_2d(z_clean, z_clean[pick], z_adv[pick])
  cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
  for k, c in enumerate(classes):
    i = y[pick] == c
    color = cmap(k % cmap.N)
    ax2.scatter(pc[i, 0], pc[i, 1], s=8, color=color, marker="o", alpha=0.6, label=str(c))
    ax2.scatter(pa[i, 0], pa[i, 1], s=14, color=color, marker="x", alpha=0.6)
  ax2.set_xlabel("PC 1 (of clean latents)")
  ax2.set_ylabel("PC 2")
  ax2.set_title("latents: clean (o) and adversarial (x)")
  ax2.legend(fontsize=7, ncol=2, title="class", title_fontsize=7, markerscale=1.5)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path
