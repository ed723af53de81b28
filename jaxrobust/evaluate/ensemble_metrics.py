"""Metrics of the ensemble chapter: multi-task attack success, transferability, entropy detection.

Pure numpy on predictions and probabilities that were already computed (no model calls), for

* TA-MOO (Bui et al. 2023, TMLR, "Generating Adversarial Examples with Task Oriented Multi-Objective
  Optimization", section 4): the per-task success rates A-i, their mean
  A-Avg and the all-tasks rate A-All of a multi-task attack (ENS, UNI, EoT);
* CCE (Bui et al. 2021, AAAI, "Improving Ensemble Robustness by Collaboratively Promoting and Demoting
  Adversarial Robustness", section 5): the transferability matrix a^(i,j), T, the subsets S_ab of
  the ensemble's adversarial examples, nT and a_single (Table 6), and the ROC-AUC of the entropy of the
  ensemble's mean probability as an adversarial-example detector (CCE-DM);
* ``plot_transferability``: the a^(i,j) heat-map.

Layout: member (or task) axis first. ``achieved`` is (m, n) bool, row i = task i, column j = sample j;
member predictions are (m, n) int. All rates are in % (as the papers' tables), floats.

The functions take arrays directly; ``EnsembleMembers`` is the evaluator plug-in that applies them to the
member probabilities an evaluator of an ensemble records (``RobustEvaluator.for_module``).
"""

from __future__ import annotations

import os

import numpy as np

GOALS = ("clean_prediction", "label", "target")


# -------------------------------------------------------------------------------------------
# Multi-task attack success (TA-MOO, B9)
# -------------------------------------------------------------------------------------------

def task_success(achieved) -> dict:
  """A-i, A-Avg and A-All of a multi-task attack (Bui et al. 2023, TMLR, section 4), in %.

      A_i   = 100 mean_j achieved[i, j]          (per task i)
      A_avg = mean_i A_i
      A_all = 100 mean_j prod_i achieved[i, j]   (every task achieved on sample j)

  achieved: (m, n) bool, task i achieved its goal on sample j (``ens_achieved``, ``uni_achieved``,
    ``eot_achieved``); a (n,) vector is one task.
  Returns {'A_i': [m floats], 'A_avg', 'A_all', 'm', 'n'}; NaN rates when n = 0.
  A_all <= min_i A_i <= A_avg <= max_i A_i, and A_all = A_avg when m = 1.
  """
  achieved = np.asarray(achieved)
  if achieved.ndim == 1:
    achieved = achieved[None]
  if achieved.ndim != 2 or achieved.shape[0] == 0:
    raise ValueError(f"achieved must be (m tasks, n samples) with m >= 1; got shape {achieved.shape}")
  achieved = achieved.astype(bool)
  m, n = achieved.shape
  if n == 0:
    nan = float("nan")
    return {"A_i": [nan] * m, "A_avg": nan, "A_all": nan, "m": m, "n": 0}
  per_task = 100.0 * achieved.mean(axis=1)
  return {"A_i": [float(a) for a in per_task], "A_avg": float(per_task.mean()),
          "A_all": float(100.0 * achieved.all(axis=0).mean()), "m": m, "n": n}


def _int_array(name: str, a) -> np.ndarray:
  a = np.asarray(a)
  if not np.issubdtype(a.dtype, np.integer):
    raise ValueError(f"{name} must hold integer class indices; got dtype {a.dtype}")
  return a


def _reference(goal: str, labels, clean_pred, targets) -> np.ndarray:
  """The array a goal compares against: y, the clean prediction or the targets."""
  if goal not in GOALS:
    raise ValueError(f"goal must be one of {GOALS}; got {goal!r}")
  ref = {"label": labels, "clean_prediction": clean_pred, "target": targets}[goal]
  if ref is None:
    raise ValueError(f"goal {goal!r} needs {_arg_name(goal)}")
  return _int_array(_arg_name(goal), ref)


def _arg_name(goal: str) -> str:
  return {"label": "labels", "clean_prediction": "clean_pred", "target": "targets"}[goal]


def _compare(pred: np.ndarray, ref: np.ndarray, goal: str) -> np.ndarray:
  """Untargeted goals: the prediction left the reference; 'target': it reached it.

  (The TA-MOO code's targeted mask, pred != target, is inverted.)"""
  if ref.shape != pred.shape and ref.shape != pred.shape[-1:]:
    raise ValueError(f"predictions {pred.shape} and the {_arg_name(goal)} {ref.shape} do not match: give (n,) or "
                     f"{pred.shape}")
  return pred == ref if goal == "target" else pred != ref


def ens_achieved(member_pred, labels, *, targets=None) -> np.ndarray:
  """ENS tasks (Bui et al. 2023, TMLR, B5): task i = fool ensemble member i.

      achieved[i, j] = 1[pred_i(x_j + delta_j) != y_j]      (untargeted)
                     = 1[pred_i(x_j + delta_j) == t_j]      (targeted, ``targets`` given)

  member_pred: (m, n) int, member i's prediction on the adversarial x_j. labels: (n,) int.
  targets: (n,) or (m, n) int target classes, or None. Returns (m, n) bool.
  """
  pred = _int_array("member_pred", member_pred)
  if pred.ndim != 2:
    raise ValueError(f"member_pred must be (m members, n samples); got shape {pred.shape}")
  goal = "label" if targets is None else "target"
  return _compare(pred, _reference(goal, labels, None, targets), goal)


def eot_achieved(pred, *, goal: str = "clean_prediction", labels=None, clean_pred=None, targets=None
                 ) -> np.ndarray:
  """EoT tasks (Bui et al. 2023, TMLR, B5): task i = fool the model under transformation t_i.

      achieved[i, j] = 1[pred(t_i(x_j + delta_j)) != r_j]

  pred: (m, n) int predictions under the m transformations.
  goal: 'clean_prediction' (r = argmax h(x), the thesis), 'label' (r = y, the released code) or
    'target' (achieved = 1[pred == t]); the matching array of ``clean_pred``, ``labels``, ``targets``
    is required, (n,) or (m, n) (e.g. the clean prediction under each t_i). Returns (m, n) bool.
  """
  pred = _int_array("pred", pred)
  if pred.ndim != 2:
    raise ValueError(f"pred must be (m transformations, n samples); got shape {pred.shape}")
  return _compare(pred, _reference(goal, labels, clean_pred, targets), goal)


def uni_achieved(pred, group_size: int, *, goal: str = "clean_prediction", labels=None, clean_pred=None,
                 targets=None) -> np.ndarray:
  """UNI tasks (Bui et al. 2023, TMLR, B5): one delta per group of K consecutive images, task i = fool
  the model on the group's i-th image.

      achieved[i, g] = 1[pred(x_{gK+i} + delta_g) != r_{gK+i}]

  pred: (n,) int predictions on the perturbed images, in the order the groups were cut (the code
    reshapes the test set into consecutive groups of K). group_size: K; n must be a multiple of K.
  goal, labels, clean_pred, targets: as ``eot_achieved``, each (n,).
  Returns (K, n // K) bool: ``task_success`` of it gives A-i per position in the group and the
  group-level A-All (every image of the group fooled by its one delta).
  """
  pred = _int_array("pred", pred)
  k = int(group_size)
  if pred.ndim != 1:
    raise ValueError(f"pred must be (n,) predictions, groups of K consecutive images; got shape {pred.shape}")
  if k < 1 or len(pred) % k:
    raise ValueError(f"n = {len(pred)} predictions do not split into groups of group_size = {group_size}")
  ref = _reference(goal, labels, clean_pred, targets)
  if ref.shape != pred.shape:
    raise ValueError(f"the {_arg_name(goal)} must be (n,) = {pred.shape}; got {ref.shape}")
  return _compare(pred, ref, goal).reshape(-1, k).T


# -------------------------------------------------------------------------------------------
# Transferability between members (CCE, A7, Table 6)
# -------------------------------------------------------------------------------------------

def transferability_matrix(preds_on_adv, labels) -> np.ndarray:
  """a^(i,j) = 100 mean_k 1[pred_j(x_a^i_k) = y_k]: accuracy of member j on the adversarial examples
  x_a^i crafted against member i (Bui et al. 2021, AAAI, Table 6).

  preds_on_adv: (N sources, N members, n) int, [i, j] = member j's predictions on x_a^i. labels: (n,).
  Returns (N, N) float64 in %. The diagonal is each member's white-box accuracy.
  """
  preds = _int_array("preds_on_adv", preds_on_adv)
  labels = _int_array("labels", labels)
  if preds.ndim != 3 or preds.shape[0] != preds.shape[1] or preds.shape[2] != labels.shape[0] or labels.ndim != 1:
    raise ValueError(f"preds_on_adv must be (N, N, n) for n = len(labels); got {preds.shape} and labels "
                     f"{labels.shape}")
  return 100.0 * (preds == labels).mean(axis=2)


def transferability_T(a) -> float:
  """T = a^(1,2) - a^(1,1) + a^(2,1) - a^(2,2) (Bui et al. 2021, AAAI, Table 6): how much more accurate a
  member is on the other member's adversarial examples than on its own; higher T = less transferable.

  For N > 2 (our generalisation; the paper has N = 2 only) the mean over the N(N-1) ordered pairs
  i != j of a^(i,j) - a^(i,i), times 2, so that N = 2 gives the paper's T on the same scale:

      T = 2 / (N (N - 1)) sum_{i != j} (a^(i,j) - a^(i,i))

  a: (N, N) in % (``transferability_matrix``), N >= 2.
  """
  a = np.asarray(a, np.float64)
  if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
    raise ValueError(f"a must be an (N, N) matrix with N >= 2; got shape {a.shape}")
  n = a.shape[0]
  off = ~np.eye(n, dtype=bool)
  gaps = (a - np.diag(a)[:, None])[off]
  return float(2.0 * gaps.mean())


def ensemble_prediction(member_probs) -> np.ndarray:
  """argmax_k (1/N) sum_n p^n_k: the ensemble f^en averages the members' softmax probabilities (A1).

  member_probs: (N, n, K). Returns (n,) int, the first class on ties (np.argmax). Summed in float64 (the
  argmax of the mean is that of the sum). Lemma 1(ii): members that all predict y make the ensemble
  predict y (rounding is monotone, so this holds in floating point too, barring a sum that rounds two
  classes into a tie)."""
  p = np.asarray(member_probs, np.float64)
  if p.ndim != 3:
    raise ValueError(f"member_probs must be (N members, n, K); got shape {p.shape}")
  return p.sum(axis=0).argmax(axis=-1)


def transferability_report(preds_on_adv, member_probs_on_ensemble_adv, labels) -> dict:
  """All columns of CCE's Table 6 (Bui et al. 2021, AAAI, section 5), in %.

  preds_on_adv: (N, N, n) int, [i, j] = member j's predictions on x_a^i (adversarial examples of member i).
  member_probs_on_ensemble_adv: (N, n, K) member probabilities on x_a^en, the ensemble's adversarial
    examples; the ensemble's prediction is the argmax of their mean (``ensemble_prediction``).
  labels: (n,) int.

      a        = transferability_matrix(preds_on_adv, labels),  T = transferability_T(a)
      a_en_en  = 100 mean 1[f^en(x_a^en) = y]
      S_ab     = % of x_a^en with 1[f^1 correct] = a and 1[f^2 correct] = b  (N = 2; sum to 100)
      nT       = 100 - a_en_en - |S00|      (ensemble fooled, not every member fooled)
      a_single = a_en_en - |S11|            (ensemble right, some member wrong; >= 0 by Lemma 1(ii))

  nT counts |fooled \\ S00| - |right & S00|: it is the fooled-but-not-transferable share only when
  no x_a^en in S00 is classified right by the ensemble, which averaging can do; 'nT_exact' and
  'en_right_in_S00' give both parts.
  For N > 2, S00 is "no member correct" and S11 "every member correct" (the same formulas then hold),
  and 'correct_members' gives the % of x_a^en by number of correct members, 0..N (S_ab for N = 2 are
  its finer split).

  Returns {'N', 'n', 'a' (N x N nested list), 'a_diag' (N), 'a_en_en', 'T', 'nT', 'a_single', 'nT_exact',
  'en_right_in_S00', 'correct_members' (N + 1)} and, for N = 2, 'a11', 'a12', 'a21', 'a22', 'S11',
  'S10', 'S01', 'S00'.
  """
  labels = _int_array("labels", labels)
  a = transferability_matrix(preds_on_adv, labels)
  n_members = a.shape[0]
  probs = np.asarray(member_probs_on_ensemble_adv)
  if probs.ndim != 3 or probs.shape[:2] != (n_members, labels.shape[0]):
    raise ValueError(f"member_probs_on_ensemble_adv must be (N, n, K) = ({n_members}, {labels.shape[0]}, K); "
                     f"got {probs.shape}")
  member_right = probs.argmax(axis=-1) == labels  # (N, n)
  en_right = ensemble_prediction(probs) == labels
  n_right = member_right.sum(axis=0)
  none_right, all_right = n_right == 0, n_right == n_members

  def pct(mask) -> float:
    return float(100.0 * np.mean(mask))

  a_en_en, s00, s11 = pct(en_right), pct(none_right), pct(all_right)
  report = {"N": n_members, "n": int(labels.shape[0]), "a": a.tolist(), "a_diag": np.diag(a).tolist(),
            "a_en_en": a_en_en, "T": transferability_T(a), "nT": 100.0 - a_en_en - s00, "a_single": a_en_en - s11,
            "nT_exact": pct(~en_right & ~none_right), "en_right_in_S00": pct(en_right & none_right),
            "correct_members": [pct(n_right == c) for c in range(n_members + 1)]}
  if n_members == 2:
    r1, r2 = member_right
    report.update(a11=float(a[0, 0]), a12=float(a[0, 1]), a21=float(a[1, 0]), a22=float(a[1, 1]),
                  S11=s11, S10=pct(r1 & ~r2), S01=pct(~r1 & r2), S00=s00)
  return report


# -------------------------------------------------------------------------------------------
# Detection by the entropy of the ensemble (CCE-DM, A7)
# -------------------------------------------------------------------------------------------

def ensemble_entropy(probs) -> np.ndarray:
  """H(f^en(x)) = -sum_k p_k log p_k (nats, 0 log 0 = 0) of the ensemble's mean probability.

  probs: (n, K) ensemble probabilities, or (N, n, K) member probabilities (averaged over N first).
  Returns (n,) float64."""
  p = np.asarray(probs, np.float64)
  if p.ndim == 3:
    p = p.mean(axis=0)
  if p.ndim != 2:
    raise ValueError(f"probs must be (n, K) or (N members, n, K); got shape {p.shape}")
  plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
  return -plogp.sum(axis=-1)


def roc_auc(negative_scores, positive_scores) -> float:
  """ROC-AUC in the Mann-Whitney form, ties counted 1/2:

      AUC = (1 / (n- n+)) sum_{i in pos, j in neg} (1[s_i > s_j] + 1/2 1[s_i = s_j])

  from the average ranks of the pooled scores (U = sum of the positives' ranks - n+ (n+ + 1) / 2).
  NaN when either side is empty."""
  neg = np.asarray(negative_scores, np.float64).reshape(-1)
  pos = np.asarray(positive_scores, np.float64).reshape(-1)
  if not len(neg) or not len(pos):
    return float("nan")
  _, inverse, counts = np.unique(np.r_[neg, pos], return_inverse=True, return_counts=True)
  # A tie group occupying ranks r+1..r+c gets their mean rank r + (c + 1) / 2.
  mean_rank = np.cumsum(counts) - counts + (counts + 1) / 2.0
  u = mean_rank[inverse.reshape(-1)[len(neg):]].sum() - len(pos) * (len(pos) + 1) / 2.0
  return float(u / (len(neg) * len(pos)))


def entropy_detection_auc(probs_clean, probs_adv) -> float:
  """ROC-AUC of detecting adversarial examples by the entropy of the ensemble's mean probability
  (CCE-DM, Bui et al. 2021, AAAI, section 5): benign = negative, adversarial = positive, higher entropy
  = more likely adversarial; ties count 1/2 (``roc_auc``).

  probs_clean, probs_adv: (n, K) ensemble probabilities (or (N, n, K) member probabilities) on the
  benign inputs and on their adversarial examples; the two n may differ. In [0, 1] (not %); below 0.5
  the adversarial examples are the more confident ones."""
  return roc_auc(ensemble_entropy(probs_clean), ensemble_entropy(probs_adv))


# -------------------------------------------------------------------------------------------
# The plot
# -------------------------------------------------------------------------------------------

def plot_transferability(report_or_matrix, path: str, *, title: str = "") -> str:
  """Saves a heat-map of a^(i,j) at ``path`` (rows: the member the examples were crafted on, columns: the
  member evaluated; values in %, written in the cells) and returns the path.

  report_or_matrix: a ``transferability_report`` dict (its 'a', with T in the title) or an (N, N) matrix.
  matplotlib is imported here only; a missing install raises ImportError naming the fix.
  """
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError as e:  # pragma: no cover - matplotlib is a declared dependency
    raise ImportError("plot_transferability needs matplotlib: pip install 'jaxrobust[plot]'") from e
  report = report_or_matrix if isinstance(report_or_matrix, dict) else None
  a = np.asarray(report["a"] if report is not None else report_or_matrix, np.float64)
  if a.ndim != 2 or a.shape[0] != a.shape[1]:
    raise ValueError(f"the transferability matrix must be (N, N); got shape {a.shape}")
  n = a.shape[0]
  t = report["T"] if report is not None else (transferability_T(a) if n >= 2 else float("nan"))
  fig, ax = plt.subplots(figsize=(1.2 * n + 2.2, 1.0 * n + 1.6), dpi=110)
  image = ax.imshow(a, cmap="viridis", vmin=0.0, vmax=100.0)
  for i in range(n):
    for j in range(n):
      # Dark text on the bright end of viridis, light text on the dark end.
      ax.text(j, i, f"{a[i, j]:.1f}", ha="center", va="center", color="black" if a[i, j] > 60 else "white")
  ticks = [str(k + 1) for k in range(n)]
  ax.set_xticks(range(n), ticks)
  ax.set_yticks(range(n), ticks)
  ax.set_xlabel("evaluated member j")
  ax.set_ylabel("crafted on member i")
  fig.colorbar(image, ax=ax, label="accuracy a(i, j) %")
  ax.set_title(title or f"transferability  T = {t:.1f}")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path


__all__ = ["task_success", "ens_achieved", "eot_achieved", "uni_achieved", "transferability_matrix",
           "transferability_T", "ensemble_prediction", "transferability_report", "ensemble_entropy", "roc_auc",
           "entropy_detection_auc", "plot_transferability", "GOALS"]


# -------------------------------------------------------------------------------------------
# Evaluator plug-in
# -------------------------------------------------------------------------------------------

def _config(spec: dict) -> tuple:
  return tuple(sorted((k, repr(v)) for k, v in spec.items() if k not in ("label", "member")))


class EnsembleMembers:
  """Per-member figures of an ensemble's evaluation, as report['ensemble'] (nothing for a single model).

  member_clean_acc: (M,) clean accuracy of each member.
  member_robust_acc[label]: (M,) accuracy of each member at attack a's outputs (crafted on the ensemble, or on
    one member with the spec key ``member``).
  attack_success[label]: ``task_success`` of the ENS task set at a's outputs, A-i = % of points where member i
    is wrong, A-Avg, A-All (Bui et al. 2023, TMLR, section 5: the AT tables' A-All / A-Avg / M_i).
  entropy_auc[label]: ROC-AUC of the entropy of the ensemble's mean probability, a's outputs against the clean
    points (CCE-DM's detector, Bui et al. 2021, AAAI, section 5).
  transferability: ``transferability_report`` when the attacks hold one run crafted on each member (``member:
    0 .. M-1``) and the same attack on the ensemble (same settings, no ``member``): CCE's Table 6.
  """
  name = "ensemble"

  def __call__(self, points) -> dict:
    if points.clean_member_probs is None or points.adv_member_probs is None:
      return {}
    labels = np.asarray(points.labels)
    clean_pred = points.clean_member_probs.argmax(-1)
    out = {"member_clean_acc": (100.0 * (clean_pred == labels).mean(axis=1)).tolist(),
           "member_robust_acc": {}, "attack_success": {}, "entropy_auc": {}}
    for label, probs in points.adv_member_probs.items():
      if probs is None:
        continue
      m = probs.shape[1]
      pred = probs.argmax(-1)
      out["member_robust_acc"][label] = (100.0 * (pred == labels[:m]).mean(axis=1)).tolist()
      out["attack_success"][label] = task_success(ens_achieved(pred, labels[:m]))
      out["entropy_auc"][label] = entropy_detection_auc(points.clean_member_probs[:, :m].mean(0), probs.mean(0))
    report = self._transferability(points, labels)
    if report is not None:
      out["transferability"] = report
    return {"ensemble": out}

  @staticmethod
  def _transferability(points, labels):
    n_members = points.clean_member_probs.shape[0]
    specs = {s["label"]: s for s in points.attacks}
    on_member = {}
    for label, s in specs.items():
      if s.get("member") is not None:
        on_member.setdefault(_config(s), {})[int(s["member"])] = label
    for config, rows in on_member.items():
      ensemble = [l for l, s in specs.items() if s.get("member") is None and _config(s) == config]
      if sorted(rows) != list(range(n_members)) or not ensemble:
        continue
      probs = [points.adv_member_probs[rows[i]] for i in range(n_members)] + [points.adv_member_probs[ensemble[0]]]
      n = min(p.shape[1] for p in probs)
      preds = np.stack([p[:, :n].argmax(-1) for p in probs[:-1]])  # (source i, member j, n)
      report = transferability_report(preds, probs[-1][:, :n], labels[:n])
      report["attacks"] = {"members": [rows[i] for i in range(n_members)], "ensemble": ensemble[0]}
      return report
    return None
