"""Transfer (black-box) attacks: craft on a source model, evaluate on a target model.

    x_adv = A(f_source, x, y, key),   transfer accuracy = mean_i 1[argmax f_target(x_adv)_i = y_i]

The attacker never queries the target (AdAP: PGD-20 from a CE-trained surrogate; SPAT: from a
naturally trained ResNet-101 / LeNet-5).
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust.attacks.registry import get_attack
from jaxrobust.types import Array, LogitsFn

AttackLike = Callable[[LogitsFn, Array, Array, Array], Array] | str


def _resolve(attack: AttackLike, config: Mapping | None):
  if isinstance(attack, str):
    return get_attack(attack, **(config or {}))
  if config:
    raise ValueError("attack config is only used with an attack name; configure the callable instead")
  return attack


def transfer_attack(source_logits_fn: LogitsFn, x: Array, y: Array, key, attack: AttackLike,
                    config: Mapping | None = None) -> Array:
  """x_adv crafted on the source model only. attack: ``attack(logits_fn, x, y, key)`` or a
  registry name (then ``config`` holds its keywords, e.g. {'eps': 8/255, 'steps': 20})."""
  return _resolve(attack, config)(source_logits_fn, x, y, key)


def accuracy(logits_fn: LogitsFn, x: Array, y: Array) -> Array:
  """Scalar accuracy of logits_fn on (x, y) (argmax, or z > 0 for single-logit heads)."""
  return jnp.mean(losses_lib.is_correct(logits_fn(x), y).astype(jnp.float32))


def transfer_report(source_logits_fn: LogitsFn, target_logits_fns: Mapping[str, LogitsFn] | LogitsFn,
                    x: Array, y: Array, key, attack: AttackLike, config: Mapping | None = None) -> dict:
  """Crafts once on the source and reports accuracies (floats in [0, 1]):

  {'source_clean', 'source_adv' (white-box on the source), 'target_clean': {name: acc},
   'target_adv': {name: acc}}. A single target callable is reported under the name 'target'.
  """
  if callable(target_logits_fns):
    target_logits_fns = {"target": target_logits_fns}
  x_adv = transfer_attack(source_logits_fn, x, y, key, attack, config)
  return {
      "source_clean": float(accuracy(source_logits_fn, x, y)),
      "source_adv": float(accuracy(source_logits_fn, x_adv, y)),
      "target_clean": {n: float(accuracy(f, x, y)) for n, f in target_logits_fns.items()},
      "target_adv": {n: float(accuracy(f, x_adv, y)) for n, f in target_logits_fns.items()},
  }


# Transfer is a protocol around an attack, not an attack of its own: nothing to register.
REGISTRY: dict = {}
