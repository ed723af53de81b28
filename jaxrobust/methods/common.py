"""Pieces shared by training methods: the training PGD, loss selection by head type."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust.attacks.pgd import pgd
from jaxrobust.methods.base import logits_fn_for, stop


def max_last_axis(x):
  """max over the last axis, differentiated through the argmax entry (as torch's ``max(dim)``).

  ``jnp.max``'s gradient finds the maximal entries by comparing the operand with the result. Under
  ``jit`` XLA:CPU may recompute a cheap operand (e.g. |h_a - h_j| of scaled or normalised latents)
  in another fusion with different rounding, the comparison then fails and the gradient is wrong
  (found against the ASCL code's linf distance: off by up to 2x). The index here is computed once.
  """
  idx = jnp.argmax(x, axis=-1)
  return jnp.take_along_axis(x, idx[..., None], axis=-1)[..., 0]


def member_outputs(out) -> list:
  """[ModelOutput(logits, features)] of each member of an ensemble's output (``models.ensemble``), or [out] for a
  single model: latent regularisers (ADR, ASCL) act on each member's own latent, then are averaged."""
  if getattr(out, "member_logits", None) is None:
    return [out]
  return [type(out)(out.member_logits[m], out.member_features[m]) for m in range(out.member_logits.shape[0])]


def mean_over_members(values: list):
  """The mean of per-member values (pytrees); the value itself for one member (bit for bit)."""
  if len(values) == 1:
    return values[0]
  return jax.tree.map(lambda *v: sum(v) / len(v), *values)


def is_single_logit(logits) -> bool:
  return logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1)


def classification_loss(logits, y):
  """Per-example CE for (B, K) logits, BCE(sigmoid z, y) for single-logit (B, 1) outputs."""
  if is_single_logit(logits):
    return losses_lib.binary_cross_entropy(logits, y)
  return losses_lib.cross_entropy(logits, y)


def kl_to_clean(adv_logits, clean_logits):
  """Per-example KL(p_clean || p_adv): softmax for (B, K), Bernoulli for single-logit."""
  if is_single_logit(adv_logits):
    return losses_lib.bernoulli_kl(adv_logits, None, clean_logits)
  return losses_lib.kl_divergence(adv_logits, None, clean_logits)


def auto_attack_loss(name):
  """'ce' / 'kl' resolved to the single-logit variants when the head has one logit.

  A callable passes through unchanged (``losses.get_attack_loss`` declares it when it is used)."""
  if callable(name):
    return name

  def loss(logits, y, ref_logits):
    if name == "ce":
      return classification_loss(logits, y)
    if name == "kl":
      return kl_to_clean(logits, ref_logits)
    return losses_lib.get_attack_loss(name)(logits, y, ref_logits)
  return losses_lib.AttackLoss(loss, needs_reference=name == "kl")


# Batch-norm mode of the model while the training attack runs.
ATTACK_BN_MODES = ("eval", "train")


def attack_logits_fn(ctx, params, batch_stats, bn: str = "eval"):
  """``x -> logits`` for a training attack.

  bn='eval': inference mode, running statistics (the reference code's ``model.eval()``).
  bn='train': batch statistics of the attacked batch, as codes that craft in ``model.train()`` do
    (TF ADR, the ASCL repository). The running statistics are not updated by the attack's passes
    (PyTorch would update them at every attack step); only the loss's forward passes update them.
  """
  if bn == "eval":
    return logits_fn_for(ctx, params, batch_stats)
  if bn == "train":
    return lambda x: ctx.forward(params, batch_stats, x)[0].logits
  raise ValueError(f"attack bn mode must be one of {ATTACK_BN_MODES}; got {bn!r}")


def training_pgd(params, batch_stats, batch, key, ctx, *, eps, step_size, steps, loss="ce",
                 init="uniform", norm="linf", bn="eval"):
  """The inner maximisation every adversarial-training method uses (inference mode by default)."""
  logits_fn = attack_logits_fn(ctx, params, batch_stats, bn)
  x_adv = pgd(logits_fn, batch["image"], batch["label"], key, eps=eps, step_size=step_size,
              steps=steps, norm=norm, loss=auto_attack_loss(loss), init=init)
  return stop(x_adv)


def check_threat(method: str, eps, step_size, steps) -> None:
  """The training attack's eps, step size and number of steps must be >= 0."""
  if eps < 0 or step_size < 0 or steps < 0:
    raise ValueError(f"{method} needs eps, step_size, steps >= 0; got {eps}, {step_size}, {steps}")


def pgd_attack(*, eps, step_size, steps, loss="ce", init="uniform", norm="linf", bn="eval"):
  """A ``Method.attack`` running ``training_pgd`` with fixed settings; it returns no attack aux."""
  if bn not in ATTACK_BN_MODES:
    raise ValueError(f"attack bn mode must be one of {ATTACK_BN_MODES}; got {bn!r}")

  def attack(params, batch_stats, batch, key, method_state, ctx):
    return training_pgd(params, batch_stats, batch, key, ctx, eps=eps, step_size=step_size, steps=steps,
                        loss=loss, init=init, norm=norm, bn=bn), None
  return attack
