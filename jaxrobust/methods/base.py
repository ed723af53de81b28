"""How training methods plug into the engine.

A method is three pure pieces, all traced inside the one jitted train step:

* ``attack(params, batch_stats, batch, key, method_state, ctx) -> (x_adv, attack_aux)``:
  the attack used in training (``None`` for standard training). It sees the model only
  through ``ctx.eval_forward`` (inference mode: running BN statistics, as the reference code
  runs attacks with ``model.eval()``); ``x_adv`` is treated as a constant by the loss.
* ``loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx)
  -> (loss, LossAux)``: differentiated with respect to ``params``. Forward passes that should
  update BN statistics go through ``ctx.forward`` (train mode), which threads the statistics
  functionally: ``out, batch_stats = ctx.forward(params, batch_stats, x)``.
* ``init_state(info: DatasetInfo) -> pytree``: method state (moving averages, counters).
  It lives in the train state, is updated only through ``LossAux.method_state``, and is
  checkpointed with everything else.

``post_update(params) -> params`` runs after each optimiser step (e.g. SPAT's renormalised
cosine head). ``batches`` declares what the method trains on: 'shuffle' (shuffled passes over the
training set) or 'positive_balanced' (``positive_fraction`` of every batch positives, then
negatives, as AP maximisation needs); ``jaxrobust.train.batches`` builds them. Hyper-parameters
are static: a factory closes over them, so changing data never recompiles.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust.types import Array, ModelOutput, PyTree


class StepContext(NamedTuple):
  """What the engine hands to a method inside the train step.

  forward: (params, batch_stats, x) -> (ModelOutput, batch_stats), train mode.
  eval_forward: (params, batch_stats, x) -> ModelOutput, inference mode.
  step: scalar int32, optimiser steps taken so far.
  epoch: scalar float32, step / steps_per_epoch (fractional), for burn-in schedules.
  num_classes: static int.
  steps_per_epoch: static int, or 0 where the caller has no epochs (tests); with it a method
    can tell the batch index within the epoch (step % steps_per_epoch), e.g. UDR's lambda period.
  member_forward: for an ensemble model (``models.ensemble``), (params, batch_stats, xs (M, B, ...))
    -> member logits (M, B, K), member m on xs[m] only, inference mode (each member's own attack in one
    program); None for a single model.
  """
  forward: Callable[[PyTree, PyTree, Array], tuple[ModelOutput, PyTree]]
  eval_forward: Callable[[PyTree, PyTree, Array], ModelOutput]
  step: Array
  epoch: Array
  num_classes: int
  steps_per_epoch: int = 0
  member_forward: Callable[[PyTree, PyTree, Array], Array] | None = None


class LossAux(NamedTuple):
  """Returned next to the loss: updated BN statistics and method state, and metrics.

  metrics: dict of scalars (mean over the batch); the engine reports them. By convention
  'acc' is clean accuracy and 'adv_acc' accuracy on x_adv when the method computed them.
  """
  batch_stats: PyTree
  method_state: PyTree
  metrics: dict


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What ``init_state`` may depend on: sizes and labels of the training set."""
  num_examples: int
  num_classes: int
  labels: np.ndarray | None = None


def _no_state(info: DatasetInfo) -> PyTree:
  return ()


def _identity(params: PyTree) -> PyTree:
  return params


# The training batches a method can ask for (jaxrobust.train.batches builds them).
BATCHES = ("shuffle", "positive_balanced")


@dataclasses.dataclass(frozen=True)
class Method:
  """A training method: the pieces above, its hyper-parameters and the batches it trains on.

  batches: 'shuffle' (every example once per epoch in a seeded random order, remainder dropped) or
    'positive_balanced' (every batch starts with int(batch_size * positive_fraction) label-1 examples,
    then negatives; the positives are oversampled).
  positive_fraction: share of positives in a positive-balanced batch (config ``data.pos_num`` overrides).
  needs_features: the loss reads the model's latent features (``ModelOutput.features``), so a model
    without them (``models.external``) is refused before training.
  """
  name: str
  loss: Callable[..., tuple[Array, LossAux]]
  attack: Callable[..., tuple[Array, Any]] | None = None
  init_state: Callable[[DatasetInfo], PyTree] = _no_state
  post_update: Callable[[PyTree], PyTree] = _identity
  hparams: dict = dataclasses.field(default_factory=dict)
  batches: str = "shuffle"
  positive_fraction: float = 0.5
  needs_features: bool = False

  def __post_init__(self):
    if self.batches not in BATCHES:
      raise ValueError(f"method {self.name!r}: batches must be one of {BATCHES}; got {self.batches!r}")
    if not 0.0 < self.positive_fraction < 1.0:
      raise ValueError(f"method {self.name!r}: positive_fraction must be in (0, 1); got {self.positive_fraction}")


def logits_fn_for(ctx: StepContext, params, batch_stats):
  """Inference-mode ``x -> logits`` closure for attacks."""
  return lambda x: ctx.eval_forward(params, batch_stats, x).logits


def masked_mean(values: Array, mask: Array | None) -> Array:
  """Mean over examples with mask 1 (all when mask is None)."""
  if mask is None:
    return jnp.mean(values)
  mask = mask.astype(values.dtype)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def accuracy(logits: Array, y: Array) -> Array:
  from jaxrobust.losses import is_correct
  return jnp.mean(is_correct(logits, y).astype(jnp.float32))


def stop(x):
  return jax.lax.stop_gradient(x)
