"""The model contract every other part of jaxrobust codes against (see jaxrobust/models)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust import models
from jaxrobust.types import ModelOutput

MNIST = (28, 28, 1)
CIFAR = (32, 32, 3)
SMALL_NETS = ("mlp", "small_cnn", "lenet5", "cce_cnn_mnist")


def input_shape(name):
  return MNIST if name in SMALL_NETS else CIFAR


def abstract_variables(module, shape):
  return jax.eval_shape(lambda key: models.init_model(module, key, shape), jax.random.key(0))


def random_variables(module, shape, seed):
  """Variables with the init's structure, filled from numpy (no per-shape jax.random compiles).

  Kernels ~ N(0, 2 / fan_in); BN scales near 1 and running variances in [0.5, 1.5], so eval-mode
  batch norm is not the identity; every other vector ~ N(0, 0.1^2).
  """
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = getattr(path[-1], "key", "")
    if leaf.ndim >= 2:
      fan_in = int(np.prod(leaf.shape[:-1]))
      return jnp.asarray(rng.normal(0.0, math.sqrt(2.0 / fan_in), leaf.shape), jnp.float32)
    if name == "scale":
      return jnp.asarray(1.0 + 0.1 * rng.normal(size=leaf.shape), jnp.float32)
    if name == "var":
      return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), jnp.float32)
    return jnp.asarray(0.1 * rng.normal(size=leaf.shape), jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, abstract_variables(module, shape))


def images(seed, batch, shape):
  return jnp.asarray(np.random.default_rng(seed).random((batch,) + shape, dtype=np.float32))


@pytest.fixture(scope="module")
def resnet20_tiny():
  module = models.get_model("resnet20", width=4)
  return module, random_variables(module, CIFAR, seed=0)


# ---------------------------------------------------------------- shapes, heads, collections


FEATURE_DIMS = {"mlp": 64, "small_cnn": 200, "lenet5": 84, "resnet18": 512, "resnet18_imagenet": 512,
                "preact_resnet18": 512, "resnet20": 64, "wrn34_10": 640, "wrn28_10": 640,
                "wrn32_10": 640, "wide_resnet": 640, "cce_cnn_cifar10": 256, "cce_cnn_cifar100": 256,
                "cce_cnn_mnist": 200, "mobilenet": 1024, "vgg16": 512, "googlenet": 1024,
                "efficientnet_b0": 320, "resnet34": 512, "resnet50": 2048, "wrn34_20": 1280, "wrn70_16": 1024,
                "dm_wrn28_10": 640, "dm_wrn34_20": 1280, "dm_wrn70_16": 1024, "dm_preact_resnet18": 512}


# the big imported-architecture sizes only differ from wrn28_10 / dm_wrn28_10 / resnet34 in depth and width
_BIG = ("resnet50", "wrn34_20", "wrn70_16", "dm_wrn34_20", "dm_wrn70_16")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _BIG else n
                                  for n in models.MODEL_NAMES if n != "ensemble"])  # ensembles: test_ensemble.py
def test_output_shapes_dtypes_and_collections(name):
  shape = input_shape(name)
  x = jax.ShapeDtypeStruct((3,) + shape, jnp.float32)
  for head, k in (("linear", 7), ("single_logit", 1), ("cosine", 7)):
    module = models.get_model(name, num_classes=7, head=head)
    variables = abstract_variables(module, shape)
    out = jax.eval_shape(models.make_features_apply(module), variables, x)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (3, k) and out.logits.dtype == jnp.float32
    assert out.features.shape == (3, FEATURE_DIMS[name])
    assert out.features.dtype == jnp.float32
    assert ("batch_stats" in variables) == (name not in models.BN_FREE_MODELS)
    assert set(variables) <= {"params", "batch_stats"}
    assert set(variables["params"]) == {"backbone", "head"}
  logits = jax.eval_shape(models.make_apply(module), variables, x)
  assert logits.shape == (3, 7) and logits.dtype == jnp.float32


def test_model_names_and_unknowns():
  assert set(models.MODEL_NAMES) == {"mlp", "small_cnn", "lenet5", "preact_resnet18", "resnet18",
                                     "resnet18_imagenet", "resnet20", "wrn34_10", "wrn28_10",
                                     "wrn32_10", "wide_resnet", "cce_cnn_cifar10", "cce_cnn_cifar100",
                                     "cce_cnn_mnist", "mobilenet", "vgg16", "googlenet", "efficientnet_b0",
                                     "resnet34", "resnet50", "wrn34_20", "wrn70_16", "dm_wrn28_10", "dm_wrn34_20",
                                     "dm_wrn70_16", "dm_preact_resnet18", "ensemble"}
  assert set(models.BN_FREE_MODELS) == {"mlp", "small_cnn", "lenet5", "cce_cnn_cifar10", "cce_cnn_cifar100",
                                        "cce_cnn_mnist"}
  with pytest.raises(ValueError) as info:
    models.get_model("resnet19")
  for name in models.MODEL_NAMES:
    assert name in str(info.value)
  with pytest.raises(ValueError, match="head"):
    models.get_model("mlp", head="arcface")
  with pytest.raises(ValueError, match="6n"):
    abstract_variables(models.get_model("wide_resnet", depth=33, widen=1), CIFAR)


# ---------------------------------------------------------------- parameter counts


def conv_params(c_in, c_out, k, bias):
  return c_in * c_out * k * k + (c_out if bias else 0)


def dense_params(d_in, d_out):
  return d_in * d_out + d_out


# SmallCNN on MNIST: valid 3x3 convs 28 -> 26 -> 24 -> pool 12 -> 10 -> 8 -> pool 4.
SMALL_CNN_PARAMS = (conv_params(1, 32, 3, True) + conv_params(32, 32, 3, True)
                    + conv_params(32, 64, 3, True) + conv_params(64, 64, 3, True)
                    + dense_params(64 * 4 * 4, 200) + dense_params(200, 200) + dense_params(200, 10))
# LeNet-5 on MNIST (conv1 padding 2): 28 -> 28 -> pool 14 -> 10 -> pool 5.
LENET5_PARAMS = (conv_params(1, 6, 5, True) + conv_params(6, 16, 5, True) + dense_params(400, 120)
                 + dense_params(120, 84) + dense_params(84, 10))


def cce_cnn_params(in_channels, channels, convs_per_stage, hidden, hidden_layers, side, num_classes=10):
  """The CCE CNNs: 'same' 3x3 convs with bias, a 2x2 pool per stage, FCs of width hidden, head."""
  total, c_in = 0, in_channels
  for width in channels:
    for _ in range(convs_per_stage):
      total += conv_params(c_in, width, 3, True)
      c_in = width
    side //= 2
  d_in = c_in * side * side
  for _ in range(hidden_layers):
    total += dense_params(d_in, hidden)
    d_in = hidden
  return total + dense_params(hidden, num_classes)


def resnet20_params(projection_shortcuts):
  bn = lambda c: 2 * c
  total = conv_params(3, 16, 3, False) + bn(16) + dense_params(64, 10)
  c_in = 16
  for width in (16, 32, 64):
    for block in range(3):
      total += conv_params(c_in, width, 3, False) + conv_params(width, width, 3, False) + 2 * bn(width)
      if c_in != width and projection_shortcuts:
        total += conv_params(c_in, width, 1, False) + bn(width)
      c_in = width
  return total


EXPECTED_PARAMS = {
  "small_cnn": SMALL_CNN_PARAMS,              # 312,202
  "lenet5": LENET5_PARAMS,                    # 61,706
  "resnet20": resnet20_params(True),          # 272,474 (1x1 conv + BN projections, the default)
  "preact_resnet18": 11_171_146,              # kuangliu PreActResNet18
  "resnet18": 11_173_962,                     # kuangliu / MAIL / SPAT ResNet18
  "resnet18_imagenet": 11_181_642,            # torchvision resnet18, fc -> Linear(512, 10)
  "wrn34_10": 46_160_474,
  "wrn32_10": 46_160_474,                     # GAIRAT's depth-32 Madry WRN is the same network
  "wrn28_10": 36_479_194,
  "cce_cnn_cifar10": cce_cnn_params(3, (64, 128), 2, 256, 2, 32),    # 2,425,930
  "cce_cnn_cifar100": cce_cnn_params(3, (64, 128), 3, 256, 3, 32),   # 2,676,234 (10 classes)
  "cce_cnn_mnist": cce_cnn_params(1, (32, 64), 2, 200, 2, 28),       # 734,602
  "mobilenet": 3_217_226,                     # kuangliu MobileNet
  "vgg16": 14_728_266,                        # kuangliu VGG('VGG16')
  "googlenet": 6_166_250,                     # kuangliu GoogLeNet
  "efficientnet_b0": 3_598_598,               # kuangliu EfficientNetB0 less its 1,088 unused params
}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_counts(name):
  variables = abstract_variables(models.get_model(name), input_shape(name))
  assert models.count_params(variables["params"]) == EXPECTED_PARAMS[name]
  assert models.count_params(variables) == EXPECTED_PARAMS[name]  # 'params' only, not batch_stats


def test_parameter_count_variants():
  assert SMALL_CNN_PARAMS == 312_202 and LENET5_PARAMS == 61_706
  count = lambda *args, **kw: models.count_params(abstract_variables(models.get_model(*args, **kw), CIFAR))
  assert count("resnet20", shortcut="A") == resnet20_params(False) == 269_722
  assert count("preact_resnet18", final_bn=True) == 11_171_146 + 2 * 512
  assert count("resnet18_imagenet", head="single_logit") == 11_181_642 - dense_params(512, 10) + dense_params(512, 1)
  assert count("resnet18", head="cosine") == 11_173_962  # cosine head: same kernel + bias
  assert count("wide_resnet", depth=28, widen=10) == 36_479_194
  assert count("resnet18", num_classes=100) == 11_173_962 + 512 * 90 + 90
  assert (cce_cnn_params(3, (64, 128), 2, 256, 2, 32), cce_cnn_params(3, (64, 128), 3, 256, 3, 32),
          cce_cnn_params(1, (32, 64), 2, 200, 2, 28)) == (2_425_930, 2_676_234, 734_602)
  assert count("cce_cnn_cifar100", num_classes=100) == cce_cnn_params(3, (64, 128), 3, 256, 3, 32, 100)
  for name, dim in (("mobilenet", 1024), ("vgg16", 512), ("googlenet", 1024), ("efficientnet_b0", 320)):
    assert count(name, num_classes=100) == EXPECTED_PARAMS[name] + dim * 90 + 90, name


# ---------------------------------------------------------------- init


def test_init_model_builds_variables_from_either_input_shape():
  module = models.get_model("mlp", head="cosine")
  variables = models.init_model(module, jax.random.key(0), MNIST)
  assert set(variables) == {"params"}
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(variables))
  # The cosine head starts with unit-norm class vectors, so no projection is needed before step 1.
  np.testing.assert_allclose(np.linalg.norm(variables["params"]["head"]["cosine_kernel"], axis=0), 1.0,
                             rtol=1e-5)
  module = models.get_model("mlp", num_classes=7, head="single_logit")
  variables = abstract_variables(module, (1,) + MNIST)  # (B, H, W, C) works too
  assert variables["params"]["head"]["kernel"].shape == (64, 1)


def test_cce_cnn_init_is_keras_he_normal_and_glorot_uniform():
  module = models.get_model("cce_cnn_cifar10")
  params = models.init_model(module, jax.random.key(3), CIFAR)["params"]["backbone"]
  kernel = params["conv4"]["kernel"]  # 3x3, 128 -> 128: fan_in 1152
  std = math.sqrt(2.0 / (3 * 3 * 128))
  assert abs(float(jnp.std(kernel)) / std - 1.0) < 0.02
  # Truncated at two standard deviations of the pre-truncation normal (std / 0.8796), as Keras.
  assert float(jnp.max(jnp.abs(kernel))) <= 2 * std / 0.87962566 + 1e-6
  dense = params["fc1"]["kernel"]  # Keras flattens 8x8x128 channel-last: 8192 -> 256
  assert dense.shape == (8 * 8 * 128, 256)
  limit = math.sqrt(6.0 / (8192 + 256))
  assert float(jnp.max(jnp.abs(dense))) <= limit and float(jnp.max(jnp.abs(dense))) > 0.99 * limit
  for layer in ("conv1", "fc1", "fc2"):
    np.testing.assert_array_equal(params[layer]["bias"], 0.0)


def test_resnet_block_init_is_kaiming_normal_fan_out():
  block = models.resnet.BasicBlock(128)
  variables = block.init(jax.random.key(2), jnp.zeros((1, 4, 4, 128)), train=False)
  expected_std = math.sqrt(2.0 / (3 * 3 * 128))  # torchvision: N(0, 2 / (k*k*out_channels))
  for conv_name in ("conv1", "conv2"):
    kernel = variables["params"][conv_name]["kernel"]
    assert abs(float(jnp.std(kernel)) / expected_std - 1.0) < 0.02
    assert abs(float(jnp.mean(kernel))) < 0.02 * expected_std
  np.testing.assert_array_equal(variables["params"]["bn1"]["scale"], 1.0)
  np.testing.assert_array_equal(variables["params"]["bn1"]["bias"], 0.0)
  np.testing.assert_array_equal(variables["batch_stats"]["bn1"]["var"], 1.0)
  assert models.DEFAULT_INPUT_SHAPES["cifar10"] == CIFAR and models.DEFAULT_INPUT_SHAPES["mnist"] == MNIST


# ---------------------------------------------------------------- behaviour


def test_normalisation_lives_inside_the_model(resnet20_tiny):
  plain, variables = resnet20_tiny
  normalised = models.get_model("resnet20", width=4, mean=models.CIFAR10_MEAN, std=models.CIFAR10_STD)
  x = images(1, 4, CIFAR)
  mean, std = jnp.asarray(models.CIFAR10_MEAN), jnp.asarray(models.CIFAR10_STD)
  np.testing.assert_allclose(models.make_apply(normalised)(variables, x),
                             models.make_apply(plain)(variables, (x - mean) / std), rtol=1e-5, atol=1e-5)
  assert models.MNIST_MEAN == (0.1307,) and models.IMAGENET_STD == (0.229, 0.224, 0.225)
  with pytest.raises(ValueError, match="channels"):
    abstract_variables(models.get_model("mlp", mean=(0.5, 0.5)), CIFAR)


def test_batch_norm_train_vs_eval_and_per_example_independence(resnet20_tiny):
  module, variables = resnet20_tiny
  x = images(2, 4, CIFAR)

  _, updates = module.apply(variables, x, train=True, mutable=["batch_stats"])
  changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"],
                                   updates["batch_stats"])
  assert all(jax.tree_util.tree_leaves(changed))
  # First BN: running <- 0.9 * running + 0.1 * batch statistic (PyTorch's momentum 0.1).
  conv_out = jax.lax.conv_general_dilated(
      x, variables["params"]["backbone"]["conv1"]["kernel"], (1, 1), ((1, 1), (1, 1)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  old, new = variables["batch_stats"]["backbone"]["bn1"], updates["batch_stats"]["backbone"]["bn1"]
  np.testing.assert_allclose(new["mean"], 0.9 * old["mean"] + 0.1 * conv_out.mean(axis=(0, 1, 2)),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(new["var"], 0.9 * old["var"] + 0.1 * conv_out.var(axis=(0, 1, 2)),
                             rtol=1e-4, atol=1e-6)

  _, eval_updates = module.apply(variables, x, train=False, mutable=["batch_stats"])
  jax.tree_util.tree_map(np.testing.assert_array_equal, eval_updates["batch_stats"],
                         variables["batch_stats"])

  apply = jax.jit(models.make_apply(module))
  mixed = x.at[1:].set(images(3, 3, CIFAR))
  np.testing.assert_allclose(apply(variables, x)[0], apply(variables, mixed)[0], rtol=1e-6, atol=1e-6)
  # Train mode normalises with the batch's statistics instead.
  train_logits, _ = module.apply(variables, x, train=True, mutable=["batch_stats"])
  assert not np.allclose(train_logits, apply(variables, x), atol=1e-3)


def test_bn_free_models_have_no_batch_stats_and_train_equals_eval():
  module = models.get_model("small_cnn")
  variables = random_variables(module, MNIST, seed=3)
  assert set(variables) == {"params"}
  x = images(4, 2, MNIST)
  np.testing.assert_allclose(module.apply(variables, x, train=True), module.apply(variables, x), rtol=1e-6)


def test_dropout_only_in_train_mode():
  module = models.get_model("small_cnn", dropout_rate=0.5)
  variables = random_variables(module, MNIST, seed=5)
  x = images(6, 2, MNIST)
  np.testing.assert_array_equal(module.apply(variables, x), module.apply(variables, x))
  dropped = module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(7)})
  assert not np.allclose(dropped, module.apply(variables, x))


def test_cce_cnn_optional_dropout_follows_fc1():
  module = models.get_model("cce_cnn_mnist", dropout_rate=0.5)
  variables = random_variables(module, MNIST, seed=22)
  x = images(23, 2, MNIST)
  np.testing.assert_array_equal(module.apply(variables, x), models.get_model("cce_cnn_mnist").apply(variables, x))
  out = module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(24)}, return_features=True)
  assert not np.allclose(out.logits, module.apply(variables, x))


@pytest.mark.slow  # ~20 s on 2 quiet cores (EfficientNet-B0 at full width, both modes)
def test_efficientnet_dropout_and_drop_connect_only_in_train_mode():
  """kuangliu: Dropout(0.2) before the classifier by default; drop-connect (off by default) zeroes the
  residual branch of whole examples. Both draw from the 'dropout' rng in train mode only."""
  shape = (8, 8, 3)  # small: the stride-2 stages end at 1x1
  x = images(25, 2, shape)
  plain = models.get_model("efficientnet_b0", dropout_rate=0.0)
  variables = random_variables(plain, shape, seed=26)
  train = lambda m, key: m.apply(variables, x, train=True, mutable=["batch_stats"], return_features=True,
                                 rngs={"dropout": jax.random.key(key)})[0].features
  reference, eval_logits = train(plain, 0), plain.apply(variables, x)
  dropout_only = models.get_model("efficientnet_b0")
  drop_connect_only = models.get_model("efficientnet_b0", dropout_rate=0.0, drop_connect_rate=0.5)
  for module in (dropout_only, drop_connect_only):
    np.testing.assert_array_equal(module.apply(variables, x), eval_logits)
    assert not np.allclose(train(module, 27), reference)
  np.testing.assert_array_equal(train(drop_connect_only, 28), train(drop_connect_only, 28))
  with pytest.raises(Exception, match="dropout"):
    drop_connect_only.apply(variables, x, train=True, mutable=["batch_stats"])


def test_cosine_head():
  module = models.get_model("small_cnn", head="cosine")
  variables = random_variables(module, MNIST, seed=8)  # kernel columns are not unit-norm here
  head = variables["params"]["head"]
  x = images(9, 5, MNIST)
  out = models.make_features_apply(module)(variables, x)

  assert np.all(np.abs(out.logits - head["bias"]) <= 1 + 1e-5)
  # The features returned are the raw penultimate vector, before the head's normalisation ...
  assert out.features.shape == (5, 200)
  assert not np.allclose(np.linalg.norm(out.features, axis=1), 1.0)
  # ... and the logits are cos(theta_j) + b_j with both sides normalised in the forward.
  unit_w = head["cosine_kernel"] / np.linalg.norm(head["cosine_kernel"], axis=0)
  unit_f = out.features / np.linalg.norm(out.features, axis=1, keepdims=True)
  np.testing.assert_allclose(out.logits, unit_f @ unit_w + head["bias"], rtol=1e-5, atol=1e-5)
  # normalize=False (SPAT's clean-accuracy forward) only drops the feature normalisation.
  raw = models.make_apply(module.clone(cosine_normalize_features=False))(variables, x)
  np.testing.assert_allclose(raw, out.features @ unit_w + head["bias"], rtol=1e-4, atol=1e-4)

  projected = models.project_cosine_head(variables)
  np.testing.assert_allclose(np.linalg.norm(projected["params"]["head"]["cosine_kernel"], axis=0), 1.0,
                             rtol=1e-6)
  np.testing.assert_array_equal(projected["params"]["head"]["bias"], head["bias"])
  jax.tree_util.tree_map(np.testing.assert_array_equal, projected["params"]["backbone"],
                         variables["params"]["backbone"])
  # Projection does not change the function.
  np.testing.assert_allclose(models.make_apply(module)(projected, x), out.logits, rtol=1e-5, atol=1e-6)


def test_cosine_head_gradient_bypasses_weight_normalisation():
  """As the reference's in-place renormalisation: d logits / d W is the plain linear-map gradient."""
  module = models.get_model("mlp", head="cosine")
  variables = models.project_cosine_head(random_variables(module, MNIST, seed=10))
  x = images(11, 3, MNIST)
  features = models.make_features_apply(module)(variables, x).features
  unit_f = features / jnp.linalg.norm(features, axis=1, keepdims=True)

  def loss(kernel):
    params = {**variables["params"], "head": {**variables["params"]["head"], "cosine_kernel": kernel}}
    return jnp.sum(jnp.sin(models.make_apply(module)({"params": params}, x)))

  kernel = variables["params"]["head"]["cosine_kernel"]
  grad = jax.grad(loss)(kernel)
  logits = unit_f @ kernel + variables["params"]["head"]["bias"]
  np.testing.assert_allclose(grad, unit_f.T @ jnp.cos(logits), rtol=1e-4, atol=1e-6)
  # A differentiable normalisation would give a gradient orthogonal to each class vector.
  assert np.max(np.abs(np.sum(grad * kernel, axis=0))) > 1e-3


def test_project_cosine_head_on_stacked_ensemble_params():
  module = models.get_model("mlp", head="cosine")
  members = [random_variables(module, MNIST, seed) for seed in (12, 13)]
  stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *members)
  kernels = models.project_cosine_head(stacked)["params"]["head"]["cosine_kernel"]
  assert kernels.shape == (2, 64, 10)
  np.testing.assert_allclose(np.linalg.norm(kernels, axis=1), 1.0, rtol=1e-6)


def test_bad_inputs_raise_clear_errors():
  module = models.get_model("mlp")
  variables = random_variables(module, MNIST, seed=16)
  apply = models.make_apply(module)
  with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
    apply(variables, jnp.zeros(MNIST))
  with pytest.raises(TypeError, match="float"):
    apply(variables, jnp.zeros((2,) + MNIST, jnp.int32))
  with pytest.raises(TypeError, match="float"):
    jax.jit(apply)(variables, jnp.zeros((2,) + MNIST, jnp.uint8))


def test_bfloat16_backbone_keeps_float32_params_and_outputs():
  module = models.get_model("resnet20", dtype=jnp.bfloat16)
  abstract = abstract_variables(module, CIFAR)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(abstract))
  out = jax.eval_shape(models.make_features_apply(module), abstract,
                       jax.ShapeDtypeStruct((2,) + CIFAR, jnp.float32))
  assert out.logits.dtype == jnp.float32 and out.features.dtype == jnp.float32


def test_jit_and_vmap_over_stacked_ensemble_members(resnet20_tiny):
  module, first = resnet20_tiny
  members = [first, random_variables(module, CIFAR, seed=20)]
  stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *members)
  apply = jax.jit(models.make_apply(module))
  x = images(21, 3, CIFAR)
  ensemble_logits = jax.jit(jax.vmap(models.make_apply(module), in_axes=(0, None)))(stacked, x)
  assert ensemble_logits.shape == (2, 3, 10)
  for i, member in enumerate(members):
    np.testing.assert_allclose(ensemble_logits[i], apply(member, x), rtol=1e-5, atol=1e-5)
  assert not np.allclose(ensemble_logits[0], ensemble_logits[1])
