"""MIM / MI-FGSM (Dong et al. 2018): the momentum update, batching, saturation, torchattacks MIFGSM."""

import os
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from attack_testkit import (assert_valid, digits_model, images, jit_attack, labels, linear_apply,  # noqa: E402
                            linear_params, mlp_apply, mlp_params, per_example_ce)

from jaxrobust.attacks import registry  # noqa: E402
from jaxrobust.attacks.mim import mim, mim_trajectory  # noqa: E402
from jaxrobust.attacks.pgd import pgd  # noqa: E402

B, K, T = 8, 5, 5
X = images(0, B)
Y = labels(0, B, K)
MLP = mlp_params(1, 12, 16, K)
MIM_MLP = jit_attack(mim, mlp_apply, steps=T)


def test_decay_zero_is_bim():
  """With decay mu = 0 MI-FGSM is BIM."""
  a = MIM_MLP(MLP, X, Y, None, eps=0.1, step_size=0.03, decay=0.0)
  b = jit_attack(pgd, mlp_apply, steps=T, init="none")(MLP, X, Y, None, eps=0.1, step_size=0.03)
  np.testing.assert_allclose(a, b, atol=1e-6)


def test_l1_and_mean_normalisation_agree():
  """torchattacks divides by mean|g|, the paper by ||g||_1; same signs, same output."""
  a = MIM_MLP(MLP, X, Y, None, eps=0.1, step_size=0.03, decay=1.0)
  b = jit_attack(mim, mlp_apply, steps=T, grad_norm="mean")(MLP, X, Y, None, eps=0.1, step_size=0.03, decay=1.0)
  np.testing.assert_array_equal(a, b)


def test_momentum_buffer_is_discounted_sum_of_normalised_gradients():
  """g_{t+1} = sum_{s <= t} mu^{t-s} grad_s / ||grad_s||_1, gradients recomputed at the path."""
  mu = 0.7
  traj = jax.jit(lambda x: mim_trajectory(lambda v: mlp_apply(MLP, v), x, Y, eps=0.1, step_size=0.03,
                                          steps=T, decay=mu))
  x_adv, xs, ms = traj(X)
  grad = jax.grad(lambda v: jnp.sum(per_example_ce(mlp_apply, MLP, v, Y)))
  ghat = []
  for t in range(T):
    g = np.asarray(grad(xs[t])).reshape(B, -1)
    ghat.append(g / np.abs(g).sum(1, keepdims=True))
    expect = sum(mu ** (t - s) * ghat[s] for s in range(t + 1))
    np.testing.assert_allclose(np.asarray(ms[t]).reshape(B, -1), expect, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(xs[0], X)  # x_0 = x: no random start
  np.testing.assert_allclose(x_adv, MIM_MLP(MLP, X, Y, None, eps=0.1, step_size=0.03, decay=mu), atol=1e-6)


def test_valid_eps_zero_default_step_and_per_example_eps():
  """In the ball and the box, alpha = eps / T by default, (B,) eps."""
  for eps in (0.0, 0.03, 0.4):
    a = MIM_MLP(MLP, X, Y, None, eps=eps, step_size=eps / 2, decay=1.0)
    assert_valid(a, X, eps)
    if eps == 0:
      np.testing.assert_array_equal(a, X)
  default = mim(lambda v: mlp_apply(MLP, v), X, Y, eps=0.1, steps=T)
  np.testing.assert_allclose(default, MIM_MLP(MLP, X, Y, None, eps=0.1, step_size=0.1 / T, decay=1.0), atol=1e-7)
  eps = jnp.linspace(0.0, 0.3, B)
  a = MIM_MLP(MLP, X, Y, None, eps=eps, step_size=eps / 2, decay=1.0)
  assert_valid(a, X, eps)
  for i in (0, 3, 7):
    np.testing.assert_allclose(a[i], MIM_MLP(MLP, X, Y, None, eps=eps[i], step_size=eps[i] / 2, decay=1.0)[i],
                               atol=1e-6)


def test_batch_equals_each_example_alone_and_deterministic():
  batch = MIM_MLP(MLP, X, Y, None, eps=0.1, step_size=0.03, decay=1.0)
  for i in (0, 4):
    alone = MIM_MLP(MLP, X[i:i + 1], Y[i:i + 1], None, eps=0.1, step_size=0.03, decay=1.0)
    np.testing.assert_allclose(alone[0], batch[i], atol=1e-6)


def test_saturated_model_gives_no_nan():
  """A zero gradient (softmax saturated in float32) would make torchattacks divide by zero."""
  p = linear_params(0, 12, K, scale=1.0)
  p = {"w": p["w"] * 0.0, "b": jnp.array([1000.0, 0, 0, 0, 0])}
  a = mim(lambda v: linear_apply(p, v), X, jnp.zeros(B, jnp.int32), eps=0.1, steps=2)
  chex.assert_tree_all_finite(a)
  np.testing.assert_array_equal(a, X)


def test_registry_and_bad_inputs():
  assert {"mim", "mifgsm"} <= set(registry.attack_names())
  f = lambda v: mlp_apply(MLP, v)
  with pytest.raises(ValueError, match="grad_norm"):
    mim(f, X, Y, eps=0.1, grad_norm="l2")
  with pytest.raises(ValueError, match="decay"):
    mim(f, X, Y, eps=0.1, decay=-1.0)
  with pytest.raises(ValueError, match="eps"):
    mim(f, X, Y, eps=-0.1)


@pytest.mark.torch
def test_mim_matches_torchattacks():
  pytest.importorskip("torch", reason="torch not installed")
  ta = pytest.importorskip("torchattacks", reason="torchattacks not installed")
  from attack_testkit import to_torch, torch_linear, torch_mlp
  params, x, y = digits_model()
  mlp = mlp_params(4, 64, 32, 10)
  for apply, p, model in ((linear_apply, params, torch_linear(params)), (mlp_apply, mlp, torch_mlp(mlp))):
    ref = ta.MIFGSM(model, eps=0.1, alpha=0.02, steps=10, decay=1.0)(to_torch(x), to_torch(y).long()).numpy()
    ours = jit_attack(mim, apply, steps=10)(p, x, y, None, eps=0.1, step_size=0.02, decay=1.0)
    np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-5)
