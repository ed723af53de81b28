"""Forward-pass parity with PyTorch re-statements of the reference nets (weights copied over).

The torch nets below restate the reference code (torchvision resnet18, kuangliu ResNet18 /
PreActResNet18, akamaster-style ResNet-20, xternalz/TRADES WideResNet, TRADES SmallCNN, LeNet-5)
at reduced width, with attribute names equal to our Flax module names so state_dict keys map to
Flax paths directly. Matching outputs checks padding, strides, pooling, shortcut placement, BN
semantics (eval and train, incl. the running-mean momentum) and the flatten order.
"""

import jax
import numpy as np
import pytest

from jaxrobust import models

torch = pytest.importorskip("torch")
tnn = torch.nn
F = torch.nn.functional

pytestmark = pytest.mark.torch


class TorchBasicBlock(tnn.Module):
  def __init__(self, c_in, c_out, stride, shortcut="B"):
    super().__init__()
    self.conv1 = tnn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
    self.bn1 = tnn.BatchNorm2d(c_out)
    self.conv2 = tnn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
    self.bn2 = tnn.BatchNorm2d(c_out)
    self.kind = None if (stride == 1 and c_in == c_out) else shortcut
    self.pad = (c_out - c_in) // 2
    if self.kind == "B":
      self.shortcut_conv = tnn.Conv2d(c_in, c_out, 1, stride, bias=False)
      self.shortcut_bn = tnn.BatchNorm2d(c_out)

  def forward(self, x):
    out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    if self.kind is None:
      shortcut = x
    elif self.kind == "A":  # akamaster LambdaLayer
      shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
    else:
      shortcut = self.shortcut_bn(self.shortcut_conv(x))
    return F.relu(out + shortcut)


class TorchPreActBlock(tnn.Module):
  def __init__(self, c_in, c_out, stride):
    super().__init__()
    self.bn1 = tnn.BatchNorm2d(c_in)
    self.conv1 = tnn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
    self.bn2 = tnn.BatchNorm2d(c_out)
    self.conv2 = tnn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
    if stride != 1 or c_in != c_out:
      self.shortcut_conv = tnn.Conv2d(c_in, c_out, 1, stride, bias=False)

  def forward(self, x):
    out = F.relu(self.bn1(x))
    shortcut = self.shortcut_conv(out) if hasattr(self, "shortcut_conv") else x
    out = self.conv1(out)
    out = self.conv2(F.relu(self.bn2(out)))
    return out + shortcut


class TorchWideBlock(tnn.Module):  # xternalz / TRADES wideresnet.BasicBlock
  def __init__(self, c_in, c_out, stride):
    super().__init__()
    self.bn1 = tnn.BatchNorm2d(c_in)
    self.conv1 = tnn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
    self.bn2 = tnn.BatchNorm2d(c_out)
    self.conv2 = tnn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
    self.equal_in_out = c_in == c_out
    if not self.equal_in_out:
      self.shortcut_conv = tnn.Conv2d(c_in, c_out, 1, stride, 0, bias=False)

  def forward(self, x):
    if not self.equal_in_out:
      x = F.relu(self.bn1(x))
      out = x
    else:
      out = F.relu(self.bn1(x))
    out = self.conv2(F.relu(self.bn2(self.conv1(out))))
    return (x if self.equal_in_out else self.shortcut_conv(x)) + out


class TorchResNet(tnn.Module):
  def __init__(self, stages, widths, stem="cifar", shortcut="B", preact=False, num_classes=10):
    super().__init__()
    self.stem, self.preact = stem, preact
    if stem == "cifar":
      self.conv1 = tnn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
    else:
      self.conv1 = tnn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
    if not preact:
      self.bn1 = tnn.BatchNorm2d(widths[0])
    self.blocks = []
    c_in = widths[0]
    for stage, (n, width) in enumerate(zip(stages, widths)):
      for block in range(n):
        stride = 2 if stage > 0 and block == 0 else 1
        module = (TorchPreActBlock(c_in, width, stride) if preact
                  else TorchBasicBlock(c_in, width, stride, shortcut))
        name = f"layer{stage + 1}_{block}"
        setattr(self, name, module)
        self.blocks.append(name)
        c_in = width
    self.head = tnn.Linear(c_in, num_classes)

  def forward(self, x):
    out = self.conv1(x)
    if not self.preact:
      out = F.relu(self.bn1(out))
    if self.stem == "imagenet":
      out = F.max_pool2d(out, 3, 2, 1)
    for name in self.blocks:
      out = getattr(self, name)(out)
    return self.head(F.adaptive_avg_pool2d(out, 1).flatten(1))


class TorchWideResNet(tnn.Module):
  def __init__(self, depth, widen, num_classes=10):
    super().__init__()
    n = (depth - 4) // 6
    self.conv1 = tnn.Conv2d(3, 16, 3, 1, 1, bias=False)
    self.blocks = []
    c_in = 16
    for stage, width in enumerate((16 * widen, 32 * widen, 64 * widen)):
      for block in range(n):
        name = f"block{stage + 1}_{block}"
        setattr(self, name, TorchWideBlock(c_in, width, 2 if stage > 0 and block == 0 else 1))
        self.blocks.append(name)
        c_in = width
    self.bn_final = tnn.BatchNorm2d(c_in)
    self.head = tnn.Linear(c_in, num_classes)

  def forward(self, x):
    out = self.conv1(x)
    for name in self.blocks:
      out = getattr(self, name)(out)
    out = F.relu(self.bn_final(out))
    return self.head(F.avg_pool2d(out, 8).flatten(1))


class TorchSmallCNN(tnn.Module):  # TRADES small_cnn.SmallCNN (dropout omitted: eval-mode parity)
  def __init__(self, c_in=1, num_classes=10):
    super().__init__()
    self.conv1 = tnn.Conv2d(c_in, 32, 3)
    self.conv2 = tnn.Conv2d(32, 32, 3)
    self.conv3 = tnn.Conv2d(32, 64, 3)
    self.conv4 = tnn.Conv2d(64, 64, 3)
    self.fc1 = tnn.Linear(64 * 4 * 4, 200)
    self.fc2 = tnn.Linear(200, 200)
    self.head = tnn.Linear(200, num_classes)

  def forward(self, x):
    x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
    x = F.max_pool2d(F.relu(self.conv4(F.relu(self.conv3(x)))), 2)
    x = F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))
    return self.head(x)


class TorchLeNet5(tnn.Module):
  def __init__(self, num_classes=10):
    super().__init__()
    self.conv1 = tnn.Conv2d(1, 6, 5, padding=2)
    self.conv2 = tnn.Conv2d(6, 16, 5)
    self.fc1 = tnn.Linear(400, 120)
    self.fc2 = tnn.Linear(120, 84)
    self.head = tnn.Linear(84, num_classes)

  def forward(self, x):
    x = F.max_pool2d(F.relu(self.conv1(x)), 2)
    x = F.max_pool2d(F.relu(self.conv2(x)), 2)
    return self.head(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


def torch_to_flax(state_dict, abstract):
  """Maps torch state_dict entries onto a Flax variables tree with the same module names."""
  variables = jax.tree_util.tree_map(lambda leaf: None, abstract)
  filled = 0
  for key, tensor in state_dict.items():
    *path, leaf = key.split(".")
    if leaf == "num_batches_tracked":
      continue
    value = tensor.detach().numpy()
    collection = "params"
    if leaf == "weight":
      if value.ndim == 4:
        name, value = "kernel", value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
      elif value.ndim == 2:
        name, value = "kernel", value.T
      else:
        name = "scale"
    elif leaf == "bias":
      name = "bias"
    else:
      collection, name = "batch_stats", {"running_mean": "mean", "running_var": "var"}[leaf]
    node = variables[collection]
    for part in ([] if path[0] == "head" else ["backbone"]) + path:
      node = node[part]
    assert node[name] is None, key
    expected_shape = abstract[collection]
    for part in ([] if path[0] == "head" else ["backbone"]) + path + [name]:
      expected_shape = expected_shape[part]
    assert value.shape == expected_shape.shape, (key, value.shape, expected_shape.shape)
    node[name] = np.array(value, copy=True)  # torch updates running stats in place
    filled += 1
  assert filled == len(jax.tree_util.tree_leaves(abstract))  # every Flax variable was set
  return variables


def randomise_bn(net, seed):
  """Non-trivial BN affine parameters and running statistics, so eval-mode BN is exercised."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in net.modules():
      if isinstance(module, tnn.BatchNorm2d):
        c = module.num_features
        module.weight.copy_(1 + 0.2 * torch.randn(c, generator=gen))
        module.bias.copy_(0.2 * torch.randn(c, generator=gen))
        module.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
        module.running_var.copy_(0.5 + torch.rand(c, generator=gen))


CASES = {
  "small_cnn": (lambda: TorchSmallCNN(), lambda: models.get_model("small_cnn"), (28, 28, 1)),
  "lenet5": (lambda: TorchLeNet5(), lambda: models.get_model("lenet5"), (28, 28, 1)),
  "resnet18": (lambda: TorchResNet((2, 2, 2, 2), (8, 16, 32, 64)),
               lambda: models.get_model("resnet18", width=8), (32, 32, 3)),
  "resnet18_imagenet": (lambda: TorchResNet((2, 2, 2, 2), (8, 16, 32, 64), stem="imagenet"),
                        lambda: models.get_model("resnet18_imagenet", width=8), (32, 32, 3)),
  "preact_resnet18": (lambda: TorchResNet((2, 2, 2, 2), (8, 16, 32, 64), preact=True),
                      lambda: models.get_model("preact_resnet18", width=8), (32, 32, 3)),
  "resnet20_A": (lambda: TorchResNet((3, 3, 3), (4, 8, 16), shortcut="A"),
                 lambda: models.get_model("resnet20", width=4, shortcut="A"), (32, 32, 3)),
  "wide_resnet": (lambda: TorchWideResNet(10, 2), lambda: models.get_model("wide_resnet", depth=10, widen=2),
                  (32, 32, 3)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_pytorch_reference_in_eval_and_train_mode(case):
  make_torch, make_flax, shape = CASES[case]
  torch.manual_seed(0)
  net = make_torch()
  randomise_bn(net, seed=1)
  module = make_flax()
  abstract = jax.eval_shape(lambda key: models.init_model(module, key, shape), jax.random.key(0))
  variables = torch_to_flax(net.state_dict(), abstract)
  x = np.random.default_rng(2).random((4,) + shape, dtype=np.float32)
  x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())

  net.eval()
  with torch.no_grad():
    expected = net(x_torch).numpy()
  np.testing.assert_allclose(models.make_apply(module)(variables, x), expected, rtol=1e-4, atol=1e-4)

  if "batch_stats" not in variables:
    return
  net.train()
  with torch.no_grad():
    expected = net(x_torch).numpy()
  logits, updates = module.apply(variables, x, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=1e-3)
  # Running means follow torch's momentum-0.1 update. (Running variances differ by torch's
  # unbiased n/(n-1) factor, so they are not compared.)
  torch_means = torch_to_flax(net.state_dict(), abstract)["batch_stats"]
  flax_means = updates["batch_stats"]
  jax.tree_util.tree_map_with_path(
      lambda path, ours, theirs: None if path[-1].key != "mean" else np.testing.assert_allclose(
          ours, theirs, rtol=1e-4, atol=1e-5), flax_means, torch_means)


def test_full_size_torch_references_have_the_documented_parameter_counts():
  with torch.device("meta"):
    counts = {
      "resnet18": TorchResNet((2, 2, 2, 2), (64, 128, 256, 512)),
      "resnet18_imagenet": TorchResNet((2, 2, 2, 2), (64, 128, 256, 512), stem="imagenet"),
      "preact_resnet18": TorchResNet((2, 2, 2, 2), (64, 128, 256, 512), preact=True),
      "resnet20": TorchResNet((3, 3, 3), (16, 32, 64)),
      "wrn34_10": TorchWideResNet(34, 10),
      "wrn28_10": TorchWideResNet(28, 10),
      "small_cnn": TorchSmallCNN(),
      "lenet5": TorchLeNet5(),
    }
  for name, net in counts.items():
    shape = (28, 28, 1) if name in ("small_cnn", "lenet5") else (32, 32, 3)
    module = models.get_model(name)
    abstract = jax.eval_shape(lambda key: models.init_model(module, key, shape), jax.random.key(0))
    torch_count = sum(p.numel() for p in net.parameters())
    assert models.count_params(abstract) == torch_count, name
