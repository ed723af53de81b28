"""Pieces shared by training methods: the training PGD, loss selection by head type."""

from __future__ import annotations

from jaxrobust import losses as losses_lib
from jaxrobust.attacks.pgd import pgd
from jaxrobust.methods.base import logits_fn_for, stop


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


def training_pgd(params, batch_stats, batch, key, ctx, *, eps, step_size, steps, loss="ce",
                 init="uniform", norm="linf"):
  """The inner maximisation every adversarial-training method uses, in inference mode."""
  logits_fn = logits_fn_for(ctx, params, batch_stats)
  x_adv = pgd(logits_fn, batch["image"], batch["label"], key, eps=eps, step_size=step_size,
              steps=steps, norm=norm, loss=auto_attack_loss(loss), init=init)
  return stop(x_adv)


def check_threat(method: str, eps, step_size, steps) -> None:
  """The training attack's eps, step size and number of steps must be >= 0."""
  if eps < 0 or step_size < 0 or steps < 0:
    raise ValueError(f"{method} needs eps, step_size, steps >= 0; got {eps}, {step_size}, {steps}")


def pgd_attack(*, eps, step_size, steps, loss="ce", init="uniform", norm="linf"):
  """A ``Method.attack`` running ``training_pgd`` with fixed settings; it returns no attack aux."""
  def attack(params, batch_stats, batch, key, method_state, ctx):
    return training_pgd(params, batch_stats, batch, key, ctx, eps=eps, step_size=step_size, steps=steps,
                        loss=loss, init=init, norm=norm), None
  return attack
