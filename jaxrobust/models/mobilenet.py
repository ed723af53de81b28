"""MobileNet v1 (Howard et al. 2017), the CIFAR variant of kuangliu/pytorch-cifar ``mobilenet.py``.

Stem conv3x3/1 (32) - BN - ReLU, then 13 depthwise-separable blocks (depthwise 3x3 - BN - ReLU,
pointwise 1x1 - BN - ReLU); four of them stride 2, so a 32x32 input ends at 2x2 x 1024, which
kuangliu average-pools with avg_pool2d(2), i.e. globally. Features (B, 1024).
Convs have no bias and keep torch's default init, as kuangliu (no re-initialisation).
3,217,226 params with 10 classes, as kuangliu's ``MobileNet()``.
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import jax.numpy as jnp
import flax.linen as nn

from jaxrobust.models.common import (Dtype, batch_norm, conv, depthwise_conv, global_avg_pool, relu,
                                     torch_default_kernel)
from jaxrobust.types import Array

# Pointwise widths; (width, 2) marks a stride-2 block (kuangliu's cfg).
MOBILENET_CFG: Tuple[Union[int, Tuple[int, int]], ...] = (
    64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024)


class DepthwiseSeparableBlock(nn.Module):
  """relu(bn2(pointwise(relu(bn1(depthwise(x))))))."""
  features: int
  stride: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    x = depthwise_conv(x.shape[-1], 3, self.stride, dtype=self.dtype, name="conv1")(x)
    x = relu(batch_norm(train, self.dtype, "bn1")(x))
    x = conv(self.features, 1, dtype=self.dtype, kernel_init=torch_default_kernel, name="conv2")(x)
    return relu(batch_norm(train, self.dtype, "bn2")(x))


class MobileNet(nn.Module):
  """MobileNet v1 backbone for CIFAR; blocks named layers_{i} as kuangliu's ``layers.{i}``."""
  cfg: Sequence[Union[int, Tuple[int, int]]] = MOBILENET_CFG
  stem_width: int = 32
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    x = conv(self.stem_width, 3, dtype=self.dtype, kernel_init=torch_default_kernel, name="conv1")(x)
    x = relu(batch_norm(train, self.dtype, "bn1")(x))
    for i, item in enumerate(self.cfg):
      width, stride = (item, 1) if isinstance(item, int) else item
      x = DepthwiseSeparableBlock(width, stride, dtype=self.dtype, name=f"layers_{i}")(x, train)
    return global_avg_pool(x)
