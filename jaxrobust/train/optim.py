"""Optimisers and learning-rate schedules as the papers apply them.

Weight decay is PyTorch's coupled L2 (``torch.optim.SGD/Adam(weight_decay=wd)``): wd * w is
added to the gradient *before* momentum / Adam moments, on every parameter (BN and biases
included), which is what the authors' reference code of every method here uses (TRADES, MART,
GAIRAT, AWP, MAIL, SPAT, UDR, AdAP). ``adamw`` gives decoupled decay for users who want it.
"""

from __future__ import annotations

import optax

SCHEDULES = ("constant", "piecewise", "cosine")
OPTIMIZERS = ("sgd", "adam", "adamw")


def make_schedule(*, lr: float, schedule: str = "constant", steps_per_epoch: int, epochs: int,
                  boundaries=(), decay=0.1, warmup_epochs: float = 0.0) -> optax.Schedule:
  """Per-step learning rate.

  piecewise: lr * decay^k after the k-th epoch boundary (``boundaries`` in epochs, e.g. (75, 90)); with
    ``decay`` a sequence, one factor per boundary: lr * decay_1 * ... * decay_k (GAIRAT's 0.1 -> 0.01 ->
    0.001 -> 0.0005 is boundaries (59, 89, 109), decay (0.1, 0.1, 0.5)).
  cosine: cosine decay from lr to 0 over all epochs. warmup_epochs: linear warm-up first.
  """
  if lr <= 0:
    raise ValueError(f"learning rate must be > 0; got {lr}")
  if schedule not in SCHEDULES:
    raise ValueError(f"unknown lr schedule {schedule!r}; choose one of {SCHEDULES}")
  boundaries = tuple(boundaries)
  if isinstance(decay, (list, tuple)):
    factors = tuple(float(d) for d in decay)
    if len(factors) != len(boundaries):
      raise ValueError(f"decay has {len(factors)} factors for {len(boundaries)} boundaries {boundaries}; "
                       "give one factor per boundary or a single number")
  else:
    factors = (float(decay),) * len(boundaries)
  if any(f <= 0 for f in factors):
    raise ValueError(f"lr decay factors must be > 0; got {decay}")
  if list(boundaries) != sorted(boundaries):
    raise ValueError(f"lr boundaries must be increasing; got {boundaries}")
  total = max(1, int(steps_per_epoch * epochs))
  warm = int(round(warmup_epochs * steps_per_epoch))
  if schedule == "constant":
    base = optax.constant_schedule(lr)
  elif schedule == "piecewise":
    # join_schedules restarts the count after warm-up, so boundaries shift by the warm-up steps
    bounds = {}
    for b, f in zip(boundaries, factors):  # optax multiplies the scales of consecutive boundaries
      step = int(round(b * steps_per_epoch)) - warm
      bounds[step] = bounds.get(step, 1.0) * f
    base = optax.piecewise_constant_schedule(lr, bounds)
  else:
    base = optax.cosine_decay_schedule(lr, max(total - warm, 1))  # decays to 0 at the last step
  if warm > 0:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warm), base], [warm])
  return base


def make_optimizer(*, name: str = "sgd", lr_schedule: optax.Schedule, momentum: float = 0.9,
                   nesterov: bool = False, weight_decay: float = 0.0, b1: float = 0.9,
                   b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
  if name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
  if weight_decay < 0:
    raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
  if name == "adamw":
    return optax.adamw(lr_schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
  decay = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
  if name == "sgd":
    core = optax.sgd(lr_schedule, momentum=momentum or None, nesterov=nesterov)
  else:
    core = optax.adam(lr_schedule, b1=b1, b2=b2, eps=eps)
  return optax.chain(*decay, core)
