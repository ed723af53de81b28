"""TRADES and PGD-AT against the reference formulas (Zhang et al. 2019; Madry et al. 2018)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.attacks.pgd import pgd
from jaxrobust.losses import kl_divergence
from jaxrobust.methods.pgd_at import make_pgd_at
from jaxrobust.methods.standard import make_standard
from jaxrobust.methods.trades import make_trades

try:
  from tests.methods import method_harness as h
  from tests.methods import numpy_reference as ref
except ImportError:  # run from inside tests/methods
  import method_harness as h
  import numpy_reference as ref


def _logits(seed):
  z_nat, y = h.random_logits(seed)
  return z_nat, z_nat + 1.5 * np.random.default_rng(seed + 10).standard_normal(z_nat.shape), y


@pytest.mark.parametrize("beta", [6.0, 1.0, 0.0])
def test_b1_t2_trades_loss_matches_reference(beta):
  """loss_robust == mean_i KL(p_nat,i || p_adv,i) (target = natural); beta = 0 is natural CE."""
  z_nat, z_adv, y = _logits(0)
  with h.x64():
    value, metrics = h.call_loss(make_trades(beta=beta), z_nat, z_adv, y)
  total, natural, robust = ref.trades_loss(z_nat, z_adv, y, beta)
  np.testing.assert_allclose(float(value), total, rtol=1e-12)
  np.testing.assert_allclose(float(metrics["loss_robust"]), robust, rtol=1e-12)
  assert robust > 0
  # The direction matters: KL(p_adv || p_nat) is a different number.
  reverse = ref.kl_div_none(ref.log_softmax(z_nat), ref.softmax(z_adv)).sum(1).mean()
  assert abs(reverse - robust) > 1e-3
  if beta == 0.0:
    np.testing.assert_allclose(float(value), ref.cross_entropy(z_nat, y).mean(), rtol=1e-12)


def test_kl_nonnegative_zero_and_flat_at_clean():
  """KL >= 0, == 0 at x' = x, and its input gradient there is 0 up to rounding.

  "An attack started exactly at x does not move" holds only in exact
  arithmetic: the gradient at x' = x is rounding noise (~1e-7 in float32, ~1e-16 in float64, as in
  PyTorch), and sign() turns it into full alpha steps. The 0.001 N start is what TRADES relies on.
  """
  z_nat, z_adv, y = _logits(1)
  with h.x64():
    zn, za = jnp.asarray(z_nat), jnp.asarray(z_adv)
    assert np.all(np.asarray(kl_divergence(za, None, zn)) >= 0)
    np.testing.assert_allclose(kl_divergence(zn, None, zn), 0.0, atol=1e-15)
    g = h.jit(jax.grad(lambda z: jnp.sum(kl_divergence(z, None, zn))))(zn)
    np.testing.assert_allclose(g, 0.0, atol=1e-14)
    _, metrics = h.call_loss(make_trades(), z_nat, z_nat, y)
    assert abs(float(metrics["loss_robust"])) < 1e-15
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.uniform(0.2, 0.8, (8, 12)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((12, 5)), jnp.float32)
  g = h.jit(jax.grad(lambda v: jnp.sum(kl_divergence(v @ w, None, x @ w))))(x)
  assert float(jnp.max(jnp.abs(g))) < 1e-6
  # With the 0.001 N start the KL attack finds a real ascent direction: KL grows well above noise.
  x_adv = h.jit(lambda x: pgd(lambda v: v @ w, x, jnp.zeros(8, jnp.int32), jax.random.key(0), eps=0.1,
                              step_size=0.02, steps=5, loss="kl", init="normal"))(x)
  assert float(jnp.min(kl_divergence(x_adv @ w, None, x @ w))) > 1e-3


@pytest.mark.parametrize("mix", [0.0, 0.5, 1.0])
def test_pgd_at_mix(mix):
  """(1 - lam) CE(x) + lam CE(x'); lam = 0 gives natural-training gradients, lam = 1 adversarial ones."""
  z_nat, z_adv, y = _logits(3)
  with h.x64():
    (value, _), g = h.call_loss(make_pgd_at(mix=mix), z_nat, z_adv, y, w=1.3, grad=True)
    np.testing.assert_allclose(float(value), ref.pgd_at_loss(1.3 * z_nat, 1.3 * z_adv, y, mix), rtol=1e-12)
    (_, _), g_nat = h.call_loss(make_standard(), z_nat, z_adv, y, w=1.3, grad=True)
    (_, _), g_adv = h.call_loss(make_standard(), z_adv, z_adv, y, w=1.3, grad=True)
  np.testing.assert_allclose(float(g), (1 - mix) * float(g_nat) + mix * float(g_adv), rtol=1e-10)


def test_trades_single_logit_is_bernoulli():
  rng = np.random.default_rng(4)
  z_nat, z_adv = rng.standard_normal((10, 1)) * 2, rng.standard_normal((10, 1)) * 2
  y = rng.integers(0, 2, 10)
  two = lambda z: np.concatenate([np.zeros_like(z), z], axis=1)
  with h.x64():
    value, _ = h.call_loss(make_trades(beta=6.0), z_nat, z_adv, y)
  np.testing.assert_allclose(float(value), ref.trades_loss(two(z_nat), two(z_adv), y, 6.0)[0], rtol=1e-10)


@pytest.mark.parametrize("factory,kw", [(make_trades, dict(beta=-1.0)), (make_pgd_at, dict(mix=-0.1)),
                                        (make_pgd_at, dict(eps=-0.1))])
def test_rejects_bad_hyperparameters(factory, kw):
  with pytest.raises(ValueError):
    factory(**kw)
