"""VGG-16 with batch norm (Simonyan & Zisserman 2015), as kuangliu/pytorch-cifar ``vgg.py`` builds 'VGG16'.

13 x [conv3x3 (with bias) - BN - ReLU] with five 2x2 max-pools, then kuangliu's AvgPool2d(1) (the
identity) and a flatten: on 32x32 inputs the map is 1x1 x 512, so features are (B, 512), the input
of kuangliu's ``Linear(512, K)``. The flatten is in torch's (C, H, W) order (``cnn.flatten_chw``),
which matters only for inputs larger than 32x32. Convs keep torch's default init, as kuangliu.
14,728,266 params with 10 classes, as kuangliu's ``VGG('VGG16')``.
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import jax.numpy as jnp
import flax.linen as nn

from jaxrobust.models.cnn import flatten_chw
from jaxrobust.models.common import Dtype, batch_norm, conv, max_pool, relu, torch_default_kernel
from jaxrobust.types import Array

# Conv widths; 'M' is a 2x2 max-pool (kuangliu's cfg['VGG16']).
VGG16_CFG: Tuple[Union[int, str], ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                          512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
  """VGG backbone from a cfg; convs and BNs named conv{i} / bn{i}, i = 1, 2, ... in order."""
  cfg: Sequence[Union[int, str]] = VGG16_CFG
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    index = 0
    for item in self.cfg:
      if item == "M":
        x = max_pool(x, 2, 2)
        continue
      index += 1
      x = conv(int(item), 3, use_bias=True, dtype=self.dtype, kernel_init=torch_default_kernel,
               name=f"conv{index}")(x)
      x = relu(batch_norm(train, self.dtype, f"bn{index}")(x))
    return flatten_chw(x)
