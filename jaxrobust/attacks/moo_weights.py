"""Task-weight solvers of the multi-objective attacks (``moo.py``): pure functions of per-sample Gram matrices.

Every solver works on one sample's m task gradients g_1..g_m through their Gram matrix Q_ij = g_i . g_j
(shape (..., m, m); leading axes are samples), the objective values f (..., m) and the achieved-goal mask
(..., m) bool, and returns weights w (..., m): the attack then steps along g = sum_i w_i g_i. A sample's
weights never read another sample's rows.

Simplex tools:
* ``simplex_projection``: exact Euclidean projection onto the simplex (sort-based; Held et al. 1974, Duchi et
  al. 2008), optionally onto {0 on masked coordinates} x simplex (Bui et al. 2023, Lemma 1).
* ``bisection_simplex_projection``: MinMax's projection (Wang et al. 2021), bisection on the threshold,
  20 iterations as the reference.

Solvers (Bui et al. 2023, TMLR, "Generating adversarial examples with task oriented multi-objective
optimization", section 3):
* ``mgda_two_task_closed_form``: Sener & Koltun (2018)'s min-norm element of two gradients.
* ``softmax_gd``: w = softmax(alpha), K plain gradient steps on alpha of the inner objective
    J(w) = w^T Q' w + lambda Omega(w) + gamma_u ||w - 1/m||^2 - gamma_H H_unachieved(w)
  (MOO / MGDA: lambda = 0, Bui et al. Eq. 2; TA-MOO: Algorithm 1, Eq. 4).
* ``task_oriented_regulariser``: Omega of Theorem 1; ``extended_simplex_projection``: Lemma 1.
* ``minmax_update``: w <- Proj(w + eta (-f - gamma (w - 1/m))) (Wang et al. 2021).
* ``pcgrad_weights`` (Yu et al. 2020), ``cagrad_weights`` (Liu et al. 2021), ``hvm_weights``: these return
  combination coefficients (not on the simplex) of the same form g = sum_i w_i g_i. Like every solver here they
  act per sample; the spec does not say whether the reference's ``mtl_pcgrad`` / ``mtl_cagrad`` see per-sample
  or whole-batch gradients (not checked against that code).

``WeightRule`` (optax-like ``init`` / ``update``) packs a solver with its per-sample state (alpha for the
softmax solvers, w for MinMax) for the attack loop.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxrobust.types import Array

MINMAX_BISECTION_ITERS = 20  # the reference's fixed number of bisection steps
_TINY = 1e-12


# ----------------------------------------------------------------------------------------
# Simplex projections
# ----------------------------------------------------------------------------------------

def simplex_projection(v: Array, allowed: Array | None = None) -> Array:
  """Exact Euclidean projection of v (..., m) onto the simplex, sort-based.

  With ``allowed`` (..., m) bool: onto S = {w : w_i = 0 where not allowed, the rest on the simplex}
  (Bui et al. 2023, Lemma 1, with the achieved tasks the disallowed ones): u = the allowed v sorted
  descending, rho = max{k : u_k + (1 - sum_{j<=k} u_j) / k > 0}, gamma = (1 - sum_{j<=rho} u_j) / rho
  (the thesis prints 1/rho with rho counted from s; 1/(rho - s) in its indexing), w_i = max(v_i + gamma, 0).
  No allowed coordinate (S empty): zeros, so ||w - proj|| = ||w|| as Omega's s = m case.
  """
  if allowed is None:
    allowed = jnp.ones(v.shape, bool)
  m = v.shape[-1]
  u = -jnp.sort(jnp.where(allowed, -v, jnp.inf), axis=-1)        # allowed values descending, -inf after
  count = jnp.sum(allowed, axis=-1, keepdims=True)
  k = jnp.arange(1, m + 1, dtype=v.dtype)
  u_safe = jnp.where(k <= count, u, 0.0)
  cumsum = jnp.cumsum(u_safe, axis=-1)
  support = (k <= count) & (u_safe + (1.0 - cumsum) / k > 0)
  rho = jnp.maximum(jnp.sum(support, axis=-1, keepdims=True), 1)
  gamma = (1.0 - jnp.take_along_axis(cumsum, rho - 1, axis=-1)) / rho.astype(v.dtype)
  return jnp.where(allowed, jnp.maximum(v + gamma, 0.0), 0.0)


def bisection_simplex_projection(v: Array, iters: int = MINMAX_BISECTION_ITERS) -> Array:
  """MinMax's simplex projection (Wang et al. 2021): max(v - mu, 0) with sum = 1 found by ``iters`` bisection
  steps on mu in [min v - 1, max v] (sum is then 1 within m (range + 1) 2^-(iters+1))."""
  lo = jnp.min(v, axis=-1, keepdims=True) - 1.0
  hi = jnp.max(v, axis=-1, keepdims=True)

  def body(_, bracket):
    lo, hi = bracket
    mu = 0.5 * (lo + hi)
    too_big = jnp.sum(jnp.maximum(v - mu, 0.0), axis=-1, keepdims=True) > 1.0
    return jnp.where(too_big, mu, lo), jnp.where(too_big, hi, mu)

  lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
  return jnp.maximum(v - 0.5 * (lo + hi), 0.0)


# ----------------------------------------------------------------------------------------
# MGDA (Sener & Koltun 2018) and the task-oriented regulariser (Bui et al. 2023)
# ----------------------------------------------------------------------------------------

def mgda_two_task_closed_form(q: Array, code_clip: bool = False) -> Array:
  """argmin_{w in simplex_2} ||w_1 g_1 + w_2 g_2||^2 from Q (..., 2, 2) -> w (..., 2).

  w_1 = clip((Q_22 - Q_12) / (Q_11 + Q_22 - 2 Q_12), 0, 1); g_1 . g_2 >= ||g_1||^2 gives (1, 0) and
  g_1 . g_2 >= ||g_2||^2 gives (0, 1) (identical gradients: (1, 0)). ``code_clip``: the reference's
  [0.001, 0.999] (``min_norm_element_from2``).
  """
  lo, hi = (0.001, 0.999) if code_clip else (0.0, 1.0)
  q11, q12, q22 = q[..., 0, 0], q[..., 0, 1], q[..., 1, 1]
  denom = q11 + q22 - 2.0 * q12
  interior = (q22 - q12) / jnp.where(denom > 0, denom, 1.0)
  w1 = jnp.where(q12 >= q11, hi, jnp.where(q12 >= q22, lo, jnp.clip(interior, lo, hi)))
  return jnp.stack([w1, 1.0 - w1], axis=-1)


def task_oriented_regulariser(w: Array, achieved: Array) -> Array:
  """Omega(w) = min_{pi in S} ||w - pi||^2, S = {0 on achieved} x simplex (Bui et al. 2023, Theorem 1):

      Omega = sum_{achieved} w_i^2 + (1 / (m - s)) (1 - sum_{unachieved} w_i)^2     for w on the simplex,

  s the number of achieved tasks; s = m drops the second term (S is empty: Omega = sum w_i^2; the reference's
  1e-8 denominator adds a constant there). w, achieved: (..., m) -> (...)."""
  unachieved = ~achieved
  n_open = jnp.sum(unachieved, axis=-1)
  on_achieved = jnp.sum(jnp.where(achieved, w * w, 0.0), axis=-1)
  missing = 1.0 - jnp.sum(jnp.where(unachieved, w, 0.0), axis=-1)
  spread = jnp.where(n_open > 0, missing * missing / jnp.maximum(n_open, 1).astype(w.dtype), 0.0)
  return on_achieved + spread


def extended_simplex_projection(w: Array, achieved: Array) -> Array:
  """proj_S(w), S = {0 on achieved} x simplex (Bui et al. 2023, Lemma 1)."""
  return simplex_projection(w, allowed=~achieved)


class InnerObjective(NamedTuple):
  """Hyperparameters of J(w) = w^T Q' w + lam Omega(w) + gamma_u ||w - 1/m||^2 - gamma_H H_unachieved(w).

  tamoo_lambda: lam (0 = MOO / MGDA; TA-MOO: 100). uniform_reg: gamma_u (the reference MOO's 20; thesis 0).
  entropy_bonus: gamma_H, subtracting gamma_H * (-sum_{unachieved} w log w): the reference's 20 *maximises*
  that entropy (balances the unachieved tasks; Bui et al. App. E.1); thesis 0.
  mask_achieved_gradients: Q' keeps only unachieved tasks' gradients (the reference's EoT variant).
  """
  tamoo_lambda: float = 0.0
  uniform_reg: float = 0.0
  entropy_bonus: float = 0.0
  mask_achieved_gradients: bool = False


def inner_objective(w: Array, q: Array, achieved: Array, hp: InnerObjective) -> Array:
  """J(w) per sample: w (..., m), Q (..., m, m), achieved (..., m) -> (...)."""
  if hp.mask_achieved_gradients:
    open_ = (~achieved).astype(q.dtype)
    q = q * open_[..., :, None] * open_[..., None, :]
  value = jnp.einsum("...i,...ij,...j->...", w, q, w)
  if hp.tamoo_lambda:
    value = value + hp.tamoo_lambda * task_oriented_regulariser(w, achieved)
  if hp.uniform_reg:
    value = value + hp.uniform_reg * jnp.sum((w - 1.0 / w.shape[-1]) ** 2, axis=-1)
  if hp.entropy_bonus:
    w_log_w = w * jnp.log(jnp.maximum(w, 1e-30))
    value = value + hp.entropy_bonus * jnp.sum(jnp.where(achieved, 0.0, w_log_w), axis=-1)
  return value


def softmax_gd(alpha: Array, q: Array, achieved: Array, hp: InnerObjective, steps: int = 10,
               lr: float = 0.005) -> Array:
  """``steps`` plain GD steps alpha <- alpha - lr grad_alpha J(softmax(alpha)) (Bui et al. 2023, Algorithm 1;
  thesis K = 10, eta_w = 0.005). alpha (..., m) -> alpha; w = softmax(alpha). J is a per-sample sum, so the
  gradient of its batch total is per sample."""
  achieved = jnp.asarray(achieved, bool)

  def total(a):
    return jnp.sum(inner_objective(jax.nn.softmax(a, axis=-1), q, achieved, hp))

  grad = jax.grad(total)
  return jax.lax.fori_loop(0, steps, lambda _, a: a - lr * grad(a), alpha)


# ----------------------------------------------------------------------------------------
# MinMax (Wang et al. 2021), PCGrad (Yu et al. 2020), CAGrad (Liu et al. 2021), HVM
# ----------------------------------------------------------------------------------------

def minmax_update(w: Array, f: Array, gamma: float = 3.0, lr: float = 0.005,
                  iters: int = MINMAX_BISECTION_ITERS) -> Array:
  """One step of the min player of max_delta min_{w in simplex} sum_i w_i f_i + (gamma/2) ||w - 1/m||^2:
  w <- Proj(w + lr (-f - gamma (w - 1/m))) (bisection projection). Its fixed point is
  Proj(1/m - f / gamma), which tends to 1/m as gamma grows."""
  m = w.shape[-1]
  return bisection_simplex_projection(w + lr * (-f - gamma * (w - 1.0 / m)), iters)


def pcgrad_weights(q: Array, keys: Array | None = None) -> Array:
  """PCGrad (Yu et al. 2020; reduction 'mean'), in coefficient space: Q (N, m, m) -> w (N, m).

  Each g_i' starts at g_i and, for j over the tasks in a random order (``keys`` (N,), one per sample; None: the
  order 1..m), loses its component along g_j when g_i' . g_j < 0: g_i' -= (g_i' . g_j / ||g_j||^2) g_j. The
  result is g = mean_i g_i' = sum_k w_k g_k, every dot product read from Q."""
  m = q.shape[-1]
  eye = jnp.eye(m, dtype=q.dtype)

  def one_sample(qs, key):
    if key is None:
      orders = jnp.tile(jnp.arange(m), (m, 1))
    else:
      orders = jnp.argsort(jax.random.uniform(key, (m, m)), axis=-1)  # row i: task i's random order

    def project_row(i, order):
      def body(k, c):
        j = order[k]
        dot, norm2 = c @ qs[:, j], qs[j, j]
        return c - jnp.where((dot < 0) & (norm2 > 0), dot / jnp.where(norm2 > 0, norm2, 1.0), 0.0) * eye[j]
      return jax.lax.fori_loop(0, m, body, eye[i])

    return jnp.mean(jax.vmap(project_row)(jnp.arange(m), orders), axis=0)

  if keys is None:
    return jax.vmap(lambda qs: one_sample(qs, None))(q)
  return jax.vmap(one_sample)(q, keys)


def cagrad_weights(q: Array, alpha: float = 0.5, rescale: int = 1, iters: int = 100) -> Array:
  """CAGrad (Liu et al. 2021; reference ``cagrad``) in coefficient space: Q (..., m, m) -> w (..., m).

  x = argmin_{x in simplex} x^T Q b + c sqrt(x^T Q x + 1e-8), b = 1/m, c = alpha ||g_0|| (||g_0||^2 = mean Q)
  (the reference solves it with scipy SLSQP; here ``iters`` projected-gradient steps of size 1 / (Q's largest
  diagonal entry * m) from x = b); g = g_0 + (c / ||G x||) G x, divided by 1 + alpha^2 (``rescale`` 1, the
  thesis's), 1 + alpha (2) or not (0)."""
  m = q.shape[-1]
  b = jnp.full(q.shape[:-1], 1.0 / m, q.dtype)
  g0_norm = jnp.sqrt(jnp.mean(q, axis=(-2, -1)) + 1e-8)
  c = (alpha * g0_norm + 1e-8)[..., None]
  qb = jnp.einsum("...ij,...j->...i", q, b)

  def grad(x):
    qx = jnp.einsum("...ij,...j->...i", q, x)
    return qb + c * qx / jnp.sqrt(jnp.sum(x * qx, axis=-1, keepdims=True) + 1e-8)

  lr = 1.0 / (m * jnp.max(jnp.diagonal(q, axis1=-2, axis2=-1), axis=-1, keepdims=True) + _TINY)
  x = jax.lax.fori_loop(0, iters, lambda _, x: simplex_projection(x - lr * grad(x)), b)
  gw_norm = jnp.sqrt(jnp.maximum(jnp.einsum("...i,...ij,...j->...", x, q, x), 0.0))[..., None]
  w = b + c / (gw_norm + 1e-8) * x
  if rescale == 1:
    return w / (1.0 + alpha ** 2)
  if rescale == 2:
    return w / (1.0 + alpha)
  return w


def hvm_weights(f: Array, nadir_scale: float = 0.5) -> Array:
  """Hypervolume maximisation (the reference's ``PGD_Linf_HVM``): the gradient of sum_i log(f_i - r),
  nadir r = nadir_scale * min_i f_i held fixed during the step, is sum_i w_i g_i with
  w_i = 1 / (f_i - r) (floored at 1e-12: assumes f >= 0, as CE / KL / CW)."""
  nadir = nadir_scale * jnp.min(f, axis=-1, keepdims=True)
  return 1.0 / jnp.maximum(f - nadir, _TINY)


# ----------------------------------------------------------------------------------------
# Weight rules: a solver and its per-sample state, for the attack loop
# ----------------------------------------------------------------------------------------

class WeightRule(NamedTuple):
  """init(n, m, dtype) -> state; update(state, Q (n, m, m), f (n, m), achieved (n, m), keys (n,)) ->
  (w (n, m), state). uses_gram: False when w reads only f (then Q is not computed: pass None)."""
  init: Callable
  update: Callable
  uses_gram: bool = True


def uniform_rule() -> WeightRule:
  """w = 1/m: PGD on sum_i f_i (a sign step does not see the scale)."""
  return WeightRule(init=lambda n, m, dtype: (),
                    update=lambda s, q, f, a, k: (jnp.full(f.shape, 1.0 / f.shape[-1], f.dtype), s),
                    uses_gram=False)


def softmax_gd_rule(hp: InnerObjective, steps: int = 10, lr: float = 0.005) -> WeightRule:
  """MOO / TA-MOO: alpha warm-started across outer steps (alpha_0 = 1/m, uniform w)."""
  def init(n, m, dtype):
    return jnp.full((n, m), 1.0 / m, dtype)

  def update(alpha, q, f, achieved, keys):
    alpha = softmax_gd(alpha, q, achieved, hp, steps, lr)
    return jax.nn.softmax(alpha, axis=-1), alpha
  return WeightRule(init, update)


def minmax_rule(gamma: float = 3.0, lr: float = 0.005) -> WeightRule:
  """MinMax: w itself on the simplex, one ``minmax_update`` per outer step from w_0 = 1/m."""
  def update(w, q, f, achieved, keys):
    w = minmax_update(w, f, gamma, lr)
    return w, w
  return WeightRule(lambda n, m, dtype: jnp.full((n, m), 1.0 / m, dtype), update, uses_gram=False)


def pcgrad_rule(shuffle: bool = True) -> WeightRule:
  return WeightRule(lambda n, m, dtype: (),
                    lambda s, q, f, a, keys: (pcgrad_weights(q, keys if shuffle else None), s))


def cagrad_rule(alpha: float = 0.5, rescale: int = 1) -> WeightRule:
  return WeightRule(lambda n, m, dtype: (), lambda s, q, f, a, k: (cagrad_weights(q, alpha, rescale), s))


def hvm_rule(nadir_scale: float = 0.5) -> WeightRule:
  return WeightRule(lambda n, m, dtype: (), lambda s, q, f, a, k: (hvm_weights(f, nadir_scale), s),
                    uses_gram=False)


# Helpers, not attacks: nothing to register.
REGISTRY: dict = {}
