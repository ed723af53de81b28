"""SPSA (Uesato et al. 2018; cleverhans defaults): the gradient estimator converges to the gradient, the ball and
the box, per-example keys, early stopping, and that it never differentiates the model (black box)."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from attack_testkit import assert_valid, images, jit_attack, labels, mlp_apply, mlp_params  # noqa: E402

from jaxrobust.attacks import registry  # noqa: E402
from jaxrobust.attacks.per_example import example_keys  # noqa: E402
from jaxrobust.attacks.spsa import spsa, spsa_gradient  # noqa: E402

B, K = 8, 5
MLP = mlp_params(1, 12, 16, K)
KEY = jax.random.key(0)


def _smooth_loss(v):  # (N, 2, 2, 3) -> (N,)
  flat = v.reshape(v.shape[0], -1)
  coef = jnp.linspace(-2.0, 3.0, flat.shape[1])
  return jnp.sum(jnp.sin(coef * flat) + 0.5 * flat ** 2, axis=1) + flat[:, 0] * flat[:, 1]


@pytest.mark.parametrize("sample_chunk", [None, 64])
def test_gradient_estimate_converges_to_the_gradient(sample_chunk):
  """Relative error of the SPSA estimate shrinks like 1 / sqrt(samples) (Rademacher directions, d = 12)."""
  x = images(0, 4, extremes=False)
  keys = example_keys(KEY, 4)
  true = jax.grad(lambda v: jnp.sum(_smooth_loss(v)))(x)
  errors = []
  for samples in (16, 256, 8192):
    chunk = None if sample_chunk is None else min(sample_chunk, samples // 2)
    est = jax.jit(lambda v, k: spsa_gradient(_smooth_loss, v, k, delta=1e-3, samples=samples,
                                             sample_chunk=chunk))(x, keys)
    errors.append(float(jnp.linalg.norm(est - true) / jnp.linalg.norm(true)))
  assert errors[0] > errors[1] > errors[2], errors
  assert errors[2] < 0.1, errors


def test_gradient_estimate_iters_average():
  x = images(1, 2, extremes=False)
  keys = example_keys(KEY, 2)
  true = jax.grad(lambda v: jnp.sum(_smooth_loss(v)))(x)
  est = spsa_gradient(_smooth_loss, x, keys, delta=1e-3, samples=512, iters=16)
  assert float(jnp.linalg.norm(est - true) / jnp.linalg.norm(true)) < 0.1


@pytest.mark.parametrize("init", ["uniform", "none"])
def test_in_ball_and_box(init):
  x, y = images(0, B), labels(0, B, K)
  eps = jnp.asarray([0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.05, 0.1])
  xa = jit_attack(spsa, mlp_apply, steps=5, spsa_samples=32, init=init)(MLP, x, y, KEY, eps=eps)
  assert_valid(xa, x, eps)
  np.testing.assert_array_equal(np.asarray(xa[0]), np.asarray(x[0]))  # eps = 0 returns x


def test_attack_lowers_accuracy():
  x, y = images(1, 32), labels(1, 32, K)
  y = jnp.asarray(np.argmax(np.asarray(mlp_apply(MLP, x)), 1), jnp.int32)  # all correct
  xa = jit_attack(spsa, mlp_apply, steps=20)(MLP, x, y, KEY, eps=0.1)
  assert np.mean(np.argmax(np.asarray(mlp_apply(MLP, xa)), 1) == np.asarray(y)) < 0.8


def test_batch_equals_its_halves():
  x, y = images(2, B), labels(2, B, K)
  keys = example_keys(KEY, B)
  run = jit_attack(spsa, mlp_apply, steps=4, spsa_samples=16)
  full = run(MLP, x, y, keys, eps=0.1)
  halves = [run(MLP, x[s], y[s], keys[s], eps=0.1) for s in (slice(0, B // 2), slice(B // 2, B))]
  np.testing.assert_allclose(np.asarray(full), np.concatenate([np.asarray(h) for h in halves]), atol=1e-6)


def test_early_stop_freezes_an_example():
  """A threshold every loss is below stops every example after its first step."""
  x, y = images(3, B), labels(3, B, K)
  one = jit_attack(spsa, mlp_apply, steps=1, spsa_samples=16)(MLP, x, y, KEY, eps=0.1)
  stopped = jit_attack(spsa, mlp_apply, steps=6, spsa_samples=16, early_stop_loss_threshold=1e9)(
      MLP, x, y, KEY, eps=0.1)
  np.testing.assert_allclose(np.asarray(stopped), np.asarray(one), atol=1e-7)
  # threshold 0: an example once adversarial stays adversarial
  xa = jit_attack(spsa, mlp_apply, steps=10, spsa_samples=16, early_stop_loss_threshold=0.0)(MLP, x, y, KEY, eps=0.2)
  assert_valid(xa, x, 0.2)


def test_black_box_never_differentiates_the_model():
  """The model is a host callback without a derivative: any jax.grad through it would raise."""
  w1, b1, w2, b2 = (np.asarray(MLP[k]) for k in ("w1", "b1", "w2", "b2"))

  def host(v):
    h = np.maximum(np.asarray(v).reshape(len(v), -1) @ w1 + b1, 0)
    return (h @ w2 + b2).astype(np.float32)

  def logits_fn(v):
    return jax.pure_callback(host, jax.ShapeDtypeStruct((v.shape[0], K), jnp.float32), v)

  x, y = images(4, 4), labels(4, 4, K)
  xa = jax.jit(lambda a, b, k: spsa(logits_fn, a, b, k, eps=0.1, steps=2, spsa_samples=8))(x, y, KEY)
  ref = jit_attack(spsa, mlp_apply, steps=2, spsa_samples=8)(MLP, x, y, KEY, eps=0.1)
  np.testing.assert_allclose(np.asarray(xa), np.asarray(ref), atol=1e-5)
  assert registry.attack_info("spsa").box == "black"


def test_checks():
  f = lambda v: mlp_apply(MLP, v)
  x, y = images(0, 2), labels(0, 2, K)
  with pytest.raises(ValueError, match="even"):
    spsa(f, x, y, KEY, eps=0.1, spsa_samples=7)
  with pytest.raises(ValueError, match="sample_chunk"):
    spsa(f, x, y, KEY, eps=0.1, spsa_samples=16, sample_chunk=3)
  with pytest.raises(ValueError, match="init"):
    spsa(f, x, y, KEY, eps=0.1, init="normal")
