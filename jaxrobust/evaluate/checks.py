"""Gradient-masking checks run inside the evaluator.

Gradient masking (obfuscated gradients, Athalye, Carlini & Wagner 2018) makes white-box attacks
fail while the model is not robust; the checks follow the flags of the AutoAttack code (Croce &
Hein 2020). Each check returns ``{'name', 'flagged': bool, 'value', 'message'}``; the evaluator
reports them all and prints the flagged ones:

* zero_gradients: a fraction of points whose input gradient of CE is exactly zero (masked or
  saturated gradients make gradient attacks stall).
* randomized: two forward passes on the same input disagree (use EoT / AutoAttack 'rand').
* probabilities: outputs look like probabilities (rows in [0, 1] summing to 1): attacks
  expect logits; a softmax inside the model flattens CE gradients.
* black_box_beats_white_box: a black-box attack (the registry's ``box='black'``, or any attack
  crafted on a ``source`` surrogate) finds more adversarial points than every white-box one.
* autoattack_beats_white_box: a white-box attack leaves more than ``margin`` more points robust than
  AutoAttack, whose DLR and Square stages do not need well-scaled CE gradients (a model with logits
  scaled by 1e4 keeps PGD-CE at its clean accuracy while AutoAttack breaks it).
* square_beats_white_box: on the sample batch, each plain white-box spec is rerun next to AutoAttack's
  Square stage (Andriushchenko et al. 2020, the same eps and norm); Square, which uses no gradients,
  breaking more than ``margin`` more points than the gradient attack flags masking. Runs whether or not
  AutoAttack is in the evaluation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust import losses as losses_lib


def zero_gradients(apply, variables, x, y, *, threshold: float = 0.0) -> dict:
  """Fraction of points with an all-zero input gradient of CE (or BCE for one logit)."""
  def total(xx):
    logits = apply(variables, xx)
    if logits.ndim == 1 or logits.shape[-1] == 1:
      return jnp.sum(losses_lib.binary_cross_entropy(logits, y))
    return jnp.sum(losses_lib.cross_entropy(logits, y))
  g = np.asarray(jax.jit(jax.grad(total))(x))
  frac = float(np.mean(np.all(g.reshape(len(g), -1) == 0, axis=1)))
  return {"name": "zero_gradients", "flagged": frac > threshold, "value": frac,
          "message": f"{100 * frac:.1f}% of points have an exactly zero input gradient; gradient-based "
                     "attacks cannot move them (gradient masking?). Use Square / transfer attacks."}


def randomized(apply, variables, x, *, atol: float = 1e-6) -> dict:
  """Two identical forward passes that disagree mean the defence is randomised."""
  a = np.asarray(apply(variables, x))
  b = np.asarray(apply(variables, x))
  diff = float(np.max(np.abs(a - b))) if a.size else 0.0
  return {"name": "randomized", "flagged": diff > atol, "value": diff,
          "message": "the model's output changes between identical calls; evaluate with "
                     "AutoAttack version='rand' (EoT) instead of the deterministic attacks."}


def probabilities(apply, variables, x, *, atol: float = 1e-4) -> dict:
  """Outputs in [0, 1] whose rows sum to 1 are probabilities, not logits."""
  z = np.asarray(apply(variables, x))
  if z.ndim != 2 or z.shape[1] < 2:
    return {"name": "probabilities", "flagged": False, "value": 0.0, "message": ""}
  looks = bool(np.all(z >= -atol) and np.all(z <= 1 + atol) and np.allclose(z.sum(1), 1.0, atol=atol))
  return {"name": "probabilities", "flagged": looks, "value": float(looks),
          "message": "the model outputs probabilities (rows in [0,1] summing to 1); attacks and losses "
                     "expect logits: remove the final softmax (CE on probabilities masks gradients)."}


def black_box_beats_white_box(robust_acc: dict, black_box_labels, white_box_labels,
                              *, margin: float = 0.0) -> dict:
  """Flag when a black-box attack's robust accuracy is below every white-box one."""
  bb = [robust_acc[l] for l in black_box_labels if l in robust_acc]
  wb = [robust_acc[l] for l in white_box_labels if l in robust_acc]
  if not bb or not wb:
    return {"name": "black_box_beats_white_box", "flagged": False, "value": None,
            "message": "needs at least one black-box and one white-box attack"}
  gap = min(wb) - min(bb)
  return {"name": "black_box_beats_white_box", "flagged": gap > margin, "value": gap,
          "message": f"a black-box attack is stronger than every white-box attack by {100 * gap:.2f} points: "
                     "the white-box gradients are likely masked."}


def autoattack_beats_white_box(robust_acc: dict, white_box_labels, autoattack_labels,
                               *, margin: float = 0.05) -> dict:
  """Flag when a white-box attack's robust accuracy exceeds AutoAttack's by more than ``margin``."""
  wb = {l: robust_acc[l] for l in white_box_labels if l in robust_acc}
  aa = [robust_acc[l] for l in autoattack_labels if l in robust_acc]
  if not wb or not aa:
    return {"name": "autoattack_beats_white_box", "flagged": False, "value": None,
            "message": "needs AutoAttack and at least one white-box attack"}
  weakest = max(wb, key=wb.get)
  gap = wb[weakest] - min(aa)
  return {"name": "autoattack_beats_white_box", "flagged": gap > margin, "value": gap,
          "message": f"AutoAttack leaves {100 * gap:.2f} points fewer robust than {weakest!r}: that attack's "
                     "gradients are likely masked (e.g. saturated CE on very large logits); report AutoAttack."}


# Spec keys under which rerunning the spec on the sample would not be the evaluated attack.
_NOT_RERUN = ("source", "two_class_logits", "step_size_ratio", "eps_curve", "member")


def square_beats_white_box(apply, variables, x, y, attack_specs, *, n_queries: int = 1000, max_points: int = 64,
                           margin: float = 0.05, key=None) -> dict:
  """Reruns each plain white-box spec (linf / l2 with an eps) and AutoAttack's Square stage at its eps on
  the first ``max_points`` of the sample (x, y); flags when Square's robust accuracy is lower by more than
  ``margin``.

  n_queries: Square's budget (AutoAttack's standard run uses 5000; fewer keeps the check cheap and only
  makes Square weaker, so a flag stays meaningful).
  """
  from jaxrobust.attacks.registry import get_attack
  from jaxrobust.evaluate.specs import attack_kwargs
  x, y = x[:max_points], y[:max_points]
  logits_fn = jax.tree_util.Partial(apply, variables)
  key = jax.random.PRNGKey(0) if key is None else key
  clean_ok = np.asarray(losses_lib.is_correct(logits_fn(x), y))
  worst, value = None, None
  for i, spec in enumerate(attack_specs):
    kw = attack_kwargs(spec)
    norm = kw.get("norm", "linf")
    if (is_black_box(spec) or spec["name"] in _MIXED or any(k in spec for k in _NOT_RERUN)
        or kw.get("eps") is None or norm not in ("linf", "l2")):
      continue
    k_wb, k_sq = jax.random.split(jax.random.fold_in(key, i))
    robust = lambda xa: float(np.mean(clean_ok & np.asarray(losses_lib.is_correct(logits_fn(xa), y))))
    wb = robust(get_attack(spec["name"], **kw)(logits_fn, x, y, k_wb))
    sq = robust(get_attack("square", eps=kw["eps"], norm=norm, n_queries=n_queries)(logits_fn, x, y, k_sq))
    if value is None or wb - sq > value:
      worst, value = spec.get("label", spec["name"]), wb - sq
  if value is None:
    return {"name": "square_beats_white_box", "flagged": False, "value": None,
            "message": "needs a white-box attack with eps and norm linf or l2"}
  return {"name": "square_beats_white_box", "flagged": value > margin, "value": value,
          "message": f"Square ({n_queries} queries, no gradients) leaves {100 * value:.2f} points fewer robust than "
                     f"{worst!r} on the sample batch: the white-box gradients are likely masked."}


def is_black_box(spec: dict) -> bool:
  """Crafted without the evaluated model's gradients: on a surrogate (``source``), or a query attack."""
  if spec.get("source") is not None:
    return True
  from jaxrobust.attacks.registry import attack_info
  return attack_info(spec["name"]).box == "black"


# A cascade that contains a black-box stage (Square) is neither side of the comparison.
_MIXED = frozenset({"autoattack"})


def run_checks(apply, variables, x, y, robust_acc: dict | None = None, attack_specs=(), *,
               square_queries: int = 1000) -> list[dict]:
  """All checks on a sample batch (x, y) plus, when results are given, the comparisons of every white-box
  attack with the black-box ones, with AutoAttack and with Square rerun on the sample."""
  out = [zero_gradients(apply, variables, x, y), randomized(apply, variables, x),
         probabilities(apply, variables, x)]
  if robust_acc:
    specs = {s.get("label", s["name"]): s for s in attack_specs if s["name"] not in _MIXED}
    bb = [l for l, s in specs.items() if is_black_box(s)]
    wb = [l for l, s in specs.items() if not is_black_box(s)]
    aa = [s.get("label", s["name"]) for s in attack_specs if s["name"] in _MIXED]
    out.append(black_box_beats_white_box(robust_acc, bb, wb))
    out.append(autoattack_beats_white_box(robust_acc, wb, aa))
    out.append(square_beats_white_box(apply, variables, x, y, [specs[l] for l in wb], n_queries=square_queries))
  return out
