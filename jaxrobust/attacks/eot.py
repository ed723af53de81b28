"""EoT-PGD: PGD on TA-MOO's EoT task set (Bui et al. 2023, section 4; Athalye et al. 2018).

With m transformations t_1..t_m (``transforms.py``; the thesis's seven I H V C G B R by default), task i is

    f_i(x') = E_p L(f(t_i(x'; p)), y)

and EoT-PGD (the thesis's "Uniform" baseline ``TAM:pgd.py::PGD_Linf_EoT``) is PGD on sum_i f_i (``task_reduce``
'sum'; 'mean' divides by m, which a sign step does not see). At every step each example draws a fresh
factor p shared by its m transformations ('stochastic'; 'deterministic' is p = 1) and, with
``eot_iter`` = n > 1, the gradient is the mean over n draws. One draw per step is the thesis's setting.

Keys: the start of example i comes from k_i exactly as in ``pgd`` (so with only the identity
transformation EoT-PGD *is* PGD, bit for bit); the draw e of step t from fold_in(fold_in(k_i, EOT_FOLD),
t * eot_iter + e).

For a randomised model of your own (dropout or noise at inference), or for Athalye's EoT over a distribution
of transformations, use ``pgd(..., randomized=True, eot_iter=n)`` with ``logits_fn(x, keys)`` (e.g.
``transforms.transformed_model(logits_fn, 'all', combine='sample')``): torchattacks' EOTPGD.

``eot_task_losses`` -> (B, m) per-task losses, the objective vector the multi-objective attacks (MOO,
TA-MOO, MinMax) weight per example.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust.attacks import transforms as tr
from jaxrobust.attacks.model_calls import check_logits, validate
from jaxrobust.attacks.pgd import pgd_loop
from jaxrobust.attacks.registry import AttackInfo
from jaxrobust.types import Array, LogitsFn

TASK_REDUCE = ("sum", "mean")


def eot_task_losses(logits_fn: LogitsFn, x_adv: Array, x: Array, y: Array, keys, *, transforms="all",
                    setting: str = "stochastic", loss="ce") -> tuple[Array, Array]:
  """(losses (B, m), logits (m, B, K)): loss of task i = L(f(t_i(x_adv; p)), y) for one shared draw p per
  example from ``keys`` (a key or (B,) keys). A loss that needs the clean logits reads f(t_i(x; p)),
  the same transformation of the clean point."""
  attack_loss = losses_lib.get_attack_loss(loss)
  z = tr.task_logits(logits_fn, x_adv, keys, transforms, setting)
  check_logits(z[0], y)
  ref = (jax.lax.stop_gradient(tr.task_logits(logits_fn, x, keys, transforms, setting))
         if attack_loss.needs_reference else None)
  per_task = jax.vmap(lambda zi, ri: attack_loss(zi, y, ri), in_axes=(0, 0 if ref is not None else None))(z, ref)
  return per_task.T, z


def eot_pgd(logits_fn: LogitsFn, x: Array, y: Array, key, *, eps, step_size, steps: int,
            transforms: str | Sequence[str] = "all", setting: str = "stochastic", eot_iter: int = 1,
            task_reduce: str = "sum", norm="linf", loss="ce", init: str = "uniform", init_scale: float = 0.001,
            restarts: int = 1, targeted: bool = False, early_stop: bool = False, unroll=None,
            restart_select: str = "loss") -> Array:
  """PGD on sum_i E_p L(f(t_i(x'; p)), y). Options as ``pgd``, plus

  transforms: names or the thesis's letters (``transforms.ALL``; 'all' = the seven).
  setting: 'stochastic' (p ~ U(0, 1), fresh per example and step) or 'deterministic' (p = 1).
  eot_iter: draws of p per step, gradients averaged (static).
  task_reduce: 'sum' (the spec) or 'mean' over the m tasks.
  early_stop / restart_select read 'fooled' on the mean of the m tasks' logits.
  """
  validate(x, y, eps=eps, step_size=step_size)
  transforms = tr.canonical_transforms(transforms)
  if setting not in tr.SETTINGS:
    raise ValueError(f"unknown EoT setting {setting!r}; expected one of {tr.SETTINGS}")
  if task_reduce not in TASK_REDUCE:
    raise ValueError(f"unknown task_reduce {task_reduce!r}; expected one of {TASK_REDUCE}")
  if int(eot_iter) != eot_iter or eot_iter < 1:
    raise ValueError(f"need eot_iter >= 1; got {eot_iter}")
  if key is None:
    raise ValueError("eot_pgd draws its transformations from the key: pass jax.random.key(seed)")
  sign = -1.0 if targeted else 1.0

  def objective(xa, keys):
    per_task, z = eot_task_losses(logits_fn, xa, x, y, keys, transforms=transforms, setting=setting, loss=loss)
    per_ex = jnp.sum(per_task, axis=1) if task_reduce == "sum" else jnp.mean(per_task, axis=1)
    return sign * jnp.sum(per_ex), (per_ex, jnp.mean(z, axis=0))

  return pgd_loop(jax.grad(objective, has_aux=True), objective, x, y, key, eps=eps, step_size=step_size,
                  steps=steps, norm=norm, init=init, init_scale=init_scale, restarts=restarts, targeted=targeted,
                  early_stop=early_stop, unroll=unroll, restart_select=restart_select, keyed=True,
                  eot_iter=int(eot_iter))


def _eot_pgd_factory(*, eps, step_size=None, steps=10, **kw):
  if step_size is None:  # PGD's default alpha = 2.5 eps / T
    step_size = 2.5 * eps / max(steps, 1)

  def attack(logits_fn, x, y, key):
    return eot_pgd(logits_fn, x, y, key, eps=eps, step_size=step_size, steps=steps, **kw)
  return attack


REGISTRY = {
    "eot_pgd": AttackInfo(_eot_pgd_factory, norms=("linf", "l2", "l1"), forwards_to=(eot_pgd,),
                          summary="PGD on the sum of the losses under the EoT transformations I H V C G B R "
                                  "(Athalye et al. 2018; TA-MOO's EoT 'Uniform')"),
}
