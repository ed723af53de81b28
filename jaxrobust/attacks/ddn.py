"""DDN, Decoupled Direction and Norm (Rony, Hafemann, Oliveira, Ben Ayed, Sabourin & Granger 2019), L2.

A port of foolbox 3.3.4's ``DDNAttack``. Per example, with delta_0 = 0, eps_0 = init_epsilon and N steps
i = 0..N-1:

    alpha_i = 0.01 + (1 - 0.01) (1 + cos(pi i / N)) / 2              (cosine annealing from 1 to 0.01)
    g       = grad_x CE(z(x + delta), y)                              (minus it when targeted)
    g       <- a N(0, I) draw where g = 0 (a saturated softmax), then g / ||g||_2
    if x + delta is adversarial and ||delta||_2 <= best:  best <- ||delta||_2, x_best <- x + delta
    delta   <- delta + alpha_i g
    eps     <- eps (1 - gamma) if x + delta was adversarial, else eps (1 + gamma);  eps <- min(eps, ||max(x, 1 - x)||_2)
    delta   <- clip_[0,1](x + eps delta / ||delta||_2) - x           (onto the eps sphere, then the box)

Defaults as foolbox and the paper: N = 100, init_epsilon = 1, gamma = 0.05. The only randomness is the
replacement of a zero gradient, drawn per example from fold_in(k_i, step) with k_i the example's key
(``per_example.example_keys``), so an example gets the same draws whichever batch it is in.

Output as FMN (``fmn.min_norm_output``): the smallest adversarial met, x where none; ``verify`` re-checks
the returned points; ``eps`` returns x where ||x_adv - x||_2 > eps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.fmn import MinNormResult, check_min_norm_args, cosine_annealing, min_norm_output
from jaxrobust.attacks.model_calls import check_logits, fooled, resolve_unroll
from jaxrobust.attacks.per_example import example_keys, expand, fold_keys
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.types import Array, LogitsFn


def ddn_search(logits_fn: LogitsFn, x: Array, y: Array, key, *, steps: int = 100, init_epsilon: float = 1.0,
               gamma: float = 0.05, targeted: bool = False, eps=None, verify: bool = True,
               unroll: int | bool | None = None) -> MinNormResult:
  """DDN returning a ``MinNormResult``. x (B, ...) in [0, 1]; y (B,) labels (targets when targeted);
  key: one PRNG key or (B,) per-example keys (zero-gradient replacements); eps None or scalar / (B,)."""
  check_min_norm_args(x, y, eps, steps, "DDN")
  if init_epsilon <= 0 or not 0 <= gamma < 1:
    raise ValueError(f"DDN needs init_epsilon > 0 and 0 <= gamma < 1; got {init_epsilon}, {gamma}")
  b = x.shape[0]
  keys = example_keys(key, b)
  sign = -1.0 if targeted else 1.0

  def objective(xa):
    logits = logits_fn(xa)
    check_logits(logits, y)
    return sign * jnp.sum(losses_lib.cross_entropy(logits, y)), logits

  grad_fn = jax.grad(objective, has_aux=True)
  worst = threat.per_example_norm(jnp.maximum(x, 1 - x), "l2")

  def step(i, carry):
    xa, eps_t, best, best_norm = carry
    alpha = cosine_annealing(i, steps, 1.0, 0.01)
    g, logits = grad_fn(xa)
    zero = threat.per_example_norm(g, "l2") == 0

    def noise(g):
      draws = jax.vmap(lambda k, gi: jax.random.normal(k, gi.shape, gi.dtype))(fold_keys(keys, i), g)
      return jnp.where(expand(zero, g), draws, g)

    g = jax.lax.cond(jnp.any(zero), noise, lambda g: g, g)
    g = g / expand(jnp.maximum(threat.per_example_norm(g, "l2"), 1e-12), g)
    is_adv = fooled(logits, y, targeted)
    d = threat.per_example_norm(xa - x, "l2")
    better = is_adv & (d <= best_norm)
    best = jnp.where(expand(better, x), xa, best)
    best_norm = jnp.where(better, d, best_norm)
    delta = xa - x + alpha * g
    eps_t = jnp.minimum(eps_t * jnp.where(is_adv, 1.0 - gamma, 1.0 + gamma), worst)
    delta = delta * expand(eps_t / jnp.maximum(threat.per_example_norm(delta, "l2"), 1e-12), delta)
    return threat.clip_box(x + delta), eps_t, best, best_norm

  init = (x, jnp.full((b,), init_epsilon, x.dtype), x, jnp.full((b,), jnp.inf, x.dtype))
  _, _, best, best_norm = jax.lax.fori_loop(0, steps, step, init, unroll=resolve_unroll(unroll, steps))
  return min_norm_output(logits_fn, x, y, best, jnp.isfinite(best_norm), "l2", targeted, eps, verify)


def ddn(logits_fn: LogitsFn, x: Array, y: Array, key, *, steps: int = 100, init_epsilon: float = 1.0,
        gamma: float = 0.05, targeted: bool = False, eps=None, verify: bool = True,
        unroll: int | bool | None = None) -> Array:
  """Decoupled Direction and Norm L2 attack; returns x_adv like x: the smallest adversarial found, x where none.

  Args:
    key: one PRNG key (example i uses fold_in(key, i)) or a (B,) batch of per-example keys.
    steps: iterations N (static). init_epsilon: the first norm. gamma: the norm's multiplicative update.
    targeted: y holds target classes.
    eps: None (default: the minimum-norm point) or scalar / (B,): points with ||x_adv - x||_2 > eps are
      returned as x, so that accuracy on the output is robust accuracy at eps.
    verify: re-check the returned points with one more forward pass (x where not adversarial).
  """
  return ddn_search(logits_fn, x, y, key, steps=steps, init_epsilon=init_epsilon, gamma=gamma, targeted=targeted,
                    eps=eps, verify=verify, unroll=unroll).x_adv


REGISTRY = {
    "ddn": AttackInfo(configured(ddn), norms=("l2",), min_norm=True,
                      summary="decoupled direction and norm L2 attack (Rony et al. 2019; foolbox defaults); optional eps"),
}
