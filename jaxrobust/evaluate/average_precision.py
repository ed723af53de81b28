"""The robust-AP protocol of Li, Tong & Yang (2023) for single-logit models, on the one evaluator.

Clean AP and robust AP (``jaxrobust.evaluate.metrics``: AP as in sklearn, ties included) of every
point of a split, each point perturbed independently by attacks in inference mode (section 5.1):

* ``PGD_BCE`` (the reference code's ``val_classification``; Table 2): PGD-Linf on BCE(sigmoid z, y),
  10 steps, step 0.007, eps 0.031, start x + 0.001 N(0, I).
* ``APGD_CE`` (Table 3; not in the released code): APGD-CE (Croce & Hein 2020) on the two-class
  logits [0, z] (softmax([0, z])_1 = sigmoid z, so CE = BCE), 10 iterations, eps 8/255, and
  ``best_loss=True``: the highest-loss iterate of every point, not AutoAttack's "first point that
  flips the label, else clean x", because AP depends on scores, not on flipped decisions.
* ``transfer_spec`` (Table 4; not released): PGD-20, step 0.003, eps 8/255, BCE, crafted on a
  CE-trained *source* model (same 0.001 N start as the code's PGD), scored by the target.

All three are registry attacks (``pgd``, ``apgd_ce``) with the evaluator's spec keys
``two_class_logits`` and ``source`` (``jaxrobust.evaluate.specs``). The short forms of configs
(``eval.ap_attacks``) are completed by ``protocol_spec``: 'pgd' means PGD on BCE from the 0.001 N
start, 'apgd_ce' means 10 iterations, best loss, on [0, z].

Scores are the raw logits z by default: sigmoid is monotone, so the ranking is the same, but float32
sigmoid saturates at 1.0 for z > ~17 and creates ties the model does not make. ``score='sigmoid'``
ranks by float32 sigmoid(z) like the reference's ``average_precision_score(y, sigmoid(z))``.

``worst_case_ap``: per point the most damaging of the attacks' scores (lowest for positives, highest
for negatives). Model selection (section 5.1): the epoch with the best validation robust AP (best
clean AP for CE / AP maximisation), first best on ties (``jaxrobust.evaluate.selection``).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust.evaluate import metrics as metrics_lib
from jaxrobust.evaluate.metrics import SCORES, average_precision, inverted_ranking_ap  # noqa: F401
from jaxrobust.evaluate.robust import RobustEvaluator
from jaxrobust.evaluate.selection import select_best
from jaxrobust.evaluate.specs import spec_label, two_class_logits  # noqa: F401
from jaxrobust.types import ApplyFn

# PGD's start of the reference code: x + 0.001 N(0, I), not a uniform draw in the ball.
_BCE_PGD = {"loss": "bce", "init": "normal", "init_scale": 0.001}
_APGD_ON_ONE_LOGIT = {"n_iter": 10, "best_loss": True, "two_class_logits": True}

PGD_BCE = {"name": "pgd", "label": "PGD-10", "eps": 0.031, "steps": 10, "step_size": 0.007, **_BCE_PGD}
APGD_CE = {"name": "apgd_ce", "label": "APGD-CE-10", "eps": 8 / 255, **_APGD_ON_ONE_LOGIT}

# Keys of the older transfer form {'name': 'transfer', 'source_apply': f, 'source_variables': v}.
_OLD_SOURCE_KEYS = ("source_apply", "source_variables")


def protocol_spec(spec: dict) -> dict:
  """A spec of this protocol with its defaults filled in, as a registry spec the evaluator runs.

  'pgd' -> PGD on BCE from x + 0.001 N(0, I); 'apgd_ce' -> 10 iterations, best loss, on [0, z];
  'transfer' with source_apply / source_variables -> 'pgd' (BCE) with ``source``. Keys the spec sets
  win; other attacks pass through unchanged. The label is the one of the spec as given.
  """
  out = dict(spec, label=spec_label({k: v for k, v in spec.items() if k not in _OLD_SOURCE_KEYS}))
  name = out["name"]
  if name == "transfer":
    if any(out.get(k) is None for k in _OLD_SOURCE_KEYS):
      raise ValueError("a 'transfer' spec needs source_apply and source_variables (see transfer_spec)")
    out["source"] = (out.pop("source_apply"), out.pop("source_variables"))
    out["name"] = name = "pgd"
  if name == "pgd":
    return {**_BCE_PGD, **out}
  if name == "apgd_ce":
    return {**_APGD_ON_ONE_LOGIT, **out}
  return out


def transfer_spec(source_apply: ApplyFn, source_variables, *, label: str = "transfer PGD-20",
                  eps: float = 8 / 255, steps: int = 20, step_size: float = 0.003) -> dict:
  """A black-box spec: PGD-BCE crafted on ``source_apply(source_variables, x)`` (a CE-trained model)."""
  return {"name": "pgd", "label": label, "eps": eps, "steps": steps, "step_size": step_size, **_BCE_PGD,
          "source": (source_apply, source_variables)}


def paper_attacks(transfer_source: tuple | None = None, apgd: bool = True) -> list[dict]:
  """PGD-10 (always), APGD-CE-10 and, given (source_apply, source_variables), the transfer attack."""
  out = [dict(PGD_BCE)] + ([dict(APGD_CE)] if apgd else [])
  if transfer_source is not None:
    out.append(transfer_spec(*transfer_source))
  return out


class APEvaluator:
  """Clean and adversarial scores of every point of a split, and the AP report of this protocol.

  apply(variables, x) -> (B, 1) or (B,) logits (inference mode). The pass is ``RobustEvaluator``'s
  (sharded, last batch padded and masked), with one program per attack spec and eps, as the protocol's
  numbers were measured (``trace_eps=False``).
  """

  def __init__(self, apply: ApplyFn, *, mesh=None):
    self.apply = apply
    self.evaluator = RobustEvaluator(apply, mesh=mesh, trace_eps=False)
    self.mesh = self.evaluator.mesh

  def points(self, variables, dataset, attacks: Sequence[dict] = (), *, batch_size: int = 256, key=None,
             max_examples: int | None = None) -> metrics_lib.Points:
    """``RobustEvaluator.points`` for the protocol's specs; refuses a multi-class model."""
    x0 = jax.ShapeDtypeStruct((1,) + tuple(dataset.image_shape), jnp.float32)
    shape = jax.eval_shape(self.apply, variables, x0).shape
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
      raise ValueError(f"AP evaluation needs a single-logit model; got logits of shape {shape}")
    specs = [protocol_spec(s) for s in attacks]
    labels = [s["label"] for s in specs]
    if "clean" in labels or "labels" in labels:
      raise ValueError(f"attack labels must be unique and not 'clean'/'labels'; got {labels}")
    return self.evaluator.points(variables, dataset, specs, batch_size=batch_size, key=key,
                                 max_examples=max_examples, progress=False)

  def scores(self, variables, dataset, attacks: Sequence[dict] = (), *, batch_size: int = 256, key=None,
             max_examples: int | None = None) -> dict:
    """{'labels': (n,), 'clean': (n,) logits, label: (n,) adversarial logits, 'seconds': {...}}."""
    p = self.points(variables, dataset, attacks, batch_size=batch_size, key=key, max_examples=max_examples)
    return _scores(p)

  def evaluate(self, variables, dataset, attacks: Sequence[dict] = (), *, batch_size: int = 256, key=None,
               max_examples: int | None = None, score: str = "logit", keep_scores: bool = False) -> dict:
    """{'n', 'n_pos', 'positive_rate', 'clean_ap', 'clean_acc', 'robust_ap': {label}, 'robust_acc': {label},
    'worst_case_ap', 'inverted_floor_ap', 'seconds'} (AP in [0, 1]; accuracy of the 1[z > 0] decision,
    at the attack's output alone)."""
    metrics = (metrics_lib.PositiveRate(), metrics_lib.AveragePrecision(score), metrics_lib.CleanAccuracy(),
               metrics_lib.AdversarialAccuracy("robust_acc"), metrics_lib.WorstCaseAP(score))
    p = self.points(variables, dataset, attacks, batch_size=batch_size, key=key, max_examples=max_examples)
    report = {"n": p.n, **metrics_lib.compute(p, metrics), "seconds": _seconds(p), "score": score,
              "attacks": [{k: v for k, v in s.items() if k not in _OLD_SOURCE_KEYS} for s in p.attacks]}
    if keep_scores:
      report["scores"] = _scores(p)
    return report


def _seconds(p: metrics_lib.Points) -> dict:
  return {"clean": p.seconds["clean"], **{l: p.seconds[l] for l in p.attack_labels}}


def _scores(p: metrics_lib.Points) -> dict:
  return {"labels": p.labels, "clean": p.clean_score, **p.adv_score, "seconds": _seconds(p)}


def evaluate_ap(apply: ApplyFn, variables, dataset, attacks: Sequence[dict] = (), **kw) -> dict:
  """One-shot ``APEvaluator(apply, mesh=...).evaluate(variables, dataset, attacks, ...)``."""
  mesh = kw.pop("mesh", None)
  return APEvaluator(apply, mesh=mesh).evaluate(variables, dataset, attacks, **kw)


def select_best_epoch(records: Sequence[dict], metric: str = "val_robust_ap") -> dict:
  """The record (a dict with 'epoch' and ``metric``) with the largest finite ``metric``, the first on
  ties (``jaxrobust.evaluate.selection.select_best``). Use 'val_robust_ap' for adversarial methods,
  'val_clean_ap' for CE / AP maximisation."""
  return select_best(records, metric)


__all__ = ["average_precision", "inverted_ranking_ap", "APEvaluator", "evaluate_ap", "select_best_epoch",
           "paper_attacks", "protocol_spec", "transfer_spec", "two_class_logits", "PGD_BCE", "APGD_CE"]
