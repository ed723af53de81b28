"""WRM (Sinha, Namkoong & Duchi 2018, "Certifying Some Distributional Robustness with Principled Adversarial
Training"): the Lagrangian relaxation of Wasserstein distributional robustness with a fixed multiplier gamma
and the transport cost c(z, z') = ||x - x'||_2^2 + inf 1{y != y'} (eq. 4-5)::

    min_theta E_(x,y) [ phi_gamma(theta; x, y) ],  phi_gamma = sup_x' l(f_theta(x'), y) - gamma ||x' - x||_2^2

One train step (their Algorithm 1): x* ~ argmax by ``steps`` gradient-ascent steps from x (``attacks.udr.wrm_ascent``,
box-clipped), then theta <- SGD on l(f(x*), y) (Danskin: grad phi_gamma = grad_theta l at the maximiser).
For gamma larger than the loss's smoothness constant the inner problem is strongly concave and the ascent converges.
UDR (Bui et al. 2022) reports it as the baseline whose lambda is a fixed hyper-parameter instead of a learned dual
variable (their Table 9, with a tuned gamma).
"""

from __future__ import annotations

from jaxrobust.attacks.udr import wrm_ascent
from jaxrobust.methods.base import LossAux, Method, accuracy, logits_fn_for, masked_mean, stop
from jaxrobust.methods.common import classification_loss


def make_wrm(*, gamma: float = 1.0, step_size: float = 0.1, steps: int = 15) -> Method:
  """WRM: x* from ``steps`` ascent steps of ``step_size`` on CE - gamma ||x' - x||_2^2; loss CE(f(x*), y)."""
  if not gamma >= 0:
    raise ValueError(f"wrm gamma (the transport-cost multiplier) must be >= 0; got {gamma}")
  if not step_size >= 0 or int(steps) != steps or steps < 0:
    raise ValueError(f"wrm needs step_size >= 0 and an integer steps >= 0; got {step_size}, {steps}")

  def attack(params, batch_stats, batch, key, method_state, ctx):
    x_adv = wrm_ascent(logits_fn_for(ctx, params, batch_stats), batch["image"], batch["label"], gamma=gamma,
                       step_size=step_size, steps=int(steps))
    return stop(x_adv), {}

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    y, mask = batch["label"], batch.get("mask")
    out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
    total = masked_mean(classification_loss(out_adv.logits, y), mask)
    return total, LossAux(batch_stats, method_state, {"loss": total, "adv_acc": accuracy(out_adv.logits, y)})

  return Method(name="wrm", loss=loss, attack=attack, hparams=dict(gamma=gamma, step_size=step_size, steps=steps))


REGISTRY = {"wrm": make_wrm}
