"""GAIRAT (Zhang et al. 2021, ICLR), as ``zjfheart/Geometry-aware-Instance-reweighted-Adversarial-Training`` computes it.

GA-PGD (``attack_generator.py::GA_PGD``, category 'Madry'), in inference mode::

    x'_0 = clip_[0,1](x + U(-eps, eps));  kappa_i = 0
    for k = 1..K:  kappa_i += 1[argmax f(x'_{k-1})_i == y_i]        (correct at the *start* of step k)
                   x'_k = clip_[0,1](Pi_eps(x'_{k-1} + alpha sign grad sum_i CE(f(x'_{k-1})_i, y_i)))

so kappa in {0..K} counts correct steps (it does not stop at the first misclassification).
GAIR weights, h = floor(K / 2), Lambda the schedule's value::

    Tanh:     w_i = (tanh(Lambda + 5 (h - kappa_i) / h) + 1) / 2
    Sigmoid:  w_i = sigmoid(Lambda + 5 (h - kappa_i) / h)
    Discrete: w_i = (K + 1 - kappa_i) / (K + 1)
    omega_i = B w_i / sum_j w_j                                        (sums to the batch size B)
    L = (1/B) sum_i omega_i CE(f(x'_i), y_i)   if e >= begin_epoch,   else (1/B) sum_i CE(f(x'_i), y_i)

e = 1-indexed epoch = floor(ctx.epoch) + 1 (the code tests ``(epoch + 1) >= begin_epoch`` with a
0-indexed epoch). Lambda schedule (``adjust_Lambda(epoch + 1)``): 'fixed' gives Lambda_max
(+inf: uniform weights) before ``lambda_begin_epoch`` and ``Lambda`` from then on; 'linear' gives
Lambda_max - (e / epochs)(Lambda_max - Lambda) from ``lambda_begin_epoch`` (needs a finite
Lambda_max). The code's 'piecewise' is identical to 'fixed' (its later branches are unreachable
``elif``s), so it is not offered. ``lambda_begin_epoch`` is 60 for the WRN protocol (>= 110
epochs) and 30 for the ResNet one. Burn-in and schedule read the traced ``ctx.epoch`` through
``jnp.where``: crossing ``begin_epoch`` never recompiles.

Paper symbols -> arguments: K = ``steps``, lambda = ``lam`` (``--Lambda``), the weight function
= ``weight_fn``. Defaults are the CIFAR-10 WRN script's (eps 0.031, alpha 0.007, K 10, Lambda -1,
Tanh, begin 60). Single-logit heads work (CE is the binary CE, correctness is 1[z > 0] == y).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.model_calls import loss_and_grad, resolve_unroll
from jaxrobust.attacks.per_example import select
from jaxrobust.methods.base import LossAux, Method, accuracy, logits_fn_for, masked_mean, stop
from jaxrobust.methods.common import auto_attack_loss, classification_loss

WEIGHT_FNS = ("tanh", "sigmoid", "discrete")
LAMBDA_SCHEDULES = ("fixed", "linear")


def ga_pgd(logits_fn, x, y, x0, *, eps, step_size, steps: int, loss="ce", norm="linf",
           unroll: int | bool = True):
  """Geometry-aware PGD from the start point x0. Returns (x_adv, kappa, x_lps).

  kappa: (B,) float32, the number of steps at whose start the example was correctly classified.
  x_lps: the first iterate x'_t (t < K) that is misclassified, x'_K if none is: the point
  delta^(t_i) at the least PGD step t_i that MAIL's PM_dif (eq. 7) uses.
  loss: 'ce' / 'kl' / a name in losses.ATTACK_LOSSES or ``loss(logits, y, ref_logits)``.
  """
  grad_fn, _ = loss_and_grad(logits_fn, auto_attack_loss(loss), x, y)
  norm = threat.canonical_norm(norm)

  def step(_, carry):
    xa, kappa, x_lps, found = carry
    g, (_, logits) = grad_fn(xa)
    correct = losses_lib.is_correct(logits, y)
    kappa = kappa + correct.astype(jnp.float32)
    # Keep the first misclassified iterate (LPS); later misclassifications do not overwrite it.
    first = jnp.logical_and(~correct, ~found)
    x_lps = select(first, xa, x_lps)
    found = jnp.logical_or(found, ~correct)
    x_new = threat.project_ball_and_box(xa + step_size * threat.normalize_gradient(g, norm), x, eps, norm)
    return x_new, kappa, x_lps, found

  b = x.shape[0]
  carry = (x0, jnp.zeros((b,), jnp.float32), x0, jnp.zeros((b,), bool))
  xa, kappa, x_lps, found = jax.lax.fori_loop(0, steps, step, carry, unroll=resolve_unroll(unroll, steps))
  x_lps = select(found, x_lps, xa)
  return stop(xa), stop(kappa), stop(x_lps)


def start_point(key, x, eps, init: str, norm="linf"):
  """'uniform': clip(x + U(-eps, eps)) (GA_PGD 'Madry'); 'normal': x + 0.001 N (TRADES style); 'none'."""
  if init == "uniform":
    return threat.random_start(key, x, eps, norm)
  if init == "normal":
    return x + 0.001 * jax.random.normal(key, x.shape, x.dtype)
  if init == "none":
    return x
  raise ValueError(f"unknown init {init!r}; expected 'uniform', 'normal' or 'none'")


def gair_raw_weights(kappa, num_steps: int, lam, weight_fn: str = "tanh"):
  """Unnormalised GAIR weights w_i (module docstring); non-increasing in kappa."""
  weight_fn = weight_fn.lower()
  if weight_fn == "discrete":
    return (num_steps + 1 - kappa) / (num_steps + 1)
  half = num_steps // 2
  arg = lam + (half - kappa) * 5.0 / half
  if weight_fn == "tanh":
    return (jnp.tanh(arg) + 1.0) / 2.0
  if weight_fn == "sigmoid":
    return jax.nn.sigmoid(arg)
  raise ValueError(f"unknown GAIR weight function {weight_fn!r}; expected one of {WEIGHT_FNS}")


def normalize_weights(w, mask=None):
  """omega = n w / sum w over the (unmasked) examples, so the weights sum to n and average 1."""
  if mask is None:
    return w * w.shape[0] / jnp.sum(w)
  mask = mask.astype(w.dtype)
  return w * jnp.sum(mask) / jnp.maximum(jnp.sum(w * mask), 1e-30)


def gair_weights(kappa, num_steps: int, lam, weight_fn: str = "tanh", mask=None):
  """Normalised GAIR weights (``GAIR.py::GAIR``), summing to B; constants for the loss."""
  return stop(normalize_weights(gair_raw_weights(kappa, num_steps, lam, weight_fn), mask))


def lambda_at(epoch1, *, lam, lam_max, schedule, lambda_begin_epoch, epochs):
  """The Lambda schedule at 1-indexed epoch e (traced), as ``GAIRAT.py::adjust_Lambda``."""
  started = epoch1 >= lambda_begin_epoch
  if schedule == "fixed":
    return jnp.where(started, lam, lam_max)
  return jnp.where(started, lam_max - (epoch1 / epochs) * (lam_max - lam), lam_max)


def make_gairat(*, eps: float = 0.031, step_size: float = 0.007, steps: int = 10, lam: float = -1.0,
                lam_max: float = math.inf, weight_fn: str = "tanh", lambda_schedule: str = "fixed",
                begin_epoch: int = 60, lambda_begin_epoch: int = 60, epochs: int = 120,
                norm: str = "linf") -> Method:
  weight_fn = weight_fn.lower()
  if weight_fn not in WEIGHT_FNS:
    raise ValueError(f"gairat weight_fn must be one of {WEIGHT_FNS}; got {weight_fn!r}")
  if lambda_schedule not in LAMBDA_SCHEDULES:
    raise ValueError(f"gairat lambda_schedule must be one of {LAMBDA_SCHEDULES}; got {lambda_schedule!r}")
  if eps < 0 or step_size < 0:
    raise ValueError(f"gairat needs eps, step_size >= 0; got {eps}, {step_size}")
  if steps < 1 or (weight_fn != "discrete" and steps < 2):
    raise ValueError(f"gairat needs steps >= 2 for the {weight_fn} weights (they divide by "
                     f"h = floor(K/2)); got {steps}")
  if lambda_schedule == "linear" and not math.isfinite(lam_max):
    raise ValueError("gairat lambda_schedule='linear' needs a finite lam_max (inf - inf is NaN)")
  if begin_epoch < 0 or lambda_begin_epoch < 0 or epochs < 1:
    raise ValueError(f"gairat epochs must be >= 0; got begin_epoch={begin_epoch}, "
                     f"lambda_begin_epoch={lambda_begin_epoch}, epochs={epochs}")

  def attack(params, batch_stats, batch, key, method_state, ctx):
    x, y = batch["image"], batch["label"]
    logits_fn = logits_fn_for(ctx, params, batch_stats)
    x0 = start_point(key, x, eps, "uniform", norm)
    x_adv, kappa, _ = ga_pgd(logits_fn, x, y, x0, eps=eps, step_size=step_size, steps=steps, norm=norm)
    # GAIRAT trains on x_adv only; clean accuracy (a metric) comes from one inference pass.
    clean_acc = accuracy(logits_fn(x), y)
    return x_adv, {"kappa": kappa, "clean_acc": clean_acc}

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    y, mask = batch["label"], batch.get("mask")
    out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
    ce = classification_loss(out_adv.logits, y)
    epoch1 = jnp.floor(ctx.epoch) + 1.0
    lam_t = lambda_at(epoch1, lam=lam, lam_max=lam_max, schedule=lambda_schedule,
                      lambda_begin_epoch=lambda_begin_epoch, epochs=epochs)
    omega = gair_weights(attack_aux["kappa"], steps, lam_t, weight_fn, mask)
    # Before begin_epoch the code uses the plain mean CE: weights exactly 1.
    omega = jnp.where(epoch1 >= begin_epoch, omega, jnp.ones_like(omega))
    total = masked_mean(omega * ce, mask)
    metrics = {"loss": total, "acc": attack_aux["clean_acc"], "adv_acc": accuracy(out_adv.logits, y),
               "kappa": jnp.mean(attack_aux["kappa"]), "weight_max": jnp.max(omega)}
    return total, LossAux(batch_stats, method_state, metrics)

  return Method(name="gairat", loss=loss, attack=attack,
                hparams=dict(eps=eps, step_size=step_size, steps=steps, lam=lam, lam_max=lam_max,
                             weight_fn=weight_fn, lambda_schedule=lambda_schedule,
                             begin_epoch=begin_epoch, lambda_begin_epoch=lambda_begin_epoch,
                             epochs=epochs, norm=norm))


REGISTRY = {"gairat": make_gairat}
