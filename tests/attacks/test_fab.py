"""FAB / FAB-T (Croce & Hein 2020): the exact box-constrained hyperplane projection, the eps check and the
generic properties."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import aa_helpers as h  # noqa: E402

from jaxrobust.attacks import fab as F  # noqa: E402

EPS = 0.08


def _dist(d, norm="linf"):
  d = np.asarray(d).reshape(len(d), -1)
  return np.abs(d).max(1) if norm == "linf" else np.sqrt((d ** 2).sum(1))


def _digits(n=64):
  _, f = h.train_digits("mlp")
  x, y = h.digits_test(n)
  return f, x, y


def _lp_optimum(t, w, b, norm):
  """min ||d|| s.t. <w, t + d> = b, 0 <= t + d <= 1 with scipy; None if infeasible."""
  from scipy.optimize import linprog, minimize
  dim = len(t)
  bounds = [(-t[i], 1 - t[i]) for i in range(dim)]
  rhs = b - w @ t
  if norm == "linf":
    a_ub = np.vstack([np.c_[np.eye(dim), -np.ones(dim)], np.c_[-np.eye(dim), -np.ones(dim)]])
    r = linprog(np.r_[np.zeros(dim), 1.0], A_ub=a_ub, b_ub=np.zeros(2 * dim), A_eq=np.r_[w, 0.0][None],
                b_eq=[rhs], bounds=bounds + [(0, None)])
    return r.fun if r.status == 0 else None
  r = minimize(lambda v: v @ v, np.zeros(dim), jac=lambda v: 2 * v, method="SLSQP", bounds=bounds,
               constraints=[{"type": "eq", "fun": lambda v: w @ v - rhs, "jac": lambda v: w}],
               options={"ftol": 1e-12, "maxiter": 500})
  return np.sqrt(r.fun) if r.success and abs(w @ r.x - rhs) < 1e-6 else None


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("method", ["pairs", "sort", "bisect"])
def test_projection_is_the_box_constrained_minimum(norm, method):
  rng = np.random.default_rng(0)
  n, dim = 12, 7
  t = rng.uniform(size=(n, dim))
  w = rng.normal(size=(n, dim))
  w[0, 2] = 0.0
  w[1, :] = 0.0
  w[1, 0] = 2.0
  b = (w * rng.uniform(size=(n, dim))).sum(1)   # reachable planes
  b[-2] = (np.maximum(w, 0)).sum() * 3          # unreachable: the box corner is the answer
  b[-3] = (w[-3] * t[-3]).sum()                 # t already on the plane
  d = np.asarray(F.project_onto_hyperplane(jnp.asarray(t, jnp.float32), jnp.asarray(w, jnp.float32),
                                           jnp.asarray(b, jnp.float32), norm, method), np.float64)
  assert np.all(t + d >= -1e-6) and np.all(t + d <= 1 + 1e-6)
  assert np.all(d[w == 0] == 0)
  assert np.all(np.abs(d[-3]) < 1e-6)
  for i in range(n):
    opt = _lp_optimum(t[i], w[i], b[i], norm)
    if opt is None:  # unreachable: FAB moves every live coordinate to its box bound towards the plane
      s = np.sign((w[i] * t[i]).sum() - b[i])
      if norm == "linf":
        np.testing.assert_allclose(d[i], np.where(s * w[i] < 0, 1 - t[i], -t[i]) * (w[i] != 0), atol=1e-6)
      continue
    np.testing.assert_allclose((w[i] * (t[i] + d[i])).sum(), b[i], atol=1e-4)
    np.testing.assert_allclose(_dist(d[i:i + 1], norm)[0], opt, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_bisection_matches_the_sorted_solve_at_image_size(norm):
  # D = 784 (what 'auto' runs FAB on for MNIST): the bracketing search must give the exact sort-based step.
  rng = np.random.default_rng(1)
  n, dim = 16, 784
  t = jnp.asarray(rng.uniform(size=(n, dim)), jnp.float32)
  w = rng.normal(size=(n, dim))
  w[:, :50] *= 1e-9                       # near-dead coordinates: huge L2 caps
  w = jnp.asarray(w, jnp.float32)
  b = jnp.sum(w * jnp.asarray(rng.uniform(size=(n, dim)), jnp.float32), axis=1)
  b = b.at[0].set(1e6)                    # unreachable plane
  d_sort = F.project_onto_hyperplane(t, w, b, norm, "sort")
  d_bis = F.project_onto_hyperplane(t, w, b, norm, "bisect")
  np.testing.assert_allclose(np.asarray(d_bis), np.asarray(d_sort), atol=2e-6)
  np.testing.assert_allclose(np.asarray(jnp.sum(w * (t + d_bis), 1))[1:], np.asarray(b)[1:], rtol=1e-4, atol=1e-3)


def test_q2_successes_within_eps_and_misclassified():
  f, x, y = _digits()
  for adv in (F.fab_targeted(f, x, y, jax.random.PRNGKey(0), eps=EPS),
              F.fab(f, x, y, jax.random.PRNGKey(0), eps=EPS)):
    changed = np.any(np.asarray(adv != x).reshape(len(x), -1), axis=1)
    assert 0 < changed.sum() < len(x)
    assert _dist(np.asarray(adv - x))[changed].max() <= EPS
    assert np.all(np.asarray(jnp.argmax(f(adv), 1) != y)[changed])
    np.testing.assert_array_equal(np.asarray(adv)[~changed], np.asarray(x)[~changed])
    assert np.asarray(adv).min() >= 0 and np.asarray(adv).max() <= 1


def test_min_norm_run_matches_exact_distance_on_a_linear_model():
  # For z = W vec(x) + b with the box inactive, the smallest Linf perturbation that changes the class is
  # min_j (z_y - z_j) / ||w_y - w_j||_1; FAB's linearisation is exact, so it must find it (up to its eta/beta
  # steps), and never a smaller one.
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(0.3 * rng.normal(size=(16, 5)), jnp.float32), "b": jnp.zeros((5,))}
  f = h.model_fn("linear", params)
  x = 0.45 + 0.1 * h.random_images(1, 8, (4, 4, 1))
  y = jnp.argmax(f(x), axis=1)
  res = F.fab_min_norm(f, x, y, jax.random.PRNGKey(1), n_iter=100)
  z = np.asarray(f(x))
  w = np.asarray(params["w"])
  exact = []
  for i in range(8):
    yi = int(y[i])
    exact.append(min((z[i, yi] - z[i, j]) / np.abs(w[:, yi] - w[:, j]).sum() for j in range(5) if j != yi))
  exact = np.array(exact)
  assert np.all(exact < 0.4)  # so the box never binds
  found = np.asarray(res.norm)
  assert np.all(found >= exact * (1 - 1e-4))
  np.testing.assert_allclose(found, exact, rtol=2e-2)
  assert np.all(np.asarray(jnp.argmax(f(res.adv), 1) != y))
  np.testing.assert_allclose(_dist(np.asarray(res.adv - x)), found, rtol=1e-5)


def test_generic_eps0_determinism_scalar_vs_vector_restarts():
  f, x, y = _digits()
  k = jax.random.PRNGKey(0)
  a0 = F.fab_targeted(f, x, y, k, eps=0.0)
  np.testing.assert_array_equal(np.asarray(a0), np.asarray(x))
  a1 = F.fab_targeted(f, x, y, k, eps=EPS)
  a2 = F.fab_targeted(f, x, y, k, eps=jnp.full((x.shape[0],), EPS))
  np.testing.assert_array_equal(np.asarray(a1), np.asarray(a2))
  # Random restarts (radius eps/2 start for r > 0) only break more points and stay in the ball.
  ar = F.fab(f, x, y, k, eps=EPS, n_restarts=2, n_iter=20)
  assert _dist(np.asarray(ar - x)).max() <= EPS
  changed = np.any(np.asarray(ar != x).reshape(len(x), -1), axis=1)
  assert np.all(np.asarray(jnp.argmax(f(ar), 1) != y)[changed])


def test_l2_and_errors():
  f, x, y = _digits(16)
  adv = F.fab_targeted(f, x, y, jax.random.PRNGKey(0), eps=0.5, norm="l2", n_iter=30, n_target_classes=3)
  changed = np.any(np.asarray(adv != x).reshape(len(x), -1), axis=1)
  assert changed.any()
  assert _dist(np.asarray(adv - x), "l2").max() <= 0.5
  assert np.all(np.asarray(jnp.argmax(f(adv), 1) != y)[changed])
  with pytest.raises(ValueError, match="n_target_classes"):
    F.fab_targeted(f, x, y, jax.random.PRNGKey(0), eps=0.1, n_target_classes=10)
  with pytest.raises(ValueError, match="unknown norm"):  # L1 is supported (test_fab_l1.py)
    F.fab(f, x, y, jax.random.PRNGKey(0), eps=0.1, norm="l0")
