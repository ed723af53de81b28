"""Friendly adversarial training (Zhang et al. 2020), as ``zjfheart/Friendly-Adversarial-Training``.

Early-stopped PGD-K-tau (``earlystop.py``), inference mode, per example i::

    x'_0 = clip_[0,1](x + U(-eps, eps));  c_i = tau;  i active
    for k = 1..K, for active i, with x'_{k-1} misclassified:  c_i == 0 -> freeze i at x'_{k-1}
                                                             c_i > 0  -> c_i -= 1 (keep going)
        active i:  x'_k = clip_[0,1](Pi_eps(x'_{k-1} + alpha sign grad CE + omega N(0, I)))
    L = (1/B) sum_i CE(f(x'_i), y_i)                                   (train mode)

i.e. stop tau steps after the first misclassification (tau = 0: at the first misclassified
iterate). Dynamic tau (``adjust_tau(epoch + 1)``, default on): tau = 0 for 1-indexed epochs
e <= 50, 1 for e <= 90, 2 after; e = floor(ctx.epoch) + 1 is traced, so tau never recompiles.
Paper symbols -> arguments: K = ``steps``, tau = ``tau``, the noise scale omega = ``omega``.
Defaults: the CIFAR script's (eps 0.031, alpha 0.007, K 10, tau 0 + dynamic, omega 0.001).
Single-logit heads work (correctness 1[z > 0] == y, BCE).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.model_calls import loss_and_grad, resolve_unroll
from jaxrobust.attacks.per_example import select
from jaxrobust.methods.base import LossAux, Method, accuracy, logits_fn_for, masked_mean, stop
from jaxrobust.methods.common import auto_attack_loss, check_threat, classification_loss
from jaxrobust.methods.gairat import start_point


def early_stopped_pgd(logits_fn, x, y, x0, key, *, eps, step_size, steps: int, tau, omega: float = 0.0,
                      loss="ce", norm="linf", unroll: int | bool = True):
  """PGD-K-tau from x0. Returns (x_adv, n_updates): n_updates (B,) = steps each example took."""
  grad_fn, _ = loss_and_grad(logits_fn, auto_attack_loss(loss), x, y)
  b = x.shape[0]

  def step(k, carry):
    xa, control, active, n_updates = carry
    g, (_, logits) = grad_fn(xa)
    wrong = ~losses_lib.is_correct(logits, y)
    # Misclassified with no budget left: frozen at this iterate for good.
    active = jnp.logical_and(active, ~jnp.logical_and(wrong, control <= 0))
    control = jnp.where(jnp.logical_and(active, wrong), control - 1.0, control)
    x_new = xa + step_size * threat.normalize_gradient(g, norm)
    if omega:
      x_new = x_new + omega * jax.random.normal(jax.random.fold_in(key, k), x.shape, x.dtype)
    x_new = threat.project_ball_and_box(x_new, x, eps, norm)
    xa = select(active, x_new, xa)
    return xa, control, active, n_updates + active.astype(jnp.int32)

  carry = (x0, jnp.broadcast_to(jnp.asarray(tau, jnp.float32), (b,)), jnp.ones((b,), bool),
           jnp.zeros((b,), jnp.int32))
  xa, _, _, n_updates = jax.lax.fori_loop(0, steps, step, carry, unroll=resolve_unroll(unroll, steps))
  return stop(xa), n_updates


def dynamic_tau(epoch1):
  """FAT's ``adjust_tau``: 0 for e <= 50, 1 for e <= 90, 2 after (1-indexed epoch e)."""
  return jnp.where(epoch1 <= 50, 0.0, jnp.where(epoch1 <= 90, 1.0, 2.0))


def make_fat(*, eps: float = 0.031, step_size: float = 0.007, steps: int = 10, tau: int = 0,
             use_dynamic_tau: bool = True, omega: float = 0.001, init: str = "uniform",
             norm: str = "linf") -> Method:
  if tau < 0:
    raise ValueError(f"fat tau (extra steps after misclassification) must be >= 0; got {tau}")
  if omega < 0:
    raise ValueError(f"fat omega (noise scale) must be >= 0; got {omega}")
  if init not in ("uniform", "normal", "none"):
    raise ValueError(f"fat init must be 'uniform' (code), 'normal' or 'none'; got {init!r}")
  check_threat("fat", eps, step_size, steps)

  def attack(params, batch_stats, batch, key, method_state, ctx):
    x, y = batch["image"], batch["label"]
    init_key, noise_key = jax.random.split(key)
    logits_fn = logits_fn_for(ctx, params, batch_stats)
    tau_t = dynamic_tau(jnp.floor(ctx.epoch) + 1.0) if use_dynamic_tau else float(tau)
    x0 = start_point(init_key, x, eps, init, norm)
    x_adv, n_updates = early_stopped_pgd(logits_fn, x, y, x0, noise_key, eps=eps, step_size=step_size,
                                         steps=steps, tau=tau_t, omega=omega, norm=norm)
    return x_adv, {"n_updates": n_updates, "clean_acc": accuracy(logits_fn(x), y)}

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    y, mask = batch["label"], batch.get("mask")
    out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
    total = masked_mean(classification_loss(out_adv.logits, y), mask)
    metrics = {"loss": total, "acc": attack_aux["clean_acc"], "adv_acc": accuracy(out_adv.logits, y),
               "pgd_steps": jnp.mean(attack_aux["n_updates"].astype(jnp.float32))}
    return total, LossAux(batch_stats, method_state, metrics)

  return Method(name="fat", loss=loss, attack=attack,
                hparams=dict(eps=eps, step_size=step_size, steps=steps, tau=tau,
                             use_dynamic_tau=use_dynamic_tau, omega=omega, init=init, norm=norm))


REGISTRY = {"fat": make_fat}
