"""DeepFool (Moosavi-Dezfooli et al. 2016), L2 and Linf: a minimum-norm attack, no eps.

Per example, while x_t is still classified as y (at most ``steps`` steps), linearise the model at x_t and
step to the nearest linearised decision boundary among the candidate classes k:

    f'_k = z_k(x_t) - z_y(x_t),   w'_k = grad z_k(x_t) - grad z_y(x_t)
    l    = argmin_k |f'_k| / ||w'_k||_q                  q the dual norm: 2 for L2, 1 for Linf
    r_t  = |f'_l| / ||w'_l||_2^2 w'_l                    (L2)
         = |f'_l| / ||w'_l||_1 sign(w'_l)                (Linf)
    x_t+1 = clip_[0,1](x_t + (1 + overshoot) r_t)

As torchattacks ``DeepFool`` (steps 50, overshoot 0.02, the true label y, the overshoot applied to every
step, the box clip after every step); torchattacks offers L2 only, the Linf step is the paper's (Sec. 3.3,
p = inf). The original code (LTS4) instead takes y as the clean prediction, adds 1e-4 to |f'_l| / ||w'_l||,
accumulates r = sum_t r_t and applies the overshoot once, x_t = x + (1 + overshoot) r, without a box clip.

Candidates (``candidates``): None = every class k != y; an int m = the m classes k != y with the largest
clean logits (fixed at the start; the original code's ``num_classes=10`` is m = 9).

What is returned (``DeepFoolResult``): x_adv is the first iterate the model misclassifies (the iterate is
then frozen; it is the last and only adversarial iterate), or **x unchanged where none was found within
``steps`` steps**, so a returned point is adversarial or is the input: never a non-adversarial point
labelled adversarial (torchattacks returns the last iterate whatever its class). A clean point already
misclassified is returned as x (success, distance 0). The whole loop is one ``lax.while_loop`` that
stops once every example is done; the candidates' gradients come from one vjp per step, vmapped over the
m cotangents e_k - e_y (m backward passes, no full Jacobian). ``key`` is unused (deterministic).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrobust import threat
from jaxrobust.attacks.model_calls import check_logits, check_num_classes, linf_or_l2, num_classes, validate
from jaxrobust.attacks.per_example import expand, per_example, select
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.types import Array, LogitsFn


class DeepFoolResult(NamedTuple):
  """x_adv (B, ...): the adversarial iterate, or x where none was found; success (B,) bool; dist (B,): the
  perturbation's norm ||x_adv - x|| in the attack's norm (inf where none); steps (B,) int: the steps taken."""
  x_adv: Array
  success: Array
  dist: Array
  steps: Array


def candidate_classes(clean_logits: Array, y: Array, candidates: int | None) -> Array:
  """(B, m) int32 classes k != y: all K - 1 in class order (candidates None), or the m with the largest
  clean logits, largest first."""
  k = clean_logits.shape[1]
  is_y = jax.nn.one_hot(y, k, dtype=bool)
  if candidates is None:
    score, m = -jnp.arange(k, dtype=clean_logits.dtype)[None, :] * jnp.ones_like(clean_logits), k - 1
  else:
    score, m = clean_logits, int(candidates)
  order = jnp.argsort(-jnp.where(is_y, -jnp.inf, score), axis=1, stable=True)
  return order[:, :m].astype(jnp.int32)


def deepfool_search(logits_fn: LogitsFn, x: Array, y: Array, key=None, *, norm="l2", steps: int = 50,
                    overshoot=0.02, candidates: int | None = None) -> DeepFoolResult:
  """DeepFool returning a ``DeepFoolResult`` (module docstring). x (B, ...) in [0, 1]; y (B,) labels."""
  del key
  norm = linf_or_l2(norm, "DeepFool")
  k = num_classes(logits_fn, x)
  validate(x, y, k, overshoot=overshoot)
  check_num_classes(k, 2, "DeepFool")
  if candidates is not None and not 1 <= int(candidates) <= k - 1:
    raise ValueError(f"DeepFool: candidates must be None or lie in [1, K-1] = [1, {k - 1}]; got {candidates}")
  if int(steps) != steps or steps < 0:
    raise ValueError(f"DeepFool: need steps >= 0; got {steps}")
  b = x.shape[0]
  clean = logits_fn(x)
  check_logits(clean, y)
  cand = candidate_classes(clean, y, candidates)  # (B, m)
  onehot = lambda c: jax.nn.one_hot(c, k, dtype=clean.dtype)
  cotangents = jnp.swapaxes(onehot(cand) - onehot(y)[:, None, :], 0, 1)  # (m, B, K): e_k - e_y per example
  scale = 1.0 + jnp.asarray(overshoot, x.dtype)

  def wrong(logits):
    return jnp.argmax(logits, axis=1) != y

  def body(carry):
    t, xa, active, success, n_steps = carry
    logits, vjp = jax.vjp(logits_fn, xa)
    w = jax.vmap(lambda c: vjp(c)[0])(cotangents)  # (m, B, ...): grad z_k - grad z_y
    z_y = jnp.take_along_axis(logits, y[:, None], axis=1)
    f = jnp.take_along_axis(logits, cand, axis=1) - z_y  # (B, m)
    w_flat = jnp.swapaxes(w.reshape(w.shape[0], b, -1), 0, 1)  # (B, m, d)
    wn = (jnp.sqrt(jnp.sum(w_flat * w_flat, axis=2)) if norm == "l2" else jnp.sum(jnp.abs(w_flat), axis=2))
    dist = jnp.where(wn > 0, jnp.abs(f) / jnp.where(wn > 0, wn, 1.0), jnp.inf)
    l = jnp.argmin(dist, axis=1)  # (B,)
    pick = lambda a: jnp.take_along_axis(a, l[:, None], axis=1)[:, 0]
    f_l, wn_l = pick(f), pick(wn)
    w_l = jnp.take_along_axis(w_flat, l[:, None, None], axis=1)[:, 0].reshape(x.shape)
    safe = jnp.where(wn_l > 0, wn_l, 1.0)
    if norm == "l2":
      r = expand(jnp.abs(f_l) / safe ** 2, x) * w_l
    else:
      r = expand(jnp.abs(f_l) / safe, x) * jnp.sign(w_l)
    r = jnp.where(expand(wn_l > 0, x), r, 0.0)
    fooled_now = active & wrong(logits)  # x_t is adversarial: keep it, stop
    stepping = active & ~fooled_now
    xa = select(stepping, threat.clip_box(xa + scale * r), xa)
    return t + 1, xa, stepping, success | fooled_now, n_steps + stepping.astype(jnp.int32)

  def cond(carry):
    t, _, active, _, _ = carry
    return (t < steps) & jnp.any(active)

  start_fooled = wrong(clean)
  init = (jnp.int32(0), x, ~start_fooled, start_fooled, jnp.zeros((b,), jnp.int32))
  _, xa, active, success, n_steps = jax.lax.while_loop(cond, body, init)
  success = success | (active & wrong(logits_fn(xa)))  # the last step's iterate
  x_adv = select(success, xa, x)
  dist = jnp.where(success, threat.per_example_norm(x_adv - x, norm), jnp.inf)
  return DeepFoolResult(x_adv, success, dist, n_steps)


def deepfool(logits_fn: LogitsFn, x: Array, y: Array, key=None, *, eps=None, norm="l2", **kw) -> Array:
  """DeepFool (see ``deepfool_search`` for the options); returns x_adv like x: adversarial, or x.

  eps (optional, scalar or (B,)): keep an adversarial only if its norm is <= eps, else return x, so that
  accuracy on the output is DeepFool's robust accuracy at radius eps.
  """
  res = deepfool_search(logits_fn, x, y, key, norm=norm, **kw)
  if eps is None:
    return res.x_adv
  threat.check_eps(eps, x.shape[0])
  return select(res.success & (res.dist <= per_example(eps, x)), res.x_adv, x)


REGISTRY = {
    "deepfool": AttackInfo(configured(deepfool), norms=("l2", "linf"), forwards_to=(deepfool_search,),
                           summary="DeepFool: steps to the nearest linearised boundary, minimum norm "
                                   "(Moosavi-Dezfooli et al. 2016); returns x where it fails"),
}
