"""EfficientNet-B0 (Tan & Le 2019), the CIFAR variant of kuangliu/pytorch-cifar ``efficientnet.py``.

Stem conv3x3/1 (32) - BN - swish, 16 MBConv blocks (1x1 expansion - BN - swish, depthwise kxk - BN -
swish, squeeze-excitation, 1x1 projection - BN, identity skip where stride 1 and widths match), global
average pooling, then dropout (kuangliu: 0.2, train mode only) before the classifier. Features are the
classifier's input: (B, 320), dropped out in train mode.

Differences from kuangliu, on purpose:
* kuangliu builds the expansion conv1/bn1 also for expansion-1 blocks and never uses them; they are
  not built here (the first block), so the count is 3,598,598 with 10 classes against kuangliu's
  3,599,686 (1,088 unused parameters fewer); the function is the same.
* Drop-connect: kuangliu's cfg has drop_connect_rate 0.2 but computes each block's rate as
  ``0.2 * b / blocks`` with ``b`` never incremented, so every rate is 0 and drop-connect never runs.
  drop_connect_rate defaults to that effective 0; a positive value gives block i the rate
  ``drop_connect_rate * i / 16`` (the intended schedule), dropping whole examples of the residual
  branch. Both dropouts draw from the 'dropout' rng collection, which the train step passes
  (``train.step.make_forwards``); train mode without ``rngs={'dropout': key}`` fails unless
  dropout_rate = drop_connect_rate = 0.
Convs have no bias (SE convs have one) and keep torch's default init, as kuangliu.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxrobust.models.common import (Dtype, batch_norm, conv, depthwise_conv, global_avg_pool, swish,
                                     torch_default_kernel)
from jaxrobust.types import Array

# (expansion, out_channels, num_blocks, kernel_size, stride) per stage (kuangliu's EfficientNetB0 cfg).
EFFICIENTNET_B0_STAGES: Tuple[Tuple[int, int, int, int, int], ...] = (
    (1, 16, 1, 3, 1),
    (6, 24, 2, 3, 2),
    (6, 40, 2, 5, 2),
    (6, 80, 3, 3, 2),
    (6, 112, 3, 5, 1),
    (6, 192, 4, 5, 2),
    (6, 320, 1, 3, 1),
)


class SqueezeExcite(nn.Module):
  """x * sigmoid(se2(swish(se1(mean_hw(x))))), 1x1 convs with bias (Hu et al. 2018, kuangliu's SE)."""
  se_channels: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    w = jnp.mean(x, axis=(1, 2), keepdims=True)
    w = swish(conv(self.se_channels, 1, use_bias=True, dtype=self.dtype, kernel_init=torch_default_kernel,
                   name="se1")(w))
    w = jax.nn.sigmoid(conv(x.shape[-1], 1, use_bias=True, dtype=self.dtype,
                            kernel_init=torch_default_kernel, name="se2")(w))
    return x * w


class MBConvBlock(nn.Module):
  """Expansion + depthwise + SE + projection (Sandler et al. 2018 / Tan & Le 2019), kuangliu's Block.

  The SE width is int(in_channels * se_ratio) of the block's *input* channels, as kuangliu.
  """
  features: int
  kernel: int
  stride: int = 1
  expansion: int = 1
  se_ratio: float = 0.25
  drop_connect_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    in_channels = x.shape[-1]
    channels = self.expansion * in_channels
    out = x
    if self.expansion != 1:
      out = conv(channels, 1, dtype=self.dtype, kernel_init=torch_default_kernel, name="conv1")(out)
      out = swish(batch_norm(train, self.dtype, "bn1")(out))
    out = depthwise_conv(channels, self.kernel, self.stride, dtype=self.dtype, name="conv2")(out)
    out = swish(batch_norm(train, self.dtype, "bn2")(out))
    out = SqueezeExcite(int(in_channels * self.se_ratio), dtype=self.dtype, name="se")(out)
    out = conv(self.features, 1, dtype=self.dtype, kernel_init=torch_default_kernel, name="conv3")(out)
    out = batch_norm(train, self.dtype, "bn3")(out)
    if self.stride == 1 and in_channels == self.features:
      if self.drop_connect_rate > 0:
        # Drop-connect: zero the residual branch of whole examples, scale the kept ones by 1/keep.
        out = nn.Dropout(self.drop_connect_rate, broadcast_dims=(1, 2, 3), deterministic=not train)(out)
      out = out + x
    return out


class EfficientNet(nn.Module):
  """EfficientNet backbone for CIFAR; blocks named layers_{i} as kuangliu's ``layers.{i}``."""
  stages: Sequence[Tuple[int, int, int, int, int]] = EFFICIENTNET_B0_STAGES
  dropout_rate: float = 0.2
  drop_connect_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    x = conv(32, 3, dtype=self.dtype, kernel_init=torch_default_kernel, name="conv1")(x)
    x = swish(batch_norm(train, self.dtype, "bn1")(x))
    total = sum(stage[2] for stage in self.stages)
    index = 0
    for expansion, width, blocks, kernel, stride in self.stages:
      for block in range(blocks):
        x = MBConvBlock(width, kernel, stride if block == 0 else 1, expansion,
                        drop_connect_rate=self.drop_connect_rate * index / total, dtype=self.dtype,
                        name=f"layers_{index}")(x, train)
        index += 1
    x = global_avg_pool(x)
    if self.dropout_rate > 0:
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return x
