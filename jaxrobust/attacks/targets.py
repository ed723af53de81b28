"""Targeted modes for every attack that has ``targeted``: who picks the target classes.

An attack with ``targeted=True`` reads ``y`` as the target classes, so a caller had to build them.
``get_attack(name, target=...)`` (``registry.py``) does it for any attack whose options include
``targeted``: the configured attack computes the clean logits once, picks one target per example, and
runs the attack with ``targeted=True`` and ``y = targets`` (``TargetedAttack``). The selectors:

* ``'random'``: uniform over the K - 1 classes other than y, drawn per example from
  ``fold_in(k_i, TARGET_SALT)`` (``k_i`` the example's key, ``per_example.example_keys``), so a point gets
  the same target whatever batch it sits in, and the attack's own draws (from ``k_i``) are unchanged.
* ``'least_likely'``: argmin of the clean logits (Kurakin et al. 2017's least-likely class). It is y when the
  model ranks the true class last; the attack then pushes towards y, and the point stays robust.
* ``'most_likely_wrong'``: argmax of the clean logits over the classes other than y: the second best for a
  correctly classified point, the clean prediction for a misclassified one; never y.
* a callable ``fn(logits, y) -> targets``: logits (B, K) clean logits, y (B,) labels, targets (B,) ints.

Logits of a single-logit head ((B,) or (B, 1), z) are read as the two classes [0, z], as the rest of the
library does (``specs.two_class_logits``): every selector then sees (B, K) logits.

Success: the attack's output x_adv is a point of the usual threat model, so robust accuracy keeps its
definition (robust iff the prediction at x_adv is still y; a point moved to a wrong class other than its
target counts as broken). The evaluator also reports the targeted success rate (prediction == target).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxrobust.attacks.per_example import example_keys, fold_keys
from jaxrobust.attacks.transforms import combine_logits
from jaxrobust.types import Array

SELECTORS = ("random", "least_likely", "most_likely_wrong")

# Folded into each example's key for its random target: far from restart / target numbers (0, 1, 2, ...)
# that attacks fold into the same keys.
TARGET_SALT = 0x7A26E7


def class_logits(logits: Array) -> Array:
  """(B, K) logits; a single-logit head's (B,) or (B, 1) z becomes [0, z]."""
  if logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
    z = logits.reshape(logits.shape[0])
    return jnp.stack([jnp.zeros_like(z), z], axis=1)
  if logits.ndim != 2:
    raise ValueError(f"target selection needs logits of shape (batch, classes); got {logits.shape}")
  return logits


def random_targets(logits: Array, y: Array, key) -> Array:
  """Uniform over the K - 1 classes != y_i, one draw per example from fold_in(k_i, TARGET_SALT)."""
  k = logits.shape[1]
  keys = fold_keys(example_keys(key, y.shape[0]), TARGET_SALT)
  r = jax.vmap(lambda ki: jax.random.randint(ki, (), 0, k - 1))(keys)
  y = y.astype(jnp.int32)
  return (r + (r >= y)).astype(jnp.int32)


def least_likely_targets(logits: Array, y: Array, key=None) -> Array:
  """argmin_k logits_k (ties: the lowest class)."""
  return jnp.argmin(logits, axis=1).astype(jnp.int32)


def most_likely_wrong_targets(logits: Array, y: Array, key=None) -> Array:
  """argmax over k != y of logits_k (ties: the lowest class)."""
  wrong = jnp.where(jax.nn.one_hot(y, logits.shape[1], dtype=bool), -jnp.inf, logits)
  return jnp.argmax(wrong, axis=1).astype(jnp.int32)


_BUILTIN = {"random": random_targets, "least_likely": least_likely_targets,
            "most_likely_wrong": most_likely_wrong_targets}


def check_target(target) -> None:
  """A selector name of ``SELECTORS`` or a callable; anything else raises ValueError naming the nearest."""
  if callable(target):
    return
  if isinstance(target, str) and target in _BUILTIN:
    return
  from jaxrobust import registries
  near = registries.nearest(str(target), SELECTORS) if isinstance(target, str) else None
  hint = f" (did you mean {near!r}?)" if near else ""
  raise ValueError(f"unknown target {target!r}{hint}; expected one of {', '.join(map(repr, SELECTORS))} "
                   "or a function fn(logits, y) -> targets")


def target_name(target) -> str:
  """How a target shows in labels and reports: the selector's name, or the function's name."""
  if isinstance(target, str):
    return target
  return getattr(target, "__name__", None) or type(target).__name__


def select_targets(target, logits: Array, y: Array, key=None) -> Array:
  """(B,) int32 target classes of ``target`` (a name of ``SELECTORS`` or ``fn(logits, y)``) for clean logits."""
  check_target(target)
  logits = class_logits(logits)
  y = jnp.asarray(y)
  if isinstance(target, str):
    return _BUILTIN[target](logits, y, key)
  t = jnp.asarray(target(logits, y))
  if t.shape != y.shape or not jnp.issubdtype(t.dtype, jnp.integer):
    raise ValueError(f"target function {target_name(target)!r} must return ({y.shape[0]},) integer classes; "
                     f"got shape {t.shape}, dtype {t.dtype}")
  return t.astype(jnp.int32)


class TargetedAttack:
  """``attack(logits_fn, x, y, key) -> x_adv`` that picks targets and runs a targeted attack on them.

  attack: the configured attack with ``targeted=True`` (reads its ``y`` as targets).
  target: a name of ``SELECTORS`` or ``fn(logits, y) -> targets``.
  members: the model returns member logits (M, B, K) (``AttackInfo.model_output``); targets are picked from
    the mean-probability ensemble log((1/M) sum_m softmax(z_m)).
  ``run`` also returns the targets (the evaluator's targeted success rate); calling it returns x_adv only.
  Pure and traceable: works inside ``jax.jit`` like the attack it wraps.
  """

  def __init__(self, attack: Callable, target, members: bool = False):
    check_target(target)
    self.attack = attack
    self.target = target
    self.members = members

  def targets(self, logits_fn, x: Array, y: Array, key) -> Array:
    """(B,) targets from the clean logits logits_fn(x) (computed once, no gradient)."""
    clean = jax.lax.stop_gradient(logits_fn(x))
    if self.members:
      clean = combine_logits(clean, "mean_probs")
    return select_targets(self.target, clean, y, key)

  def run(self, logits_fn, x: Array, y: Array, key) -> tuple[Array, Array]:
    """(x_adv, targets)."""
    t = self.targets(logits_fn, x, y, key)
    return self.attack(logits_fn, x, t, key), t

  def __call__(self, logits_fn, x: Array, y: Array, key) -> Array:
    return self.run(logits_fn, x, y, key)[0]

  def __repr__(self) -> str:
    return f"TargetedAttack(target={target_name(self.target)!r})"
