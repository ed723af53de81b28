"""ResNets (He et al. 2016): ResNet-18 (CIFAR and ImageNet stems), PreAct ResNet-18 (He et al. 2016b), ResNet-20.

Each maps (B, H, W, C) -> globally average-pooled features (B, D); the head lives in
ImageClassifier. Convs use torchvision's kaiming-normal fan_out init and have no bias.

* CIFAR stem (MAIL/SPAT/TRADES ``resnet.py``): conv3x3/1, BN, ReLU, no max-pool.
* ImageNet stem (torchvision ``resnet18``, used unchanged on 32x32 by AdAP): conv7x7/2, BN, ReLU,
  max-pool 3x3/2; on 32x32 the last map is 1x1.
* PreAct ResNet-18 (kuangliu ``preact_resnet.py``): no BN after the stem and, by default, no final
  BN-ReLU before pooling (final_bn=True adds it, as in the PreActResNet18 of Rice et al. 2020).
* ResNet-34 / ResNet-50 (kuangliu ``resnet.py``, CIFAR stem): 3-4-6-3 basic blocks, or bottleneck blocks
  (1x1 -> 3x3 -> 1x1, expansion 4, 2048-d features) as RobustBench's Engstrom2019Robustness uses.
* ResNet-20 (He et al. 2016, CIFAR): 3 stages x 3 basic blocks, 16/32/64 channels. shortcut='B'
  (default) projects with 1x1 conv + BN where the shape changes (272,474 params with 10 classes,
  the same projection family as the Keras resnet_v1 the CCE code uses); shortcut='A' is the
  parameter-free subsample + zero-pad shortcut of the paper (269,722 params).
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import flax.linen as nn

from jaxrobust.models.common import (Conv, Dtype, batch_norm, conv, global_avg_pool, kaiming_normal_fan_out,
                                     max_pool, relu, swish)
from jaxrobust.types import Array

RESNET18_STAGES = (2, 2, 2, 2)
RESNET34_STAGES = (3, 4, 6, 3)
RESNET20_STAGES = (3, 3, 3)
_SHORTCUTS = ("A", "B")
ACTIVATIONS = {"relu": relu, "swish": swish}
# 'torch': symmetric k//2 padding; 'same': TensorFlow's SAME, which pads a stride-2 3x3 conv only at the
# bottom/right (the DeepMind WideResNets of Gowal et al. 2020 pad by hand this way).
PADDINGS = ("torch", "same")


class BasicBlock(nn.Module):
  """Post-activation basic block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))."""
  features: int
  stride: int = 1
  shortcut: str = "B"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    out = conv(self.features, 3, self.stride, dtype=self.dtype, name="conv1")(x)
    out = relu(batch_norm(train, self.dtype, "bn1")(out))
    out = conv(self.features, 3, 1, dtype=self.dtype, name="conv2")(out)
    out = batch_norm(train, self.dtype, "bn2")(out)
    in_features = x.shape[-1]
    if self.stride == 1 and in_features == self.features:
      shortcut = x
    elif self.shortcut == "A":
      # Option A: subsample spatially and zero-pad the new channels evenly on both sides.
      shortcut = x[:, ::self.stride, ::self.stride, :]
      extra = self.features - in_features
      shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    else:
      shortcut = conv(self.features, 1, self.stride, padding=0, dtype=self.dtype,
                      name="shortcut_conv")(x)
      shortcut = batch_norm(train, self.dtype, "shortcut_bn")(shortcut)
    return relu(out + shortcut)


class Bottleneck(nn.Module):
  """Post-activation bottleneck block (He et al. 2016): relu(bn(conv1x1(relu(bn(conv3x3(relu(bn(conv1x1(x))))))))
  + shortcut(x)), ``features`` wide inside and 4 * features out; the 3x3 conv carries the stride."""
  features: int
  stride: int = 1
  dtype: Dtype = jnp.float32
  expansion: int = 4

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    out_features = self.expansion * self.features
    out = relu(batch_norm(train, self.dtype, "bn1")(conv(self.features, 1, 1, dtype=self.dtype, name="conv1")(x)))
    out = conv(self.features, 3, self.stride, dtype=self.dtype, name="conv2")(out)
    out = relu(batch_norm(train, self.dtype, "bn2")(out))
    out = batch_norm(train, self.dtype, "bn3")(conv(out_features, 1, 1, dtype=self.dtype, name="conv3")(out))
    if self.stride == 1 and x.shape[-1] == out_features:
      shortcut = x
    else:
      shortcut = conv(out_features, 1, self.stride, padding=0, dtype=self.dtype, name="shortcut_conv")(x)
      shortcut = batch_norm(train, self.dtype, "shortcut_bn")(shortcut)
    return relu(out + shortcut)


def _same_padding(kernel: int, stride: int):
  """TensorFlow SAME padding of a conv on an even-sized map: the odd pixel goes bottom/right."""
  total = max(kernel - stride, 0)
  return (total // 2, total - total // 2)


class PreActBlock(nn.Module):
  """Pre-activation block (He et al. 2016b): conv(relu(bn(conv(relu(bn(x)))))) + shortcut, the 1x1 shortcut
  (when the shape changes) on relu(bn(x)). ``dropout_rate`` > 0 puts dropout between the two convolutions,
  as the wide block of Zagoruyko & Komodakis (2016) does.

  activation: 'relu' or 'swish' (the DeepMind nets of Gowal et al. 2020 / Rebuffi et al. 2021).
  padding: 'torch' or 'same' for the strided convs, see PADDINGS.
  shortcut_on_input: the shortcut conv reads x instead of relu(bn(x)), as the PreAct ResNet-18 of
    Wong et al. (2020) (RobustBench's ``PreActBlock``) and DeepMind's ``DMPreActResNet`` do.
  shortcut_kernel: 1, or 3 for DeepMind's ``DMPreActResNet``.
  """
  features: int
  stride: int = 1
  dtype: Dtype = jnp.float32
  dropout_rate: float = 0.0
  activation: str = "relu"
  padding: str = "torch"
  shortcut_on_input: bool = False
  shortcut_kernel: int = 1

  def _strided_conv(self, kernel: int, name: str) -> Conv:
    pad = _same_padding(kernel, self.stride) if self.padding == "same" else (kernel // 2, kernel // 2)
    return Conv(self.features, (kernel, kernel), strides=(self.stride, self.stride), padding=(pad, pad),
                use_bias=False, dtype=self.dtype, kernel_init=kaiming_normal_fan_out, name=name)

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    act = ACTIVATIONS[self.activation]
    pre = act(batch_norm(train, self.dtype, "bn1")(x))
    if self.stride == 1 and x.shape[-1] == self.features:
      shortcut = x
    else:
      shortcut = self._strided_conv(self.shortcut_kernel, "shortcut_conv")(x if self.shortcut_on_input else pre)
    out = self._strided_conv(3, "conv1")(pre)
    out = act(batch_norm(train, self.dtype, "bn2")(out))
    if self.dropout_rate > 0:
      out = nn.Dropout(self.dropout_rate, deterministic=not train)(out)
    out = conv(self.features, 3, 1, dtype=self.dtype, name="conv2")(out)
    return out + shortcut


class ResNet(nn.Module):
  """Post-activation ResNet of basic blocks; features (B, widths[-1]).

  stage_sizes: blocks per stage; widths: channels per stage (the stem has widths[0]).
  stem: 'cifar' (3x3/1, no pool) or 'imagenet' (7x7/2 + max-pool 3x3/2).
  block: 'basic' or 'bottleneck' (features (B, 4 * widths[-1])).
  Blocks are named layer{stage}_{block}, as torch's layer{stage}.{block}.
  """
  stage_sizes: Sequence[int] = RESNET18_STAGES
  widths: Sequence[int] = (64, 128, 256, 512)
  stem: str = "cifar"
  shortcut: str = "B"
  dtype: Dtype = jnp.float32
  block: str = "basic"

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if self.block not in ("basic", "bottleneck"):
      raise ValueError(f"unknown block {self.block!r}; expected 'basic' or 'bottleneck'")
    if self.stem not in ("cifar", "imagenet"):
      raise ValueError(f"unknown stem {self.stem!r}; expected 'cifar' or 'imagenet'")
    if self.shortcut not in _SHORTCUTS:
      raise ValueError(f"unknown shortcut {self.shortcut!r}; expected one of {_SHORTCUTS}")
    if self.stem == "cifar":
      x = conv(self.widths[0], 3, 1, dtype=self.dtype, name="conv1")(x)
      x = relu(batch_norm(train, self.dtype, "bn1")(x))
    else:
      x = conv(self.widths[0], 7, 2, dtype=self.dtype, name="conv1")(x)
      x = relu(batch_norm(train, self.dtype, "bn1")(x))
      x = max_pool(x, 3, 2, padding=1)
    for stage, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths)):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        name = f"layer{stage + 1}_{block}"
        if self.block == "bottleneck":
          x = Bottleneck(width, stride, dtype=self.dtype, name=name)(x, train)
        else:
          x = BasicBlock(width, stride, self.shortcut, dtype=self.dtype, name=name)(x, train)
    return global_avg_pool(x)


class PreActResNet(nn.Module):
  """Pre-activation ResNet (kuangliu); features (B, widths[-1]).

  activation / padding / shortcut_on_input / shortcut_kernel: as PreActBlock; with final_bn=True, 'swish',
  'same', True, 3 it is DeepMind's ``DMPreActResNet`` (Rebuffi et al. 2021).
  """
  stage_sizes: Sequence[int] = RESNET18_STAGES
  widths: Sequence[int] = (64, 128, 256, 512)
  final_bn: bool = False
  dtype: Dtype = jnp.float32
  shortcut_on_input: bool = False
  activation: str = "relu"
  padding: str = "torch"
  shortcut_kernel: int = 1

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    x = conv(self.widths[0], 3, 1, dtype=self.dtype, name="conv1")(x)
    for stage, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths)):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        x = PreActBlock(width, stride, dtype=self.dtype, shortcut_on_input=self.shortcut_on_input,
                        activation=self.activation, padding=self.padding, shortcut_kernel=self.shortcut_kernel,
                        name=f"layer{stage + 1}_{block}")(x, train)
    if self.final_bn:
      x = ACTIVATIONS[self.activation](batch_norm(train, self.dtype, "bn_final")(x))
    return global_avg_pool(x)


def _scaled(base: Sequence[int], width: int, reference: int) -> tuple:
  return tuple(w * width // reference for w in base)


def resnet18(*, width: int = 64, dtype: Dtype = jnp.float32) -> ResNet:
  """CIFAR ResNet-18 backbone (512-d features at width 64)."""
  return ResNet(RESNET18_STAGES, _scaled((64, 128, 256, 512), width, 64), stem="cifar", dtype=dtype)


def resnet18_imagenet(*, width: int = 64, dtype: Dtype = jnp.float32) -> ResNet:
  """torchvision resnet18 backbone (ImageNet stem), 512-d features at width 64."""
  return ResNet(RESNET18_STAGES, _scaled((64, 128, 256, 512), width, 64), stem="imagenet", dtype=dtype)


def resnet34(*, width: int = 64, dtype: Dtype = jnp.float32) -> ResNet:
  """CIFAR ResNet-34 backbone (512-d features at width 64)."""
  return ResNet(RESNET34_STAGES, _scaled((64, 128, 256, 512), width, 64), stem="cifar", dtype=dtype)


def resnet50(*, width: int = 64, dtype: Dtype = jnp.float32) -> ResNet:
  """CIFAR ResNet-50 backbone of bottleneck blocks (2048-d features at width 64)."""
  return ResNet(RESNET34_STAGES, _scaled((64, 128, 256, 512), width, 64), stem="cifar", dtype=dtype,
                block="bottleneck")


def preact_resnet18(*, width: int = 64, final_bn: bool = False, shortcut_on_input: bool = False,
                    dtype: Dtype = jnp.float32) -> PreActResNet:
  """PreAct ResNet-18 backbone, 512-d features at width 64."""
  return PreActResNet(RESNET18_STAGES, _scaled((64, 128, 256, 512), width, 64), final_bn=final_bn,
                      dtype=dtype, shortcut_on_input=shortcut_on_input)


def resnet20(*, width: int = 16, shortcut: str = "B", dtype: Dtype = jnp.float32) -> ResNet:
  """CIFAR ResNet-20 backbone, 64-d features at width 16."""
  return ResNet(RESNET20_STAGES, _scaled((16, 32, 64), width, 16), stem="cifar", shortcut=shortcut,
                dtype=dtype)
