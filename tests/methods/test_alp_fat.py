"""ALP (logit pairing) and FAT (early-stopped PGD-K-tau)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.methods.alp import make_alp
from jaxrobust.methods.fat import dynamic_tau, early_stopped_pgd, make_fat
from jaxrobust.methods.gairat import ga_pgd
from jaxrobust.methods.pgd_at import make_pgd_at

try:
  from tests.methods import method_harness as h
  from tests.methods import numpy_reference as ref
except ImportError:  # run from inside tests/methods
  import method_harness as h
  import numpy_reference as ref


# ------------------------------------------------------------------------------------------ ALP

@pytest.mark.parametrize("mix,lam,pairing", [(0.5, 0.5, "sum"), (0.3, 2.0, "mean"), (1.0, 0.0, "sum")])
def test_alp_loss_matches_reference(mix, lam, pairing):
  z_nat, y = h.random_logits(0)
  z_adv = z_nat + np.random.default_rng(1).standard_normal(z_nat.shape)
  with h.x64():
    value, metrics = h.call_loss(make_alp(mix=mix, lam=lam, pairing=pairing), z_nat, z_adv, y)
  np.testing.assert_allclose(float(value), ref.alp_loss(z_nat, z_adv, y, mix, lam, pairing), rtol=1e-12)


def test_alp_limits():
  """lam = 0 is PGD-AT with the same mix; pairing vanishes at x' = x; single-logit heads work."""
  z_nat, y = h.random_logits(2)
  z_adv = z_nat + np.random.default_rng(3).standard_normal(z_nat.shape)
  with h.x64():
    a, _ = h.call_loss(make_alp(mix=0.5, lam=0.0), z_nat, z_adv, y)
    b, _ = h.call_loss(make_pgd_at(mix=0.5), z_nat, z_adv, y)
    np.testing.assert_allclose(float(a), float(b), rtol=1e-13)
    _, metrics = h.call_loss(make_alp(), z_nat, z_nat, y)
    assert float(metrics["loss_pairing"]) == 0.0
    zs = np.random.default_rng(4).standard_normal((8, 1))
    value, _ = h.call_loss(make_alp(lam=1.0), zs, zs + 1.0, np.arange(8) % 2)
    assert np.isfinite(float(value))


@pytest.mark.parametrize("kw", [dict(mix=1.5), dict(lam=-0.1), dict(pairing="l1"), dict(eps=-1.0)])
def test_alp_rejects_bad_hyperparameters(kw):
  with pytest.raises(ValueError):
    make_alp(**kw)


# ------------------------------------------------------------------------------------------ FAT

def _linear_problem(seed, b=32, d=16, k=4):
  rng = np.random.default_rng(seed)
  x = rng.uniform(0, 1, (b, d))
  w, bias = rng.standard_normal((d, k)), 0.1 * rng.standard_normal(k)
  y = np.argmax(x @ w + bias, axis=1)
  y[:4] = (y[:4] + 1) % k                      # some start misclassified
  return x, y, w, bias


@pytest.mark.parametrize("tau", [0, 1, 3])
def test_early_stopped_pgd_matches_reference(tau):
  x, y, w, bias = _linear_problem(5)
  eps, step, steps = 0.15, 0.03, 8
  x0 = np.clip(x + np.random.default_rng(6).uniform(-eps, eps, x.shape), 0, 1)
  with h.x64():
    logits_fn = lambda xa: xa @ jnp.asarray(w) + jnp.asarray(bias)
    run = h.jit(lambda x, y, x0: early_stopped_pgd(logits_fn, x, y, x0, jax.random.key(0), eps=eps,
                                                   step_size=step, steps=steps, tau=tau, omega=0.0))
    x_adv, n_updates = run(jnp.asarray(x), jnp.asarray(y), jnp.asarray(x0))
  x_ref = ref.earlystop_linear(x, y, x0, w, bias, eps, step, steps, tau)
  np.testing.assert_allclose(np.asarray(x_adv), x_ref, atol=1e-12)
  n = np.asarray(n_updates)
  assert n.min() < steps and n.max() == steps   # both early-stopped and full-length examples
  if tau == 0:  # stopped examples sit at their first misclassified iterate
    stopped = n < steps
    np.testing.assert_array_equal(np.argmax(x_ref[stopped] @ w + bias, 1) != y[stopped], True)


def test_large_tau_is_plain_pgd():
  x, y, w, bias = _linear_problem(7)
  x0 = np.clip(x + np.random.default_rng(8).uniform(-0.1, 0.1, x.shape), 0, 1)
  with h.x64():
    logits_fn = lambda xa: xa @ jnp.asarray(w) + jnp.asarray(bias)
    a, _ = h.jit(lambda x, y, x0: early_stopped_pgd(logits_fn, x, y, x0, jax.random.key(0), eps=0.1,
                                                    step_size=0.02, steps=6, tau=6, omega=0.0))(
        jnp.asarray(x), jnp.asarray(y), jnp.asarray(x0))
    b, _, _ = h.jit(lambda x, y, x0: ga_pgd(logits_fn, x, y, x0, eps=0.1, step_size=0.02, steps=6))(
        jnp.asarray(x), jnp.asarray(y), jnp.asarray(x0))
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-14)


def test_dynamic_tau_schedule():
  np.testing.assert_array_equal(dynamic_tau(jnp.asarray([1.0, 50.0, 51.0, 90.0, 91.0, 120.0])),
                                [0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize("kw", [dict(tau=-1), dict(omega=-0.1), dict(steps=-1), dict(init="zeros")])
def test_fat_rejects_bad_hyperparameters(kw):
  with pytest.raises(ValueError):
    make_fat(**kw)


def test_train_step_alp():
  h.check_training(make_alp(steps=2))


def test_train_step_fat_single_logit_head():
  """Also the one end-to-end run of a single-logit (binary: digit >= 5) head."""
  _, _, metrics = h.check_training(make_fat(steps=3), head="single_logit")
  assert all(0 <= float(m["pgd_steps"]) <= 3 for m in metrics)
