"""PyTorch twins of jaxrobust's models, and the copy of Flax weights into them.

Each twin restates the reference PyTorch network the Flax model was ported from, with module
names equal to the Flax module names, so a state_dict key is a Flax path
(``backbone.layer1_0.bn1.weight`` <-> ``params['backbone']['layer1_0']['bn1']['scale']``):

* ``TorchClassifier``: in-model normalisation -> backbone -> ``head`` (Linear), as
  ``jaxrobust.models.ImageClassifier`` with the linear head; ``net(x, return_features=True)`` returns
  ``(logits, features)`` with the penultimate features (the backbone's output), as the Flax model's
  ``ModelOutput`` with ``return_features=True``.
* Backbones: ``SmallCNN`` (the MNIST net of Carlini & Wagner 2017 as in the TRADES code of
  Zhang et al. 2019, without dropout; with its options also the Keras CCE CNNs of Bui et al. 2021,
  flattened channel-last), ``LeNet5`` (LeCun et al. 1998, ReLU and max-pool),
  ``ResNet`` (He et al. 2016: CIFAR and ImageNet stems, shortcut A or B), ``PreActResNet``
  (He et al. 2016b, kuangliu's ``PreActResNet18``) and ``WideResNet`` (Zagoruyko & Komodakis
  2016, the TRADES/MART ``wideresnet.py``), and kuangliu/pytorch-cifar's ``MobileNet`` (Howard et al.
  2017), ``VGG`` ('VGG16', Simonyan & Zisserman 2015), ``GoogLeNet`` (Szegedy et al. 2015) and
  ``EfficientNet`` (B0, Tan & Le 2019), with flat module names (``layers_3`` for ``layers.3``,
  ``branch2_conv1`` for ``b2.0``).
* ``build_torch_model(name, input_shape, ...)``: the twin of ``jaxrobust.models.get_model``.
* ``port_flax_to_torch(variables, net)``: Flax variables -> the twin, checked leaf by leaf.
* ``digits_twin(params, kind)``: the softmax-regression / tanh-MLP digits models of the attack
  tests (plain parameter dicts, not Flax modules) as torch modules.

PyTorch is imported lazily: importing this module never needs torch; building a twin without it
raises an ImportError that names the pip command.
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Sequence, Tuple

import numpy as np

TORCH_PIN = "torch==2.13.0"


def require_torch():
  """Returns the torch module, or raises ImportError naming the pip command."""
  try:
    import torch
  except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"the PyTorch reference needs PyTorch; install it with `pip install {TORCH_PIN}` "
                      "(or `pip install 'jaxrobust[torch]'`)") from e
  return torch


def optional_torch() -> Optional[Any]:
  """torch if importable, else None."""
  try:
    import torch
  except ImportError:
    return None
  return torch


@functools.lru_cache(maxsize=None)
def _classes() -> dict:
  """Defines the nn.Module classes on first use (they subclass torch.nn.Module)."""
  torch = require_torch()
  nn = torch.nn
  F = torch.nn.functional

  class Normalize(nn.Module):
    """(x - mean) / std per channel; buffers are non-persistent so state_dict holds weights only."""

    def __init__(self, mean, std, channels):
      super().__init__()
      mean = torch.zeros(channels) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
      std = torch.ones(channels) if std is None else torch.as_tensor(std, dtype=torch.float32)
      self.register_buffer("mean", mean.reshape(1, -1, 1, 1).expand(1, channels, 1, 1).clone(),
                           persistent=False)
      self.register_buffer("std", std.reshape(1, -1, 1, 1).expand(1, channels, 1, 1).clone(),
                           persistent=False)

    def forward(self, x):
      return (x - self.mean) / self.std

  class SmallCNN(nn.Module):
    """conv-conv-pool-conv-conv-pool (3x3 convs, ``conv_padding``), then ``num_hidden_layers`` fc's
    of width ``hidden``, ReLU; features (B, hidden). Defaults: the TRADES SmallCNN (valid convs,
    torch flatten); flatten='hwc' flattens channel-last as the Keras CCE CNNs do."""

    def __init__(self, in_channels=1, input_hw=(28, 28), channels=(32, 64), hidden=200, conv_padding=0,
                 convs_per_stage=2, num_hidden_layers=2, flatten="chw"):
      super().__init__()
      self.flatten = flatten
      self.conv_names = []  # in forward order; None is the 2x2 max-pool that ends each stage
      h, w = input_hw
      c_in = in_channels
      for width in channels:
        for _ in range(convs_per_stage):
          name = f"conv{len([n for n in self.conv_names if n]) + 1}"
          self.add_module(name, nn.Conv2d(c_in, width, 3, padding=conv_padding))
          self.conv_names.append(name)
          c_in = width
          h, w = h + 2 * conv_padding - 2, w + 2 * conv_padding - 2
        self.conv_names.append(None)
        h, w = h // 2, w // 2
      d_in = c_in * h * w
      self.fc_names = [f"fc{i}" for i in range(1, num_hidden_layers + 1)]
      for name in self.fc_names:
        self.add_module(name, nn.Linear(d_in, hidden))
        d_in = hidden
      self.features = hidden

    def forward(self, x):
      for name in self.conv_names:
        x = F.max_pool2d(x, 2) if name is None else F.relu(getattr(self, name)(x))
      x = x.permute(0, 2, 3, 1).flatten(1) if self.flatten == "hwc" else x.flatten(1)
      for name in self.fc_names:
        x = F.relu(getattr(self, name)(x))
      return x

  class LeNet5(nn.Module):
    """conv6(5x5)-pool-conv16(5x5)-pool, fc120-fc84, ReLU; features (B, 84)."""

    def __init__(self, in_channels=1, input_hw=(28, 28), conv1_padding=2):
      super().__init__()
      self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=conv1_padding)
      self.conv2 = nn.Conv2d(6, 16, 5)
      h, w = input_hw
      h, w = (h + 2 * conv1_padding - 4) // 2, (w + 2 * conv1_padding - 4) // 2
      h, w = (h - 4) // 2, (w - 4) // 2
      self.fc1 = nn.Linear(16 * h * w, 120)
      self.fc2 = nn.Linear(120, 84)
      self.features = 84

    def forward(self, x):
      x = F.max_pool2d(F.relu(self.conv1(x)), 2)
      x = F.max_pool2d(F.relu(self.conv2(x)), 2)
      return F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))

  class BasicBlock(nn.Module):
    """Post-activation basic block; shortcut 'A' subsamples and zero-pads (akamaster's LambdaLayer),
    'B' projects with a 1x1 conv and BN."""

    def __init__(self, c_in, c_out, stride, shortcut="B"):
      super().__init__()
      self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(c_out)
      self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(c_out)
      self.kind = None if (stride == 1 and c_in == c_out) else shortcut
      self.pad = (c_out - c_in) // 2
      if self.kind == "B":
        self.shortcut_conv = nn.Conv2d(c_in, c_out, 1, stride, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
      out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
      if self.kind is None:
        shortcut = x
      elif self.kind == "A":
        shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
      else:
        shortcut = self.shortcut_bn(self.shortcut_conv(x))
      return F.relu(out + shortcut)

  class PreActBlock(nn.Module):
    """kuangliu PreActBlock; the shortcut conv reads relu(bn1(x)), as in the reference."""

    def __init__(self, c_in, c_out, stride):
      super().__init__()
      self.bn1 = nn.BatchNorm2d(c_in)
      self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(c_out)
      self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
      if stride != 1 or c_in != c_out:
        self.shortcut_conv = nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):
      out = F.relu(self.bn1(x))
      shortcut = self.shortcut_conv(out) if hasattr(self, "shortcut_conv") else x
      out = self.conv1(out)
      out = self.conv2(F.relu(self.bn2(out)))
      return out + shortcut

  class WideBlock(PreActBlock):
    """xternalz / TRADES ``wideresnet.BasicBlock`` (no dropout): PreActBlock's layers, with the forward
    written as the reference writes it (the same function; in a WideResNet the stride changes only
    where the width does)."""

    def forward(self, x):
      equal_in_out = not hasattr(self, "shortcut_conv")
      if not equal_in_out:
        x = F.relu(self.bn1(x))
        out = x
      else:
        out = F.relu(self.bn1(x))
      out = self.conv2(F.relu(self.bn2(self.conv1(out))))
      return (x if equal_in_out else self.shortcut_conv(x)) + out

  def add_blocks(net, c_in, stages, widths, make_block, prefix="layer"):
    """Adds blocks named {prefix}{stage}_{block} after a stem of c_in channels (stride 2 opens every
    stage after the first); sets net.features to the last width."""
    net.block_names = []
    for stage, (n, width) in enumerate(zip(stages, widths)):
      for block in range(n):
        name = f"{prefix}{stage + 1}_{block}"
        net.add_module(name, make_block(c_in, width, 2 if stage > 0 and block == 0 else 1))
        net.block_names.append(name)
        c_in = width
    net.features = c_in

  class ResNet(nn.Module):
    """Post-activation ResNet of basic blocks, globally average-pooled features.

    stem: 'cifar' (3x3/1 conv, BN, ReLU) or 'imagenet' (torchvision: 7x7/2 conv, BN, ReLU, 3x3/2 max-pool).
    """

    def __init__(self, in_channels=3, stages=(2, 2, 2, 2), widths=(64, 128, 256, 512), stem="cifar",
                 shortcut="B"):
      super().__init__()
      self.stem = stem
      if stem == "cifar":
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
      else:
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
      self.bn1 = nn.BatchNorm2d(widths[0])
      add_blocks(self, widths[0], stages, widths, lambda c_in, c_out, stride: BasicBlock(c_in, c_out, stride, shortcut))

    def forward(self, x):
      out = F.relu(self.bn1(self.conv1(x)))
      if self.stem == "imagenet":
        out = F.max_pool2d(out, 3, 2, 1)
      for name in self.block_names:
        out = getattr(self, name)(out)
      return out.mean(dim=(2, 3))

  class PreActResNet(nn.Module):
    """kuangliu PreActResNet18 backbone (no final BN), globally average-pooled features."""

    def __init__(self, in_channels=3, stages=(2, 2, 2, 2), widths=(64, 128, 256, 512)):
      super().__init__()
      self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
      add_blocks(self, widths[0], stages, widths, PreActBlock)

    def forward(self, x):
      out = self.conv1(x)
      for name in self.block_names:
        out = getattr(self, name)(out)
      return out.mean(dim=(2, 3))

  class WideResNet(nn.Module):
    """WRN-depth-widen backbone: depth = 6n + 4, final BN-ReLU, 8x8 average pool (32x32 inputs)."""

    def __init__(self, in_channels=3, depth=34, widen=10):
      super().__init__()
      n = (depth - 4) // 6
      self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
      add_blocks(self, 16, (n, n, n), (16 * widen, 32 * widen, 64 * widen), WideBlock, prefix="block")
      self.bn_final = nn.BatchNorm2d(self.features)

    def forward(self, x):
      out = self.conv1(x)
      for name in self.block_names:
        out = getattr(self, name)(out)
      out = F.relu(self.bn_final(out))
      return F.avg_pool2d(out, 8).flatten(1)

  # ---- kuangliu/pytorch-cifar nets (restated with flat, Flax-equal module names)

  class DepthwiseSeparableBlock(nn.Module):
    """kuangliu MobileNet Block: depthwise 3x3 - BN - ReLU, pointwise 1x1 - BN - ReLU."""

    def __init__(self, c_in, c_out, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False)
      self.bn1 = nn.BatchNorm2d(c_in)
      self.conv2 = nn.Conv2d(c_in, c_out, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x):
      return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))

  class MobileNet(nn.Module):
    """kuangliu MobileNet (v1, CIFAR): the last map is 2x2 on 32x32 inputs, avg_pool2d(2) pools it."""
    cfg = (64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024)

    def __init__(self, in_channels=3):
      super().__init__()
      self.conv1 = nn.Conv2d(in_channels, 32, 3, 1, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(32)
      c_in, self.block_names = 32, []
      for i, item in enumerate(self.cfg):
        width, stride = (item, 1) if isinstance(item, int) else item
        self.add_module(f"layers_{i}", DepthwiseSeparableBlock(c_in, width, stride))
        self.block_names.append(f"layers_{i}")
        c_in = width
      self.features = c_in

    def forward(self, x):
      out = F.relu(self.bn1(self.conv1(x)))
      for name in self.block_names:
        out = getattr(self, name)(out)
      return F.avg_pool2d(out, 2).flatten(1)

  class VGG(nn.Module):
    """kuangliu VGG('VGG16'): [conv3x3 (bias) - BN - ReLU] x 13 with max-pools, AvgPool2d(1), flatten."""
    cfg = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

    def __init__(self, in_channels=3):
      super().__init__()
      c_in, index, self.order = in_channels, 0, []
      for item in self.cfg:
        if item == "M":
          self.order.append(None)
          continue
        index += 1
        self.add_module(f"conv{index}", nn.Conv2d(c_in, item, 3, padding=1))
        self.add_module(f"bn{index}", nn.BatchNorm2d(item))
        self.order.append(index)
        c_in = item
      self.features = c_in

    def forward(self, x):
      for index in self.order:
        if index is None:
          x = F.max_pool2d(x, 2, 2)
        else:
          x = F.relu(getattr(self, f"bn{index}")(getattr(self, f"conv{index}")(x)))
      return F.avg_pool2d(x, 1, 1).flatten(1)

  class Inception(nn.Module):
    """kuangliu Inception: 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | maxpool3x3/1-1x1, conv (bias) - BN - ReLU each."""

    def __init__(self, c_in, n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_planes):
      super().__init__()
      self.branches = {1: [(c_in, n1x1, 1)], 2: [(c_in, n3x3red, 1), (n3x3red, n3x3, 3)],
                       3: [(c_in, n5x5red, 1), (n5x5red, n5x5, 3), (n5x5, n5x5, 3)],
                       4: [(c_in, pool_planes, 1)]}
      for branch, layers in self.branches.items():
        for layer, (a, b, k) in enumerate(layers, start=1):
          self.add_module(f"branch{branch}_conv{layer}", nn.Conv2d(a, b, k, padding=k // 2))
          self.add_module(f"branch{branch}_bn{layer}", nn.BatchNorm2d(b))
      self.out_channels = n1x1 + n3x3 + n5x5 + pool_planes

    def forward(self, x):
      outputs = []
      for branch, layers in self.branches.items():
        y = F.max_pool2d(x, 3, 1, 1) if branch == 4 else x
        for layer in range(1, len(layers) + 1):
          y = F.relu(getattr(self, f"branch{branch}_bn{layer}")(getattr(self, f"branch{branch}_conv{layer}")(y)))
        outputs.append(y)
      return torch.cat(outputs, 1)

  class GoogLeNet(nn.Module):
    """kuangliu GoogLeNet; its final AvgPool2d(8) on the 8x8 map of a 32x32 input is a global mean,
    written as one here so that smaller test inputs work too."""
    cfg = (("a3", (64, 96, 128, 16, 32, 32)), ("b3", (128, 128, 192, 32, 96, 64)), None,
           ("a4", (192, 96, 208, 16, 48, 64)), ("b4", (160, 112, 224, 24, 64, 64)),
           ("c4", (128, 128, 256, 24, 64, 64)), ("d4", (112, 144, 288, 32, 64, 64)),
           ("e4", (256, 160, 320, 32, 128, 128)), None,
           ("a5", (256, 160, 320, 32, 128, 128)), ("b5", (384, 192, 384, 48, 128, 128)))

    def __init__(self, in_channels=3):
      super().__init__()
      self.pre_conv = nn.Conv2d(in_channels, 192, 3, padding=1)
      self.pre_bn = nn.BatchNorm2d(192)
      c_in = 192
      for entry in self.cfg:
        if entry is not None:
          self.add_module(entry[0], Inception(c_in, *entry[1]))
          c_in = getattr(self, entry[0]).out_channels
      self.features = c_in

    def forward(self, x):
      out = F.relu(self.pre_bn(self.pre_conv(x)))
      for entry in self.cfg:
        out = F.max_pool2d(out, 3, 2, 1) if entry is None else getattr(self, entry[0])(out)
      return out.mean(dim=(2, 3))

  def swish(x):
    return x * x.sigmoid()

  class SE(nn.Module):
    """kuangliu SE: x * sigmoid(se2(swish(se1(avgpool(x))))), 1x1 convs with bias."""

    def __init__(self, channels, se_channels):
      super().__init__()
      self.se1 = nn.Conv2d(channels, se_channels, 1)
      self.se2 = nn.Conv2d(se_channels, channels, 1)

    def forward(self, x):
      w = F.adaptive_avg_pool2d(x, (1, 1))
      return x * self.se2(swish(self.se1(w))).sigmoid()

  class MBConvBlock(nn.Module):
    """kuangliu EfficientNet Block. kuangliu_unused: also build the expansion conv1/bn1 of an
    expansion-1 block, which kuangliu creates and never calls (for its parameter count only)."""

    def __init__(self, c_in, c_out, kernel, stride, expansion, drop_rate=0.0, kuangliu_unused=False):
      super().__init__()
      self.expansion, self.drop_rate = expansion, drop_rate
      channels = expansion * c_in
      if expansion != 1 or kuangliu_unused:
        self.conv1 = nn.Conv2d(c_in, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
      self.conv2 = nn.Conv2d(channels, channels, kernel, stride, 1 if kernel == 3 else 2, groups=channels,
                             bias=False)
      self.bn2 = nn.BatchNorm2d(channels)
      self.se = SE(channels, int(c_in * 0.25))
      self.conv3 = nn.Conv2d(channels, c_out, 1, bias=False)
      self.bn3 = nn.BatchNorm2d(c_out)
      self.has_skip = stride == 1 and c_in == c_out

    def forward(self, x):
      out = x if self.expansion == 1 else swish(self.bn1(self.conv1(x)))
      out = swish(self.bn2(self.conv2(out)))
      out = self.bn3(self.conv3(self.se(out)))
      if self.has_skip:
        if self.training and self.drop_rate > 0:  # kuangliu's drop_connect, out of place
          keep = 1.0 - self.drop_rate
          mask = torch.empty([x.shape[0], 1, 1, 1], dtype=x.dtype, device=x.device).bernoulli_(keep)
          out = out / keep * mask
        out = out + x
      return out

  class EfficientNet(nn.Module):
    """kuangliu EfficientNetB0, with block i's drop-connect rate drop_connect_rate * i / 16 (kuangliu's
    formula has i stuck at 0, i.e. drop_connect_rate=0) and dropout before the classifier."""
    stages = ((1, 16, 1, 3, 1), (6, 24, 2, 3, 2), (6, 40, 2, 5, 2), (6, 80, 3, 3, 2), (6, 112, 3, 5, 1),
              (6, 192, 4, 5, 2), (6, 320, 1, 3, 1))

    def __init__(self, in_channels=3, dropout_rate=0.2, drop_connect_rate=0.0, kuangliu_unused=False):
      super().__init__()
      self.dropout_rate = dropout_rate
      self.conv1 = nn.Conv2d(in_channels, 32, 3, 1, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(32)
      c_in, total, self.block_names = 32, sum(s[2] for s in self.stages), []
      for expansion, width, blocks, kernel, stride in self.stages:
        for block in range(blocks):
          name = f"layers_{len(self.block_names)}"
          self.add_module(name, MBConvBlock(c_in, width, kernel, stride if block == 0 else 1, expansion,
                                            drop_connect_rate * len(self.block_names) / total, kuangliu_unused))
          self.block_names.append(name)
          c_in = width
      self.features = c_in

    def forward(self, x):
      out = swish(self.bn1(self.conv1(x)))
      for name in self.block_names:
        out = getattr(self, name)(out)
      out = F.adaptive_avg_pool2d(out, 1).flatten(1)
      if self.training and self.dropout_rate > 0:
        out = F.dropout(out, p=self.dropout_rate)
      return out

  class TorchClassifier(nn.Module):
    """normalise -> backbone -> head (Linear), like ImageClassifier with the linear head."""

    def __init__(self, backbone, num_classes, mean, std, channels):
      super().__init__()
      self.normalize = Normalize(mean, std, channels)
      self.backbone = backbone
      self.head = nn.Linear(backbone.features, num_classes)

    def forward(self, x, return_features=False):
      features = self.backbone(self.normalize(x))
      logits = self.head(features)
      # (logits, features) as the Flax model's ModelOutput(logits, features) with return_features=True
      # (the ASCL / ADR code's ``model(x, return_z=True)``).
      return (logits, features) if return_features else logits

  class DigitsNet(nn.Module):
    """z = W vec(x) + b ('linear') or W2 tanh(W1 vec(x) + b1) + b2 ('mlp'), flattening in NHWC order."""

    def __init__(self, kind, d_in, hidden, num_classes):
      super().__init__()
      self.kind = kind
      if kind == "linear":
        self.fc = nn.Linear(d_in, num_classes)
      else:
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):  # x: NCHW -> NHWC before flattening, as the JAX model flattens
      h = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
      if self.kind == "linear":
        return self.fc(h)
      return self.fc2(torch.tanh(self.fc1(h)))

  return {"SmallCNN": SmallCNN, "LeNet5": LeNet5, "ResNet": ResNet, "PreActResNet": PreActResNet,
          "WideResNet": WideResNet, "MobileNet": MobileNet, "VGG": VGG, "GoogLeNet": GoogLeNet,
          "EfficientNet": EfficientNet, "TorchClassifier": TorchClassifier, "DigitsNet": DigitsNet}


RESNET18_STAGES, RESNET20_STAGES = (2, 2, 2, 2), (3, 3, 3)
TORCH_MODEL_NAMES = ("small_cnn", "lenet5", "resnet18", "resnet18_imagenet", "preact_resnet18", "resnet20",
                     "wide_resnet", "wrn34_10", "wrn28_10", "cce_cnn_cifar10", "cce_cnn_cifar100", "cce_cnn_mnist",
                     "mobilenet", "vgg16", "googlenet", "efficientnet_b0")
# The fixed SmallCNN options of the CCE CNNs (as models.registry's partials; init does not matter here).
_CCE_CNNS = {
  "cce_cnn_cifar10": dict(channels=(64, 128), hidden=256),
  "cce_cnn_cifar100": dict(channels=(64, 128), hidden=256, convs_per_stage=3, num_hidden_layers=3),
  "cce_cnn_mnist": dict(channels=(32, 64), hidden=200),
}
_KUANGLIU = {"mobilenet": "MobileNet", "vgg16": "VGG", "googlenet": "GoogLeNet", "efficientnet_b0": "EfficientNet"}


def _scaled(base: Sequence[int], width: int, reference: int) -> tuple:
  return tuple(k * width // reference for k in base)


def build_torch_model(name: str, input_shape: Sequence[int], num_classes: int = 10, *, mean=None, std=None,
                      **kwargs):
  """The torch twin of ``get_model(name, num_classes, mean=mean, std=std, **kwargs)``.

  input_shape: (H, W, C) as for the Flax models (the twin takes NCHW). kwargs as get_model's:
  width (ResNets), shortcut (resnet20), depth/widen (wide_resnet), channels/hidden/conv_padding/
  convs_per_stage/num_hidden_layers/flatten (small_cnn; the cce_cnn_* fix theirs), conv1_padding (lenet5),
  dropout_rate/drop_connect_rate (efficientnet_b0; plus kuangliu_unused=True to build the expansion
  layers kuangliu creates but never uses, for its parameter count; such a twin does not port).
  """
  classes = _classes()
  h, w, c = input_shape
  if name == "small_cnn":
    backbone = classes["SmallCNN"](in_channels=c, input_hw=(h, w), **kwargs)
  elif name == "lenet5":
    backbone = classes["LeNet5"](in_channels=c, input_hw=(h, w), **kwargs)
  elif name in ("resnet18", "resnet18_imagenet"):
    widths = _scaled((64, 128, 256, 512), kwargs.pop("width", 64), 64)
    backbone = classes["ResNet"](c, RESNET18_STAGES, widths, stem="imagenet" if name.endswith("imagenet") else "cifar",
                                 **kwargs)
  elif name == "preact_resnet18":
    widths = _scaled((64, 128, 256, 512), kwargs.pop("width", 64), 64)
    backbone = classes["PreActResNet"](c, RESNET18_STAGES, widths, **kwargs)
  elif name == "resnet20":
    widths = _scaled((16, 32, 64), kwargs.pop("width", 16), 16)
    backbone = classes["ResNet"](c, RESNET20_STAGES, widths, stem="cifar", **kwargs)
  elif name in _CCE_CNNS:
    backbone = classes["SmallCNN"](in_channels=c, input_hw=(h, w), conv_padding=1, flatten="hwc",
                                   **dict(_CCE_CNNS[name], **kwargs))
  elif name in _KUANGLIU:
    backbone = classes[_KUANGLIU[name]](c, **kwargs)
  elif name in ("wide_resnet", "wrn34_10", "wrn28_10"):
    depth = {"wrn34_10": 34, "wrn28_10": 28}.get(name)
    backbone = classes["WideResNet"](c, **(kwargs if depth is None else dict(kwargs, depth=depth, widen=10)))
  else:
    raise ValueError(f"no torch twin for model {name!r}; available: {', '.join(TORCH_MODEL_NAMES)}")
  return classes["TorchClassifier"](backbone, num_classes, mean, std, c)


def digits_twin(params, kind: str):
  """The digits model ``x -> apply(params, x)`` of the attack tests as a torch module in eval mode.

  params: {'w', 'b'} (kind 'linear') or {'w1', 'b1', 'w2', 'b2'} (kind 'mlp'), kernels (in, out).
  """
  torch = require_torch()
  first = np.asarray(params["w" if kind == "linear" else "w1"])
  net = _classes()["DigitsNet"](kind, first.shape[0], None if kind == "linear" else first.shape[1],
                                np.asarray(params["b" if kind == "linear" else "b2"]).shape[0])
  layers = {"fc": ("w", "b")} if kind == "linear" else {"fc1": ("w1", "b1"), "fc2": ("w2", "b2")}
  with torch.no_grad():
    for layer, (kernel, bias) in layers.items():
      getattr(net, layer).weight.copy_(torch.tensor(np.asarray(params[kernel]).T.copy()))
      getattr(net, layer).bias.copy_(torch.tensor(np.asarray(params[bias]).copy()))
  return net.eval()


def _flax_leaf(variables, key: str) -> Tuple[np.ndarray, str]:
  """The Flax array a torch state_dict key maps to (names are equal by construction)."""
  *path, leaf = key.split(".")
  if leaf in ("running_mean", "running_var"):
    node, name = variables["batch_stats"], {"running_mean": "mean", "running_var": "var"}[leaf]
  else:
    node, name = variables["params"], leaf
  for part in path:
    node = node[part]
  if leaf == "weight":
    name = "kernel" if "kernel" in node else "scale"  # conv/linear kernel vs BN scale
  return np.asarray(node[name]), name


def port_flax_to_torch(variables, torch_model) -> Any:
  """Copies Flax variables (params + batch_stats) into a twin torch model, in place; returns it.

  Layouts: conv kernels HWIO -> OIHW (depthwise (k, k, 1, C) -> (C, 1, k, k)); Dense kernels (in, out)
  -> Linear weight (out, in). Each twin flattens feature maps in its Flax model's order (torch's
  (C, H, W), ``models.cnn.flatten_chw``; (H, W, C) for the Keras CCE CNNs), so the first Linear after
  a flatten needs only the transpose, no row permutation. Every tensor in the
  torch state_dict must be filled and every Flax leaf used, else ValueError (a silent partial port
  would make a benchmark compare different networks).
  """
  torch = require_torch()
  state = torch_model.state_dict()
  new_state = {}
  used = 0
  for key, tensor in state.items():
    if key.endswith("num_batches_tracked"):
      new_state[key] = tensor
      continue
    try:
      value, name = _flax_leaf(variables, key)
    except (KeyError, TypeError) as e:
      raise ValueError(f"torch parameter {key!r} has no Flax counterpart ({e})") from None
    if name == "kernel" and value.ndim == 4:
      value = value.transpose(3, 2, 0, 1)
    elif name == "kernel" and value.ndim == 2:
      value = value.T
    if tuple(value.shape) != tuple(tensor.shape):
      raise ValueError(f"shape mismatch for {key!r}: Flax {value.shape} vs torch {tuple(tensor.shape)}")
    # A writable copy: torch may write into the tensor (BN running stats update in place).
    new_state[key] = torch.from_numpy(np.array(value, dtype=np.float32, copy=True, order="C"))
    used += 1
  import jax
  total = len(jax.tree_util.tree_leaves(dict(variables)))
  if used != total:
    raise ValueError(f"ported {used} of {total} Flax arrays; the torch model does not match the Flax one")
  torch_model.load_state_dict(new_state)
  return torch_model


def to_torch_images(x) -> Any:
  """NHWC numpy/JAX batch -> contiguous NCHW float32 torch tensor."""
  torch = require_torch()
  # A writable copy: torch warns on (and must not write into) a read-only view of a JAX array.
  return torch.from_numpy(np.array(np.asarray(x, np.float32).transpose(0, 3, 1, 2), order="C"))


def to_numpy_images(x) -> np.ndarray:
  """NCHW torch tensor -> NHWC numpy array."""
  return x.detach().cpu().numpy().transpose(0, 2, 3, 1)
