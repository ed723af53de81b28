"""User-side models for tests/models/test_external.py, named by factory path ('external_models:make_...').

Each is written as a user of flax would write it, knowing nothing of jaxrobust beyond the protocol of
``jaxrobust.models.external``.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx


class NNXCNN(nnx.Module):
  """conv3x3(8) -> BN -> ReLU -> global mean pool (the latent features) -> Linear(K)."""

  def __init__(self, channels: int, num_classes: int, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(channels, 8, (3, 3), rngs=rngs)
    self.bn = nnx.BatchNorm(8, rngs=rngs)
    self.head = nnx.Linear(8, num_classes, rngs=rngs)

  def __call__(self, x, return_features: bool = False):
    features = nnx.relu(self.bn(self.conv(x))).mean(axis=(1, 2))
    logits = self.head(features)
    return (logits, features) if return_features else logits


def make_nnx_cnn(num_classes, input_shape, seed=0):
  return NNXCNN(input_shape[-1], num_classes, rngs=nnx.Rngs(seed))


def mlp_apply(params, x):
  """A pure BN-free MLP: flatten -> tanh(x W1 + b1) -> W2 + b2."""
  hidden = jnp.tanh(x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"])
  return hidden @ params["w2"] + params["b2"]


def make_mlp(num_classes, input_shape, seed=0, hidden=32):
  k1, k2 = jax.random.split(jax.random.key(seed))
  d = 1
  for n in input_shape:
    d *= n
  return mlp_apply, {"w1": jax.random.normal(k1, (d, hidden)) / d ** 0.5, "b1": jnp.zeros(hidden),
                     "w2": jax.random.normal(k2, (hidden, num_classes)) / hidden ** 0.5,
                     "b2": jnp.zeros(num_classes)}


class LinenCNN(nn.Module):
  """conv3x3(8) -> BN -> ReLU -> dropout -> mean pool -> Dense(K), taking train like most linen models."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Conv(8, (3, 3))(x)))
    h = nn.Dropout(0.5, deterministic=not train)(h)
    return nn.Dense(self.num_classes)(h.mean(axis=(1, 2)))


def make_linen_cnn(num_classes):
  return LinenCNN(num_classes)
