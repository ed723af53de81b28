"""Per-example losses shared by attacks and training methods.

Every function returns a per-example vector ``(B,)``; callers reduce. Attack losses share
one signature, ``loss(logits, y, ref_logits) -> (B,)``, where ``ref_logits`` are the clean
logits (used by KL-type losses, ignored by the rest) and, for targeted losses, ``y`` is the
target class. Any user function with that signature plugs into every gradient attack.

Conventions (``../shared/spec/attacks_and_udr.md`` section 0):
* KL is KL(p_clean || p_adv) = sum_j p_nat,j (log p_nat,j - log p_adv,j), the direction every
  reference implementation computes (``KLDivLoss(log_softmax(z_adv), softmax(z_nat))``).
* Single-logit binary models give logits of shape (B,) or (B, 1); ``sigmoid(z)`` is P(y=1).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxrobust.types import Array

AttackLoss = Callable[[Array, Array, Array], Array]


def _check_multiclass(logits: Array, min_classes: int, what: str) -> None:
  if logits.ndim != 2:
    raise ValueError(f"{what} expects logits of shape (batch, classes); got shape {logits.shape}")
  if logits.shape[1] < min_classes:
    raise ValueError(f"{what} needs at least {min_classes} classes; got logits with {logits.shape[1]}")


def cross_entropy(logits: Array, y: Array, ref_logits: Array | None = None) -> Array:
  """CE(z, y) = -log softmax(z)_y, per example. logits (B, K), y (B,) int."""
  _check_multiclass(logits, 2, "cross_entropy")
  logp = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=1)[:, 0]


def _other_max(logits: Array, y: Array, fill: float = -jnp.inf) -> Array:
  onehot = jax.nn.one_hot(y, logits.shape[1], dtype=bool)
  return jnp.max(jnp.where(onehot, fill, logits), axis=1)


def margin(logits: Array, y: Array) -> Array:
  """z_y - max_{j != y} z_j, per example (> 0 iff correctly classified)."""
  z_y = jnp.take_along_axis(logits, y[:, None].astype(jnp.int32), axis=1)[:, 0]
  return z_y - _other_max(logits, y)


def cw_margin(logits: Array, y: Array, ref_logits: Array | None = None, kappa: float = 50.0) -> Array:
  """CW-Linf loss as in the FAT/MAIL/SPAT code: -clamp(z_y - max_{j != y} z_j + kappa, min=0).

  Maximising it lowers the margin until it reaches -kappa. kappa=50 is the reference default.
  """
  _check_multiclass(logits, 2, "cw_margin")
  return -jnp.maximum(margin(logits, y) + kappa, 0.0)


def dlr(logits: Array, y: Array, ref_logits: Array | None = None) -> Array:
  """Untargeted DLR (Croce & Hein 2020): -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12).

  Invariant to z -> a z + b for a > 0; needs K >= 3.
  """
  _check_multiclass(logits, 3, "DLR loss")
  srt = jnp.sort(logits, axis=1)
  return -margin(logits, y) / (srt[:, -1] - srt[:, -3] + 1e-12)


def dlr_targeted(logits: Array, y: Array, target: Array) -> Array:
  """Targeted DLR: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12); needs K >= 4."""
  _check_multiclass(logits, 4, "targeted DLR loss")
  srt = jnp.sort(logits, axis=1)
  z_y = jnp.take_along_axis(logits, y[:, None].astype(jnp.int32), axis=1)[:, 0]
  z_t = jnp.take_along_axis(logits, target[:, None].astype(jnp.int32), axis=1)[:, 0]
  return -(z_y - z_t) / (srt[:, -1] - 0.5 * (srt[:, -3] + srt[:, -4]) + 1e-12)


def kl_divergence(logits: Array, y: Array | None, ref_logits: Array) -> Array:
  """TRADES KL(p_ref || p) = sum_j p_ref,j (log p_ref,j - log p_j), per example; >= 0, = 0 at equality."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  logq_ref = jax.nn.log_softmax(ref_logits, axis=-1)
  p_ref = jnp.exp(logq_ref)
  return jnp.sum(p_ref * (logq_ref - logp), axis=-1)


def binary_logits(logits: Array) -> Array:
  """(B,) or (B, 1) single-logit output -> (B,)."""
  if logits.ndim == 2 and logits.shape[1] == 1:
    return logits[:, 0]
  if logits.ndim != 1:
    raise ValueError(f"single-logit losses expect logits of shape (batch,) or (batch, 1); got {logits.shape}")
  return logits


def binary_cross_entropy(logits: Array, y: Array, ref_logits: Array | None = None) -> Array:
  """BCE(sigmoid(z), y) for a single-logit model, per example; y in {0, 1}."""
  z = binary_logits(logits)
  y = y.astype(z.dtype)
  # -[y log s + (1-y) log(1-s)] in its numerically stable form.
  return jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z)))


def bernoulli_kl(logits: Array, y: Array | None, ref_logits: Array) -> Array:
  """KL(Bern(p_ref) || Bern(p)) for single-logit models, p = sigmoid(z), per example."""
  z = binary_logits(logits)
  z_ref = binary_logits(ref_logits)
  logp1, logp0 = jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z)
  logr1, logr0 = jax.nn.log_sigmoid(z_ref), jax.nn.log_sigmoid(-z_ref)
  return jnp.exp(logr1) * (logr1 - logp1) + jnp.exp(logr0) * (logr0 - logp0)


def cw_f(logits: Array, y: Array, kappa: float = 0.0, targeted: bool = False) -> Array:
  """CW-L2 objective term f (Carlini & Wagner 2017, torchattacks ``CW.f``), per example.

  Untargeted: f(z) = max(z_y - max_{j != y} z_j, -kappa); targeted (y = target t):
  f(z) = max(max_{j != t} z_j - z_t, -kappa). The other-class max masks y with -inf; torchattacks
  takes max(onehot * z) - max((1 - onehot) * z), which reads the masked entries as 0 and is wrong
  when logits are negative (all negative: it gives 0 instead of z_y - max_{j != y} z_j).
  """
  _check_multiclass(logits, 2, "cw_f")
  m = margin(logits, y)
  return jnp.maximum(-m if targeted else m, -kappa)


def make_cw_margin(kappa: float = 50.0) -> AttackLoss:
  """``cw_margin`` with another confidence kappa, as a plug-in attack loss."""
  def loss(logits, y, ref_logits=None):
    return cw_margin(logits, y, ref_logits, kappa=kappa)
  loss.needs_reference = False
  return loss


ATTACK_LOSSES: dict[str, AttackLoss] = {
    "ce": cross_entropy,
    "cw": cw_margin,
    "dlr": dlr,
    "kl": kl_divergence,
    "bce": binary_cross_entropy,
    "bernoulli_kl": bernoulli_kl,
}

# Losses whose value depends on the clean logits; attacks compute them once at the start.
REFERENCE_LOSSES = frozenset({"kl", "bernoulli_kl"})

# Passing the function object instead of its name must not trigger an extra clean forward pass.
for _name, _fn in ATTACK_LOSSES.items():
  _fn.needs_reference = _name in REFERENCE_LOSSES
del _name, _fn


def get_attack_loss(loss: str | AttackLoss) -> tuple[AttackLoss, bool]:
  """Name or callable -> (loss_fn, needs_reference_logits)."""
  if callable(loss):
    return loss, bool(getattr(loss, "needs_reference", True))
  if loss not in ATTACK_LOSSES:
    raise ValueError(f"unknown attack loss {loss!r}; choose one of {sorted(ATTACK_LOSSES)} or pass a callable "
                     "loss(logits, y, ref_logits) -> per-example loss")
  return ATTACK_LOSSES[loss], loss in REFERENCE_LOSSES


def predict(logits: Array) -> Array:
  """Predicted class: argmax for (B, K) logits, 1[z > 0] for single-logit (B,) / (B, 1) outputs."""
  if logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
    return (binary_logits(logits) > 0).astype(jnp.int32)
  return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def is_correct(logits: Array, y: Array) -> Array:
  """(B,) bool: the prediction equals y."""
  return predict(logits) == y.astype(jnp.int32)
