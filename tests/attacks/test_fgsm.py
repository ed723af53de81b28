"""FGSM, R+FGSM, FGSM-RS: the single-step formulas, validity, per-example eps, torchattacks FGSM."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from attack_testkit import (assert_valid, digits_model, images, jit_attack, labels, linear_apply,  # noqa: E402
                            linear_params, linf, mlp_apply, mlp_params, per_example_ce)

from jaxrobust.attacks import registry  # noqa: E402
from jaxrobust.attacks.fgsm import fgsm, fgsm_rs, rfgsm  # noqa: E402
from jaxrobust.attacks.per_example import example_keys  # noqa: E402
from jaxrobust.attacks.pgd import pgd  # noqa: E402

B, K = 8, 5
X = images(0, B)
Y = labels(0, B, K)
X_IN = jnp.asarray(np.random.RandomState(3).uniform(0.2, 0.8, (B, 2, 2, 3)), jnp.float32)  # box inactive
LIN = linear_params(0, 12, K, scale=2.0)
MLP = mlp_params(1, 12, 16, K)
KEY = jax.random.key(0)

FGSM_MLP = jit_attack(fgsm, mlp_apply)
RFGSM_MLP = jit_attack(rfgsm, mlp_apply)


def test_fgsm_equals_one_pgd_step_and_bim_t1():
  """FGSM(eps) == PGD(T=1, alpha=eps, no start) == BIM(T=1)."""
  a = FGSM_MLP(MLP, X, Y, None, eps=0.1)
  b = jit_attack(pgd, mlp_apply, steps=1, init="none")(MLP, X, Y, None, eps=0.1, step_size=0.1)
  np.testing.assert_array_equal(a, b)
  c = registry.get_attack("bim", eps=0.1, step_size=0.1, steps=1)(lambda v: mlp_apply(MLP, v), X, Y, KEY)
  np.testing.assert_array_equal(a, c)


def test_fgsm_valid_eps_zero_and_per_example_eps():
  for eps in (0.0, 0.05, 0.5):
    a = FGSM_MLP(MLP, X, Y, None, eps=eps)
    assert_valid(a, X, eps)
    if eps == 0:
      np.testing.assert_array_equal(a, X)
  eps = jnp.linspace(0.0, 0.2, B)
  a = FGSM_MLP(MLP, X_IN, Y, None, eps=eps)
  np.testing.assert_allclose(linf(a, X_IN), eps, atol=1e-6)  # every row moves exactly its own eps
  np.testing.assert_allclose(FGSM_MLP(MLP, X_IN, Y, None, eps=jnp.full((B,), 0.1)),
                             FGSM_MLP(MLP, X_IN, Y, None, eps=0.1), atol=1e-7)


def test_fgsm_moves_every_pixel_with_a_gradient_and_no_other():
  """|delta_i| = eps where dL/dx_i != 0 (box inactive); delta_i = 0 where the gradient is 0."""
  p = {"w": LIN["w"].at[:3].set(0.0), "b": LIN["b"]}  # pixels 0..2 do not affect the logits
  a = jit_attack(fgsm, linear_apply)(p, X_IN, Y, None, eps=0.05)
  d = np.abs(np.asarray(a - X_IN).reshape(B, -1))
  np.testing.assert_array_equal(d[:, :3], 0.0)
  np.testing.assert_allclose(d[:, 3:], 0.05, atol=1e-6)


def test_fgsm_first_order_gain_on_linear_model():
  """CE is convex in x for a linear model, so L(x_adv) >= L(x) + eps ||grad||_1 >= L(x)."""
  f = lambda v: jnp.sum(per_example_ce(linear_apply, LIN, v, Y))
  g = np.asarray(jax.grad(f)(X_IN)).reshape(B, -1)
  eps = 0.02
  a = jit_attack(fgsm, linear_apply)(LIN, X_IN, Y, None, eps=eps)
  before = np.asarray(per_example_ce(linear_apply, LIN, X_IN, Y))
  after = np.asarray(per_example_ce(linear_apply, LIN, a, Y))
  assert np.all(after >= before + eps * np.abs(g).sum(1) - 1e-5)


def test_targeted_fgsm_decreases_target_ce():
  """Targeted FGSM: a small targeted step lowers the target-class CE."""
  t = (Y + 2) % K
  a = jit_attack(fgsm, linear_apply, targeted=True)(LIN, X_IN, t, None, eps=1e-3)
  assert np.all(np.asarray(per_example_ce(linear_apply, LIN, a, t) < per_example_ce(linear_apply, LIN, X_IN, t)))


def test_rfgsm_in_ball_for_any_alpha_and_alpha_zero_is_fgsm():
  """R+FGSM stays in the ball for any alpha in [0, eps]; alpha = 0 is FGSM."""
  eps = 0.1
  for alpha in (0.0, eps / 4, eps / 2, eps):
    a = RFGSM_MLP(MLP, X, Y, KEY, eps=eps, alpha=alpha)
    assert_valid(a, X, eps)
  np.testing.assert_array_equal(RFGSM_MLP(MLP, X, Y, KEY, eps=eps, alpha=0.0), FGSM_MLP(MLP, X, Y, None, eps=eps))
  with pytest.raises(ValueError, match="alpha <= eps"):
    rfgsm(lambda v: mlp_apply(MLP, v), X, Y, KEY, eps=0.1, alpha=0.2)


def test_rfgsm_examples_independent_and_deterministic():
  keys = example_keys(KEY, B)  # a single key gives example i the key fold_in(key, i)
  batch = RFGSM_MLP(MLP, X, Y, KEY, eps=0.1, alpha=0.05)
  for i in (0, 5):
    alone = RFGSM_MLP(MLP, X[i:i + 1], Y[i:i + 1], keys[i:i + 1], eps=0.1, alpha=0.05)
    np.testing.assert_allclose(alone[0], batch[i], atol=1e-6)
  assert not np.array_equal(batch, RFGSM_MLP(MLP, X, Y, jax.random.key(9), eps=0.1, alpha=0.05))


def test_fgsm_rs_valid_and_random():
  f = jit_attack(fgsm_rs, mlp_apply)  # one PGD step of 1.25 eps from U(-eps, eps)
  a = f(MLP, X, Y, KEY, eps=0.1)
  assert_valid(a, X, 0.1)
  assert not np.array_equal(a, f(MLP, X, Y, jax.random.key(5), eps=0.1))
  np.testing.assert_array_equal(f(MLP, X, Y, KEY, eps=0.0), X)


def test_registry_and_bad_inputs():
  names = registry.attack_names()
  assert {"fgsm", "rfgsm", "fgsm_rs"} <= set(names)
  f = lambda v: mlp_apply(MLP, v)
  with pytest.raises(ValueError, match="eps"):
    fgsm(f, X, Y, eps=-1.0)
  with pytest.raises(TypeError, match="floating"):
    fgsm(f, (X * 255).astype(jnp.uint8), Y, eps=0.1)
  with pytest.raises(ValueError, match="must lie in"):
    fgsm(f, X, Y + K, eps=0.1)
  with pytest.raises(ValueError, match="PRNG key"):
    rfgsm(f, X, Y, None, eps=0.1)


@pytest.mark.torch
def test_fgsm_matches_torchattacks_exactly():
  pytest.importorskip("torch", reason="torch not installed")
  ta = pytest.importorskip("torchattacks", reason="torchattacks not installed")
  from attack_testkit import to_torch, torch_linear, torch_mlp
  params, x, y = digits_model()
  mlp = mlp_params(4, 64, 32, 10)
  for apply, p, model in ((linear_apply, params, torch_linear(params)), (mlp_apply, mlp, torch_mlp(mlp))):
    ref = ta.FGSM(model, eps=0.1)(to_torch(x), to_torch(y).long()).numpy()
    ours = jit_attack(fgsm, apply)(p, x, y, None, eps=0.1)
    np.testing.assert_array_equal(np.asarray(ours), ref)
