"""Adversarial logit pairing (Kannan, Kurakin, Goodfellow 2018).

    x' = PGD_eps(x; CE), uniform start, alpha sign steps (inference mode)
    L  = (1 - mix) (1/B) sum_i CE(z(x_i), y_i) + mix (1/B) sum_i CE(z(x'_i), y_i)
         + lam (1/B) sum_i ||z(x_i) - z(x'_i)||_2^2

Paper symbols -> arguments: the mixed-minibatch proportion (0.5) = ``mix``, the pairing weight
lambda = ``lam``. ``pairing='mean'`` divides the squared distance by the number of logits (the
released TF code's ``mean_squared_error``); the default 'sum' is the squared L2 norm of the
formula above. Both logit vectors carry gradients (pairing pulls both). Works for single-logit
heads (z is (B, 1)). Defaults: Madry's CIFAR PGD (8/255, 2/255, 10 steps), mix 0.5, lam 0.5.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrobust.methods.base import LossAux, Method, accuracy, masked_mean
from jaxrobust.methods.common import check_threat, classification_loss, pgd_attack


def logit_pairing(logits, adv_logits, reduction: str = "sum"):
  """Per-example ||z - z'||^2 (reduction 'sum') or its mean over logits ('mean')."""
  sq = jnp.square(logits - adv_logits).reshape(logits.shape[0], -1)
  return jnp.sum(sq, axis=1) if reduction == "sum" else jnp.mean(sq, axis=1)


def make_alp(*, eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10, mix: float = 0.5,
             lam: float = 0.5, pairing: str = "sum", norm: str = "linf", init: str = "uniform") -> Method:
  if not 0.0 <= mix <= 1.0:
    raise ValueError(f"alp mix (weight of the adversarial CE) must be in [0, 1]; got {mix}")
  if lam < 0:
    raise ValueError(f"alp lam (logit-pairing weight) must be >= 0; got {lam}")
  if pairing not in ("sum", "mean"):
    raise ValueError(f"alp pairing must be 'sum' or 'mean'; got {pairing!r}")
  check_threat("alp", eps, step_size, steps)
  attack = pgd_attack(eps=eps, step_size=step_size, steps=steps, norm=norm, init=init)

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    y, mask = batch["label"], batch.get("mask")
    out_nat, batch_stats = ctx.forward(params, batch_stats, batch["image"])
    out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
    ce_nat = masked_mean(classification_loss(out_nat.logits, y), mask)
    ce_adv = masked_mean(classification_loss(out_adv.logits, y), mask)
    pair = masked_mean(logit_pairing(out_nat.logits, out_adv.logits, pairing), mask)
    total = (1.0 - mix) * ce_nat + mix * ce_adv + lam * pair
    metrics = {"loss": total, "loss_natural": ce_nat, "loss_adv": ce_adv, "loss_pairing": pair,
               "acc": accuracy(out_nat.logits, y), "adv_acc": accuracy(out_adv.logits, y)}
    return total, LossAux(batch_stats, method_state, metrics)

  return Method(name="alp", loss=loss, attack=attack,
                hparams=dict(eps=eps, step_size=step_size, steps=steps, mix=mix, lam=lam,
                             pairing=pairing, norm=norm, init=init))


REGISTRY = {"alp": make_alp}
