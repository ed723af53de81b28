"""MAIL (Wang, Liu et al. 2021, NeurIPS): probabilistic-margin instance reweighting, as ``QizhouWang/MAIL`` computes it.

Probabilistic margins (eqs. 4-7), p = softmax(f(.)), all treated as constants::

    PM(x, y)  = p_y(x) - max_{j != y} p_j(x)                 in [-1, 1]
    PM_adv_i  = PM(x'_i, y_i)            (default; from the training forward of x', train mode, as the code)
    PM_nat_i  = PM(x_i, y_i)             (from the training forward of x)
    PM_dif_i  = p_y(x_i) - p_y(x'^(t_i)_i), t_i = least PGD steps to misclassify (inference mode)

(the code's ``PM`` returns p_2nd - p_GT = -PM). Weights (eq. 8 / ``weight_assign``)::

    w_i = sigmoid(-gamma (PM_i - beta_w)) = sigmoid(slope (pm_code_i + bias))    gamma = slope, beta_w = bias
    omega_i = 3 w_i                       (norm='code', default: not normalised, omega in (0, 3))
    omega_i = m w_i / sum_j w_j           (norm='paper': sums to the batch size m)

Objectives (``mail_loss.py``), x' from ``x + 0.001 N`` and 10 sign steps in inference mode on CE
(KL for TRADES), KL(p || p') as every reference computes it::

    mail_at     : L = (1/B) sum_i omega_i CE(f(x'_i), y_i)
    mail_trades : L = CE_mean(f(x), y) + beta (1/B) sum_i omega_i KL(p(x_i) || p(x'_i))
    mail_mart   : L = (1/B) sum_i omega_i BCE_i + beta (1/B) sum_i KL_i (1.0000001 - p_{i,y_i})
                  (the MART terms of mart.py; only BCE is reweighted)

Burn-in: while floor(ctx.epoch) < ``burn_in_epochs`` omega = 1 exactly, so the loss is the
unweighted base loss (AT / TRADES / MART, the code's ``at_loss``; equal to the pgd_at / trades /
mart methods' values up to float rounding, as they are separate XLA programs). The test reads the
traced ``ctx.epoch`` through ``jnp.where``, so crossing the boundary never recompiles.
Code: 76 epochs (``epoch <= 75`` 0-indexed); paper: 74.

Defaults: slope/bias from the authors' README for mail_at (10, -0.5) and mail_trades (2, 0); the
README gives none for mail_mart, which uses the paper's (5, 0.05). beta = 5 (code ``--beta``; the
paper uses 6 for MAIL-MART). Paper symbols -> arguments: gamma = ``slope``, beta (eq. 8) = ``bias``,
the trade-off beta = ``beta``, PM type = ``pm``, burn-in length = ``burn_in_epochs``.
Single-logit heads work (PM = 2 sigmoid(+-z) - 1 through the two-class form).

``pm='lps'`` replaces the margin weights by GAIRAT's least-perturbation-step weights (Zhang et al.
2021): kappa_i = PGD steps x'_i stayed correctly classified (GA-PGD), omega = n w / sum w with
w_i = (tanh(lps_lam + 5 (1 - 2 kappa_i / K)) + 1) / 2 (``lps_weight_fn``): MAIL Table 1's AT-LPS
(= GAIRAT), TRADES-LPS and MART-LPS columns, which MAIL trains with GAIRAT's setting (Lambda -1, Tanh).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust import threat
from jaxrobust.methods.base import LossAux, Method, accuracy, logits_fn_for, masked_mean, stop
from jaxrobust.methods.common import check_threat, classification_loss, kl_to_clean, training_pgd
from jaxrobust.methods.gairat import WEIGHT_FNS, ga_pgd, gair_weights, normalize_weights, start_point
from jaxrobust.methods.mart import mart_terms, two_class_logits

BASES = ("at", "trades", "mart")
PM_TYPES = ("adv", "nat", "dif", "lps")
NORMS = ("code", "paper")
CODE_SCALE = 3.0  # ``normalized_reweight = reweight * 3`` in mail_loss.py

_DEFAULTS = {  # base -> (slope, bias, beta)
    "at": (10.0, -0.5, 5.0),
    "trades": (2.0, 0.0, 5.0),
    "mart": (5.0, 0.05, 5.0),
}


def _take(values, y):
  return jnp.take_along_axis(values, y[:, None].astype(jnp.int32), axis=1)[:, 0]


def probabilistic_margin(logits, y):
  """PM_i = p_{y_i} - max_{j != y_i} p_j in [-1, 1] (eq. 4), detached."""
  p = jax.nn.softmax(two_class_logits(logits), axis=-1)
  onehot = jax.nn.one_hot(y, p.shape[1], dtype=bool)
  return stop(_take(p, y) - jnp.max(jnp.where(onehot, -jnp.inf, p), axis=1))


def pm_dif(nat_logits, lps_logits, y):
  """PM_dif_i = p_y(x_i) - p_y(x_i + delta^(t_i)) (eq. 7), detached."""
  p_nat = jax.nn.softmax(two_class_logits(nat_logits), axis=-1)
  p_lps = jax.nn.softmax(two_class_logits(lps_logits), axis=-1)
  return stop(_take(p_nat, y) - _take(p_lps, y))


def mail_raw_weights(pm, slope: float, bias: float):
  """w_i = sigmoid(-slope (PM_i - bias)) in (0, 1), decreasing in PM for slope > 0 (eq. 8)."""
  return jax.nn.sigmoid(-slope * (pm - bias))


def mail_weights(pm, slope: float, bias: float, norm: str = "code", mask=None):
  """omega: 3 w (norm='code') or m w / sum w (norm='paper'); constants for the loss."""
  w = mail_raw_weights(pm, slope, bias)
  if norm == "code":
    return stop(CODE_SCALE * w)
  if norm == "paper":
    return stop(normalize_weights(w, mask))
  raise ValueError(f"unknown MAIL weight normalisation {norm!r}; expected one of {NORMS}")


def make_mail(base: str = "at", *, eps: float = 0.031, step_size: float = 0.007, steps: int = 10,
              slope: float | None = None, bias: float | None = None, beta: float | None = None,
              norm: str = "code", pm: str = "adv", burn_in_epochs: float = 76,
              attack_norm: str = "linf", lps_lam: float = -1.0, lps_weight_fn: str = "tanh") -> Method:
  if base not in BASES:
    raise ValueError(f"MAIL base must be one of {BASES}; got {base!r}")
  d_slope, d_bias, d_beta = _DEFAULTS[base]
  slope = d_slope if slope is None else float(slope)
  bias = d_bias if bias is None else float(bias)
  beta = d_beta if beta is None else float(beta)
  if slope < 0:
    raise ValueError(f"mail slope (gamma) must be >= 0 (weights decrease with the margin); got {slope}")
  if beta < 0:
    raise ValueError(f"mail beta must be >= 0; got {beta}")
  if norm not in NORMS:
    raise ValueError(f"mail norm must be one of {NORMS}; got {norm!r}")
  if pm not in PM_TYPES:
    raise ValueError(f"mail pm must be one of {PM_TYPES}; got {pm!r}")
  if burn_in_epochs < 0:
    raise ValueError(f"mail burn_in_epochs must be >= 0; got {burn_in_epochs}")
  if pm == "lps" and lps_weight_fn not in WEIGHT_FNS:
    raise ValueError(f"mail lps_weight_fn must be one of {WEIGHT_FNS}; got {lps_weight_fn!r}")
  if pm == "lps" and steps < 2 and lps_weight_fn != "discrete":
    raise ValueError(f"mail pm='lps' needs steps >= 2 for the {lps_weight_fn} weights; got {steps}")
  check_threat("mail", eps, step_size, steps)
  name = f"mail_{base}"
  attack_loss = "kl" if base == "trades" else "ce"

  def attack(params, batch_stats, batch, key, method_state, ctx):
    x, y = batch["image"], batch["label"]
    if pm not in ("dif", "lps"):
      return training_pgd(params, batch_stats, batch, key, ctx, eps=eps, step_size=step_size,
                          steps=steps, loss=attack_loss, init="normal", norm=attack_norm), None
    # PM_dif and LPS need the least PGD step: the same attack, tracked by GA-PGD.
    logits_fn = logits_fn_for(ctx, params, batch_stats)
    x0 = start_point(key, x, eps, "normal")
    x_adv, kappa, x_lps = ga_pgd(logits_fn, x, y, x0, eps=eps, step_size=step_size, steps=steps,
                                 loss=attack_loss, norm=attack_norm)
    if steps == 0:  # no step projected the 0.001 N start: project it as pgd() does
      x_adv = x_lps = threat.project_ball_and_box(x0, x, eps, attack_norm)
    if pm == "lps":
      return x_adv, kappa
    return x_adv, pm_dif(logits_fn(x), logits_fn(x_lps), y)

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    y, mask = batch["label"], batch.get("mask")
    x = batch["image"]
    state_batch_stats = batch_stats
    metrics = {}
    out_nat = None
    if base != "at" or pm == "nat":
      # Order as the code: x first, then x' (only BN running statistics see the order).
      out_nat, batch_stats = ctx.forward(params, batch_stats, x)
      metrics["acc"] = accuracy(out_nat.logits, y)
    out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
    if pm == "adv":
      margin = probabilistic_margin(out_adv.logits, y)
    elif pm == "nat":
      margin = probabilistic_margin(out_nat.logits, y)
    else:
      margin = attack_aux  # PM_dif, or kappa for 'lps'
    if pm == "lps":
      omega = gair_weights(margin, steps, lps_lam, lps_weight_fn, mask)
    else:
      omega = mail_weights(margin, slope, bias, norm, mask)
    active = jnp.floor(ctx.epoch) >= burn_in_epochs
    # Burn-in: omega == 1 exactly (x * 1.0 == x), so the loss is the unweighted base formula.
    omega = jnp.where(active, omega, jnp.ones_like(omega))

    if base == "at":
      total = masked_mean(omega * classification_loss(out_adv.logits, y), mask)
    elif base == "trades":
      natural = masked_mean(classification_loss(out_nat.logits, y), mask)
      robust = masked_mean(omega * kl_to_clean(out_adv.logits, out_nat.logits), mask)
      total = natural + beta * robust
      metrics.update(loss_natural=natural, loss_robust=robust)
    else:
      bce, kl_w = mart_terms(out_adv.logits, out_nat.logits, y)
      loss_adv = masked_mean(omega * bce, mask)
      robust = masked_mean(kl_w, mask)
      total = loss_adv + beta * robust
      metrics.update(loss_adv=loss_adv, loss_robust=robust)
    if "acc" not in metrics:
      # MAIL-AT never forwards x for the loss; the clean accuracy metric takes one inference pass.
      metrics["acc"] = accuracy(ctx.eval_forward(params, state_batch_stats, x).logits, y)
    metrics.update(loss=total, adv_acc=accuracy(out_adv.logits, y), pm=masked_mean(margin, mask),
                   weight_mean=masked_mean(omega, mask), mail_active=active.astype(jnp.float32))
    return total, LossAux(batch_stats, method_state, metrics)

  return Method(name=name, loss=loss, attack=attack,
                hparams=dict(base=base, eps=eps, step_size=step_size, steps=steps, slope=slope,
                             bias=bias, beta=beta, norm=norm, pm=pm, burn_in_epochs=burn_in_epochs,
                             attack_norm=attack_norm, lps_lam=lps_lam, lps_weight_fn=lps_weight_fn))


def make_mail_at(**kw) -> Method:
  return make_mail("at", **kw)


def make_mail_trades(**kw) -> Method:
  return make_mail("trades", **kw)


def make_mail_mart(**kw) -> Method:
  return make_mail("mart", **kw)


REGISTRY = {"mail_at": make_mail_at, "mail_trades": make_mail_trades, "mail_mart": make_mail_mart}
