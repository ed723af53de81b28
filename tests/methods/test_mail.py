"""MAIL: probabilistic margins, weights, normalisations, burn-in (Wang, Liu et al. 2021, eqs. 4-8)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.methods.mail import (make_mail, make_mail_at, make_mail_mart, make_mail_trades,
                                    mail_raw_weights, mail_weights, pm_dif, probabilistic_margin)
from jaxrobust.methods.mart import make_mart
from jaxrobust.methods.pgd_at import make_pgd_at
from jaxrobust.methods.trades import make_trades

try:
  from tests.methods import method_harness as h
  from tests.methods import numpy_reference as ref
except ImportError:  # run from inside tests/methods
  import method_harness as h
  import numpy_reference as ref


def _logits(seed, b=32, k=10):
  z_nat, y = h.random_logits(seed, b=b, k=k)
  z_adv = z_nat + 2.0 * np.random.default_rng(seed + 50).standard_normal(z_nat.shape)
  return z_nat, z_adv, y


def test_m1_probabilistic_margin():
  """PM in [-1, 1]; PM > 0 iff argmax p = y; the code's PM is -PM; uniform softmax gives 0."""
  z, _, y = _logits(0, b=64)
  z[np.arange(20), y[:20]] += 8.0   # a block of confidently correct examples
  with h.x64():
    pm = np.asarray(probabilistic_margin(jnp.asarray(z), jnp.asarray(y)))
    np.testing.assert_allclose(pm, -ref.pm_code(z, y), atol=1e-14)
    assert np.all(pm >= -1) and np.all(pm <= 1)
    np.testing.assert_array_equal(pm > 0, z.argmax(1) == y)
    np.testing.assert_array_equal(probabilistic_margin(jnp.zeros((4, 10)), jnp.arange(4)), 0.0)
    # Single-logit: PM = 2 P(y) - 1.
    zs = jnp.asarray([[2.0], [-1.0]])
    pm_s = probabilistic_margin(zs, jnp.asarray([1, 1]))
    np.testing.assert_allclose(pm_s, 2 * jax.nn.sigmoid(zs[:, 0]) - 1, atol=1e-12)


def test_m2_weights_decrease_in_pm_and_half_at_bias():
  with h.x64():  # float32 sigmoids saturate to exactly 1 at slope 30
    pm = jnp.linspace(-1.0, 1.0, 41)
    for slope, bias in [(10.0, -0.5), (2.0, 0.0), (5.0, 0.05), (30.0, -0.07)]:
      w = np.asarray(mail_raw_weights(pm, slope, bias))
      assert np.all(w > 0) and np.all(w < 1)
      assert np.all(np.diff(w) < 0)
      np.testing.assert_allclose(float(mail_raw_weights(jnp.asarray(bias), slope, bias)), 0.5)


def test_m3_normalisations():
  """paper: sum omega = B, mean 1; slope 0 -> omega = 1 (paper) and 1.5 (code, 3 * sigmoid(0))."""
  pm = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, 32))
  omega = mail_weights(pm, 5.0, 0.05, "paper")
  np.testing.assert_allclose(float(jnp.sum(omega)), 32.0, rtol=1e-5)
  np.testing.assert_allclose(mail_weights(pm, 0.0, 0.05, "paper"), 1.0, rtol=1e-6)
  np.testing.assert_allclose(mail_weights(pm, 0.0, 0.05, "code"), 1.5, rtol=1e-6)
  with h.x64():
    pm64 = jnp.asarray(np.asarray(pm, np.float64))
    np.testing.assert_allclose(mail_weights(pm64, 10.0, -0.5, "code"),
                               ref.mail_weights(np.asarray(pm64), 10.0, -0.5, "code"), rtol=1e-12)
  mask = jnp.asarray([1.0] * 24 + [0.0] * 8)
  np.testing.assert_allclose(float(jnp.sum(mail_weights(pm, 5.0, 0.05, "paper", mask) * mask)), 24.0, rtol=1e-5)


@pytest.mark.parametrize("base", ["at", "trades", "mart"])
@pytest.mark.parametrize("norm", ["code", "paper"])
def test_mail_losses_match_reference(base, norm):
  z_nat, z_adv, y = _logits(2)
  slope, bias, beta = 3.0, 0.1, 5.0
  method = make_mail(base, slope=slope, bias=bias, beta=beta, norm=norm, burn_in_epochs=0)
  with h.x64():
    value, metrics = h.call_loss(method, z_nat, z_adv, y, epoch=0.0)
  expected = ref.mail_loss(z_nat, z_adv, y, base, beta, slope, bias, norm)
  np.testing.assert_allclose(float(value), expected, rtol=1e-10)
  assert float(metrics["mail_active"]) == 1.0


@pytest.mark.parametrize("mail,base", [(make_mail_at, lambda: make_pgd_at()),
                                       (make_mail_trades, lambda: make_trades(beta=5.0)),
                                       (make_mail_mart, lambda: make_mart(beta=5.0))])
def test_m4_burn_in_is_the_unweighted_base_loss(mail, base):
  """omega is exactly 1 during burn-in, so the loss is the base method's formula; the two are
  different XLA programs, so equality holds to rounding (float64: 1e-13), not bit for bit."""
  z_nat, z_adv, y = _logits(3)
  method = mail(burn_in_epochs=76)
  with h.x64():
    burn, metrics = h.call_loss(method, z_nat, z_adv, y, epoch=75.99)
    base_value, _ = h.call_loss(base(), z_nat, z_adv, y)
    assert float(metrics["mail_active"]) == 0.0
    np.testing.assert_allclose(float(burn), float(base_value), rtol=1e-13)
    np.testing.assert_array_equal(metrics["weight_mean"], 1.0)
    after, metrics = h.call_loss(method, z_nat, z_adv, y, epoch=76.0)
    assert float(metrics["mail_active"]) == 1.0 and abs(float(after) - float(base_value)) > 1e-3


def test_m3_slope_zero_paper_norm_equals_at_and_trades():
  z_nat, z_adv, y = _logits(4)
  with h.x64():
    for mail, base in [(make_mail_at, make_pgd_at()), (make_mail_trades, make_trades(beta=5.0))]:
      value, _ = h.call_loss(mail(slope=0.0, norm="paper", burn_in_epochs=0), z_nat, z_adv, y)
      np.testing.assert_allclose(float(value), float(h.call_loss(base, z_nat, z_adv, y)[0]), rtol=1e-12)


def test_m5_weights_carry_no_gradient():
  z, _, y = _logits(5)
  weights = lambda z: mail_weights(probabilistic_margin(z, jnp.asarray(y)), 5.0, 0.05, "paper")
  g = h.jit(jax.grad(lambda z: jnp.sum(weights(z))))(jnp.asarray(z))
  np.testing.assert_array_equal(g, 0.0)
  # The MAIL-AT gradient equals that of CE weighted by constants computed outside.
  zn, za, yy = _logits(6)
  zn, za, yy = jnp.asarray(zn, jnp.float32), jnp.asarray(za, jnp.float32), jnp.asarray(yy)
  (_, _), g_w = h.call_loss(make_mail_at(burn_in_epochs=0), zn, za, yy, grad=True)
  omega = mail_weights(probabilistic_margin(za, yy), 10.0, -0.5, "code")
  ce = lambda w: jnp.mean(omega * -jnp.take_along_axis(jax.nn.log_softmax(w * za), yy[:, None], 1)[:, 0])
  np.testing.assert_allclose(float(g_w), float(h.jit(jax.grad(ce))(1.0)), rtol=1e-5)


def test_m6_trades_robust_zero_at_clean_and_mart_weight_positive():
  z_nat, _, y = _logits(7)
  with h.x64():
    _, metrics = h.call_loss(make_mail_trades(burn_in_epochs=0), z_nat, z_nat, y)
    assert abs(float(metrics["loss_robust"])) < 1e-14
    _, metrics = h.call_loss(make_mail_mart(burn_in_epochs=0), z_nat, z_nat, y)
    assert abs(float(metrics["loss_robust"])) < 1e-9


def test_pm_nat_and_pm_dif():
  z_nat, z_adv, y = _logits(8)
  with h.x64():
    value, _ = h.call_loss(make_mail_at(pm="nat", burn_in_epochs=0), z_nat, z_adv, y)
    omega = ref.mail_weights(-ref.pm_code(z_nat, y), 10.0, -0.5)
    np.testing.assert_allclose(float(value), (ref.cross_entropy(z_adv, y) * omega).mean(), rtol=1e-10)
    d = np.asarray(pm_dif(jnp.asarray(z_nat), jnp.asarray(z_adv), jnp.asarray(y)))
    p_nat, p_adv = ref.softmax(z_nat), ref.softmax(z_adv)
    np.testing.assert_allclose(d, p_nat[np.arange(32), y] - p_adv[np.arange(32), y], atol=1e-14)
    assert np.all(np.abs(d) <= 1)


def test_pm_dif_attack_path_stays_in_ball_and_box():
  """pm='dif': the attack returns x' in the eps-ball and box, and PM_dif in [-1, 1] as aux."""
  rng = np.random.default_rng(9)
  x = jnp.asarray(rng.uniform(0, 1, (16, 10)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, 16), jnp.int32)
  method = make_mail_at(pm="dif", eps=0.1, step_size=0.03, steps=4)
  ctx = h.identity_ctx(0.0)
  x_adv, aux = h.jit(lambda x, y: method.attack({"w": jnp.asarray(8.0)}, {}, {"image": x, "label": y},
                                               jax.random.key(0), (), ctx))(x, y)
  assert float(jnp.max(jnp.abs(x_adv - x))) <= 0.1 + 1e-6
  assert float(jnp.min(x_adv)) >= 0 and float(jnp.max(x_adv)) <= 1
  assert aux.shape == (16,) and float(jnp.max(jnp.abs(aux))) <= 1


@pytest.mark.parametrize("base", ["at", "trades", "mart"])
def test_gradients_finite_at_saturated_logits(base):
  z_nat, y = h.random_logits(10, scale=80.0)
  z_nat, z_adv = z_nat.astype(np.float32), -z_nat.astype(np.float32)
  (value, _), g = h.call_loss(make_mail(base, burn_in_epochs=0, norm="paper"), z_nat, z_adv, y, grad=True)
  assert np.isfinite(float(value)) and np.isfinite(float(g))


@pytest.mark.parametrize("kw", [dict(slope=-1.0), dict(beta=-1.0), dict(norm="batch"), dict(pm="margin"),
                                dict(burn_in_epochs=-1), dict(eps=-0.1)])
def test_rejects_bad_hyperparameters(kw):
  with pytest.raises(ValueError):
    make_mail_trades(**kw)
  with pytest.raises(ValueError):
    make_mail("pgd")


def test_train_step_mail_trades_crosses_burn_in_without_recompiling():
  _, _, metrics = h.check_training(make_mail_trades(steps=2, burn_in_epochs=1), steps_per_epoch=10)
  active = np.array([float(m["mail_active"]) for m in metrics])
  np.testing.assert_array_equal(active, [0.0] * 10 + [1.0] * 10)


@pytest.mark.parametrize("factory", [make_mail_at, make_mail_mart])
def test_train_step_mail_at_and_mart(factory):
  h.check_training(factory(steps=2, burn_in_epochs=0))


@pytest.mark.parametrize("base", ["trades", "mart"])
def test_lps_weights_are_gairat_weights_of_the_least_perturbation_step(base):
  """MAIL Table 1's TRADES-LPS / MART-LPS: the PM weights replaced by GAIRAT's weights of kappa."""
  from jaxrobust.methods.gairat import gair_weights
  z_nat, z_adv, y = _logits(11)
  kappa = jnp.asarray(np.random.default_rng(0).integers(0, 11, size=32), jnp.float32)
  with h.x64():
    lps, m_lps = h.call_loss(make_mail(base, pm="lps", steps=10, burn_in_epochs=0, beta=5.0), z_nat, z_adv, y,
                             attack_aux=kappa)
    omega = np.asarray(gair_weights(kappa, 10, -1.0, "tanh"))
    if base == "trades":
      kl = ref.kl_div_none(ref.log_softmax(z_adv), ref.softmax(z_nat)).sum(1)
      expected = ref.cross_entropy(z_nat, y).mean() + 5.0 * (omega * kl).mean()
      np.testing.assert_allclose(float(lps), expected, rtol=1e-6)
    else:
      bce, kl_w = ref.mart_parts(z_nat, z_adv, y)
      np.testing.assert_allclose(float(lps), (omega * bce).mean() + 5.0 * kl_w.mean(), rtol=1e-6)
    np.testing.assert_allclose(float(m_lps["weight_mean"]), 1.0, rtol=1e-6)  # normalised to the batch size
    burn, _ = h.call_loss(make_mail(base, pm="lps", steps=10, burn_in_epochs=5, beta=5.0), z_nat, z_adv, y,
                          attack_aux=kappa)
    base_loss, _ = h.call_loss(make_trades(beta=5.0) if base == "trades" else make_mart(beta=5.0), z_nat, z_adv, y)
  np.testing.assert_allclose(float(burn), float(base_loss), rtol=1e-10)


def test_lps_attack_returns_kappa_and_trains():
  rng = np.random.default_rng(9)
  x = jnp.asarray(rng.uniform(0, 1, (16, 10)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, 16), jnp.int32)
  method = make_mail_trades(pm="lps", eps=0.1, step_size=0.03, steps=4)
  x_adv, kappa = h.jit(lambda x, y: method.attack({"w": jnp.asarray(8.0)}, {}, {"image": x, "label": y},
                                                  jax.random.key(0), (), h.identity_ctx(0.0)))(x, y)
  assert float(jnp.max(jnp.abs(x_adv - x))) <= 0.1 + 1e-6
  assert kappa.shape == (16,) and float(jnp.min(kappa)) >= 0 and float(jnp.max(kappa)) <= 4
  h.check_training(make_mail_trades(pm="lps", eps=0.1, step_size=0.05, steps=3, burn_in_epochs=0), n_steps=12)
  with pytest.raises(ValueError, match="lps_weight_fn"):
    make_mail_mart(pm="lps", lps_weight_fn="relu")
