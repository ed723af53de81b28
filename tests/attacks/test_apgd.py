"""APGD / APGD-T (Croce & Hein 2020, Algorithm 1): schedule, step rule, init, outputs and the generic attack
properties (tiny deterministic models, float32)."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import aa_helpers as h  # noqa: E402

from jaxrobust import losses  # noqa: E402
from jaxrobust.attacks import apgd as A  # noqa: E402
from jaxrobust.attacks import per_example  # noqa: E402

EPS = 0.08
TOL = 1e-6


def _digits(n=64):
  _, f = h.train_digits("mlp")
  x, y = h.digits_test(n)
  return f, x, y


def _ce_sum(f, xa, y):
  return jnp.sum(losses.cross_entropy(f(xa), y))


def _P(v, x, eps, norm):
  """Reference projection written independently: ball, then box."""
  v, x = np.asarray(v, np.float64), np.asarray(x, np.float64)
  if norm == "linf":
    return np.clip(np.clip(v, x - eps, x + eps), 0, 1)
  d = v - x
  n = np.sqrt((d ** 2).reshape(len(d), -1).sum(1)).reshape((-1,) + (1,) * (d.ndim - 1))
  return np.clip(x + d * np.minimum(1.0, eps / np.maximum(n, 1e-30)), 0, 1)


def _dir(g, norm):
  g = np.asarray(g, np.float64)
  if norm == "linf":
    return np.sign(g)
  n = np.sqrt((g ** 2).reshape(len(g), -1).sum(1)).reshape((-1,) + (1,) * (g.ndim - 1))
  return g / (n + 1e-12)


def _dist(d, norm):
  d = np.asarray(d).reshape(len(d), -1)
  return np.abs(d).max(1) if norm == "linf" else np.sqrt((d ** 2).sum(1))


# ----------------------------------------------------------------------------------------------

def test_checkpoint_schedule():
  assert A.checkpoint_iterations(100) == [21, 40, 56, 69, 79, 86, 92, 98]
  assert A.checkpoint_iterations(10) == list(range(1, 10))
  assert [k for _, k in A.checkpoint_schedule(100)] == [22, 19, 16, 13, 10, 7, 6, 6]
  assert A.checkpoint_iterations(1) == [0]


@pytest.fixture(scope="module", params=["linf", "l2"])
def run(request):
  norm = request.param
  f = h.random_model(1, "mlp", 10, (4, 4, 1))
  x = h.random_images(2, 16, (4, 4, 1))
  x = x.at[0].set(0.0).at[1].set(1.0)  # inputs on the box faces
  y = jnp.argmax(f(x), axis=1).at[:4].set(jnp.arange(4))  # a few misclassified points too
  eps = 0.1 if norm == "linf" else 0.5
  tr = A.apgd_run(f, x, y, jax.random.PRNGKey(3), eps=eps, norm=norm, n_iter=100, record_iterates=True)
  return norm, f, x, y, eps, tr


def test_a1_every_iterate_in_ball_and_box(run):
  norm, f, x, y, eps, tr = run
  for pts in (tr.iterates, tr.bases):
    pts = np.asarray(pts)
    assert pts.min() >= 0.0 and pts.max() <= 1.0
    for t in range(pts.shape[0]):
      assert _dist(pts[t] - np.asarray(x), norm).max() <= eps + TOL
  for pts in (tr.x_best, tr.x_best_adv, tr.x_init):
    assert _dist(np.asarray(pts) - np.asarray(x), norm).max() <= eps + TOL


def test_a2_loss_best_monotone_and_attained(run):
  norm, f, x, y, eps, tr = run
  lb = np.asarray(tr.loss_best_steps)
  assert np.all(np.diff(lb, axis=0) >= 0)
  np.testing.assert_allclose(lb[-1], tr.loss_best, rtol=0, atol=0)
  re = np.asarray(losses.cross_entropy(f(tr.x_best), y))
  np.testing.assert_allclose(re, tr.loss_best, rtol=1e-5, atol=1e-6)
  # loss_best is the running strict max of the losses seen (init included).
  ls = np.asarray(tr.loss_steps)
  np.testing.assert_allclose(lb[1:], np.maximum.accumulate(np.vstack([lb[:1], ls]), axis=0)[1:], rtol=1e-6)


def test_a3_acc_non_increasing_and_x_best_adv_misclassified(run):
  norm, f, x, y, eps, tr = run
  acc = np.asarray(tr.acc_steps)
  assert np.all(acc[1:] <= acc[:-1])
  fooled = ~np.asarray(tr.acc)
  pred = np.asarray(jnp.argmax(f(tr.x_best_adv), axis=1))
  assert np.all(pred[fooled] != np.asarray(y)[fooled])


def test_a4_step_size_schedule(run):
  norm, f, x, y, eps, tr = run
  st = np.asarray(tr.step_size_steps)
  np.testing.assert_allclose(st[0], 2 * eps, rtol=1e-6)
  ratio = st[1:] / st[:-1]
  assert np.all(np.isclose(ratio, 1.0) | np.isclose(ratio, 0.5))
  changed = np.nonzero(~np.isclose(ratio, 1.0))[0]  # change between iteration i and i+1 -> halved at check i
  checks = set(A.checkpoint_iterations(100))
  assert set(changed.tolist()) <= checks
  red = np.asarray(tr.reduced)
  assert set(np.nonzero(red.any(axis=1))[0].tolist()) <= checks
  assert red.any(), "expected at least one halving on this problem"
  # Where the check halves, the next step uses eta / 2.
  for i in sorted(checks - {99}):
    np.testing.assert_allclose(st[i + 1], np.where(red[i], st[i] / 2, st[i]), rtol=1e-6)


def test_a5_restart_from_x_best_after_halving(run):
  norm, f, x, y, eps, tr = run
  ls, red = np.asarray(tr.loss_steps), np.asarray(tr.reduced)
  its, bases = np.asarray(tr.iterates), np.asarray(tr.bases)
  l0 = np.asarray(losses.cross_entropy(f(tr.x_init), y))
  n_checked = 0
  for s in range(x.shape[0]):
    best_l, best_x = l0[s], np.asarray(tr.x_init)[s]
    for i in range(99):
      if ls[i, s] > best_l:
        best_l, best_x = ls[i, s], its[i, s]
      if red[i, s]:
        np.testing.assert_array_equal(bases[i + 1, s], best_x)
        n_checked += 1
      else:
        np.testing.assert_array_equal(bases[i + 1, s], its[i, s])
  assert n_checked > 0


def test_a6_a7_first_step_plain_then_momentum(run):
  norm, f, x, y, eps, tr = run
  x0 = np.asarray(tr.x_init)
  grad = jax.jit(jax.grad(_ce_sum, argnums=1))
  g0 = np.asarray(grad(f, tr.x_init, y))
  x1 = _P(x0 + 2 * eps * _dir(g0, norm), x, eps, norm)          # a = 1: no momentum at the first step
  np.testing.assert_allclose(np.asarray(tr.iterates[0]), x1, atol=2e-6)
  np.testing.assert_array_equal(np.asarray(tr.bases[1]), np.asarray(tr.iterates[0]))  # no check at i = 0
  x1 = np.asarray(tr.iterates[0])
  g1 = np.asarray(grad(f, tr.iterates[0], y))
  z = _P(x1 + 2 * eps * _dir(g1, norm), x, eps, norm)
  x2 = _P(x1 + 0.75 * (z - x1) + 0.25 * (x1 - x0), x, eps, norm)
  np.testing.assert_allclose(np.asarray(tr.iterates[1]), x2, atol=2e-6)


def test_a10_init_on_the_sphere_before_the_box(run):
  norm, f, x, y, eps, tr = run

  @jax.jit
  def init(key, x):
    keys = per_example.fold_keys(per_example.indexed_keys(key, jnp.arange(x.shape[0])), 0)
    return A.apgd_init(keys, x, per_example.per_example(eps, x), norm)

  x0 = init(jax.random.PRNGKey(3), x)
  np.testing.assert_allclose(_dist(np.asarray(x0 - x), norm), eps, rtol=1e-5)
  assert np.any(np.asarray((x0 < 0) | (x0 > 1)))  # the box clip comes after
  np.testing.assert_allclose(np.asarray(tr.x_init), np.asarray(jnp.clip(x0, 0, 1)), atol=1e-7)


# ----------------------------------------------------------------------------------------------

def test_perturb_output_convention_and_restarts_only_on_robust():
  f, x, y = _digits()
  y = y.at[:3].set((y[:3] + 1) % 10)  # clean-misclassified points must come back untouched
  adv = A.apgd(f, x, y, jax.random.PRNGKey(0), eps=EPS)
  changed = np.any(np.asarray(adv != x).reshape(len(x), -1), axis=1)
  pred = np.asarray(jnp.argmax(f(adv), axis=1))
  yn = np.asarray(y)
  assert np.all(pred[changed] != yn[changed])              # every fooled point is misclassified
  np.testing.assert_array_equal(np.asarray(adv)[~changed], np.asarray(x)[~changed])  # others exactly x
  assert not changed[:3].any()
  assert 0 < changed.sum() < len(x) - 3
  assert _dist(np.asarray(adv - x), "linf").max() <= EPS + TOL
  # A second restart can only break more points.
  adv2 = A.apgd(f, x, y, jax.random.PRNGKey(0), eps=EPS, n_restarts=2)
  assert h.accuracy(f, adv2, y) <= h.accuracy(f, adv, y)
  assert np.all(np.asarray(jnp.argmax(f(adv2), 1) != y)[changed])


def test_generic_eps0_determinism_scalar_vs_vector():
  f, x, y = _digits()
  k = jax.random.PRNGKey(0)
  a0 = A.apgd(f, x, y, k, eps=0.0)
  np.testing.assert_array_equal(np.asarray(a0), np.asarray(x))
  assert h.accuracy(f, a0, y) == h.accuracy(f, x, y)
  a1 = A.apgd(f, x, y, k, eps=EPS)
  a2 = A.apgd(f, x, y, k, eps=EPS)
  a3 = A.apgd(f, x, y, k, eps=jnp.full((x.shape[0],), EPS))
  np.testing.assert_array_equal(np.asarray(a1), np.asarray(a2))
  np.testing.assert_array_equal(np.asarray(a1), np.asarray(a3))
  # Per-example eps really is per example: eps_i = 0 leaves point i untouched.
  ev = jnp.where(jnp.arange(x.shape[0]) % 2 == 0, 0.0, EPS)
  a4 = np.asarray(A.apgd(f, x, y, k, eps=ev))
  np.testing.assert_array_equal(a4[::2], np.asarray(x)[::2])


def test_robust_accuracy_monotone_in_eps_and_zero_for_large_eps():
  f, x, y = _digits()
  accs = [h.accuracy(f, A.apgd(f, x, y, jax.random.PRNGKey(0), eps=e), y) for e in (0.0, 0.03, 0.08, 0.15, 0.5)]
  assert all(b <= a for a, b in zip(accs, accs[1:])), accs
  assert accs[-1] == 0.0 and accs[0] > 0.9


def test_apgd_t_targets_and_output():
  z = jnp.array([[0.1, 3.0, -1.0, 2.0, 0.5], [5.0, 4.0, 3.0, 2.0, 1.0]])
  t = np.asarray(A.top_k_targets(z, 4))
  np.testing.assert_array_equal(t[:, 0], [3, 4, 0, 2])
  np.testing.assert_array_equal(t[:, 1], [1, 2, 3, 4])
  f, x, y = _digits()
  adv = A.apgd_targeted(f, x, y, jax.random.PRNGKey(0), eps=EPS)
  changed = np.any(np.asarray(adv != x).reshape(len(x), -1), axis=1)
  assert np.all(np.asarray(jnp.argmax(f(adv), 1) != y)[changed])
  np.testing.assert_array_equal(np.asarray(adv)[~changed], np.asarray(x)[~changed])
  assert _dist(np.asarray(adv - x), "linf").max() <= EPS + TOL
  assert h.accuracy(f, adv, y) < h.accuracy(f, x, y)


def test_dlr_invariance_sign_and_range():
  z = jax.random.normal(jax.random.PRNGKey(0), (32, 10)) * 3
  y = jax.random.randint(jax.random.PRNGKey(1), (32,), 0, 10)
  t = (y + 1 + jax.random.randint(jax.random.PRNGKey(2), (32,), 0, 9)) % 10
  for fn, args in ((losses.dlr, (y,)), (losses.dlr_targeted, (y, t))):
    base = fn(z, *args)
    np.testing.assert_allclose(fn(2.5 * z + 7.0, *args), base, rtol=1e-4, atol=1e-5)
  d = np.asarray(losses.dlr(z, y))
  correct = np.asarray(jnp.argmax(z, 1) == y)
  assert np.all((d < 0) == correct)
  assert np.all((d[correct] >= -1) & (d[correct] < 0))


def test_class_count_errors():
  x = h.random_images(0, 4, (4, 4, 1))
  y = jnp.zeros((4,), jnp.int32)
  f2 = h.random_model(0, "linear", 2, (4, 4, 1))
  f3 = h.random_model(0, "linear", 3, (4, 4, 1))
  with pytest.raises(ValueError, match="at least 3 classes"):
    A.apgd(f2, x, y, jax.random.PRNGKey(0), eps=0.1, loss="dlr")
  with pytest.raises(ValueError, match="at least 4 classes"):
    A.apgd_targeted(f3, x, y, jax.random.PRNGKey(0), eps=0.1, n_target_classes=2)
  with pytest.raises(ValueError, match="n_target_classes"):
    A.apgd_targeted(h.random_model(0, "linear", 5, (4, 4, 1)), x, y, jax.random.PRNGKey(0), eps=0.1)
  with pytest.raises(ValueError):
    A.apgd(f3, x, y, jax.random.PRNGKey(0), eps=-0.1)
  with pytest.raises(ValueError, match="unknown norm"):  # L1 is supported since APGD-L1 (test_apgd_l1.py)
    A.apgd(f3, x, y, jax.random.PRNGKey(0), eps=0.1, norm="l3")


def test_best_loss_mode_single_run_consistency_and_eot_api():
  f = h.random_model(4, "linear", 10, (4, 4, 1))
  x = h.random_images(5, 8, (4, 4, 1))
  y = jnp.argmax(f(x), axis=1)
  k = jax.random.PRNGKey(0)
  first = A.apgd_run(f, x, y, k, eps=0.05, n_iter=10)
  best = A.apgd(f, x, y, k, eps=0.05, n_iter=10, n_restarts=3, best_loss=True)
  l_best = np.asarray(losses.cross_entropy(f(best), y))
  assert np.all(l_best >= np.asarray(first.loss_best) - 1e-6)   # max over restarts, restart 0 included
  # A deterministic model in the randomised form: EoT averages 3 identical gradients, so one perturb() run
  # equals apgd_run's x_best_adv on the fooled points and x elsewhere.
  fk = lambda xa, key: f(xa)  # noqa: E731
  a3 = A.apgd(fk, x, y, k, eps=0.05, n_iter=10, randomized=True, eot_iter=3)
  want = jnp.where((~first.acc)[:, None, None, None], first.x_best_adv, x)
  np.testing.assert_allclose(np.asarray(a3), np.asarray(want), atol=1e-6)
  assert (~np.asarray(first.acc)).any()


def test_jit_compiles_once_per_config_and_registry():
  from jaxrobust.attacks import registry
  f, x, y = _digits()
  f = h.traced(f)  # counts the model calls made while JAX traces (compiles) a program
  A.apgd(f, x, y, jax.random.PRNGKey(0), eps=EPS)
  n = h.TRACED_CALLS["model"]
  assert n > 0  # the first call traced
  A.apgd(f, x[::-1], y[::-1], jax.random.PRNGKey(1), eps=0.05)
  A.apgd(f, x, y, jax.random.PRNGKey(2), eps=jnp.full((64,), 0.02))
  assert h.TRACED_CALLS["model"] == n
  atk = registry.get_attack("apgd_ce", eps=EPS)
  np.testing.assert_array_equal(np.asarray(atk(f, x, y, jax.random.PRNGKey(0))),
                                np.asarray(A.apgd(f, x, y, jax.random.PRNGKey(0), eps=EPS)))
  assert h.TRACED_CALLS["model"] == n
  for name in ("apgd_ce", "apgd_dlr", "apgd_t"):
    assert name in registry.attack_names()
