"""FMN, the Fast Minimum-Norm attack (Pintor, Roli, Brendel & Biggio 2021), Linf, L2 and L1.

A port of foolbox 3.3.4's ``FMNAttackLp`` (``LInfFMNAttack``, ``L2FMNAttack``, ``L1FMNAttack``) started
from x (foolbox's default: no init attack, hence no boundary binary search). Per example, with
delta_0 = 0, eps_0 = 0, the loss l(z) = z_y - max_{j != y} z_j (targeted: max_{j != t} z_j - z_t; l <= 0
iff the point is adversarial, up to argmax ties) and N steps i = 0..N-1:

    c_i      = (1 + cos(pi i / N)) / 2                                   (cosine annealing)
    alpha_i  = alpha_final + (alpha_init - alpha_final) c_i,   gamma_i = gamma_final + (gamma_init - gamma_final) c_i
    g        = grad_x (-l)(x + delta)                                    (towards the boundary)
    if x + delta is adversarial and ||delta||_p <= best:  best <- ||delta||_p, x_best <- x + delta
    eps      = min(eps (1 - gamma_i), best)                  if x + delta is adversarial
               eps (1 + gamma_i)                             elif an adversarial was found before
               max(eps, ||delta||_p + |l| / ||g||_q) (1 + gamma_i)   else (past the linearised boundary)
    eps      = min(eps, ||max(x, 1 - x)||_p)                 (the farthest point of the box)
    delta    <- clip_[0,1](x + Pi_eps(delta + alpha_i g / ||g||_2)) - x

with q the dual norm (L1 for Linf, L2 for L2, Linf for L1), the L2-normalised gradient for every norm (as the
paper, foolbox and adv_lib), Pi_eps the ball projection of ``threat`` (the L1 one is Duchi et al.'s). Defaults
as foolbox: N = 100, alpha_init = 1, alpha_final = alpha_init / 100, gamma_init = 0.05, gamma_final = 0.001.
FMN is deterministic (no key is used).

Deviations from foolbox 3.3.4 (and the paper):

* Before the first adversarial, eps = max(eps, linearised distance) (1 + gamma_i) (``overshoot=True``, the
  default) instead of foolbox's eps = linearised distance (``overshoot=False``, with foolbox's eps_0 = +inf
  this is the same update as foolbox's). Two stalls of foolbox's rule: (1) a step lands exactly on the
  linearised boundary, so where the model is (locally) linear the point sits on the boundary and float
  rounding decides whether it ever becomes adversarial (on a linear 2-class model 4 to 25% of the points,
  L1 worst, were never broken in 100 steps); (2) the linearised distance ignores the [0, 1] box, so where
  the box blocks the gradient direction the iterate stops at a fixed point short of the boundary with eps
  never growing (a 10-class linear model: points PGD-L2 broke at 0.3 that FMN never broke, even in 1000
  steps). With the factor and the max every point of both was broken, the 2-class ones at the closed-form
  minimum to 1e-4 (tests/attacks/test_fmn.py). Once an adversarial is found the update is foolbox's.
* Its ``L2FMNAttack.project`` computes ``factor = minimum(1, norms / norms)`` = 1, so its L2 FMN never
  projects onto the eps ball; here the L2 step is projected (Pi_eps, as the paper's code, pralab
  ``src/attacks/fmn.py``, ``clip_lp_norms``). BENCHMARKS.md section 2c compares against the unmodified
  foolbox and against foolbox with that projection fixed.
* The L0 version and the init attack (foolbox's boundary binary search from an adversarial start, off by
  default there) are not ported.

Output (shared with DDN, ``ddn.py``): the adversarial point with the smallest norm met during the loop (the
point the model was evaluated at, never re-derived), or x where none was found. With ``verify`` (default)
the returned points are run through the model once more and any that is not adversarial there is replaced
by x, so a returned point different from x is always adversarial. With ``eps`` a point whose
||x_adv - x||_p > eps is also replaced by x: accuracy on the output is then robust accuracy at radius eps.
Robust accuracy at many radii from one unconstrained run: ``jaxrobust.evaluate.min_norm_curve``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.model_calls import check_logits, fooled, resolve_unroll, validate
from jaxrobust.attacks.per_example import per_example, select
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.types import Array, LogitsFn

DUAL = {"linf": "l1", "l2": "l2", "l1": "linf"}


class MinNormResult(NamedTuple):
  """x_adv (B, ...): the smallest adversarial found, or x where none; norm (B,): ||x_adv - x||_p where
  found, +inf where not; success (B,) bool."""
  x_adv: Array
  norm: Array
  success: Array


def min_norm_output(logits_fn: LogitsFn, x: Array, y: Array, best: Array, found: Array, norm: str,
                    targeted: bool, eps=None, verify: bool = True) -> MinNormResult:
  """The output of a minimum-norm attack from its best point per example (``found``: one was met).

  verify: one more forward pass; a point that is not adversarial there is dropped (x returned).
  eps: points with ||best - x||_p > eps are dropped. The norm is recomputed from the returned point.
  """
  if verify:
    found = found & fooled(logits_fn(best), y, targeted)
  d = threat.per_example_norm(best - x, norm)
  if eps is not None:
    found = found & (d <= per_example(eps, x))
  return MinNormResult(select(found, best, x), jnp.where(found, d, jnp.inf), found)


def cosine_annealing(i, steps: int, start: float, end: float):
  """end + (start - end) (1 + cos(pi i / steps)) / 2 (i may be traced)."""
  return end + (start - end) * (1 + jnp.cos(math.pi * i / steps)) / 2


def check_min_norm_args(x, y, eps, steps, what: str) -> None:
  validate(x, y, eps=eps)
  if int(steps) != steps or steps < 0:
    raise ValueError(f"{what}: steps must be an int >= 0; got {steps}")


def fmn_search(logits_fn: LogitsFn, x: Array, y: Array, key=None, *, norm="linf", steps: int = 100,
               alpha_init: float = 1.0, alpha_final: float | None = None, gamma_init: float = 0.05,
               gamma_final: float = 0.001, targeted: bool = False, eps=None, verify: bool = True,
               overshoot: bool = True, unroll: int | bool | None = None) -> MinNormResult:
  """FMN returning a ``MinNormResult``. x (B, ...) in [0, 1]; y (B,) labels (targets when targeted);
  key unused (FMN is deterministic); eps None or scalar / (B,) (see the module docstring)."""
  check_min_norm_args(x, y, eps, steps, "FMN")
  norm = threat.canonical_norm(norm)
  dual = DUAL[norm]
  alpha_final = alpha_init / 100 if alpha_final is None else alpha_final
  b = x.shape[0]

  def objective(xa):
    logits = logits_fn(xa)
    check_logits(logits, y)
    if targeted:
      loss = -losses_lib.margin(logits, y)  # max_{j != t} z_j - z_t
    else:
      loss = losses_lib.margin(logits, y)   # z_y - max_{j != y} z_j
    return -jnp.sum(loss), (loss, logits)

  grad_fn = jax.grad(objective, has_aux=True)
  worst = threat.per_example_norm(jnp.maximum(x, 1 - x), norm)

  def extrapolate(eps_t, linearised, gamma):
    if overshoot:  # never shrink before the first adversarial, and aim past the linearised boundary
      return jnp.maximum(eps_t, linearised) * (1 + gamma)
    return linearised

  def step(i, carry):
    xa, eps_t, best, best_norm = carry
    alpha = cosine_annealing(i, steps, alpha_init, alpha_final)
    gamma = cosine_annealing(i, steps, gamma_init, gamma_final)
    g, (loss, logits) = grad_fn(xa)
    is_adv = fooled(logits, y, targeted)
    d = threat.per_example_norm(xa - x, norm)
    better = is_adv & (d <= best_norm)
    best = select(better, xa, best)
    best_norm = jnp.where(better, d, best_norm)
    found = jnp.isfinite(best_norm)
    to_boundary = jnp.abs(loss) / jnp.maximum(threat.per_example_norm(g, dual), 1e-12)
    eps_t = jnp.where(is_adv, jnp.minimum(eps_t * (1 - gamma), best_norm),
                      jnp.where(found, eps_t * (1 + gamma), extrapolate(eps_t, d + to_boundary, gamma)))
    eps_t = jnp.minimum(eps_t, worst)
    g = g / jnp.maximum(threat.per_example_norm(g, "l2"), 1e-12).reshape((-1,) + (1,) * (x.ndim - 1))
    xa = threat.clip_box(threat.project(xa + alpha * g, x, eps_t, norm))
    return xa, eps_t, best, best_norm

  # eps_0 = 0 (foolbox: +inf): every branch of the first update overwrites it, except overshoot's max.
  init = (x, jnp.zeros((b,), x.dtype), x, jnp.full((b,), jnp.inf, x.dtype))
  _, _, best, best_norm = jax.lax.fori_loop(0, steps, step, init, unroll=resolve_unroll(unroll, steps))
  return min_norm_output(logits_fn, x, y, best, jnp.isfinite(best_norm), norm, targeted, eps, verify)


def fmn(logits_fn: LogitsFn, x: Array, y: Array, key=None, *, norm="linf", steps: int = 100,
        alpha_init: float = 1.0, alpha_final: float | None = None, gamma_init: float = 0.05,
        gamma_final: float = 0.001, targeted: bool = False, eps=None, verify: bool = True,
        overshoot: bool = True, unroll: int | bool | None = None) -> Array:
  """Fast Minimum-Norm attack; returns x_adv like x: the smallest adversarial found, x where none.

  Args:
    norm: 'linf', 'l2' or 'l1'.
    steps: iterations N (static). alpha_init / alpha_final: step size annealed from / to (default
      alpha_init / 100). gamma_init / gamma_final: the eps update factor annealed from / to.
    targeted: y holds target classes.
    eps: None (default: the minimum-norm point, whatever its norm) or scalar / (B,): points with
      ||x_adv - x||_p > eps are returned as x, so that accuracy on the output is robust accuracy at eps.
    verify: re-check the returned points with one more forward pass (x where not adversarial).
    overshoot: before the first adversarial, eps never shrinks and aims (1 + gamma_i) past the linearised
      boundary (default; False = foolbox's update, which can stall on a linear boundary or against the box).
    unroll: ``lax.fori_loop`` unroll factor.
  """
  return fmn_search(logits_fn, x, y, key, norm=norm, steps=steps, alpha_init=alpha_init, alpha_final=alpha_final,
                    gamma_init=gamma_init, gamma_final=gamma_final, targeted=targeted, eps=eps, verify=verify,
                    overshoot=overshoot, unroll=unroll).x_adv


REGISTRY = {
    "fmn": AttackInfo(configured(fmn), norms=("linf", "l2", "l1"), min_norm=True,
                      summary="fast minimum-norm attack (Pintor et al. 2021; foolbox defaults); optional eps"),
}
