"""PyTorch ``state_dict`` -> Flax variables for the model zoo, and RobustBench checkpoints on disk.

Needs only numpy: a state_dict is a mapping ``name -> array`` (torch tensors are converted with
``np.asarray``); reading a ``.pt`` file imports torch lazily (the ``[torch]`` extra).

Layouts: a torch conv weight (O, I, kh, kw) becomes a Flax kernel (kh, kw, I, O); a Linear weight (O, I)
becomes (I, O); BatchNorm2d weight / bias / running_mean / running_var become scale / bias / mean / var
(both use eps 1e-5; the momentum only matters in training). Convolutions keep torch's padding: symmetric
k//2, or the bottom/right 'same' padding of the DeepMind WideResNets / PreAct ResNet-18 (Gowal et al. 2020;
Rebuffi et al. 2021), whose in-model
CIFAR-10 mean/std (non-persistent buffers, absent from the state_dict) becomes the ImageClassifier's.

``TORCH_ARCHS`` names the PyTorch definitions each architecture reads (RobustBench's
``model_zoo/architectures`` and the kuangliu / TRADES nets the papers use); ``ROBUSTBENCH_MODELS``
maps RobustBench model names to them.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Dict, Mapping, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust.models.common import CIFAR10_MEAN, CIFAR10_STD
from jaxrobust.models.registry import get_model

# Engstrom et al. (2019)'s robustness library normalises with the CIFAR-10 std of kuangliu's code.
ENGSTROM_STD = (0.2023, 0.1994, 0.2010)

# Flax path (inside 'backbone', '/'-joined, without the leaf) -> torch module prefix.
Renamer = Callable[[str], str]


def _kuangliu_resnet(path: str) -> str:
  """kuangliu / RobustBench ``ResNet`` (and ``PreActResNet``): layer1.0.conv1, shortcut.0 / shortcut.1."""
  path = re.sub(r"^layer(\d+)_(\d+)", r"layer\1.\2", path)
  path = path.replace("shortcut_conv", "shortcut.0").replace("shortcut_bn", "shortcut.1")
  return path.replace("bn_final", "bn")


def _trades_wrn(path: str) -> str:
  """RobustBench / TRADES ``WideResNet``: block1.layer.0.conv1, convShortcut, final bn1."""
  path = re.sub(r"^block(\d+)_(\d+)", r"block\1.layer.\2", path)
  return path.replace("shortcut_conv", "convShortcut").replace("bn_final", "bn1")


_DM_BLOCK = {"bn1": "batchnorm_0", "conv1": "conv_0", "bn2": "batchnorm_1", "conv2": "conv_1",
             "shortcut_conv": "shortcut"}


def _dm_wrn(path: str) -> str:
  """DeepMind ``DMWideResNet``: init_conv, layer.0.block.0.batchnorm_0 / conv_0 / shortcut, final batchnorm."""
  if path == "conv1":
    return "init_conv"
  if path == "bn_final":
    return "batchnorm"
  match = re.fullmatch(r"block(\d+)_(\d+)/(\w+)", path)
  if not match:
    return path
  return f"layer.{int(match.group(1)) - 1}.block.{match.group(2)}.{_DM_BLOCK[match.group(3)]}"


_DM_PREACT_BLOCK = {"bn1": "batchnorm_0", "conv1": "conv_2d_1", "bn2": "batchnorm_1", "conv2": "conv_2d_2",
                    "shortcut_conv": "shortcut"}


def _dm_preact(path: str) -> str:
  """DeepMind ``DMPreActResNet``: conv_2d, layer_0.0.batchnorm_0 / conv_2d_1 / shortcut, final batchnorm."""
  if path == "conv1":
    return "conv_2d"
  if path == "bn_final":
    return "batchnorm"
  match = re.fullmatch(r"layer(\d+)_(\d+)/(\w+)", path)
  if not match:
    return path
  return f"layer_{int(match.group(1)) - 1}.{match.group(2)}.{_DM_PREACT_BLOCK[match.group(3)]}"


def _trades_small_cnn(path: str) -> str:
  """TRADES ``SmallCNN``: feature_extractor.conv1..4, classifier.fc1 / fc2."""
  return ("feature_extractor." if path.startswith("conv") else "classifier.") + path


class TorchArch(NamedTuple):
  """How a PyTorch architecture maps onto ``get_model(model, **model_kwargs)``.

  head: the torch name of the final Linear; renamer: backbone paths -> torch module names;
  ignored: torch key prefixes that the forward pass never reads (e.g. the unused ``sub_block1`` of
  TRADES-style WideResNets); mean / std: the in-model normalisation the architecture itself applies.
  source: the PyTorch definition it reads.
  """
  model: str
  renamer: Renamer
  head: str
  source: str
  model_kwargs: Tuple[Tuple[str, object], ...] = ()
  ignored: Tuple[str, ...] = ()
  mean: Optional[Tuple[float, ...]] = None
  std: Optional[Tuple[float, ...]] = None


_RB = "robustbench model_zoo/architectures/"
_DM = dict(renamer=_dm_wrn, head="logits", source=_RB + "dm_wide_resnet.py DMWideResNet(activation_fn=Swish)",
           mean=CIFAR10_MEAN, std=CIFAR10_STD)
_WRN = dict(renamer=_trades_wrn, head="fc", source=_RB + "wide_resnet.py WideResNet", ignored=("sub_block1.",))

TORCH_ARCHS: Dict[str, TorchArch] = {
  "preact_resnet18": TorchArch("preact_resnet18", _kuangliu_resnet, "linear",
                               "kuangliu preact_resnet.py PreActResNet18 (shortcut on relu(bn(x)))"),
  # Wong et al. (2020) and RobustBench's PreActBlock take the 1x1 shortcut from x itself.
  "preact_resnet18_input_shortcut": TorchArch("preact_resnet18", _kuangliu_resnet, "linear",
                                              _RB + "resnet.py PreActResNet18",
                                              model_kwargs=(("shortcut_on_input", True),)),
  "resnet18": TorchArch("resnet18", _kuangliu_resnet, "linear", _RB + "resnet.py ResNet18"),
  "resnet34": TorchArch("resnet34", _kuangliu_resnet, "linear", _RB + "resnet.py ResNet34"),
  "resnet50": TorchArch("resnet50", _kuangliu_resnet, "linear", _RB + "resnet.py ResNet50"),
  "wrn28_10": TorchArch("wrn28_10", **_WRN),
  "wrn34_10": TorchArch("wrn34_10", **_WRN),
  "wrn34_20": TorchArch("wrn34_20", **_WRN),
  "wrn70_16": TorchArch("wrn70_16", **_WRN),
  "dm_wrn28_10": TorchArch("dm_wrn28_10", **_DM),
  "dm_wrn34_20": TorchArch("dm_wrn34_20", **_DM),
  "dm_wrn70_16": TorchArch("dm_wrn70_16", **_DM),
  "dm_preact_resnet18": TorchArch("dm_preact_resnet18", _dm_preact, "logits",
                                  _RB + "dm_wide_resnet.py DMPreActResNet(depth=18, activation_fn=Swish)",
                                  mean=CIFAR10_MEAN, std=CIFAR10_STD),
  "small_cnn": TorchArch("small_cnn", _trades_small_cnn, "classifier.fc3", "TRADES small_cnn.py SmallCNN (MNIST)"),
}


class RobustBenchModel(NamedTuple):
  """A RobustBench checkpoint: its architecture here and the normalisation its model class adds."""
  arch: str
  mean: Optional[Tuple[float, ...]] = None
  std: Optional[Tuple[float, ...]] = None
  entry: Optional[str] = None  # the checkpoint entry holding the weights, when not the top level


_CIFAR_NORM = dict(mean=CIFAR10_MEAN, std=CIFAR10_STD)
# (dataset, threat model, name) -> model; names and classes as in robustbench's model_zoo/cifar10.py.
ROBUSTBENCH_MODELS: Dict[Tuple[str, str, str], RobustBenchModel] = {
  **{("cifar10", "Linf", name): RobustBenchModel("wrn28_10") for name in (
      "Carmon2019Unlabeled", "Sehwag2020Hydra", "Wang2020Improving", "Wu2020Adversarial_extra", "Standard")},
  **{("cifar10", "Linf", name): RobustBenchModel("wrn34_10") for name in (
      "Zhang2019Theoretically", "Huang2020Self", "Zhang2019You", "Zhang2020Attacks", "Wu2020Adversarial",
      "Sehwag2021Proxy")},
  ("cifar10", "Linf", "Rice2020Overfitting"): RobustBenchModel("wrn34_20", **_CIFAR_NORM),
  ("cifar10", "Linf", "Engstrom2019Robustness"): RobustBenchModel("resnet50", CIFAR10_MEAN, ENGSTROM_STD),
  ("cifar10", "Linf", "Wong2020Fast"): RobustBenchModel("preact_resnet18_input_shortcut", **_CIFAR_NORM),
  ("cifar10", "Linf", "Andriushchenko2020Understanding"): RobustBenchModel("preact_resnet18_input_shortcut",
                                                                           entry="last"),
  ("cifar10", "Linf", "Sehwag2021Proxy_R18"): RobustBenchModel("resnet18"),
  **{("cifar10", "Linf", name): RobustBenchModel("dm_wrn70_16") for name in (
      "Gowal2020Uncovering_70_16", "Gowal2020Uncovering_70_16_extra", "Rebuffi2021Fixing_70_16_cutmix_ddpm",
      "Rebuffi2021Fixing_70_16_cutmix_extra", "Gowal2021Improving_70_16_ddpm_100m")},
  ("cifar10", "Linf", "Gowal2020Uncovering_34_20"): RobustBenchModel("dm_wrn34_20"),
  **{("cifar10", "Linf", name): RobustBenchModel("dm_preact_resnet18") for name in (
      "Rebuffi2021Fixing_R18_ddpm", "Rade2021Helper_R18_extra", "Rade2021Helper_R18_ddpm",
      "Gowal2021Improving_R18_ddpm_100m")},
  **{("cifar10", "Linf", name): RobustBenchModel("dm_wrn28_10") for name in (
      "Gowal2020Uncovering_28_10_extra", "Rebuffi2021Fixing_28_10_cutmix_ddpm", "Gowal2021Improving_28_10_ddpm_100m")},
  ("cifar10", "L2", "Engstrom2019Robustness"): RobustBenchModel("resnet50", CIFAR10_MEAN, ENGSTROM_STD),
  ("cifar10", "L2", "Standard"): RobustBenchModel("wrn28_10"),
  ("cifar10", "L2", "Wu2020Adversarial"): RobustBenchModel("wrn34_10"),
  ("cifar10", "L2", "Sehwag2021Proxy"): RobustBenchModel("wrn34_10"),
  ("cifar10", "L2", "Sehwag2021Proxy_R18"): RobustBenchModel("resnet18"),
  **{("cifar10", "L2", name): RobustBenchModel("dm_wrn70_16") for name in (
      "Gowal2020Uncovering", "Gowal2020Uncovering_extra", "Rebuffi2021Fixing_70_16_cutmix_ddpm",
      "Rebuffi2021Fixing_70_16_cutmix_extra")},
  ("cifar10", "L2", "Rebuffi2021Fixing_28_10_cutmix_ddpm"): RobustBenchModel("dm_wrn28_10"),
  **{("cifar10", "L2", name): RobustBenchModel("dm_preact_resnet18") for name in (
      "Rebuffi2021Fixing_R18_cutmix_ddpm", "Rade2021Helper_R18_ddpm")},
}


def build_module(arch: str, num_classes: int = 10, *, mean=None, std=None):
  """The Flax ImageClassifier for TORCH_ARCHS[arch]; mean/std default to the architecture's own."""
  spec = _arch(arch)
  return get_model(spec.model, num_classes, mean=spec.mean if mean is None else mean,
                   std=spec.std if std is None else std, **dict(spec.model_kwargs))


def convert_state_dict(state_dict: Mapping[str, object], arch: str, num_classes: int = 10,
                       *, input_shape: Tuple[int, int, int] = (32, 32, 3)) -> dict:
  """PyTorch state_dict (name -> array or tensor) -> Flax variables {'params', 'batch_stats'} for ``arch``.

  Every Flax leaf must find its torch tensor with the matching shape, and every torch tensor must be
  read (``num_batches_tracked`` and the architecture's ``ignored`` prefixes aside); otherwise a
  ValueError lists the missing / unexpected / mismatched names.
  """
  spec = _arch(arch)
  module = build_module(arch, num_classes)
  shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, *input_shape)), train=False))
  state = {_strip_prefix(k): v for k, v in state_dict.items()}
  used, missing, mismatched = set(), [], []

  def convert(path, leaf):
    collection, *names = [p.key for p in path]
    key = _torch_key(spec, collection, names)
    if key not in state:
      missing.append(key)
      return np.zeros(leaf.shape, np.float32)
    used.add(key)
    value = _to_flax_layout(np.asarray(_to_numpy(state[key]), np.float32), names[-1])
    if value.shape != leaf.shape:
      mismatched.append(f"{key}: torch {tuple(np.shape(state[key]))} -> {value.shape}, model {leaf.shape}")
    return value

  variables = jax.tree_util.tree_map_with_path(convert, dict(shapes))
  unexpected = [k for k in state if k not in used and not k.endswith("num_batches_tracked")
                and not k.startswith(spec.ignored or ("\0",))]
  if missing or unexpected or mismatched:
    raise ValueError(
        f"state_dict does not fit architecture {arch!r} ({spec.source}, num_classes={num_classes}): "
        f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}; unexpected {unexpected[:8]}"
        f"{'...' if len(unexpected) > 8 else ''}; shape mismatches {mismatched[:8]}. Check --arch / num_classes "
        f"(architectures: {', '.join(TORCH_ARCHS)}).")
  return jax.tree_util.tree_map(jnp.asarray, variables)


def load_torch_model(path_or_state_dict, arch: str, num_classes: int = 10, *, mean=None, std=None,
                     entry: Optional[str] = None, input_shape: Tuple[int, int, int] = (32, 32, 3)):
  """(module, variables) from a PyTorch checkpoint file or a state_dict, for ``arch`` in TORCH_ARCHS.

  A file is read with ``torch.load(weights_only=True)``; a checkpoint dict holding 'state_dict' (or
  ``entry``) is unwrapped, and DataParallel's 'module.' prefix is dropped. mean/std: per-channel
  normalisation in [0, 1] space when the checkpoint's model class applied one outside the architecture
  (e.g. RobustBench's Wong2020Fast); default: the architecture's own (CIFAR-10's for the DM WideResNets).
  """
  _arch(arch)
  state = read_torch_checkpoint(path_or_state_dict, entry) if isinstance(path_or_state_dict, (str, os.PathLike)) \
      else _unwrap(path_or_state_dict, entry)
  variables = convert_state_dict(state, arch, num_classes, input_shape=input_shape)
  return build_module(arch, num_classes, mean=mean, std=std), variables


def read_torch_checkpoint(path, entry: Optional[str] = None) -> Dict[str, np.ndarray]:
  """A ``.pt`` / ``.pth`` file -> state_dict of numpy arrays (needs torch: the ``[torch]`` extra)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no PyTorch checkpoint at {path}")
  try:
    import torch
  except ImportError as e:
    raise ImportError("reading a PyTorch checkpoint needs torch: pip install 'jaxrobust[torch]' "
                      "(or convert the state_dict to numpy arrays elsewhere and pass the dict)") from e
  checkpoint = torch.load(path, map_location="cpu", weights_only=True)
  return {k: v.detach().cpu().numpy() for k, v in _unwrap(checkpoint, entry).items() if hasattr(v, "detach")}


def robustbench_checkpoint(model_dir, name: str, dataset: str = "cifar10", threat_model: str = "Linf") -> str:
  """RobustBench's file layout: model_dir/<dataset>/<threat_model>/<name>.pt; a missing file is an error
  saying where to put it (this library never downloads)."""
  key = (dataset, threat_model, name)
  if key not in ROBUSTBENCH_MODELS:
    known = sorted(n for d, t, n in ROBUSTBENCH_MODELS if (d, t) == (dataset, threat_model))
    raise ValueError(f"RobustBench model {name!r} ({dataset}, {threat_model}) is not one whose architecture "
                     f"jaxrobust supports; supported: {', '.join(known) or 'none for this dataset/threat model'}")
  path = os.path.join(model_dir, dataset, threat_model, f"{name}.pt")
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"no RobustBench checkpoint at {path}. Put the file there, e.g. let robustbench download it once: "
        f"python -c \"from robustbench.utils import load_model; load_model('{name}', model_dir='{model_dir}', "
        f"dataset='{dataset}', threat_model='{threat_model}')\"")
  return path


def load_robustbench_model(name: str, model_dir, dataset: str = "cifar10", threat_model: str = "Linf"):
  """(module, variables, arch) for a RobustBench checkpoint already on disk (see robustbench_checkpoint)."""
  path = robustbench_checkpoint(model_dir, name, dataset, threat_model)
  rb = ROBUSTBENCH_MODELS[(dataset, threat_model, name)]
  module, variables = load_torch_model(path, rb.arch, 10, mean=rb.mean, std=rb.std, entry=rb.entry)
  return module, variables, rb.arch


def _arch(arch: str) -> TorchArch:
  if arch not in TORCH_ARCHS:
    raise ValueError(f"unknown PyTorch architecture {arch!r}; supported: {', '.join(TORCH_ARCHS)}")
  return TORCH_ARCHS[arch]


def _torch_key(spec: TorchArch, collection: str, names) -> str:
  *modules, leaf = names
  if modules[0] == "head":
    prefix = spec.head
  else:  # 'backbone'
    prefix = spec.renamer("/".join(modules[1:])).replace("/", ".")
  torch_leaf = {("params", "kernel"): "weight", ("params", "scale"): "weight", ("params", "bias"): "bias",
                ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}[(collection, leaf)]
  return f"{prefix}.{torch_leaf}"


def _to_flax_layout(value: np.ndarray, leaf: str) -> np.ndarray:
  if leaf == "kernel" and value.ndim == 4:  # conv (O, I, kh, kw) -> (kh, kw, I, O)
    return np.transpose(value, (2, 3, 1, 0))
  if leaf == "kernel" and value.ndim == 2:  # Linear (O, I) -> (I, O)
    return value.T
  return value


def _to_numpy(value):
  return value.detach().cpu().numpy() if hasattr(value, "detach") else value


def _strip_prefix(key: str) -> str:
  for prefix in ("module.", "model."):
    while key.startswith(prefix):
      key = key[len(prefix):]
  return key


def _unwrap(checkpoint, entry: Optional[str]) -> Mapping:
  if not isinstance(checkpoint, Mapping):
    raise ValueError(f"expected a state_dict (a dict of arrays), got {type(checkpoint).__name__}")
  if entry is not None:
    if entry not in checkpoint:
      raise ValueError(f"checkpoint has no entry {entry!r}; its keys: {list(checkpoint)[:10]}")
    checkpoint = checkpoint[entry]
  for wrapper in ("state_dict", "model_state_dict"):
    if wrapper in checkpoint and isinstance(checkpoint[wrapper], Mapping):
      return checkpoint[wrapper]
  return checkpoint
