"""Per-example losses: CE, margins, CW, DLR, KL, binary losses, the loss declarations, and which come from optax."""

import chex
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
  """The CW margin: invariant to z + b 1, linear in a > 0 for kappa = 0, clamped at margin <= -kappa."""
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
  """The CW-L2 term f(z) = max(z_y - max_{j != y} z_j, -kappa)."""
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
  """KL(p_ref || p) >= 0, = 0 and with zero gradient at p = p_ref."""
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
    declared = L.get_attack_loss(name)
    needs_ref = declared.needs_reference
    assert needs_ref == (name in ("kl", "bernoulli_kl"))
    assert L.get_attack_loss(declared.fn).needs_reference == needs_ref
  # no extra clean pass for built-ins
  assert L.get_attack_loss(L.cross_entropy) == L.AttackLoss(L.cross_entropy, needs_reference=False)
  custom = lambda z, y, r: L.cross_entropy(z, y)
  assert L.get_attack_loss(custom).needs_reference is True  # unknown callables get the reference logits
  with pytest.raises(ValueError, match="unknown attack loss"):
    L.get_attack_loss("hinge")


def _logits(scale, seed=1):
  r = np.random.RandomState(seed)
  return jnp.asarray(r.randn(64, 10) * scale, jnp.float32), jnp.asarray(r.randn(64, 10) * scale, jnp.float32)


@pytest.mark.parametrize("scale", [1.0, 3.0, 30.0, 300.0])
def test_kl_is_optax_kl_with_log_targets(scale):
  """KL(p_ref || p) comes from optax: values and input gradients equal bit for bit, large |logits| included."""
  import optax
  z, z_ref = _logits(scale)

  def before(q):  # the formula the library used before delegating
    logq_ref = jax.nn.log_softmax(z_ref, axis=-1)
    return jnp.sum(jnp.exp(logq_ref) * (logq_ref - jax.nn.log_softmax(q, axis=-1)), axis=-1)

  ours = lambda q: L.kl_divergence(q, None, z_ref)  # noqa: E731
  np.testing.assert_array_equal(ours(z), before(z))
  np.testing.assert_array_equal(jax.grad(lambda q: ours(q).sum())(z), jax.grad(lambda q: before(q).sum())(z))
  # optax.losses.kl_divergence (probability targets, log(0) guarded) is the same divergence.
  theirs = optax.losses.kl_divergence(jax.nn.log_softmax(z, -1), jax.nn.softmax(z_ref, -1))
  np.testing.assert_allclose(ours(z), theirs, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("scale", [1.0, 3.0, 30.0, 300.0])
def test_cross_entropy_and_bce_against_optax(scale):
  """CE and BCE stay ours (docstrings): optax's CE cancels at large |logits|, optax's BCE has another gradient."""
  import optax
  z, _ = _logits(scale)
  y = jnp.asarray(np.random.RandomState(2).randint(0, 10, 64), jnp.int32)
  ref = -_np_log_softmax(z)[np.arange(64), np.asarray(y)]
  sizable = ref > 1e-3
  ours = np.asarray(L.cross_entropy(z, y))
  theirs = np.asarray(optax.losses.softmax_cross_entropy_with_integer_labels(z, y))
  np.testing.assert_allclose(ours[sizable], ref[sizable], rtol=1e-5)
  np.testing.assert_allclose(ours, ref, atol=1e-6 * max(scale, 1.0))
  np.testing.assert_allclose(theirs, ref, atol=1e-6 * max(scale, 1.0))
  if scale == 30.0:  # logsumexp(z) - z_y: relative error above 1e-5 once |z| ~ 30
    assert np.max(np.abs(theirs - ref)[sizable] / ref[sizable]) > 1e-5
  g_ours = jax.grad(lambda q: L.cross_entropy(q, y).sum())(z)
  g_theirs = jax.grad(lambda q: optax.losses.softmax_cross_entropy_with_integer_labels(q, y).sum())(z)
  np.testing.assert_allclose(g_ours, g_theirs, atol=1e-6)
  zb, yb = z[:, 0], y % 2
  np.testing.assert_array_equal(L.binary_cross_entropy(zb, yb),
                                optax.losses.sigmoid_binary_cross_entropy(zb, yb.astype(jnp.float32)))
  gb_ours = jax.grad(lambda q: L.binary_cross_entropy(q, yb).sum())(zb)
  gb_theirs = jax.grad(lambda q: optax.losses.sigmoid_binary_cross_entropy(q, yb.astype(jnp.float32)).sum())(zb)
  np.testing.assert_allclose(gb_ours, gb_theirs, atol=1e-6)


def test_bce_gradient_at_zero_differs_from_optax():
  # At z = 0 this form's subgradient is -y, optax's the derivative sigmoid(0) - y: the reason BCE stays ours
  # (switching would change single-logit training wherever a logit is exactly 0, e.g. a zero-initialised head).
  import optax
  y = jnp.asarray([0, 1])
  g_ours = jax.grad(lambda q: L.binary_cross_entropy(q, y).sum())(jnp.zeros(2))
  g_theirs = jax.grad(lambda q: optax.losses.sigmoid_binary_cross_entropy(q, y.astype(jnp.float32)).sum())(jnp.zeros(2))
  np.testing.assert_array_equal(g_ours, [0.0, -1.0])
  np.testing.assert_array_equal(g_theirs, [0.5, -0.5])


class LossesJitAndEager(chex.TestCase):
  """The per-example losses are pure: the same values traced under jit and run eagerly (chex variants)."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_cross_entropy_reference_shift_invariance_and_shape(self):
    ce = self.variant(L.cross_entropy)
    ref = -_np_log_softmax(Z)[np.arange(16), np.asarray(Y)]
    chex.assert_shape(ce(Z, Y), (16,))
    chex.assert_trees_all_close(ce(Z, Y), ref, rtol=1e-5)
    chex.assert_trees_all_close(ce(Z + 5.0, Y), ref, rtol=1e-4)

  @chex.variants(with_jit=True, without_jit=True)
  def test_margin_sign_and_dlr_range_match_correctness(self):
    correct = np.asarray(jnp.argmax(Z, -1) == Y)
    margin, dlr = self.variant(L.margin)(Z, Y), self.variant(L.dlr)(Z, Y)
    chex.assert_tree_all_finite((margin, dlr))
    np.testing.assert_array_equal(np.asarray(margin) > 0, correct)
    np.testing.assert_array_equal(np.asarray(dlr) < 0, correct)
    chex.assert_trees_all_close(self.variant(L.dlr)(2.0 * Z + 1.5, Y), dlr, rtol=1e-4, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_kl_nonnegative_and_zero_at_equality(self):
    kl = self.variant(lambda z, ref: L.kl_divergence(z, None, ref))
    z2 = Z + jnp.asarray(np.random.RandomState(1).randn(16, 7), jnp.float32)
    assert np.all(np.asarray(kl(z2, Z)) >= -1e-6)
    chex.assert_trees_all_close(kl(Z, Z), jnp.zeros(16), atol=1e-5)
