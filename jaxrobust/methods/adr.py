"""ADR: Adversarial Divergence Reduction (Bui et al. 2020, ECCV, "Improving adversarial robustness
by enforcing local and global compactness"), as the authors' code computes it.

With z = f(x) the latent (the model's penultimate features), l = g(z) the logits, x' the training
adversary's point, z' = f(x'), l' = g(z'), p = softmax(l), sg = stop-gradient and W the label weights:

    L_lc   = (1/B) sum_i d(sg z_i, z'_i)                                     local compactness (eq. 1)
    W_ij   = (alpha - D_ij / max D) / alpha,  D_ij = ||onehot(y_i) - onehot(y_j)||_1
           = 1 if y_i = y_j else (alpha - 1) / alpha     (alpha = 0.99: -0.0101)          (eq. 2)
    L_gb   = (1/B^2) sum_ij sg(W_ij) d(sg z_j, z'_i)                          global compactness (eq. 3)
    L_smt  = (1/B) sum_i CE(softmax(sg l_i), l'_i)   (= KL(p_i || p'_i) + H(p_i), VAT-style, eq. 6)
    L_conf = (1/B) sum_i H(softmax(l'_i))                                    (eq. 5, adversarial side)
    L_gbsmt= (1/B^2) sum_ij sg(W_ij) CE(softmax(sg l_j), l'_i)               (code only; default weight 0)

    ADR-ADV:    L = w_nat CE(l, y) + w_adv CE(l', y)              + lc L_lc + gb L_gb + smt L_smt + conf L_conf + gbsmt L_gbsmt
    ADR-TRADES: L = CE(l, y) + beta (1/B) sum_i KL(p_i || p'_i)   + the same ADR terms

d is the code's mean absolute difference over latent dimensions (||.||_1 / k); ``distance`` 'l1',
'l2', 'linf' give the thesis's ||.||_p instead. Where the thesis (Bui 2022, Ch. 3) and the code
disagree the default is the code, as the thesis's own numbers come from it, and the thesis form is a flag:

* ``pairs``: 'adv_clean' (code: adversarial z'_i against clean sg z_j, diagonal included) or
  'clean_clean' (thesis eq. 3: clean z_i against clean z_j, gradient through both).
* ``conf_on``: 'adv' (code: adversarial entropy only) or 'both' (thesis eq. 5: + H(p)).
* a batch of one class (max D = 0) gives W = 1 for every pair instead of the code's 0/0.

The training adversary is PGD on CE from a uniform start (ADR-ADV) or the TRADES KL adversary from
x + 0.001 N(0, I) (ADR-TRADES); ``attack_bn`` selects the batch-norm mode while it runs ('eval' as
ADR_pt, 'train' as the TF code). Defaults are the CIFAR-10 ResNet setting (eps 0.031, step 0.007,
10 steps; lc = gb = smt = 1, conf = 0); ADR-TRADES' beta is ADR_pt's 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust.methods.base import LossAux, Method, accuracy, masked_mean, stop
from jaxrobust.methods.common import (ATTACK_BN_MODES, check_threat, classification_loss, kl_to_clean,
                                      max_last_axis, mean_over_members, member_outputs, pgd_attack)
from jaxrobust.types import Array

DISTANCES = ("mean_abs", "l1", "l2", "linf")
PAIRS = ("adv_clean", "clean_clean")
CONF_ON = ("adv", "both")


def latent_distance(a: Array, b: Array, distance: str = "mean_abs") -> Array:
  """Row-wise distance between latents a, b (..., k): mean|a - b| (code), or ||a - b||_{1,2,inf}."""
  diff = a - b
  if distance == "mean_abs":
    return jnp.mean(jnp.abs(diff), axis=-1)
  if distance == "l1":
    return jnp.sum(jnp.abs(diff), axis=-1)
  if distance == "l2":
    # sqrt with a safe gradient at 0 (equal latents).
    sq = jnp.sum(diff * diff, axis=-1)
    return jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)
  if distance == "linf":
    return max_last_axis(jnp.abs(diff))  # not jnp.max: see common.max_last_axis
  raise ValueError(f"ADR distance must be one of {DISTANCES}; got {distance!r}")


def _flat(z: Array) -> Array:
  return z.reshape(z.shape[0], -1)


def local_compactness(z_clean: Array, z_adv: Array, distance: str = "mean_abs") -> Array:
  """(B,) per-example d(sg z_i, z'_i); its batch mean is L_lc."""
  return latent_distance(stop(_flat(z_clean)), _flat(z_adv), distance)


def label_weights(y: Array, num_classes: int, alpha: float = 0.99, mask: Array | None = None,
                  dtype=jnp.float32) -> Array:
  """(B, B) W_ij = (alpha - D_ij / max D) / alpha with D_ij = ||onehot(y_i) - onehot(y_j)||_1.

  D is 0 (same class) or 2, so W_ij = 1 for pairs of one class and (alpha - 1) / alpha otherwise;
  max D runs over the pairs of valid (mask 1) examples, and when it is 0 (one class only) W = 1
  everywhere instead of the code's 0/0. ``num_classes`` is kept for the one-hot form's signature.
  """
  del num_classes  # D_ij depends only on whether the labels agree
  same = y[:, None] == y[None, :]
  valid = jnp.ones_like(same) if mask is None else mask.astype(bool)[:, None] & mask.astype(bool)[None, :]
  two_classes = jnp.any(~same & valid)
  other = jnp.where(two_classes, (alpha - 1.0) / alpha, 1.0)
  return jnp.where(same, 1.0, other).astype(dtype)


def _pair_mean(values: Array, mask: Array | None) -> Array:
  """(1/B^2) sum_ij values_ij over valid pairs (B = number of valid examples)."""
  if mask is None:
    return jnp.mean(values)
  m = mask.astype(values.dtype)
  return jnp.sum(values * m[:, None] * m[None, :]) / jnp.maximum(jnp.sum(m), 1.0) ** 2


def pairwise_compactness(z_clean: Array, z_adv: Array, pairs: str = "adv_clean",
                         distance: str = "mean_abs") -> Array:
  """(B, B) c_ij: d(z'_i, sg z_j) (code) or d(z_i, z_j) (thesis). The code's diagonal is L_lc's terms."""
  zc = _flat(z_clean)
  if pairs == "adv_clean":
    return latent_distance(_flat(z_adv)[:, None, :], stop(zc)[None, :, :], distance)
  if pairs == "clean_clean":
    return latent_distance(zc[:, None, :], zc[None, :, :], distance)
  raise ValueError(f"ADR pairs must be one of {PAIRS}; got {pairs!r}")


def global_compactness(z_clean: Array, z_adv: Array, y: Array, num_classes: int, *, alpha: float = 0.99,
                       pairs: str = "adv_clean", distance: str = "mean_abs",
                       mask: Array | None = None) -> Array:
  """L_gb = (1/B^2) sum_ij sg(W_ij) c_ij (scalar)."""
  w = stop(label_weights(y, num_classes, alpha, mask, dtype=z_adv.dtype))
  return _pair_mean(w * pairwise_compactness(z_clean, z_adv, pairs, distance), mask)


def soft_cross_entropy(target_logits: Array, logits: Array) -> Array:
  """(...,) CE(softmax(sg target_logits), logits) = -sum_c p_c log softmax(logits)_c."""
  p = jax.nn.softmax(stop(target_logits), axis=-1)
  return -jnp.sum(p * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def smoothness(clean_logits: Array, adv_logits: Array) -> Array:
  """(B,) CE(softmax(sg l_i), l'_i): the gradient of KL(p_i || p'_i) through the adversarial side only."""
  return soft_cross_entropy(clean_logits, adv_logits)


def entropy(logits: Array) -> Array:
  """(B,) H(softmax(l)) = -sum_c p_c log p_c (gradient through both factors)."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def global_smoothness(clean_logits: Array, adv_logits: Array, y: Array, num_classes: int, *,
                      alpha: float = 0.99, mask: Array | None = None) -> Array:
  """L_gbsmt = (1/B^2) sum_ij sg(W_ij) CE(softmax(sg l_j), l'_i) (scalar)."""
  w = stop(label_weights(y, num_classes, alpha, mask, dtype=adv_logits.dtype))
  ce = soft_cross_entropy(clean_logits[None, :, :], adv_logits[:, None, :])
  return _pair_mean(w * ce, mask)


def adr_terms(out_nat, out_adv, y, num_classes: int, *, alpha=0.99, pairs="adv_clean",
              distance="mean_abs", conf_on="adv", mask=None, need_gbsmt=True) -> dict:
  """The ADR regularisers as scalars: lc, gb, smt, conf, gbsmt. For an ensemble the compactness terms (lc, gb)
  are the mean over members of each member's own latents; the others read the ensemble's logits."""
  latent = mean_over_members([
      {"lc": masked_mean(local_compactness(nat.features, adv.features, distance), mask),
       "gb": global_compactness(nat.features, adv.features, y, num_classes, alpha=alpha, pairs=pairs,
                                distance=distance, mask=mask)}
      for nat, adv in zip(member_outputs(out_nat), member_outputs(out_adv))])
  terms = {**latent, "smt": masked_mean(smoothness(out_nat.logits, out_adv.logits), mask)}
  conf = entropy(out_adv.logits)
  if conf_on == "both":
    conf = conf + entropy(out_nat.logits)
  terms["conf"] = masked_mean(conf, mask)
  terms["gbsmt"] = (global_smoothness(out_nat.logits, out_adv.logits, y, num_classes, alpha=alpha, mask=mask)
                    if need_gbsmt else jnp.zeros(()))
  return terms


def _check(name, *, eps, step_size, steps, weights: dict, alpha, pairs, distance, conf_on, attack_bn):
  check_threat(name, eps, step_size, steps)
  for k, v in weights.items():
    if v < 0:
      raise ValueError(f"{name} {k} must be >= 0; got {v}")
  if not 0.0 < alpha <= 1.0:
    raise ValueError(f"{name} alpha (the label-weight scale) must be in (0, 1]; got {alpha}")
  for value, allowed, what in ((pairs, PAIRS, "pairs"), (distance, DISTANCES, "distance"),
                               (conf_on, CONF_ON, "conf_on"), (attack_bn, ATTACK_BN_MODES, "attack_bn")):
    if value not in allowed:
      raise ValueError(f"{name} {what} must be one of {allowed}; got {value!r}")


def _make_adr(name: str, base: str, *, eps, step_size, steps, norm, attack_bn, natural_weight, adv_weight,
              beta, lc, gb, smt, conf, gbsmt, alpha, pairs, distance, conf_on) -> Method:
  weights = dict(natural_weight=natural_weight, adv_weight=adv_weight, beta=beta, lc=lc, gb=gb, smt=smt,
                 conf=conf, gbsmt=gbsmt)
  _check(name, eps=eps, step_size=step_size, steps=steps, weights=weights, alpha=alpha, pairs=pairs,
         distance=distance, conf_on=conf_on, attack_bn=attack_bn)
  if base == "trades":
    attack = pgd_attack(eps=eps, step_size=step_size, steps=steps, loss="kl", init="normal", norm=norm,
                        bn=attack_bn)
  else:
    attack = pgd_attack(eps=eps, step_size=step_size, steps=steps, norm=norm, bn=attack_bn)
  lam = dict(lc=lc, gb=gb, smt=smt, conf=conf, gbsmt=gbsmt)

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    y, mask = batch["label"], batch.get("mask")
    out_nat, batch_stats = ctx.forward(params, batch_stats, batch["image"])
    out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
    natural = masked_mean(classification_loss(out_nat.logits, y), mask)
    if base == "trades":
      robust = masked_mean(kl_to_clean(out_adv.logits, out_nat.logits), mask)
      total = natural + beta * robust
    else:
      robust = masked_mean(classification_loss(out_adv.logits, y), mask)
      total = natural_weight * natural + adv_weight * robust
    terms = adr_terms(out_nat, out_adv, y, ctx.num_classes, alpha=alpha, pairs=pairs, distance=distance,
                      conf_on=conf_on, mask=mask, need_gbsmt=gbsmt > 0)
    for k, w in lam.items():
      if w:
        total = total + w * terms[k]
    metrics = {"loss": total, "loss_natural": natural, "loss_robust": robust,
               **{f"loss_{k}": v for k, v in terms.items()},
               "acc": accuracy(out_nat.logits, y), "adv_acc": accuracy(out_adv.logits, y)}
    return total, LossAux(batch_stats, method_state, metrics)

  hparams = dict(eps=eps, step_size=step_size, steps=steps, norm=norm, attack_bn=attack_bn, lc=lc, gb=gb,
                 smt=smt, conf=conf, gbsmt=gbsmt, alpha=alpha, pairs=pairs, distance=distance, conf_on=conf_on)
  if base == "trades":
    hparams["beta"] = beta
  else:
    hparams.update(natural_weight=natural_weight, adv_weight=adv_weight)
  return Method(name=name, loss=loss, attack=attack, hparams=hparams, needs_features=True)


def make_adr_adv(*, eps: float = 0.031, step_size: float = 0.007, steps: int = 10, norm: str = "linf",
                 attack_bn: str = "eval", natural_weight: float = 1.0, adv_weight: float = 1.0,
                 lc: float = 1.0, gb: float = 1.0, smt: float = 1.0, conf: float = 0.0, gbsmt: float = 0.0,
                 alpha: float = 0.99, pairs: str = "adv_clean", distance: str = "mean_abs",
                 conf_on: str = "adv") -> Method:
  """ADR-ADV: natural_weight CE(x) + adv_weight CE(x') (PGD-CE adversary) + the ADR terms.

  natural_weight 1 / adv_weight 1 are the thesis's and ADR_pt's (TF code: 0.5 / 0.5; the ASCL
  repository's ADR baseline: 0 / 1)."""
  return _make_adr("adr_adv", "adv", eps=eps, step_size=step_size, steps=steps, norm=norm, attack_bn=attack_bn,
                   natural_weight=natural_weight, adv_weight=adv_weight, beta=0.0, lc=lc, gb=gb, smt=smt,
                   conf=conf, gbsmt=gbsmt, alpha=alpha, pairs=pairs, distance=distance, conf_on=conf_on)


def make_adr_trades(*, eps: float = 0.031, step_size: float = 0.007, steps: int = 10, norm: str = "linf",
                    attack_bn: str = "eval", beta: float = 1.0, lc: float = 1.0, gb: float = 1.0,
                    smt: float = 1.0, conf: float = 0.0, gbsmt: float = 0.0, alpha: float = 0.99,
                    pairs: str = "adv_clean", distance: str = "mean_abs", conf_on: str = "adv") -> Method:
  """ADR-TRADES: CE(x) + beta KL(p || p') (TRADES KL adversary) + the ADR terms (beta 1: ADR_pt;
  the ASCL repository's baseline uses 6)."""
  return _make_adr("adr_trades", "trades", eps=eps, step_size=step_size, steps=steps, norm=norm,
                   attack_bn=attack_bn, natural_weight=1.0, adv_weight=0.0, beta=beta, lc=lc, gb=gb, smt=smt,
                   conf=conf, gbsmt=gbsmt, alpha=alpha, pairs=pairs, distance=distance, conf_on=conf_on)


REGISTRY = {"adr_adv": make_adr_adv, "adr_trades": make_adr_trades}
