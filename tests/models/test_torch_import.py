"""models.torch_import: PyTorch state_dicts -> Flax variables.

The numpy-only tests check the key mapping and its errors on synthetic state_dicts (CI runs them). The
torch tests build each architecture from robustbench's own definitions (its ``model_zoo/architectures``
files, loaded by path so robustbench's timm / torchvision imports are not needed), with random weights and
random BN statistics, convert, and compare eval-mode logits on real CIFAR-10 / MNIST test images.
CI installs neither torch nor robustbench: those tests skip there.
"""

import importlib.util
import pathlib

import jax
import numpy as np
import pytest

from jaxrobust import models
from jaxrobust.models import torch_import

# TRADES SmallCNN (MNIST) shapes, as its state_dict names them.
_SMALL_CNN_SHAPES = {
  "feature_extractor.conv1.weight": (32, 1, 3, 3), "feature_extractor.conv1.bias": (32,),
  "feature_extractor.conv2.weight": (32, 32, 3, 3), "feature_extractor.conv2.bias": (32,),
  "feature_extractor.conv3.weight": (64, 32, 3, 3), "feature_extractor.conv3.bias": (64,),
  "feature_extractor.conv4.weight": (64, 64, 3, 3), "feature_extractor.conv4.bias": (64,),
  "classifier.fc1.weight": (200, 1024), "classifier.fc1.bias": (200,),
  "classifier.fc2.weight": (200, 200), "classifier.fc2.bias": (200,),
  "classifier.fc3.weight": (10, 200), "classifier.fc3.bias": (10,),
}


def _synthetic_small_cnn():
  rng = np.random.default_rng(0)
  return {f"module.{k}": rng.normal(size=s).astype(np.float32) for k, s in _SMALL_CNN_SHAPES.items()}


def test_small_cnn_state_dict_maps_with_torch_layouts():
  state = _synthetic_small_cnn()
  variables = torch_import.convert_state_dict(state, "small_cnn", input_shape=(28, 28, 1))
  backbone = variables["params"]["backbone"]
  np.testing.assert_array_equal(backbone["conv3"]["kernel"],
                                state["module.feature_extractor.conv3.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(backbone["fc1"]["kernel"], state["module.classifier.fc1.weight"].T)
  np.testing.assert_array_equal(variables["params"]["head"]["kernel"], state["module.classifier.fc3.weight"].T)
  np.testing.assert_array_equal(variables["params"]["head"]["bias"], state["module.classifier.fc3.bias"])


def test_bad_state_dicts_are_named():
  state = _synthetic_small_cnn()
  del state["module.classifier.fc2.bias"]
  state["module.extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(ValueError, match=r"missing \['classifier.fc2.bias'\].*unexpected \['extra.weight'\]"):
    torch_import.convert_state_dict(state, "small_cnn", input_shape=(28, 28, 1))
  with pytest.raises(ValueError, match="shape mismatches.*classifier.fc3.weight"):
    torch_import.convert_state_dict(_synthetic_small_cnn(), "small_cnn", 7, input_shape=(28, 28, 1))
  with pytest.raises(ValueError, match="unknown PyTorch architecture 'wrn99'; supported: preact_resnet18"):
    models.load_torch_model({}, "wrn99")


@pytest.mark.parametrize("renamer, path, key", [
  (torch_import._dm_wrn, "block2_0/shortcut_conv", "layer.1.block.0.shortcut"),
  (torch_import._dm_wrn, "block3_4/bn2", "layer.2.block.4.batchnorm_1"),
  (torch_import._dm_wrn, "bn_final", "batchnorm"),
  (torch_import._trades_wrn, "block1_3/shortcut_conv", "block1.layer.3.convShortcut"),
  (torch_import._trades_wrn, "bn_final", "bn1"),
  (torch_import._kuangliu_resnet, "layer4_1/shortcut_bn", "layer4.1.shortcut.1"),
  (torch_import._dm_preact, "layer2_0/shortcut_conv", "layer_1.0.shortcut"),
])
def test_module_names_follow_the_torch_definitions(renamer, path, key):
  assert renamer(path).replace("/", ".") == key


def test_robustbench_names_and_missing_file(tmp_path):
  assert torch_import.ROBUSTBENCH_MODELS[("cifar10", "Linf", "Gowal2020Uncovering_70_16")].arch == "dm_wrn70_16"
  assert all(m.arch in torch_import.TORCH_ARCHS for m in torch_import.ROBUSTBENCH_MODELS.values())
  with pytest.raises(FileNotFoundError, match=r"cifar10/Linf/Wong2020Fast.pt.*robustbench.utils import load_model"):
    models.load_robustbench_model("Wong2020Fast", tmp_path)
  with pytest.raises(ValueError, match="not one whose architecture jaxrobust supports; supported: .*Carmon2019"):
    models.load_robustbench_model("Bai2023Improving_edm", tmp_path)


# ---- against robustbench's PyTorch definitions ------------------------------------------------------

def _robustbench_architecture(name):
  torch = pytest.importorskip("torch")
  spec = importlib.util.find_spec("robustbench")
  if spec is None:
    pytest.skip("robustbench not installed (pip install robustbench; see NOTES)")
  path = pathlib.Path(spec.submodule_search_locations[0]) / "model_zoo" / "architectures" / f"{name}.py"
  module_spec = importlib.util.spec_from_file_location(f"_rb_{name}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return torch, module


class _TradesSmallCNN:
  """TRADES ``small_cnn.py`` SmallCNN (the MNIST net of Carlini & Wagner 2017), its module names kept."""

  @staticmethod
  def build(torch):
    from collections import OrderedDict
    nn = torch.nn

    class SmallCNN(nn.Module):
      def __init__(self):
        super().__init__()
        self.feature_extractor = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(1, 32, 3)), ("relu1", nn.ReLU()), ("conv2", nn.Conv2d(32, 32, 3)),
            ("relu2", nn.ReLU()), ("maxpool1", nn.MaxPool2d(2, 2)), ("conv3", nn.Conv2d(32, 64, 3)),
            ("relu3", nn.ReLU()), ("conv4", nn.Conv2d(64, 64, 3)), ("relu4", nn.ReLU()),
            ("maxpool2", nn.MaxPool2d(2, 2))]))
        self.classifier = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(64 * 4 * 4, 200)), ("relu1", nn.ReLU()), ("drop", nn.Dropout(0.5)),
            ("fc2", nn.Linear(200, 200)), ("relu2", nn.ReLU()), ("fc3", nn.Linear(200, 10))]))

      def forward(self, x):
        return self.classifier(self.feature_extractor(x).view(-1, 64 * 4 * 4))
    return SmallCNN()


def _torch_model(arch):
  if arch == "small_cnn":
    torch = pytest.importorskip("torch")
    return torch, _TradesSmallCNN.build(torch)
  if arch == "dm_preact_resnet18":
    torch, rb = _robustbench_architecture("dm_wide_resnet")
    return torch, rb.DMPreActResNet(10, 18, activation_fn=rb.Swish)
  if arch.startswith("dm_wrn"):
    torch, rb = _robustbench_architecture("dm_wide_resnet")
    depth, width = map(int, arch[len("dm_wrn"):].split("_"))
    return torch, rb.DMWideResNet(10, depth, width, activation_fn=rb.Swish)
  if arch.startswith("wrn"):
    torch, rb = _robustbench_architecture("wide_resnet")
    depth, width = map(int, arch[len("wrn"):].split("_"))
    # sub_block1=True as in Carmon2019Unlabeled: its weights are in the state_dict but never used
    return torch, rb.WideResNet(depth, 10, width, sub_block1=True)
  torch, rb = _robustbench_architecture("resnet")
  if arch == "preact_resnet18":
    return torch, rb.PreActResNet(rb.PreActBlock, [2, 2, 2, 2], out_shortcut=True)
  return torch, {"preact_resnet18_input_shortcut": rb.PreActResNet18, "resnet18": rb.ResNet18,
                 "resnet34": rb.ResNet34, "resnet50": rb.ResNet50}[arch]()


def _randomise_batch_norms(torch, net, seed=0):
  """Random BN affine parameters and running statistics, so that the BN conversion is exercised."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
        m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
        m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
  return net.eval()


def _images(shared_data, mnist, n):
  if mnist:
    from jaxrobust.data import load_dataset
    return np.asarray(load_dataset("mnist", "test", data_dir=shared_data / "mnist").images[:n], np.float32)
  from PIL import Image
  files = sorted((shared_data / "cifar10_test_first20").glob("cifar10_*.png"))[:n]
  return np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) / 255 for f in files])


def logit_difference(arch, shared_data, n=4):
  """(max |torch - jax| logit difference, max |logit|) on n real test images."""
  torch, net = _torch_model(arch)
  torch.manual_seed(0)
  net = _randomise_batch_norms(torch, net)
  x = _images(shared_data, arch == "small_cnn", n)
  with torch.no_grad():
    expected = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  module, variables = models.load_torch_model(net.state_dict(), arch, input_shape=x.shape[1:])
  got = np.asarray(jax.jit(lambda v, xb: module.apply(v, xb))(variables, x))
  return float(np.max(np.abs(got - expected))), float(np.max(np.abs(expected)))


_FAST = ["small_cnn", "preact_resnet18", "preact_resnet18_input_shortcut", "resnet18", "dm_preact_resnet18"]
_SLOW = ["resnet34", "resnet50", "wrn28_10", "wrn34_10", "dm_wrn28_10", "wrn34_20", "dm_wrn34_20",
         "wrn70_16", "dm_wrn70_16"]


@pytest.mark.torch
@pytest.mark.parametrize("arch", _FAST + [pytest.param(a, marks=pytest.mark.slow) for a in _SLOW])
def test_logits_match_robustbench_definitions(arch, shared_data):
  diff, scale = logit_difference(arch, shared_data)
  assert diff <= 1e-4 * max(1.0, scale), (arch, diff, scale)


@pytest.mark.torch
def test_robustbench_checkpoint_file_with_its_normalisation(tmp_path, shared_data):
  """Wong2020Fast as RobustBench stores it: a DataParallel state_dict; its model class normalises inside."""
  torch, rb = _robustbench_architecture("resnet")
  net = _randomise_batch_norms(torch, rb.PreActResNet18())
  folder = tmp_path / "cifar10" / "Linf"
  folder.mkdir(parents=True)
  torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, folder / "Wong2020Fast.pt")
  module, variables, arch = models.load_robustbench_model("Wong2020Fast", tmp_path)
  x = _images(shared_data, False, 2)
  mu, sigma = np.array(models.CIFAR10_MEAN, np.float32), np.array(models.CIFAR10_STD, np.float32)
  with torch.no_grad():
    expected = net(torch.from_numpy(((x - mu) / sigma).transpose(0, 3, 1, 2).copy())).numpy()
  assert arch == "preact_resnet18_input_shortcut"
  np.testing.assert_allclose(np.asarray(module.apply(variables, x)), expected, atol=1e-4)


# ---- entry points: runs.load_torch_run and `jaxrobust evaluate` ----------------------------------------

def test_evaluate_torch_sources_are_checked_before_work(tmp_path):
  from jaxrobust.cli import main
  with pytest.raises(SystemExit, match="cifar10/Linf/Carmon2019Unlabeled.pt.*load_model"):
    main(["evaluate", "--robustbench", "Carmon2019Unlabeled", "--model-dir", str(tmp_path)])
  with pytest.raises(SystemExit, match="needs its architecture; one of: preact_resnet18"):
    main(["evaluate", "--torch-checkpoint", str(tmp_path / "m.pt")])
  with pytest.raises(SystemExit, match="give one model source: --run-dir, --model, or --torch-checkpoint"):
    main(["evaluate", "--run-dir", str(tmp_path), "--robustbench", "Standard", "--model-dir", str(tmp_path)])
  with pytest.raises(SystemExit, match="--protocol evaluates a run folder"):
    main(["evaluate", "--robustbench", "Standard", "--model-dir", str(tmp_path), "--protocol", "trades"])


@pytest.mark.torch
def test_evaluate_a_torch_checkpoint_through_the_evaluator(tmp_path, shared_data, capsys):
  """A TRADES SmallCNN state_dict file, evaluated on MNIST by `jaxrobust evaluate --torch-checkpoint`."""
  from jaxrobust.cli import main
  from jaxrobust.runs import load_torch_run
  torch = pytest.importorskip("torch")
  torch.manual_seed(0)
  net = _TradesSmallCNN.build(torch).eval()
  path = tmp_path / "small_cnn.pt"
  torch.save(net.state_dict(), path)
  run = load_torch_run(str(path), "small_cnn", dataset="mnist")
  from jaxrobust.data import load_splits
  test = load_splits(run.config["data"]).test
  x, labels = test.as_float(np.arange(16)), np.asarray(test.labels[:16])
  with torch.no_grad():
    predictions = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy().argmax(1)
  np.testing.assert_array_equal(np.asarray(run.apply(run.variables, x)).argmax(1), predictions)
  out = tmp_path / "report.json"
  assert main(["evaluate", "--torch-checkpoint", str(path), "--arch", "small_cnn", "--dataset", "mnist",
               "--max-examples", "16", "--attack", "pgd:eps=0.3,steps=2,step_size=0.1", "--no-checks",
               "--no-progress", "--json", str(out)]) == 0
  import json
  report = json.loads(out.read_text())
  assert report["clean_acc"] == pytest.approx(np.mean(predictions == labels))
  assert "| small_cnn.pt |" in capsys.readouterr().out
