"""WideResNet (Zagoruyko & Komodakis 2016), as the TRADES/MART/MAIL/SPAT ``wideresnet.py`` builds it.

depth = 6n + 4 with n blocks per stage, stage widths 16k/32k/64k for widen factor k; final
BN-ReLU, global average pooling, features (B, 64k). WRN-34-10: n = 5, 640-d features.
The reference's unused ``sub_block1`` is not built (46,160,474 params for WRN-34-10 / 10 classes
counts without it). GAIRAT's "WRN-32-10" (``Wide_ResNet_Madry``) counts depth as 6n + 2, so it is
the same network as WRN-34-10 here.
"""

from __future__ import annotations

import jax.numpy as jnp
import flax.linen as nn

from jaxrobust.models.common import Dtype, batch_norm, conv, global_avg_pool, relu
from jaxrobust.models.resnet import PreActBlock
from jaxrobust.types import Array


class WideResNet(nn.Module):
  """WRN-depth-widen backbone. dropout_rate > 0 needs rngs={'dropout': key} in train mode."""
  depth: int = 34
  widen: int = 10
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if self.depth < 10 or (self.depth - 4) % 6:
      raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1, got {self.depth}")
    blocks = (self.depth - 4) // 6
    x = conv(16, 3, 1, dtype=self.dtype, name="conv1")(x)
    for stage, width in enumerate((16 * self.widen, 32 * self.widen, 64 * self.widen)):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        x = PreActBlock(width, stride, dtype=self.dtype, dropout_rate=self.dropout_rate,
                        name=f"block{stage + 1}_{block}")(x, train)
    x = relu(batch_norm(train, self.dtype, "bn_final")(x))
    return global_avg_pool(x)
