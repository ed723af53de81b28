"""Threat models: projections (and which come from optax), random starts, gradient normalisation, input checks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxrobust import threat

R = np.random.RandomState(0)
X = jnp.asarray(R.uniform(0, 1, (6, 3, 2, 2)), jnp.float32)
U = X + jnp.asarray(R.randn(6, 3, 2, 2) * 0.5, jnp.float32)  # points inside and outside the balls
EPS = jnp.asarray([0.0, 0.05, 0.1, 0.5, 1.0, 3.0], jnp.float32)


def test_canonical_norm_and_per_example_norm():
  for n in ("inf", np.inf, "Linf", "l_inf"):
    assert threat.canonical_norm(n) == "linf"
  assert threat.canonical_norm(2) == "l2" and threat.canonical_norm("L1") == "l1"
  with pytest.raises(ValueError, match="unknown norm"):
    threat.canonical_norm("l3")
  d = np.asarray(U - X).reshape(6, -1)
  np.testing.assert_allclose(threat.per_example_norm(U - X, "linf"), np.abs(d).max(1), rtol=1e-6)
  np.testing.assert_allclose(threat.per_example_norm(U - X, "l2"), np.sqrt((d ** 2).sum(1)), rtol=1e-5)
  np.testing.assert_allclose(threat.per_example_norm(U - X, "l1"), np.abs(d).sum(1), rtol=1e-5)


def _l1_projection_reference(v, eps):
  """Bisection on the soft threshold theta: sum max(|v| - theta, 0) = eps."""
  if np.abs(v).sum() <= eps:
    return v
  lo, hi = 0.0, np.abs(v).max()
  for _ in range(100):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if np.maximum(np.abs(v) - mid, 0).sum() > eps else (lo, mid)
  return np.sign(v) * np.maximum(np.abs(v) - hi, 0)


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_projections_g5(norm):
  """Idempotent, in the ball, identity inside it; per-example eps; Pi_inf is an elementwise clip."""
  p = threat.project(U, X, EPS, norm)
  dist = np.asarray(threat.per_example_norm(p - X, norm))
  assert np.all(dist <= np.asarray(EPS) * (1 + 1e-5) + 1e-6)
  np.testing.assert_allclose(threat.project(p, X, EPS, norm), p, atol=1e-6)
  inside = threat.per_example_norm(U - X, norm) <= EPS
  np.testing.assert_allclose(np.asarray(p)[np.asarray(inside)], np.asarray(U)[np.asarray(inside)], atol=1e-6)
  np.testing.assert_array_equal(threat.project(U, X, 0.0, norm), X)  # eps = 0: back to x, no NaN
  scalar = threat.project(U, X, 0.1, norm)
  np.testing.assert_allclose(scalar, threat.project(U, X, jnp.full((6,), 0.1), norm), atol=1e-7)
  if norm == "linf":
    np.testing.assert_array_equal(p, jnp.clip(U, X - EPS[:, None, None, None], X + EPS[:, None, None, None]))
  if norm == "l2":  # radial: the direction of delta is kept
    d, dp = np.asarray(U - X).reshape(6, -1), np.asarray(p - X).reshape(6, -1)
    for i in range(1, 6):
      np.testing.assert_allclose(dp[i] / np.linalg.norm(dp[i]), d[i] / np.linalg.norm(d[i]), atol=1e-5)
  if norm == "l1":  # the Euclidean projection onto the L1 ball
    d = np.asarray(U - X, np.float64).reshape(6, -1)
    for i in range(6):
      np.testing.assert_allclose(np.asarray(p - X).reshape(6, -1)[i], _l1_projection_reference(d[i], float(EPS[i])),
                                 atol=1e-5)


def test_ball_then_box_stays_in_both():
  for norm in ("linf", "l2", "l1"):
    p = threat.project_ball_and_box(U, X, EPS, norm)
    assert float(p.min()) >= 0 and float(p.max()) <= 1
    assert np.all(np.asarray(threat.per_example_norm(p - X, norm)) <= np.asarray(EPS) * (1 + 1e-5) + 1e-6)


def _optax_per_example(projection, delta, eps):
  """optax's projection of each example's delta onto its own ball (vmapped over the batch)."""
  return jax.vmap(projection)(delta, eps)


def test_linf_ball_and_box_are_optax_projection_box():
  # Delegated: the same clip, bit for bit.
  from optax import projections
  e = EPS[:, None, None, None]
  np.testing.assert_array_equal(threat.project_linf(U, X, EPS), jnp.clip(U, X - e, X + e))
  np.testing.assert_array_equal(threat.project_linf(U, X, EPS), projections.projection_box(U, X - e, X + e))
  np.testing.assert_array_equal(threat.clip_box(U), jnp.clip(U, 0.0, 1.0))
  # ... and the same projection as optax's per-example L-inf ball around x (which rounds x + clip(delta)).
  np.testing.assert_allclose(threat.project_linf(U, X, EPS),
                             X + _optax_per_example(projections.projection_linf_ball, U - X, EPS), atol=1e-6)


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_l2_l1_balls_match_optax_up_to_rounding_but_are_not_delegated(norm):
  # Not delegated (threat.py docstring): optax's formulas agree to float rounding for eps > 0, are not
  # bit-identical to the ones the attacks were verified with, and give NaN at eps = 0 (L2 when delta = 0,
  # L1 when delta != 0), where an attack must return x.
  from optax import projections
  proj = projections.projection_l2_ball if norm == "l2" else projections.projection_l1_ball
  ours = threat.project(U, X, EPS, norm)
  theirs = X + _optax_per_example(proj, U - X, EPS)
  np.testing.assert_allclose(np.asarray(ours)[1:], np.asarray(theirs)[1:], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(ours[0], X[0])  # eps = 0: back to x
  np.testing.assert_array_equal(threat.project(X, X, 0.0, norm), X)
  at_zero = [_optax_per_example(proj, d, jnp.zeros((6,))) for d in (X - X, U - X)]
  assert not all(np.all(np.isfinite(np.asarray(v))) for v in at_zero)  # optax: 0 / 0


def test_l2_forms_and_stabilised_direction_of_autoattack():
  """The stabilised forms APGD and Square use (Croce & Hein 2020, ``autopgd_base.py``), bit for bit."""
  e = EPS[:, None, None, None]
  delta = U - X
  n = threat.per_example_norm(delta, "l2")[:, None, None, None]
  np.testing.assert_array_equal(threat.project_l2(U, X, EPS, stabilizer=1e-12),
                                X + delta / (n + 1e-12) * jnp.minimum(e, n))
  np.testing.assert_array_equal(threat.project_ball_and_box(U, X, EPS, "l2", 1e-12),
                                jnp.clip(X + delta / (n + 1e-12) * jnp.minimum(e, n), 0.0, 1.0))
  np.testing.assert_allclose(threat.project_l2(U, X, EPS, stabilizer=1e-12), threat.project_l2(U, X, EPS), atol=1e-6)
  np.testing.assert_array_equal(threat.normalize_gradient(delta, "l2", 1e-12), delta / (n + 1e-12))
  np.testing.assert_array_equal(threat.normalize_gradient(delta, "l2"), delta / (n + 1e-10))


def test_random_starts_p3():
  n = 2000
  x = jnp.full((n, 3, 2, 2), 0.5, jnp.float32)
  x_edge = jnp.zeros((8, 4)).at[:, 0].set(1.0)
  key = jax.random.key(0)
  starts = jax.jit(lambda k: (threat.random_start(k, x, 0.1, "linf"), threat.random_start(k, x, 0.2, "l2"),
                              threat.random_start(k, x, 0.3, "l1"), threat.random_start(k, x_edge, 0.5, "linf"),
                              threat.random_start(k, x[:8], 0.0, "l2")))
  lin, l2, l1, edge, zero = starts(key)
  assert float(jnp.max(jnp.abs(lin - x))) <= 0.1 + 1e-6
  assert stats.kstest(np.asarray(lin - x).ravel() / 0.2 + 0.5, "uniform").pvalue > 1e-3
  r = np.asarray(threat.per_example_norm(l2 - x, "l2")) / 0.2
  assert r.max() <= 1 + 1e-5 and stats.kstest(r, "uniform").pvalue > 1e-3  # uniform radius
  assert float(jnp.max(threat.per_example_norm(l1 - x, "l1"))) <= 0.3 + 1e-5
  assert float(edge.min()) >= 0 and float(edge.max()) <= 1  # box-clipped at 0 and 1
  np.testing.assert_array_equal(zero, x[:8])


def test_normalize_gradient():
  g = U - X
  np.testing.assert_array_equal(threat.normalize_gradient(g, "linf"), jnp.sign(g))
  np.testing.assert_allclose(threat.per_example_norm(threat.normalize_gradient(g, "l2"), "l2"), 1.0, rtol=1e-5)
  assert np.all(np.isfinite(np.asarray(threat.normalize_gradient(jnp.zeros_like(g), "l2"))))


def test_input_checks():
  with pytest.raises(ValueError, match=">= 0"):
    threat.check_eps(-0.1)
  with pytest.raises(ValueError, match="finite"):
    threat.check_eps(float("nan"))
  with pytest.raises(ValueError, match="shape"):
    threat.check_eps(np.ones(3), batch_size=4)
  threat.check_eps(np.ones(4), batch_size=4)
  with pytest.raises(TypeError, match="floating"):
    threat.check_images(jnp.zeros((2, 3), jnp.uint8))
  with pytest.raises(ValueError, match="batch"):
    threat.check_images(jnp.zeros((3,)))
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    threat.check_images(jnp.full((2, 3), 1.5))
  with pytest.raises(TypeError, match="integer"):
    threat.check_labels(jnp.zeros(2), 2)
  with pytest.raises(ValueError, match="shape"):
    threat.check_labels(jnp.zeros(3, jnp.int32), 2)
  with pytest.raises(ValueError, match="must lie in"):
    threat.check_labels(jnp.array([0, 5]), 2, num_classes=5)
  jax.jit(lambda e: threat.check_eps(e))(-1.0)  # tracers are not checked (no host round-trip)


class ProjectionsJitAndEager(chex.TestCase):
  """The projections are pure: in the ball and the box, idempotent, and the same traced under jit and eagerly."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_ball_and_box_projection_per_norm(self):
    for norm in ("linf", "l2", "l1"):
      project = self.variant(lambda u, x, eps, norm=norm: threat.project_ball_and_box(u, x, eps, norm))
      p = project(U, X, EPS)
      chex.assert_equal_shape([p, U])
      chex.assert_tree_all_finite(p)
      assert float(p.min()) >= 0 and float(p.max()) <= 1
      assert np.all(np.asarray(threat.per_example_norm(p - X, norm)) <= np.asarray(EPS) * (1 + 1e-5) + 1e-6)
      chex.assert_trees_all_close(project(p, X, EPS), p, atol=1e-6)
      chex.assert_trees_all_close(p, threat.project_ball_and_box(U, X, EPS, norm), atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_per_example_norm(self):
    d = np.asarray(U - X).reshape(6, -1)
    for norm, ref in (("linf", np.abs(d).max(1)), ("l2", np.sqrt((d ** 2).sum(1))), ("l1", np.abs(d).sum(1))):
      got = self.variant(lambda v, norm=norm: threat.per_example_norm(v, norm))(U - X)
      chex.assert_shape(got, (6,))
      chex.assert_trees_all_close(got, ref, rtol=1e-5)
