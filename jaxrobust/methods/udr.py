"""Unified Wasserstein Distributional Robustness (Bui et al. 2022): UDR-PGD, -TRADES, -MART, -AWP-AT.

Dual objective (paper eq. 17), with lam >= 0 a dual variable shared by the whole data set::

    inf_{theta, lam >= 0}  lam eps + E_(x,y) [ sup_x' g_theta(x', x, y) - lam c_hat(x', x) ]

One train step (Algorithm 1 with the smoothed cost of eq. 16, in the form of the released code
``Cifar10-WideResNet/train_cifar10_udr.py``):

1. craft x^a with ``attacks.udr.udr_pgd``: sign steps on the x'-part of g, then the soft-ball pull
   of strength lam (zero pull inside the Linf ball; lam = 1, tau = alpha is PGD's hard clip);
2. lam update (code): d = mean over the batch of the per-pixel mean |x^a - x|; d joins a window,
   and when the batch index i (within the epoch) satisfies i % period == 0 (i = 0 included),
   lam <- lam - lam_lr (eps - mean(window)) and the window is cleared. The paper requires lam >= 0
   and the code does not clamp; ``clamp_lambda=True`` (default) clamps;
3. theta <- SGD on g_theta(x^a, x, y):

==========  ==========================  ========================================================
method      craft loss (x'-part of g)   g_theta(x^a, x, y)
==========  ==========================  ========================================================
udr_pgd     CE(f(x'), y)                natural * CE(f(x), y) + beta CE(f(x^a), y)   (beta 1)
            ``natural=0`` is the WRN code's UDR-PGD* (no natural term)
udr_trades  KL(p(x) || p(x'))           CE(f(x), y) + beta (1/B) sum_i KL(p(x_i) || p(x^a_i))  (beta 6)
udr_mart    KL(p(x) || p(x'))           paper: BCE(f(x), y) + beta (1 - p_y(x)) KL(p(x) || p(x^a));
            (footnote 2)                ``loss_form='code'``: MART's code loss (BCE on x^a)   (beta 5)
udr_awp_at  CE                          UDR-PGD* under AWP (gamma 0.01): CE(f_{w+v}(x^a), y)
==========  ==========================  ========================================================

Only the x'-dependent part of g matters when crafting, and the push uses sign(grad g), so a
positive beta or MART's positive weight (1 - p_y) does not change the direction.
lam lives in the method state (``{'lam', 'dis_sum', 'dis_count'}``), is checkpointed with the
train state and updated only through the loss's ``LossAux.method_state``, so the step stays pure.

Choices where paper and code differ, code first unless noted:
* pull: the code's per-pixel quadratic hinge (zero inside the ball; eq. 16's cost pulls inside it
  too), tau = alpha by default (the paper's tau = 2 alpha, Appendix E, is ``tau=2 * step_size``);
* lam distance: the code's mean |delta| over a 10-batch window (``lam_distance='linf'`` uses the
  per-example Linf norm of Appendix G, ``lam_period=1`` updates every batch as eq. 19);
* start: x + U(-eps, eps), box-clipped, for every variant (Algorithm 1);
* the craft runs the model in inference mode like every training attack here (the thesis's
  text; the released code effectively crafts in train mode);
* UDR-MART takes the paper's BCE on the natural x by default (its eq. 7 risk; MART's code uses x^a);
  UDR-TRADES/MART use the code's KL direction KL(p(x) || p(x')), not the thesis's KL(h(x'), h(x)).
Defaults are CIFAR-10's (eps 8/255, alpha 2/255, 10 steps, lam_init 1, lam_lr 0.02, period 10);
MNIST uses eps 0.3, alpha 0.01, 40 steps and beta 1 for every method (the thesis's Ch. 5 setup).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust.attacks.udr import PULLS, mean_abs_perturbation, udr_pgd
from jaxrobust.methods.base import LossAux, Method, accuracy, logits_fn_for, masked_mean, stop
from jaxrobust.methods.common import auto_attack_loss, classification_loss, kl_to_clean

LAMBDA_DISTANCES = ("mean_abs", "linf")


def init_lambda_state(lam_init: float) -> dict:
  """The dual variable and the window of distances since the last update."""
  return {"lam": jnp.asarray(lam_init, jnp.float32), "dis_sum": jnp.zeros((), jnp.float32),
          "dis_count": jnp.zeros((), jnp.float32)}


def lambda_update(state: dict, dis, batch_index, *, eps: float, lam_lr: float, period: int,
                  clamp: bool = True) -> dict:
  """Appends ``dis`` to the window; at ``batch_index % period == 0``: lam -= lam_lr (eps - mean), clear.

  lam goes down while the attack stays inside the ball on average (mean distance < eps), so the
  soft ball grows, and up otherwise (Danskin's gradient of the dual in lam, eq. 19).
  """
  if int(period) != period or period < 1:
    raise ValueError(f"lambda_update period must be an integer >= 1; got {period}")
  if lam_lr < 0:
    raise ValueError(f"lambda_update lam_lr must be >= 0; got {lam_lr}")
  total = state["dis_sum"] + jnp.asarray(dis, jnp.float32)
  count = state["dis_count"] + 1.0
  fire = jnp.asarray(batch_index) % period == 0
  lam = state["lam"] - lam_lr * (eps - total / count)
  if clamp:
    lam = jnp.maximum(lam, 0.0)
  return {"lam": jnp.where(fire, lam, state["lam"]), "dis_sum": jnp.where(fire, 0.0, total),
          "dis_count": jnp.where(fire, 0.0, count)}


def batch_index_in_epoch(ctx):
  """i of ``for i, batch in enumerate(loader)``: step % steps_per_epoch (the global step without epochs)."""
  if ctx.steps_per_epoch:
    return ctx.step % ctx.steps_per_epoch
  return ctx.step


def _distance(x_adv, x, kind):
  if kind == "mean_abs":
    return mean_abs_perturbation(x_adv, x)
  return jnp.max(jnp.abs(x_adv - x).reshape(x.shape[0], -1), axis=1)


def _check(name, eps, step_size, steps, lam_init, lam_lr, lam_period, tau, lam_distance, norm):
  if eps < 0 or step_size < 0 or steps < 0 or int(steps) != steps:
    raise ValueError(f"{name} needs eps, step_size >= 0 and an integer steps >= 0; got {eps}, {step_size}, {steps}")
  if lam_init < 0:
    raise ValueError(f"{name} lam_init (the dual variable lambda) must be >= 0; got {lam_init}")
  if lam_lr < 0:
    raise ValueError(f"{name} lam_lr must be >= 0; got {lam_lr}")
  if int(lam_period) != lam_period or lam_period < 1:
    raise ValueError(f"{name} lam_period must be an integer >= 1; got {lam_period}")
  if tau is not None and not tau > 0:
    raise ValueError(f"{name} tau (the cost temperature) must be > 0 or None (= step_size); got {tau}")
  if lam_distance not in LAMBDA_DISTANCES:
    raise ValueError(f"{name} lam_distance must be one of {LAMBDA_DISTANCES}; got {lam_distance!r}")
  if norm != "linf":
    raise ValueError(f"{name} is defined for the Linf soft ball (the code form); got norm={norm!r}")


def make_udr(name: str, theta_loss, *, craft_loss: str, eps: float, step_size: float, steps: int,
             lam_init: float = 1.0, lam_lr: float = 0.02, lam_period: int = 10, tau: float | None = None,
             clamp_lambda: bool = True, lam_distance: str = "mean_abs", norm: str = "linf",
             pull: str = "code", hparams: dict | None = None) -> Method:
  """The UDR machinery around any ``theta_loss(params, batch_stats, batch, x_adv, ctx)
  -> (loss, batch_stats, metrics)``: the soft-ball craft, lam in the state and its update.

  pull: 'code' (the per-pixel hinge) or 'paper_l2' (Algorithm 1's pull with eq. 16's cost on 1/2 ||x' - x||_2^2;
  ``attacks.udr.paper_pull_l2``)."""
  _check(name, eps, step_size, steps, lam_init, lam_lr, lam_period, tau, lam_distance, norm)
  if pull not in PULLS:
    raise ValueError(f"{name} pull must be one of {PULLS}; got {pull!r}")

  def attack(params, batch_stats, batch, key, method_state, ctx):
    x = batch["image"]
    x_adv = udr_pgd(logits_fn_for(ctx, params, batch_stats), x, batch["label"], key, eps=eps,
                    step_size=step_size, steps=steps, lam=method_state["lam"], tau=tau,
                    loss=auto_attack_loss(craft_loss), pull=pull)
    x_adv = stop(x_adv)
    dis = masked_mean(_distance(x_adv, x, lam_distance), batch.get("mask"))
    return x_adv, {"dis": dis}

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    total, batch_stats, metrics = theta_loss(params, batch_stats, batch, x_adv, ctx)
    new_state = lambda_update(method_state, attack_aux["dis"], batch_index_in_epoch(ctx), eps=eps,
                              lam_lr=lam_lr, period=lam_period, clamp=clamp_lambda)
    metrics = dict(metrics, loss=total, udr_lambda=method_state["lam"], udr_distance=attack_aux["dis"])
    return total, LossAux(batch_stats, new_state, metrics)

  return Method(name=name, loss=loss, attack=attack, init_state=lambda info: init_lambda_state(lam_init),
                hparams=dict(hparams or {}, eps=eps, step_size=step_size, steps=steps, lam_init=lam_init,
                             lam_lr=lam_lr, lam_period=lam_period, tau=tau, clamp_lambda=clamp_lambda,
                             lam_distance=lam_distance, norm=norm, craft_loss=craft_loss, pull=pull))


def make_udr_pgd(*, eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10, beta: float = 1.0,
                 natural: float = 1.0, **udr_kw) -> Method:
  """UDR-PGD: g = natural CE(f(x), y) + beta CE(f(x^a), y); natural=0 is UDR-PGD* (WRN code)."""
  if beta < 0 or natural < 0:
    raise ValueError(f"udr_pgd beta and natural must be >= 0; got {beta}, {natural}")

  def theta_loss(params, batch_stats, batch, x_adv, ctx):
    y, mask = batch["label"], batch.get("mask")
    metrics, total = {}, 0.0
    if natural > 0:
      out_nat, batch_stats = ctx.forward(params, batch_stats, batch["image"])
      total = natural * masked_mean(classification_loss(out_nat.logits, y), mask)
      metrics["acc"] = accuracy(out_nat.logits, y)
    out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
    total = total + beta * masked_mean(classification_loss(out_adv.logits, y), mask)
    metrics["adv_acc"] = accuracy(out_adv.logits, y)
    return total, batch_stats, metrics

  return make_udr("udr_pgd", theta_loss, craft_loss="ce", eps=eps, step_size=step_size, steps=steps,
                  hparams=dict(beta=beta, natural=natural), **udr_kw)


def make_udr_trades(*, eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10, beta: float = 6.0,
                    **udr_kw) -> Method:
  """UDR-TRADES: g = CE(f(x), y) + beta (1/B) sum_i KL(p(x_i) || p(x^a_i)); crafted on the KL."""
  if beta < 0:
    raise ValueError(f"udr_trades beta must be >= 0; got {beta}")

  def theta_loss(params, batch_stats, batch, x_adv, ctx):
    y, mask = batch["label"], batch.get("mask")
    out_nat, batch_stats = ctx.forward(params, batch_stats, batch["image"])
    out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
    natural = masked_mean(classification_loss(out_nat.logits, y), mask)
    robust = masked_mean(kl_to_clean(out_adv.logits, out_nat.logits), mask)
    return natural + beta * robust, batch_stats, {
        "loss_natural": natural, "loss_robust": robust, "acc": accuracy(out_nat.logits, y),
        "adv_acc": accuracy(out_adv.logits, y)}

  return make_udr("udr_trades", theta_loss, craft_loss="kl", eps=eps, step_size=step_size, steps=steps,
                  hparams=dict(beta=beta), **udr_kw)


def make_udr_mart(*, eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10, beta: float = 5.0,
                  loss_form: str = "paper", **udr_kw) -> Method:
  """UDR-MART: paper g = BCE(f(x), y) + beta (1 - p_y(x)) KL(p(x) || p(x^a)); 'code': BCE on x^a."""
  from jaxrobust.methods.mart import mart_terms
  if beta < 0:
    raise ValueError(f"udr_mart beta must be >= 0; got {beta}")
  if loss_form not in ("paper", "code"):
    raise ValueError(f"udr_mart loss_form must be 'paper' (BCE on x) or 'code' (MART's, BCE on x^a); got {loss_form!r}")

  def theta_loss(params, batch_stats, batch, x_adv, ctx):
    y, mask = batch["label"], batch.get("mask")
    out_nat, batch_stats = ctx.forward(params, batch_stats, batch["image"])
    out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
    bce, robust = mart_terms(out_adv.logits, out_nat.logits, y, "nat" if loss_form == "paper" else "adv")
    loss_bce, loss_robust = masked_mean(bce, mask), masked_mean(robust, mask)
    return loss_bce + beta * loss_robust, batch_stats, {
        "loss_bce": loss_bce, "loss_robust": loss_robust, "acc": accuracy(out_nat.logits, y),
        "adv_acc": accuracy(out_adv.logits, y)}

  return make_udr("udr_mart", theta_loss, craft_loss="kl", eps=eps, step_size=step_size, steps=steps,
                  hparams=dict(beta=beta, loss_form=loss_form), **udr_kw)


def make_udr_awp_at(*, gamma: float = 0.01, proxy_lr: float = 0.01, warmup: float = 0,
                    lam_lr: float = 0.001, **kw) -> Method:
  """UDR-AWP-AT: UDR-PGD* (CE on x^a only) trained under AWP's weight perturbation (gamma 0.01).

  lam_lr 0.001 is what UDR's run script passes for this variant (``awp_udr_learnable``).
  """
  from jaxrobust.methods.awp import make_awp
  kw.setdefault("natural", 0.0)
  return make_awp(make_udr_pgd(lam_lr=lam_lr, **kw), gamma=gamma, proxy_lr=proxy_lr, warmup=warmup, name="udr_awp_at")


REGISTRY = {"udr_pgd": make_udr_pgd, "udr_trades": make_udr_trades, "udr_mart": make_udr_mart,
            "udr_awp_at": make_udr_awp_at}
