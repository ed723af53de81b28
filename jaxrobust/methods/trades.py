"""TRADES (Zhang et al. 2019), as ``yaodongyu/TRADES/trades.py::trades_loss`` computes it.

    attack: x'_0 = x + 0.001 N(0, I);  x' <- clip_[0,1](Pi_eps(x' + alpha sign grad_x' sum_i KL(p(x_i) || p(x'_i))))
    loss:   L = mean_i CE(f(x_i), y_i) + beta * (1/B) sum_i KL(p(x_i) || p(x'_i))

KL direction is KL(p_clean || p_adv) (the code's ``KLDivLoss(log_softmax(adv), softmax(nat))``),
softmax(f(x)) is not detached, and the attack runs in inference mode. Defaults are the CIFAR
script's (eps 0.031, step 0.007, 10 steps, beta 6). For single-logit models the KL is the
Bernoulli KL and CE is BCE (the AdAP paper's binary TRADES).
Note: the reference forwards x through the model twice in train mode (the second time only
to build the KL target); the output is identical, so we forward once (only BN running
statistics see one update fewer).
"""

from __future__ import annotations

from jaxrobust.methods.base import LossAux, Method, accuracy, masked_mean
from jaxrobust.methods.common import classification_loss, kl_to_clean, pgd_attack


def make_trades(*, eps: float = 0.031, step_size: float = 0.007, steps: int = 10,
                beta: float = 6.0, norm: str = "linf") -> Method:
  if beta < 0:
    raise ValueError(f"trades beta must be >= 0; got {beta}")

  attack = pgd_attack(eps=eps, step_size=step_size, steps=steps, loss="kl", init="normal", norm=norm)

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    y, mask = batch["label"], batch.get("mask")
    out_nat, batch_stats = ctx.forward(params, batch_stats, batch["image"])
    out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
    natural = masked_mean(classification_loss(out_nat.logits, y), mask)
    robust = masked_mean(kl_to_clean(out_adv.logits, out_nat.logits), mask)
    total = natural + beta * robust
    metrics = {"loss": total, "loss_natural": natural, "loss_robust": robust,
               "acc": accuracy(out_nat.logits, y), "adv_acc": accuracy(out_adv.logits, y)}
    return total, LossAux(batch_stats, method_state, metrics)

  return Method(name="trades", loss=loss, attack=attack,
                hparams=dict(eps=eps, step_size=step_size, steps=steps, beta=beta, norm=norm))


REGISTRY = {"trades": make_trades}
