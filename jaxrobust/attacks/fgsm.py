"""Single-step Linf attacks: FGSM, R+FGSM and FGSM-RS.

    FGSM     (Goodfellow 2015):  x_adv = clip_[0,1]( x + eps sign(grad_x L(f(x), y)) )
    R+FGSM   (Tramer 2018):      x' = clip_[0,1](x + alpha sign(N(0, I)))
                                 x_adv = clip_[0,1]( Pi_eps( x' + (eps - alpha) sign(grad_x' L(f(x'), y)) ) )
    FGSM-RS  (Wong 2020):        x' = clip_[0,1](x + U(-eps, eps)),  x_adv = clip_[0,1]( Pi_eps( x' + alpha sign(grad) ) )

Targeted mode steps with -grad towards the target y. ``eps`` and ``alpha`` may be scalars or
(B,) arrays. Random draws are per example (``per_example.example_keys``): example i's noise depends only
on its own key, not on the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust import threat
from jaxrobust.attacks.model_calls import loss_and_grad, validate
from jaxrobust.attacks.per_example import as_bcast, example_keys
from jaxrobust.attacks.pgd import pgd
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.types import Array, LogitsFn


def fgsm(logits_fn: LogitsFn, x: Array, y: Array, key=None, *, eps, loss="ce",
         targeted: bool = False) -> Array:
  """x_adv = clip_[0,1](x + eps sign(grad_x L)); x (B, ...) in [0, 1], y (B,); key is unused."""
  validate(x, y, eps=eps)
  sign = -1.0 if targeted else 1.0
  grad_fn, _ = loss_and_grad(logits_fn, loss, x, y, sign)
  g, _ = grad_fn(x)
  return threat.clip_box(x + as_bcast(eps, x) * jnp.sign(g))


def rfgsm(logits_fn: LogitsFn, x: Array, y: Array, key, *, eps, alpha=None, loss="ce",
          targeted: bool = False) -> Array:
  """R+FGSM: a random sign step of size alpha (default eps/2), then an FGSM step of eps - alpha.

  ||x_adv - x||_inf <= eps for any alpha in [0, eps]; alpha = 0 is FGSM.
  """
  if alpha is None:
    alpha = jnp.asarray(eps) / 2
  validate(x, y, eps=eps, alpha=alpha)
  if not isinstance(alpha, jax.core.Tracer) and not isinstance(eps, jax.core.Tracer):
    if jnp.any(jnp.asarray(alpha) > jnp.asarray(eps)):
      raise ValueError(f"R+FGSM needs alpha <= eps; got alpha={alpha}, eps={eps}")
  keys = example_keys(key, x.shape[0])
  noise = jax.vmap(lambda k, xi: jnp.sign(jax.random.normal(k, xi.shape, xi.dtype)))(keys, x)
  a = as_bcast(alpha, x)
  x1 = threat.clip_box(x + a * noise)
  sign = -1.0 if targeted else 1.0
  grad_fn, _ = loss_and_grad(logits_fn, loss, x, y, sign)
  g, _ = grad_fn(x1)
  x2 = x1 + (as_bcast(eps, x) - a) * jnp.sign(g)
  return threat.project_ball_and_box(x2, x, eps, "linf")


def fgsm_rs(logits_fn: LogitsFn, x: Array, y: Array, key, *, eps, alpha=None, loss="ce",
            targeted: bool = False) -> Array:
  """FGSM with a uniform random start ("fast AT"): one PGD step of alpha (default 1.25 eps)."""
  if alpha is None:
    alpha = 1.25 * jnp.asarray(eps)
  return pgd(logits_fn, x, y, key, eps=eps, step_size=alpha, steps=1, norm="linf", loss=loss,
             init="uniform", targeted=targeted)


REGISTRY = {
    "fgsm": AttackInfo(configured(fgsm), summary="fast gradient sign method (Goodfellow et al. 2015)"),
    "rfgsm": AttackInfo(configured(rfgsm), summary="R+FGSM: random step, then FGSM (Tramer et al. 2018)"),
    "fgsm_rs": AttackInfo(configured(fgsm_rs), summary="FGSM from a uniform random start (Wong et al. 2020)"),
}
