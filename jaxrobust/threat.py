"""Threat models: projections onto eps-balls and the [0, 1] box, random starts, input checks.

All functions take images ``x`` of shape ``(B, ...)`` and ``eps`` either a scalar or a
per-example array of shape ``(B,)``. Norms are per example over all non-batch axes.
Every attack applies the ball projection first and the box clip second (box clipping only
shrinks ``|delta_i|``, so the result stays in the ball).

The L-inf ball and the box are ``optax.projections.projection_box`` (an elementwise clip, the
same arithmetic). The L2 and L1 balls are computed here: optax's ``projection_l2_ball``
(delta eps / sqrt(max(||delta||^2, eps^2))) and ``projection_l1_ball`` (a simplex projection of
|delta| / eps) round differently from the formulas the attacks were verified with, and give NaN
at eps = 0 (L2 when delta = 0, L1 when delta != 0), where an attack must return x
(tests/test_threat.py checks both).
"""

from __future__ import annotations

import math
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np
from optax import projections as optax_projections

from jaxrobust.types import Array

Norm = Union[str, float, int]
_NORMS = {"inf": "linf", "linf": "linf", "l_inf": "linf", "2": "l2", "l2": "l2", "1": "l1", "l1": "l1"}


def canonical_norm(norm: Norm) -> str:
  """Maps 'inf'/np.inf/'Linf'/2/'L2'/1 to 'linf', 'l2' or 'l1'; raises on anything else."""
  if isinstance(norm, (int, float)) and not isinstance(norm, bool):
    key = "inf" if math.isinf(norm) else str(int(norm))
  else:
    key = str(norm).lower()
  if key not in _NORMS:
    raise ValueError(f"unknown norm {norm!r}; expected one of 'linf' (np.inf), 'l2' (2) or 'l1' (1)")
  return _NORMS[key]


def _bcast(eps, x: Array) -> Array:
  """Broadcasts a scalar or (B,) eps against x of shape (B, ...)."""
  eps = jnp.asarray(eps, dtype=x.dtype)
  if eps.ndim == 0:
    return eps
  return eps.reshape(eps.shape + (1,) * (x.ndim - eps.ndim))


def _rows(v: Array, x: Array) -> Array:
  """(B,) -> (B, 1, ..., 1) with x's rank."""
  return v.reshape((-1,) + (1,) * (x.ndim - 1))


def per_example_norm(v: Array, norm: Norm) -> Array:
  """(B, ...) -> (B,) Lp norm over all non-batch axes."""
  norm = canonical_norm(norm)
  flat = v.reshape(v.shape[0], -1)
  if norm == "linf":
    return jnp.max(jnp.abs(flat), axis=1)
  if norm == "l2":
    return jnp.sqrt(jnp.sum(flat * flat, axis=1))
  return jnp.sum(jnp.abs(flat), axis=1)


def clip_box(x: Array, low: float = 0.0, high: float = 1.0) -> Array:
  """clip(x, low, high) elementwise (``optax.projections.projection_box``)."""
  return optax_projections.projection_box(x, low, high)


def project_linf(x_adv: Array, x: Array, eps) -> Array:
  """Pi_inf(x'; x, eps) = clip(x', x - eps, x + eps) elementwise (``optax.projections.projection_box``)."""
  e = _bcast(eps, x)
  return optax_projections.projection_box(x_adv, x - e, x + e)


def project_l2(x_adv: Array, x: Array, eps, stabilizer: float | None = None) -> Array:
  """Pi_2(x'; x, eps), delta = x' - x, per example, in one of two arithmetic forms:

  stabilizer None: x + delta * min(1, eps / ||delta||_2) (torch ``renorm``, as the PGD references);
  stabilizer s:    x + delta / (||delta||_2 + s) * min(eps, ||delta||_2) (AutoAttack's APGD, Croce &
                   Hein 2020, ``autopgd_base.py``; s = 1e-12 there).
  The two agree up to float rounding; each attack uses the form of the code it was verified against.
  """
  delta = x_adv - x
  n = per_example_norm(delta, "l2")
  eps = jnp.broadcast_to(jnp.asarray(eps, x.dtype), n.shape)
  if stabilizer is not None:
    return x + delta / _rows(n + stabilizer, x) * _rows(jnp.minimum(eps, n), x)
  # Dividing by a safe norm keeps the gradient of this projection finite at delta = 0.
  factor = jnp.minimum(1.0, eps / jnp.where(n > 0, n, 1.0))
  return x + delta * _rows(factor, x)


def project_l1(x_adv: Array, x: Array, eps) -> Array:
  """Euclidean projection of delta onto the L1 ball (Duchi et al. 2008), per example."""
  delta = x_adv - x
  b = delta.shape[0]
  flat = delta.reshape(b, -1)
  eps = jnp.broadcast_to(jnp.asarray(eps, x.dtype), (b,))
  abs_d = jnp.abs(flat)
  mu = -jnp.sort(-abs_d, axis=1)
  cumsum = jnp.cumsum(mu, axis=1)
  ar = jnp.arange(1, flat.shape[1] + 1, dtype=x.dtype)
  cond = mu - (cumsum - eps[:, None]) / ar > 0
  rho = jnp.max(jnp.where(cond, ar, 0), axis=1)
  theta = (jnp.take_along_axis(cumsum, (rho.astype(jnp.int32) - 1)[:, None], axis=1)[:, 0] - eps) / rho
  inside = jnp.sum(abs_d, axis=1) <= eps
  theta = jnp.where(inside, 0.0, jnp.maximum(theta, 0.0))
  proj = jnp.sign(flat) * jnp.maximum(abs_d - theta[:, None], 0.0)
  return x + proj.reshape(delta.shape)


def project_l1_box(x_adv: Array, x: Array, eps, n_iter: int = 48) -> Array:
  """The exact Euclidean projection onto {z : ||z - x||_1 <= eps, 0 <= z <= 1}, per example (x in [0, 1]).

  The problem of APGD-L1's ``L1_projection`` (Croce & Hein 2021, "Mind the box", ``autopgd_base.py``). With
  y = x_adv - x, a_i = |y_i| and cap_i = min(a_i, room_i) (room_i = 1 - x_i for y_i >= 0, x_i otherwise), the KKT
  conditions give delta_i = sign(y_i) clip(a_i - lam, 0, cap_i) with lam = 0 when ||clip_box(y)||_1 <= eps, else
  the lam >= 0 with f(lam) = sum_i clip(a_i - lam, 0, cap_i) = eps (f is piecewise linear and non-increasing).
  lam is bracketed by ``n_iter`` bisection steps, then solved exactly on the bracket's active set
  (lam = (sum_sat cap_i + sum_act a_i - eps) / |act|), so the result is exact up to float rounding. The reference
  finds the same lam by a sort and a ceil(log2 2d)-step search. Returns z (box-clipped against rounding).
  """
  delta = x_adv - x
  b = delta.shape[0]
  y = delta.reshape(b, -1)
  xf = x.reshape(b, -1)
  eps = jnp.broadcast_to(jnp.asarray(eps, x.dtype), (b,))
  a = jnp.abs(y)
  room = jnp.maximum(jnp.where(y >= 0, 1.0 - xf, xf), 0.0)
  cap = jnp.minimum(a, room)
  start = a - cap  # lam at which coordinate i leaves its box bound

  def f(lam):
    return jnp.sum(jnp.clip(a - lam[:, None], 0.0, cap), axis=1)

  def body(_, bracket):
    lo, hi = bracket
    mid = 0.5 * (lo + hi)
    above = f(mid) > eps
    return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

  lo, hi = jax.lax.fori_loop(0, n_iter, body, (jnp.zeros_like(eps), jnp.max(a, axis=1)))
  sat = start > lo[:, None]
  act = (~sat) & (a > lo[:, None])
  n_act = jnp.sum(act, axis=1).astype(x.dtype)
  num = jnp.sum(jnp.where(sat, cap, 0.0), axis=1) + jnp.sum(jnp.where(act, a, 0.0), axis=1) - eps
  lam = jnp.clip(jnp.where(n_act > 0, num / jnp.where(n_act > 0, n_act, 1.0), hi), lo, hi)
  lam = jnp.where(jnp.sum(cap, axis=1) > eps, lam, 0.0)
  proj = jnp.sign(y) * jnp.clip(a - lam[:, None], 0.0, cap)
  return clip_box(x + proj.reshape(delta.shape))


def project(x_adv: Array, x: Array, eps, norm: Norm, stabilizer: float | None = None) -> Array:
  """Ball projection for the given norm (no box clip); ``stabilizer`` picks the L2 form (``project_l2``)."""
  norm = canonical_norm(norm)
  if norm == "linf":
    return project_linf(x_adv, x, eps)
  if norm == "l2":
    return project_l2(x_adv, x, eps, stabilizer)
  return project_l1(x_adv, x, eps)


def project_ball_and_box(x_adv: Array, x: Array, eps, norm: Norm, stabilizer: float | None = None) -> Array:
  """Ball projection, then the [0, 1] box; ``stabilizer`` picks the L2 form (``project_l2``)."""
  return clip_box(project(x_adv, x, eps, norm, stabilizer))


def random_start(key, x: Array, eps, norm: Norm) -> Array:
  """PGD random start (Madry / Rice ``attack_pgd``), box-clipped.

  Linf: x + U(-eps, eps)^d. L2: x + r * eps * n / ||n||_2 with n ~ N(0, I), r ~ U(0, 1)
  per example (uniform radius, as the reference code does; not uniform in the ball).
  """
  norm = canonical_norm(norm)
  if norm == "linf":
    delta = jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * _bcast(eps, x)
  elif norm == "l2":
    kn, kr = jax.random.split(key)
    n = jax.random.normal(kn, x.shape, x.dtype)
    nn = per_example_norm(n, "l2")
    r = jax.random.uniform(kr, (x.shape[0],), x.dtype)
    scale = r * jnp.broadcast_to(jnp.asarray(eps, x.dtype), r.shape) / jnp.maximum(nn, 1e-12)
    delta = n * _rows(scale, x)
  else:
    kn, kr = jax.random.split(key)
    n = jax.random.laplace(kn, x.shape, x.dtype)
    r = jax.random.uniform(kr, (x.shape[0],), x.dtype)
    scale = r * jnp.broadcast_to(jnp.asarray(eps, x.dtype), r.shape) / jnp.maximum(per_example_norm(n, "l1"), 1e-12)
    delta = n * _rows(scale, x)
  return clip_box(x + delta)


def normalize_gradient(g: Array, norm: Norm, stabilizer: float = 1e-10) -> Array:
  """Steepest-ascent direction for a unit step: sign(g) for Linf, g / (||g||_p + stabilizer) for L2 / L1.

  The stabiliser is 1e-10 in the PGD references and 1e-12 in AutoAttack's ``normalize``.
  """
  norm = canonical_norm(norm)
  if norm == "linf":
    return jnp.sign(g)
  n = per_example_norm(g, "l2" if norm == "l2" else "l1")
  return g / (_rows(n, g) + stabilizer)


# ----------------------------------------------------------------------------------------
# Input validation: these run on concrete (host) values only, never inside jit.
# ----------------------------------------------------------------------------------------

def _is_concrete(a) -> bool:
  return not isinstance(a, jax.core.Tracer)


def check_eps(eps, batch_size: int | None = None, name: str = "eps") -> None:
  """Raises ValueError for eps < 0, NaN, or a per-example eps of the wrong shape."""
  if not _is_concrete(eps):
    return
  arr = np.asarray(eps)
  if arr.ndim > 1 or (arr.ndim == 1 and batch_size is not None and arr.shape[0] != batch_size):
    raise ValueError(f"{name} must be a scalar or an array of shape (batch,)=({batch_size},); got shape {arr.shape}")
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name} must be finite; got {eps!r}")
  if np.any(arr < 0):
    raise ValueError(f"{name} must be >= 0; got {eps!r}")


def check_pixel_values(arr, name: str = "x") -> None:
  """Raises for NaN / Inf pixels or pixels outside [0, 1] in a concrete (host) array of float pixels.

  A NaN compares false with both bounds, so the range test alone lets it through; attacks would then
  return NaN images and accuracies computed on them count as 0.
  """
  arr = np.asarray(arr)
  if not arr.size:
    return
  finite = np.isfinite(arr)
  if not finite.all():
    bad = np.flatnonzero(~finite.reshape(len(arr), -1).all(axis=1)) if arr.ndim > 1 else np.flatnonzero(~finite)
    raise ValueError(f"{name} holds NaN or Inf pixels (in {len(bad)} example(s), the first at index {int(bad[0])}); "
                     "images must be finite pixels in [0, 1]: fix or drop those examples (np.isfinite)")
  lo, hi = float(arr.min()), float(arr.max())
  if lo < 0.0 or hi > 1.0:
    raise ValueError(f"{name} must lie in [0, 1] (pixels: attacks work in pixel space and the model normalises "
                     f"internally); got values in [{lo:.4g}, {hi:.4g}]")


def check_nonempty(x, name: str = "x") -> None:
  """Raises for an empty batch (leading axis 0), which compiled loops would divide by."""
  if getattr(x, "ndim", 0) >= 1 and x.shape[0] == 0:
    raise ValueError(f"{name} is an empty batch (shape {x.shape}); pass at least one example")


def check_images(x, name: str = "x", min_rank: int = 2) -> None:
  """Raises for non-float dtypes, wrong rank, an empty batch, or pixels that are not finite values in [0, 1].

  The value checks run when x is concrete (host-side, before any compiled program); inside a traced
  function (a caller's ``jax.jit``) only dtype and shape are checked, so the call stays traceable.
  """
  if not hasattr(x, "dtype") or not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{name} must be a floating-point array of pixels in [0, 1]; got dtype "
                    f"{getattr(x, 'dtype', type(x))}. Convert uint8 images with x.astype(np.float32) / 255.")
  if x.ndim < min_rank:
    raise ValueError(f"{name} must have a leading batch axis (rank >= {min_rank}); got shape {x.shape}")
  check_nonempty(x, name)
  if _is_concrete(x):
    check_pixel_values(x, name)  # host-side: works while an enclosing function is being traced


def check_labels(y, batch_size: int, num_classes: int | None = None, name: str = "y") -> None:
  """Raises for non-integer labels, a wrong batch size, or labels outside [0, num_classes)."""
  if not hasattr(y, "dtype") or not jnp.issubdtype(y.dtype, jnp.integer):
    raise TypeError(f"{name} must be integer class labels; got dtype {getattr(y, 'dtype', type(y))}")
  if y.shape != (batch_size,):
    raise ValueError(f"{name} must have shape (batch,)=({batch_size},); got {y.shape}")
  if num_classes is not None and _is_concrete(y) and y.size:
    arr = np.asarray(y)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= num_classes:
      raise ValueError(f"{name} must lie in [0, {num_classes}); got labels in [{lo}, {hi}]")
