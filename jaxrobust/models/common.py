"""Shared building blocks: input checks, in-model normalisation, PyTorch-matching layers.

Every convolution pads explicitly the way PyTorch's ``padding=k//2`` does (Flax's 'SAME' pads
stride-2 convolutions asymmetrically, which would shift every feature map by one pixel relative to
the reference nets).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxrobust.models.conv import Conv, max_pool  # noqa: F401  (max_pool re-exported)
from jaxrobust.types import Array

Dtype = Any

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)

DEFAULT_INPUT_SHAPES = {
  "mnist": (28, 28, 1),
  "fashion_mnist": (28, 28, 1),
  "cifar10": (32, 32, 3),
  "cifar100": (32, 32, 3),
  "svhn": (32, 32, 3),
}

# torchvision / WRN / TRADES init: N(0, 2 / (k*k*out_channels)).
kaiming_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch.nn.init.kaiming_normal_ defaults (mode='fan_in'): N(0, 2 / (k*k*in_channels)).
kaiming_normal_fan_in = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
# Keras he_normal: truncated normal with variance 2 / fan_in (Keras >= 2.2.3 rescales the truncated
# draw to the full variance, as Flax's 'truncated_normal' does).
keras_he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
# PyTorch's default Conv/Linear weight init, kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in)).
torch_default_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def check_image_batch(x: Array) -> None:
  """Trace-time check that x is a float (B, H, W, C) batch."""
  if x.ndim != 4:
    raise ValueError(f"expected an image batch of shape (B, H, W, C) (NHWC), got shape {tuple(x.shape)}")
  if x.shape[1] in (1, 3) and x.shape[3] > 3:  # (B, C, H, W): a channel axis of 1 or 3 in second place
    raise ValueError(f"the image batch of shape {tuple(x.shape)} looks channels-first (NCHW, as in PyTorch); models "
                     "take channels-last (B, H, W, C) images: pass x.transpose(0, 2, 3, 1)")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"expected a floating image batch in [0, 1], got dtype {x.dtype}; "
                    "convert with x.astype(jnp.float32) / 255 first")


def normalise(x: Array, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]) -> Array:
  """(x - mean) / std per channel; None leaves that side as the identity."""
  channels = x.shape[-1]
  for name, value in (("mean", mean), ("std", std)):
    if value is not None and len(tuple(value)) not in (1, channels):
      raise ValueError(f"{name} has {len(tuple(value))} entries but the input has {channels} channels")
  if mean is not None:
    x = x - jnp.asarray(mean, dtype=x.dtype)
  if std is not None:
    x = x / jnp.asarray(std, dtype=x.dtype)
  return x


def batch_norm(train: bool, dtype: Dtype, name: Optional[str] = None) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (torch momentum 0.1 == Flax momentum 0.9, eps 1e-5).

  One difference remains: torch updates running_var with the unbiased batch variance, Flax with
  the biased one (a factor n/(n-1), n = B*H*W, negligible for the usual batch sizes).
  """
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                      name=name)


def conv(features: int, kernel: int, stride: int = 1, *, padding: Optional[int] = None,
         use_bias: bool = False, dtype: Dtype = jnp.float32, kernel_init=kaiming_normal_fan_out,
         name: Optional[str] = None) -> Conv:
  """Square conv with PyTorch's symmetric padding (default k//2) and no bias by default."""
  pad = kernel // 2 if padding is None else padding
  return Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
              use_bias=use_bias, dtype=dtype, kernel_init=kernel_init, name=name)


def depthwise_conv(channels: int, kernel: int, stride: int = 1, *, dtype: Dtype = jnp.float32,
                   kernel_init=torch_default_kernel, name: Optional[str] = None) -> nn.Conv:
  """k x k depthwise conv (torch ``groups=channels``), PyTorch's symmetric padding k//2, no bias.

  Kernel (k, k, 1, channels), torch's (channels, 1, k, k) transposed. A plain ``nn.Conv``: the
  fast-gradient ``Conv`` of models/conv.py has no feature groups.
  """
  pad = kernel // 2
  return nn.Conv(channels, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                 feature_group_count=channels, use_bias=False, dtype=dtype, kernel_init=kernel_init,
                 name=name)


def global_avg_pool(x: Array) -> Array:
  """(B, H, W, C) -> (B, C). Equals the reference nets' avg_pool2d(4 or 8) on 32x32 inputs."""
  return jnp.mean(x, axis=(1, 2))


relu = jax.nn.relu
swish = jax.nn.swish  # x * sigmoid(x)
