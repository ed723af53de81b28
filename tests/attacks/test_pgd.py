"""PGD / BIM: validity, the update rule, starts, restarts, early stop, plus batching, vmap, jit and validation."""

import os
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from attack_testkit import (assert_valid, digits_model, images, jit_attack, l2, labels,  # noqa: E402
                            linear_apply, linear_params, linf, mlp_apply, mlp_params, per_example_ce)

from jaxrobust.attacks import registry  # noqa: E402
from jaxrobust.attacks.model_calls import random_init  # noqa: E402
from jaxrobust.attacks.per_example import example_keys, fold_keys  # noqa: E402
from jaxrobust.attacks.pgd import kurakin_steps, pgd  # noqa: E402

B, K = 8, 5
X = images(0, B)
Y = labels(0, B, K)
LIN = linear_params(0, 12, K, scale=2.0)
MLP = mlp_params(1, 12, 16, K)
KEY = jax.random.key(0)

# The few compiled programs the tests share (compilation dominates the run time on CPU).
MLP_LINF = jit_attack(pgd, mlp_apply, steps=5, norm="linf")
MLP_L2 = jit_attack(pgd, mlp_apply, steps=5, norm="l2")
DIGITS10 = jit_attack(pgd, linear_apply, steps=10, norm="linf")


def _digits_fooled(x_adv, params, y):
  return np.asarray(jnp.argmax(linear_apply(params, x_adv), -1) != y)


# ---------------------------------------------------------------- validity, determinism, eps = 0

@pytest.mark.parametrize("norm,eps_list", [("linf", [0.0, 0.03, 0.3]), ("l2", [0.0, 0.1, 2.0])])
def test_in_ball_in_box_and_eps_zero(norm, eps_list):
  f = MLP_LINF if norm == "linf" else MLP_L2
  for eps in eps_list:
    x_adv = f(MLP, X, Y, KEY, eps=eps, step_size=eps / 2)
    assert_valid(x_adv, X, eps, norm)  # X has pixels exactly at 0 and 1
    if eps == 0:
      np.testing.assert_array_equal(x_adv, X)


def test_shape_dtype_and_inputs_unchanged_and_determinism():
  x_copy, w_copy = np.array(X), np.array(MLP["w1"])
  f = MLP_LINF
  a = f(MLP, X, Y, KEY, eps=0.1, step_size=0.03)
  b = f(MLP, X, Y, KEY, eps=0.1, step_size=0.03)
  c = f(MLP, X, Y, jax.random.key(1), eps=0.1, step_size=0.03)
  chex.assert_shape(a, X.shape)
  chex.assert_trees_all_equal_dtypes(a, X)
  np.testing.assert_array_equal(X, x_copy)
  np.testing.assert_array_equal(MLP["w1"], w_copy)
  np.testing.assert_array_equal(a, b)  # G4: same key, same output
  assert not np.array_equal(a, c)


def test_raw_and_typed_keys_agree_and_bad_key_batch():
  keys_typed = example_keys(jax.random.key(3), B)
  keys_raw = example_keys(jax.random.PRNGKey(3), B)
  np.testing.assert_array_equal(jax.random.key_data(keys_typed), keys_raw)
  np.testing.assert_array_equal(jax.random.key_data(example_keys(keys_typed, B)),
                                jax.random.key_data(keys_typed))  # a key batch is used as is
  with pytest.raises(ValueError, match="per-example keys"):
    example_keys(keys_typed[:3], B)


# ---------------------------------------------------------------- batch independence, per-example eps, scalar == array

def test_batch_equals_each_example_alone():
  """Per-example keys: example i starts from keys[i] whatever batch it is in (random start on)."""
  f = MLP_LINF
  keys = example_keys(KEY, B)  # what a single key means: example i uses fold_in(key, i)
  batch = f(MLP, X, Y, KEY, eps=0.1, step_size=0.03)
  for i in range(B):
    alone = f(MLP, X[i:i + 1], Y[i:i + 1], keys[i:i + 1], eps=0.1, step_size=0.03)
    np.testing.assert_allclose(alone[0], batch[i], atol=1e-6)


def test_scalar_eps_equals_filled_array_and_rows_use_their_own_eps():
  f = MLP_LINF
  scalar = f(MLP, X, Y, KEY, eps=0.1, step_size=0.03)
  filled = f(MLP, X, Y, KEY, eps=jnp.full((B,), 0.1), step_size=jnp.full((B,), 0.03))
  np.testing.assert_allclose(filled, scalar, atol=1e-7)
  eps = jnp.linspace(0.0, 0.35, B)
  per_row = f(MLP, X, Y, KEY, eps=eps, step_size=eps / 3)
  assert_valid(per_row, X, eps)
  np.testing.assert_array_equal(per_row[0], X[0])  # eps_0 = 0
  for i in range(B):
    alone = f(MLP, X, Y, KEY, eps=eps[i], step_size=eps[i] / 3)
    np.testing.assert_allclose(per_row[i], alone[i], atol=1e-6)


def test_vmap_over_eps_equals_separate_calls_and_accuracy_monotone():
  """On the digits model: vmap over eps == loop; robust accuracy non-increasing, 0 at a huge eps."""
  params, x, y = digits_model()
  f = DIGITS10
  eps_grid = jnp.array([0.0, 0.02, 0.05, 0.1, 0.2, 1.0])
  many = jax.vmap(lambda e: f(params, x, y, KEY, eps=e, step_size=e / 4))(eps_grid)
  accs = []
  for j, e in enumerate(eps_grid):
    one = f(params, x, y, KEY, eps=e, step_size=e / 4)
    np.testing.assert_allclose(many[j], one, atol=1e-5)
    accs.append(1 - _digits_fooled(one, params, y).mean())
  assert all(a >= b for a, b in zip(accs, accs[1:])), accs
  assert accs[0] > 0.9 and accs[-1] == 0.0, accs


# ---------------------------------------------------------------- update rule, starts (binary logistic)

def test_pgd_without_start_is_bim_reference_loop():
  eps, alpha, steps = 0.1, 0.03, 4
  xa = X
  for _ in range(steps):  # x_{t+1} = clip01(clip(x_t + alpha sign(g), x - eps, x + eps))
    g = jax.grad(lambda v: jnp.sum(per_example_ce(mlp_apply, MLP, v, Y)))(xa)
    xa = jnp.clip(jnp.clip(xa + alpha * jnp.sign(g), X - eps, X + eps), 0.0, 1.0)
  ours = jit_attack(pgd, mlp_apply, steps=steps, init="none")(MLP, X, Y, None, eps=eps, step_size=alpha)
  np.testing.assert_allclose(ours, xa, atol=1e-6)


def logreg_apply(p, x):
  """Binary logistic regression as 2-class logits [0, w.x + b]."""
  return jnp.stack([jnp.zeros(x.shape[0]), x.reshape(x.shape[0], -1) @ p["w"] + p["b"]], axis=1)


LOGREG5 = jit_attack(pgd, logreg_apply, steps=5)


def test_binary_logistic_bim_is_fgsm_and_pgd_reaches_the_corner():
  r = np.random.RandomState(0)
  p = {"w": jnp.asarray(r.randn(12), jnp.float32), "b": jnp.float32(0.1)}
  x = jnp.asarray(r.uniform(0.3, 0.7, (64, 2, 2, 3)), jnp.float32)  # box inactive
  y = jnp.asarray(r.randint(0, 2, 64), jnp.int32)
  eps = 0.05
  # CE decreases in z for y = 1 and increases for y = 0: the worst case moves against (2y - 1) w
  corner = x - eps * jnp.sign(p["w"]).reshape(1, 2, 2, 3) * (2 * y - 1).reshape(-1, 1, 1, 1)
  # the corner is FGSM(eps) (sign(grad) is constant); FGSM == one PGD step is tested in test_fgsm
  bim = jit_attack(pgd, logreg_apply, steps=5, init="none")(p, x, y, None, eps=eps, step_size=eps / 5)
  rand = LOGREG5(p, x, y, KEY, eps=eps, step_size=eps / 2)  # k alpha >= 2 eps
  for a in (bim, rand):
    np.testing.assert_allclose(a, corner, atol=1e-6)


def test_binary_logistic_robust_accuracy_non_increasing_in_eps():
  r = np.random.RandomState(1)
  w = jnp.asarray(r.randn(12) * 3, jnp.float32)
  x = jnp.asarray(r.uniform(0, 1, (64, 2, 2, 3)), jnp.float32)
  z = x.reshape(64, -1) @ w
  y = (z > jnp.median(z)).astype(jnp.int32)
  p = {"w": w, "b": -jnp.median(z)}
  accs = []
  for eps in [0.0, 0.01, 0.03, 0.06, 0.1, 0.2]:
    xa = LOGREG5(p, x, y, KEY, eps=eps, step_size=eps / 2)
    accs.append(float(jnp.mean(jnp.argmax(logreg_apply(p, xa), -1) == y)))
  assert all(a >= b for a, b in zip(accs, accs[1:])), accs
  assert accs[0] == 1.0 and accs[-1] < 0.5


# ---------------------------------------------------------------- P3, P4 (starts, L2)

def test_random_starts_in_ball_and_l2_radius_uniform():
  from scipy import stats
  n = 2000
  x = jnp.full((n, 2, 2, 3), 0.5, jnp.float32)
  x_edge = X[:1].repeat(n, 0)  # has pixels at 0 and 1
  both = jax.jit(lambda k: (random_init(example_keys(k, n), x, 0.1, "l2", "uniform"),
                            random_init(example_keys(k, n), x_edge, 0.2, "linf", "uniform")))
  x0, x0_edge = both(KEY)
  r = l2(x0, x) / 0.1
  assert r.max() <= 1 + 1e-6
  assert stats.kstest(r, "uniform").pvalue > 1e-3  # uniform radius, not uniform in the ball
  assert_valid(x0_edge, x_edge, 0.2)
  assert np.abs(np.asarray(x0_edge) - np.asarray(X[:1])).max() > 0.19  # it fills the ball
  with pytest.raises(ValueError, match="unknown PGD init"):
    random_init(None, x, 0.1, "linf", "gaussian")


def test_l2_step_has_norm_alpha_and_iterates_stay_in_ball():
  x = jnp.full((B, 2, 2, 3), 0.5, jnp.float32)
  f = jit_attack(pgd, mlp_apply, steps=1, norm="l2", init="none")
  x1 = f(MLP, x, Y, None, eps=1.0, step_size=0.2)
  np.testing.assert_allclose(l2(x1, x), 0.2, rtol=1e-5)  # box and ball inactive: ||step|| = alpha
  for eps in (0.3, 1.0):
    xa = MLP_L2(MLP, X, Y, KEY, eps=eps, step_size=0.25)
    assert_valid(xa, X, eps, "l2")


# ---------------------------------------------------------------- restarts, early stop

def test_restarts_keep_the_per_example_max_loss_restart():
  eps, R = 0.3, 4
  keys = example_keys(KEY, B)
  best = jit_attack(pgd, mlp_apply, steps=5, norm="linf", restarts=R)(MLP, X, Y, KEY, eps=eps, step_size=0.1)
  single = MLP_LINF
  losses = np.stack([per_example_ce(mlp_apply, MLP, single(MLP, X, Y, fold_keys(keys, r), eps=eps, step_size=0.1), Y)
                     for r in range(R)])
  got = np.asarray(per_example_ce(mlp_apply, MLP, best, Y))
  assert np.all(got >= losses.max(0) - 1e-6)
  np.testing.assert_allclose(got, losses.max(0), rtol=1e-6)
  assert np.any(losses.std(0) > 1e-3)  # the restarts really differ
  assert_valid(best, X, eps)


def test_restart_select_fooled_never_fools_fewer():
  kw = dict(eps=0.15, step_size=0.05)
  x, y = images(7, B, extremes=False), labels(7, B, K)
  by_loss = jit_attack(pgd, mlp_apply, steps=5, norm="linf", restarts=4)(MLP, x, y, KEY, **kw)
  by_fool = jit_attack(pgd, mlp_apply, steps=5, norm="linf", restarts=4, restart_select="fooled")(MLP, x, y, KEY, **kw)
  fooled = lambda a: np.asarray(jnp.argmax(mlp_apply(MLP, a), -1) != y)
  assert np.all(fooled(by_fool) >= fooled(by_loss))
  assert_valid(by_fool, x, 0.15)


def test_early_stop_keeps_fooled_examples_fooled():
  params, x, y = digits_model()
  kw = dict(eps=0.08, step_size=0.06)  # large steps: plain PGD can step back out of the fooled region
  es = _digits_fooled(jit_attack(pgd, linear_apply, steps=10, early_stop=True)(params, x, y, KEY, **kw), params, y)
  plain = _digits_fooled(DIGITS10(params, x, y, KEY, **kw), params, y)
  # examples never fooled follow the same trajectory; those fooled at some step are frozen there
  assert np.all(es >= plain) and es.sum() > 0


# ---------------------------------------------------------------- targeted

def test_targeted_step_decreases_target_ce_on_linear_model():
  x = jnp.asarray(np.random.RandomState(2).uniform(0.2, 0.8, (B, 2, 2, 3)), jnp.float32)
  target = (Y + 1) % K
  xa = jit_attack(pgd, linear_apply, steps=1, init="none", targeted=True)(LIN, x, target, None, eps=1e-3,
                                                                          step_size=1e-3)
  before = per_example_ce(linear_apply, LIN, x, target)
  after = per_example_ce(linear_apply, LIN, xa, target)
  assert np.all(np.asarray(after) < np.asarray(before))


def test_targeted_hits_the_target_more_often_than_untargeted():
  params, x, y = digits_model()
  t = (y + 1) % 10
  kw = dict(eps=0.2, step_size=0.05)
  tgt = jit_attack(pgd, linear_apply, steps=10, norm="linf", targeted=True)(params, x, t, KEY, **kw)
  unt = DIGITS10(params, x, y, KEY, **kw)
  hit_t = float(jnp.mean(jnp.argmax(linear_apply(params, tgt), -1) == t))
  hit_u = float(jnp.mean(jnp.argmax(linear_apply(params, unt), -1) == t))
  assert hit_t > hit_u + 0.2 and hit_t > 0.4, (hit_t, hit_u)


# ---------------------------------------------------------------- losses through PGD

def test_kl_attack_from_the_normal_start():
  """TRADES attack: grad KL(p_x || p_x') is 0 at x' = x (see test_losses), hence the 0.001 N(0, I) start."""
  move = jit_attack(pgd, mlp_apply, steps=3, loss="kl", init="normal")(MLP, X, Y, KEY, eps=0.1, step_size=0.03)
  assert linf(move, X).min() > 0.05
  assert_valid(move, X, 0.1)
  from jaxrobust.losses import kl_divergence
  assert np.all(np.asarray(kl_divergence(mlp_apply(MLP, move), None, mlp_apply(MLP, X))) > 1e-3)


# ---------------------------------------------------------------- jit, registry, validation

def test_compiles_once_when_only_data_changes():
  traces = []

  def logits_fn(v):
    traces.append(1)  # runs only while tracing
    return linear_apply(LIN, v)

  f = jax.jit(lambda x, y, k, e: pgd(logits_fn, x, y, k, eps=e, step_size=e / 4, steps=3, init="none"))
  f(X, Y, KEY, 0.1).block_until_ready()
  n = len(traces)
  assert n > 0
  for s in range(3):
    f(images(s + 5, B), labels(s + 5, B, K), jax.random.key(s), 0.05 * s).block_until_ready()
  assert len(traces) == n


def test_registry_names_and_kurakin_rule():
  names = registry.attack_names()
  for n in ("pgd", "pgd_linf", "pgd_l2", "bim"):
    assert n in names
  assert kurakin_steps(8 / 255) == 10 and kurakin_steps(4 / 255) == 5
  bim = registry.get_attack("BIM", eps=0.1, step_size=0.03, steps=4)(lambda v: mlp_apply(MLP, v), X, Y, KEY)
  ref = jit_attack(pgd, mlp_apply, steps=4, init="none")(MLP, X, Y, None, eps=0.1, step_size=0.03)
  np.testing.assert_allclose(bim, ref, atol=1e-6)


def test_bad_inputs_raise():
  f = lambda v: linear_apply(LIN, v)
  kw = dict(eps=0.1, step_size=0.01, steps=1)
  with pytest.raises(ValueError, match="eps"):
    pgd(f, X, Y, KEY, eps=-0.1, step_size=0.01, steps=1)
  with pytest.raises(ValueError, match="eps"):
    pgd(f, X, Y, KEY, eps=jnp.ones(3), step_size=0.01, steps=1)
  with pytest.raises(TypeError, match="floating"):
    pgd(f, (X * 255).astype(jnp.uint8), Y, KEY, **kw)
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    pgd(f, X * 255, Y, KEY, **kw)
  with pytest.raises(ValueError, match="logits"):
    pgd(lambda v: linear_apply(LIN, v)[..., None], X, Y, KEY, **kw)
  with pytest.raises(ValueError, match="must lie in"):
    pgd(f, X, Y.at[0].set(K), KEY, **kw)
  with pytest.raises(TypeError, match="integer"):
    pgd(f, X, Y.astype(jnp.float32), KEY, **kw)
  with pytest.raises(ValueError, match="3 classes"):
    pgd(lambda v: linear_apply(LIN, v)[:, :2], X, Y % 2, KEY, loss="dlr", **kw)
  with pytest.raises(ValueError, match="unknown attack loss"):
    pgd(f, X, Y, KEY, loss="hinge", **kw)
  with pytest.raises(ValueError, match="unknown norm"):
    pgd(f, X, Y, KEY, norm="l3", **kw)
  with pytest.raises(ValueError, match="unknown PGD init"):
    pgd(f, X, Y, KEY, init="zeros", **kw)
  with pytest.raises(ValueError, match="PRNG key"):
    pgd(f, X, Y, None, **kw)


# ---------------------------------------------------------------- torchattacks cross-check

def _torch_setup():
  torch = pytest.importorskip("torch", reason="torch not installed")
  torchattacks = pytest.importorskip("torchattacks", reason="torchattacks not installed")
  from attack_testkit import to_torch, torch_linear
  params, x, y = digits_model()
  return torch, torchattacks, torch_linear(params), params, x, y, to_torch


@pytest.mark.torch
def test_bim_and_pgd_l2_match_torchattacks():
  torch, ta, model, params, x, y, to_torch = _torch_setup()
  xt, yt = to_torch(x), to_torch(y).long()
  ref = ta.BIM(model, eps=0.1, alpha=0.02, steps=10)(xt, yt).numpy()
  ours = jit_attack(pgd, linear_apply, steps=10, init="none")(params, x, y, None, eps=0.1, step_size=0.02)
  np.testing.assert_allclose(ours, ref, atol=1e-5)
  ref = ta.PGDL2(model, eps=1.0, alpha=0.25, steps=10, random_start=False)(xt, yt).numpy()
  ours = jit_attack(pgd, linear_apply, steps=10, init="none", norm="l2")(params, x, y, None, eps=1.0, step_size=0.25)
  np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.torch
def test_pgd_robust_accuracy_close_to_torchattacks():
  torch, ta, model, params, x, y, to_torch = _torch_setup()
  torch.manual_seed(0)
  ref = ta.PGD(model, eps=0.05, alpha=0.0125, steps=10, random_start=True)(to_torch(x), to_torch(y).long())
  acc_ref = float((model(ref).argmax(1).numpy() == np.asarray(y)).mean())
  ours = DIGITS10(params, x, y, KEY, eps=0.05, step_size=0.0125)
  acc = 1 - _digits_fooled(ours, params, y).mean()
  assert abs(acc - acc_ref) <= 0.03, (acc, acc_ref)
