"""Per-example losses: CE, margins (W1, C4), DLR (A8), KL (T1), binary losses, the loss registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust import losses as L

R = np.random.RandomState(0)
Z = jnp.asarray(R.randn(16, 7) * 3, jnp.float32)
Y = jnp.asarray(R.randint(0, 7, 16), jnp.int32)


def _np_log_softmax(z):
  z = np.asarray(z, np.float64)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_cross_entropy_reference_and_shift_invariance():
  ref = -_np_log_softmax(Z)[np.arange(16), np.asarray(Y)]
  np.testing.assert_allclose(L.cross_entropy(Z, Y), ref, rtol=1e-5)
  np.testing.assert_allclose(L.cross_entropy(Z + 5.0, Y), ref, rtol=1e-4)
  assert L.cross_entropy(Z, Y).shape == (16,)
  with pytest.raises(ValueError, match="shape"):
    L.cross_entropy(Z[..., None], Y)


def test_margin_sign_matches_correctness():
  m = np.asarray(L.margin(Z, Y))
  correct = np.asarray(jnp.argmax(Z, -1) == Y)
  np.testing.assert_array_equal(m > 0, correct)
  np.testing.assert_array_equal(np.asarray(L.is_correct(Z, Y)), correct)


def test_cw_margin_w1():
  """W1: invariant to z + b 1, linear in a > 0 for kappa = 0, clamped at margin <= -kappa."""
  base = L.cw_margin(Z, Y)
  np.testing.assert_allclose(L.cw_margin(Z + 3.0, Y), base, atol=1e-4)
  k0 = L.make_cw_margin(0.0)
  np.testing.assert_allclose(k0(2.5 * Z, Y), 2.5 * np.asarray(k0(Z, Y)), rtol=1e-5, atol=1e-5)
  m = np.asarray(L.margin(Z, Y))
  for kappa in (0.0, 2.0, 50.0):
    got = np.asarray(L.make_cw_margin(kappa)(Z, Y))
    np.testing.assert_allclose(got, np.where(m <= -kappa, 0.0, -(m + kappa)), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(L.make_cw_margin(50.0)(Z, Y), base)
  assert L.make_cw_margin(1.0).needs_reference is False


def test_cw_f_handmade_logits_and_the_torchattacks_masking_bug():
  """C4: f(z) = max(z_y - max_{j != y} z_j, -kappa)."""
  z = jnp.array([[3.0, 1.0, 2.0], [3.0, 1.0, 2.0], [-1.0, -3.0, -2.0]])
  y = jnp.array([0, 1, 0])
  np.testing.assert_allclose(L.cw_f(z, y, kappa=0.0), [1.0, 0.0, 1.0])
  np.testing.assert_allclose(L.cw_f(z, y, kappa=5.0), [1.0, -2.0, 1.0])
  # targeted (y = target t): max(max_{j != t} z_j - z_t, -kappa)
  np.testing.assert_allclose(L.cw_f(z, y, kappa=5.0, targeted=True), [-1.0, 2.0, -1.0])
  # torchattacks takes max(onehot z) and max((1 - onehot) z), which read the masked entries as 0:
  # with all logits < 0 both are 0 and f = 0 instead of z_y - max_{j != y} z_j = 1
  onehot = np.eye(3)[np.asarray(y)]
  ta = np.max(onehot * np.asarray(z), 1) - np.max((1 - onehot) * np.asarray(z), 1)
  np.testing.assert_allclose(ta[:2], np.asarray(L.margin(z, y))[:2])  # same where logits are positive
  assert ta[2] == 0.0 and float(L.cw_f(z, y)[2]) == 1.0


def test_dlr_a8():
  d = np.asarray(L.dlr(Z, Y))
  np.testing.assert_allclose(L.dlr(2.0 * Z + 1.5, Y), d, rtol=1e-4, atol=1e-6)
  correct = np.asarray(jnp.argmax(Z, -1) == Y)
  np.testing.assert_array_equal(d < 0, correct)
  assert np.all((d[correct] >= -1) & (d[correct] < 0))
  t = (Y + 1) % 7
  dt = np.asarray(L.dlr_targeted(Z, Y, t))
  np.testing.assert_allclose(L.dlr_targeted(3.0 * Z - 2.0, Y, t), dt, rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="3 classes"):
    L.dlr(Z[:, :2], Y % 2)
  with pytest.raises(ValueError, match="4 classes"):
    L.dlr_targeted(Z[:, :3], Y % 3, (Y + 1) % 3)


def test_kl_nonnegative_zero_and_flat_at_equality():
  """T1: KL(p_ref || p) >= 0, = 0 and with zero gradient at p = p_ref."""
  z2 = Z + jnp.asarray(R.randn(16, 7), jnp.float32)
  assert np.all(np.asarray(L.kl_divergence(z2, None, Z)) >= -1e-6)
  with jax.enable_x64(True):
    z = jnp.asarray(np.asarray(Z), jnp.float64)
    np.testing.assert_allclose(L.kl_divergence(z, None, z), 0.0, atol=1e-12)
    g = jax.grad(lambda v: jnp.sum(L.kl_divergence(v, None, z)))(z)
    np.testing.assert_allclose(g, 0.0, atol=1e-12)
  ref = np.exp(_np_log_softmax(Z))
  expect = (ref * (_np_log_softmax(Z) - _np_log_softmax(z2))).sum(1)
  np.testing.assert_allclose(L.kl_divergence(z2, None, Z), expect, rtol=1e-4, atol=1e-6)


def test_binary_losses():
  z = jnp.array([-100.0, -2.0, 0.0, 3.0, 100.0])
  y = jnp.array([1, 0, 1, 1, 0])
  s = 1 / (1 + np.exp(-np.asarray(z, np.float64)))
  naive = -(np.asarray(y) * np.log(s + 1e-300) + (1 - np.asarray(y)) * np.log(1 - s + 1e-300))
  got = np.asarray(L.binary_cross_entropy(z, y))
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, np.minimum(naive, 100.0), rtol=1e-5)
  np.testing.assert_allclose(L.binary_cross_entropy(z[:, None], y), got)
  # Bernoulli KL equals the 2-class softmax KL of logits [0, z]
  z_ref = jnp.array([0.5, -1.0, 2.0, 0.0, -3.0])
  two = lambda v: jnp.stack([jnp.zeros_like(v), v], 1)
  np.testing.assert_allclose(L.bernoulli_kl(z, None, z_ref)[1:4], L.kl_divergence(two(z), None, two(z_ref))[1:4],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(L.bernoulli_kl(z_ref, None, z_ref), 0.0, atol=1e-6)
  np.testing.assert_array_equal(L.predict(z), [0, 0, 0, 1, 1])
  np.testing.assert_array_equal(L.is_correct(z[:, None], y), [False, True, False, True, False])
  with pytest.raises(ValueError, match="single-logit"):
    L.binary_logits(Z[:, :3])


def test_loss_registry():
  for name in ("ce", "cw", "dlr", "kl", "bce", "bernoulli_kl"):
    fn, needs_ref = L.get_attack_loss(name)
    assert needs_ref == (name in ("kl", "bernoulli_kl"))
    assert fn.needs_reference == needs_ref
  assert L.get_attack_loss(L.cross_entropy) == (L.cross_entropy, False)  # no extra clean pass for built-ins
  custom = lambda z, y, r: L.cross_entropy(z, y)
  assert L.get_attack_loss(custom)[1] is True  # unknown callables get the reference logits
  with pytest.raises(ValueError, match="unknown attack loss"):
    L.get_attack_loss("hinge")
