"""AdAP (Li, Tong, Yang 2023, NeurIPS): adversarial AP maximisation, 5 variants + the paper's binary baselines.

Every method here needs a single-logit model (``model.head='single_logit'``), labels y in {0, 1}
and the dataset index ``batch['index']`` (estimator slots). Score maps: s = sigmoid(z) for the AP
surrogate, BCE and pointwise KL; h = tanh(z) / tau for the listwise term (the reference code's
``losses.py``). The AP-type methods (adap_*, ap_max) declare ``batches='positive_balanced'``: half of
every batch are positives, the reference's ``DataSampler`` (a batch without positives has no AP
estimate); the baselines train on shuffled batches.

    loss_AP(s)    SOAP estimator of P(w) = -(1/n+) sum_i phi1_i/phi2_i     (adap_state.soap_loss, eqs. 1-3)
    loss_R(h,h')  compositional estimator of R = KL(p_t(x) || p_t(x+delta)) (adap_state.listwise_loss, eqs. 8, 11-12)
    KL_pt(q; p)   (1/|B|) sum_i KL(Bern(p_i) || Bern(q_i)), log(q + 1e-12)    (torch KLDivLoss(batchmean))

| name       | attack (inner max, inference mode)              | outer loss                                  |
|------------|--------------------------------------------------|---------------------------------------------|
| adap_mm    | mean(p L) on s(x+delta), temporary u (eq. 14/16) | loss_AP(s(x+delta))                         |
| adap_pz    | sum_i KL(Bern(s(x_i)) || Bern(s(x_i+delta_i)))   | loss_AP(s(x)) + lam KL_pt(s(x'); s(x))      |
| adap_lz    | listwise: grad_{h'} R with temporary u_r         | loss_AP(s(x)) + lam loss_R(h, h')           |
| adap_ln    | BCE(s(x+delta), y)                               | loss_AP(s(x)) + lam loss_R(h, h')           |
| adap_lpn   | BCE(s(x+delta), y)                               | loss_AP(s(x)) + lam (loss_R + KL_pt)        |
| ap_max     | none                                             | loss_AP(s(x))                               |

Paper symbols -> arguments: lambda = ``lam``; gamma_1 (AP estimators, also the MM attack's) =
``gamma1``; gamma_2 (listwise estimators) = ``gamma2``; m = ``margin`` (0.6); tau = ``tau`` (1);
attack eps / step / T = ``eps`` / ``step_size`` / ``steps`` (0.031 / 0.01 / 6, start x + 0.001 N(0, I),
no clip before the first step). Forward order is the code's: clean x, then x_adv, both in train mode
(BN statistics updated twice). ``ap_max`` is the "AP Max." baseline; the paper fine-tunes it from a
CE checkpoint with the head re-initialised: ``jaxrobust.train.init_from.finetune_state(trainer, run_dir)``
(config key ``train.init_from``).

Binary baselines in the AdAP repository's single-logit form (the paper's Section 5 baselines; plain
shuffled loader, no positive oversampling; y in {0,1}, p = s(x), q = s(x_adv)):

    bce           BCE(p, y)                                      ('standard' computes the same)
    pgd_bce       attack PGD-BCE; BCE(q, y)
    trades_binary attack Bernoulli-KL; BCE(p, y) + lam KL_pt(q; p)
    mart_binary   attack PGD-BCE; BCE(q, y) + lam mean_i KL(Bern(p_i) || Bern(q_i)) |y_i - p_i|

(plain BCE, not MART's boosted CE; the weight |y - p| is not detached.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust.methods.base import DatasetInfo, LossAux, Method, accuracy, masked_mean
from jaxrobust.methods.adap_state import (MARGIN, AdAPState, ap_attack_loss, direct_ap_surrogate,
                                          init_adap_state, listwise_attack_loss, listwise_kl,
                                          listwise_loss, single_logit, soap_loss,
                                          top_one_scores)
from jaxrobust.methods.common import pgd_attack, training_pgd
from jaxrobust.methods.mart import mart_kl

VARIANTS = ("mm", "pz", "lz", "ln", "lpn", "ap")
# Positives in a positive-balanced batch: the reference's pos_num = batch_size // 2 (64 of 128).
POSITIVE_FRACTION = 0.5
# Training attack of every AdAP-repo method: PGD-Linf, 6 steps of 0.01, eps 0.031 (the paper's Section 5).
ATTACK = dict(eps=0.031, step_size=0.01, steps=6)


def pointwise_kl(adv_logits, nat_logits, mask=None):
  """KL_pt = (1/|B|) sum_i sum_k p_ik (log p_ik - log(q_ik + 1e-12)) for Bernoulli p = s(x), q = s(x').

  torch's ``KLDivLoss(batchmean)(log([q, 1-q] + 1e-12), [p, 1-p])``; p is not detached.
  """
  return masked_mean(mart_kl(adv_logits, nat_logits), mask)


def _check(name, *, eps, step_size, steps, lam=0.0, gamma1=0.1, gamma2=0.9, margin=MARGIN, tau=1.0):
  if min(eps, step_size, steps) < 0:
    raise ValueError(f"{name}: eps, step_size, steps must be >= 0; got {eps}, {step_size}, {steps}")
  if lam < 0:
    raise ValueError(f"{name}: lam (lambda) must be >= 0; got {lam}")
  for g, what in ((gamma1, "gamma1"), (gamma2, "gamma2")):
    if not 0.0 < g <= 1.0:
      raise ValueError(f"{name}: {what} is the moving-average weight of the new batch value and must be in "
                       f"(0, 1]; got {g}")
  if margin <= 0 or tau <= 0:
    raise ValueError(f"{name}: margin and tau must be > 0; got {margin}, {tau}")


def make_adap(variant: str = "lpn", *, lam: float = 0.8, gamma1: float = 0.1, gamma2: float = 0.9,
              margin: float = MARGIN, tau: float = 1.0, eps: float = ATTACK["eps"],
              step_size: float = ATTACK["step_size"], steps: int = ATTACK["steps"],
              norm: str = "linf") -> Method:
  """One AdAP variant ('mm', 'pz', 'lz', 'ln', 'lpn') or AP maximisation ('ap'); see the module table."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown AdAP variant {variant!r}; choose one of {VARIANTS}")
  _check(f"adap_{variant}", eps=eps, step_size=step_size, steps=steps, lam=lam, gamma1=gamma1,
         gamma2=gamma2, margin=margin, tau=tau)
  uses_listwise = variant in ("lz", "ln", "lpn")
  uses_pointwise = variant in ("pz", "lpn")

  def init_state(info: DatasetInfo) -> AdAPState:
    return init_adap_state(int(info.num_examples))

  def attack(params, batch_stats, batch, key, state: AdAPState, ctx):
    mask, index = batch.get("mask"), batch["index"]
    if variant == "mm":
      loss = ap_attack_loss(state.u_all[index], state.u_pos[index], gamma=gamma1, margin=margin, mask=mask)
    elif variant == "pz":
      loss = losses_lib.bernoulli_kl  # TRADES_attack: no 1e-12 inside the log
    elif variant == "lz":
      loss = listwise_attack_loss(state.u_r, gamma=gamma2, tau=tau, mask=mask)
    else:
      loss = losses_lib.binary_cross_entropy
    return training_pgd(params, batch_stats, batch, key, ctx, eps=eps, step_size=step_size, steps=steps,
                        loss=loss, init="normal", norm=norm), None

  def loss(params, batch_stats, batch, x_adv, attack_aux, state: AdAPState, key, ctx):
    y, index, mask = batch["label"], batch["index"], batch.get("mask")
    metrics = {}
    if variant == "mm":  # the AP surrogate is minimised on the perturbed batch only
      out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
      z_adv = single_logit(out_adv.logits)
      s = jax.nn.sigmoid(z_adv)
      metrics["adv_acc"] = accuracy(out_adv.logits, y)
    else:
      out, batch_stats = ctx.forward(params, batch_stats, batch["image"])
      z = single_logit(out.logits)
      s = jax.nn.sigmoid(z)
      metrics["acc"] = accuracy(out.logits, y)
      if variant != "ap":
        out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
        z_adv = single_logit(out_adv.logits)
        metrics["adv_acc"] = accuracy(out_adv.logits, y)
    loss_ap, (u_all, u_pos) = soap_loss(s, y, index, state.u_all, state.u_pos, gamma=gamma1, margin=margin,
                                        mask=mask)
    total = loss_ap
    u_r = state.u_r
    if uses_listwise:
      h, h_adv = top_one_scores(z, tau), top_one_scores(z_adv, tau)
      loss_r, u_r = listwise_loss(h, h_adv, state.u_r, gamma=gamma2, mask=mask)
      total = total + lam * loss_r
      metrics["loss_listwise"] = loss_r
      metrics["listwise_kl"] = jax.lax.stop_gradient(listwise_kl(h, h_adv, mask))
    if uses_pointwise:
      kl = pointwise_kl(z_adv, z, mask)
      total = total + lam * kl
      metrics["loss_pointwise"] = kl
    metrics.update(loss=total, loss_ap=loss_ap,
                   surrogate_ap=jax.lax.stop_gradient(direct_ap_surrogate(s, y, mask, margin)))
    return total, LossAux(batch_stats, AdAPState(u_all, u_pos, u_r), metrics)

  name = "ap_max" if variant == "ap" else f"adap_{variant}"
  return Method(name=name, loss=loss, attack=None if variant == "ap" else attack, init_state=init_state,
                hparams=dict(variant=variant, lam=lam, gamma1=gamma1, gamma2=gamma2, margin=margin, tau=tau,
                             eps=eps, step_size=step_size, steps=steps, norm=norm),
                batches="positive_balanced", positive_fraction=POSITIVE_FRACTION)


# Keys a protocol config carries for every method; AP Max. has no attack and no regulariser.
_NO_ATTACK_KEYS = frozenset({"lam", "eps", "step_size", "steps", "norm", "gamma2", "tau"})


def make_ap_max(*, gamma1: float = 0.1, margin: float = MARGIN, **not_used) -> Method:
  """AP maximisation (SOAP, Qi et al. 2021): loss_AP(sigmoid(f(x))) only.

  Accepts (and ignores) the attack / regulariser keys of the protocol configs, so that
  ``method.name=ap_max`` works on any AdAP config; any other key is an error.
  """
  unknown = sorted(set(not_used) - _NO_ATTACK_KEYS)
  if unknown:
    raise ValueError(f"ap_max takes gamma1 and margin; got unknown hyper-parameters {unknown}")
  return make_adap("ap", gamma1=gamma1, margin=margin, lam=0.0)


# -------------------------------------------------------------------------------------------
# Binary baselines (single logit), as the AdAP repository trains them
# -------------------------------------------------------------------------------------------

def _bce(logits, y, mask):
  return masked_mean(losses_lib.binary_cross_entropy(single_logit(logits), y), mask)


# Default KL weights: the paper's grids are {1, ..., 100} for TRADES and {0.1, ..., 10} for MART (Section 5);
# it tunes them on validation robust AP.
BASELINE_LAM = {"trades_binary": 1.0, "mart_binary": 0.8}


def make_binary_baseline(kind: str, *, lam: float | None = None, eps: float = ATTACK["eps"],
                         step_size: float = ATTACK["step_size"], steps: int = ATTACK["steps"],
                         norm: str = "linf") -> Method:
  """'bce', 'pgd_bce', 'trades_binary' or 'mart_binary' (module docstring); lam = the KL weight
  (``BASELINE_LAM`` when None; unused by 'bce' and 'pgd_bce')."""
  if kind not in ("bce", "pgd_bce", "trades_binary", "mart_binary"):
    raise ValueError(f"unknown binary baseline {kind!r}")
  lam = BASELINE_LAM.get(kind, 0.0) if lam is None else float(lam)
  _check(kind, eps=eps, step_size=step_size, steps=steps, lam=lam)
  attack_loss = losses_lib.bernoulli_kl if kind == "trades_binary" else losses_lib.binary_cross_entropy

  attack = pgd_attack(eps=eps, step_size=step_size, steps=steps, loss=attack_loss, init="normal", norm=norm)

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    y, mask = batch["label"], batch.get("mask")
    metrics = {}
    if kind == "pgd_bce":
      out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
      total = _bce(out_adv.logits, y, mask)
      metrics["adv_acc"] = accuracy(out_adv.logits, y)
    else:
      out, batch_stats = ctx.forward(params, batch_stats, batch["image"])
      metrics["acc"] = accuracy(out.logits, y)
      if kind == "bce":
        total = _bce(out.logits, y, mask)
      else:
        out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
        metrics["adv_acc"] = accuracy(out_adv.logits, y)
        z, z_adv = single_logit(out.logits), single_logit(out_adv.logits)
        if kind == "trades_binary":
          natural = _bce(z, y, mask)
          robust = pointwise_kl(z_adv, z, mask)
        else:  # mart_binary: BCE on x_adv, KL weighted by |y - p| (= 1 - p_y)
          natural = _bce(z_adv, y, mask)
          weight = jnp.abs(y.astype(z.dtype) - jax.nn.sigmoid(z))
          robust = masked_mean(mart_kl(z_adv, z) * weight, mask)
        total = natural + lam * robust
        metrics.update(loss_natural=natural, loss_robust=robust)
    metrics["loss"] = total
    return total, LossAux(batch_stats, method_state, metrics)

  return Method(name=kind, loss=loss, attack=None if kind == "bce" else attack,
                hparams=dict(lam=lam, eps=eps, step_size=step_size, steps=steps, norm=norm))


def _factory(variant):
  def make(**kw):
    return make_adap(variant, **kw)
  return make


def _baseline(kind):
  def make(**kw):
    return make_binary_baseline(kind, **kw)
  return make


REGISTRY = {
    "adap_mm": _factory("mm"),
    "adap_pz": _factory("pz"),
    "adap_lz": _factory("lz"),
    "adap_ln": _factory("ln"),
    "adap_lpn": _factory("lpn"),
    "ap_max": make_ap_max,
    "bce": _baseline("bce"),
    "pgd_bce": _baseline("pgd_bce"),
    "trades_binary": _baseline("trades_binary"),
    "mart_binary": _baseline("mart_binary"),
}

__all__ = ["make_adap", "make_ap_max", "make_binary_baseline", "pointwise_kl", "REGISTRY", "VARIANTS",
           "POSITIVE_FRACTION"]
