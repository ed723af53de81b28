"""PyTorch twins of jaxrobust's models, and the copy of Flax weights into them.

Each twin restates the reference PyTorch network the Flax model was ported from, with module
names equal to the Flax module names, so a state_dict key is a Flax path
(``backbone.layer1_0.bn1.weight`` <-> ``params['backbone']['layer1_0']['bn1']['scale']``):

* ``TorchClassifier``: in-model normalisation -> backbone -> ``head`` (Linear), as
  ``jaxrobust.models.ImageClassifier`` with the linear head; ``net(x, return_features=True)`` returns
  ``(logits, features)`` with the penultimate features (the backbone's output), as the Flax model's
  ``ModelOutput`` with ``return_features=True``.
* Backbones: ``SmallCNN`` (the MNIST net of Carlini & Wagner 2017 as in the TRADES code of
  Zhang et al. 2019, without dropout), ``LeNet5`` (LeCun et al. 1998, ReLU and max-pool),
  ``ResNet`` (He et al. 2016: CIFAR and ImageNet stems, shortcut A or B), ``PreActResNet``
  (He et al. 2016b, kuangliu's ``PreActResNet18``) and ``WideResNet`` (Zagoruyko & Komodakis
  2016, the TRADES/MART ``wideresnet.py``).
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
    """conv32-conv32-pool-conv64-conv64-pool (3x3 valid convs), fc200-fc200; features (B, hidden)."""

    def __init__(self, in_channels=1, input_hw=(28, 28), channels=(32, 64), hidden=200):
      super().__init__()
      c1, c2 = channels
      self.conv1 = nn.Conv2d(in_channels, c1, 3)
      self.conv2 = nn.Conv2d(c1, c1, 3)
      self.conv3 = nn.Conv2d(c1, c2, 3)
      self.conv4 = nn.Conv2d(c2, c2, 3)
      h, w = input_hw
      h, w = (h - 4) // 2, (w - 4) // 2  # two valid convs, then pool 2
      h, w = (h - 4) // 2, (w - 4) // 2
      self.fc1 = nn.Linear(c2 * h * w, hidden)
      self.fc2 = nn.Linear(hidden, hidden)
      self.features = hidden

    def forward(self, x):
      x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
      x = F.max_pool2d(F.relu(self.conv4(F.relu(self.conv3(x)))), 2)
      return F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))

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
          "WideResNet": WideResNet, "TorchClassifier": TorchClassifier, "DigitsNet": DigitsNet}


RESNET18_STAGES, RESNET20_STAGES = (2, 2, 2, 2), (3, 3, 3)
TORCH_MODEL_NAMES = ("small_cnn", "lenet5", "resnet18", "resnet18_imagenet", "preact_resnet18", "resnet20",
                     "wide_resnet", "wrn34_10", "wrn28_10")


def _scaled(base: Sequence[int], width: int, reference: int) -> tuple:
  return tuple(k * width // reference for k in base)


def build_torch_model(name: str, input_shape: Sequence[int], num_classes: int = 10, *, mean=None, std=None,
                      **kwargs):
  """The torch twin of ``get_model(name, num_classes, mean=mean, std=std, **kwargs)``.

  input_shape: (H, W, C) as for the Flax models (the twin takes NCHW). kwargs as get_model's:
  width (ResNets), shortcut (resnet20), depth/widen (wide_resnet), channels/hidden (small_cnn),
  conv1_padding (lenet5).
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

  Layouts: conv kernels HWIO -> OIHW; Dense kernels (in, out) -> Linear weight (out, in). The Flax
  conv nets flatten feature maps in torch's (C, H, W) order (``models.cnn.flatten_chw``), so the
  first Linear after a flatten needs only the transpose, no row permutation. Every tensor in the
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
