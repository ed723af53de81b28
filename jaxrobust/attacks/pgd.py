"""PGD / BIM (Madry et al. 2018; Kurakin et al. 2016) for Linf, L2 and L1 balls.

    x_0     = start(x)                                   (uniform / normal / none)
    x_{t+1} = clip_[0,1]( Pi_eps( x_t + alpha * d_t ) ),  d_t = sign(g_t) (Linf) or g_t / ||g_t||_2 (L2)
    g_t     = grad_x sum_i L(f(x_t)_i, y_i)              (minus the gradient when targeted)

Restarts keep, per example, the restart with the largest final loss (smallest when targeted).
With ``early_stop`` only examples that are still correctly classified are updated, so an
example once fooled stays fooled. The whole loop is one XLA program; ``eps`` and
``step_size`` may be scalars or per-example ``(B,)`` arrays.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.types import Array, LogitsFn


def _init(key, x, eps, norm, init: str, init_scale: float):
  if init == "uniform":
    return threat.random_start(key, x, eps, norm)
  if init == "normal":  # TRADES/MART/AdAP style: x + 0.001 N(0, I), no clip before the first step.
    return x + init_scale * jax.random.normal(key, x.shape, x.dtype)
  if init == "none":
    return x
  raise ValueError(f"unknown PGD init {init!r}; expected 'uniform', 'normal' or 'none'")


def pgd(logits_fn: LogitsFn, x: Array, y: Array, key, *, eps, step_size, steps: int,
        norm="linf", loss="ce", init: str = "uniform", init_scale: float = 0.001,
        restarts: int = 1, targeted: bool = False, early_stop: bool = False,
        unroll: int | bool = True) -> Array:
  """Projected gradient descent. Returns x_adv with the shape and dtype of x.

  Args:
    logits_fn: pure ``x -> logits``.
    x: (B, ...) float images in [0, 1].
    y: (B,) int labels (targets when ``targeted``).
    key: PRNG key for the random start(s).
    eps, step_size: scalar or (B,) per-example.
    steps: number of iterations T (static).
    norm: 'linf', 'l2' or 'l1'.
    loss: name in ``losses.ATTACK_LOSSES`` or ``loss(logits, y, ref_logits) -> (B,)``.
    init: 'uniform' (Madry random start), 'normal' (x + init_scale N(0,I)) or 'none' (BIM).
    restarts: number of random restarts (static); per example the max-loss restart is kept.
    targeted: minimise the loss towards y instead of maximising it.
    early_stop: freeze examples as soon as they are misclassified (reach the target).
    unroll: ``lax.fori_loop`` unroll factor (True = fully unrolled; faster on CPU).
  """
  threat.check_eps(eps, x.shape[0])
  threat.check_eps(step_size, x.shape[0], name="step_size")
  norm = threat.canonical_norm(norm)
  loss_fn, needs_ref = losses_lib.get_attack_loss(loss)
  ref_logits = jax.lax.stop_gradient(logits_fn(x)) if needs_ref else None
  sign = -1.0 if targeted else 1.0
  bshape = (-1,) + (1,) * (x.ndim - 1)
  alpha = jnp.asarray(step_size, x.dtype)
  alpha = alpha.reshape(bshape) if alpha.ndim else alpha

  def objective(xa):
    logits = logits_fn(xa)
    per_ex = loss_fn(logits, y, ref_logits)
    return jnp.sum(per_ex), (per_ex, logits)

  grad_fn = jax.grad(objective, has_aux=True)

  def step(_, xa):
    g, (_, logits) = grad_fn(xa)
    direction = threat.normalize_gradient(g, norm)
    x_new = threat.project_ball_and_box(xa + sign * alpha * direction, x, eps, norm)
    if early_stop:
      still = losses_lib.is_correct(logits, y)
      if targeted:
        still = ~still
      x_new = jnp.where(still.reshape(bshape), x_new, xa)
    return x_new

  def one_run(k):
    x0 = _init(k, x, eps, norm, init, init_scale)
    n_unroll = steps if unroll is True else max(int(unroll), 1)
    xa = jax.lax.fori_loop(0, steps, step, x0, unroll=max(min(n_unroll, max(steps, 1)), 1))
    if init == "normal" and steps == 0:
      xa = threat.project_ball_and_box(xa, x, eps, norm)
    return xa

  if restarts == 1:
    return one_run(key)

  def final_loss(xa):
    return objective(xa)[1][0] * sign

  def restart_body(r, carry):
    best_x, best_loss = carry
    xa = one_run(jax.random.fold_in(key, r))
    l = final_loss(xa)
    better = l >= best_loss
    return jnp.where(better.reshape(bshape), xa, best_x), jnp.where(better, l, best_loss)

  init_x = one_run(jax.random.fold_in(key, 0))
  carry = (init_x, final_loss(init_x))
  best_x, _ = jax.lax.fori_loop(1, restarts, restart_body, carry)
  return best_x


def _pgd_factory(*, eps, step_size=None, steps=10, norm="linf", **kw):
  if step_size is None:  # Madry's alpha = 2.5 eps / T, a common default when none is given
    step_size = 2.5 * eps / max(steps, 1)

  def attack(logits_fn, x, y, key):
    return pgd(logits_fn, x, y, key, eps=eps, step_size=step_size, steps=steps, norm=norm, **kw)
  return attack


def _bim_factory(*, eps, step_size=None, steps=10, **kw):
  return _pgd_factory(eps=eps, step_size=step_size, steps=steps, init="none", **kw)


REGISTRY = {
    "pgd": _pgd_factory,
    "pgd_linf": lambda **kw: _pgd_factory(norm="linf", **kw),
    "pgd_l2": lambda **kw: _pgd_factory(norm="l2", **kw),
    "bim": _bim_factory,
}
