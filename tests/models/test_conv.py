"""conv2d / Conv / max_pool: same values and gradients as the lax/flax reference ops."""

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
import pytest

from jaxrobust.models.conv import Conv, conv2d, max_pool

_DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("cin", [1, 3, 6])  # 1: tap multiplies, 3: patches matmul, 6: custom-VJP conv
@pytest.mark.parametrize("hw,k,stride,pad", [(12, 3, 1, 0), (12, 3, 1, 1), (11, 3, 2, 1), (32, 1, 2, 0),
                                             (13, 5, 2, 2), (9, 7, 2, 3), (8, 3, 2, (0, 1))])
def test_conv2d_value_and_grads_match_lax(hw, k, stride, pad, cin):
  pad = pad if isinstance(pad, tuple) else (pad, pad)
  padding = (pad, pad)
  kx, kw, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (3, hw, hw, cin))
  w = jax.random.normal(kw, (k, k, cin, 5))

  def ref(x, w):
    return jax.lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=_DN)

  out_ref, vjp_ref = jax.vjp(ref, x, w)
  out, vjp = jax.vjp(lambda x, w: conv2d(x, w, (stride, stride), padding), x, w)
  np.testing.assert_allclose(out, out_ref, rtol=1e-5, atol=1e-5)
  g = jax.random.normal(kg, out.shape)
  for got, want in zip(vjp(g), vjp_ref(g)):
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv2d_grad_inside_fori_loop_matches_unrolled():
  x = jax.random.uniform(jax.random.key(1), (2, 10, 10, 8))  # 8 > SMALL_CIN: the custom-VJP path
  w = jax.random.normal(jax.random.key(2), (3, 3, 8, 6))

  def step(_, xa):
    g = jax.grad(lambda v: jnp.sum(jnp.tanh(conv2d(v, w, (1, 1), ((1, 1), (1, 1))))))(xa)
    return xa + 0.01 * jnp.sign(g)

  looped = jax.jit(lambda x: jax.lax.fori_loop(0, 4, step, x, unroll=1))(x)
  unrolled = jax.jit(lambda x: jax.lax.fori_loop(0, 4, step, x, unroll=True))(x)
  np.testing.assert_allclose(looped, unrolled, atol=1e-6)


def test_conv_module_matches_flax_conv_and_keeps_parameter_names():
  x = jax.random.normal(jax.random.key(3), (2, 9, 9, 3))
  ours = Conv(7, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), name="c")
  theirs = nn.Conv(7, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), name="c")
  variables = theirs.init(jax.random.key(4), x)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(4), x)) == jax.tree.map(jnp.shape, variables)
  np.testing.assert_allclose(ours.apply(variables, x), theirs.apply(variables, x), rtol=1e-5, atol=1e-5)


def test_conv_module_dtype_promotion():
  x = jnp.ones((1, 5, 5, 2), jnp.bfloat16)
  module = Conv(3, (3, 3), dtype=jnp.bfloat16)
  variables = module.init(jax.random.key(0), x)
  assert variables["params"]["kernel"].dtype == jnp.float32
  assert module.apply(variables, x).dtype == jnp.bfloat16


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 9, 7, 3)])
def test_reshape_max_pool_matches_reduce_window(shape):
  x = jax.random.normal(jax.random.key(5), shape)
  ref = lambda v: nn.max_pool(v, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(max_pool(x, 2, 2), ref(x))
  # random floats have no ties inside a window, so the gradients agree exactly
  gx = jax.grad(lambda v: jnp.sum(max_pool(v, 2, 2) ** 2))(x)
  gr = jax.grad(lambda v: jnp.sum(ref(v) ** 2))(x)
  np.testing.assert_allclose(gx, gr, atol=1e-6)


def test_padded_max_pool_keeps_reduce_window_semantics():
  x = jax.random.normal(jax.random.key(6), (1, 8, 8, 2))
  expected = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
  np.testing.assert_array_equal(max_pool(x, 3, 2, padding=1), expected)


def test_conv2d_rejects_bad_shapes_and_settings():
  x, w = jnp.ones((1, 5, 5, 3)), jnp.ones((3, 3, 3, 4))
  with pytest.raises(ValueError, match="matching Cin"):
    conv2d(x, jnp.ones((3, 3, 2, 4)))
  with pytest.raises(ValueError, match="matching Cin"):
    conv2d(x[0], w)
  with pytest.raises(ValueError, match="strides >= 1"):
    conv2d(x, w, (0, 1))
  with pytest.raises(ValueError, match="paddings >= 0"):
    conv2d(x, w, (1, 1), ((-1, 0), (0, 0)))
