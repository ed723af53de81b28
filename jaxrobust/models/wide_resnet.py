"""WideResNet (Zagoruyko & Komodakis 2016), as the TRADES/MART/MAIL/SPAT ``wideresnet.py`` builds it.

depth = 6n + 4 with n blocks per stage, stage widths 16k/32k/64k for widen factor k; final
BN-ReLU, global average pooling, features (B, 64k). WRN-34-10: n = 5, 640-d features.
The reference's unused ``sub_block1`` is not built (46,160,474 params for WRN-34-10 / 10 classes
counts without it). GAIRAT's "WRN-32-10" (``Wide_ResNet_Madry``) counts depth as 6n + 2, so it is
the same network as WRN-34-10 here.

activation='swish', padding='same' give the DeepMind WideResNet (``DMWideResNet``) of Gowal et al.
(2020) and Rebuffi et al. (2021), the strongest RobustBench CIFAR-10 entries: the same pre-activation
blocks with Swish and TensorFlow SAME padding on the strided convs (its CIFAR-10 mean/std normalisation is the
ImageClassifier's mean/std).
"""

from __future__ import annotations

import jax.numpy as jnp
import flax.linen as nn

from jaxrobust.models.common import Dtype, batch_norm, conv, global_avg_pool
from jaxrobust.models.resnet import ACTIVATIONS, PADDINGS, PreActBlock
from jaxrobust.types import Array


class WideResNet(nn.Module):
  """WRN-depth-widen backbone. dropout_rate > 0 needs rngs={'dropout': key} in train mode."""
  depth: int = 34
  widen: int = 10
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  activation: str = "relu"
  padding: str = "torch"

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if self.depth < 10 or (self.depth - 4) % 6:
      raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1, got {self.depth}")
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"WideResNet activation must be one of {tuple(ACTIVATIONS)}; got {self.activation!r}")
    if self.padding not in PADDINGS:
      raise ValueError(f"WideResNet padding must be one of {PADDINGS}; got {self.padding!r}")
    blocks = (self.depth - 4) // 6
    x = conv(16, 3, 1, dtype=self.dtype, name="conv1")(x)
    for stage, width in enumerate((16 * self.widen, 32 * self.widen, 64 * self.widen)):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        x = PreActBlock(width, stride, dtype=self.dtype, dropout_rate=self.dropout_rate,
                        activation=self.activation, padding=self.padding,
                        name=f"block{stage + 1}_{block}")(x, train)
    x = ACTIVATIONS[self.activation](batch_norm(train, self.dtype, "bn_final")(x))
    return global_avg_pool(x)
