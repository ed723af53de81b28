"""LM-PGD: line-search & momentum PGD (MAIL, Wang et al. 2021, appendix A, eqs. 12-14), Linf.

    s_t     = sign(grad_x L(x + delta_{t-1}, y))
    alpha_t = argmax_{alpha in V_t} L(x + P(delta_{t-1} + gamma v_{t-1} + alpha s_t), y)
    v_t     = gamma v_{t-1} + alpha_t s_t
    delta_t = P(delta_{t-1} + v_t)

P projects onto the eps-ball and then the [0, 1] box. V_t = [alpha_min, alpha_max] is searched on
an ``n_alpha``-point grid (the paper does not say how the argmax is taken); alpha_min is
``alpha_min`` for the first ``switch_step`` iterations and ``alpha_min_late`` after. Paper
setting: 50 iterations, gamma = 0.8, alpha_max = 6/255, alpha_min = 4/255 for the first 15
iterations and 0 after (eps = 8/255); the defaults here scale those with eps (0.75 eps, 0.5 eps).
The paper calls the momentum "Nesterov" but its eq. 12 takes the gradient at x + delta_{t-1}, not
at the look-ahead point; we follow the equations. The line search is per example and costs
``n_alpha`` extra forward passes per step. With gamma = 0 and alpha_min = alpha_max = alpha it is BIM.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust import threat
from jaxrobust.attacks.model_calls import loss_and_grad, random_init, resolve_unroll, validate
from jaxrobust.attacks.per_example import as_bcast, example_keys, expand, per_example
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.types import Array, LogitsFn


def lm_pgd(logits_fn: LogitsFn, x: Array, y: Array, key=None, *, eps, steps: int = 50,
           momentum: float = 0.8, alpha_max=None, alpha_min=None, alpha_min_late=0.0,
           switch_step: int = 15, n_alpha: int = 8, loss="ce", targeted: bool = False,
           init: str = "none", unroll: int | bool | None = None) -> Array:
  """Returns x_adv like x. x (B, ...) in [0, 1]; y (B,); eps and the alphas scalar or (B,).

  alpha_max / alpha_min default to 0.75 eps / 0.5 eps. init: 'none' (default), 'uniform' or
  'normal' start as in ``pgd`` (needs key).
  """
  eps_a = jnp.asarray(eps)
  alpha_max = 0.75 * eps_a if alpha_max is None else alpha_max
  alpha_min = 0.5 * eps_a if alpha_min is None else alpha_min
  validate(x, y, eps=eps, alpha_max=alpha_max, alpha_min=alpha_min, alpha_min_late=alpha_min_late,
           momentum=momentum)
  if n_alpha < 1 or steps < 0:
    raise ValueError(f"need n_alpha >= 1 and steps >= 0; got {n_alpha}, {steps}")
  sign = -1.0 if targeted else 1.0
  grad_fn, objective = loss_and_grad(logits_fn, loss, x, y, sign)
  gamma = as_bcast(momentum, x)
  hi = per_example(alpha_max, x)
  lo_early, lo_late = per_example(alpha_min, x), per_example(alpha_min_late, x)
  frac = jnp.linspace(0.0, 1.0, n_alpha, dtype=x.dtype) if n_alpha > 1 else jnp.ones((1,), x.dtype)
  keys = example_keys(key, x.shape[0]) if init != "none" else None
  x0 = random_init(keys, x, eps, "linf", init)

  def proj(u):
    return threat.project_ball_and_box(u, x, eps, "linf")

  def step(t, carry):
    xa, v = carry
    g, _ = grad_fn(xa)
    s = jnp.sign(g)
    lo = jnp.where(t < switch_step, lo_early, lo_late)
    alphas = lo[None] + (hi - lo)[None] * frac[:, None]          # (J, B) candidate steps
    base = xa + gamma * v

    def cand_loss(a):  # signed per-example loss of the candidate x + P(delta + gamma v + a s)
      return sign * objective(proj(base + expand(a, x) * s))[1][0]
    scores = jax.lax.map(cand_loss, alphas)                      # (J, B); map keeps memory at one batch
    best = alphas[jnp.argmax(scores, axis=0), jnp.arange(x.shape[0])]
    v = gamma * v + expand(best, x) * s
    return proj(xa + v), v

  x_adv, _ = jax.lax.fori_loop(0, steps, step, (x0, jnp.zeros_like(x)),
                               unroll=resolve_unroll(unroll, steps))
  return x_adv


REGISTRY = {
    "lm_pgd": AttackInfo(configured(lm_pgd), summary="LM-PGD: PGD with momentum and a line search over the step "
                                                     "(Wang et al. 2021, MAIL appendix A)"),
}
