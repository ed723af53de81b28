"""Per-example losses shared by attacks and training methods.

Every function returns a per-example vector ``(B,)``; callers reduce. Attack losses share
one signature, ``loss(logits, y, ref_logits) -> (B,)``, where ``ref_logits`` are the clean
logits (used by KL-type losses, ignored by the rest) and, for targeted losses, ``y`` is the
target class. An ``AttackLoss`` declares such a function together with whether it reads the
reference logits (an attack then computes them once, before its loop); any user function with
that signature plugs into every gradient attack (``get_attack_loss``).

Conventions:
* KL is KL(p_clean || p_adv) = sum_j p_nat,j (log p_nat,j - log p_adv,j), the direction of the
  TRADES regulariser (Zhang et al. 2019) as every reference implementation computes it
  (``KLDivLoss(log_softmax(z_adv), softmax(z_nat))``).
* Single-logit binary models give logits of shape (B,) or (B, 1); ``sigmoid(z)`` is P(y=1).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrobust.types import Array

LossFn = Callable[[Array, Array, Array], Array]


@dataclasses.dataclass(frozen=True)
class AttackLoss:
  """A per-example attack loss and what it reads.

  fn: ``fn(logits, y, ref_logits) -> (B,)``.
  needs_reference: the loss reads ``ref_logits`` (the clean logits); attacks compute them once
    from x before their loop and pass None otherwise.
  Calling the declaration calls ``fn`` (``ref_logits`` defaults to None).
  """
  fn: LossFn
  needs_reference: bool = True

  def __call__(self, logits: Array, y: Array, ref_logits: Array | None = None) -> Array:
    return self.fn(logits, y, ref_logits)


def _check_multiclass(logits: Array, min_classes: int, what: str) -> None:
  if logits.ndim != 2:
    raise ValueError(f"{what} expects logits of shape (batch, classes); got shape {logits.shape}")
  if logits.shape[1] < min_classes:
    raise ValueError(f"{what} needs at least {min_classes} classes; got logits with {logits.shape[1]}")


def _check_labels(logits: Array, y: Array, what: str, name: str = "y") -> None:
  """Integer (B,) labels in [0, K). The range is checked when y is concrete: inside a compiled program an
  out-of-range label is not detectable, and ``take_along_axis`` would read NaN (K) or wrap around (-1), so
  the data boundaries (``ArrayDataset``, the attacks' ``validate``, the evaluator) refuse them first."""
  if not hasattr(y, "dtype") or not jnp.issubdtype(y.dtype, jnp.integer):
    raise TypeError(f"{what}: {name} must be integer class labels; got dtype {getattr(y, 'dtype', type(y))} "
                    f"(a float label would be truncated): pass y.astype(jnp.int32) of exact class indices")
  if y.shape != logits.shape[:1]:
    raise ValueError(f"{what}: {name} must have shape (batch,)=({logits.shape[0]},) to match logits {logits.shape}; "
                     f"got {y.shape}")
  if not isinstance(y, jax.core.Tracer) and y.size:
    arr = np.asarray(y)  # host-side: works while an enclosing function is being traced
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= logits.shape[1]:
      raise ValueError(f"{what}: {name} must lie in [0, {logits.shape[1]}) for logits of {logits.shape[1]} classes; "
                       f"got labels in [{lo}, {hi}]")


def cross_entropy(logits: Array, y: Array, ref_logits: Array | None = None) -> Array:
  """CE(z, y) = -log softmax(z)_y, per example. logits (B, K), y (B,) int.

  Not ``optax.losses.softmax_cross_entropy_with_integer_labels``: that computes logsumexp(z) - z_y,
  which cancels when z_y dominates (float32 relative error above 1e-5 once |logits| ~ 30, where
  -log_softmax stays within 2e-6 of the float64 value), and its input gradient differs from this one in
  the last bits, which would change every CE attack's iterates (tests/test_losses.py).
  """
  _check_multiclass(logits, 2, "cross_entropy")
  _check_labels(logits, y, "cross_entropy")
  logp = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=1)[:, 0]


def _other_max(logits: Array, y: Array, fill: float = -jnp.inf) -> Array:
  onehot = jax.nn.one_hot(y, logits.shape[1], dtype=bool)
  return jnp.max(jnp.where(onehot, fill, logits), axis=1)


def margin(logits: Array, y: Array) -> Array:
  """z_y - max_{j != y} z_j, per example (> 0 iff correctly classified)."""
  _check_multiclass(logits, 2, "margin")
  _check_labels(logits, y, "margin")
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
  _check_labels(logits, y, "targeted DLR loss")
  _check_labels(logits, target, "targeted DLR loss", "target")
  srt = jnp.sort(logits, axis=1)
  z_y = jnp.take_along_axis(logits, y[:, None].astype(jnp.int32), axis=1)[:, 0]
  z_t = jnp.take_along_axis(logits, target[:, None].astype(jnp.int32), axis=1)[:, 0]
  return -(z_y - z_t) / (srt[:, -1] - 0.5 * (srt[:, -3] + srt[:, -4]) + 1e-12)


def kl_divergence(logits: Array, y: Array | None, ref_logits: Array) -> Array:
  """TRADES KL(p_ref || p) = sum_j p_ref,j (log p_ref,j - log p_j), per example; >= 0, = 0 at equality.

  TRADES (Zhang et al. 2019), with p_ref = softmax(ref_logits) (the clean point) as the target:
  ``optax.losses.kl_divergence_with_log_targets(log p, log p_ref)`` (the same arithmetic, bit for bit).
  """
  return optax.losses.kl_divergence_with_log_targets(jax.nn.log_softmax(logits, axis=-1),
                                                     jax.nn.log_softmax(ref_logits, axis=-1), axis=-1)


def binary_logits(logits: Array) -> Array:
  """(B,) or (B, 1) single-logit output -> (B,)."""
  if logits.ndim == 2 and logits.shape[1] == 1:
    return logits[:, 0]
  if logits.ndim != 1:
    raise ValueError(f"single-logit losses expect logits of shape (batch,) or (batch, 1); got {logits.shape}")
  return logits


def binary_cross_entropy(logits: Array, y: Array, ref_logits: Array | None = None) -> Array:
  """BCE(sigmoid(z), y) for a single-logit model, per example; y in {0, 1}.

  Same values as ``optax.losses.sigmoid_binary_cross_entropy`` but not the same input gradient: at
  z = 0 JAX differentiates max(z, 0) and |z| here to the subgradient -y instead of sigmoid(0) - y,
  and elsewhere the two gradients differ in the last bits; delegating would change the training of
  the single-logit methods (AdAP) and their attacks, so this form stays (tests/test_losses.py).
  """
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
  return AttackLoss(loss, needs_reference=False)


# The built-in attack losses by name; only the KL-type ones read the clean logits.
ATTACK_LOSSES: dict[str, AttackLoss] = {
    "ce": AttackLoss(cross_entropy, needs_reference=False),
    "cw": AttackLoss(cw_margin, needs_reference=False),
    "dlr": AttackLoss(dlr, needs_reference=False),
    "kl": AttackLoss(kl_divergence, needs_reference=True),
    "bce": AttackLoss(binary_cross_entropy, needs_reference=False),
    "bernoulli_kl": AttackLoss(bernoulli_kl, needs_reference=True),
}
_BY_FUNCTION = {loss.fn: loss for loss in ATTACK_LOSSES.values()}


def get_attack_loss(loss: str | AttackLoss | LossFn) -> AttackLoss:
  """The declared attack loss for a name, an ``AttackLoss`` or a plain callable.

  A built-in function (``cross_entropy``, ...) passed by itself gets its declaration, so it costs no
  extra clean forward pass; any other callable ``loss(logits, y, ref_logits)`` is assumed to read
  the reference logits (needs_reference=True).
  """
  if isinstance(loss, AttackLoss):
    return loss
  if callable(loss):
    return _BY_FUNCTION.get(loss, AttackLoss(loss, needs_reference=True))
  if loss not in ATTACK_LOSSES:
    raise ValueError(f"unknown attack loss {loss!r}; choose one of {sorted(ATTACK_LOSSES)} or pass a callable "
                     "loss(logits, y, ref_logits) -> per-example loss")
  return ATTACK_LOSSES[loss]


def predict(logits: Array) -> Array:
  """Predicted class: argmax for (B, K) logits, 1[z > 0] for single-logit (B,) / (B, 1) outputs."""
  if logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
    return (binary_logits(logits) > 0).astype(jnp.int32)
  return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def is_correct(logits: Array, y: Array) -> Array:
  """(B,) bool: the prediction equals y."""
  return predict(logits) == y.astype(jnp.int32)
