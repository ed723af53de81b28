"""Micro-batched inference: same logits and input gradients as the whole batch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.models import get_model, init_model, make_apply, make_features_apply
from jaxrobust.models import microbatch as mb


def _affine_rows(x):
  # row-wise function of random rows, so any row mix-up shows
  return {"a": jnp.sum(x, axis=(1, 2, 3)), "b": x[:, :2, 0, 0] * 3.0}


@pytest.mark.parametrize("batch,size", [(5, 2), (12, 4), (13, 4), (64, 4), (7, 7), (3, 8)])
def test_microbatched_preserves_rows(batch, size):
  x = jax.random.normal(jax.random.key(0), (batch, 3, 2, 1))
  got = jax.jit(mb.microbatched(_affine_rows, size))(x)
  want = _affine_rows(x)
  for k in want:
    assert got[k].shape == want[k].shape
    np.testing.assert_allclose(got[k], want[k], rtol=1e-6)


def test_microbatched_uses_map_beyond_unroll_limit():
  calls = []

  def f(x):
    calls.append(x.shape)
    return x * 2.0

  x = jnp.arange(40.0).reshape(40, 1)
  out = mb.microbatched(f, 4)(x)  # 10 chunks > UNROLL_CHUNKS: traced once under lax.map
  np.testing.assert_array_equal(out, x * 2.0)
  assert calls == [(4, 1)]
  calls.clear()
  mb.microbatched(f, 20)(x)  # 2 chunks: unrolled
  assert calls == [(20, 1), (20, 1)]


def test_resolve_microbatch():
  assert mb.resolve_microbatch(None) is None and mb.resolve_microbatch(0) is None
  assert mb.resolve_microbatch(16) == 16
  if jax.default_backend() == "cpu":
    assert mb.resolve_microbatch("auto") == mb.CPU_MICROBATCH * jax.device_count()
  for bad in (-1, 2.5, "big", True):
    with pytest.raises(ValueError, match="microbatch"):
      mb.resolve_microbatch(bad)


@pytest.mark.parametrize("name", ["small_cnn", pytest.param("resnet20", marks=pytest.mark.slow)])  # BN case: -m slow
def test_model_apply_microbatched_equals_whole_batch(name):
  module = get_model(name, num_classes=10)
  shape = (28, 28, 1) if name == "small_cnn" else (32, 32, 3)
  variables = init_model(module, jax.random.key(0), shape)
  x = jax.random.uniform(jax.random.key(1), (10,) + shape)
  whole, chunked = make_apply(module, microbatch=None), make_apply(module, microbatch=3)
  np.testing.assert_allclose(chunked(variables, x), whole(variables, x), rtol=1e-5, atol=1e-5)

  def input_grad(apply):
    return jax.grad(lambda v: jnp.sum(jax.nn.log_softmax(apply(variables, v))[:, 0]))(x)
  np.testing.assert_allclose(input_grad(chunked), input_grad(whole), rtol=1e-4, atol=1e-5)
  out = make_features_apply(module, microbatch=4)(variables, x)
  ref = make_features_apply(module, microbatch=None)(variables, x)
  np.testing.assert_allclose(out.features, ref.features, rtol=1e-5, atol=1e-5)
