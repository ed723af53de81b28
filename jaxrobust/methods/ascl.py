"""ASCL: Adversarial Supervised Contrastive Learning with local selection (Bui et al. 2021,
"Understanding and achieving efficient robustness with adversarial supervised contrastive learning").

The pool is the 2N latents h = [z_1..z_N, z'_1..z'_N] of the clean batch and its adversarial
examples (z = the model's penultimate features), with labels Y = [y, y] and predictions
P = [argmax l, argmax l']. For anchor a, pos_a and the legal set come from the selection strategy:

    S_aj   = -dist(h_a, h_j) / tau,   illegal and self entries removed (set to -1e9)
    loss_a = -(1 / max(|pos_a|, 1)) sum_{j in pos_a} log softmax_j(S_a)       (0 when pos_a is empty)
    L_SCL  = mean_a loss_a over the 2N anchors
    L_VAT  = (1/N) sum_i KL(p_i || p'_i)          ('batchmean'; 'elementmean' divides by C as the code)

    ASCL-ADV:    L = alpha CE(l, y) + beta CE(l', y)              + lambda_scl L_SCL + lambda_vat L_VAT
    ASCL-TRADES: L = alpha CE(l, y) + beta (1/N) sum_i KL(p_i || p'_i) + lambda_scl L_SCL + lambda_vat L_VAT

Selection strategies (thesis Table 1; code ``neg_type`` in brackets), for anchor a with label y_a
and prediction p_a, over j != a:

    global  ('all')     positives y_j = y_a; negatives y_j != y_a
    hard    ('hard')    positives as global; negatives y_j != y_a with p_j = y_a (predicted as the anchor's label)
    soft    ('soft')    positives as global; negatives y_j != y_a with p_j = p_a (predicted as the anchor)
    leaked  ('leaking') only j with p_j = p_a are legal: positives y_j = y_a, negatives y_j != y_a
    merge   ('merge')   positives as global; hard or soft negatives (code only)

Masks carry no gradient (they come from labels and argmax). L_SCL is the code's scale (mean over 2N
anchors); the thesis's L^SCL = (1/N) sum_i (L_i + L_i^a) is twice it. In leaked selection the code
keeps the own counterpart (z_i, z'_i) only when p_i = p'_i; the thesis pulls them together always
(``counterpart_always_positive``, default True, the thesis). Distances: 'cosine' (-cos, on raw z;
the thesis default), or on L2-normalised z ('normalize=True'): 'linf' (the code default), 'l2',
'l1', 'lkinf' (mean of the 10 largest |differences|) and 'matmul' (-h_a . h_j). The KL term is not
detached (both branches get gradient), as in the code. The loss is computed in the latents' dtype
(the code uses float64); with tau >= 0.01 float32 is exact to ~1e-6 relative.

The pool is the global batch: under ``jit`` with a batch sharded over devices the (2N, 2N) similarity
matrix spans every device's examples (as ADR's B x B pairs do), so the loss does not depend on the
device count; a per-device pool would need an explicit ``shard_map``, which no source uses.

The projection heads of the thesis's Table 5 belong to the model (``model.projection_head=linear``
for p1, ``mlp`` for p2; ``ModelOutput.projection``): the contrastive loss reads the projection when
the model has one, the classifier always reads z. For an ensemble (``model.members=M``) the contrastive loss
is the mean over members of each member's loss on its own latents, with its own predictions in the masks
(members' projection heads are not exposed: the latents are used); CE and VAT read the ensemble's logits.

Defaults are the thesis's Leaked-ASCL (ResNet-20, CIFAR-10): alpha = beta = 1, lambda_scl = 1,
lambda_vat = 2, tau = 0.07, cosine, no projection head, PGD-10 at eps 8/255, step 2/255; the
released code's settings are the ``cifar10_ascl_code`` config. Not implemented: the code's
two-augmented-views batches (a pool of 4N).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust.methods.base import LossAux, Method, accuracy, masked_mean, stop
from jaxrobust.methods.common import (ATTACK_BN_MODES, check_threat, classification_loss, max_last_axis,
                                      mean_over_members, member_outputs, pgd_attack)
from jaxrobust.types import Array

STRATEGIES = ("global", "hard", "soft", "leaked", "merge")
# Distance -> whether it needs L2-normalised latents (True), raw latents (False) or either (None).
DISTANCES = {"cosine": False, "linf": None, "lkinf": None, "l2": True, "l1": True, "matmul": True}
VAT_REDUCTIONS = ("batchmean", "elementmean")
MASKED = -1e9  # the code's -1e9: exp underflows to exactly 0 next to any legal similarity


def selection_masks(y: Array, pred_nat: Array, pred_adv: Array, strategy: str = "leaked", *,
                    counterpart_always_positive: bool = True) -> tuple[Array, Array]:
  """(pos, illegal), each (2N, 2N) bool over the pool [clean..., adversarial...].

  pos[a, j]: j is a positive of anchor a. illegal[a, j]: j is dropped from a's softmax (the
  anchor itself is always dropped separately). pos and illegal are disjoint.
  """
  if strategy not in STRATEGIES:
    raise ValueError(f"ASCL strategy must be one of {STRATEGIES}; got {strategy!r}")
  n = y.shape[0]
  labels = jnp.concatenate([y, y])
  preds = jnp.concatenate([pred_nat, pred_adv])
  eye = jnp.eye(2 * n, dtype=bool)
  same_label = labels[:, None] == labels[None, :]
  same_pred = preds[:, None] == preds[None, :]
  pos_all = same_label & ~eye
  neg_all = ~same_label
  hard_neg = neg_all & (labels[:, None] == preds[None, :])
  soft_neg = neg_all & same_pred
  if strategy == "global":
    pos, illegal = pos_all, jnp.zeros_like(eye)
  elif strategy == "hard":
    pos, illegal = pos_all, neg_all & ~hard_neg
  elif strategy == "soft":
    pos, illegal = pos_all, neg_all & ~soft_neg
  elif strategy == "merge":
    pos, illegal = pos_all, neg_all & ~(hard_neg | soft_neg)
  else:  # leaked
    pos = same_pred & pos_all
    illegal = ~(same_pred & ~eye)
    if counterpart_always_positive:
      counterpart = jnp.roll(eye, n, axis=1)  # (i, i + N) and (i + N, i)
      pos = pos | counterpart
      illegal = illegal & ~counterpart
  return pos, illegal & ~eye


def pairwise_distance(h: Array, distance: str = "cosine") -> Array:
  """(M, M) dist(h_a, h_j) for latents h (M, d)."""
  if distance in ("cosine", "matmul"):
    if distance == "cosine":
      h = h * jax.lax.rsqrt(jnp.maximum(jnp.sum(h * h, axis=1, keepdims=True), 1e-24))
    return -(h @ h.T)
  if distance == "l2":
    sq = jnp.sum(h * h, axis=1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * (h @ h.T), 0.0)
    return jnp.where(d2 > 0, jnp.sqrt(jnp.where(d2 > 0, d2, 1.0)), 0.0)
  diff = jnp.abs(h[:, None, :] - h[None, :, :])
  if distance == "l1":
    return jnp.sum(diff, axis=-1)
  if distance == "linf":
    return max_last_axis(diff)  # jnp.max's gradient is wrong under jit here (common.max_last_axis)
  if distance == "lkinf":
    return jnp.mean(jax.lax.top_k(diff, min(10, h.shape[1]))[0], axis=-1)
  raise ValueError(f"ASCL distance must be one of {tuple(DISTANCES)}; got {distance!r}")


class ContrastiveTerms(NamedTuple):
  """What ``contrastive_loss`` returns.

  loss: scalar L_SCL (mean over valid anchors). per_anchor: (2N,) loss_a.
  num_pos, num_neg: (2N,) positives and legal negatives per anchor (the thesis's Table 4 counts).
  mean_pos, mean_neg: their means over valid anchors.
  """
  loss: Array
  per_anchor: Array
  num_pos: Array
  num_neg: Array
  mean_pos: Array
  mean_neg: Array


def contrastive_loss(z_nat: Array, z_adv: Array, y: Array, pred_nat: Array, pred_adv: Array, *,
                     strategy: str = "leaked", tau: float = 0.07, distance: str = "cosine",
                     normalize: bool = False, counterpart_always_positive: bool = True,
                     mask: Array | None = None) -> ContrastiveTerms:
  """L_SCL over the 2N pool of clean and adversarial latents (module docstring).

  z_nat, z_adv: (N, ...) latents; y, pred_nat, pred_adv: (N,) int; mask: (N,) valid examples (padded
  ones are neither anchors nor pool members).
  """
  n = z_nat.shape[0]
  if z_adv.shape != z_nat.shape:
    raise ValueError(f"contrastive_loss: clean and adversarial latents must have one shape; got {z_nat.shape} "
                     f"and {z_adv.shape}")
  for what, v in (("y", y), ("pred_nat", pred_nat), ("pred_adv", pred_adv)):
    if v.shape != (n,):
      raise ValueError(f"contrastive_loss: {what} must have shape ({n},), one per latent; got {v.shape}")
  h = jnp.concatenate([z_nat.reshape(n, -1), z_adv.reshape(n, -1)])
  if normalize:
    h = h * jax.lax.rsqrt(jnp.maximum(jnp.sum(h * h, axis=1, keepdims=True), 1e-24))
  pos, illegal = selection_masks(y, stop(pred_nat), stop(pred_adv), strategy,
                                 counterpart_always_positive=counterpart_always_positive)
  anchor_mask = None
  if mask is not None:
    anchor_mask = jnp.concatenate([mask, mask])
    pos = pos & anchor_mask.astype(bool)[None, :]
    illegal = illegal | ~anchor_mask.astype(bool)[None, :]
  return contrastive_from_logits(-pairwise_distance(h, distance) / tau, pos, illegal, anchor_mask)


def contrastive_from_logits(logits: Array, pos: Array, illegal: Array,
                            anchor_mask: Array | None = None) -> ContrastiveTerms:
  """The loss from a (M, M) matrix of similarities / tau and the selection masks: self and illegal
  entries leave every softmax, anchors without positives contribute 0."""
  eye = jnp.eye(logits.shape[0], dtype=bool)
  log_prob = jax.nn.log_softmax(jnp.where(eye | illegal, MASKED, logits), axis=1)
  num_pos = jnp.sum(pos, axis=1).astype(logits.dtype)
  per_anchor = -jnp.sum(jnp.where(pos, log_prob, 0.0), axis=1) / jnp.maximum(num_pos, 1.0)
  num_neg = jnp.sum(~(pos | illegal | eye), axis=1).astype(logits.dtype)
  return ContrastiveTerms(masked_mean(per_anchor, anchor_mask), per_anchor, num_pos, num_neg,
                          masked_mean(num_pos, anchor_mask), masked_mean(num_neg, anchor_mask))


def vat_kl(nat_logits: Array, adv_logits: Array, reduction: str = "batchmean") -> Array:
  """(B,) KL(p_i || p'_i), divided by C for 'elementmean' (the code's KLDivLoss(reduction='mean'))."""
  kl = losses_lib.kl_divergence(adv_logits, None, nat_logits)
  if reduction == "elementmean":
    return kl / nat_logits.shape[-1]
  if reduction == "batchmean":
    return kl
  raise ValueError(f"ASCL vat_reduction must be one of {VAT_REDUCTIONS}; got {reduction!r}")


def _check(name, *, eps, step_size, steps, alpha, beta, lambda_scl, lambda_vat, tau, strategy, distance,
           normalize, vat_reduction, attack_bn):
  check_threat(name, eps, step_size, steps)
  for k, v in dict(alpha=alpha, beta=beta, lambda_scl=lambda_scl, lambda_vat=lambda_vat).items():
    if v < 0:
      raise ValueError(f"{name} {k} must be >= 0; got {v}")
  if tau <= 0:
    raise ValueError(f"{name} tau (the temperature) must be > 0; got {tau}")
  if strategy not in STRATEGIES:
    raise ValueError(f"{name} strategy must be one of {STRATEGIES} (code neg_type all / hard / soft / "
                     f"leaking / merge); got {strategy!r}")
  if distance not in DISTANCES:
    raise ValueError(f"{name} distance must be one of {tuple(DISTANCES)}; got {distance!r}")
  needs = DISTANCES[distance]
  if needs is not None and needs != normalize:
    raise ValueError(f"{name}: distance {distance!r} needs normalize={needs} (the reference code asserts it)")
  if vat_reduction not in VAT_REDUCTIONS:
    raise ValueError(f"{name} vat_reduction must be one of {VAT_REDUCTIONS}; got {vat_reduction!r}")
  if attack_bn not in ATTACK_BN_MODES:
    raise ValueError(f"{name} attack_bn must be one of {ATTACK_BN_MODES}; got {attack_bn!r}")


def _latent(out) -> Array:
  """The projection head's output when the model has one (model.projection_head), else the latent."""
  return out.features if out.projection is None else out.projection


def _make_ascl(name: str, base: str, *, eps, step_size, steps, norm, attack_bn, alpha, beta, lambda_scl,
               lambda_vat, tau, strategy, distance, normalize, counterpart_always_positive,
               vat_reduction) -> Method:
  _check(name, eps=eps, step_size=step_size, steps=steps, alpha=alpha, beta=beta, lambda_scl=lambda_scl,
         lambda_vat=lambda_vat, tau=tau, strategy=strategy, distance=distance, normalize=normalize,
         vat_reduction=vat_reduction, attack_bn=attack_bn)
  # Both adversaries start uniformly in the ball (the ASCL repository's pgd_attack and ascl_trades).
  attack = pgd_attack(eps=eps, step_size=step_size, steps=steps, loss="kl" if base == "trades" else "ce",
                      init="uniform", norm=norm, bn=attack_bn)

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    y, mask = batch["label"], batch.get("mask")
    out_nat, batch_stats = ctx.forward(params, batch_stats, batch["image"])
    out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
    natural = masked_mean(classification_loss(out_nat.logits, y), mask)
    if base == "trades":
      robust = masked_mean(losses_lib.kl_divergence(out_adv.logits, None, out_nat.logits), mask)
    else:
      robust = masked_mean(classification_loss(out_adv.logits, y), mask)
    scl = mean_over_members([
        contrastive_loss(_latent(nat), _latent(adv), y, jnp.argmax(nat.logits, -1), jnp.argmax(adv.logits, -1),
                         strategy=strategy, tau=tau, distance=distance, normalize=normalize,
                         counterpart_always_positive=counterpart_always_positive, mask=mask)
        # an ensemble: each member's own latents and predictions (its masks), averaged over members
        for nat, adv in zip(member_outputs(out_nat), member_outputs(out_adv))])
    vat = masked_mean(vat_kl(out_nat.logits, out_adv.logits, vat_reduction), mask)
    total = alpha * natural + beta * robust + lambda_scl * scl.loss + lambda_vat * vat
    metrics = {"loss": total, "loss_natural": natural, "loss_robust": robust, "loss_scl": scl.loss,
               "loss_vat": vat, "scl_positives": scl.mean_pos, "scl_negatives": scl.mean_neg,
               "acc": accuracy(out_nat.logits, y), "adv_acc": accuracy(out_adv.logits, y)}
    return total, LossAux(batch_stats, method_state, metrics)

  return Method(name=name, loss=loss, attack=attack, needs_features=True,
                hparams=dict(eps=eps, step_size=step_size, steps=steps, norm=norm, attack_bn=attack_bn,
                             alpha=alpha, beta=beta, lambda_scl=lambda_scl, lambda_vat=lambda_vat, tau=tau,
                             strategy=strategy, distance=distance, normalize=normalize,
                             counterpart_always_positive=counterpart_always_positive,
                             vat_reduction=vat_reduction))


def make_ascl(*, eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10, norm: str = "linf",
              attack_bn: str = "eval", alpha: float = 1.0, beta: float = 1.0, lambda_scl: float = 1.0,
              lambda_vat: float = 2.0, tau: float = 0.07, strategy: str = "leaked", distance: str = "cosine",
              normalize: bool = False, counterpart_always_positive: bool = True,
              vat_reduction: str = "batchmean") -> Method:
  """ASCL-ADV (PGD-CE adversary): alpha CE(x) + beta CE(x') + lambda_scl L_SCL + lambda_vat L_VAT."""
  return _make_ascl("ascl", "adv", eps=eps, step_size=step_size, steps=steps, norm=norm, attack_bn=attack_bn,
                    alpha=alpha, beta=beta, lambda_scl=lambda_scl, lambda_vat=lambda_vat, tau=tau,
                    strategy=strategy, distance=distance, normalize=normalize,
                    counterpart_always_positive=counterpart_always_positive, vat_reduction=vat_reduction)


def make_ascl_trades(*, eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10, norm: str = "linf",
                     attack_bn: str = "eval", alpha: float = 1.0, beta: float = 6.0, lambda_scl: float = 1.0,
                     lambda_vat: float = 0.0, tau: float = 0.07, strategy: str = "leaked",
                     distance: str = "cosine", normalize: bool = False,
                     counterpart_always_positive: bool = True, vat_reduction: str = "batchmean") -> Method:
  """ASCL-TRADES (KL adversary, uniform start): alpha CE(x) + beta KL(p || p') + lambda_scl L_SCL
  (+ lambda_vat L_VAT, 0 by default since the beta term is the same KL); beta 6 as TRADES."""
  return _make_ascl("ascl_trades", "trades", eps=eps, step_size=step_size, steps=steps, norm=norm,
                    attack_bn=attack_bn, alpha=alpha, beta=beta, lambda_scl=lambda_scl, lambda_vat=lambda_vat,
                    tau=tau, strategy=strategy, distance=distance, normalize=normalize,
                    counterpart_always_positive=counterpart_always_positive, vat_reduction=vat_reduction)


REGISTRY = {"ascl": make_ascl, "ascl_trades": make_ascl_trades}
