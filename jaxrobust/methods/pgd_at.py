"""PGD adversarial training (Madry et al. 2018), thesis Ch.2 Algorithm 1/2.

    L = (1 - lam) * mean_i CE(f(x_i), y_i) + lam * mean_i CE(f(x_i^adv), y_i)
    x^adv = PGD_eps(x; CE), random start U(-eps, eps), alpha sign steps, Linf ball + [0,1] box.

lam = 1 (the default) is Madry's original (no clean forward); lam = 0.5 the common mix.
The attack runs the model in inference mode (as the reference code's ``model.eval()``).
"""

from __future__ import annotations

from jaxrobust.methods.base import LossAux, Method, accuracy, masked_mean
from jaxrobust.methods.common import check_threat, classification_loss, pgd_attack


def make_pgd_at(*, eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10,
                mix: float = 1.0, norm: str = "linf", init: str = "uniform") -> Method:
  if not 0.0 <= mix <= 1.0:
    raise ValueError(f"pgd_at mix (the adversarial weight lambda) must be in [0, 1]; got {mix}")
  check_threat("pgd_at", eps, step_size, steps)
  attack = pgd_attack(eps=eps, step_size=step_size, steps=steps, norm=norm, init=init)

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    y, mask = batch["label"], batch.get("mask")
    metrics = {}
    total = 0.0
    if mix < 1.0:
      out_nat, batch_stats = ctx.forward(params, batch_stats, batch["image"])
      total = (1.0 - mix) * masked_mean(classification_loss(out_nat.logits, y), mask)
      metrics["acc"] = accuracy(out_nat.logits, y)
    if mix > 0.0:
      out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
      total = total + mix * masked_mean(classification_loss(out_adv.logits, y), mask)
      metrics["adv_acc"] = accuracy(out_adv.logits, y)
    metrics["loss"] = total
    return total, LossAux(batch_stats, method_state, metrics)

  return Method(name="pgd_at", loss=loss, attack=attack,
                hparams=dict(eps=eps, step_size=step_size, steps=steps, mix=mix, norm=norm, init=init))


REGISTRY = {"pgd_at": make_pgd_at}
