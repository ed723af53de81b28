"""GoogLeNet (Szegedy et al. 2015), the CIFAR variant of kuangliu/pytorch-cifar ``googlenet.py``.

Stem conv3x3 (192) - BN - ReLU (no stride, no pooling), Inception blocks a3 b3 | a4 b4 c4 d4 e4 | a5 b5
with 3x3/2 max-pools (padding 1) between the groups, then kuangliu's AvgPool2d(8) over the 8x8 map a
32x32 input leaves, i.e. global average pooling. Features (B, 1024).
Every conv has a bias (kuangliu keeps torch's default ``bias=True``) and torch's default init.
6,166,250 params with 10 classes, as kuangliu's ``GoogLeNet()``.
"""

from __future__ import annotations

from typing import Tuple

import jax.numpy as jnp
import flax.linen as nn

from jaxrobust.models.common import (Dtype, batch_norm, conv, global_avg_pool, max_pool, relu,
                                     torch_default_kernel)
from jaxrobust.types import Array

# name -> (n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_planes); None marks a 3x3/2 max-pool.
GOOGLENET_CFG: Tuple = (
    ("a3", (64, 96, 128, 16, 32, 32)),
    ("b3", (128, 128, 192, 32, 96, 64)),
    None,
    ("a4", (192, 96, 208, 16, 48, 64)),
    ("b4", (160, 112, 224, 24, 64, 64)),
    ("c4", (128, 128, 256, 24, 64, 64)),
    ("d4", (112, 144, 288, 32, 64, 64)),
    ("e4", (256, 160, 320, 32, 128, 128)),
    None,
    ("a5", (256, 160, 320, 32, 128, 128)),
    ("b5", (384, 192, 384, 48, 128, 128)),
)


class Inception(nn.Module):
  """Four branches concatenated on channels: 1x1 | 1x1-3x3 | 1x1-3x3-3x3 (kuangliu's '5x5' branch) |
  3x3/1 max-pool-1x1, each conv followed by BN and ReLU. Layers named branch{b}_conv{i} / branch{b}_bn{i}."""
  n1x1: int
  n3x3red: int
  n3x3: int
  n5x5red: int
  n5x5: int
  pool_planes: int
  dtype: Dtype = jnp.float32

  def _conv_bn_relu(self, x: Array, features: int, kernel: int, branch: int, layer: int,
                    train: bool) -> Array:
    x = conv(features, kernel, use_bias=True, dtype=self.dtype, kernel_init=torch_default_kernel,
             name=f"branch{branch}_conv{layer}")(x)
    return relu(batch_norm(train, self.dtype, f"branch{branch}_bn{layer}")(x))

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    y1 = self._conv_bn_relu(x, self.n1x1, 1, 1, 1, train)
    y2 = self._conv_bn_relu(x, self.n3x3red, 1, 2, 1, train)
    y2 = self._conv_bn_relu(y2, self.n3x3, 3, 2, 2, train)
    y3 = self._conv_bn_relu(x, self.n5x5red, 1, 3, 1, train)
    y3 = self._conv_bn_relu(y3, self.n5x5, 3, 3, 2, train)
    y3 = self._conv_bn_relu(y3, self.n5x5, 3, 3, 3, train)
    y4 = self._conv_bn_relu(max_pool(x, 3, 1, padding=1), self.pool_planes, 1, 4, 1, train)
    return jnp.concatenate([y1, y2, y3, y4], axis=-1)


class GoogLeNet(nn.Module):
  """GoogLeNet backbone for CIFAR; stem pre_conv / pre_bn (kuangliu's ``pre_layers``), blocks a3 ... b5."""
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    x = conv(192, 3, use_bias=True, dtype=self.dtype, kernel_init=torch_default_kernel, name="pre_conv")(x)
    x = relu(batch_norm(train, self.dtype, "pre_bn")(x))
    for entry in GOOGLENET_CFG:
      if entry is None:
        x = max_pool(x, 3, 2, padding=1)
      else:
        name, planes = entry
        x = Inception(*planes, dtype=self.dtype, name=name)(x, train)
    return global_avg_pool(x)
