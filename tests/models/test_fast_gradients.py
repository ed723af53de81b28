"""fast_input_gradients: same values and input gradients as the model it wraps, for stock Flax linen, Flax NNX
and raw lax models in any layout; the library's own models run untouched."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxrobust.models import get_model, init_model, make_apply
from jaxrobust.models import fast_gradients
from jaxrobust.models.fast_gradients import fast_input_gradients

KEY = jax.random.PRNGKey(0)
X = jax.random.uniform(KEY, (6, 12, 12, 3))
Y = jnp.arange(6) % 5


class StockCNN(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(8, (3, 3), padding="SAME")(x))
    x = nn.max_pool(x, (2, 2), (2, 2))
    x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2), padding="VALID")(x))
    return nn.Dense(5)(x.reshape(x.shape[0], -1))


class NNXCNN(nnx.Module):
  def __init__(self, rngs):
    self.conv = nnx.Conv(3, 8, (3, 3), padding="VALID", rngs=rngs)
    self.head = nnx.Linear(8 * 5 * 5, 5, rngs=rngs)

  def __call__(self, x):
    x = nnx.max_pool(nnx.relu(self.conv(x)), (2, 2), (2, 2))
    return self.head(x.reshape(x.shape[0], -1))


def _raw_nchw(params, x):
  """A torch-style model on raw lax: NCHW activations, OIHW kernels, padding (1, 2)."""
  x = jnp.transpose(x, (0, 3, 1, 2))
  x = jax.nn.relu(jax.lax.conv_general_dilated(x, params["w"], (1, 1), ((1, 2), (1, 2)),
                                               dimension_numbers=("NCHW", "OIHW", "NCHW")))
  x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 3, 3), (1, 1, 3, 3), "VALID")
  return x.reshape(x.shape[0], -1) @ params["d"]


def _models():
  stock = StockCNN()
  v = jax.jit(stock.init)(KEY, X[:1])
  gdef, state = nnx.split(NNXCNN(nnx.Rngs(1)))
  raw = {"w": 0.3 * jax.random.normal(KEY, (8, 3, 3, 3)), "d": 0.1 * jax.random.normal(KEY, (8 * 4 * 4, 5))}
  return {"linen": lambda x: stock.apply(v, x), "nnx": lambda x: nnx.merge(gdef, state)(x),
          "raw_nchw": lambda x: _raw_nchw(raw, x)}


def _ce_grad(f):
  return jax.grad(lambda x: jnp.sum(jax.nn.log_softmax(f(x))[jnp.arange(6), Y]))


@pytest.mark.parametrize("name", ["linen", "nnx", "raw_nchw"])
def test_same_logits_and_input_gradient(name):
  f = _models()[name]
  g = fast_input_gradients(f)
  assert fast_gradients._has_target(jax.make_jaxpr(f)(X).jaxpr)
  fast, stock = jax.jit(lambda x: ((g(x), _ce_grad(g)(x)), (f(x), _ce_grad(f)(x))))(X)
  chex.assert_trees_all_close(fast, stock, atol=1e-6)
  chex.assert_tree_all_finite(fast)


def test_rewrites_the_convolutions_and_pools_out_of_the_program():
  f = _models()["raw_nchw"]
  jaxpr = str(jax.make_jaxpr(fast_input_gradients(f))(X))
  assert "reduce_window_max" not in jaxpr
  assert "custom_vjp_call" in jaxpr  # the conv is models.conv.conv2d's


def test_library_models_run_unchanged():
  module = get_model("small_cnn", 10, channels=(4, 8), hidden=16)
  variables = jax.eval_shape(lambda: init_model(module, KEY, (28, 28, 1)))
  apply = make_apply(module)
  x = jax.ShapeDtypeStruct((3, 28, 28, 1), jnp.float32)
  assert not fast_gradients._has_target(jax.make_jaxpr(apply)(variables, x).jaxpr)
  assert str(jax.make_jaxpr(fast_input_gradients(apply))(variables, x)) == str(jax.make_jaxpr(apply)(variables, x))


def test_unsupported_convolutions_fall_back_to_lax():
  w = 0.3 * jax.random.normal(KEY, (3, 3, 1, 6))
  dilated = lambda x: jax.lax.conv_general_dilated(  # noqa: E731
      x, w, (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=3)
  g = fast_input_gradients(dilated)
  np.testing.assert_array_equal(np.asarray(g(X)), np.asarray(dilated(X)))
  assert "conv_general_dilated" in str(jax.make_jaxpr(g)(X))


def test_wrapping_is_memoised_and_idempotent():
  f = _models()["linen"]
  g = fast_input_gradients(f)
  assert fast_input_gradients(f) is g
  assert fast_input_gradients(g) is g
  with pytest.raises(TypeError, match="needs a function"):
    fast_input_gradients({"w": 1})
