"""The CCE paper's ensemble baselines (Bui et al. 2021, AAAI, section 5).

ADV-EN (``CCE:lib_method.py::adv_EN``): adversarial training of every member on the ensemble's adversarial example,

    L = sum_n [ C(f^n(x), y) + C(f^n(x_a^en), y) ],   x_a^en = PGD(f^en, x),  f^en = (1/N) sum_n softmax(z^n)

(the sum of member cross-entropies, not the cross-entropy of the averaged probabilities).

ADP (Pang et al. 2019, ICML, "Improving adversarial robustness via promoting ensemble diversity", Eq. 3-5;
``CCE:lib_method.py::adv_ADP``, the authors' ``log_det`` / ``Ensemble_Entropy``):

    L = sum_{z in {x, x_a^en}} [ sum_n C(f^n(z), y) - alpha H(f^en(z)) - beta log det(M~^T M~ + 1e-6 I) ]

M~ = (f~^1_{\\y}, ..., f~^N_{\\y}) holds each member's *non-maximal* prediction: its probability vector with the
true class y removed (Pang et al.: "non-maximal" relative to the true label, not to the argmax), scaled to unit
L2 norm; det(M~^T M~) is the squared volume they span (ensemble diversity). alpha = 2, beta = 0.5 (ADP_{2,0.5}).
Label smoothing is off, as in the CCE code's runs (label_smooth=1.0). Numerics: where the members' non-maximal
predictions are nearly parallel (near-uniform outputs, e.g. at initialisation) det(M~^T M~) is ~1e-4 and its
float32 gradient is accurate to ~1e-3 relative (the authors' TF code forms the same Gram matrix), so ADP runs
are less reproducible across devices / layouts than the other methods. Optimiser: at initialisation the log-det
term's gradient is 14-20x the cross-entropy's (SmallCNN members, 2-3 of them); Pang et al. and Bui et al. train with
Adam 1e-3, which absorbs that, while SGD at a usual step size has collapsed ADP to near-uniform members
(``configs.base.warn_known_pitfalls`` warns).

The attacks run PGD on the ensemble's logits log f^en (CE = -log f^en_y), in inference mode; ``attack_label``
'label' (true y) or 'prediction' (the ensemble's clean prediction: the code's cleverhans default).
Each loss forward is one train-mode call per input batch (x, then x_a^en), BN normalising each by its own
statistics as the Keras code's per-batch calls do. Both methods need an ensemble model (``members >= 2``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust.methods.adr import entropy
from jaxrobust.methods.base import LossAux, Method, accuracy, masked_mean
from jaxrobust.methods.cce import (batch_threat, check_attack_label, check_eps_range, member_cross_entropy,
                                   require_member_forward, require_member_logits)
from jaxrobust.methods.common import check_threat, training_pgd
from jaxrobust.models.ensemble import combine_member_logits
from jaxrobust.types import Array

# Pang et al.'s det_offset: keeps log det finite when members' non-maximal predictions are parallel.
DET_OFFSET = 1e-6
# Floor under the squared L2 norm of a non-maximal prediction (zero only if p_y == 1 in floating point).
_NORM_FLOOR = 1e-30


def ensemble_pgd_attack(method: str, *, eps, step_size, steps, init="uniform", attack_label="label",
                        eps_range=None):
  """``Method.attack``: x_a^en = PGD on the ensemble logits (log mean probability), inference mode; with
  ``eps_range`` one eps ~ U(lo, hi) per batch and step eps / 10 (``cce.batch_threat``)."""
  check_threat(method, eps, step_size, steps)
  check_attack_label(method, attack_label)
  eps_range = check_eps_range(method, eps_range)

  def attack(params, batch_stats, batch, key, method_state, ctx):
    require_member_forward(method, ctx)
    if attack_label == "prediction":
      batch = dict(batch, label=losses_lib.predict(ctx.eval_forward(params, batch_stats, batch["image"]).logits))
    batch_eps, batch_step = batch_threat(key, eps, step_size, eps_range)
    return training_pgd(params, batch_stats, batch, key, ctx, eps=batch_eps, step_size=batch_step, steps=steps,
                        init=init), None
  return attack


def _forward_members(method, ctx, params, batch_stats, x):
  out, batch_stats = ctx.forward(params, batch_stats, x)
  return require_member_logits(method, out), out.logits, batch_stats


def make_adv_en(*, eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10, init: str = "uniform",
                attack_label: str = "label", eps_range: tuple[float, float] | None = None) -> Method:
  """ADV-EN; see the module docstring."""
  eps_range = check_eps_range("adv_en", eps_range)
  attack = ensemble_pgd_attack("adv_en", eps=eps, step_size=step_size, steps=steps, init=init,
                               attack_label=attack_label, eps_range=eps_range)

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    y, mask = batch["label"], batch.get("mask")
    z_nat, en_nat, batch_stats = _forward_members("adv_en", ctx, params, batch_stats, batch["image"])
    z_adv, en_adv, batch_stats = _forward_members("adv_en", ctx, params, batch_stats, x_adv)
    natural = masked_mean(jnp.sum(member_cross_entropy(z_nat, y), axis=0), mask)
    robust = masked_mean(jnp.sum(member_cross_entropy(z_adv, y), axis=0), mask)
    total = natural + robust
    metrics = {"loss": total, "loss_natural": natural, "loss_robust": robust,
               "acc": accuracy(en_nat, y), "adv_acc": accuracy(en_adv, y)}
    return total, LossAux(batch_stats, method_state, metrics)

  return Method(name="adv_en", loss=loss, attack=attack,
                hparams=dict(eps=eps, step_size=step_size, steps=steps, init=init, attack_label=attack_label,
                             eps_range=eps_range))


def non_maximal_predictions(member_logits: Array, y: Array) -> Array:
  """(M, B, K), (B,) -> (M, B, K): each member's probabilities with the true class zeroed, unit L2 norm.

  Zeroing entry y instead of removing it (Pang et al.'s (K-1)-vectors) leaves every inner product unchanged.
  """
  p = jax.nn.softmax(member_logits, axis=-1) * (1.0 - jax.nn.one_hot(y, member_logits.shape[-1],
                                                                      dtype=member_logits.dtype))
  return p * jax.lax.rsqrt(jnp.maximum(jnp.sum(p * p, axis=-1, keepdims=True), _NORM_FLOOR))


def ensemble_diversity_log_det(member_logits: Array, y: Array, det_offset: float = DET_OFFSET) -> Array:
  """(M, B, K), (B,) -> (B,) log det(M~^T M~ + det_offset I), M~ (K-1, M) the non-maximal predictions."""
  m = non_maximal_predictions(member_logits, y)
  gram = jnp.einsum("mbk,nbk->bmn", m, m) + det_offset * jnp.eye(member_logits.shape[0], dtype=m.dtype)
  return jnp.linalg.slogdet(gram)[1]


def adp_regulariser(member_logits: Array, y: Array, *, alpha: float = 2.0, beta: float = 0.5) -> Array:
  """(M, B, K), (B,) -> (B,) -alpha H(f^en) - beta log det(M~^T M~ + 1e-6 I) (Pang et al. 2019, Eq. 5),
  f^en the mean of the member probabilities."""
  ensemble_entropy = entropy(combine_member_logits(member_logits, "mean_probs"))
  return -alpha * ensemble_entropy - beta * ensemble_diversity_log_det(member_logits, y)


def make_adp(*, alpha: float = 2.0, beta: float = 0.5, eps: float = 8 / 255, step_size: float = 2 / 255,
             steps: int = 10, init: str = "uniform", attack_label: str = "label",
             eps_range: tuple[float, float] | None = None) -> Method:
  """ADP adversarial training (Pang et al. 2019) as the CCE paper runs it; see the module docstring."""
  if alpha < 0 or beta < 0:
    raise ValueError(f"adp alpha and beta must be >= 0; got {alpha}, {beta}")
  eps_range = check_eps_range("adp", eps_range)
  attack = ensemble_pgd_attack("adp", eps=eps, step_size=step_size, steps=steps, init=init,
                               attack_label=attack_label, eps_range=eps_range)

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    y, mask = batch["label"], batch.get("mask")
    metrics, total = {}, 0.0
    for name, inputs in (("natural", batch["image"]), ("robust", x_adv)):
      z, en, batch_stats = _forward_members("adp", ctx, params, batch_stats, inputs)
      ce = masked_mean(jnp.sum(member_cross_entropy(z, y), axis=0), mask)
      reg = masked_mean(adp_regulariser(z, y, alpha=alpha, beta=beta), mask)
      total = total + ce + reg
      metrics[f"loss_{name}"] = ce
      metrics[f"adp_{name}"] = reg
      metrics["acc" if name == "natural" else "adv_acc"] = accuracy(en, y)
    metrics["loss"] = total
    return total, LossAux(batch_stats, method_state, metrics)

  return Method(name="adp", loss=loss, attack=attack,
                hparams=dict(alpha=alpha, beta=beta, eps=eps, step_size=step_size, steps=steps, init=init,
                             attack_label=attack_label, eps_range=eps_range))


REGISTRY = {"adv_en": make_adv_en, "adp": make_adp}
