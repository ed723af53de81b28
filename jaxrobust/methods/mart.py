"""MART (Wang et al. 2020, ICLR), as ``YisenWang/MART/mart.py::mart_loss`` computes it.

    attack: x'_0 = x + 0.001 N(0, I);  x' <- clip_[0,1](Pi_eps(x' + alpha sign grad_x' sum_i CE(f(x'_i), y_i)))
    p' = softmax(f(x')),  p = softmax(f(x)),  y'_i = argmax_{k != y_i} p'_ik   (most probable wrong class)
    BCE_i = CE(f(x'_i), y_i) - log(1.0001 - p'_{i,y'_i} + 1e-12)                 (boosted CE)
    KL_i  = sum_k p_ik (log p_ik - log(p'_ik + 1e-12))                            (= KL(p || p'))
    L     = (1/B) sum_i BCE_i + beta * (1/B) sum_i KL_i * (1.0000001 - p_{i,y_i})

Paper symbols -> arguments: the paper's trade-off lambda = ``beta`` (6 in ``mart_loss`` and the
WRN script, 5 in ``train_resnet.py``: a config choice); eps / alpha / K = ``eps`` / ``step_size``
/ ``steps``. The weight (1 - p_y) is *not* detached (code), so the KL term also pushes p_y up.
The 1.0001 / 1e-12 / 1.0000001 constants are the code's: they keep the log finite when p' -> 1
and keep the weight strictly positive when p_y -> 1.

Thesis variant (eq. 7 of the thesis, UDR-MART): ``bce_on='nat'`` takes BCE on the natural x
(y' from p instead of p') and ``attack_loss='kl'`` crafts x' by maximising KL(p || p') (footnote 2).
Defaults are the code's (``'adv'``, ``'ce'``).

Single-logit (binary) heads: z is mapped to two-class logits [0, z] (softmax([0, z]) =
[1 - sigmoid z, sigmoid z]), so BCE becomes the binary CE boosted by -log(1.0001 - p'_{1-y}) and
the KL the Bernoulli KL; the formula is otherwise unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust.methods.base import LossAux, Method, accuracy, masked_mean
from jaxrobust.methods.common import check_threat, is_single_logit, pgd_attack

# The reference constants (see the module docstring for why they exist).
BOOST_ONE = 1.0001
LOG_EPS = 1e-12
WEIGHT_ONE = 1.0000001


def two_class_logits(logits):
  """(B, K) logits unchanged; single-logit (B,) / (B, 1) z -> (B, 2) logits [0, z].

  softmax([0, z])_1 = sigmoid(z) = P(y = 1), so every softmax formula (CE, KL, margins) on the
  result is the Bernoulli one of the single-logit model.
  """
  if is_single_logit(logits):
    z = logits.reshape(logits.shape[0])
    return jnp.stack([jnp.zeros_like(z), z], axis=1)
  return logits


def _take(values, y):
  return jnp.take_along_axis(values, y[:, None].astype(jnp.int32), axis=1)[:, 0]


def most_likely_wrong_class(probs, y):
  """y'_i = argmax_{k != y_i} probs_ik (the code's top-2 ``where(top1 == y, top2, top1)``)."""
  onehot = jax.nn.one_hot(y, probs.shape[1], dtype=bool)
  return jnp.argmax(jnp.where(onehot, -jnp.inf, probs), axis=1).astype(jnp.int32)


def boosted_ce(logits, y):
  """BCE_i = CE(z_i, y_i) - log(1.0001 - p_{i,y'_i} + 1e-12), y' the most likely wrong class."""
  logits = two_class_logits(logits)
  logp = jax.nn.log_softmax(logits, axis=-1)
  probs = jnp.exp(logp)
  wrong = most_likely_wrong_class(jax.lax.stop_gradient(probs), y)
  return -_take(logp, y) - jnp.log(BOOST_ONE - _take(probs, wrong) + LOG_EPS)


def mart_kl(adv_logits, nat_logits):
  """KL_i = sum_k p_ik (log p_ik - log(p'_ik + 1e-12)), p = softmax(nat), p' = softmax(adv).

  log p uses log_softmax (torch's KLDivLoss uses xlogy, i.e. 0 where p = 0: same value, and
  0 * finite stays 0 where p underflows); log p' keeps the code's + 1e-12.
  """
  nat_logits, adv_logits = two_class_logits(nat_logits), two_class_logits(adv_logits)
  logp = jax.nn.log_softmax(nat_logits, axis=-1)
  p = jnp.exp(logp)
  q = jax.nn.softmax(adv_logits, axis=-1)
  return jnp.sum(p * (logp - jnp.log(q + LOG_EPS)), axis=-1)


def mart_weight(nat_logits, y):
  """(1.0000001 - p_{i,y_i}) on the natural x; not detached (code)."""
  return WEIGHT_ONE - _take(jax.nn.softmax(two_class_logits(nat_logits), axis=-1), y)


def mart_terms(adv_logits, nat_logits, y, bce_on: str = "adv"):
  """Per-example (BCE_i, KL_i * (1.0000001 - p_{i,y_i})); MAIL-MART reweights only the first."""
  bce = boosted_ce(adv_logits if bce_on == "adv" else nat_logits, y)
  robust = mart_kl(adv_logits, nat_logits) * mart_weight(nat_logits, y)
  return bce, robust


def make_mart(*, eps: float = 0.031, step_size: float = 0.007, steps: int = 10, beta: float = 6.0,
              bce_on: str = "adv", attack_loss: str = "ce", norm: str = "linf") -> Method:
  if beta < 0:
    raise ValueError(f"mart beta (the KL weight lambda) must be >= 0; got {beta}")
  if bce_on not in ("adv", "nat"):
    raise ValueError(f"mart bce_on must be 'adv' (code) or 'nat' (thesis eq. 7); got {bce_on!r}")
  if attack_loss not in ("ce", "kl"):
    raise ValueError(f"mart attack_loss must be 'ce' (code) or 'kl' (thesis); got {attack_loss!r}")
  check_threat("mart", eps, step_size, steps)
  attack = pgd_attack(eps=eps, step_size=step_size, steps=steps, loss=attack_loss, init="normal", norm=norm)

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    y, mask = batch["label"], batch.get("mask")
    # The code forwards x first, then x_adv (order only affects BN running statistics).
    out_nat, batch_stats = ctx.forward(params, batch_stats, batch["image"])
    out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
    bce, robust = mart_terms(out_adv.logits, out_nat.logits, y, bce_on)
    loss_adv = masked_mean(bce, mask)
    loss_robust = masked_mean(robust, mask)
    total = loss_adv + beta * loss_robust
    metrics = {"loss": total, "loss_adv": loss_adv, "loss_robust": loss_robust,
               "acc": accuracy(out_nat.logits, y), "adv_acc": accuracy(out_adv.logits, y)}
    return total, LossAux(batch_stats, method_state, metrics)

  return Method(name="mart", loss=loss, attack=attack,
                hparams=dict(eps=eps, step_size=step_size, steps=steps, beta=beta, bce_on=bce_on,
                             attack_loss=attack_loss, norm=norm))


REGISTRY = {"mart": make_mart}
