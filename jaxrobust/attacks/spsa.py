"""SPSA (Uesato et al. 2018), Linf, gradient-free: Adam on the perturbation with SPSA gradient estimates.

As cleverhans 3.0.1 ``SPSA`` (the version CCE's evaluation uses; defaults lr 0.01, delta 0.01, 128 samples,
1 SPSA iteration), per example:

    d_0     = Pi(U[-eps, eps]^d)                     Pi: Linf ball, then the [0, 1] box (on x + d)
    ghat_t  = 1/n sum_{j<n} (L(x + d_t + delta v_j) - L(x + d_t - delta v_j)) / (2 delta) v_j,
              v_j in {-1, +1}^d Rademacher, n = spsa_samples / 2 mirrored pairs (spsa_samples model calls)
    d_t+1   = Pi(Adam(d_t, ghat_t))                  lr 0.01, beta 0.9 / 0.999, eps 1e-9 (cleverhans TensorAdam)
    L(x')   = z_y(x') - max_{j != y} z_j(x')         (cleverhans ``margin_logit_loss`` times -1; minimised.
                                                      Targeted: max_{j != t} z_j - z_t)

x_adv = x + d_T (the last iterate, as cleverhans; not the best one). With ``early_stop_loss_threshold`` s
(cleverhans' option, default None = off), an example whose loss at its projected iterate falls below s stops
there (s = 0: stop at the first adversarial iterate). ``spsa_iters`` > 1 averages that many estimates per
step (cleverhans sums them; Adam is invariant to that scale up to its epsilon).

Deviations from cleverhans, and the options that switch them:

* cleverhans attacks one example at a time (batch size 1). Here the batch is attacked at once; every draw
  is per example (example i from ``fold_in(key, i)``, then the step and the sample chunk folded in), so
  batch size changes nothing.
* cleverhans feeds Adam mean_j(L_j v_j) over the 2n mirrored samples, i.e. delta * ghat; Adam's update is
  invariant to that scale except for its epsilon, so the same scale is passed here (``spsa_gradient``
  itself returns the unscaled ghat).
* ``init='none'`` starts from d_0 = 0 (advertorch / torchattacks ``SPSA``). torchattacks also differs in:
  ``nb_sample`` = number of mirrored *pairs* (its 128 = 256 model calls per step; here
  ``spsa_samples=256``), one direction shared by the whole batch per sample, torch Adam (eps 1e-8) on
  ghat, and nb_iter default 1.
* ``sample_chunk``: evaluate the 2n probes of each example in chunks of that many pairs (``lax.scan``) to
  bound memory (B * 2 * chunk model inputs per call); None = all at once. The directions have the same
  distribution either way but are different draws.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.model_calls import check_logits, num_classes, resolve_unroll, validate
from jaxrobust.attacks.per_example import example_keys, fold_keys, per_example, select
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.types import Array, LogitsFn

SPSA_INITS = ("uniform", "none")
_ADAM_B1, _ADAM_B2, _ADAM_EPS = 0.9, 0.999, 1e-9  # cleverhans TensorAdam


def margin_loss(logits: Array, y: Array, targeted: bool = False) -> Array:
  """(B,) loss SPSA minimises: z_y - max_{j != y} z_j (untargeted), max_{j != t} z_j - z_t (targeted)."""
  m = losses_lib.margin(logits, y)
  return -m if targeted else m


def spsa_gradient(loss_fn: Callable[[Array], Array], x: Array, keys: Array, *, delta=0.01, samples: int = 128,
                  iters: int = 1, sample_chunk: int | None = None) -> Array:
  """SPSA estimate of grad_x sum_i loss_fn(x)_i, per example, without gradients.

  loss_fn: (N, ...) -> (N,) per-example losses (N any multiple of B: it is called on probes of all examples
  at once). x: (B, ...). keys: (B,) per-example keys. ``samples`` model calls per example and estimate:
  samples / 2 Rademacher directions v, each probed at x + delta v and x - delta v; the estimate is
  mean_v (L(x + delta v) - L(x - delta v)) / (2 delta) v, averaged over ``iters`` independent estimates.
  Unbiased up to O(delta^2) for a smooth loss; its variance falls as 1 / (samples * iters).
  """
  if samples < 2 or samples % 2:
    raise ValueError(f"spsa samples must be an even number >= 2 (mirrored pairs); got {samples}")
  pairs = samples // 2
  chunk = pairs if sample_chunk is None else int(sample_chunk)
  if chunk < 1 or pairs % chunk:
    raise ValueError(f"sample_chunk must divide samples / 2 = {pairs}; got {sample_chunk}")
  b, shape = x.shape[0], x.shape[1:]
  delta = jnp.asarray(delta, x.dtype)

  def chunk_sum(ks):  # ks (B,) keys -> sum over `chunk` pairs of (L+ - L-) v, (B, ...)
    v = jax.vmap(lambda k: jax.random.rademacher(k, (chunk,) + shape, x.dtype))(ks)  # (B, chunk, ...)
    probes = jnp.concatenate([x[:, None] + delta * v, x[:, None] - delta * v], axis=1)  # (B, 2 chunk, ...)
    vals = loss_fn(probes.reshape((b * 2 * chunk,) + shape)).reshape(b, 2, chunk)
    diff = vals[:, 0] - vals[:, 1]  # (B, chunk)
    return jnp.einsum("bc,bc...->b...", diff, v)

  def one_estimate(i):
    ks = fold_keys(keys, i)
    if chunk == pairs:
      total = chunk_sum(ks)
    else:
      total = jax.lax.scan(lambda acc, c: (acc + chunk_sum(fold_keys(ks, c)), None), jnp.zeros_like(x),
                           jnp.arange(pairs // chunk))[0]
    return total / (2 * delta * pairs)

  if iters == 1:
    return one_estimate(0)
  return jax.lax.fori_loop(0, iters, lambda i, acc: acc + one_estimate(i), jnp.zeros_like(x)) / iters


def spsa(logits_fn: LogitsFn, x: Array, y: Array, key, *, eps, steps: int = 50, lr=0.01, delta=0.01,
         spsa_samples: int = 128, spsa_iters: int = 1, early_stop_loss_threshold: float | None = None,
         init: str = "uniform", targeted: bool = False, sample_chunk: int | None = None,
         unroll: int | bool | None = None) -> Array:
  """SPSA-Linf (see the module docstring). Returns x_adv like x, in the eps-ball and the box.

  x (B, ...) in [0, 1]; y (B,) labels (targets when targeted); key: one key (example i uses fold_in(key, i))
  or (B,) per-example keys. eps scalar or (B,). steps: cleverhans' nb_iter (no default there; 50 in the CCE
  protocol). spsa_samples: model calls per estimate (cleverhans' spsa_samples, even).
  """
  validate(x, y, num_classes(logits_fn, x), eps=eps, lr=lr, delta=delta)
  if init not in SPSA_INITS:
    raise ValueError(f"unknown SPSA init {init!r}; expected one of {SPSA_INITS}")
  if int(steps) != steps or steps < 0 or spsa_iters < 1:
    raise ValueError(f"need steps >= 0 and spsa_iters >= 1; got steps={steps}, spsa_iters={spsa_iters}")
  keys = example_keys(key, x.shape[0])
  eps_b = per_example(eps, x)
  b, shape = x.shape[0], x.shape[1:]

  def loss_at(points):  # (N, ...) -> (N,); N = B * m, rows grouped by example
    logits = logits_fn(points)
    m = points.shape[0] // b
    yy = jnp.repeat(y, m)
    check_logits(logits, yy)
    return margin_loss(logits, yy, targeted)

  def project(d):  # the iterate x + d in the ball and the box (kept as a point, so it is exactly in both)
    return threat.project_ball_and_box(x + d, x, eps_b, "linf")

  if init == "uniform":
    d0 = jax.vmap(lambda k, e: jax.random.uniform(jax.random.fold_in(k, 0x5eed), shape, x.dtype, -e, e))(keys, eps_b)
    xa0 = project(d0)
  else:
    xa0 = x
  early = early_stop_loss_threshold is not None
  lr = jnp.asarray(lr, x.dtype)

  def step(t, carry):
    xa, m, u, done = carry
    g = spsa_gradient(loss_at, xa, fold_keys(keys, t), delta=delta, samples=spsa_samples, iters=spsa_iters,
                      sample_chunk=sample_chunk)
    g = g * jnp.asarray(delta, x.dtype)  # cleverhans' scale (module docstring)
    m = _ADAM_B1 * m + (1 - _ADAM_B1) * g
    u = _ADAM_B2 * u + (1 - _ADAM_B2) * g * g
    tt = (t + 1).astype(x.dtype)
    m_hat = m / (1 - _ADAM_B1 ** tt)
    u_hat = u / (1 - _ADAM_B2 ** tt)
    xa_new = project((xa - x) - lr * m_hat / (jnp.sqrt(u_hat) + _ADAM_EPS))
    if early:
      xa_new = select(done, xa, xa_new)
      done = done | (loss_at(xa_new) < early_stop_loss_threshold)
    return xa_new, m, u, done

  carry = (xa0, jnp.zeros_like(x), jnp.zeros_like(x), jnp.zeros((b,), bool))
  return jax.lax.fori_loop(0, steps, step, carry, unroll=resolve_unroll(unroll, steps))[0]


REGISTRY = {
    "spsa": AttackInfo(configured(spsa), box="black",
                       summary="SPSA: Adam on SPSA gradient estimates of the margin loss, Linf (Uesato et al. 2018; "
                               "cleverhans defaults)"),
}
