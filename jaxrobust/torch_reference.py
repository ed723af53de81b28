"""PyTorch re-statements of our models, attacks and train steps, for side-by-side benchmarks.

Everything here mirrors the way the reference PyTorch code does it, so that the benchmark
compares frameworks rather than algorithms:

* ``TorchClassifier``: in-model normalisation + backbone + 'head', with module names equal to
  our Flax module names (``backbone.conv1``, ``backbone.layer1_0.bn1``, ``head``), so
  ``port_flax_to_torch`` maps parameters by name. Backbones: ``small_cnn`` (TRADES SmallCNN, no
  dropout, as our default) and ``preact_resnet18`` (kuangliu PreActResNet18, optional width).
* ``pgd_linf``: the eager loop of torchattacks' ``PGD`` (uniform random start, mean CE,
  ``autograd.grad`` w.r.t. the input only, sign step, clamp to the ball then to [0, 1]).
* ``pgd_at_step`` / ``trades_step``: Madry / ``yaodongyu/TRADES`` train steps: ``model.eval()``
  during the attack, ``model.train()`` for the update, ``torch.optim.SGD`` with momentum and
  coupled weight decay (``make_sgd``).

PyTorch is imported lazily: importing this module never needs torch; calling anything that
does raises an ImportError that says how to install it.
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


@functools.lru_cache(maxsize=None)
def _classes():
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
    """TRADES small_cnn.SmallCNN: 4 valid 3x3 convs with two max-pools, fc200-fc200 (features)."""

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

  class PreActResNet(nn.Module):
    """kuangliu PreActResNet18 backbone (no final BN), globally average-pooled features."""

    def __init__(self, in_channels=3, stages=(2, 2, 2, 2), widths=(64, 128, 256, 512)):
      super().__init__()
      self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
      self.block_names = []
      c_in = widths[0]
      for stage, (n, width) in enumerate(zip(stages, widths)):
        for block in range(n):
          name = f"layer{stage + 1}_{block}"
          self.add_module(name, PreActBlock(c_in, width, 2 if stage > 0 and block == 0 else 1))
          self.block_names.append(name)
          c_in = width
      self.features = c_in

    def forward(self, x):
      out = self.conv1(x)
      for name in self.block_names:
        out = getattr(self, name)(out)
      return out.mean(dim=(2, 3))

  class TorchClassifier(nn.Module):
    """normalise -> backbone -> head (Linear), like our ImageClassifier with the linear head."""

    def __init__(self, backbone, num_classes, mean, std, channels):
      super().__init__()
      self.normalize = Normalize(mean, std, channels)
      self.backbone = backbone
      self.head = nn.Linear(backbone.features, num_classes)

    def forward(self, x):
      return self.head(self.backbone(self.normalize(x)))

  return {"SmallCNN": SmallCNN, "PreActResNet": PreActResNet, "TorchClassifier": TorchClassifier}


def build_torch_model(name: str, input_shape: Sequence[int], num_classes: int = 10, *, mean=None,
                      std=None, width: int = 64):
  """The torch twin of ``get_model(name, num_classes, mean=mean, std=std[, width=width])``.

  input_shape: (H, W, C) as for our models (the torch model takes NCHW).
  """
  classes = _classes()
  h, w, c = input_shape
  if name == "small_cnn":
    backbone = classes["SmallCNN"](in_channels=c, input_hw=(h, w))
  elif name == "preact_resnet18":
    backbone = classes["PreActResNet"](in_channels=c, widths=tuple(k * width // 64 for k in (64, 128, 256, 512)))
  else:
    raise ValueError(f"no torch reference for model {name!r}; available: small_cnn, preact_resnet18")
  return classes["TorchClassifier"](backbone, num_classes, mean, std, c)


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

  Layouts: conv kernels HWIO -> OIHW; Dense kernels (in, out) -> Linear weight (out, in). Our
  conv nets flatten feature maps in torch's (C, H, W) order (``cnn.flatten_chw``), so the first
  Linear after a flatten needs only the transpose, no row permutation. Every tensor in the torch
  state_dict must be filled and every Flax leaf used, else ValueError (a silent partial port would
  make the benchmark compare different networks).
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
  return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2)))


def to_numpy_images(x) -> np.ndarray:
  """NCHW torch tensor -> NHWC numpy array."""
  return x.detach().cpu().numpy().transpose(0, 2, 3, 1)


def pgd_linf(model, x, y, *, eps: float, step_size: float, steps: int, random_start: bool = True):
  """torchattacks ``PGD.forward`` (v3.5), inlined: returns x_adv (NCHW).

  Runs the model in whatever mode it is in (torchattacks does not switch it either).
  """
  torch = require_torch()
  loss_fn = torch.nn.CrossEntropyLoss()
  x = x.clone().detach()
  y = y.clone().detach()
  adv = x.clone().detach()
  if random_start:
    adv = adv + torch.empty_like(adv).uniform_(-eps, eps)
    adv = torch.clamp(adv, min=0, max=1).detach()
  for _ in range(steps):
    adv.requires_grad = True
    cost = loss_fn(model(adv), y)
    grad = torch.autograd.grad(cost, adv, retain_graph=False, create_graph=False)[0]
    adv = adv.detach() + step_size * grad.sign()
    delta = torch.clamp(adv - x, min=-eps, max=eps)
    adv = torch.clamp(x + delta, min=0, max=1).detach()
  return adv


def make_sgd(model, *, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4):
  """torch.optim.SGD with coupled L2 weight decay on every parameter (the reference scripts')."""
  torch = require_torch()
  return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def pgd_at_step(model, optimizer, x, y, *, eps: float, step_size: float, steps: int):
  """One Madry PGD-AT step: PGD in eval mode, then CE on x_adv in train mode. Returns the loss."""
  torch = require_torch()
  model.eval()
  x_adv = pgd_linf(model, x, y, eps=eps, step_size=step_size, steps=steps, random_start=True)
  model.train()
  optimizer.zero_grad()
  loss = torch.nn.functional.cross_entropy(model(x_adv), y)
  loss.backward()
  optimizer.step()
  return loss.detach()


def trades_step(model, optimizer, x, y, *, eps: float, step_size: float, steps: int, beta: float = 6.0):
  """One ``yaodongyu/TRADES`` ``trades_loss`` step + SGD update. Returns the loss.

  Deviation, for a like-for-like comparison: the reference recomputes ``softmax(model(x))`` in
  eval mode inside every attack step; its value never changes, so it is computed once here (as
  jaxrobust does). The update forwards x and x_adv in train mode once each, as jaxrobust does
  (the reference forwards x a second time for the KL target; the output is identical).
  """
  torch = require_torch()
  F = torch.nn.functional
  model.eval()
  with torch.no_grad():
    p_nat = F.softmax(model(x), dim=1)
  x_adv = x.detach() + 0.001 * torch.randn_like(x)
  for _ in range(steps):
    x_adv.requires_grad_()
    loss_kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_nat, reduction="sum")
    grad = torch.autograd.grad(loss_kl, [x_adv])[0]
    x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
    x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
    x_adv = torch.clamp(x_adv, 0.0, 1.0)
  model.train()
  x_adv = x_adv.detach()
  optimizer.zero_grad()
  logits = model(x)
  loss_natural = F.cross_entropy(logits, y)
  loss_robust = (1.0 / x.shape[0]) * F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1),
                                              reduction="sum")
  loss = loss_natural + beta * loss_robust
  loss.backward()
  optimizer.step()
  return loss.detach()


def thread_info() -> dict:
  """torch's thread settings, for the benchmark's machine record."""
  torch = require_torch()
  return {"torch_num_threads": torch.get_num_threads(),
          "torch_num_interop_threads": torch.get_num_interop_threads(),
          "torch_mkldnn": bool(torch.backends.mkldnn.is_available())}


def optional_torch() -> Optional[Any]:
  """torch if importable, else None (the benchmark's --no-torch fallback)."""
  try:
    import torch
  except ImportError:
    return None
  return torch
