"""Small backbones without batch norm: MLP, SmallCNN (Carlini & Wagner 2017), the CCE CNNs
(Bui et al. 2021) and LeNet-5 (LeCun et al. 1998).

Each maps (B, H, W, C) -> penultimate features (B, D); the head lives in ImageClassifier.
Conv feature maps are flattened in PyTorch's (C, H, W) order so that weights port one-to-one
from the reference checkpoints; the CCE CNNs are Keras nets and flatten (H, W, C) as Keras does.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import flax.linen as nn

from jaxrobust.models.common import (Dtype, conv, kaiming_normal_fan_in, keras_he_normal, max_pool,
                                     relu, torch_default_kernel)
from jaxrobust.types import Array


def flatten_chw(x: Array) -> Array:
  """(B, H, W, C) -> (B, C*H*W) in torch's NCHW flatten order."""
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def flatten_hwc(x: Array) -> Array:
  """(B, H, W, C) -> (B, H*W*C) in Keras's channels-last flatten order."""
  return x.reshape(x.shape[0], -1)


_FLATTENS = {"chw": flatten_chw, "hwc": flatten_hwc}
# init -> (conv kernel init, dense kernel init); biases start at zero either way.
_INITS = {
  # The PyTorch references: kaiming_normal_ (fan_in) convs, torch's default Linear init.
  "torch": (kaiming_normal_fan_in, torch_default_kernel),
  # Keras: he_normal (truncated normal, variance 2 / fan_in) convs, glorot_uniform Dense.
  "keras": (keras_he_normal, nn.initializers.glorot_uniform()),
}


class MLP(nn.Module):
  """Tiny MLP for tests: flatten -> [Dense(h) -> ReLU]*; features (B, hidden_sizes[-1])."""
  hidden_sizes: Sequence[int] = (64,)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    x = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.hidden_sizes):
      x = relu(nn.Dense(width, dtype=self.dtype, kernel_init=torch_default_kernel, name=f"fc{i + 1}")(x))
    return x


class SmallCNN(nn.Module):
  """The MNIST net of Carlini & Wagner (2017), as the TRADES (Zhang et al. 2019), SPAT (Hou et al. 2023)
  and ADR (Bui et al. 2020) code builds it: conv32-conv32-pool-conv64-conv64-pool, fc200-fc200.

  Convs are 3x3 'valid' (no padding) with bias; on 28x28 inputs the flattened map is
  64*4*4 = 1024. Features are the last hidden FC's output (B, hidden), the input to the head.
  channels/hidden/conv_padding give the C&W CIFAR variant (channels=(64, 128), hidden=256).
  convs_per_stage / num_hidden_layers / flatten / init give the CCE CNNs (Bui et al. 2021,
  ``cce_cnn_*`` in the registry): 'same' convs, HWC flatten and Keras init.
  flatten: 'chw' (torch order, default) or 'hwc' (Keras order); it fixes which fc1 rows belong
    to which pixel, so it matters only for porting weights.
  init: 'torch' (kaiming_normal fan_in convs, torch's default Linear) or 'keras' (he_normal convs,
    glorot_uniform Dense); biases start at zero.
  dropout_rate: TRADES's reference puts Dropout(0.5) after fc1 (``mnist_trades`` sets it); the
    default 0 matches the other papers' nets. Train mode then needs ``rngs={'dropout': key}``,
    which the train step passes (``train.step.make_forwards``).
  TRADES also zero-inits fc3 (the head); we keep the head's default init, since all-zero logits
  give attacks a zero input gradient at initialisation.
  """
  channels: Sequence[int] = (32, 64)
  hidden: int = 200
  conv_padding: int = 0
  dropout_rate: float = 0.0
  convs_per_stage: int = 2
  num_hidden_layers: int = 2
  flatten: str = "chw"
  init: str = "torch"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if self.flatten not in _FLATTENS:
      raise ValueError(f"flatten must be one of {tuple(_FLATTENS)}; got {self.flatten!r}")
    if self.init not in _INITS:
      raise ValueError(f"init must be one of {tuple(_INITS)}; got {self.init!r}")
    conv_init, dense_init = _INITS[self.init]
    index = 0
    for width in self.channels:
      for _ in range(self.convs_per_stage):
        index += 1
        x = relu(conv(width, 3, padding=self.conv_padding, use_bias=True, dtype=self.dtype,
                      kernel_init=conv_init, name=f"conv{index}")(x))
      x = max_pool(x, 2, 2)
    x = _FLATTENS[self.flatten](x)
    for layer in range(1, self.num_hidden_layers + 1):
      x = relu(nn.Dense(self.hidden, dtype=self.dtype, kernel_init=dense_init, name=f"fc{layer}")(x))
      if layer == 1 and self.dropout_rate > 0:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return x


class LeNet5(nn.Module):
  """LeNet-5 (LeCun et al. 1998) with ReLU and max-pool: conv6(5x5)-pool-conv16(5x5)-pool, fc120-fc84;
  features (B, 84).

  conv1_padding=2 is the usual PyTorch MNIST form (28x28 -> 16*5*5 = 400 after the second pool);
  use conv1_padding=0 for the classic 32x32 input.
  """
  conv1_padding: int = 2
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    x = relu(conv(6, 5, padding=self.conv1_padding, use_bias=True, dtype=self.dtype,
                  kernel_init=torch_default_kernel, name="conv1")(x))
    x = max_pool(x, 2, 2)
    x = relu(conv(16, 5, padding=0, use_bias=True, dtype=self.dtype,
                  kernel_init=torch_default_kernel, name="conv2")(x))
    x = max_pool(x, 2, 2)
    x = flatten_chw(x)
    x = relu(nn.Dense(120, dtype=self.dtype, kernel_init=torch_default_kernel, name="fc1")(x))
    x = relu(nn.Dense(84, dtype=self.dtype, kernel_init=torch_default_kernel, name="fc2")(x))
    return x
