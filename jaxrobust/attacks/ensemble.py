"""Ensembles stacked along a leading member axis: attack each member, or the ensemble as a whole.

``stacked_params`` is a params pytree whose every leaf has a leading axis of size M (e.g. from
``jax.vmap(model.init)(keys, x)`` or ``jax.tree.map(lambda *a: jnp.stack(a), *params)``).

    mean_logits:  z(x) = (1/M) sum_m f_m(x)
    mean_probs:   z(x) = log((1/M) sum_m softmax(f_m(x)))   (so softmax(z) is the mean probability;
                  for single-logit heads z = logit((1/M) sum_m sigmoid(f_m(x))))
"""

from __future__ import annotations

import jax

from jaxrobust.attacks.per_example import example_keys
from jaxrobust.models.ensemble import COMBINE as MODES, combine_member_logits
from jaxrobust.types import ApplyFn, Array, LogitsFn, PyTree



def member_keys(key, num_members: int):
  """Member m uses fold_in(key, m)."""
  return example_keys(key, num_members)


def attack_ensemble_members(apply: ApplyFn, stacked_params: PyTree, x: Array, y: Array, key,
                            attack) -> Array:
  """vmap of ``attack(lambda x: apply(params_m, x), x, y, fold_in(key, m))`` over the M members.

  Returns (M, B, ...): member m's adversarials against member m alone. One compiled program.
  """
  m = jax.tree.leaves(stacked_params)[0].shape[0]

  def one(p, k):
    return attack(lambda xx: apply(p, xx), x, y, k)
  return jax.vmap(one)(stacked_params, member_keys(key, m))


def ensemble_logits_fn(apply: ApplyFn, stacked_params: PyTree, mode: str = "mean_logits") -> LogitsFn:
  """x -> ensemble logits (B, K) (or (B,) / (B, 1) like the members for single-logit heads), from any
  ``apply`` and params stacked on a leading member axis (``models.ensemble.combine_member_logits``). A jaxrobust
  ``Ensemble`` model (``get_model(..., members=M)``) is the same as one model: use its ``make_apply``."""
  if mode not in MODES:
    raise ValueError(f"unknown ensemble mode {mode!r}; expected one of {MODES}")

  def logits_fn(x):
    return combine_member_logits(jax.vmap(lambda p: apply(p, x))(stacked_params), mode)  # (M, B, ...) -> (B, ...)
  return logits_fn


# Helpers, not attacks: nothing to register.
REGISTRY: dict = {}
