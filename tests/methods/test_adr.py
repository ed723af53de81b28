"""ADR (Bui et al. 2020): the compactness, smoothness and entropy terms against their closed forms,
stop-gradients, invariances, reductions to PGD-AT / TRADES, and a short training run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.methods import adr, get_method
from jaxrobust.methods.pgd_at import make_pgd_at
from jaxrobust.methods.trades import make_trades

try:
  from tests.methods import method_harness as h
  from tests.methods import numpy_reference as ref
except ImportError:  # run from inside tests/methods
  import method_harness as h
  import numpy_reference as ref


def _latents(seed, b=12, k=7, classes=4):
  rng = np.random.default_rng(seed)
  z = rng.standard_normal((b, k))
  za = z + 0.5 * rng.standard_normal((b, k))
  y = rng.integers(0, classes, size=b)
  return z, za, y


def test_local_compactness_closed_form_and_zero_at_equal_latents():
  z, za, _ = _latents(0)
  lc = adr.local_compactness(jnp.asarray(z), jnp.asarray(za))
  np.testing.assert_allclose(np.asarray(lc), np.abs(z - za).mean(1), rtol=1e-6)
  assert np.all(np.asarray(lc) >= 0)
  np.testing.assert_allclose(float(jnp.mean(lc)), np.abs(z - za).mean(), rtol=1e-6)
  # symmetric in value
  np.testing.assert_allclose(np.asarray(adr.local_compactness(jnp.asarray(za), jnp.asarray(z))), np.asarray(lc))
  assert float(jnp.max(adr.local_compactness(jnp.asarray(z), jnp.asarray(z)))) == 0.0


def test_label_weights_values_symmetry_and_single_class_guard():
  y = jnp.asarray([0, 1, 0, 2])
  w = np.asarray(adr.label_weights(y, 3, 0.99))
  same = np.asarray(y)[:, None] == np.asarray(y)[None, :]
  np.testing.assert_allclose(w[same], 1.0)
  np.testing.assert_allclose(w[~same], (0.99 - 1) / 0.99, rtol=1e-5)  # float32 cancellation
  np.testing.assert_allclose(w, w.T)
  one = np.asarray(adr.label_weights(jnp.zeros(5, jnp.int32), 3, 0.99))
  assert np.all(np.isfinite(one)) and np.all(one == 1.0)
  # padded examples do not decide max D: one valid class only -> all ones
  masked = np.asarray(adr.label_weights(jnp.asarray([1, 1, 2]), 3, 0.99, mask=jnp.asarray([1, 1, 0])))
  np.testing.assert_allclose(masked[:2, :2], 1.0)


def test_global_compactness_closed_form_and_diagonal():
  z, za, y = _latents(1)
  c = np.abs(za[:, None, :] - z[None, :, :]).mean(-1)  # c_ij = mean|z'_i - z_j|
  same = y[:, None] == y[None, :]
  expected = (c[same].sum() - (1 / 0.99 - 1) * c[~same].sum()) / len(y) ** 2
  got = adr.global_compactness(jnp.asarray(z), jnp.asarray(za), jnp.asarray(y), 4)
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)
  pair = np.asarray(adr.pairwise_compactness(jnp.asarray(z), jnp.asarray(za)))
  np.testing.assert_allclose(np.diag(pair), np.asarray(adr.local_compactness(jnp.asarray(z), jnp.asarray(za))),
                             rtol=1e-6)
  # equal latents: diagonal 0, but L_gb is not (clean-vs-clean distances remain off the diagonal)
  eq = adr.pairwise_compactness(jnp.asarray(z), jnp.asarray(z))
  assert float(jnp.max(jnp.abs(jnp.diag(eq)))) == 0.0
  assert float(adr.global_compactness(jnp.asarray(z), jnp.asarray(z), jnp.asarray(y), 4)) != 0.0


def test_stop_gradients_clean_side_and_weights():
  z, za, y = _latents(2)
  z, za, yj = jnp.asarray(z), jnp.asarray(za), jnp.asarray(y)
  g_lc = jax.grad(lambda zc: jnp.mean(adr.local_compactness(zc, za)))(z)
  g_gb = jax.grad(lambda zc: adr.global_compactness(zc, za, yj, 4))(z)
  assert float(jnp.max(jnp.abs(g_lc))) == 0.0 and float(jnp.max(jnp.abs(g_gb))) == 0.0
  assert float(jnp.max(jnp.abs(jax.grad(lambda a: adr.global_compactness(z, a, yj, 4))(za)))) > 0
  # the thesis pairing (clean vs clean) has gradient through the clean latents
  g_thesis = jax.grad(lambda zc: adr.global_compactness(zc, za, yj, 4, pairs="clean_clean"))(z)
  assert float(jnp.max(jnp.abs(g_thesis))) > 0


def test_permutation_invariance():
  z, za, y = _latents(3)
  zl, zal, _ = _latents(4, k=5)  # logits-like
  perm = np.random.default_rng(0).permutation(len(y))
  args = lambda p: (jnp.asarray(z[p]), jnp.asarray(za[p]), jnp.asarray(y[p]), jnp.asarray(zl[p]),
                    jnp.asarray(zal[p]))

  def all_terms(z, za, y, l, la):
    return (jnp.mean(adr.local_compactness(z, za)), adr.global_compactness(z, za, y, 4),
            jnp.mean(adr.entropy(la)), jnp.mean(adr.smoothness(l, la)),
            adr.global_smoothness(l, la, y, 4))
  a = all_terms(*args(np.arange(len(y))))
  b = all_terms(*args(perm))
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)


def test_entropy_bounds_and_smoothness_equals_kl_plus_entropy():
  k = 6
  assert abs(float(adr.entropy(jnp.zeros((1, k)))[0]) - np.log(k)) < 1e-6
  assert float(adr.entropy(jnp.asarray([[50.0, 0, 0, 0, 0, 0]]))[0]) < 1e-10
  zl, zal, _ = _latents(5, k=k)
  ent = np.asarray(adr.entropy(jnp.asarray(zal)))
  assert np.all(ent >= 0) and np.all(ent <= np.log(k) + 1e-6)
  with h.x64():
    smt = np.asarray(adr.smoothness(jnp.asarray(zl), jnp.asarray(zal)))
    kl = ref.kl_div_none(ref.log_softmax(zal), ref.softmax(zl)).sum(1)
    ent_nat = -(ref.softmax(zl) * ref.log_softmax(zl)).sum(1)
    np.testing.assert_allclose(smt - ent_nat, kl, rtol=1e-10)
    assert np.all(kl >= 0)
    np.testing.assert_allclose(np.asarray(adr.smoothness(jnp.asarray(zl), jnp.asarray(zl))) - ent_nat, 0,
                               atol=1e-12)
    g = jax.grad(lambda l: jnp.sum(adr.smoothness(l, jnp.asarray(zal))))(jnp.asarray(zl))
    assert float(jnp.max(jnp.abs(g))) == 0.0


@pytest.mark.parametrize("distance,expected", [("l1", lambda d: np.abs(d).sum(1)),
                                               ("l2", lambda d: np.sqrt((d ** 2).sum(1))),
                                               ("linf", lambda d: np.abs(d).max(1))])
def test_thesis_norms(distance, expected):
  z, za, _ = _latents(6)
  got = adr.local_compactness(jnp.asarray(z), jnp.asarray(za), distance)
  np.testing.assert_allclose(np.asarray(got), expected(z - za), rtol=1e-5)
  g = jax.grad(lambda a: jnp.sum(adr.local_compactness(jnp.asarray(z), a, distance)))(jnp.asarray(z))
  assert np.all(np.isfinite(np.asarray(g)))  # l2 at equal latents: no NaN


def test_adr_loss_total_matches_its_terms():
  """The identity context feeds logits as both the latents and the logits."""
  z_nat, y = h.random_logits(7, b=10, k=5)
  z_adv = z_nat + np.random.default_rng(1).standard_normal(z_nat.shape)
  method = adr.make_adr_adv(conf=0.5, gbsmt=0.25)
  with h.x64():
    value, m = h.call_loss(method, z_nat, z_adv, y)
  m = {k: float(v) for k, v in m.items()}
  expected = (m["loss_natural"] + m["loss_robust"] + m["loss_lc"] + m["loss_gb"] + m["loss_smt"]
              + 0.5 * m["loss_conf"] + 0.25 * m["loss_gbsmt"])
  np.testing.assert_allclose(float(value), float(expected), rtol=1e-10)
  np.testing.assert_allclose(float(m["loss_lc"]), np.abs(z_nat - z_adv).mean(), rtol=1e-10)


def test_zero_weights_reduce_to_pgd_at_and_trades():
  z_nat, y = h.random_logits(8, b=10, k=5)
  z_adv = z_nat + np.random.default_rng(2).standard_normal(z_nat.shape)
  zero = dict(lc=0.0, gb=0.0, smt=0.0, conf=0.0, gbsmt=0.0)
  with h.x64():
    a, _ = h.call_loss(adr.make_adr_adv(natural_weight=0.5, adv_weight=0.5, **zero), z_nat, z_adv, y)
    b, _ = h.call_loss(make_pgd_at(mix=0.5), z_nat, z_adv, y)
    c, _ = h.call_loss(adr.make_adr_trades(beta=6.0, **zero), z_nat, z_adv, y)
    d, _ = h.call_loss(make_trades(beta=6.0), z_nat, z_adv, y)
    e, _ = h.call_loss(adr.make_adr_adv(natural_weight=0.0, **zero), z_nat, z_adv, y)
    f, _ = h.call_loss(make_pgd_at(mix=1.0), z_nat, z_adv, y)
  np.testing.assert_allclose(float(a), float(b), rtol=1e-12)
  np.testing.assert_allclose(float(c), float(d), rtol=1e-12)
  np.testing.assert_allclose(float(e), float(f), rtol=1e-12)


def test_masked_examples_change_nothing():
  """Padded rows (mask 0) are out of every mean and every pair."""
  z_nat, y = h.random_logits(9, b=8, k=5)
  z_adv = z_nat + np.random.default_rng(3).standard_normal(z_nat.shape)
  method = adr.make_adr_adv(conf=1.0, gbsmt=1.0)
  pad = lambda a: np.concatenate([a, 7.0 * np.ones_like(a[:3])])
  with h.x64():
    a, ma = h.call_loss(method, z_nat, z_adv, y)
    b, mb = h.call_loss(method, pad(z_nat), pad(z_adv), np.concatenate([y, [1, 2, 3]]),
                        mask=np.r_[np.ones(8), np.zeros(3)])
  for k in ("loss", "loss_lc", "loss_gb", "loss_smt", "loss_conf", "loss_gbsmt"):
    np.testing.assert_allclose(float(mb[k]), float(ma[k]), rtol=1e-10, err_msg=k)


def test_bad_hyperparameters_are_refused():
  with pytest.raises(ValueError, match="pairs"):
    adr.make_adr_adv(pairs="clean_adv")
  with pytest.raises(ValueError, match="lc"):
    adr.make_adr_trades(lc=-1.0)
  with pytest.raises(ValueError, match="alpha"):
    adr.make_adr_adv(alpha=0.0)
  with pytest.raises(ValueError, match="attack_bn"):
    adr.make_adr_adv(attack_bn="training")


@pytest.mark.parametrize("name", ["adr_adv", "adr_trades"])
def test_adr_trains_and_compiles_once(name):
  method = get_method(name, eps=0.1, step_size=0.05, steps=2)
  _, state, metrics, step_fn = h.run_training(method, n_steps=12)
  assert metrics[-1]["loss"] < metrics[0]["loss"]
  assert all(np.isfinite(m["loss_gb"]) for m in metrics)
  assert step_fn._cache_size() == 1


def test_attack_in_train_bn_mode_runs():
  method = get_method("adr_adv", eps=0.1, step_size=0.05, steps=2, attack_bn="train")
  _, _, metrics, _ = h.run_training(method, n_steps=3)
  assert np.isfinite(metrics[-1]["loss"])
