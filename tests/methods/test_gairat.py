"""GAIRAT: GA-PGD's kappa, GAIR weights (Zhang et al. 2021, as ``GAIR.py``), burn-in and the Lambda schedule."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.methods.gairat import (ga_pgd, gair_raw_weights, gair_weights, lambda_at,
                                      make_gairat)

try:
  from tests.methods import method_harness as h
  from tests.methods import numpy_reference as ref
except ImportError:  # run from inside tests/methods
  import method_harness as h
  import numpy_reference as ref

K = 10


@pytest.mark.parametrize("fn", ["tanh", "sigmoid", "discrete"])
@pytest.mark.parametrize("lam", [-1.0, 0.0, 2.0])
def test_gair_weights_match_reference_sum_to_b_and_are_monotone(fn, lam):
  """Normalised weights sum to B and are non-increasing in kappa."""
  kappa = np.random.default_rng(0).integers(0, K + 1, 32).astype(np.float64)
  with h.x64():
    w = np.asarray(gair_weights(jnp.asarray(kappa), K, lam, fn))
    # (tanh + 1) cancels near -1: compare with an absolute floor.
    np.testing.assert_allclose(w, ref.gair(K, kappa, lam, fn), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(w.sum(), 32.0, rtol=1e-12)
    grid = np.asarray(gair_raw_weights(jnp.arange(K + 1, dtype=jnp.float64), K, lam, fn))
    assert np.all(np.diff(grid) <= 0) and np.all(grid > 0)
    if fn != "tanh" or lam < 2:   # tanh saturates at large Lambda
      assert grid[0] > grid[-1]


def test_gair_infinite_lambda_is_uniform_and_mask_normalises_over_valid():
  kappa = jnp.asarray(np.random.default_rng(1).integers(0, K + 1, 16), jnp.float32)
  np.testing.assert_array_equal(gair_weights(kappa, K, math.inf, "tanh"), np.ones(16))
  np.testing.assert_array_equal(gair_weights(kappa, K, math.inf, "sigmoid"), np.ones(16))
  mask = jnp.asarray([1.0] * 12 + [0.0] * 4)
  w = gair_weights(kappa, K, -1.0, "tanh", mask)
  np.testing.assert_allclose(float(jnp.sum(w * mask)), 12.0, rtol=1e-5)


def test_lambda_schedule_fixed_and_linear():
  kw = dict(lam=-1.0, lambda_begin_epoch=60, epochs=120)
  assert float(lambda_at(59.0, lam_max=math.inf, schedule="fixed", **kw)) == math.inf
  assert float(lambda_at(60.0, lam_max=math.inf, schedule="fixed", **kw)) == -1.0
  assert float(lambda_at(59.0, lam_max=3.0, schedule="linear", **kw)) == 3.0
  np.testing.assert_allclose(float(lambda_at(90.0, lam_max=3.0, schedule="linear", **kw)), 3.0 - 0.75 * 4.0)


def test_ga_pgd_kappa_and_iterates_match_reference_on_linear_model():
  """GA-PGD on z = xW + b equals the NumPy transcription of GA_PGD (same start point)."""
  rng = np.random.default_rng(2)
  b, d, k, eps, step = 24, 20, 5, 0.1, 0.02
  x = rng.uniform(0, 1, (b, d))
  w, bias = rng.standard_normal((d, k)), 0.1 * rng.standard_normal(k)
  y = np.argmax(x @ w + bias, axis=1)          # clean points correct,
  y[:6] = rng.integers(0, k, 6)                # a few random labels
  x0 = np.clip(x + rng.uniform(-eps, eps, x.shape), 0, 1)
  with h.x64():
    logits_fn = lambda xa: xa @ jnp.asarray(w) + jnp.asarray(bias)
    run = h.jit(lambda x, y, x0: ga_pgd(logits_fn, x, y, x0, eps=eps, step_size=step, steps=K))
    x_adv, kappa, x_lps = run(jnp.asarray(x), jnp.asarray(y), jnp.asarray(x0))
  x_ref, kappa_ref = ref.ga_pgd_linear(x, y, x0, w, bias, eps, step, K)
  np.testing.assert_allclose(np.asarray(x_adv), x_ref, atol=1e-12)
  np.testing.assert_array_equal(np.asarray(kappa), kappa_ref)
  assert kappa_ref.min() < K and kappa_ref.max() > 0   # the test exercises both ends
  # x_lps is misclassified wherever some iterate was.
  lps_wrong = np.argmax(np.asarray(x_lps) @ w + bias, 1) != y
  np.testing.assert_array_equal(lps_wrong[kappa_ref < K], True)


def test_uniform_weights_before_begin_epoch_then_gair():
  """Before begin_epoch the loss is the plain mean CE; from it on, the GAIR-weighted mean."""
  z_nat, y = h.random_logits(3, b=16)
  z_adv = z_nat + np.random.default_rng(4).standard_normal(z_nat.shape)
  kappa = np.random.default_rng(5).integers(0, K + 1, 16).astype(np.float32)
  aux = {"kappa": jnp.asarray(kappa), "clean_acc": jnp.asarray(0.5)}
  method = make_gairat(begin_epoch=3, lambda_begin_epoch=3, lam=-1.0)
  with h.x64():
    ce = ref.cross_entropy(z_adv, y)
    before, _ = h.call_loss(method, z_nat, z_adv, y, epoch=1.9, attack_aux=aux)  # 1-indexed epoch 2
    after, _ = h.call_loss(method, z_nat, z_adv, y, epoch=2.0, attack_aux=aux)   # 1-indexed epoch 3
  np.testing.assert_allclose(float(before), ce.mean(), rtol=1e-6)
  np.testing.assert_allclose(float(after), (ce * ref.gair(K, kappa, -1.0, "tanh")).mean(), rtol=1e-6)


def test_weights_carry_no_gradient():
  kappa = jnp.arange(8, dtype=jnp.float32)
  g = jax.grad(lambda k: jnp.sum(gair_weights(k, K, -1.0) * jnp.arange(8.0)))(kappa)
  np.testing.assert_array_equal(g, 0.0)


@pytest.mark.parametrize("kw", [dict(weight_fn="relu"), dict(lambda_schedule="piecewise"),
                                dict(lambda_schedule="linear"), dict(steps=1), dict(eps=-1.0),
                                dict(begin_epoch=-1)])
def test_rejects_bad_hyperparameters(kw):
  with pytest.raises(ValueError):
    make_gairat(**kw)


def test_train_step_gairat_crosses_begin_epoch_without_recompiling():
  """Starts at step 0 of 'epoch 0' with begin_epoch 1 (1-indexed): the first steps are unweighted,
  later ones weighted; one compilation; state structure kept; loss decreases."""
  _, state, metrics = h.check_training(make_gairat(steps=3, begin_epoch=2, lambda_begin_epoch=2),
                                       steps_per_epoch=10, n_steps=20)
  w_max = np.array([float(m["weight_max"]) for m in metrics])
  np.testing.assert_array_equal(w_max[:10], 1.0)
  assert np.mean(w_max[10:] > 1.0) > 0.5   # (uniform again only if every kappa is equal)
