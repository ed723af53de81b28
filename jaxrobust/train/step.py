"""The pure train step ``(state, batch) -> (state, metrics)`` built from a model, method and optimiser."""

from __future__ import annotations

import itertools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxrobust.methods.base import Method, StepContext
from jaxrobust.models.ensemble import batch_major, is_ensemble, member_major
from jaxrobust.models.microbatch import Microbatch, microbatched
from jaxrobust.train.state import TrainState
from jaxrobust.types import ModelOutput


def _variables(params, batch_stats):
  v = {"params": params}
  if jax.tree.leaves(batch_stats):
    v["batch_stats"] = batch_stats
  return v


FINITE = "finite"  # the metrics key of the step's "loss, terms and gradient norm are finite" flag


def all_finite(metrics: dict) -> jax.Array:
  """() bool: every scalar of ``metrics`` (loss, the method's terms, grad_norm) is finite."""
  flags = [jnp.all(jnp.isfinite(v)) for v in metrics.values() if jnp.issubdtype(jnp.asarray(v).dtype, jnp.inexact)]
  return jnp.stack(flags).all() if flags else jnp.asarray(True)


def make_forwards(module, microbatch: Microbatch = "auto", dropout_key=None):
  """(train_forward, eval_forward) threading BN statistics functionally.

  eval_forward (inference mode, used by training attacks) runs in micro-batches (see
  ``models.microbatch``); train_forward always sees the whole batch (BN statistics couple rows).
  dropout_key: train-mode dropout masks come from fold_in(dropout_key, c), c counting the
  train_forward calls of one traced step, so every forward draws its own masks (as each call of a
  torch module in train mode does) and the same step key gives the same masks. Modules without
  dropout ignore it.
  """
  calls = itertools.count()

  def rngs():
    return {} if dropout_key is None else {"dropout": jax.random.fold_in(dropout_key, next(calls))}

  def eval_forward(params, batch_stats, x) -> ModelOutput:
    variables = _variables(params, batch_stats)
    # micro-batches cut every output along axis 0: an ensemble's member arrays go batch-first meanwhile
    return member_major(microbatched(
        lambda xb: batch_major(module.apply(variables, xb, train=False, return_features=True)), microbatch)(x))

  def train_forward(params, batch_stats, x):
    if not jax.tree.leaves(batch_stats):
      out = module.apply({"params": params}, x, train=True, return_features=True, rngs=rngs())
      return out, batch_stats
    out, updates = module.apply(_variables(params, batch_stats), x, train=True,
                                return_features=True, mutable=["batch_stats"], rngs=rngs())
    return out, updates["batch_stats"]

  return train_forward, eval_forward


def make_member_forward(module, microbatch: Microbatch = "auto"):
  """(params, batch_stats, xs (M, B, ...)) -> (M, B, K): ensemble member m on xs[m], inference mode;
  None for a model that is not an ensemble."""
  if not is_ensemble(module):
    return None

  def member_forward(params, batch_stats, xs):
    variables = _variables(params, batch_stats)
    # micro-batches cut the batch axis (axis 1 here), so rows go first through the chunking
    def rows_first(xb):
      z = module.apply(variables, jnp.moveaxis(xb, 0, 1), train=False, member_inputs=True)
      return jnp.moveaxis(z, 0, 1)
    return jnp.moveaxis(microbatched(rows_first, microbatch)(jnp.moveaxis(xs, 1, 0)), 1, 0)
  return member_forward


def make_context(module, step, steps_per_epoch: int, num_classes: int, dropout_key=None) -> StepContext:
  train_forward, eval_forward = make_forwards(module, dropout_key=dropout_key)
  epoch = step.astype(jnp.float32) / float(max(steps_per_epoch, 1))
  return StepContext(forward=train_forward, eval_forward=eval_forward, step=step, epoch=epoch,
                     num_classes=num_classes, steps_per_epoch=int(steps_per_epoch),
                     member_forward=make_member_forward(module))


def make_train_step(module, method: Method, tx: optax.GradientTransformation, *,
                    steps_per_epoch: int, num_classes: int,
                    augment: Callable | None = None) -> Callable:
  """Returns ``train_step(state, batch) -> (state, metrics)``; jit it (with shardings) once.

  batch: {'image': (B,H,W,C) float32 in [0,1], 'label': (B,) int32, 'index': (B,) int32,
  optionally 'mask': (B,) float32}. ``augment(key, images) -> images`` runs first if given.
  """

  def train_step(state: TrainState, batch):
    key = jax.random.wrap_key_data(state.key) if state.key.dtype == jnp.uint32 else state.key
    key, aug_key, attack_key, loss_key = jax.random.split(key, 4)
    if augment is not None:
      batch = dict(batch, image=augment(aug_key, batch["image"]))
    # A key of its own for dropout, folded from loss_key so the other keys (and so every run without
    # dropout) are unchanged.
    ctx = make_context(module, state.step, steps_per_epoch, num_classes,
                       dropout_key=jax.random.fold_in(loss_key, 0x64726F70))

    if method.attack is not None:
      x_adv, attack_aux = method.attack(state.params, state.batch_stats, batch, attack_key,
                                        state.method_state, ctx)
      x_adv = jax.lax.stop_gradient(x_adv)
      attack_aux = jax.lax.stop_gradient(attack_aux)
    else:
      x_adv, attack_aux = None, None

    def loss_fn(params):
      return method.loss(params, state.batch_stats, batch, x_adv, attack_aux, state.method_state,
                         loss_key, ctx)

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = method.post_update(optax.apply_updates(state.params, updates))
    metrics = dict(aux.metrics)
    metrics.setdefault("loss", loss)
    metrics["grad_norm"] = optax.tree.norm(grads)
    # One device-side flag: the loop reads it with the metrics it already fetches (no extra host sync).
    metrics[FINITE] = all_finite(metrics)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=aux.batch_stats,
                              opt_state=opt_state, key=jax.random.key_data(key),
                              method_state=aux.method_state)
    return new_state, metrics

  return train_step
