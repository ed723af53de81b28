"""Forward-pass parity with PyTorch restatements of the reference nets (weights copied over).

The torch nets (``benchmarks.torch_models``) restate the reference code (torchvision resnet18,
kuangliu ResNet18 / PreActResNet18 / MobileNet / VGG16 / GoogLeNet / EfficientNetB0, akamaster-style
ResNet-20, xternalz/TRADES WideResNet, TRADES SmallCNN, the Keras CCE CNNs, LeNet-5), here at reduced
width or input size, with module names equal to our Flax module names so
state_dict keys map to Flax paths directly. Matching outputs checks padding, strides, pooling,
shortcut placement, BN semantics (eval and train, incl. the running-mean momentum) and the flatten
order.
"""

import jax
import numpy as np
import pytest

from jaxrobust import models

torch = pytest.importorskip("torch")
tnn = torch.nn

from benchmarks.torch_models import build_torch_model  # noqa: E402  (needs torch)

pytestmark = pytest.mark.torch


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
    for part in path:
      node = node[part]
    assert node[name] is None, key
    expected_shape = abstract[collection]
    for part in path + [name]:
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


# case: (model name, get_model / build_torch_model kwargs, input shape)
CASES = {
  "small_cnn": ("small_cnn", {}, (28, 28, 1)),
  "lenet5": ("lenet5", {}, (28, 28, 1)),
  "resnet18": ("resnet18", {"width": 8}, (32, 32, 3)),
  "resnet18_imagenet": ("resnet18_imagenet", {"width": 8}, (32, 32, 3)),
  "preact_resnet18": ("preact_resnet18", {"width": 8}, (32, 32, 3)),
  "resnet20_A": ("resnet20", {"width": 4, "shortcut": "A"}, (32, 32, 3)),
  "wide_resnet": ("wide_resnet", {"depth": 10, "widen": 2}, (32, 32, 3)),
  "cce_cnn_cifar10": ("cce_cnn_cifar10", {}, (32, 32, 3)),
  "cce_cnn_cifar100": ("cce_cnn_cifar100", {}, (32, 32, 3)),
  "cce_cnn_mnist": ("cce_cnn_mnist", {}, (28, 28, 1)),
  "mobilenet": ("mobilenet", {}, (32, 32, 3)),
  "vgg16": ("vgg16", {}, (32, 32, 3)),
  "googlenet": ("googlenet", {}, (8, 8, 3)),  # 8 -> 4 -> 2 through the two max-pools
  # Dropout off: train-mode masks are random on both sides (tested in test_models_contract).
  "efficientnet_b0": ("efficientnet_b0", {"dropout_rate": 0.0}, (32, 32, 3)),
}


# GoogLeNet's parity (~20 s on 2 quiet cores) runs with -m slow; every other net runs by default.
@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c == "googlenet" else c
                                  for c in sorted(CASES)])
def test_matches_pytorch_reference_in_eval_and_train_mode(case):
  name, kwargs, shape = CASES[case]
  torch.manual_seed(0)
  net = build_torch_model(name, shape, **kwargs)
  randomise_bn(net, seed=1)
  module = models.get_model(name, **kwargs)
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
  names = ("resnet18", "resnet18_imagenet", "preact_resnet18", "resnet20", "wrn34_10", "wrn28_10", "small_cnn",
           "lenet5", "cce_cnn_cifar10", "cce_cnn_cifar100", "cce_cnn_mnist", "mobilenet", "vgg16", "googlenet",
           "efficientnet_b0")
  for name in names:
    shape = (28, 28, 1) if name in ("small_cnn", "lenet5", "cce_cnn_mnist") else (32, 32, 3)
    with torch.device("meta"):
      net = build_torch_model(name, shape)
    module = models.get_model(name)
    abstract = jax.eval_shape(lambda key: models.init_model(module, key, shape), jax.random.key(0))
    torch_count = sum(p.numel() for p in net.parameters())
    assert models.count_params(abstract) == torch_count, name


def test_efficientnet_b0_differs_from_kuangliu_only_by_its_unused_expansion_layers():
  # kuangliu's first block (expansion 1) builds conv1 (32 -> 32, 1x1) and bn1 and never calls them.
  with torch.device("meta"):
    net = build_torch_model("efficientnet_b0", (32, 32, 3), kuangliu_unused=True)
  module = models.get_model("efficientnet_b0")
  abstract = jax.eval_shape(lambda key: models.init_model(module, key, (32, 32, 3)), jax.random.key(0))
  kuangliu_count = sum(p.numel() for p in net.parameters())
  assert kuangliu_count == 3_599_686
  assert models.count_params(abstract) == kuangliu_count - (32 * 32 + 2 * 32)
