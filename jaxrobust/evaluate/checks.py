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


def is_black_box(spec: dict) -> bool:
  """Crafted without the evaluated model's gradients: on a surrogate (``source``), or a query attack."""
  if spec.get("source") is not None:
    return True
  from jaxrobust.attacks.registry import attack_info
  return attack_info(spec["name"]).box == "black"


# A cascade that contains a black-box stage (Square) is neither side of the comparison.
_MIXED = frozenset({"autoattack"})


def run_checks(apply, variables, x, y, robust_acc: dict | None = None, attack_specs=()) -> list[dict]:
  """All checks on a sample batch (x, y) plus the attack comparison when results are given."""
  out = [zero_gradients(apply, variables, x, y), randomized(apply, variables, x),
         probabilities(apply, variables, x)]
  if robust_acc:
    specs = {s.get("label", s["name"]): s for s in attack_specs if s["name"] not in _MIXED}
    bb = [l for l, s in specs.items() if is_black_box(s)]
    wb = [l for l, s in specs.items() if not is_black_box(s)]
    out.append(black_box_beats_white_box(robust_acc, bb, wb))
  return out
