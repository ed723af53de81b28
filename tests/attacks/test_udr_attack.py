"""UDR's soft-ball attack (Bui et al. 2022): its limits (lam = 1 is PGD, lam = 0 no projection), the excess
bound, validity and determinism on tiny deterministic models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.attacks.pgd import pgd
from jaxrobust.attacks.udr import mean_abs_perturbation, smoothed_cost, soft_ball_pull, udr_pgd
from jaxrobust.losses import AttackLoss, kl_divergence

try:
  from tests.attacks import attack_testkit as kit
except ImportError:  # run from inside tests/attacks
  import attack_testkit as kit

EPS, ALPHA = 0.1, 0.03


def _setup(model="mlp", b=8, seed=0):
  x = kit.images(seed, b=b)
  y = kit.labels(seed, b=b)
  if model == "linear":
    params = kit.linear_params(seed)
    return (lambda z: kit.linear_apply(params, z)), x, y
  params = kit.mlp_params(seed)
  return (lambda z: kit.mlp_apply(params, z)), x, y


def _excess(x_adv, x, eps):
  return np.maximum(np.abs(np.asarray(x_adv) - np.asarray(x)) - eps, 0.0)


@pytest.mark.parametrize("model", ["linear", "mlp"])
@pytest.mark.parametrize("steps", [1, 5])
def test_u1_lambda_one_tau_alpha_is_pgd(model, steps):
  f, x, y = _setup(model)
  key = jax.random.key(3)
  ours = udr_pgd(f, x, y, key, eps=EPS, step_size=ALPHA, steps=steps, lam=1.0)
  ref = pgd(f, x, y, key, eps=EPS, step_size=ALPHA, steps=steps, init="uniform")
  np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


def test_u2_lambda_zero_does_not_project():
  f, x, y = _setup("linear")
  steps = 8
  out = np.asarray(udr_pgd(f, x, y, jax.random.key(0), eps=EPS, step_size=ALPHA, steps=steps, lam=0.0))
  d = np.abs(out - np.asarray(x))
  assert d.max() <= min(EPS + steps * ALPHA, 1.0) + 1e-6
  assert d.max() > EPS + 0.5 * ALPHA          # it really left the ball
  assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("lam", [0.25, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("steps", [1, 3, 10])
def test_u3_excess_bound(lam, steps):
  f, x, y = _setup("linear", b=16)
  out = udr_pgd(f, x, y, jax.random.key(1), eps=EPS, step_size=ALPHA, steps=steps, lam=lam)
  bound = (1 - lam) * ALPHA / lam * (1 - (1 - lam) ** steps)
  assert _excess(out, x, EPS).max() <= bound + 1e-6


def test_u3_single_pull_closed_form_and_monotone_in_lambda():
  u = jnp.asarray([0.15, -0.2, 0.3, -0.11], jnp.float32)
  prev = None
  for lam in np.linspace(0.0, 1.0, 11):
    p = np.asarray(soft_ball_pull(u, EPS, lam, ALPHA, ALPHA))
    np.testing.assert_allclose(np.abs(p), (1 - lam) * np.abs(np.asarray(u)) + lam * EPS, rtol=1e-6)
    np.testing.assert_array_equal(np.sign(p), np.sign(np.asarray(u)))
    if prev is not None:
      assert np.all(np.abs(p) <= prev + 1e-7)
    prev = np.abs(p)
  # tau scales the strength: c = lam alpha / tau.
  np.testing.assert_allclose(soft_ball_pull(u, EPS, 1.0, ALPHA, 2 * ALPHA), soft_ball_pull(u, EPS, 0.5, ALPHA, ALPHA))


def test_u4_no_pull_inside_the_ball():
  u = jnp.asarray(np.linspace(-EPS, EPS, 41), jnp.float32)
  for lam in (0.3, 1.0, 2.0):
    np.testing.assert_array_equal(soft_ball_pull(u, EPS, lam, ALPHA, ALPHA), u)


def test_pull_and_distance_reject_bad_input():
  u = jnp.zeros((2, 3))
  with pytest.raises(ValueError, match="lam"):
    soft_ball_pull(u, EPS, -0.5, ALPHA, ALPHA)
  with pytest.raises(ValueError, match="tau"):
    soft_ball_pull(u, EPS, 0.5, ALPHA, 0.0)
  with pytest.raises(ValueError, match="same shape"):
    mean_abs_perturbation(jnp.zeros((4, 3)), jnp.zeros((1, 3)))


def test_u6_box_and_distance_statistic():
  f, x, y = _setup("mlp", b=8)
  for lam in (0.0, 0.4, 1.0):
    out = udr_pgd(f, x, y, jax.random.key(2), eps=0.3, step_size=0.2, steps=4, lam=lam)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    d = np.asarray(mean_abs_perturbation(out, x))
    linf = np.abs(np.asarray(out) - np.asarray(x)).reshape(8, -1).max(1)
    assert np.all(d <= linf + 1e-7) and d.shape == (8,)


def test_u7_smoothed_cost():
  eps, tau = 0.5, 0.1
  c = jnp.asarray([0.0, 0.2, 0.5 - 1e-6, 0.5, 0.7, 1.5])
  v = np.asarray(smoothed_cost(c, eps, tau))
  np.testing.assert_allclose(v[:3], np.asarray(c[:3]))                    # = c_X inside the ball
  np.testing.assert_allclose(v[3], eps, atol=1e-5)                         # continuous at c_X = eps
  np.testing.assert_allclose((v[5] - v[4]) / (1.5 - 0.7), 1 / tau, rtol=1e-5)  # slope 1/tau outside
  outside = [float(smoothed_cost(jnp.asarray(0.6), eps, t)) for t in (1.0, 0.1, 1e-3, 1e-6)]
  assert outside == sorted(outside) and outside[-1] > 1e4                  # -> the hard cost as tau -> 0
  assert float(smoothed_cost(jnp.asarray(0.3), eps, 1e-6)) == pytest.approx(0.3)
  with pytest.raises(ValueError, match="tau"):
    smoothed_cost(c, eps, 0.0)


def test_u8_positive_loss_scale_does_not_change_the_craft():
  f, x, y = _setup("mlp")

  def kl_fn(logits, y, ref):
    return kl_divergence(logits, y, ref)
  kl = AttackLoss(kl_fn, needs_reference=True)

  def kl6_fn(logits, y, ref):
    return 6.0 * kl_divergence(logits, y, ref) * (1.0 + jax.nn.softmax(ref)[:, 0])
  kl6 = AttackLoss(kl6_fn, needs_reference=True)
  a = udr_pgd(f, x, y, jax.random.key(4), eps=EPS, step_size=ALPHA, steps=5, lam=0.5, loss=kl)
  b = udr_pgd(f, x, y, jax.random.key(4), eps=EPS, step_size=ALPHA, steps=5, lam=0.5, loss=kl6)
  np.testing.assert_array_equal(a, b)


def test_g4_deterministic_and_traced_lambda_compiles_once():
  f, x, y = _setup("mlp")
  run = jax.jit(lambda lam, key: udr_pgd(f, x, y, key, eps=EPS, step_size=ALPHA, steps=3, lam=lam))
  a = run(jnp.float32(0.5), jax.random.key(7))
  np.testing.assert_array_equal(a, run(jnp.float32(0.5), jax.random.key(7)))
  b = run(jnp.float32(0.9), jax.random.key(7))
  assert not np.array_equal(a, b)
  assert run._cache_size() == 1
  assert a.dtype == x.dtype and a.shape == x.shape


def test_eps_zero_and_lambda_one_returns_x():
  f, x, y = _setup("linear")
  np.testing.assert_array_equal(udr_pgd(f, x, y, jax.random.key(0), eps=0.0, step_size=ALPHA, steps=3, lam=1.0), x)


@pytest.mark.parametrize("kw,match", [(dict(lam=-0.1), "lam"), (dict(tau=0.0), "tau"), (dict(eps=-1.0), "eps"),
                                      (dict(lam=jnp.ones(3)), "scalar"), (dict(steps=-1), "steps")])
def test_rejects_bad_arguments(kw, match):
  f, x, y = _setup("linear")
  args = dict(eps=EPS, step_size=ALPHA, steps=2, lam=1.0)
  args.update(kw)
  with pytest.raises(ValueError, match=match):
    udr_pgd(f, x, y, jax.random.key(0), **args)


def test_paper_pull_l2_is_the_interpolation_inside_and_the_smoothed_cost_gradient():
  from jaxrobust.attacks.udr import paper_pull_l2
  x = kit.images(0, b=4)
  d = 0.05 * jax.random.normal(jax.random.key(1), x.shape)
  x_inter = x + d
  half_sq = 0.5 * np.sum(np.asarray(d) ** 2, axis=(1, 2, 3))
  eps = np.where(np.arange(4) < 2, half_sq * 2.0, half_sq / 2.0)  # points 0, 1 inside the ball, 2, 3 outside
  eta, lam, tau = 0.3, 0.8, 0.25
  out = np.asarray(paper_pull_l2(x_inter, x, eps, lam, eta, tau))
  # Appendix B: inside the ball the pull is (1 - eta lam) x_inter + eta lam x.
  np.testing.assert_allclose(out[:2], (1 - eta * lam) * np.asarray(x_inter)[:2] + eta * lam * np.asarray(x)[:2],
                             atol=1e-6)
  # Everywhere: x_inter - eta lam grad c_hat, with c_hat = smoothed_cost(1/2 ||x' - x||^2) by autodiff.
  grad = jax.grad(lambda z: jnp.sum(smoothed_cost(0.5 * jnp.sum(jnp.square(z - x), axis=(1, 2, 3)), eps, tau)))(
      x_inter)
  np.testing.assert_allclose(out, np.asarray(x_inter - eta * lam * grad), atol=1e-6)
  f, xs, ys = _setup()
  with pytest.raises(ValueError, match="pull must be one of"):
    udr_pgd(f, xs, ys, jax.random.key(0), eps=EPS, step_size=ALPHA, steps=1, lam=1.0, pull="l2")
  xa = udr_pgd(f, xs, ys, jax.random.key(0), eps=EPS, step_size=ALPHA, steps=1, lam=1.0, pull="paper_l2")
  assert float(xa.min()) >= 0 and float(xa.max()) <= 1


def test_wrm_ascent_reductions_and_ascent():
  from jaxrobust.attacks.udr import wrm_ascent, wrm_objective
  f, x, y = _setup()
  # steps = 0 is x itself (ERM); a huge gamma keeps x' at x (the cost dominates).
  np.testing.assert_array_equal(np.asarray(wrm_ascent(f, x, y, gamma=1.0, step_size=0.1, steps=0)), np.asarray(x))
  far = wrm_ascent(f, x, y, gamma=1e4, step_size=1e-5, steps=5)
  assert float(jnp.max(jnp.abs(far - x))) < 1e-3
  # Small steps increase the Lagrangian l - gamma ||x' - x||^2 of every point, and the result is in the box.
  xa = wrm_ascent(f, x, y, gamma=1.0, step_size=0.02, steps=10)
  before = np.asarray(wrm_objective(f, x, x, y, 1.0))
  after = np.asarray(wrm_objective(f, xa, x, y, 1.0))
  assert np.all(after >= before - 1e-6) and np.any(after > before + 1e-4)
  assert float(xa.min()) >= 0 and float(xa.max()) <= 1
  with pytest.raises(ValueError, match="gamma"):
    wrm_ascent(f, x, y, gamma=-1.0, step_size=0.1, steps=1)
