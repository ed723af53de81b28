"""MART: the code form (Wang et al. 2020) against the NumPy transcription of mart.py::mart_loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.losses import bernoulli_kl
from jaxrobust.methods.mart import (boosted_ce, make_mart, mart_kl, mart_weight,
                                    most_likely_wrong_class, two_class_logits)

try:
  from tests.methods import method_harness as h
  from tests.methods import numpy_reference as ref
except ImportError:  # run from inside tests/methods
  import method_harness as h
  import numpy_reference as ref


@pytest.mark.parametrize("seed,beta", [(0, 6.0), (1, 5.0), (2, 0.5)])
def test_mart_loss_matches_reference(seed, beta):
  z_nat, y = h.random_logits(seed, b=16, k=10)
  z_adv = z_nat + 2.0 * np.random.default_rng(seed + 100).standard_normal(z_nat.shape)
  with h.x64():
    value, metrics = h.call_loss(make_mart(beta=beta), z_nat, z_adv, y)
    total, bce, rob = ref.mart_loss(z_nat, z_adv, y, beta)
    np.testing.assert_allclose(float(value), total, rtol=1e-12)
    np.testing.assert_allclose(float(metrics["loss_adv"]), bce, rtol=1e-12)
    np.testing.assert_allclose(float(metrics["loss_robust"]), rob, rtol=1e-12)


def test_thesis_variant_bce_on_natural():
  z_nat, y = h.random_logits(3)
  z_adv = z_nat + np.random.default_rng(4).standard_normal(z_nat.shape)
  with h.x64():
    value, _ = h.call_loss(make_mart(beta=6.0, bce_on="nat"), z_nat, z_adv, y)
    np.testing.assert_allclose(float(value), ref.mart_loss(z_nat, z_adv, y, 6.0, bce_on="nat")[0], rtol=1e-12)
    code, _ = h.call_loss(make_mart(beta=6.0), z_nat, z_adv, y)
    assert abs(float(code) - float(value)) > 1e-3  # the two forms really differ


def test_new_y_is_most_likely_wrong_class_and_boost_term():
  """y' != y, y' = argmax_{k != y} p'; BCE - CE = -log(1.0001 - max_{k != y} p' + 1e-12)."""
  z, y = h.random_logits(5, b=64, k=10)
  # Make half the batch confidently correct so the top-1 == y branch of the code is exercised.
  z[np.arange(32), y[:32]] += 10.0
  with h.x64():
    p = ref.softmax(z)
    wrong = np.asarray(most_likely_wrong_class(jnp.asarray(p), jnp.asarray(y)))
    assert np.all(wrong != y)
    np.testing.assert_array_equal(wrong, ref.mart_new_y(p, y))
    boost = np.asarray(boosted_ce(jnp.asarray(z), jnp.asarray(y))) - ref.cross_entropy(z, y)
    p_wrong = np.where(np.eye(10)[y] > 0, -np.inf, p).max(1)
    np.testing.assert_allclose(boost, -np.log(1.0001 - p_wrong + 1e-12), rtol=1e-10)
    assert np.all(boost >= -np.log(1.0001))  # so BCE >= CE - log(1.0001)


def test_weight_range_and_kl_nonnegative():
  """The weight (1.0000001 - p_y) lies in [1e-7, 1.0000001], also at saturated logits."""
  z, y = h.random_logits(6, b=32)
  z[:8] = 0.0
  z[np.arange(8, 16), y[8:16]] = 200.0   # p_y == 1 to double precision
  with h.x64():
    w = np.asarray(mart_weight(jnp.asarray(z), jnp.asarray(y)))
    assert np.all(w >= 1e-7 * 0.999) and np.all(w <= 1.0000001)
    np.testing.assert_allclose(w[8:16], 1e-7, rtol=1e-6)
    z_adv = z + np.random.default_rng(7).standard_normal(z.shape)
    # >= 0 up to the code's +1e-12 inside log p' (which can make KL ~ -1e-12 when p' -> one-hot)
    assert np.all(np.asarray(mart_kl(jnp.asarray(z_adv), jnp.asarray(z))) >= -1e-11)


def test_beta_zero_is_boosted_ce_only_and_kl_vanishes_at_equal_inputs():
  z_nat, y = h.random_logits(8)
  z_adv = z_nat + np.random.default_rng(9).standard_normal(z_nat.shape)
  with h.x64():
    value, metrics = h.call_loss(make_mart(beta=0.0), z_nat, z_adv, y)
    bce, _ = ref.mart_parts(z_nat, z_adv, y)
    np.testing.assert_allclose(float(value), bce.mean(), rtol=1e-12)
    # x' = x: the KL term is 0 up to the code's 1e-12 inside the log.
    value, metrics = h.call_loss(make_mart(beta=6.0), z_nat, z_nat, y)
    assert abs(float(metrics["loss_robust"])) < 1e-10
    np.testing.assert_allclose(float(value), float(metrics["loss_adv"]), atol=1e-9)


def test_single_logit_head():
  """Single-logit z -> two-class [0, z]: CE is BCE and the KL the Bernoulli KL."""
  rng = np.random.default_rng(10)
  z_nat, z_adv = rng.standard_normal((12, 1)) * 3, rng.standard_normal((12, 1)) * 3
  y = rng.integers(0, 2, 12)
  with h.x64():
    value, _ = h.call_loss(make_mart(beta=5.0), z_nat, z_adv, y)
    two = lambda z: np.concatenate([np.zeros_like(z), z], axis=1)
    np.testing.assert_allclose(float(value), ref.mart_loss(two(z_nat), two(z_adv), y, 5.0)[0], rtol=1e-10)
    kl, bern, two_z = h.jit(lambda za, zn: (mart_kl(za, zn), bernoulli_kl(za, None, zn), two_class_logits(zn)))(
        jnp.asarray(z_adv), jnp.asarray(z_nat))
    np.testing.assert_allclose(kl, bern, atol=1e-9)
    np.testing.assert_array_equal(two_z, two(z_nat))


def test_gradients_finite_and_weight_not_detached():
  z_nat, y = h.random_logits(11, scale=60.0)   # saturated softmaxes
  z_adv = -z_nat
  method = make_mart(beta=6.0)
  _, g = h.call_loss(method, z_nat, z_adv, y, grad=True)
  assert np.isfinite(float(g))
  # The weight (1 - p_y) carries gradient (code): d/dz_nat of the robust term differs from
  # the version with the weight detached.
  (zn, yy), za = h.random_logits(12), h.random_logits(13)[0]
  zn, za, yy = jnp.asarray(zn), jnp.asarray(za), jnp.asarray(yy)
  full = h.jit(jax.grad(lambda z: jnp.sum(mart_kl(za, z) * mart_weight(z, yy))))(zn)
  detached = h.jit(jax.grad(lambda z: jnp.sum(mart_kl(za, z) * jax.lax.stop_gradient(mart_weight(z, yy)))))(zn)
  assert float(jnp.max(jnp.abs(full - detached))) > 1e-4


@pytest.mark.parametrize("kw", [dict(beta=-1.0), dict(bce_on="natural"), dict(attack_loss="cw"),
                                dict(eps=-0.1), dict(steps=-1)])
def test_rejects_bad_hyperparameters(kw):
  with pytest.raises(ValueError):
    make_mart(**kw)


def test_train_step_mart():
  h.check_training(make_mart(steps=3))
