"""MIM / MI-FGSM (Dong et al. 2018), Linf.

    g_0 = 0,   g_{t+1} = mu g_t + grad_t / ||grad_t||_1,   grad_t = grad_x sum_i L(f(x_t)_i, y_i)
    x_0 = x,   x_{t+1} = clip_[0,1]( Pi_eps( x_t + alpha sign(g_{t+1}) ) )

The L1 norm is per example. torchattacks (``mifgsm.py``) divides by mean|grad| instead; the two
buffers differ by the constant factor d, so sign(g) and the outputs are the same
(``grad_norm='mean'`` reproduces it). An all-zero gradient (saturated softmax) gives a zero
normalised gradient rather than torchattacks' NaN. Targeted mode uses -grad.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust import threat
from jaxrobust.attacks.model_calls import loss_and_grad, random_init, resolve_unroll, validate
from jaxrobust.attacks.per_example import as_bcast, example_keys, expand
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.types import Array, LogitsFn


def _normalise(g: Array, grad_norm: str) -> Array:
  flat = jnp.abs(g.reshape(g.shape[0], -1))
  n = jnp.sum(flat, axis=1) if grad_norm == "l1" else jnp.mean(flat, axis=1)
  return g / expand(jnp.where(n > 0, n, 1.0), g)


def mim_trajectory(logits_fn: LogitsFn, x: Array, y: Array, key=None, *, eps, step_size=None,
                   steps: int = 10, decay: float = 1.0, grad_norm: str = "l1", loss="ce",
                   targeted: bool = False, init: str = "none", unroll: int | bool | None = None,
                   trace: bool = True):
  """MIM that also returns its path: (x_adv, xs, momenta), xs[t] = x_t and momenta[t] = g_{t+1},
  both (T, B, ...) (None, None when ``trace`` is False). Use ``mim`` unless you need the path."""
  if step_size is None:  # Dong et al.: alpha = eps / T
    step_size = jnp.asarray(eps) / max(steps, 1)
  validate(x, y, eps=eps, step_size=step_size, decay=decay)
  if grad_norm not in ("l1", "mean"):
    raise ValueError(f"grad_norm must be 'l1' or 'mean'; got {grad_norm!r}")
  if int(steps) != steps or steps < 0:
    raise ValueError(f"steps must be a non-negative int; got {steps}")
  sign = -1.0 if targeted else 1.0
  grad_fn, _ = loss_and_grad(logits_fn, loss, x, y, sign)
  alpha = as_bcast(step_size, x)
  mu = as_bcast(decay, x)
  keys = example_keys(key, x.shape[0]) if init != "none" else None
  x0 = random_init(keys, x, eps, "linf", init)

  def step(carry, _):
    xa, m = carry
    g, _ = grad_fn(xa)
    m = mu * m + _normalise(g, grad_norm)
    x_new = threat.project_ball_and_box(xa + alpha * jnp.sign(m), x, eps, "linf")
    return (x_new, m), ((xa, m) if trace else None)

  (x_adv, _), path = jax.lax.scan(step, (x0, jnp.zeros_like(x)), None, length=steps,
                                  unroll=resolve_unroll(unroll, steps))
  return (x_adv,) + (path if trace else (None, None))


def mim(logits_fn: LogitsFn, x: Array, y: Array, key=None, *, eps, step_size=None, steps: int = 10,
        decay: float = 1.0, grad_norm: str = "l1", loss="ce", targeted: bool = False,
        init: str = "none", unroll: int | bool | None = None) -> Array:
  """MI-FGSM; returns x_adv like x. x (B, ...) in [0, 1], y (B,); eps, step_size scalar or (B,).

  step_size defaults to eps / steps (the paper; torchattacks uses 2/255 with eps 8/255, T=10).
  decay is mu (mu = 0 gives BIM). init='uniform' adds a PGD-style random start (needs key).
  """
  x_adv, _, _ = mim_trajectory(logits_fn, x, y, key, eps=eps, step_size=step_size, steps=steps,
                               decay=decay, grad_norm=grad_norm, loss=loss, targeted=targeted,
                               init=init, unroll=unroll, trace=False)
  return x_adv


REGISTRY = {
    "mim": AttackInfo(configured(mim), summary="momentum iterative FGSM (Dong et al. 2018)"),
    "mifgsm": AttackInfo(configured(mim), summary="alias of mim"),
}
