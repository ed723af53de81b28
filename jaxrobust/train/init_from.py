"""Starting a run from another run's weights: ``train.init_from=<run dir>``.

Used by AP Max., which Li, Tong, Yang (2023, Section 5) fine-tune from a CE model as Qi et al. (2021)
do, with the head re-initialised (their ``train_eval.py`` l.24-31), and by any fine-tuning protocol;
the Trainer calls ``init_state_from_config`` instead of ``init_state``.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp


def load_run_variables(run_dir: str, step: int | None = None) -> dict:
  """{'params', 'batch_stats'} of the newest (or given) checkpoint of a ``Trainer`` run directory.

  Restores without a target structure, so the source run may use another method/optimiser.
  """
  from jaxrobust.train.checkpoint import restore_variables
  ckpt_dir = os.path.join(os.path.abspath(run_dir), "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise FileNotFoundError(f"init_from={run_dir!r}: no checkpoints folder {ckpt_dir!r}; pass the output_dir "
                            "of a finished training run (e.g. the 'bce' run)")
  try:
    return restore_variables(ckpt_dir, step)[0]
  except FileNotFoundError as e:
    raise FileNotFoundError(f"init_from={run_dir!r}: {e}") from None


def finetune_state(trainer, run_dir: str, *, reinit_head: bool = True):
  """A fresh train state of ``trainer`` whose backbone (and BN statistics) come from ``run_dir``.

  The reference ("AP Max.", ``train_eval.py`` l.24-31) loads the CE model, replaces ``fc`` by a
  new ``Linear(512, 1)`` and starts a new optimiser: we keep the freshly initialised ``head``
  subtree when ``reinit_head`` and re-create the optimiser state. Method state starts empty.
  """
  from jaxrobust import parallel
  src = load_run_variables(run_dir)
  state = jax.device_get(trainer.init_state())
  params = _merge(state.params, src["params"], skip=("head",) if reinit_head else (), where="params")
  batch_stats = _merge(state.batch_stats, src["batch_stats"], skip=(), where="batch_stats")
  state = state.replace(params=params, batch_stats=batch_stats, opt_state=trainer.tx.init(params))
  return parallel.replicate(state, trainer.mesh)


def _merge(fresh, loaded, skip, where):
  """fresh with every leaf replaced by loaded's (same tree and shapes), except top-level ``skip`` keys."""
  if not isinstance(fresh, dict):
    return fresh
  out = {}
  for k, v in fresh.items():
    if k in skip:
      out[k] = v
      continue
    if k not in loaded:
      raise ValueError(f"init_from: the source run has no {where}/{k}; was it trained with the same model?")
    src = loaded[k]
    if isinstance(v, dict):
      out[k] = _merge(v, src, (), f"{where}/{k}")
    else:
      if tuple(jnp.shape(src)) != tuple(v.shape):
        raise ValueError(f"init_from: {where}/{k} has shape {jnp.shape(src)} in the source run but {v.shape} here")
      out[k] = jnp.asarray(src, v.dtype)
  return out


def init_state_from_config(trainer):
  """``trainer.init_state()``, or the fine-tune start when ``cfg['train']['init_from']`` names a run."""
  run_dir = trainer.cfg["train"].get("init_from")
  if not run_dir:
    return trainer.init_state()
  return finetune_state(trainer, run_dir, reinit_head=bool(trainer.cfg["train"].get("init_reinit_head", True)))
