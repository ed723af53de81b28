"""APGD-L1 (Croce & Hein 2021, "Mind the box") and the exact L1-ball-and-box projection it uses.

The projection is checked against an independent float64 reference (every breakpoint of the piecewise-linear
||delta(lam)||_1 evaluated exactly) and against the variational inequality that characterises a Euclidean
projection onto a convex set: <v - P(v), w - P(v)> <= 0 for every feasible w.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust import threat
from jaxrobust.attacks import apgd as A
from jaxrobust.attacks import pgd as pgd_lib
from jaxrobust.attacks.registry import attack_info, get_attack
from tests.attacks import aa_helpers as h

KEY = jax.random.key(0)


def _reference_projection(v, x, eps):
  """float64: z = x + sign(y) clip(|y| - lam, 0, cap), lam from the exact piecewise-linear root (breakpoints)."""
  y = (v - x).astype(np.float64)
  x = x.astype(np.float64)
  a = np.abs(y)
  cap = np.minimum(a, np.where(y >= 0, 1 - x, x))

  def f(lam):
    return np.clip(a - lam, 0, cap).sum()

  if f(0.0) <= eps:
    lam = 0.0
  else:
    bps = np.unique(np.concatenate([[0.0], a - cap, a]))
    vals = np.array([f(p) for p in bps])
    j = np.nonzero(vals >= eps)[0].max()           # f(bps[j]) >= eps > f(bps[j + 1])
    if j == len(bps) - 1:                          # eps = 0: everything goes
      lam = bps[-1]
    else:
      lo, hi = bps[j], bps[j + 1]
      lam = lo + (vals[j] - eps) / (vals[j] - vals[j + 1]) * (hi - lo)  # f is linear on [lo, hi]
  return x + np.sign(y) * np.clip(a - lam, 0, cap)


def _instances(seed, b=16, d=12):
  rng = np.random.default_rng(seed)
  x = rng.uniform(size=(b, d)).astype(np.float32)
  x[:, :3] = rng.choice([0.0, 1.0], size=(b, 3))       # pixels on the box faces
  v = (x + rng.normal(scale=rng.choice([0.05, 0.5, 2.0], size=(b, 1)), size=(b, d))).astype(np.float32)
  eps = rng.choice([0.0, 0.1, 0.5, 2.0, 5.0, 50.0], size=b).astype(np.float32)
  return v, x, eps


@pytest.mark.parametrize("seed", range(4))
def test_l1_box_projection_is_exact(seed):
  v, x, eps = _instances(seed)
  z = np.asarray(threat.project_l1_box(jnp.asarray(v), jnp.asarray(x), jnp.asarray(eps)))
  for i in range(len(v)):
    ref = _reference_projection(v[i], x[i], float(eps[i]))
    np.testing.assert_allclose(z[i], ref, atol=2e-6)
  assert np.all(z >= 0) and np.all(z <= 1)
  assert np.all(np.abs(z - x).sum(1) <= eps * (1 + 1e-6) + 1e-6)


def test_l1_box_projection_variational_inequality():
  v, x, eps = _instances(7, b=8, d=20)
  z = np.asarray(threat.project_l1_box(jnp.asarray(v), jnp.asarray(x), jnp.asarray(eps))).astype(np.float64)
  rng = np.random.default_rng(1)
  for i in range(len(v)):
    # Random feasible points: a random direction scaled into the L1 ball, then clipped to the box (stays inside).
    w = rng.laplace(size=(200, v.shape[1]))
    w = w / np.abs(w).sum(1, keepdims=True) * eps[i] * rng.uniform(size=(200, 1))
    w = np.clip(x[i] + w, 0, 1)
    lhs = (w - z[i]) @ (v[i] - z[i])
    assert lhs.max() <= 1e-5 * (1 + np.abs(v[i] - z[i]).sum()), (i, lhs.max())


def test_l1_box_projection_keeps_feasible_points_and_scipy_agrees():
  from scipy.optimize import minimize
  v, x, eps = _instances(3, b=6, d=6)
  z = np.asarray(threat.project_l1_box(jnp.asarray(v), jnp.asarray(x), jnp.asarray(eps)))
  for i in range(len(v)):
    d = v.shape[1]
    # delta = p - n, p, n >= 0: min ||p - n - y||^2 s.t. sum(p + n) <= eps, 0 <= x + p - n <= 1.
    yv = (v[i] - x[i]).astype(np.float64)
    obj = lambda u: np.sum((u[:d] - u[d:] - yv) ** 2)  # noqa: E731
    cons = [{"type": "ineq", "fun": lambda u: eps[i] - u.sum()},
            {"type": "ineq", "fun": lambda u: x[i] + u[:d] - u[d:]},
            {"type": "ineq", "fun": lambda u: 1 - x[i] - u[:d] + u[d:]}]
    res = minimize(obj, np.zeros(2 * d), constraints=cons, bounds=[(0, None)] * (2 * d), method="SLSQP",
                   options=dict(ftol=1e-12, maxiter=500))
    np.testing.assert_allclose(z[i], x[i] + res.x[:d] - res.x[d:], atol=1e-4)
  # A point already in the ball and the box is its own projection.
  zz = threat.project_l1_box(jnp.asarray(z), jnp.asarray(x), jnp.asarray(eps) * 1.001)
  np.testing.assert_allclose(np.asarray(zz), z, atol=1e-6)
